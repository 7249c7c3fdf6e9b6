"""Spectrogram predictors: the network, its spectral task, the magnitude vocoder and the
MIDI -> mel -> audio pipeline."""

from __future__ import annotations

import numpy as np
import pretty_midi
import pytest
import torch

from wavegen.audio.features import get_preset
from wavegen.audio.griffinlim import mel_to_linear, mel_to_audio, to_magnitude
from wavegen.audio.metrics import multi_resolution_stft_distance
from wavegen.audio.spectral import LogMelSpectrogram, Spectrogram, decompress, mel_filterbank
from wavegen.checkpoint import BundleInfo, save_bundle
from wavegen.cli import main
from wavegen.errors import ConfigError, UsageError
from wavegen.models.spectrogram_predictor import (SPECTROGRAM_PRESETS, SpectrogramPredictor,
                                                  SpectrogramPredictorConfig)
from wavegen.train.tasks.spectral import SpectralConfig, SpectralTask, spectral_target

FEATURES = get_preset("hifigan-16k")


def piano_like(seconds: float = 1.0, rate: int = 16000) -> torch.Tensor:
    """``[1, 1, T]``: two decaying notes with harmonics (off the 62.5 Hz frame grid)."""
    t = torch.arange(int(seconds * rate)) / rate
    wave = torch.zeros_like(t)
    for f0, start in ((233.1, 0.0), (349.2, 0.4)):
        envelope = torch.where(t >= start, torch.exp(-3.0 * (t - start)), torch.zeros_like(t))
        for harmonic in range(1, 5):
            wave += envelope * 0.1 / harmonic * torch.sin(2 * torch.pi * f0 * harmonic * (t - start))
    frames = wave.shape[-1] // FEATURES.hop_length
    return wave[: frames * FEATURES.hop_length].reshape(1, 1, -1)


def small(target: str = "magnitude", **overrides) -> SpectrogramPredictorConfig:
    values = dict(in_channels=80 if target == "magnitude" else 265, target=target,
                  out_channels=513 if target == "magnitude" else 80, channels=16,
                  dilations=(1, 2), local_offset=6.0 if target == "magnitude" else 0.0,
                  local_scale=0.25 if target == "magnitude" else 1.0, nnls_iterations=20,
                  phase_iterations=4)
    values.update(overrides)
    return SpectrogramPredictorConfig(**values)


# --------------------------------------------------------------------------- the network


@pytest.mark.parametrize("name", sorted(SPECTROGRAM_PRESETS))
def test_presets_build_with_the_estimated_size_and_fit_the_shipping_limit(name):
    config = SpectrogramPredictorConfig.preset(name)
    model = SpectrogramPredictor(config)
    count = sum(p.numel() for p in model.parameters())
    assert count == config.estimate_size().parameters
    assert count * 4 < 5e6  # a shipped bundle stays under ~5 MB in float32
    config.check_features(FEATURES, "test")


def test_receptive_field_is_what_the_config_says():
    config = small(dilations=(1, 2, 4), input_kernel=5, output_kernel=3)
    torch.manual_seed(0)
    model = SpectrogramPredictor(config).eval()
    frames, centre = 64, 32
    half = config.receptive_field // 2
    x = torch.randn(1, 80, frames)
    base = model(x)
    for offset, changes in ((half, True), (half + 1, False), (-half, True), (-half - 1, False)):
        y = x.clone()
        y[..., centre + offset] += 5.0
        moved = (model(y) - base)[..., centre].abs().max().item()
        assert (moved > 1e-6) == changes, (offset, moved)


@pytest.mark.parametrize("bad, message", [
    ({"target": "phase"}, "target must be one of"),
    ({"kernel_size": 4}, "kernel_size must be odd"),
    ({"dilations": ()}, "dilations must be"),
    ({"log_floor": 0.0}, "log_floor must be > 0"),
    ({"phase_momentum": 1.0}, "phase_momentum"),
    ({"local_scale": 0.0}, "local_scale"),
])
def test_bad_configs_are_one_line_errors(bad, message):
    with pytest.raises(ConfigError, match=message):
        small(**bad)


