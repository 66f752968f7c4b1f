"""PAD-Net and MTI-Net (SPEC §4): forward/backward, deep supervision, task-set checks and exact parameter
counts computed by hand from the SPEC's layer conventions."""

from __future__ import annotations

import pytest
import torch
import torch.nn as nn

from medusa_mtl.models import create_model
from medusa_mtl.models.mtinet import FeaturePropagation, MTINet
from medusa_mtl.models.padnet import MultiModalDistillation, PADNet
from medusa_mtl.reports.resources import sweep_tasks

HRNET18 = 3_860_720  # SPEC §3
CH = [18, 36, 72, 144]
NYUD_OUT = {"semseg": 40, "depth": 1, "normals": 3, "edge": 1}
SIZE = 32


# ---------------------------------------------------------------- hand formulas (SPEC §4 layer conventions)


def conv(cin: int, cout: int, k: int = 1, bias: bool = False) -> int:
    return cin * cout * k * k + (cout if bias else 0)


def bn(c: int) -> int:
    return 2 * c


def basic(cin: int, cout: int) -> int:
    proj = conv(cin, cout) + bn(cout) if cin != cout else 0
    return conv(cin, cout, 3) + bn(cout) + conv(cout, cout, 3) + bn(cout) + proj


def bottleneck(cin: int, planes: int = 64) -> int:
    out = 4 * planes
    proj = conv(cin, out) + bn(out) if cin != out else 0
    return conv(cin, planes) + bn(planes) + conv(planes, planes, 3) + bn(planes) + conv(planes, out) + bn(out) + proj


def sablock(c: int) -> int:
    return 2 * conv(c, c, 3)


def se(c: int) -> int:
    h = c // 16
    return c * h + h + h * c + c


def hrhead(out: int) -> int:
    return 73_710 + 271 * out  # SPEC §4


def fpm(n: int, c: int) -> int:
    m, q = n * c, n * c // 4
    return basic(m, q) + basic(q, q) + conv(q, m, bias=True) + basic(m, c) + n * se(c)


def padnet_params(tasks: list[str], aux: list[str]) -> int:
    total = HRNET18 + conv(270, 270, bias=True) + bn(270)
    total += sum(bottleneck(270) + bottleneck(256) + conv(256, NYUD_OUT[a], bias=True) for a in aux)
    total += len(tasks) * (len(aux) - 1) * sablock(256)
    total += sum(2 * bottleneck(256) + conv(256, NYUD_OUT[t], bias=True) for t in tasks)
    return total


def mtinet_params(tasks: list[str], aux: list[str]) -> int:
    n = len(aux)
    total = HRNET18
    for s, c in enumerate(CH):
        cin = c + (CH[s + 1] if s < 3 else 0)
        total += sum(basic(cin, c) + basic(c, c) + conv(c, NYUD_OUT[a], bias=True) for a in aux)
        total += len(tasks) * (n - 1) * sablock(c)
        if s > 0:
            total += fpm(n, c)
    total += sum(hrhead(NYUD_OUT[t]) for t in tasks)
    return total


def n_params(m: nn.Module) -> int:
    return sum(p.numel() for p in m.parameters())


def meta_model(name: str, tasks: list[str], aux: list[str] | None = None) -> nn.Module:
    with torch.device("meta"):
        return create_model(name, tasks=tasks, aux_tasks=aux, dataset="nyud")


# ---------------------------------------------------------------- parameter counts


def test_sablock_and_distillation_counts() -> None:
    assert sablock(256) == 1_179_648
    d = MultiModalDistillation(256, ["semseg", "depth"], ["semseg", "depth", "normals", "edge"])
    assert n_params(d) == 2 * 3 * 1_179_648
    d = MultiModalDistillation(36, ["a", "b", "c"], ["a", "b", "c"])
    assert n_params(d) == 3 * 2 * 2 * 9 * 36 * 36


