"""ONNX export parity: how closely onnxruntime reproduces PyTorch, per graph and per finished image.

Usage::

    python benchmarks/export_parity.py --work /tmp/parity                     # tiny + small, pixel + latent
    python benchmarks/export_parity.py --work /tmp/parity --update docs/BENCHMARKS.md

For each configuration a random-weight stage-2 generator is built from config
(:func:`urbangen.export.synthetic.random_generator`: scratch UNet, perturbed ControlNet, depth channel;
``latent`` adds a 4-channel UNet and a tiny VAE), exported with ``urbangen export --format onnx`` (opset
17, float32), and compared with the PyTorch reference on CPU:

* ``denoise``: max |onnxruntime - torch| of the fused control + UNet + guidance step on seeded inputs at
  batch 1, 2 and 4, absolute and relative to max |torch output|;
* ``decoder``: the same for the VAE decoder (latent generators);
* ``images``: ``generate`` on both backends for 4 label maps (seeds 0..3, 20 DDIM steps, guidance 2):
  the largest difference in grey levels, the fraction of differing uint8 values and the PSNR;
* ``ms/step``: mean wall time of one denoise call at batch 2 (one image with guidance) on each backend.

``--update FILE`` rewrites only the "## Export parity" section of FILE.
"""

from __future__ import annotations

import argparse
import datetime
import json
import platform
import re
import time
from pathlib import Path

SECTION = "## Export parity"
CONFIGS = {"tiny-pixel": ("tiny", False), "tiny-latent": ("tiny", True), "small-pixel": ("small", False)}


def graph_parity(generator, bundle: Path) -> dict:
    import numpy as np
    import torch

    from urbangen.export.onnx import Decoder, DenoiseStep, ort_session, probe_inputs

    result = {}
    step = DenoiseStep(generator).eval()
    session = ort_session(bundle / "onnx" / "denoise.onnx")
    decoder = Decoder(generator.vae).eval() if generator.vae is not None else None
    decoder_session = ort_session(bundle / "onnx" / "vae_decoder.onnx") if decoder is not None else None
    worst = {"denoise": (0.0, 0.0), "decoder": (0.0, 0.0)}
    for batch in (1, 2, 4):
        probe = probe_inputs(generator, batch, seed=batch)
        feed = {i.name: probe[i.name].numpy() for i in session.get_inputs()}
        with torch.no_grad():
            reference = step(*(probe.get(n) for n in ("sample", "timestep", "cond", "guidance", "domain"))).numpy()
            pairs = [("denoise", session.run(None, feed)[0], reference)]
            if decoder is not None:
                decoded = decoder(probe["sample"]).numpy()
                pairs.append(("decoder", decoder_session.run(None, {"latents": feed["sample"]})[0], decoded))
        for name, got, want in pairs:
            diff = float(np.abs(got - want).max())
            worst[name] = max(worst[name], (diff, diff / float(np.abs(want).max())))
    result["denoise_max_abs"], result["denoise_max_rel"] = worst["denoise"]
    if decoder is not None:
        result["decoder_max_abs"], result["decoder_max_rel"] = worst["decoder"]
    return result


def image_parity(bundle: Path, steps: int) -> dict:
    import numpy as np

    from urbangen.export.runtime import RuntimeConfig, load_runtime

    reference = load_runtime(bundle)
    exported = load_runtime(bundle, RuntimeConfig(backend="onnxruntime"))
    height, width = reference.resolution
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 19, (4, height, width)).astype(np.uint8)
    depth = (rng.random((4, height, width)) * 50 + 1).astype(np.float32)
    kwargs = {"depth": depth, "steps": steps, "guidance": 2.0, "scheduler": "ddim"}
    a = reference.generate(labels, [0, 1, 2, 3], **kwargs).astype(np.float64)
    b = exported.generate(labels, [0, 1, 2, 3], **kwargs).astype(np.float64)
    mse = float(((a - b) ** 2).mean())
    return {
        "image_max_levels": int(np.abs(a - b).max()),
        "image_frac_differing": float((a != b).mean()),
        "image_psnr_db": float("inf") if mse == 0 else 10 * np.log10(255**2 / mse),
        "ms_per_step_torch": _step_ms(reference),
        "ms_per_step_onnxruntime": _step_ms(exported),
    }


