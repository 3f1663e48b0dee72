"""Model folders: build from config, save/load round trip, clear errors for wrong folders."""

from __future__ import annotations

import json

import pytest
import torch

from urbangen.errors import UrbangenError
from urbangen.labels import Taxonomy, cityscapes19
from urbangen.segment.model import SIZES, build_model, load_model, save_model


def test_sizes_build_from_config_without_download():
    model = build_model("tiny")
    assert model.config.num_labels == 19 and model.config.id2label[13] == "car"
    assert SIZES["b0"]["hidden_sizes"] == [32, 64, 160, 256]
    b0 = build_model("b0")
    assert 3e6 < sum(p.numel() for p in b0.parameters()) < 4.5e6  # SegFormer-B0 is 3.7M parameters
    with pytest.raises(UrbangenError, match="unknown model size 'b9'"):
        build_model("b9")


def test_save_load_round_trip_and_pretrained(tmp_path):
    torch.manual_seed(0)
    model = build_model("tiny").eval()
    folder = save_model(model, tmp_path / "m", cityscapes19(), {"note": "x"})
    assert {p.name for p in folder.iterdir()} >= {"config.json", "model.safetensors", "urbangen.json"}
    loaded, taxonomy, meta = load_model(folder)
    assert taxonomy == cityscapes19() and meta == {"note": "x"}
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        assert torch.equal(model(pixel_values=x).logits, loaded(pixel_values=x).logits)
    # local pretrained weights: the encoder is taken over, a new 5-class head is built
    other = Taxonomy("five", tuple("abcde"), ((0, 0, 0),) * 5)
    fine = build_model("tiny", 5, pretrained=folder, taxonomy=other)
    assert fine.config.num_labels == 5
    key = "segformer.stages.0.patch_embeddings.proj.weight"
    assert torch.equal(fine.state_dict()[key], model.state_dict()[key])
    # saving again replaces the folder atomically
    save_model(fine, tmp_path / "m", other, {})
    assert load_model(tmp_path / "m")[1].name == "five"


def test_wrong_folders_are_clear_errors(tmp_path):
    folder = save_model(build_model("tiny"), tmp_path / "m", cityscapes19(), {})
    other = Taxonomy("five", tuple("abcde"), ((0, 0, 0),) * 5)
    with pytest.raises(UrbangenError, match=r"predicts taxonomy cityscapes19 .* but five"):
        load_model(folder, taxonomy=other)
    info = json.loads((folder / "urbangen.json").read_text())
    info["taxonomy"] = other.to_dict()
    (folder / "urbangen.json").write_text(json.dumps(info))
    with pytest.raises(UrbangenError, match=r"19 labels but urbangen\.json declares 5"):
        load_model(folder)
    (folder / "model.safetensors").unlink()
    with pytest.raises(UrbangenError, match=r"has no model\.safetensors"):
        load_model(folder)
    with pytest.raises(UrbangenError, match="model folder not found"):
        load_model(tmp_path / "absent")
