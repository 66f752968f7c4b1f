"""``medusa predict`` and the colourisation helpers: PNGs per task at the original image size, fixed palette,
Medusa's attention figures, clear errors for corrupt images and empty folders.

Models run on tiny inputs (64 x 64 network size) so that the file runs on a couple of CPU cores.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image

from medusa_mtl import Predictor
from medusa_mtl.cli import main
from medusa_mtl.engine.training import MultiTaskModule
from medusa_mtl.models import list_models
from medusa_mtl.reports import visualize as vis
from medusa_mtl.reports.predict import (
    attention_arrays,
    list_images,
    predict_folder_to_panels,
    predict_images,
    resolve_size,
    save_prediction_pngs,
)

SIZES = {"a": (64, 64), "b": (70, 90)}  # (H, W) of the test images; b checks the resize back


def make_module(arch: str, tasks: str = "semseg,depth", **kw: Any) -> MultiTaskModule:
    """A MultiTaskModule whatever the name of its architecture argument (``arch`` or ``model``)."""
    key = "arch" if "arch" in inspect.signature(MultiTaskModule.__init__).parameters else "model"
    torch.manual_seed(0)
    return MultiTaskModule(**{key: arch}, tasks=tasks, dataset="nyud", **kw)


def save_ckpt(module: MultiTaskModule, path: Path, **extra: Any) -> Path:
    """Save a checkpoint the way training does (state_dict + hyper_parameters)."""
    torch.save({"state_dict": module.state_dict(), "hyper_parameters": dict(module.hparams), **extra}, path)
    return path


@pytest.fixture(scope="module")
def baseline(tmp_path_factory: pytest.TempPathFactory) -> tuple[MultiTaskModule, Path]:
    module = make_module("mt_baseline")
    return module, save_ckpt(module, tmp_path_factory.mktemp("ckpt") / "mt_baseline.ckpt")


@pytest.fixture
def images(tmp_path: Path) -> Path:
    """A folder with a 64x64 JPEG, a 70x90 PNG and a file that is not an image (ignored)."""
    folder = tmp_path / "images"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for (name, (h, w)), ext in zip(SIZES.items(), (".jpg", ".png")):
        Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)).save(folder / f"{name}{ext}")
    (folder / "notes.txt").write_text("not an image")
    return folder


def run_cli(*args: str | Path) -> int:
    return main(["predict", *map(str, args)])


def check_png(path: Path, hw: tuple[int, int]) -> np.ndarray:
    assert path.is_file(), path
    with Image.open(path) as im:
        assert im.mode == "RGB", (path, im.mode)
        assert (im.height, im.width) == hw, (path, im.size)
        return np.asarray(im)


def test_cli_writes_pngs_at_original_size(baseline: tuple[MultiTaskModule, Path], images: Path, tmp_path: Path,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    _, ckpt = baseline
    out = tmp_path / "out"
    assert run_cli("--ckpt", ckpt, "--images", images, "--out", out, "--size", "64x64") == 0
    stdout = capsys.readouterr().out
    assert "has no attention maps" in stdout
    assert sorted(p.name for p in out.iterdir()) == ["a", "b"]
    palette = {tuple(c) for c in vis.label_palette(40)}
    for name, hw in SIZES.items():
        d = out / name
        for f in ("input", "semseg", "depth"):
            check_png(d / f"{f}.png", hw)
        seg = check_png(d / "semseg.png", hw)
        assert {tuple(c) for c in seg.reshape(-1, 3)} <= palette
        with Image.open(d / "panel.png") as im:
            assert im.width > im.height  # input + 2 tasks side by side
        assert not (d / "sfa.png").exists() and not (d / "msa.png").exists()
    one = tmp_path / "one"  # --images may name one image
    assert run_cli("--ckpt", ckpt, "--images", images / "b.png", "--out", one, "--size", "64x64") == 0
    assert sorted(p.name for p in one.iterdir()) == ["b"]
    check_png(one / "b" / "depth.png", SIZES["b"])


def test_training_size_recorded_in_checkpoint(baseline: tuple[MultiTaskModule, Path], images: Path,
                                              tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    module, _ = baseline
    ckpt = save_ckpt(module, tmp_path / "sized.ckpt", datamodule_hyper_parameters={"size": (64, 96)})
    assert run_cli("--ckpt", ckpt, "--images", images, "--out", tmp_path / "out", "--no-attention") == 0
    stdout = capsys.readouterr().out
    assert "64x96 (the checkpoint's training size)" in stdout
    assert "attention" not in stdout
    check_png(tmp_path / "out" / "b" / "depth.png", SIZES["b"])


def test_resolve_size_defaults_to_dataset(baseline: tuple[MultiTaskModule, Path]) -> None:
    module, _ = baseline
    assert resolve_size(module) == ((480, 640), "the nyud default")
    assert resolve_size(module, (64, 96))[0] == (64, 96)
    with pytest.raises(ValueError, match="multiples of 32"):
        resolve_size(module, (60, 96))


def test_predict_images_api(baseline: tuple[MultiTaskModule, Path], images: Path, tmp_path: Path) -> None:
    module, _ = baseline
    (images / "._a.jpg").write_bytes(b"\x00\x05\x16\x07 macOS metadata")  # hidden: not an image
    paths = list_images(images)
    assert [p.name for p in paths] == ["a.jpg", "b.png"]
    assert list_images(images / "b.png") == [images / "b.png"]  # one image file
    with pytest.raises(ValueError, match="notes.txt: not an image"):
        list_images(images / "notes.txt")
    preds = predict_images(module, paths, size=(64, 64))
    assert [sorted(p) for p in preds] == [["depth", "semseg"]] * 2
    for p, hw in zip(preds, SIZES.values()):
        assert p["semseg"].shape == hw and p["semseg"].dtype == np.int64
        assert 0 <= p["semseg"].min() and p["semseg"].max() < 40
        assert p["depth"].shape == hw and p["depth"].dtype == np.float32 and p["depth"].min() >= 0
    assert module.training  # the caller's mode is restored
    image = np.asarray(Image.open(paths[1]).convert("RGB"))
    written = save_prediction_pngs(image, preds[1], tmp_path / "api", dataset="nyud", title="b.png")
    assert set(written) == {"input", "semseg", "depth", "panel"}
    assert all(p.is_file() for p in written.values())


def test_medusa_attention_figures(images: Path, tmp_path: Path) -> None:
    if "medusa" not in list_models():
        pytest.skip("medusa is not registered")
    module = make_module("medusa")
    ckpt = save_ckpt(module, tmp_path / "medusa.ckpt")
    out = tmp_path / "out"
    assert run_cli("--ckpt", ckpt, "--images", images, "--out", out, "--size", "64x64") == 0
    for name, hw in SIZES.items():
        for f in ("semseg", "depth", "input"):
            check_png(out / name / f"{f}.png", hw)
        for f in ("sfa", "msa", "panel"):
            assert (out / name / f"{f}.png").is_file()
    maps = attention_arrays(module, np.zeros((70, 90, 3), np.uint8), (64, 64))
    assert maps is not None and sorted(maps) == ["depth", "semseg"]
    sfa, msa = maps["semseg"]["sfa"], maps["semseg"]["msa"]
    assert [label for label, _ in sfa] == [f"scale {s} (stride {4 * 2**s})" for s in range(4)]
    assert [m.shape for _, m in sfa] == [(16, 16), (8, 8), (4, 4), (2, 2)]
    weights = np.stack([m for _, m in msa])
    assert weights.shape == (4, 16, 16)
    np.testing.assert_allclose(weights.sum(0), 1.0, atol=1e-5)


def test_attention_figures_of_a_ufl_checkpoint_of_medusa(images: Path, tmp_path: Path) -> None:
    # a UFL model of a Medusa source has Medusa heads (SFA + MSA) for every task, but `predict` said "model
    # 'medusa' has no attention maps" and wrote no sfa.png / msa.png
    from medusa_mtl.engine.ufl import ufl_module_from_checkpoint

    source = save_ckpt(make_module("medusa", backbone="test_efficientnet"), tmp_path / "medusa.ckpt")
    step = ufl_module_from_checkpoint(source, "human_parts", "pascal")
    ckpt = save_ckpt(step, tmp_path / "ufl.ckpt")
    maps = attention_arrays(step, np.zeros((70, 90, 3), np.uint8), (64, 64))
    assert maps is not None and list(maps) == ["semseg", "depth", "human_parts"]
    assert all(set(m) == {"sfa", "msa"} for m in maps.values())
    direct = step.net.source.attention_maps(torch.zeros(1, 3, 64, 64))  # the source's own maps, unchanged
    assert torch.equal(direct["depth"]["msa"], step.net.attention_maps(torch.zeros(1, 3, 64, 64))["depth"]["msa"])
    out = tmp_path / "out"
    assert run_cli("--ckpt", ckpt, "--images", images, "--out", out, "--size", "64x64") == 0
    for name in SIZES:
        for f in ("semseg", "depth", "human_parts", "sfa", "msa", "panel"):
            assert (out / name / f"{f}.png").is_file(), f


def test_corrupt_image_is_skipped_and_reported(baseline: tuple[MultiTaskModule, Path], images: Path,
                                              tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """One unreadable file: the other images are predicted, one warning names it, the summary lists it and the
    exit status is 1; with --strict the command stops at it with a clear error (status 2)."""
    _, ckpt = baseline
    (images / "bad.jpg").write_bytes(b"\xff\xd8\xff\xe0 this is not a JPEG")
    out = tmp_path / "out"
    assert run_cli("--ckpt", ckpt, "--images", images, "--out", out, "--size", "64x64") == 1
    captured = capsys.readouterr()
    assert "warning: skipped" in captured.out and "bad.jpg" in captured.out
    assert "2 image(s) predicted, 1 skipped" in captured.out
    assert "bad.jpg" in captured.err and "unreadable" in captured.err
    check_png(out / "a" / "semseg.png", SIZES["a"])
    check_png(out / "b" / "depth.png", SIZES["b"])
    assert not (out / "bad").exists()
    strict = tmp_path / "strict"
    assert run_cli("--ckpt", ckpt, "--images", images, "--out", strict, "--size", "64x64", "--strict") == 2
    err = capsys.readouterr().err
    assert "bad.jpg" in err and "--strict" in err and "Traceback" not in err


def test_predictor_api(baseline: tuple[MultiTaskModule, Path], images: Path) -> None:
    """``from medusa_mtl import Predictor``: path, array and PIL inputs agree; a list is batched and gives the
    same values as one image at a time; every output has the input's own size."""
    from medusa_mtl import Predictor

    _, ckpt = baseline
    predictor = Predictor.from_checkpoint(ckpt, size=(64, 64), batch_size=2)
    assert predictor.tasks == ["semseg", "depth"] and predictor.size == (64, 64)
    path = images / "b.png"
    from_path = predictor.predict(path)
    with Image.open(path) as im:
        from_pil = predictor.predict(im)
        arr = np.asarray(im.convert("RGB"))
    from_array = predictor.predict(arr)
    for t in ("semseg", "depth"):
        np.testing.assert_array_equal(from_path[t], from_array[t])
        np.testing.assert_array_equal(from_path[t], from_pil[t])
    assert from_path["semseg"].shape == SIZES["b"] and from_path["semseg"].dtype == np.int64
    assert from_path["depth"].shape == SIZES["b"] and from_path["depth"].dtype == np.float32
    batch = predictor.predict([images / "a.jpg", path, arr[:40, :50]])
    assert [b["depth"].shape for b in batch] == [SIZES["a"], SIZES["b"], (40, 50)]
    np.testing.assert_allclose(batch[1]["depth"], from_path["depth"], rtol=1e-4, atol=1e-3)  # batch-size rounding
    with pytest.raises(ValueError, match="uint8"):
        predictor.predict(arr.astype(np.float32))
    with pytest.raises(TypeError, match="image path"):
        predictor.predict(42)
    with pytest.raises(ValueError, match="a folder, not a file"):  # it said "missing file"
        predictor.predict(images)


