"""Speed of every registered model: eval latency, training throughput, peak memory, and the backbone floor.

Settings (SPEC §6 resolutions):

- ``nyud``: main tasks semseg + depth, auxiliary normals + edge (``aux_tasks`` = all four), 480x640;
- ``pascal``: semseg, human_parts, sal, normals, edge (all main), 512x512.

Per setting and model:

- **eval latency** at batch 1 (``--eval-batch``): ``torch.inference_mode()``, eval mode, main-task outputs only;
  models with :meth:`drop_auxiliary_heads` (Medusa, MTAN, MT baseline) drop their auxiliary heads first (a copy is
  measured, the training copy keeps them);
- **training throughput** (images/s) at batch 8 (``--train-batch``; on CUDA halved until it fits): train mode
  with every auxiliary head and deep supervision, the task losses of ``training.py`` (outputs upsampled to
  the label size), backward and an Adam step (the project's default optimiser);
- **peak memory** of one eval forward / one training step above what was allocated before it: on CUDA
  ``torch.cuda.max_memory_allocated``; on the CPU the running sum of the tensor allocations and frees that
  ``torch.profiler`` records (``profile_memory=True``) -- tensor memory only, no allocator overhead, one
  extra untimed run; ``n/a`` if the profiler cannot give it;
- the **backbone floor**: the shared backbone alone (forward at batch 1; for training forward + backward of
  the sum of its feature means + Adam step), the cost every shared-backbone model pays.

On the CPU, glibc malloc is told to keep freed memory (:func:`tune_glibc_malloc`; ``--no-malloc-tuning`` to
skip), so that large tensors are not page-faulted anew on every call, as with any caching allocator.

All models of all settings live in one process and are measured **interleaved**: after warm-up, each of
``--rounds`` rounds times every model once (eval, then train), in an order rotated every round, and the
medians over rounds are reported. Load that comes and goes (other jobs on the machine) then hits all models
alike, so ratios hold even when absolute times drift. The JSON also has, for each ratio, the median of the
per-round ratios (paired in time).

Defaults: CUDA -- full resolution for eval and training. CPU -- full resolution for eval, and
``--train-size-scale 0.25`` (128x160 NYUD, 128x128 PASCAL) for training at batch 8, because a full-resolution
batch-8 training step of MTI-Net takes minutes on a few cores. Sizes are rounded to multiples of 32 (the
backbone's stride).

Usage::

    python benchmarks/throughput.py --device cpu --json results/throughput_cpu.json
    python benchmarks/throughput.py --device cuda --dtype bf16 --channels-last --json results/tp_bf16.json
    python benchmarks/throughput.py --size-scale 0.1 --rounds 1 --models mt_baseline,medusa   # smoke run

The ratios the performance issue asks for are printed at the end with PASS/MISS against their targets.
"""

from __future__ import annotations

import argparse
import copy
import datetime as dt
import json
import math
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn

from medusa_mtl.models import build_backbone, create_model, list_models
from medusa_mtl.models.base import DEEP_SUPERVISION
from medusa_mtl.models.optimize import autocast, compile_model, prepare_input, set_fused, to_channels_last
from medusa_mtl.provenance import versions
from medusa_mtl.tasks import get_task

FLOOR = "backbone"


@dataclass(frozen=True)
class Setting:
    """One benchmark setting: dataset, main tasks, supervised tasks, full input size."""

    name: str
    label: str
    dataset: str
    tasks: tuple[str, ...]
    aux_tasks: tuple[str, ...] | None
    size: tuple[int, int]


SETTINGS: dict[str, Setting] = {
    "nyud": Setting("nyud", "NYUD semseg+depth, N+E aux", "nyud", ("semseg", "depth"),
                    ("semseg", "depth", "normals", "edge"), (480, 640)),
    "pascal": Setting("pascal", "PASCAL 5 tasks", "pascal", ("semseg", "human_parts", "sal", "normals", "edge"),
                      None, (512, 512)),
}

