"""The whole method as one Kubeflow pipeline (the same DAG runs on a cluster and through kfp.local).

    make source/target/val ─► train source segmenter ─► pseudo-label target ─► adapt stage 1 ─► stage 2
    ─► generate (ParallelFor over shards) ─► filter + rectify ─► train + evaluate every method ─► report
    ─► register models

Structure that depends on the config (number of shards, which steps get a GPU) is fixed when the
pipeline is built; everything else travels as the ``config`` parameter, editable in the Kubeflow UI.
"""

import hashlib
from pathlib import Path
from typing import Any, NamedTuple

from kfp import dsl, kubernetes
from kfp.dsl import HTML, Artifact

from urbangen.components import steps as c
from urbangen.pipeline_config import PipelineConfig, ResourceConfig


class Outputs(NamedTuple):
    """What a pipeline run returns: the report page and results.json."""

    report: HTML
    results: Artifact


def code_digest() -> str:
    """sha256 (16 hex digits) of the Python sources the tasks run: urbangen with its components and pipelines."""
    import urbangen
    import urbangen.components
    import urbangen.pipelines

    files: dict[Path, str] = {}  # an installed wheel nests components/ and pipelines/ inside urbangen/
    for package in (urbangen, urbangen.components, urbangen.pipelines):
        root = Path(package.__file__).parent
        for path in root.rglob("*.py"):
            files.setdefault(path.resolve(), f"{package.__name__}/{path.relative_to(root).as_posix()}")
    digest = hashlib.sha256()
    for path, name in sorted(files.items(), key=lambda item: item[1]):
        digest.update(f"{name}\0".encode() + path.read_bytes())
    return digest.hexdigest()[:16]


GPU_STEPS = {
    "train_segmenter",
    "pseudo_label",
    "adapt_stage1",
    "adapt_stage2",
    "generate_shard",
    "filter_rectify",
}


def _resources(task: dsl.PipelineTask, step: str, res: ResourceConfig, code: str | None) -> dsl.PipelineTask:
    """Requests, GPU, node placement, shared memory and credentials for one task; ``code``: the code
    digest that cached tasks carry (so a kfp.local cache entry never outlives the code that made it)."""
    task.set_cpu_request(res.cpu_request).set_memory_request(res.memory_request)
    task.set_caching_options(code is not None)
    if code is not None:
        # kfp.local's cache key covers the task's environment, not the urbangen package it runs (the KFP
        # server's key leaves the environment out: on a cluster the image tag must change with the code)
        task.set_env_variable("URBANGEN_CODE_DIGEST", code)
    if res.gpu and step in GPU_STEPS:
        task.set_accelerator_type(res.accelerator_type).set_accelerator_limit(res.gpus_per_task)
        task.set_memory_limit(res.gpu_memory_limit)
        for key, value in res.node_selector.items():
            kubernetes.add_node_selector(task, label_key=key, label_value=value)
        for toleration in res.tolerations:
            kubernetes.add_toleration(task, **toleration)
        kubernetes.empty_dir_mount(
            task, volume_name="dshm", mount_path="/dev/shm", medium="Memory", size_limit=res.shm_size
        )
    if res.secrets:
        kubernetes.use_secret_as_env(
            task,
            secret_name=res.s3_secret,
            # key names as KServe's storage-initializer requires (manifests/components/secrets-from-env)
            secret_key_to_env={
                "AWS_ACCESS_KEY_ID": "AWS_ACCESS_KEY_ID",
                "AWS_SECRET_ACCESS_KEY": "AWS_SECRET_ACCESS_KEY",
            },
        )
        kubernetes.use_config_map_as_env(
            task,
            config_map_name=res.endpoints_config_map,
            config_map_key_to_env={
                "mlflow_tracking_uri": "MLFLOW_TRACKING_URI",
                "s3_endpoint": "URBANGEN_S3_ENDPOINT",
                "mlflow_s3_endpoint_url": "MLFLOW_S3_ENDPOINT_URL",
                "s3_bucket": "URBANGEN_S3_BUCKET",
            },
        )
    task.set_display_name(step.replace("_", " "))
    return task


