"""Read and write the NYUD_MT and PASCAL_MT on-disk formats (SPEC §6). The only module that knows the layout.

Layout
------
``NYUD_MT/``::

    images/<id>.jpg            RGB image
    segmentation/<id>.png      uint8, 0 = unlabelled, 1..40 = class k (read as 255 = ignore, k -> k-1)
    depth/<id>.npy             float H x W, metres, 0 = invalid
    normals/<id>.npy           float H x W x 3, unit vectors, zero vector = invalid
    edge/<id>.npy              H x W, {0, 1}
    gt_sets/train.txt, gt_sets/val.txt

``PASCAL_MT/``::

    JPEGImages/<id>.jpg
    ImageSets/Context/train.txt, ImageSets/Context/val.txt
    semseg/VOC12/<id>.png (if present) else semseg/pascal-context/<id>.png    0..20, 255 = ignore
    human_parts/<id>.mat       PASCAL-Part annotation (``anno``), persons (class 15) and their parts
    sal_distill/<id>.png       gray; ground truth = v / 255 > 0.5
    normals_distill/<id>.png   RGB; n = 2 v / 255 - 1, valid only on "valid" Context classes
    pascal-context/trainval/<id>.mat    key ``LabelMap``: 459-class Context label map; edges derived from it

Conventions
-----------
* **Normals** are in the camera frame with **x right, y up, z towards the camera** (:data:`NORMALS_FRAME`).
  The synthetic renderer writes this frame; the transforms rotate (x, y) with the image in this frame and
  negate x on a horizontal flip. A zero vector marks an invalid pixel. Vectors read from disk are
  re-normalised; vectors whose norm is below :data:`MIN_NORMAL_NORM` are treated as invalid (zero).
* **Ignore**: class-label maps (semseg, human_parts) use :data:`IGNORE_INDEX` = 255; depth 0 = invalid;
  normals zero vector = invalid; sal/edge use 255 where a region is ignored (only created by augmentation).
* **Human parts**: only persons (PASCAL class 15) are used; part names are grouped into 6 parts
  (:data:`PART_GROUPS`: head=1, torso=2, upper arm=3, lower arm=4, upper leg=5, lower leg=6), background 0.
  **[design]** Pixels inside a person's instance mask that no part covers get :data:`PERSON_WITHOUT_PART`
  (= 255, ignore): they are person, but which part is unknown. An image with no labelled part pixel at all
  (no person, or persons without part annotation) is all-ignore (SPEC §6: "all-zero parts -> 255");
  :func:`has_person` lets a parts-only run drop such images.
* **Valid classes for PASCAL normals** (:data:`NORMALS_VALID_CONTEXT_CLASSES`): SPEC §6 keeps distilled
  normals only on "valid" Context classes without listing them. **[design]** We treat every labelled Context
  pixel (``LabelMap != 0``) as valid; set the constant to a set of class ids to restrict it.
* **Edges from LabelMap**: a pixel is an edge candidate where the 4-neighbour Laplacian of the integer label
  map (borders replicated) is non-zero; the candidate mask (2 px wide: both sides of a boundary) is then
  thinned to 1-px lines with Zhang-Suen thinning (:func:`thin`). As the Laplacian is taken literally, a pixel
  whose neighbour labels happen to sum to 4x its own label is not an edge (rare, only at junctions).
* **Images** are read as displayed: an EXIF orientation tag (phone photos stored sideways) is applied, and the
  labels must match the displayed picture; **saliency** PNGs saved as 1-bit or with a palette are read by the
  gray level they show. **Split files**: one id a line, an id at most once, a UTF-8 byte-order mark ignored.
* **Sizes**: a label of another size than its image is resized to the image (nearest for labels, cubic for
  normals, then re-normalised) if its aspect ratio matches the image within :data:`ASPECT_TOLERANCE`; any
  other size, a non-2D label or a wrong channel count is a :class:`DataFormatError`.
* **Determinism**: writers give byte-identical files for identical arrays (the .mat header timestamp is
  replaced by a fixed text) and write atomically (temporary file + ``os.replace``).
"""

from __future__ import annotations

import io
import os
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError
from scipy import io as sio
from scipy import ndimage

from ..atomic import atomic_write_bytes

IGNORE_INDEX = 255
"""Ignore value of class-label maps (the lead's ``tasks.IGNORE_INDEX`` has the same value)."""

NORMALS_FRAME = "camera frame: x right, y up, z towards the camera"
MIN_NORMAL_NORM = 0.5
"""Normals whose norm (before re-normalisation) is below this are invalid (zero vector)."""
ASPECT_TOLERANCE = 0.05
"""A label whose aspect ratio differs from its image's by more than this (relative) is an error."""

NYUD_NUM_CLASSES = 40
PASCAL_NUM_CLASSES = 21
PERSON_CLASS_ID = 15
PASCAL_PART_NUM_OBJECT_CLASSES = 20
HUMAN_PARTS_NUM_CLASSES = 7
HUMAN_PARTS_NAMES = ("background", "head", "torso", "upper_arm", "lower_arm", "upper_leg", "lower_leg")
PERSON_WITHOUT_PART = IGNORE_INDEX
"""[design] Value of pixels inside a person instance mask that no part covers."""

PART_GROUPS: dict[str, int] = {
    **dict.fromkeys(("hair", "head", "lear", "lebrow", "leye", "mouth", "nose", "rear", "rebrow", "reye"), 1),
    **dict.fromkeys(("neck", "torso"), 2),
    **dict.fromkeys(("luarm", "ruarm"), 3),
    **dict.fromkeys(("lhand", "llarm", "rhand", "rlarm"), 4),
    **dict.fromkeys(("luleg", "ruleg"), 5),
    **dict.fromkeys(("lfoot", "llleg", "rfoot", "rlleg"), 6),
}
"""PASCAL-Part person part name -> human_parts class (SPEC §6)."""

NORMALS_VALID_CONTEXT_CLASSES: frozenset[int] | None = None
"""[design] Context classes on which distilled normals are kept; ``None`` = every labelled pixel (!= 0)."""

CONTEXT_NUM_CLASSES = 459
SPLITS = ("train", "val")

NYUD_TASKS = ("semseg", "depth", "normals", "edge")
PASCAL_TASKS = ("semseg", "human_parts", "sal", "normals", "edge")

_MAT_HEADER_TEXT = b"MATLAB 5.0 MAT-file, written by medusa_mtl.data.formats"
_MAT_HEADER_LEN = 116


