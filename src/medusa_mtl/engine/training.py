"""Training with PyTorch Lightning: the multi-task LightningModule and the DataModule (SPEC §5, §7).

``MultiTaskModule`` wraps any registered model: it applies each task's loss and weight (deep-supervision
outputs get the same weight as the final prediction of their task), the optimiser and per-epoch poly schedule
of SPEC §7, and streaming metrics at validation/test (predictions are resized back to the label's original
resolution and scored there). ``MultiTaskDataModule`` reads NYUD_MT / PASCAL_MT folders (real or synthetic),
carves a validation split from train for model selection and keeps the official val split as the test split.

Example:
    >>> import lightning as L
    >>> module = MultiTaskModule(arch="medusa", tasks=["semseg", "depth"], dataset="nyud")  # doctest: +SKIP
    >>> data = MultiTaskDataModule(dataset="nyud", root="data/synthetic/NYUD_MT", size=(128, 160))  # doctest: +SKIP
    >>> L.Trainer(max_epochs=1).fit(module, data)  # doctest: +SKIP
"""

from __future__ import annotations

import contextlib
import dataclasses
import importlib
import json
import math
import os
import sys
import time
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import torch
import torch.nn as nn
from torch.utils.data import DataLoader

from ..data.datasets import (
    build_dataset,
    collate,
    dataset_root,
    get_dataset_info,
    read_split_ids,
    register_declaration,
    resolve_dataset,
)
from ..data.generic import check_layout
from ..data.sizes import parse_size
from ..errors import ConfigError, NonFiniteLossError
from ..metrics import StreamingMetric
from ..models import create_model, list_models, resolve_tasks
from ..models.backbone import Backbone
from ..models.base import DEEP_SUPERVISION
from ..models.optimize import prepare_input, to_channels_last
from ..models.ufl import UFLModel
from ..tasks import get_task, parse_tasks
from .reproducibility import (
    EpochReseed,
    EpochShuffleSampler,
    HistoryCSVLogger,
    IterationResumeFix,
    LogHistory,
    SeededSamples,
    eval_sampler,
    global_seed,
    world_and_rank,
)
from .tta import flip_averaged


@contextlib.contextmanager
def _option(name: str) -> Iterator[None]:
    """A plain ``ValueError`` raised while checking one option's value (``unknown task 'deph'; known tasks: ...``)
    gets the option's name in front: ``--model.tasks: unknown task 'deph'; ...``. The errors of our own types
    already name their file or option and pass unchanged."""
    try:
        yield
    except ValueError as err:
        if type(err) is not ValueError:
            raise
        message = str(err).removeprefix(name.rsplit(".", 1)[-1] + ": ")
        raise ConfigError(f"{name}: {message}") from None


def _as_list(tasks: str | Sequence[str] | None) -> list[str] | None:
    if tasks is None:
        return None
    if isinstance(tasks, str):
        return [t.strip() for t in tasks.split(",") if t.strip()]
    return list(tasks)


def build_network(
    arch: str,
    tasks: Sequence[str],
    aux_tasks: Sequence[str] | None,
    dataset: str,
    backbone: str,
    model_kwargs: Mapping[str, Any] | None = None,
    pretrained_file: str | None = None,
    ufl: Mapping[str, Any] | Sequence[Mapping[str, Any]] | None = None,
) -> nn.Module:
    """Build the network a :class:`MultiTaskModule` trains (weights are loaded separately).

    With ``ufl`` (``{"new_tasks": [...], "dataset": "pascal"}``, or a list of such steps for a chain) the network
    is the source model described by the other arguments with a frozen backbone and new heads for each step's
    ``new_tasks`` (see :mod:`medusa_mtl.engine.ufl`).
    """
    kwargs = dict(model_kwargs or {})
    if pretrained_file:
        kwargs["pretrained_file"] = pretrained_file
    net = create_model(arch, tasks=list(tasks), aux_tasks=aux_tasks, dataset=dataset, backbone=backbone, **kwargs)
    for step in ufl_steps(ufl):
        net = UFLModel(net, new_tasks=list(step["new_tasks"]), dataset=str(step["dataset"]))
    return net


def check_metric_options(metric_options: Mapping[str, Mapping[str, Any]] | None, tasks: Sequence[str]) -> None:
    """Each option of ``metric_options`` for one of ``tasks`` (the scored ones) is a keyword its metric takes
    (a ``ValueError`` naming it and those it takes, before a validation stops on a ``TypeError``)."""
    import inspect

    from .. import metrics

    for task, options in (metric_options or {}).items():
        if task not in tasks:
            continue
        cls = getattr(metrics, get_task(task).metric_name)
        taken = [p for p in inspect.signature(cls.__init__).parameters if p not in ("self", "num_classes")]
        unknown = sorted(set(options or {}) - set(taken))
        if unknown:
            raise ValueError(f"{task}: unknown option(s) {unknown} of its metric {cls.__name__}; it takes: "
                             f"{', '.join(taken) or 'none'}")


def unscored_metric_options(metric_options: Mapping[str, Any] | None, tasks: Sequence[str]) -> list[str]:
    """The tasks ``metric_options`` has options for that are not among ``tasks`` (the scored ones)."""
    return [t for t in (metric_options or {}) if t not in tasks]


def ufl_steps(ufl: Mapping[str, Any] | Sequence[Mapping[str, Any]] | None) -> list[dict[str, Any]]:
    """The UFL steps of a module's ``ufl`` hyper-parameter (one dict, or a list of them for a chain)."""
    if not ufl:
        return []
    return [dict(ufl)] if isinstance(ufl, Mapping) else [dict(step) for step in ufl]


def resolve_datasets(
    dataset: str,
    ufl: Mapping[str, Any] | Sequence[Mapping[str, Any]] | None,
    dataset_specs: Sequence[Mapping[str, Any]] | None = None,
) -> tuple[str, list[dict[str, Any]], list[dict[str, Any]]]:
    """Register the declared datasets a module needs and name every dataset by its registry name.

    ``dataset_specs`` (declarations stored in a checkpoint) are registered first; then ``dataset`` and each UFL
    step's dataset, which may be ``dataset.yaml`` paths, are resolved to names. Returns (dataset, UFL steps,
    the declarations of every declared dataset used)."""
    for decl in dataset_specs or []:
        register_declaration(decl)
    name = resolve_dataset(dataset)
    steps = ufl_steps(ufl)
    for step in steps:
        step["dataset"] = resolve_dataset(str(step.get("dataset", "pascal")))
    specs: dict[str, dict[str, Any]] = {}
    for n in [name, *(s["dataset"] for s in steps)]:
        spec = get_dataset_info(n).spec
        if spec is not None:
            specs[n] = spec.to_dict()
    return name, steps, list(specs.values())


