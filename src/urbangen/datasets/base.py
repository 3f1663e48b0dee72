"""The common sample record and reader interface that every on-disk format implements.

A reader indexes a dataset root by file names only (no pixels are decoded to index), pairs images with
labels by the dataset's naming rules, and reports files it could not pair. Pixels are read per sample,
on demand, through :func:`load_image` and :meth:`DatasetReader.load_train_ids`.

A format module subclasses :class:`DatasetReader`, sets ``name``, ``splits`` and ``layout`` and implements
:meth:`~DatasetReader.has_split`, :meth:`~DatasetReader.index_split` and :meth:`~DatasetReader.mapping`;
the helpers :func:`scan` and :func:`pair` do the file-name work they share.
"""

from __future__ import annotations

import itertools
import os
import re
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


def natural_key(text: str) -> list[str | int]:
    """Sort key that orders digit runs by value: ``2`` before ``10`` (Synscapes ids are unpadded)."""
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", text)]


def scan(folder: Path, pattern: str, suffix: str) -> dict[str, Path]:
    """``{key: path}`` for files matching the glob ``pattern`` in ``folder``; key = file name minus ``suffix``.

    Returns an empty mapping when the folder does not exist; two files with the same key are an error.
    """
    if not folder.is_dir():
        return {}
    found: dict[str, Path] = {}
    for path in folder.glob(pattern):
        if not path.name.endswith(suffix) or not path.is_file():
            continue
        key = path.name[: len(path.name) - len(suffix)]
        if key in found:
            raise UrbangenError(f"two files share the sample name {key!r}: {found[key]} and {path}")
        found[key] = path
    return found


Pairs = list[tuple[str, Path | None, Path | None]]


def pair(images: dict[str, Path], labels: dict[str, Path]) -> tuple[Pairs, list[Path]]:
    """Pair images and labels by key: ``([(key, image, label)], unpaired files)``.

    Pairing is required only where both kinds of file exist: a label-only split (ground truth kept for
    evaluation) or an image-only split (unlabelled target images) is complete as it is.
    """
    both = bool(images) and bool(labels)
    pairs, unpaired = [], []
    for key in set(images) | set(labels):
        if both and (key not in images or key not in labels):
            unpaired.append(images.get(key) or labels[key])
        else:
            pairs.append((key, images.get(key), labels.get(key)))
    return pairs, unpaired


class DatasetReader:
    """Base class of a format reader."""

    name: ClassVar[str]
    splits: ClassVar[tuple[str, ...]] = ("train", "val", "test")  # () for formats without splits
    layout: ClassVar[str] = ""  # the expected on-disk layout, quoted in errors

    def __init__(self, root: str | Path, mapping_file: str | Path | None = None) -> None:
        self.root = Path(root).expanduser().resolve()
        if not self.root.is_dir():
            raise UrbangenError(f"{self.name} dataset root not found: {self.root}")
        if mapping_file is not None:
            raise UrbangenError(f"format {self.name} takes no mapping file (got {mapping_file})")

    # -- indexing ---------------------------------------------------------------------------------
    def has_split(self, split: str) -> bool:
        """Whether the split's folders exist under the root (formats with splits override)."""
        raise NotImplementedError

    def index_split(self, split: str | None) -> tuple[list[Sample], list[Path]]:
        """Samples and unpaired files of one split (``None`` for a format without splits)."""
        raise NotImplementedError

    def resolve_splits(self, split: str | None) -> list[str | None]:
        """The splits to index for a requested ``split`` (None: every split present)."""
        self.check_split(split)
        if not self.splits:
            return [None]
        present = [s for s in self.splits if self.has_split(s)]
        if split is None:
            if not present:
                raise UrbangenError(f"{self.root} holds no {self.name} split; expected {self.layout}")
            return list(present)
        if split not in present:
            raise UrbangenError(
                f"split {split!r} not found under {self.root}: expected {self.layout.replace('<split>', split)} "
                f"(splits found: {', '.join(present) or 'none'})"
            )
        return [split]

    def index(self, split: str | None = None) -> DatasetIndex:
        """Index the root by file names: samples sorted by id, plus the files that could not be paired."""
        samples: list[Sample] = []
        unpaired: list[Path] = []
        for s in self.resolve_splits(split):
            found, lost = self.index_split(s)
            samples += found
            unpaired += lost
        samples.sort(key=lambda sample: natural_key(sample.id))
        for first, second in itertools.pairwise(samples):
            if first.id == second.id:
                raise UrbangenError(
                    f"sample id {first.id!r} occurs twice ({first.image or first.label} and "
                    f"{second.image or second.label}); ids must be unique within an index"
                )
        return DatasetIndex(self.name, self.root, split, tuple(samples), tuple(sorted(unpaired)))

    def check_split(self, split: str | None) -> None:
        if split is None:
            return
        if not self.splits:
            raise UrbangenError(f"{self.name} has no splits; index it without --split (got {split!r})")
        if split not in self.splits:
            raise UrbangenError(f"{self.name}: unknown split {split!r}; expected one of {self.splits}")

    # -- pixels -----------------------------------------------------------------------------------
    def mapping(self) -> LabelMapping:
        """How this format's label ids map to the target taxonomy."""
        raise NotImplementedError

    def mapping_for(self, sample: Sample) -> LabelMapping:
        """The mapping of one sample's label file (formats whose files differ in encoding override)."""
        return self.mapping()

    def read_label_ids(self, sample: Sample) -> np.ndarray:
        """The raw source label ids of a sample as an integer HxW array (formats override to decode)."""
        return read_label(self.label_path(sample))

    def label_path(self, sample: Sample) -> Path:
        if sample.label is None:
            raise UrbangenError(f"sample {sample.id} has no label file (is this split labelled?)")
        return sample.label

    def standardize(self, sample: Sample, unknown: str = "error") -> tuple[np.ndarray, int]:
        """(target ids uint8 HxW, number of unknown-id pixels mapped to ignore)."""
        ids = self.read_label_ids(sample)
        return self.mapping_for(sample).apply_counted(ids, unknown=unknown, source_path=sample.label)

    def load_train_ids(self, sample: Sample, unknown: str = "error") -> np.ndarray:
        """The sample's label standardised to target ids (uint8 HxW, 255 = ignore)."""
        return self.standardize(sample, unknown)[0]

    def load(self, sample: Sample, unknown: str = "error") -> tuple[np.ndarray, np.ndarray]:
        """(image uint8 HxWx3, target ids uint8 HxW), checked to have the same size."""
        image = load_image(sample)
        label = self.load_train_ids(sample, unknown)
        check_same_size(image, label, sample.image, sample.label)
        return image, label


def load_image(sample: Sample) -> np.ndarray:
    if sample.image is None:
        raise UrbangenError(f"sample {sample.id} has no image file (is this a label-only split?)")
    return read_rgb(sample.image)


def read_depth(path: str | os.PathLike[str]) -> np.ndarray:
    """Depth in metres as float32 HxW: ``.npy`` (Synscapes, metres) or 16-bit PNG (centimetres)."""
    path = Path(path)
    if path.suffix == ".npy":
        if not path.is_file():
            raise UrbangenError(f"missing file: {path}")
        try:
            depth = np.load(path, allow_pickle=False)
        except Exception as exc:
            raise UrbangenError(f"cannot read depth {path}: {exc}") from exc
        depth = np.squeeze(depth)
    else:
        depth = read_label(path).astype(np.float32) / 100.0
    if depth.ndim != 2:
        raise UrbangenError(f"depth {path}: expected an HxW array, got shape {depth.shape}")
    return depth.astype(np.float32, copy=False)
