"""The pipeline's steps as plain functions: pipeline config + input folders in, output folders out.

Each KFP component (``components/steps.py``) is one call into this module, so the same code runs in a
cluster task, in a kfp.local subprocess and in tests. A step opens a nested MLflow run under the pipeline's
parent run, turns its section of :class:`PipelineConfig` into the owning module's config, runs it, and
logs what a person will want to compare (params, losses, metrics, images, models, dataset digests).

Folder conventions of the artefacts passed between steps:
- a dataset artefact is a Cityscapes-layout folder (split ``train`` or ``val``), readable with
  ``open_dataset("cityscapes", path)``;
- a segmenter artefact holds ``seed-<k>/model`` (one model per training seed);
- a generator artefact holds ``stage1/`` (stage 1) or ``stage1/`` and ``stage2/`` (stage 2);
- an evaluation artefact holds ``result.json`` (mean over seeds plus each seed's result), charts and
  the first seed's predictions in ``pred/``.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import shutil
import statistics
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from urbangen.config import validate
from urbangen.errors import UrbangenError
from urbangen.io import write_json_atomic
from urbangen.pipeline_config import FolderData, PipelineConfig, WorldData

ROLE_SEED_OFFSET = {"source": 0, "target": 1000, "val": 1000}  # source and target scenes never share layouts
ROLE_SPLIT = {"source": "train", "target": "train", "val": "val"}


def load(config: dict[str, Any]) -> PipelineConfig:
    return validate(PipelineConfig, config, "pipeline config")


def workspace() -> Path:
    from urbangen.config import Settings

    return Path(os.environ.get("URBANGEN_WORKSPACE") or Settings().urbangen_workspace).resolve()


def tracker(cfg: PipelineConfig):
    from urbangen.tracking import Tracker

    return Tracker(workspace(), experiment=cfg.experiment)


@contextlib.contextmanager
def step_run(cfg: PipelineConfig, parent_run_id: str, name: str, params: Any = None) -> Iterator[Any]:
    """A nested MLflow run for one step; yields the run (log_metric, log_artifact, ...)."""
    with tracker(cfg).step_run(parent_run_id, name, config=params) as run:
        started = time.time()
        yield run
        run.log_metric("step_seconds", time.time() - started)


def _logger(run: Any, prefix: str = "") -> Callable[[dict], None]:
    """``on_log`` callback for trainers: numeric fields become MLflow metrics at ``step``."""

    def on_log(record: dict) -> None:
        step = int(record.get("step", 0))
        metrics = {f"{prefix}{k}": float(v) for k, v in record.items() if k != "step" and isinstance(v, (int, float))}
        run.log_metrics(metrics, step=step)

    return on_log


WORK_KEY_LENGTH = 16
# the names of work_dir's folders, ``<step>-<key>`` (what a fresh local run clears: pipeline_cli.clear_earlier_runs)
WORK_DIR_NAME = re.compile(rf".+-[0-9a-f]{{{WORK_KEY_LENGTH}}}")


def work_dir(out: str | Path, label: str, parent_run_id: str, *inputs: Any) -> Path:
    """Where a long step (training, adaptation, generation) writes the output it would write to ``out``.

    On a cluster (``URBANGEN_STEP_WORK`` unset): ``out`` itself. In a local run: a folder under
    ``URBANGEN_STEP_WORK`` named by the step, the pipeline's MLflow parent run and the step's inputs, with
    ``out`` a link to it. A task that dies part-way and runs again under ``--resume`` has the same parent
    run (the start-tracking task is reused) and the same inputs, so it finds its folder and the step goes
    on from its own checkpoints instead of starting over. A fresh run has a new parent run: new folders.
    """
    root = os.environ.get("URBANGEN_STEP_WORK")
    out = Path(out)
    if not root:
        return out
    key = hashlib.sha256(json.dumps([label, parent_run_id, *map(str, inputs)]).encode()).hexdigest()[:WORK_KEY_LENGTH]
    work = Path(root).resolve() / f"{label}-{key}"
    work.mkdir(parents=True, exist_ok=True)
    if out.is_dir() and not out.is_symlink():
        if any(out.iterdir()):
            raise UrbangenError(f"{out}: expected an empty output folder for step {label}, found files")
        out.rmdir()
    out.parent.mkdir(parents=True, exist_ok=True)
    # relative, so the workspace can move or be copied whole
    out.symlink_to(os.path.relpath(work, out.parent.resolve()), target_is_directory=True)
    return work


def _source(root: str | Path, split: str | None = "train"):
    from urbangen.segment.data import DataSource

    return DataSource(format="cityscapes", root=Path(root), split=split)


def _store_dataset(cfg: PipelineConfig, run: Any, name: str, root: Path, context: str) -> dict[str, str]:
    """Log the dataset as an MLflow input and keep an immutable copy in the dataset store."""
    digest = run.log_dataset(name, root, context=context)
    info = {"digest": digest}
    if cfg.dataset_store:
        from urbangen.storage import open_store

        store = open_store()
        version = digest[:12]
        if not store.exists(name, version):
            store.push(root, name, version)
        info["uri"] = store.uri(name, version)
    return info


# ---------------------------------------------------------------------------------------------- tracking
def log_kfp_metrics(artifact: Any, values: dict[str, Any]) -> None:
    """The numbers of ``values`` as KFP metrics (shown in the Kubeflow UI), also written as JSON to the
    artefact's path: an output artefact with no file counts as lost for kfp.local's task cache (--resume)."""
    numbers = {k: float(v) for k, v in values.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}
    for key, value in numbers.items():
        artifact.log_metric(key, value)
    write_json_atomic(artifact.path, numbers)


def start_tracking(config: dict[str, Any]) -> str:
    """Create the parent run of this pipeline run (left open; ``register_models`` ends it)."""
    cfg = load(config)
    run = tracker(cfg).start_run(cfg.name, config=cfg.model_dump(mode="json"), tags={"urbangen.scale": cfg.scale})
    return run.run_id


# ---------------------------------------------------------------------------------------------- data
def make_dataset(config: dict[str, Any], role: str, out: str | Path, parent_run_id: str) -> dict[str, Any]:
    """Write the ``role`` dataset ('source', 'target' or 'val') into ``out`` (Cityscapes layout)."""
    cfg = load(config)
    if role not in ROLE_SPLIT:
        raise UrbangenError(f"unknown data role {role!r}; expected one of {sorted(ROLE_SPLIT)}")
    spec = getattr(cfg, role)
    out = Path(out)
    split = ROLE_SPLIT[role]
    with step_run(cfg, parent_run_id, f"data-{role}", spec.model_dump(mode="json")) as run:
        n = len(make_world(cfg, role, out)) if isinstance(spec, WorldData) else _copy_dataset(spec, out, split)
        run.log_metric("samples", n)
        info = _store_dataset(cfg, run, f"{cfg.name}-{role}", out, "training" if role != "val" else "evaluation")
    return {"role": role, "samples": n, **info}


def world_settings(cfg: PipelineConfig, role: str) -> dict[str, Any]:
    """How the ``role`` world of ``cfg`` is made (its ``source``/``target``/``val`` must be a world): the same
    scenes wherever it runs, from the run's seeds."""
    spec = getattr(cfg, role)
    if not isinstance(spec, WorldData):
        raise UrbangenError(f"{role}: not a world dataset ({spec.kind})")
    return {
        "split": ROLE_SPLIT[role],
        "n": spec.n,
        "seed": cfg.seed + ROLE_SEED_OFFSET[role],
        "style": spec.style,
        "style_seed": cfg.style_seed,
        "size": tuple(cfg.size),
        "city": f"{role}{cfg.seed}",
    }


