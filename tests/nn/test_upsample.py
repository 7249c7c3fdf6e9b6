"""Conditioning upsamplers: exact lengths and refusal of mismatched factors."""

from __future__ import annotations

import math

import pytest
import torch

from wavegen.errors import ConfigError
from wavegen.nn.upsample import ConditioningUpsampler


@pytest.mark.parametrize("mode", ["transposed", "nearest"])
@pytest.mark.parametrize("factors", [(4, 4, 4, 4), (5, 5, 8), (8, 8, 4), (3,)])
def test_output_length_is_frames_times_hop(mode, factors):
    hop = math.prod(factors)
    upsampler = ConditioningUpsampler(6, factors, hop, mode)
    for frames in (1, 7, 20):
        assert upsampler(torch.randn(2, 6, frames)).shape == (2, 6, frames * hop)


@pytest.mark.parametrize("mode", ["transposed", "nearest"])
def test_upsampling_is_local(mode):
    # A change in one frame only moves outputs near that frame's samples.
    torch.manual_seed(0)
    upsampler = ConditioningUpsampler(3, (4, 4), 16, mode)
    x = torch.randn(1, 3, 20)
    y = x.clone()
    y[..., 10] += 1.0
    diff = (upsampler(x) - upsampler(y)).abs().sum(1)[0]
    changed = torch.nonzero(diff > 1e-6).flatten()
    assert changed.min() >= 16 * 8 and changed.max() < 16 * 13


def test_factor_product_must_equal_hop():
    with pytest.raises(ConfigError, match="must multiply to the features' hop length"):
        ConditioningUpsampler(80, (4, 4, 4), 256)
    with pytest.raises(ConfigError):
        ConditioningUpsampler(80, (4, 0), 16)
    with pytest.raises(ConfigError):
        ConditioningUpsampler(80, (4, 4), 16, mode="linear")
