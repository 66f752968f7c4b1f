"""Backbones through timm ``features_only``: four feature maps from fine (stride 4) to coarse (stride 32)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import timm
import torch
import torch.nn as nn

DEFAULT_BACKBONE = "hrnet_w18_small_v2"


class Backbone(nn.Module):
    """A timm backbone returning its last four feature maps (fine to coarse).

    For HRNet the four raw branches are returned (``feature_location=""``; timm's default "incre" would
    return expanded channels). ``channels`` and ``strides`` describe the outputs; the input height and width
    must be multiples of ``max(strides)``.

    Args:
        name: a timm model name.
        pretrained: download ImageNet weights through timm (the only network use; explicit).
        pretrained_file: a local weights file (``.pth``/``.safetensors``), loaded without the network.
    """

    def __init__(self, name: str = DEFAULT_BACKBONE, pretrained: bool = False,
                 pretrained_file: str | Path | None = None, **timm_kwargs: Any) -> None:
        super().__init__()
        if name not in timm.list_models():
            raise ValueError(f"unknown backbone {name!r}: not a timm model name (see timm.list_models())")
        kwargs: dict[str, Any] = dict(features_only=True, **timm_kwargs)
        if name.startswith("hrnet"):
            kwargs.setdefault("feature_location", "")
        if pretrained_file is not None:
            path = Path(pretrained_file)
            if not path.is_file():
                raise FileNotFoundError(f"backbone weights file not found: {path}")
            kwargs["pretrained_cfg_overlay"] = dict(file=str(path))
            pretrained = True
        try:
            probe = timm.create_model(name, pretrained=False, **kwargs)
        except Exception as err:  # timm raises assorted errors for models without features_only
            raise ValueError(f"backbone {name!r} cannot be built with features_only=True: {err}") from err
        n = len(probe.feature_info)
        if n < 4:
            raise ValueError(f"backbone {name!r} gives {n} feature levels; at least 4 are needed")
        out_indices = tuple(range(n - 4, n)) if not name.startswith("hrnet") else (1, 2, 3, 4)
        if pretrained:
            try:
                self.body = timm.create_model(name, pretrained=True, out_indices=out_indices, **kwargs)
            except Exception as err:
                hint = (
                    f"could not load pretrained weights for {name!r} ({type(err).__name__}: {err}). "
                    "Without network access, download the weights elsewhere and pass them with "
                    "--model.init_args.pretrained_file PATH (or pretrained_file=PATH)."
                )
                raise RuntimeError(hint) from err
        else:
            self.body = timm.create_model(name, pretrained=False, out_indices=out_indices, **kwargs)
        self.name = name
        self.feature_info = self.body.feature_info
        self.channels: list[int] = list(self.feature_info.channels())
        self.strides: list[int] = list(self.feature_info.reduction())

    @property
    def stride(self) -> int:
        """The coarsest stride: input sides must be multiples of it."""
        return max(self.strides)

    def check_input(self, x: torch.Tensor) -> None:
        """Raise a clear error when the input sides are not multiples of :attr:`stride`."""
        h, w = x.shape[-2:]
        if h % self.stride or w % self.stride:
            raise ValueError(
                f"input size {h}x{w} is not a multiple of {self.stride} (backbone {self.name}); "
                f"resize or crop to e.g. {h // self.stride * self.stride or self.stride}x"
                f"{w // self.stride * self.stride or self.stride}"
            )

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        self.check_input(x)
        return list(self.body(x))


def build_backbone(backbone: str | nn.Module = DEFAULT_BACKBONE, **kwargs: Any) -> Backbone:
    """A :class:`Backbone` from a timm name (or pass one through)."""
    if isinstance(backbone, nn.Module):
        return backbone  # type: ignore[return-value]
    return Backbone(backbone, **kwargs)