def make_world(cfg: PipelineConfig, role: str, out: str | Path, progress: bool = True) -> list[str]:
    """The ``role`` world dataset of ``cfg`` into ``out`` (:func:`world_settings`). Returns the sample ids."""
    from urbangen.world import make_dataset as make_world_dataset

    return make_world_dataset(out, **world_settings(cfg, role), progress=progress)


def _copy_dataset(spec: FolderData, out: Path, split: str) -> int:
    """Standardise a user dataset into the artefact folder (images + trainIds); unlabelled -> all ignore."""
    import numpy as np

    from urbangen.datasets import open_dataset
    from urbangen.datasets.writer import DatasetWriter
    from urbangen.io import read_rgb

    reader = open_dataset(spec.format, spec.root)
    samples = reader.index(spec.split).samples
    samples = [s for s in samples if s.image is not None][: spec.limit]
    if not samples:
        raise UrbangenError(f"{spec.format} dataset {spec.root} (split {spec.split}) has no images")
    writer = DatasetWriter(out, split=split, city="data")
    done = writer.completed()
    for sample in samples:
        sample_id = sample.id if "_" in sample.id else f"data_{sample.id}"
        if sample_id in done:
            continue
        image = read_rgb(sample.image)
        ids = reader.load_train_ids(sample) if sample.label else np.full(image.shape[:2], 255, np.uint8)
        writer.write(
            sample_id,
            image,
            ids,
            {"source": str(spec.root), "source_id": sample.id, "labelled": sample.label is not None},
        )
    return len(samples)