class MultiTaskModule(L.LightningModule):
    """LightningModule for every multi-task model of the zoo.

    Args:
        arch: registered model name (``medusa``, ``mt_baseline``, ``mtan``, ``padnet``, ``mtinet``,
            ``single_task``).
        tasks: main tasks (scored, predicted at inference).
        aux_tasks: all supervised tasks (⊇ tasks); ``None`` = tasks.
        dataset: ``nyud``, ``pascal``, or the path of a ``dataset.yaml``: output channels and loss weights (SPEC §5).
        backbone: timm backbone name.
        model_kwargs: model switches (e.g. Medusa's ``sfa``, ``initial_predictions``, ``head``).
        pretrained_file: local backbone weights file (no network).
        optimizer: ``adam`` (L2 weight decay, not AdamW) or ``sgd`` (momentum).
        lr, weight_decay, momentum: optimiser settings (SPEC §7).
        poly_power: exponent of the per-epoch poly schedule ``lr·(1 − e/E)^p``.
        backbone_lr_scale: the backbone's learning rate is ``lr * backbone_lr_scale`` (every backbone of the
            network: a single-task network has one per task); heads and the rest train at ``lr``. 1 = one lr for
            all (SPEC §7); a smaller value keeps a pretrained backbone nearer its initialisation.
        warmup_epochs: linear learning-rate warm-up over the first ``warmup_epochs`` epochs' optimizer steps (a
            fraction of an epoch is fine): step ``i`` trains at ``(i + 1) / W`` times the poly rate, ``W`` the
            warm-up's steps; the poly schedule is the same afterwards. 0 (the default, SPEC §7): none, and the
            schedule steps once per epoch as before.
        edge_thresholds: thresholds of the edge metric (99 = SPEC; fewer for fast validation).
        metric_options: per-task metric settings, e.g. ``{"edge": {"max_dist_ratio": 0.011}}`` (the NYUD
            edge-detection literature's tolerance; default 0.0075, the MTI-Net protocol) or
            ``{"sal": {"beta2": 1.0}}`` (the β² of ``maxF``; ``maxF1`` always uses 1).
        ufl: universal feature learning: ``{"new_tasks": [...], "dataset": "pascal"}``; the source model is
            described by the other model arguments and its weights are loaded by :mod:`medusa_mtl.engine.ufl`.
        test_flip: score (validation, test) and predict the mean of the raw outputs for each image and for its
            mirror image, mirrored back (:mod:`medusa_mtl.engine.tta`; not SPEC's evaluation, which scores one
            output; twice the evaluation cost). Training is unchanged, but checkpoint selection sees the averaged
            scores.
        channels_last: keep the network's parameters and feed its inputs in the NHWC memory format
            (:func:`medusa_mtl.models.optimize.to_channels_last`): the same computation, faster on the CPU
            (oneDNN's kernels for HRNet's thin convolutions; ``benchmarks/throughput.py --channels-last``), equal
            up to float rounding. State-dict keys and values are unchanged, so checkpoints load either way.
        dataset_specs: declarations of the datasets of ``dataset.yaml`` files the model uses (filled in
            automatically when ``dataset`` or a UFL step's dataset is such a file, and stored in checkpoints, so
            a checkpoint rebuilds its declared tasks without the dataset folder).

    ``dataset`` (and a UFL step's ``dataset``) may be the path of a ``dataset.yaml`` (see
    :mod:`medusa_mtl.data.generic`): its tasks are declared, and the hyper-parameters record its name.
    """

    def __init__(
        self,
        arch: str = "medusa",
        tasks: str | list[str] = "semseg,depth",
        aux_tasks: str | list[str] | None = None,
        dataset: str = "nyud",
        backbone: str = "hrnet_w18_small_v2",
        model_kwargs: dict[str, Any] | None = None,
        pretrained_file: str | None = None,
        optimizer: str = "adam",
        lr: float = 1e-4,
        weight_decay: float = 1e-4,
        momentum: float = 0.9,
        poly_power: float = 0.9,
        backbone_lr_scale: float = 1.0,
        warmup_epochs: float = 0.0,
        edge_thresholds: int = 99,
        ufl: dict[str, Any] | list[dict[str, Any]] | None = None,
        metric_options: dict[str, dict[str, Any]] | None = None,
        test_flip: bool = False,
        dataset_specs: list[dict[str, Any]] | None = None,
        channels_last: bool = False,
    ) -> None:
        super().__init__()
        if optimizer not in ("adam", "sgd"):
            raise ConfigError(f"--model.optimizer must be 'adam' or 'sgd', got {optimizer!r}")
        for name, value in (("lr", lr), ("weight_decay", weight_decay), ("momentum", momentum),
                            ("poly_power", poly_power)):
            if not (isinstance(value, int | float) and math.isfinite(value) and value >= 0):
                raise ConfigError(f"--model.{name} must be a finite number >= 0, got {value!r}")
        if (isinstance(backbone_lr_scale, bool) or not isinstance(backbone_lr_scale, int | float)
                or not math.isfinite(backbone_lr_scale) or backbone_lr_scale <= 0):
            raise ConfigError(f"--model.backbone_lr_scale must be a finite number > 0, got {backbone_lr_scale!r}")
        if (isinstance(warmup_epochs, bool) or not isinstance(warmup_epochs, int | float)
                or not math.isfinite(warmup_epochs) or warmup_epochs < 0):
            raise ConfigError(f"--model.warmup_epochs must be a finite number >= 0, got {warmup_epochs!r}")
        if not isinstance(test_flip, bool):  # "no" would be truthy
            raise ConfigError(f"--model.test_flip must be true or false, got {test_flip!r}")
        if not isinstance(channels_last, bool):
            raise ConfigError(f"--model.channels_last must be true or false, got {channels_last!r}")
        tasks_l = _as_list(tasks)
        aux_l = _as_list(aux_tasks)
        with _option("--model.dataset"):
            dataset, ufl, specs = resolve_datasets(dataset, ufl, dataset_specs)
        if arch not in list_models():
            raise ConfigError(f"--model.arch: unknown model {arch!r}; registered models: {', '.join(list_models())}")
        with _option("--model.tasks"):
            parse_tasks(tasks_l, dataset)
        with _option("--model.aux_tasks"):
            resolve_tasks(tasks_l, aux_l, dataset)
        self.save_hyperparameters(
            dict(arch=arch, tasks=tasks_l, aux_tasks=aux_l, dataset=dataset, backbone=backbone,
                 model_kwargs=dict(model_kwargs or {}),
                 pretrained_file=(os.fspath(pretrained_file) if isinstance(pretrained_file, os.PathLike)
                                  else pretrained_file),  # a pathlib.Path: as a string (weights_only loads)
                 optimizer=optimizer,
                 lr=lr, weight_decay=weight_decay, momentum=momentum, poly_power=poly_power,
                 backbone_lr_scale=float(backbone_lr_scale), warmup_epochs=float(warmup_epochs),
                 edge_thresholds=edge_thresholds, ufl=ufl_steps(ufl) or None,
                 metric_options={t: dict(o) for t, o in (metric_options or {}).items()},
                 test_flip=test_flip, dataset_specs=specs or None, channels_last=channels_last)
        )
        self.net = build_network(arch, tasks_l, aux_l, dataset, backbone, model_kwargs, pretrained_file, ufl)
        self.channels_last = channels_last
        if channels_last:
            to_channels_last(self.net)
        if ufl:
            last = ufl_steps(ufl)[-1]
            self.eval_dataset = str(last["dataset"])
            self.main_tasks = parse_tasks(last["new_tasks"], self.eval_dataset)
            self.supervised_tasks = list(self.main_tasks)
        else:
            self.eval_dataset = dataset
            self.main_tasks = list(self.net.tasks)
            self.supervised_tasks = list(self.net.aux_tasks)
        with _option("--model.metric_options"):
            check_metric_options(metric_options, self.main_tasks)
        self._metrics: dict[str, StreamingMetric] = {}
        self._val_loss_sum = 0.0
        self._val_loss_n = 0
        self.last_metrics: dict[str, dict[str, Any]] = {}
        self._epoch_start = time.time()

    def __setstate__(self, state: dict[str, Any]) -> None:
        # A module unpickled in another process (DataLoader workers, ddp_spawn) finds the task registry without
        # the declared tasks of its dataset.yaml files: declare them again from the hyper-parameters.
        super().__setstate__(state)
        for decl in self.hparams.get("dataset_specs") or []:
            register_declaration(decl)

    def setup(self, stage: str) -> None:
        # Lightning's model summary measures FLOPs on ``example_input_array`` and prints 0 without one: give it
        # one image of the run's input size when the data module says what that is.
        size = getattr(getattr(self._trainer, "datamodule", None), "input_size", None)
        if size is not None and self.example_input_array is None:
            self.example_input_array = torch.zeros(1, 3, int(size[0]), int(size[1]))

    # -- forward -------------------------------------------------------------------------------------------
    def forward(self, x: torch.Tensor) -> dict[str, Any]:
        return self.net(prepare_input(x, self.channels_last))

    def eval_outputs(self, x: torch.Tensor) -> Mapping[str, torch.Tensor]:
        """The raw outputs that are scored and predicted: the network's, or with ``test_flip`` the flip-averaged
        outputs of the main tasks."""
        x = prepare_input(x, self.channels_last)
        if self.hparams.get("test_flip"):  # (checkpoints written before the option have no entry: off)
            return flip_averaged(self.net, x, self.main_tasks)
        return self.net(x)

    # -- losses --------------------------------------------------------------------------------------------
    def compute_loss(self, outputs: Mapping[str, Any], batch: Mapping[str, Any]) -> tuple[torch.Tensor, dict]:
        """Weighted sum of task losses over final and deep-supervision outputs. Returns (loss, per-part logs)."""
        total: torch.Tensor | None = None
        logs: dict[str, torch.Tensor] = {}

        def add(name: str, task_name: str, raw: torch.Tensor) -> None:
            nonlocal total
            task = get_task(task_name)
            target = batch[task_name]
            raw = task.upsample(raw, target.shape[-2:])
            value = task.loss(raw.float(), target) * task.loss_weight(self.eval_dataset)
            logs[name] = value.detach()
            total = value if total is None else total + value

        for t in self.supervised_tasks:
            if t in outputs:
                add(t, t, outputs[t])
        for tag, preds in (outputs.get(DEEP_SUPERVISION) or {}).items():
            for t, raw in preds.items():
                if t in self.supervised_tasks:
                    add(f"{t}/{tag}", t, raw)
        if total is None:
            raise ConfigError(
                f"the model produced none of the supervised tasks {self.supervised_tasks} "
                f"(outputs: {sorted(k for k in outputs if k != DEEP_SUPERVISION)})"
            )
        return total, logs

    def training_step(self, batch: Mapping[str, Any], batch_idx: int) -> torch.Tensor:
        outputs = self.net(prepare_input(batch["image"], self.channels_last))
        loss, logs = self.compute_loss(outputs, batch)
        if not torch.isfinite(loss):
            bad = {k: float(v) for k, v in logs.items() if not torch.isfinite(v)}
            raise NonFiniteLossError(
                f"the training loss became {float(loss.detach())} at epoch {self.current_epoch}, "
                f"step {self.global_step} "
                f"(non-finite parts: {bad}). Training stopped; the last good checkpoint is kept. Check the "
                "labels for NaN/inf (`medusa data check`) or lower --model.lr."
            )
        bs = batch["image"].shape[0]
        self.log("train/loss", loss, prog_bar=True, batch_size=bs, sync_dist=False)
        # per step, Lightning writes a value every log_every_n_steps (50) steps only: short runs logged one or
        # none; the epoch mean is written for every epoch, next to val/loss
        self.log("train/epoch_loss", loss.detach(), on_step=False, on_epoch=True, batch_size=bs, sync_dist=True)
        for k, v in logs.items():
            if "/" not in k:
                self.log(f"train/loss_{k}", v, batch_size=bs)
        return loss

    # -- evaluation ----------------------------------------------------------------------------------------
    def _reset_metrics(self) -> None:
        options = {t: dict(o) for t, o in (self.hparams.get("metric_options") or {}).items()}
        for t in self.main_tasks:  # every edge task (a declared one of another name too) gets the thresholds
            if get_task(t).label_kind == "edge":
                options.setdefault(t, {}).setdefault("thresholds", self.hparams.edge_thresholds)
        self._metrics = {t: get_task(t).make_metric(self.eval_dataset, **options.get(t, {})) for t in self.main_tasks}
        self._val_loss_sum = 0.0
        self._val_loss_n = 0

    def on_validation_epoch_start(self) -> None:
        self._reset_metrics()

    def on_test_epoch_start(self) -> None:
        self._reset_metrics()

    @torch.no_grad()
    def evaluate_batch(self, batch: Mapping[str, Any]) -> float:
        """Update the streaming metrics with one batch; returns the batch's weighted main-task loss."""
        outputs = self.eval_outputs(batch["image"])
        n = batch["image"].shape[0]
        loss_sum = 0.0
        for t in self.main_tasks:
            task = get_task(t)
            labels = batch[t]
            for i in range(n):
                target = labels[i].unsqueeze(0)
                raw = task.upsample(outputs[t][i : i + 1].float(), target.shape[-2:])
                loss_sum += float(task.loss(raw, target)) * task.loss_weight(self.eval_dataset)
                self._metrics[t].update(task.postprocess(raw), target)
        return loss_sum / max(n, 1)

    def validation_step(self, batch: Mapping[str, Any], batch_idx: int) -> None:
        loss = self.evaluate_batch(batch)
        self._val_loss_sum += loss * batch["image"].shape[0]
        self._val_loss_n += batch["image"].shape[0]

    def test_step(self, batch: Mapping[str, Any], batch_idx: int) -> None:
        self.validation_step(batch, batch_idx)

    def compute_metrics(self) -> dict[str, dict[str, Any]]:
        """Gather the streaming metrics across ranks and compute them."""
        results: dict[str, dict[str, Any]] = {}
        for t, metric in self._metrics.items():
            metric.sync()
            results[t] = metric.compute()
        return results

    def _log_eval(self, stage: str) -> None:
        results = self.compute_metrics()
        self.last_metrics = results
        loss = torch.tensor([self._val_loss_sum, float(self._val_loss_n)], dtype=torch.float64)
        if self.trainer is not None and self.trainer.world_size > 1:
            loss = self.all_gather(loss.to(self.device)).reshape(-1, 2).sum(0).cpu()
        mean_loss = float(loss[0] / max(float(loss[1]), 1.0))
        if not math.isfinite(mean_loss) and self._fitting():
            # the training loss can stay finite while eval-mode outputs are not (e.g. BatchNorm running statistics
            # blown up by a diverging run): stop before this epoch's weights become last.ckpt / best.ckpt
            when = "before training" if self.trainer.sanity_checking else f"after epoch {self.current_epoch}"
            raise NonFiniteLossError(
                f"the held-out validation loss is {mean_loss} {when}: the model's outputs are not finite (training "
                "diverged). Training stopped; the last good checkpoint is kept. Lower --model.lr (or set "
                "--trainer.gradient_clip_val)."
            )
        self.log(f"{stage}/loss", mean_loss, prog_bar=True, sync_dist=False, rank_zero_only=False)
        for t, res in results.items():
            for k, v in res.items():
                if isinstance(v, (int, float)) and math.isfinite(float(v)):
                    self.log(f"{stage}/{t}/{k}", float(v), prog_bar=(k == get_task(t).dm_metric))

    def on_fit_start(self) -> None:
        # Lightning's own warning about this is filtered with the CSV logger's (same words); say it plainly
        trainer = self._trainer
        if trainer is None or trainer.ckpt_path is not None or not trainer.is_global_zero:
            return
        folders = {Path(cb.dirpath) for cb in trainer.checkpoint_callbacks if getattr(cb, "dirpath", None)}
        for folder in sorted(folders):
            earlier = sorted(p.name for p in folder.glob("*.ckpt"))
            if earlier:
                print(f"note: {folder} holds the checkpoints of an earlier run ({', '.join(earlier)}); this run starts "
                      "from scratch and replaces them (to continue that run instead: --ckpt_path last)",
                      file=sys.stderr)

    def _fitting(self) -> bool:
        trainer = self._trainer
        return trainer is not None and trainer.state.fn == "fit"

    def on_validation_epoch_end(self) -> None:
        self._log_eval("val")

    def on_test_epoch_end(self) -> None:
        self._log_eval("test")

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """Refuse to write weights that became NaN/inf: the last good checkpoint stays in place. Record the
        training seed (``training_seed``, None when no seed was set): config.yaml stays behind when a checkpoint
        is shared, and `medusa evaluate` writes it into its results file."""
        seed = os.environ.get("PL_GLOBAL_SEED")
        checkpoint["training_seed"] = global_seed() if seed is not None else None
        bad = [
            k for k, v in (checkpoint.get("state_dict") or {}).items()
            if isinstance(v, torch.Tensor) and v.is_floating_point() and not bool(torch.isfinite(v).all())
        ]
        if bad:
            raise NonFiniteLossError(
                f"the weights became NaN/inf at epoch {self.current_epoch}, step {self.global_step} "
                f"({len(bad)} tensor(s), e.g. {bad[0]}); no checkpoint was written and the last good one is kept. "
                "Check the labels (`medusa data check`) or lower --model.lr."
            )

    def predict_step(self, batch: Mapping[str, Any], batch_idx: int) -> dict[str, torch.Tensor]:
        outputs = self.eval_outputs(batch["image"])
        return {t: get_task(t).postprocess(outputs[t]) for t in self.main_tasks}

    # -- optimisation --------------------------------------------------------------------------------------
    def configure_optimizers(self) -> dict[str, Any]:
        params = [p for p in self.parameters() if p.requires_grad]
        if not params:
            raise ConfigError("no trainable parameters: everything is frozen")
        hp = self.hparams
        groups = self.param_groups(params)
        if hp.optimizer == "adam":
            opt: torch.optim.Optimizer = torch.optim.Adam(groups, lr=hp.lr, weight_decay=hp.weight_decay)
        else:
            opt = torch.optim.SGD(groups, lr=hp.lr, momentum=hp.momentum, weight_decay=hp.weight_decay)
        max_epochs = schedule_epochs(self._trainer) if self._trainer is not None else 1
        power = float(hp.poly_power)

        def poly(epoch: int) -> float:
            return max(1.0 - epoch / max_epochs, 0.0) ** power

        warmup = float(self.hparams.get("warmup_epochs", 0.0))  # checkpoints from before the option: none
        per_epoch = steps_per_epoch(self._trainer) if (warmup > 0 and self._trainer is not None) else None
        if per_epoch is None:  # no warm-up (or no trainer to count steps): the poly factor changes once per epoch
            sched = torch.optim.lr_scheduler.LambdaLR(opt, poly)
            return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "epoch"}}
        warm_steps = max(round(warmup * per_epoch), 1)

        def warm_poly(step: int) -> float:  # the same per-epoch poly factor, times the warm-up ramp
            return min((step + 1) / warm_steps, 1.0) * poly(step // per_epoch)

        sched = torch.optim.lr_scheduler.LambdaLR(opt, warm_poly)
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}

    def param_groups(self, params: list[nn.Parameter]) -> list[dict[str, Any]]:
        """``params`` as optimiser groups: one group (the ``lr``), or with ``backbone_lr_scale`` != 1 the backbones'
        parameters at ``lr * backbone_lr_scale`` and the others at ``lr`` (a group left out when empty)."""
        scale = float(self.hparams.get("backbone_lr_scale", 1.0))  # checkpoints from before the option: 1
        if scale == 1.0:
            return [{"params": params}]
        in_backbone = {id(p) for m in self.net.modules() if isinstance(m, Backbone) for p in m.parameters()}
        backbone = [p for p in params if id(p) in in_backbone]
        rest = [p for p in params if id(p) not in in_backbone]
        groups = [{"params": rest}] if rest else []
        if backbone:
            groups.append({"params": backbone, "lr": float(self.hparams.lr) * scale})
        return groups


