"""State dicts of the reference implementation (the MTI-Net authors' multi-task code base) <-> this project's models.

The reference saves ``model.state_dict()`` of a ``DataParallel``-wrapped model (every key starts ``module.``;
``checkpoint.pth.tar`` holds it under ``"model"``). Its names differ from ours, and two facts need more than a
renaming:

- **Task order.** The reference orders tasks semseg, human_parts, sal, normals, edge, depth (fixed in its
  configuration code, whatever the YAML says): NYUD with N+E has auxiliary tasks semseg, normals, edge, depth;
  ours are the main tasks first (semseg, depth, normals, edge). Per-task modules are keyed by name, so only
  MTI-Net's feature-propagation modules (FPM), which concatenate the tasks' features along channels, depend on
  it: their first convolutions' input channels and the attention convolution's output channels come in task
  blocks, which are permuted. The FPM's softmax runs over groups of N adjacent channels; a block permutation
  keeps those groups intact when the per-task width C is a multiple of N (true for every HRNet-18 setting with
  N in 2, 3, 4; for N = 5 the two orders agree on PASCAL). Anything else is refused.
- **SABlock.** The reference declares the gate (``attention.0``, followed by a sigmoid inside an
  ``nn.Sequential``) before the value conv (``conv``); ours are ``attention`` and ``conv``: a renaming.

Mapped architectures: ``mt_baseline``, ``padnet``, ``mtinet`` (HRNet backbones). MTAN (the reference's is built
on a ResNet), Medusa (no reference code exists) and the single-task networks are refused with a message.
Round trips ``to_reference`` -> ``from_reference`` are exact (tests/test_reference_convert.py).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch

from ..errors import ConfigError

__all__ = ["REFERENCE_TASK_ORDER", "reference_task_order", "from_reference", "to_reference", "CONVERTIBLE",
           "not_convertible_reason"]

#: the reference's fixed task order (its configuration code keeps the enabled tasks in this order)
REFERENCE_TASK_ORDER = ("semseg", "human_parts", "sal", "normals", "edge", "depth")
_T = r"(semseg|human_parts|sal|normals|edge|depth)"

# (reference pattern, our replacement), per architecture; applied to keys without the "module." prefix
_RULES: dict[str, list[tuple[str, str]]] = {
    "mt_baseline": [
        (r"backbone\.(.+)", r"backbone.body.\1"),
        (rf"decoders\.{_T}\.(.+)", r"heads.\1.\2"),
    ],
    "padnet": [
        (r"backbone\.0\.(.+)", r"backbone.body.\1"),
        (r"backbone\.1\.last_layer\.([01])\.(.+)", r"fuse.\1.\2"),
        (rf"initial_task_prediction_heads\.layers\.{_T}\.(.+)", r"features.\1.\2"),
        (rf"initial_task_prediction_heads\.conv_out\.{_T}\.(.+)", r"initial.\1.\2"),
        (rf"multi_modal_distillation\.self_attention\.{_T}\.{_T}\.attention\.0\.(.+)",
         r"distillation.attention.\1.\2.attention.\3"),
        (rf"multi_modal_distillation\.self_attention\.{_T}\.{_T}\.conv\.(.+)", r"distillation.attention.\1.\2.conv.\3"),
        (rf"heads\.{_T}\.(.+)", r"heads.\1.\2"),
    ],
    "mtinet": [
        (r"backbone\.(.+)", r"backbone.body.\1"),
        (rf"scale_(\d)\.refinement\.{_T}\.(.+)", r"initial.\1.\2.refinement.\3"),
        (rf"scale_(\d)\.decoders\.{_T}\.(.+)", r"initial.\1.\2.prediction.\3"),
        (r"fpm_scale_(\d)\.non_linear\.([01])\.(.+)", r"fpm.scale\1.compress.\2.\3"),
        (r"fpm_scale_(\d)\.non_linear\.2\.(.+)", r"fpm.scale\1.attention.\2"),
        (r"fpm_scale_(\d)\.dimensionality_reduction\.(.+)", r"fpm.scale\1.expand.\2"),
        (rf"fpm_scale_(\d)\.se\.{_T}\.squeeze\.([02])\.(.+)", r"fpm.scale\1.se.\2.fc.\3.\4"),
        (rf"distillation_scale_(\d)\.self_attention\.{_T}\.{_T}\.attention\.0\.(.+)",
         r"distillation.\1.attention.\2.\3.attention.\4"),
        (rf"distillation_scale_(\d)\.self_attention\.{_T}\.{_T}\.conv\.(.+)",
         r"distillation.\1.attention.\2.\3.conv.\4"),
        (rf"heads\.{_T}\.(.+)", r"heads.\1.\2"),
    ],
}
CONVERTIBLE = tuple(_RULES)

# MTI-Net FPM tensors whose channels come in task blocks: (our key pattern, dimension)
_FPM_TASK_BLOCKS = [
    (r"fpm\.scale\d\.compress\.0\.conv1\.weight", 1),
    (r"fpm\.scale\d\.compress\.0\.downsample\.0\.weight", 1),
    (r"fpm\.scale\d\.attention\.weight", 0),
    (r"fpm\.scale\d\.attention\.bias", 0),
    (r"fpm\.scale\d\.expand\.conv1\.weight", 1),
    (r"fpm\.scale\d\.expand\.downsample\.0\.weight", 1),
]


def reference_task_order(tasks: Sequence[str]) -> list[str]:
    """``tasks`` in the reference's order."""
    return sorted(tasks, key=lambda t: REFERENCE_TASK_ORDER.index(t) if t in REFERENCE_TASK_ORDER else 99)


