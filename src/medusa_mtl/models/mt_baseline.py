"""MT baseline: one shared backbone, one HRHead per task (SPEC §4)."""

from __future__ import annotations

from typing import Any

import torch
import torch.nn as nn

from .base import IndependentHeadsModel
from .blocks import HRHead, upsample_output
from .registry import register_model


class MTBaseline(IndependentHeadsModel):
    """Shared backbone + an independent HRHead for every supervised task.

    Auxiliary-only heads are trained (train mode) but skipped in eval mode, where only main tasks are predicted;
    as independent heads they can be dropped for inference, frozen or added (:class:`IndependentHeadsModel`).
    """

    def __init__(self, tasks: list[str], aux_tasks: list[str], dataset: str, backbone: str = "hrnet_w18_small_v2",
                 **backbone_kwargs: Any) -> None:
        super().__init__(tasks, aux_tasks, dataset, backbone, **backbone_kwargs)
        self.heads = nn.ModuleDict({t: self.build_head(t, self.out_channels(t)) for t in aux_tasks})

    def build_head(self, task: str, out_channels: int) -> nn.Module:
        return HRHead(self.backbone_channels, out_channels)

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        size = self.input_size(x)
        feats = self.backbone(x)
        return {t: upsample_output(self.heads[t](feats), size) for t in self.head_tasks()}


@register_model("mt_baseline")
def mt_baseline(tasks: list[str], aux_tasks: list[str], dataset: str, backbone: str, **kw: Any) -> MTBaseline:
    return MTBaseline(tasks, aux_tasks, dataset, backbone, **kw)
