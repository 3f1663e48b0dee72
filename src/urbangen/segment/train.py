"""Train a SegFormer: weighted dataset mixing, optional rare-class sampling, AdamW with linear warm-up and
poly decay, gradient accumulation, bf16 autocast on GPU, exact resume, and torchrun/DDP with the same code.

Run it with ``urbangen train --config FILE --out DIR`` (YAML of :class:`TrainConfig`), or on several GPUs
with ``torchrun --nproc-per-node N -m urbangen.cli train --config FILE --out DIR``. The output folder holds
``model/`` (the trained model folder) and ``checkpoints/last.pt`` (everything needed to resume: weights,
optimizer, scheduler, RNG states, step). Rerunning the same command after an interruption resumes.
"""

from __future__ import annotations

import json
import math
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from pydantic import Field, model_validator

from urbangen import __version__
from urbangen.config import StrictModel
from urbangen.errors import UrbangenError
from urbangen.io import atomic_path
from urbangen.segment.data import Augment, DataSource, RareClassSampler, TrainItems, class_counts, open_source
from urbangen.segment.model import SIZES, build_model, normalize, save_model

# fields that may change between an interrupted run and its resumption
OPERATIONAL = {"num_workers", "checkpoint_every", "log_every", "progress", "device", "threads"}


class TrainConfig(StrictModel):
    """Everything that defines a training run (saved next to the weights in urbangen.json)."""

    model: str = "tiny"  # tiny | b0..b5
    pretrained: Path | None = None  # local transformers folder (SegFormer or MiT encoder)
    sources: list[DataSource] = Field(min_length=1)
    crop_size: tuple[int, int] = (512, 512)  # (height, width)
    resize: tuple[int, int] | None = None  # base (height, width) before random scaling; None = native
    scale_range: tuple[float, float] = (0.5, 2.0)
    flip: bool = True
    rare_class_sampling: bool = False
    rcs_temperature: float = Field(default=0.01, gt=0)
    rcs_min_pixels: int = Field(default=16, ge=1)
    iterations: int = Field(default=40000, gt=0)
    batch_size: int = Field(default=2, gt=0)  # per process and micro-step
    grad_accumulation: int = Field(default=1, gt=0)
    lr: float = Field(default=6e-5, gt=0)
    head_lr_mult: float = Field(default=10.0, gt=0)
    weight_decay: float = Field(default=0.01, ge=0)
    warmup_iters: int = Field(default=1500, ge=0)
    warmup_ratio: float = Field(default=1e-6, ge=0, le=1)
    poly_power: float = Field(default=1.0, ge=0)
    amp: bool = True  # bf16 autocast on CUDA; ignored on CPU
    seed: int = Field(default=0, ge=0)
    checkpoint_every: int = Field(default=1000, gt=0)
    log_every: int = Field(default=50, gt=0)
    num_workers: int = Field(default=2, ge=0)
    device: str = "auto"  # auto | cpu | cuda | cuda:N
    threads: int | None = Field(default=None, gt=0)  # torch CPU threads
    progress: bool = True

    @model_validator(mode="after")
    def _check(self) -> TrainConfig:
        if self.model not in SIZES:
            raise ValueError(f"model must be one of {sorted(SIZES)}, got {self.model!r}")
        if not 0 < self.scale_range[0] <= self.scale_range[1]:
            raise ValueError(f"scale_range must be (low, high) with 0 < low <= high, got {self.scale_range}")
        if min(self.crop_size) < 32:
            raise ValueError(f"crop_size must be at least 32x32 (SegFormer downsamples 32x), got {self.crop_size}")
        return self

    def augment(self) -> Augment:
        return Augment(crop_size=self.crop_size, resize=self.resize, scale_range=self.scale_range, flip=self.flip)


def lr_factor(step: int, cfg: TrainConfig) -> float:
    """Linear warm-up from ``warmup_ratio`` to 1 over ``warmup_iters``, times poly decay to 0 at the end."""
    factor = (1 - step / cfg.iterations) ** cfg.poly_power
    if step < cfg.warmup_iters:
        factor *= cfg.warmup_ratio + (1 - cfg.warmup_ratio) * step / cfg.warmup_iters
    return factor


