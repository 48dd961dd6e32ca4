"""Synchronized BatchNormalization under data parallelism, on 2 CPU devices and 2 workers.

Each multi-device check runs in a subprocess: TensorFlow's logical CPUs and
XLA's host device count must be set before the runtime starts, and a
multi-worker strategy needs processes of its own. The batch's two halves have
different means, so per-replica statistics differ from the global ones.
"""

import json
import os
import socket
import subprocess
import sys

import keras
import numpy as np
import pytest

from keras_attention import models
from keras_attention.layers.batch_normalization import BatchNormalization

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
EXAMPLES = os.path.join(ROOT, "examples")
TIMEOUT = 300  # seconds; a shared 2-core machine is slow, a hung collective is not

# A global batch of 8 whose halves (one per replica) differ in mean.
DATA = """
import numpy as np
rng = np.random.default_rng(0)
images = rng.normal(size=(8, 16, 16, 3)).astype("float32")
images[4:] += 3.0
masks = rng.integers(0, 3, size=(8, 16, 16))
"""

# One training step of a small DANet (its backbone is a nested model, DualAttention holds
# BatchNormalizations inside): {"name": (weight path -> value)} for each way of running it.
DANET_STEP = """
import keras
from keras_attention import models

def danet_step(images, masks, scope, synchronize):
    with scope():
        keras.utils.set_random_seed(0)
        model = models.DANet(3, input_shape=(16, 16, 3))
        for layer in model._flatten_layers():
            if isinstance(layer, keras.layers.Dropout):
                layer.rate = 0.0  # its random masks differ between one device and two
        norms = [l for l in model._flatten_layers() if isinstance(l, keras.layers.BatchNormalization)]
        if synchronize:
            models.synchronize_batch_norm(model)
        model.compile(
            optimizer=keras.optimizers.SGD(0.1),
            loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        )
    model.fit(images, masks, batch_size=8, epochs=1, shuffle=False, verbose=0)
    return {w.path: np.asarray(w).tolist() for w in model.weights}, norms
"""

TENSORFLOW = """
import contextlib, json
import tensorflow as tf
cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
{data}
{danet_step}
strategy = tf.distribute.MirroredStrategy([d.name for d in tf.config.list_logical_devices("CPU")])
one, _ = danet_step(images, masks, contextlib.nullcontext, False)
synchronized, norms = danet_step(images, masks, strategy.scope, True)
local, _ = danet_step(images, masks, strategy.scope, False)
print(json.dumps({{
    "replicas": strategy.num_replicas_in_sync,
    "one": one, "synchronized": synchronized, "local": local,
    "flags": [n.synchronized for n in norms],
}}))
"""

JAX = """
import contextlib, json
import jax
import keras
from keras_attention.layers.batch_normalization import BatchNormalization
{data}
{danet_step}
one, _ = danet_step(images, masks, contextlib.nullcontext, False)

# The batch as the jitted step sees it: split across the devices, or not.
shardings = []
class Probe(keras.layers.Layer):
    def call(self, x):
        jax.debug.inspect_array_sharding(x, callback=lambda s: shardings.append(str(s.spec)))
        return x

keras.distribution.set_distribution(keras.distribution.DataParallel())
parallel, norms = danet_step(images, masks, contextlib.nullcontext, True)
# What a model saved on TensorFlow with synchronize_batch_norm holds: accepted, and the same.
with_flag = keras.Sequential([
    keras.Input((16, 16, 3)), Probe(), BatchNormalization(momentum=0.9, synchronized=True)
])
with_flag.compile(optimizer="sgd", loss="mse")
with_flag.fit(images, images, batch_size=8, epochs=1, shuffle=False, verbose=0)
print(json.dumps({{
    "devices": len(jax.devices()), "images": images.tolist(),
    "one": one, "parallel": parallel,
    "flags": [n.synchronized for n in norms], "shardings": shardings,
    "flag_moving_variance": keras.ops.convert_to_numpy(with_flag.layers[-1].moving_variance).tolist(),
}}))
"""