#: (label, setting, measure, numerator, denominator, comparison, target). ``eval`` compares latencies,
#: ``train`` compares training throughputs (images/s).
TARGETS: list[tuple[str, str, str, str, str, str, float]] = [
    ("Medusa / MTI-Net eval latency, NYUD N+E", "nyud", "eval", "medusa", "mtinet", "<=", 0.8),
    ("Medusa / MTI-Net eval latency, PASCAL 5 tasks", "pascal", "eval", "medusa", "mtinet", "<=", 0.7),
    ("Medusa / backbone floor eval latency, NYUD", "nyud", "eval", "medusa", FLOOR, "<=", 1.5),
    ("Medusa / MTI-Net training throughput, NYUD N+E", "nyud", "train", "medusa", "mtinet", ">=", 1.15),
    ("Medusa / MTI-Net training throughput, PASCAL 5 tasks", "pascal", "train", "medusa", "mtinet", ">=", 1.15),
]


def scaled_size(size: Sequence[int], scale: float, multiple: int = 32) -> tuple[int, int]:
    """``size * scale`` rounded to the nearest multiple of ``multiple`` (at least ``multiple``)."""
    return tuple(max(multiple, int(round(s * scale / multiple)) * multiple) for s in size)  # type: ignore[return-value]


# ----------------------------------------------------------------------------------------------- data / loss


def make_targets(tasks: Sequence[str], dataset: str, batch: int, size: Sequence[int],
                 device: torch.device, generator: torch.Generator) -> dict[str, torch.Tensor]:
    """Random labels of the right kind for every task (class maps, depth, unit normals, binary maps)."""
    h, w = size
    out: dict[str, torch.Tensor] = {}
    for t in tasks:
        task = get_task(t)
        c = task.channels(dataset)
        if task.kind == "classes":
            y = torch.randint(0, c, (batch, h, w), generator=generator)
        elif task.kind == "binary":
            y = (torch.rand(batch, 1, h, w, generator=generator) > 0.7).float()
        elif c == 3:  # normals: unit vectors
            y = torch.nn.functional.normalize(torch.randn(batch, 3, h, w, generator=generator), dim=1)
        else:  # depth and other dense maps: positive values
            y = torch.rand(batch, c, h, w, generator=generator) * 5 + 0.5
        out[t] = y.to(device)
    return out


def task_loss(outputs: dict[str, Any], targets: dict[str, torch.Tensor], dataset: str) -> torch.Tensor:
    """The training loss of ``training.MultiTaskModule.compute_loss``: every final and deep-supervision output
    upsampled to its label, the task's loss, weighted."""
    total: torch.Tensor | None = None

    def add(task_name: str, raw: torch.Tensor) -> None:
        nonlocal total
        task = get_task(task_name)
        target = targets[task_name]
        value = task.loss(task.upsample(raw, target.shape[-2:]).float(), target) * task.loss_weight(dataset)
        total = value if total is None else total + value

    for t, raw in outputs.items():
        if t != DEEP_SUPERVISION and t in targets:
            add(t, raw)
    for preds in (outputs.get(DEEP_SUPERVISION) or {}).values():
        for t, raw in preds.items():
            if t in targets:
                add(t, raw)
    if total is None:
        raise RuntimeError(f"no supervised output among {sorted(outputs)}")
    return total


class _FloorNet(nn.Module):
    """The backbone alone; its "loss" is the sum of the feature maps' means."""

    def __init__(self, backbone: nn.Module) -> None:
        super().__init__()
        self.backbone = backbone

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        return self.backbone(x)


# ----------------------------------------------------------------------------------------------- runners


