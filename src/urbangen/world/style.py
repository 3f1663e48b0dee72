"""Appearance of a ``real`` target domain, drawn from a style seed, and the noise and hash helpers.

A :class:`Domain` fixes how each class looks in one target domain (base colours and material palettes,
texture scale and strength, weather and sun, haze, and the camera's colour cast, vignetting, blur, noise
and compression). Images of one domain differ only by per-image jitter (exposure, sun azimuth, clouds)
and per-object draws from the domain's palettes, so the look is consistent enough for a small model to
learn, while two style seeds give two different domains.
"""

from __future__ import annotations

import colorsys
from dataclasses import dataclass

import numpy as np

from urbangen.world.geometry import class_ids

STYLE_TAG = 0x57E1  # separates style streams from scene streams drawn from the same integer


def _hsv(rng: np.random.Generator, h: tuple[float, float], s: tuple[float, float], v: tuple[float, float], n=1):
    """``n`` RGB colours in [0, 1] with hue/saturation/value drawn uniformly from the given ranges."""
    out = []
    for _ in range(n):
        hue = rng.uniform(*h) % 1.0
        out.append(colorsys.hsv_to_rgb(hue, rng.uniform(*s), rng.uniform(*v)))
    return np.asarray(out, np.float32)


# class -> (hue range, saturation range, value range) for the domain's base colours (turns, 0..1)
CLASS_PRIORS = {
    "road": ((0.0, 1.0), (0.0, 0.14), (0.16, 0.42)),
    "sidewalk": ((0.0, 0.2), (0.03, 0.28), (0.38, 0.72)),
    "building": ((-0.05, 0.15), (0.05, 0.55), (0.3, 0.85)),
    "wall": ((0.0, 1.0), (0.05, 0.35), (0.35, 0.8)),
    "fence": ((0.0, 1.0), (0.0, 0.45), (0.2, 0.65)),
    "pole": ((0.0, 1.0), (0.0, 0.3), (0.2, 0.6)),
    "traffic light": ((0.0, 1.0), (0.0, 0.4), (0.05, 0.3)),
    "traffic sign": ((0.0, 1.0), (0.5, 0.9), (0.5, 0.9)),
    "vegetation": ((0.12, 0.38), (0.3, 0.8), (0.12, 0.45)),
    "terrain": ((0.07, 0.3), (0.2, 0.65), (0.25, 0.6)),
    "sky": ((0.5, 0.65), (0.1, 0.6), (0.6, 1.0)),
    "person": ((0.0, 1.0), (0.0, 0.7), (0.1, 0.8)),
    "rider": ((0.0, 1.0), (0.0, 0.7), (0.1, 0.8)),
    "car": ((0.0, 1.0), (0.0, 0.9), (0.08, 0.9)),
    "truck": ((0.0, 1.0), (0.0, 0.8), (0.3, 0.95)),
    "bus": ((0.0, 1.0), (0.2, 0.9), (0.3, 0.9)),
    "train": ((0.0, 1.0), (0.1, 0.9), (0.3, 0.9)),
    "motorcycle": ((0.0, 1.0), (0.0, 0.9), (0.05, 0.7)),
    "bicycle": ((0.0, 1.0), (0.0, 0.9), (0.05, 0.7)),
}
PALETTE_SIZE = 6
# texture cycles per metre and strength per class (value-noise fbm laid on the surface coordinates)
TEXTURE = {
    "road": (3.0, 0.25),
    "sidewalk": (2.0, 0.18),
    "building": (1.2, 0.22),
    "wall": (2.0, 0.28),
    "fence": (4.0, 0.2),
    "vegetation": (2.5, 0.75),
    "terrain": (4.0, 0.5),
    "pole": (0.5, 0.1),
    "car": (0.8, 0.06),
}


@dataclass(frozen=True)
class Domain:
    """Everything that makes one ``real`` target domain look the way it does."""

    seed: int
    base: np.ndarray  # (256, 3) base colour per labelId
    palettes: np.ndarray  # (256, PALETTE_SIZE, 3) per-object colour choices per labelId
    tex_scale: np.ndarray  # (256,) cycles per metre
    tex_amp: np.ndarray  # (256,)
    tiles: float  # sidewalk tile size (metres)
    lane_paint: np.ndarray  # (3,)
    glass: np.ndarray  # (3,)
    sky_top: np.ndarray
    sky_horizon: np.ndarray
    clouds: float  # cloud cover 0..1
    sun_azimuth: float  # radians, 0 = straight ahead
    sun_elevation: float
    sun: np.ndarray  # sun colour times intensity
    ambient: np.ndarray
    visibility: float  # metres
    haze: np.ndarray
    gains: np.ndarray  # colour cast
    exposure: float
    gamma: float
    saturation: float
    vignette: float
    blur: float  # pixels at width 512
    noise: float
    jpeg: int


