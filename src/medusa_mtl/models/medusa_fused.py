"""Medusa's fast forms: the same outputs as the literal heads of :mod:`medusa_mtl.models.medusa` up to float
rounding, with the same parameters and state-dict keys. The literal model runs them while its ``fused``
switch is on (the default; :func:`medusa_mtl.models.optimize.set_fused` turns every switch of a model on or off).

- the SFA SABlocks of all running heads read the same backbone map, so at each scale their ``2 T`` 3x3 convs
  run as one convolution with the weights concatenated at run time (:func:`stacked_attention`);
- in eval mode (BatchNorm on running statistics) the per-scale BasicBlocks of all running heads run as
  grouped convolutions (``groups = T``) with the BatchNorms folded in (:func:`stacked_blocks`);
- the MSA logits ``Conv3x3(up(f_s))`` are computed without upsampling ``f_s`` (:func:`msa_attention_logits`):
  a 3x3 conv on an upsampled map equals the sum of its 9 taps, and each tap's channel reduction commutes with
  the per-channel upsampling, so ``Conv1x1 C_s -> 9`` runs at scale ``s``, the 9 maps are upsampled, and the
  shifted taps are summed (zero padding agrees too: a tap outside the map is 0 both ways);
- the MSA fusion is HRHead's, which has its own fast form (:func:`~medusa_mtl.models.fused.hrhead_forward`:
  per-scale Conv1x1 at the scale's own resolution where cheaper, row bands for CPU inference).

The functions take the literal modules (a ``Medusa``, an ``MSAHead``) as arguments; this module imports no
architecture file, so ``medusa.py`` can call into it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..resize import is_channels_last, upsample_output, upsample_to
from .base import DEEP_SUPERVISION
from .blocks import BasicBlock, SABlock
from .fused import eval_batchnorm_fold, fold_batchnorm_into_conv

__all__ = ["msa_forward", "msa_attention_logits", "medusa_forward", "stacked_attention", "stacked_blocks"]


# -- Multi-Scale Attention ----------------------------------------------------------------------------------
def msa_attention_logits(head: Any, features: Sequence[torch.Tensor]) -> torch.Tensor:
    """The per-scale logits ``[B, n_scales, H0, W0]`` from features at their own resolutions.

    Equals ``cat_s(Conv3x3_s(up(f_s)))`` up to float rounding: ``Conv3x3(up(f)) = sum_k shift_k(up(A_k f))``
    where ``A_k`` (``[C_s]``) is the kernel's tap ``k`` as a 1x1 conv.
    """
    size = features[0].shape[-2:]
    taps = []
    for conv, f in zip(head.attention, features):
        kh, kw = conv.kernel_size
        tap_weight = conv.weight[0].permute(1, 2, 0).reshape(kh * kw, -1, 1, 1)  # tap k = ky * kw + kx
        taps.append(upsample_to(F.conv2d(f, tap_weight), size))
    n = len(taps)
    kh, kw = head.attention[0].kernel_size
    ph, pw = head.attention[0].padding
    h, w = (int(v) for v in size)
    # sum_k shift_k: a sum of shifted slices of the zero-padded tap maps (what a fixed one-hot 3x3 kernel
    # computes, without a convolution call that is several times slower on the CPU for 9 channels)
    x = F.pad(torch.cat(taps, dim=1), (pw, pw, ph, ph))
    x = x.reshape(x.shape[0], n, kh * kw, h + 2 * ph, w + 2 * pw)
    logits = x[:, :, 0, :h, :w]
    for k in range(1, kh * kw):
        ky, kx = divmod(k, kw)
        logits = logits + x[:, :, k, ky : ky + h, kx : kx + w]
    if head.attention[0].bias is not None:
        logits = logits + torch.cat([conv.bias for conv in head.attention]).view(1, n, 1, 1)
    return logits


def msa_can_fuse(head: Any) -> bool:
    """Whether :func:`msa_attention_logits` covers the head's attention convs (stride 1, "same" zero padding,
    one kernel size and bias setting for every scale)."""
    return all(
        c.stride == (1, 1) and c.dilation == (1, 1) and c.groups == 1 and c.padding_mode == "zeros"
        and c.padding == tuple(k // 2 for k in c.kernel_size) and c.kernel_size == head.attention[0].kernel_size
        and (c.bias is None) == (head.attention[0].bias is None)
        for c in head.attention
    )


def msa_forward(head: Any, features: Sequence[torch.Tensor]) -> torch.Tensor:
    """The fast form of ``MSAHead.forward``: tap-sum logits, then HRHead's fast fusion with the softmax weights
    (falls back to the literal computation for attention convs it does not cover)."""
    if not msa_can_fuse(head):
        return head.literal_forward(features)
    weights = msa_attention_logits(head, features).softmax(dim=1)
    return head.fuse(features, scale_weights=weights)  # HRHead: its own fast form while HRHead.fused is on


# -- the model: batched SFA and grouped per-scale blocks across heads ---------------------------------------
def _unstack(tasks: Sequence[str], stacked: Sequence[torch.Tensor],
             features: Sequence[torch.Tensor]) -> dict[str, list[torch.Tensor]]:
    """``{task: [per-scale map]}`` from maps stacked along channels task by task (``C_s`` channels each, the
    backbone's widths)."""
    return {t: [x[:, i * f.shape[1] : (i + 1) * f.shape[1]] for x, f in zip(stacked, features)]
            for i, t in enumerate(tasks)}


def shared_feature_attention(model: Any, tasks: Sequence[str],
                             features: Sequence[torch.Tensor]) -> dict[str, list[torch.Tensor]]:
    """SFA outputs ``{task: [SABlock_{t,s}(F_s) for s]}`` for ``tasks``, batched across tasks.

    Every SABlock at scale ``s`` reads the same ``F_s``, so the ``2 T`` 3x3 convs of one scale run as one
    convolution (weights concatenated at run time, see :func:`stacked_attention`); each task then takes its
    channel slice. Same values as the SABlocks up to float rounding; gradients reach every SABlock's weights
    through the concatenation. Returns ``{}`` when SFA is off.
    """
    if not model.sfa or not tasks:
        return {}
    return _unstack(tasks, stacked_attention(model, tasks, features), features)


def stacked_attention(model: Any, tasks: Sequence[str], features: Sequence[torch.Tensor]) -> list[torch.Tensor]:
    """Per scale, the SFA outputs of ``tasks`` stacked along channels: ``[B, T * C_s, H_s, W_s]``, task
    ``i`` in channels ``i * C_s : (i + 1) * C_s``.

    One convolution per scale with the weights ``[conv_1; ...; conv_T; attention_1; ...; attention_T]``
    gives the values and the gates of all tasks; ``values * sigmoid(gates)`` is then one elementwise pass.
    """
    out = []
    for s, f in enumerate(features):
        blocks = [model.heads[t].sfa[s] for t in tasks]
        ref = blocks[0].conv
        weight = torch.cat([b.conv.weight for b in blocks] + [b.attention.weight for b in blocks], dim=0)
        y = F.conv2d(f, weight, None, ref.stride, ref.padding, ref.dilation)
        n = len(tasks) * int(ref.out_channels)
        out.append(y[:, :n] * torch.sigmoid(y[:, n:]))
    return out


def sfa_batchable(model: Any, tasks: Sequence[str]) -> bool:
    """Whether the SABlocks of ``tasks`` can run as one conv per scale (plain SABlocks, same conv shapes)."""
    if not (model.fused and model.sfa and len(tasks) > 1):
        return False
    per_scale = zip(*(model.heads[t].sfa for t in tasks))
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


def blocks_batchable(model: Any, tasks: Sequence[str]) -> bool:
    """Whether the per-scale BasicBlocks of ``tasks`` can run as grouped convolutions (:meth:`stacked_blocks`):
    more than one task, SFA off or batchable, every block a plain ``BasicBlock`` pair without projection
    whose BatchNorms use running statistics (eval mode), with the same conv shapes across tasks."""
    if not (model.fused and len(tasks) > 1) or (model.sfa and not sfa_batchable(model, tasks)):
        return False
    for seqs in zip(*(model.heads[t].features for t in tasks)):
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


def stacked_blocks(model: Any, tasks: Sequence[str], stacked: Sequence[torch.Tensor]) -> list[torch.Tensor]:
    """The two BasicBlocks of every task at every scale on stacked inputs (``[B, T * C_s, H_s, W_s]``, see
    :func:`stacked_attention`), as grouped convolutions with ``groups = T``.

    Eval mode only (:func:`blocks_batchable`): each BatchNorm is a fixed affine map, folded into the conv
    before it (:func:`~medusa_mtl.models.blocks.fold_batchnorm_into_conv`); the weights of the ``T`` tasks
    are concatenated at run time. Group ``i`` sees only task ``i``'s channels, so this is the per-task
    computation up to float rounding, in one call per layer instead of ``T``.
    """
    n = len(tasks)
    out = []
    for s, x in enumerate(stacked):
        for k in range(2):
            blocks = [model.heads[t].features[s][k] for t in tasks]
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


def medusa_forward(model: Any, x: torch.Tensor) -> dict[str, Any]:
    """The fast form of ``Medusa.forward``: the SFA of all running heads batched per scale, and in eval mode
    their BasicBlocks as grouped convolutions; each head's final head (and its initial predictions in train
    mode) then runs on its own slice. Same outputs as the literal forward up to float rounding."""
    size = model.input_size(x)
    features = model.backbone(x)
    deep = model.training and model.initial_predictions
    tasks = model.head_tasks()
    task_feats: dict[str, list[torch.Tensor]] = {}
    # channels_last maps: oneDNN's grouped convolutions were slower there than the per-head ones
    # (PASCAL, 5 heads, eval: 605 vs 569 ms), so the stacked path is for the default layout only
    if not is_channels_last(features[0]) and blocks_batchable(model, tasks):
        stacked = (stacked_attention(model, tasks, features) if model.sfa
                   else [f.repeat(1, len(tasks), 1, 1) for f in features])
        task_feats = _unstack(tasks, stacked_blocks(model, tasks, stacked), features)
    elif sfa_batchable(model, tasks):
        attended = shared_feature_attention(model, tasks, features)
        task_feats = {t: [blocks(f) for blocks, f in zip(model.heads[t].features, attended[t])] for t in tasks}
    out: dict[str, Any] = {}
    initial: dict[str, dict[str, torch.Tensor]] = {f"scale{s}": {} for s in range(len(features))}
    for t in tasks:
        head = model.heads[t]
        feats = task_feats[t] if t in task_feats else head.task_features(features)
        out[t] = upsample_output(head.head(feats), size)
        if deep and head.initial is not None:
            for s, (conv, f) in enumerate(zip(head.initial, feats)):
                initial[f"scale{s}"][t] = conv(f)
    if deep:
        out[DEEP_SUPERVISION] = initial
    return out
