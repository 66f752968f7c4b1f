"""``ThroughputMonitor``: training images/s and peak memory of a run, written to a JSON file and the loggers.

Add it to any ``medusa fit`` through a config::

    trainer:
      callbacks:
        - class_path: medusa_mtl.engine.monitor.ThroughputMonitor
          init_args: {json_path: results/fit_speed.json, skip_steps: 10}

The first ``skip_steps`` optimizer steps (warm-up: allocator, cuDNN autotuning, first data loads) are not timed.
Images/s = images of the timed steps / their wall time (data loading included, as a user experiences it). Peak
memory: on CUDA ``torch.cuda.max_memory_allocated`` (reset when timing starts); on the CPU the process's peak
resident set (``ru_maxrss``), which includes everything the process holds.
"""

from __future__ import annotations

import resource
import sys
import time
from typing import Any

import lightning as L
import torch

from ..provenance import write_json

__all__ = ["ThroughputMonitor"]


class ThroughputMonitor(L.Callback):
    """Measure training throughput and peak memory (see the module docstring)."""

    def __init__(self, json_path: str | None = None, skip_steps: int = 10) -> None:
        self.json_path = json_path
        self.skip_steps = int(skip_steps)
        self._t0: float | None = None
        self._images = 0
        self._steps = 0
        self._batch_size: int | None = None

    def _device(self, pl_module: L.LightningModule) -> torch.device:
        return next(pl_module.parameters()).device

    def on_train_batch_start(self, trainer: L.Trainer, pl_module: L.LightningModule, batch: Any,
                             batch_idx: int) -> None:
        if self._t0 is None and trainer.global_step >= self.skip_steps:
            device = self._device(pl_module)
            if device.type == "cuda":
                torch.cuda.synchronize(device)
                torch.cuda.reset_peak_memory_stats(device)
            self._t0 = time.perf_counter()

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any,
                           batch_idx: int) -> None:
        if self._t0 is None:
            return
        image = batch["image"] if isinstance(batch, dict) else batch[0]
        self._batch_size = int(image.shape[0])
        self._images += self._batch_size
        self._steps += 1

    def results(self, pl_module: L.LightningModule) -> dict[str, Any]:
        device = self._device(pl_module)
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        elapsed = time.perf_counter() - self._t0 if self._t0 is not None else None
        out: dict[str, Any] = {"device": str(device), "timed_steps": self._steps, "batch_size": self._batch_size,
                               "seconds": elapsed,
                               "images_per_s": self._images / elapsed if elapsed and self._images else None}
        if device.type == "cuda":
            out["peak_memory_mib"] = torch.cuda.max_memory_allocated(device) / 2**20
            out["peak_memory_kind"] = "torch.cuda.max_memory_allocated"
        else:
            rss_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / (1024 if sys.platform == "darwin" else 1)
            out["peak_memory_mib"] = rss_kib / 1024
            out["peak_memory_kind"] = "process peak RSS (ru_maxrss)"
        return out

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        result = self.results(pl_module)
        if result["images_per_s"] is not None:
            for logger in trainer.loggers:
                logger.log_metrics({"speed/images_per_s": result["images_per_s"],
                                    "speed/peak_memory_mib": result["peak_memory_mib"]}, step=trainer.global_step)
        if self.json_path and trainer.is_global_zero:
            write_json(self.json_path, result)
