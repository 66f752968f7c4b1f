"""Shared fixtures: tiny NYUD_MT / PASCAL_MT folders written with the project's own writers."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from medusa_mtl.data import formats


def _image(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    yy, xx = np.mgrid[0:h, 0:w]
    base = np.stack([yy * 200 / h, xx * 200 / w, (yy + xx) * 100 / (h + w)], -1) + rng.uniform(0, 50, 3)
    return np.clip(base + rng.normal(0, 4, (h, w, 3)), 0, 255).astype(np.uint8)


def _nyud_arrays(seed: int, h: int = 32, w: int = 40) -> dict[str, Any]:
    rng = np.random.default_rng(seed)
    image = _image(rng, h, w)
    semseg = np.zeros((h, w), np.uint8)
    semseg[:, w // 2 :] = 40
    semseg[h // 2 :, : w // 2] = 1 + seed % 39
    depth = rng.uniform(0.5, 5.0, (h, w)).astype(np.float32)
    depth[0, 0] = 0.0
    n = rng.normal(size=(h, w, 3)).astype(np.float32)
    n[..., 2] = np.abs(n[..., 2]) + 0.1
    n /= np.linalg.norm(n, axis=-1, keepdims=True)
    n[1, :3] = 0.0
    edge = np.zeros((h, w), np.float32)
    edge[:, w // 2] = 1.0
    return {"image": image, "semseg": semseg, "depth": depth, "normals": n, "edge": edge}


def _pascal_arrays(seed: int, h: int = 32, w: int = 40, person: bool = True) -> dict[str, Any]:
    rng = np.random.default_rng(seed)
    image = _image(rng, h, w)
    semseg = np.zeros((h, w), np.uint8)
    persons: list[dict] = []
    if person:
        mask = np.zeros((h, w), bool)
        mask[4:28, 8:20] = True
        head = np.zeros((h, w), bool)
        head[4:10, 10:18] = True
        torso = np.zeros((h, w), bool)
        torso[10:20, 8:20] = True
        lfoot = np.zeros((h, w), bool)
        lfoot[24:28, 8:12] = True
        persons.append({"mask": mask, "parts": {"head": head, "torso": torso, "lfoot": lfoot}})
        semseg[mask] = 15
    semseg[0, :] = 255
    sal = np.where(semseg == 15, 230, 20).astype(np.uint8)
    labelmap = np.ones((h, w), np.int32) * 5
    labelmap[:, w // 2 :] = 300
    labelmap[: h // 4, :] = 0
    n = np.zeros((h, w, 3), np.float32)
    n[..., 2] = 1.0
    n[:, : w // 2] = (0.6, 0.0, 0.8)
    return {
        "image": image,
        "semseg": semseg,
        "persons": persons,
        "sal": sal,
        "normals": n,
        "labelmap": labelmap,
    }


@pytest.fixture
def nyud_arrays() -> Callable[..., dict[str, Any]]:
    """Factory ``(seed, h=32, w=40)`` of NYUD sample arrays (writer inputs)."""
    return _nyud_arrays


@pytest.fixture
def pascal_arrays() -> Callable[..., dict[str, Any]]:
    """Factory ``(seed, h=32, w=40, person=True)`` of PASCAL sample arrays (writer inputs)."""
    return _pascal_arrays


@pytest.fixture
def nyud_root(tmp_path: Path) -> Path:
    """A NYUD_MT folder: train = n0, n1, n2; val = n3, n4; images 32 x 40."""
    root = tmp_path / "NYUD_MT"
    ids = [f"n{i}" for i in range(5)]
    for i, sample_id in enumerate(ids):
        formats.write_nyud_sample(root, sample_id, **_nyud_arrays(i))
    formats.write_nyud_splits(root, ids[:3], ids[3:])
    return root


@pytest.fixture
def pascal_root(tmp_path: Path) -> Path:
    """A PASCAL_MT folder: train = p0, p1 (p1 without a person), p2; val = p3; images 32 x 40."""
    root = tmp_path / "PASCAL_MT"
    ids = [f"p{i}" for i in range(4)]
    for i, sample_id in enumerate(ids):
        formats.write_pascal_sample(root, sample_id, **_pascal_arrays(i, person=i != 1))
    formats.write_pascal_splits(root, ids[:3], ids[3:])
    return root


@pytest.fixture(autouse=True, scope="session")
def _single_thread_torch() -> Any:
    """One intra-op thread: the tests use tiny tensors, where OpenMP start-up costs more than it saves
    (measured 20-40x slower convolutions with two threads on a loaded two-core machine)."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture
def nyud12(tmp_path: Path) -> Path:
    """12 NYUD samples of 32 x 32: train n0..n9 (the held-out validation part is carved from these), val n10, n11."""
    root = tmp_path / "NYUD_MT"
    ids = [f"n{i}" for i in range(12)]
    for i, sample_id in enumerate(ids):
        formats.write_nyud_sample(root, sample_id, **_nyud_arrays(i, 32, 32))
    formats.write_nyud_splits(root, ids[:10], ids[10:])
    return root


@pytest.fixture(autouse=True)
def _forget_declared_datasets() -> Any:
    """Datasets declared by a test (``dataset.yaml``) do not leak into the registries of the next one."""
    yield
    from medusa_mtl.data.datasets import forget_declared

    forget_declared()
