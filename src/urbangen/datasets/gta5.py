"""GTA5 (Playing for Data): ``images/<n>.png`` with ``labels/<n>.png`` (P-mode PNGs whose palette
indices are Cityscapes labelIds), ``<n>`` a five-digit frame number such as ``00001``.

The frames carry no split folders; ``--split train|val|test`` reads the official ``split.mat`` at the
root (keys ``trainIds``, ``valIds``, ``testIds``: frame numbers). A handful of GTA5 frames are stored at a
different size from their labels; :meth:`DatasetReader.load` and ``urbangen data standardize`` name them.
"""

from __future__ import annotations

from pathlib import Path

from urbangen.datasets.base import DatasetReader, Sample, pair, scan
from urbangen.errors import UrbangenError
from urbangen.labels import LabelMapping, cityscapes_label_ids

SPLIT_KEYS = {"train": "trainIds", "val": "valIds", "test": "testIds"}


class GTA5Reader(DatasetReader):
    name = "gta5"
    splits = ("train", "val", "test")
    layout = "images/*.png and labels/*.png (and split.mat for --split)"

    def resolve_splits(self, split: str | None) -> list[str | None]:
        self.check_split(split)
        if split is not None and not (self.root / "split.mat").is_file():
            raise UrbangenError(
                f"gta5 split {split!r} needs the official split file {self.root / 'split.mat'} "
                "(keys trainIds, valIds, testIds); index without --split to use every frame"
            )
        return [split]

    def split_keys(self, split: str) -> set[str]:
        """Frame names (``00001``) of a split, from ``split.mat``."""
        from scipy.io import loadmat

        path = self.root / "split.mat"
        try:
            table = loadmat(path)
        except Exception as exc:
            raise UrbangenError(f"cannot read {path}: {exc}") from exc
        if SPLIT_KEYS[split] not in table:
            raise UrbangenError(f"{path}: no {SPLIT_KEYS[split]!r} entry (expected trainIds, valIds, testIds)")
        return {f"{int(n):05d}" for n in table[SPLIT_KEYS[split]].ravel()}

    def index_split(self, split: str | None) -> tuple[list[Sample], list[Path]]:
        if not (self.root / "images").is_dir() and not (self.root / "labels").is_dir():
            raise UrbangenError(f"{self.root} is not a GTA5 folder: expected {self.layout}")
        images = scan(self.root / "images", "*.png", ".png")
        labels = scan(self.root / "labels", "*.png", ".png")
        if split is not None:
            keep = self.split_keys(split)
            images = {k: v for k, v in images.items() if k in keep}
            labels = {k: v for k, v in labels.items() if k in keep}
        pairs, unpaired = pair(images, labels)
        samples = [Sample(id=key, image=image, label=label, meta={"split": split}) for key, image, label in pairs]
        return samples, unpaired

    def mapping(self) -> LabelMapping:
        return cityscapes_label_ids()
