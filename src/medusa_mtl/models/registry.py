"""The model registry, a leaf (as timm's ``_registry.py``): architecture modules register their builders here
with ``@register_model``; :mod:`medusa_mtl.models.factory` builds them by name.

It imports nothing from the package, so every architecture module can import it without a cycle.
"""

from __future__ import annotations

from collections.abc import Callable

import torch.nn as nn

__all__ = ["register_model", "registered_models", "model_entrypoint"]

_MODELS: dict[str, Callable[..., nn.Module]] = {}


def register_model(name: str) -> Callable[[Callable[..., nn.Module]], Callable[..., nn.Module]]:
    """Decorator registering a model builder ``fn(tasks, aux_tasks, dataset, backbone, **kw) -> nn.Module``."""

    def wrap(fn: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
        if name in _MODELS:
            raise ValueError(f"model {name!r} is already registered")
        _MODELS[name] = fn
        return fn

    return wrap


def registered_models() -> list[str]:
    """Names registered so far, in registration order (:func:`medusa_mtl.models.list_models` imports the zoo
    first, so it lists every model)."""
    return list(_MODELS)


def model_entrypoint(name: str) -> Callable[..., nn.Module]:
    """The builder registered as ``name``; a ``ValueError`` naming the registered models otherwise."""
    if name not in _MODELS:
        raise ValueError(f"unknown model {name!r}; registered models: {', '.join(_MODELS)}")
    return _MODELS[name]
