"""Deployment: every contract layer exports (`model.export`, batch left free) to a
SavedModel that reloads with the same outputs, and converts to TFLite with builtin
ops only, whose LiteRT interpreter (`ai_edge_litert`; tf.lite's only where that
package is missing: tests/deployment.py) matches Keras.

TensorFlow only: SavedModel and TFLite are TensorFlow's formats. The layers join
through CASES of the layer contract.
"""

import os

import keras
import numpy as np
import pytest
from deployment import layer_input
from deployment import layer_model
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
