"""``medusa pretrain``: a shared backbone initialisation, standing in for the papers' ImageNet weights.

The papers start every method from the same ImageNet-pretrained HRNet. ImageNet is not available here, so
this trains the backbone once on procedurally rendered images with a **task-agnostic, image-level** objective:
multi-label object presence (which of the synthetic renderers' object classes are visible, 13 indoor + 20
outdoor classes). No dense label is used: the per-pixel class maps the renderer produces are reduced to one
present/absent bit per class and image, and the images are fresh renders drawn from a seed stream disjoint from
every benchmark dataset (like ImageNet, the pretraining set shares object categories with the downstream data
but none of its images or labels).

The weights are written as the backbone's timm state dict (CPU tensors), exactly what ``--model.pretrained_file``
(and ``create_model(..., pretrained_file=...)``) loads, and cached under a name keyed by the settings, so every run
and benchmark reuses one file. An interrupted pretraining resumes from its last completed epoch.

It trains on CUDA where available (``--device``, default ``auto``; the images are rendered and augmented on the
CPU either way, with the same random streams). The device is recorded in the ``.json`` but is not part of the
cache key: a file made on the CPU is reused on a GPU machine and the other way round (on the CPU the weights
are bit-identical to those of versions without the option).

Example:
    >>> from medusa_mtl.engine.pretrain import PretrainSettings, ensure_pretrained
    >>> path = ensure_pretrained(PretrainSettings(epochs=1, num_images=64))  # doctest: +SKIP
"""

from __future__ import annotations

import argparse
import hashlib
import json
import multiprocessing as mp
import time
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from ..data.transforms import IMAGENET_MEAN, IMAGENET_STD
from ..errors import ConfigError
from ..options import output_dir, positive_float, positive_int

DEFAULT_CACHE = Path("data/pretrained")
SEED_OFFSET = 7_919_000  # pretraining renders use seeds far from any benchmark dataset seed
DOMAINS = ("nyud", "pascal")
NUM_CLASSES = {"nyud": 13, "pascal": 20}  # object classes of each renderer (0 = unlabelled/background)
PRESENCE_MIN_FRACTION = 0.005  # a class counts as present when it covers at least 0.5 % of the image


