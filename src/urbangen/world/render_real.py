"""The ``real`` look: the built-in benchmark's stand-in for a real target domain.

Numbered steps, each vectorised over the whole image:
1. albedo: the domain's class colours, per-object colours from the domain's palettes, material parts;
2. textures laid on the surface coordinates (fractal noise, paving tiles, brick courses);
3. lighting: ambient plus sun by surface orientation, cast shadows by ray-marching a top-down height map
   of buildings, vehicles, people and trees towards the sun; lit lamps glow;
4. sky with clouds; haze by depth;
5. camera: exposure and tone, saturation, colour cast, vignetting, blur, sensor noise, JPEG compression.
"""

from __future__ import annotations

import io

import numpy as np
from PIL import Image
from scipy.ndimage import gaussian_filter

from urbangen.world import geometry as g
from urbangen.world.geometry import class_ids
from urbangen.world.layout import Scene, WorldObject
from urbangen.world.renderer import normals, object_array, per_object, sky_gradient
from urbangen.world.style import PALETTE_SIZE, STYLE_TAG, Domain, fbm, hash01, make_domain, noise_table

GRID_RES, GRID_X0, GRID_NX, GRID_NZ = 0.25, -40.0, 320, 800  # top-down height map: 80 m x 200 m
SKIN = np.array([[0.93, 0.76, 0.64], [0.8, 0.6, 0.45], [0.55, 0.38, 0.27], [0.36, 0.24, 0.17]], np.float32)
LAMPS = {
    g.PART_LAMP_RED: (1.0, 0.12, 0.08),
    g.PART_LAMP_AMBER: (1.0, 0.6, 0.1),
    g.PART_LAMP_GREEN: (0.2, 1.0, 0.45),
    g.PART_LAMP_WHITE: (1.0, 1.0, 0.9),
}


