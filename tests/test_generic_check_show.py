"""``medusa data check`` and ``medusa data show`` on generic datasets (``dataset.yaml``), and ``show.colorize``
dispatching on the tasks' label kinds."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml
from PIL import Image

from cli_helpers import run_cli
from medusa_mtl.data import datasets, show
from medusa_mtl.data.check import check_dataset, check_dataset_report, run_check
from medusa_mtl.data.show import INVALID_COLOR, colorize, contact_sheet, label_palette

H, W = 16, 24
TRAIN, VAL = ("a", "b", "c"), ("d", "e")
ZONE_COLORS = ([0, 0, 255], [0, 200, 0], [250, 250, 0])

# one task of each kind; the names are prefixed so that they cannot clash with tasks of other test modules
TASKS: dict[str, dict[str, Any]] = {
    "gcs_lanes": {"kind": "segmentation", "classes": ["background", "solid", "dashed"]},
    "gcs_zones": {"kind": "segmentation",
                  "classes": [{"name": n, "color": c} for n, c in zip(("sky", "grass", "sand"), ZONE_COLORS)]},
    "gcs_road": {"kind": "binary"},
    "gcs_depth": {"kind": "depth"},
    "gcs_normals": {"kind": "normals"},
    "gcs_edge": {"kind": "edge"},
    "gcs_heat": {"kind": "regression", "channels": 2},
}


def _png(path: Path, arr: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(arr).save(path)


def _write_sample(root: Path, sample_id: str, seed: int) -> None:
    rng = np.random.default_rng(seed)
    _png(root / "images" / f"{sample_id}.png", rng.integers(0, 256, (H, W, 3), dtype=np.uint8))
    lanes = np.zeros((H, W), np.uint8)
    lanes[:, W // 3:] = 1
    lanes[:, 2 * W // 3:] = 2
    lanes[0, :] = 255  # unlabelled
    _png(root / "gcs_lanes" / f"{sample_id}.png", lanes)
    zones = np.zeros((H, W, 3), np.uint8)
    for i, c in enumerate(ZONE_COLORS):
        zones[i * H // 3:(i + 1) * H // 3] = c
    zones[-1, :] = 255  # the ignore value as a colour: unlabelled
    _png(root / "gcs_zones" / f"{sample_id}.png", zones)
    road = np.where(rng.random((H, W)) > 0.5, 255, 0).astype(np.uint8)
    _png(root / "gcs_road" / f"{sample_id}.png", road)
    depth = rng.integers(500, 5000, (H, W)).astype(np.uint16)
    depth[0, 0] = 0  # invalid
    _png(root / "gcs_depth" / f"{sample_id}.png", depth)
    normals = np.full((H, W, 3), (128, 128, 255), np.uint8)
    normals[1, 1] = 0  # invalid
    _png(root / "gcs_normals" / f"{sample_id}.png", normals)
    edge = np.zeros((H, W), np.uint8)
    edge[:, W // 2] = 1
    _png(root / "gcs_edge" / f"{sample_id}.png", edge)
    heat = rng.normal(size=(H, W, 2)).astype(np.float32)
    heat[2, 2] = np.nan
    np.save(root / "gcs_heat" / f"{sample_id}.npy", heat)


def make_dataset(root: Path, name: str = "gcs_data", tasks: dict[str, dict[str, Any]] | None = None) -> Path:
    """A clean generic dataset with every kind of task; returns its ``dataset.yaml``."""
    root.mkdir(parents=True)
    spec = {"name": name, "size": [32, 32], "tasks": TASKS if tasks is None else tasks}
    (root / "dataset.yaml").write_text(yaml.safe_dump(spec, sort_keys=False))
    (root / "splits").mkdir()
    (root / "splits" / "train.txt").write_text("\n".join(TRAIN) + "\n")
    (root / "splits" / "val.txt").write_text("\n".join(VAL) + "\n")
    (root / "gcs_heat").mkdir()
    for seed, sample_id in enumerate((*TRAIN, *VAL)):
        _write_sample(root, sample_id, seed)
    return root / "dataset.yaml"


def _listing(root: Path) -> dict[str, tuple[int, int]]:
    return {str(p.relative_to(root)): (p.stat().st_size, p.stat().st_mtime_ns) for p in sorted(root.rglob("*"))}


def test_clean_dataset_has_no_problem(tmp_path: Path) -> None:
    root = tmp_path / "ds"
    spec_file = make_dataset(root)
    # files that belong to no id are not a problem
    _png(root / "images" / "orphan.png", np.zeros((H, W, 3), np.uint8))
    _png(root / "gcs_lanes" / "orphan.png", np.full((H, W), 9, np.uint8))
    (root / "gcs_road" / "notes.txt").write_text("made by hand")
    before = _listing(root)
    assert check_dataset(None, spec_file) == []
    assert check_dataset(root) == []  # the folder holding the dataset.yaml
    assert check_dataset(root, spec_file) == []
    assert check_dataset(None, root) == []
    report = check_dataset_report(root, str(spec_file))
    assert report.dataset == "gcs_data" and report.split_counts == {"train": 3, "val": 2}
    assert report.coverage["train"] == dict.fromkeys(TASKS, 3)
    assert report.kinds["gcs_heat"] == "regression"
    lines: list[str] = []
    assert run_check(None, spec_file, print_fn=lines.append) == 0
    text = "\n".join(lines)
    assert "no problems found" in text and "gcs_depth (depth)" in text and "train: 3 ids" in text
    assert _listing(root) == before


def _inject_faults(root: Path) -> dict[str, str]:
    """Break the dataset in eight ways; returns path (relative to ``root``) -> what the problem must say."""
    (root / "gcs_road" / "b.png").unlink()
    lanes = np.array(Image.open(root / "gcs_lanes" / "a.png"))
    lanes[3, 3] = 7
    _png(root / "gcs_lanes" / "a.png", lanes)
    _png(root / "gcs_depth" / "d.png", np.full((H - 6, W), 1000, np.uint16))
    _png(root / "gcs_edge" / "a.png", np.full((H, W), 1, np.uint16))
    (root / "images" / "c.png").write_bytes(b"not a png at all")
    for p in (root / "gcs_normals").iterdir():
        p.unlink()
    (root / "gcs_normals").rmdir()
    _png(root / "gcs_heat" / "e.png", np.zeros((H, W), np.uint8))  # next to e.npy
    zones = np.array(Image.open(root / "gcs_zones" / "b.png"))
    zones[4, 4] = (1, 2, 3)
    _png(root / "gcs_zones" / "b.png", zones)
    return {
        "gcs_road/b.png": "missing file",
        "gcs_lanes/a.png": "values [7]",
        "gcs_depth/d.png": "does not match",
        "gcs_edge/a.png": "16-bit",
        "images/c.png": "unreadable",
        "gcs_normals": "missing folder",
        "gcs_heat/e.": "several files",
        "gcs_zones/b.png": "(1, 2, 3)",
    }


def test_every_injected_fault_is_one_problem_naming_its_file(tmp_path: Path) -> None:
    root = tmp_path / "ds"
    spec_file = make_dataset(root)
    expected = _inject_faults(root)
    before = _listing(root)
    problems = check_dataset(None, spec_file)
    assert len(problems) == len(expected), "\n".join(map(str, problems))
    for rel, what in expected.items():
        hits = [p for p in problems if Path(p.path).relative_to(root).as_posix().startswith(rel)]
        assert len(hits) == 1, (rel, [str(p) for p in problems])
        assert what in hits[0].message, (rel, str(hits[0]))
    by_path = {Path(p.path).relative_to(root).as_posix(): p for p in problems}
    assert by_path["images/c.png"].task == "image" and by_path["images/c.png"].sample_id == "c"
    assert by_path["gcs_depth/d.png"].split == "val"
    lines: list[str] = []
    assert run_check(root, None, print_fn=lines.append) == 1
    assert f"{len(expected)} problem(s)" in "\n".join(lines)
    assert _listing(root) == before


def test_missing_split_file_and_image_folder(tmp_path: Path) -> None:
    root = tmp_path / "ds"
    spec_file = make_dataset(root, tasks={"gcs_road": TASKS["gcs_road"]})
    (root / "splits" / "val.txt").unlink()
    for p in (root / "images").iterdir():
        p.unlink()
    (root / "images").rmdir()
    problems = check_dataset(None, spec_file)
    text = "\n".join(map(str, problems))
    assert len(problems) == 2, text
    assert "splits/val.txt" in text and "missing split file" in text
    assert f"{root / 'images'}: missing folder" in text
    report = check_dataset_report(root, spec_file)
    assert report.coverage["train"] == {"gcs_road": 3}  # the labels are still checked, on their own


@pytest.mark.parametrize(
    ("change", "field"),
    [
        (lambda s: s["tasks"]["gcs_road"].update(kind="mask"), "tasks.gcs_road.kind"),
        (lambda s: s["tasks"]["gcs_lanes"].pop("classes"), "tasks.gcs_lanes.classes"),
        (lambda s: s.update(colour="red"), "colour"),
        (lambda s: s["tasks"]["gcs_depth"].update(colours=[1, 2]), "tasks.gcs_depth.colours"),
    ],
    ids=["unknown-kind", "missing-classes", "unknown-field", "unknown-task-field"],
)
def test_malformed_yaml_is_one_problem_naming_file_and_field(tmp_path: Path, change: Any, field: str) -> None:
    root = tmp_path / "ds"
    spec_file = make_dataset(root)
    spec = yaml.safe_load(spec_file.read_text())
    change(spec)
    spec_file.write_text(yaml.safe_dump(spec, sort_keys=False))
    before = _listing(root)
    report = check_dataset_report(None, spec_file)
    assert len(report.problems) == 1 and not report.files_checked
    problem = report.problems[0]
    assert Path(problem.path) == spec_file and problem.field == field
    assert str(spec_file) in str(problem) and field in str(problem)
    lines: list[str] = []
    assert run_check(root, None, print_fn=lines.append) == 1
    assert "train:" not in "\n".join(lines)  # no split summary: the files were not checked
    rc, out, err = run_cli(["data", "check", "--dataset", str(spec_file)])
    assert rc == 1 and "Traceback" not in err and field in out
    assert _listing(root) == before


def test_task_clashing_with_a_builtin_task_is_reported_and_files_still_checked(tmp_path: Path) -> None:
    root = tmp_path / "ds"
    spec_file = make_dataset(root, name="gcs_clash", tasks={"gcs_road": TASKS["gcs_road"]})
    spec = yaml.safe_load(spec_file.read_text())
    spec["tasks"]["semseg"] = {"kind": "binary", "folder": "gcs_edge"}  # the built-in semseg is a segmentation
    spec_file.write_text(yaml.safe_dump(spec, sort_keys=False))
    report = check_dataset_report(None, spec_file)
    assert len(report.problems) == 1, report.problems
    assert report.problems[0].field == "tasks" and "semseg" in report.problems[0].message
    assert report.files_checked and report.coverage["val"] == {"gcs_road": 2, "semseg": 2}


def test_missing_yaml_is_a_problem_of_that_file(tmp_path: Path) -> None:
    problems = check_dataset(None, tmp_path / "nowhere" / "dataset.yaml")
    assert len(problems) == 1 and "nowhere" in problems[0].path and "no such file" in problems[0].message
    with pytest.raises(ValueError, match="unknown dataset"):
        check_dataset(tmp_path, "coco")


def test_check_cli_exit_codes(tmp_path: Path) -> None:
    root = tmp_path / "ds"
    spec_file = make_dataset(root)
    before = _listing(root)
    rc, out, _ = run_cli(["data", "check", "--dataset", str(spec_file)])
    assert rc == 0 and "no problems found" in out and "gcs_data" in out
    rc, out, _ = run_cli(["data", "check", "--root", str(root)])
    assert rc == 0, out
    rc, out, _ = run_cli(["data", "check", "--root", str(root), "--tasks", "gcs_road,gcs_heat", "--max-samples", "1"])
    assert rc == 0 and "gcs_road" in out and "gcs_lanes" not in out.split("no problems")[0].split("train:")[1]
    assert _listing(root) == before
    _inject_faults(root)
    rc, out, err = run_cli(["data", "check", "--root", str(root)])
    assert rc == 1 and "Traceback" not in err and "8 problem(s)" in out
    assert "gcs_lanes/a.png" in out and "gcs_normals" in out
    rc, _, err = run_cli(["data", "check"])
    assert rc == 2 and "--root" in err
    rc, _, err = run_cli(["data", "check", "--root", str(tmp_path)])
    assert rc == 2 and "dataset.yaml" in err
    rc, _, err = run_cli(["data", "check", "--root", str(root), "--tasks", "banana"])
    assert rc == 2 and "banana" in err


# ----------------------------------------------------------------------------------------------------------
# medusa data show
# ----------------------------------------------------------------------------------------------------------


def test_colorize_dispatches_on_label_kind(tmp_path: Path) -> None:
    spec_file = make_dataset(tmp_path / "ds")
    name = datasets.get_dataset_info(spec_file).name
    pal = label_palette()
    seg = np.array([[0, 1], [2, 255]], np.uint8)
    # declared colours, via the registered name or the yaml path
    for ds in (name, str(spec_file)):
        rgb = colorize("gcs_zones", seg, ds)
        assert rgb[0, 0].tolist() == ZONE_COLORS[0] and rgb[1, 0].tolist() == ZONE_COLORS[2]
    # no colours declared: the label palette
    assert (colorize("gcs_lanes", seg, name)[:1] == pal[[0, 1]][None]).all()
    # the built-in NYUD semseg keeps its offset (file class k is loaded as k - 1)
    assert colorize("semseg", np.zeros((2, 2), np.int64), "nyud")[0, 0].tolist() == pal[1].tolist()
    assert colorize("semseg", np.zeros((2, 2), np.int64), "pascal")[0, 0].tolist() == pal[0].tolist()
    binary = colorize("gcs_road", np.array([[0.0, 1.0], [255.0, 0.0]], np.float32), name)
    assert binary[0, 1].tolist() == [255, 255, 255] and binary[1, 0].tolist() == [128, 128, 128]
    assert colorize("gcs_edge", np.ones((2, 2), np.float32), name)[0, 0].tolist() == [255, 255, 255]
    depth = colorize("gcs_depth", np.array([[0.0, 1.0], [2.0, 3.0]], np.float32), name)
    assert depth[0, 0].tolist() == INVALID_COLOR.tolist() and depth[1, 1].tolist() != INVALID_COLOR.tolist()
    normals = colorize("gcs_normals", np.array([[[0, 0, 1], [0, 0, 0]]], np.float32), name)
    assert normals[0, 0].tolist() == [127, 127, 255] and normals[0, 1].tolist() == INVALID_COLOR.tolist()
    heat = np.stack([np.array([[0.0, 1.0], [np.nan, 0.5]]), np.full((2, 2), 9.0)], -1).astype(np.float32)
    rgb = colorize("gcs_heat", heat, name)
    assert rgb.shape == (2, 2, 3) and rgb.dtype == np.uint8
    assert rgb[1, 0].tolist() == INVALID_COLOR.tolist() and rgb[0, 0].tolist() != rgb[0, 1].tolist()


def test_show_writes_a_sheet_with_a_column_per_task(tmp_path: Path) -> None:
    root = tmp_path / "ds"
    spec_file = make_dataset(root)
    before = _listing(root)
    small, large = tmp_path / "out" / "two.png", tmp_path / "out" / "all.png"
    rc, out, err = run_cli(["data", "show", "--dataset", str(spec_file), "--out", str(small), "--num", "2",
                            "--tasks", "gcs_lanes", "gcs_heat"])
    assert rc == 0, err
    assert "gcs_data" in out
    rc, _, err = run_cli(["data", "show", "--root", str(root), "--out", str(large), "--num", "2", "--split", "val"])
    assert rc == 0, err
    with Image.open(small) as a, Image.open(large) as b:
        assert b.size[0] > a.size[0] * 2  # 8 columns against 3
        assert b.size[1] == pytest.approx(a.size[1], rel=0.1)  # 2 rows each
    assert _listing(root) == before
    third = contact_sheet(None, spec_file, tmp_path / "out" / "api.png", num=1, tasks=["gcs_zones"])
    assert third.is_file()
    name, folder, titles = show._resolve(spec_file, None)
    assert (name, folder) == ("gcs_data", root)
    assert titles["gcs_heat"] == "gcs_heat (regression)" and titles["gcs_zones"] == "gcs_zones (segmentation)"
    rc, _, err = run_cli(["data", "show", "--root", str(root), "--out", str(small), "--tasks", "banana"])
    assert rc == 2 and "banana" in err


@pytest.mark.parametrize("ignore", [None, 200])
def test_check_notes_a_mask_declared_as_two_classes(tmp_path: Path, ignore: int | None) -> None:
    # a 0/255 mask declared as classes [bg, fg]: 255 is the ignore value, so every foreground pixel was ignored
    # and never learned, and `data check` said "no problems found"
    root = tmp_path / "masks"
    for d in ("images", "mask", "splits"):
        (root / d).mkdir(parents=True)
    ids = [f"m{i}" for i in range(4)]
    for i in ids:
        Image.fromarray(np.full((32, 32, 3), 90, np.uint8)).save(root / "images" / f"{i}.png")
        mask = np.zeros((32, 32), np.uint8)
        mask[:, 10:] = 255 if ignore is None else ignore
        Image.fromarray(mask).save(root / "mask" / f"{i}.png")
    (root / "splits" / "train.txt").write_text("m0\nm1\nm2\n")
    (root / "splits" / "val.txt").write_text("m3\n")
    (root / "dataset.yaml").write_text("name: masks_t\nsize: [32, 32]\ntasks:\n"
                                       "  mask: {kind: segmentation, classes: [bg, fg]"
                                       + ("" if ignore is None else f", ignore: {ignore}") + "}\n")
    lines: list[str] = []
    assert run_check(None, root / "dataset.yaml", print_fn=lines.append) == 0  # valid, only suspicious
    notes = [line for line in lines if line.startswith("note:")]
    assert len(notes) == 1 and "task 'mask': class(es) ['fg'] occur in none of the labels read" in notes[0]
    stored = 255 if ignore is None else ignore  # the note names the value in the files, not the internal 255
    assert f"69 % of the pixels hold the ignore value {stored}: a 0/{stored} mask" in notes[0]
    assert "kind: binary" in notes[0]
