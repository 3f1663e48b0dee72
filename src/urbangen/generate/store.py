"""The candidates folder: what ``urbangen generate`` writes and ``urbangen filter-rectify`` reads.

Layout (one folder per shard; ``merge`` joins shard folders into one of the same layout)::

    CAND/run.json                          settings that determine the images, shard, ids, generator digest
    CAND/manifest.jsonl                    one line per finished sample (see :meth:`CandidateStore.write_sample`)
    CAND/samples/<id>/label.png            conditioning trainIds (uint8, 255 = ignore)
    CAND/samples/<id>/instance.png         instance ids (uint16, Cityscapes convention), when the source has them
    CAND/samples/<id>/candidate_<k>.png    candidate k (RGB), k = 0..K-1

Files are written atomically and a sample's manifest line is appended only after all its files are in
place, so :meth:`CandidateStore.completed` (manifest line present, every file's sha256 matches) tells a
rerun exactly which samples to skip.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np

from urbangen.datasets.writer import MANIFEST, read_manifest
from urbangen.diffusion.appearance import calibration_mode
from urbangen.errors import UrbangenError
from urbangen.io import read_label, read_rgb, sha256_file, write_json_atomic, write_png

RUN_FILE = "run.json"


def append_jsonl(path: Path, record: dict) -> None:
    """Append one JSON line with a single write + fsync: a crash leaves the whole line or none of it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a", encoding="utf-8") as handle:
        handle.write(json.dumps(record, sort_keys=True) + "\n")
        handle.flush()
        os.fsync(handle.fileno())


def _differences(a: dict, b: dict) -> list[str]:
    keys = sorted(set(a) | set(b))
    return [f"{k}: {a.get(k)!r} here vs {b.get(k)!r} requested" for k in keys if a.get(k) != b.get(k)]


class CandidateStore:
    """Read and append the samples of one candidates folder."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)

    @property
    def manifest_path(self) -> Path:
        return self.root / MANIFEST

    def sample_dir(self, sample_id: str) -> Path:
        return self.root / "samples" / sample_id

    # -- run description -------------------------------------------------------------------------------
    def run_info(self) -> dict[str, Any]:
        path = self.root / RUN_FILE
        if not path.is_file():
            raise UrbangenError(f"{self.root} is not a candidates folder: {RUN_FILE} is missing")
        return json.loads(path.read_text())

    def init_run(self, info: dict[str, Any]) -> None:
        """Create ``run.json``, or check that an existing one was written with the same settings."""
        path = self.root / RUN_FILE
        if path.is_file():
            old = json.loads(path.read_text())
            recorded = old.get("fingerprint", {})
            if "calibrate" in recorded:  # folders written before calibration modes hold `true` for "pooled"
                recorded = {**recorded, "calibrate": calibration_mode(recorded["calibrate"])}
            diffs = _differences(recorded, info["fingerprint"])
            if old.get("shard") != info.get("shard"):
                diffs.append(f"shard: {old.get('shard')} here vs {info.get('shard')} requested")
            if diffs:
                raise UrbangenError(
                    f"{self.root} holds candidates made with other settings ({'; '.join(diffs)}); "
                    "use another output folder or delete this one"
                )
            return
        write_json_atomic(path, info)

    # -- samples -----------------------------------------------------------------------------------------
    def write_sample(
        self,
        sample_id: str,
        label: np.ndarray,
        images: list[np.ndarray],
        seeds: list[int],
        lineage: dict[str, Any],
        instance: np.ndarray | None = None,
    ) -> dict[str, Any]:
        """Write the conditioning map and its K candidates, then append the sample's manifest line."""
        folder = self.sample_dir(sample_id)
        files: dict[str, Path] = {"label": folder / "label.png"}
        write_png(files["label"], label.astype(np.uint8, copy=False))
        if instance is not None:
            if instance.min() < 0 or instance.max() > np.iinfo(np.uint16).max:
                raise UrbangenError(f"instance map of {sample_id}: values must fit 16 bits")
            files["instance"] = folder / "instance.png"
            write_png(files["instance"], instance.astype(np.uint16))
        candidates = []
        for k, (image, seed) in enumerate(zip(images, seeds, strict=True)):
            path = folder / f"candidate_{k}.png"
            write_png(path, image)
            candidates.append({"k": k, "seed": int(seed), "image": self._rel(path), "sha256": sha256_file(path)})
        record = {
            "id": sample_id,
            "label": self._rel(files["label"]),
            "instance": self._rel(files["instance"]) if "instance" in files else None,
            "sha256": {name: sha256_file(path) for name, path in files.items()},
            "candidates": candidates,
            **lineage,
        }
        append_jsonl(self.manifest_path, record)
        return record

    def _rel(self, path: Path) -> str:
        return str(path.relative_to(self.root))

    def records(self) -> list[dict[str, Any]]:
        """Manifest records sorted by id (the last line of an id wins; a torn last line is ignored)."""
        return sorted(read_manifest(self.root), key=lambda r: r["id"])

    def verify(self, record: dict[str, Any]) -> bool:
        """True when every file of the record exists and matches its sha256."""
        files = [(record["label"], record["sha256"]["label"])]
        if record.get("instance"):
            files.append((record["instance"], record["sha256"]["instance"]))
        files += [(c["image"], c["sha256"]) for c in record["candidates"]]
        return all((self.root / rel).is_file() and sha256_file(self.root / rel) == digest for rel, digest in files)

    def completed(self, verify: bool = True) -> dict[str, dict[str, Any]]:
        """Finished samples: id -> record, for records whose files are all present (and verified)."""
        return {r["id"]: r for r in self.records() if not verify or self.verify(r)}

    def load_label(self, record: dict[str, Any]) -> tuple[np.ndarray, np.ndarray | None]:
        label = read_label(self.root / record["label"]).astype(np.uint8)
        instance = read_label(self.root / record["instance"]) if record.get("instance") else None
        return label, instance

    def load_candidates(self, record: dict[str, Any]) -> np.ndarray:
        """The K candidates of a sample as a KxHxWx3 uint8 array."""
        return np.stack([read_rgb(self.root / c["image"]) for c in record["candidates"]])
