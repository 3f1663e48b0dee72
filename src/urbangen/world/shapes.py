"""Silhouettes of the things in a street, as masks over a primitive's plane coordinates.

Every function takes local coordinates in metres (``s`` across or along the object from its origin,
``q`` height above the ground; broadcastable arrays) and the object's size, and returns
``(mask, part)``: where the object is, and which material part each pixel shows (see the ``PART_*``
codes in :mod:`urbangen.world.geometry`). Shapes are deliberately sketchy, as a person would draw them.
"""

from __future__ import annotations

import numpy as np

from urbangen.world.geometry import (
    PART_BAR,
    PART_BOTTOM,
    PART_CAP,
    PART_CORNICE,
    PART_DOOR,
    PART_GLASS,
    PART_HOUSING,
    PART_LAMP_AMBER,
    PART_LAMP_GREEN,
    PART_LAMP_RED,
    PART_LAMP_WHITE,
    PART_NONE,
    PART_PLATE,
    PART_SIGN_RIM,
    PART_SKIN,
    PART_TOP,
    PART_TRUNK,
    PART_WHEEL,
    PART_WINDOW,
)

Shape = tuple[np.ndarray, np.ndarray]


def _select(conditions: list[np.ndarray], parts: list[int]) -> np.ndarray:
    """The part code of the first condition that holds, per pixel (PART_NONE where none does)."""
    return np.select(conditions, parts, PART_NONE).astype(np.uint8)


def _disc(p: np.ndarray, q: np.ndarray, cp: float, cq: float, r: float) -> np.ndarray:
    return (p - cp) ** 2 + (q - cq) ** 2 < r * r


def _segment(p: np.ndarray, q: np.ndarray, a: tuple[float, float], b: tuple[float, float], width: float):
    """Pixels within ``width``/2 of the segment a-b (a bicycle frame tube, a lamp arm)."""
    dp, dq = b[0] - a[0], b[1] - a[1]
    t = np.clip(((p - a[0]) * dp + (q - a[1]) * dq) / (dp * dp + dq * dq), 0.0, 1.0)
    return (p - a[0] - t * dp) ** 2 + (q - a[1] - t * dq) ** 2 < (width / 2) ** 2


def vehicle_face(s: np.ndarray, q: np.ndarray, kind: str, w: float, h: float, front: bool) -> Shape:
    """The back (or, when ``front``, the front) of a car, truck, bus or tram seen from the camera."""
    t, a = q / h, np.abs(s) / w
    lamp = PART_LAMP_WHITE if front else PART_LAMP_RED
    if kind == "car":
        tt = (t - 0.58) / 0.42
        half = 0.46 - 0.14 * tt
        body = (t >= 0.1) & (t < 0.58) & (a <= 0.5)
        cabin = (t >= 0.58) & (t <= 1.0) & (a <= half)
        wheel = (t >= 0) & (t < 0.1) & (a > 0.3) & (a < 0.47)
        glass = cabin & (t > 0.62) & (t < 0.95) & (a < half - 0.05)
        lights = (t > 0.38) & (t < 0.5) & (a > 0.33) & (a < 0.47)
        plate = (t > 0.2) & (t < 0.3) & (a < 0.12)
        return body | cabin | wheel, _select([wheel, glass, lights, plate], [PART_WHEEL, PART_GLASS, lamp, PART_PLATE])
    low = 0.1 if kind == "truck" else 0.05
    box = (t >= low) & (t <= 1.0) & (a <= 0.5)
    wheel = (t >= 0) & (t < low) & (a > 0.28) & (a < 0.48)
    glass_lo = 0.4 if front else (0.55 if kind != "truck" else 2.0)
    glass = (t > glass_lo) & (t < 0.9) & (a < 0.44)
    lights = (t > 0.12) & (t < 0.2) & (a > 0.32) & (a < 0.47)
    return box | wheel, _select([wheel, glass, lights], [PART_WHEEL, PART_GLASS, lamp])


