"""Joint train / eval transforms (SPEC §6)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from medusa_mtl.data import transforms as T
from medusa_mtl.data.formats import IGNORE_INDEX


def _sample(h: int = 32, w: int = 64, seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w]
    image = np.stack([yy * 7 % 256, xx * 3 % 256, (yy + xx) % 256], -1).astype(np.uint8)
    semseg = ((xx // 8 + yy // 8) % 5).astype(np.uint8)
    semseg[0, :5] = IGNORE_INDEX
    n = rng.normal(size=(h, w, 3)).astype(np.float32)
    n[..., 2] = np.abs(n[..., 2]) + 0.5
    n /= np.linalg.norm(n, axis=-1, keepdims=True)
    n[2:4, 2:4] = 0.0
    return {
        "image": image,
        "semseg": semseg,
        "human_parts": (semseg % 7).astype(np.uint8),
        "depth": rng.uniform(1, 4, (h, w)).astype(np.float32),
        "normals": n,
        "edge": (xx % 8 == 0).astype(np.float32),
        "sal": (yy > h // 2).astype(np.float32),
    }


def test_hflip_twice_is_identity_and_negates_normals_x() -> None:
    s = _sample()
    f = T.hflip(s)
    np.testing.assert_array_equal(f["normals"][:, ::-1, 0], -s["normals"][..., 0])
    np.testing.assert_array_equal(f["normals"][:, ::-1, 1:], s["normals"][..., 1:])
    np.testing.assert_array_equal(f["image"], s["image"][:, ::-1])
    ff = T.hflip(f)
    for k in s:
        np.testing.assert_array_equal(ff[k], s[k], err_msg=k)


def test_flip_only_train_transform_twice_is_identity() -> None:
    s = _sample()
    tr = T.TrainTransform((32, 64), T.AugmentParams(flip_prob=1.0, scales=(1.0,)))
    rng = np.random.default_rng(0)
    once = tr(s, rng)
    np.testing.assert_array_equal(once["semseg"], s["semseg"][:, ::-1])
    twice = tr(once, rng)
    for k in ("semseg", "human_parts", "depth", "edge", "sal"):
        np.testing.assert_array_equal(twice[k], s[k], err_msg=k)
    assert np.abs(twice["image"].astype(int) - s["image"].astype(int)).max() <= 1
    np.testing.assert_allclose(twice["normals"], s["normals"], atol=1e-5)


@pytest.mark.parametrize("seed", range(4))
def test_normals_unit_after_train_transform(seed: int) -> None:
    s = _sample(seed=seed)
    tr = T.TrainTransform((64, 64), T.PASCAL_AUGMENT)
    out = tr(s, np.random.default_rng(seed))
    n = out["normals"]
    assert n.shape == (64, 64, 3) and n.dtype == np.float32
    norm = np.linalg.norm(n, axis=-1)
    valid = norm > 0
    assert valid.mean() > 0.3
    np.testing.assert_allclose(norm[valid], 1.0, atol=1e-5)
    for k in ("semseg", "human_parts"):
        assert out[k].shape == (64, 64) and out[k].dtype == np.uint8
    assert out["image"].shape == (64, 64, 3) and out["image"].dtype == np.uint8


def test_depth_divided_by_scale() -> None:
    s = _sample()
    s["depth"] = np.full((32, 64), 3.0, np.float32)
    tr = T.TrainTransform((32, 64), T.AugmentParams(flip_prob=0.0, scales=(1.5,)))
    out = tr(s, np.random.default_rng(0))
    np.testing.assert_allclose(out["depth"], 2.0, rtol=1e-6)


def test_zoom_out_creates_ignore_regions() -> None:
    s = _sample()
    out = T.warp(s, (32, 64), scale=0.5)
    assert (out["semseg"][0] == IGNORE_INDEX).all() and (out["semseg"][:, -1] == IGNORE_INDEX).all()
    assert (out["human_parts"][0] == IGNORE_INDEX).all()
    assert (out["depth"][0] == 0).all()
    assert (out["normals"][0] == 0).all()
    assert (out["edge"][0] == IGNORE_INDEX).all() and (out["sal"][0] == IGNORE_INDEX).all()
    centre = out["semseg"][12:20, 24:40]
    assert (centre != IGNORE_INDEX).all()


def test_rotation_convention_keeps_radial_field() -> None:
    """A hemisphere seen from the front has radial normals (x right, y up); rotating the picture about its
    centre must leave it unchanged. With the opposite sign convention it would not."""
    h = w = 65
    yy, xx = np.mgrid[0:h, 0:w]
    dx = xx - (w - 1) / 2
    dy_up = -(yy - (h - 1) / 2)
    r = 30.0
    inside = dx**2 + dy_up**2 < (0.95 * r) ** 2
    nz = np.sqrt(np.clip(r**2 - dx**2 - dy_up**2, 0, None))
    n = np.stack([dx, dy_up, nz], -1) / r
    n[~inside] = 0
    s = {"image": np.zeros((h, w, 3), np.uint8), "normals": n.astype(np.float32)}
    out = T.warp(s, (h, w), scale=1.0, angle_deg=20.0)["normals"]
    core = dx**2 + dy_up**2 < (0.8 * r) ** 2
    np.testing.assert_allclose(out[core], n[core], atol=0.02)
    # and a plain field (all facing right) turns to face up-right after a counter-clockwise rotation
    s2 = {
        "image": np.zeros((h, w, 3), np.uint8),
        "normals": np.tile([1.0, 0.0, 0.0], (h, w, 1)).astype(np.float32),
    }
    out2 = T.warp(s2, (h, w), angle_deg=90.0)["normals"]
    np.testing.assert_allclose(out2[32, 32], [0.0, 1.0, 0.0], atol=1e-6)


def test_rotation_moves_pixels_counter_clockwise() -> None:
    h = w = 33
    img = np.zeros((h, w, 3), np.uint8)
    lab = np.zeros((h, w), np.uint8)
    lab[16, 28] = 1  # right of the centre
    out = T.warp({"image": img, "semseg": lab}, (h, w), angle_deg=90.0)["semseg"]
    assert out[4, 16] == 1  # now above the centre


@pytest.mark.parametrize("size", [(30, 64), (64, 100), (0, 32), (32,)])
def test_sizes_must_be_multiples_of_32(size) -> None:
    with pytest.raises(ValueError, match="multiples of 32|height, width"):
        T.TrainTransform(size)
    with pytest.raises(ValueError):
        T.EvalTransform(size)


def test_reproducible_randomness() -> None:
    s = _sample()
    tr = T.TrainTransform((64, 96), T.PASCAL_AUGMENT)
    a = tr(s, np.random.default_rng(5))
    b = tr(s, np.random.default_rng(5))
    for k in a:
        np.testing.assert_array_equal(a[k], b[k])
    torch.manual_seed(3)
    c = tr(s)
    torch.manual_seed(3)
    d = tr(s)
    for k in c:
        np.testing.assert_array_equal(c[k], d[k])
    draws = {tuple(tr.draw(np.random.default_rng(i)).values()) for i in range(20)}
    assert len(draws) > 10
    nyud = T.TrainTransform((32, 64), T.NYUD_AUGMENT)
    scales = {nyud.draw(np.random.default_rng(i))["scale"] for i in range(50)}
    assert scales == {1.0, 1.2, 1.5}
    assert {nyud.draw(np.random.default_rng(i))["angle"] for i in range(10)} == {0.0}


def test_eval_transform_keeps_labels() -> None:
    s = _sample(h=30, w=50)
    out = T.EvalTransform((32, 64))(s)
    assert out["image"].shape == (32, 64, 3)
    for k in s:
        if k != "image":
            assert out[k] is s[k]


def test_to_tensor_sample() -> None:
    s = _sample()
    t = T.to_tensor_sample(s, {"id": "x", "orig_size": (32, 64)})
    assert t["image"].dtype == torch.float32 and t["image"].shape == (3, 32, 64)
    assert abs(float(t["image"].mean())) < 3
    assert t["semseg"].dtype == torch.int64 and t["semseg"].shape == (32, 64)
    assert t["human_parts"].dtype == torch.int64
    assert t["depth"].shape == (1, 32, 64) and t["depth"].dtype == torch.float32
    assert t["normals"].shape == (3, 32, 64)
    np.testing.assert_array_equal(t["normals"].permute(1, 2, 0).numpy(), s["normals"])
    assert t["edge"].shape == (1, 32, 64) and t["sal"].shape == (1, 32, 64)
    assert t["meta"] == {"id": "x", "orig_size": (32, 64)}
    with pytest.raises(ValueError, match="unknown sample keys"):
        T.to_tensor_sample({**s, "foo": s["depth"]}, {})


@pytest.mark.parametrize("size", [(32, 64), (64, 64)])
def test_identity_warp_skips_the_spline_and_equals_it(size, monkeypatch) -> None:
    """A flips-only augmentation at the stored size takes the fast path; its output is the resampling's to the
    bit (the spline reproduces its samples). At another size the spline runs."""
    samples = [_sample(32, 64, seed) for seed in range(3)] + [T.hflip(_sample(32, 64, 5))]
    tr = T.TrainTransform(size, T.AugmentParams(flip_prob=0.5, scales=(1.0,)))
    rng = np.random.default_rng(0)
    resample = T._resample
    monkeypatch.setattr(T, "_resample", lambda *a, identity=False, **k: resample(*a, identity=False, **k))
    slow = [T.warp(s, size) for s in samples]
    monkeypatch.setattr(T, "_resample", resample)
    calls = []
    real_map = T.ndimage.map_coordinates
    monkeypatch.setattr(T.ndimage, "map_coordinates", lambda *a, **k: calls.append(1) or real_map(*a, **k))
    fast = [T.warp(s, size) for s in samples]
    assert (not calls) == (size == (32, 64))
    for s, f, r in zip(samples, fast, slow, strict=True):
        for k in s:
            assert f[k].dtype == r[k].dtype, k
            np.testing.assert_array_equal(f[k], r[k], err_msg=k)
    out = tr(samples[0], rng)  # the train transform goes through the same warp
    assert out["image"].shape[:2] == size