class DataFormatError(ValueError):
    """A dataset file is missing, unreadable or has content that does not match the format.

    The message names the file and says what was expected.
    """

    def __init__(self, path: str | os.PathLike[str], message: str | None = None) -> None:
        if message is None:  # re-created from its full message (unpickling, DataLoader worker re-raise)
            text = _unwrap_worker_message(str(path))
            self.path, _, self.reason = text.partition(": ")
            super().__init__(text)
            return
        self.path = str(path)
        self.reason = message
        super().__init__(f"{self.path}: {message}")


def _unwrap_worker_message(text: str) -> str:
    """The original message of an error re-raised by a DataLoader worker.

    PyTorch re-creates an exception raised in a worker process as ``type(msg)`` where ``msg`` is "Caught X in
    DataLoader worker process N." followed by the worker's whole traceback; its last line is
    ``module.X: <original message>``. Other texts are returned unchanged.
    """
    if not text.startswith("Caught ") or "Original Traceback" not in text:
        return text
    marker = f"{__name__}.DataFormatError: "
    lines = [line for line in text.splitlines() if line.strip()]
    for i in range(len(lines) - 1, -1, -1):
        if lines[i].startswith(marker):
            return "\n".join([lines[i][len(marker):], *lines[i + 1 :]])
    return lines[-1] if lines else text


# ----------------------------------------------------------------------------------------------------
# paths
# ----------------------------------------------------------------------------------------------------


def nyud_paths(root: str | os.PathLike[str], sample_id: str) -> dict[str, Path]:
    """Paths of every file of one NYUD_MT sample: keys ``image`` and the task names."""
    root = Path(root)
    return {
        "image": root / "images" / f"{sample_id}.jpg",
        "semseg": root / "segmentation" / f"{sample_id}.png",
        "depth": root / "depth" / f"{sample_id}.npy",
        "normals": root / "normals" / f"{sample_id}.npy",
        "edge": root / "edge" / f"{sample_id}.npy",
    }


def pascal_semseg_path(root: str | os.PathLike[str], sample_id: str) -> Path:
    """``semseg/VOC12/<id>.png`` if it exists, else ``semseg/pascal-context/<id>.png`` (SPEC §6)."""
    root = Path(root)
    voc = root / "semseg" / "VOC12" / f"{sample_id}.png"
    if voc.is_file():
        return voc
    return root / "semseg" / "pascal-context" / f"{sample_id}.png"


def pascal_paths(root: str | os.PathLike[str], sample_id: str) -> dict[str, Path]:
    """Paths of every file of one PASCAL_MT sample: ``image``, ``semseg``, ``human_parts``, ``sal``,
    ``normals``, ``labelmap`` (``edge`` is derived from ``labelmap``; normals also need it)."""
    root = Path(root)
    return {
        "image": root / "JPEGImages" / f"{sample_id}.jpg",
        "semseg": pascal_semseg_path(root, sample_id),
        "human_parts": root / "human_parts" / f"{sample_id}.mat",
        "sal": root / "sal_distill" / f"{sample_id}.png",
        "normals": root / "normals_distill" / f"{sample_id}.png",
        "labelmap": root / "pascal-context" / "trainval" / f"{sample_id}.mat",
    }


def task_files(dataset: str, root: str | os.PathLike[str], sample_id: str, task: str) -> list[Path]:
    """The files that reading ``task`` of one sample needs (besides the image)."""
    if dataset == "nyud":
        if task not in NYUD_TASKS:
            raise ValueError(f"unknown NYUD task {task!r}; valid tasks: {list(NYUD_TASKS)}")
        return [nyud_paths(root, sample_id)[task]]
    if dataset == "pascal":
        if task not in PASCAL_TASKS:
            raise ValueError(f"unknown PASCAL task {task!r}; valid tasks: {list(PASCAL_TASKS)}")
        p = pascal_paths(root, sample_id)
        if task == "edge":
            return [p["labelmap"]]
        if task == "normals":
            return [p["normals"], p["labelmap"]]
        return [p[task]]
    raise ValueError(f"unknown dataset {dataset!r}; valid datasets: ['nyud', 'pascal']")


def split_path(root: str | os.PathLike[str], dataset: str, split: str) -> Path:
    """Path of a split file: NYUD ``gt_sets/<split>.txt``, PASCAL ``ImageSets/Context/<split>.txt``."""
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; valid splits: {list(SPLITS)}")
    root = Path(root)
    if dataset == "nyud":
        return root / "gt_sets" / f"{split}.txt"
    if dataset == "pascal":
        return root / "ImageSets" / "Context" / f"{split}.txt"
    raise ValueError(f"unknown dataset {dataset!r}; valid datasets: ['nyud', 'pascal']")


# ----------------------------------------------------------------------------------------------------
# low-level writing
# ----------------------------------------------------------------------------------------------------


def _encode_pil(arr: np.ndarray, fmt: str, **kwargs: Any) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format=fmt, **kwargs)
    return buf.getvalue()


def _encode_npy(arr: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, np.ascontiguousarray(arr), allow_pickle=False)
    return buf.getvalue()


def _encode_mat(mdict: Mapping[str, Any]) -> bytes:
    """savemat to bytes with the header timestamp replaced by a fixed text (deterministic output)."""
    buf = io.BytesIO()
    sio.savemat(buf, dict(mdict), do_compression=True, oned_as="row")
    data = bytearray(buf.getvalue())
    data[:_MAT_HEADER_LEN] = _MAT_HEADER_TEXT.ljust(_MAT_HEADER_LEN, b" ")
    return bytes(data)


def _check_write(cond: bool, what: str, message: str) -> None:
    if not cond:
        raise ValueError(f"{what}: {message}")


def _as_image(image: np.ndarray, what: str) -> np.ndarray:
    image = np.asarray(image)
    _check_write(
        image.ndim == 3 and image.shape[2] == 3,
        what,
        f"expected an H x W x 3 RGB image, got shape {image.shape}",
    )
    _check_write(image.dtype == np.uint8, what, f"expected dtype uint8, got {image.dtype}")
    return np.ascontiguousarray(image)


def _check_hw(arr: np.ndarray, hw: tuple[int, int], what: str, channels: int | None = None) -> None:
    expected = hw if channels is None else (*hw, channels)
    _check_write(arr.shape == expected, what, f"expected shape {expected} (the image's), got {arr.shape}")


def _check_id(sample_id: str) -> None:
    if not isinstance(sample_id, str) or not sample_id or sample_id != sample_id.strip():
        raise ValueError(
            f"invalid sample id {sample_id!r}: expected a non-empty string without spaces at the ends"
        )
    if any(c in sample_id for c in "/\\\n\r\t ") or sample_id in (".", ".."):
        raise ValueError(
            f"invalid sample id {sample_id!r}: it must not contain path separators or whitespace"
        )


