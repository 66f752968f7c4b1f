"""Bad input gives one clear error naming the file or option and what was expected (issue 5, item 2).

Every case runs the real command line in-process (``medusa fit`` on a tiny dataset with one defect, or a bad
option) and checks that the user sees exactly one ``medusa fit: error: ...`` line (no traceback) naming the file
or option, and that nothing that a later run could mistake for a result (a checkpoint, validation metrics) is
left in the output folder. ``medusa data check`` must list every problem of a broken folder at once, and a
NaN loss stops training with a clear message while keeping the last good checkpoint.
"""

from __future__ import annotations

import csv
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image

from cli_helpers import run_cli
from medusa_mtl.data import formats
from medusa_mtl.engine.checkpoints import load_checkpoint
from medusa_mtl.errors import NonFiniteLossError

NYUD_IDS = [f"n{i}" for i in range(6)]


@pytest.fixture
def good_nyud(tmp_path: Path, nyud_arrays: Callable[..., dict[str, Any]]) -> Path:
    """6 samples of 32 x 32: train n0..n4 (one is held out for validation, 4 train = 2 batches of 2), val n5."""
    root = tmp_path / "good" / "NYUD_MT"
    for i, sample_id in enumerate(NYUD_IDS):
        formats.write_nyud_sample(root, sample_id, **nyud_arrays(i, 32, 32))
    formats.write_nyud_splits(root, NYUD_IDS[:5], NYUD_IDS[5:])
    return root


@pytest.fixture
def good_pascal(tmp_path: Path, pascal_arrays: Callable[..., dict[str, Any]]) -> Path:
    root = tmp_path / "good" / "PASCAL_MT"
    ids = [f"p{i}" for i in range(6)]
    for i, sample_id in enumerate(ids):
        formats.write_pascal_sample(root, sample_id, **pascal_arrays(i, 32, 32))
    formats.write_pascal_splits(root, ids[:5], ids[5:])
    return root


def fit_args(root: Path, out: Path, *extra: str, dataset: str = "nyud") -> list[str]:
    """``medusa fit`` arguments for a one-epoch run that reads every train and held-out image."""
    tasks = "[semseg,depth]" if dataset == "nyud" else "[semseg,human_parts]"
    return [
        "fit", "--data.dataset", dataset, "--model.dataset", dataset, "--data.root", str(root),
        "--data.size", "[32,32]", "--data.batch_size", "2", "--data.num_workers", "0", "--data.val_fraction",
        "0.2", "--model.arch", "mt_baseline", "--model.backbone", "test_efficientnet", "--model.tasks", tasks,
        "--model.edge_thresholds", "5", "--trainer.max_epochs", "1", "--trainer.enable_progress_bar", "false",
        "--trainer.enable_model_summary", "false", "--trainer.default_root_dir", str(out), *extra,
    ]  # fmt: skip


def assert_one_clear_error(rc: int, stderr: str, command: str, *expected: str) -> str:
    """Exit code 2, no traceback, exactly one ``medusa <command>: error:`` line containing ``expected``."""
    assert rc == 2, stderr[-3000:]
    assert "Traceback" not in stderr, stderr[-3000:]
    lines = [line for line in stderr.splitlines() if line.startswith(f"medusa {command}: error:")]
    assert len(lines) == 1, stderr[-3000:]
    for fragment in expected:
        assert fragment in lines[0], f"{fragment!r} not in {lines[0]!r}"
    return lines[0]


def assert_no_result(out: Path) -> None:
    """Nothing a later run could take for a result: no checkpoint, no JSON report, no validation metrics."""
    if not out.exists():
        return
    leftovers = [p for p in out.rglob("*") if p.suffix in (".ckpt", ".json") or p.name.endswith(".tmp")]
    assert not leftovers, leftovers
    for metrics in out.rglob("metrics.csv"):
        rows = list(csv.DictReader(metrics.open()))
        assert not any(v for r in rows for k, v in r.items() if k.startswith(("val/", "test/"))), rows


# -- defects: (name, dataset, mutate(root), fit extra args, fragments expected in the error) ----------------


def _truncate(path: Path, keep: float = 0.5) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * keep)])


def _save_png(path: Path, arr: np.ndarray) -> None:
    Image.fromarray(arr.astype(np.uint8)).save(path)


