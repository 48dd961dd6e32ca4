import keras
from keras import ops

from keras_attention import ops as ka_ops
from keras_attention.layers.base import ImageAttentionLayer
from keras_attention.layers.base import check_choice
from keras_attention.layers.base import check_number
from keras_attention.layers.base import check_positive_int

FUSIONS = ("add", "mul", "mul_add")
POOLINGS = ("attention", "avg")


@keras.saving.register_keras_serializable(package="keras_attention")
class GlobalContext(ImageAttentionLayer):
    """Global context block (GCNet): attention pooling, then a channel transform fused in.

    Reference: Cao, Xu, Lin, Wei and Hu, "GCNet: Non-local Networks Meet
    Squeeze-Excitation Networks and Beyond", ICCV Workshops 2019
    (https://arxiv.org/abs/1904.11492).

    Context modelling: a 1x1 convolution (one output, with bias) scores every
    position, a softmax over all H*W positions (computed in float32) turns
    the scores into weights, and the weighted sum of the feature vectors is
    one context vector per image (the query-independent non-local block).
    Transform: `Dense(units) -> LayerNorm -> ReLU -> Dense(C)`, one per
    fusion. Fusion: "add" broadcasts the transform onto every position
    (`x + t(c)`, the paper's default), "mul" rescales the channels
    (`x * sigmoid(t(c))`, an SE-like gate) and "mul_add" does both, the
    product first (timm's order). The last Dense of the "add" transform starts
    at zero, so the block is the identity at initialisation, as in the paper.
    With `pooling="avg"` the context is the plain spatial mean (the paper's
    ablation).

    Volumes and clips: the same layer takes 5-D inputs; the softmax and the
    attention pooling then run over all D*H*W positions of each clip (timm-3d's
    `GlobalContext`), and the transform and fusion are unchanged.

    Mixed precision: the softmax over positions and the attention pooling (the
    weighted sum over positions) run in float32, and the pooled context is cast
    back; the transform and the fusion run in the compute dtype, with
    LayerNormalization's statistics in float32 (Keras's).

    Args:
        reduction: int, the bottleneck ratio r of the transform; it has
            `max(1, round(C / reduction))` hidden units. Defaults to 8.
        units: None or int, the hidden width itself (overrides `reduction`).
            Defaults to None.
        fusion: "add", "mul" or "mul_add". Defaults to "add".
        pooling: "attention" (the GC block) or "avg". Defaults to "attention".
        epsilon: float, the LayerNorm epsilon (the paper's code uses PyTorch's
            1e-5; timm's checkpoints 1e-6). Defaults to 1e-5.
        data_format: `"channels_last"`, `"channels_first"` or `None` (Keras's
            global `image_data_format`).
        **kwargs: base layer keyword arguments, such as `name` and `dtype`.

    Call arguments:
        inputs: a 4-D feature map or a 5-D volume or clip.
        training: unused; accepted for a uniform signature.
        return_attention: if True, also return a dict with "pooling", the
            softmax weights over positions, shape `(batch, H, W)`, or
            `(batch, D, H, W)` for volumes, whatever `data_format` is (absent
            with `pooling="avg"`), "add", the added vector `(batch, C)`, and
            "mul", the channel gate `(batch, C)`, for the fusions used.

    Input shape:
        `(batch, H, W, C)` (channels_last) or `(batch, C, H, W)`; volumes and
        clips `(batch, D, H, W, C)` or `(batch, C, D, H, W)`.

    Output shape:
        Same as the input.

    Example:

    >>> x = keras.Input((None, None, 64))
    >>> y = GlobalContext(reduction=8)(x)
    >>> y.shape
    (None, None, None, 64)
    """

    spatial_ranks = (2, 3)

    def __init__(
        self,
        reduction=8,
        units=None,
        fusion="add",
        pooling="attention",
        epsilon=1e-5,
        data_format=None,
        **kwargs,
    ):
        super().__init__(data_format=data_format, **kwargs)
        check_positive_int("reduction", reduction)
        check_positive_int("units", units, allow_none=True)
        check_choice("fusion", fusion, FUSIONS)
        check_choice("pooling", pooling, POOLINGS)
        check_number("epsilon", epsilon, positive=True)
        self.reduction = reduction
        self.units = units
        self.fusion = fusion
        self.pooling = pooling
        self.epsilon = epsilon

    def build(self, input_shape):
        channels = self._input_channels(input_shape)
        units = self.units or max(1, int(channels / self.reduction + 0.5))
        if self.pooling == "attention":
            self.conv_attn = keras.layers.Dense(1, dtype=self.dtype_policy, name="conv_attn")
            self.conv_attn.build((None, None, None, channels))
        self.transforms = {}
        for fusion in ("mul", "add"):
            if fusion not in self.fusion:
                continue
            last_init = "zeros" if fusion == "add" else "glorot_uniform"
            layers = [
                keras.layers.Dense(units, dtype=self.dtype_policy, name=f"{fusion}_fc1"),
                keras.layers.LayerNormalization(
                    epsilon=self.epsilon, dtype=self.dtype_policy, name=f"{fusion}_norm"
                ),
                keras.layers.Dense(
                    channels,
                    kernel_initializer=last_init,
                    dtype=self.dtype_policy,
                    name=f"{fusion}_fc2",
                ),
            ]
            layers[0].build((None, channels))
            layers[1].build((None, units))
            layers[2].build((None, units))
            setattr(self, f"{fusion}_fc1", layers[0])
            setattr(self, f"{fusion}_norm", layers[1])
            setattr(self, f"{fusion}_fc2", layers[2])
            self.transforms[fusion] = layers
        self.built = True

    def _transform(self, fusion, context):
        fc1, norm, fc2 = self.transforms[fusion]
        return fc2(ops.relu(norm(fc1(context))))

    def call(self, inputs, training=None, return_attention=False):
        attention = {}
        rank = len(inputs.shape)
        if self.pooling == "attention":
            x = ka_ops.to_channels_last(inputs, self.data_format)
            # (batch, H, W) or (batch, D, H, W): one score a position.
            scores = ops.cast(self.conv_attn(x)[..., 0], "float32")
            # A softmax over all spatial axes without flattening them.
            positions = tuple(range(1, len(scores.shape)))
            scores = ops.exp(scores - ops.max(scores, axis=positions, keepdims=True))
            weights = scores / ops.sum(scores, axis=positions, keepdims=True)
            # The attention pooling sums H*W (D*H*W) products: float32, then back.
            context = ops.sum(ops.cast(x, "float32") * weights[..., None], axis=positions)
            context = ops.cast(context, x.dtype)
            attention["pooling"] = ops.cast(weights, x.dtype)
        else:
            context = ka_ops.spatial_mean(inputs, self.data_format)
        outputs = inputs
        if "mul" in self.fusion:
            gate = ops.sigmoid(self._transform("mul", context))
            outputs = outputs * ka_ops.expand_channels(gate, self.data_format, rank)
            attention["mul"] = gate
        if "add" in self.fusion:
            added = self._transform("add", context)
            outputs = outputs + ka_ops.expand_channels(added, self.data_format, rank)
            attention["add"] = added
        return self._outputs(outputs, attention, return_attention)

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "reduction": self.reduction,
                "units": self.units,
                "fusion": self.fusion,
                "pooling": self.pooling,
                "epsilon": self.epsilon,
            }
        )
        return config
