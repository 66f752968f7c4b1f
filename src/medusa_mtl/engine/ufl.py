"""Universal feature learning (UFL): freeze a trained backbone, train heads for tasks it never saw.

The source model is kept whole and frozen (backbone, heads, BatchNorm statistics), so its own tasks keep
giving identical predictions. New tasks get a fresh decoder *of the same architecture* built on the very same
backbone module (shared, not copied): for Medusa that is one independent Medusa head per new task (exactly
what ``Medusa.add_task`` attaches); for MTI-Net/PAD-Net/MTAN/MT baseline it is that method's decoder for the
new tasks. Only the new decoder's parameters are trained (SPEC §7).
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ..data.sizes import parse_network_size
from ..models.ufl import UFLModel
from ..options import nonnegative_float, output_dir, positive_float, positive_int
from ..tasks import parse_tasks

__all__ = ["UFLModel", "ufl_module_from_checkpoint", "load_ufl_config", "add_ufl_arguments", "run_ufl"]


def _source_tasks_on(hp: dict[str, Any], name: str) -> list[str]:
    """The tasks the source model (every step of a UFL chain) has heads for on dataset ``name``."""
    from .training import ufl_steps

    used = list(hp.get("aux_tasks") or hp.get("tasks") or []) if hp.get("dataset") == name else []
    for step in ufl_steps(hp.get("ufl")):
        if step.get("dataset") == name:
            used += list(step.get("new_tasks") or [])
    return list(dict.fromkeys(used))


def _check_source_declaration(hp: dict[str, Any], name: str, dataset: str | Path) -> None:
    """Refuse a dataset.yaml that reuses the ``name`` of a dataset the source was trained on but declares the
    source's tasks otherwise: it replaces the checkpoint's declaration, so the frozen heads could not be rebuilt
    (a size mismatch deep in ``load_state_dict``, or an unknown task), or would name their classes otherwise (the
    same number of classes renamed or reordered). The same declaration plus new tasks is fine: one more step on
    the same dataset."""
    from ..data.datasets import get_dataset_info
    from ..data.generic import spec_from_dict
    from ..errors import ConfigError

    recorded = [d for d in hp.get("dataset_specs") or [] if d.get("name") == name]
    current = get_dataset_info(name).spec
    if not recorded or current is None:
        return
    before = {t.name: t for t in spec_from_dict(dict(recorded[0])).tasks}
    now = {t.name: t for t in current.tasks}
    where = current.path or dataset
    for task in _source_tasks_on(hp, name):
        old, new = before.get(task), now.get(task)
        if old is None:
            continue
        if new is None:
            what = "does not declare it"
        elif (old.kind, old.channels) != (new.kind, new.channels):
            what = (f"declares {len(new.classes)} classes against {len(old.classes)}"
                    if new.kind == old.kind == "segmentation"
                    else f"declares kind {new.kind} with {new.channels} channel(s) against {old.kind} with "
                         f"{old.channels}")
        elif old.classes != new.classes:  # as many classes, other names or order: the head's outputs mean others
            what = f"declares its classes {list(new.classes)} against {list(old.classes)}"
        else:
            continue
        raise ConfigError(
            f"--data {where}: its dataset is named {name!r}, as the source checkpoint's, whose model has a head "
            f"for task {task!r}, but the dataset.yaml {what}: give the new dataset another 'name:', or keep the "
            "source's declaration of its tasks"
        )


def ufl_module_from_checkpoint(
    source_ckpt: str | Path, new_tasks: list[str] | str, dataset: str = "pascal", *,
    checkpoint: dict[str, Any] | None = None, **overrides: Any
) -> Any:
    """A :class:`~medusa_mtl.engine.training.MultiTaskModule` for UFL: the source checkpoint's model, frozen, with
    new heads for ``new_tasks`` on ``dataset``. ``overrides`` set optimiser hyper-parameters (lr, ...);
    ``checkpoint``: the source's already loaded contents (then ``source_ckpt`` is not read again).

    The source may itself be a UFL checkpoint: the result predicts the source's tasks (all of them, unchanged)
    and the new ones."""
    from ..data.datasets import register_declaration, resolve_dataset
    from .checkpoints import load_checkpoint
    from .evaluation import load_weights, rebuild_hparams
    from .training import MultiTaskModule, ufl_steps

    ckpt = checkpoint if checkpoint is not None else load_checkpoint(source_ckpt)
    hp = rebuild_hparams(ckpt, source_ckpt)
    described = dict(hp)  # before the UFL step is added: what the source's weights must fit
    hp.update(overrides)
    for decl in hp.get("dataset_specs") or []:  # the source's own declared tasks (a generic dataset, a UFL chain)
        register_declaration(decl)
    # a UFL checkpoint as the source: one more step of the chain (every earlier head stays frozen)
    name = resolve_dataset(dataset)  # a dataset.yaml path: its tasks are declared (and stored in the module)
    _check_source_declaration(hp, name, dataset)
    try:
        tasks = parse_tasks(new_tasks, name)
    except ValueError as e:  # say where the tasks were looked up: a forgotten --data means pascal, the default
        from ..errors import ConfigError
        from ..tasks import list_tasks

        names = [t.strip() for t in new_tasks.split(",")] if isinstance(new_tasks, str) else list(new_tasks or [])
        hint = "" if all(t in list_tasks(name) for t in names) else (
            f"; the tasks of dataset {name}: {', '.join(list_tasks(name))} (--data names the new tasks' dataset: "
            "nyud, pascal, or a dataset.yaml)")
        raise ConfigError(f"--tasks: {e}{hint}") from None
    hp["ufl"] = ufl_steps(hp.get("ufl")) + [{"new_tasks": tasks, "dataset": dataset}]
    module = MultiTaskModule(**hp)
    prefix = "net."
    source_state = {k[len(prefix):]: v for k, v in ckpt["state_dict"].items() if k.startswith(prefix)}
    load_weights(module.net.source, source_state, source_ckpt, described)
    # The decoder's copy of the backbone is the same module, so it now holds the trained weights too.
    return module


def add_ufl_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``medusa ufl``."""
    parser.add_argument("--source-ckpt", required=True, help="checkpoint of the source (e.g. NYUD) model")
    parser.add_argument("--tasks", default=None,
                        help="new tasks, comma-separated (e.g. human_parts,sal); default: the --config's data.tasks")
    parser.add_argument("--dataset", "--data", dest="dataset", default=None,
                        help="dataset of the new tasks: pascal, nyud, or the path of a dataset.yaml (default: the "
                             "--config's data.dataset, else pascal)")
    parser.add_argument("--root", default=None,
                        help="folder of the new tasks' dataset (default: the --config's data.root, else the "
                             "dataset.yaml's folder; data/synthetic/PASCAL_MT for pascal)")
    parser.add_argument("--config", default=None,
                        help="YAML with optional 'data:' and 'trainer:' sections: a path, or medusa:<name> for a "
                             "packaged one (e.g. medusa:tasks/pascal_ufl.yaml)")
    parser.add_argument("--size", default=None, help="network input HxW (multiples of 32)")
    parser.add_argument("--epochs", type=positive_int, default=None, help="training epochs (default: config or 60)")
    parser.add_argument("--batch-size", type=positive_int, default=None)
    parser.add_argument("--lr", type=positive_float, default=None, help="learning rate (default: source's)")
    parser.add_argument("--warmup-epochs", type=nonnegative_float, default=None,
                        help="linear lr warm-up over the first epochs' steps, then the poly schedule (default: "
                             "source's; 0 = none)")
    parser.add_argument("--single-task", default=None,
                        help="JSON of single-task results {task: {metric: value}} for delta-m")
    parser.add_argument("--out", default="runs/ufl", type=output_dir, help="output folder (checkpoints, logs, metrics)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--feature-cache", action="store_true",
                        help="compute the frozen backbone's features once per input image and its mirror image, "
                             "and reuse them in later epochs (same results, checked as it runs); for a flips-only "
                             "train augmentation (data.scales [1.0], data.rotation 0 in the --config), else it "
                             "stays off and says so")
    parser.add_argument("--resume", action="store_true",
                        help="continue the interrupted run in --out from its checkpoints/last.ckpt (same options); "
                             "it ends as the uninterrupted run would")


