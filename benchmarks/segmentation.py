"""Segmentation speed: confusion-matrix throughput and training images/s (CPU, and CUDA when present).

    .venv/bin/python benchmarks/segmentation.py [--quick] [--threads N] [--workers N]
    .venv/bin/python benchmarks/segmentation.py --seeds 2 [--iterations 800]   # seeds side by side vs in turn

Prints one JSON object; docs/BENCHMARKS.md records the figures. Figures, not assertions: the confusion
matrix update targets >= 200 Mpix/s on one core.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
from pathlib import Path

import numpy as np


def confusion_throughput(repeats: int) -> dict:
    """Mpix/s of ConfusionMatrix.update on 2048x1024 Cityscapes-sized maps (numpy, one core)."""
    from urbangen.segment.evaluate import ConfusionMatrix

    rng = np.random.default_rng(0)
    gt = rng.choice([*range(19), 255], size=(1024, 2048)).astype(np.uint8)
    pred = rng.integers(0, 19, size=(1024, 2048)).astype(np.uint8)
    cm = ConfusionMatrix(19)
    cm.update(pred, gt)  # warm-up
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        cm.update(pred, gt)
        best = min(best, time.perf_counter() - start)
    return {"image": "1024x2048", "best_s": best, "mpix_per_s": gt.size / best / 1e6}


def training_throughput(
    size: str,
    crop: tuple[int, int],
    batch: int,
    iterations: int,
    device: str,
    threads: int | None,
    workers: int,
    work: Path,
) -> dict:
    """images/s of the real trainer (data loading included) over the second half of a short run."""
    from urbangen.segment.data import DataSource
    from urbangen.segment.train import TrainConfig, train
    from urbangen.world import make_dataset

    data = work / "world"
    make_dataset(data, "train", 16, 0, "real", 0, (128, 256), progress=False)
    logs: list[dict] = []
    cfg = TrainConfig(
        model=size,
        sources=[DataSource(root=data, split="train")],
        crop_size=crop,
        scale_range=(1.0, 1.0) if crop[0] > 128 else (0.75, 1.5),
        iterations=iterations,
        batch_size=batch,
        warmup_iters=0,
        num_workers=workers,
        log_every=max(1, iterations // 2),
        checkpoint_every=10 * iterations,
        device=device,
        threads=threads,
        progress=False,
    )
    run = work / f"run_{size}_{crop[0]}x{crop[1]}_{device}"
    train(cfg, run, on_log=logs.append)
    return {"model": size, "crop": f"{crop[0]}x{crop[1]}", "batch": batch, "device": device, "workers": workers,
            "images_per_s": logs[-1]["images_per_s"]}  # fmt: skip


def seeds_wall(seeds: int, iterations: int, work: Path) -> dict:
    """Wall seconds of ``seeds`` trainings with the demo preset's segmenter settings, one after another
    (all cores each) and side by side (the cores shared out), as ``train_segmenter`` runs them."""
    from urbangen.pipeline_config import DEMO_SEGMENT
    from urbangen.segment.data import DataSource
    from urbangen.segment.train import TrainConfig, side_by_side, train_seeds
    from urbangen.world import make_dataset

    data = work / "world"
    make_dataset(data, "train", 64, 0, "real", 0, (128, 256), progress=False)
    cfg = TrainConfig(
        **{**DEMO_SEGMENT, "iterations": iterations, "progress": False, "log_every": iterations},
        sources=[DataSource(root=data, split="train")],
    )
    at_once, threads = side_by_side(cfg, seeds)
    result = {"seeds": seeds, "iterations": iterations, "at_once": at_once, "threads_each": threads}
    for name, parallel in (("one_after_another_s", 1), ("side_by_side_s", None)):
        start = time.perf_counter()
        train_seeds(cfg, list(range(seeds)), work / name, parallel=parallel)
        result[name] = round(time.perf_counter() - start, 1)
    return result


def main() -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="Fewer repeats and iterations.")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: the trainer's choice).")
    parser.add_argument("--workers", type=int, default=1, help="data loader workers (the demo preset uses 0).")
    parser.add_argument(
        "--seeds", type=int, help="only: wall time of this many demo-preset trainings, in turn vs side by side"
    )
    parser.add_argument(
        "--iterations", type=int, default=800, help="with --seeds: iterations per training (the demo's)"
    )
    args = parser.parse_args()
    import torch

    if args.seeds:
        with tempfile.TemporaryDirectory() as tmp:
            result = seeds_wall(args.seeds, args.iterations, Path(tmp))
        result["machine"] = {"platform": platform.platform(), "cpu_count": os.cpu_count(), "torch": torch.__version__,
                             "load_avg_1m": os.getloadavg()[0]}  # fmt: skip
        print(json.dumps(result, indent=2))
        return result

    iterations = 10 if args.quick else 30
    result: dict = {"confusion_matrix": confusion_throughput(3 if args.quick else 10), "training": []}
    devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    with tempfile.TemporaryDirectory() as tmp:
        for device in devices:
            for size, crop, batch in (("tiny", (64, 128), 8), ("tiny", (128, 256), 8), ("b0", (128, 256), 8)):
                figures = training_throughput(
                    size, crop, batch, iterations, device, args.threads, args.workers, Path(tmp)
                )
                result["training"].append(figures)
    result["machine"] = {
        "platform": platform.platform(),
        "cpu_count": os.cpu_count(),
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),  # after training: the --threads setting if given
        "cuda": torch.cuda.get_device_name() if torch.cuda.is_available() else None,
        "load_avg_1m": os.getloadavg()[0],
    }
    print(json.dumps(result, indent=2))
    return result


if __name__ == "__main__":
    main()
