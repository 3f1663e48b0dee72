"""The benchmark's pretrained base: built by `urbangen world pretrain-base`, used as `base:` of adapt."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from click.testing import CliRunner

from urbangen.cli import main
from urbangen.errors import UrbangenError


@pytest.fixture(scope="module")
def base(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("base")
    args = ["world", "pretrain-base", "--out", str(root / "base"), "--work", str(root / "work")]
    args += ["--styles", "1000,1001", "--n-per-style", "2", "--size", "64x128", "--steps", "2"]
    result = CliRunner().invoke(main, args, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return root / "base"


def test_pretrain_base_writes_a_generator_from_other_styles(base):
    from urbangen.diffusion.artefacts import load_generator, read_meta

    meta = read_meta(base)
    assert meta["stage"] == 1 and meta["steps"] == 2 and meta["domains"] == ["world"]
    assert meta["data"]["images"] == 4  # 2 style seeds x 2 scenes
    assert meta["config"]["stage1"]["ema"] == 0.999
    modules, _ = load_generator(base)
    assert modules.control is None and modules.patch == 4


def test_adapt_starts_from_the_base_and_tracks_its_weights(base, tmp_path):
    from urbangen.config import validate
    from urbangen.datasets import open_dataset
    from urbangen.diffusion.adapt import adapt
    from urbangen.diffusion.artefacts import load_generator, read_meta, save_generator
    from urbangen.diffusion.config import AdaptConfig, fingerprint
    from urbangen.io import write_png
    from urbangen.world.dataset import make_dataset

    target = tmp_path / "target"
    make_dataset(target, "train", 3, 5, "real", 1, (64, 128), city="tgt", progress=False)
    reader = open_dataset("cityscapes", target)
    for sample in reader.index("train").samples:
        write_png(tmp_path / "labels" / f"{sample.id}.png", reader.load_train_ids(sample))
    cfg = validate(
        AdaptConfig,
        {
            "base": str(base),
            "target": {"root": str(target)},
            "labels_dir": str(tmp_path / "labels"),
            "out": str(tmp_path / "adapt"),
            "stage1": {"steps": 0},
            "stage2": {"steps": 1, "batch_size": 2, "control": "concat"},
        },
        "test",
    )
    folders = adapt(cfg)
    start, _ = load_generator(folders["stage1"])
    pretrained, _ = load_generator(base)
    state = pretrained.unet.state_dict()
    assert all(torch.equal(v, state[k]) for k, v in start.unet.state_dict().items())  # 0 steps: the base itself
    assert torch.equal(start.domain_embedding, pretrained.domain_embedding)  # "target" starts from "world"
    assert load_generator(folders["stage2"])[1]["resolution"] == [64, 128]
    before = fingerprint(cfg, 1)
    with torch.no_grad():
        pretrained.unet.conv_in.weight.add_(1.0)
    save_generator(pretrained, base.parent / "edited", read_meta(base))
    assert fingerprint(cfg.model_copy(update={"base": str(base.parent / "edited")}), 1) != before
    with pytest.raises(UrbangenError, match="built-in bases only"):
        adapt(cfg.model_copy(update={"prediction_type": "epsilon", "out": tmp_path / "other"}), stage=1)
