"""ACDC (Adverse Conditions Dataset with Correspondences):
``rgb_anon/<condition>/<split>/<seq>/<name>_rgb_anon.png`` with
``gt/<condition>/<split>/<seq>/<name>_gt_labelIds.png`` (Cityscapes labelIds; ``_gt_labelTrainIds.png``
is used where labelIds are absent).

Conditions are fog, night, rain and snow; an index covers every condition present, and each sample
records its ``condition`` (the diffusion stage uses it as the domain) and ``sequence`` in ``meta``. The
sample id is the file name stem, e.g. ``GOPR0475_frame_000041``. The ``*_ref`` reference folders
(the same places in normal conditions, unlabelled) are not part of a split.
"""

from __future__ import annotations

from pathlib import Path

from urbangen.datasets.base import Sample, pair, scan
from urbangen.datasets.cityscapes import CityscapesReader

CONDITIONS = ("fog", "night", "rain", "snow")
IMAGE_SUFFIX = "_rgb_anon.png"
LABEL_SUFFIX = "_gt_labelIds.png"
TRAIN_ID_SUFFIX = "_gt_labelTrainIds.png"


class ACDCReader(CityscapesReader):
    name = "acdc"
    splits = ("train", "val", "test")
    layout = f"rgb_anon/<condition>/<split>/<seq>/*{IMAGE_SUFFIX} and gt/<condition>/<split>/<seq>/*{LABEL_SUFFIX}"
    train_id_suffix = TRAIN_ID_SUFFIX

    def has_split(self, split: str) -> bool:
        return any(
            (self.root / kind / condition / split).is_dir() for kind in ("rgb_anon", "gt") for condition in CONDITIONS
        )

    def index_split(self, split: str | None) -> tuple[list[Sample], list[Path]]:
        samples: list[Sample] = []
        unpaired: list[Path] = []
        for condition in CONDITIONS:
            gt = self.root / "gt" / condition / str(split)
            images = scan(self.root / "rgb_anon" / condition / str(split), "*/*", IMAGE_SUFFIX)
            labels = {**scan(gt, "*/*", TRAIN_ID_SUFFIX), **scan(gt, "*/*", LABEL_SUFFIX)}  # labelIds win
            pairs, lost = pair(images, labels)
            unpaired += lost
            for key, image, label in pairs:
                meta = {
                    "split": split,
                    "condition": condition,
                    "sequence": (image or label).parent.name,
                    "label_encoding": self.label_encoding(label),
                }
                samples.append(Sample(id=key, image=image, label=label, meta=meta))
        return samples, unpaired
