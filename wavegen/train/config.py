"""TrainConfig: every knob of a training run (the ``train:`` section of a recipe).

Values that would only fail hours into a run are refused when the recipe is read: a seed
that overflows torch's generators, a validation sample of absurd length (allocated at the
first validation), thousands of data-loader processes.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from wavegen.errors import ConfigError

SCHEDULES = ("constant", "cosine", "exponential")
AMP_MODES = ("none", "bf16", "fp16")
#: Seeds are 32-bit: the trainer derives per-epoch seeds from them (seed * 1000003 + epoch)
#: that must stay within torch's 64-bit generator seeds.
MAX_SEED = 2 ** 32 - 1
#: Longest validation sample (seconds); it is generated, and held in memory, at every validation.
MAX_SAMPLE_SECONDS = 3600.0
#: Most data-loader worker processes (each is a process with its own copy of the dataset).
MAX_WORKERS = 256


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
        threads: torch's CPU threads for the run: 0 (torch's own setting), a count, or
            ``"auto"``: the cores no other process keeps busy when the run starts
            (:func:`wavegen.utils.threads.free_threads`). The count a run trains with is
            saved in its checkpoints and a resumed run uses it again (gradients depend on
            it, and a resumed run must repeat the same bits), unless ``threads`` names
            another count explicitly.
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
    threads: int | str = 0

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
        if isinstance(self.threads, str) and self.threads != "auto" or \
                isinstance(self.threads, int) and self.threads < 0:
            raise ConfigError(f"train.threads must be a count >= 0 (0: torch's setting) or "
                              f"'auto', got {self.threads!r}")
        if self.batch_size % self.accumulate:
            raise ConfigError(f"train.batch_size ({self.batch_size}) must be divisible by "
                              f"train.accumulate ({self.accumulate})")
        if self.lr <= 0 or self.grad_clip < 0 or self.warmup_steps < 0 or self.num_workers < 0:
            raise ConfigError("train.lr must be > 0; grad_clip, warmup_steps, num_workers >= 0")
        if self.weight_decay < 0 or self.lr_min < 0:
            raise ConfigError(f"train.weight_decay and train.lr_min must be >= 0, got "
                              f"{self.weight_decay} and {self.lr_min}")
        if not 0 < self.lr_decay <= 1:
            raise ConfigError(f"train.lr_decay must be in (0, 1], got {self.lr_decay}")
        if not all(0 <= b < 1 for b in self.betas):
            raise ConfigError(f"train.betas must be two values in [0, 1), got {list(self.betas)}")
        if not 0 <= self.seed <= MAX_SEED:
            raise ConfigError(f"train.seed must be in [0, 2^32 - 1], got {self.seed}")
        if self.num_workers > MAX_WORKERS:
            raise ConfigError(f"train.num_workers must be <= {MAX_WORKERS}, got {self.num_workers}")
        seconds = self.sample_seconds
        if not (math.isfinite(seconds) and 0 <= seconds <= MAX_SAMPLE_SECONDS):
            raise ConfigError(f"train.sample_seconds must be in [0, {MAX_SAMPLE_SECONDS:g}], "
                              f"got {self.sample_seconds}")
        if self.device not in ("auto", "cpu", "cuda"):
            raise ConfigError(f"train.device must be auto, cpu or cuda, got {self.device!r}")
