#!/usr/bin/env python
"""SampleRNN sampling speed: the ``reference`` backend against ``samplernn-cpu``.

Configuration: the paper's 3-tier model (``SampleRNNConfig.preset("three_tier")``: frame
sizes 8 and 2, one GRU layer per tier, dim 1024, 256 linear classes, embedding 256, a
3-layer MLP; 22 M parameters) or ``--preset two_tier`` (frame size 16, 3 GRU layers,
42 M parameters), 16 kHz, no conditioning. Weights are random: speed does not depend on
them.

Each timed run is one whole :func:`wavegen.sampling.generate` call, the call a user makes
(``backend="reference"`` or ``backend="samplernn-cpu"``): session set-up, the sampling
loop, the NLL / entropy diagnostics and the result, for ``--seconds`` of audio per batch
item. Both backends draw from the same uniforms, and the fast one is first checked to draw
the reference's samples on a short run. Reference and fast runs alternate (a shared
machine drifts by up to 2x over a minute) and the median of ``--repeats`` runs of each is
reported, with the ratio fast / reference.

``--contention N`` times both again with N busy processes competing for the cores.

Usage: python scripts/bench_samplernn.py [--preset three_tier] [--batches 1 16]
       [--seconds 0.25] [--threads 2] [--repeats 3] [--contention N]

(At the defaults a run takes a few minutes on one core, most of it the reference at
batch 16.)
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import time

import torch

from wavegen.models.samplernn import SAMPLERNN_PRESETS, SampleRNN, SampleRNNConfig, describe
from wavegen.sampling import SamplingOptions, draw_uniforms, generate

FAST = "samplernn-cpu"


def cpu_name() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def run(model: SampleRNN, backend: str, batch: int, steps: int, seed: int):
    """(result, wall seconds) of one whole generate call."""
    uniforms = draw_uniforms(batch, steps, 1, seed)
    start = time.perf_counter()
    result = generate(model, steps, batch=batch, uniforms=uniforms, backend=backend,
                      options=SamplingOptions(temperature=1.0))
    return result, time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="three_tier", choices=sorted(SAMPLERNN_PRESETS))
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 16])
    parser.add_argument("--seconds", type=float, default=0.25,
                        help="seconds of audio per batch item in each timed run")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3,
                        help="alternating timed runs per backend (the median is reported)")
    parser.add_argument("--contention", type=int, default=0, metavar="N",
                        help="also time both with N busy processes competing for the cores")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    config = SampleRNNConfig.preset(args.preset)
    model = SampleRNN(config).eval()
    steps = max(1, round(args.seconds * config.sample_rate))

    # Correctness first (this also packs the fast backend's weights, outside the timing).
    expected, _ = run(model, "reference", 2, 64, seed=1)
    got, _ = run(model, FAST, 2, 64, seed=1)
    agree = float((got.samples == expected.samples).float().mean())
    print(f"# {FAST}: {100 * agree:.1f}% of 128 check samples equal to reference")

    rows = time_rows(model, args, steps)
    print_rows(rows, model, config, args, steps, "quiet machine")
    if args.contention:
        from contention import competing_load

        with competing_load(args.contention):
            loaded = time_rows(model, args, steps)
        print_rows(loaded, model, config, args, steps,
                   f"under load: {args.contention} busy process(es) competing")
        for (batch, quiet), (_, busy) in zip(rows, loaded):
            print(f"# batch {batch}, loaded / quiet: " + ", ".join(
                f"{name} {busy[name] / quiet[name]:.2f}" for name in busy))


def time_rows(model, args, steps: int) -> list:
    """(batch, {backend: samples/s}) per batch size, the backends alternating."""
    rows = []
    for batch in args.batches:
        rates = {"reference": [], FAST: []}
        for r in range(args.repeats):  # alternate, so both see the same drift
            for name in rates:
                _, seconds = run(model, name, batch, steps, seed=r)
                rates[name].append(batch * steps / seconds)
        rows.append((batch, {name: statistics.median(v) for name, v in rates.items()}))
    return rows


def print_rows(rows, model, config, args, steps: int, title: str) -> None:
    print(f"# {title}")

    print(f"# {describe(config)}; {model.num_parameters() / 1e6:.2f} M parameters")
    print(f"# {cpu_name()}, {os.cpu_count()} cpus, torch {torch.__version__} "
          f"({args.threads} threads), {time.strftime('%Y-%m-%d')}")
    print(f"# samples/s, aggregate over the batch, of whole generate calls ({steps} samples "
          f"= {args.seconds:g} s per item, diagnostics included); median of {args.repeats} "
          f"alternating runs")
    head = (f"| {'batch':>5} | {'reference':>9} | {FAST:>13} | {FAST + ' / ref':>19} | "
            f"{'x real time':>11} |")
    print(head)
    print("|" + "|".join("-" * len(c) for c in head.split("|")[1:-1]) + "|")
    for batch, rate in rows:
        print(f"| {batch:5d} | {rate['reference']:9.1f} | {rate[FAST]:13.1f} | "
              f"{rate[FAST] / rate['reference']:18.2f}x | "
              f"{rate[FAST] / config.sample_rate:10.3f}x |")


if __name__ == "__main__":
    main()
