"""Evaluation with the official Cityscapes pixel-level semantics, on trainId maps.

Semantics (those of ``cityscapesscripts.evaluation.evalPixelLevelSemanticLabeling``):
ground-truth ignore pixels (255) are excluded; a prediction of 255 on a labelled pixel is a false negative
of the true class and no class's false positive; a class with neither ground truth nor prediction has no
IoU (null) and is left out of the mean; a class that is predicted but absent from the ground truth scores 0.
A test checks equality with the official script on real Cityscapes labels.

The confusion matrix is accumulated with one ``np.bincount`` over ``gt << 8 | pred`` (uint16) per chunk of
pixels: memory stays flat whatever the number of images, and the same pass catches out-of-range values.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from urbangen.errors import UrbangenError
from urbangen.io import IGNORE, read_label, write_json_atomic
from urbangen.labels import Taxonomy, cityscapes19

CHUNK = 1 << 19  # pixels per bincount: keeps the uint16 index buffer in cache

# the class subsets of the usual SYNTHIA -> Cityscapes figures
SYNTHIA16 = (
    "road", "sidewalk", "building", "wall", "fence", "pole", "traffic light", "traffic sign", "vegetation", "sky",
    "person", "rider", "car", "bus", "motorcycle", "bicycle",
)  # fmt: skip
SYNTHIA13 = tuple(c for c in SYNTHIA16 if c not in ("wall", "fence", "pole"))
PRESETS = {"synthia16": SYNTHIA16, "synthia13": SYNTHIA13}


class ConfusionMatrix:
    """Counts of (ground truth class, predicted class) over labelled pixels.

    ``matrix`` is C x (C+1): rows are ground-truth classes, columns predicted classes, and the last
    column counts labelled pixels predicted as ignore (255).
    """

    def __init__(self, num_classes: int = 19) -> None:
        if not 1 <= num_classes < IGNORE:
            raise UrbangenError(f"num_classes must be within 1..254, got {num_classes}")
        self.num_classes = num_classes
        self.matrix = np.zeros((num_classes, num_classes + 1), dtype=np.int64)

    def update(self, pred: np.ndarray, gt: np.ndarray, source: object = "prediction") -> None:
        """Add one image (or batch) of predicted and ground-truth ids; both hold 0..C-1 or 255."""
        if pred.shape != gt.shape:
            raise UrbangenError(f"{source}: prediction shape {pred.shape} differs from ground truth {gt.shape}")
        pred, gt = _as_u8(pred, source, "prediction"), _as_u8(gt, source, "ground truth")
        n = self.num_classes
        counts = np.zeros(1 << 16, dtype=np.int64)
        flat_pred, flat_gt = pred.ravel(), gt.ravel()
        buffer = np.empty(min(CHUNK, flat_gt.size), dtype=np.uint16)
        for start in range(0, flat_gt.size, CHUNK):
            index = buffer[: min(CHUNK, flat_gt.size - start)]
            np.left_shift(flat_gt[start : start + CHUNK], 8, out=index, dtype=np.uint16)
            index |= flat_pred[start : start + CHUNK]
            counts += np.bincount(index, minlength=1 << 16)
        counts = counts.reshape(256, 256)
        _check_range(counts.sum(1), n, source, "ground truth")
        _check_range(counts.sum(0), n, source, "prediction")
        self.matrix[:, :n] += counts[:n, :n]
        self.matrix[:, n] += counts[:n, IGNORE]

    def __iadd__(self, other: ConfusionMatrix) -> ConfusionMatrix:
        self.matrix += other.matrix
        return self

    def iou(self) -> np.ndarray:
        """Per-class IoU in 0..1; NaN for a class with neither ground truth nor prediction."""
        n = self.num_classes
        tp = np.diag(self.matrix[:, :n]).astype(np.float64)
        fn = self.matrix.sum(1) - tp
        fp = self.matrix[:, :n].sum(0) - tp
        denom = tp + fp + fn
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(denom > 0, tp / np.maximum(denom, 1), np.nan)

    def miou(self, classes: Sequence[int] | None = None) -> float:
        """Mean IoU (0..1) over ``classes`` (default all), leaving out classes without IoU; NaN if none."""
        iou = self.iou()
        if classes is not None:
            iou = iou[list(classes)]
        valid = iou[~np.isnan(iou)]
        return float(valid.mean()) if valid.size else float("nan")

    def pixel_accuracy(self) -> float:
        total = self.matrix.sum()
        return float(np.trace(self.matrix[:, : self.num_classes]) / total) if total else float("nan")

    def result(self, taxonomy: Taxonomy, classes: Sequence[int] | None = None, n_images: int = 0) -> dict[str, Any]:
        """The JSON of ``urbangen evaluate``: percentages, null for classes without IoU."""
        iou = self.iou()
        used = list(range(self.num_classes)) if classes is None else list(classes)
        return {
            "mIoU": _percent(self.miou(used)),
            "per_class": {name: _percent(v) for name, v in zip(taxonomy.classes, iou, strict=True)},
            "pixel_accuracy": _percent(self.pixel_accuracy()),
            "n_images": n_images,
            "classes": [taxonomy.classes[c] for c in used],
            "taxonomy": taxonomy.name,
            "confusion_matrix": self.matrix.tolist(),
        }


def _percent(value: float) -> float | None:
    return None if np.isnan(value) else float(value) * 100


def _as_u8(array: np.ndarray, source: object, what: str) -> np.ndarray:
    if array.dtype == np.uint8:
        return array
    if not np.issubdtype(array.dtype, np.integer):
        raise UrbangenError(f"{source}: {what} must hold integer class ids, got {array.dtype}")
    if array.size and (array.min() < 0 or array.max() > IGNORE):
        bad = np.unique(array[(array < 0) | (array > IGNORE)])[:10].tolist()
        raise UrbangenError(f"{source}: {what} holds values {bad}; expected class ids or {IGNORE} for ignore")
    return array.astype(np.uint8)


def _check_range(counts: np.ndarray, n: int, source: object, what: str) -> None:
    bad = np.flatnonzero(counts[n:IGNORE]) + n
    if bad.size:
        raise UrbangenError(
            f"{source}: {what} holds values {bad[:10].tolist()}; expected 0..{n - 1} or {IGNORE} for ignore"
        )


def parse_classes(spec: str | Sequence[int | str] | None, taxonomy: Taxonomy) -> list[int] | None:
    """Class subset from ``synthia16`` / ``synthia13`` or comma-separated names or ids."""
    if spec is None:
        return None
    items: Sequence[int | str]
    if isinstance(spec, str):
        items = PRESETS.get(spec.lower()) or [s.strip() for s in spec.split(",") if s.strip()]
    else:
        items = spec
    out = []
    for item in items:
        if isinstance(item, int) or str(item).isdigit():
            index = int(item)
            if not 0 <= index < taxonomy.num_classes:
                raise UrbangenError(f"class id {index} is outside 0..{taxonomy.num_classes - 1}")
            out.append(index)
        else:
            out.append(taxonomy.index(str(item)))
    if not out:
        raise UrbangenError("empty class subset")
    return sorted(set(out))


def _pngs(folder: Path, what: str) -> dict[str, Path]:
    if not folder.is_dir():
        raise UrbangenError(f"{what} folder not found: {folder}")
    return {p.stem: p for p in folder.glob("*.png")}


def evaluate_pairs(
    pairs: Sequence[tuple[str, Path, np.ndarray | Path]],
    taxonomy: Taxonomy,
    classes: Sequence[int] | None = None,
    groups: dict[str, str] | None = None,
) -> dict[str, Any]:
    """Score (id, prediction file, ground truth array or file) pairs; ``groups`` maps id -> condition."""
    total = ConfusionMatrix(taxonomy.num_classes)
    group_cms: dict[str, ConfusionMatrix] = {}
    group_counts: dict[str, int] = {}
    for sample_id, pred_path, gt in pairs:
        pred = read_label(pred_path)
        gt_array = read_label(gt) if isinstance(gt, Path) else gt
        if pred.shape != gt_array.shape:
            raise UrbangenError(
                f"prediction {pred_path} is {pred.shape[0]}x{pred.shape[1]} but its ground truth "
                f"{gt if isinstance(gt, Path) else sample_id} is {gt_array.shape[0]}x{gt_array.shape[1]}"
            )
        cm = ConfusionMatrix(taxonomy.num_classes)
        cm.update(pred, gt_array, pred_path)
        total += cm
        if groups is not None and sample_id in groups:
            name = groups[sample_id]
            group_cms.setdefault(name, ConfusionMatrix(taxonomy.num_classes))
            group_cms[name] += cm
            group_counts[name] = group_counts.get(name, 0) + 1
    result = total.result(taxonomy, classes, len(pairs))
    if group_cms:
        result["per_condition"] = {
            name: {k: v for k, v in cm.result(taxonomy, classes, group_counts[name]).items() if k != "confusion_matrix"}
            for name, cm in sorted(group_cms.items())
        }
    return result


def evaluate_dirs(
    pred_dir: str | Path,
    gt_dir: str | Path,
    classes: Sequence[int] | None = None,
    taxonomy: Taxonomy | None = None,
    groups: dict[str, str] | None = None,
) -> dict[str, Any]:
    """Score ``pred_dir/<id>.png`` against ``gt_dir/<id>.png`` (trainIds); both must hold the same ids."""
    taxonomy = taxonomy or cityscapes19()
    preds, gts = _pngs(Path(pred_dir), "prediction"), _pngs(Path(gt_dir), "ground-truth")
    if not gts:
        raise UrbangenError(f"no <id>.png ground-truth files in {gt_dir}")
    no_pred, no_gt = sorted(set(gts) - set(preds)), sorted(set(preds) - set(gts))
    if no_pred or no_gt:
        parts = []
        if no_pred:
            parts.append(f"{len(no_pred)} ground-truth images have no prediction in {pred_dir} (e.g. {no_pred[:3]})")
        if no_gt:
            parts.append(f"{len(no_gt)} predictions have no ground truth in {gt_dir} (e.g. {no_gt[:3]})")
        raise UrbangenError("; ".join(parts))
    pairs = [(i, preds[i], gts[i]) for i in sorted(gts)]
    return evaluate_pairs(pairs, taxonomy, classes, groups)


def evaluate_source(pred_dir: str | Path, source: Any, classes: Sequence[int] | None = None) -> dict[str, Any]:
    """Score ``pred_dir/<id>.png`` against a dataset's own labels (a :class:`DataSource`), standardised to
    trainIds by its reader; samples carrying ``meta["condition"]`` (ACDC) also get per-condition figures."""
    from urbangen.segment.data import open_source

    opened = open_source(source, need_images=False)
    preds = _pngs(Path(pred_dir), "prediction")
    missing = [s.id for s in opened.samples if s.id not in preds]
    if missing:
        raise UrbangenError(
            f"{len(missing)} images of {source.describe()} have no prediction in {pred_dir}: {missing[:3]}"
        )
    pairs = [(s.id, preds[s.id], opened.load_label(i)) for i, s in enumerate(opened.samples)]
    groups = {s.id: str(s.meta["condition"]) for s in opened.samples if "condition" in s.meta}
    return evaluate_pairs(pairs, opened.taxonomy, classes, groups or None)


def write_charts(result: dict[str, Any], out_dir: str | Path) -> list[Path]:
    """Per-class IoU bar chart and row-normalised confusion matrix as PNGs (Agg canvas, no pyplot state)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    from urbangen.io import atomic_path

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    names = list(result["per_class"])
    values = [v if v is not None else 0.0 for v in result["per_class"].values()]

    fig = Figure(figsize=(10, 4), dpi=100)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    bars = ax.bar(range(len(names)), values, color="#4c72b0")
    for bar, value in zip(bars, result["per_class"].values(), strict=True):
        if value is None:
            bar.set_hatch("//")
            bar.set_color("#bbbbbb")
    ax.set_xticks(range(len(names)), names, rotation=60, ha="right", fontsize=8)
    ax.set_ylim(0, 100)
    ax.set_ylabel("IoU (%)")
    miou = result["mIoU"]
    ax.set_title(f"per-class IoU (mIoU {miou:.1f}%)" if miou is not None else "per-class IoU")
    fig.tight_layout()
    paths = [out_dir / "per_class_iou.png", out_dir / "confusion_matrix.png"]
    with atomic_path(paths[0]) as tmp:
        fig.savefig(tmp, format="png")

    matrix = np.asarray(result["confusion_matrix"], dtype=np.float64)
    rows = matrix.sum(1, keepdims=True)
    normalised = np.divide(matrix, rows, out=np.zeros_like(matrix), where=rows > 0)
    fig = Figure(figsize=(8, 7), dpi=100)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    image = ax.imshow(normalised, cmap="viridis", vmin=0, vmax=1)
    ax.set_xticks(range(len(names) + 1), [*names, "ignore"], rotation=90, fontsize=7)
    ax.set_yticks(range(len(names)), names, fontsize=7)
    ax.set_xlabel("predicted")
    ax.set_ylabel("ground truth")
    fig.colorbar(image, ax=ax, fraction=0.046)
    fig.tight_layout()
    with atomic_path(paths[1]) as tmp:
        fig.savefig(tmp, format="png")
    return paths


def save_result(result: dict[str, Any], path: str | Path) -> None:
    write_json_atomic(path, result)