def _write_split_file(path: Path, ids: Sequence[str]) -> None:
    for i in ids:
        _check_id(i)
    atomic_write_bytes(path, "".join(f"{i}\n" for i in ids).encode("utf-8"))


# ----------------------------------------------------------------------------------------------------
# NYUD writing
# ----------------------------------------------------------------------------------------------------


def write_nyud_sample(
    root: Path,
    sample_id: str,
    image: np.ndarray,
    semseg: np.ndarray,
    depth: np.ndarray,
    normals: np.ndarray,
    edge: np.ndarray,
) -> None:
    """Write one NYUD_MT sample.

    Args:
        root: dataset root (``NYUD_MT``).
        sample_id: file stem.
        image: uint8 H x W x 3 RGB -> ``images/<id>.jpg`` (JPEG quality 95, no chroma subsampling).
        semseg: uint8 H x W, 0 = unlabelled, 1..40 -> ``segmentation/<id>.png``.
        depth: float H x W metres, 0 = invalid -> ``depth/<id>.npy`` (float32).
        normals: float H x W x 3 unit vectors (x right, y up, z to camera), zero = invalid
            -> ``normals/<id>.npy``.
        edge: H x W in {0, 1} -> ``edge/<id>.npy`` (float32).
    """
    _check_id(sample_id)
    p = nyud_paths(root, sample_id)
    image = _as_image(image, f"image of {sample_id}")
    hw = image.shape[:2]
    semseg = np.asarray(semseg)
    _check_hw(semseg, hw, f"semseg of {sample_id}")
    _check_write(
        semseg.size == 0 or (semseg.min() >= 0 and semseg.max() <= NYUD_NUM_CLASSES),
        f"semseg of {sample_id}",
        f"expected values 0..{NYUD_NUM_CLASSES}, got range {semseg.min()}..{semseg.max()}",
    )
    depth = np.asarray(depth, dtype=np.float32)
    _check_hw(depth, hw, f"depth of {sample_id}")
    _check_write(bool(np.isfinite(depth).all()), f"depth of {sample_id}", "contains NaN or inf")
    normals = np.asarray(normals, dtype=np.float32)
    _check_hw(normals, hw, f"normals of {sample_id}", channels=3)
    _check_write(bool(np.isfinite(normals).all()), f"normals of {sample_id}", "contains NaN or inf")
    edge = np.asarray(edge)
    _check_hw(edge, hw, f"edge of {sample_id}")
    _check_write(bool(np.isin(edge, (0, 1)).all()), f"edge of {sample_id}", "expected values in {0, 1}")

    atomic_write_bytes(p["image"], _encode_pil(image, "JPEG", quality=95, subsampling=0))
    atomic_write_bytes(p["semseg"], _encode_pil(semseg.astype(np.uint8), "PNG"))
    atomic_write_bytes(p["depth"], _encode_npy(depth))
    atomic_write_bytes(p["normals"], _encode_npy(normals))
    atomic_write_bytes(p["edge"], _encode_npy(edge.astype(np.float32)))


def write_nyud_splits(root: Path, train_ids: list[str], val_ids: list[str]) -> None:
    """Write ``gt_sets/train.txt`` and ``gt_sets/val.txt`` (one id a line)."""
    _write_split_file(split_path(root, "nyud", "train"), train_ids)
    _write_split_file(split_path(root, "nyud", "val"), val_ids)


# ----------------------------------------------------------------------------------------------------
# PASCAL writing
# ----------------------------------------------------------------------------------------------------


def _object_record(
    class_name: str, class_id: int, mask: np.ndarray, parts: Mapping[str, np.ndarray]
) -> tuple:
    part_dtype = [("part_name", "O"), ("mask", "O")]
    if parts:
        part_arr = np.empty((1, len(parts)), dtype=part_dtype)
        for j, (name, pmask) in enumerate(parts.items()):
            part_arr[0, j] = (name, np.asarray(pmask, dtype=np.uint8))
    else:
        part_arr = np.zeros((0, 0), dtype=np.float64)
    return (class_name, np.array([[class_id]], dtype=np.uint8), np.asarray(mask, dtype=np.uint8), part_arr)


_PASCAL_CLASS_NAMES = (
    "aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair", "cow", "diningtable",
    "dog", "horse", "motorbike", "person", "pottedplant", "sheep", "sofa", "train", "tvmonitor",
)  # fmt: skip


