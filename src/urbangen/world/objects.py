"""Street furniture (poles, lamps, signs, traffic lights, trees) and traffic (vehicles, riders, people).

Each ``_draw_*`` function registers one object with the :class:`~urbangen.world.layout.Builder` (which
assigns instance ids to things) and paints its camera-facing face and, where the camera can see it, its
flank. Placement follows the street plan: poles and trees along the curb, vehicles in lanes or parked
along the road edge, people on sidewalks and crossings.
"""

from __future__ import annotations

import numpy as np

from urbangen.world import shapes
from urbangen.world.geometry import (
    PART_LAMP_WHITE,
    PART_NONE,
    SURF_FRONT,
    SURF_NEG_X,
    SURF_POS_X,
    SURF_ROUND,
    frontal,
    side,
)
from urbangen.world.layout import Builder, Street

VEHICLE_SIZE = {  # (width, height, length) ranges in metres
    "car": ((1.65, 1.95), (1.4, 1.65), (3.9, 4.9)),
    "truck": ((2.2, 2.5), (2.6, 3.6), (6.0, 9.0)),
    "bus": ((2.5, 2.6), (3.0, 3.4), (10.0, 13.0)),
    "train": ((2.4, 2.6), (3.3, 3.7), (20.0, 30.0)),
}
SOLID = np.ones((1, 1), bool)


def _positions(rng: np.random.Generator, start: float, stop: float, step: tuple[float, float], street: Street):
    """Depths from ``start`` to ``stop`` at random steps, skipping the cross street."""
    out, z = [], start
    while z < stop:
        if not (street.crossing and street.crossing[0] - 1.0 < z < street.crossing[1] + 1.0):
            out.append(z)
        z += float(rng.uniform(*step))
    return out


def _curb(street: Street, sgn: int, offset: float) -> float:
    """Lateral position ``offset`` metres beyond the road edge on side ``sgn`` (-1 left, 1 right)."""
    return street.road[sgn > 0] + sgn * offset


def _pole(b: Builder, x: float, z: float, h: float, w: float) -> None:
    obj = b.add("pole", "pole", x, z, w, h)
    b.draw(obj, frontal(b.cam, z, x - w / 2, x + w / 2, 0.0, h), (SOLID, PART_NONE), SURF_ROUND)


def _lamp_post(b: Builder, x: float, z: float, sgn: int) -> None:
    h = float(b.rng.uniform(5.0, 8.0))
    _pole(b, x, z, h, 0.18)
    obj = b.objects[-1]
    reach = -sgn * float(b.rng.uniform(1.0, 2.2))
    lo, hi = sorted((x, x + reach))
    region = frontal(b.cam, z - 0.02, lo - 0.3, hi + 0.3, h - 0.6, h + 0.2)
    if region is not None:
        arm = shapes._segment(region.u, region.v, (x, h - 0.3), (x + reach, h), 0.1)
        head = (np.abs(region.u - x - reach) < 0.3) & (np.abs(region.v - h + 0.05) < 0.1)
        b.draw(obj, region, (arm | head, np.where(head, np.uint8(PART_LAMP_WHITE), np.uint8(PART_NONE))), SURF_ROUND)


def _sign(b: Builder, x: float, z: float) -> None:
    h = float(b.rng.uniform(2.2, 3.2))
    size = float(b.rng.uniform(0.55, 0.9))
    _pole(b, x, z, h, 0.08)
    obj = b.add("traffic sign", "sign", x, z, size, size)
    kind = int(b.rng.integers(4))
    qc = h + size * 0.4
    region = frontal(b.cam, z - 0.03, x - size / 2, x + size / 2, qc - size / 2, qc + size / 2)
    if region is not None:
        b.draw(obj, region, shapes.sign_face(region.u - x, region.v - qc, size, kind), SURF_FRONT)


def _signal(b: Builder, x: float, z: float, mount: float, overhead_to: float | None = None) -> None:
    """A traffic light on a pole; ``overhead_to`` hangs it from a mast arm reaching over the road."""
    _pole(b, x, z, mount + (0.0 if overhead_to is None else 0.3), 0.16)
    if overhead_to is not None:
        pole = b.objects[-1]
        lo, hi = sorted((x, overhead_to))
        b.draw(pole, frontal(b.cam, z, lo, hi, mount, mount + 0.15), (SOLID, PART_NONE), SURF_ROUND)
        x, mount = overhead_to, mount - 1.0
    obj = b.add("traffic light", "signal", x, z, 0.36, 0.95)
    region = frontal(b.cam, z - 0.05, x - 0.18, x + 0.18, mount, mount + 0.95)
    if region is not None:
        shape = shapes.traffic_light(region.u - x, region.v - mount, 0.36, 0.95, int(b.rng.integers(3)))
        b.draw(obj, region, shape, SURF_FRONT)


