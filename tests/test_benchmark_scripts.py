"""Argument handling of the benchmark scripts that needs no finished run (their measurements are run by hand)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "adaptation.py"


@pytest.fixture(scope="module")
def adaptation():
    spec = importlib.util.spec_from_file_location("adaptation_benchmark", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_seeds_data_joins_datasets_and_the_runs_pseudo_labels(adaptation, tmp_path):
    generated, target, labels = (tmp_path / name for name in ("generated", "target", "pseudo"))
    for folder in (generated, target, labels):
        folder.mkdir()
    parts = {"target": target, "pseudo-label": labels}

    assert adaptation.training_sources(str(generated), parts) == [
        {"format": "cityscapes", "root": str(generated), "split": "train"}
    ]
    both = adaptation.training_sources(f"{generated}+target-pseudo", parts)
    assert both[1] == {"format": "cityscapes", "root": str(target), "split": "train", "labels_dir": str(labels)}
    assert both[0]["root"] == str(generated) and "labels_dir" not in both[0]


def test_seeds_data_names_what_it_cannot_use(adaptation, tmp_path):
    with pytest.raises(SystemExit, match=r"'.*missing' is neither a dataset folder nor 'target-pseudo'"):
        adaptation.training_sources(f"{tmp_path}+{tmp_path / 'missing'}", {})
    with pytest.raises(SystemExit, match="target-pseudo needs --run"):
        adaptation.training_sources("target-pseudo", {})
