"""``urbangen generate`` (render candidates, one shard at a time, and ``merge`` shards) and
``urbangen filter-rectify`` (MCOC filtering, label rectification, dataset writing).

The flow (docs/generation.md)::

    urbangen generate --config gen.yaml --shard 0/2      # OUT/shards/shard-000-of-002
    urbangen generate --config gen.yaml --shard 1/2      # OUT/shards/shard-001-of-002 (anywhere, any time)
    urbangen generate merge --config gen.yaml            # OUT/candidates
    urbangen filter-rectify --config gen.yaml            # OUT/dataset
    urbangen filter-rectify --config gen.yaml --no-filter   # OUT/dataset_nofilter

Without ``--shard`` generation writes ``OUT/candidates`` directly and needs no merge.
"""

from __future__ import annotations

import json
from pathlib import Path

import click

from urbangen.errors import UrbangenError


def _config(path: str | None, **overrides):
    from urbangen.config import load_config
    from urbangen.generate.config import GenerateConfig

    if path is None:
        raise UrbangenError("--config FILE is required (see docs/generation.md for its fields)")
    return load_config(GenerateConfig, path, {k: v for k, v in overrides.items() if v is not None})


@click.group(invoke_without_command=True)
@click.option("--config", "config_path", type=click.Path(dir_okay=False), help="Generation config (YAML).")
@click.option("--shard", default=None, help="Process shard i of N (e.g. 0/4); default: everything.")
@click.option("--out", "out_dir", type=click.Path(file_okay=False), default=None, help="Candidates folder.")
@click.pass_context
def generate(ctx: click.Context, config_path: str | None, shard: str | None, out_dir: str | None) -> None:
    """Render K candidates per label map (sharded, resumable); `merge` joins shard folders."""
    if ctx.invoked_subcommand is not None:
        return
    from urbangen.generate.run import generate_candidates
    from urbangen.generate.seeds import parse_shard

    cfg = _config(config_path)
    summary = generate_candidates(cfg, parse_shard(shard), out_dir=out_dir)
    click.echo(json.dumps(summary, indent=2))


@generate.command("merge")
@click.argument("shards", nargs=-1, type=click.Path(file_okay=False))
@click.option("--config", "config_path", type=click.Path(dir_okay=False), help="Merge OUT/shards/* of this config.")
@click.option("--out", "out_dir", type=click.Path(file_okay=False), default=None, help="Merged candidates folder.")
@click.option("--allow-partial", is_flag=True, help="Merge what is finished even if shards are missing.")
def merge(shards: tuple[str, ...], config_path: str | None, out_dir: str | None, allow_partial: bool) -> None:
    """Join shard candidate folders (SHARDS, or OUT/shards/* of --config) into one."""
    from urbangen.generate.merge import merge_shards

    dirs = [Path(s) for s in shards]
    if config_path is not None:
        cfg = _config(config_path)
        dirs = dirs or sorted((Path(cfg.out) / "shards").glob("shard-*-of-*"))
        out_dir = out_dir or str(Path(cfg.out) / "candidates")
    if not dirs or out_dir is None:
        raise UrbangenError("merge: give shard folders and --out DIR, or --config FILE")
    summary = merge_shards(dirs, out_dir, allow_partial=allow_partial)
    click.echo(json.dumps(summary, indent=2))


@click.command("filter-rectify")
@click.option("--config", "config_path", type=click.Path(dir_okay=False), required=True, help="Generation config.")
@click.option("--candidates", "candidates_dir", type=click.Path(file_okay=False), default=None)
@click.option("--out", "out_dir", type=click.Path(file_okay=False), default=None, help="Dataset folder to write.")
@click.option("--segmenter", type=click.Path(file_okay=False), default=None, help="Overrides the config's segmenter.")
@click.option(
    "--pseudo-labels",
    type=click.Path(file_okay=False),
    default=None,
    help="Overrides the config's pseudo_labels: the segmenter's `urbangen pseudo-label` folder, whose spatial prior "
    "and class weights scoring then applies.",
)
@click.option("--no-filter", is_flag=True, help="Keep candidate 0 of every map, labels unchanged (the baseline).")
def filter_rectify(
    config_path: str,
    candidates_dir: str | None,
    out_dir: str | None,
    segmenter: str | None,
    pseudo_labels: str | None,
    no_filter: bool,
) -> None:
    """Score candidates by MCOC, keep the best per map, rectify its label, write the dataset."""
    from urbangen.generate.filtering import filter_and_rectify

    cfg = _config(config_path, segmenter=segmenter, pseudo_labels=pseudo_labels, filter=False if no_filter else None)
    summary = filter_and_rectify(cfg, candidates_dir, out_dir)
    summary.pop("per_class", None)
    click.echo(json.dumps(summary, indent=2))
