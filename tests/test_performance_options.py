"""Fast evaluation paths and speed switches give the same results as the literal computation.

- Medusa (fused SFA / MSA / HRHead) against an independent, literal re-implementation of SPEC §4 built from
  plain torch modules in this file: same state-dict keys (strict load), same eval and train outputs (deep
  supervision included), same gradients and BatchNorm statistics -- in fp32 within 1e-5 relative, in fp64 to
  ~1e-12 (which shows the algebraic identities are exact, not approximations);
- the building blocks (:func:`multiscale_conv1x1` for every low/high-resolution plan, the tap form of the MSA
  logits, the BatchNorm fold) in fp64; Medusa's per-head blocks batched as grouped convolutions in eval mode;
  the output resize in the channels_last layout;
- every model using HRHead: fused == ``set_fused(model, False)``;
- channels_last equal, bf16 autocast close, ``torch.compile`` (graph capture with the ``aot_eager`` backend;
  the inductor backend only with ``MEDUSA_TEST_COMPILE=1``, it needs minutes on a small CPU);
- ``benchmarks/throughput.py`` end to end in a tiny configuration.

No test depends on timing. Inputs are tiny (batch 2, 64x64) and run on one CPU thread.
"""

from __future__ import annotations

import copy
import itertools
import json
import os
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

import medusa_mtl.models.fused as fused
import medusa_mtl.models.medusa_fused as medusa_fused
from medusa_mtl.models import create_model
from medusa_mtl.models.base import DEEP_SUPERVISION
from medusa_mtl.models.blocks import HRHead, upsample_output, upsample_to
from medusa_mtl.models.fused import (
    fold_batchnorm_into_conv,
    fused_head_in_row_bands,
    low_resolution_scales,
    multiscale_conv1x1,
    upsample_separable,
)
from medusa_mtl.models.medusa import MSAHead
from medusa_mtl.models.optimize import autocast, optimize_for_inference, prepare_input, set_fused, to_channels_last

ROOT = Path(__file__).resolve().parents[1]
B, SIZE = 2, 64
NYUD_AUX = ["semseg", "depth", "normals", "edge"]


@pytest.fixture(scope="module", autouse=True)
def _single_thread() -> Any:
    """One intra-op thread (see tests/test_models.py: spinning OpenMP threads on shared cores)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def image(seed: int = 0, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    return torch.randn(B, 3, SIZE, SIZE, generator=torch.Generator().manual_seed(seed)).to(dtype)


def randomize_batchnorm(model: nn.Module, seed: int = 0) -> nn.Module:
    """Non-trivial BatchNorm statistics and affine parameters, so that eval mode really exercises them."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                c = m.num_features
                m.running_mean.copy_(torch.rand(c, generator=g) * 0.4 - 0.2)
                m.running_var.copy_(torch.rand(c, generator=g) * 1.5 + 0.5)
                m.weight.copy_(torch.rand(c, generator=g) + 0.5)
                m.bias.copy_(torch.rand(c, generator=g) * 0.4 - 0.2)
    return model


def flatten(out: dict[str, Any]) -> dict[str, torch.Tensor]:
    """``{"semseg": t, "deep_supervision/scale0/semseg": t, ...}``."""
    flat: dict[str, torch.Tensor] = {}
    for k, v in out.items():
        if k == DEEP_SUPERVISION:
            for tag, preds in v.items():
                for t, p in preds.items():
                    flat[f"{k}/{tag}/{t}"] = p
        else:
            flat[k] = v
    return flat


def assert_outputs_close(a: dict[str, Any], b: dict[str, Any], rtol: float = 1e-5) -> None:
    """Same keys and shapes; every tensor within ``rtol`` relative error in L2 norm (``|a-b| / |b|``) and
    every element within ``10 * rtol`` of the tensor's largest magnitude.

    (Float rounding of a different summation order, e.g. inside the MSA softmax, reaches ~1.6e-5 of the
    largest logit at single pixels in fp32 while the norm error stays ~1e-6; in fp64 both are ~1e-15.)
    """
    fa, fb = flatten(a), flatten(b)
    assert fa.keys() == fb.keys()
    for k in fa:
        assert fa[k].shape == fb[k].shape, k
        x, y = fa[k].double(), fb[k].double()
        rel = float((x - y).norm() / y.norm().clamp_min(1e-30))
        assert rel <= rtol, f"{k}: relative L2 error {rel:.3g} > {rtol:g}"
        torch.testing.assert_close(x, y, rtol=10 * rtol, atol=10 * rtol * float(y.abs().max()), msg=k)


