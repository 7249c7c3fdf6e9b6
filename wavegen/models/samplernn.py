"""SampleRNN (Mehri et al. 2017): a hierarchy of RNNs at frame rates over a sample-level MLP.

::

    tier 0 (top, frame F_0):  previous F_0 samples -> Linear -> + cond_0 -> RNN -> Linear
                              -> F_0 / F_1 vectors per frame (learned upsampling)
    tier t (frame F_t):       previous F_t samples -> Linear -> + upsampled tier t-1 + cond_t
                              -> RNN -> Linear -> F_t / F_{t+1} vectors per frame
    ...                       (the last RNN tier emits F_last vectors: one per sample)
    sample-level MLP:         embeddings of the previous F_last samples, concatenated -> Linear
                              + the last tier's vector for this sample -> ReLU
                              -> (mlp_layers - 1) x [Linear -> ReLU] -> Linear -> logits

``frame_sizes = (F_0, ..., F_last)`` are the frame sizes of the RNN tiers, top tier first,
each a multiple of the next: the paper's 2-tier model is ``(16,)``, its 3-tier model
``(8, 2)``. The RNN tiers read samples as real values (the class index mapped linearly onto
[-1, 1]: for mu-law the companded level, for linear quantisation the waveform level); the
MLP reads them through a learned embedding, as in the paper.

Time alignment (the :class:`~wavegen.models.protocols.SampleLevelModel` contract):
``forward(inputs)`` with ``inputs = shift_right(targets, silence)`` returns at position
``n`` the distribution of ``targets[n]`` given ``targets[:n]``. Tier ``t``'s frame ``k``
covers positions ``[k F_t, (k + 1) F_t)`` and is computed from the samples
``[(k - 1) F_t, k F_t)`` only (silence before the start of the stream), and its RNN state
from the frames before it; the MLP at ``n`` reads samples ``[n - F_last, n)``. So position
``n`` depends on samples ``< n`` and nothing later (tested).

Conditioning (all optional): ``local`` frame-rate features ``[B, local_channels, frames]``
(mel bands, piano-roll rows) at ``hop_length`` samples per frame, a multiple of ``F_0``, so
every frame of every tier lies inside one conditioning frame: each tier adds a linear
projection of *that* frame (no interpolation) to its RNN input. ``global_cond`` ``[B]``
class indices select a learned vector per tier from an embedding with one extra "no label"
row. ``unconditional=True`` (classifier-free guidance) and ``cond_dropout`` (training) drop
both: local features become zeros, the class the "no label" row.

Stateful passes (truncated BPTT, :meth:`SampleRNN.tbptt_loss`). A state is a plain dict of
tensors (checkpoint-friendly; :func:`state_to_tensors` / :func:`state_from_tensors` give
flat copies)::

    "history"  [B, F_0]                    int64: the last F_0 samples of the stream
    "h"        [tiers, rnn_layers, B, dim]  every tier's RNN hidden state
    "c"        [tiers, rnn_layers, B, dim]  every tier's LSTM cell state (LSTM only)

``forward(..., state=s, return_state=True)`` continues exactly where the pass that returned
``s`` stopped (its ``history`` holds the last F_0 *inputs* consumed), so consecutive chunks
equal one pass over the whole sequence. :meth:`SampleRNN.tbptt_loss` takes waveform chunks
instead, and its ``history`` holds the last F_0 *targets* (one sample further along the
stream: the first input of the next chunk); keep the two kinds of state apart. Chunks are
multiples of ``F_0`` samples (and of ``hop_length`` with local conditioning).

Sizes. The presets follow the authors' best published runs (their repository's README:
GRU, dim 1024, 256 linear quantisation levels, embedding 256, learned initial states):
``two_tier`` is frame size 16 with 3 GRU layers, ``three_tier`` frame sizes 8 and 2 with
1 GRU layer per tier. Left out: the weight normalisation those runs put on every linear
layer, and skip connections between stacked RNN layers (off in those runs). The MLP has a
ReLU after its first layer too (the authors' 3-tier code adds the tier vector and goes on
linearly), and the RNN tiers read values in [-1, 1] (theirs: [-2, 2]).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from wavegen.errors import ConfigError, UsageError
from wavegen.models.size import SizeEstimate, check_config_size, layer
from wavegen.models.wavenet import shift_right
from wavegen.nn.distributions import Categorical
from wavegen.nn.upsample import check_local_features
from wavegen.utils.config import DictConfig, from_preset

RNN_TYPES = ("gru", "lstm")
QUANTIZATIONS = ("mulaw", "linear")
#: Gates per RNN layer (weight blocks of ``dim x dim``).
_GATES = {"gru": 3, "lstm": 4}


@dataclass(frozen=True)
class LinearCategorical(Categorical):
    """``num_classes``-way softmax over *linearly* quantised levels (SampleRNN's
    ``quantization="linear"``): class ``q`` stands for the value ``2 q / (K - 1) - 1``, a
    waveform is rounded to the nearest level. Otherwise a :class:`Categorical` (same
    logits, draws and filters)."""

    def targets_from_waveform(self, wave: torch.Tensor) -> torch.Tensor:
        level = (wave.clamp(-1.0, 1.0) + 1.0) * ((self.num_classes - 1) / 2.0)
        return torch.round(level).long().clamp(0, self.num_classes - 1)

    def waveform_from_samples(self, samples: torch.Tensor) -> torch.Tensor:
        if samples.is_floating_point():
            raise UsageError("LinearCategorical.waveform_from_samples expects class indices")
        return samples.float() * (2.0 / (self.num_classes - 1)) - 1.0


@dataclass
class SampleRNNConfig(DictConfig):
    """Hyperparameters of a SampleRNN. Defaults: the paper's 3-tier model with mu-law classes.

    Attributes:
        frame_sizes: frame sizes of the RNN tiers, top tier first, each a multiple of the
            next; the MLP reads the last ``frame_sizes[-1]`` samples.
        dim: width of every RNN, of the upsampled vectors and of the MLP.
        rnn_type: ``"gru"`` or ``"lstm"``.
        rnn_layers: stacked RNN layers per tier.
        embedding_dim: size of the MLP's per-sample class embedding.
        mlp_layers: hidden layers of the sample-level MLP (each ``dim`` wide, ReLU).
        quantization: ``"mulaw"`` or ``"linear"`` classes.
        num_classes: quantisation levels (a power of two; mu = classes - 1 for mu-law).
        learn_initial_state: learn every tier's initial RNN state (else zeros).
        local_channels: channels of the frame-rate local conditioning (0 = none).
        hop_length: audio samples per conditioning frame, a multiple of ``frame_sizes[0]``
            (required with local conditioning; 0 otherwise).
        global_classes: > 0 for a global class label (speaker, instrument, ...).
        cond_dropout: probability, per training example, of dropping all conditioning
            (needed for classifier-free guidance).
        sample_rate: audio sample rate in Hz (stored for bundles and sampling).
    """

    frame_sizes: tuple[int, ...] = (8, 2)
    dim: int = 1024
    rnn_type: str = "gru"
    rnn_layers: int = 1
    embedding_dim: int = 256
    mlp_layers: int = 3
    quantization: str = "mulaw"
    num_classes: int = 256
    learn_initial_state: bool = True
    local_channels: int = 0
    hop_length: int = 0
    global_classes: int = 0
    cond_dropout: float = 0.0
    sample_rate: int = 16000

    def __post_init__(self) -> None:
        def bad(message: str) -> ConfigError:
            return ConfigError(f"SampleRNNConfig: {message}")

        self.frame_sizes = tuple(self.frame_sizes)
        if not self.frame_sizes or any(isinstance(f, bool) or not isinstance(f, int) or f < 1
                                       for f in self.frame_sizes):
            raise bad(f"frame_sizes must be one or more whole numbers >= 1, got "
                      f"{list(self.frame_sizes)}")
        for upper, lower in zip(self.frame_sizes, self.frame_sizes[1:]):
            if upper % lower:
                raise bad(f"each frame size must be a multiple of the next, got {upper} over "
                          f"{lower} in {list(self.frame_sizes)}")
        for key in ("dim", "rnn_layers", "embedding_dim", "mlp_layers", "sample_rate"):
            if getattr(self, key) < 1:
                raise bad(f"{key} must be >= 1, got {getattr(self, key)}")
        if self.rnn_type not in RNN_TYPES:
            raise bad(f"rnn_type must be one of {', '.join(RNN_TYPES)}, got {self.rnn_type!r}")
        if self.quantization not in QUANTIZATIONS:
            raise bad(f"quantization must be one of {', '.join(QUANTIZATIONS)}, got "
                      f"{self.quantization!r}")
        if self.num_classes < 2 or self.num_classes & (self.num_classes - 1):
            raise bad(f"num_classes must be a power of two >= 2, got {self.num_classes}")
        for key in ("local_channels", "hop_length", "global_classes"):
            if getattr(self, key) < 0:
                raise bad(f"{key} must be >= 0, got {getattr(self, key)}")
        if not 0 <= self.cond_dropout < 1:
            raise bad(f"cond_dropout must be in [0, 1), got {self.cond_dropout}")
        if self.local_channels > 0:
            if self.hop_length < 1:
                raise bad("local_channels needs hop_length (samples per conditioning frame)")
            if self.hop_length % self.frame_sizes[0]:
                raise bad(f"hop_length {self.hop_length} must be a multiple of the top frame "
                          f"size {self.frame_sizes[0]} (every top frame inside one "
                          f"conditioning frame)")

    # ------------------------------------------------------------------ structure
    @property
    def num_tiers(self) -> int:
        """RNN tiers (the sample-level MLP not counted)."""
        return len(self.frame_sizes)

    @property
    def top_frame(self) -> int:
        """``frame_sizes[0]``: sequence lengths and chunks are multiples of it."""
        return self.frame_sizes[0]

    @property
    def ratios(self) -> tuple[int, ...]:
        """Vectors each tier's frame emits for the tier below (the MLP: one per sample)."""
        return tuple(f // g for f, g in zip(self.frame_sizes, self.frame_sizes[1:] + (1,)))

    @property
    def conditioning_channels(self) -> int:
        """Model config contract (:mod:`wavegen.models.protocols`): the local channels."""
        return self.local_channels

    @property
    def has_local(self) -> bool:
        return self.local_channels > 0

    @property
    def has_global(self) -> bool:
        return self.global_classes > 0

    # ------------------------------------------------------------------ size
    def estimate_size(self) -> SizeEstimate:
        """Parameters and weight layers of the :class:`SampleRNN` this config builds
        (exact), from the hyperparameters alone."""
        d, gates = self.dim, _GATES.get(self.rnn_type, 3)
        size = layer(self.num_classes * self.embedding_dim)
        for frame, ratio in zip(self.frame_sizes, self.ratios):
            size += layer(frame * d)                                     # frame input
            size += self.rnn_layers * layer(2 * gates * d * d, 2 * gates * d)
            size += layer(d * d * ratio, d * ratio)                      # upsampling
        if self.learn_initial_state:
            states = 2 if self.rnn_type == "lstm" else 1
            size += SizeEstimate(states * self.num_tiers * self.rnn_layers * d, 0)
        if self.has_local:
            size += layer(self.local_channels * self.num_tiers * d)
        if self.has_global:
            size += layer((self.global_classes + 1) * self.num_tiers * d)
        size += layer(self.frame_sizes[-1] * self.embedding_dim * d)     # MLP input
        size += (self.mlp_layers - 1) * layer(d * d, d)
        return size + layer(d * self.num_classes, self.num_classes)

    @classmethod
    def preset(cls, name: str, **overrides: Any) -> "SampleRNNConfig":
        """A named configuration (``two_tier``, ``three_tier``) with fields overridden."""
        return from_preset(cls, SAMPLERNN_PRESETS, name, overrides, "SampleRNN")


#: The authors' best published 2-tier and 3-tier runs (module docstring).
SAMPLERNN_PRESETS: dict[str, SampleRNNConfig] = {
    "two_tier": SampleRNNConfig(frame_sizes=(16,), dim=1024, rnn_type="gru", rnn_layers=3,
                                embedding_dim=256, quantization="linear", num_classes=256,
                                learn_initial_state=True),
    "three_tier": SampleRNNConfig(frame_sizes=(8, 2), dim=1024, rnn_type="gru", rnn_layers=1,
                                  embedding_dim=256, quantization="linear", num_classes=256,
                                  learn_initial_state=True),
}


def make_head(config: SampleRNNConfig) -> Categorical:
    """The categorical head of ``config``'s quantisation."""
    if config.quantization == "linear":
        return LinearCategorical(config.num_classes)
    return Categorical(config.num_classes)


def state_to_tensors(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """A stateful pass's state as a flat dict of detached tensors (for a checkpoint)."""
    return {key: value.detach().clone() for key, value in state.items()}


def state_from_tensors(tensors: dict[str, torch.Tensor],
                       device: torch.device | str | None = None) -> dict[str, torch.Tensor]:
    """The inverse of :func:`state_to_tensors`, moved to ``device``."""
    return {key: value.to(device) for key, value in tensors.items()}


class _Tier(nn.Module):
    """One frame-level tier: frame input projection, RNN, learned upsampling."""

    def __init__(self, frame: int, ratio: int, config: SampleRNNConfig):
        super().__init__()
        d = config.dim
        self.frame, self.ratio = frame, ratio
        self.input = nn.Linear(frame, d, bias=False)
        rnn = nn.GRU if config.rnn_type == "gru" else nn.LSTM
        self.rnn = rnn(d, d, num_layers=config.rnn_layers, batch_first=True)
        self.upsample = nn.Linear(d, d * ratio)


@dataclass
class SampleRNNStepState:
    """Everything incremental sampling carries from one step to the next.

    Attributes:
        hidden: per tier, the RNN state ``[rnn_layers, B, dim]`` (a pair for LSTMs).
        history: ``[B, F_0]`` the last ``F_0`` inputs consumed.
        upsampled: per tier, the vectors of its current frame ``[B, ratio, dim]``.
        local: per tier, projected local conditioning ``[B, frames, dim]`` (or None).
        global_: per tier, the global vector ``[B, dim]`` (or None).
        time: index of the next output sample.
        length: samples the conditioning covers (steps beyond it are refused).
    """

    hidden: list[Any]
    history: torch.Tensor
    upsampled: list[torch.Tensor | None]
    local: list[torch.Tensor] | None
    global_: list[torch.Tensor] | None
    time: int
    length: int


@dataclass
class SampleRNNTierWeights:
    """One frame-level tier's weights as its incremental step uses them (the module's own
    tensors, detached, not copies).

    Attributes:
        frame, ratio: the tier's frame size and the vectors each frame emits.
        input: ``[dim, frame]`` the frame input projection (no bias); column ``i`` multiplies
            the real value of the ``i``-th oldest of the frame's ``frame`` samples.
        w_ih, w_hh: per RNN layer ``[gates * dim, dim]`` (PyTorch's gate order: GRU r, z,
            n; LSTM i, f, g, o); b_ih, b_hh: per layer ``[gates * dim]``.
        upsample_w, upsample_b: ``[ratio * dim, dim]``, ``[ratio * dim]``; rows
            ``j * dim .. (j + 1) * dim`` give the frame's ``j``-th vector.
    """

    frame: int
    ratio: int
    input: torch.Tensor
    w_ih: list[torch.Tensor]
    w_hh: list[torch.Tensor]
    b_ih: list[torch.Tensor]
    b_hh: list[torch.Tensor]
    upsample_w: torch.Tensor
    upsample_b: torch.Tensor


@dataclass
class SampleRNNWeights:
    """A SampleRNN's weights in the layout of its incremental step
    (:meth:`SampleRNN.step_weights`), for sampling kernels to repack.

    Attributes:
        tiers: per RNN tier, top first.
        embedding: ``[num_classes, embedding_dim]`` the MLP's sample embedding.
        mlp_input: ``[dim, embedding_dim, F_last]`` the MLP's first layer (no bias); tap
            ``i`` multiplies the embedding of the ``i``-th oldest of the last ``F_last``
            samples.
        mlp_hidden: per hidden layer ``(weight [dim, dim], bias [dim])``.
        output_w, output_b: ``[num_classes, dim]``, ``[num_classes]``.
    """

    tiers: list[SampleRNNTierWeights]
    embedding: torch.Tensor
    mlp_input: torch.Tensor
    mlp_hidden: list[tuple[torch.Tensor, torch.Tensor]]
    output_w: torch.Tensor
    output_b: torch.Tensor


class SampleRNN(nn.Module):
    """SampleRNN over mu-law or linear classes; see the module docstring."""

    def __init__(self, config: SampleRNNConfig):
        super().__init__()
        check_config_size(config, "SampleRNN")
        self.config = c = config
        self.head = make_head(c)
        self.tiers = nn.ModuleList(_Tier(f, r, c) for f, r in zip(c.frame_sizes, c.ratios))
        if c.learn_initial_state:
            states = 2 if c.rnn_type == "lstm" else 1
            self.initial_hidden = nn.Parameter(
                torch.zeros(states, c.num_tiers, c.rnn_layers, c.dim))
        else:
            self.initial_hidden = None
        if c.has_local:
            self.local_projection = nn.Linear(c.local_channels, c.num_tiers * c.dim, bias=False)
        if c.has_global:
            self.global_embedding = nn.Embedding(c.global_classes + 1, c.num_tiers * c.dim)
        self.embedding = nn.Embedding(c.num_classes, c.embedding_dim)
        # A convolution over the embedded samples is the Linear over each window of the
        # last F_last embeddings, concatenated, without materialising the windows.
        self.mlp_input = nn.Conv1d(c.embedding_dim, c.dim, c.frame_sizes[-1], bias=False)
        self.mlp_hidden = nn.ModuleList(nn.Linear(c.dim, c.dim) for _ in range(c.mlp_layers - 1))
        self.output = nn.Linear(c.dim, c.num_classes)

    # ----------------------------------------------------------------- contract helpers
    @property
    def receptive_field(self) -> int:
        """The samples one step reads at once: the top tier's frame ``F_0``. The recurrent
        state reaches back to the start of the stream, so the dependence is unbounded
        (the naive generator therefore runs full passes)."""
        return self.config.top_frame

    def silence_input(self) -> int:
        """The class that stands for 'no previous sample' (the middle class)."""
        return self.config.num_classes // 2

    def targets_from_waveform(self, wave: torch.Tensor) -> torch.Tensor:
        """``[B, 1, T]`` or ``[B, T]`` waveform -> ``[B, T]`` class indices."""
        if wave.dim() == 3:
            if wave.shape[1] != 1:
                raise UsageError(f"SampleRNN models mono audio, got {wave.shape[1]} channels")
            wave = wave[:, 0]
        if wave.dim() != 2:
            raise UsageError(f"waveform must be [batch, 1, samples] or [batch, samples], got "
                             f"{tuple(wave.shape)}")
        return self.head.targets_from_waveform(wave)

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())

    def _values(self, classes: torch.Tensor) -> torch.Tensor:
        """Class indices -> the real values the RNN tiers read, in [-1, 1]."""
        scale = 2.0 / (self.config.num_classes - 1)
        return classes.to(self.embedding.weight.dtype) * scale - 1.0

    # ----------------------------------------------------------------- checks
    def _check_inputs(self, inputs: torch.Tensor) -> tuple[int, int]:
        top = self.config.top_frame
        if inputs.dim() != 2 or inputs.is_floating_point() or inputs.is_complex():
            raise UsageError(f"SampleRNN inputs must be [batch, samples] class indices, got "
                             f"{inputs.dtype} {tuple(inputs.shape)}")
        batch, length = inputs.shape
        if length < 1 or length % top:
            raise UsageError(f"SampleRNN sequences must be a positive multiple of the top frame "
                             f"size {top} samples, got {length}")
        return batch, length

    def _pad_length(self, inputs: torch.Tensor, local: torch.Tensor | None) -> int | None:
        """``T`` when ``inputs`` ``[B, T]`` are class indices that :meth:`forward` pads to the
        next whole top frame (``T`` not a multiple of it, and the local features, if any,
        cover exactly the padded length); None otherwise (nothing to pad, or
        :meth:`_check_inputs` refuses)."""
        if inputs.dim() != 2 or inputs.is_floating_point() or inputs.is_complex():
            return None
        top = self.config.top_frame
        length = inputs.shape[-1]
        if length < 1 or length % top == 0:
            return None
        padded = length + (-length % top)
        if local is not None and not (self.config.has_local and local.dim() == 3
                                      and local.shape[-1] * self.config.hop_length == padded):
            return None
        return length

    def _check_state(self, state: Any, batch: int) -> None:
        c = self.config
        if not isinstance(state, dict):
            raise UsageError(f"SampleRNN state must be a dict of tensors (see initial_state), "
                             f"got {type(state).__name__}")
        keys = ("history", "h", "c") if c.rnn_type == "lstm" else ("history", "h")
        if set(state) != set(keys):
            raise UsageError(f"SampleRNN state must have the keys {', '.join(keys)}, got "
                             f"{', '.join(sorted(map(str, state))) or 'none'}")
        expected = {"history": (batch, c.top_frame),
                    "h": (c.num_tiers, c.rnn_layers, batch, c.dim),
                    "c": (c.num_tiers, c.rnn_layers, batch, c.dim)}
        for key in keys:
            if tuple(getattr(state[key], "shape", ())) != expected[key]:
                raise UsageError(f"SampleRNN state[{key!r}] must be "
                                 f"{list(expected[key])}, got {list(state[key].shape)}")

    # ----------------------------------------------------------------- conditioning
    def conditioning_vectors(self, length: int, batch: int, local: torch.Tensor | None = None,
                             global_cond: torch.Tensor | None = None,
                             drop: torch.Tensor | None = None
                             ) -> tuple[list[torch.Tensor] | None, list[torch.Tensor] | None]:
        """Checked conditioning, projected for every tier.

        Args:
            length: audio samples the conditioning must cover.
            local: ``[B, local_channels, frames]`` with ``frames * hop_length == length``.
            global_cond: ``[B]`` class indices.
            drop: ``[B]`` bool, True where conditioning is dropped (classifier-free
                guidance): local features count as zeros, the class as "no label".

        Returns:
            per tier, local ``[B, frames, dim]`` and global ``[B, dim]`` vectors (each
            list None if unused).
        """
        c = self.config
        locals_ = globals_ = None
        if c.has_local:
            check_local_features(local, c.local_channels, c.hop_length, length,
                                 owner="SampleRNN", batch=batch)
            projected = self.local_projection(local.to(self.embedding.weight.dtype).transpose(1, 2))
            if drop is not None:
                projected = projected * (~drop).to(projected.dtype)[:, None, None]
            locals_ = list(projected.split(c.dim, dim=-1))
        elif local is not None:
            raise UsageError("this SampleRNN has no local conditioning (local_channels = 0)")
        if c.has_global:
            if global_cond is None:
                raise UsageError("this SampleRNN is globally conditioned: pass global_cond")
            if global_cond.shape != (batch,) or global_cond.is_floating_point():
                raise UsageError(f"global_cond must be [{batch}] class indices, got "
                                 f"{global_cond.dtype} {tuple(global_cond.shape)}")
            labels = global_cond.long()
            if drop is not None:
                labels = torch.where(drop, torch.full_like(labels, c.global_classes), labels)
            globals_ = list(self.global_embedding(labels).split(c.dim, dim=-1))
        elif global_cond is not None:
            raise UsageError("this SampleRNN has no global conditioning (global_classes = 0)")
        return locals_, globals_

    def _frame_conditioning(self, locals_: list[torch.Tensor] | None,
                            globals_: list[torch.Tensor] | None,
                            length: int) -> list[torch.Tensor | None]:
        """Per tier, the conditioning of each of its frames in the first ``length`` samples:
        ``[B, length / F_t, dim]`` (``[B, 1, dim]`` for global conditioning alone)."""
        c = self.config
        out: list[torch.Tensor | None] = []
        for t, frame in enumerate(c.frame_sizes):
            cond = None
            if locals_ is not None:
                frames = -(-length // c.hop_length)
                cond = locals_[t][:, :frames].repeat_interleave(c.hop_length // frame, dim=1)
                cond = cond[:, :length // frame]
            if globals_ is not None:
                g = globals_[t][:, None]
                cond = g if cond is None else cond + g
            out.append(cond)
        return out

    def _training_drop(self, batch: int, device) -> torch.Tensor | None:
        p = self.config.cond_dropout
        if not (self.training and p > 0 and (self.config.has_local or self.config.has_global)):
            return None
        return torch.rand(batch, device=device) < p

    # ----------------------------------------------------------------- states
    def initial_state(self, batch: int, device: torch.device | str | None = None
                      ) -> dict[str, torch.Tensor]:
        """The state of a fresh stream: silent history, the (learned) initial RNN states.

        Layout in the module docstring. The learned initial states keep their gradient.
        """
        c = self.config
        device = self.embedding.weight.device if device is None else device
        dtype = self.embedding.weight.dtype
        state = {"history": torch.full((batch, c.top_frame), self.silence_input(),
                                       dtype=torch.long, device=device)}
        keys = ("h", "c") if c.rnn_type == "lstm" else ("h",)
        for index, key in enumerate(keys):
            shape = (c.num_tiers, c.rnn_layers, batch, c.dim)
            if self.initial_hidden is None:
                state[key] = torch.zeros(shape, dtype=dtype, device=device)
            else:
                init = self.initial_hidden[index].to(device)
                state[key] = init[:, :, None, :].expand(shape).contiguous()
        return state

    def reset_state(self, state: dict[str, torch.Tensor],
                    reset: torch.Tensor) -> dict[str, torch.Tensor]:
        """``state`` with the rows where ``reset`` ``[B]`` (bool) is True back at
        :meth:`initial_state` (a new stream starts there)."""
        batch = state["history"].shape[0]
        if reset.shape != (batch,) or reset.dtype != torch.bool:
            raise UsageError(f"reset must be a [{batch}] bool tensor, got {reset.dtype} "
                             f"{tuple(reset.shape)}")
        fresh = self.initial_state(batch, state["history"].device)
        reset = reset.to(state["history"].device)
        out = {"history": torch.where(reset[:, None], fresh["history"], state["history"])}
        for key in state:
            if key != "history":
                out[key] = torch.where(reset[None, None, :, None], fresh[key], state[key])
        return out

    def step_weights(self) -> SampleRNNWeights:
        """The weights in the layout of the incremental step (:class:`SampleRNNWeights`;
        detached views of the parameters, no copies)."""
        tiers = []
        for tier in self.tiers:
            rnn = tier.rnn
            layers = range(rnn.num_layers)
            tiers.append(SampleRNNTierWeights(
                frame=tier.frame, ratio=tier.ratio, input=tier.input.weight.detach(),
                w_ih=[getattr(rnn, f"weight_ih_l{k}").detach() for k in layers],
                w_hh=[getattr(rnn, f"weight_hh_l{k}").detach() for k in layers],
                b_ih=[getattr(rnn, f"bias_ih_l{k}").detach() for k in layers],
                b_hh=[getattr(rnn, f"bias_hh_l{k}").detach() for k in layers],
                upsample_w=tier.upsample.weight.detach(), upsample_b=tier.upsample.bias.detach()))
        return SampleRNNWeights(
            tiers=tiers, embedding=self.embedding.weight.detach(),
            mlp_input=self.mlp_input.weight.detach(),
            mlp_hidden=[(layer.weight.detach(), layer.bias.detach()) for layer in self.mlp_hidden],
            output_w=self.output.weight.detach(), output_b=self.output.bias.detach())

    def _split_hidden(self, state: dict[str, torch.Tensor]) -> list[Any]:
        if self.config.rnn_type == "lstm":
            return [(h, c) for h, c in zip(state["h"], state["c"])]
        return list(state["h"])

    def _join_hidden(self, hidden: list[Any]) -> dict[str, torch.Tensor]:
        if self.config.rnn_type == "lstm":
            return {"h": torch.stack([h for h, _ in hidden]),
                    "c": torch.stack([c for _, c in hidden])}
        return {"h": torch.stack(hidden)}

    # ----------------------------------------------------------------- full passes
    def _run(self, inputs: torch.Tensor, context: torch.Tensor, hidden: list[Any],
             conds: list[torch.Tensor | None]) -> tuple[torch.Tensor, list[Any]]:
        """The teacher-forced pass over one chunk.

        Args:
            inputs: ``[B, C]`` inputs (class indices), ``C`` a multiple of ``F_0``.
            context: ``[B, F_0 - 1]`` the inputs just before the chunk.
            hidden: per tier, the RNN state before the chunk.
            conds: per tier, frame conditioning (see :meth:`_frame_conditioning`) or None.

        Returns:
            head parameters ``[B, num_classes, C]`` and the RNN states after the chunk.
        """
        c = self.config
        batch, length = inputs.shape
        top = c.top_frame
        # seq[:, top - 1 + n] is the input at position n of the chunk.
        seq = torch.cat([context.to(inputs.dtype), inputs], dim=1)
        values = self._values(seq)
        upper, new_hidden = None, []
        for tier, h, cond in zip(self.tiers, hidden, conds):
            # Frame k of this tier reads the inputs at positions (k - 1) F + 1 .. k F, that
            # is the samples (k - 1) F .. k F - 1.
            start = top - tier.frame
            frames = values[:, start:start + length].reshape(batch, length // tier.frame,
                                                             tier.frame)
            x = tier.input(frames)
            if upper is not None:
                x = x + upper
            if cond is not None:
                x = x + cond
            out, h = tier.rnn(x, h)
            new_hidden.append(h)
            upper = tier.upsample(out).reshape(batch, -1, c.dim)
        # The MLP at position n reads the inputs n - F_last + 1 .. n.
        last = c.frame_sizes[-1]
        embedded = self.embedding(seq[:, top - last:]).transpose(1, 2)
        h = F.relu(self.mlp_input(embedded).transpose(1, 2) + upper)
        for hidden_layer in self.mlp_hidden:
            h = F.relu(hidden_layer(h))
        return self.output(h).transpose(1, 2), new_hidden

    def forward(self, inputs: torch.Tensor, local: torch.Tensor | None = None,
                global_cond: torch.Tensor | None = None, unconditional: bool = False,
                state: dict[str, torch.Tensor] | None = None, return_state: bool = False):
        """Head parameters for every position.

        Args:
            inputs: ``[B, T]`` previous samples (class indices; the targets shifted right
                by one). ``T`` a multiple of ``frame_sizes[0]``, except without
                ``return_state``: then any ``T >= 1`` is padded at the end with silence to
                the next multiple and the output cropped back to ``T`` (exact: no position
                reads a later input), provided the local features (if any) cover the
                padded length.
            local: ``[B, local_channels, frames]`` frame-rate features covering the
                (padded) inputs, ``frames * hop_length`` samples.
            global_cond: ``[B]`` class indices.
            unconditional: drop all conditioning (the unconditional branch of CFG).
            state: where the stream stands (``forward(..., return_state=True)`` of the
                previous chunk); None for a fresh stream (:meth:`initial_state`).
            return_state: also return the state after this chunk (its ``history``: the
                last ``F_0`` inputs).

        Returns:
            ``[B, num_classes, T]`` (and the new state when asked).
        """
        crop = self._pad_length(inputs, local) if not return_state else None
        if crop is not None:
            inputs = F.pad(inputs, (0, -crop % self.config.top_frame),
                           value=self.silence_input())
        batch, length = self._check_inputs(inputs)
        drop = torch.ones(batch, dtype=torch.bool, device=inputs.device) if unconditional \
            else self._training_drop(batch, inputs.device)
        locals_, globals_ = self.conditioning_vectors(length, batch, local, global_cond, drop)
        if state is None:
            state = self.initial_state(batch, inputs.device)
        else:
            self._check_state(state, batch)
        history = state["history"]
        params, hidden = self._run(inputs, history[:, 1:], self._split_hidden(state),
                                   self._frame_conditioning(locals_, globals_, length))
        if not return_state:
            return params if crop is None else params[..., :crop]
        top = self.config.top_frame
        new_history = torch.cat([history, inputs.to(history.dtype)], dim=1)[:, -top:]
        return params, {"history": new_history, **self._join_hidden(hidden)}

    def loss(self, wave: torch.Tensor, local: torch.Tensor | None = None,
             global_cond: torch.Tensor | None = None) -> torch.Tensor:
        """Teacher-forced negative log-likelihood in nats per sample (a scalar), from a
        fresh stream.

        ``wave`` ``[B, 1, T]`` or ``[B, T]`` in [-1, 1]. Without local conditioning ``T``
        may be any length: the inputs are padded with silence to a whole top frame, which
        changes no earlier position (causality), and the padding is not scored.
        """
        targets = self.targets_from_waveform(wave)
        length = targets.shape[-1]
        inputs = shift_right(targets, self.silence_input())
        pad = -length % self.config.top_frame
        if pad and local is None:
            inputs = F.pad(inputs, (0, pad), value=self.silence_input())
        params = self(inputs, local, global_cond)[..., :length]
        return -self.head.log_prob(params, targets).mean()

    def tbptt_loss(self, wave: torch.Tensor, local: torch.Tensor | None = None,
                   global_cond: torch.Tensor | None = None,
                   state: dict[str, torch.Tensor] | None = None,
                   reset: torch.Tensor | None = None
                   ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Truncated BPTT: the loss of one chunk of ``B`` streams, continuing ``state``.

        Args:
            wave: ``[B, 1, T]`` (or ``[B, T]``) the next ``T`` samples of every stream,
                ``T`` a multiple of ``frame_sizes[0]`` (and of ``hop_length`` with local
                conditioning).
            local: ``[B, local_channels, T / hop_length]``; global_cond: ``[B]``.
            state: the state this method returned for the previous chunk; None: every
                stream starts here.
            reset: ``[B]`` bool, True where a stream starts at this chunk (a file
                boundary): its row of ``state`` goes back to :meth:`initial_state`.

        Returns:
            (mean negative log-likelihood in nats per sample, the state after this chunk,
            detached; its ``history`` holds the last ``F_0`` targets). Gradients reach the
            learned initial states through the rows that start from them.
        """
        targets = self.targets_from_waveform(wave)
        batch, length = targets.shape
        top = self.config.top_frame
        if length < 1 or length % top:
            raise UsageError(f"SampleRNN chunks must be a positive multiple of the top frame "
                             f"size {top} samples, got {length}")
        if state is None:
            state = self.initial_state(batch, targets.device)
        else:
            self._check_state(state, batch)
            if reset is not None:
                state = self.reset_state(state, reset)
        history = state["history"]
        inputs = torch.cat([history[:, -1:], targets[:, :-1]], dim=1)
        drop = self._training_drop(batch, targets.device)
        locals_, globals_ = self.conditioning_vectors(length, batch, local, global_cond, drop)
        params, hidden = self._run(inputs, history[:, :-1], self._split_hidden(state),
                                   self._frame_conditioning(locals_, globals_, length))
        loss = -self.head.log_prob(params, targets).mean()
        new_state = {"history": torch.cat([history, targets], dim=1)[:, -top:],
                     **self._join_hidden(hidden)}
        return loss, {key: value.detach() for key, value in new_state.items()}

    # ----------------------------------------------------------------- incremental
    def start(self, batch: int, length: int, local: torch.Tensor | None = None,
              global_cond: torch.Tensor | None = None, unconditional: bool = False,
              prompt: torch.Tensor | None = None) -> SampleRNNStepState:
        """State for generating ``length`` samples (prompt included) one at a time.

        Args:
            batch: batch size.
            length: total samples, prompt included (must match local conditioning).
            unconditional: drop all conditioning (the unconditional branch of CFG).
            prompt: ``[B, P]`` class indices already known; the state is warmed up on them
                by one teacher-forced pass over their whole top frames and single steps
                over the rest, and the first :meth:`step` must then be given
                ``prompt[:, -1]``.
        """
        if length < 1:
            raise UsageError(f"length must be >= 1, got {length}")
        c = self.config
        device = self.embedding.weight.device
        drop = torch.ones(batch, dtype=torch.bool, device=device) if unconditional else None
        locals_, globals_ = self.conditioning_vectors(length, batch, local, global_cond, drop)
        fresh = self.initial_state(batch, device)
        state = SampleRNNStepState(self._split_hidden(fresh), fresh["history"],
                                   [None] * c.num_tiers, locals_, globals_, 0, length)
        if prompt is None or prompt.shape[-1] == 0:
            return state
        if prompt.dim() != 2 or prompt.shape[0] != batch or prompt.is_floating_point():
            raise UsageError(f"prompt must be [{batch}, P] class indices, got "
                             f"{prompt.dtype} {tuple(prompt.shape)}")
        known = prompt.shape[-1]
        if known > length:
            raise UsageError(f"the prompt ({known} samples) is longer than length ({length})")
        prompt = prompt.to(device)
        whole = known // c.top_frame * c.top_frame
        if whole:
            inputs = shift_right(prompt[:, :whole], self.silence_input())
            _, state.hidden = self._run(inputs, state.history[:, 1:], state.hidden,
                                        self._frame_conditioning(locals_, globals_, whole))
            state.history = torch.cat([state.history, inputs], dim=1)[:, -c.top_frame:]
            state.time = whole
        for n in range(whole, known):
            previous = prompt[:, n - 1] if n else state.history[:, -1]
            self.step(previous, state)
        return state

    def step(self, previous: torch.Tensor, state: SampleRNNStepState) -> torch.Tensor:
        """Head parameters ``[B, num_classes]`` for the sample after ``previous`` ``[B]``;
        the tiers whose frame starts at this sample step their RNN once."""
        c = self.config
        batch = state.history.shape[0]
        if previous.shape != (batch,) or previous.is_floating_point():
            raise UsageError(f"step expects the previous sample as [{batch}] class indices, "
                             f"got {previous.dtype} {tuple(previous.shape)}")
        n = state.time
        if n >= state.length:
            raise UsageError(f"step {n} is past the {state.length} samples given to start")
        history = torch.cat([state.history[:, 1:], previous.to(state.history)[:, None]], dim=1)
        state.history = history
        top = c.top_frame
        for t, tier in enumerate(self.tiers):
            if n % tier.frame:
                continue
            x = tier.input(self._values(history[:, top - tier.frame:]))
            if t > 0:
                x = x + state.upsampled[t - 1][:, (n % self.tiers[t - 1].frame) // tier.frame]
            if state.local is not None:
                x = x + state.local[t][:, n // c.hop_length]
            if state.global_ is not None:
                x = x + state.global_[t]
            out, state.hidden[t] = tier.rnn(x[:, None], state.hidden[t])
            state.upsampled[t] = tier.upsample(out[:, 0]).reshape(batch, tier.ratio, c.dim)
        last = c.frame_sizes[-1]
        embedded = self.embedding(history[:, top - last:]).transpose(1, 2)
        h = F.relu(self.mlp_input(embedded)[..., 0] + state.upsampled[-1][:, n % last])
        for hidden_layer in self.mlp_hidden:
            h = F.relu(hidden_layer(h))
        state.time += 1
        return self.output(h)


def describe(config: SampleRNNConfig) -> str:
    """One line: tiers, widths, quantisation and the top frame in milliseconds."""
    frames = " > ".join(map(str, config.frame_sizes))
    top_ms = 1000 * config.top_frame / config.sample_rate
    return (f"SampleRNN {config.num_tiers + 1}-tier frames {frames} > 1 "
            f"{config.rnn_type.upper()}x{config.rnn_layers} dim={config.dim} "
            f"mlp={config.mlp_layers} {config.num_classes} {config.quantization} classes "
            f"(top frame {top_ms:.2f} ms at {config.sample_rate} Hz)")


__all__ = ["QUANTIZATIONS", "RNN_TYPES", "SAMPLERNN_PRESETS", "LinearCategorical", "SampleRNN",
           "SampleRNNConfig", "SampleRNNStepState", "SampleRNNTierWeights", "SampleRNNWeights",
           "describe", "make_head", "state_from_tensors", "state_to_tensors"]