def write_pascal_sample(
    root: Path,
    sample_id: str,
    image: np.ndarray,
    semseg: np.ndarray,
    persons: list[dict],
    sal: np.ndarray,
    normals: np.ndarray,
    labelmap: np.ndarray,
) -> None:
    """Write one PASCAL_MT sample.

    Args:
        root: dataset root (``PASCAL_MT``).
        sample_id: file stem.
        image: uint8 H x W x 3 -> ``JPEGImages/<id>.jpg`` (quality 95, no chroma subsampling).
        semseg: uint8 H x W, 0..20, 255 ignore -> ``semseg/pascal-context/<id>.png``.
        persons: objects, each ``{"mask": bool HxW, "parts": {part_name: bool HxW}}`` with part names of the
            PASCAL-Part vocabulary (:data:`PART_GROUPS`); an optional ``"class_id"`` (default 15) writes other
            objects too -> ``human_parts/<id>.mat`` (PASCAL-Part ``anno`` structure).
        sal: uint8 H x W gray 0..255 -> ``sal_distill/<id>.png``.
        normals: float H x W x 3 unit (x right, y up, z to camera) -> ``normals_distill/<id>.png`` as
            ``round((n + 1) / 2 * 255)``.
        labelmap: int H x W Context label map (0 = unlabelled, 1..459) -> ``pascal-context/trainval/<id>.mat``
            (key ``LabelMap``, uint16).
    """
    _check_id(sample_id)
    root = Path(root)
    image = _as_image(image, f"image of {sample_id}")
    hw = image.shape[:2]
    semseg = np.asarray(semseg)
    _check_hw(semseg, hw, f"semseg of {sample_id}")
    bad = (semseg > PASCAL_NUM_CLASSES - 1) & (semseg != IGNORE_INDEX)
    _check_write(
        not bool(bad.any()) and (semseg.size == 0 or semseg.min() >= 0),
        f"semseg of {sample_id}",
        f"expected values 0..{PASCAL_NUM_CLASSES - 1} or {IGNORE_INDEX}",
    )
    sal = np.asarray(sal)
    _check_hw(sal, hw, f"sal of {sample_id}")
    _check_write(
        sal.size == 0 or (sal.min() >= 0 and sal.max() <= 255),
        f"sal of {sample_id}",
        "expected values 0..255",
    )
    normals = np.asarray(normals, dtype=np.float64)
    _check_hw(normals, hw, f"normals of {sample_id}", channels=3)
    _check_write(bool(np.isfinite(normals).all()), f"normals of {sample_id}", "contains NaN or inf")
    labelmap = np.asarray(labelmap)
    _check_hw(labelmap, hw, f"labelmap of {sample_id}")
    _check_write(
        labelmap.size == 0 or (labelmap.min() >= 0 and labelmap.max() <= CONTEXT_NUM_CLASSES),
        f"labelmap of {sample_id}",
        f"expected values 0..{CONTEXT_NUM_CLASSES}",
    )

    records = []
    for k, obj in enumerate(persons):
        what = f"persons[{k}] of {sample_id}"
        _check_write(isinstance(obj, Mapping) and "mask" in obj, what, "expected a dict with key 'mask'")
        class_id = int(obj.get("class_id", PERSON_CLASS_ID))
        _check_write(
            1 <= class_id <= PASCAL_PART_NUM_OBJECT_CLASSES, what, f"class_id {class_id} not in 1..20"
        )
        mask = np.asarray(obj["mask"]).astype(bool)
        _check_hw(mask, hw, f"{what} mask")
        parts = dict(obj.get("parts", {}) or {})
        for name, pmask in parts.items():
            if class_id == PERSON_CLASS_ID:
                _check_write(
                    name in PART_GROUPS,
                    what,
                    f"unknown part name {name!r}; expected one of {sorted(PART_GROUPS)}",
                )
            _check_hw(np.asarray(pmask), hw, f"{what} part {name!r}")
        parts = {n: np.asarray(m).astype(bool) for n, m in parts.items()}
        records.append(_object_record(_PASCAL_CLASS_NAMES[class_id - 1], class_id, mask, parts))
    obj_dtype = [("class", "O"), ("class_ind", "O"), ("mask", "O"), ("parts", "O")]
    objects = np.empty((1, len(records)), dtype=obj_dtype)
    for j, rec in enumerate(records):
        objects[0, j] = rec
    anno = np.empty((1, 1), dtype=[("imname", "O"), ("objects", "O")])
    anno[0, 0] = (sample_id, objects)

    n = normals
    enc = np.clip(np.round((n + 1.0) / 2.0 * 255.0), 0, 255).astype(np.uint8)

    p = pascal_paths(root, sample_id)
    atomic_write_bytes(p["image"], _encode_pil(image, "JPEG", quality=95, subsampling=0))
    atomic_write_bytes(
        root / "semseg" / "pascal-context" / f"{sample_id}.png", _encode_pil(semseg.astype(np.uint8), "PNG")
    )
    atomic_write_bytes(p["human_parts"], _encode_mat({"anno": anno}))
    atomic_write_bytes(p["sal"], _encode_pil(sal.astype(np.uint8), "PNG"))
    atomic_write_bytes(p["normals"], _encode_pil(enc, "PNG"))
    atomic_write_bytes(p["labelmap"], _encode_mat({"LabelMap": labelmap.astype(np.uint16)}))


def write_pascal_splits(root: Path, train_ids: list[str], val_ids: list[str]) -> None:
    """Write ``ImageSets/Context/train.txt`` and ``val.txt`` (one id a line)."""
    _write_split_file(split_path(root, "pascal", "train"), train_ids)
    _write_split_file(split_path(root, "pascal", "val"), val_ids)


# ----------------------------------------------------------------------------------------------------
# low-level reading
# ----------------------------------------------------------------------------------------------------


def _require_file(path: Path, what: str) -> None:
    if path.is_dir():
        raise DataFormatError(path, f"a folder, not a file (expected {what}; pass its files one by one)")
    if not path.is_file():
        raise DataFormatError(path, f"missing file (expected {what})")


def pil_to_rgb(im: Image.Image) -> np.ndarray:
    """A PIL image as uint8 H x W x 3 as displayed: gray and palette images converted to RGB, 16-bit gray scaled
    to 8 bits (PIL's ``convert("RGB")`` clips it at 255, turning a 16-bit photo white), and an EXIF orientation
    applied as :func:`read_image` does (an image already turned, e.g. by ``ImageOps.exif_transpose``, carries no
    orientation tag any more and stays as it is)."""
    if im.getexif().get(0x0112, 1) != 1:  # a phone photo opened by the caller: the same picture as from its path
        im = ImageOps.exif_transpose(im)
    if im.mode.startswith("I;16") or im.mode == "I":
        gray = np.asarray(im).astype(np.int64)
        full = 65535 if im.mode.startswith("I;16") or gray.max(initial=0) <= 65535 else int(gray.max())
        gray = np.clip(np.round(gray * (255.0 / max(full, 1))), 0, 255).astype(np.uint8)
        return np.repeat(gray[..., None], 3, axis=2)
    return np.asarray(im.convert("RGB"), dtype=np.uint8)


def read_image(path: str | os.PathLike[str]) -> np.ndarray:
    """Read an RGB image as uint8 H x W x 3 (gray or palette images are converted to RGB; 16-bit gray is
    scaled to 8 bits, not clipped; an EXIF orientation is applied, so the array is the image as displayed)."""
    path = Path(path)
    _require_file(path, "an RGB image")
    try:
        with Image.open(path) as im:
            im.load()
            # a phone photo stored sideways with an EXIF orientation tag: read it as it is displayed (and labelled)
            ImageOps.exif_transpose(im, in_place=True)
            arr = pil_to_rgb(im)
    except (OSError, UnidentifiedImageError, ValueError, SyntaxError) as e:
        raise DataFormatError(
            path, f"unreadable or truncated image (expected an RGB JPEG/PNG): {e}"
        ) from None
    if arr.ndim != 3 or arr.shape[0] == 0 or arr.shape[1] == 0:
        raise DataFormatError(path, f"empty image of shape {arr.shape}")
    return arr


def read_png_2d(path: str | os.PathLike[str], what: str, gray_values: bool = False) -> np.ndarray:
    """Read a single-channel PNG (mode L, P, I or I;16) as a 2-D integer array; RGB is an error.

    Palette and 1-bit PNGs give their indices (class maps); with ``gray_values`` they give the gray level they
    show instead, 0..255 (a mask saved as 1-bit or with a black/white palette is 0/255 like a gray one)."""
    path = Path(path)
    _require_file(path, what)
    try:
        with Image.open(path) as im:
            im.load()
            mode = im.mode
            if gray_values and mode in ("1", "P"):
                im = im.convert("L")
            arr = np.array(im)
    except (OSError, UnidentifiedImageError, ValueError, SyntaxError) as e:
        raise DataFormatError(path, f"unreadable or truncated PNG (expected {what}): {e}") from None
    if arr.ndim != 2:
        raise DataFormatError(
            path, f"expected a single-channel image ({what}), got mode {mode} shape {arr.shape}"
        )
    return arr


