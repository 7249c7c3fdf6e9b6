"""Several objectives: stepped in order on the same batches, each on its own schedule."""

from __future__ import annotations

import torch
from torch import nn

from wavegen.checkpoint import BundleInfo
from wavegen.models.wavenet import WaveNet, WaveNetConfig
from wavegen.train.config import TrainConfig
from wavegen.train.tasks.base import Objective, Task
from wavegen.train.trainer import Trainer


class Leader(nn.Module):
    """Pulls the (model's) parameter ``a`` toward 1."""

    def __init__(self, holder):
        super().__init__()
        self.holder = holder

    def forward(self, batch):
        a = self.holder.a
        return ((a - 1.0) ** 2).sum(), {"leader": float(a.detach().sum())}


class Follower(nn.Module):
    """Pulls ``b`` toward the current ``a`` and records the ``a`` it saw."""

    def __init__(self, holder, b):
        super().__init__()
        self.holder = holder
        self.b = b
        self.seen = []

    def forward(self, batch):
        self.seen.append(self.holder.a.detach().clone())
        return ((self.b - self.holder.a.detach()) ** 2).sum(), {}


class TwoPlayer(Task):
    def __init__(self, start: int, every: int):
        self.model = WaveNet(WaveNetConfig(layers=1, stacks=1, residual_channels=2,
                                           gate_channels=2, skip_channels=2, num_classes=4))
        self.model.a = nn.Parameter(torch.zeros(3))
        self.b = nn.Parameter(torch.zeros(3))
        self.leader = Leader(self.model)
        self.follower = Follower(self.model, self.b)
        self.start, self.every = start, every
        self.history = []

    def objectives(self):
        return {"leader": Objective(self.leader, [self.model.a]),
                "follower": Objective(self.follower, [self.b], self.start, self.every)}

    def validation_metrics(self, model, batch):
        return {"loss": 0.0}


class Batches(torch.utils.data.Dataset):
    def __len__(self):
        return 64

    def __getitem__(self, i):
        return {"audio": torch.zeros(1, 8)}


def run(task: TwoPlayer, steps: int, tmp_path) -> list[torch.Tensor]:
    """Take ``steps`` optimiser steps one by one; ``b`` after each."""
    config = TrainConfig(steps=steps, batch_size=2, lr=0.1, val_every=1000, checkpoint_every=1000)
    info = BundleInfo("wavenet", task.model.config, 8000)
    trainer = Trainer(task, Batches(), None, config, tmp_path, info, progress=False)
    bs = []
    for _ in range(steps):
        trainer._train_step(iter(torch.utils.data.DataLoader(Batches(), batch_size=2)))
        trainer.step += 1
        bs.append(task.b.detach().clone())
    return bs


def test_later_objectives_see_the_earlier_ones_updated(tmp_path):
    task = TwoPlayer(start=0, every=1)
    run(task, 1, tmp_path)
    # The follower's loss was computed after the leader's step: it saw a moved a.
    assert task.follower.seen and not torch.equal(task.follower.seen[0], torch.zeros(3))
    assert torch.equal(task.follower.seen[0], task.model.a.detach())


def test_update_schedule_start_and_every(tmp_path):
    task = TwoPlayer(start=2, every=2)
    bs = run(task, 6, tmp_path)
    changed = [step for step in range(6)
               if not torch.equal(bs[step], bs[step - 1] if step else torch.zeros(3))]
    assert changed == [2, 4]
    assert len(task.follower.seen) == 2
