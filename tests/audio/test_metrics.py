"""Objective metrics against direct numpy/scipy/librosa computations."""

from __future__ import annotations

import math

import librosa
import numpy as np
import pytest
import scipy.fft
import torch

from wavegen.audio.signals import chord, sweep
from wavegen.audio.features import FeatureConfig, get_preset
from wavegen.audio.losses import MultiResolutionSTFTLoss
from wavegen.audio.metrics import (bits_per_sample, bits_to_nats, dct_matrix, log_mel_l1,
                                   mel_cepstral_distortion, multi_resolution_stft_distance,
                                   nats_to_bits, snr_db)
from wavegen.audio.spectral import LogMelSpectrogram
from wavegen.errors import UsageError

SR = 16000
LENGTH = 8192
# Centre padding so that librosa.feature.melspectrogram frames the signal the same way.
MCD_CONFIG = FeatureConfig(sample_rate=SR, n_fft=512, hop_length=128, win_length=512,
                           n_mels=40, fmin=20.0, fmax=7600.0, padding="center",
                           pad_mode="reflect", log_clamp=1e-5)


def signal(batch: int = 2, seed: int = 0) -> torch.Tensor:
    rng = np.random.default_rng(seed)
    base = chord(SR, LENGTH / SR) + 0.5 * sweep(SR, LENGTH / SR)
    items = [base * (1.0 - 0.3 * i) + 0.01 * rng.standard_normal(LENGTH) for i in range(batch)]
    return torch.from_numpy(np.stack(items).astype(np.float32))[:, None]


def noise_like(x: torch.Tensor, seed: int = 7) -> torch.Tensor:
    return torch.from_numpy(np.random.default_rng(seed).standard_normal(x.shape).astype(np.float32))


# --------------------------------------------------------------------------- STFT distance

def test_stft_distance_per_item_matches_loss_for_single_items():
    x = signal()
    y = x + 0.05 * noise_like(x)
    dist = multi_resolution_stft_distance(x, y)
    assert dist.total.shape == (2,)
    loss = MultiResolutionSTFTLoss()
    for i in range(2):
        single = loss(y[i:i + 1], x[i:i + 1])
        assert dist.spectral_convergence[i].item() == pytest.approx(
            single.spectral_convergence.item(), rel=1e-5)
        assert dist.log_magnitude[i].item() == pytest.approx(single.log_magnitude.item(), rel=1e-5)
    assert torch.equal(multi_resolution_stft_distance(x, x).total, torch.zeros(2))
    # Unbatched input is a batch of one.
    assert multi_resolution_stft_distance(x[0, 0], y[0, 0]).total.shape == (1,)


def test_metrics_do_not_track_gradients():
    x = signal().requires_grad_(True)
    y = x.detach() * 0.5
    assert not multi_resolution_stft_distance(x, y).total.requires_grad
    assert not log_mel_l1(x, y, get_preset("hifigan-16k")).requires_grad
    assert not mel_cepstral_distortion(x, y, MCD_CONFIG).requires_grad


# --------------------------------------------------------------------------- log-mel L1

def test_log_mel_l1_per_item():
    config = get_preset("hifigan-16k")
    x = signal()
    y = x + 0.03 * noise_like(x)
    got = log_mel_l1(x, y, config)
    logmel = LogMelSpectrogram(config)
    expected = (logmel(y) - logmel(x)).abs().mean((-2, -1))
    assert got.shape == (2,)
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=0)
    assert torch.equal(log_mel_l1(x, x, config), torch.zeros(2))


# --------------------------------------------------------------------------- MCD

def test_dct_matrix_is_scipy_orthonormal_dct():
    x = np.random.default_rng(0).standard_normal((40, 5))
    expected = scipy.fft.dct(x, type=2, norm="ortho", axis=0)[:13]
    np.testing.assert_allclose((dct_matrix(40, 13) @ torch.from_numpy(x)).numpy(), expected,
                               rtol=1e-10, atol=1e-12)


