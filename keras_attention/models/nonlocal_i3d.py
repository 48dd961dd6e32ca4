"""The video networks of "Non-local Neural Networks": C2D and I3D ResNets with non-local blocks.

Wang, Girshick, Gupta and He, "Non-local Neural Networks", CVPR 2018
(https://arxiv.org/abs/1711.07971), as their released Caffe2 code builds them
(facebookresearch/video-nonlocal-net, `lib/models/resnet_video.py`,
`resnet_helper.py`, `nonlocal_helper.py`).
"""

import keras
import numpy as np

from keras_attention.layers.max_pooling3d import MaxPooling3D
from keras_attention.layers.spatial.non_local import NonLocalBlock
from keras_attention.models import _common
from keras_attention.models import timm

VARIANTS = ("i3d", "c2d")
INFLATIONS = ("repeat", "centre")
_STAGES = ("res2", "res3", "res4", "res5")
_DEPTHS = {50: (3, 4, 6, 3), 101: (3, 4, 23, 3)}


def _temporal_kernels(depth, variant):
    """The temporal kernel of the stem and of each block's first 1x1 (`obtain_arc`).

    The released code's arc 2 (I3D ResNet-50) and arc 4 (I3D ResNet-101):
    a 5x7x7 stem, and 3x1x1 first convolutions in every res2 block, res3's
    blocks 0 and 2, every other res4 block from block 0, and res5's block 1.
    Arcs 1 and 3 (C2D): 1 everywhere.
    """
    blocks = _DEPTHS[depth]
    if variant == "c2d":
        return 1, tuple((1,) * n for n in blocks)
    res4 = tuple(3 if i % 2 == 0 else 1 for i in range(blocks[2]))
    return 5, ((3, 3, 3), (3, 1, 3, 1), res4, (1, 3, 1))


def _nonlocal_positions(depth, nonlocal_blocks):
    """{stage: block indices followed by a non-local block} for 0, 5 or 10 blocks, or a mapping.

    5 (the paper's and the released code's default, NONLOCAL.LAYER_MOD 2):
    after every other block of res3 and res4, from block 1 (res3 1, 3; res4
    1, 3, 5); in ResNet-101 res4's three are blocks 6, 13 and 20 (the code's
    period 4 * 2 - 1). 10 (ResNet-50 only, LAYER_MOD 1): after every block
    of res3 and res4.
    """
    blocks = dict(zip(_STAGES, _DEPTHS[depth]))
    if isinstance(nonlocal_blocks, dict):
        positions = {}
        for stage, indices in nonlocal_blocks.items():
            if stage not in blocks:
                raise ValueError(
                    f"`nonlocal_blocks` maps stage names {_STAGES} to block indices. "
                    f"Received: nonlocal_blocks={nonlocal_blocks!r}"
                )
            indices = tuple(indices)
            if any(
                isinstance(i, bool)
                or not isinstance(i, (int, np.integer))
                or not 0 <= i < blocks[stage]
                for i in indices
            ):
                raise ValueError(
                    f"`nonlocal_blocks[{stage!r}]` must list block indices in "
                    f"[0, {blocks[stage]}) for ResNet-{depth}. Received: "
                    f"nonlocal_blocks={nonlocal_blocks!r}"
                )
            positions[stage] = frozenset(int(i) for i in indices)
        return positions
    if nonlocal_blocks == 0 and not isinstance(nonlocal_blocks, bool):
        return {}
    if nonlocal_blocks == 5 and not isinstance(nonlocal_blocks, bool):
        res4 = (1, 3, 5) if depth == 50 else (6, 13, 20)
        return {"res3": frozenset((1, 3)), "res4": frozenset(res4)}
    if nonlocal_blocks == 10 and depth == 50 and not isinstance(nonlocal_blocks, bool):
        return {"res3": frozenset(range(4)), "res4": frozenset(range(6))}
    why = ""
    if nonlocal_blocks == 10:
        why = (
            " The paper places ResNet-101's 10 blocks only as 'the corresponding residual "
            "blocks' and the released code has no 10-block ResNet-101 (its LAYER_MOD 1 gives "
            "9), so pass the blocks you mean as a mapping of stage names to block indices, "
            "e.g. {'res3': [0, 1, 2, 3], 'res4': [...]}."
        )
    raise ValueError(
        "`nonlocal_blocks` must be 0, 5, 10 (ResNet-50) or a mapping of stage names "
        f"{_STAGES} to block indices.{why} Received: nonlocal_blocks={nonlocal_blocks!r}"
    )


