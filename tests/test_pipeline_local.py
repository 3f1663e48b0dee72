"""The whole pipeline runs through kfp.local at the smoke scale (what `urbangen demo --scale smoke` does)
and leaves results.json, report.html and an MLflow store with a parent run, nested step runs, metrics,
image artefacts and registered models."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from urbangen.cli import main

# ~18 tasks, each a fresh Python that imports torch, transformers and MLflow: minutes, more on a busy machine
pytestmark = pytest.mark.timeout(2400)


@pytest.fixture(scope="module")
def smoke_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("demo")
    result = CliRunner().invoke(main, ["demo", "--scale", "smoke", "--out", str(out)], catch_exceptions=False)
    assert result.exit_code == 0, result.output[-3000:]
    return out


def test_results_json_has_every_method(smoke_run):
    results = json.loads((smoke_run / "results.json").read_text())
    assert set(results["methods"]) == {"source_only", "fda", "urbangen_nofilter", "urbangen", "oracle"}
    for method, result in results["methods"].items():
        assert 0 <= result["mIoU"] <= 100, method
        assert len(result["per_class"]) == 19
    assert results["scale"] == "smoke" and results["pseudo_label_rounds"] == 2
    assert {"train-source_only", "adapt-stage1", "adapt-stage2", "filter-rectify"} <= set(results["timings"])
    # the smoke preset runs two pseudo-labelling rounds: the second round's steps are listed apart
    assert {"train-urbangen_round1", "pseudo-label (round 2)", "adapt-stage2 (round 2)"} <= set(results["timings"])
    assert "filter-rectify (round 2)" in results["timings"] and "adapt-stage1 (round 2)" not in results["timings"]
    # in the order the steps started (a report re-rendered from this file lists them so): data first
    steps = list(results["timings"])
    assert steps[0].startswith("data-") and steps.index("adapt-stage1") < steps.index("adapt-stage2")
    assert list(results["methods"]) == ["source_only", "fda", "urbangen_nofilter", "urbangen", "oracle"]
    assert results["generation"]["samples"] == 16


def test_report_is_self_contained(smoke_run):
    page = (smoke_run / "report.html").read_text()
    assert "urbangen results" in page and "Oracle" in page
    assert page.count("data:image/png;base64,") >= 5  # chart + image rows, all inlined


def test_mlflow_store_holds_the_run_hierarchy(smoke_run):
    from mlflow import MlflowClient

    results = json.loads((smoke_run / "results.json").read_text())
    client = MlflowClient(f"sqlite:///{smoke_run / 'workspace' / 'mlflow.db'}")
    parent = client.get_run(results["mlflow_run_id"])
    assert parent.info.status == "FINISHED"
    assert parent.data.metrics["mIoU/urbangen"] == pytest.approx(results["methods"]["urbangen"]["mIoU"])
    children = client.search_runs(
        [parent.info.experiment_id], filter_string=f"tags.mlflow.parentRunId = '{parent.info.run_id}'"
    )
    names = {run.info.run_name for run in children}
    assert {
        "data-source",
        "train-oracle",
        "pseudo-label",
        "generate-0-of-2",
        "generate-1-of-2",
        "evaluate-urbangen",
        "fda",
    } <= names
    pseudo = next(r for r in children if r.info.run_name == "pseudo-label")
    assert pseudo.data.metrics["prior_weight"] == 1.0  # the smoke preset weighs by the source's layout
    assert pseudo.data.metrics["class_balance"] == 1.0  # and balances the classes to the source's shares
    evaluate = next(r for r in children if r.info.run_name == "evaluate-urbangen")
    assert "mIoU" in evaluate.data.metrics
    charts = [a.path for a in client.list_artifacts(evaluate.info.run_id, "charts")]
    assert any(path.endswith(".png") for path in charts)
    train = next(r for r in children if r.info.run_name == "train-urbangen")
    assert client.get_metric_history(train.info.run_id, "seed0/loss")
    version = client.get_model_version_by_alias("urbangen-generator", "candidate")
    assert version.tags["mIoU"]


def test_pseudo_label_benchmark_reads_a_finished_run(smoke_run, tmp_path):
    """benchmarks/adaptation.py pseudo on this run: the prior's measurement stays runnable."""
    import subprocess
    import sys
    from pathlib import Path

    run = next((smoke_run / "workspace" / "kfp").iterdir())
    script = Path(__file__).resolve().parents[1] / "benchmarks" / "adaptation.py"
    out = tmp_path / "pseudo"
    subprocess.run(
        [
            sys.executable,
            str(script),
            "pseudo",
            "--run",
            str(run),
            "--out",
            str(out),
            "--scale",
            "smoke",
            "--weights",
            "0",
            "1",
            "--json",
            str(out / "pseudo.json"),
        ],
        check=True,
        capture_output=True,
    )
    weights = json.loads((out / "pseudo.json").read_text())["weights"]
    assert set(weights) == {"0", "1"}
    for figures in weights.values():
        assert 0 <= figures["raw_mIoU"] <= 100 and len(figures["per_class"]) == 19
        assert all(share <= 1 for _, share in figures["mostly_labelled_as"].values())
    assert (out / "weight-1" / "prior.npy").is_file() and not (out / "weight-0" / "prior.npy").exists()


