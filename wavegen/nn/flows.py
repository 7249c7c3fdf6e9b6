"""Invertible layers of normalising flows over waveforms (WaveGlow; any flow family).

A flow maps audio ``x`` to latents ``z = f(x)`` with an exact inverse and a tractable
log-determinant, so ``log p(x) = log N(z; 0, sigma^2) + log |det df/dx|``. The pieces here:

* :func:`squeeze` / :func:`unsqueeze`: ``[B, 1, T]`` <-> ``[B, g, T / g]`` (channel ``j`` of
  column ``n`` is sample ``g n + j``), and :func:`squeeze_frames` for conditioning
  ``[B, C, T]`` -> ``[B, C g, T / g]`` (channel ``c g + j``), the layouts of WaveGlow.
* :class:`Invertible1x1Conv`: ``z -> W z`` over channels at every column, with ``W`` either a
  free matrix (log-determinant by ``slogdet``, inverse in float64) or LU-decomposed
  (Kingma & Dhariwal 2018: ``W = P L (U + diag(s e^{log|s|}))``, log-determinant
  ``sum log|s|`` in O(C), inverse by two triangular solves). Both start from the same random
  rotation (determinant +1).
* :class:`AffineCoupling`: the first half of the channels passes unchanged and conditions
  ``(shift, log_scale) = net(x_a, cond)`` of the second: ``y_b = x_b * exp(log_scale) +
  shift``; log-determinant ``sum log_scale``. Any network with that signature works.

Every layer returns ``(output, log_det [B])`` forward (per example, summed over channels
and time) and has ``inverse``. The invertible parts always run in float32 (float64 for a
matrix inverse) whatever the autocast around them: a half-precision inverse is where flows
turn into NaNs.
"""

from __future__ import annotations

from typing import Callable

import torch
from torch import nn

from wavegen.errors import ConfigError, UsageError


