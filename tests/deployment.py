"""Deployment test helpers: random-weight layer models and a LiteRT interpreter.

Shared by test_tflite.py (SavedModel, LiteRT float and int8) and test_onnx.py.
"""

import keras
import numpy as np
from helpers import randomize_weights
from test_layer_contract import make
from test_layer_contract import random_input


def layer_model(case):
    """A model of the case's layer on the contract's input shape (an image or a clip),
    batch free, random weights.

    Kernels are divided by sqrt(fan-in) so that activations stay O(1) (and STN's
    theta in range): a comparison that saturates every sigmoid proves little.
    """
    inputs = keras.Input(random_input(case).shape[1:])
    layer = make(case)
    model = keras.Model(inputs, layer(inputs))
    randomize_weights(layer)
    for weight in layer.weights:
        if len(weight.shape) >= 2:
            fan_in = np.prod(weight.shape[:-1])
            weight.assign(keras.ops.convert_to_numpy(weight) / np.sqrt(fan_in))
    return model


def layer_input(case, batch=2, seed=0):
    shape = (batch, *random_input(case).shape[1:])
    return np.random.default_rng(seed).normal(size=shape).astype("float32")


def litert_interpreter(model_content):
    """LiteRT's interpreter (`ai_edge_litert`); tf.lite's deprecated one if it is missing."""
    try:
        from ai_edge_litert.interpreter import Interpreter
    except ImportError:
        import tensorflow as tf

        Interpreter = tf.lite.Interpreter
    return Interpreter(model_content=model_content)


def run_single_input(model_content, x):
    """Runs a one-input, one-output LiteRT model on `x` (batch resized to x's)."""
    interpreter = litert_interpreter(model_content)
    (inputs,) = interpreter.get_input_details()
    if tuple(inputs["shape"]) != x.shape:  # the batch is exported free (-1 or 1)
        interpreter.resize_tensor_input(inputs["index"], x.shape)
    interpreter.allocate_tensors()
    interpreter.set_tensor(inputs["index"], x)
    interpreter.invoke()
    (outputs,) = interpreter.get_output_details()
    return interpreter.get_tensor(outputs["index"])


def int8_tflite(saved_model, samples):
    """Full-integer int8 post-training quantization of the SavedModel at `saved_model`.

    `samples` (N, ...) float32 are the representative data, fed one by one for the
    activation ranges. Int8 builtins only, int8 input and output: the converter
    fails rather than leave a float op, and the model is what an integer-only
    accelerator runs.
    """
    import tensorflow as tf

    def representative():
        for sample in samples:
            yield [sample[None]]

    converter = tf.lite.TFLiteConverter.from_saved_model(saved_model)
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    converter.representative_dataset = representative
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    converter.inference_input_type = tf.int8
    converter.inference_output_type = tf.int8
    return converter.convert()


def run_int8(model_content, x):
    """Runs an int8-in, int8-out LiteRT model on float `x`; returns float outputs.

    Quantizes `x` and dequantizes the output with the model's own scale and zero
    point, as a float interface would.
    """
    interpreter = litert_interpreter(model_content)
    (inputs,) = interpreter.get_input_details()
    (outputs,) = interpreter.get_output_details()
    scale, zero = inputs["quantization"]
    q = np.clip(np.round(x / scale) + zero, -128, 127).astype(np.int8)
    if tuple(inputs["shape"]) != x.shape:
        interpreter.resize_tensor_input(inputs["index"], x.shape)
    interpreter.allocate_tensors()
    interpreter.set_tensor(inputs["index"], q)
    interpreter.invoke()
    scale, zero = outputs["quantization"]
    return (interpreter.get_tensor(outputs["index"]).astype(np.float32) - zero) * scale