# ---------------------------------------------------------------------------------------------- segmentation
def model_folders(path: str | Path) -> list[Path]:
    """The trained model folders of a segmenter artefact, one per training seed."""
    folders = sorted(Path(path).glob("seed-*/model"))
    if not folders:
        raise UrbangenError(f"{path} holds no trained segmenter (expected seed-<k>/model)")
    return folders


def train_segmenter(
    config: dict[str, Any],
    method: str,
    train_dir: str | Path,
    out: str | Path,
    parent_run_id: str,
) -> dict[str, Any]:
    """Train one segmenter per training seed on ``train_dir``."""
    from urbangen.segment.train import TrainConfig, side_by_side, train_seeds

    cfg = load(config)
    sources = [_source(train_dir, "train")]
    out = work_dir(out, f"train-{method}", parent_run_id, train_dir)
    seeds = cfg.train_seeds
    train_cfg = validate(
        TrainConfig, {"sources": [s.model_dump() for s in sources], **cfg.segment}, "pipeline config: segment"
    )
    # side-by-side seeds round differently from seeds trained alone: the layout is part of the record
    at_once, threads = side_by_side(train_cfg, len(seeds), cfg.train_parallel)
    params = {**cfg.segment, "seeds_at_once": at_once, "threads_each": threads or "auto"}
    with step_run(cfg, parent_run_id, f"train-{method}", params) as run:
        loggers = {seed: _logger(run, f"seed{seed}/") for seed in seeds}
        models = train_seeds(
            train_cfg, seeds, out, on_log=lambda seed, record: loggers[seed](record), parallel=cfg.train_parallel
        )
        run.log_model(models[-1], "segmenter", kind="segmenter")
    return {"method": method, "seeds": list(seeds)}


def pseudo_label(
    config: dict[str, Any],
    segmenter: str | Path,
    target_dir: str | Path,
    out: str | Path,
    parent_run_id: str,
    source_dir: str | Path | None = None,
) -> dict[str, Any]:
    """Confidence-thresholded pseudo-labels of the target training images; with ``pseudo_label.spatial_prior``
    the source's class layout (``source_dir``) weighs the segmenter's softmax (CBST-SP)."""
    cfg = load(config)
    with step_run(cfg, parent_run_id, "pseudo-label", cfg.pseudo_label.model_dump()) as run:
        summary = label_target(cfg, model_folders(segmenter)[0], target_dir, out, source_dir)
        numbers = {k: float(v) for k, v in summary.items() if isinstance(v, (int, float))}
        run.log_metrics(numbers)
        run.log_artifact(Path(out) / "summary.json")
    return numbers


def label_target(
    cfg: PipelineConfig, segmenter_dir: Path, target_dir: str | Path, out: str | Path, source_dir: str | Path | None
) -> dict[str, Any]:
    """Pseudo-label the target train images with the config's options (the source's layout as the spatial
    prior when ``pseudo_label.spatial_prior``); the step's work, also what the benchmarks call."""
    from urbangen.segment.pseudo import pseudo_label as run_pseudo_label

    options = cfg.pseudo_label.model_dump(exclude={"spatial_prior"})
    prior = None
    if cfg.pseudo_label.spatial_prior:
        if source_dir is None:
            raise UrbangenError("pipeline config: pseudo_label.spatial_prior needs the labelled source dataset")
        prior = _source(source_dir, "train")
    return run_pseudo_label(segmenter_dir, _source(target_dir, "train"), out, spatial_prior=prior, **options)


