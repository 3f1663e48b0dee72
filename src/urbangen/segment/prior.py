"""Class spatial priors from labelled source maps, for pseudo-labelling (CBST-SP).

Street scenes share a layout: sky at the top, road at the bottom, buildings on either side. A segmenter
trained on one domain and applied to another confuses classes that look alike there (on a dark, hazy
target the demo's FDA segmenter called 83% of the sky "truck"), but the layout still holds. Following
class-balanced self-training with spatial priors (CBST-SP, Zou et al., ECCV 2018), :func:`spatial_prior`
counts how often each class occupies each position of the *source* label maps, q(c | pos), and
:func:`apply_prior` weighs the segmenter's softmax by it before the arg-max.

The weight is q(c | pos) / q(c), where q(c) is the class's share over all positions: by Bayes, with the
image and the position independent given the class, p(c | x, pos) is proportional to
p(c | x) * p(pos | c), and p(pos | c) is proportional to q(c | pos) / q(c). Multiplying by q(c | pos) alone
(as CBST-SP does) counts the class frequencies twice, since the softmax already holds those of the
training data: frequent classes then swallow rarer ones where they overlap (on the demo's seed 0 it cut
vegetation from 31 to 11 IoU; with the ratio it stays at 32 while road goes from 24 to 59).

Class balance (:func:`fit_class_weights`): the prior fixes where a class may be, not how much of the
target it takes. On a hazy target the FDA segmenter still labelled 16% of the pixels "truck" (the
target's ground truth holds 4%) and 1% vegetation (12%). The source's class shares (:func:`class_shares`)
say how much of a street scene each class covers; the fitted weights scale down every class whose arg-max share of the
target exceeds its source share until it no longer does (a class never over its share keeps weight 1),
so the pixels an over-predicted class took go to each pixel's next most probable class.

Positions are normalised: every label map is resized (nearest) to the prior's grid and the prior is
resized (bilinear) to each image, so source and target sizes may differ. A count of one is added to
every class at every position (Laplace smoothing): the prior never rules a class out, it only tips
close calls. docs/BENCHMARKS.md ("Pseudo-labels with a spatial prior") has the measured effect.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from PIL import Image

from urbangen.errors import UrbangenError
from urbangen.io import atomic_path
from urbangen.segment.data import DataSource, open_source

if TYPE_CHECKING:
    import torch

GRID = (128, 256)  # (height, width) the prior is counted at
MIN_WEIGHT = 1e-6  # class balance scales a class down by at most this factor


def spatial_prior(source: DataSource, grid: tuple[int, int] = GRID, progress: bool = True) -> np.ndarray:
    """C x H x W float32 (C: the source taxonomy's classes, H x W: ``grid``): the Laplace-smoothed share
    of the source label maps that hold class c at each normalised position; it sums to 1 at every position."""
    from tqdm import tqdm

    opened = open_source(source, need_images=False)
    if not len(opened):
        raise UrbangenError(f"spatial prior: {source.describe()} has no labelled samples")
    n = opened.taxonomy.num_classes
    size = grid[0] * grid[1]
    counts = np.ones(n * size, dtype=np.int64)  # Laplace smoothing; index: class * size + position
    for i in tqdm(range(len(opened)), desc="spatial prior", unit="map", disable=not progress):
        label = opened.load_label(i)
        if label.shape != grid:
            label = np.asarray(Image.fromarray(label).resize(grid[::-1], Image.NEAREST))
        flat = label.astype(np.int64).ravel()
        valid = flat < n
        counts += np.bincount(flat[valid] * size + np.flatnonzero(valid), minlength=n * size)
    counts = counts.reshape(n, *grid)
    return (counts / counts.sum(axis=0, keepdims=True)).astype(np.float32)


def class_shares(source: DataSource, progress: bool = True) -> np.ndarray:
    """C float64: each class's share of the labelled pixels of ``source`` (ignore and unknown ids left out)."""
    from tqdm import tqdm

    opened = open_source(source, need_images=False)
    n = opened.taxonomy.num_classes
    counts = np.zeros(n, dtype=np.int64)
    for i in tqdm(range(len(opened)), desc="class shares", unit="map", disable=not progress):
        label = opened.load_label(i)
        counts += np.bincount(label[label < n].astype(np.int64), minlength=n)
    if not counts.sum():
        raise UrbangenError(f"class shares: {source.describe()} has no labelled pixels")
    return counts / counts.sum()


def load_or_compute(path: Path, source: DataSource, grid: tuple[int, int] = GRID) -> np.ndarray:
    """The prior cached at ``path`` (``.npy``), computed from ``source`` and written atomically if absent."""
    if path.is_file():
        return np.load(path)
    prior = spatial_prior(source, grid)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        np.save(f, prior)
    return prior


def apply_prior(probs: torch.Tensor, prior: np.ndarray, weight: float = 1.0) -> torch.Tensor:
    """Softmax ``probs`` (B x C x H x W) times (q(c | pos) / q(c)) ** ``weight``, renormalised over classes;
    ``prior``: q(c | pos) as C x h x w (:func:`spatial_prior`), resized to H x W. A class whose share is the
    same at every position is left as the softmax has it."""
    import torch
    import torch.nn.functional as F

    if prior.shape[0] != probs.shape[1]:
        raise UrbangenError(f"spatial prior has {prior.shape[0]} classes but the segmenter predicts {probs.shape[1]}")
    share = prior.mean(axis=(1, 2), keepdims=True)
    ratio = torch.from_numpy(prior / np.maximum(share, np.finfo(np.float32).tiny)).to(probs.device, probs.dtype)
    q = F.interpolate(ratio[None], size=probs.shape[-2:], mode="bilinear", align_corners=False)
    return reweigh(probs * q.pow(weight))


def reweigh(probs: torch.Tensor, class_weights: np.ndarray | None = None) -> torch.Tensor:
    """``probs`` (B x C x H x W) times the per-class ``class_weights`` (C; none: 1), renormalised over classes."""
    import torch

    out = probs
    if class_weights is not None:
        if len(class_weights) != probs.shape[1]:
            raise UrbangenError(f"{len(class_weights)} class weights for a segmenter of {probs.shape[1]} classes")
        out = probs * torch.as_tensor(class_weights, dtype=probs.dtype, device=probs.device).view(1, -1, 1, 1)
    return out / out.sum(dim=1, keepdim=True).clamp_min(torch.finfo(out.dtype).tiny)


def fit_class_weights(probs: np.ndarray, shares: np.ndarray, iterations: int = 100) -> np.ndarray:
    """Per-class weights in (0, 1] under which no class takes a larger arg-max share of ``probs`` than its
    share in ``shares``: ``probs`` is N x C (posteriors of a sample of target pixels), ``shares`` C (the
    source's class shares, :func:`class_shares`).

    Multiplicative updates: each step scales every weight by sqrt(share / arg-max share), clipped to
    [1/2, 2], and caps it at 1, so over-predicted classes shrink and a class never over its share stays
    at 1. A class the arg-max never picks is left alone; no weight goes below ``MIN_WEIGHT`` (a class the
    source never shows is scaled down that far, not ruled out)."""
    if probs.ndim != 2 or probs.shape[1] != len(shares):
        raise UrbangenError(f"class balance: expected N x {len(shares)} posteriors, got shape {probs.shape}")
    shares = np.asarray(shares, dtype=np.float64) / np.sum(shares)
    weights = np.ones(len(shares))
    for _ in range(iterations):
        taken = np.bincount((probs * weights).argmax(axis=1), minlength=len(shares)) / len(probs)
        ratio = np.where(taken > 0, shares / np.maximum(taken, 1e-12), 1.0)
        weights = np.clip(weights * np.clip(np.sqrt(ratio), 0.5, 2.0), MIN_WEIGHT, 1.0)
    return weights
