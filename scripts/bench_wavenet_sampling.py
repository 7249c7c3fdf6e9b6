#!/usr/bin/env python
"""WaveNet sampling speed: the naive generator vs the cached per-layer PyTorch path.

Reference configuration (the baseline that the fast-kernel backends must beat): 2 stacks x
10 layers, kernel 2, residual 64, gate 128, skip 256, 256-way mu-law softmax, 16 kHz,
local conditioning on an 80-band log-mel (hop 256, transposed-conv upsampler 4x4x4x4).

Both generators start after a prompt one receptive field long, so every naive step really
recomputes 2047 positions, and both draw from the same uniforms. The cached path is
checked against the naive one before the timing. Weights are random: speed does not depend
on them.

Usage: python scripts/bench_wavenet_sampling.py [--batches 1 16] [--cached-steps 2000]
       [--naive-steps 20] [--threads 2] [--repeats 3]
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import time

import torch

from wavegen.models.wavenet import WaveNet, WaveNetConfig, describe
from wavegen.sampling import draw_uniforms, generate

SAMPLE_RATE = 16000
HOP = 256


def reference_config() -> WaveNetConfig:
    return WaveNetConfig(layers=10, stacks=2, kernel_size=2, residual_channels=64,
                         gate_channels=128, skip_channels=256, head="categorical",
                         num_classes=256, local_channels=80, hop_length=HOP,
                         upsample_factors=(4, 4, 4, 4), sample_rate=SAMPLE_RATE)


def measure(model: WaveNet, batch: int, steps: int, naive: bool, seed: int = 0):
    """Samples per second (aggregate over the batch) for ``steps`` new samples."""
    # The prompt covers at least one receptive field (full windows from the first step) and
    # pads the total up to whole conditioning frames, so exactly ``steps`` are generated.
    frames = -(-(model.receptive_field + 1 + steps) // HOP)
    total = frames * HOP
    prompt_len = total - steps
    generator = torch.Generator().manual_seed(seed)
    local = torch.randn(batch, 80, frames, generator=generator)
    prompt = torch.rand(batch, 1, prompt_len, generator=generator) * 1.2 - 0.6
    uniforms = draw_uniforms(batch, steps, 1, seed)
    result = generate(model, local=local, prompt=prompt, uniforms=uniforms, naive=naive)
    return result.samples_per_second, result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 16])
    parser.add_argument("--cached-steps", type=int, default=2000)
    parser.add_argument("--naive-steps", type=int, default=20)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3, help="cached runs (median taken)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    model = WaveNet(reference_config()).eval()

    # Correctness first: the cached path reproduces the naive generator's samples.
    _, naive = measure(model, 2, 8, naive=True, seed=1)
    _, cached = measure(model, 2, 8, naive=False, seed=1)
    assert torch.equal(naive.samples, cached.samples), "cached and naive samplers disagree"

    rows = []
    for batch in args.batches:
        naive_rate, _ = measure(model, batch, args.naive_steps, naive=True)
        cached_rate = statistics.median(
            measure(model, batch, args.cached_steps, naive=False, seed=r)[0]
            for r in range(args.repeats))
        rows.append((batch, naive_rate, cached_rate))

    print(f"# {describe(model.config)}; {model.num_parameters() / 1e6:.2f} M parameters")
    print(f"# {platform.machine()}, {os.cpu_count()} cpus, torch {torch.__version__} "
          f"({args.threads} threads), {time.strftime('%Y-%m-%d')}")
    print(f"| {'batch':>5} | {'naive samples/s':>15} | {'cached samples/s':>16} | "
          f"{'cached / naive':>14} | {'cached x real time':>18} |")
    print(f"|{'-' * 7}|{'-' * 17}|{'-' * 18}|{'-' * 16}|{'-' * 20}|")
    for batch, naive_rate, cached_rate in rows:
        print(f"| {batch:5d} | {naive_rate:15.1f} | {cached_rate:16.1f} | "
              f"{cached_rate / naive_rate:13.1f}x | {cached_rate / SAMPLE_RATE:17.3f}x |")


if __name__ == "__main__":
    main()
