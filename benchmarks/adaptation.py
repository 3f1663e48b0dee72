"""Generator adaptation benchmarks.

``speed``: training steps/s and peak memory of stage 1 and stage 2 for built-in bases, through the real
training loop (random crops of synthetic images, checkpointing off the clock). Each (base, stage) runs in
its own process so its peak RSS is its own; on CUDA the peak allocated GPU memory is reported too.

``regenerate``: what-if on a finished ``urbangen demo`` run: generation (with changed settings), MCOC
filtering and rectification, then the ``urbangen`` and ``urbangen_nofilter`` segmenters and their val mIoU,
reusing the run's world, baselines, pseudo-labels and adapted generator (minutes instead of a whole demo).

With ``--readapt`` (or ``--adapt-set stage2.steps=3200``) it adapts the generator anew first, on ``--device``:
the compute what-if. ``--pseudo-from urbangen`` is a second round: the target pseudo-labelled anew by the
run's urbangen segmenter (as the pipeline labels), the generator adapted on those labels, MCOC scored by it.
``bundle`` packs what such a what-if needs of a run that cannot be remade (pseudo-labels,
the MCOC judge, the config; a few MB) so it can travel to a GPU machine; ``worlds --bundle B`` remakes the
run's worlds there from their seeds, checked against the run's files, and ``regenerate --run B`` then works
on the bundle (``benchmarks/gpu_compute.sh``).

``seeds``: the demo's segmenter trained with several training seeds on the same datasets (say the
``generated`` and ``unfiltered`` folders of a ``regenerate``): the training noise of a demo mIoU. A
``--data`` of ``A+B`` trains on both; ``target-pseudo`` stands for the run's target train images with its
pseudo-labels (self-training, alone or next to generated data).

``scorers``: do two segmenters scoring the same candidates (a demo's filter and a ``regenerate --scorer``)
agree on which candidate of a map is better?

``pseudo``: the pseudo-labels of a finished demo run's pseudo-labeller on its target train images, without
and with the source's class spatial prior at several weights, against the target's ground truth (the
world has it; the pipeline never reads it): raw arg-max mIoU, per-class IoU, what each class was mostly
labelled as, and the share of pixels the thresholds keep.

``compose``: candidate 0 of a finished demo run, optionally with the source render's high frequencies,
as the only training data of a segmenter (is the generator's appearance or its detail the problem?).
``--base sim`` / ``--base flat`` put the source render itself / a flat grey image in the candidate's place:
with ``--calibrate exemplar`` that is the generator's class-wise colour calibration without the generator
(what does the diffusion render add to it?).

``demo``: the ``small``-scale demonstration on world data: adapt on ``real``-style target images with
their labels (pseudo-labels, or ground truth as a stand-in), render ``sim`` label maps, save a grid, and,
given a segmenter trained on ``real`` images, score how well it recovers the conditioning labels from the
generated images versus from the ``sim`` images themselves (mIoU, percent).

    python benchmarks/adaptation.py speed --bases tiny,small --steps 20 --threads 1
    python benchmarks/adaptation.py regenerate --run OUT/workspace/kfp/<run> --set strength=0.5 --out runs/what-if
    python benchmarks/adaptation.py demo --real data/real --sim data/sim --labels data/pseudo \
        --out runs/demo-adapt --segmenter runs/seg-real --n 200
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

# generate settings that change only filtering/rectification: ``regenerate`` reuses the run's candidates
FILTER_SETTINGS = {"filter", "mcoc", "rectify", "segment_batch_size", "preview_rows"}

# the recommended ``small`` CPU settings (docs/adaptation.md); --config replaces them
SMALL = {
    "base": "small",
    "stage1": {"steps": 200, "batch_size": 8, "lr": 2e-3, "warmup": 20, "checkpoint_every": 100},
    "stage2": {"steps": 1400, "batch_size": 8, "lr": 2e-3, "warmup": 20, "checkpoint_every": 100, "erosion": 1},
}


def speed_one(base: str, stage: int, steps: int, batch: int, device: str, threads: int | None) -> dict:
    """Time ``steps`` training steps of one stage (after 2 warm-up steps) in this process."""
    import torch

    from urbangen.diffusion import stage1, stage2
    from urbangen.diffusion.build import base_modules, default_resolution
    from urbangen.diffusion.config import AdaptConfig
    from urbangen.diffusion.data import Item, TargetSet
    from urbangen.diffusion.train import StageRun, run

    if threads:
        torch.set_num_threads(threads)
    work = Path(tempfile.mkdtemp())
    cfg = AdaptConfig.model_validate(
        {"base": base, "target": {"root": str(work)}, "device": device, "stage1": {"batch_size": batch},
         "stage2": {"batch_size": batch}}
    )  # fmt: skip
    modules = base_modules(base, cfg.domains, 0)
    resolution = default_resolution(base, modules)
    rng = np.random.default_rng(0)
    h, w = resolution[0] * 2, resolution[1] * 2
    items = [
        Item(
            f"s{i}",
            rng.integers(0, 255, (h, w, 3), dtype=np.uint8),
            rng.integers(0, 19, (h, w)).astype(np.uint8),
            None,
            0,
        )
        for i in range(8)
    ]
    data = TargetSet(items, resolution, cfg, {})
    if stage == 1:
        model, cond_fn, train_cfg = stage1.prepare(modules, cfg.stage1), (lambda batch, gen: None), cfg.stage1
    else:
        model, cond_fn, train_cfg = stage2.prepare(modules, cfg.stage2, 1), stage2.make_cond_fn(cfg.stage2), cfg.stage2
    ckpt = work / "ckpt"
    run(StageRun(stage, model, modules, train_cfg.model_copy(update={"steps": 2}), cond_fn, "bench"), data, cfg, ckpt)
    if device.startswith("cuda"):
        torch.cuda.reset_peak_memory_stats()
    summary = run(
        StageRun(stage, model, modules, train_cfg.model_copy(update={"steps": 2 + steps}), cond_fn, "bench"),
        data,
        cfg,
        ckpt,
    )
    params = sum(p.numel() for p in model.parameters() if p.requires_grad)
    out = {
        "base": base, "stage": stage, "resolution": list(resolution), "batch": batch, "device": device,
        "threads": torch.get_num_threads(), "trainable_params_m": round(params / 1e6, 3),
        "steps_per_s": round(summary["steps_per_s"], 3), "images_per_s": round(summary["steps_per_s"] * batch, 2),
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
    }  # fmt: skip
    if device.startswith("cuda"):
        out["peak_cuda_mb"] = round(torch.cuda.max_memory_allocated() / 2**20, 1)
        out["gpu"] = torch.cuda.get_device_name()
    return out


def speed(args: argparse.Namespace) -> list[dict]:
    rows = []
    for base in args.bases.split(","):
        for stage in (1, 2):
            cmd = [sys.executable, __file__, "_one", base, str(stage), str(args.steps), str(args.batch), args.device]
            cmd += [str(args.threads or 0)]
            result = subprocess.run(cmd, capture_output=True, text=True, check=True)
            rows.append(json.loads(result.stdout.strip().splitlines()[-1]))
            print(rows[-1], flush=True)
    return rows


def demo(args: argparse.Namespace) -> dict:
    """Adapt, sample the sim label maps, save the grid, score agreement with a real-trained segmenter."""
    import torch

    from urbangen.config import load_yaml, validate
    from urbangen.datasets import open_dataset
    from urbangen.diffusion.adapt import adapt
    from urbangen.diffusion.config import AdaptConfig
    from urbangen.diffusion.sampler import Generator, sample_folder
    from urbangen.io import read_label, read_rgb, write_png

    if args.threads:
        torch.set_num_threads(args.threads)
    out = Path(args.out)
    overrides = {"target": {"format": "cityscapes", "root": str(args.real), "split": "train"}}
    overrides.update(labels_dir=str(args.labels), out=str(out / "adapt"))
    data = load_yaml(args.config) if args.config else dict(SMALL)
    cfg = validate(AdaptConfig, {**data, **overrides}, str(args.config or "SMALL"))
    timings = {}
    start = time.perf_counter()
    adapt(cfg, on_log=lambda d: print(d, flush=True) if d["step"] % 100 == 0 else None)
    timings["adapt_s"] = round(time.perf_counter() - start, 1)
    sim = open_dataset("cityscapes", args.sim)
    samples = sim.index("train").samples[: args.n]
    labels_dir = out / "sim_labels"
    for s in samples:
        if not (labels_dir / f"{s.id}.png").is_file():
            write_png(labels_dir / f"{s.id}.png", sim.load_train_ids(s))
    generator = Generator.from_pretrained(out / "adapt" / "stage2")
    start = time.perf_counter()
    counts = sample_folder(
        generator, labels_dir, out / "samples", steps=args.steps, batch_size=8, scheduler="ddim", guidance=args.guidance
    )
    timings["sample_s"] = round(time.perf_counter() - start, 1)
    result = {"n": len(samples), "steps": args.steps, "timings": timings, "counts": counts, "config": str(args.config)}
    ids = [s.id for s in samples]
    labels = [read_label(labels_dir / f"{i}.png") for i in ids]
    generated = [read_rgb(out / "samples" / f"{i}.png") for i in ids]
    sims = [read_rgb(s.image) for s in samples]
    if args.grid:
        save_grid(Path(args.grid), labels[:6], sims[:6], generated[:6], args.real)
    if args.segmenter:
        from urbangen.segment.evaluate import ConfusionMatrix
        from urbangen.segment.predict import Predictor

        predictor = Predictor.from_pretrained(args.segmenter)
        for name, images in (("generated", generated), ("sim", sims)):
            cm = ConfusionMatrix(19)
            preds, _ = predictor.predict(np.stack(images), batch_size=8)
            for pred, label in zip(preds, labels, strict=True):
                cm.update(pred, label)
            scores = cm.result(generator.taxonomy, None, len(images))
            result[f"miou_{name}"] = scores["mIoU"]
        print(f"segmenter agreement mIoU: generated {result['miou_generated']} vs sim {result['miou_sim']}")
    if args.val:
        renders = as_cityscapes({i: out / "samples" / f"{i}.png" for i in ids}, out / "renders")
        mix = [{"format": "cityscapes", "root": str(root), "split": "train"} for root in args.mix or []]
        sources = [{"format": "cityscapes", "root": str(renders), "split": "train", "labels_dir": str(labels_dir)}]
        result["segment_miou"] = train_and_score(sources + mix, args.val, out / "segmenter", args.seg_iterations)
        print(f"segmenter trained on the renders{' + mix' if mix else ''}: {result['segment_miou']:.2f} mIoU on val")
    (out / "demo.json").write_text(json.dumps(result, indent=2))
    return result


def as_cityscapes(images: dict[str, Path], root: Path, blur_to: tuple[int, int] | None = None) -> Path:
    """Copy each ``{id: image}`` into a Cityscapes-layout ``root`` (city ``renders``), optionally resized to
    ``blur_to`` (H, W) and back: what a perfect generator at that model resolution would give."""
    from PIL import Image

    from urbangen.io import read_rgb, write_png

    for sample_id, source in images.items():
        path = root / "leftImg8bit" / "train" / "renders" / f"{sample_id}_leftImg8bit.png"
        if path.is_file():
            continue
        image = read_rgb(source)
        if blur_to:
            small = Image.fromarray(image).resize(blur_to[::-1], Image.BICUBIC)
            image = np.asarray(small.resize(image.shape[1::-1], Image.BICUBIC))
        write_png(path, image)
    return root


def train_and_score(
    sources: list[dict], val: Path, out: Path, iterations: int, seed: int = 0, device: str = "auto"
) -> float:
    """A tiny SegFormer with the demo's segmentation settings on ``sources``; mIoU on the ``val`` split."""
    from urbangen.config import validate
    from urbangen.pipeline_config import DEMO_SEGMENT
    from urbangen.segment.data import DataSource
    from urbangen.segment.evaluate import evaluate_source
    from urbangen.segment.predict import predict_dataset
    from urbangen.segment.train import TrainConfig, train

    cfg = validate(
        TrainConfig,
        {**DEMO_SEGMENT, "iterations": iterations, "sources": sources, "seed": seed, "device": device},
        "benchmark",
    )
    model = train(cfg, out)
    source = DataSource(format="cityscapes", root=val, split="val")
    predict_dataset(model, source, out / "pred")
    return float(evaluate_source(out / "pred", source)["mIoU"])


