"""Whether timm's ``pretrained=True`` download can work here, decided before timm tries.

Offline, Hugging Face's client retries the weights' host for about 50 seconds, printing a retry line every few
seconds, before it fails. When the host's name does not resolve (no network, no proxy) and the weights are not in
the local cache, the answer is known at once: :func:`why_download_cannot_work` says so and the caller fails with
the by-hand instructions. Anything undecided (a proxy, a resolvable host, weights in the cache, a name timm has no
weights entry for) is left to timm.
"""

from __future__ import annotations

import socket
import threading
import urllib.request
from collections.abc import Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

__all__ = ["why_download_cannot_work"]

# timm options that take the weights from elsewhere than the name's default source: another tag
# (pretrained_cfg="tv_in1k"), a local file or another URL (pretrained_cfg_overlay), another cache folder (cache_dir)
_SOURCE_OPTIONS = ("pretrained_cfg", "pretrained_cfg_overlay", "cache_dir")


def _proxy_configured() -> bool:
    """A proxy for http(s), as the hub client (httpx) and torch.hub (urllib) find one: ``*_proxy`` variables in any
    letter case, and on macOS / Windows the system's proxy settings."""
    proxies = urllib.request.getproxies()
    return any(proxies.get(scheme) for scheme in ("https", "http", "all"))


def _resolves(host: str, timeout: float = 10.0) -> bool:
    """Whether ``host`` resolves; a resolver still busy after ``timeout`` seconds counts as resolving (undecided:
    left to timm), as getaddrinfo itself has no timeout."""
    answer: list[bool] = []

    def lookup() -> None:
        try:
            socket.getaddrinfo(host, 443, type=socket.SOCK_STREAM)
        except (OSError, UnicodeError):
            answer.append(False)
        else:
            answer.append(True)

    worker = threading.Thread(target=lookup, name=f"resolve {host}", daemon=True)
    worker.start()
    worker.join(timeout)
    return answer[0] if answer else True


def _source(name: str) -> tuple[str, Path] | None:
    """``(host, local cache folder)`` of the weights timm downloads for ``name``; ``None`` when unknown."""
    try:
        from huggingface_hub import constants
    except ImportError:  # timm without the hub client downloads by URL only
        constants = None
    # "hf_hub:" is timm's older spelling of "hf-hub:" (both taken by timm and the Backbone)
    hub_name = name.startswith(("hf-hub:", "hf_hub:"))
    repo = name[len("hf-hub:"):].split("@")[0] if hub_name else None
    url = None
    if repo is None:
        import timm.models

        try:
            cfg = timm.models.get_pretrained_cfg(name)
        except (RuntimeError, ValueError):
            return None
        if cfg is None:
            return None
        repo = cfg.hf_hub_id or None
        url = cfg.url or None
    if repo and constants is not None:
        host = urlparse(constants.ENDPOINT).hostname
        folder = Path(constants.HF_HUB_CACHE) / ("models--" + repo.replace("/", "--"))
        return (host, folder) if host else None
    if url:
        import torch.hub

        host = urlparse(url).hostname
        return (host, Path(torch.hub.get_dir()) / "checkpoints" / Path(urlparse(url).path).name) if host else None
    return None


def why_download_cannot_work(name: str, timm_kwargs: Mapping[str, Any] | None = None) -> str | None:
    """Why timm's download of ``name``'s pretrained weights cannot work on this machine, or ``None`` when it
    may (the host resolves, a proxy is configured, the weights are cached, the source is unknown, or
    ``timm_kwargs``, the options given to ``timm.create_model``, point timm at another source or cache).

    Example:
        >>> why_download_cannot_work("resnet18") is None or "does not resolve" in why_download_cannot_work("resnet18")
        True
    """
    if any((timm_kwargs or {}).get(option) is not None for option in _SOURCE_OPTIONS):
        return None  # not the source or cache looked at here: timm's to decide
    if _proxy_configured():
        return None  # the proxy resolves names, not this machine
    source = _source(name)
    if source is None:
        return None
    host, cached = source
    if cached.exists() or _resolves(host):
        return None
    return f"the weights' host {host} does not resolve (no network?) and they are not in the local cache ({cached})"
