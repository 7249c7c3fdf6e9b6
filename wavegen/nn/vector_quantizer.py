"""Vector-quantisation bottleneck with an EMA codebook and random restarts of dead codes.

The quantiser of VQ-VAE (van den Oord et al. 2017) in the form that trains reliably on
audio (Razavi et al. 2019; Dieleman et al. 2018; Dhariwal et al. 2020, Jukebox):

* Each encoder vector ``z_t`` is replaced by its nearest codebook vector ``e_k``
  (squared Euclidean distance, computed as ``|z|^2 - 2 z.e + |e|^2`` in float32).
* Gradients pass the bottleneck with the straight-through estimator,
  ``quantized = z + sg(q - z)``: the decoder's gradient reaches the encoder unchanged.
* The encoder is pulled toward its codes by the commitment loss
  ``beta * mean((z - sg(q))^2)`` (element-wise mean). VQ-VAE uses ``beta = 0.25``; Jukebox
  uses 0.02, the default here.
* The codebook has no gradient and no codebook loss term: it is a running k-means. In
  training mode every call updates, with decay ``gamma``, the per-code counts
  ``N_k <- gamma N_k + (1 - gamma) n_k`` and vector sums ``m_k <- gamma m_k + (1 - gamma)
  sum_{z -> k} z``, then sets ``e_k = m_k / N~_k`` with Laplace-smoothed counts
  ``N~_k = (N_k + eps) / (sum_j N_j + K eps) * sum_j N_j`` (so a nearly unused code does not
  divide by ~0).
* The codebook is initialised from randomly chosen encoder vectors of the first training
  batch (Jukebox), and a code whose EMA count falls below ``restart_threshold`` is "dead" and
  restarted to a random encoder vector of the current batch (Jukebox's random restarts), so
  the whole codebook stays in use.

All codebook state lives in buffers: float32 ``codebook``, ``cluster_size`` and
``embed_sum``, the ``initialized`` flag, and the ``seed`` and ``updates`` counter of the
private random generator that picks initial codes and restart candidates. So it is saved in
model bundles, and a resumed run neither re-initialises nor loses its statistics, and makes
the same random choices as an uninterrupted one. Under ``torch.distributed`` the per-batch counts and
sums are summed over ranks before the EMA update and restart candidates come from rank 0,
so every rank keeps the same codebook (the one a single process would keep on the global
batch, restarts aside).
"""

from __future__ import annotations

from typing import NamedTuple

import torch
import torch.distributed as dist
from torch import nn

from wavegen.audio.losses import autocast_disabled
from wavegen.errors import ConfigError, UsageError


class VQOutput(NamedTuple):
    """What :class:`VectorQuantizer` returns for ``z`` ``[B, D, T]``.

    Attributes:
        quantized: ``[B, D, T]`` in ``z``'s dtype, the nearest codes with straight-through
            gradients to ``z``.
        codes: ``[B, T]`` int64 code indices.
        commitment_loss: float32 scalar ``beta * mean((z - sg(q))^2)``; its gradient reaches
            only ``z``.
        perplexity: float32 scalar ``exp(entropy)`` of this call's code histogram (between 1
            and ``codebook_size``; counted on this process's batch).
        used_fraction: float32 scalar, the fraction of codes used at least once in this call.
        restarted: int64 scalar, the number of dead codes restarted by this call (0 in eval
            mode).
    """

    quantized: torch.Tensor
    codes: torch.Tensor
    commitment_loss: torch.Tensor
    perplexity: torch.Tensor
    used_fraction: torch.Tensor
    restarted: torch.Tensor

    def metrics(self) -> dict[str, float]:
        """``{"perplexity", "used", "restarted"}`` as Python floats (for logging)."""
        return {"perplexity": float(self.perplexity), "used": float(self.used_fraction),
                "restarted": float(self.restarted)}


def _distributed() -> bool:
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