def test_features_must_fit_the_target():
    with pytest.raises(ConfigError, match="out_channels 80 must equal"):
        small(out_channels=80).check_features(FEATURES, "here")
    with pytest.raises(ConfigError, match="needs a feature front-end"):
        small().check_features(None, "here")
    with pytest.raises(UsageError, match=r"input must be \[batch, 80, frames\]"):
        SpectrogramPredictor(small())(torch.zeros(1, 81, 10))


# --------------------------------------------------------------------------- NNLS from a guess


def test_nnls_started_from_a_guess_keeps_its_detail_and_fits_the_mel():
    spectrum = Spectrogram(FEATURES)(piano_like())[0]
    true = to_magnitude(spectrum, FEATURES)
    mel = mel_filterbank(FEATURES) @ true
    from_pinv = mel_to_linear(mel, FEATURES)
    noisy_guess = true * torch.exp(0.1 * torch.randn(true.shape, generator=torch.Generator().manual_seed(0)))
    from_guess = mel_to_linear(mel, FEATURES, init=noisy_guess)
    fit = (mel_filterbank(FEATURES) @ from_guess - mel).norm() / mel.norm()
    assert fit < 1e-3
    # The guess's partials survive: much closer to the truth than the pseudo-inverse start.
    error_guess = (from_guess - true).norm() / true.norm()
    error_pinv = (from_pinv - true).norm() / true.norm()
    assert error_guess < 0.5 * error_pinv
    assert error_guess <= (noisy_guess - true).norm() / true.norm()  # fitting the mel helps
    with pytest.raises(UsageError, match="init must be real"):
        mel_to_linear(mel, FEATURES, init=true[:-1])


# --------------------------------------------------------------------------- the task