def _depth_with(value: float) -> Callable[[Path], None]:
    def mutate(root: Path) -> None:
        d = np.load(root / "depth/n1.npy")
        d[3, 4] = value
        np.save(root / "depth/n1.npy", d)

    return mutate


def _seg_57(root: Path) -> None:
    seg = np.array(Image.open(root / "segmentation/n1.png"))
    seg[5, 5] = 57
    _save_png(root / "segmentation/n1.png", seg)


def _write_bytes(rel: str, data: bytes) -> Callable[[Path], None]:
    return lambda root: (root / rel).write_bytes(data)


DATA_CASES: list[tuple[str, str, Callable[[Path], None], tuple[str, ...], tuple[str, ...]]] = [
    ("corrupt image", "nyud", _write_bytes("images/n1.jpg", b"this is not a jpeg" * 20), (),
     ("images/n1.jpg", "unreadable or truncated image")),
    ("truncated image", "nyud", lambda r: _truncate(r / "images/n1.jpg"), (),
     ("images/n1.jpg", "unreadable or truncated image")),
    ("truncated .npy", "nyud", lambda r: _truncate(r / "depth/n1.npy"), (),
     ("depth/n1.npy", "unreadable or truncated .npy")),
    ("truncated .npy read by a DataLoader worker", "nyud", lambda r: _truncate(r / "depth/n1.npy"),
     ("--data.num_workers", "1"), ("depth/n1.npy", "unreadable or truncated .npy")),
    ("truncated .png label", "nyud", lambda r: _truncate(r / "segmentation/n1.png"), (),
     ("segmentation/n1.png", "unreadable or truncated PNG")),
    ("truncated .mat label", "pascal", lambda r: _truncate(r / "human_parts/p1.mat"), (),
     ("human_parts/p1.mat", "unreadable or truncated .mat")),
    ("label of the wrong shape", "nyud", lambda r: np.save(r / "depth/n1.npy", np.ones((10, 90), np.float32)), (),
     ("depth/n1.npy", "does not match the image size 32x32")),
    ("label of the wrong rank", "nyud", lambda r: np.save(r / "depth/n1.npy", np.ones((32, 32, 2), np.float32)), (),
     ("depth/n1.npy", "expected depth of shape H x W")),
    ("segmentation value 57", "nyud", _seg_57, (), ("segmentation/n1.png", "[57] out of range; expected 0..40")),
    ("NaN depth", "nyud", _depth_with(float("nan")), (), ("depth/n1.npy", "NaN/inf")),
    ("inf depth", "nyud", _depth_with(float("inf")), (), ("depth/n1.npy", "NaN/inf")),
    ("missing label file", "nyud", lambda r: (r / "depth/n1.npy").unlink(), (), ("depth/n1.npy", "missing file")),
    ("missing split file", "nyud", lambda r: (r / "gt_sets/val.txt").unlink(), (),
     ("gt_sets/val.txt", "missing split file")),
    ("missing dataset folder", "nyud", lambda r: shutil.rmtree(r), (), ("dataset folder not found", "NYUD_MT")),
]  # fmt: skip


@pytest.mark.parametrize("name,dataset,mutate,extra,expected", DATA_CASES, ids=[c[0] for c in DATA_CASES])
def test_bad_dataset_file_gives_one_clear_error(
    name: str,
    dataset: str,
    mutate: Callable[[Path], None],
    extra: tuple[str, ...],
    expected: tuple[str, ...],
    request: pytest.FixtureRequest,
    tmp_path: Path,
) -> None:
    root = request.getfixturevalue("good_nyud" if dataset == "nyud" else "good_pascal")
    mutate(root)
    out = tmp_path / "run"
    rc, _, err = run_cli(fit_args(root, out, *extra, dataset=dataset))
    line = assert_one_clear_error(rc, err, "fit", *expected)
    if "missing" not in name:
        assert str(root) in line  # the full path of the file
    assert_no_result(out)


