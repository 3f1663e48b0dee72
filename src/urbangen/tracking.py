"""MLflow tracking and model registry: the only module that talks to MLflow.

Run hierarchy: one parent run per pipeline run and one nested run per step. A step may run in another
process (every KFP task does): it attaches with ``Tracker(...).step_run(parent_run_id, "train")``, which
tags the new run with ``mlflow.parentRunId``. Everything goes through an explicit ``MlflowClient`` bound
to one tracking URI: ``MLFLOW_TRACKING_URI`` when set, else ``sqlite:///<workspace>/mlflow.db`` with
artefacts in ``<workspace>/mlartifacts``. A configured server is probed with a short timeout before use,
so a wrong or dead URL is one clear error instead of MLflow's minutes of retries.

Models are logged as MLflow "logged models" wrapping a saved model folder (see
:mod:`urbangen.tracking_pyfunc`), registered in the Model Registry and addressed by alias
(``candidate``, ``champion``); :meth:`Tracker.resolve_alias` downloads the folder for serving.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
import time
import urllib.error
import urllib.request
import warnings
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from urbangen import __version__
from urbangen.config import Settings
from urbangen.errors import UrbangenError

PYFUNC_CODE = Path(__file__).with_name("tracking_pyfunc.py")
# kind -> pyfunc model_config: loader "module:Class" (from_pretrained(folder)), predict method, tuple output names
MODEL_KINDS: dict[str, dict[str, Any]] = {
    "segmenter": {
        "loader": "urbangen.segment.predict:Predictor",
        "method": "predict",
        "outputs": ["train_ids", "confidence"],
    },
    "generator": {"loader": "urbangen.diffusion.sampler:Generator", "method": "generate"},
}
_PARAM_MAX = 6000  # MLflow's limit on a param value
_DIGEST_MAX = 36  # MLflow's limit on a dataset digest


def tracking_uri(workspace: str | os.PathLike[str]) -> str:
    """MLFLOW_TRACKING_URI when set, else a sqlite store inside the workspace."""
    configured = Settings().mlflow_tracking_uri
    if configured:
        return configured
    return f"sqlite:///{(Path(workspace).absolute() / 'mlflow.db').as_posix()}"


def check_server(uri: str, timeout: float = 5.0) -> None:
    """For an http(s) tracking URI, GET ``/health`` within ``timeout`` seconds or raise a clear error."""
    if not uri.startswith(("http://", "https://")):
        return
    try:
        with urllib.request.urlopen(uri.rstrip("/") + "/health", timeout=timeout) as response:
            if response.status == 200:
                return
            reason = f"HTTP {response.status}"
    except (urllib.error.URLError, OSError) as exc:  # refused, DNS failure, timeout, HTTP error status
        reason = str(getattr(exc, "reason", exc))
    raise UrbangenError(
        f"MLflow tracking server {uri} is unreachable ({reason}): start it, fix MLFLOW_TRACKING_URI, or unset "
        "it to track into the workspace's sqlite store"
    )


def flatten(config: Any, prefix: str = "") -> dict[str, str]:
    """Nested config (mapping or pydantic model) -> {"a.b.c": "value"} with values cut to MLflow's limit."""
    if hasattr(config, "model_dump"):
        config = config.model_dump(mode="json")
    flat: dict[str, str] = {}
    for key, value in (config or {}).items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping) or hasattr(value, "model_dump"):
            flat.update(flatten(value, name + "."))
        else:
            text = value if isinstance(value, str) else json.dumps(value, default=str)
            flat[name] = text[:_PARAM_MAX]
    return flat


@contextlib.contextmanager
def _process_tracking_uri(uri: str) -> Iterator[None]:
    """Some MLflow calls (registering a logged model, resolving ``models:/`` URIs) look the store up through
    the process-wide tracking URI; point it at ours for the call and restore it (and the env var) after."""
    from mlflow.tracking._tracking_service.utils import _use_tracking_uri

    saved = os.environ.get("MLFLOW_TRACKING_URI")
    try:
        with _use_tracking_uri(uri):
            yield
    finally:
        os.environ.pop("MLFLOW_TRACKING_URI", None)
        if saved is not None:
            os.environ["MLFLOW_TRACKING_URI"] = saved