def load_ufl_config(path: str | Path) -> dict[str, Any]:
    """The ``--config`` YAML of ``medusa ufl``: optional ``data:`` (:class:`MultiTaskDataModule` arguments) and
    ``trainer:`` (``lightning.Trainer`` arguments) sections; anything else is a
    :class:`~medusa_mtl.errors.ConfigError` naming the file and the key. ``medusa:<name>`` names a packaged
    config, as for ``medusa fit --config``."""
    import difflib
    import inspect

    import lightning as L

    from ..errors import ConfigError
    from ..options import load_yaml, resolve_config
    from .training import MultiTaskDataModule

    path = resolve_config(str(path))
    cfg = load_yaml(path) or {}
    if not isinstance(cfg, dict):
        raise ConfigError(f"--config {path}: expected a mapping with 'data:' and/or 'trainer:' sections, "
                          f"got a {type(cfg).__name__}")
    sections = {"data": MultiTaskDataModule.__init__, "trainer": L.Trainer.__init__}
    for key, value in cfg.items():
        if key not in sections:
            raise ConfigError(f"--config {path}: section {key!r} is not used by medusa ufl (it takes 'data:' and "
                              "'trainer:'; the model is the source checkpoint's, the lr is --lr)")
        if value is None:
            continue
        if not isinstance(value, dict):
            raise ConfigError(f"--config {path}: {key!r} must be a mapping of options, got {value!r}")
        accepted = set(inspect.signature(sections[key]).parameters) - {"self"}
        unknown = sorted(set(value) - accepted)
        if unknown:
            close = difflib.get_close_matches(unknown[0], sorted(accepted), n=3)
            hint = f"did you mean {' or '.join(close)}?" if close else f"options: {', '.join(sorted(accepted))}"
            raise ConfigError(f"--config {path}: {key}.{unknown[0]} is not an option of {key} ({hint})")
    return cfg


