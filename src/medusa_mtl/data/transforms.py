"""Joint train / eval transforms (SPEC §6) on NumPy samples, and the final to-tensor step.

A *NumPy sample* is a dict of arrays as returned by :func:`medusa_mtl.data.formats.read_sample`:
``image`` uint8 HxWx3, ``semseg`` / ``human_parts`` uint8 HxW (255 = ignore), ``depth`` float32 HxW (0 =
invalid), ``normals`` float32 HxWx3 (zero = invalid), ``edge`` / ``sal`` float32 HxW ({0, 1}, 255 = ignore).

Train (:class:`TrainTransform`): horizontal flip with p = 0.5 (normals' x negated); then one resampling that
scales (and rotates) about the image centre on the same canvas and resizes to the fixed size: nearest for
labels, depth, edge and sal; bicubic for the image and the normals (normals re-normalised, and invalid where
the nearest source pixel is invalid). Normals' (x, y) are rotated with the image, in the frame of
:data:`medusa_mtl.data.formats.NORMALS_FRAME` (x right, y up): rotating the picture counter-clockwise by
``a`` degrees rotates (x, y) counter-clockwise by ``a``. Depth is divided by the scale (zooming in by s looks
like a camera s times closer). Pixels that come from outside the canvas get the ignore values (class labels,
edge and sal 255; depth 0; normals 0; image 0). NYUD: scale from {1.0, 1.2, 1.5}, no rotation; PASCAL: scale
U(0.75, 1.25), rotation U(-20, 20) degrees.

Eval (:class:`EvalTransform`): the image is resized to the fixed size (bicubic); labels stay at the original
resolution (predictions are resized back and scored there).

Randomness: every random draw comes from a ``numpy.random.Generator``. Pass one to ``__call__`` for full
control; without one, a generator is seeded from ``torch.randint`` so that ``torch.manual_seed`` /
Lightning's ``seed_everything`` and the DataLoader's per-worker seeding make runs reproducible.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from scipy import ndimage

from .formats import IGNORE_INDEX, MIN_NORMAL_NORM

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

BUILTIN_KINDS: dict[str, str] = {"semseg": "segmentation", "human_parts": "segmentation", "edge": "edge",
                                 "sal": "binary", "depth": "depth", "normals": "normals"}
"""Label kind (:data:`medusa_mtl.tasks.LABEL_KINDS`) of the built-in tasks; declared tasks pass ``kinds``."""
Kinds = Mapping[str, str] | None


@dataclass(frozen=True)
class AugmentParams:
    """Random augmentation of the train transform.

    Attributes:
        flip_prob: probability of a horizontal flip.
        scales: discrete scales to choose from uniformly (NYUD), or ``None``.
        scale_range: ``(low, high)`` for a uniform scale (PASCAL), used when ``scales`` is ``None``.
        max_rotation: rotation drawn from U(-max_rotation, max_rotation) degrees (0 = none).
    """

    flip_prob: float = 0.5
    scales: tuple[float, ...] | None = (1.0,)
    scale_range: tuple[float, float] | None = None
    max_rotation: float = 0.0

    def __post_init__(self) -> None:
        if not 0.0 <= self.flip_prob <= 1.0:
            raise ValueError(f"flip_prob must be in [0, 1], got {self.flip_prob}")
        if self.scales is None and self.scale_range is None:
            raise ValueError("give either scales or scale_range")
        if self.scales is not None and (not self.scales or min(self.scales) <= 0):
            raise ValueError(f"scales must be a non-empty tuple of positive numbers, got {self.scales}")
        if self.scale_range is not None and not 0 < self.scale_range[0] <= self.scale_range[1]:
            raise ValueError(f"scale_range must be (low, high) with 0 < low <= high, got {self.scale_range}")
        if self.max_rotation < 0:
            raise ValueError(f"max_rotation must be >= 0, got {self.max_rotation}")


NYUD_AUGMENT = AugmentParams(flip_prob=0.5, scales=(1.0, 1.2, 1.5), max_rotation=0.0)
PASCAL_AUGMENT = AugmentParams(flip_prob=0.5, scales=None, scale_range=(0.75, 1.25), max_rotation=20.0)
NO_AUGMENT = AugmentParams(flip_prob=0.0, scales=(1.0,), max_rotation=0.0)


def check_size(size: Sequence[int]) -> tuple[int, int]:
    """Validate a fixed ``(H, W)`` size: two positive multiples of 32 (the backbone's largest stride)."""
    try:
        h, w = (int(s) for s in size)
    except (TypeError, ValueError):
        raise ValueError(f"size must be (height, width), got {size!r}") from None
    if h <= 0 or w <= 0 or h % 32 or w % 32:
        raise ValueError(f"size must be positive multiples of 32 (height, width), got {(h, w)}")
    return h, w


def _rng_from_torch() -> np.random.Generator:
    return np.random.default_rng(int(torch.randint(0, 2**62, (1,)).item()))


def _check_keys(sample: Mapping[str, np.ndarray], kinds: Kinds = None) -> dict[str, str]:
    """The label kind of every key of ``sample`` but ``image`` (``kinds`` first, then the built-in tasks)."""
    known = {**BUILTIN_KINDS, **(kinds or {})}
    unknown = [k for k in sample if k != "image" and k not in known]
    if unknown:
        raise ValueError(f"unknown sample keys {unknown}; known keys: {['image', *known]}")
    if "image" not in sample:
        raise ValueError("the sample has no 'image'")
    return {k: known[k] for k in sample if k != "image"}


def hflip(sample: Mapping[str, np.ndarray], kinds: Kinds = None) -> dict[str, np.ndarray]:
    """Mirror every array left-right; normals' x component is negated."""
    kind = _check_keys(sample, kinds)
    out = {}
    for k, v in sample.items():
        f = np.ascontiguousarray(v[:, ::-1])
        if kind.get(k) == "normals":
            f = f.copy()
            f[..., 0] *= -1.0
            f[..., 0][f[..., 0] == 0] = 0.0  # no negative zeros: keep the invalid vector exactly zero
        out[k] = f
    return out


def _source_coords(
    in_hw: tuple[int, int], out_hw: tuple[int, int], scale: float, angle_deg: float
) -> tuple[np.ndarray, np.ndarray]:
    """For every output pixel, the (row, col) it samples in the input.

    Forward map (input canvas -> output): about the canvas centre, in y-up coordinates, p' = s R(a) p; then
    the canvas is resized to ``out_hw`` (pixel centres aligned, like ``align_corners=False``).
    """
    H, W = in_hw
    ho, wo = out_hw
    yc = (np.arange(ho, dtype=np.float64) + 0.5) * H / ho - 0.5
    xc = (np.arange(wo, dtype=np.float64) + 0.5) * W / wo - 0.5
    cy, cx = (H - 1) / 2.0, (W - 1) / 2.0
    dx = xc[None, :] - cx
    dy_up = -(yc[:, None] - cy)
    a = math.radians(angle_deg)
    c, s = math.cos(a), math.sin(a)
    x = (c * dx + s * dy_up) / scale
    y_up = (-s * dx + c * dy_up) / scale
    return np.broadcast_to(cy - y_up, (ho, wo)), np.broadcast_to(cx + x, (ho, wo))


def _resample(arr2d: np.ndarray, rows: np.ndarray, cols: np.ndarray, order: int, cval: float,
              identity: bool = False) -> np.ndarray:
    """Resample a 2-D array at (rows, cols); points outside the canvas get ``cval``.

    ``identity``: (rows, cols) are the array's own pixel centres. The spline then reproduces the samples, so
    they are taken as they are (in the dtype the spline would return): equal output without the resampling,
    which is most of the cost of a flips-only augmentation (``tests/test_transforms.py`` checks the equality).
    """
    H, W = arr2d.shape
    inside = (rows > -0.5) & (rows < H - 0.5) & (cols > -0.5) & (cols < W - 0.5)
    if identity:
        out = arr2d if order == 0 else arr2d.astype(np.float64)
    elif order == 0:
        r = np.clip(np.floor(rows + 0.5).astype(np.int64), 0, H - 1)
        c = np.clip(np.floor(cols + 0.5).astype(np.int64), 0, W - 1)
        out = arr2d[r, c]
    else:
        out = ndimage.map_coordinates(
            arr2d.astype(np.float64), [rows, cols], order=order, mode="nearest", prefilter=True
        )
    return np.where(inside, out, cval)


def warp(
    sample: Mapping[str, np.ndarray], size: Sequence[int], scale: float = 1.0, angle_deg: float = 0.0,
    kinds: Kinds = None,
) -> dict[str, np.ndarray]:
    """Scale by ``scale`` and rotate by ``angle_deg`` (counter-clockwise) about the centre, then resize to
    ``size`` = (H, W), in one resampling per array (see the module docstring for interpolation and ignore).

    ``kinds`` gives the label kind of keys that are not built-in tasks (declared tasks)."""
    kind = _check_keys(sample, kinds)
    if scale <= 0:
        raise ValueError(f"scale must be positive, got {scale}")
    out_hw = (int(size[0]), int(size[1]))
    in_hw = sample["image"].shape[:2]
    for k, v in sample.items():
        if v.shape[:2] != in_hw:
            raise ValueError(f"'{k}' has size {v.shape[:2]} but the image has {in_hw}; all must match")
    rows, cols = _source_coords(in_hw, out_hw, scale, angle_deg)
    # A flips-only augmentation at the stored size resamples onto the same grid: skip the spline.
    _sample = functools.partial(_resample, identity=scale == 1.0 and angle_deg == 0.0 and tuple(in_hw) == out_hw)

    out: dict[str, np.ndarray] = {}
    for k, v in sample.items():
        if k == "image":
            ch = [_sample(v[..., i], rows, cols, 3, 0.0) for i in range(v.shape[2])]
            out[k] = np.clip(np.round(np.stack(ch, -1)), 0, 255).astype(np.uint8)
        elif kind[k] == "segmentation":
            out[k] = _sample(v, rows, cols, 0, IGNORE_INDEX).astype(v.dtype)
        elif kind[k] in ("binary", "edge"):
            out[k] = _sample(v.astype(np.float32), rows, cols, 0, IGNORE_INDEX).astype(np.float32)
        elif kind[k] == "depth":
            out[k] = (_sample(v, rows, cols, 0, 0.0) / scale).astype(np.float32)
        elif kind[k] == "regression":  # nearest: no blending across invalid (NaN) values; no unit change
            chans = v if v.ndim == 3 else v[..., None]
            res = np.stack([_sample(chans[..., i], rows, cols, 0, np.nan) for i in range(chans.shape[2])], -1)
            out[k] = (res if v.ndim == 3 else res[..., 0]).astype(np.float32)
        elif kind[k] == "normals":
            valid = _sample(np.linalg.norm(v, axis=-1) > 0, rows, cols, 0, False)
            n = np.stack([_sample(v[..., i], rows, cols, 3, 0.0) for i in range(3)], -1)
            a = math.radians(angle_deg)
            c, s = math.cos(a), math.sin(a)
            nx = c * n[..., 0] - s * n[..., 1]
            ny = s * n[..., 0] + c * n[..., 1]
            n = np.stack([nx, ny, n[..., 2]], -1)
            norm = np.linalg.norm(n, axis=-1, keepdims=True)
            ok = valid[..., None] & (norm >= MIN_NORMAL_NORM)
            out[k] = np.where(ok, n / np.maximum(norm, 1e-12), 0.0).astype(np.float32)
    return out


def resize_image(image: np.ndarray, size: Sequence[int]) -> np.ndarray:
    """Bicubic resize of a uint8 HxWx3 image to ``size`` = (H, W)."""
    if tuple(image.shape[:2]) == (int(size[0]), int(size[1])):
        return image
    return warp({"image": image}, size)["image"]


class TrainTransform:
    """Random joint train transform (flip, scale/rotate about the centre, resize to ``size``)."""

    def __init__(self, size: Sequence[int], augment: AugmentParams = NYUD_AUGMENT, kinds: Kinds = None) -> None:
        """Args: size: fixed output (H, W), multiples of 32; augment: the random augmentation; kinds: label kind
        of sample keys that are not built-in tasks (declared tasks)."""
        self.size = check_size(size)
        self.augment = augment
        self.kinds = dict(kinds) if kinds else None

    def draw(self, rng: np.random.Generator) -> dict[str, Any]:
        """Draw the random parameters ``flip``, ``scale``, ``angle`` of one call."""
        aug = self.augment
        flip = bool(rng.random() < aug.flip_prob)
        if aug.scales is not None:
            scale = float(aug.scales[int(rng.integers(len(aug.scales)))])
        else:
            assert aug.scale_range is not None
            scale = float(rng.uniform(*aug.scale_range))
        angle = float(rng.uniform(-aug.max_rotation, aug.max_rotation)) if aug.max_rotation > 0 else 0.0
        return {"flip": flip, "scale": scale, "angle": angle}

    def __call__(
        self, sample: Mapping[str, np.ndarray], rng: np.random.Generator | None = None
    ) -> dict[str, np.ndarray]:
        """Transform a NumPy sample; ``rng`` defaults to a generator seeded from torch's RNG."""
        params = self.draw(rng if rng is not None else _rng_from_torch())
        return self.apply(sample, **params)

    def apply(
        self, sample: Mapping[str, np.ndarray], flip: bool, scale: float, angle: float
    ) -> dict[str, np.ndarray]:
        """Apply given parameters (deterministic)."""
        s = hflip(sample, self.kinds) if flip else dict(sample)
        return warp(s, self.size, scale, angle, self.kinds)

    def __repr__(self) -> str:
        return f"TrainTransform(size={self.size}, augment={self.augment})"


class EvalTransform:
    """Resize the image to ``size``; labels are kept at their original resolution."""

    def __init__(self, size: Sequence[int], kinds: Kinds = None) -> None:
        """Args: size: fixed (H, W) of the network input, multiples of 32; kinds: as for TrainTransform."""
        self.size = check_size(size)
        self.kinds = dict(kinds) if kinds else None

    def __call__(
        self, sample: Mapping[str, np.ndarray], rng: np.random.Generator | None = None
    ) -> dict[str, np.ndarray]:
        """Return a copy of the sample with the image resized (``rng`` is unused)."""
        _check_keys(sample, self.kinds)
        out = dict(sample)
        out["image"] = resize_image(sample["image"], self.size)
        return out

    def __repr__(self) -> str:
        return f"EvalTransform(size={self.size})"


def normalize_image(image: np.ndarray) -> torch.Tensor:
    """uint8 HxWx3 RGB -> float32 [3, H, W], ImageNet mean/std normalised."""
    t = torch.from_numpy(np.array(image, dtype=np.uint8, copy=True)).permute(2, 0, 1).float().div_(255.0)
    mean = torch.tensor(IMAGENET_MEAN).view(3, 1, 1)
    std = torch.tensor(IMAGENET_STD).view(3, 1, 1)
    return (t - mean) / std


def to_tensor_sample(sample: Mapping[str, np.ndarray], meta: Mapping[str, Any], kinds: Kinds = None) -> dict[str, Any]:
    """Build the sample dict of ARCHITECTURE.md from a NumPy sample.

    ``image`` float32 [3,H,W] normalised; ``semseg`` / ``human_parts`` int64 [H,W]; ``depth``, ``edge``,
    ``sal`` float32 [1,H,W]; ``normals`` float32 [3,H,W]; ``meta`` copied. Declared tasks (``kinds``) alike by
    kind; a regression label becomes [C,H,W].
    """
    kind = _check_keys(sample, kinds)
    out: dict[str, Any] = {}
    for k, v in sample.items():
        if k == "image":
            out[k] = normalize_image(v)
        elif kind[k] == "segmentation":
            out[k] = torch.from_numpy(np.ascontiguousarray(v).astype(np.int64))
        elif kind[k] == "normals" or (kind[k] == "regression" and v.ndim == 3):
            out[k] = torch.from_numpy(np.array(v, dtype=np.float32, copy=True)).permute(2, 0, 1).contiguous()
        else:
            out[k] = torch.from_numpy(np.array(v, dtype=np.float32, copy=True))[None]
    out["meta"] = dict(meta)
    return out
