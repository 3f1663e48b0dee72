"""The training loop both stages share: diffusion loss, EMA, exact checkpoint/resume, progress and logging.

A stage hands over a module whose ``forward(noisy, t, domain, cond)`` predicts the scheduler's target (noise
or v), the parameters it trains, and how to build the control tensor of a batch. ``accelerate`` places the
module (DDP across GPUs, mixed precision); on one CPU it is a thin pass-through.

Exact resume: a checkpoint holds the trained parameters, their EMA, the optimizer state, the step, and
both random streams (numpy for the data, torch for noise/timesteps/dropout), so an interrupted run that
resumes reaches bit-for-bit the weights of an uninterrupted one.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from urbangen.diffusion.artefacts import replace_dir, temp_dir
from urbangen.diffusion.build import Modules
from urbangen.diffusion.config import AdaptConfig, TrainConfig
from urbangen.diffusion.data import Batches, TargetSet
from urbangen.errors import UrbangenError

LogFn = Callable[[dict], None]
CondFn = Callable[[dict, torch.Generator], "torch.Tensor | None"]


@dataclass
class StageRun:
    """What one stage trains: ``model`` (forward(noisy, t, domain, cond) -> prediction) and its settings."""

    number: int
    model: torch.nn.Module
    modules: Modules
    train: TrainConfig
    cond_fn: CondFn
    fingerprint: str


def trainable(model: torch.nn.Module) -> dict[str, torch.nn.Parameter]:
    return {name: p for name, p in model.named_parameters() if p.requires_grad}


def diffusion_target(scheduler, x0: torch.Tensor, noise: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """What the denoiser learns to predict, following the scheduler's ``prediction_type``."""
    kind = scheduler.config.prediction_type
    if kind == "epsilon":
        return noise
    if kind == "v_prediction":
        return scheduler.get_velocity(x0, noise, t)
    if kind == "sample":
        return x0
    raise UrbangenError(f"unsupported scheduler prediction_type {kind!r}")


def min_snr_weights(scheduler, t: torch.Tensor, gamma: float) -> torch.Tensor:
    """Per-sample loss weights of Min-SNR-gamma for the scheduler's prediction type.

    The weight makes each timestep count like an epsilon loss whose SNR is clipped at ``gamma``: the
    nearly clean timesteps (SNR far above gamma) no longer dominate an epsilon loss, the pure-noise ones
    no longer dominate an x0 (``sample``) loss, where the model can only learn the blurred mean.
    """
    from diffusers.training_utils import compute_snr

    snr = compute_snr(scheduler, t)
    clipped = torch.clamp(snr, max=gamma)
    kind = scheduler.config.prediction_type
    if kind == "epsilon":
        return torch.clamp(gamma / snr, max=1.0)  # min(SNR, gamma) / SNR, and 1 (not 0/0) where SNR is 0
    if kind == "v_prediction":
        return clipped / (snr + 1)
    if kind == "sample":
        return clipped
    raise UrbangenError(f"unsupported scheduler prediction_type {kind!r}")


def run(stage: StageRun, data: TargetSet, cfg: AdaptConfig, ckpt: Path, on_log: LogFn | None = None) -> dict:
    """Train ``stage`` up to ``stage.train.steps`` (resuming from ``ckpt`` if present); return a summary.

    On return the model holds the final weights (the EMA weights when EMA is on).
    """
    from accelerate import Accelerator
    from tqdm.auto import tqdm

    tc = stage.train
    if cfg.device.startswith("cuda") and not torch.cuda.is_available():
        # accelerate would quietly train on the CPU instead (a GPU preset then takes days)
        raise UrbangenError(f"adapt: device {cfg.device!r} requested but torch sees no CUDA device")
    accelerator = Accelerator(mixed_precision=cfg.mixed_precision, cpu=cfg.device == "cpu")
    device = accelerator.device
    params = trainable(stage.model)
    optimizer = torch.optim.AdamW(params.values(), lr=tc.lr, weight_decay=tc.weight_decay)
    ema = {n: p.detach().clone() for n, p in params.items()} if tc.ema else None
    data_rng = np.random.default_rng([cfg.seed, stage.number, accelerator.process_index])
    gen = torch.Generator().manual_seed(cfg.seed * 1000 + stage.number * 10 + accelerator.process_index)
    step = _load_checkpoint(ckpt, stage, params, optimizer, ema, data_rng, gen)
    model, optimizer = accelerator.prepare(stage.model, optimizer)
    for module in (stage.modules.vae,):
        if module is not None:
            module.to(device)
    bar = tqdm(total=tc.steps, initial=step, desc=f"stage {stage.number}", disable=not accelerator.is_main_process)
    start, start_step, loss_value = time.perf_counter(), step, float("nan")
    model.train()
    with Batches(data, data_rng, tc.batch_size, cfg.data_workers) as batches:
        while step < tc.steps:
            batch, data_state = batches.next()
            loss = _train_step(stage, model, optimizer, accelerator, params, ema, batch, gen, step)
            step += 1
            bar.update(1)
            logged = step % 10 == 0 or step == tc.steps
            checkpoint = step % tc.checkpoint_every == 0 or step == tc.steps
            if logged or checkpoint:  # reading the loss waits for the GPU
                loss_value = float(loss.detach())
                bar.set_postfix(loss=f"{loss_value:.4f}")
            if on_log is not None and accelerator.is_main_process and logged:
                rate = (step - start_step) / max(time.perf_counter() - start, 1e-9)
                on_log({"stage": stage.number, "step": step, "loss": loss_value, "steps_per_s": rate})
            if accelerator.is_main_process and checkpoint:
                _save_checkpoint(ckpt, stage, params, optimizer, ema, data_state, gen, step, loss_value)
    bar.close()
    if ema is not None:
        with torch.no_grad():
            for name, p in params.items():
                p.copy_(ema[name])
    elapsed = time.perf_counter() - start
    return {
        "steps": step,
        "last_loss": loss_value,
        "seconds": round(elapsed, 2),
        "steps_per_s": (step - start_step) / elapsed if step > start_step else None,
    }


