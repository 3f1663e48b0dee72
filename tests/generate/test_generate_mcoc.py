"""MCOC, rectification and selection on hand-made label maps with known answers."""

from __future__ import annotations

import numpy as np
import pytest

from urbangen.generate.config import McocConfig
from urbangen.generate.mcoc import best_candidate, extract_objects, score
from urbangen.generate.rectify import rectify
from urbangen.generate.select import class_report, decide

ROAD, BUILDING, SKY, CAR = 0, 2, 10, 13


def two_cars() -> np.ndarray:
    label = np.zeros((20, 20), np.uint8)
    label[1:7, 1:7] = CAR  # object A, 36 px
    label[12:18, 12:18] = CAR  # object B, 36 px
    return label


def test_mcoc_is_mean_over_classes_of_mean_over_objects():
    label = two_cars()
    pred = label.copy()
    pred[12:15, 12:18] = ROAD  # half of B predicted as road
    objects = extract_objects(label, erosion=0, min_size=1)
    assert objects.count == 3  # road (one component), A, B
    result = score(objects, pred)
    # car: mean(A=1, B=0.5) = 0.75 (pixel-weighted would be 0.75 too; see the instance test for the difference)
    assert result.per_class == pytest.approx({ROAD: 1.0, CAR: 0.75})
    assert result.mcoc == pytest.approx((1.0 + 0.75) / 2)


def test_erosion_forgives_boundary_errors_and_border_does_not_erode():
    label = np.zeros((20, 20), np.uint8)
    label[5:12, 5:12] = CAR  # 7x7 object
    pred = label.copy()
    pred[5, 5:12] = ROAD  # the object's top row is drawn wrong
    assert score(extract_objects(label, erosion=0, min_size=1), pred).per_class[CAR] == pytest.approx(42 / 49)
    assert score(extract_objects(label, erosion=1, min_size=1), pred).per_class[CAR] == 1.0
    # road touches the image border: the border does not erode it, only the car boundary does
    core = extract_objects(label, erosion=2, min_size=1).core
    assert core[0, 0] != 0 and core[19, 19] != 0 and core[5, 5] == 0


def test_small_objects_are_not_scored():
    label = np.zeros((20, 20), np.uint8)
    label[2:5, 2:5] = CAR  # 9 px
    objects = extract_objects(label, erosion=0, min_size=10)
    result = score(objects, np.zeros_like(label))
    assert CAR not in result.per_class and result.mcoc == 1.0
    assert score(extract_objects(np.full((4, 4), 255, np.uint8)), np.zeros((4, 4), np.uint8)).mcoc is None


def test_instances_split_touching_objects_of_one_class():
    label = np.zeros((12, 20), np.uint8)
    label[2:6, 2:18] = CAR  # two touching cars: 4x6 and 4x10
    instance = np.zeros_like(label, dtype=np.int32)
    instance[2:6, 2:8] = 26001
    instance[2:6, 8:18] = 26002
    pred = label.copy()
    pred[2:6, 8:18] = ROAD  # the bigger car is not drawn
    with_instances = score(extract_objects(label, instance, erosion=0, min_size=1), pred)
    components = score(extract_objects(label, None, erosion=0, min_size=1), pred)
    assert with_instances.per_class[CAR] == pytest.approx(0.5)  # mean over the two objects
    assert components.per_class[CAR] == pytest.approx(24 / 64)  # one component, pixel fraction


def test_best_candidate_prefers_highest_mcoc_and_skips_unscorable():
    label = two_cars()
    objects = extract_objects(label, erosion=0, min_size=1)
    bad = np.zeros_like(label)
    scores = [score(objects, bad), score(objects, label), score(objects, bad)]
    assert best_candidate(scores) == 1


def test_rectify_withdraws_undrawn_objects_and_confident_boundary_disagreement():
    label = np.zeros((20, 30), np.uint8)
    label[:, 15:] = BUILDING
    label[3:9, 3:9] = CAR  # 36 px car, not drawn at all
    pred = label.copy()
    pred[3:9, 3:9] = ROAD
    pred[12:16, 13:15] = BUILDING  # the building edge drawn 2 px further left (8 px, near the boundary)
    pred[18, 2] = BUILDING  # a confident error far from any boundary: kept
    confidence = np.full(label.shape, 0.95, np.float32)
    confidence[12, 13:15] = 0.5  # not confident: kept
    objects = extract_objects(label, erosion=0, min_size=4)
    cons = score(objects, pred).per_object
    out = rectify(label, objects, cons, pred, confidence, object_threshold=0.3, band=3, band_confidence=0.9)
    assert (out.label[3:9, 3:9] == 255).all()
    assert out.objects == {CAR: 36}
    assert out.boundary == {ROAD: 6}
    assert (out.label[13:16, 13:15] == 255).all() and (out.label[12, 13:15] == ROAD).all()
    assert out.label[18, 2] == ROAD and out.total == 42
    assert (out.label == 255).sum() == 42  # nothing else touched


