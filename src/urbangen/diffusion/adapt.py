"""``adapt``: run stage 1 then stage 2, writing ``OUT/stage1/`` and ``OUT/stage2/`` (generator folders).

Each stage is resumable: training checkpoints live in ``OUT/checkpoints/stage<N>/``; a finished stage
folder whose fingerprint matches the config and whose step count is reached is reused as is; a folder or
checkpoint written by a different configuration is refused with an error rather than silently mixed.
"""

from __future__ import annotations

import contextlib
from pathlib import Path

from urbangen.diffusion import stage1, stage2
from urbangen.diffusion.appearance import class_colour_stats, image_colour_stats
from urbangen.diffusion.artefacts import load_generator, read_meta, save_generator
from urbangen.diffusion.build import Modules, base_modules, default_resolution
from urbangen.diffusion.config import AdaptConfig, fingerprint
from urbangen.diffusion.data import TargetSet
from urbangen.diffusion.train import LogFn, StageRun, run
from urbangen.errors import UrbangenError
from urbangen.labels import cityscapes19


def adapt(
    cfg: AdaptConfig, on_log: LogFn | None = None, stage: int | None = None, out: str | Path | None = None
) -> dict[str, Path]:
    """Run the requested stages (both by default); return {"stage1": folder, "stage2": folder}.

    ``on_log(dict)`` receives {"stage", "step", "loss", "steps_per_s"} every 10 steps (e.g. for MLflow).
    """
    if stage not in (None, 1, 2):
        raise UrbangenError(f"stage must be 1 or 2, got {stage}")
    out = Path(out or cfg.out)
    folders = {}
    if stage in (None, 1):
        folders["stage1"] = run_stage1(cfg, out, on_log)
    if stage in (None, 2):
        folders["stage2"] = run_stage2(cfg, out, on_log)
    return folders


@contextlib.contextmanager
def _threads(count: int | None):
    """Use ``count`` torch CPU threads inside the block (torch's setting is process-wide: restore it)."""
    import torch

    previous = torch.get_num_threads()
    if count:
        torch.set_num_threads(count)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def _done(folder: Path, fp: str, steps: int) -> bool:
    """True if ``folder`` is a finished stage with this fingerprint; an error if it has another one."""
    if not folder.is_dir():
        return False
    meta = read_meta(folder)
    if meta.get("fingerprint") != fp:
        raise UrbangenError(
            f"{folder} was written by a different configuration (fingerprint {meta.get('fingerprint')}, this "
            f"config {fp}; for stage 2 this includes the stage-1 weights): use another --out or delete it"
        )
    return meta.get("steps", -1) >= steps


def _check_resolution(resolution: tuple[int, int], modules: Modules) -> None:
    multiple = modules.size_multiple
    if resolution[0] % multiple or resolution[1] % multiple:
        raise UrbangenError(
            f"resolution {resolution[0]}x{resolution[1]} must be divisible by {multiple} for this base "
            f"(e.g. {resolution[0] // multiple * multiple}x{resolution[1] // multiple * multiple})"
        )


def _meta(cfg: AdaptConfig, number: int, fp: str, resolution, modules: Modules, data: TargetSet, summary) -> dict:
    spec = stage2.condition_spec(cfg.stage2) if number == 2 else None
    return {
        "stage": number,
        "base": cfg.base,
        "fingerprint": fp,
        "steps": summary["steps"],
        "taxonomy": cityscapes19().to_dict(),
        "domains": list(modules.domains),
        "conditioning": spec.to_dict() if spec else None,
        "control": cfg.stage2.control if number == 2 else None,
        "resolution": list(resolution),
        "factor": modules.factor,
        "patch": modules.patch,
        "size_multiple": modules.size_multiple,
        "prediction_type": modules.scheduler.config.prediction_type,
        "config": cfg.model_dump(mode="json"),
        "data": data.digests,
        "training": summary,
        "sampling": {"guidance": cfg.stage2.guidance if number == 2 else 1.0},
        # the target's colours per class under the training labels, for ``calibrate`` at sampling time
        "appearance": class_colour_stats((i.image, i.label) for i in data.items) if number == 2 else None,
        "appearance_exemplars": image_colour_stats((i.image, i.label) for i in data.items) if number == 2 else None,
    }


def run_stage1(cfg: AdaptConfig, out: Path, on_log: LogFn | None = None) -> Path:
    """Stage 1 into ``out/stage1`` (reused when finished; resumed from ``out/checkpoints/stage1``)."""
    with _threads(cfg.threads):
        return _stage1(cfg, Path(out), on_log)


def run_stage2(cfg: AdaptConfig, out: Path, on_log: LogFn | None = None) -> Path:
    """Stage 2 into ``out/stage2`` from ``out/stage1`` (reused when finished; resumable)."""
    with _threads(cfg.threads):
        return _stage2(cfg, Path(out), on_log)


def _stage1(cfg: AdaptConfig, out: Path, on_log: LogFn | None) -> Path:
    folder, fp = out / "stage1", fingerprint(cfg, 1)
    if _done(folder, fp, cfg.stage1.steps):
        return folder
    modules = base_modules(
        cfg.base,
        cfg.domains,
        cfg.seed,
        cfg.device,
        prediction=cfg.prediction_type,
        block_out_channels=cfg.block_out_channels,
        patch=cfg.patch,
    )
    resolution = tuple(cfg.resolution or default_resolution(cfg.base, modules))
    _check_resolution(resolution, modules)
    data = TargetSet.load(cfg, resolution, labels=False, depth=False)
    model = stage1.prepare(modules, cfg.stage1, cfg.gradient_checkpointing)
    run_ = StageRun(1, model, modules, cfg.stage1, lambda batch, gen: None, fp)
    summary = run(run_, data, cfg, out / "checkpoints" / "stage1", on_log)
    stage1.finish(modules, cfg.stage1)
    save_generator(modules.to_cpu(), folder, _meta(cfg, 1, fp, resolution, modules, data, summary))
    return folder


def _stage2(cfg: AdaptConfig, out: Path, on_log: LogFn | None) -> Path:
    source = out / "stage1"
    if not source.is_dir():
        raise UrbangenError(f"stage 2 needs a finished stage 1 in {source}: run adapt --stage 1 first")
    meta1 = read_meta(source)
    if meta1.get("fingerprint") != fingerprint(cfg, 1):
        raise UrbangenError(f"{source} was trained with a different stage-1 configuration than this config")
    folder, fp = out / "stage2", fingerprint(cfg, 2, meta1["weights_sha256"])
    if _done(folder, fp, cfg.stage2.steps):
        return folder
    modules, _ = load_generator(source)
    resolution = tuple(meta1["resolution"])
    data = TargetSet.load(cfg, resolution, labels=True, depth=cfg.stage2.depth)
    model = stage2.prepare(modules, cfg.stage2, cfg.seed + 2, cfg.gradient_checkpointing)
    run_ = StageRun(2, model, modules, cfg.stage2, stage2.make_cond_fn(cfg.stage2), fp)
    summary = run(run_, data, cfg, out / "checkpoints" / "stage2", on_log)
    modules.control.requires_grad_(False).eval()
    save_generator(modules.to_cpu(), folder, _meta(cfg, 2, fp, resolution, modules, data, summary))
    return folder
