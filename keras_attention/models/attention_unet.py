"""Attention U-Net (Oktay et al.) and the plain U-Net of the same widths, for images or volumes."""

import keras

from keras_attention.layers import AttentionGate
from keras_attention.layers.max_pooling3d import MaxPooling3D
from keras_attention.models import _common
from keras_attention.models.conv import Conv2D
from keras_attention.models.conv import Conv3D
from keras_attention.models.resize import ResizeLike

# The released CT network's widths: [64, 128, 256, 512, 1024] / feature_scale 4.
CT_FILTERS = (16, 32, 64, 128, 256)
GATES = (1, 2)


def _layer(dims, two_d, three_d):
    return {2: two_d, 3: three_d}[dims]


def _conv(x, dims, filters, kernel_size, name, dtype=None):
    """A convolution with bias, 'same' padding (PyTorch's padding 1 for 3x3x3).

    The package's Conv2D/Conv3D: Keras's put a channels_first bias on the
    wrong axis on TensorFlow where a level's width equals its filters.
    """
    cls = _layer(dims, Conv2D, Conv3D)
    return cls(filters, kernel_size, padding="same", name=name, dtype=dtype)(x)


def _conv_bn_relu(x, dims, filters, kernel_size, name):
    x = _conv(x, dims, filters, kernel_size, name)
    x = _common.batch_norm(x, f"{name}_bn")
    return keras.layers.Activation("relu", name=f"{name}_relu")(x)


def _double_conv(x, dims, filters, name):
    """The released `UnetConv3`: two (3x3x3 conv with bias, BN, ReLU)."""
    x = _conv_bn_relu(x, dims, filters, 3, f"{name}_1")
    return _conv_bn_relu(x, dims, filters, 3, f"{name}_2")


def _gated_skip(skip, gating, dims, channels, gates, sub_sample, name):
    """The released `MultiAttentionBlock`: `gates` grid attention gates, then 1x1 conv, BN, ReLU.

    Each gate has inter_channels = the skip's channels, as in the released
    network. With two gates their outputs are concatenated first.
    """
    outputs, alphas = [], []
    for n in range(1, gates + 1):
        gate = AttentionGate(inter_channels=channels, sub_sample=sub_sample, name=f"{name}_gate{n}")
        gated, alpha = gate([skip, gating], return_attention=True)
        outputs.append(gated)
        alphas.append(alpha)
    x = outputs[0]
    if gates > 1:
        x = keras.layers.Concatenate(axis=_common.channel_axis(), name=f"{name}_concat")(outputs)
    return _conv_bn_relu(x, dims, channels, 1, f"{name}_combine"), alphas


def _check_arguments(classes, dims, filters, gates, sub_sample):
    _common.check_classes(classes)
    if dims not in (2, 3) or isinstance(dims, bool):
        raise ValueError(f"`dims` must be 2 (images) or 3 (volumes). Received: dims={dims!r}")
    widths = tuple(filters) if isinstance(filters, (list, tuple)) else ()
    if len(widths) < 2 or not all(
        isinstance(w, int) and not isinstance(w, bool) and w > 0 for w in widths
    ):
        raise ValueError(
            "`filters` must be a tuple of at least 2 positive ints (the encoder's widths, "
            f"the last one the bottleneck's). Received: filters={filters!r}"
        )
    if gates not in GATES or isinstance(gates, bool):
        raise ValueError(f"`gates` must be one of {GATES}. Received: gates={gates!r}")
    if not isinstance(sub_sample, int) or isinstance(sub_sample, bool) or sub_sample < 1:
        raise ValueError(
            f"`sub_sample` must be a positive integer. Received: sub_sample={sub_sample!r}"
        )
    return widths


