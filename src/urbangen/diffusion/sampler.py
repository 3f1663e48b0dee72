"""The reference sampler: label maps (+ depth) -> target-style images with an adapted generator.

High level: ``Generator.from_pretrained(dir).generate(labels, seeds)``. The lower-level pieces it is made of
are public so that the fast engine and the ONNX/TensorRT export reproduce exactly this computation:

1. ``condition(labels, depth)``     -> (B, C, H, W) control tensor at image resolution;
2. ``initial_noise(seeds, size)``    -> (B, c, h, w) float32, image i drawn from its own ``seeds[i]``;
3. ``make_scheduler(name, steps)``   -> a fresh DDIM / DPM-Solver++ / Euler scheduler with its timesteps;
   ``start(scheduler, noise, init, strength)`` -> the timesteps to run and the starting point: pure noise,
   or (``strength`` < 1, SDEdit) an init image encoded and noised to the first of the last
   ``round(strength * steps)`` timesteps;
4. per timestep: ``denoise(scheduler.scale_model_input(x, t), t, cond, guidance)`` and ``scheduler.step``;
   ``denoise`` runs the control branch and the UNet on [null condition, condition] as one batch
   (classifier-free guidance on the control signal; the null condition is all zeros, as in training);
5. ``decode(latents)`` -> images in [-1, 1]; ``to_uint8`` -> HxWx3 uint8.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image

from urbangen.diffusion.appearance import MODES as CALIBRATION_MODES
from urbangen.diffusion.appearance import calibrate as calibrate_colours
from urbangen.diffusion.appearance import calibration_mode
from urbangen.diffusion.artefacts import load_generator
from urbangen.diffusion.build import Modules, fused_control
from urbangen.diffusion.conditioning import ConditionSpec, condition_tensor
from urbangen.errors import UrbangenError
from urbangen.labels import Taxonomy

SCHEDULERS = ("ddim", "dpm", "euler")
SIZE_MODES = ("model", "native")


class Generator:
    """An adapted generator loaded for sampling (float32 on CPU by default; bf16/fp16 on a GPU)."""

    def __init__(
        self,
        modules: Modules,
        meta: dict,
        device: str = "cpu",
        dtype: torch.dtype | None = None,
        batch_multiple: int | None = None,
    ) -> None:
        self.modules = modules
        self.config = meta
        self.device = torch.device(device)
        self.dtype = dtype or torch.float32
        self.taxonomy = Taxonomy.from_dict(meta["taxonomy"])
        self.resolution: tuple[int, int] = tuple(meta["resolution"])
        self.digest: str = meta["weights_sha256"]
        self.spec = ConditionSpec.from_dict(meta["conditioning"]) if meta.get("conditioning") else None
        self.domains = modules.domains
        # CPU matrix products give a row slightly different results depending on how many rows there are
        # (measured: rows agree whenever the count is a multiple of 4), so on CPU every model call is padded
        # to a multiple of 4 rows: an image then comes out bit-identical whatever batch it is rendered in.
        self.batch_multiple = batch_multiple or (4 if self.device.type == "cpu" else 1)
        for module in (modules.unet, modules.control, modules.vae):
            if module is not None and (module.device != self.device or module.dtype != self.dtype):
                module.to(self.device, self.dtype)
        self.domain_embedding = modules.domain_embedding.detach().to(self.device, self.dtype)

    @classmethod
    def from_pretrained(
        cls,
        folder: str | Path,
        device: str = "cpu",
        dtype: torch.dtype | None = None,
        verify: bool = True,
        batch_multiple: int | None = None,
    ) -> Generator:
        """Load a stage folder; ``verify`` checks the weights against the recorded digest."""
        modules, meta = load_generator(Path(folder), verify=verify)
        return cls(modules, meta, device, dtype, batch_multiple)

    # the modules, by the names diffusers uses
    @property
    def unet(self):
        return self.modules.unet

    @property
    def controlnet(self):
        return self.modules.control

    @property
    def vae(self):
        return self.modules.vae

    @property
    def scheduler(self):
        """The DDPM training scheduler (its config defines the noise schedule and prediction type)."""
        return self.modules.scheduler

    @property
    def size_multiple(self) -> int:
        return self.modules.size_multiple

    @property
    def calibrations(self) -> tuple[str, ...]:
        """The ``calibrate`` modes this generator can apply: ``none``, plus ``pooled`` and ``exemplar`` when
        stage 2 recorded the target colour statistics they need."""
        if not self.config.get("appearance"):
            return ("none",)
        return CALIBRATION_MODES if self.config.get("appearance_exemplars") else ("none", "pooled")

    def make_scheduler(self, name: str = "ddim", steps: int = 20):
        """A fresh sampling scheduler (they keep per-run state) with ``steps`` timesteps set."""
        from diffusers import DDIMScheduler, DPMSolverMultistepScheduler, EulerDiscreteScheduler

        classes = {"ddim": DDIMScheduler, "dpm": DPMSolverMultistepScheduler, "euler": EulerDiscreteScheduler}
        if name not in classes:
            raise UrbangenError(f"unknown scheduler {name!r}; expected one of {SCHEDULERS}")
        if steps < 1:
            raise UrbangenError(f"steps must be at least 1, got {steps}")
        scheduler = classes[name].from_config(self.modules.scheduler.config)
        scheduler.set_timesteps(steps, device=self.device)
        return scheduler

    def domain_index(self, domain: str | None) -> int:
        if domain is None:
            return 0
        if domain not in self.domains:
            raise UrbangenError(f"unknown domain {domain!r}; this generator knows {list(self.domains)}")
        return self.domains.index(domain)

    def condition(
        self, labels: np.ndarray | torch.Tensor, depth: np.ndarray | torch.Tensor | None = None
    ) -> torch.Tensor:
        """(B,H,W) trainIds [+ (B,H,W) depth in metres] -> (B,C,H,W) control tensor on the device."""
        if self.spec is None:
            raise UrbangenError("this is a stage-1 generator: it has no control branch (use a stage-2 folder)")
        labels = torch.as_tensor(np.asarray(labels) if not isinstance(labels, torch.Tensor) else labels)
        if depth is not None:
            depth = torch.as_tensor(
                np.asarray(depth, dtype=np.float32) if not isinstance(depth, torch.Tensor) else depth
            )
        depth = depth.to(self.device) if depth is not None else None
        return condition_tensor(labels.to(self.device), self.spec, depth).to(self.dtype)

    def encoder_states(self, batch: int, domain: int = 0) -> torch.Tensor:
        """The cross-attention input: the domain embedding repeated over the batch."""
        return self.domain_embedding[domain].expand(batch, -1, -1)

    def denoise(
        self,
        latents: torch.Tensor,
        t: torch.Tensor | int,
        cond: torch.Tensor | None,
        guidance: float = 1.0,
        domain: int = 0,
    ) -> torch.Tensor:
        """One model evaluation: control branch + UNet, with CFG on the control signal batched in one pass.

        ``latents`` is the scheduler-scaled model input; returns the model output (noise or v, following
        the scheduler's prediction type) in float32.
        """
        x = latents.to(self.device, self.dtype).contiguous()
        cond = None if cond is None else cond.to(self.device, self.dtype).contiguous()
        batch = x.shape[0]
        cfg = cond is not None and guidance != 1.0
        if cfg:
            x = torch.cat([x, x])
            cond = torch.cat([torch.zeros_like(cond), cond])
        pad = -x.shape[0] % self.batch_multiple
        if pad:
            x = torch.cat([x, x.new_zeros((pad, *x.shape[1:]))])
            cond = None if cond is None else torch.cat([cond, cond.new_zeros((pad, *cond.shape[1:]))])
        states = self.encoder_states(x.shape[0], domain)
        t = torch.as_tensor(t, device=self.device).expand(x.shape[0])
        control = self.modules.control
        if control is None or cond is None:
            out = self.modules.unet(x, t, states).sample
        elif fused_control(control):  # ControlNet-XS, concat
            out = control(x, t, states, controlnet_cond=cond).sample
        else:
            down, mid = control(x, t, states, controlnet_cond=cond, return_dict=False)
            out = self.modules.unet(
                x, t, states, down_block_additional_residuals=down, mid_block_additional_residual=mid
            ).sample
        out = out[: x.shape[0] - pad].float()
        if cfg:
            null, full = out[:batch], out[batch:]
            out = null + guidance * (full - null)
        return out

    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        """Model space -> images in [-1, 1] (identity in pixel space, the VAE decoder in latent space)."""
        return self.modules.decode(latents.to(self.dtype)).float()

    def initial_noise(self, seeds: list[int], size: tuple[int, int]) -> torch.Tensor:
        """Gaussian noise for images of ``size`` (H, W): row i from ``torch.Generator().manual_seed(seeds[i])``."""
        factor = self.modules.factor
        shape = (self.modules.unet.config.in_channels, size[0] // factor, size[1] // factor)
        noise = [torch.randn(shape, generator=torch.Generator().manual_seed(int(s))) for s in seeds]
        return torch.stack(noise).to(self.device)

    def start(
        self, sched, noise: torch.Tensor, init: torch.Tensor | None = None, strength: float = 1.0
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(timesteps to run, starting point) of a sampling run with the set-up scheduler ``sched``.

        Without ``init`` (or at ``strength`` 1) that is every timestep from pure noise. With ``init``
        (B,3,H,W images in [-1, 1] at the model size) and ``strength`` s < 1 it is SDEdit: the last
        ``round(s * steps)`` timesteps (at least one), from the encoded image noised to the first of them
        with the same seeded noise, so the image keeps the init's layout and takes the target's look.
        """
        if init is None or strength >= 1.0:
            return sched.timesteps, noise * sched.init_noise_sigma
        if strength <= 0.0:
            raise UrbangenError(f"strength must be in (0, 1], got {strength}")
        run = max(1, round(strength * len(sched.timesteps)))
        first = len(sched.timesteps) - run
        if hasattr(sched, "set_begin_index"):  # multistep / sigma schedulers index their state by step
            sched.set_begin_index(first)
        timesteps = sched.timesteps[first:]
        clean = self.modules.encode(init.to(self.device, self.dtype), sample=False).float()
        return timesteps, sched.add_noise(clean, noise.to(clean.device), timesteps[:1])

    def init_tensor(self, images: np.ndarray, size: tuple[int, int]) -> torch.Tensor:
        """(B,H,W,3) uint8 images -> (B,3,h,w) float in [-1, 1] at the model-space ``size`` (bicubic)."""
        images = _resize_stack(np.asarray(images, dtype=np.uint8), size, Image.Resampling.BICUBIC)
        return torch.from_numpy(images).permute(0, 3, 1, 2).float().div(127.5).sub(1.0)

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
        """Run the denoising loop for one batch at model-space ``size``; returns images in [-1, 1]."""
        sched = self.make_scheduler(scheduler, steps)
        timesteps, x = self.start(sched, self.initial_noise(seeds, size), init, strength)
        for t in timesteps:
            model_in = sched.scale_model_input(x, t)
            x = sched.step(self.denoise(model_in, t, cond, guidance, domain), t, x).prev_sample
        return self.decode(x)

    def generate(
        self,
        labels: np.ndarray,
        seeds: list[int],
        depth: np.ndarray | None = None,
        steps: int = 20,
        guidance: float | None = None,
        scheduler: str = "ddim",
        batch_size: int = 8,
        size_mode: str = "model",
        domain: str | None = None,
        init: np.ndarray | None = None,
        strength: float = 1.0,
        calibrate: bool | str = False,
    ) -> np.ndarray:
        """Render (B,H,W) uint8 trainIds into (B,H,W,3) uint8 images at the labels' size.

        ``size_mode="model"`` resizes labels (nearest) to the model resolution and the images back;
        ``"native"`` generates at the labels' own size, which must be divisible by ``size_multiple``.
        ``guidance`` defaults to the generator's recorded value. Depth is in metres (0 = invalid).
        ``init`` (B,H,W,3) uint8 images of the label maps (a source dataset's renders) with ``strength``
        < 1 start each image from its init image instead of pure noise (:meth:`start`). ``calibrate``
        gives every class region target colour statistics recorded by stage 2
        (:func:`urbangen.diffusion.appearance.calibrate`): ``"pooled"`` (or true) the class's over all
        target images, ``"exemplar"`` those of one target image drawn with the image's seed.
        """
        labels = self._check_labels(labels)
        b, h, w = labels.shape
        if len(seeds) != b:
            raise UrbangenError(f"got {len(seeds)} seeds for {b} label maps: one seed per map is needed")
        if not 0.0 < strength <= 1.0:
            raise UrbangenError(f"strength must be in (0, 1], got {strength}")
        if strength < 1.0:
            if init is None:
                raise UrbangenError(f"strength {strength} < 1 starts from init images: pass init")
            init = np.asarray(init)
            if init.shape != (b, h, w, 3) or init.dtype != np.uint8:
                raise UrbangenError(f"init must be uint8 images of shape {(b, h, w, 3)}, got {init.dtype} {init.shape}")
        if depth is not None:
            depth = np.asarray(depth, dtype=np.float32)
            depth = depth[None] if depth.ndim == 2 else depth
            if depth.shape != labels.shape:
                raise UrbangenError(f"depth shape {depth.shape} does not match labels {labels.shape}")
        if self.spec is not None and self.spec.depth and depth is None:
            raise UrbangenError("this generator was trained with a depth channel: pass depth (metres)")
        if size_mode not in SIZE_MODES:
            raise UrbangenError(f"unknown size_mode {size_mode!r}; expected one of {SIZE_MODES}")
        size = self.resolution if size_mode == "model" else (h, w)
        if size_mode == "native" and (h % self.size_multiple or w % self.size_multiple):
            raise UrbangenError(
                f"labels are {h}x{w}: size_mode=native needs height and width divisible by {self.size_multiple} "
                "(use size_mode=model to resize)"
            )
        mode = calibration_mode(calibrate)
        if mode not in CALIBRATION_MODES:
            raise UrbangenError(f"calibrate must be 'pooled', 'exemplar' or false, got {calibrate!r}")
        stats = self.config.get("appearance")
        exemplars = self.config.get("appearance_exemplars") if mode == "exemplar" else None
        if mode not in self.calibrations:
            key = "appearance_exemplars" if stats else "appearance"
            raise UrbangenError(
                f"calibrate {mode!r}: this generator has no target colour statistics (urbangen.json {key!r}, "
                "recorded by stage 2 since 2026-11-26): adapt stage 2 again or turn calibration off"
            )
        guidance = float(self.config.get("sampling", {}).get("guidance", 1.0) if guidance is None else guidance)
        domain_id = self.domain_index(domain)
        out = np.empty((b, h, w, 3), dtype=np.uint8)
        for start in range(0, b, max(1, batch_size)):
            stop = min(b, start + max(1, batch_size))
            lab = _resize_stack(labels[start:stop], size, Image.Resampling.NEAREST)
            dep = _resize_stack(depth[start:stop], size, Image.Resampling.NEAREST) if depth is not None else None
            cond = self.condition(lab, dep) if self.spec is not None else None
            first = self.init_tensor(init[start:stop], size) if strength < 1.0 else None
            images = self.sample_batch(
                cond, list(seeds[start:stop]), size, steps, guidance, scheduler, domain_id, first, strength
            )
            out[start:stop] = _resize_stack(to_uint8(images), (h, w), Image.Resampling.BICUBIC)
            if mode != "none":
                for i in range(start, stop):
                    out[i] = calibrate_colours(out[i], labels[i], stats, exemplars=exemplars, seed=seeds[i])
        return out

    def _check_labels(self, labels: np.ndarray) -> np.ndarray:
        labels = np.asarray(labels)
        labels = labels[None] if labels.ndim == 2 else labels
        if labels.ndim != 3 or labels.shape[0] == 0:
            raise UrbangenError(f"labels must be a (B, H, W) array of trainIds, got shape {labels.shape}")
        if not np.issubdtype(labels.dtype, np.integer):
            raise UrbangenError(f"labels must be integer trainIds, got dtype {labels.dtype}")
        if labels.min() < 0:
            raise UrbangenError(f"labels hold negative values {np.unique(labels[labels < 0])[:10].tolist()}")
        self.taxonomy.check(labels, "labels")
        return labels.astype(np.uint8)


def to_uint8(images: torch.Tensor) -> np.ndarray:
    """(B,3,H,W) in [-1, 1] -> (B,H,W,3) uint8."""
    scaled = ((images.float().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)
    return scaled.permute(0, 2, 3, 1).cpu().numpy()


def _resize_stack(arrays: np.ndarray, size: tuple[int, int], resample: int) -> np.ndarray:
    """Resize each of (B,H,W[,C]) to ``size`` (H, W) with PIL; a no-op when the size already matches."""
    if arrays.shape[1:3] == tuple(size):
        return arrays
    return np.stack([np.asarray(Image.fromarray(a).resize((size[1], size[0]), resample)) for a in arrays])


def sample_seed(seed: int, sample_id: str) -> int:
    """The seed of one label map in ``sample``: a hash of the run seed and the id (order-independent)."""
    import hashlib

    digest = hashlib.sha256(f"{seed}:{sample_id}".encode()).digest()
    return int.from_bytes(digest[:8], "big") & (2**63 - 1)


def sample_folder(
    generator: Generator,
    labels_dir: Path,
    out_dir: Path,
    depth_dir: Path | None = None,
    seed: int = 0,
    batch_size: int = 8,
    progress: bool = True,
    **options,
) -> dict:
    """Render every ``labels_dir/<id>.png`` into ``out_dir/<id>.png``; finished images are skipped.

    ``options`` go to :meth:`Generator.generate` (steps, guidance, scheduler, size_mode, domain).
    ``out_dir/sampling.json`` records the generator digest and settings; resuming with other settings is
    refused. Depth files are ``depth_dir/<id>.png`` (16-bit centimetres). Returns counts.
    """
    from tqdm.auto import tqdm

    from urbangen.io import image_size, read_label, write_json_atomic, write_png

    labels_dir, out_dir = Path(labels_dir), Path(out_dir)
    if not labels_dir.is_dir():
        raise UrbangenError(f"labels folder not found: {labels_dir}")
    ids = sorted(p.stem for p in labels_dir.glob("*.png"))
    if not ids:
        raise UrbangenError(f"no <id>.png label maps in {labels_dir}")
    record = {"generator_sha256": generator.digest, "seed": seed, "depth": depth_dir is not None, **options}
    record_path = out_dir / "sampling.json"
    if record_path.is_file():
        import json

        previous = json.loads(record_path.read_text())
        if previous != json.loads(json.dumps(record)):
            raise UrbangenError(f"{out_dir} was sampled with other settings ({previous}); use another --out")
    write_json_atomic(record_path, record)
    todo = [i for i in ids if not (out_dir / f"{i}.png").is_file()]
    groups: dict[tuple[int, int], list[str]] = {}
    for sample_id in todo:  # batch only maps of one size
        groups.setdefault(image_size(labels_dir / f"{sample_id}.png"), []).append(sample_id)
    bar = tqdm(total=len(ids), initial=len(ids) - len(todo), desc="sample", unit="img", disable=not progress)
    for group in groups.values():
        for start in range(0, len(group), batch_size):
            chunk = group[start : start + batch_size]
            labels = np.stack([read_label(labels_dir / f"{i}.png") for i in chunk])
            depth = None
            if depth_dir is not None:
                depth = np.stack([read_label(Path(depth_dir) / f"{i}.png") for i in chunk]).astype(np.float32) / 100
            seeds = [sample_seed(seed, i) for i in chunk]
            images = generator.generate(labels, seeds, depth=depth, batch_size=batch_size, **options)
            for sample_id, image in zip(chunk, images, strict=True):
                write_png(out_dir / f"{sample_id}.png", image)
            bar.update(len(chunk))
    bar.close()
    return {"total": len(ids), "rendered": len(todo), "skipped": len(ids) - len(todo)}