def read_png_rgb(path: str | os.PathLike[str], what: str) -> np.ndarray:
    """Read a 3-channel PNG as uint8 H x W x 3 (no conversion from other modes: that is an error)."""
    path = Path(path)
    _require_file(path, what)
    try:
        with Image.open(path) as im:
            im.load()
            mode = im.mode
            arr = np.array(im)
    except (OSError, UnidentifiedImageError, ValueError, SyntaxError) as e:
        raise DataFormatError(path, f"unreadable or truncated PNG (expected {what}): {e}") from None
    if mode != "RGB" or arr.ndim != 3 or arr.shape[2] != 3:
        raise DataFormatError(path, f"expected an RGB PNG ({what}), got mode {mode} shape {arr.shape}")
    return arr


def read_npy(path: str | os.PathLike[str], what: str) -> np.ndarray:
    """Load a ``.npy`` array (no pickles) with a clear error for a missing, truncated or corrupt file."""
    path = Path(path)
    _require_file(path, what)
    try:
        arr = np.load(path, allow_pickle=False)
    except (OSError, ValueError, EOFError, TypeError) as e:
        raise DataFormatError(path, f"unreadable or truncated .npy file (expected {what}): {e}") from None
    if not isinstance(arr, np.ndarray):
        raise DataFormatError(path, f"expected a single .npy array ({what}), got {type(arr).__name__}")
    if not (np.issubdtype(arr.dtype, np.number) or arr.dtype == np.bool_):
        raise DataFormatError(path, f"expected a numeric array ({what}), got dtype {arr.dtype}")
    return arr


def read_mat(path: str | os.PathLike[str], what: str) -> dict[str, Any]:
    """Load a MATLAB ``.mat`` file with a clear error for a missing, truncated or corrupt file."""
    path = Path(path)
    _require_file(path, what)
    try:
        return sio.loadmat(str(path))
    except Exception as e:  # scipy raises assorted error types on corrupt or truncated files
        raise DataFormatError(
            path, f"unreadable or truncated .mat file (expected {what}): {type(e).__name__}: {e}"
        ) from None


# ----------------------------------------------------------------------------------------------------
# size matching
# ----------------------------------------------------------------------------------------------------


def _check_aspect(shape: tuple[int, int], hw: tuple[int, int], path: Path, what: str) -> None:
    h, w = shape
    H, W = hw
    if h == 0 or w == 0:
        raise DataFormatError(path, f"empty {what} of shape {shape}")
    if abs((w / h) / (W / H) - 1.0) > ASPECT_TOLERANCE:
        raise DataFormatError(
            path,
            f"{what} has size {h}x{w} which does not match the image size {H}x{W} "
            f"(different aspect ratio, so it cannot be resized to the image)",
        )


def resize_nearest(arr: np.ndarray, hw: tuple[int, int]) -> np.ndarray:
    """Nearest-neighbour resize of an H x W (x C) array to ``hw`` (pixel-centre aligned)."""
    H, W = arr.shape[:2]
    ho, wo = hw
    rows = np.minimum(((np.arange(ho) + 0.5) * H / ho).astype(np.int64), H - 1)
    cols = np.minimum(((np.arange(wo) + 0.5) * W / wo).astype(np.int64), W - 1)
    return arr[rows[:, None], cols[None, :]]


def _resize_cubic_channels(arr: np.ndarray, hw: tuple[int, int]) -> np.ndarray:
    H, W = arr.shape[:2]
    ho, wo = hw
    r = (np.arange(ho) + 0.5) * H / ho - 0.5
    c = (np.arange(wo) + 0.5) * W / wo - 0.5
    rr, cc = np.meshgrid(r, c, indexing="ij")
    out = np.empty((ho, wo, arr.shape[2]), dtype=np.float32)
    for k in range(arr.shape[2]):
        out[..., k] = ndimage.map_coordinates(
            arr[..., k].astype(np.float64), [rr, cc], order=3, mode="nearest"
        )
    return out


def normalize_normals(n: np.ndarray, valid: np.ndarray | None = None) -> np.ndarray:
    """Re-normalise H x W x 3 normals to unit length; vectors with norm < :data:`MIN_NORMAL_NORM` or outside
    ``valid`` become zero (invalid). Returns float32."""
    n = np.asarray(n, dtype=np.float32)
    norm = np.linalg.norm(n, axis=-1, keepdims=True)
    ok = norm >= MIN_NORMAL_NORM
    if valid is not None:
        ok &= valid[..., None]
    return np.where(ok, n / np.maximum(norm, 1e-12), 0.0).astype(np.float32)


def fit_label(arr: np.ndarray, hw: tuple[int, int], path: Path, what: str) -> np.ndarray:
    """Resize a 2-D label to the image size ``hw`` with nearest neighbour (SPEC §6); error if implausible."""
    if arr.ndim != 2:
        raise DataFormatError(path, f"expected a 2-D {what} (H x W), got shape {arr.shape}")
    if arr.shape == tuple(hw):
        return arr
    _check_aspect(arr.shape, hw, path, what)
    return resize_nearest(arr, hw)


def fit_normals(n: np.ndarray, hw: tuple[int, int], path: Path) -> np.ndarray:
    """Resize H x W x 3 normals to ``hw`` (cubic, re-normalised; invalid where the nearest source is)."""
    if n.ndim != 3 or n.shape[2] != 3:
        raise DataFormatError(path, f"expected normals of shape H x W x 3, got {n.shape}")
    if n.shape[:2] == tuple(hw):
        return n
    _check_aspect(n.shape[:2], hw, path, "normals")
    valid = resize_nearest(np.linalg.norm(n, axis=-1) > 0, hw)
    return normalize_normals(_resize_cubic_channels(n, hw), valid)


# ----------------------------------------------------------------------------------------------------
# NYUD reading
# ----------------------------------------------------------------------------------------------------


def _check_finite(arr: np.ndarray, path: Path, what: str) -> None:
    if not np.isfinite(arr).all():
        bad = int((~np.isfinite(arr)).sum())
        raise DataFormatError(path, f"{what} contains {bad} NaN/inf value(s); expected finite values")


