"""timm checkpoints as {state-dict name: NumPy array}: from a file, a mapping or the hub."""

import collections
import os

import keras
import numpy as np


def load_checkpoint(checkpoint):
    """A state dict as {name: numpy array}, from a mapping or a file.

    `.safetensors` files load with `safetensors.numpy` (no torch); `.pth`,
    `.pt` and `.bin` files need torch.
    """
    if isinstance(checkpoint, collections.abc.Mapping):
        return {k: _to_numpy(v) for k, v in checkpoint.items()}
    if not isinstance(checkpoint, (str, os.PathLike)) or not os.path.isfile(checkpoint):
        raise ValueError(
            "`checkpoint` must be None, a path to a .safetensors/.pth/.bin file, or a "
            f"mapping of state-dict names to arrays. Received: checkpoint={checkpoint!r}"
        )
    path = os.fspath(checkpoint)
    if path.endswith(".safetensors"):
        from safetensors.numpy import load_file

        return load_file(path)
    import torch  # only for PyTorch's pickled checkpoints

    state = torch.load(path, map_location="cpu", weights_only=True)
    state = state.get("state_dict", state) if isinstance(state, dict) else state
    return {k: v.detach().float().numpy() for k, v in state.items()}


def _to_numpy(value):
    if hasattr(value, "detach"):  # a torch tensor
        value = value.detach().cpu().float().numpy()
    return np.asarray(value)


def download(config):
    """timm's weights named by `timm_config(...)`: from the hub, or `config["url"]`."""
    if config["url"]:
        path = keras.utils.get_file(origin=config["url"], cache_subdir="timm")
        return load_checkpoint(path)
    try:
        from huggingface_hub import hf_hub_download
    except ImportError as error:
        raise ImportError(
            "Downloading timm's weights needs huggingface_hub and safetensors: "
            "pip install keras_attention[pretrained]"
        ) from error
    return load_checkpoint(hf_hub_download(config["hub_id"], "model.safetensors"))
