"""DiffWave (Kong et al. 2021): a non-causal dilated-conv denoiser for waveform diffusion.

The network is a :class:`~wavegen.models.protocols.DenoiserModel`:
``model(x_t [B, 1, T], t [B] in [0, 1], local=None) -> prediction [B, 1, T]`` in whatever
parameterisation the bundle's :class:`~wavegen.diffusion.process.DiffusionProcess` says
(the paper predicts eps; nothing here depends on that)::

    x_t [B, 1, T] --1x1--> ReLU --> x [B, C, T]
    t [B] --sinusoid(128)--> FC 512 + SiLU --> FC 512 + SiLU --> e [B, 512]   (shared)
    local [B, M, F] --upsampler (2-D transposed convs, leaky ReLU 0.4)--> [B, M, F * hop]
    per layer i (N of them, dilation 2^(i mod cycle)):
        h = x + FC_i(e)[..., None]                               step embedding, [B, C, T]
        g = dilconv_k3(h) + 1x1_i(local) + W_i label(global)     [B, 2C, T]
        z = tanh(g[:C]) * sigmoid(g[C:])
        x = (x + 1x1(z)) / sqrt(2)          residual;   skip_i = 1x1(z)
    sum_i skip_i / sqrt(N) --1x1--> ReLU --1x1 (zero-initialised)--> [B, 1, T]

Each layer is a :class:`~wavegen.nn.gated_residual.GatedResidualBlock` with
``causal=False`` (kernel 3, "same" padding: output ``t`` sees ``t - d .. t + d``), its own
1x1 projection of the upsampled local conditioning (``local_channels``) and of the label
embedding (``global_channels``). The block's residual and skip 1x1 convs are the paper's one
``C -> 2C`` output projection split in two (same parameters). The paper adds the step
embedding to the block's input but its residual path carries the input *without* it; the
block is given ``h = x + e_i`` and the embedding is subtracted from its residual output
again (``h + 1x1(z) - e_i = x + 1x1(z)``), which is exact. The 1x1 conditioning
projections have no bias (the dilated conv's bias covers it): 3840 parameters fewer than the
paper's base model.

Diffusion time. The paper embeds the integer step ``n`` of a 50-step (or 200-step) chain;
here ``t`` is continuous. It is multiplied by ``time_scale`` (default 1000, the DDPM step
scale, whatever the schedule) and embedded with 64 sines and 64 cosines of frequencies
``10^(-4 j / 63)``, ``j = 0..63`` (the transformer / DDPM spacing: angles from ``1000 t``
down to ``0.1 t`` radians), not the paper's ``10^(+4 j / 63)``, whose upper frequencies
would alias wildly over a continuous ``t``.

Conditioning (``conditioning``):

* ``"mel"``: a log-mel ``[B, n_mels, F]``; ``conditioning_channels = n_mels``.
* ``"roll"``: the MAESTRO piano roll ``[B, 265, F]`` (:class:`~wavegen.data.midi.PianoRollConfig`
  at ``hop_length``), upsampled the same way.
* ``"none"``: unconditional (the paper's SC09 model); ``local`` must be None.

The upsampler is the paper's: ``[B, M, F]`` is treated as a one-channel image and each stage
is a ``ConvTranspose2d(1, 1, (3, 2 f), stride (1, f))`` (3 taps across neighbouring
bands/rows, ``2 f`` in time) followed by leaky ReLU 0.4. For hop 256 the paper uses two
stages of 16; here :func:`upsample_factors_for` derives the stages from any hop (two stages
as balanced as possible, more if a stage would exceed :data:`MAX_STAGE_FACTOR`), e.g.
``300 -> (20, 15)`` and ``64 -> (8, 8)``; a hop with a prime factor over
:data:`MAX_STAGE_FACTOR` (257, 2 x 37) is a ConfigError. ``upsample_factors`` overrides.

``global_classes > 0`` adds a label embedding (``global_embedding_dim``, 128 in the paper)
with one extra row, the "no label" class, used when ``global_cond`` is None (the training
task and the inference adapters pass none; classifier-free guidance can use it as the
unconditional branch).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from wavegen.errors import ConfigError, UsageError
from wavegen.models.size import SizeEstimate, check_config_size, conv, layer
from wavegen.nn.gated_residual import GatedResidualBlock
from wavegen.nn.input_level import apply_input_level, check_input_level
from wavegen.nn.upsample import prime_factors
from wavegen.utils.config import DictConfig, from_preset

CONDITIONINGS = ("mel", "roll", "none")
#: Largest time factor of one upsampling stage (the paper's largest is 16).
MAX_STAGE_FACTOR = 32
#: Slope of the upsampler's leaky ReLUs (the paper's 0.4).
UPSAMPLE_SLOPE = 0.4
#: Upsampling stages the paper uses (more only when a stage would exceed MAX_STAGE_FACTOR).
UPSAMPLE_STAGES = 2


def upsample_factors_for(hop_length: int) -> tuple[int, ...]:
    """Per-stage time factors (largest first) multiplying to ``hop_length``.

    Two stages as balanced as possible (prime factors dealt, largest first, onto the stage
    with the smallest product), more stages while one exceeds :data:`MAX_STAGE_FACTOR`:
    ``256 -> (16, 16)``, ``300 -> (20, 15)``, ``64 -> (8, 8)``, ``2048 -> (16, 16, 8)``,
    ``5 -> (5,)``, ``1 -> ()``. A ConfigError when a prime factor exceeds the maximum.
    """
    if not isinstance(hop_length, int) or hop_length < 1:
        raise ConfigError(f"DiffWave: hop_length must be an int >= 1, got {hop_length!r}")
    if hop_length > 1 << 20:
        raise ConfigError(f"DiffWave: hop_length {hop_length} is over {1 << 20} samples")
    primes = sorted(prime_factors(hop_length), reverse=True)
    if primes and primes[0] > MAX_STAGE_FACTOR:
        raise ConfigError(f"DiffWave: hop_length {hop_length} has the prime factor {primes[0]}, "
                          f"over the largest upsampling stage ({MAX_STAGE_FACTOR}); use a hop "
                          f"whose prime factors are all <= {MAX_STAGE_FACTOR} (e.g. 256 or 300)")
    stages = min(UPSAMPLE_STAGES, len(primes))
    while True:
        bins = [1] * stages
        for p in primes:
            bins[bins.index(min(bins))] *= p
        if not bins or max(bins) <= MAX_STAGE_FACTOR:
            return tuple(sorted(bins, reverse=True))
        stages += 1


def step_embedding(t: torch.Tensor, dim: int, scale: float) -> torch.Tensor:
    """``t`` ``[B]`` in [0, 1] -> ``[B, dim]``: sines then cosines of ``scale * t`` at
    frequencies ``10^(-4 j / (dim / 2 - 1))`` (see the module docstring)."""
    half = dim // 2
    exponents = torch.arange(half, device=t.device, dtype=torch.float32) / max(half - 1, 1)
    angles = (scale * t.float())[:, None] * 10.0 ** (-4.0 * exponents)[None]
    return torch.cat([angles.sin(), angles.cos()], dim=1)


def table_step_embedding(t: torch.Tensor, dim: int, steps: int) -> torch.Tensor:
    """``t`` ``[B]`` -> ``[B, dim]`` as the paper's code embeds the chain's step
    ``n = steps t - 1`` (see ``DiffWaveConfig.embedding_steps``)."""
    half = dim // 2
    # The same float32 operations as the paper's code (its angles reach 5e5 rad, where one
    # rounding more or less moves a sine noticeably).
    exponents = torch.arange(half, device=t.device, dtype=torch.float32) * 4.0 / max(half - 1, 1)
    frequencies = 10.0 ** exponents

    def row(n: torch.Tensor) -> torch.Tensor:
        angles = n[:, None] * frequencies[None]
        return torch.cat([angles.sin(), angles.cos()], dim=1)

    n = (steps * t.double() - 1.0).clamp(0.0, steps - 1.0)
    low = n.floor()
    weight = (n - low).float()[:, None]
    below, above = row(low.float()), row(n.ceil().float())
    return below + (above - below) * weight


@dataclass
class DiffWaveConfig(DictConfig):
    """Hyperparameters of a DiffWave denoiser (defaults: the paper's base model, 22.05 kHz).

    Attributes:
        residual_layers: ``N`` gated residual layers.
        residual_channels: ``C``.
        dilation_cycle: layer ``i`` has dilation ``2^(i mod dilation_cycle)``.
        conditioning: ``"mel"``, ``"roll"`` or ``"none"`` (module docstring).
        n_mels: mel bands (``"mel"`` only).
        hop_length: audio samples per conditioning frame (``"mel"`` / ``"roll"``).
        sample_rate: audio rate in Hz.
        upsample_factors: time factor of each upsampling stage (product = ``hop_length``);
            None derives them from the hop (:func:`upsample_factors_for`).
        embedding_dim: width of the sinusoidal step embedding (128).
        embedding_hidden: width of its two FC + SiLU layers (512).
        time_scale: ``t`` is multiplied by this before the sinusoids (1000).
        embedding_steps: 0 for the continuous embedding above; ``N > 0`` embeds as the
            paper's code does for an ``N``-step chain (imported checkpoints): step
            ``n = N t - 1`` (the chain's step whose cumulative alpha the core's linear
            schedule reaches at ``t``), the table of sines then cosines of ``n 10^(4 j / 63)``
            at the integer steps, linearly interpolated between rows for a fractional ``n``
            (the official fast sampler's lerp), ``n`` clamped to ``[0, N - 1]``.
        local_offset, local_scale: the conditioning enters as ``(local + local_offset) *
            local_scale`` (:mod:`wavegen.nn.input_level`); for natural-log mels
            ``6.0`` and ``0.25`` map [-11.5, 2] to about [-1.4, 2]. The defaults leave it
            as it is (imported checkpoints, piano rolls).
        global_classes: number of labels (0: no label conditioning).
        global_embedding_dim: width of the label embedding (128).
    """

    residual_layers: int = 30
    residual_channels: int = 64
    dilation_cycle: int = 10
    conditioning: str = "mel"
    n_mels: int = 80
    hop_length: int = 256
    sample_rate: int = 22050
    upsample_factors: tuple[int, ...] | None = None
    embedding_dim: int = 128
    embedding_hidden: int = 512
    time_scale: float = 1000.0
    embedding_steps: int = 0
    local_offset: float = 0.0
    local_scale: float = 1.0
    global_classes: int = 0
    global_embedding_dim: int = 128

    def __post_init__(self) -> None:
        def bad(message: str) -> ConfigError:
            return ConfigError(f"DiffWaveConfig: {message}")

        if self.conditioning not in CONDITIONINGS:
            raise bad(f"conditioning must be one of {', '.join(CONDITIONINGS)}, "
                      f"got {self.conditioning!r}")
        for key in ("residual_layers", "residual_channels", "dilation_cycle", "n_mels",
                    "hop_length", "sample_rate", "embedding_hidden", "global_embedding_dim"):
            if getattr(self, key) < 1:
                raise bad(f"{key} must be >= 1, got {getattr(self, key)}")
        if self.embedding_dim < 2 or self.embedding_dim % 2:
            raise bad(f"embedding_dim must be even and >= 2, got {self.embedding_dim}")
        if not math.isfinite(self.time_scale) or self.time_scale <= 0:
            raise bad(f"time_scale must be > 0, got {self.time_scale}")
        if self.global_classes < 0:
            raise bad(f"global_classes must be >= 0, got {self.global_classes}")
        check_input_level("DiffWaveConfig", self.local_offset, self.local_scale)
        if not 0 <= self.embedding_steps <= 100_000:
            raise bad(f"embedding_steps must be in [0, 100000], got {self.embedding_steps}")
        if self.dilation_cycle > 30:
            raise bad(f"dilation_cycle must be <= 30 (dilation 2^29), got {self.dilation_cycle}")
        if self.upsample_factors is not None:
            self.upsample_factors = tuple(self.upsample_factors)
            if any(f < 1 for f in self.upsample_factors):
                raise bad(f"upsample_factors must be positive, got {list(self.upsample_factors)}")
            if math.prod(self.upsample_factors) != self.hop_length:
                raise bad(f"upsample_factors {' x '.join(map(str, self.upsample_factors))} = "
                          f"{math.prod(self.upsample_factors)} must equal hop_length "
                          f"({self.hop_length})")
        elif self.conditioning != "none":
            upsample_factors_for(self.hop_length)  # refuses an unfactorable hop now

    # ------------------------------------------------------------------ contract
    @property
    def conditioning_channels(self) -> int:
        """Model config contract: mel bands, piano-roll rows, or 0 (unconditional)."""
        if self.conditioning == "mel":
            return self.n_mels
        if self.conditioning == "roll":
            from wavegen.data.midi import PianoRollConfig
            return PianoRollConfig(self.sample_rate, self.hop_length).num_channels
        return 0

    @property
    def stage_factors(self) -> tuple[int, ...]:
        """The upsampler's time factors (empty when unconditional)."""
        if self.conditioning == "none":
            return ()
        if self.upsample_factors is not None:
            return self.upsample_factors
        return upsample_factors_for(self.hop_length)

    def dilations(self) -> list[int]:
        return [2 ** (i % self.dilation_cycle) for i in range(self.residual_layers)]

    @property
    def receptive_field(self) -> int:
        """Samples of ``x_t`` one output sample depends on: ``1 + 2 sum(dilations)``."""
        return 1 + 2 * sum(self.dilations())

    # ------------------------------------------------------------------ size
    def estimate_size(self) -> SizeEstimate:
        """Parameters and weight layers of the :class:`DiffWave` this config builds (exact)."""
        c, n, d, h = (self.residual_channels, self.residual_layers, self.embedding_dim,
                      self.embedding_hidden)
        local = self.conditioning_channels
        size = conv(1, c, 1) + layer(d * h, h) + layer(h * h, h)
        for f in self.stage_factors:
            size += layer(3 * 2 * f, 1)  # ConvTranspose2d(1, 1, (3, 2f))
        per_layer = (layer(h * c, c) + conv(c, 2 * c, 3) + conv(c, c, 1) + conv(c, c, 1))
        if local:
            per_layer += conv(local, 2 * c, 1, bias=False)
        if self.global_classes:
            per_layer += layer(self.global_embedding_dim * 2 * c)
            size += layer((self.global_classes + 1) * self.global_embedding_dim)
        return size + n * per_layer + conv(c, c, 1) + conv(c, 1, 1)

    @classmethod
    def preset(cls, name: str, **overrides: Any) -> "DiffWaveConfig":
        """A configuration of the paper (``"base"``, ``"large"``, ``"unconditional"``) with
        fields overridden."""
        return from_preset(cls, DIFFWAVE_PRESETS, name, overrides, "DiffWave")


#: The paper's models: base / large vocoders (LJSpeech, 22.05 kHz, 80 mels, hop 256;
#: 2.64M / 6.91M parameters) and the unconditional SC09 model (16 kHz, 24.1M).
DIFFWAVE_PRESETS: dict[str, DiffWaveConfig] = {
    "base": DiffWaveConfig(),
    "large": DiffWaveConfig(residual_channels=128),
    "unconditional": DiffWaveConfig(residual_layers=36, residual_channels=256,
                                    dilation_cycle=12, conditioning="none", sample_rate=16000),
}


class SpectrogramUpsampler(nn.Module):
    """Frame-rate conditioning ``[B, M, F]`` -> ``[B, M, F * hop]`` (paper's 2-D transposed
    convs, generalised to any per-stage factors; see the module docstring)."""

    def __init__(self, factors: tuple[int, ...]):
        super().__init__()
        self.factors = tuple(factors)
        self.stages = nn.ModuleList(
            nn.ConvTranspose2d(1, 1, (3, 2 * f), stride=(1, f), padding=(1, 0))
            for f in self.factors)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = x.unsqueeze(1)
        for f, stage in zip(self.factors, self.stages):
            frames = y.shape[-1]
            # (F + 1) f samples come out; dropping f // 2 in front leaves exactly F f, the same
            # as the paper's padding f / 2 for an even f.
            y = stage(y)[..., f // 2:f // 2 + frames * f]
            y = F.leaky_relu(y, UPSAMPLE_SLOPE)
        return y.squeeze(1)


class DiffWave(nn.Module):
    """The DiffWave denoiser (module docstring): ``forward(x_t, t, local) -> [B, 1, T]``."""

    def __init__(self, config: DiffWaveConfig):
        super().__init__()
        check_config_size(config, "DiffWave")
        self.config = config
        c, h = config.residual_channels, config.embedding_hidden
        local = config.conditioning_channels
        self.input_projection = nn.Conv1d(1, c, 1)
        self.embedding = nn.Sequential(nn.Linear(config.embedding_dim, h), nn.SiLU(),
                                       nn.Linear(h, h), nn.SiLU())
        self.upsampler = SpectrogramUpsampler(config.stage_factors) if local else None
        self.label_embedding = (nn.Embedding(config.global_classes + 1,
                                             config.global_embedding_dim)
                                if config.global_classes else None)
        self.step_projections = nn.ModuleList(nn.Linear(h, c) for _ in range(config.residual_layers))
        self.layers = nn.ModuleList(
            GatedResidualBlock(c, c, c, 3, d, causal=False, local_channels=local,
                               global_channels=(config.global_embedding_dim
                                                if config.global_classes else 0))
            for d in config.dilations())
        self.skip_projection = nn.Conv1d(c, c, 1)
        self.output_projection = nn.Conv1d(c, 1, 1)
        nn.init.zeros_(self.output_projection.weight)
        nn.init.zeros_(self.output_projection.bias)

    @property
    def receptive_field(self) -> int:
        return self.config.receptive_field

    def upsample(self, local: torch.Tensor, length: int) -> torch.Tensor:
        """Checked ``[B, M, F]`` -> ``[B, M, length]`` with ``F * hop == length``."""
        channels, hop = self.config.conditioning_channels, self.config.hop_length
        if local.ndim != 3 or local.shape[1] != channels or local.shape[-1] * hop != length:
            raise UsageError(f"DiffWave: local conditioning must be [B, {channels}, "
                             f"{length / hop:g}] for {length} samples at hop {hop}, "
                             f"got {list(local.shape)}")
        return self.upsampler(local)

    def forward(self, x_t: torch.Tensor, t: torch.Tensor, local: torch.Tensor | None = None,
                global_cond: torch.Tensor | None = None) -> torch.Tensor:
        """Prediction ``[B, 1, T]`` for noisy audio ``x_t`` ``[B, 1, T]`` at times ``t``
        ``[B]`` in [0, 1].

        Args:
            local: ``[B, conditioning_channels, T / hop]`` (None only for ``"none"``).
            global_cond: ``[B]`` label indices in ``[0, global_classes)``, ``global_classes``
                itself for the "no label" row, or None for "no label" everywhere (only with
                ``global_classes > 0``).
        """
        if x_t.ndim != 3 or x_t.shape[1] != 1:
            raise UsageError(f"DiffWave: x_t must be [B, 1, T], got {list(x_t.shape)}")
        batch, length = x_t.shape[0], x_t.shape[-1]
        if t.shape != (batch,):
            raise UsageError(f"DiffWave: t must be [{batch}], got {list(t.shape)}")
        if self.upsampler is None:
            if local is not None:
                raise UsageError("DiffWave: this model is unconditional; pass local=None")
        elif local is None:
            raise UsageError(f"DiffWave: this model is conditioned on a {self.config.conditioning} "
                             f"[B, {self.config.conditioning_channels}, frames]; pass local")
        else:
            local = apply_input_level(local.to(x_t.dtype), self.config.local_offset,
                                      self.config.local_scale)
            local = self.upsample(local, length)
        labels = self._labels(global_cond, batch, x_t.device)
        x = F.relu(self.input_projection(x_t))
        if self.config.embedding_steps:
            table = table_step_embedding(t, self.config.embedding_dim, self.config.embedding_steps)
        else:
            table = step_embedding(t, self.config.embedding_dim, self.config.time_scale)
        e = self.embedding(table.to(x.dtype))
        skips = None
        for project, block in zip(self.step_projections, self.layers):
            step = project(e)[..., None]
            out, skip = block(x + step, local=local, global_cond=labels)
            x = (out - step) * math.sqrt(0.5)
            skips = skip if skips is None else skips + skip
        y = F.relu(self.skip_projection(skips * (1.0 / math.sqrt(len(self.layers)))))
        return self.output_projection(y)

    def _labels(self, global_cond: torch.Tensor | None, batch: int,
                device: torch.device) -> torch.Tensor | None:
        if self.label_embedding is None:
            if global_cond is not None:
                raise UsageError("DiffWave: this model has no label conditioning "
                                 "(global_classes = 0)")
            return None
        classes = self.config.global_classes
        if global_cond is None:
            global_cond = torch.full((batch,), classes, dtype=torch.long, device=device)
        elif global_cond.shape != (batch,) or global_cond.is_floating_point():
            raise UsageError(f"DiffWave: global_cond must be [{batch}] label indices, got "
                             f"{global_cond.dtype} {list(global_cond.shape)}")
        elif bool(((global_cond < 0) | (global_cond > classes)).any()):
            raise UsageError(f"DiffWave: labels must be in [0, {classes}] ({classes}: no label), got "
                             f"{global_cond.min().item()}..{global_cond.max().item()}")
        return self.label_embedding(global_cond)


__all__ = ["CONDITIONINGS", "DIFFWAVE_PRESETS", "MAX_STAGE_FACTOR", "DiffWave",
           "DiffWaveConfig", "SpectrogramUpsampler", "step_embedding", "table_step_embedding",
           "upsample_factors_for"]
