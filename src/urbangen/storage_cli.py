"""``urbangen data push|pull|ls``: move dataset versions in and out of the dataset store.

The store is chosen by the environment (see :func:`urbangen.storage.open_store`): MinIO when
URBANGEN_S3_ENDPOINT is set, else ``<URBANGEN_WORKSPACE>/store``.
"""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path

import click
from tqdm import tqdm

from urbangen.storage import TransferStats, open_store


def _bar(desc: str) -> tqdm:
    return tqdm(desc=desc, unit="B", unit_scale=True, unit_divisor=1024, dynamic_ncols=True)


def _summary(stats: TransferStats, verb: str) -> str:
    return (
        f"{verb} {stats.transferred} of {stats.files} files ({stats.skipped} already in place, "
        f"{stats.bytes / 2**20:.1f} MiB in all)"
    )


@click.command()
@click.argument("root", type=click.Path(path_type=Path))
@click.option("--name", required=True, help="Dataset name.")
@click.option("--version", "version", required=True, help="Version label; versions are immutable.")
@click.option("--workers", default=8, show_default=True, help="Parallel uploads.")
def push(root: Path, name: str, version: str, workers: int) -> None:
    """Upload the dataset folder ROOT as NAME/VERSION (rerun to resume an interrupted push)."""
    store = open_store()
    with _bar(f"push {name}/{version}") as bar:
        stats = store.push(root, name, version, workers=workers, progress=bar)
    click.echo(f"{_summary(stats, 'uploaded')} -> {store.uri(name, version)}")


@click.command()
@click.argument("name")
@click.argument("version")
@click.option("--out", "out", required=True, type=click.Path(path_type=Path), help="Destination folder.")
@click.option("--workers", default=8, show_default=True, help="Parallel downloads.")
def pull(name: str, version: str, out: Path, workers: int) -> None:
    """Download NAME/VERSION into --out, verifying every file's sha256 (rerun to resume)."""
    store = open_store()
    with _bar(f"pull {name}/{version}") as bar:
        stats = store.pull(name, version, out, workers=workers, progress=bar)
    click.echo(f"{_summary(stats, 'downloaded')} -> {out}")


@click.command()
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
def ls(as_json: bool) -> None:
    """List dataset versions in the store with file counts, sizes and completeness."""
    store = open_store()
    versions = store.list()
    if as_json:
        click.echo(json.dumps([asdict(v) for v in versions], indent=2))
        return
    click.echo(f"store: {store.location}")
    if not versions:
        click.echo("no datasets")
        return
    width = max(len(f"{v.name}/{v.version}") for v in versions)
    for v in versions:
        state = "complete" if v.complete else "INCOMPLETE (resume the push)"
        click.echo(f"{v.name + '/' + v.version:<{width}}  {v.files:>7} files  {v.bytes / 2**20:>10.2f} MiB  {state}")
