"""The main job: ``medusa benchmark --profile quick|full --out results/``.

1. Generates the synthetic NYUD and PASCAL datasets if they are absent (SYNTHETIC.md).
2. Trains ST, MT baseline, MTAN, PAD-Net, MTI-Net and Medusa (MTAN/PAD-Net/MTI-Net/Medusa with and without
   normals + edge auxiliaries) on synthetic NYUD; model selection on a held-out part of train, the reported
   numbers on the test split.
3. Trains PASCAL single-task references and runs UFL (human_parts, sal) from each method's frozen NYUD backbone.
4. Writes ``REPORT.md`` (MTL table, UFL table, resource table and plot, example predictions) and
   ``results.json`` with every number, the profile, seed, versions and wall times.

Every number is measured by this run; nothing is copied or hard-coded. A run whose ``result.json`` exists for
the same settings is reused, so an interrupted benchmark resumes where it stopped (a half-trained run resumes
from its ``last.ckpt``).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import shutil
import time
from dataclasses import asdict, dataclass, field
from importlib import resources as importlib_resources
from pathlib import Path
from typing import Any

import yaml

from .errors import ConfigError
from .metrics import delta_m
from .provenance import provenance, write_json

NYUD_MAIN = ["semseg", "depth"]
NYUD_NE = ["semseg", "depth", "normals", "edge"]
UFL_TASKS = ["human_parts", "sal"]

# (registry name, display name, head, has an N+E variant, has a UFL row)
METHODS: list[tuple[str, str, str, bool]] = [
    ("single_task", "ST baseline", "HRHead", False),
    ("mt_baseline", "MT baseline", "HRHead", False),
    ("mtan", "MTAN", "DeepLab-v3+", True),
    ("padnet", "PAD-Net", "HRHead", True),
    ("mtinet", "MTI-Net", "HRHead", True),
    ("medusa", "Medusa", "MSA", True),
]


@dataclass
class Run:
    """One training run of the benchmark."""

    key: str
    group: str  # "mtl", "st_pascal" or "ufl"
    model: str
    label: str
    head: str
    dataset: str
    tasks: list[str]
    aux_tasks: list[str] | None = None
    ne: bool = False
    source: str | None = None  # UFL: key of the NYUD run whose backbone is frozen
    extra: dict[str, Any] = field(default_factory=dict)


def load_profile(name: str) -> dict[str, Any]:
    """A benchmark profile by name (``quick``, ``full``) or path to a YAML file."""
    path = Path(name)
    if path.suffix in (".yaml", ".yml"):
        if not path.is_file():
            raise FileNotFoundError(f"--profile: file not found: {path}")
        text = path.read_text()
    else:
        res = importlib_resources.files("medusa_mtl") / "configs" / "benchmark" / f"{name}.yaml"
        if not res.is_file():
            known = sorted(p.name[:-5] for p in (importlib_resources.files("medusa_mtl") / "configs" /
                                                 "benchmark").iterdir() if p.name.endswith(".yaml"))
            raise ConfigError(f"unknown --profile {name!r}; known profiles: {known} (or a YAML path)")
        text = res.read_text()
    profile = yaml.safe_load(text)
    for key in ("profile", "seed", "data", "loader", "mtl", "st_pascal", "ufl"):
        if key not in profile:
            raise ConfigError(f"profile {name!r} lacks the key {key!r}")
    return profile


def plan_runs(methods: list[str] | None = None) -> list[Run]:
    """Every run of the benchmark, in an order where UFL sources come first."""
    runs: list[Run] = []
    chosen = [m for m in METHODS if methods is None or m[0] in methods]
    for name, label, head, ne in chosen:
        runs.append(Run(f"nyud/{name}", "mtl", name, label, head, "nyud", list(NYUD_MAIN)))
        if ne:
            runs.append(Run(f"nyud/{name}_ne", "mtl", name, label, head, "nyud", list(NYUD_MAIN),
                            aux_tasks=list(NYUD_NE), ne=True))
    runs.append(Run("pascal/single_task", "st_pascal", "single_task", "ST baseline", "HRHead", "pascal",
                    list(UFL_TASKS)))
    for name, label, head, ne in chosen:
        if name == "single_task":
            continue
        source = f"nyud/{name}_ne" if ne else f"nyud/{name}"
        runs.append(Run(f"ufl/{name}", "ufl", name, label, head, "pascal", list(UFL_TASKS), source=source))
    return runs


def _size_text(size: list[int]) -> str:
    return f"{size[0]}x{size[1]}"


def dataset_root(data_dir: Path, dataset: str, spec: dict[str, Any], seed: int) -> Path:
    """Folder of a synthetic dataset for these settings (so profiles never overwrite each other)."""
    folder = f"{dataset}_{_size_text(spec['size'])}_n{spec['num_train']}-{spec['num_val']}_s{seed}"
    return data_dir / folder / ("NYUD_MT" if dataset == "nyud" else "PASCAL_MT")


def ensure_dataset(root: Path, dataset: str, spec: dict[str, Any], seed: int, log: Any) -> None:
    """Generate the synthetic dataset at ``root`` unless a complete one is there."""
    from .data.formats import read_split

    try:
        n_train = len(read_split(root, dataset, "train"))
        n_val = len(read_split(root, dataset, "val"))
        if n_train == spec["num_train"] and n_val == spec["num_val"]:
            log(f"using synthetic {dataset} at {root} ({n_train} train / {n_val} test)")
            return
    except (FileNotFoundError, ValueError):
        pass
    from .data.synthetic import generate

    if root.exists():
        shutil.rmtree(root)
    log(f"generating synthetic {dataset}: {spec['num_train']} train / {spec['num_val']} test at "
        f"{_size_text(spec['size'])} into {root}")
    t0 = time.time()
    generate(dataset, root, num_train=spec["num_train"], num_val=spec["num_val"], size=tuple(spec["size"]),
             seed=seed)
    log(f"  done in {time.time() - t0:.1f} s")


def _fingerprint(run: Run, profile: dict[str, Any]) -> str:
    group = run.group
    relevant = {"run": asdict(run), "data": profile["data"], "loader": profile["loader"],
                "optim": profile[group], "seed": profile["seed"]}
    return hashlib.sha256(json.dumps(relevant, sort_keys=True).encode()).hexdigest()[:16]


def _scalars(metrics: dict[str, dict[str, Any]]) -> dict[str, dict[str, float]]:
    return {t: {k: v for k, v in r.items() if isinstance(v, int | float)} for t, r in metrics.items()}


def execute_run(run: Run, profile: dict[str, Any], roots: dict[str, Path], out: Path,
                results: dict[str, dict[str, Any]], log: Any, progress: bool = True) -> dict[str, Any]:
    """Train, select on the held-out split, test; returns (and caches) the run's result record."""
    import lightning as L

    from .evaluation import evaluate_module, load_module
    from .training import MultiTaskDataModule, MultiTaskModule, make_trainer
    from .ufl import ufl_module_from_checkpoint

    run_dir = out / "runs" / run.key
    record_path = run_dir / "result.json"
    fingerprint = _fingerprint(run, profile)
    if record_path.is_file():
        record = json.loads(record_path.read_text())
        if record.get("fingerprint") == fingerprint:
            log(f"{run.key}: reusing {record_path}")
            return record
    optim = dict(profile[run.group])
    epochs = int(optim.pop("epochs"))
    seed = int(profile["seed"])
    L.seed_everything(seed, workers=True)
    if run.group == "ufl":
        source = results.get(run.source or "")
        if source is None:
            raise ConfigError(f"UFL run {run.key} needs the source run {run.source}, which did not run")
        module = ufl_module_from_checkpoint(source["best_ckpt"], run.tasks, run.dataset, **optim)
    else:
        module = MultiTaskModule(arch=run.model, tasks=run.tasks, aux_tasks=run.aux_tasks, dataset=run.dataset,
                                 **optim)
    spec = profile["data"][run.dataset]
    loader = profile["loader"]
    data = MultiTaskDataModule(
        dataset=run.dataset, root=str(roots[run.dataset]), size=tuple(spec["size"]),
        batch_size=int(loader["batch_size"]), num_workers=int(loader["num_workers"]),
        val_fraction=float(loader["val_fraction"]), seed=seed,
    )
    from .training import EpochSummary

    trainer = make_trainer(
        max_epochs=epochs, default_root_dir=str(run_dir), enable_progress_bar=progress,
        enable_model_summary=False, num_sanity_val_steps=0, log_every_n_steps=5, deterministic=False,
        callbacks=None if progress else [EpochSummary(f"    {run.key}:")],
    )
    last = run_dir / "checkpoints" / "last.ckpt"
    t0 = time.time()
    trainer.fit(module, data, ckpt_path=str(last) if last.is_file() else None)
    train_time = time.time() - t0
    best = Path(trainer.checkpoint_callback.best_model_path or last)
    best_module = load_module(best)
    data.setup("test")
    t1 = time.time()
    test_metrics = evaluate_module(best_module, data.test_dataloader())
    record = {
        "key": run.key, "run": asdict(run), "fingerprint": fingerprint, "epochs": epochs, "optim": optim,
        "best_ckpt": str(best), "best_epoch": _ckpt_epoch(best),
        "params": sum(p.numel() for p in best_module.net.parameters()),
        "trainable_params": sum(p.numel() for p in module.parameters() if p.requires_grad),
        "num_train": len(data.train_ids), "num_heldout": len(data.val_ids), "num_test": len(data.test_ids),
        "test": test_metrics, "train_time_s": round(train_time, 1), "test_time_s": round(time.time() - t1, 1),
    }
    write_json(record_path, record)
    return record


