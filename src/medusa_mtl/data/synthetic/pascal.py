"""The ``pascal`` domain: outdoor-like scenes with articulated humanoid figures among other objects.

* Ground plane (grass, earth, road, sand/snow, water patches) up to the horizon, sky with clouds, background
  clutter (trees, buildings, rocks, fences, mountains) labelled background (0) in semseg but with their own
  Context classes in the ``LabelMap``.
* Persons (VOC class 15) built from primitives with PASCAL-Part names: ``head`` (+ ``hair``), ``neck``,
  ``torso``, ``luarm``/``ruarm``, ``llarm``/``rlarm``, ``lhand``/``rhand``, ``luleg``/``ruleg``,
  ``llleg``/``rlleg``, ``lfoot``/``rfoot`` ("l" = the figure's own left), random poses, sizes and clothes.
* Other VOC objects (:data:`VOC_CLASS_NAMES`): vehicles, animals (quadrupeds like persons are built from
  capsules, so shape alone does not say "person"), furniture, plants, bottles, screens.
* Saliency: every person, plus every other VOC object whose visible area is at least
  :data:`SALIENT_MIN_AREA` of the image (small / distant objects and the background are not salient).
* LabelMap: real PASCAL-Context class ids (:data:`CONTEXT_IDS`) for every class; sky is labelled (360) but its
  normals are written as zero vectors (invalid).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .common import Light, camera_normals, finish_image, shade
from .objects import (
    ObjectBuilder,
    any_material,
    build_chair,
    build_sofa,
    build_table,
    build_tv,
    metal_material,
    wood_material,
)
from .raycast import Camera, Plane, Scene, frame_from_axis, rot_x, rot_y, rot_z
from .textures import Material, fbm, hsv, random_color, random_material

VOC_CLASS_NAMES = (
    "background",
    "aeroplane",
    "bicycle",
    "bird",
    "boat",
    "bottle",
    "bus",
    "car",
    "cat",
    "chair",
    "cow",
    "diningtable",
    "dog",
    "horse",
    "motorbike",
    "person",
    "pottedplant",
    "sheep",
    "sofa",
    "train",
    "tvmonitor",
)
"""VOC class names by semseg value (0 = background)."""
VOC = {name: i for i, name in enumerate(VOC_CLASS_NAMES)}
PERSON = VOC["person"]

CONTEXT_IDS: dict[str, int] = {
    "aeroplane": 2,
    "bicycle": 23,
    "bird": 25,
    "boat": 31,
    "bottle": 34,
    "bus": 45,
    "car": 59,
    "cat": 65,
    "chair": 72,
    "cow": 98,
    "diningtable": 397,
    "dog": 113,
    "horse": 207,
    "motorbike": 258,
    "person": 284,
    "pottedplant": 308,
    "sheep": 347,
    "sofa": 368,
    "train": 416,
    "tvmonitor": 427,
    "building": 44,
    "fence": 144,
    "grass": 187,
    "ground": 189,
    "mountain": 259,
    "road": 324,
    "rock": 326,
    "sidewalk": 354,
    "sky": 360,
    "snow": 366,
    "tree": 420,
    "water": 445,
}
"""Context (459-class) LabelMap id of each synthetic class (the PASCAL-Context ids of these names;
``diningtable`` -> Context ``table``)."""

PERSON_PARTS = (
    "head",
    "hair",
    "neck",
    "torso",
    "luarm",
    "ruarm",
    "llarm",
    "rlarm",
    "lhand",
    "rhand",
    "luleg",
    "ruleg",
    "llleg",
    "rlleg",
    "lfoot",
    "rfoot",
)
"""PASCAL-Part names the synthetic persons use."""

SALIENT_MIN_AREA = 0.015
"""Minimum visible area (fraction of the image) of a non-person VOC object to be salient."""

PASCAL_F_PER_WIDTH = 1.0
"""Focal length in units of the image width (about 53 degrees horizontal field of view)."""


def pascal_intrinsics(height: int, width: int) -> tuple[float, float, float, float]:
    """(fx, fy, cx, cy) of the synthetic PASCAL camera for an image of ``height`` x ``width`` pixels."""
    f = PASCAL_F_PER_WIDTH * width
    return f, f, width / 2.0, height / 2.0


def _rodrigues(v: np.ndarray, toward: np.ndarray, angle: float) -> np.ndarray:
    """Rotate unit vector ``v`` by ``angle`` in the plane spanned by v and ``toward``."""
    w = toward - v * float(v @ toward)
    nw = np.linalg.norm(w)
    if nw < 1e-9:
        return v
    w = w / nw
    return v * np.cos(angle) + w * np.sin(angle)


def _skin(rng: np.random.Generator) -> Material:
    c = hsv(rng.uniform(0.02, 0.09), rng.uniform(0.25, 0.65), rng.uniform(0.3, 0.95))
    return Material(color=c, grain=0.04, seed=int(rng.integers(1 << 30)))


def _clothes(rng: np.random.Generator) -> Material:
    base = random_color(rng, sat=(0.0, 0.95), val=(0.08, 0.95))
    return random_material(
        rng,
        base,
        {"plain": 4.0, "stripes": 1.0, "checker": 0.7, "noise": 1.0, "blotch": 0.5},
        scale=(8.0, 25.0),
    )


def build_person(scene: Scene, rng: np.random.Generator, pos: np.ndarray, yaw: float, height: float) -> int:
    """Add an articulated humanoid standing at ``pos`` facing ``yaw``; returns its object group.

    Figure frame: y up, facing +z, the figure's left = +x. Every primitive carries ``part`` (PASCAL-Part name).
    """
    H = height
    build = rng.uniform(0.85, 1.25)
    b = ObjectBuilder(scene, pos, yaw, cls=PERSON, ctx=CONTEXT_IDS["person"], person=True)
    skin = _skin(rng)
    shirt = _clothes(rng)
    trousers = _clothes(rng) if rng.random() < 0.8 else shirt
    shoes = Material(color=random_color(rng, sat=(0, 0.5), val=(0.05, 0.5)), grain=0.05)
    hair = Material(
        color=hsv(rng.uniform(0.02, 0.12), rng.uniform(0.2, 0.8), rng.uniform(0.05, 0.7)),
        pattern="noise",
        color2=hsv(0.08, 0.5, 0.3),
        scale=40.0,
        grain=0.1,
        seed=int(rng.integers(1 << 30)),
    )
    long_sleeves = rng.random() < 0.6
    lower_arm_mat = shirt if long_sleeves else skin
    shorts = rng.random() < 0.25
    lower_leg_mat = skin if shorts else trousers

    # pose
    lean = rng.uniform(-0.12, 0.12)
    pose = rng.random()
    hip_y = 0.53 * H
    body = rot_x(lean) @ rot_z(rng.uniform(-0.06, 0.06))  # torso tilt about the hips
    up = body @ np.array([0.0, 1.0, 0.0])

    def tb(p: list[float]) -> np.ndarray:  # torso-frame point -> figure frame
        return np.array([0.0, hip_y, 0.0]) + body @ np.asarray(p, dtype=np.float64)

    # torso: box + shoulder capsule
    tw = 0.105 * H * build
    td = 0.062 * H * build
    b.box(tb([0, 0.135 * H, 0]), [tw, 0.14 * H, td], shirt, rot=body, part="torso")
    b.capsule(
        tb([-tw + 0.035 * H, 0.255 * H, 0]), tb([tw - 0.035 * H, 0.255 * H, 0]), 0.04 * H * build, shirt, part="torso"
    )
    b.box(tb([0, 0.0, 0]), [tw * 0.95, 0.05 * H, td * 1.05], trousers, rot=body, part="torso")
    # neck and head
    neck_base = tb([0, 0.27 * H, 0])
    head_dir = _rodrigues(up, np.array([0.0, 0.0, 1.0]), rng.uniform(-0.25, 0.3))
    head_dir = _rodrigues(head_dir, np.array([1.0, 0.0, 0.0]), rng.uniform(-0.2, 0.2))
    neck_top = neck_base + head_dir * 0.065 * H
    b.capsule(neck_base, neck_top, 0.024 * H * build, skin, part="neck")
    head_c = neck_top + head_dir * 0.06 * H
    head_rot = frame_from_axis(head_dir, np.array([0.0, 0.0, 1.0]))
    b.ellipsoid(head_c + np.array([0, 0, 0.005 * H]), [0.05 * H, 0.066 * H, 0.058 * H], skin, rot=head_rot, part="head")
    if rng.random() < 0.85:
        hs = rng.uniform(0.0, 1.0)
        b.ellipsoid(
            head_c + head_dir * 0.012 * H - np.array([0, 0, 0.012 * H]),
            [0.054 * H, 0.062 * H + 0.01 * H * hs, 0.06 * H],
            hair,
            rot=head_rot,
            part="hair",
        )

    # arms
    for side, sx in (("l", 1.0), ("r", -1.0)):
        shoulder = tb([sx * (tw + 0.005 * H), 0.25 * H, 0])
        if pose < 0.12:  # arms raised
            abd, flex, elbow = rng.uniform(2.0, 2.9), rng.uniform(-0.3, 0.5), rng.uniform(0.0, 0.6)
        elif pose < 0.3 and side == "r":  # waving / pointing
            abd, flex, elbow = rng.uniform(0.3, 1.6), rng.uniform(0.3, 1.6), rng.uniform(0.0, 1.5)
        else:
            abd, flex, elbow = rng.uniform(0.05, 0.45), rng.uniform(-0.5, 0.7), rng.uniform(0.0, 1.4)
        d_up = rot_z(sx * abd) @ rot_x(-flex) @ np.array([0.0, -1.0, 0.0])
        d_up = body @ d_up
        elbow_p = shoulder + d_up * 0.17 * H
        d_lo = _rodrigues(d_up, body @ np.array([0.0, 0.3, 1.0]), elbow)
        wrist = elbow_p + d_lo * 0.15 * H
        ra = 0.032 * H * build
        b.capsule(shoulder, elbow_p, ra, shirt, part=f"{side}uarm")
        b.capsule(elbow_p, wrist, ra * 0.82, lower_arm_mat, part=f"{side}larm")
        b.ellipsoid(
            wrist + d_lo * 0.035 * H,
            [0.024 * H, 0.04 * H, 0.014 * H],
            skin,
            rot=frame_from_axis(d_lo, body @ np.array([sx, 0.0, 0.0])),
            part=f"{side}hand",
        )

    # legs
    stride = rng.uniform(0.0, 0.45) if pose > 0.5 else rng.uniform(0.0, 0.12)
    knee_bend = rng.uniform(0.0, 0.5)
    lowest = np.inf
    leg_prims = []
    for side, sx in (("l", 1.0), ("r", -1.0)):
        hip = np.array([sx * 0.055 * H * build, hip_y, 0.0])
        flex = stride if side == "l" else -stride
        flex += rng.uniform(-0.08, 0.08)
        d_up = rot_x(-flex) @ rot_z(sx * rng.uniform(0.0, 0.12)) @ np.array([0.0, -1.0, 0.0])
        knee = hip + d_up * 0.245 * H
        kb = knee_bend if flex < 0 else knee_bend * 0.3
        d_lo = _rodrigues(d_up, np.array([0.0, 0.0, -1.0]), kb)
        ankle = knee + d_lo * 0.245 * H
        rl = 0.045 * H * build
        leg_prims.append((hip, knee, rl, trousers, f"{side}uleg"))
        leg_prims.append((knee, ankle, rl * 0.75, lower_leg_mat, f"{side}lleg"))
        foot_c = ankle + np.array([0.0, -0.012 * H, 0.035 * H])
        leg_prims.append((foot_c, None, None, shoes, f"{side}foot"))
        lowest = min(lowest, float(foot_c[1]) - 0.02 * H)
    for a, c, r, mat, name in leg_prims:
        if c is None:
            b.box(a, [0.028 * H, 0.02 * H, 0.06 * H], shoes, part=name)
        else:
            b.capsule(a, c, r, mat, part=name)
    # stand on the ground: shift the whole figure (primitives were placed relative to pos)
    shift = -lowest
    if abs(shift) > 1e-9:
        off = np.array([0.0, shift, 0.0])
        for k, g in enumerate(scene.group_of):
            if g == b.group:
                scene.prims[k].center = scene.prims[k].center + off
    return b.group


def _quadruped(
    scene: Scene,
    rng: np.random.Generator,
    pos: np.ndarray,
    yaw: float,
    cls: str,
    size: float,
    mat: Material,
    legs: float = 1.0,
) -> int:
    """A four-legged animal of body length ``size`` (dog, cat, cow, horse, sheep); faces local +z."""
    b = ObjectBuilder(scene, pos, yaw, cls=VOC[cls], ctx=CONTEXT_IDS[cls])
    L = size
    leg_len = 0.5 * L * legs
    body_y = leg_len + 0.12 * L
    b.ellipsoid([0, body_y, 0], [0.2 * L, 0.17 * L, 0.5 * L], mat)
    neck_a = np.array([0, body_y + 0.05 * L, 0.4 * L])
    neck_b = neck_a + np.array([0, 0.25 * L, 0.15 * L]) * rng.uniform(0.7, 1.2)
    b.capsule(neck_a, neck_b, 0.08 * L, mat)
    b.ellipsoid(neck_b + np.array([0, 0.02 * L, 0.08 * L]), [0.09 * L, 0.09 * L, 0.16 * L], mat)
    for sx in (-1, 1):
        b.ellipsoid(neck_b + np.array([sx * 0.06 * L, 0.1 * L, 0.0]), [0.03 * L, 0.06 * L, 0.02 * L], mat)
        for sz in (-1, 1):
            top = np.array([sx * 0.12 * L, body_y - 0.05 * L, sz * 0.35 * L])
            swing = rng.uniform(-0.35, 0.35)
            foot = top + np.array([0.0, -leg_len - 0.05 * L, np.sin(swing) * leg_len])
            foot[1] = 0.05 * L
            b.capsule(top, foot, 0.05 * L, mat)
    tail = np.array([0, body_y + 0.05 * L, -0.48 * L])
    b.capsule(tail, tail + np.array([0, rng.uniform(-0.3, 0.2) * L, -0.25 * L]), 0.03 * L, mat)
    return b.group


def _animal_material(rng: np.random.Generator, kind: str) -> Material:
    if kind == "sheep":
        return random_material(
            rng,
            hsv(0.1, rng.uniform(0, 0.2), rng.uniform(0.7, 0.95)),
            {"noise": 1.0},
            scale=(20, 40),
            contrast=(0.2, 0.4),
        )
    if kind == "cow":
        return Material(
            color=hsv(0, 0, rng.uniform(0.8, 0.95)),
            color2=hsv(0.07, 0.5, rng.uniform(0.05, 0.4)),
            pattern="blotch",
            scale=rng.uniform(3, 6),
            grain=0.05,
            seed=int(rng.integers(1 << 30)),
        )
    base = hsv(rng.uniform(0.03, 0.12), rng.uniform(0.0, 0.8), rng.uniform(0.1, 0.9))
    return random_material(rng, base, {"plain": 2.0, "noise": 1.0, "blotch": 1.0}, scale=(6, 20))


def _vehicle(scene: Scene, rng: np.random.Generator, pos: np.ndarray, yaw: float, cls: str) -> int:
    """Car, bus or train: boxes with glass and wheels (length along local x)."""
    b = ObjectBuilder(scene, pos, yaw, cls=VOC[cls], ctx=CONTEXT_IDS[cls])
    paint = random_material(
        rng, random_color(rng, sat=(0, 1), val=(0.1, 0.95)), {"plain": 4.0, "noise": 1.0}, grain=(0.0, 0.05)
    )
    glass = Material(color=hsv(0.58, rng.uniform(0, 0.3), rng.uniform(0.05, 0.35)), grain=0.02)
    tyre = Material(color=hsv(0, 0, 0.06), grain=0.05)
    wheel_rot = rot_x(np.pi / 2)
    if cls == "car":
        L, W, Hb = rng.uniform(3.6, 4.8), rng.uniform(1.6, 1.9), rng.uniform(0.5, 0.7)
        b.box([0, 0.3 + Hb / 2, 0], [L / 2, Hb / 2, W / 2], paint)
        ch = rng.uniform(0.4, 0.6)
        b.box([-0.1 * L, 0.3 + Hb + ch / 2, 0], [0.3 * L, ch / 2, W / 2 - 0.08], glass)
        b.box([-0.1 * L, 0.3 + Hb + ch + 0.02, 0], [0.3 * L, 0.03, W / 2 - 0.08], paint)
        for sx in (-1, 1):
            for sz in (-1, 1):
                b.cylinder([sx * 0.32 * L, 0.33, sz * (W / 2 - 0.1)], 0.33, 0.1, tyre, rot=wheel_rot)
        return b.group
    if cls == "bus":
        L, W, Hb = rng.uniform(9, 12), 2.5, rng.uniform(2.8, 3.2)
        paint.pattern = "stripes"
        paint.axis = np.array([0.0, 1.0, 0.0])
        paint.scale = rng.uniform(0.3, 0.6)
        paint.color2 = glass.color
        b.box([0, 0.35 + Hb / 2, 0], [L / 2, Hb / 2, W / 2], paint)
        for sx in (-1, 1):
            for sz in (-1, 1):
                b.cylinder([sx * 0.35 * L, 0.5, sz * (W / 2 - 0.2)], 0.5, 0.15, tyre, rot=wheel_rot)
        return b.group
    # train: carriages in a row
    n = int(rng.integers(2, 5))
    L, W, Hb = rng.uniform(12, 18), 3.0, rng.uniform(3.0, 3.8)
    for i in range(n):
        b.box([(i - (n - 1) / 2) * (L + 0.8), 0.6 + Hb / 2, 0], [L / 2, Hb / 2, W / 2], paint)
        b.box([(i - (n - 1) / 2) * (L + 0.8), 0.3, 0], [L / 2 - 1.0, 0.3, W / 2 - 0.3], metal_material(rng))
    return b.group


def _bike(scene: Scene, rng: np.random.Generator, pos: np.ndarray, yaw: float, cls: str) -> int:
    """Bicycle or motorbike: two wheels and a frame (length along local x)."""
    b = ObjectBuilder(scene, pos, yaw, cls=VOC[cls], ctx=CONTEXT_IDS[cls])
    frame = random_material(rng, random_color(rng, sat=(0.2, 1), val=(0.1, 0.9)), {"plain": 1.0})
    tyre = Material(color=hsv(0, 0, 0.08), grain=0.05)
    motor = cls == "motorbike"
    r = 0.32 if not motor else 0.33
    half_wb = 0.52 if not motor else 0.7
    wheel_rot = rot_x(np.pi / 2)
    for sx in (-1, 1):
        b.cylinder([sx * half_wb, r, 0], r, 0.02 if not motor else 0.06, tyre, rot=wheel_rot)
    seat = np.array([-0.15, 0.9 if not motor else 0.8, 0.0])
    bar = np.array([0.4, 1.0, 0.0])
    crank = np.array([0.0, r, 0.0])
    rad = 0.02 if not motor else 0.05
    b.capsule([-half_wb, r, 0], seat, rad, frame)
    b.capsule(seat, crank, rad, frame)
    b.capsule(crank, [-half_wb, r, 0], rad, frame)
    b.capsule(seat + np.array([0.05, -0.05, 0]), bar, rad, frame)
    b.capsule(bar, [half_wb, r, 0], rad, frame)
    b.capsule(bar + np.array([0, 0, -0.25]), bar + np.array([0, 0, 0.25]), 0.02, metal_material(rng))
    if motor:
        b.ellipsoid([0.05, 0.6, 0], [0.4, 0.2, 0.18], frame)
        b.box(seat + np.array([0, 0.02, 0]), [0.25, 0.04, 0.12], Material(color=hsv(0, 0, 0.1)))
    return b.group


def _bird(scene: Scene, rng: np.random.Generator, pos: np.ndarray, yaw: float, size: float) -> int:
    b = ObjectBuilder(scene, pos, yaw, cls=VOC["bird"], ctx=CONTEXT_IDS["bird"])
    mat = _animal_material(rng, "bird")
    L = size
    b.ellipsoid([0, 0, 0], [0.2 * L, 0.2 * L, 0.45 * L], mat)
    b.ellipsoid([0, 0.2 * L, 0.4 * L], 0.15 * L, mat)
    b.ellipsoid([0, 0.17 * L, 0.6 * L], [0.03 * L, 0.03 * L, 0.1 * L], Material(color=hsv(0.12, 0.8, 0.8)))
    spread = rng.uniform(0.0, 1.0)
    for sx in (-1, 1):
        b.box(
            [sx * (0.2 + 0.4 * spread) * L, 0.05 * L, 0],
            [(0.05 + 0.4 * spread) * L, 0.02 * L, 0.2 * L],
            mat,
            rot=rot_z(sx * rng.uniform(-0.4, 0.4)),
        )
    return b.group


def _aeroplane(scene: Scene, rng: np.random.Generator, pos: np.ndarray, yaw: float, L: float) -> int:
    b = ObjectBuilder(scene, pos, yaw, cls=VOC["aeroplane"], ctx=CONTEXT_IDS["aeroplane"])
    mat = random_material(rng, random_color(rng, sat=(0, 0.4), val=(0.6, 1.0)), {"plain": 3.0, "stripes": 1.0})
    b.capsule([-L / 2, 0, 0], [L / 2, 0, 0], 0.06 * L, mat)
    b.box([0.05 * L, 0, 0], [0.1 * L, 0.01 * L, 0.5 * L], mat)
    b.box([-0.45 * L, 0.08 * L, 0], [0.06 * L, 0.1 * L, 0.01 * L], mat)
    b.box([-0.45 * L, 0.02 * L, 0], [0.05 * L, 0.01 * L, 0.15 * L], mat)
    return b.group


def _boat(scene: Scene, rng: np.random.Generator, pos: np.ndarray, yaw: float) -> int:
    b = ObjectBuilder(scene, pos, yaw, cls=VOC["boat"], ctx=CONTEXT_IDS["boat"])
    L = rng.uniform(3.0, 8.0)
    hull = random_material(rng, random_color(rng, sat=(0, 1), val=(0.2, 1.0)), {"plain": 2.0, "stripes": 1.0})
    b.ellipsoid([0, 0.1, 0], [L / 2, 0.5, L / 6], hull)
    if rng.random() < 0.5:
        b.box([-0.1 * L, 0.7, 0], [0.15 * L, 0.3, L / 10], any_material(rng))
    else:
        b.cylinder([0, 0.3 + L * 0.35, 0], 0.04, L * 0.35, wood_material(rng))
        sail = Material(color=hsv(0, 0, rng.uniform(0.8, 1.0)), grain=0.03)
        b.box([-0.12 * L, 0.5 + L * 0.3, 0], [0.1 * L, L * 0.25, 0.01], sail)
    return b.group


def _pottedplant(scene: Scene, rng: np.random.Generator, pos: np.ndarray, s: float) -> int:
    b = ObjectBuilder(scene, pos, 0.0, cls=VOC["pottedplant"], ctx=CONTEXT_IDS["pottedplant"])
    pot = random_material(
        rng, hsv(rng.uniform(0.0, 0.1), rng.uniform(0.3, 0.8), rng.uniform(0.3, 0.8)), {"plain": 2.0, "stripes": 1.0}
    )
    ph = 0.25 * s
    b.cylinder([0, ph / 2, 0], 0.15 * s, ph / 2, pot)
    leaves = random_material(
        rng,
        hsv(rng.uniform(0.2, 0.4), rng.uniform(0.4, 0.9), rng.uniform(0.2, 0.7)),
        {"noise": 2.0, "blotch": 1.0},
        scale=(15, 40),
    )
    for _ in range(int(rng.integers(2, 5))):
        off = rng.uniform([-0.12, 0.1, -0.12], [0.12, 0.35, 0.12]) * s
        b.ellipsoid(np.array([0, ph, 0]) + off, rng.uniform(0.1, 0.2, size=3) * s, leaves)
    return b.group


def _bottle(scene: Scene, rng: np.random.Generator, pos: np.ndarray, s: float) -> int:
    b = ObjectBuilder(scene, pos, 0.0, cls=VOC["bottle"], ctx=CONTEXT_IDS["bottle"])
    glass = Material(color=hsv(rng.uniform(0.2, 0.45), rng.uniform(0.2, 0.9), rng.uniform(0.1, 0.7)), grain=0.05)
    r = 0.04 * s
    b.cylinder([0, 0.1 * s, 0], r, 0.1 * s, glass)
    b.capsule([0, 0.2 * s, 0], [0, 0.3 * s, 0], 0.015 * s, glass)
    return b.group


def _background_clutter(scene: Scene, rng: np.random.Generator, horizon_x: float) -> None:
    """Trees, buildings, rocks, fences and mountains: VOC background, distinct Context classes."""
    for _ in range(int(rng.integers(0, 3))):  # mountains far away
        z = -rng.uniform(150, 400)
        x = rng.uniform(-1, 1) * horizon_x * (-z)
        r = rng.uniform(60, 200)
        mat = random_material(
            rng,
            hsv(rng.uniform(0.25, 0.65), rng.uniform(0.1, 0.4), rng.uniform(0.3, 0.7)),
            {"noise": 1.0},
            scale=(0.02, 0.06),
        )
        b = ObjectBuilder(scene, np.array([x, -r * rng.uniform(0.5, 0.8), z]), 0.0, cls=0, ctx=CONTEXT_IDS["mountain"])
        b.ellipsoid([0, 0, 0], [r * rng.uniform(1.5, 3.0), r, r], mat, shadow=False)
    for _ in range(int(rng.integers(0, 4))):  # buildings
        z = -rng.uniform(20, 70)
        x = rng.uniform(-1.2, 1.2) * horizon_x * (-z)
        w, d, h = rng.uniform(5, 25), rng.uniform(5, 15), rng.uniform(5, 30)
        wall = random_material(
            rng,
            random_color(rng, sat=(0, 0.4), val=(0.3, 0.9)),
            {"grid": 2.0, "stripes": 1.0, "plain": 1.0},
            scale=(0.3, 0.8),
        )
        b = ObjectBuilder(scene, np.array([x, 0.0, z]), rng.uniform(-0.5, 0.5), cls=0, ctx=CONTEXT_IDS["building"])
        b.box([0, h / 2, 0], [w / 2, h / 2, d / 2], wall)
    for _ in range(int(rng.integers(0, 6))):  # trees
        z = -rng.uniform(6, 50)
        x = rng.uniform(-1.2, 1.2) * horizon_x * (-z)
        h = rng.uniform(3, 10)
        b = ObjectBuilder(scene, np.array([x, 0.0, z]), 0.0, cls=0, ctx=CONTEXT_IDS["tree"])
        bark = random_material(rng, hsv(0.07, rng.uniform(0.3, 0.6), rng.uniform(0.15, 0.4)), {"noise": 1.0})
        b.cylinder([0, h * 0.3, 0], rng.uniform(0.1, 0.3), h * 0.3, bark)
        leaves = random_material(
            rng,
            hsv(rng.uniform(0.18, 0.42), rng.uniform(0.3, 0.9), rng.uniform(0.15, 0.6)),
            {"noise": 2.0, "blotch": 1.0},
            scale=(2, 6),
        )
        b.ellipsoid([0, h * 0.7, 0], [h * 0.3, h * 0.35, h * 0.3] * rng.uniform(0.7, 1.2, size=3), leaves)
    for _ in range(int(rng.integers(0, 3))):  # rocks
        z = -rng.uniform(3, 30)
        x = rng.uniform(-1, 1) * horizon_x * (-z)
        r = rng.uniform(0.2, 1.2)
        mat = random_material(
            rng,
            hsv(rng.uniform(0, 0.15), rng.uniform(0, 0.25), rng.uniform(0.25, 0.7)),
            {"noise": 2.0, "blotch": 1.0},
            scale=(2, 8),
        )
        b = ObjectBuilder(scene, np.array([x, 0.0, z]), rng.uniform(-3, 3), cls=0, ctx=CONTEXT_IDS["rock"])
        b.ellipsoid([0, r * 0.3, 0], r * rng.uniform(0.6, 1.3, size=3), mat)
    if rng.random() < 0.3:  # fence across the view
        z = -rng.uniform(8, 25)
        mat = wood_material(rng)
        b = ObjectBuilder(
            scene, np.array([rng.uniform(-3, 3), 0.0, z]), rng.uniform(-0.3, 0.3), cls=0, ctx=CONTEXT_IDS["fence"]
        )
        span = horizon_x * (-z) * 1.2
        fh = rng.uniform(0.8, 1.5)
        for y in (0.35, 0.8):
            b.box([0, y * fh, 0], [span, 0.06, 0.03], mat)
        for x in np.arange(-span, span, rng.uniform(1.5, 3.0)):
            b.box([x, fh / 2, 0.05], [0.06, fh / 2, 0.06], mat)


_GROUND = {  # Context class -> (hue, sat, val) ranges and patterns
    "grass": ((0.17, 0.38), (0.35, 0.85), (0.2, 0.7), {"noise": 3.0, "blotch": 1.0}),
    "ground": ((0.05, 0.12), (0.2, 0.6), (0.25, 0.7), {"noise": 3.0, "blotch": 1.0}),
    "road": ((0.0, 1.0), (0.0, 0.08), (0.15, 0.5), {"noise": 3.0, "plain": 1.0}),
    "sidewalk": ((0.0, 1.0), (0.0, 0.15), (0.4, 0.8), {"grid": 2.0, "checker": 1.0, "noise": 1.0}),
    "snow": ((0.55, 0.65), (0.0, 0.1), (0.8, 1.0), {"noise": 2.0, "plain": 1.0}),
}


def _ground_material(rng: np.random.Generator, kind: str) -> Material:
    h, s, v, pats = _GROUND[kind]
    return random_material(rng, random_color(rng, h, s, v), pats, scale=(0.3, 3.0), contrast=(0.1, 0.4))


def build_outdoor(
    rng: np.random.Generator, height: int, width: int
) -> tuple[Scene, Camera, Light, np.ndarray, list[dict[str, Any]]]:
    """Sample an outdoor scene; returns scene, camera, light, ambient and the foreground instances."""
    scene = Scene()
    fx, fy, cx, cy = pascal_intrinsics(height, width)
    horizon_x = (width / 2) / fx  # half-width of the view per metre of distance
    # ground: a main material and an optional band of another (road / path / water)
    g = scene.new_group()
    main_kind = str(rng.choice(["grass", "grass", "ground", "road", "sidewalk", "snow"]))
    ex, ey, ez = np.eye(3)
    ground_rot = np.stack([ex, -ez, ey], axis=1)
    scene.add(
        Plane(np.zeros(3), ground_rot),
        g,
        cls=0,
        ctx=CONTEXT_IDS[main_kind],
        material=_ground_material(rng, main_kind),
        shadow=False,
    )
    water = False
    if rng.random() < 0.45:
        band_kind = str(rng.choice(["road", "sidewalk", "ground", "water"]))
        z0 = -rng.uniform(4, 30)
        depth = rng.uniform(2, 15)
        yaw = rng.uniform(-0.6, 0.6)
        if band_kind == "water":
            water = True
            mat = Material(
                color=hsv(rng.uniform(0.5, 0.62), rng.uniform(0.3, 0.8), rng.uniform(0.2, 0.6)),
                color2=hsv(0.55, 0.2, 0.9),
                pattern="noise",
                scale=rng.uniform(0.5, 2.0),
                grain=0.1,
                seed=int(rng.integers(1 << 30)),
            )
        else:
            mat = _ground_material(rng, band_kind)
        b = ObjectBuilder(scene, np.array([0.0, 0.0, z0]), yaw, cls=0, ctx=CONTEXT_IDS[band_kind])
        b.quad([0, 0.005, 0], ground_rot, (500.0, depth / 2), mat, shadow=False)
    _background_clutter(scene, rng, horizon_x)

    instances: list[dict[str, Any]] = []
    occupied: list[tuple[float, float, float]] = []

    def spot(dmin: float, dmax: float, radius: float) -> np.ndarray | None:
        for _ in range(20):
            z = -(dmin + (dmax - dmin) * rng.random() ** 1.7)  # more near than far
            x = rng.uniform(-0.9, 0.9) * horizon_x * (-z)
            if all(np.hypot(x - a, z - c) > radius + r for a, c, r in occupied):
                occupied.append((x, z, radius))
                return np.array([x, 0.0, z])
        return None

    # persons
    n_person = int(rng.choice([0, 1, 1, 1, 2, 2, 3, 4]))
    close_up = rng.random() < 0.25
    for k in range(n_person):
        h = rng.uniform(1.5, 1.95) if rng.random() < 0.85 else rng.uniform(0.9, 1.4)
        if k == 0 and close_up:  # a large figure near the camera (often cut by the image border)
            pos = spot(1.6, 2.6, 0.4)
        else:  # more near than far figures
            pos = spot(2.2, 13.0, 0.4)
        if pos is None:
            continue
        grp = build_person(scene, rng, pos, float(rng.uniform(-np.pi, np.pi)), h)
        instances.append({"group": grp, "cls": PERSON})
    # other VOC objects
    kinds = [
        "car",
        "bus",
        "train",
        "bicycle",
        "motorbike",
        "dog",
        "cat",
        "cow",
        "horse",
        "sheep",
        "bird",
        "aeroplane",
        "chair",
        "diningtable",
        "sofa",
        "pottedplant",
        "bottle",
        "tvmonitor",
        "boat",
    ]
    weights = np.array(
        [3, 1, 0.6, 1.5, 1.2, 2, 1.2, 1.2, 1.2, 1.2, 1, 0.8, 1.5, 1, 0.8, 1.2, 0.8, 0.8, 1.5 if water else 0.0]
    )
    n_obj = int(rng.choice([0, 1, 2, 2, 3, 3, 4])) if n_person else int(rng.choice([1, 2, 3, 3, 4, 5]))
    for _ in range(n_obj):
        kind = kinds[int(rng.choice(len(kinds), p=weights / weights.sum()))]
        yaw = float(rng.uniform(-np.pi, np.pi))
        grp = None
        if kind in ("car", "bus", "train"):
            pos = spot(
                {"car": 4, "bus": 10, "train": 20}[kind],
                {"car": 25, "bus": 40, "train": 60}[kind],
                {"car": 2.5, "bus": 6, "train": 20}[kind],
            )
            if pos is not None:
                grp = _vehicle(scene, rng, pos, yaw, kind)
        elif kind in ("bicycle", "motorbike"):
            pos = spot(3, 15, 1.0)
            if pos is not None:
                grp = _bike(scene, rng, pos, yaw, kind)
        elif kind in ("dog", "cat", "cow", "horse", "sheep"):
            size = {"dog": (0.5, 0.9), "cat": (0.35, 0.5), "cow": (1.8, 2.3), "horse": (1.8, 2.3), "sheep": (1.0, 1.3)}[
                kind
            ]
            L = rng.uniform(*size)
            pos = spot(max(2.0, 3 * L), 6 + 8 * L, L * 0.6)
            if pos is not None:
                legs = {"horse": 1.4, "cow": 1.0, "sheep": 0.7, "dog": 1.0, "cat": 0.8}[kind]
                grp = _quadruped(scene, rng, pos, yaw, kind, L, _animal_material(rng, kind), legs)
        elif kind == "bird":
            pos = spot(2.5, 12, 0.3)
            if pos is not None:
                flying = rng.random() < 0.4
                if flying:
                    pos = pos + np.array([0.0, rng.uniform(1.0, 4.0), 0.0])
                L = rng.uniform(0.15, 0.4)
                grp = _bird(scene, rng, pos + np.array([0, 0.2 * L + 0.2 * L * (not flying), 0]), yaw, L)
        elif kind == "aeroplane":
            z = -rng.uniform(60, 250)
            L = rng.uniform(20, 40)
            pos = np.array([rng.uniform(-0.7, 0.7) * horizon_x * (-z), rng.uniform(0.1, 0.5) * (-z), z])
            grp = _aeroplane(scene, rng, pos, yaw, L)
        elif kind == "boat":
            pos = spot(6, 35, 3.0)
            if pos is not None:
                grp = _boat(scene, rng, pos, yaw)
        elif kind == "pottedplant":
            pos = spot(2.5, 10, 0.4)
            if pos is not None:
                grp = _pottedplant(scene, rng, pos, rng.uniform(1.0, 2.5))
        elif kind == "bottle":
            pos = spot(1.5, 4, 0.2)
            if pos is not None:
                grp = _bottle(scene, rng, pos, rng.uniform(1.0, 1.5))
        else:  # chair, diningtable, sofa, tvmonitor
            pos = spot(2.5, 12, 1.0)
            if pos is not None:
                b = ObjectBuilder(scene, pos, yaw, cls=VOC[kind], ctx=CONTEXT_IDS[kind])
                if kind == "chair":
                    build_chair(b, rng)
                elif kind == "diningtable":
                    build_table(b, rng, rng.uniform(0.8, 1.8), rng.uniform(0.7, 1.1), rng.uniform(0.7, 0.78))
                elif kind == "sofa":
                    build_sofa(b, rng, rng.uniform(1.4, 2.2))
                else:
                    build_tv(b, rng, rng.uniform(0.0, 0.8), rng.uniform(0.5, 1.2))
                grp = b.group
        if grp is not None:
            instances.append({"group": grp, "cls": VOC[kind]})

    # camera
    cam_pos = np.array([0.0, rng.uniform(0.9, 1.9), 0.0])
    rot = rot_y(rng.uniform(-0.1, 0.1)) @ rot_x(rng.uniform(-0.25, -0.02)) @ rot_z(rng.uniform(-0.05, 0.05))
    camera = Camera(height, width, fx, fy, cx, cy, rot, cam_pos)
    # sun
    elev = rng.uniform(0.3, 1.2)
    azim = rng.uniform(-np.pi, np.pi)
    sun_dir = np.array([np.cos(elev) * np.sin(azim), np.sin(elev), np.cos(elev) * np.cos(azim)])
    sun = Light(
        color=hsv(rng.uniform(0.06, 0.14), rng.uniform(0.0, 0.35), 1.0) * rng.uniform(0.7, 1.1), direction=sun_dir
    )
    ambient = hsv(rng.uniform(0.5, 0.65), rng.uniform(0.05, 0.35), rng.uniform(0.25, 0.5))
    return scene, camera, sun, ambient, instances


def _sky(rng: np.random.Generator) -> Any:
    zenith = hsv(rng.uniform(0.55, 0.65), rng.uniform(0.3, 0.8), rng.uniform(0.55, 0.95))
    horizon = hsv(rng.uniform(0.5, 0.62), rng.uniform(0.0, 0.3), rng.uniform(0.75, 1.0))
    cloud = hsv(0, 0, rng.uniform(0.85, 1.0))
    cover = rng.uniform(0.35, 0.75)
    seed = int(rng.integers(1 << 30))
    scale = rng.uniform(2.0, 6.0)

    def background(d: np.ndarray) -> np.ndarray:
        up = np.clip(d[:, 1], 0.0, 1.0)[:, None]
        col = horizon[None, :] * (1.0 - up) + zenith[None, :] * up
        q = d[:, [0, 2]] / np.maximum(d[:, 1:2], 0.05) * 0.3
        c = fbm(np.concatenate([q * scale, np.zeros((d.shape[0], 1))], axis=1), seed, octaves=4)
        a = np.clip((c - cover) * 4.0, 0.0, 1.0)[:, None]
        return col * (1.0 - a) + cloud[None, :] * a

    return background


def render_pascal(rng: np.random.Generator, size: tuple[int, int]) -> dict[str, Any]:
    """Render one PASCAL-like sample.

    Args:
        rng: the sample's random generator.
        size: (height, width).

    Returns:
        ``image`` uint8 HxWx3, ``semseg`` uint8 HxW (0..20), ``persons`` list of
        ``{"mask": bool HxW, "parts": {name: bool HxW}}``, ``sal`` uint8 HxW (0 / 255), ``normals`` float32
        HxWx3 (zero on the sky), ``labelmap`` uint16 HxW (Context ids).
    """
    height, width = size
    scene, camera, sun, ambient, instances = build_outdoor(rng, height, width)
    hits = scene.cast(camera)
    radiance = shade(scene, hits, sun, ambient, background=_sky(rng))
    image = finish_image(radiance, height, width, rng)
    idx = hits.index
    semseg = scene.lookup("cls", 0, np.uint8)[idx]
    labelmap = scene.lookup("ctx", CONTEXT_IDS["sky"], np.uint16)[idx]
    normals = camera_normals(hits, camera)
    group = np.array(scene.group_of + [-1], dtype=np.int64)[idx]
    codes = {name: k + 1 for k, name in enumerate(PERSON_PARTS)}
    part = np.array([codes.get(inf.get("part", ""), 0) for inf in scene.info] + [0], dtype=np.int64)[idx]
    persons: list[dict[str, Any]] = []
    sal = np.zeros((height, width), dtype=np.uint8)
    n_pix = height * width
    for inst in instances:
        mask = group == inst["group"]
        area = int(mask.sum())
        if area == 0:
            continue
        if inst["cls"] == PERSON:
            parts: dict[str, np.ndarray] = {}
            for name in PERSON_PARTS:
                pm = mask & (part == codes[name])
                if pm.any():
                    parts[name] = pm
            persons.append({"mask": mask, "parts": parts})
            sal[mask] = 255
        elif area >= SALIENT_MIN_AREA * n_pix:
            sal[mask] = 255
    return {"image": image, "semseg": semseg, "persons": persons, "sal": sal, "normals": normals, "labelmap": labelmap}
