"""DiffWave: shapes per conditioning, receptive field, non-causality, a working denoiser under
every parameterisation, the paper's sizes, hops, bundles and ``wavegen vocode``."""

from __future__ import annotations

import math

import numpy as np
import pytest
import soundfile as sf
import torch
from torch import nn

from families import DIFFWAVE_FEATURES, DIFFWAVE_TINY, diffwave_bundle, tiny_diffwave

from wavegen.audio.signals import chord
from wavegen.checkpoint import load_bundle
from wavegen.cli import main
from wavegen.diffusion.process import DiffusionProcess
from wavegen.errors import ConfigError, UsageError
from wavegen.models.diffwave import (DiffWave, DiffWaveConfig, SpectrogramUpsampler,
                                     upsample_factors_for)
from wavegen.models.protocols import NOISE_DRIVEN, DenoiserModel, conforms
from wavegen.models.registry import get_family

TINY = DIFFWAVE_TINY
FEATURES = DIFFWAVE_FEATURES


def tiny(seed: int = 0, **overrides) -> DiffWave:
    return tiny_diffwave(seed, **overrides)


def parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


# --------------------------------------------------------------------------- shapes
@pytest.mark.parametrize("conditioning, channels", [("mel", 16), ("roll", 265), ("none", 0)])
def test_output_shape_for_each_conditioning(conditioning, channels):
    model = tiny(conditioning=conditioning)
    assert model.config.conditioning_channels == channels
    assert conforms(model, NOISE_DRIVEN) and isinstance(model, DenoiserModel)
    x = torch.randn(2, 1, 4 * 64)
    local = torch.randn(2, channels, 4) if channels else None
    t = torch.tensor([0.3, 0.7])
    out = model(x, t, local=local)
    assert out.shape == (2, 1, 256) and torch.isfinite(out).all()
    assert not torch.allclose(out, model(x, t.flip(0), local=local))  # the time matters
    if channels:  # the conditioning matters, and the wrong shape or its absence is refused
        assert not torch.allclose(out, model(x, t, local=torch.zeros_like(local)))
        with pytest.raises(UsageError, match="local conditioning must be"):
            model(x, torch.rand(2), local=torch.randn(2, channels, 5))
        with pytest.raises(UsageError, match="pass local"):
            model(x, torch.rand(2))
    else:
        with pytest.raises(UsageError, match="unconditional"):
            model(x, torch.rand(2), local=torch.randn(2, 16, 4))


def test_label_conditioning_uses_a_no_label_row_when_none_is_given():
    model = tiny(global_classes=3)
    x, t, local = torch.randn(3, 1, 128), torch.full((3,), 0.4), torch.randn(3, 16, 2)
    labelled = model(x, t, local, global_cond=torch.tensor([0, 1, 2]))
    unlabelled = model(x, t, local)
    assert labelled.shape == unlabelled.shape == (3, 1, 128)
    assert not torch.allclose(labelled[0], unlabelled[0])
    same = model(x, t, local, global_cond=torch.tensor([2, 2, 2]))
    assert torch.allclose(same[2], labelled[2]) and not torch.allclose(same[0], labelled[0])
    # Index 3 (= global_classes) is the "no label" row, as None gives it.
    explicit = model(x, t, local, global_cond=torch.tensor([3, 3, 3]))
    assert torch.equal(explicit, unlabelled)
    with pytest.raises(UsageError, match=r"labels must be in \[0, 3\]"):
        model(x, t, local, global_cond=torch.tensor([0, 1, 4]))
    with pytest.raises(UsageError, match="no label conditioning"):
        tiny()(x, t, local, global_cond=torch.tensor([0, 1, 2]))


