"""One runtime interface, three backends: PyTorch, onnxruntime and TensorRT.

``load_runtime(folder, RuntimeConfig(backend=...))`` returns an object with the reference sampler's API
(:class:`urbangen.diffusion.sampler.Generator`: ``generate(labels, seeds, depth, steps, guidance, ...)``).
Everything except the network evaluations stays the reference code: input checks, the control tensor,
the seeded initial noise, the scheduler loop and the resizing. Only ``denoise`` (control branch + UNet +
guidance) and ``decode`` (the VAE decoder) are replaced by the exported graphs, so a given seed gives the
same image on every backend up to the graphs' numerical differences.

An exported folder (``urbangen export``) is the generator folder plus ``onnx/`` (and ``tensorrt/``), each
with an ``export.json`` that names the generator weights' digest; graphs exported from other weights are
refused.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Literal, Protocol

import numpy as np
import torch
from pydantic import Field

from urbangen.config import StrictModel
from urbangen.errors import UrbangenError

BACKENDS = ("torch", "onnxruntime", "tensorrt")
DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}


class RuntimeConfig(StrictModel):
    """Which backend runs the networks, on which device. ``dtype`` applies to the torch backend (TensorRT's
    precision is fixed when its engine is built; onnxruntime runs the float32 graph)."""

    backend: Literal["torch", "onnxruntime", "tensorrt"] = "torch"
    device: str = "cpu"
    dtype: Literal["float32", "float16", "bfloat16"] = "float32"
    cuda_graph: bool = Field(default=False, description="tensorrt: replay static-shape engines as CUDA graphs")
    verify: bool = Field(default=True, description="recompute the weights digest when loading")


class Backend(Protocol):
    """What an exported backend provides: the two network evaluations of the sampler (``decoder`` is None
    for pixel-space generators, whose decoding has no weights and stays the reference code)."""

    decoder: Any

    def denoise(
        self, sample: torch.Tensor, t: torch.Tensor | int, cond: torch.Tensor | None, guidance: float, domain: int
    ) -> torch.Tensor: ...

    def decode(self, latents: torch.Tensor) -> torch.Tensor: ...


def read_export(folder: Path, kind: str, digest: str) -> dict[str, Any]:
    """``folder/<kind>/export.json``, checked against the generator's weights digest."""
    path = folder / kind / "export.json"
    if not path.is_file():
        raise UrbangenError(
            f"{folder} has no {kind} export ({path} missing): run `urbangen export --generator {folder} "
            f"--format {kind} --out {folder}`"
        )
    record = json.loads(path.read_text())
    if record.get("generator_sha256") != digest:
        raise UrbangenError(
            f"{path} was exported from other weights (digest {str(record.get('generator_sha256'))[:12]}, this "
            f"generator {digest[:12]}): export again"
        )
    return record


def _scalars(t: torch.Tensor | int, guidance: float, domain: int) -> dict[str, np.ndarray]:
    return {
        "timestep": np.asarray([float(t)], dtype=np.float32),
        "guidance": np.asarray([guidance], dtype=np.float32),
        "domain": np.asarray([domain], dtype=np.int64),
    }


class OnnxRuntimeBackend:
    """The exported graphs on onnxruntime (CPU, or CUDA where onnxruntime-gpu is installed)."""

    def __init__(self, folder: Path, record: dict[str, Any], device: str = "cpu") -> None:
        from urbangen.export.onnx import ort_session

        graphs = record["graphs"]
        self.denoiser = ort_session(folder / "onnx" / graphs["denoise"]["file"], device)
        self.decoder = (
            ort_session(folder / "onnx" / graphs["vae_decoder"]["file"], device) if ("vae_decoder" in graphs) else None
        )
        self.takes_cond = "cond" in graphs["denoise"]["inputs"]

    def denoise(self, sample, t, cond, guidance, domain):
        feed = {"sample": sample.float().cpu().numpy(), **_scalars(t, guidance, domain)}
        if self.takes_cond:
            if cond is None:
                raise UrbangenError("this generator's graph needs a condition (label map)")
            feed["cond"] = cond.float().cpu().numpy()
        (out,) = self.denoiser.run(None, feed)
        return torch.from_numpy(out).to(sample.device)

    def decode(self, latents):
        (images,) = self.decoder.run(None, {"latents": latents.float().cpu().numpy()})
        return torch.from_numpy(images).to(latents.device)


