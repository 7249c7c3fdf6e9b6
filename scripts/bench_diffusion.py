#!/usr/bin/env python
"""Diffusion vocoders on the CPU: real-time factor at a few network-evaluation budgets.

Every registered ``noise_driven`` family whose config class has ``preset("base")`` (DiffWave
and WaveGrad once they are registered in :mod:`wavegen.models.registry`) is built with
random weights (speed does not depend on them), given ``--seconds`` of random log-mel (or
nothing, if the preset is unconditional) at the preset's hop, and sampled with
:meth:`DiffusionProcess.sample <wavegen.diffusion.process.DiffusionProcess.sample>` and the
deterministic ``ddim`` sampler, whose network evaluations (NFE) equal its steps. The
real-time factor is wall time / audio duration (< 1 is faster than real time), the median
of ``--repeats`` runs after a one-step warm-up, with ``--threads`` CPU threads.

Families named with ``--families`` that are not registered, not noise-driven or have no
``base`` preset are skipped with a line saying why.

Usage: python scripts/bench_diffusion.py [--families diffwave wavegrad] [--seconds 1]
       [--nfe 6 12 50] [--threads 2] [--repeats 1] [--sample-rate 22050]
"""

from __future__ import annotations

import argparse
import platform
import statistics
import sys
import time

import torch

from wavegen.diffusion.process import DiffusionProcess
from wavegen.models.protocols import NOISE_DRIVEN
from wavegen.models.registry import FAMILIES
from wavegen.models.size import check_config_size

#: Families this benchmark is written for; they are reported as missing when unregistered.
EXPECTED = ("diffwave", "wavegrad")


def candidates(names: list[str] | None) -> tuple[list[str], list[str]]:
    """``(families to run, lines explaining each skipped one)``."""
    skipped = []
    if names is None:
        names = [n for n, f in sorted(FAMILIES.items()) if f.kind == NOISE_DRIVEN]
        skipped += [f"{n}: not registered yet (wavegen.models.registry), skipped"
                    for n in EXPECTED if n not in FAMILIES]
    chosen = []
    for name in names:
        family = FAMILIES.get(name)
        if family is None:
            skipped.append(f"{name}: not registered yet (wavegen.models.registry), skipped")
        elif family.kind != NOISE_DRIVEN:
            skipped.append(f"{name}: a {family.kind} family, not noise_driven, skipped")
        elif not callable(getattr(family.config_class, "preset", None)):
            skipped.append(f"{name}: {family.config_class.__name__} has no preset(), skipped")
        else:
            chosen.append(name)
    return chosen, skipped


def build(name: str):
    """The ``base`` preset's model (random weights, eval mode) and its config."""
    family = FAMILIES[name]
    config = family.config_class.preset("base")
    check_config_size(config, name)
    torch.manual_seed(0)
    return family.model_class(config).eval(), config


def inputs(config, seconds: float, sample_rate: int) -> tuple[int, torch.Tensor | None]:
    """``(audio samples, local [1, C, frames] or None)`` for ``seconds`` of audio."""
    channels = config.conditioning_channels
    hop = config.hop_length or 1
    frames = max(1, round(seconds * sample_rate / hop))
    if not channels:
        return round(seconds * sample_rate), None
    local = torch.randn(1, channels, frames, generator=torch.Generator().manual_seed(0)) - 5
    return frames * hop, local


def real_time_factor(model, length: int, local, nfe: int, repeats: int,
                     sample_rate: int) -> float:
    process = DiffusionProcess(sampler="ddim", sampler_steps=nfe)

    def denoise(x_t, t):
        return model(x_t, t, local=local)

    times = []
    with torch.inference_mode():
        for _ in range(repeats):
            start = time.perf_counter()
            process.sample(denoise, (1, 1, length), generator=torch.Generator().manual_seed(0))
            times.append(time.perf_counter() - start)
    return statistics.median(times) / (length / sample_rate)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--families", nargs="+", default=None,
                        help="families to time (default: every registered noise_driven one)")
    parser.add_argument("--seconds", type=float, default=1.0)
    parser.add_argument("--nfe", type=int, nargs="+", default=[6, 12, 50])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--sample-rate", type=int, default=22050)
    args = parser.parse_args(argv)
    if args.seconds <= 0 or args.repeats < 1 or any(n < 1 for n in args.nfe):
        parser.error("--seconds must be > 0, --repeats and every --nfe >= 1")
    torch.set_num_threads(args.threads)

    names, skipped = candidates(args.families)
    print(f"# torch {torch.__version__}, {platform.processor() or platform.machine()}, "
          f"{args.threads} threads, {args.seconds:g} s at {args.sample_rate} Hz, ddim, "
          f"median of {args.repeats}")
    for line in skipped:
        print(f"# {line}")
    rows = []
    for name in names:
        try:
            model, config = build(name)
        except Exception as exc:  # a family without a "base" preset, or a bad one
            print(f"# {name}: no usable preset('base') ({type(exc).__name__}: {exc}), skipped")
            continue
        length, local = inputs(config, args.seconds, args.sample_rate)
        params = sum(p.numel() for p in model.parameters())
        real_time_factor(model, length, local, 1, 1, args.sample_rate)  # warm-up
        rtfs = [real_time_factor(model, length, local, nfe, args.repeats, args.sample_rate)
                for nfe in args.nfe]
        rows.append((name, params, rtfs))
        print(f"# {name}: done", file=sys.stderr, flush=True)
    if not rows:
        print("# nothing to time")
        return 0
    header = f"{'family':<12} {'params':>10} " + " ".join(f"{'RTF@' + str(n):>10}"
                                                         for n in args.nfe)
    print(header)
    for name, params, rtfs in rows:
        print(f"{name:<12} {params / 1e6:>9.2f}M " + " ".join(f"{r:>10.3f}" for r in rtfs))
    return 0


if __name__ == "__main__":
    sys.exit(main())
