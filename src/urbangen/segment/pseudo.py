"""Confidence-thresholded pseudo-labels for unlabelled images.

Output folder (usable as ``DataSource.labels_dir``)::

    OUT/<id>.png               trainIds where the confidence passes, 255 elsewhere
    OUT/confidence/<id>.png    uint8 round(confidence * 255)
    OUT/prediction/<id>.png    the raw arg-max trainIds (before thresholding)
    OUT/summary.json           thresholds and kept / predicted pixels per class
    OUT/inference.json         what the stored predictions were made with, the segmenter's content digest
                               included (checked when resuming, and by a scorer applying the labelling)
    OUT/prior.npy              the class spatial prior, when one is used
    OUT/class_weights.json     the fitted class weights, with ``class_balance``

``spatial_prior``: a labelled dataset (normally the source the segmenter was trained on) whose class
layout weighs the softmax before the arg-max (after CBST-SP, :mod:`urbangen.segment.prior`).
``class_balance`` (needs ``spatial_prior``): a first pass over a sample of the target's pixels fits
per-class weights under which no class takes more of the target than its share of that dataset
(:func:`urbangen.segment.prior.fit_class_weights`); they weigh the posterior too
(``OUT/class_weights.json``).

Thresholds act on the stored 8-bit confidence (steps of 1/255). ``mode="global"`` keeps pixels with
confidence >= ``threshold``. ``mode="classwise"`` computes, per predicted class c, the ``percentile``-th
percentile t_c of that class's confidences over the whole dataset (class-balanced self-training, CBST)
and keeps pixels with confidence >= min(t_c, threshold): confident pixels always pass, and rare or hard
classes still contribute their most confident pixels.

The expensive pass (inference) skips images whose prediction and confidence already exist, so an
interrupted run resumes; thresholding and the summary are recomputed from the stored maps each time.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np

from urbangen.errors import UrbangenError
from urbangen.io import IGNORE, read_label, write_json_atomic, write_png
from urbangen.segment.data import DataSource, OpenSource, open_source
from urbangen.segment.predict import MODES, Predictor, iter_predictions
from urbangen.segment.prior import class_shares, fit_class_weights, load_or_compute

PSEUDO_MODES = ("global", "classwise")
# how the labels were made (what :func:`labelling` reads back; a scorer applying them digests these files)
INFERENCE_FILE, PRIOR_FILE, WEIGHTS_FILE = "inference.json", "prior.npy", "class_weights.json"
LABELLING_FILES = (INFERENCE_FILE, PRIOR_FILE, WEIGHTS_FILE)
BALANCE_IMAGES = 500  # class balance: at most this many images, evenly spaced, ...
BALANCE_PIXELS = 4096  # ... and about this many pixels of each (a regular grid)


def _u8(threshold: float) -> int:
    return min(255, math.ceil(threshold * 255 - 1e-9))


def class_thresholds(hist: np.ndarray, percentile: float, threshold: float) -> np.ndarray:
    """Per-class uint8 thresholds min(t_c, threshold) from a C x 256 histogram of 8-bit confidences."""
    cap = _u8(threshold)
    out = np.full(hist.shape[0], cap, dtype=np.int64)
    for c, counts in enumerate(hist):
        total = counts.sum()
        if total:
            rank = np.searchsorted(np.cumsum(counts), percentile / 100 * total, side="left")
            out[c] = min(int(rank), cap)
    return out


def segmenter_digest(model_dir: str | Path) -> str:
    """The content digest of a segmenter folder (the dataset store's digest of its files)."""
    from urbangen.storage import digest_of, scan_dir

    if not Path(model_dir).is_dir():
        raise UrbangenError(f"segmenter folder not found: {model_dir}")
    return digest_of(scan_dir(model_dir))


def labelling(folder: str | Path, segmenter: str | Path | None = None) -> dict[str, Any]:
    """How the pseudo-labels in ``folder`` (an OUT of :func:`pseudo_label`) weighed the segmenter's
    posterior, as :meth:`Predictor.predict` keyword arguments: ``mode``, and ``prior`` / ``prior_weight`` /
    ``class_weights`` when they were used. Another prediction with them labels as this folder did.

    ``segmenter``: the folder of the model that will apply them; the class weights were fitted to the
    posterior of the segmenter that made the labels, so another one is refused (folders from before the
    record held the segmenter's digest cannot be checked)."""
    folder = Path(folder)
    info = folder / INFERENCE_FILE
    if not info.is_file():
        raise UrbangenError(
            f"{folder} has no inference.json: expected the output folder of `urbangen pseudo-label` "
            "(it records how the labels were made)"
        )
    inference = json.loads(info.read_text())
    made_by = inference.get("segmenter_sha256")
    applied_by = segmenter_digest(segmenter) if segmenter is not None and made_by is not None else made_by
    if applied_by != made_by:
        raise UrbangenError(
            f"{folder} was labelled by another segmenter than {segmenter} (digest {made_by[:12]}, this one "
            f"{applied_by[:12]}): its prior and class weights fit that segmenter's posterior; "
            "score with the segmenter that made the pseudo-labels, or without them"
        )
    settings: dict[str, Any] = {"mode": inference.get("predict_mode", "whole")}
    if inference.get("spatial_prior"):
        prior = folder / PRIOR_FILE
        if not prior.is_file():
            raise UrbangenError(f"{prior} is missing: {info} says the labels were made with a spatial prior")
        settings["prior"] = np.load(prior)
        settings["prior_weight"] = float(inference["prior_weight"])
    if inference.get("class_balance"):
        weights = folder / WEIGHTS_FILE
        if not weights.is_file():
            raise UrbangenError(f"{weights} is missing: {info} says the labels were made with class balance")
        settings["class_weights"] = np.asarray(json.loads(weights.read_text())["weights"], dtype=np.float64)
    return settings


def _check_inference(path: Path, inference: dict[str, Any], resuming: bool) -> None:
    """Refuse to mix predictions made with other inference settings; record the settings otherwise.
    A folder from before the record existed resumes only without a prior (how it was made)."""
    # records from before class balance, and before the segmenter's digest (which cannot be checked then)
    older = {"class_balance": False, "segmenter_sha256": inference["segmenter_sha256"]}
    if path.is_file():
        saved = {**older, **json.loads(path.read_text())}
    elif resuming:
        saved = {**older, "predict_mode": inference["predict_mode"], "spatial_prior": None, "prior_weight": None}
    else:
        saved = inference
    if saved["segmenter_sha256"] != inference["segmenter_sha256"]:
        raise UrbangenError(
            f"{path.parent} holds predictions of another segmenter (digest {saved['segmenter_sha256'][:12]}, "
            f"now {inference['segmenter_sha256'][:12]}); use a new output folder"
        )
    changed = sorted(k for k in inference if saved.get(k) != inference[k])
    if changed:
        raise UrbangenError(
            f"{path.parent} holds predictions made with other settings ({', '.join(changed)}: "
            f"{[saved.get(k) for k in changed]}, now {[inference[k] for k in changed]}); use a new output folder"
        )
    write_json_atomic(path, inference)


def class_weights(
    path: Path, predictor: Predictor, target: OpenSource, labelled: DataSource, batch_size: int, **kwargs: Any
) -> np.ndarray:
    """The class weights stored at ``path``, or fitted on a sample of ``target``'s pixels (``kwargs`` go to
    :meth:`Predictor.sample_posteriors`) against the class shares of ``labelled``, and stored there."""
    from tqdm import tqdm

    classes = predictor.taxonomy.classes
    if path.is_file():
        return np.asarray(json.loads(path.read_text())["weights"], dtype=np.float64)
    shares = class_shares(labelled)
    if len(shares) != len(classes):
        raise UrbangenError(
            f"class balance: {labelled.describe()} has {len(shares)} classes, the segmenter {len(classes)}"
        )
    picks = np.unique(np.linspace(0, len(target) - 1, min(len(target), BALANCE_IMAGES)).round().astype(int))
    samples = []
    for start in tqdm(range(0, len(picks), batch_size), desc="class balance", unit="batch"):
        images = [target.load_image(int(i)) for i in picks[start : start + batch_size]]
        every = max(1, round(math.sqrt(images[0].shape[0] * images[0].shape[1] / BALANCE_PIXELS)))
        samples.append(predictor.sample_posteriors(images, every, batch_size=batch_size, **kwargs))
    probs = np.concatenate(samples)
    weights = fit_class_weights(probs, shares)

    def taken(w: np.ndarray) -> dict[str, float]:
        counts = np.bincount((probs * w).argmax(axis=1), minlength=len(classes)) / len(probs)
        return {name: round(float(v), 5) for name, v in zip(classes, counts, strict=True)}

    record = {
        "weights": weights.tolist(),
        "classes": list(classes),
        "source_shares": {name: round(float(v), 5) for name, v in zip(classes, shares, strict=True)},
        "shares_before": taken(np.ones(len(classes))),
        "shares_after": taken(weights),
        "pixels": len(probs),
        "images": len(picks),
    }
    write_json_atomic(path, record)
    return weights


def pseudo_label(
    model_dir: str | Path,
    source: DataSource,
    out_dir: str | Path,
    threshold: float = 0.9,
    mode: str = "global",
    percentile: float = 50.0,
    batch_size: int = 2,
    device: str = "cpu",
    predict_mode: str = "whole",
    spatial_prior: DataSource | None = None,
    prior_weight: float = 1.0,
    class_balance: bool = False,
) -> dict[str, Any]:
    """Pseudo-label every image of ``source`` with the model in ``model_dir``; returns the summary."""
    from tqdm import tqdm

    if mode not in PSEUDO_MODES:
        raise UrbangenError(f"pseudo-label mode must be one of {PSEUDO_MODES}, got {mode!r}")
    if predict_mode not in MODES:
        raise UrbangenError(f"predict mode must be one of {MODES}, got {predict_mode!r}")
    if not 0 <= threshold <= 1:
        raise UrbangenError(f"threshold must be within 0..1, got {threshold}")
    if not 0 <= percentile <= 100:
        raise UrbangenError(f"percentile must be within 0..100, got {percentile}")
    if prior_weight < 0:
        raise UrbangenError(f"prior_weight must be >= 0, got {prior_weight}")
    if class_balance and spatial_prior is None:
        raise UrbangenError(
            "class_balance needs spatial_prior: the labelled dataset whose class shares the target should keep "
            "(prior_weight 0 balances without weighing by position)"
        )
    out_dir = Path(out_dir)
    opened = open_source(source, need_labels=False)
    ids = [s.id for s in opened.samples]
    inference = {
        "predict_mode": predict_mode,
        "spatial_prior": spatial_prior.model_dump(mode="json") if spatial_prior else None,
        "prior_weight": prior_weight if spatial_prior else None,
        "class_balance": class_balance,
        "segmenter_sha256": segmenter_digest(model_dir),
    }

    # 1. inference (resumable): raw arg-max and 8-bit confidence per image
    def paths(sample_id: str) -> tuple[Path, Path]:
        return out_dir / "prediction" / f"{sample_id}.png", out_dir / "confidence" / f"{sample_id}.png"

    done = {i for i in ids if all(p.is_file() for p in paths(i))}
    _check_inference(out_dir / INFERENCE_FILE, inference, resuming=bool(done))
    if len(done) < len(ids):
        prior = None
        if spatial_prior is not None:
            prior = load_or_compute(out_dir / PRIOR_FILE, spatial_prior)
        predictor = Predictor.from_pretrained(model_dir, device, opened.taxonomy)
        weights = None
        if class_balance:
            weights = class_weights(
                out_dir / WEIGHTS_FILE,
                predictor,
                opened,
                spatial_prior,
                batch_size,
                mode=predict_mode,
                prior=prior,
                prior_weight=prior_weight,
            )
        predictions = iter_predictions(
            predictor,
            opened,
            done,
            predict_mode,
            batch_size,
            prior=prior,
            prior_weight=prior_weight,
            class_weights=weights,
        )
        for sample_id, pred, conf in tqdm(predictions, total=len(ids) - len(done), desc="pseudo-label", unit="img"):
            pred_path, conf_path = paths(sample_id)
            write_png(conf_path, np.rint(conf * 255).astype(np.uint8))
            write_png(pred_path, pred)
    taxonomy = opened.taxonomy
    n = taxonomy.num_classes

    def load(sample_id: str) -> tuple[np.ndarray, np.ndarray]:
        pred_path, conf_path = paths(sample_id)
        pred, conf = read_label(pred_path), read_label(conf_path)
        taxonomy.check(pred, pred_path)
        return pred, conf

    # 2. thresholds
    if mode == "classwise":
        hist = np.zeros((n, 256), dtype=np.int64)
        for sample_id in ids:
            pred, conf = load(sample_id)
            hist += np.bincount(pred.astype(np.int64).ravel() * 256 + conf.ravel(), minlength=256 * 256).reshape(
                256, 256
            )[:n]
        thresholds = class_thresholds(hist, percentile, threshold)
    else:
        thresholds = np.full(n, _u8(threshold), dtype=np.int64)

    # 3. labels and summary
    kept = np.zeros(n, dtype=np.int64)
    predicted = np.zeros(n, dtype=np.int64)
    for sample_id in ids:
        pred, conf = load(sample_id)
        label = np.where(conf >= thresholds[pred], pred, IGNORE).astype(np.uint8)
        write_png(out_dir / f"{sample_id}.png", label)
        kept += np.bincount(label.ravel(), minlength=256)[:n]
        predicted += np.bincount(pred.ravel(), minlength=256)[:n]
    summary = {
        "model": str(model_dir),
        "source": source.model_dump(mode="json"),
        "n_images": len(ids),
        "mode": mode,
        "threshold": threshold,
        "percentile": percentile if mode == "classwise" else None,
        **inference,
        "class_thresholds": {name: int(t) / 255 for name, t in zip(taxonomy.classes, thresholds, strict=True)},
        "kept_pixels": {name: int(k) for name, k in zip(taxonomy.classes, kept, strict=True)},
        "predicted_pixels": {name: int(p) for name, p in zip(taxonomy.classes, predicted, strict=True)},
        "kept_fraction": float(kept.sum() / max(predicted.sum(), 1)),
    }
    if class_balance:
        weights = json.loads((out_dir / WEIGHTS_FILE).read_text())["weights"]
        summary["class_weights"] = {name: float(w) for name, w in zip(taxonomy.classes, weights, strict=True)}
    write_json_atomic(out_dir / "summary.json", summary)
    return summary
