"""STFT, magnitude, mel and log-mel front-ends as differentiable ``nn.Module``s.

Every module is built from one :class:`~wavegen.audio.features.FeatureConfig`, works on any
device, computes in float32 (float64 input stays float64, half precision is promoted), and
accepts batched waveforms:

* ``[time]`` -> ``[freq, frames]``
* ``[batch, time]`` or ``[batch, 1, time]`` -> ``[batch, freq, frames]``
* ``[batch, channels, time]`` (channels > 1) -> ``[batch, channels, freq, frames]``

so that a mono waveform in the package convention ``[batch, 1, time]`` yields the
spectrogram convention ``[batch, freq, frames]``.

Mel filterbanks come from :func:`librosa.filters.mel` (not re-derived), and windows from
:func:`librosa.filters.get_window`, so a FeatureConfig means exactly what librosa means.
"""

from __future__ import annotations

import math

import librosa
import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from wavegen.audio.features import FeatureConfig
from wavegen.errors import UsageError


def window_tensor(config: FeatureConfig) -> torch.Tensor:
    """The analysis window, length ``win_length`` (periodic, as librosa uses), float32."""
    window = librosa.filters.get_window(config.window, config.win_length, fftbins=True)
    return torch.from_numpy(np.asarray(window, dtype=np.float32))


def mel_filterbank(config: FeatureConfig) -> torch.Tensor:
    """Mel filterbank ``[n_mels, n_freq]`` from librosa with the config's scale and norm."""
    basis = librosa.filters.mel(
        sr=config.sample_rate, n_fft=config.n_fft, n_mels=config.n_mels, fmin=config.fmin,
        fmax=config.fmax_hz, htk=config.mel_scale == "htk", norm=config.mel_norm,
        dtype=np.float32)
    return torch.from_numpy(basis)


def mel_frequencies(config: FeatureConfig) -> np.ndarray:
    """Centre frequency in Hz of each mel band, ``[n_mels]`` (for plots and metrics)."""
    edges = librosa.mel_frequencies(n_mels=config.n_mels + 2, fmin=config.fmin,
                                    fmax=config.fmax_hz, htk=config.mel_scale == "htk")
    return edges[1:-1]


def _flatten_waveform(wave: torch.Tensor) -> tuple[torch.Tensor, tuple[int, ...]]:
    """Reshape a waveform to ``[n, time]``; return it and the leading shape to restore."""
    if wave.dim() == 0:
        raise UsageError("expected a waveform with a time axis, got a scalar")
    if wave.dim() == 3 and wave.shape[1] == 1:
        wave = wave[:, 0]
    lead = tuple(wave.shape[:-1])
    return wave.reshape(-1, wave.shape[-1]), lead


def _working_precision(x: torch.Tensor) -> torch.Tensor:
    """float64 stays float64 (for exact checks); everything else computes in float32."""
    return x if x.dtype == torch.float64 else x.float()


def _unflatten(spec: torch.Tensor, lead: tuple[int, ...]) -> torch.Tensor:
    return spec.reshape(*lead, *spec.shape[-2:])


def compress(mel: torch.Tensor, config: FeatureConfig) -> torch.Tensor:
    """Apply the config's log compression (with its clamp) to a linear mel / spectrogram."""
    if config.log == "none":
        return mel
    clamped = mel.clamp_min(config.log_clamp)
    if config.log == "ln":
        return torch.log(clamped)
    if config.log == "log10":
        return torch.log10(clamped)
    # Decibels of the amplitude: 20 log10 |X| whatever power the spectrum was raised to.
    return (20.0 / config.power) * torch.log10(clamped)


def decompress(logmel: torch.Tensor, config: FeatureConfig) -> torch.Tensor:
    """Inverse of :func:`compress` (values at the clamp floor come back as the floor)."""
    if config.log == "none":
        return logmel
    if config.log == "ln":
        return torch.exp(logmel)
    if config.log == "log10":
        return torch.pow(10.0, logmel)
    return torch.pow(10.0, logmel * (config.power / 20.0))


