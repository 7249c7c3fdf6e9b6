"""Model kinds, their protocols, the config contract and the open family registry."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import pytest
import torch
from torch import nn

from wavegen.checkpoint import BundleInfo, load_bundle, read_bundle_info, save_bundle
from wavegen.errors import CheckpointError, ConfigError, UsageError
from wavegen.models.hifigan import HiFiGANConfig, HiFiGANGenerator
from wavegen.models.melgan import MelGANConfig, MelGANGenerator
from wavegen.models.protocols import (DISCRETE_AUTOENCODER, FEED_FORWARD, KINDS, NOISE_DRIVEN,
                                      SAMPLE_LEVEL, DenoiserModel, FeedForwardModel, FlowModel,
                                      ModelConfigContract, ModelContract, SampleLevelModel,
                                      conforms, contract_of, missing_methods)
from wavegen.models.registry import (FAMILIES, Family, get_family, register_family,
                                     unregister_family)
from wavegen.models.size import SizeEstimate, conv
from wavegen.models.wavenet import WaveNet, WaveNetConfig
from wavegen.utils.config import DictConfig

TINY_WAVENET = WaveNetConfig(layers=3, stacks=1, residual_channels=8, gate_channels=8,
                             skip_channels=8, sample_rate=8000)
MEL_WAVENET = WaveNetConfig(layers=3, stacks=1, residual_channels=8, gate_channels=8,
                            skip_channels=8, local_channels=20, hop_length=64,
                            upsample_factors=(8, 8))
TINY_HIFIGAN = HiFiGANConfig(num_mels=20, upsample_rates=(8, 8), upsample_kernel_sizes=(16, 16),
                             upsample_initial_channel=16, resblock="2",
                             resblock_kernel_sizes=(3,), resblock_dilation_sizes=((1, 3),),
                             hop_length=64, sample_rate=16000)
TINY_MELGAN = MelGANConfig(num_mels=20, ratios=(8, 8), ngf=4, n_residual_layers=1,
                           hop_length=64, sample_rate=16000)


def test_the_four_kinds():
    assert KINDS == (SAMPLE_LEVEL, FEED_FORWARD, NOISE_DRIVEN, DISCRETE_AUTOENCODER)
    assert KINDS == ("sample_level", "feed_forward", "noise_driven", "discrete_autoencoder")


def test_builtin_families_declare_kinds_tasks_and_the_vocoder_flag():
    expected = {"wavenet": (SAMPLE_LEVEL, "likelihood", False),
                "hifigan": (FEED_FORWARD, "adversarial", True),
                "melgan": (FEED_FORWARD, "adversarial", True)}
    for name, (kind, task, vocoder) in expected.items():
        family = get_family(name)
        assert (family.kind, family.task, family.vocoder, family.inference) == \
            (kind, task, vocoder, None)
    with pytest.raises(AttributeError):
        get_family("hifigan").vocoder = False  # read-only: derived from the kind


@pytest.mark.parametrize("config, contract", [
    (TINY_WAVENET, ModelContract(0, None, 8000)),  # WaveNet stores hop_length 0 here
    (MEL_WAVENET, ModelContract(20, 64, 16000)),
    (TINY_HIFIGAN, ModelContract(20, 64, 16000)),
    (TINY_MELGAN, ModelContract(20, 64, 16000)),
], ids=["wavenet", "wavenet-mel", "hifigan", "melgan"])
def test_builtin_configs_state_the_contract_without_changing_their_dicts(config, contract):
    assert isinstance(config, ModelConfigContract)
    assert contract_of(config) == contract and contract.conditional == (contract.hop_length
                                                                       is not None)
    data = config.to_dict()
    assert "conditioning_channels" not in data  # a property, not a stored field
    assert type(config).from_dict(json.loads(json.dumps(data))) == config


def test_built_models_satisfy_their_kinds_protocol():
    wavenet, hifigan, melgan = (WaveNet(TINY_WAVENET), HiFiGANGenerator(TINY_HIFIGAN),
                                MelGANGenerator(TINY_MELGAN))
    assert isinstance(wavenet, SampleLevelModel) and conforms(wavenet, SAMPLE_LEVEL)
    for generator in (hifigan, melgan):
        assert isinstance(generator, FeedForwardModel) and conforms(generator, FEED_FORWARD)
        assert not conforms(generator, SAMPLE_LEVEL)  # no incremental interface
        mel = torch.randn(2, 20, 5)
        assert generator(mel).shape == (2, 1, 5 * 64)
    # Structural checks see members, not signatures: a kind is declared by the family, and
    # only a missing member tells kinds apart (any forward() looks like a denoiser's).
    assert not conforms(hifigan, DISCRETE_AUTOENCODER)
    assert not conforms(wavenet, DISCRETE_AUTOENCODER)
    for family in FAMILIES.values():
        assert missing_methods(family.model_class, family.kind) == []


class _Flowish:
    config = None

    def loss(self, wave, local=None, global_cond=None):
        return wave.mean()

    def infer(self, mel, sigma=1.0):
        return mel


class _Denoiserish:
    config = None

    def forward(self, x_t, t, local=None):
        return x_t


def test_a_noise_driven_model_is_a_flow_or_a_denoiser():
    assert conforms(_Flowish(), NOISE_DRIVEN) and isinstance(_Flowish(), FlowModel)
    assert conforms(_Denoiserish(), NOISE_DRIVEN) and isinstance(_Denoiserish(), DenoiserModel)
    assert missing_methods(_Flowish, NOISE_DRIVEN) == []
    assert missing_methods(_Denoiserish, NOISE_DRIVEN) == []
    assert missing_methods(_Denoiserish, SAMPLE_LEVEL) == [
        "loss", "silence_input", "start", "step", "targets_from_waveform"]
    with pytest.raises(ConfigError, match="unknown model kind 'gan'; known: sample_level"):
        conforms(_Flowish(), "gan")


@dataclass
class _Contract:
    conditioning_channels: Any = 0
    hop_length: Any = None
    sample_rate: Any = None


def test_contract_of_checks_and_normalises():
    assert contract_of(_Contract()) == ModelContract(0, None, None)
    assert contract_of(_Contract(0, 256, 8000)) == ModelContract(0, None, 8000)
    assert contract_of(_Contract(80, 256, None)).hop_length == 256
    with pytest.raises(ConfigError, match="object does not state the model config contract"):
        contract_of(object())
    with pytest.raises(ConfigError, match="80 conditioning channels need hop_length >= 1"):
        contract_of(_Contract(80, 0))
    with pytest.raises(ConfigError, match="conditioning_channels must be an int >= 0"):
        contract_of(_Contract(-1))
    with pytest.raises(ConfigError, match="sample_rate must be an int >= 1 or None"):
        contract_of(_Contract(0, None, 0))


# --------------------------------------------------------------------------- open registry
@dataclass
class UpsamplerConfig(DictConfig):
    """A tiny feed-forward features -> waveform model registered by this test."""

    channels: int = 4
    hop_length: int = 8
    sample_rate: int = 8000

    @property
    def conditioning_channels(self) -> int:
        return self.channels

    def estimate_size(self) -> SizeEstimate:
        return conv(self.channels, 1, self.hop_length)



class Upsampler(nn.Module):
    """``[B, channels, F]`` -> ``[B, 1, F * hop]`` with one transposed convolution."""

    def __init__(self, config: UpsamplerConfig):
        super().__init__()
        self.config = config
        self.up = nn.ConvTranspose1d(config.channels, 1, config.hop_length,
                                     stride=config.hop_length)

    def forward(self, mel: torch.Tensor) -> torch.Tensor:
        return torch.tanh(self.up(mel))


NAME = "test-upsampler"


@pytest.fixture
def upsampler_family():
    family = register_family(Family(NAME, UpsamplerConfig, Upsampler, FEED_FORWARD,
                                    task="adversarial"))
    yield family
    if NAME in FAMILIES:
        unregister_family(NAME)


def test_a_family_registered_at_run_time_saves_and_loads_through_checkpoints(
        upsampler_family, tmp_path):
    assert get_family(NAME) is upsampler_family and upsampler_family.vocoder
    torch.manual_seed(0)
    config = UpsamplerConfig(channels=4, hop_length=8)
    model = upsampler_family.model_class(config)
    save_bundle(tmp_path / "bundle", model, BundleInfo(NAME, config, 8000))
    loaded, info = load_bundle(tmp_path / "bundle")
    assert isinstance(loaded, Upsampler) and info.family == NAME and info.model_config == config
    mel = torch.randn(1, 4, 6)
    with torch.no_grad():
        assert torch.equal(loaded(mel), model(mel)) and loaded(mel).shape == (1, 1, 48)

    # Once the family is gone, its bundles are refused in one line naming the family.
    assert unregister_family(NAME) is upsampler_family
    with pytest.raises(CheckpointError, match=r"config.json: unknown model family "
                                              r"'test-upsampler'; known: ") as error:
        read_bundle_info(tmp_path / "bundle")
    assert "test-upsampler," not in str(error.value) and "wavenet" in str(error.value)


def test_registering_checks_the_family(upsampler_family):
    with pytest.raises(UsageError, match="'test-upsampler' is already registered"):
        register_family(upsampler_family)
    replacement = Family(NAME, UpsamplerConfig, Upsampler, FEED_FORWARD, task="likelihood")
    assert register_family(replacement, replace=True) is get_family(NAME)
    with pytest.raises(ConfigError, match="unknown model kind 'vocoder'"):
        Family("x", UpsamplerConfig, Upsampler, "vocoder")
    with pytest.raises(ConfigError, match="Upsampler lacks autoencode, decode, encode, which a "
                                          "discrete_autoencoder model has"):
        register_family(Family("x", UpsamplerConfig, Upsampler, DISCRETE_AUTOENCODER))

    @dataclass
    class NoContract(DictConfig):
        channels: int = 4


    with pytest.raises(ConfigError, match="NoContract lacks estimate_size, "
                                          "conditioning_channels, hop_length, sample_rate"):
        register_family(Family("x", NoContract, Upsampler, FEED_FORWARD))
    with pytest.raises(ConfigError, match="config_class must be a dataclass"):
        register_family(Family("x", dict, Upsampler, FEED_FORWARD))
    with pytest.raises(ConfigError, match="inference must be None or callable"):
        Family("x", UpsamplerConfig, Upsampler, FEED_FORWARD, inference="default")
    assert "x" not in FAMILIES
    with pytest.raises(UsageError, match="no model family 'x' is registered"):
        unregister_family("x")


def test_registered_names_appear_in_unknown_family_errors(upsampler_family):
    with pytest.raises(ConfigError, match="known: ") as error:
        get_family("wavegl0w")
    known = str(error.value).split("known: ", 1)[1].split(", ")
    assert known == sorted(known)
    assert {"hifigan", "melgan", "test-upsampler", "wavenet"} <= set(known)
