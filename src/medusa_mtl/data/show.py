"""``medusa data show``: a contact sheet PNG of a few samples, the image and every label side by side.

Samples are read through the project's loaders (:class:`medusa_mtl.data.datasets.NYUD` /
:class:`~medusa_mtl.data.datasets.PASCALContext`, raw NumPy samples without transform), i.e. exactly what
training sees before augmentation: NYUD semseg is already shifted (file value k -> k-1, 0 -> 255 ignore),
PASCAL human parts are grouped into 6 parts, PASCAL edges are derived from the Context LabelMap and PASCAL
normals are masked to valid Context classes. Ignored pixels of class maps are cream (the VOC void colour),
invalid depth / normals dark grey, ignored edge / saliency pixels mid grey.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from . import formats

TASK_TITLES = {
    "image": "image",
    "semseg": "semseg",
    "human_parts": "human parts",
    "depth": "depth (m)",
    "normals": "normals",
    "edge": "edge",
    "sal": "saliency",
}
_TASK_ORDER = ("semseg", "human_parts", "depth", "normals", "edge", "sal")
IGNORE_COLOR = np.array([224, 224, 192], dtype=np.uint8)
"""Colour of ignored (255) pixels of class maps (the VOC void colour)."""
INVALID_COLOR = np.array([40, 40, 40], dtype=np.uint8)


def label_palette(n: int = 256) -> np.ndarray:
    """The VOC bit-interleaving colour palette, (n, 3) uint8 (class 0 black)."""
    pal = np.zeros((n, 3), dtype=np.uint8)
    for i in range(n):
        c, r, g, b = i, 0, 0, 0
        for j in range(8):
            r |= ((c >> 0) & 1) << (7 - j)
            g |= ((c >> 1) & 1) << (7 - j)
            b |= ((c >> 2) & 1) << (7 - j)
            c >>= 3
        pal[i] = (r, g, b)
    return pal


def colorize_labels(label: np.ndarray, offset: int = 0, ignore: int = formats.IGNORE_INDEX) -> np.ndarray:
    """Class map -> RGB with :func:`label_palette` (``offset`` shifts the palette index); ignore is cream."""
    pal = label_palette()
    lab = label.astype(np.int64)
    rgb = pal[np.clip(lab + offset, 0, 255)]
    rgb[lab == ignore] = IGNORE_COLOR
    return rgb


def colorize_depth(depth: np.ndarray) -> np.ndarray:
    """Depth -> RGB with the ``turbo`` colour map over the valid range; invalid (0) dark grey."""
    from matplotlib import colormaps

    valid = depth > 0
    rgb = np.empty((*depth.shape, 3), dtype=np.uint8)
    rgb[:] = INVALID_COLOR
    if valid.any():
        lo, hi = float(depth[valid].min()), float(depth[valid].max())
        x = (depth - lo) / max(hi - lo, 1e-6)
        col = (colormaps["turbo"](np.clip(x, 0, 1))[..., :3] * 255).astype(np.uint8)
        rgb[valid] = col[valid]
    return rgb


def colorize_normals(normals: np.ndarray) -> np.ndarray:
    """Unit normals -> RGB ``(n + 1) / 2``; invalid (zero) dark grey."""
    valid = np.linalg.norm(normals, axis=-1) > 0.5
    rgb = np.clip((normals + 1.0) * 127.5, 0, 255).astype(np.uint8)
    rgb[~valid] = INVALID_COLOR
    return rgb


def colorize_binary(x: np.ndarray) -> np.ndarray:
    """{0, 1} map (255 = ignore) -> RGB white on black; ignore mid grey."""
    rgb = np.where((x > 0.5)[..., None], 255, 0).astype(np.uint8).repeat(3, axis=-1)
    rgb[x == formats.IGNORE_INDEX] = (128, 128, 128)
    return rgb


def colorize(task: str, value: np.ndarray, dataset: str) -> np.ndarray:
    """RGB picture (H, W, 3) uint8 of one task's label (as the loaders return it)."""
    if task == "image":
        return value
    if task == "semseg":
        return colorize_labels(value, offset=1 if dataset == "nyud" else 0)
    if task == "human_parts":
        return colorize_labels(value)
    if task == "depth":
        return colorize_depth(value)
    if task == "normals":
        return colorize_normals(value)
    return colorize_binary(value)