class TensorRTBackend:
    """Serialized TensorRT engines (built by :mod:`urbangen.export.tensorrt`) on a CUDA device."""

    def __init__(self, folder: Path, record: dict[str, Any], device: str, cuda_graph: bool) -> None:
        from urbangen.export.tensorrt import EngineRunner

        engines = record["engines"]
        self.device = torch.device(device)
        self.denoiser = EngineRunner(folder / "tensorrt" / engines["denoise"]["file"], self.device, cuda_graph)
        self.decoder = (
            EngineRunner(folder / "tensorrt" / engines["vae_decoder"]["file"], self.device, cuda_graph)
            if ("vae_decoder" in engines)
            else None
        )
        self.takes_cond = "cond" in self.denoiser.input_names

    def denoise(self, sample, t, cond, guidance, domain):
        feed = {"sample": sample.float(), **{k: torch.from_numpy(v) for k, v in _scalars(t, guidance, domain).items()}}
        if self.takes_cond:
            feed["cond"] = cond.float()
        return self.denoiser.run(feed)["model_output"]

    def decode(self, latents):
        return self.decoder.run({"latents": latents.float()})["images"]


def _exported_generator_class() -> type:
    from urbangen.diffusion.sampler import Generator

    class ExportedGenerator(Generator):
        """The reference sampler with ``denoise``/``decode`` delegated to an exported backend."""

        backend: Backend

        def denoise(self, latents, t, cond, guidance=1.0, domain=0):
            return self.backend.denoise(latents.to(self.device), t, cond, float(guidance), int(domain))

        def decode(self, latents):
            if self.backend.decoder is None:  # pixel space: identity or pixel_shuffle, no weights involved
                return super().decode(latents.to(self.device))
            return self.backend.decode(latents.to(self.device))

    return ExportedGenerator


def parse_model_uri(uri: str) -> tuple[str, str]:
    """``models:/<name>@<alias>`` -> (name, alias)."""
    body = uri.removeprefix("models:/")
    name, sep, alias = body.partition("@")
    if not uri.startswith("models:/") or not sep or not name or not alias or "/" in name:
        raise UrbangenError(f"model URI must look like models:/<registered name>@<alias>, got {uri!r}")
    return name, alias


def resolve_model_uri(uri: str, cache_dir: str | Path) -> Path:
    """Download the generator a registry alias points at (MLFLOW_TRACKING_URI) into ``cache_dir``."""
    from urbangen.tracking import Tracker

    name, alias = parse_model_uri(uri)
    cache_dir = Path(cache_dir)
    return Tracker(workspace=cache_dir).resolve_alias(name, alias, dst=cache_dir / "registry")


def load_runtime(folder: str | Path, config: RuntimeConfig | None = None) -> Any:
    """A generator from ``folder`` whose networks run on ``config.backend``; same API as ``Generator``."""
    from urbangen.diffusion.sampler import Generator

    config = config or RuntimeConfig()
    folder = Path(folder)
    if config.backend == "torch":
        return Generator.from_pretrained(folder, config.device, DTYPES[config.dtype], verify=config.verify)
    if config.backend == "tensorrt" and not config.device.startswith("cuda"):
        raise UrbangenError(f"the tensorrt backend needs a CUDA device, got device={config.device!r}")
    # 1. the reference parts (metadata, scheduler, conditioning) on the CPU in float32
    generator = _exported_generator_class().from_pretrained(folder, "cpu", torch.float32, verify=config.verify)
    # 2. the weights are now in the exported graphs: drop PyTorch's copies, keep their configs
    for module in (generator.modules.unet, generator.modules.control, generator.modules.vae):
        if module is not None:
            module.to("meta")
    generator.device = torch.device(config.device)
    # 3. the backend, refusing graphs exported from other weights
    if config.backend == "onnxruntime":
        generator.backend = OnnxRuntimeBackend(folder, read_export(folder, "onnx", generator.digest), config.device)
    else:
        record = read_export(folder, "tensorrt", generator.digest)
        generator.backend = TensorRTBackend(folder, record, config.device, config.cuda_graph)
    generator.backend_name = config.backend
    return generator
