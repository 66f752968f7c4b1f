"""``medusa convert``: a checkpoint written by the reference implementation -> a checkpoint of this project.

The result loads like any checkpoint of ours (``medusa evaluate``, ``medusa predict``, ``medusa export``,
``Predictor.from_checkpoint``, ``medusa ufl --source-ckpt``). Names, the SABlock layout and MTI-Net's task order
are mapped by :mod:`medusa_mtl.models.reference`; what cannot be mapped is refused with the reason.

Example::

    medusa convert --reference-ckpt best_model.pth.tar --model mtinet --dataset nyud \\
        --tasks semseg,depth --aux-tasks semseg,depth,normals,edge --out mtinet_nyud_ne.ckpt
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from ..errors import ConfigError
from ..models.reference import CONVERTIBLE, from_reference, not_convertible_reason
from ..options import output_file
from .checkpoints import atomic_torch_save, load_checkpoint

__all__ = ["convert_reference_checkpoint"]


def convert_reference_checkpoint(path: str | Path, model: str, dataset: str, tasks: list[str] | str,
                                 aux_tasks: list[str] | str | None, out: str | Path,
                                 backbone: str = "hrnet_w18_small_v2") -> Path:
    """Map the reference checkpoint at ``path`` onto our ``model`` and write a checkpoint of ours to ``out``."""
    from .training import MultiTaskModule

    if model not in CONVERTIBLE:
        raise ConfigError(f"--model {model!r}: reference checkpoints can be mapped for {', '.join(CONVERTIBLE)}")
    source = load_checkpoint(path, require_state_dict=False)
    module = MultiTaskModule(arch=model, tasks=tasks, aux_tasks=aux_tasks, dataset=dataset, backbone=backbone,
                             model_kwargs={"hrnet_form": "reference"})
    try:
        state = from_reference(module.net, source)
    except ConfigError as err:
        raise ConfigError(f"{path}: {err}") from None
    module.net.load_state_dict(state, strict=True)
    record: dict[str, Any] = {
        "state_dict": module.state_dict(),
        "hyper_parameters": dict(module.hparams),
        "converted_from": {"file": str(path), "format": "reference implementation",
                           "epoch": source.get("epoch") if isinstance(source.get("epoch"), int) else None},
    }
    out = Path(out)
    atomic_torch_save(record, out)
    return out


def convertible_model(value: str) -> str:
    """``--model``: a mapped architecture; another zoo model is refused with the reason (not only "invalid
    choice")."""
    if value not in CONVERTIBLE:
        raise argparse.ArgumentTypeError(not_convertible_reason(value))
    return value


def add_convert_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``medusa convert``."""
    parser.add_argument("--reference-ckpt", required=True,
                        help="file saved by the reference code (best_model.pth.tar or checkpoint.pth.tar)")
    parser.add_argument("--model", required=True, type=convertible_model, metavar="{" + ",".join(CONVERTIBLE) + "}",
                        help="its architecture")
    parser.add_argument("--dataset", required=True, help="nyud or pascal")
    parser.add_argument("--tasks", required=True, help="main tasks, comma-separated (e.g. semseg,depth)")
    parser.add_argument("--aux-tasks", default=None,
                        help="all supervised tasks for N+E models (e.g. semseg,depth,normals,edge); default: --tasks")
    parser.add_argument("--out", required=True, type=output_file, help="checkpoint to write")


def run_convert(args: argparse.Namespace) -> int:
    """``medusa convert``."""
    out = convert_reference_checkpoint(args.reference_ckpt, args.model, args.dataset, args.tasks, args.aux_tasks,
                                       args.out)
    print(f"wrote {out} ({args.model}, {args.dataset}, tasks {args.tasks}"
          + (f", aux {args.aux_tasks}" if args.aux_tasks else "") + ")")
    return 0