def _ckpt_epoch(path: Path) -> int | None:
    from .checkpoints import load_checkpoint

    try:
        return int(load_checkpoint(path).get("epoch"))
    except Exception:  # the epoch is informative only
        return None


# -- tables ------------------------------------------------------------------------------------------------
def _metric(record: dict[str, Any] | None, task: str) -> float | None:
    if record is None:
        return None
    from .tasks import get_task

    return float(record["test"][task][get_task(task).dm_metric])


def _fmt(v: float | None, digits: int = 2, sign: bool = False) -> str:
    if v is None:
        return "—"
    return f"{v:+.{digits}f}" if sign else f"{v:.{digits}f}"


def _safe_delta_m(record: dict[str, Any] | None, reference: dict[str, Any] | None, tasks: list[str]) -> float | None:
    """Δm, or None where it is undefined (a missing run, or a single-task reference of 0 after a tiny run)."""
    if record is None or reference is None:
        return None
    try:
        return delta_m(record["test"], reference, tasks)
    except (ValueError, KeyError):
        return None


def build_tables(results: dict[str, dict[str, Any]], runs: list[Run]) -> dict[str, Any]:
    """The MTL and UFL tables (rows of numbers; Δm computed against the ST runs)."""
    st_nyud = results.get("nyud/single_task")
    st_pascal = results.get("pascal/single_task")
    ref_nyud = st_nyud["test"] if st_nyud else None
    ref_pascal = st_pascal["test"] if st_pascal else None
    mtl_rows = []
    for run in runs:
        if run.group != "mtl" or run.key not in results:
            continue
        rec = results[run.key]
        dm = _safe_delta_m(rec, ref_nyud, NYUD_MAIN)
        mtl_rows.append({"key": run.key, "model": run.label, "head": run.head, "ne": run.ne,
                         "semseg_miou": _metric(rec, "semseg"), "depth_rmse": _metric(rec, "depth"),
                         "delta_m": dm, "params_m": rec["params"] / 1e6, "train_time_s": rec["train_time_s"]})
    ufl_rows = []
    if st_nyud and st_pascal:
        ufl_rows.append({"key": "single_task", "model": "ST baseline",
                         "nyud_semseg": _metric(st_nyud, "semseg"), "nyud_depth": _metric(st_nyud, "depth"),
                         "nyud_delta_m": 0.0, "pascal_parts": _metric(st_pascal, "human_parts"),
                         "pascal_sal": _metric(st_pascal, "sal"), "pascal_delta_m": 0.0})
    for run in runs:
        if run.group != "ufl" or run.key not in results:
            continue
        rec, src = results[run.key], results.get(run.source or "")
        ufl_rows.append({
            "key": run.key, "model": run.label, "source": run.source,
            "nyud_semseg": _metric(src, "semseg"), "nyud_depth": _metric(src, "depth"),
            "nyud_delta_m": _safe_delta_m(src, ref_nyud, NYUD_MAIN),
            "pascal_parts": _metric(rec, "human_parts"), "pascal_sal": _metric(rec, "sal"),
            "pascal_delta_m": _safe_delta_m(rec, ref_pascal, UFL_TASKS),
            "trainable_params_m": rec["trainable_params"] / 1e6,
        })
    return {"mtl": mtl_rows, "ufl": ufl_rows}


