"""Exponential moving average of a model's weights (Polyak averaging)."""

from __future__ import annotations

import torch
from torch import nn


class EMA:
    """Keeps ``shadow = decay * shadow + (1 - decay) * param`` after each optimiser step.

    The decay warms up: update ``n`` (0-based) uses ``min(decay, (1 + n) / (10 + n))``, so
    early in training the average follows the weights closely instead of holding on to the
    random initialisation for thousands of steps (with a fixed 0.999, the weights of step
    1,000 still carry 37% of the initial ones, and for a diffusion denoiser that average is
    no denoiser at all: measured in docs/RESULTS.md).

    The shadow copies are float32 whatever the model's dtype, so tiny updates are not lost.
    Buffers (e.g. running statistics) are copied as they are. :meth:`state_dict` has the
    model's own keys, so it loads into a fresh model of the same config.
    """

    def __init__(self, model: nn.Module, decay: float):
        self.decay = decay
        self.model = model
        self.shadow = {name: p.detach().float().clone() for name, p in model.named_parameters()}

    def decay_at(self, update: int) -> float:
        """The decay of update ``update`` (0-based), with the warm-up above."""
        return min(self.decay, (1.0 + update) / (10.0 + update))

    @torch.no_grad()
    def update(self, update: int) -> None:
        """Fold the current weights in as update number ``update`` (0-based)."""
        weight = 1.0 - self.decay_at(update)
        for name, p in self.model.named_parameters():
            self.shadow[name].lerp_(p.detach().float(), weight)

    def state_dict(self) -> dict[str, torch.Tensor]:
        state = {k: v.clone() for k, v in self.model.state_dict().items()}
        for name, value in self.shadow.items():
            state[name] = value.to(state[name].dtype)
        return state

    def load_shadow(self, state: dict[str, torch.Tensor]) -> None:
        for name in self.shadow:
            self.shadow[name] = state[name].detach().float().clone().to(self.shadow[name].device)

    def copy_to(self, model: nn.Module) -> None:
        """Load the averaged weights into ``model`` (same architecture)."""
        model.load_state_dict(self.state_dict())
