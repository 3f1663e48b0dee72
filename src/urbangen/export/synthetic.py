"""Random-weight stage-2 generators built from config, for the export tests and the parity benchmark.

Nothing is downloaded and nothing is trained: a seeded scratch UNet (``tiny`` or ``small``, see
:func:`urbangen.diffusion.build.scratch_spec`), optionally a 4-channel latent UNet with a tiny VAE, and a
ControlNet whose zero-initialised output convolutions are perturbed so the control signal and classifier-free
guidance really change the output (a freshly copied ControlNet adds exactly zero, which would make any
parity check of the control path vacuous).
"""

from __future__ import annotations

from pathlib import Path


def random_generator(
    out: str | Path,
    base: str = "tiny",
    latent: bool = False,
    depth: bool = True,
    seed: int = 0,
    perturb: float = 0.05,
    patch: int | None = None,
    control: str = "controlnet",
    appearance: bool = True,
) -> Path:
    """Write a generator folder (the layout ``adapt`` writes) to ``out`` and return it. ``patch`` overrides the
    base's pixel-space patch size (pixels per side folded into channels); ``latent`` replaces it by a VAE;
    ``control`` is the stage-2 control kind (``controlnet``, ``concat``); ``appearance`` records target colour
    statistics (pooled and per image, as stage 2 does) of seeded random images, for ``calibrate``."""
    import numpy as np
    import torch
    from diffusers import AutoencoderKL, UNet2DConditionModel

    from urbangen.diffusion.appearance import class_colour_stats, image_colour_stats
    from urbangen.diffusion.artefacts import save_generator
    from urbangen.diffusion.build import make_control, scratch_modules, scratch_spec
    from urbangen.diffusion.conditioning import ConditionSpec
    from urbangen.labels import cityscapes19

    modules = scratch_modules(base, ("target", "night"), seed)
    resolution = scratch_spec(base).resolution
    if patch is not None and not latent and patch != modules.patch:
        torch.manual_seed(seed)
        config = dict(modules.unet.config)
        config.update(in_channels=3 * patch**2, out_channels=3 * patch**2, sample_size=resolution[0] // patch)
        modules.unet = UNet2DConditionModel.from_config(config)
        modules.patch = patch
    if latent:
        torch.manual_seed(seed)
        modules.patch = 1
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
        config.update(in_channels=4, out_channels=4, sample_size=resolution[0] // modules.factor)
        modules.unet = UNet2DConditionModel.from_config(config)
    spec = ConditionSpec(cityscapes19().num_classes, depth=depth)
    modules.control = make_control(modules, control, spec.channels, seed)
    noise = torch.Generator().manual_seed(seed + 1)
    with torch.no_grad():
        for param in modules.control.parameters():
            param.add_(torch.randn(param.shape, generator=noise) * perturb)
    meta = {
        "stage": 2,
        "base": base,
        "taxonomy": cityscapes19().to_dict(),
        "domains": list(modules.domains),
        "conditioning": spec.to_dict(),
        "control": control,
        "resolution": list(resolution),
        "factor": modules.factor,
        "size_multiple": modules.size_multiple,
        "prediction_type": modules.scheduler.config.prediction_type,
        "sampling": {"guidance": 2.0},
    }
    if appearance:
        rng = np.random.default_rng(seed)
        # four "target images", each darker or brighter than the last: exemplar and pooled statistics differ
        pairs = [
            (rng.integers(0, 128, (32, 64, 3)) + 32 * i, rng.integers(0, spec.num_classes, (32, 64))) for i in range(4)
        ]
        meta.update(appearance=class_colour_stats(pairs), appearance_exemplars=image_colour_stats(pairs))
    out = Path(out)
    save_generator(modules, out, meta)
    return out
