"""WaveNet (van den Oord et al. 2016) with the extensions of later vocoders.

* Dilated causal convolutions of any kernel size >= 2, dilations ``1, 2, ..., 2^(L-1)``
  repeated per stack; gated ``tanh(a) * sigmoid(b)`` units; residual and skip 1x1 convs;
  output stack ``ReLU -> 1x1 -> ReLU -> 1x1``.
* Output heads from :mod:`wavegen.nn.distributions`: 256-way mu-law categorical (any power of
  two), discretised mixture of logistics over 16-bit values, or a discretised Gaussian.
* Global conditioning (a class embedding or a vector) and local conditioning (a frame-rate
  sequence such as a log-mel or a piano roll, upsampled to the audio rate), both added to
  the two gate branches through learned projections; conditioning dropout for
  classifier-free guidance.
* Exact incremental inference: :meth:`WaveNet.start` / :meth:`WaveNet.step` run one sample
  at a time from per-layer ring buffers and give the same outputs as :meth:`forward`.

Time alignment: ``forward(inputs)`` returns at position ``t`` the distribution of the
*next* sample given ``inputs[..., :t + 1]``. :func:`shift_right` turns a target sequence
into those inputs (a silent first input), and :meth:`WaveNet.loss` does it for you.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterator

import torch
import torch.nn.functional as F
from torch import nn

from wavegen.errors import ConfigError, UsageError
from wavegen.models.size import SizeEstimate, approx, check_config_size, conv, layer
from wavegen.nn.causal_conv import ConvBuffer
from wavegen.nn.distributions import (Categorical, DiscretizedGaussian,
                                      DiscretizedMixtureOfLogistics, OutputDistribution)
from wavegen.nn.gated_residual import GatedResidualBlock
from wavegen.nn.upsample import (UPSAMPLE_MODES, ConditioningUpsampler, check_factors,
                                  check_local_features)
from wavegen.utils.config import from_dict, to_dict
from wavegen.utils.tensor_key import tensors_key

HEADS = ("categorical", "mol", "gaussian")
#: Most samples a WaveNet may look back: beyond it dilations overflow int64 offsets (from
#: layers = 64 on) and a single ring buffer would hold hours of audio per channel.
MAX_RECEPTIVE_FIELD = 2 ** 31


@dataclass
class WaveNetConfig:
    """Hyperparameters of a WaveNet. Defaults are the reference configuration.

    Attributes:
        layers: residual layers per stack; dilations run 1, 2, ..., 2^(layers-1).
        stacks: repetitions of the dilation cycle.
        kernel_size: taps of each dilated convolution (>= 2).
        residual_channels, gate_channels, skip_channels: widths of the residual stream,
            of each gate branch and of the skip stream.
        head: ``"categorical"`` (mu-law classes), ``"mol"`` (mixture of logistics over
            16-bit values) or ``"gaussian"`` (single discretised Gaussian).
        num_classes: classes of the categorical head (a power of two; mu = classes - 1).
        num_mixtures: components of the mixture-of-logistics head.
        dropout: dropout on the residual stream before each dilated conv (training only).
        global_classes: > 0 for a global class embedding (speaker, instrument, ...).
        global_dim: size of the global embedding or of an external global vector (> 0 with
            ``global_classes == 0`` means a vector is given directly).
        local_channels: channels of the frame-rate local conditioning (0 = none).
        hop_length: audio samples per conditioning frame (required with local conditioning).
        upsample_factors: per-stage factors whose product is ``hop_length``.
        upsample_mode: ``"transposed"``, ``"nearest"`` or ``"repeat"``
            (:mod:`wavegen.nn.upsample`).
        cond_dropout: probability, per training example, of dropping all conditioning
            (needed for classifier-free guidance).
        sample_rate: audio sample rate in Hz (stored for bundles and sampling).
    """

    layers: int = 10
    stacks: int = 2
    kernel_size: int = 2
    residual_channels: int = 64
    gate_channels: int = 128
    skip_channels: int = 256
    head: str = "categorical"
    num_classes: int = 256
    num_mixtures: int = 10
    dropout: float = 0.0
    global_classes: int = 0
    global_dim: int = 0
    local_channels: int = 0
    hop_length: int = 0
    upsample_factors: tuple[int, ...] = ()
    upsample_mode: str = "transposed"
    cond_dropout: float = 0.0
    sample_rate: int = 16000

    def __post_init__(self) -> None:
        self.upsample_factors = tuple(self.upsample_factors)
        for key in ("layers", "stacks", "residual_channels", "gate_channels", "skip_channels",
                    "sample_rate"):
            if getattr(self, key) < 1:
                raise ConfigError(f"WaveNetConfig.{key} must be >= 1, got {getattr(self, key)}")
        if self.kernel_size < 2:
            raise ConfigError(f"WaveNetConfig.kernel_size must be >= 2, got {self.kernel_size}")
        if self.head not in HEADS:
            raise ConfigError(f"WaveNetConfig.head must be one of {HEADS}, got {self.head!r}")
        if self.head == "categorical" and (self.num_classes < 2
                                           or self.num_classes & (self.num_classes - 1)):
            raise ConfigError(f"WaveNetConfig.num_classes must be a power of two, got {self.num_classes}")
        if not 0 <= self.dropout < 1 or not 0 <= self.cond_dropout < 1:
            raise ConfigError("WaveNetConfig.dropout and cond_dropout must be in [0, 1)")
        if self.global_classes > 0 and self.global_dim < 1:
            raise ConfigError("WaveNetConfig.global_classes needs global_dim >= 1 (embedding size)")
        if self.local_channels > 0:
            if self.hop_length < 1:
                raise ConfigError("WaveNetConfig.local_channels needs hop_length (samples per frame)")
            if self.upsample_mode not in UPSAMPLE_MODES:
                raise ConfigError(f"WaveNetConfig.upsample_mode must be one of {UPSAMPLE_MODES}")
            check_factors(self.upsample_factors, self.hop_length)
        self._check_receptive_field()

    def _check_receptive_field(self) -> None:
        """The receptive field ``1 + (k - 1) x stacks x (2^layers - 1)`` under
        :data:`MAX_RECEPTIVE_FIELD`, computed without building the list of dilations."""
        if self.layers < 64:
            field = 1 + (self.kernel_size - 1) * self.stacks * (2 ** self.layers - 1)
            if field <= MAX_RECEPTIVE_FIELD:
                return
            shown = f"a receptive field of {approx(field)} samples"
        else:
            shown = f"dilations up to 2^{self.layers - 1} samples"
        raise ConfigError(f"WaveNetConfig: layers={self.layers} x stacks={self.stacks} with "
                          f"kernel_size={self.kernel_size} gives {shown}, over the limit of "
                          f"2^31 = {approx(MAX_RECEPTIVE_FIELD)}")

    def estimate_size(self) -> SizeEstimate:
        """Parameters and weight layers of the :class:`WaveNet` this config builds (exact),
        computed from the hyperparameters alone."""
        r, g, s, count = (self.residual_channels, self.gate_channels, self.skip_channels,
                          self.num_layers)
        outputs = {"categorical": self.num_classes, "mol": 3 * self.num_mixtures}.get(self.head, 2)
        size = (layer(self.num_classes * r) if self.head == "categorical"
                else conv(1, r, 1))
        size += count * (conv(r, 2 * g, self.kernel_size) + conv(g, s, 1))
        size += max(count - 1, 0) * conv(g, r, 1)  # the last layer has no residual conv
        if self.global_classes > 0:
            size += layer(self.global_classes * self.global_dim)
        if self.has_global:
            size += layer(self.global_dim * count * 2 * g)
        if self.has_local:
            c = self.local_channels
            extra = 0 if self.upsample_mode == "transposed" else 1
            for factor in self.upsample_factors if self.upsample_mode != "repeat" else ():
                size += conv(c, c, 2 * factor + extra, groups=c)
            size += conv(c, count * 2 * g, 1, bias=False)
        return size + conv(s, s, 1) + conv(s, outputs, 1)

    @property
    def num_layers(self) -> int:
        return self.layers * self.stacks

    @property
    def dilations(self) -> list[int]:
        return [2 ** i for _ in range(self.stacks) for i in range(self.layers)]

    @property
    def receptive_field(self) -> int:
        """Samples the prediction of the next sample depends on: ``1 + sum (k - 1) d``."""
        return 1 + sum((self.kernel_size - 1) * d for d in self.dilations)

    @property
    def has_global(self) -> bool:
        return self.global_dim > 0

    @property
    def has_local(self) -> bool:
        return self.local_channels > 0

    @property
    def conditioning_channels(self) -> int:
        """Model config contract (:mod:`wavegen.models.protocols`): the local channels."""
        return self.local_channels

    def to_dict(self) -> dict[str, Any]:
        return to_dict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any], where: str = "WaveNetConfig") -> "WaveNetConfig":
        """From plain values; unknown keys and wrong types are ConfigErrors naming the key."""
        return from_dict(cls, data, where)


def make_head(config: WaveNetConfig) -> OutputDistribution:
    if config.head == "categorical":
        return Categorical(config.num_classes)
    if config.head == "mol":
        return DiscretizedMixtureOfLogistics(config.num_mixtures)
    return DiscretizedGaussian()


def shift_right(inputs: torch.Tensor, first: torch.Tensor | float | int) -> torch.Tensor:
    """``[B, T]`` -> ``[B, T]`` with ``first`` prepended and the last element dropped."""
    pad = torch.full_like(inputs[:, :1], first)
    return torch.cat([pad, inputs[:, :-1]], dim=1)


@dataclass
class WaveNetState:
    """Everything incremental sampling carries from one step to the next.

    Attributes:
        buffers: one ring buffer per residual layer.
        local: the upsampled local conditioning projected for every layer,
            :class:`ProjectedRows` (one contiguous ``[B, L * 2G]`` row per step, projected a
            chunk of steps at a time), or None without local conditioning.
        global_bias: global conditioning projected for every layer ``[B, L * 2G]``.
        time: index of the next output sample (into ``local``).
    """

    buffers: list[ConvBuffer]
    local: "ProjectedRows | None" = None
    global_bias: torch.Tensor | None = None
    time: int = 0



class ProjectedRows:
    """The projected local conditioning of every layer, a step's row at a time.

    Projecting the whole length at once costs ``L * 2G`` floats per sample and item (3.3 GB
    for 10 s of the reference configuration at 16 kHz, batch 1); these rows are projected a
    chunk of steps at a time (:data:`CHUNK_BYTES` of rows, at least :data:`MIN_STEPS`
    steps), time-major (``[B, steps, L * 2G]``, so a step reads one contiguous row), from
    the upsampled features ``[B, C, T]`` the state keeps.
    """

    #: Bytes of projected rows held at once.
    CHUNK_BYTES = 64 * 2 ** 20
    #: Fewest steps projected at once (large batches).
    MIN_STEPS = 64

    def __init__(self, projections: "LayerProjections", projection: nn.Module):
        self.projections, self.projection = projections, projection
        batch = projections.features.shape[0]
        width = projection.out_channels * projections.features.element_size()
        self.chunk = max(self.MIN_STEPS, self.CHUNK_BYTES // max(1, batch * width))
        self._start, self._rows = 0, None

    def row(self, t: int) -> torch.Tensor:
        """``[B, L * 2G]``: every layer's projected conditioning at step ``t``."""
        rows = self._rows
        if rows is None or not self._start <= t < self._start + rows.shape[1]:
            self._start = t
            window = self.projections.window(t, t + self.chunk)
            self._rows = rows = window.all_layers(self.projection).transpose(1, 2).contiguous()
        return rows[:, t - self._start]


