"""``medusa data example``: a plain folder of rendered rooms with two labels the benchmark never uses.

It stands in for a user's own data in the README's worked example of :mod:`medusa_mtl.data.generic`
(``medusa data import`` -> ``medusa data check`` -> ``medusa ufl`` from a NYUD checkpoint -> ``medusa predict``
/ ``medusa evaluate``). The rooms come from the NYUD-like renderer with a separate seed stream, so none of the
benchmark's images reappears; the labels are new tasks for a NYUD model:

- ``floor/<id>.png``: 8-bit mask, 255 where free floor is visible, 0 elsewhere (a ``binary`` task, like a
  "drivable ground" mask);
- ``furniture/<id>.png``: palette PNG of furniture groups, :data:`FURNITURE_CLASSES` (a ``segmentation`` task);
- ``images/<id>.jpg``: the RGB image.

There are no split files: that is what a plain folder looks like before ``medusa data import``.

Example:
    >>> write_example_folder("data/rooms_plain", num=200, size=(64, 64))  # doctest: +SKIP
"""

from __future__ import annotations

import argparse
import os
import shutil
from pathlib import Path

import numpy as np
from PIL import Image

from ...atomic import make_temp_dir
from ...errors import ConfigError
from ...options import output_dir, positive_int
from .generate import sample_rng
from .nyud import BED, CABINET, CHAIR, FLOOR, SOFA, TABLE, render_nyud

FURNITURE_CLASSES = ("background", "seating", "table", "bed", "storage")
FURNITURE_COLORS = ((0, 0, 0), (230, 120, 40), (60, 160, 230), (150, 80, 200), (90, 200, 90))
_GROUP = {SOFA: 1, CHAIR: 1, TABLE: 2, BED: 3, CABINET: 4}
EXAMPLE_SEED_OFFSET = 7919  # keeps the example's rooms apart from the benchmark's (same renderer)


def furniture_labels(semseg: np.ndarray) -> np.ndarray:
    """Group the renderer's classes into :data:`FURNITURE_CLASSES` indices (uint8)."""
    out = np.zeros(semseg.shape, np.uint8)
    for cls, group in _GROUP.items():
        out[semseg == cls] = group
    return out


def _palette_png(labels: np.ndarray) -> Image.Image:
    im = Image.fromarray(labels, mode="P")
    flat = [v for rgb in FURNITURE_COLORS for v in rgb]
    im.putpalette(flat + [0] * (768 - len(flat)))
    return im


def write_example_folder(out: str | os.PathLike[str], num: int = 200, size: tuple[int, int] = (64, 64),
                         seed: int = 0) -> Path:
    """Render ``num`` rooms at ``size`` into ``out`` (``images/``, ``floor/``, ``furniture/``); atomic: the
    folder appears complete or not at all. ``out`` must not exist or be empty. Returns ``out``."""
    out = Path(out)
    if num < 1:
        raise ValueError(f"--num must be >= 1, got {num}")
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise ConfigError(f"--out {out}: exists and is not an empty folder; choose a new folder")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = make_temp_dir(out.parent, f".{out.name}.")
    try:
        for sub in ("images", "floor", "furniture"):
            (tmp / sub).mkdir()
        for i in range(num):
            sample = render_nyud(sample_rng("nyud", seed + EXAMPLE_SEED_OFFSET, i), size)
            sid = f"room_{i:05d}"
            Image.fromarray(sample["image"]).save(tmp / "images" / f"{sid}.jpg", quality=95)
            floor = np.where(sample["semseg"] == FLOOR, 255, 0).astype(np.uint8)
            Image.fromarray(floor, mode="L").save(tmp / "floor" / f"{sid}.png")
            _palette_png(furniture_labels(sample["semseg"])).save(tmp / "furniture" / f"{sid}.png")
        if out.exists():
            out.rmdir()
        os.replace(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out


def add_example_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``medusa data example``."""
    parser.add_argument("--out", required=True, type=output_dir, help="output folder (new or empty)")
    parser.add_argument("--num", type=positive_int, default=200, help="number of images (default 200)")
    parser.add_argument("--size", default="64x64", help="HxW of the images (default 64x64)")
    parser.add_argument("--seed", type=int, default=0, help="seed; the same seed gives the same rooms")


def run_example(args: argparse.Namespace) -> int:
    """``medusa data example``: write the folder and say what is in it."""
    from ..sizes import parse_size

    size = parse_size(args.size)
    out = write_example_folder(args.out, num=args.num, size=(int(size[0]), int(size[1])), seed=args.seed)
    print(f"wrote {args.num} rooms to {out}: images/ (RGB), floor/ (mask 0/255), "
          f"furniture/ (palette PNG: {', '.join(FURNITURE_CLASSES)})")
    return 0
