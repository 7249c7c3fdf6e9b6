"""Absurd or malformed configurations fail at once with one line naming the file and the key.

Sizes are estimated analytically (the estimates are checked against real models here) and
refused before anything is allocated; integers are never guessed from floats or text;
bundle configs, recipes and checkpoints that are not what they claim to be are named; and a
checkpoint that needs code to unpickle is refused without torch's advice to run that code.
"""

from __future__ import annotations

import json
import time
import warnings
from pathlib import Path

import pytest
import torch
from torch import nn

from wavegen.checkpoint import (BundleInfo, load_bundle, load_training_state, read_bundle_info,
                                save_bundle)
from wavegen.cli import main
from wavegen.errors import CheckpointError, ConfigError
from wavegen.models.discriminators import build_discriminator
from wavegen.models.gantts import RandomWindowDiscriminators
from wavegen.models.hifigan import (HiFiGANConfig, HiFiGANGenerator, MultiPeriodDiscriminator,
                                    MultiScaleDiscriminator)
from wavegen.models.melgan import MelGANConfig, MelGANGenerator, MelGANMultiScaleDiscriminator
from wavegen.models.registry import build_model
from wavegen.models.size import MAX_PARAMETERS, approx
from wavegen.models.wavenet import WaveNet, WaveNetConfig
from wavegen.train.config import TrainConfig
from wavegen.train.recipe import load_recipe, recipe_from_dict
from wavegen.utils.config import from_dict

RECIPES = Path(__file__).resolve().parents[2] / "recipes"
WEIGHT_LAYERS = (nn.Conv1d, nn.Conv2d, nn.ConvTranspose1d, nn.Linear, nn.Embedding)


def measured(model: nn.Module) -> tuple[int, int]:
    """(parameters, weight layers) of a built model."""
    return (sum(p.numel() for p in model.parameters()),
            sum(isinstance(m, WEIGHT_LAYERS) for m in model.modules()))


@pytest.fixture(autouse=True)
def default_limits(monkeypatch):
    monkeypatch.delenv("WAVEGEN_MAX_PARAMETERS", raising=False)
    monkeypatch.delenv("WAVEGEN_MAX_LAYERS", raising=False)


# --------------------------------------------------------------------------- estimates
GENERATORS = [
    (WaveNet, WaveNetConfig(layers=3, stacks=2, residual_channels=8, gate_channels=6,
                            skip_channels=5)),
    (WaveNet, WaveNetConfig(layers=3, stacks=2, head="mol", residual_channels=8, gate_channels=6,
                            skip_channels=5, global_classes=3, global_dim=4, local_channels=7,
                            hop_length=12, upsample_factors=(3, 4))),
    (WaveNet, WaveNetConfig(layers=2, head="gaussian", kernel_size=3, global_dim=3,
                            local_channels=2, hop_length=4, upsample_factors=(4,),
                            upsample_mode="nearest")),
    (HiFiGANGenerator, HiFiGANConfig.preset("v1", upsample_initial_channel=32)),
    (HiFiGANGenerator, HiFiGANConfig.preset("v3", upsample_initial_channel=32)),
    (MelGANGenerator, MelGANConfig(num_mels=10, ratios=(5, 3), hop_length=15, ngf=4,
                                   n_residual_layers=2)),
]


@pytest.mark.parametrize("model_class, config", GENERATORS,
                         ids=lambda x: getattr(x, "__name__", ""))
def test_generator_estimates_are_exact(model_class, config):
    estimate = config.estimate_size()
    assert measured(model_class(config)) == (estimate.parameters, estimate.layers)


DISCRIMINATORS = [
    (MultiPeriodDiscriminator, dict(periods=(2, 3), channels=(4, 8, 8, 16, 16))),
    (MultiScaleDiscriminator, dict(scales=2, channels=(8, 8, 16, 16, 16, 16, 16),
                                   groups=(1, 4, 4, 4, 4, 4, 1))),
    (MelGANMultiScaleDiscriminator, dict(num_D=2, ndf=4, n_layers=6, downsampling_factor=2)),
    (MelGANMultiScaleDiscriminator, dict(num_D=1, ndf=2048, n_layers=3)),
    (RandomWindowDiscriminators, dict(num_mels=8, hop_length=120, sample_rate=24000,
                                      channels=(4, 8), norm="weight")),
    (RandomWindowDiscriminators, dict(num_mels=4, hop_length=300, sample_rate=24000,
                                      window_sizes=(300, 600), conditional=False, norm="none",
                                      channels=(4,))),
]


