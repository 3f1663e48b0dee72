"""How long would `urbangen demo --scale full` take on this machine? Measure every step of the `full` preset at
its own settings on a slice of the work, then project the whole run.

    python benchmarks/full_estimate.py --out OUT                 # a GPU machine: the `full` preset as it is
    python benchmarks/full_estimate.py --out OUT --smoke         # a check of the script (tiny models, CPU)
    python benchmarks/full_estimate.py --out OUT --seg-iterations 4 --stop-after adapt_data   # a CPU machine:
                                                  # the steps before adaptation and its data preparation

Each step runs through the same library calls as the pipeline's step functions (urbangen.steps), without
MLflow and kfp: world scenes, a segmenter's training (the steady images/s of the last logged window) and
its evaluation on val, pseudo-labels with the spatial prior, FDA, the adaptation's data preparation per
batch (crops on the CPU, the control condition on the training device; under ``details``: part of the
adaptation's time), stage 1 and stage 2 of the adaptation (steady steps/s after the first log),
generation with the preset's engine (the first batch, with torch.compile and CUDA-graph capture, timed
apart from the steady batches) and MCOC filtering with rectification. The projection multiplies each
steady rate by the preset's amount of that work (scenes, iterations x trainings, steps, candidates, maps;
what runs once per pseudo-labelling round, that many times) and adds the one-off compile per round; it
runs the steps one after another (the pipeline overlaps the three world tasks and the trainings where it
can), so it is an upper bound for this machine. Writes
OUT/estimate.json after every measurement (a run cut short keeps what it measured).

``--adapt-batches 16,32`` also times both adaptation stages at other batch sizes (short runs before the
preset's; under ``details.adapt_batches``: steps/s, images/s and the per-batch data preparation), to see
whether the preset's batch of 8 leaves the GPU idle. They are not part of the projection.
"""

from __future__ import annotations

import argparse
import itertools
import os
import platform
import statistics
import sys
import time
from pathlib import Path

METHODS = ("source_only", "fda", "urbangen_nofilter", "urbangen", "oracle")
STEPS = ("world", "train", "evaluate", "pseudo_label", "fda", "adapt_data", "adapt_stage1", "adapt_stage2", "generate")


class StopAfterError(Exception):
    """Raised by :class:`Estimate` after the measurement ``--stop-after`` names."""


def smoke_overrides(cfg):
    """Tiny models and sizes so the script's orchestration runs in a minute or two on a CPU."""
    segment = {**cfg.segment, "model": "tiny", "crop_size": (64, 128), "warmup_iters": 0, "log_every": 5}
    adapt = {**cfg.adapt, "base": "tiny", "device": "cpu", "mixed_precision": "no"}
    generate = {**cfg.generate, "engine": {"kind": "fast", "device": "cpu", "dtype": "float32", "compile": False}}
    pseudo = cfg.pseudo_label.model_copy(update={"device": "cpu"})
    return cfg.model_copy(
        update={"size": (64, 128), "segment": segment, "adapt": adapt, "generate": generate, "pseudo_label": pseudo}
    )


