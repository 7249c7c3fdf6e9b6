"""The shipped models in the demo: a MIDI piece played by ``piano``, a recording vocoded by
``piano-vocoder`` beside Griffin-Lim, and the scores of each.

A piece the models never saw is generated (:func:`wavegen.data.performance.generate_performance`
with a seed outside the training corpus's) and rendered by the built-in synthesiser: that
rendering is the "recording" and the ceiling of the score-following measures. Then:

1. ``piano`` (:mod:`wavegen.pretrained`) renders the MIDI: ``piano.wav``;
2. ``piano-vocoder`` turns the recording's log-mel back into audio: ``vocoded.wav``, and
   32-iteration Griffin-Lim from the same log-mel (NNLS mel inversion, the baseline):
   ``vocoded_griffinlim.wav``.

Every file is scored against the MIDI (note-onset F1 at 50 ms and chroma correlation,
:mod:`wavegen.eval.score`) and the two vocoded ones against the recording (MR-STFT distance
and log-mel L1). All draws are seeded, so every run writes the same audio and scores;
``summary.json`` holds them.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import torch

from wavegen.utils.atomic import atomic_write_text

#: Files the model part of the demo writes, in the order the CLI lists them.
SCORE_MIDI = "score.mid"
RECORDING_WAV = "recording.wav"
PIANO_WAV = "piano.wav"
PIANO_PNG = "piano.png"
VOCODED_WAV = "vocoded.wav"
VOCODED_GRIFFINLIM_WAV = "vocoded_griffinlim.wav"
SUMMARY_JSON = "summary.json"
OUTPUT_FILES = (SCORE_MIDI, RECORDING_WAV, PIANO_WAV, PIANO_PNG, VOCODED_WAV,
                VOCODED_GRIFFINLIM_WAV, SUMMARY_JSON)
#: The generated piece's seed: far from the corpora of the README and the model cards
#: (seeds 0-11), so the shipped models never saw it.
PIECE_SEED = 2026


def run_model_demo(out_dir: str | os.PathLike, seconds: float = 8.0, seed: int = 0,
                   piano: str = "piano", vocoder: str = "piano-vocoder",
                   griffinlim_iters: int = 32) -> dict:
    """Run the model part of the demo into ``out_dir``; returns its summary (module doc)."""
    import pretty_midi

    from wavegen.audio.griffinlim import mel_to_audio
    from wavegen.audio.io import load_audio, save_audio
    from wavegen.audio.metrics import log_mel_l1, multi_resolution_stft_distance
    from wavegen.audio.plot import plot_analysis
    from wavegen.audio.spectral import LogMelSpectrogram
    from wavegen.data.performance import generate_performance
    from wavegen.data.synth import render_midi
    from wavegen.eval.score import score_file
    from wavegen.inference import Conditioning, InferenceOptions, InputRequest
    from wavegen.pretrained import resolve_model
    from wavegen.sample import sample
    from wavegen.vocode import load_vocoder

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    options = InferenceOptions(seed=seed)
    piano_path = resolve_model(piano, verb="sample")
    vocoder_path = resolve_model(vocoder, verb="vocode")

    midi: pretty_midi.PrettyMIDI = generate_performance(PIECE_SEED + seed, seconds, "mixed")
    midi.write(str(out / SCORE_MIDI))
    result, pipeline = sample(piano_path, InputRequest(seconds=seconds, midi=str(out / SCORE_MIDI)),
                              options)
    rate = pipeline.sample_rate
    save_audio(out / PIANO_WAV, result.audio[0], rate)
    recording = torch.from_numpy(render_midi(midi, rate)).float().reshape(1, 1, -1)
    recording = recording[..., :result.audio.shape[-1]]
    save_audio(out / RECORDING_WAV, recording[0], rate)

    vocoding = load_vocoder(vocoder_path, options)
    features = vocoding.input.features
    reference = load_audio(out / RECORDING_WAV)[0][None]
    frames = reference.shape[-1] // features.hop_length
    reference = reference[..., :frames * features.hop_length]
    mel = LogMelSpectrogram(features)(reference).reshape(1, features.n_mels, -1)[..., :frames]
    vocoded = vocoding.run(Conditioning("mel", mel), options).audio
    griffin = mel_to_audio(mel, features, n_iter=griffinlim_iters,
                           length=reference.shape[-1],
                           generator=torch.Generator().manual_seed(seed)).reshape(1, 1, -1)
    save_audio(out / VOCODED_WAV, vocoded[0], rate)
    save_audio(out / VOCODED_GRIFFINLIM_WAV, griffin[0], rate)

    def read(name: str) -> torch.Tensor:
        return load_audio(out / name)[0][None][..., :reference.shape[-1]]

    plot_analysis(read(PIANO_WAV)[0], features, out / PIANO_PNG,
                  title=f"The shipped '{piano}' model playing a generated piece it never saw "
                        f"({seconds:g} s, seed {seed})")
    summary = {"folder": str(out), "piece_seed": PIECE_SEED + seed, "seconds": seconds, "sample_rate": rate,
               "piano_model": piano, "vocoder_model": vocoder, "griffin_lim_iterations": griffinlim_iters}
    for key, name in (("recording", RECORDING_WAV), ("piano", PIANO_WAV)):
        summary[key] = score_file(out / name, out / SCORE_MIDI)
    for key, name in (("vocoded", VOCODED_WAV), ("griffin_lim", VOCODED_GRIFFINLIM_WAV)):
        audio = read(name)
        summary[key] = {
            **score_file(out / name, out / SCORE_MIDI),
            "mr_stft_distance": float(multi_resolution_stft_distance(reference, audio).total),
            "log_mel_l1": float(log_mel_l1(reference, audio, features)),
        }
    atomic_write_text(out / SUMMARY_JSON, json.dumps(summary, indent=2, allow_nan=False) + "\n")
    return summary


def format_model_summary(summary: dict) -> str:
    """Human-readable lines for the CLI: one row per file."""
    def scores(entry: dict) -> str:
        return f"onset F1 {entry['onset_f1']:.3f}, chroma r {entry['chroma_r']:.3f}"

    def spectral(entry: dict) -> str:
        return f"MR-STFT {entry['mr_stft_distance']:.3f}, log-mel L1 {entry['log_mel_l1']:.3f}"

    rows = [
        (f"MIDI -> audio, '{summary['piano_model']}'", scores(summary["piano"])),
        ("the synthesiser's rendering (ceiling)", scores(summary["recording"])),
        (f"vocoded, '{summary['vocoder_model']}'",
         f"{spectral(summary['vocoded'])}; {scores(summary['vocoded'])}"),
        (f"vocoded, Griffin-Lim {summary['griffin_lim_iterations']} it",
         f"{spectral(summary['griffin_lim'])}; {scores(summary['griffin_lim'])}"),
    ]
    width = max(len(label) for label, _ in rows)
    return "\n".join(
        [f"shipped models on a generated piece they never saw ({summary['seconds']:g} s at "
         f"{summary['sample_rate']} Hz, piece seed {summary['piece_seed']}):"]
        + [f"  {label.ljust(width)}  {text}" for label, text in rows])


__all__ = ["OUTPUT_FILES", "PIECE_SEED", "format_model_summary", "run_model_demo"]
