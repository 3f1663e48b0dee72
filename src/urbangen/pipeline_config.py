"""The pipeline's configuration: data roles, per-step settings, cluster resources, and scale presets.

One :class:`PipelineConfig` drives a whole run, locally (``urbangen demo`` / ``urbangen pipeline run``)
or on a cluster (``urbangen pipeline compile|submit``). Step sections hold only what differs between
scales; each step turns its section into that module's own config model.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import Field, ValidationError, field_validator, model_validator

from urbangen.config import StrictModel, error_lines, load_yaml, validate
from urbangen.errors import UrbangenError


class WorldData(StrictModel):
    """Scenes from the built-in procedural world (see urbangen.world)."""

    kind: Literal["world"] = "world"
    n: int = Field(gt=0)
    style: Literal["sim", "real"]
    split: Literal["train", "val"] = "train"


class FolderData(StrictModel):
    """A dataset on disk in one of the supported formats (see docs/datasets.md)."""

    kind: Literal["dataset"] = "dataset"
    format: str = "cityscapes"
    root: Path
    split: str | None = None
    limit: int | None = Field(default=None, gt=0, description="use only the first N samples")


DataSpec = WorldData | FolderData


class ResourceConfig(StrictModel):
    """Kubernetes settings compiled into the pipeline (ignored by kfp.local)."""

    gpu: bool = True
    accelerator_type: str = "nvidia.com/gpu"
    gpus_per_task: int = 1
    gpu_memory_limit: str = "64Gi"
    cpu_request: str = "4"
    memory_request: str = "16Gi"
    shm_size: str = "8Gi"
    node_selector: dict[str, str] = Field(default_factory=lambda: {"nvidia.com/gpu.present": "true"})
    tolerations: list[dict[str, str]] = Field(
        default_factory=lambda: [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}]
    )
    secrets: bool = True
    s3_secret: str = "urbangen-s3"
    endpoints_config_map: str = "urbangen-endpoints"
    generate_parallelism: int = 4
    caching: bool = False


class PseudoLabelConfig(StrictModel):
    """The pseudo-label step: arguments of :func:`urbangen.segment.pseudo.pseudo_label` (docs/segmentation.md),
    and ``spatial_prior`` to weigh the segmenter's softmax by the run's source label layout."""

    threshold: float = Field(default=0.9, ge=0, le=1)
    mode: Literal["global", "classwise"] = "global"
    percentile: float = Field(default=50.0, ge=0, le=100)
    batch_size: int = Field(default=2, gt=0)
    device: str = "cpu"
    predict_mode: Literal["whole", "slide"] = "whole"
    spatial_prior: bool = False
    prior_weight: float = Field(default=1.0, ge=0)
    # no class takes more of the target than its share of the source (needs spatial_prior: its class shares)
    class_balance: bool = False

    @model_validator(mode="after")
    def _balance_needs_prior(self) -> PseudoLabelConfig:
        if self.class_balance and not self.spatial_prior:
            raise ValueError("class_balance needs spatial_prior: true (the source's class shares come with it)")
        return self


class FdaConfig(StrictModel):
    """The FDA baseline (:func:`urbangen.baselines.fda.fda_dataset`); ``seed`` defaults to the run's seed."""

    beta: float = Field(default=0.01, ge=0, lt=0.5)
    seed: int | None = Field(default=None, ge=0)


# The free step sections and the config model each step builds from one: (module, class, fields the step
# fills in from the run's artefacts, fields the section may not set and what to use instead)
SECTION_MODELS: dict[str, tuple[str, str, dict[str, Any], dict[str, str]]] = {
    "segment": (
        "urbangen.segment.train",
        "TrainConfig",
        {"sources": [{"root": "."}]},
        {"sources": "the step trains on the run's datasets", "seed": "set train_seeds"},
    ),
    "adapt": (
        "urbangen.diffusion.config",
        "AdaptConfig",
        {"target": {"root": "."}, "out": "."},
        dict.fromkeys(("target", "labels_dir", "out"), "the step sets it from the run's artefacts"),
    ),
    "generate": (
        "urbangen.generate.config",
        "GenerateConfig",
        {"source": {"root": "."}, "generator": ".", "out": "."},
        dict.fromkeys(("source", "generator", "segmenter", "out"), "the step sets it from the run's artefacts"),
    ),
}


def check_section(name: str, values: dict[str, Any]) -> list[str]:
    """Problems of one free step section, each as ``<section>.<field>: <what is wrong>`` (empty if none).

    The section is validated with the model its step builds (placeholders for what the step fills in), so a
    misspelt or out-of-range field fails when the config loads, not minutes into a run."""
    import importlib

    module, cls, placeholders, reserved = SECTION_MODELS[name]
    problems = [f"{name}.{key}: not settable here ({why})" for key, why in reserved.items() if key in values]
    model = getattr(importlib.import_module(module), cls)
    try:
        model.model_validate({**placeholders, **{k: v for k, v in values.items() if k not in reserved}})
    except ValidationError as exc:
        problems += error_lines(exc, name)
    return problems


