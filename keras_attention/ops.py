"""Small pure functions shared by the layers.

`keras.ops` here, so every helper runs on the TensorFlow, JAX and PyTorch
backends. The one exception is a backend fast path: a function may dispatch on
`keras.config.backend()` to that backend's fused kernel (importing the backend
lazily, inside the branch) where `keras.ops` has none, as Keras's own backends
do, and fall back to the `keras.ops` form everywhere else; a test holds each
fast path equal to its fallback, forward and gradients, on every backend.
Layers import from this module; it imports nothing from the package.
"""

import functools
import math

import keras
from keras import ops

DATA_FORMATS = ("channels_last", "channels_first")


def standardize_data_format(data_format):
    """Resolves `None` to Keras's global image data format and validates it."""
    if data_format is None:
        return keras.config.image_data_format()
    if data_format not in DATA_FORMATS:
        raise ValueError(
            f"`data_format` must be one of {DATA_FORMATS} or None. "
            f"Received: data_format={data_format!r}"
        )
    return data_format


def channel_axis(data_format):
    """The channel axis of an image, volume or clip tensor: -1 or 1."""
    return -1 if data_format == "channels_last" else 1


def spatial_axes(data_format, ndim=4):
    """The spatial axes of an `ndim`-D tensor: (height, width) or (depth, height, width)."""
    if data_format == "channels_last":
        return tuple(range(1, ndim - 1))
    return tuple(range(2, ndim))


def to_channels_last(x, data_format):
    """Channels-first -> channels-last (NCHW -> NHWC, NCDHW -> NDHWC); otherwise unchanged."""
    if data_format == "channels_first":
        ndim = len(x.shape)
        return ops.transpose(x, (0, *range(2, ndim), 1))
    return x


def to_channels_first(x):
    """A channels-last tensor of any rank as channels-first."""
    return from_channels_last(x, "channels_first")


def from_channels_last(x, data_format):
    """Channels-last -> `data_format` (NHWC -> NCHW, NDHWC -> NCDHW); otherwise unchanged."""
    if data_format == "channels_first":
        ndim = len(x.shape)
        return ops.transpose(x, (0, ndim - 1, *range(1, ndim - 1)))
    return x


def shape_to_channels_last(shape, data_format):
    """A static shape tuple (of any rank) in channels-last order."""
    shape = tuple(shape)
    if data_format == "channels_first":
        return (shape[0], *shape[2:], shape[1])
    return shape


def shape_from_channels_last(shape, data_format):
    """A static channels-last shape tuple (of any rank) in `data_format` order."""
    shape = tuple(shape)
    if data_format == "channels_first":
        return (shape[0], shape[-1], *shape[1:-1])
    return shape


def expand_channels(v, data_format, ndim=4):
    """(batch, C) -> a shape that scales an `ndim`-D map: (batch, 1, 1, C), (batch, C, 1, 1, 1), ..."""
    ones = (None,) * (ndim - 2)
    if data_format == "channels_last":
        return v[(slice(None), *ones, slice(None))]
    return v[(slice(None), slice(None), *ones)]


def mean(x, axis, keepdims=False):
    """`keras.ops.mean` as a sum divided afterwards: cheaper gradients, no float32 copy.

    TensorFlow's mean divides its whole broadcast gradient by the count (one
    more pass over the map in every backward step of SE, ECA, SK and CBAM);
    dividing the reduced sum instead leaves only the broadcast. It also
    spares bfloat16 maps the float32 copy that `keras.ops.mean` makes on
    TensorFlow: bfloat16 sums accumulate in float32 on every backend and
    bfloat16 has float32's range, so they are summed in their own dtype and
    divided in float32. float16 uses `keras.ops.mean` (its sums overflow at
    65504).
    """
    dtype = keras.backend.standardize_dtype(x.dtype)
    if dtype == "float16":
        return ops.mean(x, axis=axis, keepdims=keepdims)
    axes = (axis,) if isinstance(axis, int) else tuple(axis)
    shape = ops.shape(x)
    count = 1
    for a in axes:
        count = count * shape[a]
    total = ops.sum(x, axis=axes, keepdims=keepdims)
    # bfloat16 divides in float32: one rounding of the result, not two.
    divide_in = "float32" if dtype == "bfloat16" else dtype
    return ops.cast(ops.cast(total, divide_in) / ops.cast(count, divide_in), dtype)


