"""Speed of the synthetic dataset generator (SYNTHETIC.md: 1,000 images in under a minute on two cores).

Generates NYUD-like 800/200 at 128x160 and PASCAL-like 800/200 at 128x128 into a temporary folder, prints a
table of wall time, images/s and CPU time per image, and writes a JSON record (versions, machine, load, time).

Usage::

    python benchmarks/synth_speed.py [--workers 2] [--json results/synth_speed.json]

Wall time depends on what else runs on the machine: the JSON records the load average before and after, and
the CPU seconds per image (load-independent up to cache effects).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import resource
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from medusa_mtl.data.synthetic import generate
from medusa_mtl.data.synthetic.generate import default_workers
from medusa_mtl.provenance import versions

CASES = (("nyud", (128, 160)), ("pascal", (128, 128)))


def _cpu_seconds() -> float:
    own = resource.getrusage(resource.RUSAGE_SELF)
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


def _versions() -> dict[str, str]:
    """The project's version record (:func:`medusa_mtl.provenance.versions`) plus what this benchmark adds."""
    import PIL

    return {**versions(), "pillow": PIL.__version__}


def run(num_train: int, num_val: int, workers: int, seed: int, keep: Path | None) -> dict[str, Any]:
    """Run every case; returns the JSON record."""
    results = []
    load_before = os.getloadavg()
    t_start = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="synth_speed_") as tmp:
        base = keep if keep is not None else Path(tmp)
        for dataset, size in CASES:
            root = base / f"{dataset}_{size[0]}x{size[1]}"
            cpu0 = _cpu_seconds()
            res = generate(dataset, root, num_train, num_val, size, seed=seed, workers=workers)
            cpu = _cpu_seconds() - cpu0
            n = res.num_images
            results.append(
                {
                    "dataset": dataset,
                    "size": list(size),
                    "num_train": num_train,
                    "num_val": num_val,
                    "wall_s": round(res.seconds, 3),
                    "images_per_s": round(n / res.seconds, 2),
                    "cpu_s": round(cpu, 2),
                    "cpu_ms_per_image": round(1000.0 * cpu / n, 1),
                    "under_60s": res.seconds < 60.0,
                    "persons": res.persons if dataset == "pascal" else None,
                }
            )
    return {
        "benchmark": "synth_speed",
        "time_utc": dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "versions": _versions(),
        "platform": platform.platform(),
        "cpu_count": os.cpu_count(),
        "cpus_available": default_workers(),
        "workers": workers,
        "seed": seed,
        "load_avg_before": [round(x, 2) for x in load_before],
        "load_avg_after": [round(x, 2) for x in os.getloadavg()],
        "total_wall_s": round(time.perf_counter() - t_start, 2),
        "results": results,
    }


def main(argv: list[str] | None = None) -> int:
    """Command line entry point."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--num-train", type=int, default=800)
    ap.add_argument("--num-val", type=int, default=200)
    ap.add_argument("--workers", type=int, default=None, help="processes (default: available CPUs)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json", type=Path, default=Path("results/synth_speed.json"), help="output JSON path")
    ap.add_argument("--keep", type=Path, default=None, help="write the datasets here instead of a temp dir")
    args = ap.parse_args(argv)
    workers = args.workers or default_workers()
    record = run(args.num_train, args.num_val, workers, args.seed, args.keep)
    print(f"synthetic generator speed ({workers} workers, load average before {record['load_avg_before'][0]:.2f})")
    print(f"{'dataset':8} {'size':>8} {'images':>7} {'wall s':>8} {'images/s':>9} {'CPU ms/img':>11} {'< 60 s':>7}")
    for r in record["results"]:
        size = f"{r['size'][0]}x{r['size'][1]}"
        n = r["num_train"] + r["num_val"]
        print(
            f"{r['dataset']:8} {size:>8} {n:>7} {r['wall_s']:>8.1f} {r['images_per_s']:>9.1f} "
            f"{r['cpu_ms_per_image']:>11.1f} {'yes' if r['under_60s'] else 'NO':>7}"
        )
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(record, indent=2) + "\n")
    print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
