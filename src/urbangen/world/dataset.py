"""Write world scenes to disk in the Cityscapes layout (plus depth and a description of how it was made).

::

    OUT/leftImg8bit/<split>/<city>/<city>_<seq:06d>_000019_leftImg8bit.png   rendered image
    OUT/gtFine/<split>/<city>/<id>_gtFine_labelIds.png                        8-bit Cityscapes labelIds
    OUT/gtFine/<split>/<city>/<id>_gtFine_instanceIds.png                     16-bit, id*1000+k for things
    OUT/depth/<split>/<city>/<id>_depth.png                                   16-bit centimetres (clipped)
    OUT/world_<split>.json                                                    seeds, style, size, n, version

Scene ``i`` of a split uses a seed derived from (seed, split, i), so train and val never share a scene
and a scene does not depend on ``n``. Every file is written atomically and finished samples are skipped,
so an interrupted run resumes where it stopped; a rerun with other settings into the same folder is an
error rather than a silent mix.
"""

from __future__ import annotations

import json
import sys
import zlib
from pathlib import Path

import numpy as np

from urbangen import __version__
from urbangen.datasets.cityscapes import DEPTH_SUFFIX, IMAGE_SUFFIX, INSTANCE_SUFFIX, LABEL_SUFFIX
from urbangen.errors import UrbangenError
from urbangen.io import write_json_atomic, write_png
from urbangen.world.layout import check_size, make_scene

SPLITS = ("train", "val")
FORMAT_VERSION = 1  # bump when the same seeds would produce different pixels


def scene_seed(seed: int, split: str, index: int) -> int:
    """The seed of scene ``index`` of ``split``: independent of how many scenes are made."""
    sequence = np.random.SeedSequence([int(seed), zlib.crc32(split.encode()), int(index)])
    return int(sequence.generate_state(1, np.uint32)[0])


def sample_paths(out: Path, split: str, city: str, sample_id: str) -> dict[str, Path]:
    return {
        "image": out / "leftImg8bit" / split / city / f"{sample_id}{IMAGE_SUFFIX}",
        "label": out / "gtFine" / split / city / f"{sample_id}{LABEL_SUFFIX}",
        "instance": out / "gtFine" / split / city / f"{sample_id}{INSTANCE_SUFFIX}",
        "depth": out / "depth" / split / city / f"{sample_id}{DEPTH_SUFFIX}",
    }


def depth_centimetres(depth: np.ndarray) -> np.ndarray:
    """Metres to uint16 centimetres, clipped to 0..65535 (the sky and anything beyond 655 m saturate)."""
    return np.clip(np.round(depth * 100.0), 0, 65535).astype(np.uint16)


def _check_description(path: Path, settings: dict) -> None:
    if not path.is_file():
        return
    try:
        previous = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise UrbangenError(f"{path}: cannot read the description of an earlier run ({exc})") from exc
    keys = ("seed", "split", "style", "size", "city", "version")
    if settings["style"] == "real":  # sim looks the same whatever the style seed
        keys = (*keys, "style_seed")
    changed = [k for k in keys if previous.get(k) != settings[k]]
    if changed:
        details = ", ".join(f"{k}: {previous.get(k)!r} -> {settings[k]!r}" for k in changed)
        raise UrbangenError(
            f"{path.parent} already holds a world made with other settings ({details}); "
            "use another --out folder or delete it"
        )


def make_dataset(
    out: str | Path,
    split: str,
    n: int,
    seed: int,
    style: str,
    style_seed: int,
    size: tuple[int, int],
    city: str = "world",
    progress: bool = True,
) -> list[str]:
    """Write ``n`` scenes of ``split`` rendered in ``style`` to ``out``; returns the sample ids in order."""
    from tqdm import tqdm

    from urbangen.world.renderer import STYLES, render

    if split not in SPLITS:
        raise UrbangenError(f"unknown split {split!r}; expected one of {SPLITS}")
    if style not in STYLES:
        raise UrbangenError(f"unknown style {style!r}; expected one of {STYLES}")
    if n < 1:
        raise UrbangenError(f"n must be at least 1, got {n}")
    if not city or not city.isalnum():
        raise UrbangenError(f"city must be a non-empty alphanumeric name (no '_'), got {city!r}")
    height, width = check_size(size)
    out = Path(out)
    settings = {
        "generator": "urbangen.world",
        "urbangen": __version__,
        "version": FORMAT_VERSION,
        "split": split,
        "seed": int(seed),
        "style": style,
        "style_seed": int(style_seed) if style == "real" else None,  # sim has one fixed look
        "size": [height, width],
        "city": city,
        "depth": "uint16 centimetres along the optical axis, clipped at 65535 (sky)",
        "label_encoding": "Cityscapes labelIds; instanceIds: id*1000+k for things, labelId for stuff",
    }
    description = out / f"world_{split}.json"
    _check_description(description, settings)
    out.mkdir(parents=True, exist_ok=True)
    write_json_atomic(description, {**settings, "n": int(n), "complete": False})
    ids = [f"{city}_{i:06d}_000019" for i in range(n)]
    for i, sample_id in enumerate(tqdm(ids, desc=f"world {split} ({style})", file=sys.stderr, disable=not progress)):
        paths = sample_paths(out, split, city, sample_id)
        if all(p.is_file() for p in paths.values()):
            continue
        scene = make_scene(scene_seed(seed, split, i), (height, width))
        write_png(paths["label"], scene.label_ids)
        write_png(paths["instance"], scene.instance_ids.astype(np.uint16))
        write_png(paths["depth"], depth_centimetres(scene.depth))
        write_png(paths["image"], render(scene, style, style_seed))  # last: its presence marks a finished sample
    write_json_atomic(description, {**settings, "n": int(n), "complete": True})
    return ids