def test_rectify_thresholds_switch_rules_off():
    label = two_cars()
    pred = np.zeros_like(label)
    objects = extract_objects(label, erosion=0, min_size=1)
    cons = score(objects, pred).per_object
    ones = np.ones(label.shape, np.float32)
    out = rectify(label, objects, cons, pred, ones, object_threshold=0.0, band=0, band_confidence=0.9)
    assert out.total == 0 and (out.label == label).all()


def _line(sample_id, mcoc, classes):
    return {"id": sample_id, "best_mcoc": mcoc, "classes": classes}


def test_decide_threshold_unscorable_and_rare_class_rescue():
    scores = [
        _line("a", 0.9, ["road", "car"]),
        _line("b", 0.4, ["road", "train"]),
        _line("c", 0.3, ["road", "train"]),
        _line("d", None, ["road"]),
        _line("e", 0.2, ["road", "car"]),
    ]
    plain = decide(scores, McocConfig(threshold=0.5))
    assert [plain[i].kept for i in "abcde"] == [True, False, False, False, False]
    assert plain["d"].reason == "unscorable"
    rescued = decide(scores, McocConfig(threshold=0.5, min_kept_per_class=1))
    # train (rarest) gets its best dropped map back; car already has one kept; road then has two
    assert {i for i in "abcde" if rescued[i].kept} == {"a", "b"} and rescued["b"].reason == "rescued"
    table, warnings = class_report(scores, plain, ("road", "car", "train", "bus"), warn_drop=0.5)
    assert table["train"] == {"maps": 2, "kept": 0, "dropped": 2, "drop_fraction": 1.0}
    assert table["car"]["kept"] == 1 and table["bus"]["maps"] == 0
    assert any("'train' lost all 2" in w for w in warnings)
    assert any("'road' lost 4 of 5" in w for w in warnings)
    assert not any("'car'" in w for w in warnings)  # 50% is not more than 50%


def test_preview_row_shows_four_tiles_and_shrinks_big_maps():
    from urbangen.generate.preview import MAX_TILE_WIDTH, preview_row
    from urbangen.labels import cityscapes19

    taxonomy = cityscapes19()
    label = two_cars()
    image = np.zeros((20, 20, 3), np.uint8)
    row = preview_row(taxonomy, label, image, label, None, gap=2)
    assert row.shape == (20, 4 * 20 + 3 * 2, 3)
    assert (row[3, 3] == taxonomy.colors[CAR]).all() and (row[3, 22 + 3] == 0).all()
    assert (row[0, 66:] == 96).all()  # no prediction: a grey tile
    big = np.zeros((1024, 2048), np.uint8)
    wide = preview_row(taxonomy, big, np.zeros((1024, 2048, 3), np.uint8), big, big)
    assert wide.shape == (256, 4 * MAX_TILE_WIDTH + 6, 3)


def test_relative_scores_divide_by_the_class_median_and_skip_classes_the_segmenter_cannot_see():
    from urbangen.generate.mcoc import class_references, relative_line

    def line(road, car, wall):
        per_class = {"road": road, "car": car, "wall": wall}
        return {
            "best": 0,
            "best_mcoc": sum(per_class.values()) / 3,
            "candidates": [{"mcoc": 0.0, "per_class": per_class}],
        }

    lines = [line(0.2, 0.9, 0.0), line(0.4, 0.9, 0.0), line(0.1, 0.3, 0.0)]
    refs = class_references(lines)
    assert refs == {"car": 0.9, "road": 0.2, "wall": 0.0}
    for min_reference in (0.0, 0.1):  # a class at 0 is never judged (and never divided by)
        out = [relative_line(x, refs, min_reference) for x in lines]
        assert [x["candidates"][0]["per_class"] for x in out] == [
            {"road": 1.0, "car": 1.0},
            {"road": 1.0, "car": 1.0},
            {"road": 0.5, "car": pytest.approx(1 / 3)},
        ]
        assert (
            out[2]["best_mcoc"] == pytest.approx((0.5 + 1 / 3) / 2) and out[2]["raw_best_mcoc"] == lines[2]["best_mcoc"]
        )
    only_wall = relative_line(
        {"best": 0, "best_mcoc": 0.0, "candidates": [{"mcoc": 0.0, "per_class": {"wall": 0.0}}]}, refs, 0.1
    )
    assert only_wall["best_mcoc"] is None and only_wall["unjudged"]
