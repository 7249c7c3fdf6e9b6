"""Autoregressive priors over VQ-VAE codes (Dieleman et al. 2018; Jukebox, Dhariwal et al. 2020).

A hierarchical VQ-VAE (:mod:`wavegen.models.vqvae`) turns audio into one code sequence per
level; a :class:`CodePrior` models one level's sequence, one code at a time, so that a
hierarchy can generate: the top-level prior writes the coarsest codes (long-range
structure), an *upsampler* prior per lower level writes that level's codes given the codes
of the level above, and the VQ-VAE's decoder turns the finest codes written into audio
(:mod:`wavegen.hierarchy`).

The network (``architecture``) is a causal WaveNet over code embeddings (``wavenet``, the
baseline; Dieleman et al.'s priors are WaveNets): :class:`~wavegen.models.wavenet.WaveNet`
with a categorical head of ``codebook_size`` classes whose "samples" are codes; or a causal
transformer (``transformer``, Jukebox's priors are transformers):
:class:`~wavegen.nn.causal_transformer.CausalTransformer`, ``layers`` pre-norm blocks of
``width`` channels and ``heads`` heads over a context of ``context`` codes, sampled with a
key/value cache (a longer clip is sampled in windows of at most ``context`` codes,
:func:`wavegen.hierarchy.sample_windowed`). The same conditioning reaches both. A code prior is a
:class:`~wavegen.models.protocols.SampleLevelModel` whose positions are codes, so it trains
by the likelihood task and samples through :func:`wavegen.sampling.generate` with every
control WaveNet has (temperature, top-p, typical sampling, classifier-free guidance,
prompts, pre-drawn uniforms, the typicality diagnostic). Its head is a
:class:`~wavegen.nn.distributions.CodeCategorical`: targets and "waveforms" are the codes.

Conditioning (``conditioning``), one of:

* ``none``: an unconditional top-level prior;
* ``codes``: an upsampler. ``local`` is the upper level's codes ``[B, F]`` (int64), ``r =
  upper_ratio`` codes of this level per upper code (``r = hop_upper / hop_level``): a
  learned embedding of dimension ``upper_dim`` per upper code, repeated ``r`` times
  (the WaveNet's ``repeat`` upsampler: nothing learned, strictly local, so windows of a long
  clip join exactly), conditions every layer. Code ``i`` of this level
  lies under upper code ``i // r`` (the alignment of :class:`~wavegen.data.code_dataset.
  CodeDataset`);
* ``roll``: a MIDI-conditioned top-level prior. ``local`` is the piano roll ``[B, C, F]``
  (:func:`~wavegen.data.midi.piano_roll` with ``roll_channels`` channels) on this level's
  grid: one roll frame per code (the roll's hop is the level's ``code_hop`` samples).

``cond_dropout`` drops the conditioning of a training example with that probability, so that
classifier-free guidance (``cfg_gamma``) has an unconditional branch to push away from.

``start_code`` (code 0) is the "previous code" of the first position (WaveNet's silence).
Codebooks need not be powers of two: the WaveNet gets the next power of two of classes and
the extra logits are never used (they are cut before the head sees them).

The prior records what it models: ``level``, ``code_hop`` (audio samples per code),
``sample_rate`` and ``fingerprint``, the :func:`~wavegen.checkpoint.bundle_fingerprint` of
the VQ-VAE whose codes it learned (filled in from the codes files when a recipe leaves it
empty); a hierarchy refuses a prior whose fingerprint is not its VQ-VAE's.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from wavegen.errors import ConfigError, UsageError
from wavegen.models.size import SizeEstimate, check_config_size, layer
from wavegen.models.wavenet import WaveNet, WaveNetConfig, shift_right
from wavegen.nn.causal_transformer import CausalTransformer, transformer_parameters
from wavegen.nn.distributions import CodeCategorical
from wavegen.utils.config import DictConfig, from_preset

#: What a prior may be conditioned on (module docstring).
PRIOR_CONDITIONINGS = ("none", "codes", "roll")
#: The networks a prior can run (module docstring).
ARCHITECTURES = ("wavenet", "transformer")
#: The "previous code" of the first position.
START_CODE = 0


def _next_power_of_two(n: int) -> int:
    return 1 << max(1, (n - 1).bit_length())


@dataclass
class CodePriorConfig(DictConfig):
    """Hyperparameters of a :class:`CodePrior`.

    Attributes:
        codebook_size: codes of the level it models (the VQ-VAE's ``codebook_size``).
        level: the VQ-VAE level it models (0 = the finest).
        code_hop: audio samples per code of that level.
        sample_rate: the audio rate of the VQ-VAE (Hz).
        fingerprint: the VQ-VAE bundle's fingerprint ("" until a recipe's codes fill it in).
        conditioning: ``none``, ``codes`` (an upsampler) or ``roll`` (MIDI); module docstring.
        upper_codebook_size: codes of the upper level (``codes`` only).
        upper_ratio: codes of this level per upper code (``codes`` only).
        upper_dim: dimension of the upper codes' embedding (``codes`` only).
        roll_channels: piano-roll channels (``roll`` only).
        architecture: ``wavenet`` or ``transformer``.
        layers, stacks, kernel_size, residual_channels, gate_channels, skip_channels: the
            WaveNet (:class:`~wavegen.models.wavenet.WaveNetConfig`); its receptive field,
            in codes, is the prior's context. For a transformer ``layers`` is its number of
            blocks.
        width, heads, context: the transformer's width, attention heads and context (codes).
        dropout, cond_dropout: dropout in the network; conditioning dropout (CFG).
    """

    codebook_size: int = 2048
    level: int = 0
    code_hop: int = 128
    sample_rate: int = 16000
    fingerprint: str = ""
    conditioning: str = "none"
    upper_codebook_size: int = 0
    upper_ratio: int = 1
    upper_dim: int = 32
    roll_channels: int = 0
    architecture: str = "wavenet"
    layers: int = 10
    stacks: int = 3
    kernel_size: int = 2
    residual_channels: int = 128
    gate_channels: int = 256
    skip_channels: int = 256
    width: int = 128
    heads: int = 4
    context: int = 512
    dropout: float = 0.0
    cond_dropout: float = 0.0

    def __post_init__(self) -> None:
        def bad(message: str) -> ConfigError:
            return ConfigError(f"CodePriorConfig: {message}")

        for name in ("codebook_size", "code_hop", "sample_rate", "upper_ratio", "upper_dim"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise bad(f"{name} must be a positive integer, got {value!r}")
        if self.codebook_size < 2:
            raise bad(f"codebook_size must be >= 2, got {self.codebook_size}")
        if isinstance(self.level, bool) or not isinstance(self.level, int) or self.level < 0:
            raise bad(f"level must be an integer >= 0, got {self.level!r}")
        if self.conditioning not in PRIOR_CONDITIONINGS:
            raise bad(f"conditioning must be one of {', '.join(PRIOR_CONDITIONINGS)}, "
                      f"got {self.conditioning!r}")
        if self.conditioning == "codes" and self.upper_codebook_size < 2:
            raise bad("conditioning codes (an upsampler) needs upper_codebook_size >= 2")
        if self.conditioning != "codes" and self.upper_codebook_size:
            raise bad(f"upper_codebook_size is for conditioning codes, not "
                      f"{self.conditioning}")
        if self.conditioning == "roll" and self.roll_channels < 1:
            raise bad("conditioning roll needs roll_channels >= 1")
        if self.conditioning != "roll" and self.roll_channels:
            raise bad(f"roll_channels is for conditioning roll, not {self.conditioning}")
        if self.conditioning == "none" and self.cond_dropout:
            raise bad("cond_dropout needs conditioning (codes or roll)")
        if self.architecture not in ARCHITECTURES:
            raise bad(f"architecture must be one of {', '.join(ARCHITECTURES)}, "
                      f"got {self.architecture!r}")
        if self.architecture == "transformer":
            for name in ("layers", "width", "heads", "context"):
                value = getattr(self, name)
                if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                    raise bad(f"{name} must be a positive integer, got {value!r}")
            if self.width % self.heads:
                raise bad(f"width ({self.width}) must be a multiple of heads ({self.heads})")
            if not 0 <= self.dropout < 1 or not 0 <= self.cond_dropout < 1:
                raise bad("dropout and cond_dropout must be in [0, 1)")
            if self.context > 1 << 20:
                raise bad(f"context ({self.context}) over 2^20 codes")
        else:
            self.wavenet_config()  # the WaveNet's own checks, with the prior's names

    # ------------------------------------------------------------------ contract
    @property
    def conditioning_channels(self) -> int:
        """Upper codebook size (an upsampler), piano-roll channels (MIDI) or 0."""
        return {"none": 0, "codes": self.upper_codebook_size,
                "roll": self.roll_channels}[self.conditioning]

    @property
    def hop_length(self) -> int | None:
        """Codes of this level per conditioning frame (None when unconditional)."""
        return {"none": None, "codes": self.upper_ratio, "roll": 1}[self.conditioning]

    @property
    def local_channels(self) -> int:
        """Channels the WaveNet's local conditioning gets."""
        return {"none": 0, "codes": self.upper_dim, "roll": self.roll_channels}[self.conditioning]

    @property
    def codes_per_second(self) -> float:
        return self.sample_rate / self.code_hop

    def wavenet_config(self) -> WaveNetConfig:
        """The WaveNet this prior runs (categorical over the next power of two of codes)."""
        local = self.local_channels
        try:
            return WaveNetConfig(
                layers=self.layers, stacks=self.stacks, kernel_size=self.kernel_size,
                residual_channels=self.residual_channels, gate_channels=self.gate_channels,
                skip_channels=self.skip_channels, head="categorical",
                num_classes=_next_power_of_two(self.codebook_size), dropout=self.dropout,
                local_channels=local, hop_length=self.hop_length or 0,
                upsample_factors=(self.hop_length,) if local else (),
                upsample_mode="repeat", cond_dropout=self.cond_dropout,
                sample_rate=self.sample_rate)
        except ConfigError as exc:
            raise ConfigError(f"CodePriorConfig: {str(exc).replace('WaveNetConfig.', '')}") \
                from None

    def estimate_size(self) -> SizeEstimate:
        if self.architecture == "transformer":
            size = SizeEstimate(transformer_parameters(self.codebook_size, self.width,
                                                       self.layers, self.context,
                                                       self.local_channels),
                                6 * self.layers + 4)
        else:
            size = self.wavenet_config().estimate_size()
        if self.conditioning == "codes":
            size += layer(self.upper_codebook_size * self.upper_dim)
        return size

    @property
    def receptive_field(self) -> int:
        """Codes the prediction of the next code depends on (a transformer: its context)."""
        if self.architecture == "transformer":
            return self.context
        return self.wavenet_config().receptive_field

    @classmethod
    def from_dict(cls, data: dict[str, Any], where: str = "CodePriorConfig") -> "CodePriorConfig":
        return super().from_dict(data, where)

    @classmethod
    def preset(cls, name: str, **overrides: Any) -> "CodePriorConfig":
        """A named size (``tiny``, ``small``, ``large``) with fields overridden."""
        return from_preset(cls, PRIOR_PRESETS, name, overrides, "code prior")