# Why the other zoo models have no mapping (said by from_reference / to_reference and `medusa convert --model`).
NOT_CONVERTIBLE = {
    "medusa": "Medusa has no reference implementation",
    "mtan": "the reference's MTAN is built on a ResNet backbone, not HRNet",
    "single_task": "convert each task's single-task network as an MT baseline with that one task",
}


def not_convertible_reason(name: str) -> str:
    """Why reference checkpoints of model ``name`` cannot be mapped (a one-line message naming the mapped ones)."""
    return (f"cannot map reference checkpoints for model {name!r}: "
            f"{NOT_CONVERTIBLE.get(str(name), 'not a mapped architecture')} (mapped: {', '.join(CONVERTIBLE)})")


def _arch(model: Any) -> str:
    name = getattr(model, "registry_name", None)
    if name not in _RULES:
        raise ConfigError(not_convertible_reason(str(name)))
    return str(name)


def _strip(sd: Mapping[str, Any]) -> dict[str, torch.Tensor]:
    if "model" in sd and isinstance(sd["model"], Mapping):  # checkpoint.pth.tar
        sd = sd["model"]
    elif "state_dict" in sd and isinstance(sd["state_dict"], Mapping):
        sd = sd["state_dict"]
    out = {}
    for k, v in sd.items():
        if not isinstance(v, torch.Tensor):
            raise ConfigError(f"reference checkpoint: entry {k!r} is a {type(v).__name__}, not a tensor")
        out[k[len("module."):] if k.startswith("module.") else k] = v
    return out