class Estimate:
    """Measured rates and the projected seconds per step, saved after every step."""

    def __init__(self, out: Path, cfg, args: argparse.Namespace) -> None:
        from urbangen.io import write_json_atomic

        self._write = write_json_atomic
        self.stop_after = args.stop_after
        self.path = out / "estimate.json"
        self.data: dict = {
            "date": time.strftime("%Y-%m-%d"),
            "machine": device_name(),
            "python": platform.python_version(),
            "smoke": args.smoke,
            "preset": {
                "size": list(cfg.size),
                "scenes": {role: getattr(cfg, role).n for role in ("source", "target", "val")},
                "train_seeds": list(cfg.train_seeds),
                "segment": {
                    k: cfg.segment[k] for k in ("model", "iterations", "batch_size", "crop_size", "num_workers")
                },
                "adapt": cfg.adapt,
                "generate": {k: cfg.generate[k] for k in ("candidates", "steps", "batch_size")},
            },
            "steps": {},
        }

    def note(self, name: str, measured: dict) -> None:
        """A measurement that is part of a step already projected (not added to the total)."""
        self.data.setdefault("details", {})[name] = measured
        self._saved(name, f"{name}: {measured}")

    def add(self, name: str, measured: dict, projected_s: float, note: str) -> None:
        self.data["steps"][name] = {"measured": measured, "projected_s": round(projected_s, 1), "note": note}
        self.data["projected_total_s"] = round(sum(s["projected_s"] for s in self.data["steps"].values()), 1)
        self._saved(name, f"{name}: {measured} -> {projected_s / 60:.1f} min ({note})")

    def _saved(self, name: str, line: str) -> None:
        self._write(self.path, self.data)
        print(line, flush=True)
        if name == self.stop_after:
            raise StopAfterError


def adapt_data_times(adapt_cfg, repeats: int = 10) -> dict:
    """ms per batch of the adaptation's data preparation in the training process: stage 2's random crops
    (with label erosion) on the CPU, and its control condition (one-hot + condition dropout) on the
    training device."""
    import numpy as np
    import torch

    from urbangen.diffusion import stage2
    from urbangen.diffusion.build import base_modules, default_resolution
    from urbangen.diffusion.data import TargetSet

    base = adapt_cfg.base
    resolution = default_resolution(base, base_modules(base, adapt_cfg.domains, 0))
    data = TargetSet.load(adapt_cfg, resolution, labels=True, depth=adapt_cfg.stage2.depth)
    cond_fn = stage2.make_cond_fn(adapt_cfg.stage2)
    cuda = adapt_cfg.device.startswith("cuda") and torch.cuda.is_available()  # a CPU machine: --stop-after
    device = torch.device(adapt_cfg.device if cuda else "cpu")
    rng, gen = np.random.default_rng(0), torch.Generator().manual_seed(0)
    batch_size = adapt_cfg.stage2.batch_size
    times: dict[str, list[float]] = {"crops_ms": [], "condition_ms": []}
    for _ in range(repeats + 1):  # the first of each is a warm-up
        start = time.perf_counter()
        batch = data.batch(rng, batch_size)
        times["crops_ms"].append(time.perf_counter() - start)
        batch = {k: v.to(device) for k, v in batch.items()}
        if device.type == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        cond_fn(batch, gen)
        if device.type == "cuda":
            torch.cuda.synchronize()
        times["condition_ms"].append(time.perf_counter() - start)
    result = {k: round(1000 * statistics.median(v[1:]), 1) for k, v in times.items()}
    return {**result, "batch": batch_size, "resolution": list(resolution), "device": device.type}


def device_name() -> str:
    import torch

    if torch.cuda.is_available():
        return f"{torch.cuda.get_device_name()}, torch {torch.__version__}"
    return f"CPU {platform.processor() or platform.machine()} x{os.cpu_count()}, torch {torch.__version__}"


def steady_rate(marks: list[tuple[float, float]]) -> float:
    """Units per second between the first and the last (time, units done) mark."""
    (t0, u0), (t1, u1) = marks[0], marks[-1]
    if t1 <= t0 or u1 <= u0:
        raise SystemExit(f"too few progress marks to time a steady rate: {marks}")
    return (u1 - u0) / (t1 - t0)


def split_checkpoints(marks: list[tuple[float, float]], every: int) -> tuple[float, float]:
    """(seconds per step, seconds per checkpoint) from (time, step) progress marks of a run that wrote a
    checkpoint after every ``every``-th step: the median per-step time of the intervals without one, and
    the mean excess of those with one (the checkpoint after step k lands in the interval starting at k)."""
    intervals = [(s0, (t1 - t0) / (s1 - s0), s1 - s0) for (t0, s0), (t1, s1) in itertools.pairwise(marks)]
    plain = [per_step for start, per_step, _ in intervals if start % every]
    if not plain:
        raise SystemExit(f"too few progress marks to time the steps: {marks}")
    step_s = statistics.median(plain)
    excess = [(per_step - step_s) * n for start, per_step, n in intervals if start % every == 0]
    return step_s, max(0.0, statistics.fmean(excess)) if excess else 0.0


