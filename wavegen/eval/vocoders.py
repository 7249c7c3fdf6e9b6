"""Score mel -> audio vocoders on held-out clips of a MAESTRO-format corpus.

A vocoder here is any function ``log-mel [1, n_mels, frames] -> audio [1, 1, frames * hop]``
(:func:`pipeline_vocoder` wraps a bundle or pipeline, :func:`griffin_lim_vocoder` the
baseline). :func:`score_vocoder` runs it on every clip from :func:`heldout_clips` and
compares the result with the recording it came from:

* MR-STFT distance (Parallel WaveGAN's three resolutions, spectral convergence + log
  magnitude; :func:`wavegen.audio.metrics.multi_resolution_stft_distance`), lower is better;
* log-mel L1 with the vocoder's own front-end (:func:`~wavegen.audio.metrics.log_mel_l1`);
* the chroma correlation with the recording
  (:func:`~wavegen.audio.metrics.chroma_correlation`): does it play the same pitch classes
  at the same times (1) or not (about 0);
* the share of energy on the frame-rate harmonic grid
  (:func:`~wavegen.audio.metrics.frame_grid_energy_share`), to be read against the
  reference's own share: a generator confined to the grid gives about 1;
* the wall time per second of audio (real-time factor).
"""

from __future__ import annotations

import os
import statistics
import time
from dataclasses import dataclass, field
from typing import Callable

import torch

from wavegen.audio.features import FeatureConfig
from wavegen.errors import DataError

Vocoder = Callable[[torch.Tensor], torch.Tensor]


@dataclass
class Clip:
    """``audio [1, 1, frames * hop]`` from ``piece`` at ``offset`` seconds, and its log-mel
    ``[1, n_mels, frames]``."""

    piece: str
    offset: float
    audio: torch.Tensor
    mel: torch.Tensor


def heldout_clips(root: str | os.PathLike, features: FeatureConfig, seconds: float = 2.0,
                  offset: float = 1.0, splits: tuple[str, ...] = ("validation", "test"),
                  limit: int | None = None) -> list[Clip]:
    """One clip per held-out piece of the corpus at ``root`` (metadata order), ``seconds``
    long from ``offset`` (pieces too short for it are skipped), at the features' rate."""
    from wavegen.audio.io import load_audio
    from wavegen.audio.spectral import LogMelSpectrogram
    from wavegen.data.maestro import find_metadata, read_maestro_metadata

    base = find_metadata(root).parent
    clips = []
    analyse = LogMelSpectrogram(features)
    hop = features.hop_length
    for entry in read_maestro_metadata(root):
        if entry.split not in splits or entry.duration < offset + seconds:
            continue
        audio, _ = load_audio(base / entry.audio_filename, sample_rate=features.sample_rate,
                              mono=True, offset=offset, duration=seconds)
        frames = audio.shape[-1] // hop
        audio = audio[:, :frames * hop]
        with torch.no_grad():
            mel = analyse(audio)[..., :frames]
        clips.append(Clip(entry.audio_filename, offset, audio[None], mel))
        if limit is not None and len(clips) >= limit:
            break
    if not clips:
        raise DataError(f"{root}: no {' or '.join(splits)} piece lasts {offset + seconds:g} s")
    return clips


def griffin_lim_vocoder(features: FeatureConfig, iterations: int = 32, seed: int = 0) -> Vocoder:
    """The baseline: NNLS mel inversion and ``iterations`` of Griffin-Lim (momentum 0.99)."""
    from wavegen.audio.griffinlim import mel_to_audio

    def vocode(mel: torch.Tensor) -> torch.Tensor:
        length = mel.shape[-1] * features.hop_length
        audio = mel_to_audio(mel, features, n_iter=iterations, length=length,
                             generator=torch.Generator().manual_seed(seed))
        return audio.reshape(1, 1, -1)[..., :length]

    return vocode


def pipeline_vocoder(target: str | os.PathLike, options) -> tuple[Vocoder, FeatureConfig]:
    """A bundle or pipeline that vocodes (:func:`wavegen.vocode.load_vocoder`) as a
    :data:`Vocoder` with ``options`` (an :class:`~wavegen.inference.InferenceOptions`),
    and the features it expects."""
    from wavegen.inference import Conditioning
    from wavegen.vocode import load_vocoder

    pipeline = load_vocoder(target, options)
    features = pipeline.stages[0].input.features

    def vocode(mel: torch.Tensor) -> torch.Tensor:
        return pipeline.run(Conditioning("mel", mel), options).audio

    return vocode, features


@dataclass
class VocoderScore:
    """Per-clip metrics of one vocoder (lists in clip order) and their summaries."""

    mrstft: list[float] = field(default_factory=list)
    log_mel_l1: list[float] = field(default_factory=list)
    grid_share: list[float] = field(default_factory=list)
    chroma_r: list[float] = field(default_factory=list)
    seconds: float = 0.0
    audio_seconds: float = 0.0

    @property
    def real_time_factor(self) -> float:
        return self.seconds / max(self.audio_seconds, 1e-12)

    def summary(self) -> dict[str, float]:
        return {"mrstft": statistics.fmean(self.mrstft),
                "log_mel_l1": statistics.fmean(self.log_mel_l1),
                "grid_share": statistics.median(self.grid_share),
                "chroma_r": statistics.fmean(self.chroma_r),
                "rtf": self.real_time_factor}


def score_vocoder(vocode: Vocoder | None, clips: list[Clip], features: FeatureConfig,
                  save: Callable[[Clip, torch.Tensor], None] | None = None) -> VocoderScore:
    """Metrics of ``vocode`` on ``clips`` (module doc); ``vocode=None`` scores the
    reference recordings themselves (distances 0, their own grid share). ``save`` receives
    each clip and its vocoded audio (to write files)."""
    from wavegen.audio.metrics import (chroma_correlation, frame_grid_energy_share,
                                       log_mel_l1, multi_resolution_stft_distance)

    score = VocoderScore()
    rate, hop = features.sample_rate, features.hop_length
    window = min(1.0, clips[0].audio.shape[-1] / rate)
    for clip in clips:
        start = time.perf_counter()
        audio = clip.audio if vocode is None else vocode(clip.mel).float()
        score.seconds += time.perf_counter() - start
        score.audio_seconds += clip.audio.shape[-1] / rate
        audio = audio.reshape(1, 1, -1)[..., :clip.audio.shape[-1]]
        if audio.shape[-1] < clip.audio.shape[-1]:
            audio = torch.nn.functional.pad(audio, (0, clip.audio.shape[-1] - audio.shape[-1]))
        score.mrstft.append(float(multi_resolution_stft_distance(clip.audio, audio).total.mean()))
        score.log_mel_l1.append(float(log_mel_l1(clip.audio, audio, features).mean()))
        score.grid_share.append(float(frame_grid_energy_share(audio, rate, hop, window).mean()))
        score.chroma_r.append(chroma_correlation(clip.audio, audio, rate))
        if save is not None:
            save(clip, audio)
    return score


__all__ = ["Clip", "VocoderScore", "Vocoder", "griffin_lim_vocoder", "heldout_clips",
           "pipeline_vocoder", "score_vocoder"]
