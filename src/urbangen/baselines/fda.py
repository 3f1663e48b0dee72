"""Fourier Domain Adaptation (Yang & Soatto, CVPR 2020): give a source image the low-frequency amplitude
spectrum (global colour, illumination, texture statistics) of a target image while keeping its phase
(the scene's structure), so the source labels stay valid.

``beta`` sets the swapped window: a (2b+1) x (2b+1) square around the centred zero frequency with
b = floor(min(H, W) * beta), as in the authors' code. ``beta=0`` returns the source unchanged (the
original code would still swap the zero-frequency term, i.e. the mean colour).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from urbangen.datasets.writer import DatasetWriter
from urbangen.errors import UrbangenError
from urbangen.segment.data import DataSource, open_source


def _check_rgb(image: np.ndarray, what: str) -> None:
    if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
        raise UrbangenError(f"FDA {what} image must be HxWx3 uint8, got {image.dtype} {image.shape}")


def fda_transfer(src: np.ndarray, trg: np.ndarray, beta: float) -> np.ndarray:
    """``src`` with the low-frequency amplitude of ``trg`` (resized to ``src``'s size when they differ)."""
    _check_rgb(src, "source")
    _check_rgb(trg, "target")
    if not 0 <= beta < 0.5:
        raise UrbangenError(f"FDA beta must be within [0, 0.5), got {beta} (the paper uses 0.01..0.09)")
    if beta == 0:
        return src.copy()
    h, w = src.shape[:2]
    if trg.shape[:2] != (h, w):
        trg = np.asarray(Image.fromarray(trg).resize((w, h), Image.BILINEAR))
    spec_src = np.fft.fft2(src.astype(np.float64), axes=(0, 1))
    spec_trg = np.fft.fft2(trg.astype(np.float64), axes=(0, 1))
    amp = np.fft.fftshift(np.abs(spec_src), axes=(0, 1))
    amp_trg = np.fft.fftshift(np.abs(spec_trg), axes=(0, 1))
    b = int(np.floor(min(h, w) * beta))
    ch, cw = h // 2, w // 2
    window = (slice(ch - b, ch + b + 1), slice(cw - b, cw + b + 1))
    amp[window] = amp_trg[window]
    amp = np.fft.ifftshift(amp, axes=(0, 1))
    out = np.fft.ifft2(amp * np.exp(1j * np.angle(spec_src)), axes=(0, 1)).real
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)


def fda_dataset(source: DataSource, target: DataSource, out_dir: str | Path, beta: float = 0.01, seed: int = 0) -> Path:
    """Translate every labelled image of ``source`` with a random image of ``target`` into ``out_dir``.

    The result is a generated dataset (Cityscapes layout, trainId labels, manifest with lineage) readable
    with ``format: cityscapes``. Target images are drawn with ``np.random.default_rng([seed, i])`` for
    source image ``i``, so a rerun after an interruption skips finished samples and gives the same result.
    """
    from tqdm import tqdm

    if not 0 <= beta < 0.5:
        raise UrbangenError(f"FDA beta must be within [0, 0.5), got {beta}")
    src = open_source(source)
    trg = open_source(target, need_labels=False)
    writer = DatasetWriter(out_dir, split=source.split or "train", city="fda", taxonomy=src.taxonomy)
    done = writer.completed()
    for i, sample in enumerate(tqdm(src.samples, desc="fda", unit="img")):
        out_id = sample.id if "_" in sample.id else f"fda_{sample.id}"
        if out_id in done:
            continue
        j = int(np.random.default_rng([seed, i]).integers(len(trg)))
        image, label = src.load(i)
        lineage = {
            "method": "fda",
            "beta": beta,
            "seed": seed,
            "source": {"format": source.format, "root": str(source.root), "split": source.split, "id": sample.id},
            "target": {"format": target.format, "root": str(target.root), "id": trg.samples[j].id},
        }
        writer.write(out_id, fda_transfer(image, trg.load_image(j), beta), label, lineage)
    return Path(out_dir)
