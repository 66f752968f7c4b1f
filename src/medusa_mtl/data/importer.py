"""``medusa data import``: turn a plain folder of images and per-task label folders into the generic layout.

The input folder holds one image folder (default ``images``) and one sub-folder per task; labels are matched to
images by file stem. The task's kind is inferred from its label files (or given with ``--kind``), and the result
is the layout of :mod:`medusa_mtl.data.generic` (``dataset.yaml``, the copied files and a deterministic
train/val split). Nothing is asked interactively: what cannot be inferred is an error that names the folder
and the option to set.

Input::

    raw/
      images/0001.jpg ...
      drivable/0001.png ...      8-bit, values {0, 1} or {0, 255}        -> binary
      lanes/0001.png ...         8-bit or palette, class indices (255 = ignore) -> segmentation
      depth/0001.png ...         16-bit single channel (millimetres)     -> depth
      normals/0001.npy ...       float H x W x 3 unit vectors            -> normals

Inference, per task folder (every label file is read; all must have the same format):

* 16-bit single-channel PNG -> ``depth`` (``bits: 16``, ``scale: 0.001``: the PNG stores millimetres).
* 8-bit single-channel or palette PNG (or an integer ``.npy`` H x W) whose values are all in {0, 1} or all in
  {0, 255} -> ``binary`` (``edge`` when the folder is named ``edge`` / ``edges``); other values ->
  ``segmentation`` with classes ``class_0..class_K`` (K = the largest value; 255 is ignore, not a class);
  palette PNGs that share distinct colours for those classes give the classes their colours.
* float ``.npy`` H x W x 3 whose non-zero vectors all have a norm within 0.9..1.1 -> ``normals``; any other
  ``.npy`` H x W x C -> ``regression`` with C channels.
* float ``.npy`` H x W -> ``binary`` / ``edge`` if it only holds 0 and 1; else it is ambiguous (depth or
  regression) and ``--kind NAME=depth`` / ``--kind NAME=regression`` must say which.
* RGB PNG -> ambiguous (normals or colour-coded classes): ``--kind NAME=normals``.

``--classes NAME=a,b,c`` names a segmentation task's classes (and makes the task a segmentation task).

Example::

    $ medusa data import --from raw --out data/roads --classes lanes=background,solid,dashed

    >>> import_folder("raw", "data/roads", kinds={"depth": "depth"})  # doctest: +SKIP
    PosixPath('data/roads/dataset.yaml')
"""

from __future__ import annotations

import os
import re
import shutil
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, UnidentifiedImageError

from .. import tasks as task_registry
from ..atomic import make_temp_dir
from ..errors import MedusaError
from ..options import open_fraction, output_dir
from . import formats, generic
from .formats import IGNORE_INDEX, DataFormatError

EDGE_FOLDER_NAMES = ("edge", "edges")
NORMAL_NORM_RANGE = (0.9, 1.1)
"""Non-zero vectors of a float H x W x 3 ``.npy`` with norms in this range make the folder ``normals``."""
_SKIP_NAMES = ("__MACOSX",)
_MAX_LISTED = 5
_FORM_PNG8 = "8-bit single-channel PNG"
_FORM_PNG16 = "16-bit single-channel PNG"
_SINGLE_FORMS = (_FORM_PNG8, _FORM_PNG16, "float .npy H x W", "integer .npy H x W")


class FolderImportError(MedusaError, ValueError):
    """The folder cannot be imported as it is; the message names the file or folder and what to change."""


@dataclass
class _Probe:
    """What one label file looks like: its format, size, and (for single-channel data) its values."""

    path: Path
    form: str
    shape: tuple[int, ...]
    values: np.ndarray | None = None  # sorted unique values of single-channel whole-number data
    zero_one: bool = False  # only 0 and 1 (float .npy H x W)
    unit_norm: bool | None = None  # float H x W x 3: all non-zero vectors unit length; None: no such vector
    palette: tuple[tuple[int, int, int], ...] | None = None  # a palette PNG's colours, by index