def _block_permute(t: torch.Tensor, dim: int, src: Sequence[str], dst: Sequence[str]) -> torch.Tensor:
    """Reorder the task blocks of ``t`` along ``dim`` from the order ``src`` to ``dst``."""
    n = len(src)
    size = t.shape[dim]
    if size % n:
        raise ConfigError(f"a task-block dimension of {size} channels does not split into {n} tasks")
    blocks = t.split(size // n, dim=dim)
    return torch.cat([blocks[list(src).index(task)] for task in dst], dim=dim)


def _fpm_permutation(model: Any, src: Sequence[str], dst: Sequence[str]) -> Callable[[str, torch.Tensor], torch.Tensor]:
    if list(src) == list(dst):
        return lambda _k, v: v
    n = len(src)
    widths = list(model.backbone.channels)
    if any(c % n for c in widths[1:]):
        raise ConfigError(f"MTI-Net: the reference orders the auxiliary tasks {list(src)}, this model {list(dst)}; "
                          f"with per-task widths {widths[1:]} not multiples of {n} the FPM's softmax groups "
                          "cross task blocks, so no reordering of weights gives the same function; build the "
                          f"model with aux_tasks in the reference's order {list(src)}")

    def apply(key: str, value: torch.Tensor) -> torch.Tensor:
        for pattern, dim in _FPM_TASK_BLOCKS:
            if re.fullmatch(pattern, key):
                return _block_permute(value, dim, src, dst)
        return value

    return apply


def from_reference(model: Any, state_dict: Mapping[str, Any]) -> dict[str, torch.Tensor]:
    """The reference checkpoint's weights as a state dict of ``model`` (strict: every key of ``model`` is filled
    and every reference key used, with the same shapes; a clear error otherwise)."""
    arch = _arch(model)
    rules = [(re.compile(p), r) for p, r in _RULES[arch]]
    ours = model.state_dict()
    permute = _fpm_permutation(model, reference_task_order(model.aux_tasks), model.aux_tasks) if arch == "mtinet" \
        else (lambda _k, v: v)
    out: dict[str, torch.Tensor] = {}
    unmapped = []
    for key, value in _strip(state_dict).items():
        for pattern, repl in rules:
            if pattern.fullmatch(key):
                target = pattern.sub(repl, key)
                break
        else:
            unmapped.append(key)
            continue
        if target not in ours:
            unmapped.append(f"{key} (-> {target}, not in this model: tasks {model.tasks}, aux {model.aux_tasks}?)")
            continue
        value = permute(target, value)
        if tuple(value.shape) != tuple(ours[target].shape):
            raise ConfigError(f"reference key {key}: shape {tuple(value.shape)}, this model's {target} has "
                              f"{tuple(ours[target].shape)} (a different dataset, task set or backbone?)")
        out[target] = value.to(ours[target].dtype)
    missing = sorted(set(ours) - set(out))
    if unmapped or missing:
        raise ConfigError(
            f"reference checkpoint does not match a {arch} with tasks {model.tasks} and aux_tasks {model.aux_tasks}: "
            + (f"{len(unmapped)} reference key(s) not mapped, e.g. {unmapped[:3]}; " if unmapped else "")
            + (f"{len(missing)} key(s) of this model not filled, e.g. {missing[:3]}" if missing else ""))
    return out


def to_reference(model: Any) -> dict[str, torch.Tensor]:
    """``model``'s weights in the reference's naming (with the ``module.`` prefix of its saved files); the
    inverse of :func:`from_reference`."""
    arch = _arch(model)
    rules = [(re.compile(p), r) for p, r in _INVERSE[arch]]
    permute = _fpm_permutation(model, model.aux_tasks, reference_task_order(model.aux_tasks)) if arch == "mtinet" \
        else (lambda _k, v: v)
    out: dict[str, torch.Tensor] = {}
    for key, value in model.state_dict().items():
        for pattern, repl in rules:
            if pattern.fullmatch(key):
                out["module." + pattern.sub(repl, key)] = permute(key, value).clone()
                break
        else:
            raise ConfigError(f"{arch}: key {key} has no reference name")
    return out


# our key pattern -> the reference's name (the inverse of _RULES)
_INVERSE: dict[str, list[tuple[str, str]]] = {
    "mt_baseline": [
        (r"backbone\.body\.(.+)", r"backbone.\1"),
        (rf"heads\.{_T}\.(.+)", r"decoders.\1.\2"),
    ],
    "padnet": [
        (r"backbone\.body\.(.+)", r"backbone.0.\1"),
        (r"fuse\.([01])\.(.+)", r"backbone.1.last_layer.\1.\2"),
        (rf"features\.{_T}\.(.+)", r"initial_task_prediction_heads.layers.\1.\2"),
        (rf"initial\.{_T}\.(.+)", r"initial_task_prediction_heads.conv_out.\1.\2"),
        (rf"distillation\.attention\.{_T}\.{_T}\.attention\.(.+)",
         r"multi_modal_distillation.self_attention.\1.\2.attention.0.\3"),
        (rf"distillation\.attention\.{_T}\.{_T}\.conv\.(.+)", r"multi_modal_distillation.self_attention.\1.\2.conv.\3"),
        (rf"heads\.{_T}\.(.+)", r"heads.\1.\2"),
    ],
    "mtinet": [
        (r"backbone\.body\.(.+)", r"backbone.\1"),
        (rf"initial\.(\d)\.{_T}\.refinement\.(.+)", r"scale_\1.refinement.\2.\3"),
        (rf"initial\.(\d)\.{_T}\.prediction\.(.+)", r"scale_\1.decoders.\2.\3"),
        (r"fpm\.scale(\d)\.compress\.([01])\.(.+)", r"fpm_scale_\1.non_linear.\2.\3"),
        (r"fpm\.scale(\d)\.attention\.(.+)", r"fpm_scale_\1.non_linear.2.\2"),
        (r"fpm\.scale(\d)\.expand\.(.+)", r"fpm_scale_\1.dimensionality_reduction.\2"),
        (rf"fpm\.scale(\d)\.se\.{_T}\.fc\.([02])\.(.+)", r"fpm_scale_\1.se.\2.squeeze.\3.\4"),
        (rf"distillation\.(\d)\.attention\.{_T}\.{_T}\.attention\.(.+)",
         r"distillation_scale_\1.self_attention.\2.\3.attention.0.\4"),
        (rf"distillation\.(\d)\.attention\.{_T}\.{_T}\.conv\.(.+)",
         r"distillation_scale_\1.self_attention.\2.\3.conv.\4"),
        (rf"heads\.{_T}\.(.+)", r"heads.\1.\2"),
    ],
}
