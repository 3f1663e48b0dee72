"""Semantic control by input concatenation: the denoiser itself reads the control tensor.

A ControlNet learns to steer a frozen denoiser through zero-initialised side outputs; it is the right tool
for a large pretrained model, but it needs many thousands of steps before it follows the condition. At the
small budgets of a CPU run (and for from-scratch bases generally) reading the label map directly is far
cheaper to learn: the control tensor, folded onto the model grid (``pixel_unshuffle`` by the image-to-model
factor, so no pixel of the label is lost), is concatenated to the denoiser's input, as diffusers' depth and
inpainting models do. The new input weights start at zero, so before training the model is exactly the
stage-1 denoiser; stage 2 then fine-tunes the whole copy on (target image, pseudo-label) pairs.

The module has the calling convention of ``UNetControlNetXSModel`` (one fused call returning ``.sample``),
so the sampler, the fast engine and the ONNX export treat both alike
(see :func:`urbangen.diffusion.build.fused_control`).
"""

from __future__ import annotations

from typing import Any

import torch
from diffusers import UNet2DConditionModel
from diffusers.configuration_utils import ConfigMixin, register_to_config
from diffusers.models.modeling_utils import ModelMixin
from diffusers.models.unets.unet_2d_condition import UNet2DConditionOutput


class ConcatControlModel(ModelMixin, ConfigMixin):
    """A denoiser copy whose first convolution also reads the control tensor folded to the model grid."""

    _supports_gradient_checkpointing = True

    @register_to_config
    def __init__(self, unet_config: dict[str, Any], conditioning_channels: int, factor: int) -> None:
        super().__init__()
        config = dict(unet_config)
        config["in_channels"] = int(unet_config["in_channels"]) + conditioning_channels * factor**2
        self.unet = UNet2DConditionModel.from_config(config)

    @classmethod
    def from_unet(cls, unet: UNet2DConditionModel, conditioning_channels: int, factor: int) -> ConcatControlModel:
        """A copy of ``unet`` with zero weights for the new control inputs (its output is ``unet``'s at first)."""
        config = {k: v for k, v in unet.config.items() if not k.startswith("_")}  # no load paths or versions
        model = cls(config, conditioning_channels, factor)
        state = {k: v.clone() for k, v in unet.state_dict().items()}
        old = state["conv_in.weight"]
        new = torch.zeros_like(model.unet.conv_in.weight)
        new[:, : old.shape[1]] = old
        state["conv_in.weight"] = new
        model.unet.load_state_dict(state)
        return model.to(unet.device) if unet.dtype == torch.float32 else model.to(unet.device, unet.dtype)

    def enable_gradient_checkpointing(self, *args: Any, **kwargs: Any) -> None:
        self.unet.enable_gradient_checkpointing(*args, **kwargs)

    def forward(
        self,
        sample: torch.Tensor,
        timestep: torch.Tensor,
        encoder_hidden_states: torch.Tensor,
        controlnet_cond: torch.Tensor,
        return_dict: bool = True,
    ) -> UNet2DConditionOutput | tuple[torch.Tensor]:
        """(B,c,h,w) model input, timesteps, cross-attention states, (B,C,h*f,w*f) control -> prediction."""
        factor = self.config.factor
        cond = torch.nn.functional.pixel_unshuffle(controlnet_cond, factor) if factor > 1 else controlnet_cond
        out = self.unet(torch.cat([sample, cond.to(sample.dtype)], dim=1), timestep, encoder_hidden_states).sample
        return UNet2DConditionOutput(sample=out) if return_dict else (out,)
