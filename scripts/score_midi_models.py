"""Do MIDI-conditioned models follow the score? Sample held-out MIDI files, score the audio.

    python scripts/score_midi_models.py --midi-dir data/heldout --seconds 10 --pieces 10 \\
        --out /tmp/scored wavenet=runs/wavenet-midi/checkpoints/latest hierarchy=hier/

Each MODEL is ``NAME=PATH`` (optionally followed by sampling settings,
``NAME=PATH,cfg=2,temperature=0.9,top_p=0.95``): a MIDI-conditioned bundle or pipeline manifest (sampled like
``wavegen sample PATH --midi FILE --seconds S``) or a hierarchy folder (``hierarchy.json``,
sampled level by level; its finest level is the model's row, and each level's own audio
gets a row too). Every model renders the first
``--pieces`` MIDI files under ``--midi-dir`` (sorted) for ``--seconds`` with seed 0; the
audio is written under ``--out/NAME/`` and scored against its MIDI with
:mod:`wavegen.eval.score` (note-onset precision / recall / F1 at 50 ms through mir_eval,
chroma correlation, raw pitch accuracy on the single-note passages). The recording beside
each MIDI file (the built-in synthesiser's rendering of a ``wavegen prepare`` corpus) is
scored the same way as the ceiling. Prints one Markdown table: per model the means over the
pieces, and the wall time per second of audio (model loading excluded). The pitch accuracy
is undefined for a piece without (enough) single-note frames: its mean is over the pieces
where it is defined, followed by their number (``0.912 (3/10)``), or ``-`` when it is
defined for none.
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import sys
import time
from pathlib import Path

import torch


#: Sampling settings a model may carry after its path (``NAME=PATH,cfg=2,temperature=0.9``).
SETTINGS = {"cfg": "guidance", "temperature": "temperature", "top_p": "top_p"}


def _models(specs: list[str]) -> list[tuple[str, str, dict]]:
    out = []
    for spec in specs:
        name, sep, rest = spec.partition("=")
        path, *settings = rest.split(",")
        if not sep or not name or not path:
            sys.exit(f"score_midi_models: error: a model is NAME=PATH[,cfg=G,...], got {spec!r}")
        if not os.path.exists(path):
            sys.exit(f"score_midi_models: error: {path}: no such bundle, manifest or hierarchy")
        options = {}
        for item in settings:
            key, _, value = item.partition("=")
            if key not in SETTINGS:
                sys.exit(f"score_midi_models: error: unknown setting {key!r} in {spec!r} "
                         f"(known: {', '.join(SETTINGS)})")
            options[SETTINGS[key]] = float(value)
        out.append((name, path, options))
    return out


def _midi_files(folder: str, pieces: int) -> list[Path]:
    from wavegen.eval.score import MIDI_SUFFIXES

    files = sorted(p for p in Path(folder).rglob("*") if p.suffix in MIDI_SUFFIXES
                   and not any(part.startswith(".") for part in p.parts))
    if not files:
        sys.exit(f"score_midi_models: error: no MIDI files under {folder}")
    return files[:pieces]


def _render(path: str, midi: Path, seconds: float, output: Path,
            settings: dict) -> tuple[float, dict]:
    """Sample ``path`` for ``midi``, write ``output``: (the sampling wall time, level ->
    that level's audio file for a hierarchy, else {})."""
    from wavegen.audio.io import save_audio
    from wavegen.hierarchy import is_hierarchy
    from wavegen.inference import InferenceOptions, InputRequest
    from wavegen.sample import HierarchyRequest, sample, sample_hierarchy

    request = InputRequest(seconds=seconds, midi=str(midi))
    options = InferenceOptions(seed=0, backend="auto", warn=lambda line: None, **settings)
    if is_hierarchy(path):
        from wavegen.sample import level_output

        result = sample_hierarchy(path, request, options, HierarchyRequest(), output)
        return result.seconds, {level: level_output(output, level) for level in result.levels}
    result, pipeline = sample(path, request, options)
    save_audio(output, result.audio[0], pipeline.sample_rate)
    return result.seconds, {}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("models", nargs="+", metavar="NAME=PATH")
    parser.add_argument("--midi-dir", required=True, help="folder of held-out MIDI files")
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--pieces", type=int, default=10)
    parser.add_argument("--out", required=True, help="folder for the rendered audio")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    from wavegen.eval.score import score_file

    models = _models(args.models)
    midis = _midi_files(args.midi_dir, args.pieces)
    keys = ("onset_precision", "onset_recall", "onset_f1", "chroma_r")
    rows = []

    def add(totals: dict[str, float], pitches: list[float], scores: dict) -> None:
        for key in keys:
            totals[key] += scores[key]
        if scores["pitch_accuracy"] is not None:  # None: undefined, not 0
            pitches.append(scores["pitch_accuracy"])

    def pitch_mean(pitches: list[float]) -> str:
        if not pitches:
            return "-"
        return f"{sum(pitches) / len(pitches):.3f} ({len(pitches)}/{len(midis)})"

    for name, path, settings in [("rendering (ceiling)", None, {}), *models]:
        totals, pitches, wall, audio_seconds = dict.fromkeys(keys, 0.0), [], 0.0, 0.0
        level_totals: dict[int, tuple[dict[str, float], list[float]]] = {}
        for midi in midis:
            if path is None:
                audio = next((midi.with_suffix(s) for s in (".wav", ".flac")
                              if midi.with_suffix(s).is_file()), None)
                if audio is None:
                    sys.exit(f"score_midi_models: error: no rendering beside {midi}")
            else:
                folder = Path(args.out) / name
                folder.mkdir(parents=True, exist_ok=True)
                audio = folder / f"{midi.stem}.wav"
                taken, levels = _render(path, midi, args.seconds, audio, settings)
                wall += taken
                audio_seconds += args.seconds
                for level, level_audio in levels.items():
                    into = level_totals.setdefault(level, (dict.fromkeys(keys, 0.0), []))
                    add(*into, score_file(level_audio, midi, args.seconds))
            scores = score_file(audio, midi, args.seconds)
            add(totals, pitches, scores)
            pitch = scores["pitch_accuracy"]
            print(f"{name}: {midi.name}: onset F1 {scores['onset_f1']:.3f}, chroma r "
                  f"{scores['chroma_r']:.3f}, pitch acc "
                  f"{'-' if pitch is None else f'{pitch:.3f}'}", file=sys.stderr)
        n = len(midis)
        rtf = "" if path is None else f"{wall / audio_seconds:.2f}"
        rows.append((name, *(totals[k] / n for k in keys), pitch_mean(pitches), rtf))
        for level in sorted(level_totals, reverse=True):
            level_sums, level_pitches = level_totals[level]
            rows.append((f"{name}, level {level} audio",
                         *(level_sums[k] / n for k in keys), pitch_mean(level_pitches), ""))
    cpu = platform.processor() or platform.machine()
    print(f"\n{len(midis)} pieces of {args.seconds:g} s from {args.midi_dir}, seed 0, "
          f"{args.threads} threads, {cpu}, {datetime.date.today()}\n")
    print("| audio | onset P | onset R | onset F1 | chroma r | pitch acc | wall s / audio s |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for name, p, r, f1, chroma, pitch, rtf in rows:
        print(f"| {name} | {p:.3f} | {r:.3f} | {f1:.3f} | {chroma:.3f} | {pitch} | {rtf} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
