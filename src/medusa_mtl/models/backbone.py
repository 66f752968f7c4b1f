"""Backbones through timm ``features_only``: four feature maps from fine (stride 4) to coarse (stride 32).

HRNet is built by default the way the papers' reference implementation builds it (``hrnet_form="reference"``):
its fuse layers upsample the coarser branches **bilinearly** (align_corners=False) and every BatchNorm has
momentum **0.01**. timm's own HRNet upsamples with nearest neighbours and uses momentum 0.1; with the same
weights the two forms' feature maps differ by a few percent of their range. Parameter names and shapes are
identical, so the same weights (ImageNet, the reference's, ours) load into both; ``hrnet_form="timm"`` keeps
timm's form. The reference interpolates to the exact size of the finer branch; the inputs here are multiples
of 32, so every branch is exactly 2^k times finer and ``scale_factor=2^k`` gives that size and the same values.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import timm
import torch
import torch.nn as nn

from ..data.transforms import IMAGENET_MEAN, IMAGENET_STD
from ..errors import DownloadError
from .hub import why_download_cannot_work
from .weights import load_backbone_weights

DEFAULT_BACKBONE = "hrnet_w18_small_v2"
#: ``hrnet_form`` values: the reference implementation's HRNet (bilinear fuse, BN momentum 0.01) or timm's own
HRNET_FORMS = ("reference", "timm")
#: BatchNorm momentum of the reference implementation's HRNet
REFERENCE_BN_MOMENTUM = 0.01


def to_reference_hrnet(model: nn.Module) -> nn.Module:
    """Turn a timm HRNet into the reference form in place: bilinear (align_corners=False) upsampling in the fuse
    layers instead of nearest, BatchNorm momentum 0.01. Weights are untouched. Returns ``model``."""
    for module in model.modules():
        if isinstance(module, nn.Upsample) and module.mode == "nearest":
            module.mode = "bilinear"
            module.align_corners = False
        elif isinstance(module, nn.modules.batchnorm._BatchNorm):
            module.momentum = REFERENCE_BN_MOMENTUM
    return model


class Backbone(nn.Module):
    """A timm backbone returning its last four feature maps (fine to coarse).

    For HRNet the four raw branches are returned (``feature_location=""``; timm's default "incre" would
    return expanded channels). ``channels`` and ``strides`` describe the outputs; the input height and width
    must be multiples of ``max(strides)``.

    Args:
        name: a timm model name.
        pretrained: download ImageNet weights through timm (the only network use; explicit).
        pretrained_file: a local weights file (``.pth``/``.safetensors``), loaded without the network.
        hrnet_form: for HRNet backbones, ``"reference"`` (default: bilinear fuse layers, BN momentum 0.01, as
            the papers' code) or ``"timm"`` (timm's nearest-neighbour fuse, momentum 0.1); see the module doc.
        bn_momentum: overrides the momentum of every BatchNorm of the backbone (``None``: the form's). Short
            schedules need more than the reference's 0.01: after a few hundred steps at a large learning rate its
            running statistics still describe the initial weights, and eval-mode outputs can be far off (the
            standard benchmark profile fine-tunes with 0.1: ``bn_momentum`` in configs/benchmark/standard.yaml).

    ``feature_cache``: a frozen backbone's per-image feature cache, switched on by
    :func:`medusa_mtl.models.feature_cache.set_feature_cache` (``None``, the default: every call computes).
    """

    feature_cache: Any = None

    def __init__(self, name: str = DEFAULT_BACKBONE, pretrained: bool = False,
                 pretrained_file: str | Path | None = None, hrnet_form: str = "reference",
                 bn_momentum: float | None = None, **timm_kwargs: Any) -> None:
        super().__init__()
        if hrnet_form not in HRNET_FORMS:
            raise ValueError(f"hrnet_form={hrnet_form!r}: expected one of {HRNET_FORMS}")
        if bn_momentum is not None and not 0.0 < float(bn_momentum) <= 1.0:
            raise ValueError(f"bn_momentum={bn_momentum!r}: expected a number in (0, 1]")
        # timm also takes a pretrained tag ("resnet18.a1_in1k") and Hugging Face hub names ("hf-hub:...")
        if not (name.startswith(("hf-hub:", "hf_hub:")) or timm.is_model(name.split(".")[0])):
            raise ValueError(f"unknown backbone {name!r}: not a timm model name (see timm.list_models())")
        arch, dot, tag = name.partition(".")
        tagged = timm.list_pretrained(f"{arch}.*") if dot and not name.startswith(("hf-hub:", "hf_hub:")) else None
        if tagged is not None and name not in tagged:
            tags = [t.partition(".")[2] for t in tagged]
            raise ValueError(f"backbone {name!r}: {arch} has no pretrained tag {tag!r}; its tags: "
                             f"{', '.join(tags) if tags else 'none'} (or the name without a tag)")
        kwargs: dict[str, Any] = dict(features_only=True, **timm_kwargs)
        if name.startswith("hrnet"):
            kwargs.setdefault("feature_location", "")
        if pretrained_file is not None:
            if pretrained:
                raise ValueError("give pretrained=True (timm's download) or pretrained_file (a local file), not both")
            if not Path(pretrained_file).is_file():
                raise FileNotFoundError(f"backbone weights file not found: {pretrained_file}")
        reserved = sorted({"features_only", "out_indices"} & set(timm_kwargs))
        if reserved:
            raise ValueError(f"option(s) {reserved}: set by the backbone wrapper itself (the last four feature levels "
                             "are used), not options to pass")
        by_hand = ("Without network access, download the weights elsewhere (e.g. "
                   f"torch.save(timm.create_model({name!r}, pretrained=True).state_dict(), 'w.pth') on a machine "
                   "with it) and pass the file with --model.pretrained_file PATH (pretrained_file=PATH in Python).")
        if pretrained:
            # before the probe below: for an hf-hub: name it downloads the model's config.json, with the same retries
            offline = why_download_cannot_work(name, timm_kwargs)
            if offline is not None:  # known at once; the hub client would retry for ~50 s first
                raise DownloadError(f"could not load timm's pretrained weights for {name!r}: {offline}. {by_hand}")
        try:
            probe = timm.create_model(name, pretrained=False, **kwargs)
        except TypeError as err:
            # reached the backbone: no one took it ("multiple values": a name timm uses internally, e.g. Medusa's
            # head= given to another model, as model_kwargs of an earlier --config stay in a composed config)
            if timm_kwargs and ("unexpected keyword argument" in str(err) or "multiple values" in str(err)):
                raise ValueError(f"unknown option(s) {sorted(timm_kwargs)}: not options of the model, nor of the "
                                 f"timm backbone {name!r} ({err}); with several --config files, model_kwargs of an "
                                 "earlier one are kept unless a later one sets them") from err
            raise ValueError(f"backbone {name!r} cannot be built with features_only=True: {err}") from err
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
                raise DownloadError(f"could not load timm's pretrained weights for {name!r} "
                                   f"({type(err).__name__}: {err}). {by_hand}") from err
            _warn_if_normalised_otherwise(self.body, name, None)
        else:
            self.body = timm.create_model(name, pretrained=False, out_indices=out_indices, **kwargs)
            if pretrained_file is not None:
                # strict, unlike timm's file route (see models/weights.py); the unwrapped model's names say
                # which extra tensors of a whole-network file are expected
                full = {k: v for k, v in kwargs.items() if k not in ("features_only", "feature_location")}
                # names only: built on the meta device and with the random state restored, so that the layers
                # built after the backbone (the heads) get the same initial weights as without a file
                with torch.random.fork_rng(devices=[]), torch.device("meta"):
                    full_keys = list(timm.create_model(name, pretrained=False, **full).state_dict().keys())
                load_backbone_weights(self.body, pretrained_file, full_keys)
                _warn_if_normalised_otherwise(self.body, name, pretrained_file)
        self.name = name
        self.hrnet_form = hrnet_form if name.startswith("hrnet") else None
        if self.hrnet_form == "reference":
            to_reference_hrnet(self.body)
        self.bn_momentum = None if bn_momentum is None else float(bn_momentum)
        if self.bn_momentum is not None:
            for module in self.body.modules():
                if isinstance(module, nn.modules.batchnorm._BatchNorm):
                    module.momentum = self.bn_momentum
        self.feature_info = self.body.feature_info
        # transformer backbones (Swin, ...) give [B, H, W, C] maps; every decoder here reads [B, C, H, W]
        self.nhwc_features = str(getattr(self.body, "output_fmt", "NCHW")).upper().endswith("NHWC")
        self.in_chans = int(timm_kwargs.get("in_chans", 3))
        # ViT / Swin built for one image size assert on any other deep inside timm: said here instead
        patch_embed = getattr(getattr(self.body, "model", self.body), "patch_embed", None)
        self.fixed_size: tuple[int, int] | None = (
            tuple(int(v) for v in patch_embed.img_size)  # type: ignore[assignment]
            if getattr(patch_embed, "strict_img_size", False) and getattr(patch_embed, "img_size", None) else None)
        self.channels: list[int] = list(self.feature_info.channels())
        self.strides: list[int] = list(self.feature_info.reduction())

    @property
    def stride(self) -> int:
        """The coarsest stride: input sides must be multiples of it."""
        return max(self.strides)

    def check_input(self, x: torch.Tensor) -> None:
        """Raise a clear error when the input is not a float ``[B, C, H, W]`` batch with sides multiples of
        :attr:`stride`."""
        if not isinstance(x, torch.Tensor) or x.dim() != 4:
            shape = list(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
            raise ValueError(f"expected an image batch [B, {self.in_chans}, H, W], got {shape}")
        if not x.is_floating_point():
            raise ValueError(f"expected a float image batch (normalised as in training), got dtype {x.dtype}: convert "
                             "it (e.g. x.float() / 255, then the ImageNet mean/std) or use medusa_mtl.Predictor, which "
                             "takes images as they are")
        weight = next(self.body.parameters(), None)
        if (weight is not None and x.dtype != weight.dtype and not torch.is_autocast_enabled(x.device.type)
                and not torch.jit.is_tracing()):
            raise ValueError(f"the input is {x.dtype} but the model's weights are {weight.dtype}: convert one of them "
                             f"(e.g. x.to({weight.dtype}))")
        if x.shape[1] != self.in_chans:
            hint = ("; it looks like [B, H, W, C]: x.permute(0, 3, 1, 2)" if x.shape[-1] == self.in_chans else "")
            raise ValueError(f"expected an image batch [B, {self.in_chans}, H, W], got {list(x.shape)}{hint}")
        h, w = x.shape[-2:]
        if self.fixed_size is not None and (h, w) != self.fixed_size:
            fh, fw = self.fixed_size
            raise ValueError(
                f"input size {h}x{w}: backbone {self.name} is built for {fh}x{fw} inputs only (a transformer with "
                f"a fixed patch grid); build it for this size (backbone option img_size=[{h}, {w}], e.g. "
                f"--model.model_kwargs '{{img_size: [{h}, {w}]}}') or with dynamic_img_size=True (ViT)"
            )
        if h % self.stride or w % self.stride:
            raise ValueError(
                f"input size {h}x{w} is not a multiple of {self.stride} (backbone {self.name}); "
                f"resize or crop to e.g. {h // self.stride * self.stride or self.stride}x"
                f"{w // self.stride * self.stride or self.stride}"
            )

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        self.check_input(x)
        cache = self.feature_cache
        if cache is not None and not self.training:  # a frozen backbone's features per image (models/feature_cache.py)
            return cache(self._features, x, self)
        return self._features(x)

    def _features(self, x: torch.Tensor) -> list[torch.Tensor]:
        feats = list(self.body(x))
        if self.nhwc_features:
            feats = [f.permute(0, 3, 1, 2) for f in feats]
        return feats


def _warn_if_normalised_otherwise(body: nn.Module, name: str, pretrained_file: str | Path | None) -> None:
    """Warn when timm's weights for ``name`` expect other image statistics than the ImageNet mean/std every
    image is normalised with here (data/transforms.py, export, pretraining): e.g. ViT's 0.5 / 0.5."""
    cfg = getattr(body, "pretrained_cfg", None) or {}
    mean, std = cfg.get("mean"), cfg.get("std")
    if mean is None or std is None:
        return
    if all(abs(float(a) - b) < 1e-3 for a, b in zip((*mean, *std), (*IMAGENET_MEAN, *IMAGENET_STD), strict=False)):
        return
    source = f"the weights in {pretrained_file}" if pretrained_file is not None else "timm's pretrained weights"
    warnings.warn(
        f"backbone {name!r}: timm's configuration for it normalises images with mean {tuple(mean)} / std "
        f"{tuple(std)}, but medusa-mtl normalises every image with ImageNet's mean {IMAGENET_MEAN} / std "
        f"{IMAGENET_STD}. If {source} were trained with timm's normalisation, they see shifted inputs: "
        "fine-tuning adapts, a frozen backbone (UFL) does not. Weights from `medusa pretrain` use ImageNet's "
        "and are unaffected.",
        UserWarning, stacklevel=3)


def build_backbone(backbone: str | nn.Module = DEFAULT_BACKBONE, **kwargs: Any) -> Backbone:
    """A :class:`Backbone` from a timm name (or pass one through)."""
    if isinstance(backbone, nn.Module):
        if not isinstance(getattr(backbone, "channels", None), list | tuple):
            raise TypeError(
                f"backbone={type(backbone).__name__} module: pass a timm model name (backbone='resnet18') or a "
                "medusa_mtl.models.Backbone (Backbone('resnet18', pretrained_file=...)), which gives the decoders "
                "the four feature maps and their channels; a plain timm module does not"
            )
        if kwargs:
            # they configure how a backbone is built; this one is built already
            raise ValueError(f"backbone options {sorted(kwargs)} cannot apply to a backbone module passed in: "
                             "give them to Backbone(...) when building it, or pass the timm name instead")
        return backbone  # type: ignore[return-value]
    return Backbone(backbone, **kwargs)
