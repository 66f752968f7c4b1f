"""Test-time flip averaging (:mod:`medusa_mtl.engine.tta`): each task's output is mirrored back as the train
augmentation mirrors its label, the averaged outputs are what the module scores and predicts when ``test_flip``
is on (and only then), and ``medusa evaluate --flip``, ``Predictor(flip=...)`` and a benchmark profile's
``test_flip`` reach it. Random-weight networks on 64x64 inputs."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from medusa_mtl import Predictor
from medusa_mtl.cli import main as cli_main
from medusa_mtl.data.synthetic import generate
from medusa_mtl.data.transforms import BUILTIN_KINDS, hflip
from medusa_mtl.engine.evaluation import evaluate_module, load_module
from medusa_mtl.engine.training import MultiTaskDataModule, MultiTaskModule
from medusa_mtl.engine.tta import flip_averaged
from medusa_mtl.errors import ConfigError
from medusa_mtl.metrics import DepthMetric
from medusa_mtl.tasks import get_task

NE = ["semseg", "depth", "normals", "edge"]


def _module(test_flip: bool, arch: str = "mt_baseline", tasks: list[str] | None = None) -> MultiTaskModule:
    torch.manual_seed(0)
    return MultiTaskModule(arch=arch, tasks=tasks or NE, dataset="nyud", test_flip=test_flip).eval()


@pytest.mark.parametrize("name", ["semseg", "depth", "normals", "edge", "sal", "human_parts"])
def test_an_output_is_mirrored_as_the_augmentation_mirrors_its_label(name: str) -> None:
    """Task.mirror on a [1, C, H, W] map equals the train transform's hflip of the same map as an H x W (x C)
    label: for normals the x component changes sign, for every other kind the map is only mirrored."""
    kind = get_task(name).label_kind
    channels = 3 if kind == "normals" else 1
    label = np.random.default_rng(0).normal(size=(5, 7, channels)).astype(np.float32)
    flipped = hflip({"image": np.zeros((5, 7, 3), np.float32), name: label})[name]
    raw = torch.from_numpy(label).permute(2, 0, 1)[None]
    mirrored = get_task(name).mirror(raw)
    assert torch.equal(mirrored[0].permute(1, 2, 0), torch.from_numpy(flipped))
    assert torch.equal(get_task(name).mirror(mirrored), raw)  # an involution
    assert BUILTIN_KINDS[name] == kind  # the transform flipped it as a label of this task's kind


def test_flip_averaged_outputs_are_mirror_equivariant() -> None:
    """The averaged prediction of the mirror image is the mirror of the averaged prediction (a single output's is
    not: the network is not mirror-symmetric), and it is the mean of the two passes."""
    net = _module(False).net
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        avg = flip_averaged(net, x, NE)
        avg_of_mirror = flip_averaged(net, x.flip(-1), NE)
        plain, mirrored = net(x), net(x.flip(-1))
    assert sorted(avg) == sorted(NE)
    for t in NE:
        task = get_task(t)
        torch.testing.assert_close(avg_of_mirror[t], task.mirror(avg[t]), rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(avg[t], (plain[t] + task.mirror(mirrored[t])) / 2)
    assert not torch.allclose(mirrored["depth"], plain["depth"].flip(-1), atol=1e-4)


@pytest.mark.parametrize("arch", ["mt_baseline", "medusa"])
def test_the_module_scores_flip_averaged_outputs_only_when_asked(arch: str) -> None:
    x = torch.randn(1, 3, 64, 64)
    off, on = _module(False, arch, ["semseg", "depth"]), _module(True, arch, ["semseg", "depth"])
    on.load_state_dict(off.state_dict())
    with torch.no_grad():
        plain = off.eval_outputs(x)
        averaged = on.eval_outputs(x)
        expected = flip_averaged(off.net, x, ["semseg", "depth"])
        predicted = on.predict_step({"image": x}, 0)
    torch.testing.assert_close(plain["depth"], off.net(x)["depth"])
    for t in ("semseg", "depth"):
        torch.testing.assert_close(averaged[t], expected[t])
    assert torch.equal(predicted["semseg"], expected["semseg"].argmax(1))
    assert on.hparams.test_flip is True and off.hparams.test_flip is False


def test_test_flip_must_be_a_bool() -> None:
    with pytest.raises(ConfigError, match=r"--model.test_flip must be true or false, got 'no'"):
        MultiTaskModule(arch="mt_baseline", tasks="semseg,depth", dataset="nyud", test_flip="no")  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def nyud_synth(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("tta") / "NYUD_MT"
    generate("nyud", root, num_train=4, num_val=3, size=(64, 64), seed=3, workers=1)
    return root


def test_evaluate_flip_scores_the_averaged_outputs(nyud_synth: Path, tmp_path: Path) -> None:
    """``medusa evaluate --flip`` on a checkpoint trained without it: the depth RMSE of the flip-averaged outputs,
    computed here image by image; without --flip the checkpoint's own setting (off) holds."""
    module = _module(False, tasks=["semseg", "depth"])
    ckpt = tmp_path / "m.ckpt"
    torch.save({"state_dict": module.state_dict(), "hyper_parameters": dict(module.hparams)}, ckpt)
    outs = {}
    for flag in ("--flip", None):
        out = tmp_path / f"{flag}.json"
        args = ["evaluate", "--ckpt", str(ckpt), "--data", str(nyud_synth), "--size", "64x64", "--num-workers", "0",
                "--out", str(out)]
        assert cli_main(args + ([flag] if flag else [])) == 0
        outs[flag] = json.loads(out.read_text())
    assert outs["--flip"]["test_flip"] is True and outs[None]["test_flip"] is False

    data = MultiTaskDataModule(dataset="nyud", root=str(nyud_synth), tasks=["semseg", "depth"], size=(64, 64),
                               batch_size=1, num_workers=0)
    data.setup("test")
    metric = DepthMetric()
    with torch.no_grad():
        for sample in data.test_set:
            depth = flip_averaged(module.net, sample["image"][None], ["depth"])["depth"]
            metric.update(depth.clamp_min(0), sample["depth"][None])
    assert outs["--flip"]["metrics"]["depth"]["rmse"] == pytest.approx(metric.compute()["rmse"], rel=1e-6)
    assert outs["--flip"]["metrics"]["depth"]["rmse"] != outs[None]["metrics"]["depth"]["rmse"]


