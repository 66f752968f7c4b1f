"""``medusa export``: a trained checkpoint as an ONNX or TorchScript file for use outside Python/PyTorch.

The exported graph is the eval-mode network with only the main tasks' heads (no auxiliary heads, no initial
predictions), in its literal form (the fused fast paths make shape-dependent Python decisions an exporter
cannot keep; the literal form gives the same outputs up to float rounding), followed by each task's
post-processing. Contract of the file:

- input ``image``: float32 ``[B, 3, H, W]``, RGB scaled to [0, 1] (the ImageNet normalisation is inside the
  graph); ``H`` and ``W`` multiples of 32;
- one output per task, named after it, at the input's size: ``semseg`` / ``human_parts`` int64 ``[B, H, W]``
  class ids; ``depth`` float32 ``[B, 1, H, W]`` metres (>= 0); ``normals`` float32 ``[B, 3, H, W]`` unit
  vectors; ``edge`` / ``sal`` float32 ``[B, 1, H, W]`` probabilities.

Height and width are those of the example (``--size``; export once per input size): the models read the input
size as Python numbers for the final resize, so a graph cannot follow another size, and both formats reject
another size instead of answering at the export size. ONNX files have a dynamic batch and named outputs;
TorchScript files are traced (the check reports whether another batch works) and return a dict
``{task: tensor}`` (``torch.jit.load("model.pt")(image)["depth"]``).

Every export is checked against the PyTorch model (the fused form, as used for inference) on a random input
and, when given, real images: the largest absolute difference of the float outputs must stay below
``FLOAT_TOLERANCE`` (relative to the output's range) and class maps must agree on at least ``CLASS_AGREEMENT``
of the pixels (a class whose two top logits are within rounding can flip).
"""

from __future__ import annotations

import argparse
import copy
import os
import sys
import time
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn as nn

from ..data.transforms import IMAGENET_MEAN, IMAGENET_STD
from ..errors import ConfigError
from ..options import output_file
from ..tasks import get_task, parse_tasks

__all__ = ["InferenceGraph", "export_model", "check_export", "FLOAT_TOLERANCE", "CLASS_AGREEMENT"]

FORMATS = ("onnx", "torchscript")
#: largest |exported - PyTorch| allowed, as a fraction of the PyTorch output's range (max - min, at least 1)
FLOAT_TOLERANCE = 1e-2
#: fraction of pixels on which exported and PyTorch class maps must agree
CLASS_AGREEMENT = 0.999


class InferenceGraph(nn.Module):
    """The exported computation: normalise, run the network, post-process each requested main task."""

    def __init__(self, net: nn.Module, tasks: Sequence[str]) -> None:
        super().__init__()
        self.net = net
        self.tasks = list(tasks)
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN, dtype=torch.float32).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor(IMAGENET_STD, dtype=torch.float32).view(1, 3, 1, 1))

    def forward(self, image: torch.Tensor) -> tuple[torch.Tensor, ...]:
        outputs = self.net((image - self.mean) / self.std)
        # a UFL chain names a task "<dataset>:<task>" where two of its datasets share the name
        return tuple(get_task(t.split(":")[-1]).postprocess(outputs[t]) for t in self.tasks)


class _EveryTask(nn.Module):
    """A universal-feature-learning model's forward over every task of its chain (the source's, unchanged, and
    the new ones), as ``medusa predict`` runs it."""

    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.ufl = net
        self.tasks = list(net.task_datasets())

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        return self.ufl.forward_all(x)


def _drop_auxiliary_heads(net: nn.Module) -> None:
    """Drop the auxiliary-only heads of a network, and of every source model in a UFL chain."""
    if hasattr(net, "drop_auxiliary_heads"):
        net.drop_auxiliary_heads()
    for part in ("source", "decoder"):
        inner = getattr(net, part, None)
        if isinstance(inner, nn.Module):
            _drop_auxiliary_heads(inner)


