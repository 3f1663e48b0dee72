"""``urbangen train``, ``predict``, ``pseudo-label`` and ``evaluate``."""

from __future__ import annotations

import json
from pathlib import Path

import click
import yaml

from urbangen.errors import UrbangenError

PATH = click.Path(path_type=Path)


def _overrides(pairs: tuple[str, ...]) -> dict:
    out = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise UrbangenError(f"--set expects key=value, got {pair!r}")
        out[key.strip()] = yaml.safe_load(value)
    return out


def _source(format: str, root: Path, split: str | None, mapping_file: Path | None):
    from urbangen.segment.data import DataSource

    return DataSource(format=format, root=root, split=split, mapping_file=mapping_file)


def _data_options(func):
    func = click.option("--mapping-file", type=PATH, help="Label mapping YAML (formats that need one).")(func)
    func = click.option("--split", default=None, help="Split to read (default: all).")(func)
    func = click.option("--root", type=PATH, required=True, help="Dataset root folder.")(func)
    func = click.option("--format", "format_", default="cityscapes", show_default=True, help="Dataset format.")(func)
    return func


@click.command()
@click.option("--config", "config_path", type=PATH, required=True, help="YAML of TrainConfig (docs/segmentation.md).")
@click.option("--out", type=PATH, required=True, help="Run folder: model/ and checkpoints/ (rerun to resume).")
@click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE", help="Override a top-level config field.")
def train(config_path: Path, out: Path, overrides: tuple[str, ...]) -> None:
    """Train a SegFormer segmenter; resumes from OUT/checkpoints when rerun."""
    from urbangen.config import load_config
    from urbangen.segment.train import TrainConfig
    from urbangen.segment.train import train as run

    cfg = load_config(TrainConfig, config_path, _overrides(overrides))
    click.echo(str(run(cfg, out)))


@click.command()
@click.option("--model", "model_dir", type=PATH, required=True, help="Model folder written by `urbangen train`.")
@_data_options
@click.option("--out", type=PATH, required=True, help="Folder for <id>.png trainId predictions.")
@click.option("--mode", type=click.Choice(["whole", "slide"]), default="whole", show_default=True)
@click.option("--batch-size", type=click.IntRange(min=1), default=2, show_default=True)
@click.option("--device", default="cpu", show_default=True)
@click.option("--color", is_flag=True, help="Also write colourised maps to OUT/color/.")
def predict(
    model_dir: Path,
    format_: str,
    root: Path,
    split: str | None,
    mapping_file: Path | None,
    out: Path,
    mode: str,
    batch_size: int,
    device: str,
    color: bool,
) -> None:
    """Predict trainIds for every image of a dataset (skips images already predicted)."""
    from urbangen.segment.predict import predict_dataset

    summary = predict_dataset(
        model_dir, _source(format_, root, split, mapping_file), out, mode, batch_size, device, colorize=color
    )
    click.echo(json.dumps(summary))


