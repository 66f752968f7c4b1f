"""MTAN (Liu et al.) on a multi-scale backbone with a DeepLab-v3+ style head per task (SPEC §4, [design]).

Per task t, attention modules on each backbone branch (HRNet: the four branches, fine to coarse):

- branch 0: ``A_{t,0} = g_{t,0}(F_0) * F_0``;
- branch s > 0: ``A_{t,s} = g_{t,s}(concat(F_s, r_s(A_{t,s-1}))) * F_s``;

where ``g = Conv1x1 -> BN -> ReLU -> Conv1x1 -> BN -> Sigmoid`` (task-specific, ``C_s`` hidden and output
channels; 1x1 convs without bias as each is followed by BN) and ``r_s`` is a refinement block **shared by all
tasks** ([design]): ``Conv3x3(C_{s-1} -> C_s, stride C_s's stride / C_{s-1}'s stride) -> BN -> ReLU``, which
maps the previous attended features to this branch's resolution and width.

Head per task ([design], DeepLab-v3+ style):

- ASPP on ``A_{t,3}`` (stride 32): a 1x1 branch, three 3x3 dilated branches and an image-pooling branch, each
  ``aspp_channels`` wide (default 128, a moderate width for the 144-channel HRNet-18 input instead of
  DeepLab's 256), concatenated and projected by ``Conv1x1 -> BN -> ReLU``. Default rates (3, 6, 9): DeepLab's
  (6, 12, 18) at output stride 16, halved for stride 32 (on a 480x640 input the map is 15x20). The pooling
  branch is ``GAP -> Conv1x1 (bias) -> ReLU`` without BN, so training also works with batch size 1. No
  dropout.
- Decoder: ``A_{t,0}`` (stride 4) reduced by ``Conv1x1 -> 48 ch -> BN -> ReLU``, concatenated with the ASPP
  output upsampled to stride 4, two ``Conv3x3 -> BN -> ReLU`` (``aspp_channels`` wide), ``Conv1x1 -> out``
  (bias), upsampled to the input.

All supervised tasks get attention + head and are trained; eval mode runs the main tasks only. For universal
feature learning, :meth:`MTAN.freeze_backbone` also freezes the shared refinement blocks (they are shared by
every task, so training them would change the old tasks).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
import torch.nn as nn

from .base import IndependentHeadsModel
from .blocks import upsample_output, upsample_to
from .registry import register_model


def conv_bn_relu(cin: int, cout: int, kernel: int = 1, stride: int = 1, dilation: int = 1) -> nn.Sequential:
    """Conv (no bias) -> BN -> ReLU with 'same' padding."""
    pad = dilation * (kernel - 1) // 2
    return nn.Sequential(
        nn.Conv2d(cin, cout, kernel, stride=stride, padding=pad, dilation=dilation, bias=False),
        nn.BatchNorm2d(cout),
        nn.ReLU(inplace=True),
    )


class AttentionMask(nn.Sequential):
    """MTAN's task attention ``Conv1x1 -> BN -> ReLU -> Conv1x1 -> BN -> Sigmoid`` (cin -> c -> c)."""

    def __init__(self, cin: int, channels: int) -> None:
        super().__init__(
            nn.Conv2d(cin, channels, 1, bias=False),
            nn.BatchNorm2d(channels),
            nn.ReLU(inplace=True),
            nn.Conv2d(channels, channels, 1, bias=False),
            nn.BatchNorm2d(channels),
            nn.Sigmoid(),
        )


