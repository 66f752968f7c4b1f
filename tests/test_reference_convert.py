"""Reference checkpoints (the MTI-Net authors' code) -> this project: names, SABlock layout, MTI-Net's task order.

State dicts in the reference's naming are built from our own models by the inverse mapping (its code is not
used). Independent checks: the key counts equal those counted from the reference's model definitions (MT
baseline 864 + 9 T; PAD-Net NYUD N+E 1135; MTI-Net NYUD N+E 1616, PASCAL 1889), and an MTI-Net built with the
reference's task order and one built with ours compute the same function after conversion.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from medusa_mtl.cli import main
from medusa_mtl.engine.evaluation import load_module
from medusa_mtl.errors import ConfigError
from medusa_mtl.models import create_model
from medusa_mtl.models.reference import from_reference, reference_task_order, to_reference

NE = ["semseg", "depth", "normals", "edge"]
PASCAL = ["semseg", "human_parts", "sal", "normals", "edge"]


def _model(name: str, tasks: list[str], aux: list[str] | None, dataset: str, seed: int) -> torch.nn.Module:
    torch.manual_seed(seed)
    model = create_model(name, tasks=tasks, aux_tasks=aux, dataset=dataset)
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-0.3, 0.3)
            m.running_var.uniform_(0.5, 1.5)
    return model.eval()


@pytest.mark.parametrize("name, tasks, aux, dataset, count", [
    ("mt_baseline", ["semseg", "depth"], None, "nyud", 882),
    ("padnet", ["semseg", "depth"], NE, "nyud", 1135),
    ("mtinet", ["semseg", "depth"], NE, "nyud", 1616),
    ("mtinet", PASCAL, None, "pascal", 1889),
])
def test_round_trip_keeps_outputs(name: str, tasks: list[str], aux: list[str] | None, dataset: str,
                                  count: int) -> None:
    a = _model(name, tasks, aux, dataset, seed=0)
    ref = to_reference(a)
    assert len(ref) == count and all(k.startswith("module.") for k in ref)
    assert "module.backbone.conv1.weight" in ref or "module.backbone.0.conv1.weight" in ref
    b = _model(name, tasks, aux, dataset, seed=1)
    b.load_state_dict(from_reference(b, {"model": ref, "epoch": 3}), strict=True)
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        ya, yb = a(x), b(x)
    for t in tasks:
        torch.testing.assert_close(ya[t], yb[t], rtol=0, atol=0)


def test_mtinet_task_order_is_a_function_preserving_permutation() -> None:
    """The reference concatenates NYUD's auxiliary tasks in the order semseg, normals, edge, depth; ours in
    semseg, depth, normals, edge. An MTI-Net whose FPMs concatenate in the reference's order (its weights named
    as the reference names them, not permuted), converted into our model, computes the same outputs: the FPM
    channels are permuted in task blocks, and that permutation really changes the weights."""
    order = reference_task_order(NE)
    assert order == ["semseg", "normals", "edge", "depth"]
    theirs = _model("mtinet", ["semseg", "depth"], NE, "nyud", seed=0)
    for fpm in theirs.fpm.values():
        fpm.tasks = list(order)  # concatenation in the reference's order
    ours_order = list(theirs.aux_tasks)
    theirs.aux_tasks = list(order)  # so that naming them involves no permutation: they already are in that order
    ref = to_reference(theirs)
    theirs.aux_tasks = ours_order
    ours = _model("mtinet", ["semseg", "depth"], NE, "nyud", seed=1)
    assert ours.aux_tasks == ["semseg", "depth", "normals", "edge"]
    converted = from_reference(ours, ref)
    ours.load_state_dict(converted)
    theirs, ours = theirs.double(), ours.double()  # float64: reordered sums agree to ~1e-12, not ~1e-3
    x = torch.randn(2, 3, 64, 64, dtype=torch.float64)
    with torch.no_grad():
        y_theirs, y_ours = theirs(x), ours(x)
    for t in ("semseg", "depth"):
        torch.testing.assert_close(y_theirs[t], y_ours[t], rtol=1e-9, atol=1e-9)
    assert not torch.equal(converted["fpm.scale1.attention.weight"], ref["module.fpm_scale_1.non_linear.2.weight"])
    # and without the permutation the outputs would differ: the order matters
    plain = _model("mtinet", ["semseg", "depth"], NE, "nyud", seed=1).double()
    plain.load_state_dict(theirs.state_dict())
    with torch.no_grad():
        assert not torch.allclose(plain(x)["depth"], y_theirs["depth"], atol=1e-4)


def test_refusals_are_clear() -> None:
    with pytest.raises(ConfigError, match="Medusa has no reference implementation"):
        to_reference(create_model("medusa", tasks=["semseg", "depth"]))
    model = _model("mt_baseline", ["semseg", "depth"], None, "nyud", seed=0)
    ref = to_reference(model)
    del ref["module.decoders.depth.last_layer.3.bias"]
    with pytest.raises(ConfigError, match="not filled"):
        from_reference(model, ref)
    other = to_reference(_model("mt_baseline", ["semseg", "normals"], None, "nyud", seed=0))
    with pytest.raises(ConfigError, match="not mapped|not in this model"):
        from_reference(model, other)


def test_convert_command_writes_a_checkpoint_of_ours(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    source = _model("padnet", ["semseg", "depth"], NE, "nyud", seed=0)
    ref_file = tmp_path / "checkpoint.pth.tar"
    torch.save({"model": to_reference(source), "epoch": 100, "optimizer": {}}, ref_file)
    out = tmp_path / "converted.ckpt"
    assert main(["convert", "--reference-ckpt", str(ref_file), "--model", "padnet", "--dataset", "nyud",
                 "--tasks", "semseg,depth", "--aux-tasks", "semseg,depth,normals,edge", "--out", str(out)]) == 0
    module = load_module(out)
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(module.net(x)["depth"], source(x)["depth"], rtol=0, atol=0)
    assert main(["convert", "--reference-ckpt", str(ref_file), "--model", "padnet", "--dataset", "nyud",
                 "--tasks", "semseg,depth", "--out", str(tmp_path / "x.ckpt")]) == 2
    assert "reference checkpoint does not match" in capsys.readouterr().err


@pytest.mark.parametrize(("model", "why"), [("medusa", "Medusa has no reference implementation"),
                                            ("mtan", "ResNet backbone"), ("single_task", "as an MT baseline"),
                                            ("unet", "not a mapped architecture")])
def test_convert_command_says_why_a_model_cannot_be_converted(model: str, why: str, tmp_path: Path,
                                                              capsys: pytest.CaptureFixture[str]) -> None:
    # argparse's choices gave only "invalid choice: 'medusa'"; the reason was in the Python API alone
    with pytest.raises(SystemExit) as info:
        main(["convert", "--reference-ckpt", str(tmp_path / "x.pth.tar"), "--model", model, "--dataset", "nyud",
              "--tasks", "semseg", "--out", str(tmp_path / "x.ckpt")])
    err = capsys.readouterr().err
    assert info.value.code == 2 and "--model" in err and why in err and "mt_baseline, padnet, mtinet" in err, err
    assert not (tmp_path / "x.ckpt").exists()
