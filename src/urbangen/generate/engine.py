"""The fast generation engine: the reference sampler's computation, arranged to run near the GPU's limit.

:class:`FastGenerator` is a :class:`urbangen.diffusion.sampler.Generator` whose denoising loop runs through
one :class:`FusedDenoiser` module (control branch + UNet + classifier-free guidance in one graph). It reuses
the reference's conditioning, noise, schedulers, decoding and resizing, so the same seeds give the same
images: on CPU in float32 the engine matches the reference within 1/255 per pixel (tests/generate); in
bf16 on a GPU it matches within bf16 rounding of the reference's own bf16 run.

What makes it fast, each switchable in :class:`~urbangen.generate.config.EngineConfig`:

- bf16 weights and activations on CUDA (``dtype: auto``), float32 on CPU;
- fused attention: every attention runs through PyTorch SDPA (``AttnProcessor2_0``; q/k/v projections
  fused into one matmul on CUDA);
- classifier-free guidance batched with the conditional pass: one control + UNet call on 2B samples;
- the control branch's conditioning embedding (full-resolution convolutions of the one-hot map) does not
  depend on the timestep: it is computed once per batch, not once per step (``cache_control_embedding``);
- channels_last memory format for the convolutions (``channels_last``);
- many images per step (``batch_size`` of ``generate``);
- ``torch.compile`` of the fused module (``compile``), with CUDA graphs (``cuda_graphs``: compile mode
  ``reduce-overhead``) so a step is one graph launch; both only on CUDA, ignored on CPU;
- the VAE decodes in chunks (``vae_batch``) to bound memory at large batch sizes; with ``compile`` it is
  channels_last and compiled too.

Measured on an H200 (docs/BENCHMARKS.md "Generation engine"): compiled, 13.1 ms per image-step at 16 images
of 512x1024 with guidance, 51% of the bf16 matmul peak and 1.44x the stock diffusers pipeline at the same
batch; eager, it was no faster than the reference (20.7 vs 19.4 ms per image-step at 8 images), so on a GPU
run it with ``compile``.
"""

from __future__ import annotations

import copy

import torch

from urbangen.diffusion.build import fused_control
from urbangen.diffusion.sampler import Generator
from urbangen.generate.config import EngineConfig

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def engine_dtype(cfg: EngineConfig) -> torch.dtype:
    """``auto``: bfloat16 on CUDA, float32 elsewhere."""
    if cfg.dtype == "auto":
        return torch.bfloat16 if cfg.device.startswith("cuda") else torch.float32
    return DTYPES[cfg.dtype]


def compile_mode(cfg: EngineConfig) -> str:
    """torch.compile's mode for the engine flags: CUDA graphs are what ``reduce-overhead`` adds."""
    if cfg.compile_mode == "max-autotune":
        return "max-autotune" if cfg.cuda_graphs else "max-autotune-no-cudagraphs"
    return "reduce-overhead" if cfg.cuda_graphs else "default"


def _without_cond_embedding(control: torch.nn.Module) -> torch.nn.Module:
    """A view of a ControlNetModel that shares its weights but takes an already-embedded condition."""
    view = copy.copy(control)
    view._modules = dict(control._modules)
    view._modules["controlnet_cond_embedding"] = torch.nn.Identity()
    return view


class FusedDenoiser(torch.nn.Module):
    """Control branch + UNet + classifier-free guidance as one module (one graph for torch.compile).

    ``forward(x, t, cond, states)``: ``x`` the scheduler-scaled input (B, c, h, w); ``cond`` the control
    input for the batch as the model sees it ([null; condition] when guiding; already embedded when
    ``embedded``); ``states`` the cross-attention input for that batch. Returns the guided model output in
    float32, exactly as :meth:`Generator.denoise` does.
    """

    def __init__(
        self,
        unet: torch.nn.Module,
        control: torch.nn.Module | None,
        guidance: float,
        guided: bool,
        embedded: bool,
        channels_last: bool,
    ) -> None:
        super().__init__()
        self.unet = unet
        self.xs = fused_control(control)
        self.control = _without_cond_embedding(control) if embedded and control is not None else control
        self.guidance = float(guidance)
        self.guided = guided
        self.memory_format = torch.channels_last if channels_last else torch.contiguous_format

    def forward(
        self, x: torch.Tensor, t: torch.Tensor, cond: torch.Tensor | None, states: torch.Tensor
    ) -> torch.Tensor:
        if self.guided:
            x = torch.cat([x, x])
        x = x.contiguous(memory_format=self.memory_format)
        t = t.expand(x.shape[0])
        if self.control is None or cond is None:
            out = self.unet(x, t, states).sample
        elif self.xs:
            out = self.control(x, t, states, controlnet_cond=cond).sample
        else:
            down, mid = self.control(x, t, states, controlnet_cond=cond, return_dict=False)
            out = self.unet(x, t, states, down_block_additional_residuals=down, mid_block_additional_residual=mid)
            out = out.sample
        out = out.float()
        if self.guided:
            null, full = out.chunk(2)
            out = null + self.guidance * (full - null)
        return out