def evaluation_device(cfg: PipelineConfig) -> str:
    """Where the evaluate step predicts: where the segmenters trained (``segment.device``; auto: CUDA when
    present)."""
    from urbangen.segment.train import resolve_device

    return resolve_device(cfg.segment.get("device", "auto"))


def _evaluate_one(model_dir: Path, val_dir: Path, work: Path, device: str = "cpu") -> dict[str, Any]:
    from urbangen.segment.evaluate import evaluate_source
    from urbangen.segment.predict import predict_dataset

    source = _source(val_dir, "val")
    predict_dataset(model_dir, source, work, device=device)
    return evaluate_source(work, source)


def evaluate(
    config: dict[str, Any], method: str, segmenter: str | Path, val_dir: str | Path, out: str | Path, parent_run_id: str
) -> dict[str, Any]:
    """Score every seed's model on the target validation set; mean (and std over seeds) in result.json."""
    from urbangen.segment.evaluate import write_charts

    cfg = load(config)
    out = Path(out)
    device = evaluation_device(cfg)
    with step_run(cfg, parent_run_id, f"evaluate-{method}") as run:
        results = [
            _evaluate_one(m, Path(val_dir), out / ("pred" if i == 0 else f"pred-{i}"), device)
            for i, m in enumerate(model_folders(segmenter))
        ]
        mious = [r["mIoU"] for r in results]
        summary = dict(results[0])
        summary.update(
            {
                "method": method,
                "mIoU": statistics.fmean(mious),
                "mIoU_std": statistics.stdev(mious) if len(mious) > 1 else None,
                "pixel_accuracy": statistics.fmean(r["pixel_accuracy"] for r in results),
                "per_class": {
                    name: (
                        None
                        if any(r["per_class"][name] is None for r in results)
                        else statistics.fmean(r["per_class"][name] for r in results)
                    )
                    for name in results[0]["per_class"]
                },
                "seeds": results if len(results) > 1 else None,
            }
        )
        write_json_atomic(out / "result.json", summary)
        for chart in write_charts(summary, out / "charts"):
            run.log_artifact(chart, "charts")
        run.log_metrics({"mIoU": summary["mIoU"], "pixel_accuracy": summary["pixel_accuracy"]})
        run.log_metrics({f"iou/{k}": v for k, v in summary["per_class"].items() if v is not None})
        run.tracker.run(parent_run_id).log_metric(f"mIoU/{method}", summary["mIoU"])
    return summary


# ---------------------------------------------------------------------------------------------- FDA
def fda(
    config: dict[str, Any], source_dir: str | Path, target_dir: str | Path, out: str | Path, parent_run_id: str
) -> dict[str, Any]:
    from urbangen.baselines.fda import fda_dataset

    cfg = load(config)
    params = {"seed": cfg.seed, **cfg.fda.model_dump(exclude_none=True)}
    with step_run(cfg, parent_run_id, "fda", params):
        fda_dataset(_source(source_dir, "train"), _source(target_dir, "train"), out, **params)
    return params


# ---------------------------------------------------------------------------------------------- adaptation
def _adapt_config(cfg: PipelineConfig, target_dir: str | Path, labels_dir: str | Path | None, out: Path):
    from urbangen.diffusion.config import AdaptConfig

    data = {
        "seed": cfg.seed,
        **cfg.adapt,
        "target": {"format": "cityscapes", "root": str(target_dir), "split": "train"},
        "labels_dir": str(labels_dir) if labels_dir else None,
        "out": str(out),
    }
    return validate(AdaptConfig, data, "pipeline config: adapt")


def generator_folder(path: str | Path) -> Path:
    """The newest stage folder of a generator artefact (stage2 if present)."""
    for stage in ("stage2", "stage1"):
        if (Path(path) / stage / "urbangen.json").is_file():
            return Path(path) / stage
    raise UrbangenError(f"{path} holds no adapted generator (expected stage1/ or stage2/ with urbangen.json)")