def inference_graph(module: Any, tasks: Sequence[str] | None = None, fused: bool = False) -> InferenceGraph:
    """The eval-mode :class:`InferenceGraph` of a loaded module (a copy; the module is left as it is)."""
    from ..models.optimize import set_fused

    net = copy.deepcopy(getattr(module, "net", module)).cpu().eval()
    _drop_auxiliary_heads(net)
    if callable(getattr(net, "forward_all", None)):  # UFL: every task of the chain, not only the new heads'
        net = _EveryTask(net)
    main = list(getattr(net, "tasks", []) or [])
    dataset = getattr(net, "dataset", None)
    if isinstance(tasks, str):
        tasks = [t.strip() for t in tasks.split(",") if t.strip()]
    wanted = list(tasks) if tasks and all(t in main for t in tasks) else (parse_tasks(tasks, dataset) if tasks
                                                                        else main)
    unknown = [t for t in wanted if t not in main]
    if unknown:
        raise ConfigError(f"--tasks {','.join(unknown)}: not main tasks of this model (main tasks: {main})")
    set_fused(net, fused)
    for p in net.parameters():
        p.requires_grad_(False)
    return InferenceGraph(net, wanted).eval()


class _NamedOutputs(nn.Module):
    """The graph's outputs as ``{task: tensor}`` (traced; TorchScript keeps a dict, ONNX names its outputs)."""

    def __init__(self, graph: InferenceGraph) -> None:
        super().__init__()
        self.graph = graph

    def forward(self, image: torch.Tensor) -> dict[str, torch.Tensor]:
        return dict(zip(self.graph.tasks, self.graph(image)))


class _SizeChecked(nn.Module):
    """A traced graph behind a check of the input's shape (scripted: the check stays in the file). A traced
    graph given another size would run and answer at the traced size."""

    def __init__(self, traced: nn.Module, tasks: Sequence[str], size: Sequence[int]) -> None:
        super().__init__()
        self.traced = traced
        self.tasks = list(tasks)
        self.height = int(size[0])
        self.width = int(size[1])

    def forward(self, image: torch.Tensor) -> dict[str, torch.Tensor]:
        if image.dim() != 4 or image.size(1) != 3 or image.size(2) != self.height or image.size(3) != self.width:
            raise ValueError("this model was exported for images of float32 [B, 3, " + str(self.height) + ", "
                             + str(self.width) + "] (RGB in [0, 1]); got shape " + str(image.shape)
                             + ": resize the image, or export again with --size for this size")
        return self.traced(image)


def _example(size: Sequence[int], batch: int = 1, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.rand(batch, 3, int(size[0]), int(size[1]), generator=g)


def export_model(graph: InferenceGraph, path: str | os.PathLike[str], fmt: str, size: Sequence[int],
                 verify: Callable[[Path], Any] | None = None) -> dict[str, Any]:
    """Write ``graph`` to ``path`` as ``fmt`` (``onnx`` or ``torchscript``), atomically; returns facts about it.

    ``verify(tmp_path)``, when given, runs on the written file before it takes the name ``path``: if it raises,
    no file is left behind (nor the temporary one) and the error propagates; what it returns is
    ``info["check"]``.
    """
    if fmt not in FORMATS:
        raise ConfigError(f"--format {fmt!r}: expected one of {', '.join(FORMATS)}")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".partial")
    example = _example(size)
    info: dict[str, Any] = {"format": fmt, "tasks": list(graph.tasks), "example_size": [int(s) for s in size]}
    try:
        with torch.no_grad():
            if fmt == "torchscript":
                with warnings.catch_warnings():  # TracerWarnings about Python numbers: the size is fixed by design
                    warnings.simplefilter("ignore", torch.jit.TracerWarning)
                    traced = torch.jit.trace(_NamedOutputs(graph), example, check_trace=False, strict=False)
                torch.jit.script(_SizeChecked(traced, graph.tasks, size)).save(str(tmp))
                info["dynamic"] = "size fixed (checked); batch: see the check"
            else:
                _export_onnx(graph, example, tmp, info)
        if verify is not None:
            info["check"] = verify(tmp)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    info["file"] = str(path)
    info["bytes"] = path.stat().st_size
    return info