def timed(fn, *args, **kwargs) -> tuple[float, object]:
    start = time.perf_counter()
    result = fn(*args, **kwargs)
    return time.perf_counter() - start, result


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--scenes", type=int, default=32, help="scenes per world (val: half)")
    parser.add_argument("--seg-iterations", type=int, default=200, help="segmenter iterations measured")
    parser.add_argument("--adapt-steps", type=int, default=100, help="adaptation steps measured per stage")
    parser.add_argument("--seg-workers", type=int, help="override segment.num_workers (the preset's: 8)")
    parser.add_argument("--adapt-workers", type=int, help="override adapt.data_workers (the preset's: 4)")
    parser.add_argument(
        "--adapt-batches",
        type=lambda text: [int(b) for b in text.split(",")],
        default=[],
        help="also time both adaptation stages at these batch sizes (comma-separated; before the preset's)",
    )
    parser.add_argument(
        "--sweep-steps", type=int, default=40, help="steps per stage at each --adapt-batches size (at least 20)"
    )
    parser.add_argument("--stop-after", choices=STEPS, help="end after this measurement (a partial estimate)")
    parser.add_argument("--smoke", action="store_true", help="tiny models on the CPU (checks the script)")
    args = parser.parse_args(argv)
    if args.sweep_steps < 20:
        parser.error("--sweep-steps: at least 20 (progress is logged every 10 steps; a rate needs two marks)")

    from urbangen.pipeline_config import preset

    full = preset("full")
    if args.seg_workers is not None:
        full = full.model_copy(update={"segment": {**full.segment, "num_workers": args.seg_workers}})
    if args.adapt_workers is not None:
        full = full.model_copy(update={"adapt": {**full.adapt, "data_workers": args.adapt_workers}})
    cfg = smoke_overrides(full) if args.smoke else full
    out = args.out
    out.mkdir(parents=True, exist_ok=True)
    est = Estimate(out, full, args)
    try:
        measure(est, full, cfg, args)
    except StopAfterError:
        print(f"stopped after {args.stop_after}: a partial estimate in {est.path}")
        return est.data
    total = est.data["projected_total_s"]
    print(f"projected `full` run on {est.data['machine']}: {total / 3600:.1f} h (steps one after another)")
    return est.data


