"""A pretrained base generator for the built-in benchmark: the stand-in for a Stable Diffusion checkpoint.

urbangen adapts a *pretrained* diffusion model to a target domain. On a GPU that model is Stable Diffusion,
whose prior of photographs is what makes a few thousand adaptation steps enough. The CPU benchmark has no such
checkpoint (nothing is downloaded), and a denoiser trained from scratch in a few CPU minutes only draws blurs.
This module builds the missing prior the same way, from data the benchmark never evaluates on: world scenes
rendered by the ``real`` renderer in many *other* style seeds (by default 1000-1047; the benchmark's targets use
small style seeds), learned by stage 1 of ``adapt`` (unconditional, appearance only; no labels are read).

Experimental: the demo does not use it (a base after 2750 of the default 12000 steps gave no gain over
the from-scratch base; docs/BENCHMARKS.md). ``urbangen world pretrain-base --out DIR`` writes a generator
folder usable as ``base:`` of an adapt config; reruns resume from the last checkpoint. The result is
deterministic for its settings, recorded in its ``urbangen.json`` (config, data digests, steps).
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any

from urbangen.errors import UrbangenError

DEFAULT_STYLES = tuple(range(1000, 1048))
STAGE1 = {"steps": 12000, "batch_size": 8, "lr": 2e-3, "warmup": 100, "ema": 0.999, "checkpoint_every": 250}


def style_scenes(work: Path, styles: tuple[int, ...], n_per_style: int, size: tuple[int, int], seed: int) -> Path:
    """Render ``n_per_style`` scenes per style seed and gather them (hard links) in one Cityscapes root."""
    from urbangen.world.dataset import make_dataset

    root = work / "data"
    for style in styles:
        city = f"style{style}"
        part = work / "styles" / city
        make_dataset(part, "train", n_per_style, seed + style, "real", style, size, city=city, progress=False)
        target = root / "leftImg8bit" / "train" / city
        target.mkdir(parents=True, exist_ok=True)
        for image in sorted((part / "leftImg8bit" / "train" / city).glob("*.png")):
            link = target / image.name
            if not link.exists():
                try:
                    os.link(image, link)
                except OSError:  # another file system: copy
                    shutil.copy2(image, link)
    return root


def pretrain_base(
    out: str | Path,
    work: str | Path,
    styles: tuple[int, ...] = DEFAULT_STYLES,
    n_per_style: int = 25,
    size: tuple[int, int] = (128, 256),
    steps: int | None = None,
    seed: int = 1000,
    threads: int | None = None,
    on_log: Any = None,
) -> Path:
    """Render the style scenes, train stage 1 of the ``small`` base on them, copy the result to ``out``."""
    from urbangen.config import validate
    from urbangen.diffusion.adapt import adapt
    from urbangen.diffusion.artefacts import replace_dir, temp_dir
    from urbangen.diffusion.config import AdaptConfig

    if not styles:
        raise UrbangenError("at least one style seed is needed")
    out, work = Path(out), Path(work)
    root = style_scenes(work, tuple(styles), n_per_style, size, seed)
    stage1 = {**STAGE1, **({"steps": steps} if steps is not None else {})}
    cfg = validate(
        AdaptConfig,
        {
            "base": "small",
            "target": {"format": "cityscapes", "root": str(root), "split": "train"},
            "domains": {"world": "a photo of a city street"},
            "stage1": stage1,
            "out": str(work / "adapt"),
            "seed": seed,
            "threads": threads,
        },
        "pretrain-base settings",
    )
    folder = adapt(cfg, stage=1, on_log=on_log)["stage1"]
    tmp = temp_dir(out)
    shutil.rmtree(tmp)
    shutil.copytree(folder, tmp)
    replace_dir(tmp, out)
    return out