def read_nyud_semseg(path: str | os.PathLike[str]) -> np.ndarray:
    """Read ``segmentation/<id>.png`` (0..40) as uint8: 0 -> 255 (ignore), k -> k-1 (40 classes)."""
    path = Path(path)
    arr = read_png_2d(path, "NYUD segmentation, values 0..40")
    if arr.size and (arr.min() < 0 or arr.max() > NYUD_NUM_CLASSES):
        bad = np.unique(arr[(arr < 0) | (arr > NYUD_NUM_CLASSES)])[:10].tolist()
        raise DataFormatError(path, f"segmentation values {bad} out of range; expected 0..{NYUD_NUM_CLASSES}")
    arr = arr.astype(np.int64)
    return np.where(arr == 0, IGNORE_INDEX, arr - 1).astype(np.uint8)


def read_depth(path: str | os.PathLike[str]) -> np.ndarray:
    """Read ``depth/<id>.npy``: float32 H x W metres, 0 = invalid (a trailing singleton axis is dropped)."""
    path = Path(path)
    arr = read_npy(path, "depth, float H x W metres")
    if arr.ndim == 3 and arr.shape[2] == 1:
        arr = arr[..., 0]
    if arr.ndim != 2:
        raise DataFormatError(path, f"expected depth of shape H x W, got {arr.shape}")
    if arr.dtype.kind in "iub":  # most likely millimetres, which would be read as metres
        top = int(arr.max()) if arr.size else 0
        raise DataFormatError(path, f"integer depth (dtype {arr.dtype}, values up to {top}); expected float metres "
                                    "(from millimetres: save depth / 1000 as float32)")
    arr = arr.astype(np.float32)
    _check_finite(arr, path, "depth")
    if arr.size and arr.min() < 0:
        raise DataFormatError(path, f"negative depth {float(arr.min())}; expected metres >= 0 (0 = invalid)")
    return arr


def read_nyud_normals(path: str | os.PathLike[str]) -> np.ndarray:
    """Read ``normals/<id>.npy``: float32 H x W x 3, re-normalised; zero (or near-zero) vectors = invalid."""
    path = Path(path)
    arr = read_npy(path, "normals, float H x W x 3 unit vectors")
    if arr.ndim != 3 or arr.shape[2] != 3:
        raise DataFormatError(path, f"expected normals of shape H x W x 3, got {arr.shape}")
    arr = arr.astype(np.float32)
    _check_finite(arr, path, "normals")
    if arr.size and np.abs(arr).max() > 1.01:
        raise DataFormatError(
            path, f"normal components up to {float(np.abs(arr).max()):.3g}; expected in [-1, 1]"
        )
    return normalize_normals(arr)


def read_nyud_edge(path: str | os.PathLike[str]) -> np.ndarray:
    """Read ``edge/<id>.npy`` as float32 H x W in {0, 1}."""
    path = Path(path)
    arr = read_npy(path, "edges, H x W in {0, 1}")
    if arr.ndim == 3 and arr.shape[2] == 1:
        arr = arr[..., 0]
    if arr.ndim != 2:
        raise DataFormatError(path, f"expected edges of shape H x W, got {arr.shape}")
    arr = arr.astype(np.float32)
    _check_finite(arr, path, "edge map")
    if not np.isin(arr, (0.0, 1.0)).all():
        bad = np.unique(arr[~np.isin(arr, (0.0, 1.0))])[:10].tolist()
        raise DataFormatError(path, f"edge values {bad}; expected only 0 and 1")
    return arr


# ----------------------------------------------------------------------------------------------------
# PASCAL reading
# ----------------------------------------------------------------------------------------------------


def read_pascal_semseg(path: str | os.PathLike[str]) -> np.ndarray:
    """Read a PASCAL semseg PNG as uint8 H x W: 0..20, 255 = ignore."""
    path = Path(path)
    arr = read_png_2d(path, "PASCAL semseg, values 0..20 or 255")
    bad_mask = (arr < 0) | ((arr > PASCAL_NUM_CLASSES - 1) & (arr != IGNORE_INDEX))
    if bad_mask.any():
        bad = np.unique(arr[bad_mask])[:10].tolist()
        raise DataFormatError(path, f"semseg values {bad} out of range; expected 0..20 or 255 (ignore)")
    return arr.astype(np.uint8)


def read_sal(path: str | os.PathLike[str]) -> np.ndarray:
    """Read ``sal_distill/<id>.png`` as float32 H x W: 1 where v / 255 > 0.5, else 0."""
    path = Path(path)
    arr = read_png_2d(path, "saliency, gray PNG 0..255", gray_values=True)
    if arr.size and (arr.min() < 0 or arr.max() > 255):
        raise DataFormatError(path, f"saliency values {arr.min()}..{arr.max()}; expected 0..255")
    return (arr.astype(np.float32) / 255.0 > 0.5).astype(np.float32)


def _mat_str(x: Any) -> str:
    a = np.asarray(x)
    if a.dtype.kind in "US":
        return "".join(str(s) for s in a.ravel())
    if a.dtype == object and a.size == 1:
        return _mat_str(a.ravel()[0])
    raise ValueError(f"expected a string, got {a.dtype} {a.shape}")


def _struct_items(x: Any) -> list[Any]:
    a = np.asarray(x)
    if a.size == 0:
        return []
    return list(a.ravel())


def read_human_parts_objects(path: str | os.PathLike[str]) -> list[dict[str, Any]]:
    """Parse a PASCAL-Part ``human_parts/<id>.mat`` into a list of objects.

    Each object is ``{"class_id": int, "mask": bool HxW, "parts": [(part_name, bool HxW), ...]}``, read
    from ``anno[0][0][1][0]`` (objects; per object ``[1]`` class id, ``[2]`` instance mask, ``[3]`` parts,
    each part ``[0]`` name, ``[1]`` mask).
    """
    path = Path(path)
    mat = read_mat(path, "a PASCAL-Part annotation with variable 'anno'")
    if "anno" not in mat:
        keys = sorted(k for k in mat if not k.startswith("__"))
        raise DataFormatError(path, f"no variable 'anno' (PASCAL-Part annotation); variables: {keys}")
    objects: list[dict[str, Any]] = []
    shape: tuple[int, ...] | None = None
    try:
        anno = mat["anno"]
        objs = _struct_items(anno[0][0][1])
        for k, obj in enumerate(objs):
            class_id = int(np.asarray(obj[1]).ravel()[0])
            mask = np.asarray(obj[2])
            if mask.ndim != 2:
                raise DataFormatError(
                    path, f"object {k}: expected a 2-D instance mask, got shape {mask.shape}"
                )
            if shape is None:
                shape = mask.shape
            elif mask.shape != shape:
                raise DataFormatError(path, f"object {k}: mask shape {mask.shape} differs from {shape}")
            parts = []
            for part in _struct_items(obj[3]):
                name = _mat_str(part[0])
                pmask = np.asarray(part[1])
                if pmask.shape != mask.shape:
                    raise DataFormatError(
                        path, f"object {k} part {name!r}: mask shape {pmask.shape} differs from {mask.shape}"
                    )
                parts.append((name, pmask.astype(bool)))
            objects.append({"class_id": class_id, "mask": mask.astype(bool), "parts": parts})
    except DataFormatError:
        raise
    except (IndexError, TypeError, ValueError, KeyError, AttributeError) as e:
        raise DataFormatError(
            path,
            "unexpected structure (expected PASCAL-Part anno[0][0][1][0] = objects with "
            f"[1] class id, [2] mask, [3] parts of ([0] name, [1] mask)): {type(e).__name__}: {e}",
        ) from None
    for k, obj in enumerate(objects):
        if not 1 <= obj["class_id"] <= PASCAL_PART_NUM_OBJECT_CLASSES:
            raise DataFormatError(
                path, f"object {k}: class id {obj['class_id']} out of range; expected 1..20 (15 = person)"
            )
    return objects


