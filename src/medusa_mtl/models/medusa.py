"""Medusa: independent per-task heads with Shared Feature Attention and Multi-Scale Attention (SPEC §4).

Per task t, independent of every other task (one :class:`MedusaHead` each):

1. SFA at every backbone scale s: ``a_{t,s} = SABlock_{t,s}(F_s)`` (switch ``sfa``; off: ``a_{t,s} = F_s``).
2. Per-scale task features ``BasicBlock(C_s) -> BasicBlock(C_s)``; an initial prediction
   ``Conv1x1 C_s -> out`` per scale for deep supervision (switch ``initial_predictions``), computed in train
   mode only.
3. Final head (switch ``head``): ``"msa"`` upsamples the per-scale features to scale 0, weights them with a
   per-pixel softmax over the scales of one ``Conv3x3 C_s -> 1`` logit each, concatenates and applies
   ``Conv1x1 -> BN -> ReLU -> Conv1x1 -> out``; ``"hrhead"`` is the same without the attention (plain HRHead).

The final logits are upsampled to the input size. Eval mode runs the main tasks' heads only and no
initial-prediction layer. Parameters and FLOPs grow linearly with the number of tasks.

This file is the literal architecture (what the tests call the reference computation). Its fast forms
(batched SFA across heads, grouped per-scale blocks with folded BatchNorm in eval mode, tap-sum MSA logits,
HRHead's fusion without the concatenation) live in :mod:`medusa_mtl.models.medusa_fused` and
:mod:`medusa_mtl.models.fused`; they give the same outputs up to float rounding and run while the ``fused``
switches are on (the default). ``medusa_mtl.models.optimize.set_fused(model, False)`` selects this file's
computation everywhere.

Example:
    >>> from medusa_mtl.models import create_model
    >>> m = create_model("medusa", tasks=["semseg", "depth"],
    ...                  aux_tasks=["semseg", "depth", "normals", "edge"])
    >>> m.drop_auxiliary_heads()
    ['normals', 'edge']
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
import torch.nn as nn

from .base import DEEP_SUPERVISION, IndependentHeadsModel
from .blocks import BasicBlock, HRHead, SABlock, upsample_output, upsample_to
from .medusa_fused import medusa_forward, msa_forward
from .registry import register_model

HEAD_TYPES = ("msa", "hrhead")


class MSAHead(nn.Module):
    """Multi-Scale Attention head: per-pixel softmax over scales, then HRHead's fusion layers.

    A ``Conv3x3 C_s -> 1`` (with bias: a learnable prior per scale) on each upsampled scale gives one logit
    per scale and pixel; the softmax across scales weights the upsampled features, which are concatenated
    (``sum C_s`` channels) and fed to ``Conv1x1 -> BN -> ReLU -> Conv1x1 -> out`` (the HRHead layers, so
    ``"msa"`` differs from ``"hrhead"`` only by the attention convs: ``9 * sum C_s + n_scales`` parameters).

    ``fused`` (default on) runs :func:`~medusa_mtl.models.medusa_fused.msa_forward` (same outputs up to float
    rounding); ``fused = False`` runs :meth:`literal_forward`.
    """

    #: The fast form (True) or the literal upsample -> conv3x3 / concat -> conv computation (False).
    fused: bool = True

    def __init__(self, channels: Sequence[int], out_channels: int) -> None:
        super().__init__()
        self.attention = nn.ModuleList([nn.Conv2d(c, 1, 3, padding=1, bias=True) for c in channels])
        self.fuse = HRHead(channels, out_channels)

    def scale_weights(self, upsampled: Sequence[torch.Tensor]) -> torch.Tensor:
        """Softmax weights ``[B, n_scales, H0, W0]`` from features already upsampled to scale 0."""
        logits = torch.cat([conv(f) for conv, f in zip(self.attention, upsampled)], dim=1)
        return logits.softmax(dim=1)

    def forward(self, features: Sequence[torch.Tensor]) -> torch.Tensor:
        if self.fused:
            return msa_forward(self, features)
        return self.literal_forward(features)

    def literal_forward(self, features: Sequence[torch.Tensor]) -> torch.Tensor:
        """Upsample every scale to scale 0, softmax over the scales' Conv3x3 logits, weight, concatenate, fuse."""
        size = features[0].shape[-2:]
        upsampled = [upsample_to(f, size) for f in features]
        weights = self.scale_weights(upsampled)
        weighted = [f * weights[:, s : s + 1] for s, f in enumerate(upsampled)]
        return self.fuse.last_layer(torch.cat(weighted, dim=1))


