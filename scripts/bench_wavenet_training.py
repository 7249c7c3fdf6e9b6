#!/usr/bin/env python
"""WaveNet training step: wavegen's model against a plain PyTorch WaveNet of the same shape.

The reference configuration of ``bench_wavenet_sampling.py`` (2 x 10 layers, kernel 2,
residual 64, gate 128, skip 256, 256-way mu-law softmax, 80-band log-mel conditioning with
the 4x4x4x4 transposed-conv upsampler), batch 4 x 8192 samples. One step is forward, the
cross-entropy loss, backward and an Adam update; the two models alternate (a shared VM
drifts) and the median of ``--repeats`` is reported with the ratio.

The baseline, :class:`PlainWaveNet`, is the textbook layout written here in a few lines
(as r9y9/wavenet_vocoder and most implementations do it): per layer a dilated causal conv
(left padding), a 1x1 conv of the upsampled mel added to the gate input, tanh * sigmoid,
and 1x1 residual and skip convs; then ReLU-1x1-ReLU-1x1; the mel upsampled by depthwise
transposed convs. It has wavegen's parameters, layer by layer.

Two tables:

* **As they run** (the headline): each model in its own process, as its user runs it.
  wavegen as ``wavegen train`` does (glibc malloc kept from returning freed blocks:
  :func:`wavegen.utils.allocator.keep_freed_memory`), the baseline as a plain script
  (default malloc). The processes alternate ``--rounds`` times, ``--repeats`` steps each
  after a warm-up step; medians.
* **Model code alone**: both models in one process with the same allocator (default malloc,
  then tuned), alternating steps.

``--contention N`` repeats the first table while N busy processes compete for the cores,
wavegen's run with ``train.threads: auto`` (the cores free when it starts).

Usage: python scripts/bench_wavenet_training.py [--batch 4] [--samples 8192] [--threads 2]
       [--repeats 5] [--rounds 2] [--contention N]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time

import torch
import torch.nn.functional as F
from torch import nn

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bench_wavenet_sampling import HOP, reference_config  # noqa: E402

from wavegen.models.wavenet import WaveNet  # noqa: E402


class PlainLayer(nn.Module):
    def __init__(self, residual: int, gate: int, skip: int, cond: int, kernel: int,
                 dilation: int):
        super().__init__()
        self.pad = (kernel - 1) * dilation
        self.conv = nn.Conv1d(residual, 2 * gate, kernel, dilation=dilation)
        self.cond = nn.Conv1d(cond, 2 * gate, 1, bias=False)
        self.res = nn.Conv1d(gate, residual, 1)
        self.skip = nn.Conv1d(gate, skip, 1)

    def forward(self, x, c):
        h = self.conv(F.pad(x, (self.pad, 0))) + self.cond(c)
        a, b = h.chunk(2, dim=1)
        z = torch.tanh(a) * torch.sigmoid(b)
        return x + self.res(z), self.skip(z)


class PlainWaveNet(nn.Module):
    """The textbook WaveNet of the module docstring, the reference configuration's shape."""

    def __init__(self, config):
        super().__init__()
        c = config
        self.embed = nn.Embedding(c.num_classes, c.residual_channels)
        self.factors = c.upsample_factors
        self.upsample = nn.ModuleList(
            nn.ConvTranspose1d(c.local_channels, c.local_channels, 2 * f, stride=f,
                               groups=c.local_channels) for f in c.upsample_factors)
        self.layers = nn.ModuleList(
            PlainLayer(c.residual_channels, c.gate_channels, c.skip_channels, c.local_channels,
                       c.kernel_size, 2 ** i)
            for _ in range(c.stacks) for i in range(c.layers))
        self.out1 = nn.Conv1d(c.skip_channels, c.skip_channels, 1)
        self.out2 = nn.Conv1d(c.skip_channels, c.num_classes, 1)

    def loss(self, targets, local):
        inputs = F.pad(targets, (1, 0), value=128)[:, :-1]
        x = self.embed(inputs).transpose(1, 2)
        c = local
        for factor, up in zip(self.factors, self.upsample):
            c = up(c)[..., factor // 2:factor // 2 + c.shape[-1] * factor]
        skips = 0
        for layer in self.layers:
            x, s = layer(x, c)
            skips = skips + s
        logits = self.out2(F.relu(self.out1(F.relu(skips))))
        return F.cross_entropy(logits, targets)


def step_time(model, optimiser, loss_fn) -> float:
    start = time.perf_counter()
    loss = loss_fn()
    optimiser.zero_grad(set_to_none=True)
    loss.backward()
    optimiser.step()
    return time.perf_counter() - start


def make_runs(args, names=("wavegen", "plain PyTorch")) -> dict:
    """name -> (model, optimiser, loss closure) for the reference configuration."""
    torch.manual_seed(0)
    config = reference_config()
    ours, plain = WaveNet(config), PlainWaveNet(config)
    wave = torch.rand(args.batch, 1, args.samples) * 1.6 - 0.8
    local = torch.randn(args.batch, config.local_channels, args.samples // HOP)
    targets = ours.targets_from_waveform(wave)
    runs = {
        "wavegen": (ours, torch.optim.Adam(ours.parameters(), 1e-4),
                    lambda: ours.loss(wave, local)),
        "plain PyTorch": (plain, torch.optim.Adam(plain.parameters(), 1e-4),
                          lambda: plain.loss(targets, local)),
    }
    return {name: runs[name] for name in names}


def alternating_steps(runs: dict, repeats: int) -> dict:
    """name -> seconds of each of ``repeats`` steps, the models alternating (after a
    warm-up step each)."""
    times = {name: [] for name in runs}
    for run in runs.values():
        step_time(*run)  # warm-up
    for _ in range(repeats):
        for name, run in runs.items():
            times[name].append(step_time(*run))
    return times


def child(args) -> None:
    """One model's steps in this process, set up as its user runs it; JSON on stdout."""
    if args.child == "wavegen":
        from wavegen.utils.allocator import keep_freed_memory
        from wavegen.utils.threads import free_threads

        keep_freed_memory()  # what `wavegen train` does at start
        if args.auto_threads:  # what `--set train.threads=auto` does when the run starts
            torch.set_num_threads(free_threads())
    times = alternating_steps(make_runs(args, (args.child,)), args.repeats)[args.child]
    print(json.dumps(times))


def in_processes(args, auto_threads: bool = False) -> dict:
    """name -> step times, each model in its own processes (alternating rounds); with
    ``auto_threads`` wavegen's run takes ``train.threads: auto``."""
    times = {"wavegen": [], "plain PyTorch": []}
    for _ in range(args.rounds):
        for name in times:
            out = subprocess.run([sys.executable, __file__, "--child", name,
                                  "--batch", str(args.batch), "--samples", str(args.samples),
                                  "--threads", str(args.threads), "--repeats", str(args.repeats)]
                                 + (["--auto-threads"] if auto_threads else []),
                                 capture_output=True, text=True, check=True)
            times[name] += json.loads(out.stdout.strip().splitlines()[-1])
    return times


def print_table(title: str, times: dict, counts: dict) -> None:
    median = {name: statistics.median(v) for name, v in times.items()}
    print(f"# {title}")
    print("| model | parameters | seconds / step | plain / model |")
    print("| --- | --- | --- | --- |")
    for name in times:
        print(f"| {name} | {counts[name] / 1e6:.2f} M | {median[name]:.3f} | "
              f"{median['plain PyTorch'] / median[name]:.2f}x |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--samples", type=int, default=8192)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--contention", type=int, default=0, metavar="N",
                        help="also run the as-they-run table with N busy processes competing, "
                             "wavegen with train.threads: auto")
    parser.add_argument("--child", choices=("wavegen", "plain PyTorch"), help=argparse.SUPPRESS)
    parser.add_argument("--auto-threads", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    if args.child:
        child(args)
        return
    print(f"# WaveNet training step (forward + loss + backward + Adam), batch {args.batch} x "
          f"{args.samples} samples, reference configuration; {platform.machine()}, "
          f"{os.cpu_count()} cpus, torch {torch.__version__} ({args.threads} threads), "
          f"{time.strftime('%Y-%m-%d')}")
    runs = make_runs(args)
    counts = {name: sum(p.numel() for p in run[0].parameters()) for name, run in runs.items()}
    quiet = in_processes(args)
    print_table(f"as they run: own processes, wavegen with its allocator setting, median of "
                f"{args.rounds} x {args.repeats} steps", quiet, counts)
    if args.contention:
        from contention import competing_load

        with competing_load(args.contention):
            loaded = in_processes(args, auto_threads=True)
        print_table(f"as they run under load ({args.contention} busy process(es)), wavegen "
                    f"with train.threads: auto", loaded, counts)
        print("# loaded / quiet: " + ", ".join(
            f"{name} {statistics.median(quiet[name]) / statistics.median(loaded[name]):.2f}"
            for name in quiet))
    print_table(f"model code alone, one process, default malloc, median of {args.repeats} "
                f"alternating steps", alternating_steps(runs, args.repeats), counts)
    from wavegen.utils.allocator import keep_freed_memory

    keep_freed_memory()
    print_table(f"model code alone, one process, both with wavegen's allocator setting, "
                f"median of {args.repeats} alternating steps",
                alternating_steps(runs, args.repeats), counts)


if __name__ == "__main__":
    main()
