"""Exact resume and multi-process determinism: randomness as a function of (seed, epoch, sample).

A run killed at any moment and resumed from its last (end-of-epoch) checkpoint must end with the same weights
and metrics as an uninterrupted run of the same seed. Lightning restores weights, optimiser, scheduler and loop
counters, but not the random streams: a resumed epoch would draw another shuffle and other augmentations. Here
every random draw of training is derived from the seed and the epoch instead of from a stream's history:

* :class:`EpochShuffleSampler` shuffles with a generator seeded from ``(seed, epoch)`` (Lightning calls
  ``set_epoch`` before every epoch, a resumed one included; the training loader also starts it at the fit's
  first epoch, because workers prefetch from it before that first ``set_epoch``) and shards the order across
  DDP ranks. It yields ``(index, sample_seed)`` pairs: ``sample_seed`` is derived from ``(seed, epoch, index)``.
* :class:`SeededSamples` wraps the training dataset: ``dataset[(index, sample_seed)]`` reads the sample with
  torch's CPU generator temporarily seeded by ``sample_seed`` (the train transform draws its augmentation from
  torch's generator). The augmentation of a sample therefore depends neither on the DataLoader workers (also
  persistent ones), nor on the order of reading, nor on how many processes share the data.
* :class:`EpochReseed` re-seeds torch / NumPy / ``random`` at the start of every training epoch from
  ``(seed, epoch, rank)``, for randomness inside the model (dropout, drop-path).
* :class:`HistoryCSVLogger` (with the :class:`LogHistory` callback) makes ``metrics.csv`` survive a resume: every
  epoch exactly once (Lightning's CSV logger deletes the file when the folder is reused); the interrupted run's
  raw log is kept as ``metrics.1.csv``, ``metrics.2.csv``, ...
* :class:`EvalShardSampler` shards evaluation data across DDP ranks **without** padding: every image is scored
  exactly once, so metrics computed by N processes (merged by ``StreamingMetric.sync``) equal those of one
  process. (PyTorch's ``DistributedSampler`` pads with duplicates when the dataset size is not a multiple of the
  number of processes, which would count some images twice.)

The seed is the one given to ``seed_everything`` (``--seed_everything``; Lightning exports it as
``PL_GLOBAL_SEED``), 0 when none was set.
"""

from __future__ import annotations

import csv
import math
import os
import random
import warnings
from collections.abc import Iterator, Sized
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import torch
from lightning.pytorch.loggers import CSVLogger
from lightning.pytorch.loggers.logger import rank_zero_experiment
from lightning.pytorch.utilities import rank_zero_only
from torch.utils.data import Dataset, DistributedSampler

_MASK63 = (1 << 63) - 1


def global_seed(default: int = 0) -> int:
    """The run's seed: ``PL_GLOBAL_SEED`` (set by Lightning's ``seed_everything``) or ``default``."""
    value = os.environ.get("PL_GLOBAL_SEED")
    try:
        return int(value) if value is not None else default
    except ValueError:
        return default


def derive_seed(*keys: int) -> int:
    """A 63-bit seed derived from integer ``keys`` (NumPy ``SeedSequence``: well mixed, platform independent)."""
    entropy = [int(k) & _MASK63 for k in keys]
    return int(np.random.SeedSequence(entropy).generate_state(1, dtype=np.uint64)[0]) & _MASK63


def seed_all(seed: int) -> None:
    """Seed torch (CPU and CUDA), NumPy's global generator and Python's ``random``."""
    torch.manual_seed(seed)
    np.random.seed(seed % (1 << 32))
    random.seed(seed)


def world_and_rank(trainer: Any) -> tuple[int, int]:
    """``(world_size, global_rank)`` of a Lightning trainer; ``(1, 0)`` without one."""
    if trainer is None:
        return 1, 0
    return max(int(getattr(trainer, "world_size", 1) or 1), 1), int(getattr(trainer, "global_rank", 0) or 0)