def total_loss(out: dict[str, Any]) -> torch.Tensor:
    return sum(v.pow(2).mean() for v in flatten(out).values())  # type: ignore[return-value]


def assert_grads_close(model: nn.Module, ref: nn.Module, rtol: float = 1e-5) -> None:
    """Gradients by parameter name, within ``rtol`` of the largest gradient of the same parameter tensor --
    except for gradients that are zero in exact arithmetic (a conv bias right before a train-mode BatchNorm),
    which are compared against the model's overall gradient scale."""
    ref_grads = {n: p.grad for n, p in ref.named_parameters()}
    overall = max(float(g.abs().max()) for g in ref_grads.values() if g is not None)
    for n, p in model.named_parameters():
        g, r = p.grad, ref_grads[n]
        assert (g is None) == (r is None), n
        if g is None:
            continue
        scale = max(float(r.abs().max()), 1e-3 * overall)
        torch.testing.assert_close(g, r, rtol=rtol, atol=rtol * scale, msg=n)


# ----------------------------------------------------------------------------------------------- reference
# A literal re-implementation of SPEC §4's Medusa head from plain torch modules. Module names follow the
# package's layout so that its state dict loads with strict=True.


class RefSABlock(nn.Module):
    def __init__(self, c: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(c, c, 3, padding=1, bias=False)
        self.attention = nn.Conv2d(c, c, 3, padding=1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x) * torch.sigmoid(self.attention(x))


class RefBasicBlock(nn.Module):
    def __init__(self, c: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(c, c, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(c)
        self.conv2 = nn.Conv2d(c, c, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(c)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        return F.relu(self.bn2(self.conv2(out)) + x)


class RefHRHead(nn.Module):
    def __init__(self, channels: Sequence[int], out: int) -> None:
        super().__init__()
        c = sum(channels)
        self.last_layer = nn.Sequential(nn.Conv2d(c, c, 1), nn.BatchNorm2d(c), nn.ReLU(), nn.Conv2d(c, out, 1))

    def forward(self, feats: Sequence[torch.Tensor], weights: torch.Tensor | None = None) -> torch.Tensor:
        size = feats[0].shape[-2:]
        up = [F.interpolate(f, size=size, mode="bilinear", align_corners=False) for f in feats]
        if weights is not None:
            up = [u * weights[:, s : s + 1] for s, u in enumerate(up)]
        return self.last_layer(torch.cat(up, dim=1))


class RefMSAHead(nn.Module):
    def __init__(self, channels: Sequence[int], out: int) -> None:
        super().__init__()
        self.attention = nn.ModuleList([nn.Conv2d(c, 1, 3, padding=1) for c in channels])
        self.fuse = RefHRHead(channels, out)

    def forward(self, feats: Sequence[torch.Tensor]) -> torch.Tensor:
        size = feats[0].shape[-2:]
        up = [F.interpolate(f, size=size, mode="bilinear", align_corners=False) for f in feats]
        weights = torch.cat([conv(u) for conv, u in zip(self.attention, up)], dim=1).softmax(dim=1)
        return self.fuse(feats, weights)


class RefMedusaHead(nn.Module):
    def __init__(self, channels: Sequence[int], out: int, sfa: bool, initial: bool, head: str) -> None:
        super().__init__()
        self.sfa = nn.ModuleList([RefSABlock(c) for c in channels]) if sfa else None
        self.features = nn.ModuleList([nn.Sequential(RefBasicBlock(c), RefBasicBlock(c)) for c in channels])
        self.initial = nn.ModuleList([nn.Conv2d(c, out, 1) for c in channels]) if initial else None
        self.head = RefMSAHead(channels, out) if head == "msa" else RefHRHead(channels, out)

    def forward(self, feats: Sequence[torch.Tensor], deep: bool) -> tuple[torch.Tensor, list[torch.Tensor]]:
        if self.sfa is not None:
            feats = [sa(f) for sa, f in zip(self.sfa, feats)]
        task = [blocks(f) for blocks, f in zip(self.features, feats)]
        initial = [conv(f) for conv, f in zip(self.initial, task)] if deep and self.initial is not None else []
        return self.head(task), initial


class RefMedusa(nn.Module):
    """Literal Medusa: a copy of the model's backbone and literal heads loaded from its state dict."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.backbone = copy.deepcopy(model.backbone)
        self.tasks, self.aux_tasks = list(model.tasks), list(model.aux_tasks)
        kw = dict(sfa=model.sfa, initial=model.initial_predictions, head=model.head_type)
        self.heads = nn.ModuleDict({
            t: RefMedusaHead(model.backbone_channels, model.out_channels(t), **kw) for t in model.heads
        })
        self.to(next(model.parameters()).dtype)
        self.load_state_dict(model.state_dict(), strict=True)  # same keys, same shapes

    def forward(self, x: torch.Tensor) -> dict[str, Any]:
        feats = self.backbone(x)
        deep = self.training and self.heads[self.tasks[0]].initial is not None
        out: dict[str, Any] = {}
        ds: dict[str, dict[str, torch.Tensor]] = {f"scale{s}": {} for s in range(len(feats))}
        for t in self.aux_tasks if self.training else self.tasks:
            final, initial = self.heads[t](feats, deep)
            out[t] = F.interpolate(final, size=x.shape[-2:], mode="bilinear", align_corners=False)
            for s, p in enumerate(initial):
                ds[f"scale{s}"][t] = p
        if deep:
            out[DEEP_SUPERVISION] = ds
        return out


def medusa(seed: int = 0, **kw: Any) -> nn.Module:
    torch.manual_seed(seed)
    kw.setdefault("aux_tasks", NYUD_AUX)
    return randomize_batchnorm(create_model("medusa", tasks=["semseg", "depth"], dataset="nyud", **kw), seed)


SWITCHES = [dict(), dict(head="hrhead"), dict(sfa=False), dict(initial_predictions=False), dict(aux_tasks=None)]
SWITCH_IDS = ["default", "hrhead", "no-sfa", "no-initial", "no-aux"]


# ----------------------------------------------------------------------------------------------- Medusa


@pytest.mark.parametrize("kw", SWITCHES, ids=SWITCH_IDS)
def test_medusa_state_dict_is_the_literal_layout(kw: dict[str, Any]) -> None:
    model = medusa(**kw)
    ref = RefMedusa(model)  # strict load inside
    assert list(ref.state_dict()) == list(model.state_dict())
    for k, v in ref.state_dict().items():
        assert torch.equal(v, model.state_dict()[k]), k


@pytest.mark.parametrize("kw", SWITCHES, ids=SWITCH_IDS)
def test_medusa_eval_equals_literal_computation(kw: dict[str, Any]) -> None:
    model = medusa(**kw).eval()
    ref = RefMedusa(model).eval()
    x = image()
    with torch.no_grad():
        out, expected = model(x), ref(x)
        assert sorted(out) == ["depth", "semseg"]
        assert_outputs_close(out, expected)
        set_fused(model, False)  # the package's own reference path agrees too
        assert_outputs_close(model(x), expected)


@pytest.mark.parametrize("kw", SWITCHES, ids=SWITCH_IDS)
def test_medusa_train_outputs_gradients_and_statistics_equal_literal(kw: dict[str, Any]) -> None:
    model = medusa(**kw).train()
    ref = RefMedusa(model).train()
    x = image(1)
    out, expected = model(x), ref(x)
    assert (DEEP_SUPERVISION in out) == kw.get("initial_predictions", True)
    assert_outputs_close(out, expected)
    total_loss(out).backward()
    total_loss(expected).backward()
    assert_grads_close(model, ref)
    for (n, b), (n2, b2) in zip(model.named_buffers(), ref.named_buffers()):
        assert n == n2
        torch.testing.assert_close(b.float(), b2.float(), rtol=1e-5, atol=1e-6, msg=n)


def test_medusa_fused_is_exact_in_float64() -> None:
    """In fp64 the fused and literal computations agree to ~1e-12: the identities are exact."""
    model = medusa().double().eval()
    ref = RefMedusa(model).eval()
    x = image(dtype=torch.float64)
    with torch.no_grad():
        assert_outputs_close(model(x), ref(x), rtol=1e-10)
    model.train(), ref.train()
    assert_outputs_close(model(x), ref(x), rtol=1e-10)


def test_medusa_single_task_and_drop_auxiliary_heads() -> None:
    """One running head (no SFA batching) and dropped auxiliary heads give the same main outputs."""
    model = medusa().eval()
    ref = RefMedusa(model).eval()
    x = image()
    with torch.no_grad():
        expected = ref(x)
        model.drop_auxiliary_heads()
        assert_outputs_close(model(x), expected)
        torch.manual_seed(0)
        single = randomize_batchnorm(create_model("medusa", tasks=["semseg"], dataset="nyud")).eval()
        assert_outputs_close(single(x), RefMedusa(single).eval()(x))


def test_medusa_inference_parameters() -> None:
    """Resource accounting sees every parameter an eval forward uses (the fused paths use some weights
    functionally): backbone + main heads without their initial-prediction convs."""
    from medusa_mtl.reports.resources import count_inference_params

    model = medusa()
    expected = sum(p.numel() for p in model.backbone.parameters())
    for t in model.tasks:
        head = model.heads[t]
        expected += sum(p.numel() for p in head.parameters()) - sum(p.numel() for p in head.initial.parameters())
    assert count_inference_params(model, (SIZE, SIZE)) == expected


def test_medusa_eval_batches_the_heads_blocks(monkeypatch: pytest.MonkeyPatch) -> None:
    """In eval mode the BasicBlocks of all running heads run as grouped convolutions (BatchNorm folded), for two
    and for five heads, with and without SFA -- the literal per-head computation's values; in train mode
    (BatchNorm on batch statistics) and with one head they run per head."""
    calls: list[int] = []
    original = medusa_fused.stacked_blocks

    def spy(model: Any, tasks: Sequence[str], stacked: Sequence[torch.Tensor]) -> list[torch.Tensor]:
        calls.append(len(tasks))
        return original(model, tasks, stacked)

    monkeypatch.setattr(medusa_fused, "stacked_blocks", spy)
    pascal = ["semseg", "human_parts", "sal", "normals", "edge"]
    cases = [(medusa(), 2), (medusa(sfa=False), 2), (medusa(head="hrhead"), 2)]
    torch.manual_seed(0)
    cases.append((randomize_batchnorm(create_model("medusa", tasks=pascal, dataset="pascal")), 5))
    x = image()
    for model, n in cases:
        model.eval()
        ref = RefMedusa(model).eval()
        calls.clear()
        with torch.no_grad():
            out = model(x)
            assert calls == [n]
            assert_outputs_close(out, ref(x))
        model.train()
        calls.clear()
        model(x)
        assert calls == []
    torch.manual_seed(0)
    single = create_model("medusa", tasks=["semseg"], dataset="nyud").eval()
    calls.clear()
    with torch.no_grad():
        single(x)
    assert calls == []


@pytest.mark.parametrize("shape,size", [((2, 40, 6, 8), (24, 32)), ((1, 3, 5, 7), (17, 30)),
                                        ((2, 1, 6, 8), (24, 32)), ((1, 4, 8, 8), (8, 8))])
def test_upsample_output_equals_bilinear(shape: tuple[int, ...], size: tuple[int, int]) -> None:
    """The output resize: PyTorch's bilinear values and gradients; multi-channel CPU maps come back
    channels_last (the fast CPU layout), single-channel ones and same-size inputs unchanged."""
    x = torch.randn(*shape, requires_grad=True)
    got = upsample_output(x, size)
    expected = upsample_to(x, size)
    torch.testing.assert_close(got, expected, rtol=1e-6, atol=1e-6)
    if tuple(size) == tuple(shape[-2:]):
        assert got is x
    elif shape[1] > 1:
        assert got.is_contiguous(memory_format=torch.channels_last) and not got.is_contiguous()
    g = torch.randn_like(expected)
    (grad,) = torch.autograd.grad(got, x, g)
    (grad_ref,) = torch.autograd.grad(expected, x, g)
    torch.testing.assert_close(grad, grad_ref, rtol=1e-5, atol=1e-5)


# ----------------------------------------------------------------------------------------------- blocks


def _features(channels: Sequence[int], size: int = 32, dtype: torch.dtype = torch.float64) -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    return [torch.randn(B, c, size >> s, size >> s, generator=g).to(dtype) for s, c in enumerate(channels)]


@pytest.mark.parametrize("weighted", [False, True])
def test_multiscale_conv1x1_every_plan_equals_concat_conv(weighted: bool) -> None:
    channels = [3, 5, 7, 11]
    feats = _features(channels)
    g = torch.Generator().manual_seed(1)
    weight = torch.randn(13, sum(channels), 1, 1, generator=g, dtype=torch.float64)
    bias = torch.randn(13, generator=g, dtype=torch.float64)
    sw = torch.rand(B, 4, 32, 32, generator=g, dtype=torch.float64) if weighted else None
    ups = [upsample_to(f, (32, 32)) for f in feats]
    if sw is not None:
        ups = [u * sw[:, s : s + 1] for s, u in enumerate(ups)]
    expected = F.conv2d(torch.cat(ups, dim=1), weight, bias)
    for plan in itertools.product([False, True], repeat=4):
        got = multiscale_conv1x1(feats, weight, bias, sw, low_res=plan)
        torch.testing.assert_close(got, expected, rtol=1e-12, atol=1e-12, msg=str(plan))
    torch.testing.assert_close(multiscale_conv1x1(feats, weight, None, sw), F.conv2d(torch.cat(ups, 1), weight))


@pytest.mark.parametrize("weighted", [False, True])
def test_row_bands_equal_the_whole_map(weighted: bool) -> None:
    """The banded inference form of HRHead's layers = conv(relu(multiscale_conv1x1(...))) in fp64, for every plan
    with scale 0 at full resolution, bands that do and do not divide the height, batch 2."""
    channels = [3, 5, 7, 11]
    feats = _features(channels, size=36)
    g = torch.Generator().manual_seed(2)
    weight = torch.randn(13, sum(channels), 1, 1, generator=g, dtype=torch.float64)
    bias = torch.randn(13, generator=g, dtype=torch.float64)
    out_w = torch.randn(4, 13, 1, 1, generator=g, dtype=torch.float64)
    out_b = torch.randn(4, generator=g, dtype=torch.float64)
    sw = torch.rand(B, 4, 36, 36, generator=g, dtype=torch.float64) if weighted else None
    expected = F.conv2d(F.relu(multiscale_conv1x1(feats, weight, bias, sw, low_res=[False] * 4)), out_w, out_b)
    for plan in itertools.product([False, True], repeat=3):
        for rows in (1, 4, 5, 36, 50):
            got = fused_head_in_row_bands(feats, weight, bias, out_w, out_b, sw, rows=rows, low_res=[False, *plan])
            torch.testing.assert_close(got, expected, rtol=1e-12, atol=1e-12, msg=f"{plan} rows={rows}")
    with pytest.raises(ValueError, match="scale 0"):
        fused_head_in_row_bands(feats, weight, bias, out_w, out_b, sw, low_res=[True] * 4)


@pytest.mark.parametrize("name", ["medusa", "mt_baseline", "mtinet"])
def test_models_with_row_bands_equal_reference(name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """With bands of 4 rows (the 64x64 test images are one band by default), inference through the banded
    HRHead path gives the literal outputs; with autograd on, the unbanded path runs."""
    calls: list[int] = []
    original = fused.fused_head_in_row_bands

    def spy(*args: Any, **kwargs: Any) -> torch.Tensor:
        calls.append(1)
        return original(*args, **kwargs)

    monkeypatch.setattr(fused, "ROW_BAND_BYTES", 1)
    monkeypatch.setattr(fused, "fused_head_in_row_bands", spy)
    torch.manual_seed(0)
    model = randomize_batchnorm(create_model(name, tasks=["semseg", "depth"], aux_tasks=NYUD_AUX, dataset="nyud"))
    model.eval()
    ref = RefMedusa(model).eval() if name == "medusa" else set_fused(copy.deepcopy(model), False)
    x = image()
    with torch.no_grad():
        assert_outputs_close(model(x), ref(x))
    assert len(calls) == 2  # one per main task's head
    calls.clear()
    model(x)  # eval mode with autograd: the unbanded path
    assert calls == []


def test_low_resolution_plan() -> None:
    sizes = [(120, 160), (60, 80), (30, 40), (15, 20)]
    assert low_resolution_scales([18, 36, 72, 144], 270, sizes) == [False, False, True, True]
    assert low_resolution_scales([18, 36, 72, 144], 270, sizes, upsample_cost=0) == [False, True, True, True]
    assert low_resolution_scales([18, 36, 72, 144], 270, sizes, upsample_cost=1e9) == [False] * 4
    with pytest.raises(ValueError, match="input channels"):
        multiscale_conv1x1(_features([3, 5]), torch.zeros(4, 9, 1, 1))


@pytest.mark.parametrize("shape,size", [((2, 3, 4, 5), (32, 40)), ((1, 7, 15, 20), (120, 160)),
                                        ((2, 2, 6, 6), (9, 13)), ((1, 1, 8, 8), (8, 8))])
def test_separable_upsample_equals_bilinear(shape: tuple[int, ...], size: tuple[int, int]) -> None:
    """Two products with the 1-D interpolation matrices = PyTorch's bilinear (align_corners=False), also for
    non-integer factors, with the same gradient."""
    x = torch.randn(*shape, dtype=torch.float64, requires_grad=True)
    got = upsample_separable(x, size)
    expected = F.interpolate(x, size=size, mode="bilinear", align_corners=False)
    torch.testing.assert_close(got, expected, rtol=1e-12, atol=1e-12)
    g = torch.randn_like(expected)
    (grad,) = torch.autograd.grad(got, x, g)
    (grad_ref,) = torch.autograd.grad(expected, x, g)
    torch.testing.assert_close(grad, grad_ref, rtol=1e-12, atol=1e-12)
    with torch.inference_mode():  # matrices cached under inference mode stay usable with autograd
        upsample_separable(torch.randn(1, 1, 3, 3), (11, 11))
    y = torch.randn(1, 1, 3, 3, requires_grad=True)
    upsample_separable(y, (11, 11)).sum().backward()
    assert y.grad is not None


def test_msa_logits_tap_form_equals_conv_on_upsampled() -> None:
    torch.manual_seed(0)
    channels = [3, 5, 7, 11]
    head = MSAHead(channels, 4).double()
    feats = _features(channels)
    up = [upsample_to(f, feats[0].shape[-2:]) for f in feats]
    expected = torch.cat([conv(u) for conv, u in zip(head.attention, up)], dim=1)
    logits = medusa_fused.msa_attention_logits(head, feats)
    torch.testing.assert_close(logits, expected, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(logits.softmax(1), head.scale_weights(up))


def test_batchnorm_fold_and_hrhead_fused_vs_literal() -> None:
    torch.manual_seed(0)
    channels = [3, 5, 7, 11]
    head = randomize_batchnorm(HRHead(channels, 4).double()).eval()
    conv, bn = head.last_layer[0], head.last_layer[1]
    x = torch.randn(B, 26, 8, 8, dtype=torch.float64)
    w, b = fold_batchnorm_into_conv(conv.weight, conv.bias, bn)
    torch.testing.assert_close(F.conv2d(x, w, b), bn(conv(x)), rtol=1e-12, atol=1e-12)
    feats = _features(channels)
    ref = copy.deepcopy(head)
    ref.fused = False
    for mode in (False, True):
        head.train(mode), ref.train(mode)
        torch.testing.assert_close(head(feats), ref(feats), rtol=1e-10, atol=1e-10)
    assert HRHead.fused is True  # an instance switch leaves the class default alone


@pytest.mark.parametrize("name", ["mt_baseline", "mtinet", "single_task"])
def test_hrhead_models_fused_equals_reference(name: str) -> None:
    """The HRHead fusion is shared: every model using it gets it, with unchanged outputs."""
    torch.manual_seed(0)
    model = randomize_batchnorm(create_model(name, tasks=["semseg", "depth"], aux_tasks=NYUD_AUX, dataset="nyud"))
    ref = set_fused(copy.deepcopy(model), False)
    x = image()
    with torch.no_grad():
        assert_outputs_close(model.eval()(x), ref.eval()(x))
    out, expected = model.train()(x), ref.train()(x)
    assert_outputs_close(out, expected)
    total_loss(out).backward()
    total_loss(expected).backward()
    assert_grads_close(model, ref)


# ----------------------------------------------------------------------------------------------- switches


@pytest.mark.parametrize("name", ["medusa", "mt_baseline"])
def test_channels_last_equal_outputs(name: str) -> None:
    torch.manual_seed(0)
    model = randomize_batchnorm(create_model(name, tasks=["semseg", "depth"], dataset="nyud")).eval()
    x = image()
    with torch.no_grad():
        expected = model(x)
        fast = optimize_for_inference(copy.deepcopy(model), channels_last=True)
        assert fast.backbone.body.conv1.weight.is_contiguous(memory_format=torch.channels_last)
        out = fast(prepare_input(x, channels_last=True))
    # other oneDNN kernels (NHWC) round differently through the whole network, backbone included: 1e-4
    assert_outputs_close(out, expected, rtol=1e-4)
    # training works in channels_last too, with the same outputs
    train = to_channels_last(copy.deepcopy(model)).train()
    assert_outputs_close(train(prepare_input(x, True)), model.train()(x), rtol=1e-4)


def _labels(tasks: Sequence[str], dataset: str, seed: int = 0) -> dict[str, torch.Tensor]:
    """Random labels of the right kind for each task (as the data module collates them)."""
    from medusa_mtl.tasks import get_task

    g = torch.Generator().manual_seed(seed)
    out: dict[str, torch.Tensor] = {}
    for t in tasks:
        task = get_task(t)
        c = task.channels(dataset)
        out[t] = {"segmentation": lambda c=c: torch.randint(0, c, (B, SIZE, SIZE), generator=g),
                  "binary": lambda: (torch.rand(B, 1, SIZE, SIZE, generator=g) > 0.5).float(),
                  "edge": lambda: (torch.rand(B, 1, SIZE, SIZE, generator=g) > 0.9).float(),
                  "depth": lambda: torch.rand(B, 1, SIZE, SIZE, generator=g) + 0.5,
                  "normals": lambda: F.normalize(torch.randn(B, 3, SIZE, SIZE, generator=g), dim=1),
                  }[task.label_kind]()
    return out


@pytest.mark.parametrize("arch", ["medusa", "mtinet"])
def test_training_module_channels_last_same_step(arch: str) -> None:
    """``MultiTaskModule(channels_last=True)``: NHWC parameters, the same training loss and gradients as the
    default layout up to float rounding, interchangeable state dicts, and the option kept in the hyper-parameters
    (a checkpoint rebuilds the module in the layout it trained in)."""
    from medusa_mtl.engine.training import MultiTaskModule

    kw = dict(arch=arch, tasks="semseg,depth", aux_tasks="semseg,depth,normals,edge", dataset="nyud")
    torch.manual_seed(0)
    ref = MultiTaskModule(**kw)
    fast = MultiTaskModule(**kw, channels_last=True)
    fast.load_state_dict(ref.state_dict())  # strict: same keys
    assert fast.net.backbone.body.conv1.weight.is_contiguous(memory_format=torch.channels_last)
    assert not ref.net.backbone.body.conv1.weight.is_contiguous(memory_format=torch.channels_last)
    assert MultiTaskModule(**fast.hparams).channels_last and not MultiTaskModule(**ref.hparams).channels_last
    exact = copy.deepcopy(ref).double()
    batch = {"image": image(), **_labels(["semseg", "depth", "normals", "edge"], "nyud")}
    losses = []
    for module in (ref, fast, exact):
        module.train()
        b = {k: v.double() if module is exact and v.is_floating_point() else v for k, v in batch.items()}
        loss, _ = module.compute_loss(module(b["image"]), b)
        loss.backward()
        losses.append(float(loss))
    assert losses[1] == pytest.approx(losses[0], rel=1e-4)
    # fp32 rounding through this deep random network moves some gradients by several % in either layout (the
    # default one included, against fp64): so each layout is held to fp64, and NHWC must be as accurate as NCHW
    grads = [{n: p.grad.double() for n, p in m.named_parameters() if p.grad is not None} for m in (ref, fast, exact)]
    overall = max(float(g.abs().max()) for g in grads[2].values())
    errors = []
    for n, g64 in grads[2].items():
        scale = max(float(g64.abs().max()), 1e-3 * overall)  # (biases before a BatchNorm: zero in exact arithmetic)
        errors.append([float((g[n] - g64).abs().max()) / scale for g in grads[:2]])
    err_ref, err_fast = torch.tensor(errors).T
    assert float(err_fast.max()) <= max(2 * float(err_ref.max()), 1e-3), (float(err_fast.max()), float(err_ref.max()))
    assert float(err_fast.mean()) <= max(2 * float(err_ref.mean()), 1e-4), (float(err_fast.mean()),
                                                                             float(err_ref.mean()))
    for a, b in zip(fast.state_dict().values(), ref.state_dict().values(), strict=True):  # BN statistics too
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)
    with torch.no_grad():
        assert_outputs_close(dict(fast.eval().eval_outputs(batch["image"])),
                             dict(ref.eval().eval_outputs(batch["image"])), rtol=1e-4)


def test_training_module_channels_last_is_checked() -> None:
    from medusa_mtl.engine.training import MultiTaskModule
    from medusa_mtl.errors import ConfigError

    with pytest.raises(ConfigError, match="channels_last must be true or false"):
        MultiTaskModule(arch="mt_baseline", tasks="semseg", dataset="nyud", channels_last="yes")  # type: ignore[arg-type]


def test_bf16_autocast_is_close() -> None:
    """bf16 autocast (8-bit mantissa) through a random deep network is only roughly equal to fp32 (relative L2
    errors up to ~0.2 on the small depth logits, the literal computation included); what must hold is that
    the outputs point the same way and that the fused paths add no error of their own."""
    model = medusa().eval()
    x = image()
    with torch.no_grad():
        expected = model(x)
        with autocast("cpu", "bf16"):
            out = model(x)
            literal = set_fused(copy.deepcopy(model), False)(x)
    for t in expected:
        assert out[t].dtype == torch.bfloat16
        cos = F.cosine_similarity(out[t].float().flatten(), expected[t].flatten(), dim=0)
        assert cos > 0.95, (t, float(cos))
        err = float((out[t].float() - expected[t]).norm() / expected[t].norm())
        err_literal = float((literal[t].float() - expected[t]).norm() / expected[t].norm())
        assert err <= 1.25 * err_literal + 0.02, (t, err, err_literal)
    with pytest.raises(ValueError, match="unknown dtype"):
        autocast("cpu", "int8")


def test_compile_graph_capture_equal_outputs() -> None:
    """``torch.compile`` captures Medusa's fused forward without breaking it (``aot_eager``: tracing and
    autograd graphs, no code generation, so it runs in seconds)."""
    model = medusa(aux_tasks=None).eval()
    x = image()
    with torch.no_grad():
        expected = model(x)
        compiled = optimize_for_inference(copy.deepcopy(model), compile=True, backend="aot_eager")
        assert_outputs_close(compiled(x), expected)


@pytest.mark.skipif(os.environ.get("MEDUSA_TEST_COMPILE") != "1",
                    reason="inductor compilation of a whole model takes minutes on a small CPU; "
                           "set MEDUSA_TEST_COMPILE=1 to run it")
def test_compile_inductor_equal_outputs() -> None:
    model = medusa(aux_tasks=None).eval()
    x = image()
    with torch.no_grad():
        expected = model(x)
        compiled = optimize_for_inference(copy.deepcopy(model), compile=True)
        assert_outputs_close(compiled(x), expected, rtol=1e-4)


# ----------------------------------------------------------------------------------------------- benchmark


def test_throughput_benchmark_smoke(tmp_path: Path) -> None:
    out = tmp_path / "tp.json"
    cmd = [sys.executable, str(ROOT / "benchmarks" / "throughput.py"), "--device", "cpu", "--size-scale", "0.1",
           "--rounds", "1", "--models", "mt_baseline,medusa", "--threads", "1", "--json", str(out)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "| medusa |" in proc.stdout and "Medusa / backbone floor eval latency, NYUD" in proc.stdout
    record = json.loads(out.read_text())
    assert record["versions"]["torch"] == torch.__version__ and record["device"]["type"] == "cpu"
    assert record["settings"]["nyud"]["eval_size"] == [64, 64]
    for setting in ("nyud", "pascal"):
        rows = record["results"][setting]
        assert list(rows) == ["backbone", "mt_baseline", "medusa"]
        for row in rows.values():
            assert row["eval_ms"] > 0 and row["train_img_s"] > 0 and row["train_batch"] == 8
            assert row["eval_peak_mib"] is None or row["eval_peak_mib"] >= 0
    ratios = {r["label"]: r for r in record["ratios"]}
    floor = ratios["Medusa / backbone floor eval latency, NYUD"]
    assert floor["ratio"] > 0 and floor["verdict"] in ("PASS", "MISS")
    assert ratios["Medusa / MTI-Net eval latency, NYUD N+E"]["verdict"] == "n/a"  # mtinet not measured
