"""A vocoder's bias denoiser: subtract the spectrum it produces for silence.

Vocoders leave a fixed, input-independent signal in their output: WaveGlow's stationary
tones at multiples of ``sample_rate / n_group`` ("line noise"), a GAN generator's hum at
multiples of ``sample_rate / hop``. Rendering a *silent* mel (every band at the front-end's
floor) shows that bias alone; its average magnitude spectrum is then subtracted from every
frame of the real output, scaled by ``strength``, keeping the output's phase::

    bias [n_freq]  = mean over frames of |STFT(vocoder(silent mel))|
    |Y'| = max(|Y| - strength * bias, 0) ;  y' = ISTFT(|Y'| e^{i angle Y})

(the WaveGlow authors' denoiser, made a standalone module usable with any vocoder: a
bundle or pipeline, or any ``mel -> audio`` callable.) The STFT is a centred Hann STFT of
``n_fft`` (1024) with hop ``n_fft / 4``.

Streaming. The operation is local: an output sample depends only on the input within
``n_fft`` samples of it. :class:`StreamingDenoiser` therefore denoises a stream of pieces
(a chunked vocoder's output) in hop-aligned blocks with ``n_fft`` samples of context on each
side, and its output equals denoising the whole signal at once (tested), so ``wavegen vocode
--denoise`` keeps flat memory.
"""

from __future__ import annotations

import math
from typing import Callable

import torch

from wavegen.audio.features import FeatureConfig
from wavegen.audio.spectral import STFT, compress
from wavegen.errors import UsageError

#: Frames of the silent mel the bias is measured on (the WaveGlow denoiser's 88).
SILENT_FRAMES = 88
#: Default denoiser FFT size.
N_FFT = 1024
#: Samples per block of the streaming denoiser (a multiple of every hop used here).
STREAM_BLOCK = 16384


def silent_mel(features: FeatureConfig, frames: int = SILENT_FRAMES) -> torch.Tensor:
    """``[1, n_mels, frames]``: every band at the front-end's floor (digital silence)."""
    return compress(torch.zeros(1, features.n_mels, frames), features)


