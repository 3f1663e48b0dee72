"""The generated-dataset writer: Cityscapes layout readable back, manifest with checksums, resume."""

from __future__ import annotations

import numpy as np
import pytest

from urbangen.datasets import open_dataset
from urbangen.datasets.writer import DatasetWriter, read_manifest
from urbangen.errors import UrbangenError


def _sample(seed: int):
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, (8, 16, 3), dtype=np.uint8), rng.integers(0, 19, (8, 16), dtype=np.uint8)


def test_written_dataset_reads_back_with_cityscapes_reader(tmp_path):
    writer = DatasetWriter(tmp_path, split="train", city="gen")
    image, label = _sample(0)
    label[0, 0] = 255
    writer.write("gen_000000_000019", image, label, {"source": "world", "seed": 3})
    reader = open_dataset("cityscapes", tmp_path)
    index = reader.index("train")
    assert [s.id for s in index.samples] == ["gen_000000_000019"]
    got_image, got_label = reader.load(index.samples[0])
    assert (got_image == image).all() and (got_label == label).all()
    (record,) = read_manifest(tmp_path)
    assert record["seed"] == 3 and len(record["sha256"]["image"]) == 64


def test_completed_verifies_checksums_and_ignores_torn_line(tmp_path):
    writer = DatasetWriter(tmp_path)
    for i in range(3):
        writer.write(f"gen_{i:06d}_000019", *_sample(i), {})
    image_path, _ = writer.paths("gen_000001_000019")
    image_path.write_bytes(b"tampered")
    with open(writer.manifest_path, "a") as handle:
        handle.write('{"id": "gen_0000')  # an append cut short by a crash
    assert writer.completed() == {"gen_000000_000019", "gen_000002_000019"}


def test_rejects_bad_samples(tmp_path):
    writer = DatasetWriter(tmp_path)
    image, label = _sample(0)
    with pytest.raises(UrbangenError, match="same size"):
        writer.write("gen_000000_000019", image, label[:4], {})
    label[0, 0] = 40
    with pytest.raises(UrbangenError, match=r"\[40\]"):
        writer.write("gen_000000_000019", image, label, {})
    assert not writer.manifest_path.exists()
