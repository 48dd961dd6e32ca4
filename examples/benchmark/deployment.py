"""Deployed inference side by side: Keras, ONNX Runtime, LiteRT float and int8, timm.

    python -m examples.benchmark.deployment --models seresnet50,resnet50_cbam,halonet26t \
        --batches 1,32 --threads 2 --rounds 5 --output deployment.md

Each network is built with random weights (nothing downloads), exported from Keras on
TensorFlow to ONNX (`model.export(format="onnx")`) and to a SavedModel that the LiteRT
converter turns into a float model and a full-integer int8 one (calibrated on a few
random images), and timed beside timm's eager PyTorch model of the same architecture:
every runtime once per round, the order rotating, on the same input, with the same CPU
threads. Latency is the median call at batch 1; throughput is images per second at the
largest batch (batch / median call).
"""

import argparse
import gc
import os
import statistics
import sys
import tempfile
import time

import numpy as np

# Model key -> (Keras builder, timm builder, input size).
MODELS = {
    "seresnet50": ("from_timm:seresnet50", "seresnet50", 224),
    "resnet50_cbam": ("ResNet50:cbam", "resnet50:cbam", 224),
    "halonet26t": ("from_timm:halonet26t", "halonet26t", 256),
    "botnet26t_256": ("from_timm:botnet26t_256", "botnet26t_256", 256),
}
RUNTIMES = ("keras", "onnxruntime", "litert_float", "litert_int8", "timm")


def keras_model(spec, size):
    import keras_attention

    kind, name = spec.split(":")
    if kind == "from_timm":
        return keras_attention.models.from_timm(
            name, pretrained=False, input_shape=(size, size, 3), include_preprocessing=False
        )
    return keras_attention.models.ResNet50(attention=name, input_shape=(size, size, 3))


def timm_model(timm, spec):
    name, _, attention = spec.partition(":")
    kwargs = {"block_args": {"attn_layer": attention}} if attention else {}
    return timm.create_model(name, pretrained=False, **kwargs).eval()


def litert_models(model, size, folder):
    """(float, int8) LiteRT flatbuffers from `model`'s SavedModel (builtins only)."""
    import tensorflow as tf

    saved = os.path.join(folder, "saved_model")
    model.export(saved, format="tf_saved_model", verbose=False)
    converter = tf.lite.TFLiteConverter.from_saved_model(saved)
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
    floating = converter.convert()
    samples = np.random.default_rng(2).uniform(0, 1, (4, size, size, 3)).astype("float32")
    converter = tf.lite.TFLiteConverter.from_saved_model(saved)
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    converter.representative_dataset = lambda: ([s[None]] for s in samples)
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    converter.inference_input_type = tf.int8
    converter.inference_output_type = tf.int8
    return floating, converter.convert()


def litert_call(content, x, threads):
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_content=content, num_threads=threads)
    (inputs,) = interpreter.get_input_details()
    (outputs,) = interpreter.get_output_details()
    interpreter.resize_tensor_input(inputs["index"], x.shape)
    interpreter.allocate_tensors()
    scale, zero = inputs["quantization"]
    if inputs["dtype"] == np.int8:  # the int8 model's own input quantization
        x = np.clip(np.round(x / scale) + zero, -128, 127).astype(np.int8)

    def call():
        interpreter.set_tensor(inputs["index"], x)
        interpreter.invoke()
        return interpreter.get_tensor(outputs["index"])

    return call


def onnx_session(model, folder, threads):
    import onnxruntime

    path = os.path.join(folder, "model.onnx")
    model.export(path, format="onnx", verbose=False)
    gc.collect()
    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    return onnxruntime.InferenceSession(path, options, providers=["CPUExecutionProvider"])


def onnx_call(session, x):
    name = session.get_inputs()[0].name
    return lambda: session.run(None, {name: x})


def timm_call(timm, module, x):
    torch = timm.torch
    nchw = torch.from_numpy(np.ascontiguousarray(np.moveaxis(x, -1, 1)))

    def call():
        with torch.no_grad():
            return module(nchw)

    return call


def keras_call(model, x):
    import tensorflow as tf

    forward = tf.function(lambda x: model(x, training=False))
    tensor = tf.constant(x)
    return lambda: forward(tensor).numpy()


def time_runtimes(calls, rounds):
    for call in calls.values():
        call()
    keys = list(calls)
    samples = {key: [] for key in keys}
    for index in range(rounds):
        shift = index % len(keys)
        for key in keys[shift:] + keys[:shift]:
            start = time.perf_counter()
            calls[key]()
            samples[key].append(time.perf_counter() - start)
    return {key: statistics.median(times) for key, times in samples.items()}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--models", default="seresnet50,resnet50_cbam,halonet26t")
    parser.add_argument("--batches", default="1,32")
    parser.add_argument("--threads", type=int, default=os.cpu_count())
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--output", default=None)
    args = parser.parse_args(argv)
    from .machine import pin_threads
    from .references import import_timm

    pin_threads(args.threads)
    timm = import_timm()
    lines = [
        "| model | batch | runtime | latency ms | images/s | x Keras |",
        "|---|---:|---|---:|---:|---:|",
    ]
    for key in args.models.split(","):
        spec, timm_spec, size = MODELS[key]
        print(f"{key}: building and converting ...", file=sys.stderr, flush=True)
        model = keras_model(spec, size)
        module = timm_model(timm, timm_spec)
        with tempfile.TemporaryDirectory() as folder:
            probe = np.zeros((1, size, size, 3), "float32")
            model.predict(probe, verbose=0)
            session = onnx_session(model, folder, args.threads)
            floating, int8 = litert_models(model, size, folder)
            gc.collect()
            for batch in (int(b) for b in args.batches.split(",")):
                x = np.random.default_rng(0).uniform(0, 1, (batch, size, size, 3))
                x = x.astype("float32")
                calls = {
                    "keras": keras_call(model, x),
                    "onnxruntime": onnx_call(session, x),
                    "litert_float": litert_call(floating, x, args.threads),
                    "litert_int8": litert_call(int8, x, args.threads),
                    "timm": timm_call(timm, module, x),
                }
                print(f"{key}: timing batch {batch} ...", file=sys.stderr, flush=True)
                medians = time_runtimes(calls, args.rounds)
                for runtime in RUNTIMES:
                    seconds = medians[runtime]
                    lines.append(
                        f"| {key} | {batch} | {runtime} | {1000 * seconds:.1f} | "
                        f"{batch / seconds:.1f} | {seconds / medians['keras']:.2f} |"
                    )
                print("\n".join(lines), flush=True)
    if args.output:
        with open(args.output, "w") as handle:
            handle.write("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
