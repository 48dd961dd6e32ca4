"""timm's models with random, well-conditioned weights, and our logits measured against them.

Offline: timm builds each model with pretrained=False; its weights are
randomised (BatchNorm affine parameters too, and the running statistics
calibrated on random images so that activations stay O(1) through 100+
layers), saved as .safetensors and loaded with `from_timm`.
"""

import copy

import numpy as np
import pytest
import torch
from helpers import to_numpy
from model_checks import trainable_count
from timm_import import import_timm

from keras_attention.models import from_timm


def images(size, seed=0, batch=2):
    """NCHW float32 normal images of `size` (H, W)."""
    height, width = size
    return np.random.default_rng(seed).normal(size=(batch, 3, height, width)).astype("float32")


def random_timm_model(name, size=(56, 40), seed=0, **kwargs):
    """timm's `name` (kwargs to `create_model`) in eval mode, random weights, BN calibrated."""
    timm = import_timm()
    model = timm.create_model(name, pretrained=False, **kwargs)
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for key, param in model.named_parameters():
            if param.ndim == 1:  # BN/LayerNorm affine and biases: nothing left at 0 or 1
                if key.endswith("weight"):
                    param.copy_(torch.rand(param.shape, generator=generator) + 0.5)
                else:
                    param.copy_(torch.randn(param.shape, generator=generator) * 0.2)
        norms = [m for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d)]
        for module in norms:
            module.momentum = 1.0  # running statistics := one random batch's
        model.train()
        model(torch.randn(4, 3, *size, generator=generator))
        for module in norms:
            # Four images at the last stages' small maps give noisy variances:
            # inflate them so that the random network stays well-conditioned
            # (1e-5 float32 rounding is not amplified past 1e-4 by 150 layers).
            module.running_var.add_(module.running_var.mean())
    return model.eval()


def save(model, path):
    from safetensors.torch import save_file

    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(path))
    return path


def logits(model, nchw):
    with torch.no_grad():
        return model(torch.from_numpy(nchw)).numpy()


def compare_with_timm(name, tmp_path, size=(56, 40), timm_kwargs=None, **from_timm_kwargs):
    """Our float32 logits and timm's float32 logits, each against timm in float64.

    Returns a dict: "ours" and "timm" (max absolute error against float64),
    "scale" (max |float64 logit|), "params" (ours, timm's) and the models.
    """
    reference = random_timm_model(name, size, **(timm_kwargs or {}))
    path = save(reference, tmp_path / f"{name}.safetensors")
    nchw = images(size)
    exact = logits(copy.deepcopy(reference).double(), nchw.astype("float64"))
    timm32 = logits(reference, nchw)
    model = from_timm(name, checkpoint=path, include_preprocessing=False, **from_timm_kwargs)
    ours = to_numpy(model(nchw.transpose(0, 2, 3, 1)))
    return {
        "ours": float(np.abs(ours - exact).max()),
        "timm": float(np.abs(timm32 - exact).max()),
        "scale": float(np.abs(exact).max()),
        "params": (trainable_count(model), sum(p.numel() for p in reference.parameters())),
        "model": model,
        "reference": reference,
    }


def assert_equal_to_timm(result):
    """Our error vs float64 at most 4x timm float32's (or 1e-4 of the logits), same params."""
    bound = max(4 * result["timm"], 1e-4 * result["scale"])
    assert result["ours"] <= bound, (
        f"ours {result['ours']:.3g} vs float64, timm float32 {result['timm']:.3g}, "
        f"bound {bound:.3g}"
    )
    assert result["params"][0] == result["params"][1]


def assert_refuses_broken_checkpoint(name, state, missing, unloaded, extra, misshaped, **kwargs):
    """`from_timm` refuses `state` with tensor `missing` removed, `extra` added and
    `misshaped` cut by one along its last axis, and its message names all three.

    `unloaded` is how the message names the variable that `missing` should have
    filled: "<layer name>: <variable path>".
    """
    state = dict(state)
    del state[missing]
    state[extra] = np.zeros(3, "float32")
    state[misshaped] = state[misshaped][..., :-1]
    with pytest.raises(ValueError, match="one to one") as info:
        from_timm(name, checkpoint=state, **kwargs)
    message = str(info.value)
    assert f"unmatched checkpoint tensors: ['{extra}']" in message
    assert unloaded in message
    assert f"wrong shapes: ['{misshaped} {tuple(state[misshaped].shape)}" in message