def _object_colours(scene: Scene, dom: Domain) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per object: main colour (paint, facade, clothes top), second colour (trousers) and skin tone."""
    labels = object_array(scene, "label_id", np.int64)
    keys = object_array(scene, "key", np.int64)
    pick = hash01(keys, labels, dom.seed)
    idx = (pick * PALETTE_SIZE).astype(np.int64)
    jitter = 1.0 + 0.16 * (hash01(keys, labels + 7, dom.seed) - 0.5)
    main = dom.palettes[labels, idx] * jitter[:, None]
    second = dom.palettes[labels, (idx + 3) % PALETTE_SIZE] * 0.55
    skin = SKIN[(hash01(keys, labels + 11, dom.seed) * len(SKIN)).astype(np.int64)]
    return main, second, skin


def _albedo(scene: Scene, dom: Domain) -> np.ndarray:
    """Base colour per pixel: class colour, object colour, or the colour of its material part."""
    main, second, skin = _object_colours(scene, dom)
    replace = {
        g.PART_LANE: dom.lane_paint,
        g.PART_WINDOW: dom.glass * 0.7 + dom.sky_horizon * 0.3,
        g.PART_GLASS: dom.glass,
        g.PART_WHEEL: np.full(3, 0.04, np.float32),
        g.PART_PLATE: np.array([0.85, 0.85, 0.8], np.float32),
        g.PART_TRUNK: np.array([0.24, 0.17, 0.11], np.float32),
        g.PART_SIGN_RIM: np.array([0.9, 0.9, 0.88], np.float32),
        g.PART_HOUSING: np.full(3, 0.06, np.float32),
        **LAMPS,
    }
    scale = {g.PART_CURB: 1.2, g.PART_DOOR: 0.45, g.PART_CORNICE: 1.2, g.PART_BAR: 0.55, g.PART_CAP: 1.25}
    parts = np.zeros((g.NUM_PARTS, 3), np.float32)
    mul = np.ones(g.NUM_PARTS, np.float32)
    has = np.zeros(g.NUM_PARTS, bool)
    for code, colour in replace.items():
        parts[code], has[code] = colour, True
    for code, factor in scale.items():
        mul[code] = factor
    # one table (classes, objects, parts, trousers, skin) and one gather
    n, part, obj = len(main), scene.part, scene.obj
    table = np.concatenate([dom.base, main, parts, second, skin]).astype(np.float32)
    index = np.where(obj >= 0, obj + 256, scene.label_ids.astype(np.int32))
    index = np.where(has[part], part.astype(np.int32) + 256 + n, index)
    index = np.where(part == g.PART_BOTTOM, obj + 256 + n + g.NUM_PARTS, index)
    index = np.where(part == g.PART_SKIN, obj + 256 + 2 * n + g.NUM_PARTS, index)
    return table[index] * mul[part][..., None]


def _texture(scene: Scene, dom: Domain, albedo: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    ids, label, u, v = class_ids(), scene.label_ids, scene.u, scene.v
    footprint = scene.depth / scene.camera.focal  # metres per pixel
    scale = dom.tex_scale[label]
    tables = noise_table(np.random.default_rng([dom.seed, STYLE_TAG, 1])), noise_table(rng)
    grain = fbm(u * scale, v * scale, tables[0], 3, footprint * scale)
    tint = fbm(u * scale * 0.25 + 3.1, v * scale * 0.25, tables[1], 1, footprint * scale * 0.25)
    shade = 1 + dom.tex_amp[label] * grain
    out = albedo * shade[..., None] * (1 + 0.12 * tint[..., None] * np.array([1.0, -0.6, 0.4], np.float32))
    walk = (label == ids["sidewalk"]) & (scene.surface == g.SURF_GROUND)
    fu, fv = u / dom.tiles, v / dom.tiles
    joint = (np.mod(fu, 1) < 0.08) | (np.mod(fv, 1) < 0.08)
    tile = 0.88 + 0.24 * hash01(np.floor(fu).astype(np.int64), np.floor(fv).astype(np.int64), dom.seed)
    fine = np.clip(1.5 - footprint / dom.tiles * 6, 0, 1)
    out = np.where(walk[..., None], out * (1 + (np.where(joint, 0.6, tile) - 1) * fine)[..., None], out)
    facade = (label == ids["building"]) & (scene.part == g.PART_NONE)
    course = np.floor(v / 0.16)
    brick = (np.mod(v / 0.16, 1) < 0.15) | (np.mod(u / 0.34 + 0.5 * course, 1) < 0.08)
    bricky = per_object(scene, hash01(object_array(scene, "key", np.int64), 5, dom.seed) < 0.4, False)
    fine = np.clip(1.5 - footprint / 0.16 * 4, 0, 1)
    return np.where((facade & bricky & brick)[..., None], out * (1 - 0.35 * fine)[..., None], out)


def _footprint(obj: WorldObject) -> tuple[float, float, float, float, float] | None:
    """Top-down box (x0, x1, z0, z1) and height of what an object casts a shadow with, or None."""
    x, z, w, h, length = obj.x, obj.z, obj.width, obj.height, obj.length
    sgn = 1.0 if x > 0 else -1.0
    if obj.kind in ("facade", "hedge", "wall", "fence") and length > 0:  # runs along the street
        depth = 12.0 if obj.kind == "facade" else 0.4
        return min(x, x + sgn * depth), max(x, x + sgn * depth), z, z + length, h
    if obj.kind == "facade":
        return x - w / 2, x + w / 2, z, z + 12.0, h
    if obj.kind in ("person", "rider", "pole"):
        r = 0.2 if obj.kind != "pole" else 0.1
        return x - r, x + r, z - r, z + r, h + (0.25 if obj.kind == "rider" else 0.0)
    if obj.kind == "tree":
        return x - w / 3, x + w / 3, z - w / 3, z + w / 3, h
    if obj.cls in g.THING_CLASSES:
        return x - w / 2, x + w / 2, z, z + length, h
    return None


def _sun_visibility(scene: Scene, points: np.ndarray, sun_dir: np.ndarray) -> np.ndarray:
    """1 where a 3-D point (N x 3) sees the sun, 0 where the height map blocks the way."""
    grid = np.zeros((GRID_NZ, GRID_NX), np.float32)
    for obj in scene.objects:
        box = _footprint(obj)
        if box is None:
            continue
        x0, x1, z0, z1, h = box
        i0, i1 = (min(max(int((a - GRID_X0) / GRID_RES), 0), GRID_NX) for a in (x0, x1))
        j0, j1 = (min(max(int(a / GRID_RES), 0), GRID_NZ) for a in (z0, z1))
        region = grid[j0 : max(j1, j0 + 1), i0 : max(i1, i0 + 1)]
        np.maximum(region, h, out=region)
    horizontal = np.hypot(sun_dir[0], sun_dir[2]) + 1e-6
    dx, dz, rise = sun_dir[0] / horizontal, sun_dir[2] / horizontal, sun_dir[1] / horizontal
    top = float(grid.max())
    visible = np.ones(len(points), np.float32)
    active = np.nonzero(points[:, 1] < top)[0]  # points above every occluder always see the sun
    for t in 0.35 * 1.42 ** np.arange(16):
        if not len(active):
            break
        p = points[active]
        ix = ((p[:, 0] + dx * t - GRID_X0) / GRID_RES).astype(np.int32)
        iz = ((p[:, 2] + dz * t) / GRID_RES).astype(np.int32)
        inside = (ix >= 0) & (ix < GRID_NX) & (iz >= 0) & (iz < GRID_NZ)
        ray = p[:, 1] + rise * t
        height = grid[np.where(inside, iz, 0), np.where(inside, ix, 0)]
        blocked = inside & (height > ray)
        visible[active[blocked]] = 0.0
        active = active[~blocked & inside & (ray < top)]  # a ray that left the map or rose above it is free
    return visible


def _lighting(scene: Scene, dom: Domain, azimuth: float) -> np.ndarray:
    cam = scene.camera
    el = dom.sun_elevation
    sun_dir = np.array([np.cos(el) * np.sin(azimuth), np.sin(el), np.cos(el) * np.cos(azimuth)], np.float32)
    lambert = np.clip(normals(scene) @ sun_dir, 0, 1)
    # shadows are smooth at the pixel scale: from 512 pixels wide on, ray-march every other row and column
    step = 2 if cam.width >= 512 else 1
    solid = scene.label_ids[::step, ::step] != class_ids()["sky"]
    z = scene.depth[::step, ::step][solid]
    rows, cols = (a.astype(np.float32) * step + 0.5 for a in np.nonzero(solid))
    points = np.stack(
        [(cols - cam.cx) * z / cam.focal, cam.cam_height - (rows - cam.horizon) * z / cam.focal, z], axis=1
    )
    sees_sun = np.zeros(solid.shape, np.float32)
    sees_sun[solid] = _sun_visibility(scene, points, sun_dir)
    if step > 1:
        sees_sun = np.repeat(np.repeat(sees_sun, step, 0), step, 1)[: cam.height, : cam.width]
    lit = lambert * sees_sun
    norm = dom.ambient.mean() + dom.sun.mean() * 0.55
    return (dom.ambient[None, None, :] + lit[..., None] * dom.sun[None, None, :]) / norm


def _sky(scene: Scene, dom: Domain, rng: np.random.Generator) -> np.ndarray:
    """Sky ramp with clouds; clouds are smooth, so they are computed at a quarter of the resolution."""
    cam = scene.camera
    sky = np.array(sky_gradient(scene, dom.sky_horizon, dom.sky_top))
    if dom.clouds > 0:
        ys, xs = np.mgrid[0 : cam.height : 4, 0 : cam.width : 4].astype(np.float32) + 2.0
        up = np.maximum(cam.horizon - ys, 1.0) / cam.focal
        cu, cv = (xs - cam.cx) / cam.focal / up * 0.8 + rng.uniform(0, 64), 1.0 / up * 0.5 + rng.uniform(0, 64)
        c = fbm(cu, cv, noise_table(rng), 4)
        cover = np.clip((c - (0.5 - dom.clouds)) * 2.5, 0, 1)
        cover = np.repeat(np.repeat(cover, 4, 0), 4, 1)[: cam.height, : cam.width, None]
        sky = sky * (1 - cover) + (dom.sky_horizon * 0.35 + 0.62) * cover
    return sky


def _camera(image: np.ndarray, dom: Domain, rng: np.random.Generator) -> np.ndarray:
    h, w = image.shape[:2]
    image = np.clip(image, 0, None)
    image = image * (1.0 + 0.35) / (1.0 + 0.35 * image)  # soft highlight roll-off
    image = np.clip(image, 0, 1) ** dom.gamma
    grey = image.mean(-1, keepdims=True)
    image = (grey + (image - grey) * dom.saturation) * dom.gains
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    r2 = ((yy - h / 2) / (h / 2)) ** 2 * 0.5 + ((xx - w / 2) / (w / 2)) ** 2 * 0.5
    image = image * (1 - dom.vignette * r2)[..., None]
    image = gaussian_filter(image, sigma=(dom.blur * w / 512, dom.blur * w / 512, 0), mode="nearest")
    noise = rng.standard_normal(image.shape).astype(np.float32)
    image = image + noise * dom.noise * (0.4 + np.sqrt(np.clip(image, 0, 1)))
    out = (np.clip(image, 0, 1) * 255).round().astype(np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(out).save(buffer, format="JPEG", quality=dom.jpeg)
    return np.asarray(Image.open(buffer).convert("RGB"), dtype=np.uint8)


def render_real(scene: Scene, style_seed: int) -> np.ndarray:
    """The ``real`` image of ``scene`` in the domain of ``style_seed`` (uint8 HxWx3)."""
    dom = make_domain(style_seed)
    rng = np.random.default_rng(np.random.SeedSequence([int(style_seed), STYLE_TAG, scene.seed]))
    exposure = dom.exposure * float(rng.uniform(0.9, 1.1))
    azimuth = dom.sun_azimuth + float(rng.uniform(-0.25, 0.25))
    albedo = _texture(scene, dom, _albedo(scene, dom), rng)
    colour = albedo * _lighting(scene, dom, azimuth)
    lamps = np.isin(scene.part, list(LAMPS))
    colour = np.where(lamps[..., None], albedo * 1.6, colour)
    fog = np.exp(-scene.depth / dom.visibility)[..., None]
    colour = colour * fog + dom.haze * (1 - fog) * 1.05
    sky = scene.label_ids == class_ids()["sky"]
    colour[sky] = _sky(scene, dom, rng)[sky]
    return _camera(colour * exposure, dom, rng)
