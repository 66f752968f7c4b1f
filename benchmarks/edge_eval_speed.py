"""Time the BSDS-style edge evaluation (:class:`medusa_mtl.metrics.EdgeMetric`) per image.

Synthetic but realistic inputs: the label is the 1-pixel boundary of a random Voronoi partition (like the
semantic boundaries of NYUD/PASCAL), the prediction a blurred, noisy, slightly displaced version of it passed
through a sigmoid (thick, soft edges as a network trained with balanced BCE produces).

Usage:
    python benchmarks/edge_eval_speed.py --images 20 --size 128 160 --thresholds 99
"""

from __future__ import annotations

import argparse
import time

import numpy as np
from scipy import ndimage

from medusa_mtl.metrics import EdgeMetric


def make_pair(rng: np.random.Generator, h: int, w: int, regions: int = 12) -> tuple[np.ndarray, np.ndarray]:
    """A (probability map, edge label) pair of size ``h`` x ``w``."""
    pts = rng.uniform((0, 0), (h, w), size=(regions, 2))
    yy, xx = np.mgrid[:h, :w]
    d = (yy[..., None] - pts[:, 0]) ** 2 + (xx[..., None] - pts[:, 1]) ** 2
    lab = d.argmin(-1)
    edge = np.zeros((h, w), bool)
    edge[:-1] |= lab[:-1] != lab[1:]
    edge[:, :-1] |= lab[:, :-1] != lab[:, 1:]
    shifted = np.roll(edge, shift=(int(rng.integers(-1, 2)), int(rng.integers(-1, 2))), axis=(0, 1))
    soft = ndimage.gaussian_filter(shifted.astype(np.float64), sigma=1.5 * max(h, w) / 160)
    logit = 6.0 * soft / soft.max() - 3.0 + rng.normal(0.0, 0.8, size=(h, w))
    prob = 1.0 / (1.0 + np.exp(-logit))
    return prob.astype(np.float32), edge.astype(np.float32)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--images", type=int, default=20)
    ap.add_argument("--size", type=int, nargs=2, default=(128, 160), metavar=("H", "W"))
    ap.add_argument("--thresholds", type=int, default=99)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    rng = np.random.default_rng(args.seed)
    pairs = [make_pair(rng, *args.size) for _ in range(args.images)]
    metric = EdgeMetric(thresholds=args.thresholds)
    t0 = time.perf_counter()
    for prob, gt in pairs:
        metric.update([prob[None]], [gt[None]])
    elapsed = time.perf_counter() - t0
    res = metric.compute()
    h, w = args.size
    print(
        f"{args.images} images {h}x{w}, {args.thresholds} thresholds: {elapsed / args.images * 1000:.1f} ms/image "
        f"(total {elapsed:.2f} s); odsF {res['odsF']:.2f} oisF {res['oisF']:.2f} AP {res['AP']:.2f}"
    )


if __name__ == "__main__":
    main()
