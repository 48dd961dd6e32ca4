"""`python -m examples.benchmark` and `python examples/benchmark` (same flags, same output)."""

import pathlib
import sys

if not __package__:
    # Run as a folder: sys.path[0] is this folder, whose module names (models, layers, ...)
    # would shadow other packages. Import the package from the repository's root instead.
    sys.path[0] = str(pathlib.Path(__file__).resolve().parents[2])

from examples.benchmark.cli import main

main()