@dataclass
class _TaskResult:
    name: str
    kind: str
    given: bool
    decl: dict[str, Any]
    notes: list[str] = field(default_factory=list)


@dataclass
class ImportResult:
    """What :func:`import_dataset` wrote: the ``dataset.yaml`` path, the tasks and the split sizes."""

    path: Path
    name: str
    size: tuple[int, int]
    tasks: list[_TaskResult]
    n_train: int
    n_val: int


# ----------------------------------------------------------------------------------------------------------
# options
# ----------------------------------------------------------------------------------------------------------


def parse_pairs(values: Sequence[str] | None, option: str) -> dict[str, str]:
    """``["a=x", "b=y"]`` -> ``{"a": "x", "b": "y"}``; a malformed entry is an error naming ``option``."""
    out: dict[str, str] = {}
    for v in values or ():
        task, sep, value = v.partition("=")
        if not sep or not task.strip() or not value.strip():
            raise FolderImportError(f"{option} {v!r}: expected TASK=VALUE")
        out[task.strip()] = value.strip()
    return out


def parse_size(text: str) -> tuple[int, int]:
    """``"256x320"`` -> ``(256, 320)``; both must be positive multiples of 32 (the networks' stride)."""
    m = re.fullmatch(r"\s*(\d+)\s*[xX,]\s*(\d+)\s*", text)
    if m is None:
        raise FolderImportError(f"--size {text!r}: expected HxW, e.g. 256x320")
    h, w = int(m.group(1)), int(m.group(2))
    if h <= 0 or w <= 0 or h % 32 or w % 32:
        raise FolderImportError(f"--size {text!r}: height and width must be positive multiples of 32")
    return h, w


def default_name(out: Path) -> str:
    """The dataset name derived from the output folder's name (lower case, other characters -> ``_``)."""
    return re.sub(r"[^a-z0-9_]", "_", out.resolve().name.lower())


# ----------------------------------------------------------------------------------------------------------
# scanning
# ----------------------------------------------------------------------------------------------------------


def _skipped(entry: str) -> bool:
    # hidden files (.DS_Store, editor backups) and archive leftovers are not part of anyone's data
    return entry.startswith(".") or entry in _SKIP_NAMES


def _list_files(folder: Path, suffixes: Sequence[str], what: str) -> dict[str, Path]:
    """Stem -> file of ``folder``; any other entry is an error, as silently dropping it would lose data."""
    files: dict[str, Path] = {}
    for entry in sorted(os.listdir(folder)):
        if _skipped(entry):
            continue
        p = folder / entry
        if p.is_dir():
            raise FolderImportError(f"{p}: a sub-folder inside {folder}; {what} must lie directly in {folder}")
        if p.suffix.lower() not in suffixes:
            raise FolderImportError(f"{p}: not one of {what} (expected {', '.join(suffixes)} files); "
                                    "move it out of the folder")
        if any(c.isspace() for c in p.stem):
            raise FolderImportError(f"{p}: the file name holds whitespace, which the split files cannot hold; "
                                    "rename the file (and its labels)")
        if p.stem in files:
            raise FolderImportError(f"{folder}: two files for {p.stem!r}: {files[p.stem].name} and {p.name}; "
                                    "keep one")
        files[p.stem] = p
    return files


def _listing(paths: Sequence[Path], total: int) -> str:
    more = f" and {total - len(paths)} more" if total > len(paths) else ""
    return ", ".join(str(p) for p in paths) + more


def _check_out(out: Path, src: Path) -> None:
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise FolderImportError(f"--out {out}: exists and is not an empty folder; choose a new folder")
    try:
        out.resolve().relative_to(src.resolve())
    except ValueError:
        return
    raise FolderImportError(f"--out {out}: lies inside the input folder {src}; choose a folder outside it")


# ----------------------------------------------------------------------------------------------------------
# reading label files
# ----------------------------------------------------------------------------------------------------------


