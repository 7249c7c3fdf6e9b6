"""Griffin-Lim, NNLS mel inversion and the mel -> audio baseline, against librosa."""

from __future__ import annotations

import librosa
import numpy as np
import pytest
import torch

from wavegen.audio.signals import chord
from wavegen.audio.features import PRESETS
from wavegen.audio.griffinlim import griffin_lim, mel_to_audio, mel_to_linear, to_magnitude
from wavegen.audio.phase import stft_for
from wavegen.audio.spectral import (LogMelSpectrogram, MelSpectrogram, Spectrogram,
                                    mel_filterbank)
from wavegen.errors import UsageError

HOP_ALIGNED = PRESETS["hifigan-22k"]
# Centre padding as librosa does it, at 22.05 kHz (librosa.griffinlim has no hop-aligned mode).
CENTERED = PRESETS["vocos-24k-100"].replace(sample_rate=22050, fmax=None)


def chord_signal(sample_rate: int, seconds: float = 0.6) -> np.ndarray:
    return chord(sample_rate, seconds, freqs=(220.0, 277.18, 329.63, 660.0))


def magnitude_of(wave: np.ndarray, config) -> torch.Tensor:
    """|X| with the config's framing ([freq, frames])."""
    return Spectrogram(config.replace(power=1.0, magnitude_eps=0.0))(torch.from_numpy(wave))


def rel(a, b) -> float:
    a, b = torch.as_tensor(a).double(), torch.as_tensor(b).double()
    return float((a - b).norm() / b.norm())


# ----------------------------------------------------------------------- Griffin-Lim

@pytest.mark.parametrize("config", [HOP_ALIGNED, CENTERED], ids=["hop_aligned", "center"])
def test_convergence_falls_and_momentum_helps(config):
    magnitude = magnitude_of(chord_signal(config.sample_rate), config)
    curves = {}
    for momentum in (0.99, 0.0):
        wave, curve = griffin_lim(magnitude, config, n_iter=32, momentum=momentum,
                                  generator=torch.Generator().manual_seed(0),
                                  return_convergence=True)
        frames = magnitude.shape[-1]
        implied = (frames - 1 if config.padding == "center" else frames) * config.hop_length
        assert wave.shape == (implied,)
        assert curve.shape == (32,)
        curves[momentum] = curve
    fast, classic = curves[0.99], curves[0.0]
    assert fast[31] < 0.5 * fast[3]  # measured 0.34x - 0.37x
    assert fast[31] < 0.2  # measured 0.10 - 0.11
    assert fast[31] < 0.8 * classic[31]  # measured 0.54x - 0.59x: the momentum matters
    # The returned waveform (one more projection) is as consistent as the curve says.
    final = stft_for(config)(wave).abs()
    assert rel(final, magnitude) < 0.2


def test_first_convergence_value_is_the_definition():
    c = HOP_ALIGNED
    magnitude = magnitude_of(chord_signal(c.sample_rate), c)
    stft = stft_for(c)
    zero_phase = stft.inverse(magnitude.to(torch.complex64))
    expected = float((magnitude - stft(zero_phase).abs()).norm() / magnitude.norm())
    wave, curve = griffin_lim(magnitude, c, n_iter=3, init="zeros", return_convergence=True)
    assert curve[0].item() == pytest.approx(expected, rel=1e-5)
    # No iterations: the zero-phase inverse itself.
    assert torch.allclose(griffin_lim(magnitude, c, n_iter=0, init=None), zero_phase)


@pytest.mark.parametrize("n_iter, tolerance", [(2, 1e-3), (32, 1e-2)])
def test_matches_librosa_griffinlim(n_iter, tolerance):
    c = CENTERED
    x = chord_signal(c.sample_rate)
    magnitude = magnitude_of(x, c)
    ours = griffin_lim(magnitude, c, n_iter=n_iter, init=None, length=len(x))
    theirs = librosa.griffinlim(magnitude.numpy(), n_iter=n_iter, hop_length=c.hop_length,
                                win_length=c.win_length, n_fft=c.n_fft, window=c.window,
                                center=True, pad_mode=c.pad_mode, momentum=0.99, init=None,
                                length=len(x))
    # Bit-level differences between the two FFTs are amplified where |c_n| is near zero, so
    # the iterates drift apart a little, then plateau: measured 2.6e-4 after 2 iterations,
    # 2.8e-3 after 32 (and ~2e-3 after 100).
    assert rel(ours, theirs) < tolerance