OPTION_CASES: list[tuple[str, tuple[str, ...], tuple[str, ...]]] = [
    ("unknown model", ("--model.arch", "nope"), ("--model.arch: unknown model 'nope'", "medusa")),
    ("unknown task", ("--model.tasks", "[semseg,banana]"), ("--model.tasks: unknown task 'banana'", "semseg")),
    ("unknown aux task", ("--model.aux_tasks", "[semseg,depth,deph]"),
     ("--model.aux_tasks: unknown task 'deph'", "depth")),
    ("unknown data task", ("--data.tasks", "[semseg,deph]"), ("--data.tasks: unknown task 'deph'", "depth")),
    ("unknown dataset", ("--data.dataset", "cityscapes"), ("--data.dataset: unknown dataset 'cityscapes'", "nyud")),
    ("unknown model dataset", ("--model.dataset", "nyu"), ("--model.dataset: unknown dataset 'nyu'", "nyud")),
    ("size not a multiple of 32", ("--data.size", "[60,64]"), ("--data.size", "multiples of 32", "60x64")),
    ("option that does not exist", ("--model.dropout", "0.1"), ("unrecognized arguments: --model.dropout",)),
    ("misspelt option (no abbreviation guessing)", ("--trainer.max_epoch", "3"),
     ("unrecognized arguments: --trainer.max_epoch",)),
    ("value of the wrong type", ("--model.lr", "fast"), ('"model.lr"', "float", "fast")),
    ("missing checkpoint", ("--ckpt_path", "nowhere/last.ckpt"), ("nowhere/last.ckpt",)),
    ("model and data of different datasets", ("--data.dataset", "pascal", "--data.tasks", "[sal]"),
     ("--model.dataset", "'nyud'", "'pascal'", "--data.dataset")),
    # these were 30-50 line tracebacks (Lightning's MisconfigurationException, torch's / the DataLoader's
    # ValueError) or, for max_train 0, a run that exited 0 without training or a checkpoint
    ("accelerator not on this machine", ("--trainer.accelerator", "mps"), ("MPSAccelerator", "(Lightning")),
    ("limit above 1.0", ("--trainer.limit_train_batches", "1.5"), ("limit_train_batches", "(Lightning")),
    ("unknown clip algorithm", ("--trainer.gradient_clip_algorithm", "valuee"), ("valuee", "(Lightning")),
    ("negative lr", ("--model.lr", "-1"), ("--model.lr must be a finite number >= 0", "-1")),
    ("negative workers", ("--data.num_workers", "-1"), ("--data.num_workers must be >= 0", "-1")),
    ("no training images", ("--data.max_train", "0"), ("--data.max_train must be >= 1", "got 0")),
    ("LightningCLI's optimizer", ("--optimizer", "SGD"), ("--optimizer: not used by medusa-mtl models",
                                                          "--model.optimizer")),
]  # fmt: skip


@pytest.mark.parametrize("name,extra,expected", OPTION_CASES, ids=[c[0] for c in OPTION_CASES])
def test_bad_option_gives_one_clear_error(
    name: str, extra: tuple[str, ...], expected: tuple[str, ...], good_nyud: Path, tmp_path: Path
) -> None:
    out = tmp_path / "run"
    rc, _, err = run_cli(fit_args(good_nyud, out, *extra))
    assert_one_clear_error(rc, err, "fit", *expected)
    assert_no_result(out)