def ceiling(args: argparse.Namespace) -> dict:
    """Real train images resized to the model resolution and back, with ``--labels``: a perfect generator."""
    from urbangen.datasets import open_dataset

    samples = open_dataset("cityscapes", args.real).index("train").samples
    root = as_cityscapes({s.id: s.image for s in samples}, args.out / "blurred", tuple(args.resolution))
    source = {"format": "cityscapes", "root": str(root), "split": "train", "labels_dir": str(args.labels)}
    result = {
        "resolution": args.resolution,
        "mIoU": train_and_score([source], args.val, args.out / "seg", args.seg_iterations),
    }
    print(f"perfect generator at {args.resolution[0]}x{args.resolution[1]}: {result['mIoU']:.2f} mIoU on val")
    return result


def demo_artefacts(run: Path) -> dict[str, Path]:
    """The artefacts of a finished kfp.local demo run folder (``OUT/workspace/kfp/<run>``), by role, or
    of a ``bundle`` of one (after ``worlds``).

    A run finished by ``--resume`` holds only the tasks that ran again; the tasks it reused are in the
    earlier run folders beside it, so those are read first (oldest first) and ``run`` has the last word."""
    if (run / BUNDLE_FILE).is_file():
        return bundle_artefacts(run)
    found: dict[str, Path] = {}
    earlier = sorted(p for p in run.parent.iterdir() if p.is_dir() and p.name < run.name)
    for folder in [*earlier, run]:
        mine: dict[str, Path] = {}
        for output in sorted(folder.glob("*/executor_output.json")):
            for artefacts in json.loads(output.read_text()).get("artifacts", {}).values():
                for artefact in artefacts["artifacts"]:
                    meta, uri = artefact.get("metadata", {}), Path(artefact["uri"])
                    mine.setdefault(meta.get("role") or meta.get("method") or output.parent.name, uri)
        found.update(mine)
        if (folder / "adapt-stage2" / "generator").exists():
            found["generator"] = folder / "adapt-stage2" / "generator"
    missing = [k for k in ("source", "val", "fda", "generator") if k not in found or not found[k].exists()]
    if missing:
        raise SystemExit(f"{run}: not a finished demo run (missing {missing}; found {sorted(found)})")
    return found


