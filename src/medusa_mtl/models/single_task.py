"""Single-task baseline: a separate backbone + HRHead network per task (SPEC §4)."""

from __future__ import annotations

import copy
from typing import Any

import torch
import torch.nn as nn

from .base import MultiTaskModel
from .mt_baseline import MTBaseline
from .registry import register_model


class SingleTask(MultiTaskModel):
    """One independent network (backbone + HRHead) per main task; shares nothing.

    Built for several tasks it is simply a set of single-task networks evaluated together (that is how ST is
    counted in resource tables). ``aux_tasks`` beyond ``tasks`` are ignored: a single-task network sees only
    its own task.
    """

    def __init__(self, tasks: list[str], aux_tasks: list[str], dataset: str,
                 backbone: str | nn.Module = "hrnet_w18_small_v2", **backbone_kwargs: Any) -> None:
        super().__init__(tasks, list(tasks), dataset, backbone=None)
        # A backbone module given in is copied for every task after the first: one shared module would make the
        # "single-task" networks an MT baseline (each starts from the same weights, as from the same name).
        self.nets = nn.ModuleDict(
            {t: MTBaseline([t], [t], dataset, copy.deepcopy(backbone) if i and isinstance(backbone, nn.Module)
                           else backbone, **backbone_kwargs) for i, t in enumerate(tasks)}
        )
        # The first network's backbone stands for "the backbone" (channels, stride, UFL of a 1-task model).
        self.backbone = self.nets[tasks[0]].backbone

    def freeze_backbone(self) -> None:
        for net in self.nets.values():
            net.freeze_backbone()
        self._backbone_frozen = True

    def train(self, mode: bool = True) -> SingleTask:
        nn.Module.train(self, mode)
        for net in self.nets.values():
            net.train(mode)
        return self

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        out: dict[str, torch.Tensor] = {}
        for _t, net in self.nets.items():
            out.update(net(x))
        return out


@register_model("single_task")
def single_task(tasks: list[str], aux_tasks: list[str], dataset: str, backbone: str, **kw: Any) -> SingleTask:
    return SingleTask(tasks, aux_tasks, dataset, backbone, **kw)
