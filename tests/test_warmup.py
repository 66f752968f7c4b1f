"""A linear learning-rate warm-up before the poly schedule (``warmup_epochs``): the rate of every step, resume,
bad values, the benchmark's UFL heads."""

from __future__ import annotations

import math
from pathlib import Path

import lightning as L
import pytest

from medusa_mtl.data.synthetic import generate
from medusa_mtl.engine.training import MultiTaskDataModule, MultiTaskModule, make_trainer
from medusa_mtl.engine.ufl import ufl_module_from_checkpoint
from medusa_mtl.errors import ConfigError


@pytest.fixture(scope="module")
def nyud(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("warmup") / "NYUD_MT"
    generate("nyud", root, num_train=6, num_val=2, size=(32, 32), seed=0, workers=1)
    return root


class _LrLog(L.Callback):
    def __init__(self) -> None:
        self.lrs: list[float] = []

    def on_train_batch_start(self, trainer, module, batch, batch_idx):  # noqa: ANN001
        self.lrs.append(trainer.optimizers[0].param_groups[0]["lr"])


class _StopAfterFirstEpoch(L.Callback):
    """An interruption after epoch 0 whose checkpoint is written (the run's length, and so its schedule, unchanged)."""

    def on_train_epoch_end(self, trainer, module):  # noqa: ANN001
        trainer.should_stop = True


def _fit(root: Path, out: Path, epochs: int, warmup: float, resume: bool = False, stop: bool = False) -> list[float]:
    module = MultiTaskModule(arch="mt_baseline", tasks="semseg,depth", dataset="nyud", backbone="test_efficientnet",
                             lr=1e-3, warmup_epochs=warmup)
    data = MultiTaskDataModule(dataset="nyud", root=str(root), size=(32, 32), batch_size=2, num_workers=0,
                               val_fraction=0.25)
    log = _LrLog()
    trainer = make_trainer(max_epochs=epochs, default_root_dir=str(out), enable_progress_bar=False,
                           enable_model_summary=False, limit_train_batches=2, limit_val_batches=1,
                           num_sanity_val_steps=0, logger=False,
                           callbacks=[log, _StopAfterFirstEpoch()] if stop else [log])
    last = out / "checkpoints" / "last.ckpt"
    trainer.fit(module, data, ckpt_path=str(last) if resume else None)
    return log.lrs


def _poly(e: int) -> float:
    return (1 - e / 3) ** 0.9


@pytest.mark.parametrize(("warmup", "ramp"), [(1, [1 / 2, 1]), (1.5, [1 / 3, 2 / 3, 1]), (0.25, [1])])
def test_the_rate_ramps_up_linearly_then_follows_the_poly_schedule(nyud: Path, tmp_path: Path, warmup: float,
                                                                     ramp: list[float]) -> None:
    lrs = _fit(nyud, tmp_path, 3, warmup)  # 2 optimizer steps an epoch
    poly = [_poly(e) for e in (0, 0, 1, 1, 2, 2)]
    factors = ramp + [1.0] * (6 - len(ramp))
    assert lrs == pytest.approx([1e-3 * f * p for f, p in zip(factors, poly)])


def test_no_warmup_keeps_the_per_epoch_schedule(nyud: Path, tmp_path: Path) -> None:
    assert _fit(nyud, tmp_path, 3, 0) == pytest.approx([1e-3 * _poly(e) for e in (0, 0, 1, 1, 2, 2)])
    module = MultiTaskModule(arch="mt_baseline", tasks="semseg", backbone="test_efficientnet")
    assert module.configure_optimizers()["lr_scheduler"]["interval"] == "epoch"
    assert module.hparams.warmup_epochs == 0.0


def test_a_resumed_run_continues_the_warmup_where_it_stopped(nyud: Path, tmp_path: Path) -> None:
    whole = _fit(nyud, tmp_path / "whole", 3, 2)  # warm-up over 4 steps, one epoch of it left after the stop
    first = _fit(nyud, tmp_path / "split", 3, 2, stop=True)
    rest = _fit(nyud, tmp_path / "split", 3, 2, resume=True)
    assert len(first) == 2 and len(rest) == 4
    assert first + rest == pytest.approx(whole)
    assert whole[2] == pytest.approx(1e-3 * 0.75 * _poly(1))


@pytest.mark.parametrize("bad", [-1, math.nan, math.inf, True, "1"])
def test_bad_warmups_name_the_option(bad: object) -> None:
    with pytest.raises(ConfigError, match="--model.warmup_epochs must be a finite number >= 0"):
        MultiTaskModule(arch="mt_baseline", tasks="semseg", backbone="test_efficientnet", warmup_epochs=bad)


def test_ufl_heads_take_the_warmup_they_are_given_not_the_sources(nyud: Path, tmp_path: Path) -> None:
    _fit(nyud, tmp_path, 1, 1)
    source = tmp_path / "checkpoints" / "last.ckpt"
    inherited = ufl_module_from_checkpoint(source, ["human_parts"], "pascal")
    assert inherited.hparams.warmup_epochs == 1.0  # `medusa ufl` keeps the source's optimiser settings ...
    own = ufl_module_from_checkpoint(source, ["human_parts"], "pascal", warmup_epochs=0.0)
    assert own.hparams.warmup_epochs == 0.0  # ... unless told otherwise, as the benchmark always does


def test_medusa_ufl_takes_a_warmup_option(nyud: Path, tmp_path: Path) -> None:
    from medusa_mtl.cli import main as cli_main
    from medusa_mtl.engine.checkpoints import load_checkpoint

    _fit(nyud, tmp_path, 1, 1)
    pascal = tmp_path / "PASCAL_MT"
    generate("pascal", pascal, num_train=4, num_val=2, size=(32, 32), seed=0, workers=1)
    config = tmp_path / "ufl.yaml"
    config.write_text("data: {num_workers: 0, val_fraction: 0.25}\n"
                      "trainer: {enable_progress_bar: false, enable_model_summary: false}\n")
    out = tmp_path / "ufl"
    assert cli_main(["ufl", "--source-ckpt", str(tmp_path / "checkpoints" / "last.ckpt"), "--tasks", "sal",
                     "--root", str(pascal), "--config", str(config), "--size", "32x32", "--epochs", "1",
                     "--batch-size", "2", "--warmup-epochs", "0.5", "--out", str(out)]) == 0
    assert load_checkpoint(out / "checkpoints" / "last.ckpt")["hyper_parameters"]["warmup_epochs"] == 0.5


def test_the_report_setup_names_a_warmup() -> None:
    from medusa_mtl.reports.benchmark import _warmup_text

    assert _warmup_text({"lr": 1e-3}) == ""
    assert _warmup_text({"lr": 1e-3, "warmup_epochs": 0}) == ""
    assert _warmup_text({"lr": 1e-3, "warmup_epochs": 1}) == " (linear warm-up over the first 1 epoch, not in SPEC)"
    assert "first 0.5 epochs" in _warmup_text({"warmup_epochs": 0.5})
