"""Loading a local backbone weights file (``pretrained_file``) into a timm ``features_only`` body, strictly.

timm's own route for a local file (``pretrained_cfg_overlay=dict(file=...)``) loads into the unwrapped model with
``strict=False`` and only logs what it skipped, so a file of another model, a file with a prefix
(``backbone.body.`` of a whole medusa-mtl model) or one written from a ``features_only`` body whose wrapper
renames modules (ConvNeXt's ``stages.0`` -> ``stages_0``, what ``medusa pretrain`` writes) left the backbone
partly or wholly random without a word. Here the file is read, matched to the body's names and every tensor of
the body must come from it, with the file's shape (but for what timm's own loading adapts too: the first conv of
RGB weights for other ``in_chans``, a ViT's position embedding for another ``img_size``); anything else is an
error naming the file.

Names match exactly or up to ``_`` / ``.`` (the wrapper's flattening), after the longest common prefix of the
file's keys that gives the most matches is dropped (``""``, ``backbone.body.``, ``net.backbone.body.``,
``module.``, ...). A checkpoint dict holding the weights under ``state_dict`` / ``model`` is unwrapped. Keys the
body does not use are allowed when they belong to the unwrapped timm model (its classifier, HRNet's
``incre_modules``, EfficientNet's ``conv_head``, ...): a file of the whole network is the usual form. Keys of
neither (another depth of the same family) are refused.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path

import torch
import torch.nn as nn

from ..errors import ConfigError

__all__ = ["read_weights_file", "load_backbone_weights"]

_WRAPPER_KEYS = ("state_dict", "model", "module", "net")
_OPTIONAL = ("num_batches_tracked",)  # older files (torchvision conversions) lack the BN step counters


def read_weights_file(path: str | Path) -> dict[str, torch.Tensor]:
    """The tensors of a ``.pth`` / ``.pt`` / ``.bin`` (``torch.load(weights_only=True)``) or ``.safetensors``
    file: ``{name: tensor}``, unwrapped from a checkpoint dict (``state_dict`` / ``model`` key)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"backbone weights file not found: {path}")
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            obj: object = load_file(str(path))
        else:
            obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # torch / safetensors raise assorted errors for truncated or foreign files
        raise ConfigError(f"pretrained_file {path}: not a weights file torch.load(weights_only=True) or safetensors "
                          f"can read ({type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''})") from None
    for _ in range(2):  # {"state_dict": {...}} and {"model": {"state_dict": ...}}
        if isinstance(obj, Mapping) and not any(isinstance(v, torch.Tensor) for v in obj.values()):
            inner = next((obj[k] for k in _WRAPPER_KEYS if isinstance(obj.get(k), Mapping)), None)
            if inner is not None:
                obj = inner
    if not isinstance(obj, Mapping):
        raise ConfigError(f"pretrained_file {path}: holds a {type(obj).__name__}, expected a state dict "
                          "{name: tensor} (for example torch.save(model.state_dict(), path))")
    tensors = {str(k): v for k, v in obj.items() if isinstance(v, torch.Tensor)}
    if not tensors:
        raise ConfigError(f"pretrained_file {path}: holds no tensors, expected a state dict {{name: tensor}}")
    return tensors


def _norm(key: str) -> str:
    return key.replace("_", ".")


def _prefixes(keys: Iterable[str], depth: int = 4) -> set[str]:
    out = {""}
    for k in keys:
        parts = k.split(".")
        out.update(".".join(parts[:i]) + "." for i in range(1, min(depth, len(parts) - 1) + 1))
    return out