def schedule_epochs(trainer: L.Trainer) -> int:
    """The number of epochs E of the poly schedule ``lr * (1 - e / E) ** power``: the run's real length.

    ``max_epochs`` when only it bounds the run; with ``max_steps`` (Lightning then sets ``max_epochs`` to -1 unless
    it is given too) the epochs those optimizer steps take, so the rate decays over the steps that run instead of
    dropping to 0 after the first epoch. ``max_time`` alone gives no length: refused.
    """
    max_steps = trainer.max_steps if trainer.max_steps is not None else -1
    max_epochs = trainer.max_epochs if trainer.max_epochs is not None else -1
    if max_steps < 0:
        if max_epochs < 0:
            raise ConfigError("the poly learning-rate schedule needs the run's length: set --trainer.max_epochs or "
                              "--trainer.max_steps (--trainer.max_time alone does not say how many epochs will run)")
        return max(int(max_epochs), 1)
    per_epoch = steps_per_epoch(trainer)
    if per_epoch is None:  # an iterable dataset of unknown length
        return max(int(max_epochs), 1)
    total = max_steps if max_epochs < 0 else min(max_steps, per_epoch * max_epochs)
    return max(math.ceil(total / per_epoch), 1)


def steps_per_epoch(trainer: L.Trainer) -> int | None:
    """Optimizer steps per training epoch (batches over gradient accumulation); ``None`` for a dataset of unknown
    length. Loads the training data to count the batches when the fit has not yet done so."""
    if trainer.train_dataloader is None:
        loop = trainer.fit_loop
        loop.setup_data()  # the batches per epoch (Lightning's own estimate loads them the same way)
        batches = trainer.num_training_batches
        # This runs before a resumed fit restores its checkpoint: a loader kept from here would have its sampler
        # (and prefetching workers) on epoch 0's order. Dropped, the fit builds it again after the restore.
        if getattr(loop, "_data_fetcher", None) is not None:
            loop._data_fetcher.teardown()
            loop._data_fetcher = None
        loop._combined_loader = None
    else:
        batches = trainer.num_training_batches
    if not math.isfinite(batches) or batches < 1:
        return None
    return math.ceil(batches / max(int(trainer.accumulate_grad_batches), 1))


