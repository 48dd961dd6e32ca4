"""Backend-agnostic test helpers: random weights, gradients, NumPy conversion."""

import inspect

import keras
import numpy as np


def to_numpy(x):
    return np.asarray(keras.ops.convert_to_numpy(keras.ops.cast(x, "float32")))


def randomize_weights(layer, seed=0):
    """Replaces every weight with random values so that no path is silenced.

    Initial weights hide bugs: gamma=0 and zero-initialised BN make attention
    blocks the identity. Variances stay positive.
    """
    rng = np.random.default_rng(seed)
    for weight in layer.weights:
        shape = tuple(weight.shape)
        if "variance" in weight.path:
            value = rng.uniform(0.5, 1.5, shape)
        else:
            value = rng.uniform(-0.5, 0.5, shape)
        weight.assign(value.astype(weight.dtype))


def images(shape, scale=1.0, seed=0):
    """Normal float32 inputs of `shape` (times `scale`), the same for a given `seed`."""
    return (np.random.default_rng(seed).normal(size=shape) * scale).astype("float32")


def randomized_layer(cls, shape, **kwargs):
    """`cls(**kwargs)` built on `images(shape)`, with its weights randomized."""
    layer = cls(**kwargs)
    layer(images(shape))
    randomize_weights(layer)
    return layer


def trainable_gradients(layer, x, training=True):
    """Gradients of a random projection of the layer's output w.r.t. its trainable weights."""
    backend = keras.backend.backend()
    rng = np.random.default_rng(1)
    out_shape = tuple(keras.ops.shape(layer(x, training=training)))
    projection = keras.ops.convert_to_tensor(rng.normal(size=out_shape).astype("float32"))

    def loss_of(out):
        return keras.ops.sum(keras.ops.cast(out, "float32") * projection)

    if backend == "tensorflow":
        import tensorflow as tf

        with tf.GradientTape() as tape:
            loss = loss_of(layer(x, training=training))
        return [
            to_numpy(g) if g is not None else None
            for g in tape.gradient(loss, layer.trainable_weights)
        ]
    if backend == "jax":
        import jax

        trainable = [v.value for v in layer.trainable_variables]
        non_trainable = [v.value for v in layer.non_trainable_variables]
        # stateless_call passes `training` on even to layers whose call lacks it.
        takes_training = "training" in inspect.signature(layer.call).parameters
        kwargs = {"training": training} if takes_training else {}

        def loss_fn(tv):
            out, _ = layer.stateless_call(tv, non_trainable, x, **kwargs)
            return loss_of(out)

        return [to_numpy(g) for g in jax.grad(loss_fn)(trainable)]
    if backend == "torch":
        layer.zero_grad()
        loss_of(layer(x, training=training)).backward()
        return [
            to_numpy(v.value.grad) if v.value.grad is not None else None
            for v in layer.trainable_variables
        ]
    raise NotImplementedError(backend)


def input_gradient(layer, x, training=True):
    """Gradient of a random projection of the layer's output w.r.t. its input `x`.

    For parameter-free layers (SimAM), whose only gradient path is the input.
    """
    backend = keras.backend.backend()
    rng = np.random.default_rng(1)
    projection = rng.normal(size=tuple(keras.ops.shape(layer(x, training=training))))
    projection = keras.ops.convert_to_tensor(projection.astype("float32"))

    def loss_of(out):
        return keras.ops.sum(keras.ops.cast(out, "float32") * projection)

    if backend == "tensorflow":
        import tensorflow as tf

        x = tf.convert_to_tensor(x)
        with tf.GradientTape() as tape:
            tape.watch(x)
            loss = loss_of(layer(x, training=training))
        return to_numpy(tape.gradient(loss, x))
    if backend == "jax":
        import jax

        return to_numpy(jax.grad(lambda v: loss_of(layer(v, training=training)))(x))
    if backend == "torch":
        import torch

        x = torch.tensor(x, requires_grad=True)
        loss_of(layer(x, training=training)).backward()
        return to_numpy(x.grad)
    raise NotImplementedError(backend)