def _check_resumable(last: Path, module: Any, source_ckpt: str | Path | None = None) -> None:
    """``--resume`` continues the run in ``--out`` only if it trained this very model (same source, same new tasks):
    otherwise a state-dict mismatch would surface deep in Lightning, or (another source checkpoint of the same
    shapes) Lightning would restore the first source's frozen weights from ``last.ckpt`` while the report named
    the other one as the source."""
    import torch

    from ..errors import ConfigError
    from .checkpoints import load_checkpoint
    from .training import ufl_steps

    ckpt = load_checkpoint(last)
    theirs = ckpt.get("state_dict", {})
    ours = module.state_dict()
    if {k: tuple(v.shape) for k, v in theirs.items()} != {k: tuple(v.shape) for k, v in ours.items()}:
        before = (ufl_steps((ckpt.get("hyper_parameters") or {}).get("ufl")) or [{}])[-1].get("new_tasks")
        now = ufl_steps(module.hparams.get("ufl"))[-1]["new_tasks"]
        raise ConfigError(f"--resume: {last} was trained with other options (new tasks {before}, now {now}; or "
                          "another --source-ckpt): resume with the same options, or choose another --out")
    # the frozen source never changes during a run: its weights in last.ckpt are the --source-ckpt's
    frozen = [k for k in ours if k.startswith("net.source.")]
    if any(not torch.equal(theirs[k].to(ours[k].device), ours[k]) for k in frozen):
        raise ConfigError(f"--resume: {last} was trained from another source model than --source-ckpt "
                          f"{source_ckpt or ''} (its frozen weights differ): resume with the run's own "
                          "--source-ckpt, or choose another --out")


def _note_other_size(source: Mapping[str, Any], size: tuple[int, int]) -> None:
    """Say so when the UFL run's input size is not the source checkpoint's training size: the UFL checkpoint
    runs every task of the chain at ``size`` (predict, export), so the source's tasks, whose weights stay as they
    were, give other predictions than the source checkpoint does at its own size. ``source``: the source
    checkpoint's loaded contents."""
    import sys

    from .checkpoints import training_size

    own = training_size(None, source)
    if own is None or tuple(own) == tuple(size):
        return
    a, b = f"{own[0]}x{own[1]}", f"{size[0]}x{size[1]}"
    print(f"note: the source checkpoint was trained at {a}, this UFL run at {b}: the UFL checkpoint runs every task "
          f"at {b}, so the source's tasks (weights unchanged) predict otherwise than the source checkpoint; for its "
          f"predictions exactly, predict at --size {a} (medusa predict / Predictor size=), or run UFL with "
          f"--size {a}", file=sys.stderr)