@pytest.mark.parametrize("n,c", [(2, 144), (3, 72), (4, 36), (1, 144)])
def test_fpm_param_count_by_hand(n: int, c: int) -> None:
    tasks = [f"t{i}" for i in range(n)]
    assert n_params(FeaturePropagation(tasks, c)) == fpm(n, c)


def test_fpm_hand_example() -> None:
    # N = 2 tasks at scale 3 (C = 144): M = 288, Q = 72, spelled out once.
    basic_m_q = 288 * 72 * 9 + 144 + 72 * 72 * 9 + 144 + 288 * 72 + 144
    basic_q = 2 * (72 * 72 * 9 + 144)
    attn = 72 * 288 + 288
    basic_m_c = 288 * 144 * 9 + 288 + 144 * 144 * 9 + 288 + 288 * 144 + 288
    se2 = 2 * (144 * 9 + 9 + 9 * 144 + 144)
    expected = basic_m_q + basic_q + attn + basic_m_c + se2
    assert expected == 976_770
    assert n_params(FeaturePropagation(["semseg", "depth"], 144)) == expected


@pytest.mark.parametrize(
    "tasks,aux",
    [(["semseg", "depth"], None), (["semseg", "depth"], ["semseg", "depth", "normals", "edge"]), (["depth"], None)],
)
def test_padnet_total_params(tasks: list[str], aux: list[str] | None) -> None:
    model = meta_model("padnet", tasks, aux)
    assert n_params(model) == padnet_params(tasks, aux or tasks)
    assert n_params(model.distillation) == len(tasks) * (len(aux or tasks) - 1) * 1_179_648


@pytest.mark.parametrize(
    "tasks,aux",
    [(["semseg", "depth"], None), (["semseg", "depth"], ["semseg", "depth", "normals", "edge"]), (["edge"], None)],
)
def test_mtinet_total_params(tasks: list[str], aux: list[str] | None) -> None:
    model = meta_model("mtinet", tasks, aux)
    assert n_params(model) == mtinet_params(tasks, aux or tasks)
    n = len(aux or tasks)
    for s in (1, 2, 3):
        assert n_params(model.fpm[f"scale{s}"]) == fpm(n, CH[s])
    assert "scale0" not in model.fpm
    # initial-prediction module inputs: C_s + C_{s+1}, C_3 alone
    assert [model.initial[s][tasks[0]].refinement[0].conv1.in_channels for s in range(4)] == [54, 108, 216, 144]


@pytest.mark.parametrize("name", ["padnet", "mtinet"])
def test_params_grow_superlinearly(name: str) -> None:
    def params(t: int, model: str) -> int:
        with sweep_tasks("nyud", t, cycle=["depth"]) as names:
            return n_params(meta_model(model, names))

    p = [params(t, name) for t in range(1, 5)]
    second = [p[i + 1] - 2 * p[i] + p[i - 1] for i in range(1, 3)]
    assert all(d > 0 for d in second), (p, second)
    if name == "padnet":  # exactly 2 SABlock(256) per step: T(T-1) blocks
        assert second == [2 * 1_179_648] * 2
    # the MT baseline is linear: identical task slots give a zero second difference
    q = [params(t, "mt_baseline") for t in range(1, 4)]
    assert q[2] - 2 * q[1] + q[0] == 0


# ---------------------------------------------------------------- task-set checks


@pytest.mark.parametrize("cls", [PADNet, MTINet])
def test_main_not_in_aux_raises(cls: type) -> None:
    with pytest.raises(ValueError, match="subset of aux_tasks"):
        cls(["semseg", "depth"], ["semseg", "edge"], "nyud")


@pytest.mark.parametrize("name", ["padnet", "mtinet"])
def test_create_model_main_not_in_aux_raises(name: str) -> None:
    with pytest.raises(ValueError, match="depth"):
        create_model(name, tasks=["semseg", "depth"], aux_tasks=["semseg", "edge"], dataset="nyud")


# ---------------------------------------------------------------- forward / backward


def _count_calls(modules: list[nn.Module]) -> list[int]:
    calls = [0]

    def hook(*_: object) -> None:
        calls[0] += 1

    for m in modules:
        m.register_forward_hook(hook)
    return calls


