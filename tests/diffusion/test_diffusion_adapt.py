"""Two-stage adaptation on a tiny from-scratch base: artefacts, bit-exact reload, exact resume, overfitting."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from conftest import make_target, tiny_config

from urbangen.diffusion.adapt import adapt
from urbangen.diffusion.artefacts import load_generator, read_meta, weights_digest
from urbangen.errors import UrbangenError
from urbangen.io import write_png


def test_stages_write_loadable_folders_with_metadata(adapted):
    for stage, parts in ((1, {"unet", "scheduler"}), (2, {"unet", "controlnet", "scheduler"})):
        folder = adapted / f"stage{stage}"
        assert parts <= {p.name for p in folder.iterdir() if p.is_dir()}
        meta = read_meta(folder)
        assert meta["stage"] == stage and meta["steps"] == 2
        assert meta["taxonomy"]["name"] == "cityscapes19" and meta["resolution"] == [32, 64]
        assert meta["data"]["images"] == 6 and len(meta["data"]["images_sha256"]) == 64
        assert meta["config"]["stage1"]["ema"] == 0.9
    spec = read_meta(adapted / "stage2")["conditioning"]
    assert (
        spec["channels"] == 20
        and spec["unknown_channel"] == 19
        and "labels_sha256" in read_meta(adapted / "stage2")["data"]
    )
    # the stage-2 UNet is the stage-1 UNet, untouched (frozen)
    unet1 = load_generator(adapted / "stage1")[0].unet.state_dict()
    unet2 = load_generator(adapted / "stage2")[0].unet.state_dict()
    assert all(torch.equal(unet1[k], unet2[k]) for k in unet1)


def test_reload_is_bit_exact_and_tampering_is_caught(adapted, tmp_path):
    import shutil

    folder = adapted / "stage2"
    modules, meta = load_generator(folder, verify=False)
    assert weights_digest(modules) == meta["weights_sha256"]
    copy = tmp_path / "copy"
    shutil.copytree(folder, copy)
    weights = copy / "controlnet" / "diffusion_pytorch_model.safetensors"
    data = bytearray(weights.read_bytes())
    data[-5] ^= 0xFF
    weights.write_bytes(bytes(data))
    with pytest.raises(UrbangenError, match="do not match the digest"):
        load_generator(copy)


def test_resume_reaches_the_same_weights_as_an_uninterrupted_run(target, tmp_path):
    """Batches cropped in the step (straight) or by two threads ahead of it (interrupted, whose checkpoints
    must hold the data RNG of the last batch trained, not of the batches in flight): the same weights."""
    steps = {"stage1": {"steps": 4}, "stage2": {"steps": 3}}
    adapt(tiny_config(*target, tmp_path / "straight", **steps))
    interrupted = tmp_path / "interrupted"
    ahead = {"data_workers": 2}
    adapt(tiny_config(*target, interrupted, stage1={"steps": 2, "checkpoint_every": 2}, **ahead), stage=1)
    adapt(tiny_config(*target, interrupted, stage1={"steps": 4}, stage2={"steps": 1}, **ahead))
    logs = []
    adapt(tiny_config(*target, interrupted, **steps, **ahead), on_log=logs.append)
    for stage in ("stage1", "stage2"):
        assert (
            read_meta(tmp_path / "straight" / stage)["weights_sha256"]
            == read_meta(interrupted / stage)["weights_sha256"]
        )
    assert [entry["step"] for entry in logs] == [3]  # only stage 2 ran again, from step 1
    assert set(logs[0]) == {"stage", "step", "loss", "steps_per_s"}


def test_a_checkpoint_or_folder_from_another_config_is_refused(target, tmp_path):
    adapt(tiny_config(*target, tmp_path, stage1={"steps": 1}), stage=1)
    with pytest.raises(UrbangenError, match="different configuration"):
        adapt(tiny_config(*target, tmp_path, stage1={"steps": 2, "lr": 5e-4}), stage=1)
    with pytest.raises(UrbangenError, match="different configuration"):
        adapt(tiny_config(*target, tmp_path, stage1={"steps": 1, "lr": 5e-4}), stage=1)
    with pytest.raises(UrbangenError, match="different stage-1 configuration"):
        adapt(tiny_config(*target, tmp_path, stage1={"steps": 1, "batch_size": 1}), stage=2)


def test_fixed_batch_overfits(target):
    """The stage-1 and stage-2 models, trained on one fixed batch (fixed noise and timesteps), drive the loss down."""
    from urbangen.diffusion import stage1, stage2
    from urbangen.diffusion.build import scratch_modules
    from urbangen.diffusion.data import TargetSet
    from urbangen.diffusion.train import diffusion_target

    cfg = tiny_config(*target, target[0].parent / "unused")
    data = TargetSet.load(cfg, (32, 64), labels=True, depth=False)
    batch = data.batch(np.random.default_rng(0), 4)
    modules = scratch_modules("tiny", ("target",), 0)
    gen = torch.Generator().manual_seed(0)
    x0 = modules.encode(batch["images"])
    noise = torch.randn(x0.shape, generator=gen)
    t = torch.tensor([100, 300, 500, 700])
    noisy, target_ = modules.scheduler.add_noise(x0, noise, t), diffusion_target(modules.scheduler, x0, noise, t)
    cond = stage2.make_cond_fn(cfg.stage2.model_copy(update={"cond_dropout": 0.0}))(batch, gen)

    def fit(model, steps=40):
        params = [p for p in model.parameters() if p.requires_grad]
        optimizer = torch.optim.AdamW(params, lr=3e-3)
        losses = []
        for _ in range(steps):
            loss = torch.nn.functional.mse_loss(model(noisy, t, batch["domain"], cond), target_)
            loss.backward()
            optimizer.step()
            optimizer.zero_grad()
            losses.append(loss.item())
        return losses

    losses1 = fit(stage1.prepare(modules, cfg.stage1))
    # stage 2 on a fresh (untrained, frozen) denoiser: only the control branch can lower the loss
    losses2 = fit(stage2.prepare(scratch_modules("tiny", ("target",), 1), cfg.stage2, seed=1))
    assert losses1[-1] < 0.5 * losses1[0]
    assert losses2[-1] < 0.75 * losses2[0]


def test_bad_data_is_reported(tmp_path):
    root, labels = make_target(tmp_path / "ds", n=3, depth=False)
    with pytest.raises(UrbangenError, match="depth is on but 3 target samples have no depth"):
        adapt(tiny_config(root, labels, tmp_path / "a", stage2={"depth": True}))
    (labels / "town_000001_000019.png").unlink()
    with pytest.raises(UrbangenError, match="1 of 3 target images have no pseudo-label"):
        adapt(tiny_config(root, labels, tmp_path / "b"), stage=None)
    bad = np.full((48, 96), 30, np.uint8)
    write_png(labels / "town_000001_000019.png", bad)
    with pytest.raises(UrbangenError, match="outside taxonomy"):
        adapt(tiny_config(root, labels, tmp_path / "c"))
    with pytest.raises(UrbangenError, match="divisible by 2"):
        adapt(tiny_config(root, labels, tmp_path / "d", resolution=(33, 64)))


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the refusal on a machine without CUDA")
def test_cuda_without_a_gpu_is_refused_not_run_on_the_cpu(target, tmp_path):
    with pytest.raises(UrbangenError, match="'cuda' requested but torch sees no CUDA device"):
        adapt(tiny_config(*target, tmp_path, device="cuda"), stage=1)
    assert not (tmp_path / "stage1").exists()


def test_depth_channel_and_controlnet_xs_refusal(target, tmp_path):
    out = tmp_path / "depth"
    adapt(tiny_config(*target, out, stage1={"steps": 1}, stage2={"steps": 1, "depth": True}))
    meta = json.loads((out / "stage2" / "urbangen.json").read_text())
    assert meta["conditioning"]["depth"] and meta["conditioning"]["channels"] == 21
    with pytest.raises(UrbangenError, match="controlnet_xs needs a 4-channel latent space"):
        adapt(tiny_config(*target, tmp_path / "xs", stage1={"steps": 1}, stage2={"control": "controlnet_xs"}))


@pytest.mark.parametrize("kind", ["epsilon", "v_prediction", "sample"])
def test_min_snr_weights_clip_each_timestep_at_gamma(kind):
    from diffusers import DDPMScheduler

    from urbangen.diffusion.train import min_snr_weights

    scheduler = DDPMScheduler(num_train_timesteps=1000, beta_schedule="squaredcos_cap_v2", prediction_type=kind)
    t = torch.tensor([0, 100, 300, 500, 700, 900, 999])
    alphas = scheduler.alphas_cumprod[t].double()
    snr = alphas / (1 - alphas)
    expected = {
        "epsilon": snr.clamp(max=5) / snr,
        "v_prediction": snr.clamp(max=5) / (snr + 1),
        "sample": snr.clamp(max=5),
    }
    weights = min_snr_weights(scheduler, t, 5.0)
    torch.testing.assert_close(weights.double(), expected[kind], rtol=1e-4, atol=1e-6)
    # an x0 loss keeps the nearly clean timesteps and quiets the noisiest ones, an epsilon loss the reverse,
    # a v loss peaks where SNR = gamma (weight gamma / (gamma + 1))
    if kind == "sample":
        assert weights[0] == 5 and weights[-1] < 0.01
    elif kind == "epsilon":
        assert weights[0] < 0.01 and weights[-1] == 1
    else:
        assert weights.max() <= 5 / 6 and weights[0] < 0.01 and weights[-1] < 0.01


def test_patch_and_min_snr_settings_reach_the_trained_generator(target, tmp_path):
    plain = adapt(tiny_config(*target, tmp_path / "plain", stage1={"steps": 2}), stage=1)["stage1"]
    tuned = adapt(tiny_config(*target, tmp_path / "tuned", stage1={"steps": 2, "snr_gamma": 5.0}, patch=2), stage=1)[
        "stage1"
    ]
    modules, meta = load_generator(tuned)
    assert meta["patch"] == 2 and modules.patch == 2 and modules.unet.config.in_channels == 12
    weighted = adapt(tiny_config(*target, tmp_path / "weighted", stage1={"steps": 2, "snr_gamma": 5.0}), stage=1)[
        "stage1"
    ]
    assert read_meta(weighted)["weights_sha256"] != read_meta(plain)["weights_sha256"]


@pytest.mark.parametrize("workers", [0, 3])
def test_batches_ahead_are_the_batches_in_order(target, workers):
    """Batches rendered by worker threads are those drawn one by one, each with the RNG state after it."""
    from urbangen.diffusion.data import Batches, TargetSet

    cfg = tiny_config(*target, target[0].parent / "unused")
    data = TargetSet.load(cfg, (32, 64), labels=True, depth=False)
    reference = np.random.default_rng(5)
    with Batches(data, np.random.default_rng(5), 3, workers) as batches:
        for _ in range(7):
            batch, state = batches.next()
            expected = data.batch(reference, 3)
            assert batch.keys() == expected.keys()
            assert all(torch.equal(batch[k], expected[k]) for k in batch)
            assert state == reference.bit_generator.state
