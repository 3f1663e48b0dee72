"""Readers on real files from ../shared/realdata: Cityscapes (full size and small), Mapillary, BDD100K."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from urbangen.datasets import open_dataset
from urbangen.datasets.base import natural_key
from urbangen.errors import UrbangenError
from urbangen.io import read_label


def official_train_ids(label_ids: np.ndarray) -> np.ndarray:
    """labelId -> trainId straight from cityscapesscripts' table, one id at a time (no lookup table)."""
    from cityscapesscripts.helpers.labels import labels as table

    out = np.full(label_ids.shape, -1, np.int32)
    for lab in table:
        if lab.id >= 0:
            out[label_ids == lab.id] = lab.trainId if 0 <= lab.trainId < 255 else 255
    assert (out >= 0).all(), "label holds ids outside the official table"
    return out


def test_cityscapes_train_and_label_only_val(cityscapes_root):
    reader = open_dataset("cityscapes", cityscapes_root)
    train = reader.index("train")
    assert len(train) == 8 and not train.unpaired
    assert [s.id for s in train.samples] == [f"aachen_{i:06d}_000019" for i in range(8)]
    first = train.samples[0]
    assert first.image.is_absolute() and first.image.is_file() and first.label.name.endswith("_gtFine_labelIds.png")
    assert first.instance.name == "aachen_000000_000019_gtFine_instanceIds.png"
    assert first.meta["city"] == "aachen" and first.meta["split"] == "train"
    val = reader.index("val")
    assert len(val) == 15 and all(s.image is None and s.label.is_file() for s in val.samples)
    assert {s.meta["city"] for s in val.samples} == {"frankfurt"}
    both = reader.index()
    assert len(both) == 23 and [s.id for s in both.samples] == sorted(s.id for s in both.samples)


def test_cityscapes_city_comes_from_the_folder(tmp_path, cityscapes_root):
    """A city folder whose name differs from the id prefix (as a writer may produce) is reported as is."""
    src = cityscapes_root / "gtFine" / "val" / "frankfurt" / "frankfurt_000000_000576_gtFine_labelIds.png"
    dst = tmp_path / "gtFine" / "val" / "lindau" / src.name
    dst.parent.mkdir(parents=True)
    dst.symlink_to(src)
    (sample,) = open_dataset("cityscapes", tmp_path).index("val").samples
    assert sample.meta["city"] == "lindau"


def test_cityscapes_full_size_standardised_equals_official_table(cityscapes_root):
    reader = open_dataset("cityscapes", cityscapes_root)
    for sample in reader.index("train").samples[:2]:
        image, train_ids = reader.load(sample)
        raw = read_label(sample.label)
        assert image.shape == (1024, 2048, 3) and train_ids.shape == (1024, 2048) and train_ids.dtype == np.uint8
        assert np.array_equal(train_ids, official_train_ids(raw))


def test_cityscapes_small_matches_shipped_train_ids(realdata):
    """The shipped labelTrainIds was downscaled separately from labelIds (mmseg's test data), so 77 of
    32768 pixels on class boundaries differ; every pixel must still agree within its 3x3 neighbourhood."""
    root = realdata / "cityscapes_small"
    reader = open_dataset("cityscapes", root)
    (sample,) = reader.index("val").samples
    assert sample.image is not None and sample.meta["label_encoding"] == "labelIds"
    ours = reader.load_train_ids(sample)
    shipped = read_label(str(sample.label).replace("_labelIds", "_labelTrainIds"))
    assert ours.shape == shipped.shape == (128, 256)
    assert (ours == shipped).mean() > 0.997
    padded = np.pad(shipped, 1, mode="edge")
    h, w = shipped.shape
    around = np.stack([padded[dy : dy + h, dx : dx + w] for dy in range(3) for dx in range(3)])
    assert (around == ours[None]).any(axis=0).all()


