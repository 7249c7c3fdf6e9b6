"""GAN discriminators by name, so a recipe can combine any set with any generator.

A recipe's ``discriminators:`` section maps kinds to keyword arguments::

    discriminators:
      mpd: {periods: [2, 3, 5, 7, 11]}   # HiFi-GAN multi-period
      msd: {}                            # HiFi-GAN multi-scale
      # melgan_msd: {num_D: 3}           # MelGAN multi-scale
      # rwd: {}                          # GAN-TTS random windows (mel-conditioned + not)

Arguments the front-end fixes (``num_mels``, ``hop_length``, ``sample_rate`` of the
random-window discriminators) come from the recipe's FeatureConfig. An unknown kind or
argument, a value of the wrong type (checked against the constructor's annotations) and a
discriminator over the size limits of :mod:`wavegen.models.size` are ConfigErrors naming
``discriminators.KIND`` (and the argument); :func:`check_discriminators` runs those checks
without building anything.
"""

from __future__ import annotations

import importlib
import inspect
import typing
from typing import Any

import torch
from torch import nn

from wavegen.audio.features import FeatureConfig
from wavegen.errors import ConfigError
from wavegen.models.size import SizeEstimate, check_arguments_size
from wavegen.nn.adversarial import DiscriminatorSet
from wavegen.utils.config import coerce

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


def _arguments(kind: str, arguments: Any, features: FeatureConfig) -> tuple[type, dict[str, Any]]:
    """The class of ``kind`` and its keyword arguments: the recipe's, type-checked, plus
    those taken from ``features``."""
    cls = _class_of(kind)
    where = f"discriminators.{kind}"
    if arguments is not None and not isinstance(arguments, dict):
        raise ConfigError(f"{where} must be a mapping of arguments, got "
                          f"{type(arguments).__name__}")
    arguments = dict(arguments or {})
    accepted = inspect.signature(cls).parameters
    hints = typing.get_type_hints(cls.__init__)
    for key, value in arguments.items():
        if key not in accepted or key in _FROM_FEATURES:
            raise ConfigError(f"{where}: unknown argument {key!r}")
        arguments[key] = coerce(value, hints.get(key, Any), f"{where}.{key}")
    for key, field in _FROM_FEATURES.items():
        if key in accepted:
            arguments[key] = getattr(features, field)
    return cls, arguments


def _check_size(kind: str, cls: type, arguments: dict[str, Any]) -> None:
    """The size limits for ``cls(**arguments)``. Arguments the estimate cannot even evaluate
    (a zero group count, an empty width list) go to the constructor on the meta device, whose
    own checks then name the problem (they run before it builds a layer, and on the meta
    device a layer would allocate nothing anyway)."""
    try:
        cls.estimate_size(**arguments)
    except (ArithmeticError, IndexError, TypeError, ValueError):
        with torch.device("meta"):
            _construct(kind, cls, arguments)
        return
    check_arguments_size(cls, arguments, f"discriminators.{kind}")


def _construct(kind: str, cls: type, arguments: dict[str, Any]) -> nn.Module:
    """``cls(**arguments)``; its ConfigErrors (and TypeErrors) named ``discriminators.KIND``."""
    try:
        return cls(**arguments)
    except (ConfigError, TypeError) as exc:
        raise ConfigError(f"discriminators.{kind}: {exc}") from None


def estimate_discriminator(kind: str, arguments: dict[str, Any] | None,
                           features: FeatureConfig) -> SizeEstimate:
    """Parameters and weight layers of the discriminator :func:`build_discriminator` would
    build (valid arguments assumed), without building it."""
    cls, arguments = _arguments(kind, arguments, features)
    return cls.estimate_size(**arguments)


def check_discriminator(kind: str, arguments: dict[str, Any] | None,
                        features: FeatureConfig) -> None:
    """Check one discriminator's arguments (names, types, size limits) without allocating it."""
    cls, arguments = _arguments(kind, arguments, features)
    _check_size(kind, cls, arguments)


def build_discriminator(kind: str, arguments: dict[str, Any] | None,
                        features: FeatureConfig) -> nn.Module:
    """One discriminator of ``kind`` with the recipe's ``arguments``."""
    cls, arguments = _arguments(kind, arguments, features)
    _check_size(kind, cls, arguments)
    return _construct(kind, cls, arguments)


def check_discriminators(spec: Any, features: FeatureConfig) -> None:
    """The recipe's ``discriminators:`` section checked as :func:`build_discriminators` would,
    without building anything (so a recipe fails before its data is prepared)."""
    if not spec:
        raise ConfigError("an adversarial recipe needs a discriminators section")
    if not isinstance(spec, dict):
        raise ConfigError(f"discriminators must be a mapping of kinds to arguments, got "
                          f"{type(spec).__name__}")
    for kind, arguments in spec.items():
        check_discriminator(kind, arguments, features)


def build_discriminators(spec: dict[str, dict[str, Any] | None],
                         features: FeatureConfig) -> DiscriminatorSet:
    """The recipe's whole ``discriminators:`` section as one :class:`DiscriminatorSet`."""
    check_discriminators(spec, features)
    return DiscriminatorSet({kind: build_discriminator(kind, args, features)
                             for kind, args in spec.items()})


__all__ = ["DISCRIMINATORS", "build_discriminator", "build_discriminators",
           "check_discriminator", "check_discriminators", "estimate_discriminator"]
