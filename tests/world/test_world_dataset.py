"""``make_dataset`` and ``urbangen world make``: Cityscapes layout that reads back, reproducible bytes,
scenes independent of n and split-specific, resumable, strict about its settings and arguments."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from urbangen.cli import main
from urbangen.datasets import open_dataset
from urbangen.errors import UrbangenError
from urbangen.io import read_label, read_rgb, sha256_file
from urbangen.world import make_dataset, make_scene
from urbangen.world.dataset import sample_paths, scene_seed

SIZE = (64, 128)


def digests(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): sha256_file(p) for p in sorted(root.rglob("*")) if p.is_file()}


def test_dataset_reads_back_with_the_cityscapes_reader(tmp_path):
    ids = make_dataset(tmp_path, "train", 3, seed=1, style="real", style_seed=2, size=SIZE, progress=False)
    assert ids == ["world_000000_000019", "world_000001_000019", "world_000002_000019"]
    reader = open_dataset("cityscapes", tmp_path)
    index = reader.index("train")
    assert [s.id for s in index.samples] == ids and not index.unpaired
    for sample in index.samples:
        image, train_ids = reader.load(sample)  # unknown ids would raise here
        assert image.shape == (*SIZE, 3) and train_ids.shape == SIZE
        assert train_ids.max() <= 18  # every pixel is one of the 19 classes
        instance, depth = read_label(sample.instance), read_label(sample.depth)
        scene = make_scene(scene_seed(1, "train", ids.index(sample.id)), SIZE)
        assert np.array_equal(instance, scene.instance_ids)
        assert np.array_equal(depth, np.clip(np.round(scene.depth * 100), 0, 65535).astype(np.int32))
    described = json.loads((tmp_path / "world_train.json").read_text())
    assert described["complete"] is True
    assert {k: described[k] for k in ("seed", "style", "style_seed", "size", "n")} == {
        "seed": 1,
        "style": "real",
        "style_seed": 2,
        "size": [64, 128],
        "n": 3,
    }


def test_same_seeds_give_byte_identical_files_and_style_seed_changes_only_images(tmp_path):
    a, b, c = tmp_path / "a", tmp_path / "b", tmp_path / "c"
    for out, style_seed in ((a, 4), (b, 4), (c, 5)):
        make_dataset(out, "val", 2, seed=9, style="real", style_seed=style_seed, size=SIZE, progress=False)
    assert digests(a) == digests(b)
    da, dc = digests(a), digests(c)
    images = [k for k in da if "leftImg8bit" in k]
    labels = [k for k in da if "gtFine" in k or "depth" in k]
    assert all(da[k] != dc[k] for k in images) and all(da[k] == dc[k] for k in labels)


def test_scenes_do_not_depend_on_n_and_splits_differ(tmp_path):
    make_dataset(tmp_path / "two", "train", 2, seed=3, style="sim", style_seed=0, size=SIZE, progress=False)
    make_dataset(tmp_path / "three", "train", 3, seed=3, style="sim", style_seed=0, size=SIZE, progress=False)
    make_dataset(tmp_path / "val", "val", 2, seed=3, style="sim", style_seed=0, size=SIZE, progress=False)
    two, three = digests(tmp_path / "two"), digests(tmp_path / "three")
    assert {k: v for k, v in three.items() if k in two and not k.endswith(".json")} == {
        k: v for k, v in two.items() if not k.endswith(".json")
    }
    train = sample_paths(tmp_path / "two", "train", "world", "world_000000_000019")["label"]
    val = sample_paths(tmp_path / "val", "val", "world", "world_000000_000019")["label"]
    assert not np.array_equal(read_label(train), read_label(val))


def test_resume_rewrites_only_missing_files_and_refuses_other_settings(tmp_path):
    make_dataset(tmp_path, "train", 3, seed=0, style="sim", style_seed=0, size=SIZE, progress=False)
    before = digests(tmp_path)
    paths = sample_paths(tmp_path, "train", "world", "world_000001_000019")
    paths["image"].unlink()
    kept = sample_paths(tmp_path, "train", "world", "world_000000_000019")["image"]
    stamp = kept.stat().st_mtime_ns
    make_dataset(tmp_path, "train", 3, seed=0, style="sim", style_seed=0, size=SIZE, progress=False)
    assert digests(tmp_path) == before and kept.stat().st_mtime_ns == stamp
    assert not list(tmp_path.rglob("*.tmp"))
    with pytest.raises(UrbangenError, match="other settings"):
        make_dataset(tmp_path, "train", 3, seed=1, style="sim", style_seed=0, size=SIZE, progress=False)
    # sim has one look whatever the style seed, so another style seed resumes the same dataset
    make_dataset(tmp_path, "train", 4, seed=0, style="sim", style_seed=7, size=SIZE, progress=False)
    assert json.loads((tmp_path / "world_train.json").read_text())["style_seed"] is None


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [({"split": "test"}, "split"), ({"style": "cartoon"}, "style"), ({"n": 0}, "n must"), ({"city": "a_b"}, "city")],
)
def test_bad_arguments_are_clear_errors(tmp_path, kwargs, match):
    args = {"split": "train", "n": 1, "seed": 0, "style": "sim", "style_seed": 0, "size": SIZE, "city": "world"}
    with pytest.raises(UrbangenError, match=match):
        make_dataset(tmp_path, **{**args, **kwargs}, progress=False)


def test_cli_world_make_writes_a_dataset(tmp_path):
    args = ["world", "make", "--out", str(tmp_path), "--split", "val", "--n", "2", "--seed", "5"]
    result = CliRunner().invoke(main, [*args, "--style", "real", "--style-seed", "1", "--size", "64x128", "--quiet"])
    assert result.exit_code == 0, result.output
    assert "wrote 2 real scenes" in result.output
    assert len(open_dataset("cityscapes", tmp_path).index("val")) == 2


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--style", "sim", "--size", "64x100"], "divisible by 8"),
        (["--style", "sim", "--size", "wide"], "HEIGHTxWIDTH"),
        (["--style", "photo", "--size", "64x128"], "photo"),
    ],
)
def test_cli_rejects_bad_size_and_style(tmp_path, extra, message):
    args = ["world", "make", "--out", str(tmp_path), "--split", "train", "--n", "1", "--seed", "0", *extra]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 2 and message in result.output, result.output
    assert not (tmp_path / "leftImg8bit").exists()


def test_cli_world_preview_writes_a_grid(tmp_path):
    out = tmp_path / "grid.png"
    args = ["world", "preview", "--out", str(out), "--seeds", "1,2", "--style-seeds", "3", "--size", "32x64"]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    assert read_rgb(out).shape == (2 * 32 + 2, 3 * 64 + 2 * 2, 3)  # sim | real | labels, 2-pixel gutters
    bad = CliRunner().invoke(main, ["world", "preview", "--out", str(out), "--seeds", "x"])
    assert bad.exit_code == 2 and "--seeds" in bad.output
