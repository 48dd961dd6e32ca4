import os

# Tests run on TensorFlow unless KERAS_BACKEND says otherwise; set before Keras loads.
os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras
import pytest


@pytest.fixture(autouse=True)
def _fresh_keras_state():
    """Each test starts from float32, channels_last and an unseeded RNG state."""
    yield
    keras.config.set_dtype_policy("float32")
    keras.config.set_image_data_format("channels_last")
    # Keras's global state only. Its default also runs gc.collect(), a full
    # collection of a heap that TensorFlow, PyTorch and timm make large: ~1.1 s a
    # test, 59% of the suite's time in CI (CONTRIBUTING.md, "CI budget"). Python's
    # own collector still frees cycles as it goes.
    keras.backend.clear_session(free_memory=False)
