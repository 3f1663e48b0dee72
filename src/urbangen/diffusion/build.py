"""Building the diffusion modules: from-scratch configurations, Stable Diffusion folders, control branches.

Every generator, whatever its base, ends up as the same :class:`Modules`: a ``UNet2DConditionModel`` whose
cross-attention reads a per-domain embedding (learned for from-scratch bases, the frozen text encoder's
output for the domain prompt on Stable Diffusion bases, so sampling never needs the text encoder), an
optional ``AutoencoderKL`` (latent space), a DDPM training scheduler, and in stage 2 a control branch.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from pathlib import Path

import torch
from diffusers import AutoencoderKL, ControlNetModel, DDPMScheduler, UNet2DConditionModel, UNetControlNetXSModel

from urbangen.errors import UrbangenError

SD_PARTS = {
    "unet": ("config.json",),
    "vae": ("config.json",),
    "text_encoder": ("config.json",),
    "tokenizer": ("tokenizer_config.json",),
    "scheduler": ("scheduler_config.json",),
}


@dataclass(frozen=True)
class ScratchSpec:
    """A from-scratch pixel-space UNet: block widths, where attention is, and the model resolution."""

    resolution: tuple[int, int]
    block_out_channels: tuple[int, ...]
    attention: tuple[bool, ...]  # cross/self attention per down level (the mid block always has it)
    layers_per_block: int
    norm_num_groups: int
    cross_attention_dim: int
    heads: int  # diffusers passes this as ``attention_head_dim`` but uses it as the number of heads
    patch: int = 1  # pixels per side folded into channels (pixel_unshuffle): a 4x cheaper UNet per factor 2
    prediction: str = "v_prediction"  # "sample" (x0) gives clean, if blurry, images after few training steps
    tokens: int = 4


def scratch_spec(name: str) -> ScratchSpec:
    """``tiny`` (tests, seconds), ``small`` (the CPU demo, minutes on 2 cores), ``base`` (a GPU run)."""
    if name == "tiny":
        return ScratchSpec((32, 64), (8, 16), (False, False), 1, 4, 16, 4)
    if name == "small":
        return ScratchSpec((64, 128), (48, 96, 96), (False, False, False), 1, 16, 64, 4, patch=4, prediction="sample")
    if name == "base":
        return ScratchSpec((256, 512), (128, 256, 256, 512), (False, False, True, True), 2, 32, 256, 8, patch=2)
    raise UrbangenError(f"unknown built-in base {name!r}; expected tiny, small, base or a Stable Diffusion folder")


@dataclass
class Modules:
    """The trainable and frozen parts of a generator, in memory."""

    unet: UNet2DConditionModel
    scheduler: DDPMScheduler
    domain_embedding: torch.nn.Parameter  # (num_domains, tokens, cross_attention_dim)
    domains: tuple[str, ...]
    vae: AutoencoderKL | None = None
    control: ControlNetModel | UNetControlNetXSModel | None = None
    patch: int = 1  # pixel space only: model input = pixel_unshuffle(image, patch)

    @property
    def factor(self) -> int:
        """Image pixels per model cell (per side): the patch size in pixel space, the VAE's downsampling else."""
        return self.patch if self.vae is None else 2 ** (len(self.vae.config.block_out_channels) - 1)

    @property
    def size_multiple(self) -> int:
        """Image sizes must be divisible by this (VAE factor times the UNet's downsampling)."""
        return self.factor * 2 ** (len(self.unet.config.block_out_channels) - 1)

    def to_cpu(self) -> Modules:
        """Move every module to the CPU (for saving); returns self."""
        for module in (self.unet, self.vae, self.control):
            if module is not None:
                module.to("cpu")
        self.domain_embedding.data = self.domain_embedding.data.cpu()
        return self

    def encode(
        self, images: torch.Tensor, generator: torch.Generator | None = None, sample: bool = True
    ) -> torch.Tensor:
        """Images in [-1, 1] (B,3,H,W) -> the denoiser's space (latents scaled like diffusers pipelines).

        ``sample``: draw from the VAE's posterior (training); else take its mean (deterministic, sampling)."""
        if self.vae is None:
            return torch.nn.functional.pixel_unshuffle(images, self.patch) if self.patch > 1 else images
        dist = self.vae.encode(images.to(self.vae.dtype)).latent_dist
        latents = dist.mean
        if sample:
            noise = torch.randn(dist.mean.shape, generator=generator, dtype=torch.float32)
            noise = noise.to(dist.mean, non_blocking=True)
            latents = dist.mean + dist.std * noise
        shift = self.vae.config.shift_factor or 0.0
        return (latents - shift) * self.vae.config.scaling_factor

    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        """The denoiser's space -> images in [-1, 1]."""
        if self.vae is None:
            return torch.nn.functional.pixel_shuffle(latents, self.patch) if self.patch > 1 else latents
        shift = self.vae.config.shift_factor or 0.0
        latents = latents / self.vae.config.scaling_factor + shift
        return self.vae.decode(latents.to(self.vae.dtype)).sample


