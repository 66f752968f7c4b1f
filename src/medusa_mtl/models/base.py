"""Common base of every multi-task model (the contract of docs/ARCHITECTURE.md)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
import torch.nn as nn

from ..tasks import get_task
from .backbone import Backbone, build_backbone

DEEP_SUPERVISION = "deep_supervision"


def heads_datasets(model: nn.Module, tasks: Sequence[str], default: str | None = None) -> dict[str, str | None]:
    """``{task: dataset}`` for ``tasks`` of a zoo model: the dataset :meth:`IndependentHeadsModel.add_task`
    recorded for a head added with ``dataset=`` (PASCAL ``sal`` on a NYUD model), else ``default`` (the
    model's own dataset when not given).

    Example:
        >>> from medusa_mtl.models import create_model
        >>> m = create_model("medusa", tasks=["semseg"], dataset="nyud", backbone="resnet18")
        >>> _ = m.add_task("sal", dataset="pascal")
        >>> heads_datasets(m, m.tasks)
        {'semseg': 'nyud', 'sal': 'pascal'}
    """
    own = getattr(model, "task_datasets", None)
    own = own if isinstance(own, dict) else {}
    fallback = getattr(model, "dataset", None) if default is None else default
    return {t: own.get(t, fallback) for t in tasks}


class MultiTaskModel(nn.Module):
    """Base class: holds the task lists, the dataset, the shared backbone and output-channel lookup.

    Subclasses implement :meth:`forward` returning ``{task: raw output at input resolution}`` for the main
    tasks in eval mode, and additionally every task with a final prediction plus ``"deep_supervision"`` in
    training mode.
    """

    def __init__(self, tasks: list[str], aux_tasks: list[str], dataset: str,
                 backbone: str | nn.Module = "hrnet_w18_small_v2", **backbone_kwargs: Any) -> None:
        super().__init__()
        self.tasks = list(tasks)
        self.aux_tasks = list(aux_tasks)
        self.dataset = dataset
        self.backbone: Backbone = build_backbone(backbone, **backbone_kwargs) if backbone is not None else None

    def out_channels(self, task: str) -> int:
        return get_task(task).channels(self.dataset)

    @property
    def backbone_channels(self) -> list[int]:
        return list(self.backbone.channels)

    def head_tasks(self) -> list[str]:
        """Tasks whose outputs this forward pass produces (main tasks in eval, all with a final head in train)."""
        return self.tasks

    def freeze_backbone(self) -> None:
        """Freeze the shared backbone for universal feature learning: no gradients and eval-mode BatchNorm
        (running statistics stay untouched even when the model is put in train mode)."""
        for p in self.backbone.parameters():
            p.requires_grad_(False)
            p.grad = None  # a stale gradient would still let a weight-decay optimiser move the parameter
        self.backbone.eval()
        self._backbone_frozen = True

    @property
    def backbone_frozen(self) -> bool:
        return getattr(self, "_backbone_frozen", False)

    def train(self, mode: bool = True) -> MultiTaskModel:
        super().train(mode)
        if self.backbone_frozen and self.backbone is not None:
            self.backbone.eval()
        return self

    @staticmethod
    def input_size(x: torch.Tensor) -> tuple[int, int]:
        return int(x.shape[-2]), int(x.shape[-1])


class IndependentHeadsModel(MultiTaskModel):
    """A shared backbone plus one independent submodule per task in ``self.heads`` (an ``nn.ModuleDict``).

    Because a task's whole head is one submodule, tasks can be added (universal feature learning: a new
    head on a frozen backbone), frozen, or dropped (auxiliary heads at inference) without touching the other
    tasks. Subclasses implement :meth:`build_head` and :meth:`forward`; ``forward`` computes the heads of
    :meth:`head_tasks` only.

    Train-mode outputs cover every supervised task whose head is not frozen (a frozen head has nothing to
    learn, so it is not run); eval-mode outputs cover the main tasks.
    """

    heads: nn.ModuleDict

    def build_head(self, task: str, out_channels: int) -> nn.Module:
        """The independent head of ``task`` with ``out_channels`` outputs (implemented by subclasses)."""
        raise NotImplementedError

    def out_channels(self, task: str) -> int:
        """Output channels of ``task`` on the dataset it was added for (default: the model's dataset)."""
        datasets: dict[str, str] = getattr(self, "task_datasets", {})
        return get_task(task).channels(datasets.get(task, self.dataset))

    @property
    def frozen_heads(self) -> list[str]:
        """Tasks whose heads are frozen by :meth:`freeze_heads`."""
        return [t for t in getattr(self, "_frozen_heads", []) if t in self.heads]

    def head_tasks(self) -> list[str]:
        if not self.training:
            return list(self.tasks)
        frozen = set(self.frozen_heads)
        return [t for t in self.aux_tasks if t not in frozen]

    def add_task(self, name: str, dataset: str | None = None, main: bool = True) -> nn.Module:
        """Attach a new, independent head for ``name`` and return it.

        Args:
            name: a registered task.
            dataset: the dataset whose channel count the task uses (e.g. PASCAL ``human_parts`` on a NYUD
                model); defaults to the model's dataset.
            main: a main task (predicted in eval mode) or an auxiliary one (trained only).
        """
        if name in self.heads:
            raise ValueError(f"task {name!r} already has a head; tasks with heads: {list(self.heads)}")
        dataset = self.dataset if dataset is None else dataset
        channels = get_task(name).channels(dataset)  # validates the task and the dataset
        if dataset != self.dataset:
            if not hasattr(self, "task_datasets"):
                self.task_datasets: dict[str, str] = {}
            self.task_datasets[name] = dataset
        head = self.build_head(name, channels)
        ref = next(self.parameters(), None)
        if ref is not None:
            head.to(device=ref.device, dtype=ref.dtype)
        head.train(self.training)
        self.heads[name] = head
        # a fresh head trains: a head of this name frozen and dropped earlier leaves no mark on it
        self._frozen_heads = [t for t in getattr(self, "_frozen_heads", []) if t != name]
        if main:
            self.tasks.append(name)
            self.aux_tasks.insert(len(self.tasks) - 1, name)
        else:
            self.aux_tasks.append(name)
        return head

    def drop_auxiliary_heads(self) -> list[str]:
        """Delete the heads of auxiliary-only tasks (inference needs only the main ones); returns their names.

        Afterwards ``aux_tasks == tasks``; the main tasks' outputs are unchanged.
        """
        dropped = [t for t in self.aux_tasks if t not in self.tasks]
        for t in dropped:
            del self.heads[t]
        self._frozen_heads = [t for t in getattr(self, "_frozen_heads", []) if t not in dropped]
        self.aux_tasks = list(self.tasks)
        return dropped

    def freeze_heads(self, tasks: Sequence[str] | None = None) -> None:
        """Freeze the heads of ``tasks`` (default: every current head): no gradients, eval-mode BatchNorm
        even under ``.train()``; frozen heads are not run in train mode (see :meth:`head_tasks`)."""
        names = list(self.heads) if tasks is None else list(tasks)
        for t in names:
            if t not in self.heads:
                raise ValueError(f"no head for task {t!r}; tasks with heads: {list(self.heads)}")
            for p in self.heads[t].parameters():
                p.requires_grad_(False)
                p.grad = None
            self.heads[t].eval()
        self._frozen_heads = list(dict.fromkeys([*getattr(self, "_frozen_heads", []), *names]))

    def train(self, mode: bool = True) -> IndependentHeadsModel:
        super().train(mode)
        for t in self.frozen_heads:
            self.heads[t].eval()
        return self
