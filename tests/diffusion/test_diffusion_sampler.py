"""The reference sampler and the adapt/sample commands."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import yaml
from click.testing import CliRunner
from conftest import scene, tiny_config

from urbangen.cli import main
from urbangen.diffusion.sampler import Generator
from urbangen.errors import UrbangenError
from urbangen.io import read_rgb, write_png


@pytest.fixture(scope="module")
def generator(adapted) -> Generator:
    return Generator.from_pretrained(adapted / "stage2")


@pytest.mark.parametrize("scheduler", ["ddim", "dpm", "euler"])
def test_an_image_does_not_depend_on_its_batch(generator, scheduler):
    labels = np.stack([scene(i)[1] for i in range(5)])
    seeds = [11, 12, 13, 14, 15]
    together = generator.generate(labels, seeds, steps=3, scheduler=scheduler, batch_size=5)
    for batch_size in (1, 2, 3):
        assert np.array_equal(
            together, generator.generate(labels, seeds, steps=3, scheduler=scheduler, batch_size=batch_size)
        )
    alone = generator.generate(labels[3:4], [14], steps=3, scheduler=scheduler)
    assert np.array_equal(alone[0], together[3])
    assert not np.array_equal(together[0], generator.generate(labels[:1], [99], steps=3, scheduler=scheduler)[0])


def test_low_level_api_composes_to_generate(generator):
    labels = np.stack([scene(i)[1] for i in range(2)])
    images = generator.generate(labels, [3, 4], steps=2, guidance=2.5, size_mode="native")
    sched = generator.make_scheduler("ddim", 2)
    x = generator.initial_noise([3, 4], (48, 96)) * sched.init_noise_sigma
    cond = generator.condition(labels)
    with torch.no_grad():
        for t in sched.timesteps:
            x = sched.step(generator.denoise(sched.scale_model_input(x, t), t, cond, 2.5), t, x).prev_sample
        decoded = generator.decode(x)
    from urbangen.diffusion.sampler import to_uint8

    assert np.array_equal(to_uint8(decoded), images)
    assert generator.resolution == (32, 64) and generator.taxonomy.num_classes == 19 and len(generator.digest) == 64


def test_resize_restores_the_label_size(generator):
    labels = np.stack([scene(i, (50, 70))[1] for i in range(2)])
    images = generator.generate(labels, [1, 2], steps=2)
    assert images.shape == (2, 50, 70, 3)


def test_bad_sampling_input(generator):
    good = scene(0)[1]
    bad = good.copy()
    bad[0, 0] = 19
    with pytest.raises(UrbangenError, match=r"values \[19\] are outside taxonomy"):
        generator.generate(bad[None], [0])
    with pytest.raises(UrbangenError, match="divisible by 2"):
        generator.generate(good[None, :47], [0], size_mode="native")
    with pytest.raises(UrbangenError, match="2 seeds for 1 label maps"):
        generator.generate(good[None], [0, 1])
    with pytest.raises(UrbangenError, match="unknown scheduler"):
        generator.generate(good[None], [0], scheduler="plms")
    with pytest.raises(UrbangenError, match="unknown domain"):
        generator.generate(good[None], [0], domain="night")
    with pytest.raises(UrbangenError, match="integer trainIds"):
        generator.generate(good[None].astype(np.float32), [0])


def test_depth_generator_needs_depth(target, tmp_path):
    from urbangen.diffusion.adapt import adapt

    folders = adapt(tiny_config(*target, tmp_path, stage1={"steps": 1}, stage2={"steps": 1, "depth": True}))
    gen = Generator.from_pretrained(folders["stage2"])
    label, depth_cm = scene(0)[1:]
    with pytest.raises(UrbangenError, match="trained with a depth channel"):
        gen.generate(label[None], [0], steps=1)
    image = gen.generate(label[None], [0], depth=depth_cm[None] / 100.0, steps=1)
    assert image.shape == (1, 48, 96, 3)


def test_adapt_and_sample_commands(target, tmp_path):
    runner = CliRunner()
    config = tmp_path / "adapt.yaml"
    cfg = tiny_config(*target, tmp_path / "unused", stage1={"steps": 1}, stage2={"steps": 1})
    config.write_text(yaml.safe_dump(cfg.model_dump(mode="json")))
    result = runner.invoke(main, ["adapt", "--config", str(config), "--out", str(tmp_path / "run")])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "run" / "stage2" / "urbangen.json").is_file()
    labels = tmp_path / "labels"
    for i in range(3):
        write_png(labels / f"map{i}.png", scene(i)[1])
    args = ["sample", "--generator", str(tmp_path / "run" / "stage2"), "--labels", str(labels)]
    args += ["--out", str(tmp_path / "images"), "--steps", "2", "--batch-size", "2"]
    result = runner.invoke(main, args)
    assert result.exit_code == 0, result.output
    assert "rendered 3, skipped 0" in result.output
    first = read_rgb(tmp_path / "images" / "map0.png")
    assert first.shape == (48, 96, 3)
    (tmp_path / "images" / "map1.png").unlink()
    result = runner.invoke(main, [*args[:-1], "1"])  # resume with another batch size: same images
    assert "rendered 1, skipped 2" in result.output
    assert np.array_equal(read_rgb(tmp_path / "images" / "map0.png"), first)
    result = runner.invoke(main, [*args[:7], "--steps", "3"])
    assert result.exit_code == 2 and "sampled with other settings" in result.output
    result = runner.invoke(main, ["sample", "--generator", str(tmp_path), "--labels", str(labels), "--out", "x"])
    assert result.exit_code == 2 and "missing urbangen.json" in result.output
    result = runner.invoke(main, ["adapt", "--config", str(tmp_path / "none.yaml")])
    assert result.exit_code == 2 and "config file not found" in result.output


@pytest.mark.gpu
def test_gpu_mixed_precision_adapt_and_bf16_sampling(target, tmp_path):
    from urbangen.diffusion.adapt import adapt

    cfg = tiny_config(*target, tmp_path, device="cuda", mixed_precision="bf16", gradient_checkpointing=True)
    folders = adapt(cfg)
    gen = Generator.from_pretrained(folders["stage2"], device="cuda", dtype=torch.bfloat16)
    labels = np.stack([scene(i)[1] for i in range(2)])
    images = gen.generate(labels, [1, 2], steps=2)
    reference = Generator.from_pretrained(folders["stage2"]).generate(labels, [1, 2], steps=2)
    assert images.shape == reference.shape and np.abs(images.astype(int) - reference).mean() < 8
