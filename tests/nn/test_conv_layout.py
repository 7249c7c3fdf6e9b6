"""wavegen.nn.conv_layout: channels-last 2-D convolutions compute what the 1-D modules do."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from wavegen.nn.conv_layout import PLAIN, ChannelsLast, inference_layout
from wavegen.nn.weight_norm import weight_norm


@pytest.mark.parametrize("module", [
    nn.Conv1d(6, 10, 5, padding=4, dilation=2),
    nn.Conv1d(6, 4, 3, stride=2, padding=1),
    nn.Conv1d(6, 6, 3, padding=1, groups=3, bias=False),
    nn.ConvTranspose1d(6, 4, 8, stride=4, padding=2),
    nn.ConvTranspose1d(6, 4, 5, stride=3, padding=1, output_padding=1),
], ids=["dilated", "strided", "grouped", "transposed", "transposed-output-padding"])
def test_channels_last_equals_the_module(module):
    torch.manual_seed(0)
    layout = ChannelsLast()
    x = torch.randn(2, 6, 37)
    with torch.no_grad():
        expected = module(x)
        x4 = layout.enter(x)
        assert x4.shape == (2, 6, 1, 37) and x4.is_contiguous(memory_format=torch.channels_last)
        got = layout.leave(layout.conv(module, x4))
    assert got.shape == expected.shape and got.is_contiguous()
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-6)


def test_the_converted_weight_follows_in_place_changes():
    conv = nn.Conv1d(3, 3, 3, padding=1)
    layout = ChannelsLast()
    x = layout.enter(torch.randn(1, 3, 8))
    with torch.no_grad():
        first = layout.conv(conv, x)
        assert torch.equal(layout.conv(conv, x), first)  # cached, same numbers
        conv.weight.mul_(2.0)
        changed = layout.conv(conv, x)
    torch.testing.assert_close(changed - conv.bias[:, None, None],
                               2 * (first - conv.bias[:, None, None]))


def test_what_it_cannot_run_is_refused():
    layout = ChannelsLast()
    x = layout.enter(torch.randn(1, 3, 8))
    with pytest.raises(ValueError, match="zero-padded"):
        layout.conv(nn.Conv1d(3, 3, 3, padding=1, padding_mode="reflect"), x)
    with pytest.raises(TypeError, match="Linear"):
        layout.conv(nn.Linear(3, 3), x)


def test_channels_last_only_for_cpu_float32_inference_with_plain_weights():
    model = nn.Sequential(nn.Conv1d(2, 2, 3))
    cache = ChannelsLast()
    x = torch.randn(1, 2, 8)
    model.eval()
    with torch.no_grad():
        assert inference_layout(model, x, cache) is cache
        assert inference_layout(model, x.double(), cache) is PLAIN
        model.train()
        assert inference_layout(model, x, cache) is PLAIN
        model.eval()
    assert inference_layout(model, x, cache) is PLAIN  # autograd on
    weight_norm(model[0])
    with torch.no_grad():
        assert inference_layout(model, x, cache) is PLAIN  # weight norm not folded
