#!/usr/bin/env bash
# GPU readiness in one command (docs/PERFORMANCE.md, "GPU"): device tests, a short `medusa pretrain` and a one-run
# `medusa benchmark` on the device, throughput fp32 and bf16 at the paper's resolutions, short bf16 `medusa fit` runs
# at full NYUD size, 2-process DDP; JSON + SUMMARY.md in results/gpu/.
#   benchmarks/gpu_check.sh                      # on a machine with one CUDA GPU (estimated 10-15 minutes)
#   benchmarks/gpu_check.sh --device cpu --smoke # checks the script itself (a few minutes on 2 cores)
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${PYTHON:-.venv/bin/python}"
[ -x "$PY" ] || PY=python3
exec "$PY" benchmarks/gpu_check.py "$@"