def inflate_weight(weight, shape):
    """A 2-D layer's weight mapped onto the shape of its 3-D form's weight (I3D inflation).

    Equal shapes copy (dense layers, biases, 1-D kernels, norms). A kernel that
    gains a leading depth axis is centred in depth with zeros elsewhere when
    the depth is odd (a 1x1 kernel becomes 1x1x1, a k x k one sits in the
    middle of k x k x k), and repeated over depth and divided by it when even
    (a kernel whose stride equals its size averages the frames it pools).
    """
    weight = np.asarray(weight)
    shape = tuple(shape)
    if weight.shape == shape:
        return weight
    if shape[1:] != weight.shape:
        raise ValueError(f"cannot inflate a weight of shape {weight.shape} to {shape}")
    depth = shape[0]
    if depth % 2:
        inflated = np.zeros(shape, weight.dtype)
        inflated[depth // 2] = weight
        return inflated
    return np.repeat(weight[None], depth, axis=0) / depth


def inflate_affine(weight, shape):
    """A 2-D affine theta's Dense weight (..., 6) mapped onto a 3-D one's (..., 12).

    The 2x3 transform of (x, y, 1) becomes the 3x4 transform of (x, y, z, 1)
    that warps every frame alike and keeps z: rows [a, b, 0, tx], [c, d, 0, ty]
    and, in the bias only, [0, 0, 1, 0] (SpatialTransformer's theta).
    """
    weight = np.asarray(weight)
    inflated = np.zeros(shape, weight.dtype)
    for row in range(2):
        inflated[..., 4 * row : 4 * row + 2] = weight[..., 3 * row : 3 * row + 2]
        inflated[..., 4 * row + 3] = weight[..., 3 * row + 2]
    if weight.ndim == 1:  # the bias: z' = z
        inflated[10] = 1.0
    return inflated


def inflate_weights(image_layer, volume_layer):
    """Sets `volume_layer`'s weights to `image_layer`'s inflated ones, matched by order and path.

    A layer's 2-D and 3-D forms create the same sublayers with the same names in
    the same order (DESIGN.md), so their weights pair one to one; the paths are
    compared below the layer's own name. A 3-D form may add weights of its own
    after the shared ones (CoordinateAttention's depth gate): they keep their
    values.
    """
    images, volumes = image_layer.weights, volume_layer.weights
    assert len(images) <= len(volumes), (len(images), len(volumes))
    for image, volume in zip(images, volumes):
        assert image.path.split("/", 1)[-1] == volume.path.split("/", 1)[-1], (
            image.path,
            volume.path,
        )
        if image.path.split("/")[-2] == "theta" and (image.shape[-1], volume.shape[-1]) == (6, 12):
            value = inflate_affine(image.numpy(), volume.shape)
        else:
            value = inflate_weight(image.numpy(), volume.shape)
        volume.assign(value.astype(volume.dtype))


def float64(variable):
    """A variable or tensor as a NumPy float64 array, for references in float64."""
    return np.asarray(to_numpy(variable), "float64")


def grouped_conv3d_numpy(x, kernel, groups, strides=1, dilation=1, padding=0):
    """PyTorch's grouped Conv3d (no bias) in NumPy on a channels-last clip.

    `x` is (B, D, H, W, Cin) and `kernel` (k, k, k, Cin / groups, F): zero padding
    `padding` on every side, then the grouped, dilated, strided sums.
    """
    k = kernel.shape[0]
    x = np.pad(x, ((0, 0),) + ((padding, padding),) * 3 + ((0, 0),))
    reach = dilation * (k - 1)
    out = [(n - reach - 1) // strides + 1 for n in x.shape[1:4]]
    cin, filters = kernel.shape[3], kernel.shape[4]
    y = np.zeros((x.shape[0], *out, groups, filters // groups))
    for a in range(k):
        for b in range(k):
            for c in range(k):
                window = x[
                    :,
                    a * dilation : a * dilation + strides * (out[0] - 1) + 1 : strides,
                    b * dilation : b * dilation + strides * (out[1] - 1) + 1 : strides,
                    c * dilation : c * dilation + strides * (out[2] - 1) + 1 : strides,
                ]
                window = window.reshape(*window.shape[:4], groups, cin)
                tap = kernel[a, b, c].reshape(cin, groups, filters // groups)
                y += np.einsum("bdhwgi,igo->bdhwgo", window, tap)
    return y.reshape(*y.shape[:4], filters)


def batch_norm_numpy(x, norm):
    """Inference-mode BatchNormalization `norm` applied to `x` in NumPy float64."""
    gamma, beta = float64(norm.gamma), float64(norm.beta)
    mean, variance = float64(norm.moving_mean), float64(norm.moving_variance)
    return (x - mean) / np.sqrt(variance + norm.epsilon) * gamma + beta