def _whole_values(arr: np.ndarray) -> np.ndarray | None:
    if arr.dtype.kind in "iub":
        return np.unique(arr.astype(np.int64))
    if arr.dtype.kind == "f" and np.all(np.isfinite(arr)) and np.all(arr == np.round(arr)):
        return np.unique(arr.astype(np.int64))
    return None


def _probe(path: Path) -> _Probe:
    if path.suffix.lower() == ".npy":
        arr = formats.read_npy(path, "a label array")
        if arr.ndim == 3 and arr.shape[2] == 1:
            arr = arr[..., 0]
        number = "float" if arr.dtype.kind == "f" else "integer"
        if arr.ndim == 2:
            p = _Probe(path, f"{number} .npy H x W", arr.shape, values=_whole_values(arr))
            if number == "float":
                p.zero_one = bool(np.isin(arr, (0.0, 1.0)).all())
            return p
        if arr.ndim != 3:
            raise FolderImportError(f"{path}: a label array must be H x W or H x W x C, got shape {arr.shape}")
        p = _Probe(path, f"{number} .npy H x W x {arr.shape[2]}", arr.shape)
        if number == "float" and arr.shape[2] == 3:
            norm = np.linalg.norm(np.nan_to_num(arr.astype(np.float64), nan=0.0, posinf=0.0, neginf=0.0), axis=-1)
            used = norm > 0
            if used.any():
                lo, hi = NORMAL_NORM_RANGE
                p.unit_norm = bool(np.all((norm[used] >= lo) & (norm[used] <= hi)))
        return p
    try:
        with Image.open(path) as im:
            im.load()
            mode = im.mode
            arr = np.array(im)
            flat = im.getpalette() if mode == "P" else None
    except (OSError, UnidentifiedImageError, ValueError, SyntaxError) as e:
        raise DataFormatError(path, f"unreadable or truncated PNG label: {e}") from None
    if mode in ("I;16", "I;16B", "I;16L", "I"):
        return _Probe(path, _FORM_PNG16, arr.shape, values=_whole_values(arr))
    if mode in ("L", "P", "1"):
        palette = None if not flat else tuple(tuple(flat[i:i + 3]) for i in range(0, len(flat) - 2, 3))
        return _Probe(path, _FORM_PNG8, arr.shape, values=_whole_values(arr), palette=palette)
    if mode in ("RGB", "RGBA"):
        return _Probe(path, f"{mode} PNG", arr.shape)
    raise FolderImportError(f"{path}: unsupported PNG mode {mode}; save labels as gray (L), palette (P), "
                            "16-bit gray or RGB PNGs")


# ----------------------------------------------------------------------------------------------------------
# kinds
# ----------------------------------------------------------------------------------------------------------


def _kind_hint(task: str, kinds: str) -> str:
    return " or ".join(f"--kind {task}={k}" for k in kinds.split("|"))


def _infer_kind(task: str, folder: Path, probes: list[_Probe]) -> str:
    """The kind the label files of ``folder`` show; ambiguous content is an error naming the option to set."""
    form = probes[0].form
    binary_kind = "edge" if task.lower() in EDGE_FOLDER_NAMES else "binary"
    if form == _FORM_PNG16:
        return "depth"
    if form.endswith("PNG") and form != _FORM_PNG8:
        raise FolderImportError(
            f"{folder}: {form} labels could be normals or colour-coded classes; set {_kind_hint(task, 'normals')} "
            "(for classes, store class indices as a gray or palette PNG instead)")
    if form in (_FORM_PNG8, "integer .npy H x W"):
        union = np.unique(np.concatenate([p.values for p in probes if p.values is not None]))
        if union.min() < 0 or union.max() > 255:
            raise FolderImportError(
                f"{folder}: integer labels with values {int(union.min())}..{int(union.max())} are neither masks "
                f"nor class indices; set {_kind_hint(task, 'depth|regression')}")
        if set(union.tolist()) <= {0, 1} or set(union.tolist()) <= {0, 255}:
            return binary_kind
        return "segmentation"
    if form == "float .npy H x W":
        if all(p.zero_one for p in probes):
            return binary_kind
        raise FolderImportError(
            f"{folder}: float H x W arrays could be depth or a regression target; set "
            f"{_kind_hint(task, 'depth|regression')}")
    if form == "float .npy H x W x 3":
        verdicts = [p for p in probes if p.unit_norm is not None]
        if not verdicts or not any(p.unit_norm for p in verdicts):
            return "regression"
        first = verdicts[0]
        for p in verdicts[1:]:
            if p.unit_norm != first.unit_norm:
                unit, other = (first, p) if first.unit_norm else (p, first)
                raise FolderImportError(
                    f"{folder}: {unit.path.name} holds unit vectors (normals) but {other.path.name} does not; fix "
                    f"the file or set {_kind_hint(task, 'normals|regression')}")
        return "normals"
    return "regression"  # any other .npy H x W x C


