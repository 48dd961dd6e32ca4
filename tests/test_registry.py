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
