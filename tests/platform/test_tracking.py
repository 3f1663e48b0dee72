"""MLflow tracking against a real sqlite store: run hierarchy across processes, what gets logged, the
model registry round trip (log -> register -> alias -> resolve -> load -> predict), fast failures."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
from safetensors.numpy import load_file, save_file

from urbangen.config import StrictModel
from urbangen.errors import UrbangenError
from urbangen.io import read_rgb
from urbangen.storage import LocalStore, digest_of, scan_dir
from urbangen.tracking import Tracker, tracking_uri

ROOT = Path(__file__).resolve().parents[2]


class TinySegmenter:
    """A per-pixel linear classifier saved like the segmentation code saves models (config + safetensors)."""

    def __init__(self, weight: np.ndarray) -> None:
        self.weight = weight

    @classmethod
    def from_pretrained(cls, path: str | Path) -> TinySegmenter:
        config = json.loads((Path(path) / "config.json").read_text())
        weight = load_file(str(Path(path) / "model.safetensors"))["weight"]
        assert weight.shape == (3, config["num_labels"])
        return cls(weight)

    def save_pretrained(self, path: Path) -> None:
        path.mkdir(parents=True, exist_ok=True)
        save_file({"weight": self.weight}, str(path / "model.safetensors"))
        (path / "config.json").write_text(json.dumps({"num_labels": self.weight.shape[1]}))
        (path / "urbangen.json").write_text(json.dumps({"taxonomy": "cityscapes19"}))

    def predict(self, images: np.ndarray) -> np.ndarray:
        return np.argmax(np.asarray(images, np.float32) @ self.weight, axis=-1).astype(np.uint8)


def tiny_segmenter(path: Path, seed: int) -> Path:
    TinySegmenter(np.random.default_rng(seed).normal(size=(3, 19)).astype(np.float32)).save_pretrained(path)
    return path


class TrainConfig(StrictModel):
    lr: float = 0.01
    crop: tuple[int, int] = (64, 128)


class PipelineConfig(StrictModel):
    name: str = "smoke"
    train: TrainConfig = TrainConfig()


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    """One sqlite store for the module (creating its tables takes seconds); tests use their own runs/names."""
    with pytest.MonkeyPatch.context() as patch:
        patch.delenv("MLFLOW_TRACKING_URI", raising=False)
        patch.setenv("MLFLOW_DISABLE_TELEMETRY", "true")
        yield tmp_path_factory.mktemp("ws")


@pytest.fixture(scope="module")
def tracker(workspace) -> Tracker:
    return Tracker(workspace, system_metrics_interval=0.3)


STEP_SCRIPT = textwrap.dedent(
    """
    import sys
    from urbangen.tracking import Tracker

    workspace, parent = sys.argv[1:]
    tracker = Tracker(workspace)  # a fresh process, as every KFP task is
    with tracker.step_run(parent, "train", config={"step": {"lr": 0.5}}, system_metrics=False) as run:
        for i in range(3):
            run.log_metric("loss", 1.0 / (i + 1), step=i)
        run.log_metrics({"miou": 0.25})
    try:
        with tracker.step_run(parent, "evaluate", system_metrics=False):
            raise RuntimeError("step failed on purpose")
    except RuntimeError as exc:
        print(exc)
    """
)


def test_tracking_uri_default_and_env(tmp_path, monkeypatch):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    assert tracking_uri(tmp_path) == f"sqlite:///{tmp_path}/mlflow.db"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://mlflow.kubeflow:5000")
    assert tracking_uri(tmp_path) == "http://mlflow.kubeflow:5000"


def test_parent_and_nested_runs_across_processes(tracker, workspace):
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    with tracker.pipeline_run("pipeline", config=PipelineConfig(), tags={"trigger": "test"}) as parent:
        proc = subprocess.run(
            [sys.executable, "-c", STEP_SCRIPT, str(workspace), parent.run_id],
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert proc.returncode == 0 and "step failed on purpose" in proc.stdout, proc.stdout + proc.stderr

    client = tracker.client
    info = client.get_run(parent.run_id)
    assert info.info.status == "FINISHED" and info.data.tags["trigger"] == "test"
    assert info.data.params == {"name": "smoke", "train.lr": "0.01", "train.crop": "[64, 128]"}
    children = client.search_runs([tracker.experiment_id], f"tags.mlflow.parentRunId = '{parent.run_id}'")
    by_name = {run.info.run_name: run for run in children}
    assert set(by_name) == {"train", "evaluate"}
    assert by_name["train"].info.status == "FINISHED" and by_name["evaluate"].info.status == "FAILED"
    assert by_name["train"].data.params == {"step.lr": "0.5"}
    assert by_name["train"].data.metrics["miou"] == 0.25
    history = client.get_metric_history(by_name["train"].info.run_id, "loss")
    assert [(m.step, round(m.value, 3)) for m in history] == [(0, 1.0), (1, 0.5), (2, 0.333)]
    with pytest.raises(UrbangenError, match="not found"):
        tracker.step_run("0" * 32, "orphan").__enter__()


def test_artifacts_datasets_and_system_metrics(tracker, tmp_path):
    grid = np.random.default_rng(1).integers(0, 256, (12, 20, 3), dtype=np.uint8)
    folder = tmp_path / "confusion"
    folder.mkdir()
    (folder / "matrix.json").write_text("[[1, 0], [0, 1]]")
    data = tmp_path / "data"
    (data / "gtFine").mkdir(parents=True)
    (data / "gtFine" / "a.png").write_bytes(b"label bytes")
    (data / "manifest.jsonl").write_text('{"id": "a"}\n')
    store = LocalStore(tmp_path / "store")
    store.push(data, "generated", "v1")

    with tracker.pipeline_run("artefacts") as parent, tracker.step_run(parent.run_id, "evaluate") as run:
        run.log_image(grid, "preview")
        run.log_artifact(folder)
        run.log_text("# Report\nmIoU 0.5\n", "report.md")
        local_digest = run.log_dataset("target-val", data, context="evaluation")
        store_digest = run.log_dataset(
            "generated", store.uri("generated", "v1"), digest=store.digest("generated", "v1")
        )
        time.sleep(1.0)  # let the system metrics monitor take a few samples

    client = tracker.client
    assert {a.path for a in client.list_artifacts(run.run_id)} == {"images", "confusion", "report.md"}
    png = client.download_artifacts(run.run_id, "images/preview.png", str(tmp_path / "dl"))
    np.testing.assert_array_equal(read_rgb(png), grid)
    assert [a.path for a in client.list_artifacts(run.run_id, "confusion")] == ["confusion/matrix.json"]

    assert local_digest == store_digest == digest_of(scan_dir(data))
    inputs = client.get_run(run.run_id).inputs.dataset_inputs
    seen = {(i.dataset.name, i.dataset.digest, i.tags[0].value) for i in inputs}
    assert seen == {("target-val", local_digest[:36], "evaluation"), ("generated", store_digest[:36], "training")}
    assert any(key.startswith("system/cpu") for key in client.get_run(run.run_id).data.metrics)


def test_model_registry_round_trip(tracker, tmp_path, monkeypatch):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    loader = f"{TinySegmenter.__module__}:TinySegmenter"
    folders = [tiny_segmenter(tmp_path / f"seg{i}", seed=i) for i in range(2)]
    with tracker.pipeline_run("registry") as parent, tracker.step_run(parent.run_id, "train") as run:
        run.log_model(folders[0], "segmenter", loader=loader, method="predict")
        run.log_model(folders[1], "segmenter_v2", loader=loader, method="predict")

    name = "test-segmenter"
    assert tracker.register_model(run.run_id, "segmenter", name, ["candidate", "champion"]) == "1"
    assert tracker.register_model(run.run_id, "segmenter_v2", name, ["candidate"]) == "2"  # alias moves
    assert "MLFLOW_TRACKING_URI" not in os.environ  # the process-wide URI was restored
    assert tracker.client.get_model_version_by_alias(name, "champion").version == 1
    assert tracker.client.get_model_version_by_alias(name, "candidate").version == 2

    resolved = tracker.resolve_alias(name, "champion", dst=tmp_path / "registry")
    assert resolved.is_dir() and tracker.resolve_alias(name, "champion", dst=tmp_path / "registry") == resolved
    assert {p.name: p.read_bytes() for p in resolved.iterdir()} == {
        p.name: p.read_bytes() for p in folders[0].iterdir()
    }

    images = np.random.default_rng(2).integers(0, 256, (2, 6, 8, 3), dtype=np.uint8)
    for alias, folder in (("champion", folders[0]), ("candidate", folders[1])):
        model = tracker.load_model(name, alias, dst=tmp_path / "registry")
        np.testing.assert_array_equal(model.predict(images), TinySegmenter.from_pretrained(folder).predict(images))
    assert not np.array_equal(
        TinySegmenter.from_pretrained(folders[0]).predict(images),
        TinySegmenter.from_pretrained(folders[1]).predict(images),
    )

    with pytest.raises(UrbangenError, match="no version with alias 'prod'"):
        tracker.resolve_alias(name, "prod")
    with pytest.raises(UrbangenError, match="no model logged as 'generator'"):
        tracker.register_model(run.run_id, "generator", name)
    with pytest.raises(UrbangenError, match="not a saved model folder"):
        tracker.run(run.run_id).log_model(tmp_path / "missing", "x")


def test_real_segmenter_and_generator_load_back_through_the_registry(tracker, tmp_path):
    """The default kinds wrap the project's own folders: a SegFormer segmenter and a diffusers generator."""
    from urbangen.diffusion.artefacts import save_generator
    from urbangen.diffusion.build import scratch_modules
    from urbangen.diffusion.sampler import Generator
    from urbangen.labels import cityscapes19
    from urbangen.segment.model import build_model, save_model
    from urbangen.segment.predict import Predictor

    segmenter = save_model(build_model("tiny"), tmp_path / "segmenter", cityscapes19(), {"crop_size": [32, 32]})
    modules = scratch_modules("tiny", ("target",), seed=0)
    generator = tmp_path / "generator"
    meta = {
        "stage": 1,
        "taxonomy": cityscapes19().to_dict(),
        "domains": list(modules.domains),
        "resolution": [16, 32],
        "factor": modules.factor,
        "size_multiple": modules.size_multiple,
    }
    save_generator(modules, generator, meta)
    with tracker.pipeline_run("real-models") as run:
        run.log_model(segmenter, "segmenter", kind="segmenter")
        run.log_model(generator, "generator", kind="generator")
    tracker.register_model(run.run_id, "segmenter", "real-segmenter", ["champion"])
    tracker.register_model(run.run_id, "generator", "real-generator", ["champion"])

    images = np.random.default_rng(0).integers(0, 256, (2, 32, 48, 3), dtype=np.uint8)
    out = tracker.load_model("real-segmenter", "champion", dst=tmp_path / "reg").predict(images)
    train_ids, confidence = Predictor.from_pretrained(segmenter).predict(images)
    np.testing.assert_array_equal(out["train_ids"], train_ids)
    np.testing.assert_allclose(out["confidence"], confidence)

    labels = np.random.default_rng(1).integers(0, 19, (2, 16, 32), dtype=np.uint8)
    served = tracker.load_model("real-generator", "champion", dst=tmp_path / "reg")
    rendered = served.predict({"labels": labels, "seeds": [3, 4], "steps": 2})
    assert rendered.shape == (2, 16, 32, 3) and rendered.dtype == np.uint8
    np.testing.assert_array_equal(rendered, Generator.from_pretrained(generator).generate(labels, [3, 4], steps=2))
    assert tracker.resolve_alias("real-generator", "champion", dst=tmp_path / "reg").joinpath("urbangen.json").is_file()


def test_unreachable_tracking_server_fails_fast(tmp_path, monkeypatch, free_port, silent_port):
    start = time.monotonic()
    with pytest.raises(UrbangenError, match=r"MLflow tracking server http://127\.0\.0\.1:\d+ is unreachable"):
        Tracker(tmp_path, uri=f"http://127.0.0.1:{free_port()}")
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"http://127.0.0.1:{silent_port}")
    with pytest.raises(UrbangenError, match="unreachable"):
        Tracker(tmp_path, probe_timeout=1.0)  # a server that accepts but never answers
    assert time.monotonic() - start < 5