# ------------------------------------------------------------------------------------ bundles (what-ifs elsewhere)
BUNDLE_FILE = "bundle.json"
WORLD_ROLES = ("source", "target", "val")


def world_manifest(root: Path) -> dict[str, dict]:
    """Every image and label file of a world dataset: sha256, and an image's mean colour (a remade world
    whose PNGs differ in a few rounded pixels is told apart from a different scene)."""
    from urbangen.io import read_rgb, sha256_file

    manifest = {}
    for path in sorted([*root.glob("leftImg8bit/*/*/*.png"), *root.glob("gtFine/*/*/*.png")]):
        entry = {"sha256": sha256_file(path)}
        if path.parts[-4] == "leftImg8bit":
            entry["mean"] = [round(float(v), 3) for v in read_rgb(path).reshape(-1, 3).mean(axis=0)]
        manifest[str(path.relative_to(root))] = entry
    return manifest


def bundle(args: argparse.Namespace) -> dict:
    """What a what-if on a finished demo run needs that cannot be remade elsewhere, in one folder that
    travels (a few MB): the pseudo-labels with their labelling files, the pseudo-labeller (the MCOC judge),
    the run's config and a manifest of its world files. ``worlds`` remakes the worlds from their seeds on
    the other machine and checks them against the manifest; then ``regenerate --run BUNDLE`` works there."""
    from urbangen.pipeline_config import WorldData, load_pipeline_config
    from urbangen.segment.pseudo import LABELLING_FILES
    from urbangen.steps import model_folders, world_settings

    parts, out = demo_artefacts(Path(args.run)), Path(args.out)
    cfg = load_pipeline_config(args.config, scale=args.scale, seed=args.seed, style_seed=args.style_seed)
    scorer = args.scorer or cfg.pseudo_label_from
    missing = [role for role in (*WORLD_ROLES, "pseudo-label", scorer) if role not in parts]
    if missing:
        raise SystemExit(f"{args.run}: no {missing} in this run (--scorer {scorer}); a bundle needs a world demo")
    if (out / "worlds").exists():
        raise SystemExit(f"{out}/worlds: a bundle folder that was used already; give a new --out")
    for role in WORLD_ROLES:  # the run's world descriptions must be what this config makes
        found = sorted(parts[role].glob("world_*.json"))
        if not isinstance(getattr(cfg, role), WorldData) or not found:
            raise SystemExit(f"{args.run}: its {role} is not a world dataset; a bundle needs a world demo")
        made, expected = json.loads(found[0].read_text()), world_settings(cfg, role)
        keys = ("seed", "n", "size", "style", "city") + (("style_seed",) if expected["style"] == "real" else ())
        changed = {k: (made.get(k), expected[k]) for k in keys if made.get(k) != json.loads(json.dumps(expected[k]))}
        if changed:
            raise SystemExit(
                f"{found[0]}: made with other settings than --seed {cfg.seed} --style-seed {cfg.style_seed} "
                f"at scale {args.scale} (run vs these: {changed}); give the run's --seed/--style-seed/--scale/--config"
            )
    labels = out / "pseudo-label"
    labels.mkdir(parents=True, exist_ok=True)
    for path in [*parts["pseudo-label"].glob("*.png"), *(parts["pseudo-label"] / f for f in LABELLING_FILES)]:
        if path.is_file():
            shutil.copy2(path, labels / path.name)
    judge = model_folders(parts[scorer])[0]
    shutil.copytree(judge, out / "judge" / "seed-0" / "model", dirs_exist_ok=True)
    manifest = {role: world_manifest(parts[role]) for role in WORLD_ROLES}
    (out / "manifest.json").write_text(json.dumps(manifest))
    info = {"run": str(args.run), "scorer": scorer, "config": cfg.parameter()}
    (out / BUNDLE_FILE).write_text(json.dumps(info, indent=2))
    size = sum(p.stat().st_size for p in out.rglob("*") if p.is_file())
    print(f"bundle of {args.run} in {out}: {size / 1e6:.1f} MB; remake its worlds there with `worlds --bundle {out}`")
    return {**info, "bytes": size}


def _make_world(bundle_dir: Path, role: str) -> str:
    from urbangen.pipeline_config import PipelineConfig
    from urbangen.steps import make_world

    cfg = PipelineConfig.model_validate(json.loads((bundle_dir / BUNDLE_FILE).read_text())["config"])
    make_world(cfg, role, bundle_dir / "worlds" / role, progress=False)
    return role


def worlds(args: argparse.Namespace) -> dict:
    """Remake a bundle's worlds (one process per role) and check them against the run's files: labels must
    be identical (the pseudo-labels belong to these scenes); images may differ by rounding (other numpy
    builds), not by more than ``--tolerance`` in any image's mean colour."""
    from concurrent.futures import ProcessPoolExecutor

    from urbangen.io import write_json_atomic

    start, bundle_dir = time.perf_counter(), Path(args.bundle)
    with ProcessPoolExecutor(len(WORLD_ROLES)) as pool:
        list(pool.map(_make_world, [bundle_dir] * len(WORLD_ROLES), WORLD_ROLES))
    expected = json.loads((bundle_dir / "manifest.json").read_text())
    check: dict = {"seconds": round(time.perf_counter() - start, 1)}
    problems = []
    for role in WORLD_ROLES:
        made = world_manifest(bundle_dir / "worlds" / role)
        same = [k for k, v in expected[role].items() if made.get(k, {}).get("sha256") == v["sha256"]]
        labels = [k for k in expected[role] if k.startswith("gtFine/")]
        drift = [
            max(abs(a - b) for a, b in zip(v["mean"], made[k]["mean"], strict=True))
            for k, v in expected[role].items()
            if "mean" in v and k in made
        ]
        check[role] = {
            "files": len(expected[role]),
            "identical": len(same),
            "labels_identical": len(set(labels) & set(same)),
            "max_mean_colour_difference": max(drift, default=None),
        }
        if set(made) != set(expected[role]):
            problems.append(f"{role}: the remade files differ from the run's ({len(made)} vs {len(expected[role])})")
        elif check[role]["labels_identical"] != len(labels):
            problems.append(f"{role}: {len(labels) - check[role]['labels_identical']} label maps differ")
        elif drift and max(drift) > args.tolerance:
            problems.append(f"{role}: an image's mean colour moved by {max(drift):.3f} > {args.tolerance}")
    check["problems"] = problems
    write_json_atomic(bundle_dir / "worlds" / "check.json", check)
    print(json.dumps(check), flush=True)
    if problems:
        raise SystemExit(f"{bundle_dir}: the remade worlds are not the run's: {'; '.join(problems)}")
    return check


