"""The conditioning label maps of a generation run: a dataset read through its format's reader, or a plain
folder of ``<id>.png`` trainId maps. Either way a sample comes out as standardised trainIds (uint8 HxW,
255 = ignore) with its instance map and depth where present and asked for.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from urbangen.datasets.base import load_image
from urbangen.errors import UrbangenError
from urbangen.generate.config import SourceConfig
from urbangen.io import read_label
from urbangen.labels import train_ids

LABELS_FORMAT = "labels"


@dataclass(frozen=True)
class LabelMap:
    """One conditioning sample: source id, trainIds, and optional instance ids and raw depth."""

    id: str
    label: np.ndarray
    instance: np.ndarray | None = None
    depth: np.ndarray | None = None
    instance_path: Path | None = None
    depth_path: Path | None = None
    image: np.ndarray | None = None


class LabelSource:
    """Index and load the label maps named by a :class:`SourceConfig`."""

    def __init__(self, cfg: SourceConfig) -> None:
        self.cfg = cfg
        root = Path(cfg.root)
        if not root.is_dir():
            raise UrbangenError(f"source.root: folder not found: {root}")
        if cfg.format == LABELS_FORMAT:
            self._reader = None
            self._samples = {p.stem: p for p in sorted(root.glob("*.png"))}
            if not self._samples:
                raise UrbangenError(f"source.root {root}: no <id>.png label maps found")
        else:
            from urbangen.datasets import open_dataset

            try:
                self._reader = open_dataset(cfg.format, root)
                index = self._reader.index(cfg.split)
            except UrbangenError as exc:
                raise UrbangenError(f"source: {exc}") from None
            self._samples = {s.id: s for s in index.samples if s.label is not None}
            if not self._samples:
                raise UrbangenError(f"source {cfg.format} at {root} (split {cfg.split}): no samples with labels")
        ids = sorted(self._samples)
        self._ids = ids[: cfg.limit] if cfg.limit else ids

    def ids(self) -> list[str]:
        """Sorted ids of the samples to generate from (after ``limit``)."""
        return list(self._ids)

    def describe(self) -> dict:
        """The source's identity for lineage records."""
        return {"format": self.cfg.format, "root": str(Path(self.cfg.root).resolve()), "split": self.cfg.split}

    def load(self, sample_id: str, image: bool = False) -> LabelMap:
        """One sample; ``image``: with its source image (RGB uint8, the label map's size) as well."""
        entry = self._samples.get(sample_id)
        if entry is None:
            raise UrbangenError(f"sample {sample_id!r} is not in the source {self.cfg.root}")
        if image and self._reader is None:
            raise UrbangenError(
                f"source.format {LABELS_FORMAT!r} has label maps only: starting from source images (strength < 1) "
                "needs a dataset format with images"
            )
        if self._reader is None:
            label = train_ids().apply(read_label(entry), unknown=self.cfg.unknown, source_path=entry)
            instance_path = None
            depth_path = Path(self.cfg.depth_dir) / f"{sample_id}.png" if self.cfg.depth_dir else None
        else:
            label = self._reader.load_train_ids(entry, unknown=self.cfg.unknown)
            instance_path = entry.instance if self.cfg.use_instances else None
            depth_path = entry.depth
        instance = read_label(instance_path) if instance_path is not None else None
        depth = None
        if self.cfg.use_depth:
            if depth_path is None or not Path(depth_path).is_file():
                raise UrbangenError(
                    f"source.use_depth is true but sample {sample_id} has no depth map"
                    + (f" (expected {depth_path})" if depth_path else "")
                )
            depth = read_label(depth_path)
        rgb = load_image(entry) if image else None
        for name, array in (("instance", instance), ("depth", depth), ("image", rgb)):
            if array is not None and array.shape[:2] != label.shape:
                raise UrbangenError(
                    f"sample {sample_id}: {name} is {array.shape[1]}x{array.shape[0]}, its label map "
                    f"{label.shape[1]}x{label.shape[0]}"
                )
        depth_path = depth_path if depth is not None else None
        return LabelMap(sample_id, label, instance, depth, instance_path, depth_path, rgb)
