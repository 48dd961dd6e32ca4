"""GroupNorm as a function, for layers whose reference code normalises inside a reshaped view.

SA-Net, EMA and ELA apply PyTorch's `nn.GroupNorm` to sub-batches of channel
groups or to pooled 1-D strips, where a `keras.layers.GroupNormalization` on
the full map would not line up; the layers own the affine weights and call this.
"""

from keras import ops

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
