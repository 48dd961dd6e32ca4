"""The documentation site's sources: API pages complete, gallery pages current, site checker."""

import importlib.util
import inspect
import json
import os
import re
import sys

import pytest

from keras_attention import layers
from keras_attention import models
from keras_attention import registry

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DOCS = os.path.join(ROOT, "docs")
sys.path.insert(0, os.path.join(ROOT, "examples"))

import gallery


def load_script(name):
    spec = importlib.util.spec_from_file_location(name, os.path.join(DOCS, f"{name}.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


check_site = load_script("check_site")


def documented(page):
    with open(os.path.join(DOCS, "api", page)) as f:
        return set(re.findall(r"^::: ([\w.]+)", f.read(), flags=re.MULTILINE))


def test_api_reference_has_every_public_layer_and_model():
    public_layers = {
        f"keras_attention.layers.{name}"
        for name, value in vars(layers).items()
        if inspect.isclass(value) and not name.startswith("_")
    }
    assert len(public_layers) == len({registry.get_class(n) for n in registry.available()})
    assert public_layers <= documented("layers.md")
    public_models = {
        f"keras_attention.models.{name}"
        for name, value in vars(models).items()
        if not name.startswith("_") and not inspect.ismodule(value)
    }
    assert public_models <= documented("models.md")
    for name in ("get", "available"):
        assert f"keras_attention.registry.{name}" in documented("functions.md")


def test_gallery_has_a_small_picture_of_every_layer():
    folder = os.path.join(DOCS, "gallery")
    paths = [os.path.join(folder, f"{name}.png") for name in registry.available()]
    assert all(os.path.getsize(path) > 0 for path in paths)
    assert sum(os.path.getsize(path) for path in paths) < 2 * 1024 * 1024


def test_gallery_pages_are_current(tmp_path):
    """The committed pages are what gallery.py writes from gallery.json and the docstrings."""
    with open(os.path.join(DOCS, "gallery", "gallery.json")) as f:
        info = json.load(f)
    assert sorted(info["accuracy"]) == registry.available()
    for path in gallery.write_pages(info, str(tmp_path)):
        relative = os.path.relpath(path, tmp_path)
        with open(path) as new, open(os.path.join(DOCS, relative)) as committed:
            assert new.read() == committed.read(), (
                f"docs/{relative} is stale: run python examples/gallery.py --pages-only"
            )


def write(path, text):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


@pytest.fixture
def site(tmp_path):
    write(
        tmp_path / "index.html",
        '<a href="layers/">x</a><img src="img/a.png"><a href="#top">t</a><p id="top">',
    )
    write(
        tmp_path / "layers" / "index.html", '<h2 id="se">SE</h2><a href="../index.html#top">up</a>'
    )
    write(tmp_path / "img" / "a.png", "png")
    return tmp_path


def test_check_site_passes_a_sound_site(site):
    assert check_site.check(str(site)) == []


def test_check_site_finds_broken_links_missing_images_and_anchors(site):
    write(
        site / "page.html", '<a href="gone/">g</a><img src="img/b.png"><a href="layers/#sk">a</a>'
    )
    write(site / "img" / "empty.png", "")
    write(site / "other.html", '<img src="img/empty.png"><a href="https://example.org/x">e</a>')
    problems = check_site.check(str(site))
    assert problems == [
        "other.html: empty image 'img/empty.png'",
        "page.html: broken link href='gone/'",
        "page.html: missing image src='img/b.png'",
        "page.html: no anchor #sk in 'layers/#sk'",
    ]
