"""The two models generation depends on, as small protocols, and their loaders.

Generation only needs a generator with ``generate(labels, seeds, ...)`` and a ``digest``, and filtering
only a segmenter with ``predict(images)``; the orchestration is written (and tested) against these
protocols, and the real models (``urbangen.diffusion.sampler.Generator``, the fast engine, and
``urbangen.segment.predict.Predictor``) are imported only when a folder is loaded.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Protocol

import numpy as np

from urbangen.errors import UrbangenError
from urbangen.generate.config import GenerateConfig


class GeneratorLike(Protocol):
    """Renders label maps: image i depends only on ``labels[i]``, ``depth[i]``, ``seeds[i]`` (and ``init[i]``).

    ``init``/``strength`` are passed only when ``strength`` < 1 (SDEdit from the source images), ``calibrate``
    (``"pooled"`` or ``"exemplar"``) only when calibrating."""

    digest: str

    def generate(
        self,
        labels: np.ndarray,
        seeds: list[int],
        depth: np.ndarray | None = None,
        steps: int = 20,
        guidance: float | None = None,
        scheduler: str = "ddim",
        batch_size: int = 8,
        init: np.ndarray | None = None,
        strength: float = 1.0,
        calibrate: bool | str = False,
    ) -> np.ndarray: ...


class SegmenterLike(Protocol):
    """Segments images: (B,H,W,3) uint8 -> ((B,H,W) uint8 trainIds, (B,H,W) float32 confidence)."""

    def predict(self, images: np.ndarray) -> tuple[np.ndarray, np.ndarray]: ...


def model_digest(model: Any, folder: str | Path | None) -> str | None:
    """The model's own digest when it has one, else the digest of its folder (None without either)."""
    own = getattr(model, "digest", None)
    if isinstance(own, str) and own:
        return own
    if folder is None:
        return None
    from urbangen.storage import digest_of, scan_dir

    return digest_of(scan_dir(folder))  # the same content digest the dataset store and MLflow inputs use


def load_generator(cfg: GenerateConfig) -> GeneratorLike:
    """The stage-2 generator of ``cfg.generator``, wrapped in the fast engine when ``engine.kind == fast``."""
    from urbangen.diffusion.sampler import Generator
    from urbangen.generate.engine import FastGenerator, engine_dtype

    engine = cfg.engine
    generator = Generator.from_pretrained(cfg.generator, device=engine.device, dtype=engine_dtype(engine))
    return FastGenerator(generator, engine) if engine.kind == "fast" else generator


class BatchedPredictor:
    """A segmentation ``Predictor`` called with a fixed batch size (and fixed ``predict`` keyword arguments,
    e.g. a pseudo-labelling's prior and class weights), behind :class:`SegmenterLike`."""

    def __init__(self, predictor: Any, batch_size: int, digest: str | None = None, **settings: Any) -> None:
        self.predictor, self.batch_size, self.settings = predictor, batch_size, settings
        if digest is not None:
            self.digest = digest

    def predict(self, images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return self.predictor.predict(images, batch_size=self.batch_size, **self.settings)


def scorer_digest(folder: str | Path, labelling: str | Path | None = None) -> str | None:
    """The digest of a scoring segmenter: its folder's, combined with the files that say how ``labelling``
    (a pseudo-label folder) weighed its posterior when one is used."""
    digest = model_digest(None, folder)
    if labelling is None or digest is None:
        return digest
    import hashlib

    from urbangen.io import sha256_file
    from urbangen.segment.pseudo import LABELLING_FILES

    parts = [digest] + [
        f"{name}:{sha256_file(Path(labelling) / name)}"
        for name in LABELLING_FILES
        if (Path(labelling) / name).is_file()
    ]
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()


def load_segmenter(
    folder: str | Path | None,
    taxonomy: Any = None,
    device: str = "cpu",
    batch_size: int = 8,
    labelling: str | Path | None = None,
) -> SegmenterLike:
    """The target-domain segmenter that scores candidates (the pseudo-labeller's, or any segmenter folder);
    a segmenter of another taxonomy than the generator's is a clear error. ``labelling``: a folder of
    pseudo-labels this segmenter made; its posterior is then weighed as it was there (spatial prior, class
    weights: :func:`urbangen.segment.pseudo.labelling`)."""
    if folder is None:
        raise UrbangenError("segmenter: MCOC filtering needs a segmenter folder (or run with filter: false)")
    from urbangen.segment.predict import Predictor

    predictor = Predictor.from_pretrained(folder, device=device, taxonomy=taxonomy)
    if labelling is None:
        return BatchedPredictor(predictor, batch_size)
    from urbangen.segment.pseudo import labelling as labelling_settings

    settings = labelling_settings(labelling, segmenter=folder)
    return BatchedPredictor(predictor, batch_size, scorer_digest(folder, labelling), **settings)
