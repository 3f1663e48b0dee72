"""`urbangen data index | standardize | show` through the real root command, and their bad-input errors."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from urbangen.cli import main
from urbangen.io import read_label, read_rgb, write_png
from urbangen.labels import cityscapes_label_ids, synthia_ids


def run(*args: str):
    return CliRunner().invoke(main, ["data", *args], catch_exceptions=False)


def two_frames(tmp_path: Path, cityscapes_root: Path) -> Path:
    """A Cityscapes root holding two of the real 2048x1024 train frames (symlinks), to keep tests fast."""
    root = tmp_path / "cs"
    for i in (0, 5):
        name = f"aachen_{i:06d}_000019"
        for kind, suffix in (("leftImg8bit", "_leftImg8bit.png"), ("gtFine", "_gtFine_labelIds.png")):
            link = root / kind / "train" / "aachen" / f"{name}{suffix}"
            link.parent.mkdir(parents=True, exist_ok=True)
            link.symlink_to(cityscapes_root / kind / "train" / "aachen" / f"{name}{suffix}")
    return root


def test_index_json_on_real_cityscapes(cityscapes_root):
    result = run("index", "--format", "cityscapes", "--root", str(cityscapes_root), "--split", "train", "--json")
    assert result.exit_code == 0, result.output
    payload = json.loads(result.stdout)  # stdout is exactly one JSON object
    assert payload["n"] == 8 == len(payload["samples"])
    first = payload["samples"][0]
    assert first["id"] == "aachen_000000_000019"
    assert Path(first["image"]).is_absolute() and Path(first["image"]).is_file()
    assert Path(first["label"]).is_absolute() and first["label"].endswith("aachen_000000_000019_gtFine_labelIds.png")
    assert payload["missing"] == [] and payload["unpaired"] == []


def test_index_human_listing_and_synthia_missing(synthia_root):
    result = run("index", "--format", "synthia", "--root", str(synthia_root))
    assert result.exit_code == 0 and "2 samples, 0 unpaired" in result.output and "0000001" in result.output
    payload = json.loads(run("index", "--format", "synthia", "--root", str(synthia_root), "--json").stdout)
    assert payload["missing"] == ["terrain", "truck", "train"]


def test_standardize_real_cityscapes_equals_official_table_and_resumes(tmp_path, cityscapes_root):
    from cityscapesscripts.helpers.labels import labels as table

    root, out = two_frames(tmp_path, cityscapes_root), tmp_path / "out"
    args = ["standardize", "--format", "cityscapes", "--root", str(root), "--split", "train", "--out", str(out)]
    result = run(*args)
    assert result.exit_code == 0, result.output
    assert "wrote 2, skipped 0" in result.stdout and "0 pixels in 0 files" in result.stdout
    assert "standardize" in result.stderr  # tqdm's bar goes to stderr
    for i in (0, 5):
        raw = read_label(root / "gtFine" / "train" / "aachen" / f"aachen_{i:06d}_000019_gtFine_labelIds.png")
        with Image.open(out / f"aachen_{i:06d}_000019.png") as image:
            assert image.mode == "L" and image.size == (2048, 1024)
        written = read_label(out / f"aachen_{i:06d}_000019.png")
        for lab in table:
            if lab.id >= 0 and (raw == lab.id).any():
                expected = lab.trainId if 0 <= lab.trainId < 255 else 255
                assert (written[raw == lab.id] == expected).all(), lab.name
    summary = json.loads((out / "standardize.json").read_text())
    assert summary["missing"] == [] and len(summary["covered"]) == 19
    # resumable: a finished output is skipped, a damaged one is rewritten
    (out / "aachen_000005_000019.png").write_bytes(b"\x89PNG broken")
    result = run(*args)
    assert "wrote 1, skipped 1" in result.stdout
    assert read_label(out / "aachen_000005_000019.png").shape == (1024, 2048)


def test_standardize_synthia_counts_unknown_ids_when_asked(tmp_path, synthia_root, synthia_ids_array, png16):
    bad = synthia_ids_array.copy()
    bad[:2, :3, 0] = 40  # not a SYNTHIA class
    (synthia_root / "GT" / "LABELS" / "0000001.png").write_bytes(png16(bad))
    out = tmp_path / "out"
    args = ["standardize", "--format", "synthia", "--root", str(synthia_root), "--out", str(out)]
    result = CliRunner().invoke(main, ["data", *args])
    assert result.exit_code == 2
    assert "0000001.png: 6 pixels hold ids [40]" in result.output and "--unknown ignore" in result.output
    assert not (out / "0000001.png").exists()
    result = run(*args, "--unknown", "ignore", "--no-progress")
    assert result.exit_code == 0 and "6 pixels in 1 files" in result.stdout
    expected = synthia_ids().apply(bad[..., 0].astype(np.int32), unknown="ignore")
    assert np.array_equal(read_label(out / "0000001.png"), expected)


def test_show_writes_a_grid(tmp_path, acdc_root):
    out = tmp_path / "grid.png"
    options = ["--format", "acdc", "--split", "train", "--n", "2", "--width", "64"]
    result = run("show", *options, "--root", str(acdc_root), "--out", str(out))
    assert result.exit_code == 0, result.output
    grid = read_rgb(out)
    assert grid.shape == (2 * 48 + 4, 3 * 64 + 2 * 4, 3)
    # middle panel of the first row is the colourised label of the first sample
    from urbangen.datasets import open_dataset

    reader = open_dataset("acdc", acdc_root)
    sample = reader.index("train").samples[0]
    label = cityscapes_label_ids().apply(read_label(sample.label))
    colour = reader.mapping().target.colorize(label)
    small = np.asarray(Image.fromarray(colour).resize((64, 48), Image.Resampling.NEAREST))
    assert np.array_equal(grid[:48, 68:132], small)


def test_show_real_label_only_split(tmp_path, cityscapes_root):
    out = tmp_path / "val.png"
    options = ["--format", "cityscapes", "--split", "val", "--n", "1", "--width", "128"]
    result = run("show", *options, "--root", str(cityscapes_root), "--out", str(out))
    assert result.exit_code == 0, result.output
    assert read_rgb(out).shape == (64, 3 * 128 + 8, 3)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--format", "kitti"], "Invalid value for '--format'"),
        (["--format", "cityscapes", "--split", "test"], "split 'test' not found"),
        (["--format", "cityscapes", "--split", "dev"], "unknown split 'dev'"),
        (["--format", "gta5"], "is not a GTA5 folder"),
    ],
)
def test_bad_format_and_split_fail_clearly(cityscapes_root, args, message):
    result = CliRunner().invoke(main, ["data", "index", "--root", str(cityscapes_root), *args, "--json"])
    assert result.exit_code == 2 and message in result.output
    assert "Traceback" not in result.output


def test_corrupt_png_and_size_mismatch_write_nothing(tmp_path, gta5_root, synthia_root):
    out = tmp_path / "out"
    args = ["data", "standardize", "--format", "gta5", "--root", str(gta5_root), "--out", str(out)]
    write_png(gta5_root / "images" / "00003.png", np.zeros((30, 36, 3), np.uint8))
    result = CliRunner().invoke(main, args)
    assert (
        result.exit_code == 2
        and "images/00003.png is 30x36 but" in result.output
        and "labels/00003.png is 20x36" in result.output
    )
    assert not out.exists()
    (gta5_root / "images" / "00003.png").unlink()
    (gta5_root / "labels" / "00003.png").unlink()
    label = gta5_root / "labels" / "00004.png"
    good = label.read_bytes()
    label.write_bytes(good[:30])  # header cut: caught before anything is written
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 2 and "labels/00004.png" in result.output and not out.exists()
    label.write_bytes(good[: len(good) - 40])  # pixel data cut: found when decoding, after 00001 and 00002
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 2 and "labels/00004.png" in result.output and "corrupt or truncated" in result.output
    assert sorted(p.name for p in out.iterdir()) == ["00001.png", "00002.png", "standardize.json"]  # complete
    label.write_bytes(good)
    result = run(*args[1:], "--no-progress")
    assert "wrote 1, skipped 2" in result.stdout
    # the same folder does not take labels of another source
    other = ["--format", "synthia", "--root", str(synthia_root), "--out", str(out)]
    result = CliRunner().invoke(main, ["data", "standardize", *other])
    assert result.exit_code == 2 and "standardized with format='gta5', not 'synthia'" in result.output


def test_commands_on_world_output(tmp_path):
    """Issue 2 §6: the data commands behave as written on `urbangen world make` output."""
    pytest.importorskip("urbangen.world.cli")
    root = tmp_path / "world"
    make = ["world", "make", "--out", str(root), "--split", "val", "--n", "2", "--seed", "3", "--style", "sim"]
    result = CliRunner().invoke(main, [*make, "--style-seed", "0", "--size", "64x128"], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    payload = json.loads(run("index", "--format", "cityscapes", "--root", str(root), "--split", "val", "--json").stdout)
    assert payload["n"] == 2 and all(Path(s["depth"]).is_file() for s in payload["samples"])
    out = tmp_path / "std"
    assert run("standardize", "--format", "cityscapes", "--root", str(root), "--out", str(out)).exit_code == 0
    for sample in payload["samples"]:
        written = read_label(out / f"{sample['id']}.png")
        assert np.array_equal(written, cityscapes_label_ids().apply(read_label(sample["label"])))
