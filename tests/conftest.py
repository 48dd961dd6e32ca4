import os

# Tests run on TensorFlow unless KERAS_BACKEND says otherwise; set before Keras loads.
os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import gc
import itertools

import keras
import pytest

# A full garbage collection every this many tests (see _fresh_keras_state).
COLLECT_EVERY = 50
_tests_run = itertools.count(1)


@pytest.fixture(autouse=True)
def _fresh_keras_state():
    """Each test starts from float32, channels_last and an unseeded RNG state."""
    yield
    keras.config.set_dtype_policy("float32")
    keras.config.set_image_data_format("channels_last")
    # Keras's global state only. Its default also runs gc.collect(), a full
    # collection of a heap that TensorFlow, PyTorch and timm make large: ~1.1 s a
    # test, 59% of the suite's time in CI (CONTRIBUTING.md, "CI budget"). One
    # every COLLECT_EVERY tests still frees the models that reference cycles
    # keep alive, so a worker's memory stays bounded.
    keras.backend.clear_session(free_memory=False)
    if next(_tests_run) % COLLECT_EVERY == 0:
        gc.collect()
