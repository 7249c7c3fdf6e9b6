"""Learned upsamplers from frame rate (mel, piano roll) to audio rate, for local conditioning.

Both kinds multiply the time axis by ``prod(factors)``, which must equal the features'
hop length: ``[B, C, frames] -> [B, C, frames * hop]``. A product that differs from the
hop is a :class:`~wavegen.errors.ConfigError` at construction, and a conditioning sequence
whose upsampled length differs from the audio's is refused by the model: features and
audio are never silently cropped to fit.

* ``"transposed"``: one transposed convolution per factor (kernel ``2 f``, stride ``f``),
  as in WaveNet vocoders (Shen et al. 2018; r9y9's wavenet_vocoder), with leaky ReLUs
  between stages.
* ``"nearest"``: repeat each frame ``f`` times, then smooth with a convolution of width
  ``2 f + 1`` per stage; free of the checkerboard artefacts of transposed convolutions.
* ``"repeat"``: repeat each frame ``f`` times, nothing learned: each output position sees
  exactly its own frame, so any stretch of frames upsamples to exactly the matching stretch
  of the whole sequence's output (what windowed sampling needs to join windows exactly;
  the priors over discrete codes, whose frames are learned embeddings already).

Both are depthwise (each feature channel has its own interpolation kernel, as r9y9's single
shared 2-D kernel does): mixing channels at the audio rate would cost ``C^2`` per sample
(73 GFLOP per second of audio for a 265-channel piano roll), and the model's per-layer 1x1
projection of the upsampled features mixes channels anyway.
"""

from __future__ import annotations

import math
from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from wavegen.errors import ConfigError, UsageError

UPSAMPLE_MODES = ("transposed", "nearest", "repeat")


def prime_factors(n: int) -> list[int]:
    """The prime factors of ``n >= 1`` in ascending order, with repetition (``12 -> [2, 2, 3]``)."""
    primes, f = [], 2
    while f * f <= n:
        while n % f == 0:
            primes.append(f)
            n //= f
        f += 1
    if n > 1:
        primes.append(n)
    return primes


def check_factors(factors: Sequence[int], hop_length: int) -> tuple[int, ...]:
    """Validate upsampling ``factors`` against ``hop_length``; return them as a tuple."""
    factors = tuple(int(f) for f in factors)
    if not factors or any(f < 1 for f in factors):
        raise ConfigError(f"upsample factors must be positive integers, got {list(factors)}")
    if math.prod(factors) != hop_length:
        shown = " x ".join(map(str, factors))
        raise ConfigError(f"upsample factors {shown} = {math.prod(factors)} must multiply to the "
                          f"features' hop length ({hop_length})")
    return factors


def check_local_features(local: torch.Tensor | None, channels: int, hop: int, length: int, *,
                         owner: str, batch: int | None = None, unit: str = "samples") -> None:
    """One-line UsageErrors unless ``local`` is frame-rate conditioning ``[B, channels,
    frames]`` (``B = batch`` when given) covering exactly ``length`` positions (``unit``:
    samples or positions) at ``hop`` per frame: the check every locally conditioned model
    (``owner``: "WaveNet", "SampleRNN", "transformer") makes."""
    if local is None:
        raise UsageError(f"this {owner} is locally conditioned: pass local features")
    leading = (batch, channels) if batch is not None else (local.shape[0], channels)
    if local.dim() != 3 or tuple(local.shape[:2]) != leading:
        shown = "batch" if batch is None else batch
        raise UsageError(f"local features must be [{shown}, {channels}, frames], "
                         f"got {tuple(local.shape)}")
    covered = local.shape[-1] * hop
    if covered != length:
        subject, what = ("the audio has", "audio") if unit == "samples" else ("there are",
                                                                               "tokens")
        raise UsageError(f"{local.shape[-1]} conditioning frames x hop {hop} = {covered} "
                         f"{unit}, but {subject} {length}: features and {what} must cover "
                         f"the same {unit}")


class _Stage(nn.Module):
    """One upsampling stage by an integer factor ``f``: ``[B, C, T] -> [B, C, T * f]``."""

    def __init__(self, channels: int, factor: int, mode: str):
        super().__init__()
        self.factor = factor
        self.mode = mode
        if mode == "transposed":
            self.conv = nn.ConvTranspose1d(channels, channels, 2 * factor, stride=factor,
                                           groups=channels)
        elif mode == "repeat":
            self.conv = None
        else:
            self.conv = nn.Conv1d(channels, channels, 2 * factor + 1, padding=factor,
                                  groups=channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.mode == "transposed":
            # Output length is (T + 1) * f; dropping f // 2 in front centres each frame's
            # kernel on its own f samples, and the total is then exactly T * f.
            y = self.conv(x)
            start = self.factor // 2
            return y[..., start:start + x.shape[-1] * self.factor]
        repeated = x.repeat_interleave(self.factor, dim=-1)
        return repeated if self.conv is None else self.conv(repeated)


class ConditioningUpsampler(nn.Module):
    """Frame-rate features ``[B, C, frames]`` -> audio-rate ``[B, C, frames * hop]``."""

    def __init__(self, channels: int, factors: Sequence[int], hop_length: int,
                 mode: str = "transposed"):
        super().__init__()
        if mode not in UPSAMPLE_MODES:
            raise ConfigError(f"upsample mode must be one of {UPSAMPLE_MODES}, got {mode!r}")
        self.factors = check_factors(factors, hop_length)
        self.hop_length = hop_length
        self.stages = nn.ModuleList(_Stage(channels, f, mode) for f in self.factors)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        x = features
        for i, stage in enumerate(self.stages):
            x = stage(x)
            if i < len(self.stages) - 1 and stage.conv is not None:
                x = F.leaky_relu(x, 0.4)
        return x