# --------------------------------------------------------------------------- receptive field
def test_receptive_field_measured_by_gradient_equals_the_analytic_one_and_is_non_causal():
    model = tiny(conditioning="none")
    dilations = [1, 2, 4, 1, 2, 4]
    reach = sum(dilations)
    assert model.receptive_field == 1 + 2 * reach == 29
    x = torch.randn(1, 1, 101, requires_grad=True)
    centre = 50
    model(x, torch.tensor([0.3]))[0, 0, centre].backward()
    touched = torch.nonzero(x.grad[0, 0]).flatten()
    assert touched.min().item() == centre - reach and touched.max().item() == centre + reach
    assert touched.numel() == model.receptive_field

    # Non-causal: changing a future sample within the reach changes the output at `centre`.
    with torch.no_grad():
        y = x.detach().clone()
        y[..., centre + 5] += 1.0
        before = model(x.detach(), torch.tensor([0.3]))[0, 0, centre]
        after = model(y, torch.tensor([0.3]))[0, 0, centre]
    assert (after - before).abs() > 1e-6


def test_the_paper_presets_receptive_fields():
    assert DiffWaveConfig.preset("base").receptive_field == 1 + 2 * 3 * 1023
    assert DiffWaveConfig.preset("unconditional").receptive_field == 1 + 2 * 3 * 4095


# --------------------------------------------------------------------------- denoiser
@pytest.mark.parametrize("parameterization", ["eps", "x0", "v", "score"])
def test_a_few_optimisation_steps_reduce_the_diffusion_loss(parameterization, one_thread):
    torch.manual_seed(0)
    model = DiffWave(DiffWaveConfig(**TINY))  # paper init (zero out)
    process = DiffusionProcess(parameterization=parameterization)
    generator = torch.Generator().manual_seed(1)
    x0 = 0.5 * torch.sin(torch.arange(512) * 2 * math.pi * 440 / 16000).expand(4, 1, 512)
    x0 = x0 * torch.linspace(0.5, 1.0, 4)[:, None, None]
    local = torch.randn(4, 16, 8, generator=generator)
    t = torch.tensor([0.2, 0.4, 0.6, 0.9])
    noise = torch.randn(x0.shape, generator=generator)

    def loss() -> torch.Tensor:
        return process.loss(lambda x_t, tt: model(x_t, tt, local=local), x0, t=t,
                            noise=noise).loss

    optimiser = torch.optim.Adam(model.parameters(), lr=1e-2)
    before = loss().item()
    for _ in range(20):
        optimiser.zero_grad()
        loss().backward()
        optimiser.step()
    after = loss().item()
    assert math.isfinite(after) and after < 0.7 * before, (before, after)


# --------------------------------------------------------------------------- sizes
@pytest.mark.parametrize("name, paper", [("base", 2.64e6), ("large", 6.91e6),
                                         ("unconditional", 24.1e6)])
def test_presets_match_the_papers_parameter_counts_and_estimates_are_exact(name, paper):
    config = DiffWaveConfig.preset(name)
    model = DiffWave(config)
    count = parameters(model)
    assert abs(count - paper) / paper < 0.02, count
    assert config.estimate_size().parameters == count


def test_estimate_is_exact_with_labels_roll_and_odd_hops():
    for overrides in ({"global_classes": 10}, {"conditioning": "roll", "hop_length": 300},
                      {"hop_length": 2048}, {"hop_length": 5}):
        config = DiffWaveConfig(**{**TINY, **overrides})
        assert config.estimate_size().parameters == parameters(DiffWave(config)), overrides


def test_preset_overrides_and_unknown_preset():
    config = DiffWaveConfig.preset("large", sample_rate=16000)
    assert config.residual_channels == 128 and config.sample_rate == 16000
    assert DiffWaveConfig.preset("unconditional").conditioning_channels == 0
    with pytest.raises(ConfigError, match="unknown DiffWave preset 'huge'"):
        DiffWaveConfig.preset("huge")


# --------------------------------------------------------------------------- hops
def test_upsampling_factors_follow_the_hop():
    assert upsample_factors_for(256) == (16, 16)
    assert upsample_factors_for(300) == (20, 15)
    assert upsample_factors_for(64) == (8, 8)
    assert upsample_factors_for(2048) == (16, 16, 8)
    assert upsample_factors_for(1) == ()