def _palette_colors(probes: list[_Probe], n: int) -> list[tuple[int, int, int]] | None:
    """The colours of classes 0..n-1 when every file is a palette PNG with the same, distinct colours for them."""
    palettes = [p.palette for p in probes]
    if not palettes or any(pal is None or len(pal) < n for pal in palettes):
        return None
    first = palettes[0][:n]  # type: ignore[index]
    if any(pal[:n] != first for pal in palettes) or len(set(first)) != n:  # type: ignore[index]
        return None
    return [tuple(int(v) for v in c) for c in first]  # type: ignore[misc]


def _declare(task: str, folder: Path, kind: str, probes: list[_Probe],
             class_names: Sequence[str] | None) -> tuple[dict[str, Any], list[str]]:
    """The ``dataset.yaml`` entry of a task of ``kind`` with these label files (files that cannot be read as
    that kind are an error naming the file)."""
    form = probes[0].form
    decl: dict[str, Any] = {"kind": kind}
    notes: list[str] = []
    bits = 16 if form == _FORM_PNG16 else 8

    def need(ok: bool, what: str) -> None:
        if not ok:
            raise FolderImportError(f"{folder}: {form} labels cannot be {kind} labels ({what}); fix the files "
                                    f"or set another --kind {task}=KIND")

    if kind == "segmentation":
        need(form in _SINGLE_FORMS, "expected class indices in a single channel; an RGB PNG needs class colours")
        for p in probes:
            if p.values is None:
                raise FolderImportError(f"{p.path}: segmentation labels must hold whole class indices")
        if class_names is not None:
            n = len(class_names)
            for p in probes:
                bad = p.values[((p.values < 0) | (p.values >= n)) & (p.values != IGNORE_INDEX)]
                if bad.size:
                    raise FolderImportError(
                        f"{p.path}: values {bad[:8].tolist()} are not among the {n} classes of --classes {task}=... "
                        f"(indices 0..{n - 1}, {IGNORE_INDEX} = ignore); give all classes")
            decl["classes"] = list(class_names)
        else:
            union = np.unique(np.concatenate([p.values for p in probes]))
            union = union[union != IGNORE_INDEX]
            top = int(union.max()) if union.size else 0
            if union.size and (union.min() < 0 or top >= IGNORE_INDEX):
                raise FolderImportError(
                    f"{folder}: class indices must lie in 0..{IGNORE_INDEX - 1} ({IGNORE_INDEX} = ignore), found "
                    f"{int(union.min())}..{top}")
            decl["classes"] = [f"class_{i}" for i in range(max(top, 1) + 1)]
            notes.append(f"classes named class_0..class_{max(top, 1)} after the label values "
                         f"({IGNORE_INDEX} = ignore); rename them here or import with --classes {task}=a,b,...")
        colors = _palette_colors(probes, len(decl["classes"]))
        if colors is not None:  # the files' own palette: pictures of labels and predictions use its colours
            decl["classes"] = [{"name": n, "color": list(c)} for n, c in zip(decl["classes"], colors)]
            notes.append("class colours taken from the palette PNGs")
        if form == _FORM_PNG16:
            decl["bits"] = 16
    elif kind in ("binary", "edge"):
        need(form in _SINGLE_FORMS, "expected a single-channel mask")
        if form == _FORM_PNG16:
            decl["bits"] = 16
    elif kind == "depth":
        need(form in _SINGLE_FORMS, "expected a single-channel depth map")
        if form in (_FORM_PNG8, _FORM_PNG16):
            decl["bits"] = bits
            decl["scale"] = 0.001
            notes.append("PNG depth is read as millimetres: metres = value * scale (0.001); 0 = invalid")
        else:
            decl["scale"] = 1.0
            notes.append(".npy depth is read as metres (scale 1.0); 0 = invalid")
    elif kind == "normals":
        need(form in ("RGB PNG", "RGBA PNG") or (form.endswith("H x W x 3") and ".npy" in form),
             "expected an RGB PNG or an H x W x 3 .npy")
        read_as = "RGB PNG normals are read as n = 2 v / 255 - 1, in the" if form.endswith("PNG") else "normals in the"
        notes.append(f"{read_as} camera frame: x right, y up, z towards the camera")
    else:  # regression
        if form in _SINGLE_FORMS:
            channels = 1
        elif form in ("RGB PNG", "RGBA PNG"):
            channels = 3 if form == "RGB PNG" else 4
        else:
            channels = int(probes[0].shape[2])
        decl["channels"] = channels
        if form == _FORM_PNG16:
            decl["bits"] = 16
    return decl, notes


