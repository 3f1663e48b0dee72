"""Cityscapes layout: ``leftImg8bit/<split>/<city>/<id>_leftImg8bit.png`` with
``gtFine/<split>/<city>/<id>_gtFine_{labelIds,instanceIds,labelTrainIds}.png``.

``<id>`` is ``<city>_<seq>_<frame>`` (e.g. ``aachen_000000_000019``). Labels are read from ``labelIds``
(ids 0..33, mapped through the official table); a dataset written by urbangen's generated-dataset writer
(or one converted with Cityscapes' own createTrainIdLabelImgs) may carry only ``labelTrainIds``, which are
used as they are. Depth is taken from ``depth/<split>/<city>/<id>_depth.png`` (16-bit, centimetres; the
world generator writes it) when present.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from urbangen.datasets.base import DatasetIndex, DatasetReader, Sample
from urbangen.errors import UrbangenError
from urbangen.io import read_label
from urbangen.labels import LabelMapping, cityscapes_label_ids, train_ids

IMAGE_SUFFIX = "_leftImg8bit.png"
LABEL_SUFFIX = "_gtFine_labelIds.png"
TRAIN_ID_SUFFIX = "_gtFine_labelTrainIds.png"
INSTANCE_SUFFIX = "_gtFine_instanceIds.png"
DEPTH_SUFFIX = "_depth.png"


def _by_id(folder: Path, suffix: str) -> dict[str, Path]:
    if not folder.is_dir():
        return {}
    return {p.name[: -len(suffix)]: p for p in folder.glob(f"*/*{suffix}")}


class CityscapesReader(DatasetReader):
    name = "cityscapes"
    splits = ("train", "val", "test")
    image_dir = "leftImg8bit"
    label_dir = "gtFine"

    def available_splits(self) -> list[str]:
        return [
            s
            for s in self.splits
            if (self.root / self.image_dir / s).is_dir() or (self.root / self.label_dir / s).is_dir()
        ]

    def index(self, split: str | None = None) -> DatasetIndex:
        self.check_split(split)
        if split is None:
            splits = self.available_splits()
            if not splits:
                raise UrbangenError(
                    f"{self.root} has no Cityscapes layout: expected {self.image_dir}/<split>/<city>/*{IMAGE_SUFFIX} "
                    f"or {self.label_dir}/<split>/<city>/*{LABEL_SUFFIX}"
                )
        else:
            if not ((self.root / self.image_dir / split).is_dir() or (self.root / self.label_dir / split).is_dir()):
                raise UrbangenError(
                    f"split {split!r} not found under {self.root}: expected {self.image_dir}/{split}/ or "
                    f"{self.label_dir}/{split}/ (found splits: {self.available_splits() or 'none'})"
                )
            splits = [split]
        samples: list[Sample] = []
        unpaired: list[Path] = []
        for s in splits:
            images = _by_id(self.root / self.image_dir / s, IMAGE_SUFFIX)
            label_ids = _by_id(self.root / self.label_dir / s, LABEL_SUFFIX)
            train = _by_id(self.root / self.label_dir / s, TRAIN_ID_SUFFIX)
            instances = _by_id(self.root / self.label_dir / s, INSTANCE_SUFFIX)
            depths = _by_id(self.root / "depth" / s, DEPTH_SUFFIX)
            labels = {**train, **label_ids}  # labelIds win where both exist
            # pair only where the split has both kinds of file; a label-only split (e.g. gtFine without
            # leftImg8bit, as for evaluation) or an image-only split (unlabelled target) is complete as is
            for key in sorted(set(images) | set(labels)):
                if images and labels and (key not in images or key not in labels):
                    unpaired.append(images.get(key) or labels[key])
                    continue
                label = labels.get(key)
                samples.append(
                    Sample(
                        id=key,
                        image=images.get(key),
                        label=label,
                        instance=instances.get(key),
                        depth=depths.get(key),
                        meta={
                            "split": s,
                            "city": key.split("_")[0],
                            "label_encoding": "trainIds"
                            if label is not None and label.name.endswith(TRAIN_ID_SUFFIX)
                            else "labelIds",
                        },
                    )
                )
        return DatasetIndex(self.name, self.root, split, tuple(samples), tuple(unpaired))

    def mapping(self) -> LabelMapping:
        return cityscapes_label_ids()

    def load_train_ids(self, sample: Sample, unknown: str = "error") -> np.ndarray:
        if sample.label is not None and sample.label.name.endswith(TRAIN_ID_SUFFIX):
            return train_ids().apply(read_label(sample.label), unknown=unknown, source_path=sample.label)
        return super().load_train_ids(sample, unknown)
