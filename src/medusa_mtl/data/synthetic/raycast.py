"""Vectorised ray casting of analytic primitives (NumPy): camera, primitives, scene, shading, shadows.

Frames
------
* **World**: y up, metres. The ground / floor is the plane y = 0.
* **Camera** (the frame of the written normals): x right, y up, z towards the camera; the camera looks along
  -z. A pixel (u, v) (column, row; centre at +0.5) has the camera-frame direction
  ``((u + 0.5 - cx) / fx, -(v + 0.5 - cy) / fy, -1)``, so depth (metres along the optical axis, z-distance,
  not ray length) of a hit at ray parameter t along the *unit* direction is ``t / |d|``.

Every primitive intersects rays in its own local frame (``center`` + rotation ``rot`` whose columns are the
local axes in world coordinates); the ray parameter t is invariant under that rigid transform. Primary rays
are culled per primitive with the screen rectangle of its bounding sphere; shadow rays with a ray-sphere
distance test against each object's and each primitive's bounding sphere.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

EPS = 1e-6
INF = np.inf


def rot_x(a: float) -> np.ndarray:
    """Rotation matrix about the x axis by ``a`` radians."""
    c, s = np.cos(a), np.sin(a)
    return np.array([[1.0, 0.0, 0.0], [0.0, c, -s], [0.0, s, c]])


def rot_y(a: float) -> np.ndarray:
    """Rotation matrix about the y axis by ``a`` radians."""
    c, s = np.cos(a), np.sin(a)
    return np.array([[c, 0.0, s], [0.0, 1.0, 0.0], [-s, 0.0, c]])


def rot_z(a: float) -> np.ndarray:
    """Rotation matrix about the z axis by ``a`` radians."""
    c, s = np.cos(a), np.sin(a)
    return np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])


def frame_from_axis(axis: np.ndarray, up_hint: np.ndarray | None = None) -> np.ndarray:
    """A rotation whose local y axis (second column) is ``axis`` (normalised)."""
    y = np.asarray(axis, dtype=np.float64)
    y = y / np.linalg.norm(y)
    hint = np.array([0.0, 0.0, 1.0]) if up_hint is None else np.asarray(up_hint, dtype=np.float64)
    if abs(float(hint @ y)) > 0.95:
        hint = np.array([1.0, 0.0, 0.0]) if abs(y[0]) < 0.9 else np.array([0.0, 0.0, 1.0])
    x = _cross(y, hint)
    x /= np.sqrt(x @ x)
    z = _cross(x, y)
    return np.stack([x, y, z], axis=1)


def _cross(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Cross product of two 3-vectors (faster than ``np.cross`` for single vectors)."""
    return np.array([a[1] * b[2] - a[2] * b[1], a[2] * b[0] - a[0] * b[2], a[0] * b[1] - a[1] * b[0]])


def intrinsics_matrix(fx: float, fy: float, cx: float, cy: float) -> np.ndarray:
    """3x3 pinhole intrinsics matrix (pixel coordinates with the origin at the top-left pixel's corner)."""
    return np.array([[fx, 0.0, cx], [0.0, fy, cy], [0.0, 0.0, 1.0]])


