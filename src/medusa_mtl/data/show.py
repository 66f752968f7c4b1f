"""``medusa data show``: a contact sheet PNG of a few samples, the image and every label side by side.

Samples are read through the project's loaders (:class:`medusa_mtl.data.datasets.NYUD` /
:class:`~medusa_mtl.data.datasets.PASCALContext`, raw NumPy samples without transform), i.e. exactly what
training sees before augmentation: NYUD semseg is already shifted (file value k -> k-1, 0 -> 255 ignore),
PASCAL human parts are grouped into 6 parts, PASCAL edges are derived from the Context LabelMap and PASCAL
normals are masked to valid Context classes. Ignored pixels of class maps are cream (the VOC void colour),
invalid depth / normals / regression values dark grey, ignored edge / saliency pixels mid grey.

A generic dataset (a ``dataset.yaml``, :mod:`medusa_mtl.data.generic`) is read through
:class:`~medusa_mtl.data.datasets.GenericDataset` the same way; each declared task is a column titled
``name (kind)`` and drawn by its label kind, class maps in the declared class colours when there are any.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from ..options import output_file, positive_int
from . import formats, generic

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
REGRESSION_CMAP = "viridis"
_NYUD_NAMES = ("nyud", "nyudv2", "nyud_mt", "synthetic_nyud")
_BUILTIN_NAMES = (*_NYUD_NAMES, "pascal", "pascal_context", "pascalcontext", "pascal_mt", "synthetic_pascal")


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


def colorize_labels(
    label: np.ndarray, offset: int = 0, ignore: int = formats.IGNORE_INDEX, palette: np.ndarray | None = None
) -> np.ndarray:
    """Class map -> RGB with ``palette`` (256 x 3, default :func:`label_palette`; ``offset`` shifts the
    palette index); ignore is cream."""
    pal = label_palette() if palette is None else palette
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


def colorize_regression(value: np.ndarray, cmap: str = REGRESSION_CMAP) -> np.ndarray:
    """First channel of an H x W (x C) map -> RGB with ``cmap`` over its finite range; NaN/inf dark grey."""
    from matplotlib import colormaps

    x = np.asarray(value, dtype=np.float64)
    if x.ndim == 3:
        x = x[..., 0]
    valid = np.isfinite(x)
    rgb = np.empty((*x.shape, 3), dtype=np.uint8)
    rgb[:] = INVALID_COLOR
    if valid.any():
        lo, hi = float(x[valid].min()), float(x[valid].max())
        t = np.where(valid, (x - lo) / max(hi - lo, 1e-6), 0.0)
        col = (colormaps[cmap](np.clip(t, 0, 1))[..., :3] * 255).astype(np.uint8)
        rgb[valid] = col[valid]
    return rgb


def _task_spec(task: str, dataset: str) -> generic.TaskSpec | None:
    """The ``dataset.yaml`` declaration of ``task`` (``None`` for the built-in datasets and unknown ones)."""
    if str(dataset).lower() in _BUILTIN_NAMES:
        return None  # avoids importing the torch datasets for the built-in ones
    try:
        from .datasets import get_dataset_info

        spec = get_dataset_info(dataset).spec
        return None if spec is None or task not in spec.task_names else spec.task(task)
    except (ImportError, ValueError, FileNotFoundError):
        return None


def _segmentation_palette(ts: generic.TaskSpec | None) -> np.ndarray | None:
    if ts is None or not ts.colors:
        return None
    pal = label_palette().copy()
    pal[: len(ts.colors)] = np.asarray(ts.colors, dtype=np.uint8)
    return pal


def label_kind(task: str, value: np.ndarray | None = None) -> str:
    """The label kind of ``task`` (:data:`medusa_mtl.tasks.LABEL_KINDS`); an unregistered task is guessed
    from the value's shape (2-D: binary, else regression) so a picture is drawn all the same."""
    from ..tasks import get_task

    try:
        return get_task(task).label_kind
    except ValueError:
        return "binary" if value is None or np.ndim(value) == 2 else "regression"


def colorize(task: str, value: np.ndarray, dataset: str) -> np.ndarray:
    """RGB picture (H, W, 3) uint8 of one task's label (as the loaders return it), drawn by its label kind.

    ``dataset`` is a registered dataset name or a ``dataset.yaml`` path: it decides the NYUD class offset of
    the built-in ``semseg`` and gives the declared class colours of a generic segmentation task.
    """
    if task == "image":
        return value
    kind = label_kind(task, value)
    if kind == "segmentation":
        ts = _task_spec(task, dataset)
        # NYUD class k is stored as k-1 after loading (file 0 = ignore): the offset keeps the file's colours
        offset = 1 if task == "semseg" and ts is None and str(dataset).lower() in _NYUD_NAMES else 0
        return colorize_labels(value, offset=offset, palette=_segmentation_palette(ts))
    if kind == "depth":
        return colorize_depth(value)
    if kind == "normals":
        return colorize_normals(value)
    if kind == "regression":
        return colorize_regression(value)
    return colorize_binary(value)