@pytest.mark.parametrize("hop", [300, 64, 256])
def test_any_factorable_hop_gives_frames_times_hop_samples(hop):
    model = tiny(hop_length=hop)
    out = model(torch.randn(1, 1, 3 * hop), torch.tensor([0.5]), local=torch.randn(1, 16, 3))
    assert out.shape == (1, 1, 3 * hop)


def test_an_unfactorable_hop_is_a_one_line_config_error():
    with pytest.raises(ConfigError) as error:
        DiffWaveConfig(hop_length=257)
    assert "\n" not in str(error.value) and "prime factor 257" in str(error.value)
    with pytest.raises(ConfigError, match="must equal hop_length"):
        DiffWaveConfig(hop_length=256, upsample_factors=(16, 8))


def test_upsampler_equals_the_papers_padded_transposed_conv_for_even_factors():
    torch.manual_seed(0)
    ours = SpectrogramUpsampler((16,))
    paper = nn.ConvTranspose2d(1, 1, (3, 32), stride=(1, 16), padding=(1, 8))
    paper.load_state_dict(ours.stages[0].state_dict())
    mel = torch.randn(2, 80, 7)
    expected = torch.nn.functional.leaky_relu(paper(mel[:, None]), 0.4)[:, 0]
    assert torch.allclose(ours(mel), expected, atol=1e-6)


# --------------------------------------------------------------------------- bundles, CLI
def untrained_bundle(tmp_path) -> tuple[DiffWave, str]:
    return diffwave_bundle(tmp_path / "bundle")


def test_bundle_round_trip(tmp_path):
    model, path = untrained_bundle(tmp_path)
    loaded, info = load_bundle(path)
    assert isinstance(loaded, DiffWave) and info.family == "diffwave"
    assert info.model_config == model.config and get_family("diffwave").kind == NOISE_DRIVEN
    x, t, local = torch.randn(2, 1, 256), torch.tensor([0.1, 0.8]), torch.randn(2, 16, 4)
    with torch.no_grad():
        assert torch.equal(loaded(x, t, local), model(x, t, local))


def test_vocode_runs_on_an_untrained_tiny_bundle(tmp_path, capsys, one_thread):
    _, path = untrained_bundle(tmp_path)
    wav, out = tmp_path / "x.wav", tmp_path / "y.wav"
    sf.write(wav, chord(16000, 0.25), 16000)
    assert main(["vocode", path, "--wav", str(wav), "-o", str(out), "--steps", "3"]) == 0, \
        capsys.readouterr().err
    audio, rate = sf.read(out, dtype="float32")
    assert rate == 16000 and abs(audio.shape[0] - 4000) <= 64 and np.isfinite(audio).all()
    assert "real-time factor" in capsys.readouterr().out
    # The report counts the network evaluations each sampler makes for 3 steps: one per step
    # for ddpm / ddim, two for each Heun step but the last (an Euler step to sigma 0).
    for sampler, nfe in (("ddim", 3), ("ddpm", 3), ("heun", 5)):
        assert main(["vocode", path, "--wav", str(wav), "-o", str(tmp_path / f"{sampler}.wav"),
                     "--steps", "3", "--sampler", sampler]) == 0
        assert capsys.readouterr().out.splitlines()[0].endswith(f"; NFE {nfe}"), sampler
    status = main(["sample", path, "--wav", str(wav), "-o", str(tmp_path / "s.wav"),
                   "--steps", "4", "--sampler", "ddim"])
    assert status == 0 and capsys.readouterr().out.rstrip().endswith("; NFE 4")


