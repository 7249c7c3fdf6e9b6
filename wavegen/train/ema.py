"""Exponential moving average of a model's weights (Polyak averaging)."""

from __future__ import annotations

import torch
from torch import nn


class EMA:
    """Keeps ``shadow = decay * shadow + (1 - decay) * param`` after each optimiser step.

    The shadow copies are float32 whatever the model's dtype, so tiny updates are not lost.
    Buffers (e.g. running statistics) are copied as they are. :meth:`state_dict` has the
    model's own keys, so it loads into a fresh model of the same config.
    """

    def __init__(self, model: nn.Module, decay: float):
        self.decay = decay
        self.model = model
        self.shadow = {name: p.detach().float().clone() for name, p in model.named_parameters()}

    @torch.no_grad()
    def update(self) -> None:
        for name, p in self.model.named_parameters():
            self.shadow[name].lerp_(p.detach().float(), 1.0 - self.decay)

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
