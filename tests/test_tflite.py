"""Deployment: every contract layer exports (`model.export`, batch left free) to a
SavedModel that reloads with the same outputs, and converts to TFLite with builtin
ops only, whose LiteRT interpreter (`ai_edge_litert`; tf.lite's only where that
package is missing: tests/deployment.py) matches Keras; and that full-integer int8
quantization of each stays within a stated tolerance of float.

TensorFlow only: SavedModel and TFLite are TensorFlow's formats. The layers join
through CASES of the layer contract.
"""

import os

import keras
import numpy as np
import pytest
from deployment import int8_tflite
from deployment import layer_input
from deployment import layer_model
from deployment import litert_interpreter
from deployment import run_int8
from deployment import run_single_input
from helpers import to_numpy
from test_layer_contract import ALL_CASES

pytestmark = pytest.mark.skipif(
    keras.backend.backend() != "tensorflow",
    reason="SavedModel and TFLite are TensorFlow formats",
)


def float_tflite(path):
    """The SavedModel at `path` converted with TFLite builtin ops only (no Select TF ops)."""
    import tensorflow as tf

    converter = tf.lite.TFLiteConverter.from_saved_model(path)
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
    return converter.convert()


@pytest.mark.parametrize("case", ALL_CASES)
def test_saved_model_and_tflite_builtins_match_keras(case, tmp_path):
    import tensorflow as tf

    path = os.fspath(tmp_path / "saved_model")
    model, x = layer_model(case), layer_input(case)
    model.export(path, format="tf_saved_model", verbose=False)
    expected = to_numpy(model(x, training=False))
    assert np.abs(expected).max() > 0.01  # a comparison of zeros would prove nothing

    reloaded = tf.saved_model.load(path)
    np.testing.assert_allclose(to_numpy(reloaded.serve(x)), expected, rtol=1e-6, atol=1e-6)

    actual = run_single_input(float_tflite(path), x)
    np.testing.assert_allclose(actual, expected, rtol=1e-5, atol=1e-5)


# Full-integer int8: max |int8 - float| over the float output's range (max - min).
# One output step is 1/255 of the range; 0.05 leaves room for the ~10 steps a
# chain of requantized ops (pooling, MLP, sigmoid, product) adds. The layers
# over it, each measured near 0.06-0.10 (docs/deployment.md): the STN's
# sampling positions are quantized and its white-noise test image changes
# within a pixel; BoT's and HaloNet's relative-logit softmax runs at a small
# output range; ELA's group-normalized strip gates multiply twice.
INT8_TOLERANCE = 0.05
INT8_EXCEPTIONS = {
    "SpatialTransformer": 0.12,
    "BottleneckSelfAttention": 0.12,
    "HaloAttention": 0.12,
    "EfficientLocalAttention": 0.12,
    # Three strip gates multiply on a clip (measured 0.156).
    "EfficientLocalAttention-3d": 0.2,
}


@pytest.mark.parametrize("case", ALL_CASES)
def test_int8_quantized_stays_within_tolerance_of_float(case, tmp_path):
    path = os.fspath(tmp_path / "saved_model")
    model = layer_model(case)
    model.export(path, format="tf_saved_model", verbose=False)
    # Calibration and evaluation draw different samples of the same distribution.
    samples = layer_input(case, batch=32, seed=2)
    content = int8_tflite(path, samples)
    x = layer_input(case, batch=4, seed=1)
    expected = to_numpy(model(x, training=False))
    actual = run_int8(content, x)

    interpreter = litert_interpreter(content)
    for detail in interpreter.get_input_details() + interpreter.get_output_details():
        assert detail["dtype"] == np.int8
    output_range = expected.max() - expected.min()
    assert output_range > 0.1  # a comparison of near-constants would prove nothing
    error = np.abs(actual - expected).max() / output_range
    tolerance = INT8_EXCEPTIONS.get(case.id, INT8_EXCEPTIONS.get(case.cls.__name__))
    assert error <= (tolerance or INT8_TOLERANCE)
