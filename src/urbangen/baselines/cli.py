"""``urbangen fda``: translate a source dataset towards a target domain with Fourier Domain Adaptation."""

from __future__ import annotations

from pathlib import Path

import click

PATH = click.Path(path_type=Path)


@click.command()
@click.option("--source-format", default="cityscapes", show_default=True)
@click.option("--source-root", type=PATH, required=True)
@click.option("--source-split", default=None)
@click.option("--source-mapping-file", type=PATH, default=None)
@click.option("--target-format", default="cityscapes", show_default=True)
@click.option("--target-root", type=PATH, required=True)
@click.option("--target-split", default=None)
@click.option("--out", type=PATH, required=True, help="Output dataset folder (Cityscapes layout, trainIds).")
@click.option("--beta", type=float, default=0.01, show_default=True, help="Low-frequency window size (0..0.5).")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the target image draw.")
def fda(
    source_format: str,
    source_root: Path,
    source_split: str | None,
    source_mapping_file: Path | None,
    target_format: str,
    target_root: Path,
    target_split: str | None,
    out: Path,
    beta: float,
    seed: int,
) -> None:
    """Write an FDA-translated copy of a source dataset, keeping its labels (resumable)."""
    from urbangen.baselines.fda import fda_dataset
    from urbangen.segment.data import DataSource

    source = DataSource(format=source_format, root=source_root, split=source_split, mapping_file=source_mapping_file)
    target = DataSource(format=target_format, root=target_root, split=target_split)
    click.echo(str(fda_dataset(source, target, out, beta, seed)))
