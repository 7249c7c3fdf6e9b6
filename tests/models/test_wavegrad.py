"""WaveGrad: shapes, factor derivation, FiLM conditioning, a valid denoiser under every
parameterisation, exact size estimates, bundles and `wavegen vocode`."""

from __future__ import annotations

import math

import pytest
import torch

from wavegen.audio.features import get_preset
from wavegen.audio.io import load_audio, save_audio
from wavegen.audio.signals import chord
from wavegen.checkpoint import BundleInfo, load_bundle, save_bundle
from wavegen.cli import main
from wavegen.diffusion.parameterization import PARAMETERIZATIONS
from wavegen.diffusion.process import DiffusionProcess
from wavegen.errors import ConfigError, UsageError
from wavegen.models.protocols import NOISE_DRIVEN, DenoiserModel, conforms
from wavegen.models.registry import build_model, get_family
from wavegen.models.wavegrad import (WaveGrad, WaveGradConfig, derive_upsample_factors,
                                     noise_level_encoding)


def parameters(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def tiny(**overrides) -> WaveGrad:
    torch.manual_seed(0)
    return WaveGrad(WaveGradConfig.preset("tiny", **overrides))


def inputs(config: WaveGradConfig, frames: int = 3, batch: int = 2, seed: int = 1):
    g = torch.Generator().manual_seed(seed)
    x_t = torch.randn(batch, 1, frames * config.hop_length, generator=g)
    mel = torch.randn(batch, config.n_mels, frames, generator=g)
    return x_t, mel


# --------------------------------------------------------------------------- config
@pytest.mark.parametrize("hop, sample_rate, factors", [(256, 16000, (4, 4, 4, 2, 2)),
                                                       (300, 24000, (5, 5, 3, 2, 2))])
def test_shapes_for_hop_256_and_300(hop, sample_rate, factors):
    model = tiny(hop_length=hop, sample_rate=sample_rate).eval()
    assert model.config.factors == factors and model.config.upsample_factors is None
    assert [b.factor for b in model.ublocks] == list(factors)
    assert [b.factor for b in model.dblocks] == list(reversed(factors[1:]))
    x_t, mel = inputs(model.config, frames=4)
    with torch.no_grad():
        out = model(x_t, torch.tensor([0.1, 0.9]), local=mel)
    assert out.shape == (2, 1, 4 * hop) and torch.isfinite(out).all()


def test_factor_derivation_and_explicit_factors():
    assert derive_upsample_factors(300, 5) == (5, 5, 3, 2, 2)
    assert derive_upsample_factors(256, 5) == (4, 4, 4, 2, 2)
    assert derive_upsample_factors(256, 4) == (4, 4, 4, 4)
    assert derive_upsample_factors(240, 4) == (5, 4, 4, 3)
    for hop, stages in ((256, 5), (300, 5), (120, 3), (64, 6)):
        factors = derive_upsample_factors(hop, stages)
        assert math.prod(factors) == hop and len(factors) == stages
        assert all(2 <= u <= 8 for u in factors) and list(factors) == sorted(factors)[::-1]
    config = WaveGradConfig.preset("tiny", upsample_factors=(8, 4, 2, 2, 2))
    assert config.factors == (8, 4, 2, 2, 2)
    x_t, mel = inputs(config, frames=2)
    with torch.no_grad():
        assert WaveGrad(config)(x_t, torch.rand(2), mel).shape == x_t.shape


@pytest.mark.parametrize("overrides, fragment", [
    ({"hop_length": 330}, "hop_length 330 cannot be split into 5 upsampling factors in [2, 8]"),
    ({"hop_length": 16}, "hop_length 16 cannot be split into 5 upsampling factors"),
    ({"hop_length": 300, "upsample_factors": [4, 4, 4, 2, 2]},
     "upsample_factors 4 x 4 x 4 x 2 x 2 = 256 must equal hop_length (300)"),
    ({"upsample_factors": [4, 4, 16]}, "upsample_factors must hold 5 positive factors"),
    ({"n_mels": 0}, "the paper has no unconditional model"),
    ({"dblock_channels": [8, 8, 16]}, "dblock_channels must hold 5 even widths"),
])
def test_bad_configs_are_one_line_config_errors(overrides, fragment):
    with pytest.raises(ConfigError) as info:
        WaveGradConfig.preset("tiny", **overrides)
    assert fragment in str(info.value) and "\n" not in str(info.value)


def test_unknown_preset_and_key_are_named():
    with pytest.raises(ConfigError, match="unknown WaveGrad preset 'large'; choose one of base, tiny"):
        WaveGradConfig.preset("large")
    with pytest.raises(ConfigError, match=r"unknown key\(s\) channels"):
        WaveGradConfig.from_dict({"channels": 3})


def test_contract_and_dict_round_trip():
    config = WaveGradConfig.preset("base")
    assert (config.conditioning_channels, config.hop_length, config.sample_rate) == (128, 300, 24000)
    for c in (config, WaveGradConfig.preset("tiny", upsample_factors=[8, 4, 2, 2, 2])):
        assert WaveGradConfig.from_dict(c.to_dict()) == c


def test_estimate_size_is_exact_and_base_is_the_papers_size():
    for config in (WaveGradConfig.preset("tiny"),
                   WaveGradConfig.preset("tiny", hop_length=120, input_channels=12,
                                         ublock_channels=[16, 8, 8], dblock_channels=[4, 6, 10]),
                   WaveGradConfig.preset("base")):
        model = WaveGrad(config)
        size = config.estimate_size()
        assert parameters(model) == size.parameters
        layers = sum(isinstance(m, torch.nn.Conv1d) for m in model.modules())
        assert layers == size.layers
    base = parameters(WaveGrad(WaveGradConfig.preset("base")))
    assert abs(base - 15e6) / 15e6 < 0.1, base  # the paper's WaveGrad Base: 15M


def test_absurd_sizes_fail_before_allocating():
    with pytest.raises(ConfigError, match="input_channels=10000000 gives about .* parameters"):
        WaveGrad(WaveGradConfig.preset("tiny", input_channels=10_000_000))


# --------------------------------------------------------------------------- the network
def test_film_modulates_with_the_noise_level_and_the_noisy_input():
    model = tiny().eval()
    x_t, mel = inputs(model.config)
    t = torch.tensor([0.3, 0.3])
    with torch.no_grad():
        base = model(x_t, t, mel)
        other_t = model(x_t, torch.tensor([0.3, 0.31]), mel)
        other_x = model(x_t + 0.5 * torch.randn_like(x_t), t, mel)
        other_mel = model(x_t, t, mel + 1.0)
    # Example 0 is unchanged when only example 1's time moves (no leak across the batch).
    assert torch.equal(other_t[0], base[0])
    assert (other_t[1] - base[1]).abs().max() > 1e-4 * base[1].abs().max()
    assert (other_x - base).abs().max() > 1e-3 * base.abs().max()
    assert (other_mel - base).abs().max() > 1e-3 * base.abs().max()
    # The noise level and the noisy waveform reach the UBlocks only through FiLM: with the
    # FiLM scale and shift fixed, neither changes the output.
    fixed = [(torch.ones(2, f.scale.out_channels, 1), torch.zeros(2, f.shift.out_channels, 1))
             for f in model.films]
    for film, params in zip(model.films, fixed):
        film.forward = lambda h, t, p=params: (p[0].expand(-1, -1, h.shape[-1]),
                                               p[1].expand(-1, -1, h.shape[-1]))
    with torch.no_grad():
        a = model(x_t, t, mel)
        b = model(torch.randn_like(x_t), torch.tensor([0.9, 0.1]), mel)
    assert torch.allclose(a, b)


def test_noise_level_encoding_is_sinusoidal_and_distinguishes_close_times():
    pe = noise_level_encoding(torch.tensor([0.0, 0.5, 0.5001]), 16)
    assert pe.shape == (3, 16, 1)
    assert torch.equal(pe[0, :8, 0], torch.zeros(8)) and torch.equal(pe[0, 8:, 0], torch.ones(8))
    assert torch.allclose(pe[:, :8].pow(2) + pe[:, 8:].pow(2), torch.ones(3, 8, 1))
    assert (pe[1] - pe[2]).abs().max() > 0.1  # the 5000 scale resolves 1e-4 of t


def test_wrong_inputs_are_usage_errors():
    model = tiny()
    x_t, mel = inputs(model.config)
    with pytest.raises(UsageError, match="WaveGrad is mel-conditioned"):
        model(x_t, torch.rand(2))
    with pytest.raises(UsageError, match=r"frames \* 256.*got \[2, 1, 700\]"):
        model(x_t[..., :700], torch.rand(2), mel)
    with pytest.raises(UsageError, match="80, frames"):
        model(x_t, torch.rand(2), mel[:, :40])


@pytest.mark.parametrize("parameterization", PARAMETERIZATIONS)
def test_a_valid_denoiser_under_every_parameterisation(parameterization):
    torch.manual_seed(0)
    model = tiny(hop_length=64, upsample_factors=[4, 2, 2, 2, 2], n_mels=8)
    process = DiffusionProcess(parameterization=parameterization)
    g = torch.Generator().manual_seed(3)
    frames = 4
    x0 = 0.5 * torch.sin(torch.arange(frames * 64) * 0.2 * torch.rand(2, 1, 1, generator=g) + 0.3)
    mel = torch.randn(2, 8, frames, generator=g)
    t = torch.tensor([0.3, 0.7])
    noise = torch.randn(x0.shape, generator=g)

    def loss() -> torch.Tensor:
        return process.loss(lambda x, tt: model(x, tt, local=mel), x0, t=t, noise=noise).loss

    optimiser = torch.optim.Adam(model.parameters(), lr=3e-3)
    with torch.no_grad():
        before = loss().item()
    for _ in range(30):
        optimiser.zero_grad()
        value = loss()
        value.backward()
        optimiser.step()
    with torch.no_grad():
        after = loss().item()
    assert math.isfinite(before) and after < 0.7 * before, (before, after)


# --------------------------------------------------------------------------- registry, bundles, CLI
def test_registered_as_a_noise_driven_diffusion_family():
    family = get_family("wavegrad")
    assert (family.config_class, family.model_class) == (WaveGradConfig, WaveGrad)
    assert family.kind == NOISE_DRIVEN and family.task == "diffusion"
    model, config = build_model("wavegrad", WaveGradConfig.preset("tiny").to_dict())
    assert isinstance(model, DenoiserModel) and conforms(model, NOISE_DRIVEN)
    assert config == WaveGradConfig.preset("tiny")


def tiny_bundle(path):
    model = tiny().eval()
    info = BundleInfo("wavegrad", model.config, 16000, features=get_preset("hifigan-16k"),
                      conditioning="mel",
                      process=DiffusionProcess(sampler="ddim", sampler_steps=8).to_dict())
    save_bundle(path, model, info)
    return model


def test_bundle_round_trip(tmp_path):
    model = tiny_bundle(tmp_path / "wg")
    loaded, info = load_bundle(tmp_path / "wg")
    assert isinstance(loaded, WaveGrad) and info.family == "wavegrad"
    assert loaded.config == model.config and info.process["sampler_steps"] == 8
    x_t, mel = inputs(model.config)
    with torch.no_grad():
        assert torch.equal(loaded.eval()(x_t, torch.rand(2).fill_(0.4), mel),
                           model(x_t, torch.rand(2).fill_(0.4), mel))


def test_vocode_an_untrained_tiny_bundle(tmp_path):
    tiny_bundle(tmp_path / "wg")
    wave = torch.from_numpy(chord(16000, 0.25)).float()[None]
    save_audio(tmp_path / "x.wav", wave, 16000)
    assert main(["vocode", str(tmp_path / "wg"), "--wav", str(tmp_path / "x.wav"), "-o",
                 str(tmp_path / "y.wav"), "--steps", "3"]) == 0
    audio, rate = load_audio(tmp_path / "y.wav")
    frames = wave.shape[-1] // 256
    assert rate == 16000 and audio.shape[-1] == frames * 256
    assert torch.isfinite(torch.as_tensor(audio)).all() and torch.as_tensor(audio).abs().max() > 0


def test_the_input_level_map_is_applied_to_the_mel():
    from wavegen.models.wavegrad import WaveGrad, WaveGradConfig

    torch.manual_seed(0)
    plain = WaveGrad(WaveGradConfig.preset("tiny"))
    mapped = WaveGrad(WaveGradConfig.preset("tiny", local_offset=6.0, local_scale=0.25))
    mapped.load_state_dict(plain.state_dict())
    x, t, mel = torch.randn(1, 1, 512), torch.tensor([0.4]), torch.randn(1, 80, 2) - 8
    with torch.no_grad():
        torch.testing.assert_close(mapped(x, t, mel), plain(x, t, (mel + 6.0) * 0.25))
