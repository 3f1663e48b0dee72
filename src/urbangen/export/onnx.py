"""ONNX export of a generator: the denoising step with the control branch fused in, and the VAE decoder.

Two graphs reproduce :meth:`urbangen.diffusion.sampler.Generator.denoise` and ``.decode`` exactly:

``denoise.onnx``   inputs  ``sample`` (B,c,h,w) float32 (the scheduler-scaled model input),
                           ``timestep`` (1,) float32, ``cond`` (B,C,H,W) float32 (the control tensor,
                           absent for stage-1 generators), ``guidance`` (1,) float32, ``domain`` (1,) int64;
                   output  ``model_output`` (B,c,h,w) float32. Classifier-free guidance is inside the graph:
                           the control branch and the UNet run once on [null condition, condition] (2B).
``vae_decoder.onnx`` (latent generators only) input ``latents`` (B,c,h,w), output ``images`` (B,3,H,W)
                           in [-1, 1], the VAE scaling and shift folded in.

Batch, height and width are dynamic; opset 17. After export, both graphs are run with onnxruntime on a
seeded probe and compared with PyTorch; the worst absolute difference is recorded in ``export.json`` and
the export fails if it exceeds the tolerance (float32 exports match to ~1e-6).
"""

from __future__ import annotations

import tempfile
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch

from urbangen.diffusion.build import fused_control
from urbangen.errors import UrbangenError
from urbangen.io import atomic_path, sha256_file

OPSET = 17
TOLERANCE = 1e-4  # float32 parity bound checked at export (typical: ~1e-6)
_PROTOBUF_LIMIT = 2**31 - 1


class DenoiseStep(torch.nn.Module):
    """Control branch + UNet + guidance combination as one module (the body of ``Generator.denoise``)."""

    def __init__(self, generator: Any) -> None:
        super().__init__()
        self.unet = generator.unet
        self.control = generator.controlnet
        self.xs = fused_control(self.control)  # ControlNet-XS or concat: one call runs the denoiser
        self.register_buffer("embedding", generator.domain_embedding.detach().float().clone())

    def forward(
        self,
        sample: torch.Tensor,
        timestep: torch.Tensor,
        cond: torch.Tensor | None,
        guidance: torch.Tensor,
        domain: torch.Tensor,
    ) -> torch.Tensor:
        if cond is None:  # stage 1: no control branch, no guidance
            batch = sample.shape[0]
            states = self.embedding[domain[0]].unsqueeze(0).expand(batch, -1, -1)
            return self.unet(sample, timestep.expand(batch), states).sample.float()
        x = torch.cat([sample, sample])
        c = torch.cat([torch.zeros_like(cond), cond])
        batch = x.shape[0]
        states = self.embedding[domain[0]].unsqueeze(0).expand(batch, -1, -1)
        t = timestep.expand(batch)
        if self.xs:
            out = self.control(x, t, states, controlnet_cond=c).sample
        else:
            down, mid = self.control(x, t, states, controlnet_cond=c, return_dict=False)
            out = self.unet(
                x, t, states, down_block_additional_residuals=down, mid_block_additional_residual=mid
            ).sample
        null, full = out.float().chunk(2)
        return null + guidance * (full - null)


class Decoder(torch.nn.Module):
    """Latents in the denoiser's space -> images in [-1, 1] (``Modules.decode``)."""

    def __init__(self, vae: Any) -> None:
        super().__init__()
        self.vae = vae
        self.scale = float(vae.config.scaling_factor)
        self.shift = float(vae.config.shift_factor or 0.0)

    def forward(self, latents: torch.Tensor) -> torch.Tensor:
        return self.vae.decode(latents / self.scale + self.shift).sample.float()


