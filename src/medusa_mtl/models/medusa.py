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

Fast evaluation (same outputs up to float rounding, same parameters and state-dict keys; ``fused = False`` on
:class:`Medusa`, :class:`MSAHead` or :class:`~medusa_mtl.models.blocks.HRHead` selects the literal
computation, which the tests compare against):

- the SFA SABlocks of all running heads read the same backbone map, so at each scale their ``2 T`` 3x3 convs
  run as one convolution with the weights concatenated at run time (:meth:`Medusa.stacked_attention`);
- in eval mode (BatchNorm on running statistics) the per-scale BasicBlocks of all running heads run as
  grouped convolutions (``groups = T``) with the BatchNorms folded in (:meth:`Medusa.stacked_blocks`);
- the MSA logits ``Conv3x3(up(f_s))`` are computed without upsampling ``f_s``: a 3x3 conv on an upsampled
  map equals the sum of its 9 taps, and each tap's channel reduction commutes with the per-channel
  upsampling, so ``Conv1x1 C_s -> 9`` runs at scale ``s``, the 9 maps are upsampled, and the shifted taps
  are summed (zero padding agrees too: a tap outside the map is 0 both ways);
- the fusion Conv1x1 over the concatenation is evaluated per scale at the scale's own resolution where that
  is cheaper (:func:`~medusa_mtl.models.blocks.multiscale_conv1x1`), and for inference on the CPU the whole
  fusion runs in bands of rows (:func:`~medusa_mtl.models.blocks.fused_head_in_row_bands`).

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
import torch.nn.functional as F

from .base import DEEP_SUPERVISION, IndependentHeadsModel
from .blocks import (
    BasicBlock,
    HRHead,
    SABlock,
    eval_batchnorm_fold,
    fold_batchnorm_into_conv,
    is_channels_last,
    upsample_output,
    upsample_to,
)
from .registry import register_model

HEAD_TYPES = ("msa", "hrhead")


