"""``urbangen adapt`` and ``urbangen sample``."""

from __future__ import annotations

from pathlib import Path

import click

DTYPES = {"float32": "float32", "bf16": "bfloat16", "fp16": "float16"}


@click.command("adapt")
@click.option("--config", "config_path", required=True, type=click.Path(dir_okay=False, path_type=Path))
@click.option("--stage", type=click.Choice(["1", "2"]), help="Run one stage only (default: 1 then 2).")
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), help="Overrides the config's out.")
@click.option("--device", help="Overrides the config's device (cpu, cuda, cuda:1, ...).")
def adapt(config_path: Path, stage: str | None, out: Path | None, device: str | None) -> None:
    """Two-stage fine-tuning on target images and pseudo-labels: writes OUT/stage1/ and OUT/stage2/."""
    from urbangen.config import load_config
    from urbangen.diffusion.adapt import adapt as run_adapt
    from urbangen.diffusion.config import AdaptConfig

    overrides = {"device": device} if device else {}
    cfg = load_config(AdaptConfig, config_path, overrides)
    folders = run_adapt(cfg, stage=int(stage) if stage else None, out=out)
    for name, folder in folders.items():
        click.echo(f"{name}: {folder}")


@click.command("sample")
@click.option("--generator", "generator_dir", required=True, type=click.Path(file_okay=False, path_type=Path))
@click.option("--labels", "labels_dir", required=True, type=click.Path(file_okay=False, path_type=Path))
@click.option("--out", "out_dir", required=True, type=click.Path(file_okay=False, path_type=Path))
@click.option("--depth", "depth_dir", type=click.Path(file_okay=False, path_type=Path), help="<id>.png, 16-bit cm.")
@click.option("--steps", default=20, show_default=True, type=click.IntRange(1))
@click.option("--guidance", type=float, help="Classifier-free guidance scale (default: the generator's).")
@click.option("--scheduler", default="ddim", show_default=True, type=click.Choice(["ddim", "dpm", "euler"]))
@click.option("--seed", default=0, show_default=True, type=int, help="Per-map seed = hash(seed, id).")
@click.option("--batch-size", default=8, show_default=True, type=click.IntRange(1))
@click.option("--size-mode", default="model", show_default=True, type=click.Choice(["model", "native"]))
@click.option("--domain", help="Domain name (default: the generator's first).")
@click.option("--device", default="cpu", show_default=True)
@click.option("--dtype", default="float32", show_default=True, type=click.Choice(sorted(DTYPES)))
def sample(
    generator_dir: Path,
    labels_dir: Path,
    out_dir: Path,
    depth_dir: Path | None,
    steps: int,
    guidance: float | None,
    scheduler: str,
    seed: int,
    batch_size: int,
    size_mode: str,
    domain: str | None,
    device: str,
    dtype: str,
) -> None:
    """Render <id>.png trainId maps into <id>.png images (resumable: finished images are skipped)."""
    import torch

    from urbangen.diffusion.sampler import Generator, sample_folder

    generator = Generator.from_pretrained(generator_dir, device=device, dtype=getattr(torch, DTYPES[dtype]))
    counts = sample_folder(
        generator,
        labels_dir,
        out_dir,
        depth_dir=depth_dir,
        seed=seed,
        batch_size=batch_size,
        steps=steps,
        guidance=guidance,
        scheduler=scheduler,
        size_mode=size_mode,
        domain=domain,
    )
    click.echo(f"rendered {counts['rendered']}, skipped {counts['skipped']} of {counts['total']} into {out_dir}")
