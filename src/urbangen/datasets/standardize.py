"""Write a dataset's labels as 8-bit trainId PNGs, ``OUT/<id>.png``, resumably.

Sizes are checked from file headers before anything is written, so a dataset with an image whose size
differs from its label (some GTA5 frames) fails at once, naming every such pair. Each output is written
atomically; a rerun skips outputs that already decode to a valid trainId map of the label's size.
A ``standardize.json`` beside the outputs records the source, its missing classes and the counts; a
rerun into the same folder from another source or mapping is refused rather than mixed in.
"""

from __future__ import annotations

import json
import sys
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from tqdm import tqdm

from urbangen.datasets.base import DatasetIndex, DatasetReader, Sample
from urbangen.errors import UrbangenError
from urbangen.io import image_size, read_label, write_json_atomic, write_png
from urbangen.labels import Taxonomy

SUMMARY_FILE = "standardize.json"


@dataclass(frozen=True)
class StandardizeSummary:
    total: int
    written: int
    skipped: int
    unknown_pixels: int
    files_with_unknown: int

    def line(self, out: Path) -> str:
        return (
            f"standardized {self.total} labels into {out}: wrote {self.written}, skipped {self.skipped} "
            f"already done; unknown ids mapped to ignore: {self.unknown_pixels} pixels in "
            f"{self.files_with_unknown} files"
        )


def label_sizes(samples: tuple[Sample, ...] | list[Sample]) -> dict[str, tuple[int, int]]:
    """``{id: (height, width)}`` of each label, read from headers; every size mismatch is one error."""
    no_label = [s.id for s in samples if s.label is None]
    if no_label:
        raise UrbangenError(
            f"{len(no_label)} samples have no label file (e.g. {no_label[:3]}); only labelled splits can be "
            "standardized"
        )
    sizes, mismatched = {}, []
    for sample in samples:
        sizes[sample.id] = image_size(sample.label)
        if sample.image is not None and image_size(sample.image) != sizes[sample.id]:
            (h, w), (lh, lw) = image_size(sample.image), sizes[sample.id]
            mismatched.append(f"{sample.image} is {h}x{w} but {sample.label} is {lh}x{lw}")
    if mismatched:
        raise UrbangenError(
            f"{len(mismatched)} images differ in size from their labels (HxW; expected equal sizes; fix or "
            "remove these frames):\n  " + "\n  ".join(mismatched[:20])
        )
    return sizes


def is_valid_output(path: Path, size: tuple[int, int], taxonomy: Taxonomy) -> bool:
    """Whether ``path`` is a finished trainId PNG of ``size`` (a rerun may skip it)."""
    if not path.is_file():
        return False
    try:
        label = read_label(path)
        taxonomy.check(label, path)
    except UrbangenError:
        return False
    return label.dtype == np.uint8 and label.shape == size


def check_same_source(out: Path, record: dict) -> None:
    """Refuse to mix labels of another source (or mapping) into an output folder a rerun would resume."""
    path = out / SUMMARY_FILE
    if not path.is_file():
        return
    try:
        previous = json.loads(path.read_text(encoding="utf-8"))
    except ValueError:
        raise UrbangenError(f"{path} is not valid JSON; remove it or choose another --out") from None
    for key in ("format", "root", "mapping", "taxonomy"):
        if previous.get(key) != record[key]:
            raise UrbangenError(
                f"{out} holds labels standardized with {key}={previous.get(key)!r}, not {record[key]!r}; "
                "choose another --out"
            )


def standardize_dataset(
    reader: DatasetReader, index: DatasetIndex, out: str | Path, unknown: str = "error", progress: bool = True
) -> StandardizeSummary:
    """Write ``out/<id>.png`` (uint8 trainIds at the label's resolution) for every sample of ``index``."""
    if unknown not in ("error", "ignore"):
        raise UrbangenError(f"unknown must be 'error' or 'ignore', got {unknown!r}")
    out = Path(out)
    mapping = reader.mapping()
    taxonomy = mapping.target
    # what was made and what the source cannot provide (for evaluation over the classes it covers)
    record = {
        "format": index.format,
        "root": str(index.root),
        "split": index.split,
        "mapping": mapping.source,
        "taxonomy": taxonomy.name,
        "missing": list(mapping.missing),
        "covered": list(mapping.covered),
        "unknown": unknown,
    }
    # 1. validate everything that can be checked without decoding pixels
    sizes = label_sizes(index.samples)
    check_same_source(out, record)
    write_json_atomic(out / SUMMARY_FILE, {**record, "last_run": None})
    # 2. one atomic write per label, skipping finished ones
    written = skipped = unknown_pixels = files_with_unknown = 0
    for sample in tqdm(index.samples, desc="standardize", unit="label", file=sys.stderr, disable=not progress):
        path = out / f"{sample.id}.png"
        if is_valid_output(path, sizes[sample.id], taxonomy):
            skipped += 1
            continue
        ids, count = reader.standardize(sample, unknown)
        if ids.shape != sizes[sample.id]:
            raise UrbangenError(f"{sample.label}: decoded {ids.shape} but its header says {sizes[sample.id]}")
        write_png(path, ids)
        written += 1
        unknown_pixels += count
        files_with_unknown += bool(count)
    summary = StandardizeSummary(len(index), written, skipped, unknown_pixels, files_with_unknown)
    # 3. the counts of this run
    write_json_atomic(out / SUMMARY_FILE, {**record, "last_run": asdict(summary)})
    return summary