def test_raw_outputs_read_back(images: Path, tmp_path: Path) -> None:
    """``--raw`` writes class-index PNGs, depth in mm (16-bit PNG) and metres (.npy), normals (.npy) and 16-bit
    probability PNGs whose values are the Predictor's outputs."""
    from medusa_mtl import Predictor

    module = make_module("mt_baseline", tasks="semseg,depth,normals,edge")
    ckpt = save_ckpt(module, tmp_path / "four.ckpt")
    out = tmp_path / "out"
    assert run_cli("--ckpt", ckpt, "--images", images, "--out", out, "--size", "64x64", "--raw",
                   "--no-attention") == 0
    expected = Predictor.from_checkpoint(ckpt, size=(64, 64)).predict(images / "b.png")
    raw = out / "b" / "raw"
    with Image.open(raw / "semseg_index.png") as im:
        assert im.mode == "L"
        np.testing.assert_array_equal(np.asarray(im), expected["semseg"])
    with Image.open(raw / "depth_mm.png") as im:
        mm = np.asarray(im).astype(np.int64)
    np.testing.assert_array_equal(mm, np.clip(np.rint(expected["depth"].astype(np.float64) * 1000), 0, 65535))
    np.testing.assert_array_equal(np.load(raw / "depth_m.npy"), expected["depth"])
    normals = np.load(raw / "normals.npy")
    assert normals.shape == (*SIZES["b"], 3)
    np.testing.assert_array_equal(normals, expected["normals"])
    with Image.open(raw / "edge_prob.png") as im:
        prob = np.asarray(im).astype(np.float64) / 65535
    np.testing.assert_allclose(prob, expected["edge"], atol=0.5 / 65535 + 1e-7)


