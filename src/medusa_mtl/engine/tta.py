"""Test-time flip averaging: score (or predict from) the mean of a network's raw outputs for an image and for its
mirror image, mirrored back.

Not part of SPEC's evaluation, which scores one output per image; off unless asked for (``test_flip`` of
:class:`~medusa_mtl.engine.training.MultiTaskModule`, ``--flip`` of ``medusa evaluate`` / ``medusa predict``,
``test_flip`` of a benchmark profile). The mirror of each output is the one the train augmentation applies to
that task's label (:meth:`medusa_mtl.tasks.Task.mirror`: a normal's x component changes sign). Class scores are
averaged as logits, before the argmax, and every output is averaged at the network's output size, the input's:
mirroring commutes with the later resize to the label's size.

Example:
    >>> import torch
    >>> from medusa_mtl.models import create_model
    >>> net = create_model("mt_baseline", tasks="semseg,depth", dataset="nyud").eval()
    >>> out = flip_averaged(net, torch.zeros(1, 3, 64, 64), ["semseg", "depth"])
    >>> sorted(out), tuple(out["depth"].shape)
    (['depth', 'semseg'], (1, 1, 64, 64))
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch

from ..tasks import get_task

__all__ = ["average_mirrored", "flip_averaged"]


def _task_name(key: str) -> str:
    return key.split(":")[-1]  # "<dataset>:<task>" where a UFL chain's two datasets share a task name


def average_mirrored(plain: Mapping[str, Any], mirrored: Mapping[str, Any],
                     tasks: Sequence[str]) -> dict[str, torch.Tensor]:
    """``{task: (plain[task] + mirror(mirrored[task])) / 2}`` (float32) for each of ``tasks``, where ``mirrored``
    holds the outputs for the mirror images. Keys may be ``"<dataset>:<task>"``; other outputs (deep
    supervision) are left out."""
    out: dict[str, torch.Tensor] = {}
    for key in tasks:
        if key not in plain or key not in mirrored:
            raise KeyError(f"the model produced no output for its task {key!r} (outputs: {sorted(plain)})")
        task = get_task(_task_name(key))
        out[key] = (plain[key].float() + task.mirror(mirrored[key].float())) * 0.5
    return out


def flip_averaged(forward: Callable[[torch.Tensor], Mapping[str, Any]], x: torch.Tensor,
                  tasks: Sequence[str]) -> dict[str, torch.Tensor]:
    """The flip-averaged raw outputs of ``tasks`` for the batch ``x``: ``forward`` (a network, or a UFL network's
    ``forward_all``) runs on ``x`` and on its mirror image; see :func:`average_mirrored`."""
    return average_mirrored(forward(x), forward(x.flip(-1)), tasks)