class _Indices:
    """Global item indices of this process, from ``start`` to the last step (a DataLoader sampler)."""

    def __init__(self, start: int, cfg: TrainConfig, world: int, rank: int) -> None:
        self.start, self.cfg, self.world, self.rank = start, cfg, world, rank

    def __iter__(self):
        batch, accum = self.cfg.batch_size, self.cfg.grad_accumulation
        for step in range(self.start, self.cfg.iterations):
            for micro in range(accum):
                base = ((step * accum + micro) * self.world + self.rank) * batch
                yield from range(base, base + batch)

    def __len__(self) -> int:
        return (self.cfg.iterations - self.start) * self.cfg.grad_accumulation * self.cfg.batch_size


def resolve_device(device: str) -> str:
    """``device`` with ``auto`` resolved: CUDA when present, else the CPU."""
    import torch

    return device if device != "auto" else ("cuda" if torch.cuda.is_available() else "cpu")


def _device_name(cfg: TrainConfig) -> str:
    return resolve_device(cfg.device)


def _setup_distributed(cfg: TrainConfig) -> tuple[Any, int, int]:
    """(device, world size, rank); initialises torch.distributed when launched by torchrun."""
    import torch
    import torch.distributed as dist

    world, rank = int(os.environ.get("WORLD_SIZE", 1)), int(os.environ.get("RANK", 0))
    device = _device_name(cfg)
    if device == "cuda" and world > 1:
        device = f"cuda:{int(os.environ.get('LOCAL_RANK', 0))}"
    if device.startswith("cuda"):
        if not torch.cuda.is_available():
            raise UrbangenError(f"device {cfg.device!r} requested but CUDA is not available")
        index = torch.device(device).index
        if index is not None:  # plain "cuda" is the current device (set_device needs an index)
            torch.cuda.set_device(index)
    if world > 1 and not dist.is_initialized():
        dist.init_process_group("nccl" if device.startswith("cuda") else "gloo")
    return torch.device(device), world, rank


