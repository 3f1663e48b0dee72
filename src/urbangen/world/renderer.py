"""Render a scene in the ``sim`` style (the cheap synthetic source) or a ``real`` style (the target).

Both renderers read the same scene buffers (labels, material parts, object ids, surface coordinates and
orientation, depth), so a layout rendered twice differs only in appearance: exactly the gap a domain
adaptation method has to close. Helpers shared by both renderers live here.
"""

from __future__ import annotations

import numpy as np

from urbangen.errors import UrbangenError
from urbangen.world.geometry import SURF_FRONT, SURF_GROUND, SURF_NEG_X, SURF_POS_X, SURF_ROUND
from urbangen.world.layout import Scene

STYLES = ("sim", "real")


def render(scene: Scene, style: str, style_seed: int = 0) -> np.ndarray:
    """An HxWx3 uint8 image of ``scene``. ``style_seed`` picks the ``real`` domain; ``sim`` ignores it
    (the synthetic source has one fixed look)."""
    if style == "sim":
        from urbangen.world.render_sim import render_sim

        return render_sim(scene)
    if style == "real":
        from urbangen.world.render_real import render_real

        return render_real(scene, style_seed)
    raise UrbangenError(f"unknown style {style!r}; expected one of {STYLES}")


def object_array(scene: Scene, name: str, dtype=np.float32) -> np.ndarray:
    """One attribute of every object as an array (length ``len(scene.objects)``, at least 1)."""
    values = [getattr(o, name) for o in scene.objects] or [0]
    return np.asarray(values, dtype=dtype)


def per_object(scene: Scene, table: np.ndarray, fallback: np.ndarray) -> np.ndarray:
    """Per-pixel lookup of a per-object table; pixels of no object (ground, sky) take ``fallback``."""
    has = scene.obj >= 0
    picked = table[np.maximum(scene.obj, 0)]
    mask = has.reshape(has.shape + (1,) * (picked.ndim - has.ndim))
    return np.where(mask, picked, fallback)


def normals(scene: Scene) -> np.ndarray:
    """Per-pixel unit surface normal (X right, Y up, Z ahead); round things bulge towards the camera."""
    table = np.zeros((256, 3), np.float32)
    table[[SURF_GROUND, SURF_POS_X, SURF_NEG_X, SURF_FRONT]] = [(0, 1, 0), (1, 0, 0), (-1, 0, 0), (0, 0, -1)]
    n = table[scene.surface]
    round_ = np.nonzero(scene.surface == SURF_ROUND)
    if len(round_[0]):
        obj = scene.obj[round_]
        x = object_array(scene, "x")[obj]
        half = object_array(scene, "width")[obj] / 2 + 1e-3
        a = np.clip((scene.u[round_] - x) / half, -0.95, 0.95)
        n[round_] = np.stack([a, np.zeros_like(a), -np.sqrt(1 - a * a)], axis=1)
    return n


def sky_gradient(scene: Scene, horizon: np.ndarray, top: np.ndarray) -> np.ndarray:
    """A vertical sky colour ramp from ``horizon`` (at the horizon row) to ``top`` (about 35 degrees up)."""
    cam = scene.camera
    rows = np.arange(cam.height, dtype=np.float32) + 0.5
    t = np.clip((cam.horizon - rows) / (0.7 * cam.focal), 0, 1) ** 0.7
    ramp = horizon[None, :] * (1 - t[:, None]) + top[None, :] * t[:, None]
    return np.broadcast_to(ramp[:, None, :], (cam.height, cam.width, 3))
