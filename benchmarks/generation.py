"""Generation engine speed: the fast engine against the reference sampler and the stock diffusers
StableDiffusionControlNetPipeline, on the same model and inputs, in the same run.

Usage::

    python benchmarks/generation.py                         # GPU: SD1.5-size UNet + ControlNet, 512x1024
    python benchmarks/generation.py --tiny --device cpu     # smoke test (tiny model, 32x64, 2 steps)
    python benchmarks/generation.py --json out.json --update docs/BENCHMARKS.md
    python benchmarks/generation.py --render out.json --update docs/BENCHMARKS.md   # table of a saved run

The model is an SD1.5-size UNet (860M) with a ControlNet copied from it (361M) and the SD VAE, random
weights, built from config (nothing is downloaded); 512x1024 images (64x128 latents), classifier-free
guidance (two UNet + ControlNet passes per image and step), DDIM, 20 steps. Reported per configuration:
ms per image-step of the denoising loop, images/s with VAE decoding, achieved TFLOP/s in the loop (FLOPs
counted by ``torch.utils.flop_counter.FlopCounterMode`` on one step) and that as a fraction of the bf16
matmul throughput measured in the same run. ``--update`` rewrites only the "## Generation engine" section.
"""

from __future__ import annotations

import argparse
import datetime
import json
import platform
import re
import statistics
import sys
import time
from pathlib import Path

SECTION = "## Generation engine"


TINY_UNET = {
    "block_out_channels": (32, 64),
    "layers_per_block": 1,
    "cross_attention_dim": 32,
    "attention_head_dim": 4,
    "norm_num_groups": 8,
    "sample_size": 32,
    "down_block_types": ("CrossAttnDownBlock2D", "DownBlock2D"),
    "up_block_types": ("UpBlock2D", "CrossAttnUpBlock2D"),
}
TINY_VAE = {
    "block_out_channels": (32, 64),
    "norm_num_groups": 8,
    "layers_per_block": 1,
    "down_block_types": ("DownEncoderBlock2D",) * 2,
    "up_block_types": ("UpDecoderBlock2D",) * 2,
}
SD15_UNET = {  # Stable Diffusion 1.5's published UNet configuration (860M parameters)
    "block_out_channels": (320, 640, 1280, 1280),
    "layers_per_block": 2,
    "cross_attention_dim": 768,
    "attention_head_dim": 8,
    "sample_size": 64,
}
SD15_VAE = {
    "block_out_channels": (128, 256, 512, 512),
    "layers_per_block": 2,
    "sample_size": 512,
    "down_block_types": ("DownEncoderBlock2D",) * 4,
    "up_block_types": ("UpDecoderBlock2D",) * 4,
}


def build(tiny: bool, seed: int = 0, device: str = "cpu"):
    """(Modules, meta) of an SD1.5-size (or tiny) latent UNet + ControlNet + VAE with random weights.

    The weights are initialised on ``device`` (on a GPU that takes seconds, on a CPU about a minute for the
    SD1.5-size model)."""
    import torch

    torch.manual_seed(seed)
    with torch.device(device):
        return _build(tiny)


def _build(tiny: bool):
    import torch
    from diffusers import AutoencoderKL, ControlNetModel, DDPMScheduler, UNet2DConditionModel

    from urbangen.diffusion.build import Modules
    from urbangen.labels import cityscapes19

    unet = UNet2DConditionModel(in_channels=4, out_channels=4, **(TINY_UNET if tiny else SD15_UNET))
    embed = (16, 32) if tiny else (16, 32, 96, 256)
    control = ControlNetModel.from_unet(unet, conditioning_embedding_out_channels=embed, conditioning_channels=3)
    with torch.no_grad():  # a fresh ControlNet's zero convolutions would make the branch a no-op
        for p in control.parameters():
            if not p.abs().sum():
                p.normal_(0, 0.02)
    vae = AutoencoderKL(in_channels=3, out_channels=3, latent_channels=4, **(TINY_VAE if tiny else SD15_VAE))
    scheduler = DDPMScheduler(
        beta_schedule="scaled_linear", beta_start=0.00085, beta_end=0.012, clip_sample=False, steps_offset=1
    )
    tokens = 8 if tiny else 77
    states = torch.nn.Parameter(torch.randn(1, tokens, unet.config.cross_attention_dim), requires_grad=False)
    modules = Modules(unet, scheduler, states, ("target",), vae, control)
    meta = {
        "taxonomy": cityscapes19().to_dict(),
        "resolution": [32, 64] if tiny else [512, 1024],
        "weights_sha256": "random",
        "conditioning": {"num_classes": 2, "depth": False, "depth_near": 1.0},
        "sampling": {"guidance": 2.0},
    }
    return modules, meta