def mtl_markdown(rows: list[dict[str, Any]]) -> str:
    lines = ["| Model | Head | N+E | Seg mIoU ↑ | Depth RMSE ↓ | Δm % ↑ | Params (M) | Train time (s) |",
             "|---|---|:-:|--:|--:|--:|--:|--:|"]
    for r in rows:
        lines.append(f"| {r['model']} | {r['head']} | {'✓' if r['ne'] else ''} | {_fmt(r['semseg_miou'])} | "
                     f"{_fmt(r['depth_rmse'], 3)} | {_fmt(r['delta_m'], 2, True)} | {r['params_m']:.2f} | "
                     f"{r['train_time_s']:.0f} |")
    return "\n".join(lines)


def ufl_markdown(rows: list[dict[str, Any]]) -> str:
    lines = ["| Model | NYUD Seg ↑ | NYUD Depth ↓ | NYUD Δm % | PASCAL Parts ↑ | PASCAL Sal ↑ | PASCAL Δm % |",
             "|---|--:|--:|--:|--:|--:|--:|"]
    for r in rows:
        lines.append(f"| {r['model']} | {_fmt(r['nyud_semseg'])} | {_fmt(r['nyud_depth'], 3)} | "
                     f"{_fmt(r['nyud_delta_m'], 2, True)} | {_fmt(r['pascal_parts'])} | {_fmt(r['pascal_sal'])} | "
                     f"{_fmt(r['pascal_delta_m'], 2, True)} |")
    return "\n".join(lines)


