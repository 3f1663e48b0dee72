"""``urbangen pipeline compile|run|submit``: the Kubeflow pipeline from the command line.

- compile: write the pipeline YAML that users upload in the Kubeflow UI;
- run --local: execute every step through kfp.local (SubprocessRunner, the current environment), tracked
  in the workspace's MLflow store — the embedded default, and what ``urbangen demo`` uses; ``--resume``
  keeps the steps a failed or interrupted run finished;
- submit: upload the pipeline (a new version if it exists) to a Kubeflow Pipelines host and start a run.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import shutil
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import click

from urbangen.errors import UrbangenError
from urbangen.pipeline_config import PipelineConfig, load_pipeline_config


def compile_pipeline(cfg: PipelineConfig, out: str | Path) -> Path:
    """Compile the pipeline for ``cfg`` to a YAML file (atomically)."""
    from kfp import compiler

    from urbangen.io import atomic_path
    from urbangen.pipelines.urbangen_pipeline import build_pipeline

    out = Path(out)
    with atomic_path(out) as tmp:
        compiler.Compiler().compile(build_pipeline(cfg), str(tmp.with_suffix(".yaml")))
        tmp.with_suffix(".yaml").replace(tmp)
    return out


def local_environment(workspace: Path) -> dict[str, str]:
    """Environment for local runs: the workspace, its sqlite MLflow store unless a server is configured, and
    the folder where long steps keep their work for ``--resume`` (:func:`urbangen.steps.work_dir`)."""
    from urbangen.tracking import tracking_uri

    workspace = workspace.resolve()
    return {
        "URBANGEN_WORKSPACE": str(workspace),
        "MLFLOW_TRACKING_URI": tracking_uri(workspace),
        "URBANGEN_STEP_WORK": str(workspace / "steps"),
    }


def check_devices(cfg: PipelineConfig) -> None:
    """Refuse, before any step runs, a config that asks for CUDA on a machine where torch sees none (the
    `full` preset on a CPU machine would otherwise run for hours before its adaptation step fails)."""
    import torch

    fields = cfg.cuda_fields()
    if fields and not torch.cuda.is_available():
        raise UrbangenError(
            f"{', '.join(fields)}: the config asks for a CUDA GPU but torch sees none on this machine; run it "
            "on a GPU machine or set these fields to cpu (the smoke and demo scales run on a CPU)"
        )


def run_local(cfg: PipelineConfig, workspace: str | Path, resume: bool = False) -> dict[str, Path]:
    """Run the whole pipeline on this machine through kfp.local; returns the report and results paths.

    Every finished task is recorded in ``WORKSPACE/kfp-cache`` (KFP's local task cache). With ``resume`` a
    rerun reuses the tasks whose config, inputs and code are unchanged (the MLflow parent run included)
    and runs the rest; without it the record and the earlier runs' output folders are cleared first
    (:func:`clear_earlier_runs`) and everything runs again."""
    from kfp import local

    from urbangen.pipelines.urbangen_pipeline import build_pipeline

    check_devices(cfg)
    workspace = Path(workspace).resolve()
    workspace.mkdir(parents=True, exist_ok=True)
    cache = workspace / "kfp-cache"
    if resume:
        finished = len(list(cache.glob("*.json")))
        print(f"resuming in {workspace}: {finished} finished task(s) on record", file=sys.stderr, flush=True)
    else:
        if cache.exists():
            shutil.rmtree(cache)
        folders, size = clear_earlier_runs(workspace)
        if folders:
            print(
                f"cleared {folders} output folder(s) of earlier runs in {workspace} ({size / 1e6:.0f} MB; "
                "their MLflow runs, registered models and datasets in the store are kept)",
                file=sys.stderr,
                flush=True,
            )
    local.init(
        runner=local.SubprocessRunner(use_venv=False),
        pipeline_root=str(workspace / "kfp"),
        raise_on_error=True,
        enable_caching=True,
        cache_root=str(cache),
    )
    hits: list[str] = []
    try:
        # tasks are subprocesses: they inherit the environment
        with _environment(local_environment(workspace)), _report_reused_tasks(hits):
            task = build_pipeline(cfg, caching=True)(config=cfg.parameter())
    except RuntimeError as exc:
        raise UrbangenError(
            f"local pipeline run failed: {exc} (task logs above; workspace {workspace}; "
            "rerun with --resume to keep the finished steps: reused while the config and the urbangen code "
            "stay the same)"
        ) from exc
    if resume and not hits:
        print(
            "resume: no finished task matched (the config or the urbangen code changed, or nothing had "
            "finished): every step ran again",
            file=sys.stderr,
            flush=True,
        )
    return {name: Path(artifact.path) for name, artifact in task.outputs.items()}


# how kfp.local names a run's folder: <pipeline>-YYYY-MM-DD-hh-mm-ss-microseconds
_KFP_RUN = re.compile(r".+-\d{4}(-\d{2}){5}-\d{6}")


def clear_earlier_runs(workspace: Path) -> tuple[int, int]:
    """Delete the kfp run folders (``WORKSPACE/kfp/<run>``) and step folders (``WORKSPACE/steps/<step>-<key>``)
    that earlier runs left in ``workspace``; return (folders deleted, bytes freed).

    Only a resume reads them, and a run without ``--resume`` clears the record that would: without this
    every rerun into the same folder would add another copy of every dataset, model and generation.
    Only folders named the way kfp.local and :func:`urbangen.steps.work_dir` name theirs are touched."""
    from urbangen.steps import WORK_DIR_NAME

    folders = [
        path
        for parent, pattern in ((workspace / "kfp", _KFP_RUN), (workspace / "steps", WORK_DIR_NAME))
        if parent.is_dir()
        for path in sorted(parent.iterdir())
        if path.is_dir() and not path.is_symlink() and pattern.fullmatch(path.name)
    ]
    files = [Path(root) / name for folder in folders for root, _, names in os.walk(folder) for name in names]
    size = sum(f.lstat().st_size for f in files)
    for folder in folders:
        shutil.rmtree(folder)
    return len(folders), size


@contextlib.contextmanager
def _environment(values: dict[str, str]) -> Iterator[None]:
    """``values`` set in ``os.environ`` for the block, the caller's environment restored after it."""
    saved = {key: os.environ.get(key) for key in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


@contextlib.contextmanager
def _report_reused_tasks(hits: list[str]) -> Iterator[None]:
    """Show kfp.local's "Task T cache hit" lines (INFO on the root logger, hidden by default) and collect
    them in ``hits``. Warnings and errors on the root logger still show: the handler would otherwise keep
    Python's last-resort handler from printing them."""

    def keep(record: logging.LogRecord) -> bool:
        if "cache hit" in record.getMessage():
            hits.append(record.getMessage())
            return True
        return record.levelno >= logging.WARNING

    handler = logging.StreamHandler(sys.stderr)
    handler.addFilter(keep)
    handler.setFormatter(_ReusedFormatter())
    root = logging.getLogger()
    level = root.level
    root.addHandler(handler)
    root.setLevel(min(level, logging.INFO))
    try:
        yield
    finally:
        root.removeHandler(handler)
        root.setLevel(level)


class _ReusedFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        prefix = "reused" if record.levelno < logging.WARNING else record.levelname.lower()
        return f"{prefix}: {record.getMessage()}"


def submit(cfg: PipelineConfig, host: str, experiment: str | None = None, namespace: str | None = None) -> str:
    """Upload the pipeline to ``host`` (a new version when it already exists) and start a run; returns its id."""
    import kfp

    client = kfp.Client(host=host, namespace=namespace)
    with tempfile.TemporaryDirectory() as tmp:
        package = compile_pipeline(cfg, Path(tmp) / "pipeline.yaml")
        version = f"{cfg.name}-{time.strftime('%Y%m%d-%H%M%S')}"
        pipeline_id = client.get_pipeline_id(cfg.name)
        if pipeline_id is None:
            pipeline = client.upload_pipeline(str(package), pipeline_name=cfg.name)
            pipeline_id = pipeline.pipeline_id
            versions = client.list_pipeline_versions(pipeline_id).pipeline_versions or []
            version_id = versions[0].pipeline_version_id
        else:
            version_id = client.upload_pipeline_version(
                str(package), pipeline_version_name=version, pipeline_id=pipeline_id
            ).pipeline_version_id
    experiment_id = client.create_experiment(experiment or cfg.experiment, namespace=namespace).experiment_id
    run = client.run_pipeline(
        experiment_id=experiment_id,
        job_name=version,
        pipeline_id=pipeline_id,
        version_id=version_id,
        params={"config": cfg.parameter()},
    )
    return run.run_id


config_option = click.option(
    "--config",
    "config_path",
    type=click.Path(dir_okay=False),
    default=None,
    help="pipeline config YAML (see docs/pipeline.md); applied over --scale",
)
scale_option = click.option(
    "--scale", type=click.Choice(["smoke", "demo", "full"]), default=None, help="start from a built-in benchmark preset"
)

resume_option = click.option(
    "--resume",
    is_flag=True,
    help="reuse the steps an earlier run in this workspace finished (same config, inputs and code); "
    "without it the earlier runs' step outputs there are deleted and every step runs again",
)


def _config(config_path: str | None, scale: str | None) -> PipelineConfig:
    if config_path is None and scale is None:
        raise UrbangenError("give --config FILE and/or --scale smoke|demo|full")
    return load_pipeline_config(config_path, scale)


@click.group()
def pipeline() -> None:
    """Compile, run locally, or submit the Kubeflow pipeline."""


@pipeline.command("compile")
@config_option
@scale_option
@click.option("--out", type=click.Path(dir_okay=False), required=True, help="pipeline YAML to write")
def compile_command(config_path: str | None, scale: str | None, out: str) -> None:
    """Write the pipeline YAML to upload in the Kubeflow UI."""
    path = compile_pipeline(_config(config_path, scale), out)
    click.echo(f"wrote {path}")


@pipeline.command("run")
@config_option
@scale_option
@click.option("--local", "local_", is_flag=True, required=True, help="run through kfp.local on this machine")
@click.option("--workspace", type=click.Path(file_okay=False), default="workspace", show_default=True)
@resume_option
def run_command(config_path: str | None, scale: str | None, local_: bool, workspace: str, resume: bool) -> None:
    """Run every step on this machine through kfp.local (the embedded default)."""
    outputs = run_local(_config(config_path, scale), workspace, resume)
    for name, path in outputs.items():
        click.echo(f"{name}: {path}")


@pipeline.command("submit")
@config_option
@scale_option
@click.option("--host", required=True, help="Kubeflow Pipelines API endpoint, e.g. http://ml-pipeline-ui:80")
@click.option("--experiment", default=None)
@click.option("--namespace", default=None)
def submit_command(
    config_path: str | None, scale: str | None, host: str, experiment: str | None, namespace: str | None
) -> None:
    """Upload the pipeline (new version if it exists) and start a run on a cluster."""
    run_id = submit(_config(config_path, scale), host, experiment, namespace)
    click.echo(f"started run {run_id}")
