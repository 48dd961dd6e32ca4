"""timm's VOLO family (timm/models/volo.py) in Keras.

Yuan, Hou, Jiang, Feng and Yan, "VOLO: Vision Outlooker for Visual
Recognition", TPAMI 2022 (https://arxiv.org/abs/2106.13112). A convolutional
stem embeds 8x8 patches; outlooker blocks (`layers.OutlookAttention` + MLP)
run on that map, a strided 2x2 conv halves it, a learned position embedding
is added, and transformer blocks (multi-head self-attention + MLP) follow;
then a class token, two class-attention blocks, LayerNorm, and timm's
token-labelling head in eval: `head(token 0) + 0.5 * max over the other
tokens of aux_head(token)`. Stochastic depth and dropout are the identity
at inference, so they are left out. Layers are named after timm's module
paths, "." -> "_".

The position embedding fixes the image size: an input height or width of
None takes the checkpoint's size (`size` of the entry).
"""

import dataclasses
import functools

import keras

from keras_attention import layers
from keras_attention.models import _common
from keras_attention.models.conv import Conv2D
from keras_attention.models.timm.blocks import check_top
from keras_attention.models.timm.blocks import conv_bn
from keras_attention.models.timm.blocks import model_inputs
from keras_attention.models.timm.blocks import refuse_features
from keras_attention.models.timm.spec import spec
from keras_attention.models.transformer import ClassAttention
from keras_attention.models.transformer import ClassToken
from keras_attention.models.transformer import MultiHeadSelfAttention
from keras_attention.models.transformer import PositionEmbedding

LAYER_NORM_EPSILON = 1e-5  # PyTorch's nn.LayerNorm default, which timm's VOLO uses
_TOKENS = "channels_last"  # tokens are (batch, H, W, C) or (batch, N, C) in either format


@dataclasses.dataclass(frozen=True)
class Layout:
    """One VOLO: timm's `layers`, `embed_dims`, `num_heads`, `mlp_ratio`, `stem_hidden_dim`."""

    blocks: tuple  # the outlooker stage, then the transformer stages
    dims: tuple
    heads: tuple
    mlp_ratio: float = 3.0
    stem_width: int = 64


def _layer_norm(x, name):
    return keras.layers.LayerNormalization(epsilon=LAYER_NORM_EPSILON, name=name)(x)


def _mlp(x, hidden, name):
    """timm's Mlp: fc1, exact (erf) GELU, fc2."""
    channels = x.shape[-1]
    x = keras.layers.Dense(hidden, name=f"{name}_fc1")(x)
    # Keras's "gelu" is the exact one (approximate=False), as PyTorch's nn.GELU.
    x = keras.layers.Activation("gelu", name=f"{name}_act")(x)
    return keras.layers.Dense(channels, name=f"{name}_fc2")(x)


def _residual(x, attention, hidden, name):
    """x + attention(norm1(x)), then + mlp(norm2(.)): timm's Outlooker and Transformer."""
    y = attention(_layer_norm(x, f"{name}_norm1"))
    x = keras.layers.Add(name=f"{name}_add1")([x, y])
    y = _mlp(_layer_norm(x, f"{name}_norm2"), hidden, f"{name}_mlp")
    return keras.layers.Add(name=f"{name}_add2")([x, y])


def _class_block(x, heads, hidden, name):
    """timm's ClassBlock: only the class token (token 0) is updated."""
    token = x[:, :1]
    y = ClassAttention(num_heads=heads, name=f"{name}_attn")(_layer_norm(x, f"{name}_norm1"))
    token = keras.layers.Add(name=f"{name}_add1")([token, y])
    y = _mlp(_layer_norm(token, f"{name}_norm2"), hidden, f"{name}_mlp")
    token = keras.layers.Add(name=f"{name}_add2")([token, y])
    return keras.layers.Concatenate(axis=1, name=f"{name}_concat")([token, x[:, 1:]])


def _image_shape(input_shape, image_size):
    """`input_shape` with a None height or width replaced by the checkpoint's size."""
    shape = list(input_shape) if isinstance(input_shape, (list, tuple)) else None
    channels_axis, spatial = (2, (0, 1)) if _common.channel_axis() == -1 else (0, (1, 2))
    if shape is not None and len(shape) == 3 and isinstance(shape[channels_axis], int):
        for axis in spatial:
            shape[axis] = image_size if shape[axis] is None else shape[axis]
        return tuple(shape)
    return input_shape  # image_input's ValueError names it


def _head(x, include_top, pooling, classes, head_name):
    if not include_top:
        if pooling == "avg":
            return keras.layers.GlobalAveragePooling1D(data_format=_TOKENS, name="global_pool")(x)
        if pooling == "max":
            return keras.layers.GlobalMaxPooling1D(data_format=_TOKENS, name="global_pool")(x)
        return x
    logits = keras.layers.Dense(classes, dtype="float32", name=head_name)(x[:, 0])
    aux = keras.layers.Dense(classes, dtype="float32", name="aux_head")(x[:, 1:])
    aux = keras.layers.GlobalMaxPooling1D(data_format=_TOKENS, name="aux_head_max")(aux)
    aux = keras.layers.Rescaling(0.5, dtype="float32", name="aux_head_half")(aux)
    return keras.layers.Add(dtype="float32", name="logits")([logits, aux])