@pytest.mark.parametrize("setup", [lambda d: d.mkdir(), lambda d: None], ids=["empty", "missing"])
def test_empty_or_missing_folder(baseline: tuple[MultiTaskModule, Path], tmp_path: Path,
                                 capsys: pytest.CaptureFixture[str], setup: Callable[[Path], None]) -> None:
    _, ckpt = baseline
    folder = tmp_path / "nothing"
    setup(folder)
    assert run_cli("--ckpt", ckpt, "--images", folder, "--out", tmp_path / "out") == 2
    err = capsys.readouterr().err
    assert str(folder) in err and ("no images found" in err or "not found" in err)


def test_predict_folder_to_panels(baseline: tuple[MultiTaskModule, Path], images: Path, tmp_path: Path) -> None:
    _, ckpt = baseline
    figures = predict_folder_to_panels(ckpt, list_images(images), tmp_path / "report" / "predictions",
                                       relative_to=tmp_path / "report", size=(64, 64))
    assert figures == ["predictions/a/panel.png", "predictions/b/panel.png"]


# -- colourisation -------------------------------------------------------------------------------------------

def test_palettes_are_fixed_and_distinct() -> None:
    pal = vis.label_palette(256)
    assert len({tuple(c) for c in pal}) == 256
    np.testing.assert_array_equal(vis.label_palette(40), pal[:40])
    parts = vis.palette_for("human_parts", 7)
    assert len({tuple(c) for c in parts}) == 7 and tuple(parts[0]) == (0, 0, 0)
    rgb = vis.colorize_labels(np.array([[0, 1], [39, 255]]), vis.label_palette(40))
    assert tuple(rgb[1, 1]) == vis.IGNORE_COLOR and tuple(rgb[1, 0]) == tuple(pal[39])


