"""Two CPU processes (DDP, gloo) through ``medusa fit --trainer.strategy ddp``.

* Training: a 2-process fit of a few steps with a per-process batch of 1 matches a 1-process run with the same
  global batch (``--trainer.accumulate_grad_batches 2``, micro-batches of 1). BatchNorm statistics are
  per-process in DDP (no SyncBatchNorm on CPU), so the equivalent 1-process run uses micro-batches of the
  per-process size; the weights then agree up to floating-point rounding. (Running BN statistics differ: each
  process tracks its own and DDP broadcasts rank 0's, so only the parameters are compared.)
* Evaluation: the held-out set has an odd number of images; each image is scored exactly once (no padding
  duplicates) and the metric states are merged across processes, so the validation metrics the 2-process fit
  logged equal a 1-process ``medusa validate`` of its checkpoint.
"""

from __future__ import annotations

import csv
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import torch

from cli_helpers import run_cli
from medusa_mtl.engine.checkpoints import load_checkpoint

REPO = Path(__file__).resolve().parents[1]
BUFFERS = ("running_mean", "running_var", "num_batches_tracked")


def common_args(root: Path, out: Path) -> list[str]:
    return [
        "--data.root", str(root), "--data.size", "[64,64]", "--data.batch_size", "1", "--data.num_workers", "0",
        "--data.val_fraction", "0.3", "--model.arch", "mt_baseline", "--model.backbone", "test_efficientnet",
        "--model.tasks", "[semseg,depth]", "--model.optimizer", "sgd", "--model.lr", "0.05",
        "--model.edge_thresholds", "5", "--seed_everything", "3", "--trainer.max_epochs", "1",
        "--trainer.accelerator", "cpu", "--trainer.enable_progress_bar", "false",
        "--trainer.enable_model_summary", "false", "--trainer.default_root_dir", str(out),
    ]  # fmt: skip


def val_row(run: Path) -> dict[str, float]:
    rows = [r for r in csv.DictReader((run / "metrics.csv").open()) if r.get("val/loss")]
    assert len(rows) == 1, rows
    return {k: float(v) for k, v in rows[0].items() if k.startswith("val/") and v != ""}


def params(ckpt: dict[str, Any]) -> dict[str, torch.Tensor]:
    return {k: v for k, v in ckpt["state_dict"].items() if not k.endswith(BUFFERS)}


def test_two_process_ddp_fit_matches_one_process(nyud12: Path, tmp_path: Path) -> None:
    ddp_run = tmp_path / "ddp"
    env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
    cmd = [
        sys.executable, "-m", "medusa_mtl.cli", "fit", *common_args(nyud12, ddp_run),
        "--trainer.strategy", "ddp", "--trainer.devices", "2", "--trainer.limit_train_batches", "2",
    ]  # fmt: skip
    proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=400)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-4000:]
    ddp = load_checkpoint(ddp_run / "checkpoints" / "last.ckpt")
    assert ddp["global_step"] == 2  # 2 optimizer steps of a global batch of 2 (1 per process)

    # the same 4 samples in the same 2 optimizer steps, in one process: micro-batches of 1, accumulated by 2
    one_run = tmp_path / "one"
    rc, _, err = run_cli(
        ["fit", *common_args(nyud12, one_run), "--trainer.devices", "1", "--trainer.limit_train_batches", "4",
         "--trainer.accumulate_grad_batches", "2"]  # fmt: skip
    )
    assert rc == 0, err[-3000:]
    one = load_checkpoint(one_run / "checkpoints" / "last.ckpt")
    assert one["global_step"] == 2
    p_ddp, p_one = params(ddp), params(one)
    assert p_ddp.keys() == p_one.keys() and len(p_ddp) > 10

    # it trained (the comparison is not vacuous) and both runs moved the weights the same way
    init = params({"state_dict": _initial_state()})
    moved = max((p_one[k] - init[k]).abs().max().item() for k in p_one)
    assert moved > 1e-3, moved
    print("moved", moved, "ddp-vs-one", max((p_one[k] - p_ddp[k]).abs().max().item() for k in p_one))
    for k in p_one:
        torch.testing.assert_close(p_ddp[k], p_one[k], rtol=1e-4, atol=1e-6, msg=k)

    # evaluation: the metrics the 2 processes computed (3 held-out images: 2 + 1) equal one process's
    val_run = tmp_path / "validate"
    ckpt = str(ddp_run / "checkpoints" / "last.ckpt")
    rc, _, err = run_cli(["validate", *common_args(nyud12, val_run), "--trainer.devices", "1", "--ckpt_path", ckpt])
    assert rc == 0, err[-3000:]
    two, single = val_row(ddp_run), val_row(val_run / "validate")  # validate logs into <root>/validate
    assert {"val/loss", "val/semseg/mIoU", "val/depth/rmse"} <= set(two)
    assert two.keys() == single.keys()
    for k in two:
        assert two[k] == pytest.approx(single[k], rel=1e-5, abs=1e-6), k


def _initial_state() -> dict[str, torch.Tensor]:
    """The weights both runs start from: the module built right after seeding, as the command line does."""
    import lightning as L

    from medusa_mtl.engine.training import MultiTaskModule

    L.seed_everything(3, verbose=False)
    module = MultiTaskModule(arch="mt_baseline", tasks=["semseg", "depth"], backbone="test_efficientnet")
    return {f"{k}": v for k, v in module.state_dict().items()}