class MultiTaskDataModule(L.LightningDataModule):
    """NYUD_MT / PASCAL_MT data (real or synthetic) with a validation split carved from train.

    Args:
        dataset: ``nyud``, ``pascal``, or the path of a ``dataset.yaml`` (:mod:`medusa_mtl.data.generic`).
        root: the dataset folder (``NYUD_MT`` / ``PASCAL_MT`` layout, or the generic one); ``None`` = the
            folder of the ``dataset.yaml``, or ``data/synthetic/NYUD_MT`` / ``PASCAL_MT`` for the built-in ones.
        tasks: tasks to load; ``None`` = the tasks the model supervises (read from the LightningModule).
        size: network input (H, W) or "HxW", multiples of 32; ``None`` = the dataset's default (SPEC §6).
        batch_size: per-process batch size (the paper's global batch is 8).
        eval_batch_size: batch size for validation/test (default: batch_size).
        num_workers: DataLoader workers.
        val_fraction: fraction of the train split held out for model selection.
        seed: seed of the held-out split.
        max_train: use only the first N training ids (after carving), for quick runs.
        max_eval: use only the first N ids of the validation and test splits.
        drop_images_without_person: PASCAL parts-only runs drop images without a person (SPEC §6).
        scales: random scales of the train augmentation, drawn uniformly, replacing the dataset's protocol
            (SPEC §6: NYUD {1, 1.2, 1.5}, PASCAL uniform in [0.75, 1.25]); ``[1.0]`` leaves flips (and PASCAL's
            rotations) only. ``None`` = the protocol.
        cache: keep every decoded sample in memory after its first read (same batches, faster later epochs;
            memory: the decoded dataset, per worker). Worth it for small datasets and ``num_workers`` 0 (the
            benchmark profiles); off by default.
        rotation: largest random rotation of the train augmentation in degrees (drawn from
            U(-rotation, rotation)), replacing the dataset's protocol (SPEC §6: NYUD 0, PASCAL 20); with
            ``scales=[1.0]`` and ``rotation=0`` the train transform flips only. ``None`` = the protocol.
    """

    def __init__(
        self,
        dataset: str = "nyud",
        root: str | None = None,
        tasks: str | list[str] | None = None,
        size: tuple[int, int] | str | None = None,
        batch_size: int = 8,
        eval_batch_size: int | None = None,
        num_workers: int = 2,
        val_fraction: float = 0.1,
        seed: int = 0,
        max_train: int | None = None,
        max_eval: int | None = None,
        drop_images_without_person: bool = False,
        scales: list[float] | None = None,
        cache: bool = False,
        rotation: float | None = None,
    ) -> None:
        super().__init__()
        # Recorded in checkpoints (``datamodule_hyper_parameters``): prediction reuses the training size.
        # logger=False: not merged with the module's hparams for the loggers (``tasks``/``dataset`` may differ
        # between the two, e.g. ``--data.tasks`` left unset, which Lightning's merge rejects).
        self.save_hyperparameters(logger=False)
        for key in ("dataset", "root"):  # a pathlib.Path recorded as such makes the checkpoint unloadable
            if isinstance(self.hparams[key], os.PathLike):  # with weights_only=True: record the string
                self.hparams[key] = os.fspath(self.hparams[key])
        with _option("--data.dataset"):
            self.dataset_name = resolve_dataset(dataset)
        if tasks is not None:
            with _option("--data.tasks"):
                parse_tasks(_as_list(tasks), self.dataset_name)
        if not 0.0 < val_fraction < 1.0:
            raise ConfigError(f"--data.val_fraction must be in (0, 1), got {val_fraction}")
        if isinstance(size, str):  # "64x64", the --size form of the other commands
            try:
                size = parse_size(size)
            except (ConfigError, ValueError):
                raise ConfigError(f"--data.size {size!r}: expected HxW such as 64x64, or [H, W]") from None
            self.hparams["size"] = size  # checkpoints record the pair, as for [H, W]
        if size is not None:
            size = (int(size[0]), int(size[1]))
            if size[0] % 32 or size[1] % 32 or min(size) <= 0:
                raise ConfigError(f"--data.size must be two positive multiples of 32, got {size[0]}x{size[1]}")
        if batch_size < 1:
            raise ConfigError(f"--data.batch_size must be >= 1, got {batch_size}")
        for name, value, low in (("eval_batch_size", eval_batch_size, 1), ("num_workers", num_workers, 0),
                                 ("max_train", max_train, 1), ("max_eval", max_eval, 1)):
            if value is not None and value < low:
                raise ConfigError(f"--data.{name} must be >= {low}{' (or null)' if name != 'num_workers' else ''}, "
                                  f"got {value}")
        self.root = dataset_root(dataset, root)
        spec = get_dataset_info(self.dataset_name).spec
        if spec is not None:  # a missing folder or split file: said now, before a trainer writes anything
            check_layout(spec.with_root(self.root))
        self.tasks = _as_list(tasks)
        self.size = size
        self.batch_size = batch_size
        self.eval_batch_size = eval_batch_size or batch_size
        self.num_workers = num_workers
        self.val_fraction = val_fraction
        self.seed = seed
        self.max_train = max_train
        self.max_eval = max_eval
        self.drop_images_without_person = drop_images_without_person
        self.cache = bool(cache)
        self.augment = None
        if scales is not None:
            vals = [float(v) for v in (scales if isinstance(scales, list | tuple) else [scales])]
            if not vals or min(vals) <= 0:
                raise ConfigError(f"--data.scales must be a non-empty list of positive numbers, got {scales}")
            self.augment = dataclasses.replace(get_dataset_info(self.dataset_name).augment, scales=tuple(vals),
                                               scale_range=None)
        if rotation is not None:
            if isinstance(rotation, bool) or not isinstance(rotation, int | float) or not 0 <= rotation <= 180:
                raise ConfigError(f"--data.rotation must be a number of degrees in [0, 180], got {rotation!r}")
            self.augment = dataclasses.replace(self.augment or get_dataset_info(self.dataset_name).augment,
                                               max_rotation=float(rotation))
        self.train_ids: list[str] = []
        self.val_ids: list[str] = []
        self.test_ids: list[str] = []

    @property
    def flips_only(self) -> bool:
        """Whether the train augmentation is at most a horizontal flip (no zoom, no rotation): every training input
        is then one of two per image, which the UFL feature cache (``mirror``) can exploit."""
        aug = self.augment or get_dataset_info(self.dataset_name).augment
        return aug.scales is not None and set(aug.scales) == {1.0} and aug.max_rotation == 0

    def check_declaration(self, module: Any) -> None:
        """Refuse a model whose tasks the dataset now declares otherwise. A model trained on a declared dataset
        reads the folder's ``dataset.yaml``, which replaces the declaration the checkpoint recorded: a task whose
        kind or output channels changed since (a class added, say) would fail deep in a loss, or be scored
        against labels the network cannot predict; one whose classes were renamed or reordered (as many of
        them) would have its outputs scored as other classes."""
        recorded = [d for d in (dict(getattr(module, "hparams", {}) or {}).get("dataset_specs") or [])
                    if d.get("name") == self.dataset_name]
        current = get_dataset_info(self.dataset_name).spec
        if not recorded or current is None:
            return
        from ..data.generic import spec_from_dict

        before = {t.name: t for t in spec_from_dict(dict(recorded[0])).tasks}
        for t in current.tasks:
            old = before.get(t.name)
            if old is not None and (old.kind, old.channels) != (t.kind, t.channels):
                what = (f"{len(t.classes)} classes against {len(old.classes)}" if t.kind == old.kind == "segmentation"
                        else f"kind {t.kind} with {t.channels} channel(s) against {old.kind} with {old.channels}")
                raise ConfigError(
                    f"{current.root or self.root}: the dataset.yaml declares task {t.name!r} with {what} when the "
                    "model was trained (the checkpoint's declaration): the network cannot predict it; train a new "
                    "model, or use the declaration the model was trained with"
                )
            if old is not None and old.classes != t.classes:
                raise ConfigError(
                    f"{current.path or current.root or self.root}: the dataset.yaml declares task {t.name!r} with "
                    f"classes {list(t.classes)}, but the model was trained with {list(old.classes)} (the "
                    "checkpoint's declaration): its outputs would be scored as other classes; train a new model, "
                    "or use the declaration the model was trained with"
                )

    def _resolve_tasks(self) -> list[str]:
        if self.tasks is not None:
            return self.tasks
        module = self.trainer.lightning_module if self.trainer is not None else None
        if module is None or not hasattr(module, "supervised_tasks"):
            raise ConfigError("--data.tasks is not set and there is no model to take the tasks from")
        return list(module.supervised_tasks)

    def _require_root(self) -> None:
        if not self.root.is_dir():
            raise FileNotFoundError(
                f"dataset folder not found: {self.root} (expected a {self.dataset_name.upper()}_MT folder; "
                "create a synthetic one with `medusa data synth`, or name the folder: --data.root for medusa "
                "fit/validate/test, --root for medusa ufl, --data for medusa evaluate)"
            )

    def test_split_ids(self) -> list[str]:
        """The test ids (the dataset's official val split), without reading the train split: a folder of
        labelled test images alone can be scored."""
        self._require_root()
        test = read_split_ids(self.dataset_name, self.root, "val")
        return test[: self.max_eval] if self.max_eval is not None else test

    def split_ids(self) -> tuple[list[str], list[str], list[str]]:
        """(train, held-out validation, test) ids. Validation is carved from train, deterministically by seed."""
        self._require_root()
        train_all = read_split_ids(self.dataset_name, self.root, "train")
        test = read_split_ids(self.dataset_name, self.root, "val")
        both = sorted(set(train_all) & set(test))
        if both:  # a test image that is trained on scores what the network memorised
            raise ConfigError(f"{self.root}: ids in both the train and the val (test) split: {both[:5]}"
                              f"{' ...' if len(both) > 5 else ''} ({len(both)} in all); `medusa data check` lists them")
        if len(train_all) < 2:
            raise ConfigError(f"{self.root}: the train split has {len(train_all)} ids; need at least 2")
        order = np.random.default_rng(self.seed).permutation(len(train_all))
        n_val = heldout_size(len(train_all), self.val_fraction)
        val = sorted(train_all[i] for i in order[:n_val])
        held = set(val)
        train = [i for i in train_all if i not in held]
        if self.max_train is not None:
            train = train[: self.max_train]
        if self.max_eval is not None:
            val, test = val[: self.max_eval], test[: self.max_eval]
        return train, val, test

    @property
    def input_size(self) -> tuple[int, int]:
        """The network's input size (H, W): ``size``, or the dataset's default size when that is ``None``."""
        return self.size if self.size is not None else tuple(get_dataset_info(self.dataset_name).default_size)

    def setup(self, stage: str | None = None) -> None:
        module = self.trainer.lightning_module if self.trainer is not None else None
        model_data = getattr(module, "eval_dataset", None)
        if model_data is not None and resolve_dataset(model_data) != self.dataset_name:
            # a 40-class NYUD head trained on PASCAL's labels runs without complaint and means nothing
            raise ConfigError(f"the model predicts dataset {model_data!r} (--model.dataset) but the data is "
                              f"{self.dataset_name!r} (--data.dataset): set both to the same dataset")
        if module is not None:
            self.check_declaration(module)
        tasks = self._resolve_tasks()
        if self.tasks is not None and module is not None:
            # fitting needs every supervised task's labels, evaluating the main tasks'
            needed = getattr(module, "supervised_tasks" if stage in (None, "fit") else "main_tasks", None) or []
            missing = [t for t in needed if t not in tasks]
            if missing:
                raise ConfigError(f"--data.tasks {tasks} lacks the model's task(s) {missing}: add them, or leave "
                                  "--data.tasks unset to load the model's tasks")
        extra: dict[str, Any] = {}
        if self.dataset_name == "pascal":
            extra["drop_images_without_person"] = self.drop_images_without_person
        build = dict(name=self.dataset_name, root=self.root, tasks=tasks, size=self.size, cache=self.cache, **extra)
        if stage == "test":  # the test split alone: its files are all a test reads (and checks)
            self.test_ids = self.test_split_ids()
            self.test_set = build_dataset(split="val", train=False, ids=self.test_ids, **build)
            return
        self.train_ids, self.val_ids, self.test_ids = self.split_ids()
        # The train and held-out ids both come from the train split on disk.
        self.train_set = build_dataset(split="train", train=True, ids=self.train_ids, augment=self.augment, **build)
        self.val_set = build_dataset(split="train", train=False, ids=self.val_ids, **build)
        self.test_set = build_dataset(split="val", train=False, ids=self.test_ids, **build)

    def _loader(self, ds: Any, train: bool) -> DataLoader:
        # Randomness is a function of (seed, epoch, sample) (see medusa_mtl.engine.reproducibility): a resumed run
        # draws the same shuffle and augmentations as an uninterrupted one, whatever the workers or processes.
        # Under DDP the samplers shard the data themselves (Lightning keeps a DistributedSampler as it is);
        # evaluation is sharded without duplicates so metrics over N processes equal those of one.
        world, rank = world_and_rank(self.trainer)
        if train:
            sampler: Any = EpochShuffleSampler(ds, seed=global_seed(), num_replicas=world, rank=rank)
            # Lightning creates the loader's iterator, and workers start prefetching from the sampler, before it
            # calls set_epoch for the fit's first epoch: a resumed fit would draw that epoch's first batches (all
            # of it: the sampler computes its order once) with epoch 0's order and seeds. Start at that epoch.
            sampler.set_epoch(_first_epoch(self.trainer))
            ds = SeededSamples(ds)
            per_rank = len(sampler)
        else:
            sampler = eval_sampler(ds, self.trainer)
            per_rank = len(sampler) if sampler is not None else len(ds)
        return DataLoader(
            ds,
            batch_size=self.batch_size if train else self.eval_batch_size,
            sampler=sampler,
            drop_last=train and per_rank > self.batch_size,
            num_workers=self.num_workers,
            collate_fn=collate,
            persistent_workers=self.num_workers > 0,
            # its own generator: creating the loader's iterator does not consume the global random stream
            generator=torch.Generator().manual_seed(global_seed()),
        )

    def train_dataloader(self) -> DataLoader:
        return self._loader(self.train_set, True)

    def val_dataloader(self) -> DataLoader:
        return self._loader(self.val_set, False)

    def test_dataloader(self) -> DataLoader:
        return self._loader(self.test_set, False)

    def predict_dataloader(self) -> DataLoader:
        return self._loader(self.test_set, False)


