"""``urbangen demo``: the whole method on the built-in benchmark, through the same KFP pipeline as a cluster.

It builds the pipeline config for ``--scale`` (smoke: minutes, tests and CI; demo: <= 20 min on 2 CPU
cores; full: a GPU machine, 3 training seeds), runs every step locally through kfp.local with a local
MLflow store and dataset store inside ``OUT/workspace``, and copies ``results.json`` and ``report.html``
to ``OUT``. ``--target-root`` points the target domain at a Cityscapes-layout folder (e.g. a user's own
Cityscapes copy) instead of the world's ``real`` style. ``--resume`` reruns only what an interrupted or
failed run into the same ``OUT`` did not finish.
"""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path
from typing import Any

import click

from urbangen.pipeline_config import PipelineConfig, load_pipeline_config


def demo_config(
    scale: str,
    config_path: str | Path | None = None,
    seed: int | None = None,
    style_seed: int | None = None,
    target_root: str | Path | None = None,
    target_format: str = "cityscapes",
    target_limit: int | None = None,
) -> PipelineConfig:
    """The demo's pipeline config: the scale preset, then the config file, then the command-line options."""
    overrides: dict[str, Any] = {"seed": seed, "style_seed": style_seed}
    if target_root is not None:
        data = {
            "kind": "dataset",
            "format": target_format,
            "root": str(Path(target_root).resolve()),
            "split": "train",
            "limit": target_limit,
        }
        # a user's target may have no labelled val images here: evaluate on the labelled train frames
        overrides.update({"target": data, "val": data})
    return load_pipeline_config(config_path, scale, **overrides)


def run_demo(cfg: PipelineConfig, out: str | Path, resume: bool = False) -> dict[str, Any]:
    """Run the pipeline locally into ``out`` (``resume``: keep the steps an earlier run there finished);
    returns results.json's content."""
    from urbangen.io import atomic_path, write_json_atomic
    from urbangen.pipeline_cli import run_local

    out = Path(out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    started = time.time()
    outputs = run_local(cfg, out / "workspace", resume)
    for name, target in (("results", out / "results.json"), ("report", out / "report.html")):
        with atomic_path(target) as tmp:
            shutil.copyfile(outputs[name], tmp)
    results = json.loads((out / "results.json").read_text())
    results["total_seconds"] = time.time() - started  # this invocation's; steps reused by --resume cost ~0
    results["resumed"] = resume
    write_json_atomic(out / "results.json", results, sort_keys=False)
    return results


@click.command("demo")
@click.option("--out", type=click.Path(file_okay=False), default="runs/demo", show_default=True)
@click.option("--scale", type=click.Choice(["smoke", "demo", "full"]), default="demo", show_default=True)
@click.option("--seed", type=int, default=None, help="world layout seed (default 0)")
@click.option("--style-seed", type=int, default=None, help="target appearance seed (default 1)")
@click.option(
    "--config",
    "config_path",
    type=click.Path(dir_okay=False),
    default=None,
    help="pipeline config YAML applied over the scale preset",
)
@click.option(
    "--target-root",
    type=click.Path(file_okay=False),
    default=None,
    help="a target dataset folder to use instead of the world's real style",
)
@click.option("--target-format", default="cityscapes", show_default=True)
@click.option("--target-limit", type=int, default=None, help="use only the first N target images")
@click.option(
    "--resume",
    is_flag=True,
    help="keep the steps an earlier run into --out finished (same config, inputs and code) and run the rest; "
    "without it the earlier runs' step outputs there are deleted and every step runs again",
)
def demo_command(
    out: str,
    scale: str,
    seed: int | None,
    style_seed: int | None,
    config_path: str | None,
    target_root: str | None,
    target_format: str,
    target_limit: int | None,
    resume: bool,
) -> None:
    """Run the whole method on the built-in benchmark and write OUT/results.json and OUT/report.html."""
    cfg = demo_config(scale, config_path, seed, style_seed, target_root, target_format, target_limit)
    click.echo(f"urbangen demo: scale={cfg.scale} seed={cfg.seed} style_seed={cfg.style_seed} out={out}", err=True)
    results = run_demo(cfg, out, resume)
    click.echo(f"\n{'method':<20} {'mIoU':>6}")
    for method, result in results["methods"].items():
        std = result.get("mIoU_std")
        click.echo(f"{method:<20} {result['mIoU']:6.1f}" + (f" ± {std:.1f}" if std is not None else ""))
    click.echo(
        f"\nwrote {Path(out) / 'results.json'} and {Path(out) / 'report.html'} ({results['total_seconds']:.0f} s)"
    )
