"""The results report: one self-contained HTML page (images inlined) built from ``results.json``.

It shows the results table with differences to source-only, a per-class IoU chart, image rows
(source label | sim render | FDA | urbangen candidates with MCOC | rectified label | prediction |
target example) and the timings of every step.
"""

from __future__ import annotations

import base64
import html
import io
from pathlib import Path
from typing import Any

import numpy as np

from urbangen.io import read_label, read_rgb, write_text_atomic
from urbangen.labels import Taxonomy, cityscapes19

METHOD_TITLES = {
    "source_only": "Source only (sim)",
    "fda": "FDA translation",
    "urbangen_nofilter": "urbangen, no filter / rectification",
    "urbangen": "urbangen (full)",
    "oracle": "Oracle (target ground truth)",
}

CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:24px;color:#222;max-width:1400px}
h1{margin-bottom:4px} .sub{color:#666;margin-top:0}
table{border-collapse:collapse;margin:12px 0} td,th{padding:4px 10px;border-bottom:1px solid #ddd;text-align:right}
th:first-child,td:first-child{text-align:left} .pos{color:#0a7d2c} .neg{color:#b3261e} .best{font-weight:700}
.rows img{height:64px;margin:1px;image-rendering:pixelated} .rows td{text-align:center;font-size:12px}
.small{font-size:12px;color:#555}
"""


def _png_data_uri(array: np.ndarray) -> str:
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def _figure_data_uri(fig: Any) -> str:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=100, bbox_inches="tight")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def per_class_chart(methods: dict[str, dict], taxonomy: Taxonomy) -> str:
    """A grouped bar chart of per-class IoU for every method, as a PNG data URI."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(methods)
    x = np.arange(taxonomy.num_classes)
    width = 0.8 / max(len(names), 1)
    fig, ax = plt.subplots(figsize=(14, 3.6))
    for i, name in enumerate(names):
        per_class = methods[name].get("per_class", {})
        values = [per_class.get(c) if per_class.get(c) is not None else 0.0 for c in taxonomy.classes]
        ax.bar(x + (i - (len(names) - 1) / 2) * width, values, width, label=METHOD_TITLES.get(name, name))
    ax.set_xticks(x, taxonomy.classes, rotation=45, ha="right")
    ax.set_ylabel("IoU (%)")
    ax.set_ylim(0, 100)
    ax.legend(ncol=min(len(names), 5), fontsize=8, loc="upper right")
    ax.grid(axis="y", alpha=0.3)
    uri = _figure_data_uri(fig)
    plt.close(fig)
    return uri


BASELINES = ("source_only", "fda")  # the tables show each method's difference to these


def differences(methods: dict[str, dict]) -> tuple[list[str], dict[str, dict[str, float]]]:
    """The baselines present, and per method its mIoU minus each baseline's; a baseline's row has no
    difference to itself nor to the baselines listed after it."""
    bases = [b for b in BASELINES if methods.get(b, {}).get("mIoU") is not None]
    diffs = {
        name: {
            b: result["mIoU"] - methods[b]["mIoU"]
            for b in bases
            if result.get("mIoU") is not None and name not in BASELINES[: BASELINES.index(b) + 1]
        }
        for name, result in methods.items()
    }
    return bases, diffs


def _base_title(name: str) -> str:
    return METHOD_TITLES.get(name, name).split(" (")[0]


def markdown_table(methods: dict[str, dict]) -> str:
    """The results table in Markdown (the Kubeflow UI's summary)."""
    bases, diffs = differences(methods)
    lines = [
        "| method | mIoU |" + "".join(f" Δ {_base_title(b)} |" for b in bases),
        "|---|---|" + "---|" * len(bases),
    ]
    for name, result in methods.items():
        miou = "—" if result.get("mIoU") is None else f"{result['mIoU']:.1f}"
        cells = "".join(f" {diffs[name][b]:+.1f} |" if b in diffs[name] else " |" for b in bases)
        lines.append(f"| {METHOD_TITLES.get(name, name)} | {miou} |{cells}")
    return "\n".join(lines) + "\n"


def _results_table(methods: dict[str, dict]) -> str:
    bases, diffs = differences(methods)
    best = max((m["mIoU"] for m in methods.values() if m.get("mIoU") is not None), default=None)
    rows = []
    for name, result in methods.items():
        miou = result.get("mIoU")
        std = result.get("mIoU_std")
        cell = "—" if miou is None else f"{miou:.1f}" + (f" ± {std:.1f}" if std is not None else "")
        deltas = ""
        for b in bases:
            diff = diffs[name].get(b)
            deltas += (
                "<td></td>"
                if diff is None
                else f'<td><span class="{"pos" if diff >= 0 else "neg"}">{diff:+.1f}</span></td>'
            )
        cls = ' class="best"' if miou is not None and miou == best and name != "oracle" else ""
        acc = result.get("pixel_accuracy")
        rows.append(
            f"<tr><td>{html.escape(METHOD_TITLES.get(name, name))}</td><td{cls}>{cell}</td>{deltas}"
            f"<td>{'' if acc is None else f'{acc:.1f}'}</td></tr>"
        )
    if any(m.get("mIoU_std") is not None for m in methods.values()):
        note = "mean ± standard deviation over the training seeds (train_seeds)"
    else:
        note = (
            "one training seed per method: methods closer than the spread of a method over training seeds "
            "(about 1 point at demo scale, docs/BENCHMARKS.md) are not ranked by this table; set train_seeds "
            "in --config for mean ± sd"
        )
    return (
        "<table><tr><th>method</th><th>mIoU (%)</th>"
        + "".join(f"<th>Δ vs {html.escape(_base_title(b))}</th>" for b in bases)
        + "<th>pixel acc. (%)</th></tr>"
        + "".join(rows)
        + f"</table><p class='small'>{html.escape(note)}</p>"
    )


def _image_rows(examples: list[dict], taxonomy: Taxonomy) -> str:
    """Each example maps column title -> {"path", "kind": "rgb"|"label", "caption"}."""
    if not examples:
        return "<p class='small'>no example images recorded</p>"
    titles = list(examples[0]["columns"])
    head = "".join(f"<th>{html.escape(t)}</th>" for t in titles)
    body = []
    for example in examples:
        cells = []
        for title in titles:
            column = example["columns"].get(title)
            if not column or not Path(column["path"]).is_file():
                cells.append("<td>—</td>")
                continue
            path = Path(column["path"])
            array = taxonomy.colorize(read_label(path)) if column.get("kind") == "label" else read_rgb(path)
            caption = html.escape(column.get("caption", ""))
            cells.append(f'<td><img src="{_png_data_uri(array)}"><br>{caption}</td>')
        body.append(f"<tr><td class='small'>{html.escape(example.get('id', ''))}</td>{''.join(cells)}</tr>")
    return f"<table class='rows'><tr><th>id</th>{head}</tr>{''.join(body)}</table>"


def _timings(timings: dict[str, float]) -> str:
    total = sum(timings.values())
    rows = "".join(f"<tr><td>{html.escape(k)}</td><td>{v:.1f}</td></tr>" for k, v in timings.items())
    return f"<table><tr><th>step</th><th>seconds</th></tr>{rows}<tr><th>total</th><th>{total:.1f}</th></tr></table>"


def render_report(results: dict[str, Any], examples: list[dict] | None = None) -> str:
    """The report page as an HTML string."""
    taxonomy = Taxonomy.from_dict(results["taxonomy"]) if "taxonomy" in results else cityscapes19()
    methods = results["methods"]
    meta = ", ".join(f"{k}={results[k]}" for k in ("scale", "seed", "style_seed") if results.get(k) is not None)
    target = results.get("target") or {}
    if target.get("kind") == "dataset":
        meta += f", target={target.get('format')}:{target.get('root')}"
    generation = results.get("generation", {})
    gen_line = ""
    if generation:
        gen_line = (
            "<p class='small'>generation: "
            + html.escape(
                ", ".join(
                    f"{k}={round(v, 3) if isinstance(v, float) else v}"
                    for k, v in generation.items()
                    if not isinstance(v, dict)
                )
            )
            + "</p>"
        )
    run = results.get("mlflow_run_id")
    return f"""<!doctype html><html><head><meta charset="utf-8"><title>urbangen report</title>
<style>{CSS}</style></head><body>
<h1>urbangen results</h1><p class="sub">{html.escape(meta)}{f" · MLflow run {html.escape(run)}" if run else ""}</p>
<h2>Segmentation on the target validation set</h2>{_results_table(methods)}{gen_line}
<h2>Per-class IoU</h2><img style="max-width:100%" src="{per_class_chart(methods, taxonomy)}">
<h2>Examples</h2>{_image_rows(examples or [], taxonomy)}
<h2>Timings</h2>{_timings(results.get("timings", {}))}
</body></html>"""


def write_report(results: dict[str, Any], out: str | Path, examples: list[dict] | None = None) -> Path:
    out = Path(out)
    write_text_atomic(out, render_report(results, examples))
    return out