def test_compose_benchmark_reads_a_finished_run(smoke_run, tmp_path):
    """benchmarks/adaptation.py compose on this run: the run's candidates (found through the step-folder
    links of its shards) and the calibration-only bases stay runnable."""
    import subprocess
    import sys
    from pathlib import Path

    import numpy as np

    from urbangen.io import read_label, read_rgb, write_png

    run = next((smoke_run / "workspace" / "kfp").iterdir())
    script = Path(__file__).resolve().parents[1] / "benchmarks" / "adaptation.py"
    source = run / "make-dataset" / "data"
    first = sorted(source.glob("leftImg8bit/train/*/*_leftImg8bit.png"))[0]
    sample_id = first.name.removesuffix("_leftImg8bit.png")
    results = {}
    for base, extra in (("candidate", ["--sigma", "0"]), ("sim", ["--calibrate", "exemplar"])):
        out = tmp_path / base
        command = [sys.executable, str(script), "compose", "--run", str(run), "--out", str(out), "--base", base]
        command += [*extra, "--seg-iterations", "2", "--json", str(out / "compose.json")]
        subprocess.run(command, check=True, capture_output=True)
        results[base] = json.loads((out / "compose.json").read_text())
        assert 0 <= results[base]["mIoU"] <= 100 and results[base]["base"] == base
        image = read_rgb(out / "leftImg8bit" / "train" / "c" / f"{sample_id}-0_leftImg8bit.png")
        label = read_label(out / "gtFine" / "train" / "c" / f"{sample_id}-0_gtFine_labelTrainIds.png")
        assert image.shape[:2] == label.shape and len(list(out.glob("leftImg8bit/train/c/*.png"))) == len(
            list(source.glob("leftImg8bit/train/*/*.png"))
        )
        results[base]["image"] = image
    candidate = next(run.glob(f"for-loop-*/*/candidates/samples/{sample_id}/candidate_0.png"))
    assert np.array_equal(results["candidate"]["image"], read_rgb(candidate))  # sigma 0, uncalibrated: as rendered
    assert not np.array_equal(results["sim"]["image"], read_rgb(first))  # the source render, recoloured
    # --labels: the calibration's statistics come from other target labels (here: every pixel road)
    roads = tmp_path / "roads"
    roads.mkdir()
    for image in (run / "make-dataset-2" / "data").glob("leftImg8bit/train/*/*_leftImg8bit.png"):
        write_png(roads / image.name.replace("_leftImg8bit", ""), np.zeros(read_rgb(image).shape[:2], np.uint8))
    out = tmp_path / "sim-roads"
    command = [sys.executable, str(script), "compose", "--run", str(run), "--out", str(out), "--base", "sim"]
    command += [
        "--calibrate",
        "exemplar",
        "--labels",
        str(roads),
        "--seg-iterations",
        "2",
        "--json",
        str(out / "c.json"),
    ]
    subprocess.run(command, check=True, capture_output=True)
    assert json.loads((out / "c.json").read_text())["labels"] == str(roads)
    recoloured = read_rgb(out / "leftImg8bit" / "train" / "c" / f"{sample_id}-0_leftImg8bit.png")
    road = read_label(out / "gtFine" / "train" / "c" / f"{sample_id}-0_gtFine_labelTrainIds.png") == 0
    assert np.array_equal(recoloured[~road], read_rgb(first)[~road])  # only road has statistics now
    assert not np.array_equal(recoloured[road], read_rgb(first)[road])
    command[command.index(str(roads))] = str(tmp_path / "no-such-labels")  # a wrong folder is an error, not a no-op
    failed = subprocess.run(command, capture_output=True, text=True)
    assert failed.returncode != 0 and "no <id>.png label for any target train image" in failed.stderr


def _task_methods(run) -> dict[str, str]:
    """kfp task folder name -> the method its train task trained (from the task's executor output)."""
    found = {}
    for output in run.glob("*/executor_output.json"):
        for artefacts in json.loads(output.read_text()).get("artifacts", {}).values():
            for artefact in artefacts["artifacts"]:
                if "method" in artefact.get("metadata", {}):
                    found[output.parent.name] = artefact["metadata"]["method"]
    return found