def heldout_size(num_train: int, val_fraction: float) -> int:
    """How many of ``num_train`` training ids :class:`MultiTaskDataModule` holds out for validation: the rounded
    fraction, at least one, and at least one id left to train on."""
    return min(max(1, int(round(val_fraction * num_train))), num_train - 1)


def _first_epoch(trainer: Any) -> int:
    """The epoch a fit is about to start (after a resume, the first one not finished); 0 outside a fit."""
    loop = getattr(trainer, "fit_loop", None) if trainer is not None else None
    try:
        return int(loop.epoch_progress.current.processed)  # what Lightning's own set_epoch will use
    except AttributeError:
        return 0


# -- trainer assembly ----------------------------------------------------------------------------------------
def default_checkpoint_callbacks(dirpath: str | Path | None = None) -> list[L.Callback]:
    """``best.ckpt`` (lowest held-out validation loss) and ``last.ckpt`` (rewritten after every epoch).

    Two callbacks, because a monitored ``ModelCheckpoint(save_last=True)`` rewrites ``last.ckpt`` only when it
    also saves a new best: resuming from "last" would then silently restart from the best epoch.
    """
    from lightning.pytorch.callbacks import ModelCheckpoint

    best = ModelCheckpoint(
        dirpath=dirpath, filename="best", monitor="val/loss", mode="min", save_top_k=1,
        auto_insert_metric_name=False, enable_version_counter=False,
    )
    # Unmonitored, one file named "last": rewritten after every epoch; `--ckpt_path last` finds it by name. At the
    # train epoch's end, also of epochs without validation (Lightning's default saves after validation only when
    # check_val_every_n_epoch > 1: an interrupted run would resume from its last validated epoch).
    last = ModelCheckpoint(dirpath=dirpath, filename="last", monitor=None, save_top_k=1,
                           enable_version_counter=False, save_on_train_epoch_end=True)
    return [best, last]