def make_domain(style_seed: int) -> Domain:
    """The domain of ``style_seed`` (a pure function of the seed)."""
    rng = np.random.default_rng(np.random.SeedSequence([int(style_seed), STYLE_TAG]))
    ids = class_ids()
    base = np.full((256, 3), 0.5, np.float32)
    palettes = np.full((256, PALETTE_SIZE, 3), 0.5, np.float32)
    for name, (h, s, v) in CLASS_PRIORS.items():
        # a domain keeps each class within a narrower band than the prior: its own look
        hue = rng.uniform(*h)
        width = (h[1] - h[0]) * 0.25
        palettes[ids[name]] = _hsv(rng, (hue - width, hue + width), s, v, PALETTE_SIZE)
        base[ids[name]] = palettes[ids[name]].mean(0)
    for name in ("car", "person", "rider", "motorcycle", "bicycle"):  # vehicles and clothes: any colour
        palettes[ids[name]] = _hsv(rng, CLASS_PRIORS[name][0], *CLASS_PRIORS[name][1:], n=PALETTE_SIZE)
    tex_scale = np.ones(256, np.float32)
    tex_amp = np.full(256, 0.08, np.float32)
    for name, (scale, amp) in TEXTURE.items():
        tex_scale[ids[name]] = scale * rng.uniform(0.6, 1.6)
        tex_amp[ids[name]] = amp * rng.uniform(0.6, 1.5)
    weather = rng.choice(["clear", "hazy", "overcast", "low sun"], p=[0.35, 0.2, 0.25, 0.2])
    elevation = {"clear": (0.5, 1.1), "hazy": (0.4, 0.9), "overcast": (0.6, 1.2), "low sun": (0.12, 0.3)}[weather]
    sun_strength = {"clear": 2.2, "hazy": 1.5, "overcast": 0.35, "low sun": 2.0}[weather]
    warm = rng.uniform(0.0, 0.25) + (0.3 if weather == "low sun" else 0.0)
    sun = np.array([1.0 + warm, 1.0, 1.0 - warm], np.float32) * sun_strength * rng.uniform(0.85, 1.15)
    sky_top = _hsv(rng, (0.55, 0.64), (0.35, 0.75), (0.55, 0.9))[0]
    if weather == "overcast":
        sky_top = np.full(3, rng.uniform(0.55, 0.85), np.float32)
    sky_horizon = np.clip(sky_top * 0.4 + rng.uniform(0.45, 0.65) + np.array([warm, 0, -warm]) * 0.5, 0, 1)
    ambient = np.clip(sky_top * 0.35 + 0.35, 0, 1) * (1.6 if weather == "overcast" else rng.uniform(0.5, 0.8))
    return Domain(
        seed=int(style_seed),
        base=base,
        palettes=palettes,
        tex_scale=tex_scale,
        tex_amp=tex_amp,
        tiles=float(rng.uniform(0.25, 0.8)),
        lane_paint=_hsv(rng, (0.1, 0.16), (0.0, 0.5), (0.65, 0.95))[0],
        glass=_hsv(rng, (0.5, 0.7), (0.1, 0.5), (0.08, 0.35))[0],
        sky_top=sky_top.astype(np.float32),
        sky_horizon=sky_horizon.astype(np.float32),
        clouds=float(rng.uniform(0.0, 0.6) if weather != "overcast" else 0.0),
        sun_azimuth=float(rng.uniform(-np.pi, np.pi)),
        sun_elevation=float(rng.uniform(*elevation)),
        sun=sun,
        ambient=ambient.astype(np.float32),
        visibility=float({"hazy": rng.uniform(60, 150)}.get(weather, rng.uniform(200, 1200))),
        haze=np.clip(sky_horizon * rng.uniform(0.8, 1.05), 0, 1).astype(np.float32),
        gains=(1.0 + rng.normal(0, 0.07, 3)).astype(np.float32),
        exposure=float(rng.uniform(0.8, 1.25)),
        gamma=float(rng.uniform(0.8, 1.2)),
        saturation=float(rng.uniform(0.55, 1.35)),
        vignette=float(rng.uniform(0.1, 0.55)),
        blur=float(rng.uniform(0.3, 1.3)),
        noise=float(rng.uniform(0.008, 0.035)),
        jpeg=int(rng.integers(35, 90)),
    )


def hash01(i: np.ndarray, j: np.ndarray, seed: int) -> np.ndarray:
    """A float in [0, 1) per integer pair, deterministic and platform independent (integer arithmetic)."""
    h = (
        np.asarray(i, np.int64) * 374761393 + np.asarray(j, np.int64) * 668265263 + (seed & 0xFFFF) * 2246822519
    ) & 0xFFFFFFFF
    h = ((h ^ (h >> 13)) * 1274126177) & 0xFFFFFFFF
    return ((h ^ (h >> 16)) & 0xFFFF).astype(np.float32) / 65536.0


def noise_table(rng: np.random.Generator, n: int = 64) -> np.ndarray:
    return rng.standard_normal((n, n)).astype(np.float32) * 0.5


def value_noise(u: np.ndarray, v: np.ndarray, table: np.ndarray) -> np.ndarray:
    """Smooth periodic value noise (about -1..1) sampled at (u, v) in table cells (bilinear, smoothstep)."""
    n = table.shape[0]
    m, flat = n - 1, table.ravel()
    fu, fv = np.floor(u), np.floor(v)
    tu, tv = u - fu, v - fv
    iu, iv = fu.astype(np.int32) & m, (fv.astype(np.int32) & m) * n
    iu1, iv1 = (iu + 1) & m, (iv + n) & (n * n - 1)
    a, b, c, d = flat.take(iv + iu), flat.take(iv + iu1), flat.take(iv1 + iu), flat.take(iv1 + iu1)
    tu, tv = tu * tu * (3 - 2 * tu), tv * tv * (3 - 2 * tv)
    return a + (b - a) * tu + (c - a) * tv + (a - b - c + d) * (tu * tv)


def fbm(u: np.ndarray, v: np.ndarray, table: np.ndarray, octaves: int, footprint: np.ndarray | None = None):
    """Fractal value noise; octaves finer than ~2 pixels (``footprint``: cells per pixel) fade out."""
    total = np.zeros(np.broadcast_shapes(u.shape, v.shape), np.float32)
    for octave in range(octaves):
        f = float(2**octave)
        layer = value_noise(u * f + 17.3 * octave, v * f + 5.1 * octave, table) * (0.5**octave)
        if footprint is not None:
            layer = layer * np.clip(1.5 - footprint * f, 0.0, 1.0)
        total += layer
    return total
