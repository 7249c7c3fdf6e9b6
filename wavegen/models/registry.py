"""Model families by name: the config dataclass and the ``nn.Module`` that it builds.

Bundles store the family name in ``config.json``; loading looks it up here, so nothing is
ever unpickled. A family's config class needs ``to_dict()`` / ``from_dict()`` (unknown keys
are errors) and its model class takes the config as its only argument.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

from torch import nn

from wavegen.errors import ConfigError
from wavegen.models.hifigan import HiFiGANConfig, HiFiGANGenerator
from wavegen.models.melgan import MelGANConfig, MelGANGenerator
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
    try:
        return FAMILIES[name]
    except KeyError:
        raise ConfigError(f"unknown model family {name!r}; known: {', '.join(sorted(FAMILIES))}") from None


def build_model(family: str, config: dict[str, Any]) -> tuple[nn.Module, Any]:
    """The model of ``family`` built from a plain dict config; returns (model, config object)."""
    fam = get_family(family)
    config_obj = fam.config_class.from_dict(dict(config))
    return fam.model_class(config_obj), config_obj