def test_padnet_forward_backward() -> None:
    torch.manual_seed(0)
    model = create_model("padnet", tasks=["semseg", "depth"], aux_tasks=["semseg", "depth", "edge"], dataset="nyud")
    calls = _count_calls(list(model.initial.values()))
    x = torch.randn(2, 3, SIZE, SIZE)
    model.train()
    out = model(x)
    assert set(out) == {"semseg", "depth", "deep_supervision"}
    assert out["semseg"].shape == (2, 40, SIZE, SIZE) and out["depth"].shape == (2, 1, SIZE, SIZE)
    ds = out["deep_supervision"]
    assert list(ds) == ["initial"]
    assert {t: tuple(v.shape) for t, v in ds["initial"].items()} == {
        "semseg": (2, 40, 8, 8), "depth": (2, 1, 8, 8), "edge": (2, 1, 8, 8)
    }
    assert calls[0] == 3
    loss = out["semseg"].mean() + out["depth"].mean() + sum(v.mean() for v in ds["initial"].values())
    loss.backward()
    missing = [n for n, p in model.named_parameters() if p.grad is None]
    assert missing == []
    model.eval()
    calls[0] = 0
    with torch.no_grad():
        ev = model(x)
    assert set(ev) == {"semseg", "depth"} and ev["semseg"].shape == (2, 40, SIZE, SIZE)
    assert calls[0] == 0  # initial predictions are not computed in eval


def test_mtinet_forward_backward() -> None:
    torch.manual_seed(0)
    model = create_model("mtinet", tasks=["semseg", "depth"], aux_tasks=["semseg", "depth", "edge"], dataset="nyud")
    preds = [model.initial[s][a].prediction for s in range(4) for a in model.aux_tasks]
    calls = _count_calls(preds)
    x = torch.randn(2, 3, SIZE, SIZE)
    model.train()
    out = model(x)
    assert set(out) == {"semseg", "depth", "deep_supervision"}
    assert out["semseg"].shape == (2, 40, SIZE, SIZE) and out["depth"].shape == (2, 1, SIZE, SIZE)
    ds = out["deep_supervision"]
    assert list(ds) == ["scale0", "scale1", "scale2", "scale3"]
    for s in range(4):
        side = SIZE // 2 ** (s + 2)
        assert {t: tuple(v.shape) for t, v in ds[f"scale{s}"].items()} == {
            "semseg": (2, 40, side, side), "depth": (2, 1, side, side), "edge": (2, 1, side, side)
        }
    assert calls[0] == 12
    loss = out["semseg"].mean() + out["depth"].mean()
    loss = loss + sum(v.mean() for d in ds.values() for v in d.values())
    loss.backward()
    assert [n for n, p in model.named_parameters() if p.grad is None] == []
    model.eval()
    calls[0] = 0
    with torch.no_grad():
        ev = model(x)
    assert set(ev) == {"semseg", "depth"} and ev["depth"].shape == (2, 1, SIZE, SIZE)
    assert calls[0] == 0


def test_fpm_softmax_groups_adjacent_channels() -> None:
    torch.manual_seed(0)
    fpm_ = FeaturePropagation(["a", "b", "c"], 8).eval()
    captured: dict[str, torch.Tensor] = {}

    def grab(_m: nn.Module, inp: tuple[torch.Tensor, ...], _out: torch.Tensor) -> None:
        captured["x"] = inp[0]

    fpm_.expand.register_forward_hook(grab)
    feats = {t: torch.randn(1, 8, 4, 4) for t in "abc"}
    with torch.no_grad():
        out = fpm_(feats)
        concat = torch.cat([feats[t] for t in "abc"], 1)
        attention = captured["x"] / concat
    assert set(out) == {"a", "b", "c"} and out["a"].shape == (1, 8, 4, 4)
    # groups of 3 adjacent channels sum to one
    sums = attention.reshape(1, 8, 3, 4, 4).sum(dim=2)
    assert torch.allclose(sums, torch.ones_like(sums), atol=1e-4)
