"""NYUD / PASCALContext datasets, registry, collate and the dataset checker."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from medusa_mtl.data import DATASETS, NYUD, PASCALContext, build_dataset, collate, get_dataset_info
from medusa_mtl.data.check import check_dataset, run_check
from medusa_mtl.data.formats import IGNORE_INDEX, DataFormatError


def test_registry() -> None:
    assert set(DATASETS) == {"nyud", "pascal"}
    assert DATASETS["nyud"].default_size == (480, 640) and DATASETS["nyud"].cls is NYUD
    assert DATASETS["pascal"].default_size == (512, 512) and DATASETS["pascal"].cls is PASCALContext
    assert set(DATASETS["nyud"].tasks) == {"semseg", "depth", "normals", "edge"}
    assert set(DATASETS["pascal"].tasks) == {"semseg", "human_parts", "sal", "normals", "edge"}
    assert get_dataset_info("PASCAL_Context").name == "pascal"
    with pytest.raises(ValueError, match=r"unknown dataset 'cityscapes'.*nyud.*pascal"):
        get_dataset_info("cityscapes")


def test_nyud_train_sample(nyud_root: Path) -> None:
    ds = build_dataset(
        "nyud", nyud_root, "train", ["semseg", "depth", "normals", "edge"], train=True, size=(64, 64)
    )
    assert len(ds) == 3
    torch.manual_seed(0)
    s = ds[1]
    assert s["image"].shape == (3, 64, 64) and s["image"].dtype == torch.float32
    assert s["semseg"].shape == (64, 64) and s["semseg"].dtype == torch.int64
    vals = set(s["semseg"].unique().tolist())
    assert vals <= set(range(40)) | {IGNORE_INDEX} and IGNORE_INDEX in vals
    assert s["depth"].shape == (1, 64, 64) and s["depth"].dtype == torch.float32
    assert s["normals"].shape == (3, 64, 64)
    norm = s["normals"].norm(dim=0)
    assert torch.allclose(norm[norm > 0], torch.ones(()), atol=1e-5)
    assert s["edge"].shape == (1, 64, 64)
    assert s["meta"] == {"id": "n1", "orig_size": (32, 40)}


def test_nyud_eval_keeps_label_resolution_and_collate(nyud_root: Path) -> None:
    ds = build_dataset("nyud", nyud_root, "val", ["semseg", "depth"], train=False, size=(32, 64))
    assert ds.ids == ["n3", "n4"]
    batch = collate([ds[0], ds[1]])
    assert batch["image"].shape == (2, 3, 32, 64)
    assert batch["semseg"].shape == (2, 32, 40) and batch["depth"].shape == (2, 1, 32, 40)
    assert batch["meta"] == [{"id": "n3", "orig_size": (32, 40)}, {"id": "n4", "orig_size": (32, 40)}]
    loader = torch.utils.data.DataLoader(ds, batch_size=2, collate_fn=collate)
    assert next(iter(loader))["image"].shape == (2, 3, 32, 64)


def test_collate_keeps_lists_for_different_shapes() -> None:
    a = {"image": torch.zeros(3, 4, 4), "semseg": torch.zeros(4, 4), "meta": {"id": "a"}}
    b = {"image": torch.zeros(3, 4, 4), "semseg": torch.zeros(5, 4), "meta": {"id": "b"}}
    batch = collate([a, b])
    assert batch["image"].shape == (2, 3, 4, 4)
    assert isinstance(batch["semseg"], list) and len(batch["semseg"]) == 2
    assert batch["meta"] == [{"id": "a"}, {"id": "b"}]


def test_ids_subset_and_bad_names(nyud_root: Path) -> None:
    ds = NYUD(nyud_root, "train", ["depth"], ids=["n2", "n0"])
    assert len(ds) == 2 and ds[0]["meta"]["id"] == "n2"
    with pytest.raises(ValueError, match=r"unknown task\(s\) \['sal'\].*semseg"):
        NYUD(nyud_root, "train", ["sal"])
    with pytest.raises(ValueError, match="unknown split 'test'"):
        NYUD(nyud_root, "test", ["depth"])
    with pytest.raises(ValueError, match="unknown dataset"):
        build_dataset("kitti", nyud_root, "train", ["depth"], train=True)


def test_missing_files_give_clear_errors(nyud_root: Path, tmp_path: Path) -> None:
    (nyud_root / "depth" / "n1.npy").unlink()
    with pytest.raises(DataFormatError, match=r"depth[/\\]n1\.npy.*missing file for sample 'n1'"):
        NYUD(nyud_root, "train", ["semseg", "depth"])
    NYUD(nyud_root, "train", ["semseg"])  # other tasks are fine
    with pytest.raises(DataFormatError, match=r"gt_sets[/\\]val\.txt.*missing split file"):
        (nyud_root / "gt_sets" / "val.txt").unlink()
        NYUD(nyud_root, "val", ["semseg"])
    with pytest.raises(DataFormatError, match="does not exist"):
        NYUD(tmp_path / "nope", "train", ["semseg"])


def test_pascal_dataset(pascal_root: Path) -> None:
    tasks = ["semseg", "human_parts", "sal", "normals", "edge"]
    ds = build_dataset("pascal", pascal_root, "train", tasks, train=True, size=(32, 32))
    torch.manual_seed(1)
    s = ds[0]
    assert s["image"].shape == (3, 32, 32)
    assert s["human_parts"].dtype == torch.int64 and s["human_parts"].shape == (32, 32)
    assert s["sal"].shape == (1, 32, 32) and s["edge"].shape == (1, 32, 32)
    assert set(s["sal"].unique().tolist()) <= {0.0, 1.0, 255.0}
    # p1 has no person: all-ignore parts in a multi-task run
    ev = build_dataset("pascal", pascal_root, "train", tasks, train=False, size=(32, 32))
    assert (ev[1]["human_parts"] == IGNORE_INDEX).all()
    assert ev[1]["human_parts"].shape == (32, 40)
    parts_only = PASCALContext(pascal_root, "train", ["human_parts"], drop_images_without_person=True)
    assert parts_only.ids == ["p0", "p2"]


def test_check_dataset_clean(nyud_root: Path, pascal_root: Path) -> None:
    assert check_dataset(nyud_root, "nyud") == []
    assert check_dataset(pascal_root, "pascal") == []
    lines: list[str] = []
    assert run_check(nyud_root, "nyud", print_fn=lines.append) == 0
    text = "\n".join(lines)
    assert "train: 3 ids" in text and "val: 2 ids" in text and "semseg" in text


def test_check_dataset_lists_every_problem(nyud_root: Path) -> None:
    (nyud_root / "depth" / "n0.npy").unlink()
    seg = np.zeros((32, 40), np.uint8)
    seg[0, 0] = 57
    Image.fromarray(seg).save(nyud_root / "segmentation" / "n1.png")
    d = np.load(nyud_root / "depth" / "n3.npy")
    d[1, 1] = np.nan
    np.save(nyud_root / "depth" / "n3.npy", d)
    data = (nyud_root / "images" / "n4.jpg").read_bytes()
    (nyud_root / "images" / "n4.jpg").write_bytes(data[: len(data) // 2])
    np.save(nyud_root / "normals" / "n2.npy", np.zeros((32, 32, 3), np.float32))
    with open(nyud_root / "gt_sets" / "train.txt", "a") as f:
        f.write("ghost\n")
    problems = check_dataset(nyud_root, "nyud")
    text = "\n".join(str(p) for p in problems)
    assert "n0.npy" in text and "missing file" in text
    assert "n1.png" in text and "57" in text
    assert "n3.npy" in text and "NaN" in text
    assert "n4.jpg" in text and "truncated" in text
    assert "n2.npy" in text and "aspect ratio" in text
    assert "ghost" in text
    ghost = [p for p in problems if p.sample_id == "ghost"]
    assert len(ghost) == 5  # the image and each of the 4 tasks
    lines: list[str] = []
    assert run_check(nyud_root, "nyud", print_fn=lines.append) == 1
    assert f"{len(problems)} problem(s)" in "\n".join(lines)


def test_check_dataset_missing_folders_and_splits(tmp_path: Path) -> None:
    root = tmp_path / "PASCAL_MT"
    root.mkdir()
    problems = check_dataset(root, "pascal")
    text = "\n".join(str(p) for p in problems)
    assert "JPEGImages" in text and "human_parts" in text
    assert "train.txt" in text and "val.txt" in text
    with pytest.raises(ValueError, match="unknown dataset"):
        check_dataset(root, "coco")


def test_cached_dataset_reads_each_file_once_and_gives_the_same_samples(nyud_root: Path, monkeypatch) -> None:
    from medusa_mtl.data import formats

    tasks = ["semseg", "depth", "normals", "edge"]
    plain = build_dataset("nyud", nyud_root, "train", tasks, train=True, size=(64, 64))
    cached = build_dataset("nyud", nyud_root, "train", tasks, train=True, size=(64, 64), cache=True)
    reads = []
    real = formats.read_sample
    monkeypatch.setattr(formats, "read_sample", lambda *a, **k: reads.append(a[2]) or real(*a, **k))
    for epoch in range(3):
        for i in range(len(plain)):
            torch.manual_seed(10 * epoch + i)  # the same augmentation draw for both
            a = plain[i]
            torch.manual_seed(10 * epoch + i)
            b = cached[i]
            for k in tasks + ["image"]:
                assert torch.equal(a[k], b[k]), (epoch, i, k)
    assert reads.count("n1") == 3 + 1  # every epoch for the plain dataset, once for the cached one
    raw = cached.read_numpy(1)
    with pytest.raises(ValueError, match="read-only"):
        raw["depth"][0, 0] = 1.0  # the cached arrays cannot be changed by a transform by mistake
    cached.cache_samples(False)
    cached[1]
    assert reads.count("n1") == 3 + 2
