"""Parameter and FLOP accounting of every registered model (SPEC §8), ``medusa resources``.

Conventions:

- **Params** = ``sum(p.numel() for p in model.parameters())`` (shared tensors once).
- **FLOPs** = total of :class:`torch.utils.flop_counter.FlopCounterMode`: convolutions and matrix products
  only (no BN, activations, pooling, interpolation or softmax), counted as **2 × MACs** (the papers' "FLOPs"
  are usually MACs: halve ours to compare).
- **with deep-supervision layers** ("train graph"): all parameters, and the FLOPs of one *train-mode*
  forward (initial predictions and auxiliary-only heads included). It runs at batch 2 and is halved (exact for
  conv/matmul FLOPs), because BatchNorm refuses a train-mode batch of one on 1x1 maps (pooled branches).
- **without** ("inference"): the parameters an *eval-mode* forward actually uses and that forward's FLOPs at
  batch 1. Used parameters are found generically: forward pre-hooks mark every module whose ``forward`` runs,
  and the parameters those modules own directly are counted (layers skipped in eval -- initial predictions,
  auxiliary-only heads -- drop out). A model may override this with an ``inference_parameters()`` method
  returning the parameters it needs at inference.

Models are built on PyTorch's ``meta`` device: shapes propagate and FLOPs are counted without allocating or
computing anything, so the full-resolution report takes seconds per model (a CPU fallback runs if a model
cannot run on ``meta``).

Scaling sweep (T = 1..max_tasks, all tasks main): the dataset's tasks are taken in a fixed cycle (NYUD: semseg,
depth, normals, edge; PASCAL: semseg, human_parts, sal, normals, edge). Slots beyond the dataset's task count
reuse the cycle's task definition (same output channels) under a temporary name ``<task>_sweep<k>``, registered
only for the duration of one measurement and removed from the task registry afterwards.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import datetime as _dt
import json
import sys
import time
import warnings
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn
from torch.utils.flop_counter import FlopCounterMode

from .. import tasks as _tasks
from ..data.sizes import NETWORK_MULTIPLE, parse_network_size
from ..errors import ConfigError
from ..models import create_model, is_model, list_models
from ..options import output_dir, positive_int
from ..provenance import write_json

#: Input resolution (H, W) per dataset (SPEC §6).
RESOLUTION: dict[str, tuple[int, int]] = {"nyud": (480, 640), "pascal": (512, 512)}

#: Task cycle of the scaling sweep per dataset.
SWEEP_CYCLE: dict[str, list[str]] = {
    "nyud": ["semseg", "depth", "normals", "edge"],
    "pascal": ["semseg", "human_parts", "sal", "normals", "edge"],
}

#: The papers' settings per dataset: (label, main tasks, aux_tasks or None).
PAPER_SETTINGS: dict[str, list[tuple[str, list[str], list[str] | None]]] = {
    "nyud": [
        ("semseg+depth", ["semseg", "depth"], None),
        ("semseg+depth, N+E aux", ["semseg", "depth"], ["semseg", "depth", "normals", "edge"]),
    ],
    "pascal": [
        ("5 tasks", ["semseg", "human_parts", "sal", "normals", "edge"], None),
    ],
}

_FLOPS_NOTE = (
    "FLOPs from torch.utils.flop_counter.FlopCounterMode: conv/matmul only, counted as 2 x MACs "
    "(GFLOPs = 1e9 FLOPs; halve for MACs)."
)


def _dataset_key(dataset: str) -> str:
    key = _tasks._dataset_key(dataset)  # the task registry's aliases (nyudv2, synthetic_pascal, ...)
    if key not in RESOLUTION:
        raise ValueError(f"no resolution known for dataset {dataset!r}; expected one of {sorted(RESOLUTION)}")
    return key


# ----------------------------------------------------------------------------------------------- counting


def count_params(model: nn.Module) -> int:
    """All parameters: ``sum(p.numel() for p in model.parameters())``."""
    return sum(p.numel() for p in model.parameters())


def _input_shape(input_size: Sequence[int], batch: int) -> tuple[int, ...]:
    size = tuple(int(s) for s in input_size)
    if len(size) == 2:
        return (batch, 3, *size)
    if len(size) == 3:
        return (batch, *size)
    if len(size) == 4:
        return (batch, *size[1:])
    raise ValueError(f"input_size must be (H, W), (C, H, W) or (B, C, H, W); got {input_size!r}")


def _model_device(model: nn.Module) -> torch.device:
    for t in model.parameters():
        return t.device
    for t in model.buffers():
        return t.device
    return torch.device("cpu")


@contextlib.contextmanager
def _mode(model: nn.Module, train: bool) -> Iterator[None]:
    """Temporarily put ``model`` in train/eval mode; restore mode and (off ``meta``) the buffers after."""
    was_training = model.training
    device = _model_device(model)
    saved = None
    if train and device.type != "meta":
        saved = {n: b.detach().clone() for n, b in model.named_buffers()}  # BN running stats
    model.train(train)
    try:
        yield
    finally:
        model.train(was_training)
        if saved is not None:
            with torch.no_grad():
                for n, b in model.named_buffers():
                    if n in saved:
                        b.copy_(saved[n])


def _zero_flops(*_args: Any, **_kwargs: Any) -> int:
    return 0


def _no_flop_ops() -> dict[Any, Any]:
    """Ops counted as 0 FLOPs *without* decomposing them first.

    FlopCounterMode decomposes every op outside its formula registry (keyed by overload packet) to look for
    convolutions or matmuls inside; BatchNorm's Python decomposition dominates the counting time and only holds
    elementwise ops (0 FLOPs either way), so it is mapped to zero directly. The totals are unchanged.
    """
    aten = torch.ops.aten
    ops = [aten.native_batch_norm.default, aten.upsample_nearest2d.default, aten.upsample_nearest2d.vec]
    return {op: _zero_flops for op in ops}


def flop_counter() -> FlopCounterMode:
    """A silent :class:`FlopCounterMode` (2 × MACs of conv/matmul), with BatchNorm short-cut (same totals)."""
    return FlopCounterMode(display=False, custom_mapping=_no_flop_ops())


def measure(model: nn.Module, input_size: Sequence[int], train: bool = False) -> dict[str, int]:
    """One forward pass: FLOPs (per image) and the parameters it used.

    Args:
        model: any module taking one image batch; runs on the device of its parameters (``meta`` is fine).
        input_size: ``(H, W)`` (3 input channels), ``(C, H, W)`` or ``(B, C, H, W)`` (B is ignored).
        train: train-mode forward (batch 2, halved) instead of eval-mode (batch 1).

    Returns:
        ``{"flops": ..., "params_used": ...}``; ``params_used`` is ``inference_parameters()`` when the model
        defines it (eval mode), otherwise the parameters owned by the modules whose forward ran.
    """
    batch = 2 if train else 1
    device = _model_device(model)
    x = torch.zeros(_input_shape(input_size, batch), device=device)
    called: set[int] = set()

    def hook(module: nn.Module, _inputs: Any) -> None:
        called.add(id(module))

    handles = [m.register_forward_pre_hook(hook) for m in model.modules()]
    try:
        with _mode(model, train), torch.no_grad(), flop_counter() as counter:
            model(x)
    finally:
        for h in handles:
            h.remove()
    flops = int(counter.get_total_flops()) // batch
    seen: set[int] = set()
    used = 0
    if not train and callable(getattr(model, "inference_parameters", None)):
        params: Any = model.inference_parameters()  # type: ignore[operator]
    else:
        params = (p for m in model.modules() if id(m) in called for p in m.parameters(recurse=False))
    for p in params:
        if id(p) not in seen:
            seen.add(id(p))
            used += p.numel()
    return {"flops": flops, "params_used": used}


def count_flops(model: nn.Module, input_size: Sequence[int], train: bool = False) -> int:
    """FLOPs (2 × MACs, conv/matmul only; FlopCounterMode) of one forward of one image.

    Eval mode at batch 1 by default (SPEC §8); ``train=True`` counts the train-mode graph (deep supervision).
    ``input_size`` is ``(H, W)`` or ``(C, H, W)``. Train-mode counting restores BatchNorm buffers afterwards.
    """
    return measure(model, input_size, train=train)["flops"]


def count_inference_params(model: nn.Module, input_size: Sequence[int]) -> int:
    """Parameters used by one eval-mode forward (see :func:`measure`)."""
    return measure(model, input_size, train=False)["params_used"]


# ----------------------------------------------------------------------------------------------- sweep


@contextlib.contextmanager
def sweep_tasks(dataset: str, n: int, cycle: Sequence[str] | None = None) -> Iterator[list[str]]:
    """Yield ``n`` task names for the scaling sweep on ``dataset``.

    The first tasks are the dataset's own (``SWEEP_CYCLE``, or ``cycle``); slot ``k`` beyond the cycle is a
    copy of ``cycle[k % len(cycle)]`` (same channels, loss, ...) named ``<task>_sweep<k>``, registered in
    :data:`medusa_mtl.tasks.TASKS` only inside the ``with`` block and removed afterwards.
    """
    key = _dataset_key(dataset)
    base = list(cycle) if cycle is not None else SWEEP_CYCLE[key]
    if n < 1:
        raise ValueError(f"the number of tasks must be >= 1, got {n}")
    names: list[str] = []
    added: list[str] = []
    try:
        for k in range(n):
            src = base[k % len(base)]
            if k < len(base):
                names.append(src)
                continue
            name = f"{src}_sweep{k}"
            if name in _tasks.TASKS:
                raise RuntimeError(f"task {name!r} is already registered; cannot build the sweep")
            _tasks.register_task(dataclasses.replace(_tasks.get_task(src), name=name))
            added.append(name)
            names.append(name)
        yield names
    finally:
        for name in added:
            _tasks.TASKS.pop(name, None)


# ----------------------------------------------------------------------------------------------- table


def _build(name: str, tasks: list[str], aux_tasks: list[str] | None, dataset: str, device: str) -> nn.Module:
    with torch.device(device):
        return create_model(name, tasks=tasks, aux_tasks=aux_tasks, dataset=dataset)


def measure_model(name: str, tasks: list[str], aux_tasks: list[str] | None, dataset: str,
                  size: Sequence[int]) -> dict[str, Any]:
    """Build ``name`` for the task setting and measure it with and without deep-supervision-only layers.

    Runs on the ``meta`` device; falls back to the CPU when the model builds there but cannot run there
    (e.g. data-dependent Python control flow). Build errors are raised as they are.
    """
    model = _build(name, tasks, aux_tasks, dataset, "meta")
    try:
        train = measure(model, size, train=True)
        ev = measure(model, size, train=False)
        device = "meta"
    except Exception as e:  # a model that needs real data: count on the CPU instead (slower)
        warnings.warn(f"{name}: meta-device measurement failed ({e!r}); measuring on CPU", stacklevel=2)
        model = _build(name, tasks, aux_tasks, dataset, "cpu")
        train = measure(model, size, train=True)
        ev = measure(model, size, train=False)
        device = "cpu"
    return {
        "params": count_params(model),
        "flops": train["flops"],
        "params_inference": ev["params_used"],
        "flops_inference": ev["flops"],
        "device": device,
    }


def resource_table(dataset: str, max_tasks: int = 6, models: Sequence[str] | None = None,
                   size: Sequence[int] | None = None) -> list[dict[str, Any]]:
    """Params and FLOPs of every model for T = 1..max_tasks (``setting="sweep"``) and the paper settings.

    Args:
        dataset: ``"nyud"`` or ``"pascal"`` (output channels, resolution, paper settings).
        max_tasks: largest T of the sweep.
        models: model names (default: every registered model, :func:`medusa_mtl.models.list_models`).
        size: ``(H, W)`` override of the dataset resolution (e.g. tiny sizes in tests).

    Returns:
        One dict per (model, setting): ``model, setting, T, tasks, aux_tasks, params, flops`` (with
        deep-supervision layers: all params, train-mode forward) and ``params_inference, flops_inference``
        (eval forward), or ``error`` when the model could not be built or run.
    """
    key = _dataset_key(dataset)
    hw = tuple(size) if size is not None else RESOLUTION[key]
    names = list(models) if models is not None else list_models()
    _check_request(names, hw, max_tasks)
    rows: list[dict[str, Any]] = []

    def run(name: str, setting: str, tasks: list[str], aux: list[str] | None) -> None:
        row: dict[str, Any] = {
            "model": name, "setting": setting, "T": len(tasks), "N": len(aux or tasks),
            "tasks": list(tasks), "aux_tasks": list(aux or tasks),
        }
        try:
            row.update(measure_model(name, tasks, aux, key, hw))
        except Exception as e:  # keep the report going, say what failed
            row["error"] = f"{type(e).__name__}: {e}"
            warnings.warn(f"{name} ({setting}, T={len(tasks)}): {row['error']}", stacklevel=2)
        rows.append(row)

    for name in names:
        for t in range(1, max_tasks + 1):
            with sweep_tasks(key, t) as task_names:
                run(name, "sweep", task_names, None)
        for label, main, aux in PAPER_SETTINGS[key]:
            run(name, label, main, aux)
    return rows


def _check_request(models: Sequence[str], size: Sequence[int], max_tasks: int) -> None:
    """What no row could measure is refused up front (a report of error rows is no report)."""
    unknown = [m for m in models if not is_model(m)]
    if unknown:
        raise ConfigError(f"--models {','.join(unknown)}: not registered; registered models: "
                          f"{', '.join(list_models())}")
    if not models:
        raise ConfigError("--models: no model named")
    if len(size) != 2 or any(int(s) <= 0 or int(s) % NETWORK_MULTIPLE for s in size):
        raise ConfigError(f"--size {'x'.join(str(s) for s in size)}: height and width must be positive multiples "
                          f"of {NETWORK_MULTIPLE}")
    if max_tasks < 1:
        raise ConfigError(f"--max-tasks {max_tasks}: expected at least 1")


# ----------------------------------------------------------------------------------------------- report


def _m(v: Any) -> str:
    return f"{v / 1e6:.2f}" if isinstance(v, int | float) else "–"


def _g(v: Any) -> str:
    return f"{v / 1e9:.1f}" if isinstance(v, int | float) else "–"


def _ratio(a: Any, b: Any) -> str:
    return f"{a / b:.3f}" if isinstance(a, int | float) and isinstance(b, int | float) and b else "–"


def markdown_tables(rows: list[dict[str, Any]], dataset: str, size: Sequence[int]) -> str:
    """The Markdown report: the T sweep, the paper settings and the Medusa / MTI-Net ratios."""
    h, w = size
    lines = [
        f"# Resources on {dataset} ({h}x{w}, batch 1)",
        "",
        _FLOPS_NOTE,
        "\"with DS\": all parameters and a train-mode forward (deep-supervision initial predictions and "
        "auxiliary-only heads included); \"inference\": parameters used by an eval forward and its FLOPs.",
        "",
        "## Scaling with the number of tasks T (all tasks main)",
        "",
        "| model | T | params (M) | GFLOPs | params inference (M) | GFLOPs inference |",
        "|---|---|---|---|---|---|",
    ]
    sweep = [r for r in rows if r["setting"] == "sweep"]
    for r in sweep:
        if "error" in r:
            lines.append(f"| {r['model']} | {r['T']} | error: {r['error'][:60]} | | | |")
            continue
        lines.append(
            f"| {r['model']} | {r['T']} | {_m(r['params'])} | {_g(r['flops'])} | "
            f"{_m(r['params_inference'])} | {_g(r['flops_inference'])} |"
        )
    paper = [r for r in rows if r["setting"] != "sweep"]
    lines += [
        "",
        "## Paper settings",
        "",
        "| model | setting | params (M) | GFLOPs | params inference (M) | GFLOPs inference |",
        "|---|---|---|---|---|---|",
    ]
    for r in paper:
        if "error" in r:
            lines.append(f"| {r['model']} | {r['setting']} | error: {r['error'][:60]} | | | |")
            continue
        lines.append(
            f"| {r['model']} | {r['setting']} | {_m(r['params'])} | {_g(r['flops'])} | "
            f"{_m(r['params_inference'])} | {_g(r['flops_inference'])} |"
        )
    lines += [
        "",
        "Medusa / MTI-Net ratio:",
        "",
        "| setting | params | FLOPs | params inference | FLOPs inference |",
        "|---|---|---|---|---|",
    ]
    by = {(r["model"], r["setting"]): r for r in paper if "error" not in r}
    for setting in dict.fromkeys(r["setting"] for r in paper):
        a, b = by.get(("medusa", setting), {}), by.get(("mtinet", setting), {})
        lines.append(
            f"| {setting} | {_ratio(a.get('params'), b.get('params'))} | {_ratio(a.get('flops'), b.get('flops'))} "
            f"| {_ratio(a.get('params_inference'), b.get('params_inference'))} "
            f"| {_ratio(a.get('flops_inference'), b.get('flops_inference'))} |"
        )
    return "\n".join(lines) + "\n"


def _plot(rows: list[dict[str, Any]], dataset: str, path: Path) -> None:
    from matplotlib.figure import Figure

    fig = Figure(figsize=(11, 4.5))
    axes = fig.subplots(1, 2)
    sweep = [r for r in rows if r["setting"] == "sweep" and "error" not in r]
    for i, name in enumerate(dict.fromkeys(r["model"] for r in sweep)):
        rs = sorted((r for r in sweep if r["model"] == name), key=lambda r: r["T"])
        ts = [r["T"] for r in rs]
        color = f"C{i % 10}"
        for ax, key, scale in ((axes[0], "params", 1e6), (axes[1], "flops", 1e9)):
            ax.plot(ts, [r[f"{key}_inference"] / scale for r in rs], "o-", color=color, label=name)
            ax.plot(ts, [r[key] / scale for r in rs], ":", color=color, alpha=0.6)
    axes[0].set(xlabel="number of tasks T", ylabel="parameters (M)", title=f"Parameters ({dataset})")
    axes[1].set(xlabel="number of tasks T", ylabel="GFLOPs (2×MAC, log scale)", title=f"FLOPs ({dataset})",
                yscale="log")
    all_t = sorted({r["T"] for r in sweep})
    for ax in axes:
        ax.grid(alpha=0.3)
        if all_t:
            ax.set_xticks(all_t)
    axes[0].legend(title="solid: inference, dotted: with DS", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def write_report(dataset: str, max_tasks: int = 6, out_dir: str | Path = ".", models: Sequence[str] | None = None,
                 size: Sequence[int] | None = None) -> dict[str, Path]:
    """Write ``resources_<dataset>.md``, ``.json`` and ``.png`` into ``out_dir``; return their paths."""
    key = _dataset_key(dataset)
    hw = tuple(int(s) for s in size) if size is not None else RESOLUTION[key]
    start = time.perf_counter()
    rows = resource_table(key, max_tasks=max_tasks, models=models, size=hw)  # checks the request first
    elapsed = time.perf_counter() - start
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)  # only once there is something to write
    import timm

    paths = {ext: out / f"resources_{key}.{ext}" for ext in ("md", "json", "png")}
    md = markdown_tables(rows, key, hw)
    paths["md"].write_text(md)
    payload = {
        "dataset": key,
        "input_size": list(hw),
        "max_tasks": max_tasks,
        "flops_convention": _FLOPS_NOTE,
        "torch": torch.__version__,
        "timm": timm.__version__,
        "timestamp": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
        "seconds": round(elapsed, 2),
        "rows": rows,
    }
    write_json(paths["json"], payload)
    _plot(rows, key, paths["png"])
    return paths


# ----------------------------------------------------------------------------------------------- CLI


def add_resources_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``medusa resources``."""
    parser.add_argument("--dataset", choices=sorted(RESOLUTION), default="nyud",
                        help="dataset: output channels, resolution and paper settings")
    parser.add_argument("--max-tasks", type=positive_int, default=6, help="largest number of tasks in the sweep")
    parser.add_argument("--out", default=".", type=output_dir,
                        help="output folder for resources_<dataset>.{md,json,png}")
    parser.add_argument("--models", default=None, help="comma-separated models (default: all registered)")
    parser.add_argument("--size", default=None, help="override the input size, e.g. 64x64 (multiples of 32)")


def run_resources(args: argparse.Namespace) -> int:
    """Run ``medusa resources``: write the report and print the Markdown table to stdout."""
    models = [m.strip() for m in args.models.split(",") if m.strip()] if args.models is not None else None
    paths = write_report(args.dataset, max_tasks=args.max_tasks, out_dir=args.out, models=models,
                         size=parse_network_size(args.size))
    sys.stdout.write(paths["md"].read_text())
    print(f"\nwritten: {', '.join(str(p) for p in paths.values())}")
    failed = [r for r in json.loads(paths["json"].read_text())["rows"] if "error" in r]
    if failed:  # measured what it could, but a model that cannot be built or run is a failure of the command
        print(f"medusa resources: {len(failed)} of the report's rows failed (see 'error' in the report)",
              file=sys.stderr)
        return 1
    return 0
