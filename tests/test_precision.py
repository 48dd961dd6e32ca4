"""Choosing the dtype policy: the CPU flag reader and the `auto` rule."""

import keras
import pytest

from keras_attention import precision

CPUINFO = """processor\t: 0
vendor_id\t: AuthenticAMD
flags\t\t: fpu sse2 avx2 avx512f avx512_bf16 avx512_vnni
bogomips\t: 5192.25

processor\t: 1
flags\t\t: fpu sse2 avx2 avx512f avx512_bf16 avx512_vnni
"""


def test_cpu_flags_reads_the_flags_line(tmp_path):
    path = tmp_path / "cpuinfo"
    path.write_text(CPUINFO)
    assert precision.cpu_flags(path) == {
        "fpu",
        "sse2",
        "avx2",
        "avx512f",
        "avx512_bf16",
        "avx512_vnni",
    }


def test_cpu_flags_is_empty_without_cpuinfo(tmp_path):
    assert precision.cpu_flags(tmp_path / "missing") == set()


@pytest.mark.parametrize(
    "flags, expected",
    [
        ({"avx2", "avx512_bf16"}, True),
        ({"amx_bf16", "amx_tile"}, True),
        ({"avx2", "avx512f"}, False),
        (set(), False),
    ],
)
def test_cpu_has_bf16(flags, expected):
    assert precision.cpu_has_bf16(flags) is expected


@pytest.mark.parametrize(
    "gpu, flags, expected",
    [
        (False, {"avx2", "avx512_bf16"}, "mixed_bfloat16"),
        (False, {"avx2", "amx_bf16"}, "mixed_bfloat16"),
        (False, {"avx2", "avx512f"}, "float32"),
        (True, {"avx2", "avx512f"}, "mixed_float16"),
        (True, {"avx512_bf16"}, "mixed_float16"),
    ],
)
def test_auto_picks_by_device_and_cpu_flag(monkeypatch, gpu, flags, expected):
    monkeypatch.setattr(precision, "has_gpu", lambda: gpu)
    monkeypatch.setattr(precision, "cpu_flags", lambda path="/proc/cpuinfo": set(flags))
    assert precision.choose_policy("auto") == expected


@pytest.mark.parametrize("name", ["float32", "mixed_float16", "mixed_bfloat16"])
def test_explicit_precision_is_kept_and_set_globally(name):
    assert precision.set_precision(name) == name
    assert keras.config.dtype_policy().name == name


def test_unknown_precision_raises():
    with pytest.raises(ValueError, match="`precision`.*'fp16'"):
        precision.choose_policy("fp16")


@pytest.mark.parametrize(
    "backend, gpu, flags, volumes, images",
    [
        ("tensorflow", False, {"avx512_bf16"}, "float32", "mixed_bfloat16"),
        ("tensorflow", False, {"avx2"}, "float32", "float32"),
        ("tensorflow", True, {"avx512_bf16"}, "mixed_float16", "mixed_float16"),
        ("jax", False, {"avx512_bf16"}, "mixed_bfloat16", "mixed_bfloat16"),
        ("torch", False, {"amx_bf16"}, "mixed_bfloat16", "mixed_bfloat16"),
    ],
)
def test_auto_keeps_volumes_float32_on_tensorflow_cpu(
    monkeypatch, backend, gpu, flags, volumes, images
):
    monkeypatch.setattr(keras.backend, "backend", lambda: backend)
    monkeypatch.setattr(precision, "has_gpu", lambda: gpu)
    monkeypatch.setattr(precision, "cpu_flags", lambda path="/proc/cpuinfo": set(flags))
    assert precision.choose_policy("auto", spatial_rank=3) == volumes
    assert precision.choose_policy("auto", spatial_rank=2) == images
    assert precision.choose_policy("auto") == images


def test_explicit_precision_is_kept_for_volumes():
    assert precision.choose_policy("mixed_bfloat16", spatial_rank=3) == "mixed_bfloat16"
    assert precision.set_precision("mixed_bfloat16", spatial_rank=3) == "mixed_bfloat16"


@pytest.mark.parametrize("spatial_rank", [1, 4, True, "3"])
def test_bad_spatial_rank_raises(spatial_rank):
    with pytest.raises(ValueError, match=f"`spatial_rank`.*{spatial_rank!r}"):
        precision.choose_policy("auto", spatial_rank=spatial_rank)
