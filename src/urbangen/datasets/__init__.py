"""Dataset readers (one module per on-disk format) behind :func:`open_dataset`."""

from __future__ import annotations

import importlib
from pathlib import Path

from urbangen.datasets.base import DatasetIndex, DatasetReader, Sample
from urbangen.errors import UrbangenError

# format name -> "module:ReaderClass"; modules are imported on use
FORMATS: dict[str, str] = {
    "cityscapes": "urbangen.datasets.cityscapes:CityscapesReader",
    "acdc": "urbangen.datasets.acdc:ACDCReader",
    "gta5": "urbangen.datasets.gta5:GTA5Reader",
    "synthia": "urbangen.datasets.synthia:SynthiaReader",
    "synscapes": "urbangen.datasets.synscapes:SynscapesReader",
    "mapillary": "urbangen.datasets.mapillary:MapillaryReader",
    "bdd100k": "urbangen.datasets.bdd100k:BDD100KReader",
    "folder": "urbangen.datasets.folder:FolderReader",
}


def open_dataset(format: str, root: str | Path, mapping_file: str | Path | None = None) -> DatasetReader:
    """The reader for ``format`` over ``root``.

    ``mapping_file``: the mapping YAML of ``folder``, or the config.json of ``mapillary``; other formats
    take none.
    """
    if format not in FORMATS:
        raise UrbangenError(f"unknown dataset format {format!r}; expected one of {sorted(FORMATS)}")
    module_name, cls_name = FORMATS[format].split(":")
    reader_cls = getattr(importlib.import_module(module_name), cls_name)
    return reader_cls(root, mapping_file=mapping_file)


__all__ = ["FORMATS", "DatasetIndex", "DatasetReader", "Sample", "open_dataset"]
