"""``medusa data check``: validate a dataset folder and list every problem, writing nothing.

Two kinds of dataset: a NYUD_MT or PASCAL_MT folder (real or synthetic, ``dataset="nyud"`` / ``"pascal"``) and
a generic dataset declared by a ``dataset.yaml`` (:mod:`medusa_mtl.data.generic`; ``dataset`` is the YAML's
path, or ``None`` with a ``root`` that holds one).

:func:`check_dataset` never stops at the first problem: it reports missing folders and split files, ids that
appear in a split without their files, overlapping or duplicated ids, unreadable or truncated images, label
sizes that do not fit the image, values out of range and NaN/inf, each as a :class:`Problem`. For a generic
dataset it also reports a ``dataset.yaml`` that cannot be used (the problem names the file and the field; the
files are then not checked, as the declaration says what they should be), several files for one id, labels
outside the declared classes and PNGs of another bit depth than declared. Files that belong to no id of a
split are not a problem. :func:`run_check` prints a summary and returns an exit code for the CLI.
"""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..options import positive_int
from . import formats, generic
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
        field: the ``dataset.yaml`` field concerned, if any (e.g. ``"tasks.lanes.kind"``).
    """

    path: str
    message: str
    split: str | None = None
    sample_id: str | None = None
    task: str | None = None
    field: str | None = None

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
    files_checked: bool = True
    """False when the check stopped before the files (a ``dataset.yaml`` that cannot be used)."""
    kinds: dict[str, str] = field(default_factory=dict)
    """task -> label kind, for a generic dataset (empty for NYUD / PASCAL)."""
    class_pixels: dict[str, np.ndarray] = field(default_factory=dict)
    """segmentation task -> pixels per class, then ignored pixels (last entry), over the labels read."""
    notes: list[str] = field(default_factory=list)
    """Things that are valid but look like a mistake (they do not change the exit code)."""


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
        raise ValueError(f"unknown dataset {dataset!r}; valid datasets: ['nyud', 'pascal'] "
                         f"or the path of a {generic.SPEC_FILE}")
    return key


def _builtin_key(dataset: str | os.PathLike[str] | None) -> str | None:
    """``"nyud"`` / ``"pascal"`` for a built-in dataset name, ``None`` for a ``dataset.yaml`` (path, folder, or
    ``dataset=None``); an unknown plain name is an error."""
    if dataset is None or isinstance(dataset, os.PathLike):
        return None
    text = str(dataset)
    try:
        return _dataset_key(text)
    except ValueError:
        # a name that looks like a path is a generic dataset even when the file is missing: that is then
        # reported as a problem of the file, like any other unusable dataset.yaml
        if text.endswith((".yaml", ".yml")) or os.sep in text or generic.find_spec_file(text) is not None:
            return None
        raise


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


def _segmentation_notes(spec: generic.DatasetSpec, report: CheckReport) -> None:
    """Classes that never occur, and a 0/255 mask declared as two classes (255 is the default ignore value, so
    the foreground would be ignored and never learned: a mask is ``kind: binary``)."""
    for t, tally in report.class_pixels.items():
        ts = spec.task(t)
        per_class, ignored = tally[:-1], int(tally[-1])
        total = int(tally.sum())
        absent = [ts.classes[i] if i < len(ts.classes) else str(i) for i in np.flatnonzero(per_class == 0)]
        if not absent or total == 0:
            continue
        note = f"task {t!r}: class(es) {absent} occur in none of the labels read"
        if ignored > 0.25 * total:
            stored = formats.IGNORE_INDEX if ts.ignore is None else ts.ignore  # the value in the files
            note += (f", and {100 * ignored / total:.0f} % of the pixels hold the ignore value "
                     f"{stored}: a 0/{stored} mask declared as classes? a mask is `kind: binary`")
        report.notes.append(note)


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


# ----------------------------------------------------------------------------------------------------------
# generic datasets (dataset.yaml)
# ----------------------------------------------------------------------------------------------------------


def _spec_problem(e: generic.DatasetSpecError) -> Problem:
    text = str(e)
    prefix = f"{e.path}: "
    return Problem(e.path or "dataset.yaml", text[len(prefix):] if text.startswith(prefix) else text,
                   field=e.field)


def _check_generic(
    root: str | os.PathLike[str] | None,
    dataset: str | os.PathLike[str] | None,
    tasks: Sequence[str] | None,
    max_samples: int | None,
) -> CheckReport:
    if dataset is None and root is None:
        raise ValueError(f"give the dataset folder or its {generic.SPEC_FILE}")
    where = Path(dataset if dataset is not None else root)  # type: ignore[arg-type]
    folder = where.parent if where.suffix in (".yaml", ".yml") else where
    report = CheckReport(str(root if root is not None else folder), str(where))
    try:
        spec = generic.load_spec(where)
    except generic.DatasetSpecError as e:
        # nothing else can be checked: the declaration says which folders and values the files should have
        report.problems.append(_spec_problem(e))
        report.files_checked = False
        return report
    if root is not None:
        spec = spec.with_root(root)
    assert spec.root is not None
    report.root, report.dataset = str(spec.root), spec.name
    try:
        # a task name clashing with a built-in task or another dataset's task of another kind would stop
        # training; the files can still be checked against the declaration
        generic.declare_spec_tasks(spec)
    except generic.DatasetSpecError as e:
        report.problems.append(_spec_problem(e))

    names = list(spec.task_names if tasks is None else tasks)
    unknown = [t for t in names if t not in spec.task_names]
    if unknown:
        raise ValueError(f"unknown task(s) {unknown} for {spec.name}; valid tasks: {list(spec.task_names)}")
    report.kinds = {t: spec.task(t).kind for t in names}
    if not spec.root.is_dir():
        report.problems.append(Problem(str(spec.root), "dataset root folder does not exist"))
        return report

    # one problem per missing folder, not one per id: the ids' files are then skipped
    images: generic.FileIndex | None = None
    try:
        images = generic.FileIndex(spec.image_dir(), generic.IMAGE_SUFFIXES, "images")
    except DataFormatError as e:
        report.problems.append(Problem(e.path, e.reason, task="image"))
    labels: dict[str, generic.FileIndex] = {}
    for t in names:
        ts = spec.task(t)
        try:
            labels[t] = generic.FileIndex(spec.task_dir(t), generic.LABEL_SUFFIXES,
                                          f"labels of the {ts.kind} task {t!r}")
        except DataFormatError as e:
            report.problems.append(Problem(e.path, e.reason, task=t))

    split_ids: dict[str, list[str]] = {}
    for split in spec.splits:
        try:
            split_ids[split] = generic.read_ids(spec, split)
        except DataFormatError as e:
            report.problems.append(Problem(e.path, e.reason, split))
            continue
        if not split_ids[split]:
            report.problems.append(Problem(str(spec.split_path(split)), "split file lists no id", split))
        report.split_counts[split] = len(split_ids[split])
    if "train" in split_ids and "val" in split_ids:
        both = sorted(set(split_ids["train"]) & set(split_ids["val"]))
        if both:
            report.problems.append(
                Problem(str(spec.root), f"ids in both train and val: {both[:10]} ({len(both)} in all)")
            )

    for split, ids in split_ids.items():
        report.coverage[split] = dict.fromkeys(names, 0)
        todo = ids if max_samples is None else ids[:max_samples]
        report.checked[split] = len(todo)
        for sample_id in todo:
            _check_generic_sample(spec, images, labels, split, sample_id, names, report)
    _segmentation_notes(spec, report)
    return report


def _check_generic_sample(
    spec: generic.DatasetSpec,
    images: generic.FileIndex | None,
    labels: dict[str, generic.FileIndex],
    split: str,
    sample_id: str,
    tasks: Sequence[str],
    report: CheckReport,
) -> None:
    hw: tuple[int, int] | None = None
    if images is not None:
        try:
            image = formats.read_image(images.get(sample_id))
            hw = (int(image.shape[0]), int(image.shape[1]))
        except DataFormatError as e:
            report.problems.append(_problem(e, split, sample_id, "image"))
    for t in tasks:
        if t not in labels:
            continue
        try:
            path = labels[t].get(sample_id)
        except DataFormatError as e:
            report.problems.append(_problem(e, split, sample_id, t))
            continue
        try:
            # without the image (missing or unreadable) the label is still validated on its own
            label = generic.read_label(path, spec.task(t), hw)
        except DataFormatError as e:
            report.problems.append(_problem(e, split, sample_id, t))
        except (OSError, ValueError) as e:  # a file no reader anticipated: still one problem, not a crash
            report.problems.append(Problem(str(path), f"unreadable label: {e}", split, sample_id, t))
        else:
            report.coverage[split][t] += 1
            ts = spec.task(t)
            if ts.kind == "segmentation":
                counts = np.bincount(np.asarray(label).ravel().astype(np.int64), minlength=256)
                tally = np.append(counts[: ts.channels], counts[formats.IGNORE_INDEX])
                report.class_pixels[t] = report.class_pixels.get(t, 0) + tally


def check_dataset_report(
    root: str | os.PathLike[str] | None,
    dataset: str | os.PathLike[str] | None = None,
    tasks: Sequence[str] | None = None,
    max_samples: int | None = None,
) -> CheckReport:
    """Validate a dataset folder; see :func:`check_dataset`. Also returns per-split counts and coverage."""
    key = _builtin_key(dataset)
    if key is None:
        return _check_generic(root, dataset, tasks, max_samples)
    if root is None:
        raise ValueError(f"--root: give the {key} dataset folder")
    ds = key
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


def check_dataset(
    root: str | os.PathLike[str] | None, dataset: str | os.PathLike[str] | None = None
) -> list[Problem]:
    """Validate a whole NYUD_MT (``dataset="nyud"``) or PASCAL_MT (``"pascal"``) folder, or a generic dataset
    (``dataset`` = its ``dataset.yaml`` or the folder holding it; or ``dataset=None`` and ``root`` holding one;
    ``root`` may be ``None`` then: the YAML's folder).

    Returns every problem found (empty list = the folder is fine): missing folders or split files, ids in a
    split without their files, unreadable or truncated images and labels, label sizes that cannot be fitted to
    the image, values out of range, NaN/inf; for a generic dataset also an unusable ``dataset.yaml`` (with its
    field), several files for one id, values outside the declared classes and PNGs of the wrong bit depth.
    """
    return check_dataset_report(root, dataset).problems


def run_check(
    root: str | os.PathLike[str] | None,
    dataset: str | os.PathLike[str] | None = None,
    tasks: Sequence[str] | None = None,
    max_samples: int | None = None,
    print_fn: Callable[[str], None] = print,
) -> int:
    """Check a folder, print a summary (counts per split, per-task coverage, every problem); exit code 0/1.

    ``tasks`` restricts the check to some tasks, ``max_samples`` to the first ids of each split.
    """
    report = check_dataset_report(root, dataset, tasks, max_samples)
    print_fn(f"dataset {report.dataset} at {report.root}")
    if report.kinds:
        print_fn("  tasks: " + ", ".join(f"{t} ({k})" for t, k in report.kinds.items()))
    for split in formats.SPLITS if report.files_checked else ():
        if split not in report.split_counts:
            print_fn(f"  {split}: no split file")
            continue
        n = report.split_counts[split]
        checked = report.checked.get(split, 0)
        extra = f" ({checked} checked)" if checked != n else ""
        print_fn(f"  {split}: {n} ids{extra}")
        for t, ok in report.coverage.get(split, {}).items():
            print_fn(f"    {t:<12} {ok}/{checked} readable")
    for note in report.notes:
        print_fn(f"note: {note}")
    if report.problems:
        print_fn(f"{len(report.problems)} problem(s):")
        for p in report.problems:
            print_fn(f"  - {p}")
        return 1
    print_fn("no problems found")
    return 0


def add_check_arguments(parser: Any) -> None:
    """Options of ``medusa data check``."""
    parser.add_argument("--root", default=None,
                        help="dataset folder (NYUD_MT or PASCAL_MT layout, or a folder holding a dataset.yaml; "
                             "default for a dataset.yaml: its folder)")
    parser.add_argument("--dataset", default=None,
                        help="nyud, pascal or the path of a dataset.yaml "
                             "(default: the dataset.yaml in --root)")
    parser.add_argument("--tasks", default=None, help="comma-separated tasks to check (default: all)")
    parser.add_argument("--max-samples", type=positive_int, default=None, help="check only the first N ids per split")


def run_check_cli(args: Any) -> int:
    """``medusa data check``: exit code 0 when the folder is valid, 1 when problems were found."""
    if args.root is None and args.dataset is None:
        raise ValueError(f"give --root (a NYUD_MT / PASCAL_MT folder with --dataset nyud|pascal, or a folder "
                         f"holding a {generic.SPEC_FILE}) or --dataset PATH/{generic.SPEC_FILE}")
    if args.dataset is None and generic.find_spec_file(args.root) is None:
        raise ValueError(f"--root {args.root}: no {generic.SPEC_FILE} there; pass --dataset nyud|pascal "
                         f"(or the path of a {generic.SPEC_FILE})")
    tasks = [t for t in args.tasks.split(",") if t] if args.tasks else None
    return run_check(args.root, args.dataset, tasks=tasks, max_samples=args.max_samples)
