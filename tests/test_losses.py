"""Task losses (SPEC §5) against hand-computed values and the literal masked-mean definitions."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from medusa_mtl import losses


def test_depth_l1_hand_values_and_invalid_pixels() -> None:
    target = torch.tensor([[[[1.0, 0.0], [2.0, 4.0]]]])
    pred = torch.tensor([[[[1.5, float("nan")], [1.0, 4.0]]]], requires_grad=True)  # NaN at the invalid pixel
    loss = losses.depth_l1(pred, target)
    assert loss.item() == pytest.approx((0.5 + 1.0 + 0.0) / 3)
    loss.backward()
    assert torch.isfinite(pred.grad).all() and pred.grad[0, 0, 0, 1] == 0


def test_normals_l1_hand_values() -> None:
    target = torch.zeros(1, 3, 1, 2)
    target[0, :, 0, 0] = torch.tensor([0.0, 0.0, 1.0])  # pixel 1 is invalid (zero vector)
    pred = torch.zeros(1, 3, 1, 2)
    pred[0, :, 0, 0] = torch.tensor([3.0, 0.0, 4.0])  # normalised: (0.6, 0, 0.8)
    pred[0, :, 0, 1] = torch.tensor([1.0, 1.0, 1.0])
    assert losses.normals_l1(pred, target).item() == pytest.approx((0.6 + 0.0 + 0.2) / 3)


@pytest.mark.parametrize("seed", [0, 1])
def test_masked_losses_equal_boolean_index_definitions(seed: int) -> None:
    g = torch.Generator().manual_seed(seed)
    pred = torch.randn(2, 1, 8, 9, generator=g, dtype=torch.float64, requires_grad=True)
    depth = torch.rand(2, 1, 8, 9, generator=g, dtype=torch.float64) * 3
    depth[depth < 0.8] = 0
    valid = depth > 0
    expected = (pred[valid] - depth[valid]).abs().mean()
    torch.testing.assert_close(losses.depth_l1(pred, depth), expected)
    (g1,) = torch.autograd.grad(losses.depth_l1(pred, depth), pred)
    (g2,) = torch.autograd.grad(expected, pred)
    torch.testing.assert_close(g1, g2)

    npred = torch.randn(2, 3, 8, 9, generator=g, dtype=torch.float64, requires_grad=True)
    normals = F.normalize(torch.randn(2, 3, 8, 9, generator=g, dtype=torch.float64), dim=1)
    normals[:, :, :3] = 0
    nvalid = (normals.abs().sum(1, keepdim=True) > 0).expand_as(normals)
    expected = (F.normalize(npred, dim=1)[nvalid] - normals[nvalid]).abs().mean()
    torch.testing.assert_close(losses.normals_l1(npred, normals), expected)
    (g1,) = torch.autograd.grad(losses.normals_l1(npred, normals), npred)
    (g2,) = torch.autograd.grad(expected, npred)
    torch.testing.assert_close(g1, g2)


def test_no_valid_pixel_gives_zero_loss_that_depends_on_the_prediction() -> None:
    pred = torch.randn(1, 3, 4, 4, requires_grad=True)
    for loss in (losses.depth_l1(pred[:, :1], torch.zeros(1, 1, 4, 4)),
                 losses.normals_l1(pred, torch.zeros(1, 3, 4, 4)),
                 losses.cross_entropy(pred, torch.full((1, 4, 4), losses.IGNORE_INDEX)),
                 losses.edge_bce(pred[:, :1], torch.full((1, 1, 4, 4), float(losses.IGNORE_INDEX)))):
        assert loss.item() == 0.0
        (grad,) = torch.autograd.grad(loss, pred)
        assert torch.equal(grad, torch.zeros_like(pred))


def test_balanced_bce_hand_values() -> None:
    pred = torch.tensor([[[[0.0, 2.0], [-1.0, 0.0]]]])
    target = torch.tensor([[[[1.0, 0.0], [0.0, 255.0]]]])  # the last pixel is ignored
    w = 0.95
    expected = -(w * math.log(0.5) + (1 - w) * math.log(1 - 1 / (1 + math.exp(-2.0)))
                 + (1 - w) * math.log(1 - 1 / (1 + math.exp(1.0)))) / 3
    assert losses.edge_bce(pred, target).item() == pytest.approx(expected, rel=1e-6)
    w = 2 / 3  # saliency: #negatives / #valid over the batch
    expected = -(w * math.log(0.5) + (1 - w) * math.log(1 - 1 / (1 + math.exp(-2.0)))
                 + (1 - w) * math.log(1 - 1 / (1 + math.exp(1.0)))) / 3
    assert losses.saliency_bce(pred, target).item() == pytest.approx(expected, rel=1e-6)
