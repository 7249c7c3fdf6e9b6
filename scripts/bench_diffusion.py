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

Two more measurements:

* ``--memory-seconds S``: peak resident memory of vocoding ``S`` seconds of mel with each
  family's base model through :class:`wavegen.inference.DiffusionAdapter` (one network
  evaluation, which does not change the memory), in overlapping chunks (the default 512
  frames) and in one piece, each in a fresh process (``ru_maxrss``), beside the process's
  memory before sampling.
* ``--quality BUNDLE --corpus DIR``: a trained diffusion vocoder on the test split's clips
  of the corpus (keep the validation split for ``wavegen tune-steps``) (:mod:`wavegen.eval.vocoders`), MR-STFT distance and log-mel L1 against the
  recording at each ``--quality-nfe`` network-evaluation budget for each sampler (Heun's
  budget ``2 steps - 1``, so its steps are chosen to match), and whether some sampler at
  <= 10 NFE is within 10% of the best score at the largest budget.

Usage: python scripts/bench_diffusion.py [--families diffwave wavegrad] [--seconds 1]
       [--nfe 6 12 50] [--threads 2] [--repeats 1] [--sample-rate HZ] [--contention N]
       [--memory-seconds 60] [--quality BUNDLE --corpus DIR [--quality-nfe 3 6 12 25 50 200]]
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import statistics
import subprocess
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


def peak_memory_child(name: str, seconds: float, sample_rate: int | None,
                      chunk_frames: int) -> None:
    """(In a fresh process.) Vocode ``seconds`` of random mel with ``name``'s base model,
    one network evaluation, through the diffusion adapter; print JSON with the resident
    memory before sampling and the peak (MiB)."""
    from wavegen.checkpoint import BundleInfo
    from wavegen.inference import Conditioning, DiffusionAdapter, InferenceOptions

    model, config = build(name)
    sample_rate = sample_rate or config.sample_rate
    _, local = inputs(config, seconds, sample_rate)
    info = BundleInfo(name, config, sample_rate, conditioning="mel",
                      process=DiffusionProcess(sampler="ddim", sampler_steps=1).to_dict())
    adapter = DiffusionAdapter(model, info)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    written = [0]
    adapter.run(Conditioning("mel", local), InferenceOptions(chunk_frames=chunk_frames),
                sink=lambda piece: written.__setitem__(0, written[0] + piece.shape[-1]))
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"before": before, "peak": peak, "samples": written[0]}))


