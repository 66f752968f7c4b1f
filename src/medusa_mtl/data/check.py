"""``medusa data check``: validate a NYUD_MT or PASCAL_MT folder (real or synthetic) and list every problem.

:func:`check_dataset` never stops at the first problem: it reports missing folders and split files, ids that
appear in a split without their files, overlapping or duplicated ids, unreadable or truncated images, label
sizes that do not fit the image, values out of range and NaN/inf, each as a :class:`Problem`.
:func:`run_check` prints a summary and returns an exit code for the CLI.
"""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from . import formats
from .formats import DataFormatError


@dataclass(frozen=True)
class Problem:
    """One problem found in a dataset folder.

    Attributes:
        path: the file or folder concerned.
        message: what is wrong / what was expected.
        split: the split it was found in, if any.
        sample_id: the sample concerned, if any.
        task: the task concerned, if any (``"image"`` for the image).
    """

    path: str
    message: str
    split: str | None = None
    sample_id: str | None = None
    task: str | None = None

    def __str__(self) -> str:
        where = " ".join(
            x
            for x in (
                f"[{self.split}]" if self.split else "",
                f"id={self.sample_id}" if self.sample_id else "",
                f"task={self.task}" if self.task else "",
            )
            if x
        )
        return f"{where + ': ' if where else ''}{self.path}: {self.message}"


@dataclass
class CheckReport:
    """Result of :func:`check_dataset_report`: problems plus counts for the summary."""

    root: str
    dataset: str
    problems: list[Problem] = field(default_factory=list)
    split_counts: dict[str, int] = field(default_factory=dict)
    coverage: dict[str, dict[str, int]] = field(default_factory=dict)
    """split -> task -> number of samples whose task files were read without a problem."""
    checked: dict[str, int] = field(default_factory=dict)
    """split -> number of samples checked (may be less than the split size with ``max_samples``)."""


_DIRS = {
    "nyud": ("images", "segmentation", "depth", "normals", "edge", "gt_sets"),
    "pascal": (
        "JPEGImages",
        "ImageSets/Context",
        "semseg/pascal-context",
        "human_parts",
        "sal_distill",
        "normals_distill",
        "pascal-context/trainval",
    ),
}


def _dataset_key(dataset: str) -> str:
    key = {"nyud": "nyud", "nyud_mt": "nyud", "pascal": "pascal", "pascal_mt": "pascal"}.get(dataset.lower())
    if key is None:
        key = {"pascal_context": "pascal", "pascalcontext": "pascal", "nyudv2": "nyud"}.get(dataset.lower())
    if key is None:
        raise ValueError(f"unknown dataset {dataset!r}; valid datasets: ['nyud', 'pascal']")
    return key


def _problem(e: DataFormatError, split: str, sample_id: str, task: str) -> Problem:
    return Problem(e.path, e.reason, split, sample_id, task)


def _check_sample(
    ds: str, root: Path, split: str, sample_id: str, tasks: Sequence[str], report: CheckReport
) -> None:
    paths = formats.nyud_paths(root, sample_id) if ds == "nyud" else formats.pascal_paths(root, sample_id)
    try:
        hw = formats.read_image(paths["image"]).shape[:2]
    except DataFormatError as e:
        report.problems.append(_problem(e, split, sample_id, "image"))
        hw = None
    for t in tasks:
        try:
            if hw is None:  # no image to compare sizes with: still validate the label file on its own
                for p in formats.task_files(ds, root, sample_id, t):
                    if not p.is_file():
                        raise DataFormatError(p, "missing file")
                _read_task_alone(ds, root, sample_id, t)
            else:
                _read_task_with_image(ds, root, sample_id, t, hw)
        except DataFormatError as e:
            report.problems.append(_problem(e, split, sample_id, t))
        else:
            report.coverage[split][t] += 1


def _read_task_alone(ds: str, root: Path, sample_id: str, task: str) -> None:
    if ds == "nyud":
        p = formats.nyud_paths(root, sample_id)[task]
        {
            "semseg": formats.read_nyud_semseg,
            "depth": formats.read_depth,
            "normals": formats.read_nyud_normals,
            "edge": formats.read_nyud_edge,
        }[task](p)
        return
    p = formats.pascal_paths(root, sample_id)
    if task == "semseg":
        formats.read_pascal_semseg(p["semseg"])
    elif task == "human_parts":
        formats.read_human_parts(p["human_parts"])
    elif task == "sal":
        formats.read_sal(p["sal"])
    elif task == "edge":
        formats.read_labelmap(p["labelmap"])
    elif task == "normals":
        formats.read_pascal_normals(p["normals"], formats.read_labelmap(p["labelmap"]))


def _read_task_with_image(ds: str, root: Path, sample_id: str, task: str, hw: tuple[int, int]) -> None:
    # the loaders' validation and size fitting, minus the image (already read)
    if ds == "nyud":
        p = formats.nyud_paths(root, sample_id)[task]
        if task == "normals":
            formats.fit_normals(formats.read_nyud_normals(p), hw, p)
        else:
            readers = {
                "semseg": formats.read_nyud_semseg,
                "depth": formats.read_depth,
                "edge": formats.read_nyud_edge,
            }
            formats.fit_label(readers[task](p), hw, p, task)
        return
    p = formats.pascal_paths(root, sample_id)
    if task == "semseg":
        formats.fit_label(formats.read_pascal_semseg(p["semseg"]), hw, p["semseg"], "semseg")
    elif task == "human_parts":
        formats.fit_label(formats.read_human_parts(p["human_parts"], hw), hw, p["human_parts"], "human parts")
    elif task == "sal":
        formats.fit_label(formats.read_sal(p["sal"]), hw, p["sal"], "saliency")
    elif task == "edge":
        formats.fit_label(formats.read_labelmap(p["labelmap"]), hw, p["labelmap"], "LabelMap")
    elif task == "normals":
        lm = formats.read_labelmap(p["labelmap"])
        formats.fit_normals(formats.read_pascal_normals(p["normals"], lm), hw, p["normals"])


