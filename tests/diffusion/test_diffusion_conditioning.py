"""The control signal: erosion, one-hot + unknown (+ inverse depth), condition dropout."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from urbangen.diffusion.conditioning import ConditionSpec, condition_tensor, drop_condition, erode
from urbangen.errors import UrbangenError


def test_erosion_moves_a_band_around_each_segment_and_ignore_to_unknown():
    label = np.zeros((20, 20), np.uint8)
    label[5:15, 5:15] = 13
    label[0, :] = 255
    eroded = erode(label, 2)
    # the car keeps its 6x6 core; a 2-pixel band on both sides of its border becomes ignore
    assert (eroded == 13).sum() == 36 and (eroded[7:13, 7:13] == 13).all()
    assert (eroded[3:17, 3:17][label[3:17, 3:17] != 13] == 255).sum() > 0
    assert (eroded[:3] == 255).all()  # ignore row plus the band below it
    assert eroded[19, 0] == 0 and eroded[10, 0] == 0  # the image border is not a boundary
    assert erode(label, 0) is label


def test_condition_tensor_channels():
    spec = ConditionSpec(num_classes=19, depth=True, depth_near=2.0)
    labels = torch.tensor([[[0, 18, 255, 19]]], dtype=torch.uint8)
    depth = torch.tensor([[[1.0, 4.0, 0.0, 100.0]]])
    cond = condition_tensor(labels, spec, depth)
    assert cond.shape == (1, 21, 1, 4) and spec.channels == 21 and cond.is_contiguous()
    assert cond[0, 0, 0, 0] == 1 and cond[0, 18, 0, 1] == 1
    assert cond[0, 19, 0, 2] == 1 and cond[0, 19, 0, 3] == 1  # ignore and out-of-range ids are unknown
    assert cond[0, :20].sum(0).eq(1).all()
    assert torch.allclose(cond[0, 20, 0], torch.tensor([1.0, 0.5, 0.0, 0.02]))
    with pytest.raises(UrbangenError, match="depth is required"):
        condition_tensor(labels, spec)
    assert ConditionSpec.from_dict(spec.to_dict()) == spec


def test_condition_tensor_is_the_one_hot_of_the_labels_with_unknown_last():
    spec = ConditionSpec(num_classes=19)
    labels = torch.randint(0, 256, (3, 17, 23), generator=torch.Generator().manual_seed(0)).to(torch.uint8)
    index = torch.where(labels.long() < 19, labels.long(), 19)
    expected = torch.nn.functional.one_hot(index, 20).permute(0, 3, 1, 2).float()
    cond = condition_tensor(labels, spec)
    assert cond.dtype == torch.float32 and cond.is_contiguous() and torch.equal(cond, expected)


def test_condition_dropout_zeroes_whole_samples_at_the_given_rate():
    cond = torch.ones(2000, 3, 2, 2)
    dropped = drop_condition(cond, 0.25, torch.Generator().manual_seed(0))
    per_sample = dropped.flatten(1).sum(1)
    assert set(per_sample.unique().tolist()) == {0.0, 12.0}
    assert 0.2 < (per_sample == 0).float().mean() < 0.3
    assert drop_condition(cond, 0.0, torch.Generator()) is cond
