"""A synthetic dataset of tones and chords, generated on the fly (no files).

For smoke tests, the tiny CPU recipes and benchmarks: item ``i`` of epoch ``e`` is a
deterministic function of ``(seed, e, i)``: a chord of one to three harmonic tones with
random pitches (within ``pitch_range`` Hz), amplitudes and a slow amplitude envelope.
Items follow the dataset contract of :mod:`wavegen.data`: ``{"audio": [1, T]}`` plus
``{"mel": [n_mels, T // hop]}`` when a FeatureConfig is given.
"""

from __future__ import annotations

import math

import torch
from torch.utils.data import Dataset

from wavegen.audio.features import FeatureConfig
from wavegen.audio.spectral import LogMelSpectrogram
from wavegen.errors import ConfigError


class ToneDataset(Dataset):
    """``size`` items of ``crop_samples`` samples at ``sample_rate``."""

    def __init__(self, size: int, sample_rate: int, crop_samples: int,
                 features: FeatureConfig | None = None, seed: int = 0,
                 pitch_range: tuple[float, float] = (110.0, 880.0), split: str = "train"):
        if size < 1 or crop_samples < 1:
            raise ConfigError("ToneDataset needs size >= 1 and crop_samples >= 1")
        if features is not None:
            if features.sample_rate != sample_rate:
                raise ConfigError(f"features are for {features.sample_rate} Hz, data is {sample_rate} Hz")
            if crop_samples % features.hop_length:
                raise ConfigError(f"crop_samples ({crop_samples}) must be a multiple of the hop "
                                  f"({features.hop_length})")
        self.size = size
        self.sample_rate = sample_rate
        self.crop_samples = crop_samples
        self.features = features
        self.mel = LogMelSpectrogram(features) if features is not None else None
        # Validation items come from another stream than training items.
        self.seed = seed * 2 + (1 if split != "train" else 0)
        self.pitch_range = pitch_range
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return self.size

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        g = torch.Generator().manual_seed((self.seed * 7919 + self.epoch) * 1_000_003 + index)
        t = torch.arange(self.crop_samples, dtype=torch.float64) / self.sample_rate
        low, high = (math.log(p) for p in self.pitch_range)
        wave = torch.zeros_like(t)
        for _ in range(int(torch.randint(1, 4, (1,), generator=g))):
            f0 = math.exp(low + (high - low) * float(torch.rand(1, generator=g)))
            phase = 2 * math.pi * float(torch.rand(1, generator=g))
            for k in (1, 2, 3):
                if k * f0 < 0.45 * self.sample_rate:
                    wave += torch.sin(2 * math.pi * k * f0 * t + k * phase) / k
        envelope = 0.6 + 0.4 * torch.sin(2 * math.pi * float(torch.rand(1, generator=g)) * 2 * t)
        wave = wave * envelope
        wave = 0.7 * wave / wave.abs().max().clamp_min(1e-6)
        audio = wave.float()[None]
        item = {"audio": audio}
        if self.mel is not None:
            with torch.no_grad():
                item["mel"] = self.mel(audio[None])[0]
        return item