class STFT(nn.Module):
    """Complex STFT with the config's window, padding and normalisation.

    ``forward(wave)`` maps ``[..., time]`` to complex ``[..., n_freq, frames]`` (see the module
    docstring for how a channel axis is handled). :meth:`inverse` is the matching ISTFT.
    """

    def __init__(self, config: FeatureConfig):
        super().__init__()
        self.config = config
        self.register_buffer("window", window_tensor(config), persistent=False)

    def _check_length(self, length: int) -> None:
        c = self.config
        if c.pad_mode == "reflect" and c.pad_amount >= length:
            raise UsageError(f"signal of {length} samples is too short for reflect padding of "
                             f"{c.pad_amount} samples (n_fft={c.n_fft})")
        if c.num_frames(length) < 1:
            raise UsageError(f"signal of {length} samples is shorter than one frame "
                             f"(n_fft={c.n_fft}, padding={c.padding!r})")

    def forward(self, wave: torch.Tensor) -> torch.Tensor:
        c = self.config
        flat, lead = _flatten_waveform(wave)
        self._check_length(flat.shape[-1])
        flat = _working_precision(flat)
        if c.padding == "hop_aligned" and c.pad_amount > 0:
            flat = F.pad(flat.unsqueeze(1), (c.pad_amount, c.pad_amount), mode=c.pad_mode).squeeze(1)
        spec = torch.stft(
            flat, n_fft=c.n_fft, hop_length=c.hop_length, win_length=c.win_length,
            window=self.window.to(flat.device, flat.dtype), center=c.padding == "center", pad_mode=c.pad_mode,
            normalized=c.stft_normalized, onesided=True, return_complex=True)
        return _unflatten(spec, lead)

    def inverse(self, spec: torch.Tensor, length: int | None = None) -> torch.Tensor:
        """ISTFT: complex ``[..., n_freq, frames]`` -> ``[..., time]`` (float32).

        With ``padding="center"`` this is torch's exact least-squares ISTFT. With
        ``"hop_aligned"`` the frames are first overlap-added as if centred and the
        difference in padding is then trimmed, which is exact too.
        """
        c = self.config
        lead = tuple(spec.shape[:-2])
        flat = spec.reshape(-1, *spec.shape[-2:])
        frames = flat.shape[-1]
        window = self.window.to(flat.device, flat.real.dtype)
        if c.padding == "center":
            wave = torch.istft(flat, n_fft=c.n_fft, hop_length=c.hop_length,
                               win_length=c.win_length, window=window, center=True,
                               normalized=c.stft_normalized, onesided=True, length=length)
        else:
            # Overlap-add without centring gives the padded signal; drop the padding.
            full = c.n_fft + (frames - 1) * c.hop_length
            wave = _istft_uncentered(flat, c, window, full)
            wave = wave[..., c.pad_amount:]
            if length is not None:
                if wave.shape[-1] < length:
                    wave = F.pad(wave, (0, length - wave.shape[-1]))
                wave = wave[..., :length]
            else:
                wave = wave[..., : max(full - 2 * c.pad_amount, 0)]
        return wave.reshape(*lead, wave.shape[-1])