class VectorQuantizer(nn.Module):
    """Nearest-neighbour quantiser of ``[B, D, T]`` vectors with an EMA-learned codebook.

    Args:
        codebook_size: number of codes ``K``.
        dim: vector size ``D`` (the channel axis of the input).
        commitment: ``beta`` of the commitment loss (Jukebox 0.02; VQ-VAE 0.25).
        ema_decay: decay ``gamma`` of the count and sum averages (0.99 in VQ-VAE-2 / Jukebox).
        epsilon: Laplace smoothing of the counts before normalising.
        restart_threshold: a code whose EMA count is below this after an update is dead and
            restarted (0 disables restarts). New and restarted codes start at the count
            ``max(1, restart_threshold)`` (Jukebox starts them at 1), so a code survives while
            it is used about ``restart_threshold`` times per batch (summed over ranks).
        init_from_batch: initialise the codebook from random encoder vectors of the first
            training batch; otherwise it starts as standard-normal vectors.

    ``forward(z)`` returns a :class:`VQOutput`; in training mode it also updates the
    codebook. ``encode``/``decode`` map between vectors and codes without touching any state.
    Under ``torch.distributed`` a training-mode call is collective (every rank must make it);
    eval mode, ``encode`` and ``decode`` never communicate.
    """

    def __init__(self, codebook_size: int, dim: int, commitment: float = 0.02,
                 ema_decay: float = 0.99, epsilon: float = 1e-5, restart_threshold: float = 1.0,
                 init_from_batch: bool = True):
        super().__init__()
        if codebook_size < 1 or dim < 1:
            raise ConfigError(f"vector quantiser needs codebook_size >= 1 and dim >= 1, got "
                              f"{codebook_size} and {dim}")
        if not 0.0 <= ema_decay < 1.0:
            raise ConfigError(f"vector quantiser ema_decay must be in [0, 1), got {ema_decay}")
        if commitment < 0 or epsilon <= 0 or restart_threshold < 0:
            raise ConfigError("vector quantiser needs commitment >= 0, epsilon > 0 and "
                              "restart_threshold >= 0")
        self.codebook_size = int(codebook_size)
        self.dim = int(dim)
        self.commitment = float(commitment)
        self.ema_decay = float(ema_decay)
        self.epsilon = float(epsilon)
        self.restart_threshold = float(restart_threshold)
        codebook = torch.randn(codebook_size, dim)
        self.register_buffer("codebook", codebook)
        self.register_buffer("cluster_size", torch.full((codebook_size,), self.start_count))
        self.register_buffer("embed_sum", codebook * self.start_count)
        self.register_buffer("initialized", torch.tensor(not init_from_batch))
        # Random choices come from a private generator seeded by (seed, updates), so a
        # resumed run repeats them whatever else draws from torch's global generator.
        self.register_buffer("seed", torch.randint(0, 2**62, ()))
        self.register_buffer("updates", torch.zeros((), dtype=torch.int64))

    def extra_repr(self) -> str:
        return (f"codebook_size={self.codebook_size}, dim={self.dim}, "
                f"commitment={self.commitment}, ema_decay={self.ema_decay}, "
                f"restart_threshold={self.restart_threshold}")

    # ------------------------------------------------------------------ helpers
    def _flatten(self, z: torch.Tensor) -> torch.Tensor:
        """``[B, D, T]`` -> float32 ``[B * T, D]`` (detached)."""
        if z.dim() != 3 or z.shape[1] != self.dim or z.shape[0] * z.shape[2] == 0:
            raise UsageError(f"vector quantiser expects a non-empty [batch, {self.dim}, time] "
                             f"tensor, got {tuple(z.shape)}")
        return z.detach().float().transpose(1, 2).reshape(-1, self.dim)

    def _nearest(self, flat: torch.Tensor) -> torch.Tensor:
        """Index of the nearest code for each row of float32 ``[N, D]`` -> ``[N]`` int64."""
        codebook = self.codebook.float()
        distances = (flat.pow(2).sum(1, keepdim=True) - 2.0 * flat @ codebook.t()
                     + codebook.pow(2).sum(1))
        return distances.argmin(1)

    def _generator(self, device: torch.device, seed: int, updates: int) -> torch.Generator:
        """The generator of training update number ``updates``: a pure function of the
        (checkpointed) ``seed`` and ``updates`` buffers."""
        generator = torch.Generator(device=device)
        generator.manual_seed((seed * 1_000_003 + updates) % 2**63)
        return generator

    def _candidates(self, flat: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """``K`` random rows of ``flat`` ``[N, D]`` (rank 0's on every rank) -> ``[K, D]``.

        Distinct rows when the batch has at least ``K`` vectors, drawn with replacement
        otherwise.
        """
        count = flat.shape[0]
        if count >= self.codebook_size:
            index = torch.randperm(count, generator=generator,
                                   device=flat.device)[:self.codebook_size]
        else:
            index = torch.randint(count, (self.codebook_size,), generator=generator,
                                  device=flat.device)
        candidates = flat[index].contiguous()
        if _distributed():
            dist.broadcast(candidates, src=0)
        return candidates

    @property
    def start_count(self) -> float:
        """EMA count given to a new code: ``max(1, restart_threshold)``. A code starts alive
        and stays so while it is used at least ``restart_threshold`` times per batch."""
        return max(1.0, self.restart_threshold)

    @torch.no_grad()
    def set_codebook(self, vectors: torch.Tensor) -> None:
        """Start the codebook at ``vectors`` ``[K, D]`` (counts :attr:`start_count`, sums
        matching) and mark it initialised, so the first training batch leaves it as it is."""
        if tuple(vectors.shape) != (self.codebook_size, self.dim):
            raise UsageError(f"codebook must be [{self.codebook_size}, {self.dim}], "
                             f"got {tuple(vectors.shape)}")
        self.codebook.copy_(vectors)
        self.embed_sum.copy_(vectors * self.start_count)
        self.cluster_size.fill_(self.start_count)
        self.initialized.fill_(True)

    @torch.no_grad()
    def _ema_update(self, flat: torch.Tensor, codes: torch.Tensor, counts: torch.Tensor,
                    generator: torch.Generator) -> torch.Tensor:
        """One EMA step on this batch (summed over ranks), then restarts; returns their number."""
        sums = torch.zeros_like(self.embed_sum, dtype=torch.float32).index_add_(0, codes, flat)
        stats = torch.cat([counts[:, None], sums], 1)
        if _distributed():
            dist.all_reduce(stats)
        counts, sums = stats[:, 0], stats[:, 1:]
        keep = self.ema_decay
        self.cluster_size.mul_(keep).add_(counts, alpha=1.0 - keep)
        self.embed_sum.mul_(keep).add_(sums, alpha=1.0 - keep)
        total = self.cluster_size.sum()
        smoothed = ((self.cluster_size + self.epsilon)
                    / (total + self.codebook_size * self.epsilon) * total)
        self.codebook.copy_(self.embed_sum / smoothed[:, None])
        if self.restart_threshold <= 0:
            return torch.zeros((), dtype=torch.int64, device=flat.device)
        dead = self.cluster_size < self.restart_threshold
        candidates = self._candidates(flat, generator)
        # A restarted code starts like a new one, with a sum that keeps it at its vector.
        self.codebook.copy_(torch.where(dead[:, None], candidates, self.codebook))
        self.embed_sum.copy_(torch.where(dead[:, None], candidates * self.start_count,
                                         self.embed_sum))
        self.cluster_size.masked_fill_(dead, self.start_count)
        return dead.sum()

    # ------------------------------------------------------------------ public API
    def forward(self, z: torch.Tensor) -> VQOutput:
        """Quantise ``z`` ``[B, D, T]`` (and, in training mode, update the codebook)."""
        with autocast_disabled(z):
            flat = self._flatten(z)
            batch, _, length = z.shape
            if self.training:
                # One host sync for the three scalars (they live on the model's device).
                initialized, seed, updates = torch.stack(
                    [self.initialized.long(), self.seed, self.updates]).tolist()
                generator = self._generator(flat.device, seed, updates)
                if not initialized:
                    self.set_codebook(self._candidates(flat, generator))
            codes = self._nearest(flat)
            # Indexing copies, so the EMA update below does not change these vectors.
            chosen = self.codebook.float()[codes]
            counts = torch.bincount(codes, minlength=self.codebook_size).float()
            probabilities = counts / codes.numel()
            entropy = -(probabilities * probabilities.clamp_min(1e-30).log()).sum()
            used = (counts > 0).float().mean()
            if self.training:
                restarted = self._ema_update(flat, codes, counts, generator)
                self.updates.add_(1)
            else:
                restarted = torch.zeros((), dtype=torch.int64, device=z.device)
            z32 = z.float()
            q = chosen.view(batch, length, self.dim).transpose(1, 2)
            commitment_loss = self.commitment * (z32 - q).pow(2).mean()
            quantized = (z32 + (q - z32).detach()).to(z.dtype)
        return VQOutput(quantized, codes.view(batch, length), commitment_loss, entropy.exp(),
                        used, restarted)

    @torch.no_grad()
    def encode(self, z: torch.Tensor) -> torch.Tensor:
        """Nearest codes of ``z`` ``[B, D, T]`` -> ``[B, T]`` int64 (no state changes)."""
        with autocast_disabled(z):
            return self._nearest(self._flatten(z)).view(z.shape[0], z.shape[2])

    def decode(self, codes: torch.Tensor) -> torch.Tensor:
        """Codebook vectors of ``codes`` ``[B, T]`` -> float32 ``[B, D, T]``."""
        if codes.dim() != 2 or codes.dtype not in (torch.int64, torch.int32):
            raise UsageError(f"codes must be an integer [batch, time] tensor, got "
                             f"{tuple(codes.shape)} {codes.dtype}")
        if codes.numel() and (int(codes.min()) < 0 or int(codes.max()) >= self.codebook_size):
            raise UsageError(f"codes must lie in [0, {self.codebook_size}), got "
                             f"[{int(codes.min())}, {int(codes.max())}]")
        return self.codebook.float()[codes.long()].transpose(1, 2)
