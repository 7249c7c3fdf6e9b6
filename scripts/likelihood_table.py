#!/usr/bin/env python
"""Likelihood of held-out audio under likelihood-trained models, in one unit: bits per
16-bit PCM sample.

Models with different outputs are put on the same footing by scoring the same held-out clips
(one per held-out piece of a MAESTRO-format corpus, quantised to 16 bits) as a discrete
distribution over the 65,536 PCM values:

* a flow (WaveGlow) has a density ``p(x)`` over the waveform in [-1, 1]. With uniform
  dequantisation (``x + u``, ``u ~ U(-D/2, D/2)``, ``D = 2 / 65536``) the density times ``D``
  bounds the probability of the PCM value from below (Theis et al. 2016), so
  ``bits = NLL(x + u) / ln 2 - log2 D`` is an upper bound of the flow's discrete code length
  (``-log2 D = 15``);
* a categorical model (WaveNet, SampleRNN: 256 mu-law or linear classes) gives each class
  ``k`` a probability;
  spreading it evenly over the ``n_k`` PCM values that quantise to ``k`` is a distribution
  over PCM values, with ``bits = -log2 P(k) + log2 n_k`` exactly;
* a Gaussian fitted to the clips themselves (mean and variance of all their samples), and
  the flow's and WaveNet's native units (nats per sample of the density; bits per mu-law
  sample) are printed beside.

Usage: python scripts/likelihood_table.py --corpus data/piano
           --bundle waveglow=artifacts/runs/waveglow-piano-tiny/checkpoints/best
           --bundle wavenet=artifacts/runs/wavenet-mel-piano-tiny/checkpoints/best
"""

from __future__ import annotations

import argparse
import math
import platform
import time

import torch

from wavegen.audio.features import get_preset
from wavegen.checkpoint import load_bundle
from wavegen.eval import heldout_clips
from wavegen.models.protocols import FlowModel
from wavegen.nn.distributions import Categorical

PCM_LEVELS = 65536
#: Width of one 16-bit PCM step on the [-1, 1] scale.
PCM_STEP = 2.0 / PCM_LEVELS


def quantise_pcm(audio: torch.Tensor) -> torch.Tensor:
    """``audio`` rounded to the 16-bit PCM grid (values ``k / 32768``)."""
    return torch.round(audio.clamp(-1.0, 1.0 - PCM_STEP / 2) * 32768) / 32768


def pcm_codes_per_class(head: Categorical) -> torch.Tensor:
    """``[classes]``: how many 16-bit PCM values the head's quantiser (mu-law or linear) puts
    into each class."""
    values = torch.arange(-32768, 32768, dtype=torch.float64) / 32768
    classes = head.targets_from_waveform(values.float()[None])[0]
    return torch.bincount(classes, minlength=head.num_params).double()


@torch.no_grad()
def flow_bits(model, clips, seed: int = 0) -> tuple[float, float]:
    """(bits per PCM sample with uniform dequantisation, nats per sample of the density)."""
    generator = torch.Generator().manual_seed(seed)
    total_nats, samples = 0.0, 0
    for clip in clips:
        pcm = quantise_pcm(clip.audio)
        noise = (torch.rand(pcm.shape, generator=generator) - 0.5) * PCM_STEP
        nats = model.loss(pcm + noise, clip.mel).item()
        total_nats += nats * pcm.shape[-1]
        samples += pcm.shape[-1]
    nats = total_nats / samples
    return nats / math.log(2) - math.log2(PCM_STEP), nats


@torch.no_grad()
def categorical_bits(model, clips) -> tuple[float, float]:
    """(bits per PCM sample, bits per quantised sample) of a sample-level model with a
    categorical head (WaveNet, SampleRNN; mu-law or linear classes)."""
    from wavegen.models.wavenet import shift_right

    head = model.head
    counts = pcm_codes_per_class(head)
    total_pcm, total_mu, samples = 0.0, 0.0, 0
    for clip in clips:
        pcm = quantise_pcm(clip.audio)
        targets = model.targets_from_waveform(pcm)
        local = clip.mel if model.config.conditioning_channels else None
        params = model(shift_right(targets, model.silence_input()), local)
        log_p = head.log_prob(params, targets).double()  # [B, T] nats
        total_mu += -log_p.sum().item() / math.log(2)
        total_pcm += (-log_p / math.log(2) + counts[targets].log2()).sum().item()
        samples += targets.numel()
    return total_pcm / samples, total_mu / samples


def gaussian_bits(clips) -> float:
    """Bits per PCM sample of one Gaussian fitted to all the clips' samples (discretised by
    its density times the PCM step)."""
    audio = torch.cat([quantise_pcm(c.audio).reshape(-1) for c in clips]).double()
    nats = 0.5 * math.log(2 * math.pi * math.e * audio.var().item())
    return nats / math.log(2) - math.log2(PCM_STEP)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--corpus", required=True, help="MAESTRO-format corpus folder")
    parser.add_argument("--bundle", action="append", default=[], metavar="NAME=PATH",
                        help="a flow or a categorical sample-level bundle (WaveNet, SampleRNN)")
    parser.add_argument("--seconds", type=float, default=2.0, help="clip length")
    parser.add_argument("--offset", type=float, default=1.0, help="clip start in each piece")
    parser.add_argument("--splits", nargs="+", default=["test"], help="held-out splits")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    models = []
    for spec in args.bundle:
        name, _, path = spec.partition("=")
        if not path:
            parser.error(f"--bundle {spec!r}: expected NAME=PATH")
        model, info = load_bundle(path)
        models.append((name, model, info))
    features = models[0][2].features if models else get_preset("hifigan-16k")
    clips = heldout_clips(args.corpus, features, args.seconds, args.offset, tuple(args.splits))
    print(f"machine: {platform.processor() or platform.machine()}, torch {torch.__version__}, "
          f"{args.threads} thread(s); {time.strftime('%Y-%m-%d')}; {len(clips)} held-out clips "
          f"of {args.seconds:g} s from {args.corpus} ({', '.join(args.splits)})")
    print(f"{'model':<24} {'bits / 16-bit sample':>21} {'native':>22}")
    print(f"{'Gaussian fit to the clips':<24} {gaussian_bits(clips):>21.3f} {'-':>22}")
    for name, model, info in models:
        if isinstance(model, FlowModel) and not hasattr(model, "step"):
            bits, nats = flow_bits(model, clips)
            native = f"{nats:.3f} nats/sample"
        elif isinstance(getattr(model, "head", None), Categorical):
            bits, mu_bits = categorical_bits(model, clips)
            native = f"{mu_bits:.3f} bits/class"
        else:
            parser.error(f"{name}: neither a flow nor a categorical sample-level model")
        print(f"{name:<24} {bits:>21.3f} {native:>22}", flush=True)
    print("bits / 16-bit sample: code length of the clips quantised to 16-bit PCM (flows: "
          "an upper bound by uniform dequantisation); lower is better.")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
