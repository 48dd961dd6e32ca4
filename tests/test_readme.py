"""README's Python code blocks run as pasted, in order, in one namespace, without warnings.

A block is run unless the line before its fence is a marker comment
`<!-- readme-test: skip (why) -->`. A block marked `<!-- readme-test: hub ... -->`
downloads timm's weights: it runs with the download replaced by random weights of the
same architecture (tests never use the network).
"""

import os
import re
import warnings

import keras
import pytest
from timm_import import import_timm

import keras_attention
from keras_attention.models.timm import checkpoint as timm_checkpoint

README = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "README.md")
BLOCK = re.compile(r"(?:<!-- readme-test: (\w+)[^>]*-->\n)?```python\n(.*?)```", flags=re.DOTALL)
MARKERS = {"", "skip", "hub"}
# Warnings that a user sees (Python hides DeprecationWarnings raised inside libraries)
# raised from these packages' files fail the test.
HIDDEN = (DeprecationWarning, PendingDeprecationWarning)
# Keras's own, whatever the caller does: its ONNX export shim reads `np.object` for
# tf2onnx, and NumPy 2 warns about that name (the Deploy block's `export(format="onnx")`).
KERAS_INTERNAL = ((os.path.join("export", "tf2onnx_lib.py"), "`np.object`"),)
OWN_PACKAGES = tuple(
    os.path.dirname(module.__file__) + os.sep for module in (keras, keras_attention)
) + (os.path.dirname(os.path.dirname(keras.src.__file__)) + os.sep,)


def python_blocks():
    """[(marker or "", code)] of README's ```python blocks, in order."""
    with open(README) as f:
        return BLOCK.findall(f.read())


def timm_random_state_dict(config):
    """What the hub would give for `config`, offline: timm's model with random weights."""
    timm = import_timm()
    model = timm.create_model(config["name"], pretrained=False)
    return {k: v.numpy() for k, v in model.state_dict().items()}


def own_warnings(caught):
    return [
        w
        for w in caught
        if os.path.abspath(w.filename).startswith(OWN_PACKAGES)
        and not issubclass(w.category, HIDDEN)
        and not any(
            w.filename.endswith(path) and text in str(w.message) for path, text in KERAS_INTERNAL
        )
    ]


def test_markers_are_known():
    markers = [marker for marker, _ in python_blocks()]
    assert set(markers) <= MARKERS, markers
    assert markers.count("hub") >= 1  # the from_timm blocks


def test_readme_python_blocks_run_as_pasted_without_warnings(tmp_path, monkeypatch):
    blocks = python_blocks()
    assert len(blocks) >= 4  # the usage snippet, return_attention, from_timm, deploy
    monkeypatch.chdir(tmp_path)  # model.save("model.keras") writes here
    namespace = {"__name__": "readme"}
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            for marker, block in blocks:
                if marker == "skip":
                    continue
                with monkeypatch.context() as patch:
                    if marker == "hub":
                        patch.setattr(timm_checkpoint, "download", timm_random_state_dict)
                    exec(compile(block, README, "exec"), namespace)  # noqa: S102 (our README)
    finally:
        keras.mixed_precision.set_global_policy("float32")  # the Usage block sets bf16
    ours = own_warnings(caught)
    assert not ours, [f"{w.filename}:{w.lineno}: {w.message}" for w in ours]
    # The loss matches the logits that the model returns.
    model = namespace["model"]
    assert model.loss.get_config()["from_logits"] is True
    assert model.layers[-1].get_config().get("activation") == "linear"
    assert isinstance(namespace["restored"], keras.Model)
    assert namespace["pretrained"].output_shape == (None, 5)


def test_the_warning_check_catches_keras_optimizer_warning(tmp_path, monkeypatch):
    """The pattern the Usage block had (compile, save, load without fit) is caught."""
    monkeypatch.chdir(tmp_path)
    inputs = keras.Input((4,))
    model = keras.Model(inputs, keras.layers.Dense(2)(inputs))
    model.compile("adam", "mse")
    model.save("model.keras")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        keras.saving.load_model("model.keras")
    ours = own_warnings(caught)
    if not ours:
        pytest.skip("this Keras version does not warn for an unbuilt optimizer")
    assert "Skipping variable loading for optimizer" in str(ours[0].message)
