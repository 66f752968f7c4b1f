"""The model of universal feature learning: a frozen source model plus a new decoder sharing its backbone.

The source model is kept whole and frozen (backbone, heads, BatchNorm statistics), so its own tasks keep
giving identical predictions. New tasks get a fresh decoder *of the same architecture* built on the very same
backbone module (shared, not copied): for Medusa that is one independent Medusa head per new task (exactly
what ``Medusa.add_task`` attaches); for MTI-Net/PAD-Net/MTAN/MT baseline it is that method's decoder for the
new tasks. Training it is :mod:`medusa_mtl.engine.ufl`'s job.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn as nn

from ..errors import ConfigError
from ..tasks import parse_tasks
from .base import heads_datasets
from .factory import create_model

__all__ = ["UFLModel"]

_BACKBONE_ONLY_KWARGS = ("pretrained", "pretrained_file")


class UFLModel(nn.Module):
    """A frozen source model plus a new decoder for ``new_tasks`` sharing the source's backbone.

    ``forward`` returns the new tasks' outputs; :meth:`source_forward` runs the untouched source model and
    :meth:`forward_all` gives every task of the chain (``source`` may itself be a ``UFLModel``: UFL steps chain,
    each adding heads on the same frozen backbone while every earlier head stays as it was).
    """

    def __init__(self, source: nn.Module, new_tasks: list[str], dataset: str) -> None:
        super().__init__()
        name = getattr(source, "registry_name", None)
        if name is None or getattr(source, "backbone", None) is None:
            raise ConfigError("UFL needs a model of the zoo with a shared backbone")
        if name == "single_task":
            raise ConfigError(
                "UFL from single-task networks is not defined (each task has its own backbone); "
                "the single-task row of the UFL table is the target dataset's own ST networks"
            )
        new_tasks = parse_tasks(new_tasks, dataset)
        known = source.task_datasets() if isinstance(source, UFLModel) else heads_datasets(source, source.aux_tasks)
        clash = [t for t in new_tasks if any(k.split(":")[-1] == t and d == dataset for k, d in known.items())]
        if clash:
            # an auxiliary task (N+E's normals, edge) has a trained head too; "already a task" alone puzzled
            main = set(getattr(source, "tasks", []) or [])
            aux = [t for t in clash if not isinstance(source, UFLModel) and t not in main]
            note = (f" ({', '.join(aux)} as {'an auxiliary task' if len(aux) == 1 else 'auxiliary tasks'}: the "
                    "source has a trained head for it, not predicted at inference; UFL adds only tasks without a "
                    "head)") if aux else ""
            raise ConfigError(f"UFL tasks {clash} are already {dataset} tasks of the source model{note}")
        self.source = source
        for p in self.source.parameters():
            p.requires_grad_(False)
        self.source.eval()
        self.registry_name = name  # a UFL model can be the source of the next UFL step (chains)
        self.init_kwargs = dict(getattr(source, "init_kwargs", {}))
        kwargs = {k: v for k, v in self.init_kwargs.items() if k not in _BACKBONE_ONLY_KWARGS}
        decoder = create_model(name, tasks=new_tasks, dataset=dataset, backbone=source.backbone.name, **kwargs)
        decoder.backbone = source.backbone  # shared module: the frozen source backbone
        decoder._backbone_frozen = True
        ref = next(source.parameters(), None)
        if ref is not None:  # a source moved to a GPU or to float64 / bfloat16: the new heads follow it
            decoder.to(device=ref.device, dtype=ref.dtype)
        self.decoder = decoder
        self.tasks = list(new_tasks)
        self.aux_tasks = list(new_tasks)
        self.dataset = dataset
        self.backbone = source.backbone

    def task_datasets(self) -> dict[str, str]:
        """Every task this model predicts, source tasks first: ``{key: dataset}``. The key is the task's name,
        or ``"<dataset>:<task>"`` where two datasets of the chain share a task name."""
        if isinstance(self.source, UFLModel):
            pairs = [(k.split(":")[-1], d) for k, d in self.source.task_datasets().items()]
        else:
            pairs = list(heads_datasets(self.source, self.source.tasks).items())
        pairs += [(t, self.dataset) for t in self.tasks]
        names = [t for t, _ in pairs]
        return {(t if names.count(t) == 1 else f"{d}:{t}"): d for t, d in pairs}

    @torch.no_grad()
    def forward_all(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """Eval outputs of every task of the chain (keys of :meth:`task_datasets`): the source's, unchanged,
        and the new heads'."""
        if isinstance(self.source, UFLModel):
            source_values = list(self.source.forward_all(x).values())
        else:
            out = self.source(x)  # the frozen source is always in eval mode
            source_values = [out[t] for t in self.source.tasks]
        was_training = self.decoder.training
        self.decoder.eval()
        try:
            new = self.decoder(x)
        finally:
            self.decoder.train(was_training)
        return dict(zip(self.task_datasets(), source_values + [new[t] for t in self.tasks]))

    def train(self, mode: bool = True) -> UFLModel:
        self.training = mode
        self.decoder.train(mode)
        self.source.eval()  # the frozen source (and so the shared backbone) never leaves eval mode
        return self

    def forward(self, x: torch.Tensor) -> dict[str, Any]:
        return self.decoder(x)

    @property
    def attention_maps(self) -> Any:
        """``attention_maps(x)`` of every task of the chain (keys of :meth:`task_datasets`), when the
        architecture has attention maps (Medusa): the source's heads' and the new heads'; ``None`` otherwise
        (so ``callable(model.attention_maps)`` says whether there are any)."""
        if not callable(getattr(self.decoder, "attention_maps", None)):
            return None
        return self._attention_maps

    @torch.no_grad()
    def _attention_maps(self, x: torch.Tensor) -> dict[str, Any]:
        source = self.source.attention_maps
        source_maps = source(x) if callable(source) else {}
        if isinstance(self.source, UFLModel):
            source_values = [source_maps.get(k, {}) for k in self.source.task_datasets()]
        else:
            source_values = [source_maps.get(t, {}) for t in self.source.tasks]
        new = self.decoder.attention_maps(x)
        values = source_values + [new.get(t, {}) for t in self.tasks]
        return {k: v for k, v in zip(self.task_datasets(), values) if v}

    @torch.no_grad()
    def source_forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """The source model's own predictions (unchanged by UFL)."""
        return self.source(x)
