"""``medusa predict``: readable PNGs of a checkpoint's predictions (and Medusa's attention) for images.

For the input image, or every ``.jpg`` / ``.jpeg`` / ``.png`` of the input folder (sorted by name; hidden files
skipped), the image is resized to the network size (bicubic, as in evaluation), run through the model in eval
mode, and every main task's raw output is resized back to the image's original size (bilinear, as in
evaluation) and post-processed. Written per
image, in ``<out>/<image stem>/``:

- ``input.png``: the image as read;
- ``<task>.png`` per main task (colours: :mod:`medusa_mtl.reports.visualize`);
- ``panel.png``: the input and every task side by side, with titles;
- for models with ``net.attention_maps(x)`` (Medusa): ``sfa.png`` (per task, the Shared Feature Attention
  mask of each backbone scale over the image) and ``msa.png`` (per task, the Multi-Scale Attention softmax
  weight of each scale over the image), each written when the model has that mechanism switched on;
- with ``--raw``, machine-readable outputs at the image's size in ``raw/`` (:func:`save_raw_outputs`):
  ``<task>_index.png`` (uint8 class ids) for semseg / human parts, ``depth_mm.png`` (uint16 millimetres,
  0 = no depth) and ``depth_m.npy`` (float32 metres), ``normals.npy`` (float32 H x W x 3),
  ``<task>_prob.png`` (uint16, probability x 65535) for edge / saliency.

A file that cannot be read is skipped with one warning line; the others are processed, and the command ends
with a summary and exit status 1 when something was skipped (``--strict``: stop at the first such file).

Predictions come from :class:`~medusa_mtl.engine.predictor.Predictor` (the Python API for inference)::

    predictor = Predictor.from_checkpoint("run/best.ckpt")
    preds = predictor.predict(["a.jpg", "b.png"])          # [{task: array at the image's size}]
    save_prediction_pngs(read_image("a.jpg"), preds[0], "out/a", dataset=predictor.dataset)
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..data.formats import DataFormatError, read_image
from ..data.transforms import check_size, normalize_image, resize_image
from ..engine.predictor import Predictor, resolve_size, training_size
from ..errors import ConfigError
from ..options import output_dir
from ..tasks import get_task
from . import visualize as vis

__all__ = ["Predictor", "resolve_size", "training_size", "predict_array", "predict_images", "predict_paths",
           "predict_folder", "save_prediction_pngs", "save_raw_outputs", "list_images", "SkippedImages"]

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")
AttentionMaps = dict[str, dict[str, list[tuple[str, np.ndarray]]]]


# ------------------------------------------------------------------------------------------------------------
# inputs
# ------------------------------------------------------------------------------------------------------------

def list_images(folder: str | os.PathLike[str]) -> list[Path]:
    """The ``.jpg`` / ``.jpeg`` / ``.png`` files of ``folder`` (not recursive, case-insensitive), sorted; hidden
    files (``.name``, e.g. the ``._photo.jpg`` metadata that macOS leaves on shared drives) are not images.
    ``folder`` may also be one image file."""
    folder = Path(folder)
    if folder.is_file():
        if folder.suffix.lower() not in IMAGE_SUFFIXES:
            raise ConfigError(f"{folder}: not an image (expected a file ending in {', '.join(IMAGE_SUFFIXES)}, "
                              "or a folder of them)")
        return [folder]
    if not folder.is_dir():
        raise FileNotFoundError(f"image file or folder not found: {folder}")
    paths = sorted(p for p in folder.iterdir()
                   if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES and not p.name.startswith("."))
    if not paths:
        raise ConfigError(f"{folder}: no images found (expected files ending in {', '.join(IMAGE_SUFFIXES)})")
    return paths


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


def predict_array(module: Any, image: np.ndarray, size: Sequence[int]) -> dict[str, np.ndarray]:
    """Predictions of every main task for one uint8 ``H x W x 3`` image, at the image's own size (see
    :class:`~medusa_mtl.engine.predictor.Predictor`)."""
    with _eval_mode(module):
        return _as_predictor(module, size).predict_arrays([image])[0]


def predict_images(module: Any, paths: Sequence[str | os.PathLike[str]],
                   size: Sequence[int] | None = None) -> list[dict[str, np.ndarray]]:
    """Predict every main task for each image file; one dict per path, in order (``size`` defaults to
    :func:`~medusa_mtl.engine.predictor.resolve_size`)."""
    with _eval_mode(module):
        return _as_predictor(module, size).predict([Path(p) for p in paths])


def _as_predictor(module: Any, size: Sequence[int] | None = None,
                  checkpoint: Mapping[str, Any] | None = None) -> Predictor:
    if isinstance(module, Predictor):
        return module
    return Predictor(module, size=size, device=_device_of(module), checkpoint=checkpoint)


def main_tasks(module: Any) -> list[str]:
    """The tasks the module predicts at inference."""
    tasks = getattr(module, "main_tasks", None) or getattr(_network(module), "tasks", None)
    if not tasks:
        raise ConfigError("the model has no main tasks to predict")
    return list(tasks)


def _input_tensor(image: np.ndarray, size: tuple[int, int], device: torch.device) -> torch.Tensor:
    return normalize_image(resize_image(image, size)).unsqueeze(0).to(device)


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

def _num_classes(task_name: str, dataset: str | Mapping[str, str | None] | None) -> int | None:
    if isinstance(dataset, Mapping):
        dataset = dataset.get(task_name)
    task_name = task_name.split(":")[-1]
    if dataset is None or get_task(task_name).kind != "classes":
        return None
    try:
        return get_task(task_name).channels(dataset)
    except ValueError:
        return None


def _tile_title(task_name: str, pred: np.ndarray) -> str:
    if vis.label_kind(task_name.split(":")[-1]) == "depth":
        rng = vis.depth_range(pred)
        return task_name + (f" [{rng[0]:.2f}, {rng[1]:.2f}]" if rng else " (no valid pixel)")
    return task_name


def save_prediction_pngs(
    image: np.ndarray,
    predictions: Mapping[str, np.ndarray],
    out_dir: str | os.PathLike[str],
    dataset: str | Mapping[str, str | None] | None = None,
    attention: AttentionMaps | None = None,
    title: str | None = None,
) -> dict[str, Path]:
    """Write ``input.png``, ``<task>.png`` per task, ``panel.png`` and (given attention maps) ``sfa.png`` /
    ``msa.png`` into ``out_dir``.

    Args:
        image: the input, uint8 ``H x W x 3``.
        predictions: ``{task: prediction}`` as returned by :func:`predict_array` / :func:`predict_images`.
        out_dir: folder to write (created).
        dataset: decides the palette size of class tasks (colours do not depend on it); a mapping gives it per
            task (a UFL model's source and new tasks come from different datasets).
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
        rgb = vis.colorize_prediction(t.split(":")[-1], pred, _num_classes(t, dataset))
        written[t] = vis.save_png(rgb, out_dir / f"{t.replace(':', '_')}.png")
        key = _tile_title(t, pred)
        tiles[key] = rgb
        if t.split(":")[-1] == "human_parts":
            legends[key] = vis.parts_legend()
    written["panel"] = vis.save_panel(image, tiles, out_dir / "panel.png", title=title, legends=legends or None)
    for kind, label, vmin, vmax in (("sfa", "SFA masks", None, None), ("msa", "MSA scale weights", 0.0, 1.0)):
        rows = {t: maps[kind] for t, maps in (attention or {}).items() if maps.get(kind)}
        if rows:
            fig_title = f"{title}: {label}" if title else label
            written[kind] = vis.save_heatmap_grid(image, rows, out_dir / f"{kind}.png", title=fig_title,
                                                  vmin=vmin, vmax=vmax)
    return written


def save_raw_outputs(predictions: Mapping[str, np.ndarray], out_dir: str | os.PathLike[str]) -> dict[str, Path]:
    """Machine-readable predictions (at the image's size) in ``out_dir``; returns ``{name: path}``.

    - class tasks (``semseg``, ``human_parts``): ``<task>_index.png``, uint8 class ids (0-based, as predicted);
    - ``depth``: ``depth_mm.png`` (uint16 millimetres, rounded, clipped to 65535; 0 = no depth) and
      ``depth_m.npy`` (float32 metres, exact);
    - ``normals``: ``normals.npy`` (float32 ``H x W x 3`` unit vectors, camera frame);
    - probability tasks (``edge``, ``sal``, declared ``binary``): ``<task>_prob.png``, uint16 = round(p * 65535);
    - declared ``regression`` tasks: ``<task>.npy`` (float32 ``H x W`` or ``H x W x C``).
    Declared tasks follow their kind (a ``depth`` task of any name is written like ``depth``).
    """
    from PIL import Image

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    written: dict[str, Path] = {}
    for t, pred in predictions.items():
        name, stem = t.split(":")[-1], t.replace(":", "_")  # "<dataset>:<task>" keys of a UFL chain
        task = get_task(name)
        kind = task.kind
        if kind == "classes":
            if pred.max(initial=0) > 255 or pred.min(initial=0) < 0:
                raise ValueError(f"{t}: class ids outside 0..255 cannot be written as a uint8 PNG")
            written[f"{stem}_index"] = out_dir / f"{stem}_index.png"
            Image.fromarray(pred.astype(np.uint8), mode="L").save(written[f"{stem}_index"])
        elif task.label_kind == "depth":
            mm = np.clip(np.rint(pred.astype(np.float64) * 1000.0), 0, 65535).astype(np.uint16)
            written[f"{stem}_mm"] = out_dir / f"{stem}_mm.png"
            Image.fromarray(mm).save(written[f"{stem}_mm"])
            written[f"{stem}_m"] = out_dir / f"{stem}_m.npy"
            np.save(written[f"{stem}_m"], pred.astype(np.float32))
        elif pred.ndim == 3 or task.label_kind == "regression":
            written[stem] = out_dir / f"{stem}.npy"
            np.save(written[stem], pred.astype(np.float32))
        else:
            prob = np.clip(np.rint(pred.astype(np.float64) * 65535.0), 0, 65535).astype(np.uint16)
            written[f"{stem}_prob"] = out_dir / f"{stem}_prob.png"
            Image.fromarray(prob).save(written[f"{stem}_prob"])
    return written


class SkippedImages(RuntimeError):
    """Raised by ``--strict`` prediction at the first image that cannot be read."""


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
    raw: bool = False,
    strict: bool = False,
    skipped: list[tuple[Path, str]] | None = None,
) -> list[dict[str, Path]]:
    """Predict each image file and write its PNGs (and with ``raw`` its raw outputs) into ``<out>/<stem>/``.

    ``module``: a :class:`~medusa_mtl.engine.predictor.Predictor` or a loaded module. A file that cannot be
    read is skipped with a warning (appended to ``skipped`` as ``(path, reason)``); with ``strict`` the first
    one raises :class:`SkippedImages` instead. Returns the written files of each predicted image, in order.
    """
    paths = [Path(p) for p in paths]
    if not paths:
        raise ConfigError("no images to predict")
    predictor = _as_predictor(module, size, checkpoint)
    net = predictor.module
    log(f"{len(paths)} image(s), network input {predictor.size[0]}x{predictor.size[1]} "
        f"({predictor.size_source}), tasks: {', '.join(predictor.tasks)}"
        + (", flip-averaged" if predictor.flip else ""))
    want_attention = attention and has_attention(net)
    if attention and not want_attention:
        hp = dict(getattr(net, "hparams", {}) or {})
        name = hp.get("arch") or hp.get("model") or type(_network(net)).__name__
        log(f"note: model {name!r} has no attention maps; sfa.png / msa.png skipped")
    results = []
    noted_off = False
    for path, name in zip(paths, _output_names(paths)):
        try:
            image = read_image(path)
        except (DataFormatError, OSError) as err:
            if strict:
                raise SkippedImages(f"{err} (--strict: stopped at the first unreadable image)") from None
            reason = str(err)
            log(f"warning: skipped {path}: {reason}")
            if skipped is not None:
                skipped.append((path, reason))
            continue
        preds = predictor.predict_arrays([image])[0]
        attn = attention_arrays(net, image, predictor.size, warn=log) if want_attention else None
        if want_attention and not noted_off and not any((attn or {}).values()):
            log("note: the model's attention mechanisms are switched off; sfa.png / msa.png skipped")
            noted_off = True
        written = save_prediction_pngs(image, preds, Path(out) / name, dataset=predictor.task_datasets,
                                       attention=attn, title=path.name)
        if raw:
            written.update({f"raw/{k}": v for k, v in save_raw_outputs(preds, Path(out) / name / "raw").items()})
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
    raw: bool = False,
    strict: bool = False,
    skipped: list[tuple[Path, str]] | None = None,
) -> list[dict[str, Path]]:
    """:func:`predict_paths` on every ``.jpg`` / ``.jpeg`` / ``.png`` of ``images`` (sorted)."""
    return predict_paths(module, list_images(images), out, size=size, attention=attention,
                         checkpoint=checkpoint, log=log, raw=raw, strict=strict, skipped=skipped)


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
    predictor = Predictor.from_checkpoint(ckpt, device=device, size=size)
    written = predict_paths(predictor, list(images), out, attention=attention, log=log or (lambda _msg: None),
                            strict=True)
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
    parser.add_argument("--images", required=True, help="an image, or a folder of .jpg / .jpeg / .png images")
    parser.add_argument("--out", required=True, type=output_dir, help="output folder (one sub-folder per image)")
    parser.add_argument("--size", default=None,
                        help="network input HxW, multiples of 32 (default: the training size if the checkpoint "
                             "records it, else the dataset's default)")
    parser.add_argument("--attention", action=argparse.BooleanOptionalAction, default=True,
                        help="write sfa.png / msa.png for models with attention maps (Medusa)")
    parser.add_argument("--raw", action="store_true",
                        help="also write machine-readable outputs in raw/: class-index PNGs, depth in mm (16-bit "
                             "PNG) and metres (.npy), normals (.npy), probabilities (16-bit PNG)")
    parser.add_argument("--strict", action="store_true",
                        help="stop at the first unreadable image (default: skip it, warn, exit with status 1)")
    parser.add_argument("--device", default="cpu", help="torch device, e.g. cpu or cuda:0 (default: cpu)")
    parser.add_argument("--flip", action=argparse.BooleanOptionalAction, default=None,
                        help="predict from the mean of the outputs for each image and its mirror image (twice the "
                             "cost; default: the checkpoint's test_flip setting, off unless it was trained with it)")


def run_predict(args: argparse.Namespace) -> int:
    """``medusa predict``: 0 when every image was predicted, 1 when some were skipped."""
    from ..data.sizes import parse_network_size

    size = parse_network_size(args.size)
    images = Path(args.images)
    paths = list_images(images)  # a missing or empty folder is reported before the checkpoint is loaded
    predictor = Predictor.from_checkpoint(args.ckpt, device=args.device, size=size, flip=args.flip)
    skipped: list[tuple[Path, str]] = []
    try:
        done = predict_paths(predictor, paths, args.out, attention=args.attention, raw=args.raw,
                             strict=args.strict, skipped=skipped)
    except SkippedImages as err:
        raise ConfigError(str(err)) from None
    print(f"wrote {args.out}: {len(done)} image(s) predicted, {len(skipped)} skipped")
    if skipped:
        print("skipped (unreadable):", file=sys.stderr)
        for path, reason in skipped:
            print(f"  {path}: {reason}", file=sys.stderr)
        return 1
    return 0