@click.command("pseudo-label")
@click.option("--model", "model_dir", type=PATH, required=True, help="Model folder written by `urbangen train`.")
@_data_options
@click.option("--out", type=PATH, required=True, help="Pseudo-label folder (usable as a source's labels_dir).")
@click.option("--threshold", type=click.FloatRange(0, 1), default=0.9, show_default=True)
@click.option("--mode", type=click.Choice(["global", "classwise"]), default="global", show_default=True)
@click.option("--percentile", type=click.FloatRange(0, 100), default=50.0, show_default=True, help="classwise mode.")
@click.option("--predict-mode", type=click.Choice(["whole", "slide"]), default="whole", show_default=True)
@click.option("--batch-size", type=click.IntRange(min=1), default=2, show_default=True)
@click.option("--device", default="cpu", show_default=True)
@click.option(
    "--prior-root",
    type=PATH,
    help="Labelled dataset (normally the segmenter's source) whose class layout weighs the softmax (CBST-SP).",
)
@click.option("--prior-format", default="cityscapes", show_default=True, help="Format of --prior-root.")
@click.option("--prior-split", default="train", show_default=True, help="Split of --prior-root.")
@click.option(
    "--prior-weight", type=click.FloatRange(min=0), default=1.0, show_default=True, help="Exponent of the prior."
)
@click.option(
    "--class-balance",
    is_flag=True,
    help="With --prior-root: no class takes more of the target than its share of the prior's dataset.",
)
def pseudo_label(
    model_dir: Path,
    format_: str,
    root: Path,
    split: str | None,
    mapping_file: Path | None,
    out: Path,
    threshold: float,
    mode: str,
    percentile: float,
    predict_mode: str,
    batch_size: int,
    device: str,
    prior_root: Path | None,
    prior_format: str,
    prior_split: str,
    prior_weight: float,
    class_balance: bool,
) -> None:
    """Write confidence-thresholded pseudo-labels, confidence maps and a per-class summary."""
    from urbangen.segment.pseudo import pseudo_label as run

    source = _source(format_, root, split, mapping_file)
    prior = _source(prior_format, prior_root, prior_split, None) if prior_root else None
    summary = run(
        model_dir,
        source,
        out,
        threshold,
        mode,
        percentile,
        batch_size,
        device,
        predict_mode,
        prior,
        prior_weight,
        class_balance,
    )
    click.echo(json.dumps(summary))


@click.command()
@click.option("--pred", "pred_dir", type=PATH, required=True, help="Folder of <id>.png trainId predictions.")
@click.option("--gt", "gt_dir", type=PATH, help="Folder of <id>.png trainId ground truth.")
@click.option("--gt-format", default=None, help="Instead of --gt: read ground truth from a dataset of this format.")
@click.option("--gt-root", type=PATH, help="Dataset root for --gt-format.")
@click.option("--gt-split", default=None, help="Split for --gt-format.")
@click.option("--json", "as_json", is_flag=True, help="Print the result as one JSON object.")
@click.option("--classes", default=None, help="mIoU over a subset: synthia16, synthia13, or comma-separated names/ids.")
@click.option("--charts", type=PATH, help="Write per_class_iou.png and confusion_matrix.png here.")
@click.option("--out", "out_file", type=PATH, help="Also save the JSON result to this file.")
def evaluate(
    pred_dir: Path,
    gt_dir: Path | None,
    gt_format: str | None,
    gt_root: Path | None,
    gt_split: str | None,
    as_json: bool,
    classes: str | None,
    charts: Path | None,
    out_file: Path | None,
) -> None:
    """Score predictions against ground truth with the official Cityscapes semantics."""
    from urbangen.labels import cityscapes19
    from urbangen.segment import evaluate as ev

    subset = ev.parse_classes(classes, cityscapes19())
    if (gt_dir is None) == (gt_format is None and gt_root is None):
        raise UrbangenError("give either --gt DIR or --gt-format F --gt-root R [--gt-split S]")
    if gt_dir is not None:
        result = ev.evaluate_dirs(pred_dir, gt_dir, subset)
    else:
        if gt_root is None:
            raise UrbangenError("--gt-format needs --gt-root")
        result = ev.evaluate_source(pred_dir, _source(gt_format or "cityscapes", gt_root, gt_split, None), subset)
    if out_file is not None:
        ev.save_result(result, out_file)
    if charts is not None:
        ev.write_charts(result, charts)
    if as_json:
        click.echo(json.dumps(result))
        return

    def fmt(value: float | None) -> str:
        return "     -" if value is None else f"{value:6.2f}"

    for name, value in result["per_class"].items():
        click.echo(f"{name:>14}: {fmt(value)}")
    click.echo(f"{'mIoU':>14}: {fmt(result['mIoU'])}  ({len(result['classes'])} classes)")
    click.echo(f"{'pixel acc.':>14}: {fmt(result['pixel_accuracy'])}  ({result['n_images']} images)")
