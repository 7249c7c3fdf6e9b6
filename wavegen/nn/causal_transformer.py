"""A causal transformer over discrete tokens with a key/value cache for sampling.

The alternative network of the priors over codes (:mod:`wavegen.models.prior`): where a
WaveNet sees a fixed receptive field through dilated convolutions, this sees every earlier
position of its context (up to ``context`` positions) through causal self-attention
(pre-norm blocks, GPT-2 style: ``x + attn(LN(x))``, ``x + MLP(LN(x))``, learned absolute
positions, a final LayerNorm and a linear head).

Inputs and conditioning follow :class:`~wavegen.models.wavenet.WaveNet`'s interface, so a
prior can run either: ``forward(inputs [B, T], local [B, C, T / hop], global_cond=None,
unconditional=False) -> logits [B, classes, T]`` where ``local`` frames are repeated
``hop`` times (strictly local, like the WaveNet's ``repeat`` upsampler), projected and added
to the token embeddings; ``cond_dropout`` zeroes an example's conditioning during
training, and ``unconditional=True`` zeroes it at sampling (classifier-free guidance).

Sampling: :meth:`CausalTransformer.start` prepares the conditioning of ``length`` positions
(at most ``context``) and, given a prompt, fills the key/value cache with one teacher-forced
pass; :meth:`CausalTransformer.step` embeds one token, attends over the cache and appends
its keys and values: O(t) per step instead of the O(t^2) of re-running the prefix. Positions
are absolute within a call, so a clip longer than the context is sampled in windows whose
prompt is the previous codes (:func:`wavegen.hierarchy.sample_windowed`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from wavegen.errors import UsageError
from wavegen.nn.upsample import check_local_features


@dataclass
class TransformerState:
    """Incremental state: per-layer keys / values ``[B, heads, t, head_dim]``, the
    conditioning of every position ``[B, T, width]`` (or None) and the next position."""

    keys: list[torch.Tensor]
    values: list[torch.Tensor]
    conditioning: torch.Tensor | None
    time: int
    length: int = 0


class _Block(nn.Module):
    """Pre-norm causal self-attention + MLP (4x width, GELU)."""

    def __init__(self, width: int, heads: int, dropout: float):
        super().__init__()
        self.heads = heads
        self.norm1 = nn.LayerNorm(width)
        self.qkv = nn.Linear(width, 3 * width)
        self.proj = nn.Linear(width, width)
        self.norm2 = nn.LayerNorm(width)
        self.mlp = nn.Sequential(nn.Linear(width, 4 * width), nn.GELU(), nn.Linear(4 * width, width))
        self.dropout = dropout

    def _split(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        b, t, w = x.shape
        q, k, v = self.qkv(self.norm1(x)).split(w, dim=-1)
        shape = (b, t, self.heads, w // self.heads)
        return (q.reshape(shape).transpose(1, 2), k.reshape(shape).transpose(1, 2),
                v.reshape(shape).transpose(1, 2))

    def _finish(self, x: torch.Tensor, attended: torch.Tensor) -> torch.Tensor:
        b, _, t, _ = attended.shape
        x = x + F.dropout(self.proj(attended.transpose(1, 2).reshape(b, t, -1)),
                          self.dropout, self.training)
        return x + F.dropout(self.mlp(self.norm2(x)), self.dropout, self.training)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``[B, T, W]`` -> (output, keys, values) with causal attention over ``T``."""
        q, k, v = self._split(x)
        attended = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        return self._finish(x, attended), k, v

    def step(self, x: torch.Tensor, keys: torch.Tensor, values: torch.Tensor
             ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """One position ``[B, 1, W]`` attending over the cache plus itself."""
        q, k, v = self._split(x)
        keys, values = torch.cat([keys, k], dim=2), torch.cat([values, v], dim=2)
        attended = F.scaled_dot_product_attention(q, keys, values)
        return self._finish(x, attended), keys, values


class CausalTransformer(nn.Module):
    """Tokens ``[B, T]`` in ``[0, classes)`` -> logits ``[B, classes, T]`` (module docstring).

    Args:
        classes: vocabulary (input tokens and output classes).
        width, layers, heads: model width (a multiple of ``heads``), blocks, attention heads.
        context: most positions in one pass or sampling call.
        local_channels: channels of the frame-rate conditioning (0 = none), ``hop``
            positions per frame.
        dropout: dropout in the blocks (training only).
        cond_dropout: probability, per training example, of dropping the conditioning.
    """

    def __init__(self, classes: int, width: int, layers: int, heads: int, context: int,
                 local_channels: int = 0, hop: int = 1, dropout: float = 0.0,
                 cond_dropout: float = 0.0):
        super().__init__()
        if width % heads:
            raise UsageError(f"width ({width}) must be a multiple of heads ({heads})")
        self.classes, self.context, self.hop = classes, context, hop
        self.local_channels = local_channels
        self.cond_dropout = cond_dropout
        self.embedding = nn.Embedding(classes, width)
        self.positions = nn.Parameter(torch.zeros(context, width))
        nn.init.normal_(self.positions, std=0.02)
        self.local_projection = nn.Linear(local_channels, width) if local_channels else None
        self.blocks = nn.ModuleList(_Block(width, heads, dropout) for _ in range(layers))
        self.norm = nn.LayerNorm(width)
        self.output = nn.Linear(width, classes)

    @property
    def receptive_field(self) -> int:
        """Positions one prediction can see: the whole context."""
        return self.context

    def _conditioning(self, length: int, batch: int, local: torch.Tensor | None,
                      drop: torch.Tensor | None) -> torch.Tensor | None:
        """``[B, length, width]`` conditioning added to the embeddings (None without)."""
        if self.local_projection is None:
            if local is not None:
                raise UsageError("this transformer takes no local conditioning")
            return None
        check_local_features(local, self.local_channels, self.hop, length, owner="transformer",
                             unit="positions")
        features = self.local_projection(
            local.repeat_interleave(self.hop, dim=-1).transpose(1, 2).to(self.positions.dtype))
        if drop is not None:
            features = features * (~drop).to(features.dtype)[:, None, None]
        return features

    def _drop(self, batch: int, device, unconditional: bool) -> torch.Tensor | None:
        if unconditional:
            return torch.ones(batch, dtype=torch.bool, device=device)
        if self.training and self.cond_dropout > 0 and self.local_projection is not None:
            return torch.rand(batch, device=device) < self.cond_dropout
        return None

    def _check_length(self, length: int) -> None:
        if length > self.context:
            raise UsageError(f"{length} positions exceed the transformer's context "
                             f"({self.context}); sample longer clips in windows")

    def forward(self, inputs: torch.Tensor, local: torch.Tensor | None = None,
                global_cond: torch.Tensor | None = None,
                unconditional: bool = False) -> torch.Tensor:
        """Logits ``[B, classes, T]``; position ``t`` sees inputs ``<= t``."""
        if global_cond is not None:
            raise UsageError("this transformer takes no global conditioning")
        batch, length = inputs.shape
        self._check_length(length)
        x = self.embedding(inputs) + self.positions[:length]
        cond = self._conditioning(length, batch, local,
                                  self._drop(batch, inputs.device, unconditional))
        if cond is not None:
            x = x + cond
        for block in self.blocks:
            x, _, _ = block(x)
        return self.output(self.norm(x)).transpose(1, 2)

    def start(self, batch: int, length: int, local: torch.Tensor | None = None,
              global_cond: torch.Tensor | None = None, unconditional: bool = False,
              prompt: torch.Tensor | None = None, first: int = 0) -> TransformerState:
        """State for ``length`` positions (prompt included); with ``prompt`` ``[B, P]`` the
        cache is filled by one pass over ``shift_right(prompt, first)`` and the first
        :meth:`step` takes ``prompt[:, -1]``."""
        if global_cond is not None:
            raise UsageError("this transformer takes no global conditioning")
        self._check_length(length)
        device = self.positions.device
        cond = self._conditioning(length, batch, local, self._drop(batch, device, unconditional))
        width = self.positions.shape[1]
        heads = self.blocks[0].heads if self.blocks else 1
        empty = torch.zeros(batch, heads, 0, width // heads, device=device,
                            dtype=self.positions.dtype)
        keys, values = [empty] * len(self.blocks), [empty] * len(self.blocks)
        if prompt is None or prompt.shape[-1] == 0:
            return TransformerState(keys, values, cond, 0, length)
        if prompt.dim() != 2 or prompt.shape[0] != batch:
            raise UsageError(f"prompt must be [{batch}, P] tokens, got {tuple(prompt.shape)}")
        p = prompt.shape[-1]
        if p > length:
            raise UsageError(f"the prompt ({p} positions) is longer than the {length} asked for")
        inputs = torch.cat([torch.full_like(prompt[:, :1], first), prompt[:, :-1]], dim=1)
        x = self.embedding(inputs) + self.positions[:p]
        if cond is not None:
            x = x + cond[:, :p]
        for index, block in enumerate(self.blocks):
            x, keys[index], values[index] = block(x)
        return TransformerState(keys, values, cond, p, length)

    def step(self, previous: torch.Tensor, state: TransformerState) -> torch.Tensor:
        """Logits ``[B, classes]`` of the position after ``previous`` ``[B]``."""
        t = state.time
        if t >= state.length:
            raise UsageError(f"position {t} is past the {state.length} positions this state "
                             f"was started for")
        x = (self.embedding(previous) + self.positions[t])[:, None]
        if state.conditioning is not None:
            x = x + state.conditioning[:, t:t + 1]
        for index, block in enumerate(self.blocks):
            x, state.keys[index], state.values[index] = block.step(
                x, state.keys[index], state.values[index])
        state.time += 1
        return self.output(self.norm(x[:, 0]))


def transformer_parameters(classes: int, width: int, layers: int, context: int,
                           local_channels: int) -> int:
    """Parameters of a :class:`CausalTransformer` (exact)."""
    block = (2 * 2 * width + 3 * width * (width + 1) + width * (width + 1)
             + 4 * width * (width + 1) + width * (4 * width + 1))
    total = classes * width + context * width + layers * block + 2 * width
    total += classes * (width + 1)
    if local_channels:
        total += (local_channels + 1) * width
    return total


__all__ = ["CausalTransformer", "TransformerState", "transformer_parameters"]