def build_pipeline(cfg: PipelineConfig, caching: bool | None = None):
    """Return the @dsl.pipeline function for ``cfg`` (its values become the ``config`` parameter default).

    ``caching`` (default ``cfg.resources.caching``): let KFP reuse a task's outputs when the task, its
    inputs, its config and the urbangen code are unchanged (local runs use it to resume)."""
    res = cfg.resources
    shards = list(range(cfg.generate_shards))
    code = code_digest() if (res.caching if caching is None else caching) else None

    def step(task: dsl.PipelineTask, name: str) -> dsl.PipelineTask:
        return _resources(task, name, res, code)

    @dsl.pipeline(
        name="urbangen",
        description="Adapt a diffusion model to a target domain, generate and "
        "filter training data, and evaluate segmenters on the real target.",
    )
    def urbangen(config: dict = cfg.parameter()) -> Outputs:
        run = step(c.start_tracking(config=config), "start_tracking")
        run_id = run.outputs["Output"]
        data = {}
        for role in ("source", "target", "val"):
            data[role] = step(c.make_dataset(config=config, role=role, parent_run_id=run_id), "make_dataset")
            data[role].set_display_name(f"{role} data")
        source, target, val = (data[r].outputs["data"] for r in ("source", "target", "val"))

        def train(method: str, train_data: Any) -> dsl.PipelineTask:
            """Train ``method``'s segmenter and score it on the target val set (one task)."""
            task = c.train_segmenter(config=config, method=method, parent_run_id=run_id, train_data=train_data, val=val)
            return step(task, "train_segmenter").set_display_name(f"train + evaluate {method}")

        source_seg = train("source_only", source)
        fda = step(c.fda_translate(config=config, parent_run_id=run_id, source=source, target=target), "fda_translate")
        fda_seg = train("fda", fda.outputs["translated"])
        # the pseudo-labeller (and MCOC judge) is the best source-trained model available: FDA's
        labeller = fda_seg if cfg.pseudo_label_from == "fda" else source_seg
        stage1 = step(c.adapt_stage1(config=config, parent_run_id=run_id, target=target), "adapt_stage1")
        for round_ in range(1, cfg.pseudo_label_rounds + 1):
            # each round: pseudo-label the target with the labeller, adapt stage 2 on those labels, generate,
            # filter and rectify with the labeller as judge; a later round's labeller is the urbangen
            # segmenter of the round before (docs/BENCHMARKS.md "A second round of pseudo-labels")
            suffix = f" (round {round_})" if cfg.pseudo_label_rounds > 1 else ""
            pseudo, stage2, fr = _round(config, run_id, run, step, labeller, stage1, source, target, shards, res)
            for task, name in ((pseudo, "pseudo label"), (stage2, "adapt stage2"), (fr, "filter rectify")):
                task.set_display_name(name + suffix)
            if round_ < cfg.pseudo_label_rounds:
                labeller = train(f"urbangen_round{round_}", fr.outputs["generated"])

        trained = {
            "source_only": source_seg,
            "fda": fda_seg,
            "urbangen_nofilter": train("urbangen_nofilter", fr.outputs["unfiltered"]),
            "urbangen": train("urbangen", fr.outputs["generated"]),
        }
        if cfg.oracle:
            trained["oracle"] = train("oracle", target)
        results = {method: task.outputs["result"] for method, task in trained.items()}
        rep = step(
            c.report(
                config=config,
                parent_run_id=run_id,
                generated=fr.outputs["generated"],
                source=source,
                translated=fda.outputs["translated"],
                target=target,
                **results,
            ),
            "report",
        )
        step(
            c.register_models(
                config=config,
                parent_run_id=run_id,
                generator=stage2.outputs["generator"],
                segmenter=trained["urbangen"].outputs["model"],
                result=results["urbangen"],
            ),
            "register_models",
        ).after(rep)
        return Outputs(report=rep.outputs["page"], results=rep.outputs["results_json"])

    return urbangen


def _round(config, run_id, run, step, labeller, stage1, source, target, shards, res):
    """One pseudo-labelling round's tasks: pseudo-labels, stage-2 adaptation, generation shards, filter."""
    pseudo = step(
        c.pseudo_label(
            config=config, parent_run_id=run_id, segmenter=labeller.outputs["model"], target=target, source=source
        ),
        "pseudo_label",
    )
    stage2 = step(
        c.adapt_stage2(
            config=config,
            parent_run_id=run_id,
            target=target,
            labels=pseudo.outputs["labels"],
            stage1=stage1.outputs["generator"],
        ),
        "adapt_stage2",
    )
    with dsl.ParallelFor(items=shards, parallelism=res.generate_parallelism) as shard:
        gen = step(
            c.generate_shard(
                config=config,
                tracking_run=run.outputs["run"],
                shard_index=shard,
                num_shards=len(shards),
                generator=stage2.outputs["generator"],
                source=source,
            ),
            "generate_shard",
        )
    fr = step(
        c.filter_rectify(
            config=config,
            parent_run_id=run_id,
            shards=dsl.Collected(gen.outputs["candidates"]),
            generator=stage2.outputs["generator"],
            source=source,
            segmenter=labeller.outputs["model"],
            labels=pseudo.outputs["labels"],
        ),
        "filter_rectify",
    )
    return pseudo, stage2, fr
