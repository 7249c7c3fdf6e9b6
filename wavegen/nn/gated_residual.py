"""The gated residual block of WaveNet-like networks, causal or not, with conditioning.

One block (van den Oord et al. 2016)::

    x [B, R, T] --dropout--> dilated conv (k taps, dilation d) --> h [B, 2G, T]
    h += 1x1(local [B, C, T]) + linear(global [B, D]) + gate_bias        (each optional)
    z = tanh(h[:, :G]) * sigmoid(h[:, G:])                              [B, G, T]
    residual output  x + 1x1(z)  [B, R, T]    (x itself when the block has no residual conv)
    skip output      1x1(z)      [B, S, T]

The same block serves every family that stacks such layers: the sample-level WaveNet and
the WaveNet decoders of the VQ-VAE (causal, with a streaming :meth:`GatedResidualBlock.step`),
and the non-causal nets of flows (WaveGlow's affine coupling) and diffusion (DiffWave), which
see the whole signal at once.

* ``causal=True``: the conv is a :class:`~wavegen.nn.causal_conv.CausalConv1d`; output ``t``
  sees inputs ``t - (k - 1) d .. t`` (:attr:`GatedResidualBlock.reach` ``= ((k - 1) d, 0)``).
* ``causal=False``: "same" zero padding, ``(k - 1) d // 2`` on the left and the rest on the
  right (as PyTorch's ``padding="same"``), so output ``t`` also sees up to ``(k - 1) d - (k - 1) d
  // 2`` future samples; symmetric for an odd kernel.

Conditioning. ``local`` is frame-rate conditioning *already upsampled* to the audio rate
(``[B, local_channels, T]``, e.g. by :class:`~wavegen.nn.upsample.ConditioningUpsampler`);
the block projects it to the gate inputs with its own 1x1 conv. ``global_cond`` ``[B, D]``
(a speaker or class embedding, a diffusion-step embedding) is projected by a linear layer
and added at every time step. A network that projects the conditioning of all its blocks in
one matmul (WaveNet does: one ``L * 2G`` wide conv instead of L narrow ones) builds its
blocks without projections and passes the result as ``gate_bias`` ``[B, 2G, T]`` or
``[B, 2G, 1]``.

Module attributes (``conv``, ``residual``, ``skip``, ``local_projection``,
``global_projection``) are what state dicts and the WaveNet sampling kernels
(:mod:`wavegen.kernels`) read; renaming them breaks existing bundles.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from wavegen.errors import ConfigError, UsageError
from wavegen.nn.causal_conv import CausalConv1d, ConvBuffer


class GatedResidualBlock(nn.Module):
    """Dilated conv -> (+ conditioning) -> ``tanh * sigmoid`` -> residual and skip 1x1 convs.

    Args:
        residual_channels: ``R``, width of the residual stream (input and residual output).
        gate_channels: ``G``, width of each gate branch (the conv has ``2G`` outputs).
        skip_channels: ``S``, width of the skip output.
        kernel_size: taps of the dilated conv (>= 1; causal WaveNets use >= 2).
        dilation: spacing of the taps (>= 1).
        causal: causal (left) padding, else "same" padding (see the module docstring).
        dropout: dropout on the input of the dilated conv, training only.
        has_residual: False for a block that feeds only the skip path (the last WaveNet
            layer: a residual conv there would be dead weight, and parameters without
            gradients, which DDP refuses); its residual output is then ``x`` unchanged.
        local_channels: ``C`` > 0 for a 1x1 projection of upsampled local conditioning.
        global_channels: ``D`` > 0 for a linear projection of a global conditioning vector.
    """

    def __init__(self, residual_channels: int, gate_channels: int, skip_channels: int,
                 kernel_size: int, dilation: int = 1, *, causal: bool = True,
                 dropout: float = 0.0, has_residual: bool = True, local_channels: int = 0,
                 global_channels: int = 0):
        super().__init__()
        for name, value in (("residual_channels", residual_channels),
                            ("gate_channels", gate_channels), ("skip_channels", skip_channels),
                            ("kernel_size", kernel_size), ("dilation", dilation)):
            if value < 1:
                raise ConfigError(f"gated residual block: {name} must be >= 1, got {value}")
        if local_channels < 0 or global_channels < 0:
            raise ConfigError(f"gated residual block: local_channels and global_channels must "
                              f"be >= 0, got {local_channels} and {global_channels}")
        if not 0 <= dropout < 1:
            raise ConfigError(f"gated residual block: dropout must be in [0, 1), got {dropout}")
        self.gate_channels = gate_channels
        self.dropout = dropout
        self.causal = causal
        if causal:
            self.conv: nn.Conv1d = CausalConv1d(residual_channels, 2 * gate_channels,
                                                kernel_size, dilation)
        else:
            # Padded in forward(): nn.Conv1d's padding="same" warns (and copies) for even spans.
            self.conv = nn.Conv1d(residual_channels, 2 * gate_channels, kernel_size,
                                  dilation=dilation)
        self.residual = nn.Conv1d(gate_channels, residual_channels, 1) if has_residual else None
        self.skip = nn.Conv1d(gate_channels, skip_channels, 1)
        self.local_projection = (nn.Conv1d(local_channels, 2 * gate_channels, 1, bias=False)
                                 if local_channels else None)
        self.global_projection = (nn.Linear(global_channels, 2 * gate_channels, bias=False)
                                  if global_channels else None)

    @property
    def reach(self) -> tuple[int, int]:
        """``(past, future)``: samples before and after ``t`` that output ``t`` depends on."""
        span = (self.conv.kernel_size[0] - 1) * self.conv.dilation[0]
        return (span, 0) if self.causal else (span // 2, span - span // 2)

    # ------------------------------------------------------------------ full pass
    def forward(self, x: torch.Tensor, *, local: torch.Tensor | None = None,
                global_cond: torch.Tensor | None = None,
                gate_bias: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Residual and skip outputs of a whole sequence.

        Args:
            x: ``[B, R, T]``.
            local: ``[B, C, T]`` upsampled local conditioning (blocks with ``local_channels``).
            global_cond: ``[B, D]`` (blocks with ``global_channels``).
            gate_bias: ``[B, 2G, T]`` or ``[B, 2G, 1]`` conditioning already projected.

        Returns:
            (``[B, R, T]`` residual output, ``[B, S, T]`` skip output).
        """
        h = F.dropout(x, self.dropout, self.training)
        if not self.causal:
            h = F.pad(h, self.reach)
        h = self.conv(h)
        if self.local_projection is not None or local is not None:
            h = h + self.local_projection(self._checked_local(local, x.shape[0], x.shape[-1]))
        if self.global_projection is not None or global_cond is not None:
            h = h + self.global_projection(self._checked_global(global_cond, x.shape[0]))[..., None]
        if gate_bias is not None:
            h = h + gate_bias
        a, b = h.split(self.gate_channels, dim=1)
        z = torch.tanh(a) * torch.sigmoid(b)
        out = x if self.residual is None else x + self.residual(z)
        return out, self.skip(z)

    # ------------------------------------------------------------------ streaming
    def step(self, x_t: torch.Tensor, buffer: ConvBuffer, *, local_t: torch.Tensor | None = None,
             global_cond: torch.Tensor | None = None,
             gate_bias: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """One time step of a causal block; equals :meth:`forward` at that position.

        Args:
            x_t: ``[B, R]`` the new input; ``buffer`` (from ``conv.init_buffer`` or
                ``conv.buffer_from_sequence``) holds the past ones and is updated.
            local_t: ``[B, C]`` local conditioning at this step.
            global_cond: ``[B, D]`` (projected again at every step: precompute it into
                ``gate_bias`` when stepping many times).
            gate_bias: ``[B, 2G]`` conditioning already projected.

        Returns:
            (``[B, R]`` residual output, ``[B, S]`` skip output).
        """
        if not self.causal:
            raise UsageError("a non-causal gated residual block sees future samples: it has "
                             "no step-by-step mode (run forward on the whole sequence)")
        h = self.conv.step(x_t, buffer)
        if self.local_projection is not None or local_t is not None:
            local_t = self._checked_local(local_t, x_t.shape[0], None)
            h = h + F.linear(local_t, self.local_projection.weight[..., 0])
        if self.global_projection is not None or global_cond is not None:
            h = h + self.global_projection(self._checked_global(global_cond, x_t.shape[0]))
        if gate_bias is not None:
            h = h + gate_bias
        a, b = h.split(self.gate_channels, dim=1)
        z = torch.tanh(a) * torch.sigmoid(b)
        skip = F.linear(z, self.skip.weight[..., 0], self.skip.bias)
        if self.residual is None:
            return x_t, skip
        return x_t + F.linear(z, self.residual.weight[..., 0], self.residual.bias), skip

    # ------------------------------------------------------------------ checks
    def _checked_local(self, local: torch.Tensor | None, batch: int,
                       length: int | None) -> torch.Tensor:
        """``local`` ``[B, C, T]`` (``[B, C]`` for a step, ``length`` None), or a UsageError."""
        if self.local_projection is None:
            raise UsageError("this gated residual block has no local conditioning "
                             "(local_channels = 0)")
        channels = self.local_projection.in_channels
        want = f"[{batch}, {channels}]" if length is None else f"[{batch}, {channels}, {length}]"
        if local is None:
            raise UsageError(f"this gated residual block is locally conditioned: pass local "
                             f"features {want}")
        if tuple(local.shape) != ((batch, channels) if length is None
                                  else (batch, channels, length)):
            raise UsageError(f"local conditioning must be {want} (upsampled to the audio "
                             f"rate), got {list(local.shape)}")
        return local

    def _checked_global(self, global_cond: torch.Tensor | None, batch: int) -> torch.Tensor:
        if self.global_projection is None:
            raise UsageError("this gated residual block has no global conditioning "
                             "(global_channels = 0)")
        want = [batch, self.global_projection.in_features]
        if global_cond is None:
            raise UsageError(f"this gated residual block is globally conditioned: pass "
                             f"global_cond {want}")
        if list(global_cond.shape) != want:
            raise UsageError(f"global conditioning must be {want}, got {list(global_cond.shape)}")
        return global_cond


__all__ = ["GatedResidualBlock"]
