"""The HTML report is self-contained and shows the table, chart, image rows and timings."""

from __future__ import annotations

import numpy as np

from urbangen.io import write_png
from urbangen.labels import cityscapes19
from urbangen.report import markdown_table, write_report


def test_report_inlines_images_and_shows_differences(tmp_path):
    classes = cityscapes19().classes
    results = {
        "scale": "smoke",
        "seed": 0,
        "methods": {
            "source_only": {"mIoU": 20.0, "per_class": dict.fromkeys(classes, 20.0)},
            "fda": {"mIoU": 24.0, "per_class": dict.fromkeys(classes, 24.0)},
            "urbangen": {"mIoU": 31.5, "per_class": {**dict.fromkeys(classes, 30.0), "bus": None}},
        },
        "timings": {"world": 1.5, "train": 10.0},
    }
    rgb = np.zeros((8, 16, 3), np.uint8)
    label = np.full((8, 16), 13, np.uint8)
    write_png(tmp_path / "a.png", rgb)
    write_png(tmp_path / "l.png", label)
    examples = [
        {
            "id": "world_000000_000019",
            "columns": {
                "source label": {"path": str(tmp_path / "l.png"), "kind": "label"},
                "urbangen": {"path": str(tmp_path / "a.png"), "caption": "MCOC 0.81"},
                "missing": {"path": str(tmp_path / "nope.png")},
            },
        }
    ]
    out = write_report(results, tmp_path / "report.html", examples)
    page = out.read_text()
    assert "+11.5" in page and "+7.5" in page and "+4.0" in page  # differences to source-only and to FDA
    assert "Δ vs Source only" in page and "Δ vs FDA" in page and "-4.0" not in page  # FDA not against itself
    assert page.count("data:image/png;base64,") == 3  # chart + two example images, nothing linked
    assert "MCOC 0.81" in page and "11.5" in page and "world_000000_000019" in page
    assert 'src="http' not in page and "<link" not in page
    table = markdown_table(results["methods"]).splitlines()  # the Kubeflow UI's summary
    assert table[0] == "| method | mIoU | Δ Source only | Δ FDA translation |"
    assert table[2:] == [
        "| Source only (sim) | 20.0 | | |",
        "| FDA translation | 24.0 | +4.0 | |",
        "| urbangen (full) | 31.5 | +11.5 | +7.5 |",
    ]


def test_report_says_whether_figures_are_one_training_seed_or_a_mean():
    from urbangen.report import render_report

    one = {"methods": {"source_only": {"mIoU": 20.0}, "urbangen": {"mIoU": 21.0}}}
    assert "one training seed per method" in render_report(one)
    several = {"methods": {"source_only": {"mIoU": 20.0, "mIoU_std": 0.4}, "urbangen": {"mIoU": 21.0, "mIoU_std": 0.3}}}
    page = render_report(several)
    assert "21.0 ± 0.3" in page and "over the training seeds" in page and "one training seed" not in page