def spatial_mean(x, data_format, axes=None):
    """The mean over the spatial axes: global average pooling, shape (batch, C).

    `axes` (default: every spatial axis) may name some of an image's spatial
    axes instead, which leave the shape as in `mean`: `axes=2` of a
    channels_last (batch, H, W, C) map is the mean of each row, (batch, H, C).

    Backend fast paths for float32 channels_last maps (images, and volumes
    over all their axes), equal to `mean` to float32 rounding: a reduction
    over the middle axes of (batch, positions, C) is the slow kind in
    TensorFlow's and PyTorch's kernels, and their pooling kernels read such a
    map about twice as fast (docs/benchmarks.md). TensorFlow: `AvgPool` with
    the averaged sizes as its window, where they are static (its gradient is
    `mean`'s broadcast: `AvgPoolGrad` is slower); PyTorch: `avg_pool2d`/
    `avg_pool3d` on the channels-first view, with the same backward.
    Elsewhere, and for other dtypes (float16 needs `keras.ops.mean`'s float32
    accumulation), `mean`.
    """
    axes, fast, static = _pooled_axes(x, data_format, axes)
    backend = keras.config.backend()
    if fast and static and backend == "tensorflow":
        return _spatial_mean_tensorflow(x, axes)
    if fast and backend == "torch":
        return _torch_spatial_mean().apply(ops.convert_to_tensor(x), axes)
    return mean(x, axes)


def _pooled_axes(x, data_format, axes):
    """The sorted spatial `axes` to average, whether the fast paths take them, and
    whether their sizes and the channels are static (TensorFlow's window)."""
    ndim = len(x.shape)
    spatial = spatial_axes(data_format, ndim)
    if axes is None:
        axes = spatial
    axes = tuple(sorted(a % ndim for a in ((axes,) if isinstance(axes, int) else axes)))
    if not set(axes) <= set(spatial):
        raise ValueError(
            f"`axes` must be spatial axes of the {ndim}-D {data_format} input "
            f"({spatial}). Received: axes={axes}"
        )
    fast = (
        data_format == "channels_last"
        and keras.backend.standardize_dtype(x.dtype) == "float32"
        and (ndim == 4 or (ndim == 5 and axes == spatial))
    )
    return axes, fast, None not in (*(x.shape[a] for a in axes), x.shape[-1])


def _spatial_mean_tensorflow(x, axes):
    """`AvgPool` over `axes` of a channels_last map (a volume's depth folded)."""
    import tensorflow as tf

    *positions, channels = x.shape[1:]
    volume = len(positions) == 3  # every axis of a volume: one (D * H, W) window
    if volume:
        window = (positions[0] * positions[1], positions[2])
    else:
        window = tuple(size if axis in axes else 1 for axis, size in enumerate(positions, 1))

    @tf.custom_gradient
    def pooled(x):
        folded = tf.reshape(x, (-1, *window, channels)) if volume else x
        outputs = tf.nn.avg_pool2d(folded, window, strides=1, padding="VALID")

        def gradient(upstream):
            upstream = upstream / math.prod(window)
            for axis in axes:
                upstream = tf.expand_dims(upstream, axis)
            return tf.broadcast_to(upstream, tf.shape(x))

        return tf.squeeze(outputs, (1, 2) if volume else axes), gradient

    return pooled(x)


@functools.cache
def _torch_spatial_mean():
    """The autograd function of `spatial_mean`'s PyTorch fast path: `(x, axes)` -> the mean.

    The forward pass pools the channels-first view (channels_last memory) of
    `x`; the backward is `mean`'s broadcast: PyTorch's own `avg_pool2d`
    backward on channels_last memory is about twice its time (docs/benchmarks.md).
    """
    import torch

    class SpatialMean(torch.autograd.Function):
        @staticmethod
        def forward(ctx, x, axes):
            ctx.shape, ctx.axes = x.shape, axes
            view = torch.movedim(x, -1, 1)
            window = tuple(
                size if axis in axes else 1 for axis, size in enumerate(x.shape[1:-1], 1)
            )
            pool = torch.nn.functional.avg_pool2d if x.ndim == 4 else torch.nn.functional.avg_pool3d
            return torch.squeeze(torch.movedim(pool(view, window), 1, -1), axes)

        @staticmethod
        def backward(ctx, upstream):
            upstream = upstream / math.prod(ctx.shape[a] for a in ctx.axes)
            for axis in ctx.axes:
                upstream = upstream.unsqueeze(axis)
            return upstream.expand(ctx.shape), None

    return SpatialMean


def softmax_float32(x, axis=-1):
    """Softmax computed in float32 and cast back to the input dtype.

    exp() of energies above ~11 overflows float16, and bfloat16 sums over
    thousands of positions lose most of their digits; so the normalisation
    always runs in float32.
    """
    dtype = x.dtype
    return ops.cast(ops.softmax(ops.cast(x, "float32"), axis=axis), dtype)