def peak_memory(name: str, seconds: float, sample_rate: int, chunk_frames: int,
                threads: int) -> dict:
    command = [sys.executable, __file__, "--memory-child", name, "--memory-seconds",
               str(seconds), "--sample-rate", str(sample_rate), "--chunk-frames",
               str(chunk_frames), "--threads", str(threads)]
    out = subprocess.run(command, capture_output=True, text=True, check=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def quality(bundle: str, corpus: str, budgets: list[int], clips: int, seconds: float,
            threads: int) -> int:
    """Held-out MR-STFT / log-mel L1 of ``bundle`` per sampler and NFE budget (module doc)."""
    from wavegen.eval import heldout_clips, pipeline_vocoder, score_vocoder
    from wavegen.inference import InferenceOptions

    torch.set_num_threads(threads)
    _, features = pipeline_vocoder(bundle, InferenceOptions())
    held = heldout_clips(corpus, features, seconds, splits=("test",), limit=clips)
    print(f"# {bundle}: {len(held)} held-out clips of {seconds:g} s from {corpus}; torch "
          f"{torch.__version__}, {threads} threads")
    print("| sampler | NFE | steps | MR-STFT | log-mel L1 |")
    print("| --- | --- | --- | --- | --- |")
    results = {}
    for sampler in ("ddpm", "ddim", "heun"):
        for nfe in budgets:
            steps = (nfe + 1) // 2 if sampler == "heun" else nfe
            if steps < 1 or (sampler == "heun" and 2 * steps - 1 != nfe):
                continue
            vocode, _ = pipeline_vocoder(bundle, InferenceOptions(sampler=sampler, steps=steps))
            summary = score_vocoder(vocode, held, features).summary()
            results[(sampler, nfe)] = summary
            print(f"| {sampler} | {nfe} | {steps} | {summary['mrstft']:.3f} | "
                  f"{summary['log_mel_l1']:.3f} |", flush=True)
    top = max(budgets)
    best_top = min(v["mrstft"] for (s, n), v in results.items() if n == top)
    few = [(v["mrstft"], s, n) for (s, n), v in results.items() if n <= 10]
    if few:
        score, sampler, nfe = min(few)
        verdict = "met" if score <= 1.10 * best_top else "not met"
        print(f"# best at <= 10 NFE: {sampler} {nfe} NFE, MR-STFT {score:.3f} vs {best_top:.3f} "
              f"at {top} NFE ({score / best_top - 1:+.1%}): target (within 10%) {verdict}")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--families", nargs="+", default=None,
                        help="families to time (default: every registered noise_driven one)")
    parser.add_argument("--seconds", type=float, default=1.0)
    parser.add_argument("--nfe", type=int, nargs="+", default=[6, 12, 50])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--sample-rate", type=int, default=None,
                        help="audio rate of the timed clips (default: each preset's own)")
    parser.add_argument("--memory-seconds", type=float, default=None,
                        help="measure peak memory of vocoding this many seconds instead")
    parser.add_argument("--chunk-frames", type=int, default=512)
    parser.add_argument("--contention", type=int, default=0, metavar="N",
                        help="also time the RTF table with N busy processes competing")
    parser.add_argument("--memory-child", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--quality", default=None, metavar="BUNDLE",
                        help="quality against NFE of this trained bundle instead")
    parser.add_argument("--corpus", default=None, help="held-out clips for --quality")
    parser.add_argument("--quality-nfe", type=int, nargs="+", default=[3, 6, 12, 25, 50, 200])
    parser.add_argument("--clips", type=int, default=3)
    parser.add_argument("--clip-seconds", type=float, default=1.5)
    args = parser.parse_args(argv)
    if args.memory_child:
        torch.set_num_threads(args.threads)
        peak_memory_child(args.memory_child, args.memory_seconds, args.sample_rate,
                          args.chunk_frames)
        return 0
    if args.quality:
        if not args.corpus:
            parser.error("--quality needs --corpus")
        return quality(args.quality, args.corpus, args.quality_nfe, args.clips,
                       args.clip_seconds, args.threads)
    if args.seconds <= 0 or args.repeats < 1 or any(n < 1 for n in args.nfe):
        parser.error("--seconds must be > 0, --repeats and every --nfe >= 1")
    torch.set_num_threads(args.threads)

    names, skipped = candidates(args.families)
    rate_text = f"{args.sample_rate} Hz" if args.sample_rate else "each preset's rate"
    print(f"# torch {torch.__version__}, {platform.processor() or platform.machine()}, "
          f"{args.threads} threads, {args.seconds:g} s at {rate_text}, ddim, "
          f"median of {args.repeats}")
    for line in skipped:
        print(f"# {line}")
    if args.memory_seconds:
        print(f"| family | {args.memory_seconds:g} s in chunks of {args.chunk_frames} frames | "
              f"in one piece | before sampling |")
        print("| --- | --- | --- | --- |")
        for name in names:
            rate = args.sample_rate or FAMILIES[name].config_class.preset("base").sample_rate
            chunked = peak_memory(name, args.memory_seconds, rate, args.chunk_frames,
                                  args.threads)
            whole = peak_memory(name, args.memory_seconds, rate, 10 ** 9, args.threads)
            print(f"| {name} | {chunked['peak']:.0f} MiB | {whole['peak']:.0f} MiB | "
                  f"{chunked['before']:.0f} MiB |", flush=True)
        return 0
    rows = rtf_rows(names, args)
    if not rows:
        print("# nothing to time")
        return 0
    print_rtf_rows(rows, args.nfe)
    if args.contention:
        from contention import competing_load

        with competing_load(args.contention):
            loaded = rtf_rows(names, args)
        print(f"# under load: {args.contention} busy process(es) competing")
        print_rtf_rows(loaded, args.nfe)
        for (name, _, quiet), (_, _, busy) in zip(rows, loaded):
            print(f"# {name}, loaded / quiet speed: " + ", ".join(
                f"NFE {n} {q / b:.2f}" for n, q, b in zip(args.nfe, quiet, busy)))
    return 0


def rtf_rows(names, args) -> list:
    """(family, parameters, [RTF per NFE budget]) for each buildable family."""
    rows = []
    for name in names:
        try:
            model, config = build(name)
        except Exception as exc:  # a family without a "base" preset, or a bad one
            print(f"# {name}: no usable preset('base') ({type(exc).__name__}: {exc}), skipped")
            continue
        rate = args.sample_rate or config.sample_rate
        length, local = inputs(config, args.seconds, rate)
        params = sum(p.numel() for p in model.parameters())
        real_time_factor(model, length, local, 1, 1, rate)  # warm-up
        rtfs = [real_time_factor(model, length, local, nfe, args.repeats, rate)
                for nfe in args.nfe]
        rows.append((name, params, rtfs))
        print(f"# {name}: done", file=sys.stderr, flush=True)
    return rows


def print_rtf_rows(rows, nfe_budgets) -> None:
    header = f"{'family':<12} {'params':>10} " + " ".join(f"{'RTF@' + str(n):>10}"
                                                         for n in nfe_budgets)
    print(header)
    for name, params, rtfs in rows:
        print(f"{name:<12} {params / 1e6:>9.2f}M " + " ".join(f"{r:>10.3f}" for r in rtfs))


if __name__ == "__main__":
    sys.exit(main())
