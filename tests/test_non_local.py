"""NonLocalBlock: identity at init, NumPy references of every mode, odd sizes, paths agree.

Volumes and clips: the same references in 3-D (1x2x2 pooling, before or after
the phi and g convolutions, scaled logits), and mmcv's `NonLocal3d` and
pytorchvideo's `create_nonlocal` with the weights copied.
"""

import functools

import keras
import numpy as np
import pytest
from helpers import images
from helpers import randomized_layer
from helpers import to_numpy
from helpers import trainable_gradients

from keras_attention.layers import NonLocalBlock
from keras_attention.layers.spatial.non_local import MODES

randomized = functools.partial(randomized_layer, NonLocalBlock)


def weights_of(layer):
    return {v.path.split("/", 1)[1]: to_numpy(v).astype("float64") for v in layer.weights}


def conv(x, w, name):
    kernel = w[f"{name}/kernel"]
    return x @ kernel.reshape(kernel.shape[-2:]) + w.get(f"{name}/bias", 0.0)


def max_pool_same(t):
    """2x2/2 max-pool of height and width, 'same' padding: odd sizes keep their last row/column.

    A clip's (batch, D, H, W, C) is pooled in H and W only (1x2x2).
    """
    *lead, height, width, channels = t.shape
    padded = np.full((*lead, height + height % 2, width + width % 2, channels), -np.inf)
    padded[..., :height, :width, :] = t
    h, w = padded.shape[-3] // 2, padded.shape[-2] // 2
    return padded.reshape(*lead, h, 2, w, 2, channels).max(axis=(-4, -2))