class Run:
    """Logging into one MLflow run (parent or step), through the tracker's client."""

    def __init__(self, tracker: Tracker, run_id: str) -> None:
        self.tracker, self.run_id, self.client = tracker, run_id, tracker.client

    def log_params(self, config: Any, prefix: str = "") -> None:
        """Log a (nested) config as flat params, ``section.field``."""
        from mlflow.entities import Param

        params = [Param(key, value) for key, value in flatten(config, prefix).items()]
        for start in range(0, len(params), 100):
            self.client.log_batch(self.run_id, params=params[start : start + 100])

    def set_tags(self, tags: Mapping[str, Any]) -> None:
        for key, value in tags.items():
            self.client.set_tag(self.run_id, key, str(value))

    def log_metric(self, key: str, value: float, step: int | None = None) -> None:
        self.log_metrics({key: value}, step)

    def log_metrics(self, metrics: Mapping[str, float], step: int | None = None) -> None:
        """Log several metrics at once (e.g. per-class IoU), at ``step`` (losses) or step 0 (final scores)."""
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        rows = [Metric(key, float(value), now, step or 0) for key, value in metrics.items()]
        for start in range(0, len(rows), 1000):
            self.client.log_batch(self.run_id, metrics=rows[start : start + 1000])

    def log_artifact(self, path: str | os.PathLike[str], artifact_path: str | None = None) -> None:
        """Log a file, or a folder's contents (under ``artifact_path`` or the folder's own name)."""
        path = Path(path)
        if path.is_dir():
            self.client.log_artifacts(self.run_id, str(path), artifact_path or path.name)
        elif path.is_file():
            self.client.log_artifact(self.run_id, str(path), artifact_path)
        else:
            raise UrbangenError(f"cannot log artefact {path}: no such file or folder")

    def log_text(self, text: str, name: str, artifact_path: str | None = None) -> None:
        """Log a string (a Markdown report, a JSON summary) as the artefact file ``name``."""
        with tempfile.TemporaryDirectory() as tmp:
            (Path(tmp) / name).write_text(text, encoding="utf-8")
            self.client.log_artifact(self.run_id, str(Path(tmp) / name), artifact_path)

    def log_image(self, image: np.ndarray | str | os.PathLike[str], name: str, artifact_path: str = "images") -> None:
        """Log an image file, or a uint8 array written as PNG (shown as a preview in the MLflow UI)."""
        if not isinstance(image, np.ndarray):
            self.log_artifact(image, artifact_path)
            return
        from urbangen.io import write_png

        with tempfile.TemporaryDirectory() as tmp:
            target = Path(tmp) / (name if name.endswith(".png") else f"{name}.png")
            write_png(target, image)
            self.client.log_artifact(self.run_id, str(target), artifact_path)

    def log_dataset(
        self, name: str, source: str | os.PathLike[str], digest: str | None = None, context: str = "training"
    ) -> str:
        """Record a dataset input (``mlflow.log_input`` semantics) with its content digest.

        ``source`` is a local folder or a store URI (``Store.uri(name, version)``); without ``digest`` a local
        folder is hashed (:func:`urbangen.storage.digest_of`), so the same content gets the same digest
        wherever it lives. Returns the digest.
        """
        from mlflow.data.dataset_source_registry import resolve_dataset_source
        from mlflow.data.meta_dataset import MetaDataset
        from mlflow.entities import DatasetInput, InputTag

        if digest is None:
            from urbangen.storage import digest_of, scan_dir

            digest = digest_of(scan_dir(source))
        source_uri = str(Path(source).absolute()) if Path(source).exists() else str(source)
        with warnings.catch_warnings():  # local paths match two equivalent source classes; either is right
            warnings.filterwarnings("ignore", message=".*can be interpreted in multiple ways")
            dataset_source = resolve_dataset_source(source_uri)
        dataset = MetaDataset(dataset_source, name=name, digest=digest[:_DIGEST_MAX])
        tags = [InputTag("mlflow.data.context", context)]
        self.client.log_inputs(self.run_id, datasets=[DatasetInput(dataset._to_mlflow_entity(), tags)])
        return digest

    def log_model(
        self,
        folder: str | os.PathLike[str],
        artifact_path: str,
        kind: str = "segmenter",
        loader: str | None = None,
        method: str | None = None,
    ) -> str:
        """Log a saved model folder as an MLflow pyfunc model of this run; returns the logged model's id.

        ``kind`` picks the loader class and predict method (``MODEL_KINDS``); ``loader``/``method`` override it.
        """
        import mlflow.pyfunc
        from mlflow.entities import LoggedModelOutput
        from mlflow.models import Model

        folder = Path(folder)
        if not folder.is_dir() or not any(folder.iterdir()):
            raise UrbangenError(f"cannot log model {artifact_path}: {folder} is not a saved model folder")
        if kind not in MODEL_KINDS and not (loader and method):
            raise UrbangenError(f"unknown model kind {kind!r}: expected one of {sorted(MODEL_KINDS)} or loader+method")
        model_config = {**MODEL_KINDS.get(kind, {})}
        model_config.update({k: v for k, v in (("loader", loader), ("method", method)) if v})
        experiment_id = self.client.get_run(self.run_id).info.experiment_id
        logged = self.client.create_logged_model(
            experiment_id,
            name=artifact_path,
            source_run_id=self.run_id,
            model_type=kind,
            tags={"loader": model_config["loader"]},
        )
        try:
            with tempfile.TemporaryDirectory() as tmp:
                mlflow.pyfunc.save_model(
                    Path(tmp) / "model",
                    python_model=str(PYFUNC_CODE),
                    artifacts={"model": str(folder)},
                    model_config=model_config,
                    pip_requirements=[f"urbangen=={__version__}"],
                    mlflow_model=Model(run_id=self.run_id, model_id=logged.model_id),
                )
                self.client.log_model_artifacts(logged.model_id, str(Path(tmp) / "model"))
        except BaseException:
            self.client.finalize_logged_model(logged.model_id, "FAILED")
            raise
        self.client.finalize_logged_model(logged.model_id, "READY")
        self.client.log_outputs(self.run_id, [LoggedModelOutput(logged.model_id, 0)])
        self.client.set_tag(self.run_id, f"urbangen.model.{artifact_path}", logged.model_id)
        return logged.model_id


