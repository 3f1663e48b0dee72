"""The Kubeflow pipeline compiles with one task per step, a ParallelFor over shards, GPU settings on the
GPU steps and credentials from Kubernetes Secrets; configs are strict; submit drives the KFP client."""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar

import pytest
import yaml
from click.testing import CliRunner

from urbangen.cli import main
from urbangen.errors import UrbangenError
from urbangen.pipeline_cli import compile_pipeline, submit
from urbangen.pipeline_config import load_pipeline_config, preset

STEPS = {
    "start-tracking",
    "make-dataset",
    "train-segmenter",
    "pseudo-label",
    "adapt-stage1",
    "adapt-stage2",
    "generate-shard",
    "filter-rectify",
    "fda-translate",
    "report",
    "register-models",
}


@pytest.fixture(scope="module")
def compiled(tmp_path_factory):
    path = tmp_path_factory.mktemp("kfp") / "pipeline.yaml"
    compile_pipeline(preset("demo", generate_shards=3), path)  # as a cluster run would shard generation
    spec, platform = yaml.safe_load_all(path.read_text())
    return spec, platform["platforms"]["kubernetes"]["deploymentSpec"]["executors"]


def _base(name: str) -> str:
    head, _, tail = name.rpartition("-")
    return head if tail.isdigit() else name


def _producer(task: dict, artifact: str) -> str:
    return task["inputs"]["artifacts"][artifact]["taskOutputArtifact"]["producerTask"]


def _method(task: dict) -> str | None:
    return task["inputs"]["parameters"].get("method", {}).get("runtimeValue", {}).get("constant")


def test_one_task_per_step_and_parallel_for(compiled):
    spec, _ = compiled
    tasks = spec["root"]["dag"]["tasks"]
    loop = tasks["for-loop-2"]
    assert loop["parameterIterator"]["items"]["raw"] == "[0, 1, 2]"
    inner = spec["components"][loop["componentRef"]["name"]]["dag"]["tasks"]
    names = {_base(t) for t in tasks} | {_base(t) for t in inner}
    assert names >= STEPS
    # five methods trained and scored on val in the same task (source-only and FDA reused for pseudo-labels),
    # and the first round's urbangen segmenter that labels the second round
    trains = {_method(task): name for name, task in tasks.items() if _base(name) == "train-segmenter"}
    assert set(trains) == {"source_only", "fda", "urbangen_round1", "urbangen_nofilter", "urbangen", "oracle"}
    assert not any(_base(t) == "evaluate" for t in tasks)
    assert all(_producer(tasks[name], "val") == "make-dataset-3" for name in trains.values())


def test_each_round_is_labelled_and_judged_by_the_round_before(compiled):
    """Round 1: FDA's segmenter labels the target and judges the candidates; round 2: round 1's urbangen
    segmenter does both; the methods train on the last round's data. MCOC is scored by the labeller as it
    labelled (its prior and class weights: the labels' folder)."""
    spec, _ = compiled
    tasks = spec["root"]["dag"]["tasks"]
    trains = {_method(task): name for name, task in tasks.items() if _base(name) == "train-segmenter"}
    pseudo = sorted((n for n in tasks if _base(n) == "pseudo-label"), key=len)
    judges = sorted((n for n in tasks if _base(n) == "filter-rectify"), key=len)
    assert len(pseudo) == len(judges) == 2 and sum(_base(n) == "adapt-stage2" for n in tasks) == 2
    for labeller, labels, judge in zip((trains["fda"], trains["urbangen_round1"]), pseudo, judges, strict=True):
        assert _producer(tasks[labels], "segmenter") == labeller == _producer(tasks[judge], "segmenter")
        assert _producer(tasks[judge], "labels") == labels
        stage2 = _producer(tasks[judge], "generator")
        assert _producer(tasks[stage2], "labels") == labels
    assert _producer(tasks[trains["urbangen_round1"]], "train_data") == judges[0]
    for method in ("urbangen", "urbangen_nofilter"):
        assert _producer(tasks[trains[method]], "train_data") == judges[1]
    assert _producer(tasks["register-models"], "generator") == _producer(tasks[judges[1]], "generator")


