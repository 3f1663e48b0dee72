"""A generic folder of images and single-channel label PNGs plus a mapping YAML: VEIS, UrbanSyn, own data.

Layout: ``images/[<split>/]<file>`` and ``labels/[<split>/]<file>``, paired by the sample id that the
``image_name`` / ``label_name`` templates extract from file names (default ``{id}.*`` and ``{id}.png``,
so ``images/0001.jpg`` pairs with ``labels/0001.png``). The mapping YAML (``--mapping FILE``, default
``ROOT/mapping.yaml``)::

    source_name: urbansyn            # names the source in errors and lineage
    ids: {0: road, 1: sidewalk, 7: ignore}   # source label id -> cityscapes19 class name or "ignore"
    missing: [train]                 # target classes the source cannot provide
    images: images                   # optional folder names and file-name templates
    labels: labels
    image_name: "rgb_{id}.png"
    label_name: "ss_{id}.png"

Ids that ``ids`` does not list are unknown: an error, or ignore with ``--unknown ignore``.
"""

from __future__ import annotations

import re
from pathlib import Path

from pydantic import field_validator

from urbangen.config import StrictModel, load_config
from urbangen.datasets.base import DatasetReader, Sample, pair
from urbangen.errors import UrbangenError
from urbangen.labels import LabelMapping, cityscapes19, mapping_from_names


class FolderSpec(StrictModel):
    """The mapping YAML of a ``folder`` dataset."""

    source_name: str
    ids: dict[int, str]
    missing: tuple[str, ...] = ()
    images: str = "images"
    labels: str = "labels"
    image_name: str = "{id}.*"
    label_name: str = "{id}.png"

    @field_validator("ids")
    @classmethod
    def _known_targets(cls, ids: dict[int, str]) -> dict[int, str]:
        classes = cityscapes19().classes
        for src, name in ids.items():
            if not 0 <= src <= 65535:
                raise ValueError(f"source id {src} is outside 0..65535")
            if name != "ignore" and name not in classes:
                raise ValueError(f"id {src}: {name!r} is not a cityscapes19 class or 'ignore' (classes: {classes})")
        return ids

    @field_validator("missing")
    @classmethod
    def _known_missing(cls, missing: tuple[str, ...]) -> tuple[str, ...]:
        unknown = [name for name in missing if name not in cityscapes19().classes]
        if unknown:
            raise ValueError(f"{unknown} are not cityscapes19 classes")
        return missing

    @field_validator("image_name", "label_name")
    @classmethod
    def _one_id(cls, template: str) -> str:
        if template.count("{id}") != 1:
            raise ValueError(f"template {template!r} must contain {{id}} exactly once")
        return template


def _glob_regex(pattern: str) -> str:
    return "".join({"*": "[^/]*", "?": "[^/]"}.get(c, re.escape(c)) for c in pattern)


def match_template(folder: Path, template: str) -> dict[str, Path]:
    """``{id: path}`` for files in ``folder`` whose path relative to it matches ``template``."""
    if not folder.is_dir():
        return {}
    head, tail = template.split("{id}")
    regex = re.compile(f"{_glob_regex(head)}(?P<id>[^/]+?){_glob_regex(tail)}")
    found: dict[str, Path] = {}
    for path in sorted(folder.glob(template.replace("{id}", "*"))):
        match = regex.fullmatch(path.relative_to(folder).as_posix())
        if not match or not path.is_file():
            continue
        key = match["id"]
        if key in found:
            raise UrbangenError(f"two files give the sample id {key!r}: {found[key]} and {path}")
        found[key] = path
    return found


class FolderReader(DatasetReader):
    name = "folder"
    splits = ()
    layout = "images/[<split>/]* and labels/[<split>/]*.png with mapping.yaml"

    def __init__(self, root: str | Path, mapping_file: str | Path | None = None) -> None:
        super().__init__(root)
        if mapping_file is None:
            mapping_file = self.root / "mapping.yaml"
            if not mapping_file.is_file():
                raise UrbangenError(
                    f"folder dataset {self.root}: no mapping.yaml; pass --mapping FILE "
                    "(source_name, ids: {source_id: class name or ignore}, missing: [...])"
                )
        self.spec_path = Path(mapping_file)
        self.spec = load_config(FolderSpec, self.spec_path)
        try:  # validate the mapping now, not at the first label
            self._mapping = mapping_from_names(self.spec.source_name, self.spec.ids, self.spec.missing)
        except UrbangenError as exc:
            raise UrbangenError(f"{self.spec_path}: {exc}") from None

    def resolve_splits(self, split: str | None) -> list[str | None]:
        """Any sub-folder name of images/ or labels/ is a split; without one the folders are read flat."""
        if split is not None and not (
            (self.root / self.spec.images / split).is_dir() or (self.root / self.spec.labels / split).is_dir()
        ):
            raise UrbangenError(
                f"split {split!r} not found under {self.root}: expected {self.spec.images}/{split}/ or "
                f"{self.spec.labels}/{split}/"
            )
        return [split]

    def index_split(self, split: str | None) -> tuple[list[Sample], list[Path]]:
        images_dir, labels_dir = self.root / self.spec.images, self.root / self.spec.labels
        if split is not None:
            images_dir, labels_dir = images_dir / split, labels_dir / split
        if not images_dir.is_dir() and not labels_dir.is_dir():
            raise UrbangenError(f"{self.root} holds neither {images_dir} nor {labels_dir}: expected {self.layout}")
        images = match_template(images_dir, self.spec.image_name)
        labels = match_template(labels_dir, self.spec.label_name)
        pairs, unpaired = pair(images, labels)
        meta = {"split": split, "source": self.spec.source_name}
        return [Sample(id=key, image=image, label=label, meta=dict(meta)) for key, image, label in pairs], unpaired

    def mapping(self) -> LabelMapping:
        return self._mapping
