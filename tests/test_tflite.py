"""Deployment: every contract layer exports (`model.export`, batch left free) to a
SavedModel that reloads with the same outputs, and converts to TFLite with builtin
ops only, whose interpreter matches Keras.

TensorFlow only: SavedModel and TFLite are TensorFlow's formats. The layers join
through CASES of the layer contract.
"""

import os

import keras
import numpy as np
import pytest
from helpers import randomize_weights
from helpers import to_numpy
from test_layer_contract import ALL_CASES
from test_layer_contract import HEIGHT
from test_layer_contract import WIDTH
from test_layer_contract import make

pytestmark = [
    pytest.mark.skipif(
        keras.backend.backend() != "tensorflow",
        reason="SavedModel and TFLite are TensorFlow formats",
    ),
    # The documented path; LiteRT's interpreter (ai_edge_litert) is its successor.
    pytest.mark.filterwarnings("ignore:.*tf.lite.Interpreter is deprecated:UserWarning"),
]

BATCH = 2  # the batch stays free; HEIGHT x WIDTH is the contract's, which every case accepts


def exported_model(case, path):
    """A random-weight model of the layer, exported; returns (keras model, input)."""
    inputs = keras.Input((HEIGHT, WIDTH, case.channels))
    layer = make(case)
    model = keras.Model(inputs, layer(inputs))
    randomize_weights(layer)
    for weight in layer.weights:
        if len(weight.shape) >= 2:  # kernels: keep activations O(1) (STN's theta in range)
            fan_in = np.prod(weight.shape[:-1])
            weight.assign(keras.ops.convert_to_numpy(weight) / np.sqrt(fan_in))
    model.export(path, format="tf_saved_model", verbose=False)
    x = np.random.default_rng(0).normal(size=(BATCH, HEIGHT, WIDTH, case.channels))
    return model, x.astype("float32")


def tflite_outputs(path, x):
    import tensorflow as tf

    converter = tf.lite.TFLiteConverter.from_saved_model(path)
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
    interpreter = tf.lite.Interpreter(model_content=converter.convert())
    (inputs,) = interpreter.get_input_details()
    if tuple(inputs["shape"]) != x.shape:  # the batch is exported free (-1 or 1)
        interpreter.resize_tensor_input(inputs["index"], x.shape)
    interpreter.allocate_tensors()
    interpreter.set_tensor(inputs["index"], x)
    interpreter.invoke()
    (outputs,) = interpreter.get_output_details()
    return interpreter.get_tensor(outputs["index"])


@pytest.mark.parametrize("case", ALL_CASES)
def test_saved_model_and_tflite_builtins_match_keras(case, tmp_path):
    import tensorflow as tf

    path = os.fspath(tmp_path / "saved_model")
    model, x = exported_model(case, path)
    expected = to_numpy(model(x, training=False))
    assert np.abs(expected).max() > 0.01  # a comparison of zeros would prove nothing

    reloaded = tf.saved_model.load(path)
    np.testing.assert_allclose(to_numpy(reloaded.serve(x)), expected, rtol=1e-6, atol=1e-6)

    np.testing.assert_allclose(tflite_outputs(path, x), expected, rtol=1e-5, atol=1e-5)