def _is_callback(callback: Any, cls: type) -> bool:
    """``callback`` is a ``cls`` (or subclass): an instance, or a config's ``{"class_path": ...}`` entry."""
    if isinstance(callback, cls):
        return True
    path = callback.get("class_path") if hasattr(callback, "get") else None
    if not isinstance(path, str):
        return False
    module, _, name = path.rpartition(".")
    try:
        found = getattr(importlib.import_module(module), name, None) if module else None
    except Exception:  # noqa: BLE001 - a module that does not import is LightningCLI's to report, with its name
        found = None
    return issubclass(found, cls) if isinstance(found, type) else name == cls.__name__


def _callbacks(config: Any) -> list[Any]:
    callbacks = (config.get("callbacks") if config is not None else None) or []
    return list(callbacks) if isinstance(callbacks, list | tuple) else [callbacks]


def default_checkpoint_dir(config: Any) -> Path | None:
    """Where :func:`complete_trainer_config` puts the default ``best.ckpt`` / ``last.ckpt`` for a Trainer config
    (a dict or a parsed CLI namespace; ``None`` is an empty one): ``<default_root_dir or "runs">/checkpoints``,
    or ``None`` when it adds none (checkpointing switched off, or a ``ModelCheckpoint`` of the config's own)."""
    from lightning.pytorch.callbacks import ModelCheckpoint

    config = config if config is not None else {}
    if config.get("enable_checkpointing", True) is False:
        return None
    if any(_is_callback(c, ModelCheckpoint) for c in _callbacks(config)):
        return None
    return Path(config.get("default_root_dir") or "runs") / "checkpoints"