@dataclass(frozen=True)
class PretrainSettings:
    """Everything that decides the pretrained weights (the cache key)."""

    backbone: str = "hrnet_w18_small_v2"
    size: tuple[int, int] = (64, 64)
    num_images: int = 8000
    epochs: int = 12
    batch_size: int = 32
    lr: float = 2e-3
    weight_decay: float = 1e-4
    seed: int = 0
    hrnet_form: str = "reference"  # the backbone form trained (models.backbone); part of the key

    def key(self) -> str:
        text = json.dumps(asdict(self), sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()[:12]

    def filename(self) -> str:
        return f"{self.backbone}_presence_{self.size[0]}x{self.size[1]}_{self.key()}.pth"

    @classmethod
    def from_dict(cls, d: dict[str, Any] | None) -> PretrainSettings:
        d = dict(d or {})
        known = {f.name for f in fields(cls)}
        bad = sorted(set(d) - known)
        if bad:
            raise ConfigError(f"pretrain settings: unknown key(s) {bad}; known: {sorted(known)}")
        if "size" in d:
            d["size"] = tuple(int(v) for v in d["size"])
        s = cls(**d)
        if s.size[0] % 32 or s.size[1] % 32 or min(s.size) <= 0:
            raise ConfigError(f"pretrain size must be positive multiples of 32, got {s.size}")
        if s.num_images < s.batch_size or s.epochs < 1:
            raise ConfigError("pretrain: need num_images >= batch_size and epochs >= 1")
        return s


def presence_vector(dataset: str, semseg: np.ndarray) -> np.ndarray:
    """Image-level multi-label target (33 bits: nyud classes 1..13, then pascal classes 1..20)."""
    out = np.zeros(sum(NUM_CLASSES.values()), dtype=np.float32)
    offset = 0 if dataset == "nyud" else NUM_CLASSES["nyud"]
    counts = np.bincount(semseg.ravel().astype(np.int64), minlength=NUM_CLASSES[dataset] + 1)
    present = counts[1 : NUM_CLASSES[dataset] + 1] >= PRESENCE_MIN_FRACTION * semseg.size
    out[offset : offset + NUM_CLASSES[dataset]] = present
    return out


def _render(job: tuple[str, int, tuple[int, int], int]) -> tuple[np.ndarray, np.ndarray]:
    from ..data.synthetic import render_sample

    dataset, index, size, seed = job
    sample = render_sample(dataset, index, size, seed)
    return sample["image"], presence_vector(dataset, sample["semseg"])


def render_pretraining_set(settings: PretrainSettings, workers: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Images (N, H, W, 3) uint8 and presence targets (N, 33): half indoor, half outdoor scenes.

    ``workers``: rendering processes (default: the CPUs this process may use, at most 16); each image is seeded
    by its index, so the set does not depend on it."""
    from ..data.synthetic.generate import default_workers

    seed = SEED_OFFSET + int(settings.seed)
    jobs = [(DOMAINS[i % 2], i // 2, tuple(settings.size), seed) for i in range(settings.num_images)]
    workers = workers or min(default_workers(), 16)
    if workers > 1:
        with mp.get_context("spawn").Pool(workers) as pool:
            items = pool.map(_render, jobs, chunksize=32)
    else:
        items = [_render(j) for j in jobs]
    return np.stack([i for i, _ in items]), np.stack([t for _, t in items])


class PresenceNet(nn.Module):
    """Backbone + a linear multi-label classifier on the globally pooled four branches."""

    def __init__(self, backbone: str, hrnet_form: str = "reference") -> None:
        super().__init__()
        from ..models.backbone import Backbone

        self.backbone = Backbone(backbone, hrnet_form=hrnet_form)
        self.classifier = nn.Linear(sum(self.backbone.channels), sum(NUM_CLASSES.values()))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pooled = torch.cat([f.mean(dim=(2, 3)) for f in self.backbone(x)], dim=1)
        return self.classifier(pooled)


def _normalize(images: torch.Tensor) -> torch.Tensor:
    """[N, 3, H, W] RGB in [0, 1] -> ImageNet mean/std normalised (as the datasets' transforms do)."""
    mean = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
    return (images - mean) / std


def _augment(images: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """Random flip, random resized crop (scale 0.5-1) and brightness/contrast jitter, per sample."""
    n, _, h, w = images.shape
    out = torch.empty_like(images)
    for i in range(n):
        img = images[i : i + 1]
        s = float(torch.empty(1).uniform_(0.5, 1.0, generator=gen))
        ch, cw = max(int(round(h * s**0.5)), 8), max(int(round(w * s**0.5)), 8)
        y0 = int(torch.randint(0, h - ch + 1, (1,), generator=gen))
        x0 = int(torch.randint(0, w - cw + 1, (1,), generator=gen))
        img = F.interpolate(img[:, :, y0 : y0 + ch, x0 : x0 + cw], size=(h, w), mode="bilinear", align_corners=False)
        if float(torch.rand(1, generator=gen)) < 0.5:
            img = img.flip(-1)
        b = float(torch.empty(1).uniform_(0.75, 1.25, generator=gen))
        c = float(torch.empty(1).uniform_(0.75, 1.25, generator=gen))
        mean = img.mean()
        out[i] = ((img - mean) * c + mean * b).clamp(0, 1)[0]
    return _normalize(out)


def resolve_device(device: str | torch.device | None = None) -> torch.device:
    """The device pretraining runs on: ``auto`` (or None) is CUDA where available, else the CPU; anything else
    is a torch device name (``cpu``, ``cuda``, ``cuda:1``), and a CUDA one needs CUDA on this machine."""
    if device is None or str(device) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError):
        raise ConfigError(f"--device {device}: not a torch device (auto, cpu, cuda or cuda:N)") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"--device {device}: CUDA is not available on this machine (use --device cpu or auto)")
    return dev


def pretrain(settings: PretrainSettings, out: Path, log: Any = print, workers: int | None = None,
             device: str | torch.device | None = None) -> dict[str, Any]:
    """Train and write ``out`` (backbone state dict) plus ``out.json`` (settings, losses, time, device).

    ``device``: where the network trains (:func:`resolve_device`; default: CUDA where available)."""
    from ..provenance import provenance, write_json
    from .checkpoints import atomic_torch_save, load_checkpoint

    dev = resolve_device(device)
    start = time.time()
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    state_path = out.with_name(out.name + ".partial")
    log(f"pretrain: rendering {settings.num_images} images at {settings.size[0]}x{settings.size[1]}")
    t0 = time.time()
    images, targets = render_pretraining_set(settings, workers=workers)
    render_s = time.time() - t0
    log(f"  rendered in {render_s:.0f} s; mean classes present per image {targets.sum(1).mean():.2f}")
    x_all = torch.from_numpy(images).permute(0, 3, 1, 2).contiguous()
    y_all = torch.from_numpy(targets)
    n_hold = max(settings.num_images // 20, settings.batch_size)
    x_hold, y_hold = x_all[:n_hold], y_all[:n_hold]
    x_tr, y_tr = x_all[n_hold:], y_all[n_hold:]
    torch.manual_seed(settings.seed)
    net = PresenceNet(settings.backbone, settings.hrnet_form).to(dev)  # initialised on the CPU: the same weights
    opt = torch.optim.Adam(net.parameters(), lr=settings.lr, weight_decay=settings.weight_decay)
    steps_per_epoch = len(x_tr) // settings.batch_size
    total = steps_per_epoch * settings.epochs
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: max(1.0 - s / total, 0.0) ** 0.9)
    history: list[dict[str, float]] = []
    first_epoch = 0
    if state_path.is_file():
        state = load_checkpoint(state_path, require_state_dict=False)  # our own dict: net, opt, sched
        net.load_state_dict(state["net"])
        opt.load_state_dict(state["opt"])
        sched.load_state_dict(state["sched"])
        history = list(state["history"])
        first_epoch = int(state["epoch"])
        log(f"  resuming after epoch {first_epoch}")
    log(f"  training on {dev}")
    loss_fn = torch.nn.BCEWithLogitsLoss()
    for epoch in range(first_epoch, settings.epochs):
        t_ep = time.time()
        net.train()
        gen = torch.Generator().manual_seed(settings.seed * 1000 + epoch)
        perm = torch.randperm(len(x_tr), generator=gen)
        running = 0.0
        for s in range(steps_per_epoch):
            idx = perm[s * settings.batch_size : (s + 1) * settings.batch_size]
            x = _augment(x_tr[idx].float() / 255.0, gen).to(dev)  # augmented on the CPU: the same random stream
            loss = loss_fn(net(x), y_tr[idx].to(dev))
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            running += float(loss.detach())
        hold = _holdout_scores(net, x_hold, y_hold)
        history.append({"epoch": epoch + 1, "train_loss": running / steps_per_epoch, **hold,
                        "time_s": round(time.time() - t_ep, 1)})
        log(f"  epoch {epoch + 1}/{settings.epochs}: train BCE {running / steps_per_epoch:.4f}, held-out BCE "
            f"{hold['holdout_loss']:.4f}, held-out accuracy {hold['holdout_accuracy']:.3f} "
            f"({time.time() - t_ep:.0f} s)")
        atomic_torch_save({"net": net.state_dict(), "opt": opt.state_dict(), "sched": sched.state_dict(),
                           "history": history, "epoch": epoch + 1}, state_path)
    net.cpu()  # the file holds CPU tensors wherever it was trained
    atomic_torch_save(net.backbone.body.state_dict(), out)
    meta = {"settings": asdict(settings), "file": out.name, "objective": "multi-label object presence (33 classes)",
            "device": str(dev),
            "history": history, "render_time_s": round(render_s, 1),
            "wall_time_s": round(time.time() - start, 1) + (float(sum(h["time_s"] for h in history[:first_epoch]))),
            "provenance": provenance(seed=settings.seed)}
    write_json(out.with_suffix(".json"), meta)
    state_path.unlink(missing_ok=True)
    log(f"pretrain: wrote {out} ({meta['wall_time_s']:.0f} s)")
    return meta


def _holdout_scores(net: nn.Module, x: torch.Tensor, y: torch.Tensor) -> dict[str, float]:
    net.eval()
    dev = next(net.parameters()).device
    with torch.no_grad():
        logits = torch.cat([net(_normalize(x[i : i + 64].float() / 255.0).to(dev)) for i in range(0, len(x), 64)])
    y = y.to(dev)
    loss = float(torch.nn.functional.binary_cross_entropy_with_logits(logits, y))
    acc = float(((logits > 0).float() == y).float().mean())
    return {"holdout_loss": loss, "holdout_accuracy": acc}


def cached_path(settings: PretrainSettings, cache_dir: str | Path = DEFAULT_CACHE) -> Path:
    """Where the weights for ``settings`` live (whether or not they exist yet)."""
    return Path(cache_dir) / settings.filename()


def ensure_pretrained(settings: PretrainSettings, cache_dir: str | Path = DEFAULT_CACHE, log: Any = print,
                      workers: int | None = None, device: str | torch.device | None = None) -> Path:
    """The cached weights file for ``settings``, pretraining first (on ``device``: :func:`resolve_device`) if it is
    absent. A cached file is used whatever device made it (the device is not part of the cache key)."""
    path = cached_path(settings, cache_dir)
    if path.is_file() and path.with_suffix(".json").is_file():
        from ..errors import CheckpointError
        from .checkpoints import load_checkpoint

        try:  # a truncated cache file (a full disk, a copy cut short) would fail deep in the first run using it
            load_checkpoint(path, require_state_dict=False)
        except CheckpointError as err:
            raise CheckpointError(f"{err}. It is a cached pretrained backbone: delete it (and its .json) to pretrain "
                                  "again, e.g. `medusa pretrain --force` with the same settings") from None
        log(f"pretrained backbone: using cached {path}")
        return path
    pretrain(settings, path, log=log, workers=workers, device=device)
    return path


def pretrain_record(path: str | Path) -> dict[str, Any]:
    """The metadata JSON written next to a pretrained weights file."""
    meta = Path(path).with_suffix(".json")
    if not meta.is_file():
        raise FileNotFoundError(f"pretrained weights metadata not found: {meta}")
    return json.loads(meta.read_text())


def add_pretrain_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``medusa pretrain``."""
    d = PretrainSettings()
    parser.add_argument("--backbone", default=d.backbone, help="timm backbone name")
    parser.add_argument("--hrnet-form", default=d.hrnet_form, choices=("reference", "timm"),
                        help="HRNet form: the reference implementation's (bilinear fuse, BN momentum 0.01) or timm's")
    parser.add_argument("--size", default=f"{d.size[0]}x{d.size[1]}", help="image HxW (multiples of 32)")
    parser.add_argument("--num-images", type=positive_int, default=d.num_images, help="rendered pretraining images")
    parser.add_argument("--epochs", type=positive_int, default=d.epochs)
    parser.add_argument("--batch-size", type=positive_int, default=d.batch_size)
    parser.add_argument("--lr", type=positive_float, default=d.lr)
    parser.add_argument("--seed", type=int, default=d.seed)
    parser.add_argument("--cache-dir", default=str(DEFAULT_CACHE), type=output_dir, help="where weights are cached")
    parser.add_argument("--force", action="store_true", help="retrain even if a cached file exists")
    parser.add_argument("--device", default="auto",
                        help="where the network trains: auto (CUDA where available, else the CPU), cpu, cuda or "
                             "cuda:N; recorded in the .json, not part of the cache key")


def run_pretrain(args: argparse.Namespace) -> int:
    """``medusa pretrain``: print the path of the (cached) weights file."""
    from ..data.synthetic import parse_size

    size = parse_size(args.size)
    settings = PretrainSettings.from_dict(dict(backbone=args.backbone, hrnet_form=args.hrnet_form, size=size,
                                               num_images=args.num_images, epochs=args.epochs,
                                               batch_size=args.batch_size, lr=args.lr, seed=args.seed))
    resolve_device(args.device)  # a bad --device is one error line before any rendering
    path = cached_path(settings, args.cache_dir)
    if args.force and path.is_file():
        path.unlink()
    path = ensure_pretrained(settings, args.cache_dir, device=args.device)
    print(path)
    return 0
