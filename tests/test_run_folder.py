"""What ``medusa fit|validate|test`` leave in a run folder, and that the fit's ``config.yaml`` fits again."""

from __future__ import annotations

import csv
from pathlib import Path

import torch

from cli_helpers import run_cli


def _fit_args(root: Path, out: Path) -> list[str]:
    return [
        "--data.dataset", "nyud", "--model.dataset", "nyud", "--data.root", str(root), "--data.size", "[32,32]",
        "--data.batch_size", "2", "--data.num_workers", "0", "--data.val_fraction", "0.2",
        "--model.arch", "mt_baseline", "--model.backbone", "test_efficientnet", "--model.tasks", "[semseg,depth]",
        "--model.edge_thresholds", "5", "--trainer.max_steps", "2", "--trainer.limit_train_batches", "2",
        "--trainer.limit_val_batches", "1",
        "--trainer.enable_progress_bar", "false", "--trainer.enable_model_summary", "false",
        "--trainer.default_root_dir", str(out),
    ]  # fmt: skip


def _rows(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as f:
        return list(csv.DictReader(f))


def test_validate_and_test_in_the_run_folder_keep_the_fits_config_and_metrics(nyud12: Path, tmp_path: Path) -> None:
    run = tmp_path / "run"
    rc, _, err = run_cli(["fit", *_fit_args(nyud12, run)])
    assert rc == 0, err[-3000:]
    config = run / "config.yaml"
    fit_config, fit_metrics = config.read_text(), (run / "metrics.csv").read_text()
    assert any(r.get("train/epoch_loss") for r in _rows(run / "metrics.csv"))
    best = str(run / "checkpoints" / "best.ckpt")

    # the natural next step: evaluate with the run's own config (its default_root_dir is the run folder)
    rc, _, err = run_cli(["validate", "--config", str(config), "--ckpt_path", best])
    assert rc == 0, err[-3000:]
    rc, _, err = run_cli(["test", "--config", str(config), "--ckpt_path", best, "--trainer.logger", "false"])
    assert rc == 0, err[-3000:]

    assert config.read_text() == fit_config  # not replaced by validate's (ckpt_path, verbose: not a fit config)
    assert (run / "metrics.csv").read_text() == fit_metrics
    assert any(r.get("val/loss") for r in _rows(run / "validate" / "metrics.csv"))
    assert "verbose" in (run / "validate" / "config.yaml").read_text()
    assert "verbose" in (run / "config.test.yaml").read_text()

    # and the fit's config still fits, to the same weights
    again = tmp_path / "again"
    rc, _, err = run_cli(["fit", "--config", str(config), "--trainer.default_root_dir", str(again)])
    assert rc == 0, err[-3000:]
    a = torch.load(run / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=False)["state_dict"]
    b = torch.load(again / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=False)["state_dict"]
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k


def test_validate_and_test_find_the_runs_best_checkpoint_by_name(nyud12: Path, tmp_path: Path) -> None:
    run = tmp_path / "run"
    rc, _, err = run_cli(["fit", *_fit_args(nyud12, run)])
    assert rc == 0, err[-3000:]
    config = str(run / "config.yaml")

    def test_row(*ckpt: str) -> dict[str, str]:
        rc, _, err = run_cli(["test", "--config", config, *ckpt])
        assert rc == 0, err[-3000:]
        (row,) = [r for r in _rows(run / "test" / "metrics.csv") if r.get("test/loss")]
        return row

    # as `--ckpt_path last` does: the best.ckpt of the run folder (Lightning's "best" knew only a fit in the same
    # process: a ValueError traceback)
    assert test_row("--ckpt_path", "best") == test_row("--ckpt_path", str(run / "checkpoints" / "best.ckpt"))
    rc, _, err = run_cli(["validate", "--config", config, "--ckpt_path", "best",
                          "--trainer.default_root_dir", str(tmp_path / "elsewhere")])
    assert rc == 2 and "Traceback" not in err, err[-3000:]
    assert "medusa validate: error: --ckpt_path best: " in err and "give the checkpoint's path" in err


def test_validate_and_test_of_a_checkpoint_do_not_need_its_backbone_init_file(nyud12: Path, tmp_path: Path) -> None:
    # the model was built as the checkpoint records it, --model.pretrained_file included (no flag can override
    # that): `medusa validate|test --ckpt_path` stopped with "backbone weights file not found" once the file the
    # fit started from was gone (another machine, a cleared data/pretrained/), to load weights the checkpoint
    # replaces anyway; `medusa evaluate` of the same checkpoint never needed it
    import timm

    init = tmp_path / "backbone.pth"
    torch.save(timm.create_model("test_efficientnet").state_dict(), init)
    run = tmp_path / "run"
    rc, _, err = run_cli(["fit", *_fit_args(nyud12, run), "--model.pretrained_file", str(init)])
    assert rc == 0, err[-3000:]
    init.unlink()
    best = str(run / "checkpoints" / "best.ckpt")
    for command in ("validate", "test"):
        rc, _, err = run_cli([command, "--config", str(run / "config.yaml"), "--ckpt_path", best])
        assert rc == 0, err[-3000:]
        assert "pretrained_file" not in err  # not a setting of the checkpoint that replaces the config's
        assert any(r.get(f"{'val' if command == 'validate' else 'test'}/loss")
                   for r in _rows(run / command / "metrics.csv"))