def numpy_mcd(reference: np.ndarray, estimate: np.ndarray, c: FeatureConfig, n_mfcc: int):
    def cepstra(y):
        mel = librosa.feature.melspectrogram(
            y=y.astype(np.float64), sr=c.sample_rate, n_fft=c.n_fft, hop_length=c.hop_length,
            win_length=c.win_length, window=c.window, center=True, pad_mode=c.pad_mode,
            power=2.0, n_mels=c.n_mels, fmin=c.fmin, fmax=c.fmax_hz,
            htk=c.mel_scale == "htk", norm=c.mel_norm)
        log_amplitude = 0.5 * np.log(np.maximum(mel, c.log_clamp ** 2))
        # c_m = (1/N) sum_k ln|X|_k cos(pi m (k + 1/2) / N), written out as a plain sum so
        # the scaling is checked independently of the DCT matrix.
        n = c.n_mels
        m = np.arange(1, n_mfcc)[:, None]
        k = np.arange(n)[None, :]
        return (np.cos(np.pi * m * (k + 0.5) / n) @ log_amplitude) / n

    diff = cepstra(reference) - cepstra(estimate)
    return np.mean(10.0 / np.log(10.0) * np.sqrt(2.0 * np.sum(diff ** 2, axis=0)))


@pytest.mark.parametrize("n_mfcc", [13, 25])
def test_mcd_matches_numpy_scipy(n_mfcc):
    x = signal(batch=1)
    y = x * 0.8 + 0.02 * noise_like(x)
    expected = numpy_mcd(x[0, 0].numpy(), y[0, 0].numpy(), MCD_CONFIG, n_mfcc)
    got = mel_cepstral_distortion(x, y, MCD_CONFIG, n_mfcc=n_mfcc)
    assert got.shape == (1,)
    assert got.item() == pytest.approx(expected, rel=1e-4)


def test_mcd_is_on_the_published_scale():
    # 80-band mels of a signal and a lightly noisy copy: a few dB, not tens (librosa-style
    # MFCCs would give ~25x more).
    x = signal(batch=1)
    y = x + 0.01 * noise_like(x)
    value = mel_cepstral_distortion(x, y, MCD_CONFIG).item()
    assert 0.05 < value < 10.0


def test_mcd_zero_for_identical_and_grows_with_distortion():
    x = signal()
    noise = noise_like(x)
    assert torch.equal(mel_cepstral_distortion(x, x, MCD_CONFIG), torch.zeros(2))
    values = [mel_cepstral_distortion(x, x + level * noise, MCD_CONFIG)
              for level in (0.001, 0.01, 0.05, 0.2)]
    for low, high in zip(values, values[1:]):
        assert (low < high).all(), values
    assert (values[0] > 0).all()
    # c0 (overall level) is excluded: pure gain changes leave MCD at ~0.
    assert mel_cepstral_distortion(x, 0.5 * x, MCD_CONFIG).max().item() < 1e-3


def test_mcd_is_finite_on_silence_and_validates_n_mfcc():
    x = signal()
    silent = torch.zeros_like(x)
    assert torch.isfinite(mel_cepstral_distortion(silent, x, MCD_CONFIG)).all()
    assert torch.equal(mel_cepstral_distortion(silent, silent, MCD_CONFIG), torch.zeros(2))
    with pytest.raises(UsageError):
        mel_cepstral_distortion(x, x, MCD_CONFIG, n_mfcc=1)
    with pytest.raises(UsageError):
        mel_cepstral_distortion(x, x, MCD_CONFIG, n_mfcc=41)


# --------------------------------------------------------------------------- SNR

def test_snr_matches_energy_ratio_for_known_noise_level():
    x = signal()
    noise = noise_like(x)
    noise = noise / noise.pow(2).sum(-1, keepdim=True).sqrt()  # unit energy per item
    signal_energy = x.double().pow(2).sum((-2, -1))
    target_db = torch.tensor([20.0, 6.0], dtype=torch.float64)
    # Scale the noise so that each item has exactly the target SNR.
    scale = (signal_energy / 10 ** (target_db / 10)).sqrt()
    y = x + (scale[:, None, None] * noise).float()
    got = snr_db(x, y)
    expected = 10 * torch.log10(signal_energy / (x.double() - y.double()).pow(2).sum((-2, -1)))
    assert got.shape == (2,) and got.dtype == torch.float32
    torch.testing.assert_close(got.double(), expected, rtol=0, atol=1e-4)
    torch.testing.assert_close(got.double(), target_db, rtol=0, atol=1e-3)


