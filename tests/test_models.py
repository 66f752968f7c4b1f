"""Model zoo: output contract of every registered model, exact parameter counts, Medusa/MTAN behaviour.

Inputs are tiny (batch 2, 64x64) so that the whole file runs on a couple of CPU cores.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest
import torch
import torch.nn as nn

from cli_helpers import run_cli
from medusa_mtl.errors import DownloadError
from medusa_mtl.models import create_model, list_models
from medusa_mtl.models.base import DEEP_SUPERVISION
from medusa_mtl.tasks import get_task

B, SIZE = 2, 64
HRNET18_CHANNELS = [18, 36, 72, 144]
NYUD_AUX = ["semseg", "depth", "normals", "edge"]

# (main tasks, aux_tasks) per case: T = 1, 2, 3 main tasks (aux_tasks omitted), plus main + auxiliary tasks.
CASES: dict[str, tuple[list[str], list[str] | None]] = {
    "T1": (["semseg"], None),
    "T2": (["semseg", "depth"], None),
    "T3": (["semseg", "depth", "normals"], None),
    "aux": (["semseg", "depth"], NYUD_AUX),
}


@pytest.fixture(scope="module", autouse=True)
def _single_thread() -> Any:
    """One intra-op thread: on a few shared cores, OpenMP threads spinning at barriers make the tiny convs
    here tens of times slower (measured: 64x64 Medusa forward+backward 0.2 s instead of 5-10 s)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def n_params(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def image(h: int = SIZE, w: int = SIZE, seed: int = 0) -> torch.Tensor:
    return torch.randn(B, 3, h, w, generator=torch.Generator().manual_seed(seed))


def channels(task: str, dataset: str = "nyud") -> int:
    return get_task(task).channels(dataset)


def total_loss(out: dict[str, Any]) -> torch.Tensor:
    """A scalar depending on every output tensor, deep supervision included."""
    loss = sum(v.float().pow(2).mean() for k, v in out.items() if k != DEEP_SUPERVISION)
    for preds in out.get(DEEP_SUPERVISION, {}).values():
        loss = loss + sum(p.float().pow(2).mean() for p in preds.values())
    return loss


def check_train_outputs(out: dict[str, Any], tasks: Sequence[str], aux: Sequence[str]) -> None:
    """Final outputs: every main task, only supervised tasks, full resolution; deep supervision well-formed;
    every supervised task gets some training signal."""
    finals = {k: v for k, v in out.items() if k != DEEP_SUPERVISION}
    assert set(tasks) <= set(finals) <= set(aux)
    for t, v in finals.items():
        assert v.shape == (B, channels(t), SIZE, SIZE), t
    covered = set(finals)
    if DEEP_SUPERVISION in out:
        ds = out[DEEP_SUPERVISION]
        assert isinstance(ds, dict) and ds
        for key, preds in ds.items():
            assert isinstance(key, str) and isinstance(preds, dict)
            assert set(preds) <= set(aux), key
            for t, p in preds.items():
                assert p.ndim == 4 and p.shape[:2] == (B, channels(t)), (key, t)
                assert SIZE % p.shape[-2] == 0 and SIZE % p.shape[-1] == 0, (key, t, p.shape)
            covered |= set(preds)
    assert covered == set(aux)


@pytest.mark.parametrize("case", list(CASES))
@pytest.mark.parametrize("name", list_models())
def test_every_model_forward_backward_eval(name: str, case: str) -> None:
    """Each registered model (padnet/mtinet/... join automatically): train forward + backward, eval forward."""
    torch.manual_seed(0)
    tasks, aux = CASES[case]
    model = create_model(name, tasks=tasks, aux_tasks=aux, dataset="nyud")
    assert model.tasks == tasks
    assert set(tasks) <= set(model.aux_tasks) <= set(aux or tasks)
    x = image()

    model.train()
    out = model(x)
    check_train_outputs(out, tasks, model.aux_tasks)
    total_loss(out).backward()
    unused = [n for n, p in model.named_parameters() if p.requires_grad and p.grad is None]
    assert not unused, f"{name}: parameters without gradient in train mode: {unused[:5]}"
    assert any(p.grad.abs().sum() > 0 for p in model.backbone.parameters())

    model.eval()
    with torch.no_grad():
        out = model(x)
    assert set(out) == set(tasks)
    for t in tasks:
        assert out[t].shape == (B, channels(t), SIZE, SIZE), t
        assert torch.isfinite(out[t]).all(), t


def test_mt_baseline_exact_parameter_count() -> None:
    model = create_model("mt_baseline", tasks=["semseg", "depth"], dataset="nyud")
    assert n_params(model) == 4_019_251
    assert n_params(model.backbone) == 3_860_720


@pytest.mark.parametrize("name", ["medusa", "mtan"])
def test_parameters_grow_exactly_linearly(name: str) -> None:
    """Independent heads: each extra 1-channel task (depth, edge) adds the same number of parameters."""
    sets = [["semseg"], ["semseg", "depth"], ["semseg", "depth", "edge"]]
    models = [create_model(name, tasks=s, dataset="nyud") for s in sets]
    counts = [n_params(m) for m in models]
    assert counts[1] - counts[0] == counts[2] - counts[1] > 0
    heads = models[2].heads
    assert n_params(heads["depth"]) == n_params(heads["edge"]) == counts[2] - counts[1]
    assert counts[0] == n_params(models[0].backbone) + sum(
        n_params(m) for n, m in models[0].named_children() if n not in ("backbone", "heads")
    ) + n_params(heads["semseg"])
    if name == "medusa":
        c = HRNET18_CHANNELS
        sfa = sum(2 * 9 * k * k for k in c)
        blocks = sum(2 * (2 * 9 * k * k + 4 * k) for k in c)
        initial = sum(k + 1 for k in c)  # per output channel: weights + bias
        msa = sum(9 * k + 1 for k in c)
        hrhead = 73_710 + 271  # per output channel 271
        assert counts[1] - counts[0] == sfa + blocks + initial + msa + hrhead


@pytest.fixture(scope="module")
def medusa_aux() -> nn.Module:
    """Medusa for NYUD semseg + depth with normals and edge as auxiliary tasks (not mutated by tests)."""
    torch.manual_seed(0)
    return create_model("medusa", tasks=["semseg", "depth"], aux_tasks=NYUD_AUX, dataset="nyud")


def test_medusa_initial_predictions_run_in_train_only(medusa_aux: nn.Module) -> None:
    model = medusa_aux
    fired: list[str] = []
    hooks = []
    for t, head in model.heads.items():
        for s, conv in enumerate(head.initial):
            hooks.append(conv.register_forward_hook(lambda *a, key=f"{t}/{s}": fired.append(key)))
    aux_only = [t for t in model.aux_tasks if t not in model.tasks]
    for t in aux_only:
        hooks.append(model.heads[t].register_forward_hook(lambda *a, key=f"head {t}": fired.append(key)))
    try:
        model.train()
        out = model(image())
        assert len([k for k in fired if "/" in k]) == 4 * len(NYUD_AUX)
        assert sorted(out[DEEP_SUPERVISION]) == ["scale0", "scale1", "scale2", "scale3"]
        for s, preds in enumerate(out[DEEP_SUPERVISION].values()):
            assert sorted(preds) == sorted(NYUD_AUX)
            assert preds["semseg"].shape == (B, 40, SIZE // 4 // 2**s, SIZE // 4 // 2**s)
        fired.clear()
        model.eval()
        with torch.no_grad():
            out = model(image())
        assert fired == []  # no initial prediction, no auxiliary head ran
        assert sorted(out) == ["depth", "semseg"]
    finally:
        for h in hooks:
            h.remove()


def test_medusa_attention_maps(medusa_aux: nn.Module) -> None:
    medusa_aux.eval()
    maps = medusa_aux.attention_maps(image())
    assert sorted(maps) == ["depth", "semseg"]
    for m in maps.values():
        assert [tuple(a.shape) for a in m["sfa"]] == [(B, 1, SIZE // s, SIZE // s) for s in (4, 8, 16, 32)]
        assert all(((a >= 0) & (a <= 1)).all() for a in m["sfa"])
        assert m["msa"].shape == (B, 4, SIZE // 4, SIZE // 4)
        torch.testing.assert_close(m["msa"].sum(dim=1), torch.ones(B, SIZE // 4, SIZE // 4))


def test_input_size_must_be_multiple_of_32(medusa_aux: nn.Module) -> None:
    medusa_aux.eval()
    with pytest.raises(ValueError, match="multiple of 32"):
        medusa_aux(image(60, 64))


@pytest.mark.parametrize("name", ["medusa", "mtan", "mt_baseline"])
def test_drop_auxiliary_heads_keeps_main_outputs(name: str) -> None:
    torch.manual_seed(0)
    model = create_model(name, tasks=["semseg", "depth"], aux_tasks=NYUD_AUX, dataset="nyud").eval()
    x = image()
    with torch.no_grad():
        before = model(x)
    n_before = n_params(model)
    dropped_params = n_params(model.heads["normals"]) + n_params(model.heads["edge"])
    assert model.drop_auxiliary_heads() == ["normals", "edge"]
    assert model.aux_tasks == model.tasks == ["semseg", "depth"]
    assert sorted(model.heads) == ["depth", "semseg"]
    assert n_params(model) == n_before - dropped_params
    with torch.no_grad():
        after = model(x)
    assert sorted(after) == ["depth", "semseg"]
    for t in after:
        assert torch.equal(before[t], after[t]), t
    model.train()
    assert {k for k in model(x) if k != DEEP_SUPERVISION} == {"semseg", "depth"}


@pytest.mark.parametrize("name", ["medusa", "mtan"])
def test_add_task_on_frozen_backbone_changes_nothing_else(name: str) -> None:
    """UFL: a PASCAL task head on a NYUD model; Adam with weight decay over *all* parameters must leave the
    backbone (parameters and BN buffers), the shared parts and the old heads bit-identical."""
    torch.manual_seed(0)
    model = create_model(name, tasks=["semseg", "depth"], dataset="nyud")
    x = image()
    # One ordinary training step first: BN statistics move and every parameter keeps a (stale) gradient.
    opt = torch.optim.Adam(model.parameters(), lr=1e-3, weight_decay=1e-4)
    model.train()
    total_loss(model(x)).backward()
    opt.step()
    model.eval()
    with torch.no_grad():
        ref = model(x)
    ref_state = {k: v.clone() for k, v in model.state_dict().items()}

    head = model.add_task("human_parts", dataset="pascal")
    assert model.tasks == ["semseg", "depth", "human_parts"]
    assert model.out_channels("human_parts") == 7
    model.freeze_backbone()
    model.freeze_heads(["semseg", "depth"])
    new_before = {k: v.clone() for k, v in head.state_dict().items()}

    opt = torch.optim.Adam(model.parameters(), lr=1e-2, weight_decay=1e-4)
    model.train()
    assert not model.backbone.training
    for _ in range(2):
        out = model(x)
        assert {k for k in out if k != DEEP_SUPERVISION} == {"human_parts"}
        assert out["human_parts"].shape == (B, 7, SIZE, SIZE)
        total_loss(out).backward()
        opt.step()
        opt.zero_grad()

    state = model.state_dict()
    for k, v in ref_state.items():
        assert torch.equal(state[k], v), f"{k} changed"
    assert any(not torch.equal(v, head.state_dict()[k]) for k, v in new_before.items())
    model.eval()
    with torch.no_grad():
        out = model(x)
    assert sorted(out) == ["depth", "human_parts", "semseg"]
    assert out["human_parts"].shape == (B, 7, SIZE, SIZE)
    for t in ("semseg", "depth"):
        assert torch.equal(out[t], ref[t]), t


@pytest.mark.parametrize(
    "switches",
    [dict(sfa=False), dict(initial_predictions=False), dict(head="hrhead"),
     dict(sfa=False, initial_predictions=False, head="hrhead")],
    ids=["no-sfa", "no-initial", "hrhead", "all-off"],
)
def test_medusa_switches(switches: dict[str, Any]) -> None:
    tasks = ["semseg", "depth"]
    model = create_model("medusa", tasks=tasks, dataset="nyud", **switches)
    c = HRNET18_CHANNELS
    ref = 7_013_993  # medusa, NYUD semseg + depth, all switches on
    removed = 0
    if switches.get("sfa") is False:
        removed += 2 * sum(2 * 9 * k * k for k in c)
    if switches.get("initial_predictions") is False:
        removed += sum((40 * k + 40) + (k + 1) for k in c)  # semseg, depth
    if switches.get("head") == "hrhead":
        removed += 2 * sum(9 * k + 1 for k in c)
    assert n_params(model) == ref - removed
    model.train()
    out = model(image())
    check_train_outputs(out, tasks, tasks)
    assert (DEEP_SUPERVISION in out) == switches.get("initial_predictions", True)
    total_loss(out).backward()
    model.eval()
    with torch.no_grad():
        out = model(image())
    assert sorted(out) == ["depth", "semseg"]
    maps = model.attention_maps(image())["semseg"]
    assert ("sfa" in maps) == switches.get("sfa", True)
    assert ("msa" in maps) == (switches.get("head", "msa") == "msa")


def test_clear_errors_for_bad_names() -> None:
    with pytest.raises(ValueError, match="unknown model 'nope'"):
        create_model("nope", tasks=["semseg"])
    with pytest.raises(ValueError, match="unknown task 'bogus'"):
        create_model("medusa", tasks=["semseg", "bogus"])
    with pytest.raises(ValueError, match="not defined for dataset"):
        create_model("medusa", tasks=["depth"], dataset="pascal")
    with pytest.raises(ValueError, match="unknown Medusa head"):
        create_model("medusa", tasks=["semseg"], head="fancy")
    with pytest.raises(ValueError, match=r"unknown option\(s\) \['foo'\]: not options of the model, nor of the timm"):
        create_model("medusa", tasks=["semseg"], backbone="test_efficientnet", foo=1)  # it blamed the backbone
    # a switch given as a string (`--model.model_kwargs.sfa no`, a quoted "false" in YAML) was true: built with it on
    for model, key in (("medusa", "sfa"), ("medusa", "initial_predictions"), ("mt_baseline", "pretrained")):
        with pytest.raises(ValueError, match=rf"{model}: option {key}='no' must be true or false"):
            create_model(model, tasks=["semseg"], backbone="test_efficientnet", **{key: "no"})


def test_add_task_errors(medusa_aux: nn.Module) -> None:
    with pytest.raises(ValueError, match="already has a head"):
        medusa_aux.add_task("semseg")
    with pytest.raises(ValueError, match="unknown task"):
        medusa_aux.add_task("bogus")
    with pytest.raises(ValueError, match="not defined for dataset"):
        medusa_aux.add_task("human_parts")  # a PASCAL task needs dataset="pascal" on a NYUD model
    assert sorted(medusa_aux.heads) == sorted(NYUD_AUX)


@pytest.mark.parametrize("name", ["medusa", "mt_baseline", "mtan"])
def test_other_timm_backbone(name: str) -> None:
    """A non-HRNet timm backbone (resnet18) works with its own channels."""
    torch.manual_seed(0)
    model = create_model(name, tasks=["semseg", "depth"], dataset="nyud", backbone="resnet18")
    assert model.backbone.channels == [64, 128, 256, 512]
    assert model.backbone.strides == [4, 8, 16, 32]
    if name == "medusa":
        assert model.heads["semseg"].sfa[3].conv.in_channels == 512
    if name == "mt_baseline":
        assert model.heads["semseg"].last_layer[0].in_channels == 960
    model.train()
    out = model(image())
    check_train_outputs(out, ["semseg", "depth"], ["semseg", "depth"])
    total_loss(out).backward()
    model.eval()
    with torch.no_grad():
        out = model(image())
    assert out["semseg"].shape == (B, 40, SIZE, SIZE) and out["depth"].shape == (B, 1, SIZE, SIZE)


def test_inference_graph_of_mt_baseline_has_no_auxiliary_heads() -> None:
    # MT baseline had no drop_auxiliary_heads: its exported files carried the normals / edge heads (4,167,755
    # parameters instead of the 4,019,251 of semseg + depth)
    from medusa_mtl.engine.export import inference_graph

    model = create_model("mt_baseline", tasks=["semseg", "depth"], aux_tasks=NYUD_AUX, dataset="nyud")
    graph = inference_graph(model)
    assert n_params(graph) == n_params(create_model("mt_baseline", tasks=["semseg", "depth"], dataset="nyud"))
    assert sorted(model.heads) == sorted(NYUD_AUX)  # the model itself is left as it was


def test_backbone_with_channels_last_features() -> None:
    # timm's Swin / MambaOut give [B, H, W, C] feature maps: the decoders read the width as channels and failed with
    # a shape error from deep inside a convolution
    model = create_model("medusa", tasks=["semseg", "depth"], dataset="nyud", backbone="test_mambaout").eval()
    assert model.backbone.nhwc_features
    feats = model.backbone(image())
    assert [f.shape[1] for f in feats] == model.backbone.channels
    with torch.no_grad():
        out = model(image())
    assert out["semseg"].shape[1:] == (40, 64, 64) and out["depth"].shape[1:] == (1, 64, 64)


@pytest.mark.parametrize(("x", "message"), [
    (torch.randn(1, 64, 64, 3), r"got \[1, 64, 64, 3\]; it looks like \[B, H, W, C\]: x.permute\(0, 3, 1, 2\)"),
    (torch.zeros(1, 3, 64, 64, dtype=torch.uint8), "expected a float image batch.*torch.uint8"),
    (torch.randn(1, 3, 64, 64, dtype=torch.float64), "input is torch.float64 but the .* weights are torch.float32"),
    (torch.randn(3, 64, 64), r"expected an image batch \[B, 3, H, W\], got \[3, 64, 64\]"),
])
def test_wrong_input_tensor_is_named(x: torch.Tensor, message: str) -> None:
    model = create_model("mt_baseline", tasks=["depth"], dataset="nyud", backbone="test_efficientnet").eval()
    with pytest.raises(ValueError, match=message):
        model(x)


def test_plain_timm_module_as_backbone_is_refused_clearly() -> None:
    import timm

    body = timm.create_model("test_efficientnet", features_only=True, pretrained=False)
    with pytest.raises(TypeError, match="pass a timm model name .* or a medusa_mtl.models.Backbone"):
        create_model("medusa", tasks=["semseg", "depth"], dataset="nyud", backbone=body)


def test_weights_expecting_other_image_statistics_are_warned_about(tmp_path: Path) -> None:
    # every image is normalised with ImageNet's mean/std; timm's ViT weights expect 0.5 / 0.5: loaded silently,
    # a frozen ViT backbone saw shifted inputs
    import timm

    from medusa_mtl.models.backbone import Backbone

    vit = tmp_path / "vit.pth"
    torch.save(timm.create_model("vit_tiny_patch16_224").state_dict(), vit)
    with pytest.warns(UserWarning, match=r"mean \(0\.5, 0\.5, 0\.5\).*ImageNet's mean \(0\.485") as rec:
        Backbone("vit_tiny_patch16_224", pretrained_file=vit)
    assert str(vit) in str(rec[0].message)
    resnet = tmp_path / "resnet.pth"
    torch.save(timm.create_model("resnet18").state_dict(), resnet)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        Backbone("resnet18", pretrained_file=resnet)  # ImageNet statistics: nothing to say
        Backbone("vit_tiny_patch16_224")  # no pretrained weights: nothing to say


def test_pretrained_file_is_loaded_strictly(tmp_path: Path) -> None:
    # timm's file route loaded with strict=False and only logged what it skipped: a whole-model state dict, a file
    # with a tensor missing and a deeper model's file all "loaded", leaving the backbone partly or wholly random
    import timm

    from medusa_mtl.errors import ConfigError
    from medusa_mtl.models.backbone import Backbone

    def body_equals(backbone: Backbone, sd: dict[str, torch.Tensor], prefix: str = "") -> None:
        body = backbone.body.state_dict()
        for k, v in body.items():
            assert torch.equal(v, sd[prefix + k]), k

    torch.manual_seed(0)
    full = timm.create_model("resnet18").state_dict()  # the usual form: the whole timm network, classifier too
    good = tmp_path / "resnet18.pth"
    torch.save(full, good)
    body_equals(Backbone("resnet18", pretrained_file=good), full)
    from safetensors.torch import save_file

    save_file(full, str(tmp_path / "resnet18.safetensors"))
    body_equals(Backbone("resnet18", pretrained_file=tmp_path / "resnet18.safetensors"), full)
    # a checkpoint of a whole medusa-mtl model: the backbone's tensors under "backbone.body."
    torch.manual_seed(1)
    model = create_model("mt_baseline", tasks=["semseg"], dataset="nyud", backbone="resnet18")
    whole = tmp_path / "whole.pth"
    torch.save({"state_dict": model.state_dict()}, whole)
    body_equals(Backbone("resnet18", pretrained_file=whole), model.state_dict(), "backbone.body.")
    # a features_only body whose wrapper renames modules (ConvNeXt: stages.0 -> stages_0), what `medusa pretrain`
    # writes: loaded into the unwrapped model, the stages stayed random
    torch.manual_seed(2)
    convnext = Backbone("convnext_atto")
    body_file = tmp_path / "convnext_body.pth"
    torch.save(convnext.body.state_dict(), body_file)
    body_equals(Backbone("convnext_atto", pretrained_file=body_file), convnext.body.state_dict())

    missing = dict(full)
    del missing["layer1.0.conv1.weight"]
    torch.save(missing, tmp_path / "missing.pth")
    with pytest.raises(ConfigError, match=r"missing\.pth.*1 of the backbone's .* layer1\.0\.conv1\.weight"):
        Backbone("resnet18", pretrained_file=tmp_path / "missing.pth")
    torch.save(timm.create_model("resnet34").state_dict(), tmp_path / "resnet34.pth")
    with pytest.raises(ConfigError, match=r"resnet34\.pth.*belong to no part of this backbone.*layer1\.2\."):
        Backbone("resnet18", pretrained_file=tmp_path / "resnet34.pth")
    torch.save(timm.create_model("resnet50").state_dict(), tmp_path / "resnet50.pth")
    with pytest.raises(ConfigError, match=r"resnet50\.pth.*another shape"):
        Backbone("resnet18", pretrained_file=tmp_path / "resnet50.pth")
    (tmp_path / "junk.pth").write_bytes(b"not a weights file")
    with pytest.raises(ConfigError, match=r"junk\.pth: not a weights file"):
        Backbone("resnet18", pretrained_file=tmp_path / "junk.pth")
    torch.save({"epoch": 3}, tmp_path / "meta.pth")
    with pytest.raises(ConfigError, match=r"meta\.pth: holds no tensors"):
        Backbone("resnet18", pretrained_file=tmp_path / "meta.pth")


def test_backbone_modules_options_dtypes_and_head_datasets_are_respected() -> None:
    from medusa_mtl import Predictor
    from medusa_mtl.errors import ConfigError
    from medusa_mtl.models.backbone import Backbone
    from medusa_mtl.models.ufl import UFLModel

    # a Backbone module given to single_task was shared by every task's network: an MT baseline in disguise
    st = create_model("single_task", tasks=["semseg", "depth"], dataset="nyud", backbone=Backbone("test_efficientnet"))
    assert st.nets["semseg"].backbone is not st.nets["depth"].backbone
    by_name = create_model("single_task", tasks=["semseg", "depth"], dataset="nyud", backbone="test_efficientnet")
    assert sum(p.numel() for p in st.parameters()) == sum(p.numel() for p in by_name.parameters())
    # options that build a backbone were dropped silently when the backbone was built already
    with pytest.raises(ValueError, match=r"\['bn_momentum'\] cannot apply to a backbone module"):
        create_model("mt_baseline", tasks=["semseg"], dataset="nyud", backbone=Backbone("test_efficientnet"),
                     bn_momentum=0.01)
    with pytest.raises(ValueError, match=r"\['out_indices'\]: set by the backbone wrapper"):
        Backbone("test_efficientnet", out_indices=(1, 2))
    # heads added to a float64 model were float32 (and a UFL decoder stayed on the CPU / in float32)
    x = torch.randn(1, 3, 64, 64, dtype=torch.float64)
    for name in ("medusa", "mt_baseline", "mtan"):
        model = create_model(name, tasks=["semseg"], dataset="nyud", backbone="test_efficientnet").double().eval()
        model.add_task("sal", dataset="pascal")
        assert model(x)["sal"].dtype == torch.float64
    source = create_model("mt_baseline", tasks=["semseg"], dataset="nyud", backbone="test_efficientnet").double()
    assert UFLModel(source, ["sal"], "pascal").forward_all(x)["sal"].dtype == torch.float64
    # add_task(..., dataset="pascal") was taken for a NYUD head by Predictor and UFLModel
    model = create_model("mt_baseline", tasks=["semseg"], dataset="nyud", backbone="test_efficientnet")
    model.add_task("sal", dataset="pascal")
    assert Predictor(model, size=(64, 64)).task_datasets == {"semseg": "nyud", "sal": "pascal"}
    with pytest.raises(ConfigError, match=r"\['sal'\] are already pascal tasks"):
        UFLModel(model, ["sal"], "pascal")
    assert UFLModel(model, ["human_parts"], "pascal").task_datasets() == {"semseg": "nyud", "sal": "pascal",
                                                                          "human_parts": "pascal"}
    # an auxiliary task of the source (N+E: normals) has a trained head: say so, not only "already a task"
    ne = create_model("mt_baseline", tasks=["semseg", "depth"], aux_tasks=["semseg", "depth", "normals", "edge"],
                      dataset="nyud", backbone="test_efficientnet")
    with pytest.raises(ConfigError, match=r"\['normals'\] are already nyud tasks of the source model \(normals as an "
                                          r"auxiliary task"):
        UFLModel(ne, ["normals"], "nyud")


def test_transformer_sizes_and_tagged_names() -> None:
    from medusa_mtl.models.backbone import Backbone

    # a ViT built for 224x224 asserted deep inside timm ("Input height (64) doesn't match model (224)")
    model = create_model("mt_baseline", tasks=["semseg"], dataset="nyud", backbone="vit_tiny_patch16_224")
    with pytest.raises(ValueError, match=r"input size 64x96: backbone vit_tiny_patch16_224 is built for 224x224.*"
                                         r"img_size=\[64, 96\]"):
        model(torch.zeros(1, 3, 64, 96))
    sized = create_model("mt_baseline", tasks=["semseg"], dataset="nyud", backbone="vit_tiny_patch16_224",
                         img_size=(64, 96)).eval()
    assert sized(torch.zeros(1, 3, 64, 96))["semseg"].shape == (1, 40, 64, 96)
    # timm names with a pretrained tag were "not a timm model name"
    assert Backbone("resnet18.a1_in1k").channels == Backbone("resnet18").channels
    with pytest.raises(ValueError, match="unknown backbone 'resnet19.a1_in1k'"):
        Backbone("resnet19.a1_in1k")
    # an unknown tag was "cannot be built with features_only=True: Invalid pretrained tag"
    with pytest.raises(ValueError, match=r"resnet18 has no pretrained tag 'nosuch'; its tags: a1_in1k, .*tv_in1k"):
        Backbone("resnet18.nosuch")


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"tasks": None}, r"tasks: expected task names .* got None"),
    ({"tasks": ["semseg", 3]}, r"tasks: expected task names \(strings\), got 3"),
    ({"tasks": ["semseg"], "backbone": None}, r"backbone=None: every model needs a backbone"),
])
def test_missing_tasks_or_backbone_are_named(kwargs: dict[str, Any], message: str) -> None:
    # TypeError "'NoneType' object is not iterable" / AttributeError "no attribute 'backbone_channels'"
    with pytest.raises(ValueError, match=message):
        create_model("mt_baseline", dataset="nyud", **kwargs)


def test_another_models_option_is_named_not_blamed_on_the_backbone() -> None:
    # Medusa's head= given to the MT baseline (composed configs keep model_kwargs) reached timm's HRNet, which has a
    # `head` argument of its own: "backbone cannot be built with features_only=True: ... multiple values for 'head'"
    with pytest.raises(ValueError, match=r"unknown option\(s\) \['head'\]: not options of the model"):
        create_model("mt_baseline", tasks=["semseg"], dataset="nyud", head="msa")


def test_a_pretrained_file_leaves_the_heads_initialisation_unchanged(tmp_path: Path) -> None:
    # loading the file built a second (full) timm model to read its names: it drew random numbers, so every head
    # built after the backbone started from other weights than without a file (benchmark numbers moved)
    import timm

    path = tmp_path / "resnet18.pth"
    torch.save(timm.create_model("resnet18").state_dict(), path)
    torch.manual_seed(0)
    plain = create_model("medusa", tasks=["semseg", "depth"], dataset="nyud", backbone="resnet18")
    after_plain = torch.rand(1)
    torch.manual_seed(0)
    loaded = create_model("medusa", tasks=["semseg", "depth"], dataset="nyud", backbone="resnet18",
                          pretrained_file=str(path))
    assert torch.equal(torch.rand(1), after_plain)
    heads = [k for k in plain.state_dict() if not k.startswith("backbone.")]
    assert heads and all(torch.equal(plain.state_dict()[k], loaded.state_dict()[k]) for k in heads)


def test_rgb_weights_load_into_a_backbone_with_other_input_channels(tmp_path: Path) -> None:
    # timm adapts the first conv of RGB weights to in_chans (summed for 1 channel); the strict loader refused them
    import timm

    from medusa_mtl.models.backbone import Backbone

    full = timm.create_model("resnet18").state_dict()
    torch.save(full, tmp_path / "rgb.pth")
    gray = Backbone("resnet18", pretrained_file=tmp_path / "rgb.pth", in_chans=1)
    assert torch.allclose(gray.body.state_dict()["conv1.weight"], full["conv1.weight"].sum(1, keepdim=True))
    assert torch.equal(gray.body.state_dict()["layer1.0.conv1.weight"], full["layer1.0.conv1.weight"])


def test_vit_weights_load_into_a_vit_built_for_another_size(tmp_path: Path) -> None:
    # timm resamples the position embedding of 224x224 weights for img_size=(64, 96); the strict loader refused it
    import timm
    from timm.layers import resample_abs_pos_embed

    from medusa_mtl.models.backbone import Backbone

    full = timm.create_model("vit_tiny_patch16_224").state_dict()
    torch.save(full, tmp_path / "vit.pth")
    with pytest.warns(UserWarning, match="normalises images"):
        small = Backbone("vit_tiny_patch16_224", pretrained_file=tmp_path / "vit.pth", img_size=(64, 96))
    expected = resample_abs_pos_embed(full["pos_embed"], [4, 6], num_prefix_tokens=1)
    assert torch.equal(small.body.state_dict()["model.pos_embed"], expected)
    assert small(torch.zeros(1, 3, 64, 96))[0].shape[0] == 1


@pytest.fixture
def no_network(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> list[tuple[str, bool]]:
    """Name resolution fails, no proxy, an empty Hugging Face cache; returns the timm builds asked for
    (name, pretrained), with every pretrained=True build failing like the hub client does offline."""
    import socket

    import timm
    from huggingface_hub import constants

    def unresolvable(*args: Any, **kwargs: Any) -> Any:
        raise socket.gaierror(-2, "Name or service not known")

    monkeypatch.setattr(socket, "getaddrinfo", unresolvable)
    for var in ("HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy", "ALL_PROXY", "all_proxy"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    calls: list[tuple[str, bool]] = []
    real = timm.create_model

    def spy(name: str, pretrained: bool = False, **kwargs: Any) -> nn.Module:
        calls.append((name, pretrained))
        if pretrained:
            raise OSError("LocalEntryNotFoundError (stands in for ~50 s of retries)")
        return real(name, pretrained=False, **kwargs)

    monkeypatch.setattr(timm, "create_model", spy)
    return calls


def test_pretrained_download_offline_fails_at_once_with_the_by_hand_route(no_network, tmp_path, monkeypatch) -> None:
    from huggingface_hub import constants

    from medusa_mtl.models.backbone import Backbone

    with pytest.raises(RuntimeError) as err:
        Backbone("resnet18", pretrained=True)
    msg = str(err.value)
    assert "huggingface.co does not resolve" in msg and "models--timm--resnet18" in msg
    assert "--model.pretrained_file PATH" in msg and "torch.save(timm.create_model('resnet18'" in msg
    assert ("resnet18", True) not in no_network  # the hub client's retries were never started
    assert isinstance(err.value, DownloadError)
    # from the command line: one line naming what to do, no traceback
    rc, _, stderr = run_cli(["fit", "--config", "medusa:model/mt_baseline.yaml", "--config",
                             "medusa:data/synthetic_nyud.yaml", "--model.backbone", "resnet18",
                             "--model.model_kwargs", "{pretrained: true}", "--trainer.default_root_dir",
                             str(tmp_path / "run")])
    assert rc != 0 and "Traceback" not in stderr and "--model.pretrained_file PATH" in stderr
    # undecided cases are left to timm (its own error, with the same by-hand route)
    (Path(constants.HF_HUB_CACHE) / "models--timm--resnet18.a1_in1k").mkdir(parents=True)  # weights cached
    with pytest.raises(RuntimeError, match="stands in for") as err:
        Backbone("resnet18", pretrained=True)
    assert "--model.pretrained_file PATH" in str(err.value) and no_network[-1] == ("resnet18", True)
    monkeypatch.setenv("HTTPS_PROXY", "http://proxy.invalid:3128")  # a proxy resolves names for this machine
    with pytest.raises(RuntimeError, match="stands in for"):
        Backbone("resnet34", pretrained=True)
    assert no_network[-1] == ("resnet34", True)


def test_download_source_of_hub_names_and_tags(no_network) -> None:
    from medusa_mtl.models.hub import why_download_cannot_work

    assert "models--timm--resnet18.a1_in1k" in why_download_cannot_work("resnet18")
    assert "models--timm--resnet18.tv_in1k" in why_download_cannot_work("resnet18.tv_in1k")
    assert "models--someone--weights" in why_download_cannot_work("hf-hub:someone/weights@v1")
    assert "models--someone--weights" in why_download_cannot_work("hf_hub:someone/weights")  # timm's older spelling
    assert why_download_cannot_work("no_such_timm_model") is None  # no weights entry: timm decides (and names it)


@pytest.mark.parametrize("option", ["cache_dir", "pretrained_cfg_overlay", "pretrained_cfg"])
def test_pretrained_weights_from_another_source_or_cache_are_left_to_timm(no_network, tmp_path, option) -> None:
    """timm options that point the download elsewhere (another cache folder, a local file, another tag) are
    not what the offline check looks at: the weights may be there, so timm decides (it was a DownloadError)."""
    from medusa_mtl.models.backbone import Backbone

    weights = tmp_path / "resnet18.pth"
    torch.save({}, weights)
    value = {"cache_dir": str(tmp_path / "my_cache"), "pretrained_cfg_overlay": {"file": str(weights)},
             "pretrained_cfg": "tv_in1k"}[option]
    with pytest.raises(DownloadError, match="stands in for"):
        Backbone("resnet18", pretrained=True, **{option: value})
    assert no_network[-1] == ("resnet18", True)


def test_a_proxy_from_the_system_settings_is_left_to_timm(no_network, monkeypatch) -> None:
    """The hub client (httpx) and torch.hub (urllib) take their proxy from ``urllib.request.getproxies()``: on
    macOS and Windows the system's proxy settings, with no ``*_proxy`` variable set. Names then resolve at the
    proxy, not here: timm decides (it was a DownloadError saying the host does not resolve)."""
    import urllib.request

    from medusa_mtl.models.backbone import Backbone

    monkeypatch.setattr(urllib.request, "getproxies", lambda: {"https": "http://proxy.corp.example:8080"})
    with pytest.raises(DownloadError, match="stands in for"):
        Backbone("resnet18", pretrained=True)
    assert no_network[-1] == ("resnet18", True)
    monkeypatch.setattr(urllib.request, "getproxies", lambda: {"no": "localhost", "ftp": "http://ftp.example:21"})
    with pytest.raises(DownloadError, match="does not resolve"):  # no proxy for http(s): decided here
        Backbone("resnet18", pretrained=True)


def test_an_hf_hub_name_offline_fails_before_timm_reaches_the_hub(no_network, monkeypatch) -> None:
    """For an ``hf-hub:`` name timm downloads the model's config.json even with pretrained=False: the Backbone's
    probe build did, with the hub client's retries, and failed as "cannot be built with features_only=True"."""
    import timm

    from medusa_mtl.models.backbone import Backbone

    builds: list[str] = []

    def needs_the_hub(name: str, pretrained: bool = False, **kwargs: Any) -> nn.Module:
        builds.append(name)
        raise OSError("config.json: LocalEntryNotFoundError (stands in for the retries)")

    monkeypatch.setattr(timm, "create_model", needs_the_hub)
    with pytest.raises(DownloadError, match="huggingface.co does not resolve") as err:
        Backbone("hf-hub:timm/resnet18.a1_in1k", pretrained=True)
    assert "models--timm--resnet18.a1_in1k" in str(err.value) and builds == []


def test_a_resolver_that_hangs_leaves_the_download_to_timm(monkeypatch: pytest.MonkeyPatch) -> None:
    import socket
    import threading

    from medusa_mtl.models import hub

    release = threading.Event()

    def hanging(*args: Any, **kwargs: Any) -> Any:
        release.wait(30)
        raise socket.gaierror(-3, "Temporary failure in name resolution")

    monkeypatch.setattr(socket, "getaddrinfo", hanging)
    try:
        assert hub._resolves("huggingface.co", timeout=0.2) is True  # undecided: timm's client decides
    finally:
        release.set()
    monkeypatch.setattr(socket, "getaddrinfo", lambda *a, **k: (_ for _ in ()).throw(socket.gaierror(-2, "no")))
    assert hub._resolves("huggingface.co", timeout=5) is False


def test_a_ufl_decoder_of_mtan_trains_its_own_refinement_blocks_in_train_mode() -> None:
    """The new MTAN decoder of a UFL model has refinement blocks of its own (random, trainable, shared by the new
    tasks only); they ran with eval-mode BatchNorm (running statistics of the initialisation, never updated)
    while their weights trained, as the decoder is marked as on a frozen backbone. The source's frozen
    refinement blocks stay in eval mode."""
    from medusa_mtl.models.ufl import UFLModel

    torch.manual_seed(0)
    source = create_model("mtan", tasks=["semseg"], dataset="nyud", backbone="test_efficientnet")
    source.freeze_backbone()
    ufl = UFLModel(source, ["sal"], "pascal").train()
    refine = ufl.decoder.refine
    assert all(p.requires_grad for p in refine.parameters())
    assert refine.training and not ufl.backbone.training
    assert not source.refine.training
    bn = next(m for m in refine.modules() if isinstance(m, nn.BatchNorm2d))
    before = bn.running_mean.clone()
    ufl(torch.randn(2, 3, 64, 64))
    assert not torch.equal(bn.running_mean, before)
    # a model whose own backbone is frozen (add_task) keeps its shared refinement blocks frozen, in eval mode
    source.train()
    assert not source.refine.training and not any(p.requires_grad for p in source.refine.parameters())


@pytest.mark.parametrize("name", ["medusa", "mt_baseline", "mtan"])
def test_a_head_added_again_after_its_frozen_head_was_dropped_trains(name: str) -> None:
    """freeze_heads() then drop_auxiliary_heads() left the dropped heads' names marked frozen: a head added later
    under such a name (normals, auxiliary before, now a new main task) counted as frozen, so train mode never ran
    it (no output, nothing to learn) although its parameters required gradients."""
    torch.manual_seed(0)
    model = create_model(name, tasks=["semseg", "depth"], aux_tasks=NYUD_AUX, dataset="nyud",
                         backbone="test_efficientnet")
    model.freeze_backbone()
    model.freeze_heads()
    assert model.drop_auxiliary_heads() == ["normals", "edge"]
    assert model.frozen_heads == ["semseg", "depth"]
    head = model.add_task("normals")
    assert model.frozen_heads == ["semseg", "depth"]
    model.train()
    assert head.training
    out = model(image())
    assert {k for k in out if k != DEEP_SUPERVISION} == {"normals"}
    total_loss(out).backward()
    assert all(p.grad is not None for p in head.parameters())
