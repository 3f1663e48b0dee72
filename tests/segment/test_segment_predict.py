"""Prediction and pseudo-labels: shapes, modes, thresholds, summaries, resume, taxonomy checks, CLI."""

from __future__ import annotations

import json

import numpy as np
import pytest
from click.testing import CliRunner

from urbangen.cli import main
from urbangen.errors import UrbangenError
from urbangen.io import read_label
from urbangen.labels import Taxonomy
from urbangen.segment.data import DataSource, open_source
from urbangen.segment.evaluate import evaluate_source
from urbangen.segment.predict import Predictor, predict_dataset
from urbangen.segment.pseudo import class_thresholds, pseudo_label


def test_predict_shapes_and_modes(toy_model, toy_root):
    predictor = Predictor.from_pretrained(toy_model)
    source = open_source(DataSource(root=toy_root, split="train"))
    images = np.stack([source.load_image(i) for i in range(3)])
    ids, conf = predictor.predict(images, batch_size=2)
    assert ids.shape == (3, 64, 96) and ids.dtype == np.uint8 and conf.dtype == np.float32
    assert ids.max() < 19 and (conf > 1 / 19 - 1e-6).all() and (conf <= 1 + 1e-6).all()
    # the briefly trained model already gets most pixels right
    labels = np.stack([source.load_label(i) for i in range(3)])
    assert (ids == labels)[labels != 255].mean() > 0.7
    slide_ids, _ = predictor.predict(images, mode="slide", crop_size=(48, 48), stride=(32, 32))
    assert slide_ids.shape == ids.shape and (slide_ids == ids).mean() > 0.8
    mixed_ids, _ = predictor.predict([images[0], images[1, :48, :80]])
    assert [m.shape for m in mixed_ids] == [(64, 96), (48, 80)]
    assert (mixed_ids[0] == ids[0]).all()
    with pytest.raises(UrbangenError, match="HxWx3 uint8"):
        predictor.predict(images.astype(np.float32))
    with pytest.raises(UrbangenError, match="mode must be one of"):
        predictor.predict(images, mode="tiles")


def test_predict_dataset_resumes_and_scores(toy_model, toy_root, tmp_path):
    source = DataSource(root=toy_root, split="train")
    summary = predict_dataset(toy_model, source, tmp_path / "pred", colorize=True)
    assert summary["n_images"] == 8 and summary["n_predicted"] == 8
    assert (tmp_path / "pred" / "color" / "toy_000000_000000.png").is_file()
    assert predict_dataset(toy_model, source, tmp_path / "pred")["n_predicted"] == 0
    result = evaluate_source(tmp_path / "pred", source)
    assert result["n_images"] == 8 and result["per_class"]["sky"] > 50


def test_pseudo_labels_global_and_classwise(toy_model, toy_root, tmp_path):
    source = DataSource(root=toy_root, split="train")
    out = tmp_path / "pl"
    summary = pseudo_label(toy_model, source, out, threshold=0.8)
    ids = [s.id for s in open_source(source).samples]
    label, conf = read_label(out / f"{ids[0]}.png"), read_label(out / "confidence" / f"{ids[0]}.png")
    pred = read_label(out / "prediction" / f"{ids[0]}.png")
    kept = label != 255
    assert (conf[kept] >= 204).all() and (conf[~kept] < 204).all() and (label[kept] == pred[kept]).all()
    assert summary["n_images"] == 8 and 0 < summary["kept_fraction"] < 1
    assert sum(summary["kept_pixels"].values()) == sum(int((read_label(out / f"{i}.png") != 255).sum()) for i in ids)
    assert json.loads((out / "summary.json").read_text()) == summary
    strict = pseudo_label(toy_model, source, out, threshold=0.99)  # reuses the stored predictions
    assert sum(strict["kept_pixels"].values()) < sum(summary["kept_pixels"].values())
    classwise = pseudo_label(toy_model, source, out, threshold=1.0, mode="classwise", percentile=50)
    for name, kept_pixels in classwise["kept_pixels"].items():
        predicted = classwise["predicted_pixels"][name]
        assert kept_pixels >= predicted // 2  # at least the most confident half of every class
    # the pseudo-labels are a training source
    opened = open_source(DataSource(root=toy_root, split="train", labels_dir=out))
    assert (opened.load_label(0) == read_label(out / f"{ids[0]}.png")).all()


def test_class_thresholds_from_histogram():
    hist = np.zeros((3, 256), np.int64)
    hist[0, [100, 200]] = [1, 3]  # 25% at 100, 75% at 200
    hist[1, 250] = 10
    thresholds = class_thresholds(hist, percentile=50, threshold=0.9)
    assert thresholds.tolist() == [200, 230, 230]  # capped at ceil(0.9 * 255); class 2 never predicted


def test_model_of_another_taxonomy_is_refused(toy_model, toy_root, tmp_path):
    other = Taxonomy("five", tuple("abcde"), ((0, 0, 0),) * 5)
    with pytest.raises(UrbangenError, match="but five"):
        Predictor.from_pretrained(toy_model, taxonomy=other)
    with pytest.raises(UrbangenError, match="threshold"):
        pseudo_label(toy_model, DataSource(root=toy_root), tmp_path, threshold=2)


def test_cli_predict_and_pseudo_label(toy_model, toy_root, tmp_path):
    runner = CliRunner()
    common = ["--model", str(toy_model), "--root", str(toy_root), "--split", "train"]
    out = runner.invoke(main, ["predict", *common, "--out", str(tmp_path / "p"), "--mode", "slide"])
    assert out.exit_code == 0, out.output
    assert len(list((tmp_path / "p").glob("*.png"))) == 8
    out = runner.invoke(main, ["pseudo-label", *common, "--out", str(tmp_path / "pl"), "--threshold", "0.7"])
    assert out.exit_code == 0, out.output
    assert json.loads(out.stdout)["threshold"] == 0.7
    bad = runner.invoke(main, ["predict", "--model", str(tmp_path), "--root", str(toy_root), "--out", str(tmp_path)])
    assert bad.exit_code == 2 and "has no config.json" in bad.output
