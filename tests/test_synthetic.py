"""Tests of the synthetic renderer (``medusa_mtl.data.synthetic``) and the contact sheet (``data.show``)."""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pytest

from medusa_mtl.data import formats
from medusa_mtl.data.synthetic import (
    CONTEXT_IDS,
    NYUD_CLASS_NAMES,
    add_synth_arguments,
    generate,
    intrinsics,
    render_sample,
    run_synth,
    split_ids,
)
from medusa_mtl.data.synthetic.nyud import CEILING, FLOOR, WALL, WINDOW
from medusa_mtl.errors import ConfigError

SIZE = (64, 64)
N_TRAIN, N_VAL = 4, 2
SEED = 3


def _files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def roots(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Each dataset generated twice with the same seed (1 and 2 workers) and once with another seed."""
    base = tmp_path_factory.mktemp("synth")
    out = {}
    for ds in ("nyud", "pascal"):
        for tag, seed, workers in (("a", SEED, 1), ("b", SEED, 2), ("c", SEED + 1, 1)):
            root = base / f"{ds}_{tag}"
            generate(ds, root, N_TRAIN, N_VAL, SIZE, seed=seed, workers=workers)
            out[f"{ds}_{tag}"] = root
    return out


def _ids(root: Path, ds: str) -> list[str]:
    return formats.read_split(root, ds, "train") + formats.read_split(root, ds, "val")


# ----------------------------------------------------------------------------------------------------
# determinism, splits, files
# ----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("ds", ["nyud", "pascal"])
def test_same_seed_byte_identical_any_worker_count(roots: dict[str, Path], ds: str) -> None:
    a, b = _files(roots[f"{ds}_a"]), _files(roots[f"{ds}_b"])
    assert a.keys() == b.keys()
    assert len(a) >= (N_TRAIN + N_VAL) * 5
    for k in a:
        assert a[k] == b[k], f"{k} differs between two generations with the same seed"


@pytest.mark.parametrize("ds", ["nyud", "pascal"])
def test_different_seed_differs(roots: dict[str, Path], ds: str) -> None:
    a, c = _files(roots[f"{ds}_a"]), _files(roots[f"{ds}_c"])
    images = [k for k in a if k.endswith(".jpg")]
    assert images
    assert all(a[k] != c[k] for k in images)


def test_splits_fixed_by_seed() -> None:
    tr, va = split_ids(N_TRAIN, N_VAL, SEED)
    assert (tr, va) == split_ids(N_TRAIN, N_VAL, SEED)
    assert len(tr) == N_TRAIN and len(va) == N_VAL and not set(tr) & set(va)
    assert sorted(tr + va) == [f"synth_{i:06d}" for i in range(N_TRAIN + N_VAL)]
    assert tr == sorted(tr) and va == sorted(va)


@pytest.mark.parametrize("ds", ["nyud", "pascal"])
def test_every_file_present_and_readable(roots: dict[str, Path], ds: str) -> None:
    root = roots[f"{ds}_a"]
    assert formats.read_split(root, ds, "train") == split_ids(N_TRAIN, N_VAL, SEED)[0]
    tasks = formats.NYUD_TASKS if ds == "nyud" else formats.PASCAL_TASKS
    for sid in _ids(root, ds):
        for t in tasks:
            for p in formats.task_files(ds, root, sid, t):
                assert p.is_file(), p
        sample = formats.read_sample(ds, root, sid, tasks)
        assert sample["image"].shape == (*SIZE, 3)
        for t in tasks:
            assert sample[t].shape[:2] == SIZE


# ----------------------------------------------------------------------------------------------------
# NYUD labels
# ----------------------------------------------------------------------------------------------------


def test_nyud_label_ranges_and_invalid_regions(roots: dict[str, Path]) -> None:
    root = roots["nyud_a"]
    k = len(NYUD_CLASS_NAMES) - 1
    for sid in _ids(root, "nyud"):
        p = formats.nyud_paths(root, sid)
        sem = formats.read_png_2d(p["semseg"], "semseg")
        assert sem.min() >= 0 and sem.max() <= k
        depth = formats.read_depth(p["depth"])
        normals = np.load(p["normals"])
        edge = formats.read_nyud_edge(p["edge"])
        assert np.isfinite(depth).all() and depth.min() >= 0
        valid = depth > 0
        norm = np.linalg.norm(normals, axis=-1)
        assert np.allclose(norm[valid], 1.0, atol=1e-4)
        assert np.all(norm[~valid] == 0)
        assert np.all(sem[~valid] == WINDOW)  # invalid depth only on window glass
        assert depth[valid].max() < 20
        # edges = 1-px class boundaries
        exp = np.zeros_like(edge)
        exp[:, :-1] = np.maximum(exp[:, :-1], sem[:, :-1] != sem[:, 1:])
        exp[:-1, :] = np.maximum(exp[:-1, :], sem[:-1, :] != sem[1:, :])
        assert np.array_equal(edge, exp)


def test_nyud_windows_are_invalid_depth() -> None:
    found = 0
    for i in range(16):
        s = render_sample("nyud", i, (64, 80), 0)
        glass = s["depth"] == 0
        if glass.any():
            found += 1
            assert np.all(s["semseg"][glass] == WINDOW)
            assert np.all(s["normals"][glass] == 0)
        # classes other than window always have valid depth
        assert np.all(s["depth"][s["semseg"] != WINDOW] > 0)
    assert found >= 2


def _normals_from_depth(depth: np.ndarray, K: np.ndarray) -> np.ndarray:
    h, w = depth.shape
    fx, fy, cx, cy = K[0, 0], K[1, 1], K[0, 2], K[1, 2]
    u = (np.arange(w) + 0.5 - cx) / fx
    v = -(np.arange(h) + 0.5 - cy) / fy
    P = np.stack([depth * u[None, :], depth * v[:, None], -depth], axis=-1).astype(np.float64)
    du = np.zeros_like(P)
    dv = np.zeros_like(P)
    du[:, 1:-1] = P[:, 2:] - P[:, :-2]
    dv[1:-1, :] = P[2:, :] - P[:-2, :]
    n = np.cross(dv, du)  # (down) x (right) points towards the camera
    return n / np.maximum(np.linalg.norm(n, axis=-1, keepdims=True), 1e-12)


def test_nyud_normals_agree_with_depth_on_planes(roots: dict[str, Path]) -> None:
    """Geometric truth: normals recomputed from depth (back-projection + cross product of finite differences)
    match the stored normals on floor, wall and ceiling pixels away from boundaries."""
    root = roots["nyud_a"]
    angles = []
    for sid in _ids(root, "nyud"):
        p = formats.nyud_paths(root, sid)
        sem = formats.read_png_2d(p["semseg"], "semseg")
        depth = formats.read_depth(p["depth"])
        stored = np.load(p["normals"]).astype(np.float64)
        K = intrinsics("nyud", *depth.shape)
        est = _normals_from_depth(depth, K)
        ok = np.isin(sem, (FLOOR, WALL, CEILING)) & (depth > 0)
        inner = np.zeros_like(ok)
        inner[1:-1, 1:-1] = True
        for dy in (-1, 0, 1):  # away from class boundaries and creases (neighbours on the same plane)
            for dx in (-1, 0, 1):
                sh_sem = np.roll(np.roll(sem, dy, 0), dx, 1)
                sh_n = np.roll(np.roll(stored, dy, 0), dx, 1)
                inner &= (sh_sem == sem) & (np.abs(sh_n - stored).max(-1) < 1e-3)
        sel = ok & inner
        cos = np.clip((est[sel] * stored[sel]).sum(-1), -1.0, 1.0)
        angles.append(np.degrees(np.arccos(cos)))
    ang = np.concatenate(angles)
    assert ang.size > 1000
    assert ang.mean() < 3.0, ang.mean()
    assert np.median(ang) < 1.5


# ----------------------------------------------------------------------------------------------------
# PASCAL labels
# ----------------------------------------------------------------------------------------------------


def test_pascal_label_ranges(roots: dict[str, Path]) -> None:
    root = roots["pascal_a"]
    ctx = set(CONTEXT_IDS.values())
    for sid in _ids(root, "pascal"):
        p = formats.pascal_paths(root, sid)
        sem = formats.read_pascal_semseg(p["semseg"])
        assert sem.max() <= 20
        sal = formats.read_png_2d(p["sal"], "sal")
        assert set(np.unique(sal)) <= {0, 255}
        lm = formats.read_labelmap(p["labelmap"])
        assert set(np.unique(lm).tolist()) <= ctx
        assert np.all(lm[sem == 15] == CONTEXT_IDS["person"])
        n = formats.read_pascal_normals(p["normals"], lm)
        norm = np.linalg.norm(n, axis=-1)
        valid = lm != CONTEXT_IDS["sky"]
        assert np.allclose(norm[valid], 1.0, atol=1e-3)
        assert np.all(norm[~valid] == 0)
        edge = formats.read_pascal_edge(p["labelmap"])
        assert set(np.unique(edge)) <= {0.0, 1.0}


def test_pascal_persons_parts_and_saliency() -> None:
    n_persons = 0
    for i in range(12):
        s = render_sample("pascal", i, (96, 96), 1)
        person_px = np.zeros((96, 96), dtype=bool)
        for obj in s["persons"]:
            mask = obj["mask"]
            parts = obj["parts"]
            assert mask.any()
            assert all(name in formats.PART_GROUPS for name in parts)
            union = np.zeros_like(mask)
            for pm in parts.values():
                assert not np.any(pm & ~mask), "a part leaks out of its person"
                assert not np.any(pm & union), "parts overlap"
                union |= pm
            assert np.array_equal(union, mask), "every person pixel belongs to a part"
            if mask.sum() >= 40:
                assert len(parts) >= 3
                n_persons += 1
            person_px |= mask
        assert np.array_equal(person_px, s["semseg"] == 15)
        assert np.all(s["sal"][person_px] == 255), "saliency covers the persons"
    assert n_persons >= 5


def test_pascal_parts_through_reader(roots: dict[str, Path]) -> None:
    root = roots["pascal_a"]
    for sid in _ids(root, "pascal"):
        p = formats.pascal_paths(root, sid)
        objs = formats.read_human_parts_objects(p["human_parts"])
        sem = formats.read_pascal_semseg(p["semseg"])
        for o in objs:
            assert o["class_id"] == 15
            assert o["mask"].any() and len(o["parts"]) >= 1
        parts = formats.read_human_parts(p["human_parts"], SIZE)
        if objs:
            assert set(np.unique(parts)) <= set(range(7))
            assert np.array_equal(parts > 0, sem == 15)
        else:
            assert np.all(parts == 255)


# ----------------------------------------------------------------------------------------------------
# options, CLI, contact sheet
# ----------------------------------------------------------------------------------------------------


def test_size_must_be_multiple_of_32(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="--size"):
        generate("nyud", tmp_path / "x", 1, 1, (60, 64))
    generate("nyud", tmp_path / "y", 1, 0, (40, 48), size_multiple=None, workers=1)
    assert formats.read_depth(tmp_path / "y" / "depth" / "synth_000000.npy").shape == (40, 48)


def test_refuses_other_dataset_folder(roots: dict[str, Path], tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="already holds a nyud dataset"):
        generate("pascal", roots["nyud_a"], 1, 1, SIZE)
    (tmp_path / "notes.txt").write_text("hello")
    with pytest.raises(ConfigError, match="not empty"):
        generate("nyud", tmp_path, 1, 1, SIZE)


def test_cli_and_contact_sheet(tmp_path: Path, roots: dict[str, Path], capsys: pytest.CaptureFixture) -> None:
    parser = argparse.ArgumentParser()
    add_synth_arguments(parser)
    args = parser.parse_args(
        [
            "--dataset",
            "pascal",
            "--root",
            str(tmp_path / "p"),
            "--num-train",
            "2",
            "--num-val",
            "1",
            "--size",
            "64x64",
            "--seed",
            "5",
            "--workers",
            "1",
            "--no-progress",
        ]
    )
    assert run_synth(args) == 0
    assert "wrote 3 synthetic pascal samples" in capsys.readouterr().out
    assert len(formats.read_split(tmp_path / "p", "pascal", "val")) == 1
    with pytest.raises(ConfigError, match="--size"):
        run_synth(parser.parse_args(["--dataset", "nyud", "--root", str(tmp_path / "n"), "--size", "6x"]))

    from medusa_mtl.data.show import add_show_arguments, contact_sheet, run_show

    out = contact_sheet(roots["nyud_a"], "nyud", tmp_path / "sheet.png", num=2)
    assert out.is_file() and out.stat().st_size > 1000
    sp = argparse.ArgumentParser()
    add_show_arguments(sp)
    assert (
        run_show(
            sp.parse_args(
                ["--root", str(roots["pascal_a"]), "--out", str(tmp_path / "s2.png"), "--num", "2", "--split", "val"]
            )
        )
        == 0
    )
    from PIL import Image

    with Image.open(tmp_path / "s2.png") as im:
        assert im.size[0] > im.size[1]  # 6 columns, 2 rows
    capsys.readouterr()
    n_val = len(formats.read_split(roots["pascal_a"], "pascal", "val"))
    assert run_show(sp.parse_args(["--root", str(roots["pascal_a"]), "--out", str(tmp_path / "s3.png"), "--num",
                                   str(n_val + 40), "--split", "val"])) == 0
    # it echoed --num: "contact sheet of 50 samples" from a split of 4
    assert f"contact sheet of {n_val} pascal val samples" in capsys.readouterr().out
    # the file format follows the extension (it wrote PNG bytes into sheet.jpg)
    jpg = contact_sheet(roots["nyud_a"], "nyud", tmp_path / "sheet.jpg", num=1)
    assert jpg.read_bytes()[:2] == b"\xff\xd8"
    with pytest.raises(ValueError, match=r"--out .*sheet.txt: expected a file ending in .png, .jpg"):
        contact_sheet(roots["nyud_a"], "nyud", tmp_path / "sheet.txt", num=1)