@pytest.mark.parametrize("content", [b"garbage\n", None], ids=["garbage", "truncated"])
def test_unreadable_ckpt_path_gives_one_clear_error(content: bytes | None, good_nyud: Path, tmp_path: Path) -> None:
    """Lightning reads a --ckpt_path file for its hyper-parameters before anything else (it was an
    UnpicklingError / PytorchStreamReader traceback)."""
    ckpt = tmp_path / "bad.ckpt"
    if content is None:  # the first half of a real checkpoint
        import torch

        torch.save({"state_dict": {"w": torch.zeros(1000)}, "hyper_parameters": {}}, ckpt)
        ckpt.write_bytes(ckpt.read_bytes()[: ckpt.stat().st_size // 2])
    else:
        ckpt.write_bytes(content)
    out = tmp_path / "run"
    rc, _, err = run_cli(fit_args(good_nyud, out, "--ckpt_path", str(ckpt)))
    assert_one_clear_error(rc, err, "fit", str(ckpt), "cannot be read", "truncated or corrupt")
    assert_no_result(out)


def test_ckpt_path_settings_that_replace_the_config_are_reported(good_nyud: Path, tmp_path: Path) -> None:
    """Lightning builds the model as a --ckpt_path file records it, over the config: say which settings changed."""
    rc, _, err = run_cli(fit_args(good_nyud, tmp_path / "a"))
    assert rc == 0, err
    ckpt = next((tmp_path / "a").rglob("last.ckpt"))
    rc, _, err = run_cli(["validate", *fit_args(good_nyud, tmp_path / "b", "--model.arch", "mtan")[1:],
                          "--ckpt_path", str(ckpt)])
    assert rc == 0, err
    assert f"note: the model is built as {ckpt} records it: arch 'mt_baseline' (config: 'mtan')" in err, err
    assert "metric_options" not in err  # None in the config, {} in the file: the same, not a change to report
    # --ckpt_path last: the same file, found by name in the run's folder; its settings were neither applied as
    # recorded nor reported (a changed lr trained on at the old rate while the new checkpoint recorded the new one)
    rc, _, err = run_cli(fit_args(good_nyud, tmp_path / "a", "--model.lr", "0.5", "--trainer.max_epochs", "2",
                                  "--ckpt_path", "last"))
    assert rc == 0, err
    assert "note: the model is built as" in err and "lr 0.0001 (config: 0.5)" in err, err
    resumed = load_checkpoint(tmp_path / "a" / "checkpoints" / "last.ckpt")
    assert resumed["hyper_parameters"]["lr"] == 1e-4 and resumed["epoch"] == 1


def test_config_file_that_is_not_yaml_is_named(good_nyud: Path, tmp_path: Path) -> None:
    cfg = tmp_path / "broken.yaml"
    cfg.write_text("trainer:\n  max_epochs: [1,\n")
    out = tmp_path / "run"
    rc, _, err = run_cli(fit_args(good_nyud, out, "--config", str(cfg)))
    assert_one_clear_error(rc, err, "fit", f"--config {cfg}: not valid YAML", "line 3")  # it said <unicode string>
    assert not out.exists()
    for form in (["-c", str(cfg)], [f"-c={cfg}"], [f"--config={cfg}"]):  # -c is --config's alias
        rc, _, err = run_cli(fit_args(good_nyud, out, *form))
        assert_one_clear_error(rc, err, "fit", f"--config {cfg}: not valid YAML", "line 3")
        assert not out.exists()


def test_config_file_key_that_does_not_exist(good_nyud: Path, tmp_path: Path) -> None:
    cfg = tmp_path / "typo.yaml"
    cfg.write_text("trainer:\n  max_epoch: 3\n")
    out = tmp_path / "run"
    rc, _, err = run_cli(fit_args(good_nyud, out, "--config", str(cfg)))
    assert_one_clear_error(rc, err, "fit", "trainer.max_epoch")
    assert not out.exists()


def test_data_check_bad_task_and_missing_folder(tmp_path: Path) -> None:
    rc, _, err = run_cli(["data", "check", "--dataset", "nyud", "--root", str(tmp_path), "--tasks", "banana"])
    assert_one_clear_error(rc, err, "data check", "unknown task(s) ['banana']", "semseg")


def test_data_check_lists_every_problem_at_once(good_nyud: Path, tmp_path: Path) -> None:
    """One folder with many different defects: ``medusa data check`` reports each, naming its file."""
    root = good_nyud
    (root / "images/n0.jpg").write_bytes(b"garbage")  # corrupt image
    _truncate(root / "depth/n1.npy")  # truncated .npy
    _seg_57(root)  # n1: label out of range
    _truncate(root / "segmentation/n2.png")  # truncated .png
    d = np.load(root / "depth/n3.npy")
    d[0, 1] = np.nan
    np.save(root / "depth/n3.npy", d)  # NaN depth
    np.save(root / "normals/n4.npy", np.ones((7, 50, 3), np.float32))  # wrong shape
    (root / "edge/n5.npy").unlink()  # missing file
    rc, out, err = run_cli(["data", "check", "--dataset", "nyud", "--root", str(root)])
    assert rc == 1 and "Traceback" not in err
    expected = {
        "images/n0.jpg": "unreadable or truncated image",
        "depth/n1.npy": "unreadable or truncated .npy",
        "segmentation/n1.png": "[57] out of range",
        "segmentation/n2.png": "unreadable or truncated PNG",
        "depth/n3.npy": "NaN/inf",
        "normals/n4.npy": "does not match the image size",
        "edge/n5.npy": "missing file",
    }
    problems = [line for line in out.splitlines() if line.startswith("  - ")]
    for path, what in expected.items():
        assert any(path in p and what in p for p in problems), (path, what, out)
    assert f"{len(problems)} problem(s)" in out
    # removing the split file is reported too, and the other split is still checked
    (root / "gt_sets/train.txt").unlink()
    rc, out, _ = run_cli(["data", "check", "--dataset", "nyud", "--root", str(root)])
    assert rc == 1 and "gt_sets/train.txt" in out and "missing split file" in out and "edge/n5.npy" in out


def test_nan_loss_stops_with_clear_error_and_keeps_last_good_checkpoint(
    good_nyud: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The depth loss turns NaN at the 2nd step of epoch 2: the run stops with NonFiniteLossError's message and
    ``last.ckpt`` / ``best.ckpt`` stay those of epoch 1 (finite, loadable)."""
    from medusa_mtl.tasks import Task

    original = Task.loss
    calls = {"train": 0}

    def loss(self: Task, raw: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        value = original(self, raw, target)
        if self.name == "depth" and torch.is_grad_enabled():
            calls["train"] += 1
            if calls["train"] == 2 + 2:  # epoch 1 has 2 steps (4 train images, batch 2): 2nd step of epoch 2
                return value * float("nan")
        return value

    monkeypatch.setattr(Task, "loss", loss)
    out = tmp_path / "run"
    rc, _, err = run_cli(fit_args(good_nyud, out, "--trainer.max_epochs", "3"))
    line = assert_one_clear_error(rc, err, "fit", "training loss became nan", "epoch 1", "last good checkpoint")
    assert "depth" in line
    for name in ("last.ckpt", "best.ckpt"):
        ckpt = load_checkpoint(out / "checkpoints" / name)
        assert ckpt["epoch"] == 0 and ckpt["global_step"] == 2
        assert all(torch.isfinite(v).all() for v in ckpt["state_dict"].values() if v.is_floating_point())
    assert not list((out / "checkpoints").glob("*.tmp"))


def test_non_finite_validation_loss_stops_the_run(good_nyud: Path, tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    """A diverged run whose training loss stays finite (2.6e14 at Adam lr 1e6) but whose eval-mode outputs are not:
    it finished with exit 0, val/loss nan every epoch and a meaningless best.ckpt. Now it stops like a NaN
    training loss, and the epoch before the divergence stays last.ckpt."""
    from medusa_mtl.tasks import Task

    original = Task.loss
    calls = {"train": 0}

    def loss(self: Task, raw: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        value = original(self, raw, target)
        if self.name == "depth":
            if torch.is_grad_enabled():
                calls["train"] += 1
            elif calls["train"] >= 4:  # the validation after epoch 2's two steps
                return value * float("nan")
        return value

    monkeypatch.setattr(Task, "loss", loss)
    out = tmp_path / "run"
    rc, _, err = run_cli(fit_args(good_nyud, out, "--trainer.max_epochs", "3"))
    assert_one_clear_error(rc, err, "fit", "held-out validation loss is nan after epoch 1", "last good checkpoint",
                           "--model.lr")
    ckpt = load_checkpoint(out / "checkpoints" / "last.ckpt")
    assert ckpt["epoch"] == 0 and ckpt["global_step"] == 2


def test_non_finite_weights_are_never_checkpointed() -> None:
    from medusa_mtl.engine.training import MultiTaskModule

    module = MultiTaskModule(arch="mt_baseline", tasks="semseg", backbone="test_efficientnet")
    state = module.state_dict()
    module.on_save_checkpoint({"state_dict": state})  # finite: fine
    key = next(k for k, v in state.items() if v.is_floating_point())
    state[key] = state[key].clone().fill_(float("inf"))
    with pytest.raises(NonFiniteLossError, match=r"NaN/inf.*no checkpoint was written"):
        module.on_save_checkpoint({"state_dict": state})


def test_data_tasks_without_a_model_task_is_named(good_nyud: Path, tmp_path: Path) -> None:
    # --data.tasks [semseg] for a semseg + depth model: a 40-line traceback ending in KeyError: 'depth'
    rc, _, err = run_cli(fit_args(good_nyud, tmp_path / "run", "--data.tasks", "[semseg]"))
    assert_one_clear_error(rc, err, "fit", "--data.tasks ['semseg'] lacks the model's task(s) ['depth']")


def test_data_size_takes_the_hxw_form_of_the_other_commands(good_nyud: Path, tmp_path: Path) -> None:
    # --data.size 32x32 (every other command's --size form) was refused with jsonargparse's "Does not validate
    # against any of the Union subtypes"
    args = fit_args(good_nyud, tmp_path / "run")
    args[args.index("--data.size") + 1] = "32x32"
    rc, _, err = run_cli(args)
    assert rc == 0, err[-3000:]
    ckpt = load_checkpoint(tmp_path / "run" / "checkpoints" / "last.ckpt")
    assert tuple(ckpt["datamodule_hyper_parameters"]["size"]) == (32, 32)
    args[args.index("--data.size") + 1] = "32by32"
    rc, _, err = run_cli(args)
    assert_one_clear_error(rc, err, "fit", "--data.size '32by32': expected HxW such as 64x64, or [H, W]")


@pytest.mark.parametrize("command", ["evaluate", "predict", "export", "fit"])
@pytest.mark.parametrize("has_ckpts", [True, False], ids=["run folder", "other folder"])
def test_a_folder_given_as_checkpoint_says_so(command: str, has_ckpts: bool, good_nyud: Path, tmp_path: Path) -> None:
    """A folder where a .ckpt file is expected said "checkpoint not found"; now it is named as a folder, with the
    run's checkpoints in it if there are any."""
    run = tmp_path / "myrun"
    (run / "checkpoints").mkdir(parents=True)
    if has_ckpts:
        (run / "checkpoints" / "last.ckpt").write_bytes(b"")
    argv = {
        "evaluate": ["evaluate", "--ckpt", str(run), "--data", str(good_nyud)],
        "predict": ["predict", "--ckpt", str(run), "--images", str(good_nyud / "images"), "--out", str(tmp_path / "p")],
        "export": ["export", "--ckpt", str(run), "--format", "torchscript", "--out", str(tmp_path / "m.pt")],
        "fit": fit_args(good_nyud, tmp_path / "out", "--ckpt_path", str(run)),
    }[command]
    rc, _, err = run_cli(argv)
    hint = str(run / "checkpoints" / "last.ckpt") if has_ckpts else "<run>/checkpoints/best.ckpt"
    line = assert_one_clear_error(rc, err, command, f"{run} is a folder, not a checkpoint", ".ckpt file", hint)
    assert "not found" not in line
    if command == "fit":
        assert "--ckpt_path" in line
        assert_no_result(tmp_path / "out")


def test_a_folder_given_as_single_task_results_says_so(tmp_path: Path) -> None:
    from medusa_mtl.engine.training import MultiTaskModule

    module = MultiTaskModule(arch="mt_baseline", tasks="semseg,depth", dataset="nyud", backbone="test_efficientnet")
    ckpt = tmp_path / "m.ckpt"
    torch.save({"state_dict": module.state_dict(), "hyper_parameters": dict(module.hparams)}, ckpt)
    folder = tmp_path / "st"
    folder.mkdir()
    (folder / "results.json").write_text("{}")
    rc, _, err = run_cli(["evaluate", "--ckpt", str(ckpt), "--data", str(tmp_path), "--single-task", str(folder)])
    assert_one_clear_error(rc, err, "evaluate", f"{folder} is a folder, not a single-task results file", "JSON file",
                           str(folder / "results.json"))


def test_a_saved_config_with_null_optimizer_keys_still_runs(good_nyud: Path, tmp_path: Path) -> None:
    # every config.yaml LightningCLI saved holds `optimizer: null` / `lr_scheduler: null`: refusing LightningCLI's
    # --optimizer must not refuse those files
    rc, saved, err = run_cli(fit_args(good_nyud, tmp_path / "run", "--print_config"))
    assert rc == 0 and "optimizer: null" in saved, err
    cfg = tmp_path / "config.yaml"
    cfg.write_text(saved)
    rc, again, err = run_cli(["fit", "--config", str(cfg), "--print_config"])
    assert rc == 0 and again == saved, err


def test_early_stopping_on_a_metric_that_is_not_logged_is_one_clear_error(good_nyud: Path, tmp_path: Path) -> None:
    # a ModelCheckpoint monitoring such a metric was one line already; EarlyStopping's RuntimeError was a traceback
    rc, _, err = run_cli(fit_args(good_nyud, tmp_path / "run", "--trainer.callbacks+=EarlyStopping",
                                  "--trainer.callbacks.monitor", "val/semseg/miou"))
    assert_one_clear_error(rc, err, "fit", "Early stopping conditioned on metric `val/semseg/miou`",
                           "`val/semseg/mIoU`")


def test_a_ckpt_path_keyword_with_nothing_to_find_is_one_clear_error(good_nyud: Path, tmp_path: Path) -> None:
    # Lightning's ValueError for "best" in a fit / "hpc" without an HPC checkpoint was a traceback
    rc, _, err = run_cli(fit_args(good_nyud, tmp_path / "run", "--ckpt_path", "best"))
    assert_one_clear_error(rc, err, "fit", 'ckpt_path="best"', "ModelCheckpoint")
    rc, _, err = run_cli(["test", *fit_args(good_nyud, tmp_path / "run")[1:], "--ckpt_path", "hpc"])
    assert_one_clear_error(rc, err, "test", 'ckpt_path="hpc"', "no HPC checkpoint")


@pytest.mark.parametrize("what", ["no hyper-parameters", "another module's"])
@pytest.mark.parametrize("command", ["evaluate", "predict", "export", "ufl"])
def test_a_checkpoint_whose_weights_do_not_fit_its_hyper_parameters_is_one_error(
        command: str, what: str, good_nyud: Path, tmp_path: Path) -> None:
    """A state dict saved without our hyper-parameters (by hand, or by another LightningModule) was rebuilt as
    the default model: a "Missing key(s) / Unexpected key(s) in state_dict" traceback listing hundreds of names
    (or a TypeError for unknown hyper-parameters)."""
    from medusa_mtl.engine.training import MultiTaskModule

    module = MultiTaskModule(arch="mt_baseline", tasks="semseg,depth", dataset="nyud", backbone="test_efficientnet")
    ckpt = tmp_path / "other.ckpt"
    hp = {} if what == "no hyper-parameters" else {"hidden_dim": 64, "learning_rate": 0.1}
    torch.save({"state_dict": module.state_dict(), "hyper_parameters": hp}, ckpt)
    argv = {
        "evaluate": ["evaluate", "--ckpt", str(ckpt), "--data", str(good_nyud)],
        "predict": ["predict", "--ckpt", str(ckpt), "--images", str(good_nyud / "images"),
                    "--out", str(tmp_path / "p")],
        "export": ["export", "--ckpt", str(ckpt), "--format", "torchscript", "--out", str(tmp_path / "m.pt")],
        "ufl": ["ufl", "--source-ckpt", str(ckpt), "--tasks", "sal", "--root", str(tmp_path / "none"),
                "--out", str(tmp_path / "u")],
    }[command]
    rc, _, err = run_cli(argv)
    line = assert_one_clear_error(rc, err, command, str(ckpt), "hyper-parameters")
    assert len(line) < 600, line
    assert not (tmp_path / "m.pt").exists()
    assert_no_result(tmp_path / "u")


@pytest.mark.parametrize(("options", "expected"), [
    # an option the task's metric does not take: a TypeError traceback from the sanity check's validation
    ("{depth: {beta2: 1.0}}", ["--model.metric_options", "depth", "'beta2'", "eps"]),
    # options of a task the model does not score (an auxiliary task, one it does not have): kept in the
    # hyper-parameters, used nowhere (docs/ARCHITECTURE.md: NYUD's edges are auxiliary)
    ("{edge: {max_dist_ratio: 0.011}}", ["--model.metric_options", "'edge'", "semseg, depth"]),
    ("{sal: {beta2: 1.0}}", ["--model.metric_options", "'sal'", "semseg, depth"]),
], ids=["unknown option", "auxiliary task", "task of another dataset"])
def test_metric_options_that_would_not_be_used_are_one_clear_error(options: str, expected: list[str],
                                                                   good_nyud: Path, tmp_path: Path) -> None:
    out = tmp_path / "run"
    rc, _, err = run_cli(fit_args(good_nyud, out, "--model.aux_tasks", "[semseg,depth,edge]",
                                  "--model.metric_options", options))
    assert_one_clear_error(rc, err, "fit", *expected)
    assert_no_result(out)
