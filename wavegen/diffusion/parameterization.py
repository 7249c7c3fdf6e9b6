"""What the denoising network predicts, and exact conversions between the choices.

With ``x_t = alpha * x0 + sigma * eps`` the network may predict

* ``"eps"``: the noise ``eps`` (DDPM, DiffWave);
* ``"x0"``: the clean signal ``x0``;
* ``"v"``: ``v = alpha * eps - sigma * x0`` (Salimans & Ho 2022);
* ``"score"``: ``grad log p(x_t) = -eps / sigma`` (for the optimal denoiser).

Given ``x_t``, each is an affine function of the others, so every prediction converts to
the pair ``(x0, eps)`` (:func:`to_x0_eps`) and back (:func:`target_of`). ``alpha`` and
``sigma`` are floats or tensors: ``[B]`` tensors are broadcast over the remaining axes of
``x_t`` (``[B, 1, T]``); any other shape must broadcast as is. Conversions divide by
``alpha`` (eps/score -> x0) or ``sigma`` (x0 -> eps; every conversion of score), so those
must be non-zero where they are used: every schedule keeps ``alpha > 0``, and ``sigma = 0``
only at ``t = 0`` of VP schedules, where no network is evaluated.
"""

from __future__ import annotations

import torch

from wavegen.errors import ConfigError

PARAMETERIZATIONS = ("eps", "x0", "v", "score")

Scale = torch.Tensor | float


def check_parameterization(kind: str) -> str:
    """``kind`` if it names a parameterisation, else a ConfigError."""
    if kind not in PARAMETERIZATIONS:
        raise ConfigError(f"parameterization must be one of {', '.join(PARAMETERIZATIONS)}, "
                          f"got {kind!r}")
    return kind


def broadcast_to(scale: Scale, like: torch.Tensor) -> Scale:
    """A per-example ``[B]`` scale reshaped to ``[B, 1, ..., 1]`` to broadcast over ``like``."""
    if torch.is_tensor(scale) and scale.ndim == 1 and like.ndim > 1 and scale.shape[0] == like.shape[0]:
        return scale.reshape(-1, *([1] * (like.ndim - 1)))
    return scale


def to_x0_eps(kind: str, prediction: torch.Tensor, x_t: torch.Tensor, alpha: Scale,
              sigma: Scale) -> tuple[torch.Tensor, torch.Tensor]:
    """The ``(x0, eps)`` implied by a ``kind`` prediction at ``x_t``; all ``[B, 1, T]``."""
    check_parameterization(kind)
    alpha, sigma = broadcast_to(alpha, x_t), broadcast_to(sigma, x_t)
    if kind == "eps":
        eps = prediction
        return (x_t - sigma * eps) / alpha, eps
    if kind == "x0":
        x0 = prediction
        return x0, (x_t - alpha * x0) / sigma
    if kind == "v":
        # Solve [alpha sigma; -sigma alpha] [x0; eps] = [x_t; v]; the determinant
        # alpha^2 + sigma^2 is 1 for VP schedules but not for VE.
        norm = alpha * alpha + sigma * sigma
        return ((alpha * x_t - sigma * prediction) / norm,
                (sigma * x_t + alpha * prediction) / norm)
    eps = -sigma * prediction
    return (x_t - sigma * eps) / alpha, eps


def target_of(kind: str, x0: torch.Tensor, eps: torch.Tensor, alpha: Scale,
              sigma: Scale) -> torch.Tensor:
    """What a ``kind`` network should output for clean ``x0`` and noise ``eps``; ``[B, 1, T]``."""
    check_parameterization(kind)
    alpha, sigma = broadcast_to(alpha, x0), broadcast_to(sigma, x0)
    if kind == "eps":
        return eps
    if kind == "x0":
        return x0
    if kind == "v":
        return alpha * eps - sigma * x0
    return -eps / sigma


def convert(prediction: torch.Tensor, source: str, target: str, x_t: torch.Tensor,
            alpha: Scale, sigma: Scale) -> torch.Tensor:
    """A ``source`` prediction re-expressed as a ``target`` prediction (same ``x_t``)."""
    if source == target:
        check_parameterization(source)
        return prediction
    x0, eps = to_x0_eps(source, prediction, x_t, alpha, sigma)
    return target_of(target, x0, eps, alpha, sigma)


def x0_error_scale(kind: str, alpha: Scale, sigma: Scale) -> Scale:
    """``c`` with ``|target error|^2 = c * |x0 error|^2`` at fixed ``x_t``.

    From the conversions: an x0 error ``d`` means an eps error ``-(alpha / sigma) d``, a v
    error ``-((alpha^2 + sigma^2) / sigma) d`` and a score error ``(alpha / sigma^2) d``.
    So ``c`` is 1 (x0), ``SNR`` (eps), ``(alpha^2 + sigma^2)^2 / sigma^2`` (v; ``SNR + 1``
    for VP) and ``alpha^2 / sigma^4`` (score).
    """
    check_parameterization(kind)
    if kind == "x0":
        return torch.ones_like(alpha) if torch.is_tensor(alpha) else 1.0
    if kind == "eps":
        return (alpha / sigma) ** 2
    if kind == "v":
        return (alpha * alpha + sigma * sigma) ** 2 / sigma ** 2
    return alpha ** 2 / sigma ** 4