def test_cityscapes_train_ids_files_are_read_as_train_ids(tmp_path, realdata):
    """A dataset holding only labelTrainIds (urbangen's writer) is read without remapping."""
    src = realdata / "cityscapes_small" / "gtFine" / "val" / "frankfurt"
    dst = tmp_path / "gtFine" / "val" / "frankfurt"
    dst.mkdir(parents=True)
    shutil.copy(src / "frankfurt_000000_000294_gtFine_labelTrainIds.png", dst)
    (sample,) = open_dataset("cityscapes", tmp_path).index("val").samples
    assert sample.meta["label_encoding"] == "trainIds"
    assert np.array_equal(open_dataset("cityscapes", tmp_path).load_train_ids(sample), read_label(sample.label))


def test_mapillary_v12_crop_with_its_config(realdata):
    root = realdata / "mapillary_vistas"
    reader = open_dataset("mapillary", root)
    index = reader.index()
    (sample,) = index.samples
    assert sample.id == "__CRyFzoDOXn6unQ6a3DnQ" and sample.label.parent.name == "v1.2"
    image, train_ids = reader.load(sample)
    assert image.shape == (100, 100, 3)
    raw = read_label(sample.label)
    names = [label["name"] for label in json.loads(reader.config_path.read_text())["labels"]]
    tax = reader.mapping().target
    expected = {"construction--structure--building": "building", "object--support--pole": "pole"}
    for value in np.unique(raw):
        name = names[value]
        want = tax.index(expected[name]) if name in expected else 255  # street lights are ignored
        assert (train_ids[raw == value] == want).all(), name
    with pytest.raises(UrbangenError, match="unsplit"):
        reader.index("train")


def test_mapillary_v20_labels_read_through_their_own_config(tmp_path, realdata):
    """v2.0 ids differ (building 27, street light 84, pole 85 in config_v2.0.json); standardised they must
    equal the v1.2 labels of the same crop."""
    src = realdata / "mapillary_vistas"
    root = tmp_path / "vistas"
    shutil.copytree(src / "images", root / "training" / "images")
    shutil.copytree(src / "v2.0", root / "training" / "v2.0" / "labels")
    shutil.copytree(src / "v1.2", root / "training" / "v1.2" / "labels")
    v1 = json.loads((src / "mapillary-vistas-dataset_public_v1.1_config.json").read_text())
    names = [f"void--placeholder-{i}" for i in range(124)]
    names[27], names[84], names[85] = (
        "construction--structure--building",
        "object--street-light",
        "object--support--pole",
    )
    (root / "config_v2.0.json").write_text(json.dumps({"version": "2.0", "labels": [{"name": n} for n in names]}))
    (root / "config_v1.2.json").write_text(json.dumps({**v1, "version": "1.2"}))
    v12 = open_dataset("mapillary", root)  # config_v1.2.json is the default
    v20 = open_dataset("mapillary", root, mapping_file=root / "config_v2.0.json")
    (a,) = v12.index("train").samples
    (b,) = v20.index("train").samples
    assert a.label.parts[-3] == "v1.2" and b.label.parts[-3] == "v2.0"
    assert not np.array_equal(read_label(a.label), read_label(b.label))
    assert np.array_equal(v12.load_train_ids(a), v20.load_train_ids(b))
    with pytest.raises(UrbangenError, match=r"split 'val' not found"):
        v12.index("val")


def test_bdd100k_real_masks(bdd_root):
    reader = open_dataset("bdd100k", bdd_root)
    val = reader.index("val")
    assert len(val) == 2 and all(s.image is None for s in val.samples)
    for sample in val.samples:
        raw = read_label(sample.label)
        assert raw.shape == (720, 1280)
        assert np.array_equal(reader.load_train_ids(sample), raw)  # already trainIds
    train = reader.index("train")
    assert [s.id for s in train.samples] == ["0a0a0b1a-7c39d841"]
    assert [p.name for p in train.unpaired] == ["0a0a0b1a-unpaired.jpg"]
    image, label = reader.load(train.samples[0])
    assert image.shape == (720, 1280, 3) and label.shape == (720, 1280)
    (test,) = reader.index("test").samples
    assert test.label is None and test.image.suffix == ".jpg"
    assert sorted(reader.index().samples, key=lambda s: natural_key(s.id)) == list(reader.index().samples)
