"""Write synthetic datasets in the NYUD_MT / PASCAL_MT formats: per-sample seeds, a process pool, the CLI.

Determinism: sample ``synth_<i>`` is rendered from its own generator,
``numpy.random.default_rng(SeedSequence(seed, spawn_key=(domain, i)))`` (domain 0 = nyud, 1 = pascal), so its
files depend only on (dataset, seed, i, size) — not on the number of samples, the split or the number of
worker processes. The train / val split is a seeded permutation of the ids. Files are written by the
:mod:`medusa_mtl.data.formats` writers, which produce byte-identical files for identical arrays.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ...errors import ConfigError
from ...options import output_dir, positive_int
from .. import formats
from ..sizes import parse_size
from .nyud import NYUD_CLASS_NAMES, render_nyud
from .pascal import CONTEXT_IDS, PERSON_PARTS, VOC_CLASS_NAMES, render_pascal

SYNTH_DATASETS = ("nyud", "pascal")
DEFAULT_SIZES: dict[str, tuple[int, int]] = {"nyud": (128, 160), "pascal": (128, 128)}
SIZE_MULTIPLE = 32
GENERATOR_VERSION = 1
META_FILE = "synthetic.json"
"""Small JSON file at the dataset root describing how it was generated (no timestamps: deterministic)."""
ID_PREFIX = "synth_"

_DOMAIN_KEY = {"nyud": 0, "pascal": 1}
_MARKERS = {
    "nyud": ("images", "segmentation", "depth", "gt_sets"),
    "pascal": ("JPEGImages", "ImageSets", "human_parts", "sal_distill", "normals_distill", "pascal-context"),
}


def sample_id(index: int) -> str:
    """The id of sample ``index`` (``synth_000123``)."""
    return f"{ID_PREFIX}{index:06d}"


def sample_rng(dataset: str, seed: int, index: int) -> np.random.Generator:
    """The generator of one sample, derived from (seed, dataset, index) with a ``SeedSequence``."""
    return np.random.default_rng(np.random.SeedSequence(int(seed), spawn_key=(_DOMAIN_KEY[dataset], int(index))))


def split_ids(num_train: int, num_val: int, seed: int) -> tuple[list[str], list[str]]:
    """Train and val ids: a seeded permutation of ``synth_000000 .. synth_{N-1}``, each list sorted."""
    n = num_train + num_val
    perm = np.random.default_rng(np.random.SeedSequence(int(seed), spawn_key=(99, n))).permutation(n)
    train = sorted(sample_id(int(i)) for i in perm[:num_train])
    val = sorted(sample_id(int(i)) for i in perm[num_train:])
    return train, val


def render_sample(dataset: str, index: int, size: tuple[int, int], seed: int) -> dict[str, Any]:
    """Render sample ``index`` of ``dataset`` (arrays as taken by the ``formats.write_*_sample`` writers)."""
    _check_dataset(dataset)
    rng = sample_rng(dataset, seed, index)
    if dataset == "nyud":
        return render_nyud(rng, size)
    return render_pascal(rng, size)


def write_sample(dataset: str, root: Path, sid: str, sample: dict[str, Any]) -> None:
    """Write a rendered sample with the :mod:`formats` writers."""
    if dataset == "nyud":
        formats.write_nyud_sample(
            root, sid, sample["image"], sample["semseg"], sample["depth"], sample["normals"], sample["edge"]
        )
    else:
        formats.write_pascal_sample(
            root,
            sid,
            sample["image"],
            sample["semseg"],
            sample["persons"],
            sample["sal"],
            sample["normals"],
            sample["labelmap"],
        )


def _work(job: tuple[str, str, int, tuple[int, int], int]) -> dict[str, int]:
    dataset, root, index, size, seed = job
    sample = render_sample(dataset, index, size, seed)
    write_sample(dataset, Path(root), sample_id(index), sample)
    stats = {"index": index}
    if dataset == "pascal":
        stats["persons"] = len(sample["persons"])
    return stats


@dataclass
class GenerateResult:
    """What :func:`generate` wrote.

    Attributes:
        dataset: ``"nyud"`` or ``"pascal"``.
        root: dataset folder.
        size: (height, width).
        seed: the seed.
        train_ids, val_ids: the split lists.
        seconds: wall time.
        workers: processes used.
        persons: total persons written (PASCAL).
    """

    dataset: str
    root: Path
    size: tuple[int, int]
    seed: int
    train_ids: list[str]
    val_ids: list[str]
    seconds: float
    workers: int
    persons: int = 0
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def num_images(self) -> int:
        """Number of samples written."""
        return len(self.train_ids) + len(self.val_ids)

    def summary(self) -> str:
        """One line for the user."""
        h, w = self.size
        rate = self.num_images / max(self.seconds, 1e-9)
        s = (
            f"wrote {self.num_images} synthetic {self.dataset} samples ({len(self.train_ids)} train / "
            f"{len(self.val_ids)} val, {h}x{w}, seed {self.seed}) to {self.root} in {self.seconds:.1f} s "
            f"({rate:.1f} images/s, {self.workers} worker{'s' if self.workers != 1 else ''})"
        )
        if self.dataset == "pascal":
            s += f"; {self.persons} persons"
        return s


def _check_dataset(dataset: str) -> None:
    if dataset not in SYNTH_DATASETS:
        raise ConfigError(f"--dataset: unknown synthetic dataset {dataset!r}; expected one of {list(SYNTH_DATASETS)}")


def check_size(size: tuple[int, int], multiple: int | None = SIZE_MULTIPLE) -> tuple[int, int]:
    """Validate (height, width): positive, at least 32, and multiples of ``multiple`` (None = any)."""
    try:
        h, w = (int(size[0]), int(size[1]))
    except (TypeError, ValueError, IndexError):
        raise ConfigError(f"--size: expected (height, width), got {size!r}") from None
    if h < 32 or w < 32:
        raise ConfigError(f"--size {h}x{w}: height and width must be at least 32 pixels")
    if multiple and (h % multiple or w % multiple):
        raise ConfigError(
            f"--size {h}x{w}: height and width must be multiples of {multiple} (the backbones need it); "
            f"e.g. {max(multiple, round(h / multiple) * multiple)}x{max(multiple, round(w / multiple) * multiple)}"
            ", or pass --any-size to allow other sizes"
        )
    return h, w


def detect_dataset(root: Path) -> str | None:
    """Which dataset layout a folder holds (``"nyud"``, ``"pascal"``), or None."""
    meta = root / META_FILE
    if meta.is_file():
        try:
            ds = json.loads(meta.read_text()).get("dataset")
            if ds in SYNTH_DATASETS:
                return str(ds)
        except (OSError, ValueError):
            pass
    for ds, names in _MARKERS.items():
        if any((root / n).exists() for n in names):
            return ds
    return None


def _check_root(dataset: str, root: Path) -> None:
    if root.exists() and not root.is_dir():
        raise ConfigError(f"--root {root}: exists and is not a folder")
    if not root.is_dir() or not any(root.iterdir()):
        return
    found = detect_dataset(root)
    if found is None:
        raise ConfigError(
            f"--root {root}: folder is not empty and does not look like a {dataset} dataset; refusing to write "
            "into it (choose an empty or new folder)"
        )
    if found != dataset:
        raise ConfigError(
            f"--root {root}: folder already holds a {found} dataset; refusing to write a {dataset} dataset into "
            "it (choose an empty or new folder)"
        )


def default_workers() -> int:
    """Worker processes by default: the CPUs this process may use."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - not Linux
        return max(1, os.cpu_count() or 1)