def test_batched_equals_per_item():
    c = HOP_ALIGNED
    waves = [chord_signal(c.sample_rate, 0.3) * g for g in (1.0, 0.3)]
    waves.append(np.random.default_rng(0).standard_normal(len(waves[0])).astype(np.float32) * 0.1)
    magnitude = torch.stack([magnitude_of(w, c) for w in waves])  # [3, freq, frames]
    phases = torch.rand(magnitude.shape, generator=torch.Generator().manual_seed(1)) * 6.283
    grid = magnitude.reshape(1, 3, *magnitude.shape[1:]).expand(2, 3, -1, -1)
    wave, curve = griffin_lim(grid, c, n_iter=8, init=phases.expand(2, 3, -1, -1),
                              return_convergence=True)
    assert wave.shape == (2, 3, magnitude.shape[-1] * c.hop_length) and curve.shape == (2, 3, 8)
    batched, batched_curve = griffin_lim(magnitude, c, n_iter=8, init=phases,
                                         return_convergence=True)
    assert batched.shape == (3, 1, magnitude.shape[-1] * c.hop_length)  # [batch, 1, time]
    for i in range(3):
        single, single_curve = griffin_lim(magnitude[i], c, n_iter=8, init=phases[i],
                                           return_convergence=True)
        assert torch.allclose(batched[i, 0], single, atol=1e-5)
        assert torch.allclose(wave[1, i], single, atol=1e-5)
        assert torch.allclose(batched_curve[i], single_curve, atol=1e-6)


def test_random_init_is_reproducible_with_a_generator():
    c = HOP_ALIGNED
    magnitude = magnitude_of(chord_signal(c.sample_rate, 0.2), c)
    a = griffin_lim(magnitude, c, n_iter=2, generator=torch.Generator().manual_seed(5))
    b = griffin_lim(magnitude, c, n_iter=2, generator=torch.Generator().manual_seed(5))
    d = griffin_lim(magnitude, c, n_iter=2, generator=torch.Generator().manual_seed(6))
    assert torch.equal(a, b) and not torch.allclose(a, d, atol=1e-3)


def test_griffin_lim_argument_errors():
    c = HOP_ALIGNED
    magnitude = torch.ones(c.n_freq, 10)
    with pytest.raises(UsageError, match="frames"):
        griffin_lim(torch.ones(100, 10), c)
    with pytest.raises(UsageError, match="length"):
        griffin_lim(magnitude, c, length=5 * c.hop_length)
    with pytest.raises(UsageError, match="momentum"):
        griffin_lim(magnitude, c, momentum=-0.5)
    with pytest.raises(UsageError, match="init"):
        griffin_lim(magnitude, c, init="ones")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_griffin_lim_and_mel_to_audio_on_cuda():
    c = HOP_ALIGNED
    magnitude = magnitude_of(chord_signal(c.sample_rate, 0.3), c)
    cpu = griffin_lim(magnitude, c, n_iter=4, init=None)
    gpu = griffin_lim(magnitude.cuda(), c, n_iter=4, init=None)
    assert gpu.is_cuda and rel(gpu.cpu(), cpu) < 1e-3
    logmel = LogMelSpectrogram(c)(torch.from_numpy(chord_signal(c.sample_rate, 0.3)))[None]
    generator = torch.Generator(device="cuda").manual_seed(0)
    audio = mel_to_audio(logmel.cuda(), c, n_iter=4, generator=generator)
    assert audio.is_cuda and audio.shape == (1, 1, logmel.shape[-1] * c.hop_length)
    assert rel(mel_to_linear(logmel.exp().cuda(), c).cpu(), mel_to_linear(logmel.exp(), c)) < 1e-3


# ----------------------------------------------------------------------- NNLS mel inversion

def mixed(sample_rate: int, seconds: float) -> np.ndarray:
    noise = np.random.default_rng(0).standard_normal(int(sample_rate * seconds)) * 0.02
    return chord_signal(sample_rate, seconds) + noise.astype(np.float32)


