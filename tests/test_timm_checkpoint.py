"""from_timm's weights offline: a fast error that says what to do, no retry loop."""

import time

import numpy as np
import pytest

pytest.importorskip("huggingface_hub")
import huggingface_hub
from huggingface_hub import constants
from huggingface_hub.errors import LocalEntryNotFoundError

from keras_attention import models
from keras_attention.models.timm import checkpoint


@pytest.fixture
def empty_cache(tmp_path, monkeypatch):
    """An empty hub cache, HF_HUB_OFFLINE unset: the state of a fresh machine."""
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)


@pytest.fixture
def hub_calls(monkeypatch):
    """Records hf_hub_download's calls; the cache is empty and the network is down."""
    calls = []

    def fake_download(repo_id, filename, **kwargs):
        calls.append(kwargs.get("local_files_only", False))
        raise LocalEntryNotFoundError("cannot find the requested files in the local cache")

    monkeypatch.setattr(huggingface_hub, "hf_hub_download", fake_download)
    return calls


def assert_says_what_to_do(message):
    for hint in ("pretrained=False", "checkpoint=", "HF_HUB_OFFLINE", "seresnet50"):
        assert hint in message, (hint, message)


def test_unreachable_hub_fails_fast_without_a_download_attempt(empty_cache, hub_calls, monkeypatch):
    probed = []
    monkeypatch.setattr(checkpoint, "_reachable", lambda url, **kw: probed.append(url) or False)
    start = time.perf_counter()
    with pytest.raises(checkpoint.WeightsUnavailableError) as error:
        models.from_timm("seresnet50")
    assert time.perf_counter() - start < 5
    assert_says_what_to_do(str(error.value))
    assert "cannot be reached" in str(error.value)
    assert hub_calls == [True]  # the cache only: huggingface_hub's retry loop never runs
    assert probed == [constants.ENDPOINT]


def test_hf_hub_offline_fails_fast_without_probing(empty_cache, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")  # set after huggingface_hub's import: still read
    monkeypatch.setattr(checkpoint, "_reachable", lambda *a, **k: pytest.fail("probed the hub"))
    start = time.perf_counter()
    with pytest.raises(checkpoint.WeightsUnavailableError, match="HF_HUB_OFFLINE is set") as error:
        models.from_timm("seresnet50")  # the real hf_hub_download, on an empty cache
    assert time.perf_counter() - start < 5
    assert_says_what_to_do(str(error.value))


def test_real_download_on_unreachable_hub_is_fast(empty_cache, monkeypatch):
    # The real hf_hub_download: only its cache look-up may run (no HEAD request, no retries).
    monkeypatch.setattr(checkpoint, "_reachable", lambda *a, **k: False)
    start = time.perf_counter()
    with pytest.raises(checkpoint.WeightsUnavailableError):
        checkpoint.download(models.timm_config("seresnet50"))
    assert time.perf_counter() - start < 5


def test_failed_download_from_reachable_hub_says_what_to_do(empty_cache, hub_calls, monkeypatch):
    monkeypatch.setattr(checkpoint, "_reachable", lambda *a, **k: True)
    with pytest.raises(checkpoint.WeightsUnavailableError, match="download failed") as error:
        models.from_timm("seresnet50")
    assert_says_what_to_do(str(error.value))
    assert hub_calls == [True, False]  # the cache, then one download


def test_cached_weights_load_without_the_network(tmp_path, monkeypatch):
    from safetensors.numpy import save_file

    path = str(tmp_path / "model.safetensors")
    save_file({"fc.weight": np.ones((2, 3), "float32")}, path)
    seen = []

    def cached_only(repo_id, filename, local_files_only=False, **kwargs):
        seen.append((repo_id, filename, local_files_only))
        return path

    monkeypatch.setattr(huggingface_hub, "hf_hub_download", cached_only)
    monkeypatch.setattr(checkpoint, "_reachable", lambda *a, **k: pytest.fail("probed the hub"))
    state = checkpoint.download(models.timm_config("seresnet50"))
    np.testing.assert_array_equal(state["fc.weight"], np.ones((2, 3)))
    assert seen == [("timm/seresnet50.a1_in1k", "model.safetensors", True)]


def test_unreachable_url_checkpoint_says_what_to_do(monkeypatch):
    def failing_get_file(**kwargs):
        raise Exception("URL fetch failure")  # noqa: TRY002 (what keras.utils.get_file raises)

    monkeypatch.setattr(checkpoint.keras.utils, "get_file", failing_get_file)
    monkeypatch.setattr(checkpoint, "_reachable", lambda *a, **k: False)
    config = {"name": "legacy_seresnet50", "url": "https://example.invalid/w.pth", "hub_id": None}
    with pytest.raises(checkpoint.WeightsUnavailableError, match="example.invalid") as error:
        checkpoint.download(config)
    assert "pretrained=False" in str(error.value) and "checkpoint=" in str(error.value)


def test_missing_checkpoint_file_says_it_is_missing(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(FileNotFoundError, match="'missing.safetensors' does not exist"):
        models.from_timm("seresnet50", checkpoint="missing.safetensors")


def test_checkpoint_of_wrong_type_is_a_value_error():
    with pytest.raises(ValueError, match="Received: checkpoint=3"):
        checkpoint.load_checkpoint(3)


def test_reachable_is_false_for_a_host_that_does_not_resolve(monkeypatch):
    for name in ("HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy"):
        monkeypatch.delenv(name, raising=False)
    assert not checkpoint._reachable("https://no-such-host.invalid", timeout=1)
