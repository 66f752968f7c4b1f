"""Image sizes given on the command line (``--size HxW``), parsed and checked in one place."""

from __future__ import annotations

from ..errors import ConfigError

__all__ = ["parse_size", "parse_network_size"]

#: the backbones downsample by 32: network inputs must be multiples of it
NETWORK_MULTIPLE = 32


def parse_size(text: str) -> tuple[int, int]:
    """Parse ``"HxW"`` (e.g. ``128x160``) into (height, width)."""
    parts = str(text).lower().replace("×", "x").split("x")
    if len(parts) != 2 or not all(p.strip().isdigit() for p in parts):
        raise ConfigError(f"--size: expected HxW such as 128x160, got {text!r}")
    return int(parts[0]), int(parts[1])


def parse_network_size(text: str | None) -> tuple[int, int] | None:
    """A network input size: ``"128x160"`` -> (128, 160), ``None`` -> ``None`` (the caller's default); both
    sides must be positive multiples of 32, otherwise a :class:`~medusa_mtl.errors.ConfigError` says so."""
    if text is None:
        return None
    h, w = parse_size(text)
    if h <= 0 or w <= 0 or h % NETWORK_MULTIPLE or w % NETWORK_MULTIPLE:
        raise ConfigError(f"--size {text}: height and width must be positive multiples of {NETWORK_MULTIPLE}")
    return h, w
