"""The shared parts of every task's make_samples: the conditioning window and the tail."""

from __future__ import annotations

import math

import numpy as np
import pytest
import soundfile as sf
import torch

from wavegen.audio.features import FeatureConfig
from wavegen.audio.metrics import log_mel_l1
from wavegen.errors import UsageError
from wavegen.train.listening import conditioning_window, finish_listening

RATE = 8000
FEATURES = FeatureConfig(sample_rate=RATE, n_fft=256, hop_length=64, win_length=256, n_mels=20,
                         fmax=None, name="test-8k")


def _tone(length: int, freq: float = 440.0) -> torch.Tensor:
    t = torch.arange(length) / RATE
    return (0.5 * torch.sin(2 * math.pi * freq * t))[None, None]


def test_conditioning_window_takes_whole_frames_of_the_first_example():
    local = torch.arange(2 * 3 * 10, dtype=torch.float32).reshape(2, 3, 10)
    window, samples = conditioning_window(local, 130, 64)
    assert samples == 192 and torch.equal(window, local[:1, :, :3])
    window, samples = conditioning_window(local, 128, 64)
    assert samples == 128 and window.shape == (1, 3, 2)
    with pytest.raises(UsageError, match="covers 10 frames"):
        conditioning_window(local, 641, 64)


def test_finish_writes_the_pair_adds_the_mel_distance_and_drops_nan(tmp_path):
    generated, reference = _tone(1200, 440.0), _tone(1200, 660.0)
    metrics = {"sample_nll": 1.5, "diverged": float("nan")}
    out = finish_listening(tmp_path, "sample", generated, reference, RATE, metrics,
                           length=1000, features=FEATURES, mel_features=FEATURES)
    assert metrics == {"sample_nll": 1.5, "diverged": metrics["diverged"]}  # not mutated
    assert set(out) == {"sample_nll", "sample_log_mel_l1"}
    # The distance covers all that was passed, the files the first `length` samples.
    assert out["sample_log_mel_l1"] == float(log_mel_l1(reference, generated, FEATURES)[0])
    assert out["sample_log_mel_l1"] > 0.1
    written, rate = sf.read(tmp_path / "sample.wav", dtype="float32")
    assert rate == RATE and written.shape == (1000,)
    np.testing.assert_allclose(written, generated[0, 0, :1000].numpy(), atol=1e-4)
    assert sf.read(tmp_path / "reference.wav")[0].shape == (1000,)
    assert (tmp_path / "sample.png").is_file()


@pytest.mark.parametrize("generated_length, reference_length, mel, name", [
    (200, 200, FEATURES, "shorter than one FFT frame"),
    (1200, 1000, FEATURES, "unequal lengths"),
    (1200, 1200, None, "no front-end"),
])
def test_no_mel_distance_when_it_would_mean_nothing(tmp_path, generated_length,
                                                    reference_length, mel, name):
    out = finish_listening(tmp_path, "generated", _tone(generated_length),
                           _tone(reference_length), RATE, {"sample_rms": 0.3},
                           mel_features=mel, mel_metric="sample_mel_l1")
    assert out == {"sample_rms": 0.3}, name
    assert (tmp_path / "generated.wav").is_file() and (tmp_path / "reference.wav").is_file()


def test_the_metric_name_is_the_tasks(tmp_path):
    out = finish_listening(tmp_path, "generated", _tone(1024), _tone(1024), RATE, {},
                           mel_features=FEATURES, mel_metric="sample_mel_l1")
    assert list(out) == ["sample_mel_l1"] and out["sample_mel_l1"] == 0.0
