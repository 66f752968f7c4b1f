"""Tests of :mod:`medusa_mtl.metrics` against hand-computed values and independent reference computations."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy.sparse import csr_matrix
from scipy.sparse.csgraph import maximum_bipartite_matching
from scipy.spatial import cKDTree

from medusa_mtl.metrics import (
    ConfusionMIoU,
    DepthMetric,
    EdgeMetric,
    NormalsMetric,
    SaliencyMetric,
    StreamingMetric,
    edge_image_counts,
    match_edge_pixels,
    thin,
    tolerance_pixels,
)
from medusa_mtl.tasks import build_metrics, delta_m

# ------------------------------------------------------------------------------------------------------------
# semantic segmentation
# ------------------------------------------------------------------------------------------------------------

# 2x3 example: label 255 ignored. Valid pixels (gt, pred): (0,0) (1,1) (2,1) (2,2) (0,0)
SEG_PRED = torch.tensor([[[0, 1, 1], [2, 2, 0]]])
SEG_GT = torch.tensor([[[0, 1, 2], [2, 255, 0]]])


def test_miou_hand_computed() -> None:
    m = ConfusionMIoU(num_classes=3)
    m.update(SEG_PRED, SEG_GT)
    r = m.compute()
    # class 0: TP 2, FP 0, FN 0 -> 1; class 1: TP 1, FP 1 -> 1/2; class 2: TP 1, FN 1 -> 1/2
    assert r["per_class_iou"] == pytest.approx([100.0, 50.0, 50.0])
    assert r["mIoU"] == pytest.approx(200.0 / 3)
    assert r["pixel_acc"] == pytest.approx(80.0)


def test_miou_absent_class_excluded() -> None:
    m = ConfusionMIoU(num_classes=5)
    m.update(SEG_PRED, SEG_GT)
    r = m.compute()
    assert math.isnan(r["per_class_iou"][3]) and math.isnan(r["per_class_iou"][4])
    assert r["mIoU"] == pytest.approx(200.0 / 3)


def test_miou_is_dataset_pooled_not_per_image() -> None:
    m = ConfusionMIoU(num_classes=2)
    m.update([torch.tensor([[0, 0, 0, 1]]), torch.tensor([[1]])], [torch.tensor([[0, 0, 0, 0]]), torch.tensor([[1]])])
    # pooled: class 0 IoU 3/4, class 1 IoU 1/2 -> 62.5 (a per-image mean would differ)
    assert m.compute()["mIoU"] == pytest.approx(62.5)


def test_miou_input_checks_and_logits() -> None:
    m = ConfusionMIoU(num_classes=3)
    with pytest.raises(ValueError, match="size"):
        m.update(torch.zeros(1, 2, 2, dtype=torch.long), torch.zeros(1, 3, 3, dtype=torch.long))
    with pytest.raises(ValueError, match="class ids"):
        m.update(torch.full((1, 2, 2), 3), torch.zeros(1, 2, 2, dtype=torch.long))
    logits = torch.nn.functional.one_hot(SEG_PRED, 3).permute(0, 3, 1, 2).float()
    m.update(logits, SEG_GT)
    assert m.compute()["mIoU"] == pytest.approx(200.0 / 3)


# ------------------------------------------------------------------------------------------------------------
# depth
# ------------------------------------------------------------------------------------------------------------


def test_depth_pooled_rmse_differs_from_per_image_mean() -> None:
    pred = [torch.tensor([[[2.0, 1.0], [1.0, 1.0]]]), torch.tensor([[[2.0, 5.0]]])]
    gt = [torch.tensor([[[1.0, 1.0], [1.0, 1.0]]]), torch.tensor([[[2.0, 0.0]]])]  # 0 = invalid
    m = DepthMetric()
    m.update(pred, gt)
    r = m.compute()
    # 5 valid pixels, one squared error of 1: pooled RMSE sqrt(1/5); mean of per-image RMSEs would be 0.25
    assert r["rmse"] == pytest.approx(math.sqrt(0.2))
    assert r["rmse"] != pytest.approx(0.25)
    assert r["log_rmse"] == pytest.approx(math.sqrt(math.log(2) ** 2 / 5))
    assert r["abs_rel"] == pytest.approx(0.2)
    assert r["delta1"] == pytest.approx(80.0)


def test_depth_zero_prediction_is_clamped_and_empty_is_nan() -> None:
    m = DepthMetric(eps=1e-3)
    m.update(torch.zeros(1, 1, 1, 1), torch.ones(1, 1, 1, 1))
    assert m.compute()["log_rmse"] == pytest.approx(-math.log(1e-3))
    m.reset()
    m.update(torch.ones(1, 1, 2, 2), torch.zeros(1, 1, 2, 2))
    assert math.isnan(m.compute()["rmse"])


# ------------------------------------------------------------------------------------------------------------
# normals
# ------------------------------------------------------------------------------------------------------------


def test_normals_known_angles() -> None:
    s = 1 / math.sqrt(2)
    pred = torch.tensor([[1.0, 0, 0], [1.0, 0, 0], [s, s, 0], [0, 0, 1.0]]).T.reshape(1, 3, 1, 4)
    gt = torch.tensor([[0, 1.0, 0], [1.0, 0, 0], [1.0, 0, 0], [0, 0, 0]]).T.reshape(1, 3, 1, 4)  # last invalid
    m = NormalsMetric()
    m.update(pred, gt)
    r = m.compute()  # angles 90, 0, 45
    assert r["mean"] == pytest.approx(45.0)
    assert r["median"] == pytest.approx(45.0, abs=2e-3)
    assert r["rmse"] == pytest.approx(math.sqrt((90**2 + 45**2) / 3))
    assert r["11.25"] == pytest.approx(100 / 3)
    assert r["22.5"] == pytest.approx(100 / 3)
    assert r["30"] == pytest.approx(100 / 3)


@pytest.mark.parametrize(("angles", "median"), [((10, 20, 30, 40), 25.0), ((10, 20, 30), 20.0), ((7,), 7.0)])
def test_normals_median_of_few_angles(angles: tuple[float, ...], median: float) -> None:
    # an even count gave the lower middle angle (20.001 for 10/20/30/40), not the documented median
    rad = torch.deg2rad(torch.tensor(angles, dtype=torch.float64))
    pred = torch.stack([torch.cos(rad), torch.sin(rad), torch.zeros_like(rad)]).reshape(1, 3, 1, -1)
    gt = torch.tensor([1.0, 0.0, 0.0], dtype=torch.float64).view(1, 3, 1, 1).expand_as(pred)
    m = NormalsMetric()
    m.update(pred, gt)
    assert m.compute()["median"] == pytest.approx(median, abs=m.median_bin_deg)


def test_normals_median_matches_exact_median() -> None:
    g = torch.Generator().manual_seed(0)
    pred = torch.nn.functional.normalize(torch.randn(2, 3, 9, 11, generator=g), dim=1)
    gt = torch.nn.functional.normalize(torch.randn(2, 3, 9, 11, generator=g), dim=1)
    m = NormalsMetric()
    m.update(pred, gt)
    exact = torch.rad2deg(torch.acos((pred * gt).sum(1).clamp(-1, 1))).flatten()
    # 198 angles: np.median's mean of the two middle ones (torch.median would give the lower), within one bin
    assert m.compute()["median"] == pytest.approx(float(np.median(exact.double().numpy())), abs=1e-3)
    assert m.compute()["mean"] == pytest.approx(float(exact.double().mean()), abs=1e-3)


# ------------------------------------------------------------------------------------------------------------
# saliency
# ------------------------------------------------------------------------------------------------------------


def _saliency_example() -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    pred = [torch.tensor([[[0.1, 0.32, 0.62, 0.95]]]), torch.tensor([[[0.52, 0.1]]])]
    gt = [torch.tensor([[[0.0, 1.0, 1.0, 255.0]]]), torch.tensor([[[0.0, 0.0]]])]
    return pred, gt


def test_saliency_hand_computed() -> None:
    pred, gt = _saliency_example()
    m = SaliencyMetric()
    m.update(pred, gt)
    r = m.compute()
    # mean IoU per threshold: t<=0.30: 0.5, 0.35..0.50: 0.25, 0.55..0.60: 0.75, >=0.65: 0.5
    assert r["mIoU"] == pytest.approx(75.0)
    assert r["threshold_mIoU"] == pytest.approx(0.55)
    # the second image has no salient pixel: precision = recall = 0 at every threshold (the reference's
    # convention), so the best is t <= 0.30 with mean P = mean R = (1 + 0) / 2 -> F = 0.5 for any beta
    assert r["maxF"] == pytest.approx(50.0) and r["threshold_maxF"] == pytest.approx(0.2)
    assert r["maxF1"] == pytest.approx(50.0)
    assert r["beta2"] == 0.3
    # beta decides the threshold: t <= 0.30 gives P = 2/3, R = 1; t = 0.45 .. 0.80 gives P = 1, R = 1/2
    m1 = SaliencyMetric()
    m1.update([torch.tensor([[[0.8, 0.3, 0.4, 0.1]]])], [torch.tensor([[[1.0, 1.0, 0.0, 0.0]]])])
    r1 = m1.compute()
    assert r1["maxF"] == pytest.approx(100 * 1.3 * 0.5 / (0.3 + 0.5))  # beta^2 = 0.3 prefers precision
    assert r1["threshold_maxF"] == pytest.approx(0.45)
    assert r1["maxF1"] == pytest.approx(100 * 2 * (2 / 3) / (2 / 3 + 1))
    assert r1["threshold_maxF1"] == pytest.approx(0.2)
    assert SaliencyMetric(beta2=1.0).compute()["beta2"] == 1.0


def test_saliency_image_without_salient_pixels_counts_precision_zero() -> None:
    """An empty prediction on an empty label: IoU 1 (agreement) but precision = recall = 0 (reference)."""
    m = SaliencyMetric()
    m.update([torch.zeros(1, 4, 4)], [torch.zeros(1, 4, 4)])
    r = m.compute()
    assert r["mIoU"] == pytest.approx(100.0)
    assert r["maxF"] == 0.0 and r["maxF1"] == 0.0


def test_saliency_thresholds_are_spec() -> None:
    assert np.allclose(SaliencyMetric().thresholds, [0.2 + 0.05 * i for i in range(15)])


# ------------------------------------------------------------------------------------------------------------
# edges
# ------------------------------------------------------------------------------------------------------------


def _edge_pattern(size: int = 200) -> np.ndarray:
    """Thinning-invariant GT: three horizontal lines and a disjoint diagonal (no 4-connected corners)."""
    e = np.zeros((size, size), np.float32)
    s = size / 200
    for row in (40, 100, 160):
        e[int(row * s), int(20 * s) : int(180 * s)] = 1
    i = np.arange(int(50 * s))
    e[int(45 * s) + i, int(20 * s) + i] = 1
    return e


def _edge_scores(pred: np.ndarray, gt: np.ndarray, **kw: object) -> dict[str, float]:
    m = EdgeMetric(**kw)
    m.update(torch.from_numpy(pred)[None, None], torch.from_numpy(gt)[None, None])
    return m.compute()


def test_edge_perfect_prediction() -> None:
    gt = _edge_pattern()
    r = _edge_scores(gt.copy(), gt)
    assert r["odsF"] == pytest.approx(100.0)
    assert r["oisF"] == pytest.approx(100.0)
    assert r["AP_area"] == pytest.approx(100.0)
    # every threshold has recall 1: one distinct recall, for which seism's general AP is defined as 0
    assert r["AP"] == 0.0


def test_edge_one_pixel_shift_is_matched_far_shift_is_not() -> None:
    gt = _edge_pattern()  # 200x200: tolerance 0.0075 * 282.8 = 2.1 px
    for shift in ((1, 0), (0, 1), (1, 1), (-1, 1)):
        near = np.roll(gt, shift=shift, axis=(0, 1))
        assert _edge_scores(near, gt)["odsF"] == pytest.approx(100.0)
    far = np.roll(gt, shift=(12, 0), axis=(0, 1))
    assert _edge_scores(far, gt)["odsF"] < 5.0


def test_edge_four_connected_corner_loses_its_corner_pixel() -> None:
    """Thinning makes the prediction 8-connected: the corner pixel of an L is removed (as in BSDS)."""
    gt = np.zeros((200, 200), np.float32)
    gt[100, 50:150] = 1
    gt[50:101, 50] = 1
    r = _edge_scores(gt.copy(), gt)
    assert r["odsR"] == pytest.approx(100 * 149 / 150) and r["odsP"] == pytest.approx(100.0)
    assert _edge_scores(gt.copy(), gt, thin_gt=True)["odsF"] == pytest.approx(100.0)


def test_edge_matching_is_one_to_one() -> None:
    gt = np.zeros((200, 200), bool)
    gt[100, 100] = True
    pred = np.zeros_like(gt)
    pred[100, 100] = pred[101, 100] = True  # both within tolerance of the single GT pixel
    assert match_edge_pixels(pred, gt, max_dist=2.0) == 1
    counts = edge_image_counts(pred.astype(np.float32), gt.astype(np.float32), [0.5], thin_pred=False)
    assert counts["cntR"][0] == 1 and counts["sumP"][0] == 2 and counts["sumR"][0] == 1


def test_edge_empty_ground_truth_and_empty_prediction() -> None:
    empty = np.zeros((64, 64), np.float32)
    r = _edge_scores(empty, empty)
    assert r["odsF"] == 0.0 and r["oisF"] == 0.0 and r["AP"] == 0.0
    pred = _edge_pattern(64)
    r = _edge_scores(pred, empty)
    assert r["odsF"] == 0.0 and r["oisF"] == 0.0 and r["AP"] == 0.0
    m = EdgeMetric()
    assert math.isnan(m.compute()["odsF"])
    # an image without GT edges adds false positives only; its F is 0 at every threshold and OIS takes the
    # first (lowest) one, as BSDS/seism do, so its predicted pixels count against precision
    gt = _edge_pattern()
    m.update(
        [torch.from_numpy(gt)[None], torch.from_numpy(pred * 0.5)[None]], [torch.from_numpy(gt)[None], empty[None]]
    )
    r = m.compute()
    n_gt, n_fp = float(gt.sum()), float(pred.sum())
    p_ois = n_gt / (n_gt + n_fp)
    assert r["oisF"] == pytest.approx(100 * 2 * p_ois / (p_ois + 1))
    assert r["odsF"] == pytest.approx(100.0)  # threshold > 0.5 removes the false positives


def test_edge_ois_ties_take_the_lowest_threshold() -> None:
    """Image 1 ties at every threshold with F = 1 (prediction = GT); image 2 has F = 0 everywhere: 8 false
    positives at t = 0.1 (strokes at 0.15), 4 at t = 0.2 (strokes at 0.25), none at 0.3. BSDS takes t = 0.1."""
    gt = _edge_pattern(64)
    empty = np.zeros_like(gt)
    fp = empty.copy()
    fp[10, 10:14] = 0.15
    fp[50, 10:14] = 0.25
    m = EdgeMetric(thresholds=[0.1, 0.2, 0.3])
    m.update([torch.from_numpy(gt)[None], torch.from_numpy(fp)[None]], [torch.from_numpy(gt)[None], empty[None]])
    n_gt = float(gt.sum())
    p = n_gt / (n_gt + 8)
    assert m.compute()["oisF"] == pytest.approx(100 * 2 * p / (p + 1))


def test_edge_tolerance_is_bsds_exact() -> None:
    """d^2 <= maxDist^2 with maxDist = ratio * sqrt(w*w + h*h), no slack: at 400x400 and 0.0075 the radius is
    4.2426406871192848 and its square 17.999999999999996 < 18, so a pixel at offset (3, 3) is not matched."""
    assert tolerance_pixels(0.0075, 400, 400) ** 2 < 18
    gt = np.zeros((400, 400), bool)
    gt[200, 200] = True
    diag = np.zeros_like(gt)
    diag[203, 203] = True
    straight = np.zeros_like(gt)
    straight[200, 204] = True  # d = 4 < 4.24
    r = tolerance_pixels(0.0075, 400, 400)
    assert match_edge_pixels(diag, gt, max_dist=r) == 0
    assert match_edge_pixels(straight, gt, max_dist=r) == 1
    counts = edge_image_counts(diag.astype(np.float32), gt.astype(np.float32), [0.5], thin_pred=False)
    assert counts["cntR"][0] == 0


def test_edge_ignore_pixels_are_excluded() -> None:
    gt = _edge_pattern()
    pred = gt.copy()
    pred[10, 10:190] = 1  # spurious edge ...
    gt_ign = gt.copy()
    gt_ign[5:15, :] = 255  # ... inside an ignored band
    assert _edge_scores(pred, gt_ign)["odsF"] == pytest.approx(100.0)
    assert _edge_scores(pred, gt)["odsF"] < 100.0


def test_edge_ois_at_least_ods_and_curve() -> None:
    rng = np.random.default_rng(0)
    m = EdgeMetric(thresholds=19)
    for _ in range(3):
        gt = np.zeros((60, 80), np.float32)
        gt[rng.integers(5, 55), :] = 1
        gt[:, rng.integers(5, 75)] = 1
        prob = np.clip(gt * 0.6 + rng.uniform(0, 0.5, gt.shape), 0, 1).astype(np.float32)
        m.update(torch.from_numpy(prob)[None, None], torch.from_numpy(gt)[None, None])
    r = m.compute()
    assert r["oisF"] >= r["odsF"] - 1e-9
    assert 0 < r["odsF"] <= 100 and 0 < r["AP"] <= 100
    assert m.thresholds.size == 19 and np.allclose(m.thresholds, np.arange(1, 20) / 20)


def test_edge_default_thresholds() -> None:
    assert np.allclose(EdgeMetric().thresholds, np.linspace(1 / 100, 99 / 100, 99))


def test_edge_size_mismatch_raises() -> None:
    with pytest.raises(ValueError, match="size"):
        EdgeMetric().update(torch.zeros(1, 1, 10, 10), torch.zeros(1, 1, 12, 10))


# --- thinning --------------------------------------------------------------------------------------------------


def _reference_thin(mask: np.ndarray) -> np.ndarray:
    """Straightforward full-image parallel Guo-Hall thinning, written from the conditions (no look-up table)."""
    b = np.pad(mask.astype(np.int64), 1)
    while True:
        changed = False
        for sub in (0, 1):
            c = b[1:-1, 1:-1]
            x = [b[1:-1, 2:], b[:-2, 2:], b[:-2, 1:-1], b[:-2, :-2], b[1:-1, :-2], b[2:, :-2], b[2:, 1:-1], b[2:, 2:]]
            x = x + [x[0]]
            xh = sum(((x[2 * i] == 0) & ((x[2 * i + 1] == 1) | (x[2 * i + 2] == 1))).astype(int) for i in range(4))
            n1 = sum((x[2 * k] | x[2 * k + 1]) for k in range(4))
            n2 = sum((x[2 * k + 1] | x[2 * k + 2]) for k in range(4))
            mn = np.minimum(n1, n2)
            if sub == 0:
                g3 = ((x[1] | x[2] | (1 - x[7])) & x[0]) == 0
            else:
                g3 = ((x[5] | x[6] | (1 - x[3])) & x[4]) == 0
            dele = (c == 1) & (xh == 1) & (mn >= 2) & (mn <= 3) & g3
            if dele.any():
                b[1:-1, 1:-1][dele] = 0
                changed = True
        if not changed:
            return b[1:-1, 1:-1].astype(bool)


def test_thin_three_pixel_line_to_one_pixel() -> None:
    m = np.zeros((20, 40), bool)
    m[8:11, 5:35] = True
    t = thin(m)
    assert t[:, 7:33].sum(axis=0).tolist() == [1] * 26  # one pixel per column in the interior
    assert t.sum(axis=1).max() >= 25 and t.sum() <= 32
    assert not t[:8].any() and not t[11:].any()


def test_thin_keeps_thin_lines_and_points() -> None:
    gt = _edge_pattern().astype(bool)
    gt[2, 2] = True
    assert np.array_equal(thin(gt), gt)
    assert not thin(np.zeros((5, 5), bool)).any()


def test_thin_matches_reference_on_random_blobs() -> None:
    rng = np.random.default_rng(1)
    for _ in range(5):
        noise = rng.uniform(size=(40, 50))
        smooth = np.cumsum(np.cumsum(noise - 0.5, 0), 1)
        mask = smooth > np.quantile(smooth, 0.5)
        assert np.array_equal(thin(mask), _reference_thin(mask))


def test_edge_counts_match_naive_reference() -> None:
    """Batched thinning + offset-graph matching == per-threshold reference thinning + KD-tree matching."""
    rng = np.random.default_rng(2)
    h, w = 40, 56
    gt = np.zeros((h, w), np.float32)
    gt[10, 5:50] = gt[5:35, 30] = 1
    gt[20:25, 0:10] = 255
    prob = np.clip(0.7 * np.maximum(np.roll(gt == 1, 1, 0), gt == 1) + rng.uniform(0, 0.4, (h, w)), 0, 1).astype(
        np.float32
    )
    thr = np.linspace(0.1, 0.9, 9)
    counts = edge_image_counts(prob, gt, thr)
    max_dist = 0.0075 * math.hypot(h, w) * 5  # widen to make the matching non-trivial
    counts5 = edge_image_counts(prob, gt, thr, max_dist_ratio=0.0075 * 5)
    valid = gt != 255
    g = np.argwhere((gt == 1) & valid)
    for k, t in enumerate(thr):
        pe = _reference_thin(prob >= t) & valid
        p = np.argwhere(pe)
        assert counts["sumP"][k] == len(p) and counts["sumR"][k] == len(g)
        for md, cnt in ((0.0075 * math.hypot(h, w), counts), (max_dist, counts5)):
            pairs = cKDTree(p).query_ball_tree(cKDTree(g), md) if len(p) else []
            rows = np.repeat(np.arange(len(p)), [len(x) for x in pairs])
            cols = np.concatenate([np.asarray(x, dtype=np.int64) for x in pairs]) if len(p) else np.zeros(0, int)
            graph = csr_matrix((np.ones(rows.size), (rows, cols)), shape=(len(p), len(g)))
            expected = int((maximum_bipartite_matching(graph, perm_type="column") >= 0).sum())
            assert cnt["cntR"][k] == expected == cnt["cntP"][k]


def _soft_example(seed: int = 3, h: int = 48, w: int = 64) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    gt = np.zeros((h, w), np.float32)
    gt[h // 3, 4:-4] = gt[4:-4, w // 2] = 1
    prob = np.clip(0.6 * (gt == 1) + rng.uniform(0, 0.6, (h, w)), 0, 1).astype(np.float32)
    return prob, gt


def test_edge_skipping_unchanged_thresholds_is_exact() -> None:
    prob, gt = _soft_example()
    prob = np.round(prob * 5) / 5  # few distinct values: most of the 99 thresholds repeat a binary map
    thr = np.linspace(0.01, 0.99, 99)
    allk = edge_image_counts(prob, gt, thr)
    for k in range(0, 99, 7):
        one = edge_image_counts(prob, gt, [thr[k]])
        assert all(allk[key][k] == one[key][0] for key in ("cntR", "sumR", "cntP", "sumP"))


def test_edge_batching_does_not_change_counts(monkeypatch: pytest.MonkeyPatch) -> None:
    import medusa_mtl.metrics as metrics

    prob, gt = _soft_example()
    thr = np.linspace(0.05, 0.95, 19)
    ref = edge_image_counts(prob, gt, thr)
    monkeypatch.setattr(metrics, "_EDGE_BATCH_PIXELS", 3 * 50 * 66)
    monkeypatch.setattr(metrics, "_EDGE_MATCH_ROWS", 30)
    small = edge_image_counts(prob, gt, thr)
    for key in ref:
        assert np.array_equal(ref[key], small[key])


# ------------------------------------------------------------------------------------------------------------
# delta_m and construction
# ------------------------------------------------------------------------------------------------------------


def test_delta_m_spec_check() -> None:
    # The paper's published MT-baseline and ST figures (SPEC §2), used only as inputs of the formula check.
    res = {"semseg": {"mIoU": 33.21}, "depth": {"rmse": 0.614}}
    st = {"semseg": {"mIoU": 34.57}, "depth": {"rmse": 0.606}}
    assert round(delta_m(res, st, ["semseg", "depth"]), 2) == -2.63
    assert delta_m(st, st, ["semseg", "depth"]) == 0.0


def test_delta_m_errors() -> None:
    st = {"semseg": {"mIoU": 34.57}, "depth": {"rmse": 0.606}}
    with pytest.raises(KeyError, match="rmse"):
        delta_m({"semseg": {"mIoU": 33.0}, "depth": {"mean": 1.0}}, st, ["semseg", "depth"])
    with pytest.raises(KeyError, match="depth"):
        delta_m({"semseg": {"mIoU": 33.0}}, st, ["semseg", "depth"])
    with pytest.raises(ValueError):
        delta_m(st, st, [])


def test_build_metrics() -> None:
    ms = build_metrics("semseg,depth,normals,edge", "nyud")
    assert isinstance(ms["semseg"], ConfusionMIoU) and ms["semseg"].num_classes == 40
    assert isinstance(ms["depth"], DepthMetric) and isinstance(ms["edge"], EdgeMetric)
    ps = build_metrics(["human_parts", "sal"], "pascal")
    assert ps["human_parts"].num_classes == 7 and isinstance(ps["sal"], SaliencyMetric)


# ------------------------------------------------------------------------------------------------------------
# streaming: batches, merge, state
# ------------------------------------------------------------------------------------------------------------


def _random_data(task: str, n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    h, w = 24, 32
    if task == "seg":
        pred = torch.randint(0, 4, (n, h, w), generator=g)
        gt = torch.randint(0, 4, (n, h, w), generator=g)
        gt[gt == 3] = 255
        return pred, gt
    if task == "depth":
        return torch.rand(n, 1, h, w, generator=g) * 5, (torch.rand(n, 1, h, w, generator=g) * 5 - 0.5).clamp_min(0)
    if task == "normals":
        pred = torch.nn.functional.normalize(torch.randn(n, 3, h, w, generator=g), dim=1)
        gt = torch.nn.functional.normalize(torch.randn(n, 3, h, w, generator=g), dim=1)
        gt[:, :, :3] = 0
        return pred, gt
    prob = torch.rand(n, 1, h, w, generator=g)
    gt = (torch.rand(n, 1, h, w, generator=g) > 0.8).float()
    gt[:, :, :2] = 255
    return prob, gt


FACTORIES = {
    "seg": (lambda: ConfusionMIoU(4), "seg"),
    "depth": (DepthMetric, "depth"),
    "normals": (NormalsMetric, "normals"),
    "sal": (SaliencyMetric, "sal"),
    "edge": (lambda: EdgeMetric(thresholds=9), "edge"),
}


def _same(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for k in a:
        np.testing.assert_allclose(np.asarray(a[k], float), np.asarray(b[k], float), rtol=1e-9, atol=1e-9)


@pytest.mark.parametrize("name", list(FACTORIES))
def test_streaming_batches_merge_and_state(name: str) -> None:
    make, kind = FACTORIES[name]
    pred, gt = _random_data(kind, 4, seed=3)
    whole: StreamingMetric = make()
    whole.update(pred, gt)
    ref = whole.compute()

    two = make()
    two.update(pred[:1], gt[:1])
    two.update(list(pred[1:]), list(gt[1:]))  # also as a list of per-image tensors
    _same(two.compute(), ref)

    a, b = make(), make()
    a.update(pred[:3], gt[:3])
    b.update(pred[3:], gt[3:])
    _same(a.merge(b).compute(), ref)

    c, d = make(), make()
    c.update(pred[:2], gt[:2])
    d.update(pred[2:], gt[2:])
    c.merge(d.state_dict())
    _same(c.compute(), ref)

    e = make()
    e.load_state_dict(whole.state_dict())
    _same(e.compute(), ref)
    e.reset()
    e.update(pred[:1], gt[:1])
    assert e.state_dict().keys() == whole.state_dict().keys()


def test_merge_rejects_incompatible() -> None:
    with pytest.raises(ValueError):
        ConfusionMIoU(3).merge(ConfusionMIoU(4))
    with pytest.raises(TypeError):
        DepthMetric().merge(NormalsMetric())
    with pytest.raises(ValueError, match="thresholds"):
        EdgeMetric(thresholds=9).merge(EdgeMetric(thresholds=np.linspace(0.05, 0.95, 9)))


def test_sync_without_distributed_is_noop() -> None:
    m = DepthMetric()
    m.update(torch.ones(1, 1, 2, 2), torch.ones(1, 1, 2, 2) * 2)
    before = m.compute()
    m.sync()
    _same(m.compute(), before)


def test_metric_options_reach_the_metrics() -> None:
    """Saliency beta and the edge tolerance are configurable per run (SPEC §5: defaults 0.3 and 0.0075)."""
    from medusa_mtl.engine.training import MultiTaskModule
    from medusa_mtl.tasks import get_task

    assert get_task("sal").make_metric("pascal").beta2 == 0.3
    assert get_task("sal").make_metric("pascal", beta2=1.0).beta2 == 1.0
    assert get_task("edge").make_metric("nyud").max_dist_ratio == 0.0075
    module = MultiTaskModule(arch="mt_baseline", tasks="semseg,edge", dataset="nyud", backbone="test_efficientnet",
                             edge_thresholds=9, metric_options={"edge": {"max_dist_ratio": 0.011}})
    module._reset_metrics()
    edge = module._metrics["edge"]
    assert edge.max_dist_ratio == 0.011 and edge.thresholds.size == 9
    assert module.hparams["metric_options"] == {"edge": {"max_dist_ratio": 0.011}}


def test_edge_reference_ap_by_hand() -> None:
    """seism's general AP: precision interpolated at recall 0, 0.01, ..., 1 within the curve's range, / 100."""
    ap = EdgeMetric._reference_ap
    # (R, P) = (0.8, 0.4), (0.5, 0.7), (0.2, 0.9) in increasing threshold order. Grid 0.20..0.50: 0.9 - j/150
    # for j = 0..30 sums to 27.9 - 3.1 = 24.8; grid 0.51..0.80: 0.7 - j/100 for j = 1..30 sums to 21 - 4.65.
    p = np.array([0.4, 0.7, 0.9])
    r = np.array([0.8, 0.5, 0.2])
    assert ap(p, r) == pytest.approx((24.8 + 16.35) / 100)
    # equal recalls: the lowest threshold's point is kept (MATLAB's unique keeps the first occurrence)
    p2 = np.array([0.4, 0.6, 0.7, 0.9])
    r2 = np.array([0.8, 0.5, 0.5, 0.2])
    assert ap(p2, r2) == pytest.approx(ap(np.array([0.4, 0.6, 0.9]), np.array([0.8, 0.5, 0.2])))
    assert ap(p2, r2) != pytest.approx(ap(np.array([0.4, 0.7, 0.9]), np.array([0.8, 0.5, 0.2])))
    # one distinct recall -> 0; a curve over the whole grid at P = 1 -> 101 / 100 (the published definition)
    assert ap(np.array([0.5, 0.9]), np.array([0.3, 0.3])) == 0.0
    assert ap(np.ones(2), np.array([0.0, 1.0])) == pytest.approx(1.01)


def test_delta_m_takes_a_comma_separated_task_string_and_refuses_duplicates() -> None:
    # "semseg,depth" (as build_metrics and create_model take it) was iterated character by character: "unknown
    # task 's'"; a task listed twice counted twice in the mean
    res = {"semseg": {"mIoU": 33.21}, "depth": {"rmse": 0.614}}
    st = {"semseg": {"mIoU": 34.57}, "depth": {"rmse": 0.606}}
    assert delta_m(res, st, "semseg, depth") == delta_m(res, st, ["semseg", "depth"])
    assert delta_m(res, st, "depth") == delta_m(res, st, ["depth"])
    with pytest.raises(ValueError, match="listed twice"):
        delta_m(res, st, ["semseg", "semseg", "depth"])
    with pytest.raises(ValueError, match="main_tasks is empty"):
        delta_m(res, st, "")