@dataclass
class _LayerStepWeights:
    taps: list[torch.Tensor]          # per conv tap, oldest first: [R, 2G]
    conv_bias: torch.Tensor           # [2G]
    skip: torch.Tensor                # [G, S]
    residual: torch.Tensor | None     # [G, R] (None for the last layer)
    residual_bias: torch.Tensor | None


class StepWeights:
    """The residual layers' weights laid out for :meth:`WaveNet.step`: each conv tap's
    matrix and the 1x1 convs transposed and contiguous (``[in, out]``, what ``addmm``
    reads without a copy), and the skip convs' biases summed into one (the skip sum's
    starting value)."""

    def __init__(self, layers: nn.ModuleList, detach: bool = True):
        def prep(t: torch.Tensor) -> torch.Tensor:
            return t.detach() if detach else t

        self.layers = []
        skip_bias = 0
        for layer in layers:
            w = prep(layer.conv.weight)  # [2G, R, k]
            residual = layer.residual
            self.layers.append(_LayerStepWeights(
                taps=[w[:, :, j].t().contiguous() for j in range(w.shape[-1])],
                conv_bias=prep(layer.conv.bias),
                skip=prep(layer.skip.weight)[..., 0].t().contiguous(),
                residual=None if residual is None else prep(residual.weight)[..., 0].t().contiguous(),
                residual_bias=None if residual is None else prep(residual.bias)))
            skip_bias = skip_bias + prep(layer.skip.bias)
        self.skip_bias = skip_bias


