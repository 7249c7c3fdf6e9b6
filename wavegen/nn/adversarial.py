"""What every GAN discriminator returns, how several are combined, and the GAN losses.

The discriminator protocol. A discriminator is an ``nn.Module`` called as
``disc(real, fake, mel=None) -> (real_outputs, fake_outputs)`` with ``real`` and ``fake``
waveforms ``[B, 1, T]`` (either may be None when only the other is needed) and ``mel`` the
conditioning ``[B, n_mels, frames]`` for conditional discriminators. Each output list holds
one :class:`DiscriminatorOutput` per sub-discriminator (a scale, a period, a random window).
Real and fake go through the *same* call so that any randomness (GAN-TTS's random windows)
is shared and feature maps stay comparable for the feature-matching loss.

Losses (``scores`` are lists of ``[B, ...]`` tensors, one per sub-discriminator; each term is
a mean over its own elements, and the terms are summed over sub-discriminators, as in
HiFi-GAN):

* least squares (Mao et al. 2017; MelGAN's successors, HiFi-GAN): D: ``(1 - D(x))^2 + D(G(s))^2``,
  G: ``(1 - D(G(s)))^2``;
* hinge (Lim & Ye 2017; MelGAN, GAN-TTS): D: ``relu(1 - D(x)) + relu(1 + D(G(s)))``,
  G: ``-D(G(s))``;
* feature matching (Larsen et al. 2016; MelGAN, HiFi-GAN): L1 between the discriminator's
  feature maps of real and generated audio, real side detached.
"""

from __future__ import annotations

from typing import NamedTuple, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from wavegen.errors import ConfigError

ADVERSARIAL_LOSSES = ("lsgan", "hinge")


class DiscriminatorOutput(NamedTuple):
    """One sub-discriminator's verdict: ``score`` ``[B, ...]`` and its hidden feature maps."""

    score: torch.Tensor
    features: list[torch.Tensor]


Outputs = Sequence[DiscriminatorOutput]


def check_adversarial_loss(kind: str) -> str:
    if kind not in ADVERSARIAL_LOSSES:
        raise ConfigError(f"adversarial loss must be one of {ADVERSARIAL_LOSSES}, got {kind!r}")
    return kind


def discriminator_loss(real: Outputs, fake: Outputs, kind: str = "lsgan") -> torch.Tensor:
    """Discriminator loss (float32 scalar) from the outputs on real and (detached) fake audio."""
    check_adversarial_loss(kind)
    total = 0.0
    for r, f in zip(real, fake, strict=True):
        r_score, f_score = r.score.float(), f.score.float()
        if kind == "lsgan":
            total = total + ((1.0 - r_score) ** 2).mean() + (f_score ** 2).mean()
        else:
            total = total + F.relu(1.0 - r_score).mean() + F.relu(1.0 + f_score).mean()
    return total


def generator_adversarial_loss(fake: Outputs, kind: str = "lsgan") -> torch.Tensor:
    """Generator's adversarial loss (float32 scalar) from the outputs on generated audio."""
    check_adversarial_loss(kind)
    total = 0.0
    for f in fake:
        score = f.score.float()
        total = total + (((1.0 - score) ** 2).mean() if kind == "lsgan" else -score.mean())
    return total


def feature_matching_loss(real: Outputs, fake: Outputs) -> torch.Tensor:
    """Sum over sub-discriminators and layers of the mean L1 between feature maps."""
    total = 0.0
    for r, f in zip(real, fake, strict=True):
        for r_map, f_map in zip(r.features, f.features, strict=True):
            total = total + (f_map.float() - r_map.detach().float()).abs().mean()
    return total


class DiscriminatorSet(nn.Module):
    """Several discriminators used as one: outputs concatenated in the order given.

    ``DiscriminatorSet({"mpd": MultiPeriod(...), "msd": MultiScale(...)})`` is HiFi-GAN's
    pair; any set combines with any generator.
    """

    def __init__(self, discriminators: dict[str, nn.Module]):
        super().__init__()
        if not discriminators:
            raise ConfigError("a discriminator set needs at least one discriminator")
        self.members = nn.ModuleDict(discriminators)

    def forward(self, real: torch.Tensor | None, fake: torch.Tensor | None,
                mel: torch.Tensor | None = None) -> tuple[list[DiscriminatorOutput],
                                                          list[DiscriminatorOutput]]:
        real_out: list[DiscriminatorOutput] = []
        fake_out: list[DiscriminatorOutput] = []
        for member in self.members.values():
            r, f = member(real, fake, mel)
            real_out.extend(r)
            fake_out.extend(f)
        return real_out, fake_out


__all__ = ["ADVERSARIAL_LOSSES", "DiscriminatorOutput", "DiscriminatorSet",
           "discriminator_loss", "generator_adversarial_loss", "feature_matching_loss",
           "check_adversarial_loss"]
