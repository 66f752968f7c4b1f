"""Checkpoints: written atomically (temp file + rename), loaded with ``weights_only=True``, verified.

A checkpoint interrupted while being written never replaces a good one: the bytes go to a temporary file in
the same folder, are flushed to disk, and only then renamed over the target. A truncated or corrupt file is
reported with its path instead of being loaded silently.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from lightning.pytorch.plugins.io import TorchCheckpointIO

from ..atomic import atomic_write
from ..data.transforms import check_size
from ..errors import CheckpointError, ConfigError


def atomic_torch_save(obj: Any, path: str | os.PathLike[str]) -> None:
    """``torch.save`` to ``path`` through a temporary file, flushed to disk, and ``os.replace`` (atomic on POSIX;
    see :mod:`medusa_mtl.atomic`)."""
    with atomic_write(path, fsync=True, remove_stale=True) as f:
        torch.save(obj, f)


def folder_not_checkpoint(path: Path) -> str:
    """The message for a folder given where a checkpoint file is expected, naming the run's checkpoints in it."""
    found = [c for folder in (path / "checkpoints", path) for name in ("best.ckpt", "last.ckpt")
             if (c := folder / name).is_file()]
    found = found or sorted((*path.glob("*.ckpt"), *path.glob("checkpoints/*.ckpt")))[:3]
    hint = (f": e.g. {' or '.join(str(c) for c in found)}" if found
            else " (a run keeps them in <run>/checkpoints/best.ckpt and last.ckpt)")
    return f"{path} is a folder, not a checkpoint: give a .ckpt file{hint}"


def load_checkpoint(path: str | os.PathLike[str], map_location: Any = "cpu",
                    require_state_dict: bool = True) -> dict[str, Any]:
    """Load a checkpoint with ``weights_only=True``; a clear :class:`CheckpointError` if it is unusable.
    ``require_state_dict=False`` accepts any dict (e.g. a raw state dict written by other code)."""
    path = Path(path)
    if path.is_dir():
        raise CheckpointError(folder_not_checkpoint(path))
    if not path.is_file():
        raise CheckpointError(f"checkpoint not found: {path}")
    try:
        with warnings.catch_warnings():  # torch's "looks like a TorchScript archive" notice: said below instead
            warnings.simplefilter("ignore", UserWarning)
            ckpt = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as err:  # torch raises RuntimeError/EOFError/UnpicklingError/zipfile errors
        text = str(err)
        if "TorchScript" in text:
            raise CheckpointError(
                f"{path} is a TorchScript file (as `medusa export` writes), not a training checkpoint: run it with "
                "torch.jit.load(path), or give the run's checkpoint (e.g. runs/<run>/checkpoints/best.ckpt)"
            ) from None
        if "Weights only load failed" in text and "Unsupported global" in text:
            raise CheckpointError(
                f"{path} holds pickled Python objects (e.g. a whole model saved with torch.save(model)), which are not "
                "loaded: unpickling can run arbitrary code (weights_only=True). Give a training checkpoint (e.g. "
                "runs/<run>/checkpoints/best.ckpt), or save the network's state_dict() instead"
            ) from None
        raise CheckpointError(
            f"checkpoint {path} cannot be read ({type(err).__name__}: {str(err).splitlines()[0][:200]}); "
            "it is truncated or corrupt — use another checkpoint (e.g. the best or an earlier one)"
        ) from err
    if not isinstance(ckpt, dict) or (require_state_dict and "state_dict" not in ckpt):
        raise CheckpointError(f"{path} is not a Lightning checkpoint (no 'state_dict' entry)")
    return ckpt


class AtomicCheckpointIO(TorchCheckpointIO):
    """Lightning checkpoint I/O that writes atomically and loads safely (``weights_only=True``)."""

    def save_checkpoint(self, checkpoint: dict[str, Any], path: Any, storage_options: Any = None) -> None:
        atomic_torch_save(checkpoint, path)

    def load_checkpoint(self, path: Any, map_location: Any = None, weights_only: bool | None = None) -> dict:
        return load_checkpoint(path, map_location=map_location if map_location is not None else "cpu")


# where a module / checkpoint records the network input size it was trained at
_SIZE_KEYS = ("size", "train_size", "input_size", "image_size")


def _size_from(mapping: Mapping[str, Any] | None) -> tuple[int, int] | None:
    for key in _SIZE_KEYS:
        value = (mapping or {}).get(key)
        if value is not None:
            try:
                return check_size(value)
            except ValueError as err:
                raise ConfigError(f"the checkpoint records an unusable training {key} {value!r}: {err}") from None
    return None


def training_size(module: Any, checkpoint: Mapping[str, Any] | None = None) -> tuple[int, int] | None:
    """The network input size the module was trained at, if recorded: in its hparams, or in the checkpoint's
    ``hyper_parameters`` / ``datamodule_hyper_parameters``; ``None`` otherwise."""
    hp = getattr(module, "hparams", None)
    size = _size_from(dict(hp) if hp is not None else None)
    if size is None and checkpoint is not None:
        size = _size_from(checkpoint.get("hyper_parameters"))
        size = size or _size_from(checkpoint.get("datamodule_hyper_parameters"))
    return size


def checkpoint_epoch(path: str | Path) -> int | None:
    """The (0-based) epoch a checkpoint was written at; ``None`` when it records none or cannot be read (the
    epoch is informative only)."""
    try:
        return int(load_checkpoint(path).get("epoch"))
    except Exception:
        return None
