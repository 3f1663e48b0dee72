"""Scene layouts: deterministic, rich in classes, and consistent between labels, instances and depth."""

from __future__ import annotations

import numpy as np
import pytest

from urbangen.errors import UrbangenError
from urbangen.world import make_scene
from urbangen.world.geometry import SKY_DEPTH, SURF_GROUND, THING_CLASSES, class_ids

SIZE = (128, 256)


def test_same_seed_same_scene_and_other_seed_other_scene():
    a, b, c = make_scene(3, SIZE), make_scene(3, SIZE), make_scene(4, SIZE)
    for name in ("label_ids", "instance_ids", "depth", "part", "u", "v"):
        assert np.array_equal(getattr(a, name), getattr(b, name)), name
    assert a.meta() == b.meta()
    assert not np.array_equal(a.label_ids, c.label_ids)


def test_at_least_15_of_19_classes_over_20_scenes():
    ids = class_ids()
    assert sorted(ids.values()) == [7, 8, 11, 12, 13, 17, 19, 20, 21, 22, 23, 24, 25, 26, 27, 28, 31, 32, 33]
    present = set()
    for seed in range(20):
        scene = make_scene(seed, SIZE)
        values = set(np.unique(scene.label_ids).tolist())
        assert values <= set(ids.values())  # only the 19 training classes, no void
        present |= values
    assert len(present) >= 15, sorted(present)


@pytest.mark.parametrize("seed", [0, 1, 2, 5])
def test_labels_instances_and_depth_agree(seed):
    scene = make_scene(seed, SIZE)
    label, instance, depth = scene.label_ids, scene.instance_ids, scene.depth
    assert label.dtype == np.uint8 and instance.dtype == np.int32 and depth.dtype == np.float32
    stuff = instance < 1000
    assert np.array_equal(instance[stuff], label[stuff].astype(np.int32))
    assert np.array_equal(instance[~stuff] // 1000, label[~stuff].astype(np.int32))
    names = {v: k for k, v in class_ids().items()}
    assert {names[v] for v in np.unique(label[~stuff])} <= set(THING_CLASSES)
    assert not np.isin(label[stuff], [class_ids()[c] for c in THING_CLASSES]).any()  # every thing is an instance
    drawn = {o.instance_id for o in scene.objects if o.instance_id}
    assert set(np.unique(instance[~stuff]).tolist()) <= drawn
    sky = label == class_ids()["sky"]
    assert np.all(depth[sky] == SKY_DEPTH) and np.all((depth[~sky] > 0) & (depth[~sky] < SKY_DEPTH))


def test_ground_depth_follows_the_camera_geometry():
    scene = make_scene(7, SIZE)
    cam = scene.camera
    rows, cols = np.nonzero((scene.surface == SURF_GROUND) & (scene.depth < 100))
    expected = cam.focal * cam.cam_height / (rows + 0.5 - cam.horizon)
    assert len(rows) > 1000
    np.testing.assert_allclose(scene.depth[rows, cols], expected, rtol=1e-4)
    # the road lies below the horizon and the sky above is never nearer than anything
    assert (rows > cam.horizon).all()


def test_things_occlude_what_lies_behind_them():
    scene = make_scene(11, SIZE)
    cam = scene.camera
    things = scene.instance_ids >= 1000
    rows, cols = np.nonzero(things & (np.arange(SIZE[0])[:, None] > cam.horizon + 1))
    # a thing pixel below the horizon is nearer than the ground that the same pixel would otherwise show
    ground_depth = cam.focal * cam.cam_height / (rows + 0.5 - cam.horizon)
    assert len(rows) > 50
    assert (scene.depth[rows, cols] <= ground_depth + 1e-3).all()


@pytest.mark.parametrize("size", [(100, 256), (128, 20), (16, 64), ("a", 3)])
def test_bad_size_is_a_clear_error(size):
    with pytest.raises(UrbangenError, match="size"):
        make_scene(0, size)