def human_parts_from_objects(
    objects: Iterable[Mapping[str, Any]], hw: tuple[int, int], path: Path
) -> tuple[np.ndarray, bool]:
    """Build the 7-class parts map (uint8; 0 bg, 1..6 parts, 255 ignore) from parsed objects.

    Only persons (class 15) count. Returns ``(label, has_parts)``; when no part pixel exists the label is all
    :data:`IGNORE_INDEX` (SPEC §6).
    """
    label = np.zeros(hw, dtype=np.uint8)
    any_part = False
    for k, obj in enumerate(objects):
        if obj["class_id"] != PERSON_CLASS_ID:
            continue
        mask = obj["mask"]
        if mask.shape != tuple(hw):
            raise DataFormatError(path, f"object {k}: mask shape {mask.shape} differs from {tuple(hw)}")
        person = np.zeros(hw, dtype=np.uint8)
        person[mask] = PERSON_WITHOUT_PART
        for name, pmask in obj["parts"]:
            if name not in PART_GROUPS:
                raise DataFormatError(
                    path,
                    f"object {k}: unknown person part name {name!r}; expected one of {sorted(PART_GROUPS)}",
                )
            person[pmask] = PART_GROUPS[name]
            any_part = any_part or bool(pmask.any())
        label = np.where(person != 0, person, label)
    if not any_part:
        label[:] = IGNORE_INDEX
    return label, any_part


def read_human_parts(path: str | os.PathLike[str], hw: tuple[int, int] | None = None) -> np.ndarray:
    """Read ``human_parts/<id>.mat`` as the 7-class uint8 parts map at the masks' size (all-255 if no part).

    A file with no object at all has no size of its own: it gives an all-ignore map of size ``hw`` (the
    image's; 1 x 1 if not given).
    """
    path = Path(path)
    objects = read_human_parts_objects(path)
    if not objects:
        return np.full(hw if hw is not None else (1, 1), IGNORE_INDEX, dtype=np.uint8)
    hw = objects[0]["mask"].shape
    return human_parts_from_objects(objects, hw, path)[0]


def has_person(root: str | os.PathLike[str], sample_id: str) -> bool:
    """True if the PASCAL sample has at least one labelled person part pixel (class 15 with parts).

    Images without one are all-ignore for human_parts; a parts-only run drops them.
    """
    path = pascal_paths(root, sample_id)["human_parts"]
    objects = read_human_parts_objects(path)
    return any(o["class_id"] == PERSON_CLASS_ID and any(m.any() for _, m in o["parts"]) for o in objects)


def read_labelmap(path: str | os.PathLike[str]) -> np.ndarray:
    """Read ``pascal-context/trainval/<id>.mat`` key ``LabelMap`` as int32 H x W (0 = unlabelled, <= 459)."""
    path = Path(path)
    mat = read_mat(path, "a Context label map with variable 'LabelMap'")
    if "LabelMap" not in mat:
        keys = sorted(k for k in mat if not k.startswith("__"))
        raise DataFormatError(path, f"no variable 'LabelMap'; variables: {keys}")
    arr = np.asarray(mat["LabelMap"])
    if arr.ndim != 2 or not np.issubdtype(arr.dtype, np.number):
        raise DataFormatError(path, f"expected a numeric 2-D LabelMap, got {arr.dtype} shape {arr.shape}")
    if np.issubdtype(arr.dtype, np.floating):
        _check_finite(arr, path, "LabelMap")
        if not np.array_equal(arr, np.round(arr)):
            raise DataFormatError(path, "LabelMap has non-integer values; expected integer class ids")
    if arr.size and (arr.min() < 0 or arr.max() > CONTEXT_NUM_CLASSES):
        raise DataFormatError(
            path, f"LabelMap values {arr.min()}..{arr.max()} out of range; expected 0..{CONTEXT_NUM_CLASSES}"
        )
    return arr.astype(np.int32)


def thin(mask: np.ndarray, max_iter: int = 100) -> np.ndarray:
    """Zhang-Suen thinning of a boolean mask to 1-pixel-wide lines.

    Beyond the image border the mask is taken to continue (edge replication), so lines that run into the
    border are not shortened there.
    """
    img = np.asarray(mask, dtype=bool).copy()
    for _ in range(max_iter):
        changed = False
        for step in (0, 1):
            p = np.pad(img, 1, mode="edge")
            # neighbours P2..P9 clockwise from north
            n = [
                p[:-2, 1:-1], p[:-2, 2:], p[1:-1, 2:], p[2:, 2:],
                p[2:, 1:-1], p[2:, :-2], p[1:-1, :-2], p[:-2, :-2],
            ]  # fmt: skip
            b = sum(x.astype(np.uint8) for x in n)
            a = sum((~n[i] & n[(i + 1) % 8]).astype(np.uint8) for i in range(8))
            if step == 0:
                c1 = ~(n[0] & n[2] & n[4])
                c2 = ~(n[2] & n[4] & n[6])
            else:
                c1 = ~(n[0] & n[2] & n[6])
                c2 = ~(n[0] & n[4] & n[6])
            remove = img & (b >= 2) & (b <= 6) & (a == 1) & c1 & c2
            if remove.any():
                img &= ~remove
                changed = True
        if not changed:
            break
    return img


def edges_from_labelmap(labelmap: np.ndarray) -> np.ndarray:
    """Edge map (float32 H x W, {0, 1}) = thinned non-zero 4-neighbour Laplacian of the label map."""
    lab = np.asarray(labelmap, dtype=np.int64)
    lap = ndimage.convolve(lab, np.array([[0, 1, 0], [1, -4, 1], [0, 1, 0]], dtype=np.int64), mode="nearest")
    return thin(lap != 0).astype(np.float32)


