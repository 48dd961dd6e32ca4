"""The input range of a `from_timm` model, checked on every batch.

A model made for RGB in [0, 1] runs silently on 0-255 images and returns
confident garbage; `InputRange` makes that mistake loud at no measurable cost
(one max and one min over the input).
"""

import math

import keras
from keras import ops


def check_input_range(input_range):
    """`input_range` as a (low, high) pair of floats; ValueError naming it otherwise."""
    valid = (
        isinstance(input_range, (list, tuple))
        and len(input_range) == 2
        and all(
            isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)
            for v in input_range
        )
        and input_range[0] < input_range[1]
    )
    if not valid:
        raise ValueError(
            "`input_range` must be a pair (low, high) of finite numbers with low < high, "
            f"e.g. (0, 1) or (0, 255). Received: input_range={input_range!r}"
        )
    return float(input_range[0]), float(input_range[1])


def _is_concrete(x):
    """Whether `x` holds values Python can read now (eager), not a traced placeholder."""
    backend = keras.config.backend()
    if backend == "tensorflow":
        import tensorflow as tf

        return tf.executing_eagerly()
    if backend == "jax":
        from jax.core import Tracer

        return not isinstance(x, Tracer)
    if backend == "torch":
        import torch

        return not torch.compiler.is_compiling() and x.device.type != "meta"
    return False  # pragma: no cover - another backend: the in-graph check only


@keras.saving.register_keras_serializable(package="keras_attention")
class InputRange(keras.layers.Layer):
    """Passes images through and refuses a batch far outside `[low, high]`.

    A batch is out of range when a value exceeds `high + (high - low)` or is
    below `low - (high - low)`: RGB in [0, 1] passes (and the small overshoot
    of bicubic resizing or colour augmentation), 0-255 images do not (any
    pixel above 2), nor do images that are normalised already (any below -1).

    Eager calls (`model(images)` on any backend, PyTorch's `fit`/`predict`,
    `run_eagerly=True`) raise a `ValueError` that says what was seen and what
    to do. Where Python cannot raise, inside a compiled step (TensorFlow's
    `tf.function`/XLA and `tf.data`, JAX's `jit`, `torch.compile`, exported
    graphs), an out-of-range batch comes out as NaN instead of plausible
    logits, so its loss and predictions show it.

    Args:
        low: the lowest value of the expected range.
        high: the highest value of the expected range.

    Input shape:
        Any.

    Output shape:
        The input's.

    Example:

    >>> check = InputRange(0.0, 1.0)
    >>> check(np.full((1, 4, 4, 3), 0.5, "float32")).shape
    (1, 4, 4, 3)
    """

    def __init__(self, low=0.0, high=1.0, **kwargs):
        super().__init__(**kwargs)
        self.low, self.high = check_input_range((low, high))
        self.supports_masking = True

    def _bounds(self):
        margin = self.high - self.low
        return self.low - margin, self.high + margin

    def call(self, inputs):
        lowest, highest = self._bounds()
        if _is_concrete(inputs):
            seen_min, seen_max = (
                float(v)
                for v in ops.convert_to_numpy(ops.stack([ops.min(inputs), ops.max(inputs)]))
            )
            if seen_max > highest or seen_min < lowest:
                raise ValueError(self._message(seen_min, seen_max))
            return inputs
        bad = ops.logical_or(ops.max(inputs) > highest, ops.min(inputs) < lowest)
        poison = ops.cast(ops.where(bad, float("nan"), 0.0), inputs.dtype)
        return inputs + poison

    def _message(self, seen_min, seen_max):
        low, high = f"{self.low:g}", f"{self.high:g}"
        hint = ""
        if (self.low, self.high) == (0.0, 1.0) and seen_max > 2:
            hint = (
                " 0-255 images? Divide them by 255, or build the model with "
                "from_timm(name, input_range=(0, 255))."
            )
        return (
            f"The model takes RGB images in [{low}, {high}] (layer "
            f"{self.name!r}), but this batch holds values in [{seen_min:g}, {seen_max:g}]."
            f"{hint}"
        )

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {**super().get_config(), "low": self.low, "high": self.high}
