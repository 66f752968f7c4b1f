"""A backbone learning rate below the heads' (``backbone_lr_scale``): optimiser groups, schedule, training."""

from __future__ import annotations

import math

import pytest
import torch

from medusa_mtl.engine.training import MultiTaskModule
from medusa_mtl.errors import ConfigError
from medusa_mtl.models.backbone import Backbone


def _groups(module: MultiTaskModule) -> tuple[torch.optim.Optimizer, torch.optim.lr_scheduler.LRScheduler]:
    conf = module.configure_optimizers()
    return conf["optimizer"], conf["lr_scheduler"]["scheduler"]


def _backbone_ids(module: MultiTaskModule) -> set[int]:
    return {id(p) for m in module.net.modules() if isinstance(m, Backbone) for p in m.parameters()}


@pytest.mark.parametrize("arch", ["mt_baseline", "single_task"])
def test_backbones_train_at_the_scaled_lr_and_the_rest_at_lr(arch: str) -> None:
    module = MultiTaskModule(arch=arch, tasks="semseg,depth", backbone="test_efficientnet", lr=1e-3,
                             backbone_lr_scale=0.1)
    opt, sched = _groups(module)
    backbone = _backbone_ids(module)
    if arch == "single_task":  # one backbone per task, both scaled
        assert sum(isinstance(m, Backbone) for m in module.net.modules()) == 2
    assert len(opt.param_groups) == 2
    rest, scaled = opt.param_groups
    assert scaled["lr"] == pytest.approx(1e-4) and rest["lr"] == pytest.approx(1e-3)
    assert {id(p) for p in scaled["params"]} == backbone
    # every trainable parameter in exactly one group
    ids = [id(p) for g in opt.param_groups for p in g["params"]]
    assert sorted(ids) == sorted(id(p) for p in module.parameters() if p.requires_grad)
    assert all(id(p) not in backbone for p in rest["params"])
    # the poly schedule scales both groups alike: the ratio stays
    assert sched.base_lrs == pytest.approx([1e-3, 1e-4])
    assert len(set(sched.lr_lambdas)) == 1


def test_scale_one_is_one_group_as_before() -> None:
    module = MultiTaskModule(arch="mt_baseline", tasks="semseg", backbone="test_efficientnet", lr=1e-3)
    opt, _ = _groups(module)
    assert len(opt.param_groups) == 1 and opt.param_groups[0]["lr"] == pytest.approx(1e-3)
    assert module.hparams.backbone_lr_scale == 1.0


def test_an_sgd_step_moves_the_backbone_by_the_scaled_lr() -> None:
    torch.manual_seed(0)
    module = MultiTaskModule(arch="mt_baseline", tasks="semseg", backbone="test_efficientnet", optimizer="sgd",
                             lr=0.5, momentum=0.0, weight_decay=0.0, backbone_lr_scale=0.25)
    opt, _ = _groups(module)
    module.net.train()
    out = module.net(torch.randn(2, 3, 32, 32))["semseg"]
    out.float().pow(2).mean().backward()
    before = {id(p): p.detach().clone() for p in module.parameters()}
    grads = {id(p): p.grad.detach().clone() for p in module.parameters() if p.grad is not None}
    opt.step()
    backbone = _backbone_ids(module)
    checked = {True: 0, False: 0}
    for p in module.parameters():
        g = grads.get(id(p))
        if g is None or not g.abs().sum():
            continue
        lr = 0.5 * (0.25 if id(p) in backbone else 1.0)
        torch.testing.assert_close(p.detach(), before[id(p)] - lr * g)
        checked[id(p) in backbone] += 1
    assert checked[True] and checked[False]


def test_ufl_heads_of_a_scaled_source_train_at_lr(tmp_path) -> None:
    module = MultiTaskModule(arch="mt_baseline", tasks="semseg,depth", backbone="test_efficientnet", lr=3e-3,
                             backbone_lr_scale=0.1, ufl={"new_tasks": ["human_parts"], "dataset": "pascal"})
    opt, _ = _groups(module)
    assert len(opt.param_groups) == 1 and opt.param_groups[0]["lr"] == pytest.approx(3e-3)  # backbone frozen


@pytest.mark.parametrize("bad", [0, -0.1, math.nan, math.inf, True, "0.1"])
def test_bad_scales_name_the_option(bad: object) -> None:
    with pytest.raises(ConfigError, match="--model.backbone_lr_scale must be a finite number > 0"):
        MultiTaskModule(arch="mt_baseline", tasks="semseg", backbone="test_efficientnet", backbone_lr_scale=bad)


def test_the_report_setup_names_a_scaled_backbone_lr() -> None:
    from medusa_mtl.reports.benchmark import _backbone_lr_text

    assert _backbone_lr_text({"lr": 1e-3}) == ""
    assert _backbone_lr_text({"lr": 1e-3, "backbone_lr_scale": 1.0}) == ""
    assert _backbone_lr_text({"lr": 1e-3, "backbone_lr_scale": 0.1}).startswith(" (backbones at 0.1x that lr: 0.0001;")
