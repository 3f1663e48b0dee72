"""The built-in benchmark's first figures: the sim -> real domain gap of the world.

Makes ``sim`` train, ``real`` train and ``real`` val scenes, translates sim train with FDA towards real
train, trains the same tiny SegFormer on each of sim (source-only), FDA-sim and real (oracle), and scores
all three on real val with the official Cityscapes semantics. Prints one JSON object (and writes it to
``WORK/results.json``); docs/BENCHMARKS.md records the figures and this command.

    .venv/bin/python benchmarks/segmentation_gap.py --work /tmp/gap

Every step resumes: rerunning skips finished datasets, training runs and predictions.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", type=Path, required=True, help="Working folder (datasets, runs, results).")
    parser.add_argument("--size", default="128x256", help="Scene size HEIGHTxWIDTH.")
    parser.add_argument("--n-train", type=int, default=300, help="Scenes per training set (sim and real).")
    parser.add_argument("--n-val", type=int, default=100, help="Real validation scenes.")
    parser.add_argument("--style-seed", type=int, default=0, help="The real target domain.")
    parser.add_argument("--beta", type=float, default=0.01, help="FDA beta.")
    parser.add_argument("--model", default="tiny", help="SegFormer size.")
    parser.add_argument("--crop", default="64x128", help="Training crop HEIGHTxWIDTH.")
    parser.add_argument("--iterations", type=int, default=1200)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--lr", type=float, default=3e-3)
    parser.add_argument("--rcs", action=argparse.BooleanOptionalAction, default=False, help="Rare-class sampling.")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice).")
    parser.add_argument("--runs", default="source,fda,oracle", help="Which of source,fda,oracle to run.")
    return parser.parse_args(argv)


def train_config(args: argparse.Namespace, source):
    """The training settings shared by every run (and used by the demo): tiny SegFormer, whole-image crops."""
    from urbangen.segment.train import TrainConfig

    height, width = (int(v) for v in args.crop.lower().split("x"))
    return TrainConfig(
        model=args.model,
        sources=[source],
        crop_size=(height, width),
        scale_range=(0.75, 1.5),
        flip=True,
        rare_class_sampling=args.rcs,
        iterations=args.iterations,
        batch_size=args.batch_size,
        lr=args.lr,
        head_lr_mult=1.0,
        weight_decay=0.01,
        warmup_iters=max(1, args.iterations // 20),
        num_workers=1,
        checkpoint_every=max(1, args.iterations // 4),
        log_every=max(1, args.iterations // 10),
        threads=args.threads,
        progress=False,
    )


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    import torch

    from urbangen.baselines.fda import fda_dataset
    from urbangen.segment.data import DataSource
    from urbangen.segment.evaluate import evaluate_source
    from urbangen.segment.predict import predict_dataset
    from urbangen.segment.train import train
    from urbangen.world import make_dataset

    work = args.work
    height, width = (int(v) for v in args.size.lower().split("x"))
    timings: dict[str, float] = {}

    # 1. the world: sim and real training scenes are different scenes (different seeds)
    start = time.perf_counter()
    size = (height, width)
    make_dataset(work / "sim", "train", args.n_train, 1, "sim", 0, size, progress=False)
    make_dataset(work / "real", "train", args.n_train, 2, "real", args.style_seed, size, progress=False)
    make_dataset(work / "real", "val", args.n_val, 3, "real", args.style_seed, size, progress=False)
    timings["world_s"] = time.perf_counter() - start
    sim = DataSource(root=work / "sim", split="train")
    real_train = DataSource(root=work / "real", split="train")
    real_val = DataSource(root=work / "real", split="val")

    # 2. FDA baseline data
    start = time.perf_counter()
    fda = DataSource(root=fda_dataset(sim, real_train, work / "fda", beta=args.beta), split="train")
    timings["fda_s"] = time.perf_counter() - start

    # 3. train and evaluate the three segmenters with identical settings
    results: dict[str, dict] = {}
    for name, source in (("source", sim), ("fda", fda), ("oracle", real_train)):
        if name not in args.runs.split(","):
            continue
        start, cpu = time.perf_counter(), time.process_time()
        model_dir = train(train_config(args, source), work / "runs" / name)
        timings[f"train_{name}_s"] = time.perf_counter() - start
        timings[f"train_{name}_cpu_s"] = time.process_time() - cpu
        pred_dir = work / "pred" / name
        predict_dataset(model_dir, real_val, pred_dir, batch_size=8)
        result = evaluate_source(pred_dir, real_val)
        results[name] = {"mIoU": result["mIoU"], "per_class": result["per_class"]}
        print(f"{name}: mIoU {result['mIoU']:.2f}", file=sys.stderr)

    summary = {
        "command": "python benchmarks/segmentation_gap.py " + " ".join(argv if argv is not None else sys.argv[1:]),
        "settings": {k: str(v) for k, v in vars(args).items()},
        "train_config": json.loads(train_config(args, sim).model_dump_json(exclude={"sources"})),
        "mIoU": {name: r["mIoU"] for name, r in results.items()},
        "per_class": {name: r["per_class"] for name, r in results.items()},
        "timings_s": timings,
        "machine": {
            "platform": platform.platform(),
            "processor": platform.processor() or platform.machine(),
            "cpu_count": os.cpu_count(),
            "torch": torch.__version__,
            "torch_threads": torch.get_num_threads(),
            "load_avg_1m": os.getloadavg()[0],
        },
    }
    (work / "results.json").write_text(json.dumps(summary, indent=2) + "\n")
    print(json.dumps({k: summary[k] for k in ("mIoU", "timings_s", "machine")}, indent=2))
    return summary


if __name__ == "__main__":
    main()
