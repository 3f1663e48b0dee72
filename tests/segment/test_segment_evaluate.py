"""Evaluation: equality with the official Cityscapes script, official edge cases, bad input, CLI."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from click.testing import CliRunner

from urbangen.cli import main
from urbangen.errors import UrbangenError
from urbangen.io import read_label, write_png
from urbangen.labels import cityscapes19, cityscapes_label_ids
from urbangen.segment.evaluate import ConfusionMatrix, evaluate_dirs, evaluate_pairs, parse_classes, write_charts


def _perturb(gt: np.ndarray, rng: np.random.Generator, fp_only: int, never: int) -> np.ndarray:
    """A plausible, imperfect prediction: GT with random rectangles of wrong classes and of 'no prediction'."""
    pred = gt.copy()
    h, w = gt.shape
    pred[gt == 255] = rng.integers(0, 19, int((gt == 255).sum()))  # predictions on void pixels must not count
    for _ in range(40):
        y, x = int(rng.integers(0, h - 64)), int(rng.integers(0, w - 64))
        value = int(rng.choice([*range(19), 255]))
        pred[y : y + int(rng.integers(8, 64)), x : x + int(rng.integers(8, 64))] = value
    pred[pred == fp_only] = 0
    pred[:32, :32] = fp_only  # a class absent from the GT, predicted once: false positives only
    pred[pred == never] = 1  # a class absent from both
    return pred


def test_equals_official_cityscapes_evaluation(cityscapes_root, tmp_path):
    from cityscapesscripts.evaluation import evalPixelLevelSemanticLabeling as official  # noqa: N813
    from cityscapesscripts.helpers.labels import trainId2label

    mapping = cityscapes_label_ids()
    fp_only, never = 16, 17  # train, motorcycle: absent from the frames chosen below
    gt_files, gts = [], []
    for path in sorted((cityscapes_root / "gtFine" / "val").glob("*/*_gtFine_labelIds.png")):
        gt = mapping.apply(read_label(path))
        if not np.isin(gt, [fp_only, never]).any() and len(gt_files) < 5:
            gt_files.append(path)
            gts.append(gt)
    assert len(gt_files) == 5, "expected real Cityscapes val labels under realdata"
    to_label_id = np.zeros(256, np.uint8)  # trainId -> labelId; 255 ('no prediction') -> 0 (unlabeled)
    for train_id in range(19):
        to_label_id[train_id] = trainId2label[train_id].id
    rng = np.random.default_rng(0)
    official_preds = []
    for path, gt in zip(gt_files, gts, strict=True):
        sample_id = path.name.replace("_gtFine_labelIds.png", "")
        pred = _perturb(gt, rng, fp_only, never)
        write_png(tmp_path / "gt" / f"{sample_id}.png", gt)
        write_png(tmp_path / "pred" / f"{sample_id}.png", pred)
        official_pred = tmp_path / "official" / f"{sample_id}_pred.png"
        write_png(official_pred, to_label_id[pred])
        official_preds.append(str(official_pred))

    args = official.CArgs()
    vars(args).update(vars(official.args))
    args.quiet, args.JSONOutput, args.evalInstLevelScore, args.evalPixelAccuracy = True, False, False, False
    expected = official.evaluateImgLists(official_preds, [str(p) for p in gt_files], args)

    ours = evaluate_dirs(tmp_path / "pred", tmp_path / "gt")
    assert ours["n_images"] == len(gt_files)
    for name, value in ours["per_class"].items():
        reference = expected["classScores"][name]
        if math.isnan(reference):
            assert value is None, name
        else:
            assert value == pytest.approx(reference * 100, abs=1e-9), name
    assert ours["mIoU"] == pytest.approx(expected["averageScoreClasses"] * 100, abs=1e-9)
    names = cityscapes19().classes
    assert ours["per_class"][names[never]] is None  # neither GT nor prediction: left out
    assert ours["per_class"][names[fp_only]] == 0.0  # false positives only


def test_official_edge_cases():
    cm = ConfusionMatrix(3)
    gt = np.array([[0, 0, 1, 255]], np.uint8)
    pred = np.array([[0, 255, 2, 2]], np.uint8)
    cm.update(pred, gt)
    iou = cm.iou()
    assert iou[0] == pytest.approx(0.5)  # tp 1, fn 1 (predicted ignore)
    assert iou[1] == 0.0  # missed entirely
    assert iou[2] == 0.0  # false positive only; the prediction on the ignore pixel does not count
    assert cm.miou() == pytest.approx(0.5 / 3)
    assert cm.pixel_accuracy() == pytest.approx(1 / 3)
    cm2 = ConfusionMatrix(4)
    cm2.update(pred, gt)
    assert np.isnan(cm2.iou()[3]) and cm2.miou() == pytest.approx(0.5 / 3)  # class 3 left out of the mean
    assert cm2.miou(classes=[0, 3]) == pytest.approx(0.5)


def test_update_accumulates_like_a_loop_over_pixels():
    rng = np.random.default_rng(1)
    gt = rng.choice([*range(19), 255], size=(2, 300, 500)).astype(np.uint8)
    pred = rng.choice([*range(19), 255], size=(2, 300, 500)).astype(np.uint8)
    cm = ConfusionMatrix(19)
    for i in range(2):
        cm.update(pred[i], gt[i])
    expected = np.zeros((19, 20), np.int64)
    valid = gt != 255
    np.add.at(expected, (gt[valid], np.minimum(pred[valid], 19)), 1)
    assert (cm.matrix == expected).all()


def test_bad_values_and_shapes_are_clear_errors():
    cm = ConfusionMatrix(19)
    with pytest.raises(UrbangenError, match=r"p.png: prediction holds values \[19, 40\]"):
        cm.update(np.array([[19, 40, 255]], np.uint8), np.zeros((1, 3), np.uint8), "p.png")
    with pytest.raises(UrbangenError, match=r"ground truth holds values \[20\]"):
        cm.update(np.zeros((1, 3), np.uint8), np.array([[0, 20, 1]], np.uint8))
    with pytest.raises(UrbangenError, match=r"values \[300\]"):
        cm.update(np.array([[300]], np.int32), np.zeros((1, 1), np.uint8))
    with pytest.raises(UrbangenError, match="shape"):
        cm.update(np.zeros((2, 3), np.uint8), np.zeros((3, 2), np.uint8))


def _pair_dirs(tmp_path, n=3, shape=(20, 30)):
    rng = np.random.default_rng(0)
    for i in range(n):
        gt = rng.integers(0, 19, shape).astype(np.uint8)
        write_png(tmp_path / "gt" / f"c_{i}_0.png", gt)
        write_png(tmp_path / "pred" / f"c_{i}_0.png", np.where(rng.random(shape) < 0.8, gt, 1).astype(np.uint8))
    return tmp_path / "pred", tmp_path / "gt"


def test_missing_and_mismatched_files(tmp_path):
    pred_dir, gt_dir = _pair_dirs(tmp_path)
    (pred_dir / "c_0_0.png").unlink()
    write_png(pred_dir / "extra_1_1.png", np.zeros((20, 30), np.uint8))
    with pytest.raises(UrbangenError, match=r"1 ground-truth images have no prediction.*c_0_0.*1 predictions have no"):
        evaluate_dirs(pred_dir, gt_dir)
    (pred_dir / "extra_1_1.png").unlink()
    write_png(pred_dir / "c_0_0.png", np.zeros((10, 30), np.uint8))
    with pytest.raises(UrbangenError, match=r"c_0_0.png is 10x30 but its ground truth .* is 20x30"):
        evaluate_dirs(pred_dir, gt_dir)
    write_png(pred_dir / "c_0_0.png", np.full((20, 30), 77, np.uint8))
    with pytest.raises(UrbangenError, match=r"c_0_0.png: prediction holds values \[77\]"):
        evaluate_dirs(pred_dir, gt_dir)
    with pytest.raises(UrbangenError, match="prediction folder not found"):
        evaluate_dirs(tmp_path / "nope", gt_dir)


def test_subsets_conditions_and_charts(tmp_path):
    tax = cityscapes19()
    assert len(parse_classes("synthia16", tax)) == 16 and len(parse_classes("synthia13", tax)) == 13
    assert parse_classes("road, 2,car", tax) == [0, 2, 13]
    with pytest.raises(UrbangenError, match="no class 'roads'"):
        parse_classes("roads", tax)
    gt = np.array([[0, 1, 2, 3]], np.uint8)
    write_png(tmp_path / "a.png", gt)
    write_png(tmp_path / "b.png", np.array([[0, 1, 0, 0]], np.uint8))
    pairs = [("x", tmp_path / "a.png", gt), ("y", tmp_path / "b.png", gt)]
    result = evaluate_pairs(pairs, tax, classes=[0, 1], groups={"x": "fog", "y": "night"})
    assert result["per_condition"]["fog"]["mIoU"] == 100.0 and result["per_condition"]["fog"]["n_images"] == 1
    assert result["per_condition"]["night"]["mIoU"] == pytest.approx((100 / 3 + 100) / 2)
    assert result["classes"] == ["road", "sidewalk"]
    paths = write_charts(result, tmp_path / "charts")
    assert all(p.stat().st_size > 1000 for p in paths)


def test_cli_evaluate_json_contract(tmp_path):
    pred_dir, gt_dir = _pair_dirs(tmp_path)
    runner = CliRunner()
    out = runner.invoke(main, ["evaluate", "--pred", str(pred_dir), "--gt", str(gt_dir), "--json"])
    assert out.exit_code == 0, out.output
    result = json.loads(out.stdout)
    assert set(result) >= {"mIoU", "per_class", "pixel_accuracy", "n_images"} and result["n_images"] == 3
    assert 0 < result["mIoU"] <= 100 and len(result["per_class"]) == 19
    assert result == evaluate_dirs(pred_dir, gt_dir)
    sub = runner.invoke(
        main, ["evaluate", "--pred", str(pred_dir), "--gt", str(gt_dir), "--json", "--classes", "synthia13"]
    )
    assert len(json.loads(sub.stdout)["classes"]) == 13
    charts = runner.invoke(
        main, ["evaluate", "--pred", str(pred_dir), "--gt", str(gt_dir), "--charts", str(tmp_path / "c")]
    )
    assert charts.exit_code == 0 and "mIoU" in charts.output and (tmp_path / "c" / "confusion_matrix.png").is_file()
    (pred_dir / "c_1_0.png").unlink()
    bad = runner.invoke(main, ["evaluate", "--pred", str(pred_dir), "--gt", str(gt_dir), "--json"])
    assert bad.exit_code == 2 and "no prediction" in bad.output


def test_evaluate_against_a_dataset_label_only_cityscapes(cityscapes_root, tmp_path):
    """--gt-format reads labelIds through the reader (val has no images: labels alone are enough)."""
    mapping = cityscapes_label_ids()
    files = sorted((cityscapes_root / "gtFine" / "val").glob("*/*_gtFine_labelIds.png"))
    for path in files:
        write_png(tmp_path / "pred" / path.name.replace("_gtFine_labelIds", ""), mapping.apply(read_label(path)))
    args = ["evaluate", "--pred", str(tmp_path / "pred"), "--gt-format", "cityscapes", "--gt-root"]
    out = CliRunner().invoke(main, [*args, str(cityscapes_root), "--gt-split", "val", "--json"])
    assert out.exit_code == 0, out.output
    result = json.loads(out.stdout)
    assert result["n_images"] == len(files) and result["mIoU"] == 100.0 and "per_condition" not in result


def test_per_condition_figures_for_acdc(tmp_path):
    rng = np.random.default_rng(0)
    gt_label_ids = np.array([[7, 8, 11, 26]] * 4, np.uint8)  # road, sidewalk, building, car
    for condition, wrong in (("fog", 0), ("night", 2)):
        name = f"GOPR0{condition}_frame_000001"
        write_png(tmp_path / "acdc" / "gt" / condition / "val" / "GOPR0" / f"{name}_gt_labelIds.png", gt_label_ids)
        image = rng.integers(0, 255, (4, 4, 3)).astype(np.uint8)
        write_png(tmp_path / "acdc" / "rgb_anon" / condition / "val" / "GOPR0" / f"{name}_rgb_anon.png", image)
        pred = cityscapes_label_ids().apply(gt_label_ids)
        pred[:, :wrong] = 13  # night: road and sidewalk predicted as car
        write_png(tmp_path / "pred" / f"{name}.png", pred)
    args = ["evaluate", "--pred", str(tmp_path / "pred"), "--gt-format", "acdc", "--gt-root", str(tmp_path / "acdc")]
    out = CliRunner().invoke(main, [*args, "--gt-split", "val", "--json"])
    assert out.exit_code == 0, out.output
    per_condition = json.loads(out.stdout)["per_condition"]
    assert per_condition["fog"]["mIoU"] == 100.0 and per_condition["fog"]["n_images"] == 1
    assert per_condition["night"]["mIoU"] == pytest.approx((0 + 0 + 100 + 100 / 3) / 4)