def bundle_artefacts(bundle_dir: Path) -> dict[str, Path]:
    """``demo_artefacts`` of a bundle whose worlds were remade (no generator, no baselines)."""
    check = bundle_dir / "worlds" / "check.json"
    if not check.is_file():
        raise SystemExit(f"{bundle_dir}: a bundle without its worlds; run `worlds --bundle {bundle_dir}` first")
    if json.loads(check.read_text())["problems"]:
        raise SystemExit(f"{bundle_dir}: its remade worlds are not the run's (see {check})")
    scorer = json.loads((bundle_dir / BUNDLE_FILE).read_text())["scorer"]
    parts = {role: bundle_dir / "worlds" / role for role in WORLD_ROLES}
    return {**parts, "pseudo-label": bundle_dir / "pseudo-label", scorer: bundle_dir / "judge"}


def parse_settings(items: list[str] | None, flag: str) -> dict:
    """``KEY=JSON`` items of a repeatable flag, as a mapping."""
    settings = {}
    for item in items or []:
        key, sep, value = item.partition("=")
        try:
            settings[key] = json.loads(value)
        except json.JSONDecodeError:
            sep = ""
        if not sep or not key:
            raise SystemExit(f"{flag} {item}: expected KEY=JSON, e.g. steps=20 or control='\"concat\"'")
    return settings


def nested_update(settings: dict, key: str, value, flag: str = "--adapt-set") -> dict:
    """``settings`` with the dotted ``key`` (``stage2.steps``) set to ``value`` (copies, never mutates)."""
    head, _, rest = key.partition(".")
    if not rest:
        return {**settings, head: value}
    inner = settings.get(head, {})
    if not isinstance(inner, dict):
        raise SystemExit(f"{flag} {key}: {head} is not a section")
    return {**settings, head: nested_update(inner, rest, value, flag)}


def readapt(cfg, parts: dict[str, Path], out: Path) -> Path:
    """Stage 1 + stage 2 anew on the run's target images and pseudo-labels with ``cfg.adapt`` (resumable: a
    finished stage is reused)."""
    from urbangen.diffusion.adapt import run_stage1, run_stage2
    from urbangen.steps import _adapt_config

    if "target" not in parts or "pseudo-label" not in parts:
        raise SystemExit("--readapt needs the run's target images and pseudo-labels")
    adapt_cfg = _adapt_config(cfg, parts["target"], parts["pseudo-label"], out)
    run_stage1(adapt_cfg, out)
    run_stage2(adapt_cfg, out)
    return out


def relabel(cfg, parts: dict[str, Path], segmenter: str, out: Path) -> Path:
    """The run's target train images pseudo-labelled by its ``segmenter`` as the pipeline's step labels them
    (the config's spatial prior, class balance, threshold); resumable (finished images are skipped)."""
    from urbangen.steps import label_target, model_folders

    label_target(cfg, model_folders(parts[segmenter])[0], parts["target"], out, parts["source"])
    return out


def regenerate(args: argparse.Namespace) -> dict:
    """Generation -> filter/rectify -> segmenters -> val mIoU on a finished demo run (or a bundle of one), with
    --set changes; with --readapt / --adapt-set the generator is adapted anew first (a compute what-if)."""
    from urbangen.generate.filtering import filter_and_rectify
    from urbangen.generate.run import generate_candidates
    from urbangen.io import write_json_atomic
    from urbangen.pipeline_config import PipelineConfig, load_pipeline_config
    from urbangen.steps import _generate_config

    run, out = Path(args.run), Path(args.out)
    parts = demo_artefacts(run)
    changes = parse_settings(args.set, "--set")
    adapt_changes = parse_settings(args.adapt_set, "--adapt-set")
    if (run / BUNDLE_FILE).is_file():  # a bundle carries its run's config (seeds, scale)
        cfg = PipelineConfig.model_validate(json.loads((run / BUNDLE_FILE).read_text())["config"])
    else:
        cfg = load_pipeline_config(None, scale=args.scale, seed=args.seed)
    labeller_name = args.pseudo_from or cfg.pseudo_label_from
    scorer_name = args.scorer or labeller_name
    if labeller_name not in parts:
        raise SystemExit(f"--pseudo-from {labeller_name}: not a segmenter of {run} (have {sorted(parts)})")
    if scorer_name not in parts:
        raise SystemExit(f"--scorer {scorer_name}: not a segmenter of {run} (have {sorted(parts)})")
    generate, adapt = dict(cfg.generate), dict(cfg.adapt)
    for key, value in changes.items():
        generate = nested_update(generate, key, value, "--set")
    for key, value in adapt_changes.items():
        adapt = nested_update(adapt, key, value, "--adapt-set")
    if args.device:  # else: the config's devices (CPU generation, segmenters on CUDA where present)
        generate = nested_update(generate, "engine.device", args.device, "--device")
        adapt["device"] = args.device
    cfg = cfg.model_copy(update={"generate": generate, "adapt": adapt})
    readapting = args.readapt or bool(adapt_changes) or bool(args.pseudo_from)
    if readapting and args.candidates_from:
        raise SystemExit("--candidates-from with --readapt: those candidates are not the new generator's")
    result = {
        "run": str(run),
        "changes": changes,
        "adapt": adapt if readapting else None,
        "device": args.device,
        "scorer": scorer_name,
        "pseudo_from": labeller_name,
        "plain_scorer": args.plain_scorer,
    }
    timings = result["timings"] = {}
    if (args.device or "").startswith("cuda"):
        import torch

        result["device_name"] = torch.cuda.get_device_name(torch.device(args.device))
    start = time.perf_counter()
    if args.pseudo_from:  # a second round: the target pseudo-labelled anew by another of the run's segmenters
        parts = {**parts, "pseudo-label": relabel(cfg, parts, labeller_name, out / "pseudo-label")}
        timings["pseudo_label_s"] = round(time.perf_counter() - start, 1)
        start = time.perf_counter()
    if readapting:
        generator = readapt(cfg, parts, out / "adapt")  # stage 2 records its exemplars itself
        timings["adapt_s"] = round(time.perf_counter() - start, 1)
        start = time.perf_counter()
    elif "generator" not in parts:
        raise SystemExit(f"{run}: no adapted generator here; give --readapt or --adapt-set")
    elif cfg.generate.get("calibrate") == "exemplar":
        generator = with_exemplars(parts, out / "generator") or parts["generator"]
    else:
        generator = parts["generator"]
    scorer = parts[scorer_name]
    # the demo scores with its pseudo-labeller as it labelled: its spatial prior and class weights
    labeller = scorer_name == labeller_name and not args.plain_scorer
    labelling = parts.get("pseudo-label") if labeller else None
    gen = _generate_config(cfg, generator, parts["source"], out / "candidates", scorer, pseudo_labels=labelling)
    if args.candidates_from:
        # a filter-only what-if: these candidates (the run's, or another what-if's) are what it would render
        if not {key.split(".")[0] for key in changes} <= FILTER_SETTINGS:
            raise SystemExit(f"--candidates-from takes filter settings only ({sorted(FILTER_SETTINGS)})")
        if not (out / "candidates").exists():
            shutil.copytree(args.candidates_from, out / "candidates", copy_function=os.link)
    else:
        generate_candidates(gen, out_dir=out / "candidates")
    timings["generate_s"] = round(time.perf_counter() - start, 1)
    start = time.perf_counter()
    summary = filter_and_rectify(gen, out / "candidates", out / "generated")
    plain = gen.model_copy(update={"filter": False, "rectify": gen.rectify.model_copy(update={"enabled": False})})
    filter_and_rectify(plain, out / "candidates", out / "unfiltered")
    timings["filter_s"] = round(time.perf_counter() - start, 1)
    result["kept"], result["mean_best_mcoc"] = summary["kept"], summary["mean_best_mcoc"]
    methods = [m for m in ("urbangen", "urbangen_nofilter") if m in args.methods.split(",")]
    data = {"urbangen": out / "generated", "urbangen_nofilter": out / "unfiltered"}
    scores: dict[str, dict[str, float]] = result.setdefault("mIoU", {})
    for seed in args.train_seeds:  # seeds outermost: a run cut short still compares the methods
        for method in methods:
            start = time.perf_counter()
            source = {"format": "cityscapes", "root": str(data[method]), "split": "train"}
            work = out / f"seg-{method}" / f"seed{seed}"
            device = args.device or "auto"
            score = train_and_score([source], parts["val"], work, args.seg_iterations, seed=seed, device=device)
            scores.setdefault(method, {})[str(seed)] = score
            result[method] = float(np.mean(list(scores[method].values())))
            timings[f"{method}_seed{seed}_s"] = round(time.perf_counter() - start, 1)
            print(f"{method}: training seed {seed}: {score:.2f} mIoU on val", flush=True)
            write_json_atomic(out / "regenerate.json", result)  # after every segmenter: a cut-off run keeps them
    write_json_atomic(out / "regenerate.json", result)
    return result


