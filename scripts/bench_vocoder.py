#!/usr/bin/env python
"""Vocoder inference: real-time factor and memory, MelGAN, HiFi-GAN V1/V3 and WaveGlow at 22.05 kHz.

Speed: each generator (random weights, weight norm folded, inference mode; speed does not
depend on the weights) vocodes ``--seconds`` of log-mel in the default chunks (WaveGlow:
the paper's model at sigma 0.6, rendered in chunks with positional noise as `wavegen vocode`
does; ``waveglow-tiny`` is the CPU preset at 16 kHz-sized settings on the same mel); the
real-time factor is wall time / audio duration (< 1 is faster than real time), the median
of ``--repeats`` warm runs, on the CPU with ``--threads`` threads and, when CUDA is
available, on the GPU in float32 and bf16.

Memory: each measurement runs in a fresh process and reports its peak resident memory
(VmHWM: interpreter, torch, model and input included): one pass over 60 s of mel, chunked
vocoding of 60 s, and chunked vocoding of 10 minutes (not for WaveGlow unless
``--long-flow``: at its CPU speed 10 minutes of audio take most of an hour). The chunked output goes
to a sink that drops it (as `wavegen vocode` streams it into the output file), so flat
memory means the 10-minute peak equals the 60-second one.

Against the official code (``--official``): HiFi-GAN V1 and V3 beside a plain PyTorch
generator laid out as jik876/hifi-gan's ``Generator.forward`` runs after
``remove_weight_norm`` (:class:`OfficialHiFiGAN`, our own code over the same folded
weights: conv modules called on ``[B, C, T]``, a leaky ReLU before every conv, the MRF
blocks summed then divided). Both vocode the same ``--seconds`` of mel in one pass and in
the default chunks, alternating, median of ``--repeats``; the table gives seconds, the
ratio official / wavegen (> 1: wavegen faster) and the largest output difference; on a CPU
with AVX-512 BF16 also wavegen under bf16 autocast (``wavegen vocode --bf16``: not exact).
``--contention N`` repeats the table with N busy processes competing for the cores
(scripts/contention.py) and prints loaded / quiet speed.

Usage: python scripts/bench_vocoder.py [--threads 2] [--seconds 10] [--repeats 3]
       [--models melgan hifigan-v1 hifigan-v3 waveglow waveglow-tiny] [--no-memory]
       [--long-flow]
       python scripts/bench_vocoder.py --official [--contention 1] [--repeats 5]
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

from wavegen.audio.features import PRESETS
from wavegen.inference.chunked_noise import render_chunked
from wavegen.models.hifigan import HiFiGANConfig, HiFiGANGenerator
from wavegen.models.melgan import MelGANConfig, MelGANGenerator
from wavegen.models.waveglow import WaveGlow, WaveGlowConfig
from wavegen.native import cpu_flags
from wavegen.nn.weight_norm import fold_weight_norm
from wavegen.vocoder import CHUNK_FRAMES, OVERLAP_FRAMES, Vocoder

FEATURES = PRESETS["hifigan-22k"]
MODELS = ("melgan", "hifigan-v1", "hifigan-v3", "waveglow", "waveglow-tiny")
FLOWS = ("waveglow", "waveglow-tiny")


def build(name: str) -> torch.nn.Module:
    torch.manual_seed(0)
    if name == "melgan":
        return MelGANGenerator(MelGANConfig())
    if name == "waveglow":
        return WaveGlow(WaveGlowConfig.preset("paper"))
    if name == "waveglow-tiny":
        return WaveGlow(WaveGlowConfig.preset("tiny", sample_rate=FEATURES.sample_rate))
    return HiFiGANGenerator(HiFiGANConfig.preset(name.split("-")[1]))


class FlowVocoder:
    """A flow rendered as `wavegen vocode` renders it (FlowAdapter): weight norm folded,
    chunks of CHUNK_FRAMES with OVERLAP_FRAMES of context, positional noise, sigma 0.6."""

    def __init__(self, model: WaveGlow, device: str = "cpu", bf16: bool = False):
        self.model = fold_weight_norm(model).eval().to(device)
        self.device, self.dtype = device, torch.bfloat16 if bf16 else None

    def __call__(self, mel: torch.Tensor, sink=None):
        def render(window, noise):
            return self.model.infer(window, sigma=0.6, noise=noise(0).to(window.device),
                                    dtype=self.dtype)

        with torch.inference_mode():
            _, seconds = render_chunked(render, mel, self.model.config.hop_length, 0,
                                        chunk_frames=CHUNK_FRAMES, overlap_frames=OVERLAP_FRAMES,
                                        sink=sink or (lambda piece: None), device=self.device)
        return type("Result", (), {"seconds": seconds})()

    def one_pass(self, mel: torch.Tensor) -> None:
        with torch.inference_mode():
            self.model.infer(mel, sigma=0.6)


def flow_joins(seconds: float = 6.0) -> None:
    """Chunked (default chunks and overlap) vs one pass for the paper's WaveGlow whose
    couplings are not the identity (end convs randomised: a fresh model's are zero, which
    would make every coupling the identity and the joins trivially exact)."""
    model = build("waveglow")
    with torch.no_grad():
        for step in model.flows:
            torch.nn.init.normal_(step.coupling.net.end.weight, std=0.02)
    vocoder = FlowVocoder(model)
    mel = mel_for(seconds)
    pieces = []
    vocoder(mel, sink=pieces.append)
    chunked = torch.cat(pieces, dim=-1)
    from wavegen.inference.chunked_noise import PositionalNoise

    noise = PositionalNoise(0, 1).window(0, 0, mel.shape[-1] * FEATURES.hop_length)
    with torch.inference_mode():
        whole = vocoder.model.infer(mel, sigma=0.6, noise=noise).clamp(-1, 1)
    diff = (chunked - whole).abs()
    print(f"WaveGlow (paper) chunked vs one pass, {seconds:g} s, chunks of {CHUNK_FRAMES} "
          f"frames with {OVERLAP_FRAMES} of context, receptive field "
          f"{model.config.receptive_field} samples: max |diff| {diff.max():.2e}, RMS diff "
          f"{diff.pow(2).mean().sqrt():.2e} vs output RMS {whole.pow(2).mean().sqrt():.2e}")


class OfficialHiFiGAN(torch.nn.Module):
    """HiFi-GAN's generator as the official code runs it (jik876/hifi-gan ``models.py``,
    after ``remove_weight_norm``), written here over a wavegen generator's folded modules:
    ``[B, C, T]`` activations, every conv called as a module, a fresh leaky ReLU before
    each conv, the MRF outputs summed out of place and divided."""

    def __init__(self, generator: HiFiGANGenerator):
        super().__init__()
        self.g = fold_weight_norm(generator).eval()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        g = self.g
        x = g.conv_pre(x)
        for i, up in enumerate(g.ups):
            x = F.leaky_relu(x, 0.1)
            x = up(x)
            xs = None
            for j in range(g.num_kernels):
                y = self._resblock(g.resblocks[i * g.num_kernels + j], x)
                xs = y if xs is None else xs + y
            x = xs / g.num_kernels
        x = F.leaky_relu(x)
        x = g.conv_post(x)
        return torch.tanh(x)

    @staticmethod
    def _resblock(block: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
        if hasattr(block, "convs1"):  # ResBlock1
            for c1, c2 in zip(block.convs1, block.convs2):
                xt = F.leaky_relu(x, 0.1)
                xt = c1(xt)
                xt = F.leaky_relu(xt, 0.1)
                xt = c2(xt)
                x = xt + x
            return x
        for c in block.convs:  # ResBlock2
            xt = F.leaky_relu(x, 0.1)
            xt = c(xt)
            x = xt + x
        return x


def _vocode_seconds(who: str, vocoder: Vocoder, mel: torch.Tensor, chunk_frames: int) -> float:
    """Seconds to vocode ``mel`` in chunks of ``chunk_frames`` (all of it: one pass). wavegen
    runs as `wavegen vocode` does (Vocoder: threads chosen per chunk for the machine's
    load); the official layout as the official code would, on the chunks' windows with
    torch's fixed thread count."""
    if who != "official":
        return vocoder(mel, chunk_frames=chunk_frames, sink=lambda piece: None).seconds
    frames, start_time = mel.shape[-1], time.perf_counter()
    with torch.inference_mode():
        for start in range(0, frames, chunk_frames):
            lo = max(0, start - OVERLAP_FRAMES)
            hi = min(frames, start + chunk_frames + OVERLAP_FRAMES)
            vocoder.generator(mel[..., lo:hi])
    return time.perf_counter() - start_time