def write_report(out: Path, profile: dict[str, Any], tables: dict[str, Any], results: dict[str, Any],
                 extras: dict[str, Any], prov: dict[str, Any]) -> Path:
    """Write ``REPORT.md`` from measured numbers only."""
    d = profile["data"]
    some = next(iter(results.values()), None)
    lines = [
        f"# medusa-mtl benchmark report — profile `{profile['profile']}`",
        "",
        f"Written by `medusa benchmark --profile {profile['profile']}` on {prov['time_utc']} "
        f"(seed {profile['seed']}, torch {prov['versions']['torch']}, timm {prov['versions']['timm']}, "
        f"device {prov['device']}, total wall time {prov.get('wall_time_s', 0):.0f} s). Every number below "
        "was measured by that run; `results.json` holds them all.",
        "",
        "**Setup.** Synthetic NYUD-like rooms "
        f"({d['nyud']['num_train']} train / {d['nyud']['num_val']} test images at {_size_text(d['nyud']['size'])}) "
        "and synthetic PASCAL-like scenes with articulated figures "
        f"({d['pascal']['num_train']} / {d['pascal']['num_val']} at {_size_text(d['pascal']['size'])}), "
        "HRNet-W18-small-v2 from scratch. "
        f"MTL: {profile['mtl']['epochs']} epochs, {profile['mtl']['optimizer']} lr {profile['mtl']['lr']}; "
        f"PASCAL ST: {profile['st_pascal']['epochs']} epochs, {profile['st_pascal']['optimizer']} "
        f"lr {profile['st_pascal']['lr']}; UFL: {profile['ufl']['epochs']} epochs. "
        f"Batch {profile['loader']['batch_size']}. Checkpoints are selected on a held-out "
        f"{int(profile['loader']['val_fraction'] * 100)}% of train"
        + (f" ({some['num_heldout']} images)" if some else "")
        + "; the tables report the test split (the original works selected on test).",
        "",
        "## Multi-task learning on synthetic NYUD (paper Table 1 format)",
        "",
        "Δm over the main tasks (semseg, depth) against the single-task networks; N+E = normals and edges as "
        "auxiliary tasks (never scored).",
        "",
        mtl_markdown(tables["mtl"]),
        "",
        "## Universal feature learning on synthetic PASCAL (paper Table 2 format)",
        "",
        "Each method's NYUD backbone (N+E where the method has that variant) is frozen; only new heads for "
        "human parts and saliency are trained. PASCAL Δm is against PASCAL single-task networks trained fully.",
        "",
        ufl_markdown(tables["ufl"]),
        "",
    ]
    if extras.get("resources_md"):
        lines += ["## Resources (NYUD setting, 480x640, from `medusa resources`)", "",
                  extras["resources_md"].strip(), ""]
    if extras.get("resources_png"):
        lines += [f"![parameters and FLOPs against the number of tasks]({extras['resources_png']})", ""]
    if extras.get("predictions"):
        lines += ["## Example predictions (Medusa, N+E)", ""]
        lines += [f"![{p}]({p})" for p in extras["predictions"]]
        lines.append("")
    lines += [
        "## Reading these numbers",
        "",
        "The quick profile trains for a few minutes from scratch on small images, so differences of a few "
        "points are within run-to-run noise; the `full` profile is the one where orderings mean something. "
        "No number is tuned towards an expected ordering: all methods share data, schedule and optimiser.",
        "",
    ]
    path = out / "REPORT.md"
    tmp = path.with_name(".REPORT.md.tmp")
    tmp.write_text("\n".join(lines))
    tmp.replace(path)
    return path