def adapt(
    config: dict[str, Any],
    stage: int,
    target_dir: str | Path,
    labels_dir: str | Path | None,
    stage1_dir: str | Path | None,
    out: str | Path,
    parent_run_id: str,
) -> dict[str, Any]:
    """Stage 1 (appearance) or stage 2 (semantic control) of generator adaptation into ``out/stageN``."""
    from urbangen.diffusion.adapt import run_stage1, run_stage2
    from urbangen.diffusion.artefacts import replace_dir, temp_dir

    cfg = load(config)
    out = work_dir(out, f"adapt-stage{stage}", parent_run_id, target_dir, labels_dir, stage1_dir)
    adapt_cfg = _adapt_config(cfg, target_dir, labels_dir, out)
    with step_run(cfg, parent_run_id, f"adapt-stage{stage}", adapt_cfg.model_dump(mode="json")) as run:
        if stage == 1:
            folder = run_stage1(adapt_cfg, out, _logger(run))
        else:
            if stage1_dir is None:
                raise UrbangenError("stage 2 needs the stage-1 generator")
            if not (out / "stage1").exists():  # copied whole or not at all: a resumed task may find it
                tmp = temp_dir(out / "stage1")
                shutil.copytree(generator_folder(stage1_dir), tmp, dirs_exist_ok=True)
                replace_dir(tmp, out / "stage1")
            folder = run_stage2(adapt_cfg, out, _logger(run))
        meta = json.loads((folder / "urbangen.json").read_text())
        run.log_model(folder, f"generator-stage{stage}", kind="generator")
    return {"stage": stage, "resolution": list(meta.get("resolution", []))}


# ---------------------------------------------------------------------------------------------- generation
def _generate_config(
    cfg: PipelineConfig,
    generator: str | Path,
    source_dir: str | Path,
    out: str | Path,
    segmenter: str | Path | None = None,
    **changes: Any,
):
    from urbangen.generate.config import GenerateConfig

    data = {
        "seed": cfg.seed,
        **cfg.generate,
        "source": {"format": "cityscapes", "root": str(source_dir), "split": "train"},
        "generator": str(generator_folder(generator)),
        "out": str(out),
        "segmenter": str(model_folders(segmenter)[0]) if segmenter else None,
        **changes,
    }
    return validate(GenerateConfig, data, "pipeline config: generate")


def generate_shard(
    config: dict[str, Any],
    generator: str | Path,
    source_dir: str | Path,
    shard_index: int,
    num_shards: int,
    out: str | Path,
    parent_run_id: str,
) -> dict[str, Any]:
    """Render K candidates for shard ``shard_index`` of ``num_shards`` into ``out``."""
    from urbangen.generate.run import generate_candidates

    cfg = load(config)
    name = f"generate-{shard_index}-of-{num_shards}"
    out = work_dir(out, name, parent_run_id, generator, source_dir)
    gen_cfg = _generate_config(cfg, generator, source_dir, out)
    with step_run(cfg, parent_run_id, name, gen_cfg.model_dump(mode="json")) as run:
        summary = generate_candidates(gen_cfg, (shard_index, num_shards), out_dir=out, on_log=_logger(run))
        run.log_metrics({k: float(v) for k, v in summary.items() if isinstance(v, (int, float))})
    return {k: v for k, v in summary.items() if isinstance(v, (int, float, str))}


