"""The bias denoiser: removes a vocoder's stationary tone, keeps the music, streams exactly."""

import math

import numpy as np
import pytest
import torch

from wavegen.audio.features import get_preset
from wavegen.bias_denoiser import BiasDenoiser, silent_mel
from wavegen.errors import UsageError

RATE = 16000
FEATURES = get_preset("hifigan-16k")
BIAS_HZ = RATE / 8  # WaveGlow's line noise sits at multiples of sample_rate / n_group
NOTE_HZ = 440.0


def biased_vocoder(mel: torch.Tensor) -> torch.Tensor:
    """A stand-in vocoder: a held 440 Hz note while the mel is above silence, plus a
    stationary 2 kHz tone whatever the input (the bias)."""
    samples = mel.shape[-1] * FEATURES.hop_length
    t = torch.arange(samples) / RATE
    loud = (mel.mean() > math.log(1e-4)).float()
    note = 0.3 * loud * torch.sin(2 * math.pi * NOTE_HZ * t)
    bias = 0.02 * torch.sin(2 * math.pi * BIAS_HZ * t)
    return (note + bias)[None, None]


def peak_db(wave: torch.Tensor, hz: float) -> float:
    x = wave.reshape(-1).numpy()[2048:-2048]
    spectrum = np.abs(np.fft.rfft(x * np.hanning(len(x))))
    freqs = np.fft.rfftfreq(len(x), 1 / RATE)
    band = (freqs > hz - 15) & (freqs < hz + 15)
    return 20 * np.log10(spectrum[band].max() + 1e-12)


def test_silent_mel_is_the_front_end_floor():
    mel = silent_mel(FEATURES, 10)
    assert mel.shape == (1, 80, 10)
    assert torch.allclose(mel, torch.full_like(mel, math.log(FEATURES.log_clamp)))


def test_removes_the_bias_tone_and_keeps_the_held_note():
    denoiser = BiasDenoiser.from_vocoder(biased_vocoder, FEATURES)
    music = biased_vocoder(torch.zeros(1, 80, 125))  # 2 s, mel at 0 = loud
    cleaned = denoiser(music, strength=1.0)
    assert cleaned.shape == music.shape
    assert peak_db(music, BIAS_HZ) - peak_db(cleaned, BIAS_HZ) > 20.0
    assert abs(peak_db(music, NOTE_HZ) - peak_db(cleaned, NOTE_HZ)) < 1.0
    assert torch.equal(denoiser(music, strength=0.0), music)


def test_streaming_equals_whole():
    torch.manual_seed(0)
    denoiser = BiasDenoiser(torch.rand(513) * 2.0, RATE)
    audio = 0.3 * torch.randn(1, 1, 50_000)
    whole = denoiser(audio, strength=0.5)
    pieces = []
    stream = denoiser.stream(0.5, pieces.append)
    stream.block = 4096
    for start in range(0, audio.shape[-1], 3_000):  # pieces not aligned to anything
        stream(audio[..., start:start + 3_000])
    stream.close()
    streamed = torch.cat(pieces, dim=-1)
    assert streamed.shape == whole.shape
    assert (streamed - whole).abs().max() < 1e-5


@pytest.mark.parametrize("bad", [dict(strength=-1.0), dict(strength=float("nan"))])
def test_bad_strength_is_refused(bad):
    with pytest.raises(UsageError):
        BiasDenoiser(torch.zeros(513), RATE)(torch.zeros(1, 1, 4096), **bad)


def test_bad_bias_is_refused():
    with pytest.raises(UsageError):
        BiasDenoiser(torch.zeros(100), RATE)
    with pytest.raises(UsageError):
        BiasDenoiser.from_audio(torch.zeros(100), RATE)
