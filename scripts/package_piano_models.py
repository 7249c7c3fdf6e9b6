#!/usr/bin/env python
"""Package trained runs as the shipped piano models (``wavegen/pretrained/piano``).

    python scripts/package_piano_models.py --midi-mel runs/midi-mel --vocoder runs/piano-vocoder

writes the pipeline folder that ``wavegen sample --model piano`` and (its ``vocoder/``
stage) ``wavegen vocode --model piano-vocoder`` use::

    wavegen/pretrained/piano/
      pipeline.json          midi_to_mel -> vocoder
      MODEL_CARD.md          (kept: written by hand from the measurements)
      midi_to_mel/           config.json, model.safetensors, recipe.yaml
      vocoder/               config.json, model.safetensors, recipe.yaml, MODEL_CARD.md (kept)

Each stage is the run's ``checkpoints/latest`` bundle with only what inference needs: its
``config.json`` and one weights file (the EMA weights when the run kept them, saved as
``model.safetensors``), and the resolved recipe the run was trained with (``recipe.yaml``
of the run folder). Bundles over ``--max-mb`` are refused: the package must stay small.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def stage(run: Path, target: Path, max_mb: float) -> None:
    """Copy the inference part of ``run``'s latest checkpoint and its recipe to ``target``."""
    from wavegen.checkpoint import resolve_bundle_path

    bundle = Path(resolve_bundle_path(run / "checkpoints" / "latest"))
    if not (bundle / "config.json").is_file():
        sys.exit(f"package_piano_models: error: {bundle} is not a bundle")
    weights = bundle / "ema.safetensors"
    if not weights.is_file():
        weights = bundle / "model.safetensors"
    size = weights.stat().st_size / 1e6
    if size > max_mb:
        sys.exit(f"package_piano_models: error: {weights} is {size:.1f} MB, over {max_mb} MB")
    target.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(bundle / "config.json", target / "config.json")
    shutil.copyfile(weights, target / "model.safetensors")
    shutil.copyfile(run / "recipe.yaml", target / "recipe.yaml")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--midi-mel", required=True, type=Path, help="run folder of the "
                        "MIDI -> mel model (recipes/midi-mel-tiny.yaml)")
    parser.add_argument("--vocoder", required=True, type=Path, help="run folder of the "
                        "vocoder (recipes/piano-vocoder-tiny.yaml)")
    parser.add_argument("--out", type=Path, default=REPO / "wavegen" / "pretrained" / "piano")
    parser.add_argument("--max-mb", type=float, default=5.0)
    args = parser.parse_args(argv)

    from wavegen.inference.manifest import write_manifest
    from wavegen.inference.pipeline import load

    # Build next to the target, check that it loads, then swap the stages in.
    with tempfile.TemporaryDirectory(dir=args.out.parent) as scratch:
        work = Path(scratch) / "piano"
        stage(args.midi_mel, work / "midi_to_mel", args.max_mb)
        stage(args.vocoder, work / "vocoder", args.max_mb)
        write_manifest(work, ["midi_to_mel", "vocoder"],
                       "MIDI -> piano audio: piano roll -> log-mel (spectrogram predictor) -> "
                       "learned magnitude + NNLS + Griffin-Lim")
        load(work)
        args.out.mkdir(parents=True, exist_ok=True)
        for name in ("midi_to_mel", "vocoder"):
            (args.out / name).mkdir(exist_ok=True)
            for file in (work / name).iterdir():
                shutil.copyfile(file, args.out / name / file.name)
        shutil.copyfile(work / "pipeline.json", args.out / "pipeline.json")
    print(f"wrote {args.out}: " + ", ".join(
        f"{p.relative_to(args.out)} {p.stat().st_size / 1e6:.2f} MB"
        for p in sorted(args.out.rglob("*.safetensors"))))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