def official_comparison(names, seconds: float, repeats: int, bf16: bool) -> dict:
    """name -> seconds of the official layout and of wavegen (and of wavegen under bf16
    autocast with ``bf16``), one pass and chunked, and the largest output difference
    (the same weights)."""
    mel = mel_for(seconds)
    out = {}
    for name in names:
        ours = Vocoder(build(name), FEATURES)
        official = Vocoder(OfficialHiFiGAN(build(name)), FEATURES)
        with torch.inference_mode():
            diff = float((ours.generator(mel) - official.generator(mel)).abs().max())
        runs = {"official": official, "wavegen": ours}
        if bf16:
            runs["wavegen bf16"] = Vocoder(build(name), FEATURES, bf16=True)
        times = {(who, mode): [] for who in runs for mode in ("one pass", "chunked")}
        for vocoder in runs.values():  # warm-up
            vocoder(mel[..., :64])
        for _ in range(repeats):
            for who, vocoder in runs.items():
                times[who, "one pass"].append(_vocode_seconds(who, vocoder, mel, mel.shape[-1]))
                times[who, "chunked"].append(_vocode_seconds(who, vocoder, mel, CHUNK_FRAMES))
        out[name] = {key: statistics.median(value) for key, value in times.items()}
        out[name]["diff"] = diff
    return out


