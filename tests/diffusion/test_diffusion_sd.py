"""A Stable Diffusion-layout base: a tiny folder built here (UNet, VAE, CLIP text encoder and tokenizer from
tiny configs, nothing downloaded), adapted with a LoRA stage 1 and a ControlNet-XS stage 2, then sampled."""

from __future__ import annotations

import string
from pathlib import Path

import numpy as np
import pytest
from conftest import scene, tiny_config

from urbangen.diffusion.adapt import adapt
from urbangen.errors import UrbangenError


def build_sd_folder(path: Path) -> Path:
    import torch
    from diffusers import AutoencoderKL, DDPMScheduler, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

    torch.manual_seed(0)
    UNet2DConditionModel(
        sample_size=8,
        in_channels=4,
        out_channels=4,
        down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"),
        block_out_channels=(16, 32),
        layers_per_block=2,
        norm_num_groups=8,
        cross_attention_dim=32,
        attention_head_dim=4,
    ).save_pretrained(path / "unet")
    AutoencoderKL(
        block_out_channels=(16, 32),
        down_block_types=("DownEncoderBlock2D",) * 2,
        up_block_types=("UpDecoderBlock2D",) * 2,
        latent_channels=4,
        norm_num_groups=8,
        layers_per_block=1,
    ).save_pretrained(path / "vae")
    text = CLIPTextConfig(
        vocab_size=60,
        hidden_size=32,
        intermediate_size=37,
        num_attention_heads=4,
        num_hidden_layers=2,
        max_position_embeddings=16,
        bos_token_id=0,
        eos_token_id=1,
        pad_token_id=1,
    )
    CLIPTextModel(text).save_pretrained(path / "text_encoder")
    vocab = {"<|startoftext|>": 0, "<|endoftext|>": 1}
    vocab.update({c: len(vocab) + i for i, c in enumerate(string.ascii_lowercase)})
    vocab.update({c + "</w>": len(vocab) + i for i, c in enumerate(string.ascii_lowercase)})
    CLIPTokenizer(vocab=vocab, merges=[], model_max_length=16).save_pretrained(path / "tokenizer")
    DDPMScheduler(beta_schedule="scaled_linear", prediction_type="epsilon").save_pretrained(path / "scheduler")
    return path


@pytest.fixture(scope="module")
def sd_folder(tmp_path_factory) -> Path:
    return build_sd_folder(tmp_path_factory.mktemp("sd") / "base")


def test_sd_base_adapts_with_lora_and_controlnet_xs_and_samples(sd_folder, target, tmp_path):
    from urbangen.diffusion.sampler import Generator

    cfg = tiny_config(
        *target,
        tmp_path,
        base=str(sd_folder),
        resolution=(16, 32),
        domains={"clear": "a photo of a city street", "fog": "a foggy street"},
        stage1={"lora_rank": 2},
        stage2={"control": "controlnet_xs"},
    )
    folders = adapt(cfg)
    generator = Generator.from_pretrained(folders["stage2"])
    assert generator.vae is not None and type(generator.controlnet).__name__ == "UNetControlNetXSModel"
    assert generator.domains == ("clear", "fog") and generator.domain_embedding.shape == (2, 16, 32)
    assert generator.size_multiple == 4 and generator.config["prediction_type"] == "epsilon"
    # the LoRA was merged: the saved stage-1 UNet is plain and differs from the base
    from diffusers import UNet2DConditionModel

    base = UNet2DConditionModel.from_pretrained(sd_folder / "unet").state_dict()
    tuned = generator.unet.state_dict()
    assert set(base) == set(tuned) and any(not (base[k] == tuned[k]).all() for k in base)
    labels = np.stack([scene(i)[1] for i in range(2)])
    images = generator.generate(labels, [1, 2], steps=2, domain="fog")
    assert images.shape == (2, 48, 96, 3) and images.dtype == np.uint8
    assert not np.array_equal(images, generator.generate(labels, [1, 2], steps=2, domain="clear"))


def test_incomplete_sd_folder_lists_what_is_missing(sd_folder, target, tmp_path):
    import shutil

    broken = tmp_path / "broken"
    shutil.copytree(sd_folder, broken)
    shutil.rmtree(broken / "text_encoder")
    (broken / "scheduler" / "scheduler_config.json").unlink()
    with pytest.raises(UrbangenError, match=r"missing text_encoder/config.json, scheduler/scheduler_config.json"):
        adapt(tiny_config(*target, tmp_path / "out", base=str(broken)))
    with pytest.raises(UrbangenError, match="base model folder not found"):
        adapt(tiny_config(*target, tmp_path / "out", base=str(tmp_path / "nowhere")))