def run_script(code, **env):
    """Runs `code` in a fresh Python; returns the JSON object its last line prints."""
    result = subprocess.run(
        [sys.executable, "-c", code],
        env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", **env),
        cwd=ROOT,
        check=False,  # the return code is asserted below, with stderr
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(result.stdout.strip().splitlines()[-1])


def differences(a, b, kind):
    """{path: largest |a - b|} over the weights whose path ends with `kind`."""
    return {
        path: float(np.max(np.abs(np.subtract(a[path], b[path]))))
        for path in a
        if path.endswith(kind)
    }


def moving_statistics_of(batch):
    """The moving statistics after one step from the initial (0, 1): momentum 0.9."""
    axes = tuple(range(batch.ndim - 1))
    return 0.1 * batch.mean(axes), 0.9 + 0.1 * batch.var(axes)


def test_tensorflow_mirrored_statistics_are_those_of_one_device():
    pytest.importorskip("tensorflow")
    out = run_script(
        TENSORFLOW.format(data=DATA, danet_step=DANET_STEP), KERAS_BACKEND="tensorflow"
    )
    assert out["replicas"] == 2
    # Every BatchNormalization: 5 in the nested backbone, 4 inside DualAttention.
    assert len(out["flags"]) == 9 and all(out["flags"])
    for kind in ("moving_mean", "moving_variance", "gamma", "beta", "kernel"):
        synchronized = differences(out["one"], out["synchronized"], kind)
        assert max(synchronized.values()) < 1e-5, (kind, synchronized)
    # Without synchronisation each replica's statistics are those of its half.
    local = differences(out["one"], out["local"], "moving_variance")
    assert max(local.values()) > 1e-2, local


def test_jax_data_parallel_statistics_are_global_already():
    pytest.importorskip("jax")
    out = run_script(
        JAX.format(data=DATA, danet_step=DANET_STEP),
        KERAS_BACKEND="jax",
        XLA_FLAGS="--xla_force_host_platform_device_count=2",
    )
    assert out["devices"] == 2
    # The jitted step sees the batch split across the two devices...
    assert out["shardings"] and all("'batch'" in s for s in out["shardings"]), out["shardings"]
    # ...and its statistics (and the step) are those of one device on the whole batch,
    # with nothing synchronized: synchronize_batch_norm leaves JAX's layers alone.
    assert not any(out["flags"])
    for kind in ("moving_mean", "moving_variance", "gamma", "beta", "kernel"):
        parallel = differences(out["one"], out["parallel"], kind)
        assert max(parallel.values()) < 1e-5, (kind, parallel)
    # A BatchNormalization on the images: the whole batch's statistics, far from those that
    # each device's half would give. It holds synchronized=True, as a file saved on
    # TensorFlow after synchronize_batch_norm does: accepted on JAX, and the same.
    images = np.array(out["images"])
    _, variance = moving_statistics_of(images)
    np.testing.assert_allclose(out["flag_moving_variance"], variance, rtol=1e-5)
    for half in (images[:4], images[4:]):
        assert np.max(np.abs(moving_statistics_of(half)[1] - variance)) > 0.1


def test_synchronize_batch_norm_reaches_nested_layers_and_round_trips(tmp_path):
    if keras.backend.backend() != "tensorflow":
        pytest.skip("synchronize_batch_norm changes nothing off TensorFlow (tested on JAX above)")
    model = models.AttentionCNN("cbam", input_shape=(8, 8, 1), classes=3, widths=(4, 8))
    norms = [
        layer
        for layer in model._flatten_layers()
        if isinstance(layer, keras.layers.BatchNormalization)
    ]
    top = [layer for layer in model.layers if isinstance(layer, keras.layers.BatchNormalization)]
    assert len(norms) > len(top) > 0  # CBAM's spatial gates hold BatchNormalizations
    assert models.synchronize_batch_norm(model) is model
    assert all(layer.synchronized for layer in norms)
    # Without a strategy a synchronized layer is an ordinary one.
    x = np.random.default_rng(0).normal(size=(4, 8, 8, 1)).astype("float32")
    norm = BatchNormalization(momentum=0.9, epsilon=1e-5, synchronized=True)
    norm(x, training=True)
    mean, variance = moving_statistics_of(x)
    np.testing.assert_allclose(norm.moving_mean, mean, rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(norm.moving_variance, variance, rtol=1e-5)
    # The model's own layers keep the flag in a .keras file; nested ones are rebuilt unset.
    model.save(tmp_path / "model.keras")
    loaded = keras.saving.load_model(tmp_path / "model.keras")
    assert all(loaded.get_layer(layer.name).synchronized for layer in top)
    np.testing.assert_allclose(loaded.predict(x, verbose=0), model.predict(x, verbose=0))
    with pytest.raises(ValueError, match="model=3"):
        models.synchronize_batch_norm(3)


# A short run through the examples' --distribute code path (examples/distribute.py).
WORKER = """
import json, os, sys
sys.path.insert(0, {examples!r})
import distribute
distribution = distribute.start({mode!r})  # first: it configures TensorFlow's collectives
import keras
import numpy as np
import tensorflow as tf
from keras_attention import models
rng = np.random.default_rng(0)
images = rng.normal(size=(16, 8, 8, 1)).astype("float32")
images[4:8] += 3.0
labels = rng.integers(0, 3, size=16)
with distribution:
    with distribution.scope():
        keras.utils.set_random_seed(0)
        model = models.AttentionCNN("cbam", input_shape=(8, 8, 1), classes=3, widths=(4, 8))
        distribution.prepare(model)
        model.compile(
            optimizer=keras.optimizers.SGD(0.1),
            loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        )
    # Two global batches of 8: each worker takes half of each.
    model.fit(tf.data.Dataset.from_tensor_slices((images, labels)).batch(8), epochs=1, verbose=0)
print(json.dumps({{
    "task": distribution.task, "replicas": distribution.replicas,
    "weights": {{w.path: np.asarray(w).tolist() for w in model.weights}},
}}))
"""


def free_ports(count):
    sockets = [socket.socket() for _ in range(count)]
    try:
        for s in sockets:
            s.bind(("localhost", 0))
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


def test_multiworker_weights_agree_and_equal_one_process():
    pytest.importorskip("tensorflow")
    cluster = {"worker": [f"localhost:{port}" for port in free_ports(2)]}
    env = dict(os.environ, KERAS_BACKEND="tensorflow", TF_CPP_MIN_LOG_LEVEL="2")
    env.pop("TF_CONFIG", None)
    runs = []
    try:
        for index in range(2):
            config = {"cluster": cluster, "task": {"type": "worker", "index": index}}
            code = WORKER.format(examples=EXAMPLES, mode="multiworker")
            runs.append(start(code, dict(env, TF_CONFIG=json.dumps(config))))
        runs.append(start(WORKER.format(examples=EXAMPLES, mode=None), env))
        outs = [run.communicate(timeout=TIMEOUT) for run in runs]
    finally:
        for run in runs:  # nothing left waiting on a collective
            run.kill()
    for run, (stdout, stderr) in zip(runs, outs):
        assert run.returncode == 0, stderr[-3000:]
    chief, worker, one = (json.loads(stdout.strip().splitlines()[-1]) for stdout, _ in outs)
    assert (chief["task"], worker["task"]) == (None, "worker1")
    assert chief["replicas"] == worker["replicas"] == 2 and one["replicas"] == 1
    for path, value in one["weights"].items():
        np.testing.assert_array_equal(chief["weights"][path], worker["weights"][path], path)
        np.testing.assert_allclose(chief["weights"][path], value, atol=1e-5, err_msg=path)
    # The run changed the weights: the comparison is not of initial values.
    moved = [path for path in one["weights"] if path.endswith("moving_variance")]
    assert moved and all(np.max(np.abs(np.subtract(one["weights"][p], 1.0))) > 1e-2 for p in moved)


def start(code, env):
    return subprocess.Popen(
        [sys.executable, "-c", code],
        env=env,
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