def test_snr_degenerate_cases():
    x = signal()
    assert torch.equal(snr_db(x, x), torch.full((2,), math.inf))
    silent = torch.zeros_like(x)
    assert torch.equal(snr_db(silent, silent), torch.full((2,), math.inf))
    assert torch.equal(snr_db(silent, x), torch.full((2,), -math.inf))
    assert snr_db(x, silent).abs().max().item() < 1e-5  # estimate of zeros: 0 dB
    with pytest.raises(UsageError):
        snr_db(x, x[:1])


# --------------------------------------------------------------------------- bits / nats

def test_bits_nats_known_values_and_round_trip():
    assert nats_to_bits(math.log(2.0)) == pytest.approx(1.0, rel=1e-15)
    assert bits_to_nats(1.0) == pytest.approx(0.6931471805599453, rel=1e-15)
    assert nats_to_bits(math.log(256.0)) == pytest.approx(8.0, rel=1e-15)
    values = torch.tensor([0.0, 0.5, 3.0, 1234.5], dtype=torch.float64)
    torch.testing.assert_close(bits_to_nats(nats_to_bits(values)), values, rtol=1e-15, atol=0)
    array = np.array([0.1, 2.0])
    np.testing.assert_allclose(nats_to_bits(bits_to_nats(array)), array, rtol=1e-15)


def test_bits_per_sample():
    # A uniform 256-way model costs ln 256 nats per sample: exactly 8 bits.
    assert bits_per_sample(1000 * math.log(256.0), 1000) == pytest.approx(8.0, rel=1e-12)
    total = torch.tensor(16000 * math.log(2.0) * 3.5)
    assert bits_per_sample(total, 16000).item() == pytest.approx(3.5, rel=1e-6)
    for bad in (0, -5, 2.5, True):
        with pytest.raises(UsageError):
            bits_per_sample(1.0, bad)


def test_frame_grid_energy_share_separates_grid_partials_from_off_grid_ones():
    from wavegen.audio.metrics import frame_grid_energy_share

    rate, hop = 16000, 256  # the grid: multiples of 62.5 Hz
    t = torch.arange(2 * rate) / rate
    on_grid = torch.sin(2 * math.pi * 437.5 * t) + 0.5 * torch.sin(2 * math.pi * 875.0 * t)
    off_grid = torch.sin(2 * math.pi * 466.16 * t) + 0.5 * torch.sin(2 * math.pi * 932.3 * t)
    assert frame_grid_energy_share(on_grid, rate, hop).min() > 0.95
    assert frame_grid_energy_share(off_grid, rate, hop).max() < 0.05
    noise = torch.randn(2 * rate, generator=torch.Generator().manual_seed(0))
    share = frame_grid_energy_share(noise, rate, hop)
    assert share.shape == (2,) and 0.06 < float(share.mean()) < 0.16
    with pytest.raises(UsageError, match="at least one 1 s window"):
        frame_grid_energy_share(noise[:100], rate, hop)


def test_chroma_correlation_follows_pitch_classes():
    from wavegen.audio.metrics import chroma_correlation

    rate = 16000
    t = torch.arange(2 * rate) / rate
    # C then E, one second each, and the same melody an octave up (same pitch classes)
    melody = torch.where(t < 1, torch.sin(2 * math.pi * 261.63 * t), torch.sin(2 * math.pi * 329.63 * t))
    octave = torch.where(t < 1, torch.sin(2 * math.pi * 523.25 * t), torch.sin(2 * math.pi * 659.26 * t))
    other = torch.where(t < 1, torch.sin(2 * math.pi * 369.99 * t), torch.sin(2 * math.pi * 466.16 * t))
    noise = 0.3 * torch.randn(2 * rate, generator=torch.Generator().manual_seed(0))
    assert chroma_correlation(melody, melody, rate) == pytest.approx(1.0)
    assert chroma_correlation(melody, octave, rate) > 0.8
    assert chroma_correlation(melody, other, rate) < 0.2
    assert abs(chroma_correlation(melody, noise, rate)) < 0.35  # per-frame max normalisation
    with pytest.raises(UsageError):
        chroma_correlation(melody[:100], melody[:100], rate)