def test_predictor_flip_follows_the_module_unless_told(tmp_path: Path) -> None:
    image = np.random.default_rng(1).integers(0, 256, (64, 64, 3), dtype=np.uint8)
    on = _module(True, tasks=["semseg", "depth"])
    assert Predictor(on).flip is True and Predictor(on, flip=False).flip is False
    assert Predictor(_module(False, tasks=["semseg", "depth"])).flip is False
    p = Predictor(on, size=(64, 64))
    a, b = p.predict(image), p.predict(np.ascontiguousarray(image[:, ::-1]))
    np.testing.assert_allclose(b["depth"], a["depth"][:, ::-1], rtol=1e-4, atol=1e-5)  # mirror-equivariant
    plain = Predictor(on, size=(64, 64), flip=False).predict(image)
    assert not np.allclose(plain["depth"], a["depth"], atol=1e-6)
    assert "flip=True" in repr(p)


def test_a_profile_test_flip_reaches_every_run_and_its_fingerprint(tmp_path: Path) -> None:
    """A benchmark run of a profile with ``test_flip: true`` trains a module that scores flip-averaged outputs
    (its checkpoint says so, and its test metrics are those of evaluating that checkpoint so); the setting is
    part of the run's fingerprint (a run made without it is not reused), and a profile without it keeps the
    fingerprint it had before the option existed."""
    from medusa_mtl.reports.benchmark import Run, _fingerprint, dataset_root, ensure_dataset, execute_run

    spec = {"num_train": 6, "num_val": 2, "size": [64, 64], "scales": [1.0]}
    root = dataset_root(tmp_path / "data", "nyud", spec, 0)
    ensure_dataset(root, "nyud", spec, 0, lambda m: None)
    profile = {"seed": 0, "data": {"nyud": spec}, "hrnet_form": "timm", "test_flip": True,
               "loader": {"batch_size": 3, "num_workers": 0, "val_fraction": 0.34},
               "mtl": {"epochs": 1, "optimizer": "adam", "lr": 1e-3, "weight_decay": 1e-4}}
    run = Run("nyud/mt_baseline/s0", "mtl", "mt_baseline", "MT baseline", "HRHead", "nyud", ["semseg", "depth"],
              base="nyud/mt_baseline")
    record = execute_run(run, profile, {"nyud": root}, tmp_path / "out", {}, lambda m: None, progress=False)
    best = load_module(record["best_ckpt"])
    assert best.hparams.test_flip is True
    data = MultiTaskDataModule(dataset="nyud", root=str(root), tasks=["semseg", "depth"], size=(64, 64),
                               batch_size=3, num_workers=0)
    data.setup("test")
    assert evaluate_module(best, data.test_dataloader())["depth"]["rmse"] == pytest.approx(
        record["test"]["depth"]["rmse"], rel=1e-9)

    without = {k: v for k, v in profile.items() if k != "test_flip"}
    assert _fingerprint(run, profile, None) != _fingerprint(run, without, None)
    assert _fingerprint(run, {**without, "test_flip": False}, None) == _fingerprint(run, without, None)