def _tree(b: Builder, x: float, z: float) -> None:
    h, crown = float(b.rng.uniform(4.0, 10.0)), float(b.rng.uniform(1.2, 3.0))
    obj = b.add("vegetation", "tree", x, z, 2 * crown, h)
    region = frontal(b.cam, z, x - 1.3 * crown, x + 1.3 * crown, 0.0, h * 1.05)
    if region is not None:
        shape = shapes.tree(region.u - x, region.v, h, crown, float(b.rng.uniform(0.2, 0.45)), b.rng.uniform(0, 6.3))
        b.draw(obj, region, shape, SURF_ROUND)


def draw_furniture(b: Builder, street: Street) -> None:
    """Lamp posts, signs and bare poles along both curbs, trees on verges, signals at the crossing."""
    rng, far = b.rng, min(street.end, 120.0)
    for sgn in (-1, 1):
        verge, walk = street.verge[sgn > 0], street.walk[sgn > 0]
        pole_x = _curb(street, sgn, verge / 2 if verge else 0.45)
        for z in _positions(rng, float(rng.uniform(2, 15)), far, (10, 30), street):
            kind = rng.choice(3, p=[0.45, 0.4, 0.15])
            if kind == 0:
                _lamp_post(b, pole_x, z, sgn)
            elif kind == 1:
                _sign(b, pole_x, z)
            else:
                _pole(b, pole_x, z, 3.5, 0.12)
        if verge or (walk > 3.0 and rng.random() < 0.5):
            tree_x = _curb(street, sgn, verge / 2 if verge else verge + walk * 0.7)
            for z in _positions(rng, float(rng.uniform(3, 10)), far, (6, 16), street):
                _tree(b, tree_x + float(rng.uniform(-0.2, 0.2)), z)
        if street.crossing:
            z0, z1 = street.crossing
            if rng.random() < 0.85:
                over = street.lane_left + street.lane * (street.lanes - 0.5) if sgn > 0 else None
                _signal(b, _curb(street, sgn, 0.5), z0 - float(rng.uniform(0.3, 1.5)), 2.6, over)
            if rng.random() < 0.6:
                _signal(b, _curb(street, sgn, 0.5), z1 + 1.0, 2.6)


def _vehicle(b: Builder, kind: str, xc: float, z: float, oncoming: bool) -> float:
    """Draw a car/truck/bus/tram whose near face is at depth ``z``; returns its length."""
    w, h, length = (float(b.rng.uniform(*r)) for r in VEHICLE_SIZE[kind])
    obj = b.add(kind, kind, xc, z, w, h, length)
    region = frontal(b.cam, z, xc - w / 2, xc + w / 2, 0.0, h)
    if region is not None:
        b.draw(obj, region, shapes.vehicle_face(region.u - xc, region.v, kind, w, h, oncoming), SURF_FRONT)
    flank = xc - w / 2 if xc > 0 else xc + w / 2
    if flank * xc > 0:
        region = side(b.cam, flank, z, z + length, 0.0, h)
        if region is not None:
            p = (z + length - region.u) if oncoming else (region.u - z)
            shape = shapes.vehicle_side(p, region.v, kind, length, h)
            b.draw(obj, region, shape, SURF_NEG_X if flank > 0 else SURF_POS_X)
    return length


