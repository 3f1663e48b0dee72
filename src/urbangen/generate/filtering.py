"""MCOC filtering and label rectification: a candidates folder in, a Cityscapes-layout dataset out.

1. score (skipped with ``filter: false``): segment every candidate, compute per-class consistency and
   MCOC of each, keep the chosen candidate's prediction and confidence (``mcoc.select``: the best-scoring
   one, or candidate 0); one line per map in
   ``OUT/filter/manifest.jsonl`` (resumable: finished maps are skipped);
2. select: keep maps whose best MCOC reaches the threshold (plus rare-class rescue), count kept/dropped
   per class and warn where a class loses too many maps (:mod:`urbangen.generate.select`);
3. rectify and write: the kept candidate with its rectified label through
   :class:`~urbangen.datasets.writer.DatasetWriter` (resumable), lineage in ``manifest.jsonl``;
4. ``OUT/preview.png`` (source label | generated | rectified label | prediction) and ``OUT/summary.json``.

With ``filter: false`` (the ``urbangen_nofilter`` variant) every map is kept with candidate 0 and its
label as it is; no segmenter is needed.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import numpy as np

from urbangen.datasets.writer import MANIFEST, DatasetWriter, read_manifest
from urbangen.errors import UrbangenError
from urbangen.generate.config import GenerateConfig
from urbangen.generate.mcoc import (
    best_candidate,
    class_references,
    extract_objects,
    object_consistency,
    relative_consistency,
    relative_line,
    score,
)
from urbangen.generate.models import SegmenterLike, load_segmenter, model_digest, scorer_digest
from urbangen.generate.preview import preview_row, write_grid
from urbangen.generate.progress import LogFn, Progress
from urbangen.generate.rectify import rectify
from urbangen.generate.select import Decision, class_report, decide
from urbangen.generate.store import CandidateStore, append_jsonl
from urbangen.io import read_label, sha256_file, write_json_atomic, write_png
from urbangen.labels import Taxonomy

log = logging.getLogger(__name__)
CONF_SCALE = 65535  # confidence is stored as a 16-bit PNG: value / 65535


def output_id(source_id: str, city: str) -> str:
    """Dataset id of a map: the source id when it has Cityscapes shape (``<city>_...``), else ``<city>_<id>``."""
    return source_id if "_" in source_id else f"{city}_{source_id}"


def default_dataset_dir(cfg: GenerateConfig) -> Path:
    return Path(cfg.out) / ("dataset" if cfg.filter else "dataset_nofilter")


class _Work:
    """``OUT/filter/``: score lines plus the kept candidate's prediction and confidence per map."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.scores = root / MANIFEST

    def check(self, fingerprint: dict[str, Any]) -> None:
        """Scores made with another segmenter or object rule must not be mixed with these: refuse."""
        path = self.root / "run.json"
        if path.is_file():
            old = json.loads(path.read_text())
            if old != fingerprint:
                raise UrbangenError(
                    f"{self.root} holds scores made with other settings ({old} vs {fingerprint}); "
                    "use another output folder or delete this one"
                )
        else:
            write_json_atomic(path, fingerprint)

    def paths(self, sample_id: str) -> tuple[Path, Path]:
        return self.root / "pred" / f"{sample_id}.png", self.root / "conf" / f"{sample_id}.png"

    def finished(self) -> dict[str, dict[str, Any]]:
        out = {}
        for record in read_manifest(self.root) if self.scores.is_file() else []:
            pred, conf = self.paths(record["id"])
            if all(p.is_file() for p in (pred, conf)) and [sha256_file(pred), sha256_file(conf)] == record["sha256"]:
                out[record["id"]] = record
        return out

    def load(self, sample_id: str) -> tuple[np.ndarray, np.ndarray]:
        pred, conf = self.paths(sample_id)
        return read_label(pred).astype(np.uint8), read_label(conf).astype(np.float32) / CONF_SCALE


