"""The trivial predictor: the best *constant* prediction, fitted on the training split, scored like a model.

A constant prediction ignores the image. It is the floor a learned model must clear before its numbers mean
anything:

* class tasks (semseg, human parts): the majority class of the training labels (valid pixels), everywhere;
* depth (and any other dense regression task): the mean of the valid training values;
* binary tasks (saliency): the better on the training split of "everything positive" and "nothing positive".

The constant is written as a raw network output and scored on the test split through the very same
postprocessing and streaming metric as a trained model (predictions at the label's resolution).

Example:
    >>> from medusa_mtl.reports.trivial import trivial_predictor
    >>> trivial_predictor("nyud", "data/synthetic/NYUD_MT", ["semseg", "depth"])  # doctest: +SKIP
    {'semseg': {'mIoU': 3.1, ...}, 'depth': {'rmse': 1.13, ...}}
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from ..data.datasets import build_dataset
from ..data.formats import read_split
from ..tasks import IGNORE_INDEX, get_task

_LOGIT = 20.0  # a confident constant logit (sigmoid/softmax saturate; the argmax is what counts)


def _raw_constant(task_name: str, dataset: str, value: float, shape: tuple[int, int]) -> torch.Tensor:
    """A raw output [1, C, H, W] whose postprocessed prediction is the constant ``value``."""
    task = get_task(task_name)
    h, w = shape
    if task.kind == "classes":
        raw = torch.full((1, task.channels(dataset), h, w), -_LOGIT)
        raw[:, int(value)] = _LOGIT
        return raw
    if task.kind == "binary":
        return torch.full((1, 1, h, w), _LOGIT if value > 0.5 else -_LOGIT)
    if task.name == "depth":
        return torch.full((1, 1, h, w), float(value))
    raise ValueError(f"trivial predictor: task {task_name!r} ({task.kind}) has no constant predictor here")


def _score(task_name: str, dataset: str, samples: Any, value: float) -> dict[str, Any]:
    task = get_task(task_name)
    metric = task.make_metric(dataset)
    for sample in samples:
        target = sample[task_name].unsqueeze(0)
        raw = _raw_constant(task_name, dataset, value, tuple(target.shape[-2:]))
        metric.update(task.postprocess(raw), target)
    return metric.compute()


def _fit(task_name: str, dataset: str, samples: list[dict[str, Any]]) -> float:
    task = get_task(task_name)
    if task.kind == "classes":
        counts = torch.zeros(task.channels(dataset), dtype=torch.float64)
        for s in samples:
            y = s[task_name]
            y = y[y != IGNORE_INDEX].long()
            counts += torch.bincount(y.flatten(), minlength=len(counts))[: len(counts)].double()
        return float(counts.argmax())
    if task.kind == "binary":
        key = task.dm_metric
        scores = {v: float(_score(task_name, dataset, samples, v)[key]) for v in (0.0, 1.0)}
        best = max(scores, key=lambda v: scores[v] * task.sign)
        return best
    if task.name == "depth":
        total, n = 0.0, 0
        for s in samples:
            y = s[task_name]
            valid = y > 0
            total += float(y[valid].double().sum())
            n += int(valid.sum())
        return total / max(n, 1)
    raise ValueError(f"trivial predictor: task {task_name!r} ({task.kind}) has no constant predictor here")


def trivial_predictor(
    dataset: str, root: str | Path, tasks: Sequence[str], train_ids: Sequence[str] | None = None,
    test_ids: Sequence[str] | None = None, size: Sequence[int] | None = None,
) -> dict[str, dict[str, Any]]:
    """Fit the constant predictor of each task on ``train_ids`` (default: the train split) and score it on
    ``test_ids`` (default: the val split, the test split of these datasets). Returns
    ``{task: {metric: value, ..., "constant": value}}``."""
    root = Path(root)
    train_ids = list(train_ids) if train_ids is not None else read_split(root, dataset, "train")
    test_ids = list(test_ids) if test_ids is not None else read_split(root, dataset, "val")
    kwargs: dict[str, Any] = {"drop_images_without_person": False} if dataset == "pascal" else {}
    train = [s for s in build_dataset(dataset, root, "train", list(tasks), train=False, size=size,
                                      ids=train_ids, **kwargs)]
    test = [s for s in build_dataset(dataset, root, "val", list(tasks), train=False, size=size,
                                     ids=test_ids, **kwargs)]
    out: dict[str, dict[str, Any]] = {}
    for t in tasks:
        value = _fit(t, dataset, train)
        res = _score(t, dataset, test, value)
        res = {k: v for k, v in res.items() if isinstance(v, int | float)}
        res["constant"] = value
        out[t] = res
    return out
