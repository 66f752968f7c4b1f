"""Single-task baseline: a separate backbone + HRHead network per task (SPEC §4)."""

from __future__ import annotations

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

    def __init__(self, tasks: list[str], aux_tasks: list[str], dataset: str, backbone: str = "hrnet_w18_small_v2",
                 **backbone_kwargs: Any) -> None:
        super().__init__(tasks, list(tasks), dataset, backbone=None)
        self.nets = nn.ModuleDict(
            {t: MTBaseline([t], [t], dataset, backbone, **backbone_kwargs) for t in tasks}
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