def test_one_round_compiles_without_a_second(tmp_path):
    path = compile_pipeline(preset("demo", pseudo_label_rounds=1), tmp_path / "one.yaml")
    tasks = next(yaml.safe_load_all(path.read_text()))["root"]["dag"]["tasks"]
    assert sum(_base(n) == "pseudo-label" for n in tasks) == 1
    assert sum(_base(n) == "train-segmenter" for n in tasks) == 5


def test_gpu_steps_ask_for_accelerators_and_cpu_steps_do_not(compiled):
    spec, platform = compiled
    executors = spec["deploymentSpec"]["executors"]
    resources = {name: ex["container"].get("resources", {}) for name, ex in executors.items()}
    assert resources["exec-adapt-stage2"]["accelerator"]["resourceType"] == "nvidia.com/gpu"
    assert resources["exec-generate-shard"]["accelerator"]["resourceCount"] == "1"
    assert "accelerator" not in resources["exec-make-dataset"]
    assert "accelerator" not in resources["exec-report"]
    gen = platform["exec-generate-shard"]
    assert gen["nodeSelector"]["labels"] == {"nvidia.com/gpu.present": "true"}
    assert gen["tolerations"][0]["key"] == "nvidia.com/gpu"
    assert gen["emptyDirMounts"][0]["mountPath"] == "/dev/shm"
    assert "nodeSelector" not in platform["exec-make-dataset"]


def test_credentials_come_from_secrets_not_parameters(compiled):
    spec, platform = compiled
    for name, executor in platform.items():
        secret = executor["secretAsEnv"][0]
        assert secret["secretName"] == "urbangen-s3", name
        envs = {kv["envVar"] for kv in secret["keyToEnv"]}
        assert envs == {"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"}
    text = yaml.safe_dump(spec)
    assert "secret_key" not in text.lower().replace("secretkey", "")


def test_image_tag_follows_package_version(compiled):
    from urbangen import __version__

    spec, _ = compiled
    images = {ex["container"]["image"] for ex in spec["deploymentSpec"]["executors"].values()}
    assert images == {f"ghcr.io/urbangen/urbangen:{__version__}"}


def test_cached_tasks_carry_the_code_digest(compiled, tmp_path):
    """Caching is off by default; with it on, every task's cache key includes the urbangen code digest."""
    from urbangen.pipelines.urbangen_pipeline import code_digest

    spec, _ = compiled
    tasks = spec["root"]["dag"]["tasks"]
    assert not any(t.get("cachingOptions", {}).get("enableCache") for t in tasks.values())
    executors = spec["deploymentSpec"]["executors"].values()
    assert not any("env" in ex["container"] for ex in executors)

    cfg = preset("demo")
    cfg = cfg.model_copy(update={"resources": cfg.resources.model_copy(update={"caching": True})})
    spec, _ = yaml.safe_load_all(compile_pipeline(cfg, tmp_path / "cached.yaml").read_text())
    steps = {n: t for n, t in spec["root"]["dag"]["tasks"].items() if "componentRef" in t and "for-loop" not in n}
    assert all(t["cachingOptions"]["enableCache"] for t in steps.values())
    digest = code_digest()
    for name, executor in spec["deploymentSpec"]["executors"].items():
        assert {"name": "URBANGEN_CODE_DIGEST", "value": digest} in executor["container"]["env"], name


def test_code_digest_follows_the_sources(tmp_path, monkeypatch):
    import urbangen
    from urbangen.pipelines.urbangen_pipeline import code_digest

    before = code_digest()
    assert before == code_digest() and len(before) == 16
    fake = tmp_path / "urbangen"
    fake.mkdir()
    (fake / "__init__.py").write_text("x = 1\n")
    monkeypatch.setattr(urbangen, "__file__", str(fake / "__init__.py"))
    changed = code_digest()
    (fake / "__init__.py").write_text("x = 2\n")
    assert changed != before and code_digest() != changed