def measure(est: Estimate, full, cfg, args: argparse.Namespace) -> None:
    """Every step in the pipeline's order, each measurement saved as it is made."""
    from urbangen import steps
    from urbangen.baselines.fda import fda_dataset
    from urbangen.config import validate
    from urbangen.diffusion.adapt import run_stage1, run_stage2
    from urbangen.generate.filtering import filter_and_rectify
    from urbangen.generate.run import generate_candidates
    from urbangen.segment.train import TrainConfig, train

    out = args.out
    scenes = full.source.n, full.target.n, full.val.n
    rounds = full.pseudo_label_rounds  # each round after the first: relabel, stage 2, generate, filter, a training
    trainings = (len(METHODS) + rounds - 1) * len(full.train_seeds)

    # world scenes (CPU): the three roles, a slice of each
    sliced = {"source": args.scenes, "target": args.scenes, "val": max(2, args.scenes // 2)}
    small = cfg.model_copy(update={role: getattr(cfg, role).model_copy(update={"n": n}) for role, n in sliced.items()})
    data = {role: out / "world" / role for role in sliced}
    seconds = sum(timed(steps.make_world, small, role, data[role], progress=False)[0] for role in sliced)
    per_scene = seconds / sum(sliced.values())
    est.add("world", {"s_per_scene": round(per_scene, 4)}, per_scene * sum(scenes), f"{sum(scenes)} scenes")

    # a segmenter: training (steady images/s) ...
    logs: list[dict] = []
    sources = [steps._source(data["source"], "train").model_dump()]
    settings = {**cfg.segment, "iterations": args.seg_iterations, "checkpoint_every": 10**9}
    seg_cfg = validate(TrainConfig, {"sources": sources, **settings}, "segment")
    model = train(seg_cfg, out / "seg" / "seed-0", on_log=logs.append)
    images_per_s = logs[-1]["images_per_s"]
    per_training = full.segment["iterations"] * full.segment["batch_size"] / images_per_s
    est.add(
        "train",
        {"images_per_s": round(images_per_s, 2), "iterations": args.seg_iterations},
        per_training * trainings,
        f"{trainings} trainings ({len(METHODS)} methods + {rounds - 1} earlier rounds, x {len(full.train_seeds)} "
        f"seeds) of "
        f"{full.segment['iterations']} iterations, {per_training / 60:.1f} min each",
    )

    # ... and its evaluation on val, as the evaluate step predicts
    seconds, _ = timed(steps._evaluate_one, model, data["val"], out / "pred", steps.evaluation_device(cfg))
    per_val = seconds / sliced["val"]
    est.add("evaluate", {"s_per_image": round(per_val, 4)}, per_val * full.val.n * trainings, f"{trainings} models")

    # pseudo-labels of the target images with the source's spatial prior (the pipeline's options)
    seconds, _ = timed(steps.label_target, cfg, model, data["target"], out / "pseudo", data["source"])
    per_target = seconds / sliced["target"]
    est.add(
        "pseudo_label",
        {"s_per_image": round(per_target, 4)},
        per_target * full.target.n * rounds,
        f"target scenes x {rounds} rounds",
    )

    # FDA renders of the source
    params = {"seed": cfg.seed, **cfg.fda.model_dump(exclude_none=True)}
    source, target = steps._source(data["source"], "train"), steps._source(data["target"], "train")
    seconds, _ = timed(fda_dataset, source, target, out / "fda", **params)
    per_fda = seconds / sliced["source"]
    est.add("fda", {"s_per_image": round(per_fda, 4)}, per_fda * full.source.n, "source scenes")

    # generator adaptation, stage 1 then stage 2: the steps' time and the checkpoints' apart (progress logs
    # come every 10 steps; a checkpoint written after step k falls into the interval that ends at k + 10)
    preset_adapt = steps._adapt_config(full, data["target"], out / "pseudo", out / "gen")  # defaults filled in
    adapt = {**cfg.adapt}
    for stage in ("stage1", "stage2"):
        every = getattr(preset_adapt, stage).checkpoint_every
        measured = min(every, max(20, args.adapt_steps // 20 * 10))  # a checkpoint inside the timed window
        adapt[stage] = {**adapt.get(stage, {}), "steps": args.adapt_steps, "checkpoint_every": measured}
    with_steps = cfg.model_copy(update={"adapt": adapt})
    adapt_cfg = steps._adapt_config(with_steps, data["target"], out / "pseudo", out / "gen")
    est.note("adapt_data", adapt_data_times(adapt_cfg))
    for batch_size in args.adapt_batches:
        adapt_batch(est, with_steps, data["target"], out, batch_size, args.sweep_steps)
    for number, run_stage in ((1, run_stage1), (2, run_stage2)):
        stage = f"stage{number}"
        marks: list[tuple[float, float]] = []
        run_stage(adapt_cfg, out / "gen", lambda record, m=marks: m.append((time.perf_counter(), record["step"])))
        step_s, checkpoint_s = split_checkpoints(marks, adapt[stage]["checkpoint_every"])
        times = rounds if stage == "stage2" else 1  # stage 2 is adapted anew in every round
        total = getattr(preset_adapt, stage).steps * times
        checkpoints = total // getattr(preset_adapt, stage).checkpoint_every
        est.add(
            f"adapt_{stage}",
            {"steps_per_s": round(1 / step_s, 3), "checkpoint_s": round(checkpoint_s, 2)},
            total * step_s + checkpoints * checkpoint_s,
            f"{total} steps, {checkpoints} checkpoints" + (f" ({times} rounds)" if times > 1 else ""),
        )

    # generation with the preset's engine: the first batch (compile, graph capture) apart from the rest
    gen_cfg = steps._generate_config(
        cfg, out / "gen", data["source"], out / "candidates", out / "seg", pseudo_labels=out / "pseudo"
    )
    marks = []
    start = time.perf_counter()
    on_log = lambda snapshot: marks.append((time.perf_counter(), snapshot["done"]))  # noqa: E731
    generate_candidates(gen_cfg, out_dir=out / "candidates", on_log=on_log)
    first_batch = marks[0][0] - start
    per_map = 1 / steady_rate(marks)
    candidates = full.generate["candidates"]
    est.add(
        "generate",
        {"first_batch_s": round(first_batch, 1), "maps_per_s": round(1 / per_map, 3),
         "images_per_s": round(candidates / per_map, 2)},
        (first_batch + per_map * full.source.n) * rounds,
        f"{full.source.n} maps x {candidates} candidates, the first batch's compile once, x {rounds} rounds",
    )  # fmt: skip

    # MCOC filter + rectification of those candidates, scored as the pseudo-labeller labelled, and the
    # unfiltered variant beside it (as the filter-rectify step writes both)
    start = time.perf_counter()
    summary = filter_and_rectify(gen_cfg, out / "candidates", out / "generated")
    plain = gen_cfg.model_copy(
        update={"filter": False, "rectify": gen_cfg.rectify.model_copy(update={"enabled": False})}
    )
    filter_and_rectify(plain, out / "candidates", out / "unfiltered")
    seconds = time.perf_counter() - start
    per_filtered = seconds / sliced["source"]
    est.add(
        "filter_rectify",
        {"s_per_map": round(per_filtered, 4), "kept": summary["kept"]},
        per_filtered * full.source.n * rounds,
        f"{full.source.n} maps x {rounds} rounds",
    )


def adapt_batch(est: Estimate, cfg, target: Path, out: Path, batch_size: int, steps_per_stage: int) -> None:
    """Both adaptation stages at ``batch_size`` for ``steps_per_stage`` steps each (a checkpoint only at
    the end, outside the timed intervals), in a fresh folder: steady steps/s and images/s, and the batch's
    data preparation."""
    from urbangen import steps
    from urbangen.diffusion.adapt import run_stage1, run_stage2

    settings = {"steps": steps_per_stage, "batch_size": batch_size, "checkpoint_every": 10**9}
    adapt = {**cfg.adapt, **{stage: {**cfg.adapt.get(stage, {}), **settings} for stage in ("stage1", "stage2")}}
    gen = out / f"gen-b{batch_size}"
    adapt_cfg = steps._adapt_config(cfg.model_copy(update={"adapt": adapt}), target, out / "pseudo", gen)
    measured: dict = {"data": adapt_data_times(adapt_cfg)}
    for stage, run_stage in (("stage1", run_stage1), ("stage2", run_stage2)):
        marks: list[tuple[float, float]] = []
        run_stage(adapt_cfg, gen, lambda record, m=marks: m.append((time.perf_counter(), record["step"])))
        step_s, _ = split_checkpoints(marks, 10**9)
        measured[stage] = {"steps_per_s": round(1 / step_s, 3), "images_per_s": round(batch_size / step_s, 1)}
    est.data.setdefault("details", {}).setdefault("adapt_batches", {})[str(batch_size)] = measured
    est._saved("adapt_batches", f"adaptation at batch {batch_size}: {measured}")


if __name__ == "__main__":
    main(sys.argv[1:])
