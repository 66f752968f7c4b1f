"""``benchmarks/gpu_check.sh --device cpu --smoke``: the GPU readiness script runs end to end on the CPU with
tiny sizes (it measures nothing there; it must not rot before a GPU machine runs it)."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def test_gpu_check_smoke_on_cpu(tmp_path: Path) -> None:
    out = tmp_path / "gpu"
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHON=str(Path(os.sys.executable)))
    proc = subprocess.run([str(REPO / "benchmarks" / "gpu_check.sh"), "--device", "cpu", "--smoke", "--out", str(out)],
                          cwd=REPO, env=env, capture_output=True, text=True, timeout=480)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["meta"]["smoke"] is True
    assert summary["steps"] == {k: True for k in ("tests", "pretrain", "benchmark", "throughput_fp32",
                                                  "throughput_bf16_cl", "fit_medusa", "fit_mtinet", "ddp")}
    tests = json.loads((out / "tests.json").read_text())
    assert tests["counts"]["tests"] >= 7 and tests["counts"]["failures"] == 0 and tests["counts"]["skipped"] == 0
    fit = json.loads((out / "fit_medusa.json").read_text())
    assert fit["images_per_s"] > 0 and fit["peak_memory_mib"] > 0 and fit["precision"] == "bf16-mixed"
    # medusa pretrain and a one-run medusa benchmark trained (and the benchmark tested) on the device asked for
    assert json.loads((out / "pretrain.json").read_text())["device"] == "cpu"
    bench = json.loads((out / "benchmark.json").read_text())
    assert bench["device"] == "cpu" and bench["steps"] >= 1 and bench["s_per_step"] > 0
    ratios = json.loads((out / "throughput_fp32.json").read_text())["ratios"]
    assert "Medusa / MTI-Net eval latency, NYUD N+E" in ratios
    md = (out / "SUMMARY.md").read_text()
    assert "smoke run" in md and "| medusa |" in md and "**DDP**: 2 processes on cpu" in md
    assert "| `medusa pretrain`, 32 images" in md and "| `medusa benchmark`, one run" in md
