"""medusa-mtl: Medusa multi-task dense prediction, its baselines and universal feature learning.

The short forms of the model zoo's entry points, as in timm (``timm.create_model``)::

    >>> import medusa_mtl
    >>> model = medusa_mtl.create_model("medusa", tasks=["semseg", "depth"])
    >>> "medusa" in medusa_mtl.list_models()
    True

``medusa_mtl.Predictor`` (:mod:`medusa_mtl.engine.predictor`) runs a trained checkpoint on images.
They are loaded on first use, so ``import medusa_mtl`` (and ``medusa --help``) does not import torch.
"""

from __future__ import annotations

from typing import Any

__version__ = "0.1.0"

__all__ = ["__version__", "create_model", "is_model", "list_models", "Predictor"]

_LAZY = {
    "create_model": "medusa_mtl.models.factory",
    "list_models": "medusa_mtl.models.factory",
    "is_model": "medusa_mtl.models.factory",
    "Predictor": "medusa_mtl.engine.predictor",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'medusa_mtl' has no attribute {name!r}")