def _check_builtin_name(task: str, kind: str, folder: Path) -> None:
    # a declared task shares its name with the built-in task of that name, which must then be of the same kind
    existing = task_registry.TASKS.get(task)
    if existing is not None and existing.builtin and existing.label_kind != kind:
        raise FolderImportError(f"{folder}: task name {task!r} is the built-in {existing.label_kind} task, but its "
                                f"labels are {kind}; rename the folder (or set --kind {task}={existing.label_kind})")


# ----------------------------------------------------------------------------------------------------------
# import
# ----------------------------------------------------------------------------------------------------------


def import_folder(
    src: str | os.PathLike[str],
    out: str | os.PathLike[str],
    *,
    name: str | None = None,
    kinds: Mapping[str, str] | None = None,
    classes: Mapping[str, Sequence[str]] | None = None,
    val_fraction: float = 0.2,
    seed: int = 0,
    size: tuple[int, int] | None = None,
    images: str = "images",
) -> Path:
    """Import the plain folder ``src`` into the generic layout at ``out``; returns ``out/dataset.yaml``.

    Args:
        src: folder with ``images`` (JPEG/PNG) and one label folder per task (files named after the images).
        out: new (or empty) output folder; it only appears once everything is written and validated.
        name: dataset name (default: ``out``'s folder name, lower case, other characters -> ``_``).
        kinds: task -> kind, set or overriding the inferred kind (see the module docstring).
        classes: task -> class names of a segmentation task (implies kind ``segmentation``).
        val_fraction: share of the images in the ``val`` split (0 < f < 1; both splits get at least one image:
            ``val`` is the split that evaluation and ``medusa data check`` expect).
        seed: seed of the split (sorted ids permuted by ``numpy.random.default_rng(seed)``).
        size: network input ``(H, W)`` (default: median image size rounded down to multiples of 32, >= 32).
        images: name of the image folder inside ``src``.

    Raises:
        FolderImportError: the folder or the options cannot be imported (the message names what to change).
        DataFormatError: an unreadable image or label file.
    """
    return import_dataset(src, out, name=name, kinds=kinds, classes=classes, val_fraction=val_fraction, seed=seed,
                          size=size, images=images).path