def test_config_errors_name_the_field(tmp_path):
    path = tmp_path / "p.yaml"
    path.write_text("generate_shards: 3\nsegmnt: {}\n")
    with pytest.raises(UrbangenError, match=r"segmnt: unknown field"):
        load_pipeline_config(path, "smoke")
    path.write_text("generate_shards: 3\n")
    assert load_pipeline_config(path, "smoke").generate_shards == 3
    path.write_text("pseudo_label: {spatial_prior: false, prior_wieght: 2}\n")
    with pytest.raises(UrbangenError, match=r"pseudo_label.prior_wieght: unknown field"):
        load_pipeline_config(path, "demo")
    path.write_text("pseudo_label: {mode: classwise, percentile: 150}\n")
    with pytest.raises(UrbangenError, match=r"pseudo_label.percentile"):
        load_pipeline_config(path, "demo")
    path.write_text("pseudo_label: {spatial_prior: false, class_balance: true}\n")
    with pytest.raises(UrbangenError, match=r"class_balance needs spatial_prior"):
        load_pipeline_config(path, "demo")
    path.write_text("fda: {beta: 0.7}\n")
    with pytest.raises(UrbangenError, match=r"fda.beta: Input should be less than 0.5"):
        load_pipeline_config(path, "demo")
    for seeds, why in (("[]", "at least 1 item"), ("[0, -1]", "greater than or equal to 0"), ("[1, 1]", "distinct")):
        path.write_text(f"train_seeds: {seeds}\n")
        with pytest.raises(UrbangenError, match=rf"train_seeds.*{why}"):
            load_pipeline_config(path, "smoke")
    path.write_text("train_parallel: 0\n")
    with pytest.raises(UrbangenError, match=r"train_parallel: Input should be greater than or equal to 1"):
        load_pipeline_config(path, "smoke")


def test_step_sections_are_checked_when_the_config_loads(tmp_path):
    """A misspelt field of segment / adapt / generate fails at load with every problem named, not in the step."""
    path = tmp_path / "p.yaml"
    path.write_text(
        "segment: {iteratons: 5, seed: 3, lr: -1}\n"
        "adapt: {stage2: {stepz: 3}, out: elsewhere}\n"
        "generate: {candidates: 0, calibrate: exemplar}\n"
    )
    with pytest.raises(UrbangenError) as error:
        load_pipeline_config(path, "demo")
    lines = str(error.value).splitlines()[1:]
    assert lines == [
        "  segment.seed: not settable here (set train_seeds)",
        "  segment.lr: Input should be greater than 0 (got -1)",
        "  segment.iteratons: unknown field",
        "  adapt.out: not settable here (the step sets it from the run's artefacts)",
        "  adapt.stage2.stepz: unknown field",
        "  generate.candidates: Input should be greater than or equal to 1 (got 0)",
    ]
    # with a wrong top-level field in the same file, and a section's model-level check
    path.write_text("seed: notanint\nsegment: {iteratons: 5}\nadapt: {stage2: {lr: 0.1, control: wire}}\n")
    with pytest.raises(UrbangenError) as error:
        load_pipeline_config(path, "demo")
    lines = str(error.value).splitlines()[1:]
    assert len(lines) == 3
    assert lines[0].startswith("  seed: Input should be a valid integer")
    assert lines[1] == "  segment.iteratons: unknown field"
    assert lines[2].startswith("  adapt.stage2.control: Input should be 'controlnet'")
    path.write_text("segment: {model: huge}\n")
    with pytest.raises(UrbangenError, match=r"segment: model must be one of"):
        load_pipeline_config(path, "demo")
    # values the steps accept pass, and reach the steps unchanged
    path.write_text("segment: {iterations: 5}\ngenerate: {candidates: 3}\nadapt: {base: tiny}\n")
    cfg = load_pipeline_config(path, "demo")
    assert (cfg.segment["iterations"], cfg.generate["candidates"], cfg.adapt["base"]) == (5, 3, "tiny")


