"""Time the BSDS-style edge evaluation (:class:`medusa_mtl.metrics.EdgeMetric`) per image.

Synthetic but realistic inputs: the label is the 1-pixel boundary of a random Voronoi partition (like the
semantic boundaries of NYUD/PASCAL), the prediction a blurred, noisy, slightly displaced version of it passed
through a sigmoid (thick, soft edges as a network trained with balanced BCE produces).

Usage:
    python benchmarks/edge_eval_speed.py --images 20 --size 128 160 --thresholds 99 [--bg-logit -1.4]
"""

from __future__ import annotations

import argparse
import time

import numpy as np
from scipy import ndimage

from medusa_mtl.metrics import EdgeMetric


def make_pair(
    rng: np.random.Generator, h: int, w: int, regions: int = 12, bg_logit: float = -3.0
) -> tuple[np.ndarray, np.ndarray]:
    """A (probability map, edge label) pair of size ``h`` x ``w``; ``bg_logit`` sets the background level."""
    pts = rng.uniform((0, 0), (h, w), size=(regions, 2))
    yy, xx = np.mgrid[:h, :w]
    d = (yy[..., None] - pts[:, 0]) ** 2 + (xx[..., None] - pts[:, 1]) ** 2
    lab = d.argmin(-1)
    edge = np.zeros((h, w), bool)
    edge[:-1] |= lab[:-1] != lab[1:]
    edge[:, :-1] |= lab[:, :-1] != lab[:, 1:]
    shifted = np.roll(edge, shift=(int(rng.integers(-1, 2)), int(rng.integers(-1, 2))), axis=(0, 1))
    soft = ndimage.gaussian_filter(shifted.astype(np.float64), sigma=1.5 * max(h, w) / 160)
    logit = (3.0 - bg_logit) * soft / soft.max() + bg_logit + rng.normal(0.0, 0.8, size=(h, w))
    prob = 1.0 / (1.0 + np.exp(-logit))
    return prob.astype(np.float32), edge.astype(np.float32)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--images", type=int, default=20)
    ap.add_argument("--size", type=int, nargs=2, default=(128, 160), metavar=("H", "W"))
    ap.add_argument("--thresholds", type=int, default=99)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--bg-logit", type=float, default=-3.0, help="background logit (-3: p~0.05, -1.4: p~0.2)")
    ap.add_argument("--repeats", type=int, default=3, help="report the fastest of this many passes")
    args = ap.parse_args()
    rng = np.random.default_rng(args.seed)
    pairs = [make_pair(rng, *args.size, bg_logit=args.bg_logit) for _ in range(args.images)]
    times, cpu = [], []
    for _ in range(args.repeats):
        metric = EdgeMetric(thresholds=args.thresholds)
        t0, c0 = time.perf_counter(), time.process_time()
        for prob, gt in pairs:
            metric.update([prob[None]], [gt[None]])
        times.append(time.perf_counter() - t0)
        cpu.append(time.process_time() - c0)
    elapsed = min(times)
    res = metric.compute()
    h, w = args.size
    print(
        f"{args.images} images {h}x{w}, {args.thresholds} thresholds, bg logit {args.bg_logit}: "
        f"{elapsed / args.images * 1000:.1f} ms/image (best of {args.repeats}: total {elapsed:.2f} s; "
        f"all passes {', '.join(f'{t / args.images * 1000:.0f}' for t in times)} ms/image, "
        f"CPU time {min(cpu) / args.images * 1000:.1f} ms/image); "
        f"odsF {res['odsF']:.2f} oisF {res['oisF']:.2f} AP {res['AP']:.2f}"
    )


if __name__ == "__main__":
    main()