def filter_rectify(
    config: dict[str, Any],
    shard_dirs: list[str],
    generator: str | Path,
    source_dir: str | Path,
    segmenter: str | Path,
    labels: str | Path | None,
    generated: str | Path,
    unfiltered: str | Path,
    parent_run_id: str,
) -> dict[str, Any]:
    """Merge shards, then write the MCOC-filtered + rectified dataset and the unfiltered variant.

    ``labels``: the pseudo-labels ``segmenter`` made; scoring weighs its posterior as they were made."""
    from urbangen.generate.filtering import filter_and_rectify
    from urbangen.generate.merge import merge_shards

    cfg = load(config)
    work = Path(generated).parent / "work"
    with step_run(cfg, parent_run_id, "filter-rectify", cfg.generate) as run:
        merge_shards(shard_dirs, work / "candidates")
        full = _generate_config(cfg, generator, source_dir, work, segmenter, pseudo_labels=labels)
        summary = filter_and_rectify(full, work / "candidates", generated, on_log=_logger(run))
        if not summary["kept"]:
            raise UrbangenError(
                f"MCOC filtering dropped all {summary['samples']} label maps (best MCOC mean "
                f"{summary['mean_best_mcoc']}, threshold {full.mcoc.threshold}): lower generate.mcoc.threshold "
                "or check the generator and the judging segmenter"
            )
        plain = full.model_copy(update={"filter": False, "rectify": full.rectify.model_copy(update={"enabled": False})})
        filter_and_rectify(plain, work / "candidates", unfiltered)
        numbers = {k: float(v) for k, v in summary.items() if isinstance(v, (int, float))}
        run.log_metrics(numbers)
        for preview in Path(generated).glob("*.png"):
            run.log_artifact(preview, "previews")
        _store_dataset(cfg, run, f"{cfg.name}-generated", Path(generated), "training")
    return numbers


# ---------------------------------------------------------------------------------------------- report
def step_timings(cfg: PipelineConfig, parent_run_id: str) -> dict[str, float]:
    """Seconds per step, from the start and end times of the parent's finished nested MLflow runs (a step
    that failed and ran again after ``--resume`` counts its finished run). A step that runs once per
    pseudo-labelling round (the same name again) is listed as ``name (round N)`` from its second run on."""
    client = tracker(cfg).client
    runs = client.search_runs(
        [client.get_run(parent_run_id).info.experiment_id],
        filter_string=f"tags.mlflow.parentRunId = '{parent_run_id}'",
        max_results=1000,
    )
    timings: dict[str, float] = {}
    seen: dict[str, int] = {}
    for run in sorted(runs, key=lambda r: r.info.start_time):
        if run.info.end_time and run.info.status == "FINISHED":
            name = run.info.run_name
            seen[name] = seen.get(name, 0) + 1
            key = name if seen[name] == 1 else f"{name} (round {seen[name]})"
            timings[key] = (run.info.end_time - run.info.start_time) / 1000
    return timings


def _examples(generated: Path, source: Path, fda_dir: Path, target: Path, work: Path, n: int) -> list[dict]:
    """Image rows for the report: source label | sim | FDA | candidates (MCOC) | rectified | prediction | target."""
    from urbangen.datasets import open_dataset
    from urbangen.datasets.writer import read_manifest
    from urbangen.io import write_png

    source_reader = open_dataset("cityscapes", source)
    source_samples = {s.id: s for s in source_reader.index("train").samples}
    fda_images = {s.id: s.image for s in open_dataset("cityscapes", fda_dir).index("train").samples}
    target_images = [s.image for s in open_dataset("cityscapes", target).index("train").samples]
    gen_samples = {s.id: s for s in open_dataset("cityscapes", generated).index("train").samples}
    summary = json.loads((generated / "summary.json").read_text()) if (generated / "summary.json").is_file() else {}
    candidates = Path(summary.get("candidates_dir", generated.parent / "work" / "candidates"))
    rows = []
    for i, record in enumerate(read_manifest(generated)[:n]):
        sid = record.get("source_id", record["id"])
        sample = source_samples.get(sid)
        if sample is None:
            continue
        label_png = work / f"{sid}_source_label.png"
        write_png(label_png, source_reader.load_train_ids(sample))
        columns = {
            "source label": {"path": str(label_png), "kind": "label"},
            "sim render": {"path": str(sample.image)},
            "FDA": {"path": str(fda_images.get(sid, ""))},
        }
        for cand in record.get("candidates", []):
            mcoc, raw = cand.get("mcoc"), cand.get("raw_mcoc")
            chosen = " (kept)" if cand["k"] == record.get("candidate") else ""
            caption = "MCOC n/a" if mcoc is None else f"MCOC {mcoc:.2f}"
            if raw is not None and raw != mcoc:  # class-relative score: show the raw one too
                caption += f" (raw {raw:.2f})"
            columns[f"candidate {cand['k']}"] = {
                "path": str(candidates / "samples" / sid / f"candidate_{cand['k']}.png"),
                "caption": caption + chosen,
            }
        gen = gen_samples.get(record["id"])
        columns["rectified label"] = {"path": str(gen.label) if gen else "", "kind": "label"}
        columns["prediction"] = {"path": str(generated / "filter" / "pred" / f"{sid}.png"), "kind": "label"}
        columns["target example"] = {"path": str(target_images[i % len(target_images)])}
        rows.append({"id": sid, "columns": columns})
    return rows


