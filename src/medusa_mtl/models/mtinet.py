"""MTI-Net (Vandenhende et al., ECCV 2020) on a four-scale backbone, as specified in SPEC §4.

``C_s`` are the backbone channels at scale ``s`` (0 = finest .. 3 = coarsest; HRNet-18: 18, 36, 72, 144),
``N`` is the number of auxiliary tasks (``aux_tasks`` = all supervised tasks, main ones included), ``T`` the
number of main tasks. Scales are processed from coarse to fine:

1. **Initial task prediction** at scale ``s``, one module per auxiliary task ``a``: the input is the backbone
   feature ``F_s`` (``C_s`` ch), concatenated for ``s < 3`` with the 2x bilinearly upsampled FPM output of the
   same task from scale ``s+1``. BasicBlock(in -> C_s, projection when in != C_s) -> BasicBlock(C_s) gives the
   task features ``f_{s,a}`` (``C_s`` ch); Conv1x1 C_s->out (bias) gives the initial prediction (deep
   supervision).
2. **Feature Propagation Module** (FPM) at scales 3, 2, 1 on the ``N`` task features of that scale:
   ``X = concat_a f_{s,a}`` (``N·C_s`` ch) -> BasicBlock(N·C_s -> N·C_s/4, projection) -> BasicBlock(N·C_s/4)
   -> Conv1x1(N·C_s/4 -> N·C_s, bias) -> reshape to (B, C_s, N, H, W), softmax over dim 2, reshape back (the
   original quirk: the softmax runs over groups of N *adjacent* channels, not over the task blocks of ``X``)
   -> ``X * attention`` -> BasicBlock(N·C_s -> C_s, projection) = shared map ``P_s`` -> per task
   ``SE_{s,a}(P_s) + f_{s,a}`` with SE(C_s, r=16).
3. **Multi-modal distillation** at every scale (PAD-Net's, on ``C_s`` channels), per main task ``t``:
   ``d_{s,t} = f_{s,t} + sum_{a != t} SABlock_{s,t,a}(f_{s,a})``.
4. **Final head** per main task: an HRHead over ``d_{0,t} .. d_{3,t}``, upsampled to the input size.

Channel counts (our reading of the SPEC, consistent with its "Layer conventions" paragraph): the FPM at scale
``s`` works at that scale's width and returns ``C_s`` channels *per task* (its last BasicBlock maps N·C_s -> C_s,
and the SE + residual keep C_s). Upsampled and concatenated to ``F_{s-1}``, the input of the initial-prediction
module at scale ``s-1`` therefore has ``C_{s-1} + C_s`` channels (HRNet-18: 18+36 = 54, 36+72 = 108,
72+144 = 216; 144 alone at scale 3), and its first BasicBlock projects to ``C_{s-1}``. The FPM bottleneck width
is ``N·C_s // 4`` (HRNet-18: 36N, 18N, 9N at scales 3, 2, 1). The distillation and the HRHead see the task
features ``f_{s,a}`` of step 1 (the FPM output only travels to the next finer scale), so the final head input is
``sum(C_s)`` = 270 channels. The SE hidden width is ``max(C_s // 16, 1)`` (9, 4, 2 at scales 3, 2, 1).

Parameters grow quadratically with the number of tasks: ``T·(N-1)`` SABlocks per scale, and FPM convolutions
of (N·C_s)·(N·C_s/4) weights.

Outputs (docs/ARCHITECTURE.md): eval mode ``{t: logits}`` for the main tasks only. The initial predictions
are **not computed in eval mode**: the FPM, the distillation and the heads consume task *features*, never the
predictions, so the Conv1x1 prediction layers only serve deep supervision (the auxiliary task *features* are
still needed: they feed the FPMs and the distillation). Train mode adds
``"deep_supervision": {"scale0": {a: ...}, ..., "scale3": {a: ...}}`` for every auxiliary task, each at its
scale's resolution.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
import torch.nn as nn

from .base import DEEP_SUPERVISION, MultiTaskModel
from .blocks import BasicBlock, HRHead, SEBlock, upsample_output, upsample_to
from .padnet import MultiModalDistillation, check_main_in_aux
from .registry import register_model


class InitialTaskPrediction(nn.Module):
    """BasicBlock(in -> C, projection if needed) -> BasicBlock(C) = task features; Conv1x1 C->out = prediction.

    Args:
        in_channels: input channels (``C_s`` or ``C_s + C_{s+1}``).
        channels: ``C_s``, the width of the task features.
        out_channels: channels of the task's prediction.
    """

    def __init__(self, in_channels: int, channels: int, out_channels: int) -> None:
        super().__init__()
        self.refinement = nn.Sequential(BasicBlock(in_channels, channels), BasicBlock(channels))
        self.prediction = nn.Conv2d(channels, out_channels, 1)

    def forward(self, x: torch.Tensor, predict: bool = True) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Return ``(task features, initial prediction or None when predict is False)``."""
        features = self.refinement(x)
        return features, (self.prediction(features) if predict else None)


