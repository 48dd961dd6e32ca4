"""Argument checks shared by the spatial layers: booleans and (height, width) sizes."""


def check_bool(name, value):
    if not isinstance(value, bool):
        # ValueError, not TypeError: every bad argument raises one (DESIGN.md).
        raise ValueError(f"`{name}` must be True or False. Received: {name}={value!r}")  # noqa: TRY004


def check_size(name, value, allow_none=False):
    """A positive int or a pair of them -> (height, width); ValueError naming `name` otherwise."""
    if allow_none and value is None:
        return None
    pair = (value, value) if isinstance(value, int) and not isinstance(value, bool) else value
    if (
        not isinstance(pair, (tuple, list))
        or len(pair) != 2
        or any(isinstance(v, bool) or not isinstance(v, int) or v < 1 for v in pair)
    ):
        none = " or None" if allow_none else ""
        raise ValueError(
            f"`{name}` must be a positive integer or a (height, width) pair of them{none}. "
            f"Received: {name}={value!r}"
        )
    return tuple(pair)


def check_non_negative_int(name, value):
    """Raises a ValueError naming `name` unless `value` is an int >= 0."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError(f"`{name}` must be a non-negative integer. Received: {name}={value!r}")
