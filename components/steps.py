"""One component per pipeline step. Bodies only unpack artifacts and call :mod:`urbangen.steps`."""

from kfp.dsl import HTML, Artifact, Dataset, Input, Markdown, Metrics, Model, Output

from urbangen.components import component


@component
def start_tracking(config: dict, run: Output[Artifact]) -> str:
    """Open the MLflow parent run of this pipeline run; every later step logs a nested run under it.

    The run id is returned and also written to the ``run`` artefact: kfp.local (2.17) hands tasks inside a
    ParallelFor the loop item in place of an outer task's output parameter, so loop bodies read the
    artefact instead.
    """
    from urbangen import steps

    run_id = steps.start_tracking(config)
    with open(run.path, "w") as handle:
        handle.write(run_id)
    run.metadata["run_id"] = run_id
    return run_id


@component
def make_dataset(config: dict, role: str, parent_run_id: str, data: Output[Dataset]):
    """Ingest one dataset ('source', 'target' or 'val'): built-in world scenes or a user dataset."""
    from urbangen import steps

    data.metadata.update(steps.make_dataset(config, role, data.path, parent_run_id))


@component
def train_segmenter(
    config: dict,
    method: str,
    parent_run_id: str,
    train_data: Input[Dataset],
    val: Input[Dataset],
    model: Output[Model],
    result: Output[Artifact],
    metrics: Output[Metrics],
):
    """Train a segmenter for one method ('source_only', 'fda', 'urbangen', 'oracle', ...) and score it on the
    target validation set (official Cityscapes semantics). One task for both: a task of its own for the
    scoring cost more start-up (a fresh process importing torch, transformers, MLflow) than the scoring."""
    from urbangen import steps

    model.metadata.update(
        steps.train_segmenter(
            config,
            method,
            train_data.path,
            model.path,
            parent_run_id,
        )
    )
    summary = steps.evaluate(config, method, model.path, val.path, result.path, parent_run_id)
    steps.log_kfp_metrics(metrics, {k: summary[k] for k in ("mIoU", "pixel_accuracy")})


@component
def pseudo_label(
    config: dict,
    parent_run_id: str,
    segmenter: Input[Model],
    target: Input[Dataset],
    source: Input[Dataset],
    labels: Output[Dataset],
):
    """Confidence-thresholded pseudo-labels for the unlabelled target images (the labelled source gives the
    class spatial prior when the config asks for one)."""
    from urbangen import steps

    labels.metadata.update(
        steps.pseudo_label(config, segmenter.path, target.path, labels.path, parent_run_id, source_dir=source.path)
    )


@component
def adapt_stage1(config: dict, parent_run_id: str, target: Input[Dataset], generator: Output[Model]):
    """Stage 1: align the denoiser's appearance prior with the target images."""
    from urbangen import steps

    generator.metadata.update(steps.adapt(config, 1, target.path, None, None, generator.path, parent_run_id))


@component
def adapt_stage2(
    config: dict,
    parent_run_id: str,
    target: Input[Dataset],
    labels: Input[Dataset],
    stage1: Input[Model],
    generator: Output[Model],
):
    """Stage 2: train the semantic control branch on (target image, eroded pseudo-label) pairs."""
    from urbangen import steps

    generator.metadata.update(
        steps.adapt(config, 2, target.path, labels.path, stage1.path, generator.path, parent_run_id)
    )


@component
def generate_shard(
    config: dict,
    tracking_run: Input[Artifact],
    shard_index: int,
    num_shards: int,
    generator: Input[Model],
    source: Input[Dataset],
    candidates: Output[Dataset],
):
    """Render K candidates for one deterministic shard of the source label maps."""
    from urbangen import steps

    with open(tracking_run.path) as handle:
        parent_run_id = handle.read().strip()
    candidates.metadata.update(
        steps.generate_shard(
            config, generator.path, source.path, int(shard_index), int(num_shards), candidates.path, parent_run_id
        )
    )


@component
def filter_rectify(
    config: dict,
    parent_run_id: str,
    shards: Input[list[Dataset]],
    generator: Input[Model],
    source: Input[Dataset],
    segmenter: Input[Model],
    labels: Input[Dataset],
    generated: Output[Dataset],
    unfiltered: Output[Dataset],
    metrics: Output[Metrics],
):
    """Merge shards, keep the best candidate per map by MCOC (scored as the segmenter made ``labels``),
    rectify labels; also the unfiltered variant."""
    from urbangen import steps

    summary = steps.filter_rectify(
        config,
        [s.path for s in shards],
        generator.path,
        source.path,
        segmenter.path,
        labels.path,
        generated.path,
        unfiltered.path,
        parent_run_id,
    )
    steps.log_kfp_metrics(metrics, summary)


@component
def fda_translate(
    config: dict, parent_run_id: str, source: Input[Dataset], target: Input[Dataset], translated: Output[Dataset]
):
    """FDA baseline: source images with the target's low-frequency amplitude spectrum."""
    from urbangen import steps

    translated.metadata.update(steps.fda(config, source.path, target.path, translated.path, parent_run_id))


@component
def report(
    config: dict,
    parent_run_id: str,
    source_only: Input[Artifact],
    fda: Input[Artifact],
    urbangen_nofilter: Input[Artifact],
    urbangen: Input[Artifact],
    generated: Input[Dataset],
    source: Input[Dataset],
    translated: Input[Dataset],
    target: Input[Dataset],
    page: Output[HTML],
    results_json: Output[Artifact],
    summary: Output[Markdown],
    oracle: Input[Artifact] = None,
):
    """Results table, per-class chart and image rows as one HTML page; results.json; MLflow artefacts."""
    from urbangen import steps

    evaluations = {
        "source_only": source_only,
        "fda": fda,
        "urbangen_nofilter": urbangen_nofilter,
        "urbangen": urbangen,
        "oracle": oracle,
    }
    paths = {method: a.path for method, a in evaluations.items() if a is not None}
    steps.report(
        config,
        paths,
        generated.path,
        source.path,
        translated.path,
        target.path,
        page.path,
        results_json.path,
        summary.path,
        parent_run_id,
    )


@component
def register_models(
    config: dict, parent_run_id: str, generator: Input[Model], segmenter: Input[Model], result: Input[Artifact]
):
    """Register the generator and the target segmenter in the MLflow Model Registry (alias 'candidate')."""
    from urbangen import steps

    steps.register_models(config, generator.path, segmenter.path, result.path, parent_run_id)
