"""Import generator checkpoints of the official HiFi-GAN (jik876/hifi-gan).

The official training script saves ``g_XXXXXXXX`` files holding ``{"generator": state_dict}``
of its ``Generator``, weight-normalised with the old hook API (``<name>.weight_g`` /
``<name>.weight_v``), next to a ``config.json`` (``config_v1.json`` ...). The module names of
:class:`~wavegen.models.hifigan.HiFiGANGenerator` are the official ones, so importing is a
rename of the weight-norm keys to the parametrisation keys
(``<name>.parametrizations.weight.original0`` = g, ``original1`` = v) followed by a strict
load. Checkpoints whose weight norm was removed (plain ``<name>.weight``) are accepted too:
``g = |w|`` and ``v = w`` give the same weight.

The official front-end (``meldataset.mel_spectrogram``) is the ``"hifigan-22k"`` feature
preset: reflect padding of ``(n_fft - hop) / 2`` on both sides without centring, magnitude
``sqrt(re^2 + im^2 + 1e-9)``, librosa's Slaney mel filters with Slaney normalisation, natural
log of ``clamp(x, 1e-5)``. The JSON's ``sampling_rate``, ``n_fft``, ``hop_size``, ``win_size``,
``num_mels``, ``fmin`` and ``fmax`` override its fields. (The JSON's ``fmax_for_loss``, the
training loss's mel, is not part of the conditioning and is not returned.)
"""

from __future__ import annotations

import json
import os
from typing import Any

import torch

from wavegen.audio.features import PRESETS, FeatureConfig
from wavegen.checkpoint import load_pickle_free
from wavegen.errors import CheckpointError, ConfigError
from wavegen.importers.common import (UNPICKLE_ADVICE, convert_weight_norm_keys, first_keys,
                                      load_strict)
from wavegen.models.hifigan import HIFIGAN_PRESETS, HiFiGANConfig, HiFiGANGenerator
from wavegen.models.size import check_config_size

#: Official config.json key -> HiFiGANConfig field.
MODEL_KEYS = {
    "num_mels": "num_mels", "upsample_rates": "upsample_rates",
    "upsample_kernel_sizes": "upsample_kernel_sizes",
    "upsample_initial_channel": "upsample_initial_channel", "resblock": "resblock",
    "resblock_kernel_sizes": "resblock_kernel_sizes",
    "resblock_dilation_sizes": "resblock_dilation_sizes", "hop_size": "hop_length",
    "sampling_rate": "sample_rate",
}
#: Official config.json key -> FeatureConfig field.
FEATURE_KEYS = {
    "sampling_rate": "sample_rate", "n_fft": "n_fft", "hop_size": "hop_length",
    "win_size": "win_length", "num_mels": "n_mels", "fmin": "fmin", "fmax": "fmax",
}
BASE_FEATURES = "hifigan-22k"


def read_official_config(path: str | os.PathLike) -> dict[str, Any]:
    """The official ``config.json`` as a dict (CheckpointError if unreadable)."""
    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
    except (OSError, UnicodeDecodeError) as exc:
        raise CheckpointError(f"{os.fspath(path)}: cannot read HiFi-GAN config ({exc})") from None
    except json.JSONDecodeError as exc:
        raise CheckpointError(f"{os.fspath(path)}: invalid JSON ({exc.msg} at line {exc.lineno})") from None
    if not isinstance(data, dict):
        raise CheckpointError(f"{os.fspath(path)}: a HiFi-GAN config must be a JSON object")
    return data


def configs_from_official(data: dict[str, Any], preset: str = "v1") -> tuple[HiFiGANConfig, FeatureConfig]:
    """Model config and front-end from an official config dict; missing keys from ``preset``."""
    model = {field: data[key] for key, field in MODEL_KEYS.items() if key in data}
    if isinstance(model.get("resblock"), int) and not isinstance(model["resblock"], bool):
        model["resblock"] = str(model["resblock"])  # some forks write 1 instead of "1"
    config = HiFiGANConfig.preset(preset, **model)
    base = PRESETS[BASE_FEATURES]
    overrides = {field: data[key] for key, field in FEATURE_KEYS.items() if key in data}
    features = FeatureConfig.from_dict({**base.to_dict(), **overrides, "name": "hifigan-official"})
    if features == base:  # compares every setting but the name
        features = base
    if features.hop_length != config.hop_length or features.n_mels != config.num_mels:
        raise ConfigError(f"HiFi-GAN config: hop {features.hop_length} / {features.n_mels} mels of "
                          f"the features differ from the model's {config.hop_length} / {config.num_mels}")
    return config, features


