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

Real/fake batching (:func:`run_real_fake`, used by every discriminator in wavegen). Real and
fake audio must have the same shape ``[B, 1, T]``; they are stacked on the batch axis and
go through the discriminator in *one* pass, whose outputs are split back (rows ``:B`` real,
``B:`` fake). Unequal shapes are a :class:`~wavegen.errors.UsageError`, never two silent
passes, because:

* feature matching compares real and fake maps element by element, which only means
  something for the same audio span (a broadcast over a length-1 axis would even hide it);
* a discriminator with shared randomness (GAN-TTS's random windows, drawn per example) can
  only apply the same draw to the same shape;
* the training task always pairs a crop with the generator's output for that crop's mel,
  so unequal shapes mean a hop or cropping bug upstream, best reported where it shows.

Scoring real and fake audio of different shapes is still possible: call the discriminator
twice, ``disc(real, None)`` and ``disc(None, fake)``. One of the two may be None; both None
is a UsageError too. The discriminators have no batch statistics (no batch norm), so one
joint pass gives what two passes would, up to float rounding (in training mode a spectrally
normalised layer does one power iteration per call instead of two) with half the kernel
launches.
"""

from __future__ import annotations

from typing import Callable, NamedTuple, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from wavegen.errors import ConfigError, UsageError

ADVERSARIAL_LOSSES = ("lsgan", "hinge")


class DiscriminatorOutput(NamedTuple):
    """One sub-discriminator's verdict: ``score`` ``[B, ...]`` and its hidden feature maps."""

    score: torch.Tensor
    features: list[torch.Tensor]


Outputs = Sequence[DiscriminatorOutput]
#: What a discriminator returns: the outputs on real audio and those on fake audio.
Pair = tuple[list[DiscriminatorOutput], list[DiscriminatorOutput]]


def check_real_fake(real: torch.Tensor | None, fake: torch.Tensor | None) -> torch.Size:
    """The shape ``[B, 1, T]`` shared by ``real`` and ``fake`` (either may be None), or a
    UsageError: audio that is not ``[batch, 1, time]``, unequal shapes, or neither given."""
    for name, x in (("real", real), ("fake", fake)):
        if x is not None and (x.dim() != 3 or x.shape[1] != 1):
            raise UsageError(f"discriminator expects {name} audio [batch, 1, time], "
                             f"got shape {list(x.shape)}")
    if real is None and fake is None:
        raise UsageError("discriminator needs real or fake audio (both are None)")
    if real is not None and fake is not None and real.shape != fake.shape:
        raise UsageError(f"real and fake audio must have the same shape, got {list(real.shape)} "
                         f"and {list(fake.shape)} (score them in two calls if that is meant)")
    return (real if real is not None else fake).shape


def run_real_fake(run: Callable[[torch.Tensor], Sequence[DiscriminatorOutput]],
                  real: torch.Tensor | None, fake: torch.Tensor | None) -> Pair:
    """``run`` on real and fake audio in one pass; see "Real/fake batching" above.

    Args:
        run: the discriminator on one batch: ``[N, 1, T]`` -> its outputs, every score and
            feature map with the batch on axis 0. With both inputs it gets ``[2B, 1, T]``
            (real first), so anything it draws per example must be drawn for ``B`` and
            repeated (``N // B`` copies).
        real, fake: ``[B, 1, T]`` each, or None.

    Returns:
        (outputs on real, outputs on fake): lists of :class:`DiscriminatorOutput` in the
        order ``run`` returns them; the list of an input that is None is empty.
    """
    batch = check_real_fake(real, fake)[0]
    if real is None:
        return [], list(run(fake))
    if fake is None:
        return list(run(real)), []
    outputs = run(torch.cat([real, fake]))
    return ([DiscriminatorOutput(o.score[:batch], [f[:batch] for f in o.features])
             for o in outputs],
            [DiscriminatorOutput(o.score[batch:], [f[batch:] for f in o.features])
             for o in outputs])


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


__all__ = ["ADVERSARIAL_LOSSES", "DiscriminatorOutput", "DiscriminatorSet", "Pair",
           "check_real_fake", "run_real_fake", "discriminator_loss",
           "generator_adversarial_loss", "feature_matching_loss", "check_adversarial_loss"]
