"""Which dataset items each rank loads at each step: deterministic, shardable, resumable.

Epoch ``e`` visits the items in the order of a permutation seeded by ``(seed, e)``. Each
optimiser step takes the next ``batch_size`` items; they are split into ``accumulate``
micro-batches and each micro-batch into ``world_size`` equal shards, one per rank. So one
process and N DDP ranks see exactly the same global batch, and a resumed run can skip
straight to ``(epoch, step_in_epoch)``. A partial last batch of an epoch is dropped.

:class:`StreamPlan` is the plan of truncated-BPTT training over
:class:`~wavegen.data.streams.StreamChunks`: the permutation is over streams, and the
``batch_size`` lanes of a group of streams read their consecutive chunks on consecutive steps.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from wavegen.errors import ConfigError


@dataclass(frozen=True)
class DataPlan:
    dataset_size: int
    batch_size: int
    accumulate: int = 1
    world_size: int = 1
    rank: int = 0
    seed: int = 0

    def __post_init__(self) -> None:
        micro = self.batch_size // self.accumulate
        if self.batch_size % self.accumulate or micro % self.world_size:
            raise ConfigError(f"batch_size {self.batch_size} does not split into {self.accumulate} "
                              f"micro-batches x {self.world_size} ranks")
        if self.steps_per_epoch < 1:
            raise ConfigError(f"the dataset has {self.dataset_size} items, fewer than one batch "
                              f"({self.batch_size})")

    @property
    def steps_per_epoch(self) -> int:
        return self.dataset_size // self.batch_size

    @property
    def shard_size(self) -> int:
        return self.batch_size // self.accumulate // self.world_size

    def position(self, step: int) -> tuple[int, int]:
        """(epoch, step within the epoch) of global optimiser step ``step``."""
        return divmod(step, self.steps_per_epoch)

    def order(self, epoch: int) -> torch.Tensor:
        generator = torch.Generator().manual_seed(self.seed * 1_000_003 + epoch)
        return torch.randperm(self.dataset_size, generator=generator)

    def micro_batches(self, epoch: int, start: int = 0):
        """Yield this rank's index lists, ``accumulate`` per step, from step ``start`` on."""
        order = self.order(epoch).tolist()
        micro = self.batch_size // self.accumulate
        for step in range(start, self.steps_per_epoch):
            base = step * self.batch_size
            for m in range(self.accumulate):
                offset = base + m * micro + self.rank * self.shard_size
                yield order[offset:offset + self.shard_size]


@dataclass(frozen=True)
class StreamPlan(DataPlan):
    """Lanes that follow streams: step ``g K + j`` of an epoch gives lane ``b`` chunk ``j`` of
    stream ``order[g B + b]`` (item ``stream * K + j``), ``K = chunks``, ``B = batch_size``;
    micro-batches and ranks split the lanes as :class:`DataPlan` splits a batch, so every
    lane stays on one rank and one micro-batch position for the whole group.

    ``dataset_size`` counts chunk items (streams x chunks), as ``len(StreamChunks)``.
    """

    chunks: int = 1

    def __post_init__(self) -> None:
        if self.chunks < 1 or self.dataset_size % self.chunks:
            raise ConfigError(f"{self.dataset_size} items are not whole streams of "
                              f"{self.chunks} chunks")
        if self.streams < self.batch_size:
            raise ConfigError(f"the dataset has {self.streams} streams, fewer than one batch "
                              f"({self.batch_size} lanes)")
        super().__post_init__()

    @property
    def streams(self) -> int:
        return self.dataset_size // self.chunks

    @property
    def steps_per_epoch(self) -> int:
        return (self.streams // self.batch_size) * self.chunks

    def order(self, epoch: int) -> torch.Tensor:
        generator = torch.Generator().manual_seed(self.seed * 1_000_003 + epoch)
        return torch.randperm(self.streams, generator=generator)

    def micro_batches(self, epoch: int, start: int = 0):
        order = self.order(epoch).tolist()
        micro = self.batch_size // self.accumulate
        for step in range(start, self.steps_per_epoch):
            group, chunk = divmod(step, self.chunks)
            lanes = order[group * self.batch_size:(group + 1) * self.batch_size]
            for m in range(self.accumulate):
                offset = m * micro + self.rank * self.shard_size
                yield [s * self.chunks + chunk for s in lanes[offset:offset + self.shard_size]]
