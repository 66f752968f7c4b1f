"""Resizing prediction maps to the label or input size (used by the tasks' postprocessing and the models).

A leaf module: it imports nothing from the package, so both :mod:`medusa_mtl.tasks` and
:mod:`medusa_mtl.models` can use it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F

__all__ = ["upsample_to", "upsample_output", "is_channels_last"]


def upsample_output(x: torch.Tensor, size: Sequence[int]) -> torch.Tensor:
    """Resize a prediction map (logits) to the input or label size: bilinear, align_corners=False.

    The same values as :func:`upsample_to` up to float rounding. On the CPU, a multi-channel map is resized in
    the channels_last memory format and the result stays channels_last: PyTorch's CPU bilinear kernel works in
    that layout and converts NCHW inputs and outputs around it, and converting a full-resolution output back
    costs several times the resize itself (NYUD semseg, 40 x 120x160 -> 480x640, one thread: 25 ms NCHW,
    6.5 ms this way). The layout is not part of the model contract: every consumer indexes by dimension.
    """
    if tuple(x.shape[-2:]) == tuple(size):
        return x
    if x.device.type == "cpu" and x.dim() == 4 and x.shape[1] > 1 and x.is_contiguous() and not torch.jit.is_tracing():
        x = _ChannelsLastInput.apply(x)  # (a TorchScript trace cannot record a Python autograd Function)
    return F.interpolate(x, size=tuple(size), mode="bilinear", align_corners=False)


class _ChannelsLastInput(torch.autograd.Function):
    """``x.contiguous(memory_format=torch.channels_last)`` whose gradient is returned in the default layout.

    With the plain conversion the NHWC gradient would flow on into the network, and elementwise backward ops
    that mix it with saved NCHW tensors run many times slower on the CPU (measured: the MSA/HRHead backward
    passes over 270-channel maps, 1 ms -> ~25 ms each). The gradient here is the small pre-resize map.
    """

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor) -> torch.Tensor:
        return x.contiguous(memory_format=torch.channels_last)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> torch.Tensor:
        return grad.contiguous()


def upsample_to(x: torch.Tensor, size: Sequence[int]) -> torch.Tensor:
    """Bilinear resize (align_corners=False) to ``size``; a no-op when already there."""
    if tuple(x.shape[-2:]) == tuple(size):
        return x
    return F.interpolate(x, size=tuple(size), mode="bilinear", align_corners=False)


def is_channels_last(x: torch.Tensor) -> bool:
    """Whether a 4-D tensor is laid out channels_last (NHWC) and not also plain contiguous (e.g. 1 channel)."""
    return x.dim() == 4 and x.is_contiguous(memory_format=torch.channels_last) and not x.is_contiguous()
