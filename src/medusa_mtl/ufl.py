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
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn

from .errors import ConfigError
from .models import create_model
from .tasks import parse_tasks

_BACKBONE_ONLY_KWARGS = ("pretrained", "pretrained_file")


class UFLModel(nn.Module):
    """A frozen source model plus a new decoder for ``new_tasks`` sharing the source's backbone.

    ``forward`` returns the new tasks' outputs; :meth:`source_forward` runs the untouched source model.
    """

    def __init__(self, source: nn.Module, new_tasks: list[str], dataset: str) -> None:
        super().__init__()
        name = getattr(source, "registry_name", None)
        if name is None or getattr(source, "backbone", None) is None:
            raise ConfigError("UFL needs a model of the zoo with a shared backbone")
        if name == "single_task":
            raise ConfigError(
                "UFL from single-task networks is not defined (each task has its own backbone); "
                "the single-task row of the UFL table is the target dataset's own ST networks"
            )
        new_tasks = parse_tasks(new_tasks, dataset)
        clash = [t for t in new_tasks if t in source.aux_tasks and dataset == source.dataset]
        if clash:
            raise ConfigError(f"UFL tasks {clash} are already tasks of the source model")
        self.source = source
        for p in self.source.parameters():
            p.requires_grad_(False)
        self.source.eval()
        kwargs = {k: v for k, v in getattr(source, "init_kwargs", {}).items() if k not in _BACKBONE_ONLY_KWARGS}
        decoder = create_model(name, tasks=new_tasks, dataset=dataset, backbone=source.backbone.name, **kwargs)
        decoder.backbone = source.backbone  # shared module: the frozen source backbone
        decoder._backbone_frozen = True
        self.decoder = decoder
        self.tasks = list(new_tasks)
        self.aux_tasks = list(new_tasks)
        self.dataset = dataset
        self.backbone = source.backbone

    def train(self, mode: bool = True) -> UFLModel:
        self.training = mode
        self.decoder.train(mode)
        self.source.eval()  # the frozen source (and so the shared backbone) never leaves eval mode
        return self

    def forward(self, x: torch.Tensor) -> dict[str, Any]:
        return self.decoder(x)

    @torch.no_grad()
    def source_forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """The source model's own predictions (unchanged by UFL)."""
        return self.source(x)


def ufl_module_from_checkpoint(
    source_ckpt: str | Path, new_tasks: list[str] | str, dataset: str = "pascal", **overrides: Any
) -> Any:
    """A :class:`~medusa_mtl.training.MultiTaskModule` for UFL: the source checkpoint's model, frozen, with
    new heads for ``new_tasks`` on ``dataset``. ``overrides`` set optimiser hyper-parameters (lr, ...)."""
    from .checkpoints import load_checkpoint
    from .training import MultiTaskModule

    ckpt = load_checkpoint(source_ckpt)
    hp = dict(ckpt.get("hyper_parameters") or {})
    if hp.get("ufl"):
        raise ConfigError(f"{source_ckpt} is already a UFL checkpoint; start from the source model's checkpoint")
    hp.pop("pretrained_file", None)
    hp.update(overrides)
    hp["ufl"] = {"new_tasks": parse_tasks(new_tasks, dataset), "dataset": dataset}
    module = MultiTaskModule(**hp)
    prefix = "net."
    source_state = {k[len(prefix):]: v for k, v in ckpt["state_dict"].items() if k.startswith(prefix)}
    module.net.source.load_state_dict(source_state, strict=True)
    # The decoder's copy of the backbone is the same module, so it now holds the trained weights too.
    return module


def add_ufl_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``medusa ufl``."""
    parser.add_argument("--source-ckpt", required=True, help="checkpoint of the source (e.g. NYUD) model")
    parser.add_argument("--tasks", required=True, help="new tasks, comma-separated (e.g. human_parts,sal)")
    parser.add_argument("--dataset", default="pascal", help="dataset of the new tasks (default: pascal)")
    parser.add_argument("--root", required=True, help="folder of the new tasks' dataset (PASCAL_MT layout)")
    parser.add_argument("--config", default=None, help="YAML with optional 'data:' and 'trainer:' sections")
    parser.add_argument("--size", default=None, help="network input HxW (multiples of 32)")
    parser.add_argument("--epochs", type=int, default=None, help="training epochs (default: config or 60)")
    parser.add_argument("--batch-size", type=int, default=None)
    parser.add_argument("--lr", type=float, default=None, help="learning rate (default: source's)")
    parser.add_argument("--single-task", default=None,
                        help="JSON of single-task results {task: {metric: value}} for delta-m")
    parser.add_argument("--out", default="runs/ufl", help="output folder (checkpoints, logs, metrics)")
    parser.add_argument("--seed", type=int, default=0)


def parse_size(text: str | None) -> tuple[int, int] | None:
    """``"128x160"`` -> (128, 160); clear error otherwise."""
    if text is None:
        return None
    try:
        h, w = (int(v) for v in str(text).lower().split("x"))
    except ValueError:
        raise ConfigError(f"--size must look like HxW (e.g. 128x160), got {text!r}") from None
    if h <= 0 or w <= 0 or h % 32 or w % 32:
        raise ConfigError(f"--size {text}: height and width must be positive multiples of 32")
    return h, w


def run_ufl(args: argparse.Namespace) -> int:
    """``medusa ufl``: train new heads on a frozen backbone, test them, write metrics JSON."""
    import lightning as L
    import yaml

    from .evaluation import evaluate_module, load_single_task_results
    from .metrics import delta_m
    from .provenance import provenance, write_json
    from .training import MultiTaskDataModule, make_trainer

    cfg: dict[str, Any] = {}
    if args.config:
        path = Path(args.config)
        if not path.is_file():
            raise FileNotFoundError(f"--config: file not found: {path}")
        cfg = yaml.safe_load(path.read_text()) or {}
    data_cfg = dict(cfg.get("data") or {})
    trainer_cfg = dict(cfg.get("trainer") or {})
    L.seed_everything(args.seed, workers=True)
    overrides = {"lr": args.lr} if args.lr is not None else {}
    module = ufl_module_from_checkpoint(args.source_ckpt, args.tasks, args.dataset, **overrides)
    data_cfg.update(dataset=args.dataset, root=args.root)
    if args.size:
        data_cfg["size"] = parse_size(args.size)
    if args.batch_size:
        data_cfg["batch_size"] = args.batch_size
    if "human_parts" in module.main_tasks and len(module.main_tasks) == 1:
        data_cfg.setdefault("drop_images_without_person", True)
    data = MultiTaskDataModule(**data_cfg)
    out = Path(args.out)
    trainer_cfg["max_epochs"] = args.epochs or trainer_cfg.get("max_epochs", 60)
    trainer = make_trainer(default_root_dir=str(out), **trainer_cfg)
    start = time.time()
    trainer.fit(module, data)
    data.setup("test")
    results = evaluate_module(module, data.test_dataloader())
    single = load_single_task_results(args.single_task) if args.single_task else None
    report = {
        "source_ckpt": str(args.source_ckpt),
        "tasks": module.main_tasks,
        "dataset": args.dataset,
        "metrics": results,
        "delta_m": delta_m(results, single, module.main_tasks) if single else None,
        "wall_time_s": round(time.time() - start, 1),
        "provenance": provenance(seed=args.seed),
    }
    write_json(out / "ufl_metrics.json", report)
    print(json.dumps({t: {k: v for k, v in r.items() if not isinstance(v, list)} for t, r in results.items()},
                     indent=2))
    print(f"wrote {out / 'ufl_metrics.json'}")
    return 0
