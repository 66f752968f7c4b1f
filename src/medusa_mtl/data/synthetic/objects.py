"""Object construction helpers shared by the two domains: a local-frame builder and furniture models.

An object lives in its own frame: origin on the ground at the object's centre, y up, the object's front facing
local +z. :class:`ObjectBuilder` places primitives given in that frame into the world with a yaw rotation and a
translation, and tags each with the object's attributes (class ids, material, part name, ...).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from .raycast import Box, Capsule, Cylinder, Ellipsoid, Plane, Scene, rot_y
from .textures import Material, hsv, random_color, random_material

I3 = np.eye(3)


@dataclass
class Support:
    """A horizontal top surface that small objects can stand on (object frame, half sizes)."""

    origin: np.ndarray
    yaw: float
    height: float
    half_x: float
    half_z: float


class ObjectBuilder:
    """Adds primitives given in an object frame (origin, yaw about y) to a scene as one object group.

    Args:
        scene: scene to add to.
        origin: world position of the object frame's origin.
        yaw: rotation about the world y axis (radians).
        **info: attributes attached to every primitive (overridable per primitive).
    """

    def __init__(self, scene: Scene, origin: np.ndarray, yaw: float = 0.0, **info: Any) -> None:
        self.scene = scene
        self.origin = np.asarray(origin, dtype=np.float64)
        self.yaw = float(yaw)
        self.R = rot_y(yaw)
        self.group = scene.new_group()
        self.info = info

    def point(self, p: np.ndarray | list[float] | tuple[float, ...]) -> np.ndarray:
        """World coordinates of an object-frame point."""
        return self.origin + self.R @ np.asarray(p, dtype=np.float64)

    def _add(self, prim: Any, material: Material, extra: dict[str, Any]) -> int:
        info = {**self.info, **extra, "material": material}
        return self.scene.add(prim, self.group, **info)

    def box(self, c: Any, half: Any, material: Material, rot: np.ndarray | None = None, **extra: Any) -> int:
        """Add a box centred at object-frame ``c`` with half extents ``half``."""
        r = self.R if rot is None else self.R @ rot
        return self._add(Box(self.point(c), r, np.asarray(half, dtype=np.float64)), material, extra)

    def ellipsoid(self, c: Any, radii: Any, material: Material, rot: np.ndarray | None = None, **extra: Any) -> int:
        """Add an ellipsoid (a sphere for a scalar radius)."""
        r = self.R if rot is None else self.R @ rot
        return self._add(Ellipsoid(self.point(c), r, radii), material, extra)

    def cylinder(
        self,
        c: Any,
        radius: float,
        half_height: float,
        material: Material,
        rot: np.ndarray | None = None,
        **extra: Any,
    ) -> int:
        """Add a capped cylinder whose axis is the object-frame y axis (rotated by ``rot``)."""
        r = self.R if rot is None else self.R @ rot
        return self._add(Cylinder(self.point(c), r, radius, half_height), material, extra)

    def capsule(self, a: Any, b: Any, radius: float, material: Material, **extra: Any) -> int:
        """Add a capsule between object-frame points a and b."""
        return self._add(Capsule(self.point(a), self.point(b), radius), material, extra)

    def quad(self, c: Any, rot: np.ndarray, half: tuple[float, float], material: Material, **extra: Any) -> int:
        """Add a one-sided rectangle (local z = normal) centred at ``c``."""
        return self._add(Plane(self.point(c), self.R @ rot, half), material, extra)


# ----------------------------------------------------------------------------------------------------
# materials
# ----------------------------------------------------------------------------------------------------


def wood_material(rng: np.random.Generator) -> Material:
    """A wood-like material (browns, sometimes painted)."""
    if rng.random() < 0.75:
        base = hsv(rng.uniform(0.04, 0.11), rng.uniform(0.35, 0.8), rng.uniform(0.25, 0.8))
    else:
        base = random_color(rng, sat=(0.0, 0.6), val=(0.3, 0.95))
    return random_material(rng, base, {"wood": 3.0, "plain": 1.0, "noise": 1.0}, scale=(3.0, 10.0))


def fabric_material(rng: np.random.Generator) -> Material:
    """Upholstery / bedding: any hue, patterns."""
    base = random_color(rng, sat=(0.05, 0.85), val=(0.2, 0.95))
    return random_material(
        rng,
        base,
        {"plain": 2.0, "noise": 2.0, "stripes": 1.0, "checker": 1.0, "blotch": 1.0},
        scale=(4.0, 14.0),
    )


def metal_material(rng: np.random.Generator) -> Material:
    """Grey / dark metal or plastic."""
    base = random_color(rng, sat=(0.0, 0.25), val=(0.1, 0.8))
    return random_material(rng, base, {"plain": 3.0, "noise": 1.0}, grain=(0.0, 0.08))


def any_material(rng: np.random.Generator) -> Material:
    """Anything: random colour and pattern."""
    base = random_color(rng, sat=(0.0, 1.0), val=(0.15, 1.0))
    return random_material(rng, base, scale=(3.0, 16.0))


# ----------------------------------------------------------------------------------------------------
# furniture (object frame: origin on the floor at the footprint centre, front = +z)
# ----------------------------------------------------------------------------------------------------


def build_table(b: ObjectBuilder, rng: np.random.Generator, w: float, d: float, h: float) -> Support:
    """A table: top slab and four legs (or a round top on a pedestal)."""
    mat = wood_material(rng)
    leg_mat = mat if rng.random() < 0.6 else metal_material(rng)
    th = rng.uniform(0.025, 0.06)
    if rng.random() < 0.25:  # round table
        r = 0.5 * min(w, d)
        b.cylinder([0, h - th / 2, 0], r, th / 2, mat)
        b.cylinder([0, (h - th) / 2, 0], rng.uniform(0.03, 0.07), (h - th) / 2, leg_mat)
        b.cylinder([0, 0.015, 0], r * 0.45, 0.015, leg_mat)
        return Support(b.origin, b.yaw, h, r * 0.6, r * 0.6)
    b.box([0, h - th / 2, 0], [w / 2, th / 2, d / 2], mat)
    lw = rng.uniform(0.02, 0.045)
    inset = rng.uniform(0.02, 0.08)
    for sx in (-1, 1):
        for sz in (-1, 1):
            b.box([sx * (w / 2 - inset - lw), (h - th) / 2, sz * (d / 2 - inset - lw)], [lw, (h - th) / 2, lw], leg_mat)
    return Support(b.origin, b.yaw, h, w / 2 - 0.05, d / 2 - 0.05)


def build_chair(b: ObjectBuilder, rng: np.random.Generator, s: float = 1.0) -> None:
    """A chair: seat, backrest, four legs (size factor ``s``)."""
    mat = wood_material(rng) if rng.random() < 0.6 else fabric_material(rng)
    leg_mat = mat if rng.random() < 0.5 else metal_material(rng)
    w = rng.uniform(0.4, 0.52) * s
    d = rng.uniform(0.4, 0.5) * s
    sh = rng.uniform(0.42, 0.5) * s
    th = rng.uniform(0.03, 0.08) * s
    bh = rng.uniform(0.35, 0.55) * s
    b.box([0, sh - th / 2, 0], [w / 2, th / 2, d / 2], mat)
    b.box([0, sh + bh / 2, -d / 2 + 0.02], [w / 2, bh / 2, 0.02 * s + 0.005], mat)
    lw = 0.018 * s
    for sx in (-1, 1):
        for sz in (-1, 1):
            b.box([sx * (w / 2 - lw), (sh - th) / 2, sz * (d / 2 - lw)], [lw, (sh - th) / 2, lw], leg_mat)


def build_sofa(b: ObjectBuilder, rng: np.random.Generator, w: float) -> None:
    """A sofa: base, seat cushion, backrest and two arms."""
    mat = fabric_material(rng)
    mat2 = mat if rng.random() < 0.6 else fabric_material(rng)
    d = rng.uniform(0.8, 1.0)
    bh = rng.uniform(0.25, 0.35)
    b.box([0, bh / 2 + 0.05, 0.05], [w / 2 - 0.1, bh / 2, d / 2 - 0.05], mat)
    b.box([0, bh + 0.1, 0.08], [w / 2 - 0.12, 0.07, d / 2 - 0.12], mat2)
    backh = rng.uniform(0.7, 0.95)
    b.box([0, backh / 2 + 0.05, -d / 2 + 0.1], [w / 2, backh / 2, 0.1], mat)
    armh = rng.uniform(0.5, 0.65)
    for sx in (-1, 1):
        b.box([sx * (w / 2 - 0.08), armh / 2 + 0.05, 0], [0.08, armh / 2, d / 2], mat)
    for sx in (-1, 1):
        for sz in (-1, 1):
            b.cylinder([sx * (w / 2 - 0.08), 0.025, sz * (d / 2 - 0.08)], 0.03, 0.025, metal_material(rng))


def build_bed(b: ObjectBuilder, rng: np.random.Generator, w: float, length: float) -> Support:
    """A bed: frame, mattress, blanket, pillows and a headboard (head at local -z)."""
    frame = wood_material(rng)
    sheet = fabric_material(rng)
    fh = rng.uniform(0.2, 0.35)
    b.box([0, fh / 2, 0], [w / 2, fh / 2, length / 2], frame)
    mh = rng.uniform(0.15, 0.25)
    b.box([0, fh + mh / 2, 0.02], [w / 2 - 0.03, mh / 2, length / 2 - 0.04], sheet)
    blanket = fabric_material(rng)
    b.box([0, fh + mh + 0.02, 0.2], [w / 2 - 0.01, 0.03, length / 2 - 0.35], blanket)
    hh = rng.uniform(0.8, 1.2)
    b.box([0, hh / 2, -length / 2 - 0.03], [w / 2 + 0.03, hh / 2, 0.04], frame)
    pillow = fabric_material(rng)
    npl = 2 if w > 1.2 else 1
    for i in range(npl):
        x = 0.0 if npl == 1 else (i - 0.5) * w / 2
        b.ellipsoid([x, fh + mh + 0.06, -length / 2 + 0.25], [min(0.3, w / 4), 0.08, 0.17], pillow)
    return Support(b.origin, b.yaw, fh + mh + 0.05, w / 2 - 0.2, length / 4)


def build_cabinet(b: ObjectBuilder, rng: np.random.Generator, w: float, d: float, h: float) -> Support:
    """A cabinet / dresser / bookshelf-like box with drawer or door stripes and optional legs."""
    mat = wood_material(rng)
    if rng.random() < 0.5:
        mat.pattern = "stripes"
        mat.axis = np.array([0.0, 1.0, 0.0])
        mat.scale = rng.uniform(2.0, 6.0)
    legs = rng.random() < 0.3
    base = 0.1 if legs else 0.0
    b.box([0, base + (h - base) / 2, 0], [w / 2, (h - base) / 2, d / 2], mat)
    if legs:
        lm = metal_material(rng)
        for sx in (-1, 1):
            for sz in (-1, 1):
                b.box([sx * (w / 2 - 0.04), base / 2, sz * (d / 2 - 0.04)], [0.02, base / 2, 0.02], lm)
    if rng.random() < 0.6:  # knobs
        km = metal_material(rng)
        n = int(rng.integers(1, 4))
        for i in range(n):
            y = base + (h - base) * (i + 0.5) / n
            b.ellipsoid([0, y, d / 2 + 0.01], 0.02, km)
    return Support(b.origin, b.yaw, h, w / 2 - 0.05, d / 2 - 0.05)


def build_floor_lamp(b: ObjectBuilder, rng: np.random.Generator) -> None:
    """A floor lamp: base disc, pole and a glowing shade."""
    m = metal_material(rng)
    h = rng.uniform(1.3, 1.8)
    b.cylinder([0, 0.015, 0], rng.uniform(0.12, 0.18), 0.015, m)
    b.cylinder([0, h / 2, 0], 0.015, h / 2, m)
    shade = Material(
        color=hsv(rng.uniform(0.05, 0.15), rng.uniform(0.1, 0.5), rng.uniform(0.75, 1.0)),
        pattern="plain",
        grain=0.05,
        seed=int(rng.integers(1 << 30)),
        emissive=rng.random() < 0.5,
    )
    r = rng.uniform(0.15, 0.25)
    b.cylinder([0, h + 0.1, 0], r, rng.uniform(0.1, 0.16), shade, shadow=False)


def build_table_lamp(b: ObjectBuilder, rng: np.random.Generator, y0: float) -> None:
    """A small lamp standing at height ``y0``."""
    m = metal_material(rng)
    h = rng.uniform(0.2, 0.35)
    b.cylinder([0, y0 + 0.01, 0], 0.07, 0.01, m)
    b.cylinder([0, y0 + h / 2, 0], 0.012, h / 2, m)
    shade = Material(
        color=hsv(rng.uniform(0.05, 0.15), rng.uniform(0.1, 0.5), rng.uniform(0.8, 1.0)),
        pattern="plain",
        grain=0.05,
        seed=int(rng.integers(1 << 30)),
        emissive=True,
    )
    b.cylinder([0, y0 + h + 0.06, 0], rng.uniform(0.08, 0.13), 0.08, shade, shadow=False)


def build_tv(b: ObjectBuilder, rng: np.random.Generator, y0: float, w: float) -> None:
    """A flat screen on a stand, standing at height ``y0`` (screen facing +z)."""
    frame = metal_material(rng)
    hgt = w * rng.uniform(0.55, 0.65)
    b.box([0, y0 + 0.01, 0], [w * 0.18, 0.01, 0.1], frame)
    b.box([0, y0 + 0.08, -0.02], [0.03, 0.08, 0.015], frame)
    b.box([0, y0 + 0.12 + hgt / 2, 0], [w / 2, hgt / 2, 0.025], frame)
    screen_col = random_color(rng, sat=(0.0, 0.9), val=(0.05, 0.9))
    screen = random_material(rng, screen_col, {"plain": 1.0, "noise": 2.0, "blotch": 2.0}, scale=(3, 12))
    screen.emissive = rng.random() < 0.6
    b.box([0, y0 + 0.12 + hgt / 2, 0.026], [w / 2 - 0.02, hgt / 2 - 0.02, 0.002], screen)


def build_small_object(b: ObjectBuilder, rng: np.random.Generator, y0: float, size: float = 1.0) -> float:
    """A small prop (ball, box, books, vase, bin) standing at height ``y0``; returns its footprint radius."""
    mat = any_material(rng)
    kind = int(rng.integers(0, 5))
    if kind == 0:  # ball
        r = rng.uniform(0.05, 0.15) * size
        b.ellipsoid([0, y0 + r, 0], r, mat)
        return r
    if kind == 1:  # box
        half = rng.uniform([0.05, 0.03, 0.05], [0.22, 0.18, 0.2]) * size
        b.box([0, y0 + half[1], 0], half, mat)
        return float(np.hypot(half[0], half[2]))
    if kind == 2:  # stack of books
        y = y0
        r = 0.0
        for _ in range(int(rng.integers(2, 5))):
            half = rng.uniform([0.08, 0.01, 0.06], [0.15, 0.03, 0.11]) * size
            rot = rot_y(rng.uniform(-0.3, 0.3))
            b.box([0, y + half[1], 0], half, any_material(rng), rot=rot)
            y += 2 * half[1]
            r = max(r, float(np.hypot(half[0], half[2])))
        return r
    if kind == 3:  # vase / bottle / cup
        r = rng.uniform(0.03, 0.1) * size
        hh = rng.uniform(0.05, 0.2) * size
        b.cylinder([0, y0 + hh, 0], r, hh, mat)
        if rng.random() < 0.5:
            b.ellipsoid([0, y0 + 2 * hh + r * 0.8, 0], r * 1.2, any_material(rng))
        return r
    r = rng.uniform(0.1, 0.2) * size  # bin / stool
    hh = rng.uniform(0.12, 0.25) * size
    b.cylinder([0, y0 + hh, 0], r, hh, mat)
    return r