#: Sizes (WaveNet; a transformer of about the same size: ``architecture: transformer`` with
#: ``layers`` 4, ``width`` 64 for tiny). ``tiny``: 2 x 8 layers of width 32 (receptive field 511 codes, ~4 s at the tiny
#: VQ-VAE's top level); ``small``: 3 x 10 layers of width 64; ``large``: 4 x 10 layers of
#: width 128 / gates 256 (Dieleman et al.'s priors are of this order).
PRIOR_PRESETS: dict[str, dict[str, Any]] = {
    "tiny": dict(layers=8, stacks=2, residual_channels=32, gate_channels=64, skip_channels=64,
                 upper_dim=16),
    "small": dict(layers=10, stacks=3, residual_channels=64, gate_channels=128,
                  skip_channels=128, upper_dim=32),
    "large": dict(layers=10, stacks=4, residual_channels=128, gate_channels=256,
                  skip_channels=256, upper_dim=64),
}


class _CodeWaveNet(WaveNet):
    """The prior's WaveNet: its "silence" (the input before the first position, also when
    :meth:`~wavegen.models.wavenet.WaveNet.start` warms up on a prompt) is
    :data:`START_CODE`, as in the prior's teacher-forced passes, and its "waveform" targets
    are codes (a prompt of codes ``[B, 1, P]`` is taken as it is), so the WaveNet sampling
    backends of :mod:`wavegen.kernels` can run it directly (:meth:`CodePrior.fast_network`)."""

    def silence_input(self) -> int:
        return START_CODE

    def targets_from_waveform(self, wave: torch.Tensor) -> torch.Tensor:
        if wave.dim() == 3:
            wave = wave[:, 0]
        return CodeCategorical(self.config.num_classes).targets_from_waveform(wave)