def _read_samples(
    root: Path, dataset: str, split: str, num: int
) -> tuple[list[str], list[dict[str, np.ndarray]], tuple[str, ...]]:
    try:
        from .datasets import get_dataset_info

        info = get_dataset_info(dataset)
        if info.spec is not None:  # a dataset.yaml: every declared task, in the declared order
            tasks = info.spec.task_names
            ds = info.cls(root, split=split, tasks=list(tasks), transform=None, spec=info.spec)  # type: ignore[call-arg]
        else:
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
    root: str | os.PathLike[str] | None,
    dataset: str | os.PathLike[str],
    out: str | os.PathLike[str],
    num: int = 6,
    split: str = "train",
    tasks: Sequence[str] | None = None,
    shown: list[str] | None = None,
) -> Path:
    """Write a contact sheet PNG: one row per sample (image + every label), column titles on top.

    Args:
        root: dataset folder (NYUD_MT or PASCAL_MT layout, or a generic dataset's folder); ``None`` for a
            ``dataset.yaml``: its folder.
        dataset: ``"nyud"``, ``"pascal"``, a ``dataset.yaml`` path (or a folder holding one) or the name of a
            registered generic dataset.
        out: output path: ``.png`` (or no extension), ``.jpg`` / ``.jpeg``, ``.pdf`` or ``.svg``.
        num: number of samples (evenly spread over the split).
        split: ``"train"`` or ``"val"``.
        tasks: subset of the dataset's tasks to show (default: all).
        shown: if given, receives the ids of the samples on the sheet (fewer than ``num`` on a small split).

    Returns:
        The written path.
    """
    import matplotlib

    matplotlib.use("Agg", force=False)
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    if num < 1:
        raise ValueError(f"--num: expected at least 1 sample, got {num}")
    fmt = _sheet_format(Path(out))  # before any reading
    dataset, root, titles = _resolve(dataset, root)
    ids, samples, all_tasks = _read_samples(root, dataset, split, num)
    if not samples:
        raise ValueError(f"{root}: split {split!r} of {dataset} has no sample to show")
    if shown is not None:
        shown.extend(ids)
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
                ax.set_title(titles.get(task, task), fontsize=9)
            if c == 0:
                ax.set_ylabel(sid, fontsize=7)
    fig.tight_layout(pad=0.3, h_pad=0.2, w_pad=0.2)
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, format=fmt)
    return out


SHEET_FORMATS = {"": "png", ".png": "png", ".jpg": "jpeg", ".jpeg": "jpeg", ".pdf": "pdf", ".svg": "svg"}


def _sheet_format(out: Path) -> str:
    """The file format ``out``'s extension names (PNG bytes in ``sheet.jpg`` would open nowhere as a JPEG)."""
    fmt = SHEET_FORMATS.get(out.suffix.lower())
    if fmt is None:
        raise ValueError(f"--out {out}: expected a file ending in {', '.join(s for s in SHEET_FORMATS if s)}")
    return fmt


def _resolve(
    dataset: str | os.PathLike[str], root: str | os.PathLike[str] | None
) -> tuple[str, Path, dict[str, str]]:
    """(registered dataset name, dataset folder, column titles) of a built-in name or a ``dataset.yaml``."""
    if str(dataset) in ("nyud", "pascal"):
        if root is None:
            raise ValueError(f"--root: give the {dataset} dataset folder")
        return str(dataset), Path(root), dict(TASK_TITLES)
    try:
        from .datasets import get_dataset_info

        info = get_dataset_info(dataset)
    except ValueError as e:
        if isinstance(e, generic.DatasetSpecError):
            raise
        raise ValueError(f"--dataset: unknown dataset {str(dataset)!r}; expected 'nyud', 'pascal' or the path "
                         f"of a {generic.SPEC_FILE}") from None
    if info.spec is None:
        if root is None:
            raise ValueError(f"--root: give the {info.name} dataset folder")
        return info.name, Path(root), dict(TASK_TITLES)
    folder = Path(root) if root is not None else info.spec.root
    if folder is None:
        raise ValueError(f"dataset {info.name!r}: give the dataset folder (--root)")
    titles = {"image": "image", **{t.name: f"{t.name} ({t.kind})" for t in info.spec.tasks}}
    return info.name, folder, titles


def _detect(root: Path) -> str:
    spec_file = generic.find_spec_file(root)
    if spec_file is not None:
        return str(spec_file)
    for ds, names in (("nyud", ("gt_sets", "images")), ("pascal", ("ImageSets", "JPEGImages"))):
        if all((root / n).exists() for n in names):
            return ds
    raise ValueError(f"--root {root}: cannot tell whether it is a NYUD_MT or PASCAL_MT folder and it holds no "
                     f"{generic.SPEC_FILE}; pass --dataset")


def add_show_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``medusa data show``."""
    parser.add_argument(
        "--root", default=None, type=Path,
        help="dataset folder (NYUD_MT or PASCAL_MT layout, or a folder holding a dataset.yaml; "
             "default for a dataset.yaml: its folder)",
    )
    parser.add_argument(
        "--dataset", default=None,
        help="nyud, pascal or the path of a dataset.yaml (default: detected from the folder)",
    )
    parser.add_argument("--out", type=output_file, default="sheet.png",
                        help="the sheet: .png, .jpg, .pdf or .svg, format by extension (default sheet.png)")
    parser.add_argument("--num", type=positive_int, default=6, help="number of samples (default 6)")
    parser.add_argument("--split", choices=formats.SPLITS, default="train", help="split (default train)")
    parser.add_argument("--tasks", nargs="+", default=None, help="tasks to show (default: all)")


def run_show(args: argparse.Namespace) -> int:
    """Run ``medusa data show``. Returns the exit code."""
    if args.root is None and args.dataset is None:
        raise ValueError(f"give --root (a dataset folder) or --dataset PATH/{generic.SPEC_FILE}")
    root = None if args.root is None else Path(args.root)
    if root is not None and not root.is_dir():
        raise FileNotFoundError(f"--root {root}: folder does not exist")
    dataset = args.dataset or _detect(root)  # type: ignore[arg-type]
    name = _resolve(dataset, root)[0]
    shown: list[str] = []
    out = contact_sheet(root, dataset, args.out, num=args.num, split=args.split, tasks=args.tasks, shown=shown)
    more = f" (the split has no more than {len(shown)})" if len(shown) < args.num else ""
    print(f"wrote contact sheet of {len(shown)} {name} {args.split} samples to {out}{more}")
    return 0
