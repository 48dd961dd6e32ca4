"""Command lines of the examples: a readable `--help` from the script's docstring.

The examples' docstrings follow keras.io's header ("Title: ... Author: ...
Description: ..."), which argparse would reflow into one run-on paragraph. Here
the help starts with the title and the description as written, and a default
is appended only to options whose help does not state it already.
"""

import argparse
import re

# The keras.io header: "Title: ...", "Author: ...", "Description: ..." up to "## Introduction".
_HEADER = re.compile(
    r"Title:\s*(?P<title>.+?)\s*\n(?:Author:.*\n)?Description:\s*(?P<description>.+?)"
    r"\s*(?:\n## |\Z)",
    flags=re.DOTALL,
)


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter, argparse.RawDescriptionHelpFormatter):
    """Keeps the description's line breaks; "(default: X)" only where it informs.

    No default is shown for options whose help already talks about the default,
    nor for None (the help says what happens then) and False flags.
    """

    def _get_help_string(self, action):
        text = action.help or ""
        if action.default is None or action.default is False or "default" in text.lower():
            return text
        return super()._get_help_string(action)


def description(doc):
    """The title and description of a keras.io-style docstring, as help text."""
    match = _HEADER.search(doc or "")
    if match is None:
        return (doc or "").split("## Introduction")[0].strip()
    title = match.group("title").strip()
    return f"{title}.\n\n{match.group('description').strip()}"


def parser(doc):
    """An `ArgumentParser` whose description is `doc`'s title and description."""
    return argparse.ArgumentParser(description=description(doc), formatter_class=HelpFormatter)


def add_run_folder_arguments(parser, output_dir, output_help):
    """`--output-dir` (default `output_dir`), `--overwrite` and `--verbose`: every
    example that trains into run folders (examples/run_folder.py) takes these."""
    parser.add_argument("--output-dir", default=output_dir, help=output_help)
    parser.add_argument(
        "--overwrite", action="store_true", help="Train finished runs in --output-dir again."
    )
    parser.add_argument(
        "--verbose", type=int, default=2, choices=(0, 1, 2), help="Keras fit verbosity."
    )


def add_precision_argument(parser, spatial_rank=2, logits_float32=False):
    """`--precision` (default "auto", `precision.PRECISIONS`), its help saying what
    "auto" picks for a model of `spatial_rank` (`precision.choose_policy`)."""
    from keras_attention import precision

    auto = "mixed_float16 on an NVIDIA GPU; mixed_bfloat16 on a CPU with bfloat16 instructions"
    if spatial_rank == 3:  # precision.choose_policy's rule for volumes
        auto += " but TensorFlow's (its bfloat16 Conv3D gradients are not sound)"
    text = f"Global dtype policy. auto: {auto}; else float32."
    if logits_float32:
        text += " The logits are float32."
    parser.add_argument("--precision", default="auto", choices=precision.PRECISIONS, help=text)