def build(layout, options, image_size=224):
    """The functional VOLO of `layout`, built as `options` (a `BuildOptions`) asks.

    Headless (`include_top=False`), it returns the normalised tokens
    `(batch, 1 + N, C)`, the class token first, or their mean or max with
    `pooling="avg"`/`"max"`.
    """
    refuse_features(
        options,
        "timm's VOLO has no output_stride, and its features_only maps (the outlooker "
        "stage's at stride 8, then three transformer stages' all at stride 16) are not "
        'built here: maps of one stride share a "P<level>" key of pyramid_outputs.',
    )
    check_top(options)
    inputs, x = model_inputs(options, _image_shape(options.input_shape, image_size))
    width = layout.stem_width
    x = conv_bn(x, width, 7, 2, "patch_embed_conv_0", "patch_embed_conv_1", "patch_embed_conv_2")
    x = conv_bn(x, width, 3, 1, "patch_embed_conv_3", "patch_embed_conv_4", "patch_embed_conv_5")
    x = conv_bn(x, width, 3, 1, "patch_embed_conv_6", "patch_embed_conv_7", "patch_embed_conv_8")
    # 8x8 patches: the stem's stride 2, then a 4x4 conv of stride 4.
    x = Conv2D(layout.dims[0], 4, strides=4, name="patch_embed_proj")(x)
    if _common.channel_axis() == 1:
        x = keras.layers.Permute((2, 3, 1), name="patch_embed_to_tokens")(x)

    hidden = [int(d * layout.mlp_ratio) for d in layout.dims]
    for j in range(layout.blocks[0]):
        attention = layers.OutlookAttention(
            num_heads=layout.heads[0], stride=2, data_format=_TOKENS, name=f"network_0_{j}_attn"
        )
        x = _residual(x, attention, hidden[0], f"network_0_{j}")
    x = Conv2D(layout.dims[1], 2, strides=2, data_format=_TOKENS, name="network_1_proj")(x)
    x = PositionEmbedding(name="pos_embed")(x)
    x = keras.layers.Reshape((-1, layout.dims[1]), name="tokens")(x)
    for stage in range(1, len(layout.blocks)):
        for j in range(layout.blocks[stage]):
            n = f"network_{stage + 1}_{j}"
            attention = MultiHeadSelfAttention(num_heads=layout.heads[stage], name=f"{n}_attn")
            x = _residual(x, attention, hidden[stage], n)

    x = ClassToken(name="cls_token")(x)
    for i in range(2):
        x = _class_block(x, layout.heads[-1], hidden[-1], f"post_network_{i}")
    x = _layer_norm(x, "norm")
    outputs = _head(x, options.include_top, options.pooling, options.classes, options.head_name)
    return keras.Model(inputs, outputs, name=options.name)


def _entry(layout, size=224, crop=0.96):
    """timm's VOLO pretrained_cfg: every default tag is "sail_in1k", bicubic, ImageNet's
    mean and std; the crop is 0.96 at 224, else as the weights' own."""
    return spec(
        functools.partial(build, layout, image_size=size),
        "sail_in1k",
        size=size,
        crop=crop,
        head=("head", "aux_head"),
    )


_D1 = Layout((4, 4, 8, 2), (192, 384, 384, 384), (6, 12, 12, 12))
_D2 = Layout((6, 4, 10, 4), (256, 512, 512, 512), (8, 16, 16, 16))
_D3 = Layout((8, 8, 16, 4), (256, 512, 512, 512), (8, 16, 16, 16))
_D4 = Layout((8, 8, 16, 4), (384, 768, 768, 768), (12, 16, 16, 16))
_D5 = Layout((12, 12, 20, 4), (384, 768, 768, 768), (12, 16, 16, 16), 4.0, 128)

MODELS = {
    "volo_d1_224": _entry(_D1),
    "volo_d1_384": _entry(_D1, 384, 1.0),
    "volo_d2_224": _entry(_D2),
    "volo_d2_384": _entry(_D2, 384, 1.0),
    "volo_d3_224": _entry(_D3),
    "volo_d3_448": _entry(_D3, 448, 1.0),
    "volo_d4_224": _entry(_D4),
    "volo_d4_448": _entry(_D4, 448, 1.15),
    "volo_d5_224": _entry(_D5),
    "volo_d5_448": _entry(_D5, 448, 1.15),
    "volo_d5_512": _entry(_D5, 512, 1.15),
}

SUBLAYERS = {
    layers.OutlookAttention: {"v": "value", "attn": "attention", "proj": "projection"},
    MultiHeadSelfAttention: {"qkv": "qkv", "proj": "proj"},
    ClassAttention: {"q": "q", "kv": "kv", "proj": "proj"},
    PositionEmbedding: {"": "embedding"},
    ClassToken: {"": "token"},
}
