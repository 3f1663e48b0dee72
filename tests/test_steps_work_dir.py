"""Where long pipeline steps write: ``out`` on a cluster, a resumable folder linked at ``out`` locally."""

from __future__ import annotations

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
    import pytest

    from urbangen.errors import UrbangenError

    monkeypatch.setenv("URBANGEN_STEP_WORK", str(tmp_path / "steps"))
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "stray.txt").write_text("x")
    with pytest.raises(UrbangenError, match=r"out: expected an empty output folder for step adapt-stage2"):
        work_dir(tmp_path / "out", "adapt-stage2", "run-a")
