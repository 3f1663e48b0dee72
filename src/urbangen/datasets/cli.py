"""``urbangen data index | standardize | show``: the dataset commands other steps and users script against.

Each reads one dataset through :func:`urbangen.datasets.open_dataset`; bad input raises
:class:`UrbangenError`, which the root command prints as one line with exit code 2.
"""

from __future__ import annotations

import json
from pathlib import Path

import click

from urbangen.datasets import FORMATS, open_dataset

format_option = click.option(
    "--format", "format_", type=click.Choice(sorted(FORMATS)), required=True, help="On-disk dataset format."
)
root_option = click.option(
    "--root", type=click.Path(path_type=Path), required=True, help="Dataset root folder (see docs/datasets.md)."
)
split_option = click.option("--split", default=None, help="Split to read (default: every split present).")
mapping_option = click.option(
    "--mapping",
    "mapping_file",
    type=click.Path(path_type=Path),
    default=None,
    help="folder: the mapping YAML (default ROOT/mapping.yaml); mapillary: the config.json of the labels.",
)
unknown_option = click.option(
    "--unknown",
    type=click.Choice(["error", "ignore"]),
    default="error",
    show_default=True,
    help="Label ids the source does not define: fail, or map them to 255 and count them.",
)


@click.command()
@format_option
@root_option
@split_option
@mapping_option
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object: n, samples (id, image, label, ...).")
def index(format_: str, root: Path, split: str | None, mapping_file: Path | None, as_json: bool) -> None:
    """Pair images with labels by file name (no pixels decoded) and list the samples."""
    reader = open_dataset(format_, root, mapping_file=mapping_file)
    result = reader.index(split)
    if as_json:
        payload = result.to_json()
        payload["missing"] = list(reader.mapping().missing)
        click.echo(json.dumps(payload))
        return
    where = f"{format_} {result.root} split={split or 'all'}"
    click.echo(f"{where}: {len(result)} samples, {len(result.unpaired)} unpaired")
    for sample in result.samples[:5]:
        click.echo(f"  {sample.id}")
    if len(result) > 5:
        click.echo(f"  ... {len(result) - 5} more")
    for path in result.unpaired:
        click.echo(f"unpaired: {path}", err=True)


@click.command()
@format_option
@root_option
@split_option
@mapping_option
@click.option("--out", type=click.Path(path_type=Path), required=True, help="Folder for OUT/<id>.png trainIds.")
@unknown_option
@click.option("--progress/--no-progress", default=True, help="Progress bar on stderr.")
def standardize(
    format_: str, root: Path, split: str | None, mapping_file: Path | None, out: Path, unknown: str, progress: bool
) -> None:
    """Write each label as OUT/<id>.png: 8-bit trainIds (0..18, 255 ignore) at the label's resolution.

    Resumable: outputs that already hold a valid trainId map are skipped.
    """
    from urbangen.datasets.standardize import standardize_dataset

    reader = open_dataset(format_, root, mapping_file=mapping_file)
    summary = standardize_dataset(reader, reader.index(split), out, unknown=unknown, progress=progress)
    click.echo(summary.line(out))


@click.command()
@format_option
@root_option
@split_option
@mapping_option
@click.option("--n", "n", type=int, default=4, show_default=True, help="Samples to show, spread over the index.")
@click.option("--width", type=int, default=512, show_default=True, help="Width of each panel in pixels.")
@click.option("--out", type=click.Path(path_type=Path), required=True, help="The PNG to write.")
@unknown_option
def show(
    format_: str, root: Path, split: str | None, mapping_file: Path | None, n: int, width: int, out: Path, unknown: str
) -> None:
    """Write a PNG grid, one row per sample: image | colourised label | overlay."""
    from urbangen.datasets.preview import preview_grid
    from urbangen.io import write_png

    reader = open_dataset(format_, root, mapping_file=mapping_file)
    grid = preview_grid(reader, reader.index(split), n=n, width=width, unknown=unknown)
    write_png(out, grid)
    click.echo(f"wrote {out} ({grid.shape[1]}x{grid.shape[0]})")
