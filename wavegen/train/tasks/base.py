"""The contract between the trainer and a training objective.

A task owns the model(s). It names its optimisers and, for each, an :class:`Objective`: an
``nn.Module`` whose ``forward(batch)`` returns ``(loss, metrics)`` plus the parameters that
optimiser updates. Putting the loss inside ``forward`` lets the trainer wrap objectives in
DistributedDataParallel, whose gradient synchronisation hooks into ``forward``. The trainer
does everything else: devices, mixed precision, accumulation, clipping, EMA, checkpoints,
validation scheduling and logging.
"""

from __future__ import annotations

import abc
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn


@dataclass
class Objective:
    """``module(batch) -> (loss, {name: float})`` and the parameters its optimiser updates.

    Objectives are stepped one after the other, in the task's order: all micro-batches of
    one objective are back-propagated and its optimiser steps before the next objective's
    loss is computed (a GAN's generator loss then sees the discriminator just updated).
    ``start_step`` and ``every`` give the update schedule: the objective trains at optimiser
    steps ``start_step, start_step + every, ...`` (e.g. a discriminator that starts late or
    is updated every other step); its LR schedule counts its own updates.
    """

    module: nn.Module
    parameters: list[nn.Parameter]
    start_step: int = 0
    every: int = 1
    #: Optimiser settings of this objective; None takes the ``train:`` section's value
    #: (GANs often give the discriminator its own learning rate).
    lr: float | None = None
    betas: tuple[float, float] | None = None
    weight_decay: float | None = None

    def active(self, step: int) -> bool:
        """Whether this objective trains at (0-based) optimiser step ``step``."""
        return step >= self.start_step and (step - self.start_step) % self.every == 0


@dataclass(frozen=True)
class Phase:
    """A stretch of a run whose steps cost about the same, from optimiser step ``start`` on
    (until the next phase starts), e.g. a GAN's warm-up before the discriminator joins.

    ``relative_cost`` is the expected time of one of its steps in units of a step of the
    first phase; the ETA uses it only until steps of the phase have been timed.
    """

    start: int
    name: str
    relative_cost: float = 1.0


class Task(abc.ABC):
    """A training objective over one model (the one saved as the bundle)."""

    #: The model saved in bundles (e.g. the generator of a GAN).
    model: nn.Module
    #: Validation metric (lower is better) that selects the ``best`` checkpoint.
    validation_key: str = "loss"

    @abc.abstractmethod
    def objectives(self) -> dict[str, Objective]:
        """Optimiser name -> objective, in the order they are stepped."""

    @abc.abstractmethod
    def validation_metrics(self, model: nn.Module, batch: dict[str, torch.Tensor]) -> dict[str, float]:
        """Objective metrics of ``model`` (raw or EMA weights) on a validation batch."""

    def make_samples(self, model: nn.Module, batch: dict[str, torch.Tensor], out_dir: Path,
                     seconds: float, sample_rate: int) -> dict[str, float]:
        """Generate audio for listening (files in ``out_dir``); return objective metrics."""
        return {}

    def set_step(self, step: int) -> None:
        """Called by the trainer before each optimiser step (0-based), for step-dependent
        losses (e.g. adversarial terms that switch on with the discriminator)."""
        self.step = step

    def phases(self) -> list[Phase]:
        """The run's phases in order of ``start`` (the first starts at 0); one by default."""
        return [Phase(0, "training")]

    def auxiliary_modules(self) -> dict[str, nn.Module]:
        """Trained modules that are not the bundle's model (e.g. ``{"discriminator": D}``).

        They are moved to the training device, saved in every checkpoint as
        ``NAME.safetensors`` and restored by ``--resume``; EMA applies to the model only.
        """
        return {}

    def state_dict(self) -> dict[str, Any]:
        """What the task carries between optimiser steps besides module weights (plain
        containers of tensors and numbers; e.g. the hidden states of truncated BPTT), saved
        in every checkpoint's training state so ``--resume`` continues exactly; {} by
        default."""
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore what :meth:`state_dict` returned (an empty dict: nothing carried)."""
