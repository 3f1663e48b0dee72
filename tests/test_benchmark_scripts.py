"""Argument handling of the benchmark scripts that needs no finished run (their measurements are run by hand)."""

from __future__ import annotations

import argparse
import importlib.util
import json
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "adaptation.py"


@pytest.fixture(scope="module")
def adaptation():
    spec = importlib.util.spec_from_file_location("adaptation_benchmark", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its worker processes find their functions by module name
    spec.loader.exec_module(module)
    yield module
    del sys.modules[spec.name]


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


def test_adapt_set_changes_one_nested_setting(adaptation):
    adapt = {"base": "small", "stage2": {"steps": 800, "batch_size": 8}}
    changed = adaptation.nested_update(adapt, "stage2.steps", 3200)
    assert changed == {"base": "small", "stage2": {"steps": 3200, "batch_size": 8}}
    assert adapt["stage2"]["steps"] == 800  # the preset it came from is untouched
    with pytest.raises(SystemExit, match="base is not a section"):
        adaptation.nested_update(adapt, "base.steps", 1)


def test_settings_flags_name_the_item_they_cannot_read(adaptation):
    assert adaptation.parse_settings(['engine.dtype="float32"', "steps=20"], "--set") == {
        "engine.dtype": "float32",
        "steps": 20,
    }
    for item in ("steps", "control=concat", "=3"):  # no '=', not JSON (an unquoted string), no key
        with pytest.raises(SystemExit, match=f"--adapt-set {item}: expected KEY=JSON"):
            adaptation.parse_settings([item], "--adapt-set")


def test_worlds_remakes_a_bundles_scenes_and_refuses_other_ones(adaptation, tmp_path):
    from urbangen.pipeline_config import preset
    from urbangen.steps import make_world

    cfg = preset("smoke", seed=3, style_seed=4)
    bundle = tmp_path / "bundle"
    bundle.mkdir()
    (bundle / adaptation.BUNDLE_FILE).write_text(json.dumps({"run": "r", "scorer": "fda", "config": cfg.parameter()}))
    manifest = {}
    for role in adaptation.WORLD_ROLES:  # the run's worlds, as the pipeline made them
        make_world(cfg, role, tmp_path / "run" / role, progress=False)
        manifest[role] = adaptation.world_manifest(tmp_path / "run" / role)
    (bundle / "manifest.json").write_text(json.dumps(manifest))
    args = argparse.Namespace(bundle=bundle, tolerance=0.5)

    check = adaptation.worlds(args)
    assert check["target"]["identical"] == check["target"]["files"] == 3 * 16  # image, labelIds, instanceIds
    assert check["val"]["labels_identical"] == 2 * 8 and check["problems"] == []
    parts = adaptation.demo_artefacts(bundle)
    assert parts["target"] == bundle / "worlds" / "target" and parts["fda"] == bundle / "judge"

    label = next(key for key in manifest["val"] if key.startswith("gtFine/"))
    manifest["val"][label]["sha256"] = "0" * 64  # the run had another scene there
    (bundle / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(SystemExit, match="val: 1 label maps differ"):
        adaptation.worlds(args)
    with pytest.raises(SystemExit, match="remade worlds are not the run's"):
        adaptation.demo_artefacts(bundle)  # what-ifs refuse a bundle whose check failed
