"""SegFormer models built from config, saved as self-describing folders, loaded with their taxonomy.

A saved model is a folder::

    config.json          transformers SegformerConfig (num_labels, id2label from the taxonomy)
    model.safetensors    weights
    urbangen.json        {"format": 1, "size": ..., "taxonomy": {...}, "meta": {...training meta...}}

Nothing is ever downloaded: sizes are built from config with random weights, and ``pretrained`` points at
a local folder (a SegFormer segmentation checkpoint or a bare MiT encoder such as ``mit-b0``).
"""

from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from urbangen.errors import UrbangenError
from urbangen.io import write_json_atomic
from urbangen.labels import Taxonomy, cityscapes19

if TYPE_CHECKING:
    import torch

META_FILE = "urbangen.json"
# ImageNet statistics (0..255 scale), as used by every SegFormer checkpoint
MEAN = (123.675, 116.28, 103.53)
STD = (58.395, 57.12, 57.375)

# MiT encoder sizes (SegFormer paper, Table 1) plus "tiny" for tests and the CPU demo
SIZES: dict[str, dict[str, Any]] = {
    "tiny": {"hidden_sizes": [16, 32, 64, 128], "depths": [1, 1, 1, 1], "num_attention_heads": [1, 1, 2, 4],
             "decoder_hidden_size": 64},
    "b0": {"hidden_sizes": [32, 64, 160, 256], "depths": [2, 2, 2, 2], "num_attention_heads": [1, 2, 5, 8],
           "decoder_hidden_size": 256},
    "b1": {"hidden_sizes": [64, 128, 320, 512], "depths": [2, 2, 2, 2], "num_attention_heads": [1, 2, 5, 8],
           "decoder_hidden_size": 256},
    "b2": {"hidden_sizes": [64, 128, 320, 512], "depths": [3, 4, 6, 3], "num_attention_heads": [1, 2, 5, 8],
           "decoder_hidden_size": 768},
    "b3": {"hidden_sizes": [64, 128, 320, 512], "depths": [3, 4, 18, 3], "num_attention_heads": [1, 2, 5, 8],
           "decoder_hidden_size": 768},
    "b4": {"hidden_sizes": [64, 128, 320, 512], "depths": [3, 8, 27, 3], "num_attention_heads": [1, 2, 5, 8],
           "decoder_hidden_size": 768},
    "b5": {"hidden_sizes": [64, 128, 320, 512], "depths": [3, 6, 40, 3], "num_attention_heads": [1, 2, 5, 8],
           "decoder_hidden_size": 768},
}  # fmt: skip


def _label_maps(taxonomy: Taxonomy) -> dict[str, Any]:
    return {
        "id2label": dict(enumerate(taxonomy.classes)),
        "label2id": {name: i for i, name in enumerate(taxonomy.classes)},
        "semantic_loss_ignore_index": taxonomy.ignore,
    }


def build_model(
    size: str = "tiny", num_classes: int = 19, pretrained: str | Path | None = None, taxonomy: Taxonomy | None = None
) -> torch.nn.Module:
    """A SegFormer of ``size`` (tiny | b0..b5) predicting ``num_classes`` classes, in float32 on CPU.

    ``pretrained``: a local folder saved by transformers (segmentation model or MiT encoder); its encoder
    weights are loaded and a decode head of the right width is built where the classes differ.
    ``taxonomy`` (default: Cityscapes' 19 classes when ``num_classes`` is 19) names the labels in config.json.
    """
    from transformers import SegformerConfig, SegformerForSemanticSegmentation

    if size not in SIZES:
        raise UrbangenError(f"unknown model size {size!r}; expected one of {sorted(SIZES)}")
    if taxonomy is None:
        taxonomy = cityscapes19() if num_classes == 19 else _numbered(num_classes)
    if taxonomy.num_classes != num_classes:
        raise UrbangenError(f"taxonomy {taxonomy.name} has {taxonomy.num_classes} classes, not {num_classes}")
    if pretrained is not None:
        folder = Path(pretrained)
        if not (folder / "config.json").is_file():
            raise UrbangenError(f"pretrained folder {folder} has no config.json (expected a transformers folder)")
        return SegformerForSemanticSegmentation.from_pretrained(
            folder, local_files_only=True, ignore_mismatched_sizes=True, **_label_maps(taxonomy)
        )
    config = SegformerConfig(**SIZES[size], **_label_maps(taxonomy))
    return SegformerForSemanticSegmentation(config)