def _export_onnx(graph: InferenceGraph, example: torch.Tensor, path: Path, info: dict[str, Any]) -> None:
    try:
        import onnx  # noqa: F401
    except ImportError:
        raise ConfigError("ONNX export needs the onnx package: pip install 'medusa-mtl[export]'") from None
    kwargs: dict[str, Any] = {"input_names": ["image"], "output_names": list(graph.tasks)}
    # Dynamic batch; height and width stay those of the example: the models read the input size as Python
    # ints (for the output resize), so a symbolic size would give outputs of the example's size, silently.
    batch = torch.export.Dim("batch", min=1)
    try:
        torch.onnx.export(graph, (example,), str(path), dynamo=True, external_data=False, verbose=False,
                          report=False, dynamic_shapes={"image": {0: batch}}, **kwargs)
        info["exporter"] = "torch.export (dynamo)"
    except Exception as err:  # the graph-capture exporter could not take it: fall back to the tracing one
        torch.onnx.export(graph, (example,), str(path), dynamo=False, opset_version=17,
                          dynamic_axes={"image": {0: "batch"}, **{t: {0: "batch"} for t in graph.tasks}}, **kwargs)
        info["exporter"] = f"TorchScript-based (dynamo export failed: {type(err).__name__})"


class ExportedModel:
    """Runs an exported file with the same call as the graph: ``run(image) -> tuple of arrays``."""

    def __init__(self, path: str | os.PathLike[str], fmt: str) -> None:
        self.fmt = fmt
        self.tasks: list[str]  # the outputs' task names, in order
        if fmt == "onnx":
            try:
                import onnxruntime as ort
            except ImportError:
                raise ConfigError("checking an ONNX export needs onnxruntime: pip install 'medusa-mtl[export]'") \
                    from None
            opts = ort.SessionOptions()
            opts.log_severity_level = 3
            self.session = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
            self.tasks = [o.name for o in self.session.get_outputs()]
        else:
            self.module = torch.jit.load(str(path), map_location="cpu").eval()
            self.tasks = list(self.module.tasks)

    def run(self, image: torch.Tensor) -> tuple[np.ndarray, ...]:
        if self.fmt == "onnx":
            return tuple(self.session.run(None, {"image": image.numpy()}))
        with torch.no_grad():
            outputs = self.module(image)
        return tuple(outputs[t].numpy() for t in self.tasks)


def _compare(tasks: Sequence[str], got: Sequence[np.ndarray], ref: Sequence[torch.Tensor]) -> dict[str, float]:
    """Per task: ``max_abs_diff`` / ``range`` for float outputs, ``agreement`` for class maps; raises on a miss."""
    out: dict[str, float] = {}
    for t, g, r in zip(tasks, got, ref):
        r = r.numpy()
        if g.shape != r.shape:
            raise ConfigError(f"export check: {t} has shape {g.shape}, PyTorch gives {r.shape}")
        if get_task(t.split(":")[-1]).kind == "classes":
            agreement = float((g == r).mean())
            out[t] = agreement
            if agreement < CLASS_AGREEMENT:
                raise ConfigError(f"export check: {t} class maps agree on {agreement:.4%} of the pixels "
                                  f"(< {CLASS_AGREEMENT:.1%})")
        else:
            scale = max(float(r.max() - r.min()), 1.0)
            diff = float(np.abs(g.astype(np.float64) - r).max()) / scale
            out[t] = diff
            if diff > FLOAT_TOLERANCE:
                raise ConfigError(f"export check: {t} differs from PyTorch by {diff:.2e} of its range "
                                  f"(> {FLOAT_TOLERANCE:g})")
    return out


def check_export(module: Any, path: str | os.PathLike[str], fmt: str, size: Sequence[int],
                 tasks: Sequence[str], images: Sequence[np.ndarray] = ()) -> dict[str, Any]:
    """Compare the exported file with the PyTorch model (fused inference form) on a random input and on
    ``images`` (uint8 H x W x 3, resized to ``size``); also tries batch 2.
    Returns the differences, the latency (median of 5, batch 1) and what is dynamic."""
    from ..data.transforms import resize_image

    reference = inference_graph(module, tasks, fused=True)
    exported = ExportedModel(path, fmt)
    inputs = [_example(size, seed=1)]
    # a copy: resize_image can return a read-only array, which torch.from_numpy warns about
    inputs += [torch.from_numpy(np.array(resize_image(im, size))).permute(2, 0, 1)[None].float() / 255
               for im in images]
    report: dict[str, Any] = {"random": None, "images": []}
    with torch.no_grad():
        for i, x in enumerate(inputs):
            diffs = _compare(reference.tasks, exported.run(x), reference(x))
            if i == 0:
                report["random"] = diffs
            else:
                report["images"].append(diffs)
        times = []
        for _ in range(5):
            t0 = time.perf_counter()
            exported.run(inputs[0])
            times.append(time.perf_counter() - t0)
        report["latency_ms"] = round(1000 * float(np.median(times)), 2)
        x = _example(size, batch=2, seed=2)
        try:
            got = exported.run(x)
        except Exception:  # a fixed batch: the runtime rejects the input
            report["dynamic"] = {"batch": False}
        else:
            _compare(reference.tasks, got, reference(x))  # a batch it accepts must give the right values
            report["dynamic"] = {"batch": True}
    return report