@pytest.mark.parametrize("cls, arguments", DISCRIMINATORS, ids=lambda x: getattr(x, "__name__", ""))
def test_discriminator_estimates_are_exact(cls, arguments):
    estimate = cls.estimate_size(**arguments)
    assert measured(cls(**arguments)) == (estimate.parameters, estimate.layers)


# --------------------------------------------------------------------------- size limits
@pytest.mark.parametrize("family, config, key", [
    ("wavenet", {"residual_channels": 1_000_000_000}, "residual_channels=1000000000"),
    ("wavenet", {"layers": 1, "stacks": 100_000_000, "residual_channels": 1, "gate_channels": 1,
                 "skip_channels": 1}, "stacks=100000000"),
    ("hifigan", {"upsample_initial_channel": 1_000_000_000}, "upsample_initial_channel=1000000000"),
    ("melgan", {"ngf": 1_000_000_000}, "ngf=1000000000"),
    ("melgan", {"n_residual_layers": 100_000_000}, "n_residual_layers=100000000"),
    ("melgan", {"ratios": [2] * 300, "hop_length": 2 ** 300}, "ratios=[2, 2"),
])
def test_absurd_models_are_refused_at_once(family, config, key):
    start = time.perf_counter()
    with pytest.raises(ConfigError) as info:
        build_model(family, config)
    assert time.perf_counter() - start < 2
    message = str(info.value)
    assert key in message and "over the limit" in message and "WAVEGEN_MAX_" in message
    assert "\n" not in message


def test_the_message_gives_parameters_and_memory():
    with pytest.raises(ConfigError) as info:
        HiFiGANGenerator(HiFiGANConfig(upsample_initial_channel=1_000_000_000))
    message = str(info.value)
    assert "upsample_initial_channel=1000000000 gives about 5.2e+19 parameters" in message
    assert "GiB in float32" in message and f"limit of {approx(MAX_PARAMETERS)}" in message


def test_the_limit_follows_the_environment(monkeypatch):
    config = WaveNetConfig(layers=2, stacks=1, residual_channels=8, gate_channels=8,
                           skip_channels=8)
    monkeypatch.setenv("WAVEGEN_MAX_PARAMETERS", "1000")
    with pytest.raises(ConfigError, match="the configuration gives about .* limit of 1e"):
        WaveNet(config)
    monkeypatch.setenv("WAVEGEN_MAX_PARAMETERS", "inf")
    monkeypatch.setenv("WAVEGEN_MAX_LAYERS", "3")
    with pytest.raises(ConfigError, match="layers .* WAVEGEN_MAX_LAYERS"):
        WaveNet(config)
    monkeypatch.setenv("WAVEGEN_MAX_LAYERS", "1e4")
    WaveNet(config)
    monkeypatch.setenv("WAVEGEN_MAX_PARAMETERS", "lots")
    with pytest.raises(ConfigError, match="WAVEGEN_MAX_PARAMETERS must be a positive number"):
        WaveNet(config)


def test_wavenet_dilations_cannot_overflow():
    with pytest.raises(ConfigError, match="receptive field"):
        WaveNetConfig(layers=40)
    start = time.perf_counter()
    with pytest.raises(ConfigError, match=r"dilations up to 2\^99999999"):
        WaveNetConfig(layers=100_000_000)
    assert time.perf_counter() - start < 1


@pytest.mark.parametrize("kind, arguments, fragment", [
    ("msd", {"scales": 100_000_000}, "discriminators.msd: scales=100000000 gives about"),
    ("melgan_msd", {"n_layers": 1_000_000_000}, "n_layers=1000000000"),
    ("mpd", {"channels": [32, 128, 512, 1_000_000, 1024]}, "channels=[32, 128, 512, 1000000"),
    ("rwd", {"channels": [1_000_000]}, "channels=[1000000]"),
    ("mpd", {"channels": [32, 128, "wide", 1024, 1024]},
     "discriminators.mpd.channels[2] must be int"),
    ("mpd", {"periods": 2}, "discriminators.mpd.periods must be a list"),
    ("msd", {"scales": 3.0}, "discriminators.msd.scales must be int, got float 3.0 (write it"),
])
def test_discriminator_arguments_are_typed_and_bounded(kind, arguments, fragment):
    from wavegen.audio.features import PRESETS
    start = time.perf_counter()
    with pytest.raises(ConfigError) as info:
        build_discriminator(kind, arguments, PRESETS["hifigan-22k"])
    assert time.perf_counter() - start < 2
    assert fragment in str(info.value)


