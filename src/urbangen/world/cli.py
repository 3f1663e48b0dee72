"""``urbangen world``: make procedural street datasets in the Cityscapes layout."""

from __future__ import annotations

import re

import click

from urbangen.errors import UrbangenError


def parse_size(text: str) -> tuple[int, int]:
    """``"256x512"`` -> (256, 512): height x width, both positive multiples of 8."""
    match = re.fullmatch(r"\s*(\d+)\s*[xX]\s*(\d+)\s*", text)
    if not match:
        raise UrbangenError(f"--size must look like HEIGHTxWIDTH (e.g. 256x512), got {text!r}")
    height, width = int(match.group(1)), int(match.group(2))
    if height % 8 or width % 8 or height < 32 or width < 64:
        raise UrbangenError(
            f"--size {text}: height and width must be divisible by 8 and at least 32x64, got {height}x{width}"
        )
    return height, width


@click.group()
def world() -> None:
    """Procedural low-effort urban scenes (sim and real-style renders)."""


@world.command("make")
@click.option("--out", required=True, type=click.Path(file_okay=False), help="Dataset root to write (or resume).")
@click.option("--split", required=True, type=click.Choice(["train", "val"]), help="Split to write.")
@click.option("--n", "n", required=True, type=click.IntRange(min=1), help="Number of scenes.")
@click.option("--seed", required=True, type=int, help="Layout seed (scene i uses a seed derived from seed, split, i).")
@click.option("--style", required=True, type=click.Choice(["sim", "real"]), help="Renderer: source or target look.")
@click.option("--style-seed", default=0, show_default=True, type=int, help="Target domain of the real renderer.")
@click.option("--size", default="256x512", show_default=True, help="Image size HEIGHTxWIDTH, multiples of 8.")
@click.option("--city", default="world", show_default=True, help="City folder and sample-id prefix.")
@click.option("--quiet", is_flag=True, help="No progress bar.")
def make(out: str, split: str, n: int, seed: int, style: str, style_seed: int, size: str, city: str, quiet: bool):
    """Write N scenes in the Cityscapes layout: images, labelIds, instanceIds, depth, world_<split>.json.

    Same seeds give byte-identical files; an interrupted run resumes where it stopped.
    """
    from urbangen.world.dataset import make_dataset

    ids = make_dataset(out, split, n, seed, style, style_seed, parse_size(size), city=city, progress=not quiet)
    click.echo(f"wrote {len(ids)} {style} scenes ({split}) to {out}")


@world.command("pretrain-base")
@click.option("--out", required=True, type=click.Path(file_okay=False), help="Generator folder to write.")
@click.option("--work", required=True, type=click.Path(file_okay=False), help="Scenes and checkpoints (resumable).")
@click.option("--styles", default="1000-1047", show_default=True, help="Style seeds: FIRST-LAST or a comma list.")
@click.option("--n-per-style", default=25, show_default=True, type=click.IntRange(min=1))
@click.option("--size", default="128x256", show_default=True, help="Scene size HEIGHTxWIDTH.")
@click.option("--steps", type=click.IntRange(min=1), help="Stage-1 training steps (default 12000).")
@click.option("--threads", type=click.IntRange(min=1), help="torch CPU threads.")
def pretrain_base_cmd(out: str, work: str, styles: str, n_per_style: int, size: str, steps, threads) -> None:
    """Pretrain the benchmark's base generator on real-style scenes of other style seeds (resumable).

    The CPU stand-in for a Stable Diffusion checkpoint: see urbangen.world.base and docs/world.md.
    """
    from urbangen.world.base import pretrain_base

    if "-" in styles and "," not in styles:
        first, _, last = styles.partition("-")
        seeds = list(range(int(first), int(last) + 1)) if first.isdigit() and last.isdigit() else []
        if not seeds:
            raise UrbangenError(f"--styles must be FIRST-LAST or a comma list of integers, got {styles!r}")
    else:
        seeds = _ints(styles, "--styles")
    folder = pretrain_base(out, work, tuple(seeds), n_per_style, parse_size(size), steps, threads=threads)
    click.echo(f"wrote the pretrained base to {folder}")


def _ints(text: str, option: str) -> list[int]:
    try:
        return [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise UrbangenError(f"{option} must be comma-separated integers, got {text!r}") from None


@world.command("preview")
@click.option("--out", required=True, type=click.Path(dir_okay=False), help="PNG file to write.")
@click.option("--seeds", default="7,31,42", show_default=True, help="Scene seeds, one row each.")
@click.option("--style-seeds", default="1,2", show_default=True, help="Real domains, one column each.")
@click.option("--size", default="112x224", show_default=True, help="Tile size HEIGHTxWIDTH, multiples of 8.")
def preview(out: str, seeds: str, style_seeds: str, size: str) -> None:
    """Write a picture of the world: per scene, sim | real per style seed | colourised labels."""
    from PIL import Image

    from urbangen.io import atomic_path
    from urbangen.world.preview import preview_grid

    scene_seeds, domains = _ints(seeds, "--seeds"), _ints(style_seeds, "--style-seeds")
    if not scene_seeds:
        raise UrbangenError("--seeds must name at least one scene seed")
    grid = preview_grid(scene_seeds, parse_size(size), domains)
    with atomic_path(out) as tmp:
        Image.fromarray(grid).save(tmp, format="PNG", optimize=True)
    click.echo(f"wrote {out} ({grid.shape[0]}x{grid.shape[1]})")