def test_resume_reruns_only_what_is_missing(smoke_run):
    """urbangen's training dies after its last checkpoint (no model folder, no record of the task): with
    --resume that task runs again and goes on from its checkpoint, the tasks after it run, every other task
    is reused. Runs last: it changes the run."""
    import os
    import shutil

    from mlflow import MlflowClient

    from urbangen.segment.model import META_FILE

    before = json.loads((smoke_run / "results.json").read_text())
    kfp, cache = smoke_run / "workspace" / "kfp", smoke_run / "workspace" / "kfp-cache"
    (first,) = kfp.iterdir()
    assert len(list(cache.glob("*.json"))) >= 18  # every task on record
    task = next(name for name, method in _task_methods(first).items() if method == "urbangen")
    work = (first / task / "model").resolve()  # a link into WORKSPACE/steps: the task's work folder
    assert work.parent == smoke_run / "workspace" / "steps" and (work / "seed-0" / "checkpoints" / "last.pt").is_file()
    shutil.rmtree(work / "seed-0" / "model")
    (entry,) = (e for e in cache.glob("*.json") if f"{task}/model" in e.read_text())
    entry.unlink()

    result = CliRunner().invoke(
        main, ["demo", "--scale", "smoke", "--out", str(smoke_run), "--resume"], catch_exceptions=False
    )
    assert result.exit_code == 0, result.output[-3000:]
    assert "reused: Task make-dataset cache hit" in result.output  # the user sees what was kept
    assert "URBANGEN_STEP_WORK" not in os.environ  # the local run's environment ends with it
    (second,) = set(kfp.iterdir()) - {first}
    ran = {p.name for p in second.iterdir() if p.is_dir()}
    assert list(_task_methods(second).values()) == ["urbangen"]
    assert {_base_task(name) for name in ran} == {"train-segmenter", "report", "register-models"}
    (retrained,) = (second / name / "model" for name in ran if name.startswith("train-segmenter"))
    assert retrained.resolve() == work  # the same work folder, found again
    meta = json.loads((work / "seed-0" / "model" / META_FILE).read_text())["meta"]
    assert meta["resumed_from"] == meta["iterations"]  # resumed from the checkpoint, not trained again

    after = json.loads((smoke_run / "results.json").read_text())
    assert after["resumed"] is True and after["mlflow_run_id"] == before["mlflow_run_id"]
    assert after["methods"] == before["methods"]  # nothing retrained: the same figures
    client = MlflowClient(f"sqlite:///{smoke_run / 'workspace' / 'mlflow.db'}")
    assert client.get_run(after["mlflow_run_id"]).info.status == "FINISHED"


def _base_task(name: str) -> str:
    head, _, tail = name.rpartition("-")
    return head if tail.isdigit() else name


def test_a_fresh_run_clears_only_earlier_run_folders(tmp_path):
    """Without --resume the earlier runs' kfp and step folders go (nothing could reuse them); the MLflow
    store, the dataset store and anything not named like kfp.local's or a step's folder stay."""
    from urbangen.pipeline_cli import clear_earlier_runs

    ws = tmp_path / "workspace"
    run = ws / "kfp" / "urbangen-2026-11-27-02-58-41-006880"
    step = ws / "steps" / "adapt-stage2-6549290ab6353c19"
    (run / "make-dataset" / "data").mkdir(parents=True)
    (run / "make-dataset" / "data" / "a.png").write_bytes(b"x" * 1000)
    step.mkdir(parents=True)
    (step / "weights.bin").write_bytes(b"y" * 500)
    (run / "adapt-stage2").mkdir()
    (run / "adapt-stage2" / "generator").symlink_to("../../../steps/adapt-stage2-6549290ab6353c19")
    outside = tmp_path / "user-data"
    outside.mkdir()
    (outside / "keep.png").write_bytes(b"z")
    (ws / "steps" / "train-fda-0123456789abcdef").symlink_to(outside)  # a link, not a folder of ours
    kept = [ws / "kfp" / "my-notes", ws / "steps" / "checkpoints-by-hand", ws / "store" / "d", ws / "mlartifacts"]
    for folder in kept:
        folder.mkdir(parents=True)
    (ws / "mlflow.db").write_bytes(b"db")

    assert clear_earlier_runs(ws) == (2, 1500)
    assert not run.exists() and not step.exists()
    assert all(folder.is_dir() for folder in kept) and (ws / "mlflow.db").is_file()
    assert (outside / "keep.png").is_file()
    assert clear_earlier_runs(ws) == (0, 0)


def test_a_cuda_config_is_refused_before_any_step_on_a_cpu_machine(tmp_path):
    torch = pytest.importorskip("torch")
    if torch.cuda.is_available():
        pytest.skip("checks the refusal on a machine without CUDA")
    result = CliRunner().invoke(main, ["demo", "--scale", "full", "--out", str(tmp_path / "out")])
    assert result.exit_code != 0
    assert "pseudo_label.device, adapt.device, generate.engine.device: the config asks for a CUDA GPU" in result.output
    assert not (tmp_path / "out" / "workspace" / "kfp").exists()  # no step ran
