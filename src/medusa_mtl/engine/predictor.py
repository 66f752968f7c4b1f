"""Inference on images: ``Predictor`` turns a trained checkpoint into ``{task: np.ndarray}`` per image.

Each image is resized to the network input size (bicubic, as in evaluation), normalised, run through the model
in eval mode (images of a list go through in batches), and every main task's raw output is resized back to the
image's own size (bilinear, as in evaluation) and post-processed by its task:

- ``semseg`` / ``human_parts``: int64 ``H x W`` class ids;
- ``depth``: float32 ``H x W`` in metres (>= 0);
- ``normals``: float32 ``H x W x 3`` unit vectors (camera frame);
- ``edge`` / ``sal``: float32 ``H x W`` probabilities in [0, 1].

Example::

    >>> from medusa_mtl import Predictor                                # doctest: +SKIP
    >>> predictor = Predictor.from_checkpoint("runs/nyud/best.ckpt")    # doctest: +SKIP
    >>> out = predictor.predict("room.jpg")                             # doctest: +SKIP
    >>> out["semseg"].shape, out["depth"].dtype                         # doctest: +SKIP
    ((480, 640), dtype('float32'))

The input may be a path, a ``PIL.Image`` or a uint8 ``H x W x 3`` RGB array (a gray ``H x W`` array is
repeated to RGB); a list of them returns a list of dicts, in order.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch

from ..data.formats import pil_to_rgb, read_image
from ..data.transforms import check_size, normalize_image, resize_image
from ..errors import ConfigError
from ..models.base import heads_datasets
from ..tasks import get_task
from .checkpoints import training_size
from .tta import average_mirrored

__all__ = ["Predictor", "ImageInput", "as_rgb_array", "training_size"]

ImageInput = str | os.PathLike[str] | np.ndarray | Any  # Any: a PIL.Image

# Keys under which a training size may be recorded (module hparams, or a checkpoint's datamodule hparams).


def as_rgb_array(image: ImageInput) -> np.ndarray:
    """A path, ``PIL.Image`` or array as a uint8 ``H x W x 3`` RGB array (clear error otherwise)."""
    if isinstance(image, str | os.PathLike):
        return read_image(image)
    if hasattr(image, "convert") and hasattr(image, "size"):  # PIL.Image
        return pil_to_rgb(image)
    if isinstance(image, np.ndarray):
        arr = image
        if arr.ndim == 2:
            arr = np.repeat(arr[:, :, None], 3, axis=2)
        if arr.ndim != 3 or arr.shape[2] not in (3, 4) or arr.shape[0] == 0 or arr.shape[1] == 0:
            raise ValueError(f"expected an RGB image array H x W x 3 (or gray H x W), got shape {image.shape}")
        if arr.dtype != np.uint8:
            raise ValueError(f"expected a uint8 image array (0..255), got dtype {arr.dtype}")
        return np.ascontiguousarray(arr[:, :, :3])
    raise TypeError(f"expected an image path, a PIL.Image or a numpy array, got {type(image).__name__}")


def module_dataset(module: Any) -> str | None:
    """The dataset a module predicts: a training module's ``eval_dataset`` / ``hparams.dataset``, or a bare
    network's ``dataset`` (as :func:`~medusa_mtl.models.create_model` records it)."""
    for value in (getattr(module, "eval_dataset", None),
                  dict(getattr(module, "hparams", {}) or {}).get("dataset"),
                  getattr(getattr(module, "net", module), "dataset", None)):
        if isinstance(value, str) and value:
            return value
    return None


def resolve_size(
    module: Any, size: Sequence[int] | None = None, checkpoint: Mapping[str, Any] | None = None
) -> tuple[tuple[int, int], str]:
    """Network input size and where it comes from: ``size`` if given, else the training size recorded in
    the module / checkpoint, else the default size of the module's dataset (SPEC §6)."""
    if size is not None:
        return check_size(size), "--size"
    recorded = training_size(module, checkpoint)
    if recorded is not None:
        return recorded, "the checkpoint's training size"
    from ..data.datasets import get_dataset_info

    info = get_dataset_info(module_dataset(module) or "nyud")
    return check_size(info.default_size), f"the {info.name} default"


def _to_numpy(task_name: str, pred: torch.Tensor) -> np.ndarray:
    arr = pred.detach().float().cpu().numpy() if pred.is_floating_point() else pred.detach().cpu().numpy()
    if arr.ndim == 3 and arr.shape[0] == 1:
        arr = arr[0]
    elif arr.ndim == 3:
        arr = np.moveaxis(arr, 0, -1)
    if get_task(task_name).kind == "classes":
        return np.ascontiguousarray(arr, dtype=np.int64)
    return np.ascontiguousarray(arr, dtype=np.float32)