class EpochShuffleSampler(DistributedSampler):
    """Training sampler: a permutation drawn from ``(seed, epoch)``, sharded across ``num_replicas`` ranks.

    It subclasses ``DistributedSampler`` so that Lightning keeps it under DDP (instead of replacing it), and it
    works the same with one process (``num_replicas=1``). Like ``DistributedSampler`` it pads the permutation by
    repeating its start so that every rank gets the same number of samples (training needs equal step counts).
    Items are ``(dataset_index, sample_seed)`` pairs for :class:`SeededSamples`.

    Args:
        dataset: the (sized) training dataset.
        seed: base seed (usually :func:`global_seed`).
        num_replicas: number of processes (DDP world size).
        rank: this process's rank.
    """

    def __init__(self, dataset: Sized, seed: int = 0, num_replicas: int = 1, rank: int = 0) -> None:
        super().__init__(dataset, num_replicas=num_replicas, rank=rank, shuffle=True, seed=seed, drop_last=False)

    def permutation(self, epoch: int | None = None) -> list[int]:
        """The full (unsharded, unpadded) order of ``epoch`` (default: the current one)."""
        epoch = self.epoch if epoch is None else epoch
        g = torch.Generator()
        g.manual_seed(derive_seed(self.seed, epoch))
        return torch.randperm(len(self.dataset), generator=g).tolist()  # type: ignore[arg-type]

    def __iter__(self) -> Iterator[tuple[int, int]]:  # type: ignore[override]
        # A generator function: the order is computed at the first ``next``, after Lightning's ``set_epoch``.
        order = self.permutation()
        if order and len(order) < self.total_size:
            reps = -(-self.total_size // len(order))
            order = (order * reps)[: self.total_size]
        epoch = self.epoch
        for index in order[self.rank : self.total_size : self.num_replicas]:
            yield index, derive_seed(self.seed, epoch, index)


class EvalShardSampler(DistributedSampler):
    """Evaluation sampler for DDP: rank ``r`` gets indices ``r, r + N, r + 2N, ...`` (no padding, no duplicate).

    Ranks may differ by one sample. That is safe for evaluation: DDP synchronises buffers only on the first
    forward after a training step, so every rank must run at least one batch, which holds when the dataset has
    at least ``num_replicas`` items (:func:`eval_sampler` falls back to padding otherwise).
    """

    def __init__(self, dataset: Sized, num_replicas: int, rank: int) -> None:
        super().__init__(dataset, num_replicas=num_replicas, rank=rank, shuffle=False, drop_last=False)
        self.num_samples = len(range(rank, len(dataset), num_replicas))
        self.total_size = len(dataset)

    def __iter__(self) -> Iterator[int]:
        return iter(range(self.rank, self.total_size, self.num_replicas))


def eval_sampler(dataset: Sized, trainer: Any) -> DistributedSampler | None:
    """The evaluation sampler for ``trainer``'s process layout: ``None`` for one process (plain sequential
    order); :class:`EvalShardSampler` for several; PyTorch's padding ``DistributedSampler`` (with a warning)
    when there are fewer items than processes, as every rank must run at least one batch."""
    world, rank = world_and_rank(trainer)
    if world <= 1:
        return None
    if len(dataset) < world:
        from lightning.pytorch.utilities import rank_zero_warn

        rank_zero_warn(
            f"evaluation set of {len(dataset)} image(s) is smaller than the {world} processes: it is padded with "
            "duplicates, so its metrics count some images twice (use more evaluation images or fewer processes)"
        )
        return DistributedSampler(dataset, num_replicas=world, rank=rank, shuffle=False)
    return EvalShardSampler(dataset, num_replicas=world, rank=rank)


class SeededSamples(Dataset):
    """Wrap a dataset so that ``ds[(index, seed)]`` is read with torch's CPU generator seeded by ``seed``.

    ``ds[index]`` (a plain integer) reads the sample as the wrapped dataset would. The generator's state is
    saved and restored around the read, so the surrounding random stream is left untouched.
    """

    def __init__(self, dataset: Dataset) -> None:
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)  # type: ignore[arg-type]

    def __getitem__(self, key: int | tuple[int, int]) -> Any:
        if isinstance(key, tuple):
            index, seed = key
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(int(seed))
                return self.dataset[int(index)]
        return self.dataset[key]

    def __repr__(self) -> str:
        return f"SeededSamples({self.dataset!r})"


class EpochReseed(L.Callback):
    """Re-seed torch / NumPy / ``random`` at the start of every training epoch from ``(seed, epoch, rank)``.

    A resumed epoch then draws the same model-side random numbers (dropout, drop-path) as the uninterrupted run.

    Args:
        seed: base seed; ``None`` = :func:`global_seed` at the start of training.
    """

    def __init__(self, seed: int | None = None) -> None:
        self.seed = seed

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        seed = global_seed() if self.seed is None else int(self.seed)
        seed_all(derive_seed(seed, trainer.current_epoch, trainer.global_rank))