class MedusaHead(nn.Module):
    """Everything one task owns in Medusa: SFA, per-scale task features, initial predictions, final head.

    Args:
        channels: backbone channels per scale (fine to coarse).
        out_channels: the task's output channels.
        sfa: Shared Feature Attention (an SABlock per scale); off: the backbone features are used as they are.
        initial_predictions: a ``Conv1x1 C_s -> out`` per scale for deep supervision.
        head: ``"msa"`` (Multi-Scale Attention) or ``"hrhead"`` (plain HRHead fusion).
    """

    def __init__(self, channels: Sequence[int], out_channels: int, sfa: bool = True,
                 initial_predictions: bool = True, head: str = "msa") -> None:
        super().__init__()
        if head not in HEAD_TYPES:
            raise ValueError(f"unknown Medusa head {head!r}; expected one of {HEAD_TYPES}")
        self.sfa = nn.ModuleList([SABlock(c) for c in channels]) if sfa else None
        self.features = nn.ModuleList([nn.Sequential(BasicBlock(c), BasicBlock(c)) for c in channels])
        self.initial = (
            nn.ModuleList([nn.Conv2d(c, out_channels, 1, bias=True) for c in channels])
            if initial_predictions
            else None
        )
        self.head: nn.Module = (
            MSAHead(channels, out_channels) if head == "msa" else HRHead(channels, out_channels)
        )

    def task_features(self, features: Sequence[torch.Tensor]) -> list[torch.Tensor]:
        """Per-scale task features: SFA (if on) then two BasicBlocks."""
        if self.sfa is not None:
            features = [sa(f) for sa, f in zip(self.sfa, features)]
        return [blocks(f) for blocks, f in zip(self.features, features)]

    def forward(self, features: Sequence[torch.Tensor],
                deep_supervision: bool = False) -> tuple[torch.Tensor, list[torch.Tensor] | None]:
        """Final logits at scale 0 and, if ``deep_supervision`` and the layers exist, the per-scale initial
        predictions (at each scale's resolution); ``None`` otherwise (nothing of them is computed)."""
        task_feats = self.task_features(features)
        initial = None
        if deep_supervision and self.initial is not None:
            initial = [conv(f) for conv, f in zip(self.initial, task_feats)]
        return self.head(task_feats), initial

    @torch.no_grad()
    def attention_maps(self, features: Sequence[torch.Tensor]) -> dict[str, Any]:
        """SFA masks per scale (sigmoid, averaged over channels, ``[B,1,H_s,W_s]``) and the MSA softmax
        weights at scale 0 (``[B, n_scales, H0, W0]``); a key is absent when its mechanism is switched off."""
        maps: dict[str, Any] = {}
        if self.sfa is not None:
            maps["sfa"] = [sa.mask(f).mean(dim=1, keepdim=True) for sa, f in zip(self.sfa, features)]
        if isinstance(self.head, MSAHead):
            task_feats = self.task_features(features)
            size = task_feats[0].shape[-2:]
            maps["msa"] = self.head.scale_weights([upsample_to(f, size) for f in task_feats])
        return maps


