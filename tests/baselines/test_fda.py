"""FDA: phase kept, low-frequency amplitude taken from the target, dataset translation and its CLI."""

from __future__ import annotations

import numpy as np
import pytest
from click.testing import CliRunner

from urbangen.baselines.fda import fda_transfer
from urbangen.cli import main
from urbangen.datasets import open_dataset
from urbangen.datasets.writer import DatasetWriter, read_manifest
from urbangen.errors import UrbangenError


def _images(h=48, w=64):
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[:h, :w]
    src = np.stack([80 + 40 * np.sin(xx / 5), 90 + 30 * np.cos(yy / 4), 100 + 40 * np.sin(xx / 1.5)], -1)
    src = np.clip(src + rng.normal(0, 5, (h, w, 3)), 0, 255).astype(np.uint8)
    trg = np.clip(np.array([170, 120, 60]) + rng.normal(0, 30, (h, w, 3)), 0, 255).astype(np.uint8)
    return src, trg


def _spectrum(image):
    return np.fft.fftshift(np.fft.fft2(image.astype(np.float64), axes=(0, 1)), axes=(0, 1))


def test_beta_zero_is_identity_and_bad_input():
    src, trg = _images()
    assert (fda_transfer(src, trg, 0.0) == src).all()
    with pytest.raises(UrbangenError, match="beta"):
        fda_transfer(src, trg, 0.7)
    with pytest.raises(UrbangenError, match="HxWx3 uint8"):
        fda_transfer(src.astype(np.float32), trg, 0.01)


def test_low_frequencies_from_target_phase_and_high_frequencies_from_source():
    src, trg = _images()
    out = fda_transfer(src, trg, 0.05)  # b = floor(48 * 0.05) = 2: a 5x5 window
    s, t, o = _spectrum(src), _spectrum(trg), _spectrum(out)
    ch, cw = 24, 32
    window = (slice(ch - 2, ch + 3), slice(cw - 2, cw + 3))
    # inside the window: the target's amplitude (up to the 8-bit rounding of the output)
    assert np.allclose(np.abs(o[window]), np.abs(t[window]), rtol=0.02, atol=48 * 64 * 1.0)
    assert abs(out.mean((0, 1)) - trg.mean((0, 1))).max() < 1.0  # the mean colour is the target's
    # outside: the source's amplitude; everywhere with real energy: the source's phase
    mask = np.ones(s.shape[:2], bool)
    mask[window] = False
    assert np.allclose(np.abs(o[mask]), np.abs(s[mask]), atol=48 * 64 * 0.6)
    strong = np.abs(s) > 50 * 48 * 64 / 100
    phase_error = np.angle(o[strong] * np.conj(s[strong]))
    assert np.abs(phase_error).max() < 0.05
    # a target of another size is resized first
    assert fda_transfer(src, trg[:20, :30], 0.05).shape == src.shape


def _dataset(root, n, seed, labelled=True):
    rng = np.random.default_rng(seed)
    writer = DatasetWriter(root, split="train", city="c")
    for i in range(n):
        label = rng.integers(0, 19, (32, 48)).astype(np.uint8) if labelled else np.zeros((32, 48), np.uint8)
        writer.write(f"c_{i:06d}_000000", rng.integers(0, 255, (32, 48, 3)).astype(np.uint8), label, {})
    return root


def test_fda_dataset_keeps_labels_and_resumes(tmp_path):
    from urbangen.baselines.fda import fda_dataset
    from urbangen.segment.data import DataSource

    source = DataSource(root=_dataset(tmp_path / "src", 4, 0), split="train")
    target = DataSource(root=_dataset(tmp_path / "trg", 3, 1), split="train")
    out = fda_dataset(source, target, tmp_path / "out", beta=0.05, seed=0)
    reader_src, reader_out = open_dataset("cityscapes", source.root), open_dataset("cityscapes", out)
    src_samples, out_samples = reader_src.index("train").samples, reader_out.index("train").samples
    assert [s.id for s in out_samples] == [s.id for s in src_samples]
    for a, b in zip(src_samples, out_samples, strict=True):
        image_a, label_a = reader_src.load(a)
        image_b, label_b = reader_out.load(b)
        assert (label_a == label_b).all() and not (image_a == image_b).all()
    records = read_manifest(out)
    assert records[0]["method"] == "fda" and records[0]["target"]["id"].startswith("c_")
    mtimes = {p: p.stat().st_mtime_ns for p in out.rglob("*.png")}
    fda_dataset(source, target, out, beta=0.05, seed=0)  # finished samples are skipped
    assert {p: p.stat().st_mtime_ns for p in out.rglob("*.png")} == mtimes


def test_cli_fda(tmp_path):
    _dataset(tmp_path / "src", 2, 0)
    _dataset(tmp_path / "trg", 2, 1)
    args = ["fda", "--source-root", str(tmp_path / "src"), "--target-root", str(tmp_path / "trg")]
    result = CliRunner().invoke(main, [*args, "--out", str(tmp_path / "out"), "--beta", "0.02"])
    assert result.exit_code == 0, result.output
    assert len(read_manifest(tmp_path / "out")) == 2
    bad = CliRunner().invoke(main, [*args, "--out", str(tmp_path / "o2"), "--beta", "0.9"])
    assert bad.exit_code == 2 and "beta" in bad.output