class ASPP(nn.Module):
    """Atrous Spatial Pyramid Pooling: 1x1, three dilated 3x3, image pooling; concat -> 1x1 -> BN -> ReLU."""

    def __init__(self, cin: int, channels: int, rates: Sequence[int] = (3, 6, 9)) -> None:
        super().__init__()
        self.branches = nn.ModuleList(
            [conv_bn_relu(cin, channels, 1)] + [conv_bn_relu(cin, channels, 3, dilation=r) for r in rates]
        )
        self.pool = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Conv2d(cin, channels, 1, bias=True), nn.ReLU())
        self.project = conv_bn_relu((len(rates) + 2) * channels, channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        outs = [branch(x) for branch in self.branches]
        outs.append(self.pool(x).expand(-1, -1, *x.shape[-2:]))
        return self.project(torch.cat(outs, dim=1))


class DeepLabV3PlusHead(nn.Module):
    """ASPP on the coarse features + a decoder fusing the fine features; logits at the fine resolution."""

    def __init__(self, fine_channels: int, coarse_channels: int, out_channels: int, aspp_channels: int = 128,
                 aspp_rates: Sequence[int] = (3, 6, 9), low_level_channels: int = 48) -> None:
        super().__init__()
        self.aspp = ASPP(coarse_channels, aspp_channels, aspp_rates)
        self.reduce = conv_bn_relu(fine_channels, low_level_channels, 1)
        self.decoder = nn.Sequential(
            conv_bn_relu(aspp_channels + low_level_channels, aspp_channels, 3),
            conv_bn_relu(aspp_channels, aspp_channels, 3),
        )
        self.classifier = nn.Conv2d(aspp_channels, out_channels, 1, bias=True)

    def forward(self, fine: torch.Tensor, coarse: torch.Tensor) -> torch.Tensor:
        context = upsample_to(self.aspp(coarse), fine.shape[-2:])
        x = torch.cat([context, self.reduce(fine)], dim=1)
        return self.classifier(self.decoder(x))


class MTANTaskBranch(nn.Module):
    """Everything one task owns in MTAN: an attention mask per branch and a DeepLab-v3+ style head."""

    def __init__(self, channels: Sequence[int], out_channels: int, aspp_channels: int = 128,
                 aspp_rates: Sequence[int] = (3, 6, 9), low_level_channels: int = 48) -> None:
        super().__init__()
        self.masks = nn.ModuleList(
            [AttentionMask(c if s == 0 else 2 * c, c) for s, c in enumerate(channels)]
        )
        self.head = DeepLabV3PlusHead(channels[0], channels[-1], out_channels, aspp_channels, aspp_rates,
                                      low_level_channels)

    def attend(self, features: Sequence[torch.Tensor], refine: Sequence[nn.Module]) -> list[torch.Tensor]:
        """Attended features per branch; ``refine[s-1]`` maps branch s-1's attended features to branch s."""
        attended: list[torch.Tensor] = []
        for s, f in enumerate(features):
            if s == 0:
                inp = f
            else:
                inp = torch.cat([f, upsample_to(refine[s - 1](attended[-1]), f.shape[-2:])], dim=1)
            attended.append(self.masks[s](inp) * f)
        return attended

    def forward(self, features: Sequence[torch.Tensor], refine: Sequence[nn.Module]) -> torch.Tensor:
        attended = self.attend(features, refine)
        return self.head(attended[0], attended[-1])


class MTAN(IndependentHeadsModel):
    """Multi-Task Attention Network on a shared multi-scale backbone (see the module docstring).

    Args:
        tasks: main tasks (predicted in eval mode).
        aux_tasks: all supervised tasks; each gets attention modules + a head, trained in train mode.
        dataset: decides the output channels.
        backbone: a timm model name (``features_only``), four scales.
        aspp_channels: width of the ASPP branches and the decoder (default 128).
        aspp_rates: dilation rates of the three 3x3 ASPP branches (default (3, 6, 9), for stride 32).
        low_level_channels: width of the reduced fine features in the decoder (default 48).
        **backbone_kwargs: passed to the backbone (``pretrained``, ``pretrained_file``).
    """

    def __init__(self, tasks: list[str], aux_tasks: list[str], dataset: str,
                 backbone: str = "hrnet_w18_small_v2", aspp_channels: int = 128,
                 aspp_rates: Sequence[int] = (3, 6, 9), low_level_channels: int = 48,
                 **backbone_kwargs: Any) -> None:
        super().__init__(tasks, aux_tasks, dataset, backbone, **backbone_kwargs)
        if len(aspp_rates) != 3:
            raise ValueError(f"aspp_rates must give three dilation rates, got {tuple(aspp_rates)}")
        self.aspp_channels = int(aspp_channels)
        self.aspp_rates = tuple(int(r) for r in aspp_rates)
        self.low_level_channels = int(low_level_channels)
        ch, strides = self.backbone_channels, list(self.backbone.strides)
        self.refine = nn.ModuleList(
            [conv_bn_relu(ch[s - 1], ch[s], 3, stride=max(1, strides[s] // strides[s - 1]))
             for s in range(1, len(ch))]
        )
        self.heads = nn.ModuleDict({t: self.build_head(t, self.out_channels(t)) for t in self.aux_tasks})

    def build_head(self, task: str, out_channels: int) -> MTANTaskBranch:
        return MTANTaskBranch(self.backbone_channels, out_channels, self.aspp_channels, self.aspp_rates,
                              self.low_level_channels)

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        size = self.input_size(x)
        features = self.backbone(x)
        return {t: upsample_output(self.heads[t](features, self.refine), size) for t in self.head_tasks()}

    def freeze_backbone(self) -> None:
        """Freeze the backbone and the shared refinement blocks (no gradients, eval-mode BatchNorm)."""
        super().freeze_backbone()
        for p in self.refine.parameters():
            p.requires_grad_(False)
            p.grad = None
        self.refine.eval()
        self._refine_frozen = True

    def train(self, mode: bool = True) -> MTAN:
        super().train(mode)
        # the refinement blocks frozen by freeze_backbone, not those of a decoder that only shares a frozen backbone
        # (a UFL decoder's own, which train)
        if getattr(self, "_refine_frozen", False):
            self.refine.eval()
        return self


@register_model("mtan")
def mtan(tasks: list[str], aux_tasks: list[str], dataset: str, backbone: str, **kw: Any) -> MTAN:
    return MTAN(tasks, aux_tasks, dataset, backbone, **kw)