def squeeze(audio: torch.Tensor, group: int) -> torch.Tensor:
    """``[B, 1, T]`` (``T`` a multiple of ``group``) -> ``[B, group, T / group]``."""
    if audio.ndim != 3 or audio.shape[1] != 1 or audio.shape[-1] % group:
        raise UsageError(f"squeeze takes audio [B, 1, T] with T a multiple of {group}, "
                         f"got {list(audio.shape)}")
    batch, _, length = audio.shape
    return audio.reshape(batch, length // group, group).transpose(1, 2)


def unsqueeze(z: torch.Tensor) -> torch.Tensor:
    """``[B, g, N]`` -> ``[B, 1, N g]`` (the inverse of :func:`squeeze`)."""
    batch, group, columns = z.shape
    return z.transpose(1, 2).reshape(batch, 1, columns * group)


def squeeze_frames(features: torch.Tensor, group: int) -> torch.Tensor:
    """Sample-rate features ``[B, C, T]`` -> ``[B, C group, T / group]`` (channel ``c group +
    j`` of column ``n`` is channel ``c`` at sample ``group n + j``)."""
    batch, channels, length = features.shape
    if length % group:
        raise UsageError(f"squeeze_frames: length {length} is not a multiple of {group}")
    return (features.reshape(batch, channels, length // group, group)
            .permute(0, 1, 3, 2).reshape(batch, channels * group, length // group))


def random_rotation(channels: int, generator: torch.Generator | None = None) -> torch.Tensor:
    """A random orthogonal ``[C, C]`` matrix with determinant +1 (QR of a Gaussian)."""
    q, _ = torch.linalg.qr(torch.randn(channels, channels, generator=generator, dtype=torch.float64))
    if torch.linalg.det(q) < 0:
        q[:, 0] = -q[:, 0]
    return q.float()


class Invertible1x1Conv(nn.Module):
    """``z [B, C, N] -> W z`` at every column; ``log_det = N log|det W|`` per example.

    Args:
        channels: ``C``.
        lu: store ``W`` LU-decomposed (module docstring) instead of as a free matrix.
        generator: seeds the initial rotation (torch's global RNG when None).
    """

    def __init__(self, channels: int, lu: bool = False,
                 generator: torch.Generator | None = None):
        super().__init__()
        if channels < 1:
            raise ConfigError(f"Invertible1x1Conv: channels must be >= 1, got {channels}")
        self.channels = channels
        self.lu = lu
        w = random_rotation(channels, generator)
        if not lu:
            self.weight = nn.Parameter(w)
            return
        p, lower, upper = torch.linalg.lu(w.double())
        diag = torch.diagonal(upper)
        self.register_buffer("permutation", p.float())
        self.register_buffer("sign", torch.sign(diag).float())
        self.register_buffer("lower_mask", torch.tril(torch.ones(channels, channels), -1))
        self.lower = nn.Parameter(lower.float() * self.lower_mask)
        self.upper = nn.Parameter(torch.triu(upper, 1).float())
        self.log_scale = nn.Parameter(diag.abs().log().float())

    def _lu_factors(self) -> tuple[torch.Tensor, torch.Tensor]:
        eye = torch.eye(self.channels, device=self.lower.device)
        lower = self.lower.float() * self.lower_mask + eye
        upper = (torch.triu(self.upper.float(), 1)
                 + torch.diag(self.sign * self.log_scale.float().exp()))
        return lower, upper

    def matrix(self) -> torch.Tensor:
        """``W`` ``[C, C]`` in float32."""
        if not self.lu:
            return self.weight.float()
        lower, upper = self._lu_factors()
        return self.permutation @ lower @ upper

    def log_abs_det(self) -> torch.Tensor:
        """``log |det W|`` (a scalar, float32)."""
        if self.lu:
            return self.log_scale.float().sum()
        return torch.linalg.slogdet(self.weight.float())[1]

    def forward(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``[B, C, N]`` -> (``W z`` ``[B, C, N]`` float32, ``log_det`` ``[B]``)."""
        with torch.autocast(z.device.type, enabled=False):
            out = torch.einsum("ij,bjn->bin", self.matrix(), z.float())
            log_det = self.log_abs_det() * z.shape[-1]
        return out, log_det.expand(z.shape[0])

    def inverse_matrix(self) -> torch.Tensor:
        """``W^-1`` ``[C, C]`` (float32, computed in float64)."""
        if not self.lu:
            return torch.linalg.inv(self.weight.double()).float()
        lower, upper = (f.double() for f in self._lu_factors())
        eye = torch.eye(self.channels, dtype=torch.float64, device=lower.device)
        # W^-1 = U^-1 L^-1 P^T
        inv_lower = torch.linalg.solve_triangular(lower, eye, upper=False, unitriangular=True)
        inv_upper = torch.linalg.solve_triangular(upper, eye, upper=True)
        return (inv_upper @ inv_lower @ self.permutation.double().T).float()

    def inverse(self, z: torch.Tensor) -> torch.Tensor:
        """``W^-1 z`` for ``z`` ``[B, C, N]`` (float32)."""
        with torch.autocast(z.device.type, enabled=False):
            return torch.einsum("ij,bjn->bin", self.inverse_matrix(), z.float())


#: ``net(x_a [B, C_a, N], cond [B, K, N] or None) -> [B, 2 C_b, N]``: shift first, then
#: log-scale (WaveGlow's order).
CouplingNet = Callable[[torch.Tensor, torch.Tensor | None], torch.Tensor]


class AffineCoupling(nn.Module):
    """Affine coupling: ``x = [x_a, x_b]`` -> ``[x_a, x_b exp(log_s) + shift]``.

    ``x_a`` is the first ``channels // 2`` channels. ``net`` (a module, see
    :data:`CouplingNet`) gives ``shift`` and ``log_s`` (``[B, C_b, N]`` each) from ``x_a``
    and the conditioning; it may run under autocast, the affine update is float32.
    """

    def __init__(self, channels: int, net: nn.Module):
        super().__init__()
        if channels < 2:
            raise ConfigError(f"AffineCoupling: channels must be >= 2, got {channels}")
        self.channels = channels
        self.half = channels // 2
        self.net = net

    def _shift_log_scale(self, x_a: torch.Tensor, cond: torch.Tensor | None):
        out = self.net(x_a, cond).float()
        width = self.channels - self.half
        if out.shape[1] != 2 * width:
            raise UsageError(f"coupling net gave {out.shape[1]} channels, expected {2 * width}")
        return out[:, :width], out[:, width:]

    def forward(self, x: torch.Tensor, cond: torch.Tensor | None = None
                ) -> tuple[torch.Tensor, torch.Tensor]:
        """``[B, C, N]`` -> (``[B, C, N]``, ``log_det`` ``[B]``)."""
        x_a, x_b = x[:, :self.half], x[:, self.half:]
        shift, log_s = self._shift_log_scale(x_a, cond)
        y_b = x_b.float() * log_s.exp() + shift
        return torch.cat([x_a.float(), y_b], dim=1), log_s.sum(dim=(1, 2))

    def inverse(self, y: torch.Tensor, cond: torch.Tensor | None = None) -> torch.Tensor:
        """``[B, C, N]`` -> ``x`` ``[B, C, N]`` (float32)."""
        y_a, y_b = y[:, :self.half], y[:, self.half:]
        shift, log_s = self._shift_log_scale(y_a, cond)
        x_b = (y_b.float() - shift) * torch.exp(-log_s)
        return torch.cat([y_a.float(), x_b], dim=1)


def gaussian_nll(z: torch.Tensor, sigma: float) -> torch.Tensor:
    """``-log N(z; 0, sigma^2)`` summed over all but the batch dimension -> ``[B]`` (nats)."""
    elements = z[0].numel()
    const = elements * (0.5 * torch.log(torch.tensor(2 * torch.pi)) + torch.log(torch.tensor(sigma)))
    return 0.5 * z.float().pow(2).sum(dim=tuple(range(1, z.ndim))) / sigma ** 2 + const


__all__ = ["AffineCoupling", "CouplingNet", "Invertible1x1Conv", "gaussian_nll",
           "random_rotation", "squeeze", "squeeze_frames", "unsqueeze"]