def _score_map(
    store: CandidateStore, record: dict, segmenter: SegmenterLike, cfg: GenerateConfig, taxonomy: Taxonomy, work: _Work
) -> dict[str, Any]:
    label, instance = store.load_label(record)
    images = store.load_candidates(record)
    preds, confs = [], []
    for start in range(0, len(images), cfg.segment_batch_size):
        pred, conf = segmenter.predict(images[start : start + cfg.segment_batch_size])
        preds.append(np.asarray(pred))
        confs.append(np.asarray(conf))
    preds_all, confs_all = np.concatenate(preds), np.concatenate(confs)
    if preds_all.shape != (len(images), *label.shape):
        raise UrbangenError(
            f"segmenter returned predictions {preds_all.shape} for {len(images)} images of {label.shape}"
        )
    objects = extract_objects(label, instance, cfg.mcoc.erosion, cfg.mcoc.min_object_size)
    scores = [score(objects, p) for p in preds_all]
    best = best_candidate(scores) if cfg.mcoc.select == "best" else 0
    pred_path, conf_path = work.paths(record["id"])
    write_png(pred_path, preds_all[best].astype(np.uint8))
    write_png(conf_path, np.round(np.clip(confs_all[best], 0, 1) * CONF_SCALE).astype(np.uint16))
    names = taxonomy.classes
    line = {
        "id": record["id"],
        "best": best,
        "best_mcoc": scores[best].mcoc,
        "classes": [names[c] for c in np.unique(label) if c < len(names)],
        "candidates": [
            {"k": c["k"], "seed": c["seed"], "mcoc": s.mcoc, "per_class": {names[k]: v for k, v in s.per_class.items()}}
            for c, s in zip(record["candidates"], scores, strict=True)
        ],
        "sha256": [sha256_file(pred_path), sha256_file(conf_path)],
    }
    append_jsonl(work.scores, line)
    return line


def _unscored(record: dict, store: CandidateStore, taxonomy: Taxonomy) -> dict[str, Any]:
    label, _ = store.load_label(record)
    names = taxonomy.classes
    return {
        "id": record["id"],
        "best": 0,
        "best_mcoc": None,
        "classes": [names[c] for c in np.unique(label) if c < len(names)],
        "candidates": [{"k": c["k"], "seed": c["seed"], "mcoc": None, "per_class": {}} for c in record["candidates"]],
    }


def _prepare(
    record: dict,
    line: dict,
    store: CandidateStore,
    work: _Work | None,
    cfg: GenerateConfig,
    names: tuple[str, ...],
    references: dict[int, float] | None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray | None, dict[str, Any]]:
    """The kept candidate of a map and its (rectified, when filtering) label; ``references`` (class id ->
    typical consistency) make the object rule relative to them.

    Returns (source label, image, label to write, prediction or None, rectified pixel counts).
    """
    label, instance = store.load_label(record)
    image = store.load_candidates({"candidates": [record["candidates"][line["best"]]]})[0]
    fixed: dict[str, Any] = {"objects": {}, "boundary": {}, "total": 0}
    if work is None:
        return label, image, label, None, fixed
    pred, conf = work.load(record["id"])
    if not cfg.rectify.enabled:
        return label, image, label, pred, fixed
    r = cfg.rectify
    objects = extract_objects(label, instance, cfg.mcoc.erosion, cfg.mcoc.min_object_size)
    consistency, keep = object_consistency(objects, pred), None
    if references is not None:
        # classes the segmenter does not recognise keep their labels: its disagreement says nothing there
        judged = max(cfg.mcoc.min_reference, r.min_reference or 0.0)
        consistency = relative_consistency(objects, consistency, references, judged)
        keep = np.isin(label, [c for c, v in references.items() if v < cfg.mcoc.min_reference or v <= 0])
    result = rectify(
        label,
        objects,
        consistency,
        pred,
        conf,
        r.object_threshold,
        r.boundary_band,
        r.boundary_confidence,
        keep=keep,
    )
    fixed = {
        "objects": {names[c]: n for c, n in result.objects.items()},
        "boundary": {names[c]: n for c, n in result.boundary.items()},
        "total": result.total,
    }
    return label, image, result.label, pred, fixed


def _lineage(line: dict, decision: Decision, fixed: dict, filtered: bool) -> dict[str, Any]:
    chosen = line["candidates"][line["best"]]
    return {
        "source_id": line["id"],
        "candidate": line["best"],
        "seed": chosen["seed"],
        "mcoc": chosen["mcoc"],
        "raw_mcoc": chosen.get("raw_mcoc", chosen["mcoc"]),
        "per_class_consistency": chosen["per_class"],
        "candidates": [
            {"k": c["k"], "seed": c["seed"], "mcoc": c["mcoc"], "raw_mcoc": c.get("raw_mcoc", c["mcoc"])}
            for c in line["candidates"]
        ],
        "rectified_pixels": fixed,
        "filtered": filtered,
        "rescued": decision.reason == "rescued",
    }


