#!/usr/bin/env python
"""Benchmark the crop datasets through torch's DataLoader, against what training consumes.

Two corpora are generated in a temporary folder:

  (a) MAESTRO-style: ``prepare_corpus`` renders generated piano performances to 44.1 kHz
      WAV + MIDI (a sine-tone corpus written with soundfile when prepare.py is missing);
      items are 16 kHz audio crops + piano rolls (MaestroDataset).
  (b) audio folder: 44.1 kHz stereo FLAC files; items are 22.05 kHz audio + HiFi-GAN
      log-mel crops (AudioFolderDataset).

For each, building the dataset is timed with an empty cache (decode, mix-down, resample,
whole-file rolls / log-mels) and again with the cache filled. Then, for num_workers 0/1/2,
one DataLoader (batch 8, persistent workers) runs two epochs: epoch 1 includes starting the
workers and the first reads of the cache files, epoch 2 is the steady state. The cache
files were just written, so they are in the OS page cache either way; on a real corpus
larger than RAM, epoch reads come from disk (a few small reads per crop).

The last table times training steps of WaveNets on the same batches (forward, backward,
Adam step; batch 8) and converts them to crops per second consumed.

Usage: python scripts/bench_dataloader.py [--pieces 16] [--seconds 30] [--items 4096]
                                          [--workers 0 1 2] [--threads 2]
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import soundfile as sf
import torch

from wavegen.audio import signals
from wavegen.audio.features import get_preset
from wavegen.data.audio_folder import AudioFolderDataset
from wavegen.data.maestro import MaestroDataset
from wavegen.data.midi import PianoRollConfig


def make_maestro(root: Path, pieces: int, seconds: float) -> str:
    """A MAESTRO-format corpus at 44.1 kHz, all pieces in the train split; returns how."""
    try:
        from wavegen.data.prepare import prepare_corpus
    except ImportError:
        prepare_corpus = None
    if prepare_corpus is not None:
        result = prepare_corpus(root, num_generated=pieces, seconds=seconds, sample_rate=44100,
                                splits=(1.0, 0.0, 0.0), year=2018)
        return f"prepare_corpus: {result.summary()}"
    return _sine_maestro(root, pieces, seconds)


def _sine_maestro(root: Path, pieces: int, seconds: float) -> str:
    import csv

    import pretty_midi

    rate = 44100
    (root / "2018").mkdir(parents=True, exist_ok=True)
    rows = []
    for k in range(pieces):
        midi = pretty_midi.PrettyMIDI()
        piano = pretty_midi.Instrument(0)
        audio = np.zeros(int(seconds * rate), np.float32)
        for j, start in enumerate(np.arange(0.1, seconds - 0.5, 0.25)):
            pitch = 48 + (7 * j + k) % 36
            a, b = int(start * rate), int((start + 0.2) * rate)
            audio[a:b] += 0.3 * np.sin(2 * np.pi * 440 * 2 ** ((pitch - 69) / 12) * np.arange(b - a) / rate)
            piano.notes.append(pretty_midi.Note(90, pitch, float(start), float(start) + 0.2))
        midi.instruments.append(piano)
        name = f"2018/piece{k:03d}"
        sf.write(root / f"{name}.wav", audio, rate)
        midi.write(str(root / f"{name}.midi"))
        rows.append(dict(canonical_composer="sine", canonical_title=name, split="train",
                         year=2018, midi_filename=f"{name}.midi", audio_filename=f"{name}.wav",
                         duration=len(audio) / rate))
    with open(root / "maestro-v3.0.0.csv", "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return f"sine tones written with soundfile: {pieces} x {seconds:g} s at {rate} Hz"


def make_folder(root: Path, files: int, seconds: float) -> str:
    rate = 44100
    for k in range(files):
        left = signals.sweep(rate, seconds, f0=50 + 10 * k)
        right = signals.chord(rate, seconds, freqs=(220.0 * (1 + k / 10), 330.0, 440.0))
        path = root / f"speaker{k % 4}" / f"clip{k:03d}.flac"
        path.parent.mkdir(parents=True, exist_ok=True)
        sf.write(path, np.stack([left, right], 1), rate)
    return f"{files} x {seconds:g} s stereo FLAC at {rate} Hz"


def timed(fn):
    start = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - start


def loader_rates(dataset, workers: int, batch: int) -> tuple[float, float]:
    """Crops per second in epoch 1 (includes starting workers) and epoch 2."""
    loader = torch.utils.data.DataLoader(dataset, batch_size=batch, num_workers=workers,
                                         persistent_workers=workers > 0)
    rates = []
    for epoch in (1, 2):
        dataset.set_epoch(epoch)
        start = time.perf_counter()
        count = sum(b["audio"].shape[0] for b in loader)
        rates.append(count / (time.perf_counter() - start))
    del loader
    return rates[0], rates[1]


def step_time(config, batch: int, crop: int, local: int, repeats: int) -> float:
    """Median seconds of one training step (forward + backward + Adam) of a WaveNet."""
    from wavegen.models.wavenet import WaveNet

    torch.manual_seed(0)
    model = WaveNet(config)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    wave = torch.rand(batch, 1, crop) * 1.6 - 0.8
    cond = torch.rand(batch, local, crop // config.hop_length) if local else None

    def step():
        optimizer.zero_grad(set_to_none=True)
        loss = model.loss(wave, local=cond) if cond is not None else model.loss(wave)
        loss.backward()
        optimizer.step()

    for _ in range(3):  # oneDNN builds its convolution primitives in the first steps
        step()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        step()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--pieces", type=int, default=16, help="files per corpus")
    parser.add_argument("--seconds", type=float, default=30.0, help="seconds per file")
    parser.add_argument("--items", type=int, default=4096, help="crops per epoch")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--workers", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--threads", type=int, default=2, help="torch threads (model steps)")
    parser.add_argument("--keep", help="build the corpora in this folder and keep them")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    work = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="bench_dataloader_"))
    work.mkdir(parents=True, exist_ok=True)
    try:
        print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, "
              f"torch {torch.__version__}, {args.threads} torch threads")
        made_a, t_a = timed(lambda: make_maestro(work / "maestro", args.pieces, args.seconds))
        made_b, t_b = timed(lambda: make_folder(work / "folder", args.pieces, args.seconds))
        print(f"(a) corpus: {made_a} [{t_a:.1f} s]")
        print(f"(b) corpus: {made_b} [{t_b:.1f} s]")

        roll = PianoRollConfig(sample_rate=16000, hop_length=256)
        mel = get_preset("hifigan-22k")
        settings = {
            "(a) MAESTRO 16 kHz audio+roll": lambda cache: MaestroDataset(
                work / "maestro", "train", sample_rate=16000, crop_samples=8192, roll=roll,
                cache_dir=cache, items_per_epoch=args.items),
            "(b) folder 22.05 kHz audio+mel": lambda cache: AudioFolderDataset(
                work / "folder", 22050, 8192, features=mel, cache_dir=cache,
                items_per_epoch=args.items),
        }

        print(f"\ncrops of 8192 samples, batch {args.batch}, {args.items} crops per epoch\n")
        header = (f"{'setting':32} {'build cold':>10} {'build warm':>10} {'workers':>7} "
                  f"{'epoch 1 crops/s':>15} {'epoch 2 crops/s':>15}")
        print(header)
        print("-" * len(header))
        for name, make in settings.items():
            cache = work / f"cache-{name[1]}"
            shutil.rmtree(cache, ignore_errors=True)
            _, cold = timed(lambda: make(cache))
            dataset, warm = timed(lambda: make(cache))
            for i, workers in enumerate(args.workers):
                first, second = loader_rates(dataset, workers, args.batch)
                build = (f"{cold:9.2f}s {warm:9.2f}s" if i == 0 else " " * 21)
                print(f"{name if i == 0 else '':32} {build} {workers:7d} {first:15,.0f} "
                      f"{second:15,.0f}")

        print(f"\nconsumption: WaveNet training steps on the same batches "
              f"(batch {args.batch}, {args.threads} threads)\n")
        from wavegen.models.wavenet import WaveNetConfig

        models = {
            "wavenet-tones-tiny recipe, 1024 samples": (WaveNetConfig(
                layers=6, stacks=1, kernel_size=2, residual_channels=16, gate_channels=16,
                skip_channels=32, head="categorical", num_classes=256, sample_rate=8000), 1024, 0),
            "tiny MIDI-conditioned, 8192 samples": (WaveNetConfig(
                layers=10, stacks=1, residual_channels=32, gate_channels=64, skip_channels=64,
                local_channels=roll.num_channels, hop_length=256, upsample_factors=(16, 16),
                sample_rate=16000), 8192, roll.num_channels),
        }
        header = f"{'model':42} {'step ms':>8} {'crops/s consumed':>17}"
        print(header)
        print("-" * len(header))
        for name, (config, crop, local) in models.items():
            seconds = step_time(config, args.batch, crop, local, repeats=3)
            print(f"{name:42} {seconds * 1e3:8.1f} {args.batch / seconds:17,.0f}")
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
