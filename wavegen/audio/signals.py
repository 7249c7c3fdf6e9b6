"""Deterministic test signals: tones, chords, sweeps, clicks, noise bursts, plucked notes.

Used by the demo, the tests and the benchmarks so that nothing needs a data download.
Every function returns a float32 numpy array ``[time]`` in [-1, 1] and takes the sample
rate explicitly.
"""

from __future__ import annotations

import numpy as np


def _time(sample_rate: int, seconds: float) -> np.ndarray:
    return np.arange(int(round(sample_rate * seconds))) / sample_rate


def _fade(x: np.ndarray, sample_rate: int, fade_seconds: float = 0.01) -> np.ndarray:
    """Short linear fade in and out so the signal starts and ends at zero (no edge click)."""
    n = len(x)
    ramp = np.minimum(1.0, np.minimum(np.arange(n), n - 1 - np.arange(n)) / (fade_seconds * sample_rate))
    return x * ramp


def tone(sample_rate: int, seconds: float, freq: float, amp: float = 0.5,
         phase: float = 0.0) -> np.ndarray:
    """A pure sinusoid (no fade: for exact-frequency checks)."""
    return (amp * np.sin(2 * np.pi * freq * _time(sample_rate, seconds) + phase)).astype(np.float32)


def chord(sample_rate: int, seconds: float, freqs=(261.63, 329.63, 392.0),
          amp: float = 0.5) -> np.ndarray:
    """Sum of sines at ``freqs`` with distinct phases, peak about ``amp``, faded ends."""
    t = _time(sample_rate, seconds)
    x = sum(np.sin(2 * np.pi * f * t + 1.3 * i) for i, f in enumerate(freqs)) / len(freqs)
    return (amp * _fade(x, sample_rate)).astype(np.float32)


def sweep(sample_rate: int, seconds: float, f0: float = 50.0, f1: float | None = None,
          amp: float = 0.5) -> np.ndarray:
    """Exponential sine sweep from ``f0`` to ``f1`` Hz (default 0.45 * sample_rate)."""
    f1 = f1 or 0.45 * sample_rate
    t = _time(sample_rate, seconds)
    rate = np.log(f1 / f0) / seconds
    x = np.sin(2 * np.pi * f0 * (np.exp(rate * t) - 1) / rate)
    return (amp * _fade(x, sample_rate)).astype(np.float32)


def clicks(sample_rate: int, seconds: float, every: float = 0.25, amp: float = 0.9) -> np.ndarray:
    """Single-sample impulses every ``every`` seconds, alternating sign (transient test)."""
    x = np.zeros(int(round(sample_rate * seconds)), dtype=np.float32)
    positions = np.arange(int(every * sample_rate / 2), len(x), int(every * sample_rate))
    x[positions] = amp * np.where(np.arange(len(positions)) % 2 == 0, 1.0, -1.0)
    return x


def noise_bursts(sample_rate: int, seconds: float, burst: float = 0.05, every: float = 0.3,
                 amp: float = 0.3, seed: int = 0) -> np.ndarray:
    """Gaussian noise bursts of ``burst`` seconds every ``every`` seconds, silence between."""
    rng = np.random.default_rng(seed)
    n = int(round(sample_rate * seconds))
    x = np.zeros(n)
    length = int(burst * sample_rate)
    for start in range(0, n - length, int(every * sample_rate)):
        x[start:start + length] = rng.standard_normal(length) * np.hanning(length)
    return (amp * np.clip(x / 3.0, -1, 1)).astype(np.float32)


def plucked_note(sample_rate: int, seconds: float, freq: float, velocity: float = 0.8,
                 partials: int = 12, inharmonicity: float = 1e-4, decay: float = 1.5) -> np.ndarray:
    """A piano-like note: stretched partials, brighter when louder, higher partials decay faster."""
    t = _time(sample_rate, seconds)
    x = np.zeros_like(t)
    for k in range(1, partials + 1):
        fk = k * freq * np.sqrt(1 + inharmonicity * k * k)
        if fk >= 0.45 * sample_rate:
            break
        weight = (velocity ** (0.5 * k)) / k
        x += weight * np.exp(-t * decay * (1 + 0.4 * k)) * np.sin(2 * np.pi * fk * t + 0.7 * k)
    attack = np.minimum(1.0, t / 0.003)
    x = x * attack
    peak = np.abs(x).max() or 1.0
    return (0.6 * velocity * _fade(x / peak, sample_rate)).astype(np.float32)


def demo_music(sample_rate: int, seconds: float = 4.0) -> np.ndarray:
    """A short test piece: a plucked chord progression over a sweep, with clicks and noise."""
    n = int(round(sample_rate * seconds))
    x = np.zeros(n, dtype=np.float64)
    progression = [(261.63, 329.63, 392.0), (220.0, 261.63, 329.63), (174.61, 220.0, 261.63),
                   (196.0, 246.94, 293.66)]
    step = seconds / len(progression)
    for i, freqs in enumerate(progression):
        start = int(i * step * sample_rate)
        for j, f in enumerate(freqs):
            note = plucked_note(sample_rate, min(step * 1.5, seconds - i * step), f,
                                velocity=0.6 + 0.1 * j)
            x[start:start + len(note)] += note[: n - start] / 2
    x += 0.15 * sweep(sample_rate, seconds, 100.0, 0.4 * sample_rate)
    x += 0.5 * clicks(sample_rate, seconds, every=seconds / 4)
    x += 0.5 * noise_bursts(sample_rate, seconds, every=seconds / 3, seed=1)
    return (0.9 * x / max(1.0, np.abs(x).max())).astype(np.float32)
