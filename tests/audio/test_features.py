"""FeatureConfig: validation, JSON round trips, exact comparison and presets."""

from __future__ import annotations

import json

import pytest

from wavegen.audio.features import PRESETS, FeatureConfig, get_preset
from wavegen.errors import ConfigError, FeatureMismatchError, WavegenError


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_json_round_trip_is_exact(name):
    config = PRESETS[name]
    again = FeatureConfig.from_json(config.to_json())
    assert again == config
    assert again.to_dict() == config.to_dict()
    assert again.fingerprint() == config.fingerprint()


def test_presets_are_all_different():
    prints = {c.fingerprint() for c in PRESETS.values()}
    assert len(prints) == len(PRESETS)


@pytest.mark.parametrize("field,value", [
    ("log", "log10"), ("mel_scale", "htk"), ("fmax", None), ("fmin", 80.0),
    ("mel_norm", None), ("padding", "center"), ("hop_length", 200), ("power", 2.0),
    ("log_clamp", 1e-7), ("magnitude_eps", 0.0),
])
def test_any_changed_setting_is_refused_by_name(field, value):
    reference = get_preset("hifigan-22k")
    other = reference.replace(**{field: value})
    assert other != reference
    assert other.fingerprint() != reference.fingerprint()
    with pytest.raises(FeatureMismatchError) as info:
        reference.check_compatible(other, what="mel features")
    message = str(info.value)
    assert field in message and "\n" not in message and "mel features" in message


def test_name_is_informational_only():
    a = get_preset("hifigan-22k")
    b = FeatureConfig.from_dict({**a.to_dict(), "name": "renamed"})
    assert a == b
    a.check_compatible(b)


def test_int_values_in_json_are_accepted_for_floats():
    data = get_preset("melgan-22k").to_dict()
    data["fmin"] = 0
    assert FeatureConfig.from_dict(data) == get_preset("melgan-22k")


@pytest.mark.parametrize("data,word", [
    ({"n_ffts": 1024}, "n_ffts"),
    ({"n_fft": "1024"}, "n_fft"),
    ({"n_fft": 1024.0}, "n_fft"),
    ({"stft_normalized": 1}, "stft_normalized"),
    ({"hop_length": 0}, "hop_length"),
    ({"win_length": 2048}, "win_length"),
    ({"fmax": 20000.0}, "Nyquist"),
    ({"fmin": 9000.0}, "fmin"),
    ({"mel_scale": "mel"}, "mel_scale"),
    ({"log": "log2"}, "log"),
    ({"padding": "same"}, "padding"),
    ({"log_clamp": 0.0}, "log_clamp"),
])
def test_bad_values_raise_config_error_naming_the_key(data, word):
    with pytest.raises(ConfigError) as info:
        FeatureConfig.from_dict(data)
    assert word in str(info.value)
    assert isinstance(info.value, WavegenError)


def test_invalid_json_is_a_config_error():
    with pytest.raises(ConfigError):
        FeatureConfig.from_json("{not json")


def test_unknown_preset_lists_choices():
    with pytest.raises(ConfigError) as info:
        get_preset("nope")
    assert "hifigan-22k" in str(info.value)


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_num_frames_formula(name):
    config = PRESETS[name]
    hop = config.hop_length
    for n in (hop * 50, hop * 50 + 7, 3 * config.n_fft + 1):
        if config.padding == "hop_aligned":
            assert config.num_frames(n) == n // hop
        elif config.padding == "center":
            assert config.num_frames(n) == 1 + n // hop


def test_to_dict_is_plain_json():
    text = json.dumps(get_preset("vocos-24k-100").to_dict())
    assert "htk" in text
