"""The control signal: one-hot classes + an ``unknown`` channel (+ normalised inverse depth).

Training regularisers live here too: label erosion (each segment shrinks by ``r`` pixels; the removed band
and every ignore pixel become ``unknown``, so the model is never taught where an imperfect pseudo-label
boundary lies) and condition dropout (a zero condition, the "null" input of classifier-free guidance).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
import torch
from scipy import ndimage

from urbangen.errors import UrbangenError
from urbangen.labels import IGNORE


@dataclass(frozen=True)
class ConditionSpec:
    """What the control branch reads: ``num_classes`` one-hot channels, ``unknown``, optional depth."""

    num_classes: int
    depth: bool = False
    depth_near: float = 1.0

    @property
    def channels(self) -> int:
        return self.num_classes + 1 + int(self.depth)

    def to_dict(self) -> dict:
        return {**asdict(self), "channels": self.channels, "unknown_channel": self.num_classes}

    @classmethod
    def from_dict(cls, data: dict) -> ConditionSpec:
        return cls(int(data["num_classes"]), bool(data["depth"]), float(data["depth_near"]))


def erode(label: np.ndarray, radius: int) -> np.ndarray:
    """Shrink every segment by ``radius`` pixels (square window); removed pixels become IGNORE.

    A pixel keeps its class only when its whole (2r+1)^2 neighbourhood holds that class, which erodes
    each connected segment (and the border with ignore regions) without eroding at the image border.
    """
    if radius <= 0:
        return label
    size = 2 * radius + 1
    high = ndimage.maximum_filter(label, size=size, mode="nearest")
    low = ndimage.minimum_filter(label, size=size, mode="nearest")
    return np.where(high == low, label, IGNORE).astype(np.uint8)


def inverse_depth(depth_m: torch.Tensor, near: float) -> torch.Tensor:
    """Metres -> near/depth clipped to [0, 1]; zero or negative depth (invalid) -> 0."""
    inv = near / depth_m.clamp(min=1e-6)
    return torch.where(depth_m > 0, inv.clamp(0.0, 1.0), torch.zeros_like(inv))


def condition_tensor(labels: torch.Tensor, spec: ConditionSpec, depth_m: torch.Tensor | None = None) -> torch.Tensor:
    """(B,H,W) trainIds (255 or any id >= num_classes -> unknown) [+ (B,H,W) depth in metres] -> (B,C,H,W).

    The one-hot channels hold 1/0, the unknown channel 1 where the class is unknown, depth in [0, 1].
    """
    labels = labels.long()
    index = torch.where(labels < spec.num_classes, labels, spec.num_classes)
    # written straight into contiguous (NCHW) float memory, on the labels' device: F.one_hot's int64
    # (B,H,W,C) tensor and its permuted copy took ~0.3 s per batch of eight 256x512 maps on a CPU thread
    b, h, w = labels.shape
    onehot = torch.zeros((b, spec.num_classes + 1, h, w), device=labels.device)
    onehot.scatter_(1, index[:, None], 1.0)
    if not spec.depth:
        return onehot
    if depth_m is None:
        raise UrbangenError("this generator's condition has a depth channel: depth is required")
    if depth_m.shape != labels.shape:
        raise UrbangenError(f"depth shape {tuple(depth_m.shape)} does not match labels {tuple(labels.shape)}")
    return torch.cat([onehot, inverse_depth(depth_m.float(), spec.depth_near)[:, None]], dim=1)


def drop_condition(cond: torch.Tensor, p: float, generator: torch.Generator) -> torch.Tensor:
    """Replace each sample's condition by zeros with probability ``p`` (the null condition of CFG), in place:
    only the dropped samples' memory is written (a product over the batch cost a pass over all of it), and
    the draw stays on the CPU (a boolean mask on the GPU would wait for it)."""
    if p <= 0:
        return cond
    dropped = torch.rand(cond.shape[0], generator=generator) < p
    for i in dropped.nonzero().flatten().tolist():
        cond[i].zero_()
    return cond