def test_a_profile_channels_last_reaches_every_run_and_its_fingerprint(tmp_path: Path) -> None:
    """``channels_last: true`` in a profile trains its runs in the NHWC layout -- a NYUD run and a UFL run on its
    frozen backbone (the UFL module is built from the source checkpoint, a separate path) -- their checkpoints
    rebuild in that layout, and the setting is in the fingerprint (a profile without it keeps its old one)."""
    from medusa_mtl.reports.benchmark import Run, _fingerprint, dataset_root, ensure_dataset, execute_run

    nyud = {"num_train": 6, "num_val": 2, "size": [64, 64], "scales": [1.0]}
    pascal = {"num_train": 6, "num_val": 2, "size": [64, 64], "scales": [1.0], "rotation": 0}
    roots = {}
    for name, spec in (("nyud", nyud), ("pascal", pascal)):
        roots[name] = dataset_root(tmp_path / "data", name, spec, 0)
        ensure_dataset(roots[name], name, spec, 0, lambda m: None)
    optim = {"epochs": 1, "optimizer": "adam", "lr": 1e-3, "weight_decay": 1e-4}
    profile = {"seed": 0, "data": {"nyud": nyud, "pascal": pascal}, "hrnet_form": "timm", "channels_last": True,
               "loader": {"batch_size": 3, "num_workers": 0, "val_fraction": 0.34},
               "mtl": optim, "ufl": {**optim, "feature_cache": True}}
    mtl = Run("nyud/mt_baseline/s0", "mtl", "mt_baseline", "MT baseline", "HRHead", "nyud", ["semseg", "depth"],
              base="nyud/mt_baseline")
    ufl = Run("ufl/mt_baseline/s0", "ufl", "mt_baseline", "MT baseline", "HRHead", "pascal", ["sal"],
              source=mtl.key, base="ufl/mt_baseline")
    results: dict = {}
    for run in (mtl, ufl):
        results[run.key] = execute_run(run, profile, roots, tmp_path / "out", results, lambda m: None,
                                       progress=False)
        best = load_module(results[run.key]["best_ckpt"])
        assert best.hparams.channels_last is True and best.channels_last
        conv = next(p for p in best.net.parameters() if p.dim() == 4 and p.shape[1] > 1)
        assert conv.is_contiguous(memory_format=torch.channels_last)
    assert results[ufl.key]["test"]["sal"]["mIoU"] >= 0
    without = {k: v for k, v in profile.items() if k != "channels_last"}
    assert _fingerprint(mtl, profile, None) != _fingerprint(mtl, without, None)
    assert _fingerprint(mtl, {**without, "channels_last": False}, None) == _fingerprint(mtl, without, None)