def _train_step(stage, model, optimizer, accelerator, params, ema, batch, gen, step) -> torch.Tensor:
    """One optimisation step on ``batch``; returns the loss (on the device, not waited for)."""
    tc, device = stage.train, accelerator.device
    scheduler = stage.modules.scheduler
    for group in optimizer.param_groups:
        group["lr"] = tc.lr * min(1.0, (step + 1) / tc.warmup) if tc.warmup else tc.lr
    # the condition is built where the model runs (a one-hot of 256x512 maps is slow on a CPU thread); copies
    # do not block, so this thread does not wait for the previous step's kernels (the loss is read only at
    # logged steps for the same reason)
    batch = {k: v.to(device, non_blocking=True) for k, v in batch.items()}
    with torch.no_grad():
        x0 = stage.modules.encode(batch["images"], gen).float()
    noise = torch.randn(x0.shape, generator=gen).to(device, non_blocking=True)
    t = torch.randint(0, scheduler.config.num_train_timesteps, (x0.shape[0],), generator=gen)
    t = t.to(device, non_blocking=True)
    noisy = scheduler.add_noise(x0, noise, t)
    target = diffusion_target(scheduler, x0, noise, t)
    cond = stage.cond_fn(batch, gen)
    with accelerator.autocast():
        pred = model(noisy, t, batch["domain"], None if cond is None else cond.to(device))
    if tc.snr_gamma:
        per_sample = (pred.float() - target.float()).pow(2).mean(dim=(1, 2, 3))
        loss = (per_sample * min_snr_weights(scheduler, t, tc.snr_gamma)).mean()
    else:
        loss = torch.nn.functional.mse_loss(pred.float(), target.float())
    accelerator.backward(loss)
    if tc.grad_clip:
        accelerator.clip_grad_norm_(list(params.values()), tc.grad_clip)
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    if ema is not None:
        with torch.no_grad():
            for name, p in params.items():
                ema[name].lerp_(p.detach(), 1.0 - tc.ema)
    return loss


def _save_checkpoint(ckpt, stage, params, optimizer, ema, data_state, gen, step, loss) -> None:
    from safetensors.torch import save_file

    tmp = temp_dir(ckpt)
    tensors = {f"param.{n}": p.detach().cpu().contiguous() for n, p in params.items()}
    if ema is not None:
        tensors.update({f"ema.{n}": t.cpu().contiguous() for n, t in ema.items()})
    tensors["rng.torch"] = gen.get_state()
    save_file(tensors, tmp / "state.safetensors")
    torch.save(optimizer.state_dict(), tmp / "optimizer.pt")
    state = {"stage": stage.number, "step": step, "loss": loss, "fingerprint": stage.fingerprint}
    state["rng_numpy"] = data_state  # the data RNG as it was after this step's batch
    (tmp / "state.json").write_text(json.dumps(state, indent=2))
    replace_dir(tmp, ckpt)


def _load_checkpoint(ckpt, stage, params, optimizer, ema, data_rng, gen) -> int:
    """Restore everything from ``ckpt`` and return its step (0 when there is no checkpoint)."""
    from safetensors.torch import load_file

    if not (ckpt / "state.json").is_file():
        return 0
    state = json.loads((ckpt / "state.json").read_text())
    if state.get("fingerprint") != stage.fingerprint or state.get("stage") != stage.number:
        raise UrbangenError(
            f"checkpoint {ckpt} was written by a different configuration (fingerprint {state.get('fingerprint')}, "
            f"this config {stage.fingerprint}): use another --out or delete the checkpoint"
        )
    if state["step"] > stage.train.steps:
        raise UrbangenError(f"checkpoint {ckpt} is at step {state['step']}, beyond stage{stage.number}.steps")
    tensors = load_file(ckpt / "state.safetensors")
    with torch.no_grad():
        for name, p in params.items():
            if f"param.{name}" not in tensors:
                raise UrbangenError(f"checkpoint {ckpt} lacks parameter {name}: written by a different model")
            p.copy_(tensors[f"param.{name}"])
            if ema is not None:
                ema[name].copy_(tensors[f"ema.{name}"])
    optimizer.load_state_dict(torch.load(ckpt / "optimizer.pt", weights_only=True))
    gen.set_state(tensors["rng.torch"])
    data_rng.bit_generator.state = state["rng_numpy"]
    return int(state["step"])
