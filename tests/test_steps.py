"""Pipeline step functions called directly: where long steps write (``out`` on a cluster, a resumable folder
linked at ``out`` locally), and the training layout the pipeline config asks for."""

from __future__ import annotations

import pytest

from urbangen.steps import work_dir


def test_on_a_cluster_the_output_itself(tmp_path, monkeypatch):
    monkeypatch.delenv("URBANGEN_STEP_WORK", raising=False)
    assert work_dir(tmp_path / "out", "adapt-stage1", "run-a", "/data/target") == tmp_path / "out"
    assert not (tmp_path / "out").exists()


def test_locally_the_same_run_and_inputs_find_the_same_folder(tmp_path, monkeypatch):
    monkeypatch.setenv("URBANGEN_STEP_WORK", str(tmp_path / "steps"))
    (tmp_path / "try1").mkdir()
    (tmp_path / "try1" / "model").mkdir()  # kfp may create the output folder empty
    first = work_dir(tmp_path / "try1" / "model", "train-urbangen", "run-a", "/kfp/generated")
    (first / "checkpoint").write_text("step 400")
    assert (tmp_path / "try1" / "model").is_symlink() and first.parent == tmp_path / "steps"

    again = work_dir(tmp_path / "try2" / "model", "train-urbangen", "run-a", "/kfp/generated")
    assert again == first and (tmp_path / "try2" / "model" / "checkpoint").read_text() == "step 400"
    others = {
        work_dir(tmp_path / "new-run", "train-urbangen", "run-b", "/kfp/generated"),  # a fresh pipeline run
        work_dir(tmp_path / "new-input", "train-urbangen", "run-a", "/kfp/other"),  # an upstream task ran again
        work_dir(tmp_path / "new-step", "train-oracle", "run-a", "/kfp/generated"),
    }
    assert first not in others and len(others) == 3
    assert all(not any(folder.iterdir()) for folder in others)


def test_an_output_folder_with_files_is_an_error(tmp_path, monkeypatch):
    from urbangen.errors import UrbangenError

    monkeypatch.setenv("URBANGEN_STEP_WORK", str(tmp_path / "steps"))
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "stray.txt").write_text("x")
    with pytest.raises(UrbangenError, match=r"out: expected an empty output folder for step adapt-stage2"):
        work_dir(tmp_path / "out", "adapt-stage2", "run-a")


@pytest.mark.parametrize("parallel", [1, 2])
def test_train_segmenter_follows_the_configs_seeds_and_parallel(parallel, tmp_path, monkeypatch):
    """``train_seeds`` and ``train_parallel`` from the pipeline config reach the training (real tiny
    trainings, a real sqlite MLflow store): one model per seed, the layout recorded on the step's run."""
    from mlflow import MlflowClient

    from urbangen.pipeline_config import preset
    from urbangen.steps import make_dataset, start_tracking, train_segmenter

    for name in ("URBANGEN_STEP_WORK", "MLFLOW_TRACKING_URI"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("URBANGEN_WORKSPACE", str(tmp_path / "ws"))
    cfg = preset("smoke", train_seeds=[3, 5], train_parallel=parallel, dataset_store=False)
    cfg = cfg.model_copy(update={"segment": {**cfg.segment, "iterations": 2}})
    config = cfg.parameter()
    parent = start_tracking(config)
    make_dataset(config, "source", tmp_path / "source", parent)

    summary = train_segmenter(config, "source_only", tmp_path / "source", tmp_path / "model", parent)
    assert summary["seeds"] == [3, 5]
    assert sorted(p.name for p in (tmp_path / "model").iterdir()) == ["seed-3", "seed-5"]
    client = MlflowClient(f"sqlite:///{tmp_path / 'ws' / 'mlflow.db'}")
    experiment = client.get_run(parent).info.experiment_id
    (run,) = client.search_runs([experiment], filter_string="tags.mlflow.runName = 'train-source_only'")
    assert run.data.params["seeds_at_once"] == str(parallel)  # 1: one seed after the other; 2: side by side
    assert client.get_metric_history(run.info.run_id, "seed5/loss")