def _step_ms(runtime, repeats: int = 10) -> float:
    import numpy as np
    import torch

    height, width = runtime.resolution
    labels = np.zeros((1, height, width), np.uint8)
    cond = runtime.condition(labels, np.ones((1, height, width), np.float32))
    sample = runtime.initial_noise([0], (height, width))
    with torch.inference_mode():
        runtime.denoise(sample, 500, cond, 2.0)  # warm-up
        started = time.perf_counter()
        for _ in range(repeats):
            runtime.denoise(sample, 500, cond, 2.0)
    return (time.perf_counter() - started) / repeats * 1000


def measure(work: Path, name: str, steps: int) -> dict:
    from urbangen.diffusion.sampler import Generator
    from urbangen.export.bundle import export_generator
    from urbangen.export.synthetic import random_generator

    base, latent = CONFIGS[name]
    source = work / name / "generator"
    if not (source / "urbangen.json").is_file():
        random_generator(source, base=base, latent=latent, depth=True, seed=0)
    bundle = work / name / "bundle"
    started = time.perf_counter()
    export_generator(source, bundle, "onnx")
    export_s = time.perf_counter() - started
    generator = Generator.from_pretrained(bundle)
    params = sum(p.numel() for m in (generator.unet, generator.controlnet, generator.vae) if m for p in m.parameters())
    return {
        "config": name,
        "resolution": list(generator.resolution),
        "parameters_M": round(params / 1e6, 2),
        "export_s": round(export_s, 1),
        **graph_parity(generator, bundle),
        **image_parity(bundle, steps),
    }


def markdown(results: list[dict], command: str) -> str:
    lines = [
        SECTION,
        "",
        f"Command: `{command}`  ",
        f"Machine: {platform.machine()} CPU (one thread; a shared 2-core machine, so timings are indicative), "
        "onnxruntime CPU provider, float32, opset 17. "
        f"Date: {datetime.date.today()}.  ",
        "Random-weight generators built from config (scratch UNet + perturbed ControlNet + depth; `latent` "
        + "adds a tiny VAE; `small` folds 4x4 pixel patches into channels, as the built-in base does); `denoise` "
        + "is the fused control + UNet + guidance graph, max over batch 1/2/4; images: 4 label maps, 20 DDIM "
        + "steps, guidance 2, same seeds on both backends. The export refuses a graph whose max abs difference "
        + "exceeds 1e-4.",
        "",
        "| config | HxW | params (M) | denoise max abs | denoise max rel | decoder max abs | image max diff "
        "(levels) | fraction of values differing | PSNR (dB) | ms/step torch | ms/step onnxruntime |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in results:
        decoder = f"{r['decoder_max_abs']:.1e}" if "decoder_max_abs" in r else "-"
        psnr = "inf" if r["image_psnr_db"] == float("inf") else f"{r['image_psnr_db']:.1f}"
        lines.append(
            f"| {r['config']} | {r['resolution'][0]}x{r['resolution'][1]} | {r['parameters_M']} | "
            f"{r['denoise_max_abs']:.1e} | {r['denoise_max_rel']:.1e} | {decoder} | {r['image_max_levels']} | "
            f"{r['image_frac_differing']:.1e} | {psnr} | {r['ms_per_step_torch']:.1f} | "
            f"{r['ms_per_step_onnxruntime']:.1f} |"
        )
    return "\n".join(lines) + "\n"


def update_section(path: Path, text: str) -> None:
    """Replace the ``## Export parity`` section of ``path`` (up to the next ``## ``), or append it."""
    from urbangen.io import write_text_atomic

    current = path.read_text() if path.is_file() else "# Benchmarks\n"
    pattern = re.compile(rf"^{re.escape(SECTION)}\n.*?(?=^## |\Z)", re.S | re.M)
    if pattern.search(current):
        updated = pattern.sub(lambda _: text + "\n", current, count=1)
    else:
        updated = current.rstrip("\n") + "\n\n" + text
    write_text_atomic(path, updated.rstrip("\n") + "\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--work", type=Path, required=True, help="folder for generators and exports (reused)")
    parser.add_argument("--configs", default=",".join(CONFIGS), help=f"comma-separated subset of {list(CONFIGS)}")
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--json", type=Path, default=None, help="also write the results here")
    parser.add_argument("--update", type=Path, default=None, help="rewrite the section in this Markdown file")
    args = parser.parse_args()
    import torch

    torch.set_num_threads(1)  # comparable timings on a shared machine
    results = [measure(args.work, name, args.steps) for name in args.configs.split(",")]
    print(json.dumps(results, indent=2))
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n")
    if args.update:
        command = "python benchmarks/export_parity.py --work /tmp/parity --update docs/BENCHMARKS.md"
        update_section(args.update, markdown(results, command))


if __name__ == "__main__":
    main()