class Medusa(IndependentHeadsModel):
    """Shared multi-scale backbone + one independent :class:`MedusaHead` per supervised task.

    Args:
        tasks: main tasks (predicted in eval mode).
        aux_tasks: all supervised tasks (superset of ``tasks``); each gets its own head, trained in train
            mode.
        dataset: decides the output channels.
        backbone: a timm model name (``features_only``), four scales.
        sfa: Shared Feature Attention on/off.
        initial_predictions: multi-scale initial predictions (deep supervision) on/off.
        head: ``"msa"`` or ``"hrhead"``.
        **backbone_kwargs: passed to the backbone (``pretrained``, ``pretrained_file``).

    ``forward`` returns ``{task: logits [B, C_t, H, W]}``: the main tasks in eval mode; in train mode every
    task whose head is not frozen plus, with initial predictions on,
    ``"deep_supervision": {"scale<s>": {task: [B, C_t, H_s, W_s]}}``.
    """

    def __init__(self, tasks: list[str], aux_tasks: list[str], dataset: str,
                 backbone: str = "hrnet_w18_small_v2", sfa: bool = True, initial_predictions: bool = True,
                 head: str = "msa", **backbone_kwargs: Any) -> None:
        super().__init__(tasks, aux_tasks, dataset, backbone, **backbone_kwargs)
        if head not in HEAD_TYPES:
            raise ValueError(f"unknown Medusa head {head!r}; expected one of {HEAD_TYPES}")
        self.sfa = bool(sfa)
        self.initial_predictions = bool(initial_predictions)
        self.head_type = head
        self.heads = nn.ModuleDict({t: self.build_head(t, self.out_channels(t)) for t in self.aux_tasks})

    def build_head(self, task: str, out_channels: int) -> MedusaHead:
        return MedusaHead(self.backbone_channels, out_channels, sfa=self.sfa,
                          initial_predictions=self.initial_predictions, head=self.head_type)

    #: Run :func:`~medusa_mtl.models.medusa_fused.medusa_forward` (True: SFA batched across heads, grouped
    #: blocks in eval mode) or the literal per-head loop below (False).
    fused: bool = True

    def forward(self, x: torch.Tensor) -> dict[str, Any]:
        if self.fused:
            return medusa_forward(self, x)
        size = self.input_size(x)
        features = self.backbone(x)
        deep = self.training and self.initial_predictions
        out: dict[str, Any] = {}
        initial: dict[str, dict[str, torch.Tensor]] = {f"scale{s}": {} for s in range(len(features))}
        for t in self.head_tasks():
            final, init = self.heads[t](features, deep_supervision=deep)
            out[t] = upsample_output(final, size)
            for s, pred in enumerate(init or ()):
                initial[f"scale{s}"][t] = pred
        if deep:
            out[DEEP_SUPERVISION] = initial
        return out

    def inference_parameters(self) -> list[nn.Parameter]:
        """The parameters an eval forward uses: the backbone and the main tasks' heads without their
        initial-prediction convs (for resource accounting; the batched SFA and the fused MSA use some
        weights functionally, which forward hooks would not see)."""
        params = list(self.backbone.parameters())
        for t in self.tasks:
            head = self.heads[t]
            skip = {id(p) for p in head.initial.parameters()} if head.initial is not None else set()
            params.extend(p for p in head.parameters() if id(p) not in skip)
        return params

    @torch.no_grad()
    def attention_maps(self, x: torch.Tensor) -> dict[str, dict[str, Any]]:
        """For each main task: ``{"sfa": [mask per scale, [B,1,H_s,W_s]], "msa": [B, n_scales, H0, W0]}``.

        SFA masks are the SABlocks' sigmoid maps averaged over channels; MSA weights are the per-pixel softmax
        over scales at scale 0 (stride 4). Keys are absent when the mechanism is switched off.

        It runs the network in its current mode, like ``forward``: call it in eval mode (as ``Predictor`` does)
        for the maps of inference; in train mode BatchNorm uses the batch's statistics and updates its running
        averages.
        """
        features = self.backbone(x)
        return {t: self.heads[t].attention_maps(features) for t in self.tasks}

    def deep_supervision_modules(self) -> dict[str, nn.Module]:
        """The modules used only for deep supervision (never run in eval), by qualified name: the
        initial-prediction convs of every head and the whole heads of auxiliary-only tasks."""
        mods: dict[str, nn.Module] = {}
        for t, h in self.heads.items():
            if t not in self.tasks:
                mods[f"heads.{t}"] = h
            elif h.initial is not None:
                mods[f"heads.{t}.initial"] = h.initial
        return mods


@register_model("medusa")
def medusa(tasks: list[str], aux_tasks: list[str], dataset: str, backbone: str, sfa: bool = True,
           initial_predictions: bool = True, head: str = "msa", **kw: Any) -> Medusa:
    return Medusa(tasks, aux_tasks, dataset, backbone, sfa=sfa, initial_predictions=initial_predictions,
                  head=head, **kw)
