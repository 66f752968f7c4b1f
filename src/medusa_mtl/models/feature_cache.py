"""A per-image cache of a frozen backbone's features: universal feature learning without recomputing them.

UFL (SPEC §7) trains new heads on a frozen backbone in eval mode, so the backbone maps an input image to the
same features in every epoch. Where the training augmentation is a finite set (the standard benchmark profile's
PASCAL runs flip only: two inputs per image) every input recurs, and its features can be computed once and
reused. This module is that speed-up, switched on in one place (:func:`set_feature_cache`); the model files and
the results are untouched. With ``mirror=True`` a batch that has to be computed is also computed mirrored (the
same batch size, so the same kernels) and stored: under a flips-only augmentation the first epoch then stores
both inputs of every image it sees, and every later batch is served (without it, a later batch is served only
when each of its images happened to come with a flip already seen: about half of the later batches over the
standard profile's 8 UFL epochs). A mirrored input that is not bit for bit what the data pipeline gives for the
flipped image (e.g. after a resize) only costs the extra computation: entries are found by the input's bytes.

**Exact, not approximate.** A cached entry is keyed by the bytes of the input image *and* the batch's shape,
dtype, device, memory layout and autocast state, because on the CPU the convolution kernels oneDNN picks depend
on the batch size (an image's features in a batch of 1 and in a batch of 8 differ in float rounding), but not on
which other images share the batch (measured: permuted and mixed batches of the same size give bit-identical
features per image). A batch is served from the cache only when every image in it hits; otherwise the whole
batch goes through the backbone, as without the cache. The cache checks that assumption on the machine it runs
on: the first batch it could serve is computed as well and compared bit for bit, before any cached value is used;
on a mismatch the cache switches itself off (with a warning), so the run is the uncached run. Every
``verify_every``-th served batch is checked again.

Example:
    >>> import torch
    >>> from medusa_mtl.models import create_model
    >>> from medusa_mtl.models.feature_cache import set_feature_cache
    >>> model = create_model("mt_baseline", tasks=["semseg"], dataset="nyud", backbone="resnet18")
    >>> model.freeze_backbone()
    >>> cache = set_feature_cache(model, True)
    >>> x = torch.randn(2, 3, 64, 64)
    >>> with torch.no_grad():
    ...     a, b = model(x)["semseg"], model(x)["semseg"]
    >>> torch.equal(a, b), cache.stats()["misses"], cache.stats()["hits"], cache.stats()["verified"]
    (True, 1, 1, 1)
"""

from __future__ import annotations

import hashlib
import warnings
from collections.abc import Callable
from typing import Any

import torch
import torch.nn as nn

__all__ = ["FeatureCache", "set_feature_cache", "feature_cache_of"]

#: Default bound on the cached features' memory: once reached, new images are computed and not stored.
DEFAULT_MAX_BYTES = 4 * 1024**3


def _weights_version(module: nn.Module) -> int:
    """A counter that moves whenever a parameter or buffer of ``module`` is modified in place (``load_state_dict``,
    ``copy_``, an optimiser step): cached features of older weights are then stale."""
    return sum(t._version for t in (*module.parameters(), *module.buffers()))


