"""TrainConfig: every knob of a training run (the ``train:`` section of a recipe)."""

from __future__ import annotations

from dataclasses import dataclass

from wavegen.errors import ConfigError

SCHEDULES = ("constant", "cosine", "exponential")
AMP_MODES = ("none", "bf16", "fp16")


@dataclass
class TrainConfig:
    """Optimisation, precision, checkpointing and logging settings.

    Attributes:
        steps: optimiser steps to train for (the run ends there; ``--resume`` continues to it).
        batch_size: global batch per optimiser step, split over accumulation micro-batches
            and DDP ranks (must divide evenly).
        accumulate: micro-batches per optimiser step (gradient accumulation).
        lr, betas, weight_decay: AdamW settings.
        schedule: ``constant``, ``cosine`` (to ``lr_min`` at ``steps``) or ``exponential``
            (``lr * lr_decay ** step``), each after ``warmup_steps`` of linear warm-up.
        grad_clip: max global gradient norm (0 = off).
        amp: ``none``, ``bf16`` (autocast) or ``fp16`` (autocast + dynamic loss scaling).
        ema_decay: exponential moving average of the weights (0 = off); saved beside the raw
            weights and used for validation samples.
        seed: seeds the model init, the data order and every random crop.
        num_workers: DataLoader worker processes.
        log_every, val_every, checkpoint_every: in optimiser steps.
        val_batches: batches per validation.
        keep_last: checkpoints kept besides ``best``.
        sample_seconds: length of the audio sample generated at each validation (0 = none).
        device: ``auto`` (CUDA when available), ``cpu`` or ``cuda``.
    """

    steps: int = 1000
    batch_size: int = 8
    accumulate: int = 1
    lr: float = 1e-3
    betas: tuple[float, float] = (0.9, 0.999)
    weight_decay: float = 0.0
    schedule: str = "constant"
    warmup_steps: int = 0
    lr_min: float = 0.0
    lr_decay: float = 0.9999
    grad_clip: float = 0.0
    amp: str = "none"
    ema_decay: float = 0.0
    seed: int = 0
    num_workers: int = 0
    log_every: int = 10
    val_every: int = 200
    val_batches: int = 4
    checkpoint_every: int = 200
    keep_last: int = 3
    sample_seconds: float = 0.0
    device: str = "auto"

    def __post_init__(self) -> None:
        positive = ("steps", "batch_size", "accumulate", "log_every", "val_every",
                    "checkpoint_every", "keep_last", "val_batches")
        for key in positive:
            if getattr(self, key) < 1:
                raise ConfigError(f"train.{key} must be >= 1, got {getattr(self, key)}")
        if self.schedule not in SCHEDULES:
            raise ConfigError(f"train.schedule must be one of {SCHEDULES}, got {self.schedule!r}")
        if self.amp not in AMP_MODES:
            raise ConfigError(f"train.amp must be one of {AMP_MODES}, got {self.amp!r}")
        if not 0 <= self.ema_decay < 1:
            raise ConfigError(f"train.ema_decay must be in [0, 1), got {self.ema_decay}")
        if self.batch_size % self.accumulate:
            raise ConfigError(f"train.batch_size ({self.batch_size}) must be divisible by "
                              f"train.accumulate ({self.accumulate})")
        if self.lr <= 0 or self.grad_clip < 0 or self.warmup_steps < 0 or self.num_workers < 0:
            raise ConfigError("train.lr must be > 0; grad_clip, warmup_steps, num_workers >= 0")
        if self.device not in ("auto", "cpu", "cuda"):
            raise ConfigError(f"train.device must be auto, cpu or cuda, got {self.device!r}")