# --------------------------------------------------------------------------- typed values
@pytest.mark.parametrize("value, fragment", [
    (1e9, "model.layers must be int, got float 1000000000.0 (write it as a whole number: "
          "1000000000)"),
    ("1e9", "model.layers must be int, got str '1e9' (write it as a whole number: 1000000000)"),
    ("ten", "model.layers must be int, got str 'ten'"),
    (2.5, "model.layers must be int, got float 2.5"),
    (True, "model.layers must be int, got bool True"),
])
def test_integer_fields_take_only_integers(value, fragment):
    with pytest.raises(ConfigError) as info:
        WaveNetConfig.from_dict({"layers": value}, "model")
    assert str(info.value).startswith(fragment)


def test_yaml_spellings_of_floats_get_a_hint():
    with pytest.raises(ConfigError, match=r"train.lr must be float, got str '1e-3' \(YAML reads "
                                          r"1e-3 as text; write 0.001\)"):
        from_dict(TrainConfig, {"lr": "1e-3"}, "train")


def test_fixed_length_tuples_and_mappings_are_checked():
    with pytest.raises(ConfigError, match="train.betas must be a list of 2 values, got 1"):
        from_dict(TrainConfig, {"betas": [0.9]}, "train")
    with pytest.raises(ConfigError, match="recipe.model must be a mapping, got int 5"):
        recipe_from_dict({"model": 5})


@pytest.mark.parametrize("overrides, fragment", [
    ({"seed": 2 ** 64}, "train.seed must be in [0, 2^32 - 1]"),
    ({"sample_seconds": 1e9}, "train.sample_seconds must be in [0, 3600]"),
    ({"num_workers": 100_000}, "train.num_workers must be <= 256"),
    ({"betas": (0.9, 1.5)}, "train.betas must be two values in [0, 1)"),
])
def test_train_settings_that_would_fail_hours_later(overrides, fragment):
    with pytest.raises(ConfigError) as info:
        TrainConfig(**overrides)
    assert fragment in str(info.value)


# --------------------------------------------------------------------------- bundles
@pytest.fixture
def small_bundle(tmp_path) -> Path:
    config = WaveNetConfig(layers=2, stacks=1, residual_channels=4, gate_channels=4,
                           skip_channels=4, num_classes=16)
    return save_bundle(tmp_path / "bundle", WaveNet(config),
                       BundleInfo("wavenet", config, config.sample_rate))


def edit_config(bundle: Path, change) -> Path:
    path = bundle / "config.json"
    data = json.loads(path.read_text())
    path.write_text(json.dumps(change(data)))
    return path


def test_a_huge_bundle_config_is_refused_before_allocation(small_bundle):
    path = edit_config(small_bundle, lambda d: {**d, "model": {**d["model"],
                                                               "residual_channels": 10 ** 9}})
    start = time.perf_counter()
    with pytest.raises(CheckpointError) as info:
        load_bundle(small_bundle)
    assert time.perf_counter() - start < 2
    assert str(info.value).startswith(f"{path}: model: residual_channels=1000000000 gives about")
    assert "GiB in float32" in str(info.value)


@pytest.mark.parametrize("change, fragment", [
    (lambda d: [d], "must be a JSON object (family, model, sample_rate, ...), got a JSON array"),
    (lambda d: "wavenet", "got a JSON string"),
    (lambda d: {**d, "model": {**d["model"], "layers": "ten"}},
     "model.layers must be int, got str"),
    (lambda d: {**d, "model": {**d["model"], "layers": 1e9}},
     "model.layers must be int, got float"),
    (lambda d: {**d, "sample_rate": "fast"}, "sample_rate must be int, got str 'fast'"),
    (lambda d: {**d, "sample_rate": 0}, "sample_rate must be >= 1"),
    (lambda d: {**d, "family": ["wavenet"]}, "unknown model family ['wavenet']"),
    (lambda d: {**d, "extra": 5}, "extra must be a mapping"),
])
def test_malformed_bundle_configs_are_named(small_bundle, change, fragment):
    path = edit_config(small_bundle, change)
    with pytest.raises(CheckpointError) as info:
        read_bundle_info(small_bundle)
    assert str(info.value).startswith(f"{path}: ") and fragment in str(info.value)


