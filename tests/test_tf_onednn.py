"""examples/tf_onednn.py: TensorFlow's oneDNN switch for AVX2 CPUs, and the examples' use of it.

The CPU flags are given to every check: none depends on this machine's CPU.
"""

import ast
import glob
import os
import platform
import subprocess
import sys

import pytest

EXAMPLES = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "examples")
sys.path.insert(0, EXAMPLES)

import tf_onednn

AVX2 = {"fpu", "sse4_2", "avx", "avx2", "fma"}  # an AVX2-only CPU: Haswell to Comet Lake, Zen 1-3


@pytest.mark.parametrize(
    "flags, pays",
    [
        (AVX2, True),
        # AVX-512 without VNNI or BF16 (Skylake-SP): TensorFlow leaves oneDNN off there too.
        (AVX2 | {"avx512f", "avx512bw", "avx512vl"}, True),
        # The CPUs TensorFlow turns oneDNN on for by itself (DefaultOneDnnPolicy).
        (AVX2 | {"avx512f", "avx512_vnni"}, False),
        (AVX2 | {"avx512f", "avx512_bf16", "avx512_vnni"}, False),
        (AVX2 | {"avx_vnni"}, False),
        (AVX2 | {"avx512f", "amx_tile"}, False),
        (AVX2 | {"avx512f", "amx_int8"}, False),
        (AVX2 | {"avx512f", "amx_bf16"}, False),
        # No AVX2: no oneDNN kernels measured to pay (AVX-only x86, ARM, no /proc/cpuinfo).
        ({"fpu", "sse4_2", "avx"}, False),
        ({"fp", "asimd", "sve"}, False),
        (set(), False),
    ],
)
def test_forcing_pays_on_avx2_cpus_tensorflow_leaves_off(flags, pays):
    assert tf_onednn.forcing_pays(flags) is pays


@pytest.mark.parametrize("backend", [None, "", "tensorflow"])
def test_settings_turn_onednn_on_for_tensorflow(backend):
    environ = {} if backend is None else {"KERAS_BACKEND": backend}
    assert tf_onednn.settings(AVX2, environ) == {"TF_ENABLE_ONEDNN_OPTS": "1"}


@pytest.mark.parametrize("value", ["0", "1", "false", ""])
def test_the_users_setting_wins(value):
    assert tf_onednn.settings(AVX2, {"TF_ENABLE_ONEDNN_OPTS": value}) == {}


@pytest.mark.parametrize("backend", ["jax", "torch"])
def test_other_backends_are_left_alone(backend):
    assert tf_onednn.settings(AVX2, {"KERAS_BACKEND": backend}) == {}


def test_cpus_tensorflow_turns_onednn_on_for_are_left_alone():
    assert tf_onednn.settings(AVX2 | {"avx512_bf16"}, {}) == {}


def test_nothing_changes_once_tensorflow_is_imported(monkeypatch, capsys):
    pytest.importorskip("tensorflow")
    import tensorflow  # noqa: F401 (read the variable already)

    monkeypatch.delenv("TF_ENABLE_ONEDNN_OPTS", raising=False)
    monkeypatch.delenv("KERAS_BACKEND", raising=False)
    assert tf_onednn.environment(AVX2) == {}
    assert capsys.readouterr().err == ""


KERAS_FREE = """
import runpy, sys
sys.path.insert(0, {examples!r})
import tf_onednn

tf_onednn.environment()  # this machine's flags: only what it imports is checked
print("FLAGS", sorted(runpy.run_path(tf_onednn.CPU_PY)["cpu_flags"]({cpuinfo!r})))
print("IMPORTED", [name for name in ("keras", "tensorflow", "keras_attention") if name in sys.modules])
"""


def test_the_switch_reads_the_packages_flags_without_importing_keras(tmp_path):
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text("processor\t: 0\nflags\t\t: fpu avx avx2\n")
    result = subprocess.run(
        [sys.executable, "-c", KERAS_FREE.format(examples=EXAMPLES, cpuinfo=str(cpuinfo))],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,  # the return code is asserted below, with stderr
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "FLAGS ['avx', 'avx2', 'fpu']" in result.stdout
    assert "IMPORTED []" in result.stdout


FRESH = """
import os, sys
sys.path.insert(0, {examples!r})
import tf_onednn

os.environ.update(tf_onednn.environment({flags!r}))
import keras
from tensorflow.python.util import _pywrap_util_port

print("VARIABLE", os.environ.get("TF_ENABLE_ONEDNN_OPTS"), keras.backend.backend())
print("ONEDNN", _pywrap_util_port.IsMklEnabled())
"""


@pytest.mark.skipif(
    sys.platform != "linux" or platform.machine() != "x86_64",
    reason="TensorFlow reads TF_ENABLE_ONEDNN_OPTS in its Linux x86 builds",
)
@pytest.mark.parametrize("users, variable, onednn", [(None, "1", True), ("0", "0", False)])
def test_tensorflow_runs_what_the_switch_sets_before_keras(users, variable, onednn):
    """A fresh process, as an example starts: TensorFlow follows the variable set first."""
    pytest.importorskip("tensorflow")
    env = {
        k: v for k, v in os.environ.items() if k not in ("KERAS_BACKEND", "TF_ENABLE_ONEDNN_OPTS")
    }
    if users is not None:
        env["TF_ENABLE_ONEDNN_OPTS"] = users
    result = subprocess.run(
        [sys.executable, "-c", FRESH.format(examples=EXAMPLES, flags=AVX2)],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,  # the return code is asserted below, with stderr
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert f"VARIABLE {variable} tensorflow" in result.stdout
    assert f"ONEDNN {onednn}" in result.stdout
    turned_on = "oneDNN turned on (TF_ENABLE_ONEDNN_OPTS=1)" in result.stderr
    assert turned_on is (users is None)


KERAS_MODULES = ("keras", "tensorflow", "jax", "torch", "keras_attention")
SWITCH = "os.environ.update(tf_onednn.environment())"


def _first_import_of(tree, modules):
    for index, node in enumerate(tree.body):
        names = []
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module:
            names = [node.module]
        if any(name.split(".")[0] in modules for name in names):
            return index
    return None


def _parse(path):
    with open(path) as f:
        return ast.parse(f.read())


# Every example module that imports Keras or a backend (cli.py and tf_onednn.py do not).
KERAS_EXAMPLES = [
    path
    for path in sorted(glob.glob(os.path.join(EXAMPLES, "*.py")))
    if _first_import_of(_parse(path), KERAS_MODULES) is not None
]


def test_the_examples_that_import_keras_are_found():
    names = {os.path.basename(path) for path in KERAS_EXAMPLES}
    assert {"train_classifier.py", "distribute.py", "run_folder.py"} <= names
    assert "cli.py" not in names and "tf_onednn.py" not in names


@pytest.mark.parametrize("path", KERAS_EXAMPLES, ids=os.path.basename)
def test_every_example_sets_the_switch_before_keras(path):
    """An example can be the entry point, and others import it: each sets it first."""
    tree = _parse(path)
    switches = [i for i, node in enumerate(tree.body) if ast.unparse(node) == SWITCH]
    assert switches and switches[0] < _first_import_of(tree, KERAS_MODULES)