def generate(
    dataset: str,
    root: Path | str,
    num_train: int,
    num_val: int,
    size: tuple[int, int] | None = None,
    seed: int = 0,
    workers: int | None = None,
    progress: bool = False,
    size_multiple: int | None = SIZE_MULTIPLE,
    callback: Callable[[int], None] | None = None,
) -> GenerateResult:
    """Render and write a synthetic dataset in the NYUD_MT (``nyud``) or PASCAL_MT (``pascal``) format.

    Args:
        dataset: ``"nyud"`` or ``"pascal"``.
        root: dataset folder (created; must be empty, new, or already a ``dataset`` folder).
        num_train: number of train samples.
        num_val: number of val samples.
        size: (height, width); default :data:`DEFAULT_SIZES`.
        seed: master seed; the same seed gives byte-identical files.
        workers: processes (default: available CPUs; 0 or 1 = in this process). Results do not depend on it.
        progress: show a tqdm progress bar on stderr.
        size_multiple: required divisor of height and width (None = any size >= 32).
        callback: called with the number of samples done after each sample.

    Returns:
        A :class:`GenerateResult` (ids, wall time, ...).
    """
    _check_dataset(dataset)
    if num_train < 0 or num_val < 0 or num_train + num_val == 0:
        raise ConfigError(
            f"--num-train/--num-val: expected counts >= 0 with a positive total, got {num_train} and {num_val}"
        )
    size = check_size(DEFAULT_SIZES[dataset] if size is None else size, size_multiple)
    root = Path(root)
    _check_root(dataset, root)
    root.mkdir(parents=True, exist_ok=True)
    n = num_train + num_val
    workers = default_workers() if workers is None else int(workers)
    workers = max(1, min(workers, n))
    t0 = time.perf_counter()
    jobs = [(dataset, str(root), i, size, int(seed)) for i in range(n)]
    persons = 0
    done = 0
    bar = None

    def _done(stats: dict[str, int]) -> None:
        nonlocal persons, done
        persons += stats.get("persons", 0)
        done += 1
        if bar is not None:
            bar.update(1)
        if callback is not None:
            callback(done)

    def _bar() -> Any:
        if not progress:
            return None
        from tqdm import tqdm

        return tqdm(total=n, desc=f"synth {dataset}", unit="img", file=sys.stderr, dynamic_ncols=True)

    try:
        if workers == 1:
            bar = _bar()
            for job in jobs:
                _done(_work(job))
        else:
            # fork where available (fast start, nothing to re-import); the pool is created before the
            # progress bar so no helper thread exists when the workers are forked
            methods = mp.get_all_start_methods()
            ctx = mp.get_context("fork" if "fork" in methods else "spawn")
            chunk = max(1, min(8, n // (workers * 4)))
            with ctx.Pool(workers) as pool:
                bar = _bar()
                for stats in pool.imap_unordered(_work, jobs, chunksize=chunk):
                    _done(stats)
    finally:
        if bar is not None:
            bar.close()
    train_ids, val_ids = split_ids(num_train, num_val, seed)
    if dataset == "nyud":
        formats.write_nyud_splits(root, train_ids, val_ids)
    else:
        formats.write_pascal_splits(root, train_ids, val_ids)
    _write_meta(root, dataset, size, seed, num_train, num_val)
    return GenerateResult(
        dataset, root, size, int(seed), train_ids, val_ids, time.perf_counter() - t0, workers, persons
    )


def synthetic_meta(dataset: str, size: tuple[int, int], seed: int, num_train: int, num_val: int) -> dict[str, Any]:
    """The content of :data:`META_FILE`: how the dataset was generated and what its labels mean."""
    meta: dict[str, Any] = {
        "generator": "medusa_mtl.data.synthetic",
        "version": GENERATOR_VERSION,
        "dataset": dataset,
        "seed": int(seed),
        "size": [int(size[0]), int(size[1])],
        "num_train": int(num_train),
        "num_val": int(num_val),
    }
    if dataset == "nyud":
        meta["classes"] = list(NYUD_CLASS_NAMES)
        meta["notes"] = "segmentation 0 = unlabelled, 1..13 = classes; window glass has depth 0 and normals 0"
    else:
        meta["classes"] = list(VOC_CLASS_NAMES)
        meta["context_ids"] = dict(CONTEXT_IDS)
        meta["person_parts"] = list(PERSON_PARTS)
    return meta


def _write_meta(root: Path, dataset: str, size: tuple[int, int], seed: int, num_train: int, num_val: int) -> None:
    text = json.dumps(synthetic_meta(dataset, size, seed, num_train, num_val), indent=2, sort_keys=True) + "\n"
    tmp = root / f".{META_FILE}.tmp"
    tmp.write_text(text)
    os.replace(tmp, root / META_FILE)


# ----------------------------------------------------------------------------------------------------
# command line: medusa data synth
# ----------------------------------------------------------------------------------------------------


def add_synth_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``medusa data synth``."""
    parser.add_argument(
        "--dataset",
        required=True,
        choices=SYNTH_DATASETS,
        help="nyud (indoor rooms, NYUD_MT format) or pascal (outdoor figures, PASCAL_MT format)",
    )
    parser.add_argument("--root", required=True, type=output_dir, help="output folder (new, empty or same dataset)")
    parser.add_argument("--num-train", type=positive_int, default=800, help="train samples (default 800)")
    parser.add_argument("--num-val", type=positive_int, default=200, help="val samples (default 200)")
    parser.add_argument("--size", default=None, help="HxW, multiples of 32 (default nyud 128x160, pascal 128x128)")
    parser.add_argument("--seed", type=int, default=0, help="seed; the same seed gives byte-identical files")
    parser.add_argument("--workers", type=positive_int, default=None, help="processes (default: available CPUs)")
    parser.add_argument("--any-size", action="store_true", help="allow sizes that are not multiples of 32")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")


def run_synth(args: argparse.Namespace) -> int:
    """Run ``medusa data synth``; prints a summary line. Returns the exit code."""
    size = None if args.size is None else parse_size(args.size)
    result = generate(
        args.dataset,
        args.root,
        args.num_train,
        args.num_val,
        size=size,
        seed=args.seed,
        workers=args.workers,
        progress=not getattr(args, "no_progress", False),
        size_multiple=None if getattr(args, "any_size", False) else SIZE_MULTIPLE,
    )
    print(result.summary())
    return 0