def _own_default_file(config: Any, filename: str) -> Path | None:
    from lightning.pytorch.callbacks import Checkpoint

    folder = default_checkpoint_dir(config)
    if folder is None or any(_is_callback(c, Checkpoint) for c in _callbacks(config)):
        return None
    return folder / filename


def last_checkpoint_file(config: Any) -> Path | None:
    """The file Lightning's ``ckpt_path="last"`` resumes from for this Trainer config when it is decided by the
    project's defaults (``<checkpoint dir>/last.ckpt``, see :func:`default_checkpoint_dir`); ``None`` when the
    config brings a checkpoint callback of its own (an ``OnExceptionCheckpoint`` may hold a newer "last")."""
    return _own_default_file(config, "last.ckpt")


def best_checkpoint_file(config: Any) -> Path | None:
    """The ``best.ckpt`` the project's default checkpoint callbacks write for this Trainer config (see
    :func:`default_checkpoint_dir`); ``None`` when the config brings a checkpoint callback of its own."""
    return _own_default_file(config, "best.ckpt")


def complete_trainer_config(config: dict[str, Any], log_subdir: str | None = None) -> dict[str, Any]:
    """Fill in the project's defaults where a Trainer config leaves them open.

    Atomic checkpoint I/O (always), last+best checkpoints, TensorBoard + CSV loggers, a progress bar, and
    :class:`~medusa_mtl.engine.reproducibility.EpochReseed` (a resumed epoch draws the same random numbers).
    The default loggers write into ``default_root_dir``, or its sub-folder ``log_subdir`` when given (``medusa
    validate|test`` use ``validate`` / ``test``, so that they leave the fit's ``metrics.csv`` and logs in place).
    """
    from lightning.pytorch.loggers import TensorBoardLogger
    from lightning.pytorch.plugins.io import CheckpointIO

    from .checkpoints import AtomicCheckpointIO

    config = dict(config)
    plugins = config.get("plugins") or []
    plugins = list(plugins) if isinstance(plugins, list | tuple) else [plugins]
    if not any(isinstance(p, CheckpointIO) for p in plugins):
        plugins.append(AtomicCheckpointIO())
    config["plugins"] = plugins
    root = config.get("default_root_dir") or "runs"
    if config.get("logger") in (None, True):
        # the CSV logger keeps an interrupted run's rows on resume (and its raw log as metrics.1.csv, ...)
        version = log_subdir or ""
        config["logger"] = [TensorBoardLogger(root, name="", version=version),
                            HistoryCSVLogger(root, name="", version=version)]
    callbacks = _callbacks(config)
    checkpoint_dir = default_checkpoint_dir(config)
    if checkpoint_dir is not None:
        callbacks.extend(default_checkpoint_callbacks(checkpoint_dir))
    if not any(isinstance(c, IterationResumeFix) for c in callbacks):
        callbacks.append(IterationResumeFix())  # before EpochReseed and the loggers read the epoch
    if not any(isinstance(c, EpochReseed) for c in callbacks):
        callbacks.append(EpochReseed())  # exact resume: per-epoch seeds (medusa_mtl.engine.reproducibility)
    loggers = config["logger"] if isinstance(config.get("logger"), list | tuple) else [config.get("logger")]
    history = any(isinstance(lg, HistoryCSVLogger) for lg in loggers)
    if history and not any(isinstance(c, LogHistory) for c in callbacks):
        callbacks.append(LogHistory())  # metrics.csv: every epoch exactly once across a resume
    config["callbacks"] = callbacks
    return config


