"""Task losses (SPEC §5).

Every loss takes the raw network output for one task at the label's resolution and the label as the dataset
returns it (see ``docs/ARCHITECTURE.md``), and returns a scalar tensor. Pixels marked invalid or ignored never
contribute. A batch with no valid pixel gives a zero loss that still depends on the prediction (so autograd and
DDP see the same graph on every rank).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

IGNORE_INDEX = 255


def _zero_like(pred: torch.Tensor) -> torch.Tensor:
    return pred.sum() * 0.0


def cross_entropy(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Pixel-wise cross entropy with ``IGNORE_INDEX`` ignored. ``pred`` [B,C,H,W], ``target`` [B,H,W] int64."""
    if not (target != IGNORE_INDEX).any():
        return _zero_like(pred)
    return F.cross_entropy(pred, target.long(), ignore_index=IGNORE_INDEX)


def depth_l1(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """L1 over valid pixels (depth > 0). ``pred`` and ``target`` [B,1,H,W]."""
    valid = target > 0
    n_valid = valid.sum()
    if n_valid == 0:
        return _zero_like(pred)
    # a masked sum rather than boolean indexing (nonzero + gather are several times slower on the CPU); where()
    # keeps non-finite predictions at invalid pixels out of the value and the gradient
    return torch.where(valid, (pred - target).abs(), 0.0).sum() / n_valid


def normals_l1(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """L1 between the L2-normalised prediction and the unit label on valid pixels (label not all-zero): the mean
    over the valid pixels' components."""
    valid = target.abs().sum(dim=1, keepdim=True) > 0
    n_valid = valid.sum()
    if n_valid == 0:
        return _zero_like(pred)
    unit = F.normalize(pred, p=2, dim=1, eps=1e-12)
    return torch.where(valid, (unit - target).abs(), 0.0).sum() / (n_valid * pred.shape[1])


def balanced_bce(
    pred: torch.Tensor, target: torch.Tensor, pos_weight: float | None = None
) -> torch.Tensor:
    """Class-balanced binary cross entropy on logits.

    ``w = pos_weight`` weights positives and ``1 - w`` negatives. With ``pos_weight=None`` it is computed over
    the batch as #negatives / #valid pixels (the saliency loss); the edge loss fixes it at 0.95. Pixels equal to
    ``IGNORE_INDEX`` are excluded; the sum is divided by the number of valid pixels (mean over all pixels).
    """
    valid = target != IGNORE_INDEX
    n_valid = valid.sum()
    if n_valid == 0:
        return _zero_like(pred)
    tgt = torch.where(valid, target, torch.zeros_like(target)).float()
    if pos_weight is None:
        w = ((tgt == 0) & valid).sum().float() / n_valid.float()
    else:
        w = torch.as_tensor(pos_weight, dtype=pred.dtype, device=pred.device)
    # log(sigmoid(x)) and log(1 - sigmoid(x)) in their numerically stable forms
    log_p = F.logsigmoid(pred)
    log_not_p = F.logsigmoid(-pred)
    per_pixel = -(w * tgt * log_p + (1 - w) * (1 - tgt) * log_not_p)
    return (per_pixel * valid).sum() / n_valid.float()


def edge_bce(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Edge loss: balanced BCE with fixed positive weight 0.95 (SPEC §5)."""
    return balanced_bce(pred, target, pos_weight=0.95)


def saliency_bce(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Saliency loss: balanced BCE with the positive weight = #neg/#all over the batch (SPEC §5)."""
    return balanced_bce(pred, target, pos_weight=None)


def regression_l1(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean absolute error over finite label values (NaN marks an invalid value). ``pred``/``target`` [B,C,H,W]."""
    valid = torch.isfinite(target)
    n_valid = valid.sum()
    if n_valid == 0:
        return _zero_like(pred)
    return torch.where(valid, (pred - torch.nan_to_num(target)).abs(), 0.0).sum() / n_valid


def regression_l2(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean squared error over finite label values (NaN marks an invalid value). ``pred``/``target`` [B,C,H,W]."""
    valid = torch.isfinite(target)
    n_valid = valid.sum()
    if n_valid == 0:
        return _zero_like(pred)
    return torch.where(valid, (pred - torch.nan_to_num(target)) ** 2, 0.0).sum() / n_valid
