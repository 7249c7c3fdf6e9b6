"""Shared fixtures: deterministic test signals generated in code (no data files)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

# Tests must not depend on how many threads the machine has, and CI has 2 cores.
torch.set_num_threads(2)


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(1234)


def chord(sample_rate: int, seconds: float, freqs=(261.63, 329.63, 392.0), amp: float = 0.25):
    """A sum of sines with a short fade in/out, float32 [time]."""
    t = np.arange(int(sample_rate * seconds)) / sample_rate
    x = sum(np.sin(2 * np.pi * f * t + i) for i, f in enumerate(freqs)) * amp / len(freqs) * 2
    fade = np.minimum(1.0, np.minimum(t, t[-1] - t) / 0.01)
    return (x * fade).astype(np.float32)


def sweep(sample_rate: int, seconds: float, f0: float = 50.0, f1: float | None = None):
    """Exponential sine sweep from f0 to f1 (default: 0.45 * sample_rate), float32 [time]."""
    f1 = f1 or 0.45 * sample_rate
    t = np.arange(int(sample_rate * seconds)) / sample_rate
    k = np.log(f1 / f0) / seconds
    return (0.5 * np.sin(2 * np.pi * f0 * (np.exp(k * t) - 1) / k)).astype(np.float32)
