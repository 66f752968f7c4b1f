"""Speed of UFL training with and without the backbone feature cache (models/feature_cache.py).

For each architecture: a UFL model (frozen source backbone, new PASCAL heads for human parts and saliency) trains
the same steps twice from the same initial weights, once computing the backbone on every batch and once with the
cache, on inputs that recur as under the standard profile's PASCAL augmentation (flips only: two inputs per
image, a new random order and flips every epoch; the cache computes each image's mirrored input ahead). It prints
the seconds per step of the epochs after the first (the first fills the cache), the speed-up, and whether the two
trainings end with bit-identical weights; and writes a JSON record (versions, machine, threads, time).

Usage::

    python benchmarks/ufl_feature_cache.py [--models mt_baseline,medusa] [--images 64] [--epochs 3]
        [--size 96] [--batch 8] [--threads 1] [--json results/ufl_feature_cache.json]

The first epoch costs about twice an uncached one (each batch and its mirror image); the whole-run saving is in
the pilot numbers of configs/benchmark/standard.yaml.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import platform
import time
from pathlib import Path
from typing import Any

import torch

from medusa_mtl.models import create_model
from medusa_mtl.models.feature_cache import set_feature_cache
from medusa_mtl.provenance import versions

MODELS = ("mt_baseline", "mtan", "mtinet", "medusa")


def _train(arch: str, images: torch.Tensor, epochs: int, batch: int, cached: bool) -> tuple[float, dict, dict]:
    """Seconds per step after the first epoch, final weights, cache statistics."""
    torch.manual_seed(0)
    model = create_model(arch, tasks=["human_parts", "sal"], dataset="pascal")
    model.freeze_backbone()
    model.train()
    cache = set_feature_cache(model, True, mirror=True) if cached else None
    opt = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=3e-3)
    order = torch.Generator().manual_seed(1)
    later, steps = 0.0, 0
    for epoch in range(epochs):
        perm = torch.randperm(len(images), generator=order)
        flips = torch.rand(len(images), generator=order) < 0.5
        t0 = time.perf_counter()
        for start in range(0, len(images) - batch + 1, batch):
            idx = perm[start:start + batch]
            x = images[idx].clone()
            x[flips[idx]] = x[flips[idx]].flip(-1)
            out = model(x)
            loss = sum(out[t].float().mean() for t in ("human_parts", "sal"))
            opt.zero_grad()
            loss.backward()
            opt.step()
            if epoch > 0:
                steps += 1
        if epoch > 0:
            later += time.perf_counter() - t0
    return later / max(steps, 1), model.state_dict(), (cache.stats() if cache else {})


def run(models: list[str], n_images: int, epochs: int, size: int, batch: int) -> dict[str, Any]:
    images = torch.randn(n_images, 3, size, size, generator=torch.Generator().manual_seed(0))
    rows = []
    for arch in models:
        plain, w_plain, _ = _train(arch, images, epochs, batch, cached=False)
        fast, w_fast, stats = _train(arch, images, epochs, batch, cached=True)
        equal = w_plain.keys() == w_fast.keys() and all(torch.equal(w_plain[k], w_fast[k]) for k in w_plain)
        rows.append({"model": arch, "step_s": round(plain, 4), "step_s_cached": round(fast, 4),
                     "speedup": round(plain / fast, 2), "identical_weights": equal, "cache": stats})
    return {"benchmark": "ufl_feature_cache", "time": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
            "machine": platform.processor() or platform.machine(), "threads": torch.get_num_threads(),
            "images": n_images, "epochs": epochs, "size": size, "batch": batch, "versions": versions(), "rows": rows}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--models", default=",".join(MODELS))
    ap.add_argument("--images", type=int, default=64)
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--size", type=int, default=96, help="square input side (the standard profile's PASCAL: 96)")
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--threads", type=int, default=1, help="torch threads (the benchmark's runs use 1 each)")
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    record = run(args.models.split(","), args.images, args.epochs, args.size, args.batch)
    print(f"UFL training steps after the first epoch, {args.size}x{args.size}, batch {args.batch}, "
          f"{args.threads} thread(s), {args.images} images x 2 flips")
    print(f"| {'model':<12} | s/step | s/step cached | speed-up | identical weights |")
    print("|--------------|--------|---------------|----------|-------------------|")
    for r in record["rows"]:
        print(f"| {r['model']:<12} | {r['step_s']:.3f}  | {r['step_s_cached']:.3f}         | {r['speedup']:.2f}x    "
              f"| {'yes' if r['identical_weights'] else 'NO'}               |")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(record, indent=2) + "\n")
        print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
