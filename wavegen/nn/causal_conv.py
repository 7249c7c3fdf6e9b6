"""Dilated causal 1-D convolution with a streaming (one step at a time) API.

The full forward pass left-pads by ``(kernel_size - 1) * dilation`` so that output ``t`` sees
only inputs ``<= t``. For autoregressive sampling, :meth:`CausalConv1d.step` computes the
same output for one new input from a per-layer ring buffer of the last
``(kernel_size - 1) * dilation + 1`` inputs: the queue idea of fast-wavenet (Paine et al.
2016), O(kernel_size) work per layer and sample instead of recomputing the receptive field.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from wavegen.errors import ConfigError


@dataclass
class ConvBuffer:
    """Ring buffer of a causal conv's recent inputs for one batch.

    Attributes:
        data: ``[batch, in_channels, length]`` with ``length = (k - 1) * dilation + 1``.
        position: slot where the next input is written (an int, so indexing stays on the host).
    """

    data: torch.Tensor
    position: int = 0


class CausalConv1d(nn.Conv1d):
    """``nn.Conv1d`` that is causal: ``[B, C_in, T] -> [B, C_out, T]``, output t sees x[<= t]."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, dilation: int = 1,
                 bias: bool = True):
        if kernel_size < 1 or dilation < 1:
            raise ConfigError(f"causal conv needs kernel_size >= 1 and dilation >= 1, "
                              f"got {kernel_size} and {dilation}")
        super().__init__(in_channels, out_channels, kernel_size, dilation=dilation, bias=bias)

    @property
    def context(self) -> int:
        """Past samples each output sees beyond the current one: ``(k - 1) * dilation``."""
        return (self.kernel_size[0] - 1) * self.dilation[0]

    @property
    def buffer_length(self) -> int:
        return self.context + 1

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(F.pad(x, (self.context, 0)))

    # ------------------------------------------------------------------ streaming
    def init_buffer(self, batch: int, device=None, dtype=None) -> ConvBuffer:
        """An empty (all-zero) history, equivalent to the zero left-padding of forward()."""
        device = device or self.weight.device
        dtype = dtype or self.weight.dtype
        return ConvBuffer(torch.zeros(batch, self.in_channels, self.buffer_length,
                                      device=device, dtype=dtype))

    def buffer_from_sequence(self, x: torch.Tensor) -> ConvBuffer:
        """History after having seen the inputs ``x`` ``[B, C_in, T]`` (for priming)."""
        keep = x[..., -self.context:] if self.context else x[..., :0]
        data = torch.zeros(x.shape[0], self.in_channels, self.buffer_length,
                           device=x.device, dtype=x.dtype)
        if keep.shape[-1]:
            data[..., self.context - keep.shape[-1]:self.context] = keep
        return ConvBuffer(data, position=self.context)

    def tap_indices(self, position: int) -> list[int]:
        """Ring slots holding the inputs that meet kernel taps ``0..k-1`` (oldest first)."""
        k, d, length = self.kernel_size[0], self.dilation[0], self.buffer_length
        return [(position - (k - 1 - j) * d) % length for j in range(k)]

    def step(self, x_t: torch.Tensor, buffer: ConvBuffer) -> torch.Tensor:
        """One output ``[B, C_out]`` for the new input ``x_t`` ``[B, C_in]``; updates ``buffer``."""
        buffer.data[:, :, buffer.position] = x_t
        taps = buffer.data[:, :, self.tap_indices(buffer.position)]  # [B, C_in, k]
        buffer.position = (buffer.position + 1) % self.buffer_length
        out = taps.reshape(taps.shape[0], -1) @ self.weight.reshape(self.out_channels, -1).t()
        return out if self.bias is None else out + self.bias
