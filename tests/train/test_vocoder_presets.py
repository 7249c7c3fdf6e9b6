"""Every generator gives exactly frames x hop samples for every feature preset (and hops
whose factors are odd), so no sample rate crashes or drifts."""

from __future__ import annotations

import pytest
import torch

from wavegen.audio.features import PRESETS
from wavegen.audio.spectral import LogMelSpectrogram
from wavegen.models.hifigan import HiFiGANConfig, HiFiGANGenerator, suggest_upsampling
from wavegen.models.melgan import MelGANConfig, MelGANGenerator


def generators(n_mels: int, hop: int, sample_rate: int):
    rates, kernels = suggest_upsampling(hop)
    for version in ("v1", "v2", "v3"):
        yield version, HiFiGANGenerator(HiFiGANConfig.preset(
            version, num_mels=n_mels, hop_length=hop, sample_rate=sample_rate,
            upsample_rates=rates, upsample_kernel_sizes=kernels, upsample_initial_channel=32))
    yield "melgan", MelGANGenerator(MelGANConfig(num_mels=n_mels, ratios=rates, ngf=4,
                                                 n_residual_layers=1, hop_length=hop,
                                                 sample_rate=sample_rate))


@pytest.mark.parametrize("preset", sorted(PRESETS))
def test_output_length_is_frames_times_hop_for_every_preset(preset):
    features = PRESETS[preset]
    audio = torch.randn(2, features.sample_rate // 10) * 0.1
    mel = LogMelSpectrogram(features)(audio)            # [2, n_mels, frames] of the real front-end
    for name, generator in generators(features.n_mels, features.hop_length, features.sample_rate):
        with torch.no_grad():
            out = generator(mel)
        assert out.shape == (2, 1, mel.shape[-1] * features.hop_length), (preset, name)


@pytest.mark.parametrize("hop", [120, 240, 300, 320])
def test_hops_with_odd_factors_keep_exact_lengths(hop):
    for name, generator in generators(80, hop, 24000):
        with torch.no_grad():
            out = generator(torch.randn(1, 80, 7))
        assert out.shape[-1] == 7 * hop, (hop, name)


@pytest.mark.parametrize("hop", [120, 256, 300])
def test_size_estimates_are_exact_for_every_generator(hop):
    """The analytic estimate the size limits use is what the built generator holds, so a
    model is neither refused nor let through by mistake."""
    for name, generator in generators(80, hop, 24000):
        built = sum(p.numel() for p in generator.parameters())
        assert generator.config.estimate_size().parameters == built, (hop, name)