def test_the_task_target_is_the_front_ends_spectrogram():
    audio = piano_like()
    mel = spectral_target(audio, FEATURES, "mel", 1e-5)
    assert torch.allclose(mel, LogMelSpectrogram(FEATURES)(audio).reshape(mel.shape))
    magnitude = spectral_target(audio, FEATURES, "magnitude", 1e-5)
    assert magnitude.shape == (1, 513, audio.shape[-1] // FEATURES.hop_length)
    expected = torch.log(Spectrogram(FEATURES)(audio).reshape(magnitude.shape).clamp_min(1e-5))
    assert torch.allclose(magnitude, expected)


def test_a_small_predictor_learns_the_magnitude_of_a_piece(one_thread):
    torch.manual_seed(0)
    audio = piano_like(2.0)
    mel = LogMelSpectrogram(FEATURES)(audio).reshape(1, 80, -1)
    model = SpectrogramPredictor(small(channels=32))
    task = SpectralTask(model, FEATURES, "mel", SpectralConfig())
    objective = task.objectives()["model"]
    optimiser = torch.optim.Adam(objective.parameters, lr=3e-3)
    batch = {"audio": audio, "mel": mel}
    first = task.validation_metrics(model, batch)
    for _ in range(150):
        loss, _ = objective.module(batch)
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
    last = task.validation_metrics(model, batch)
    assert last["log_l1"] < 0.4 * first["log_l1"]
    assert last["convergence"] < 0.5 * first["convergence"]


# --------------------------------------------------------------------------- inference


class Oracle(SpectrogramPredictor):
    """A predictor that returns a fixed log-magnitude (the truth), to test the back end."""

    def __init__(self, config, log_magnitude):
        super().__init__(config)
        self.log_magnitude = log_magnitude

    def forward(self, local):
        return self.log_magnitude[..., : local.shape[-1]]


def test_magnitude_vocoder_with_the_true_magnitude_beats_griffin_lim_from_the_mel():
    from wavegen.inference.magnitude_vocoder import MagnitudeVocoderAdapter, predicted_magnitude
    from wavegen.inference import Conditioning, InferenceOptions

    audio = piano_like(2.0)
    mel = LogMelSpectrogram(FEATURES)(audio).reshape(1, 80, -1)
    truth = spectral_target(audio, FEATURES, "magnitude", 1e-5)
    model = Oracle(small(nnls_iterations=100, phase_iterations=32), truth).eval()
    # The refined magnitude has exactly the input's mel.
    refined = predicted_magnitude(model, mel, FEATURES)
    fitted = mel_filterbank(FEATURES) @ refined
    assert ((fitted - decompress(mel, FEATURES)).norm() / decompress(mel, FEATURES).norm()) < 1e-3
    info = BundleInfo("spectrogram", model.config, 16000, features=FEATURES, conditioning="mel")
    adapter = MagnitudeVocoderAdapter(model, info)
    result = adapter.run(Conditioning("mel", mel), InferenceOptions(seed=0))
    assert result.audio.shape == audio.shape
    baseline = mel_to_audio(mel, FEATURES, length=audio.shape[-1],
                            generator=torch.Generator().manual_seed(0)).reshape(audio.shape)
    ours = float(multi_resolution_stft_distance(audio, result.audio).total)
    theirs = float(multi_resolution_stft_distance(audio, baseline).total)
    assert ours < 0.8 * theirs, (ours, theirs)


def save(path, config, **info):
    torch.manual_seed(0)
    save_bundle(path, SpectrogramPredictor(config), BundleInfo(
        "spectrogram", config, 16000, features=FEATURES, **info))
    return path


def write_midi(path, seconds: float = 1.5):
    midi = pretty_midi.PrettyMIDI()
    piano = pretty_midi.Instrument(0)
    for i, pitch in enumerate((60, 64, 67)):
        piano.notes.append(pretty_midi.Note(90, pitch, 0.3 * i, seconds))
    midi.instruments.append(piano)
    midi.write(str(path))
    return path


def test_cli_vocodes_and_renders_midi_through_a_pipeline(tmp_path, capsys, one_thread):
    from wavegen.audio.io import load_audio, save_audio
    from wavegen.inference.manifest import write_manifest

    vocoder = save(tmp_path / "pipe" / "vocoder", small(), conditioning="mel")
    save(tmp_path / "pipe" / "midi_to_mel", small("mel"), conditioning="roll")
    wav = tmp_path / "in.wav"
    save_audio(wav, piano_like()[0], 16000)
    assert main(["vocode", str(vocoder), "--wav", str(wav), "-o", str(tmp_path / "v.wav")]) == 0
    out, rate = load_audio(tmp_path / "v.wav")
    assert rate == 16000 and out.shape[-1] == piano_like().shape[-1]
    write_manifest(tmp_path / "pipe", ["midi_to_mel", "vocoder"], "MIDI -> mel -> audio")
    midi = write_midi(tmp_path / "score.mid")
    assert main(["sample", str(tmp_path / "pipe"), "--midi", str(midi),
                 "-o", str(tmp_path / "s.wav")]) == 0
    out, _ = load_audio(tmp_path / "s.wav")
    assert out.shape[-1] % FEATURES.hop_length == 0 and out.shape[-1] >= 1.5 * 16000
    # The mel stage cannot be a vocoder, nor the vocoder a MIDI model: one-line errors.
    capsys.readouterr()
    assert main(["sample", str(vocoder), "--midi", str(midi), "-o", str(tmp_path / "x.wav")]) == 2
    assert len(capsys.readouterr().err.strip().splitlines()) == 1
    assert not (tmp_path / "x.wav").exists()


def test_a_vocoder_bundle_whose_bins_do_not_fit_its_features_is_refused(tmp_path, capsys):
    from wavegen.audio.io import save_audio

    path = save(tmp_path / "bad", small(out_channels=257), conditioning="mel")
    wav = tmp_path / "in.wav"
    save_audio(wav, piano_like()[0], 16000)
    assert main(["vocode", str(path), "--wav", str(wav), "-o", str(tmp_path / "o.wav")]) == 2
    assert "out_channels 257 must equal" in capsys.readouterr().err
    assert not (tmp_path / "o.wav").exists()