def conv_of_pooled_pair(first, second, kernel):
    """The bias-free, "same"-padded convolution of `concatenate([first, second], -1)`.

    `first` and `second` are one-channel channels_last maps, 4-D or 5-D, and
    `kernel` is (kh, kw, 2, filters) or (kd, kh, kw, 2, filters) (a `Conv2D`
    or `Conv3D` kernel). Computed as the sum of each map's own convolution:
    the same sums, reordered. A concatenation of a max-pooled map would be
    quantized wrongly: TFLite's int8 quantizer hands the concatenation's scale
    back through the max reduction to the tensor it pools (the layer input),
    which it then clips for every other consumer too (docs/deployment.md).
    """
    kernel = ops.cast(kernel, first.dtype)
    conv = functools.partial(ops.conv, padding="same", data_format="channels_last")
    return conv(first, kernel[..., :1, :]) + conv(second, kernel[..., 1:, :])


def eca_kernel_size(channels, gamma=2, b=1):
    """ECA-Net's adaptive 1-D kernel size (Wang et al., CVPR 2020, eq. 12).

    `t = int(|(log2(C) + b) / gamma|)`, then the nearest odd number at or above:
    C=64 -> 3, C=256 -> 5, C=2048 -> 7 with the paper's gamma=2, b=1.
    """
    t = int(abs((math.log2(channels) + b) / gamma))
    return t if t % 2 else t + 1


def attend(query, key, value):
    """Unscaled softmax attention over positions: `softmax(query key^T) value`.

    `query` (batch, T, d), `key` (batch, S, d), `value` (batch, S, dv) ->
    (batch, T, dv). It runs through `keras.ops.dot_product_attention` as one
    head with `scale=1.0` (SAGAN and non-local blocks do not scale by
    1/sqrt(d)), so that a fused kernel that never stores the T x S matrix can
    run: PyTorch's, on the CPU as on GPUs, and JAX's on GPUs. TensorFlow (and
    JAX on a CPU) compute it the plain way; docs/benchmarks.md has both.
    """
    backend = keras.backend.backend()
    dtype = keras.backend.standardize_dtype(value.dtype)
    depth, value_depth = query.shape[-1], value.shape[-1]
    if backend == "tensorflow" and dtype in ("float16", "bfloat16"):
        # TensorFlow forms the logits in the input dtype before its float32
        # softmax: unscaled energies overflow float16, and bfloat16 keeps 8 bits
        # of them (17x the error that rounding the inputs alone gives, measured
        # on NonLocalBlock at input scale 10). JAX and PyTorch accumulate them
        # in float32. TensorFlow never fuses, so nothing is lost.
        query, key, value = (ops.cast(t, "float32") for t in (query, key, value))
    elif backend != "tensorflow" and depth != value_depth:
        # JAX needs equal head sizes, and PyTorch's flash kernels do too (it
        # falls back to its unfused kernel otherwise). Zero channels add
        # nothing to the dot products, so pad the smaller side.
        width = max(depth, value_depth)
        query = ops.pad(query, ((0, 0), (0, 0), (0, width - depth)))
        key = ops.pad(key, ((0, 0), (0, 0), (0, width - depth)))
        value = ops.pad(value, ((0, 0), (0, 0), (0, width - value_depth)))
    outputs = ops.dot_product_attention(
        query[:, :, None, :], key[:, :, None, :], value[:, :, None, :], scale=1.0
    )
    return ops.cast(outputs[:, :, 0, :value_depth], dtype)


def attend_with_weights(query, key, value):
    """`attend` with its (batch, T, S) weights formed: (outputs, weights).

    For layers asked to return their attention: the energies and the softmax
    are float32, the weights are cast back to `value`'s dtype and applied to it.
    """
    energy = ops.einsum("bqd,bkd->bqk", ops.cast(query, "float32"), ops.cast(key, "float32"))
    weights = ops.cast(ops.softmax(energy, axis=-1), value.dtype)
    return ops.einsum("bqk,bkc->bqc", weights, value), weights


def affine_grid(theta, height, width):
    """The sampling grid of a batch of 2-D affine transforms, align_corners=False.

    `theta` (batch, 2, 3) maps each output pixel's normalised coordinates
    `(x, y, 1)` to the input point to sample. Coordinates span [-1, 1] from the
    outer edge of the first pixel to the outer edge of the last, so pixel `j` of
    `n` sits at `(2j + 1 - n) / n` (PyTorch's `affine_grid` default). Returns
    float32 (batch, height, width, 2) with x (the width axis) first, as in
    PyTorch; `height` and `width` may be tensors.
    """
    theta = ops.cast(theta, "float32")

    def centres(n):
        index = ops.cast(ops.arange(n), "float32")
        n = ops.cast(n, "float32")
        return (2.0 * index + 1.0 - n) / n

    ys, xs = ops.meshgrid(centres(height), centres(width), indexing="ij")
    points = ops.stack([xs, ys, ops.ones_like(xs)], axis=-1)  # (H, W, 3)
    return ops.einsum("hwk,bik->bhwi", points, theta)


