"""Universal feature learning gives one model that keeps its source tasks and gains new ones, step after step:
after two UFL steps the checkpoint predicts every task, and the earlier tasks' outputs are bit-identical to
those of the checkpoints they came from (their heads and the backbone are frozen)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from medusa_mtl import Predictor
from medusa_mtl.engine.evaluation import load_module
from medusa_mtl.engine.training import MultiTaskModule
from medusa_mtl.engine.ufl import ufl_module_from_checkpoint
from medusa_mtl.errors import ConfigError


def _save(module: MultiTaskModule, path: Path) -> Path:
    torch.save({"state_dict": module.state_dict(), "hyper_parameters": dict(module.hparams)}, path)
    return path


def _train_a_little(module: MultiTaskModule, x: torch.Tensor) -> None:
    """Two optimiser steps on the trainable parameters (the new heads only)."""
    params = [p for p in module.parameters() if p.requires_grad]
    assert params
    opt = torch.optim.Adam(params, lr=1e-2)
    module.train()
    for _ in range(2):
        out = module.net(x)
        loss = sum(v.float().mean() for k, v in out.items() if k in module.main_tasks)
        opt.zero_grad()
        loss.backward()
        opt.step()
    module.eval()


@pytest.fixture(scope="module")
def chain(tmp_path_factory: pytest.TempPathFactory) -> dict[str, object]:
    tmp = tmp_path_factory.mktemp("chain")
    torch.manual_seed(0)
    x = torch.randn(2, 3, 64, 64)
    source = MultiTaskModule(arch="mt_baseline", tasks="semseg,depth", dataset="nyud", backbone="test_efficientnet")
    _train_a_little(source, x)  # any weights; BatchNorm statistics move too
    a = _save(source, tmp / "source.ckpt")
    step1 = ufl_module_from_checkpoint(a, "human_parts", "pascal", lr=1e-2)
    _train_a_little(step1, x)
    b = _save(step1, tmp / "step1.ckpt")
    step2 = ufl_module_from_checkpoint(b, "sal", "pascal", lr=1e-2)
    _train_a_little(step2, x)
    c = _save(step2, tmp / "step2.ckpt")
    return {"x": x, "a": a, "b": b, "c": c}


def test_two_ufl_steps_keep_every_earlier_output_bit_identical(chain: dict[str, object]) -> None:
    x = chain["x"]
    with torch.no_grad():
        source = load_module(chain["a"]).net(x)
        step1 = load_module(chain["b"]).net.forward_all(x)
        final = load_module(chain["c"]).net.forward_all(x)
    assert list(final) == ["semseg", "depth", "human_parts", "sal"]
    assert list(step1) == ["semseg", "depth", "human_parts"]
    for t in ("semseg", "depth"):
        assert torch.equal(final[t], source[t]) and torch.equal(step1[t], source[t])
    assert torch.equal(final["human_parts"], step1["human_parts"])
    module = load_module(chain["c"])
    assert module.main_tasks == ["sal"] and module.eval_dataset == "pascal"
    assert module.hparams["ufl"] == [{"new_tasks": ["human_parts"], "dataset": "pascal"},
                                     {"new_tasks": ["sal"], "dataset": "pascal"}]
    trainable = [n for n, p in ufl_module_from_checkpoint(chain["c"], "normals", "pascal").named_parameters()
                 if p.requires_grad]
    assert trainable and all(n.startswith("net.decoder.") for n in trainable)  # only the newest heads train


def test_predictor_shows_source_and_new_tasks(chain: dict[str, object], tmp_path: Path) -> None:
    predictor = Predictor.from_checkpoint(chain["c"], size=(64, 64))
    assert predictor.tasks == ["semseg", "depth", "human_parts", "sal"]
    assert predictor.task_datasets == {"semseg": "nyud", "depth": "nyud", "human_parts": "pascal", "sal": "pascal"}
    out = predictor.predict(np.zeros((40, 50, 3), np.uint8))
    assert out["semseg"].shape == (40, 50) and out["sal"].dtype == np.float32
    assert Predictor.from_checkpoint(chain["c"], size=(64, 64), all_tasks=False).tasks == ["sal"]


def test_clashing_and_shared_task_names(chain: dict[str, object]) -> None:
    with pytest.raises(ConfigError, match="already pascal tasks"):
        ufl_module_from_checkpoint(chain["c"], "human_parts", "pascal")
    both = ufl_module_from_checkpoint(chain["c"], "semseg", "pascal")  # NYUD's semseg is another task
    keys = list(both.net.task_datasets())
    assert keys == ["nyud:semseg", "depth", "human_parts", "sal", "pascal:semseg"]
    with torch.no_grad():
        out = both.net.forward_all(chain["x"])
    assert out["nyud:semseg"].shape[1] == 40 and out["pascal:semseg"].shape[1] == 21


@pytest.mark.parametrize("fmt", ["torchscript", "onnx"])
def test_export_of_a_ufl_chain_has_every_task(chain: dict[str, object], tmp_path: Path, fmt: str) -> None:
    # `medusa export` of a UFL checkpoint failed by default ("--tasks semseg,depth,human_parts,sal: not main tasks
    # of this model") although no --tasks was given, and the source's tasks could not be exported at all
    from cli_helpers import run_cli
    from medusa_mtl.engine.export import ExportedModel

    if fmt == "onnx":
        pytest.importorskip("onnxruntime")
    out = tmp_path / ("model.pt" if fmt == "torchscript" else "model.onnx")
    rc, stdout, err = run_cli(["export", "--ckpt", str(chain["c"]), "--format", fmt, "--out", str(out),
                               "--size", "64x64"])
    assert rc == 0, err[-2000:]
    assert "outputs: semseg, depth, human_parts, sal" in stdout
    exported = ExportedModel(out, fmt)
    assert exported.tasks == ["semseg", "depth", "human_parts", "sal"] == Predictor.from_checkpoint(chain["c"]).tasks
    got = exported.run(chain["x"][:1].clamp(0, 1))
    assert [g.shape[-2:] for g in got] == [(64, 64)] * 4
    rc, stdout, err = run_cli(["export", "--ckpt", str(chain["c"]), "--format", fmt, "--out", str(out),
                               "--size", "64x64", "--tasks", "depth,sal"])
    assert rc == 0 and "outputs: depth, sal" in stdout, err[-2000:]


def test_export_of_a_chain_with_a_task_name_of_two_datasets(chain: dict[str, object], tmp_path: Path) -> None:
    # outputs named as predict names them ("nyud:semseg", "pascal:semseg"); export stopped at "unknown task
    # 'nyud:semseg'"
    from cli_helpers import run_cli
    from medusa_mtl.engine.export import ExportedModel

    both = ufl_module_from_checkpoint(chain["c"], "semseg", "pascal")
    ckpt = _save(both, tmp_path / "both.ckpt")
    out = tmp_path / "both.pt"
    rc, stdout, err = run_cli(["export", "--ckpt", str(ckpt), "--format", "torchscript", "--out", str(out),
                               "--size", "64x64"])
    assert rc == 0, err[-2000:]
    assert ExportedModel(out, "torchscript").tasks == ["nyud:semseg", "depth", "human_parts", "sal", "pascal:semseg"]
    rc, stdout, err = run_cli(["export", "--ckpt", str(ckpt), "--format", "torchscript", "--out", str(out),
                               "--size", "64x64", "--tasks", "pascal:semseg"])
    assert rc == 0 and "outputs: pascal:semseg" in stdout, err[-2000:]


def test_resume_refuses_another_source_checkpoint_of_the_same_shapes(chain: dict[str, object],
                                                                     tmp_path: Path) -> None:
    # the shapes matched, so --resume went on: Lightning restored the first source's frozen weights from last.ckpt
    # and ufl_metrics.json named the other --source-ckpt as the source of the run
    from medusa_mtl.engine.ufl import _check_resumable

    first = ufl_module_from_checkpoint(chain["a"], "sal", "pascal")
    last = _save(first, tmp_path / "last.ckpt")
    other = MultiTaskModule(arch="mt_baseline", tasks="semseg,depth", dataset="nyud", backbone="test_efficientnet")
    torch.manual_seed(1)
    _train_a_little(other, chain["x"])
    other_ckpt = _save(other, tmp_path / "other.ckpt")
    _check_resumable(last, ufl_module_from_checkpoint(chain["a"], "sal", "pascal"), chain["a"])  # the same run
    with pytest.raises(ConfigError, match="--resume.*other.ckpt.*source"):
        _check_resumable(last, ufl_module_from_checkpoint(other_ckpt, "sal", "pascal"), other_ckpt)


@pytest.mark.parametrize(("tasks", "expected"), [
    ("floor", ("--tasks", "unknown task 'floor'", "dataset pascal", "human_parts", "--data")),
    ("depth", ("--tasks", "'depth' is not defined for dataset 'pascal'", "dataset pascal", "sal", "--data")),
])
def test_ufl_tasks_unknown_on_the_dataset_name_the_option_and_the_dataset(
        chain: dict[str, object], tmp_path: Path, tasks: str, expected: tuple[str, ...]) -> None:
    # a task of a dataset.yaml with --data forgotten said only "unknown task 'floor'; known tasks: ...", without
    # the option, the dataset it was looked up in (pascal, the default) or the option that names it
    from cli_helpers import run_cli

    rc, _, err = run_cli(["ufl", "--source-ckpt", str(chain["a"]), "--tasks", tasks, "--epochs", "1",
                          "--out", str(tmp_path / "u")])
    lines = [line for line in err.splitlines() if line.startswith("medusa ufl: error:")]
    assert rc == 2 and len(lines) == 1 and "Traceback" not in err, err[-3000:]
    for fragment in expected:
        assert fragment in lines[0], lines[0]
    assert not (tmp_path / "u").exists()