def sync(device: str) -> None:
    import torch

    if device.startswith("cuda"):
        torch.cuda.synchronize()


def timed(fn, device: str, repeats: int) -> float:
    """Median wall seconds of ``fn()`` over ``repeats`` runs (after the caller's warm-up)."""
    times = []
    for _ in range(repeats):
        sync(device)
        start = time.perf_counter()
        fn()
        sync(device)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def matmul_peak(device: str, dtype, n: int, repeats: int = 20) -> float:
    """Measured TFLOP/s of an n x n x n matmul in ``dtype`` (the run's own peak reference)."""
    import torch

    a = torch.randn(n, n, device=device, dtype=dtype)
    b = torch.randn(n, n, device=device, dtype=dtype)
    for _ in range(3):
        a @ b
    seconds = timed(lambda: [a @ b for _ in range(repeats)], device, 3)
    return 2 * n**3 * repeats / seconds / 1e12


def count_flops(fn) -> int:
    from torch.utils.flop_counter import FlopCounterMode

    with FlopCounterMode(display=False) as counter:
        fn()
    return counter.get_total_flops()


def reference_loop(gen, cond, seeds, size, steps, guidance):
    """The reference sampler's loop (``Generator.sample_batch`` without decoding)."""
    sched = gen.make_scheduler("ddim", steps)
    x = gen.initial_noise(seeds, size) * sched.init_noise_sigma
    for t in sched.timesteps:
        x = sched.step(gen.denoise(sched.scale_model_input(x, t), t, cond, guidance), t, x).prev_sample
    return x


def stock_pipeline(modules, device, dtype):
    from diffusers import DDIMScheduler, StableDiffusionControlNetPipeline

    pipe = StableDiffusionControlNetPipeline(
        vae=modules.vae,
        text_encoder=None,
        tokenizer=None,
        unet=modules.unet,
        controlnet=modules.control,
        scheduler=DDIMScheduler.from_config(modules.scheduler.config),
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )
    pipe.set_progress_bar_config(disable=True)
    return pipe.to(device, dtype)


def bench_config(loop, decode, batch: int, steps: int, device: str, repeats: int, warmup: int) -> dict:
    """Time the denoising loop and the decoding of its result separately (medians over ``repeats``)."""
    for _ in range(warmup):
        decode(loop())
    loop_s = timed(loop, device, repeats)
    latents = loop()
    decode_s = timed(lambda: decode(latents), device, repeats)
    return {
        "batch": batch,
        "loop_s": loop_s,
        "decode_s": decode_s,
        "ms_per_image_step": 1000 * loop_s / (batch * steps),
        "images_per_s": batch / (loop_s + decode_s),
    }


