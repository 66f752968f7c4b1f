"""One command that proves the CUDA paths and records GPU figures: ``benchmarks/gpu_check.sh``.

On a machine with one CUDA GPU (estimated at 10-15 minutes; not yet run on a GPU)::

    benchmarks/gpu_check.sh                       # = python benchmarks/gpu_check.py --device cuda --out results/gpu

runs, in order, each step writing ``<out>/<step>.json``:

1. ``tests``: the device tests (``tests/test_device.py``, marker ``device``) on the device: every model's forward
   and backward in fp32 and bf16 autocast, fused vs literal equality, checkpoint saved on the device and loaded
   on the CPU;
2. ``pretrain``: a short ``medusa pretrain --device`` (1,024 rendered images, 2 epochs at 64x64; the full
   profile's backbone is 8,000 images x 12 epochs): it trains on the device, seconds per epoch;
3. ``benchmark``: ``medusa benchmark`` with a one-run profile (Medusa N+E on synthetic NYUD at the full
   profile's 128x160, batch 8, 4 loader workers, 3 epochs): the benchmark's path end to end (data, training,
   the test score on the device, a prediction figure, REPORT.md) and its seconds per optimizer step;
4. ``throughput_fp32`` / ``throughput_bf16_cl``: ``benchmarks/throughput.py`` at the paper's resolutions
   (480x640 NYUD, 512x512 PASCAL) with the largest batch that fits (halved until it does), fp32, then bf16
   autocast + channels_last;
5. ``fit_medusa`` / ``fit_mtinet``: a short ``medusa fit`` (``--trainer.precision bf16-mixed``) at full NYUD
   resolution on rendered data, images/s and peak memory measured by
   :class:`medusa_mtl.engine.monitor.ThroughputMonitor`;
6. ``ddp``: a 2-process DDP ``medusa fit`` -- on the one GPU when the backend allows two processes on one
   device, else on the CPU (gloo);

then ``<out>/SUMMARY.md``: the Medusa / MTI-Net and Medusa / floor ratios of both throughput runs against the
targets, the fit figures, the test counts and the DDP outcome. ``--device cpu --smoke`` runs the same steps
with tiny sizes in a few minutes on 2 CPU cores (the test suite does, so the script cannot rot).

A step that fails is recorded (``"ok": false`` with the error's tail) and the script goes on; the exit status
is 1 if any step failed.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
TARGETS = {  # issue 15: GPU targets (same definitions as the CPU ones in docs/PERFORMANCE.md)
    "Medusa / MTI-Net eval latency, NYUD N+E": ("<=", 0.8),
    "Medusa / MTI-Net eval latency, PASCAL 5 tasks": ("<=", 0.7),
    "Medusa / backbone floor eval latency, NYUD": ("<=", 1.5),
    "Medusa / MTI-Net training throughput, NYUD N+E": (">=", 1.15),
    "Medusa / MTI-Net training throughput, PASCAL 5 tasks": (">=", 1.15),
}


def _run(cmd: list[str], log: Path, timeout: float, env: dict[str, str] | None = None) -> tuple[int, str]:
    """Run ``cmd`` in the repository, its output into ``log``; (exit status, output tail)."""
    full_env = dict(os.environ, **(env or {}))
    full_env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO / "src"), full_env.get("PYTHONPATH")]))
    with log.open("w") as f:
        try:
            rc = subprocess.run(cmd, cwd=REPO, env=full_env, stdout=f, stderr=subprocess.STDOUT,
                                timeout=timeout).returncode
        except subprocess.TimeoutExpired:
            rc = 124
    return rc, log.read_text()[-3000:]


def _medusa(*args: str) -> list[str]:
    return [sys.executable, "-m", "medusa_mtl.cli", *args]


def step_tests(a: argparse.Namespace, out: Path) -> dict[str, Any]:
    junit = out / "tests.xml"
    cmd = [sys.executable, "-m", "pytest", "-q", "-m", "device", "tests/test_device.py", "-p", "no:cacheprovider",
           f"--junitxml={junit}"]
    env = {"MEDUSA_TEST_DEVICE": a.device, "MEDUSA_TEST_SMOKE": "1" if a.smoke else "0"}
    rc, tail = _run(cmd, out / "tests.log", timeout=300 if a.smoke else 1200, env=env)
    counts: dict[str, int] = {}
    if junit.is_file():
        import xml.etree.ElementTree as ET

        suite = ET.parse(junit).getroot()
        suite = suite if suite.tag == "testsuite" else suite[0]
        counts = {k: int(suite.get(k, 0)) for k in ("tests", "failures", "errors", "skipped")}
    return {"ok": rc == 0 and counts.get("tests", 0) > counts.get("skipped", 0), "counts": counts, "tail": tail}


def step_throughput(a: argparse.Namespace, out: Path, name: str, extra: list[str]) -> dict[str, Any]:
    path = out / f"{name}.data.json"
    cmd = [sys.executable, "benchmarks/throughput.py", "--device", a.device, "--json", str(path), *extra]
    if a.smoke:
        cmd += ["--size-scale", "0.1", "--rounds", "1", "--warmup", "1", "--eval-iters", "1", "--models",
                "medusa,mtinet", "--no-cpu-memory", "--train-batch", "2"]
    elif a.device == "cpu":
        cmd += ["--threads", "1"]
    else:
        cmd += ["--rounds", str(a.rounds)]
    rc, tail = _run(cmd, out / f"{name}.log", timeout=600 if a.smoke else 1800)
    data = json.loads(path.read_text()) if path.is_file() else {}
    ratios = {r["label"]: {"value": r.get("ratio"), "paired": r.get("paired_ratio")} for r in data.get("ratios", [])}
    return {"ok": rc == 0 and bool(data), "ratios": ratios, "data_file": path.name, "tail": tail}


def _synthetic_nyud(out: Path, size: str, n: int) -> Path:
    """A rendered NYUD-like dataset of ``n`` training images at ``size`` (made once, reused)."""
    root = out / "data" / f"NYUD_MT_{size}_{n}"
    if not (root / "gt_sets" / "train.txt").is_file():
        rc, tail = _run(_medusa("data", "synth", "--dataset", "nyud", "--root", str(root), "--num-train", str(n),
                                "--num-val", "2", "--size", size), out / f"synth_{size}.log", timeout=1200)
        if rc != 0:
            raise RuntimeError(f"synthetic data: {tail}")
    return root


def step_fit(a: argparse.Namespace, out: Path, arch: str) -> dict[str, Any]:
    size = "64x64" if a.smoke else "480x640"
    root = _synthetic_nyud(out, size, 4 if a.smoke else 48)
    h, w = (int(v) for v in size.split("x"))
    stats = out / f"fit_{arch}.monitor.json"
    config = out / f"fit_{arch}.yaml"
    config.write_text(
        "trainer:\n  callbacks:\n    - class_path: medusa_mtl.engine.monitor.ThroughputMonitor\n"
        f"      init_args: {{json_path: '{stats}', skip_steps: {1 if a.smoke else 10}}}\n"
    )
    steps = 4 if a.smoke else a.fit_steps
    args = ["fit", "--config", "medusa:data/synthetic_nyud.yaml", "--config", "medusa:tasks/nyud_ne.yaml",
            "--config", f"medusa:model/{arch}.yaml", "--config", str(config), "--data.root", str(root),
            "--data.size", f"[{h},{w}]", "--data.batch_size", "2" if a.smoke else str(a.fit_batch),
            "--data.num_workers", "0" if a.smoke else "4", "--trainer.max_steps", str(steps),
            "--trainer.limit_val_batches", "0", "--trainer.num_sanity_val_steps", "0",
            "--trainer.precision", "bf16-mixed", "--trainer.accelerator", "cpu" if a.device == "cpu" else "gpu",
            "--trainer.devices", "1", "--trainer.enable_progress_bar", "false",
            "--trainer.enable_checkpointing", "false", "--trainer.default_root_dir", str(out / f"fit_{arch}")]
    if a.smoke:
        args += ["--model.backbone", "test_efficientnet"]
    rc, tail = _run(_medusa(*args), out / f"fit_{arch}.log", timeout=600 if a.smoke else 1200)
    monitor = json.loads(stats.read_text()) if stats.is_file() else {}
    return {"ok": rc == 0 and bool(monitor), "size": [h, w], "precision": "bf16-mixed", "steps": steps, **monitor,
            "tail": tail}


def _same_device(recorded: str, wanted: str) -> bool:
    return bool(recorded) and recorded.split(":")[0] == wanted.split(":")[0]


def step_pretrain(a: argparse.Namespace, out: Path) -> dict[str, Any]:
    """``medusa pretrain`` on the device: its .json must say it trained there."""
    cache = out / "pretrain"
    size, images, epochs, batch = ("32x32", 32, 1, 16) if a.smoke else ("64x64", 1024, 2, 32)
    rc, tail = _run(_medusa("pretrain", "--device", a.device, "--size", size, "--num-images", str(images),
                            "--epochs", str(epochs), "--batch-size", str(batch), "--cache-dir", str(cache),
                            "--force"), out / "pretrain.log", timeout=300 if a.smoke else 900)
    metas = sorted(cache.glob("*.json"))
    meta = json.loads(metas[-1].read_text()) if metas else {}
    device = str(meta.get("device", ""))
    history = meta.get("history") or []
    return {"ok": rc == 0 and _same_device(device, a.device), "device": device, "size": size,
            "num_images": images, "epochs": epochs, "batch_size": batch, "render_time_s": meta.get("render_time_s"),
            "epoch_time_s": [h.get("time_s") for h in history], "wall_time_s": meta.get("wall_time_s"), "tail": tail}


def step_benchmark(a: argparse.Namespace, out: Path) -> dict[str, Any]:
    """``medusa benchmark`` with one run (Medusa N+E): trained and tested on the device, REPORT.md written."""
    if a.smoke:
        data, batch, workers, epochs = "{num_train: 8, num_val: 2, size: [64, 64], scales: [1.0]}", 4, 0, 1
    else:  # the full profile's image size, batch and loader workers
        data, batch, workers, epochs = "{num_train: 160, num_val: 16, size: [128, 160]}", 8, 4, 3
    optim = f"{{epochs: {epochs}, optimizer: adam, lr: 1.0e-3, weight_decay: 1.0e-4}}"
    profile = out / "benchmark_profile.yaml"
    profile.write_text("\n".join([
        "profile: gpu_check", "seed: 0", "data:", f"  nyud: {data}", f"  pascal: {data}",
        f"loader: {{batch_size: {batch}, num_workers: {workers}, val_fraction: 0.1}}",
        f"mtl: {optim}", f"st_pascal: {optim}", f"ufl: {optim}", "predict_images: 1",
        # one run, Medusa N+E (no pretrained backbone: the pretrain step checks that path)
        "skip: [nyud/single_task, nyud/medusa, pascal/single_task, ufl/medusa]",
        # the smoke run's two steps move BN statistics only with timm's momentum (0.1)
        *(["hrnet_form: timm"] if a.smoke else []), ""]))
    res = out / "benchmark"
    rc, tail = _run(_medusa("benchmark", "--profile", str(profile), "--models", "medusa", "--jobs", "1",
                            "--out", str(res), "--data-dir", str(out / "data" / "benchmark"), "--skip-resources",
                            "--no-progress"), out / "benchmark.log", timeout=300 if a.smoke else 900)
    path = res / "runs" / "nyud" / "medusa_ne" / "s0" / "result.json"
    record = json.loads(path.read_text()) if path.is_file() else {}
    device = str(record.get("device", ""))
    n = int(record.get("num_train") or 0)
    steps = epochs * (n // batch if n > batch else 1)  # the train loader drops its last partial batch
    train_s = record.get("train_time_s")
    return {"ok": rc == 0 and (res / "REPORT.md").is_file() and _same_device(device, a.device), "device": device,
            "run": "nyud/medusa_ne/s0", "epochs": epochs, "batch_size": batch, "steps": steps,
            "train_time_s": train_s, "test_time_s": record.get("test_time_s"),
            "s_per_step": round(train_s / steps, 4) if train_s and steps else None, "tail": tail}


def step_ddp(a: argparse.Namespace, out: Path) -> dict[str, Any]:
    root = _synthetic_nyud(out, "64x64", 4)
    base = ["fit", "--config", "medusa:data/synthetic_nyud.yaml", "--config", "medusa:model/mt_baseline.yaml",
            "--data.root", str(root), "--data.size", "[64,64]", "--data.batch_size", "1", "--data.num_workers", "0",
            "--model.backbone", "test_efficientnet", "--trainer.max_steps", "2", "--trainer.limit_val_batches", "0",
            "--trainer.num_sanity_val_steps", "0", "--trainer.strategy", "ddp", "--trainer.devices", "2",
            "--trainer.enable_progress_bar", "false"]
    tried = []
    accelerators = ["gpu", "cpu"] if a.device != "cpu" else ["cpu"]
    for acc in accelerators:
        run_dir = out / f"ddp_{acc}"
        rc, tail = _run(_medusa(*base, "--trainer.accelerator", acc, "--trainer.default_root_dir", str(run_dir)),
                        out / f"ddp_{acc}.log", timeout=600)
        ok = rc == 0 and (run_dir / "checkpoints" / "last.ckpt").is_file()
        tried.append({"accelerator": acc, "ok": ok, "tail": "" if ok else tail})
        if ok:
            return {"ok": True, "accelerator": acc, "processes": 2, "tried": tried}
    return {"ok": False, "tried": tried}


def _verdict(name: str, value: float | None) -> str:
    if value is None or name not in TARGETS:
        return "—"
    op, target = TARGETS[name]
    return "PASS" if (value <= target if op == "<=" else value >= target) else "MISS"


def summary_markdown(results: dict[str, Any], meta: dict[str, Any]) -> str:
    lines = [f"# GPU check — {meta['device_name']}", "",
             f"`benchmarks/gpu_check.sh {' '.join(meta['argv'])}` on {meta['time']} (torch {meta['torch']}, "
             f"{'smoke run: tiny sizes, not a measurement' if meta['smoke'] else 'full run'}); "
             f"wall time {meta['wall_time_s']:.0f} s. Steps that failed say so; nothing here is filled in by hand.",
             ""]
    tests = results.get("tests", {})
    c = tests.get("counts", {})
    lines += [f"**Device tests** (`tests/test_device.py`): {c.get('tests', 0)} run, {c.get('failures', 0)} failed, "
              f"{c.get('errors', 0)} errors, {c.get('skipped', 0)} skipped — {'ok' if tests.get('ok') else 'FAILED'}.",
              "", "| ratio | fp32 | bf16 + channels_last | target |", "|---|---|---|---|"]
    a = results.get("throughput_fp32", {}).get("ratios", {})
    b = results.get("throughput_bf16_cl", {}).get("ratios", {})
    for name, (op, target) in TARGETS.items():
        va, vb = (a.get(name) or {}).get("value"), (b.get(name) or {}).get("value")
        fa = "—" if va is None else f"{va:.3f} ({_verdict(name, va)})"
        fb = "—" if vb is None else f"{vb:.3f} ({_verdict(name, vb)})"
        lines.append(f"| {name} | {fa} | {fb} | {op} {target} |")
    lines += ["", "| `medusa fit` (bf16-mixed) | size | batch | images/s | peak memory (MiB) | ok |",
              "|---|---|---|---|---|---|"]
    for arch in ("medusa", "mtinet"):
        r = results.get(f"fit_{arch}", {})
        size = "x".join(str(v) for v in r.get("size", [])) or "—"
        ips = r.get("images_per_s")
        mem = r.get("peak_memory_mib")
        lines.append(f"| {arch} | {size} | {r.get('batch_size', '—')} | "
                     f"{'—' if ips is None else f'{ips:.2f}'} | {'—' if mem is None else f'{mem:.0f}'} | "
                     f"{'yes' if r.get('ok') else 'no'} |")
    pre, bench = results.get("pretrain", {}), results.get("benchmark", {})
    if pre or bench:
        lines += ["", "| command on the device | device | figures | ok |", "|---|---|---|---|"]
    if pre:
        lines.append(f"| `medusa pretrain`, {pre.get('num_images')} images x {pre.get('epochs')} epochs at "
                     f"{pre.get('size')} | {pre.get('device') or '—'} | rendering {pre.get('render_time_s')} s, "
                     f"epochs {pre.get('epoch_time_s')} s | {'yes' if pre.get('ok') else 'no'} |")
    if bench:
        lines.append(f"| `medusa benchmark`, one run ({bench.get('run')}), {bench.get('steps')} steps at batch "
                     f"{bench.get('batch_size')} | {bench.get('device') or '—'} | training {bench.get('train_time_s')} "
                     f"s ({bench.get('s_per_step')} s per step, validation included), test {bench.get('test_time_s')} "
                     f"s | {'yes' if bench.get('ok') else 'no'} |")
    d = results.get("ddp", {})
    lines += ["", f"**DDP**: {'2 processes on ' + d['accelerator'] if d.get('ok') else 'failed'}"
              + (" (two processes on one GPU were refused; CPU gloo instead)"
                 if d.get("ok") and d.get("accelerator") == "cpu" and meta["device"] != "cpu" else "") + "."]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--device", default="cuda", help="cuda (default) or cpu")
    p.add_argument("--smoke", action="store_true", help="tiny sizes: checks the script, measures nothing")
    p.add_argument("--out", default="results/gpu", help="folder for the JSON files and SUMMARY.md")
    p.add_argument("--fit-steps", type=int, default=300, help="training steps of each medusa fit")
    p.add_argument("--fit-batch", type=int, default=8, help="batch of each medusa fit")
    p.add_argument("--rounds", type=int, default=10, help="interleaved rounds of each GPU throughput run")
    p.add_argument("--skip", default="",
                   help="comma-separated steps to leave out (tests, pretrain, benchmark, throughput, fit, ddp)")
    a = p.parse_args(argv)
    import torch

    if a.device.startswith("cuda") and not torch.cuda.is_available():
        print("gpu_check: CUDA is not available on this machine; run on a GPU machine, or pass --device cpu --smoke "
              "to check the script", file=sys.stderr)
        return 2
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    skip = {s.strip() for s in a.skip.split(",") if s.strip()}
    t0 = time.time()
    steps: list[tuple[str, Any]] = [
        ("tests", lambda: step_tests(a, out)),
        ("pretrain", lambda: step_pretrain(a, out)),
        ("benchmark", lambda: step_benchmark(a, out)),
        ("throughput_fp32", lambda: step_throughput(a, out, "throughput_fp32", [])),
        ("throughput_bf16_cl", lambda: step_throughput(a, out, "throughput_bf16_cl", ["--dtype", "bf16",
                                                                                       "--channels-last"])),
        ("fit_medusa", lambda: step_fit(a, out, "medusa")),
        ("fit_mtinet", lambda: step_fit(a, out, "mtinet")),
        ("ddp", lambda: step_ddp(a, out)),
    ]
    results: dict[str, Any] = {}
    for name, fn in steps:
        if name in skip or name.split("_")[0] in skip:
            continue
        s0 = time.time()
        print(f"gpu_check: {name} ...", flush=True)
        try:
            result = fn()
        except Exception as err:  # a failed step is recorded, the others still run
            result = {"ok": False, "error": f"{type(err).__name__}: {err}"}
        result["seconds"] = round(time.time() - s0, 1)
        results[name] = result
        (out / f"{name}.json").write_text(json.dumps(result, indent=2, default=str))
        print(f"gpu_check: {name} {'ok' if result.get('ok') else 'FAILED'} ({result['seconds']} s)", flush=True)
    meta = {"device": a.device, "smoke": a.smoke, "argv": list(argv if argv is not None else sys.argv[1:]),
            "time": dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"), "torch": torch.__version__,
            "device_name": torch.cuda.get_device_name(0) if a.device.startswith("cuda") else "CPU",
            "wall_time_s": time.time() - t0}
    (out / "summary.json").write_text(json.dumps({"meta": meta, "steps": {k: v.get("ok") for k, v in results.items()}},
                                                 indent=2))
    (out / "SUMMARY.md").write_text(summary_markdown(results, meta))
    print((out / "SUMMARY.md").read_text())
    return 0 if all(r.get("ok") for r in results.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
