"""Readers on fixtures that follow each format's documented layout: ACDC, GTA5, SYNTHIA, Synscapes, folder."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from urbangen.datasets import open_dataset
from urbangen.datasets.base import read_depth
from urbangen.datasets.png16 import read_png_channels
from urbangen.errors import UrbangenError
from urbangen.io import read_label, write_png
from urbangen.labels import cityscapes_label_ids, synthia_ids


def test_acdc_conditions_splits_and_unpaired(acdc_root):
    reader = open_dataset("acdc", acdc_root)
    train = reader.index("train")
    assert [s.id for s in train.samples] == [
        "GOPR0351_frame_000001",
        "GOPR0475_frame_000041",
        "GOPR0475_frame_000042",
    ]
    assert [s.meta["condition"] for s in train.samples] == ["night", "fog", "fog"]
    assert train.samples[1].meta["sequence"] == "GOPR0475"
    assert [p.name for p in train.unpaired] == ["GOPR0475_frame_000099_rgb_anon.png"]
    assert len(reader.index()) == 4
    sample = train.samples[0]
    image, label = reader.load(sample)
    assert image.shape == (24, 32, 3)
    assert np.array_equal(label, cityscapes_label_ids().apply(read_label(sample.label)))
    with pytest.raises(UrbangenError, match=r"split 'test' not found .*rgb_anon/<condition>/test"):
        reader.index("test")


def test_gta5_palette_labels_and_official_split(gta5_root):
    reader = open_dataset("gta5", gta5_root)
    everything = reader.index()
    assert [s.id for s in everything.samples] == ["00001", "00002", "00003", "00004"]
    assert [s.id for s in reader.index("train").samples] == ["00001", "00002", "00004"]
    assert [s.id for s in reader.index("val").samples] == ["00003"]
    sample = everything.samples[0]
    assert Image.open(sample.label).mode == "P"
    _, label = reader.load(sample)
    assert np.array_equal(label, cityscapes_label_ids().apply(np.asarray(Image.open(sample.label))))


def test_gta5_split_needs_split_mat_and_size_mismatch_is_named(gta5_root, rng):
    (gta5_root / "split.mat").unlink()
    reader = open_dataset("gta5", gta5_root)
    with pytest.raises(UrbangenError, match=r"split\.mat"):
        reader.index("train")
    write_png(gta5_root / "images" / "00002.png", np.zeros((21, 36, 3), np.uint8))  # as some GTA5 frames are
    sample = reader.index().samples[1]
    with pytest.raises(UrbangenError, match=r"labels/00002\.png is 20x36.*images/00002\.png is 21x36"):
        reader.load(sample)


def test_png16_decoder_is_exact_where_pillow_truncates(tmp_path, synthia_ids_array, rng, png16):
    path = tmp_path / "label.png"
    path.write_bytes(png16(synthia_ids_array))
    # the hazard this reader exists for: Pillow keeps only the high byte, so every class id reads as 0
    assert (np.asarray(Image.open(path))[..., 0] == 0).all()
    assert np.array_equal(read_png_channels(path), synthia_ids_array)
    rgba = rng.integers(0, 65536, (9, 7, 4)).astype(np.uint16)
    (tmp_path / "rgba.png").write_bytes(png16(rgba))
    assert np.array_equal(read_png_channels(tmp_path / "rgba.png"), rgba)
    write_png(tmp_path / "grey.png", rgba[..., 0].astype(np.uint8))
    assert read_png_channels(tmp_path / "grey.png").shape == (9, 7, 1)


def test_synthia_reads_class_ids_from_the_first_16bit_channel(synthia_root, synthia_ids_array):
    reader = open_dataset("synthia", synthia_root)
    index = reader.index()
    assert [s.id for s in index.samples] == ["0000000", "0000001"]
    image, label = reader.load(index.samples[0])
    assert image.shape == (20, 30, 3)
    assert np.array_equal(reader.read_label_ids(index.samples[0]), synthia_ids_array[..., 0])
    assert np.array_equal(label, synthia_ids().apply(synthia_ids_array[..., 0].astype(np.int32)))
    assert reader.mapping().missing == ("terrain", "truck", "train")
    with pytest.raises(UrbangenError, match="no splits"):
        reader.index("train")


def test_synthia_rejects_a_single_channel_label(synthia_root):
    reader = open_dataset("synthia", synthia_root)
    sample = reader.index().samples[0]
    write_png(sample.label, np.zeros((20, 30), np.uint8))
    with pytest.raises(UrbangenError, match=r"class id in the first channel"):
        reader.load(sample)


def test_synscapes_natural_order_depth_instances_meta(synscapes_root):
    reader = open_dataset("synscapes", synscapes_root)
    index = reader.index()
    assert [s.id for s in index.samples] == ["1", "2", "10"]
    sample = index.samples[2]
    assert sample.depth.name == "10.npy" and sample.instance.name == "10.png"
    assert sample.meta["meta_json"].endswith("meta/10.json")
    depth = read_depth(sample.depth)
    assert depth.dtype == np.float32 and depth.shape == (16, 32) and depth.min() >= 1 and depth.max() <= 80
    _, label = reader.load(sample)
    assert np.array_equal(label, cityscapes_label_ids().apply(read_label(sample.label)))


def test_folder_templates_and_mapping_yaml(folder_root):
    reader = open_dataset("folder", folder_root)
    index = reader.index()
    assert [s.id for s in index.samples] == ["0001", "0002"]
    assert index.samples[0].image.name == "rgb_0001.png" and index.samples[0].label.name == "ss_0001.png"
    raw = read_label(index.samples[0].label)
    _, label = reader.load(index.samples[0])
    tax = reader.mapping().target
    expected = np.array([tax.index("road"), tax.index("car"), 255, tax.index("sky")])[raw]
    assert np.array_equal(label, expected)
    assert reader.mapping().missing == ("train",)


@pytest.mark.parametrize(
    ("yaml_text", "message"),
    [
        ("source_name: x\nids: {0: tram}\n", r"mapping\.yaml[\s\S]*ids[\s\S]*'tram' is not a cityscapes19 class"),
        ("source_name: x\nids: {0: road}\nmissing: [train]\ncolour: red\n", r"colour: unknown field"),
        ("source_name: x\nids: {0: road, 1: train}\nmissing: [train]\n", r"mapping\.yaml: .*declares missing"),
        ("source_name: x\nids: {0: road}\nlabel_name: ss.png\n", r"label_name[\s\S]*\{id\} exactly once"),
    ],
)
def test_folder_mapping_errors_name_the_file_and_field(folder_root, yaml_text, message):
    (folder_root / "mapping.yaml").write_text(yaml_text)
    with pytest.raises(UrbangenError, match=message):
        open_dataset("folder", folder_root)


def test_folder_unknown_ids_and_splits(folder_root, rng):
    write_png(folder_root / "labels" / "ss_0002.png", np.full((12, 16), 9, np.uint8))
    reader = open_dataset("folder", folder_root)
    sample = reader.index().samples[1]
    with pytest.raises(UrbangenError, match=r"ss_0002\.png: 192 pixels hold ids \[9\] that urbansyn-test"):
        reader.load(sample)
    assert (reader.load(sample, unknown="ignore")[1] == 255).all()
    with pytest.raises(UrbangenError, match=r"split 'val' not found"):
        reader.index("val")
    write_png(folder_root / "images" / "val" / "rgb_0009.png", rng.integers(0, 255, (12, 16, 3), dtype=np.uint8))
    (val,) = reader.index("val").samples
    assert val.id == "0009" and val.label is None


def test_duplicate_ids_across_conditions_are_an_error(acdc_root, palette_label):
    name = "GOPR0475_frame_000041"
    write_png(
        acdc_root / "rgb_anon" / "rain" / "train" / "GOPR0475" / f"{name}_rgb_anon.png", np.zeros((4, 4, 3), np.uint8)
    )
    palette_label(acdc_root / "gt" / "rain" / "train" / "GOPR0475" / f"{name}_gt_labelIds.png", np.zeros((4, 4)))
    with pytest.raises(UrbangenError, match=r"sample id 'GOPR0475_frame_000041' occurs twice"):
        open_dataset("acdc", acdc_root).index("train")