def prepare_modules(modules: list[torch.nn.Module | None], cfg: EngineConfig) -> None:
    """SDPA attention everywhere, fused q/k/v on CUDA, channels_last weights when asked (in place)."""
    from diffusers.models.attention_processor import AttnProcessor, AttnProcessor2_0

    cuda = cfg.device.startswith("cuda")
    for module in modules:
        if module is None:
            continue
        processors = getattr(module, "attn_processors", {})
        if processors and all(type(p) in (AttnProcessor, AttnProcessor2_0) for p in processors.values()):
            module.set_attn_processor(AttnProcessor2_0())
            if cuda and hasattr(module, "fuse_qkv_projections"):
                module.fuse_qkv_projections()
        if cfg.channels_last:
            module.to(memory_format=torch.channels_last)


class FastGenerator(Generator):
    """A loaded :class:`Generator` whose :meth:`sample_batch` runs the fast loop (see the module docstring).

    Build it from a reference generator (weights are shared and converted in place) and an
    :class:`EngineConfig`; :meth:`generate` is the reference's, so inputs are validated, resized and
    seeded identically.
    """

    def __init__(self, generator: Generator, cfg: EngineConfig, vae_batch: int = 4) -> None:
        self.__dict__.update(generator.__dict__)
        self.engine = cfg
        self.vae_batch = max(1, vae_batch)
        dtype = engine_dtype(cfg)
        if dtype != self.dtype or torch.device(cfg.device) != self.device:
            self.device, self.dtype = torch.device(cfg.device), dtype
            for module in (self.unet, self.controlnet, self.vae):
                if module is not None:
                    module.to(self.device, self.dtype)
            self.domain_embedding = self.domain_embedding.to(self.device, self.dtype)
        prepare_modules([self.unet, self.controlnet], cfg)
        self._compiled: dict[tuple[float, bool, bool], torch.nn.Module] = {}
        self._decode = self.modules.decode
        if self.cuda and cfg.compile and self.vae is not None:
            # the VAE goes channels_last only when compiled: eager, a channels_last VAE decoded 1.8x slower (H200)
            prepare_modules([self.vae], cfg)
            self._decode = torch.compile(self.modules.decode, dynamic=False)

    @property
    def cuda(self) -> bool:
        return self.device.type == "cuda"

    def _embed_cond(self, cond: torch.Tensor) -> torch.Tensor:
        return self.controlnet.controlnet_cond_embedding(cond)

    def denoiser(self, guidance: float, guided: bool, embedded: bool) -> torch.nn.Module:
        """The (compiled, on CUDA when asked) fused module for these settings; built once and kept."""
        key = (float(guidance), guided, embedded)
        if key not in self._compiled:
            module = FusedDenoiser(self.unet, self.controlnet, guidance, guided, embedded, self.engine.channels_last)
            if self.cuda and (self.engine.compile or self.engine.cuda_graphs):
                mode = compile_mode(self.engine)
                module = torch.compile(module, mode=mode, dynamic=False)
            self._compiled[key] = module
        return self._compiled[key]

    def step_inputs(
        self, cond: torch.Tensor | None, batch: int, guidance: float, domain: int = 0
    ) -> tuple[torch.nn.Module, torch.Tensor | None, torch.Tensor]:
        """Everything a step needs that does not change over the steps: module, control input, states."""
        guided = cond is not None and guidance != 1.0
        control = self.controlnet
        embedded = (
            self.engine.cache_control_embedding
            and cond is not None
            and control is not None
            and not fused_control(control)
            and control.config.controlnet_conditioning_channel_order == "rgb"
        )
        if cond is not None:
            cond = cond.to(self.device, self.dtype)
            if guided:
                cond = torch.cat([torch.zeros_like(cond), cond])
            if embedded:
                cond = self._embed_cond(cond)
            cond = cond.contiguous(memory_format=torch.channels_last) if self.engine.channels_last else cond
        states = self.encoder_states(batch * (2 if guided else 1), domain)
        return self.denoiser(guidance, guided, embedded), cond, states

    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        """The reference's decoding (through torch.compile when the engine compiles)."""
        return self._decode(latents.to(self.dtype)).float()

    @torch.inference_mode()
    def denoise_loop(
        self,
        cond: torch.Tensor | None,
        seeds: list[int],
        size: tuple[int, int],
        steps: int,
        guidance: float,
        scheduler: str,
        domain: int = 0,
        init: torch.Tensor | None = None,
        strength: float = 1.0,
    ) -> torch.Tensor:
        """The reference loop with the fused denoiser; returns the final latents (float32)."""
        sched = self.make_scheduler(scheduler, steps)
        timesteps, x = self.start(sched, self.initial_noise(seeds, size), init, strength)
        module, control_in, states = self.step_inputs(cond, len(seeds), guidance, domain)
        for t in timesteps:
            model_in = sched.scale_model_input(x, t).to(self.dtype)
            if self.cuda and self.engine.cuda_graphs:
                torch.compiler.cudagraph_mark_step_begin()
            out = module(model_in, torch.as_tensor(t, device=self.device), control_in, states)
            x = sched.step(out, t, x).prev_sample
        return x

    @torch.inference_mode()
    def sample_batch(
        self,
        cond: torch.Tensor | None,
        seeds: list[int],
        size: tuple[int, int],
        steps: int,
        guidance: float,
        scheduler: str,
        domain: int = 0,
        init: torch.Tensor | None = None,
        strength: float = 1.0,
    ) -> torch.Tensor:
        """:meth:`denoise_loop` then the VAE decoder in chunks; images in [-1, 1] (float32)."""
        x = self.denoise_loop(cond, seeds, size, steps, guidance, scheduler, domain, init, strength)
        return torch.cat([self.decode(chunk) for chunk in x.split(self.vae_batch)])
