"""Candidate seeds are stable across processes; shards partition the ids deterministically."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from urbangen.errors import UrbangenError
from urbangen.generate.seeds import candidate_seed, parse_shard, shard_ids, shard_name


def test_seed_is_stable_across_processes_and_hash_salts():
    code = "from urbangen.generate.seeds import candidate_seed; print(candidate_seed(7, 'aachen_000001_000019', 3))"
    values = set()
    for salt in ("1", "2"):
        env = {**os.environ, "PYTHONHASHSEED": salt}
        out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
        values.add(int(out.stdout))
    assert values == {candidate_seed(7, "aachen_000001_000019", 3)}


def test_seed_depends_on_every_input_and_fits_63_bits():
    base = candidate_seed(0, "a_1", 0)
    others = {candidate_seed(1, "a_1", 0), candidate_seed(0, "a_2", 0), candidate_seed(0, "a_1", 1)}
    assert base not in others and len(others) == 3
    seeds = [candidate_seed(s, f"id_{i}", k) for s in range(3) for i in range(50) for k in range(4)]
    assert len(set(seeds)) == len(seeds)
    assert all(0 <= s < 2**63 for s in seeds)


def test_shards_partition_sorted_ids():
    ids = [f"x_{i:03d}" for i in range(11)][::-1]
    parts = [shard_ids(ids, (i, 3)) for i in range(3)]
    assert sorted(i for part in parts for i in part) == sorted(ids)
    assert parts[0] == ["x_000", "x_003", "x_006", "x_009"]
    assert shard_ids(ids, (0, 1)) == sorted(ids)
    assert shard_name((1, 4)) == "shard-001-of-004"


@pytest.mark.parametrize("text", ["3/3", "a/b", "1", "-1/2", "0/0"])
def test_bad_shard_is_a_clear_error(text):
    with pytest.raises(UrbangenError, match="shard"):
        parse_shard(text)
    assert parse_shard("2/5") == (2, 5) and parse_shard(None) == (0, 1)
