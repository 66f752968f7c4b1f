"""Colourisation of predictions and attention maps, and the matplotlib figures of ``medusa predict``.

Every function takes NumPy arrays (as returned by :func:`medusa_mtl.reports.predict.predict_images`) and returns an
RGB ``uint8`` image ``H x W x 3``, so that it can be written as a PNG or placed in a figure:

- class maps (``semseg``, ``human_parts``): a fixed palette per task (:func:`palette_for`); the same class
  always gets the same colour, in every image and every run;
- ``depth``: a matplotlib colour map, normalised per image between its smallest and largest valid depth
  (no colour bar: the range is written in the panel's title instead), invalid pixels black;
- ``normals``: ``(n + 1) / 2`` as RGB (x -> red, y -> green, z -> blue);
- ``edge`` / ``sal``: probabilities in [0, 1] as grey levels (1 = white);
- attention maps: a heat map blended over the image (:func:`overlay_heatmap`).

Example:
    >>> import numpy as np
    >>> rgb = colorize_prediction("semseg", np.zeros((4, 5), np.int64), num_classes=40)
    >>> rgb.shape, rgb.dtype
    ((4, 5, 3), dtype('uint8'))
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import matplotlib
import numpy as np
from matplotlib.figure import Figure
from matplotlib.patches import Patch
from PIL import Image

from ..data.formats import HUMAN_PARTS_NAMES

DEPTH_CMAP = "magma"
HEATMAP_CMAP = "jet"
CLASS_TASKS = ("semseg", "human_parts")
GREY_TASKS = ("edge", "sal")

# Human parts (SPEC §5): background, head, torso, upper arm, lower arm, upper leg, lower leg.
PARTS_PALETTE = np.array(
    [
        (0, 0, 0),  # background
        (230, 25, 75),  # head
        (60, 180, 75),  # torso
        (255, 225, 25),  # upper arm
        (245, 130, 48),  # lower arm
        (0, 130, 200),  # upper leg
        (145, 30, 180),  # lower leg
    ],
    dtype=np.uint8,
)
IGNORE_COLOR = (255, 255, 255)


def label_palette(num_classes: int = 256) -> np.ndarray:
    """A fixed palette of ``num_classes`` distinct colours (``num_classes x 3`` uint8), at most 256.

    Colour of class ``i``: the bits of ``i`` are dealt in turn to red, green and blue, from the most
    significant bit of each channel down, so that small ids get well separated colours and class 0 is black.
    """
    if not 1 <= num_classes <= 256:
        raise ValueError(f"num_classes must be in 1..256, got {num_classes}")
    pal = np.zeros((num_classes, 3), dtype=np.uint8)
    for cls in range(num_classes):
        rgb = [0, 0, 0]
        value = cls
        for bit in range(7, -1, -1):
            for ch in range(3):
                rgb[ch] |= ((value >> ch) & 1) << bit
            value >>= 3
        pal[cls] = rgb
    return pal


def declared_colors(task: str) -> np.ndarray | None:
    """The class colours a ``dataset.yaml`` declares for ``task`` (``num_classes x 3`` uint8), if any."""
    from ..data.datasets import DATASETS

    for info in DATASETS.values():
        if info.spec is not None and task in info.spec.task_names and info.spec.task(task).colors:
            return np.array(info.spec.task(task).colors, dtype=np.uint8)
    return None


def palette_for(task: str, num_classes: int) -> np.ndarray:
    """The palette of a class task: :data:`PARTS_PALETTE` for ``human_parts``, a declared task's own class
    colours, :func:`label_palette` else."""
    if task == "human_parts" and num_classes <= len(PARTS_PALETTE):
        return PARTS_PALETTE[:num_classes].copy()
    colors = declared_colors(task)
    if colors is not None and len(colors) >= num_classes:
        return colors[:num_classes].copy()
    return label_palette(num_classes)


def label_kind(task: str) -> str | None:
    """The registered task's label kind (``segmentation``, ``depth``, ...), ``None`` for an unknown name."""
    from ..tasks import TASKS

    return TASKS[task].label_kind if task in TASKS else None