def print_official(table: dict, seconds: float, quiet: dict | None = None) -> None:
    bf16 = any(key[0] == "wavegen bf16" for row in table.values() for key in row
               if isinstance(key, tuple))
    head = "| model | mode | official s | wavegen s | official / wavegen |"
    rule = "| --- | --- | --- | --- | --- |"
    if bf16:
        head += " wavegen bf16 s | official / bf16 |"
        rule += " --- | --- |"
    if quiet is not None:
        head += " official loaded / quiet | wavegen loaded / quiet |"
        rule += " --- | --- |"
    print(head)
    print(rule)
    for name, row in table.items():
        for mode in ("one pass", "chunked"):
            o, w = row["official", mode], row["wavegen", mode]
            line = f"| {name} | {mode} | {o:.3f} | {w:.3f} | {o / w:.2f}x |"
            if bf16:
                b = row["wavegen bf16", mode]
                line += f" {b:.3f} | {o / b:.2f}x |"
            if quiet is not None:
                q = quiet[name]
                line += f" {q['official', mode] / o:.2f} | {q['wavegen', mode] / w:.2f} |"
            print(line)
    diffs = ", ".join(f"{name} {row['diff']:.1e}" for name, row in table.items())
    print(f"{seconds:g} s of mel; max |wavegen - official| over one pass: {diffs}")


def make_vocoder(name: str, device: str = "cpu", bf16: bool = False):
    if name in FLOWS:
        return FlowVocoder(build(name), device, bf16)
    return Vocoder(build(name), FEATURES, device=device, bf16=bf16)


def mel_for(seconds: float, batch: int = 1) -> torch.Tensor:
    frames = int(seconds * FEATURES.sample_rate / FEATURES.hop_length)
    return torch.randn(batch, FEATURES.n_mels, frames, generator=torch.Generator().manual_seed(0)) - 5


def real_time_factor(name: str, seconds: float, repeats: int, device: str, bf16: bool) -> float:
    vocoder = make_vocoder(name, device, bf16)
    mel = mel_for(seconds)
    vocoder(mel[..., :64])  # warm-up (allocator, kernels)
    times = [vocoder(mel, sink=lambda piece: None).seconds for _ in range(repeats)]
    return statistics.median(times) / seconds


def _status_mb(field: str) -> float:
    """``VmRSS`` (now) or ``VmHWM`` (peak since the last reset) of this process, in MiB."""
    with open("/proc/self/status") as handle:
        for line in handle:
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024
    raise RuntimeError(f"no {field} in /proc/self/status")