@dataclass
class Camera:
    """Pinhole camera.

    Attributes:
        height, width: image size in pixels.
        fx, fy, cx, cy: intrinsics (pixels).
        rotation: camera-to-world rotation (columns: camera x, y, z axes in world coordinates).
        position: camera centre in world coordinates.
    """

    height: int
    width: int
    fx: float
    fy: float
    cx: float
    cy: float
    rotation: np.ndarray
    position: np.ndarray

    def directions(self) -> tuple[np.ndarray, np.ndarray]:
        """Unit world-frame ray directions (H, W, 3) and the per-pixel factor ``depth = t * factor`` (H, W)."""
        u = (np.arange(self.width) + 0.5 - self.cx) / self.fx
        v = -(np.arange(self.height) + 0.5 - self.cy) / self.fy
        d = np.empty((self.height, self.width, 3))
        d[..., 0] = u[None, :]
        d[..., 1] = v[:, None]
        d[..., 2] = -1.0
        norm = np.sqrt((d * d).sum(-1))
        d /= norm[..., None]
        world = d @ self.rotation.T
        return world, 1.0 / norm

    def to_camera(self, p: np.ndarray) -> np.ndarray:
        """World points (..., 3) to camera-frame points."""
        return (p - self.position) @ self.rotation

    def screen_rect(self, center: np.ndarray, radius: float) -> tuple[int, int, int, int] | None:
        """Conservative pixel rectangle (v0, v1, u0, u1) covering a bounding sphere; None if off-screen."""
        full = (0, self.height, 0, self.width)
        if not np.isfinite(radius):
            return full
        c = self.to_camera(np.asarray(center, dtype=np.float64))
        if c[2] + radius > -0.05:  # crosses (or is behind) the near plane
            if c[2] - radius > 0:
                return None
            return full
        corners = c[None, :] + radius * np.array(
            [[sx, sy, sz] for sx in (-1, 1) for sy in (-1, 1) for sz in (-1, 1)], dtype=np.float64
        )
        z = -corners[:, 2]
        us = self.fx * corners[:, 0] / z + self.cx - 0.5
        vs = -self.fy * corners[:, 1] / z + self.cy - 0.5
        u0 = max(int(np.floor(us.min())) - 1, 0)
        u1 = min(int(np.ceil(us.max())) + 2, self.width)
        v0 = max(int(np.floor(vs.min())) - 1, 0)
        v1 = min(int(np.ceil(vs.max())) + 2, self.height)
        if u0 >= u1 or v0 >= v1:
            return None
        return v0, v1, u0, u1


# ----------------------------------------------------------------------------------------------------
# primitives
# ----------------------------------------------------------------------------------------------------