def _conv_bn(x, filters, kernel, strides, name, bn_name, act_name=None):
    """Conv3D (no bias) with PyTorch/Caffe2 symmetric zero padding, then BN (and ReLU)."""
    padding = tuple((k - 1) // 2 for k in kernel)
    if any(padding):
        x = keras.layers.ZeroPadding3D(padding, name=f"{name}_pad")(x)
    x = keras.layers.Conv3D(filters, kernel, strides=strides, use_bias=False, name=name)(x)
    x = _common.batch_norm(x, bn_name)
    return keras.layers.Activation("relu", name=act_name)(x) if act_name else x


def _bottleneck(x, width, strides, time_kernel, name):
    """`bottleneck_transformation_3d`: t x 1 x 1, 1 x 3 x 3 (strided), 1 x 1 x 1, + shortcut."""
    in_channels = x.shape[_common.channel_axis()]
    out_channels = 4 * width
    y = _conv_bn(x, width, (time_kernel, 1, 1), 1, f"{name}_conv1", f"{name}_bn1", f"{name}_act1")
    y = _conv_bn(
        y, width, (1, 3, 3), (1, strides, strides), f"{name}_conv2", f"{name}_bn2", f"{name}_act2"
    )
    y = _conv_bn(y, out_channels, (1, 1, 1), 1, f"{name}_conv3", f"{name}_bn3")
    shortcut = x
    if strides != 1 or in_channels != out_channels:
        shortcut = _conv_bn(
            x,
            out_channels,
            (1, 1, 1),
            (1, strides, strides),
            f"{name}_downsample_0",
            f"{name}_downsample_1",
        )
    y = keras.layers.Add(name=f"{name}_add")([shortcut, y])
    return keras.layers.Activation("relu", name=f"{name}_act")(y)


def _check_choice(name, value, choices):
    if value not in choices:
        raise ValueError(f"`{name}` must be one of {choices}. Received: {name}={value!r}")


def _clip_input(input_shape):
    _common.check_data_format_runs()
    shape = tuple(input_shape) if isinstance(input_shape, (list, tuple)) else ()
    channels = shape[-1 if _common.channel_axis() == -1 else 0] if len(shape) == 4 else None
    if not (isinstance(channels, int) and channels > 0):
        raise ValueError(
            "`input_shape` must be a tuple of 4 dimensions (frames, height, width, channels) "
            "in the global image_data_format, with a known channel count; the others may be "
            f"None. Received: input_shape={input_shape!r}"
        )
    return keras.Input(shape=shape, name="clip")


def _image_model(weights):
    """The 2-D network whose weights inflate: a Keras model, or a `from_timm` name."""
    if isinstance(weights, keras.Model):
        return weights
    if isinstance(weights, str):
        return timm.from_timm(weights)
    raise ValueError(
        "`weights` must be None, a 2-D keras.Model with timm's ResNet layer names (e.g. "
        "from_timm('resnet50')) or a from_timm name such as 'resnet50'. "
        f"Received: weights={weights!r}"
    )


def _inflate_kernel(kernel, depth, inflation):
    """A (k, k, in, out) kernel as (depth, k, k, in, out): repeated / depth, or centred."""
    if inflation == "repeat":
        return np.repeat(kernel[None], depth, axis=0) / depth
    inflated = np.zeros((depth, *kernel.shape), kernel.dtype)
    inflated[depth // 2] = kernel
    return inflated


def _weighted(model):
    return {layer.name: layer for layer in model.layers if layer.weights}


def load_inflated_weights(model, image_model, inflation="repeat", skip=()):
    """Copies a 2-D ResNet's weights into `model` by layer name, kernels inflated.

    Every weighted layer of `model` except non-local blocks and the names in
    `skip` must have a namesake in `image_model` with the same weights up to
    a leading time axis of the kernels, and every weighted layer of
    `image_model` except those in `skip` must be used; anything else raises
    a ValueError listing the names (no partial loads).
    """
    _check_choice("inflation", inflation, INFLATIONS)
    video = {
        name: layer
        for name, layer in _weighted(model).items()
        if not isinstance(layer, NonLocalBlock) and name not in skip
    }
    image = {name: layer for name, layer in _weighted(image_model).items() if name not in skip}
    missing = sorted(set(video) - set(image))
    unused = sorted(set(image) - set(video))
    misshaped = []
    pairs = []
    for name in sorted(set(video) & set(image)):
        targets, sources = video[name].weights, image[name].weights
        if len(targets) != len(sources):
            misshaped.append(name)
            continue
        for target, source in zip(targets, sources):
            value = np.asarray(keras.ops.convert_to_numpy(source))
            shape = tuple(target.shape)
            if value.shape == shape:
                pairs.append((target, value))
            elif value.ndim + 1 == len(shape) and shape[1:] == value.shape:
                pairs.append((target, _inflate_kernel(value, shape[0], inflation)))
            else:
                misshaped.append(f"{target.path} {shape} <- {value.shape}")
    if missing or unused or misshaped:
        raise ValueError(
            f"The 2-D model {image_model.name!r} does not fill {model.name!r} one to one "
            "(it must be timm's ResNet of the same depth, e.g. from_timm('resnet50')). "
            f"Missing from the 2-D model: {missing}; not used: {unused}; "
            f"wrong shapes: {misshaped}"
        )
    for target, value in pairs:
        target.assign(value.astype(target.dtype))


def _build(
    depth,
    nonlocal_blocks,
    variant,
    weights,
    inflation,
    include_top,
    classes,
    input_shape,
    pooling,
    dropout_rate,
    name,
):
    _check_choice("variant", variant, VARIANTS)
    _check_choice("inflation", inflation, INFLATIONS)
    _common.check_pooling(pooling)
    _common.check_classes(classes)
    if (
        isinstance(dropout_rate, bool)
        or not isinstance(dropout_rate, (int, float))
        or not (0 <= dropout_rate < 1)
    ):
        raise ValueError(
            f"`dropout_rate` must be in [0, 1). Received: dropout_rate={dropout_rate!r}"
        )
    positions = _nonlocal_positions(depth, nonlocal_blocks)
    image_model = None if weights is None else _image_model(weights)
    count = sum(len(v) for v in positions.values())
    if name is None:
        name = f"{variant}_resnet{depth}"
        name = f"nonlocal{count}_{name}" if count else name

    stem_time, block_times = _temporal_kernels(depth, variant)
    inputs = _clip_input(input_shape)
    x = _conv_bn(inputs, 64, (stem_time, 7, 7), (1, 2, 2), "conv1", "bn1", "act1")
    # pool1: 1x3x3, stride 1x2x2. Padded by 1 in space as timm's (and torchvision's)
    # ResNet, whose weights this takes; the released code pads 0 (55x55 at 224).
    # Zero padding equals -inf padding after a ReLU.
    x = keras.layers.ZeroPadding3D((0, 1, 1), name="maxpool_pad")(x)
    x = MaxPooling3D((1, 3, 3), strides=(1, 2, 2), name="maxpool")(x)
    for stage, (stage_name, blocks) in enumerate(zip(_STAGES, _DEPTHS[depth])):
        for index in range(blocks):
            block = f"layer{stage + 1}_{index}"
            strides = 2 if stage > 0 and index == 0 else 1
            x = _bottleneck(x, 64 * 2**stage, strides, block_times[stage][index], block)
            if index in positions.get(stage_name, ()):
                x = NonLocalBlock(
                    mode="embedded_gaussian",
                    sub_sample=True,
                    pool_before=True,
                    scale=True,
                    use_bias=True,  # the released convs' biases: its parameter count
                    name=f"{block}_nonlocal",
                )(x)
        if stage == 0:  # pool2: the only temporal downsampling, 2x1x1 max after res2
            x = MaxPooling3D((2, 1, 1), strides=(2, 1, 1), name="pool2")(x)
    if include_top:
        x = keras.layers.GlobalAveragePooling3D(name="global_pool")(x)
        if dropout_rate:
            x = keras.layers.Dropout(dropout_rate, name="dropout")(x)
        x = keras.layers.Dense(classes, dtype="float32", name="fc")(x)
    elif pooling == "avg":
        x = keras.layers.GlobalAveragePooling3D(name="global_pool")(x)
    elif pooling == "max":
        x = keras.layers.GlobalMaxPooling3D(name="global_pool")(x)
    model = keras.Model(inputs, x, name=name)

    if image_model is not None:
        skip = ("fc",)
        fc = image_model.get_layer("fc") if "fc" in _weighted(image_model) else None
        if include_top and fc is not None and fc.units == classes:
            skip = ()
        load_inflated_weights(model, image_model, inflation, skip=skip)
    return model


def NonLocalResNet50(
    nonlocal_blocks=5,
    variant="i3d",
    weights=None,
    inflation="repeat",
    include_top=True,
    classes=400,
    input_shape=(None, None, None, 3),
    pooling=None,
    dropout_rate=0.5,
    name=None,
):
    """Non-local I3D (or C2D) ResNet-50 for video clips.

    Reference: Wang, Girshick, Gupta and He, "Non-local Neural Networks",
    CVPR 2018 (https://arxiv.org/abs/1711.07971); the inflated networks follow
    Carreira and Zisserman, "Quo Vadis, Action Recognition? A New Model and the
    Kinetics Dataset", CVPR 2017 (https://arxiv.org/abs/1705.07750).

    The network of the paper's video experiments as its released code builds
    it (facebookresearch/video-nonlocal-net, `resnet_video.py`):

    - `variant="i3d"` (`obtain_arc` arcs 2 and 4): a 5x7x7 stem convolution
      (stride 1x2x2) and 3x1x1 first convolutions in every res2 block,
      res3's blocks 0 and 2, every other res4 block from block 0, and res5's
      block 1; the other kernels are 1xkxk. `variant="c2d"` (arcs 1 and 3,
      the C2D baseline): every kernel 1xkxk, the 2-D ResNet run frame by
      frame. All temporal strides are 1.
    - pool1: 1x3x3 max, stride 1x2x2; pool2: a 2x1x1 max with stride 2 after
      res2, the only temporal downsampling (frames -> floor(frames / 2));
      global average pooling (the code's pool5), dropout and the classifier.
    - Bottlenecks with the stride on the 3x3 (ResNet v1.5, as the code and
      timm), projection shortcuts of stride 1x2x2.
    - `nonlocal_blocks` non-local blocks after the residual blocks the paper
      puts them: 5 after every other block of res3 and res4 (res3 blocks 1
      and 3, res4 blocks 1, 3, 5; in ResNet-101 res4's 6, 13 and 20, the
      code's placement); 10 after every block of res3 and res4 (ResNet-50).
      Each is the video code's `NonLocalBlock`: embedded Gaussian, logits
      scaled by `inter_channels ** -0.5`, phi and g on the 1x2x2 max-pooled
      input (`pool_before=True`), C/2 inner channels, BN with its scale at
      0 after W, so each block is the identity at initialisation.

    With `weights`, every convolution, BN and (with the same class count)
    the classifier take a 2-D ResNet's weights by name, as I3D inflates
    them: a k x k kernel becomes t x k x k, repeated over time and divided by
    t (`inflation="repeat"`, the paper's) or put in the centre frame
    (`inflation="centre"`). On a clip of one frame repeated, the "centre"
    network (or the C2D one) without non-local blocks gives exactly the 2-D
    network's logits on that frame; with "repeat" the frames that the
    temporal zero padding reaches differ (as in I3D), the others agree.

    Parameters: the trainable count equals the released Caffe2 definition's
    for the C2D and I3D baselines (ResNet-50, 400 classes: 24,327,632 and
    28,043,472, pytorchvideo's 24.33M and 28.04M), and with non-local blocks
    too: they are built with `use_bias=True`, so they keep the biases of phi,
    g and W that cannot change the output (phi's under the softmax over keys,
    g's and W's before BN) as the released convolutions have them.

    Deviations from the released code, for timm's ImageNet weights: pool1
    pads 1 in space (timm and torchvision; the code pads 0: 55x55 maps at
    224 instead of 56x56); the non-local max-pool keeps an odd last row and
    column ("same" padding; equal on even sizes). The model takes clips
    normalised as its 2-D weights expect (for `from_timm` names, the mean
    and std of `timm_config(name)`); it does not normalise them itself.

    Args:
        nonlocal_blocks: 0 (the C2D or I3D baseline), 5, 10 (ResNet-50), or
            a mapping of stage names ("res2" ... "res5") to the indices of
            the blocks a non-local block follows. Defaults to 5.
        variant: "i3d" (the inflation pattern above) or "c2d" (t = 1
            everywhere). Defaults to "i3d".
        weights: None (Keras's initialisation), a 2-D `keras.Model` with
            timm's ResNet layer names (`from_timm("resnet50", ...)`), or a
            `from_timm` name such as "resnet50" (downloads timm's ImageNet
            weights). A model that does not fill this one one to one raises.
        inflation: "repeat" (divide by t) or "centre". Defaults to "repeat".
        include_top: whether to end with global average pooling, dropout and
            a float32 classifier returning logits. Defaults to True.
        classes: the classifier's classes. Defaults to 400 (Kinetics-400).
        input_shape: `(frames, height, width, channels)` in the global
            image data format (channels first: `(channels, frames, height,
            width)`); all but the channels may be None. The clip needs at
            least 2 frames. Defaults to `(None, None, None, 3)`.
        pooling: None, "avg" or "max": the pooling of a headless model.
        dropout_rate: the dropout before the classifier (the released
            training: 0.5). Defaults to 0.5.
        name: the model's name; defaults to e.g. "nonlocal5_i3d_resnet50".

    Returns:
        A functional `keras.Model` of clips `(batch, frames, height, width,
        channels)`.

    Example:

    >>> model = NonLocalResNet50(nonlocal_blocks=5, classes=10, input_shape=(8, 112, 112, 3))
    >>> model.output.shape
    (None, 10)
    >>> image = keras_attention.models.from_timm("resnet50")  # doctest: +SKIP
    >>> video = NonLocalResNet50(weights=image)  # ImageNet weights inflated  # doctest: +SKIP
    """
    return _build(
        50,
        nonlocal_blocks,
        variant,
        weights,
        inflation,
        include_top,
        classes,
        input_shape,
        pooling,
        dropout_rate,
        name,
    )


def NonLocalResNet101(
    nonlocal_blocks=5,
    variant="i3d",
    weights=None,
    inflation="repeat",
    include_top=True,
    classes=400,
    input_shape=(None, None, None, 3),
    pooling=None,
    dropout_rate=0.5,
    name=None,
):
    """Non-local I3D (or C2D) ResNet-101 for video clips.

    Reference: Wang, Girshick, Gupta and He, "Non-local Neural Networks",
    CVPR 2018 (https://arxiv.org/abs/1711.07971).

    `NonLocalResNet50`'s network (see it for the layout, the inflation, the
    parameter counts and the deviations) with ResNet-101's (3, 4, 23, 3)
    blocks: the released code's arc 4 (3x1x1 first convolutions in res4's
    even blocks) and its non-local placement for 5 blocks, after res3's
    blocks 1 and 3 and res4's blocks 6, 13 and 20. The paper places
    ResNet-101's 10 blocks only as "the corresponding residual blocks" and
    the released code defines none (its LAYER_MOD 1 gives 9), so
    `nonlocal_blocks=10` raises; pass a mapping of stage names to block
    indices for any other placement. I3D with 400 classes: 51,754,192
    trainable parameters, 59,104,464 with 5 blocks.

    Args:
        nonlocal_blocks: 0, 5, or a mapping of stage names ("res2" ...
            "res5") to block indices. Defaults to 5.
        variant: "i3d" or "c2d". Defaults to "i3d".
        weights: None, a 2-D `keras.Model` with timm's ResNet-101 layer
            names (`from_timm("resnet101", ...)`), or a `from_timm` name.
        inflation: "repeat" (divide by t) or "centre". Defaults to "repeat".
        include_top: whether to end with pooling, dropout and the float32
            classifier. Defaults to True.
        classes: the classifier's classes. Defaults to 400.
        input_shape: `(frames, height, width, channels)`; at least 2 frames.
            Defaults to `(None, None, None, 3)`.
        pooling: None, "avg" or "max": the pooling of a headless model.
        dropout_rate: the dropout before the classifier. Defaults to 0.5.
        name: the model's name; defaults to e.g. "nonlocal5_i3d_resnet101".

    Returns:
        A functional `keras.Model` of clips.

    Example:

    >>> model = NonLocalResNet101(nonlocal_blocks=5, classes=10)
    >>> model.output.shape
    (None, 10)
    """
    return _build(
        101,
        nonlocal_blocks,
        variant,
        weights,
        inflation,
        include_top,
        classes,
        input_shape,
        pooling,
        dropout_rate,
        name,
    )
