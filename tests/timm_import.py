"""Import timm beside the CPU torch wheel of the test machines.

timm imports torchvision at import time, for names it uses only in data
loading (transforms, datasets) and FrozenBatchNorm2d. PyPI's torchvision does
not load beside the machines' CPU torch build ("operator torchvision::nms does
not exist"), so where torchvision is missing or broken, placeholder modules
stand in for it. The tests use timm's models and layers, never those names.
"""

import importlib
import sys
import types

_TORCHVISION_MODULES = (
    "torchvision",
    "torchvision.datasets",
    "torchvision.models",
    "torchvision.models.feature_extraction",
    "torchvision.ops",
    "torchvision.ops.misc",
    "torchvision.transforms",
    "torchvision.transforms.functional",
    "torchvision.utils",
)


class _PlaceholderMeta(type):
    def __getattr__(cls, name):
        if name.startswith("__"):
            raise AttributeError(name)
        return f"{cls.__name__}.{name}"


def _placeholder_module(name):
    module = types.ModuleType(name)
    module.__path__ = []  # a package, so that submodules import

    def __getattr__(attr):
        if attr.startswith("__"):
            raise AttributeError(attr)
        return _PlaceholderMeta(attr, (), {})

    module.__getattr__ = __getattr__
    return module


def _stub_torchvision():
    for name in [n for n in sys.modules if n == "torchvision" or n.startswith("torchvision.")]:
        del sys.modules[name]
    for name in _TORCHVISION_MODULES:
        sys.modules[name] = _placeholder_module(name)
    for name in _TORCHVISION_MODULES[1:]:
        parent, _, child = name.rpartition(".")
        setattr(sys.modules[parent], child, sys.modules[name])


def import_timm(name="timm"):
    """timm (or timm-3d: `name="timm_3d"`), with placeholder torchvision modules where
    the real one cannot load."""
    try:
        import torchvision  # noqa: F401
    except (ImportError, RuntimeError, OSError):  # missing, or a mismatched build
        _stub_torchvision()
    return importlib.import_module(name)
