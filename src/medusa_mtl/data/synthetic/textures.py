"""Procedural solid textures and materials for the synthetic renderer (vectorised NumPy).

Textures are *solid* (3-D) functions of a surface point in the primitive's local frame, in metres, so no UV
mapping is needed: stripes, checkers, value noise (fBm), wood grain, blotches. Every function is deterministic
given its integer seed; hashing uses 32-bit integer arithmetic (wrap-around), so results do not depend on the
platform or on the number of worker processes.
"""

from __future__ import annotations

import colorsys
from dataclasses import dataclass, field

import numpy as np

PATTERNS = ("plain", "noise", "stripes", "checker", "wood", "blotch", "grid")
"""Texture patterns a :class:`Material` can use."""

_M1 = np.uint32(0x8DA6B343)
_M2 = np.uint32(0xD8163841)
_M3 = np.uint32(0xCB1AB31F)
_MIX = np.uint32(0x7FEB352D)
_TO_UNIT = 1.0 / 4294967296.0


def _mix(h: np.ndarray) -> np.ndarray:
    """Scramble uint32 values and map them to floats in [0, 1)."""
    h = h * _MIX
    h ^= h >> np.uint32(15)
    h *= _MIX
    h ^= h >> np.uint32(13)
    return h.astype(np.float64) * _TO_UNIT


def cell_noise(p: np.ndarray, seed: int) -> np.ndarray:
    """Piecewise-constant noise: one random value in [0, 1) per unit lattice cell of points ``p`` (N, 3)."""
    i = np.floor(p).astype(np.int64).astype(np.uint32)
    return _mix(i[:, 0] * _M1 ^ i[:, 1] * _M2 ^ i[:, 2] * _M3 ^ np.uint32(seed & 0xFFFFFFFF))


def value_noise(p: np.ndarray, seed: int) -> np.ndarray:
    """Trilinearly interpolated (smoothstep) value noise with lattice spacing 1.

    Args:
        p: points, shape (N, 3).
        seed: integer seed selecting the noise field.

    Returns:
        Values in [0, 1), shape (N,).
    """
    fl = np.floor(p)
    f = p - fl
    i = fl.astype(np.int64).astype(np.uint32)
    w = f * f * (3.0 - 2.0 * f)
    sd = np.uint32(seed & 0xFFFFFFFF)
    ax0 = i[:, 0] * _M1 ^ sd
    ax1 = (i[:, 0] + np.uint32(1)) * _M1 ^ sd
    by0 = i[:, 1] * _M2
    by1 = (i[:, 1] + np.uint32(1)) * _M2
    cz0 = i[:, 2] * _M3
    cz1 = (i[:, 2] + np.uint32(1)) * _M3
    wx, wy, wz = w[:, 0], w[:, 1], w[:, 2]
    out = None
    for cz, fz in ((cz0, 1.0 - wz), (cz1, wz)):
        y0 = by0 ^ cz
        y1 = by1 ^ cz
        a0 = _mix(ax0 ^ y0)
        a0 += wx * (_mix(ax1 ^ y0) - a0)
        a1 = _mix(ax0 ^ y1)
        a1 += wx * (_mix(ax1 ^ y1) - a1)
        a0 += wy * (a1 - a0)
        out = a0 * fz if out is None else out + a0 * fz
    assert out is not None
    return out


def fbm(p: np.ndarray, seed: int, octaves: int = 3, lacunarity: float = 2.03, gain: float = 0.5) -> np.ndarray:
    """Fractal sum of :func:`value_noise` octaves, normalised to [0, 1).

    Args:
        p: points, shape (N, 3) (already scaled to the base frequency).
        seed: integer seed.
        octaves: number of octaves.
        lacunarity: frequency factor between octaves.
        gain: amplitude factor between octaves.
    """
    total = np.zeros(p.shape[0])
    amp, norm, freq = 1.0, 0.0, 1.0
    for k in range(octaves):
        total += amp * value_noise(p * freq + 17.31 * k, seed + 1013 * k)
        norm += amp
        amp *= gain
        freq *= lacunarity
    return total / norm


def hsv(h: float, s: float, v: float) -> np.ndarray:
    """RGB colour (3,) in [0, 1] from hue (wraps), saturation and value."""
    return np.array(colorsys.hsv_to_rgb(h % 1.0, min(max(s, 0.0), 1.0), min(max(v, 0.0), 1.0)))


def random_color(
    rng: np.random.Generator,
    hue: tuple[float, float] = (0.0, 1.0),
    sat: tuple[float, float] = (0.0, 1.0),
    val: tuple[float, float] = (0.2, 1.0),
) -> np.ndarray:
    """A random RGB colour with hue, saturation and value drawn uniformly from the given ranges."""
    return hsv(rng.uniform(*hue), rng.uniform(*sat), rng.uniform(*val))