def _cores() -> int:
    """CPU cores this process may use: its affinity mask, capped by a cgroup CPU quota (a Kubernetes CPU
    limit or ``docker --cpus``), which the mask does not show."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    try:  # cgroup v2: "<quota> <period>" or "max <period>"
        quota, period = Path("/sys/fs/cgroup/cpu.max").read_text().split()[:2]
        if quota != "max":
            cores = min(cores, max(1, math.ceil(int(quota) / int(period))))
    except (OSError, ValueError):
        pass
    return cores


def _cpu_threads(num_workers: int) -> int:
    """Cores left after the data workers. More threads than free cores lets OpenMP threads spin-wait for
    descheduled peers: 2 threads + 1 worker on 2 cores shared with other jobs measured 10x slower than 1."""
    return max(1, _cores() - num_workers)


def _optimizer(model: Any, cfg: TrainConfig) -> Any:
    """AdamW; the decode head learns ``head_lr_mult`` times faster; norms and biases get no weight decay.

    The fused kernel (CPU and CUDA) updates all parameters in one pass instead of a loop over tensors, which
    weighs on small models; other devices keep the loop."""
    import torch

    groups: dict[tuple[bool, bool], list] = {}
    for name, param in model.named_parameters():
        if param.requires_grad:
            groups.setdefault((name.startswith("decode_head"), param.ndim <= 1), []).append(param)
    return torch.optim.AdamW(
        [
            {
                "params": params,
                "lr": cfg.lr * (cfg.head_lr_mult if head else 1.0),
                "weight_decay": 0.0 if flat else cfg.weight_decay,
            }
            for (head, flat), params in sorted(groups.items())
        ],
        lr=cfg.lr,
        betas=(0.9, 0.999),
        fused=next(model.parameters()).device.type in ("cpu", "cuda"),
    )


def _comparable(cfg: TrainConfig) -> dict:
    return {k: v for k, v in cfg.model_dump(mode="json").items() if k not in OPERATIONAL}


def _load_checkpoint(path: Path, cfg: TrainConfig, model: Any, optimizer: Any, scheduler: Any) -> tuple[int, float]:
    import torch

    try:
        state = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as exc:  # truncated or not a checkpoint (torch raises several kinds)
        raise UrbangenError(f"checkpoint {path} cannot be read ({exc}); delete it to start this run over") from exc
    if state["config"] != _comparable(cfg):
        changed = sorted(k for k in state["config"] if state["config"][k] != _comparable(cfg).get(k))
        raise UrbangenError(
            f"{path} belongs to a run with a different config (changed: {changed}); use a new --out folder "
            "or restore the original config to resume"
        )
    model.load_state_dict(state["model"])
    optimizer.load_state_dict(state["optimizer"])
    scheduler.load_state_dict(state["scheduler"])
    torch.set_rng_state(state["rng"]["torch"])
    if torch.cuda.is_available() and state["rng"].get("cuda"):
        torch.cuda.set_rng_state_all(state["rng"]["cuda"])
    return int(state["step"]), float(state["loss"])


def _save_checkpoint(
    path: Path, step: int, loss: float, cfg: TrainConfig, model: Any, optimizer: Any, scheduler: Any
) -> None:
    import torch

    state = {
        "step": step,
        "loss": loss,
        "config": _comparable(cfg),
        "model": model.state_dict(),
        "optimizer": optimizer.state_dict(),
        "scheduler": scheduler.state_dict(),
        "rng": {
            "torch": torch.get_rng_state(),
            "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        },
    }
    with atomic_path(path) as tmp:
        torch.save(state, tmp)


def train(cfg: TrainConfig, out_dir: str | Path, on_log: Callable[[dict], None] | None = None) -> Path:
    """Train per ``cfg`` into ``out_dir``; returns ``out_dir/model``. Resumes from ``out_dir/checkpoints``.

    ``on_log`` gets ``{"step", "loss", "lr", "images_per_s"}`` every ``log_every`` steps and at the end
    (on rank 0 only), e.g. to forward metrics to MLflow.
    """
    import torch
    import torch.nn.functional as F
    from tqdm import tqdm

    out_dir = Path(out_dir)
    ckpt_path = out_dir / "checkpoints" / "last.pt"
    device, world, rank = _setup_distributed(cfg)
    if cfg.threads or device.type == "cpu":
        torch.set_num_threads(cfg.threads or _cpu_threads(cfg.num_workers))

    # 1. data: every item is a function of (seed, index), see urbangen.segment.data
    sources = [open_source(s) for s in cfg.sources]
    taxonomy = sources[0].taxonomy
    for source in sources[1:]:
        if source.taxonomy.classes != taxonomy.classes:
            raise UrbangenError(f"{source.source.describe()} uses taxonomy {source.taxonomy.name}, not {taxonomy.name}")
    rcs = None
    if cfg.rare_class_sampling:
        cache = out_dir / "cache"
        rcs = [RareClassSampler(class_counts(s, cache), cfg.rcs_temperature, cfg.rcs_min_pixels) for s in sources]
    per_step = cfg.batch_size * cfg.grad_accumulation * world
    items = TrainItems(sources, cfg.augment(), cfg.seed, cfg.iterations * per_step, rcs)

    # 2. model, optimizer, schedule (seeded so two runs start from the same weights)
    torch.manual_seed(cfg.seed)
    model = build_model(cfg.model, taxonomy.num_classes, cfg.pretrained, taxonomy).to(device).train()
    optimizer = _optimizer(model, cfg)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: lr_factor(step, cfg))

    # 3. resume
    start, loss_value = 0, float("nan")
    if ckpt_path.is_file():
        start, loss_value = _load_checkpoint(ckpt_path, cfg, model, optimizer, scheduler)
    net = model
    if world > 1:
        net = torch.nn.parallel.DistributedDataParallel(model, device_ids=[device] if device.type == "cuda" else None)
    loader = torch.utils.data.DataLoader(
        items,
        batch_size=cfg.batch_size,
        sampler=_Indices(start, cfg, world, rank),
        num_workers=cfg.num_workers,
        pin_memory=device.type == "cuda",
        persistent_workers=False,
        generator=torch.Generator().manual_seed(cfg.seed),  # keeps the loader off the global RNG (exact resume)
    )
    autocast = torch.autocast("cuda", dtype=torch.bfloat16, enabled=cfg.amp and device.type == "cuda")

    # 4. loop
    batches = iter(loader)
    bar = tqdm(total=cfg.iterations, initial=start, disable=rank != 0 or not cfg.progress, desc="train", unit="it")
    t_start = t_log = time.perf_counter()
    last_log_step = start
    for step in range(start, cfg.iterations):
        optimizer.zero_grad(set_to_none=True)
        loss_sum = torch.zeros((), device=device)
        for micro in range(cfg.grad_accumulation):
            images, labels = next(batches)
            # copies from pinned memory that do not wait for the previous step's kernels (nor does the loss,
            # read only at logged and checkpointed steps)
            images = normalize(images.to(device, non_blocking=True), device)
            labels = labels.to(device, non_blocking=True).long()
            with autocast:
                logits = net(pixel_values=images).logits
            logits = F.interpolate(logits.float(), size=labels.shape[-2:], mode="bilinear", align_corners=False)
            valid = (labels != taxonomy.ignore).sum().clamp(min=1)
            loss = F.cross_entropy(logits, labels, ignore_index=taxonomy.ignore, reduction="sum") / valid
            sync = micro == cfg.grad_accumulation - 1 or world == 1
            if sync:
                (loss / cfg.grad_accumulation).backward()
            else:
                with net.no_sync():
                    (loss / cfg.grad_accumulation).backward()
            loss_sum += loss.detach()
        optimizer.step()
        scheduler.step()
        done = step + 1
        logged = done % cfg.log_every == 0 or done == cfg.iterations
        checkpoint = done % cfg.checkpoint_every == 0 or done == cfg.iterations
        if logged or checkpoint:  # reading the loss waits for the GPU: not every step
            loss_value = float(loss_sum) / cfg.grad_accumulation
        if rank == 0 and checkpoint:
            _save_checkpoint(ckpt_path, done, loss_value, cfg, model, optimizer, scheduler)
        now = time.perf_counter()
        images_per_s = (done - last_log_step) * per_step / max(now - t_log, 1e-9)
        bar.update(1)
        bar.set_postfix(loss=f"{loss_value:.3f}", img_s=f"{images_per_s:.1f}", refresh=False)
        if rank == 0 and on_log is not None and logged:
            lr = optimizer.param_groups[0]["lr"]
            on_log({"step": done, "loss": loss_value, "lr": lr, "images_per_s": images_per_s})
        if done % cfg.log_every == 0:
            t_log, last_log_step = now, done
    bar.close()
    seconds = time.perf_counter() - t_start

    # 5. the model folder (rank 0), with the config and training figures next to the weights
    model_dir = out_dir / "model"
    if rank == 0:
        meta = {
            "size": cfg.model,
            "config": json.loads(cfg.model_dump_json()),
            "iterations": cfg.iterations,
            "resumed_from": start,
            "final_loss": loss_value,
            "train_seconds": seconds,
            "images_per_s": (cfg.iterations - start) * per_step / max(seconds, 1e-9),
            "crop_size": list(cfg.crop_size),
            "urbangen_version": __version__,
        }
        save_model(model, model_dir, taxonomy, meta)
    if world > 1:
        torch.distributed.barrier()
    return model_dir


# ------------------------------------------------------------------------------------- several seeds
def side_by_side(cfg: TrainConfig, seeds: int, parallel: int | None = None) -> tuple[int, int]:
    """(trainings at once, torch threads each) for ``seeds`` trainings of ``cfg``.

    On a CPU outside torchrun: ``parallel`` at once, by default as many as the cores hold with each
    training's data workers beside it, up to the number of seeds; the cores are shared out, and an explicit
    ``cfg.threads`` is a cap. One at a time (on a GPU, under torchrun, or one seed): the threads
    :func:`train` takes (0: torch's default, on a GPU)."""
    if _device_name(cfg) != "cpu" or int(os.environ.get("WORLD_SIZE", 1)) > 1:
        return 1, cfg.threads or 0
    cores = _cores()
    n = max(1, min(seeds, parallel if parallel is not None else cores // (1 + cfg.num_workers)))
    if n == 1:
        return 1, cfg.threads or _cpu_threads(cfg.num_workers)
    share = max(1, cores // n - cfg.num_workers)
    return n, min(share, cfg.threads) if cfg.threads else share


def _train_child(cfg: TrainConfig, out_dir: Path) -> tuple[Path, list[dict]]:
    """One seed in a worker process: progress as plain lines (several seeds share the terminal)."""
    history: list[dict] = []

    def on_log(record: dict) -> None:
        history.append(record)
        print(
            f"seed {cfg.seed}: step {record['step']}/{cfg.iterations} loss {record['loss']:.3f} "
            f"({record['images_per_s']:.1f} img/s)",
            flush=True,
        )

    return train(cfg, out_dir, on_log), history


def train_seeds(
    cfg: TrainConfig,
    seeds: list[int],
    out_dir: str | Path,
    on_log: Callable[[int, dict], None] | None = None,
    parallel: int | None = None,
) -> list[Path]:
    """Train ``cfg`` once per seed into ``out_dir/seed-<seed>``; returns the model folders in seed order.

    On a CPU the seeds train side by side (:func:`side_by_side`), each process with its share of the cores:
    a small model leaves much of a second core idle (two demo seeds on two cores: 1.5 times one, not 2;
    docs/BENCHMARKS.md, "Segmentation baselines"). Thread counts change float rounding, so a seed's result
    depends on how many ran beside it (and an interrupted run resumes exactly only with the same layout).
    ``on_log(seed, record)`` gets :func:`train`'s records; from side-by-side seeds they arrive when the seed
    finishes (each prints its progress as it goes). The first failure stops the other seeds; each seed
    resumes from its own checkpoint when the call is repeated.
    """
    import multiprocessing
    from concurrent.futures import FIRST_EXCEPTION, ProcessPoolExecutor, wait
    from concurrent.futures.process import BrokenProcessPool

    if len(set(seeds)) != len(seeds):
        raise UrbangenError(f"training seeds must be distinct, got {seeds}")
    out_dir = Path(out_dir)
    configs = {seed: TrainConfig.model_validate(cfg.model_dump() | {"seed": seed}) for seed in seeds}
    n, threads = side_by_side(cfg, len(seeds), parallel)
    if n == 1:
        return [
            train(c, out_dir / f"seed-{seed}", on_log and (lambda r, s=seed: on_log(s, r)))
            for seed, c in configs.items()
        ]
    models: dict[int, Path] = {}
    # spawn: a forked child would inherit the parent's OpenMP thread pool state
    pool = ProcessPoolExecutor(n, mp_context=multiprocessing.get_context("spawn"))
    try:
        futures = {
            pool.submit(
                _train_child, c.model_copy(update={"threads": threads, "progress": False}), out_dir / f"seed-{seed}"
            ): seed
            for seed, c in configs.items()
        }
        pending = set(futures)
        while pending:
            done, pending = wait(pending, return_when=FIRST_EXCEPTION)
            for future in done:
                seed = futures[future]
                try:
                    models[seed], history = future.result()
                except BrokenProcessPool as exc:
                    raise UrbangenError(
                        f"a training process died while seed {seed} trained in {out_dir} (out of memory? "
                        f"set train_parallel: 1 to train one seed at a time)"
                    ) from exc
                except Exception as exc:
                    raise UrbangenError(f"training seed {seed} ({out_dir / f'seed-{seed}'}) failed: {exc}") from exc
                for record in history if on_log else ():
                    on_log(seed, record)
    except BaseException:
        # stop the other seeds now rather than when they finish (their checkpoints let a rerun resume);
        # Python 3.14 has a public call for it, older ones only the executor's process table
        if hasattr(pool, "terminate_workers"):
            pool.terminate_workers()
        else:
            for process in list((getattr(pool, "_processes", None) or {}).values()):
                process.terminate()
        raise
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
    return [models[seed] for seed in seeds]
