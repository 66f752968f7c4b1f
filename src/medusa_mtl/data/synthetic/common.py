"""Shading, image finishing and label helpers shared by the two domains."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from .raycast import Camera, Hits, Scene

SHADOW_OFFSET = 2e-3
"""Shadow-ray origins are moved this far (metres) along the surface normal."""


@dataclass
class Light:
    """A point light (``position``) or a directional light (``direction`` towards the light).

    Attributes:
        color: RGB intensity.
        position: world position of a point light, or None.
        direction: unit world direction towards a directional light, or None.
        falloff: point light irradiance factor ``1 / (1 + falloff * d^2)``.
    """

    color: np.ndarray
    position: np.ndarray | None = None
    direction: np.ndarray | None = None
    falloff: float = 0.0


def shade(
    scene: Scene,
    hits: Hits,
    light: Light,
    ambient: np.ndarray,
    background: Callable[[np.ndarray], np.ndarray] | None = None,
    shadows: bool = True,
) -> np.ndarray:
    """Lambertian shading with one light, an ambient term and cast shadows.

    Args:
        scene: the scene the hits come from (``info["material"]`` per primitive).
        hits: primary hits.
        light: the light.
        ambient: RGB ambient irradiance.
        background: colour (N, 3) of rays that hit nothing, from their unit directions (N, 3).
        shadows: cast shadow rays.

    Returns:
        Linear RGB radiance, (H*W, 3).
    """
    idx = hits.index.reshape(-1)
    n_pix = idx.shape[0]
    albedo = np.zeros((n_pix, 3))
    emissive: list[np.ndarray] = []
    for k, sel in hits.pixels_of.items():
        mat = scene.info[k]["material"]
        albedo[sel] = mat.albedo(hits.local[sel])
        if mat.emissive:
            emissive.append(sel)
    pts = hits.points
    nrm = hits.normals  # zero where nothing was hit, so lam = 0 there
    if light.position is not None:
        to_l = light.position - pts
        dist = np.sqrt((to_l * to_l).sum(1))
        lam = (nrm * to_l).sum(1) / np.maximum(dist, 1e-9)
        np.clip(lam, 0.0, None, out=lam)
        lam *= 1.0 / (1.0 + light.falloff * dist * dist)
    else:
        assert light.direction is not None
        lam = np.clip(nrm @ light.direction, 0.0, None)
    for sel in emissive:
        lam[sel] = 0.0
    if shadows:
        front = np.flatnonzero(lam > 0)
        origins = pts[front] + SHADOW_OFFSET * nrm[front]
        if light.position is not None:
            blocked = scene.occluded_from_point(light.position, origins)
        else:
            blocked = scene.occluded_directional(origins, light.direction)
        lam[front[blocked]] = 0.0
    radiance = albedo * (ambient[None, :] + lam[:, None] * light.color[None, :])
    for sel in emissive:
        radiance[sel] = albedo[sel]
    if background is not None:
        miss = np.flatnonzero(idx < 0)
        if miss.size:
            radiance[miss] = background(hits.dirs[miss])
    return radiance


def finish_image(radiance: np.ndarray, height: int, width: int, rng: np.random.Generator) -> np.ndarray:
    """Camera response: exposure, white balance, gamma, vignetting, sensor noise; uint8 (H, W, 3)."""
    img = radiance.reshape(height, width, 3)
    exposure = rng.uniform(0.8, 1.25)
    wb = 1.0 + rng.uniform(-0.08, 0.08, size=3)
    img = img * exposure * wb
    yy, xx = np.mgrid[0:height, 0:width]
    r2 = ((yy - height / 2) / height) ** 2 + ((xx - width / 2) / width) ** 2
    img = img * (1.0 - rng.uniform(0.0, 0.5) * r2)[..., None]
    img = np.clip(img, 0.0, None) ** rng.uniform(0.85, 1.1)
    sigma = rng.uniform(0.004, 0.02)
    img = img + rng.normal(0.0, sigma, size=img.shape)
    return np.clip(np.round(img * 255.0), 0, 255).astype(np.uint8)


def class_edges(label: np.ndarray) -> np.ndarray:
    """1-px boundaries of a label map: 1 where a pixel's label differs from its right or lower neighbour."""
    e = np.zeros(label.shape, dtype=np.uint8)
    e[:, :-1] |= (label[:, :-1] != label[:, 1:]).astype(np.uint8)
    e[:-1, :] |= (label[:-1, :] != label[1:, :]).astype(np.uint8)
    return e


def camera_normals(hits: Hits, camera: Camera) -> np.ndarray:
    """Hit normals in the camera frame (x right, y up, z towards the camera), (H, W, 3) float32."""
    n = hits.normals @ camera.rotation
    return n.reshape(camera.height, camera.width, 3).astype(np.float32)
