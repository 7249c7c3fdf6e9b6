"""Model families by name: config class, model class, kind, default task, inference adapter.

Bundles store the family name in ``config.json``; loading looks it up here, so nothing is
ever unpickled. The registry is open: :func:`register_family` adds a family at run time (a
plugin, a test module) and from then on recipes train it and :mod:`wavegen.checkpoint`
saves and loads it with no other change.

A family's config class is a dataclass with ``to_dict()`` / ``from_dict(data, where)``
(unknown keys are errors), ``estimate_size()`` (see :mod:`wavegen.models.size`) and the
:class:`~wavegen.models.protocols.ModelConfigContract` (conditioning channels, hop, rate).
Its model class takes the config as its only argument, checks that estimate against the
size limits before it builds a layer, and has the methods of its kind's protocol
(:mod:`wavegen.models.protocols`).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Callable

from torch import nn

from wavegen.errors import ConfigError
from wavegen.models.diffwave import DiffWave, DiffWaveConfig
from wavegen.models.hifigan import HiFiGANConfig, HiFiGANGenerator
from wavegen.models.melgan import MelGANConfig, MelGANGenerator
from wavegen.models.prior import CodePrior, CodePriorConfig, prior_adapter
from wavegen.models.protocols import (DISCRETE_AUTOENCODER, FEED_FORWARD, NOISE_DRIVEN,
                                      SAMPLE_LEVEL, ModelConfigContract, check_kind,
                                      missing_methods)
from wavegen.models.samplernn import SampleRNN, SampleRNNConfig
from wavegen.models.size import check_config_size
from wavegen.models.spectrogram_predictor import (SpectrogramPredictor,
                                                  SpectrogramPredictorConfig,
                                                  spectrogram_adapter)
from wavegen.models.vqvae import VQVAE, VQVAEConfig
from wavegen.models.waveglow import WaveGlow, WaveGlowConfig
from wavegen.models.wavegrad import WaveGrad, WaveGradConfig
from wavegen.models.wavenet import WaveNet, WaveNetConfig
from wavegen.utils.registry import add_entry, remove_entry

#: What a family's config class must provide besides the contract's properties.
CONFIG_METHODS = ("to_dict", "from_dict", "estimate_size")
#: The contract's members (dataclass fields or properties).
CONTRACT_MEMBERS = ("conditioning_channels", "hop_length", "sample_rate")


@dataclass(frozen=True)
class Family:
    """One model family: ``config_class.from_dict(d)`` -> config, ``model_class(config)``.

    Attributes:
        name: the name bundles and recipes use (``model.family``).
        config_class: the config dataclass (see the module docstring).
        model_class: ``model_class(config) -> nn.Module`` of the protocol of ``kind``.
        kind: one of :data:`wavegen.models.protocols.KINDS`; it selects the default
            inference adapter and which training tasks can train the family.
        task: the training task a recipe of this family gets when it names none (a name in
            :data:`wavegen.train.tasks.TASKS`).
        inference: None for the default inference adapter of ``kind``
            (:mod:`wavegen.inference`), or ``inference(model, info) -> adapter`` for a
            family that needs its own.
    """

    name: str
    config_class: type
    model_class: Callable[[Any], nn.Module]
    kind: str
    task: str = "likelihood"
    inference: Callable[[nn.Module, Any], Any] | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name or self.name != self.name.strip():
            raise ConfigError(f"a model family needs a non-empty name without surrounding "
                              f"spaces, got {self.name!r}")
        check_kind(self.kind)
        if not isinstance(self.task, str) or not self.task:
            raise ConfigError(f"family {self.name}: task must be a task name, got {self.task!r}")
        if not callable(self.model_class):
            raise ConfigError(f"family {self.name}: model_class must be callable")
        if self.inference is not None and not callable(self.inference):
            raise ConfigError(f"family {self.name}: inference must be None or callable "
                              f"(model, info) -> adapter")

    @property
    def vocoder(self) -> bool:
        """A feed-forward features -> waveform model (``wavegen vocode``); read-only,
        kept for callers written before kinds existed."""
        return self.kind == FEED_FORWARD


FAMILIES: dict[str, Family] = {}


def check_family(family: Family) -> None:
    """ConfigError naming what ``family``'s classes lack for the registry (module doc)."""
    if not isinstance(family, Family):
        raise ConfigError(f"register_family takes a Family, got {type(family).__name__}")
    config_class = family.config_class
    if not dataclasses.is_dataclass(config_class) or not isinstance(config_class, type):
        raise ConfigError(f"family {family.name}: config_class must be a dataclass")
    fields = {f.name for f in dataclasses.fields(config_class)}
    lacking = [name for name in CONFIG_METHODS if not callable(getattr(config_class, name, None))]
    lacking += [name for name in CONTRACT_MEMBERS
                if name not in fields and not hasattr(config_class, name)]
    if lacking:
        raise ConfigError(f"family {family.name}: {config_class.__name__} lacks "
                          f"{', '.join(lacking)} (see wavegen.models.protocols."
                          f"{ModelConfigContract.__name__} and wavegen.models.registry)")
    if isinstance(family.model_class, type):
        gaps = missing_methods(family.model_class, family.kind)
        if gaps:
            raise ConfigError(f"family {family.name}: {family.model_class.__name__} lacks "
                              f"{', '.join(gaps)}, which a {family.kind} model has")


def register_family(family: Family, replace: bool = False) -> Family:
    """Add ``family`` to :data:`FAMILIES` (checked with :func:`check_family`); returns it.

    A name already taken is a UsageError unless ``replace``.
    """
    check_family(family)
    return add_entry(FAMILIES, family.name, family, "model family", replace)


def unregister_family(name: str) -> Family:
    """Remove the family called ``name``; returns it (UsageError if there is none)."""
    return remove_entry(FAMILIES, name, "model family")


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


for _family in (Family("wavenet", WaveNetConfig, WaveNet, SAMPLE_LEVEL, task="likelihood"),
                Family("hifigan", HiFiGANConfig, HiFiGANGenerator, FEED_FORWARD,
                       task="adversarial"),
                Family("melgan", MelGANConfig, MelGANGenerator, FEED_FORWARD,
                       task="adversarial"),
                Family("diffwave", DiffWaveConfig, DiffWave, NOISE_DRIVEN, task="diffusion"),
                Family("wavegrad", WaveGradConfig, WaveGrad, NOISE_DRIVEN, task="diffusion"),
                Family("waveglow", WaveGlowConfig, WaveGlow, NOISE_DRIVEN, task="likelihood"),
                Family("samplernn", SampleRNNConfig, SampleRNN, SAMPLE_LEVEL, task="likelihood"),
                Family("vqvae", VQVAEConfig, VQVAE, DISCRETE_AUTOENCODER, task="vq"),
                Family("prior", CodePriorConfig, CodePrior, SAMPLE_LEVEL, task="likelihood",
                       inference=prior_adapter),
                Family("spectrogram", SpectrogramPredictorConfig, SpectrogramPredictor,
                       FEED_FORWARD, task="spectral", inference=spectrogram_adapter)):
    register_family(_family)
del _family

