"""The weighted denoising loss, written so that parameterisations are interchangeable.

Draw ``t`` and ``eps``, form ``x_t = alpha x0 + sigma eps``, ask the network for its
prediction and take the MSE against the target of its parameterisation. At fixed ``x_t``
every target error is a multiple of the x0 error (see
:func:`~wavegen.diffusion.parameterization.x0_error_scale`: ``|eps error|^2 = SNR |x0
error|^2``, ``|v error|^2 = (SNR + 1) |x0 error|^2`` for VP, ...), so a weighting is
defined once, as a weight ``w(t)`` on the x0-MSE (Kingma et al. 2021), and converted to the
factor on the target-space MSE: ``factor = w / x0_error_scale``. Hence an eps network with
``"snr"`` weighting and an x0 network with ``"snr"`` weighting optimise the same objective,
draw for draw.

Weightings (as ``w`` on the x0-MSE):

* ``"none"``: the plain MSE of the network's own target (``w = x0_error_scale``: SNR for
  eps, which is the DDPM "simple" loss; SNR + 1 for v; 1 for x0).
* ``"snr"``: ``w = SNR``, i.e. the eps-MSE whatever the network predicts.
* ``"min_snr"``: ``w = min(SNR, gamma)`` (Hang et al. 2023, gamma = 5 by default).
* ``"truncated_snr"``: ``w = max(SNR, 1)`` (Salimans & Ho 2022).
"""

from __future__ import annotations

from typing import Callable, NamedTuple

import torch

from wavegen.diffusion.parameterization import (broadcast_to, check_parameterization,
                                                target_of, to_x0_eps, x0_error_scale)
from wavegen.diffusion.schedules import T_MIN, NoiseSchedule
from wavegen.errors import ConfigError

WEIGHTINGS = ("none", "snr", "min_snr", "truncated_snr")

Denoiser = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def check_weighting(weighting: str) -> str:
    """``weighting`` if it names a loss weighting, else a ConfigError."""
    if weighting not in WEIGHTINGS:
        raise ConfigError(f"weighting must be one of {', '.join(WEIGHTINGS)}, got {weighting!r}")
    return weighting


def x0_weight(weighting: str, parameterization: str, alpha: torch.Tensor, sigma: torch.Tensor,
              min_snr_gamma: float = 5.0) -> torch.Tensor:
    """The weight ``w(t)`` of the objective expressed on the x0-MSE; shaped like ``alpha``."""
    check_weighting(weighting)
    snr = (alpha / sigma) ** 2
    if weighting == "none":
        return torch.as_tensor(x0_error_scale(parameterization, alpha, sigma)).expand_as(snr)
    if weighting == "snr":
        return snr
    if weighting == "min_snr":
        return snr.clamp(max=min_snr_gamma)
    return snr.clamp(min=1.0)


def loss_factor(weighting: str, parameterization: str, alpha: torch.Tensor, sigma: torch.Tensor,
                min_snr_gamma: float = 5.0) -> torch.Tensor:
    """Factor on the target-space MSE giving the weighted objective; shaped like ``alpha``.

    Computed in float64 (SNRs near ``t = 0`` exceed float32's comfortable range once
    squared) and returned in ``alpha``'s dtype.
    """
    check_parameterization(parameterization)
    if weighting == "none":
        return torch.ones_like(alpha)
    a, s = alpha.double(), sigma.double()
    factor = x0_weight(weighting, parameterization, a, s, min_snr_gamma) / x0_error_scale(
        parameterization, a, s)
    return factor.to(alpha.dtype)


class LossTerms(NamedTuple):
    """What :func:`denoising_loss` computed.

    ``loss`` is the scalar to back-propagate (mean of ``per_example``); ``per_example``
    ``[B]`` the weighted target-space MSE per item; ``x0_mse`` ``[B]`` the unweighted MSE of
    the implied x0 (detached, a parameterisation-free diagnostic); ``t`` ``[B]`` the times.
    """

    loss: torch.Tensor
    per_example: torch.Tensor
    x0_mse: torch.Tensor
    t: torch.Tensor


def sample_times(batch: int, device: torch.device | str, generator: torch.Generator | None = None,
                 t_min: float = T_MIN) -> torch.Tensor:
    """``[batch]`` times from U(t_min, 1), drawn on the generator's device then moved."""
    where = generator.device if generator is not None else device
    u = torch.rand(batch, generator=generator, device=where)
    return (t_min + (1 - t_min) * u).to(device)


def denoising_loss(denoise: Denoiser, x0: torch.Tensor, schedule: NoiseSchedule,
                   parameterization: str = "eps", weighting: str = "none", *,
                   min_snr_gamma: float = 5.0, t: torch.Tensor | None = None,
                   noise: torch.Tensor | None = None, generator: torch.Generator | None = None,
                   t_min: float = T_MIN) -> LossTerms:
    """The weighted denoising loss of ``denoise`` on clean audio ``x0`` ``[B, 1, T]``.

    Args:
        denoise: ``denoise(x_t [B, 1, T], t [B]) -> prediction [B, 1, T]`` in
            ``parameterization``.
        schedule: the noise schedule.
        parameterization: ``"eps"``, ``"x0"``, ``"v"`` or ``"score"``.
        weighting: ``"none"``, ``"snr"``, ``"min_snr"`` or ``"truncated_snr"`` (module doc).
        min_snr_gamma: the clamp of ``"min_snr"``.
        t: ``[B]`` times in (0, 1]; drawn from U(t_min, 1) when None.
        noise: ``[B, 1, T]`` standard normal noise; drawn when None.
        generator: source of the drawn ``t`` and noise (the global RNG when None).
    """
    check_parameterization(parameterization)
    check_weighting(weighting)
    batch = x0.shape[0]
    if t is None:
        t = sample_times(batch, x0.device, generator, t_min)
    t = t.to(device=x0.device, dtype=x0.dtype)
    if noise is None:
        where = generator.device if generator is not None else x0.device
        noise = torch.randn(x0.shape, generator=generator, device=where, dtype=x0.dtype)
    noise = noise.to(device=x0.device, dtype=x0.dtype)
    alpha, sigma = schedule.alpha_sigma(t)
    a, s = broadcast_to(alpha, x0), broadcast_to(sigma, x0)
    x_t = a * x0 + s * noise
    # Losses in float32 even when the network runs under autocast.
    prediction = denoise(x_t, t).float()
    target = target_of(parameterization, x0, noise, a, s).float()
    mse = (prediction - target).pow(2).flatten(1).mean(1)
    per_example = mse * loss_factor(weighting, parameterization, alpha, sigma, min_snr_gamma).float()
    with torch.no_grad():
        x0_hat = to_x0_eps(parameterization, prediction.detach(), x_t, a, s)[0]
        x0_mse = (x0_hat - x0).pow(2).flatten(1).mean(1)
    return LossTerms(per_example.mean(), per_example, x0_mse, t)
