"""Validation samples: audio made at each validation for listening, and its PNG.

A recipe asks for ``train.sample_seconds`` of audio. Validation items are crops of
``data.crop_samples``, often shorter than that, so the example a task generates from is made
of consecutive validation items joined in time (:func:`listening_batch`): its audio is the
reference, its conditioning (mel, piano roll) drives the model. Every task writes exactly
:func:`sample_length` samples; a validation set that holds less audio than asked for is a
:class:`~wavegen.errors.ConfigError` when the run starts (:func:`check_listening_length`).

Each sample is written as ``STEM.wav`` + ``STEM.png`` (waveform, log-mel and instantaneous
frequency, :func:`wavegen.audio.plot.plot_analysis`) beside ``reference.wav``
(:func:`save_listening_pair`). Models without a feature front-end (unconditional or
MIDI-conditioned WaveNets) are plotted with :func:`plot_features` for their sample rate.

A task's ``make_samples`` is then three steps: the first example's conditioning for the
sample (:func:`conditioning_window`), the task's own way of making audio from it, and
:func:`finish_listening`, which writes the files, adds the log-mel L1 distance to the
reference and drops non-finite metrics, the same way for every task.
"""

from __future__ import annotations

import math
import os
from pathlib import Path

import torch

from wavegen.audio.features import FeatureConfig
from wavegen.audio.io import save_audio
from wavegen.audio.metrics import log_mel_l1
from wavegen.errors import ConfigError, UsageError

#: The plot front-end's FFT spans about this long (a power of two of samples).
PLOT_WINDOW_SECONDS = 0.064


def sample_length(seconds: float, sample_rate: int) -> int:
    """Samples in a validation sample of ``seconds`` (at least one)."""
    return max(1, round(seconds * sample_rate))


def check_listening_length(dataset, seconds: float, sample_rate: int) -> None:
    """ConfigError unless ``dataset`` holds ``seconds`` of audio for the validation samples."""
    needed = sample_length(seconds, sample_rate)
    item = dataset[0]["audio"].shape[-1]
    available = item * len(dataset)
    if available < needed:
        raise ConfigError(
            f"train.sample_seconds asks for {seconds:g} s ({needed} samples) of validation audio "
            f"but the validation set holds {available / sample_rate:.3g} s ({len(dataset)} items "
            f"of {item} samples): lower train.sample_seconds or add validation data")


def listening_batch(dataset, num_samples: int) -> dict[str, torch.Tensor]:
    """A batch of one example at least ``num_samples`` long: items 0, 1, ... of ``dataset``
    joined in time.

    Tensors of two or more dimensions (``audio [1, T]``, ``mel [n_mels, frames]``, ``roll``)
    are time series and are concatenated along their last axis; smaller ones (global
    conditioning) are taken from the first item. Items must be whole frames long (the crop
    datasets' crops are a multiple of the hop), so the joined conditioning stays aligned.
    """
    items, covered = [], 0
    for index in range(len(dataset)):
        items.append(dataset[index])
        covered += items[-1]["audio"].shape[-1]
        if covered >= num_samples:
            break
    if covered < num_samples:
        raise ConfigError(f"the validation set holds {covered} samples; a validation sample "
                          f"needs {num_samples} (lower train.sample_seconds)")
    batch = {}
    for key, value in items[0].items():
        if not torch.is_tensor(value):
            continue
        if value.ndim >= 2:
            value = torch.cat([item[key] for item in items], dim=-1)
        batch[key] = value[None]
    return batch


def conditioning_frames(local: torch.Tensor, num_samples: int, hop: int) -> int:
    """Frames of ``local`` ``[..., frames]`` that cover ``num_samples`` (UsageError if short)."""
    frames = math.ceil(num_samples / hop)
    if local.shape[-1] < frames:
        raise UsageError(f"the batch's conditioning covers {local.shape[-1]} frames of {hop} "
                         f"samples; a {num_samples}-sample validation sample needs {frames}")
    return frames