class IterationResumeFix(L.Callback):
    """Resume of a run bounded by ``max_steps``: continue with the epoch after the checkpoint's.

    With ``max_steps`` set, Lightning (2.6) treats every restore as a restart inside an epoch: from a checkpoint
    written at the end of an epoch it runs that epoch once more with no batches left and counts it as processed
    again, so the resumed run ended one epoch short (and logged, seeded and shuffled every later epoch as the
    next one). Without ``max_steps`` Lightning takes the same checkpoint as "resumed at the end of an epoch"
    and starts the next one; this callback makes the ``max_steps`` case do the same, before the first epoch.
    It uses Lightning's loop internals; where they differ (another version) it does nothing, and
    ``tests/test_resume.py`` notices.
    """

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        loop = trainer.fit_loop
        try:
            from lightning.pytorch.loops.loop import _Loop

            if not (loop._iteration_based_training() and loop.restarted_on_epoch_end):
                return
            loop.epoch_progress.increment_completed()  # what Lightning does when resuming at an epoch's end
            _Loop.restarting.fset(loop, False)  # also the child loops: the next epoch starts afresh
            loop.reset_restart_stage()
            loop.epoch_loop.reset_restart_stage()
        except (AttributeError, ImportError):
            return


class HistoryCSVLogger(CSVLogger):
    """Lightning's ``CSVLogger`` made resume-safe: after ``--ckpt_path last``, ``metrics.csv`` holds every epoch
    exactly once.

    - Rows are written to disk at the start of every training epoch (:class:`LogHistory`), so a run killed
      mid-epoch has every finished epoch's rows in its file.
    - When a run resumes in the same folder, the existing ``metrics.csv`` is kept as ``metrics.<k>.csv`` (first
      free ``k``: the interrupted run's raw log) instead of being deleted, and its rows of the epochs before
      the resumed one are carried over into the new ``metrics.csv`` (:meth:`restore_history`); the rows of
      the epoch it was killed in are dropped, the resumed run writes them again.
    """

    _previous: list[dict[str, str]] | None = None
    #: set by :class:`LogHistory` when the trainer fits (a validate / test log starts afresh, the earlier one kept
    #: as metrics.<k>.csv)
    fitting: bool = False

    @property
    @rank_zero_experiment
    def experiment(self) -> Any:
        if self._experiment is None:
            metrics = Path(self.log_dir) / "metrics.csv"
            if metrics.is_file():
                k = 1
                while metrics.with_name(f"metrics.{k}.csv").exists():
                    k += 1
                backup = metrics.with_name(f"metrics.{k}.csv")
                os.replace(metrics, backup)
                with backup.open(newline="") as f:
                    self._previous = list(csv.DictReader(f))
        with warnings.catch_warnings():  # "Previous log files ... will be deleted": not any more
            warnings.filterwarnings("ignore", message="Experiment logs directory")
            return super().experiment

    @rank_zero_only
    def restore_history(self, epoch: float) -> None:
        """Carry the previous run's rows of epochs ``< epoch`` (the epoch training starts at) into metrics.csv,
        before anything this run logs."""
        writer = self.experiment
        previous, self._previous = self._previous or [], None
        keep = [row for row in previous if _row_epoch(row) is not None and _row_epoch(row) < epoch]
        if not keep:
            return
        path = Path(writer.metrics_file_path)
        written = []
        if path.is_file():
            with path.open(newline="") as f:
                written = list(csv.DictReader(f))
            path.unlink()
        writer.metrics = [{k: v for k, v in row.items() if v not in ("", None)} for row in keep + written] + \
            writer.metrics
        writer.metrics_keys = []
        writer.save()

    @rank_zero_only
    def finalize(self, status: str) -> None:
        # a fit that trained nothing (resumed with no epoch left, or stopped before its first epoch) never called
        # restore_history: the rows moved aside go back into metrics.csv, which was otherwise left missing
        if self.fitting and self._previous is not None:
            self.restore_history(math.inf)
        super().finalize(status)


def _row_epoch(row: dict[str, str]) -> float | None:
    try:
        return float(row["epoch"])
    except (KeyError, TypeError, ValueError):
        return None


class LogHistory(L.Callback):
    """Keeps :class:`HistoryCSVLogger` files complete across a kill and a resume (see its docstring)."""

    def on_fit_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        for logger in trainer.loggers:
            if isinstance(logger, HistoryCSVLogger):
                logger.fitting = True

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        for logger in trainer.loggers:
            if isinstance(logger, HistoryCSVLogger):
                logger.restore_history(trainer.current_epoch)

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        for logger in trainer.loggers:
            if isinstance(logger, HistoryCSVLogger):
                logger.save()
