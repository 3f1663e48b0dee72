"""Starting generation from the source images (SDEdit, ``strength`` < 1): the sampler, the fast engine and a
generation run, with a real tiny generator."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from conftest import blocks_label

from urbangen.diffusion.sampler import Generator
from urbangen.errors import UrbangenError
from urbangen.generate.config import EngineConfig, GenerateConfig, SourceConfig
from urbangen.generate.engine import FastGenerator

STEPS = 4


def source_images(n: int, seed: int, shape: tuple[int, int] = (32, 64)) -> np.ndarray:
    """Smooth random RGB images (what a source render looks like to a 4-step sampler)."""
    rng = np.random.default_rng(seed)
    coarse = rng.integers(0, 256, (n, shape[0] // 8, shape[1] // 8, 3), dtype=np.uint8)
    return coarse.repeat(8, axis=1).repeat(8, axis=2)


def distance(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.abs(a.astype(int) - b).mean())


@pytest.fixture(scope="module")
def generator(tiny_generator) -> Generator:
    return Generator.from_pretrained(tiny_generator)


@pytest.fixture(scope="module")
def labels() -> np.ndarray:
    return np.stack([blocks_label(i) for i in range(2)])


@pytest.mark.parametrize("scheduler", ["ddim", "dpm", "euler"])
def test_low_strength_keeps_the_init_image_and_full_strength_ignores_it(generator, labels, scheduler):
    init, other = source_images(2, 0), source_images(2, 1)
    options = {"steps": STEPS, "scheduler": scheduler}
    noise = generator.generate(labels, [1, 2], **options)
    assert np.array_equal(generator.generate(labels, [1, 2], init=init, strength=1.0, **options), noise)
    light = generator.generate(labels, [1, 2], init=init, strength=0.25, **options)  # the last of 4 steps
    assert distance(light, init) < 0.5 * distance(noise, init)  # random weights: the last step still adds noise
    assert distance(generator.generate(labels, [1, 2], init=other, strength=0.25, **options), light) > 20
    half = generator.generate(labels, [1, 2], init=init, strength=0.5, **options)
    assert distance(light, init) < distance(half, init) < distance(noise, init)


def test_init_images_are_per_sample_and_independent_of_batch_size(generator, labels):
    init = source_images(2, 0)
    together = generator.generate(labels, [1, 2], init=init, strength=0.5, steps=STEPS, batch_size=2)
    alone = generator.generate(labels[1:], [2], init=init[1:], strength=0.5, steps=STEPS, batch_size=1)
    assert np.array_equal(together[1:], alone)


def test_bad_init_arguments_are_clear_errors(generator, labels):
    with pytest.raises(UrbangenError, match="pass init"):
        generator.generate(labels, [1, 2], strength=0.5, steps=STEPS)
    with pytest.raises(UrbangenError, match=r"init must be uint8 images of shape \(2, 32, 64, 3\)"):
        generator.generate(labels, [1, 2], init=source_images(1, 0), strength=0.5, steps=STEPS)
    with pytest.raises(UrbangenError, match=r"strength must be in \(0, 1\]"):
        generator.generate(labels, [1, 2], init=source_images(2, 0), strength=0.0, steps=STEPS)


@pytest.mark.parametrize("scheduler", ["ddim", "dpm"])
def test_engine_matches_reference_from_init_images(tiny_generator, generator, labels, scheduler):
    init = source_images(2, 0)
    engine = FastGenerator(Generator.from_pretrained(tiny_generator), EngineConfig(kind="fast"))
    options = {"steps": STEPS, "scheduler": scheduler, "init": init, "strength": 0.5}
    want = generator.generate(labels, [1, 2], **options)
    assert np.abs(engine.generate(labels, [1, 2], batch_size=1, **options).astype(int) - want).max() <= 1


def write_source(root: Path, n: int) -> Path:
    """A Cityscapes-layout source dataset: label maps with their renders."""
    from urbangen.datasets.writer import DatasetWriter

    writer = DatasetWriter(root, city="sim")
    for i, image in enumerate(source_images(n, 7)):
        writer.write(f"sim_000000_{i:06d}", image, blocks_label(i), {})
    return root


def test_generation_run_starts_from_the_source_images(tmp_path, tiny_generator):
    from urbangen.generate.run import generate_candidates
    from urbangen.generate.store import CandidateStore
    from urbangen.io import read_rgb, write_png

    source = write_source(tmp_path / "sim", 3)
    runs = {}
    for strength in (1.0, 0.25):
        cfg = GenerateConfig(
            source=SourceConfig(root=source),
            generator=tiny_generator,
            out=tmp_path / f"out{strength}",
            candidates=2,
            steps=STEPS,
            strength=strength,
            batch_size=4,
        )
        summary = generate_candidates(cfg)
        assert summary["rendered"] == 3
        runs[strength] = Path(summary["out"])
    assert CandidateStore(runs[0.25]).run_info()["fingerprint"]["strength"] == 0.25
    renders = {p.name.split("_leftImg8bit")[0]: read_rgb(p) for p in sorted(source.rglob("*_leftImg8bit.png"))}
    assert len(renders) == 3
    for sample_id, render in renders.items():
        light, noise = (read_rgb(runs[s] / "samples" / sample_id / "candidate_0.png") for s in (0.25, 1.0))
        assert distance(light, render) < 0.5 * distance(noise, render)
    labels_only = tmp_path / "labels"
    write_png(labels_only / "map0.png", blocks_label(0))
    cfg = GenerateConfig(
        source=SourceConfig(format="labels", root=labels_only),
        generator=tiny_generator,
        out=tmp_path / "labels-out",
        strength=0.5,
    )
    with pytest.raises(UrbangenError, match="has label maps only"):
        generate_candidates(cfg)


def test_generation_run_calibrates_colours_with_the_generators_statistics(tmp_path, tiny_generator):
    import json
    import shutil

    from urbangen.generate.run import generate_candidates
    from urbangen.io import read_rgb

    source = write_source(tmp_path / "sim", 2)
    plain = tmp_path / "plain"
    shutil.copytree(tiny_generator, plain)
    cfg = GenerateConfig(
        source=SourceConfig(root=source), generator=plain, out=tmp_path / "a", candidates=1, steps=2, calibrate=True
    )
    with pytest.raises(UrbangenError, match="no target colour statistics"):
        generate_candidates(cfg)
    stats = {str(c): [[40.0 + 10 * c, 90.0, 160.0], [6.0, 6.0, 6.0]] for c in range(19)}
    calibrated = tmp_path / "calibrated"
    shutil.copytree(tiny_generator, calibrated)
    meta = json.loads((calibrated / "urbangen.json").read_text())
    (calibrated / "urbangen.json").write_text(json.dumps({**meta, "appearance": stats}))
    out = Path(generate_candidates(cfg.model_copy(update={"generator": calibrated}))["out"])
    for i in range(2):
        image = read_rgb(out / "samples" / f"sim_000000_{i:06d}" / "candidate_0.png")
        label = blocks_label(i)
        for c in np.unique(label[label != 255]):
            if (label == c).sum() >= 20:
                assert np.abs(image[label == c].mean(0) - stats[str(c)][0]).max() < 3
    assert cfg.calibrate == "pooled"  # the setting's first, boolean form

    exemplars = [{str(c): [[20.0 + 5 * c + 100 * e, 60.0, 90.0], [4.0, 4.0, 4.0]] for c in range(19)} for e in (0, 1)]
    (calibrated / "urbangen.json").write_text(
        json.dumps({**meta, "appearance": stats, "appearance_exemplars": exemplars})
    )
    drawn = cfg.model_copy(update={"generator": calibrated, "calibrate": "exemplar", "out": tmp_path / "b"})
    out = Path(generate_candidates(drawn)["out"])
    for i in range(2):
        image = read_rgb(out / "samples" / f"sim_000000_{i:06d}" / "candidate_0.png")
        label = blocks_label(i)
        big = [c for c in np.unique(label[label != 255]) if (label == c).sum() >= 20]
        means = {e: max(np.abs(image[label == c].mean(0) - exemplars[e][str(c)][0]).max() for c in big) for e in (0, 1)}
        assert min(means.values()) < 3  # every region of an image takes the one exemplar it drew

    # a folder written when the setting was boolean (`calibrate: true` in run.json) resumes as "pooled"
    pooled = cfg.model_copy(update={"generator": calibrated, "out": tmp_path / "c"})
    first = generate_candidates(pooled)
    run_file = Path(first["out"]) / "run.json"
    info = json.loads(run_file.read_text())
    info["fingerprint"]["calibrate"] = True
    run_file.write_text(json.dumps(info))
    assert generate_candidates(pooled)["out"] == first["out"]
    with pytest.raises(UrbangenError, match="calibrate: 'pooled' here vs 'exemplar' requested"):
        generate_candidates(pooled.model_copy(update={"calibrate": "exemplar"}))