def probe_inputs(generator: Any, batch: int = 2, seed: int = 0) -> dict[str, torch.Tensor]:
    """Seeded example inputs at the generator's resolution (used for tracing and for the parity check)."""
    gen = torch.Generator().manual_seed(seed)
    height, width = generator.resolution
    factor = generator.modules.factor
    channels = generator.unet.config.in_channels
    inputs = {
        "sample": torch.randn(batch, channels, height // factor, width // factor, generator=gen),
        "timestep": torch.tensor([500.0]),
        "guidance": torch.tensor([2.0]),
        "domain": torch.tensor([len(generator.domains) - 1], dtype=torch.int64),
    }
    if generator.spec is not None:
        labels = torch.randint(0, generator.spec.num_classes + 1, (batch, height, width), generator=gen)
        labels[labels == generator.spec.num_classes] = 255
        depth = torch.rand(batch, height, width, generator=gen) * 50 if generator.spec.depth else None
        inputs["cond"] = generator.condition(labels, depth).float()
    return inputs


def _export(module: torch.nn.Module, inputs: dict[str, torch.Tensor | None], output: str, out: Path) -> None:
    """Trace ``module`` with ``inputs`` (in forward order; None = absent) to ``out``, atomically.

    Batch, height and width of every 4-D tensor are dynamic. Weights beyond protobuf's 2 GiB limit go to
    one ``<name>.data`` file beside the graph (Stable Diffusion-size UNet + ControlNet in float32).
    """
    import onnx

    names = [name for name, value in inputs.items() if value is not None]
    axes = {name: {0: "batch", 2: "height", 3: "width"} for name in names if inputs[name].dim() == 4}
    axes[output] = {0: "batch", 2: "height", 3: "width"}
    with atomic_path(out) as tmp, tempfile.TemporaryDirectory(dir=out.parent) as scratch:
        traced = Path(scratch) / "traced.onnx"  # large models: the exporter adds one file per weight here
        with torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore", torch.jit.TracerWarning)  # shape asserts traced as constants
            torch.onnx.export(
                module,
                tuple(inputs.values()),
                str(traced),
                input_names=names,
                output_names=[output],
                dynamic_axes=axes,
                opset_version=OPSET,
                dynamo=False,
                do_constant_folding=True,
            )
        model = onnx.load(str(traced))
        large = model.ByteSize() > _PROTOBUF_LIMIT
        onnx.save_model(
            model, str(tmp), save_as_external_data=large, all_tensors_to_one_file=True, location=f"{out.name}.data"
        )


def ort_session(path: Path, device: str = "cpu") -> Any:
    """An onnxruntime session for ``path`` (CUDA provider when ``device`` is cuda and it is available)."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    providers = ["CPUExecutionProvider"]
    if device.startswith("cuda") and "CUDAExecutionProvider" in ort.get_available_providers():
        providers.insert(0, "CUDAExecutionProvider")
    try:
        return ort.InferenceSession(str(path), options, providers=providers)
    except Exception as exc:  # onnxruntime raises its own exception types for bad or missing files
        raise UrbangenError(f"cannot load ONNX model {path}: {exc}") from exc


def _ordered(graph: str, probe: dict[str, torch.Tensor]) -> dict[str, torch.Tensor | None]:
    """The probe as the forward arguments of ``graph``, in order (the decoder reads the latents)."""
    if graph == "vae_decoder":
        return {"latents": probe["sample"]}
    return {name: probe.get(name) for name in ("sample", "timestep", "cond", "guidance", "domain")}


def _max_diff(session: Any, module: torch.nn.Module, inputs: dict[str, torch.Tensor | None]) -> float:
    feed = {name: value.numpy() for name, value in inputs.items() if value is not None}
    (onnx_out,) = session.run(None, feed)
    with torch.no_grad():
        torch_out = module(*inputs.values())
    return float(np.abs(onnx_out - torch_out.numpy()).max())


def export_onnx(generator: Any, out: str | Path, tolerance: float = TOLERANCE) -> dict[str, Any]:
    """Export ``generator`` (a float32 CPU ``Generator``) to ``out/denoise.onnx`` [+ ``out/vae_decoder.onnx``].

    Steps: 1. wrap the modules; 2. trace with seeded probe inputs; 3. run onnxruntime on probes at two batch
    sizes and compare with PyTorch; 4. return the record written to ``export.json`` (files, sha256, parity).
    """
    if generator.dtype != torch.float32 or generator.device.type != "cpu":
        raise UrbangenError(
            f"export needs the generator in float32 on cpu, got {generator.dtype} on {generator.device}"
        )
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    record: dict[str, Any] = {"opset": OPSET, "tolerance": tolerance, "graphs": {}}

    # 1-2. the fused denoising step (and the VAE decoder of latent-space generators), traced
    started = time.perf_counter()
    graphs = {"denoise": (out / "denoise.onnx", DenoiseStep(generator).eval(), "model_output")}
    if generator.vae is not None:
        graphs["vae_decoder"] = (out / "vae_decoder.onnx", Decoder(generator.vae).eval(), "images")
    for name, (path, module, output) in graphs.items():
        _export(module, _ordered(name, probe_inputs(generator, batch=2)), output, path)
    export_s = time.perf_counter() - started

    # 3. parity with PyTorch at the traced batch size and another one (exercises the dynamic batch axis)
    for name, (path, module, _) in graphs.items():
        session = ort_session(path)
        worst = max(_max_diff(session, module, _ordered(name, probe_inputs(generator, b, b))) for b in (2, 3))
        if not worst <= tolerance:
            raise UrbangenError(f"{path}: onnxruntime differs from PyTorch by {worst:.3g} (> tolerance {tolerance})")
        record["graphs"][name] = {
            "file": path.name,
            "sha256": sha256_file(path),
            "inputs": [i.name for i in session.get_inputs()],
            "outputs": [o.name for o in session.get_outputs()],
            "max_abs_diff": worst,
        }
        data = path.with_name(f"{path.name}.data")
        if data.is_file():  # weights of a graph beyond 2 GiB
            record["graphs"][name].update(data_file=data.name, data_sha256=sha256_file(data))
    record["export_seconds"] = round(export_s, 3)
    return record