class Primitive:
    """Base class: a solid (or a one-sided plane) with a local frame and a bounding sphere."""

    center: np.ndarray
    rot: np.ndarray
    bound_radius: float

    def _local_rays(self, o: np.ndarray, d: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Rays in the local frame, component-major: origins (3,) (shared) or (3, n), directions (3, n)."""
        rt = self.rot.T
        dl = np.dot(rt, d.T)
        ol = rt @ (o - self.center) if o.ndim == 1 else np.dot(rt, (o - self.center).T)
        return ol, dl

    def local(self, p: np.ndarray) -> np.ndarray:
        """Local-frame coordinates of world points (N, 3)."""
        return (p - self.center) @ self.rot

    def intersect(self, o: np.ndarray, d: np.ndarray) -> np.ndarray:  # pragma: no cover - abstract
        """Entry ray parameter t > EPS of rays ``o + t d`` (unit d), inf where missed."""
        raise NotImplementedError

    def local_normal(self, q: np.ndarray) -> np.ndarray:  # pragma: no cover - abstract
        """Outward unit normals (local frame) at local surface points q."""
        raise NotImplementedError

    def normal(self, p: np.ndarray, q: np.ndarray | None = None) -> np.ndarray:
        """Outward unit world normals at world surface points p (N, 3) (``q``: their local coordinates)."""
        n = self.local_normal(self.local(p) if q is None else q) @ self.rot.T
        return n / np.maximum(np.sqrt((n * n).sum(1)), 1e-12)[:, None]


class Plane(Primitive):
    """A one-sided plane (visible from the side its normal points to), infinite or a rectangle.

    The local frame has z = normal; ``half`` (hu, hv) bounds the rectangle in local x, y (inf = unbounded).
    """

    def __init__(self, center: np.ndarray, rot: np.ndarray, half: tuple[float, float] = (INF, INF)) -> None:
        self.center = np.asarray(center, dtype=np.float64)
        self.rot = np.asarray(rot, dtype=np.float64)
        self.half = half
        self.bound_radius = float(np.hypot(*half)) if np.isfinite(half[0]) and np.isfinite(half[1]) else INF

    def intersect(self, o: np.ndarray, d: np.ndarray) -> np.ndarray:
        ol, dl = self._local_rays(o, d)
        with np.errstate(divide="ignore", invalid="ignore"):
            t = -ol[2] / dl[2]
        ok = (dl[2] < -1e-9) & (t > EPS)
        if np.isfinite(self.half[0]) or np.isfinite(self.half[1]):
            x = ol[0] + t * dl[0]
            y = ol[1] + t * dl[1]
            ok &= (np.abs(x) <= self.half[0]) & (np.abs(y) <= self.half[1])
        return np.where(ok, t, INF)

    def local_normal(self, q: np.ndarray) -> np.ndarray:
        n = np.zeros_like(q)
        n[:, 2] = 1.0
        return n


class Box(Primitive):
    """An oriented box with half extents ``half`` (local x, y, z)."""

    def __init__(self, center: np.ndarray, rot: np.ndarray, half: np.ndarray) -> None:
        self.center = np.asarray(center, dtype=np.float64)
        self.rot = np.asarray(rot, dtype=np.float64)
        self.half = np.asarray(half, dtype=np.float64)
        self.bound_radius = float(np.linalg.norm(self.half))

    def intersect(self, o: np.ndarray, d: np.ndarray) -> np.ndarray:
        ol, dl = self._local_rays(o, d)
        h = self.half
        tnear = tfar = None
        with np.errstate(divide="ignore", invalid="ignore"):
            for a in range(3):  # slabs
                inv = 1.0 / dl[a]
                t1 = (-h[a] - ol[a]) * inv
                t2 = (h[a] - ol[a]) * inv
                lo = np.fmin(t1, t2)
                hi = np.fmax(t1, t2)
                if tnear is None or tfar is None:
                    tnear, tfar = lo, hi
                else:
                    np.fmax(tnear, lo, out=tnear)
                    np.fmin(tfar, hi, out=tfar)
        assert tnear is not None and tfar is not None
        ok = (tnear <= tfar) & (tnear > EPS)
        return np.where(ok, tnear, INF)

    def local_normal(self, q: np.ndarray) -> np.ndarray:
        r = np.abs(q) / self.half
        ax = np.argmax(r, axis=1)
        n = np.zeros_like(q)
        idx = np.arange(q.shape[0])
        n[idx, ax] = np.sign(q[idx, ax])
        n[idx, ax] = np.where(n[idx, ax] == 0, 1.0, n[idx, ax])
        return n


class Ellipsoid(Primitive):
    """An oriented ellipsoid with radii ``radii`` (a sphere when all are equal)."""

    def __init__(self, center: np.ndarray, rot: np.ndarray, radii: np.ndarray | float) -> None:
        self.center = np.asarray(center, dtype=np.float64)
        self.rot = np.asarray(rot, dtype=np.float64)
        self.radii = np.broadcast_to(np.asarray(radii, dtype=np.float64), (3,)).copy()
        self.bound_radius = float(self.radii.max())

    def intersect(self, o: np.ndarray, d: np.ndarray) -> np.ndarray:
        ol, dl = self._local_rays(o, d)
        r0, r1, r2 = self.radii
        ox, oy, oz = ol[0] / r0, ol[1] / r1, ol[2] / r2
        dx, dy, dz = dl[0] / r0, dl[1] / r1, dl[2] / r2
        a = dx * dx + dy * dy + dz * dz
        b = ox * dx + oy * dy + oz * dz
        c = ox * ox + oy * oy + oz * oz - 1.0
        disc = b * b - a * c
        with np.errstate(invalid="ignore"):
            t = (-b - np.sqrt(disc)) / a
        ok = (disc >= 0) & (t > EPS)
        return np.where(ok, t, INF)

    def local_normal(self, q: np.ndarray) -> np.ndarray:
        return q / (self.radii * self.radii)


class Cylinder(Primitive):
    """A capped cylinder around the local y axis (radius, half height)."""

    def __init__(self, center: np.ndarray, rot: np.ndarray, radius: float, half_height: float) -> None:
        self.center = np.asarray(center, dtype=np.float64)
        self.rot = np.asarray(rot, dtype=np.float64)
        self.radius = float(radius)
        self.hh = float(half_height)
        self.bound_radius = float(np.hypot(radius, half_height))

    def intersect(self, o: np.ndarray, d: np.ndarray) -> np.ndarray:
        ol, dl = self._local_rays(o, d)
        ox, oy, oz = ol[0], ol[1], ol[2]
        dx, dy, dz = dl[0], dl[1], dl[2]
        a = dx * dx + dz * dz
        b = ox * dx + oz * dz
        c = ox * ox + oz * oz - self.radius**2
        disc = b * b - a * c
        with np.errstate(invalid="ignore", divide="ignore"):
            ts = (-b - np.sqrt(disc)) / a
            ys = oy + ts * dy
            side_ok = (disc >= 0) & (a > 1e-12) & (ts > EPS) & (np.abs(ys) <= self.hh)
            tc = (np.where(dy < 0, self.hh, -self.hh) - oy) / dy
            xc = ox + tc * dx
            zc = oz + tc * dz
            cap_ok = (np.abs(dy) > 1e-12) & (tc > EPS) & (xc * xc + zc * zc <= self.radius**2)
        t = np.where(side_ok, ts, INF)
        return np.where(cap_ok & (tc < t), tc, t)

    def local_normal(self, q: np.ndarray) -> np.ndarray:
        rad = np.sqrt(q[:, 0] ** 2 + q[:, 2] ** 2)
        cap = np.abs(np.abs(q[:, 1]) - self.hh) < np.abs(rad - self.radius)
        n = np.zeros_like(q)
        n[:, 0] = np.where(cap, 0.0, q[:, 0])
        n[:, 2] = np.where(cap, 0.0, q[:, 2])
        n[:, 1] = np.where(cap, np.sign(q[:, 1]), 0.0)
        return n


class Capsule(Primitive):
    """A capsule (swept sphere) around the segment a-b with radius r."""

    def __init__(self, a: np.ndarray, b: np.ndarray, radius: float) -> None:
        a = np.asarray(a, dtype=np.float64)
        b = np.asarray(b, dtype=np.float64)
        axis = b - a
        length = float(np.linalg.norm(axis))
        if length < 1e-9:
            axis, length = np.array([0.0, 1.0, 0.0]), 0.0
        self.center = 0.5 * (a + b)
        self.rot = frame_from_axis(axis)
        self.radius = float(radius)
        self.hh = 0.5 * length
        self.bound_radius = self.hh + self.radius

    def intersect(self, o: np.ndarray, d: np.ndarray) -> np.ndarray:
        ol, dl = self._local_rays(o, d)
        ox, oy, oz = ol[0], ol[1], ol[2]
        dx, dy, dz = dl[0], dl[1], dl[2]
        r2 = self.radius**2
        a = dx * dx + dz * dz
        b = ox * dx + oz * dz
        c = ox * ox + oz * oz - r2
        disc = b * b - a * c
        with np.errstate(invalid="ignore", divide="ignore"):
            ts = (-b - np.sqrt(disc)) / a
            ys = oy + ts * dy
        t = np.where((disc >= 0) & (a > 1e-12) & (ts > EPS) & (np.abs(ys) <= self.hh), ts, INF)
        for cy in (-self.hh, self.hh):
            py = oy - cy
            bb = ox * dx + py * dy + oz * dz
            cc = ox * ox + py * py + oz * oz - r2
            dd = bb * bb - cc
            with np.errstate(invalid="ignore"):
                tt = -bb - np.sqrt(dd)
            t = np.where((dd >= 0) & (tt > EPS) & (tt < t), tt, t)
        return t

    def local_normal(self, q: np.ndarray) -> np.ndarray:
        n = q.copy()
        n[:, 1] = q[:, 1] - np.clip(q[:, 1], -self.hh, self.hh)
        return n


# ----------------------------------------------------------------------------------------------------
# scene
# ----------------------------------------------------------------------------------------------------


@dataclass
class Hits:
    """Result of casting the primary rays.

    Attributes:
        index: primitive index per pixel (H, W), -1 where no primitive was hit.
        depth: z-depth (H, W), inf where nothing was hit.
        points: world hit points (H*W, 3) (meaningless where index = -1).
        normals: world unit normals facing the camera (H*W, 3), zero where index = -1.
        local: local-frame hit coordinates of the hit primitive (H*W, 3).
        dirs: unit world ray directions (H*W, 3).
        pixels_of: flat pixel indices per hit primitive index.
    """

    index: np.ndarray
    depth: np.ndarray
    points: np.ndarray
    normals: np.ndarray
    local: np.ndarray
    dirs: np.ndarray
    pixels_of: dict[int, np.ndarray]


@dataclass
class Scene:
    """A list of primitives with per-primitive attributes and object groups.

    Attributes:
        prims: the primitives.
        info: one dict of attributes per primitive (class ids, material, part name, ...).
        group_of: object group id of each primitive (shadow culling and instances).
    """

    prims: list[Primitive] = field(default_factory=list)
    info: list[dict[str, Any]] = field(default_factory=list)
    group_of: list[int] = field(default_factory=list)
    _next_group: int = 0

    def new_group(self) -> int:
        """A fresh object group id."""
        g = self._next_group
        self._next_group += 1
        return g

    def add(self, prim: Primitive, group: int, **info: Any) -> int:
        """Add a primitive to ``group`` with attributes ``info``; returns its index."""
        self.prims.append(prim)
        self.info.append(info)
        self.group_of.append(group)
        return len(self.prims) - 1

    def lookup(self, key: str, default: Any, dtype: Any = None) -> np.ndarray:
        """Array of ``info[key]`` per primitive with one extra last entry ``default`` (index -1 = no hit)."""
        vals = [inf.get(key, default) for inf in self.info] + [default]
        return np.array(vals, dtype=dtype)

    def cast(self, camera: Camera) -> Hits:
        """Cast one primary ray per pixel; nearest hit wins."""
        H, W = camera.height, camera.width
        dirs, zfac = camera.directions()
        tbuf = np.full((H, W), INF)
        ibuf = np.full((H, W), -1, dtype=np.int32)
        o = camera.position
        for k, prim in enumerate(self.prims):
            rect = camera.screen_rect(prim.center, prim.bound_radius)
            if rect is None:
                continue
            v0, v1, u0, u1 = rect
            dsub = dirs[v0:v1, u0:u1].reshape(-1, 3)
            t = prim.intersect(o, dsub).reshape(v1 - v0, u1 - u0)
            tsub = tbuf[v0:v1, u0:u1]
            closer = t < tsub
            if closer.any():
                tsub[closer] = t[closer]
                ibuf[v0:v1, u0:u1][closer] = k
        flat_d = dirs.reshape(-1, 3)
        flat_t = tbuf.reshape(-1)
        flat_i = ibuf.reshape(-1)
        hit = flat_i >= 0
        points = np.zeros_like(flat_d)
        points[hit] = o + flat_t[hit, None] * flat_d[hit]
        normals = np.zeros_like(flat_d)
        local = np.zeros_like(flat_d)
        order = np.argsort(flat_i, kind="stable")
        sorted_i = flat_i[order]
        starts = np.flatnonzero(np.r_[True, sorted_i[1:] != sorted_i[:-1]])
        ends = np.r_[starts[1:], sorted_i.size]
        pixels_of: dict[int, np.ndarray] = {}
        for a, b in zip(starts, ends):
            k = int(sorted_i[a])
            if k < 0:
                continue
            sel = order[a:b]
            pixels_of[k] = sel
            prim = self.prims[k]
            q = prim.local(points[sel])
            local[sel] = q
            normals[sel] = prim.normal(points[sel], q)
        facing = (normals * flat_d).sum(1) > 0
        normals[facing] *= -1.0
        depth = tbuf * zfac
        return Hits(ibuf, depth, points, normals, local, flat_d, pixels_of)

    def _caster_groups(self) -> list[tuple[np.ndarray, float, list[int]]]:
        """Shadow-casting primitives by object group: (group centre, group radius, primitive indices)."""
        groups: dict[int, list[int]] = {}
        for k, g in enumerate(self.group_of):
            if self.info[k].get("shadow", True) and np.isfinite(self.prims[k].bound_radius):
                groups.setdefault(g, []).append(k)
        out = []
        for members in groups.values():
            centers = np.array([self.prims[k].center for k in members])
            radii = np.array([self.prims[k].bound_radius for k in members])
            gc = centers.mean(0)
            gr = float((np.linalg.norm(centers - gc, axis=1) + radii).max())
            out.append((gc, gr, members))
        return out

    def occluded_directional(self, origins: np.ndarray, direction: np.ndarray) -> np.ndarray:
        """Boolean (N,): whether rays from ``origins`` (N, 3) along the unit ``direction`` hit a shadow caster.

        Culling: points and bounding spheres are expressed in a frame (u, v, s) with s along the direction;
        points are sorted by u so each sphere's candidates are a contiguous slice, then filtered on v and s.
        """
        n = origins.shape[0]
        blocked = np.zeros(n, dtype=bool)
        if n == 0:
            return blocked
        frame = frame_from_axis(direction)
        e1, e2, ed = frame[:, 0], frame[:, 2], frame[:, 1]
        pu, pv, ps = origins @ e1, origins @ e2, origins @ ed
        order = np.argsort(pu, kind="stable")
        pu_sorted = pu[order]
        for gc, gr, members in self._caster_groups():
            cu, cv, cs = float(gc @ e1), float(gc @ e2), float(gc @ ed)
            lo, hi = np.searchsorted(pu_sorted, (cu - gr, cu + gr))
            cand = order[lo:hi]
            cand = cand[(np.abs(pv[cand] - cv) <= gr) & (ps[cand] < cs + gr)]
            for k in members:
                sub = cand[~blocked[cand]]
                if sub.size == 0:
                    break
                prim = self.prims[k]
                c, r = prim.center, prim.bound_radius
                sub = sub[(np.abs(pu[sub] - c @ e1) <= r) & (np.abs(pv[sub] - c @ e2) <= r) & (ps[sub] < c @ ed + r)]
                if sub.size == 0:
                    continue
                t = prim.intersect(origins[sub], np.broadcast_to(direction, (sub.size, 3)))
                blocked[sub[np.isfinite(t)]] = True
        return blocked

    def occluded_from_point(self, light: np.ndarray, targets: np.ndarray) -> np.ndarray:
        """Boolean (N,): whether the segment from the point ``light`` to each target (N, 3) hits a caster.

        Rays start at the light (a shared origin) and end at the targets (already offset from their
        surfaces). Culling: a cone test against each bounding sphere on targets sorted by azimuth.
        """
        n = targets.shape[0]
        blocked = np.zeros(n, dtype=bool)
        if n == 0:
            return blocked
        light = np.asarray(light, dtype=np.float64)
        vec = targets - light
        dist = np.sqrt((vec * vec).sum(1))
        dirs = vec / np.maximum(dist, 1e-12)[:, None]
        az = np.arctan2(dirs[:, 2], dirs[:, 0])
        order = np.argsort(az, kind="stable")
        az_sorted = az[order]

        def cone(c: np.ndarray, r: float, idx: np.ndarray | None) -> np.ndarray:
            oc = c - light
            dc = float(np.linalg.norm(oc))
            if idx is None:
                if dc <= r:
                    return np.arange(n)
                sin_a = r / dc
                cos_e = float(np.hypot(oc[0], oc[2])) / dc
                if cos_e <= sin_a + 1e-9:
                    idx = np.arange(n)
                else:
                    half = float(np.arcsin(min(1.0, sin_a / cos_e))) + 1e-6
                    caz = float(np.arctan2(oc[2], oc[0]))
                    parts = []
                    for lo_a, hi_a in (
                        (caz - half, caz + half),
                        (caz - half + 2 * np.pi, caz + half + 2 * np.pi),
                        (caz - half - 2 * np.pi, caz + half - 2 * np.pi),
                    ):
                        lo, hi = np.searchsorted(az_sorted, (lo_a, hi_a))
                        if hi > lo:
                            parts.append(order[lo:hi])
                    idx = np.concatenate(parts) if parts else np.zeros(0, dtype=np.int64)
            elif dc <= r:
                return idx
            cos_lim = np.sqrt(max(dc * dc - r * r, 0.0))
            keep = (dirs[idx] @ oc >= cos_lim - 1e-9) & (dist[idx] > dc - r)
            return idx[keep]

        for gc, gr, members in self._caster_groups():
            cand = cone(gc, gr, None)
            for k in members:
                sub = cand[~blocked[cand]]
                if sub.size == 0:
                    break
                prim = self.prims[k]
                sub = cone(prim.center, prim.bound_radius, sub)
                if sub.size == 0:
                    continue
                t = prim.intersect(light, dirs[sub])
                blocked[sub[t < dist[sub]]] = True
        return blocked