def colorize_regression(values: np.ndarray) -> np.ndarray:
    """A regression output ``H x W`` or ``H x W x C``: its first channel through the depth colour map,
    normalised per image over finite values (any sign); non-finite values black."""
    v = np.asarray(values, dtype=np.float64)
    if v.ndim == 3:
        v = v[..., 0] if v.shape[-1] <= v.shape[0] else v[0]
    finite = np.isfinite(v)
    if not finite.any():
        return np.zeros((*v.shape, 3), np.uint8)
    lo, hi = float(v[finite].min()), float(v[finite].max())
    norm = (v - lo) / (hi - lo) if hi > lo else np.full_like(v, 0.5)
    rgba = matplotlib.colormaps[DEPTH_CMAP](np.clip(np.where(finite, norm, 0.0), 0.0, 1.0))
    rgb = np.round(rgba[..., :3] * 255).astype(np.uint8)
    rgb[~finite] = 0
    return rgb


def colorize_labels(labels: np.ndarray, palette: np.ndarray) -> np.ndarray:
    """Class ids ``H x W`` -> RGB with ``palette``; ids outside the palette (e.g. 255 = ignore) are white."""
    labels = np.asarray(labels)
    if labels.ndim != 2:
        raise ValueError(f"expected a 2-D label map, got shape {labels.shape}")
    out = np.empty((*labels.shape, 3), dtype=np.uint8)
    out[:] = IGNORE_COLOR
    ok = (labels >= 0) & (labels < len(palette))
    out[ok] = palette[labels[ok].astype(np.int64)]
    return out


def _squeeze_2d(arr: np.ndarray, what: str) -> np.ndarray:
    arr = np.asarray(arr)
    while arr.ndim > 2 and arr.shape[0] == 1:
        arr = arr[0]
    if arr.ndim == 3 and arr.shape[-1] == 1:
        arr = arr[..., 0]
    if arr.ndim != 2:
        raise ValueError(f"expected a 2-D {what} map, got shape {arr.shape}")
    return arr


def depth_range(depth: np.ndarray) -> tuple[float, float] | None:
    """(min, max) of the valid (finite, > 0) depths, or ``None`` when there is none."""
    d = _squeeze_2d(depth, "depth").astype(np.float64)
    valid = d[np.isfinite(d) & (d > 0)]
    if valid.size == 0:
        return None
    return float(valid.min()), float(valid.max())


def colorize_depth(depth: np.ndarray, cmap: str = DEPTH_CMAP) -> np.ndarray:
    """Depth ``H x W`` (or ``1 x H x W``) -> RGB with ``cmap``, normalised per image over its valid pixels.

    Valid pixels (finite, > 0) span the colour map from their minimum to their maximum (a constant map takes
    the middle colour); invalid pixels are black.
    """
    d = _squeeze_2d(depth, "depth").astype(np.float64)
    valid = np.isfinite(d) & (d > 0)
    rng = depth_range(d)
    norm = np.zeros_like(d)
    if rng is not None:
        lo, hi = rng
        norm = (d - lo) / (hi - lo) if hi > lo else np.full_like(d, 0.5)
    rgba = matplotlib.colormaps[cmap](np.clip(np.where(valid, norm, 0.0), 0.0, 1.0))
    rgb = np.round(rgba[..., :3] * 255).astype(np.uint8)
    rgb[~valid] = 0
    return rgb


def colorize_normals(normals: np.ndarray) -> np.ndarray:
    """Normals ``H x W x 3`` or ``3 x H x W`` (components in [-1, 1]) -> RGB ``(n + 1) / 2``."""
    n = np.asarray(normals, dtype=np.float64)
    if n.ndim == 4 and n.shape[0] == 1:
        n = n[0]
    if n.ndim == 3 and n.shape[0] == 3 and n.shape[-1] != 3:
        n = np.moveaxis(n, 0, -1)
    if n.ndim != 3 or n.shape[-1] != 3:
        raise ValueError(f"expected normals of shape HxWx3 or 3xHxW, got {np.shape(normals)}")
    n = np.nan_to_num(n, nan=0.0, posinf=0.0, neginf=0.0)
    return np.round(np.clip((n + 1.0) / 2.0, 0.0, 1.0) * 255).astype(np.uint8)