def check_dataset_report(
    root: str | os.PathLike[str],
    dataset: str,
    tasks: Sequence[str] | None = None,
    max_samples: int | None = None,
) -> CheckReport:
    """Validate a dataset folder; see :func:`check_dataset`. Also returns per-split counts and coverage."""
    ds = _dataset_key(dataset)
    root = Path(root)
    all_tasks = formats.NYUD_TASKS if ds == "nyud" else formats.PASCAL_TASKS
    tasks = list(all_tasks if tasks is None else tasks)
    unknown = [t for t in tasks if t not in all_tasks]
    if unknown:
        raise ValueError(f"unknown task(s) {unknown} for {ds}; valid tasks: {list(all_tasks)}")
    report = CheckReport(str(root), ds)
    if not root.is_dir():
        report.problems.append(
            Problem(str(root), f"dataset root folder does not exist (expected a {ds} folder)")
        )
        return report
    for d in _DIRS[ds]:
        if not (root / d).is_dir():
            report.problems.append(Problem(str(root / d), "missing folder"))

    split_ids: dict[str, list[str]] = {}
    for split in formats.SPLITS:
        try:
            split_ids[split] = formats.read_split(root, ds, split)
        except DataFormatError as e:
            report.problems.append(Problem(e.path, e.reason, split))
            continue
        path = str(formats.split_path(root, ds, split))
        if not split_ids[split]:
            report.problems.append(Problem(path, "split file lists no id", split))
        dup = sorted(i for i, c in Counter(split_ids[split]).items() if c > 1)
        if dup:
            report.problems.append(Problem(path, f"duplicate ids {dup[:10]} ({len(dup)} in all)", split))
        report.split_counts[split] = len(split_ids[split])
    if "train" in split_ids and "val" in split_ids:
        both = sorted(set(split_ids["train"]) & set(split_ids["val"]))
        if both:
            report.problems.append(
                Problem(str(root), f"ids in both train and val: {both[:10]} ({len(both)} in all)")
            )

    for split, ids in split_ids.items():
        report.coverage[split] = dict.fromkeys(tasks, 0)
        todo = list(dict.fromkeys(ids))
        if max_samples is not None:
            todo = todo[:max_samples]
        report.checked[split] = len(todo)
        for sample_id in todo:
            _check_sample(ds, root, split, sample_id, tasks, report)
    return report


def check_dataset(root: str | os.PathLike[str], dataset: str) -> list[Problem]:
    """Validate a whole NYUD_MT (``dataset="nyud"``) or PASCAL_MT (``"pascal"``) folder.

    Returns every problem found (empty list = the folder is fine): missing folders or split files, ids in a
    split without their files, unreadable or truncated images and labels, label sizes that cannot be fitted to
    the image, values out of range, NaN/inf.
    """
    return check_dataset_report(root, dataset).problems


def run_check(
    root: str | os.PathLike[str],
    dataset: str,
    tasks: Sequence[str] | None = None,
    max_samples: int | None = None,
    print_fn: Callable[[str], None] = print,
) -> int:
    """Check a folder, print a summary (counts per split, per-task coverage, every problem); exit code 0/1.

    ``tasks`` restricts the check to some tasks, ``max_samples`` to the first ids of each split.
    """
    report = check_dataset_report(root, dataset, tasks, max_samples)
    print_fn(f"dataset {report.dataset} at {report.root}")
    for split in formats.SPLITS:
        if split not in report.split_counts:
            print_fn(f"  {split}: no split file")
            continue
        n = report.split_counts[split]
        checked = report.checked.get(split, 0)
        extra = f" ({checked} checked)" if checked != n else ""
        print_fn(f"  {split}: {n} ids{extra}")
        for t, ok in report.coverage.get(split, {}).items():
            print_fn(f"    {t:<12} {ok}/{checked} readable")
    if report.problems:
        print_fn(f"{len(report.problems)} problem(s):")
        for p in report.problems:
            print_fn(f"  - {p}")
        return 1
    print_fn("no problems found")
    return 0


def add_check_arguments(parser: Any) -> None:
    """Options of ``medusa data check``."""
    parser.add_argument("--root", required=True, help="dataset folder (NYUD_MT or PASCAL_MT layout)")
    parser.add_argument("--dataset", required=True, choices=["nyud", "pascal"], help="which layout")
    parser.add_argument("--tasks", default=None, help="comma-separated tasks to check (default: all)")
    parser.add_argument("--max-samples", type=int, default=None, help="check only the first N ids per split")


def run_check_cli(args: Any) -> int:
    """``medusa data check``: exit code 0 when the folder is valid, 1 when problems were found."""
    tasks = [t for t in args.tasks.split(",") if t] if args.tasks else None
    return run_check(args.root, args.dataset, tasks=tasks, max_samples=args.max_samples)
