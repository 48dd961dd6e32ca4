"""The conventions that base.py gives every layer: integer arguments of any type, float inputs.

Parametrized over the layer contract's CASES, so a layer added there is checked here too.
"""

import inspect
import json

import keras
import numpy as np
import pytest
from helpers import to_numpy
from test_layer_contract import ALL_CASES
from test_layer_contract import CASES
from test_layer_contract import random_input

import keras_attention
from keras_attention import layers
from keras_attention.layers import base


def numpy_ints(kwargs, dtype):
    """`kwargs` with every int (also inside tuples) as a NumPy integer of `dtype`."""

    def convert(value):
        if isinstance(value, int) and not isinstance(value, bool):
            return np.dtype(dtype).type(value)
        if isinstance(value, tuple):
            return tuple(convert(v) for v in value)
        return value

    return {name: convert(value) for name, value in kwargs.items()}


def int_case(case):
    return pytest.param(case, id=case.cls.__name__)


def takes_ints(case):
    return any(isinstance(v, int) and not isinstance(v, bool) for v in case.kwargs.values())


INT_CASES = [int_case(case) for case in CASES if takes_ints(case)]


@pytest.mark.parametrize("dtype", ["int64", "uint8"])
@pytest.mark.parametrize("case", INT_CASES)
def test_numpy_integer_arguments_act_as_python_ints(case, dtype):
    reference = case.cls(**case.kwargs)
    layer = case.cls(**numpy_ints(case.kwargs, dtype))
    config = layer.get_config()
    # Stored as Python ints: equal to the plain layer's config and JSON as it is.
    assert config == {**reference.get_config(), "name": config["name"]}
    for name in case.kwargs:
        assert type(config[name]) is type(reference.get_config()[name]), name
    json.dumps(config)
    x = random_input(case)
    layer(x)
    reference(x)
    reference.set_weights(layer.get_weights())
    np.testing.assert_allclose(to_numpy(layer(x)), to_numpy(reference(x)), rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("case", INT_CASES)
def test_numpy_integer_arguments_are_still_validated(case):
    name = next(n for n, v in case.kwargs.items() if isinstance(v, int))
    with pytest.raises(ValueError, match=f"`{name}`"):
        case.cls(**{**case.kwargs, name: np.int64(-3)})
    with pytest.raises(ValueError, match=f"`{name}`"):
        case.cls(**{**case.kwargs, name: np.float64(2.0)})


def test_check_positive_int_accepts_any_integer_type():
    for value in (3, np.int8(3), np.uint16(3), np.int64(3)):
        base.check_positive_int("units", value)
    for value in (0, np.int64(0), -1, 2.0, np.float32(2), True, np.bool_(True), "2", None):
        with pytest.raises(ValueError, match=r"`units` must be a positive integer"):
            base.check_positive_int("units", value)
    base.check_positive_int("units", None, allow_none=True)
    base.check_non_negative_int("units", np.int32(0))
    with pytest.raises(ValueError, match=r"`units` must be a non-negative integer"):
        base.check_non_negative_int("units", np.int32(-1))


@pytest.mark.parametrize("dtype", ["int32", "uint8", "bool"])
@pytest.mark.parametrize("case", ALL_CASES)
def test_non_float_inputs_raise_one_clear_error(case, dtype):
    layer = case.cls(**case.kwargs)
    x = (random_input(case) > 0).astype(dtype)
    message = (
        rf"{case.cls.__name__} \(layer '{layer.name}'\) expects floating-point inputs.*{dtype}"
    )
    with pytest.raises(ValueError, match=message):
        layer(x)  # eager, before any build
    with pytest.raises(ValueError, match=message):
        layer(keras.ops.convert_to_tensor(x))
    with pytest.raises(ValueError, match=message):
        layer(keras.Input((None, None, case.channels), dtype=dtype))  # functional


@pytest.mark.parametrize("case", ALL_CASES)
def test_float64_inputs_are_cast_to_the_compute_dtype(case):
    layer = case.cls(**case.kwargs)
    y = layer(random_input(case).astype("float64"))
    assert keras.backend.standardize_dtype(y.dtype) == "float32"


def test_check_number_refuses_nan_infinity_and_non_numbers():
    for value in (1e-4, 3, np.float32(0.5), np.float64(2.0), np.int64(2)):
        base.check_number("epsilon", value, positive=True)
    base.check_number("b", -1.5)
    base.check_number("b", 0)
    for value in (float("nan"), np.float32("nan"), float("inf"), -float("inf"), True, "1", None):
        with pytest.raises(ValueError, match=r"`b` must be a finite number"):
            base.check_number("b", value)
    for value in (0, -1e-4, 0.0, float("nan"), float("inf")):
        with pytest.raises(ValueError, match=r"`epsilon` must be a finite positive number"):
            base.check_number("epsilon", value, positive=True)


# Every float argument of a layer: each refuses NaN and infinities (nan <= 0 is False).
FLOAT_ARGUMENTS = [
    (layers.SimAM, "e_lambda"),
    (layers.GlobalContext, "epsilon"),
    (layers.EfficientChannelAttention, "gamma"),
    (layers.EfficientChannelAttention, "b"),
    (layers.StyleRecalibration, "epsilon"),
]


@pytest.mark.parametrize("value", [float("nan"), float("inf"), -float("inf")])
@pytest.mark.parametrize(
    "cls, name", [pytest.param(c, n, id=f"{c.__name__}-{n}") for c, n in FLOAT_ARGUMENTS]
)
def test_float_arguments_refuse_nan_and_infinity(cls, name, value):
    with pytest.raises(ValueError, match=rf"`{name}` must be a finite.*{name}=-?(nan|inf)"):
        cls(**{name: value})


def test_float_arguments_list_is_complete():
    """Every constructor argument whose default is a float is in FLOAT_ARGUMENTS."""
    found = {
        (cls, name)
        for cls in {keras_attention.registry.get_class(n) for n in keras_attention.available()}
        for name, p in inspect.signature(cls.__init__).parameters.items()
        if isinstance(p.default, float)
    }
    assert found <= set(FLOAT_ARGUMENTS)