def colorize_gray(prob: np.ndarray) -> np.ndarray:
    """Probabilities ``H x W`` in [0, 1] -> grey RGB (0 = black, 1 = white)."""
    p = np.nan_to_num(_squeeze_2d(prob, "probability").astype(np.float64), nan=0.0)
    g = np.round(np.clip(p, 0.0, 1.0) * 255).astype(np.uint8)
    return np.repeat(g[..., None], 3, axis=-1)


def colorize_prediction(task: str, pred: np.ndarray, num_classes: int | None = None) -> np.ndarray:
    """Colourise one task's prediction (see the module docstring for the mapping of each task).

    Args:
        task: task name; class tasks are ``semseg`` / ``human_parts``, grey tasks ``edge`` / ``sal``.
        pred: the prediction of :func:`medusa_mtl.reports.predict.predict_images` for that task.
        num_classes: palette size of a class task (default: the largest id + 1, at least 1).
    """
    kind = label_kind(task)
    if kind == "segmentation" or task in CLASS_TASKS:
        labels = _squeeze_2d(pred, task)
        n = num_classes if num_classes is not None else max(int(labels.max(initial=0)) + 1, 1)
        return colorize_labels(labels, palette_for(task, min(n, 256)))
    if kind == "depth" or task == "depth":
        return colorize_depth(pred)
    if kind == "normals" or task == "normals":
        return colorize_normals(pred)
    if kind in ("binary", "edge") or task in GREY_TASKS:
        return colorize_gray(pred)
    if kind == "regression":
        return colorize_regression(pred)
    # Unknown (newly registered) tasks: by shape.
    arr = np.asarray(pred)
    if arr.ndim == 3 and 3 in (arr.shape[0], arr.shape[-1]):
        return colorize_normals(arr)
    if np.issubdtype(arr.dtype, np.integer):
        return colorize_prediction("semseg", arr, num_classes)
    return colorize_gray(arr)


def resize_map(values: np.ndarray, hw: tuple[int, int]) -> np.ndarray:
    """Bilinear resize of a float ``H x W`` map to ``hw`` = (H, W)."""
    values = np.asarray(values, dtype=np.float32)
    if values.shape == tuple(hw):
        return values
    im = Image.fromarray(values, mode="F").resize((int(hw[1]), int(hw[0])), Image.Resampling.BILINEAR)
    return np.asarray(im, dtype=np.float32)


def overlay_heatmap(
    image: np.ndarray,
    heat: np.ndarray,
    alpha: float = 0.5,
    cmap: str = HEATMAP_CMAP,
    vmin: float | None = 0.0,
    vmax: float | None = 1.0,
) -> np.ndarray:
    """Blend a heat map over an RGB image (the map is resized bilinearly to the image).

    Args:
        image: uint8 ``H x W x 3``.
        heat: float map of any size.
        alpha: weight of the heat map colours (0 = image only).
        cmap: matplotlib colour map.
        vmin, vmax: the values mapped to the ends of the colour map; ``None`` = the map's own min / max.
    """
    img = np.asarray(image, dtype=np.float64)
    h = resize_map(np.nan_to_num(np.asarray(heat, dtype=np.float32)), img.shape[:2]).astype(np.float64)
    lo = float(h.min()) if vmin is None else vmin
    hi = float(h.max()) if vmax is None else vmax
    norm = (h - lo) / (hi - lo) if hi > lo else np.full_like(h, 0.5)
    colours = matplotlib.colormaps[cmap](np.clip(norm, 0.0, 1.0))[..., :3] * 255.0
    return np.round((1.0 - alpha) * img + alpha * colours).clip(0, 255).astype(np.uint8)


