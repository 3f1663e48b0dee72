"""Prediction and pseudo-labels: shapes, modes, thresholds, summaries, resume, taxonomy checks, CLI."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
from click.testing import CliRunner
from safetensors.torch import load_file, save_file

from urbangen.cli import main
from urbangen.datasets.writer import DatasetWriter
from urbangen.errors import UrbangenError
from urbangen.io import read_label
from urbangen.labels import Taxonomy
from urbangen.segment.data import DataSource, open_source
from urbangen.segment.evaluate import evaluate_source
from urbangen.segment.predict import Predictor, predict_dataset
from urbangen.segment.prior import apply_prior, fit_class_weights, reweigh, spatial_prior
from urbangen.segment.pseudo import class_thresholds, labelling, pseudo_label


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


def test_spatial_prior_counts_the_source_layout(tmp_path):
    writer = DatasetWriter(tmp_path, split="train", city="layout")
    for i in range(3):
        label = np.zeros((8, 16), np.uint8)  # road below
        label[:4] = 10  # sky above
        label[0, 0] = 255  # ignore is not counted
        writer.write(f"layout_{i:06d}_000000", np.zeros((8, 16, 3), np.uint8), label, {})
    source = DataSource(root=tmp_path, split="train")
    prior = spatial_prior(source, grid=(8, 16), progress=False)
    assert prior.shape == (19, 8, 16) and np.allclose(prior.sum(axis=0), 1)
    n = 3 + 19  # three maps, plus one (Laplace) count per class
    assert np.allclose(prior[10, :4, 1:], 4 / n) and np.allclose(prior[0, :4, 1:], 1 / n)
    assert np.allclose(prior[0, 4:], 4 / n) and np.allclose(prior[10, 4:], 1 / n)
    assert np.allclose(prior[:, 0, 0], 1 / 19)  # only ignore there: uniform
    coarse = spatial_prior(source, grid=(2, 4), progress=False)  # positions are normalised
    assert (coarse[10, 0] == coarse.max(axis=0)[0]).all() and (coarse[0, 1] == coarse.max(axis=0)[1]).all()


def test_apply_prior_tips_close_calls_by_position_only():
    import torch

    probs = torch.tensor([0.6, 0.4])[None, :, None, None].repeat(1, 1, 2, 2)
    probs[0, :, 1, 0] = torch.tensor([0.99, 0.01])
    # class 1 holds 75% of the top row and 25% of the bottom row: its share is 50% on average
    prior = np.array([[[0.25], [0.75]], [[0.75], [0.25]]], np.float32)  # 2 classes x 2 rows x 1 column
    out = apply_prior(probs, prior)
    assert torch.allclose(out.sum(dim=1), torch.ones(1, 2, 2))
    # top: 0.6 * (0.25 / 0.5) vs 0.4 * (0.75 / 0.5): class 1 wins with 0.6 / 0.9
    assert torch.allclose(out[0, :, 0, 0], torch.tensor([1 / 3, 2 / 3]))
    assert out[0, :, 1, 0].argmax() == 0 and out[0, :, 1, 1].argmax() == 0  # bottom: class 0, more so
    assert torch.allclose(apply_prior(probs, prior, weight=0.0), probs)
    # a class that is as frequent everywhere changes nothing: the softmax already knows how common it is
    flat = np.array([0.2, 0.8], np.float32)[:, None, None].repeat(2, axis=1)
    assert torch.allclose(apply_prior(probs, flat), probs)
    with pytest.raises(UrbangenError, match="1 classes but the segmenter predicts 2"):
        apply_prior(probs, prior[:1])


def test_pseudo_labels_with_a_spatial_prior(toy_model, toy_root, tmp_path):
    source = DataSource(root=toy_root, split="train")
    opened = open_source(source)
    plain = pseudo_label(toy_model, source, tmp_path / "plain", threshold=0.5)
    flipped = DatasetWriter(tmp_path / "flipped", split="train", city="flipped")  # sky below, road above
    for i in range(len(opened)):
        image, label = opened.load(i)
        flipped.write(f"flipped_{i:06d}_000000", image[::-1], label[::-1], {})
    prior_source = DataSource(root=tmp_path / "flipped", split="train")
    out = tmp_path / "prior"
    weighed = pseudo_label(toy_model, source, out, threshold=0.5, spatial_prior=prior_source, prior_weight=3)
    assert weighed["spatial_prior"]["root"] == str(tmp_path / "flipped") and plain["spatial_prior"] is None
    # the stored predictions are the model's softmax weighed by the prior counted from the flipped source
    prior = np.load(out / "prior.npy")
    assert prior.shape == (19, 128, 256) and prior[10, -1].mean() > prior[10, 0].mean()
    images = np.stack([opened.load_image(i) for i in range(len(opened))])
    expected, _ = Predictor.from_pretrained(toy_model).predict(images, prior=prior, prior_weight=3)
    ids = [s.id for s in opened.samples]
    stored = np.stack([read_label(out / "prediction" / f"{i}.png") for i in ids])
    unweighed = np.stack([read_label(tmp_path / "plain" / "prediction" / f"{i}.png") for i in ids])
    assert (stored == expected).all() and (stored != unweighed).mean() > 0.05
    # the stored predictions were made with this prior: resuming with other settings is refused
    with pytest.raises(UrbangenError, match="prior_weight"):
        pseudo_label(toy_model, source, out, threshold=0.5, spatial_prior=prior_source, prior_weight=1)
    with pytest.raises(UrbangenError, match="spatial_prior"):
        pseudo_label(toy_model, source, out, threshold=0.5)
    assert pseudo_label(toy_model, source, out, threshold=0.9, spatial_prior=prior_source, prior_weight=3)


def test_fit_class_weights_caps_over_predicted_classes():
    """Class 0 wins 70% of the pixels where the source gives it 30%: its weight drops until it takes no
    more than that, and the pixels go to their runner-up; a class never over its share keeps weight 1."""
    rng = np.random.default_rng(0)
    n = 20000
    truth = rng.choice(3, size=n, p=[0.3, 0.5, 0.2])
    probs = rng.dirichlet(np.ones(3), size=n) * 0.5
    probs[np.arange(n), truth] += 0.3
    biased = probs * np.array([4.0, 1.0, 1.0])  # the segmenter's bias: class 0 looks likely everywhere
    biased /= biased.sum(axis=1, keepdims=True)
    shares = np.array([0.3, 0.5, 0.2])
    before = np.bincount(biased.argmax(axis=1), minlength=3) / n
    weights = fit_class_weights(biased, shares)
    after = np.bincount((biased * weights).argmax(axis=1), minlength=3) / n
    assert before[0] > 0.6 and np.allclose(after, shares, atol=0.01) and weights[0] < 0.5
    assert weights[1] > 0.99 and (weights > 0).all() and (weights <= 1).all()
    assert ((biased * weights).argmax(axis=1) == truth).mean() > (biased.argmax(axis=1) == truth).mean() + 0.2
    # a class the arg-max never picks, and shares the target already keeps, change nothing
    kept = np.array([[0.6, 0.3, 0.1], [0.3, 0.6, 0.1]])
    assert fit_class_weights(kept, np.array([0.5, 0.5, 0.0])).tolist() == [1.0, 1.0, 1.0]
    with pytest.raises(UrbangenError, match="N x 4 posteriors"):
        fit_class_weights(probs, np.ones(4))


def test_reweigh_scales_and_renormalises():
    import torch

    probs = torch.tensor([0.6, 0.4])[None, :, None, None].repeat(1, 1, 2, 2)
    out = reweigh(probs, np.array([0.5, 1.0]))
    assert torch.allclose(out[0, :, 0, 0], torch.tensor([0.3 / 0.7, 0.4 / 0.7]))
    assert torch.allclose(reweigh(probs), probs)
    with pytest.raises(UrbangenError, match="3 class weights for a segmenter of 2 classes"):
        reweigh(probs, np.ones(3))


def test_pseudo_labels_with_class_balance(toy_model, toy_root, tmp_path):
    """A source whose maps are almost all road: class balance takes the target's sky down to the source's
    share and gives those pixels to the runner-up; the weights are stored, summarised and reused."""
    source = DataSource(root=toy_root, split="train")
    opened = open_source(source)
    roads = DatasetWriter(tmp_path / "roads", split="train", city="roads")
    for i in range(len(opened)):
        image, label = opened.load(i)
        label = np.zeros_like(label)
        label[0, :4] = 10  # a speck of sky: its share is tiny
        roads.write(f"roads_{i:06d}_000000", image, label, {})
    prior_source = DataSource(root=tmp_path / "roads", split="train")
    kwargs = {"threshold": 0.5, "spatial_prior": prior_source, "prior_weight": 0.0}
    plain = pseudo_label(toy_model, source, tmp_path / "plain", **kwargs)
    out = tmp_path / "balanced"
    balanced = pseudo_label(toy_model, source, out, class_balance=True, **kwargs)
    record = json.loads((out / "class_weights.json").read_text())
    assert balanced["class_balance"] and record["shares_before"]["sky"] > 0.2
    assert record["shares_after"]["sky"] <= record["source_shares"]["sky"] + 0.01
    assert balanced["class_weights"]["sky"] < 0.01 < 0.9 < balanced["class_weights"]["road"]
    assert balanced["predicted_pixels"]["sky"] < plain["predicted_pixels"]["sky"] / 5
    assert balanced["predicted_pixels"]["road"] > plain["predicted_pixels"]["road"]
    # the folder says how it labelled: a prediction with those settings gives its stored arg-max again
    settings = labelling(out)
    assert set(settings) == {"mode", "prior", "prior_weight", "class_weights"}
    images = np.stack([opened.load(i)[0] for i in range(len(opened))])
    pred, _ = Predictor.from_pretrained(toy_model).predict(images, **settings)
    assert np.array_equal(pred, np.stack([read_label(out / "prediction" / f"{s.id}.png") for s in opened.samples]))
    assert set(labelling(tmp_path / "plain")) == {"mode", "prior", "prior_weight"}
    with pytest.raises(UrbangenError, match=r"no inference\.json"):
        labelling(tmp_path / "roads")
    # resuming reuses the stored weights; other settings are refused
    (out / "prediction" / f"{opened.samples[0].id}.png").unlink()
    assert pseudo_label(toy_model, source, out, class_balance=True, **kwargs) == balanced
    with pytest.raises(UrbangenError, match="class_balance"):
        pseudo_label(toy_model, source, out, **kwargs)
    with pytest.raises(UrbangenError, match="class_balance needs spatial_prior"):
        pseudo_label(toy_model, source, tmp_path / "none", threshold=0.5, class_balance=True)
    # the weights fit this segmenter's posterior: another one neither resumes the folder nor applies them
    other = tmp_path / "other"
    shutil.copytree(toy_model, other)
    weights_file = next(other.rglob("*.safetensors"))
    tensors = load_file(weights_file)
    save_file({k: v + 0.01 if v.is_floating_point() else v for k, v in tensors.items()}, weights_file)
    with pytest.raises(UrbangenError, match="predictions of another segmenter"):
        pseudo_label(other, source, out, class_balance=True, **kwargs)
    with pytest.raises(UrbangenError, match=f"labelled by another segmenter than {other}"):
        labelling(out, segmenter=other)
    assert set(labelling(out, segmenter=toy_model)) == set(settings)


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
    prior = ["--prior-root", str(toy_root), "--prior-weight", "0.5", "--class-balance"]
    out = runner.invoke(main, ["pseudo-label", *common, "--out", str(tmp_path / "sp"), *prior])
    assert out.exit_code == 0, out.output
    assert json.loads(out.stdout)["prior_weight"] == 0.5 and (tmp_path / "sp" / "prior.npy").is_file()
    assert json.loads(out.stdout)["class_balance"] and (tmp_path / "sp" / "class_weights.json").is_file()
    bad = runner.invoke(main, ["predict", "--model", str(tmp_path), "--root", str(toy_root), "--out", str(tmp_path)])
    assert bad.exit_code == 2 and "has no config.json" in bad.output
