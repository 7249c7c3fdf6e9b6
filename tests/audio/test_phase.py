"""Phase unwrapping, instantaneous frequency and the exact magnitude + IF representation."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from wavegen.audio.signals import chord
from wavegen.audio.features import PRESETS, FeatureConfig, get_preset
from wavegen.audio.phase import (instantaneous_frequency, linear_from_mel_magnitude_and_if,
                                 magnitude_and_if, mel_from_magnitude_and_if,
                                 mel_magnitude_and_if, phase_from_if, unwrap,
                                 waveform_from_magnitude_and_if, wrap_phase)
from wavegen.audio.spectral import mel_frequencies
from wavegen.errors import UsageError

# One hop-aligned and one centre-padded front-end, as the presets define them.
PADDING_PRESETS = ["hifigan-22k", "vocos-24k-100"]


def noise_bursts(sample_rate: int, seconds: float, seed: int = 0) -> np.ndarray:
    """Three bursts of white noise separated by digital silence, float32 [time]."""
    rng = np.random.default_rng(seed)
    x = np.zeros(int(sample_rate * seconds), dtype=np.float32)
    for start, width in ((0.05, 0.1), (0.3, 0.02), (0.6, 0.2)):
        a, n = int(start * sample_rate), int(width * sample_rate)
        x[a:a + n] = rng.standard_normal(n) * 0.3
    return x


def clicks(sample_rate: int, seconds: float) -> np.ndarray:
    """Isolated single-sample impulses of both signs, two of them adjacent, float32 [time]."""
    x = np.zeros(int(sample_rate * seconds), dtype=np.float32)
    for position, value in ((0.01, 0.9), (0.3, -0.7), (0.6, 1.0), (0.97, -0.8)):
        x[int(position * len(x))] = value
    x[int(0.3 * len(x)) + 1] = 0.5
    return x


SIGNALS = {
    "chord": lambda sr: chord(sr, 0.8, freqs=(220.0, 277.18, 329.63, 660.0)),
    "noise_bursts": lambda sr: noise_bursts(sr, 0.8),
    "clicks": lambda sr: clicks(sr, 0.8),
}


def snr_db(reference: torch.Tensor, estimate: torch.Tensor) -> float:
    reference, estimate = reference.double().flatten(), estimate.double().flatten()
    return 10 * math.log10(float((reference ** 2).sum() / ((reference - estimate) ** 2).sum()))


def expected_if(freq_hz: float, config: FeatureConfig) -> float:
    """Phase advance per hop of a sinusoid, wrapped into [-pi, pi), divided by pi."""
    advance = 2 * math.pi * freq_hz * config.hop_length / config.sample_rate
    return ((advance + math.pi) % (2 * math.pi) - math.pi) / math.pi


# ----------------------------------------------------------------------- unwrap / IF

def random_phase_walk(rng: np.random.Generator, shape, scale: float) -> np.ndarray:
    """Cumulative random steps (some far beyond pi), plus exact +-pi and +-3pi steps."""
    steps = rng.standard_normal(shape) * scale
    steps.reshape(-1)[::7] = np.pi
    steps.reshape(-1)[3::11] = -np.pi
    steps.reshape(-1)[5::13] = 3 * np.pi
    return np.cumsum(steps, axis=-1)


@pytest.mark.parametrize("dim", [0, 1, -1])
def test_unwrap_equals_numpy(dim, rng):
    phase = random_phase_walk(rng, (40, 50, 60), scale=2.5)
    ours = unwrap(torch.from_numpy(phase), dim=dim).numpy()
    assert np.allclose(ours, np.unwrap(phase, axis=dim), rtol=0, atol=1e-9)
    # Already-unwrapped (smooth) input is left alone.
    smooth = np.cumsum(rng.uniform(-3.0, 3.0, 500))
    assert np.array_equal(unwrap(torch.from_numpy(smooth)).numpy(), smooth)


def test_unwrap_float32_and_gradient(rng):
    # Steps bounded away from pi, so float32 rounding cannot flip a tie: unwrapping the
    # wrapped walk must give the walk back.
    walk = np.cumsum(rng.uniform(-3.0, 3.0, (3, 20000)), axis=-1) + 50.0
    wrapped = torch.from_numpy(np.angle(np.exp(1j * walk))).float().requires_grad_()
    ours = unwrap(wrapped)
    assert ours.dtype == torch.float32
    shift = walk[:, :1] - ours.detach().double().numpy()[:, :1]  # frame 0 is left wrapped
    assert np.abs(ours.detach().double().numpy() + shift - walk).max() < 1e-3
    ours.sum().backward()
    assert torch.equal(wrapped.grad, torch.ones_like(wrapped))


def test_if_is_difference_of_unwrapped_phase_and_inverts(rng):
    phase = np.angle(np.exp(1j * random_phase_walk(rng, (5, 300), scale=2.0)))  # in (-pi, pi]
    ifreq = instantaneous_frequency(torch.from_numpy(phase)).numpy()
    assert ifreq.shape == phase.shape
    assert np.allclose(ifreq[:, 1:], np.diff(np.unwrap(phase), axis=-1) / np.pi, atol=1e-12)
    # Frame 0 is the phase folded into [-pi, pi) (the walk starts with a step of exactly pi).
    first = (phase[:, :1] + np.pi) % (2 * np.pi) - np.pi
    assert np.any(phase[:, 0] == np.pi) and np.all(first < np.pi)
    assert np.allclose(ifreq[:, :1], first / np.pi, atol=1e-12)
    back = phase_from_if(torch.from_numpy(ifreq)).numpy()
    assert np.allclose(back, np.unwrap(phase) + (first - phase[:, :1]), atol=1e-9)


def test_if_range_and_inverse_modulo_two_pi_on_any_input(rng):
    # Unwrapped, huge and tie-valued phases: IF stays in [-1, 1], inverse agrees mod 2 pi.
    phase = torch.from_numpy(random_phase_walk(rng, (7, 400), scale=40.0) + 1e4)
    ifreq = instantaneous_frequency(phase, dim=1)
    assert ifreq.abs().max() <= 1.0
    assert ifreq.min() < -0.9 and ifreq.max() > 0.9  # the walk does use the whole range
    back = phase_from_if(ifreq, dim=1, wrap=True)
    assert back.dtype == torch.float64
    assert (wrap_phase(back - phase).abs() < 1e-9).all()
    # The same along another axis.
    assert torch.allclose(instantaneous_frequency(phase.T, dim=0), ifreq.T)


def test_if_of_bin_centred_sine_is_constant_in_its_bin():
    # hop 200 of n_fft 1024 makes the per-hop advance a non-trivial fraction of pi.
    c = get_preset("hifigan-22k").replace(hop_length=200, padding="none")
    n = 20000
    t = np.arange(n) / c.sample_rate
    for k, phase0 in ((20, 0.3), (37, -2.0), (101, 1.0), (301, 3.0)):
        freq = k * c.sample_rate / c.n_fft
        wave = torch.from_numpy(np.cos(2 * np.pi * freq * t + phase0).astype(np.float32))
        magnitude, ifreq = magnitude_and_if(wave, c)
        assert magnitude.shape == ifreq.shape == (c.n_freq, c.num_frames(n))
        assert int(magnitude[:, 5].argmax()) == k
        target = expected_if(freq, c)
        assert abs(target) not in (0.0, 1.0)
        assert torch.allclose(ifreq[k, 1:], torch.full_like(ifreq[k, 1:], target), atol=1e-5)
        # Frame 0 carries the phase itself (the frame starts at sample 0 with no padding).
        assert ifreq[k, 0].item() == pytest.approx(phase0 / np.pi, abs=1e-5)


@pytest.mark.parametrize("name", PADDING_PRESETS)
def test_if_of_sine_in_padded_presets(name):
    c = PRESETS[name]
    k = 45
    freq = k * c.sample_rate / c.n_fft
    n = c.sample_rate // 2
    wave = torch.from_numpy(np.sin(2 * np.pi * freq * np.arange(n) / c.sample_rate)
                            .astype(np.float32))[None, None]
    _, ifreq = magnitude_and_if(wave, c)
    # Frames that touch the (reflect) padding do not see a pure sinusoid: skip them.
    edge = -(-c.pad_amount // c.hop_length) + 1
    interior = ifreq[0, k, edge:-edge]
    assert torch.allclose(interior, torch.full_like(interior, expected_if(freq, c)), atol=1e-5)


@pytest.mark.parametrize("signal", sorted(SIGNALS))
def test_if_values_lie_in_unit_interval(signal):
    c = PRESETS["hifigan-22k"]
    wave = torch.from_numpy(SIGNALS[signal](c.sample_rate))[None, None]
    magnitude, ifreq = magnitude_and_if(wave, c)
    assert ifreq.dtype == magnitude.dtype == torch.float32
    assert ifreq.abs().max() <= 1.0 and ifreq.abs().max() > 0.5


# ----------------------------------------------------------------------- exact inverse

@pytest.mark.parametrize("name", PADDING_PRESETS)
@pytest.mark.parametrize("signal", sorted(SIGNALS))
def test_magnitude_and_if_round_trip(signal, name):
    c = PRESETS[name]
    wave = torch.from_numpy(SIGNALS[signal](c.sample_rate))[None, None]
    magnitude, ifreq = magnitude_and_if(wave, c)
    assert magnitude.shape == (1, c.n_freq, c.num_frames(wave.shape[-1]))
    back = waveform_from_magnitude_and_if(magnitude, ifreq, c, length=wave.shape[-1])
    assert back.shape == wave.shape and back.dtype == torch.float32
    assert snr_db(wave, back) >= 60.0  # measured > 125 dB


def test_round_trip_is_batched_and_default_length():
    c = PRESETS["hifigan-22k"]
    batch = torch.stack([torch.from_numpy(SIGNALS[s](c.sample_rate)) for s in sorted(SIGNALS)])
    batch = batch[:, None, : 40 * c.hop_length]
    magnitude, ifreq = magnitude_and_if(batch, c)
    assert magnitude.shape == (3, c.n_freq, 40)
    back = waveform_from_magnitude_and_if(magnitude, ifreq, c)  # hop-aligned: frames * hop
    assert back.shape == batch.shape
    for i in range(3):
        single_mag, single_if = magnitude_and_if(batch[i, 0], c)
        assert torch.allclose(single_mag, magnitude[i], atol=1e-5)
        # Bins holding only rounding noise have arbitrary phase: compare the others.
        audible = single_mag > 1e-3 * single_mag.max()
        assert torch.allclose(single_if[audible], ifreq[i][audible], atol=1e-4)
        assert snr_db(batch[i], back[i]) >= 60.0


def test_long_signal_stays_exact():
    # 30 s: the unwrapped phase reaches ~4e3 rad. Accumulating the IF in float32 instead of
    # float64 gives ~78 dB here; float64 gives ~106 dB.
    c = PRESETS["hifigan-22k"]
    t = np.arange(30 * c.sample_rate) / c.sample_rate
    x = 0.5 * np.sin(2 * np.pi * 1234.5 * t) + 0.3 * np.sin(2 * np.pi * 7777.7 * t)
    wave = torch.from_numpy(x.astype(np.float32))[None, None]
    magnitude, ifreq = magnitude_and_if(wave, c)
    back = waveform_from_magnitude_and_if(magnitude, ifreq, c, length=wave.shape[-1])
    assert snr_db(wave, back) >= 95.0


def test_shape_errors_are_usage_errors():
    c = PRESETS["hifigan-22k"]
    with pytest.raises(UsageError, match="same shape"):
        waveform_from_magnitude_and_if(torch.ones(1, c.n_freq, 8), torch.ones(1, c.n_freq, 9), c)
    with pytest.raises(UsageError, match="freq"):
        waveform_from_magnitude_and_if(torch.ones(1, 100, 8), torch.ones(1, 100, 8), c)
    with pytest.raises(UsageError, match="complex"):
        unwrap(torch.ones(4, dtype=torch.complex64))


# ----------------------------------------------------------------------- IF-mel

def test_mel_if_of_pure_tone_is_the_tone_if_in_its_band():
    c = PRESETS["hifigan-22k"]
    n = c.sample_rate // 2
    t = np.arange(n) / c.sample_rate
    centres = mel_frequencies(c)
    for band in (3, 20, 45, 75):
        freq = float(centres[band])
        wave = torch.from_numpy((0.5 * np.sin(2 * np.pi * freq * t + 0.3)).astype(np.float32))
        mel_mag, mel_if = mel_magnitude_and_if(wave[None, None], c)
        assert mel_mag.shape == mel_if.shape == (1, c.n_mels, c.num_frames(n))
        assert int(mel_mag[0, :, 10].argmax()) == band
        interior = mel_if[0, band, 3:-3]
        assert torch.allclose(interior, torch.full_like(interior, expected_if(freq, c)),
                              atol=1e-4)


@pytest.mark.parametrize("name", PADDING_PRESETS)
def test_mel_round_trip_is_exact_for_an_invertible_filterbank(name):
    c = PRESETS[name]
    n = c.n_freq
    # Square, positive, diagonally dominant (eigenvalues in [0.6, 1.0]): invertible.
    filters = (0.8 * torch.eye(n) + 0.1 * torch.diag(torch.ones(n - 1), 1)
               + 0.1 * torch.diag(torch.ones(n - 1), -1))
    for signal in ("chord", "noise_bursts"):
        wave = torch.from_numpy(SIGNALS[signal](c.sample_rate))[None, None]
        mel_mag, mel_if = mel_magnitude_and_if(wave, c, filterbank=filters)
        assert mel_if.abs().max() <= 1.0
        magnitude, ifreq = linear_from_mel_magnitude_and_if(mel_mag, mel_if, c, filterbank=filters)
        back = waveform_from_magnitude_and_if(magnitude, ifreq, c, length=wave.shape[-1])
        assert snr_db(wave, back) >= 60.0  # measured > 125 dB


def test_mel_round_trip_is_lossy_only_where_bands_are_coarser_than_bins(rng):
    # HTK bands on a 512-point STFT at 16 kHz: with 128 bands, the bands below ~1 kHz are
    # narrower than a bin, so a low chord survives; with 32 bands it does not.
    def round_trip(n_mels: int, wave: torch.Tensor) -> torch.Tensor:
        c = FeatureConfig(sample_rate=16000, n_fft=512, hop_length=128, win_length=512,
                          n_mels=n_mels, fmax=None, mel_scale="htk", padding="center")
        mel_mag, mel_if = mel_magnitude_and_if(wave, c)
        magnitude, ifreq = linear_from_mel_magnitude_and_if(mel_mag, mel_if, c)
        return waveform_from_magnitude_and_if(magnitude, ifreq, c, length=wave.shape[-1])

    low_chord = torch.from_numpy(chord(16000, 0.5, freqs=(220.0, 277.18, 329.63, 660.0)))
    low_chord = low_chord[None, None]
    back = round_trip(128, low_chord)
    # measured ~69 dB; on failure, say which half of the representation went wrong
    c128 = FeatureConfig(sample_rate=16000, n_fft=512, hop_length=128, win_length=512,
                         n_mels=128, fmax=None, mel_scale="htk", padding="center")
    magnitude, ifreq = magnitude_and_if(low_chord, c128)
    magnitude_back, ifreq_back = linear_from_mel_magnitude_and_if(
        *mel_magnitude_and_if(low_chord, c128), c128)
    assert float(snr_db(low_chord, back)) >= 60.0, (
        f"magnitude rel. error {float((magnitude_back - magnitude).norm() / magnitude.norm()):.3g}, "
        f"phase-weighted IF error {float(((ifreq_back - ifreq) * magnitude).norm() / magnitude.norm()):.3g}, "
        f"output peak {float(back.abs().max()):.3g}")
    assert snr_db(low_chord, round_trip(32, low_chord)) < 10.0  # measured ~ -1 dB

    # Broadband noise: the magnitude error falls as bands are added but never vanishes.
    noise = torch.from_numpy(rng.standard_normal(8000).astype(np.float32) * 0.1)[None, None]
    errors = []
    for n_mels in (32, 64, 128):
        c = FeatureConfig(sample_rate=16000, n_fft=512, hop_length=128, win_length=512,
                          n_mels=n_mels, fmax=None, mel_scale="htk", padding="center")
        reference, _ = magnitude_and_if(noise, c)
        magnitude, _ = linear_from_mel_magnitude_and_if(*mel_magnitude_and_if(noise, c), c)
        errors.append(float((magnitude - reference).norm() / reference.norm()))
        # The clipped minimum-norm power still maps back close to the mel it came from.
        mel_mag, _ = mel_magnitude_and_if(noise, c)
        again, _ = mel_from_magnitude_and_if(magnitude, torch.zeros_like(magnitude), c)
        assert float((again - mel_mag).norm() / mel_mag.norm()) < 0.03
    assert errors[0] > errors[1] > errors[2] > 0.1