def _read_samples(
    root: Path, dataset: str, split: str, num: int
) -> tuple[list[str], list[dict[str, np.ndarray]], tuple[str, ...]]:
    try:
        from .datasets import get_dataset_info

        info = get_dataset_info(dataset)
        tasks = tuple(t for t in _TASK_ORDER if t in info.tasks)
        ds = info.cls(root, split=split, tasks=list(tasks), transform=None)
        ids = list(ds.ids)
        picks = _pick(len(ids), num)
        return [ids[i] for i in picks], [ds.read_numpy(i) for i in picks], tasks
    except ImportError:  # pragma: no cover - loaders unavailable: read the files directly
        all_tasks = formats.NYUD_TASKS if dataset == "nyud" else formats.PASCAL_TASKS
        tasks = tuple(t for t in _TASK_ORDER if t in all_tasks)
        ids = formats.read_split(root, dataset, split)
        picked = [ids[i] for i in _pick(len(ids), num)]
        return picked, [formats.read_sample(dataset, root, i, tasks) for i in picked], tasks


def _pick(n: int, num: int) -> list[int]:
    if n == 0:
        return []
    if num >= n:
        return list(range(n))
    return sorted({int(round(x)) for x in np.linspace(0, n - 1, num)})


def contact_sheet(
    root: str | os.PathLike[str],
    dataset: str,
    out: str | os.PathLike[str],
    num: int = 6,
    split: str = "train",
    tasks: Sequence[str] | None = None,
) -> Path:
    """Write a contact sheet PNG: one row per sample (image + every label), column titles on top.

    Args:
        root: dataset folder (NYUD_MT or PASCAL_MT layout).
        dataset: ``"nyud"`` or ``"pascal"``.
        out: output PNG path.
        num: number of samples (evenly spread over the split).
        split: ``"train"`` or ``"val"``.
        tasks: subset of the dataset's tasks to show (default: all).

    Returns:
        The written path.
    """
    import matplotlib

    matplotlib.use("Agg", force=False)
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    if dataset not in ("nyud", "pascal"):
        raise ValueError(f"--dataset: unknown dataset {dataset!r}; expected 'nyud' or 'pascal'")
    if num < 1:
        raise ValueError(f"--num: expected at least 1 sample, got {num}")
    root = Path(root)
    ids, samples, all_tasks = _read_samples(root, dataset, split, num)
    if not samples:
        raise ValueError(f"{root}: split {split!r} of {dataset} has no sample to show")
    if tasks is not None:
        unknown = [t for t in tasks if t not in all_tasks]
        if unknown:
            raise ValueError(f"--tasks: unknown task(s) {unknown} for {dataset}; valid: {list(all_tasks)}")
        all_tasks = tuple(t for t in all_tasks if t in tasks)
    cols = ("image", *all_tasks)
    h, w = samples[0]["image"].shape[:2]
    cell = 1.9
    fig = Figure(figsize=(cell * len(cols) * w / max(h, w) + 0.4, cell * len(samples) * h / max(h, w) + 0.5), dpi=110)
    FigureCanvasAgg(fig)
    axes = fig.subplots(len(samples), len(cols), squeeze=False)
    for r, (sid, sample) in enumerate(zip(ids, samples)):
        for c, task in enumerate(cols):
            ax = axes[r][c]
            ax.imshow(colorize(task, sample[task], dataset), interpolation="nearest")
            ax.set_xticks([])
            ax.set_yticks([])
            if r == 0:
                ax.set_title(TASK_TITLES.get(task, task), fontsize=9)
            if c == 0:
                ax.set_ylabel(sid, fontsize=7)
    fig.tight_layout(pad=0.3, h_pad=0.2, w_pad=0.2)
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, format="png")
    return out


def _detect(root: Path) -> str:
    for ds, names in (("nyud", ("gt_sets", "images")), ("pascal", ("ImageSets", "JPEGImages"))):
        if all((root / n).exists() for n in names):
            return ds
    raise ValueError(f"--root {root}: cannot tell whether it is a NYUD_MT or PASCAL_MT folder; pass --dataset")


def add_show_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``medusa data show``."""
    parser.add_argument("--root", required=True, type=Path, help="dataset folder (NYUD_MT or PASCAL_MT layout)")
    parser.add_argument(
        "--dataset", choices=("nyud", "pascal"), default=None, help="dataset layout (default: detected from the folder)"
    )
    parser.add_argument("--out", type=Path, default=Path("sheet.png"), help="output PNG (default sheet.png)")
    parser.add_argument("--num", type=int, default=6, help="number of samples (default 6)")
    parser.add_argument("--split", choices=formats.SPLITS, default="train", help="split (default train)")
    parser.add_argument("--tasks", nargs="+", default=None, help="tasks to show (default: all)")


def run_show(args: argparse.Namespace) -> int:
    """Run ``medusa data show``. Returns the exit code."""
    root = Path(args.root)
    if not root.is_dir():
        raise FileNotFoundError(f"--root {root}: folder does not exist")
    dataset = args.dataset or _detect(root)
    out = contact_sheet(root, dataset, args.out, num=args.num, split=args.split, tasks=args.tasks)
    print(f"wrote contact sheet of {args.num} {dataset} {args.split} samples to {out}")
    return 0
