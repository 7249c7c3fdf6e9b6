"""Hierarchical VQ-VAE on raw audio (Dieleman et al. 2018; Jukebox, Dhariwal et al. 2020).

A discrete autoencoder (:class:`~wavegen.models.protocols.DiscreteAutoencoder`) with
``L`` levels. Level ``l`` turns audio into one code per ``h_l`` samples (its *hop*) and
back; the hops grow from the finest level 0 to the coarsest (Jukebox: 8, 32 and 128 at
44.1 kHz). Its codes are what a prior over that level models later (a WaveNet or a
Transformer over codes, Dieleman et al.'s "hierarchical WaveNets").

Every level is an autoencoder of its own, from raw audio to raw audio (Jukebox's design:
separate encoders and decoders per level, no level sees another's codes)::

    audio [B, 1, T] --Down(s_1)--Res--Down(s_2)--Res-- ... --Down(s_n)--Res--
        --conv k3--> z [B, code_dim, T / h_l] --VQ--> codes [B, T / h_l]
    codes --codebook--> q [B, code_dim, T / h_l] --conv k3--Res--Up(s_n)--Res--Up(s_{n-1})
        -- ... --Res--Up(s_1)--conv k3--> audio [B, 1, T]

* ``Down(s)``: a conv of kernel ``2 s`` and stride ``s`` (padded ``s`` in all, so exactly
  ``T -> T / s``); the first takes the audio's one channel to the level's ``channels``.
  ``Up(s)``: the transposed conv of kernel ``2 s`` and stride ``s`` (``T -> T s``).
  ``h_l = s_1 s_2 ... s_n``.
* ``Res``: ``residual_depth`` non-causal residual blocks
  ``h + conv1x1(relu(conv3_dilated(relu(h))))`` whose dilations grow by ``dilation_growth``
  (1, 3, 9, ... in the encoder; reversed in the decoder, as in Jukebox).
* The projections to ``code_dim`` and to audio take ``relu(h)``.
* ``VQ``: :class:`~wavegen.nn.vector_quantizer.VectorQuantizer`, the EMA codebook with the
  commitment loss ``beta`` and random restarts of dead codes (Jukebox's).

Training (``task: vq``, :mod:`wavegen.train.tasks.vq`): sample L2 (or L1) + the
multi-resolution STFT loss + commitment, per level. ``train_level`` chooses what one run
trains:

* ``None`` (default): every level at once, each with its own loss terms, summed (Jukebox);
  ``autoencode`` then returns one reconstruction per level. No level's gradient or codes
  reach another (only a global gradient-norm clip couples their steps), so this trains the
  levels as separate runs would, in one pass over the data, and the top level cannot
  collapse into the lower ones (the point of separate autoencoders).
* ``l``: level ``l`` alone (the others are frozen and never run); ``autoencode`` returns
  level ``l``'s reconstruction and codebook output. For a level trained in a run of its
  own, e.g. the top level with longer crops; that run's bundle serves level ``l``.

The config's contract is unconditional (``conditioning_channels`` 0, ``hop_length`` None);
the levels' samples per code are :attr:`VQVAEConfig.hop_lengths`. ``encode``/``decode``
need ``T`` to be a multiple of the level's hop (one-line UsageErrors otherwise).

Strides. ``strides`` may give each level's downsampling factors (fine first; product = the
level's hop) or be None: then :func:`derive_strides` splits every hop into factors of at
most ``max_stride``, largest first (``max_stride`` 2: Jukebox's stride-2 stacks, hop 128 ->
seven downsamplings; ``max_stride`` 4: 128 -> 4, 4, 4, 2).

Sizes (parameters; the codebooks are buffers, not parameters):

* ``jukebox``: the paper's VQ-VAE at 44.1 kHz: hops 8, 32, 128 from stride-2 stacks, widths
  64, 32, 32 with 8, 4, 4 residual blocks per downsampling, dilation growth 3, 2048 codes of
  dimension 64 per level, beta 0.02, EMA decay 0.99: 1,415,491 parameters.
* ``tiny``: CPU tests and recipes at 16 kHz: hops 8, 32, 128 from strides of at most 4,
  width 16, 2 residual blocks, 64 codes of dimension 16: 68,115 parameters.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from wavegen.errors import ConfigError, UsageError
from wavegen.models.size import SizeEstimate, check_config_size, conv
from wavegen.nn.vector_quantizer import VectorQuantizer, VQOutput
from wavegen.utils.config import DictConfig, from_dict, from_preset

#: Kernel of the projections into and out of the code space and to audio.
PROJECTION_KERNEL = 3
#: Kernel of the dilated conv in each residual block.
RESIDUAL_KERNEL = 3
#: Largest dilation a residual block may have (an absurd one only pads with zeros).
MAX_DILATION = 2 ** 16


def derive_strides(hop: int, max_stride: int) -> tuple[int, ...]:
    """Factors in ``[2, max_stride]`` multiplying to ``hop``, largest first (each the largest
    factor that divides what is left). A hop with a prime factor over ``max_stride`` is a
    ConfigError naming it."""
    if hop < 2 or max_stride < 2:
        raise ConfigError(f"VQVAEConfig: a hop of {hop} cannot be split into strides in "
                          f"[2, {max_stride}]")
    factors, rest = [], hop
    while rest > 1:
        factor = next((f for f in range(min(max_stride, rest), 1, -1) if rest % f == 0), None)
        if factor is None:
            raise ConfigError(f"VQVAEConfig: hop {hop} has a prime factor over max_stride "
                              f"{max_stride}; raise max_stride or give strides")
        factors.append(factor)
        rest //= factor
    return tuple(sorted(factors, reverse=True))


@dataclass
class VQVAEConfig(DictConfig):
    """Hyperparameters of a :class:`VQVAE` (defaults: Jukebox's VQ-VAE at 44.1 kHz).

    Attributes:
        sample_rate: audio rate in Hz (stored for bundles).
        hops: samples per code of each level, finest first, strictly increasing.
        strides: each level's downsampling factors, fine first, product = its hop; None
            derives them (:func:`derive_strides` with ``max_stride``).
        max_stride: the largest derived stride.
        channels: conv width of each level's encoder and decoder.
        residual_depth: residual blocks after each downsampling (and before each
            upsampling) of each level.
        dilation_growth: dilation factor between consecutive residual blocks.
        codebook_size: codes per level.
        code_dim: dimension of the code vectors.
        beta: commitment loss weight (Jukebox 0.02).
        ema_decay: decay of the codebooks' EMA (0.99).
        restart_threshold: EMA usage under which a code is restarted to a random encoder
            vector (Jukebox's random restarts; 0 = never).
        train_level: None trains every level at once; ``l`` trains level ``l`` alone (see
            the module docstring).
    """

    sample_rate: int = 44100
    hops: tuple[int, ...] = (8, 32, 128)
    strides: tuple[tuple[int, ...], ...] | None = None
    max_stride: int = 2
    channels: tuple[int, ...] = (64, 32, 32)
    residual_depth: tuple[int, ...] = (8, 4, 4)
    dilation_growth: int = 3
    codebook_size: int = 2048
    code_dim: int = 64
    beta: float = 0.02
    ema_decay: float = 0.99
    restart_threshold: float = 1.0
    train_level: int | None = None

    def __post_init__(self) -> None:
        def bad(message: str) -> ConfigError:
            return ConfigError(f"VQVAEConfig: {message}")

        self.hops = tuple(self.hops)
        self.channels = tuple(self.channels)
        self.residual_depth = tuple(self.residual_depth)
        levels = len(self.hops)
        if not levels or any(h < 2 for h in self.hops) \
                or any(a >= b for a, b in zip(self.hops, self.hops[1:])):
            raise bad(f"hops must be strictly increasing samples per code >= 2 (finest level "
                      f"first), got {list(self.hops)}")
        for key in ("sample_rate", "codebook_size", "code_dim", "dilation_growth"):
            if getattr(self, key) < 1:
                raise bad(f"{key} must be >= 1, got {getattr(self, key)}")
        if len(self.channels) != levels or any(c < 1 for c in self.channels):
            raise bad(f"channels must hold {levels} widths >= 1 (one per level), got "
                      f"{list(self.channels)}")
        if len(self.residual_depth) != levels or any(d < 0 for d in self.residual_depth):
            raise bad(f"residual_depth must hold {levels} block counts >= 0 (one per level), "
                      f"got {list(self.residual_depth)}")
        deepest = max(self.residual_depth)
        if deepest and self.dilation_growth ** (deepest - 1) > MAX_DILATION:
            raise bad(f"dilation_growth {self.dilation_growth} over {deepest} residual blocks "
                      f"reaches a dilation over {MAX_DILATION}")
        if self.max_stride < 2:
            raise bad(f"max_stride must be >= 2, got {self.max_stride}")
        if self.strides is not None:
            self.strides = tuple(tuple(level) for level in self.strides)
            if len(self.strides) != levels:
                raise bad(f"strides must hold {levels} lists (one per level), got "
                          f"{len(self.strides)}")
            for index, (hop, strides) in enumerate(zip(self.hops, self.strides)):
                if not strides or any(s < 2 for s in strides) or math.prod(strides) != hop:
                    raise bad(f"strides[{index}] {list(strides)} must be factors >= 2 whose "
                              f"product is hops[{index}] ({hop})")
        else:
            for hop in self.hops:
                derive_strides(hop, self.max_stride)  # fails on a hop it cannot split
        if not 0.0 <= self.ema_decay < 1.0:
            raise bad(f"ema_decay must be in [0, 1), got {self.ema_decay}")
        if self.beta < 0 or self.restart_threshold < 0:
            raise bad(f"beta and restart_threshold must be >= 0, got {self.beta} and "
                      f"{self.restart_threshold}")
        if self.train_level is not None and not 0 <= self.train_level < levels:
            raise bad(f"train_level must be None (all levels) or a level in 0..{levels - 1}, "
                      f"got {self.train_level}")

    # ---- model config contract (wavegen.models.protocols)
    @property
    def conditioning_channels(self) -> int:
        """Model config contract: unconditional."""
        return 0

    @property
    def hop_length(self) -> int | None:
        """Model config contract: no conditioning frames (each level's samples per code
        are :attr:`hop_lengths`)."""
        return None

    @property
    def num_levels(self) -> int:
        return len(self.hops)

    @property
    def hop_lengths(self) -> tuple[int, ...]:
        """Samples per code of each level, finest first."""
        return tuple(self.hops)

    def level_strides(self, level: int) -> tuple[int, ...]:
        """Downsampling factors of ``level``, fine first (given or derived)."""
        if self.strides is not None:
            return tuple(self.strides[level])
        return derive_strides(self.hops[level], self.max_stride)

    def estimate_size(self) -> SizeEstimate:
        """Parameters and weight layers of the :class:`VQVAE` this config builds (exact; the
        codebooks are buffers)."""
        size = SizeEstimate()
        for level in range(len(self.hops)):
            width, depth = self.channels[level], self.residual_depth[level]
            strides = self.level_strides(level)
            block = conv(width, width, RESIDUAL_KERNEL) + conv(width, width, 1)
            # Encoder: the first Down takes the audio's one channel; decoder: every Up is
            # width -> width (a transposed conv has the same weights as a conv).
            downs = sum((conv(1 if i == 0 else width, width, 2 * s)
                         for i, s in enumerate(strides)), SizeEstimate())
            ups = sum((conv(width, width, 2 * s) for s in strides), SizeEstimate())
            residual = (2 * len(strides) * depth) * block
            size += (downs + ups + residual + conv(width, self.code_dim, PROJECTION_KERNEL)
                     + conv(self.code_dim, width, PROJECTION_KERNEL)
                     + conv(width, 1, PROJECTION_KERNEL))
        return size

    @classmethod
    def from_dict(cls, data: dict[str, Any], where: str = "VQVAEConfig") -> "VQVAEConfig":
        """From plain values; unknown keys and wrong types are ConfigErrors naming the key."""
        return from_dict(cls, data, where)

    @classmethod
    def preset(cls, name: str, **overrides: Any) -> "VQVAEConfig":
        """A named configuration (``"jukebox"``: the paper's; ``"tiny"``: CPU tests and
        recipes) with fields overridden."""
        return from_preset(cls, VQVAE_PRESETS, name, overrides, "VQ-VAE")


#: Presets as plain values.
VQVAE_PRESETS: dict[str, dict[str, Any]] = {
    # Jukebox (Dhariwal et al. 2020, Table 4): 44.1 kHz, hops 8/32/128 from stride-2
    # downsamplings, residual width 64/32/32 with 8/4/4 blocks per downsampling, dilation
    # growth 3, 2048 codes of width 64, commitment 0.02, EMA 0.99, random restarts.
    "jukebox": {"sample_rate": 44100, "hops": (8, 32, 128), "strides": None, "max_stride": 2,
                "channels": (64, 32, 32), "residual_depth": (8, 4, 4), "dilation_growth": 3,
                "codebook_size": 2048, "code_dim": 64, "beta": 0.02, "ema_decay": 0.99,
                "restart_threshold": 1.0, "train_level": None},
    # A narrow three-level model for CPU tests and the tiny recipe (16 kHz).
    "tiny": {"sample_rate": 16000, "hops": (8, 32, 128), "strides": None, "max_stride": 4,
             "channels": (16, 16, 16), "residual_depth": (2, 2, 2), "dilation_growth": 3,
             "codebook_size": 64, "code_dim": 16, "beta": 0.02, "ema_decay": 0.99,
             "restart_threshold": 1.0, "train_level": None},
}


# --------------------------------------------------------------------------- layers
class ResidualStack(nn.Module):
    """``depth`` blocks ``h + conv1x1(relu(conv_k3_dilated(relu(h))))`` (length-preserving)."""

    def __init__(self, width: int, depth: int, growth: int, reverse: bool = False):
        super().__init__()
        dilations = [growth ** j for j in range(depth)]
        if reverse:
            dilations.reverse()
        self.dilated = nn.ModuleList(
            nn.Conv1d(width, width, RESIDUAL_KERNEL, dilation=d,
                      padding=d * (RESIDUAL_KERNEL - 1) // 2) for d in dilations)
        self.mix = nn.ModuleList(nn.Conv1d(width, width, 1) for _ in dilations)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        for dilated, mix in zip(self.dilated, self.mix):
            h = h + mix(F.relu(dilated(F.relu(h))))
        return h


class Down(nn.Module):
    """Strided conv, kernel ``2 s``, padded ``s // 2`` left and ``s - s // 2`` right:
    ``[B, cin, T] -> [B, cout, T / s]`` exactly (``s`` dividing ``T``)."""

    def __init__(self, cin: int, cout: int, stride: int):
        super().__init__()
        self.pad = (stride // 2, stride - stride // 2)
        self.conv = nn.Conv1d(cin, cout, 2 * stride, stride=stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(F.pad(x, self.pad))


def up(width: int, stride: int) -> nn.ConvTranspose1d:
    """Transposed conv, kernel ``2 s``, stride ``s``: ``[B, C, N] -> [B, C, N s]`` exactly
    (for odd ``s`` one extra output sample is added back on the right)."""
    return nn.ConvTranspose1d(width, width, 2 * stride, stride=stride,
                              padding=(stride + 1) // 2, output_padding=stride % 2)


class Encoder(nn.Module):
    """``[B, 1, T] -> [B, code_dim, T / hop]``: Down + residual stack per stride, then a
    projection."""

    def __init__(self, strides: Sequence[int], width: int, depth: int, growth: int,
                 code_dim: int):
        super().__init__()
        self.stages = nn.ModuleList(
            nn.Sequential(Down(1 if i == 0 else width, width, s),
                          ResidualStack(width, depth, growth)) for i, s in enumerate(strides))
        self.out = nn.Conv1d(width, code_dim, PROJECTION_KERNEL,
                             padding=PROJECTION_KERNEL // 2)

    def forward(self, audio: torch.Tensor) -> torch.Tensor:
        h = audio
        for stage in self.stages:
            h = stage(h)
        return self.out(F.relu(h))


class Decoder(nn.Module):
    """``[B, code_dim, N] -> [B, 1, N * hop]``: a projection, then residual stack + Up per
    stride (coarse first), then the projection to audio."""

    def __init__(self, strides: Sequence[int], width: int, depth: int, growth: int,
                 code_dim: int):
        super().__init__()
        self.inp = nn.Conv1d(code_dim, width, PROJECTION_KERNEL, padding=PROJECTION_KERNEL // 2)
        self.stages = nn.ModuleList(
            nn.Sequential(ResidualStack(width, depth, growth, reverse=True), up(width, s))
            for s in reversed(tuple(strides)))
        self.out = nn.Conv1d(width, 1, PROJECTION_KERNEL, padding=PROJECTION_KERNEL // 2)

    def forward(self, q: torch.Tensor) -> torch.Tensor:
        h = self.inp(q)
        for stage in self.stages:
            h = stage(h)
        return self.out(F.relu(h))


class VQVAELevel(nn.Module):
    """One level: encoder, EMA codebook, decoder (an autoencoder of its own)."""

    def __init__(self, config: VQVAEConfig, level: int):
        super().__init__()
        strides = config.level_strides(level)
        width, depth = config.channels[level], config.residual_depth[level]
        self.hop = math.prod(strides)
        self.encoder = Encoder(strides, width, depth, config.dilation_growth, config.code_dim)
        self.quantizer = VectorQuantizer(config.codebook_size, config.code_dim,
                                         commitment=config.beta, ema_decay=config.ema_decay,
                                         restart_threshold=config.restart_threshold)
        self.decoder = Decoder(strides, width, depth, config.dilation_growth, config.code_dim)

    def forward(self, audio: torch.Tensor) -> tuple[torch.Tensor, VQOutput]:
        out = self.quantizer(self.encoder(audio))
        return self.decoder(out.quantized), out


# --------------------------------------------------------------------------- the model
class VQVAE(nn.Module):
    """The hierarchical VQ-VAE (see the module docstring): ``levels[l]`` is level ``l``'s
    encoder, codebook and decoder."""

    def __init__(self, config: VQVAEConfig):
        super().__init__()
        check_config_size(config, "vqvae")
        self.config = config
        self.levels = nn.ModuleList(VQVAELevel(config, level)
                                    for level in range(config.num_levels))
        if config.train_level is not None:
            # Levels this run does not train are never run by autoencode: frozen, so that
            # neither the optimiser nor DistributedDataParallel waits for their gradients.
            for index, level in enumerate(self.levels):
                if index != config.train_level:
                    level.requires_grad_(False)

    @property
    def num_levels(self) -> int:
        return len(self.levels)

    @property
    def hop_lengths(self) -> tuple[int, ...]:
        """Samples per code of each level, finest first."""
        return tuple(level.hop for level in self.levels)

    # ------------------------------------------------------------------ checks
    def _level(self, level: Any) -> VQVAELevel:
        if isinstance(level, bool) or not isinstance(level, int) \
                or not 0 <= level < self.num_levels:
            raise UsageError(f"VQVAE has levels 0..{self.num_levels - 1}, got level {level!r}")
        return self.levels[level]

    def _check_audio(self, audio: Any, hop: int, what: str) -> None:
        if not torch.is_tensor(audio) or not audio.is_floating_point() or audio.dim() != 3 \
                or audio.shape[1] != 1 or audio.shape[0] == 0 or audio.shape[-1] == 0 \
                or audio.shape[-1] % hop:
            shape = list(audio.shape) if torch.is_tensor(audio) else type(audio).__name__
            raise UsageError(f"VQVAE {what} takes float audio [batch, 1, T] with T a positive "
                             f"multiple of {hop}, got {shape}")

    # ------------------------------------------------------------------ protocol
    def autoencode_level(self, audio: torch.Tensor, level: int) -> tuple[torch.Tensor, VQOutput]:
        """Level ``level``'s pass: ``audio`` ``[B, 1, T]`` -> (reconstruction ``[B, 1, T]``,
        its :class:`VQOutput`); in training mode the level's codebook updates."""
        module = self._level(level)
        self._check_audio(audio, module.hop, f"level {level}")
        return module(audio)

    def autoencode(self, audio: torch.Tensor):
        """The training pass (:class:`~wavegen.train.tasks.vq.VQTask`).

        With ``config.train_level`` None: ``([reconstruction per level], [VQOutput per
        level])``, levels finest first (``T`` a multiple of every hop). With a level ``l``:
        ``(level l's reconstruction, [its VQOutput])``.
        """
        if self.config.train_level is not None:
            reconstruction, out = self.autoencode_level(audio, self.config.train_level)
            return reconstruction, [out]
        self._check_audio(audio, math.lcm(*self.hop_lengths), "autoencode (every level)")
        passes = [level(audio) for level in self.levels]
        return [p[0] for p in passes], [p[1] for p in passes]

    def encode(self, audio: torch.Tensor, level: int = 0) -> torch.Tensor:
        """``audio`` ``[B, 1, T]`` -> codes ``[B, T / h_level]`` int64 (no state changes)."""
        module = self._level(level)
        self._check_audio(audio, module.hop, f"encode (level {level})")
        with torch.no_grad():
            return module.quantizer.encode(module.encoder(audio))

    def decode(self, codes: torch.Tensor, level: int = 0) -> torch.Tensor:
        """Codes ``[B, N]`` of ``level`` -> audio ``[B, 1, N * h_level]``."""
        module = self._level(level)
        if not torch.is_tensor(codes) or codes.dim() != 2 or codes.shape[0] == 0 \
                or codes.shape[1] == 0:
            shape = list(codes.shape) if torch.is_tensor(codes) else type(codes).__name__
            raise UsageError(f"VQVAE decode takes integer codes [batch, frames], got {shape}")
        q = module.quantizer.decode(codes)  # checks the dtype and the code range
        return module.decoder(q.to(module.decoder.inp.weight.dtype))


__all__ = ["VQVAE", "VQVAEConfig", "VQVAELevel", "VQVAE_PRESETS", "Decoder", "Encoder",
           "ResidualStack", "derive_strides"]
