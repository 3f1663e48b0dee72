"""Join shard candidate folders into one candidates folder of the same layout.

Shards must come from the same run (same fingerprint: generator, seed, K, steps, ...), must together be
shards 0..N-1 of one N, and each must be complete (every id it owns finished and verified), unless
``allow_partial`` is set, in which case the finished samples are merged and the missing ones reported.
Files are hard-linked where the file system allows it, copied otherwise; merging is itself resumable.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any

from urbangen.errors import UrbangenError
from urbangen.generate.store import CandidateStore, append_jsonl
from urbangen.io import atomic_path


def _link_or_copy(src: Path, dst: Path) -> None:
    with atomic_path(dst) as tmp:
        tmp.unlink()
        try:
            os.link(src, tmp)
        except OSError:
            shutil.copyfile(src, tmp)


def _files(record: dict[str, Any]) -> list[str]:
    files = [record["label"]] + ([record["instance"]] if record.get("instance") else [])
    return files + [c["image"] for c in record["candidates"]]


def merge_shards(dirs: list[str | Path], out: str | Path, allow_partial: bool = False) -> dict[str, Any]:
    """Merge shard folders ``dirs`` into ``out``; returns counts and any missing ids."""
    if not dirs:
        raise UrbangenError("merge: no shard folders given")
    stores = [CandidateStore(d) for d in dirs]
    infos = [s.run_info() for s in stores]
    first = infos[0]
    for store, info in zip(stores[1:], infos[1:], strict=True):
        if info["fingerprint"] != first["fingerprint"]:
            raise UrbangenError(
                f"merge: {store.root} was generated with other settings than {stores[0].root} "
                f"({info['fingerprint']} vs {first['fingerprint']})"
            )
    counts = {info["shard"][1] for info in infos}
    if len(counts) != 1:
        raise UrbangenError(f"merge: shards of different shard counts {sorted(counts)} cannot be merged")
    n = counts.pop()
    indices = sorted(info["shard"][0] for info in infos)
    missing_shards = sorted(set(range(n)) - set(indices))
    if len(indices) != len(set(indices)):
        raise UrbangenError(f"merge: a shard is given twice (indices {indices})")
    if missing_shards and not allow_partial:
        raise UrbangenError(f"merge: shards {missing_shards} of {n} are missing (pass allow_partial to merge anyway)")
    all_ids: list[str] = []
    missing: list[str] = []
    finished: list[tuple[CandidateStore, dict[str, Any]]] = []
    for store, info in zip(stores, infos, strict=True):
        done = store.completed()
        all_ids += info["ids"]
        lost = [i for i in info["ids"] if i not in done]
        if lost and not allow_partial:
            raise UrbangenError(
                f"merge: shard {store.root} is incomplete ({len(lost)} of {len(info['ids'])} samples missing, "
                f"e.g. {lost[:3]}); rerun that shard (it resumes) or pass allow_partial"
            )
        missing += lost
        finished += [(store, done[i]) for i in info["ids"] if i in done]
    target = CandidateStore(out)
    target.init_run({**first, "shard": [0, 1], "ids": sorted(all_ids), "merged_from": [str(s.root) for s in stores]})
    already = target.completed()
    for store, record in sorted(finished, key=lambda pair: pair[1]["id"]):
        if record["id"] in already:
            continue
        for rel in _files(record):
            _link_or_copy(store.root / rel, target.root / rel)
        append_jsonl(target.manifest_path, record)
    return {"out": str(out), "shards": len(stores), "samples": len(finished), "missing": sorted(missing)}
