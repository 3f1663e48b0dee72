"""Procedural street scenes: a layout as a person would sketch it, with labels, instances and depth.

:func:`make_scene` plans a street from one seed (camera, lanes, sidewalks, a row of facade segments on
each side, maybe an intersection, traffic, people and street furniture) and draws it with the planar
primitives of :mod:`urbangen.world.geometry` into a z-buffered canvas. Everything random comes from one
``numpy.random.Generator`` seeded with the scene seed, so a seed always gives the same scene.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from urbangen.errors import UrbangenError
from urbangen.world import shapes
from urbangen.world.geometry import (
    PART_CURB,
    PART_LANE,
    PART_NONE,
    SURF_FRONT,
    SURF_GROUND,
    SURF_NEG_X,
    SURF_POS_X,
    THING_CLASSES,
    Camera,
    Canvas,
    Region,
    class_ids,
    frontal,
    ground,
    side,
)


@dataclass(frozen=True)
class WorldObject:
    """One drawn object (a thing, a facade segment, a pole...); ``key`` seeds its per-object look."""

    index: int
    cls: str
    kind: str
    instance_id: int
    x: float
    z: float
    width: float
    height: float
    length: float
    key: int

    @property
    def label_id(self) -> int:
        return class_ids()[self.cls]


@dataclass(frozen=True)
class Scene:
    """A drawn scene. ``label_ids`` are Cityscapes labelIds, ``instance_ids`` use Cityscapes' encoding
    (stuff pixels hold their label id, instances ``label_id * 1000 + k``), ``depth`` is metres along the
    optical axis (sky: ``SKY_DEPTH``). ``part``/``obj``/``u``/``v``/``surface`` are what renderers need:
    material part, index into ``objects`` (-1: ground or sky), surface coordinates and orientation.
    ``skyline`` gives, per side, the facade line and the heights of what stands on it (for shadows)."""

    seed: int
    camera: Camera
    label_ids: np.ndarray
    instance_ids: np.ndarray
    depth: np.ndarray
    part: np.ndarray
    obj: np.ndarray
    u: np.ndarray
    v: np.ndarray
    surface: np.ndarray
    objects: tuple[WorldObject, ...]
    skyline: dict[str, dict[str, Any]] = field(default_factory=dict)

    def meta(self) -> dict[str, Any]:
        return {"seed": self.seed, "camera": self.camera.to_dict(), "objects": [asdict(o) for o in self.objects]}


@dataclass
class Builder:
    """Draws objects into the canvas and keeps the object list and per-class instance counters."""

    canvas: Canvas
    rng: np.random.Generator
    objects: list[WorldObject] = field(default_factory=list)
    counters: dict[str, int] = field(default_factory=dict)

    @property
    def cam(self) -> Camera:
        return self.canvas.cam

    def add(self, cls: str, kind: str, x: float, z: float, w: float, h: float, length: float = 0.0) -> WorldObject:
        instance = 0
        if cls in THING_CLASSES:
            k = self.counters.get(cls, 0)
            self.counters[cls] = k + 1
            instance = class_ids()[cls] * 1000 + k
        obj = WorldObject(len(self.objects), cls, kind, instance, x, z, w, h, length, int(self.rng.integers(1 << 30)))
        self.objects.append(obj)
        return obj

    def draw(self, obj: WorldObject, region: Region | None, shape: tuple, surface: int, cls: str | None = None):
        """Paint ``shape`` (mask, part) over ``region`` as ``obj`` (or as class ``cls``, same object)."""
        if region is None:
            return
        mask, part = shape
        label = class_ids()[cls or obj.cls]
        instance = obj.instance_id if (cls or obj.cls) == obj.cls else 0
        self.canvas.paint(region, mask, label, part, obj.index, surface, instance)


@dataclass
class Segment:
    """A stretch of one side of the street between depths ``z0`` and ``z1``."""

    z0: float
    z1: float
    kind: str  # building, wall, fence, hedge, open, gap
    height: float
    back: str = "none"  # what stands behind a low front: building, vegetation or none
    back_height: float = 0.0
    setback: float = 0.0


@dataclass
class Street:
    lane: float
    lanes: int
    lane_left: float  # lateral position of the left edge of the driving lanes
    oncoming: int  # how many lanes (from the left) carry oncoming traffic
    road: tuple[float, float]
    verge: tuple[float, float]
    walk: tuple[float, float]
    facade: tuple[float, float]  # lateral facade lines, left (negative) and right
    crossing: tuple[float, float] | None
    end: float
    end_height: float
    segments: tuple[list[Segment], list[Segment]]


def _facade_style(rng: np.random.Generator) -> dict[str, float]:
    return {
        "floor": float(rng.uniform(2.8, 3.8)),
        "period": float(rng.uniform(2.2, 4.2)),
        "width": float(rng.uniform(0.8, 1.6)),
        "offset": float(rng.uniform(0, 4)),
        "shop": float(rng.random() < 0.5),
    }


def plan_street(rng: np.random.Generator) -> Street:
    """Random street geometry: lanes, sidewalks, facade segments per side, crossing and street end."""
    lane = float(rng.uniform(2.8, 3.6))
    lanes = int(rng.choice([1, 2, 2, 3, 4]))
    cam_lane = int(rng.integers(lanes))
    left = -(cam_lane + 0.5) * lane + float(rng.uniform(-0.4, 0.4))
    road = (left - 2.2 * (rng.random() < 0.5), left + lanes * lane + 2.2 * (rng.random() < 0.5))
    oncoming = lanes // 2 if lanes > 1 and rng.random() < 0.6 else 0
    verge = tuple(float(rng.uniform(1.0, 3.0)) if rng.random() < 0.3 else 0.0 for _ in range(2))
    walk = tuple(float(rng.uniform(1.5, 5.0)) for _ in range(2))
    facade = (road[0] - verge[0] - walk[0], road[1] + verge[1] + walk[1])
    crossing = None
    if rng.random() < 0.5:
        start = float(rng.uniform(12, 45))
        crossing = (start, start + float(rng.uniform(10, 18)))
    end = float(rng.uniform(60, 220))
    end_height = float(rng.uniform(8, 30)) if rng.random() < 0.5 else 0.0
    segments = ([], [])
    kinds = ["building", "wall", "fence", "hedge", "open"]
    for side_segments in segments:
        z = 0.0
        while z < end:
            z1 = z + float(rng.uniform(6, 30))
            kind = str(rng.choice(kinds, p=[0.58, 0.1, 0.1, 0.12, 0.1]))
            if crossing and z1 > crossing[0] and z < crossing[1]:
                if z < crossing[0]:
                    z1 = crossing[0]
                else:
                    z, z1, kind = crossing[0], crossing[1], "gap"
            height = {"building": rng.uniform(6, 28), "wall": rng.uniform(0.8, 2.5), "fence": rng.uniform(1.0, 2.2)}
            seg = Segment(z, z1, kind, float(height.get(kind, rng.uniform(1.0, 3.0))))
            if kind in ("wall", "fence", "hedge", "open"):
                seg.back = str(rng.choice(["building", "vegetation", "none"], p=[0.4, 0.45, 0.15]))
                seg.back_height = float(rng.uniform(6, 20) if seg.back == "building" else rng.uniform(3, 12))
                seg.setback = float(rng.uniform(3, 20))
            side_segments.append(seg)
            z = z1
    return Street(lane, lanes, left, oncoming, road, verge, walk, facade, crossing, end, end_height, segments)


def _outer_ground(street: Street, sgn: int) -> tuple[np.ndarray, np.ndarray]:
    """Segment boundaries on one side and the ground class beyond its facade line, per segment."""
    ids = class_ids()
    segs = street.segments[0 if sgn < 0 else 1]
    bounds = np.array([s.z1 for s in segs], np.float32)
    pick = {"gap": ids["road"], "building": ids["sidewalk"], "open": ids["terrain"]}
    classes = [pick.get(s.kind, ids["terrain"] if s.setback > 6 else ids["sidewalk"]) for s in segs]
    return bounds, np.array([*classes, classes[-1]], np.uint8)


def draw_ground(b: Builder, street: Street) -> None:
    """Road with lane markings and crossings, verges, sidewalks with curbs, and what lies beyond."""
    region = ground(b.cam)
    if region is None:
        return
    ids = class_ids()
    x, z = region.u, region.v
    right = x > 0
    (rl, rr) = street.road
    dist = np.where(right, x - rr, rl - x)
    verge = np.where(right, street.verge[1], street.verge[0])
    walk = np.where(right, street.walk[1], street.walk[0])
    outer = np.empty(x.shape, np.uint8)
    for sgn, sel in ((-1, ~right), (1, right)):
        bounds, classes = _outer_ground(street, sgn)
        outer[sel] = classes[np.searchsorted(bounds, np.broadcast_to(z, x.shape)[sel])]
    label = np.where(dist < 0, ids["road"], np.where(dist < verge, ids["terrain"], ids["sidewalk"]))
    label = np.where(dist >= verge + walk, outer, label)
    near_line = np.zeros(x.shape, bool)
    for k in range(1, street.lanes):
        solid = k == street.oncoming
        on = np.abs(x - (street.lane_left + k * street.lane)) < 0.07
        near_line |= on if solid else on & (np.mod(z, 9.0) < 3.0)
    near_line |= (np.abs(dist + 0.3) < 0.06) & (dist < 0)
    part = np.where(near_line & (dist < 0), PART_LANE, PART_NONE)
    part = np.where((dist >= verge) & (dist < verge + 0.2) & (label == ids["sidewalk"]), PART_CURB, part)
    if street.crossing:
        z0, z1 = street.crossing
        cross = (z >= z0) & (z <= z1)
        label = np.where(cross & (dist >= 0), ids["road"], label)
        part = np.where(cross & (dist >= 0), PART_NONE, part)
        zebra = (z > z0 - 4.0) & (z < z0 - 0.8) & (dist < 0) & (np.mod(x, 1.0) < 0.5)
        part = np.where(zebra, PART_LANE, np.where((z > z0 - 4.0) & (z < z0 - 0.8) & (dist < 0), PART_NONE, part))
    b.canvas.paint(region, np.ones(x.shape, bool), label, part, -1, SURF_GROUND)


def _draw_building(b: Builder, x: float, z0: float, z1: float, h: float, sgn: int) -> None:
    obj = b.add("building", "facade", x, z0, 0.0, h, z1 - z0)
    style = _facade_style(b.rng)
    region = side(b.cam, x, z0, z1, 0.0, h)
    if region is not None:
        b.draw(obj, region, shapes.facade(region.u, region.v, h, style), SURF_NEG_X if sgn > 0 else SURF_POS_X)
    lo, hi = sorted((x, x + sgn * 12.0))
    region = frontal(b.cam, z0, lo, hi, 0.0, h)  # the building's flank, seen above a lower neighbour
    if region is not None:
        b.draw(obj, region, shapes.facade(region.u, region.v, h, style), SURF_FRONT)


def _draw_vegetation_wall(b: Builder, x: float, z0: float, z1: float, h: float, sgn: int) -> None:
    obj = b.add("vegetation", "hedge", x, z0, 0.0, h, z1 - z0)
    region = side(b.cam, x, z0, z1, 0.0, h * 1.3)
    if region is not None:
        phase = b.rng.uniform(0, 6.3, 2)
        top = h * (1 + 0.15 * np.sin(region.u * 1.3 + phase[0]) + 0.1 * np.sin(region.u * 3.7 + phase[1]))
        b.draw(obj, region, shapes.barrier(region.u, region.v, h, "hedge", top), SURF_NEG_X if sgn > 0 else SURF_POS_X)


def draw_sides(b: Builder, street: Street) -> dict[str, dict[str, Any]]:
    """Facade segments on both sides, the buildings of the cross street and the street's far end."""
    skyline: dict[str, dict[str, Any]] = {}
    for name, sgn in (("left", -1), ("right", 1)):
        x, segs = street.facade[sgn > 0], street.segments[sgn > 0]
        heights = []
        for seg in segs:
            heights.append(seg.height if seg.kind != "gap" else 0.0)
            if seg.kind == "building":
                _draw_building(b, x, seg.z0, seg.z1, seg.height, sgn)
                continue
            if seg.kind == "gap":
                lo, hi = sorted((x, x + sgn * 60.0))
                obj = b.add("building", "facade", x + sgn * 30.0, seg.z1, 60.0, seg.height * 4 + 4, 0.0)
                region = frontal(b.cam, seg.z1, lo, hi, 0.0, obj.height)
                if region is not None:
                    shape = shapes.facade(region.u, region.v, obj.height, _facade_style(b.rng))
                    b.draw(obj, region, shape, SURF_FRONT)
                continue
            if seg.kind in ("wall", "fence"):
                obj = b.add(seg.kind, seg.kind, x, seg.z0, 0.0, seg.height, seg.z1 - seg.z0)
                region = side(b.cam, x, seg.z0, seg.z1, 0.0, seg.height)
                if region is not None:
                    shape = shapes.barrier(region.u, region.v, seg.height, seg.kind, seg.height)
                    b.draw(obj, region, shape, SURF_NEG_X if sgn > 0 else SURF_POS_X)
            elif seg.kind == "hedge":
                _draw_vegetation_wall(b, x, seg.z0, seg.z1, seg.height, sgn)
            back_x = x + sgn * seg.setback
            if seg.back == "building":
                _draw_building(b, back_x, seg.z0, seg.z1, seg.back_height, sgn)
            elif seg.back == "vegetation":
                _draw_vegetation_wall(b, back_x, seg.z0, seg.z1, seg.back_height, sgn)
        skyline[name] = {"x": x, "z": [s.z1 for s in segs], "h": heights}
    far = street.end
    if street.end_height:
        obj = b.add("building", "facade", 0.0, far, 400.0, street.end_height, 0.0)
        region = frontal(b.cam, far, -200.0, 200.0, 0.0, street.end_height)
        if region is not None:
            b.draw(obj, region, shapes.facade(region.u, region.v, street.end_height, _facade_style(b.rng)), SURF_FRONT)
    else:
        obj = b.add("vegetation", "treeline", 0.0, far * 2, 800.0, 12.0, 0.0)
        region = frontal(b.cam, far * 2, -400.0, 400.0, 0.0, 18.0)
        if region is not None:
            top = 10.0 + 4 * np.sin(region.u * 0.11 + b.rng.uniform(0, 6)) + 2 * np.sin(region.u * 0.37)
            b.draw(obj, region, shapes.barrier(region.u, region.v, 12.0, "hedge", top), SURF_FRONT)
    return skyline


