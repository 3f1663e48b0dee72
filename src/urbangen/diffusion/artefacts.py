"""Generator folders: diffusers-loadable parts plus ``urbangen.json``.

Layout of a stage folder::

    unet/                      UNet2DConditionModel (config.json + safetensors)
    controlnet/                ControlNetModel, UNetControlNetXSModel or ConcatControlModel (stage 2 only)
    vae/                       AutoencoderKL (latent-space generators only)
    scheduler/                 the DDPM training scheduler config (samplers derive theirs from it)
    domain_embedding.safetensors   "embedding": (num_domains, tokens, dim) cross-attention input
    urbangen.json              taxonomy, conditioning spec, resolution, config, data digests, weights digest

A folder is written beside its destination and renamed into place, so it is either complete or absent.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path
from typing import Any

import torch

from urbangen import __version__
from urbangen.diffusion.build import Modules
from urbangen.errors import UrbangenError
from urbangen.io import write_json_atomic

FORMAT = "urbangen-generator/1"
META = "urbangen.json"


def weights_digest(modules: Modules) -> str:
    """sha256 over every weight (names, dtypes, shapes, bytes) in a fixed order: stable across save/load."""
    digest = hashlib.sha256()
    parts: list[tuple[str, torch.nn.Module | None]] = [
        ("unet", modules.unet),
        ("controlnet", modules.control),
        ("vae", modules.vae),
    ]
    for name, module in parts:
        if module is None:
            continue
        state = module.state_dict()
        for key in sorted(state):
            _update(digest, f"{name}.{key}", state[key])
    _update(digest, "domain_embedding", modules.domain_embedding)
    return digest.hexdigest()


def _update(digest: Any, name: str, tensor: torch.Tensor) -> None:
    tensor = tensor.detach().cpu().contiguous()
    digest.update(f"{name}:{tensor.dtype}:{tuple(tensor.shape)}\n".encode())
    digest.update(tensor.reshape(-1).view(torch.uint8).numpy().tobytes())


def save_generator(modules: Modules, out: Path, meta: dict[str, Any]) -> str:
    """Write ``modules`` and ``meta`` (plus format, version and weights digest) to ``out``; return the digest."""
    from safetensors.torch import save_file

    out = Path(out)
    tmp = temp_dir(out)
    modules.unet.save_pretrained(tmp / "unet")
    if modules.control is not None:
        modules.control.save_pretrained(tmp / "controlnet")
    if modules.vae is not None:
        modules.vae.save_pretrained(tmp / "vae")
    modules.scheduler.save_pretrained(tmp / "scheduler")
    save_file(
        {"embedding": modules.domain_embedding.detach().cpu().contiguous()},
        tmp / "domain_embedding.safetensors",
        metadata={"domains": json.dumps(list(modules.domains))},
    )
    digest = weights_digest(modules)
    meta = {**meta, "patch": modules.patch, "format": FORMAT, "urbangen_version": __version__, "weights_sha256": digest}
    write_json_atomic(tmp / META, meta)
    replace_dir(tmp, out)
    return digest


def temp_dir(out: Path) -> Path:
    """A fresh, empty folder beside ``out`` to build its new content in."""
    tmp = out.with_name(f".{out.name}.tmp-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    return tmp


def replace_dir(tmp: Path, out: Path) -> None:
    """Move the finished folder ``tmp`` onto ``out`` (renames only: ``out`` is never half-written)."""
    old = out.with_name(f".{out.name}.old-{os.getpid()}")
    if out.exists():
        os.replace(out, old)
    os.replace(tmp, out)
    shutil.rmtree(old, ignore_errors=True)


def read_meta(folder: Path) -> dict[str, Any]:
    """The ``urbangen.json`` of a generator folder, with a clear error when it is not one."""
    path = Path(folder) / META
    if not path.is_file():
        raise UrbangenError(f"{folder} is not a generator folder: missing {META} (expected the output of adapt)")
    try:
        meta = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise UrbangenError(f"{path} is not valid JSON: {exc}") from None
    if meta.get("format") != FORMAT:
        raise UrbangenError(f"{path}: format {meta.get('format')!r} is not {FORMAT!r}")
    return meta


def load_generator(folder: Path, verify: bool = True) -> tuple[Modules, dict[str, Any]]:
    """Load a generator folder in float32 on CPU; ``verify`` recomputes the weights digest and compares."""
    from diffusers import AutoencoderKL, ControlNetModel, DDPMScheduler, UNet2DConditionModel, UNetControlNetXSModel
    from safetensors import safe_open

    from urbangen.diffusion.concat import ConcatControlModel

    folder = Path(folder)
    meta = read_meta(folder)
    try:
        unet = UNet2DConditionModel.from_pretrained(folder / "unet")
        scheduler = DDPMScheduler.from_pretrained(folder / "scheduler")
        vae = AutoencoderKL.from_pretrained(folder / "vae") if (folder / "vae").is_dir() else None
        control = None
        if (folder / "controlnet").is_dir():
            kind = json.loads((folder / "controlnet" / "config.json").read_text()).get("_class_name")
            cls = {"UNetControlNetXSModel": UNetControlNetXSModel, "ConcatControlModel": ConcatControlModel}.get(
                kind, ControlNetModel
            )
            control = cls.from_pretrained(folder / "controlnet")
        with safe_open(folder / "domain_embedding.safetensors", framework="pt") as handle:
            embedding = handle.get_tensor("embedding")
            domains = tuple(json.loads(handle.metadata()["domains"]))
    except (OSError, ValueError, KeyError, RuntimeError, json.JSONDecodeError) as exc:
        raise UrbangenError(f"cannot load generator {folder}: {exc}") from exc
    embedding = torch.nn.Parameter(embedding, requires_grad=False)
    modules = Modules(unet, scheduler, embedding, domains, vae, control, patch=int(meta.get("patch", 1)))
    for module in (unet, vae, control):
        if module is not None:
            module.requires_grad_(False).eval()
    if verify and weights_digest(modules) != meta.get("weights_sha256"):
        raise UrbangenError(f"{folder}: weights do not match the digest in {META} (corrupt or edited folder)")
    return modules, meta
