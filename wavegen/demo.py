"""`wavegen demo`: analysis and resynthesis of generated audio with the shared audio core.

It needs no data: a short test piece (plucked chords over a sweep, clicks, noise bursts) is
generated, analysed with a vocoder front-end, resynthesised two ways, and measured:

1. magnitude + instantaneous frequency -> waveform (exact, GANSynth representation);
2. log-mel -> Griffin-Lim (the baseline vocoder every model in wavegen must beat).

Outputs in ``out_dir``: ``original.wav``, ``resynth_if.wav``, ``resynth_griffinlim.wav``
(16-bit), ``analysis.png`` (waveform, log-mel and IF of the original),
``griffinlim.png`` (the same for the Griffin-Lim resynthesis) and ``summary.json``.

* **Seeded.** The piece is fixed and Griffin-Lim's random initial phase is drawn from
  ``seed``, so every run with the same arguments writes the same audio and the same scores.
  Only the ``"timing"`` entry of the summary (wall-clock time) differs between runs.
* **Measured on the files.** The scores and the figures are computed from the WAV files as
  written, read back: what a listener hears, 16-bit quantisation included.
"""

from __future__ import annotations

import json
import math
import os
import time
from pathlib import Path

import torch

from wavegen.audio.features import FeatureConfig, get_preset
from wavegen.audio.griffinlim import mel_to_audio
from wavegen.audio.io import load_audio, save_audio
from wavegen.audio.metrics import (log_mel_l1, mel_cepstral_distortion,
                                   multi_resolution_stft_distance, snr_db)
from wavegen.audio.phase import magnitude_and_if, waveform_from_magnitude_and_if
from wavegen.audio.plot import plot_analysis
from wavegen.audio.signals import demo_music
from wavegen.audio.spectral import LogMelSpectrogram
from wavegen.utils.atomic import atomic_write_text

ORIGINAL_WAV = "original.wav"
RESYNTH_IF_WAV = "resynth_if.wav"
RESYNTH_GRIFFINLIM_WAV = "resynth_griffinlim.wav"
ANALYSIS_PNG = "analysis.png"
GRIFFINLIM_PNG = "griffinlim.png"
SUMMARY_JSON = "summary.json"
#: Every file the demo writes, in the order the CLI lists them.
OUTPUT_FILES = (ORIGINAL_WAV, RESYNTH_IF_WAV, RESYNTH_GRIFFINLIM_WAV, ANALYSIS_PNG,
                GRIFFINLIM_PNG, SUMMARY_JSON)


def run_demo(out_dir: str | os.PathLike, preset: str = "hifigan-22k", seconds: float = 4.0,
             griffinlim_iters: int = 32, seed: int = 0) -> dict:
    """Run the demo, write its files into ``out_dir`` and return the summary dict.

    The summary holds the settings, the scores (see :func:`measure`) and, apart under
    ``"timing"``, the wall-clock time; everything but ``"timing"`` is the same on every run.
    """
    start = time.perf_counter()
    config: FeatureConfig = get_preset(preset)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    sr = config.sample_rate
    wave = torch.from_numpy(demo_music(sr, seconds))[None, None]  # [1, 1, time]
    length = wave.shape[-1]

    magnitude, ifreq = magnitude_and_if(wave, config)
    exact = waveform_from_magnitude_and_if(magnitude, ifreq, config, length=length)
    logmel = LogMelSpectrogram(config)(wave)
    generator = torch.Generator().manual_seed(seed)
    griffin = mel_to_audio(logmel, config, n_iter=griffinlim_iters, length=length,
                           generator=generator)
    for name, audio in ((ORIGINAL_WAV, wave), (RESYNTH_IF_WAV, exact),
                        (RESYNTH_GRIFFINLIM_WAV, griffin)):
        save_audio(out / name, audio.reshape(1, length), sr)

    # From here on, only what was written: the files read back.
    original, resynth_if, resynth_griffinlim = (
        load_audio(out / name)[0]
        for name in (ORIGINAL_WAV, RESYNTH_IF_WAV, RESYNTH_GRIFFINLIM_WAV))
    duration = length / sr
    scores = measure(original, resynth_if, resynth_griffinlim, config)
    summary = {
        "preset": preset,
        "sample_rate": sr,
        "seconds": duration,
        "seed": seed,
        "magnitude_if": scores["magnitude_if"],
        "griffin_lim": {"iterations": griffinlim_iters, **scores["griffin_lim"]},
    }
    titles = figure_titles(duration, sr, griffinlim_iters, seed)
    plot_analysis(original, config, out / ANALYSIS_PNG, title=titles[ANALYSIS_PNG])
    plot_analysis(resynth_griffinlim, config, out / GRIFFINLIM_PNG, title=titles[GRIFFINLIM_PNG])
    elapsed = time.perf_counter() - start
    summary["timing"] = {"elapsed_s": elapsed, "real_time_factor": elapsed / duration}
    atomic_write_text(out / SUMMARY_JSON, json.dumps(summary, indent=2, allow_nan=False) + "\n")
    return summary


def measure(original: torch.Tensor, resynth_if: torch.Tensor, resynth_griffinlim: torch.Tensor,
            config: FeatureConfig) -> dict:
    """The demo's scores of the two resynthesised waveforms against the original, each
    ``[1, time]`` at ``config.sample_rate``: SNR of the exact magnitude + IF resynthesis
    (None when it equals the original sample for sample: JSON has no infinity); MR-STFT
    distance, log-mel L1 and MCD of the Griffin-Lim one."""
    reference, exact, griffin = (x[None] for x in (original, resynth_if, resynth_griffinlim))
    snr = float(snr_db(reference, exact).item())
    distance = multi_resolution_stft_distance(reference, griffin).total
    return {
        "magnitude_if": {"snr_db": snr if math.isfinite(snr) else None},
        "griffin_lim": {
            "mr_stft_distance": float(distance.item()),
            "log_mel_l1": float(log_mel_l1(reference, griffin, config).item()),
            "mcd_db": float(mel_cepstral_distortion(reference, griffin, config).item()),
        },
    }


def figure_titles(seconds: float, sample_rate: int, griffinlim_iters: int,
                  seed: int) -> dict[str, str]:
    """The title of each figure, by file name: what it shows."""
    length = f"{seconds:.2f} s at {sample_rate} Hz"
    return {
        ANALYSIS_PNG: f"Original: the generated test piece ({length})",
        GRIFFINLIM_PNG: (f"Griffin-Lim resynthesis from the log-mel alone ({griffinlim_iters} "
                         f"iterations, seed {seed}; {length})"),
    }


def format_summary(summary: dict) -> str:
    """Human-readable lines for the CLI."""
    gl = summary["griffin_lim"]
    timing = summary["timing"]
    snr = summary["magnitude_if"]["snr_db"]
    exact = "identical to the original" if snr is None else f"SNR {snr:.1f} dB"
    return "\n".join([
        f"demo: {summary['seconds']:.1f} s at {summary['sample_rate']} Hz, "
        f"front-end {summary['preset']}, seed {summary['seed']} "
        f"(scores measured on the 16-bit files written)",
        f"  magnitude+IF resynthesis   {exact} (exact up to 16-bit quantisation)",
        f"  Griffin-Lim ({gl['iterations']} it) from log-mel  MR-STFT {gl['mr_stft_distance']:.3f}, "
        f"log-mel L1 {gl['log_mel_l1']:.3f}, MCD {gl['mcd_db']:.2f} dB",
        f"done in {timing['elapsed_s']:.1f} s (real-time factor {timing['real_time_factor']:.2f})",
    ])
