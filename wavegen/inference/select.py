"""Which adapter runs a loaded model: the family's own, or the default of its kind.

A :class:`~wavegen.models.registry.Family` names its model kind and may carry an
``inference`` callable ``(model, info) -> Adapter``; without one, the default adapter of
the kind (:data:`DEFAULT_ADAPTERS`) runs it. This is the only place that maps kinds to
adapters.
"""

from __future__ import annotations

from typing import Callable

from torch import nn

from wavegen.checkpoint import BundleInfo
from wavegen.errors import ConfigError
from wavegen.inference.base import Adapter
from wavegen.inference.discrete import DiscreteDecoderAdapter
from wavegen.inference.feed_forward import FeedForwardAdapter
from wavegen.inference.noise_driven import noise_driven_adapter
from wavegen.inference.sample_level import SampleLevelAdapter
from wavegen.models.protocols import (DISCRETE_AUTOENCODER, FEED_FORWARD, NOISE_DRIVEN,
                                      SAMPLE_LEVEL)
from wavegen.models.registry import get_family

AdapterFactory = Callable[[nn.Module, BundleInfo], Adapter]

#: The adapter of each model kind when the family brings none.
DEFAULT_ADAPTERS: dict[str, AdapterFactory] = {
    SAMPLE_LEVEL: SampleLevelAdapter,
    FEED_FORWARD: FeedForwardAdapter,
    NOISE_DRIVEN: noise_driven_adapter,
    DISCRETE_AUTOENCODER: DiscreteDecoderAdapter,
}


def adapter_for(model: nn.Module, info: BundleInfo) -> Adapter:
    """The adapter that runs ``model`` of the bundle ``info`` (see the module docstring)."""
    family = get_family(info.family)
    make = family.inference or DEFAULT_ADAPTERS.get(family.kind)
    if make is None:
        raise ConfigError(f"family {family.name}: no inference adapter for model kind "
                          f"{family.kind!r}")
    adapter = make(model, info)
    if not isinstance(adapter, Adapter):
        raise ConfigError(f"family {family.name}: its inference callable returned "
                          f"{type(adapter).__name__}, not a wavegen.inference Adapter")
    return adapter


__all__ = ["DEFAULT_ADAPTERS", "adapter_for"]
