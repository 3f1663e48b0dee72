"""The common sample record and reader interface that every on-disk format implements.

A reader indexes a dataset root by file names only (no pixels are decoded to index), pairs images with
labels by the dataset's naming rules, and reports files it could not pair. Pixels are read per sample,
on demand, through :func:`load_image` and :meth:`DatasetReader.load_train_ids`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from urbangen.errors import UrbangenError
from urbangen.io import check_same_size, read_label, read_rgb
from urbangen.labels import LabelMapping


@dataclass(frozen=True)
class Sample:
    """One image and its annotations. Paths are absolute; any of them may be None where absent."""

    id: str
    image: Path | None
    label: Path | None = None
    instance: Path | None = None
    depth: Path | None = None
    meta: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"id": self.id}
        for key in ("image", "label", "instance", "depth"):
            value = getattr(self, key)
            out[key] = str(value) if value is not None else None
        if self.meta:
            out["meta"] = self.meta
        return out


@dataclass(frozen=True)
class DatasetIndex:
    """The result of indexing: paired samples (sorted by id) and files that could not be paired."""

    format: str
    root: Path
    split: str | None
    samples: tuple[Sample, ...]
    unpaired: tuple[Path, ...] = ()

    def __len__(self) -> int:
        return len(self.samples)

    def to_json(self) -> dict[str, Any]:
        return {
            "format": self.format,
            "root": str(self.root),
            "split": self.split,
            "n": len(self.samples),
            "samples": [s.to_json() for s in self.samples],
            "unpaired": [str(p) for p in self.unpaired],
        }


class DatasetReader:
    """Base class of a format reader. Subclasses set ``name``, ``splits`` and implement :meth:`index`."""

    name: ClassVar[str]
    splits: ClassVar[tuple[str, ...]] = ("train", "val", "test")

    def __init__(self, root: str | Path, mapping_file: str | Path | None = None) -> None:
        self.root = Path(root).expanduser().resolve()
        if not self.root.is_dir():
            raise UrbangenError(f"{self.name} dataset root not found: {self.root}")

    def index(self, split: str | None = None) -> DatasetIndex:
        raise NotImplementedError

    def mapping(self) -> LabelMapping:
        """How this format's label ids map to the target taxonomy."""
        raise NotImplementedError

    def read_label_ids(self, sample: Sample) -> np.ndarray:
        """The raw source label ids of a sample as an integer HxW array (formats override to decode)."""
        if sample.label is None:
            raise UrbangenError(f"sample {sample.id} has no label file")
        return read_label(sample.label)

    def load_train_ids(self, sample: Sample, unknown: str = "error") -> np.ndarray:
        """The sample's label standardised to target ids (uint8 HxW, 255 = ignore)."""
        return self.mapping().apply(self.read_label_ids(sample), unknown=unknown, source_path=sample.label)

    def load(self, sample: Sample, unknown: str = "error") -> tuple[np.ndarray, np.ndarray]:
        """(image uint8 HxWx3, target ids uint8 HxW), checked to have the same size."""
        if sample.image is None:
            raise UrbangenError(f"sample {sample.id} has no image file")
        image = read_rgb(sample.image)
        label = self.load_train_ids(sample, unknown)
        check_same_size(image, label, sample.image, sample.label)
        return image, label

    def check_split(self, split: str | None) -> None:
        if split is not None and split not in self.splits:
            raise UrbangenError(f"{self.name}: unknown split {split!r}; expected one of {self.splits}")


def load_image(sample: Sample) -> np.ndarray:
    if sample.image is None:
        raise UrbangenError(f"sample {sample.id} has no image file")
    return read_rgb(sample.image)
