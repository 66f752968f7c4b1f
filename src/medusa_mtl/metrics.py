"""Streaming evaluation metrics of the six tasks (SPEC §5).

This module knows nothing about tasks: :mod:`medusa_mtl.tasks` says which metric a task uses and computes
the multi-task score Δm (SPEC §2) from the results.

Every metric is a :class:`StreamingMetric`: feed it batches with :meth:`~StreamingMetric.update`, read the
dataset-level result with :meth:`~StreamingMetric.compute`, start over with :meth:`~StreamingMetric.reset`.
Results are pooled over the whole dataset (not averaged over batches), so splitting the data into batches, or
over DDP ranks, never changes them: the accumulated state is exposed by :meth:`~StreamingMetric.state_dict`
(plain NumPy arrays) and added with :meth:`~StreamingMetric.merge`; :meth:`~StreamingMetric.sync` does both
across the ranks of an initialised ``torch.distributed`` process group.

Inputs (``docs/ARCHITECTURE.md``): ``pred`` is the *postprocessed* prediction (class ids int64 ``[B,H,W]``,
depth ``[B,1,H,W]``, unit normals ``[B,3,H,W]``, edge / saliency probabilities ``[B,1,H,W]``), ``target`` the
label as the dataset returns it (255 = ignore for classes, saliency and edges; depth 0 = invalid; normals
all-zero = invalid). Both may also be lists of per-image tensors (or arrays) of different sizes. Prediction
and label must have the same spatial size (the caller resizes the prediction), otherwise a ``ValueError`` is
raised.
IoU, F-measures, accuracies and AP are reported in percent.

Example:
    >>> import torch
    >>> m = ConfusionMIoU(num_classes=2)
    >>> m.update(torch.tensor([[[0, 1], [1, 1]]]), torch.tensor([[[0, 1], [0, 255]]]))
    >>> {k: round(v, 2) for k, v in m.compute().items() if k != "per_class_iou"}
    {'mIoU': 50.0, 'pixel_acc': 66.67}
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch
from scipy.sparse import csr_matrix
from scipy.sparse.csgraph import maximum_bipartite_matching

from .losses import IGNORE_INDEX

__all__ = [
    "StreamingMetric",
    "ConfusionMIoU",
    "DepthMetric",
    "NormalsMetric",
    "RegressionMetric",
    "SaliencyMetric",
    "EdgeMetric",
    "thin",
    "match_edge_pixels",
    "edge_image_counts",
    "tolerance_pixels",
]

ArrayLike = torch.Tensor | np.ndarray
Batch = ArrayLike | Sequence[ArrayLike]


# ----------------------------------------------------------------------------------------------------------
# input handling
# ----------------------------------------------------------------------------------------------------------


def _as_tensor(x: Any) -> torch.Tensor:
    if isinstance(x, torch.Tensor):
        return x.detach()
    if isinstance(x, np.ndarray):
        return torch.from_numpy(np.ascontiguousarray(x))
    raise TypeError(f"expected a torch.Tensor, a numpy array or a list of them, got {type(x).__name__}")


def _split_images(x: Batch, channels: int | None, what: str) -> list[torch.Tensor]:
    """Split a batch into per-image tensors: ``[H,W]`` for class maps (``channels=None``), else ``[C,H,W]``.

    Accepted: a batched tensor (``[B,H,W]`` or ``[B,1,H,W]`` for class maps; ``[B,C,H,W]``, and for C=1 also
    ``[B,H,W]``, for dense maps), a single image (``[H,W]``; ``[C,H,W]`` for C>1), or a list/tuple of any of
    these (one entry per image, sizes may differ).
    """
    if isinstance(x, (list, tuple)):
        out: list[torch.Tensor] = []
        for item in x:
            out.extend(_split_images(item, channels, what))
        return out
    t = _as_tensor(x)
    if channels is None:
        if t.ndim == 2:
            return [t]
        if t.ndim == 3:
            return list(t.unbind(0))
        if t.ndim == 4 and t.shape[1] == 1:
            return list(t[:, 0].unbind(0))
        expected = "[B,H,W], [B,1,H,W] or [H,W]"
    else:
        if t.ndim == 2 and channels == 1:
            return [t[None]]
        if t.ndim == 3 and channels == 1:
            return [im[None] for im in t.unbind(0)]
        if t.ndim == 3 and t.shape[0] == channels:
            return [t]
        if t.ndim == 4 and t.shape[1] == channels:
            return list(t.unbind(0))
        expected = f"[B,{channels},H,W] or [{channels},H,W]" + (" or [B,H,W] or [H,W]" if channels == 1 else "")
    raise ValueError(f"{what}: unsupported shape {tuple(t.shape)}; expected {expected}")


def _pairs(
    pred: Batch, target: Batch, pred_channels: int | None, target_channels: int | None, metric: str
) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Per-image (prediction, label) pairs with equal spatial size, the label on the prediction's device."""
    preds = _split_images(pred, pred_channels, f"{metric} prediction")
    targets = _split_images(target, target_channels, f"{metric} target")
    if len(preds) != len(targets):
        raise ValueError(f"{metric}: {len(preds)} predictions but {len(targets)} targets")
    out = []
    for i, (p, t) in enumerate(zip(preds, targets)):
        if tuple(p.shape[-2:]) != tuple(t.shape[-2:]):
            raise ValueError(
                f"{metric}: image {i}: prediction size {tuple(p.shape[-2:])} != target size "
                f"{tuple(t.shape[-2:])}; resize the prediction to the label's size before scoring"
            )
        if p.device.type == "mps":  # no float64 on MPS
            p = p.cpu()
        out.append((p, t.to(p.device)))
    return out


def _pct(x: float) -> float:
    return 100.0 * float(x)


# ----------------------------------------------------------------------------------------------------------
# base class
# ----------------------------------------------------------------------------------------------------------


