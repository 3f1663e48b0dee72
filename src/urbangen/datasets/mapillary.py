"""Mapillary Vistas: ``[<split dir>/]images/<key>.jpg`` with P-mode label PNGs whose palette index is the
class id, plus the dataset's ``config.json`` that names the classes in id order.

Split dirs are ``training``, ``validation`` and ``testing`` (``--split train|val|test``); a folder with
``images/`` directly under the root is one unsplit set. Label folders: v1.2 ``labels/`` (or ``v1.2/labels``,
``v1.2/``), v2.0 ``v2.0/labels`` (or ``v2.0/``). The config decides which: its ``version`` field (1.x:
66 classes, 2.0: 124 classes with different ids) picks the label folder, its ``labels[i].name`` gives id
``i`` a name, and names map to Cityscapes classes through :func:`urbangen.labels.mapillary_to_cityscapes`.
The config is ``--mapping FILE`` or, next to the data, ``config.json``, ``config_v1.2.json`` or the one
``*config*.json`` file at the root.
"""

from __future__ import annotations

import json
from functools import cached_property
from pathlib import Path

from urbangen.datasets.base import DatasetReader, Sample, pair, scan
from urbangen.errors import UrbangenError
from urbangen.labels import LabelMapping, mapillary_ids

SPLIT_DIRS = {"train": "training", "val": "validation", "test": "testing"}
LABEL_DIRS = {1: ("labels", "v1.2/labels", "v1.2"), 2: ("v2.0/labels", "v2.0")}


class MapillaryReader(DatasetReader):
    name = "mapillary"
    splits = ("train", "val", "test")
    layout = "[training|validation|testing/]images/*.jpg with labels/*.png or v1.2|v2.0/labels/*.png"

    def __init__(self, root: str | Path, mapping_file: str | Path | None = None) -> None:
        super().__init__(root)
        self.config_path = Path(mapping_file).resolve() if mapping_file is not None else self._find_config()
        self.class_names, self.version = self._read_config(self.config_path)

    def _find_config(self) -> Path:
        for name in ("config.json", "config_v1.2.json"):
            if (self.root / name).is_file():
                return self.root / name
        found = sorted(self.root.glob("*config*.json"))
        if len(found) == 1:
            return found[0]
        raise UrbangenError(
            f"{self.root}: "
            + (f"several configs {[p.name for p in found]}" if found else "no Mapillary config.json found")
            + "; pass the one that matches the labels with --mapping"
        )

    @staticmethod
    def _read_config(path: Path) -> tuple[list[str], str]:
        if not path.is_file():
            raise UrbangenError(f"Mapillary config not found: {path}")
        try:
            config = json.loads(path.read_text(encoding="utf-8"))
            names = [str(label["name"]) for label in config["labels"]]
        except (ValueError, KeyError, TypeError) as exc:
            raise UrbangenError(
                f"{path}: not a Mapillary config (expected JSON with labels: [{{name: ...}}, ...]): {exc}"
            ) from None
        version = str(config.get("version", "1.2"))
        if not names:
            raise UrbangenError(f"{path}: the labels list is empty")
        return names, version

    @property
    def major_version(self) -> int:
        try:
            return 2 if int(float(self.version)) >= 2 else 1
        except ValueError:
            raise UrbangenError(f"{self.config_path}: version {self.version!r} is not a number") from None

    def resolve_splits(self, split: str | None) -> list[str | None]:
        self.check_split(split)
        if not any((self.root / d).is_dir() for d in SPLIT_DIRS.values()):
            if split is not None:
                raise UrbangenError(
                    f"split {split!r} not found under {self.root}: expected {SPLIT_DIRS[split]}/images/ "
                    "(this folder is one unsplit set; index it without --split)"
                )
            return [None]
        return super().resolve_splits(split)

    def has_split(self, split: str) -> bool:
        return (self.root / SPLIT_DIRS[split]).is_dir()

    def label_dir(self, base: Path) -> Path | None:
        return next((base / d for d in LABEL_DIRS[self.major_version] if (base / d).is_dir()), None)

    def index_split(self, split: str | None) -> tuple[list[Sample], list[Path]]:
        base = self.root if split is None else self.root / SPLIT_DIRS[split]
        label_dir = self.label_dir(base)
        if not (base / "images").is_dir() and label_dir is None:
            raise UrbangenError(f"{base} holds no Mapillary images/ or v{self.version} labels: expected {self.layout}")
        labels = scan(label_dir, "*.png", ".png") if label_dir is not None else {}
        pairs, unpaired = pair(scan(base / "images", "*.jpg", ".jpg"), labels)
        meta = {"split": split, "version": self.version}
        return [Sample(id=key, image=image, label=label, meta=dict(meta)) for key, image, label in pairs], unpaired

    @cached_property
    def _mapping(self) -> LabelMapping:
        return mapillary_ids(self.class_names, source=f"mapillary-v{self.version} ({self.config_path.name})")

    def mapping(self) -> LabelMapping:
        return self._mapping
