"""A fixed affine map of a model's conditioning input: ``(local + offset) * scale``.

Log-mels of the HiFi-GAN front-ends lie in about [-11.5, 2] (natural log clamped at 1e-5)
with a mean near -8 on music with quiet high bands. Fed as they are into a network whose
first layers are small-initialised convolutions, their time-frequency *variation* ends up
a few per cent of a constant offset (measured on a DiffWave: the upsampled mel came out at
-0.27 +- 0.085), so the conditioning barely moves the gates and the model learns to ignore
it for thousands of steps. The official DiffWave avoids this by rescaling its dB mel to
[0, 1]; here the model does it itself, so bundles keep the standard front-end (mel files
from other tools stay usable) and chunking is unaffected (the map is per value).
"""

from __future__ import annotations

import math

import torch

from wavegen.errors import ConfigError


def check_input_level(owner: str, offset: float, scale: float) -> None:
    """ConfigError unless ``offset`` is finite and ``scale`` finite and > 0."""
    if not math.isfinite(offset):
        raise ConfigError(f"{owner}: local_offset must be finite, got {offset}")
    if not (math.isfinite(scale) and scale > 0):
        raise ConfigError(f"{owner}: local_scale must be a finite number > 0, got {scale}")


def apply_input_level(local: torch.Tensor, offset: float, scale: float) -> torch.Tensor:
    """``(local + offset) * scale`` (the identity, uncopied, for offset 0 and scale 1)."""
    if offset == 0.0 and scale == 1.0:
        return local
    return (local + offset) * scale


__all__ = ["apply_input_level", "check_input_level"]
