"""Cityscapes layout: ``leftImg8bit/<split>/<city>/<id>_leftImg8bit.png`` with
``gtFine/<split>/<city>/<id>_gtFine_{labelIds,instanceIds,labelTrainIds}.png``.

``<id>`` is ``<city>_<seq>_<frame>`` (e.g. ``aachen_000000_000019``). Labels are read from ``labelIds``
(ids 0..33, mapped through the official table); a dataset written by urbangen's generated-dataset writer
(or one converted with Cityscapes' own createTrainIdLabelImgs) may carry only ``labelTrainIds``, which are
used as they are. Depth is taken from ``depth/<split>/<city>/<id>_depth.png`` (16-bit, centimetres; the
world generator writes it) when present. ``meta.city`` is the city folder the files sit in.
"""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar

from urbangen.datasets.base import DatasetReader, Sample, pair, scan
from urbangen.labels import LabelMapping, cityscapes_label_ids, train_ids

IMAGE_SUFFIX = "_leftImg8bit.png"
LABEL_SUFFIX = "_gtFine_labelIds.png"
TRAIN_ID_SUFFIX = "_gtFine_labelTrainIds.png"
INSTANCE_SUFFIX = "_gtFine_instanceIds.png"
DEPTH_SUFFIX = "_depth.png"


class CityscapesReader(DatasetReader):
    name = "cityscapes"
    splits = ("train", "val", "test")
    layout = f"leftImg8bit/<split>/<city>/*{IMAGE_SUFFIX} and/or gtFine/<split>/<city>/*{LABEL_SUFFIX}"
    train_id_suffix: ClassVar[str] = TRAIN_ID_SUFFIX

    def has_split(self, split: str) -> bool:
        return (self.root / "leftImg8bit" / split).is_dir() or (self.root / "gtFine" / split).is_dir()

    def index_split(self, split: str | None) -> tuple[list[Sample], list[Path]]:
        gt = self.root / "gtFine" / str(split)
        images = scan(self.root / "leftImg8bit" / str(split), "*/*", IMAGE_SUFFIX)
        labels = {**scan(gt, "*/*", TRAIN_ID_SUFFIX), **scan(gt, "*/*", LABEL_SUFFIX)}  # labelIds win
        instances = scan(gt, "*/*", INSTANCE_SUFFIX)
        depths = scan(self.root / "depth" / str(split), "*/*", DEPTH_SUFFIX)
        pairs, unpaired = pair(images, labels)
        samples = [
            Sample(
                id=key,
                image=image,
                label=label,
                instance=instances.get(key),
                depth=depths.get(key),
                meta={
                    "split": split,
                    "city": (image or label).parent.name,
                    "label_encoding": self.label_encoding(label),
                },
            )
            for key, image, label in pairs
        ]
        return samples, unpaired

    def label_encoding(self, label: Path | None) -> str | None:
        if label is None:
            return None
        return "trainIds" if label.name.endswith(self.train_id_suffix) else "labelIds"

    def mapping(self) -> LabelMapping:
        return cityscapes_label_ids()

    def mapping_for(self, sample: Sample) -> LabelMapping:
        return train_ids() if self.label_encoding(sample.label) == "trainIds" else cityscapes_label_ids()
