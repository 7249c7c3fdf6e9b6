"""Objective metrics for generated audio, and unit helpers for likelihood models.

Metric functions take ``(reference, estimate)`` — ground truth first, note: the opposite
order from the loss modules in :mod:`wavegen.audio.losses`, which follow ``torch.nn``'s
``(input, target)``. Waveforms are ``[batch, 1, time]``, ``[batch, time]`` or ``[time]`` (a
batch of one), of equal shapes. Each metric returns a float32 ``[batch]`` tensor with one
value per item (``float(m.mean())`` for a summary), computed without autograd and in float32
whatever autocast region surrounds the call.

The two signals are compared frame by frame as given: nothing here time-aligns them (no
cross-correlation, no dynamic time warping), so an estimate shifted by a few samples
scores worse than it sounds.
"""

from __future__ import annotations

import math
from functools import lru_cache
from typing import Sequence

import numpy as np
import torch

from wavegen.audio.features import FeatureConfig
from wavegen.audio.losses import (PWG_RESOLUTIONS, MelL1Loss, SpectralLoss, autocast_disabled,
                                  check_waveform_pair, floored_magnitude, spectral_terms,
                                  stft_loss_config)
from wavegen.audio.spectral import STFT, MelSpectrogram
from wavegen.errors import UsageError

LN2 = math.log(2.0)

#: ``10 / ln 10 * sqrt(2)``: turns the Euclidean distance of natural-log mel cepstra into dB.
MCD_SCALE = 10.0 / math.log(10.0) * math.sqrt(2.0)


