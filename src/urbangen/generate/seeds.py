"""Candidate seeds and shard slices: the two things that make generation order-independent.

A candidate's seed is a stable hash of (global seed, sample id, candidate index), so its image depends
neither on the batch it was generated in, nor on the number of shards, nor on the order of the run.
Python's ``hash()`` is salted per process and must never be used for this; sha256 is.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

from urbangen.errors import UrbangenError

SEED_BITS = 63  # fits torch.Generator.manual_seed and numpy's default_rng, never negative


def candidate_seed(global_seed: int, sample_id: str, candidate: int) -> int:
    """The seed of candidate ``candidate`` of sample ``sample_id`` under run seed ``global_seed``."""
    key = f"urbangen-candidate:{int(global_seed)}:{sample_id}:{int(candidate)}".encode()
    return int.from_bytes(hashlib.sha256(key).digest()[:8], "big") >> (64 - SEED_BITS)


def parse_shard(text: str | None) -> tuple[int, int]:
    """``"i/N"`` (0 <= i < N) -> (i, N); ``None`` -> (0, 1), the whole dataset."""
    if text is None:
        return 0, 1
    parts = str(text).split("/")
    try:
        index, count = (int(p) for p in parts)
    except ValueError:
        raise UrbangenError(f"--shard must look like i/N (e.g. 0/4), got {text!r}") from None
    return check_shard((index, count))


def check_shard(shard: tuple[int, int]) -> tuple[int, int]:
    index, count = shard
    if count < 1 or not 0 <= index < count:
        raise UrbangenError(f"shard {index}/{count}: expected 0 <= i < N and N >= 1")
    return index, count


def shard_ids(ids: Sequence[str], shard: tuple[int, int]) -> list[str]:
    """The ids shard ``(i, N)`` owns: every N-th of the sorted ids, starting at i (balanced, deterministic)."""
    index, count = check_shard(shard)
    return sorted(ids)[index::count]


def shard_name(shard: tuple[int, int]) -> str:
    """Folder name of a shard's output, e.g. ``shard-001-of-004``."""
    index, count = check_shard(shard)
    return f"shard-{index:03d}-of-{count:03d}"