def bench_batch(batch: int, args, reference, fast: dict, pipe, size, dtype, peak: float, out: dict) -> None:
    """Every configuration at one batch size, appending rows to ``out["results"]`` as they finish.

    A configuration that fails is recorded with its error and the run goes on; once ``args.deadline``
    seconds have passed since the start the remaining configurations are skipped (recorded as such).
    """
    import torch

    cuda, steps, guidance = args.device.startswith("cuda"), args.steps, args.guidance
    seeds = list(range(batch))
    cond = torch.randint(0, 2, (batch, 3, *size), generator=torch.Generator().manual_seed(0))
    cond = cond.to(args.device, dtype)
    eager = fast["engine eager"]
    module, control_in, states = eager.step_inputs(cond, batch, guidance)
    factor = reference.modules.factor
    x = torch.randn(batch, 4, size[0] // factor, size[1] // factor, device=args.device, dtype=dtype)
    t = torch.tensor(500, device=args.device)
    with torch.inference_mode():
        step_flops = count_flops(lambda: module(x, t, control_in, states)) / batch
        out["tflop_per_image_step"][batch] = step_flops / 1e12
        out["vae_decode_tflop"] = count_flops(lambda: reference.decode(x[:1].float())) / 1e12
    embeds = states[:1].expand(batch, -1, -1)

    def stock_loop():
        return pipe(
            prompt_embeds=embeds,
            negative_prompt_embeds=torch.zeros_like(embeds),
            image=cond if cuda else cond.float(),
            height=size[0],
            width=size[1],
            num_inference_steps=steps,
            guidance_scale=guidance,
            output_type="latent",
            generator=[torch.Generator().manual_seed(s) for s in seeds],
        ).images

    def stock_decode(latents):
        return pipe.vae.decode(latents / pipe.vae.config.scaling_factor).sample

    configs = {"stock diffusers pipeline": (stock_loop, stock_decode)}
    compiled = batch in args.compile_batches
    for name, gen in fast.items():
        if compiled or "compile" not in name:
            configs[name] = (lambda g=gen: g.denoise_loop(cond, seeds, size, steps, guidance, "ddim"), gen.decode)
    configs["reference sampler"] = (
        lambda: reference_loop(reference, cond, seeds, size, steps, guidance),
        reference.decode,
    )
    for name, (loop, decode) in configs.items():
        row = {"config": name, "batch": batch}
        if time.perf_counter() - args.started > args.deadline:
            row["error"] = f"skipped: past the {args.deadline:.0f} s deadline"
        else:
            began = time.perf_counter()
            try:
                warmup = 3 if "compile" in name else 1
                with torch.inference_mode():
                    row.update(bench_config(loop, decode, batch, steps, args.device, args.repeats, warmup))
                row["tflops"] = step_flops * batch * steps / row["loop_s"] / 1e12
                row["peak_fraction"] = row["tflops"] / peak
            except Exception as exc:  # one failing configuration must not lose the others
                row["error"] = f"{type(exc).__name__}: {exc}"[:500]
            row["wall_s"] = time.perf_counter() - began
        out["results"].append(row)
        print(json.dumps(row), flush=True)
        if args.json:  # after every configuration, so a run cut short keeps what it measured
            args.json.write_text(json.dumps(out, indent=2))


def speedups(results: list[dict]) -> None:
    """Add ``x_stock`` (images/s over the stock pipeline's at the same batch) and ``x_stock1`` (over the
    stock pipeline's at one image per call, how the pipeline is usually called) to every measured row."""
    stock = {r["batch"]: r["images_per_s"] for r in results if r["config"].startswith("stock") and "error" not in r}
    for r in results:
        if "error" not in r:
            r["x_stock"] = r["images_per_s"] / stock[r["batch"]] if r["batch"] in stock else None
            r["x_stock1"] = r["images_per_s"] / stock[1] if 1 in stock else None


def main(argv: list[str] | None = None) -> dict:
    import copy

    import torch

    from urbangen.diffusion.sampler import Generator
    from urbangen.generate.config import EngineConfig
    from urbangen.generate.engine import FastGenerator

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--tiny", action="store_true", help="tiny model at 32x64 (smoke test)")
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--steps", type=int, default=None, help="default 20 (2 with --tiny)")
    parser.add_argument("--batches", default=None, help="images per loop, e.g. 8,1 (default 8,4,1; 2,1 tiny)")
    parser.add_argument(
        "--compile-batches",
        default=None,
        help="batches that also run the compiled engine configs (each batch size compiles anew; default: the largest)",
    )
    parser.add_argument("--guidance", type=float, default=2.0)
    parser.add_argument("--repeats", type=int, default=None, help="timed runs per config (default 3; 1 tiny)")
    parser.add_argument("--no-compile", action="store_true", help="skip the torch.compile / CUDA graph configs")
    parser.add_argument(
        "--deadline",
        type=float,
        default=float("inf"),
        help="seconds after which remaining configurations are skipped (the table still prints)",
    )
    parser.add_argument("--json", type=Path, default=None, help="write the results here (after every config)")
    parser.add_argument("--update", type=Path, default=None, help="rewrite the Generation engine section here")
    parser.add_argument(
        "--render",
        type=Path,
        default=None,
        help="measure nothing: print (and --update with) the table of this saved --json file",
    )
    args = parser.parse_args(argv)
    if args.render:
        report = json.loads(args.render.read_text())
        speedups(report["results"])
        print(markdown(report))
        if args.update:
            update_section(args.update, markdown(report))
        return report
    args.started = time.perf_counter()
    cuda = args.device.startswith("cuda")
    dtype = torch.bfloat16 if cuda else torch.float32
    args.steps = args.steps or (2 if args.tiny else 20)
    args.repeats = args.repeats or (1 if args.tiny else 3)
    batches = [int(b) for b in (args.batches or ("2,1" if args.tiny else "8,4,1")).split(",")]
    args.compile_batches = [int(b) for b in args.compile_batches.split(",")] if args.compile_batches else [max(batches)]
    size = (32, 64) if args.tiny else (512, 1024)

    modules, meta = build(args.tiny, device=args.device)
    engine_modules = copy.deepcopy(modules)  # same weights; the engine converts its copy in place
    reference = Generator(modules, meta, args.device, dtype)  # shared with the stock pipeline, left as built
    engine_base = Generator(engine_modules, meta, args.device, dtype)
    engines = {"engine eager": EngineConfig(kind="fast", device=args.device)}
    if cuda and not args.no_compile:
        engines["engine compile+graphs"] = EngineConfig(kind="fast", device=args.device, compile=True, cuda_graphs=True)
        engines["engine compile"] = EngineConfig(kind="fast", device=args.device, compile=True)
    fast = {name: FastGenerator(engine_base, cfg) for name, cfg in engines.items()}
    pipe = stock_pipeline(modules, args.device, dtype)
    report = {
        "device": torch.cuda.get_device_name()
        if cuda
        else f"CPU {platform.machine()}, {torch.get_num_threads()} threads",
        "dtype": str(dtype).replace("torch.", ""),
        "tiny": args.tiny,
        "size": list(size),
        "steps": args.steps,
        "guidance": args.guidance,
        "matmul_peak_tflops": matmul_peak(args.device, dtype, 8192 if cuda else 1024),
        "tflop_per_image_step": {},
        "vae_decode_tflop": 0.0,
        "date": datetime.date.today().isoformat(),
        "command": " ".join(["python benchmarks/generation.py", *(argv if argv is not None else sys.argv[1:])]),
        "torch": torch.__version__,
        "results": [],
    }
    for batch in batches:
        bench_batch(batch, args, reference, fast, pipe, size, dtype, report["matmul_peak_tflops"], report)
    speedups(report["results"])
    table = markdown(report)
    print(table)
    if args.json:
        args.json.write_text(json.dumps(report, indent=2))
    if args.update:
        update_section(args.update, table)
    return report


def markdown(report: dict) -> str:
    """The results as a markdown table with the run's settings above it."""
    lines = [
        f"Command: `{report['command']}`  ",
        f"Device: {report['device']} ({report['dtype']}), torch {report['torch']}, {report['date']}. "
        f"Image {report['size'][0]}x{report['size'][1]}, {report['steps']} DDIM steps, guidance "
        f"{report['guidance']}; measured matmul peak {report['matmul_peak_tflops']:.3g} TFLOP/s; "
        f"{max(report['tflop_per_image_step'].values()):.3g} TFLOP per image-step (FlopCounterMode); "
        f"VAE decode {report['vae_decode_tflop']:.3g} TFLOP per image.",
        "",
        "| config | images per loop | ms per image-step | images/s (with decode) | TFLOP/s (loop) | of peak "
        "| x stock (same batch) | x stock (1 image) |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    ratio = lambda x: "" if x is None else f"{x:.2f}"  # noqa: E731
    for r in report["results"]:
        if "error" in r:
            lines.append(f"| {r['config']} | {r['batch']} | {r['error']} | | | | | |")
            continue
        lines.append(
            f"| {r['config']} | {r['batch']} | {r['ms_per_image_step']:.2f} | {r['images_per_s']:.3f} | "
            f"{r['tflops']:.3g} | {r['peak_fraction']:.1%} | {ratio(r.get('x_stock'))} | {ratio(r.get('x_stock1'))} |"
        )
    return "\n".join(lines)


def update_section(path: Path, body: str) -> None:
    """Replace the body of the "## Generation engine" section of ``path`` (create the section if absent)."""
    text = path.read_text() if path.is_file() else "# Benchmarks\n"
    block = f"{SECTION}\n\n{body}\n"
    pattern = re.compile(rf"^{re.escape(SECTION)}\n.*?(?=^## |\Z)", re.S | re.M)
    text = pattern.sub(lambda _: block + "\n", text) if pattern.search(text) else text.rstrip() + "\n\n" + block
    path.write_text(text)


if __name__ == "__main__":
    main()