def _istft_uncentered(spec: torch.Tensor, c: FeatureConfig, window: torch.Tensor,
                      full_length: int) -> torch.Tensor:
    """Least-squares overlap-add of uncentred frames: ``[n, freq, frames]`` -> ``[n, full]``.

    torch.istft(center=False) rejects windows whose edge samples are zero (NOLA check at the
    borders), which a Hann window always has, so the overlap-add is done here directly.
    """
    win = window
    if c.win_length < c.n_fft:
        left = (c.n_fft - c.win_length) // 2
        win = F.pad(win, (left, c.n_fft - c.win_length - left))
    scale = math.sqrt(c.n_fft) if c.stft_normalized else 1.0
    frames = torch.fft.irfft(spec * scale, n=c.n_fft, dim=-2)  # [n, n_fft, frames]
    frames = frames * win[:, None]
    wave = F.fold(frames, output_size=(1, full_length), kernel_size=(1, c.n_fft),
                  stride=(1, c.hop_length))[:, 0, 0]
    norm = F.fold((win ** 2)[None, :, None].expand(1, c.n_fft, frames.shape[-1]),
                  output_size=(1, full_length), kernel_size=(1, c.n_fft),
                  stride=(1, c.hop_length))[:, 0, 0]
    # Where the summed squared window is ~0 (the outermost samples) nothing can be recovered.
    return wave / torch.where(norm > 1e-11, norm, torch.ones_like(norm))


class Spectrogram(nn.Module):
    """``|STFT|^power`` as ``[..., n_freq, frames]`` float32."""

    def __init__(self, config: FeatureConfig):
        super().__init__()
        self.config = config
        self.stft = STFT(config)

    def forward(self, wave: torch.Tensor) -> torch.Tensor:
        return magnitude(self.stft(wave), self.config.power, self.config.magnitude_eps)


class _SafeHypot(torch.autograd.Function):
    """``hypot(re, im)`` whose gradient is 0 where the result is exactly 0 (not 0/0 = NaN)."""

    @staticmethod
    def forward(ctx, real: torch.Tensor, imag: torch.Tensor) -> torch.Tensor:
        out = torch.hypot(real, imag)
        ctx.save_for_backward(real, imag, out)
        return out

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        real, imag, out = ctx.saved_tensors
        scale = torch.where(out > 0, grad / torch.where(out > 0, out, torch.ones_like(out)),
                            torch.zeros_like(out))
        return scale * real, scale * imag


def magnitude(spec: torch.Tensor, power: float = 1.0, eps: float = 0.0) -> torch.Tensor:
    """``(|spec|^2 + eps)^(power / 2)`` for a complex spectrogram ``[..., F, N]``; real.

    Differentiable everywhere: where ``|spec|^2 + eps`` is exactly 0 (digital silence with
    ``eps == 0``) the gradient is 0 rather than the NaN a plain square root gives. Values are
    bitwise the same with and without autograd, so identical inputs always compare equal.
    """
    if eps == 0.0 and power == 1.0:
        return _SafeHypot.apply(spec.real, spec.imag)
    squared = spec.real.square() + spec.imag.square() + eps
    if power == 2.0:
        return squared
    positive = squared > 0
    # torch.where differentiates both branches: feed the unused one a harmless 1.
    safe = torch.where(positive, squared, torch.ones_like(squared))
    return torch.where(positive, safe.pow(power / 2.0), torch.zeros_like(squared))


class MelSpectrogram(nn.Module):
    """Linear-amplitude mel spectrogram ``[..., n_mels, frames]`` (``power`` applied)."""

    def __init__(self, config: FeatureConfig):
        super().__init__()
        self.config = config
        self.spectrogram = Spectrogram(config)
        self.register_buffer("filterbank", mel_filterbank(config), persistent=False)

    def forward(self, wave: torch.Tensor) -> torch.Tensor:
        spec = self.spectrogram(wave)
        return self.filterbank.to(spec.dtype) @ spec


class LogMelSpectrogram(nn.Module):
    """Log-compressed mel spectrogram ``[..., n_mels, frames]``: the vocoder features.

    The output carries no normalisation beyond the config's log and clamp; a vocoder given
    these features should be built from the same FeatureConfig (see ``check_compatible``).
    """

    def __init__(self, config: FeatureConfig):
        super().__init__()
        self.config = config
        self.mel = MelSpectrogram(config)

    def forward(self, wave: torch.Tensor) -> torch.Tensor:
        return compress(self.mel(wave), self.config)