def training_sources(spec: str, parts: dict[str, Path]) -> list[dict]:
    """``--data`` of ``seeds``: Cityscapes-layout train roots joined by ``+``; ``target-pseudo`` is the run's
    target train images with its thresholded pseudo-labels (what stage 2 trained on)."""
    sources = []
    for item in spec.split("+"):
        if item == "target-pseudo":
            if "target" not in parts or "pseudo-label" not in parts:
                raise SystemExit("--data target-pseudo needs --run (a finished demo with pseudo-labels)")
            target, labels = str(parts["target"]), str(parts["pseudo-label"])
            sources.append({"format": "cityscapes", "root": target, "split": "train", "labels_dir": labels})
        elif Path(item).is_dir():
            sources.append({"format": "cityscapes", "root": item, "split": "train"})
        else:
            raise SystemExit(f"--data {spec}: {item!r} is neither a dataset folder nor 'target-pseudo'")
    return sources


def seeds(args: argparse.Namespace) -> dict:
    """The demo's segmenter trained with several training seeds on each dataset: how much of a difference
    between two methods' mIoU is training noise."""
    if (args.run is None) == (args.val is None):
        raise SystemExit(
            "give --run (a finished demo: its val set) or --val (a Cityscapes-layout root with a val split)"
        )
    parts = demo_artefacts(Path(args.run)) if args.run else {}
    val = args.val or parts["val"]
    mixes = {data: training_sources(data, parts) for data in args.data}
    scores: dict[str, list[float]] = {data: [] for data in args.data}
    for seed in args.seeds:  # seeds outermost: a run cut short still compares every dataset
        for data, sources in mixes.items():
            work = args.out / data.replace("/", "_").strip("_") / f"seed{seed}"
            score = train_and_score(sources, val, work, args.seg_iterations, seed=seed)
            scores[data].append(score)
            print(f"{data}: training seed {seed}: {score:.2f} mIoU on val", flush=True)
    result = {}
    for data, values in scores.items():
        result[data] = {
            "seeds": args.seeds,
            "mIoU": values,
            "mean": float(np.mean(values)),
            "std": float(np.std(values, ddof=1)) if len(values) > 1 else None,
        }
        spread = f" +- {result[data]['std']:.2f} (sample sd)" if len(values) > 1 else ""
        print(f"{data}: {np.mean(values):.2f}{spread} mIoU over seeds {args.seeds}", flush=True)
    return result


def pseudo(args: argparse.Namespace) -> dict:
    """Raw (arg-max) pseudo-label mIoU against the target's ground truth, per spatial-prior weight."""
    from urbangen.pipeline_config import load_pipeline_config
    from urbangen.segment.data import DataSource
    from urbangen.segment.evaluate import evaluate_source
    from urbangen.segment.pseudo import pseudo_label
    from urbangen.steps import model_folders

    parts = demo_artefacts(Path(args.run))
    target = DataSource(format="cityscapes", root=parts["target"], split="train")
    prior = DataSource(format="cityscapes", root=parts["source"], split="train")
    options = load_pipeline_config(None, scale=args.scale).pseudo_label.model_dump(
        exclude={"spatial_prior", "prior_weight", "class_balance"}
    )
    model = model_folders(parts[args.segmenter])[0]
    result = {
        "run": str(args.run),
        "segmenter": args.segmenter,
        "class_balance": args.class_balance,
        "options": options,
        "weights": {},
    }
    for weight in args.weights:
        out = args.out / f"weight-{weight:g}{'-balanced' if args.class_balance else ''}"
        summary = pseudo_label(
            model,
            target,
            out,
            spatial_prior=prior if weight or args.class_balance else None,
            prior_weight=weight,
            class_balance=args.class_balance,
            **options,
        )
        scored = evaluate_source(out / "prediction", target)
        raw, classes = scored["mIoU"], list(scored["per_class"])
        matrix = np.asarray(scored["confusion_matrix"], dtype=np.float64)[:, : len(classes)]
        shares = matrix / np.maximum(matrix.sum(axis=1, keepdims=True), 1)
        result["weights"][f"{weight:g}"] = {
            "raw_mIoU": raw,
            "kept_fraction": summary["kept_fraction"],
            "per_class": scored["per_class"],
            # each ground-truth class: the class most of its pixels were labelled as, and that share
            "mostly_labelled_as": {
                name: [classes[int(row.argmax())], float(row.max())]
                for name, row in zip(classes, shares, strict=True)
                if matrix[classes.index(name)].sum()
            },
        }
        print(
            f"prior weight {weight:g}: raw {raw:.2f} mIoU ({summary['kept_fraction']:.0%} of pixels kept)", flush=True
        )
    return result