def default_device() -> str:
    """The device :func:`make_trainer` trains on when no ``accelerator`` is given: ``"cuda"`` where CUDA is
    available, else ``"cpu"`` (never MPS: that default is the CPU)."""
    return "cuda" if torch.cuda.is_available() else "cpu"


def trainer_device(trainer: Any) -> torch.device:
    """The device ``trainer`` runs its module on (the strategy's root device: ``cuda:0`` for a one-GPU fit).

    Lightning moves the module back to the CPU when ``fit`` ends; code that evaluates after a fit (the
    benchmark's and ``medusa ufl``'s test scores) asks the trainer where the run trained, not the module."""
    return trainer.strategy.root_device


def make_trainer(**kwargs: Any) -> L.Trainer:
    """A ``lightning.Trainer`` with the project's defaults (see :func:`complete_trainer_config`); the accelerator
    is the CPU unless CUDA is available (:func:`default_device`)."""
    kwargs.setdefault("accelerator", "cpu" if default_device() == "cpu" else "auto")
    return L.Trainer(**complete_trainer_config(kwargs))


class TrainClock(L.Callback):
    """Training seconds of the epochs done, kept in a small JSON file beside the checkpoints, so that a run
    resumed after an interruption can report the time of all its epochs, not only of the resumed part.

    ``resumed=False`` starts from zero (a file left by an earlier attempt is ignored)."""

    def __init__(self, path: str | os.PathLike[str], resumed: bool) -> None:
        self.path = Path(path)
        self.before = float(json.loads(self.path.read_text())["train_time_s"]) if resumed and self.path.is_file() \
            else 0.0
        self.t0 = time.time()

    def total(self) -> float:
        """Seconds of training so far, the interrupted attempts' kept epochs included."""
        return self.before + time.time() - self.t0

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if not trainer.is_global_zero:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_name(self.path.name + ".tmp")
        tmp.write_text(json.dumps({"train_time_s": self.total()}))
        tmp.replace(self.path)


class EpochSummary(L.Callback):
    """Prints one line per epoch (losses, main metrics, time): progress for runs without a progress bar."""

    def __init__(self, prefix: str = "") -> None:
        self.prefix = prefix
        self._t0 = time.time()

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._t0 = time.time()

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        # Runs after the epoch's validation, so the validation numbers printed are this epoch's.
        if not trainer.is_global_zero:
            return
        m = trainer.callback_metrics
        parts = [f"{k}={float(v):.4g}" for k, v in m.items()
                 if k in ("train/loss", "val/loss") or (k.startswith("val/") and k.count("/") == 2
                                                        and k.rsplit("/", 1)[1] in ("mIoU", "rmse", "mean", "odsF"))]
        print(f"{self.prefix} epoch {trainer.current_epoch + 1}/{trainer.max_epochs} {' '.join(parts)} "
              f"({time.time() - self._t0:.0f} s)", flush=True)
