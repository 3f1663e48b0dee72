"""Sharded, resumable rendering of K candidates per label map.

1. index the source and take this shard's ids (every N-th sorted id, see :mod:`urbangen.generate.seeds`);
2. open (or reopen) the shard's candidates folder; settings that change the images must match;
3. cut the shard's ids into fixed batches of ``ceil(batch_size / K)`` maps; a batch whose maps are all
   finished (manifest line + verified checksums) is skipped;
4. render each other batch in full (so a rerun renders exactly the batches a first run would have, and a
   resumed run is byte-identical to an uninterrupted one), then write its unfinished samples.

A killed run loses at most the batch in flight.
"""

from __future__ import annotations

import hashlib
import math
from pathlib import Path
from typing import Any

import numpy as np

from urbangen.generate.config import GenerateConfig
from urbangen.generate.models import GeneratorLike, load_generator
from urbangen.generate.progress import LogFn, Progress
from urbangen.generate.seeds import candidate_seed, check_shard, shard_ids, shard_name
from urbangen.generate.source import LabelMap, LabelSource
from urbangen.generate.store import CandidateStore

DEPTH_SCALE = 100.0  # source depth PNGs hold centimetres; the generator takes metres


def candidates_dir(cfg: GenerateConfig, shard: tuple[int, int] = (0, 1)) -> Path:
    """Default output of a shard: ``OUT/candidates`` for a single shard, else ``OUT/shards/shard-i-of-N``."""
    return Path(cfg.out) / "candidates" if shard[1] == 1 else Path(cfg.out) / "shards" / shard_name(shard)


def fingerprint(cfg: GenerateConfig, source: LabelSource, generator_digest: str) -> dict[str, Any]:
    """Every setting that changes the rendered images (batch size is not one of them).

    The source enters by format, split and a digest of its ids, not by its path, so shards that read the
    same dataset from different places (pipeline pods) still merge.
    """
    ids = hashlib.sha256("\n".join(source.ids()).encode()).hexdigest()
    return {
        "generator_digest": generator_digest,
        "source": {"format": cfg.source.format, "split": cfg.source.split, "ids_sha256": ids},
        "use_depth": cfg.source.use_depth,
        "seed": cfg.seed,
        "candidates": cfg.candidates,
        "steps": cfg.steps,
        "strength": cfg.strength,
        "calibrate": cfg.calibrate,
        "guidance": cfg.guidance,
        "scheduler": cfg.scheduler,
        "engine": cfg.engine.kind,
        "dtype": cfg.engine.dtype,
    }


def _taxonomy(generator: Any) -> dict:
    from urbangen.labels import cityscapes19

    taxonomy = getattr(generator, "taxonomy", None) or cityscapes19()
    return taxonomy.to_dict()


def _render(
    generator: GeneratorLike, maps: list[LabelMap], cfg: GenerateConfig
) -> tuple[list[list[np.ndarray]], list[list[int]]]:
    """K candidates for each map (maps of one shape per generator call, in batch order)."""
    K = cfg.candidates
    seeds = [[candidate_seed(cfg.seed, m.id, k) for k in range(K)] for m in maps]
    images: list[list[np.ndarray]] = [[] for _ in maps]
    shapes = list(dict.fromkeys(m.label.shape for m in maps))
    for shape in shapes:
        members = [i for i, m in enumerate(maps) if m.label.shape == shape]
        labels = np.repeat(np.stack([maps[i].label for i in members]), K, axis=0)
        depth = None
        if cfg.source.use_depth:
            raw = np.stack([maps[i].depth for i in members]).astype(np.float32) / DEPTH_SCALE
            depth = np.repeat(raw, K, axis=0)
        kwargs: dict[str, Any] = {"steps": cfg.steps, "scheduler": cfg.scheduler, "batch_size": cfg.batch_size}
        if cfg.guidance is not None:
            kwargs["guidance"] = cfg.guidance
        if cfg.strength < 1.0:
            kwargs["init"] = np.repeat(np.stack([maps[i].image for i in members]), K, axis=0)
            kwargs["strength"] = cfg.strength
        if cfg.calibrate != "none":
            kwargs["calibrate"] = cfg.calibrate
        flat_seeds = [s for i in members for s in seeds[i]]
        out = np.asarray(generator.generate(labels, flat_seeds, depth=depth, **kwargs))
        expected = (len(flat_seeds), *shape, 3)
        if out.shape != expected or out.dtype != np.uint8:
            raise RuntimeError(f"generator returned {out.dtype} {out.shape}, expected uint8 {expected}")
        for j, i in enumerate(members):
            images[i] = list(out[j * K : (j + 1) * K])
    return images, seeds


def generate_candidates(
    cfg: GenerateConfig,
    shard: tuple[int, int] = (0, 1),
    out_dir: str | Path | None = None,
    on_log: LogFn | None = None,
    generator: GeneratorLike | None = None,
) -> dict[str, Any]:
    """Render this shard's candidates into ``out_dir`` (default :func:`candidates_dir`); resumable.

    ``generator`` defaults to the one loaded from ``cfg.generator`` (and ``cfg.engine``). Returns a
    summary: shard, samples, rendered (this call), skipped (already finished), images/s, seconds.
    """
    from urbangen.generate.models import model_digest

    shard = check_shard(shard)
    source = LabelSource(cfg.source)
    ids = shard_ids(source.ids(), shard)
    out = Path(out_dir) if out_dir is not None else candidates_dir(cfg, shard)
    generator = generator if generator is not None else load_generator(cfg)
    digest = model_digest(generator, cfg.generator)
    store = CandidateStore(out)
    store.init_run(
        {
            "fingerprint": fingerprint(cfg, source, digest),
            "source": source.describe(),
            "shard": list(shard),
            "ids": ids,
            "taxonomy": _taxonomy(generator),
        }
    )
    done = set(store.completed()) & set(ids)
    per_batch = max(1, math.ceil(cfg.batch_size / cfg.candidates))
    batches = [ids[i : i + per_batch] for i in range(0, len(ids), per_batch)]
    lineage_base = {"source": source.describe(), "generator_digest": digest}
    progress = Progress(f"generate {shard[0]}/{shard[1]}", len(ids), initial=len(done), on_log=on_log)
    rendered = 0
    try:
        for batch in batches:
            if all(i in done for i in batch):
                continue
            maps = [source.load(i, image=cfg.strength < 1.0) for i in batch]
            images, seeds = _render(generator, maps, cfg)
            for m, imgs, sds in zip(maps, images, seeds, strict=True):
                if m.id in done:
                    continue
                lineage = {**lineage_base, "source_id": m.id}
                store.write_sample(m.id, m.label, imgs, sds, lineage, instance=m.instance)
                rendered += 1
            progress.update(sum(m.id not in done for m in maps), images=len(maps) * cfg.candidates)
    finally:
        snap = progress.close()
    return {
        "shard": list(shard),
        "out": str(out),
        "samples": len(ids),
        "rendered": rendered,
        "skipped": len(done),
        "images_per_s": snap["images_per_s"],
        "seconds": snap["elapsed_s"],
    }
