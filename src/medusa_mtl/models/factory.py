"""Build a registered model by name: ``create_model(name, tasks=..., ...)``, as timm's ``create_model``.

Importing this module imports every architecture module (each registers itself in
:mod:`medusa_mtl.models.registry`); a new architecture is one new module plus one line in the import below.

Example:
    >>> from medusa_mtl.models import create_model
    >>> model = create_model("mt_baseline", tasks=["semseg", "depth"], dataset="nyud")
    >>> sorted(model.tasks)
    ['depth', 'semseg']
"""

from __future__ import annotations

import fnmatch
import functools
import typing
from collections.abc import Sequence
from typing import Any

import torch.nn as nn

from ..tasks import parse_tasks
from . import medusa, mt_baseline, mtan, mtinet, padnet, single_task  # noqa: F401  (they register themselves)
from .registry import model_entrypoint, registered_models

__all__ = ["create_model", "is_model", "list_models", "resolve_tasks"]


def list_models(filter: str | Sequence[str] = "") -> list[str]:  # noqa: A002  (timm's name for it)
    """Names of the registered models, in registration order; ``filter``: shell-style wildcard(s), as timm's.

    Example:
        >>> list_models("m*")
        ['medusa', 'mt_baseline', 'mtan', 'mtinet']
    """
    patterns = [filter] if isinstance(filter, str) else list(filter)
    names = registered_models()
    if not any(patterns):
        return names
    return [n for n in names if any(fnmatch.fnmatchcase(n, p) for p in patterns if p)]


def is_model(name: str) -> bool:
    """Whether ``name`` is a registered model (``create_model`` accepts it)."""
    return name in registered_models()


def resolve_tasks(
    tasks: str | Sequence[str], aux_tasks: str | Sequence[str] | None, dataset: str
) -> tuple[list[str], list[str]]:
    """Validate ``tasks`` and ``aux_tasks`` (SPEC §4: aux_tasks ⊇ tasks, default aux_tasks = tasks).

    The returned ``aux_tasks`` lists the main tasks first, in their order, then the auxiliary-only ones.
    """
    main = parse_tasks(tasks, dataset)
    if aux_tasks is None:
        return main, list(main)
    aux = parse_tasks(aux_tasks, dataset)
    missing = [t for t in main if t not in aux]
    if missing:
        raise ValueError(f"aux_tasks must contain every main task; missing: {missing} (aux_tasks={aux})")
    return main, main + [t for t in aux if t not in main]


def create_model(
    name: str,
    tasks: str | Sequence[str],
    aux_tasks: str | Sequence[str] | None = None,
    dataset: str = "nyud",
    backbone: str | nn.Module = "hrnet_w18_small_v2",
    **kwargs: Any,
) -> nn.Module:
    """Build the registered model ``name`` for ``tasks`` (main) and ``aux_tasks`` (all supervised tasks).

    Args:
        name: one of :func:`list_models`.
        tasks: main tasks, predicted at inference and scored (``"semseg,depth"`` or a list).
        aux_tasks: all supervised tasks, a superset of ``tasks``; ``None`` means ``tasks``.
        dataset: ``"nyud"`` or ``"pascal"`` (decides output channels).
        backbone: a timm model name with ``features_only`` support, or a built
            :class:`~medusa_mtl.models.backbone.Backbone`.
        **kwargs: model-specific switches and backbone options (``pretrained``, ``pretrained_file``).
    """
    builder = model_entrypoint(name)
    main, aux = resolve_tasks(tasks, aux_tasks, dataset)
    if backbone is None:
        raise ValueError("backbone=None: every model needs a backbone, a timm model name (default "
                         "'hrnet_w18_small_v2') or a medusa_mtl.models.Backbone")
    _check_switches(name, builder, kwargs)
    model = builder(tasks=main, aux_tasks=aux, dataset=dataset, backbone=backbone, **kwargs)
    # Enough to rebuild the same architecture elsewhere (UFL builds a decoder of the same kind).
    model.registry_name = name
    model.init_kwargs = dict(kwargs)
    return model


def _hints(fn: Any) -> dict[str, Any]:
    try:
        return typing.get_type_hints(fn)
    except Exception:  # an annotation that does not resolve: no check rather than an error
        return {}


@functools.cache
def _bool_options(builder: Any) -> frozenset[str]:
    """The options annotated ``bool`` of a model's entry point, of the class it returns (its switches may come
    through ``**kw``) and of the backbone."""
    from .backbone import Backbone

    model_init = getattr(_hints(builder).get("return"), "__init__", None)
    return frozenset(k for fn in (builder, model_init, Backbone.__init__) if fn is not None
                     for k, v in _hints(fn).items() if v is bool)


def _check_switches(name: str, builder: Any, kwargs: dict[str, Any]) -> None:
    """A switch given as anything but True / False (``--model.model_kwargs.sfa no`` reaches the model as the
    string "no", which is true) is an error naming it, not a network built with the switch on."""
    for key in sorted(_bool_options(builder) & set(kwargs)):
        value = kwargs[key]
        if not isinstance(value, bool):
            raise ValueError(f"{name}: option {key}={value!r} must be true or false (a bool), got "
                             f"{type(value).__name__}")
