"""Common base of every multi-task model (the contract of docs/ARCHITECTURE.md)."""

from __future__ import annotations

from typing import Any

import torch
import torch.nn as nn

from ..tasks import get_task
from .backbone import Backbone, build_backbone

DEEP_SUPERVISION = "deep_supervision"


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
