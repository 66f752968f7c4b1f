"""Building blocks shared by the architectures (SPEC §4 layer conventions), in their literal form.

3x3 convs in BasicBlock, Bottleneck and SABlock have no bias; shortcut projections are Conv1x1 (no bias) + BN;
every 1x1 conv that outputs a task prediction has a bias. HRHead's fast form (same outputs up to float
rounding) is in :mod:`medusa_mtl.models.fused`, used while ``HRHead.fused`` is on.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn as nn

from ..resize import is_channels_last, upsample_output, upsample_to  # noqa: F401  (the models import them from here)
from .fused import MultiScaleConv1x1, hrhead_forward


def conv3x3(cin: int, cout: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(cin, cout, 3, stride=stride, padding=1, bias=False)


def projection(cin: int, cout: int, stride: int = 1) -> nn.Sequential:
    """Shortcut projection: Conv1x1 (no bias) + BN."""
    return nn.Sequential(nn.Conv2d(cin, cout, 1, stride=stride, bias=False), nn.BatchNorm2d(cout))


class BasicBlock(nn.Module):
    """ResNet BasicBlock (torchvision design), projection on the shortcut when channels change."""

    def __init__(self, cin: int, cout: int | None = None) -> None:
        super().__init__()
        cout = cin if cout is None else cout
        self.conv1 = conv3x3(cin, cout)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = conv3x3(cout, cout)
        self.bn2 = nn.BatchNorm2d(cout)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = projection(cin, cout) if cin != cout else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + identity)


class Bottleneck(nn.Module):
    """ResNet Bottleneck (expansion 4): 1x1 -> 3x3 -> 1x1, projection when in != planes*4."""

    expansion = 4

    def __init__(self, cin: int, planes: int | None = None) -> None:
        super().__init__()
        planes = cin // self.expansion if planes is None else planes
        cout = planes * self.expansion
        self.conv1 = nn.Conv2d(cin, planes, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = conv3x3(planes, planes)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = nn.Conv2d(planes, cout, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(cout)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = projection(cin, cout) if cin != cout else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return self.relu(out + identity)


class SABlock(nn.Module):
    """Spatial attention: ``Conv3x3(x) * sigmoid(Conv3x3(x))`` (no biases)."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv = conv3x3(channels, channels)
        self.attention = conv3x3(channels, channels)

    def mask(self, x: torch.Tensor) -> torch.Tensor:
        """The sigmoid attention map (for visualisation)."""
        return torch.sigmoid(self.attention(x))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x) * torch.sigmoid(self.attention(x))


class SEBlock(nn.Module):
    """Squeeze-Excitation: GAP -> Linear(C, C/r) -> ReLU -> Linear(C/r, C) -> sigmoid, scales the input."""

    def __init__(self, channels: int, reduction: int = 16) -> None:
        super().__init__()
        hidden = max(channels // reduction, 1)
        self.fc = nn.Sequential(
            nn.Linear(channels, hidden), nn.ReLU(inplace=True), nn.Linear(hidden, channels), nn.Sigmoid()
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        w = self.fc(x.mean(dim=(2, 3)))
        return x * w[:, :, None, None]


def fuse_scales(features: Sequence[torch.Tensor]) -> torch.Tensor:
    """Upsample every scale to the finest and concatenate along channels (HRHead's input)."""
    size = features[0].shape[-2:]
    return torch.cat([upsample_to(f, size) for f in features], dim=1)


class HRHead(nn.Module):
    """HighResolutionHead: concat of all scales -> Conv1x1 (bias) -> BN -> ReLU -> Conv1x1 (bias) -> out.

    Parameters: ``C*C + C + 2C + C*out + out`` with ``C = sum(channels)`` (73,710 + 271*out for HRNet-18).

    ``forward`` below is the literal computation. With ``fused`` on (the default) it runs
    :func:`medusa_mtl.models.fused.hrhead_forward` instead: the first Conv1x1 per scale without building the
    concatenation, the eval-mode BatchNorm folded into it, and row bands for CPU inference (same outputs up to
    float rounding). The first layer is a :class:`~medusa_mtl.models.fused.MultiScaleConv1x1`, an ``nn.Conv2d``
    that also accepts the list of scales, so state dicts are those of the plain layers.
    """

    #: Evaluate the first Conv1x1 per scale (True) or on the literal concatenation (False, the reference).
    fused: bool = True

    def __init__(self, channels: Sequence[int], out_channels: int) -> None:
        super().__init__()
        c = int(sum(channels))
        self.last_layer = nn.Sequential(
            MultiScaleConv1x1(c, c, 1, bias=True), nn.BatchNorm2d(c), nn.ReLU(inplace=True),
            nn.Conv2d(c, out_channels, 1),
        )

    def forward(self, features: Sequence[torch.Tensor], scale_weights: torch.Tensor | None = None) -> torch.Tensor:
        """Logits at scale 0's resolution from the multi-scale ``features`` (fine to coarse).

        ``scale_weights`` (``[B, n_scales, H_0, W_0]``, optional) multiply each upsampled scale before the
        concatenation (Medusa's Multi-Scale Attention).
        """
        if self.fused:
            return hrhead_forward(self, features, scale_weights)
        size = features[0].shape[-2:]
        upsampled = [upsample_to(f, size) for f in features]
        if scale_weights is not None:
            upsampled = [f * scale_weights[:, s : s + 1] for s, f in enumerate(upsampled)]
        return self.last_layer(torch.cat(upsampled, dim=1))
