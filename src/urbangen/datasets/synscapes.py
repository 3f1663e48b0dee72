"""Synscapes: ``img/rgb/<n>.png`` with ``img/class/<n>.png`` (8-bit Cityscapes labelIds),
``img/instance/<n>.png``, ``img/depth/<n>.npy`` (metres) and ``meta/<n>.json``, ``<n>`` = 1..25000.

Synscapes has no splits. Ids are the unpadded frame numbers, sorted by value (``2`` before ``10``); the
path of each frame's metadata file is in ``meta["meta_json"]``.
"""

from __future__ import annotations

from pathlib import Path

from urbangen.datasets.base import DatasetReader, Sample, pair, scan
from urbangen.errors import UrbangenError
from urbangen.labels import LabelMapping, cityscapes_label_ids


class SynscapesReader(DatasetReader):
    name = "synscapes"
    splits = ()
    layout = "img/rgb/*.png and img/class/*.png (plus img/instance, img/depth/*.npy, meta/*.json)"

    def index_split(self, split: str | None) -> tuple[list[Sample], list[Path]]:
        img = self.root / "img"
        if not (img / "rgb").is_dir() and not (img / "class").is_dir():
            raise UrbangenError(f"{self.root} is not a Synscapes folder: expected {self.layout}")
        pairs, unpaired = pair(scan(img / "rgb", "*.png", ".png"), scan(img / "class", "*.png", ".png"))
        instances = scan(img / "instance", "*.png", ".png")
        depths = scan(img / "depth", "*.npy", ".npy")
        metas = scan(self.root / "meta", "*.json", ".json")
        samples = [
            Sample(
                id=key,
                image=image,
                label=label,
                instance=instances.get(key),
                depth=depths.get(key),
                meta={"meta_json": str(metas[key])} if key in metas else {},
            )
            for key, image, label in pairs
        ]
        return samples, unpaired

    def mapping(self) -> LabelMapping:
        return cityscapes_label_ids()