def scorers(args: argparse.Namespace) -> dict:
    """Two scorings of the same candidates (the ``filter/manifest.jsonl`` of two filter runs, e.g. a demo's
    and a ``regenerate --scorer oracle``): do the two segmenters agree on which candidate of a map is the
    better one, and on which maps are good? Chance agreement on the best of K candidates is 1/K."""
    lines = []
    for folder in (args.a, args.b):
        path = folder / "filter" / "manifest.jsonl" if folder.is_dir() else folder
        if not path.is_file():
            raise SystemExit(f"{path}: no score manifest (give a filter output folder or its filter/manifest.jsonl)")
        lines.append({line["id"]: line for line in map(json.loads, path.read_text().splitlines())})
    a, b = lines
    ids = sorted(set(a) & set(b))
    if not ids:
        raise SystemExit(f"{args.a} and {args.b} score no map in common")
    k = {len(a[i]["candidates"]) for i in ids}
    if len(k) != 1 or k == {1}:
        raise SystemExit(f"need the same number (>= 2) of candidates per map, got {sorted(k)}")

    def mcoc(line: dict) -> np.ndarray:
        return np.array([np.nan if c["mcoc"] is None else c["mcoc"] for c in line["candidates"]], dtype=float)

    ma, mb = np.stack([mcoc(a[i]) for i in ids]), np.stack([mcoc(b[i]) for i in ids])
    # within-map judgements: each candidate's MCOC minus its map's mean (what best-of-K selection acts on)
    da, db = ma - ma.mean(1, keepdims=True), mb - mb.mean(1, keepdims=True)
    ok = np.isfinite(da) & np.isfinite(db)
    result = {
        "maps": len(ids),
        "candidates": k.pop(),
        "best_agreement": float(np.mean([a[i]["best"] == b[i]["best"] for i in ids])),
        "within_map_correlation": float(np.corrcoef(da[ok], db[ok])[0, 1]),
        "map_correlation": float(np.corrcoef(np.nanmax(ma, 1), np.nanmax(mb, 1))[0, 1]),
        "mean_mcoc": [float(np.nanmean(ma)), float(np.nanmean(mb))],
        "mean_candidate_spread": [float(np.nanmean(np.ptp(m, 1))) for m in (ma, mb)],
    }
    print(
        f"{len(ids)} maps x {result['candidates']} candidates: same best candidate "
        f"{result['best_agreement']:.0%} (chance {1 / result['candidates']:.0%}); within-map correlation "
        f"{result['within_map_correlation']:.2f}; best-MCOC correlation across maps {result['map_correlation']:.2f}; "
        f"mean MCOC {result['mean_mcoc'][0]:.2f} / {result['mean_mcoc'][1]:.2f}",
        flush=True,
    )
    return result


def withdrawn(args: argparse.Namespace) -> dict:
    """What rectification withdrew from a filtered dataset, per class, and what the scoring segmenter saw
    there; ``--grid``: the maps that lost most of ``--cls`` (generated | source label | segmenter's
    prediction | rectified label, black = withdrawn)."""
    from PIL import Image

    from urbangen.datasets.writer import read_manifest
    from urbangen.generate.store import CandidateStore
    from urbangen.io import read_label, read_rgb
    from urbangen.labels import IGNORE, cityscapes19

    taxonomy = cityscapes19()  # the pipeline's generated datasets use the Cityscapes 19 trainIds
    if bool(args.cls) != bool(args.grid):
        raise SystemExit("--cls and --grid go together (the class whose most-withdrawn maps to draw)")
    summary_path = args.data / "summary.json"
    if not summary_path.is_file():
        raise SystemExit(
            f"{args.data}: no summary.json (give a filter output folder, e.g. RUN/filter-rectify/generated)"
        )
    store = CandidateStore(json.loads(summary_path.read_text())["candidates_dir"])
    records = {r["id"]: r for r in read_manifest(store.root)}
    seen: dict[str, np.ndarray] = {}  # class -> histogram of the segmenter's prediction on its withdrawn pixels
    losses = []
    for line in read_manifest(args.data):
        source, _ = store.load_label(records[line["source_id"]])
        rectified = read_label(args.data / line["label"])
        pred = read_label(args.data / "filter" / "pred" / f"{line['source_id']}.png")
        lost = (rectified == IGNORE) & (source != IGNORE)
        for c in np.unique(source[lost]):
            hist = np.bincount(pred[lost & (source == c)].ravel(), minlength=256)
            name = taxonomy.classes[c]
            seen[name] = seen.get(name, 0) + hist
        if args.cls:
            losses.append(
                (int((lost & (source == taxonomy.classes.index(args.cls))).sum()), line, source, rectified, pred)
            )
    result = {}
    for name, hist in sorted(seen.items(), key=lambda kv: -kv[1].sum()):
        top = [
            (taxonomy.classes[i] if i < len(taxonomy.classes) else "ignore", int(hist[i]))
            for i in np.argsort(-hist)[:3]
        ]
        result[name] = {"pixels": int(hist.sum()), "segmenter_saw": dict(top)}
        print(
            f"{name:14s} {int(hist.sum()):8d} px withdrawn; the segmenter saw " + ", ".join(f"{k} {v}" for k, v in top)
        )
    if args.cls:
        rows = []
        for n, line, source, rectified, pred in sorted(losses, key=lambda x: -x[0])[: args.rows]:
            if n:
                image = read_rgb(args.data / line["image"])
                rows.append(np.concatenate([image, *(taxonomy.colorize(x) for x in (source, pred, rectified))], axis=1))
        if not rows:
            raise SystemExit(f"rectification withdrew no {args.cls} in {args.data}: no grid to draw")
        args.grid.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(np.concatenate(rows, axis=0)).save(args.grid)
        print(f"{len(rows)} maps that lost most {args.cls} -> {args.grid}")
    return result


def with_exemplars(parts: dict[str, Path], out: Path) -> Path | None:
    """A copy of a run's stage-2 generator with the per-image target colours that stage 2 records since
    exemplar calibration exists (runs made before lack them); None when the generator has them."""
    from urbangen.diffusion.appearance import image_colour_stats

    meta = json.loads((parts["generator"] / "stage2" / "urbangen.json").read_text())
    if meta.get("appearance_exemplars"):
        return None
    if not (out / "stage2" / "urbangen.json").is_file():
        shutil.copytree(parts["generator"] / "stage2", out / "stage2", copy_function=os.link, dirs_exist_ok=True)
        meta["appearance_exemplars"] = image_colour_stats(target_pairs(parts["target"], parts["pseudo-label"]))
        (out / "stage2" / "urbangen.json").unlink()
        (out / "stage2" / "urbangen.json").write_text(json.dumps(meta))
    return out