def vehicle_side(p: np.ndarray, q: np.ndarray, kind: str, length: float, h: float) -> Shape:
    """The flank of a vehicle; ``p`` runs from its rear (0) to its front (``length``)."""
    a, t = p / length, q / h
    inside = (a >= 0) & (a <= 1)
    if kind == "car":
        r = 0.31
        tt = (t - 0.58) / 0.42
        body = inside & (t >= 0.12) & (t < 0.58)
        cabin = (t >= 0.58) & (t <= 1.0) & (a >= 0.2 + 0.14 * tt) & (a <= 0.78 - 0.12 * tt)
        glass = cabin & (t > 0.63) & (t < 0.94) & (a > 0.25 + 0.14 * tt) & (a < 0.74 - 0.12 * tt)
        wheels = _disc(p, q, 0.18 * length, r, r) | _disc(p, q, 0.8 * length, r, r)
        lights = inside & (t > 0.38) & (t < 0.5) & ((a < 0.03) | (a > 0.97))
        return body | cabin | wheels, _select([wheels, glass, lights], [PART_WHEEL, PART_GLASS, PART_LAMP_AMBER])
    if kind == "truck":
        r = 0.5
        cargo = (a >= 0) & (a <= 0.72) & (t >= 0.14) & (t <= 1.0)
        cab = (a >= 0.75) & (a <= 1.0) & (t >= 0.14) & (t <= 0.78)
        glass = (a > 0.8) & (a < 0.97) & (t > 0.5) & (t < 0.72)
        wheels = _disc(p, q, 0.14 * length, r, r) | _disc(p, q, 0.55 * length, r, r) | _disc(p, q, 0.88 * length, r, r)
        return cargo | cab | wheels, _select([wheels, glass], [PART_WHEEL, PART_GLASS])
    # bus and tram: one long box with a band of windows between pillars, doors, and wheels under a skirt
    r = 0.5
    box = inside & (t >= 0.06) & (t <= 1.0)
    band = box & (t > 0.52) & (t < 0.86) & (np.mod(p, 1.7) > 0.18)
    doors = box & (t < 0.86) & (np.abs(np.mod(p + 0.7, 6.5 if kind == "train" else 5.0) - 3.0) < 0.6)
    wheels = _disc(p, q, 0.18 * length, r, r) | _disc(p, q, 0.78 * length, r, r)
    return box | wheels, _select([wheels, doors, band], [PART_WHEEL, PART_DOOR, PART_GLASS])


def two_wheeler_side(p: np.ndarray, q: np.ndarray, kind: str, length: float) -> Shape:
    """A bicycle (tyre rings, frame tubes) or motorcycle (filled wheels, body) seen from the side."""
    if kind == "bicycle":
        r = 0.34
        rear, fore = (r, r), (length - r, r)
        seat, handle, crank = (0.42 * length, 0.95), (0.78 * length, 1.02), (0.45 * length, 0.32)
        rings = [(p - c[0]) ** 2 + (q - c[1]) ** 2 for c in (rear, fore)]
        tyres = ((rings[0] < r * r) & (rings[0] > (r - 0.05) ** 2)) | (
            (rings[1] < r * r) & (rings[1] > (r - 0.05) ** 2)
        )
        frame = np.zeros(np.broadcast_shapes(p.shape, q.shape), bool)
        for a, b in ((rear, seat), (rear, crank), (crank, seat), (seat, handle), (crank, handle), (handle, fore)):
            frame |= _segment(p, q, a, b, 0.05)
        return tyres | frame, _select([tyres], [PART_WHEEL])
    r = 0.31
    wheels = _disc(p, q, r, r, r) | _disc(p, q, length - r, r, r)
    body = ((p - 0.5 * length) / (0.36 * length)) ** 2 + ((q - 0.62) / 0.24) ** 2 < 1
    fork = _segment(p, q, (length - r, r), (length - 0.45, 1.05), 0.08)
    return wheels | body | fork, _select([wheels], [PART_WHEEL])


def two_wheeler_back(s: np.ndarray, q: np.ndarray, kind: str, w: float) -> Shape:
    """A bicycle or motorcycle seen from behind: tyre, body strip and handlebar."""
    a = np.abs(s)
    if kind == "bicycle":
        tyre = (a < 0.025) & (q >= 0) & (q < 0.68)
        frame = (a < 0.03) & (q >= 0.68) & (q < 1.0)
        bar = (a < w / 2) & (np.abs(q - 1.02) < 0.025)
        return tyre | frame | bar, _select([tyre], [PART_WHEEL])
    tyre = (a < 0.07) & (q >= 0) & (q < 0.45)
    body = (a < 0.2) & (q >= 0.35) & (q < 0.95)
    bar = (a < w / 2) & (np.abs(q - 1.0) < 0.04)
    light = (a < 0.06) & (q > 0.7) & (q < 0.8)
    return tyre | body | bar, _select([tyre, light], [PART_WHEEL, PART_LAMP_RED])


