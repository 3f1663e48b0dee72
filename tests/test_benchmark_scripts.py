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


def _fake_run(tmp_path: Path, cfg) -> Path:
    """A finished demo run folder as kfp.local leaves it: each task's outputs named in executor_output.json."""
    from urbangen.steps import make_world

    run = tmp_path / "kfp" / "urbangen-run"

    def task(name: str, uri: Path, **metadata) -> None:
        (run / name).mkdir(parents=True, exist_ok=True)
        artefact = {"name": "out", "uri": str(uri), "metadata": metadata}
        (run / name / "executor_output.json").write_text(json.dumps({"artifacts": {"out": {"artifacts": [artefact]}}}))

    for name, role in (("make-dataset", "source"), ("make-dataset-2", "target"), ("make-dataset-3", "val")):
        make_world(cfg, role, run / name / "data", progress=False)
        task(name, run / name / "data", role=role)
    labels = run / "pseudo-label" / "labels"
    (labels / "confidence").mkdir(parents=True)
    for name in ("target3_000000_000019.png", "inference.json", "class_weights.json"):
        (labels / name).write_bytes(b"x")
    task("pseudo-label", labels)
    (run / "train-segmenter-2" / "model" / "seed-0" / "model").mkdir(parents=True)
    (run / "train-segmenter-2" / "model" / "seed-0" / "model" / "model.safetensors").write_bytes(b"w")
    task("train-segmenter-2", run / "train-segmenter-2" / "model", method="fda")
    (run / "adapt-stage2" / "generator").mkdir(parents=True)
    return run


def test_a_bundle_travels_and_its_worlds_are_remade_or_refused(adaptation, tmp_path):
    from urbangen.pipeline_config import preset

    run = _fake_run(tmp_path, preset("smoke", seed=3, style_seed=4))
    given = {"run": run, "scale": "smoke", "seed": 3, "style_seed": 4, "config": None, "scorer": None}
    wrong = r"make-dataset-2/data/world_train.json: made with other settings .*'style_seed': \(4, 5\)"
    with pytest.raises(SystemExit, match=wrong):  # the target world has another look than --style-seed 5
        adaptation.bundle(argparse.Namespace(**{**given, "style_seed": 5, "out": tmp_path / "wrong"}))

    bundle = tmp_path / "bundle"
    info = adaptation.bundle(argparse.Namespace(**given, out=bundle))
    assert info["scorer"] == "fda" and info["config"]["seed"] == 3  # the run's pseudo-labeller judges
    assert sorted(p.name for p in (bundle / "pseudo-label").iterdir()) == [
        "class_weights.json",
        "inference.json",
        "target3_000000_000019.png",
    ]  # the labels and the labelling files, not the confidence maps
    assert (bundle / "judge" / "seed-0" / "model" / "model.safetensors").read_bytes() == b"w"

    args = argparse.Namespace(bundle=bundle, tolerance=0.5)
    check = adaptation.worlds(args)
    assert check["target"]["identical"] == check["target"]["files"] == 3 * 16  # image, labelIds, instanceIds
    assert check["val"]["labels_identical"] == 2 * 8 and check["problems"] == []
    parts = adaptation.demo_artefacts(bundle)
    assert parts["target"] == bundle / "worlds" / "target" and parts["fda"] == bundle / "judge"

    manifest = json.loads((bundle / "manifest.json").read_text())
    label = next(key for key in manifest["val"] if key.startswith("gtFine/"))
    manifest["val"][label]["sha256"] = "0" * 64  # the run had another scene there
    (bundle / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(SystemExit, match="val: 1 label maps differ"):
        adaptation.worlds(args)
    with pytest.raises(SystemExit, match="remade worlds are not the run's"):
        adaptation.demo_artefacts(bundle)  # what-ifs refuse a bundle whose check failed
    with pytest.raises(SystemExit, match="a bundle folder that was used already"):
        adaptation.bundle(argparse.Namespace(**given, out=bundle))


def test_grid_puts_each_maps_images_side_by_side(adaptation, tmp_path):
    from PIL import Image

    from urbangen.pipeline_config import preset

    run = _fake_run(tmp_path, preset("smoke", seed=3, style_seed=4))
    source, target = run / "make-dataset" / "data", run / "make-dataset-2" / "data"
    args = argparse.Namespace(source=source, data=[source, source], real=target, n=2, out=tmp_path / "grid.png")
    info = adaptation.grid(args)
    assert info["rows"] == 2 and len(info["columns"]) == 5
    assert Image.open(args.out).size == (5 * 128, 2 * 64)  # smoke scenes are 64 x 128
    with pytest.raises(SystemExit, match="no image for source map source3_"):  # the target has other ids
        adaptation.grid(argparse.Namespace(**{**vars(args), "data": [target]}))


def _load(name: str):
    spec = importlib.util.spec_from_file_location(f"{name}_benchmark", SCRIPT.with_name(f"{name}.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_full_estimate_measures_every_step_and_projects_the_preset(tmp_path):
    estimate = _load("full_estimate")
    args = ["--smoke", "--scenes", "16", "--seg-iterations", "10", "--adapt-steps", "20"]
    result = estimate.main([*args, "--out", str(tmp_path / "all"), "--adapt-batches", "4", "--sweep-steps", "20"])
    assert json.loads((tmp_path / "all" / "estimate.json").read_text()) == json.loads(json.dumps(result))
    assert list(result["steps"]) == [s for s in estimate.STEPS if s != "adapt_data"] + ["filter_rectify"]
    assert result["details"]["adapt_data"]["condition_ms"] > 0
    # the batch sweep: both stages at batch 4, images/s = 4 x steps/s, kept out of the projection
    swept = result["details"]["adapt_batches"]["4"]
    assert swept["data"]["batch"] == 4
    for stage in ("stage1", "stage2"):
        assert swept[stage]["images_per_s"] == pytest.approx(4 * swept[stage]["steps_per_s"], rel=0.01)
    # projected from the preset's amounts, not the slice's: (5 methods + round 1's urbangen) x 3 seeds = 18
    # trainings of 20000 iterations of 8 crops; stage 2 in both pseudo-labelling rounds
    train = result["steps"]["train"]
    assert train["projected_s"] == pytest.approx(18 * 20000 * 8 / train["measured"]["images_per_s"], rel=1e-3)
    stage2 = result["steps"]["adapt_stage2"]
    assert "40000 steps" in stage2["note"] and "(2 rounds)" in stage2["note"]
    assert result["projected_total_s"] == pytest.approx(sum(s["projected_s"] for s in result["steps"].values()))
    partial = estimate.main([*args, "--out", str(tmp_path / "part"), "--stop-after", "train"])
    assert list(partial["steps"]) == ["world", "train"]


def test_full_estimate_tells_the_checkpoints_from_the_steps():
    estimate = _load("full_estimate")
    marks, now = [], 0.0
    for step in range(10, 101, 10):  # 0.1 s a step, a 2 s checkpoint after steps 50 and 100
        now += 10 * 0.1 + (2.0 if step - 10 == 50 else 0.0)
        marks.append((now, step))
    step_s, checkpoint_s = estimate.split_checkpoints(marks, 50)
    assert step_s == pytest.approx(0.1) and checkpoint_s == pytest.approx(2.0)