def scratch_modules(name: str, domains: tuple[str, ...], seed: int, **overrides) -> Modules:
    """Seeded, randomly initialised pixel-space modules for a built-in base.

    ``overrides`` replace :class:`ScratchSpec` fields (``prediction``, ``block_out_channels``, ``patch``; a different
    number of levels than the base has means no attention outside the mid block).
    """
    spec = dataclasses.replace(scratch_spec(name), **{k: v for k, v in overrides.items() if v is not None})
    if len(spec.attention) != len(spec.block_out_channels):
        spec = dataclasses.replace(spec, attention=(False,) * len(spec.block_out_channels))
    torch.manual_seed(seed)
    down = tuple("CrossAttnDownBlock2D" if a else "DownBlock2D" for a in spec.attention)
    up = tuple("CrossAttnUpBlock2D" if a else "UpBlock2D" for a in reversed(spec.attention))
    unet = UNet2DConditionModel(
        sample_size=spec.resolution[0] // spec.patch,
        in_channels=3 * spec.patch**2,
        out_channels=3 * spec.patch**2,
        down_block_types=down,
        up_block_types=up,
        mid_block_type="UNetMidBlock2DCrossAttn",
        block_out_channels=spec.block_out_channels,
        layers_per_block=spec.layers_per_block,
        norm_num_groups=spec.norm_num_groups,
        cross_attention_dim=spec.cross_attention_dim,
        attention_head_dim=spec.heads,
    )
    scheduler = DDPMScheduler(
        num_train_timesteps=1000,
        beta_schedule="squaredcos_cap_v2",
        prediction_type=spec.prediction,
        clip_sample=False,
        timestep_spacing="trailing",
    )
    embedding = torch.randn(len(domains), spec.tokens, spec.cross_attention_dim) * 0.5
    return Modules(unet, scheduler, torch.nn.Parameter(embedding), domains, patch=spec.patch)


def check_sd_folder(path: Path) -> None:
    """Raise one error listing every missing part of a Stable Diffusion folder."""
    if not path.is_dir():
        raise UrbangenError(f"base model folder not found: {path} (expected tiny, small, base or a folder)")
    missing = [
        f"{part}/{name}" for part, names in SD_PARTS.items() for name in names if not (path / part / name).is_file()
    ]
    if not any((path / "tokenizer" / n).is_file() for n in ("vocab.json", "tokenizer.json")):
        missing.append("tokenizer/vocab.json (or tokenizer.json)")
    if not any((path / "unet").glob("*.safetensors")) and not any((path / "unet").glob("*.bin")):
        missing.append("unet/*.safetensors")
    if missing:
        raise UrbangenError(f"{path} is not a Stable Diffusion folder: missing {', '.join(missing)}")


def sd_modules(path: Path, domains: dict[str, str], device: str = "cpu") -> Modules:
    """Load a Stable Diffusion-layout folder; the domain prompts are encoded once by its text encoder."""
    from transformers import CLIPTextModel, CLIPTokenizer

    check_sd_folder(path)
    try:
        unet = UNet2DConditionModel.from_pretrained(path / "unet")
        vae = AutoencoderKL.from_pretrained(path / "vae")
        text_encoder = CLIPTextModel.from_pretrained(path / "text_encoder").to(device)
        tokenizer = CLIPTokenizer.from_pretrained(path / "tokenizer")
        scheduler = DDPMScheduler.from_config(DDPMScheduler.load_config(path / "scheduler"))
    except (OSError, ValueError, KeyError, RuntimeError) as exc:
        raise UrbangenError(f"cannot load the Stable Diffusion folder {path}: {exc}") from exc
    tokens = tokenizer(
        list(domains.values()),
        padding="max_length",
        max_length=tokenizer.model_max_length,
        truncation=True,
        return_tensors="pt",
    )
    with torch.no_grad():
        embedding = text_encoder(tokens.input_ids.to(device))[0].float().cpu()
    if embedding.shape[-1] != unet.config.cross_attention_dim:
        raise UrbangenError(
            f"{path}: text encoder width {embedding.shape[-1]} != unet cross_attention_dim "
            f"{unet.config.cross_attention_dim}"
        )
    return Modules(unet, scheduler, torch.nn.Parameter(embedding, requires_grad=False), tuple(domains), vae=vae)


