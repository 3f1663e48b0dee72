"""Generation with a real tiny generator (diffusers UNet + ControlNet folder) and a real tiny SegFormer:
determinism across batch sizes and shard counts, resume after a SIGKILL, the engine against the reference
sampler, and the commands end to end."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import yaml
from click.testing import CliRunner
from conftest import blocks_label, build_tiny_generator, write_label_folder

from urbangen.cli import main
from urbangen.datasets.writer import read_manifest
from urbangen.errors import UrbangenError
from urbangen.generate.config import EngineConfig, GenerateConfig, SourceConfig
from urbangen.generate.run import generate_candidates

STEPS = 2


@pytest.fixture(scope="module")
def segmenter(tmp_path_factory) -> Path:
    import torch

    from urbangen.labels import cityscapes19
    from urbangen.segment.model import build_model, save_model

    torch.manual_seed(0)
    return save_model(build_model("tiny"), tmp_path_factory.mktemp("seg") / "model", cityscapes19(), {})


def write_config(path: Path, labels: Path, generator: Path, out: Path, **extra) -> Path:
    data = {
        "source": {"format": "labels", "root": str(labels)},
        "generator": str(generator),
        "out": str(out),
        "candidates": 2,
        "steps": STEPS,
        "batch_size": 2,
        "mcoc": {"erosion": 1, "min_object_size": 10, "threshold": 0.0},
        **extra,
    }
    path.write_text(yaml.safe_dump(data))
    return path


def pngs(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*.png"))}


def invoke(*args: str) -> str:
    result = CliRunner().invoke(main, list(args), catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result.output


@pytest.mark.parametrize("control", ["controlnet", "concat"])
def test_engine_matches_reference_sampler(tmp_path, tiny_generator, control):
    import torch

    from urbangen.diffusion.sampler import Generator
    from urbangen.generate.engine import FastGenerator
    from urbangen.generate.models import load_generator

    if control != "controlnet":
        tiny_generator = build_tiny_generator(tmp_path / control, control=control)
    labels = np.stack([blocks_label(i) for i in range(2)])
    reference = Generator.from_pretrained(tiny_generator)
    cond = reference.condition(labels[:, ::2, ::2])
    for guidance, cache in ((2.5, True), (1.0, False)):
        want = reference.sample_batch(cond, [11, 12], (16, 32), STEPS, guidance, "ddim")
        engine = FastGenerator(Generator.from_pretrained(tiny_generator), EngineConfig(cache_control_embedding=cache))
        got = engine.sample_batch(cond, [11, 12], (16, 32), STEPS, guidance, "ddim")
        torch.testing.assert_close(got, want, atol=1e-4, rtol=0)
    cfg = GenerateConfig(
        source=SourceConfig(root=tmp_path), generator=tiny_generator, out=tmp_path, engine=EngineConfig(kind="fast")
    )
    fast = load_generator(cfg)
    assert isinstance(fast, FastGenerator)
    a = reference.generate(labels, [1, 2], steps=STEPS, scheduler="dpm")
    b = fast.generate(labels, [1, 2], steps=STEPS, scheduler="dpm", batch_size=1)
    assert np.abs(a.astype(int) - b).max() <= 1
    labels[:, 12:20] = 13  # the control signal matters: other labels, other images
    assert np.abs(fast.generate(labels, [1, 2], steps=STEPS).astype(int) - b).mean() > 1


@pytest.mark.gpu
@pytest.mark.parametrize("control", ["controlnet", "concat"])
def test_gpu_compiled_engine_matches_reference_sampler(tmp_path, tiny_generator, control):
    """On CUDA in bf16, the engine with torch.compile + CUDA graphs renders what the reference renders."""
    import torch

    from urbangen.diffusion.sampler import Generator
    from urbangen.generate.engine import FastGenerator

    if control != "controlnet":
        tiny_generator = build_tiny_generator(tmp_path / control, control=control)
    labels = np.stack([blocks_label(i) for i in range(4)])
    cpu = Generator.from_pretrained(tiny_generator).generate(labels, [1, 2, 3, 4], steps=STEPS)
    reference = Generator.from_pretrained(tiny_generator, device="cuda", dtype=torch.bfloat16)
    want = reference.generate(labels, [1, 2, 3, 4], steps=STEPS)
    cfg = EngineConfig(kind="fast", device="cuda", compile=True, cuda_graphs=True)
    engine = FastGenerator(Generator.from_pretrained(tiny_generator, device="cuda"), cfg)
    for batch_size in (4, 2):  # a second batch size: recompiled graphs, same images
        got = engine.generate(labels, [1, 2, 3, 4], steps=STEPS, batch_size=batch_size)
        assert got.shape == want.shape
        assert np.abs(got.astype(int) - want).mean() < 2, batch_size  # bf16 rounding differs, images agree
    assert np.abs(want.astype(int) - cpu).mean() < 8  # and both are the float32 CPU images within bf16 error


@pytest.fixture(scope="module")
def clean_run(tmp_path_factory, tiny_generator, segmenter) -> Path:
    """An uninterrupted, unsharded run (generate + filter-rectify) over 4 label maps."""
    root = tmp_path_factory.mktemp("clean")
    labels = write_label_folder(root / "labels", 4)
    config = write_config(
        root / "clean.yaml", labels, tiny_generator, root / "out", batch_size=4, segmenter=str(segmenter)
    )
    invoke("generate", "--config", str(config))
    invoke("filter-rectify", "--config", str(config))
    return root


def test_same_candidates_for_any_batch_size_and_shard_count(tmp_path, tiny_generator, clean_run):
    sharded = write_config(tmp_path / "two.yaml", clean_run / "labels", tiny_generator, tmp_path / "two", batch_size=1)
    for shard in ("1/2", "0/2"):
        invoke("generate", "--config", str(sharded), "--shard", shard)
    assert '"samples": 4' in invoke("generate", "merge", "--config", str(sharded))
    a, b = pngs(clean_run / "out" / "candidates"), pngs(tmp_path / "two" / "candidates")
    assert len(a) == 4 * 3 and a == b


def test_resume_after_kill_gives_byte_identical_dataset(tmp_path, tiny_generator, segmenter, clean_run):
    killed = write_config(
        tmp_path / "killed.yaml", clean_run / "labels", tiny_generator, tmp_path / "killed", segmenter=str(segmenter)
    )
    manifest = tmp_path / "killed" / "candidates" / "manifest.jsonl"
    command = [sys.executable, "-m", "urbangen.cli", "generate", "--config", str(killed)]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 300
        while not (manifest.is_file() and manifest.read_text().count("\n") >= 1):
            assert process.poll() is None, "generation ended before it could be killed"
            assert time.monotonic() < deadline
            time.sleep(0.01)
        os.kill(process.pid, signal.SIGKILL)
    finally:
        process.wait()
    assert 1 <= len(read_manifest(manifest.parent)) < 4, "the kill must land mid-run"

    invoke("generate", "--config", str(killed))  # resumes
    invoke("filter-rectify", "--config", str(killed))
    for part in ("candidates", "dataset"):
        a, b = pngs(tmp_path / "killed" / part), pngs(clean_run / "out" / part)
        assert a and a == b
    records = read_manifest(tmp_path / "killed" / "dataset")
    assert len(records) == 4
    assert all(len(r["segmenter_digest"]) == 64 and len(r["generator_digest"]) == 64 for r in records)


def test_scoring_as_the_segmenter_labelled(tmp_path, tiny_generator, segmenter, clean_run):
    """With pseudo_labels the scorer weighs its posterior as that pseudo-labelling did: class weights that
    leave only road make the scorer see road everywhere. The digest covers the labelling, so scores of the
    plain scorer are never mixed with these."""
    labelling = tmp_path / "labelling"
    labelling.mkdir()
    record = {"predict_mode": "whole", "spatial_prior": None, "prior_weight": None, "class_balance": True}
    (labelling / "inference.json").write_text(json.dumps(record))
    weights = np.full(19, 1e-6)
    weights[0] = 1.0  # road
    (labelling / "class_weights.json").write_text(json.dumps({"weights": weights.tolist()}))
    config = write_config(tmp_path / "c.yaml", clean_run / "labels", tiny_generator, tmp_path, segmenter=str(segmenter))
    candidates, out = str(clean_run / "out" / "candidates"), tmp_path / "scored"
    args = ["filter-rectify", "--config", str(config), "--candidates", candidates, "--out", str(out)]
    invoke(*args, "--pseudo-labels", str(labelling))
    summary = json.loads((out / "summary.json").read_text())
    plain = json.loads((clean_run / "out" / "dataset" / "summary.json").read_text())
    assert summary["pseudo_labels"] == str(labelling) and plain["pseudo_labels"] is None
    assert summary["class_reference"]["road"] == 1.0
    assert all(v == 0.0 for k, v in summary["class_reference"].items() if k != "road")
    assert plain["class_reference"] != summary["class_reference"]
    assert summary["segmenter_digest"] != plain["segmenter_digest"]
    invoke(*args, "--pseudo-labels", str(labelling))  # resumes from the stored scores
    assert json.loads((out / "summary.json").read_text()) == summary
    result = CliRunner().invoke(main, args)  # the plain scorer into the same folder
    assert result.exit_code != 0 and "scores made with other settings" in result.output
    (labelling / "class_weights.json").unlink()
    result = CliRunner().invoke(main, [*args[:-2], "--out", str(tmp_path / "x"), "--pseudo-labels", str(labelling)])
    assert result.exit_code != 0 and "class_weights.json is missing" in result.output
    # labels another segmenter made: its class weights do not fit this scorer's posterior
    (labelling / "inference.json").write_text(
        json.dumps({**record, "class_balance": False, "segmenter_sha256": "0" * 64})
    )
    result = CliRunner().invoke(main, [*args[:-2], "--out", str(tmp_path / "y"), "--pseudo-labels", str(labelling)])
    assert result.exit_code != 0 and "labelled by another segmenter" in result.output


def test_commands_report_bad_config_in_one_line(tmp_path, tiny_generator):
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump({"source": {"root": str(tmp_path)}, "generator": "g", "out": "o", "candidatez": 2}))
    result = CliRunner().invoke(main, ["generate", "--config", str(bad)])
    assert result.exit_code == 2 and "candidatez: unknown field" in result.output
    result = CliRunner().invoke(main, ["generate", "--config", str(bad), "--shard", "2/2"])
    assert result.exit_code == 2
    orphan = tmp_path / "orphan.yaml"  # how a segmenter labelled, without the segmenter
    orphan.write_text(
        yaml.safe_dump({"source": {"root": str(tmp_path)}, "generator": "g", "out": "o", "pseudo_labels": "p"})
    )
    result = CliRunner().invoke(main, ["filter-rectify", "--config", str(orphan)])
    assert (
        result.exit_code == 2
        and "pseudo_labels says how a segmenter labelled the target: set segmenter" in result.output
    )
    cfg = GenerateConfig(source=SourceConfig(root=tmp_path), generator=tmp_path / "missing", out=tmp_path / "o")
    with pytest.raises(UrbangenError, match=r"source: split .train. not found"):
        generate_candidates(cfg)
