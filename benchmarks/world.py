"""World generation speed on one core: scenes per second for the layout and each renderer.

Usage::

    python benchmarks/world.py [--n 20] [--sizes 256x512,512x1024] [--update docs/BENCHMARKS.md]

Threads are pinned to one before numpy loads. Times are CPU seconds of this process (``process_time``),
so other work on a shared machine does not inflate them; wall-clock figures are printed beside them.
``--update`` writes the table into the "## World generation" section of the given markdown file,
replacing only that section.
"""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMEXPR_NUM_THREADS"):
    os.environ[_var] = "1"

import argparse  # noqa: E402
import datetime  # noqa: E402
import platform  # noqa: E402
import re  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

SECTION = "## World generation"


def measure(n: int, size: tuple[int, int]) -> dict[str, tuple[float, float]]:
    """Per stage: (CPU seconds per scene, wall seconds per scene) over ``n`` scenes."""
    from urbangen.world import make_scene, render

    render(make_scene(10_000, size), "real", 0)  # warm caches and imports
    stages = {
        "layout": lambda i: make_scene(i, size),
        "render sim": lambda i: render(scenes[i], "sim"),
        "render real": lambda i: render(scenes[i], "real", 1),
    }
    scenes = [make_scene(i, size) for i in range(n)]
    out = {}
    for name, fn in stages.items():
        cpu, wall = time.process_time(), time.perf_counter()
        for i in range(n):
            fn(i)
        out[name] = ((time.process_time() - cpu) / n, (time.perf_counter() - wall) / n)
    layout, sim, real = out["layout"], out["render sim"], out["render real"]
    out["scene + sim"] = tuple(a + b for a, b in zip(layout, sim, strict=True))
    out["scene + real"] = tuple(a + b for a, b in zip(layout, real, strict=True))
    return out


def table(results: dict[str, dict[str, tuple[float, float]]]) -> str:
    lines = [
        "| size (HxW) | stage | ms per scene (CPU) | scenes/s (CPU) | ms per scene (wall) |",
        "|---|---|---:|---:|---:|",
    ]
    for size, stages in results.items():
        for name, (cpu, wall) in stages.items():
            lines.append(f"| {size} | {name} | {cpu * 1e3:.1f} | {1 / cpu:.1f} | {wall * 1e3:.1f} |")
    return "\n".join(lines)


def update(path: Path, body: str) -> None:
    """Replace (or append) the world section of ``path``, leaving every other section as it is."""
    from urbangen.io import write_text_atomic

    text = path.read_text() if path.is_file() else "# Benchmarks\n"
    section = f"{SECTION}\n\n{body.strip()}\n"
    pattern = re.compile(rf"^{re.escape(SECTION)}\n.*?(?=^## |\Z)", re.S | re.M)
    if pattern.search(text):
        text = pattern.sub(lambda _: section + "\n", text, count=1).rstrip() + "\n"
    else:
        text = text.rstrip() + "\n\n" + section
    write_text_atomic(path, text)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=20, help="scenes per size")
    parser.add_argument("--sizes", default="256x512,512x1024")
    parser.add_argument("--update", type=Path, help="markdown file whose world section to rewrite")
    parser.add_argument("--machine", default=f"{os.cpu_count()}-core CPU, {platform.machine()}")
    args = parser.parse_args()
    results = {}
    for text in args.sizes.split(","):
        height, width = (int(v) for v in text.split("x"))
        results[text] = measure(args.n, (height, width))
        print(f"{text}: done", file=sys.stderr)
    body = table(results)
    print(body)
    if args.update:
        command = f"python benchmarks/world.py --n {args.n} --sizes {args.sizes}"
        notes = (
            f"Command: `{command}` (one thread; CPU time of the process).  \n"
            f"Machine: {args.machine}. Date: {datetime.date.today().isoformat()}.  \n"
            "`layout` is `make_scene` (labels, instances, depth); the renderers take a ready scene; "
            "`real` uses style seed 1. Writing PNGs (`world make`) adds file encoding on top."
        )
        update(args.update, f"{notes}\n\n{body}")


if __name__ == "__main__":
    main()
