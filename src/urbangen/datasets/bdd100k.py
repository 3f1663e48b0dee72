"""BDD100K semantic segmentation: ``images/10k/<split>/<name>.jpg`` with
``labels/sem_seg/masks/<split>/<name>.png`` (8-bit trainIds 0..18, 255 = ignore). The test split has
images only.
"""

from __future__ import annotations

from pathlib import Path

from urbangen.datasets.base import DatasetReader, Sample, pair, scan
from urbangen.labels import LabelMapping, train_ids


class BDD100KReader(DatasetReader):
    name = "bdd100k"
    splits = ("train", "val", "test")
    layout = "images/10k/<split>/*.jpg and/or labels/sem_seg/masks/<split>/*.png"

    def has_split(self, split: str) -> bool:
        return (self.root / "images" / "10k" / split).is_dir() or self._masks(split).is_dir()

    def _masks(self, split: str | None) -> Path:
        return self.root / "labels" / "sem_seg" / "masks" / str(split)

    def index_split(self, split: str | None) -> tuple[list[Sample], list[Path]]:
        images = scan(self.root / "images" / "10k" / str(split), "*.jpg", ".jpg")
        labels = scan(self._masks(split), "*.png", ".png")
        pairs, unpaired = pair(images, labels)
        samples = [Sample(id=key, image=image, label=label, meta={"split": split}) for key, image, label in pairs]
        return samples, unpaired

    def mapping(self) -> LabelMapping:
        return train_ids()
