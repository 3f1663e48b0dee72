"""Per-source label mappings: SYNTHIA's and Vistas' ids, declared missing classes, unknown ids."""

from __future__ import annotations

import json

import numpy as np
import pytest

from urbangen import labels
from urbangen.datasets import FORMATS
from urbangen.errors import UrbangenError


def test_synthia_ids_follow_its_readme_and_declare_terrain_truck_train_missing():
    mapping = labels.synthia_ids()
    tax = mapping.target
    # SYNTHIA-RAND-CITYSCAPES README ids: 3 road, 10 pedestrian, 17 rider, 21 wall, 22 lanemarking, 16 terrain
    sample = np.array([[3, 10, 17, 21, 22, 16, 0]], dtype=np.int32)
    assert mapping.apply(sample).tolist() == [
        [tax.index("road"), tax.index("person"), tax.index("rider"), tax.index("wall"), 255, 255, 255]
    ]
    assert mapping.missing == ("terrain", "truck", "train")
    assert len(mapping.covered) == 16
    provided = set(np.unique(mapping.lut)) - {labels.UNMAPPED, labels.IGNORE}
    assert provided == set(mapping.covered)
    with pytest.raises(UrbangenError, match=r"\[23\]"):
        mapping.apply(np.array([[23]]), source_path="0000001.png")


def test_mapillary_table_covers_both_official_configs(realdata):
    config = realdata / "mapillary_vistas" / "mapillary-vistas-dataset_public_v1.1_config.json"
    names = [label["name"] for label in json.loads(config.read_text())["labels"]]
    table = labels.mapillary_to_cityscapes()
    assert len(names) == 66 and set(names) <= set(table)
    mapping = labels.mapillary_ids(names)
    assert (mapping.lut[:66] != labels.UNMAPPED).all()
    assert set(np.unique(mapping.lut[:66])) == set(range(19)) | {255}  # all 19 classes, nothing missing
    tax = mapping.target
    for name, target in [
        ("construction--flat--road", "road"),
        ("marking--general", "road"),
        ("construction--barrier--curb", "sidewalk"),
        ("object--vehicle--on-rails", "train"),
        ("human--rider--motorcyclist", "rider"),
    ]:
        assert mapping.lut[names.index(name)] == tax.index(target)
    for name in ("void--unlabeled", "void--ego-vehicle", "object--traffic-sign--back", "object--vehicle--caravan"):
        assert mapping.lut[names.index(name)] == labels.IGNORE


def test_unknown_vistas_names_stay_unknown():
    mapping = labels.mapillary_ids(["construction--flat--road", "object--hover-board"])
    label = np.array([[0, 1, 1]], dtype=np.uint8)
    with pytest.raises(UrbangenError, match=r"2 pixels hold ids \[1\]"):
        mapping.apply(label, source_path="x.png")
    mapped, count = mapping.apply_counted(label, unknown="ignore")
    assert mapped.tolist() == [[0, 255, 255]] and count == 2


def test_ids_beyond_the_table_are_unknown_not_a_crash():
    mapping = labels.synthia_ids()
    label = np.array([[3, 4000, 70000]], dtype=np.int32)
    with pytest.raises(UrbangenError, match=r"4000"):
        mapping.apply(label)
    mapped, count = mapping.apply_counted(label, unknown="ignore")
    assert mapped.tolist() == [[0, 255, 255]] and count == 2


def test_a_mapping_cannot_provide_a_class_it_declares_missing():
    with pytest.raises(UrbangenError, match=r"declares missing"):
        labels.mapping_from_names("bad", {0: "road", 1: "train"}, missing=("train",))
    with pytest.raises(UrbangenError, match=r"no class 'tram'"):
        labels.mapping_from_names("bad", {0: "road"}, missing=("tram",))


@pytest.mark.parametrize("format_", sorted(set(FORMATS) - {"mapillary", "folder"}))
def test_every_fixed_mapping_lists_only_classes_it_can_produce(format_, tmp_path):
    import importlib

    module, cls = FORMATS[format_].split(":")
    reader_cls = getattr(importlib.import_module(module), cls)
    mapping = reader_cls(tmp_path).mapping()
    provided = set(np.unique(mapping.lut)) - {labels.UNMAPPED, labels.IGNORE}
    assert provided == set(mapping.covered)