class Tracker:
    """One MLflow store (tracking + registry) and one experiment; safe to create in every process."""

    def __init__(
        self,
        workspace: str | os.PathLike[str] | None = None,
        experiment: str = "urbangen",
        uri: str | None = None,
        probe_timeout: float = 5.0,
        system_metrics_interval: float = 10.0,
    ) -> None:
        from mlflow import MlflowClient

        self.workspace = Path(workspace) if workspace is not None else Settings().urbangen_workspace
        self.uri = uri or tracking_uri(self.workspace)
        check_server(self.uri, probe_timeout)
        if self.uri.startswith("sqlite:///"):
            Path(self.uri.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
        self.client = MlflowClient(self.uri, registry_uri=self.uri)
        self.system_metrics_interval = system_metrics_interval
        self.experiment_id = self._experiment(experiment)

    def _experiment(self, name: str) -> str:
        if (existing := self.client.get_experiment_by_name(name)) is not None:
            return existing.experiment_id
        location = None  # a server chooses; a sqlite store keeps artefacts beside the database, never in the cwd
        if self.uri.startswith("sqlite:///"):
            location = (Path(self.uri.removeprefix("sqlite:///")).parent / "mlartifacts").absolute().as_uri()
        try:
            return self.client.create_experiment(name, artifact_location=location)
        except Exception:  # created by a concurrent process meanwhile
            existing = self.client.get_experiment_by_name(name)
            if existing is None:
                raise
            return existing.experiment_id

    def run(self, run_id: str) -> Run:
        """Attach to an existing run (e.g. the parent run, from a step's process)."""
        return Run(self, self._get_run(run_id).info.run_id)

    def _get_run(self, run_id: str) -> Any:
        from mlflow.exceptions import MlflowException

        try:
            return self.client.get_run(run_id)
        except MlflowException as exc:
            raise UrbangenError(f"MLflow run {run_id!r} not found in {self.uri}: {exc.message}") from None

    def start_run(
        self, name: str, parent_run_id: str | None = None, config: Any = None, tags: Mapping[str, Any] | None = None
    ) -> Run:
        """Create a run (nested under ``parent_run_id`` if given) and log ``config`` as params."""
        experiment_id, all_tags = self.experiment_id, {"urbangen.version": __version__, **(tags or {})}
        if parent_run_id:
            experiment_id = self._get_run(parent_run_id).info.experiment_id
            all_tags.update({"mlflow.parentRunId": parent_run_id, "urbangen.step": name})
        run = Run(self, self.client.create_run(experiment_id, run_name=name, tags=all_tags).info.run_id)
        if config is not None:
            run.log_params(config)
        return run

    def end_run(self, run_id: str, status: str = "FINISHED") -> None:
        self.client.set_terminated(run_id, status)  # FINISHED, FAILED or KILLED

    @contextlib.contextmanager
    def _running(self, run: Run, system_metrics: bool) -> Iterator[Run]:
        monitor = None
        if system_metrics:
            from mlflow.system_metrics.system_metrics_monitor import SystemMetricsMonitor

            monitor = SystemMetricsMonitor(
                run.run_id, sampling_interval=self.system_metrics_interval, tracking_uri=self.uri
            )
            monitor.start()
        status = "FINISHED"
        try:
            yield run
        except KeyboardInterrupt:
            status = "KILLED"
            raise
        except BaseException:
            status = "FAILED"
            raise
        finally:
            if monitor is not None:
                monitor.finish()
            self.end_run(run.run_id, status)

    def pipeline_run(
        self, name: str, config: Any = None, tags: Mapping[str, Any] | None = None, system_metrics: bool = False
    ) -> contextlib.AbstractContextManager[Run]:
        """The parent run of one pipeline run, ended FINISHED/FAILED/KILLED with the block."""
        return self._running(self.start_run(name, config=config, tags=tags), system_metrics)

    def step_run(
        self, parent_run_id: str, step_name: str, config: Any = None, system_metrics: bool = True
    ) -> contextlib.AbstractContextManager[Run]:
        """A nested run for one step under ``parent_run_id`` (which may come from another process)."""
        return self._running(self.start_run(step_name, parent_run_id, config), system_metrics)

    # ---- model registry ----
    def register_model(self, run_id: str, artifact_path: str, name: str, aliases: Sequence[str] = ()) -> str:
        """Register the model logged as ``artifact_path`` in run ``run_id`` under ``name``; set ``aliases``
        (e.g. ``["candidate"]``) on the new version. Returns the version number."""
        from mlflow.exceptions import MlflowException

        model_id = self._get_run(run_id).data.tags.get(f"urbangen.model.{artifact_path}")
        if model_id is None:
            raise UrbangenError(f"run {run_id} has no model logged as {artifact_path!r}")
        try:
            self.client.create_registered_model(name)
        except MlflowException as exc:
            if exc.error_code != "RESOURCE_ALREADY_EXISTS":
                raise
        with _process_tracking_uri(self.uri):
            version = self.client.create_model_version(
                name, source=f"models:/{model_id}", run_id=run_id, model_id=model_id
            ).version
        for alias in aliases:
            self.set_alias(name, alias, version)
        return str(version)

    def set_alias(self, name: str, alias: str, version: str | int) -> None:
        """Point ``alias`` at ``version`` (moving it if another version held it): how models are promoted."""
        self.client.set_registered_model_alias(name, alias, str(version))

    def download_alias(self, name: str, alias: str, dst: str | os.PathLike[str] | None = None) -> Path:
        """Download the MLflow model that ``name@alias`` points at into ``dst/<name>/<version>`` (default
        ``<workspace>/registry``); a complete earlier download is reused. Returns the MLflow model folder."""
        import mlflow.artifacts
        from mlflow.exceptions import MlflowException

        try:
            version = self.client.get_model_version_by_alias(name, alias).version
        except MlflowException as exc:
            raise UrbangenError(
                f"registered model {name!r} has no version with alias {alias!r} in {self.uri}: {exc.message}"
            ) from None
        target = Path(dst or self.workspace / "registry") / name / str(version)
        if (target / "MLmodel").is_file():
            return target
        shutil.rmtree(target, ignore_errors=True)  # an interrupted earlier download
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{version}.", dir=target.parent))
        try:
            with _process_tracking_uri(self.uri):
                mlflow.artifacts.download_artifacts(
                    f"models:/{name}/{version}", dst_path=str(tmp), tracking_uri=self.uri, registry_uri=self.uri
                )
            os.replace(tmp, target)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        return target

    def resolve_alias(self, name: str, alias: str, dst: str | os.PathLike[str] | None = None) -> Path:
        """Local path of the saved model folder (``from_pretrained``-loadable) that ``name@alias`` points at."""
        from mlflow.models import Model

        local = self.download_alias(name, alias, dst)
        artifacts = Model.load(str(local)).flavors["python_function"]["artifacts"]
        return local / artifacts["model"]["path"]

    def load_model(self, name: str, alias: str, dst: str | os.PathLike[str] | None = None) -> Any:
        """The pyfunc model ``name@alias`` (``.predict`` runs the wrapped model)."""
        import mlflow.pyfunc

        return mlflow.pyfunc.load_model(str(self.download_alias(name, alias, dst)))
