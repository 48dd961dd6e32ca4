"""README's layer tables: a row for every registered layer, and a true "3-D" column."""

import os
import re

import keras_attention

README = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "README.md")


def layer_rows():
    """(class names, 3-D cell) for each row of the tables under README's "## Layers"."""
    with open(README) as f:
        text = f.read()
    section = text[text.index("## Layers") : text.index("## Models")]
    rows = []
    for line in section.splitlines():
        if not line.startswith("| `"):
            continue
        cells = [c.strip() for c in line.strip("|").split("|")]
        rows.append((re.findall(r"`(\w+)`", cells[0]), cells[-1]))
    return rows


def test_every_registered_layer_has_a_row():
    listed = {name for names, _ in layer_rows() for name in names}
    registered = {
        keras_attention.registry.get_class(n).__name__ for n in keras_attention.available()
    }
    assert listed == registered


def test_the_3d_column_says_which_layers_take_volumes():
    for names, cell in layer_rows():
        for name in names:
            cls = getattr(keras_attention.layers, name)
            expected = "yes" if 3 in cls.spatial_ranks else "no"
            assert cell == expected, (
                f"{name}: README says {cell!r}, spatial_ranks {cls.spatial_ranks}"
            )