class FeatureCache:
    """The features of a frozen backbone per input image (see the module docstring for why it is exact).

    Args:
        max_bytes: memory bound of the stored features; images beyond it are computed every time.
        verify_every: recompute every ``verify_every``-th batch served from the cache and compare (the first such
            batch is always checked, before any cached value is used); 0 checks only the first.
        mirror: also compute and store the horizontally mirrored batch of a batch that had to be computed.
    """

    def __init__(self, max_bytes: int = DEFAULT_MAX_BYTES, verify_every: int = 64, mirror: bool = False) -> None:
        self.max_bytes = int(max_bytes)
        self.verify_every = int(verify_every)
        self.mirror = bool(mirror)
        self.enabled = True
        self.disabled_reason: str | None = None
        self._entries: dict[tuple[Any, ...], list[torch.Tensor]] = {}
        self._formats: list[bool] | None = None
        self._bytes = 0
        self._version: int | None = None
        self.hits = 0  # batches served from the cache
        self.misses = 0  # batches computed
        self.mirrored = 0  # mirrored batches computed ahead (mirror=True)
        self.verified = 0  # served batches also computed and found equal

    def stats(self) -> dict[str, Any]:
        """Counts of served (``hits``), computed (``misses``) and checked (``verified``) batches, the images and
        bytes stored, and why the cache switched itself off (``disabled``: ``None`` while it is on)."""
        return {"hits": self.hits, "misses": self.misses, "mirrored": self.mirrored, "verified": self.verified,
                "images": len(self._entries), "bytes": self._bytes, "disabled": self.disabled_reason}

    def clear(self) -> None:
        self._entries.clear()
        self._bytes = 0
        self._formats = None

    @staticmethod
    def _keys(x: torch.Tensor) -> list[tuple[Any, ...]]:
        device = x.device.type
        batch = (tuple(x.shape), tuple(x.stride()), str(x.dtype), str(x.device),
                 torch.is_autocast_enabled(device), str(torch.get_autocast_dtype(device)))
        flat = x.detach().cpu().contiguous()
        raw = flat.view(torch.uint8) if flat.element_size() == 1 else flat.flatten(1).view(torch.uint8)
        return [(batch, hashlib.blake2b(raw[i].numpy().tobytes(), digest_size=16).digest())
                for i in range(x.shape[0])]

    def _disable(self, reason: str) -> None:
        self.enabled = False
        self.disabled_reason = reason
        self.clear()
        warnings.warn(f"backbone feature cache switched off: {reason}", RuntimeWarning, stacklevel=4)

    def __call__(self, compute: Callable[[torch.Tensor], list[torch.Tensor]], x: torch.Tensor,
                 module: nn.Module) -> list[torch.Tensor]:
        """The features of batch ``x``: from the cache when every image of it is stored, else ``compute(x)``."""
        if not self.enabled or x.shape[0] == 0:
            return compute(x)
        version = _weights_version(module)
        if version != self._version:  # new weights: every stored feature is stale
            self.clear()
            self._version = version
        keys = self._keys(x)
        stored = [self._entries.get(k) for k in keys]
        if all(s is not None for s in stored):
            served = self._assemble(stored)  # type: ignore[arg-type]
            check = self.verified == 0 or (self.verify_every > 0 and (self.hits + 1) % self.verify_every == 0)
            if check:
                computed = compute(x)
                if len(computed) != len(served) or not all(torch.equal(a, b) for a, b in zip(computed, served)):
                    first = self.verified == 0
                    self._disable(
                        "an image's features differ between two batches of the same size on this machine"
                        + (" (found before any cached value was used: the run is the uncached run)" if first else
                           f" (after {self.hits} batches served from the cache: the results may differ from an "
                           "uncached run in float rounding)"))
                    return computed
                self.verified += 1
            self.hits += 1
            return served
        self.misses += 1
        feats = compute(x)
        if self._formats is None:
            self._formats = [f.dim() == 4 and f.is_contiguous(memory_format=torch.channels_last)
                             and not f.is_contiguous() for f in feats]
        self._store(keys, feats)
        if self.mirror:
            flipped = x.flip(-1)
            keys = self._keys(flipped)
            if any(k not in self._entries for k in keys) and self._bytes < self.max_bytes:
                self.mirrored += 1
                self._store(keys, compute(flipped))
        return feats

    def _store(self, keys: list[tuple[Any, ...]], feats: list[torch.Tensor]) -> None:
        per_image = sum(f[0].numel() * f.element_size() for f in feats)
        for i, key in enumerate(keys):
            if key not in self._entries and self._bytes + per_image <= self.max_bytes:
                self._entries[key] = [f[i].detach().contiguous().clone() for f in feats]
                self._bytes += per_image

    def _assemble(self, stored: list[list[torch.Tensor]]) -> list[torch.Tensor]:
        levels = []
        for level, channels_last in enumerate(self._formats or []):
            t = torch.stack([s[level] for s in stored])
            levels.append(t.contiguous(memory_format=torch.channels_last) if channels_last else t)
        return levels


def _backbones(model: nn.Module) -> list[nn.Module]:
    from .backbone import Backbone

    return list(dict.fromkeys(m for m in model.modules() if isinstance(m, Backbone)))


def set_feature_cache(model: nn.Module, enabled: bool, max_bytes: int = DEFAULT_MAX_BYTES,
                      verify_every: int = 64, mirror: bool = False) -> FeatureCache | None:
    """Switch the feature cache of ``model``'s (frozen) backbone on or off; returns the cache (``None`` when off).

    The backbone must be frozen (no parameter requiring gradients: UFL's, or after ``freeze_backbone()``):
    features of a backbone that learns change every step. The cache is used only while the backbone is in eval
    mode, which a frozen one always is.
    """
    from ..errors import ConfigError

    backbones = _backbones(model)
    if enabled and len(backbones) != 1:
        raise ConfigError(f"the feature cache needs a model with one shared backbone, this one has {len(backbones)}")
    for bb in backbones:
        bb.feature_cache = None
    if not enabled:
        return None
    bb = backbones[0]
    if any(p.requires_grad for p in bb.parameters()):
        raise ConfigError("the feature cache is for a frozen backbone (UFL, or freeze_backbone()): this backbone's "
                          "parameters require gradients, so its features change with every step")
    cache = FeatureCache(max_bytes=max_bytes, verify_every=verify_every, mirror=mirror)
    bb.feature_cache = cache
    return cache


def feature_cache_of(model: nn.Module) -> FeatureCache | None:
    """The feature cache switched on for ``model``'s backbone, if any."""
    for bb in _backbones(model):
        cache = getattr(bb, "feature_cache", None)
        if cache is not None:
            return cache
    return None
