"""What a task is: output channels per dataset, loss and weight, metric, Δm metric and sign, postprocessing.

Each of the six tasks of SPEC §5 is defined once, here. Adding a task means adding one :class:`Task` to the
registry with :func:`register_task`; models, losses, metrics, training and reports read everything from it.

Example:
    >>> from medusa_mtl.tasks import get_task
    >>> t = get_task("semseg")
    >>> t.channels("nyud"), t.loss_weight("nyud"), t.dm_metric, t.higher_is_better
    (40, 1.0, 'mIoU', True)
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F

from . import losses, metrics
from .metrics import StreamingMetric
from .resize import upsample_output

IGNORE_INDEX = losses.IGNORE_INDEX


def _argmax(raw: torch.Tensor) -> torch.Tensor:
    return raw.argmax(dim=1)


def _relu(raw: torch.Tensor) -> torch.Tensor:
    return raw.clamp_min(0.0)


def _unit(raw: torch.Tensor) -> torch.Tensor:
    return F.normalize(raw, p=2, dim=1, eps=1e-12)


def _sigmoid(raw: torch.Tensor) -> torch.Tensor:
    return torch.sigmoid(raw)


def _identity(raw: torch.Tensor) -> torch.Tensor:
    return raw


@dataclass(frozen=True)
class Task:
    """A dense prediction task.

    Attributes:
        name: registry key, also the key of the task in samples and model outputs.
        out_channels: output channels per dataset name (a task absent from a dataset has no entry).
        weights: loss weight per dataset name.
        loss_fn: ``loss_fn(raw_pred_at_label_size, label) -> scalar``.
        metric_name: name of the metric class in :mod:`medusa_mtl.metrics`.
        dm_metric: key of the metric result that enters Δm.
        higher_is_better: sign s_t of Δm (+1 if True, -1 otherwise).
        postprocess_fn: raw network output -> prediction consumed by the metric and by ``predict``.
        kind: "classes" (int64 label map), "dense" (float map) or "binary" (float {0,1} map).
        display: human-readable name for tables.
        metric_kwargs: extra keyword arguments of the metric (per dataset where needed).
        label_kind: what the label is, for readers, transforms and pictures: one of :data:`LABEL_KINDS`
            (``segmentation``, ``binary``, ``depth``, ``normals``, ``edge``, ``regression``).
        builtin: one of the six tasks of SPEC §5 (``False`` for tasks declared in a ``dataset.yaml``).
    """

    name: str
    out_channels: dict[str, int]
    weights: dict[str, float]
    loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
    metric_name: str
    dm_metric: str
    higher_is_better: bool
    postprocess_fn: Callable[[torch.Tensor], torch.Tensor]
    kind: str
    display: str
    interpolation: str = "bilinear"
    metric_kwargs: dict[str, Any] = field(default_factory=dict)
    label_kind: str = "regression"
    builtin: bool = False

    def channels(self, dataset: str) -> int:
        """Number of output channels of this task on ``dataset``."""
        try:
            return self.out_channels[_dataset_key(dataset)]
        except KeyError:
            raise ValueError(
                f"task {self.name!r} is not defined for dataset {dataset!r}; "
                f"it exists for: {sorted(self.out_channels)}"
            ) from None

    def loss_weight(self, dataset: str) -> float:
        """Loss weight of this task on ``dataset`` (SPEC §5)."""
        try:
            return self.weights[_dataset_key(dataset)]
        except KeyError:
            raise ValueError(
                f"task {self.name!r} has no loss weight for dataset {dataset!r}; "
                f"it has weights for: {sorted(self.weights)}"
            ) from None

    def loss(self, raw: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """Loss of a raw output that is already at the label's resolution."""
        return self.loss_fn(raw, target)

    def mirror(self, raw: torch.Tensor) -> torch.Tensor:
        """Mirror a raw output [B,C,H,W] left-right, as the train augmentation's flip mirrors this task's label:
        a normal's x component changes sign; every other kind is mirrored as it is."""
        out = raw.flip(-1)
        if self.label_kind == "normals":
            out = torch.cat([-out[:, :1], out[:, 1:]], dim=1)
        return out

    def postprocess(self, raw: torch.Tensor) -> torch.Tensor:
        """Turn a raw output [B,C,H,W] into a prediction (class ids, depth, unit normals, probabilities)."""
        return self.postprocess_fn(raw)

    @property
    def sign(self) -> int:
        """+1 when higher is better, -1 otherwise (Δm sign)."""
        return 1 if self.higher_is_better else -1

    def make_metric(self, dataset: str, **options: Any) -> StreamingMetric:
        """A fresh streaming metric for this task on ``dataset``; ``options`` override the metric's keyword
        arguments (e.g. ``max_dist_ratio=0.011`` for edges, ``beta2=1.0`` for saliency)."""
        cls = getattr(metrics, self.metric_name)
        kwargs = {**self.metric_kwargs, **options}
        if self.kind == "classes":
            kwargs["num_classes"] = self.channels(dataset)
        return cls(**kwargs)

    def upsample(self, raw: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
        """Resize a raw output to ``size`` (bilinear, align_corners=False) if it is not there already.

        Multi-channel maps come back channels_last on the CPU (faster there, same values up to float rounding;
        see :func:`medusa_mtl.resize.upsample_output`)."""
        return upsample_output(raw, size)


# Dataset name aliases: the synthetic benchmark uses the NYUD and PASCAL channel/weight settings.
_DATASET_ALIASES = {
    "nyud": "nyud",
    "nyudv2": "nyud",
    "synthetic_nyud": "nyud",
    "pascal": "pascal",
    "pascal_context": "pascal",
    "pascalcontext": "pascal",
    "synthetic_pascal": "pascal",
}
_BUILTIN_DATASET_ALIASES = frozenset(_DATASET_ALIASES)


def _dataset_key(dataset: str) -> str:
    key = _DATASET_ALIASES.get(dataset.lower())
    if key is None:
        hint = ""
        if dataset.endswith((".yaml", ".yml")):
            # create_model and the task registry take declared datasets by name, once read
            hint = (f"; a dataset.yaml is read (and its tasks registered) by "
                    f"medusa_mtl.data.datasets.get_dataset_info({dataset!r}), whose .name is then accepted here")
        raise ValueError(f"unknown dataset {dataset!r}; expected one of {sorted(set(_DATASET_ALIASES))}{hint}")
    return key


TASKS: dict[str, Task] = {}


def register_task(task: Task) -> Task:
    """Add ``task`` to the registry (its name must be new). Returns it, so it can be used as a value."""
    if task.name in TASKS:
        raise ValueError(f"task {task.name!r} is already registered")
    TASKS[task.name] = task
    return task


def get_task(name: str) -> Task:
    """The registered task called ``name``; a clear error lists the known tasks otherwise."""
    try:
        return TASKS[name]
    except KeyError:
        raise ValueError(f"unknown task {name!r}; known tasks: {', '.join(TASKS)}") from None


def list_tasks(dataset: str | None = None) -> list[str]:
    """Names of all registered tasks, or of those defined on ``dataset``."""
    if dataset is None:
        return list(TASKS)
    key = _dataset_key(dataset)
    return [n for n, t in TASKS.items() if key in t.out_channels]


def parse_tasks(tasks: str | Iterable[str], dataset: str | None = None) -> list[str]:
    """Validate a task list given as ``"a,b"`` or a sequence; check it against ``dataset`` if given."""
    if tasks is None or not isinstance(tasks, str | Iterable):
        raise ValueError(f"tasks: expected task names (\"semseg,depth\" or a list), got {tasks!r}")
    names = [t.strip() for t in tasks.split(",")] if isinstance(tasks, str) else list(tasks)
    bad = [n for n in names if not isinstance(n, str)]
    if bad:
        raise ValueError(f"tasks: expected task names (strings), got {bad[0]!r} in {names!r}")
    names = [n for n in names if n]
    if not names:
        raise ValueError("the task list is empty")
    if isinstance(dataset, str) and dataset.endswith((".yaml", ".yml")) and not is_declared_dataset(dataset):
        _dataset_key(dataset)  # a path given for a name: say how to read it before its tasks are called unknown
    seen: list[str] = []
    for n in names:
        task = get_task(n)
        if dataset is not None:
            task.channels(dataset)
        if n in seen:
            raise ValueError(f"task {n!r} is listed twice")
        seen.append(n)
    return seen


register_task(
    Task(
        name="semseg",
        out_channels={"nyud": 40, "pascal": 21},
        weights={"nyud": 1.0, "pascal": 1.0},
        loss_fn=losses.cross_entropy,
        metric_name="ConfusionMIoU",
        dm_metric="mIoU",
        higher_is_better=True,
        postprocess_fn=_argmax,
        kind="classes",
        display="Seg mIoU",
        label_kind="segmentation",
        builtin=True,
    )
)
register_task(
    Task(
        name="depth",
        out_channels={"nyud": 1},
        weights={"nyud": 1.0},
        loss_fn=losses.depth_l1,
        metric_name="DepthMetric",
        dm_metric="rmse",
        higher_is_better=False,
        postprocess_fn=_relu,
        kind="dense",
        display="Depth RMSE",
        label_kind="depth",
        builtin=True,
    )
)
register_task(
    Task(
        name="normals",
        out_channels={"nyud": 3, "pascal": 3},
        weights={"nyud": 10.0, "pascal": 10.0},
        loss_fn=losses.normals_l1,
        metric_name="NormalsMetric",
        dm_metric="mean",
        higher_is_better=False,
        postprocess_fn=_unit,
        kind="dense",
        display="Normals mean angle",
        label_kind="normals",
        builtin=True,
    )
)
register_task(
    Task(
        name="edge",
        out_channels={"nyud": 1, "pascal": 1},
        weights={"nyud": 50.0, "pascal": 50.0},
        loss_fn=losses.edge_bce,
        metric_name="EdgeMetric",
        dm_metric="odsF",
        higher_is_better=True,
        postprocess_fn=_sigmoid,
        kind="binary",
        display="Edge odsF",
        label_kind="edge",
        builtin=True,
    )
)
register_task(
    Task(
        name="sal",
        out_channels={"pascal": 1},
        weights={"pascal": 5.0},
        loss_fn=losses.saliency_bce,
        metric_name="SaliencyMetric",
        dm_metric="mIoU",
        higher_is_better=True,
        postprocess_fn=_sigmoid,
        kind="binary",
        display="Sal mIoU",
        label_kind="binary",
        builtin=True,
    )
)
register_task(
    Task(
        name="human_parts",
        out_channels={"pascal": 7},
        weights={"pascal": 2.0},
        loss_fn=losses.cross_entropy,
        metric_name="ConfusionMIoU",
        dm_metric="mIoU",
        higher_is_better=True,
        postprocess_fn=_argmax,
        kind="classes",
        display="Parts mIoU",
        label_kind="segmentation",
        builtin=True,
    )
)


# ----------------------------------------------------------------------------------------------------------
# task kinds: tasks declared in a dataset.yaml (medusa_mtl.data.generic)
# ----------------------------------------------------------------------------------------------------------

LABEL_KINDS = ("segmentation", "binary", "depth", "normals", "edge", "regression")
"""The kinds of task a ``dataset.yaml`` can declare; every task (the built-in ones too) has one."""


@dataclass(frozen=True)
class TaskKind:
    """What a kind of task brings: losses to choose from (the first is the default), the metric, the Δm
    metrics to choose from with their direction (the first is the default), postprocessing, channels."""

    name: str
    losses: dict[str, Callable[[torch.Tensor, torch.Tensor], torch.Tensor]]
    metric_name: str
    dm_metrics: dict[str, bool]  # metric key -> higher is better
    postprocess_fn: Callable[[torch.Tensor], torch.Tensor]
    value_kind: str  # Task.kind: "classes", "dense" or "binary"
    channels: int | None  # fixed channel count, None = declared (classes / regression channels)


TASK_KINDS: dict[str, TaskKind] = {
    "segmentation": TaskKind("segmentation", {"cross_entropy": losses.cross_entropy}, "ConfusionMIoU",
                             {"mIoU": True, "pixel_acc": True}, _argmax, "classes", None),
    "binary": TaskKind("binary", {"balanced_bce": losses.saliency_bce}, "SaliencyMetric",
                       {"mIoU": True, "maxF": True, "maxF1": True}, _sigmoid, "binary", 1),
    "depth": TaskKind("depth", {"l1": losses.depth_l1}, "DepthMetric",
                      {"rmse": False, "abs_rel": False, "log_rmse": False, "delta1": True}, _relu, "dense", 1),
    "normals": TaskKind("normals", {"l1": losses.normals_l1}, "NormalsMetric",
                        {"mean": False, "median": False, "rmse": False}, _unit, "dense", 3),
    "edge": TaskKind("edge", {"balanced_bce": losses.edge_bce}, "EdgeMetric",
                     {"odsF": True, "oisF": True}, _sigmoid, "binary", 1),
    "regression": TaskKind("regression", {"l1": losses.regression_l1, "l2": losses.regression_l2},
                           "RegressionMetric", {"rmse": False, "mae": False}, _identity, "dense", None),
}

_DATASET_NAME_CHARS = set("abcdefghijklmnopqrstuvwxyz0123456789_")


def _loss_name(kind: TaskKind, fn: Callable[..., Any]) -> str | None:
    return next((n for n, f in kind.losses.items() if f is fn), None)


def declare_task(
    name: str,
    kind: str,
    dataset: str,
    channels: int | None = None,
    loss_weight: float = 1.0,
    loss: str | None = None,
    dm_metric: str | None = None,
    display: str | None = None,
) -> Task:
    """Define task ``name`` of ``kind`` on the declared ``dataset`` (see :func:`declare_dataset`).

    A name that already exists (a built-in task such as ``semseg``, or a task of another declared dataset) is
    extended to ``dataset`` when its definition (kind, loss, metric, Δm metric) is the same; a different
    definition under an existing name is an error, as one name means one kind of output everywhere.

    Example:
        >>> declare_dataset("doc_roads")
        >>> t = declare_task("doc_lanes", "segmentation", "doc_roads", channels=3)
        >>> t.channels("doc_roads"), t.dm_metric, t.sign
        (3, 'mIoU', 1)
        >>> forget_dataset("doc_roads")
    """
    if kind not in TASK_KINDS:
        raise ValueError(f"task {name!r}: unknown kind {kind!r}; known kinds: {', '.join(TASK_KINDS)}")
    k = TASK_KINDS[kind]
    key = _dataset_key(dataset)
    if k.channels is not None:
        if channels is not None and int(channels) != k.channels:
            raise ValueError(f"task {name!r}: a {kind} task has {k.channels} channel(s), not {channels}")
        channels = k.channels
    if channels is None or int(channels) < 1 or (kind == "segmentation" and int(channels) < 2):
        what = "at least 2 classes" if kind == "segmentation" else "channels >= 1"
        raise ValueError(f"task {name!r}: a {kind} task needs {what}, got {channels!r}")
    channels = int(channels)
    loss = loss or next(iter(k.losses))
    if loss not in k.losses:
        raise ValueError(f"task {name!r}: loss {loss!r} is not one of {list(k.losses)} for a {kind} task")
    dm_metric = dm_metric or next(iter(k.dm_metrics))
    if dm_metric not in k.dm_metrics:
        raise ValueError(f"task {name!r}: dm_metric {dm_metric!r} is not one of {list(k.dm_metrics)} "
                         f"for a {kind} task")
    weight = float(loss_weight)
    if not math.isfinite(weight) or weight < 0:
        raise ValueError(f"task {name!r}: loss_weight must be a finite number >= 0, got {loss_weight!r}")
    metric_kwargs = {"channels": channels} if kind == "regression" else {}
    existing = TASKS.get(name)
    if existing is not None:
        same = (existing.label_kind == kind and existing.metric_name == k.metric_name
                and _loss_name(k, existing.loss_fn) == loss and existing.dm_metric == dm_metric
                and existing.metric_kwargs == metric_kwargs)
        if not same:
            where = "a built-in task" if existing.builtin else f"declared on {sorted(existing.out_channels)}"
            raise ValueError(
                f"task {name!r} ({kind}, loss {loss}, dm_metric {dm_metric}) conflicts with the task of that name "
                f"({where}: {existing.label_kind}, loss {_loss_name(TASK_KINDS[existing.label_kind], existing.loss_fn)}"
                f", dm_metric {existing.dm_metric}); give the task another name"
            )
        if key in existing.out_channels and existing.out_channels[key] != channels:
            raise ValueError(f"task {name!r} is already defined on {dataset!r} with "
                             f"{existing.out_channels[key]} channels")
        existing.out_channels[key] = channels
        existing.weights[key] = weight
        return existing
    return register_task(Task(
        name=name, out_channels={key: channels}, weights={key: weight}, loss_fn=k.losses[loss],
        metric_name=k.metric_name, dm_metric=dm_metric, higher_is_better=k.dm_metrics[dm_metric],
        postprocess_fn=k.postprocess_fn, kind=k.value_kind, display=display or f"{name} {dm_metric}",
        metric_kwargs=metric_kwargs, label_kind=kind, builtin=False,
    ))


def check_dataset_name(name: str) -> None:
    """Raise ``ValueError`` unless ``name`` can name a declared dataset (see :func:`declare_dataset`)."""
    if not isinstance(name, str) or not name or not set(name) <= _DATASET_NAME_CHARS or not name[0].isalpha():
        raise ValueError(f"dataset name {name!r}: use lower-case letters, digits and '_', starting with a letter")
    if name in _BUILTIN_DATASET_ALIASES:
        raise ValueError(f"dataset name {name!r} is reserved for a built-in dataset; choose another name")


def declare_dataset(name: str) -> None:
    """Make ``name`` a dataset key tasks can be defined on (lower case letters, digits, ``_``). The names of
    the built-in datasets (``nyud``, ``pascal`` and their aliases) are reserved. Declaring it again is a no-op."""
    check_dataset_name(name)
    _DATASET_ALIASES[name] = name


def forget_dataset(name: str) -> None:
    """Undo :func:`declare_dataset` and every :func:`declare_task` on it (declared tasks left on no dataset
    are removed from the registry). Unknown names are ignored; built-in datasets cannot be forgotten."""
    if name in _BUILTIN_DATASET_ALIASES or name not in _DATASET_ALIASES:
        return
    for task_name in list(TASKS):
        task = TASKS[task_name]
        task.out_channels.pop(name, None)
        task.weights.pop(name, None)
        if not task.builtin and not task.out_channels:
            del TASKS[task_name]
    del _DATASET_ALIASES[name]


def is_declared_dataset(name: str) -> bool:
    """True for a dataset made by :func:`declare_dataset` (not a built-in one)."""
    return name in _DATASET_ALIASES and name not in _BUILTIN_DATASET_ALIASES


# ----------------------------------------------------------------------------------------------------------
# metrics of tasks and the multi-task score
# ----------------------------------------------------------------------------------------------------------


def delta_m(
    results: Mapping[str, Mapping[str, Any]],
    single_task: Mapping[str, Mapping[str, Any]],
    main_tasks: str | Iterable[str],
) -> float:
    """Multi-task performance Δm in percent (SPEC §2, survey Eq. 10).

    ``Δm = 100 / T · Σ_t s_t · (M_t − M_st,t) / M_st,t`` over the main tasks t, with M the task's Δm metric
    (``get_task(t).dm_metric``) and s_t = ``get_task(t).sign`` (+1 higher-is-better, −1 otherwise).
    ``main_tasks``: a list or ``"a,b"``, each task once.

    Example (the formula check of SPEC §2, on the paper's published MT-baseline and ST figures):
        >>> round(delta_m({"semseg": {"mIoU": 33.21}, "depth": {"rmse": 0.614}},
        ...               {"semseg": {"mIoU": 34.57}, "depth": {"rmse": 0.606}}, ["semseg", "depth"]), 2)
        -2.63
    """
    if not isinstance(main_tasks, str):
        main_tasks = list(main_tasks)
    if not main_tasks or (isinstance(main_tasks, str) and not main_tasks.strip(" ,")):
        raise ValueError("delta_m: main_tasks is empty")
    tasks = parse_tasks(main_tasks)  # "a,b" or a list; known tasks, none listed twice (it would count twice)
    total = 0.0
    for name in tasks:
        task = get_task(name)
        key = task.dm_metric
        values = []
        for label, table in (("results", results), ("single_task", single_task)):
            if name not in table:
                raise KeyError(f"delta_m: {label} has no entry for task {name!r} (has {sorted(table)})")
            if key not in table[name]:
                raise KeyError(f"delta_m: {label}[{name!r}] lacks the Δm metric {key!r} (has {sorted(table[name])})")
            values.append(float(table[name][key]))
        m, m_st = values
        if m_st == 0 or not math.isfinite(m_st):
            raise ValueError(f"delta_m: single-task {name!r} {key} = {m_st} cannot be a reference")
        total += task.sign * (m - m_st) / m_st
    return 100.0 * total / len(tasks)


def build_metrics(tasks: str | Iterable[str], dataset: str) -> dict[str, StreamingMetric]:
    """A fresh metric per task (``get_task(t).make_metric(dataset)``); ``tasks`` is a list or ``"a,b"``."""
    return {name: get_task(name).make_metric(dataset) for name in parse_tasks(tasks, dataset)}
