"""Writer for datasets urbangen produces (generated, FDA-translated, ...).

Layout (readable back with the ``cityscapes`` reader)::

    ROOT/leftImg8bit/<split>/<city>/<id>_leftImg8bit.png
    ROOT/gtFine/<split>/<city>/<id>_gtFine_labelTrainIds.png    8-bit trainIds, 255 = ignore
    ROOT/manifest.jsonl                                          one line per sample: lineage + sha256

Every file is written atomically (temp file + rename) and the manifest line is appended only after both
files are in place, so an interrupted run leaves no partial file and :meth:`DatasetWriter.completed`
tells a rerun which samples are finished (verified by checksum) and can be skipped.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np

from urbangen.datasets.cityscapes import IMAGE_SUFFIX, TRAIN_ID_SUFFIX
from urbangen.errors import UrbangenError
from urbangen.io import check_same_size, sha256_file, write_png
from urbangen.labels import Taxonomy, cityscapes19

MANIFEST = "manifest.jsonl"


class DatasetWriter:
    """Append samples to a dataset folder; safe to reopen and resume."""

    def __init__(
        self, root: str | Path, split: str = "train", city: str = "generated", taxonomy: Taxonomy | None = None
    ) -> None:
        self.root = Path(root)
        self.split = split
        self.city = city
        self.taxonomy = taxonomy or cityscapes19()
        self.root.mkdir(parents=True, exist_ok=True)

    @property
    def manifest_path(self) -> Path:
        return self.root / MANIFEST

    def paths(self, sample_id: str) -> tuple[Path, Path]:
        image = self.root / "leftImg8bit" / self.split / self.city / f"{sample_id}{IMAGE_SUFFIX}"
        label = self.root / "gtFine" / self.split / self.city / f"{sample_id}{TRAIN_ID_SUFFIX}"
        return image, label

    def write(self, sample_id: str, image: np.ndarray, train_ids: np.ndarray, lineage: dict[str, Any]) -> dict:
        """Write one sample and append its manifest line; returns the manifest record."""
        if "_" not in sample_id:
            raise UrbangenError(f"sample id {sample_id!r} must look like <city>_<seq>_<frame> (Cityscapes naming)")
        check_same_size(image, train_ids, f"image of {sample_id}", f"label of {sample_id}")
        self.taxonomy.check(train_ids, f"label of {sample_id}")
        image_path, label_path = self.paths(sample_id)
        write_png(image_path, image.astype(np.uint8, copy=False))
        write_png(label_path, train_ids.astype(np.uint8, copy=False))
        record = {
            "id": sample_id,
            "split": self.split,
            "image": str(image_path.relative_to(self.root)),
            "label": str(label_path.relative_to(self.root)),
            "sha256": {"image": sha256_file(image_path), "label": sha256_file(label_path)},
            **lineage,
        }
        self._append(record)
        return record

    def _append(self, record: dict) -> None:
        line = json.dumps(record, sort_keys=True) + "\n"
        # one write() of a short line on an O_APPEND file: a crash leaves either the whole line or none
        with open(self.manifest_path, "a", encoding="utf-8") as handle:
            handle.write(line)
            handle.flush()
            os.fsync(handle.fileno())

    def records(self) -> list[dict]:
        return read_manifest(self.root)

    def completed(self, verify: bool = True) -> set[str]:
        """Ids whose manifest line exists and whose files exist (and match their sha256 if ``verify``)."""
        done = set()
        for record in self.records():
            image, label = self.root / record["image"], self.root / record["label"]
            if not (image.is_file() and label.is_file()):
                continue
            if verify and (
                sha256_file(image) != record["sha256"]["image"] or sha256_file(label) != record["sha256"]["label"]
            ):
                continue
            done.add(record["id"])
        return done


def read_manifest(root: str | Path) -> list[dict]:
    """Manifest records of a dataset folder; the last record of an id wins; a torn last line is ignored."""
    path = Path(root) / MANIFEST
    if not path.is_file():
        return []
    records: dict[str, dict] = {}
    lines = path.read_text(encoding="utf-8").splitlines()
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            if number == len(lines):  # interrupted append
                break
            raise UrbangenError(f"{path}: line {number} is not valid JSON") from None
        records[record["id"]] = record
    return list(records.values())
