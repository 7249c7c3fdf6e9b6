#!/usr/bin/env python
"""The bias denoiser on a trained vocoder: stationary line tones before and after.

A WaveGlow puts stationary tones at multiples of ``sample_rate / n_group`` into everything
it renders (its output for a silent mel at sigma 0 is nothing else). For one clip per
held-out piece of a MAESTRO-format corpus this script vocodes the clip's log-mel with the
bundle (`wavegen vocode`'s path: chunked, seeded) and applies
:class:`wavegen.vocoder.BiasDenoiser` at several strengths, printing per strength:

* the tones' excess over the recording: at each multiple ``k sr / n_group`` below Nyquist,
  the peak magnitude within 20 Hz of the output over that of the recording, in dB, averaged
  over the tones and the clips (0 dB: no louder there than the recording);
* MR-STFT distance and log-mel L1 to the recording (the denoiser must not cost the music).

Usage: python scripts/denoise_line_noise.py BUNDLE --corpus data/piano [--strengths 0 0.1 0.5 1]
"""

from __future__ import annotations

import argparse
import platform
import time

import numpy as np
import torch

from wavegen.audio.metrics import log_mel_l1, multi_resolution_stft_distance
from wavegen.eval import heldout_clips, pipeline_vocoder
from wavegen.inference import InferenceOptions, load
from wavegen.vocode import pipeline_denoiser


def tone_levels(wave: torch.Tensor, sample_rate: int, spacing: float) -> np.ndarray:
    """Peak magnitudes (dB) within 20 Hz of each multiple of ``spacing`` below Nyquist."""
    x = wave.reshape(-1).double().numpy()
    spectrum = np.abs(np.fft.rfft(x * np.hanning(len(x)))) + 1e-12
    freqs = np.fft.rfftfreq(len(x), 1.0 / sample_rate)
    tones = np.arange(1, int((sample_rate / 2 - 1) // spacing) + 1) * spacing
    return np.array([20 * np.log10(spectrum[(freqs > hz - 20) & (freqs < hz + 20)].max())
                     for hz in tones])


def tone_excess_db(wave: torch.Tensor, reference: torch.Tensor, sample_rate: int,
                   spacing: float) -> float:
    """How much louder than in ``reference`` the spectrum is at the line tones, in dB
    (mean over the tones; 0: no louder than the recording there)."""
    return float(np.mean(tone_levels(wave, sample_rate, spacing)
                         - tone_levels(reference, sample_rate, spacing)))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("bundle", help="a vocoder bundle (a flow for line tones)")
    parser.add_argument("--corpus", required=True, help="MAESTRO-format corpus folder")
    parser.add_argument("--strengths", type=float, nargs="+", default=[0.0, 0.1, 0.5, 1.0])
    parser.add_argument("--spacing", type=float, default=None,
                        help="tone spacing in Hz (default: sample_rate / n_group of a flow)")
    parser.add_argument("--seconds", type=float, default=2.0)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    options = InferenceOptions(seed=0)
    vocode, features = pipeline_vocoder(args.bundle, options)
    pipeline = load(args.bundle, options)
    config = pipeline.stages[0].info.model_config
    spacing = args.spacing or features.sample_rate / getattr(config, "n_group", 1)
    denoiser = pipeline_denoiser(pipeline, options)
    clips = heldout_clips(args.corpus, features, args.seconds)
    outputs = [vocode(clip.mel) for clip in clips]
    print(f"machine: {platform.processor() or platform.machine()}, torch {torch.__version__}; "
          f"{time.strftime('%Y-%m-%d')}; {args.bundle}; {len(clips)} held-out clips; tones at "
          f"multiples of {spacing:g} Hz")
    print(f"{'strength':>8} {'tone excess dB':>15} {'MR-STFT':>8} {'log-mel L1':>11}")
    for strength in args.strengths:
        excess, mrstft, l1 = [], [], []
        for clip, audio in zip(clips, outputs):
            cleaned = denoiser(audio, strength)
            excess.append(tone_excess_db(cleaned, clip.audio, features.sample_rate, spacing))
            mrstft.append(float(multi_resolution_stft_distance(clip.audio, cleaned).total.mean()))
            l1.append(float(log_mel_l1(clip.audio, cleaned, features).mean()))
        print(f"{strength:>8g} {np.mean(excess):>15.2f} {np.mean(mrstft):>8.3f} "
              f"{np.mean(l1):>11.3f}", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
