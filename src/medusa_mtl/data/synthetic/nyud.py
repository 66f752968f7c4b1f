"""The ``nyud`` domain: indoor rooms (floor, walls, ceiling, windows, doors, pictures and furniture).

Classes (written to ``segmentation/<id>.png``; 0 = unlabelled, read by the loader as ignore):
see :data:`NYUD_CLASS_NAMES`. Windows are class 4 **and invalid depth/normals** (depth 0, normal 0) on their
glass, like the depth sensor's holes on glass and outdoor views; their frames are class 4 with valid depth.
About a quarter of the small props are left unlabelled (class 0), as in real annotations.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .common import Light, camera_normals, class_edges, finish_image, shade
from .objects import (
    ObjectBuilder,
    Support,
    build_bed,
    build_cabinet,
    build_chair,
    build_floor_lamp,
    build_small_object,
    build_sofa,
    build_table,
    build_table_lamp,
    build_tv,
    metal_material,
    wood_material,
)
from .raycast import Camera, Plane, Scene, rot_x, rot_y, rot_z
from .textures import Material, hsv, random_color, random_material

NYUD_CLASS_NAMES = (
    "unlabelled",
    "wall",
    "floor",
    "ceiling",
    "window",
    "door",
    "picture",
    "bed",
    "sofa",
    "chair",
    "table",
    "cabinet",
    "lamp",
    "object",
)
"""Class names by file value (0 = unlabelled, 1..13)."""
NYUD_NUM_SYNTH_CLASSES = len(NYUD_CLASS_NAMES) - 1
UNLABELLED, WALL, FLOOR, CEILING, WINDOW, DOOR, PICTURE, BED, SOFA, CHAIR, TABLE, CABINET, LAMP, OBJECT = range(14)

NYUD_FX_PER_WIDTH = 518.8579 / 640.0
"""Focal length in units of the image width (the Kinect's of NYUD-v2: 518.86 px at 640 px)."""


def nyud_intrinsics(height: int, width: int) -> tuple[float, float, float, float]:
    """(fx, fy, cx, cy) of the synthetic NYUD camera for an image of ``height`` x ``width`` pixels."""
    f = NYUD_FX_PER_WIDTH * width
    return f, f, width / 2.0, height / 2.0


def _plane_rot(u: Any, v: Any, n: Any) -> np.ndarray:
    return np.stack([np.asarray(u, float), np.asarray(v, float), np.asarray(n, float)], axis=1)


def _wall_material(rng: np.random.Generator) -> Material:
    base = hsv(rng.uniform(0, 1), rng.uniform(0.0, 0.35), rng.uniform(0.45, 0.95))
    return random_material(
        rng,
        base,
        {"plain": 4.0, "noise": 2.0, "stripes": 1.0, "grid": 0.5},
        scale=(1.5, 6.0),
        contrast=(0.05, 0.3),
    )


def _floor_material(rng: np.random.Generator) -> Material:
    r = rng.random()
    if r < 0.45:
        return wood_material(rng)
    if r < 0.75:  # tiles
        base = random_color(rng, sat=(0.0, 0.4), val=(0.3, 0.95))
        m = random_material(rng, base, {"checker": 2.0, "grid": 2.0}, scale=(1.5, 4.0), contrast=(0.1, 0.4))
        return m
    base = random_color(rng, sat=(0.0, 0.7), val=(0.15, 0.8))  # carpet
    return random_material(rng, base, {"noise": 3.0, "plain": 1.0, "blotch": 1.0}, scale=(4.0, 20.0))


def _outdoor_material(rng: np.random.Generator) -> Material:
    sky = hsv(rng.uniform(0.52, 0.65), rng.uniform(0.05, 0.5), rng.uniform(0.8, 1.0))
    green = hsv(rng.uniform(0.15, 0.4), rng.uniform(0.2, 0.7), rng.uniform(0.3, 0.8))
    return Material(
        color=sky,
        color2=green,
        pattern="blotch",
        scale=rng.uniform(2.0, 6.0),
        grain=0.05,
        seed=int(rng.integers(1 << 30)),
        emissive=True,
    )


class _Room:
    """Axis-aligned room: x in [-wx, wx], y in [0, h], z in [zf, zb] (camera near the back wall zb)."""

    def __init__(self, rng: np.random.Generator) -> None:
        self.wx = rng.uniform(1.4, 2.7)
        self.h = rng.uniform(2.4, 3.2)
        self.zb = rng.uniform(0.3, 1.0)
        self.zf = -rng.uniform(2.5, 5.5)

    def walls(self) -> list[dict[str, Any]]:
        """Walls with a horizontal axis u, an origin at s = 0, y = 0, the inward normal and the s range."""
        wx, zf, zb = self.wx, self.zf, self.zb
        return [
            {
                "name": "left",
                "o": np.array([-wx, 0, 0.0]),
                "u": np.array([0, 0, 1.0]),
                "n": np.array([1.0, 0, 0]),
                "s": (zf, zb),
            },
            {
                "name": "right",
                "o": np.array([wx, 0, 0.0]),
                "u": np.array([0, 0, -1.0]),
                "n": np.array([-1.0, 0, 0]),
                "s": (-zb, -zf),
            },
            {
                "name": "far",
                "o": np.array([0, 0, zf]),
                "u": np.array([1.0, 0, 0]),
                "n": np.array([0, 0, 1.0]),
                "s": (-wx, wx),
            },
            {
                "name": "back",
                "o": np.array([0, 0, zb]),
                "u": np.array([-1.0, 0, 0]),
                "n": np.array([0, 0, -1.0]),
                "s": (-wx, wx),
            },
        ]


def _add_shell(scene: Scene, room: _Room, rng: np.random.Generator) -> None:
    g = scene.new_group()
    wall_mat = _wall_material(rng)
    accent = _wall_material(rng) if rng.random() < 0.3 else wall_mat
    ex, ey, ez = np.eye(3)
    scene.add(Plane(np.zeros(3), _plane_rot(ex, -ez, ey)), g, cls=FLOOR, material=_floor_material(rng), shadow=False)
    ceil = random_material(
        rng,
        hsv(rng.uniform(0, 1), rng.uniform(0, 0.12), rng.uniform(0.7, 0.98)),
        {"plain": 3.0, "noise": 1.0, "grid": 1.0},
        scale=(0.8, 2.0),
        contrast=(0.05, 0.2),
    )
    scene.add(Plane(np.array([0, room.h, 0]), _plane_rot(ex, ez, -ey)), g, cls=CEILING, material=ceil, shadow=False)
    for w in room.walls():
        mat = accent if w["name"] == "far" else wall_mat
        scene.add(Plane(w["o"], _plane_rot(w["u"], ey, w["n"])), g, cls=WALL, material=mat, shadow=False)


def _wall_items(scene: Scene, room: _Room, rng: np.random.Generator) -> None:
    """Windows, a door and pictures on the walls (non-overlapping intervals along each wall)."""
    walls = room.walls()
    used: dict[str, list[tuple[float, float]]] = {w["name"]: [] for w in walls}
    ey = np.array([0.0, 1.0, 0.0])

    def place(w: dict[str, Any], width: float) -> float | None:
        s0, s1 = w["s"]
        for _ in range(10):
            s = rng.uniform(s0 + width / 2 + 0.1, s1 - width / 2 - 0.1) if s1 - s0 > width + 0.2 else None
            if s is None:
                return None
            if all(s + width / 2 + 0.1 < a or s - width / 2 - 0.1 > b for a, b in used[w["name"]]):
                used[w["name"]].append((s - width / 2, s + width / 2))
                return s
        return None

    def builder(w: dict[str, Any], s: float, cls: int) -> tuple[ObjectBuilder, np.ndarray]:
        # object frame: origin on the wall at (s, y=0), x along u, y up, z = inward normal
        yaw = float(np.arctan2(w["n"][0], w["n"][2]))
        b = ObjectBuilder(scene, w["o"] + s * w["u"], yaw, cls=cls)
        return b, _plane_rot(np.array([1.0, 0, 0]), ey, np.array([0, 0, 1.0]))

    side_walls = [w for w in walls if w["name"] != "back"]
    n_windows = int(rng.choice([0, 1, 1, 2, 2, 3]))
    for _ in range(n_windows):
        w = side_walls[int(rng.integers(len(side_walls)))]
        width = rng.uniform(0.7, 1.8)
        s = place(w, width + 0.1)
        if s is None:
            continue
        b, qrot = builder(w, s, WINDOW)
        y0 = rng.uniform(0.6, 1.1)
        hgt = min(rng.uniform(0.9, 1.6), room.h - y0 - 0.15)
        b.quad([0, y0 + hgt / 2, 0.004], qrot, (width / 2, hgt / 2), _outdoor_material(rng), invalid=True, shadow=False)
        fm = (
            wood_material(rng)
            if rng.random() < 0.4
            else Material(color=hsv(0, 0, rng.uniform(0.6, 0.95)), grain=0.03, seed=int(rng.integers(1 << 30)))
        )
        fw, fd = rng.uniform(0.03, 0.07), rng.uniform(0.03, 0.07)
        for sy in (-1, 1):
            b.box([0, y0 + hgt / 2 + sy * (hgt / 2 + fw / 2), fd / 2], [width / 2 + fw, fw / 2, fd / 2], fm)
        for sx in (-1, 1):
            b.box([sx * (width / 2 + fw / 2), y0 + hgt / 2, fd / 2], [fw / 2, hgt / 2, fd / 2], fm)
        if rng.random() < 0.6:
            b.box([0, y0 + hgt * rng.uniform(0.4, 0.7), fd / 2], [width / 2, fw / 3, fd / 3], fm)
        if rng.random() < 0.35:  # curtain on one side: blinds-like fabric, labelled window
            cm = random_material(rng, random_color(rng, sat=(0, 0.7), val=(0.3, 0.95)), {"stripes": 1.0}, scale=(6, 14))
            cm.axis = np.array([1.0, 0, 0])
            sx = 1 if rng.random() < 0.5 else -1
            cw = width * rng.uniform(0.15, 0.35)
            b.box([sx * (width / 2 - cw / 2 + fw), y0 + hgt / 2 + 0.05, 0.09], [cw / 2, hgt / 2 + 0.15, 0.02], cm)
    if rng.random() < 0.45:
        w = side_walls[int(rng.integers(len(side_walls)))]
        width = rng.uniform(0.75, 0.95)
        s = place(w, width)
        if s is not None:
            b, _ = builder(w, s, DOOR)
            dh = rng.uniform(1.95, 2.15)
            b.box([0, dh / 2, 0.02], [width / 2, dh / 2, 0.02], wood_material(rng))
            b.ellipsoid([width / 2 - 0.1, 0.95, 0.06], 0.03, metal_material(rng))
    for _ in range(int(rng.integers(0, 4))):
        w = walls[int(rng.integers(len(walls)))]
        width = rng.uniform(0.3, 1.3)
        s = place(w, width)
        if s is None:
            continue
        b, _ = builder(w, s, PICTURE)
        ph = width * rng.uniform(0.5, 1.3)
        yc = rng.uniform(1.2, 1.8)
        yc = min(yc, room.h - ph / 2 - 0.1)
        art = random_material(
            rng,
            random_color(rng, sat=(0.2, 1.0), val=(0.2, 1.0)),
            {"noise": 2.0, "blotch": 2.0, "stripes": 1.0, "checker": 0.5},
            scale=(4, 15),
            contrast=(0.4, 0.9),
        )
        b.box([0, yc, 0.02], [width / 2, ph / 2, rng.uniform(0.008, 0.025)], art)


def _add_furniture(
    scene: Scene, room: _Room, cam_pos: np.ndarray, rng: np.random.Generator
) -> tuple[list[Support], list[tuple[float, float, float]]]:
    """Furniture placed against walls or freely on the floor, avoiding overlaps and the camera."""
    placed: list[tuple[float, float, float]] = []  # x, z, radius
    supports: list[Support] = []
    kinds = ["bed", "sofa", "chair", "table", "cabinet", "lamp", "tv_stand", "dining"]
    weights = np.array([1.0, 1.2, 2.0, 1.5, 1.8, 0.7, 0.6, 0.8])
    n = int(rng.integers(4, 10))
    walls = [w for w in room.walls() if w["name"] != "back"]
    for _ in range(n):
        kind = kinds[int(rng.choice(len(kinds), p=weights / weights.sum()))]
        if kind == "bed":
            w, d = rng.uniform(1.0, 1.9), rng.uniform(1.9, 2.15)
        elif kind == "sofa":
            w, d = rng.uniform(1.4, 2.4), 0.95
        elif kind == "chair":
            w, d = 0.55, 0.55
        elif kind == "table":
            w, d = rng.uniform(0.6, 1.8), rng.uniform(0.5, 1.0)
        elif kind == "cabinet":
            w, d = rng.uniform(0.5, 1.6), rng.uniform(0.35, 0.6)
        elif kind == "tv_stand":
            w, d = rng.uniform(0.8, 1.6), rng.uniform(0.35, 0.5)
        elif kind == "dining":
            w, d = rng.uniform(1.0, 1.8), rng.uniform(0.8, 1.1)
        else:
            w, d = 0.4, 0.4
        radius = 0.5 * float(np.hypot(w, d))
        against = rng.random() < {"bed": 0.9, "sofa": 0.8, "cabinet": 0.9, "tv_stand": 0.9}.get(kind, 0.3)
        pos = None
        yaw = 0.0
        for _ in range(15):
            if against:
                wall = walls[int(rng.integers(len(walls)))]
                s0, s1 = wall["s"]
                if s1 - s0 < w + 0.1:
                    continue
                s = rng.uniform(s0 + w / 2 + 0.02, s1 - w / 2 - 0.02)
                p = wall["o"] + s * wall["u"] + wall["n"] * (d / 2 + 0.02)
                yaw = float(np.arctan2(wall["n"][0], wall["n"][2]))
            else:
                p = np.array(
                    [
                        rng.uniform(-room.wx + radius, room.wx - radius),
                        0.0,
                        rng.uniform(room.zf + radius, room.zb - radius),
                    ]
                )
                yaw = float(rng.uniform(-np.pi, np.pi))
            x, z = float(p[0]), float(p[2])
            if np.hypot(x - cam_pos[0], z - cam_pos[2]) < radius + 0.7:
                continue
            if any(np.hypot(x - a, z - c) < radius * 0.8 + r * 0.8 for a, c, r in placed):
                continue
            pos = np.array([x, 0.0, z])
            break
        if pos is None:
            continue
        placed.append((float(pos[0]), float(pos[2]), radius))
        if kind == "bed":
            # head of the bed against the wall: bed local -z is the head; rotate so -z faces the wall
            b = ObjectBuilder(scene, pos + 0.0, yaw, cls=BED)
            supports.append(build_bed(b, rng, w, d))
        elif kind == "sofa":
            build_sofa(ObjectBuilder(scene, pos, yaw, cls=SOFA), rng, w)
        elif kind == "chair":
            build_chair(ObjectBuilder(scene, pos, yaw, cls=CHAIR), rng)
        elif kind == "table":
            supports.append(build_table(ObjectBuilder(scene, pos, yaw, cls=TABLE), rng, w, d, rng.uniform(0.45, 0.8)))
        elif kind == "dining":
            h = rng.uniform(0.72, 0.78)
            supports.append(build_table(ObjectBuilder(scene, pos, yaw, cls=TABLE), rng, w, d, h))
            for sx in (-1, 1):
                if rng.random() < 0.8:
                    cpos = pos + rot_y(yaw) @ np.array([sx * (w / 2 + 0.3), 0, rng.uniform(-0.1, 0.1)])
                    build_chair(
                        ObjectBuilder(scene, cpos, yaw - sx * np.pi / 2 + rng.uniform(-0.3, 0.3), cls=CHAIR), rng
                    )
        elif kind == "cabinet":
            h = rng.uniform(0.5, 2.0) if rng.random() < 0.7 else rng.uniform(0.4, 0.9)
            h = min(h, room.h - 0.3)
            supports.append(build_cabinet(ObjectBuilder(scene, pos, yaw, cls=CABINET), rng, w, d, h))
        elif kind == "tv_stand":
            h = rng.uniform(0.4, 0.6)
            build_cabinet(ObjectBuilder(scene, pos, yaw, cls=CABINET), rng, w, d, h)
            build_tv(ObjectBuilder(scene, pos, yaw, cls=OBJECT), rng, h, min(w * 0.8, rng.uniform(0.6, 1.2)))
        else:
            build_floor_lamp(ObjectBuilder(scene, pos, yaw, cls=LAMP), rng)
    return supports, placed


def _add_props(
    scene: Scene, room: _Room, supports: list[Support], cam_pos: np.ndarray, rng: np.random.Generator
) -> None:
    """Small objects on supports and on the floor; some unlabelled; a rug; a ceiling lamp."""
    for sup in supports:
        for _ in range(int(rng.integers(0, 4))):
            x = rng.uniform(-sup.half_x, sup.half_x) if sup.half_x > 0 else 0.0
            z = rng.uniform(-sup.half_z, sup.half_z) if sup.half_z > 0 else 0.0
            pos = sup.origin + rot_y(sup.yaw) @ np.array([x, 0.0, z])
            if rng.random() < 0.15:
                build_table_lamp(ObjectBuilder(scene, pos, rng.uniform(-np.pi, np.pi), cls=LAMP), rng, sup.height)
                continue
            cls = OBJECT if rng.random() < 0.75 else UNLABELLED
            build_small_object(ObjectBuilder(scene, pos, rng.uniform(-np.pi, np.pi), cls=cls), rng, sup.height)
    for _ in range(int(rng.integers(0, 4))):
        pos = np.array([rng.uniform(-room.wx + 0.3, room.wx - 0.3), 0.0, rng.uniform(room.zf + 0.3, room.zb - 0.3)])
        if np.hypot(pos[0] - cam_pos[0], pos[2] - cam_pos[2]) < 0.8:
            continue
        cls = OBJECT if rng.random() < 0.75 else UNLABELLED
        build_small_object(ObjectBuilder(scene, pos, rng.uniform(-np.pi, np.pi), cls=cls), rng, 0.0, size=1.5)
    if rng.random() < 0.4:  # rug: labelled floor, different texture
        rug = random_material(
            rng,
            random_color(rng, sat=(0.1, 0.9), val=(0.2, 0.9)),
            {"stripes": 1.0, "checker": 1.0, "noise": 1.0, "blotch": 1.0},
            scale=(2, 8),
        )
        pos = np.array([rng.uniform(-room.wx / 2, room.wx / 2), 0.0, rng.uniform(room.zf / 2 - 1, room.zf / 2 + 1)])
        b = ObjectBuilder(scene, pos, rng.uniform(-0.3, 0.3), cls=FLOOR)
        b.box([0, 0.004, 0], [rng.uniform(0.6, 1.4), 0.004, rng.uniform(0.5, 1.1)], rug, shadow=False)


def build_room(rng: np.random.Generator, height: int, width: int) -> tuple[Scene, Camera, Light, np.ndarray]:
    """Sample a room, its camera, light and ambient term."""
    room = _Room(rng)
    scene = Scene()
    _add_shell(scene, room, rng)
    _wall_items(scene, room, rng)
    cam_pos = np.array(
        [
            rng.uniform(-room.wx + 0.4, room.wx - 0.4),
            rng.uniform(1.0, 1.7),
            room.zb - rng.uniform(0.15, 0.6),
        ]
    )
    supports, placed = _add_furniture(scene, room, cam_pos, rng)
    _add_props(scene, room, supports, cam_pos, rng)
    # camera: aim at a piece of furniture in front of it (or at a point in the far half of the room)
    far = [(x, z) for x, z, _ in placed if np.hypot(x - cam_pos[0], z - cam_pos[2]) > 1.5]
    if far and rng.random() < 0.7:
        x, z = far[int(rng.integers(len(far)))]
        target = np.array([x + rng.uniform(-0.4, 0.4), 0.0, z + rng.uniform(-0.4, 0.4)])
    else:
        target = np.array([rng.uniform(-room.wx, room.wx), 0.0, rng.uniform(room.zf, room.zf / 2)])
    dx, dz = target[0] - cam_pos[0], target[2] - cam_pos[2]
    yaw = float(np.arctan2(-dx, -dz))
    pitch = -float(np.arctan2(cam_pos[1] - rng.uniform(0.2, 0.8), np.hypot(dx, dz))) + rng.uniform(-0.1, 0.1)
    pitch = float(np.clip(pitch, -0.55, -0.05))
    rot = rot_y(yaw) @ rot_x(pitch) @ rot_z(rng.uniform(-0.05, 0.05))
    fx, fy, cx, cy = nyud_intrinsics(height, width)
    camera = Camera(height, width, fx, fy, cx, cy, rot, cam_pos)
    # light: ceiling light (+ visible fixture)
    lpos = np.array(
        [rng.uniform(-room.wx * 0.7, room.wx * 0.7), room.h - 0.3, rng.uniform(room.zf * 0.8, room.zb - 0.5)]
    )
    if rng.random() < 0.6:
        b = ObjectBuilder(scene, np.array([lpos[0], room.h, lpos[2]]), 0.0, cls=LAMP)
        bulb = Material(color=hsv(rng.uniform(0.08, 0.15), rng.uniform(0.0, 0.3), 1.0), grain=0.0, emissive=True)
        if rng.random() < 0.5:
            b.ellipsoid([0, -0.12, 0], [0.2, 0.1, 0.2], bulb, shadow=False)
        else:
            b.cylinder([0, -0.04, 0], rng.uniform(0.15, 0.3), 0.04, bulb, shadow=False)
    warm = hsv(rng.uniform(0.05, 0.15), rng.uniform(0.0, 0.35), 1.0)
    light = Light(color=warm * rng.uniform(0.9, 1.4), position=lpos, falloff=rng.uniform(0.02, 0.08))
    ambient = hsv(rng.uniform(0.0, 1.0), rng.uniform(0.0, 0.15), rng.uniform(0.2, 0.45))
    return scene, camera, light, ambient


def render_nyud(rng: np.random.Generator, size: tuple[int, int]) -> dict[str, np.ndarray]:
    """Render one NYUD-like sample.

    Args:
        rng: the sample's random generator.
        size: (height, width).

    Returns:
        ``image`` uint8 HxWx3, ``semseg`` uint8 HxW (0..13), ``depth`` float32 HxW (metres, 0 = invalid),
        ``normals`` float32 HxWx3 (camera frame, zero = invalid), ``edge`` uint8 HxW {0, 1}.
    """
    height, width = size
    scene, camera, light, ambient = build_room(rng, height, width)
    hits = scene.cast(camera)
    if (hits.index < 0).any():  # cannot happen inside a closed room; guard against numerical holes
        raise RuntimeError("a primary ray left the room")
    radiance = shade(scene, hits, light, ambient)
    image = finish_image(radiance, height, width, rng)
    idx = hits.index
    semseg = scene.lookup("cls", UNLABELLED, np.uint8)[idx]
    invalid = scene.lookup("invalid", False, bool)[idx]
    depth = np.where(invalid, 0.0, hits.depth).astype(np.float32)
    normals = camera_normals(hits, camera)
    normals[invalid] = 0.0
    edge = class_edges(semseg)
    return {"image": image, "semseg": semseg, "depth": depth, "normals": normals, "edge": edge}