def load_backbone_weights(body: nn.Module, path: str | Path, full_model_keys: Iterable[str] = ()) -> None:
    """Load ``path`` into ``body`` (a timm ``features_only`` model); every tensor of ``body`` must come from the
    file with its shape. ``full_model_keys``: the state-dict names of the unwrapped timm model, which the file
    may hold beyond what ``body`` uses."""
    path = Path(path)
    found = read_weights_file(path)
    target = body.state_dict()
    # a FeatureGetterNet (ViT, ...) keeps the model under "model."
    t_prefix = "model." if all(k.startswith("model.") for k in target) else ""
    by_norm: dict[str, str] = {}
    for k in target:
        by_norm.setdefault(_norm(k[len(t_prefix):]), k)
    best, best_hits = "", -1
    for prefix in sorted(_prefixes(found)):
        hits = sum(1 for k in found if k.startswith(prefix) and _norm(k[len(prefix):]) in by_norm)
        if hits > best_hits:
            best, best_hits = prefix, hits
    mapped: dict[str, torch.Tensor] = {}
    unused: list[str] = []
    for k, v in found.items():
        if not k.startswith(best):
            continue  # the rest of a whole model (heads, ...)
        name = by_norm.get(_norm(k[len(best):]))
        if name is None:
            unused.append(k[len(best):])
        else:
            mapped[name] = v
    where = f"pretrained_file {path}" + (f" (keys under {best!r})" if best else "")
    missing = [k for k in target if k not in mapped and not k.endswith(_OPTIONAL)]
    if missing:
        raise ConfigError(
            f"{where}: {len(missing)} of the backbone's {len(target)} tensors are not in it, e.g. "
            f"{', '.join(missing[:4])}; it holds {len(found)} tensors, e.g. {', '.join(list(found)[:3])}. "
            "Expected the weights of this timm backbone (torch.save(timm.create_model(name).state_dict(), path), "
            "or a file written by `medusa pretrain` for it)")
    _adapt_input_conv(body, mapped, target)
    _resample_pos_embed(body, mapped, target)
    wrong = [f"{k} {tuple(mapped[k].shape)} (backbone: {tuple(target[k].shape)})" for k in mapped
             if mapped[k].shape != target[k].shape]
    if wrong:
        raise ConfigError(f"{where}: {len(wrong)} tensors have another shape than the backbone's, e.g. "
                          f"{'; '.join(wrong[:3])}: weights of another model or configuration")
    allowed = {_norm(k) for k in full_model_keys}
    foreign = [k for k in unused if _norm(k) not in allowed]
    if foreign:
        raise ConfigError(f"{where}: {len(foreign)} tensors belong to no part of this backbone, e.g. "
                          f"{', '.join(foreign[:4])}: the weights of another model (another depth of the family?)")
    result = body.load_state_dict(mapped, strict=False)
    assert not result.unexpected_keys, result.unexpected_keys


def _adapt_input_conv(body: nn.Module, mapped: dict[str, torch.Tensor], target: Mapping[str, torch.Tensor]) -> None:
    """RGB weights for a backbone built with other input channels (``in_chans=1``, 4, ...): the first conv's
    weights are adapted as timm adapts them when it loads weights (``timm.models.adapt_input_conv``)."""
    first = (getattr(body, "pretrained_cfg", None) or {}).get("first_conv")
    if not first:
        return
    names = [first] if isinstance(first, str) else list(first)
    wanted = {_norm(n + ".weight") for n in names}
    for key in list(mapped):
        short = key[len("model."):] if key.startswith("model.") else key
        src, dst = mapped[key], target[key]
        if (_norm(short) in wanted and src.ndim == 4 and dst.ndim == 4 and src.shape[0] == dst.shape[0]
                and src.shape[2:] == dst.shape[2:] and src.shape[1] != dst.shape[1]):
            import timm

            mapped[key] = timm.models.adapt_input_conv(int(dst.shape[1]), src)


def _resample_pos_embed(body: nn.Module, mapped: dict[str, torch.Tensor], target: Mapping[str, torch.Tensor]) -> None:
    """A ViT built for another image size than its weights' (``img_size=(64, 96)``): the position embedding is
    resampled to the new patch grid, as timm's own weight loading does."""
    model = getattr(body, "model", body)
    grid = getattr(getattr(model, "patch_embed", None), "grid_size", None)
    if grid is None:
        return
    prefix = 0 if getattr(model, "no_embed_class", False) else int(getattr(model, "num_prefix_tokens", 1))
    for key in list(mapped):
        src, dst = mapped[key], target[key]
        if key.endswith("pos_embed") and src.ndim == 3 and dst.ndim == 3 and src.shape != dst.shape:
            from timm.layers import resample_abs_pos_embed

            mapped[key] = resample_abs_pos_embed(src, list(grid), num_prefix_tokens=prefix)
