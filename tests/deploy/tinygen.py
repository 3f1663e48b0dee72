"""A tiny stage-2 generator built from config for the deploy tests (seconds on a CPU, nothing downloaded)."""

from __future__ import annotations

from pathlib import Path


def make_generator(out: Path, seed: int = 0, latent: bool = False, depth: bool = True) -> Path:
    """Save a tiny stage-2 generator: a seeded scratch UNet (or a 4-channel UNet + tiny VAE when ``latent``)
    and a ControlNet whose zero-initialised output convolutions are perturbed, so the control signal and
    classifier-free guidance really change the output."""
    import torch
    from diffusers import AutoencoderKL, UNet2DConditionModel

    from urbangen.diffusion.artefacts import save_generator
    from urbangen.diffusion.build import make_control, scratch_modules
    from urbangen.diffusion.conditioning import ConditionSpec
    from urbangen.labels import cityscapes19

    modules = scratch_modules("tiny", ("target", "night"), seed)
    if latent:
        torch.manual_seed(seed)
        modules.vae = AutoencoderKL(
            in_channels=3,
            out_channels=3,
            latent_channels=4,
            block_out_channels=(8, 16),
            layers_per_block=1,
            norm_num_groups=4,
            down_block_types=("DownEncoderBlock2D",) * 2,
            up_block_types=("UpDecoderBlock2D",) * 2,
        )
        config = dict(modules.unet.config)
        config.update(in_channels=4, out_channels=4, sample_size=16)
        modules.unet = UNet2DConditionModel.from_config(config)
    spec = ConditionSpec(19, depth=depth)
    modules.control = make_control(modules, "controlnet", spec.channels, seed)
    noise = torch.Generator().manual_seed(seed + 1)
    with torch.no_grad():
        for param in modules.control.parameters():
            param.add_(torch.randn(param.shape, generator=noise) * 0.05)
    meta = {
        "stage": 2,
        "taxonomy": cityscapes19().to_dict(),
        "domains": list(modules.domains),
        "conditioning": spec.to_dict(),
        "control": "controlnet",
        "resolution": [32, 64],
        "factor": modules.factor,
        "size_multiple": modules.size_multiple,
        "sampling": {"guidance": 2.0},
    }
    save_generator(modules, out, meta)
    return out
