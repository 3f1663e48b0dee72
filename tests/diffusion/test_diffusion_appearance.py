"""Target colour statistics recorded by stage 2 and the colour calibration of rendered images."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import scene

from urbangen.diffusion.appearance import MIN_PIXELS, calibrate, class_colour_stats, image_colour_stats
from urbangen.diffusion.artefacts import read_meta
from urbangen.diffusion.sampler import Generator
from urbangen.errors import UrbangenError

COLOURS = {0: (128, 64, 128), 10: (70, 130, 180), 2: (150, 100, 70), 13: (200, 30, 30)}  # those of scene()


def test_class_statistics_pool_images_and_skip_ignore():
    label = np.zeros((10, 14), np.uint8)
    label[:, 7:] = 255
    first, second = np.zeros((10, 14, 3), np.uint8), np.zeros((10, 14, 3), np.uint8)
    first[:, :7], second[:, :7] = (10, 20, 30), (30, 60, 90)
    first[:, 7:] = second[:, 7:] = 255  # under ignore: not counted
    stats = class_colour_stats([(first, label), (second, label)])
    assert list(stats) == ["0"]
    mean, std = stats["0"]
    assert mean == [20.0, 40.0, 60.0] and std == [10.0, 20.0, 30.0]


def test_calibration_moves_each_region_to_its_class_colours_and_leaves_the_rest():
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (32, 64, 3)).astype(np.uint8)
    label = np.zeros((32, 64), np.uint8)
    label[:, 32:] = 13
    label[0, :3] = 5  # a region under MIN_PIXELS
    label[-1] = 255
    stats = {"0": [[100.0, 50.0, 20.0], [5.0, 5.0, 5.0]], "13": [[60.0, 200.0, 60.0], [20.0, 10.0, 2.0]]}
    out = calibrate(image, label, stats)
    for c in (0, 13):
        mean, std = (np.asarray(v) for v in stats[str(c)])
        region = out[label == c].astype(float)
        assert np.abs(region.mean(0) - mean).max() < 1.0
        assert np.abs(region.std(0) - std).max() < 1.5
    for keep in (label == 5, label == 255):
        assert keep.sum() >= 3 and np.array_equal(out[keep], image[keep])
    assert (label == 5).sum() < MIN_PIXELS


def test_stage2_records_the_target_colours_and_sampling_calibrates_to_them(adapted):
    meta = read_meta(adapted / "stage2")
    stats = meta["appearance"]
    assert set(stats) == {str(c) for c in COLOURS}
    for c, colour in COLOURS.items():
        mean, std = stats[str(c)]
        assert np.abs(np.asarray(mean) - colour).max() < 3 and 4 < min(std) < 12  # scene() adds noise of sd 8
    generator = Generator.from_pretrained(adapted / "stage2")
    labels = np.stack([scene(i)[1] for i in range(2)])
    plain = generator.generate(labels, [1, 2], steps=2)
    calibrated = generator.generate(labels, [1, 2], steps=2, calibrate=True)
    for c, colour in COLOURS.items():
        near = np.abs(calibrated[labels == c].mean(0) - colour).max()
        assert near < 3 < np.abs(plain[labels == c].mean(0) - colour).max()
    assert np.array_equal(calibrated[labels == 255], plain[labels == 255])
    exemplars = meta["appearance_exemplars"]
    assert len(exemplars) == meta["data"]["images"]
    assert all(set(e) <= set(stats) for e in exemplars)
    drawn = generator.generate(labels, [1, 2], steps=2, calibrate="exemplar")
    for i in range(2):  # each image takes one target image's colours (scene() colours, per-image noise)
        for c, colour in COLOURS.items():
            assert np.abs(drawn[i][labels[i] == c].mean(0) - colour).max() < 3
    assert np.array_equal(drawn, generator.generate(labels, [1, 2], steps=2, calibrate="exemplar"))
    with pytest.raises(UrbangenError, match="'pooled', 'exemplar' or false"):
        generator.generate(labels, [1, 2], steps=2, calibrate="histogram")
    del generator.config["appearance_exemplars"]
    with pytest.raises(UrbangenError, match="appearance_exemplars"):
        generator.generate(labels, [1, 2], steps=2, calibrate="exemplar")
    del generator.config["appearance"]
    with pytest.raises(UrbangenError, match="no target colour statistics"):
        generator.generate(labels, [1, 2], steps=2, calibrate=True)


def test_image_statistics_keep_each_images_classes_and_skip_small_regions():
    label = np.zeros((10, 14), np.uint8)
    label[:, 7:] = 13
    label[0, 0] = 5  # one pixel: under MIN_PIXELS, not an exemplar region
    first, second = np.zeros((10, 14, 3), np.uint8), np.zeros((10, 14, 3), np.uint8)
    first[label == 0], second[label == 0] = (10, 20, 30), (30, 60, 90)
    first[label == 13] = second[label == 13] = (200, 0, 0)
    exemplars = image_colour_stats([(first, label), (second, label)])
    assert [sorted(e) for e in exemplars] == [["0", "13"], ["0", "13"]]
    assert exemplars[0]["0"] == [[10.0, 20.0, 30.0], [0.0, 0.0, 0.0]]
    assert exemplars[1]["0"][0] == [30.0, 60.0, 90.0]
    assert len(image_colour_stats([(first, label)] * 5, limit=3)) == 3


def test_exemplar_calibration_takes_one_target_images_colours_and_varies_with_the_seed():
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (32, 64, 3)).astype(np.uint8)
    label = np.zeros((32, 64), np.uint8)
    label[:, 32:] = 13
    pooled = {"0": [[100.0, 100.0, 100.0], [5.0, 5.0, 5.0]], "13": [[60.0, 60.0, 60.0], [5.0, 5.0, 5.0]]}
    dark = {"0": [[20.0, 20.0, 20.0], [2.0, 2.0, 2.0]], "13": [[10.0, 10.0, 10.0], [2.0, 2.0, 2.0]]}
    bright = {"0": [[220.0, 200.0, 180.0], [8.0, 8.0, 8.0]]}  # no class 13: taken from the image holding it
    means = set()
    for seed in range(8):
        out = calibrate(image, label, pooled, exemplars=[dark, bright], seed=seed)
        road, sign = out[label == 0].astype(float), out[label == 13].astype(float)
        assert any(np.abs(road.mean(0) - e["0"][0]).max() < 1.0 for e in (dark, bright))
        assert np.abs(sign.mean(0) - dark["13"][0]).max() < 1.0
        means.add(round(float(road.mean())))
        assert np.array_equal(out, calibrate(image, label, pooled, exemplars=[dark, bright], seed=seed))
    assert len(means) == 2  # both exemplars are drawn