class FeaturePropagation(nn.Module):
    """MTI-Net's Feature Propagation Module at one scale (see the module docstring, step 2).

    Args:
        tasks: the auxiliary tasks (order = concat order).
        channels: ``C``, the width of each task's features at this scale.
        reduction: the SE reduction ratio (16).
    """

    def __init__(self, tasks: Sequence[str], channels: int, reduction: int = 16) -> None:
        super().__init__()
        self.tasks = list(tasks)
        n = len(self.tasks)
        total = n * channels
        hidden = max(total // 4, 1)
        self.compress = nn.Sequential(BasicBlock(total, hidden), BasicBlock(hidden))
        self.attention = nn.Conv2d(hidden, total, 1, bias=True)
        self.expand = BasicBlock(total, channels)
        self.se = nn.ModuleDict({t: SEBlock(channels, reduction) for t in self.tasks})

    def forward(self, features: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        x = torch.cat([features[t] for t in self.tasks], dim=1)
        logits = self.attention(self.compress(x))
        b, c, h, w = logits.shape
        n = len(self.tasks)
        # Original quirk: groups of n adjacent channels share one softmax.
        attention = logits.reshape(b, c // n, n, h, w).softmax(dim=2).reshape(b, c, h, w)
        shared = self.expand(x * attention)
        return {t: self.se[t](shared) + features[t] for t in self.tasks}


class MTINet(MultiTaskModel):
    """MTI-Net: multi-scale initial predictions, FPMs from coarse to fine, per-scale distillation, HRHeads.

    Args:
        tasks: main tasks (distilled and predicted at inference); must be a subset of ``aux_tasks``.
        aux_tasks: all supervised tasks; each has initial-prediction modules at every scale and enters the FPMs.
        dataset: decides the output channels.
        backbone: timm backbone name (or a module) with four feature levels.
        **backbone_kwargs: passed to the backbone (``pretrained``, ``pretrained_file``).
    """

    def __init__(self, tasks: list[str], aux_tasks: list[str], dataset: str, backbone: str = "hrnet_w18_small_v2",
                 **backbone_kwargs: Any) -> None:
        check_main_in_aux(tasks, aux_tasks, "mtinet")
        super().__init__(tasks, aux_tasks, dataset, backbone, **backbone_kwargs)
        ch = self.backbone_channels
        self.num_scales = len(ch)
        last = self.num_scales - 1
        self.initial = nn.ModuleList(
            [
                nn.ModuleDict(
                    {
                        a: InitialTaskPrediction(ch[s] + (ch[s + 1] if s < last else 0), ch[s], self.out_channels(a))
                        for a in self.aux_tasks
                    }
                )
                for s in range(self.num_scales)
            ]
        )
        self.fpm = nn.ModuleDict({f"scale{s}": FeaturePropagation(self.aux_tasks, ch[s]) for s in range(1, last + 1)})
        self.distillation = nn.ModuleList(
            [MultiModalDistillation(ch[s], self.tasks, self.aux_tasks) for s in range(self.num_scales)]
        )
        self.heads = nn.ModuleDict({t: HRHead(ch, self.out_channels(t)) for t in self.tasks})

    def forward(self, x: torch.Tensor) -> dict[str, Any]:
        size = self.input_size(x)
        feats = self.backbone(x)
        last = self.num_scales - 1
        task_feats: list[dict[str, torch.Tensor]] = [{} for _ in range(self.num_scales)]
        initial: dict[str, dict[str, torch.Tensor]] = {}
        propagated: dict[str, torch.Tensor] | None = None
        for s in range(last, -1, -1):
            preds: dict[str, torch.Tensor] = {}
            for a in self.aux_tasks:
                inp = feats[s]
                if propagated is not None:
                    inp = torch.cat([inp, upsample_to(propagated[a], inp.shape[-2:])], dim=1)
                f, p = self.initial[s][a](inp, predict=self.training)
                task_feats[s][a] = f
                if p is not None:
                    preds[a] = p
            if self.training:
                initial[f"scale{s}"] = preds
            propagated = self.fpm[f"scale{s}"](task_feats[s]) if s > 0 else None
        distilled = [self.distillation[s](task_feats[s]) for s in range(self.num_scales)]
        out: dict[str, Any] = {
            t: upsample_output(self.heads[t]([distilled[s][t] for s in range(self.num_scales)]), size)
            for t in self.tasks
        }
        if self.training:
            out[DEEP_SUPERVISION] = {f"scale{s}": initial[f"scale{s}"] for s in range(self.num_scales)}
        return out


@register_model("mtinet")
def mtinet(tasks: list[str], aux_tasks: list[str], dataset: str, backbone: str, **kw: Any) -> MTINet:
    """Build :class:`MTINet` (registered as ``"mtinet"``)."""
    return MTINet(tasks, aux_tasks, dataset, backbone, **kw)