def _pair(reference: torch.Tensor, estimate: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    estimate, reference = check_waveform_pair(estimate, reference, allow_unbatched=True)
    return reference, estimate


@torch.no_grad()
def multi_resolution_stft_distance(
        reference: torch.Tensor, estimate: torch.Tensor,
        resolutions: Sequence[Sequence[int]] = PWG_RESOLUTIONS, window: str = "hann",
) -> SpectralLoss:
    """The multi-resolution STFT loss terms, per item.

    Same definitions as :class:`~wavegen.audio.losses.MultiResolutionSTFTLoss` (magnitudes
    floored at ``|X|^2 >= 1e-7``, averaged over resolutions), except that the spectral
    convergence norms run over each item rather than the whole batch, so for a batch of one
    the two agree. Returns a :class:`SpectralLoss` of ``[batch]`` tensors with
    ``total = spectral_convergence + log_magnitude``.
    """
    with autocast_disabled(reference, estimate):
        reference, estimate = _pair(reference, estimate)
        sc = torch.zeros(reference.shape[0], device=reference.device)
        log_mag = torch.zeros_like(sc)
        for fft_size, hop, win in resolutions:
            stft = STFT(stft_loss_config(fft_size, hop, win, window)).to(reference.device)
            sc_r, mag_r = spectral_terms(floored_magnitude(stft, estimate),
                                         floored_magnitude(stft, reference), per_item=True)
            sc += sc_r
            log_mag += mag_r
        sc /= len(resolutions)
        log_mag /= len(resolutions)
        return SpectralLoss(sc + log_mag, sc, log_mag)


@torch.no_grad()
def log_mel_l1(reference: torch.Tensor, estimate: torch.Tensor,
               config: FeatureConfig) -> torch.Tensor:
    """Mean absolute log-mel difference per item, ``[batch]`` (HiFi-GAN's "mel error").

    The log-mels are :class:`~wavegen.audio.spectral.LogMelSpectrogram` of ``config``.
    """
    with autocast_disabled(reference, estimate):
        reference, estimate = _pair(reference, estimate)
        loss = MelL1Loss(config).to(reference.device)
        return (loss.features(estimate) - loss.features(reference)).abs().mean((-2, -1))


@torch.no_grad()
def frame_grid_energy_share(wave: torch.Tensor, sample_rate: int, hop_length: int,
                            window_seconds: float = 1.0, tolerance_hz: float = 3.0) -> torch.Tensor:
    """Share of the energy lying on the frame-rate harmonic grid, per window, ``[windows]``.

    A mel vocoder that is exactly equivariant to a one-frame shift (HiFi-GAN, MelGAN) can
    hold a steady note only at multiples of ``sample_rate / hop_length``; this measures how
    much of a signal sits there: each ``window_seconds`` window (Hann, no overlap) is
    Fourier-transformed and the energy within ``tolerance_hz`` of a multiple ``k >= 1`` of
    the frame rate is divided by the total (DC excluded). Energy spread uniformly gives
    about ``(2 tolerance_hz + bin width) * hop / sample_rate`` (0.11 at 16 kHz, hop 256,
    1 s windows); recorded piano lies between 0.04 and 0.36 and the tiny HiFi-GAN's output
    at 0.97-1.00 (docs/RESULTS.md). ``wave``: ``[time]`` or ``[1, ..., time]`` (one signal).
    """
    signal = wave.detach().reshape(-1).double().cpu()
    size = int(round(window_seconds * sample_rate))
    if size < 2 or signal.numel() < size:
        raise UsageError(f"frame_grid_energy_share needs at least one {window_seconds:g} s "
                         f"window ({size} samples), got {signal.numel()}")
    windows = signal[:signal.numel() // size * size].reshape(-1, size)
    power = torch.fft.rfft(windows * torch.hann_window(size, periodic=False, dtype=torch.float64),
                           dim=-1).abs() ** 2
    freqs = torch.fft.rfftfreq(size, 1.0 / sample_rate, dtype=torch.float64)
    rate = sample_rate / hop_length
    nearest = torch.round(freqs / rate)
    on_grid = (nearest >= 1) & ((freqs - nearest * rate).abs() <= tolerance_hz)
    power[:, 0] = 0.0
    total = power.sum(-1).clamp_min(1e-30)
    return (power[:, on_grid].sum(-1) / total).float()


def chroma_correlation(reference: torch.Tensor, estimate: torch.Tensor, sample_rate: int,
                       n_fft: int = 2048, hop_length: int = 512) -> float:
    """Pearson correlation of the chromagrams of two signals (librosa's ``chroma_stft``,
    12 pitch classes per frame, all frames and classes pooled): 1 when the estimate plays
    the same pitch classes at the same times, about 0 for noise or unrelated music. Each
    signal ``[time]`` or ``[1, ..., time]``; the shorter length is used."""
    import librosa

    a = reference.detach().reshape(-1).double().cpu().numpy()
    b = estimate.detach().reshape(-1).double().cpu().numpy()
    length = min(len(a), len(b))
    if length < n_fft:
        raise UsageError(f"chroma_correlation needs at least {n_fft} samples, got {length}")
    chroma = [librosa.feature.chroma_stft(y=x[:length], sr=sample_rate, n_fft=n_fft,
                                          hop_length=hop_length).reshape(-1)
              for x in (a, b)]
    if chroma[0].std() == 0 or chroma[1].std() == 0:
        return 0.0
    return float(np.corrcoef(chroma[0], chroma[1])[0, 1])


@lru_cache(maxsize=16)
def dct_matrix(n_in: int, n_out: int) -> torch.Tensor:
    """Orthonormal DCT-II as a ``[n_out, n_in]`` float64 matrix (first ``n_out`` rows).

    ``dct_matrix(M, K) @ x`` equals ``scipy.fft.dct(x, type=2, norm="ortho")[:K]``.
    """
    k = np.arange(n_out)[:, None]
    m = np.arange(n_in)[None, :]
    basis = np.cos(np.pi * k * (2 * m + 1) / (2 * n_in)) * math.sqrt(2.0 / n_in)
    basis[0] /= math.sqrt(2.0)
    return torch.from_numpy(basis)


def mel_cepstrum(wave: torch.Tensor, config: FeatureConfig, n_mfcc: int = 13) -> torch.Tensor:
    """Mel cepstrum ``c_0 .. c_{n_mfcc-1}`` as ``[batch, n_mfcc, frames]`` float64.

    The cepstrum of the natural-log *amplitude* mel spectrum in the convention under which
    the MCD formula is derived (and which SPTK's mel-cepstra follow): with ``N`` mel bands,

        ``ln|X|_k ~ c_0 + 2 * sum_{m>=1} c_m cos(pi m (k + 1/2) / N)``, i.e.
        ``c_m = (1/N) sum_k ln|X|_k cos(pi m (k + 1/2) / N)``.

    This is the orthonormal DCT-II of ``ln|X|`` scaled by ``1 / sqrt(2 N)`` (``c_0``: by
    ``1 / sqrt(N)``). Librosa-style MFCCs (orthonormal DCT of the log *power*) are
    ``2 sqrt(2 N)`` times larger (about 25x for 80 bands) and give MCDs that are not
    comparable with published numbers. The power mel uses the config's framing, window and
    filterbank whatever ``config.power`` and ``config.log`` say; the floor before the log is
    ``config.log_clamp`` carried over to power (``log_clamp ** (2 / power)``), so silent frames
    stay finite. ``wave`` is float32 ``[batch, time]``.
    """
    if not 1 <= n_mfcc <= config.n_mels:
        raise UsageError(f"n_mfcc must be between 1 and n_mels ({config.n_mels}), got {n_mfcc}")
    power_config = config.replace(power=2.0, log="none")
    mel = MelSpectrogram(power_config).to(wave.device)(wave).double()
    floor = config.log_clamp ** (2.0 / config.power)
    log_amplitude = 0.5 * mel.clamp_min(floor).log()
    n = config.n_mels
    scale = torch.full((n_mfcc, 1), 1.0 / math.sqrt(2.0 * n), dtype=torch.float64)
    scale[0] = 1.0 / math.sqrt(n)
    return (scale * dct_matrix(n, n_mfcc)).to(wave.device) @ log_amplitude


@torch.no_grad()
def mel_cepstral_distortion(reference: torch.Tensor, estimate: torch.Tensor,
                            config: FeatureConfig, n_mfcc: int = 13) -> torch.Tensor:
    """Mel cepstral distortion in dB per item, ``[batch]``.

    Per frame, ``MCD = (10 / ln 10) * sqrt(2 * sum_{d=1}^{n_mfcc-1} (c_d - c'_d)^2)`` over
    the cepstra of :func:`mel_cepstrum` (``n_mfcc`` counts c0, like librosa's, and c0 — the
    frame energy — is excluded), then averaged over all frames, silent ones included. The
    frames are assumed to be aligned already: there is no dynamic time warping, so this is
    only meaningful for an estimate of the same length and timing as the reference (a
    vocoder's resynthesis), not for TTS output with different durations.
    """
    if n_mfcc < 2:
        raise UsageError(f"n_mfcc must be at least 2 (c0 is excluded), got {n_mfcc}")
    with autocast_disabled(reference, estimate):
        reference, estimate = _pair(reference, estimate)
        diff = (mel_cepstrum(reference, config, n_mfcc)
                - mel_cepstrum(estimate, config, n_mfcc))[:, 1:]
        per_frame = MCD_SCALE * diff.pow(2).sum(-2).sqrt()
        return per_frame.mean(-1).float()


@torch.no_grad()
def snr_db(reference: torch.Tensor, estimate: torch.Tensor) -> torch.Tensor:
    """Signal-to-noise ratio ``10 log10(sum x^2 / sum (x - x_hat)^2)`` in dB per item.

    Computed in float64 and returned as float32 ``[batch]``. A perfect match (zero error
    energy) gives ``+inf``, also for a silent reference; a silent reference with a non-zero
    estimate gives ``-inf``. No scale or delay is compensated (not SI-SNR).
    """
    with autocast_disabled(reference, estimate):
        reference, estimate = _pair(reference, estimate)
        reference, estimate = reference.double(), estimate.double()
        signal = reference.pow(2).sum(-1)
        noise = (reference - estimate).pow(2).sum(-1)
        # Pin the two degenerate cases instead of letting 0/0 become NaN.
        ratio = torch.where(noise > 0, signal / noise.clamp_min(torch.finfo(noise.dtype).tiny),
                            torch.full_like(signal, math.inf))
        return (10.0 * torch.log10(ratio)).float()


def nats_to_bits(x):
    """Convert an information quantity (float, array or tensor) from nats to bits."""
    return x / LN2


def bits_to_nats(x):
    """Convert an information quantity (float, array or tensor) from bits to nats."""
    return x * LN2


def bits_per_sample(nll_nats_total, num_samples: int):
    """Average code length in bits per audio sample from a summed negative log-likelihood.

    ``nll_nats_total`` is the NLL in nats summed over ``num_samples`` samples (float or
    tensor); returns ``nll / (num_samples * ln 2)``. For an 8-bit mu-law model 8.0 is the
    uniform baseline.
    """
    if isinstance(num_samples, bool) or not isinstance(num_samples, (int, np.integer)) \
            or num_samples <= 0:
        raise UsageError(f"num_samples must be a positive integer, got {num_samples!r}")
    return nats_to_bits(nll_nats_total) / int(num_samples)
