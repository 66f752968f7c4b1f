"""The evidence machinery: pretraining, the trivial predictor, seed statistics and claim verdicts."""

from __future__ import annotations

import json
import math
import re
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from medusa_mtl.data import formats
from medusa_mtl.engine.pretrain import PretrainSettings, ensure_pretrained, presence_vector, pretrain_record
from medusa_mtl.errors import CheckpointError, ConfigError
from medusa_mtl.models import create_model
from medusa_mtl.reports.claims import (
    CONTRADICTED,
    SUPPORTED,
    UNRESOLVED,
    check_claims,
    diff_interval,
    growth,
    learned,
    param_counts,
    verdict_greater,
    verdict_less,
)
from medusa_mtl.reports.trivial import trivial_predictor


# -- pretraining -----------------------------------------------------------------------------------------------
def test_presence_vector_marks_visible_classes_only() -> None:
    semseg = np.zeros((20, 20), np.uint8)
    semseg[:10, :10] = 3  # 25 % of the image
    semseg[0, 0] = 5  # one pixel: 0.25 % < the presence threshold
    vec = presence_vector("nyud", semseg)
    assert vec.shape == (33,) and vec[2] == 1 and vec.sum() == 1
    vec = presence_vector("pascal", np.full((8, 8), 15, np.uint8))
    assert vec[13 + 14] == 1 and vec.sum() == 1


def test_pretrain_writes_a_file_that_pretrained_file_loads_and_caches_it(tmp_path: Path) -> None:
    settings = PretrainSettings(num_images=32, epochs=1, batch_size=16, size=(64, 64))
    logs: list[str] = []
    path = ensure_pretrained(settings, tmp_path, log=logs.append, workers=1)
    assert path.is_file() and settings.key() in path.name
    meta = pretrain_record(path)
    assert meta["settings"]["num_images"] == 32 and len(meta["history"]) == 1
    assert math.isfinite(meta["history"][0]["train_loss"]) and meta["wall_time_s"] > 0
    # exactly the format --model.pretrained_file loads: every backbone tensor equals the file's
    state = torch.load(path, weights_only=True)
    model = create_model("medusa", tasks=["semseg", "depth"], dataset="nyud", pretrained_file=str(path))
    body = model.backbone.body.state_dict()
    assert set(state) == set(body) and all(torch.equal(state[k], body[k]) for k in state)
    fresh = create_model("medusa", tasks=["semseg", "depth"], dataset="nyud").backbone.body.state_dict()
    assert not all(torch.equal(fresh[k], body[k]) for k in body if body[k].is_floating_point())
    # a second call reuses the cached file (no retraining)
    mtime = path.stat().st_mtime_ns
    assert ensure_pretrained(settings, tmp_path, log=logs.append) == path
    assert path.stat().st_mtime_ns == mtime and any("cached" in m for m in logs)
    # a truncated cache file is named before any run uses it (it was an 80-line traceback in the benchmark)
    path.write_bytes(path.read_bytes()[:1000])
    with pytest.raises(CheckpointError, match="cached pretrained backbone: delete it"):
        ensure_pretrained(settings, tmp_path, log=logs.append)