def _input(input_shape, dims):
    _common.check_data_format_runs()
    if input_shape is None:
        spatial = (None,) * dims
        channels_last = _common.channel_axis() == -1
        input_shape = spatial + (1,) if channels_last else (1,) + spatial
    shape = tuple(input_shape) if isinstance(input_shape, (list, tuple)) else ()
    channel_index = -1 if _common.channel_axis() == -1 else 0  # `shape` has no batch axis
    channels = shape[channel_index] if len(shape) == dims + 1 else None
    if not (isinstance(channels, int) and channels > 0):
        raise ValueError(
            f"`input_shape` must be a tuple of {dims + 1} dimensions (dims={dims} spatial axes "
            "and the channels, in the global image_data_format) with a known channel count; "
            f"the spatial sizes may be None. Received: input_shape={input_shape!r}"
        )
    return keras.Input(shape=shape, name="volume" if dims == 3 else "image")


def AttentionUNet(
    classes,
    input_shape=None,
    dims=3,
    filters=CT_FILTERS,
    attention=True,
    gates=2,
    sub_sample=2,
    deep_supervision=True,
    name=None,
):
    """Builds Oktay et al.'s Attention U-Net for volumes (dims=3) or images (dims=2).

    Reference: Oktay, Schlemper, Le Folgoc, Lee, Heinrich, Misawa, Mori,
    McDonagh, Hammerla, Kainz, Glocker and Rueckert, "Attention U-Net:
    Learning Where to Look for the Pancreas", MIDL 2018
    (https://arxiv.org/abs/1804.03999).

    The network of the authors' released CT configuration
    (ozan-oktay/Attention-Gated-Networks, `configs/config_unet_ct_multi_att_dsv.json`:
    `unet_ct_multi_att_dsv`, feature_scale 4, 3-D):

    - encoder: per level two (3x3x3 conv with bias, BN, ReLU), 2x2x2 max
      pooling; widths `filters` = (16, 32, 64, 128, 256), the last one the
      bottleneck ("center");
    - gating signal: the bottleneck through a 1x1x1 conv, BN, ReLU;
    - grid attention gates (`AttentionGate`, theta a `sub_sample`^3 conv with
      that stride, inter_channels = the skip's width) on every skip but the
      first: the deepest gated by the gating signal, each other one by the
      decoder's output one level below; `gates=2` (the released
      `MultiAttentionBlock`) runs two gates on the same inputs, concatenates
      their outputs and mixes them by a 1x1x1 conv, BN, ReLU; `gates=1` is
      `unet_ct_single_att_dsv` (one gate, then the same conv, BN, ReLU);
    - decoder: trilinear x2 upsampling (here: resizing to the skip's size),
      concatenation [skip, upsampled], two (3x3x3 conv, BN, ReLU);
    - deep supervision: a 1x1x1 conv to `classes` at each decoder level,
      upsampled trilinearly to the input size, the four maps concatenated
      (finest first) and fused by a 1x1x1 conv: one output, as released
      (the released loss reads that output only).

    With 1 input channel and 4 classes (the released CT setting) the network
    has 6,473,322 trainable parameters (`gates=1`: 6,214,151) as the released
    PyTorch definition; `attention=False` gives the released plain network
    `unet_ct_dsv` (`unet_CT_dsv_3D`, the paper's U-Net baseline): 5,888,004.
    BatchNormalization's moving statistics add 2 non-trainable values per
    channel (PyTorch keeps them as buffers). `dims=2` builds the same network
    with 2-D layers (3x3 convolutions, 2x2 pooling, 2x2 gate sub-sampling,
    bilinear resampling).

    Differences from the released code: the decoder resizes to the skip
    connection's size instead of upsampling by exactly 2 and padding, so any
    input size works (equal values when 2^(len(filters) - 1) divides every
    spatial size, as in the released 160x160x96 patches); resampling is
    PyTorch's `align_corners=False` (its default since 0.4).

    The logits are float32 under a mixed precision policy (the final
    convolution computes in float32). The attention maps are the gates'
    second outputs: `model.get_layer("attention4_gate1").output[1]`.

    Args:
        classes: int, the number of classes (per-voxel logits, no softmax).
        input_shape: tuple of `dims + 1` dimensions in the global
            image_data_format, e.g. `(None, None, None, 1)`; spatial sizes may
            be None. Defaults to one channel of any size.
        dims: 3 (volumes, the paper's network) or 2 (images).
        filters: tuple of ints, the widths of the encoder levels, the last
            one the bottleneck's. Defaults to the released (16, 32, 64, 128,
            256); e.g. (64, 128, 256, 512, 1024) is feature_scale 1.
        attention: bool, False gives the plain U-Net of the same widths
            (no gating signal, no gates).
        gates: 1 or 2, the gates per skip connection. Defaults to 2 (the
            released CT network).
        sub_sample: int, the gates' theta sub-sampling. Defaults to 2.
        deep_supervision: bool, the released deep supervision head; False
            gives one 1x1x1 conv on the finest decoder level instead.
        name: str, the model's name; defaults to "attention_unet_3d" (or
            "unet_3d", "..._2d").

    Returns:
        A functional `keras.Model` from the input to per-voxel logits of
        the input's spatial size and `classes` channels.

    Example:

    >>> model = AttentionUNet(classes=4, filters=(4, 8, 16, 32, 64))
    >>> model.output.shape
    (None, None, None, None, 4)
    """
    widths = _check_arguments(classes, dims, filters, gates, sub_sample)
    inputs = _input(input_shape, dims)
    axis = _common.channel_axis()
    pooling = _layer(dims, keras.layers.MaxPooling2D, MaxPooling3D)
    levels = len(widths) - 1

    skips, x = [], inputs
    for level in range(1, levels + 1):
        x = _double_conv(x, dims, widths[level - 1], f"conv{level}")
        skips.append(x)
        x = pooling(2, name=f"maxpool{level}")(x)
    center = _double_conv(x, dims, widths[-1], "center")
    gating = _conv_bn_relu(center, dims, widths[-1], 1, "gating") if attention else None

    below, decoded = center, {}
    for level in range(levels, 0, -1):
        skip = skips[level - 1]
        if attention and level > 1:
            signal = gating if level == levels else below
            skip, _ = _gated_skip(
                skip, signal, dims, widths[level - 1], gates, sub_sample, f"attention{level}"
            )
        upsampled = ResizeLike(name=f"up{level}_resize")([below, skip])
        x = keras.layers.Concatenate(axis=axis, name=f"up{level}_concat")([skip, upsampled])
        below = decoded[level] = _double_conv(x, dims, widths[level - 1], f"up{level}")

    if deep_supervision:
        maps = [_conv(decoded[1], dims, classes, 1, "dsv1")]
        for level in range(2, levels + 1):
            logits = _conv(decoded[level], dims, classes, 1, f"dsv{level}")
            maps.append(ResizeLike(name=f"dsv{level}_resize")([logits, inputs]))
        x = keras.layers.Concatenate(axis=axis, name="dsv_concat")(maps)
    else:
        x = decoded[1]
    outputs = _conv(x, dims, classes, 1, "final", dtype="float32")
    if name is None:
        name = f"{'attention_unet' if attention else 'unet'}_{dims}d"
    return keras.Model(inputs, outputs, name=name)


def UNet(classes, input_shape=None, dims=3, filters=CT_FILTERS, deep_supervision=True, name=None):
    """Builds the plain U-Net of Attention U-Net's widths: `AttentionUNet(attention=False)`.

    The released baseline of Oktay et al.'s CT experiments (`unet_ct_dsv`,
    `unet_CT_dsv_3D`): the same encoder, decoder and deep supervision, no
    gating signal and no gates. 5,888,004 parameters with 1 input channel
    and 4 classes. See `AttentionUNet` for the arguments.

    Example:

    >>> model = UNet(classes=2, dims=2, filters=(4, 8, 16))
    >>> model.output.shape
    (None, None, None, 2)
    """
    return AttentionUNet(
        classes,
        input_shape=input_shape,
        dims=dims,
        filters=filters,
        attention=False,
        deep_supervision=deep_supervision,
        name=name,
    )
