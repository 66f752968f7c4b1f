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


def _dataset_key(dataset: str) -> str:
    key = _DATASET_ALIASES.get(dataset.lower())
    if key is None:
        raise ValueError(f"unknown dataset {dataset!r}; expected one of {sorted(set(_DATASET_ALIASES))}")
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
    names = [t.strip() for t in tasks.split(",")] if isinstance(tasks, str) else list(tasks)
    names = [n for n in names if n]
    if not names:
        raise ValueError("the task list is empty")
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
    )
)


# ----------------------------------------------------------------------------------------------------------
# metrics of tasks and the multi-task score
# ----------------------------------------------------------------------------------------------------------


def delta_m(
    results: Mapping[str, Mapping[str, Any]],
    single_task: Mapping[str, Mapping[str, Any]],
    main_tasks: Iterable[str],
) -> float:
    """Multi-task performance Δm in percent (SPEC §2, survey Eq. 10).

    ``Δm = 100 / T · Σ_t s_t · (M_t − M_st,t) / M_st,t`` over the main tasks t, with M the task's Δm metric
    (``get_task(t).dm_metric``) and s_t = ``get_task(t).sign`` (+1 higher-is-better, −1 otherwise).

    Example (the formula check of SPEC §2, on the paper's published MT-baseline and ST figures):
        >>> round(delta_m({"semseg": {"mIoU": 33.21}, "depth": {"rmse": 0.614}},
        ...               {"semseg": {"mIoU": 34.57}, "depth": {"rmse": 0.606}}, ["semseg", "depth"]), 2)
        -2.63
    """
    tasks = list(main_tasks)
    if not tasks:
        raise ValueError("delta_m: main_tasks is empty")
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