class StreamingMetric:
    """Base class: a dataset-level metric accumulated batch by batch.

    Subclasses keep their whole accumulated state in ``self._state`` (a dict of NumPy arrays) and declare in
    ``_reduce`` how two states combine: ``"sum"`` (element-wise addition), ``"cat"`` (concatenation along the
    first axis: per-image records) or ``"same"`` (configuration that must be equal, e.g. thresholds).
    """

    _reduce: dict[str, str] = {}

    def __init__(self) -> None:
        self._state: dict[str, np.ndarray] = {}
        self.reset()

    # -- to implement ---------------------------------------------------------------------------------------
    def _initial_state(self) -> dict[str, np.ndarray]:
        raise NotImplementedError

    def update(self, pred: Batch, target: Batch) -> None:
        """Add a batch (or a list of images) to the accumulated state."""
        raise NotImplementedError

    def compute(self) -> dict[str, Any]:
        """Dataset-level results (``dict[str, float | list]``) from everything seen since the last reset."""
        raise NotImplementedError

    # -- generic ---------------------------------------------------------------------------------------------
    def reset(self) -> None:
        """Forget everything seen so far."""
        self._state = self._initial_state()

    def state_dict(self) -> dict[str, np.ndarray]:
        """The accumulated state as NumPy arrays (copies); ``merge`` and ``load_state_dict`` accept it."""
        return {k: np.array(v, copy=True) for k, v in self._state.items()}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Replace the accumulated state by ``state`` (as returned by :meth:`state_dict`; shapes are checked)."""
        self.reset()
        self.merge(state)

    def merge(self, other: StreamingMetric | Mapping[str, Any]) -> StreamingMetric:
        """Add the state of ``other`` (a metric of the same kind, or its ``state_dict``) and return self.

        Merging the metrics of disjoint parts of a dataset gives the metric of the whole dataset.
        """
        if isinstance(other, StreamingMetric):
            if type(other) is not type(self):
                raise TypeError(f"cannot merge {type(other).__name__} into {type(self).__name__}")
            state: Mapping[str, Any] = other._state
        else:
            state = other
        self._check_keys(state)
        new: dict[str, np.ndarray] = {}
        for key, mine in self._state.items():
            theirs = np.asarray(state[key])
            mode = self._reduce[key]
            if mode == "sum":
                if theirs.shape != mine.shape:
                    raise ValueError(f"{type(self).__name__}.merge: {key!r} shapes {mine.shape} != {theirs.shape}")
                new[key] = mine + theirs
            elif mode == "cat":
                if theirs.shape[1:] != mine.shape[1:]:
                    raise ValueError(f"{type(self).__name__}.merge: {key!r} shapes {mine.shape} != {theirs.shape}")
                new[key] = np.concatenate([mine, theirs.astype(mine.dtype)], axis=0)
            elif mode == "same":
                if theirs.shape != mine.shape or not np.allclose(theirs, mine):
                    raise ValueError(f"{type(self).__name__}.merge: configurations differ in {key!r}")
                new[key] = mine
            else:  # pragma: no cover - programming error
                raise RuntimeError(f"unknown reduction {mode!r}")
        self._state = new
        return self

    def sync(self, group: Any = None) -> None:
        """Replace the local state by the merged state of all ranks of ``torch.distributed`` (no-op without).

        Every rank ends with the same state (merged in rank order), so :meth:`compute` agrees everywhere.
        """
        import torch.distributed as dist

        if not (dist.is_available() and dist.is_initialized()):
            return
        world = dist.get_world_size(group)
        if world == 1:
            return
        states: list[Any] = [None] * world
        dist.all_gather_object(states, self.state_dict(), group=group)
        self.reset()
        for s in states:
            self.merge(s)

    def _check_keys(self, state: Mapping[str, Any]) -> None:
        missing = set(self._state) - set(state)
        if missing:
            raise KeyError(f"{type(self).__name__}: state lacks {sorted(missing)}")

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


# ----------------------------------------------------------------------------------------------------------
# semantic segmentation / human parts
# ----------------------------------------------------------------------------------------------------------


class ConfusionMIoU(StreamingMetric):
    """Mean IoU from a dataset-pooled confusion matrix (semseg and human parts, SPEC §5).

    ``confusion[g, p]`` counts pixels of ground-truth class ``g`` predicted as ``p``; label pixels equal to
    ``ignore_index`` (or outside ``[0, num_classes)``) are skipped. IoU_c = TP / (TP + FP + FN).

    Absent classes: a class that occurs neither in the ground truth nor in the prediction over the whole
    dataset has an undefined IoU (0/0). It is reported as NaN in ``per_class_iou`` and left out of the mean
    (with the full NYUD/PASCAL validation sets every class occurs, so this only matters on small subsets).

    Results: ``mIoU`` (%), ``pixel_acc`` (%), ``per_class_iou`` (list of %, NaN for absent classes).
    ``pred`` may also be raw logits ``[B,num_classes,H,W]`` (float); they are arg-maxed.
    """

    _reduce = {"confusion": "sum"}

    def __init__(self, num_classes: int, ignore_index: int = IGNORE_INDEX) -> None:
        if num_classes < 1:
            raise ValueError(f"num_classes must be >= 1, got {num_classes}")
        self.num_classes = int(num_classes)
        self.ignore_index = ignore_index
        super().__init__()

    def _initial_state(self) -> dict[str, np.ndarray]:
        return {"confusion": np.zeros((self.num_classes, self.num_classes), dtype=np.int64)}

    def update(self, pred: Batch, target: Batch) -> None:
        """Add class-id predictions ``[B,H,W]`` and labels ``[B,H,W]`` (or lists of per-image maps)."""
        if (
            isinstance(pred, torch.Tensor)
            and pred.is_floating_point()
            and pred.ndim == 4
            and pred.shape[1] == self.num_classes > 1
        ):
            pred = pred.argmax(dim=1)
        c = self.num_classes
        total: torch.Tensor | None = None
        for p, t in _pairs(pred, target, None, None, type(self).__name__):
            if p.is_floating_point():
                if not torch.equal(p, p.round()):
                    raise ValueError("ConfusionMIoU: prediction must hold class ids, got non-integer floats")
            p = p.long().reshape(-1)
            t = t.long().reshape(-1)
            keep = (t != self.ignore_index) & (t >= 0) & (t < c)
            p, t = p[keep], t[keep]
            if p.numel() and (int(p.min()) < 0 or int(p.max()) >= c):
                raise ValueError(
                    f"ConfusionMIoU: predicted class ids must lie in [0, {c}), got [{int(p.min())}, {int(p.max())}]"
                )
            counts = torch.bincount(t * c + p, minlength=c * c)
            total = counts if total is None else total + counts
        if total is not None:
            self._state["confusion"] += total.cpu().numpy().reshape(c, c)

    def compute(self) -> dict[str, Any]:
        """``mIoU``, ``pixel_acc`` and ``per_class_iou`` in percent (NaN where undefined)."""
        conf = self._state["confusion"].astype(np.float64)
        tp = np.diag(conf)
        union = conf.sum(0) + conf.sum(1) - tp
        with np.errstate(invalid="ignore", divide="ignore"):
            iou = np.where(union > 0, tp / np.maximum(union, 1), np.nan)
        present = ~np.isnan(iou)
        miou = float(iou[present].mean()) if present.any() else float("nan")
        total = conf.sum()
        acc = float(tp.sum() / total) if total > 0 else float("nan")
        return {"mIoU": _pct(miou), "pixel_acc": _pct(acc), "per_class_iou": [_pct(v) for v in iou]}

    def __repr__(self) -> str:
        return f"ConfusionMIoU(num_classes={self.num_classes})"


# ----------------------------------------------------------------------------------------------------------
# depth
# ----------------------------------------------------------------------------------------------------------


class DepthMetric(StreamingMetric):
    """Depth errors pooled over all valid pixels of the dataset (label > 0), SPEC §5.

    With n valid pixels over the whole dataset, prediction p and label g (metres):

    - ``rmse`` = sqrt(Σ (p − g)² / n)  (the Δm metric; pooled, *not* a mean of per-image RMSEs);
    - ``log_rmse`` = sqrt(Σ (ln max(p, eps) − ln g)² / n), natural log, the prediction clamped to ``eps``
      (default 1e-3 m) so a zero prediction gives a large but finite error;
    - ``abs_rel`` = Σ |p − g| / g / n;
    - ``delta1`` / ``delta2`` / ``delta3`` = % of pixels with max(p'/g, g/p') < 1.25, 1.25², 1.25³
      (p' = the clamped prediction).

    With no valid pixel, every result is NaN.
    """

    _reduce = {"n": "sum", "sq": "sum", "log_sq": "sum", "abs_rel": "sum", "delta": "sum"}

    def __init__(self, eps: float = 1e-3) -> None:
        if eps <= 0:
            raise ValueError("eps must be > 0")
        self.eps = float(eps)
        super().__init__()

    def _initial_state(self) -> dict[str, np.ndarray]:
        return {
            "n": np.zeros((), np.int64),
            "sq": np.zeros((), np.float64),
            "log_sq": np.zeros((), np.float64),
            "abs_rel": np.zeros((), np.float64),
            "delta": np.zeros(3, np.int64),
        }

    def update(self, pred: Batch, target: Batch) -> None:
        """Add depth predictions ``[B,1,H,W]`` and labels ``[B,1,H,W]`` (or lists of per-image maps)."""
        acc = torch.zeros(4, dtype=torch.float64)
        delta = torch.zeros(3, dtype=torch.int64)
        n = 0
        for p, g in _pairs(pred, target, 1, 1, type(self).__name__):
            g = g.double()
            valid = (g > 0) & torch.isfinite(g)
            p, g = p.double()[valid], g[valid]
            if g.numel() == 0:
                continue
            err = p - g
            pc = p.clamp_min(self.eps)
            ratio = torch.maximum(pc / g, g / pc)
            stats = torch.stack([(err * err).sum(), ((pc.log() - g.log()) ** 2).sum(), (err.abs() / g).sum()])
            acc[:3] += stats.cpu()
            delta += torch.stack([(ratio < 1.25**k).sum() for k in (1, 2, 3)]).cpu()
            n += int(g.numel())
        self._state["n"] = self._state["n"] + n
        self._state["sq"] = self._state["sq"] + float(acc[0])
        self._state["log_sq"] = self._state["log_sq"] + float(acc[1])
        self._state["abs_rel"] = self._state["abs_rel"] + float(acc[2])
        self._state["delta"] = self._state["delta"] + delta.numpy()

    def compute(self) -> dict[str, Any]:
        """``rmse``, ``log_rmse``, ``abs_rel`` (metres / ratios) and ``delta1..3`` (%)."""
        n = int(self._state["n"])
        if n == 0:
            nan = float("nan")
            return {"rmse": nan, "log_rmse": nan, "abs_rel": nan, "delta1": nan, "delta2": nan, "delta3": nan}
        d = self._state["delta"] / n
        return {
            "rmse": math.sqrt(float(self._state["sq"]) / n),
            "log_rmse": math.sqrt(float(self._state["log_sq"]) / n),
            "abs_rel": float(self._state["abs_rel"]) / n,
            "delta1": _pct(d[0]),
            "delta2": _pct(d[1]),
            "delta3": _pct(d[2]),
        }

    def __repr__(self) -> str:
        return f"DepthMetric(eps={self.eps})"


# ----------------------------------------------------------------------------------------------------------
# surface normals
# ----------------------------------------------------------------------------------------------------------


class RegressionMetric(StreamingMetric):
    """Errors of a dense regression (any number of channels) pooled over every finite label value.

    With n finite label values over the dataset: ``rmse`` = sqrt(Σ (p − g)² / n), ``mae`` = Σ |p − g| / n.
    NaN in a label marks an invalid value; with no valid value both results are NaN.
    """

    _reduce = {"n": "sum", "sq": "sum", "abs": "sum"}

    def __init__(self, channels: int | None = None) -> None:
        self.channels = None if channels is None else int(channels)
        super().__init__()

    def _initial_state(self) -> dict[str, np.ndarray]:
        return {"n": np.zeros((), np.int64), "sq": np.zeros((), np.float64), "abs": np.zeros((), np.float64)}

    def update(self, pred: Batch, target: Batch) -> None:
        """Add predictions ``[B,C,H,W]`` and labels ``[B,C,H,W]`` (NaN = invalid), or lists of per-image maps."""
        for p, g in _pairs(pred, target, self.channels, self.channels, type(self).__name__):
            g = g.double()
            valid = torch.isfinite(g)
            err = p.double()[valid] - g[valid]
            self._state["n"] = self._state["n"] + int(err.numel())
            self._state["sq"] = self._state["sq"] + float((err * err).sum())
            self._state["abs"] = self._state["abs"] + float(err.abs().sum())

    def compute(self) -> dict[str, Any]:
        """``rmse`` and ``mae`` (label units); NaN without valid values."""
        n = int(self._state["n"])
        if n == 0:
            return {"rmse": float("nan"), "mae": float("nan")}
        return {"rmse": math.sqrt(float(self._state["sq"]) / n), "mae": float(self._state["abs"]) / n}


class NormalsMetric(StreamingMetric):
    """Angular error (degrees) between predicted and ground-truth normals, pooled over valid pixels (SPEC §5).

    A label pixel is valid when its vector is not all-zero, finite, and has no component equal to 255 (an
    ignore marker, should a loader ever use one). The angle is ``atan2(|p × g|, p · g)``, which equals
    ``acos`` of the cosine between the unit vectors but is accurate for small angles and needs no
    normalisation; a zero prediction vector counts as 90°.

    Results: ``mean``, ``median``, ``rmse`` (= sqrt of the mean squared angle) in degrees and ``11.25``,
    ``22.5``, ``30`` = % of pixels with an angle below these values (exact counts).

    Median: the dataset has too many pixels to keep them all (654 NYUD images × 307,200), so angles are
    counted in a fine histogram (``median_bin_deg`` = 0.001° bins over [0°, 180°]) and the median is read
    from it as ``np.median`` defines it (the mean of the two middle angles for an even count), each angle placed
    inside its bin: error ≤ ``median_bin_deg``.
    """

    _reduce = {"n": "sum", "sum": "sum", "sum_sq": "sum", "below": "sum", "hist": "sum"}
    THRESHOLDS = (11.25, 22.5, 30.0)

    def __init__(self, median_bin_deg: float = 0.001) -> None:
        if median_bin_deg <= 0:
            raise ValueError("median_bin_deg must be > 0")
        self.median_bin_deg = float(median_bin_deg)
        self.num_bins = int(math.ceil(180.0 / self.median_bin_deg))
        super().__init__()

    def _initial_state(self) -> dict[str, np.ndarray]:
        return {
            "n": np.zeros((), np.int64),
            "sum": np.zeros((), np.float64),
            "sum_sq": np.zeros((), np.float64),
            "below": np.zeros(len(self.THRESHOLDS), np.int64),
            "hist": np.zeros(self.num_bins, np.int64),
        }

    @staticmethod
    def angles(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """Angles in degrees (float64) between ``pred`` and ``target`` vectors ([3, ...], along dim 0)."""
        p, g = pred.double(), target.double()
        dot = (p * g).sum(0)
        cross = torch.linalg.cross(p, g, dim=0).norm(dim=0)
        ang = torch.rad2deg(torch.atan2(cross, dot))
        return torch.where(p.norm(dim=0) > 0, ang, torch.full_like(ang, 90.0))

    def update(self, pred: Batch, target: Batch) -> None:
        """Add unit-normal predictions ``[B,3,H,W]`` and labels ``[B,3,H,W]`` (or lists of per-image maps)."""
        for p, g in _pairs(pred, target, 3, 3, type(self).__name__):
            g = g.double()
            valid = (g.abs().sum(0) > 0) & torch.isfinite(g).all(0) & ~(g == IGNORE_INDEX).any(0)
            if not bool(valid.any()):
                continue
            ang = self.angles(p[:, valid], g[:, valid])
            idx = (ang / self.median_bin_deg).long().clamp_(0, self.num_bins - 1)
            hist = torch.bincount(idx, minlength=self.num_bins)
            below = torch.stack([(ang < t).sum() for t in self.THRESHOLDS])
            sums = torch.stack([ang.sum(), (ang * ang).sum()]).cpu()
            self._state["n"] = self._state["n"] + int(ang.numel())
            self._state["sum"] = self._state["sum"] + float(sums[0])
            self._state["sum_sq"] = self._state["sum_sq"] + float(sums[1])
            self._state["below"] = self._state["below"] + below.cpu().numpy()
            self._state["hist"] = self._state["hist"] + hist.cpu().numpy()

    def _median(self) -> float:
        # np.median's definition (the mean of the two middle angles when n is even), each order statistic read
        # inside its bin (the bin's count spread evenly over it): within ``median_bin_deg`` of the exact value
        hist = self._state["hist"]
        n = int(hist.sum())
        cum = np.cumsum(hist)

        def order_statistic(j: int) -> float:  # the j-th smallest angle, 1-based
            b = int(np.searchsorted(cum, j, side="left"))
            before = float(cum[b - 1]) if b > 0 else 0.0
            return (b + (j - before - 0.5) / float(hist[b])) * self.median_bin_deg

        if n % 2:
            return order_statistic((n + 1) // 2)
        return 0.5 * (order_statistic(n // 2) + order_statistic(n // 2 + 1))

    def compute(self) -> dict[str, Any]:
        """``mean``, ``median``, ``rmse`` (degrees) and ``11.25``, ``22.5``, ``30`` (%); NaN without data."""
        n = int(self._state["n"])
        if n == 0:
            nan = float("nan")
            return {"mean": nan, "median": nan, "rmse": nan, "11.25": nan, "22.5": nan, "30": nan}
        below = self._state["below"] / n
        return {
            "mean": float(self._state["sum"]) / n,
            "median": self._median(),
            "rmse": math.sqrt(float(self._state["sum_sq"]) / n),
            "11.25": _pct(below[0]),
            "22.5": _pct(below[1]),
            "30": _pct(below[2]),
        }

    def __repr__(self) -> str:
        return f"NormalsMetric(median_bin_deg={self.median_bin_deg})"


# ----------------------------------------------------------------------------------------------------------
# saliency
# ----------------------------------------------------------------------------------------------------------


def _safe_ratio(num: torch.Tensor, den: torch.Tensor, both_empty: torch.Tensor) -> torch.Tensor:
    """num / den; where den == 0 the value is 1 if prediction and label are both empty, else 0."""
    return torch.where(den > 0, num / den.clamp_min(1), both_empty.to(num.dtype))


class SaliencyMetric(StreamingMetric):
    """Saliency: max-over-thresholds mIoU and maxF (SPEC §5).

    For each image and each threshold t in ``thresholds`` (default the 15 values 0.20, 0.25, …, 0.90) the
    prediction is binarised as ``p >= t`` and compared with the label (salient = label > 0.5; pixels equal to
    255 ignored): IoU = TP/(TP+FP+FN), precision P = TP/(TP+FP), recall R = TP/(TP+FN). Each is averaged
    over the images (images whose pixels are all ignored are skipped).

    - ``mIoU`` = max over t of the mean IoU (the Δm metric);
    - ``maxF`` = max over t of F(mean P, mean R) with F = (1 + β²)·P·R / (β²·P + R).

    β² = 0.3 by default (``beta2``), the convention of the salient-object literature, which weighs precision
    more than recall; the reference implementation's evaluation code uses β² = 1 (plain F1). Both are
    reported: ``maxF`` with ``beta2`` and ``maxF1`` with β² = 1 (SPEC §5).

    Degenerate images (the reference's conventions): precision and recall whose denominator is 0 count 0,
    so an image with no salient pixel contributes precision 0 and recall 0 even when the prediction is empty
    too; the IoU of an empty prediction on an empty label is 1 (perfect agreement), any other 0/0 IoU is 0.

    Results (percent): ``mIoU``, ``maxF``, ``maxF1``, plus ``beta2``, ``threshold_mIoU``, ``threshold_maxF``,
    ``threshold_maxF1`` (the thresholds achieving them).
    """

    _reduce = {"n_images": "sum", "iou": "sum", "precision": "sum", "recall": "sum", "thresholds": "same"}

    def __init__(self, thresholds: Sequence[float] | None = None, beta2: float = 0.3) -> None:
        thr = np.linspace(0.2, 0.9, 15) if thresholds is None else np.asarray(thresholds, np.float64)
        if thr.ndim != 1 or thr.size == 0:
            raise ValueError("thresholds must be a non-empty 1-D sequence")
        if beta2 <= 0:
            raise ValueError("beta2 must be > 0")
        self.thresholds = thr.astype(np.float64)
        self.beta2 = float(beta2)
        super().__init__()

    def _initial_state(self) -> dict[str, np.ndarray]:
        k = self.thresholds.size
        return {
            "n_images": np.zeros((), np.int64),
            "iou": np.zeros(k, np.float64),
            "precision": np.zeros(k, np.float64),
            "recall": np.zeros(k, np.float64),
            "thresholds": self.thresholds.copy(),
        }

    def update(self, pred: Batch, target: Batch) -> None:
        """Add saliency probabilities ``[B,1,H,W]`` and labels ``[B,1,H,W]`` (or lists of per-image maps)."""
        for p, g in _pairs(pred, target, 1, 1, type(self).__name__):
            valid = g[0] != IGNORE_INDEX
            if not bool(valid.any()):
                continue
            prob = p[0][valid].double()
            gt = g[0][valid] > 0.5
            thr = torch.as_tensor(self.thresholds, dtype=torch.float64, device=prob.device)
            pb = prob[None, :] >= thr[:, None]
            tp = (pb & gt[None, :]).sum(1).double()
            n_pred = pb.sum(1).double()
            n_gt = gt.sum().double().expand_as(tp)
            both_empty = (n_pred == 0) & (n_gt == 0)
            iou = _safe_ratio(tp, n_pred + n_gt - tp, both_empty)
            never = torch.zeros_like(both_empty)
            prec = _safe_ratio(tp, n_pred, never)
            rec = _safe_ratio(tp, n_gt, never)
            self._state["n_images"] = self._state["n_images"] + 1
            self._state["iou"] = self._state["iou"] + iou.cpu().numpy()
            self._state["precision"] = self._state["precision"] + prec.cpu().numpy()
            self._state["recall"] = self._state["recall"] + rec.cpu().numpy()

    def compute(self) -> dict[str, Any]:
        """``mIoU`` and ``maxF`` (%), ``beta2``, ``threshold_mIoU``, ``threshold_maxF``; NaN without data."""
        n = int(self._state["n_images"])
        if n == 0:
            nan = float("nan")
            return {
                "mIoU": nan,
                "maxF": nan,
                "maxF1": nan,
                "beta2": self.beta2,
                "threshold_mIoU": nan,
                "threshold_maxF": nan,
                "threshold_maxF1": nan,
            }
        iou = self._state["iou"] / n
        p = self._state["precision"] / n
        r = self._state["recall"] / n

        def f_beta(beta2: float) -> np.ndarray:
            den = beta2 * p + r
            return np.where(den > 0, (1 + beta2) * p * r / np.where(den > 0, den, 1.0), 0.0)

        f, f1 = f_beta(self.beta2), f_beta(1.0)
        ki, kf, k1 = int(np.argmax(iou)), int(np.argmax(f)), int(np.argmax(f1))
        return {
            "mIoU": _pct(iou[ki]),
            "maxF": _pct(f[kf]),
            "maxF1": _pct(f1[k1]),
            "beta2": self.beta2,
            "threshold_mIoU": float(self.thresholds[ki]),
            "threshold_maxF": float(self.thresholds[kf]),
            "threshold_maxF1": float(self.thresholds[k1]),
        }

    def __repr__(self) -> str:
        return f"SaliencyMetric(thresholds={self.thresholds.size}, beta2={self.beta2})"


# ----------------------------------------------------------------------------------------------------------
# edges: thinning, correspondence, BSDS-style ODS / OIS / AP
# ----------------------------------------------------------------------------------------------------------


def _thinning_luts() -> tuple[np.ndarray, np.ndarray]:
    """Deletion tables of the two sub-iterations of the Guo-Hall thinning (algorithm "A1" in Lam, Lee & Suen,
    "Thinning methodologies - a comprehensive survey", PAMI 1992), indexed by the 8-neighbour code.

    Bit i of the code is neighbour x_{i+1}: x1 = east, then counter-clockwise (x2 = north-east, x3 = north,
    x4 = north-west, x5 = west, x6 = south-west, x7 = south, x8 = south-east). A foreground pixel is deleted
    when
        G1: X_H = Σ_{i=1..4} [x_{2i-1} = 0 and (x_{2i} = 1 or x_{2i+1} = 1)] = 1   (x9 = x1),
        G2: 2 <= min(n1, n2) <= 3 with n1 = Σ_k (x_{2k-1} or x_{2k}), n2 = Σ_k (x_{2k} or x_{2k+1}),
        G3 (first sub-iteration):  (x2 or x3 or not x8) and x1 = 0,
        G3' (second sub-iteration): (x6 or x7 or not x4) and x5 = 0.
    """
    lut1 = np.zeros(256, dtype=bool)
    lut2 = np.zeros(256, dtype=bool)
    for code in range(256):
        x = [(code >> i) & 1 for i in range(8)] + [code & 1]  # x[0..7] = x1..x8, x[8] = x9 = x1
        xh = sum(1 for i in range(4) if x[2 * i] == 0 and (x[2 * i + 1] or x[2 * i + 2]))
        n1 = sum(1 for k in range(4) if x[2 * k] or x[2 * k + 1])
        n2 = sum(1 for k in range(4) if x[2 * k + 1] or x[2 * k + 2])
        g12 = xh == 1 and 2 <= min(n1, n2) <= 3
        lut1[code] = g12 and not ((x[1] or x[2] or not x[7]) and x[0])
        lut2[code] = g12 and not ((x[5] or x[6] or not x[3]) and x[4])
    return lut1, lut2


_THIN_LUTS = _thinning_luts()


def thin(mask: ArrayLike) -> np.ndarray:
    """Morphological thinning of a binary map to 1-pixel-wide, 8-connected lines (iterated to convergence).

    Parallel Guo-Hall thinning (the algorithm MATLAB's ``bwmorph(..., 'thin', Inf)`` documents, used by the
    BSDS benchmark), implemented with an active front: after the first pass only the pixels whose 3×3
    neighbourhood changed since they were last examined are re-examined, so the cost is proportional to the
    number of removed pixels plus the boundary length, not to (iterations × image size). Isolated pixels and
    line end points are kept; objects keep their topology.
    """
    m = np.asarray(mask.cpu().numpy() if isinstance(mask, torch.Tensor) else mask).astype(bool)
    if m.ndim != 2:
        raise ValueError(f"thin expects a 2-D map, got shape {m.shape}")
    buf = np.zeros((m.shape[0] + 2, m.shape[1] + 2), dtype=np.uint8)
    buf[1:-1, 1:-1] = m
    _thin_padded(buf)
    return buf[1:-1, 1:-1].astype(bool)


# neighbour x_{i+1} of the thinning conditions, as (dy, dx): E, NE, N, NW, W, SW, S, SE
_NEIGHBOURS = ((0, 1), (-1, 1), (-1, 0), (-1, -1), (0, -1), (1, -1), (1, 0), (1, 1))


def _thin_padded(buf: np.ndarray) -> None:
    """Thin, in place, C-contiguous uint8 {0,1} maps ``[..., H+2, W+2]`` whose one-pixel frame is 0.

    Leading dimensions hold independent maps (e.g. one per threshold): they are thinned together, which
    shares the per-iteration overhead; the zero frame keeps every neighbour look-up inside its own map.
    The 8-neighbour code of every pixel is kept up to date as pixels are deleted, so examining a pixel
    costs one look-up.
    """
    wp = buf.shape[-1]
    flat = buf.reshape(-1)
    if flat.size >= np.iinfo(np.int32).max:
        raise ValueError("_thin_padded: map too large")
    offs = np.array([dy * wp + dx for dy, dx in _NEIGHBOURS], dtype=np.int32)
    # 8-neighbour codes, needed (and kept up to date) for foreground pixels only
    fg = np.flatnonzero(flat).astype(np.int32)
    codes_flat = np.zeros(flat.size, dtype=np.uint8)
    code_fg = np.zeros(fg.size, dtype=np.uint8)
    for i in range(8):
        code_fg |= flat[fg + offs[i]] << np.uint8(i)
    codes_flat[fg] = code_fg
    # only pixels with a background 4-neighbour (bits 0, 2, 4, 6) can be deleted (G1 needs some x_odd = 0)
    start = fg[(code_fg & np.uint8(0x55)) != 0x55]
    pending = [start, start]
    stamp = np.empty(flat.size, dtype=np.int32)  # scratch for sort-free de-duplication
    clear = [np.uint8(0xFF ^ (1 << ((i + 4) % 8))) for i in range(8)]  # the deleted pixel's bit, seen from i

    def dedup(idx: np.ndarray) -> np.ndarray:
        order = np.arange(idx.size, dtype=np.int32)
        stamp[idx] = order
        return idx[stamp[idx] == order]

    sub = 0
    while pending[0].size or pending[1].size:
        cand = pending[sub]
        pending[sub] = np.empty(0, dtype=np.int32)
        if cand.size:
            cand = cand[flat[cand] == 1]
            dele = cand[_THIN_LUTS[sub][codes_flat[cand]]]
            if dele.size:
                flat[dele] = 0
                around = []
                for i in range(8):
                    nb = dele + offs[i]
                    codes_flat[nb] &= clear[i]
                    around.append(nb)
                touched = np.concatenate(around)
                touched = dedup(touched[flat[touched] == 1])
                pending[sub] = touched
                other = pending[1 - sub]
                pending[1 - sub] = dedup(np.concatenate([other, touched])) if other.size else touched
        sub ^= 1


# thresholds are thinned together in batches of at most this many pixels (keeps the buffers cache-friendly)
_EDGE_BATCH_PIXELS = 2_200_000
# and matched together while the joint graph has at most this many predicted pixels
_EDGE_MATCH_ROWS = 20_000


def tolerance_pixels(max_dist_ratio: float, height: int, width: int) -> float:
    """The matching radius in pixels as BSDS computes it: ``max_dist_ratio * sqrt(w*w + h*h)`` in double
    precision (``math.hypot`` can differ in the last bit, which decides pixels exactly at the radius)."""
    return max_dist_ratio * math.sqrt(float(width * width + height * height))


def _disk_offsets(radius: float) -> np.ndarray:
    r = int(math.floor(radius))
    dy, dx = np.mgrid[-r : r + 1, -r : r + 1]
    keep = dy * dy + dx * dx <= radius * radius  # BSDS: d^2 <= maxDist^2, no slack
    return np.stack([dy[keep], dx[keep]], axis=1)


class _EdgeGT:
    """Per-image ground-truth structures reused across thresholds.

    ``graph`` is a CSR matrix [H·W, n_gt] whose row i lists the GT pixels within ``max_dist`` of pixel i
    (built once from the GT side: n_gt × disk-size entries); ``near`` flags the pixels with a non-empty row.
    """

    def __init__(self, gt_edges: np.ndarray, max_dist: float) -> None:
        h, w = gt_edges.shape
        self.max_dist = max_dist
        ys, xs = np.nonzero(gt_edges)
        self.n = int(ys.size)
        offs = _disk_offsets(max_dist)
        py = (ys[:, None] + offs[None, :, 0]).ravel()
        px = (xs[:, None] + offs[None, :, 1]).ravel()
        gid = np.repeat(np.arange(self.n), offs.shape[0])
        inside = (py >= 0) & (py < h) & (px >= 0) & (px < w)
        rows = py[inside] * w + px[inside]
        cols = gid[inside]
        self.graph = csr_matrix((np.ones(rows.size, dtype=np.int8), (rows, cols)), shape=(h * w, max(self.n, 1)))
        self.near = np.diff(self.graph.indptr) > 0


def match_edge_pixels(pred_edges: ArrayLike, gt_edges: ArrayLike, max_dist: float) -> int:
    """Size of a maximum one-to-one matching between predicted and GT edge pixels at distance <= ``max_dist``.

    Candidate pairs are all (predicted, GT) pixel pairs within ``max_dist`` (Euclidean, in pixels), found by
    looking up the integer offsets of a disk of that radius; the matching is a maximum-cardinality bipartite
    matching (Hopcroft-Karp, ``scipy.sparse.csgraph.maximum_bipartite_matching``). It is the number of
    matched GT pixels and, equally, of matched predicted pixels.
    """
    pred = np.asarray(pred_edges, dtype=bool)
    gt = np.asarray(gt_edges, dtype=bool)
    if pred.shape != gt.shape or pred.ndim != 2:
        raise ValueError(f"match_edge_pixels: expected two [H,W] maps of one size, got {pred.shape}, {gt.shape}")
    return _match(np.flatnonzero(pred), _EdgeGT(gt, max_dist))


def _match(pred_flat: np.ndarray, gt: _EdgeGT) -> int:
    """Matching size for predicted pixels given by their flat indices."""
    return int(_match_batched(np.zeros(pred_flat.size, np.int64), pred_flat, gt, 1)[0])


def _match_batched(group: np.ndarray, pred_flat: np.ndarray, gt: _EdgeGT, n_groups: int) -> np.ndarray:
    """Matching sizes of ``n_groups`` independent predictions (e.g. thresholds) against one GT, in one call.

    ``pred_flat[i]`` is a predicted pixel (flat index) of prediction ``group[i]``. The bipartite graphs of the
    groups are put side by side (block-diagonal, GT pixels copied per group), so a single maximum matching
    solves them all; the matched rows are then counted per group.
    """
    out = np.zeros(n_groups, np.int64)
    if gt.n == 0 or pred_flat.size == 0:
        return out
    near = gt.near[pred_flat]
    rows, group = pred_flat[near], group[near]
    if rows.size == 0:
        return out
    sub = gt.graph[rows]
    cols = sub.indices.astype(np.int64) + np.repeat(group * gt.n, np.diff(sub.indptr))
    graph = csr_matrix((sub.data, cols, sub.indptr), shape=(rows.size, n_groups * gt.n))
    matched = maximum_bipartite_matching(graph, perm_type="column")
    return np.bincount(group[matched >= 0], minlength=n_groups).astype(np.int64)


def edge_image_counts(
    prob: ArrayLike,
    target: ArrayLike,
    thresholds: Sequence[float] | np.ndarray,
    max_dist_ratio: float = 0.0075,
    thin_pred: bool = True,
    thin_gt: bool = False,
) -> dict[str, np.ndarray]:
    """BSDS-style counts of one image at every threshold.

    Args:
        prob: edge probabilities ``[H,W]``.
        target: edge label ``[H,W]``: > 0.5 = edge, 255 = ignore.
        thresholds: increasing thresholds; the prediction at t is ``thin(prob >= t)``.
        max_dist_ratio: matching tolerance as a fraction of the image diagonal (BSDS: 0.0075).
        thin_pred: thin the binarised prediction (BSDS does); ``thin_gt``: also thin the label.

    Ignored label pixels are removed from both sides: they are never GT edges, and predicted pixels on them
    (after thinning) are dropped.

    Returns:
        ``cntR`` [K] matched GT pixels, ``sumR`` [K] GT pixels, ``cntP`` [K] matched predicted pixels,
        ``sumP`` [K] predicted pixels (int64). With a single label per image ``cntR == cntP``.

    Speed: thresholds at which the binary map does not change reuse the previous counts, the matching only
    looks at predicted pixels within the tolerance of some GT pixel, and thinning works on an active front.
    """
    p = np.asarray(prob.cpu().numpy() if isinstance(prob, torch.Tensor) else prob, dtype=np.float64)
    t = np.asarray(target.cpu().numpy() if isinstance(target, torch.Tensor) else target, dtype=np.float64)
    if p.ndim != 2 or p.shape != t.shape:
        raise ValueError(f"edge_image_counts: expected two [H,W] maps of one size, got {p.shape} and {t.shape}")
    thr = np.asarray(thresholds, dtype=np.float64)
    if thr.ndim != 1 or np.any(np.diff(thr) <= 0):
        raise ValueError("thresholds must be a strictly increasing 1-D sequence")
    valid = t != IGNORE_INDEX
    gt_edges = (t > 0.5) & valid
    if thin_gt:
        gt_edges = thin(gt_edges) & valid
    h, w = p.shape
    gt = _EdgeGT(gt_edges, tolerance_pixels(max_dist_ratio, h, w))
    valid_flat = valid.ravel()
    k_total = thr.size
    # level = number of thresholds <= p, so "p >= thr[k]" <=> "level > k"; a frame of 0 around the map
    # keeps the thinning's neighbour look-ups in bounds
    level = np.zeros((h + 2, w + 2), dtype=np.int16 if k_total < 32767 else np.int64)
    level[1:-1, 1:-1] = np.searchsorted(thr, np.nan_to_num(p, nan=-np.inf), side="right")
    changes = np.zeros(k_total + 1, dtype=bool)
    changes[np.unique(level)] = True
    changes[0] = True
    # only thresholds where the binary map changes are evaluated; the others repeat the previous counts
    todo = np.flatnonzero(changes[:k_total])
    cnt = np.zeros(k_total, np.int64)
    sum_p = np.zeros(k_total, np.int64)
    plane = (h + 2) * (w + 2)
    per_batch = max(1, _EDGE_BATCH_PIXELS // plane)
    for start in range(0, todo.size, per_batch):
        ks = todo[start : start + per_batch]
        buf = (level[None] > ks.astype(level.dtype)[:, None, None]).view(np.uint8)
        if thin_pred:
            _thin_padded(buf)
        idx = np.flatnonzero(buf)
        group, rem = np.divmod(idx, plane)
        yy, xx = np.divmod(rem, w + 2)
        flat = (yy - 1) * w + (xx - 1)
        keep = valid_flat[flat]
        group, flat = group[keep], flat[keep]
        sum_p[ks] = np.bincount(group, minlength=ks.size)
        # match several thresholds per call while the joint graph stays small (Hopcroft-Karp's phase count
        # is set by the hardest block, so one huge block-diagonal graph would be slower)
        bounds = np.searchsorted(group, np.arange(ks.size + 1))
        j0 = 0
        while j0 < ks.size:
            j1 = j0 + 1
            while j1 < ks.size and bounds[j1 + 1] - bounds[j0] <= _EDGE_MATCH_ROWS:
                j1 += 1
            lo, hi = bounds[j0], bounds[j1]
            cnt[ks[j0:j1]] = _match_batched(group[lo:hi] - j0, flat[lo:hi], gt, j1 - j0)
            j0 = j1
    for k in range(1, k_total):
        if not changes[k]:
            cnt[k], sum_p[k] = cnt[k - 1], sum_p[k - 1]
    return {"cntR": cnt, "sumR": np.full(k_total, gt.n, np.int64), "cntP": cnt.copy(), "sumP": sum_p}


def _ratio(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    """num / den with 0/0 := 0 (BSDS: R = cntR / (sumR + (sumR == 0)), same for P)."""
    num = np.asarray(num, np.float64)
    den = np.asarray(den, np.float64)
    return num / np.where(den == 0, 1.0, den)


def _fmeasure(p: np.ndarray, r: np.ndarray) -> np.ndarray:
    s = p + r
    return np.where(s > 0, 2 * p * r / np.where(s > 0, s, 1.0), 0.0)


class EdgeMetric(StreamingMetric):
    """BSDS-style edge detection metrics ``odsF``, ``oisF``, ``AP`` in percent (SPEC §5), pure NumPy/SciPy.

    For every image and threshold t (default 99: ``np.linspace(0.01, 0.99, 99)``; pass an int n for n evenly
    spaced thresholds 1/(n+1) … n/(n+1), or a sequence) the probability map is binarised (``p >= t``) and
    thinned to 1-pixel lines (:func:`thin`); predicted edge pixels are matched one-to-one to GT edge pixels
    within ``max_dist_ratio`` × image diagonal (0.0075, BSDS) by a maximum-cardinality bipartite matching
    (:func:`match_edge_pixels`). Per image and threshold we keep cntR (matched GT pixels), sumR (GT pixels),
    cntP (matched predicted pixels) and sumP (predicted pixels). Label pixels equal to 255 are ignored on both
    sides. (BSDS's own correspondence solves a min-cost assignment with outlier costs, which in practice also
    matches as many pixels as possible; a maximum-cardinality matching is the usual pure-Python substitute.)

    - ODS: R_t = Σ cntR / Σ sumR, P_t = Σ cntP / Σ sumP over the dataset, F_t = 2PR/(P+R);
      ``odsF`` = max over t (no interpolation between thresholds). ``odsP``, ``odsR``, ``ods_threshold`` too.
    - OIS: for each image the threshold with the best per-image F (ties broken towards the lowest threshold,
      the BSDS/seism rule: it matters for images without GT edges, whose F is 0 at every threshold and which
      therefore add the false positives of the lowest threshold); the counts at those thresholds are pooled
      into one R, P and F = ``oisF``.
    - ``AP``: the average precision the reference implementation reports (seism's "general AP", the BSDS
      benchmark's AP): one point (R_t, P_t) per distinct recall value (for equal recalls, the lowest threshold's,
      as MATLAB's ``unique`` keeps the first occurrence), precision interpolated linearly at R = 0, 0.01, …, 1;
      grid points outside the curve's recall range are dropped and the rest summed and divided by 100 (so a
      curve covering every grid point at P = 1 gives 101 %; this is the published definition). Fewer than two
      distinct recalls give 0.
    - ``AP_area``: the area under the same pooled curve: points sorted by recall, joined linearly (trapezoid
      rule), extended horizontally from its lowest-recall point down to R = 0 and not beyond its highest recall;
      thresholds with no predicted pixel (undefined precision) are left out.

    Empty cases (BSDS convention): 0/0 ratios are 0, i.e. R = cntR / max(sumR, 1) and P = cntP / max(sumP, 1),
    and F = 0 when P + R = 0. An image without GT edges thus only adds its predicted pixels (false positives)
    to sumP; a dataset without any GT edge has odsF = oisF = AP = 0; nothing crashes. With no image at all
    the results are NaN.

    Speed: see :func:`edge_image_counts`; pass e.g. ``thresholds=19`` for fast validation runs.
    """

    _reduce = {"cntR": "cat", "sumR": "cat", "cntP": "cat", "sumP": "cat", "thresholds": "same"}

    def __init__(
        self,
        thresholds: int | Sequence[float] = 99,
        max_dist_ratio: float = 0.0075,
        thin_pred: bool = True,
        thin_gt: bool = False,
    ) -> None:
        if isinstance(thresholds, (int, np.integer)):
            if thresholds < 1:
                raise ValueError("the number of thresholds must be >= 1")
            n = int(thresholds)
            thr = np.linspace(1.0 / (n + 1), n / (n + 1.0), n)
        else:
            thr = np.asarray(thresholds, dtype=np.float64)
            if thr.ndim != 1 or thr.size == 0 or np.any(np.diff(thr) <= 0):
                raise ValueError("thresholds must be a non-empty strictly increasing sequence")
        if max_dist_ratio <= 0:
            raise ValueError("max_dist_ratio must be > 0")
        self.thresholds = thr
        self.max_dist_ratio = float(max_dist_ratio)
        self.thin_pred = bool(thin_pred)
        self.thin_gt = bool(thin_gt)
        super().__init__()

    def _initial_state(self) -> dict[str, np.ndarray]:
        k = self.thresholds.size
        empty = np.zeros((0, k), dtype=np.int64)
        return {
            "cntR": empty.copy(),
            "sumR": empty.copy(),
            "cntP": empty.copy(),
            "sumP": empty.copy(),
            "thresholds": self.thresholds.copy(),
        }

    def update(self, pred: Batch, target: Batch) -> None:
        """Add edge probabilities ``[B,1,H,W]`` and labels ``[B,1,H,W]`` (or lists of per-image maps)."""
        rows: dict[str, list[np.ndarray]] = {"cntR": [], "sumR": [], "cntP": [], "sumP": []}
        for p, g in _pairs(pred, target, 1, 1, type(self).__name__):
            counts = edge_image_counts(
                p[0].float(),
                g[0].float(),
                self.thresholds,
                max_dist_ratio=self.max_dist_ratio,
                thin_pred=self.thin_pred,
                thin_gt=self.thin_gt,
            )
            for key in rows:
                rows[key].append(counts[key])
        if rows["cntR"]:
            for key, vals in rows.items():
                self._state[key] = np.concatenate([self._state[key], np.stack(vals)], axis=0)

    @property
    def num_images(self) -> int:
        """Images seen since the last reset."""
        return int(self._state["cntR"].shape[0])

    def pr_curve(self) -> dict[str, np.ndarray]:
        """Dataset-pooled ``thresholds``, ``precision``, ``recall``, ``f`` (fractions, one per threshold)."""
        s = self._state
        r = _ratio(s["cntR"].sum(0), s["sumR"].sum(0))
        p = _ratio(s["cntP"].sum(0), s["sumP"].sum(0))
        return {"thresholds": self.thresholds.copy(), "precision": p, "recall": r, "f": _fmeasure(p, r)}

    def compute(self) -> dict[str, Any]:
        """``odsF``, ``oisF``, ``AP``, ``AP_area`` (%), and ``odsP``, ``odsR`` (%), ``ods_threshold``."""
        if self.num_images == 0:
            nan = float("nan")
            return {"odsF": nan, "oisF": nan, "AP": nan, "AP_area": nan, "odsP": nan, "odsR": nan,
                    "ods_threshold": nan}
        s = self._state
        curve = self.pr_curve()
        p, r, f = curve["precision"], curve["recall"], curve["f"]
        k = int(np.argmax(f))
        # OIS: per-image best threshold (ties -> the lowest threshold), then pooled counts
        f_img = _fmeasure(_ratio(s["cntP"], s["sumP"]), _ratio(s["cntR"], s["sumR"]))
        kk = np.argmax(f_img, axis=1)  # first maximum = lowest threshold, as BSDS/seism
        rows = np.arange(f_img.shape[0])
        r_ois = _ratio(s["cntR"][rows, kk].sum(), s["sumR"][rows, kk].sum())
        p_ois = _ratio(s["cntP"][rows, kk].sum(), s["sumP"][rows, kk].sum())
        ois = float(_fmeasure(p_ois, r_ois))
        return {
            "odsF": _pct(f[k]),
            "oisF": _pct(ois),
            "AP": _pct(self._reference_ap(p, r)),
            "AP_area": _pct(self._average_precision(p, r, s["sumP"].sum(0) > 0)),
            "odsP": _pct(p[k]),
            "odsR": _pct(r[k]),
            "ods_threshold": float(self.thresholds[k]),
        }

    @staticmethod
    def _reference_ap(p: np.ndarray, r: np.ndarray) -> float:
        """seism's general AP of a pooled curve given per threshold in increasing threshold order."""
        recall, first = np.unique(r, return_index=True)  # sorted; the first (lowest-threshold) point per recall
        if recall.size < 2:
            return 0.0
        grid = np.arange(101) / 100.0
        inside = (grid >= recall[0]) & (grid <= recall[-1])  # interp1 gives NaN outside; those are dropped
        return float(np.interp(grid[inside], recall, p[first]).sum() / 100.0)

    @staticmethod
    def _average_precision(p: np.ndarray, r: np.ndarray, defined: np.ndarray) -> float:
        if not defined.any():
            return 0.0
        p, r = p[defined], r[defined]
        order = np.lexsort((-p, r))  # by recall, ties: higher precision first
        p, r = p[order], r[order]
        area = float(r[0] * p[0])  # horizontal extension to recall 0
        area += float(np.trapezoid(p, r)) if r.size > 1 else 0.0
        return area

    def __repr__(self) -> str:
        return (
            f"EdgeMetric(thresholds={self.thresholds.size}, max_dist_ratio={self.max_dist_ratio}, "
            f"thin_pred={self.thin_pred}, thin_gt={self.thin_gt})"
        )