class Predictor:
    """Predictions of a trained model's main tasks for images of any size.

    Args:
        module: a loaded :class:`~medusa_mtl.engine.training.MultiTaskModule` (or any module whose forward
            returns ``{task: raw output}``, with ``main_tasks`` or ``net.tasks``).
        size: network input ``(H, W)``, multiples of 32; default: the training size recorded in the
            module/checkpoint, else the dataset's default size.
        device: torch device for inference.
        batch_size: images per forward pass when a list is predicted.
        checkpoint: the loaded checkpoint dict, only to find a training size recorded by the data module.
        all_tasks: for a universal-feature-learning model, predict the source model's tasks too (default), not
            only the new ones; :attr:`task_datasets` says which dataset each output belongs to.
        flip: predict from the mean of the outputs for each image and its mirror image
            (:mod:`medusa_mtl.engine.tta`); ``None``: the module's own ``test_flip`` setting (off by default).
    """

    def __init__(self, module: Any, size: Sequence[int] | None = None, device: str | torch.device = "cpu",
                 batch_size: int = 8, checkpoint: Mapping[str, Any] | None = None, all_tasks: bool = True,
                 flip: bool | None = None) -> None:
        try:
            self.device = torch.device(device)
        except RuntimeError as err:
            raise ConfigError(f"device {device!r}: {err}") from None
        if self.device.type == "cuda" and not torch.cuda.is_available():
            raise ConfigError(f"device {device}: CUDA is not available on this machine; use cpu")
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.module = module.to(self.device).eval()
        self.size, self.size_source = resolve_size(module, size, checkpoint)
        self.batch_size = int(batch_size)
        tasks = getattr(module, "main_tasks", None) or getattr(getattr(module, "net", module), "tasks", None)
        if not tasks:
            raise ConfigError("the model has no main tasks to predict")
        self.dataset: str | None = module_dataset(module)
        net = getattr(module, "net", module)
        self._forward = self.module
        if all_tasks and callable(getattr(net, "forward_all", None)):
            # a UFL model: every task of the chain (the source's, unchanged, and the new ones)
            self.task_datasets: dict[str, str | None] = dict(net.task_datasets())
            self._forward = net.forward_all
        else:
            # add_task(name, dataset=...) records heads of another dataset (PASCAL sal on a NYUD model)
            self.task_datasets = heads_datasets(net, tasks, default=self.dataset)
        self.tasks: list[str] = list(self.task_datasets)
        hparams = getattr(module, "hparams", None) or {}
        self.flip = bool(hparams.get("test_flip", False)) if flip is None else bool(flip)

    @classmethod
    def from_checkpoint(cls, path: str | os.PathLike[str], device: str | torch.device = "cpu",
                        size: Sequence[int] | None = None, batch_size: int = 8, all_tasks: bool = True,
                        flip: bool | None = None) -> Predictor:
        """Load a checkpoint written by training (``weights_only=True``) and wrap it."""
        from .checkpoints import load_checkpoint
        from .evaluation import load_module

        module = load_module(path)
        checkpoint = load_checkpoint(path) if size is None and training_size(module) is None else None
        return cls(module, size=size, device=device, batch_size=batch_size, checkpoint=checkpoint,
                   all_tasks=all_tasks, flip=flip)

    @torch.no_grad()
    def predict_arrays(self, images: Sequence[np.ndarray]) -> list[dict[str, np.ndarray]]:
        """Predictions for uint8 ``H x W x 3`` arrays (any sizes), in batches of ``batch_size``."""
        results: list[dict[str, np.ndarray]] = []
        for start in range(0, len(images), self.batch_size):
            chunk = images[start : start + self.batch_size]
            x = torch.stack([normalize_image(resize_image(im, self.size)) for im in chunk]).to(self.device)
            outputs = self._forward(x)
            for t in self.tasks:
                if t not in outputs:
                    raise ConfigError(f"the model produced no output for its main task {t!r} "
                                      f"(outputs: {sorted(outputs)})")
            if self.flip:
                outputs = average_mirrored(outputs, self._forward(x.flip(-1)), self.tasks)
            for i, im in enumerate(chunk):
                hw = (int(im.shape[0]), int(im.shape[1]))
                preds = {}
                for t in self.tasks:
                    name = t.split(":")[-1]  # "<dataset>:<task>" where two datasets share a task name
                    task = get_task(name)
                    raw = task.upsample(outputs[t][i : i + 1].float(), hw)
                    preds[t] = _to_numpy(name, task.postprocess(raw)[0])
                results.append(preds)
        return results

    def predict(self, image: ImageInput | Sequence[ImageInput]) -> Any:
        """``{task: np.ndarray}`` at the input's own size; a list of them for a list of inputs."""
        if isinstance(image, list | tuple):
            return self.predict_arrays([as_rgb_array(im) for im in image])
        return self.predict_arrays([as_rgb_array(image)])[0]

    def __repr__(self) -> str:
        return (f"Predictor(tasks={self.tasks}, size={self.size[0]}x{self.size[1]}, device={self.device}, "
                f"batch_size={self.batch_size}" + (", flip=True)" if self.flip else ")"))

