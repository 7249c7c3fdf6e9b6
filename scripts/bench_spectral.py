#!/usr/bin/env python
"""Benchmark the spectral core against librosa on the CPU, in one run.

Rows:
  * log-mel of a batch of 8 x 60 s at 22.05 kHz (HiFi-GAN front-end), target >= 5x librosa;
  * Griffin-Lim, 32 iterations with momentum 0.99, on 1 x 60 s, target >= 2x librosa.

Both sides compute the same quantity with the same settings (checked before timing) and the
same number of threads. The two sides run alternately, each timed on its second
back-to-back run (steady state); the table gives each side's median time and the median of
the per-pair ratios (robust to a machine whose speed drifts).

``--contention N`` measures everything again while N busy processes compete for the cores
(scripts/contention.py) and adds each side's loaded / quiet speed: wavegen's CPU paths then
run on the cores left free (wavegen.utils.threads), librosa on its one thread.

Usage: python scripts/bench_spectral.py [--seconds 60] [--batch 8] [--threads 2] [--repeats 3]
       [--contention N]
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import time

import librosa
import numpy as np
import torch

from wavegen.audio.features import get_preset
from wavegen.audio.griffinlim import griffin_lim
from wavegen.audio.spectral import LogMelSpectrogram, Spectrogram


def _seconds(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def _warm_seconds(fn) -> float:
    """Seconds of a second, back-to-back run: the steady state of repeated extraction.

    (Here the first torch run after a large numpy job is ~2x slower, whatever the cause:
    caches, page faults, sleeping worker threads; both sides get the same treatment.)
    """
    fn()
    return _seconds(fn)


def interleaved(reference, fast, repeats: int) -> tuple[float, float, float]:
    """Median warm seconds of each side and the median of per-pair ratios.

    The two sides alternate, so a machine whose speed drifts (a shared VM) slows both
    alike and the ratio stays meaningful.
    """
    pairs = [(_warm_seconds(reference), _warm_seconds(fast)) for _ in range(repeats)]
    return (statistics.median(p[0] for p in pairs), statistics.median(p[1] for p in pairs),
            statistics.median(p[0] / p[1] for p in pairs))


def librosa_logmel(x: np.ndarray, config) -> np.ndarray:
    padded = np.pad(x, [(0, 0), (config.pad_amount, config.pad_amount)], mode=config.pad_mode)
    mel = librosa.feature.melspectrogram(
        y=padded, sr=config.sample_rate, n_fft=config.n_fft, hop_length=config.hop_length,
        win_length=config.win_length, window=config.window, center=False, power=config.power,
        n_mels=config.n_mels, fmin=config.fmin, fmax=config.fmax_hz)
    return np.log(np.maximum(mel, config.log_clamp))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--gl-iters", type=int, default=32)
    parser.add_argument("--contention", type=int, default=0, metavar="N",
                        help="also measure with N busy processes competing for the cores")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    quiet = measure(args)
    print(f"# {platform.processor() or platform.machine()}, {os.cpu_count()} cpus, "
          f"torch {torch.__version__} ({args.threads} threads), librosa {librosa.__version__}, "
          f"{time.strftime('%Y-%m-%d')}")
    print("# quiet machine")
    print_rows(quiet)
    if args.contention:
        from contention import competing_load

        with competing_load(args.contention):
            loaded = measure(args)
        print(f"# under load: {args.contention} busy process(es) competing")
        print_rows(loaded, quiet)


def print_rows(rows, quiet=None) -> None:
    extra_head = " librosa loaded / quiet | wavegen loaded / quiet |" if quiet else ""
    print(f"| {'task':<32} | {'librosa s':>9} | {'wavegen s':>9} | {'speed-up':>8} | "
          f"{'target':>6} | {'check':<18} |{extra_head}")
    print(f"|{'-' * 34}|{'-' * 11}|{'-' * 11}|{'-' * 10}|{'-' * 8}|{'-' * 20}|"
          + ("---|---|" if quiet else ""))
    for i, (task, t_ref, t_fast, ratio, target, check) in enumerate(rows):
        flag = "ok" if ratio >= target else "MISS"
        extra = ""
        if quiet:
            extra = f" {quiet[i][1] / t_ref:.2f} | {quiet[i][2] / t_fast:.2f} |"
        print(f"| {task:<32} | {t_ref:9.3f} | {t_fast:9.3f} | {ratio:7.1f}x | "
              f"{target:4.0f}x {flag:>2} | {check:<18} |{extra}")


def measure(args) -> list[tuple]:
    """(task, librosa s, wavegen s, speed-up, target, check) per row."""

    config = get_preset("hifigan-22k").replace(magnitude_eps=0.0)
    n = int(args.seconds * config.sample_rate)
    rng = np.random.default_rng(0)
    t = np.arange(n) / config.sample_rate
    audio = np.stack([0.3 * np.sin(2 * np.pi * (110 * (i + 1)) * t) + 0.05 * rng.standard_normal(n)
                      for i in range(args.batch)]).astype(np.float32)
    wave = torch.from_numpy(audio)[:, None, :]

    rows = []
    logmel = LogMelSpectrogram(config)
    with torch.inference_mode():
        ours = logmel(wave).numpy()
    theirs = librosa_logmel(audio, config)
    err = float(np.abs(ours - theirs).max())
    with torch.inference_mode():
        t_librosa, t_ours, ratio = interleaved(lambda: librosa_logmel(audio, config),
                                               lambda: logmel(wave), args.repeats)
    rows.append((f"log-mel {args.batch} x {args.seconds:g} s", t_librosa, t_ours, ratio, 5.0,
                 f"max |diff| {err:.1e}"))

    # Griffin-Lim on one clip, both from zero initial phase so the work is identical.
    clip = audio[:1]
    mag_t = Spectrogram(config.replace(padding="center", pad_mode="constant"))(
        torch.from_numpy(clip))
    gl_config = config.replace(padding="center", pad_mode="constant")
    mag_np = mag_t.numpy()

    def run_librosa():
        return librosa.griffinlim(mag_np, n_iter=args.gl_iters, hop_length=config.hop_length,
                                  win_length=config.win_length, n_fft=config.n_fft,
                                  window=config.window, center=True, momentum=0.99, init=None,
                                  length=n)

    def run_ours():
        return griffin_lim(mag_t, gl_config, n_iter=args.gl_iters, momentum=0.99, init="zeros",
                           length=n)

    with torch.inference_mode():
        gl_ours = run_ours().numpy()
        gl_theirs = run_librosa()
        t_gl_librosa, t_gl_ours, gl_ratio = interleaved(run_librosa, run_ours, args.repeats)
    gl_diff = float(np.abs(gl_ours - gl_theirs).max() / np.abs(gl_theirs).max())
    rows.append((f"Griffin-Lim {args.gl_iters} it, 1 x {args.seconds:g} s", t_gl_librosa,
                 t_gl_ours, gl_ratio, 2.0, f"rel diff {gl_diff:.1e}"))
    return rows


if __name__ == "__main__":
    main()