def person(s: np.ndarray, q: np.ndarray, h: float, stride: float, seated: bool = False) -> Shape:
    """A pedestrian (or, ``seated``, a rider whose bent legs hang at the sides) seen front or back."""
    t, a = q / h, s / h
    head = (a / 0.065) ** 2 + ((t - 0.925) / 0.072) ** 2 < 1
    shoulder = 0.12 - 0.03 * np.clip((0.84 - t) / 0.34, 0, 1)
    torso = (t >= 0.48) & (t < 0.86) & (np.abs(a) < shoulder)
    arms = (t >= 0.46) & (t < 0.83) & (np.abs(a) >= shoulder) & (np.abs(a) < shoulder + 0.04)
    hands = (t >= 0.42) & (t < 0.46) & (np.abs(np.abs(a) - 0.12) < 0.025)
    if seated:
        legs = (t >= 0.0) & (t < 0.48) & (np.abs(np.abs(a) - 0.08 - 0.04 * (t < 0.25)) < 0.04)
    else:
        legs = (t >= 0.0) & (t < 0.48) & (np.abs(np.abs(a + stride * (0.48 - t)) - 0.05) < 0.04)
    mask = head | torso | arms | hands | legs
    return mask, _select([head | hands, torso | arms, legs], [PART_SKIN, PART_TOP, PART_BOTTOM])


def tree(s: np.ndarray, q: np.ndarray, h: float, crown: float, trunk: float, phase: float) -> Shape:
    """A tree: a trunk under a ragged crown of radius ``crown`` whose top is at height ``h``."""
    cq = h - crown
    ang = np.arctan2(q - cq, s)
    ragged = crown * (1 + 0.12 * np.sin(5 * ang + phase) + 0.07 * np.sin(11 * ang + 2 * phase))
    top = (s / 1.0) ** 2 + ((q - cq) / 0.9) ** 2 < ragged**2
    stem = (np.abs(s) < trunk / 2) & (q >= 0) & (q < cq)
    return top | stem, _select([stem & ~top], [PART_TRUNK])


def traffic_light(s: np.ndarray, q: np.ndarray, w: float, h: float, lit: int) -> Shape:
    """A signal head of ``w`` x ``h`` metres standing on q=0; ``lit`` picks red (0), amber (1), green (2)."""
    box = (np.abs(s) < w / 2) & (q >= 0) & (q <= h)
    r = 0.32 * w
    lamps = [_disc(s, q, 0.0, h * c, r) for c in (0.8, 0.5, 0.2)]
    codes = [PART_LAMP_RED, PART_LAMP_AMBER, PART_LAMP_GREEN]
    return box, _select([lamps[lit], lamps[0] | lamps[1] | lamps[2]], [codes[lit], PART_HOUSING])


def sign_face(s: np.ndarray, q: np.ndarray, size: float, kind: int) -> Shape:
    """A sign plate centred at q=0: circle (0), triangle (1), rectangle (2) or diamond (3), with a rim."""
    r = size / 2
    if kind == 0:
        d = np.sqrt(s * s + q * q) / r
    elif kind == 1:
        d = np.maximum(-q / (0.5 * r), (np.abs(s) * 1.73 + q) / r) * 1.0
    elif kind == 2:
        d = np.maximum(np.abs(s) / r, np.abs(q) / (0.7 * r))
    else:
        d = (np.abs(s) + np.abs(q)) / r
    face = d < 1
    return face, _select([d > 0.78], [PART_SIGN_RIM])


def facade(u: np.ndarray, q: np.ndarray, h: float, style: dict) -> Shape:
    """A building front up to height ``h``: window grid, a shop or door storey and a cornice.

    ``style`` holds ``floor`` (storey height), ``period`` and ``width`` (window spacing and width), and
    ``shop`` (1 if the ground storey has wide shop windows).
    """
    mask = (q >= 0) & (q <= h)
    floor, period, width = style["floor"], style["period"], style["width"]
    fq, fu = np.mod(q, floor), np.mod(u + style["offset"], period)
    upper = (q > floor) & (q < h - 0.6) & (fq > 0.28 * floor) & (fq < 0.82 * floor) & (fu < width)
    ground_floor = q <= floor
    shop = ground_floor & (q > 0.35) & (q < 0.85 * floor) & (np.mod(u, 2.0 * period) < 1.6 * period)
    door = ground_floor & (q < 2.2) & (np.abs(np.mod(u, 4 * period) - 2 * period) < 0.55)
    cornice = mask & (q > h - 0.45)
    shops = shop if style["shop"] else np.zeros_like(shop)
    return mask, _select([cornice, door, upper | shops], [PART_CORNICE, PART_DOOR, PART_WINDOW])


def barrier(u: np.ndarray, q: np.ndarray, h: float, kind: str, top: np.ndarray | float) -> Shape:
    """A wall (with a coping cap), a fence (posts and rails over mesh) or a hedge with a ragged top."""
    mask = (q >= 0) & (q <= top)
    if kind == "wall":
        return mask, _select([q > h - 0.15], [PART_CAP])
    if kind == "fence":
        bars = (np.mod(u, 2.5) < 0.08) | (np.abs(q - 0.9 * h) < 0.04) | (np.abs(q - 0.15 * h) < 0.04)
        return mask, _select([bars], [PART_BAR])
    return mask, np.uint8(PART_NONE)
