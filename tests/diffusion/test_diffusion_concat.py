"""Concat control: a zero-initialised copy of the denoiser that reads the label map as input channels."""

from __future__ import annotations

import numpy as np
import torch
from conftest import scene, tiny_config

from urbangen.diffusion.adapt import adapt
from urbangen.diffusion.artefacts import load_generator, read_meta
from urbangen.diffusion.build import fused_control, make_control, scratch_modules
from urbangen.diffusion.concat import ConcatControlModel
from urbangen.diffusion.sampler import Generator


def test_starts_as_the_stage1_denoiser_and_then_reads_the_condition():
    modules = scratch_modules("small", ("target",), 0, block_out_channels=(16, 32, 32))
    control = make_control(modules, "concat", 20, seed=1)
    assert isinstance(control, ConcatControlModel) and fused_control(control)
    assert control.unet.conv_in.in_channels == 3 * 4**2 + 20 * 4**2  # the condition folded like the image
    x = torch.randn(2, 48, 16, 32)
    t = torch.tensor([10, 900])
    states = modules.domain_embedding[[0, 0]].detach()
    cond = torch.nn.functional.one_hot(torch.randint(0, 20, (2, 64, 128)), 20).permute(0, 3, 1, 2).float()
    with torch.no_grad():
        want = modules.unet(x, t, states).sample
        torch.testing.assert_close(control(x, t, states, controlnet_cond=cond).sample, want, rtol=0, atol=1e-5)
        control.unet.conv_in.weight[:, 48:] += 0.1
        changed = control(x, t, states, controlnet_cond=cond).sample
    assert (changed - want).abs().mean() > 1e-3


def test_adapt_with_concat_trains_the_copy_saves_and_samples(target, tmp_path):
    out = tmp_path / "concat"
    cfg = tiny_config(*target, out, stage2={"control": "concat", "steps": 3})
    adapt(cfg)
    meta = read_meta(out / "stage2")
    assert meta["control"] == "concat"
    modules, _ = load_generator(out / "stage2")  # digest verified on load
    stage1 = load_generator(out / "stage1")[0].unet.state_dict()
    trained = modules.control.unet.state_dict()
    assert isinstance(modules.control, ConcatControlModel)
    # fine-tuned whole: the new input weights moved off zero and the copied weights moved off stage 1
    assert trained["conv_in.weight"][:, 3:].abs().sum() > 0
    assert not torch.equal(trained["conv_out.weight"], stage1["conv_out.weight"])
    generator = Generator.from_pretrained(out / "stage2")
    labels = np.stack([scene(i)[1] for i in range(2)])
    a = generator.generate(labels, [1, 2], steps=2, batch_size=2)
    b = generator.generate(labels, [1, 2], steps=2, batch_size=1)
    assert a.shape == (2, 48, 96, 3) and np.array_equal(a, b)
