"""Inference: whole-image or sliding-window prediction of trainIds and per-pixel confidence.

Confidence is the softmax probability of the predicted class, at the input resolution. Sliding windows
average the logits of overlapping windows (as mmsegmentation does) before the softmax.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from urbangen.errors import UrbangenError
from urbangen.io import write_json_atomic, write_png
from urbangen.labels import Taxonomy
from urbangen.segment.data import DataSource, OpenSource, open_source
from urbangen.segment.model import load_model, normalize

if TYPE_CHECKING:
    import torch

MODES = ("whole", "slide")


class Predictor:
    """A loaded segmentation model; :meth:`predict` maps RGB uint8 images to (trainIds, confidence)."""

    def __init__(self, model: Any, taxonomy: Taxonomy, meta: dict[str, Any], device: str = "cpu") -> None:
        self.model, self.taxonomy, self.meta, self.device = model, taxonomy, meta, device

    @classmethod
    def from_pretrained(cls, model_dir: str | Path, device: str = "cpu", taxonomy: Taxonomy | None = None) -> Predictor:
        """Load a model folder; ``taxonomy``: fail clearly if the model predicts another taxonomy."""
        model, found, meta = load_model(model_dir, device, taxonomy)
        return cls(model, found, meta, device)

    def predict(
        self,
        images: np.ndarray | Sequence[np.ndarray],
        mode: str = "whole",
        batch_size: int = 2,
        crop_size: tuple[int, int] | None = None,
        stride: tuple[int, int] | None = None,
        prior: np.ndarray | None = None,
        prior_weight: float = 1.0,
        class_weights: np.ndarray | None = None,
    ) -> tuple[np.ndarray | list[np.ndarray], np.ndarray | list[np.ndarray]]:
        """(trainIds uint8, confidence float32) per image at its input size.

        ``images``: BxHxWx3 uint8, or a list of HxWx3 uint8 (sizes may differ; then lists come back).
        ``mode="slide"`` runs windows of ``crop_size`` (default: the training crop) every ``stride``
        (default: two thirds of the window) and averages overlapping logits.
        ``prior``: a class spatial prior q(c | pos) (C x h x w, :mod:`urbangen.segment.prior`); the softmax is
        weighed by (q(c | pos) / q(c)) ** ``prior_weight`` before the arg-max, and the confidence is that
        posterior's. ``class_weights`` (C, :func:`urbangen.segment.prior.fit_class_weights`) then scale each
        class's probability before the arg-max, renormalised.
        """
        import torch

        ids_out: list[np.ndarray] = []
        conf_out: list[np.ndarray] = []
        for probs in self._posteriors(images, mode, batch_size, crop_size, stride, prior, prior_weight, class_weights):
            conf, ids = probs.max(dim=0)
            ids_out.append(ids.to(torch.uint8).cpu().numpy())
            conf_out.append(conf.cpu().numpy())
        if len({a.shape for a in ids_out}) == 1:
            return np.stack(ids_out), np.stack(conf_out)
        return ids_out, conf_out

    def sample_posteriors(
        self,
        images: np.ndarray | Sequence[np.ndarray],
        every: int = 4,
        mode: str = "whole",
        batch_size: int = 2,
        **kwargs: Any,
    ) -> np.ndarray:
        """N x C float32: the posteriors (as :meth:`predict` computes them, same ``kwargs``) of every
        ``every``-th pixel along each axis of each image; what :func:`urbangen.segment.prior.fit_class_weights`
        fits on."""
        return np.concatenate(
            [
                probs[:, ::every, ::every].reshape(probs.shape[0], -1).T.cpu().numpy()
                for probs in self._posteriors(images, mode, batch_size, **kwargs)
            ]
        )

    def _posteriors(
        self,
        images: np.ndarray | Sequence[np.ndarray],
        mode: str = "whole",
        batch_size: int = 2,
        crop_size: tuple[int, int] | None = None,
        stride: tuple[int, int] | None = None,
        prior: np.ndarray | None = None,
        prior_weight: float = 1.0,
        class_weights: np.ndarray | None = None,
    ) -> Iterator[torch.Tensor]:
        """C x H x W posterior of each image, in order (:meth:`predict` describes the arguments)."""
        import torch

        from urbangen.segment.prior import apply_prior, reweigh

        if mode not in MODES:
            raise UrbangenError(f"mode must be one of {MODES}, got {mode!r}")
        if batch_size < 1:
            raise UrbangenError(f"batch_size must be >= 1, got {batch_size}")
        items = list(images) if not isinstance(images, np.ndarray) or images.ndim == 4 else [images]
        for i, image in enumerate(items):
            if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
                raise UrbangenError(f"image {i}: expected HxWx3 uint8, got {image.dtype} {image.shape}")
        crop = tuple(crop_size or self.meta.get("crop_size") or (512, 512))
        step = tuple(stride or (max(1, crop[0] * 2 // 3), max(1, crop[1] * 2 // 3)))
        for start in range(0, len(items), batch_size):
            chunk = items[start : start + batch_size]
            groups: dict[tuple[int, ...], list[int]] = {}
            for k, image in enumerate(chunk):
                groups.setdefault(image.shape, []).append(k)
            results: dict[int, torch.Tensor] = {}
            with torch.inference_mode():  # not across the yield: the caller's code runs in its own mode
                for ks in groups.values():
                    batch = normalize(np.stack([chunk[k] for k in ks]), self.device)
                    logits = self._whole(batch) if mode == "whole" else self._slide(batch, crop, step)
                    probs = torch.softmax(logits.float(), dim=1)
                    if prior is not None:
                        probs = apply_prior(probs, prior, prior_weight)
                    if class_weights is not None:
                        probs = reweigh(probs, class_weights)
                    for j, k in enumerate(ks):
                        results[k] = probs[j]
            yield from (results[k] for k in range(len(chunk)))

    def _whole(self, batch: torch.Tensor) -> torch.Tensor:
        import torch.nn.functional as F

        logits = self.model(pixel_values=batch).logits
        return F.interpolate(logits, size=batch.shape[-2:], mode="bilinear", align_corners=False)

    def _slide(self, batch: torch.Tensor, crop: tuple[int, ...], stride: tuple[int, ...]) -> torch.Tensor:
        import torch

        b, _, h, w = batch.shape
        ch, cw = min(crop[0], h), min(crop[1], w)
        logits = torch.zeros((b, self.taxonomy.num_classes, h, w), device=batch.device)
        count = torch.zeros((1, 1, h, w), device=batch.device)
        rows = max(h - ch + stride[0] - 1, 0) // stride[0] + 1
        cols = max(w - cw + stride[1] - 1, 0) // stride[1] + 1
        for r in range(rows):
            for c in range(cols):
                y = min(r * stride[0], h - ch)
                x = min(c * stride[1], w - cw)
                logits[:, :, y : y + ch, x : x + cw] += self._whole(batch[:, :, y : y + ch, x : x + cw]).float()
                count[:, :, y : y + ch, x : x + cw] += 1
        return logits / count


def iter_predictions(
    predictor: Predictor, source: OpenSource, skip: set[str], mode: str = "whole", batch_size: int = 2, **kwargs: Any
) -> Iterator[tuple[str, np.ndarray, np.ndarray]]:
    """(sample id, trainIds, confidence) for every sample of ``source`` whose id is not in ``skip``;
    ``kwargs`` go to :meth:`Predictor.predict` (e.g. ``prior``)."""
    todo = [i for i, s in enumerate(source.samples) if s.id not in skip]
    for start in range(0, len(todo), batch_size):
        chunk = todo[start : start + batch_size]
        images = [source.load_image(i) for i in chunk]
        ids, conf = predictor.predict(images, mode=mode, batch_size=batch_size, **kwargs)
        for j, i in enumerate(chunk):
            yield source.samples[i].id, ids[j], conf[j]


def predict_dataset(
    model_dir: str | Path,
    source: DataSource,
    out_dir: str | Path,
    mode: str = "whole",
    batch_size: int = 2,
    device: str = "cpu",
    colorize: bool = False,
) -> dict[str, Any]:
    """Write ``out_dir/<id>.png`` (trainIds) for every image of ``source``; skips ids already written.

    ``colorize`` also writes ``out_dir/color/<id>.png`` with the taxonomy's colours.
    """
    from tqdm import tqdm

    opened = open_source(source, need_labels=False)
    predictor = Predictor.from_pretrained(model_dir, device, opened.taxonomy)
    out_dir = Path(out_dir)
    done = {s.id for s in opened.samples if (out_dir / f"{s.id}.png").is_file()}
    todo = len(opened) - len(done)
    for sample_id, ids, _ in tqdm(
        iter_predictions(predictor, opened, done, mode, batch_size), total=todo, desc="predict", unit="img"
    ):
        if colorize:
            write_png(out_dir / "color" / f"{sample_id}.png", predictor.taxonomy.colorize(ids))
        write_png(out_dir / f"{sample_id}.png", ids)
    summary = {"model": str(model_dir), "source": source.model_dump(mode="json"), "n_images": len(opened), "mode": mode}
    write_json_atomic(out_dir / "predict.json", summary)
    return {**summary, "n_predicted": todo}