def read_pascal_edge(path: str | os.PathLike[str]) -> np.ndarray:
    """Edges of a PASCAL sample, derived from its ``LabelMap`` file (float32 H x W, {0, 1})."""
    return edges_from_labelmap(read_labelmap(path))


def normals_valid_mask(labelmap: np.ndarray) -> np.ndarray:
    """Pixels whose Context class is "valid" for distilled normals (:data:`NORMALS_VALID_CONTEXT_CLASSES`)."""
    if NORMALS_VALID_CONTEXT_CLASSES is None:
        return labelmap != 0
    return np.isin(labelmap, sorted(NORMALS_VALID_CONTEXT_CLASSES))


def read_pascal_normals(path: str | os.PathLike[str], labelmap: np.ndarray | None = None) -> np.ndarray:
    """Read ``normals_distill/<id>.png`` as float32 H x W x 3 unit normals (n = 2v/255 - 1, re-normalised).

    Pixels whose class in ``labelmap`` (same size as the PNG) is not valid, or whose decoded vector is shorter
    than :data:`MIN_NORMAL_NORM`, are zero (invalid).
    """
    path = Path(path)
    arr = read_png_rgb(path, "distilled normals, RGB PNG")
    n = arr.astype(np.float32) * (2.0 / 255.0) - 1.0
    valid = None
    if labelmap is not None:
        if labelmap.shape != arr.shape[:2]:
            labelmap = fit_label(labelmap, arr.shape[:2], path, "LabelMap for these normals")
        valid = normals_valid_mask(labelmap)
    return normalize_normals(n, valid)


# ----------------------------------------------------------------------------------------------------
# splits and whole samples
# ----------------------------------------------------------------------------------------------------


def read_split(root: str | os.PathLike[str], dataset: str, split: str) -> list[str]:
    """Ids of a split (one id a line; blank lines ignored). A missing file, or an id listed twice (it would be
    trained on or scored twice) -> :class:`DataFormatError`."""
    return read_id_file(split_path(root, dataset, split), dataset, unique=True)


def read_id_file(path: str | os.PathLike[str], dataset: str, unique: bool = False) -> list[str]:
    """Ids of a split file (one id a line; blank lines ignored); with ``unique`` an id listed twice is an error.
    A missing, unreadable or malformed file is a :class:`DataFormatError` naming it."""
    path = Path(path)
    if not path.is_file():
        raise DataFormatError(path, f"missing split file (expected one {dataset} sample id a line)")
    try:
        text = path.read_text(encoding="utf-8-sig")  # a byte-order mark (Notepad, PowerShell) is not part of an id
    except (OSError, UnicodeDecodeError) as e:
        raise DataFormatError(path, f"unreadable split file: {e}") from None
    ids = [line.strip() for line in text.splitlines() if line.strip()]
    seen: set[str] = set()
    for lineno, i in enumerate(ids, 1):
        if any(c.isspace() for c in i) or "/" in i:
            raise DataFormatError(path, f"invalid id {i!r} (entry {lineno}); expected one id per line")
        if unique and i in seen:
            raise DataFormatError(path, f"id {i!r} is listed twice")
        seen.add(i)
    return ids


def read_nyud_sample(
    root: str | os.PathLike[str], sample_id: str, tasks: Sequence[str]
) -> dict[str, np.ndarray]:
    """Read the image and the labels of ``tasks`` of one NYUD_MT sample, labels resized to the image.

    Returns ``image`` uint8 HxWx3, ``semseg`` uint8 HxW (0..39, 255), ``depth`` float32 HxW, ``normals``
    float32 HxWx3, ``edge`` float32 HxW.
    """
    p = nyud_paths(root, sample_id)
    out: dict[str, np.ndarray] = {"image": read_image(p["image"])}
    hw = out["image"].shape[:2]
    for t in tasks:
        if t == "semseg":
            out[t] = fit_label(read_nyud_semseg(p[t]), hw, p[t], "segmentation")
        elif t == "depth":
            out[t] = fit_label(read_depth(p[t]), hw, p[t], "depth")
        elif t == "normals":
            out[t] = fit_normals(read_nyud_normals(p[t]), hw, p[t])
        elif t == "edge":
            out[t] = fit_label(read_nyud_edge(p[t]), hw, p[t], "edge map")
        else:
            raise ValueError(f"unknown NYUD task {t!r}; valid tasks: {list(NYUD_TASKS)}")
    return out


def read_pascal_sample(
    root: str | os.PathLike[str], sample_id: str, tasks: Sequence[str]
) -> dict[str, np.ndarray]:
    """Read the image and the labels of ``tasks`` of one PASCAL_MT sample, labels resized to the image.

    Returns ``image`` uint8 HxWx3, ``semseg`` uint8 (0..20, 255), ``human_parts`` uint8 (0..6, 255; all
    255 without a person), ``sal`` float32 {0,1}, ``normals`` float32 HxWx3 (zero = invalid), ``edge``
    float32 {0,1}.
    """
    p = pascal_paths(root, sample_id)
    out: dict[str, np.ndarray] = {"image": read_image(p["image"])}
    hw = out["image"].shape[:2]
    labelmap: np.ndarray | None = None
    for t in tasks:
        if t == "semseg":
            out[t] = fit_label(read_pascal_semseg(p[t]), hw, p[t], "semseg")
        elif t == "human_parts":
            out[t] = fit_label(read_human_parts(p[t], hw), hw, p[t], "human parts")
        elif t == "sal":
            out[t] = fit_label(read_sal(p[t]), hw, p[t], "saliency")
        elif t in ("normals", "edge"):
            if labelmap is None:
                labelmap = read_labelmap(p["labelmap"])
            if t == "edge":
                out[t] = fit_label(edges_from_labelmap(labelmap), hw, p["labelmap"], "LabelMap")
            else:
                out[t] = fit_normals(read_pascal_normals(p["normals"], labelmap), hw, p["normals"])
        else:
            raise ValueError(f"unknown PASCAL task {t!r}; valid tasks: {list(PASCAL_TASKS)}")
    return out


def read_sample(
    dataset: str, root: str | os.PathLike[str], sample_id: str, tasks: Sequence[str]
) -> dict[str, np.ndarray]:
    """Dispatch to :func:`read_nyud_sample` or :func:`read_pascal_sample`."""
    if dataset == "nyud":
        return read_nyud_sample(root, sample_id, tasks)
    if dataset == "pascal":
        return read_pascal_sample(root, sample_id, tasks)
    raise ValueError(f"unknown dataset {dataset!r}; valid datasets: ['nyud', 'pascal']")