def report(
    config: dict[str, Any],
    evaluations: dict[str, str],
    generated: str | Path,
    source: str | Path,
    fda_dir: str | Path,
    target: str | Path,
    page: str | Path,
    results_path: str | Path,
    summary_path: str | Path,
    parent_run_id: str,
) -> dict[str, Any]:
    """results.json, the HTML report and a Markdown summary (for the Kubeflow UI); logged to the parent run."""
    from urbangen.io import write_text_atomic
    from urbangen.labels import cityscapes19
    from urbangen.report import markdown_table, write_report

    cfg = load(config)
    methods = {}
    for method, folder in evaluations.items():
        result = json.loads((Path(folder) / "result.json").read_text())
        methods[method] = {k: result.get(k) for k in ("mIoU", "mIoU_std", "per_class", "pixel_accuracy", "n_images")}
    generated = Path(generated)
    gen_summary = json.loads((generated / "summary.json").read_text()) if (generated / "summary.json").is_file() else {}
    results = {
        "methods": methods,
        "scale": cfg.scale,
        "seed": cfg.seed,
        "style_seed": cfg.style_seed,
        "train_seeds": cfg.train_seeds,
        "pseudo_label_rounds": cfg.pseudo_label_rounds,
        "size": list(cfg.size),
        "target": cfg.target.model_dump(mode="json"),
        "generation": {
            k: gen_summary.get(k)
            for k in ("samples", "kept", "dropped", "mean_best_mcoc", "mean_kept_mcoc", "rectified_pixels")
        },
        "timings": step_timings(cfg, parent_run_id),
        "mlflow_run_id": parent_run_id,
        "taxonomy": cityscapes19().to_dict(),
    }
    work = Path(page).parent / "report-images"
    work.mkdir(parents=True, exist_ok=True)
    examples = _examples(generated, Path(source), Path(fda_dir), Path(target), work, n=4)
    write_json_atomic(results_path, results, sort_keys=False)  # methods and timings in the pipeline's order
    write_report(results, page, examples)
    write_text_atomic(summary_path, markdown_table(methods))
    parent = tracker(cfg).run(parent_run_id)
    parent.log_artifact(page, "report")
    parent.log_artifact(results_path, "report")
    return results


def register_models(
    config: dict[str, Any], generator: str | Path, segmenter: str | Path, result: str | Path, parent_run_id: str
) -> dict[str, str]:
    """Register the generator and the urbangen-trained segmenter (alias ``candidate``) and end the parent run.

    A model also becomes ``champion`` when its mIoU beats the current champion's (recorded as a tag).
    """
    cfg = load(config)
    miou = json.loads((Path(result) / "result.json").read_text())["mIoU"]
    track = tracker(cfg)
    parent = track.run(parent_run_id)
    versions = {}
    for kind, folder in (("generator", generator_folder(generator)), ("segmenter", model_folders(segmenter)[0])):
        name = f"{cfg.name}-{kind}"
        parent.log_model(folder, kind, kind=kind)
        version = track.register_model(parent_run_id, kind, name, aliases=["candidate"])
        track.client.set_model_version_tag(name, version, "mIoU", f"{miou:.4f}")
        try:
            champion = track.client.get_model_version_by_alias(name, "champion")
            best = float(champion.tags.get("mIoU", "-inf"))
        except Exception:  # no champion yet
            best = float("-inf")
        if miou > best:
            track.set_alias(name, "champion", version)
        versions[name] = str(version)
    track.end_run(parent_run_id)
    return versions
