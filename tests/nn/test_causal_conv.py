"""CausalConv1d: causality and the streaming step against the full convolution."""

from __future__ import annotations

import pytest
import torch

from wavegen.errors import ConfigError
from wavegen.nn.causal_conv import CausalConv1d


@pytest.mark.parametrize("kernel_size,dilation", [(2, 1), (2, 8), (3, 1), (3, 4), (5, 2)])
def test_step_equals_full_convolution(kernel_size, dilation):
    torch.manual_seed(0)
    conv = CausalConv1d(4, 6, kernel_size, dilation)
    x = torch.randn(3, 4, 60)
    full = conv(x)
    buffer = conv.init_buffer(3)
    assert buffer.data.shape == (3, 4, (kernel_size - 1) * dilation + 1)
    steps = torch.stack([conv.step(x[..., t], buffer) for t in range(60)], -1)
    assert torch.allclose(full, steps, atol=1e-6)


@pytest.mark.parametrize("kernel_size,dilation", [(2, 4), (3, 3)])
@pytest.mark.parametrize("prefix", [1, 5, 30])
def test_buffer_from_sequence_continues_exactly(kernel_size, dilation, prefix):
    torch.manual_seed(1)
    conv = CausalConv1d(3, 2, kernel_size, dilation)
    x = torch.randn(2, 3, 40)
    full = conv(x)
    buffer = conv.buffer_from_sequence(x[..., :prefix])
    steps = torch.stack([conv.step(x[..., t], buffer) for t in range(prefix, 40)], -1)
    assert torch.allclose(full[..., prefix:], steps, atol=1e-6)


def test_output_never_depends_on_the_future():
    torch.manual_seed(2)
    conv = CausalConv1d(2, 2, 3, 2)
    x = torch.randn(1, 2, 30)
    y = x.clone()
    y[..., 17] += 1.0
    a, b = conv(x), conv(y)
    assert torch.equal(a[..., :17], b[..., :17])
    assert not torch.allclose(a[..., 17], b[..., 17])


def test_bad_sizes_are_config_errors():
    with pytest.raises(ConfigError):
        CausalConv1d(1, 1, 0)
    with pytest.raises(ConfigError):
        CausalConv1d(1, 1, 2, dilation=0)