def load_official_state(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """The generator state dict of an official checkpoint file, keys as saved."""
    where = os.fspath(path)
    data = load_pickle_free(where, "HiFi-GAN checkpoint", UNPICKLE_ADVICE)
    if isinstance(data, dict) and "generator" in data:
        state = data["generator"]
    elif isinstance(data, dict) and any(str(k).startswith(("conv_pre.", "module.conv_pre."))
                                        for k in data):
        state = data  # a bare state dict
    elif isinstance(data, dict) and {"mpd", "msd"} & set(data):
        raise CheckpointError(f"{where}: this is the discriminator/optimiser checkpoint (do_*), "
                              f"not the generator (g_*)")
    else:
        shown = first_keys([str(k) for k in data]) if isinstance(data, dict) else type(data).__name__
        raise CheckpointError(f"{where}: not a HiFi-GAN generator checkpoint (no 'generator' "
                              f"entry; found {shown})")
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise CheckpointError(f"{where}: the 'generator' entry is not a state dict of tensors")
    return state


def convert_state_dict(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Official key names -> wavegen's (weight-norm hooks -> parametrisations)."""
    return convert_weight_norm_keys(state)


def _describe_state(state: dict[str, torch.Tensor]) -> str:
    """What the checkpoint's shapes say about its architecture, naming a matching preset."""
    pre = state.get("conv_pre.parametrizations.weight.original1")
    if pre is None or pre.dim() != 3:
        return "no conv_pre weight"
    stages = len({k.split(".")[1] for k in state if k.startswith("ups.")})
    resblock = "1" if any(".convs1." in k for k in state) else "2"
    like = [name for name, p in HIFIGAN_PRESETS.items()
            if (p.upsample_initial_channel, p.num_stages, p.resblock) == (pre.shape[0], stages, resblock)]
    hint = f", like preset {like[0]!r}" if like else ""
    return (f"checkpoint has {pre.shape[1]} mels, {pre.shape[0]} channels, {stages} upsampling "
            f"stages, ResBlock{resblock}{hint}")


def load_into(model: HiFiGANGenerator, state: dict[str, torch.Tensor], where: str) -> None:
    """Strict load of a converted state dict (CheckpointError naming the first bad keys)."""
    load_strict(model, state, where, "HiFi-GAN", _describe_state(state),
                "; pass the checkpoint's config.json or the right preset")


def import_hifigan_official(checkpoint_path: str | os.PathLike,
                            config_json: str | os.PathLike | None = None,
                            preset: str = "v1") -> tuple[HiFiGANGenerator, HiFiGANConfig, FeatureConfig]:
    """Load an official HiFi-GAN generator checkpoint.

    Args:
        checkpoint_path: the official ``g_XXXXXXXX`` file (``{"generator": state_dict}``).
        config_json: its ``config.json``; without it, ``preset`` at 22.05 kHz, hop 256.
        preset: ``"v1"``, ``"v2"`` or ``"v3"``: the architecture without a JSON, and the
            defaults for keys the JSON lacks.

    Returns:
        ``(generator, config, features)``: the generator in eval mode with its weight norm
        in place (call ``.inference()`` to fold it), its config, and the front-end its mels
        must come from.
    """
    if config_json is None:
        config, features = HiFiGANConfig.preset(preset), PRESETS[BASE_FEATURES]
    else:
        try:
            config, features = configs_from_official(read_official_config(config_json), preset)
        except ConfigError as exc:
            raise ConfigError(f"{os.fspath(config_json)}: {exc}") from None
    check_config_size(config, "HiFi-GAN generator" if config_json is None
                      else f"{os.fspath(config_json)}: HiFi-GAN generator")
    state = convert_state_dict(load_official_state(checkpoint_path))
    model = HiFiGANGenerator(config)
    load_into(model, state, os.fspath(checkpoint_path))
    return model.eval(), config, features


__all__ = ["import_hifigan_official", "configs_from_official", "convert_state_dict",
           "load_official_state", "read_official_config", "MODEL_KEYS", "FEATURE_KEYS"]