class MSAHead(nn.Module):
    """Multi-Scale Attention head: per-pixel softmax over scales, then HRHead's fusion layers.

    A ``Conv3x3 C_s -> 1`` (with bias: a learnable prior per scale) on each upsampled scale gives one logit
    per scale and pixel; the softmax across scales weights the upsampled features, which are concatenated
    (``sum C_s`` channels) and fed to ``Conv1x1 -> BN -> ReLU -> Conv1x1 -> out`` (the HRHead layers, so
    ``"msa"`` differs from ``"hrhead"`` only by the attention convs: ``9 * sum C_s + n_scales`` parameters).

    With ``fused`` (default) the logits come from :meth:`attention_logits` and the fusion from the fused
    :class:`HRHead` (see the module docstring); ``fused = False`` runs the literal computation.
    """

    #: Fast evaluation (True) or the literal upsample -> conv3x3 / concat -> conv computation (False).
    fused: bool = True

    def __init__(self, channels: Sequence[int], out_channels: int) -> None:
        super().__init__()
        self.attention = nn.ModuleList([nn.Conv2d(c, 1, 3, padding=1, bias=True) for c in channels])
        self.fuse = HRHead(channels, out_channels)

    def scale_weights(self, upsampled: Sequence[torch.Tensor]) -> torch.Tensor:
        """Softmax weights ``[B, n_scales, H0, W0]`` from features already upsampled to scale 0."""
        logits = torch.cat([conv(f) for conv, f in zip(self.attention, upsampled)], dim=1)
        return logits.softmax(dim=1)

    def attention_logits(self, features: Sequence[torch.Tensor]) -> torch.Tensor:
        """The per-scale logits ``[B, n_scales, H0, W0]`` from features at their own resolutions.

        Equals ``cat_s(Conv3x3_s(up(f_s)))`` up to float rounding: ``Conv3x3(up(f)) = sum_k shift_k(up(A_k f))``
        where ``A_k`` (``[C_s]``) is the kernel's tap ``k`` as a 1x1 conv.
        """
        size = features[0].shape[-2:]
        taps = []
        for conv, f in zip(self.attention, features):
            kh, kw = conv.kernel_size
            tap_weight = conv.weight[0].permute(1, 2, 0).reshape(kh * kw, -1, 1, 1)  # tap k = ky * kw + kx
            taps.append(upsample_to(F.conv2d(f, tap_weight), size))
        n = len(taps)
        kh, kw = self.attention[0].kernel_size
        ph, pw = self.attention[0].padding
        h, w = (int(v) for v in size)
        # sum_k shift_k: a sum of shifted slices of the zero-padded tap maps (what a fixed one-hot 3x3 kernel
        # computes, without a convolution call that is several times slower on the CPU for 9 channels)
        x = F.pad(torch.cat(taps, dim=1), (pw, pw, ph, ph))
        x = x.reshape(x.shape[0], n, kh * kw, h + 2 * ph, w + 2 * pw)
        logits = x[:, :, 0, :h, :w]
        for k in range(1, kh * kw):
            ky, kx = divmod(k, kw)
            logits = logits + x[:, :, k, ky : ky + h, kx : kx + w]
        if self.attention[0].bias is not None:
            logits = logits + torch.cat([conv.bias for conv in self.attention]).view(1, n, 1, 1)
        return logits

    def _can_fuse(self) -> bool:
        return all(
            c.stride == (1, 1) and c.dilation == (1, 1) and c.groups == 1 and c.padding_mode == "zeros"
            and c.padding == tuple(k // 2 for k in c.kernel_size) and c.kernel_size == self.attention[0].kernel_size
            and (c.bias is None) == (self.attention[0].bias is None)
            for c in self.attention
        )

    def forward(self, features: Sequence[torch.Tensor]) -> torch.Tensor:
        if self.fused and self._can_fuse():
            weights = self.attention_logits(features).softmax(dim=1)
            return self.fuse(features, scale_weights=weights)
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

    def task_features(self, features: Sequence[torch.Tensor],
                      attended: Sequence[torch.Tensor] | None = None) -> list[torch.Tensor]:
        """Per-scale task features: SFA (if on) then two BasicBlocks.

        ``attended``: the SFA outputs when the caller already computed them (``Medusa`` batches the SFA of
        all heads); ignored when SFA is off.
        """
        if self.sfa is not None:
            features = list(attended) if attended is not None else [sa(f) for sa, f in zip(self.sfa, features)]
        return [blocks(f) for blocks, f in zip(self.features, features)]

    def forward(self, features: Sequence[torch.Tensor], deep_supervision: bool = False,
                attended: Sequence[torch.Tensor] | None = None,
                task_feats: Sequence[torch.Tensor] | None = None) -> tuple[torch.Tensor, list[torch.Tensor] | None]:
        """Final logits at scale 0 and, if ``deep_supervision`` and the layers exist, the per-scale initial
        predictions (at each scale's resolution); ``None`` otherwise (nothing of them is computed).

        ``attended``: precomputed SFA outputs per scale (see :meth:`task_features`); ``task_feats``: precomputed
        task features per scale (``Medusa`` batches them across heads in eval mode), which skips SFA and blocks.
        """
        task_feats = list(task_feats) if task_feats is not None else self.task_features(features, attended)
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


def _unstack(tasks: Sequence[str], stacked: Sequence[torch.Tensor],
             features: Sequence[torch.Tensor]) -> dict[str, list[torch.Tensor]]:
    """``{task: [per-scale map]}`` from maps stacked along channels task by task (``C_s`` channels each, the
    backbone's widths)."""
    return {t: [x[:, i * f.shape[1] : (i + 1) * f.shape[1]] for x, f in zip(stacked, features)]
            for i, t in enumerate(tasks)}


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

    #: Batch the SFA of all running heads into one convolution per scale (True) or run each SABlock (False).
    fused: bool = True

    def shared_feature_attention(self, tasks: Sequence[str],
                                 features: Sequence[torch.Tensor]) -> dict[str, list[torch.Tensor]]:
        """SFA outputs ``{task: [SABlock_{t,s}(F_s) for s]}`` for ``tasks``, batched across tasks.

        Every SABlock at scale ``s`` reads the same ``F_s``, so the ``2 T`` 3x3 convs of one scale run as one
        convolution (weights concatenated at run time, see :meth:`stacked_attention`); each task then takes its
        channel slice. Same values as the SABlocks up to float rounding; gradients reach every SABlock's weights
        through the concatenation. Returns ``{}`` when SFA is off.
        """
        if not self.sfa or not tasks:
            return {}
        return _unstack(tasks, self.stacked_attention(tasks, features), features)

    def stacked_attention(self, tasks: Sequence[str], features: Sequence[torch.Tensor]) -> list[torch.Tensor]:
        """Per scale, the SFA outputs of ``tasks`` stacked along channels: ``[B, T * C_s, H_s, W_s]``, task
        ``i`` in channels ``i * C_s : (i + 1) * C_s``.

        One convolution per scale with the weights ``[conv_1; ...; conv_T; attention_1; ...; attention_T]``
        gives the values and the gates of all tasks; ``values * sigmoid(gates)`` is then one elementwise pass.
        """
        out = []
        for s, f in enumerate(features):
            blocks = [self.heads[t].sfa[s] for t in tasks]
            ref = blocks[0].conv
            weight = torch.cat([b.conv.weight for b in blocks] + [b.attention.weight for b in blocks], dim=0)
            y = F.conv2d(f, weight, None, ref.stride, ref.padding, ref.dilation)
            n = len(tasks) * int(ref.out_channels)
            out.append(y[:, :n] * torch.sigmoid(y[:, n:]))
        return out

    def _sfa_batchable(self, tasks: Sequence[str]) -> bool:
        """Whether the SABlocks of ``tasks`` can run as one conv per scale (plain SABlocks, same conv shapes)."""
        if not (self.fused and self.sfa and len(tasks) > 1):
            return False
        per_scale = zip(*(self.heads[t].sfa for t in tasks))
        for blocks in per_scale:
            convs = [c for b in blocks for c in (b.conv, b.attention)]
            if any(type(b) is not SABlock for b in blocks) or any(
                c.bias is not None or c.groups != 1 or c.padding_mode != "zeros" for c in convs
            ):
                return False
            if len({(c.in_channels, c.out_channels, c.kernel_size, c.stride, c.padding, c.dilation)
                    for c in convs}) != 1:
                return False
        return True

    def _blocks_batchable(self, tasks: Sequence[str]) -> bool:
        """Whether the per-scale BasicBlocks of ``tasks`` can run as grouped convolutions (:meth:`stacked_blocks`):
        more than one task, SFA off or batchable, every block a plain ``BasicBlock`` pair without projection
        whose BatchNorms use running statistics (eval mode), with the same conv shapes across tasks."""
        if not (self.fused and len(tasks) > 1) or (self.sfa and not self._sfa_batchable(tasks)):
            return False
        for seqs in zip(*(self.heads[t].features for t in tasks)):
            if any(type(q) is not nn.Sequential or len(q) != 2 for q in seqs):
                return False
            for blocks in zip(*seqs):
                if any(type(b) is not BasicBlock or b.downsample is not None for b in blocks):
                    return False
                convs = [c for b in blocks for c in (b.conv1, b.conv2)]
                if any(c.bias is not None or c.groups != 1 or c.padding_mode != "zeros" or c.stride != (1, 1)
                       or c.padding != tuple(k // 2 for k in c.kernel_size) for c in convs):
                    return False
                if len({(c.in_channels, c.out_channels, c.kernel_size, c.dilation) for c in convs}) != 1:
                    return False
                if not all(eval_batchnorm_fold(bn) for b in blocks for bn in (b.bn1, b.bn2)):
                    return False
        return True

    def stacked_blocks(self, tasks: Sequence[str], stacked: Sequence[torch.Tensor]) -> list[torch.Tensor]:
        """The two BasicBlocks of every task at every scale on stacked inputs (``[B, T * C_s, H_s, W_s]``, see
        :meth:`stacked_attention`), as grouped convolutions with ``groups = T``.

        Eval mode only (:meth:`_blocks_batchable`): each BatchNorm is a fixed affine map, folded into the conv
        before it (:func:`~medusa_mtl.models.blocks.fold_batchnorm_into_conv`); the weights of the ``T`` tasks
        are concatenated at run time. Group ``i`` sees only task ``i``'s channels, so this is the per-task
        computation up to float rounding, in one call per layer instead of ``T``.
        """
        n = len(tasks)
        out = []
        for s, x in enumerate(stacked):
            for k in range(2):
                blocks = [self.heads[t].features[s][k] for t in tasks]
                first = [fold_batchnorm_into_conv(b.conv1.weight, None, b.bn1) for b in blocks]
                second = [fold_batchnorm_into_conv(b.conv2.weight, None, b.bn2) for b in blocks]
                ref = blocks[0].conv1
                y = F.conv2d(x, torch.cat([w for w, _ in first]), torch.cat([b for _, b in first]),
                             padding=ref.padding, dilation=ref.dilation, groups=n)
                y = F.conv2d(F.relu(y, inplace=True), torch.cat([w for w, _ in second]),
                             torch.cat([b for _, b in second]), padding=ref.padding, dilation=ref.dilation, groups=n)
                x = F.relu(y.add_(x), inplace=True)
            out.append(x)
        return out

    def forward(self, x: torch.Tensor) -> dict[str, Any]:
        size = self.input_size(x)
        features = self.backbone(x)
        deep = self.training and self.initial_predictions
        tasks = self.head_tasks()
        attended: dict[str, list[torch.Tensor]] = {}
        task_feats: dict[str, list[torch.Tensor]] = {}
        # channels_last maps: oneDNN's grouped convolutions were slower there than the per-head ones
        # (PASCAL, 5 heads, eval: 605 vs 569 ms), so the stacked path is for the default layout only
        if not is_channels_last(features[0]) and self._blocks_batchable(tasks):
            stacked = (self.stacked_attention(tasks, features) if self.sfa
                       else [f.repeat(1, len(tasks), 1, 1) for f in features])
            task_feats = _unstack(tasks, self.stacked_blocks(tasks, stacked), features)
        elif self._sfa_batchable(tasks):
            attended = self.shared_feature_attention(tasks, features)
        out: dict[str, Any] = {}
        initial: dict[str, dict[str, torch.Tensor]] = {f"scale{s}": {} for s in range(len(features))}
        for t in tasks:
            final, init = self.heads[t](features, deep_supervision=deep, attended=attended.get(t),
                                        task_feats=task_feats.get(t))
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
