#!/usr/bin/env python
"""Vocoders side by side on held-out clips of a rendered or real MAESTRO-format corpus.

Griffin-Lim (the baseline, no learning) and every ``--bundle NAME=PATH`` (any vocoder
bundle or pipeline: GAN, diffusion, flow) turn the log-mel of one clip per held-out piece
into audio, scored against the recording (see :mod:`wavegen.eval.vocoders`): MR-STFT
distance, log-mel L1, the chroma correlation (does it play the recording's pitch classes at
the right times), the share of energy on the ``sample_rate / hop`` harmonic grid (the
reference's own share is the first row) and the real-time factor. Diffusion bundles run
with ``--steps`` / ``--sampler`` (default: their process's); ``NAME@STEPS=PATH`` sets the
steps of one bundle. ``--out DIR`` keeps every output as ``DIR/<name>/<clip>.wav``.

Usage: python scripts/compare_vocoders.py --corpus data/piano \
           --bundle hifigan=runs/cmp-hifigan/checkpoints/best \
           --bundle diffwave@50=runs/cmp-diffwave/checkpoints/best [--seconds 2] [--out DIR]

With ``--offset 0`` the files under ``--out`` start where their MIDI files do, so
``wavegen score DIR/<name> CORPUS/<year>`` scores each vocoder's output against the score.
"""

from __future__ import annotations

import argparse
import platform
import sys
from pathlib import Path

import torch

from wavegen.audio.features import get_preset
from wavegen.audio.io import save_audio
from wavegen.eval import griffin_lim_vocoder, heldout_clips, pipeline_vocoder, score_vocoder
from wavegen.inference import InferenceOptions


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--corpus", required=True, help="MAESTRO-format corpus folder")
    parser.add_argument("--bundle", action="append", default=[], metavar="NAME[@STEPS]=PATH")
    parser.add_argument("--features", default=None,
                        help="front-end of Griffin-Lim and the clips when no bundle names one "
                             "(a preset; default: the first bundle's)")
    parser.add_argument("--seconds", type=float, default=2.0, help="clip length")
    parser.add_argument("--offset", type=float, default=1.0, help="clip start in each piece")
    parser.add_argument("--clips", type=int, default=None, help="at most this many clips")
    parser.add_argument("--griffin-lim", type=int, default=32, help="Griffin-Lim iterations")
    parser.add_argument("--steps", type=int, default=None, help="diffusion steps")
    parser.add_argument("--sampler", default=None, help="diffusion sampler")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default=None, help="write every output here")
    parser.add_argument("--splits", default="validation,test",
                        help="corpus splits to take clips from, comma-separated (default "
                             "validation,test; a corpus no model trained on can use all)")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)

    vocoders, features = [], None
    for spec in args.bundle:
        name, _, path = spec.partition("=")
        if not path:
            parser.error(f"--bundle {spec!r}: expected NAME=PATH")
        name, _, steps = name.partition("@")
        options = InferenceOptions(seed=args.seed, sampler=args.sampler,
                                   steps=int(steps) if steps else args.steps)
        try:
            vocode, bundle_features = pipeline_vocoder(path, options)
        except Exception as exc:  # a bundle that does not take these options: retry plainly
            if "not used" not in str(exc) and "no stage" not in str(exc):
                raise
            vocode, bundle_features = pipeline_vocoder(path, InferenceOptions(seed=args.seed))
        if features is None:
            features = bundle_features
        elif bundle_features.differences(features):
            parser.error(f"{name}: its front-end differs from the first bundle's "
                         f"({'; '.join(bundle_features.differences(features))})")
        vocoders.append((name + (f" ({steps} steps)" if steps else ""), vocode))
    if features is None:
        features = get_preset(args.features or "hifigan-16k")
    vocoders.insert(0, (f"Griffin-Lim ({args.griffin_lim} it.)",
                        griffin_lim_vocoder(features, args.griffin_lim, args.seed)))
    clips = heldout_clips(args.corpus, features, args.seconds, args.offset,
                          splits=tuple(args.splits.split(",")), limit=args.clips)
    print(f"# {len(clips)} held-out clips of {args.seconds:g} s from {args.corpus}, features "
          f"{features.name} ({features.sample_rate} Hz, hop {features.hop_length}); torch "
          f"{torch.__version__}, {platform.processor() or platform.machine()}, "
          f"{args.threads} threads")
    print("| vocoder | MR-STFT | log-mel L1 | chroma r | energy on the sr/hop grid | RTF |")
    print("| --- | --- | --- | --- | --- | --- |")
    reference = score_vocoder(None, clips, features).summary()
    if args.out:
        (Path(args.out) / "reference").mkdir(parents=True, exist_ok=True)
        for clip in clips:
            save_audio(Path(args.out) / "reference" / (Path(clip.piece).stem + ".wav"),
                       clip.audio[0], features.sample_rate)
    print(f"| reference recording | 0 | 0 | 1 | {reference['grid_share']:.2f} | - |")
    for name, vocode in vocoders:
        save = None
        if args.out:
            folder = Path(args.out) / name.split(" ")[0].lower()
            folder.mkdir(parents=True, exist_ok=True)

            def save(clip, audio, folder=folder):
                save_audio(folder / (Path(clip.piece).stem + ".wav"), audio[0], features.sample_rate)

        summary = score_vocoder(vocode, clips, features, save).summary()
        print(f"| {name} | {summary['mrstft']:.3f} | {summary['log_mel_l1']:.3f} | "
              f"{summary['chroma_r']:.3f} | {summary['grid_share']:.2f} | {summary['rtf']:.3f} |",
              flush=True)
        print(f"# {name}: done", file=sys.stderr, flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
