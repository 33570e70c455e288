"""semloc: semantic location prediction for social-media posts (text + image).

The public API is the names in `__all__` (see `semloc.api` for the pipeline functions and the
`Predictor` estimator). They are imported lazily: ``import semloc`` loads neither torch nor
transformers until a name that needs them is used.
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

# the one place the version is written: pyproject.toml reads it from here (no importlib.metadata
# look-up at import time, and a source tree without installation knows its version too)
__version__ = "0.1.0"


# public name -> the module that defines it
_EXPORTS = {
    "Predictor": "semloc.api",
    "Run": "semloc.api",
    "Store": "semloc.api",
    "evaluate": "semloc.api",
    "extract": "semloc.api",
    "load_backbone": "semloc.api",
    "load_run": "semloc.api",
    "make_config": "semloc.api",
    "open_store": "semloc.api",
    "predict": "semloc.api",
    "train": "semloc.api",
    "read_posts": "semloc.data.records",
    "Config": "semloc.config",
    "load_config": "semloc.config",
    "SemlocError": "semloc.errors",
    "ConfigError": "semloc.errors",
    "DataError": "semloc.errors",
    "StoreMismatchError": "semloc.errors",
}

__all__ = ["__version__", *sorted(_EXPORTS)]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'semloc' has no attribute {name!r}")
    value = getattr(import_module(module), name)
    globals()[name] = value  # later look-ups skip this hook
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