class LayerProjections:
    """Upsampled local features ``[B, C, T]`` to be projected to each layer's gate input
    separately: layer ``l`` gets ``conv1x1(features, W_l) * keep`` with ``W_l`` its
    ``2G`` rows of ``local_projection`` and ``keep`` ``[B]`` (0 where classifier-free
    guidance drops the conditioning) or None."""

    def __init__(self, features: torch.Tensor, keep: torch.Tensor | None):
        self.features = features.contiguous()  # the upsampler's output is a sliced view
        self.keep = keep

    def layers(self, weight: torch.Tensor, width: int) -> Iterator[torch.Tensor]:
        """``[B, 2G, T]`` per layer from the all-layers weight ``[L * 2G, C, 1]``, each
        computed when it is asked for."""
        return (self._kept(F.conv1d(self.features, w)) for w in weight.split(width, dim=0))

    def window(self, start: int, stop: int) -> "LayerProjections":
        """The features of time steps ``[start, stop)`` (a view)."""
        return LayerProjections(self.features[..., start:stop], self.keep)

    def all_layers(self, projection: nn.Module) -> torch.Tensor:
        """``[B, L * 2G, T]``: every layer's at once (the incremental paths stream it)."""
        return self._kept(projection(self.features))

    def _kept(self, projected: torch.Tensor) -> torch.Tensor:
        return projected if self.keep is None else projected * self.keep[:, None, None]