class BiasDenoiser:
    """``audio -> audio`` minus ``strength`` times a fixed bias magnitude spectrum.

    Args:
        bias: ``[n_fft // 2 + 1]`` magnitude spectrum to subtract (see :meth:`from_vocoder`).
        sample_rate: of the audio it denoises.
        n_fft: FFT size the bias was measured with (hop ``n_fft // 4``).
    """

    def __init__(self, bias: torch.Tensor, sample_rate: int, n_fft: int = N_FFT):
        if n_fft < 16 or n_fft % 4:
            raise UsageError(f"denoiser n_fft must be a multiple of 4 and >= 16, got {n_fft}")
        bias = torch.as_tensor(bias, dtype=torch.float32).reshape(-1)
        if bias.numel() != n_fft // 2 + 1 or not torch.isfinite(bias).all():
            raise UsageError(f"denoiser bias must be {n_fft // 2 + 1} finite magnitudes, "
                             f"got {bias.numel()}")
        self.bias = bias
        self.sample_rate = int(sample_rate)
        self.n_fft = n_fft
        self.stft = STFT(FeatureConfig(sample_rate=self.sample_rate, n_fft=n_fft,
                                       hop_length=n_fft // 4, win_length=n_fft,
                                       n_mels=1, fmax=None, padding="center",
                                       name="bias-denoiser"))

    @property
    def hop(self) -> int:
        return self.n_fft // 4

    @classmethod
    def from_audio(cls, bias_audio: torch.Tensor, sample_rate: int,
                   n_fft: int = N_FFT) -> "BiasDenoiser":
        """The denoiser whose bias is the mean magnitude spectrum of ``bias_audio``
        (``[T]``, ``[1, T]`` or ``[1, 1, T]``: a vocoder's output for a silent mel)."""
        wave = torch.as_tensor(bias_audio, dtype=torch.float32).reshape(-1)
        if wave.numel() <= n_fft:
            raise UsageError(f"the bias audio ({wave.numel()} samples) must be longer than "
                             f"n_fft ({n_fft})")
        probe = cls(torch.zeros(n_fft // 2 + 1), sample_rate, n_fft)
        return cls(probe.stft(wave).abs().mean(dim=-1), sample_rate, n_fft)

    @classmethod
    def from_vocoder(cls, vocoder: Callable[[torch.Tensor], torch.Tensor],
                     features: FeatureConfig, n_fft: int = N_FFT,
                     frames: int = SILENT_FRAMES) -> "BiasDenoiser":
        """The denoiser of ``vocoder`` (``mel [1, n_mels, F] -> audio [1, 1, F hop]``): its
        output for :func:`silent_mel` of ``features``."""
        with torch.inference_mode():
            audio = vocoder(silent_mel(features, frames))
        return cls.from_audio(audio.float().cpu(), features.sample_rate, n_fft)

    def __call__(self, audio: torch.Tensor, strength: float = 0.1) -> torch.Tensor:
        """``audio`` (``[..., T]``) with ``strength`` times the bias removed (same shape)."""
        if not (math.isfinite(strength) and strength >= 0):
            raise UsageError(f"denoise strength must be a finite number >= 0, got {strength}")
        if strength == 0:
            return audio
        length = audio.shape[-1]
        if length <= self.n_fft // 2:
            return audio  # too short for one centred frame: nothing to subtract reliably
        spec = self.stft(audio.float())
        magnitude = (spec.abs() - strength * self.bias.to(spec.device)[:, None]).clamp_min(0.0)
        cleaned = torch.polar(magnitude, spec.angle())
        return self.stft.inverse(cleaned, length=length).reshape(audio.shape).to(audio.dtype)

    def stream(self, strength: float, sink: Callable[[torch.Tensor], None]) -> "StreamingDenoiser":
        """A :class:`StreamingDenoiser` writing to ``sink``."""
        return StreamingDenoiser(self, strength, sink)


class StreamingDenoiser:
    """Denoises pieces ``[B, C, n]`` as they arrive; the concatenated output equals the
    denoiser applied to the whole signal (module docstring). Call :meth:`close` at the end.
    """

    def __init__(self, denoiser: BiasDenoiser, strength: float,
                 sink: Callable[[torch.Tensor], None], block: int = STREAM_BLOCK):
        self.denoiser, self.strength, self.sink = denoiser, strength, sink
        self.context = denoiser.n_fft
        self.block = max(block // denoiser.hop, 1) * denoiser.hop
        self.left: torch.Tensor | None = None     # emitted samples kept as left context
        self.pending: torch.Tensor | None = None  # received, not yet emitted

    def __call__(self, piece: torch.Tensor) -> None:
        self.pending = piece if self.pending is None else torch.cat([self.pending, piece], -1)
        while self.pending.shape[-1] >= self.block + self.context:
            self._emit(self.block, final=False)

    def _emit(self, count: int, final: bool) -> None:
        left = self.left if self.left is not None else self.pending[..., :0]
        take = self.pending.shape[-1] if final else count + self.context
        window = torch.cat([left, self.pending[..., :take]], dim=-1)
        cleaned = self.denoiser(window, self.strength)
        out = cleaned[..., left.shape[-1]:left.shape[-1] + count]
        self.sink(out)
        done = torch.cat([left, self.pending[..., :count]], dim=-1)
        # keep a hop-aligned left context of at least n_fft samples
        keep = min(done.shape[-1], 2 * self.context)
        self.left = done[..., done.shape[-1] - keep:]
        self.pending = self.pending[..., count:]

    def close(self) -> None:
        """Denoise and emit what is left (the end of the signal)."""
        if self.pending is not None and self.pending.shape[-1]:
            self._emit(self.pending.shape[-1], final=True)


__all__ = ["BiasDenoiser", "N_FFT", "SILENT_FRAMES", "StreamingDenoiser", "silent_mel"]
