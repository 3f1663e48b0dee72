"""Training: CPU determinism, learning, exact resume, config checks, the CLI."""

from __future__ import annotations

import pytest
import torch
import yaml
from click.testing import CliRunner
from safetensors.torch import load_file

from urbangen.cli import main
from urbangen.errors import UrbangenError
from urbangen.segment.data import DataSource, RareClassSampler, TrainItems, class_counts, open_source
from urbangen.segment.train import TrainConfig, lr_factor, side_by_side, train, train_seeds


def _cfg(root, **kw) -> TrainConfig:
    base = {
        "sources": [DataSource(root=root, split="train")],
        "crop_size": (48, 48),
        "scale_range": (0.75, 1.25),
        "iterations": 4,
        "batch_size": 2,
        "lr": 1e-3,
        "warmup_iters": 1,
        "num_workers": 0,
        "checkpoint_every": 2,
        "log_every": 1,
        "progress": False,
        "threads": 1,
    }
    return TrainConfig(**{**base, **kw})


def _weights(run):
    return load_file(run / "model" / "model.safetensors")


def test_deterministic_and_exact_resume(toy_root, tmp_path):
    cfg = _cfg(toy_root)
    logs = []
    train(cfg, tmp_path / "a", on_log=logs.append)
    assert [entry["step"] for entry in logs] == [1, 2, 3, 4]
    assert set(logs[0]) == {"step", "loss", "lr", "images_per_s"}
    train(cfg, tmp_path / "b")
    a, b = _weights(tmp_path / "a"), _weights(tmp_path / "b")
    assert all(torch.equal(a[k], b[k]) for k in a)  # same seed, same weights

    def crash(entry):
        if entry["step"] == 3:  # after the checkpoint at step 2
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train(cfg, tmp_path / "c", on_log=crash)
    assert not (tmp_path / "c" / "model").exists()
    train(cfg, tmp_path / "c")
    c = _weights(tmp_path / "c")
    assert all(torch.equal(a[k], c[k]) for k in a)  # resumed == uninterrupted
    other = _weights(tmp_path / "a")
    train(_cfg(toy_root, seed=1), tmp_path / "d")
    assert not all(torch.equal(other[k], v) for k, v in _weights(tmp_path / "d").items())
    with pytest.raises(UrbangenError, match=r"different config \(changed: \['lr'\]\)"):
        train(_cfg(toy_root, lr=5e-4), tmp_path / "c")


def test_seeds_side_by_side_match_seeds_one_after_another(toy_root, tmp_path):
    cfg = _cfg(toy_root, device="cpu")  # one thread per training: the same arithmetic in either layout
    assert side_by_side(cfg, 3, parallel=2) == (2, 1) and side_by_side(cfg, 3, parallel=1)[0] == 1
    assert side_by_side(cfg.model_copy(update={"device": "cuda"}), 3)[0] == 1  # GPUs: one after another
    assert side_by_side(cfg.model_copy(update={"threads": 8}), 1) == (1, 8)  # alone: train()'s own choice
    logs = {"one": [], "two": []}
    one = train_seeds(cfg, [0, 1], tmp_path / "one", lambda seed, r: logs["one"].append((seed, r["step"])), parallel=1)
    two = train_seeds(cfg, [0, 1], tmp_path / "two", lambda seed, r: logs["two"].append((seed, r["step"])), parallel=2)
    assert one == [tmp_path / "one" / "seed-0" / "model", tmp_path / "one" / "seed-1" / "model"]
    assert [p.relative_to(tmp_path / "two") for p in two] == [p.relative_to(tmp_path / "one") for p in one]
    for a, b in zip(one, two, strict=True):
        wa, wb = load_file(a / "model.safetensors"), load_file(b / "model.safetensors")
        assert all(torch.equal(wa[k], wb[k]) for k in wa)
    a0, a1 = (load_file(p / "model.safetensors") for p in one)
    assert not all(torch.equal(a0[k], a1[k]) for k in a0)  # the seeds differ
    assert sorted(logs["two"]) == sorted(logs["one"]) == [(s, k) for s in (0, 1) for k in range(1, 5)]
    with pytest.raises(UrbangenError, match="distinct"):
        train_seeds(cfg, [0, 0], tmp_path / "twice")


def test_a_failing_seed_is_named_and_a_rerun_resumes(toy_root, tmp_path):
    cfg = _cfg(toy_root, device="cpu")
    corrupt = tmp_path / "seed-1" / "checkpoints" / "last.pt"
    corrupt.parent.mkdir(parents=True)
    corrupt.write_bytes(b"not a checkpoint")
    with pytest.raises(UrbangenError, match=r"training seed 1 .*checkpoint .*last\.pt cannot be read"):
        train_seeds(cfg, [0, 1], tmp_path, parallel=2)
    corrupt.unlink()
    models = train_seeds(cfg, [0, 1], tmp_path, parallel=2)
    assert all((m / "model.safetensors").is_file() for m in models)


