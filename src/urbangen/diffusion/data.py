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


@dataclass(frozen=True)
class Crop:
    """A planned crop: ``items[item]``'s region ``box`` (x0, y0, x1, y1) in its pixels, mirrored or not."""

    item: int
    box: tuple[float, float, float, float]
    flip: bool


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

    def plan(self, rng: np.random.Generator, size: int) -> list[Crop]:
        """Draw the random choices of a batch of ``size`` crops: which sample, where, flipped or not.

        All of the data's randomness is here (cheap, in order); :meth:`render` does the pixel work, so a
        batch can be drawn now and rendered later, in another thread (:class:`Batches`).
        """
        picks = rng.integers(0, len(self.items), size=size)
        return [self._plan_crop(int(i), rng) for i in picks]

    def _plan_crop(self, index: int, rng: np.random.Generator) -> Crop:
        """One crop of ``items[index]``: model aspect, a side of ``crop_scale`` of the image's."""
        rh, rw = self.resolution
        h, w = self.items[index].image.shape[:2]
        full_h = min(h, w * rh / rw)
        scale = rng.uniform(*self.crop_scale)
        ch, cw = full_h * scale, full_h * scale * rw / rh
        y0, x0 = rng.uniform(0, h - ch), rng.uniform(0, w - cw)
        flip = self.hflip and rng.random() < 0.5
        return Crop(index, (x0, y0, x0 + cw, y0 + ch), bool(flip))

    def render(self, plan: list[Crop]) -> dict[str, torch.Tensor]:
        """The batch a plan describes: images (B,3,H,W) in [-1,1], labels (B,H,W) uint8, depth (B,H,W), domain (B,)."""
        crops = [self.crop(c) for c in plan]
        images = torch.from_numpy(np.stack([c[0] for c in crops])).permute(0, 3, 1, 2).float() / 127.5 - 1.0
        out = {"images": images, "domain": torch.tensor([self.items[c.item].domain for c in plan])}
        if crops[0][1] is not None:
            out["labels"] = torch.from_numpy(np.stack([c[1] for c in crops]))
        if crops[0][2] is not None:
            out["depth"] = torch.from_numpy(np.stack([c[2] for c in crops]))
        return out

    def batch(self, rng: np.random.Generator, size: int) -> dict[str, torch.Tensor]:
        """``size`` random crops (:meth:`plan`, then :meth:`render`)."""
        return self.render(self.plan(rng, size))

    def crop(self, crop: Crop) -> tuple[np.ndarray, np.ndarray | None, np.ndarray | None]:
        """The pixels of one planned crop, resized to the model resolution (labels eroded)."""
        rh, rw = self.resolution
        item = self.items[crop.item]
        image = np.asarray(Image.fromarray(item.image).resize((rw, rh), Image.Resampling.BILINEAR, box=crop.box))
        label = depth = None
        if item.label is not None:
            label = np.asarray(Image.fromarray(item.label).resize((rw, rh), Image.Resampling.NEAREST, box=crop.box))
            label = erode(label, self.erosion)
        if item.depth is not None:
            depth = np.asarray(Image.fromarray(item.depth).resize((rw, rh), Image.Resampling.NEAREST, box=crop.box))
        if crop.flip:
            image = image[:, ::-1]
            label = label[:, ::-1] if label is not None else None
            depth = depth[:, ::-1] if depth is not None else None
        return image, label, depth


class Batches:
    """A stage's batches in order, rendered ``workers`` threads ahead of the training step.

    Batches are planned in order from ``rng`` in this thread (so the stream is the same with any number of
    workers) and rendered in a thread pool (resizing and erosion release the GIL; on a GPU machine the
    crops of a 256x512 batch take longer than a training step). ``next()`` returns a batch with the data
    RNG's state just after that batch was drawn: what a checkpoint saves, since ``rng`` itself has moved on
    to the batches in flight. ``workers=0`` renders each batch when it is asked for. At the end of a stage
    the batches still in flight are dropped (the RNG state saved with the last step does not include them).
    """

    def __init__(self, data: TargetSet, rng: np.random.Generator, batch_size: int, workers: int = 0) -> None:
        from collections import deque
        from concurrent.futures import ThreadPoolExecutor

        self.data, self.rng, self.batch_size = data, rng, batch_size
        self.pool = ThreadPoolExecutor(workers, thread_name_prefix="adapt-data") if workers else None
        self.ahead = 2 * workers
        self.queue: deque = deque()

    def _submit(self) -> None:
        plan = self.data.plan(self.rng, self.batch_size)
        self.queue.append((self.pool.submit(self.data.render, plan), self.rng.bit_generator.state))

    def next(self) -> tuple[dict[str, torch.Tensor], dict]:
        """(the next batch, the data RNG's state to checkpoint after it)."""
        if self.pool is None:
            return self.data.batch(self.rng, self.batch_size), self.rng.bit_generator.state
        while len(self.queue) < self.ahead:
            self._submit()
        future, state = self.queue.popleft()
        return future.result(), state

    def close(self) -> None:
        if self.pool is not None:
            self.pool.shutdown(wait=True, cancel_futures=True)
            self.queue.clear()

    def __enter__(self) -> Batches:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