# -- command -----------------------------------------------------------------------------------------------
def add_benchmark_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``medusa benchmark``."""
    parser.add_argument("--profile", default="quick", help="quick, full, or a profile YAML path")
    parser.add_argument("--out", default="results", help="output folder (REPORT.md, results.json, runs/)")
    parser.add_argument("--data-dir", default="data/synthetic", help="where the synthetic datasets live")
    parser.add_argument("--models", default=None, help="comma-separated subset of models (default: all)")
    parser.add_argument("--seed", type=int, default=None, help="override the profile's seed")
    parser.add_argument("--no-progress", action="store_true", help="no per-batch progress bars")
    parser.add_argument("--skip-resources", action="store_true", help="do not run the resource report")
    parser.add_argument("--jobs", type=int, default=None,
                        help="runs trained at once, one torch thread each (default: 2 on a multi-core CPU, 1 on GPU)")


def run_benchmark(args: argparse.Namespace) -> int:
    """``medusa benchmark``."""
    import torch

    start = time.time()
    profile = load_profile(args.profile)
    if args.seed is not None:
        profile["seed"] = args.seed
    methods = [m.strip() for m in args.models.split(",")] if args.models else None
    if methods:
        known = [m[0] for m in METHODS]
        bad = [m for m in methods if m not in known]
        if bad:
            raise ConfigError(f"--models: unknown {bad}; known: {known}")
        if "single_task" not in methods:
            methods = ["single_task", *methods]  # Δm needs the single-task references
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    _quiet_lightning()

    def log(msg: str) -> None:
        print(f"[{time.time() - start:6.0f}s] {msg}", flush=True)

    torch.set_num_threads(max(torch.get_num_threads(), 1))
    seed = int(profile["seed"])
    data_dir = Path(args.data_dir)
    roots = {ds: dataset_root(data_dir, ds, profile["data"][ds], seed) for ds in ("nyud", "pascal")}
    for ds, root in roots.items():
        ensure_dataset(root, ds, profile["data"][ds], seed, log)
    runs = plan_runs(methods)
    jobs = args.jobs if args.jobs is not None else _default_jobs()
    log(f"{len(runs)} runs, {jobs} at a time" + (" (one torch thread each)" if jobs > 1 else ""))
    results: dict[str, dict[str, Any]] = {}
    done = 0

    def finished(run: Run, rec: dict[str, Any]) -> None:
        nonlocal done
        done += 1
        results[run.key] = rec
        summary = ", ".join(f"{t} {k}={v:.4g}" for t, r in _scalars(rec["test"]).items()
                            for k, v in r.items() if k in ("mIoU", "rmse"))
        log(f"[{done}/{len(runs)}] {run.key} done: {summary} (train {rec['train_time_s']:.0f} s)")

    # UFL runs need their source checkpoints: train every source (and the PASCAL references) first.
    phases = [sorted((r for r in runs if r.group != "ufl"), key=_cost_rank), [r for r in runs if r.group == "ufl"]]
    for phase in phases:
        if jobs <= 1:
            for run in phase:
                log(f"start {run.key}: {_describe(run)}")
                finished(run, execute_run(run, profile, roots, out, results, log, progress=not args.no_progress))
        else:
            _run_parallel(phase, jobs, profile, roots, out, results, log, finished)
    tables = build_tables(results, runs)
    extras: dict[str, Any] = {}
    if not args.skip_resources:
        extras.update(_resources(out, log))
    extras["predictions"] = _predictions(out, results, roots, profile, log)
    prov = provenance(profile=profile["profile"], seed=seed, wall_time_s=round(time.time() - start, 1))
    write_json(out / "results.json", {"provenance": prov, "profile": profile, "tables": tables,
                                      "runs": results, "datasets": {k: str(v) for k, v in roots.items()}})
    report = write_report(out, profile, tables, results, extras, prov)
    print()
    print(mtl_markdown(tables["mtl"]))
    print()
    print(ufl_markdown(tables["ufl"]))
    print()
    log(f"wrote {report} and {out / 'results.json'}")
    return 0


def _describe(run: Run) -> str:
    return (f"{run.label}{' (N+E)' if run.ne else ''} on {run.dataset}, tasks={','.join(run.tasks)}"
            + (f", backbone from {run.source}" if run.source else ""))


def _cost_rank(run: Run) -> tuple[int, int]:
    # Longest first, so two parallel jobs finish close together (PAD-Net's stride-4 distillation is the
    # most expensive; N+E variants train four heads).
    order = ["padnet", "single_task", "mtan", "mtinet", "medusa", "mt_baseline"]
    return (0 if run.ne else 1, order.index(run.model) if run.model in order else len(order))


def _default_jobs() -> int:
    import os

    import torch

    if torch.cuda.is_available():
        return 1
    return 2 if (os.cpu_count() or 1) >= 2 else 1


def _worker(run: Run, profile: dict[str, Any], roots: dict[str, Path], out: Path,
            results: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """Body of a parallel job (a separate process): one torch thread, no progress bar."""
    import torch

    _exit_with_parent()
    torch.set_num_threads(1)
    _quiet_lightning()
    print(f"    start {run.key}: {_describe(run)}", flush=True)
    return execute_run(run, profile, roots, out, results, lambda m: print(f"    {m}", flush=True), progress=False)


def _exit_with_parent() -> None:
    """A job whose benchmark process was killed stops too, instead of training on as an orphan."""
    import os
    import threading

    parent = os.getppid()

    def watch() -> None:
        while True:
            time.sleep(2.0)
            if os.getppid() != parent:
                os._exit(1)

    threading.Thread(target=watch, daemon=True, name="exit-with-parent").start()


def _run_parallel(phase: list[Run], jobs: int, profile: dict[str, Any], roots: dict[str, Path], out: Path,
                  results: dict[str, dict[str, Any]], log: Any, finished: Any) -> None:
    import multiprocessing as mp
    from concurrent.futures import ProcessPoolExecutor, as_completed

    with ProcessPoolExecutor(max_workers=jobs, mp_context=mp.get_context("spawn")) as pool:
        futures = {pool.submit(_worker, run, profile, roots, out, dict(results)): run for run in phase}
        for fut in as_completed(futures):
            finished(futures[fut], fut.result())


def _quiet_lightning() -> None:
    """Keep the benchmark's output to its own progress lines and tables (Lightning's tips and notices off)."""
    import logging
    import warnings

    import lightning  # noqa: F401  (its import sets its loggers to INFO; lower them afterwards)

    for name in ("lightning.pytorch", "lightning.fabric", "lightning"):
        logging.getLogger(name).setLevel(logging.WARNING)
    for pattern in (".*exists and is not empty.*", ".*LeafSpec.*", ".*does not have many workers.*",
                    ".*smaller than the logging interval.*", ".*GPU available but not used.*",
                    r".*module\(s\) in eval mode.*"):
        warnings.filterwarnings("ignore", message=pattern)


def _resources(out: Path, log: Any) -> dict[str, Any]:
    try:
        from .resources import write_report as write_resources
    except ImportError:  # pragma: no cover - resources module missing
        return {}
    log("resource report (params and FLOPs, NYUD 480x640)")
    write_resources("nyud", 6, out)
    md = out / "resources_nyud.md"
    png = out / "resources_nyud.png"
    return {"resources_md": md.read_text() if md.is_file() else None,
            "resources_png": png.name if png.is_file() else None}


def _predictions(out: Path, results: dict[str, Any], roots: dict[str, Path], profile: dict[str, Any],
                 log: Any) -> list[str]:
    rec = results.get("nyud/medusa_ne") or results.get("nyud/medusa")
    n = int(profile.get("predict_images", 0))
    if rec is None or n <= 0:
        return []
    try:
        from .predict import predict_folder_to_panels
    except ImportError:
        return []
    from .data.formats import read_split

    ids = read_split(roots["nyud"], "nyud", "val")[:n]
    images = [roots["nyud"] / "images" / f"{i}.jpg" for i in ids]
    log(f"example predictions of {rec['key']} on {len(images)} test images")
    return predict_folder_to_panels(rec["best_ckpt"], images, out / "predictions", relative_to=out)
