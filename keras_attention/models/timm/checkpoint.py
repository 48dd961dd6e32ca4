"""timm checkpoints as {state-dict name: NumPy array}: from a file, a mapping or the hub.

Offline, the hub download fails at once with `WeightsUnavailableError`, which
says what to do instead (`pretrained=False`, `checkpoint=...`, `HF_HUB_OFFLINE`):
huggingface_hub itself retries for ~20 s and then names only its cache.
"""

import collections
import os
import socket
import urllib.parse

import keras
import numpy as np


def load_checkpoint(checkpoint):
    """A state dict as {name: numpy array}, from a mapping or a file.

    `.safetensors` files load with `safetensors.numpy` (no torch); `.pth`,
    `.pt` and `.bin` files need torch.
    """
    if isinstance(checkpoint, collections.abc.Mapping):
        return {k: _to_numpy(v) for k, v in checkpoint.items()}
    is_path = isinstance(checkpoint, (str, os.PathLike))
    if is_path and not os.path.isfile(checkpoint):
        raise FileNotFoundError(
            f"The checkpoint file {os.fspath(checkpoint)!r} does not exist (looked for "
            f"{os.path.abspath(checkpoint)!r}). Received: checkpoint={checkpoint!r}"
        )
    if not is_path:
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


# Seconds to wait for a TCP connection to the hub before calling it unreachable.
PROBE_TIMEOUT = 3.0
_TRUE = {"1", "on", "yes", "true"}


class WeightsUnavailableError(OSError):
    """timm's weights are neither in the local cache nor downloadable (offline)."""


def _offline_mode():
    """HF_HUB_OFFLINE, read now (huggingface_hub reads it once, at its import)."""
    from huggingface_hub import constants

    return bool(constants.HF_HUB_OFFLINE) or (
        os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in _TRUE
    )


def _reachable(url, timeout=PROBE_TIMEOUT):
    """Whether a TCP connection to `url`'s host opens within `timeout` seconds.

    True where a proxy is configured: the host is then reached through it, and
    the download's own error tells.
    """
    if any(os.environ.get(k) for k in ("HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy")):
        return True
    parsed = urllib.parse.urlparse(url)
    port = parsed.port or (80 if parsed.scheme == "http" else 443)
    try:
        socket.create_connection((parsed.hostname, port), timeout=timeout).close()
        return True
    except (OSError, TypeError):  # no DNS, no route, refused, timed out; no host
        return False


def _unavailable(config, where, reason):
    name = config.get("name") or config.get("hub_id") or "this model"
    return WeightsUnavailableError(
        f"timm's weights for {name!r} ({where}) are not in the local cache and {reason}. "
        "Either build the model without them (`pretrained=False`, random initialisation), "
        "or pass a local file: `checkpoint='model.safetensors'` (timm's file from the model "
        "hub, downloaded once on a machine online; `--checkpoint` in the examples). Once the "
        "weights are in the cache, `HF_HUB_OFFLINE=1` uses them without any network access."
    )


def download(config):
    """timm's weights named by `timm_config(...)`: from the cache, the hub or `config["url"]`.

    Raises:
        WeightsUnavailableError: not cached and the source cannot be reached
            (or `HF_HUB_OFFLINE` is set); raised within seconds, not after
            huggingface_hub's retries.
    """
    if config["url"]:
        return load_checkpoint(_download_url(config))
    try:
        from huggingface_hub import hf_hub_download
    except ImportError as error:
        raise ImportError(
            "Downloading timm's weights needs huggingface_hub and safetensors: "
            "pip install keras_attention[pretrained]"
        ) from error
    from huggingface_hub import constants
    from huggingface_hub.errors import LocalEntryNotFoundError

    repo, filename = config["hub_id"], "model.safetensors"
    where = f"{filename} of {repo} on {constants.ENDPOINT}"
    try:  # the cache first: no network at all when the file is there
        return load_checkpoint(hf_hub_download(repo, filename, local_files_only=True))
    except LocalEntryNotFoundError:
        pass
    if _offline_mode():
        raise _unavailable(config, where, "HF_HUB_OFFLINE is set")
    if not _reachable(constants.ENDPOINT):
        raise _unavailable(config, where, f"{constants.ENDPOINT} cannot be reached")
    try:
        path = hf_hub_download(repo, filename)
    except LocalEntryNotFoundError as error:  # the hub went away during the download
        raise _unavailable(config, where, "the download failed") from error
    return load_checkpoint(path)


def _download_url(config):
    """`config["url"]` through Keras's file cache (no network when it is cached)."""
    url = config["url"]
    try:
        return keras.utils.get_file(origin=url, cache_subdir="timm")
    except Exception as error:  # Keras raises a bare Exception for a failed fetch
        if _reachable(url):
            raise
        host = urllib.parse.urlparse(url).hostname
        raise _unavailable(config, url, f"{host} cannot be reached") from error