def test_loss_falls_on_a_fixed_batch(make_toy, tmp_path):
    root = make_toy(tmp_path / "one", n=1)
    # one image, cropped whole, no scaling or flipping: the same batch every step
    cfg = _cfg(root, iterations=30, crop_size=(64, 96), scale_range=(1.0, 1.0), flip=False, warmup_iters=0, lr=2e-3)
    logs = []
    train(cfg, tmp_path / "run", on_log=logs.append)
    first, last = logs[0]["loss"], sum(entry["loss"] for entry in logs[-5:]) / 5
    assert last < 0.5 * first, (first, last)
    assert logs[-1]["lr"] == pytest.approx(0.0)


def test_lr_schedule_and_rare_class_sampling(toy_root):
    cfg = _cfg(toy_root, iterations=100, warmup_iters=10, warmup_ratio=0.0, poly_power=1.0)
    assert lr_factor(0, cfg) == 0 and lr_factor(5, cfg) == pytest.approx(0.5 * 0.95)
    assert lr_factor(50, cfg) == pytest.approx(0.5)
    source = open_source(DataSource(root=toy_root, split="train"))
    counts = class_counts(source)
    sampler = RareClassSampler(counts, temperature=0.01)
    assert sampler.probs.argmax() == 13  # car, the rarest class, dominates
    items = TrainItems([source], cfg.augment(), seed=0, length=10, rcs=[sampler])
    image, label = items[3]
    assert image.shape == (48, 48, 3) and label.shape == (48, 48)
    assert (items[3][0] == image).all()  # an item is a pure function of (seed, index)
    hits = sum((items[i][1] == 13).any() for i in range(10))
    assert hits >= 9  # crops are retried until they hold the sampled class


def test_bad_configs(toy_root, tmp_path):
    with pytest.raises(ValueError, match="crop_size"):
        _cfg(toy_root, crop_size=(16, 16))
    with pytest.raises(UrbangenError, match="no label in labels_dir"):
        train(_cfg(toy_root, sources=[DataSource(root=toy_root, labels_dir=tmp_path)]), tmp_path / "x")


def test_cli_train(toy_root, tmp_path):
    config = _cfg(toy_root, iterations=2).model_dump(mode="json")
    path = tmp_path / "train.yaml"
    path.write_text(yaml.safe_dump(config))
    runner = CliRunner()
    out = runner.invoke(main, ["train", "--config", str(path), "--out", str(tmp_path / "run"), "--set", "seed=3"])
    assert out.exit_code == 0, out.output
    assert (tmp_path / "run" / "model" / "model.safetensors").is_file()
    path.write_text(yaml.safe_dump({**config, "iteratons": 3}))
    bad = runner.invoke(main, ["train", "--config", str(path), "--out", str(tmp_path / "run2")])
    assert bad.exit_code == 2 and "iteratons: unknown field" in bad.output


def test_torchrun_two_processes_on_cpu(toy_root, tmp_path):
    """The same command under torchrun (gloo on CPU): DDP, rank-0 checkpoint and model folder."""
    import os
    import signal
    import subprocess
    import sys

    config = _cfg(toy_root, iterations=4, checkpoint_every=4).model_dump(mode="json")
    path = tmp_path / "train.yaml"
    path.write_text(yaml.safe_dump(config))
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2"]
    command += ["-m", "urbangen.cli", "train", "--config", str(path), "--out", str(tmp_path / "run")]
    pipe = subprocess.PIPE
    process = subprocess.Popen(command, stdout=pipe, stderr=pipe, text=True, start_new_session=True)
    try:
        _, stderr = process.communicate(timeout=180)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)  # torchrun and its workers, not just the launcher
        process.communicate()
        raise
    assert process.returncode == 0, stderr[-2000:]
    state = torch.load(tmp_path / "run" / "checkpoints" / "last.pt", weights_only=False)
    assert state["step"] == 4
    assert (tmp_path / "run" / "model" / "model.safetensors").is_file()


@pytest.mark.gpu
@pytest.mark.parametrize("device", ["auto", "cuda", "cuda:0"])
def test_trains_on_a_single_gpu_by_any_device_name(toy_root, tmp_path, device):
    logs = []
    train(_cfg(toy_root, device=device), tmp_path / device, on_log=logs.append)
    assert len(logs) == 4 and all(torch.isfinite(torch.tensor(entry["loss"])) for entry in logs)
    assert (tmp_path / device / "model" / "model.safetensors").is_file()
