"""Typed contracts of the four model kinds, and of the configs that build them.

Every model family declares one *kind* (see :mod:`wavegen.models.registry`); the kind says
how the family is trained, sampled and served, whatever its architecture:

=========================  ===============================================================
``SAMPLE_LEVEL``           autoregressive over samples (WaveNet, SampleRNN, code priors):
                           :class:`SampleLevelModel`
``FEED_FORWARD``           mel / piano roll -> waveform in one pass (HiFi-GAN, MelGAN):
                           :class:`FeedForwardModel`
``NOISE_DRIVEN``           conditional models that turn noise into audio: flows
                           (:class:`FlowModel`) and diffusion denoisers
                           (:class:`DenoiserModel`)
``DISCRETE_AUTOENCODER``   audio -> discrete codes per level -> audio (VQ-VAE):
                           :class:`DiscreteAutoencoder`
=========================  ===============================================================

The protocols are :func:`typing.runtime_checkable`, so ``isinstance(model, FeedForwardModel)``
checks that the members exist (not their signatures). :func:`conforms` checks a model
against its kind and :func:`missing_methods` checks a model *class* before anything is built.

Every family's config satisfies :class:`ModelConfigContract`: what it is conditioned on
(channels, frames per sample, rate). Recipes and bundles ask this contract instead of
probing config fields; :func:`contract_of` reads it into a checked :class:`ModelContract`.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol, Sequence, runtime_checkable

import torch

from wavegen.errors import ConfigError

if TYPE_CHECKING:  # annotations only: keeps this module free of layer imports
    from wavegen.nn.distributions import OutputDistribution
    from wavegen.nn.vector_quantizer import VQOutput

SAMPLE_LEVEL = "sample_level"
FEED_FORWARD = "feed_forward"
NOISE_DRIVEN = "noise_driven"
DISCRETE_AUTOENCODER = "discrete_autoencoder"
#: Every model kind, in the order of the module docstring's table.
KINDS = (SAMPLE_LEVEL, FEED_FORWARD, NOISE_DRIVEN, DISCRETE_AUTOENCODER)


@runtime_checkable
class ModelConfigContract(Protocol):
    """What every family's config says about the model's inputs (read-only).

    A dataclass field of the same name satisfies a property here (WaveNet, HiFi-GAN and
    MelGAN store ``hop_length`` and ``sample_rate`` as fields).
    """

    @property
    def conditioning_channels(self) -> int:
        """Channels of the frame-rate conditioning (mel bands, piano-roll rows); 0 =
        unconditional."""

    @property
    def hop_length(self) -> int | None:
        """Audio samples per conditioning frame. Only meaningful when
        ``conditioning_channels > 0``: an unconditional config may give None (or, like
        WaveNet's stored field, 0); :func:`contract_of` turns either into None."""

    @property
    def sample_rate(self) -> int | None:
        """The audio rate the model was built for, in Hz (None: any rate)."""


@runtime_checkable
class SampleLevelModel(Protocol):
    """Autoregressive over samples: WaveNet, SampleRNN, the priors over VQ codes.

    This is the contract of :func:`wavegen.sampling.generate`'s reference loop and of
    :class:`~wavegen.train.tasks.likelihood.LikelihoodTask`. ``targets`` are the head's
    targets (``[B, T]`` class indices or values in [-1, 1]); ``local`` is frame-rate
    conditioning ``[B, C, frames]`` with ``frames * config.hop_length == T``; ``global_cond``
    is ``[B]`` class indices or ``[B, D]`` vectors. The diagnostics use
    ``forward`` (with ``unconditional=True`` only under classifier-free guidance), and so
    does ``generate(naive=True)`` for a model without ``conditioning()`` / ``run()`` (a
    full pass on precomputed conditioning, which WaveNet has: its naive generator then
    recomputes only the receptive field, and its fast kernels use them too). Neither is
    required.
    """

    config: ModelConfigContract
    #: The output distribution: ``head params [B, P, ...] -> log_prob / sample``.
    head: OutputDistribution

    @property
    def receptive_field(self) -> int:
        """Samples the prediction of the next sample depends on."""

    def silence_input(self) -> int | float:
        """The input value that stands for 'no previous sample' (digital silence)."""

    def targets_from_waveform(self, wave: torch.Tensor) -> torch.Tensor:
        """``[B, 1, T]`` (or ``[B, T]``) waveform in [-1, 1] -> ``[B, T]`` head targets."""

    def forward(self, inputs: torch.Tensor, local: torch.Tensor | None = None,
                global_cond: torch.Tensor | None = None) -> torch.Tensor:
        """Teacher-forced pass: ``inputs`` ``[B, T]`` (targets shifted right by one) ->
        head parameters ``[B, P, T]``; position ``t`` is the distribution of ``targets[t]``."""

    def loss(self, wave: torch.Tensor, local: torch.Tensor | None = None,
             global_cond: torch.Tensor | None = None) -> torch.Tensor:
        """Negative log-likelihood of ``wave`` ``[B, 1, T]`` in nats per sample (a scalar)."""

    def start(self, batch: int, length: int, local: torch.Tensor | None = None,
              global_cond: torch.Tensor | None = None, unconditional: bool = False,
              prompt: torch.Tensor | None = None) -> Any:
        """Incremental state for ``length`` samples (``prompt`` ``[B, P]`` targets included,
        warmed up by teacher forcing); ``unconditional`` drops all conditioning (CFG)."""

    def step(self, previous: torch.Tensor, state: Any) -> torch.Tensor:
        """Head parameters ``[B, P]`` of the sample after ``previous`` ``[B]``; advances
        ``state`` by one sample."""


@runtime_checkable
class FeedForwardModel(Protocol):
    """Frame-rate features -> waveform in one pass (the GAN vocoders).

    ``forward(features [B, C, F]) -> audio [B, 1, F * hop]`` in [-1, 1], with ``C`` and
    ``hop`` the config's ``conditioning_channels`` and ``hop_length`` (mel bands or
    piano-roll rows). The output must depend on the input only (no noise, no absolute time)
    for :class:`~wavegen.vocoder.Vocoder`'s chunked inference to be exact. A family with
    its own inference adapter may output another frame-rate signal instead (the spectrogram
    predictors: a log-mel or a log-magnitude ``[B, C', F]``).
    """

    config: ModelConfigContract

    def forward(self, mel: torch.Tensor) -> torch.Tensor:
        """``[B, C, F]`` -> ``[B, 1, F * hop]``."""


@runtime_checkable
class FlowModel(Protocol):
    """A normalising flow over waveforms (WaveGlow-style), conditioned on frames.

    Trained by the likelihood task through ``loss`` (exact negative log-likelihood);
    sampled by inverting the flow on Gaussian noise of standard deviation ``sigma``.
    """

    config: ModelConfigContract

    def loss(self, wave: torch.Tensor, local: torch.Tensor | None = None,
             global_cond: torch.Tensor | None = None) -> torch.Tensor:
        """Negative log-likelihood of ``wave`` ``[B, 1, T]`` given ``local`` ``[B, C, T / hop]``,
        in nats per sample (a scalar)."""

    def infer(self, mel: torch.Tensor, sigma: float = 1.0) -> torch.Tensor:
        """``mel`` ``[B, C, F]`` -> audio ``[B, 1, F * hop]`` from noise ``N(0, sigma^2)``."""


@runtime_checkable
class DenoiserModel(Protocol):
    """The network of a waveform diffusion model (DiffWave / WaveGrad style).

    Everything else (schedule, parameterisation, weighting, sampler) is a
    :class:`~wavegen.diffusion.process.DiffusionProcess` stored beside the model, so one
    network serves every sampler.
    """

    config: ModelConfigContract

    def forward(self, x_t: torch.Tensor, t: torch.Tensor,
                local: torch.Tensor | None = None) -> torch.Tensor:
        """``x_t`` ``[B, 1, T]`` noisy audio at times ``t`` ``[B]`` in [0, 1], ``local``
        ``[B, C, T / hop]`` or None -> the prediction ``[B, 1, T]`` in the process's
        parameterisation (eps, x0, v or score)."""


@runtime_checkable
class DiscreteAutoencoder(Protocol):
    """Audio -> discrete codes -> audio, with one or more levels (VQ-VAE, Jukebox).

    Level ``l`` compresses time by its own factor ``h_l``: codes are ``[B, T / h_l]``
    int64. Levels are trained separately, so each round-trips on its own.
    """

    config: ModelConfigContract

    @property
    def num_levels(self) -> int:
        """Levels of the hierarchy (1 for a plain VQ-VAE)."""

    def autoencode(self, audio: torch.Tensor
                   ) -> tuple[torch.Tensor | Sequence[torch.Tensor], Sequence[VQOutput]]:
        """``audio`` ``[B, 1, T]`` -> (reconstruction ``[B, 1, T]``, or one per level when the
        levels are trained jointly as separate autoencoders, finest first; one
        :class:`~wavegen.nn.vector_quantizer.VQOutput` per quantiser); the training pass."""

    def encode(self, audio: torch.Tensor, level: int = 0) -> torch.Tensor:
        """``[B, 1, T]`` -> codes ``[B, T / h_level]`` (no state changes)."""

    def decode(self, codes: torch.Tensor, level: int = 0) -> torch.Tensor:
        """Codes ``[B, N]`` of ``level`` -> audio ``[B, 1, N * h_level]``."""


#: The protocols a model of each kind satisfies (a noise-driven model is a flow or a
#: denoiser).
PROTOCOLS: dict[str, tuple[type, ...]] = {
    SAMPLE_LEVEL: (SampleLevelModel,),
    FEED_FORWARD: (FeedForwardModel,),
    NOISE_DRIVEN: (FlowModel, DenoiserModel),
    DISCRETE_AUTOENCODER: (DiscreteAutoencoder,),
}


def check_kind(kind: Any) -> str:
    """``kind`` if it names a model kind (a ConfigError listing them otherwise)."""
    if isinstance(kind, str) and kind in KINDS:
        return kind
    raise ConfigError(f"unknown model kind {kind!r}; known: {', '.join(KINDS)}")


def conforms(model: Any, kind: str) -> bool:
    """Whether ``model`` has every member of one of the protocols of ``kind``."""
    return any(isinstance(model, protocol) for protocol in PROTOCOLS[check_kind(kind)])


def protocol_methods(protocol: type) -> tuple[str, ...]:
    """The methods a protocol declares (not its properties or data members), sorted."""
    return tuple(sorted(name for name, value in vars(protocol).items()
                        if inspect.isfunction(value) and not name.startswith("_")))


def missing_methods(model_class: Any, kind: str) -> list[str]:
    """Methods of ``kind``'s protocol that ``model_class`` lacks ([] when it has them all).

    Properties and attributes set in ``__init__`` cannot be seen on a class and are not
    checked. For a kind with several protocols (noise-driven: flow or denoiser) the
    shortest list of gaps is returned.
    """
    gaps = [[name for name in protocol_methods(protocol)
             if not callable(getattr(model_class, name, None))]
            for protocol in PROTOCOLS[check_kind(kind)]]
    return min(gaps, key=len)


@dataclass(frozen=True)
class ModelContract:
    """A config's :class:`ModelConfigContract`, checked and normalised.

    Attributes:
        conditioning_channels: channels of the frame-rate conditioning (0 = none).
        hop_length: samples per conditioning frame; None exactly when unconditional.
        sample_rate: the model's audio rate in Hz, or None (any).
    """

    conditioning_channels: int
    hop_length: int | None
    sample_rate: int | None

    @property
    def conditional(self) -> bool:
        return self.conditioning_channels > 0


def _whole(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def contract_of(config: Any) -> ModelContract:
    """The checked contract of a model config (ConfigError naming the config otherwise)."""
    name = type(config).__name__
    if not isinstance(config, ModelConfigContract):
        raise ConfigError(f"{name} does not state the model config contract "
                          f"(conditioning_channels, hop_length, sample_rate)")
    channels, hop, rate = config.conditioning_channels, config.hop_length, config.sample_rate
    if not _whole(channels) or channels < 0:
        raise ConfigError(f"{name}.conditioning_channels must be an int >= 0, got {channels!r}")
    if channels == 0:
        hop = None
    elif not _whole(hop) or hop < 1:
        raise ConfigError(f"{name}: {channels} conditioning channels need hop_length >= 1, "
                          f"got {hop!r}")
    if rate is not None and (not _whole(rate) or rate < 1):
        raise ConfigError(f"{name}.sample_rate must be an int >= 1 or None, got {rate!r}")
    return ModelContract(channels, hop, rate)


__all__ = ["DISCRETE_AUTOENCODER", "FEED_FORWARD", "KINDS", "NOISE_DRIVEN", "PROTOCOLS",
           "SAMPLE_LEVEL", "DenoiserModel", "DiscreteAutoencoder", "FeedForwardModel",
           "FlowModel", "ModelConfigContract", "ModelContract", "SampleLevelModel",
           "check_kind", "conforms", "contract_of", "missing_methods", "protocol_methods"]