# ------------------------------------------------------------------------------------------------------------
# command line
# ------------------------------------------------------------------------------------------------------------

def add_export_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``medusa export``."""
    parser.add_argument("--ckpt", required=True, help="checkpoint written by training")
    parser.add_argument("--format", required=True, choices=FORMATS, help="onnx or torchscript")
    parser.add_argument("--out", required=True, type=output_file, help="file to write (e.g. model.onnx, model.pt)")
    parser.add_argument("--tasks", default=None,
                        help="main tasks to export, comma-separated (default: all; of a UFL model, every task of its "
                             "chain)")
    parser.add_argument("--size", default=None,
                        help="HxW of the example input, multiples of 32 (default: the checkpoint's training size, "
                             "else the dataset's default)")
    parser.add_argument("--check-images", default=None,
                        help="folder of images to check the export on, besides a random input")


def run_export(args: argparse.Namespace) -> int:
    """``medusa export``."""
    from ..data.formats import read_image
    from ..data.sizes import parse_network_size
    from .predictor import Predictor

    clash = {"onnx": (".pt", ".pth", ".ts", ".torchscript"), "torchscript": (".onnx",)}[args.format]
    if Path(args.out).suffix.lower() in clash:  # a TorchScript file named .onnx opens nowhere
        raise ConfigError(f"--out {args.out}: the extension names another format than --format {args.format}")
    predictor = Predictor.from_checkpoint(args.ckpt, size=parse_network_size(args.size))
    module, size = predictor.module, predictor.size
    graph = inference_graph(module, args.tasks)  # checks --tasks against what the model predicts
    tasks = list(graph.tasks)
    images = []
    if args.check_images:  # read first: a bad image stops the command before anything is written
        folder = Path(args.check_images)
        if not folder.is_dir():
            raise ConfigError(f"--check-images {folder}: not a folder (expected a folder of .jpg / .png images)")
        images = [read_image(p) for p in sorted(folder.iterdir())
                  if p.suffix.lower() in (".jpg", ".jpeg", ".png") and not p.name.startswith(".")][:4]
    # the file takes its name only once it has passed the check: a failed export leaves nothing behind
    info = export_model(graph, args.out, args.format, size,
                        verify=lambda tmp: check_export(module, tmp, args.format, size, tasks, images))
    report = info["check"]
    print(f"wrote {info['file']} ({info['bytes'] / 2**20:.1f} MiB, {args.format}"
          + (f", {info['exporter']}" if "exporter" in info else "") + ")")
    print(f"outputs: {', '.join(tasks)} (input 'image': float32 [B, 3, H, W] RGB in [0, 1])")
    if predictor.flip:
        print(f"note: {args.ckpt} was scored with test_flip (the mean of the outputs for an image and its mirror "
              "image); the exported file runs one pass: average its outputs with those of the mirrored input, "
              "mirrored back (a normal's x negated), to get the same predictions", file=sys.stderr)
    print(f"check against PyTorch ({size[0]}x{size[1]}): random input {_fmt(report['random'])}"
          + (f"; {len(report['images'])} image(s) " + _fmt(report["images"][-1]) if report["images"] else ""))
    dyn = report["dynamic"]
    print(f"latency {report['latency_ms']} ms (batch 1, CPU); dynamic batch: {'yes' if dyn['batch'] else 'no'}; "
          f"input size fixed at {size[0]}x{size[1]}")
    return 0


def _fmt(diffs: dict[str, float]) -> str:
    return ", ".join(f"{t} agrees on {v:.2%} of pixels" if get_task(t.split(":")[-1]).kind == "classes"
                     else f"{t} max diff {v:.1e} of its range" for t, v in diffs.items())