def bilinear_sample(images, grid):
    """Samples channels_last `images` at the normalised points of `grid`, bilinearly.

    `images` (batch, H, W, C); `grid` (batch, h, w, 2) as made by
    `affine_grid` (x first, align_corners=False). Points outside the image read
    zeros, so a pixel near the border blends with zero. Differentiable with
    respect to both the images and the grid, which `keras.ops.image.affine_transform`
    is not. Returns (batch, h, w, C) in the images' dtype.
    """
    batch, height, width, channels = ops.shape(images)
    grid = ops.cast(grid, "float32")
    size_x, size_y = ops.cast(width, "float32"), ops.cast(height, "float32")
    # Inverse of the pixel-centre rule in `affine_grid`: pixel coordinates.
    x = (grid[..., 0] * size_x + size_x - 1.0) * 0.5
    y = (grid[..., 1] * size_y + size_y - 1.0) * 0.5
    x0, y0 = ops.floor(x), ops.floor(y)
    # Corner indices in int32 from the floors: an int8-quantized model would
    # otherwise round x0 + 1 to 1.99 and truncate it to the wrong pixel.
    x0_index, y0_index = ops.cast(x0, "int32"), ops.cast(y0, "int32")
    flat = ops.reshape(images, (-1, channels))
    first_row = ops.reshape(ops.arange(batch, dtype="int32") * height * width, (-1, 1, 1))
    outputs = 0
    for corner_x, weight_x in ((x0_index, x0 + 1.0 - x), (x0_index + 1, x - x0)):
        for corner_y, weight_y in ((y0_index, y0 + 1.0 - y), (y0_index + 1, y - y0)):
            inside = (
                (corner_x >= 0)
                & (corner_x <= width - 1)
                & (corner_y >= 0)
                & (corner_y <= height - 1)
            )
            weight = weight_x * weight_y * ops.cast(inside, "float32")
            # Clipped indices keep the gather in range; their weight is 0.
            index = (
                first_row
                + ops.clip(corner_y, 0, height - 1) * width
                + ops.clip(corner_x, 0, width - 1)
            )
            outputs = outputs + ops.take(flat, index, axis=0) * ops.cast(
                weight[..., None], images.dtype
            )
    return outputs


def affine_grid_3d(theta, depth, height, width):
    """The sampling grid of a batch of 3-D affine transforms, align_corners=False.

    `theta` (batch, 3, 4) maps each output voxel's normalised coordinates
    `(x, y, z, 1)` (x along the width, y the height, z the depth) to the input
    point to sample; voxel `j` of `n` along an axis sits at `(2j + 1 - n) / n`,
    as in `affine_grid`. Returns float32 (batch, depth, height, width, 3) with
    x first, as PyTorch's `affine_grid` on 5-D sizes; the sizes may be tensors.
    """
    theta = ops.cast(theta, "float32")

    def centres(n):
        index = ops.cast(ops.arange(n), "float32")
        n = ops.cast(n, "float32")
        return (2.0 * index + 1.0 - n) / n

    zs, ys, xs = ops.meshgrid(centres(depth), centres(height), centres(width), indexing="ij")
    points = ops.stack([xs, ys, zs, ops.ones_like(xs)], axis=-1)  # (D, H, W, 4)
    # One flat matmul: the (D, H, W, 4) x (batch, 3, 4) einsum would form 6-D
    # intermediates on some backends (TFLite slices at most 5-D), and TFLite's
    # lowering of the flat einsum leaves a tensor of unknown batch unconvertible:
    # a broadcast batch matmul instead.
    flat = ops.reshape(points, (-1, 4))
    grid = ops.matmul(flat, ops.transpose(theta, (0, 2, 1)))
    return ops.reshape(grid, (-1, depth, height, width, 3))


