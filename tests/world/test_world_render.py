"""The two renderers: deterministic, one fixed sim look, real domains that differ from sim and each other
but keep a consistent look per style seed, and shadows cast where the sun is blocked."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from urbangen.errors import UrbangenError
from urbangen.world import make_scene, render
from urbangen.world.geometry import class_ids
from urbangen.world.layout import Scene, WorldObject
from urbangen.world.render_real import _sun_visibility

SIZE = (128, 256)
MAIN = ("road", "sidewalk", "building", "vegetation", "sky", "car")


@pytest.fixture(scope="module")
def scenes() -> list[Scene]:
    return [make_scene(seed, SIZE) for seed in (0, 1, 2, 3)]


def class_means(scene: Scene, image: np.ndarray, classes: tuple[str, ...] = MAIN) -> dict[str, np.ndarray]:
    ids = class_ids()
    out = {}
    for name in classes:
        mask = scene.label_ids == ids[name]
        if mask.sum() > 50:
            out[name] = image[mask].astype(np.float64).mean(0)
    return out


def mean_distance(a: dict[str, np.ndarray], b: dict[str, np.ndarray]) -> float:
    common = sorted(set(a) & set(b))
    assert len(common) >= 3
    return float(np.mean([np.linalg.norm(a[k] - b[k]) for k in common]))


def test_renders_are_deterministic_images(scenes):
    scene = scenes[0]
    for style, seed in (("sim", 0), ("real", 5)):
        a, b = render(scene, style, seed), render(scene, style, seed)
        assert a.dtype == np.uint8 and a.shape == (*SIZE, 3)
        assert np.array_equal(a, b)
    assert np.array_equal(render(scene, "sim", 0), render(scene, "sim", 9))  # one fixed source look
    assert not np.array_equal(render(scene, "real", 1), render(scene, "real", 2))


def test_real_class_colours_differ_from_sim(scenes):
    for style_seed in (0, 1, 2):
        distances = [
            mean_distance(class_means(s, render(s, "sim")), class_means(s, render(s, "real", style_seed)))
            for s in scenes
        ]
        assert np.mean(distances) > 40, (style_seed, distances)


def test_real_texture_changes_local_statistics(scenes):
    """Within a class, sim is flat while real varies (textures, shadows, noise)."""
    ids = class_ids()
    for scene in scenes:
        for style, low, high in (("sim", 0, 6), ("real", 8, 255)):
            image = render(scene, style, 3).astype(np.float64)
            mask = (scene.label_ids == ids["road"]) & (scene.part == 0)
            spread = image[mask].std(0).mean()
            assert low <= spread <= high, (style, spread)


def test_each_style_seed_is_a_consistent_domain(scenes):
    """Two scenes of one domain look more alike per class than the same scene in two domains (stuff
    classes: things take per-object colours from the domain's palettes)."""
    stuff = ("road", "sidewalk", "building", "vegetation", "sky")
    within, across = [], []
    for a, b in itertools.pairwise(scenes):
        for seed, other in ((1, 2), (4, 5), (6, 7)):
            here = class_means(a, render(a, "real", seed), stuff)
            within.append(mean_distance(here, class_means(b, render(b, "real", seed), stuff)))
            across.append(mean_distance(here, class_means(a, render(a, "real", other), stuff)))
    assert np.mean(within) < 0.75 * np.mean(across), (np.mean(within), np.mean(across))


def test_unknown_style_is_an_error(scenes):
    with pytest.raises(UrbangenError, match="style"):
        render(scenes[0], "cartoon", 0)


def test_a_building_casts_a_shadow_away_from_the_sun():
    wall = WorldObject(0, "building", "facade", 0, 5.0, 10.0, 0.0, 20.0, 10.0, 1)  # x = 5..17, z = 10..20
    scene = make_scene(0, SIZE)
    scene = Scene(**{**scene.__dict__, "objects": (wall,)})
    sun = np.array([np.cos(0.5), np.sin(0.5), 0.0], np.float32)  # sun low in the east (+X)
    points = np.array([[0.0, 0.0, 15.0], [0.0, 0.0, 30.0], [10.0, 25.0, 15.0], [-3.0, 0.0, 15.0]], np.float32)
    # behind the building (west of it) in shadow; beyond its end, above its roof: lit; far west: long shadow
    np.testing.assert_array_equal(_sun_visibility(scene, points, sun), [0, 1, 1, 0])
    np.testing.assert_array_equal(_sun_visibility(scene, points, -sun * np.array([1, -1, 1])), [1, 1, 1, 1])