class WaveNet(nn.Module):
    """WaveNet over waveforms; see the module docstring for the time alignment."""

    def __init__(self, config: WaveNetConfig):
        super().__init__()
        check_config_size(config, "WaveNet")
        self.config = config
        c = config
        self.head = make_head(c)
        if c.head == "categorical":
            self.input = nn.Embedding(c.num_classes, c.residual_channels)
        else:
            self.input = nn.Conv1d(1, c.residual_channels, 1)
        last = c.num_layers - 1
        # Causal blocks without their own projections: the conditioning of all layers is
        # projected at once (see conditioning()) and handed to each as its gate bias.
        self.layers = nn.ModuleList(
            GatedResidualBlock(c.residual_channels, c.gate_channels, c.skip_channels,
                               c.kernel_size, d, dropout=c.dropout, has_residual=i < last)
            for i, d in enumerate(c.dilations))
        cond_width = c.num_layers * 2 * c.gate_channels
        if c.global_classes > 0:
            self.global_embedding = nn.Embedding(c.global_classes, c.global_dim)
        if c.has_global:
            self.global_projection = nn.Linear(c.global_dim, cond_width, bias=False)
        if c.has_local:
            self.upsampler = ConditioningUpsampler(c.local_channels, c.upsample_factors,
                                                   c.hop_length, c.upsample_mode)
            self.local_projection = nn.Conv1d(c.local_channels, cond_width, 1, bias=False)
        self.output = nn.Sequential(nn.ReLU(), nn.Conv1d(c.skip_channels, c.skip_channels, 1),
                                    nn.ReLU(), nn.Conv1d(c.skip_channels, self.head.num_params, 1))

    # ----------------------------------------------------------------- helpers
    @property
    def receptive_field(self) -> int:
        return self.config.receptive_field

    def silence_input(self) -> int | float:
        """The input value that stands for 'no previous sample' (digital silence)."""
        return self.config.num_classes // 2 if self.config.head == "categorical" else 0.0

    def targets_from_waveform(self, wave: torch.Tensor) -> torch.Tensor:
        """``[B, 1, T]`` or ``[B, T]`` waveform -> ``[B, T]`` targets of the head."""
        if wave.dim() == 3:
            if wave.shape[1] != 1:
                raise UsageError(f"WaveNet models mono audio, got {wave.shape[1]} channels")
            wave = wave[:, 0]
        return self.head.targets_from_waveform(wave)

    def _embed(self, inputs: torch.Tensor) -> torch.Tensor:
        """``[B, T]`` previous samples (classes or values) -> ``[B, R, T]``."""
        if self.config.head == "categorical":
            # contiguous: a time-major [B, R, T] view sends every convolution after it down
            # oneDNN's slower strided path (and its backward through more copies).
            return self.input(inputs).transpose(1, 2).contiguous()
        return self.input(inputs.to(self.input.weight.dtype)[:, None, :])

    def _embed_step(self, inputs: torch.Tensor) -> torch.Tensor:
        """``[B]`` previous sample -> ``[B, R]``."""
        if self.config.head == "categorical":
            return self.input(inputs)
        return inputs.to(self.input.weight.dtype)[:, None] * self.input.weight[:, 0, 0] + self.input.bias

    def conditioning_features(self, length: int, batch: int, local: torch.Tensor | None = None,
                              global_cond: torch.Tensor | None = None
                              ) -> tuple[torch.Tensor | None, torch.Tensor | None]:
        """Checked conditioning before the per-layer local projection.

        Returns the upsampled local features ``[B, local_channels, length]`` (the 1x1
        projection to ``L * 2G`` channels is pointwise in time, so callers may apply
        ``local_projection`` to any slice) and the projected global conditioning
        ``[B, L * 2G]`` (each None if unused). Arguments as in :meth:`conditioning`.
        """
        c = self.config
        upsampled = global_out = None
        if c.has_local:
            check_local_features(local, c.local_channels, c.hop_length, length, owner="WaveNet")
            upsampled = self.upsampler(local.to(self.input.weight.dtype))
        elif local is not None:
            raise UsageError("this WaveNet has no local conditioning (local_channels = 0)")
        if c.has_global:
            if global_cond is None:
                raise UsageError("this WaveNet is globally conditioned: pass global_cond")
            if c.global_classes > 0:
                if global_cond.dim() != 1 or global_cond.is_floating_point():
                    raise UsageError("global_cond must be [batch] class indices")
                vector = self.global_embedding(global_cond)
            else:
                if global_cond.shape != (batch, c.global_dim):
                    raise UsageError(f"global_cond must be [batch, {c.global_dim}], "
                                     f"got {tuple(global_cond.shape)}")
                vector = global_cond.to(self.input.weight.dtype)
            global_out = self.global_projection(vector)
        elif global_cond is not None:
            raise UsageError("this WaveNet has no global conditioning (global_dim = 0)")
        return upsampled, global_out

    def conditioning(self, length: int, batch: int, local: torch.Tensor | None = None,
                     global_cond: torch.Tensor | None = None,
                     drop: torch.Tensor | None = None) -> tuple[torch.Tensor | None, torch.Tensor | None]:
        """Projected conditioning for all layers.

        Args:
            length: audio samples the conditioning must cover.
            local: ``[B, local_channels, frames]`` with ``frames * hop == length``.
            global_cond: ``[B]`` class indices, or ``[B, global_dim]`` vectors.
            drop: ``[B]`` bool, True where conditioning is dropped (classifier-free guidance).

        Returns:
            ``local`` ``[B, L * 2G, length]`` and ``global`` ``[B, L * 2G]`` (each None if unused).
        """
        projections, global_out = self._conditioning_parts(length, batch, local, global_cond,
                                                           drop)
        local_out = None if projections is None else projections.all_layers(
            self.local_projection)
        return local_out, global_out

    def _conditioning_parts(self, length, batch, local, global_cond, drop):
        """(:class:`LayerProjections` of the upsampled local features or None, the projected
        global conditioning ``[B, L * 2G]`` or None), both zero where ``drop``."""
        upsampled, global_out = self.conditioning_features(length, batch, local, global_cond)
        keep = None if drop is None else (~drop).to(self.input.weight.dtype)
        if keep is not None and global_out is not None:
            global_out = global_out * keep[:, None]
        return (None if upsampled is None else LayerProjections(upsampled, keep)), global_out

    def _layer_conds(self, local: "torch.Tensor | LayerProjections | None",
                     global_: torch.Tensor | None) -> Iterator[torch.Tensor | None]:
        """Per-layer conditioning ``[B, 2G, T]`` (or ``[B, 2G, 1]``), one entry per layer,
        each computed when the layer asks for it.

        ``local`` is the projection of all layers at once ``[B, L * 2G, T]`` (split here),
        or :class:`LayerProjections`: the upsampled features, projected layer by layer, so
        only one layer's projection is alive at a time (the reference configuration's are
        32 MiB each at batch 4 x 8192). One ``split`` rather than a slice per layer: each
        slice's backward would allocate and fill a zero tensor the size of all layers'
        conditioning (O(layers^2) traffic).
        """
        width = 2 * self.config.gate_channels
        count = self.config.num_layers
        if isinstance(local, LayerProjections):
            locals_ = local.layers(self.local_projection.weight, width)
        else:
            locals_ = local.split(width, dim=1) if local is not None else [None] * count
        globals_ = global_[..., None].split(width, dim=1) if global_ is not None else [None] * count
        for lc, gc in zip(locals_, globals_):
            yield gc if lc is None else (lc if gc is None else lc + gc)

    def _training_drop(self, batch: int, device) -> torch.Tensor | None:
        p = self.config.cond_dropout
        if not (self.training and p > 0 and (self.config.has_local or self.config.has_global)):
            return None
        return torch.rand(batch, device=device) < p

    # ----------------------------------------------------------------- full passes
    def forward(self, inputs: torch.Tensor, local: torch.Tensor | None = None,
                global_cond: torch.Tensor | None = None, unconditional: bool = False,
                return_layer_inputs: bool = False):
        """Head parameters for every position.

        Args:
            inputs: ``[B, T]`` previous samples (class indices, or values in [-1, 1]).
            local, global_cond: conditioning, see :meth:`conditioning`.
            unconditional: drop all conditioning (the unconditional branch of CFG).
            return_layer_inputs: also return each layer's input ``[B, R, T]`` (for priming).

        Returns:
            ``[B, num_params, T]`` (and the list of layer inputs when requested).
        """
        batch, length = inputs.shape
        drop = torch.ones(batch, dtype=torch.bool, device=inputs.device) if unconditional \
            else self._training_drop(batch, inputs.device)
        # Each layer projects the upsampled features itself: the same numbers as
        # conditioning()'s all-layers projection, without its [B, L * 2G, T] tensor (the
        # largest of a training step, and a split / cat of it in backward).
        local_c, global_c = self._conditioning_parts(length, batch, local, global_cond, drop)
        return self.run(inputs, local_c, global_c, return_layer_inputs)

    def run(self, inputs: torch.Tensor, local_c: "torch.Tensor | LayerProjections | None",
            global_c: torch.Tensor | None, return_layer_inputs: bool = False):
        """:meth:`forward` with conditioning already projected by :meth:`conditioning`.

        ``local_c`` ``[B, L * 2G, T]`` (or :class:`LayerProjections` of ``[B, C, T]``) must
        be aligned with ``inputs`` ``[B, T]``.
        """
        x = self._embed(inputs)
        skips = 0
        layer_inputs = []
        for layer, cond in zip(self.layers, self._layer_conds(local_c, global_c)):
            if return_layer_inputs:
                layer_inputs.append(x)
            x, skip = layer(x, gate_bias=cond)
            skips = skips + skip
        params = self.output(skips)
        return (params, layer_inputs) if return_layer_inputs else params

    def loss(self, wave: torch.Tensor, local: torch.Tensor | None = None,
             global_cond: torch.Tensor | None = None) -> torch.Tensor:
        """Teacher-forced negative log-likelihood in nats per sample (a scalar).

        ``wave`` ``[B, 1, T]`` or ``[B, T]`` in [-1, 1]; every sample is predicted from the
        ones before it (the first from silence).
        """
        targets = self.targets_from_waveform(wave)
        inputs = shift_right(targets, self.silence_input())
        params = self(inputs, local, global_cond)
        return -self.head.log_prob(params, targets).mean()

    # ----------------------------------------------------------------- incremental
    def start(self, batch: int, length: int, local: torch.Tensor | None = None,
              global_cond: torch.Tensor | None = None, unconditional: bool = False,
              prompt: torch.Tensor | None = None) -> WaveNetState:
        """State for generating ``length`` samples (prompt included) one at a time.

        Args:
            batch: batch size.
            length: total samples, prompt included (must match local conditioning).
            prompt: ``[B, P]`` head targets already known (e.g. from an audio prompt); the
                buffers are warmed up on them (teacher forcing) with one full forward pass,
                and the first :meth:`step` must then be given ``prompt[:, -1]``.
        """
        device, dtype = self.input.weight.device, self.input.weight.dtype
        drop = torch.ones(batch, dtype=torch.bool, device=device) if unconditional else None
        projections, global_c = self._conditioning_parts(length, batch, local, global_cond, drop)
        local_steps = None if projections is None else \
            ProjectedRows(projections, self.local_projection)
        if prompt is None or prompt.shape[-1] == 0:
            buffers = [layer.conv.init_buffer(batch, device, dtype) for layer in self.layers]
            return WaveNetState(buffers, local_steps, global_c, time=0)
        if prompt.shape[0] != batch:
            raise UsageError(f"prompt batch {prompt.shape[0]} != batch {batch}")
        inputs = shift_right(prompt, self.silence_input())
        prompt_local = None if projections is None else projections.window(0, prompt.shape[-1])
        _, layer_inputs = self.run(inputs, prompt_local, global_c, return_layer_inputs=True)
        buffers = [layer.conv.buffer_from_sequence(x)
                   for layer, x in zip(self.layers, layer_inputs)]
        # Positions 0..P-1 are consumed; the next step (position P) takes prompt[:, -1].
        return WaveNetState(buffers, local_steps, global_c, time=prompt.shape[-1])

    def step(self, previous: torch.Tensor, state: WaveNetState) -> torch.Tensor:
        """Head parameters ``[B, num_params]`` for the sample after ``previous`` ``[B]``.

        Each layer is :meth:`GatedResidualBlock.step <wavegen.nn.gated_residual.
        GatedResidualBlock.step>` written out with the weights of :class:`StepWeights`:
        the dilated conv as one ``addmm`` per tap (the current input and the ring buffer's
        older slots), the gate, then the skip sum and the residual update as ``addmm``
        into their accumulators. The same sums as the block's step in another order
        (float32 rounding apart); about a third of its operations per layer, which is
        what a sampling step on a CPU waits for.
        """
        x = self._embed_step(previous)
        t = state.time
        weights = self._step_weights()
        width, gates = 2 * self.config.gate_channels, self.config.gate_channels
        local_row = None if state.local is None else state.local.row(t)
        skips = None
        for i, (layer, w) in enumerate(zip(self.layers, weights.layers)):
            buffer = state.buffers[i]
            conv = layer.conv
            slots = conv.tap_indices(buffer.position)
            buffer.data[:, :, buffer.position] = x
            buffer.position = (buffer.position + 1) % conv.buffer_length
            h = torch.addmm(w.conv_bias, x, w.taps[-1])
            for slot, tap in zip(slots[:-1], w.taps[:-1]):
                h = h.addmm_(buffer.data[:, :, slot], tap)
            if local_row is not None:
                h = h.add_(local_row[:, i * width:(i + 1) * width])
            if state.global_bias is not None:
                h = h.add_(state.global_bias[:, i * width:(i + 1) * width])
            z = torch.tanh(h[:, :gates]) * torch.sigmoid(h[:, gates:])
            skips = torch.addmm(weights.skip_bias, z, w.skip) if skips is None \
                else skips.addmm_(z, w.skip)
            if w.residual is not None:
                x = torch.addmm(x, z, w.residual).add_(w.residual_bias)
        state.time += 1
        h = F.relu(skips)
        h = F.relu(F.linear(h, self.output[1].weight[..., 0], self.output[1].bias))
        return F.linear(h, self.output[3].weight[..., 0], self.output[3].bias)

    def _step_weights(self) -> "StepWeights":
        """:class:`StepWeights` of the current parameters (kept until one changes; built
        afresh, with gradients, while autograd is on)."""
        if torch.is_grad_enabled():
            return StepWeights(self.layers, detach=False)
        key = tensors_key(self.layers.parameters())
        cached = self.__dict__.get("_step_cache")
        if cached is None or cached[0] != key:
            cached = (key, StepWeights(self.layers, detach=True))
            self.__dict__["_step_cache"] = cached
        return cached[1]

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())


def describe(config: WaveNetConfig) -> str:
    """One line: layers, channels, head and receptive field in samples and milliseconds."""
    rf = config.receptive_field
    return (f"WaveNet {config.stacks}x{config.layers} k={config.kernel_size} "
            f"res={config.residual_channels} gate={config.gate_channels} skip={config.skip_channels} "
            f"head={config.head} receptive field {rf} samples "
            f"({1000 * rf / config.sample_rate:.1f} ms at {config.sample_rate} Hz)")


__all__ = ["ProjectedRows", "WaveNet", "WaveNetConfig", "WaveNetState", "shift_right",
           "make_head", "describe"]
