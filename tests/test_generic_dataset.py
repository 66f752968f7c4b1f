"""Tasks declared in a ``dataset.yaml`` are first-class: every kind reads, transforms, trains and scores; every
model trains on them; UFL adds them to a NYUD model (source outputs bit-identical, chains of steps); checkpoints
rebuild the declared tasks without the dataset; ``medusa fit / ufl / evaluate / predict`` take the YAML."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from cli_helpers import run_cli
from medusa_mtl import Predictor
from medusa_mtl.data import generic
from medusa_mtl.data.datasets import build_dataset, collate, get_dataset_info
from medusa_mtl.engine.evaluation import load_module
from medusa_mtl.engine.training import MultiTaskModule
from medusa_mtl.engine.ufl import ufl_module_from_checkpoint
from medusa_mtl.models import list_models
from medusa_mtl.tasks import TASKS, forget_dataset, get_task

H, W = 36, 44
ALL_KINDS = """
tasks:
  drivable: {kind: binary}
  lanes: {kind: segmentation, classes: [{name: bg, color: [0, 0, 0]}, {name: solid, color: [255, 255, 0]},
                                        {name: dashed, color: [0, 255, 255]}]}
  lanes_rgb: {kind: segmentation, folder: lanes_rgb,
              classes: [{name: bg, color: [0, 0, 0]}, {name: solid, color: [255, 255, 0]},
                        {name: dashed, color: [0, 255, 255]}]}
  distance: {kind: depth, scale: 0.001}
  surface: {kind: normals}
  outline: {kind: edge}
  heat: {kind: regression, channels: 2, loss: l2}