def run_ufl(args: argparse.Namespace) -> int:
    """``medusa ufl``: train new heads on a frozen backbone, test them, write metrics JSON."""
    import lightning as L

    from ..errors import ConfigError
    from ..provenance import provenance, write_json
    from ..tasks import delta_m
    from .checkpoints import checkpoint_epoch, load_checkpoint
    from .evaluation import evaluate_module, load_module, load_single_task_results
    from .training import MultiTaskDataModule, make_trainer, trainer_device

    out = Path(args.out)
    last = out / "checkpoints" / "last.ckpt"
    if args.resume and not last.is_file():
        raise ConfigError(f"--resume: no interrupted run to continue in --out {out} ({last} does not exist)")
    if not args.resume and last.is_file():  # a second run would overwrite the first one's checkpoints
        raise ConfigError(f"--out {out} already holds a UFL run ({last}): pass --resume to continue it, "
                          "or choose another --out")
    cfg = load_ufl_config(args.config) if args.config else {}
    data_cfg = dict(cfg.get("data") or {})
    trainer_cfg = dict(cfg.get("trainer") or {})
    # an option given on the command line wins over the --config's data section, which wins over the defaults
    dataset = args.dataset or data_cfg.get("dataset") or "pascal"
    tasks = args.tasks if args.tasks is not None else data_cfg.get("tasks")
    if not tasks:
        raise ConfigError("--tasks: the new tasks are needed, comma-separated (e.g. --tasks human_parts,sal), "
                          "or a --config with data.tasks")
    if args.tasks is not None:
        data_cfg.pop("tasks", None)  # the data module loads the model's (new) tasks
    L.seed_everything(args.seed, workers=True)
    overrides = {k: v for k, v in (("lr", args.lr), ("warmup_epochs", args.warmup_epochs)) if v is not None}
    source = load_checkpoint(args.source_ckpt)  # read once: the module and the size note
    module = ufl_module_from_checkpoint(args.source_ckpt, tasks, dataset, checkpoint=source, **overrides)
    if args.resume:
        _check_resumable(last, module, args.source_ckpt)
    # checked now, not after training: a bad file would cost the run its metrics
    single = load_single_task_results(args.single_task, module.main_tasks) if args.single_task else None
    data_cfg["dataset"] = dataset
    if args.root is not None:
        data_cfg["root"] = args.root
    if args.size:
        data_cfg["size"] = parse_network_size(args.size)
    if args.batch_size:
        data_cfg["batch_size"] = args.batch_size
    if "human_parts" in module.main_tasks and len(module.main_tasks) == 1:
        data_cfg.setdefault("drop_images_without_person", True)
    data = MultiTaskDataModule(**data_cfg)
    cache = None
    if args.feature_cache and data.flips_only:
        from ..models.feature_cache import set_feature_cache

        cache = set_feature_cache(module.net, True, mirror=True)
    elif args.feature_cache:
        import sys

        print("note: --feature-cache is off: the train augmentation zooms or rotates, so no training input recurs "
              "(flips only: data.scales [1.0] and data.rotation 0 in the --config)", file=sys.stderr)
    _note_other_size(source, tuple(data.input_size))
    trainer_cfg["max_epochs"] = args.epochs or trainer_cfg.get("max_epochs", 60)
    trainer = make_trainer(default_root_dir=str(out), **trainer_cfg)
    start = time.time()
    trainer.fit(module, data, ckpt_path=str(last) if args.resume else None)
    # Tested: the epoch selected on the held-out split (as `medusa fit` + `medusa evaluate best.ckpt` and the
    # benchmark do), or the last epoch when checkpointing is switched off.
    best_path = getattr(trainer.checkpoint_callback, "best_model_path", "") or ""
    # on the device it trained on (after fit, Lightning has moved the module back to the CPU)
    tested = (load_module(best_path) if best_path else module).to(trainer_device(trainer))
    data.setup("test")
    results = evaluate_module(tested, data.test_dataloader())
    report = {
        "source_ckpt": str(args.source_ckpt),
        "tested_ckpt": best_path or None,
        "tested_epoch": checkpoint_epoch(best_path) if best_path else trainer.current_epoch - 1,  # 0-based
        "tasks": module.main_tasks,
        "dataset": module.eval_dataset,
        "metrics": results,
        "delta_m": delta_m(results, single, module.main_tasks) if single else None,
        "wall_time_s": round(time.time() - start, 1),
        "feature_cache": cache.stats() if cache is not None else None,
        "provenance": provenance(seed=args.seed),
    }
    write_json(out / "ufl_metrics.json", report)
    print(json.dumps({t: {k: v for k, v in r.items() if not isinstance(v, list)} for t, r in results.items()},
                     indent=2))
    print(f"wrote {out / 'ufl_metrics.json'}")
    return 0
