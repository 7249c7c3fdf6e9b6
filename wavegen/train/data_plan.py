"""Which dataset items each rank loads at each step: deterministic, shardable, resumable.

Epoch ``e`` visits the items in the order of a permutation seeded by ``(seed, e)``. Each
optimiser step takes the next ``batch_size`` items; they are split into ``accumulate``
micro-batches and each micro-batch into ``world_size`` equal shards, one per rank. So one
process and N DDP ranks see exactly the same global batch, and a resumed run can skip
straight to ``(epoch, step_in_epoch)``. A partial last batch of an epoch is dropped.
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
