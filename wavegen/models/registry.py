"""Model families by name: the config dataclass and the ``nn.Module`` that it builds.

Bundles store the family name in ``config.json``; loading looks it up here, so nothing is
ever unpickled. A family's config class needs ``to_dict()`` / ``from_dict()`` (unknown keys
are errors) and ``estimate_size()`` (see :mod:`wavegen.models.size`), and its model class
takes the config as its only argument and checks that estimate against the size limits
before it builds a layer.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

from torch import nn

from wavegen.errors import ConfigError
from wavegen.models.hifigan import HiFiGANConfig, HiFiGANGenerator
from wavegen.models.melgan import MelGANConfig, MelGANGenerator
from wavegen.models.size import check_config_size
from wavegen.models.wavenet import WaveNet, WaveNetConfig


@dataclass(frozen=True)
class Family:
    """One model family: ``config_class.from_dict(d)`` -> config, ``model_class(config)``."""

    name: str
    config_class: type
    model_class: Callable[[Any], nn.Module]
    #: A feed-forward mel -> waveform model (``wavegen vocode``) rather than a sample-level one.
    vocoder: bool = False


FAMILIES: dict[str, Family] = {
    "wavenet": Family("wavenet", WaveNetConfig, WaveNet),
    "hifigan": Family("hifigan", HiFiGANConfig, HiFiGANGenerator, vocoder=True),
    "melgan": Family("melgan", MelGANConfig, MelGANGenerator, vocoder=True),
}


def get_family(name: str) -> Family:
    """The family called ``name`` (a ConfigError listing the known ones otherwise)."""
    if isinstance(name, str) and name in FAMILIES:
        return FAMILIES[name]
    raise ConfigError(f"unknown model family {name!r}; known: {', '.join(sorted(FAMILIES))}")


def build_model(family: str, config: dict[str, Any]) -> tuple[nn.Module, Any]:
    """The model of ``family`` built from a plain dict config; returns (model, config object).

    A config over the size limits is a ConfigError before anything is allocated.
    """
    fam = get_family(family)
    if not isinstance(config, dict):
        raise ConfigError(f"model config must be a mapping, got {type(config).__name__}")
    config_obj = fam.config_class.from_dict(dict(config))
    check_config_size(config_obj, "model")
    return fam.model_class(config_obj), config_obj