def trilinear_sample(volumes, grid):
    """Samples channels_last `volumes` at the normalised points of `grid`, trilinearly.

    `volumes` (batch, D, H, W, C); `grid` (batch, d, h, w, 3) as made by
    `affine_grid_3d` (x first, align_corners=False). Points outside the volume
    read zeros, so a voxel near the border blends with zero (PyTorch's
    `grid_sample` with padding_mode="zeros"). Differentiable with respect to
    both the volumes and the grid. Gather indices are int32, as in
    `bilinear_sample`. Returns (batch, d, h, w, C) in the volumes' dtype.
    """
    batch, depth, height, width, channels = ops.shape(volumes)
    grid = ops.cast(grid, "float32")

    def pixel(coordinate, size):  # the inverse of the voxel-centre rule
        size = ops.cast(size, "float32")
        return (coordinate * size + size - 1.0) * 0.5

    x, y, z = pixel(grid[..., 0], width), pixel(grid[..., 1], height), pixel(grid[..., 2], depth)
    x0, y0, z0 = ops.floor(x), ops.floor(y), ops.floor(z)
    x0_index, y0_index, z0_index = (ops.cast(t, "int32") for t in (x0, y0, z0))
    flat = ops.reshape(volumes, (-1, channels))
    voxels = depth * height * width
    first = ops.reshape(ops.arange(batch, dtype="int32") * voxels, (-1, 1, 1, 1))

    def corners(index, low, t, size):  # (index, weight, inside) of both neighbours
        return (
            (index, low + 1.0 - t, (index >= 0) & (index <= size - 1)),
            (index + 1, t - low, (index + 1 >= 0) & (index + 1 <= size - 1)),
        )

    outputs = 0
    for corner_z, weight_z, inside_z in corners(z0_index, z0, z, depth):
        for corner_y, weight_y, inside_y in corners(y0_index, y0, y, height):
            for corner_x, weight_x, inside_x in corners(x0_index, x0, x, width):
                inside = inside_x & inside_y & inside_z
                weight = weight_x * weight_y * weight_z * ops.cast(inside, "float32")
                # Clipped indices keep the gather in range; their weight is 0.
                index = (
                    first
                    + (
                        ops.clip(corner_z, 0, depth - 1) * height
                        + ops.clip(corner_y, 0, height - 1)
                    )
                    * width
                    + ops.clip(corner_x, 0, width - 1)
                )
                outputs = outputs + ops.take(flat, index, axis=0) * ops.cast(
                    weight[..., None], volumes.dtype
                )
    return outputs


def _resize_axis_linear(x, size, axis):
    """Linear interpolation of `x` along `axis` to `size` samples (half-pixel centres).

    Output sample i reads the input at `(i + 0.5) * in / out - 0.5`, clamped to
    the edges: `keras.ops.image.resize(..., "bilinear")` without antialiasing.
    Written with gathers so that `size` may be a run-time value.
    """
    in_size = ops.shape(x)[axis]
    scale = ops.cast(in_size, "float32") / ops.cast(size, "float32")
    coords = (ops.cast(ops.arange(size), "float32") + 0.5) * scale - 0.5
    coords = ops.clip(coords, 0.0, ops.cast(in_size - 1, "float32"))
    lower = ops.floor(coords)
    weight = ops.reshape(coords - lower, (-1,) + (1,) * (len(x.shape) - 1 - axis))
    lower = ops.cast(lower, "int32")
    upper = ops.minimum(lower + 1, in_size - 1)
    below = ops.take(x, lower, axis=axis)
    above = ops.take(x, upper, axis=axis)
    return below + (above - below) * ops.cast(weight, x.dtype)


def resize_linear(x, size, data_format="channels_last"):
    """Bilinear (4-D) or trilinear (5-D) resize of `x` to `size`, which may be run-time values.

    `size` holds one length per spatial axis: (height, width) or (depth,
    height, width). Interpolation is separable, one axis after the other.
    `keras.ops.image.resize` checks `size > 0` in Python, so it fails on
    symbolic TensorFlow sizes (an `Input((None, None, C))` traced by `fit` or
    `predict`), and it has no trilinear mode; this gives its bilinear values
    (half-pixel centres, no antialiasing) and PyTorch's
    `interpolate(mode="trilinear", align_corners=False)` in 3-D.
    """
    axes = spatial_axes(data_format, len(x.shape))
    if len(size) != len(axes):
        raise ValueError(
            f"`size` must hold one length per spatial axis ({len(axes)}). Received: size={size!r}"
        )
    for axis, length in zip(axes, size):
        x = _resize_axis_linear(x, length, axis)
    return x


def spatial_shape(x, data_format):
    """The run-time spatial sizes of `x`: (height, width) or (depth, height, width)."""
    shape = ops.shape(x)
    return tuple(shape[axis] for axis in spatial_axes(data_format, len(x.shape)))


def _per_axis(value, rank):
    """An int or a sequence -> a tuple with one value per spatial axis."""
    return (value,) * rank if isinstance(value, int) else tuple(value)


