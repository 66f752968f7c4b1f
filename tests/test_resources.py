"""Resource accounting (SPEC §8): hand-checked params/FLOPs, inference-parameter tracking, the report files and
the paper-setting claim Medusa <= 75% of MTI-Net's parameters."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import pytest
import torch
import torch.nn as nn

from cli_helpers import run_cli
from medusa_mtl import tasks as task_registry
from medusa_mtl.errors import ConfigError
from medusa_mtl.models import list_models
from medusa_mtl.reports.resources import (
    add_resources_arguments,
    count_flops,
    count_inference_params,
    count_params,
    measure_model,
    resource_table,
    run_resources,
    sweep_tasks,
    write_report,
)


def test_conv_params_and_flops_by_hand() -> None:
    conv = nn.Conv2d(3, 8, 3, padding=1)
    assert count_params(conv) == 3 * 8 * 9 + 8
    assert count_flops(conv, (3, 16, 20)) == 2 * 3 * 8 * 9 * 16 * 20
    # same number on the meta device (no computation)
    assert count_flops(conv.to("meta"), (3, 16, 20)) == 2 * 3 * 8 * 9 * 16 * 20


class _TrainOnlyBranch(nn.Module):
    """A conv + BN used always and a Linear head used only in training (like deep supervision)."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 1, bias=False)
        self.bn = nn.BatchNorm2d(4)
        self.aux = nn.Linear(4, 5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.bn(self.conv(x))
        if self.training:
            return y.sum() + self.aux(y.mean(dim=(2, 3))).sum()
        return y


def test_train_only_layers_excluded_from_inference() -> None:
    m = _TrainOnlyBranch()
    h, w = 6, 5
    assert count_params(m) == 12 + 8 + 4 * 5 + 5
    assert count_inference_params(m, (h, w)) == 12 + 8
    assert count_flops(m, (h, w)) == 2 * 3 * 4 * h * w
    assert count_flops(m, (h, w), train=True) == 2 * 3 * 4 * h * w + 2 * 4 * 5
    # counting in train mode leaves the BN statistics and the mode untouched
    m.eval()
    before = m.bn.running_mean.clone()
    count_flops(m, (h, w), train=True)
    assert torch.equal(m.bn.running_mean, before) and not m.training


def test_inference_parameters_method_is_used() -> None:
    m = _TrainOnlyBranch()
    m.inference_parameters = lambda: [m.conv.weight]  # type: ignore[attr-defined]
    assert count_inference_params(m, (4, 4)) == 12


def test_sweep_tasks_are_isolated() -> None:
    before = list(task_registry.TASKS)
    with sweep_tasks("nyud", 6) as names:
        assert names == ["semseg", "depth", "normals", "edge", "semseg_sweep4", "depth_sweep5"]
        assert task_registry.get_task("semseg_sweep4").channels("nyud") == 40
    assert list(task_registry.TASKS) == before
    with sweep_tasks("pascal", 6) as names:
        assert names[-1] == "semseg_sweep5" and names[1] == "human_parts"
    assert list(task_registry.TASKS) == before


def test_measure_model_reference_counts() -> None:
    # SPEC §4: MT baseline NYUD (semseg 40 + depth 1) = 4,019,251 parameters.
    r = measure_model("mt_baseline", ["semseg", "depth"], None, "nyud", (64, 64))
    assert r["params"] == r["params_inference"] == 4_019_251
    # with N+E aux heads: the two auxiliary HRHeads (73,710 + 271 each) are dropped at inference
    r = measure_model("mt_baseline", ["semseg", "depth"], ["semseg", "depth", "normals", "edge"], "nyud", (64, 64))
    assert r["params"] == 4_019_251 + 2 * 73_710 + 271 * (3 + 1)
    assert r["params_inference"] == 4_019_251
    assert r["flops"] > r["flops_inference"]
    # MTI-Net: only the initial-prediction 1x1 convs (C_s -> out, bias) are dropped at inference
    r = measure_model("mtinet", ["semseg", "depth"], ["semseg", "depth", "normals", "edge"], "nyud", (64, 64))
    pred = sum(c * o + o for c in (18, 36, 72, 144) for o in (40, 1, 3, 1))
    assert r["params"] - r["params_inference"] == pred


def test_meta_matches_cpu_and_plain_flop_counter() -> None:
    from torch.utils.flop_counter import FlopCounterMode

    from medusa_mtl.models import create_model

    torch.manual_seed(0)
    cpu = create_model("mtinet", tasks=["depth", "edge"], dataset="nyud").eval()
    with torch.device("meta"):
        meta = create_model("mtinet", tasks=["depth", "edge"], dataset="nyud")
    for train in (False, True):
        assert count_flops(cpu, (32, 32), train=train) == count_flops(meta, (32, 32), train=train)
    with torch.no_grad(), FlopCounterMode(display=False) as plain:
        cpu(torch.zeros(1, 3, 32, 32))
    assert count_flops(cpu, (32, 32)) == plain.get_total_flops()


def test_report_files(tmp_path: Path) -> None:
    paths = write_report("nyud", max_tasks=2, out_dir=tmp_path, models=["mt_baseline", "padnet"], size=(32, 32))
    assert {p.name for p in paths.values()} == {"resources_nyud.md", "resources_nyud.json", "resources_nyud.png"}
    md = paths["md"].read_text()
    assert "| padnet | 2 |" in md and "2 x MACs" in md and "Medusa / MTI-Net" in md
    data = json.loads(paths["json"].read_text())
    assert data["torch"] == torch.__version__ and "timm" in data and "timestamp" in data
    rows = data["rows"]
    assert len(rows) == 2 * (2 + 2)  # 2 models x (T=1,2 + 2 paper settings)
    assert all("error" not in r for r in rows)
    assert paths["png"].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_run_resources_cli(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    parser = argparse.ArgumentParser()
    add_resources_arguments(parser)
    args = parser.parse_args(
        ["--dataset", "pascal", "--max-tasks", "1", "--out", str(tmp_path), "--models", "mt_baseline",
         "--size", "32x32"]
    )
    assert run_resources(args) == 0
    out = capsys.readouterr().out
    assert "| mt_baseline | 1 |" in out and "| mt_baseline | 5 tasks |" in out
    assert (tmp_path / "resources_pascal.json").is_file()


def test_resource_table_rows_and_errors(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                        capsys: pytest.CaptureFixture[str]) -> None:
    rows = resource_table("nyud", max_tasks=2, models=["mt_baseline"], size=(32, 32))
    assert [(r["model"], r["setting"], r["T"]) for r in rows] == [
        ("mt_baseline", "sweep", 1), ("mt_baseline", "sweep", 2),
        ("mt_baseline", "semseg+depth", 2), ("mt_baseline", "semseg+depth, N+E aux", 2),
    ]
    # what no row could measure is refused before anything is written (it was a report of error rows, exit 0)
    for kwargs, message in (({"models": ["mt_baseline", "no_such_model"]}, "--models no_such_model: not registered"),
                            ({"models": ["mt_baseline"], "size": (50, 50)}, "--size 50x50: height and width"),
                            ({"models": ["mt_baseline"], "max_tasks": 0}, "--max-tasks 0: expected at least 1")):
        with pytest.raises(ConfigError, match=message):
            write_report("nyud", **{"max_tasks": 1, "size": (32, 32), "out_dir": tmp_path / "never", **kwargs})
    assert not (tmp_path / "never").exists()
    # a model that fails to build or run keeps the report going, with its error in the row; the command fails
    import medusa_mtl.reports.resources as resources

    real = resources.measure_model

    def measure(name: str, *args: Any, **kwargs: Any) -> dict[str, Any]:
        if name == "padnet":
            raise RuntimeError("simulated failure")
        return real(name, *args, **kwargs)

    monkeypatch.setattr(resources, "measure_model", measure)
    rc, out, err = run_cli(["resources", "--max-tasks", "1", "--size", "32x32", "--out", str(tmp_path),
                            "--models", "mt_baseline,padnet"])
    assert rc == 1 and "| mt_baseline | 1 |" in out and "error: RuntimeError: simulated failure" in out
    assert "3 of the report's rows failed" in err  # T=1 and the two paper settings
    rc, _, err = run_cli(["resources", "--models", "foo", "--out", str(tmp_path / "never")])
    assert rc == 2 and "--models foo: not registered" in err and not (tmp_path / "never").exists()


def test_medusa_fewer_params_than_mtinet() -> None:
    """SPEC §2: Medusa's MTL is comparable to MTI-Net with about 25% fewer parameters (NYUD, N+E aux)."""
    if "medusa" not in list_models():
        pytest.skip("medusa is not registered yet")
    aux = ["semseg", "depth", "normals", "edge"]
    medusa = measure_model("medusa", ["semseg", "depth"], aux, "nyud", (480, 640))
    mti = measure_model("mtinet", ["semseg", "depth"], aux, "nyud", (480, 640))
    assert medusa["params_inference"] <= 0.75 * mti["params_inference"]
    assert medusa["flops_inference"] < mti["flops_inference"]
