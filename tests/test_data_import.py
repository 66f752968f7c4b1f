"""``medusa data import``: kind inference, options, errors that name the folder/option, atomic output."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import yaml
from PIL import Image

from cli_helpers import run_cli
from medusa_mtl.data import generic, importer
from medusa_mtl.data.datasets import build_dataset, get_dataset_info
from medusa_mtl.data.importer import FolderImportError, import_dataset, import_folder

H, W = 16, 24
IDS = ("a", "b", "c", "d", "e")


def _png(path: Path, arr: np.ndarray, mode: str | None = None) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(arr, mode=mode).save(path) if mode else Image.fromarray(arr).save(path)


def _npy(path: Path, arr: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    np.save(path, arr)


def _folder(tmp_path: Path, tasks: dict[str, Callable[[int, Path], None]], ids: tuple[str, ...] = IDS) -> Path:
    """``tmp_path/raw`` with ``images/`` and one folder per task, each file written by ``tasks[name](i, dir)``."""
    src = tmp_path / "raw"
    rng = np.random.default_rng(0)
    for i, sample_id in enumerate(ids):
        _png(src / "images" / f"{sample_id}.png", rng.integers(0, 255, (H, W, 3), dtype=np.uint8))
        for name, write in tasks.items():
            write(i, src / name / sample_id)
    return src


def mask(values: tuple[int, int]) -> Callable[[int, Path], None]:
    def write(i: int, p: Path) -> None:
        arr = np.full((H, W), values[0], np.uint8)
        arr[:, : W // 2] = values[1]
        _png(p.with_suffix(".png"), arr)
    return write


def segmentation(i: int, p: Path) -> None:
    arr = np.zeros((H, W), np.uint8)
    arr[:, 8:] = 1 + i % 3
    arr[0, 0] = 255
    _png(p.with_suffix(".png"), arr)


def depth16(i: int, p: Path) -> None:
    arr = np.full((H, W), 1000 + 100 * i, np.uint16)
    arr[0, 0] = 0
    _png(p.with_suffix(".png"), arr)


def normals(i: int, p: Path) -> None:
    n = np.random.default_rng(i).normal(size=(H, W, 3)).astype(np.float32)
    n /= np.linalg.norm(n, axis=-1, keepdims=True)
    n[0, 0] = 0.0
    _npy(p.with_suffix(".npy"), n)


def regression2(i: int, p: Path) -> None:
    _npy(p.with_suffix(".npy"), np.random.default_rng(i).uniform(-3, 3, (H, W, 2)).astype(np.float32))


def float_map(i: int, p: Path) -> None:
    _npy(p.with_suffix(".npy"), np.random.default_rng(i).uniform(0.5, 5, (H, W)).astype(np.float32))


def rgb(i: int, p: Path) -> None:
    _png(p.with_suffix(".png"), np.full((H, W, 3), 128, np.uint8))


def _spec(out: Path) -> dict:
    return yaml.safe_load((out / "dataset.yaml").read_text())


def test_infers_every_kind_and_the_dataset_loads(tmp_path: Path) -> None:
    src = _folder(tmp_path, {"road": mask((0, 1)), "sky": mask((0, 255)), "lanes": segmentation,
                             "dist": depth16, "surface": normals, "flow": regression2, "edges": mask((0, 255))})
    out = tmp_path / "My-Set"
    path = import_folder(src, out)
    assert path == out / "dataset.yaml"
    raw = _spec(out)
    assert raw["name"] == "my_set"
    assert raw["size"] == [32, 32]
    kinds = {t: d["kind"] for t, d in raw["tasks"].items()}
    assert kinds == {"dist": "depth", "edges": "edge", "flow": "regression", "lanes": "segmentation",
                     "road": "binary", "sky": "binary", "surface": "normals"}
    assert raw["tasks"]["lanes"]["classes"] == ["class_0", "class_1", "class_2", "class_3"]
    assert raw["tasks"]["dist"]["bits"] == 16 and raw["tasks"]["dist"]["scale"] == 0.001
    assert raw["tasks"]["flow"]["channels"] == 2
    text = (out / "dataset.yaml").read_text()
    assert text.startswith("# Written by `medusa data import`")
    assert "millimetres" in text and "inferred" in text

    train = (out / "splits" / "train.txt").read_text().split()
    val = (out / "splits" / "val.txt").read_text().split()
    assert len(train) == 4 and len(val) == 1 and sorted(train + val) == list(IDS)
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temporary folder left

    info = get_dataset_info(str(out / "dataset.yaml"))
    assert info.name == "my_set"
    ds = build_dataset(info.name, out, "train", list(info.tasks), train=False)
    assert len(ds) == 4
    sample = ds[0]
    assert sample["image"].shape[-2:] == (32, 32)
    assert set(info.tasks) <= set(sample)
    spec = generic.load_spec(out)
    label = generic.read_label(out / "dist" / "a.png", spec.task("dist"))
    assert label[0, 0] == 0 and label[1, 1] == pytest.approx(1.0)


def test_split_is_deterministic_and_seeded(tmp_path: Path) -> None:
    ids = tuple(f"s{i:02d}" for i in range(20))
    src = _folder(tmp_path, {"road": mask((0, 1))}, ids)
    splits = []
    for k, seed in enumerate((0, 0, 1)):
        out = tmp_path / f"out{k}"
        import_folder(src, out, name="roads", seed=seed, val_fraction=0.25)
        splits.append((out / "splits" / "val.txt").read_text())
    assert splits[0] == splits[1] != splits[2]
    assert len(splits[0].split()) == 5


def test_both_splits_are_never_empty(tmp_path: Path) -> None:
    """The val split is the one evaluated (and `medusa data check` rejects an empty split): a fraction of 0 and a
    folder of one image are refused with the option / folder named; a tiny fraction still gives one val image."""
    src = _folder(tmp_path, {"road": mask((0, 1))})
    with pytest.raises(FolderImportError, match="--val-fraction 0.0: expected a number with 0 < f < 1"):
        import_folder(src, tmp_path / "zero", name="roads", val_fraction=0.0)
    import_folder(src, tmp_path / "tiny", name="roads", val_fraction=0.01)
    assert len((tmp_path / "tiny" / "splits" / "val.txt").read_text().split()) == 1
    one = _folder(tmp_path / "one", {"road": mask((0, 1))}, IDS[:1])
    with pytest.raises(FolderImportError, match="one image; a dataset needs at least two"):
        import_folder(one, tmp_path / "single", name="roads")
    assert not (tmp_path / "zero").exists() and not (tmp_path / "single").exists()


def test_kind_override_and_classes(tmp_path: Path) -> None:
    src = _folder(tmp_path, {"dist": float_map, "road": mask((0, 1)), "lanes": segmentation})
    out = tmp_path / "out"
    result = import_dataset(src, out, name="roads", kinds={"dist": "depth"},
                            classes={"road": ["off", "on"], "lanes": ["bg", "solid", "dashed", "double"]},
                            size=(64, 96))
    raw = _spec(out)
    assert raw["size"] == [64, 96]
    assert raw["tasks"]["dist"] == {"kind": "depth", "scale": 1.0}
    assert raw["tasks"]["road"]["kind"] == "segmentation" and raw["tasks"]["road"]["classes"] == ["off", "on"]
    assert raw["tasks"]["lanes"]["classes"] == ["bg", "solid", "dashed", "double"]
    assert all(t.given for t in result.tasks)
    assert "given with --kind / --classes: dist (depth)" in (out / "dataset.yaml").read_text()


def test_classes_must_cover_the_values(tmp_path: Path) -> None:
    src = _folder(tmp_path, {"lanes": segmentation})
    with pytest.raises(FolderImportError, match=r"lanes[/\\]b\.png.*--classes lanes"):
        import_folder(src, tmp_path / "out", classes={"lanes": ["bg", "solid"]})
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(("write", "option"), [(float_map, "--kind dist=depth"), (rgb, "--kind dist=normals")])
def test_ambiguous_folder_names_folder_and_option(tmp_path: Path, write: Callable, option: str) -> None:
    src = _folder(tmp_path, {"dist": write})
    with pytest.raises(FolderImportError) as e:
        import_folder(src, tmp_path / "out")
    assert str(src / "dist") in str(e.value) and option in str(e.value)


def test_regression_override_of_float_map(tmp_path: Path) -> None:
    src = _folder(tmp_path, {"heat": float_map})
    import_folder(src, tmp_path / "out", kinds={"heat": "regression"})
    assert _spec(tmp_path / "out")["tasks"]["heat"] == {"kind": "regression", "channels": 1}


def test_missing_label_names_file_and_writes_nothing(tmp_path: Path) -> None:
    src = _folder(tmp_path, {"road": mask((0, 1))})
    (src / "road" / "c.png").unlink()
    out = tmp_path / "new" / "out"
    with pytest.raises(FolderImportError, match=r"no label for 1 image.*images[/\\]c\.png"):
        import_folder(src, out)
    assert not out.exists() and not (tmp_path / "new").exists()


def test_label_without_image_is_an_error(tmp_path: Path) -> None:
    src = _folder(tmp_path, {"road": mask((0, 1))})
    mask((0, 1))(0, src / "road" / "zzz")
    with pytest.raises(FolderImportError, match=r"without an image.*zzz\.png"):
        import_folder(src, tmp_path / "out")


def test_size_mismatch_names_the_file(tmp_path: Path) -> None:
    src = _folder(tmp_path, {"road": mask((0, 1))})
    _png(src / "road" / "b.png", np.zeros((H, W + 1), np.uint8))
    with pytest.raises(FolderImportError, match=r"road[/\\]b\.png: label size 16x25 does not match"):
        import_folder(src, tmp_path / "out")


def test_mixed_folder_and_bad_names(tmp_path: Path) -> None:
    src = _folder(tmp_path, {"road": mask((0, 1))})
    _npy(src / "road" / "b.npy", np.zeros((H, W), np.float32))
    (src / "road" / "b.png").unlink()
    with pytest.raises(FolderImportError, match="mixed label files.*b.npy"):
        import_folder(src, tmp_path / "out")
    src2 = _folder(tmp_path / "x", {"road": mask((0, 1))})
    (src2 / "road").rename(src2 / "road-marks")
    with pytest.raises(FolderImportError, match="road-marks.*rename the folder"):
        import_folder(src2, tmp_path / "out")


def test_out_must_be_new_or_empty(tmp_path: Path) -> None:
    src = _folder(tmp_path, {"road": mask((0, 1))})
    out = tmp_path / "out"
    out.mkdir()
    (out / "x").write_text("x")
    with pytest.raises(FolderImportError, match="not an empty folder"):
        import_folder(src, out, name="roads")
    (out / "x").unlink()
    import_folder(src, out, name="roads")  # an empty folder is fine
    assert (out / "dataset.yaml").is_file()


def test_failure_while_writing_leaves_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    src = _folder(tmp_path, {"road": mask((0, 1))})

    def broken(*args: object, **kwargs: object) -> None:
        raise generic.DataFormatError(tmp_path / "x.png", "broken")

    monkeypatch.setattr(importer.generic, "read_label", broken)
    with pytest.raises(FolderImportError, match="broken"):
        import_folder(src, tmp_path / "out", name="roads")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["raw"]


def test_cli_imports_and_reports_errors_in_one_line(tmp_path: Path) -> None:
    src = _folder(tmp_path, {"lanes": segmentation, "dist": float_map})
    out = tmp_path / "out"
    rc, stdout, stderr = run_cli(["data", "import", "--from", str(src), "--out", str(out), "--kind", "dist=depth",
                                  "--classes", "lanes=bg,a,b,c", "--size", "32x64", "--val-fraction", "0.4"])
    assert rc == 0, stderr
    assert "segmentation, 4 classes (given)" in stdout and "3 train / 2 val" in stdout
    assert _spec(out)["size"] == [32, 64]

    rc, stdout, stderr = run_cli(["data", "import", "--from", str(src), "--out", str(tmp_path / "out2")])
    assert rc == 2
    lines = stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("medusa data import: error:")
    assert "--kind dist=depth" in lines[0]
    assert not (tmp_path / "out2").exists()

    rc, _, stderr = run_cli(["data", "import", "--from", str(tmp_path / "nope"), "--out", str(tmp_path / "o3")])
    assert rc == 2 and "no such folder" in stderr and len(stderr.strip().splitlines()) == 1


def test_palette_colours_become_class_colours(tmp_path: Path) -> None:
    colours = [(0, 0, 0), (255, 0, 0), (0, 128, 255), (20, 200, 20)]

    def palette_seg(i: int, p: Path, colours: list = colours) -> None:
        arr = np.zeros((H, W), np.uint8)
        arr[:, 8:] = 1 + i % 3
        im = Image.fromarray(arr, mode="P")
        im.putpalette([v for c in colours for v in c] + [0] * (768 - 3 * len(colours)))
        p.parent.mkdir(parents=True, exist_ok=True)
        im.save(p.with_suffix(".png"))

    out = tmp_path / "pal"
    import_folder(_folder(tmp_path, {"parts": palette_seg}), out)
    classes = _spec(out)["tasks"]["parts"]["classes"]
    assert classes == [{"name": f"class_{i}", "color": list(c)} for i, c in enumerate(colours)]
    assert generic.load_spec(out).task("parts").colors == tuple(colours)
    # a palette whose colours repeat (here all black) says nothing about the classes: names only
    out2 = tmp_path / "pal2"
    import_folder(_folder(tmp_path / "x", {"parts": lambda i, p: palette_seg(i, p, [(0, 0, 0)] * 4)}), out2)
    assert _spec(out2)["tasks"]["parts"]["classes"] == ["class_0", "class_1", "class_2", "class_3"]