@dataclass
class Bench:
    """Everything needed to time one model in one setting."""

    setting: Setting
    model: str
    eval_step: Callable[[], None]
    train_step: Callable[[], None]
    train_batch: int
    params: int
    params_eval: int
    eval_times: list[float] = field(default_factory=list)
    train_times: list[float] = field(default_factory=list)
    eval_peak: float | None = None
    train_peak: float | None = None
    error: str | None = None


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _n_params(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def build_bench(setting: Setting, name: str, args: argparse.Namespace, device: torch.device,
                eval_size: tuple[int, int], train_size: tuple[int, int]) -> Bench:
    """Build the eval and training copies of ``name`` (or the backbone floor) with the chosen switches."""
    gen = torch.Generator().manual_seed(0)
    torch.manual_seed(0)
    if name == FLOOR:
        train_net: nn.Module = _FloorNet(build_backbone(args.backbone))
    else:
        train_net = create_model(name, tasks=list(setting.tasks),
                                 aux_tasks=list(setting.aux_tasks) if setting.aux_tasks else None,
                                 dataset=setting.dataset, backbone=args.backbone)
    eval_net = copy.deepcopy(train_net)
    if callable(getattr(eval_net, "drop_auxiliary_heads", None)):
        eval_net.drop_auxiliary_heads()
    params, params_eval = _n_params(train_net), _n_params(eval_net)
    for net in (train_net, eval_net):
        net.to(device)
        set_fused(net, not args.reference)
        if args.channels_last:
            to_channels_last(net)
    eval_net.eval()
    train_net.train()
    optimizer = torch.optim.Adam([p for p in train_net.parameters() if p.requires_grad], lr=1e-5,
                                 weight_decay=1e-4)
    run_eval: Callable[..., Any] = compile_model(eval_net) if args.compile else eval_net
    run_train: Callable[..., Any] = compile_model(train_net) if args.compile else train_net
    x_eval = prepare_input(torch.randn(args.eval_batch, 3, *eval_size, generator=gen).to(device), args.channels_last)
    supervised = list(setting.aux_tasks or setting.tasks)
    dtype = args.dtype

    def eval_step() -> None:
        with torch.inference_mode(), autocast(device.type, dtype):
            run_eval(x_eval)

    batch = args.train_batch
    state: dict[str, Any] = {}

    def make_train_inputs(b: int) -> None:
        state["x"] = prepare_input(torch.randn(b, 3, *train_size, generator=gen).to(device), args.channels_last)
        state["y"] = make_targets(supervised, setting.dataset, b, train_size, device, gen)

    def train_step() -> None:
        optimizer.zero_grad(set_to_none=True)
        with autocast(device.type, dtype):
            out = run_train(state["x"])
            if name == FLOOR:
                loss = sum(f.float().mean() for f in out)
            else:
                loss = task_loss(out, state["y"], setting.dataset)
        loss.backward()  # type: ignore[union-attr]
        optimizer.step()

    make_train_inputs(batch)
    if device.type == "cuda":  # the largest batch <= --train-batch that fits
        while True:
            try:
                train_step()
                _sync(device)
                break
            except torch.cuda.OutOfMemoryError:
                optimizer.zero_grad(set_to_none=True)
                state.clear()
                torch.cuda.empty_cache()
                if batch == 1:
                    raise
                batch = max(1, batch // 2)
                make_train_inputs(batch)
    return Bench(setting, name, eval_step, train_step, batch, params, params_eval)


def _noop() -> None:
    return None


def _timed(fn: Callable[[], None], iters: int, device: torch.device) -> float:
    _sync(device)
    start = time.perf_counter()
    for _ in range(iters):
        fn()
    _sync(device)
    return (time.perf_counter() - start) / iters


def _cpu_peak_bytes(fn: Callable[[], None]) -> float | None:
    """Peak of (tensor bytes allocated - freed) during ``fn``, from the profiler's allocation records."""
    try:
        from torch._C._profiler import _EventType
        from torch.profiler import ProfilerActivity, profile

        with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
            fn()
        allocations = []
        stack = list(prof.profiler.kineto_results.experimental_event_tree())  # type: ignore[union-attr]
        while stack:
            event = stack.pop()
            if event.tag == _EventType.Allocation and event.extra_fields.device.type == "cpu":
                allocations.append((event.start_time_ns, event.extra_fields.alloc_size))
            stack.extend(event.children)
        allocations.sort()
        live = peak = 0
        for _, size in allocations:
            live += size
            peak = max(peak, live)
        return float(peak)
    except Exception as err:  # a private profiler API: report n/a rather than fail the benchmark
        print(f"  (CPU peak memory unavailable: {type(err).__name__}: {err})", file=sys.stderr)
        return None


def peak_memory(fn: Callable[[], None], device: torch.device, cpu_memory: bool) -> float | None:
    """Peak bytes above the memory allocated before ``fn`` (CUDA: allocator statistics; CPU: profiler)."""
    if device.type == "cuda":
        _sync(device)
        torch.cuda.reset_peak_memory_stats(device)
        base = torch.cuda.memory_allocated(device)
        fn()
        _sync(device)
        return float(torch.cuda.max_memory_allocated(device) - base)
    return _cpu_peak_bytes(fn) if cpu_memory else None


# ----------------------------------------------------------------------------------------------- report


def _median(xs: Sequence[float]) -> float | None:
    return statistics.median(xs) if xs else None


def summarize(benches: list[Bench]) -> dict[str, dict[str, dict[str, Any]]]:
    """Per setting and model: medians, throughput, memory, params and the ratio to the backbone floor."""
    out: dict[str, dict[str, dict[str, Any]]] = {}
    for b in benches:
        eval_ms = _median(b.eval_times)
        train_s = _median(b.train_times)
        row: dict[str, Any] = {
            "eval_ms": None if eval_ms is None else eval_ms * 1e3,
            "train_step_s": train_s,
            "train_img_s": None if not train_s else b.train_batch / train_s,
            "train_batch": b.train_batch,
            "eval_peak_mib": None if b.eval_peak is None else b.eval_peak / 2**20,
            "train_peak_mib": None if b.train_peak is None else b.train_peak / 2**20,
            "params": b.params,
            "params_eval": b.params_eval,
            "eval_times_s": b.eval_times,
            "train_times_s": b.train_times,
        }
        if b.error:
            row["error"] = b.error
        out.setdefault(b.setting.name, {})[b.model] = row
    for rows in out.values():
        floor = rows.get(FLOOR, {}).get("eval_ms")
        for row in rows.values():
            row["eval_vs_floor"] = row["eval_ms"] / floor if floor and row["eval_ms"] else None
    return out


def _paired(a: Sequence[float], b: Sequence[float]) -> float | None:
    pairs = [x / y for x, y in zip(a, b) if y > 0]
    return statistics.median(pairs) if pairs else None


def target_ratios(results: dict[str, dict[str, dict[str, Any]]]) -> list[dict[str, Any]]:
    """The issue's ratios with PASS/MISS (``n/a`` when a model or setting was not measured)."""
    rows = []
    for label, setting, measure, num, den, op, target in TARGETS:
        r: dict[str, Any] = {"label": label, "setting": setting, "measure": measure, "numerator": num,
                             "denominator": den, "comparison": op, "target": target, "ratio": None,
                             "paired_ratio": None, "verdict": "n/a"}
        a, b = results.get(setting, {}).get(num), results.get(setting, {}).get(den)
        if a and b:
            if measure == "eval" and a["eval_ms"] and b["eval_ms"]:
                r["ratio"] = a["eval_ms"] / b["eval_ms"]
                r["paired_ratio"] = _paired(a["eval_times_s"], b["eval_times_s"])
            elif measure == "train" and a["train_img_s"] and b["train_img_s"]:
                r["ratio"] = a["train_img_s"] / b["train_img_s"]
                # throughput ratio = b's step time / a's step time (per image)
                r["paired_ratio"] = _paired([t / b["train_batch"] for t in b["train_times_s"]],
                                            [t / a["train_batch"] for t in a["train_times_s"]])
            if r["ratio"] is not None:
                ok = r["ratio"] <= target if op == "<=" else r["ratio"] >= target
                r["verdict"] = "PASS" if ok else "MISS"
        rows.append(r)
    return rows


def _fmt(v: Any, spec: str) -> str:
    return "n/a" if v is None or (isinstance(v, float) and math.isnan(v)) else format(v, spec)


def format_tables(results: dict[str, dict[str, dict[str, Any]]], ratios: list[dict[str, Any]],
                  meta: dict[str, Any]) -> str:
    """Markdown tables (one per setting) and the target ratios."""
    lines = [
        f"device: {meta['device']['name']}, dtype {meta['options']['dtype']}, channels_last "
        f"{meta['options']['channels_last']}, compile {meta['options']['compile']}, threads "
        f"{meta['threads']}, rounds {meta['options']['rounds']}, malloc tuning {meta['malloc_tuned']}",
        "",
    ]
    for name, rows in results.items():
        s = meta["settings"][name]
        lines += [
            f"## {s['label']} -- eval {s['eval_size'][0]}x{s['eval_size'][1]} batch {meta['options']['eval_batch']},"
            f" train {s['train_size'][0]}x{s['train_size'][1]}",
            "",
            "| model | eval latency (ms) | x floor | train img/s | train batch | eval peak (MiB) | train peak (MiB) "
            "| params (M) | params eval (M) |",
            "|---|---|---|---|---|---|---|---|---|",
        ]
        for model, r in rows.items():
            label = f"{model} (floor)" if model == FLOOR else model
            if r.get("error"):
                lines.append(f"| {label} | error: {r['error'][:80]} | | | | | | | |")
                continue
            lines.append(
                f"| {label} | {_fmt(r['eval_ms'], '.1f')} | {_fmt(r['eval_vs_floor'], '.2f')} | "
                f"{_fmt(r['train_img_s'], '.2f')} | {r['train_batch']} | {_fmt(r['eval_peak_mib'], '.0f')} | "
                f"{_fmt(r['train_peak_mib'], '.0f')} | {r['params'] / 1e6:.2f} | {r['params_eval'] / 1e6:.2f} |"
            )
        lines.append("")
    lines += ["## Targets", "", "| ratio | value | paired | target | verdict |", "|---|---|---|---|---|"]
    for r in ratios:
        lines.append(f"| {r['label']} | {_fmt(r['ratio'], '.3f')} | {_fmt(r['paired_ratio'], '.3f')} | "
                     f"{r['comparison']} {r['target']} | {r['verdict']} |")
    return "\n".join(lines) + "\n"


def _versions() -> dict[str, str]:
    """The project's version record (:func:`medusa_mtl.provenance.versions`) plus what this benchmark adds."""
    return {
        **versions(),
        "cuda": str(torch.version.cuda),
        "cudnn": str(torch.backends.cudnn.version()) if torch.backends.cudnn.is_available() else "n/a",
    }


def _device_info(device: torch.device) -> dict[str, Any]:
    info: dict[str, Any] = {"type": device.type, "platform": platform.platform(), "cpu": platform.processor(),
                            "cpu_count": os.cpu_count()}
    try:
        with open("/proc/cpuinfo") as f:
            names = [line.split(":", 1)[1].strip() for line in f if line.startswith("model name")]
        if names:
            info["cpu"] = names[0]
    except OSError:
        pass
    if device.type == "cuda":
        props = torch.cuda.get_device_properties(device)
        info["name"] = props.name
        info["memory_gib"] = round(props.total_memory / 2**30, 1)
    else:
        info["name"] = f"CPU ({info['cpu']}, {info['cpu_count']} logical cores)"
    return info


def tune_glibc_malloc() -> bool:
    """Keep freed memory in the process (glibc: no mmap for large blocks, no trimming of the heap top).

    By default glibc serves every block above 32 MiB (and, adaptively, smaller ones) with a fresh ``mmap``
    and returns it on free, so each call pays page faults for its large tensors -- a full-resolution output
    map costs tens of milliseconds of page faults on the CPU. Caching allocators (PyTorch's on CUDA,
    jemalloc/tcmalloc on CPU deployments) reuse memory instead; this makes glibc do the same. Same for every
    model; ``--no-malloc-tuning`` measures the raw default. Returns whether the settings were applied.
    """
    try:
        import ctypes

        libc = ctypes.CDLL("libc.so.6")
        m_trim_threshold, m_mmap_max = -1, -4
        return bool(libc.mallopt(m_mmap_max, 0)) and bool(libc.mallopt(m_trim_threshold, 2**31 - 1))
    except (OSError, AttributeError):  # not glibc
        return False


def _load() -> list[float] | None:
    try:
        return [round(v, 2) for v in os.getloadavg()]
    except OSError:
        return None


# ----------------------------------------------------------------------------------------------- main


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu", help="cpu or cuda[:i]")
    p.add_argument("--dtype", choices=["fp32", "bf16", "fp16"], default="fp32",
                   help="fp32, or autocast to bf16 / fp16 (fp16: CUDA only)")
    p.add_argument("--models", default=None, help="comma-separated models (default: all registered)")
    p.add_argument("--settings", default="nyud,pascal", help="comma-separated: nyud, pascal")
    p.add_argument("--rounds", type=int, default=None, help="timed rounds (default: 5 on CPU, 20 on CUDA)")
    p.add_argument("--warmup", type=int, default=None, help="warm-up calls per model (default 1 CPU, 5 CUDA)")
    p.add_argument("--eval-iters", type=int, default=None,
                   help="eval forwards per timed round (averaged; default 1 CPU, 10 CUDA)")
    p.add_argument("--eval-batch", type=int, default=1)
    p.add_argument("--train-batch", type=int, default=8, help="training batch (CUDA: halved until it fits)")
    p.add_argument("--size-scale", type=float, default=None,
                   help="scale both eval and training resolutions (e.g. 0.25 for a CPU smoke run)")
    p.add_argument("--eval-size-scale", type=float, default=None, help="eval resolution scale (default 1)")
    p.add_argument("--train-size-scale", type=float, default=None,
                   help="training resolution scale (default 1 on CUDA, 0.25 on CPU)")
    p.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (default: torch's)")
    p.add_argument("--channels-last", action="store_true", help="channels_last parameters and inputs (all models)")
    p.add_argument("--compile", action="store_true", help="torch.compile every model (slow start)")
    p.add_argument("--reference", action="store_true",
                   help="turn the fused evaluation paths off (HRHead/MSA/SFA literal computation)")
    p.add_argument("--no-eval", action="store_true", help="skip eval latency")
    p.add_argument("--no-train", action="store_true", help="skip training throughput")
    p.add_argument("--no-cpu-memory", action="store_true", help="skip the profiler-based CPU peak memory")
    p.add_argument("--no-malloc-tuning", action="store_true",
                   help="CPU: keep glibc's default of mmap-ing (and page-faulting) every large tensor anew")
    p.add_argument("--backbone", default="hrnet_w18_small_v2", help="timm backbone of every model")
    p.add_argument("--json", default=None, help="write the results here")
    args = p.parse_args(argv)
    cuda = args.device.startswith("cuda")
    args.rounds = args.rounds if args.rounds is not None else (20 if cuda else 5)
    args.warmup = args.warmup if args.warmup is not None else (5 if cuda else 1)
    args.eval_iters = args.eval_iters if args.eval_iters is not None else (10 if cuda else 1)
    base = args.size_scale
    if args.eval_size_scale is None:
        args.eval_size_scale = base if base is not None else 1.0
    if args.train_size_scale is None:
        args.train_size_scale = base if base is not None else (1.0 if cuda else 0.25)
    return args


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    """Run the benchmark; print the tables; return (and with ``--json`` write) the record."""
    args = parse_args(argv)
    device = torch.device(args.device)
    if args.threads:
        torch.set_num_threads(args.threads)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
    malloc_tuned = device.type == "cpu" and not args.no_malloc_tuning and tune_glibc_malloc()
    models = [m.strip() for m in args.models.split(",") if m.strip()] if args.models else list_models()
    unknown = [m for m in models if m not in list_models() and m != FLOOR]
    if unknown:
        raise SystemExit(f"unknown models {unknown}; registered: {list_models()}")
    names = [FLOOR] + [m for m in models if m != FLOOR]
    settings = [SETTINGS[s.strip()] for s in args.settings.split(",") if s.strip()]
    meta: dict[str, Any] = {
        "timestamp": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "command": " ".join([Path(sys.argv[0]).name, *(sys.argv[1:] if argv is None else list(argv))]),
        "versions": _versions(),
        "device": _device_info(device),
        "threads": torch.get_num_threads(),
        "load_before": _load(),
        "malloc_tuned": malloc_tuned,
        "options": {k: v for k, v in vars(args).items() if k != "json"},
        "settings": {},
    }
    start = time.perf_counter()
    benches: list[Bench] = []
    for s in settings:
        eval_size = scaled_size(s.size, args.eval_size_scale)
        train_size = scaled_size(s.size, args.train_size_scale)
        meta["settings"][s.name] = {"label": s.label, "tasks": list(s.tasks),
                                    "aux_tasks": list(s.aux_tasks or s.tasks), "eval_size": list(eval_size),
                                    "train_size": list(train_size)}
        for name in names:
            print(f"building {s.name}/{name} ...", file=sys.stderr, flush=True)
            try:
                benches.append(build_bench(s, name, args, device, eval_size, train_size))
            except Exception as err:  # keep measuring the others; the table says what failed
                print(f"  {s.name}/{name} failed: {type(err).__name__}: {err}", file=sys.stderr)
                benches.append(Bench(s, name, _noop, _noop, args.train_batch, 0, 0,
                                     error=f"{type(err).__name__}: {err}"))
    benches_ok = [b for b in benches if b.error is None]

    phases = [p for p, skip in (("eval", args.no_eval), ("train", args.no_train)) if not skip]
    print(f"warm-up ({args.warmup} per model and phase) ...", file=sys.stderr, flush=True)
    for b in benches_ok:
        for phase in phases:
            for _ in range(args.warmup):
                (b.eval_step if phase == "eval" else b.train_step)()
    _sync(device)
    for r in range(args.rounds):
        order = benches_ok[r % len(benches_ok):] + benches_ok[: r % len(benches_ok)]
        for phase in phases:
            for b in order:
                if phase == "eval":
                    b.eval_times.append(_timed(b.eval_step, args.eval_iters, device))
                else:
                    b.train_times.append(_timed(b.train_step, 1, device))
        print(f"round {r + 1}/{args.rounds} done ({time.perf_counter() - start:.0f} s)", file=sys.stderr, flush=True)
    cpu_memory = not args.no_cpu_memory
    for b in benches_ok:
        if "eval" in phases:
            b.eval_peak = peak_memory(b.eval_step, device, cpu_memory)
        if "train" in phases:
            b.train_peak = peak_memory(b.train_step, device, cpu_memory)
    meta["seconds"] = round(time.perf_counter() - start, 1)
    meta["load_after"] = _load()
    meta["memory_note"] = (
        "CUDA max_memory_allocated above the allocation before the call" if device.type == "cuda" else
        ("CPU: peak of tensor allocations minus frees recorded by torch.profiler (profile_memory=True) "
         "during one call; tensor memory only" if cpu_memory else "CPU peak memory not measured")
    )
    results = summarize(benches)
    ratios = target_ratios(results)
    text = format_tables(results, ratios, meta)
    print(text)
    print(f"load average before {meta['load_before']}, after {meta['load_after']}; {meta['seconds']} s")
    record = {**meta, "results": results, "ratios": ratios}
    if args.json:
        path = Path(args.json)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(record, indent=2))
        print(f"written: {path}")
    return record


if __name__ == "__main__":
    main()
