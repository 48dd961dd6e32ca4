"""Boring clips: a 3-D layer with its 2-D weights inflated sees every frame as the 2-D layer does.

A clip whose frames are all one image, fed to the volume form of a layer whose
weights are the image form's inflated ones (`helpers.inflate_weights`: 1x1
kernels as 1x1x1, k x k ones centred in k x k x k), gives in every frame the
image form's output on that image: means, maxima and softmaxes over positions
see each position D times, which changes nothing. This is the property that
inflating pretrained 2-D networks into 3-D ones (I3D) relies on. Layers whose
statistics count positions differently are listed in NOT_INVARIANT with why,
and a test holds that they do differ (so the list stays honest).
"""

import dataclasses

import numpy as np
import pytest
from helpers import inflate_weights
from helpers import randomize_weights
from helpers import to_numpy
from test_layer_contract import DEPTH
from test_layer_contract import VOLUME_CASES
from test_layer_contract import make
from test_layer_contract import random_input

TOLERANCE = {"rtol": 1e-4, "atol": 1e-4}  # float32 rounding of the two forms' sums
# class name -> why a boring clip's frames differ from the image's output.
NOT_INVARIANT = {
    "SimAM": "its energy divides by the unbiased variance over positions: a clip of D equal "
    "frames has D times the image's squared deviations over D*H*W - 1, not D*(H*W - 1)",
    "SpatialGroupEnhance": "it divides the similarity by its unbiased standard deviation over "
    "positions (D*H*W - 1 in a clip against D*(H*W - 1) for D copies of the image)",
    "StyleRecalibration": (
        "its std is the unbiased one over positions: a clip divides D*H*W squared deviations "
        "by D*H*W - 1, the image D times fewer by H*W - 1"
    ),
    "PolarizedSelfAttention": (
        "its spatial gate is a sigmoid of a softmax over all positions: on a clip the "
        "weights sum to 1 over D times as many positions, each frame's 1/D of the image's"
    ),
    "ChannelAttention": (
        "its C x C energies sum over every position, so D identical frames give D times "
        "the frame's energies and a sharper softmax over channels"
    ),
    "DualAttention": (
        "its channel branch is ChannelAttention, whose energies sum over every position "
        "(D times the frame's on a boring clip)"
    ),
    "CrissCrossAttention": (
        "its cross runs along depth too: on a boring clip the depth line holds D - 1 copies "
        "of the centre, which the image's softmax over H + W - 1 positions does not see"
    ),
    "CoordinateAttention": "its 3-D form has a third gate, along depth (conv_d, no 2-D "
    "counterpart), which still scales every frame of a boring clip",
    "EfficientLocalAttention": "its 3-D form gates each frame by its depth strip, which is "
    "constant on a boring clip: GroupNorm maps it to beta (and padding moves the ends), not to "
    "a gate of 1",
}


def paired(case):
    """The image form with random weights, its volume form with them inflated, and the inputs."""
    image_case = dataclasses.replace(case, rank=2)
    image = random_input(image_case, seed=5)
    clip = np.repeat(image[:, None], DEPTH, axis=1)
    image_layer = make(image_case)
    image_layer(image)
    randomize_weights(image_layer)
    volume_layer = make(case)
    volume_layer(clip)
    inflate_weights(image_layer, volume_layer)
    return to_numpy(image_layer(image)), to_numpy(volume_layer(clip))


def case_params(invariant):
    return [
        pytest.param(case, id=case.id)
        for case in VOLUME_CASES
        if (case.cls.__name__ not in NOT_INVARIANT) == invariant
    ]


@pytest.mark.parametrize("case", case_params(invariant=True))
def test_boring_clip_gives_the_image_output_in_every_frame(case):
    expected, frames = paired(case)
    for depth in range(DEPTH):
        np.testing.assert_allclose(frames[:, depth], expected, **TOLERANCE)


@pytest.mark.parametrize("case", case_params(invariant=False))
def test_listed_layers_do_differ_on_a_boring_clip(case):
    expected, frames = paired(case)
    # Outside the tolerance that the invariant layers are held to.
    assert not np.allclose(frames, expected[:, None], **TOLERANCE), NOT_INVARIANT[case.cls.__name__]
