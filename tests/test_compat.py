"""Saved-file compatibility: every `.keras` file that an earlier version saved still loads.

`tests/compat/<version>/` holds, for every layer and one model of each builder
family, a model with random weights saved by that version (`<name>.keras.xz`,
xz-compressed as saved) and its inputs and outputs (`<name>.npz`); see
`tests/compat/make_files.py`. Each file must load in safe mode, without
custom_objects, and give the stored outputs. The tolerance, 1e-4 of the
output's largest magnitude, allows float32 rounding of other kernels (oneDNN or
not, another backend); a weight that did not load changes the outputs by tens of
percent (make_files.py checks that when it writes a file).
"""

import io
import lzma
import pathlib
import re
import zipfile

import keras
import numpy as np
import pytest

import keras_attention

COMPAT = pathlib.Path(__file__).parent / "compat"
FILES = sorted(COMPAT.glob("*/*.keras.xz"))


def _id(path):
    return f"{path.parent.name}/{path.name.removesuffix('.keras.xz')}"


@pytest.mark.parametrize("path", FILES, ids=[_id(path) for path in FILES])
def test_old_file_loads_and_gives_its_outputs(path, tmp_path):
    saved = tmp_path / path.name.removesuffix(".xz")
    saved.write_bytes(lzma.decompress(path.read_bytes()))
    model = keras.saving.load_model(saved)  # safe mode, no custom_objects
    stored = np.load(path.with_name(path.name.replace(".keras.xz", ".npz")))
    inputs = [stored[f"input_{i}"] for i in range(len(model.inputs))]
    outputs = model.predict(inputs if len(inputs) > 1 else inputs[0], verbose=0)
    expected = stored["output"]
    atol = 1e-4 * np.max(np.abs(expected))
    np.testing.assert_allclose(np.asarray(outputs), expected, rtol=0, atol=atol)


def _registered_classes(path):
    """The keras_attention classes named in a saved file's config."""
    with zipfile.ZipFile(io.BytesIO(lzma.decompress(path.read_bytes()))) as archive:
        config = archive.read("config.json").decode()
    return set(re.findall(r'"registered_name": "keras_attention>(\w+)"', config))


def test_every_layer_has_a_file():
    """A new layer adds its file: `python tests/compat/make_files.py`."""
    covered = set().union(*(_registered_classes(path) for path in FILES))
    missing = [
        name
        for name in keras_attention.available()
        if keras_attention.registry.get_class(name).__name__ not in covered
    ]
    assert not missing, f"no compatibility file for {missing}: run tests/compat/make_files.py"


def test_every_volume_form_has_a_file():
    """A layer's 3-D form saves a clip model too (`<name>-3d`): its weights have other shapes."""
    saved = {path.name.removesuffix(".keras.xz") for path in FILES}
    missing = [
        name
        for name in keras_attention.available()
        if 3 in keras_attention.registry.get_class(name).spatial_ranks
        and not any(s == f"{name}-3d" or s.startswith(f"{name}-3d-") for s in saved)
    ]
    assert not missing, f"no 3-D compatibility file for {missing}: run tests/compat/make_files.py"


def test_this_version_has_its_folder():
    """A release adds its own files beside the old ones, which stay."""
    assert (COMPAT / keras_attention.__version__).is_dir()