def _two_wheeler(b: Builder, kind: str, xc: float, z: float, ridden: bool, across: bool = False) -> None:
    """A bicycle or motorcycle going along the street (with its rider) or parked ``across`` it."""
    w, length = (0.6, 1.75) if kind == "bicycle" else (0.8, 2.1)
    obj = b.add(kind, kind, xc, z, w, 1.1, length)
    if across:
        region = frontal(b.cam, z, xc - length / 2, xc + length / 2, 0.0, 1.1)
        if region is not None:
            b.draw(obj, region, shapes.two_wheeler_side(region.u - xc + length / 2, region.v, kind, length), SURF_FRONT)
        return
    region = frontal(b.cam, z, xc - w / 2, xc + w / 2, 0.0, 1.1)
    if region is not None:
        b.draw(obj, region, shapes.two_wheeler_back(region.u - xc, region.v, kind, w), SURF_FRONT)
    if abs(xc) > 0.3:
        region = side(b.cam, xc, z, z + length, 0.0, 1.2)
        if region is not None:
            shape = shapes.two_wheeler_side(region.u - z, region.v, kind, length)
            b.draw(obj, region, shape, SURF_NEG_X if xc > 0 else SURF_POS_X)
    if ridden:
        h = float(b.rng.uniform(1.2, 1.4))
        rider = b.add("rider", "rider", xc, z + 0.4 * length, 0.5 * h, h)
        region = frontal(b.cam, rider.z, xc - 0.3 * h, xc + 0.3 * h, 0.25, 0.25 + h)
        if region is not None:
            b.draw(rider, region, shapes.person(region.u - xc, region.v - 0.25, h, 0.0, seated=True), SURF_ROUND)


def _person(b: Builder, x: float, z: float) -> None:
    h = float(b.rng.uniform(1.5, 1.95))
    obj = b.add("person", "person", x, z, 0.5 * h, h)
    region = frontal(b.cam, z, x - 0.3 * h, x + 0.3 * h, 0.0, h)
    if region is not None:
        b.draw(obj, region, shapes.person(region.u - x, region.v, h, float(b.rng.uniform(-0.25, 0.25))), SURF_ROUND)


def draw_traffic(b: Builder, street: Street) -> None:
    """Moving and parked vehicles, a tram now and then, riders, parked bicycles and pedestrians."""
    rng, far = b.rng, min(street.end, 90.0)
    for k in range(street.lanes):
        xc = street.lane_left + (k + 0.5) * street.lane
        oncoming = k < street.oncoming
        z = float(rng.uniform(7.0 if abs(xc) < street.lane / 2 else 3.0, 25.0))
        for _ in range(int(rng.poisson(1.3))):
            if z > far:
                break
            kind = str(rng.choice(["car", "truck", "bus", "train", "motorcycle"], p=[0.7, 0.1, 0.09, 0.04, 0.07]))
            if kind == "motorcycle":
                _two_wheeler(b, kind, xc + float(rng.uniform(-0.5, 0.5)), z, ridden=True)
                z += 2.1
            else:
                z += _vehicle(b, kind, xc + float(rng.uniform(-0.3, 0.3)), z, oncoming)
            z += float(rng.uniform(3.0, 25.0))
    for sgn in (-1, 1):
        lanes_edge = street.lane_left + (street.lanes * street.lane if sgn > 0 else 0.0)
        parking = abs(street.road[sgn > 0] - lanes_edge) > 1.0
        if parking or rng.random() < 0.3:
            x = (street.road[sgn > 0] + lanes_edge) / 2 if parking else lanes_edge - sgn * 1.2
            oncoming = sgn < 0 and street.oncoming > 0
            z = float(rng.uniform(4.0, 12.0))
            while z < far:
                if rng.random() < 0.6 and not (street.crossing and street.crossing[0] - 6 < z < street.crossing[1]):
                    z += _vehicle(b, "car" if rng.random() < 0.9 else "truck", x, z, oncoming)
                z += float(rng.uniform(1.0, 9.0))
        verge, walk = street.verge[sgn > 0], street.walk[sgn > 0]
        for _ in range(int(rng.poisson(2.0))):
            _person(b, _curb(street, sgn, verge + float(rng.uniform(0.3, walk - 0.2))), float(rng.uniform(2.5, 60)))
        for _ in range(int(rng.poisson(0.4))):
            x = _curb(street, sgn, verge + float(rng.uniform(0.6, max(walk - 0.6, 0.7))))
            _two_wheeler(b, "bicycle", x, float(rng.uniform(5, 40)), ridden=False, across=True)
    for _ in range(int(rng.poisson(0.9))):
        kind = "bicycle" if rng.random() < 0.6 else "motorcycle"
        x = street.lane_left + street.lanes * street.lane - float(rng.uniform(0.5, 1.2))
        _two_wheeler(b, kind, x, float(rng.uniform(5, 45)), ridden=True)
    if street.crossing and rng.random() < 0.6:
        z0 = street.crossing[0]
        for _ in range(1 + int(rng.poisson(1.5))):
            _person(b, float(rng.uniform(*street.road)), z0 - float(rng.uniform(1.0, 3.5)))
