"""ONNX: every layer, a from_timm ResNet and an attention ResNet50 export with
`model.export(path, format="onnx")` and run in onnxruntime equal to Keras
(float32, 1e-5 relative to the output's largest magnitude).

On TensorFlow, Keras converts the traced function with tf2onnx (the `deploy`
extra: tf2onnx, onnx, onnxruntime). The layers join through CASES of the layer
contract; AttentionGate, the one two-input layer, has its own test here.
"""

import keras
import numpy as np
import pytest
from deployment import layer_input
from deployment import layer_model
from helpers import randomize_weights
from helpers import to_numpy
from test_layer_contract import ALL_CASES

from keras_attention.layers import AttentionGate

ort = pytest.importorskip("onnxruntime")
pytestmark = pytest.mark.skipif(
    keras.backend.backend() != "tensorflow",
    reason="the TensorFlow export (tf2onnx) is the one tested; JAX's needs jax2onnx",
)


def onnx_outputs(model, inputs, path):
    """Exports `model` to ONNX at `path` and runs `inputs` (a list) in onnxruntime."""
    model.export(str(path), format="onnx", verbose=False)
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    names = [spec.name for spec in session.get_inputs()]
    assert len(names) == len(inputs)
    return session.run(None, dict(zip(names, inputs)))


def assert_equal_to_keras(model, inputs, path):
    expected = to_numpy(model(inputs if len(inputs) > 1 else inputs[0], training=False))
    scale = np.abs(expected).max()
    assert scale > 0.01  # a comparison of zeros would prove nothing
    (actual,) = onnx_outputs(model, inputs, path)
    assert actual.shape == expected.shape
    np.testing.assert_allclose(actual, expected, rtol=0, atol=1e-5 * scale)


@pytest.mark.parametrize("case", ALL_CASES)
def test_layer_exports_to_onnx_and_matches_keras(case, tmp_path):
    assert_equal_to_keras(layer_model(case), [layer_input(case)], tmp_path / "model.onnx")


def test_attention_gate_exports_to_onnx_and_matches_keras(tmp_path):
    inputs = [keras.Input((8, 10, 8)), keras.Input((4, 5, 12))]
    layer = AttentionGate(inter_channels=4)
    model = keras.Model(inputs, layer(inputs))
    randomize_weights(layer)
    rng = np.random.default_rng(0)
    pair = [rng.normal(size=(2, *t.shape[1:])).astype("float32") for t in inputs]
    assert_equal_to_keras(model, pair, tmp_path / "model.onnx")


@pytest.mark.slow  # 47 s; from_timm("resnet18")'s export runs in CI
def test_attention_resnet50_exports_to_onnx(tmp_path):
    from keras_attention.models import ResNet50

    model = ResNet50(attention="se", input_shape=(32, 32, 3), classes=10)
    x = np.random.default_rng(0).uniform(size=(2, 32, 32, 3)).astype("float32")
    assert_equal_to_keras(model, [x], tmp_path / "model.onnx")


def test_from_timm_resnet_exports_to_onnx(tmp_path):
    from keras_attention.models import from_timm

    # With its "preprocessing" layer: mean and std must become graph constants,
    # not extra ONNX inputs (the session is refused unless it has exactly one).
    model = from_timm("resnet18", pretrained=False, input_shape=(32, 32, 3))
    x = np.random.default_rng(0).uniform(size=(2, 32, 32, 3)).astype("float32")
    assert_equal_to_keras(model, [x], tmp_path / "model.onnx")