class PipelineConfig(StrictModel):
    """One pipeline run. :meth:`parameter` is the form it travels in as the KFP ``config`` parameter."""

    name: str = "urbangen"
    scale: Literal["smoke", "demo", "full", "custom"] = "custom"
    seed: int = 0
    style_seed: int = 1
    size: tuple[int, int] = (128, 256)
    experiment: str = "urbangen"
    source: DataSpec
    target: DataSpec
    val: DataSpec
    oracle: bool = True
    pseudo_label_from: Literal["source_only", "fda"] = "fda"
    # rounds of pseudo-labelling: a round after the first relabels the target with the urbangen segmenter of
    # the round before, adapts stage 2 anew on those labels, generates and filters with it as the judge
    pseudo_label_rounds: int = Field(default=1, ge=1, le=3)
    generate_shards: int = Field(default=2, gt=0)
    segment: dict[str, Any] = Field(default_factory=dict)
    pseudo_label: PseudoLabelConfig = Field(default_factory=PseudoLabelConfig)
    adapt: dict[str, Any] = Field(default_factory=dict)
    generate: dict[str, Any] = Field(default_factory=dict)
    fda: FdaConfig = Field(default_factory=FdaConfig)
    train_seeds: list[Annotated[int, Field(ge=0)]] = Field(default_factory=lambda: [0], min_length=1)
    # how many training seeds train side by side on a CPU (None: as many as the cores hold); 1: in turn
    train_parallel: int | None = Field(default=None, ge=1)
    dataset_store: bool = True
    resources: ResourceConfig = Field(default_factory=ResourceConfig)

    @field_validator("train_seeds")
    @classmethod
    def _distinct_seeds(cls, seeds: list[int]) -> list[int]:
        if len(set(seeds)) != len(seeds):
            raise ValueError("training seeds must be distinct")
        return seeds

    @model_validator(mode="wrap")
    @classmethod
    def _check_sections(cls, data: Any, handler: Any) -> PipelineConfig:
        """The step sections are checked with the other fields, so one error lists every problem."""
        problems = []
        if isinstance(data, dict):
            for name in SECTION_MODELS:
                if isinstance(data.get(name), dict):
                    problems += check_section(name, data[name])
        try:
            config = handler(data)
        except ValidationError as exc:
            if not problems:
                raise
            problems = error_lines(exc) + problems
        if problems:
            raise ValueError("\n".join(problems))
        return config

    def cuda_fields(self) -> list[str]:
        """The step settings that ask for a CUDA device (``cuda``, ``cuda:N``), as ``section.field``."""
        devices = {
            "segment.device": self.segment.get("device"),
            "pseudo_label.device": self.pseudo_label.device,
            "adapt.device": self.adapt.get("device"),
            "generate.engine.device": (self.generate.get("engine") or {}).get("device"),
        }
        return [name for name, device in devices.items() if str(device or "").startswith("cuda")]

    def parameter(self) -> dict[str, Any]:
        """The config as a KFP parameter value (JSON; KFP refuses nulls, and unset optionals default again)."""
        return self.model_dump(mode="json", exclude_none=True)


def _world(n_source: int, n_target: int, n_val: int) -> dict[str, Any]:
    return {
        "source": {"kind": "world", "n": n_source, "style": "sim"},
        "target": {"kind": "world", "n": n_target, "style": "real"},
        "val": {"kind": "world", "n": n_val, "style": "real", "split": "val"},
    }


SMOKE = {
    "size": (64, 128),
    **_world(16, 16, 8),
    "generate_shards": 2,
    "segment": {
        "model": "tiny",
        "iterations": 20,
        "batch_size": 4,
        "crop_size": (64, 128),
        "scale_range": (0.75, 1.25),
        "warmup_iters": 0,
        "num_workers": 0,
        "log_every": 10,
        "lr": 6e-4,
    },
    "pseudo_label": {"threshold": 0.5, "spatial_prior": True, "class_balance": True},
    "pseudo_label_rounds": 2,  # as the demo
    "adapt": {"base": "tiny", "stage1": {"steps": 4, "batch_size": 2}, "stage2": {"steps": 4, "batch_size": 2}},
    # smoke models are barely trained: keep every map (the filter still scores, selects and rectifies)
    "generate": {"candidates": 2, "steps": 2, "batch_size": 4, "mcoc": {"threshold": 0.0}},
}

# tiny SegFormer: ~75-90 s per model at 800 iterations on 2 idle cores (docs/BENCHMARKS.md "End-to-end demo").
# num_workers 0: decoding 8 small crops is cheap, and the main process then gets both cores' threads
DEMO_SEGMENT = {
    "model": "tiny",
    "iterations": 800,
    "batch_size": 8,
    "crop_size": (64, 128),
    "scale_range": (0.75, 1.5),
    "lr": 3e-3,
    "warmup_iters": 60,
    "head_lr_mult": 1.0,
    "num_workers": 0,
    "log_every": 50,
    "checkpoint_every": 400,
}