def _score_all(
    cfg: GenerateConfig,
    store: CandidateStore,
    records: dict[str, dict],
    work: _Work,
    taxonomy: Taxonomy,
    segmenter: SegmenterLike | None,
    on_log: LogFn | None,
) -> tuple[dict[str, dict[str, Any]], str | None]:
    """Step 1: score lines of every finished map (resuming from ``work``), and the segmenter digest."""
    lines = {i: r for i, r in work.finished().items() if i in records}
    todo = [i for i in sorted(records) if i not in lines]
    if todo and segmenter is None:
        segmenter = load_segmenter(
            cfg.segmenter, taxonomy, cfg.engine.device, cfg.segment_batch_size, labelling=cfg.pseudo_labels
        )
    if segmenter is not None:
        digest = model_digest(segmenter, cfg.segmenter)
    else:  # every map already scored: the digest of the scorer that did it, without loading it
        digest = scorer_digest(cfg.segmenter, cfg.pseudo_labels) if cfg.segmenter else None
    work.check(
        {
            "segmenter_digest": digest,
            "erosion": cfg.mcoc.erosion,
            "min_object_size": cfg.mcoc.min_object_size,
            **({"select": cfg.mcoc.select} if cfg.mcoc.select != "best" else {}),  # older folders: best
        }
    )
    progress = Progress("score", len(records), initial=len(lines), on_log=on_log)
    try:
        for sample_id in todo:
            line = lines[sample_id] = _score_map(store, records[sample_id], segmenter, cfg, taxonomy, work)
            counts = {"images": len(records[sample_id]["candidates"])}
            if cfg.mcoc.relative_to == "absolute":
                # kept / dropped by the threshold alone (rare-class rescue is decided once all maps are scored;
                # relative scores need every map's)
                good = line["best_mcoc"] is not None and line["best_mcoc"] >= cfg.mcoc.threshold
                counts.update(kept=int(good), dropped=int(not good))
            progress.update(1, **counts)
    finally:
        progress.close()
    return lines, digest


def _write_all(
    cfg: GenerateConfig,
    store: CandidateStore,
    records: dict[str, dict],
    kept: list[dict[str, Any]],
    decisions: dict[str, Decision],
    work: _Work | None,
    writer: DatasetWriter,
    lineage: dict[str, Any],
    references: dict[int, float] | None,
    on_log: LogFn | None,
) -> tuple[dict[str, int], list[np.ndarray]]:
    """Step 3: rectify and write every kept map not yet written; returns rectified pixels per class and
    the preview rows."""
    names = writer.taxonomy.classes
    written = {r["id"]: r for r in writer.records()}
    done = writer.completed()
    rows: list[np.ndarray] = []
    per_class = dict.fromkeys(names, 0)
    progress = Progress("write", len(kept), on_log=on_log)
    try:
        for line in kept:
            out_id = output_id(line["id"], cfg.city)
            if out_id in done and len(rows) >= cfg.preview_rows:
                fixed = written[out_id]["rectified_pixels"]
            else:
                label, image, new_label, pred, fixed = _prepare(
                    records[line["id"]], line, store, work, cfg, names, references
                )
                if out_id not in done:
                    extra = _lineage(line, decisions[line["id"]], fixed, work is not None)
                    writer.write(out_id, image, new_label, {**lineage, **extra})
                if len(rows) < cfg.preview_rows:
                    rows.append(preview_row(writer.taxonomy, label, image, new_label, pred))
            for group in ("objects", "boundary"):
                for name, n in fixed[group].items():
                    per_class[name] += n
            progress.update(1, kept=1)
    finally:
        progress.close()
    return per_class, rows