def _numbered(num_classes: int) -> Taxonomy:
    rng = np.random.default_rng(0)
    colors = tuple(tuple(int(c) for c in rng.integers(0, 256, 3)) for _ in range(num_classes))
    return Taxonomy(f"classes{num_classes}", tuple(f"class{i}" for i in range(num_classes)), colors)


def save_model(model: torch.nn.Module, out_dir: str | Path, taxonomy: Taxonomy, meta: dict[str, Any]) -> Path:
    """Write the model folder atomically: a crash leaves the previous folder (or none), never half of one."""
    out_dir = Path(out_dir)
    model = getattr(model, "module", model)  # unwrap DistributedDataParallel
    if model.config.num_labels != taxonomy.num_classes:
        raise UrbangenError(
            f"model predicts {model.config.num_labels} classes but taxonomy {taxonomy.name} has {taxonomy.num_classes}"
        )
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.", dir=out_dir.parent))
    try:
        model.save_pretrained(tmp, safe_serialization=True)
        size = meta.get("size") or _guess_size(model.config)
        write_json_atomic(tmp / META_FILE, {"format": 1, "size": size, "taxonomy": taxonomy.to_dict(), "meta": meta})
        old = out_dir.with_name(f".{out_dir.name}.old")
        if out_dir.exists():
            shutil.rmtree(old, ignore_errors=True)
            out_dir.rename(old)
        tmp.rename(out_dir)
        shutil.rmtree(old, ignore_errors=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return out_dir


def _guess_size(config: Any) -> str | None:
    for name, spec in SIZES.items():
        if list(config.hidden_sizes) == spec["hidden_sizes"] and list(config.depths) == spec["depths"]:
            return name
    return None


def read_model_info(model_dir: str | Path) -> dict[str, Any]:
    """The urbangen.json of a model folder, checked for the files a model folder must hold."""
    folder = Path(model_dir)
    if not folder.is_dir():
        raise UrbangenError(f"model folder not found: {folder}")
    for name in ("config.json", "model.safetensors", META_FILE):
        if not (folder / name).is_file():
            raise UrbangenError(
                f"model folder {folder} has no {name}: expected config.json, model.safetensors and {META_FILE} "
                "(a folder written by `urbangen train`)"
            )
    try:
        info = json.loads((folder / META_FILE).read_text())
        info["taxonomy"] = Taxonomy.from_dict(info["taxonomy"])
    except (json.JSONDecodeError, KeyError, TypeError) as exc:
        raise UrbangenError(f"{folder / META_FILE} is not a valid urbangen model description ({exc})") from None
    return info


def load_model(
    model_dir: str | Path, device: str = "cpu", taxonomy: Taxonomy | None = None
) -> tuple[torch.nn.Module, Taxonomy, dict[str, Any]]:
    """(model in eval mode on ``device``, its taxonomy, its training meta) from a saved folder.

    ``taxonomy``: the taxonomy the caller needs; a model of another taxonomy is a clear error.
    """
    from transformers import SegformerForSemanticSegmentation

    info = read_model_info(model_dir)
    found: Taxonomy = info["taxonomy"]
    if taxonomy is not None and (found.name, found.classes) != (taxonomy.name, taxonomy.classes):
        raise UrbangenError(
            f"model {model_dir} predicts taxonomy {found.name} ({found.num_classes} classes) but "
            f"{taxonomy.name} ({taxonomy.num_classes} classes) is needed"
        )
    model = SegformerForSemanticSegmentation.from_pretrained(Path(model_dir), local_files_only=True)
    if model.config.num_labels != found.num_classes:
        raise UrbangenError(
            f"model {model_dir}: config.json has {model.config.num_labels} labels but {META_FILE} declares "
            f"{found.num_classes} classes"
        )
    return model.to(device).eval(), found, info.get("meta", {})


def normalize(images: np.ndarray | torch.Tensor, device: str | torch.device = "cpu") -> torch.Tensor:
    """uint8 BxHxWx3 (array or tensor) -> float32 Bx3xHxW tensor normalised with ImageNet statistics."""
    import torch

    batch = torch.as_tensor(images).to(device)
    if batch.ndim != 4 or batch.shape[-1] != 3:
        raise UrbangenError(f"expected images as BxHxWx3 uint8, got shape {tuple(batch.shape)}")
    batch = batch.permute(0, 3, 1, 2).float()
    mean = torch.tensor(MEAN).view(1, 3, 1, 1).to(batch.device, non_blocking=True)  # not waiting for the GPU
    std = torch.tensor(STD).view(1, 3, 1, 1).to(batch.device, non_blocking=True)
    return (batch - mean) / std