DEMO = {
    "size": (128, 256),
    **_world(300, 300, 100),
    # kfp.local runs the ParallelFor's shards at the same time: two 2-thread torch processes on 2 cores
    # rendered 1.0 img/s each, one alone renders ~4.5 img/s (the smoke preset keeps 2 shards to show sharding)
    "generate_shards": 1,
    "segment": DEMO_SEGMENT,
    # CBST with spatial priors: class-wise thresholds, and the source's class layout weighs the softmax
    # (raw pseudo-label mIoU +2.4 to +6.1 on three seed pairs: docs/BENCHMARKS.md "Pseudo-labels with a spatial prior");
    # class balance: no class takes more of the target than its source share (+1.1 to +4.3 more; urbangen +3.0 on
    # the hardest seed pair: docs/BENCHMARKS.md "Class balance")
    "pseudo_label": {
        "threshold": 0.9,
        "mode": "classwise",
        "percentile": 50.0,
        "spatial_prior": True,
        "class_balance": True,
    },
    # a second round labels the target with the first round's urbangen segmenter: urbangen +0.9 and +1.4
    # mIoU over three training seeds on two seed pairs (docs/BENCHMARKS.md "A second round of pseudo-labels")
    "pseudo_label_rounds": 2,
    # small pixel-space generator from scratch with concat control (follows the labels after a few hundred
    # steps, where a ControlNet needs thousands): docs/BENCHMARKS.md "End-to-end demo" has the measurements
    "adapt": {
        "base": "small",
        "stage1": {"steps": 200, "batch_size": 8, "lr": 2e-3, "warmup": 20, "checkpoint_every": 100},
        "stage2": {
            "steps": 800,
            "batch_size": 8,
            "lr": 2e-3,
            "warmup": 20,
            "checkpoint_every": 100,
            "erosion": 1,
            "control": "concat",
        },
    },
    # calibrate: each class region takes the colours of one target image recorded by stage 2 (docs/BENCHMARKS.md)
    "generate": {"candidates": 2, "steps": 10, "batch_size": 16, "calibrate": "exemplar"},
}

SCALES: dict[str, dict[str, Any]] = {
    "smoke": SMOKE,
    "demo": DEMO,
    "full": {
        **DEMO,
        "size": (256, 512),
        **_world(2000, 2000, 500),
        "generate_shards": 8,
        "train_seeds": [0, 1, 2],
        # 8 data workers: 183 images/s of b0 training on an H100 against 61 with the demo's 0 (decoding and
        # cropping 256x512 scenes in the training process starved the GPU; docs/BENCHMARKS.md "The `full` preset")
        "segment": {**DEMO_SEGMENT, "model": "b0", "iterations": 20000, "crop_size": (256, 512), "num_workers": 8},
        # predicting on the GPU: 0.19 s per image on the H100 machine's CPU (docs/BENCHMARKS.md "The `full` preset")
        "pseudo_label": {**DEMO["pseudo_label"], "device": "cuda", "batch_size": 16},
        "adapt": {
            "base": "base",
            "device": "cuda",
            "mixed_precision": "bf16",
            # crops in 4 threads ahead of the step: one thread took 79 ms of a 222 ms step at batch 8 on an
            # H200 machine, 369 of 511 ms at 32 (docs/BENCHMARKS.md "The `full` preset")
            "data_workers": 4,
            "stage1": {"steps": 20000},
            "stage2": {"steps": 20000},
        },
        "generate": {
            "candidates": 4,
            "steps": 20,
            "batch_size": 32,
            "engine": {"kind": "fast", "device": "cuda", "dtype": "bfloat16", "compile": True},
        },
    },
}


def preset(scale: str, **overrides: Any) -> PipelineConfig:
    """The built-in benchmark's config at ``scale``, with top-level ``overrides`` (seed, style_seed, ...)."""
    if scale not in SCALES:
        raise UrbangenError(f"unknown scale {scale!r}; expected one of {sorted(SCALES)}")
    data = {"scale": scale, **SCALES[scale]}
    data.update({k: v for k, v in overrides.items() if v is not None})
    return validate(PipelineConfig, data, f"preset {scale}")


def load_pipeline_config(path: str | Path | None, scale: str | None = None, **overrides: Any) -> PipelineConfig:
    """A preset (if ``scale``) updated with the YAML file (if ``path``) and then ``overrides``."""
    data: dict[str, Any] = {}
    if scale is not None:
        data = preset(scale).model_dump(mode="python", exclude_unset=False)
    if path is not None:
        loaded = load_yaml(path)
        if not isinstance(loaded, dict):
            raise UrbangenError(f"config file {path}: expected a mapping at the top level")
        for key, value in loaded.items():
            if isinstance(value, dict) and isinstance(data.get(key), dict) and key not in ("source", "target", "val"):
                data[key] = {**data[key], **value}
            else:
                data[key] = value
    data.update({k: v for k, v in overrides.items() if v is not None})
    return validate(PipelineConfig, data, str(path) if path else f"preset {scale}")