def test_mel_to_linear_fits_the_mel_and_agrees_with_librosa():
    c = HOP_ALIGNED
    mel = MelSpectrogram(c)(torch.from_numpy(mixed(c.sample_rate, 0.5)))
    basis = mel_filterbank(c).double()

    def misfit(linear) -> float:
        return rel(basis @ torch.as_tensor(linear).double(), mel)

    start = mel_to_linear(mel, c, n_iter=0)  # the clamped pseudo-inverse
    ours = mel_to_linear(mel, c)
    assert ours.shape == (c.n_freq, mel.shape[-1]) and ours.dtype == torch.float32
    assert ours.min() >= 0
    assert misfit(start) > 1e-2  # measured 2.2e-2: clipping the pseudo-inverse costs fit
    assert misfit(ours) < 1e-5  # measured 4e-8

    # librosa's mel_to_stft (L-BFGS-B) stops almost at its clamped pseudo-inverse start here,
    # because its objective is divided by the number of entries and the gradient is under
    # its default tolerance: it matches our n_iter=0 and fits the mel worse than we do.
    theirs = librosa.feature.inverse.mel_to_stft(
        mel.numpy(), sr=c.sample_rate, n_fft=c.n_fft, power=c.power, fmin=c.fmin,
        fmax=c.fmax_hz, htk=c.mel_scale == "htk", norm=c.mel_norm)
    assert rel(to_magnitude(start, c), theirs) < 1e-4
    assert misfit(ours) < 0.01 * misfit(theirs ** c.power)
    assert rel(to_magnitude(ours, c), theirs) < 0.15  # measured 0.08


def test_mel_to_linear_matches_a_converged_librosa_nnls():
    # Run to convergence, L-BFGS-B finds another exact fit: the solution set is a polytope
    # (80 equations, 513 unknowns), so only the fitted mel must agree; S agrees within 5%.
    c = HOP_ALIGNED
    mel = MelSpectrogram(c)(torch.from_numpy(mixed(c.sample_rate, 0.1))).double()
    basis = mel_filterbank(c).double()
    theirs = librosa.util.nnls(basis.numpy(), mel.numpy(), pgtol=0, factr=10, maxiter=5000)
    ours = mel_to_linear(mel, c)
    assert ours.dtype == torch.float64
    assert rel(basis @ ours, basis @ torch.from_numpy(theirs)) < 1e-6
    assert rel(ours, theirs) < 0.05  # measured 0.024


def test_mel_to_linear_batched_equals_per_item():
    c = PRESETS["vocos-24k-100"]
    waves = torch.stack([torch.from_numpy(mixed(c.sample_rate, 0.2)) * g for g in (1.0, 0.1)])
    mel = MelSpectrogram(c)(waves[:, None])  # [2, n_mels, frames]
    batched = mel_to_linear(mel, c, n_iter=30)
    for i in range(2):
        assert torch.allclose(batched[i], mel_to_linear(mel[i], c, n_iter=30),
                              atol=1e-6 * float(mel[i].max()))


def test_to_magnitude_undoes_power():
    c = HOP_ALIGNED.replace(power=2.0)
    magnitude = torch.rand(5, 7)
    assert torch.allclose(to_magnitude(magnitude ** 2, c), magnitude, atol=1e-6)
    assert to_magnitude(magnitude, HOP_ALIGNED) is magnitude


# ----------------------------------------------------------------------- mel -> audio

@pytest.mark.parametrize("config", [HOP_ALIGNED, HOP_ALIGNED.replace(power=2.0), CENTERED],
                         ids=["hifigan", "hifigan-power2", "center"])
def test_mel_to_audio_reproduces_the_mel(config):
    x = torch.from_numpy(chord_signal(config.sample_rate))[None, None]
    logmel = LogMelSpectrogram(config)(x)
    errors = []
    for n_iter in (0, 32):
        audio = mel_to_audio(logmel, config, n_iter=n_iter, length=x.shape[-1],
                             generator=torch.Generator().manual_seed(0))
        assert audio.shape == x.shape and audio.dtype == torch.float32
        mel, again = logmel.exp(), LogMelSpectrogram(config)(audio).exp()
        errors.append(rel(again, mel))
    # Measured: 0.58 -> 0.10 (power 1), 0.79 -> 0.18 (power 2), 0.58 -> 0.09 (centre).
    assert errors[1] < 0.25 and errors[1] < 0.4 * errors[0]