def test_an_interrupted_pretraining_resumes_to_the_same_weights(tmp_path: Path,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    # the per-epoch state file was read back as a Lightning checkpoint ("no 'state_dict' entry"): a killed
    # pretraining could not resume (and rendered its images again before failing)
    from medusa_mtl.engine import pretrain as pretrain_mod

    settings = PretrainSettings(num_images=32, epochs=2, batch_size=16, size=(64, 64))
    whole = ensure_pretrained(settings, tmp_path / "whole", log=lambda _m: None, workers=1)
    original = pretrain_mod._holdout_scores
    calls = {"n": 0}

    def killed_in_epoch_2(*args: Any) -> dict[str, float]:
        calls["n"] += 1
        if calls["n"] == 2:
            raise KeyboardInterrupt
        return original(*args)

    monkeypatch.setattr(pretrain_mod, "_holdout_scores", killed_in_epoch_2)
    with pytest.raises(KeyboardInterrupt):
        ensure_pretrained(settings, tmp_path / "resumed", log=lambda _m: None, workers=1)
    monkeypatch.setattr(pretrain_mod, "_holdout_scores", original)
    logs: list[str] = []
    resumed = ensure_pretrained(settings, tmp_path / "resumed", log=logs.append, workers=1)
    assert any("resuming after epoch 1" in m for m in logs), logs
    a, b = torch.load(whole, weights_only=True), torch.load(resumed, weights_only=True)
    assert set(a) == set(b) and all(torch.equal(a[k], b[k]) for k in a)
    assert [h["train_loss"] for h in pretrain_record(whole)["history"]] == \
        [h["train_loss"] for h in pretrain_record(resumed)["history"]]


def test_pretrain_settings_reject_bad_values() -> None:
    with pytest.raises(ConfigError, match="multiples of 32"):
        PretrainSettings.from_dict({"size": [60, 64]})
    with pytest.raises(ConfigError, match="unknown key"):
        PretrainSettings.from_dict({"epochz": 3})
    assert PretrainSettings.from_dict({"epochs": 2}).key() != PretrainSettings.from_dict({"epochs": 3}).key()


# -- trivial predictor -----------------------------------------------------------------------------------------
def _write_nyud(root: Path, ids_train: list[str], ids_val: list[str]) -> None:
    h, w = 32, 32
    for i, sid in enumerate(ids_train + ids_val):
        semseg = np.full((h, w), 2, np.uint8)  # class 1 after the -1 shift: the majority
        semseg[:, : w // 4] = 5 if i % 2 else 0  # class 4 on a quarter, or unlabelled
        depth = np.full((h, w), 1.0 + i, np.float32)
        depth[0] = 0.0  # invalid
        n = np.zeros((h, w, 3), np.float32)
        n[..., 2] = 1.0
        formats.write_nyud_sample(root, sid, np.zeros((h, w, 3), np.uint8), semseg, depth, n,
                                  np.zeros((h, w), np.float32))
    formats.write_nyud_splits(root, ids_train, ids_val)


def test_trivial_predictor_is_the_best_constant_scored_like_a_model(tmp_path: Path) -> None:
    train, val = ["a", "b", "c", "d"], ["e", "f"]
    _write_nyud(tmp_path, train, val)
    res = trivial_predictor("nyud", tmp_path, ["semseg", "depth"], size=(32, 32))
    assert res["semseg"]["constant"] == 1  # the majority class of the training labels
    # test: image "e" (index 4) has class 1 on 3/4 and unlabelled on 1/4; "f" has class 4 on a quarter.
    # Predicting class 1 everywhere: IoU(1) = 24*32*2 / (24*32*2 + 8*32) = 0.857, IoU(4) = 0 -> mIoU 42.86
    assert res["semseg"]["mIoU"] == pytest.approx(100 * (0.5 * (1536 / 1792)), abs=1e-6)
    assert res["depth"]["constant"] == pytest.approx(2.5)  # mean of 1, 2, 3, 4 over valid pixels
    # test depths 5 and 6 predicted as 2.5: RMSE = sqrt((2.5^2 + 3.5^2) / 2)
    assert res["depth"]["rmse"] == pytest.approx(math.sqrt((2.5**2 + 3.5**2) / 2), rel=1e-5)


# -- statistics and verdicts -------------------------------------------------------------------------------------
def test_diff_interval_matches_welch_and_handles_one_seed() -> None:
    from scipy import stats

    a, b = [1.0, 2.0, 4.0], [0.0, 0.5, 0.7]
    iv = diff_interval(a, b)
    res = stats.ttest_ind(a, b, equal_var=False)
    ci = res.confidence_interval(0.95)
    assert iv.diff == pytest.approx(np.mean(a) - np.mean(b))
    assert (iv.lo, iv.hi) == pytest.approx((ci.low, ci.high))
    one = diff_interval([3.0], b)
    assert one.lo is not None and "one seed" in one.note
    none = diff_interval([3.0], [1.0])
    assert none.lo is None and verdict_greater(none) == UNRESOLVED
    # seeds without any spread (e.g. one run counted twice) gave a point interval [d, d] and a firm verdict
    for flat in (diff_interval([0.3, 0.3], [0.1, 0.1]), diff_interval([0.3, 0.3, 0.3], [0.1])):
        assert flat.lo is None and verdict_greater(flat) == UNRESOLVED and "no seed-to-seed spread" in flat.note


def test_verdicts_follow_the_interval() -> None:
    high = diff_interval([5.0, 5.1, 4.9], [0.0, 0.1, -0.1])
    assert verdict_greater(high) == SUPPORTED and verdict_less(high) == CONTRADICTED
    overlap = diff_interval([1.0, -1.0, 0.5], [0.0, 0.2, -0.3])
    assert verdict_greater(overlap) == UNRESOLVED
    assert verdict_greater(high, margin=10.0) == CONTRADICTED


def test_learned_criteria() -> None:
    assert learned("semseg", 24.0, 3.0) == (True, 8.0)
    assert learned("semseg", 20.0, 3.0)[0] is False
    assert learned("depth", 0.5, 1.0)[0] is True and learned("depth", 0.6, 1.0)[0] is False


def test_learned_table_never_prints_a_miss_as_the_bar() -> None:
    from medusa_mtl.reports.benchmark import _checks_markdown

    checks = [{"model": "ST", "row": "nyud/single_task", "task": "depth", "metric": "rmse", "trivial": 1.152,
               "worst_ratio": 0.5039, "mean_ratio": 0.4997, "required": 0.5, "learned": False},
              {"model": "MT", "row": "nyud/mt_baseline", "task": "depth", "metric": "rmse", "trivial": 1.152,
               "worst_ratio": 0.4767, "required": 0.5, "learned": True},
              {"model": "X", "row": "ufl/x", "task": "human_parts", "metric": "mIoU", "trivial": 13.1,
               "worst_ratio": 2.0, "required": 2.0, "learned": True}]
    lines = _checks_markdown(checks).splitlines()[2:]
    assert "| 0.504x | 0.500x | ≤ 0.5x | **no** |" in lines[0]  # the bar is the worst seed's; the mean beside it
    assert "| 0.48x | — | ≤ 0.5x | yes |" in lines[1] and "| 2.00x | — | ≥ 2.0x | yes |" in lines[2]


def test_growth_labels_and_measured_param_scaling() -> None:
    assert growth([1, 2, 3, 4])["label"] == "linear"
    assert growth([1, 2, 4, 7])["label"] == "quadratic"  # second differences 1, 1
    assert growth([1, 2, 4, 8, 16])["label"] == "superlinear"  # growing, but not by a constant step
    assert growth([1, 2, 4])["label"] == "superlinear"  # one second difference: constant is not shown
    assert growth([1, 3, 4, 7])["label"] == "irregular"
    counts = param_counts(["medusa", "mtinet"], max_tasks=5)
    assert growth(counts["medusa"])["label"] == "linear"
    assert growth(counts["mtinet"])["label"] == "quadratic"


def test_check_claims_reports_what_the_numbers_say() -> None:
    tables = {
        "mtl": [{"key": "nyud/single_task", "delta_m": [0.5, -0.5, 0.0]},
                {"key": "nyud/mt_baseline", "delta_m": [-5.0, -6.0, -5.5]},
                {"key": "nyud/mtinet_ne", "delta_m": [3.0, 3.2, 2.8]},
                {"key": "nyud/medusa_ne", "delta_m": [-3.0, -3.1, -2.9]}],
        "ufl": [{"key": "ufl/mt_baseline", "model": "MT baseline", "pascal_delta_m": [-9.0, -8.0, -10.0]},
                {"key": "ufl/medusa", "model": "Medusa", "pascal_delta_m": [1.0, 0.0, 2.0]}],
    }
    claims = {c["claim"].split(" ")[0] + str(i): c for i, c in enumerate(check_claims(tables))}
    verdicts = [c["verdict"] for c in claims.values()]
    assert verdicts == [SUPPORTED, CONTRADICTED, SUPPORTED]


def test_pretrain_command_prints_the_cached_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from medusa_mtl.cli import main as cli_main

    args = ["pretrain", "--num-images", "32", "--epochs", "1", "--batch-size", "16", "--cache-dir", str(tmp_path)]
    assert cli_main(args) == 0
    path = Path(capsys.readouterr().out.strip().splitlines()[-1])
    assert path.is_file() and path.parent == tmp_path and path.with_suffix(".json").is_file()
    assert cli_main([*args[:-2], "--cache-dir", str(tmp_path), "--size", "60x64"]) == 2  # clear error, no traceback
    assert "multiples of 32" in capsys.readouterr().err


def test_benchmark_predictions_use_the_first_seed_of_medusa(nyud_root: Path, tmp_path: Path,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    from medusa_mtl.reports import benchmark, predict

    calls: list[tuple[str, list[Path]]] = []

    def fake(ckpt: str, images: list[Path], out: Path, relative_to: Path) -> list[str]:
        calls.append((ckpt, images))
        return ["predictions/x.png"]

    monkeypatch.setattr(predict, "predict_folder_to_panels", fake)
    results = {"nyud/medusa_ne/s1": {"key": "nyud/medusa_ne/s1", "best_ckpt": "b.ckpt"},
               "nyud/medusa_ne/s2": {"key": "nyud/medusa_ne/s2", "best_ckpt": "c.ckpt"}}
    profile = {"seed": 0, "seeds": [1, 2], "predict_images": 1}
    out = benchmark._predictions(tmp_path, results, {"nyud": nyud_root}, profile, lambda m: None)
    assert out == ["predictions/x.png"] and calls[0][0] == "b.ckpt" and len(calls[0][1]) == 1


def test_benchmark_run_resumes_only_checkpoints_of_its_own_settings(tmp_path: Path) -> None:
    """A benchmark run resumes an interrupted run from its last.ckpt, but checkpoints that another setting left
    in the same folder (here 1 epoch, now 2) are not resumed: the run starts afresh and equals a fresh run."""
    from medusa_mtl.reports.benchmark import Run, dataset_root, ensure_dataset, execute_run

    spec = {"num_train": 8, "num_val": 2, "size": [64, 64], "scales": [1.0]}
    root = dataset_root(tmp_path / "data", "nyud", spec, 0)
    ensure_dataset(root, "nyud", spec, 0, lambda m: None)

    def run(out: str, epochs: int) -> tuple[dict, list[str]]:
        profile = {"seed": 0, "data": {"nyud": spec}, "hrnet_form": "timm",
                   "loader": {"batch_size": 4, "num_workers": 0, "val_fraction": 0.25},
                   "mtl": {"epochs": epochs, "optimizer": "adam", "lr": 1e-3, "weight_decay": 1e-4}}
        logs: list[str] = []
        record = execute_run(Run("nyud/mt_baseline/s0", "mtl", "mt_baseline", "MT baseline", "HRHead", "nyud",
                                 ["semseg", "depth"], base="nyud/mt_baseline"),
                             profile, {"nyud": root}, tmp_path / out, {}, logs.append, progress=False)
        return record, logs

    run("a", 1)
    changed, logs = run("a", 2)
    assert any("other settings; starting afresh" in m for m in logs), logs
    fresh, logs = run("b", 2)
    assert not any("afresh" in m for m in logs)
    same = lambda a, b: json.dumps(a, sort_keys=True) == json.dumps(b, sort_keys=True)  # noqa: E731  (NaN == NaN)
    assert same(changed["test"], fresh["test"]) and changed["best_epoch"] == fresh["best_epoch"]
    # an interrupted run of the same settings (checkpoints, no result yet) is resumed, not restarted
    run_dir = tmp_path / "b" / "runs" / "nyud" / "mt_baseline" / "s0"
    (run_dir / "result.json").unlink()
    kept = json.loads((run_dir / "checkpoints" / "train_time.json").read_text())["train_time_s"]
    resumed, logs = run("b", 2)
    assert not any("afresh" in m for m in logs) and same(resumed["test"], fresh["test"])
    # its train time is that of all its epochs, not only of the resumed part (here: nothing left to train): at
    # least the epochs' time kept at the last epoch's end (not a ratio of the fresh run's total, which adds the
    # last checkpoint's writing: that failed on a loaded machine, 1.3 s against 2.0 s)
    assert resumed["train_time_s"] >= kept > 0, (resumed["train_time_s"], kept)


def test_a_groups_batch_size_trains_its_runs_with_that_batch(tmp_path: Path) -> None:
    """``mtl.batch_size`` overrides ``loader.batch_size`` for that group's runs only (optimizer steps follow it, the
    record names it), and it is in their fingerprints; the groups without one keep the loader's batch."""
    from medusa_mtl.engine.checkpoints import load_checkpoint
    from medusa_mtl.reports.benchmark import Run, _fingerprint, dataset_root, ensure_dataset, execute_run

    spec = {"num_train": 8, "num_val": 2, "size": [64, 64], "scales": [1.0]}
    root = dataset_root(tmp_path / "data", "nyud", spec, 0)
    ensure_dataset(root, "nyud", spec, 0, lambda m: None)
    optim = {"epochs": 1, "optimizer": "adam", "lr": 1e-3, "weight_decay": 1e-4}
    profile = {"seed": 0, "data": {"nyud": spec}, "hrnet_form": "timm",
               "loader": {"batch_size": 2, "num_workers": 0, "val_fraction": 0.25},  # 6 train images
               "mtl": {**optim, "batch_size": 3}}
    run = Run("nyud/mt_baseline/s0", "mtl", "mt_baseline", "MT baseline", "HRHead", "nyud", ["semseg", "depth"],
              base="nyud/mt_baseline")
    record = execute_run(run, profile, {"nyud": root}, tmp_path / "out", {}, lambda m: None, progress=False)
    assert record["batch_size"] == 3 and "batch_size" not in record["optim"]
    assert load_checkpoint(Path(record["best_ckpt"]))["global_step"] == 2  # 6 images in batches of 3, not 2
    plain = {**profile, "mtl": optim}
    assert _fingerprint(run, profile, None) != _fingerprint(run, plain, None)
    assert _fingerprint(run, plain, None) != _fingerprint(run, {**plain, "mtl": {**optim, "batch_size": 4}}, None)
    assert _fingerprint(run, plain, None) == _fingerprint(run, {**plain, "mtl": {**optim, "batch_size": 2}}, None)


def test_validating_the_last_epoch_only_trains_the_same_weights_and_resumes(tmp_path: Path,
                                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    """``validate: last_epoch`` skips the held-out passes of the other epochs: the weights after the last epoch are
    those of a run validated every epoch (validation draws nothing from the training's random streams), its
    best.ckpt is the last epoch's, and last.ckpt is still written after every epoch, so that a run interrupted
    before its last epoch resumes (not from scratch) to the same weights."""
    from medusa_mtl.engine.checkpoints import checkpoint_epoch, load_checkpoint
    from medusa_mtl.engine.training import EpochSummary
    from medusa_mtl.reports.benchmark import Run, dataset_root, ensure_dataset, execute_run

    spec = {"num_train": 8, "num_val": 2, "size": [64, 64], "scales": [1.0]}
    root = dataset_root(tmp_path / "data", "nyud", spec, 0)
    ensure_dataset(root, "nyud", spec, 0, lambda m: None)
    run = Run("nyud/mt_baseline/s0", "mtl", "mt_baseline", "MT baseline", "HRHead", "nyud", ["semseg", "depth"],
              base="nyud/mt_baseline")

    def train(out: str, validate: str) -> dict:
        profile = {"seed": 0, "data": {"nyud": spec}, "hrnet_form": "timm", "validate": validate,
                   "loader": {"batch_size": 4, "num_workers": 0, "val_fraction": 0.25},
                   "mtl": {"epochs": 3, "optimizer": "adam", "lr": 1e-3, "weight_decay": 1e-4}}
        return execute_run(run, profile, {"nyud": root}, tmp_path / out, {}, lambda m: None, progress=False)

    def weights(out: str) -> dict:
        return load_checkpoint(tmp_path / out / "runs" / run.key / "checkpoints" / "last.ckpt")["state_dict"]

    every = train("every", "every_epoch")
    last = train("last", "last_epoch")
    a, b = weights("every"), weights("last")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert checkpoint_epoch(Path(last["best_ckpt"])) == 2
    if every["best_epoch"] == 2:  # the same checkpoint scored: the same numbers
        assert json.dumps(every["test"], sort_keys=True) == json.dumps(last["test"], sort_keys=True)

    class Interrupted(Exception):
        pass

    def stop_at_second_epoch(self: Any, trainer: Any, pl_module: Any) -> None:
        if trainer.current_epoch == 1:
            raise Interrupted

    with monkeypatch.context() as m:
        m.setattr(EpochSummary, "on_train_epoch_start", stop_at_second_epoch)
        with pytest.raises(Interrupted):
            train("cut", "last_epoch")
    ckpts = tmp_path / "cut" / "runs" / run.key / "checkpoints"
    assert checkpoint_epoch(ckpts / "last.ckpt") == 0 and not (ckpts / "best.ckpt").exists()
    train("cut", "last_epoch")
    c = weights("cut")
    assert all(torch.equal(b[k], c[k]) for k in b)


def test_the_report_setup_names_flip_averaging_and_last_epoch_checkpoints(tmp_path: Path) -> None:
    """A profile's test_flip and validate: last_epoch change what the numbers are: the report's setup says so.
    The committed docs/RESULTS.md shows the wording of its own profile; the same results rendered with the other
    setting (one render: ~15 s) show the other wording."""
    from medusa_mtl.reports.benchmark import rerender_report

    docs = Path(__file__).parents[1] / "docs"
    saved = json.loads((docs / "results" / "standard.json").read_text())
    settings = saved["profile_settings"]
    committed_flip = bool(settings.get("test_flip"))
    assert committed_flip == (settings.get("validate") == "last_epoch")  # the committed run has both or neither
    if committed_flip:
        saved["profile_settings"] = {k: v for k, v in settings.items() if k not in ("test_flip", "validate")}
    else:
        settings.update(test_flip=True, validate="last_epoch")
    (tmp_path / "results.json").write_text(json.dumps(saved))
    other = rerender_report(tmp_path).read_text()
    committed = (docs / "RESULTS.md").read_text()
    flip, plain = (committed, other) if committed_flip else (other, committed)
    assert "Checkpoints are selected on a held-out 10% of train" in plain
    assert "mirror image" not in plain and "last_epoch" not in plain
    assert "Checkpoints are selected" not in flip
    assert "Each run's checkpoint is its last epoch's: the held-out 10% of train" in flip
    assert "is scored after the last epoch only (the profile's validate: last_epoch)" in flip
    assert "mean of its outputs for each image and for its mirror image" in flip


def test_the_report_setup_names_the_nhwc_layout(tmp_path: Path) -> None:
    """A profile's channels_last changes float rounding (not the computation): the report's setup says so."""
    from medusa_mtl.reports.benchmark import rerender_report

    docs = Path(__file__).parents[1] / "docs"
    saved = json.loads((docs / "results" / "standard.json").read_text())
    wording = "trains and is scored in the NHWC memory format (the profile's channels_last"
    assert (wording in (docs / "RESULTS.md").read_text()) == bool(saved["profile_settings"].get("channels_last"))
    for on in (True, False):
        saved["profile_settings"]["channels_last"] = on
        (tmp_path / "results.json").write_text(json.dumps(saved))
        assert (wording in rerender_report(tmp_path).read_text()) == on


def test_the_report_setup_names_each_groups_training_batch(tmp_path: Path) -> None:
    """One batch for every group reads "Batch N."; a group's own batch_size is named per group."""
    from medusa_mtl.reports.benchmark import rerender_report

    docs = Path(__file__).parents[1] / "docs"
    saved = json.loads((docs / "results" / "standard.json").read_text())
    settings = saved["profile_settings"]
    for group in ("mtl", "st_pascal", "ufl"):
        settings[group].pop("batch_size", None)
    settings["loader"]["batch_size"] = 8
    (tmp_path / "results.json").write_text(json.dumps(saved))
    text = rerender_report(tmp_path).read_text()
    assert " Batch 8. " in text and "Training batch" not in text
    settings["mtl"]["batch_size"] = 16
    settings["st_pascal"]["batch_size"] = 8  # the loader's, set explicitly: the same as leaving it out
    (tmp_path / "results.json").write_text(json.dumps(saved))
    text = rerender_report(tmp_path).read_text()
    assert " Training batch MTL 16, PASCAL ST 8, UFL 8. " in text and " Batch 8. " not in text


@pytest.mark.parametrize(("edit", "message"), [
    (lambda p: "", "expected a mapping of settings"),  # an empty file
    (lambda p: p["mtl"].update(batch_size=0), "mtl.batch_size must be an integer >= 1, got 0"),
    (lambda p: p["data"].pop("pascal"), "data.pascal must be a mapping, got None"),
    (lambda p: p["data"]["nyud"].update(num_train="eight"), "data.nyud.num_train must be an integer >= 1, got 'eight'"),
    (lambda p: p["data"]["nyud"].update(size="64x64"), "data.nyud.size must be [height, width], positive multiples"),
    (lambda p: p["loader"].pop("val_fraction"), "loader.val_fraction must be a number strictly between 0 and 1"),
    (lambda p: p["mtl"].update(epochs="1x"), "mtl.epochs must be an integer >= 1, got '1x'"),
    (lambda p: p["ufl"].update(optimizer="adamw"), "ufl.optimizer must be 'adam' or 'sgd', got 'adamw'"),
    (lambda p: p.update(skip=["nyud/mt_baselin"]), "skip must be a list of row names (nyud/medusa"),
    (lambda p: p.update(one_seed=["bogus/row"]), "one_seed must be a list of row names"),
    (lambda p: p.update(seeds=[0, 0]), "'seeds' repeats a seed ([0, 0])"),  # one run counted as two seeds
    # misspelt keys were read by nothing: the defaults ran, and the report named the profile's settings
    (lambda p: p.update(bn_momentun=0.1), "unknown key(s) ['bn_momentun'] in the profile"),
    (lambda p: p["data"]["nyud"].update(scale=[1.0]), "unknown key(s) ['scale'] in data.nyud"),
    (lambda p: p["data"]["pascal"].update(rotation=-5), "data.pascal.rotation must be a number of degrees in [0, 180]"),
    (lambda p: p["data"]["pascal"].update(rotation="none"), "data.pascal.rotation must be a number of degrees"),
    (lambda p: p["loader"].update(chache=True), "unknown key(s) ['chache'] in loader"),
    (lambda p: p.update(test_flip="yes"), "test_flip must be true or false, got 'yes'"),
    (lambda p: p.update(channels_last=1), "channels_last must be true or false, got 1"),
    (lambda p: p.update(validate="last"), "validate must be every_epoch or last_epoch, got 'last'"),
    (lambda p: p["st_pascal"].update(momentun=0.5), "unknown key(s) ['momentun'] in st_pascal"),
    (lambda p: p["mtl"].update(backbone_lr_scale=0), "mtl.backbone_lr_scale must be a number > 0, got 0"),
    (lambda p: p["ufl"].update(backbone_lr_scale=2.0), "unknown key(s) ['backbone_lr_scale'] in ufl"),
    (lambda p: p["ufl"].update(warmup_epochs=-1), "ufl.warmup_epochs must be a number >= 0, got -1"),
])
def test_profile_mistakes_are_named_before_any_work(tmp_path: Path, edit: Any, message: str) -> None:
    """Each was a TypeError / KeyError traceback (some after pretraining and data generation), a mangled size,
    or (skip / one_seed typos) silently ignored: hours of unwanted training on the larger profiles."""
    import yaml

    from medusa_mtl.reports import benchmark

    profile = benchmark.load_profile("quick")
    text = edit(profile)
    path = tmp_path / "mine.yaml"
    path.write_text(text if isinstance(text, str) else yaml.safe_dump(profile))
    with pytest.raises(ConfigError, match=re.escape(message)):
        benchmark.load_profile(str(path))


@pytest.mark.parametrize(("task", "ratio", "marker"), [
    ("depth", 35.3, " (worse than trivial)"),  # was "(trivial level)": RMSE 35 times the constant's
    ("human_parts", 0.23, " (worse than trivial)"),
    ("depth", 0.95, " (trivial level)"), ("depth", 1.05, " (trivial level)"), ("sal", 1.05, " (trivial level)"),
    ("depth", 0.6, " (below target)"), ("semseg", 5.0, " (below target)"),
])
def test_miss_markers_say_where_the_number_is(task: str, ratio: float, marker: str) -> None:
    from medusa_mtl.reports.benchmark import _miss_marker

    assert _miss_marker(task, ratio) == marker


def test_a_ufl_run_is_not_reused_after_its_source_was_retrained(tmp_path: Path) -> None:
    # a UFL run's fingerprint held the UFL settings only: after the NYUD backbone was retrained with other
    # settings, the UFL result trained on the old backbone was reused ("reusing .../result.json")
    from medusa_mtl.reports.benchmark import UFL_TASKS, Run, dataset_root, ensure_dataset, execute_run

    spec = {"num_train": 8, "num_val": 2, "size": [64, 64], "scales": [1.0]}
    roots = {ds: dataset_root(tmp_path / "data", ds, spec, 0) for ds in ("nyud", "pascal")}
    for ds, root in roots.items():
        ensure_dataset(root, ds, spec, 0, lambda m: None)
    source_run = Run("nyud/mt_baseline/s0", "mtl", "mt_baseline", "MT baseline", "HRHead", "nyud",
                     ["semseg", "depth"], base="nyud/mt_baseline")
    ufl_run = Run("ufl/mt_baseline/s0", "ufl", "mt_baseline", "MT baseline", "HRHead", "pascal", list(UFL_TASKS),
                  source="nyud/mt_baseline/s0", base="ufl/mt_baseline")

    def both(mtl_epochs: int) -> list[str]:
        profile = {"seed": 0, "data": {"nyud": spec, "pascal": spec}, "hrnet_form": "timm",
                   "loader": {"batch_size": 4, "num_workers": 0, "val_fraction": 0.25},
                   "mtl": {"epochs": mtl_epochs, "optimizer": "adam", "lr": 1e-3, "weight_decay": 1e-4},
                   "ufl": {"epochs": 1, "optimizer": "adam", "lr": 1e-3, "weight_decay": 1e-4}}
        logs: list[str] = []
        results: dict = {}
        for run in (source_run, ufl_run):
            results[run.key] = execute_run(run, profile, roots, tmp_path / "out", results, logs.append,
                                           progress=False)
        return logs

    both(1)
    assert any("ufl/mt_baseline/s0: reusing" in m for m in both(1))  # nothing changed: reused
    logs = both(2)  # the source is retrained: its UFL run must be too
    assert not any("reusing" in m for m in logs), logs


def test_ufl_claim_compares_medusa_with_the_single_task_baseline_too() -> None:
    # The UFL table's "ST baseline" row (PASCAL networks trained fully, key "single_task") is one of the
    # baselines of "Medusa's UFL Δm is above every baseline's": a Medusa UFL below it contradicts the claim even
    # when Medusa beats every other method's UFL row.
    tables = {"mtl": [],
              "ufl": [{"key": "single_task", "model": "ST baseline", "pascal_delta_m": [0.5, -0.5, 0.0]},
                      {"key": "ufl/mt_baseline", "model": "MT baseline", "pascal_delta_m": [-9.0, -8.0, -10.0]},
                      {"key": "ufl/medusa", "model": "Medusa", "pascal_delta_m": [-3.0, -3.1, -2.9]}]}
    (claim,) = check_claims(tables)
    assert claim["verdict"] == CONTRADICTED
    assert "vs ST baseline: -3.00" in claim["evidence"] and set(claim["comparisons"]) == {"single_task",
                                                                                          "ufl/mt_baseline"}


def _fake_results(runs: list[Any], metrics: Any) -> dict[str, dict[str, Any]]:
    """Result records of ``runs`` as ``execute_run`` writes them, with ``metrics(run)`` as the test metrics."""
    return {r.key: {"test": metrics(r), "params": 1, "trainable_params": 1, "train_time_s": 1.0} for r in runs}


def _fake_metrics(run: Any) -> dict[str, dict[str, float]]:
    if run.dataset == "nyud":
        return {"semseg": {"mIoU": 40.0 + 0.5 * run.seed}, "depth": {"rmse": 0.6 - 0.002 * run.seed}}
    return {"human_parts": {"mIoU": 30.0 + 0.3 * run.seed}, "sal": {"mIoU": 40.0 + 0.5 * run.seed}}


def test_results_json_runs_mark_ufl_runs_of_an_ne_backbone_as_n_e() -> None:
    from medusa_mtl.reports.benchmark import build_tables, plan_runs

    runs = plan_runs(["single_task", "mt_baseline", "medusa"], {"seeds": [0, 1], "seed": 0})
    entries = {e["name"]: e for e in build_tables(_fake_results(runs, _fake_metrics), runs)["runs"]}
    # issue #10 item 5: "n_e" says whether normals and edges were trained; Medusa's UFL heads sit on its N+E backbone
    assert entries["ufl/medusa/s1"]["source"] == "nyud/medusa_ne/s1" and entries["ufl/medusa/s1"]["n_e"] is True
    assert entries["ufl/mt_baseline/s0"]["n_e"] is False and entries["nyud/medusa_ne/s0"]["n_e"] is True
    assert entries["nyud/medusa/s0"]["n_e"] is False and entries["pascal/single_task/s0"]["n_e"] is False


def test_results_json_runs_say_a_ufl_run_backbone_is_its_source_runs_pretrained_one() -> None:
    # a UFL run loads its source checkpoint (no pretrained file of its own), but its frozen backbone is the source
    # run's, which started from the shared pretrained backbone: the entry said "pretrained": false
    from dataclasses import replace

    from medusa_mtl.reports.benchmark import build_tables, plan_runs

    runs = plan_runs(["single_task", "mt_baseline", "medusa"], {"seeds": [0, 1], "seed": 0})
    runs = [replace(r, pretrained=False) if r.key == "nyud/medusa_ne/s1" else r for r in runs]
    entries = {e["name"]: e for e in build_tables(_fake_results(runs, _fake_metrics), runs)["runs"]}
    assert entries["ufl/medusa/s0"]["source"] == "nyud/medusa_ne/s0" and entries["ufl/medusa/s0"]["pretrained"] is True
    assert entries["ufl/mt_baseline/s1"]["pretrained"] is True and entries["nyud/medusa_ne/s0"]["pretrained"] is True
    # and says so for a source trained from scratch
    assert entries["ufl/medusa/s1"]["pretrained"] is False and entries["nyud/medusa_ne/s1"]["pretrained"] is False


def test_results_json_pretrained_says_what_the_run_started_from() -> None:
    # a profile without `pretrain:` has no file to start from: its runs' records carry pretrained_file None, and
    # the entries said "pretrained": true (what each run asks for when the profile has one)
    from medusa_mtl.reports.benchmark import build_tables, plan_runs

    runs = plan_runs(["single_task", "mt_baseline"], {"seeds": [0], "seed": 0})
    results = _fake_results(runs, _fake_metrics)
    for rec in results.values():
        rec["pretrained_file"] = None
    entries = {e["name"]: e for e in build_tables(results, runs)["runs"]}
    assert entries["nyud/mt_baseline/s0"]["pretrained"] is False
    assert entries["ufl/mt_baseline/s0"]["pretrained"] is False
    results["nyud/mt_baseline/s0"]["pretrained_file"] = "data/pretrained/x.pth"
    entries = {e["name"]: e for e in build_tables(results, runs)["runs"]}
    assert entries["nyud/mt_baseline/s0"]["pretrained"] is True and entries["ufl/mt_baseline/s0"]["pretrained"] is True


def test_the_seed_noise_of_every_multi_seed_row_is_checked_against_two_points() -> None:
    import statistics

    from medusa_mtl.reports.benchmark import _noise_markdown, build_tables, noise_checks, plan_runs

    runs = plan_runs(["single_task", "mt_baseline", "mtan"],
                     {"seeds": [0, 1, 2], "seed": 0, "one_seed": ["nyud/mtan_ne"]})

    def metrics(run: Any) -> dict[str, dict[str, float]]:  # the MT baseline's UFL heads: 6 mIoU points per seed
        m = _fake_metrics(run)
        if run.base == "ufl/mt_baseline":
            m["human_parts"]["mIoU"] = 30.0 + 6 * run.seed
        return m

    tables = build_tables(_fake_results(runs, metrics), runs)
    checks = {c["row"]: c for c in noise_checks(tables)}
    # issue #10 item 3; one-seed rows (MTAN N+E and its UFL row) have no spread to check
    assert set(checks) == {"nyud/single_task", "nyud/mt_baseline", "nyud/mtan", "single_task", "ufl/mt_baseline"}
    rows = {r["key"]: r for r in tables["mtl"]}
    ufl = {r["key"]: r for r in tables["ufl"]}
    assert checks["nyud/mt_baseline"]["delta_m_std"] == pytest.approx(statistics.stdev(rows["nyud/mt_baseline"]
                                                                                         ["delta_m"]))
    assert checks["ufl/mt_baseline"]["delta_m_std"] == pytest.approx(statistics.stdev(ufl["ufl/mt_baseline"]
                                                                                        ["pascal_delta_m"]))
    assert checks["ufl/mt_baseline"]["dataset"] == "pascal" and checks["ufl/mt_baseline"]["ok"] is False
    assert checks["nyud/mt_baseline"]["ok"] is True and checks["nyud/mt_baseline"]["seeds"] == 3
    text = _noise_markdown(list(checks.values()))
    assert "| MT baseline (`ufl/mt_baseline`) | PASCAL | 3 |" in text and "| ≤ 2 | **no** |" in text


def test_report_numbers_have_no_negative_zero_and_scratch_rows_name_their_own_seed() -> None:
    from medusa_mtl.reports.benchmark import _fmt, _scratch_markdown

    assert _fmt(-0.0004, 2, True) == "+0.00" and _fmt(-0.0004) == "0.00" and _fmt(-0.006, 2, True) == "-0.01"
    row = {"model": "mt_baseline", "ne": False, "semseg_miou": [40.0, 41.0], "depth_rmse": [0.6, 0.61],
           "delta_m": [1.0, 2.0]}
    tables = {"mtl": [dict(row, key="nyud/mt_baseline", seeds=[1, 2])],
              "scratch": [dict(row, key="nyud/mt_baseline_scratch", seeds=[0], delta_m=[-9.0])]}
    lines = _scratch_markdown(tables).splitlines()[2:]
    # the scratch seed (0) is not among the pretrained row's seeds: each line names the seed it shows
    assert "seed 1 | pretrained backbone" in lines[0] and "seed 0 | from scratch" in lines[1]


def test_learned_check_records_the_worst_seed_and_the_mean() -> None:
    from medusa_mtl.reports.benchmark import learned_flags

    tables = {"mtl": [{"key": "nyud/single_task", "model": "ST", "semseg_miou": [30.0, 31.0],
                       "depth_rmse": [0.58, 0.56]}], "ufl": []}
    trivial = {"nyud": {"semseg": {"mIoU": 3.0}, "depth": {"rmse": 1.14}}}
    flags, checks = learned_flags(tables, trivial)
    depth = next(c for c in checks if c["task"] == "depth")
    assert depth["worst_ratio"] == pytest.approx(0.58 / 1.14) and depth["mean_ratio"] == pytest.approx(0.57 / 1.14)
    assert depth["learned"] is False and flags["mtl"]["nyud/single_task"]["depth"] == " (below target)"


def test_plan_lists_the_runs_and_what_a_run_would_reuse(tmp_path: Path, capsys: Any) -> None:
    """``medusa benchmark --plan`` trains, generates and pretrains nothing; a run it calls reused is one
    :func:`execute_run` returns from its result.json (same settings fingerprint), for NYUD and UFL runs alike."""
    import argparse

    from medusa_mtl.engine.pretrain import cached_path
    from medusa_mtl.reports import benchmark

    profile = benchmark.load_profile("quick")
    cache, out = tmp_path / "pretrained", tmp_path / "out"
    methods = ["single_task", "medusa"]
    fingerprints = benchmark.plan_fingerprints(profile, methods, cache, jobs=1)
    pre = str(cached_path(benchmark._pretrain_settings(profile, cache), cache))
    runs = {run.key: run for run in benchmark.plan_runs(methods, profile)}
    results: dict[str, Any] = {}
    for key in ("nyud/medusa_ne/s0", "ufl/medusa/s0"):
        record = {"key": key, "fingerprint": fingerprints[key], "test": {}}
        path = out / "runs" / key / "result.json"
        path.parent.mkdir(parents=True)
        path.write_text(json.dumps(record))
        # another fingerprint would train (and fail here: no dataset roots are given)
        assert benchmark.execute_run(runs[key], profile, {}, out, results, lambda m: None, progress=False,
                                     pretrained_file=pre) == record
        results[key] = record
    half = out / "runs" / "nyud" / "single_task" / "s0"
    (half / "checkpoints").mkdir(parents=True)
    (half / "checkpoints" / "last.ckpt").write_bytes(b"")
    (half / "fingerprint").write_text(fingerprints["nyud/single_task/s0"] + "\n")
    lines = benchmark.plan_lines(profile, methods, out, cache, jobs=1)
    by_key = {line.split()[0]: line for line in lines if line.startswith("  ")}
    assert set(by_key) == set(runs)
    assert "reused" in by_key["nyud/medusa_ne/s0"] and "reused" in by_key["ufl/medusa/s0"]
    assert "resumes" in by_key["nyud/single_task/s0"] and "to train" in by_key["nyud/medusa/s0"]
    assert "5 epochs x   18 steps of  8 =     90 steps" in by_key["nyud/medusa/s0"]  # 160 - 16 held out, batch 8
    assert lines[-1].startswith(f"{len(runs)} runs: 2 reused, 1 resumed, {len(runs) - 3} to train")
    # other settings: nothing is reused (a UFL run's fingerprint follows its source's)
    profile["mtl"]["lr"] = 2.0e-3
    lines = benchmark.plan_lines(profile, methods, out, cache, jobs=1)
    assert lines[-1].startswith(f"{len(runs)} runs: 0 reused, 0 resumed, {len(runs)} to train")
    # a group's own training batch: its runs' steps follow it, the other groups keep the loader's
    profile["mtl"]["batch_size"] = 16
    by_key = {line.split()[0]: line for line in benchmark.plan_lines(profile, methods, out, cache, jobs=1)
              if line.startswith("  ")}
    assert "5 epochs x    9 steps of 16 =     45 steps" in by_key["nyud/medusa/s0"]
    assert " steps of  8 = " in by_key["ufl/medusa/s0"]
    # the command: nothing generated, nothing pretrained
    parser = argparse.ArgumentParser()
    benchmark.add_benchmark_arguments(parser)
    args = parser.parse_args(["--profile", "quick", "--plan", "--models", "medusa", "--jobs", "1", "--out", str(out),
                              "--data-dir", str(tmp_path / "data"), "--pretrain-cache", str(cache)])
    assert benchmark.run_benchmark(args) == 0
    printed = capsys.readouterr().out
    assert "absent: pretrained first" in printed and "ufl/medusa/s0" in printed and "2 reused" in printed
    assert not (tmp_path / "data").exists() and not cache.exists()


def test_a_null_metric_in_results_json_reads_as_the_nan_it_was_written_from() -> None:
    # write_json stores an undefined (NaN) metric as null; the tables crashed on it (float(None)), so neither
    # `--report-only` nor a benchmark reusing such a run's result.json could write its report. Read back, the
    # run must give what the live NaN gave: an undefined Δm that keeps its row's statistics undefined (a claim
    # on it unresolved), and a single-task reference with an undefined seed makes every NYUD Δm undefined.
    from medusa_mtl.reports.benchmark import _fmt_ms, build_tables, plan_runs

    runs = plan_runs(["single_task", "mt_baseline"], {"seeds": [0, 1, 2], "seed": 0})

    def tables_with(key: str, value: float | None) -> dict[str, Any]:
        results = _fake_results(runs, _fake_metrics)
        results[key]["test"]["depth"]["rmse"] = value
        return build_tables(results, runs)

    live, reread = (tables_with("nyud/mt_baseline/s1", v) for v in (float("nan"), None))
    for tables in (live, reread):
        row = {r["key"]: r for r in tables["mtl"]}["nyud/mt_baseline"]
        assert math.isnan(row["delta_m"][1]) and _fmt_ms(row["delta_m"], 2, True) == "+nan ± nan"
        (claim,) = check_claims(tables)
        assert claim["verdict"] == UNRESOLVED
    live, reread = (tables_with("nyud/single_task/s1", v) for v in (float("nan"), None))
    for tables in (live, reread):
        assert all(dm is None for r in tables["mtl"] for dm in r["delta_m"]) and not check_claims(tables)


def test_a_seed_with_an_undefined_metric_is_not_learned_live_or_read_back() -> None:
    # A diverged seed's depth RMSE is NaN (null once in results.json). Live, the check said "no" but printed a
    # worst ratio that depended on where the NaN sat (max over NaN: here 0.45x, which meets the bar) and marked
    # it "below target"; read back, the seed was skipped and the row was "learned". Each seed must clear the bar.
    from medusa_mtl.reports.benchmark import _checks_markdown, learned_flags

    trivial = {"nyud": {"semseg": {"mIoU": 3.0}, "depth": {"rmse": 1.0}}}
    for depth in ([0.4, float("nan"), 0.45], [float("nan"), 0.4, 0.45], [0.4, None, 0.45]):
        tables = {"mtl": [{"key": "nyud/mt_baseline", "model": "MT", "semseg_miou": [30.0] * 3, "depth_rmse": depth}],
                  "ufl": []}
        flags, checks = learned_flags(tables, trivial)
        check = next(c for c in checks if c["task"] == "depth")
        assert check["learned"] is False and math.isnan(check["worst_ratio"]), depth
        assert flags["mtl"]["nyud/mt_baseline"]["depth"] == " (undefined on a seed)"
        assert "| undefined | undefined | ≤ 0.5x | **no** |" in _checks_markdown(checks)
