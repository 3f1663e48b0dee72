"""Stage 1, appearance alignment: fine-tune the denoiser on target images alone.

The model's prior moves to the target's architecture, vegetation, colours and camera. All UNet weights are
trained (or a LoRA of rank ``lora_rank`` for large bases, merged into the weights when saved); a
from-scratch base also learns its domain embedding, a Stable Diffusion base keeps its prompt embedding.
"""

from __future__ import annotations

import torch

from urbangen.diffusion.build import Modules
from urbangen.diffusion.config import Stage1Config

LORA_TARGETS = ["to_q", "to_k", "to_v", "to_out.0"]


class Stage1Model(torch.nn.Module):
    """The UNet with its domain embedding: forward(noisy, t, domain, cond=None) -> prediction."""

    def __init__(self, modules: Modules) -> None:
        super().__init__()
        self.unet = modules.unet
        self.domain_embedding = modules.domain_embedding

    def forward(self, noisy: torch.Tensor, t: torch.Tensor, domain: torch.Tensor, cond: torch.Tensor | None = None):
        return self.unet(noisy, t, self.domain_embedding[domain]).sample


def prepare(modules: Modules, cfg: Stage1Config, gradient_checkpointing: bool = False) -> Stage1Model:
    """Mark what stage 1 trains (all UNet weights or a LoRA) and wrap it."""
    if modules.vae is not None:
        modules.vae.requires_grad_(False).eval()
    if cfg.lora_rank:
        from peft import LoraConfig

        modules.unet.requires_grad_(False)
        modules.unet.add_adapter(
            LoraConfig(
                r=cfg.lora_rank, lora_alpha=cfg.lora_rank, init_lora_weights="gaussian", target_modules=LORA_TARGETS
            )
        )
    else:
        modules.unet.requires_grad_(True)
    if gradient_checkpointing:
        modules.unet.enable_gradient_checkpointing()
    return Stage1Model(modules)


def finish(modules: Modules, cfg: Stage1Config) -> None:
    """Merge a LoRA into the UNet weights so the saved UNet is a plain diffusers model."""
    if cfg.lora_rank:
        modules.unet.fuse_lora()
        modules.unet.unload_lora()
    modules.unet.requires_grad_(False).eval()
    modules.domain_embedding.requires_grad_(False)
