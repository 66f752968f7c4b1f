"""Kill-and-resume: a run killed with SIGKILL mid-epoch and resumed with ``--ckpt_path last`` ends exactly like an
uninterrupted run of the same seed (CPU); checkpoints are atomic and a truncated one is reported, not loaded."""

from __future__ import annotations

import contextlib
import csv
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import torch

from cli_helpers import run_cli
from medusa_mtl.engine.checkpoints import atomic_torch_save, load_checkpoint
from medusa_mtl.engine.reproducibility import EpochShuffleSampler, SeededSamples, derive_seed
from medusa_mtl.errors import CheckpointError

REPO = Path(__file__).resolve().parents[1]

# A callback that announces it reached a training step (marker file) and then waits to be killed. It is given
# to the subprocess through a config file, like any user callback; the test process sends SIGKILL.
PAUSE_CALLBACK = """
import time
from pathlib import Path

import lightning as L


class PauseAt(L.Callback):
    def __init__(self, epoch: int, batch: int, marker: str) -> None:
        self.epoch, self.batch, self.marker = epoch, batch, marker

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        if trainer.current_epoch == self.epoch and batch_idx == self.batch:
            Path(self.marker).write_text(str(trainer.global_step))
            time.sleep(600)
"""


def fit_args(root: Path, out: Path, *extra: str) -> list[str]:
    return [
        "fit", "--data.root", str(root), "--data.size", "[32,32]", "--data.batch_size", "2",
        "--data.num_workers", "0", "--data.val_fraction", "0.1", "--model.arch", "mt_baseline",
        "--model.backbone", "test_efficientnet", "--model.tasks", "[semseg,depth]", "--model.lr", "0.01",
        "--model.edge_thresholds", "5", "--seed_everything", "7", "--trainer.max_epochs", "3",
        "--trainer.limit_train_batches", "3", "--trainer.enable_progress_bar", "false",
        "--trainer.enable_model_summary", "false", "--trainer.default_root_dir", str(out), *extra,
    ]  # fmt: skip


