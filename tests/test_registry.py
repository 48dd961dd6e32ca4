import pathlib

import pytest

import keras_attention


def test_get_returns_a_new_configured_layer():
    first = keras_attention.get("se", reduction=8)
    second = keras_attention.get("SE", reduction=8)
    assert isinstance(first, keras_attention.SqueezeExcitation)
    assert first is not second
    assert first.reduction == 8


def test_available_lists_the_short_names_sorted():
    names = keras_attention.available()
    assert names == sorted(names)
    assert {"se", "eca", "sk"} <= set(names)


def test_unknown_name_lists_the_known_ones():
    with pytest.raises(ValueError, match="nope.*se") as info:
        keras_attention.get("nope")
    for name in keras_attention.available():
        assert name in str(info.value)


def test_version_is_exposed():
    assert keras_attention.__version__.count(".") == 2


@pytest.mark.parametrize("domain", ["channel", "spatial", "mixed"])
def test_domains_partition_the_names_and_match_the_folders(domain):
    names = keras_attention.available(domain)
    assert names == sorted(names)
    for name in names:
        module = keras_attention.registry.get_class(name).__module__
        assert module.startswith(f"keras_attention.layers.{domain}."), (name, module)
    others = [d for d in ("channel", "spatial", "mixed") if d != domain]
    assert not set(names) & {n for d in others for n in keras_attention.available(d)}


def test_every_name_has_a_domain():
    by_domain = [n for d in ("channel", "spatial", "mixed") for n in keras_attention.available(d)]
    assert sorted(by_domain) == keras_attention.available()


def test_unknown_domain_raises():
    with pytest.raises(ValueError, match="domain='colour'"):
        keras_attention.available("colour")


def test_every_short_name_has_a_readme_row_in_its_domain_table():
    readme = pathlib.Path(__file__).parents[1].joinpath("README.md").read_text()
    tables = readme.split("### ")
    for domain in ("channel", "spatial", "mixed"):
        (table,) = [t for t in tables if f'available("{domain}")' in t.splitlines()[0]]
        rows = [line for line in table.splitlines() if line.startswith("| `")]
        for name in keras_attention.available(domain):
            assert any(f"`{name}`" in row.split("|")[2] for row in rows), name
