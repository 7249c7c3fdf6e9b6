"""Learning-rate schedules as multiplicative factors of the base rate (for LambdaLR)."""

from __future__ import annotations

import math

from wavegen.train.config import TrainConfig


def lr_factor(config: TrainConfig, step: int) -> float:
    """Factor applied to ``config.lr`` at optimiser step ``step`` (0-based)."""
    if config.warmup_steps and step < config.warmup_steps:
        return (step + 1) / config.warmup_steps
    if config.schedule == "constant":
        return 1.0
    if config.schedule == "exponential":
        return config.lr_decay ** (step - config.warmup_steps)
    span = max(1, config.steps - config.warmup_steps)
    progress = min(1.0, (step - config.warmup_steps) / span)
    floor = config.lr_min / config.lr
    return floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * progress))
