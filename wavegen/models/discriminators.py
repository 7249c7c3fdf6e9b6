"""GAN discriminators by name, so a recipe can combine any set with any generator.

A recipe's ``discriminators:`` section maps kinds to keyword arguments::

    discriminators:
      mpd: {periods: [2, 3, 5, 7, 11]}   # HiFi-GAN multi-period
      msd: {}                            # HiFi-GAN multi-scale
      # melgan_msd: {num_D: 3}           # MelGAN multi-scale
      # rwd: {}                          # GAN-TTS random windows (mel-conditioned + not)

Arguments the front-end fixes (``num_mels``, ``hop_length``, ``sample_rate`` of the
random-window discriminators) come from the recipe's FeatureConfig. An unknown kind or
argument is a ConfigError naming it.
"""

from __future__ import annotations

import importlib
import inspect
from typing import Any

from torch import nn

from wavegen.audio.features import FeatureConfig
from wavegen.errors import ConfigError
from wavegen.nn.adversarial import DiscriminatorSet

#: kind -> "module:Class", imported when used.
DISCRIMINATORS = {
    "mpd": "wavegen.models.hifigan:MultiPeriodDiscriminator",
    "msd": "wavegen.models.hifigan:MultiScaleDiscriminator",
    "melgan_msd": "wavegen.models.melgan:MelGANMultiScaleDiscriminator",
    "rwd": "wavegen.models.gantts:RandomWindowDiscriminators",
}
#: Constructor arguments filled from the FeatureConfig when the class takes them.
_FROM_FEATURES = {"num_mels": "n_mels", "hop_length": "hop_length", "sample_rate": "sample_rate"}


def _class_of(kind: str) -> type:
    if kind not in DISCRIMINATORS:
        raise ConfigError(f"unknown discriminator {kind!r}; known: {', '.join(DISCRIMINATORS)}")
    module, name = DISCRIMINATORS[kind].split(":")
    return getattr(importlib.import_module(module), name)


def build_discriminator(kind: str, arguments: dict[str, Any] | None,
                        features: FeatureConfig) -> nn.Module:
    """One discriminator of ``kind`` with the recipe's ``arguments``."""
    cls = _class_of(kind)
    arguments = dict(arguments or {})
    accepted = inspect.signature(cls).parameters
    for key in arguments:
        if key not in accepted or key in _FROM_FEATURES:
            raise ConfigError(f"discriminators.{kind}: unknown argument {key!r}")
    for key, field in _FROM_FEATURES.items():
        if key in accepted:
            arguments[key] = getattr(features, field)
    for key, value in arguments.items():
        if isinstance(value, list):
            arguments[key] = tuple(tuple(v) if isinstance(v, list) else v for v in value)
    try:
        return cls(**arguments)
    except TypeError as exc:
        raise ConfigError(f"discriminators.{kind}: {exc}") from None


def build_discriminators(spec: dict[str, dict[str, Any] | None],
                         features: FeatureConfig) -> DiscriminatorSet:
    """The recipe's whole ``discriminators:`` section as one :class:`DiscriminatorSet`."""
    if not spec:
        raise ConfigError("an adversarial recipe needs a discriminators section")
    return DiscriminatorSet({kind: build_discriminator(kind, args, features)
                             for kind, args in spec.items()})


__all__ = ["DISCRIMINATORS", "build_discriminator", "build_discriminators"]
