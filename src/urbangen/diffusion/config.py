"""Configuration of generator adaptation (``urbangen adapt --config FILE``).

One YAML file names the base model, the target data, the pseudo-label folder and the two training stages.
Everything here is plain data (no torch import), so the config can be validated and dumped cheaply.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator

from urbangen.config import StrictModel

BUILTIN_BASES = ("tiny", "small", "base")


def base_folder(base: str) -> Path | None:
    """The folder of a folder base (a generator or Stable Diffusion folder); None for built-in names."""
    return None if base in BUILTIN_BASES else Path(base).expanduser()


def base_generator_meta(base: str) -> dict | None:
    """The ``urbangen.json`` of a base that is a urbangen generator folder; None for any other base."""
    folder = base_folder(base)
    meta = folder / "urbangen.json" if folder else None
    return json.loads(meta.read_text()) if meta is not None and meta.is_file() else None


class TargetData(StrictModel):
    """Unlabelled target images: ``open_dataset(format, root).index(split)``."""

    format: str = "cityscapes"
    root: Path
    split: str | None = "train"
    limit: int | None = Field(default=None, ge=1, description="use only the first N samples (by id)")


class TrainConfig(StrictModel):
    """Optimisation settings shared by both stages."""

    steps: int = Field(default=1000, ge=0)
    batch_size: int = Field(default=8, ge=1)
    lr: float = Field(default=1e-4, gt=0)
    warmup: int = Field(default=0, ge=0, description="linear learning-rate warm-up steps (then constant)")
    weight_decay: float = Field(default=0.0, ge=0)
    grad_clip: float | None = Field(default=1.0, gt=0)
    ema: float | None = Field(default=None, gt=0, lt=1, description="EMA decay; the saved weights are the EMA")
    snr_gamma: float | None = Field(
        default=None,
        gt=0,
        description="Min-SNR loss weighting (Hang et al. 2023): each sample's loss weighed as an epsilon loss "
        "clipped at SNR gamma (5 in the paper); None: plain MSE on the prediction target",
    )
    checkpoint_every: int = Field(default=200, ge=1)


class Stage1Config(TrainConfig):
    """Appearance alignment: the denoiser (and a learned domain embedding) on target images alone."""

    lora_rank: int | None = Field(default=None, ge=1, description="train a LoRA of this rank instead of all weights")


class Stage2Config(TrainConfig):
    """Semantic control: a control branch on (target image, pseudo-label) pairs.

    ``controlnet`` / ``controlnet_xs`` keep the stage-1 denoiser frozen and train a branch beside it (the
    choice for large pretrained bases); ``concat`` fine-tunes a copy of the denoiser that reads the
    condition as extra input channels (zero-initialised), which follows the labels after far fewer steps.
    """

    control: Literal["controlnet", "controlnet_xs", "concat"] = "controlnet"
    xs_size_ratio: float = Field(default=0.25, gt=0, le=1, description="ControlNet-XS width relative to the UNet")
    erosion: int = Field(default=2, ge=0, description="erode each segment by r pixels; the band goes to unknown")
    cond_dropout: float = Field(default=0.1, ge=0, lt=1, description="probability of a null condition (for CFG)")
    depth: bool = Field(default=False, description="add a normalised inverse-depth channel (data must have depth)")
    depth_near: float = Field(default=1.0, gt=0, description="metres; inverse depth near/d clipped to [0, 1]")
    guidance: float = Field(default=2.0, ge=1, description="default guidance scale recorded for sampling")


class AdaptConfig(StrictModel):
    """Everything ``urbangen adapt`` needs. ``base`` is ``tiny``/``small``/``base`` or a Stable Diffusion folder."""

    base: str = "small"
    resolution: tuple[int, int] | None = Field(default=None, description="(H, W) model resolution override")
    target: TargetData
    labels_dir: Path | None = Field(default=None, description="pseudo-labels <id>.png (trainIds); stage 2 needs it")
    domains: dict[str, str] = Field(
        default_factory=lambda: {"target": "a photo of a city street"},
        description="domain name -> prompt (the prompt is used by Stable Diffusion bases); a sample whose "
        "meta['condition'] names a domain uses it, every other sample the first domain",
    )
    prediction_type: Literal["epsilon", "v_prediction", "sample"] | None = Field(
        default=None, description="override the built-in base's target (small: sample, tiny/base: v_prediction)"
    )
    block_out_channels: tuple[int, ...] | None = Field(
        default=None, description="override the built-in base's UNet widths (one per level)"
    )
    patch: int | None = Field(
        default=None,
        ge=1,
        description="override the built-in base's pixel patch (pixels per side folded into channels; small: 4)",
    )
    threads: int | None = Field(default=None, ge=1, description="torch CPU threads (default: torch's choice)")
    data_workers: int = Field(
        default=0,
        ge=0,
        description="threads that crop the next batches while a step trains (0: crop in the step); the batches "
        "and so the result are the same with any number",
    )
    crop_scale: tuple[float, float] = Field(default=(0.6, 1.0), description="random crop size range (fraction)")
    hflip: bool = True
    stage1: Stage1Config = Field(default_factory=Stage1Config)
    stage2: Stage2Config = Field(default_factory=Stage2Config)
    out: Path = Path("runs/adapt")
    seed: int = 0
    device: str = "cpu"
    mixed_precision: Literal["no", "fp16", "bf16"] = "no"
    gradient_checkpointing: bool = False

    @field_validator("domains")
    @classmethod
    def _domains_not_empty(cls, value: dict[str, str]) -> dict[str, str]:
        if not value:
            raise ValueError("at least one domain is needed")
        return value

    @field_validator("crop_scale")
    @classmethod
    def _crop_scale_range(cls, value: tuple[float, float]) -> tuple[float, float]:
        if not 0 < value[0] <= value[1] <= 1:
            raise ValueError("expected 0 < min <= max <= 1")
        return value

    @field_validator("resolution")
    @classmethod
    def _resolution_positive(cls, value: tuple[int, int] | None) -> tuple[int, int] | None:
        if value is not None and min(value) < 8:
            raise ValueError("expected (H, W) of at least 8 pixels each")
        return value

    @property
    def is_builtin(self) -> bool:
        return self.base in BUILTIN_BASES


def fingerprint(cfg: AdaptConfig, stage: int, extra: str = "") -> str:
    """A digest of everything that shapes a stage's result except its length and checkpoint cadence.

    A checkpoint or a finished stage folder is reused only when the fingerprint matches, so resuming with a
    longer ``steps`` continues the same run while any other change is refused with a clear error.
    ``extra`` joins other inputs (stage 2 passes the stage-1 weights digest it starts from).
    """
    data = cfg.model_dump(mode="json", exclude={"out", "device", "threads", "data_workers"})
    for name in ("stage1", "stage2"):
        data[name].pop("steps")
        data[name].pop("checkpoint_every")
    if stage == 1:
        data.pop("stage2")
        data.pop("labels_dir")
    base_meta = base_generator_meta(cfg.base)
    if base_meta is not None:  # a generator folder as base: its weights, not only its path
        extra = base_meta.get("weights_sha256", "") + extra
    text = json.dumps(data, sort_keys=True) + extra
    return hashlib.sha256(text.encode()).hexdigest()[:16]
