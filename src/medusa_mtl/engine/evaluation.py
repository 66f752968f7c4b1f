"""Evaluation of checkpoints: per-task metrics at the labels' original resolution, and Δm.

``medusa evaluate --ckpt CKPT --data ROOT`` writes a JSON of every metric of every main task and, given
single-task results, Δm (SPEC §2).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import DataLoader
from tqdm.auto import tqdm

from ..errors import ConfigError
from ..options import nonnegative_int, output_file, positive_float, positive_int
from ..tasks import delta_m
from .checkpoints import load_checkpoint


def _check_same_outputs(module: Any, dataset: str, args: argparse.Namespace) -> None:
    """``--dataset`` other than the checkpoint's: only where every task means the same outputs there (a 40-class
    NYUD semseg head scored against 21-class PASCAL labels gave mIoU 0 and a results file without complaint)."""
    from ..data.datasets import resolve_dataset
    from ..tasks import get_task

    own = resolve_dataset(module.eval_dataset)
    for task in module.main_tasks:
        try:
            theirs = get_task(task).channels(dataset)
        except (KeyError, ValueError):
            theirs = None
        mine = get_task(task).channels(own)
        if theirs != mine:
            raise ConfigError(f"--dataset {args.dataset}: {args.ckpt} predicts {task} for {own} ({mine} channels), "
                              f"which {dataset} {'does not have' if theirs is None else f'has with {theirs}'}: "
                              f"evaluate it on a {own} dataset (leave --dataset out)")


def rebuild_hparams(ckpt: dict[str, Any], path: str | Path | None = None) -> dict[str, Any]:
    """A checkpoint's module hyper-parameters without the backbone's initialisation (``pretrained_file``, and
    timm's ``pretrained`` download in ``model_kwargs``): the trained weights are in the checkpoint, and rebuilding
    must neither need the initial file nor touch the network.

    Hyper-parameters that :class:`~medusa_mtl.engine.training.MultiTaskModule` does not take (a checkpoint of
    another LightningModule) are a :class:`~medusa_mtl.errors.CheckpointError` naming ``path``."""
    import inspect

    from ..errors import CheckpointError
    from .training import MultiTaskModule

    hp = dict(ckpt.get("hyper_parameters") or {})
    hp.pop("pretrained_file", None)
    if isinstance(hp.get("model_kwargs"), dict) and "pretrained" in hp["model_kwargs"]:
        hp["model_kwargs"] = {k: v for k, v in hp["model_kwargs"].items() if k != "pretrained"}
    accepted = set(inspect.signature(MultiTaskModule.__init__).parameters) - {"self"}
    foreign = sorted(set(hp) - accepted)
    if foreign:
        raise CheckpointError(
            f"{path or 'the checkpoint'}: its hyper-parameters ({', '.join(map(str, foreign[:4]))}"
            f"{', ...' if len(foreign) > 4 else ''}) are not those of a medusa-mtl model: give a checkpoint "
            "written by medusa fit or medusa ufl (e.g. runs/<run>/checkpoints/best.ckpt)"
        )
    return hp


def load_weights(net: torch.nn.Module, state: Mapping[str, Any], path: str | Path | None,
                 hp: Mapping[str, Any]) -> None:
    """``net.load_state_dict(state, strict=True)``; weights that do not fit the network the checkpoint's
    hyper-parameters describe are one :class:`~medusa_mtl.errors.CheckpointError` naming ``path`` (torch's
    message lists every key, hundreds of lines for a state dict saved without our hyper-parameters)."""
    from ..errors import CheckpointError

    ours = net.state_dict()
    missing = [k for k in ours if k not in state]
    unexpected = [k for k in state if k not in ours]
    reshaped = [k for k in ours if k in state and hasattr(state[k], "shape")
                and tuple(state[k].shape) != tuple(ours[k].shape)]
    if missing or unexpected or reshaped:
        counts = ", ".join(f"{len(keys)} {label} (e.g. {keys[0]})" for keys, label in
                           ((missing, "missing"), (unexpected, "unexpected"), (reshaped, "of another shape"))
                           if keys)
        described = (f"{hp.get('arch', 'medusa')} for {hp.get('tasks', 'semseg,depth')} on "
                     f"{hp.get('dataset', 'nyud')}" + (", the default model: the checkpoint has no "
                                                       "hyper-parameters" if not hp else ""))
        raise CheckpointError(
            f"{path or 'the checkpoint'}: its weights do not fit the model its hyper-parameters describe "
            f"({described}): {counts}; give a checkpoint written by medusa fit or medusa ufl"
        )
    net.load_state_dict(state, strict=True)


def load_module(ckpt_path: str | Path, map_location: str = "cpu", checkpoint: dict[str, Any] | None = None) -> Any:
    """Rebuild a :class:`~medusa_mtl.engine.training.MultiTaskModule` from a checkpoint (``weights_only=True``);
    ``checkpoint``: its already loaded contents (then ``ckpt_path`` is not read again)."""
    from .training import MultiTaskModule

    ckpt = checkpoint if checkpoint is not None else load_checkpoint(ckpt_path, map_location=map_location)
    hp = rebuild_hparams(ckpt, ckpt_path)
    module = MultiTaskModule(**hp)
    load_weights(module, ckpt["state_dict"], ckpt_path, hp)
    module.eval()
    return module


@torch.no_grad()
def evaluate_module(module: Any, loader: DataLoader, progress: bool = False) -> dict[str, dict[str, Any]]:
    """Run ``module`` (eval mode) over ``loader`` and compute its main tasks' metrics."""
    was_training = module.training
    module.eval()
    module._reset_metrics()
    device = next(module.parameters()).device
    for batch in tqdm(loader, desc="evaluate", disable=not progress, leave=False):
        batch = {k: (v.to(device) if isinstance(v, torch.Tensor) else v) for k, v in batch.items()}
        module.evaluate_batch(batch)
    results = module.compute_metrics()
    module.train(was_training)
    return results


def load_single_task_results(path: str | Path, tasks: Sequence[str] | None = None) -> dict[str, dict[str, float]]:
    """Read single-task reference results: ``{task: {metric: value}}`` or an evaluate JSON (``metrics`` key).

    With ``tasks``, check now (before any evaluation) that every task has its Δm metric, non-zero."""
    path = Path(path)
    if path.is_dir():
        found = sorted((*path.glob("*.json"), *path.glob("checkpoints/*.json")))[:3]
        hint = f": e.g. {' or '.join(str(f) for f in found)}" if found else ""
        raise ConfigError(f"{path} is a folder, not a single-task results file: give a JSON file ({{task: {{metric: "
                          f"value}}}}, or the metrics JSON `medusa evaluate` writes){hint}")
    if not path.is_file():
        raise FileNotFoundError(f"single-task results file not found: {path}")
    try:
        data = json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise ConfigError(f"{path}: not valid JSON ({err})") from None
    if isinstance(data, dict) and "metrics" in data:
        data = data["metrics"]
    if not isinstance(data, dict) or not all(isinstance(v, dict) for v in data.values()):
        raise ConfigError(f"{path}: expected {{task: {{metric: value}}}}")
    from ..tasks import get_task

    for name in tasks or []:
        key = get_task(name).dm_metric
        value = data.get(name, {}).get(key)
        if not isinstance(value, int | float) or isinstance(value, bool) or value == 0 or value != value:
            raise ConfigError(f"{path}: needs a non-zero number {name}.{key} (the single-task reference of Δm), "
                              f"found {value!r}")
    return data


def heldout_split_options(ckpt: Mapping[str, Any], path: str | os.PathLike[str]) -> dict[str, Any]:
    """The options that carved the held-out split a checkpoint was selected on (``val_fraction``, ``seed``,
    ``max_eval``), from its ``datamodule_hyper_parameters``: ``--split heldout`` must score that split, not one
    carved with the defaults (which can hold images the run trained on). A checkpoint that records none (e.g.
    written by other code) gets the defaults, with a warning."""
    recorded = ckpt.get("datamodule_hyper_parameters") or {}
    options = {k: recorded[k] for k in ("val_fraction", "seed", "max_eval") if recorded.get(k) is not None}
    if "val_fraction" not in options or "seed" not in options:
        print(f"warning: {path} does not record the held-out split it was selected on; carving it with the "
              "defaults (val_fraction 0.1, seed 0), which may hold images the run trained on", file=sys.stderr)
    else:
        print(f"held-out split of the run: val_fraction {options['val_fraction']}, seed {options['seed']}"
              + (f", first {options['max_eval']} ids" if options.get("max_eval") is not None else "")
              + " (recorded in the checkpoint)")
    return options


def default_metrics_path(ckpt: str | os.PathLike[str], split: str) -> Path:
    """Where ``medusa evaluate`` writes its metrics without ``--out``: next to the checkpoint,
    ``<ckpt>.metrics.json`` for the test split (the name it always had) and ``<ckpt>.<split>.metrics.json`` for
    another split, so scoring the held-out split keeps the test split's file."""
    return Path(ckpt).with_suffix(".metrics.json" if split == "test" else f".{split}.metrics.json")


def add_evaluate_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``medusa evaluate``."""
    parser.add_argument("--ckpt", required=True, help="checkpoint to evaluate")
    parser.add_argument("--data", required=True,
                        help="dataset folder (NYUD_MT / PASCAL_MT layout), or a dataset.yaml / its folder")
    parser.add_argument("--dataset", default=None, help="nyud or pascal (default: the checkpoint's)")
    parser.add_argument("--split", default="test", choices=["test", "heldout"],
                        help="test = the official val split; heldout = the validation split carved from train, "
                             "as the run carved it (its val_fraction and seed, recorded in the checkpoint)")
    parser.add_argument("--size", default=None,
                        help="network input HxW (default: the checkpoint's training size, else the dataset's)")
    parser.add_argument("--batch-size", type=positive_int, default=4)
    parser.add_argument("--num-workers", type=nonnegative_int, default=2)
    parser.add_argument("--max-samples", type=positive_int, default=None)
    parser.add_argument("--single-task", default=None, help="JSON of single-task results for delta-m")
    parser.add_argument("--edge-tolerance", type=positive_float, default=None,
                        help="edge tasks' matching tolerance as a fraction of the image diagonal (default 0.0075, the "
                             "MTI-Net protocol; 0.011 is common in NYUD edge-detection papers)")
    parser.add_argument("--sal-beta2", type=positive_float, default=None,
                        help="beta^2 of the maxF of saliency and declared binary tasks (default 0.3, the "
                             "salient-object literature; maxF1 "
                             "with beta^2 = 1, the reference code's, is always reported too)")
    parser.add_argument("--flip", action=argparse.BooleanOptionalAction, default=None,
                        help="score the mean of the outputs for each image and its mirror image (not SPEC's "
                             "evaluation; twice the cost; default: the checkpoint's test_flip setting)")
    parser.add_argument("--out", default=None, type=output_file,
                        help="metrics JSON path (default: next to the checkpoint, <ckpt>.metrics.json for the "
                             "test split, <ckpt>.heldout.metrics.json for --split heldout)")


def run_evaluate(args: argparse.Namespace) -> int:
    """``medusa evaluate``."""
    from ..data.datasets import resolve_dataset
    from ..data.generic import SPEC_FILE
    from ..data.sizes import parse_network_size
    from ..provenance import provenance, write_json
    from .training import MultiTaskDataModule

    start = time.time()
    from .checkpoints import training_size

    ckpt = load_checkpoint(args.ckpt)
    module = load_module(args.ckpt, checkpoint=ckpt)
    single = load_single_task_results(args.single_task, module.main_tasks) if args.single_task else None
    if module.hparams.get("ufl"):  # predict / export give the whole chain; a score needs that dataset's labels
        print(f"note: {args.ckpt} is a UFL checkpoint: it is scored on the tasks of its last step "
              f"({', '.join(module.main_tasks)}, dataset {module.eval_dataset}); the source's tasks are unchanged "
              "from the source checkpoint: evaluate that one for them", file=sys.stderr)
    # scored at the size it was trained at (as `medusa predict` and `export` run it) unless --size says otherwise
    size = parse_network_size(args.size) or training_size(module, ckpt)
    options = {t: dict(o) for t, o in (module.hparams.get("metric_options") or {}).items()}
    from ..tasks import get_task

    for task in module.main_tasks:  # by kind: declared edge / binary tasks of other names too
        kind = get_task(task).label_kind
        if args.edge_tolerance is not None and kind == "edge":
            options.setdefault(task, {})["max_dist_ratio"] = args.edge_tolerance
        if args.sal_beta2 is not None and kind == "binary":
            options.setdefault(task, {})["beta2"] = args.sal_beta2
    module.hparams["metric_options"] = options
    if args.flip is not None:
        module.hparams["test_flip"] = bool(args.flip)
    dataset = args.dataset or module.eval_dataset
    root = Path(args.data)
    spec = root if root.suffix in (".yaml", ".yml") else root / SPEC_FILE
    if root.suffix in (".yaml", ".yml"):  # a dataset.yaml: the tasks' declaration is the checkpoint's own
        root = root.parent
    if args.dataset is None and spec.is_file():  # --data names a declared dataset: is it the checkpoint's?
        declared = resolve_dataset(spec)
        if declared != resolve_dataset(dataset):
            raise ConfigError(f"--data {args.data}: dataset {declared!r} ({spec}), but {args.ckpt} predicts dataset "
                              f"{dataset!r}: evaluate it on a {dataset!r} folder")
    if args.dataset is not None and resolve_dataset(dataset) != resolve_dataset(module.eval_dataset):
        _check_same_outputs(module, resolve_dataset(dataset), args)
    split_options = heldout_split_options(ckpt, args.ckpt) if args.split == "heldout" else {}
    max_eval = args.max_samples if args.max_samples is not None else split_options.pop("max_eval", None)
    split_options.pop("max_eval", None)
    data = MultiTaskDataModule(
        dataset=dataset, root=str(root), tasks=module.main_tasks, size=size,
        batch_size=args.batch_size, num_workers=args.num_workers, max_eval=max_eval, **split_options,
    )
    data.check_declaration(module)
    data.setup("test" if args.split == "test" else "validate")
    loader = data.test_dataloader() if args.split == "test" else data.val_dataloader()
    results = evaluate_module(module, loader, progress=True)
    dm = delta_m(results, single, module.main_tasks) if single else None
    out = Path(args.out) if args.out else default_metrics_path(args.ckpt, args.split)
    write_json(out, {
        "checkpoint": str(args.ckpt), "dataset": dataset, "data": str(args.data), "split": args.split,
        "model": module.hparams.arch, "tasks": module.main_tasks, "training_seed": ckpt.get("training_seed"),
        "metrics": results, "delta_m": dm, "test_flip": bool(module.hparams.get("test_flip", False)),
        "num_images": len(loader.dataset), "wall_time_s": round(time.time() - start, 2),
        "provenance": provenance(),
    })
    for t, r in results.items():
        scalars = ", ".join(f"{k}={v:.4g}" for k, v in r.items() if isinstance(v, int | float))
        print(f"{t}: {scalars}")
    if dm is not None:
        print(f"delta_m = {dm:+.2f}%")
    print(f"wrote {out}")
    return 0
