"""Procedural synthetic multi-task datasets (``../shared/SYNTHETIC.md``) in the NYUD_MT / PASCAL_MT formats.

A vectorised NumPy ray caster renders 3-D scenes; the image and every label come from the same rays:

* ``nyud``: indoor rooms (floor, walls, ceiling, windows, doors, pictures, beds, sofas, chairs, tables,
  cabinets, lamps, props) -> image, semseg (0 = unlabelled, 1..13, :data:`NYUD_CLASS_NAMES`), depth
  (z-distance in metres; 0 on window glass), normals (camera frame; 0 on window glass), edge (1-px semantic
  boundaries).
* ``pascal``: outdoor scenes with articulated humanoid figures among VOC objects -> image, semseg (21 VOC
  classes, 0 = background), human parts (PASCAL-Part ``.mat`` with real part names), saliency (persons and
  large objects), normals, Context ``LabelMap`` (real Context ids, :data:`CONTEXT_IDS`).

Camera: pinhole, principal point at the image centre; NYUD focal length 0.8107 x width (the Kinect's),
PASCAL 1.0 x width (:func:`intrinsics`).

Example:
    >>> from medusa_mtl.data.synthetic import generate
    >>> generate("nyud", "data/NYUD_MT", 800, 200, (128, 160), seed=0)  # doctest: +SKIP
"""

from __future__ import annotations

import numpy as np

from .generate import (
    DEFAULT_SIZES,
    GENERATOR_VERSION,
    META_FILE,
    SIZE_MULTIPLE,
    SYNTH_DATASETS,
    GenerateResult,
    add_synth_arguments,
    check_size,
    detect_dataset,
    generate,
    parse_size,
    render_sample,
    run_synth,
    sample_id,
    sample_rng,
    split_ids,
)
from .nyud import NYUD_CLASS_NAMES, nyud_intrinsics
from .pascal import CONTEXT_IDS, PERSON_PARTS, SALIENT_MIN_AREA, VOC_CLASS_NAMES, pascal_intrinsics


def intrinsics(dataset: str, height: int, width: int) -> np.ndarray:
    """3x3 intrinsics matrix K of the synthetic camera (pixel centres at +0.5; a camera-frame point
    (x, y, z) with z < 0 projects to u = fx * x / -z + cx, v = -fy * y / -z + cy, as y points up)."""
    if dataset == "nyud":
        fx, fy, cx, cy = nyud_intrinsics(height, width)
    elif dataset == "pascal":
        fx, fy, cx, cy = pascal_intrinsics(height, width)
    else:
        raise ValueError(f"unknown synthetic dataset {dataset!r}; expected one of {list(SYNTH_DATASETS)}")
    return np.array([[fx, 0.0, cx], [0.0, fy, cy], [0.0, 0.0, 1.0]])


__all__ = [
    "CONTEXT_IDS",
    "DEFAULT_SIZES",
    "GENERATOR_VERSION",
    "META_FILE",
    "NYUD_CLASS_NAMES",
    "PERSON_PARTS",
    "SALIENT_MIN_AREA",
    "SIZE_MULTIPLE",
    "SYNTH_DATASETS",
    "VOC_CLASS_NAMES",
    "GenerateResult",
    "add_synth_arguments",
    "check_size",
    "detect_dataset",
    "generate",
    "intrinsics",
    "parse_size",
    "render_sample",
    "run_synth",
    "sample_id",
    "sample_rng",
    "split_ids",
]
