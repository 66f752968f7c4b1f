"""A generic multi-task dataset: ``dataset.yaml`` + ``images/`` + one folder per task + split files.

Any set of dense tasks of the kinds of :data:`medusa_mtl.tasks.LABEL_KINDS` can be trained, evaluated,
predicted and added to a trained model by UFL without editing code: the tasks are declared in the YAML.

Layout::

    my_dataset/
      dataset.yaml
      images/<id>.jpg|.jpeg|.png          RGB (gray / palette images are converted)
      <task folder>/<id>.png|.npy         one label file per image and task, same height and width
      splits/train.txt, splits/val.txt    one id per line (val is the split the reports score)

``dataset.yaml``::

    name: roads                  # the dataset's key: lower-case letters, digits, '_'
    size: [256, 320]             # default network input (H, W), multiples of 32 (default 256x256)
    augment: {flip_prob: 0.5, scales: [1.0, 1.2, 1.5], max_rotation: 0}   # optional
    tasks:
      drivable: {kind: binary}                       # mask: value > 0 is positive
      lanes:
        kind: segmentation
        classes: [background, solid, {name: dashed, color: [255, 255, 0]}]
        ignore: 255                                   # stored value of unlabelled pixels (default 255)
      depth: {kind: depth, scale: 0.001, invalid: 0}  # metres = stored value * scale
      heat: {kind: regression, channels: 2, loss: l2}

Per task (all optional except ``kind`` and a segmentation's ``classes``): ``folder`` (default: the task's
name), ``loss_weight`` (1.0), ``loss`` and ``dm_metric`` (the choices of the kind, see
:data:`medusa_mtl.tasks.TASK_KINDS`), ``bits`` (8 or 16: the bit depth a PNG label must have; default 16 for
depth, 8 otherwise), ``ignore`` (segmentation, binary, edge), ``scale`` / ``invalid`` (depth, regression),
``channels`` (regression).

Label files, by kind (PNG: 8 or 16 bit; palette PNGs are read as their indices; ``.npy``: no pickles):

* ``segmentation``: class index per pixel (``ignore`` = unlabelled); an RGB PNG is decoded with the classes'
  colours (every class then needs a colour). A value that is neither a class nor ``ignore`` is an error.
* ``binary`` / ``edge``: value > 0 is positive (so 0/1 and 0/255 masks both work), ``ignore`` = unlabelled.
* ``depth``: stored value * ``scale`` (default 0.001 for PNG, i.e. millimetres, 1.0 for ``.npy``);
  pixels equal to ``invalid`` (default 0) or not finite are invalid.
* ``normals``: RGB PNG with n = 2 v / 255 - 1, or float ``.npy`` H x W x 3; camera frame x right, y up,
  z towards the camera; (0, 0, 0) in a PNG and the zero vector in ``.npy`` are invalid.
* ``regression``: float ``.npy`` H x W (one channel) or H x W x C, or a gray PNG; value * ``scale``;
  ``invalid`` (and NaN) mark invalid values.

Example:
    >>> spec = load_spec("my_dataset/dataset.yaml")  # doctest: +SKIP
    >>> ds = GenericDataset(spec.root, "train", ["drivable", "lanes"], spec=spec)  # doctest: +SKIP
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, UnidentifiedImageError

from .. import tasks as task_registry
from . import formats
from .formats import IGNORE_INDEX, DataFormatError
from .transforms import AugmentParams

SPEC_FILE = "dataset.yaml"
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")
LABEL_SUFFIXES = (".png", ".npy")
DEFAULT_SIZE = (256, 256)
DEFAULT_AUGMENT = {"flip_prob": 0.5, "scales": [1.0, 1.2, 1.5], "max_rotation": 0.0}

_TASK_FIELDS = {
    "segmentation": {"classes", "ignore"},
    "binary": {"ignore"},
    "edge": {"ignore"},
    "depth": {"scale", "invalid"},
    "normals": set(),
    "regression": {"channels", "scale", "invalid"},
}
_COMMON_FIELDS = {"kind", "folder", "loss_weight", "loss", "dm_metric", "bits"}
_TOP_FIELDS = {"name", "tasks", "size", "augment", "images", "splits", "description"}


class DatasetSpecError(ValueError):
    """A ``dataset.yaml`` that cannot be used; the message names the file and the field."""

    def __init__(self, path: str | os.PathLike[str] | None, field_name: str, message: str) -> None:
        self.path = None if path is None else str(path)
        self.field = field_name
        where = f"{path}: " if path is not None else "dataset spec: "
        super().__init__(f"{where}field {field_name!r}: {message}")


@dataclass(frozen=True)
class TaskSpec:
    """One task of a ``dataset.yaml`` (see the module docstring for the fields)."""

    name: str
    kind: str
    folder: str
    channels: int
    classes: tuple[str, ...] = ()
    colors: tuple[tuple[int, int, int], ...] = ()
    ignore: int | None = None
    bits: int = 8
    scale: float | None = None
    invalid: float | None = None
    loss_weight: float = 1.0
    loss: str | None = None
    dm_metric: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """The normalised declaration (what :func:`spec_from_dict` reads back)."""
        d: dict[str, Any] = {"kind": self.kind, "folder": self.folder, "bits": self.bits,
                             "loss_weight": self.loss_weight}
        if self.kind == "segmentation":
            d["classes"] = [{"name": n, "color": list(c)} if self.colors else n
                            for n, c in zip(self.classes, self.colors or [()] * len(self.classes))]
        if self.kind == "regression":
            d["channels"] = self.channels
        for key in ("ignore", "scale", "invalid", "loss", "dm_metric"):
            if getattr(self, key) is not None:
                d[key] = getattr(self, key)
        return d


@dataclass(frozen=True)
class DatasetSpec:
    """A parsed ``dataset.yaml``: name, folders, default size, augmentation and tasks."""

    name: str
    root: Path | None
    tasks: tuple[TaskSpec, ...]
    size: tuple[int, int] = DEFAULT_SIZE
    augment: dict[str, Any] = field(default_factory=lambda: dict(DEFAULT_AUGMENT))
    images: str = "images"
    splits: dict[str, str] = field(default_factory=lambda: {"train": "splits/train.txt",
                                                            "val": "splits/val.txt"})
    path: Path | None = None

    @property
    def task_names(self) -> tuple[str, ...]:
        return tuple(t.name for t in self.tasks)

    def task(self, name: str) -> TaskSpec:
        """The declaration of task ``name`` (clear error listing the dataset's tasks otherwise)."""
        for t in self.tasks:
            if t.name == name:
                return t
        raise ValueError(f"dataset {self.name!r} has no task {name!r}; its tasks: {list(self.task_names)}")

    @property
    def kinds(self) -> dict[str, str]:
        """Task name -> label kind (what the transforms need to know)."""
        return {t.name: t.kind for t in self.tasks}

    def augment_params(self) -> AugmentParams:
        a = dict(self.augment)
        scales = a.get("scales")
        return AugmentParams(
            flip_prob=float(a.get("flip_prob", 0.5)),
            scales=None if scales is None else tuple(float(s) for s in scales),
            scale_range=None if a.get("scale_range") is None else tuple(float(s) for s in a["scale_range"]),
            max_rotation=float(a.get("max_rotation", 0.0)),
        )

    def to_dict(self) -> dict[str, Any]:
        """JSON/YAML-able declaration (no folder paths): stored in checkpoints so that a model trained on this
        dataset can be rebuilt (and predict) without the dataset."""
        return {"name": self.name, "size": list(self.size), "augment": dict(self.augment),
                "images": self.images, "splits": dict(self.splits),
                "tasks": {t.name: t.to_dict() for t in self.tasks}}

    def split_path(self, split: str) -> Path:
        if split not in self.splits:
            raise ValueError(f"dataset {self.name!r} has no split {split!r}; its splits: {sorted(self.splits)}")
        return self._root() / self.splits[split]

    def image_dir(self) -> Path:
        return self._root() / self.images

    def task_dir(self, task: str) -> Path:
        return self._root() / self.task(task).folder

    def _root(self) -> Path:
        if self.root is None:
            raise ValueError(f"dataset {self.name!r}: no root folder (the declaration came from a checkpoint); "
                             "pass the dataset folder")
        return self.root

    def with_root(self, root: str | os.PathLike[str]) -> DatasetSpec:
        return replace(self, root=Path(root))


# ----------------------------------------------------------------------------------------------------------
# parsing
# ----------------------------------------------------------------------------------------------------------


def _number(value: Any, path: Any, name: str, integer: bool = False) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(float(value)):
        raise DatasetSpecError(path, name, f"expected a {'whole ' if integer else ''}number, got {value!r}")
    if integer and float(value) != int(value):
        raise DatasetSpecError(path, name, f"expected a whole number, got {value!r}")
    return float(value)


def _parse_classes(raw: Any, path: Any, where: str) -> tuple[tuple[str, ...], tuple[tuple[int, int, int], ...]]:
    if not isinstance(raw, list) or len(raw) < 2:
        raise DatasetSpecError(path, f"{where}.classes",
                               f"a segmentation task needs a list of at least 2 class names, got {raw!r}")
    if len(raw) > IGNORE_INDEX:
        raise DatasetSpecError(path, f"{where}.classes", f"at most {IGNORE_INDEX} classes, got {len(raw)}")
    names: list[str] = []
    colors: list[tuple[int, int, int]] = []
    for i, c in enumerate(raw):
        if isinstance(c, str):
            names.append(c)
        elif isinstance(c, Mapping) and isinstance(c.get("name"), str):
            names.append(c["name"])
            color = c.get("color")
            if color is not None:
                if (not isinstance(color, list) or len(color) != 3
                        or not all(isinstance(v, int) and 0 <= v <= 255 for v in color)):
                    raise DatasetSpecError(path, f"{where}.classes[{i}].color",
                                           f"expected [r, g, b] with values 0..255, got {color!r}")
                colors.append((color[0], color[1], color[2]))
        else:
            raise DatasetSpecError(path, f"{where}.classes[{i}]",
                                   f"expected a class name or {{name: ..., color: [r, g, b]}}, got {c!r}")
    if len(set(names)) != len(names):
        raise DatasetSpecError(path, f"{where}.classes", f"class names repeat: {names}")
    if colors and len(colors) != len(names):
        raise DatasetSpecError(path, f"{where}.classes", "give a colour to every class or to none")
    if len(set(colors)) != len(colors):
        raise DatasetSpecError(path, f"{where}.classes", "two classes have the same colour")
    return tuple(names), tuple(colors)


def _parse_task(name: Any, raw: Any, path: Any) -> TaskSpec:
    where = f"tasks.{name}"
    if not isinstance(name, str) or not name.isidentifier():
        raise DatasetSpecError(path, where, "a task name must be a Python-style identifier (letters, digits, _)")
    if not isinstance(raw, Mapping):
        raise DatasetSpecError(path, where, f"expected a mapping with at least 'kind', got {raw!r}")
    kind = raw.get("kind")
    if kind not in _TASK_FIELDS:
        raise DatasetSpecError(path, f"{where}.kind",
                               f"unknown kind {kind!r}; known kinds: {', '.join(task_registry.LABEL_KINDS)}")
    unknown = set(raw) - _COMMON_FIELDS - _TASK_FIELDS[kind]
    if unknown:
        allowed = sorted(_COMMON_FIELDS | _TASK_FIELDS[kind])
        raise DatasetSpecError(path, f"{where}.{sorted(unknown)[0]}",
                               f"not a field of a {kind} task; allowed: {allowed}")
    folder = raw.get("folder", name)
    if not isinstance(folder, str) or not folder or folder.startswith("/") or ".." in Path(folder).parts:
        raise DatasetSpecError(path, f"{where}.folder", f"expected a folder inside the dataset, got {folder!r}")
    classes: tuple[str, ...] = ()
    colors: tuple[tuple[int, int, int], ...] = ()
    channels = {"binary": 1, "edge": 1, "depth": 1, "normals": 3}.get(kind, 0)
    if kind == "segmentation":
        if "classes" not in raw:
            raise DatasetSpecError(path, f"{where}.classes", "missing: a segmentation task needs its class list")
        classes, colors = _parse_classes(raw["classes"], path, where)
        channels = len(classes)
    if kind == "regression":
        channels = int(_number(raw.get("channels", 1), path, f"{where}.channels", integer=True))
        if channels < 1:
            raise DatasetSpecError(path, f"{where}.channels", f"expected >= 1, got {channels}")
    ignore = raw.get("ignore", IGNORE_INDEX if kind == "segmentation" else None)
    if ignore is not None:
        ignore = int(_number(ignore, path, f"{where}.ignore", integer=True))
        if kind == "segmentation" and 0 <= ignore < channels:
            raise DatasetSpecError(path, f"{where}.ignore", f"{ignore} is a class index (0..{channels - 1})")
    bits = raw.get("bits", 16 if kind == "depth" else 8)
    if bits not in (8, 16):
        raise DatasetSpecError(path, f"{where}.bits", f"expected 8 or 16, got {bits!r}")
    if kind == "normals" and bits != 8:
        raise DatasetSpecError(path, f"{where}.bits", "normals PNGs are 8-bit RGB")
    scale = raw.get("scale")
    if scale is not None:
        scale = _number(scale, path, f"{where}.scale")
        if scale <= 0:
            raise DatasetSpecError(path, f"{where}.scale", f"expected > 0, got {scale}")
    invalid = raw.get("invalid", 0.0 if kind == "depth" else None)
    if invalid is not None:
        invalid = _number(invalid, path, f"{where}.invalid")
    loss_weight = _number(raw.get("loss_weight", 1.0), path, f"{where}.loss_weight")
    k = task_registry.TASK_KINDS[kind]
    loss = raw.get("loss")
    if loss is not None and loss not in k.losses:
        raise DatasetSpecError(path, f"{where}.loss", f"{loss!r} is not one of {list(k.losses)}")
    dm_metric = raw.get("dm_metric")
    if dm_metric is not None and dm_metric not in k.dm_metrics:
        raise DatasetSpecError(path, f"{where}.dm_metric", f"{dm_metric!r} is not one of {list(k.dm_metrics)}")
    if loss_weight < 0:
        raise DatasetSpecError(path, f"{where}.loss_weight", f"expected >= 0, got {loss_weight}")
    return TaskSpec(name=name, kind=kind, folder=folder, channels=channels, classes=classes, colors=colors,
                    ignore=ignore, bits=int(bits), scale=scale, invalid=invalid, loss_weight=loss_weight,
                    loss=loss, dm_metric=dm_metric)


def spec_from_dict(raw: Any, root: str | os.PathLike[str] | None = None,
                   path: str | os.PathLike[str] | None = None) -> DatasetSpec:
    """Validate a ``dataset.yaml`` mapping; every error is a :class:`DatasetSpecError` naming the field."""
    if not isinstance(raw, Mapping):
        raise DatasetSpecError(path, "(top level)",
                               f"expected a mapping with 'name' and 'tasks', got {type(raw).__name__}")
    unknown = set(raw) - _TOP_FIELDS
    if unknown:
        raise DatasetSpecError(path, sorted(unknown)[0], f"unknown field; allowed: {sorted(_TOP_FIELDS)}")
    name = raw.get("name")
    if not isinstance(name, str):
        raise DatasetSpecError(path, "name", f"missing or not a string: {name!r}")
    try:
        task_registry.check_dataset_name(name)
    except ValueError as e:
        raise DatasetSpecError(path, "name", str(e)) from None
    tasks_raw = raw.get("tasks")
    if not isinstance(tasks_raw, Mapping) or not tasks_raw:
        raise DatasetSpecError(path, "tasks", "missing or empty: declare at least one task with its kind")
    tasks = tuple(_parse_task(n, t, path) for n, t in tasks_raw.items())
    size = raw.get("size", list(DEFAULT_SIZE))
    if (not isinstance(size, list) or len(size) != 2
            or not all(isinstance(s, int) and s > 0 and s % 32 == 0 for s in size)):
        raise DatasetSpecError(path, "size", f"expected [H, W], two positive multiples of 32, got {size!r}")
    augment = dict(DEFAULT_AUGMENT)
    aug_raw = raw.get("augment") or {}
    if not isinstance(aug_raw, Mapping):
        raise DatasetSpecError(path, "augment", f"expected a mapping, got {aug_raw!r}")
    bad = set(aug_raw) - {"flip_prob", "scales", "scale_range", "max_rotation"}
    if bad:
        raise DatasetSpecError(path, f"augment.{sorted(bad)[0]}",
                               "unknown field; allowed: flip_prob, scales, scale_range, max_rotation")
    augment.update(aug_raw)
    if "scale_range" in aug_raw and "scales" not in aug_raw:
        augment["scales"] = None
    images = raw.get("images", "images")
    splits = raw.get("splits", {"train": "splits/train.txt", "val": "splits/val.txt"})
    if not isinstance(images, str):
        raise DatasetSpecError(path, "images", f"expected a folder name, got {images!r}")
    if not isinstance(splits, Mapping) or set(splits) != {"train", "val"} or not all(
            isinstance(v, str) for v in splits.values()):
        raise DatasetSpecError(path, "splits", f"expected {{train: FILE, val: FILE}}, got {splits!r}")
    spec = DatasetSpec(name=name, root=None if root is None else Path(root), tasks=tasks,
                       size=(size[0], size[1]), augment=augment, images=images, splits=dict(splits),
                       path=None if path is None else Path(path))
    try:
        spec.augment_params()
    except (ValueError, TypeError) as e:
        raise DatasetSpecError(path, "augment", str(e)) from None
    return spec


def find_spec_file(path: str | os.PathLike[str]) -> Path | None:
    """The ``dataset.yaml`` that ``path`` names: the file itself, or the file in the folder; else ``None``."""
    p = Path(path)
    if p.suffix in (".yaml", ".yml") and p.is_file():
        return p
    if p.is_dir() and (p / SPEC_FILE).is_file():
        return p / SPEC_FILE
    return None


def load_spec(path: str | os.PathLike[str]) -> DatasetSpec:
    """Read and validate a ``dataset.yaml`` (or the one in folder ``path``); its folder is the dataset root."""
    import yaml

    p = Path(path)
    found = find_spec_file(p)
    if found is None:
        raise DatasetSpecError(p, "(file)", f"no such file; expected a {SPEC_FILE} or a folder that contains one")
    try:
        raw = yaml.safe_load(found.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as e:
        raise DatasetSpecError(found, "(file)", f"not readable as YAML: {e}") from None
    return spec_from_dict(raw, root=found.parent, path=found)


# ----------------------------------------------------------------------------------------------------------
# registration: a declared dataset's tasks become ordinary tasks of medusa_mtl.tasks
# ----------------------------------------------------------------------------------------------------------

_REGISTERED: dict[str, dict[str, Any]] = {}


def forget_spec_tasks(name: str) -> None:
    """Undo :func:`declare_spec_tasks` for the dataset called ``name``."""
    task_registry.forget_dataset(name)
    _REGISTERED.pop(name, None)


def declare_spec_tasks(spec: DatasetSpec) -> DatasetSpec:
    """Declare ``spec``'s dataset and tasks in :mod:`medusa_mtl.tasks` (replacing an earlier declaration of the
    same name). :func:`medusa_mtl.data.datasets.register_spec` also makes the dataset loadable."""
    decl = spec.to_dict()
    # declared already with the same content (a checkpoint of this dataset loaded twice): keep the tasks
    if _REGISTERED.get(spec.name) != decl or not task_registry.is_declared_dataset(spec.name):
        task_registry.forget_dataset(spec.name)
        task_registry.declare_dataset(spec.name)
        try:
            for t in spec.tasks:
                task_registry.declare_task(t.name, t.kind, spec.name, channels=t.channels,
                                           loss_weight=t.loss_weight, loss=t.loss, dm_metric=t.dm_metric)
        except ValueError as e:
            task_registry.forget_dataset(spec.name)
            _REGISTERED.pop(spec.name, None)
            raise DatasetSpecError(spec.path, "tasks", str(e)) from None
        _REGISTERED[spec.name] = decl
    return spec


# ----------------------------------------------------------------------------------------------------------
# reading label files
# ----------------------------------------------------------------------------------------------------------


def _read_png_any(path: Path, what: str) -> tuple[np.ndarray, str]:
    try:
        with Image.open(path) as im:
            im.load()
            mode = im.mode
            arr = np.array(im)
    except FileNotFoundError:
        raise DataFormatError(path, f"missing file (expected {what})") from None
    except (OSError, UnidentifiedImageError, ValueError, SyntaxError) as e:
        raise DataFormatError(path, f"unreadable or truncated PNG (expected {what}): {e}") from None
    return arr, mode


def _png_bits(mode: str) -> int:
    return 16 if mode in ("I;16", "I;16B", "I;16L", "I") else 8


def _check_bits(path: Path, mode: str, t: TaskSpec) -> None:
    bits = _png_bits(mode)
    if bits != t.bits:
        raise DataFormatError(path, f"a {bits}-bit PNG (mode {mode}), but task {t.name!r} declares bits: {t.bits} "
                                    f"(set tasks.{t.name}.bits: {bits} in {SPEC_FILE} if that is intended)")


def _read_raw(path: Path, t: TaskSpec) -> tuple[np.ndarray, str]:
    what = f"the {t.kind} label of task {t.name!r}"
    if path.suffix == ".npy":
        return formats.read_npy(path, what), "npy"
    arr, mode = _read_png_any(path, what)
    if arr.ndim == 2:
        _check_bits(path, mode, t)
    elif mode not in ("RGB", "RGBA"):
        raise DataFormatError(path, f"unsupported PNG mode {mode} ({what})")
    return arr, mode


def read_label(path: str | os.PathLike[str], t: TaskSpec, hw: tuple[int, int] | None = None) -> np.ndarray:
    """Read the label of task ``t`` in the project's conventions (see the module docstring), checked against
    the declaration and, with ``hw``, against the image's size. Bad content is a :class:`DataFormatError`."""
    path = Path(path)
    arr, mode = _read_raw(path, t)
    what = f"task {t.name!r}"
    if t.kind == "segmentation":
        out = _segmentation(path, arr, mode, t)
    elif t.kind in ("binary", "edge"):
        out = _binary(path, arr, t)
    elif t.kind == "depth":
        out = _depth(path, arr, mode, t)
    elif t.kind == "normals":
        out = _normals(path, arr, mode)
    else:
        out = _regression(path, arr, mode, t)
    if hw is not None and tuple(out.shape[:2]) != tuple(hw):
        raise DataFormatError(path, f"label size {out.shape[0]}x{out.shape[1]} ({what}) does not match its "
                                    f"image's {hw[0]}x{hw[1]}")
    return out


def _two_d(path: Path, arr: np.ndarray, t: TaskSpec) -> np.ndarray:
    if arr.ndim == 3 and arr.shape[2] == 1:
        arr = arr[..., 0]
    if arr.ndim != 2:
        raise DataFormatError(path, f"expected a single-channel H x W label for the {t.kind} task {t.name!r}, "
                                    f"got shape {arr.shape}")
    return arr


def _segmentation(path: Path, arr: np.ndarray, mode: str, t: TaskSpec) -> np.ndarray:
    if arr.ndim == 3 and mode in ("RGB", "RGBA"):
        if not t.colors:
            raise DataFormatError(path, f"an RGB label, but task {t.name!r} declares no class colours "
                                        "(give every class a color, or store class indices)")
        rgb = arr[..., :3].astype(np.int64)
        code = (rgb[..., 0] << 16) | (rgb[..., 1] << 8) | rgb[..., 2]
        lut = {(r << 16) | (g << 8) | b: i for i, (r, g, b) in enumerate(t.colors)}
        out = np.full(code.shape, IGNORE_INDEX, np.uint8)
        known = np.zeros(code.shape, bool)
        for value, index in lut.items():
            hit = code == value
            out[hit] = index
            known |= hit
        ignore_rgb = None if t.ignore is None else t.ignore
        if ignore_rgb is not None and 0 <= ignore_rgb <= 255:
            known |= (rgb == ignore_rgb).all(axis=-1)
        if not known.all():
            bad = np.unique(rgb[~known].reshape(-1, 3), axis=0)[:5]
            raise DataFormatError(path, f"colours not among the declared classes of task {t.name!r}: "
                                        f"{[tuple(int(v) for v in c) for c in bad]}")
        return out
    arr = _two_d(path, arr, t)
    if arr.dtype.kind == "f":
        if not np.all(np.isfinite(arr)) or not np.all(arr == np.round(arr)):
            raise DataFormatError(path, f"class indices of task {t.name!r} must be whole numbers")
    elif arr.dtype.kind not in "iub":
        raise DataFormatError(path, f"class indices of task {t.name!r} must be integers, got dtype {arr.dtype}")
    values = arr.astype(np.int64)
    ok = (values >= 0) & (values < t.channels)
    if t.ignore is not None:
        ok |= values == t.ignore
    if not ok.all():
        bad = np.unique(values[~ok])[:8].tolist()
        raise DataFormatError(path, f"values {bad} are neither classes 0..{t.channels - 1} of task {t.name!r} nor "
                                    f"its ignore value {t.ignore}")
    out = np.where(ok & (values < t.channels), values, IGNORE_INDEX)
    return out.astype(np.uint8)


def _binary(path: Path, arr: np.ndarray, t: TaskSpec) -> np.ndarray:
    arr = _two_d(path, arr, t)
    if arr.dtype.kind == "f" and not np.all(np.isfinite(arr)):
        raise DataFormatError(path, f"non-finite values in the mask of task {t.name!r}")
    out = (arr > 0).astype(np.float32)
    if t.ignore is not None:
        out[arr == t.ignore] = IGNORE_INDEX
    return out


def _depth(path: Path, arr: np.ndarray, mode: str, t: TaskSpec) -> np.ndarray:
    arr = _two_d(path, arr, t)
    scale = t.scale if t.scale is not None else (1.0 if mode == "npy" else 0.001)
    arr = arr.astype(np.float64)
    invalid = ~np.isfinite(arr)
    if t.invalid is not None:
        invalid |= arr == t.invalid
    if np.any(arr[~invalid] < 0):
        raise DataFormatError(path, f"negative depth values in task {t.name!r} (declare them as `invalid`?)")
    return np.where(invalid, 0.0, arr * scale).astype(np.float32)


def _normals(path: Path, arr: np.ndarray, mode: str) -> np.ndarray:
    if mode == "npy":
        if arr.ndim != 3 or arr.shape[2] != 3:
            raise DataFormatError(path, f"expected normals of shape H x W x 3, got {arr.shape}")
        n = np.nan_to_num(arr.astype(np.float32), nan=0.0, posinf=0.0, neginf=0.0)
        return formats.normalize_normals(n)
    if mode not in ("RGB", "RGBA") or arr.ndim != 3:
        raise DataFormatError(path, f"expected an RGB PNG of normals, got mode {mode}")
    rgb = arr[..., :3]
    n = 2.0 * rgb.astype(np.float32) / 255.0 - 1.0
    return formats.normalize_normals(n, valid=rgb.any(axis=-1))


def _regression(path: Path, arr: np.ndarray, mode: str, t: TaskSpec) -> np.ndarray:
    if arr.ndim == 2:
        arr = arr[..., None]
    if arr.ndim != 3 or arr.shape[2] != t.channels:
        raise DataFormatError(path, f"expected H x W x {t.channels} values for task {t.name!r} "
                                    f"({t.channels} channel(s) declared), got shape {arr.shape}")
    scale = t.scale if t.scale is not None else 1.0
    out = arr.astype(np.float64)
    invalid = ~np.isfinite(out)
    if t.invalid is not None:
        invalid |= out == t.invalid
    return np.where(invalid, np.nan, out * scale).astype(np.float32)


# ----------------------------------------------------------------------------------------------------------
# file lookup
# ----------------------------------------------------------------------------------------------------------


class FileIndex:
    """Stem -> file of a folder (one listing, not a stat per id); two files with one stem are an error."""

    def __init__(self, folder: Path, suffixes: Sequence[str], what: str) -> None:
        self.folder = folder
        self.what = what
        self.suffixes = tuple(suffixes)
        if not folder.is_dir():
            raise DataFormatError(folder, f"missing folder ({what})")
        self.files: dict[str, Path] = {}
        self.duplicates: dict[str, list[Path]] = {}
        for entry in sorted(os.listdir(folder)):
            p = folder / entry
            if p.suffix.lower() not in self.suffixes:
                continue
            stem = p.stem
            if stem in self.files:
                self.duplicates.setdefault(stem, [self.files[stem]]).append(p)
            self.files[stem] = p

    def get(self, sample_id: str) -> Path:
        if sample_id in self.duplicates:
            raise DataFormatError(self.duplicates[sample_id][0],
                                  f"several files for id {sample_id!r}: {[p.name for p in self.duplicates[sample_id]]}")
        if sample_id not in self.files:
            raise DataFormatError(self.folder / f"{sample_id}{self.suffixes[0]}",
                                  f"missing file for id {sample_id!r} ({self.what}; any of {list(self.suffixes)})")
        return self.files[sample_id]


def check_layout(spec: DatasetSpec) -> None:
    """The folders and split files of ``spec`` exist (a :class:`DataFormatError` names the first missing one).
    Contents are not read: ``medusa data check`` does that."""
    root = spec._root()
    if not root.is_dir():
        raise DataFormatError(root, f"dataset folder of {spec.name!r} does not exist")
    if not spec.image_dir().is_dir():
        raise DataFormatError(spec.image_dir(), "missing folder (images)")
    for t in spec.tasks:
        if not spec.task_dir(t.name).is_dir():
            raise DataFormatError(spec.task_dir(t.name), f"missing folder (labels of the {t.kind} task {t.name!r})")
    for split in spec.splits:
        if not spec.split_path(split).is_file():
            raise DataFormatError(spec.split_path(split), f"missing split file (one {spec.name} sample id a line)")


def read_ids(spec: DatasetSpec, split: str) -> list[str]:
    """The ids of ``split`` (``train`` / ``val``) from its split file (an id listed twice is an error)."""
    return formats.read_id_file(spec.split_path(split), spec.name, unique=True)


class GenericReader:
    """Reads samples of a declared dataset: ``read(sample_id, tasks)`` -> NumPy sample dict."""

    def __init__(self, spec: DatasetSpec) -> None:
        self.spec = spec
        self._images: FileIndex | None = None
        self._labels: dict[str, FileIndex] = {}

    def image_path(self, sample_id: str) -> Path:
        if self._images is None:
            self._images = FileIndex(self.spec.image_dir(), IMAGE_SUFFIXES, "images")
        return self._images.get(sample_id)

    def label_path(self, sample_id: str, task: str) -> Path:
        if task not in self._labels:
            t = self.spec.task(task)
            self._labels[task] = FileIndex(self.spec.task_dir(task), LABEL_SUFFIXES,
                                           f"labels of the {t.kind} task {task!r}")
        return self._labels[task].get(sample_id)

    def read(self, sample_id: str, tasks: Sequence[str]) -> dict[str, np.ndarray]:
        image = formats.read_image(self.image_path(sample_id))
        sample = {"image": image}
        for task in tasks:
            sample[task] = read_label(self.label_path(sample_id, task), self.spec.task(task), image.shape[:2])
        return sample

    def __getstate__(self) -> dict[str, Any]:
        return {"spec": self.spec, "_images": None, "_labels": {}}