class CodePrior(nn.Module):
    """A causal WaveNet over one level's codes (module docstring); sample-level contract.

    Shapes: ``codes`` / ``inputs`` ``[B, T]`` int64 in ``[0, codebook_size)``; ``local``
    ``[B, F]`` int64 upper codes (``F * upper_ratio == T``) or ``[B, roll_channels, T]``
    piano roll; head parameters ``[B, codebook_size, T]``.
    """

    def __init__(self, config: CodePriorConfig):
        super().__init__()
        check_config_size(config, "CodePrior")
        self.config = config
        self.head = CodeCategorical(config.codebook_size)
        self.upper_embedding = (nn.Embedding(config.upper_codebook_size, config.upper_dim)
                                if config.conditioning == "codes" else None)
        if config.architecture == "transformer":
            self.net = CausalTransformer(config.codebook_size, config.width, config.layers,
                                         config.heads, config.context, config.local_channels,
                                         config.hop_length or 1, config.dropout,
                                         config.cond_dropout)
        else:
            self.net = _CodeWaveNet(config.wavenet_config())

    def fast_network(self) -> WaveNet | None:
        """The WaveNet that the fast sampling backends can run in this prior's place (same
        draws from the same uniforms: its head has exactly the codebook's classes), fed
        :meth:`local_features` as its local conditioning; None for a transformer or a
        codebook that is not a power of two (whose WaveNet has unused extra classes)."""
        if self.config.architecture != "wavenet" \
                or self.net.config.num_classes != self.config.codebook_size:
            return None
        return self.net

    @property
    def max_positions(self) -> int | None:
        """Most codes one sampling call can hold (a transformer's context), else None."""
        return self.config.context if self.config.architecture == "transformer" else None

    # ------------------------------------------------------------------ contract members
    @property
    def receptive_field(self) -> int:
        return self.net.receptive_field

    def silence_input(self) -> int:
        return START_CODE

    def targets_from_waveform(self, wave: torch.Tensor) -> torch.Tensor:
        """Codes ``[B, T]`` (or ``[B, 1, T]``) -> checked int64 ``[B, T]``."""
        if wave.dim() == 3:
            if wave.shape[1] != 1:
                raise UsageError(f"codes must be [batch, codes] or [batch, 1, codes], got "
                                 f"{tuple(wave.shape)}")
            wave = wave[:, 0]
        if wave.dim() != 2:
            raise UsageError(f"codes must be [batch, codes], got {tuple(wave.shape)}")
        return self.head.targets_from_waveform(wave)

    def local_features(self, local: torch.Tensor | None) -> torch.Tensor | None:
        """The WaveNet's local conditioning ``[B, local_channels, F]`` from the prior's
        (upper codes are embedded; a roll passes through; checked, one-line errors)."""
        c = self.config
        if c.conditioning == "none":
            if local is not None:
                raise UsageError("this prior is unconditional: it takes no local conditioning")
            return None
        if local is None:
            what = "the upper level's codes" if c.conditioning == "codes" else "a piano roll"
            raise UsageError(f"this prior is conditioned on {what}: pass them as local")
        if c.conditioning == "roll":
            return local
        if local.dim() != 2 or local.is_floating_point():
            raise UsageError(f"upper codes must be int64 [batch, frames], got "
                             f"{tuple(local.shape)} {local.dtype}")
        if local.numel() and (int(local.min()) < 0
                              or int(local.max()) >= c.upper_codebook_size):
            raise UsageError(f"upper codes must lie in [0, {c.upper_codebook_size}), got "
                             f"[{int(local.min())}, {int(local.max())}]")
        return self.upper_embedding(local).transpose(1, 2)

    def _logits(self, params: torch.Tensor) -> torch.Tensor:
        return params[:, :self.config.codebook_size]

    def forward(self, inputs: torch.Tensor, local: torch.Tensor | None = None,
                global_cond: torch.Tensor | None = None,
                unconditional: bool = False) -> torch.Tensor:
        """``inputs`` ``[B, T]`` (codes shifted right) -> logits ``[B, codebook_size, T]``."""
        return self._logits(self.net(inputs, self.local_features(local), global_cond,
                                     unconditional=unconditional))

    def loss(self, codes: torch.Tensor, local: torch.Tensor | None = None,
             global_cond: torch.Tensor | None = None) -> torch.Tensor:
        """Teacher-forced NLL of ``codes`` ``[B, T]`` in nats per code (a scalar)."""
        targets = self.targets_from_waveform(codes)
        params = self(shift_right(targets, START_CODE), local, global_cond)
        return -self.head.log_prob(params, targets).mean()

    def start(self, batch: int, length: int, local: torch.Tensor | None = None,
              global_cond: torch.Tensor | None = None, unconditional: bool = False,
              prompt: torch.Tensor | None = None):
        """Incremental state for ``length`` codes (prompt included); see WaveNet.start."""
        extra = {"first": START_CODE} if self.config.architecture == "transformer" else {}
        return self.net.start(batch, length, self.local_features(local), global_cond,
                              unconditional=unconditional, prompt=prompt, **extra)

    def step(self, previous: torch.Tensor, state) -> torch.Tensor:
        """Logits ``[B, codebook_size]`` of the code after ``previous`` ``[B]``."""
        return self.net.step(previous, state)[:, :self.config.codebook_size]

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())


def prior_adapter(model: CodePrior, info):
    """The family's inference adapter (:class:`~wavegen.inference.code_prior.CodePriorAdapter`:
    conditioning in, codes out), imported when first used."""
    from wavegen.inference.code_prior import CodePriorAdapter

    return CodePriorAdapter(model, info)


def describe(config: CodePriorConfig) -> str:
    """One line: level, codes, conditioning and context in codes and seconds."""
    rf = config.receptive_field
    return (f"code prior over level {config.level} ({config.codebook_size} codes, "
            f"{config.codes_per_second:g} codes/s), conditioning {config.conditioning}, "
            f"context {rf} codes = {rf / config.codes_per_second:.2f} s")


__all__ = ["ARCHITECTURES", "CodePrior", "CodePriorConfig", "PRIOR_CONDITIONINGS", "PRIOR_PRESETS",
           "START_CODE", "describe", "prior_adapter"]
