"""Adaptation data: target images (+ pseudo-labels, + depth) held in memory, served as random crops.

Images are read once and kept at most twice the model resolution, so a training step only crops and
resizes small arrays. Batches are drawn with a ``numpy.random.Generator`` whose state is checkpointed,
which makes a resumed run see exactly the batches an uninterrupted one would have seen.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from urbangen.diffusion.conditioning import erode
from urbangen.diffusion.config import AdaptConfig
from urbangen.errors import UrbangenError
from urbangen.io import check_same_size, read_label, read_rgb, sha256_file
from urbangen.labels import cityscapes19


@dataclass(frozen=True)
class Item:
    id: str
    image: np.ndarray  # HxWx3 uint8
    label: np.ndarray | None  # HxW uint8 trainIds, 255 ignore
    depth: np.ndarray | None  # HxW float32 metres, 0 invalid
    domain: int


def _shrink(image: Image.Image, target: tuple[int, int], resample: int) -> Image.Image:
    """Downscale so the image is at most twice ``target`` (H, W) in both directions; never upscale."""
    scale = min(1.0, 2 * max(target[0] / image.height, target[1] / image.width))
    if scale >= 1.0:
        return image
    size = (max(1, round(image.width * scale)), max(1, round(image.height * scale)))
    return image.resize(size, resample)


class TargetSet:
    """In-memory target samples and their random crops at the model resolution."""

    def __init__(self, items: list[Item], resolution: tuple[int, int], cfg: AdaptConfig, digests: dict) -> None:
        if not items:
            raise UrbangenError("no target images to train on")
        self.items = items
        self.resolution = resolution
        self.crop_scale = cfg.crop_scale
        self.hflip = cfg.hflip
        self.erosion = cfg.stage2.erosion
        self.digests = digests

    @classmethod
    def load(cls, cfg: AdaptConfig, resolution: tuple[int, int], labels: bool, depth: bool) -> TargetSet:
        """Read the target split (and ``labels_dir/<id>.png`` when ``labels``; depth files when ``depth``)."""
        from urbangen.datasets import open_dataset

        index = open_dataset(cfg.target.format, cfg.target.root).index(cfg.target.split)
        samples = list(index.samples)[: cfg.target.limit]
        samples = [s for s in samples if s.image is not None]
        if not samples:
            raise UrbangenError(f"no target images in {cfg.target.root} (split {cfg.target.split})")
        label_files: dict[str, Path] = {}
        if labels:
            if cfg.labels_dir is None:
                raise UrbangenError("stage 2 needs labels_dir (a folder of <id>.png pseudo-labels)")
            label_files = {s.id: Path(cfg.labels_dir) / f"{s.id}.png" for s in samples}
            missing = [str(p) for p in label_files.values() if not p.is_file()]
            if missing:
                raise UrbangenError(
                    f"labels_dir {cfg.labels_dir}: {len(missing)} of {len(samples)} target images have no "
                    f"pseudo-label, e.g. {missing[:3]}"
                )
        if depth:
            no_depth = [s.id for s in samples if s.depth is None]
            if no_depth:
                raise UrbangenError(
                    f"stage2.depth is on but {len(no_depth)} target samples have no depth file "
                    f"(e.g. {no_depth[:3]}); turn depth off or provide depth/<split>/... files"
                )
        taxonomy = cityscapes19()
        domains = list(cfg.domains)
        items, image_hash, label_hash = [], hashlib.sha256(), hashlib.sha256()
        for sample in samples:
            rgb = read_rgb(sample.image)
            image_hash.update(f"{sample.id}:{sha256_file(sample.image)}\n".encode())
            image = _shrink(Image.fromarray(rgb), resolution, Image.Resampling.BOX)
            label = dmap = None
            if labels:
                raw = read_label(label_files[sample.id])
                check_same_size(rgb, raw, sample.image, label_files[sample.id])
                taxonomy.check(raw, label_files[sample.id])
                label_hash.update(f"{sample.id}:{sha256_file(label_files[sample.id])}\n".encode())
                label = np.asarray(_shrink(Image.fromarray(raw.astype(np.uint8)), resolution, Image.Resampling.NEAREST))
            if depth:
                raw_depth = read_label(sample.depth).astype(np.float32) / 100.0  # centimetres -> metres
                check_same_size(rgb, raw_depth, sample.image, sample.depth)
                dmap = np.asarray(_shrink(Image.fromarray(raw_depth), resolution, Image.Resampling.NEAREST))
            condition = sample.meta.get("condition") if sample.meta else None
            domain = domains.index(condition) if condition in domains else 0
            items.append(Item(sample.id, np.asarray(image), label, dmap, domain))
        digests = {"images": len(items), "images_sha256": image_hash.hexdigest()}
        if labels:
            digests["labels_sha256"] = label_hash.hexdigest()
        return cls(items, resolution, cfg, digests)

    def crop(self, item: Item, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray | None, np.ndarray | None]:
        """One random crop (model aspect, scale in ``crop_scale``) resized to the model resolution."""
        rh, rw = self.resolution
        h, w = item.image.shape[:2]
        full_h = min(h, w * rh / rw)
        scale = rng.uniform(*self.crop_scale)
        ch, cw = full_h * scale, full_h * scale * rw / rh
        y0, x0 = rng.uniform(0, h - ch), rng.uniform(0, w - cw)
        box = (x0, y0, x0 + cw, y0 + ch)
        flip = self.hflip and rng.random() < 0.5
        image = np.asarray(Image.fromarray(item.image).resize((rw, rh), Image.Resampling.BILINEAR, box=box))
        label = depth = None
        if item.label is not None:
            label = np.asarray(Image.fromarray(item.label).resize((rw, rh), Image.Resampling.NEAREST, box=box))
            label = erode(label, self.erosion)
        if item.depth is not None:
            depth = np.asarray(Image.fromarray(item.depth).resize((rw, rh), Image.Resampling.NEAREST, box=box))
        if flip:
            image = image[:, ::-1]
            label = label[:, ::-1] if label is not None else None
            depth = depth[:, ::-1] if depth is not None else None
        return image, label, depth

    def batch(self, rng: np.random.Generator, size: int) -> dict[str, torch.Tensor]:
        """``size`` random crops: images (B,3,H,W) in [-1,1], labels (B,H,W) uint8, depth (B,H,W), domain (B,)."""
        picks = rng.integers(0, len(self.items), size=size)
        crops = [self.crop(self.items[i], rng) for i in picks]
        images = torch.from_numpy(np.stack([c[0] for c in crops])).permute(0, 3, 1, 2).float() / 127.5 - 1.0
        out = {"images": images, "domain": torch.tensor([self.items[i].domain for i in picks])}
        if crops[0][1] is not None:
            out["labels"] = torch.from_numpy(np.stack([c[1] for c in crops]))
        if crops[0][2] is not None:
            out["depth"] = torch.from_numpy(np.stack([c[2] for c in crops]))
        return out
