"""Pinhole street camera, a z-buffered canvas and the two planar primitives every scene is drawn from.

A scene is a ground plane plus vertical planes: *side* planes run along the street (facades, fences,
the flanks of vehicles) and *frontal* planes face the camera (the backs of vehicles, people, poles,
signs, trees). Each primitive is evaluated only inside its screen bounding box, with numpy broadcasting,
and written into the canvas where it is nearer than what is already there, so drawing order never
matters and occlusion follows depth.

Coordinates: X metres to the right of the camera, Z metres ahead (the depth stored in scenes), V metres
above the ground. Every drawn pixel also keeps surface coordinates (u, v) in metres, so renderers can lay
textures in perspective (bricks shrink with distance) without knowing which primitive drew the pixel.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import cache

import numpy as np

SKY_DEPTH = 1000.0  # metres given to sky pixels (depth files clip it to their largest value)
NEAR = 0.5  # nothing is drawn closer than this (metres)

# which way a pixel's surface faces; renderers shade by it
SURF_SKY, SURF_GROUND, SURF_POS_X, SURF_NEG_X, SURF_FRONT, SURF_ROUND = range(6)

# material sub-parts inside a class: labels never see them, renderers colour them
(
    PART_NONE,
    PART_LANE,
    PART_CURB,
    PART_WINDOW,
    PART_DOOR,
    PART_CORNICE,
    PART_GLASS,
    PART_WHEEL,
    PART_LAMP_RED,
    PART_LAMP_AMBER,
    PART_LAMP_GREEN,
    PART_LAMP_WHITE,
    PART_PLATE,
    PART_SKIN,
    PART_TOP,
    PART_BOTTOM,
    PART_TRUNK,
    PART_SIGN_RIM,
    PART_BAR,
    PART_CAP,
    PART_HOUSING,
) = range(21)
NUM_PARTS = 21

THING_CLASSES = ("person", "rider", "car", "truck", "bus", "train", "motorcycle", "bicycle")


@cache
def class_ids() -> dict[str, int]:
    """Cityscapes labelIds of the 19 training classes, from the official ``cityscapesscripts`` table."""
    from cityscapesscripts.helpers.labels import labels

    return {lab.name: lab.id for lab in labels if 0 <= lab.trainId < 255}


@dataclass(frozen=True)
class Camera:
    """A level pinhole camera ``cam_height`` metres above a flat ground; ``horizon`` is a pixel row."""

    height: int
    width: int
    focal: float
    cx: float
    horizon: float
    cam_height: float

    def col(self, x: float, z: float) -> float:
        return self.cx + self.focal * x / z

    def row(self, v: float, z: float) -> float:
        return self.horizon + self.focal * (self.cam_height - v) / z

    def to_dict(self) -> dict[str, float]:
        return {k: float(getattr(self, k)) for k in ("height", "width", "focal", "cx", "horizon", "cam_height")}


@dataclass
class Canvas:
    """Per-pixel buffers of a scene under construction; :meth:`paint` writes where a primitive is nearer."""

    cam: Camera

    def __post_init__(self) -> None:
        shape = (self.cam.height, self.cam.width)
        self.depth = np.full(shape, SKY_DEPTH, np.float32)
        self.label = np.full(shape, class_ids()["sky"], np.uint8)
        self.instance = np.zeros(shape, np.int32)
        self.part = np.zeros(shape, np.uint8)
        self.obj = np.full(shape, -1, np.int32)
        self.u = np.zeros(shape, np.float32)
        self.v = np.zeros(shape, np.float32)
        self.surface = np.zeros(shape, np.uint8)

    def paint(self, region: Region, mask: np.ndarray, label: int, part: object, obj: int, surface: int, inst=0):
        """Write one primitive inside ``region`` where ``mask`` holds and it is nearer than the canvas."""
        rows, cols = region.rows, region.cols
        depth = self.depth[rows, cols]
        win = mask & region.valid & (region.depth < depth)
        if not win.any():
            return
        np.copyto(depth, region.depth, where=win, casting="unsafe")
        for buffer, value in (
            (self.label, label),
            (self.instance, inst),
            (self.part, part),
            (self.obj, obj),
            (self.u, region.u),
            (self.v, region.v),
            (self.surface, surface),
        ):
            np.copyto(buffer[rows, cols], value, where=win, casting="unsafe")


@dataclass
class Region:
    """A primitive's screen box and its per-pixel plane coordinates (broadcastable arrays, metres).

    ``u``/``v`` are the surface coordinates (along the plane, height above ground); ``depth`` is Z.
    """

    rows: slice
    cols: slice
    u: np.ndarray
    v: np.ndarray
    depth: np.ndarray | float
    valid: np.ndarray | bool = True


def _span(lo: float, hi: float, limit: int) -> slice | None:
    a, b = max(0, math.floor(min(lo, hi))), min(limit, math.ceil(max(lo, hi)))
    return slice(a, b) if b > a else None


def frontal(cam: Camera, z: float, x0: float, x1: float, v0: float, v1: float) -> Region | None:
    """A camera-facing rectangle at depth ``z`` spanning lateral ``x0..x1`` and heights ``v0..v1``."""
    if z < NEAR:
        return None
    cols = _span(cam.col(x0, z), cam.col(x1, z), cam.width)
    rows = _span(cam.row(v1, z), cam.row(v0, z), cam.height)
    if cols is None or rows is None:
        return None
    scale = z / cam.focal
    u = ((np.arange(cols.start, cols.stop, dtype=np.float32) + 0.5 - cam.cx) * scale)[None, :]
    v = (cam.cam_height - (np.arange(rows.start, rows.stop, dtype=np.float32) + 0.5 - cam.horizon) * scale)[:, None]
    return Region(rows, cols, u, v, np.float32(z))


def side(cam: Camera, x: float, z0: float, z1: float, v0: float, v1: float) -> Region | None:
    """A plane along the street at lateral ``x`` from depth ``z0`` to ``z1`` and heights ``v0..v1``.

    ``u`` is the depth along the plane (Z), ``v`` the height; ``valid`` marks pixels inside the rectangle.
    """
    z0 = max(z0, NEAR)
    if z1 <= z0 or abs(x) < 0.05:
        return None
    cols = _span(cam.col(x, z0), cam.col(x, z1), cam.width)
    if cols is None:
        return None
    tops = [cam.row(v1, z) for z in (z0, z1)]
    bottoms = [cam.row(v0, z) for z in (z0, z1)]
    rows = _span(min(tops), max(bottoms), cam.height)
    if rows is None:
        return None
    dx = np.arange(cols.start, cols.stop, dtype=np.float32) + 0.5 - cam.cx
    with np.errstate(divide="ignore"):
        z = np.where(dx * x > 0, cam.focal * x / dx, np.inf).astype(np.float32)[None, :]
    dy = (np.arange(rows.start, rows.stop, dtype=np.float32) + 0.5 - cam.horizon)[:, None]
    v = cam.cam_height - dy * z / cam.focal
    valid = (z >= z0) & (z <= z1) & (v >= v0) & (v <= v1)
    return Region(rows, cols, z, v, z, valid)


def ground(cam: Camera) -> Region | None:
    """Every pixel below the horizon as a point on the ground: ``u`` = X (lateral), ``v`` = Z (depth)."""
    first = max(0, math.floor(cam.horizon + 0.5))
    if first >= cam.height:
        return None
    dy = np.arange(first, cam.height, dtype=np.float32) + 0.5 - cam.horizon
    z = np.minimum(cam.focal * cam.cam_height / np.maximum(dy, 1e-3), SKY_DEPTH * 0.9)[:, None]
    x = (np.arange(cam.width, dtype=np.float32) + 0.5 - cam.cx)[None, :] * z / cam.focal
    return Region(slice(first, cam.height), slice(0, cam.width), x, np.broadcast_to(z, x.shape), z)