@contextlib.contextmanager
def one_thread() -> Iterator[None]:
    """Same thread count as the subprocess (OMP_NUM_THREADS=1): bit-identical CPU arithmetic."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(n)


def last_val_row(run: Path) -> dict[str, str]:
    rows = [r for r in csv.DictReader((run / "metrics.csv").open()) if r.get("val/loss")]
    return {k: v for k, v in rows[-1].items() if k.startswith("val/") or k == "epoch"}


# max_steps: Lightning counted the checkpoint's epoch twice on resume; the run ended one epoch short
@pytest.mark.parametrize("bound", [[], ["--trainer.max_steps", "100"]], ids=["max_epochs", "max_steps"])
def test_sigkill_mid_epoch_then_resume_equals_uninterrupted(bound: list[str], nyud12: Path, tmp_path: Path) -> None:
    (tmp_path / "pause_callback.py").write_text(PAUSE_CALLBACK)
    marker = tmp_path / "reached"
    (tmp_path / "pause.yaml").write_text(
        "trainer:\n  callbacks:\n    - class_path: pause_callback.PauseAt\n"
        f"      init_args: {{epoch: 1, batch: 1, marker: '{marker}'}}\n"
    )
    killed = tmp_path / "killed"
    env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
    env["PYTHONPATH"] = os.pathsep.join([str(tmp_path), env.get("PYTHONPATH", "")])
    log = (tmp_path / "killed.log").open("wb")
    cmd = [sys.executable, "-m", "medusa_mtl.cli",
           *fit_args(nyud12, killed, "--config", str(tmp_path / "pause.yaml"), *bound)]
    proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 240
        while not marker.exists():
            assert proc.poll() is None, (tmp_path / "killed.log").read_text()[-3000:]
            assert time.monotonic() < deadline, "the run never reached epoch 2"
            time.sleep(0.1)
        proc.send_signal(signal.SIGKILL)  # mid-epoch 2: one step of it done, no chance to clean up
    finally:
        proc.kill()
        proc.wait()
        log.close()
    assert proc.returncode == -signal.SIGKILL
    assert marker.read_text() == "4"  # epoch 1 = 3 steps, then 1 step of epoch 2
    ckpt = load_checkpoint(killed / "checkpoints" / "last.ckpt")
    assert ckpt["epoch"] == 0 and ckpt["global_step"] == 3  # what survives: the end of epoch 1

    uninterrupted = tmp_path / "uninterrupted"
    with one_thread():
        # resumed with two worker processes (they prefetch from the sampler before Lightning's set_epoch), the
        # uninterrupted run with one and the killed one with none: same draws, whatever the workers
        rc, _, err = run_cli(fit_args(nyud12, killed, "--ckpt_path", "last", "--data.num_workers", "2", *bound))
        assert rc == 0, err[-3000:]
        rc, _, err = run_cli(fit_args(nyud12, uninterrupted, "--data.num_workers", "1", *bound))
        assert rc == 0, err[-3000:]

    a = load_checkpoint(killed / "checkpoints" / "last.ckpt")
    b = load_checkpoint(uninterrupted / "checkpoints" / "last.ckpt")
    assert (a["epoch"], a["global_step"]) == (b["epoch"], b["global_step"]) == (2, 9)
    assert a["state_dict"].keys() == b["state_dict"].keys()
    for k in a["state_dict"]:
        assert torch.equal(a["state_dict"][k], b["state_dict"][k]), k
    rows = list(csv.DictReader((killed / "metrics.csv").open()))
    # every epoch exactly once: epoch 0 carried over from the killed run, 1 and 2 from the resumed one
    assert [r["epoch"] for r in rows if r.get("val/loss")] == ["0", "1", "2"]
    # the training loss of every epoch (per step it is written every 50 steps only: never, in runs this short)
    assert [r["epoch"] for r in rows if r.get("train/epoch_loss")] == ["0", "1", "2"]
    keys = [tuple(sorted(r.items())) for r in rows]
    assert len(keys) == len(set(keys))  # no row twice (an epoch's train and val rows share their step)
    reference = list(csv.DictReader((uninterrupted / "metrics.csv").open()))
    assert [(r["epoch"], r["step"]) for r in rows] == [(r["epoch"], r["step"]) for r in reference]
    before = [r for r in csv.DictReader((killed / "metrics.1.csv").open()) if r.get("val/loss")]
    assert [r["epoch"] for r in before] == ["0"]  # the interrupted run's raw log is kept too
    row_a, row_b = last_val_row(killed), last_val_row(uninterrupted)
    assert row_a["epoch"] == "2" and len(row_a) > 3
    assert row_a == row_b


def test_truncated_last_checkpoint_is_reported_not_loaded(nyud12: Path, tmp_path: Path) -> None:
    run = tmp_path / "run"
    rc, _, err = run_cli(fit_args(nyud12, run, "--trainer.max_epochs", "1", "--trainer.limit_train_batches", "1"))
    assert rc == 0, err[-3000:]
    last = run / "checkpoints" / "last.ckpt"
    data = last.read_bytes()
    last.write_bytes(data[: len(data) // 2])
    rc, _, err = run_cli(fit_args(nyud12, run, "--trainer.max_epochs", "2", "--ckpt_path", "last"))
    lines = [line for line in err.splitlines() if line.startswith("medusa fit: error:")]
    assert rc == 2 and len(lines) == 1 and "Traceback" not in err, err[-3000:]
    assert str(last) in lines[0] and "truncated or corrupt" in lines[0]
    assert last.read_bytes() == data[: len(data) // 2]  # left as it was for the user to inspect
    with pytest.raises(CheckpointError, match="truncated or corrupt"):
        load_checkpoint(last)


def test_checkpoint_write_interrupted_keeps_the_previous_one(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "last.ckpt"
    atomic_torch_save({"state_dict": {"w": torch.ones(3)}}, path)
    before = path.read_bytes()

    def dies_half_way(obj: Any, f: Any, *args: Any, **kwargs: Any) -> None:
        f.write(b"PK\x03\x04 half a checkpoint")
        raise KeyboardInterrupt  # the process is stopped while writing

    monkeypatch.setattr(torch, "save", dies_half_way)
    with pytest.raises(KeyboardInterrupt):
        atomic_torch_save({"state_dict": {"w": torch.zeros(3)}}, path)
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["last.ckpt"]  # no temporary file left behind


def test_epoch_sampler_and_seeded_samples_are_functions_of_seed_epoch_index() -> None:
    data = list(range(10))
    s = EpochShuffleSampler(data, seed=3)
    s.set_epoch(1)
    first = list(s)
    again = EpochShuffleSampler(data, seed=3)
    again.set_epoch(1)
    assert list(again) == first  # a fresh sampler (a resumed run) draws the same order
    assert sorted(i for i, _ in first) == data
    s.set_epoch(2)
    assert [i for i, _ in s] != [i for i, _ in first]
    assert first[0][1] == derive_seed(3, 1, first[0][0])
    # two ranks: disjoint halves of the same order, equal lengths (padded like DistributedSampler)
    ranks = [EpochShuffleSampler(data[:9], seed=3, num_replicas=2, rank=r) for r in (0, 1)]
    for r in ranks:
        r.set_epoch(1)
    shards = [[i for i, _ in r] for r in ranks]
    assert len(shards[0]) == len(shards[1]) == 5 and set(shards[0]) | set(shards[1]) == set(range(9))
    assert [i for pair in zip(*shards) for i in pair][:9] == ranks[0].permutation(1)

    class Draw(torch.utils.data.Dataset):
        def __len__(self) -> int:
            return 4

        def __getitem__(self, i: int) -> float:
            return float(torch.rand(()))

    seeded = SeededSamples(Draw())
    torch.manual_seed(0)
    state = torch.get_rng_state()
    assert seeded[(2, 11)] == seeded[(2, 11)] != seeded[(2, 12)]
    assert torch.equal(torch.get_rng_state(), state)  # the surrounding stream is untouched


@contextlib.contextmanager
def umask(mask: int) -> Iterator[None]:
    old = os.umask(mask)
    try:
        yield
    finally:
        os.umask(old)


def test_checkpoints_and_data_get_the_usual_permissions_and_no_stale_temp_files(tmp_path: Path) -> None:
    # mkstemp / mkdtemp made checkpoints 0600 and imported or example datasets 0700 (unreadable by the group on a
    # shared filesystem); a writer killed mid-write left its .tmp file there for good
    dead_pid = 2**22 + 12345  # above Linux's pid_max
    path = tmp_path / "last.ckpt"
    stale = tmp_path / f".last.ckpt.{dead_pid}.0badf00d.tmp"
    live = tmp_path / f".last.ckpt.{os.getppid()}.0badf00d.tmp"  # a running writer's: left alone
    other = tmp_path / f".best.ckpt.{dead_pid}.0badf00d.tmp"  # another target's: not this write's business
    for p in (stale, live, other):
        p.write_bytes(b"half")
    with umask(0o022):
        atomic_torch_save({"state_dict": {"w": torch.ones(2)}}, path)
        assert path.stat().st_mode & 0o777 == 0o644
        assert not stale.exists() and live.exists() and other.exists()
        rc, _, err = run_cli(["data", "example", "--out", str(tmp_path / "plain"), "--num", "3", "--size", "32x32"])
        assert rc == 0, err
        assert (tmp_path / "plain").stat().st_mode & 0o777 == 0o755
        files = [p for p in (tmp_path / "plain").rglob("*") if p.is_file()]
        assert files and all(p.stat().st_mode & 0o777 == 0o644 for p in files)


def test_a_fresh_fit_into_a_used_folder_says_it_replaces_the_earlier_checkpoints(nyud12: Path, tmp_path: Path) -> None:
    # the same command run twice replaced last.ckpt / best.ckpt of the first run without a word
    run = tmp_path / "run"
    args = fit_args(nyud12, run, "--trainer.max_epochs", "1", "--trainer.limit_train_batches", "1")
    rc, _, err = run_cli(args)
    assert rc == 0, err[-3000:]
    assert "earlier run" not in err
    rc, _, err = run_cli(args)
    assert rc == 0, err[-3000:]
    assert "holds the checkpoints of an earlier run (best.ckpt, last.ckpt)" in err and "--ckpt_path last" in err
    rc, _, err = run_cli(fit_args(nyud12, run, "--trainer.max_epochs", "2", "--trainer.limit_train_batches", "1",
                                  "--ckpt_path", "last"))
    assert rc == 0, err[-3000:]
    assert "earlier run" not in err  # resuming it: nothing is replaced


def test_resuming_a_finished_run_keeps_its_metrics_csv(nyud12: Path, tmp_path: Path) -> None:
    # `--ckpt_path last` on a run that has no epoch left (the same resume command run twice, or `medusa fit
    # --config run/config.yaml` after a resumed fit, whose config.yaml records the ckpt_path) trains nothing: its
    # metrics.csv was moved aside as metrics.<k>.csv and no metrics.csv was written again
    run = tmp_path / "run"
    args = fit_args(nyud12, run, "--trainer.max_epochs", "1", "--trainer.limit_train_batches", "1")
    rc, _, err = run_cli(args)
    assert rc == 0, err[-3000:]
    before = (run / "metrics.csv").read_text()
    assert "val/loss" in before
    rc, _, err = run_cli([*args, "--ckpt_path", "last"])
    assert rc == 0, err[-3000:]
    assert (run / "metrics.csv").read_text() == before
