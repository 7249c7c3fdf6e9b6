"""Mel -> waveform inference for the feed-forward vocoders (MelGAN, HiFi-GAN, ...).

:class:`Vocoder` wraps a trained generator for inference: weight norm folded, eval mode,
``torch.inference_mode``, optional bf16 autocast and ``torch.compile`` on a GPU. Long inputs
are vocoded in overlapping chunks so memory stays flat whatever the length: each chunk of
``chunk_frames`` mel frames is extended by ``overlap_frames`` of real context on both sides,
vocoded, and only its centre is kept. A generator is a stack of convolutions, so when the
context covers its receptive field (in frames) the kept centre equals the full-length
output up to float rounding; :func:`receptive_frames` measures that reach.

The bias denoiser that works with every vocoder family (the spectrum of the vocoder's output
for a silent mel, subtracted with a strength) lives in :mod:`wavegen.bias_denoiser` and is
re-exported here as :class:`BiasDenoiser`.
"""

from __future__ import annotations

import contextlib
import time
from dataclasses import dataclass
from typing import Callable, Iterator

import torch
from torch import nn

from wavegen.audio.features import FeatureConfig
from wavegen.bias_denoiser import BiasDenoiser  # noqa: F401  (re-exported)
from wavegen.errors import FeatureMismatchError, UsageError
from wavegen.nn.weight_norm import fold_weight_norm
from wavegen.utils.threads import shared_machine_threads

#: Default frames per chunk and context frames on each side.
CHUNK_FRAMES = 512
OVERLAP_FRAMES = 32


@torch.no_grad()
def receptive_frames(generator: nn.Module, num_mels: int, probe_frames: int = 129) -> int:
    """How many mel frames on each side can change one output sample (measured).

    Perturbs the middle frame of a zero mel and finds the outermost output samples that
    move, in frames. Costs one or two forward passes of ``probe_frames`` frames.
    """
    param = next(generator.parameters())
    mel = torch.zeros(1, num_mels, probe_frames, device=param.device, dtype=param.dtype)
    base = generator(mel)[0, 0]
    hop = base.shape[-1] // probe_frames
    mid = probe_frames // 2
    bumped = mel.clone()
    bumped[..., mid] = 1.0
    changed = (generator(bumped)[0, 0] - base).abs() > 0
    idx = changed.nonzero()[:, 0]
    if idx.numel() == 0:
        return 0
    first, last = int(idx[0]) // hop, int(idx[-1]) // hop
    return max(mid - first, last - mid)


@dataclass
class VocodeResult:
    """Audio ``[B, 1, frames * hop]`` and the wall time (seconds) of the generator runs."""

    audio: torch.Tensor
    seconds: float

    def real_time_factor(self, sample_rate: int) -> float:
        """Wall time / audio duration: < 1 is faster than real time."""
        return self.seconds / max(self.audio.shape[-1] / sample_rate, 1e-12)


class Vocoder:
    """A generator ready for inference.

    Args:
        generator: ``mel [B, n_mels, F] -> audio [B, 1, F * hop]`` (weight norm is folded in
            place; pass a copy to keep training the original).
        features: the FeatureConfig the generator was trained with (checks the mel shape).
        device: where to run (default: the generator's device).
        bf16: autocast to bfloat16 (GPU inference).
        compile: ``torch.compile`` the generator (GPU inference; the first chunk compiles).
    """

    def __init__(self, generator: nn.Module, features: FeatureConfig, device=None,
                 bf16: bool = False, compile: bool = False):
        self.features = features
        self.hop = features.hop_length
        self.device = torch.device(device) if device is not None else next(generator.parameters()).device
        self.generator = fold_weight_norm(generator).eval().to(self.device)
        self.bf16 = bf16
        self.run = torch.compile(self.generator, dynamic=True) if compile else self.generator

    def check_mel(self, mel: torch.Tensor) -> torch.Tensor:
        """``[n_mels, F]`` or ``[B, n_mels, F]`` -> ``[B, n_mels, F]``; a wrong band count is refused."""
        if mel.dim() == 2:
            mel = mel[None]
        if mel.dim() != 3:
            raise UsageError(f"mel must be [n_mels, frames] or [batch, n_mels, frames], got "
                             f"{tuple(mel.shape)}")
        if mel.shape[1] != self.features.n_mels:
            raise FeatureMismatchError(
                f"the mel has {mel.shape[1]} bands but this vocoder was trained on "
                f"{self.features.n_mels} ({self.features.name}, hop {self.hop}, "
                f"{self.features.sample_rate} Hz): compute features with its own FeatureConfig")
        if mel.shape[-1] < 1:
            raise UsageError("the mel has no frames")
        if not torch.isfinite(mel).all():
            raise UsageError("the mel contains NaN or infinite values")
        return mel

    def _autocast(self):
        if not self.bf16:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=torch.bfloat16)

    def chunks(self, mel: torch.Tensor, chunk_frames: int = CHUNK_FRAMES,
               overlap_frames: int = OVERLAP_FRAMES) -> Iterator[torch.Tensor]:
        """Audio pieces ``[B, 1, n * hop]`` in order (their concatenation is the output)."""
        mel = self.check_mel(mel)
        if chunk_frames < 1 or overlap_frames < 0:
            raise UsageError("chunk_frames must be >= 1 and overlap_frames >= 0")
        frames = mel.shape[-1]
        with torch.inference_mode(), self._autocast():
            for start in range(0, frames, chunk_frames):
                stop = min(start + chunk_frames, frames)
                lo, hi = max(0, start - overlap_frames), min(frames, stop + overlap_frames)
                piece = mel[..., lo:hi].to(self.device, torch.float32)
                with shared_machine_threads(self.device):  # fewer threads on a busy CPU
                    audio = self.run(piece).float()
                keep = audio[..., (start - lo) * self.hop:(stop - lo) * self.hop]
                yield keep.clamp(-1.0, 1.0)

    def __call__(self, mel: torch.Tensor, chunk_frames: int = CHUNK_FRAMES,
                 overlap_frames: int = OVERLAP_FRAMES,
                 sink: Callable[[torch.Tensor], None] | None = None) -> VocodeResult:
        """Vocode ``mel``; pieces go to ``sink`` (e.g. a file writer) or are concatenated.

        With a sink the returned audio is empty ``[B, 1, 0]`` and memory stays flat.
        """
        pieces = []
        seconds = 0.0
        start = time.perf_counter()
        for piece in self.chunks(mel, chunk_frames, overlap_frames):
            if self.device.type == "cuda":
                torch.cuda.synchronize(self.device)
            seconds += time.perf_counter() - start
            if sink is None:
                pieces.append(piece.cpu())
            else:
                sink(piece.cpu())
            start = time.perf_counter()
        if sink is not None or not pieces:
            batch = 1 if mel.dim() == 2 else mel.shape[0]
            return VocodeResult(torch.zeros(batch, 1, 0), seconds)
        return VocodeResult(torch.cat(pieces, dim=-1), seconds)


__all__ = ["BiasDenoiser", "Vocoder", "VocodeResult", "receptive_frames", "CHUNK_FRAMES",
           "OVERLAP_FRAMES"]