"""


def write_generic(root: Path, name: str, n: int = 10, seed: int = 0, tasks_yaml: str = ALL_KINDS) -> Path:
    """A tiny generic dataset with one task of every kind (PNG 8/16-bit, palette, RGB-coded, npy)."""
    rng = np.random.default_rng(seed)
    for d in ("images", "drivable", "lanes", "lanes_rgb", "distance", "surface", "outline", "heat", "splits"):
        (root / d).mkdir(parents=True, exist_ok=True)
    ids = [f"img{i:03d}" for i in range(n)]
    colors = np.array([[0, 0, 0], [255, 255, 0], [0, 255, 255]], np.uint8)
    for i in ids:
        img = rng.integers(0, 255, (H, W, 3), dtype=np.uint8)
        img[:, : W // 2] //= 3  # something to learn: the dark half is "drivable", class 1
        Image.fromarray(img).save(root / "images" / f"{i}.png")
        mask = np.zeros((H, W), np.uint8)
        mask[:, : W // 2] = 255
        Image.fromarray(mask).save(root / "drivable" / f"{i}.png")
        lanes = (mask > 0).astype(np.uint8)
        lanes[-1, :] = 2
        lanes[0, 0] = 255  # ignore
        pal = Image.fromarray(lanes, mode="P")
        pal.putpalette([0] * 768)
        pal.save(root / "lanes" / f"{i}.png")
        Image.fromarray(colors[np.minimum(lanes, 2)]).save(root / "lanes_rgb" / f"{i}.png")
        depth = (1000 + 2000 * (mask > 0)).astype(np.uint16)
        depth[0, :3] = 0  # invalid
        Image.fromarray(depth).save(root / "distance" / f"{i}.png")
        normals = np.zeros((H, W, 3), np.uint8)
        normals[...] = (128, 255, 128)  # facing up
        normals[1, 1] = 0  # invalid
        Image.fromarray(normals).save(root / "surface" / f"{i}.png")
        edge = np.zeros((H, W), np.uint8)
        edge[:, W // 2] = 1
        Image.fromarray(edge).save(root / "outline" / f"{i}.png")
        heat = rng.random((H, W, 2)).astype(np.float32)
        heat[2, 2, 1] = np.nan
        np.save(root / "heat" / f"{i}.npy", heat)
    (root / "splits" / "train.txt").write_text("\n".join(ids[: n - 3]) + "\n")
    (root / "splits" / "val.txt").write_text("\n".join(ids[n - 3 :]) + "\n")
    (root / "dataset.yaml").write_text(f"name: {name}\nsize: [32, 32]\n{tasks_yaml}")
    return root / "dataset.yaml"


@pytest.fixture(scope="module")
def roads(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_generic(tmp_path_factory.mktemp("roads"), "roads_t")


def _save(module: MultiTaskModule, path: Path) -> Path:
    torch.save({"state_dict": module.state_dict(), "hyper_parameters": dict(module.hparams)}, path)
    return path


def test_every_kind_reads_transforms_and_batches(roads: Path) -> None:
    info = get_dataset_info(str(roads))
    assert info.name == "roads_t" and len(info.tasks) == 7
    assert {t: get_task(t).label_kind for t in info.tasks} == {
        "drivable": "binary", "lanes": "segmentation", "lanes_rgb": "segmentation", "distance": "depth",
        "surface": "normals", "outline": "edge", "heat": "regression"}
    raw = build_dataset("roads_t", roads.parent, "train", list(info.tasks), train=False).read_numpy(0)
    assert raw["lanes"][0, 0] == 255 and raw["lanes"][1, 0] == 1 and raw["lanes"][-1, 5] == 2
    np.testing.assert_array_equal(raw["lanes_rgb"][1:], raw["lanes"][1:])  # colour-coded = index-coded
    assert raw["distance"][0, 0] == 0 and raw["distance"][5, 0] == pytest.approx(3.0)  # mm -> m, 0 invalid
    assert np.all(raw["surface"][1, 1] == 0) and raw["surface"][5, 5, 1] == pytest.approx(1.0, abs=0.01)
    assert set(np.unique(raw["drivable"])) == {0.0, 1.0} and raw["outline"].sum() == H
    assert raw["heat"].shape == (H, W, 2) and np.isnan(raw["heat"][2, 2, 1])
    ds = build_dataset("roads_t", roads.parent, "train", list(info.tasks), train=True, size=(32, 32))
    batch = collate([ds[0], ds[1]])
    shapes = {k: tuple(v.shape) for k, v in batch.items() if k != "meta"}
    assert shapes == {"image": (2, 3, 32, 32), "drivable": (2, 1, 32, 32), "lanes": (2, 32, 32),
                      "lanes_rgb": (2, 32, 32), "distance": (2, 1, 32, 32), "surface": (2, 3, 32, 32),
                      "outline": (2, 1, 32, 32), "heat": (2, 2, 32, 32)}


def test_every_kind_has_loss_metric_and_sign(roads: Path) -> None:
    get_dataset_info(str(roads))
    expected = {"drivable": ("mIoU", 1), "lanes": ("mIoU", 1), "distance": ("rmse", -1), "surface": ("mean", -1),
                "outline": ("odsF", 1), "heat": ("rmse", -1)}
    for name, (metric, sign) in expected.items():
        task = get_task(name)
        assert (task.dm_metric, task.sign) == (metric, sign)
        c = task.channels("roads_t")
        raw = torch.randn(2, c, 8, 8, requires_grad=True)
        target = {"segmentation": torch.randint(0, c, (2, 8, 8)), "binary": (torch.rand(2, 1, 8, 8) > 0.5).float(),
                  "edge": (torch.rand(2, 1, 8, 8) > 0.9).float(), "depth": torch.rand(2, 1, 8, 8) + 0.5,
                  "normals": torch.nn.functional.normalize(torch.randn(2, 3, 8, 8), dim=1),
                  "regression": torch.randn(2, c, 8, 8)}[task.label_kind]
        loss = task.loss(raw, target)
        loss.backward()
        assert torch.isfinite(loss) and raw.grad is not None
        metric = task.make_metric("roads_t")
        metric.update(task.postprocess(raw.detach()), target)
        assert np.isfinite(metric.compute()[metric_key := task.dm_metric]), metric_key


@pytest.mark.parametrize("arch", list_models())
def test_every_model_trains_on_declared_tasks(roads: Path, arch: str) -> None:
    tasks = ["drivable", "lanes", "distance", "heat"] if arch != "single_task" else ["heat"]
    module = MultiTaskModule(arch=arch, tasks=tasks, dataset=str(roads), backbone="test_efficientnet")
    assert module.hparams["dataset"] == "roads_t" and module.hparams["dataset_specs"][0]["name"] == "roads_t"
    ds = build_dataset("roads_t", roads.parent, "train", tasks, train=True, size=(32, 32))
    batch = collate([ds[0], ds[1]])
    loss, parts = module.compute_loss(module(batch["image"]), batch)
    loss.backward()
    assert torch.isfinite(loss) and set(tasks) <= set(parts)


def test_ufl_adds_declared_tasks_to_a_nyud_model_and_chains(roads: Path, tmp_path: Path) -> None:
    second = write_generic(tmp_path / "more", "more_t", seed=1, tasks_yaml="tasks:\n  heat2: {kind: regression}\n"
                           "  drivable: {kind: binary}\n")
    (tmp_path / "more" / "heat2").mkdir()
    for f in (tmp_path / "more" / "heat").iterdir():
        np.save(tmp_path / "more" / "heat2" / f.name, np.load(f)[..., 0])
    torch.manual_seed(0)
    x = torch.randn(2, 3, 32, 32)
    source = MultiTaskModule(arch="mt_baseline", tasks="semseg,depth", dataset="nyud", backbone="test_efficientnet")
    a = _save(source.eval(), tmp_path / "a.ckpt")
    step1 = ufl_module_from_checkpoint(a, "lanes,distance", str(roads))
    assert step1.main_tasks == ["lanes", "distance"] and step1.eval_dataset == "roads_t"
    b = _save(step1, tmp_path / "b.ckpt")
    step2 = ufl_module_from_checkpoint(b, "heat2", str(second))
    for p in step2.parameters():
        if p.requires_grad:  # the new heads only (the backbone is shared and frozen)
            torch.nn.init.normal_(p, std=0.1)
    c = _save(step2, tmp_path / "c.ckpt")
    # a fresh registry: the checkpoint alone rebuilds every declared task
    forget_dataset("roads_t")
    forget_dataset("more_t")
    assert "lanes" not in TASKS and "heat2" not in TASKS
    with torch.no_grad():
        final = load_module(c).net.forward_all(x)
        src = load_module(a).net(x)
        mid = load_module(b).net.forward_all(x)
    assert list(final) == ["semseg", "depth", "lanes", "distance", "heat2"]
    for t in ("semseg", "depth"):
        assert torch.equal(final[t], src[t])
    for t in ("lanes", "distance"):
        assert torch.equal(final[t], mid[t])
    predictor = Predictor.from_checkpoint(c, size=(32, 32))
    out = predictor.predict(np.zeros((H, W, 3), np.uint8))
    assert set(out) == {"semseg", "depth", "lanes", "distance", "heat2"} and out["lanes"].shape == (H, W)
    assert predictor.task_datasets["heat2"] == "more_t"


def test_cli_fit_evaluate_predict_on_a_dataset_yaml(roads: Path, tmp_path: Path) -> None:
    tasks = "drivable,lanes,distance,surface,outline,heat"
    rc, out, err = run_cli([
        "fit", "--data.dataset", str(roads), "--model.dataset", str(roads), "--model.tasks", tasks,
        "--model.arch", "medusa", "--model.backbone", "test_efficientnet", "--model.edge_thresholds", "9",
        "--data.batch_size", "2", "--data.num_workers", "0", "--data.size", "[32, 32]",
        "--trainer.max_epochs", "1", "--trainer.default_root_dir", str(tmp_path / "run"),
        "--trainer.enable_progress_bar", "false", "--seed_everything", "7"])
    assert rc == 0, err
    ckpt = tmp_path / "run" / "checkpoints" / "last.ckpt"
    assert ckpt.is_file()
    # the training seed travels with the weights (config.yaml stays behind when a checkpoint is shared)
    assert torch.load(ckpt, map_location="cpu", weights_only=True)["training_seed"] == 7
    forget_dataset("roads_t")
    rc, out, err = run_cli(["evaluate", "--ckpt", str(ckpt), "--data", str(roads), "--num-workers", "0",
                            "--size", "32x32", "--out", str(tmp_path / "m.json")])
    assert rc == 0, err
    written = json.loads((tmp_path / "m.json").read_text())
    metrics = written["metrics"]
    assert set(metrics) == set(tasks.split(",")) and "rmse" in metrics["heat"] and "odsF" in metrics["outline"]
    assert written["training_seed"] == 7
    rc, out, err = run_cli(["predict", "--ckpt", str(ckpt), "--images", str(roads.parent / "images"),
                            "--out", str(tmp_path / "pred"), "--raw"])
    assert rc == 0, err
    first = tmp_path / "pred" / "img000"
    for name in ("panel.png", "lanes.png", "heat.png", "raw/lanes_index.png", "raw/distance_mm.png",
                 "raw/heat.npy", "raw/drivable_prob.png", "raw/surface.npy"):
        assert (first / name).is_file(), name
    # the declared class colours are used for the picture
    lanes_rgb = np.asarray(Image.open(first / "lanes.png"))
    assert {tuple(c) for c in lanes_rgb.reshape(-1, 3)} <= {(0, 0, 0), (255, 255, 0), (0, 255, 255)}


def test_ufl_cli_with_data_yaml(roads: Path, tmp_path: Path) -> None:
    source = MultiTaskModule(arch="medusa", tasks="semseg,depth", dataset="nyud", backbone="test_efficientnet")
    a = _save(source, tmp_path / "a.ckpt")
    rc, out, err = run_cli(["ufl", "--source-ckpt", str(a), "--data", str(roads), "--tasks", "drivable,lanes",
                            "--epochs", "1", "--batch-size", "2", "--size", "32x32", "--out", str(tmp_path / "u")])
    assert rc == 0, err
    report = json.loads((tmp_path / "u" / "ufl_metrics.json").read_text())
    assert report["dataset"] == "roads_t" and set(report["metrics"]) == {"drivable", "lanes"}
    module = load_module(tmp_path / "u" / "checkpoints" / "last.ckpt")
    assert module.main_tasks == ["drivable", "lanes"]


def test_ufl_trained_from_python_with_path_arguments_writes_a_loadable_checkpoint(roads: Path,
                                                                                   tmp_path: Path) -> None:
    # pathlib.Path for the dataset.yaml / root (as ufl_module_from_checkpoint takes them): the checkpoint must stay
    # loadable with weights_only=True (a PosixPath in the recorded hyper-parameters made every loader refuse it
    # as "pickled Python objects")
    import lightning as L

    from medusa_mtl.engine.training import MultiTaskDataModule

    source = MultiTaskModule(arch="medusa", tasks="semseg,depth", dataset="nyud", backbone="test_efficientnet")
    a = _save(source, tmp_path / "a.ckpt")
    module = ufl_module_from_checkpoint(a, ["drivable"], roads)
    data = MultiTaskDataModule(dataset=roads, root=roads.parent, size=(32, 32), batch_size=2, num_workers=0)
    trainer = L.Trainer(max_epochs=1, limit_train_batches=1, limit_val_batches=0, logger=False,
                        enable_progress_bar=False, enable_model_summary=False, enable_checkpointing=False,
                        default_root_dir=str(tmp_path))
    trainer.fit(module, data)
    trainer.save_checkpoint(tmp_path / "u.ckpt")
    recorded = torch.load(tmp_path / "u.ckpt", map_location="cpu", weights_only=True)["datamodule_hyper_parameters"]
    assert recorded["dataset"] == str(roads) and recorded["root"] == str(roads.parent)
    predictor = Predictor.from_checkpoint(tmp_path / "u.ckpt")
    assert predictor.tasks == ["semseg", "depth", "drivable"] and predictor.size == (32, 32)
    torch.save(source.net.backbone.body.state_dict(), tmp_path / "backbone.pth")
    pretrained = MultiTaskModule(arch="medusa", tasks="semseg", dataset="nyud", backbone="test_efficientnet",
                                 pretrained_file=tmp_path / "backbone.pth")
    saved = torch.load(_save(pretrained, tmp_path / "p.ckpt"), map_location="cpu", weights_only=True)
    assert saved["hyper_parameters"]["pretrained_file"] == str(tmp_path / "backbone.pth")


def test_declared_names_conflicting_with_builtin_tasks_are_refused(tmp_path: Path) -> None:
    spec = generic.spec_from_dict({"name": "clash_t", "tasks": {"depth": {"kind": "segmentation",
                                                                          "classes": ["a", "b"]}}})
    from medusa_mtl.data.datasets import register_spec

    with pytest.raises(generic.DatasetSpecError, match="depth.*conflicts"):
        register_spec(spec)
    assert get_task("depth").label_kind == "depth" and "clash_t" not in get_task("depth").out_channels
    # the same kind under a built-in name extends it to the new dataset
    register_spec(generic.spec_from_dict({"name": "ext_t", "tasks": {"semseg": {"kind": "segmentation",
                                                                               "classes": ["a", "b", "c"]}}}))
    assert get_task("semseg").channels("ext_t") == 3 and get_task("semseg").channels("nyud") == 40
    forget_dataset("ext_t")
    assert "ext_t" not in get_task("semseg").out_channels


@pytest.mark.parametrize("mutation, field", [
    (lambda t: t.replace("kind: binary", "kind: mask"), "tasks.drivable.kind"),
    (lambda t: t.replace("heat: {kind: regression, channels: 2, loss: l2}", "heat: {kind: segmentation}"),
     "tasks.heat.classes"),
    (lambda t: t.replace("size: [32, 32]", "size: [30, 32]"), "size"),
    (lambda t: t.replace("loss: l2", "loss: huber"), "tasks.heat.loss"),
    (lambda t: t + "  extra: {kind: binary, colour: red}\n", "tasks.extra.colour"),
])
def test_malformed_yaml_is_one_clear_error_and_writes_nothing(tmp_path: Path, mutation, field: str) -> None:
    yaml_path = write_generic(tmp_path / "bad", "bad_t", n=5)
    yaml_path.write_text(mutation(yaml_path.read_text()))
    source = MultiTaskModule(arch="mt_baseline", tasks="semseg", dataset="nyud", backbone="test_efficientnet")
    a = _save(source, tmp_path / "a.ckpt")
    before = a.read_bytes()
    for argv in (["ufl", "--source-ckpt", str(a), "--data", str(yaml_path), "--tasks", "drivable",
                  "--epochs", "1", "--out", str(tmp_path / "u")],
                 ["fit", "--data.dataset", str(yaml_path), "--model.dataset", str(yaml_path),
                  "--model.tasks", "drivable", "--model.backbone", "test_efficientnet",
                  "--trainer.default_root_dir", str(tmp_path / "f")]):
        rc, out, err = run_cli(argv)
        lines = [line for line in err.splitlines() if line.strip()]
        assert rc == 2 and len(lines) == 1 and "Traceback" not in err, err
        assert str(yaml_path) in lines[0] and f"field {field!r}" in lines[0], lines[0]
    assert not (tmp_path / "u").exists() and not (tmp_path / "f").exists()
    assert a.read_bytes() == before


def test_bad_label_files_name_the_file(tmp_path: Path) -> None:
    yaml_path = write_generic(tmp_path / "d", "badlab_t", n=5)
    root = yaml_path.parent
    Image.fromarray(np.full((H, W), 7, np.uint8)).save(root / "lanes" / "img001.png")  # class 7 of 3
    Image.fromarray(np.zeros((H + 2, W), np.uint8)).save(root / "drivable" / "img002.png")  # wrong size
    Image.fromarray(np.zeros((H, W), np.uint16)).save(root / "outline" / "img000.png")  # 16-bit, 8 declared
    spec = generic.load_spec(yaml_path)
    cases = {("lanes", "img001"): r"values \[7\] are neither classes", ("drivable", "img002"): "does not match",
             ("outline", "img000"): "16-bit PNG"}
    for (task, sid), text in cases.items():
        path = root / spec.task(task).folder / f"{sid}.png"
        with pytest.raises(generic.DataFormatError, match=text) as info:
            generic.read_label(path, spec.task(task), (H, W))
        assert str(path) in str(info.value)


def test_float_npy_segmentation_labels_must_hold_whole_class_indices(tmp_path: Path) -> None:
    # whole-valued floats are class indices; 2.5 or NaN must not be cast to a class (astype truncates 2.5 to 2)
    task = generic.TaskSpec(name="lanes", kind="segmentation", folder="lanes", channels=3,
                            classes=("bg", "solid", "dashed"))
    whole = np.zeros((4, 4), np.float32)
    whole[1, 1] = 2.0
    np.save(tmp_path / "whole.npy", whole)
    assert generic.read_label(tmp_path / "whole.npy", task)[1, 1] == 2
    for name, value in (("half", 2.5), ("nan", np.nan)):
        arr = whole.copy()
        arr[2, 2] = value
        np.save(tmp_path / f"{name}.npy", arr)
        with pytest.raises(generic.DataFormatError, match="must be whole numbers") as info:
            generic.read_label(tmp_path / f"{name}.npy", task)
        assert str(tmp_path / f"{name}.npy") in str(info.value)


def test_ufl_on_a_bad_label_stops_with_the_file_and_writes_no_checkpoint(tmp_path: Path) -> None:
    yaml_path = write_generic(tmp_path / "d", "badufl_t", n=6)
    bad = yaml_path.parent / "lanes" / "img000.png"
    Image.fromarray(np.full((H, W), 9, np.uint8)).save(bad)  # class 9 of 3
    source = MultiTaskModule(arch="mt_baseline", tasks="semseg", dataset="nyud", backbone="test_efficientnet")
    a = _save(source, tmp_path / "a.ckpt")
    before = a.read_bytes()
    rc, out, err = run_cli(["ufl", "--source-ckpt", str(a), "--data", str(yaml_path), "--tasks", "lanes",
                            "--epochs", "1", "--batch-size", "2", "--size", "32x32", "--out", str(tmp_path / "u")])
    lines = [line for line in err.splitlines() if line.strip()]
    assert rc == 2 and len(lines) == 1 and str(bad) in lines[0] and "values [9]" in lines[0], err
    assert not list((tmp_path / "u").rglob("*.ckpt")) and a.read_bytes() == before


def test_delta_m_of_declared_tasks_against_single_task_results(roads: Path, tmp_path: Path) -> None:
    from medusa_mtl.tasks import delta_m

    get_dataset_info(str(roads))
    single = {"drivable": {"mIoU": 50.0}, "distance": {"rmse": 2.0}, "heat": {"rmse": 0.5}}
    multi = {"drivable": {"mIoU": 55.0}, "distance": {"rmse": 1.8}, "heat": {"rmse": 0.6}}
    # +10 % (higher is better), +10 % (lower is better), -20 % (lower is better)
    assert delta_m(multi, single, ["drivable", "distance", "heat"]) == pytest.approx(0.0)
    assert delta_m(multi, single, ["drivable", "distance"]) == pytest.approx(10.0)
    st_file = tmp_path / "st.json"
    st_file.write_text(json.dumps({"metrics": single}))
    module = MultiTaskModule(arch="mt_baseline", tasks="drivable,distance,heat", dataset=str(roads),
                             backbone="test_efficientnet")
    ckpt = _save(module, tmp_path / "m.ckpt")
    rc, out, err = run_cli(["evaluate", "--ckpt", str(ckpt), "--data", str(roads), "--num-workers", "0",
                            "--size", "32x32", "--single-task", str(st_file), "--out", str(tmp_path / "e.json")])
    assert rc == 0, err
    report = json.loads((tmp_path / "e.json").read_text())
    assert report["delta_m"] == pytest.approx(delta_m(report["metrics"], single, ["drivable", "distance", "heat"]))


def test_fit_with_a_missing_task_folder_names_it_before_writing_anything(tmp_path: Path) -> None:
    yaml_path = write_generic(tmp_path / "d", "nofolder_t", n=5)
    (yaml_path.parent / "heat").rename(yaml_path.parent / "heat_old")
    rc, out, err = run_cli(["fit", "--data.dataset", str(yaml_path), "--model.dataset", str(yaml_path),
                            "--model.tasks", "drivable", "--model.backbone", "test_efficientnet",
                            "--trainer.default_root_dir", str(tmp_path / "f")])
    lines = [line for line in err.splitlines() if line.strip()]
    assert rc == 2 and len(lines) == 1 and str(yaml_path.parent / "heat") in lines[0], err
    assert "missing folder" in lines[0] and not (tmp_path / "f").exists()


def test_a_module_unpickled_elsewhere_declares_its_tasks_again(roads: Path) -> None:
    import pickle

    module = MultiTaskModule(arch="mt_baseline", tasks="lanes,heat", dataset=str(roads), backbone="test_efficientnet")
    blob = pickle.dumps(module)
    forget_dataset("roads_t")  # as in a fresh process (ddp_spawn, spawned workers)
    assert "lanes" not in TASKS
    clone = pickle.loads(blob)
    assert get_task("lanes").channels("roads_t") == 3 and clone.main_tasks == ["lanes", "heat"]


def test_the_documented_dataset_yaml_is_valid() -> None:
    # docs/DATASETS.md's example gave one class of three a colour, which its own check refuses
    import re

    import yaml

    from medusa_mtl.data.generic import spec_from_dict

    doc = (Path(__file__).resolve().parents[1] / "docs" / "DATASETS.md").read_text()
    example = re.search(r"## `dataset.yaml`\n\n```yaml\n(.*?)```", doc, re.S).group(1)
    spec = spec_from_dict(yaml.safe_load(example))
    assert [t.name for t in spec.tasks] == ["drivable", "lanes", "distance", "heat"]


def test_a_class_added_to_the_dataset_yaml_after_training_is_refused(tmp_path: Path) -> None:
    # the folder's declaration replaced the checkpoint's: evaluate ended in "IndexError: Target 3 is out of
    # bounds" from the loss (data check found nothing: the labels fit the new declaration)
    import shutil

    tasks_yaml = "tasks:\n  lanes: {kind: segmentation, classes: [bg, solid, dashed]}\n"
    yaml_path = write_generic(tmp_path / "lanes", "lanes_t", tasks_yaml=tasks_yaml)
    rc, _, err = run_cli([
        "fit", "--data.dataset", str(yaml_path), "--model.dataset", str(yaml_path), "--model.tasks", "lanes",
        "--model.arch", "mt_baseline", "--model.backbone", "test_efficientnet", "--data.batch_size", "2",
        "--data.num_workers", "0", "--data.size", "[32, 32]", "--trainer.max_epochs", "1",
        "--trainer.limit_train_batches", "1", "--trainer.default_root_dir", str(tmp_path / "run"),
        "--trainer.enable_progress_bar", "false"])
    assert rc == 0, err
    changed = tmp_path / "changed"
    shutil.copytree(yaml_path.parent, changed)
    (changed / "dataset.yaml").write_text("name: lanes_t\nsize: [32, 32]\ntasks:\n"
                                          "  lanes: {kind: segmentation, classes: [bg, solid, dashed, extra]}\n")
    label = np.asarray(Image.open(changed / "lanes" / "img008.png")).copy()
    label[:4, :4] = 3
    Image.fromarray(label).save(changed / "lanes" / "img008.png")
    rc, _, err = run_cli(["evaluate", "--ckpt", str(tmp_path / "run" / "checkpoints" / "last.ckpt"), "--data",
                          str(changed), "--num-workers", "0"])
    lines = [line for line in err.splitlines() if line.startswith("medusa evaluate: error:")]
    assert rc == 2 and len(lines) == 1 and "Traceback" not in err, err[-3000:]
    assert "task 'lanes' with 4 classes against 3" in lines[0]
    # as many classes under other names (or in another order) passed: the network's class 1 was scored as 'dashed'
    (changed / "dataset.yaml").write_text("name: lanes_t\nsize: [32, 32]\ntasks:\n"
                                          "  lanes: {kind: segmentation, classes: [bg, dashed, solid]}\n")
    shutil.copy(yaml_path.parent / "lanes" / "img008.png", changed / "lanes" / "img008.png")
    rc, _, err = run_cli(["evaluate", "--ckpt", str(tmp_path / "run" / "checkpoints" / "last.ckpt"), "--data",
                          str(changed), "--num-workers", "0"])
    lines = [line for line in err.splitlines() if line.startswith("medusa evaluate: error:")]
    assert rc == 2 and len(lines) == 1 and "Traceback" not in err, err[-3000:]
    assert str(changed / "dataset.yaml") in lines[0] and "task 'lanes'" in lines[0], lines[0]
    assert "['bg', 'dashed', 'solid']" in lines[0] and "['bg', 'solid', 'dashed']" in lines[0], lines[0]


def test_ufl_on_a_dataset_yaml_reusing_the_source_datasets_name(tmp_path: Path) -> None:
    # a new dataset.yaml with the source dataset's `name:` replaces the source's declaration: a class count
    # changed ended in torch's "size mismatch for heads.lanes..." traceback from load_state_dict, a task left
    # out in "--model.tasks: unknown task" (medusa ufl has no such option)
    import shutil

    tasks_yaml = "tasks:\n  lanes: {kind: segmentation, classes: [bg, solid, dashed]}\n"
    yaml_path = write_generic(tmp_path / "lanes", "same_t", tasks_yaml=tasks_yaml)
    source = MultiTaskModule(arch="mt_baseline", tasks="lanes", dataset=str(yaml_path), backbone="test_efficientnet")
    a = _save(source, tmp_path / "a.ckpt")
    forget_dataset("same_t")
    new_task = "  lanes2: {kind: segmentation, folder: lanes, classes: [bg, solid, dashed]}\n"
    variants = {
        "changed": "  lanes: {kind: segmentation, classes: [bg, solid, dashed, extra]}\n" + new_task,
        "renamed": "  lanes: {kind: segmentation, classes: [bg, dashed, solid]}\n" + new_task,
        "dropped": new_task,
        "kept": "  lanes: {kind: segmentation, classes: [bg, solid, dashed]}\n" + new_task,
    }
    for what, tasks in variants.items():
        root = tmp_path / what
        shutil.copytree(yaml_path.parent, root)
        (root / "dataset.yaml").write_text(f"name: same_t\nsize: [32, 32]\ntasks:\n{tasks}")
        rc, _, err = run_cli(["ufl", "--source-ckpt", str(a), "--data", str(root / "dataset.yaml"), "--tasks",
                              "lanes2", "--epochs", "1", "--batch-size", "2", "--out", str(tmp_path / f"u_{what}")])
        if what == "kept":  # the source's declaration plus a task: one more step on the same dataset
            assert rc == 0, err[-3000:]
            continue
        lines = [line for line in err.splitlines() if line.startswith("medusa ufl: error:")]
        assert rc == 2 and len(lines) == 1 and "Traceback" not in err, err[-3000:]
        assert str(root / "dataset.yaml") in lines[0] and "'lanes'" in lines[0] and "same_t" in lines[0], lines[0]
        if what == "renamed":  # the frozen head's class 1 is 'solid': the same count under other names passed
            assert "['bg', 'dashed', 'solid']" in lines[0] and "['bg', 'solid', 'dashed']" in lines[0], lines[0]
        assert not (tmp_path / f"u_{what}" / "checkpoints").exists()
    forget_dataset("same_t")


def test_create_model_given_a_dataset_yaml_path_says_how_to_read_it(roads: Path) -> None:
    from medusa_mtl import create_model

    with pytest.raises(ValueError, match=r"unknown dataset .*dataset\.yaml.*get_dataset_info"):
        create_model("medusa", tasks=["drivable"], dataset=str(roads))
    info = get_dataset_info(str(roads))  # the way the message names: then the name is accepted
    model = create_model("medusa", tasks=["drivable"], dataset=info.name)
    assert model.tasks == ["drivable"]