@dataclass
class Material:
    """Surface appearance: albedo = mix(color, color2, pattern(p)) modulated by fine noise.

    Attributes:
        color: base RGB albedo in [0, 1].
        color2: second RGB albedo of the pattern.
        pattern: one of :data:`PATTERNS`.
        scale: pattern frequency (1 / metres).
        axis: unit direction (local frame) of stripes / wood rings.
        grain: amplitude of multiplicative fine noise (0 = none).
        seed: seed of the noise fields.
        emissive: if True the surface is not shaded (lamps, windows, screens): radiance = albedo.
    """

    color: np.ndarray
    color2: np.ndarray = field(default_factory=lambda: np.zeros(3))
    pattern: str = "plain"
    scale: float = 4.0
    axis: np.ndarray = field(default_factory=lambda: np.array([1.0, 0.0, 0.0]))
    grain: float = 0.1
    seed: int = 0
    emissive: bool = False

    def albedo(self, p: np.ndarray) -> np.ndarray:
        """Albedo (N, 3) at local points ``p`` (N, 3)."""
        n = p.shape[0]
        if n == 0:
            return np.zeros((0, 3))
        q = p * self.scale
        pat = self.pattern
        if pat == "plain":
            m = np.zeros(n)
        elif pat == "noise":
            m = fbm(q, self.seed, octaves=3)
            m = np.clip((m - 0.25) * 2.0, 0.0, 1.0)
        elif pat == "stripes":
            s = q @ self.axis
            m = (np.sin(2.0 * np.pi * s) > 0.3).astype(np.float64)
        elif pat == "checker":
            k = np.floor(q + 1e-4).astype(np.int64).sum(axis=1)
            m = (k & 1).astype(np.float64)
        elif pat == "wood":
            s = q @ self.axis + 1.5 * fbm(q * 0.7, self.seed, octaves=2)
            m = 0.5 + 0.5 * np.sin(2.0 * np.pi * s)
        elif pat == "blotch":
            m = (fbm(q, self.seed, octaves=2) > 0.52).astype(np.float64)
        elif pat == "grid":
            f = q - np.floor(q)
            line = np.minimum(f, 1.0 - f).min(axis=1)
            m = (line < 0.06).astype(np.float64)
        else:  # pragma: no cover - guarded by random_material
            raise ValueError(f"unknown pattern {pat!r}; expected one of {PATTERNS}")
        col = self.color[None, :] * (1.0 - m[:, None]) + self.color2[None, :] * m[:, None]
        if self.grain > 0:
            g = cell_noise(p * 40.0, self.seed + 7)
            col = col * (1.0 + self.grain * (g[:, None] - 0.5) * 2.0)
        return col


def random_material(
    rng: np.random.Generator,
    color: np.ndarray,
    patterns: dict[str, float] | None = None,
    scale: tuple[float, float] = (2.0, 8.0),
    contrast: tuple[float, float] = (0.15, 0.6),
    grain: tuple[float, float] = (0.03, 0.2),
) -> Material:
    """A random :class:`Material` around ``color``.

    Args:
        rng: random generator.
        color: base colour.
        patterns: pattern name -> weight (default: all patterns, plain most likely).
        scale: range of the pattern frequency (1 / m).
        contrast: range of the relative brightness / hue change of the second colour.
        grain: range of the fine-noise amplitude.
    """
    if patterns is None:
        patterns = {"plain": 3.0, "noise": 2.0, "stripes": 1.0, "checker": 1.0, "wood": 1.0, "blotch": 1.0}
    names = list(patterns)
    w = np.array([patterns[k] for k in names], dtype=np.float64)
    pattern = names[int(rng.choice(len(names), p=w / w.sum()))]
    c = float(rng.uniform(*contrast))
    if rng.random() < 0.5:
        color2 = np.clip(color * (1.0 - c) if rng.random() < 0.5 else color + (1.0 - color) * c, 0, 1)
    else:
        h, s, v = colorsys.rgb_to_hsv(*np.clip(color, 0, 1))
        color2 = hsv(h + rng.uniform(-0.5, 0.5) * c, s * rng.uniform(0.5, 1.2), v * rng.uniform(0.6, 1.2))
    axis = rng.normal(size=3)
    if rng.random() < 0.7:  # mostly axis-aligned stripes
        axis = np.eye(3)[int(rng.integers(3))]
    axis = axis / np.linalg.norm(axis)
    return Material(
        color=np.asarray(color, dtype=np.float64),
        color2=np.asarray(color2, dtype=np.float64),
        pattern=pattern,
        scale=float(rng.uniform(*scale)),
        axis=axis,
        grain=float(rng.uniform(*grain)),
        seed=int(rng.integers(0, 2**31 - 1)),
    )