def compose(args: argparse.Namespace) -> dict:
    """Candidate 0 of every map of a finished demo run with its low frequencies kept and its high ones
    replaced by the source render's (Gaussian split at ``--sigma`` px; 0 = the candidate as it is), then a
    segmenter on those images and the source labels: does the generator's appearance or its lack of
    detail hold urbangen back? ``--base sim|flat``: the source render / a flat grey image instead of the
    candidate (then calibrated like one): what calibration gives without the generator."""
    from PIL import Image, ImageFilter

    from urbangen.datasets import open_dataset
    from urbangen.diffusion.appearance import calibrate, class_colour_stats, image_colour_stats
    from urbangen.generate.store import CandidateStore
    from urbangen.io import read_rgb, write_png

    run, out = Path(args.run), Path(args.out)
    parts = demo_artefacts(run)
    source = open_dataset("cityscapes", parts["source"])
    # each shard's candidates folder links to its step folder (WORKSPACE/steps): glob "**" does not follow links
    shards = [CandidateStore(p) for p in sorted(run.glob("for-loop-*/*/candidates"))]

    def low(image: np.ndarray) -> np.ndarray:
        bands = [Image.fromarray(image[..., c]).filter(ImageFilter.GaussianBlur(args.sigma)) for c in range(3)]
        return np.stack([np.asarray(b, dtype=np.float32) for b in bands], axis=-1)

    labels_dir = args.labels or parts["pseudo-label"]
    pairs = target_pairs(parts["target"], labels_dir) if args.calibrate else []
    if args.calibrate and not pairs:
        raise SystemExit(f"--labels {labels_dir}: no <id>.png label for any target train image of the run")
    stats = class_colour_stats(pairs) if args.calibrate else None
    exemplars = image_colour_stats(pairs) if args.calibrate == "exemplar" else None
    for n, sample in enumerate(source.index("train").samples):
        labels = source.load_train_ids(sample)
        for k in range(args.candidates if args.base == "candidate" else 1):
            if args.base == "candidate":
                folder = next(s.sample_dir(sample.id) for s in shards if s.sample_dir(sample.id).is_dir())
                image = read_rgb(folder / f"candidate_{k}.png")
            elif args.base == "sim":
                image = read_rgb(sample.image)
            else:
                image = np.full((*labels.shape, 3), 128, dtype=np.uint8)
            if args.sigma > 0 and args.base == "candidate":
                render = read_rgb(sample.image)
                image = np.clip(low(image) + render - low(render), 0, 255).astype(np.uint8)
            if stats is not None:
                image = calibrate(image, labels, stats, exemplars=exemplars, seed=n * args.candidates + k)
            write_png(out / "leftImg8bit" / "train" / "c" / f"{sample.id}-{k}_leftImg8bit.png", image)
            write_png(out / "gtFine" / "train" / "c" / f"{sample.id}-{k}_gtFine_labelTrainIds.png", labels)
    data = {"format": "cityscapes", "root": str(out), "split": "train"}
    score = train_and_score([data], parts["val"], out / f"seg{args.train_seed}", args.seg_iterations, args.train_seed)
    result = {
        "base": args.base,
        "sigma": args.sigma if args.base == "candidate" else 0.0,
        "calibrate": args.calibrate,
        "candidates": args.candidates if args.base == "candidate" else 1,
        "train_seed": args.train_seed,
        "labels": str(labels_dir),
        "mIoU": score,
    }
    what = f"candidate 0, detail from the source above sigma {args.sigma}" if args.base == "candidate" else args.base
    print(f"{what}, calibrate {args.calibrate}, training seed {args.train_seed}: {score:.2f} mIoU on val")
    return result


def target_pairs(target: Path, labels: Path) -> list[tuple[np.ndarray, np.ndarray]]:
    """(image, label) of every target train image with a label in ``labels``: what stage 2 computes its
    colour statistics from (``class_colour_stats`` pooled, ``image_colour_stats`` per image)."""
    from urbangen.datasets import open_dataset
    from urbangen.io import read_label, read_rgb

    samples = open_dataset("cityscapes", target).index("train").samples
    return [
        (read_rgb(s.image), read_label(labels / f"{s.id}.png")) for s in samples if (labels / f"{s.id}.png").is_file()
    ]


def save_grid(path: Path, labels, sims, generated, real_root) -> None:
    """Rows: label map | sim render | generated | a real target image (for the look)."""
    from urbangen.labels import cityscapes19

    rows = zip(labels, sims, generated, real_images(real_root, len(labels)), strict=True)
    write_grid(path, [[cityscapes19().colorize(label), sim, gen, real] for label, sim, gen, real in rows])


def real_images(root: Path, n: int) -> list[np.ndarray]:
    """The first ``n`` train images of a real target dataset (a grid's last column, for the look)."""
    from urbangen.datasets import open_dataset
    from urbangen.io import read_rgb

    return [read_rgb(s.image) for s in open_dataset("cityscapes", root).index("train").samples[:n]]


def write_grid(path: Path, rows: list[list[np.ndarray]]) -> None:
    """One PNG of ``rows`` of images, each resized to the size of a row's first image."""
    from PIL import Image

    def fit(image: np.ndarray, like: np.ndarray) -> np.ndarray:
        size = (like.shape[1], like.shape[0])
        return np.asarray(Image.fromarray(image).resize(size, Image.Resampling.BILINEAR))

    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.concatenate([np.concatenate([fit(i, r[0]) for i in r], axis=1) for r in rows])).save(path)