def memory_probe(name: str, seconds: float, mode: str) -> dict:
    """Runs in a child process: the process's peak resident memory (MiB), model included."""
    torch.set_num_threads(2)
    vocoder = make_vocoder(name)
    mel = mel_for(seconds)
    start = time.perf_counter()
    if mode == "one-pass" and name in FLOWS:
        vocoder.one_pass(mel)
    elif mode == "one-pass":
        with torch.inference_mode():
            vocoder.generator(mel)
    else:
        vocoder(mel, sink=lambda piece: None)
    return {"peak_mb": _status_mb("VmHWM"), "seconds": time.perf_counter() - start}


def probe_in_child(name: str, seconds: float, mode: str) -> dict:
    out = subprocess.run([sys.executable, __file__, "--memory-probe", name, str(seconds), mode],
                         capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--models", nargs="+", default=list(MODELS), choices=MODELS)
    parser.add_argument("--no-memory", action="store_true")
    parser.add_argument("--flow-joins", action="store_true",
                        help="only measure WaveGlow's chunked-vs-one-pass difference")
    parser.add_argument("--long-flow", action="store_true",
                        help="also measure WaveGlow's 10-minute chunked memory (slow on a CPU)")
    parser.add_argument("--official", action="store_true",
                        help="only compare HiFi-GAN V1 / V3 with the official code's layout")
    parser.add_argument("--contention", type=int, default=0, metavar="N",
                        help="with --official: also time it with N busy processes competing "
                             "for the cores (scripts/contention.py)")
    parser.add_argument("--memory-probe", nargs=3, metavar=("MODEL", "SECONDS", "MODE"),
                        help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.memory_probe:
        name, seconds, mode = args.memory_probe
        print(json.dumps(memory_probe(name, float(seconds), mode)))
        return
    torch.set_num_threads(args.threads)
    if args.flow_joins:
        flow_joins()
        return
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, "
          f"torch {torch.__version__}, {args.threads} thread(s); "
          f"{time.strftime('%Y-%m-%d')}")
    if args.official:
        names = ("hifigan-v1", "hifigan-v3")
        bf16 = "avx512_bf16" in cpu_flags()  # bf16 autocast only pays with the instructions
        quiet = official_comparison(names, args.seconds, args.repeats, bf16)
        print("quiet machine")
        print_official(quiet, args.seconds)
        if args.contention:
            from contention import competing_load

            with competing_load(args.contention):
                loaded = official_comparison(names, args.seconds, args.repeats, False)
            print(f"under load: {args.contention} busy process(es) competing")
            print_official(loaded, args.seconds, quiet)
        return
    gpu = torch.cuda.is_available()
    header = f"{'model':<12} {'params':>8} {'CPU RTF':>9}"
    if gpu:
        header += f" {'GPU RTF':>9} {'GPU bf16':>9}"
    if not args.no_memory:
        header += f" {'60s 1-pass MB':>14} {'60s chunk MB':>13} {'600s chunk MB':>14} {'ratio':>6}"
    print(header)
    for name in args.models:
        params = sum(p.numel() for p in build(name).parameters())
        row = f"{name:<12} {params / 1e6:>7.2f}M {real_time_factor(name, args.seconds, args.repeats, 'cpu', False):>9.3f}"
        if gpu:
            row += f" {real_time_factor(name, args.seconds, args.repeats, 'cuda', False):>9.4f}"
            row += f" {real_time_factor(name, args.seconds, args.repeats, 'cuda', True):>9.4f}"
        if not args.no_memory:
            one = probe_in_child(name, 60, "one-pass")["peak_mb"]
            short = probe_in_child(name, 60, "chunked")["peak_mb"]
            if name in FLOWS and name != "waveglow-tiny" and not args.long_flow:
                long_text = "-"
            else:
                long_text = f"{probe_in_child(name, 600, 'chunked')['peak_mb']:.0f}"
            row += f" {one:>14.0f} {short:>13.0f} {long_text:>14} {one / max(short, 1):>6.1f}"
        print(row, flush=True)
    print("RTF = wall time / audio duration (< 1: faster than real time); MB = peak resident "
          "memory of the process; ratio = one pass / chunked at 60 s.")


if __name__ == "__main__":
    main()
