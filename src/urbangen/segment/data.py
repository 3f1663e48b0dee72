"""Training data: dataset sources (with optional pseudo-label folders), augmentation, weighted mixing and
rare-class sampling.

Every training item is a pure function of ``(seed, global item index)``: which source, which image, which
scale, crop and flip. Data loader workers, interruptions and the number of GPUs therefore never change
what the model sees, which is what makes CPU training deterministic and resume exact.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image
from pydantic import Field

from urbangen.config import StrictModel
from urbangen.datasets import Sample, open_dataset
from urbangen.datasets.base import DatasetReader, load_image
from urbangen.errors import UrbangenError
from urbangen.io import check_same_size, read_label, write_bytes_atomic
from urbangen.labels import IGNORE, Taxonomy, cityscapes19


class DataSource(StrictModel):
    """One dataset to read: ``format`` + ``root`` + ``split``, mixed into training with ``weight``.

    ``labels_dir``: read labels from ``<labels_dir>/<id>.png`` (8-bit trainIds, 255 = ignore) instead of the
    dataset's own labels; this is how pseudo-labels and standardised labels are used.
    ``mapping_file``: the label mapping YAML for formats that need one (e.g. ``folder``).
    """

    format: str = "cityscapes"
    root: Path
    split: str | None = None
    weight: float = Field(default=1.0, gt=0)
    labels_dir: Path | None = None
    mapping_file: Path | None = None

    def describe(self) -> str:
        return f"{self.format}:{self.root}" + (f" [{self.split}]" if self.split else "")


@dataclass(frozen=True)
class OpenSource:
    """A :class:`DataSource` with its reader and indexed samples."""

    source: DataSource
    reader: DatasetReader
    samples: tuple[Sample, ...]
    taxonomy: Taxonomy

    def __len__(self) -> int:
        return len(self.samples)

    def load_image(self, i: int) -> np.ndarray:
        return load_image(self.samples[i])

    def load_label(self, i: int) -> np.ndarray:
        sample = self.samples[i]
        if self.source.labels_dir is None:
            return self.reader.load_train_ids(sample)
        path = Path(self.source.labels_dir) / f"{sample.id}.png"
        label = read_label(path)
        if label.dtype != np.uint8:
            raise UrbangenError(f"{path}: expected an 8-bit trainId PNG, got {label.dtype}")
        self.taxonomy.check(label, path)
        return label

    def load(self, i: int) -> tuple[np.ndarray, np.ndarray]:
        """(image uint8 HxWx3, trainIds uint8 HxW) of sample ``i``."""
        image, label = self.load_image(i), self.load_label(i)
        check_same_size(image, label, self.samples[i].image, self.samples[i].label)
        return image, label


def open_source(source: DataSource, need_labels: bool = True, need_images: bool = True) -> OpenSource:
    """Index ``source``; with ``need_labels`` every sample must have a label (own or in ``labels_dir``);
    with ``need_images`` only samples with an image are kept (label-only datasets serve evaluation)."""
    reader = open_dataset(source.format, source.root, mapping_file=source.mapping_file)
    index = reader.index(source.split)
    samples = tuple(s for s in index.samples if s.image is not None or not need_images)
    if not samples:
        raise UrbangenError(f"no {'images' if need_images else 'samples'} found in {source.describe()}")
    if need_labels:
        if source.labels_dir is not None:
            missing = [s.id for s in samples if not (Path(source.labels_dir) / f"{s.id}.png").is_file()]
            where = f"labels_dir {source.labels_dir}"
        else:
            missing = [s.id for s in samples if s.label is None]
            where = source.describe()
        if missing:
            raise UrbangenError(
                f"{len(missing)} of {len(samples)} images have no label in {where} (e.g. {missing[:3]})"
            )
    return OpenSource(source, reader, samples, source_taxonomy(reader))


def source_taxonomy(reader: DatasetReader) -> Taxonomy:
    """The target taxonomy a reader standardises to (Cityscapes' 19 classes when it does not say)."""
    try:
        return reader.mapping().target
    except (NotImplementedError, UrbangenError):
        return cityscapes19()


class Augment(StrictModel):
    """Random scale (relative to ``resize`` or the native size), random crop (padded), horizontal flip."""

    crop_size: tuple[int, int] = (512, 512)
    resize: tuple[int, int] | None = None
    scale_range: tuple[float, float] = (0.5, 2.0)
    flip: bool = True


def augment(
    image: np.ndarray, label: np.ndarray, rng: np.random.Generator, aug: Augment, focus_class: int | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Scale, crop (retrying up to 10 crops to contain ``focus_class``) and flip one image-label pair."""
    base_h, base_w = aug.resize or image.shape[:2]
    scale = rng.uniform(*aug.scale_range)
    size = (max(1, round(base_w * scale)), max(1, round(base_h * scale)))
    if size != (image.shape[1], image.shape[0]):
        image = np.asarray(Image.fromarray(image).resize(size, Image.BILINEAR))
        label = np.asarray(Image.fromarray(label).resize(size, Image.NEAREST))
    ch, cw = aug.crop_size
    h, w = label.shape
    if h < ch or w < cw:
        ph, pw = max(ch - h, 0), max(cw - w, 0)
        image = np.pad(image, ((0, ph), (0, pw), (0, 0)))
        label = np.pad(label, ((0, ph), (0, pw)), constant_values=IGNORE)
        h, w = label.shape
    for _ in range(10):
        y, x = int(rng.integers(0, h - ch + 1)), int(rng.integers(0, w - cw + 1))
        crop_label = label[y : y + ch, x : x + cw]
        if focus_class is None or (crop_label == focus_class).any():
            break
    crop_image = image[y : y + ch, x : x + cw]
    if aug.flip and rng.random() < 0.5:
        crop_image, crop_label = crop_image[:, ::-1], crop_label[:, ::-1]
    return crop_image.copy(), crop_label.copy()  # contiguous, writable, independent of the decoded image


def class_counts(source: OpenSource, cache_dir: Path | None = None) -> np.ndarray:
    """Pixels per class per image (N x C int64), cached in ``cache_dir`` keyed by the source and its ids."""
    key = json.dumps([source.source.model_dump(mode="json"), [s.id for s in source.samples]], sort_keys=True)
    cache = cache_dir / f"class_counts_{hashlib.sha256(key.encode()).hexdigest()[:16]}.npy" if cache_dir else None
    if cache is not None and cache.is_file():
        return np.load(cache)
    n = source.taxonomy.num_classes
    counts = np.stack([np.bincount(source.load_label(i).ravel(), minlength=256)[:n] for i in range(len(source))])
    if cache is not None:
        import io

        buffer = io.BytesIO()
        np.save(buffer, counts)
        write_bytes_atomic(cache, buffer.getvalue())
    return counts.astype(np.int64)


class RareClassSampler:
    """DAFormer's rare-class sampling: pick class c with p(c) ∝ exp((1 - f_c) / T), then an image holding c."""

    def __init__(self, counts: np.ndarray, temperature: float = 0.01, min_pixels: int = 16) -> None:
        freq = counts.sum(0) / max(counts.sum(), 1)
        present = (counts >= min_pixels).any(0)
        if not present.any():
            raise UrbangenError("rare-class sampling: no class has enough labelled pixels in any image")
        logits = np.where(present, (1 - freq) / temperature, -np.inf)
        self.probs = np.exp(logits - logits[present].max())
        self.probs /= self.probs.sum()
        self.images = [np.flatnonzero(counts[:, c] >= min_pixels) for c in range(counts.shape[1])]

    def sample(self, rng: np.random.Generator) -> tuple[int, int]:
        """(image index, focus class)."""
        c = int(rng.choice(len(self.probs), p=self.probs))
        return int(rng.choice(self.images[c])), c


class TrainItems:
    """Map-style dataset: item ``i`` is an augmented crop drawn with ``np.random.default_rng([seed, i])``."""

    def __init__(
        self,
        sources: list[OpenSource],
        aug: Augment,
        seed: int,
        length: int,
        rcs: list[RareClassSampler] | None = None,
    ) -> None:
        self.sources, self.aug, self.seed, self.length, self.rcs = sources, aug, seed, length, rcs
        weights = np.array([s.source.weight for s in sources], dtype=np.float64)
        self.weights = weights / weights.sum()

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, i: int) -> tuple[np.ndarray, np.ndarray]:
        rng = np.random.default_rng([self.seed, int(i)])
        k = int(rng.choice(len(self.sources), p=self.weights)) if len(self.sources) > 1 else 0
        if self.rcs is not None:
            index, focus = self.rcs[k].sample(rng)
        else:
            index, focus = int(rng.integers(len(self.sources[k]))), None
        image, label = self.sources[k].load(index)
        return augment(image, label, rng, self.aug, focus)