def _sum_over_depth_taps(x, kernel, strides, padding, dilation, conv_2d):
    """A depth-stride-1 3-D convolution of the channels_last 5-D `x` as 2-D ones.

    The sum over the depth taps of `kernel` of `conv_2d` (`ops.conv` or
    `ops.depthwise_conv`) by that tap's kernel slice, over the frames the tap
    reaches with the depth folded into the batch; `strides` and `dilation`
    are per axis, their height and width entries go to `conv_2d`. "same" pads
    the depth with zeros as TensorFlow does (the odd one after).
    """
    taps = kernel.shape[0]
    reach = (taps - 1) * dilation[0]
    if padding == "same":
        x = ops.pad(x, ((0, 0), (reach // 2, reach - reach // 2), (0, 0), (0, 0), (0, 0)))
    batch, depth = ops.shape(x)[0], ops.shape(x)[1] - reach
    outputs = None
    for tap in range(taps):
        start = tap * dilation[0]
        frames = x[:, start : start + depth]
        y = conv_2d(
            ops.reshape(frames, (-1, *ops.shape(frames)[2:])),
            kernel[tap],
            strides=strides[1:],
            padding=padding,
            data_format="channels_last",
            dilation_rate=dilation[1:],
        )
        outputs = y if outputs is None else outputs + y
    return ops.reshape(outputs, (batch, depth, *ops.shape(outputs)[1:]))


def depthwise_conv(x, kernel, strides=1, padding="same", dilation_rate=1):
    """A depthwise convolution of the channels-last 4-D or 5-D `x`, no bias.

    `kernel` is `(kh, kw, C, 1)` (Keras's `DepthwiseConv2D`) or `(kd, kh, kw, C, 1)`;
    `strides` and `dilation_rate` apply to the spatial axes (ints, or one per
    axis). Keras has no 3-D depthwise convolution: a volume's is the sum over
    the kernel's depth taps of 2-D depthwise convolutions of the depth-shifted
    frames (depth stride 1, "same" padding in depth) — builtin kernels on every
    backend and in TFLite, where a grouped `Conv3D` with C groups is not.
    """
    if len(kernel.shape) == 4:
        return ops.depthwise_conv(
            x,
            kernel,
            strides=strides,
            padding=padding,
            data_format="channels_last",
            dilation_rate=dilation_rate,
        )
    strides = _per_axis(strides, 3)
    dilation = _per_axis(dilation_rate, 3)
    if strides[0] != 1:
        raise ValueError(
            f"A 3-D depthwise convolution takes depth stride 1. Received: strides={strides}"
        )
    kernel = ops.cast(kernel, x.dtype)
    return _sum_over_depth_taps(x, kernel, strides, padding, dilation, ops.depthwise_conv)


def conv(x, kernel, strides=1, padding="valid", data_format="channels_last", dilation_rate=1):
    """`keras.ops.conv`, but a dilated 3-D convolution runs as 2-D ones (no bias).

    TensorFlow computes a dilated `Conv3D` through a 5-D `SpaceToBatchND`,
    which LiteRT has no builtin for (it takes 3-D and 4-D). So a 5-D `x`
    with any dilation > 1 is convolved as the sum over the kernel's depth
    taps of 2-D convolutions (dilated in height and width) of the frames each
    tap reaches: the same sums, builtin ops only, on every backend. The depth
    stride must then be 1. Images and undilated volumes go to
    `keras.ops.conv` unchanged.

    Args:
        x: a 4-D or 5-D tensor in `data_format`.
        kernel: `(kh, kw, C, filters)` or `(kd, kh, kw, C, filters)`, Keras's
            `Conv2D`/`Conv3D` kernel.
        strides, padding, data_format, dilation_rate: as `keras.ops.conv`
            (`data_format` defaults to `"channels_last"` here).
    """
    rank = len(x.shape) - 2
    dilation = _per_axis(dilation_rate, rank)
    if rank != 3 or all(d == 1 for d in dilation):
        return ops.conv(
            x,
            kernel,
            strides=strides,
            padding=padding,
            data_format=data_format,
            dilation_rate=dilation_rate,
        )
    strides = _per_axis(strides, 3)
    if strides[0] != 1:
        raise ValueError(
            "A dilated 3-D convolution takes depth stride 1 (it runs as 2-D "
            f"convolutions of the frames). Received: strides={strides}"
        )

    x = to_channels_last(x, data_format)
    outputs = _sum_over_depth_taps(x, kernel, strides, padding, dilation, ops.conv)
    return from_channels_last(outputs, data_format)


def max_pool(x, pool_size, strides=None, padding="valid", data_format="channels_last"):
    """`keras.ops.max_pool` of a 4-D or 5-D `x`, a volume's by 2-D max pools.

    LiteRT has no 3-D max pool and TensorFlow's CPU has no float16 one. A
    maximum over a depth x height x width box is the maximum over depth of
    the height x width maxima, and "same" pads each axis on its own (padded
    positions never win), so a volume is pooled over height and width with
    its depth folded into the batch, then over depth by a `(kd, 1)` 2-D pool
    of the `(depth, height * width)` maps: `MaxPool3D`'s values exactly.

    Args:
        x: a 4-D or 5-D tensor in `data_format`.
        pool_size, strides, padding, data_format: as `keras.ops.max_pool`
            (`data_format` defaults to `"channels_last"` here; `strides`
            None: `pool_size`).
    """
    if len(x.shape) != 5:
        return ops.max_pool(x, pool_size, strides=strides, padding=padding, data_format=data_format)
    pool_size = _per_axis(pool_size, 3)
    strides = pool_size if strides is None else _per_axis(strides, 3)
    x = to_channels_last(x, data_format)
    shape = ops.shape(x)
    frames = ops.reshape(x, (-1, *shape[2:]))
    frames = ops.max_pool(frames, pool_size[1:], strides[1:], padding, "channels_last")
    height, width = ops.shape(frames)[1], ops.shape(frames)[2]
    maps = ops.reshape(frames, (shape[0], shape[1], -1, shape[4]))
    maps = ops.max_pool(maps, (pool_size[0], 1), (strides[0], 1), padding, "channels_last")
    outputs = ops.reshape(maps, (shape[0], -1, height, width, shape[4]))
    return from_channels_last(outputs, data_format)


# GroupNorm as a function: SA-Net, EMA and ELA apply PyTorch's nn.GroupNorm to
# sub-batches of channel groups or to pooled 1-D strips, where a
# keras.layers.GroupNormalization on the full map would not line up; the
# layers own the affine weights and call this.
# PyTorch's GroupNorm epsilon, used by the papers' code.
GROUP_NORM_EPSILON = 1e-5


def group_norm(x, groups, gamma, beta, epsilon=GROUP_NORM_EPSILON):
    """GroupNorm of a channels_last tensor `(batch, *positions, C)`, then `gamma * x + beta`.

    Each of `groups` contiguous channel groups is normalised over its channels
    and every position with the biased variance (PyTorch's). Statistics run in
    float32 (float16 squares of large activations overflow); the result has
    the input's dtype. `gamma` and `beta` have shape `(C,)`.
    """
    dtype = x.dtype
    rank = len(x.shape)
    channels = x.shape[-1]
    positions = tuple(range(1, rank - 1))
    values = ops.cast(x, "float32")
    if groups == channels:
        # One channel a group (instance norm): no reshape needed.
        mean = ops.mean(values, axis=positions, keepdims=True)
        variance = ops.mean(ops.square(values - mean), axis=positions, keepdims=True)
        normed = (values - mean) * ops.rsqrt(variance + epsilon)
    else:
        shape = ops.shape(x)
        grouped = ops.reshape(values, (-1, *shape[1:-1], groups, channels // groups))
        axes = (*positions, rank)
        mean = ops.mean(grouped, axis=axes, keepdims=True)
        variance = ops.mean(ops.square(grouped - mean), axis=axes, keepdims=True)
        normed = (grouped - mean) * ops.rsqrt(variance + epsilon)
        normed = ops.reshape(normed, (-1, *shape[1:-1], channels))
    normed = normed * ops.cast(gamma, "float32") + ops.cast(beta, "float32")
    return ops.cast(normed, dtype)


@functools.cache
def _computes_on_cpu():
    """True when TensorFlow or JAX compute on the CPU (PyTorch's grouped convs are fast)."""
    if keras.backend.backend() not in ("tensorflow", "jax"):
        return False
    return all(device.startswith("cpu") for device in keras.distribution.list_devices())


def grouped_conv(x, kernel, groups, strides=1, padding="same", dilation_rate=1):
    """A 2-D or 3-D convolution of the channels_last `x` in `groups` groups, no bias.

    `kernel` is a Keras `Conv2D` kernel `(kh, kw, C // groups, filters)` or a
    `Conv3D` kernel `(kd, kh, kw, C // groups, filters)`. On a
    CPU, TensorFlow has no gradient kernel for grouped convolutions (Keras
    sends them through XLA) and XLA computes their gradients about 200x
    slower than the dense ones (docs/benchmarks.md), so there, and on JAX's
    CPU, each group runs as a dense convolution and the results are
    concatenated: the same sums. Elsewhere one grouped convolution runs. A
    dilated 3-D one runs as 2-D convolutions (`conv`) except on PyTorch,
    whose own is fast and which exports nothing to LiteRT.
    """
    kernel = ops.cast(kernel, x.dtype)

    def one_conv(x, kernel):
        if keras.backend.backend() == "torch":
            # Keras's PyTorch conv copies a channels_last input twice (to NCHW,
            # then to channels_last memory for the kernel). The NCHW view of an
            # NHWC tensor already is channels_last memory: the same kernel runs,
            # with no copy.
            outputs = ops.conv(
                to_channels_first(x),
                kernel,
                strides=strides,
                padding=padding,
                data_format="channels_first",
                dilation_rate=dilation_rate,
            )
            return to_channels_last(outputs, "channels_first")
        return conv(
            x,
            kernel,
            strides=strides,
            padding=padding,
            data_format="channels_last",
            dilation_rate=dilation_rate,
        )

    if groups == 1 or not _computes_on_cpu():
        return one_conv(x, kernel)
    parts = ops.split(x, groups, axis=-1)
    kernels = ops.split(kernel, groups, axis=-1)
    return ops.concatenate([one_conv(p, k) for p, k in zip(parts, kernels)], axis=-1)


def batch_norm(x, mean, variance, gamma, beta, axis=-1, epsilon=1e-5, training=False):
    """BatchNormalization of `x` over every axis but `axis`: `(outputs, mean, variance)`.

    With `training=True` the statistics are the batch's (the biased variance,
    which Keras's `BatchNormalization` puts in its moving variance) and the
    `mean`/`variance` arguments are not read; they are returned unchanged
    otherwise. `gamma` and `beta` may be None. `x` and the statistics share
    a floating dtype.

    Backend fast paths, equal to the `keras.ops` form to float32 rounding
    (`keras.ops.moments` then `keras.ops.batch_normalization`: about five
    passes over `x` forward and ten backward): TensorFlow's fused kernel in
    training mode (`FusedBatchNormV3`, one pass forward, one backward, also
    under XLA) and PyTorch's `native_batch_norm`, the kernel that
    `torch.nn.BatchNorm2d` and timm run. TensorFlow's inference keeps the
    `keras.ops` form, a multiply-add that TFLite lowers to builtins; JAX
    always does (XLA fuses it).
    """
    rank = len(x.shape)
    axis = axis % rank
    backend = keras.config.backend()
    if backend == "tensorflow" and training and x.shape[axis] is not None:
        return _batch_norm_tensorflow(x, gamma, beta, axis, epsilon)
    if backend == "torch":
        return _batch_norm_torch(x, mean, variance, gamma, beta, axis, epsilon, training)
    if training:
        axes = tuple(a for a in range(rank) if a != axis)
        mean, variance = ops.moments(x, axes)
    outputs = ops.batch_normalization(
        x, mean, variance, axis=axis, offset=beta, scale=gamma, epsilon=epsilon
    )
    return outputs, mean, variance


def _batch_norm_tensorflow(x, gamma, beta, axis, epsilon):
    """Training-mode BN through TensorFlow's fused kernel (4-D NHWC or NCHW)."""
    import tensorflow as tf

    rank = len(x.shape)
    channels = x.shape[axis]
    folded = not (rank == 4 and axis in (1, 3))
    if folded:
        # The kernel wants 4-D: move the channels last and fold the rest.
        order = [a for a in range(rank) if a != axis] + [axis]
        if axis != rank - 1:
            x = tf.transpose(x, order)
        shape = tf.shape(x)
        x = tf.reshape(x, (1, -1, 1, channels))
    dtype = x.dtype
    scale = tf.ones((channels,), dtype) if gamma is None else tf.cast(gamma, dtype)
    offset = tf.zeros((channels,), dtype) if beta is None else tf.cast(beta, dtype)
    outputs, mean, variance = tf.compat.v1.nn.fused_batch_norm(
        x,
        scale,
        offset,
        epsilon=epsilon,
        data_format="NCHW" if axis == 1 and not folded else "NHWC",
        is_training=True,
    )
    if folded:
        outputs = tf.reshape(outputs, shape)
        if axis != rank - 1:
            outputs = tf.transpose(outputs, [order.index(a) for a in range(rank)])
    # The kernel returns the unbiased variance (times n / max(n - 1, 1)) for
    # the moving average; Keras's BatchNormalization keeps the biased one.
    count = tf.cast(tf.size(x) // channels, variance.dtype)
    variance = variance * tf.maximum(count - 1.0, 1.0) / count
    return outputs, tf.stop_gradient(mean), tf.stop_gradient(variance)


def _batch_norm_torch(x, mean, variance, gamma, beta, axis, epsilon, training):
    """BN through PyTorch's `native_batch_norm` (channels on axis 1: a view moves them)."""
    import torch

    x = ops.convert_to_tensor(x)
    gamma = None if gamma is None else ops.convert_to_tensor(gamma)
    beta = None if beta is None else ops.convert_to_tensor(beta)
    moved = torch.movedim(x, axis, 1)
    if training:
        outputs, mean, inverse_std = torch.native_batch_norm(
            moved, gamma, beta, None, None, True, 0.0, epsilon
        )
        # The kernel keeps 1 / sqrt(var + eps), from the biased variance.
        variance = torch.clamp_min(
            torch.reciprocal(torch.square(inverse_std.detach())) - epsilon, 0
        )
        mean = mean.detach()
    else:
        mean = ops.convert_to_tensor(mean)
        variance = ops.convert_to_tensor(variance)
        outputs = torch.nn.functional.batch_norm(
            moved, mean, variance, gamma, beta, training=False, eps=epsilon
        )
    return torch.movedim(outputs, 1, axis), mean, variance