def test_section_placeholders_and_reserved_fields_exist():
    """The fields a step fills in are real fields of its model (a rename there must not silently unreserve)."""
    import importlib

    from urbangen.pipeline_config import SECTION_MODELS

    for name, (module, cls, placeholders, reserved) in SECTION_MODELS.items():
        fields = set(getattr(importlib.import_module(module), cls).model_fields)
        assert set(placeholders) | set(reserved) <= fields, name


@pytest.mark.parametrize(
    ("section", "function", "step_arguments", "own_default"),
    [
        # spatial_prior: a flag here, the prior's data source (built by the step) in the function
        (
            "PseudoLabelConfig",
            "urbangen.segment.pseudo:pseudo_label",
            {"model_dir", "source", "out_dir"},
            {"spatial_prior"},
        ),
        # seed: None here means the run's seed
        ("FdaConfig", "urbangen.baselines.fda:fda_dataset", {"source", "target", "out_dir"}, {"seed"}),
    ],
)
def test_typed_sections_match_their_function(section, function, step_arguments, own_default):
    """A typed step section has the function's arguments, less those the step fills in, and its defaults."""
    import importlib
    import inspect

    from urbangen import pipeline_config

    model = getattr(pipeline_config, section)
    module, name = function.split(":")
    parameters = inspect.signature(getattr(importlib.import_module(module), name)).parameters
    assert set(model.model_fields) == set(parameters) - step_arguments
    for field in set(model.model_fields) - own_default:
        assert model.model_fields[field].default == parameters[field].default, field


def test_compile_command_writes_yaml(tmp_path):
    out = tmp_path / "pipeline.yaml"
    result = CliRunner().invoke(main, ["pipeline", "compile", "--scale", "smoke", "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert yaml.safe_load_all(out.read_text())
    result = CliRunner().invoke(main, ["pipeline", "compile", "--out", str(out)])
    assert result.exit_code == 2 and "--config" in result.output


class _RecordingClient:
    """Stands in for kfp.Client at the network boundary: records the calls submit makes."""

    calls: ClassVar[list] = []

    def __init__(self, host=None, namespace=None):
        self.calls.append(("init", host, namespace))

    def get_pipeline_id(self, name):
        self.calls.append(("get_pipeline_id", name))
        return "pipe-1"

    def upload_pipeline_version(self, path, pipeline_version_name, pipeline_id):
        self.calls.append(("upload_version", "deploymentSpec" in Path(path).read_text(), pipeline_id))
        return type("V", (), {"pipeline_version_id": "ver-2"})()

    def create_experiment(self, name, namespace=None):
        self.calls.append(("experiment", name))
        return type("E", (), {"experiment_id": "exp-3"})()

    def run_pipeline(self, **kwargs):
        self.calls.append(("run", kwargs))
        return type("R", (), {"run_id": "run-4"})()


def test_submit_uploads_a_version_and_starts_a_run(monkeypatch):
    import kfp

    monkeypatch.setattr(kfp, "Client", _RecordingClient)
    _RecordingClient.calls = []
    run_id = submit(preset("smoke"), "http://kfp.example:8888", experiment="exp")
    assert run_id == "run-4"
    kinds = [c[0] for c in _RecordingClient.calls]
    assert kinds == ["init", "get_pipeline_id", "upload_version", "experiment", "run"]
    run = _RecordingClient.calls[-1][1]
    assert run["pipeline_id"] == "pipe-1" and run["version_id"] == "ver-2" and run["experiment_id"] == "exp-3"
    assert run["params"]["config"]["scale"] == "smoke"


def test_a_dataset_target_compiles_and_round_trips(tmp_path):
    from urbangen.demo import demo_config
    from urbangen.pipeline_config import PipelineConfig

    cfg = demo_config("smoke", target_root=tmp_path)
    assert cfg.target.kind == "dataset" and cfg.target.limit is None
    assert "limit" not in cfg.parameter()["target"]  # KFP refuses null parameter values
    assert PipelineConfig.model_validate(cfg.parameter()).parameter() == cfg.parameter()
    compile_pipeline(cfg, tmp_path / "p.yaml")