# --------------------------------------------------------------------------- recipes via the CLI
def run_cli(argv, capsys) -> tuple[int, str]:
    status = main(argv)
    err = capsys.readouterr().err
    return status, err


def recipe_with(tmp_path, old: str, new: str, name: str = "wavenet-tones-tiny") -> Path:
    text = (RECIPES / f"{name}.yaml").read_text()
    assert old in text
    path = tmp_path / "recipe.yaml"
    path.write_text(text.replace(old, new))
    return path


@pytest.mark.parametrize("old, new, fragment", [
    ("residual_channels: 16", "residual_channels: 1000000000",
     "model: residual_channels=1000000000 gives about"),
    ("residual_channels: 16", "residual_channels: 1e9",
     "model.residual_channels must be int, got str '1e9' (write it as a whole number"),
    ("layers: 6", "layers: ten", "model.layers must be int, got str 'ten'"),
    ("crop_samples: 1024", "crop_samples: 0", "data.crop_samples must be >= 1"),
    ("batch_size: 8", "batch_size: 4000000", "data.crop_samples x train.batch_size"),
])
def test_absurd_recipes_fail_in_one_line_naming_the_file(tmp_path, capsys, old, new, fragment):
    path = recipe_with(tmp_path, old, new)
    status, err = run_cli(["train", str(path), "--out", str(tmp_path / "run"), "--no-progress"],
                          capsys)
    assert status == 2 and err.count("\n") == 1
    assert err.startswith(f"wavegen: error: {path}: ") and fragment in err
    assert not (tmp_path / "run").exists()


def test_absurd_discriminators_fail_when_the_recipe_is_read(tmp_path):
    path = recipe_with(tmp_path, "melgan_msd: {num_D: 2,", "melgan_msd: {num_D: 200000000,",
                       name="melgan-tiny")
    with pytest.raises(ConfigError, match="discriminators.melgan_msd: num_D=200000000 gives about"):
        load_recipe(path)


# --------------------------------------------------------------------------- checkpoints with code
class PickledGenerator(nn.Module):
    """Stands for a generator saved whole (``torch.save(model)``), as many projects do."""

    def __init__(self):
        super().__init__()
        self.conv_pre = nn.Conv1d(80, 4, 7)


@pytest.mark.parametrize("source", ["hifigan-official", "melgan-official"])
def test_a_pickled_module_is_refused_without_running_it(tmp_path, capsys, source):
    checkpoint = tmp_path / "generator.pt"
    torch.save(PickledGenerator(), checkpoint)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        status, err = run_cli(["import", source, str(checkpoint), "-o", str(tmp_path / "b")],
                              capsys)
    assert status == 2 and err.count("\n") == 1
    assert err.startswith(f"wavegen: error: {checkpoint}: ")
    assert "PickledGenerator" in err and "wavegen never unpickles code" in err
    assert "model.state_dict()" in err and "wavegen import" in err
    assert "weights_only" not in err and "\x1b" not in err
    assert not caught, [str(w.message) for w in caught]
    assert not (tmp_path / "b").exists()


def test_a_training_state_with_code_is_refused(small_bundle):
    torch.save({"step": 3, "model": PickledGenerator()}, small_bundle / "training_state.pt")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with pytest.raises(CheckpointError) as info:
            load_training_state(small_bundle)
    message = str(info.value)
    assert "wavegen never unpickles code" in message and "weights_only" not in message
    assert not caught


@pytest.mark.parametrize("argv, fragment", [
    (["--ngf", "1000000000"], "ngf=1000000000 gives about"),
    (["--n-residual-layers", "100000000"], "n_residual_layers=100000000 gives about"),
    (["--n-mels", "100000000"], "num_mels=100000000 gives about"),
    (["--ratios", "1000000", "2"], "ratios=[1000000, 2] gives about"),
])
def test_absurd_melgan_import_arguments_fail_before_reading(tmp_path, capsys, argv, fragment):
    checkpoint = tmp_path / "best_netG.pt"
    checkpoint.write_bytes(b"not read")
    status, err = run_cli(["import", "melgan-official", str(checkpoint), "-o",
                           str(tmp_path / "b"), *argv], capsys)
    assert status == 2 and err.count("\n") == 1 and fragment in err