# --------------------------------------------------------------------------- off the hop grid
def test_a_trained_tiny_diffwave_holds_a_chord_off_the_hop_grid(one_thread):
    """Trained on a held chord at 330 + 415 Hz (mel hop 64 at 16 kHz: the frame rate is
    250 Hz, so a one-frame shift-equivariant generator can only hold partials at multiples of
    250 Hz), the sampled audio's two strongest peaks sit on the chord's pitches and the
    nearest grid lines (250, 500 Hz) stay far below them."""
    from scipy.signal import find_peaks

    from wavegen.audio.features import FeatureConfig
    from wavegen.audio.spectral import LogMelSpectrogram
    from wavegen.diffusion.schedules import ScheduleConfig

    rate, hop, pitches = 16000, 64, (330.0, 415.0)
    features = FeatureConfig(sample_rate=rate, n_fft=256, win_length=256, hop_length=hop,
                             n_mels=16, fmax=8000.0)
    log_mel = LogMelSpectrogram(features)

    def held_chord(batch: int, length: int, generator: torch.Generator) -> torch.Tensor:
        t = torch.arange(length) / rate
        phases = 2 * math.pi * torch.rand(batch, len(pitches), 1, generator=generator)
        gain = 0.25 * (0.8 + 0.4 * torch.rand(batch, 1, 1, generator=generator))
        tones = sum(torch.sin(2 * math.pi * f * t + phases[:, i]) for i, f in enumerate(pitches))
        return gain * tones.unsqueeze(1)

    def mel_of(audio: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            return log_mel(audio[:, 0])[..., :audio.shape[-1] // hop]

    torch.manual_seed(0)
    model = DiffWave(DiffWaveConfig(residual_layers=8, residual_channels=16, dilation_cycle=8,
                                    n_mels=16, hop_length=hop, sample_rate=rate,
                                    embedding_hidden=32))
    process = DiffusionProcess(schedule=ScheduleConfig(kind="linear", num_steps=50,
                                                       beta_start=1e-4, beta_end=0.05),
                               parameterization="eps")
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    data = torch.Generator().manual_seed(1)
    for _ in range(600):
        x0 = held_chord(8, 1024, data)
        mel = mel_of(x0)
        loss = process.loss(lambda x, t: model(x, t, local=mel), x0).loss
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    model.eval()
    target = held_chord(1, 4096, torch.Generator().manual_seed(5))
    mel = mel_of(target)
    with torch.no_grad():
        audio = process.sample(lambda x, t: model(x, t, local=mel), (1, 1, 4096),
                               sampler="ddpm", steps=50,
                               generator=torch.Generator().manual_seed(0))[0, 0].numpy()
    spectrum = np.abs(np.fft.rfft(audio * np.hanning(audio.size)))
    freqs = np.fft.rfftfreq(audio.size, 1 / rate)
    peaks, _ = find_peaks(spectrum, distance=int(30 / (rate / audio.size)))
    strongest = sorted(freqs[peaks[np.argsort(spectrum[peaks])[::-1][:2]]])
    for found, pitch in zip(strongest, pitches):
        assert abs(found - pitch) <= 0.025 * pitch, (strongest, pitches)

    def level(f: float) -> float:
        return float(spectrum[np.abs(freqs - f) < 15].max())

    grid = max(level(rate / hop), level(2 * rate / hop))
    assert min(level(p) for p in pitches) > 5 * grid
    assert 0.5 < audio.std() / float(target.std()) < 2.0


def test_the_input_level_map_is_applied_before_the_upsampler():
    plain = tiny()
    mapped = tiny(local_offset=6.0, local_scale=0.25)
    mapped.load_state_dict(plain.state_dict())
    x, t, mel = torch.randn(2, 1, 256), torch.tensor([0.2, 0.9]), torch.randn(2, 16, 4) - 8
    with torch.no_grad():
        torch.testing.assert_close(mapped(x, t, mel), plain(x, t, (mel + 6.0) * 0.25))
    with pytest.raises(ConfigError, match="local_scale must be a finite number > 0"):
        DiffWaveConfig(local_scale=0.0)
