"""Configuration of generation, MCOC filtering and label rectification (one YAML file for all three).

Example (``urbangen generate --config gen.yaml``)::

    source: {format: cityscapes, root: data/sim, split: train}
    generator: runs/adapt/stage2
    segmenter: runs/pseudo/segmenter
    pseudo_labels: runs/pseudo/labels   # optional: score as the segmenter labelled the target
    out: runs/generate
    candidates: 4
    seed: 0
    steps: 20
    strength: 1.0            # < 1: start from the source image (SDEdit)
    guidance: 2.0
    mcoc: {threshold: 0.5}
    rectify: {object_threshold: 0.3, boundary_band: 3, boundary_confidence: 0.9}

Every field is documented in docs/generation.md.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator, model_validator

from urbangen.config import StrictModel
from urbangen.diffusion.appearance import calibration_mode


class SourceConfig(StrictModel):
    """Where the conditioning label maps come from.

    ``format`` is a dataset format of :func:`urbangen.datasets.open_dataset` (labels standardised to the
    target trainIds by its reader, instance maps used where the format has them), or ``labels``: a folder
    of ``<id>.png`` 8-bit trainId maps (with ``depth_dir/<id>.png`` 16-bit depth when given).
    """

    format: str = "cityscapes"
    root: Path
    split: str | None = "train"
    depth_dir: Path | None = None
    use_depth: bool = False
    use_instances: bool = True
    unknown: Literal["error", "ignore"] = "error"
    limit: int | None = Field(default=None, ge=1)


class EngineConfig(StrictModel):
    """Which sampling loop renders the candidates (see :mod:`urbangen.generate.engine`).

    ``reference`` is the adaptation issue's sampler as it is; ``fast`` is the engine (same images within
    a stated tolerance). ``dtype`` ``auto`` is float32 on CPU and bfloat16 on CUDA; ``compile`` and
    ``cuda_graphs`` only take effect on CUDA (``compile_mode`` ``max-autotune`` tunes kernels for minutes).
    """

    kind: Literal["reference", "fast"] = "reference"
    device: str = "cpu"
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = "auto"
    channels_last: bool = True
    compile: bool = False
    compile_mode: Literal["default", "max-autotune"] = "default"
    cuda_graphs: bool = False
    cache_control_embedding: bool = True


class McocConfig(StrictModel):
    """Mean Class-wise Object Consistency: object extraction and the keep/drop rule."""

    erosion: int = Field(default=3, ge=0)
    min_object_size: int = Field(default=50, ge=1)
    threshold: float = Field(default=0.5, ge=0.0, le=1.0)
    # "class": consistencies are judged against what the scoring segmenter typically recognises of each
    # class (its median over all candidates), so a class it barely sees neither drops maps nor loses labels;
    # "absolute": raw consistencies (right for a segmenter that recognises every class well)
    relative_to: Literal["class", "absolute"] = "class"
    min_reference: float = Field(default=0.1, ge=0.0, le=1.0)
    # which candidate of a map is kept, rectified and judged: "best" the highest MCOC, "first" candidate 0
    # whatever its score (MCOC then only drops maps and rectifies labels; docs/generation.md "MCOC")
    select: Literal["best", "first"] = "best"
    min_kept_per_class: int = Field(default=0, ge=0)
    warn_class_drop: float = Field(default=0.5, ge=0.0, le=1.0)


class RectifyConfig(StrictModel):
    """Label rectification of the kept candidate (pixels set to ignore where image and label disagree)."""

    enabled: bool = True
    object_threshold: float = Field(default=0.3, ge=0.0, le=1.0)
    # with mcoc.relative_to "class": the object rule judges only classes whose reference (what the scoring
    # segmenter typically recognises of them) reaches this; None: mcoc.min_reference (docs/generation.md)
    min_reference: float | None = Field(default=None, ge=0.0, le=1.0)
    boundary_band: int = Field(default=3, ge=0)
    boundary_confidence: float = Field(default=0.9, ge=0.0, le=1.0)


class GenerateConfig(StrictModel):
    """Everything ``urbangen generate`` and ``urbangen filter-rectify`` need."""

    source: SourceConfig
    generator: Path
    segmenter: Path | None = None
    # the folder `urbangen pseudo-label` wrote with this segmenter: MCOC scoring then weighs its posterior as
    # that labelling did (spatial prior, class weights), i.e. judges candidates by the labels the generator
    # was adapted on (docs/generation.md "MCOC")
    pseudo_labels: Path | None = None
    out: Path
    candidates: int = Field(default=4, ge=1)
    seed: int = 0
    steps: int = Field(default=20, ge=1)
    # 1: each candidate starts from pure noise; s < 1: from the source image noised to the last s of the
    # schedule (SDEdit: the source's layout, the target's look; needs a source format with images)
    strength: float = Field(default=1.0, gt=0.0, le=1.0)
    # give every class region target colours recorded by stage 2 (urbangen.diffusion.appearance): "pooled"
    # the class's mean and spread over all target images, "exemplar" those of one target image drawn per
    # candidate; true means "pooled" (the setting's first form)
    calibrate: Literal["none", "pooled", "exemplar"] = "none"
    guidance: float | None = None
    scheduler: Literal["ddim", "dpm", "euler"] = "ddim"
    batch_size: int = Field(default=8, ge=1)
    engine: EngineConfig = EngineConfig()
    filter: bool = True
    mcoc: McocConfig = McocConfig()
    rectify: RectifyConfig = RectifyConfig()
    segment_batch_size: int = Field(default=8, ge=1)
    preview_rows: int = Field(default=6, ge=0)
    split: str = "train"
    city: str = "generated"

    @field_validator("calibrate", mode="before")
    @classmethod
    def _calibrate_bool(cls, value: object) -> object:
        return calibration_mode(value)

    @model_validator(mode="after")
    def _pseudo_labels_need_segmenter(self) -> GenerateConfig:
        if self.pseudo_labels is not None and self.segmenter is None:
            raise ValueError("pseudo_labels says how a segmenter labelled the target: set segmenter too")
        return self