def filter_and_rectify(
    cfg: GenerateConfig,
    candidates_dir: str | Path | None = None,
    out_dir: str | Path | None = None,
    on_log: LogFn | None = None,
    segmenter: SegmenterLike | None = None,
) -> dict[str, Any]:
    """Score, select, rectify and write a dataset (see the module docstring); returns the summary dict.

    ``candidates_dir`` defaults to ``OUT/candidates``, ``out_dir`` to ``OUT/dataset`` (``OUT/dataset_nofilter``
    with ``filter: false``); ``segmenter`` defaults to the one loaded from ``cfg.segmenter``, weighing its
    posterior as ``cfg.pseudo_labels`` did (a segmenter passed here is used as it is).
    """
    store = CandidateStore(candidates_dir if candidates_dir is not None else Path(cfg.out) / "candidates")
    out = Path(out_dir) if out_dir is not None else default_dataset_dir(cfg)
    info = store.run_info()
    taxonomy = Taxonomy.from_dict(info["taxonomy"])
    records = store.completed()
    missing = sorted(set(info["ids"]) - set(records))
    if missing:
        log.warning(
            "%s: %d of %d maps have no finished candidates (e.g. %s)",
            store.root,
            len(missing),
            len(info["ids"]),
            missing[:3],
        )
    # 1. score
    work = _Work(out / "filter") if cfg.filter else None
    seg_digest = None
    if work is not None:
        lines, seg_digest = _score_all(cfg, store, records, work, taxonomy, segmenter, on_log)
    else:
        lines = {i: _unscored(r, store, taxonomy) for i, r in records.items()}
    scores = [lines[i] for i in sorted(lines)]
    references, by_name = None, {}
    if work is not None and cfg.mcoc.relative_to == "class":
        # judge each class against what the segmenter typically recognises of it (generate/mcoc.py)
        by_name = class_references(scores)
        scores = [relative_line(line, by_name, cfg.mcoc.min_reference) for line in scores]
        references = {taxonomy.classes.index(name): value for name, value in by_name.items()}
    # 2. select
    if work is not None:
        decisions = decide(scores, cfg.mcoc)
    else:
        decisions = {line["id"]: Decision(True, "kept") for line in scores}
    table, warnings = class_report(scores, decisions, taxonomy.classes, cfg.mcoc.warn_class_drop)
    for name, value in by_name.items() if references is not None else ():
        if value < cfg.mcoc.min_reference:
            warnings.append(
                f"class {name!r} not judged: its median consistency {value:.2f} is under mcoc.min_reference "
                f"{cfg.mcoc.min_reference} (the segmenter does not recognise it, or the generator rarely draws it)"
            )
    for message in warnings:
        log.warning(message)
    # 3. rectify and write, with the preview grid
    fingerprint = info["fingerprint"]
    lineage = {
        "source": info.get("source", fingerprint["source"]),
        "generator_digest": fingerprint["generator_digest"],
        "segmenter_digest": seg_digest,
    }
    kept = [line for line in scores if decisions[line["id"]].kept]
    writer = DatasetWriter(out, split=cfg.split, city=cfg.city, taxonomy=taxonomy)
    per_class_fixed, rows = _write_all(cfg, store, records, kept, decisions, work, writer, lineage, references, on_log)
    write_grid(out / "preview.png", rows)
    # 4. summary
    for name, row in table.items():
        row["rectified_pixels"] = per_class_fixed[name]
    best = [line["best_mcoc"] for line in scores if line["best_mcoc"] is not None]
    kept_mcoc = [line["best_mcoc"] for line in kept if line["best_mcoc"] is not None]
    reasons = [d.reason for d in decisions.values()]
    summary = {
        "filtered": work is not None,
        "out": str(out),
        "candidates_dir": str(store.root),
        "samples": len(scores),
        "missing": len(missing),
        "kept": len(kept),
        "dropped": len(scores) - len(kept),
        "rescued": reasons.count("rescued"),
        "unscorable": reasons.count("unscorable"),
        "not_judged": reasons.count("not_judged"),
        "keep_fraction": len(kept) / len(scores) if scores else 0.0,
        "mean_best_mcoc": float(np.mean(best)) if best else None,
        "mean_kept_mcoc": float(np.mean(kept_mcoc)) if kept_mcoc else None,
        "rectified_pixels": sum(per_class_fixed.values()),
        "class_reference": {taxonomy.classes[c]: v for c, v in references.items()} if references else None,
        "per_class": table,
        "warnings": warnings,
        **lineage,
        # the pseudo-labelling whose prior and class weights the scorer applied (None: the plain segmenter)
        "pseudo_labels": str(cfg.pseudo_labels) if cfg.pseudo_labels and work is not None else None,
        "config": {"mcoc": cfg.mcoc.model_dump(), "rectify": cfg.rectify.model_dump()},
    }
    write_json_atomic(out / "summary.json", summary)
    return summary
