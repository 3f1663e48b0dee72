"""Stage 2, semantic control: train a control branch on (target image, pseudo-label) pairs.

The branch is a ControlNet copied from the UNet or ControlNet-XS fused with it (both beside the frozen
stage-1 denoiser), or ``concat``: a copy of the denoiser that reads the condition as extra input channels
and is fine-tuned whole (the stage-1 weights themselves stay untouched). It reads the control tensor of
:mod:`urbangen.diffusion.conditioning`: labels are eroded by the data loader, the condition of a fraction
``cond_dropout`` of the batch is zeroed so sampling can use classifier-free guidance, and a depth channel is
added when ``depth`` is on.
"""

from __future__ import annotations

import torch

from urbangen.diffusion.build import Modules, fused_control, make_control
from urbangen.diffusion.conditioning import ConditionSpec, condition_tensor, drop_condition
from urbangen.diffusion.config import Stage2Config


class Stage2Model(torch.nn.Module):
    """Control branch + frozen UNet: forward(noisy, t, domain, cond) -> prediction."""

    def __init__(self, modules: Modules) -> None:
        super().__init__()
        self.control = modules.control
        self.unet = modules.unet
        self.register_buffer("domain_embedding", modules.domain_embedding.detach(), persistent=False)
        self.fused = fused_control(modules.control)

    def forward(self, noisy: torch.Tensor, t: torch.Tensor, domain: torch.Tensor, cond: torch.Tensor):
        states = self.domain_embedding[domain]
        if self.fused:
            return self.control(noisy, t, states, controlnet_cond=cond).sample
        down, mid = self.control(noisy, t, states, controlnet_cond=cond, return_dict=False)
        return self.unet(
            noisy, t, states, down_block_additional_residuals=down, mid_block_additional_residual=mid
        ).sample


def prepare(modules: Modules, cfg: Stage2Config, seed: int, gradient_checkpointing: bool = False) -> Stage2Model:
    """Freeze the denoiser, add a fresh control branch (seeded) and wrap both."""
    modules.unet.requires_grad_(False).eval()
    modules.domain_embedding.requires_grad_(False)
    if modules.vae is not None:
        modules.vae.requires_grad_(False).eval()
    spec = condition_spec(cfg)
    modules.control = make_control(modules, cfg.control, spec.channels, seed, cfg.xs_size_ratio)
    if cfg.control == "controlnet_xs":
        modules.control.freeze_unet_params()
    else:
        modules.control.requires_grad_(True)
    if gradient_checkpointing:
        modules.control.enable_gradient_checkpointing()
        if cfg.control == "controlnet":
            modules.unet.enable_gradient_checkpointing()
    return Stage2Model(modules)


def condition_spec(cfg: Stage2Config) -> ConditionSpec:
    from urbangen.labels import cityscapes19

    return ConditionSpec(cityscapes19().num_classes, cfg.depth, cfg.depth_near)


def make_cond_fn(cfg: Stage2Config):
    """Batch -> control tensor (with condition dropout), drawing randomness from the stage's generator."""
    spec = condition_spec(cfg)

    def cond_fn(batch: dict, gen: torch.Generator) -> torch.Tensor:
        cond = condition_tensor(batch["labels"], spec, batch.get("depth"))
        return drop_condition(cond, cfg.cond_dropout, gen)

    return cond_fn
