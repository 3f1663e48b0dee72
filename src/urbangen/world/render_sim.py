"""The ``sim`` look: flat class colours, a few fixed paints, clean edges and simple directional shading.

It stands for the cheap synthetic source a person can produce in hours: no textures, no cast shadows,
no camera. The colours are fixed (not drawn from any seed), so every ``sim`` dataset shares one look.
"""

from __future__ import annotations

import numpy as np

from urbangen.world import geometry as g
from urbangen.world.geometry import class_ids
from urbangen.world.layout import Scene
from urbangen.world.renderer import normals, object_array, sky_gradient

SIM_COLORS = {
    "road": (96, 96, 104),
    "sidewalk": (182, 172, 158),
    "building": (168, 140, 112),
    "wall": (196, 188, 170),
    "fence": (150, 120, 86),
    "pole": (128, 128, 128),
    "traffic light": (44, 44, 44),
    "traffic sign": (214, 48, 40),
    "vegetation": (62, 140, 52),
    "terrain": (146, 172, 84),
    "sky": (150, 190, 236),
    "person": (200, 80, 60),
    "rider": (70, 90, 200),
    "car": (40, 80, 160),
    "truck": (220, 220, 220),
    "bus": (230, 190, 40),
    "train": (200, 40, 40),
    "motorcycle": (30, 30, 30),
    "bicycle": (40, 40, 40),
}
# a few alternatives per class so objects are not all alike, still flat
SIM_VARIANTS = {
    "building": [(168, 140, 112), (190, 170, 150), (140, 120, 110), (200, 190, 170)],
    "car": [(40, 80, 160), (180, 30, 30), (220, 220, 220), (30, 30, 30), (120, 120, 130), (40, 120, 60)],
    "person": [(200, 80, 60), (60, 60, 140), (230, 230, 230), (40, 40, 40), (80, 140, 60)],
    "rider": [(70, 90, 200), (220, 180, 40), (40, 40, 40)],
    "traffic sign": [(214, 48, 40), (40, 80, 190), (240, 200, 40), (240, 240, 240)],
}
SIM_PARTS = {  # part -> fixed colour (None: keep the object's colour)
    g.PART_LANE: (240, 240, 240),
    g.PART_CURB: (210, 205, 200),
    g.PART_WINDOW: (70, 96, 130),
    g.PART_DOOR: (90, 60, 40),
    g.PART_GLASS: (50, 62, 84),
    g.PART_WHEEL: (24, 24, 24),
    g.PART_LAMP_RED: (230, 30, 30),
    g.PART_LAMP_AMBER: (245, 160, 20),
    g.PART_LAMP_GREEN: (40, 210, 80),
    g.PART_LAMP_WHITE: (250, 250, 230),
    g.PART_PLATE: (235, 235, 235),
    g.PART_SKIN: (226, 180, 150),
    g.PART_BOTTOM: (50, 60, 100),
    g.PART_TRUNK: (100, 76, 50),
    g.PART_SIGN_RIM: (245, 245, 245),
    g.PART_BAR: (90, 90, 90),
    g.PART_CAP: (220, 215, 205),
    g.PART_CORNICE: (215, 205, 190),
    g.PART_HOUSING: (20, 20, 20),
}
SUN = np.array([0.35, 0.85, -0.4], np.float32) / np.linalg.norm([0.35, 0.85, -0.4])


def _tables() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    ids = class_ids()
    base = np.zeros((256, 3), np.float32)
    variants = np.zeros((256, 8, 3), np.float32)
    for name, colour in SIM_COLORS.items():
        options = SIM_VARIANTS.get(name, [colour])
        base[ids[name]] = colour
        variants[ids[name]] = [options[i % len(options)] for i in range(8)]
    parts = np.zeros((g.NUM_PARTS, 3), np.float32)
    has_part = np.zeros(g.NUM_PARTS, bool)
    for part, colour in SIM_PARTS.items():
        parts[part], has_part[part] = colour, True
    return base, variants, parts, has_part


def render_sim(scene: Scene) -> np.ndarray:
    """The ``sim`` image of ``scene`` (uint8 HxWx3)."""
    base, variants, parts, has_part = _tables()
    labels = object_array(scene, "label_id", np.int64)
    keys = object_array(scene, "key", np.int64)
    # one colour table (classes, then objects, then parts) and one gather instead of per-layer selects
    table = np.concatenate([base, variants[labels, keys % 8], parts])
    index = np.where(scene.obj >= 0, scene.obj + 256, scene.label_ids.astype(np.int32))
    index = np.where(has_part[scene.part], scene.part.astype(np.int32) + 256 + len(labels), index)
    light = (0.62 + 0.38 * np.clip(normals(scene) @ SUN, 0, 1)) / 0.93
    colour = table[index] * light[..., None]
    sky_colour = base[class_ids()["sky"]]
    sky = (scene.label_ids == class_ids()["sky"])[..., None]
    colour = np.where(sky, sky_gradient(scene, sky_colour * 1.12, sky_colour * 0.8), colour)
    return np.clip(colour + 0.5, 0, 255).astype(np.uint8)