def test_dense_colourisations() -> None:
    n = np.zeros((2, 2, 3), np.float32)
    n[0, 0] = (1, 0, 0)
    n[0, 1] = (0, -1, 0)
    n[1, 0] = (0, 0, 1)
    rgb = vis.colorize_normals(n)
    assert tuple(rgb[0, 0]) == (255, 128, 128) and tuple(rgb[0, 1]) == (128, 0, 128)
    np.testing.assert_array_equal(vis.colorize_normals(np.moveaxis(n, -1, 0)), rgb)
    grey = vis.colorize_gray(np.array([[0.0, 1.0]]))
    assert grey.tolist() == [[[0, 0, 0], [255, 255, 255]]]
    depth = np.array([[0.0, 1.0], [2.0, 3.0]], np.float32)
    drgb = vis.colorize_depth(depth)
    assert tuple(drgb[0, 0]) == (0, 0, 0)  # invalid
    assert vis.depth_range(depth) == (1.0, 3.0)
    assert drgb[1, 1].sum() > drgb[0, 1].sum()  # magma: far is brighter
    assert vis.colorize_depth(np.ones((3, 3))).shape == (3, 3, 3)  # constant map: no division by zero
    over = vis.overlay_heatmap(np.zeros((10, 12, 3), np.uint8), np.random.rand(3, 4))
    assert over.shape == (10, 12, 3) and over.dtype == np.uint8


def test_predictor_of_a_bare_pascal_network_uses_pascals_default_size() -> None:
    # a network from create_model(dataset="pascal") got the NYUD default size 480x640 and dataset None
    from medusa_mtl.models import create_model

    net = create_model("mt_baseline", tasks=["sal"], dataset="pascal", backbone="test_efficientnet")
    predictor = Predictor(net)
    assert predictor.size == (512, 512) and predictor.size_source == "the pascal default"
    assert predictor.dataset == "pascal" and predictor.task_datasets == {"sal": "pascal"}


def test_from_checkpoint_names_the_kind_of_file_it_was_given(tmp_path: Path) -> None:
    # a TorchScript export or a whole pickled model was reported as a truncated or corrupt checkpoint
    import torch

    from medusa_mtl.errors import CheckpointError

    net = torch.nn.Linear(2, 2)
    torch.jit.save(torch.jit.script(net), tmp_path / "model.pt")
    torch.save(net, tmp_path / "whole.pt")
    with pytest.raises(CheckpointError, match=r"is a TorchScript file .*torch.jit.load"):
        Predictor.from_checkpoint(tmp_path / "model.pt")
    with pytest.raises(CheckpointError, match=r"holds pickled Python objects .*state_dict\(\)"):
        Predictor.from_checkpoint(tmp_path / "whole.pt")