def grid(args: argparse.Namespace) -> dict:
    """Rows of the first ``--n`` source maps: label | source render | the same map in each ``--data`` dataset
    (generated datasets keep the source's ids) | a real target image, side by side for a look."""
    from urbangen.datasets import open_dataset
    from urbangen.io import read_rgb
    from urbangen.labels import cityscapes19

    source = open_dataset("cityscapes", args.source)
    samples = source.index("train").samples[: args.n]
    datasets = [  # a list, not a dict: a root given twice is two columns
        (root, {s.id: s for s in open_dataset("cityscapes", root).index("train").samples}) for root in args.data
    ]
    rows = []
    for sample, real in zip(samples, real_images(args.real, args.n), strict=True):
        row = [cityscapes19().colorize(source.load_train_ids(sample)), read_rgb(sample.image)]
        for root, by_id in datasets:
            if sample.id not in by_id:
                raise SystemExit(f"{root}: no image for source map {sample.id}")
            row.append(read_rgb(by_id[sample.id].image))
        rows.append([*row, real])
    write_grid(args.out, rows)
    print(f"{args.out}: {len(rows)} rows of label | source | {' | '.join(map(str, args.data))} | real")
    return {"rows": len(rows), "columns": ["label", "source", *map(str, args.data), "real"]}


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "_one":
        base, stage, steps, batch, device, threads = sys.argv[2:8]
        print(json.dumps(speed_one(base, int(stage), int(steps), int(batch), device, int(threads) or None)))
        return
    from urbangen.labels import cityscapes19

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("speed", help="training steps/s and peak memory")
    p.add_argument("--bases", default="tiny,small")
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--device", default="cpu")
    p.add_argument("--threads", type=int)
    p.add_argument("--json", type=Path)
    p = sub.add_parser("demo", help="small-scale adaptation on world data")
    p.add_argument("--real", type=Path, required=True, help="real-style world dataset root (train split)")
    p.add_argument("--sim", type=Path, required=True, help="sim world dataset root (train split)")
    p.add_argument("--labels", type=Path, required=True, help="labels for the real train images (<id>.png)")
    p.add_argument("--config", type=Path, help="adapt YAML (target/labels_dir/out are set here); default SMALL")
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--segmenter", type=Path, help="a segmenter folder trained on real images")
    p.add_argument("--n", type=int, default=200)
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--grid", type=Path)
    p.add_argument("--threads", type=int)
    p.add_argument("--guidance", type=float, default=2.0)
    p.add_argument("--val", type=Path, help="real val root: train a tiny SegFormer on the renders, score it here")
    p.add_argument("--mix", type=Path, action="append", help="with --val: also train on this dataset root (train)")
    p.add_argument("--seg-iterations", type=int, default=1200)
    p = sub.add_parser("regenerate", help="generation what-if on a finished urbangen demo run")
    p.add_argument("--run", type=Path, required=True, help="OUT/workspace/kfp/<run> of a finished demo")
    p.add_argument("--out", type=Path, required=True)
    p.add_argument(
        "--set",
        action="append",
        help="a generate setting, KEY=JSON, dotted keys (repeatable): strength=0.5, engine.dtype='\"float32\"'",
    )
    p.add_argument("--scale", default="demo")
    p.add_argument("--seed", type=int, default=0, help="the run's --seed (generation seeds derive from it)")
    p.add_argument("--seg-iterations", type=int, default=800, help="the demo's own segmenter iterations")
    p.add_argument("--methods", default="urbangen,urbangen_nofilter", help="segmenters to train (comma list)")
    p.add_argument(
        "--scorer",
        help="the run's segmenter that scores MCOC (default: its pseudo-labeller, the demo's fda); e.g. oracle: "
        "what the filter does with a better segmenter",
    )
    p.add_argument(
        "--plain-scorer",
        action="store_true",
        help="score with the scorer's plain arg-max, not as the run's pseudo-labelling weighed it (before 2026-11-27)",
    )
    p.add_argument(
        "--candidates-from",
        type=Path,
        help="filter-only what-if on these candidates (RUN/for-loop-*/generate-shard/candidates, or OUT/candidates)",
    )
    p.add_argument("--readapt", action="store_true", help="adapt the generator anew (the run's adapt settings)")
    p.add_argument(
        "--pseudo-from",
        help="a second round: pseudo-label the target anew with this segmenter of the run (e.g. urbangen), adapt "
        "anew on those labels and score MCOC with it",
    )
    p.add_argument(
        "--adapt-set",
        action="append",
        help="adapt anew with this change, KEY=JSON with dotted keys, e.g. stage2.steps=3200 (repeatable)",
    )
    p.add_argument(
        "--device", help="adaptation, generation, MCOC scoring and segmenters there (default: as the config says)"
    )
    p.add_argument("--train-seeds", type=int, nargs="+", default=[0], help="segmenter training seeds")
    p.add_argument("--json", type=Path)
    p = sub.add_parser("bundle", help="a finished demo run's pseudo-labels, judge and world manifest, to travel")
    p.add_argument("--run", type=Path, required=True, help="OUT/workspace/kfp/<run> of a finished demo")
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--scale", default="demo")
    p.add_argument("--seed", type=int, default=0, help="the run's --seed")
    p.add_argument("--style-seed", type=int, default=1, help="the run's --style-seed")
    p.add_argument("--config", type=Path, help="the run's --config, if it had one")
    p.add_argument("--scorer", help="the run's MCOC judge (default: its pseudo-labeller, pseudo_label_from)")
    p = sub.add_parser("grid", help="label | source render | the same map in each dataset | a real image")
    p.add_argument("--source", type=Path, required=True, help="the source dataset root (labels and renders)")
    p.add_argument("--data", type=Path, action="append", required=True, help="a generated dataset root (repeatable)")
    p.add_argument("--real", type=Path, required=True, help="a real target dataset root (train split)")
    p.add_argument("--n", type=int, default=4)
    p.add_argument("--out", type=Path, required=True)
    p = sub.add_parser("worlds", help="remake a bundle's worlds from their seeds and check them against the run's")
    p.add_argument("--bundle", type=Path, required=True)
    p.add_argument("--tolerance", type=float, default=0.5, help="largest allowed change of an image's mean colour")
    p.add_argument("--json", type=Path)
    p = sub.add_parser("compose", help="candidate 0 of a finished demo run + the source render's detail")
    p.add_argument("--run", type=Path, required=True, help="OUT/workspace/kfp/<run> of a finished demo")
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--sigma", type=float, default=2.0, help="Gaussian sigma (px) of the split; 0: candidate only")
    p.add_argument(
        "--calibrate",
        nargs="?",
        const="pooled",
        choices=["pooled", "exemplar"],
        help="per class, match the target's pooled colour mean and std, or a random target image's",
    )
    p.add_argument("--candidates", type=int, default=1, help="use candidates 0..N-1 of every map")
    p.add_argument(
        "--base",
        choices=["candidate", "sim", "flat"],
        default="candidate",
        help="what is calibrated: the run's candidates, the source renders, or flat grey images",
    )
    p.add_argument("--train-seed", type=int, default=0, help="the segmenter's training seed")
    p.add_argument(
        "--labels",
        type=Path,
        help="target train labels (<id>.png) for the calibration; default: the run's pseudo-labels",
    )
    p.add_argument("--seg-iterations", type=int, default=800)
    p.add_argument("--json", type=Path)
    p = sub.add_parser("seeds", help="the demo segmenter on datasets with several training seeds (noise)")
    p.add_argument("--run", type=Path, help="OUT/workspace/kfp/<run> of a finished demo (its val set)")
    p.add_argument("--val", type=Path, help="or: a Cityscapes-layout root whose val split to score on")
    p.add_argument(
        "--data",
        action="append",
        required=True,
        help="Cityscapes-layout train dataset; A+B trains on both; target-pseudo: the run's target + pseudo-labels",
    )
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--seg-iterations", type=int, default=800)
    p.add_argument("--json", type=Path)
    p = sub.add_parser("scorers", help="do two scorings of the same candidates agree (best candidate, map MCOC)?")
    p.add_argument("--a", type=Path, required=True, help="a filter output folder (or its filter/manifest.jsonl)")
    p.add_argument("--b", type=Path, required=True, help="another scoring of the same candidates")
    p.add_argument("--json", type=Path)
    p = sub.add_parser("withdrawn", help="what rectification withdrew, per class, and what the segmenter saw there")
    p.add_argument("--data", type=Path, required=True, help="a filter output folder (RUN/filter-rectify/generated)")
    p.add_argument(
        "--cls", choices=cityscapes19().classes, help="with --grid: the class whose most-withdrawn maps to show"
    )
    p.add_argument("--grid", type=Path)
    p.add_argument("--rows", type=int, default=6)
    p.add_argument("--json", type=Path)
    p = sub.add_parser("pseudo", help="pseudo-label mIoU vs the target ground truth, with/without the spatial prior")
    p.add_argument("--run", type=Path, required=True, help="OUT/workspace/kfp/<run> of a finished demo")
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--weights", type=float, nargs="+", default=[0.0, 0.5, 1.0], help="prior weights (0: none)")
    p.add_argument("--segmenter", default="fda", help="the run's segmenter that labels (the demo's: fda)")
    p.add_argument("--class-balance", action="store_true", help="also fit class weights (pseudo_label.class_balance)")
    p.add_argument("--scale", default="demo", help="the preset whose pseudo_label thresholds to use")
    p.add_argument("--json", type=Path)
    p = sub.add_parser("ceiling", help="segmenter on real images blurred to the model resolution (a perfect generator)")
    p.add_argument("--real", type=Path, required=True, help="real-style world dataset root (train split)")
    p.add_argument("--labels", type=Path, required=True, help="labels for the real train images (<id>.png)")
    p.add_argument("--val", type=Path, required=True)
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--resolution", type=int, nargs=2, default=[64, 128], metavar=("H", "W"))
    p.add_argument("--seg-iterations", type=int, default=1200)
    args = parser.parse_args()
    commands = {
        "speed": speed,
        "demo": demo,
        "ceiling": ceiling,
        "regenerate": regenerate,
        "compose": compose,
        "seeds": seeds,
        "scorers": scorers,
        "pseudo": pseudo,
        "withdrawn": withdrawn,
        "bundle": bundle,
        "worlds": worlds,
        "grid": grid,
    }
    result = commands[args.command](args)
    if getattr(args, "json", None):
        args.json.write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
