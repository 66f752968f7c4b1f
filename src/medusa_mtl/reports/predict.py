"""``medusa predict``: readable PNGs of a checkpoint's predictions (and Medusa's attention) for a folder of images.

For every ``.jpg`` / ``.jpeg`` / ``.png`` of the input folder (sorted by name) the image is resized to the
network size (bicubic, as in evaluation), run through the model in eval mode, and every main task's raw output
is resized back to the image's original size (bilinear, as in evaluation) and post-processed. Written per
image, in ``<out>/<image stem>/``:

- ``input.png``: the image as read;
- ``<task>.png`` per main task (colours: :mod:`medusa_mtl.reports.visualize`);
- ``panel.png``: the input and every task side by side, with titles;
- for models with ``net.attention_maps(x)`` (Medusa): ``sfa.png`` (per task, the Shared Feature Attention
  mask of each backbone scale over the image) and ``msa.png`` (per task, the Multi-Scale Attention softmax
  weight of each scale over the image), each written when the model has that mechanism switched on.

Python API (the benchmark calls it directly)::

    module = load_module("run/best.ckpt")
    preds = predict_images(module, ["a.jpg", "b.png"], size=(128, 160))   # [{task: array at original size}]
    save_prediction_pngs(read_image("a.jpg"), preds[0], "out/a", dataset=module.eval_dataset)
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..data.formats import read_image
from ..data.transforms import check_size, normalize_image, resize_image
from ..errors import ConfigError
from ..tasks import get_task
from . import visualize as vis

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")
# Keys under which a training size may be recorded (module hparams, or a checkpoint's datamodule hparams).
_SIZE_KEYS = ("size", "train_size", "input_size", "image_size")

AttentionMaps = dict[str, dict[str, list[tuple[str, np.ndarray]]]]


# ------------------------------------------------------------------------------------------------------------
# inputs
# ------------------------------------------------------------------------------------------------------------

def list_images(folder: str | os.PathLike[str]) -> list[Path]:
    """The ``.jpg`` / ``.jpeg`` / ``.png`` files of ``folder`` (not recursive, case-insensitive), sorted."""
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"image folder not found: {folder}")
    paths = sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
    if not paths:
        raise ConfigError(f"{folder}: no images found (expected files ending in {', '.join(IMAGE_SUFFIXES)})")
    return paths


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

    dataset = getattr(module, "eval_dataset", None) or dict(module.hparams).get("dataset", "nyud")
    info = get_dataset_info(dataset)
    return check_size(info.default_size), f"the {info.name} default"


# ------------------------------------------------------------------------------------------------------------
# inference
# ------------------------------------------------------------------------------------------------------------

def _device_of(module: torch.nn.Module) -> torch.device:
    try:
        return next(module.parameters()).device
    except StopIteration:  # pragma: no cover - parameter-free module
        return torch.device("cpu")


@contextmanager
def _eval_mode(module: torch.nn.Module) -> Iterator[None]:
    was_training = module.training
    module.eval()
    try:
        yield
    finally:
        module.train(was_training)


def _network(module: Any) -> Any:
    return getattr(module, "net", module)


def main_tasks(module: Any) -> list[str]:
    """The tasks the module predicts at inference."""
    tasks = getattr(module, "main_tasks", None) or getattr(_network(module), "tasks", None)
    if not tasks:
        raise ConfigError("the model has no main tasks to predict")
    return list(tasks)


def _input_tensor(image: np.ndarray, size: tuple[int, int], device: torch.device) -> torch.Tensor:
    return normalize_image(resize_image(image, size)).unsqueeze(0).to(device)


def _to_numpy(task_name: str, pred: torch.Tensor) -> np.ndarray:
    """One image's post-processed prediction -> NumPy: class ids ``H x W`` int64; depth, edge, sal ``H x W``
    float32; normals ``H x W x 3`` float32."""
    arr = pred.detach().float().cpu().numpy() if pred.is_floating_point() else pred.detach().cpu().numpy()
    if arr.ndim == 3 and arr.shape[0] == 1:
        arr = arr[0]
    elif arr.ndim == 3:
        arr = np.moveaxis(arr, 0, -1)
    if get_task(task_name).kind == "classes":
        return np.ascontiguousarray(arr, dtype=np.int64)
    return np.ascontiguousarray(arr, dtype=np.float32)


@torch.no_grad()
def predict_array(module: Any, image: np.ndarray, size: Sequence[int]) -> dict[str, np.ndarray]:
    """Predictions of every main task for one uint8 ``H x W x 3`` image, at the image's own size.

    The image is resized to ``size`` for the network; each raw output is resized back to ``H x W``
    (bilinear) and post-processed by its task (class ids, depth >= 0, unit normals, probabilities).
    """
    size = check_size(size)
    hw = (int(image.shape[0]), int(image.shape[1]))
    with _eval_mode(module):
        outputs = module(_input_tensor(image, size, _device_of(module)))
    preds: dict[str, np.ndarray] = {}
    for t in main_tasks(module):
        if t not in outputs:
            raise ConfigError(f"the model produced no output for its main task {t!r} (outputs: {sorted(outputs)})")
        task = get_task(t)
        raw = task.upsample(outputs[t][:1].float(), hw)
        preds[t] = _to_numpy(t, task.postprocess(raw)[0])
    return preds


def predict_images(
    module: Any,
    paths: Sequence[str | os.PathLike[str]],
    size: Sequence[int] | None = None,
) -> list[dict[str, np.ndarray]]:
    """Predict every main task for each image file (see :func:`predict_array`); one dict per path, in order.

    ``size`` defaults to :func:`resolve_size` (training size if recorded, else the dataset's default).
    Predictions: ``semseg`` / ``human_parts`` int64 ``H x W`` class ids; ``depth`` float32 ``H x W`` (>= 0);
    ``normals`` float32 ``H x W x 3`` (unit); ``edge`` / ``sal`` float32 ``H x W`` in [0, 1]; ``H x W`` is the
    file's own size.
    """
    net_size, _ = resolve_size(module, size)
    return [predict_array(module, read_image(p), net_size) for p in paths]


def has_attention(module: Any) -> bool:
    """Whether the network exposes ``attention_maps(x)`` (Medusa)."""
    return callable(getattr(_network(module), "attention_maps", None))


def _as_maps(value: Any) -> list[np.ndarray]:
    """First image's 2-D maps from an attention entry: a tensor ``[B, S, H, W]`` (one map per S), a tensor
    ``[S, H, W]`` / ``[H, W]``, or a sequence of per-scale tensors ``[B, C, H, W]`` (averaged over C)."""
    if isinstance(value, list | tuple):
        maps = []
        for v in value:
            arr = np.asarray(v.detach().float().cpu() if isinstance(v, torch.Tensor) else v, dtype=np.float32)
            if arr.ndim == 4:
                arr = arr[0]
            if arr.ndim == 3:
                arr = arr.mean(axis=0)
            if arr.ndim != 2:
                raise ValueError(f"unexpected attention map of shape {arr.shape}")
            maps.append(arr)
        return maps
    arr = np.asarray(value.detach().float().cpu() if isinstance(value, torch.Tensor) else value, dtype=np.float32)
    if arr.ndim == 4:
        arr = arr[0]
    if arr.ndim == 2:
        return [arr]
    if arr.ndim != 3:
        raise ValueError(f"unexpected attention map of shape {arr.shape}")
    return list(arr)


@torch.no_grad()
def attention_arrays(
    module: Any, image: np.ndarray, size: Sequence[int], warn: Callable[[str], None] | None = None
) -> AttentionMaps | None:
    """Medusa's attention maps for one image: ``{task: {"sfa": [(label, map)], "msa": [(label, map)]}}``.

    ``sfa``: one mask per backbone scale (averaged over channels), at that scale's resolution; ``msa``: the
    softmax weight of each scale, at scale 0's resolution. Labels name the scale (and its stride). A
    mechanism that is switched off has no key; ``None`` when the network has no ``attention_maps``.
    Unexpected structures are skipped with a message to ``warn``.
    """
    if not has_attention(module):
        return None
    size = check_size(size)
    net = _network(module)
    with _eval_mode(module):
        raw = net.attention_maps(_input_tensor(image, size, _device_of(module)))
    if not isinstance(raw, Mapping):
        if warn:
            warn(f"attention_maps returned {type(raw).__name__}, expected a dict; attention skipped")
        return {}
    # Accept {"sfa": {task: ...}, "msa": {task: ...}} as well as {task: {"sfa": ..., "msa": ...}}.
    if raw and set(raw) <= {"sfa", "msa"} and all(isinstance(v, Mapping) for v in raw.values()):
        transposed: dict[str, dict[str, Any]] = {}
        for kind, per_task in raw.items():
            for t, v in per_task.items():
                transposed.setdefault(t, {})[kind] = v
        raw = transposed
    out: AttentionMaps = {}
    for t, entry in raw.items():
        if not isinstance(entry, Mapping):
            if warn:
                warn(f"attention maps of {t!r}: expected a dict with 'sfa' / 'msa', got {type(entry).__name__}")
            continue
        strides: list[int | None] = []
        for kind in ("sfa", "msa"):
            if entry.get(kind) is None:
                continue
            try:
                maps = _as_maps(entry[kind])
            except (ValueError, TypeError) as err:
                if warn:
                    warn(f"attention maps {t}/{kind} skipped: {err}")
                continue
            if kind == "sfa":
                strides = [max(1, round(size[0] / m.shape[0])) for m in maps]
            labels = [
                f"scale {s}" + (f" (stride {strides[s]})" if s < len(strides) and strides[s] else "")
                for s in range(len(maps))
            ]
            out.setdefault(str(t), {})[kind] = list(zip(labels, maps))
    return out


# ------------------------------------------------------------------------------------------------------------
# output
# ------------------------------------------------------------------------------------------------------------

def _num_classes(task_name: str, dataset: str | None) -> int | None:
    if dataset is None or get_task(task_name).kind != "classes":
        return None
    try:
        return get_task(task_name).channels(dataset)
    except ValueError:
        return None


def _tile_title(task_name: str, pred: np.ndarray) -> str:
    if task_name == "depth":
        rng = vis.depth_range(pred)
        return "depth" + (f" [{rng[0]:.2f}, {rng[1]:.2f}]" if rng else " (no valid pixel)")
    return task_name


def save_prediction_pngs(
    image: np.ndarray,
    predictions: Mapping[str, np.ndarray],
    out_dir: str | os.PathLike[str],
    dataset: str | None = None,
    attention: AttentionMaps | None = None,
    title: str | None = None,
) -> dict[str, Path]:
    """Write ``input.png``, ``<task>.png`` per task, ``panel.png`` and (given attention maps) ``sfa.png`` /
    ``msa.png`` into ``out_dir``.

    Args:
        image: the input, uint8 ``H x W x 3``.
        predictions: ``{task: prediction}`` as returned by :func:`predict_array` / :func:`predict_images`.
        out_dir: folder to write (created).
        dataset: decides the palette size of class tasks (colours do not depend on it).
        attention: :func:`attention_arrays`' result; ``sfa.png`` / ``msa.png`` are written for the kinds it has.
        title: title of the figures (e.g. the image's file name).

    Returns:
        ``{name: path}`` of every written file (``input``, each task, ``panel``, ``sfa``, ``msa``).
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    image = np.asarray(image, dtype=np.uint8)
    written = {"input": vis.save_png(image, out_dir / "input.png")}
    tiles: dict[str, np.ndarray] = {}
    legends: dict[str, list[tuple[str, np.ndarray]]] = {}
    for t, pred in predictions.items():
        rgb = vis.colorize_prediction(t, pred, _num_classes(t, dataset))
        written[t] = vis.save_png(rgb, out_dir / f"{t}.png")
        key = _tile_title(t, pred)
        tiles[key] = rgb
        if t == "human_parts":
            legends[key] = vis.parts_legend()
    written["panel"] = vis.save_panel(image, tiles, out_dir / "panel.png", title=title, legends=legends or None)
    for kind, label, vmin, vmax in (("sfa", "SFA masks", None, None), ("msa", "MSA scale weights", 0.0, 1.0)):
        rows = {t: maps[kind] for t, maps in (attention or {}).items() if maps.get(kind)}
        if rows:
            fig_title = f"{title}: {label}" if title else label
            written[kind] = vis.save_heatmap_grid(image, rows, out_dir / f"{kind}.png", title=fig_title,
                                                  vmin=vmin, vmax=vmax)
    return written


def _output_names(paths: Sequence[Path]) -> list[str]:
    """Folder name per image: its stem, or ``<stem>_<suffix>`` when two images share a stem."""
    stems = [p.stem for p in paths]
    return [p.stem if stems.count(p.stem) == 1 else f"{p.stem}_{p.suffix.lstrip('.').lower()}" for p in paths]


def predict_paths(
    module: Any,
    paths: Sequence[str | os.PathLike[str]],
    out: str | os.PathLike[str],
    size: Sequence[int] | None = None,
    attention: bool = True,
    checkpoint: Mapping[str, Any] | None = None,
    log: Callable[[str], None] = print,
) -> list[dict[str, Path]]:
    """Predict each image file and write its PNGs into ``<out>/<stem>/`` (see the module docstring).

    Every image is decoded once before any prediction, so a corrupt file stops the run (naming the file)
    before anything is written. Returns the written files of each image, in order.
    """
    paths = [Path(p) for p in paths]
    if not paths:
        raise ConfigError("no images to predict")
    for p in paths:
        read_image(p)  # fail early, naming the file
    net_size, source = resolve_size(module, size, checkpoint)
    dataset = getattr(module, "eval_dataset", None)
    log(f"{len(paths)} image(s), network input {net_size[0]}x{net_size[1]} ({source}), "
        f"tasks: {', '.join(main_tasks(module))}")
    want_attention = attention and has_attention(module)
    if attention and not want_attention:
        hp = dict(getattr(module, "hparams", {}) or {})
        name = hp.get("arch") or hp.get("model") or type(_network(module)).__name__
        log(f"note: model {name!r} has no attention maps; sfa.png / msa.png skipped")
    results = []
    noted_off = False
    for path, name in zip(paths, _output_names(paths)):
        image = read_image(path)
        preds = predict_array(module, image, net_size)
        attn = attention_arrays(module, image, net_size, warn=log) if want_attention else None
        if want_attention and not noted_off and not any((attn or {}).values()):
            log("note: the model's attention mechanisms are switched off; sfa.png / msa.png skipped")
            noted_off = True
        written = save_prediction_pngs(image, preds, Path(out) / name, dataset=dataset, attention=attn,
                                       title=path.name)
        log(f"{path.name} -> {Path(out) / name}/ ({', '.join(written)})")
        results.append(written)
    return results


def predict_folder(
    module: Any,
    images: str | os.PathLike[str],
    out: str | os.PathLike[str],
    size: Sequence[int] | None = None,
    attention: bool = True,
    checkpoint: Mapping[str, Any] | None = None,
    log: Callable[[str], None] = print,
) -> list[dict[str, Path]]:
    """:func:`predict_paths` on every ``.jpg`` / ``.jpeg`` / ``.png`` of ``images`` (sorted)."""
    return predict_paths(module, list_images(images), out, size=size, attention=attention,
                         checkpoint=checkpoint, log=log)


def predict_folder_to_panels(
    ckpt: str | os.PathLike[str],
    images: Sequence[str | os.PathLike[str]],
    out: str | os.PathLike[str],
    relative_to: str | os.PathLike[str] | None = None,
    size: Sequence[int] | None = None,
    attention: bool = True,
    device: str = "cpu",
    log: Callable[[str], None] | None = None,
) -> list[str]:
    """Load ``ckpt``, write the PNGs of each image under ``out`` and return the figures for a report.

    Returns, per image in order, the paths of ``panel.png`` and (when written) ``sfa.png`` and ``msa.png``,
    as POSIX strings relative to ``relative_to`` (absolute when it is ``None``).
    """
    from ..engine.checkpoints import load_checkpoint
    from ..engine.evaluation import load_module

    module = load_module(ckpt)
    checkpoint = load_checkpoint(ckpt) if size is None and training_size(module) is None else None
    module.to(torch.device(device))
    written = predict_paths(module, list(images), out, size=size, attention=attention, checkpoint=checkpoint,
                            log=log or (lambda _msg: None))
    figures: list[str] = []
    for files in written:
        for key in ("panel", "sfa", "msa"):
            if key in files:
                path = files[key].resolve()
                if relative_to is not None:
                    path = Path(os.path.relpath(path, Path(relative_to).resolve()))
                figures.append(path.as_posix())
    return figures


# ------------------------------------------------------------------------------------------------------------
# command line
# ------------------------------------------------------------------------------------------------------------

def add_predict_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``medusa predict``."""
    parser.add_argument("--ckpt", required=True, help="checkpoint (Lightning .ckpt written by training)")
    parser.add_argument("--images", required=True, help="folder of .jpg / .jpeg / .png images")
    parser.add_argument("--out", required=True, help="output folder (one sub-folder per image)")
    parser.add_argument("--size", default=None,
                        help="network input HxW, multiples of 32 (default: the training size if the checkpoint "
                             "records it, else the dataset's default)")
    parser.add_argument("--attention", action=argparse.BooleanOptionalAction, default=True,
                        help="write sfa.png / msa.png for models with attention maps (Medusa)")
    parser.add_argument("--device", default="cpu", help="torch device, e.g. cpu or cuda:0 (default: cpu)")


def run_predict(args: argparse.Namespace) -> int:
    """``medusa predict``."""
    from ..data.sizes import parse_network_size
    from ..engine.checkpoints import load_checkpoint
    from ..engine.evaluation import load_module

    size = parse_network_size(args.size)
    images = Path(args.images)
    list_images(images)  # a missing or empty folder is reported before the checkpoint is loaded
    try:
        device = torch.device(args.device)
    except RuntimeError as err:
        raise ConfigError(f"--device {args.device!r}: {err}") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"--device {args.device}: CUDA is not available on this machine; use --device cpu")
    module = load_module(args.ckpt)
    checkpoint = None
    if size is None and training_size(module) is None:
        checkpoint = load_checkpoint(args.ckpt)  # for a size recorded by the data module
    module.to(device)
    predict_folder(module, images, args.out, size=size, attention=args.attention, checkpoint=checkpoint)
    print(f"wrote {args.out}")
    return 0
