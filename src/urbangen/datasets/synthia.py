"""SYNTHIA-RAND-CITYSCAPES: ``RGB/<n>.png`` with ``GT/LABELS/<n>.png``, ``<n>`` such as ``0000000``.

Labels are 16-bit colour PNGs whose first channel holds SYNTHIA's own class id (0..22, see
:data:`urbangen.labels.SYNTHIA_CLASSES`) and whose second the instance id. Pillow reads such files as
8-bit and drops the low byte, so they are decoded with :func:`urbangen.datasets.png16.read_png_channels`.
SYNTHIA has no terrain, truck or train (the mapping declares them missing: 16-class evaluation).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from urbangen.datasets.base import DatasetReader, Sample, pair, scan
from urbangen.datasets.png16 import read_png_channels
from urbangen.errors import UrbangenError
from urbangen.labels import LabelMapping, synthia_ids


class SynthiaReader(DatasetReader):
    name = "synthia"
    splits = ()
    layout = "RGB/*.png and GT/LABELS/*.png (16-bit, class id in the first channel)"

    def index_split(self, split: str | None) -> tuple[list[Sample], list[Path]]:
        if not (self.root / "RGB").is_dir() and not (self.root / "GT" / "LABELS").is_dir():
            raise UrbangenError(f"{self.root} is not a SYNTHIA-RAND-CITYSCAPES folder: expected {self.layout}")
        images = scan(self.root / "RGB", "*.png", ".png")
        labels = scan(self.root / "GT" / "LABELS", "*.png", ".png")
        pairs, unpaired = pair(images, labels)
        return [Sample(id=key, image=image, label=label) for key, image, label in pairs], unpaired

    def read_label_ids(self, sample: Sample) -> np.ndarray:
        path = self.label_path(sample)
        channels = read_png_channels(path)
        if channels.shape[2] < 3:
            raise UrbangenError(
                f"SYNTHIA label {path}: expected a colour PNG with the class id in the first channel, "
                f"got {channels.shape[2]} channel(s)"
            )
        return channels[..., 0].astype(np.int32)

    def mapping(self) -> LabelMapping:
        return synthia_ids()