def save_png(rgb: np.ndarray, path: str | Path) -> Path:
    """Write an RGB (or grey) uint8 array as a PNG, creating the folder."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.ascontiguousarray(rgb, dtype=np.uint8)).save(path, format="PNG")
    return path


def _hide_axes(ax: object) -> None:
    ax.set_xticks([])  # type: ignore[attr-defined]
    ax.set_yticks([])  # type: ignore[attr-defined]
    for spine in ax.spines.values():  # type: ignore[attr-defined]
        spine.set_visible(False)


def save_panel(
    image: np.ndarray,
    tiles: Mapping[str, np.ndarray],
    path: str | Path,
    title: str | None = None,
    legends: Mapping[str, Sequence[tuple[str, np.ndarray]]] | None = None,
    tile_inches: float = 3.0,
) -> Path:
    """Input image and one RGB tile per entry of ``tiles`` side by side, each with its key as title.

    Args:
        image: the input, uint8 ``H x W x 3``.
        tiles: title -> RGB tile (same aspect as the image).
        path: PNG to write.
        title: figure title (e.g. the image name).
        legends: title -> ``[(label, rgb colour)]``, drawn under that tile (e.g. the parts' names).
        tile_inches: width of one tile in inches (100 dpi).
    """
    items = [("input", image), *tiles.items()]
    h, w = image.shape[:2]
    tile_h = tile_inches * h / max(w, 1)
    extra = 0.9 if legends else 0.0
    fig = Figure(figsize=(tile_inches * len(items), tile_h + 0.6 + extra), dpi=100)
    axes = fig.subplots(1, len(items), squeeze=False)[0]
    for ax, (name, rgb) in zip(axes, items):
        ax.imshow(rgb, interpolation="nearest")
        ax.set_title(name, fontsize=9)
        _hide_axes(ax)
        legend = (legends or {}).get(name)
        if legend:
            handles = [Patch(facecolor=np.asarray(c, dtype=float) / 255.0, edgecolor="k", label=n) for n, c in legend]
            ax.legend(handles=handles, loc="upper center", bbox_to_anchor=(0.5, -0.02), ncol=2, fontsize=6,
                      frameon=False)
    return _save_figure(fig, path, title)


def save_heatmap_grid(
    image: np.ndarray,
    rows: Mapping[str, Sequence[tuple[str, np.ndarray]]],
    path: str | Path,
    title: str | None = None,
    vmin: float | None = 0.0,
    vmax: float | None = 1.0,
    alpha: float = 0.5,
    tile_inches: float = 2.5,
) -> Path:
    """One row per key of ``rows`` (e.g. a task), one heat map overlaid on ``image`` per ``(title, map)``.

    ``vmin`` / ``vmax`` as in :func:`overlay_heatmap` (``None``: per-map min / max, the range is then shown in
    the tile's title).
    """
    if not rows:
        raise ValueError("no heat maps to draw")
    n_rows = len(rows)
    n_cols = max(len(r) for r in rows.values())
    h, w = image.shape[:2]
    tile_h = tile_inches * h / max(w, 1)
    fig = Figure(figsize=(tile_inches * n_cols, (tile_h + 0.45) * n_rows + 0.5), dpi=100)
    axes = fig.subplots(n_rows, n_cols, squeeze=False)
    for r, (row_name, maps) in enumerate(rows.items()):
        for c in range(n_cols):
            ax = axes[r][c]
            _hide_axes(ax)
            if c >= len(maps):
                ax.set_visible(False)
                continue
            name, heat = maps[c]
            heat = np.asarray(heat, dtype=np.float32)
            label = f"{row_name}: {name}"
            if vmin is None or vmax is None:
                label += f"\n[{float(heat.min()):.2f}, {float(heat.max()):.2f}]"
            ax.imshow(overlay_heatmap(image, heat, alpha=alpha, vmin=vmin, vmax=vmax), interpolation="nearest")
            ax.set_title(label, fontsize=8)
    return _save_figure(fig, path, title)


def parts_legend() -> list[tuple[str, np.ndarray]]:
    """``[(part name, colour)]`` of the human-parts palette."""
    return [(name, PARTS_PALETTE[i]) for i, name in enumerate(HUMAN_PARTS_NAMES)]


def _save_figure(fig: Figure, path: str | Path, title: str | None) -> Path:
    """Give ``fig`` its title, lay it out and write it as PNG to ``path`` (folders created)."""
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, format="png")
    return path
