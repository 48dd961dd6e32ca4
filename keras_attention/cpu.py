"""The CPU's feature flags, read without Keras.

This module imports nothing but the standard library: the examples read the
flags before Keras is imported (examples/tf_onednn.py decides TensorFlow's
oneDNN switch from them, and TensorFlow reads that switch at its import).
"""


def cpu_flags(path="/proc/cpuinfo"):
    """The CPU feature flags that Linux reports, as a set (empty elsewhere)."""
    try:
        with open(path) as f:
            for line in f:
                if line.startswith("flags"):
                    return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return set()
