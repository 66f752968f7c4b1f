"""The HRNet backbone in the reference implementation's form (bilinear fuse layers, BN momentum 0.01) by default,
timm's own form behind ``hrnet_form="timm"``; same parameters either way."""

from __future__ import annotations

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from medusa_mtl.models import create_model
from medusa_mtl.models.backbone import Backbone


def _fuse_modules(backbone: Backbone) -> list[nn.Module]:
    return [m for m in backbone.modules() if type(m).__name__ == "HighResolutionModule" and m.num_branches > 1]


def test_reference_fuse_layers_equal_a_literal_bilinear_computation() -> None:
    """Each fuse output of every multi-branch module equals, computed by hand: sum over branches j of
    (i == j: x_i; j > i: bilinear(conv1x1+BN(x_j), size of x_i, align_corners=False); j < i: strided convs),
    then ReLU, as in the reference's HighResolutionModule.forward."""
    torch.manual_seed(0)
    backbone = Backbone("hrnet_w18_small_v2").eval()
    modules = _fuse_modules(backbone)
    assert modules
    seen: list[tuple[nn.Module, list[torch.Tensor], list[torch.Tensor]]] = []
    # the modules work in place on their input lists (and the next module on this one's output list): copy both
    handles = [m.register_forward_hook(lambda mod, args, out: seen.append((mod, [a.clone() for a in mod._inputs],
                                                                          [o.clone() for o in out])))
               for m in modules]
    handles += [m.register_forward_pre_hook(lambda mod, args: setattr(mod, "_inputs", [a.clone() for a in args[0]]))
                for m in modules]
    with torch.no_grad():
        backbone(torch.randn(2, 3, 64, 96))
        checked = 0
        for module, inputs, out in seen:
            xs = [branch(x) for branch, x in zip(module.branches, inputs)]
            for i, layers in enumerate(module.fuse_layers):
                y = 0
                for j, layer in enumerate(layers):
                    if j > i:
                        conv_bn = nn.Sequential(*list(layer.children())[:2])
                        y = y + F.interpolate(conv_bn(xs[j]), size=xs[i].shape[-2:], mode="bilinear",
                                              align_corners=False)
                    else:
                        y = y + layer(xs[j])
                torch.testing.assert_close(out[i], F.relu(y), rtol=1e-5, atol=1e-5)
                checked += 1
    for h in handles:
        h.remove()
    assert checked >= 6


def test_forms_differ_only_in_upsampling_and_momentum() -> None:
    torch.manual_seed(0)
    ref = Backbone("hrnet_w18_small_v2")
    native = Backbone("hrnet_w18_small_v2", hrnet_form="timm")
    assert ref.state_dict().keys() == native.state_dict().keys()
    native.load_state_dict(ref.state_dict())  # the same weights load into both
    assert {m.momentum for m in ref.modules() if isinstance(m, nn.BatchNorm2d)} == {0.01}
    assert {m.momentum for m in native.modules() if isinstance(m, nn.BatchNorm2d)} == {0.1}
    assert {m.mode for m in ref.modules() if isinstance(m, nn.Upsample)} == {"bilinear"}
    assert {m.mode for m in native.modules() if isinstance(m, nn.Upsample)} == {"nearest"}
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        a, b = ref.eval()(x), native.eval()(x)
    assert not torch.allclose(a[0], b[0])  # the forms compute different features from the same weights
    model = create_model("mt_baseline", tasks=["semseg"], hrnet_form="timm")
    assert model.backbone.hrnet_form == "timm"
    assert create_model("mt_baseline", tasks=["semseg"]).backbone.hrnet_form == "reference"


def test_bn_momentum_overrides_the_form_in_the_backbone_only() -> None:
    def momenta(module: nn.Module) -> set[float]:
        return {m.momentum for m in module.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)}

    assert momenta(Backbone("hrnet_w18_small_v2")) == {0.01}
    assert momenta(Backbone("hrnet_w18_small_v2", bn_momentum=0.1)) == {0.1}
    model = create_model("mt_baseline", tasks=["semseg"], dataset="nyud", bn_momentum=0.05)
    assert momenta(model.backbone) == {0.05}
    assert momenta(model.decoder if hasattr(model, "decoder") else model.heads) <= {0.1}  # heads keep torch's
    with pytest.raises(ValueError, match="bn_momentum"):
        Backbone("hrnet_w18_small_v2", bn_momentum=0.0)