def import_dataset(
    src: str | os.PathLike[str],
    out: str | os.PathLike[str],
    *,
    name: str | None = None,
    kinds: Mapping[str, str] | None = None,
    classes: Mapping[str, Sequence[str]] | None = None,
    val_fraction: float = 0.2,
    seed: int = 0,
    size: tuple[int, int] | None = None,
    images: str = "images",
) -> ImportResult:
    """:func:`import_folder`, returning what was written (for the summary of ``medusa data import``)."""
    src, out = Path(src), Path(out)
    kinds = dict(kinds or {})
    classes = {k: list(v) for k, v in (classes or {}).items()}
    if not 0.0 < float(val_fraction) < 1.0:
        raise FolderImportError(f"--val-fraction {val_fraction}: expected a number with 0 < f < 1 (the val split is "
                                "the one evaluated; an empty one is not a dataset `medusa data check` accepts)")
    if name is None:
        name = default_name(out)
        option = f"the name {name!r} derived from --out {out}"
    else:
        option = f"--name {name!r}"
    try:
        task_registry.check_dataset_name(name)
    except ValueError as e:
        raise FolderImportError(f"{option}: {e} (pass --name NAME)") from None
    for task, kind in kinds.items():
        if kind not in task_registry.LABEL_KINDS:
            raise FolderImportError(f"--kind {task}={kind}: unknown kind; known kinds: "
                                    f"{', '.join(task_registry.LABEL_KINDS)}")
    for task, names in classes.items():
        if len(names) < 2 or any(not n for n in names) or len(set(names)) != len(names):
            raise FolderImportError(f"--classes {task}={','.join(names)}: expected at least 2 distinct, non-empty "
                                    "class names separated by commas")
        if kinds.get(task, "segmentation") != "segmentation":
            raise FolderImportError(f"--classes {task}=...: class names need a segmentation task, but --kind "
                                    f"{task}={kinds[task]}")

    if not src.is_dir():
        raise FolderImportError(f"--from {src}: no such folder")
    _check_out(out, src)
    image_dir = src / images
    if not image_dir.is_dir():
        raise FolderImportError(f"{image_dir}: no image folder {images!r} in {src} (name it with --images NAME)")
    image_files = _list_files(image_dir, generic.IMAGE_SUFFIXES, "the images")
    if not image_files:
        raise FolderImportError(f"{image_dir}: no images (.jpg, .jpeg or .png)")
    if len(image_files) < 2:
        raise FolderImportError(f"{image_dir}: one image; a dataset needs at least two (one train, one val)")

    task_dirs: dict[str, Path] = {}
    for entry in sorted(os.listdir(src)):
        p = src / entry
        if entry == images or _skipped(entry) or not p.is_dir():
            continue
        if not entry.isidentifier():
            raise FolderImportError(f"{p}: the folder name {entry!r} is the task's name and must be a Python-style "
                                    "identifier (letters, digits, '_', not starting with a digit); rename the folder")
        if entry == "splits":
            raise FolderImportError(f"{p}: 'splits' is the layout's folder of split files; rename the task folder")
        task_dirs[entry] = p
    if not task_dirs:
        raise FolderImportError(f"{src}: no task folders; put each task's labels in a sub-folder named after the "
                                f"task, next to {images}/")
    for option_name, given in (("--kind", kinds), ("--classes", classes)):
        for task in given:
            if task not in task_dirs:
                raise FolderImportError(f"{option_name} {task}=...: no task folder {src / task}; the tasks: "
                                        f"{sorted(task_dirs)}")

    label_files: dict[str, dict[str, Path]] = {}
    for task, folder in task_dirs.items():
        files = _list_files(folder, generic.LABEL_SUFFIXES, "the label files")
        missing = [image_files[s] for s in image_files if s not in files]
        if missing:
            raise FolderImportError(
                f"{folder}: no label for {len(missing)} image(s): {_listing(missing[:_MAX_LISTED], len(missing))} "
                f"(expected {folder}/<image name>.png or .npy)")
        orphans = [files[s] for s in files if s not in image_files]
        if orphans:
            raise FolderImportError(
                f"{folder}: {len(orphans)} label file(s) without an image in {image_dir}: "
                f"{_listing(orphans[:_MAX_LISTED], len(orphans))}")
        label_files[task] = files

    hw: dict[str, tuple[int, int]] = {}
    for stem, path in image_files.items():
        arr = formats.read_image(path)
        hw[stem] = (int(arr.shape[0]), int(arr.shape[1]))

    results: list[_TaskResult] = []
    for task, folder in task_dirs.items():
        probes = []
        for stem, path in label_files[task].items():
            p = _probe(path)
            if tuple(p.shape[:2]) != hw[stem]:
                raise FolderImportError(
                    f"{path}: label size {p.shape[0]}x{p.shape[1]} does not match its image "
                    f"{image_files[stem].name} ({hw[stem][0]}x{hw[stem][1]})")
            if probes and p.form != probes[0].form:
                raise FolderImportError(
                    f"{folder}: mixed label files: {probes[0].path.name} is a {probes[0].form} but {path.name} is a "
                    f"{p.form}; use one format per task folder")
            probes.append(p)
        given = task in kinds or task in classes
        kind = kinds.get(task) or ("segmentation" if task in classes else _infer_kind(task, folder, probes))
        decl, notes = _declare(task, folder, kind, probes, classes.get(task))
        _check_builtin_name(task, kind, folder)
        results.append(_TaskResult(task, kind, given, decl, notes))

    if size is None:
        med_h, med_w = (int(np.median([s[k] for s in hw.values()])) for k in (0, 1))
        size = (max(32, med_h // 32 * 32), max(32, med_w // 32 * 32))
    size = (int(size[0]), int(size[1]))

    ids = sorted(image_files)
    n_val = min(max(int(round(len(ids) * float(val_fraction))), 1), len(ids) - 1)  # both splits non-empty
    perm = np.random.default_rng(seed).permutation(len(ids))
    val_ids = sorted(ids[i] for i in perm[:n_val])
    train_ids = sorted(ids[i] for i in perm[n_val:])

    raw: dict[str, Any] = {"name": name, "size": list(size)}
    if images != "images":
        raw["images"] = images
    raw["tasks"] = {r.name: r.decl for r in results}
    generic.spec_from_dict(raw, path=out / generic.SPEC_FILE)  # a bad declaration fails before anything is written
    text = _header(src, results) + _dump(raw)

    _write(out, text, src, images, image_files, label_files, train_ids, val_ids, hw)
    return ImportResult(out / generic.SPEC_FILE, name, size, results, len(train_ids), len(val_ids))


def _dump(raw: Mapping[str, Any]) -> str:
    import yaml

    return yaml.safe_dump(dict(raw), sort_keys=False, default_flow_style=None, width=120)


def _header(src: Path, results: Sequence[_TaskResult]) -> str:
    where = str(src.resolve()).replace("\n", " ")
    inferred = ", ".join(f"{r.name} ({r.kind})" for r in results if not r.given) or "none"
    given = ", ".join(f"{r.name} ({r.kind})" for r in results if r.given) or "none"
    lines = [f"# Written by `medusa data import` from {where}.",
             f"# Kinds inferred from the label files: {inferred}.",
             f"# Kinds given with --kind / --classes: {given}."]
    for r in results:
        lines += [f"# tasks.{r.name}: {note}" for note in r.notes]
    return "\n".join(lines) + "\n"


def _write(out: Path, text: str, src: Path, images: str, image_files: Mapping[str, Path],
           label_files: Mapping[str, Mapping[str, Path]], train_ids: Sequence[str], val_ids: Sequence[str],
           hw: Mapping[str, tuple[int, int]]) -> None:
    """Write into a temporary sibling of ``out``, validate it and move it into place: a failure leaves nothing."""
    created = [p for p in reversed(out.absolute().parents) if not p.exists()]
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = make_temp_dir(out.parent, f".{out.name}.import-")
    try:
        for sub, files in ((images, image_files), *label_files.items()):
            (tmp / sub).mkdir()
            for path in files.values():
                shutil.copy2(path, tmp / sub / path.name)
        (tmp / "splits").mkdir()
        (tmp / "splits" / "train.txt").write_text("".join(f"{i}\n" for i in train_ids), encoding="utf-8")
        (tmp / "splits" / "val.txt").write_text("".join(f"{i}\n" for i in val_ids), encoding="utf-8")
        (tmp / generic.SPEC_FILE).write_text(text, encoding="utf-8")
        _validate(tmp, src, hw)
        if out.exists():
            out.rmdir()  # empty (checked): os.replace cannot replace a folder on every platform
        os.replace(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        for p in reversed(created):
            try:
                p.rmdir()
            except OSError:
                break
        raise


def _validate(root: Path, src: Path, hw: Mapping[str, tuple[int, int]]) -> None:
    """Read the written dataset as training will: every label through :func:`generic.read_label`."""
    spec = generic.load_spec(root / generic.SPEC_FILE)
    reader = generic.GenericReader(spec)
    ids = generic.read_ids(spec, "train") + generic.read_ids(spec, "val")
    for t in spec.tasks:
        for i in ids:
            path = reader.label_path(i, t.name)
            try:
                generic.read_label(path, t, hw[i])
            except DataFormatError as e:
                # name the user's file, not the temporary copy that is about to be removed
                original = src / Path(e.path).relative_to(root) if Path(e.path).is_relative_to(root) else e.path
                raise FolderImportError(f"{original}: {e.reason} (task {t.name!r} imported as {t.kind}; fix the "
                                        f"file or set --kind {t.name}=KIND)") from None


# ----------------------------------------------------------------------------------------------------------
# CLI
# ----------------------------------------------------------------------------------------------------------


def add_import_arguments(parser: Any) -> None:
    """Options of ``medusa data import``."""
    parser.add_argument("--from", dest="src", required=True, metavar="FOLDER",
                        help="folder with the image folder and one label folder per task (files matched by name)")
    parser.add_argument("--out", required=True, type=output_dir, metavar="DIR",
                        help="new (or empty) folder for the dataset")
    parser.add_argument("--name", default=None, help="dataset name (default: DIR's folder name, lower case)")
    parser.add_argument("--images", default="images", metavar="NAME", help="image folder inside FOLDER (images)")
    parser.add_argument("--kind", action="append", default=[], metavar="TASK=KIND",
                        help=f"set a task's kind ({', '.join(task_registry.LABEL_KINDS)}); repeatable")
    parser.add_argument("--classes", action="append", default=[], metavar="TASK=a,b,c",
                        help="class names of a segmentation task (index 0 first); repeatable")
    parser.add_argument("--val-fraction", type=open_fraction, default=0.2, metavar="F",
                        help="share of the images in the val split, 0 < F < 1 (default 0.2)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the train/val split (default 0)")
    parser.add_argument("--size", default=None, metavar="HxW",
                        help="network input size written to dataset.yaml (default: median image size, "
                             "rounded down to multiples of 32)")


def run_import(args: Any) -> int:
    """``medusa data import``: write the dataset and print a summary; exit code 0."""
    classes = {t: [c.strip() for c in v.split(",")] for t, v in parse_pairs(args.classes, "--classes").items()}
    result = import_dataset(
        args.src, args.out, name=args.name, kinds=parse_pairs(args.kind, "--kind"), classes=classes,
        val_fraction=args.val_fraction, seed=args.seed, size=None if args.size is None else parse_size(args.size),
        images=args.images)
    print(f"imported dataset {result.name!r} into {result.path.parent} (size {result.size[0]}x{result.size[1]})")
    width = max(len(t.name) for t in result.tasks)
    for t in result.tasks:
        extra = f", {len(t.decl['classes'])} classes" if t.kind == "segmentation" else ""
        extra += f", {t.decl['channels']} channel(s)" if t.kind == "regression" else ""
        print(f"  {t.name:<{width}}  {t.kind}{extra} ({'given' if t.given else 'inferred'})")
    print(f"splits: {result.n_train} train / {result.n_val} val")
    print(f"wrote {result.path}")
    return 0
