"""Classifier-free guidance (Ho & Salimans 2021) for diffusion denoisers.

The guided prediction is ``uncond + scale * (cond - uncond)``. Every parameterisation
(eps, x0, v, score) is an affine function of any other at fixed ``x_t`` and the weights
``1 - scale`` and ``scale`` sum to one, so guiding in any of them gives the same result.
"""

from __future__ import annotations

from typing import Callable

import torch

Denoiser = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def guided(cond: torch.Tensor, uncond: torch.Tensor, scale: float) -> torch.Tensor:
    """``uncond + scale * (cond - uncond)`` for two predictions of the same shape."""
    return uncond + scale * (cond - uncond)


def classifier_free_guidance(denoise_cond: Denoiser, denoise_uncond: Denoiser,
                             scale: float) -> Denoiser:
    """A denoiser ``(x_t [B, 1, T], t [B]) -> prediction`` that applies guidance ``scale``.

    ``scale = 1`` is the conditional model and ``scale = 0`` the unconditional one; each
    evaluates only that model. Larger scales trade diversity for adherence to the
    conditioning.
    """
    if scale == 1:
        return denoise_cond
    if scale == 0:
        return denoise_uncond

    def denoise(x_t: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        return guided(denoise_cond(x_t, t), denoise_uncond(x_t, t), scale)

    return denoise