def check_size(size: tuple[int, int]) -> tuple[int, int]:
    """Validate an image size (height, width): positive multiples of 8, at least 32x64."""
    try:
        height, width = (int(s) for s in size)
    except (TypeError, ValueError):
        raise UrbangenError(f"size must be (height, width), got {size!r}") from None
    if height < 32 or width < 64 or height % 8 or width % 8:
        raise UrbangenError(f"size must be at least 32x64 with both sides divisible by 8, got {height}x{width}")
    return height, width


def make_scene(seed: int, size: tuple[int, int]) -> Scene:
    """Plan and draw the street scene of ``seed`` at ``size`` = (height, width) pixels."""
    from urbangen.world.objects import draw_furniture, draw_traffic

    height, width = check_size(size)
    rng = np.random.default_rng(np.random.SeedSequence([int(seed), 0x5C3E]))
    cam = Camera(
        height,
        width,
        focal=width * float(rng.uniform(0.9, 1.2)),
        cx=width * float(0.5 + rng.uniform(-0.03, 0.03)),
        horizon=height * float(rng.uniform(0.38, 0.5)),
        cam_height=float(rng.uniform(1.3, 1.9)),
    )
    street = plan_street(rng)
    builder = Builder(Canvas(cam), rng)
    draw_ground(builder, street)
    skyline = draw_sides(builder, street)
    draw_furniture(builder, street)
    draw_traffic(builder, street)
    c = builder.canvas
    instance = np.where(c.instance > 0, c.instance, c.label.astype(np.int32))
    return Scene(
        int(seed), cam, c.label, instance, c.depth, c.part, c.obj, c.u, c.v, c.surface, tuple(builder.objects), skyline
    )
