"""End-to-end training, UFL, evaluation and the benchmark on tiny synthetic data (real file formats)."""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from lightning.pytorch.callbacks import ModelCheckpoint

from cli_helpers import run_cli
from medusa_mtl import Predictor
from medusa_mtl.cli import main as cli_main
from medusa_mtl.data.synthetic import generate
from medusa_mtl.engine.evaluation import evaluate_module, load_module
from medusa_mtl.engine.training import (
    MultiTaskDataModule,
    MultiTaskModule,
    complete_trainer_config,
    default_checkpoint_dir,
    last_checkpoint_file,
    make_trainer,
)
from medusa_mtl.engine.ufl import ufl_module_from_checkpoint
from medusa_mtl.errors import ConfigError
from medusa_mtl.metrics import ConfusionMIoU, DepthMetric
from medusa_mtl.models import list_models
from medusa_mtl.reports.benchmark import rerender_report

NE = ["semseg", "depth", "normals", "edge"]


@pytest.fixture(scope="module")
def synth(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    base = tmp_path_factory.mktemp("synth")
    roots = {"nyud": base / "NYUD_MT", "pascal": base / "PASCAL_MT"}
    generate("nyud", roots["nyud"], num_train=8, num_val=3, size=(64, 64), seed=1, workers=1)
    generate("pascal", roots["pascal"], num_train=8, num_val=3, size=(64, 64), seed=1, workers=1)
    return roots


def _fit(module: MultiTaskModule, root: Path, out: Path, dataset: str = "nyud", epochs: int = 1) -> Path:
    data = MultiTaskDataModule(dataset=dataset, root=str(root), size=(64, 64), batch_size=2, num_workers=0,
                               val_fraction=0.25)
    trainer = make_trainer(max_epochs=epochs, default_root_dir=str(out), enable_progress_bar=False,
                           enable_model_summary=False, limit_train_batches=2, num_sanity_val_steps=0,
                           log_every_n_steps=1)
    trainer.fit(module, data)
    return out / "checkpoints"


@pytest.mark.parametrize("arch", list_models())
def test_fit_every_model(arch: str, synth: dict[str, Path], tmp_path: Path) -> None:
    torch.manual_seed(0)
    module = MultiTaskModule(arch=arch, tasks="semseg,depth", aux_tasks=NE, dataset="nyud", lr=1e-3)
    before = {k: v.clone() for k, v in module.state_dict().items()}
    ckpts = _fit(module, synth["nyud"], tmp_path)
    assert (ckpts / "last.ckpt").is_file() and (ckpts / "best.ckpt").is_file()
    assert set(module.last_metrics) == {"semseg", "depth"}
    assert 0.0 <= module.last_metrics["semseg"]["mIoU"] <= 100.0
    assert module.last_metrics["depth"]["rmse"] > 0.0
    changed = [k for k, v in module.state_dict().items() if v.dtype.is_floating_point and not torch.equal(v, before[k])]
    assert changed, "training changed no weight"
    # the metrics CSV logged the training loss
    assert "train/loss" in (tmp_path / "metrics.csv").read_text()


def test_ufl_keeps_backbone_and_source_outputs(synth: dict[str, Path], tmp_path: Path) -> None:
    torch.manual_seed(0)
    source = MultiTaskModule(arch="medusa", tasks="semseg,depth", aux_tasks=NE, dataset="nyud", lr=1e-3)
    ckpt = _fit(source, synth["nyud"], tmp_path / "src") / "last.ckpt"

    module = ufl_module_from_checkpoint(ckpt, ["human_parts", "sal"], "pascal", lr=1e-2)
    backbone = module.net.backbone
    bb_before = {k: v.clone() for k, v in backbone.state_dict().items()}
    src_before = {k: v.clone() for k, v in module.net.source.state_dict().items()}
    x = torch.randn(2, 3, 64, 64)
    out_before = module.net.source_forward(x)
    head_before = {k: v.clone() for k, v in module.net.decoder.heads.state_dict().items()}

    _fit(module, synth["pascal"], tmp_path / "ufl", dataset="pascal")

    for k, v in backbone.state_dict().items():  # parameters and BN buffers, bit for bit
        assert torch.equal(v, bb_before[k]), f"backbone tensor {k} changed"
    for k, v in module.net.source.state_dict().items():
        assert torch.equal(v, src_before[k]), f"source tensor {k} changed"
    out_after = module.net.source_forward(x)
    for t in ("semseg", "depth"):
        assert torch.equal(out_after[t], out_before[t])
    moved = [k for k, v in module.net.decoder.heads.state_dict().items() if not torch.equal(v, head_before[k])]
    assert moved, "the new heads were not trained"
    assert set(module.last_metrics) == {"human_parts", "sal"}


def test_ufl_cli_writes_metrics(synth: dict[str, Path], tmp_path: Path) -> None:
    source = MultiTaskModule(arch="mt_baseline", tasks="semseg,depth", dataset="nyud")
    ckpt = _fit(source, synth["nyud"], tmp_path / "src") / "last.ckpt"
    st = tmp_path / "st.json"
    st.write_text(json.dumps({"human_parts": {"mIoU": 40.0}, "sal": {"mIoU": 50.0}}))
    rc = cli_main(["ufl", "--source-ckpt", str(ckpt), "--tasks", "human_parts,sal", "--root", str(synth["pascal"]),
                   "--size", "64x64", "--epochs", "1", "--batch-size", "2", "--single-task", str(st),
                   "--out", str(tmp_path / "ufl")])
    assert rc == 0
    report = json.loads((tmp_path / "ufl" / "ufl_metrics.json").read_text())
    assert set(report["metrics"]) == {"human_parts", "sal"}
    expected = 50.0 * ((report["metrics"]["human_parts"]["mIoU"] - 40.0) / 40.0
                       + (report["metrics"]["sal"]["mIoU"] - 50.0) / 50.0)
    assert report["delta_m"] == pytest.approx(expected)
    # evaluate says which tasks of the chain it scores (predict / export give them all)
    rc, _, err = run_cli(["evaluate", "--ckpt", str(tmp_path / "ufl" / "checkpoints" / "last.ckpt"), "--data",
                          str(synth["pascal"]), "--num-workers", "0", "--out", str(tmp_path / "e.json")])
    assert rc == 0 and "is a UFL checkpoint: it is scored on the tasks of its last step (human_parts, sal" in err


def test_evaluate_matches_direct_metric_calls(synth: dict[str, Path], tmp_path: Path) -> None:
    torch.manual_seed(0)
    module = MultiTaskModule(arch="mt_baseline", tasks="semseg,depth", dataset="nyud", lr=1e-3)
    ckpt = _fit(module, synth["nyud"], tmp_path) / "last.ckpt"
    out = tmp_path / "eval.json"
    assert cli_main(["evaluate", "--ckpt", str(ckpt), "--data", str(synth["nyud"]), "--size", "64x64",
                     "--num-workers", "0", "--batch-size", "1", "--out", str(out)]) == 0
    report = json.loads(out.read_text())

    # The same numbers, computed by calling the metric classes directly on each test image.
    model = load_module(ckpt)
    data = MultiTaskDataModule(dataset="nyud", root=str(synth["nyud"]), tasks=["semseg", "depth"], size=(64, 64),
                               batch_size=1, num_workers=0)
    data.setup("test")
    seg, dep = ConfusionMIoU(num_classes=40), DepthMetric()
    with torch.no_grad():
        for sample in data.test_set:
            raw = model.net(sample["image"][None])
            size = sample["semseg"].shape[-2:]
            logits = F.interpolate(raw["semseg"], size=size, mode="bilinear", align_corners=False)
            depth = F.interpolate(raw["depth"], size=size, mode="bilinear", align_corners=False)
            seg.update(logits.argmax(1), sample["semseg"][None])
            dep.update(depth.clamp_min(0), sample["depth"][None])
    assert report["metrics"]["semseg"]["mIoU"] == pytest.approx(seg.compute()["mIoU"], abs=1e-9)
    assert report["metrics"]["depth"]["rmse"] == pytest.approx(dep.compute()["rmse"], rel=1e-9)
    assert report["provenance"]["versions"]["torch"] == torch.__version__


def test_evaluate_module_equals_trainer_test(synth: dict[str, Path], tmp_path: Path) -> None:
    module = MultiTaskModule(arch="medusa", tasks="semseg,depth", dataset="nyud")
    data = MultiTaskDataModule(dataset="nyud", root=str(synth["nyud"]), size=(64, 64), batch_size=2, num_workers=0)
    trainer = make_trainer(default_root_dir=str(tmp_path), enable_progress_bar=False, logger=False,
                           enable_checkpointing=False)
    trainer.test(module, data, verbose=False)
    via_trainer = module.last_metrics
    data.setup("test")
    direct = evaluate_module(module, data.test_dataloader())
    assert direct["semseg"]["mIoU"] == pytest.approx(via_trainer["semseg"]["mIoU"])
    assert direct["depth"]["rmse"] == pytest.approx(via_trainer["depth"]["rmse"])


def test_benchmark_tiny_profile_writes_report(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    profile = tmp_path / "tiny.yaml"
    profile.write_text(
        "profile: tiny\nseed: 3\nseeds: [0, 1]\n"
        "data:\n  nyud: {num_train: 8, num_val: 2, size: [64, 64], scales: [1.0]}\n"
        "  pascal: {num_train: 8, num_val: 2, size: [64, 64]}\n"
        "loader: {batch_size: 4, num_workers: 0, val_fraction: 0.25, cache: true}\n"
        "pretrain: {size: [64, 64], num_images: 32, epochs: 1, batch_size: 16}\n"
        "mtl: {epochs: 1, optimizer: adam, lr: 1.0e-3, weight_decay: 1.0e-4}\n"
        "st_pascal: {epochs: 1, optimizer: sgd, lr: 1.0e-2, momentum: 0.9, weight_decay: 1.0e-4}\n"
        "ufl: {epochs: 1, optimizer: adam, lr: 1.0e-3, weight_decay: 1.0e-4, feature_cache: true}\n"
        "one_seed: [ufl/mt_baseline]\nscratch_check: [nyud/mt_baseline]\n"
        "predict_images: 1\n"
        # two training steps: the reference HRNet's BN momentum 0.01 would leave the running statistics at
        # their initial values (degenerate outputs, undefined Δm); timm's form (0.1) moves them
        "hrnet_form: timm\n"
    )
    args = ["benchmark", "--profile", str(profile), "--out", str(tmp_path / "res"), "--data-dir",
            str(tmp_path / "data"), "--pretrain-cache", str(tmp_path / "pretrained"), "--models", "mt_baseline",
            "--jobs", "1", "--skip-resources", "--no-progress"]
    assert cli_main(args) == 0
    # PASCAL keeps its protocol's zooms and rotations here: no UFL input recurs, so the feature cache stays off
    assert "ufl/mt_baseline/s0: ufl.feature_cache is off" in capsys.readouterr().out
    report = (tmp_path / "res" / "REPORT.md").read_text()
    assert "| ST baseline | HRHead |" in report and "| MT baseline | HRHead |" in report
    assert "| trivial predictor (constant) |" in report and "## Claims" in report
    assert "## Pretrained backbone" in report and "from scratch" in report
    results = json.loads((tmp_path / "res" / "results.json").read_text())
    assert results["profile"] == "tiny" and results["wall_time_s"] > 0
    assert results["provenance"]["profile"] == "tiny" and results["provenance"]["seed"] == 3
    assert "torch" in results["provenance"]["versions"]
    assert set(results["trivial"]) == {"nyud", "pascal"}
    assert set(results["trivial"]["nyud"]) == {"semseg", "depth"}
    runs = {r["name"]: r for r in results["runs"]}
    # two seeds of every row except the one-seed UFL row, plus the from-scratch twin of the MT baseline
    assert set(runs) == {"nyud/single_task/s0", "nyud/single_task/s1", "nyud/mt_baseline/s0", "nyud/mt_baseline/s1",
                         "pascal/single_task/s0", "pascal/single_task/s1", "ufl/mt_baseline/s0",
                         "nyud/mt_baseline_scratch/s0"}
    entry = runs["nyud/mt_baseline/s1"]
    assert {"name", "dataset", "model", "n_e", "seed", "ufl", "metrics", "delta_m"} <= set(entry)
    assert entry["seed"] == 1 and entry["ufl"] is False and entry["pretrained"] is True
    assert runs["nyud/mt_baseline_scratch/s0"]["pretrained"] is False and runs["ufl/mt_baseline/s0"]["ufl"]
    rows = {r["key"]: r for r in results["tables"]["mtl"]}
    assert rows["nyud/mt_baseline"]["semseg_miou"] == [runs[f"nyud/mt_baseline/s{s}"]["metrics"]["semseg"]["mIoU"]
                                                       for s in (0, 1)]
    # Δm against the single-task metrics averaged over seeds: the ST row's Δm values sum to zero per task
    assert sum(rows["nyud/single_task"]["delta_m"]) == pytest.approx(0.0, abs=1e-9)
    assert {r["key"] for r in results["tables"]["ufl"]} == {"single_task", "ufl/mt_baseline"}
    # the profile's HRNet form reaches every model and the pretraining
    from medusa_mtl.engine.checkpoints import load_checkpoint

    ckpt = load_checkpoint(tmp_path / "res" / "runs" / "nyud" / "mt_baseline" / "s0" / "checkpoints" / "last.ckpt")
    assert ckpt["hyper_parameters"]["model_kwargs"] == {"hrnet_form": "timm"}
    # the NYUD entry's scales reach the NYUD runs' data module (PASCAL keeps its protocol) and the report
    assert ckpt["datamodule_hyper_parameters"]["scales"] == [1.0]
    assert ckpt["datamodule_hyper_parameters"]["cache"] is True  # the loader entry's cache reaches the runs
    pascal_ckpt = load_checkpoint(tmp_path / "res" / "runs" / "pascal" / "single_task" / "s0" / "checkpoints"
                                  / "last.ckpt")
    assert pascal_ckpt["datamodule_hyper_parameters"]["scales"] is None
    assert "NYUD training scale augmentation: 1 (the profile's" in report
    sidecar = json.loads(next((tmp_path / "pretrained").glob("*.json")).read_text())
    assert sidecar["settings"]["hrnet_form"] == "timm"
    # two seeds of the same row differ (the seed reaches initialisation and data order)
    assert runs["nyud/mt_baseline/s0"]["metrics"] != runs["nyud/mt_baseline/s1"]["metrics"]
    # --report-only rewrites the report from results.json and the figures alone (no runs, no datasets): the
    # same text plus one line saying so
    copy = tmp_path / "copy"
    copy.mkdir()
    shutil.copy(tmp_path / "res" / "results.json", copy / "results.json")
    assert cli_main(["benchmark", "--report-only", "--out", str(copy)]) == 0

    def without_note(text: str) -> list[str]:
        lines = text.splitlines()
        note = [i for i, line in enumerate(lines) if "re-rendered from that run's `results.json`" in line]
        assert len(note) == 1 and lines[note[0] + 1] == ""
        return lines[: note[0]] + lines[note[0] + 2:]

    assert without_note((copy / "REPORT.md").read_text()) == report.splitlines()
    # a results file from before "figures" was recorded: the prediction figures on disk are linked, per image
    # in the order the benchmark writes them (this run made none: Medusa is not among its models)
    saved = json.loads((copy / "results.json").read_text())
    assert saved["figures"] == []
    del saved["figures"]
    (copy / "results.json").write_text(json.dumps(saved))
    for image in ("synth_000002", "synth_000001"):
        (copy / "predictions" / image).mkdir(parents=True)
        for name in ("msa.png", "panel.png", "sfa.png", "notes.png"):
            (copy / "predictions" / image / name).write_bytes(b"")
    assert cli_main(["benchmark", "--report-only", "--out", str(copy)]) == 0
    linked = [line for line in (copy / "REPORT.md").read_text().splitlines() if line.startswith("![predictions/")]
    assert linked == [f"![predictions/{i}/{n}.png](predictions/{i}/{n}.png)" for i in ("synth_000001", "synth_000002")
                      for n in ("panel", "sfa", "msa")]
    with pytest.raises(ConfigError, match="results.json not found"):
        rerender_report(tmp_path / "nowhere")
    (copy / "results.json").write_text("{}")
    with pytest.raises(ConfigError, match="not a benchmark results file"):
        rerender_report(copy)
    # a second invocation reuses every finished run (nothing retrained) and the cached pretrained backbone;
    # the sample cache and the feature cache change speed only, so a profile without them is still the same run
    result = tmp_path / "res" / "runs" / "nyud" / "mt_baseline" / "s0" / "result.json"
    mtime = result.stat().st_mtime
    profile.write_text(profile.read_text().replace(", cache: true", "").replace(", feature_cache: true", ""))
    capsys.readouterr()
    assert cli_main([*args, "--plan"]) == 0
    plan = capsys.readouterr().out
    assert "8 runs: 8 reused" in plan and "over 1 invocation(s) of these runs" in plan
    assert cli_main(args) == 0
    assert result.stat().st_mtime == mtime
    # ... and its wall time is that of both invocations (the first one's data generation and training included)
    again = json.loads((tmp_path / "res" / "results.json").read_text())
    first, second = again["invocations"]
    assert first["finished"] and second["finished"] and first["wall_time_s"] > second["wall_time_s"] > 0
    assert again["wall_time_s"] == pytest.approx(first["wall_time_s"] + second["wall_time_s"], abs=0.11)
    assert first["wall_time_s"] == pytest.approx(results["wall_time_s"], abs=0.11)
    assert again["provenance"]["invocations"] == 2 and second["reference_step_s"] > 0
    assert "over 2 invocations (interrupted and resumed" in (tmp_path / "res" / "REPORT.md").read_text()
    assert "over 2 invocations" not in report and "the machine's reference training step" in report


def test_last_checkpoint_advances_when_validation_gets_worse(synth: dict[str, Path], tmp_path: Path,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    # A validation loss that rises every epoch: best.ckpt stays at epoch 0, last.ckpt must still follow training
    # (a monitored ModelCheckpoint(save_last=True) would leave "last" at the best epoch and resume from there).
    from medusa_mtl.engine.checkpoints import load_checkpoint

    def worse_every_epoch(self: MultiTaskModule, batch: dict) -> float:
        return float(self.current_epoch + 1)

    monkeypatch.setattr(MultiTaskModule, "evaluate_batch", worse_every_epoch)
    module = MultiTaskModule(arch="mt_baseline", tasks="semseg,depth", dataset="nyud")
    ckpts = _fit(module, synth["nyud"], tmp_path, epochs=3)
    assert load_checkpoint(ckpts / "best.ckpt")["epoch"] == 0
    last = load_checkpoint(ckpts / "last.ckpt")
    assert last["epoch"] == 2 and last["global_step"] == 6


def test_datamodule_scales_replace_the_augmentation(synth: dict[str, Path]) -> None:
    """``scales=[1.0]``: the train transform flips only, so each train sample's depth is the eval sample's
    depth or its mirror image (the protocol's zooms would divide it by 1.2 or 1.5)."""
    data = MultiTaskDataModule(dataset="nyud", root=str(synth["nyud"]), tasks=["semseg", "depth"], size=(64, 64),
                               batch_size=2, num_workers=0, val_fraction=0.25, scales=[1.0])
    data.setup("fit")
    assert data.train_set.transform.augment.scales == (1.0,)
    assert data.train_set.transform.augment.flip_prob == 0.5  # the rest of the protocol is kept
    from medusa_mtl.data.datasets import build_dataset

    plain = build_dataset("nyud", synth["nyud"], "train", ["semseg", "depth"], train=False, size=(64, 64),
                          ids=data.train_ids)
    torch.manual_seed(0)
    for i in range(len(plain)):
        got, ref = data.train_set[i]["depth"], plain[i]["depth"]
        assert torch.equal(got, ref) or torch.equal(got, ref.flip(-1))
    default = MultiTaskDataModule(dataset="nyud", root=str(synth["nyud"]), size=(64, 64), num_workers=0)
    assert default.augment is None  # the dataset's protocol
    pascal = MultiTaskDataModule(dataset="pascal", root=str(synth["pascal"]), size=(64, 64), scales=[0.9, 1.1])
    assert pascal.augment.scales == (0.9, 1.1) and pascal.augment.scale_range is None
    assert pascal.augment.max_rotation == 20.0
    for bad in ([], [0.0], [1.0, -2.0]):
        with pytest.raises(ConfigError, match="--data.scales"):
            MultiTaskDataModule(dataset="nyud", root=str(synth["nyud"]), scales=bad)


def test_datamodule_rotation_replaces_the_protocols(synth: dict[str, Path]) -> None:
    """``rotation`` sets the largest train rotation (PASCAL's protocol: 20 degrees); with ``scales=[1.0]`` and
    ``rotation=0`` each train sample is the eval sample or its mirror image."""
    data = MultiTaskDataModule(dataset="pascal", root=str(synth["pascal"]), tasks=["human_parts", "sal"],
                               size=(64, 64), batch_size=2, num_workers=0, val_fraction=0.25, scales=[1.0],
                               rotation=0)
    data.setup("fit")
    assert data.train_set.transform.augment.max_rotation == 0.0
    assert data.train_set.transform.augment.flip_prob == 0.5
    from medusa_mtl.data.datasets import build_dataset

    plain = build_dataset("pascal", synth["pascal"], "train", ["human_parts", "sal"], train=False, size=(64, 64),
                          ids=data.train_ids)
    torch.manual_seed(0)
    for i in range(len(plain)):
        for task in ("human_parts", "sal"):
            got, ref = data.train_set[i][task], plain[i][task]
            assert torch.equal(got, ref) or torch.equal(got, ref.flip(-1)), (i, task)
    # alone, it keeps the protocol's scales
    rotated = MultiTaskDataModule(dataset="pascal", root=str(synth["pascal"]), size=(64, 64), rotation=5)
    assert rotated.augment.max_rotation == 5.0 and rotated.augment.scale_range == (0.75, 1.25)
    for bad in (-1, 181, True):
        with pytest.raises(ConfigError, match="--data.rotation"):
            MultiTaskDataModule(dataset="pascal", root=str(synth["pascal"]), rotation=bad)


def test_datamodule_cache_gives_the_same_batches(synth: dict[str, Path]) -> None:
    """``cache=True`` keeps decoded samples of all three splits; an epoch's batches are unchanged."""
    kw = dict(dataset="nyud", root=str(synth["nyud"]), tasks=["semseg", "depth"], size=(64, 64), batch_size=2,
              num_workers=0, val_fraction=0.25, scales=[1.0])
    plain, cached = MultiTaskDataModule(**kw), MultiTaskDataModule(**kw, cache=True)
    for d in (plain, cached):
        d.setup("fit")
    assert all(s._cache is not None for s in (cached.train_set, cached.val_set, cached.test_set))
    assert plain.train_set._cache is None
    assert cached.hparams["cache"] is True
    for epoch in range(2):
        for name in ("train_set", "val_set"):
            for i in range(len(getattr(plain, name))):
                torch.manual_seed(100 * epoch + i)
                a = getattr(plain, name)[i]
                torch.manual_seed(100 * epoch + i)
                b = getattr(cached, name)[i]
                assert torch.equal(a["image"], b["image"]) and torch.equal(a["depth"], b["depth"])
    assert len(cached.train_set._cache) == len(cached.train_set)


def test_model_summary_measures_flops_at_the_input_size(synth: dict[str, Path], tmp_path: Path) -> None:
    """`medusa fit` prints Lightning's model summary: its FLOPs are those of one eval forward at the data size
    (FlopCounterMode, as `medusa resources` counts them), not 0."""
    from lightning.pytorch.utilities.model_summary import ModelSummary
    from torch.utils.flop_counter import FlopCounterMode

    module = MultiTaskModule(arch="mt_baseline", tasks="semseg,depth", dataset="nyud")
    data = MultiTaskDataModule(dataset="nyud", root=str(synth["nyud"]), size=(64, 96), batch_size=2,
                               num_workers=0, val_fraction=0.25)
    assert MultiTaskDataModule(dataset="pascal", root=str(synth["pascal"])).input_size == (512, 512)
    trainer = make_trainer(max_epochs=1, default_root_dir=str(tmp_path), enable_progress_bar=False, logger=False,
                           enable_checkpointing=False, limit_train_batches=1, limit_val_batches=1,
                           num_sanity_val_steps=0)
    trainer.fit(module, data)
    assert tuple(module.example_input_array.shape) == (1, 3, 64, 96)
    module.net.eval()
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        module.net(torch.zeros(1, 3, 64, 96))
    assert counter.get_total_flops() > 0
    assert ModelSummary(module).total_flops == counter.get_total_flops()


def test_ufl_cli_resumes_an_interrupted_run_exactly_and_guards_its_out(synth: dict[str, Path], tmp_path: Path,
                                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    import lightning as L

    import medusa_mtl.engine.training as training

    source = MultiTaskModule(arch="mt_baseline", tasks="semseg,depth", dataset="nyud")
    ckpt = _fit(source, synth["nyud"], tmp_path / "src") / "last.ckpt"

    def ufl(out: str, *extra: str) -> tuple[int, str]:
        rc, _, err = run_cli(["ufl", "--source-ckpt", str(ckpt), "--tasks", "human_parts,sal", "--root",
                              str(synth["pascal"]), "--size", "64x64", "--epochs", "3", "--batch-size", "2",
                              "--out", str(tmp_path / out), *extra])
        return rc, err

    assert ufl("whole")[0] == 0
    whole = json.loads((tmp_path / "whole" / "ufl_metrics.json").read_text())
    assert whole["tested_ckpt"].endswith("best.ckpt") and 0 <= whole["tested_epoch"] <= 2
    assert whole["metrics"] == evaluate_module(load_module(whole["tested_ckpt"]), _pascal_test_loader(synth))

    class Crash(Exception):
        pass

    class CrashAtEpoch2(L.Callback):
        def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
            if trainer.current_epoch == 2:
                raise Crash

    plain = training.make_trainer
    with monkeypatch.context() as m:
        m.setattr(training, "make_trainer", lambda **kw: plain(**kw, callbacks=[CrashAtEpoch2()]))
        with pytest.raises(Crash):
            ufl("cut")
    assert not (tmp_path / "cut" / "ufl_metrics.json").exists()
    rc, err = ufl("cut")  # a second run would overwrite the first one's checkpoints
    assert rc == 2 and "--resume" in err and "last.ckpt" in err, err
    rc, err = ufl("empty", "--resume")
    assert rc == 2 and "no interrupted run" in err, err

    rc, err = ufl("cut", "--resume", "--tasks", "sal")  # not the run in "cut": named, not a state-dict traceback
    assert rc == 2 and "--resume" in err and "new tasks ['human_parts', 'sal'], now ['sal']" in err, err
    rc, err = ufl("cut", "--resume")  # with the CLI's default two DataLoader workers
    assert rc == 0, err
    resumed = json.loads((tmp_path / "cut" / "ufl_metrics.json").read_text())
    assert resumed["metrics"] == whole["metrics"] and resumed["tested_epoch"] == whole["tested_epoch"]
    a = torch.load(tmp_path / "whole" / "checkpoints" / "last.ckpt", weights_only=True)["state_dict"]
    b = torch.load(tmp_path / "cut" / "checkpoints" / "last.ckpt", weights_only=True)["state_dict"]
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


@pytest.mark.parametrize(("text", "message"), [
    ("trainer:\n  max_epoch: 1\n", "trainer.max_epoch is not an option of trainer (did you mean max_epochs"),
    ("data:\n  batchsize: 2\n", "data.batchsize is not an option of data"),
    ("data: [1,\n", "not valid YAML"),
    ("- data\n- trainer\n", "expected a mapping with 'data:' and/or 'trainer:' sections, got a list"),
    ("model:\n  arch: medusa\n", "section 'model' is not used by medusa ufl"),
])
def test_ufl_config_mistakes_name_the_file_and_key(tmp_path: Path, text: str, message: str) -> None:
    """Each was a TypeError / ParserError / AttributeError traceback, or (model:) silently ignored."""
    path = tmp_path / "ufl.yaml"
    path.write_text(text)
    rc, _, err = run_cli(["ufl", "--source-ckpt", str(tmp_path / "src.ckpt"), "--tasks", "sal", "--config", str(path),
                          "--out", str(tmp_path / "out")])
    assert rc == 2 and str(path) in err and message in err and "Traceback" not in err, err


def test_ufl_config_sections_are_passed_on(tmp_path: Path) -> None:
    from medusa_mtl.engine.ufl import load_ufl_config

    path = tmp_path / "ufl.yaml"
    path.write_text("data:\n  batch_size: 2\ntrainer:\n  max_epochs: 3\n  precision: 32\n")
    assert load_ufl_config(path) == {"data": {"batch_size": 2}, "trainer": {"max_epochs": 3, "precision": 32}}



def test_packaged_ufl_config_is_resolved_and_used(synth: dict[str, Path], tmp_path: Path) -> None:
    """``medusa ufl --config medusa:tasks/pascal_ufl.yaml``, as the file says: the name was not resolved ("file not
    found: medusa:..."), and the file itself (a 'model:' section) was refused by medusa ufl."""
    from medusa_mtl.engine.ufl import load_ufl_config

    assert load_ufl_config("medusa:tasks/pascal_ufl.yaml") == {
        "data": {"dataset": "pascal", "tasks": ["human_parts", "sal"]}}
    module = MultiTaskModule(arch="mt_baseline", tasks="semseg,depth", dataset="nyud", backbone="test_efficientnet")
    ckpt = tmp_path / "src.ckpt"
    torch.save({"state_dict": module.state_dict(), "hyper_parameters": dict(module.hparams)}, ckpt)
    out = tmp_path / "ufl"
    rc, _, err = run_cli(["ufl", "--source-ckpt", str(ckpt), "--config", "medusa:tasks/pascal_ufl.yaml",
                          "--root", str(synth["pascal"]), "--size", "64x64", "--epochs", "1", "--batch-size", "4",
                          "--out", str(out)])  # the new tasks come from the config's data.tasks
    assert rc == 0, err[-2000:]
    report = json.loads((out / "ufl_metrics.json").read_text())
    assert report["tasks"] == ["human_parts", "sal"] and report["dataset"] == "pascal"
    rc, _, err = run_cli(["ufl", "--source-ckpt", str(ckpt), "--out", str(tmp_path / "none")])
    assert rc == 2 and "--tasks" in err and "Traceback" not in err, err[-2000:]

def _pascal_test_loader(synth: dict[str, Path]) -> torch.utils.data.DataLoader:
    data = MultiTaskDataModule(dataset="pascal", root=str(synth["pascal"]), tasks=["human_parts", "sal"],
                               size=(64, 64), batch_size=2, num_workers=0)
    data.setup("test")
    return data.test_dataloader()


def test_evaluate_cli_scores_at_the_training_size_and_checks_the_reference_first(synth: dict[str, Path],
                                                                                 tmp_path: Path) -> None:
    ckpt = _fit(MultiTaskModule(arch="mt_baseline", tasks="semseg,depth", dataset="nyud"), synth["nyud"],
                tmp_path / "run") / "last.ckpt"  # trained at 64x64 (NYUD's default is 480x640)
    out = tmp_path / "eval.json"
    rc, _, err = run_cli(["evaluate", "--ckpt", str(ckpt), "--data", str(synth["nyud"]), "--num-workers", "0",
                          "--out", str(out)])
    assert rc == 0, err
    data = MultiTaskDataModule(dataset="nyud", root=str(synth["nyud"]), tasks=["semseg", "depth"], size=(64, 64),
                               batch_size=4, num_workers=0)
    data.setup("test")
    direct = evaluate_module(load_module(ckpt), data.test_dataloader())
    assert json.loads(out.read_text())["metrics"]["depth"]["rmse"] == pytest.approx(direct["depth"]["rmse"])
    # strict JSON: the IoU of a class absent from the 3 test images is undefined (NaN), written as null (the NaN
    # token json.dumps writes by default is rejected by jq, JSON.parse, ...)
    strict = json.loads(out.read_text(), parse_constant=lambda c: pytest.fail(f"non-JSON constant {c} in {out}"))
    per_class = strict["metrics"]["semseg"]["per_class_iou"]
    assert None in per_class and len(per_class) == 40
    assert all(v is None or math.isfinite(v) for v in per_class)
    # a NYUD checkpoint scored against PASCAL's labels (--dataset pascal): 40 semseg channels against 21 classes
    # gave mIoU 0 and a results file saying "dataset": "pascal"
    out.unlink()
    rc, _, err = run_cli(["evaluate", "--ckpt", str(ckpt), "--data", str(synth["pascal"]), "--dataset", "pascal",
                          "--num-workers", "0", "--out", str(out)])
    assert rc == 2 and "--dataset pascal" in err and "semseg for nyud (40 channels)" in err, err[-2000:]
    assert "Traceback" not in err and not out.exists()
    partial = tmp_path / "st.json"
    partial.write_text(json.dumps({"semseg": {"mIoU": 30.0}}))
    rc, _, err = run_cli(["evaluate", "--ckpt", str(ckpt), "--data", str(synth["nyud"]), "--num-workers", "0",
                          "--single-task", str(partial), "--out", str(out)])
    assert rc == 2 and str(partial) in err and "depth.rmse" in err and "Traceback" not in err, err
    assert not out.exists()


class _LrLog:
    """Callback recording the learning rate of every optimizer step."""

    def __init__(self) -> None:
        import lightning as L

        class _Cb(L.Callback):
            def on_train_batch_start(cb, trainer, module, batch, batch_idx):  # noqa: N805
                self.lrs.append(trainer.optimizers[0].param_groups[0]["lr"])

        self.lrs: list[float] = []
        self.callback = _Cb()


@pytest.mark.parametrize("limits", [{"max_steps": 6}, {"max_steps": 6, "max_epochs": 50}, {"max_epochs": 3}])
def test_poly_schedule_spans_the_runs_real_length(limits: dict, synth: dict[str, Path], tmp_path: Path) -> None:
    # --trainer.max_steps alone makes Lightning's max_epochs -1: the schedule took E = 1 and the rate was 0 from
    # the second epoch on; with max_epochs 50 as well it decayed over 50 epochs of which 3 ran
    module = MultiTaskModule(arch="mt_baseline", tasks="semseg,depth", dataset="nyud", lr=1e-3)
    data = MultiTaskDataModule(dataset="nyud", root=str(synth["nyud"]), size=(64, 64), batch_size=2, num_workers=0,
                               val_fraction=0.25)
    log = _LrLog()
    trainer = make_trainer(default_root_dir=str(tmp_path), enable_progress_bar=False, enable_model_summary=False,
                           limit_train_batches=2, limit_val_batches=1, num_sanity_val_steps=0, logger=False,
                           enable_checkpointing=False, callbacks=[log.callback], **limits)
    trainer.fit(module, data)
    assert len(log.lrs) == 6
    expected = [1e-3 * (1 - e / 3) ** 0.9 for e in (0, 0, 1, 1, 2, 2)]
    assert log.lrs == pytest.approx(expected)


def test_poly_schedule_refuses_a_run_without_length(synth: dict[str, Path], tmp_path: Path) -> None:
    module = MultiTaskModule(arch="mt_baseline", tasks="semseg,depth", dataset="nyud", lr=1e-3)
    data = MultiTaskDataModule(dataset="nyud", root=str(synth["nyud"]), size=(64, 64), batch_size=2, num_workers=0,
                               val_fraction=0.25)
    trainer = make_trainer(default_root_dir=str(tmp_path), enable_progress_bar=False, enable_model_summary=False,
                           logger=False, enable_checkpointing=False, max_time="00:00:00:05")
    with pytest.raises(ConfigError, match="max_time alone"):
        trainer.fit(module, data)


def test_evaluate_heldout_scores_the_split_the_run_was_selected_on(synth: dict[str, Path], tmp_path: Path) -> None:
    # evaluate --split heldout carved the split with the defaults (val_fraction 0.1, seed 0), not the run's: other
    # images, some of them trained on
    torch.manual_seed(0)
    module = MultiTaskModule(arch="mt_baseline", tasks="semseg,depth", dataset="nyud", lr=1e-3)
    data = MultiTaskDataModule(dataset="nyud", root=str(synth["nyud"]), size=(64, 64), batch_size=2, num_workers=0,
                               val_fraction=0.25, seed=3)
    trainer = make_trainer(max_epochs=1, default_root_dir=str(tmp_path), enable_progress_bar=False,
                           enable_model_summary=False, limit_train_batches=1, num_sanity_val_steps=0)
    trainer.fit(module, data)
    fit_metrics = module.last_metrics  # the last (only) epoch's validation on the held-out split
    out = tmp_path / "heldout.json"
    rc, stdout, err = run_cli(["evaluate", "--ckpt", str(tmp_path / "checkpoints" / "last.ckpt"), "--data",
                               str(synth["nyud"]), "--split", "heldout", "--num-workers", "0", "--out", str(out)])
    assert rc == 0, err
    assert "val_fraction 0.25, seed 3" in stdout
    result = json.loads(out.read_text())
    assert result["num_images"] == len(data.split_ids()[1]) == 2
    assert result["metrics"]["semseg"]["mIoU"] == pytest.approx(fit_metrics["semseg"]["mIoU"], rel=1e-5)
    assert result["metrics"]["depth"]["rmse"] == pytest.approx(fit_metrics["depth"]["rmse"], rel=1e-5)
    # without --out, the held-out scores went to <ckpt>.metrics.json too, over the test split's scores there
    ckpt = tmp_path / "checkpoints" / "last.ckpt"
    for split in ("test", "heldout"):
        rc, stdout, err = run_cli(["evaluate", "--ckpt", str(ckpt), "--data", str(synth["nyud"]), "--split", split,
                                   "--num-workers", "0"])
        assert rc == 0, err
    assert json.loads((tmp_path / "checkpoints" / "last.metrics.json").read_text())["split"] == "test"
    heldout = json.loads((tmp_path / "checkpoints" / "last.heldout.metrics.json").read_text())
    assert heldout["split"] == "heldout" and heldout["metrics"] == result["metrics"]


def test_evaluate_on_the_test_split_needs_no_train_split(synth: dict[str, Path], tmp_path: Path) -> None:
    # a labelled test-only folder could not be scored: evaluate read (and checked) the train split too
    ckpt = _fit(MultiTaskModule(arch="mt_baseline", tasks="semseg,depth", dataset="nyud"), synth["nyud"],
                tmp_path / "run") / "last.ckpt"
    test_only = tmp_path / "NYUD_MT"
    shutil.copytree(synth["nyud"], test_only)
    (test_only / "gt_sets" / "train.txt").unlink()
    out = tmp_path / "eval.json"
    rc, _, err = run_cli(["evaluate", "--ckpt", str(ckpt), "--data", str(test_only), "--num-workers", "0",
                          "--out", str(out)])
    assert rc == 0, err[-3000:]
    assert json.loads(out.read_text())["num_images"] == 3
    rc, _, err = run_cli(["evaluate", "--ckpt", str(ckpt), "--data", str(test_only), "--num-workers", "0",
                          "--split", "heldout"])
    assert rc == 2 and "train.txt" in err and "Traceback" not in err, err[-3000:]


def test_ids_in_both_train_and_test_splits_are_refused(synth: dict[str, Path], tmp_path: Path) -> None:
    # an id listed in val.txt and train.txt was trained on and scored as a test image
    root = tmp_path / "NYUD_MT"
    shutil.copytree(synth["nyud"], root)
    train = (root / "gt_sets" / "train.txt").read_text().split()
    with (root / "gt_sets" / "val.txt").open("a") as f:
        f.write(f"{train[0]}\n")
    data = MultiTaskDataModule(dataset="nyud", root=str(root), tasks=["semseg"], size=(64, 64), num_workers=0)
    with pytest.raises(ConfigError, match=rf"ids in both the train and the val \(test\) split: \['{train[0]}'\]"):
        data.split_ids()


def test_ufl_config_data_section_is_used_and_single_task_is_checked_first(synth: dict[str, Path],
                                                                         tmp_path: Path) -> None:
    # the --config's data.root / data.dataset were overwritten by --root's / --dataset's defaults ("dataset folder
    # not found: data/synthetic/PASCAL_MT"); a --single-task file without the Δm metric failed with a traceback
    # after the whole training
    ckpt = _fit(MultiTaskModule(arch="mt_baseline", tasks="semseg,depth", dataset="nyud"), synth["nyud"],
                tmp_path / "src") / "last.ckpt"
    bad = tmp_path / "st.json"
    bad.write_text(json.dumps({"human_parts": {"mIoU": 40.0}, "sal": {"maxF": 50.0}}))
    base = ["ufl", "--source-ckpt", str(ckpt), "--tasks", "human_parts,sal", "--size", "64x64"]
    rc, _, err = run_cli([*base, "--root", str(synth["pascal"]), "--single-task", str(bad),
                          "--out", str(tmp_path / "bad")])
    assert rc == 2 and "needs a non-zero number sal.mIoU" in err and "Traceback" not in err, err[-2000:]
    assert not (tmp_path / "bad" / "checkpoints").exists()  # refused before any training
    cfg = tmp_path / "ufl.yaml"
    cfg.write_text(f"data:\n  dataset: pascal\n  root: {synth['pascal']}\n  batch_size: 2\n  num_workers: 0\n"
                   "trainer:\n  max_epochs: 1\n")
    rc, _, err = run_cli([*base, "--config", str(cfg), "--out", str(tmp_path / "cfg")])
    assert rc == 0, err[-2000:]
    assert json.loads((tmp_path / "cfg" / "ufl_metrics.json").read_text())["metrics"].keys() == {"human_parts", "sal"}


def test_a_checkpoint_trained_from_timm_weights_is_rebuilt_without_the_network(
        tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    # --model.model_kwargs '{pretrained: true}' (timm's download) was kept in the checkpoint: evaluate, predict,
    # export and ufl of the trained checkpoint downloaded the ImageNet weights again (offline: they failed)
    import timm

    module = MultiTaskModule(arch="mt_baseline", tasks="semseg,depth", dataset="nyud", backbone="test_efficientnet")
    hparams = dict(module.hparams)
    hparams["model_kwargs"] = {"pretrained": True}
    ckpt = tmp_path / "trained.ckpt"
    torch.save({"state_dict": module.state_dict(), "hyper_parameters": hparams}, ckpt)
    create = timm.create_model

    def offline(*args: object, **kwargs: object) -> object:
        if kwargs.get("pretrained"):
            raise AssertionError("the network was asked for timm weights")
        return create(*args, **kwargs)

    monkeypatch.setattr(timm, "create_model", offline)
    loaded = load_module(ckpt)
    assert all(torch.equal(v, module.state_dict()[k]) for k, v in loaded.state_dict().items())
    step = ufl_module_from_checkpoint(ckpt, "sal", "pascal")
    assert step.hparams["model_kwargs"] == {}


class _OwnCheckpoint(ModelCheckpoint):
    """A user's checkpoint callback, named in a config by its class path."""


@pytest.mark.parametrize(("trainer", "folder", "last"), [
    (None, "runs/checkpoints", "runs/checkpoints/last.ckpt"),
    ({"default_root_dir": "out"}, "out/checkpoints", "out/checkpoints/last.ckpt"),
    ({"enable_checkpointing": False}, None, None),
    ({"callbacks": [ModelCheckpoint(dirpath="mine")]}, None, None),
    ({"callbacks": {"class_path": "lightning.pytorch.callbacks.ModelCheckpoint"}}, None, None),
    ({"callbacks": [{"class_path": f"{__name__}._OwnCheckpoint"}]}, None, None),  # a subclass, by class path
    # its own "last" may be newer: the defaults are still added, but "last" is Lightning's to find
    ({"callbacks": [{"class_path": "lightning.pytorch.callbacks.OnExceptionCheckpoint"}]}, "runs/checkpoints", None),
    ({"callbacks": [{"class_path": "lightning.pytorch.callbacks.LearningRateMonitor"}]}, "runs/checkpoints",
     "runs/checkpoints/last.ckpt"),
])
def test_default_checkpoint_folder_is_decided_in_one_place(trainer, folder, last) -> None:
    """What ``complete_trainer_config`` adds and what the CLI resolves ``--ckpt_path last`` to come from the same
    function, for instantiated callbacks and for a config's ``class_path`` entries."""
    assert default_checkpoint_dir(trainer) == (Path(folder) if folder else None)
    assert last_checkpoint_file(trainer) == (Path(last) if last else None)
    own = _as_list((trainer or {}).get("callbacks"))
    if all(not isinstance(c, dict) for c in own):  # complete_trainer_config takes instantiated callbacks
        callbacks = complete_trainer_config(dict(trainer or {}))["callbacks"]
        added = {Path(c.dirpath) for c in callbacks if isinstance(c, ModelCheckpoint) and c not in own}
        assert added == ({Path(folder).resolve()} if folder else set())


def _as_list(value) -> list:
    return [] if value is None else list(value) if isinstance(value, list | tuple) else [value]


def test_a_class_path_that_does_not_import_is_left_to_lightning(tmp_path: Path, monkeypatch) -> None:
    """A ``class_path`` the check cannot import (a module that fails, a name it does not have) counts by its class
    name alone; the import error is LightningCLI's to report, naming the class path, not a traceback from here."""
    (tmp_path / "broken_callbacks.py").write_text("raise RuntimeError('broken on import')\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    for path in ("broken_callbacks.MyCheckpoint", f"{__name__}.NoSuchCallback", "no_such_package_x.ModelCheckpoint"):
        trainer = {"callbacks": [{"class_path": path}]}
        own = path.endswith("ModelCheckpoint")
        assert default_checkpoint_dir(trainer) == (None if own else Path("runs/checkpoints")), path
        assert last_checkpoint_file(trainer) == (None if own else Path("runs/checkpoints/last.ckpt")), path


def test_ufl_at_another_size_than_the_source_says_the_source_tasks_will_differ(synth: dict[str, Path],
                                                                              tmp_path: Path) -> None:
    # the UFL checkpoint runs every task at the UFL run's size: trained at 96x96 on a 64x64 source, its semseg
    # and depth differed from the source checkpoint's (depth by metres) without a word, though the weights were
    # unchanged and the README promised them bit-identical
    source = MultiTaskModule(arch="mt_baseline", tasks="semseg,depth", dataset="nyud", backbone="test_efficientnet")
    ckpt = _fit(source, synth["nyud"], tmp_path / "src") / "last.ckpt"

    def ufl(size: str) -> tuple[int, str]:
        rc, _, err = run_cli(["ufl", "--source-ckpt", str(ckpt), "--tasks", "sal", "--root", str(synth["pascal"]),
                              "--size", size, "--epochs", "1", "--batch-size", "4", "--out", str(tmp_path / size)])
        return rc, err

    rc, err = ufl("96x96")
    assert rc == 0, err[-3000:]
    notes = [line for line in err.splitlines() if line.startswith("note:") and "64x64" in line]
    assert len(notes) == 1 and "96x96" in notes[0] and "--size 64x64" in notes[0], err[-3000:]
    # the note's advice holds: at the source's size the UFL checkpoint gives the source's predictions exactly
    image = np.random.default_rng(0).integers(0, 255, (50, 70, 3), dtype=np.uint8)
    own = Predictor.from_checkpoint(ckpt).predict(image)
    ufl_ckpt = tmp_path / "96x96" / "checkpoints" / "last.ckpt"
    again = Predictor.from_checkpoint(ufl_ckpt, size=(64, 64)).predict(image)
    assert all(np.array_equal(own[t], again[t]) for t in ("semseg", "depth"))
    rc, err = ufl("64x64")
    assert rc == 0 and not [line for line in err.splitlines() if line.startswith("note:")], err[-3000:]