def conditioning_window(local: torch.Tensor, num_samples: int,
                        hop: int) -> tuple[torch.Tensor, int]:
    """The first example's conditioning for a ``num_samples`` sample: ``local[:1, ..., :frames]``
    (``local`` ``[B, ..., frames]``, whole frames covering ``num_samples``) and the
    ``frames * hop`` samples those frames drive (>= ``num_samples``; the extra is cut off after
    generation). UsageError if ``local`` is too short."""
    frames = conditioning_frames(local, num_samples, hop)
    return local[:1, ..., :frames], frames * hop


def plot_features(features: FeatureConfig | None, sample_rate: int) -> FeatureConfig:
    """The front-end the sample PNGs are drawn with: the model's own features when they are
    at ``sample_rate``, otherwise a ~64 ms Hann STFT with a mel scale up to Nyquist."""
    if features is not None and features.sample_rate == sample_rate:
        return features
    n_fft = 2 ** int(math.log2(max(64.0, sample_rate * PLOT_WINDOW_SECONDS)))
    return FeatureConfig(sample_rate=sample_rate, n_fft=n_fft, hop_length=n_fft // 4,
                         win_length=n_fft, n_mels=min(80, n_fft // 8), fmax=None,
                         name=f"plot-{sample_rate}")


def save_listening_pair(out_dir: str | os.PathLike, stem: str, generated: torch.Tensor,
                        reference: torch.Tensor, sample_rate: int,
                        features: FeatureConfig | None = None) -> None:
    """Write ``STEM.wav``, ``STEM.png`` and ``reference.wav`` (``[channels, time]`` each) into
    ``out_dir`` (created). The PNG needs at least one FFT frame of audio."""
    from wavegen.audio.plot import plot_analysis  # matplotlib: only once there is a sample

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    generated = generated.detach().float().cpu()
    save_audio(out / f"{stem}.wav", generated, sample_rate)
    save_audio(out / "reference.wav", reference.detach().float().cpu(), sample_rate)
    plot = plot_features(features, sample_rate)
    if generated.shape[-1] >= plot.n_fft:
        plot_analysis(generated, plot, out / f"{stem}.png")


def finish_listening(out_dir: str | os.PathLike, stem: str, generated: torch.Tensor,
                     reference: torch.Tensor, sample_rate: int, metrics: dict[str, float], *,
                     length: int | None = None, features: FeatureConfig | None = None,
                     mel_features: FeatureConfig | None = None,
                     mel_metric: str = "sample_log_mel_l1") -> dict[str, float]:
    """The common end of every task's ``make_samples``.

    Args:
        out_dir, stem, sample_rate, features: as in :func:`save_listening_pair`.
        generated, reference: ``[1, C, T]`` the example made and its reference audio.
        metrics: the task's own metrics of the sample.
        length: samples written (the first ``length``; all when None). The log-mel distance
            is computed over everything passed, so a task may score a whole example and
            let people listen to part of it.
        mel_features: front-end of the log-mel L1 distance (None: no distance); the
            distance is added as ``metrics[mel_metric]`` when ``generated`` and
            ``reference`` have the same length, of at least one FFT frame.

    Returns:
        ``metrics`` (and the distance) without non-finite values: a diverged model's NaN
        is left out of the logs rather than logged as a number.
    """
    window = slice(None) if length is None else slice(None, length)
    save_listening_pair(out_dir, stem, generated[0, :, window], reference[0, :, window],
                        sample_rate, features)
    metrics = dict(metrics)
    if (mel_features is not None
            and generated.shape[-1] == reference.shape[-1] >= mel_features.n_fft):
        metrics[mel_metric] = float(
            log_mel_l1(reference, generated.to(reference.device), mel_features).mean())
    return {k: v for k, v in metrics.items() if math.isfinite(v)}
