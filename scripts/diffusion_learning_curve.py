#!/usr/bin/env python
"""How a diffusion vocoder learns: held-out metrics of its checkpoints, step by step.

For every bundle given (e.g. the ``step-*`` checkpoints of a run, copied aside before
``keep_last`` removes them), on one clip per held-out piece of ``--corpus``:

* ``loss``: the deterministic validation loss of :class:`~wavegen.train.tasks.diffusion.
  DiffusionTask` (fixed times, fixed noise);
* ``cond_use``: ``1 - loss / loss with the mel rotated by half its frames``: 0 when the
  model uses only the mel's overall statistics, well above 0 when it follows the mel frame
  by frame;
* with ``--sample-steps N``: MR-STFT distance and log-mel L1 of the vocoded clips (the
  bundle's sampler at N steps; slow: N network passes per clip).

Usage: python scripts/diffusion_learning_curve.py --corpus data/piano runs/curve/dw-norm-step-*
           [--sample-steps 50] [--seconds 1] [--threads 1]
"""

from __future__ import annotations

import argparse
import re

import torch

from wavegen.checkpoint import load_bundle
from wavegen.diffusion.process import DiffusionProcess
from wavegen.eval import heldout_clips, pipeline_vocoder, score_vocoder
from wavegen.inference import InferenceOptions
from wavegen.train.tasks.diffusion import DiffusionTask


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("bundles", nargs="+")
    parser.add_argument("--corpus", required=True)
    parser.add_argument("--seconds", type=float, default=1.0)
    parser.add_argument("--clips", type=int, default=None)
    parser.add_argument("--sample-steps", type=int, default=None)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)

    def step_of(path: str) -> int:
        found = re.findall(r"step-(\d+)", path)
        return int(found[-1]) if found else -1

    columns = "| bundle | step | loss | cond_use |"
    if args.sample_steps:
        columns += f" MR-STFT ({args.sample_steps} steps) | log-mel L1 |"
    print(columns)
    print("| --- " * (columns.count("|") - 1) + "|")
    clips = None
    for path in sorted(args.bundles, key=step_of):
        model, info = load_bundle(path)
        model.eval()
        if clips is None:
            clips = heldout_clips(args.corpus, info.features, args.seconds, limit=args.clips)
        task = DiffusionTask(model, DiffusionProcess.from_dict(dict(info.process)),
                             local_key="mel", features=info.features)
        loss = use = 0.0
        for clip in clips:
            metrics = task.validation_metrics(model, {"audio": clip.audio, "mel": clip.mel})
            loss += metrics["loss"] / len(clips)
            use += metrics["cond_use"] / len(clips)
        row = f"| {path} | {step_of(path)} | {loss:.4f} | {use:+.3f} |"
        if args.sample_steps:
            vocode, _ = pipeline_vocoder(path, InferenceOptions(steps=args.sample_steps))
            summary = score_vocoder(vocode, clips, info.features).summary()
            row += f" {summary['mrstft']:.3f} | {summary['log_mel_l1']:.3f} |"
        print(row, flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