def base_modules(base: str, domains: dict[str, str], seed: int, device: str = "cpu", **overrides) -> Modules:
    """The modules of ``base``: a built-in name (``overrides`` as in :func:`scratch_modules`), a generator
    folder written by urbangen (e.g. ``urbangen world pretrain-base``) or a Stable Diffusion folder."""
    from urbangen.diffusion.config import BUILTIN_BASES, base_folder, base_generator_meta

    if base in BUILTIN_BASES:
        return scratch_modules(base, tuple(domains), seed, **overrides)
    if any(v is not None for v in overrides.values()):
        raise UrbangenError(
            "prediction_type, block_out_channels and patch apply to built-in bases only (a folder defines its model)"
        )
    if base_generator_meta(base) is not None:
        return generator_base(base_folder(base), tuple(domains))
    return sd_modules(base_folder(base), domains, device)


def generator_base(path: Path, domains: tuple[str, ...]) -> Modules:
    """A urbangen generator folder as a base: its denoiser (any control branch is dropped) and, per domain,
    the folder's embedding of that name or else of its first domain (its generic look) as the start."""
    from urbangen.diffusion.artefacts import load_generator

    modules, _ = load_generator(path)
    rows = [modules.domains.index(d) if d in modules.domains else 0 for d in domains]
    embedding = modules.domain_embedding.detach()[rows].clone()
    return dataclasses.replace(modules, control=None, domains=domains, domain_embedding=torch.nn.Parameter(embedding))


def default_resolution(base: str, modules: Modules) -> tuple[int, int]:
    """A built-in base's resolution, a generator folder's recorded one, or a Stable Diffusion UNet's square."""
    from urbangen.diffusion.config import BUILTIN_BASES, base_generator_meta

    if base in BUILTIN_BASES:
        return scratch_spec(base).resolution
    meta = base_generator_meta(base)
    if meta is not None:
        return tuple(meta["resolution"])
    size = modules.unet.config.sample_size * modules.factor
    return (size, size)


def control_embedding_channels(factor: int) -> tuple[int, ...]:
    """Conditioning-embedding widths: one stride-2 conv per factor of two between image and model grid."""
    levels = int(math.log2(factor))
    return tuple(min(16 * 2**i, 256) for i in range(levels + 1)) if levels else (32,)


def fused_control(control: torch.nn.Module | None) -> bool:
    """True for control modules that run the denoiser themselves (``control(x, t, states, controlnet_cond=c)
    .sample``: ControlNet-XS and concat); False for a ControlNet, whose residuals go into the UNet."""
    from urbangen.diffusion.concat import ConcatControlModel

    return isinstance(control, UNetControlNetXSModel | ConcatControlModel)


def make_control(modules: Modules, kind: str, channels: int, seed: int, xs_size_ratio: float = 0.25):
    """A new control branch: ControlNet copied from the UNet, ControlNet-XS, or a concat-input UNet copy."""
    torch.manual_seed(seed)
    embed = control_embedding_channels(modules.factor)
    if kind == "controlnet":
        return ControlNetModel.from_unet(
            modules.unet, conditioning_embedding_out_channels=embed, conditioning_channels=channels
        )
    if kind == "concat":
        from urbangen.diffusion.concat import ConcatControlModel

        return ConcatControlModel.from_unet(modules.unet, channels, modules.factor)
    if kind != "controlnet_xs":
        raise UrbangenError(f"unknown control type {kind!r}; expected controlnet, controlnet_xs or concat")
    cfg = modules.unet.config
    problems = []
    if cfg.in_channels != 4:
        problems.append(f"a 4-channel latent space (this base has {cfg.in_channels} channels)")
    if cfg.layers_per_block != 2:
        problems.append(f"layers_per_block=2 (this base has {cfg.layers_per_block})")
    if problems:
        raise UrbangenError("stage2.control=controlnet_xs needs " + " and ".join(problems) + "; use controlnet")
    return UNetControlNetXSModel.from_unet(
        modules.unet,
        size_ratio=xs_size_ratio,
        ctrl_optional_kwargs={"conditioning_channels": channels, "conditioning_embedding_out_channels": embed},
    )
