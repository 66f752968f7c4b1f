"""PAD-Net (Xu et al., CVPR 2018) on a multi-scale backbone, as specified in SPEC §4.

Structure (``C = sum(backbone channels)``, 270 for HRNet-18; every 256-ch map is at stride 4):

1. **fuse**: HRHead's concat of the four upsampled scales -> Conv1x1 C->C (bias) -> BN -> ReLU.
2. **task features**, one branch per *auxiliary* task ``a`` (``aux_tasks`` = all supervised tasks, main ones
   included): Bottleneck(C -> 64 planes, projection C->256) -> Bottleneck(256) = ``f_a`` (256 ch).
   **initial prediction**: Conv1x1 256->out (bias) on ``f_a`` -- deep supervision only.
3. **multi-modal distillation**, per *main* task ``t``: ``d_t = f_t + sum_{a != t} SABlock_{t,a}(f_a)``.
4. **final head**, per main task: Bottleneck(256) -> Bottleneck(256) -> Conv1x1 256->out (bias), upsampled
   bilinearly to the input size.

The distillation holds ``T * (N - 1)`` SABlock(256) (``T`` main, ``N`` auxiliary tasks), 2·9·256² = 1,179,648
parameters each: the parameter count grows quadratically with the number of tasks.

Outputs (docs/ARCHITECTURE.md): eval mode ``{t: logits}`` for the main tasks only, and the initial predictions
are **not computed** (nothing downstream uses them; the auxiliary task *features* are still computed, since
they feed the distillation). Train mode adds ``"deep_supervision": {"initial": {a: initial prediction}}`` for
every auxiliary task, at stride 4.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
import torch.nn as nn

from .base import DEEP_SUPERVISION, MultiTaskModel
from .blocks import Bottleneck, SABlock, fuse_scales, upsample_output
from .registry import register_model

#: Channels of PAD-Net's task features (Bottleneck with 64 planes, expansion 4).
PADNET_CHANNELS = 256
_PLANES = 64


def check_main_in_aux(tasks: Sequence[str], aux_tasks: Sequence[str], model: str) -> None:
    """Raise a clear ``ValueError`` unless every main task is also an auxiliary (= supervised) task."""
    missing = [t for t in tasks if t not in aux_tasks]
    if missing:
        raise ValueError(
            f"{model}: the main tasks must be a subset of aux_tasks (all supervised tasks); "
            f"missing from aux_tasks: {missing} (tasks={list(tasks)}, aux_tasks={list(aux_tasks)})"
        )


class MultiModalDistillation(nn.Module):
    """PAD-Net's multi-modal distillation: ``d_t = f_t + sum_{a != t} SABlock_{t,a}(f_a)`` per main task.

    Args:
        channels: channels of every task feature map.
        tasks: the main tasks (one distilled output each).
        aux_tasks: all tasks whose features are available (a superset of ``tasks``).
    """

    def __init__(self, channels: int, tasks: Sequence[str], aux_tasks: Sequence[str]) -> None:
        super().__init__()
        check_main_in_aux(tasks, aux_tasks, type(self).__name__)
        self.tasks = list(tasks)
        self.aux_tasks = list(aux_tasks)
        self.attention = nn.ModuleDict(
            {t: nn.ModuleDict({a: SABlock(channels) for a in self.aux_tasks if a != t}) for t in self.tasks}
        )

    def forward(self, features: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        out: dict[str, torch.Tensor] = {}
        for t in self.tasks:
            d = features[t]
            for a, block in self.attention[t].items():
                d = d + block(features[a])
            out[t] = d
        return out


class PADNet(MultiTaskModel):
    """PAD-Net: fused backbone map, per-task features + initial predictions, distillation, final heads.

    Args:
        tasks: main tasks (distilled and predicted at inference).
        aux_tasks: all supervised tasks (superset of ``tasks``); each gets features and an initial prediction.
        dataset: decides the output channels.
        backbone: timm backbone name (or a module).
        **backbone_kwargs: passed to the backbone (``pretrained``, ``pretrained_file``).
    """

    def __init__(self, tasks: list[str], aux_tasks: list[str], dataset: str, backbone: str = "hrnet_w18_small_v2",
                 **backbone_kwargs: Any) -> None:
        check_main_in_aux(tasks, aux_tasks, "padnet")
        super().__init__(tasks, aux_tasks, dataset, backbone, **backbone_kwargs)
        c = int(sum(self.backbone_channels))
        f = PADNET_CHANNELS
        self.fuse = nn.Sequential(nn.Conv2d(c, c, 1, bias=True), nn.BatchNorm2d(c), nn.ReLU(inplace=True))
        self.features = nn.ModuleDict(
            {a: nn.Sequential(Bottleneck(c, _PLANES), Bottleneck(f, _PLANES)) for a in self.aux_tasks}
        )
        self.initial = nn.ModuleDict({a: nn.Conv2d(f, self.out_channels(a), 1) for a in self.aux_tasks})
        self.distillation = MultiModalDistillation(f, self.tasks, self.aux_tasks)
        self.heads = nn.ModuleDict(
            {
                t: nn.Sequential(Bottleneck(f, _PLANES), Bottleneck(f, _PLANES), nn.Conv2d(f, self.out_channels(t), 1))
                for t in self.tasks
            }
        )

    def forward(self, x: torch.Tensor) -> dict[str, Any]:
        size = self.input_size(x)
        fused = self.fuse(fuse_scales(self.backbone(x)))
        feats = {a: self.features[a](fused) for a in self.aux_tasks}
        distilled = self.distillation(feats)
        out: dict[str, Any] = {t: upsample_output(self.heads[t](distilled[t]), size) for t in self.tasks}
        if self.training:
            out[DEEP_SUPERVISION] = {"initial": {a: self.initial[a](feats[a]) for a in self.aux_tasks}}
        return out


@register_model("padnet")
def padnet(tasks: list[str], aux_tasks: list[str], dataset: str, backbone: str, **kw: Any) -> PADNet:
    """Build :class:`PADNet` (registered as ``"padnet"``)."""
    return PADNet(tasks, aux_tasks, dataset, backbone, **kw)