def softmax(e):
    e = np.exp(e - e.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


def reference(layer, x):
    """The block in inference mode from its own weights, in float64: (outputs, f / C(x))."""
    w = weights_of(layer)
    x = x.astype("float64")
    batch = x.shape[0]
    pool = max_pool_same if layer.sub_sample else (lambda t: t)

    def flat(t):
        return t.reshape(batch, -1, t.shape[-1])

    def embed(name):  # phi or g: of x pooled first (the video code), or pooled after
        if layer.pool_before:
            return flat(conv(pool(x), w, name))
        return flat(pool(conv(x, w, name)))

    g = embed("g")
    if layer.mode == "gaussian":
        theta, phi = flat(x), flat(pool(x))
    else:
        theta, phi = flat(conv(x, w, "theta")), embed("phi")
    count = phi.shape[1]
    if layer.mode == "concatenation":
        pairs = np.concatenate(
            [
                np.broadcast_to(
                    theta[:, :, None], theta.shape[:2] + phi.shape[1:2] + theta.shape[2:]
                ),
                np.broadcast_to(phi[:, None], theta.shape[:2] + phi.shape[1:]),
            ],
            axis=-1,
        )  # (batch, queries, keys, 2C'): the paper's [theta_i, phi_j]
        f = np.maximum(pairs @ w["concat_kernel"][:, 0] + w["concat_bias"][0], 0.0) / count
    elif layer.mode == "dot_product":
        f = theta @ phi.transpose(0, 2, 1) / count
    else:
        scale = theta.shape[-1] ** -0.5 if layer.scale else 1.0
        f = softmax(theta @ phi.transpose(0, 2, 1) * scale)
    y = conv((f @ g).reshape(*x.shape[:-1], -1), w, "w")
    if layer.use_bn:
        scale = w["bn/gamma"] / np.sqrt(w["bn/moving_variance"] + layer.bn.epsilon)
        y = (y - w["bn/moving_mean"]) * scale + w["bn/beta"]
    return y + x, f


@pytest.mark.parametrize("use_bn", [True, False])
@pytest.mark.parametrize("sub_sample", [True, False])
@pytest.mark.parametrize("mode", MODES)
def test_identity_at_initialisation(mode, sub_sample, use_bn):
    layer = NonLocalBlock(mode=mode, sub_sample=sub_sample, use_bn=use_bn)
    x = images((2, 5, 7, 8))
    for training in (False, True):
        np.testing.assert_array_equal(to_numpy(layer(x, training=training)), x)
    np.testing.assert_array_equal(to_numpy(layer(x, return_attention=True)[0]), x)


@pytest.mark.parametrize("sub_sample", [True, False])
@pytest.mark.parametrize("mode", MODES)
def test_matches_numpy_reference_on_odd_sizes(mode, sub_sample):
    x = images((2, 5, 7, 8), seed=1)
    layer = randomized(x.shape, mode=mode, sub_sample=sub_sample)
    expected, expected_f = reference(layer, x)
    outputs, attention = layer(x, return_attention=True)
    keys = 3 * 4 if sub_sample else 5 * 7
    assert tuple(attention.shape) == (2, 35, keys)
    np.testing.assert_allclose(to_numpy(attention), expected_f, rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(to_numpy(outputs), expected, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(to_numpy(layer(x)), expected, rtol=1e-4, atol=1e-5)


def test_without_batch_norm_matches_reference():
    x = images((1, 4, 6, 8), seed=2)
    layer = randomized(x.shape, mode="dot_product", use_bn=False, inter_channels=3)
    assert tuple(layer.theta.kernel.shape) == (1, 1, 8, 3)
    np.testing.assert_allclose(to_numpy(layer(x)), reference(layer, x)[0], rtol=1e-4, atol=1e-5)


def test_default_inter_channels_is_half():
    layer = NonLocalBlock()
    layer(images((1, 4, 4, 16)))
    for name in ("theta", "phi", "g"):
        assert tuple(getattr(layer, name).kernel.shape) == (1, 1, 16, 8)


@pytest.mark.parametrize("sub_sample", [True, False])
def test_fused_and_explicit_paths_agree(sub_sample):
    x = images((2, 7, 5, 8), scale=3.0, seed=3)
    layer = randomized(x.shape, sub_sample=sub_sample)
    assert reference(layer, x)[1].max() > 0.9  # peaked rows
    fused = to_numpy(layer(x))
    explicit = to_numpy(layer(x, return_attention=True)[0])
    np.testing.assert_allclose(fused, explicit, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("use_bn", [True, False])
@pytest.mark.parametrize("mode", MODES)
def test_every_mode_trains_every_weight(mode, use_bn):
    # The bias rule: a bias only where it can change the output. A redundant
    # one (e.g. phi's under the softmax) gets float rounding noise, ~1e-6.
    layer = randomized((2, 5, 6, 8), mode=mode, use_bn=use_bn)
    gradients = trainable_gradients(layer, images((2, 5, 6, 8), seed=4))
    largest = max(np.abs(g).max() for g in gradients)
    for weight, gradient in zip(layer.trainable_weights, gradients):
        assert np.abs(gradient).max() > 1e-3 * largest, weight.path


@pytest.mark.parametrize("mode", ["embedded_gaussian", "gaussian"])
def test_mixed_float16_large_energies_stay_finite(mode):
    x = images((2, 6, 10, 32), scale=50.0, seed=5)
    layer = randomized(x.shape, mode=mode, sub_sample=False, dtype="mixed_float16")
    w = weights_of(layer)
    flat = x.reshape(2, -1, 32).astype("float64")
    query = flat if mode == "gaussian" else conv(flat, w, "theta")
    key = flat if mode == "gaussian" else conv(flat, w, "phi")
    assert np.abs(query @ key.transpose(0, 2, 1)).max() > np.finfo("float16").max
    fused = layer(x)
    explicit, attention = layer(x, return_attention=True)
    assert keras.backend.standardize_dtype(fused.dtype) == "float16"
    for tensor in (fused, explicit, attention):
        assert np.isfinite(to_numpy(tensor)).all()


def test_unknown_mode_lists_the_valid_ones():
    with pytest.raises(ValueError, match="`mode`") as error:
        NonLocalBlock(mode="softmax")
    assert all(mode in str(error.value) for mode in MODES)


@pytest.mark.parametrize(
    "name, value",
    [
        ("inter_channels", 0),
        ("inter_channels", 2.0),
        ("sub_sample", "yes"),
        ("use_bn", None),
        ("pool_before", 1),
        ("scale", "yes"),
    ],
)
def test_bad_arguments_raise(name, value):
    with pytest.raises(ValueError, match=f"`{name}`"):
        NonLocalBlock(**{name: value})


@pytest.mark.parametrize("mode", ["gaussian", "dot_product", "concatenation"])
def test_scale_is_refused_outside_embedded_gaussian(mode):
    with pytest.raises(ValueError, match="`scale`.*embedded_gaussian"):
        NonLocalBlock(mode=mode, scale=True)


def test_config_keeps_the_video_options():
    layer = NonLocalBlock(pool_before=True, scale=True)
    config = layer.get_config()
    assert config["pool_before"] is True and config["scale"] is True
    clone = NonLocalBlock.from_config(config)
    assert clone.pool_before is True and clone.scale is True
    default = NonLocalBlock().get_config()
    assert default["pool_before"] is False and default["scale"] is False


@pytest.mark.parametrize("pool_before", [True, False])
@pytest.mark.parametrize("mode", MODES)
def test_identity_at_initialisation_on_clips(mode, pool_before):
    layer = NonLocalBlock(mode=mode, pool_before=pool_before)
    x = images((2, 3, 5, 4, 8))
    np.testing.assert_array_equal(to_numpy(layer(x)), x)


@pytest.mark.parametrize("pool_before", [True, False])
@pytest.mark.parametrize("sub_sample", [True, False])
@pytest.mark.parametrize("mode", MODES)
def test_clip_matches_numpy_reference_on_odd_sizes(mode, sub_sample, pool_before):
    x = images((2, 3, 5, 7, 8), seed=6)
    layer = randomized(x.shape, mode=mode, sub_sample=sub_sample, pool_before=pool_before)
    assert tuple(layer.g.kernel.shape) == (1, 1, 1, 8, 4)
    expected, expected_f = reference(layer, x)
    outputs, attention = layer(x, return_attention=True)
    # Space only: all 3 frames, ceil(5 / 2) x ceil(7 / 2) positions in each.
    keys = 3 * 3 * 4 if sub_sample else 3 * 5 * 7
    assert tuple(attention.shape) == (2, 3 * 5 * 7, keys)
    np.testing.assert_allclose(to_numpy(attention), expected_f, rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(to_numpy(outputs), expected, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(to_numpy(layer(x)), expected, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("shape", [(2, 5, 7, 8), (2, 3, 5, 7, 8)])
def test_scaled_logits_match_reference_on_both_paths(shape):
    x = images(shape, scale=2.0, seed=7)
    layer = randomized(x.shape, scale=True, pool_before=True)
    unscaled = randomized(x.shape, pool_before=True)
    expected, expected_f = reference(layer, x)
    assert np.abs(expected - reference(unscaled, x)[0]).max() > 1e-2  # the scale matters
    outputs, attention = layer(x, return_attention=True)
    np.testing.assert_allclose(to_numpy(attention), expected_f, rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(to_numpy(outputs), expected, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(to_numpy(layer(x)), expected, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("shape", [(2, 6, 8, 8), (2, 2, 6, 8, 8)])
def test_pooling_before_the_convolutions_is_a_different_block(shape):
    # The same weights: a max does not commute with a 1x1 convolution.
    x = images(shape, seed=8)
    after = randomized(x.shape)
    before = randomized(x.shape, pool_before=True)
    for a, b in zip(after.weights, before.weights):
        np.testing.assert_array_equal(to_numpy(a), to_numpy(b))
    assert np.abs(to_numpy(after(x)) - to_numpy(before(x))).max() > 1e-2


# The installed references: mmcv's NonLocal3d (AlexHex7's form) and pytorchvideo's
# create_nonlocal (the paper's video code), with their weights copied into ours.


def _torch():
    return pytest.importorskip("torch")


def _randomize_torch(module, seed=0):
    torch = _torch()
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, tensor in list(module.named_parameters()) + list(module.named_buffers()):
            if not tensor.dtype.is_floating_point:
                continue
            value = torch.rand(tensor.shape, generator=generator) - 0.5
            if name.endswith("running_var"):
                value = value + 1.0
            tensor.copy_(value)


def _kernel(conv):
    """torch Conv3d (out, in, 1, 1, 1) -> Keras (1, 1, 1, in, out), float64."""
    return conv.weight.detach().double().numpy()[:, :, 0, 0, 0].T[None, None, None]


def _load(layer, convs, norm):
    """Our weights from the reference's: theta, phi, g, w convs and its BatchNorm3d.

    A bias the reference has and we drop is folded in, which is exact: phi's
    under a softmax over keys changes nothing; g's, when the weights of each
    query sum to 1, adds W g_bias to every position, which (like W's own bias)
    moves BatchNorm's moving mean.
    """
    shift = np.zeros(layer.w.kernel.shape[-1])
    w_kernel = _kernel(convs["w"])
    for name, conv in convs.items():
        ours = getattr(layer, name, None)
        if ours is None:
            continue
        ours.kernel.assign(_kernel(conv).astype("float32"))
        bias = None if conv.bias is None else conv.bias.detach().double().numpy()
        if ours.use_bias:  # a bias the reference lacks (mmcv's W before its norm) is zero
            ours.bias.assign(np.zeros(ours.bias.shape) if bias is None else bias.astype("float32"))
        elif bias is not None and name == "g":
            shift += bias @ w_kernel[0, 0, 0]
        elif bias is not None and name == "w":
            shift += bias
    layer.bn.gamma.assign(norm.weight.detach().numpy())
    layer.bn.beta.assign(norm.bias.detach().numpy())
    layer.bn.moving_mean.assign(
        (norm.running_mean.detach().double().numpy() - shift).astype("float32")
    )
    layer.bn.moving_variance.assign(norm.running_var.detach().numpy())
    assert layer.bn.epsilon == norm.eps


def _ncdhw(x):
    return _torch().tensor(x).permute(0, 4, 1, 2, 3)


def _ndhwc(t):
    return t.permute(0, 2, 3, 4, 1).detach().numpy()


# mmcv's use_scale scales the "embedded_gaussian" logits only (our `scale`).
# Its "concatenation" in 3-D applies a Conv3d to a 4-D tensor, so it has no 3-D form.
MMCV_CASES = [
    ("embedded_gaussian", True),
    ("embedded_gaussian", False),
    ("gaussian", False),
    ("dot_product", False),
]


@pytest.mark.parametrize("use_bias", [False, True], ids=["minimal_biases", "all_biases"])
@pytest.mark.parametrize("sub_sample", [True, False])
@pytest.mark.parametrize("mode, use_scale", MMCV_CASES)
def test_equals_mmcv_nonlocal3d(mode, use_scale, sub_sample, use_bias):
    # mmcv pools phi's and g's outputs 1x2x2 (AlexHex7's form).
    pytest.importorskip("mmcv")
    from mmcv.cnn import NonLocal3d

    x = images((2, 3, 4, 6, 8), scale=2.0, seed=9)
    reference = NonLocal3d(
        8, sub_sample=sub_sample, use_scale=use_scale, mode=mode, norm_cfg={"type": "BN3d"}
    ).eval()
    _randomize_torch(reference)
    layer = NonLocalBlock(mode=mode, sub_sample=sub_sample, scale=use_scale, use_bias=use_bias)
    layer(x)
    if use_bias:  # mmcv's biases, none folded: its parameters, and W's bias (mmcv drops
        # it before a norm; AlexHex7's and the video code keep it), not the BN moving stats
        assert len(layer.trainable_weights) == len(list(reference.parameters())) + 1
        ours = sum(int(np.prod(w.shape)) for w in layer.trainable_weights)
        assert ours == sum(p.numel() for p in reference.parameters()) + 8
    convs = {"g": reference.g[0].conv if sub_sample else reference.g.conv, "w": None}
    if mode != "gaussian":
        phi = reference.phi[0] if sub_sample else reference.phi
        convs.update(theta=reference.theta.conv, phi=phi.conv)
    convs["w"] = reference.conv_out.conv
    _load(layer, convs, reference.conv_out.norm)
    with _torch().no_grad():
        expected = _ndhwc(reference(_ncdhw(x)))
    for outputs in (layer(x), layer(x, return_attention=True)[0]):
        np.testing.assert_allclose(to_numpy(outputs), expected, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("pool_size", [(1, 2, 2), None])
@pytest.mark.parametrize("instantiation", ["softmax", "dot_product"])
def test_equals_pytorchvideo_create_nonlocal(instantiation, pool_size):
    # The paper's video code: x pooled 1x2x2 before phi and g, softmax logits
    # scaled by inter_channels ** -0.5, W with a bias, then BatchNorm3d.
    pytest.importorskip("pytorchvideo")
    from pytorchvideo.layers.nonlocal_net import create_nonlocal

    x = images((2, 3, 4, 6, 8), scale=2.0, seed=10)
    reference = create_nonlocal(
        dim_in=8, dim_inner=4, pool_size=pool_size, instantiation=instantiation
    ).eval()
    _randomize_torch(reference)
    softmax_ = instantiation == "softmax"
    layer = NonLocalBlock(
        mode="embedded_gaussian" if softmax_ else "dot_product",
        sub_sample=pool_size is not None,
        pool_before=True,
        scale=softmax_,
    )
    layer(x)
    convs = {
        "theta": reference.conv_theta,
        "phi": reference.conv_phi,
        "g": reference.conv_g,
        "w": reference.conv_out,
    }
    _load(layer, convs, reference.norm)
    with _torch().no_grad():
        expected = _ndhwc(reference(_ncdhw(x)))
    for outputs in (layer(x), layer(x, return_attention=True)[0]):
        np.testing.assert_allclose(to_numpy(outputs), expected, rtol=1e-4, atol=1e-5)
