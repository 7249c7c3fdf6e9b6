#!/usr/bin/env python
"""The RESULTS tables of a hierarchical VQ-VAE and its priors (``wavegen.hierarchy``).

On one clip per held-out piece of a MAESTRO-format corpus (``--clips`` at most, ``--seconds``
long from ``--offset``, chosen by :func:`wavegen.eval.heldout_clips`; each cut to whole codes
of the coarsest level) it prints four Markdown tables to stdout and writes nothing else:

1. **VQ-VAE levels** (finest first): hop, codes per second, bits per second
   (``codes/s * log2(codebook size)``: the rate of the codes as a uniform code), the
   codebook perplexity on the clips' codes (``exp`` of the entropy of the level's code
   histogram, all clips pooled; the codebook size if every code were equally used) and the
   share of the codebook used, and the reconstruction error of encode -> decode at that
   level against the clip (:func:`~wavegen.audio.metrics.multi_resolution_stft_distance`,
   Parallel WaveGAN's three resolutions; :func:`~wavegen.audio.metrics.log_mel_l1` with the
   ``--features`` preset, default the preset at the hierarchy's rate, ``hifigan-16k`` at
   16 kHz), averaged over clips.
2. **Priors** (top first): level, conditioning, receptive field in codes and seconds,
   parameters, and the held-out bits per code: the teacher-forced NLL
   ``prior.model.loss(codes, local) / ln 2`` on the clips' codes at its level (a transformer
   prior's context is at most its ``context`` codes: longer clips in chunks), weighted by
   codes, beside ``log2(codebook size)`` (a uniform prior). An upsampler's ``local`` is the
   upper level's codes of the same clip; a MIDI prior's is the piano roll of the clip's MIDI
   file (the metadata's ``midi_filename`` of the piece) on its level's grid, from the clip's
   offset. Context never reaches before the clip, so a prior whose receptive field exceeds
   the clip's codes is scored with less context than it has.
3. **Sampling time**: one run of ``Hierarchy.sample(seconds=--sample-seconds,
   stop_level=finest, window=None, seed --seed)`` with ``--threads`` torch threads; per level
   the seconds spent sampling its codes and decoding them, the cumulative seconds to audio
   at that level (the sampling of that level and every level above it, plus its decoding)
   and the real-time factor (cumulative seconds / seconds of audio). A MIDI hierarchy
   samples under the roll of ``--midi`` (default: the first held-out clip's piece, from its
   start), built with ``piano_roll(midi, PianoRollConfig(sample_rate, top_hop))``.
   With ``--backend`` other than ``reference`` (default ``auto``) the same run on that
   backend follows: per level the reference seconds, the backend's, the speed-up and
   whether both drew the same codes (they must).
4. **Score following** (MIDI hierarchies only): note-onset F1 (50 ms) and the MIDI chroma
   correlation (:mod:`wavegen.eval.score`) of every sampled level's audio against that
   MIDI, and of the MIDI's own recording (the audio file beside it, same length) as the
   ceiling.

Usage: python scripts/hierarchy_table.py HIERARCHY --data data/piano [--clips 6]
           [--seconds 2] [--sample-seconds 10] [--midi FILE] [--threads 2]
"""

from __future__ import annotations

import argparse
import datetime
import math
import os
import platform
import statistics
import subprocess
import sys
from pathlib import Path

import torch

from wavegen.errors import DataError, UsageError, WavegenError

LN2 = math.log(2.0)


def chunked_nats(model, target: torch.Tensor, local: torch.Tensor | None) -> float:
    """Total teacher-forced NLL (nats) of ``target`` ``[1, N]``: one pass, or for a prior with
    a finite context (a transformer: ``max_positions``) consecutive chunks of at most that
    many codes, each starting afresh (whole conditioning frames)."""
    limit = getattr(model, "max_positions", None)
    total = target.shape[-1]
    if limit is None or total <= limit:
        return float(model.loss(target, local)) * total
    hop = model.config.hop_length or 1
    step = limit // hop * hop
    nats = 0.0
    for start in range(0, total, step):
        end = min(total, start + step)
        piece = None if local is None else local[..., start // hop:-(-end // hop)]
        nats += float(model.loss(target[:, start:end], piece)) * (end - start)
    return nats


def machine() -> str:
    """The CPU model (``lscpu``'s model name where there is one) and the core count."""
    name = ""
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, timeout=10).stdout
        for line in out.splitlines():
            if line.lower().startswith("model name:"):
                name = line.split(":", 1)[1].strip()
                break
    except (OSError, subprocess.SubprocessError):
        pass
    name = name or platform.processor() or platform.machine()
    return f"{name}, {os.cpu_count()} cores"


def pick_features(name: str | None, sample_rate: int):
    """The ``name`` preset, or the first preset at ``sample_rate``; it must be at that rate."""
    from wavegen.audio.features import PRESETS, get_preset

    if name is not None:
        features = get_preset(name)
    else:
        features = next((f for f in PRESETS.values() if f.sample_rate == sample_rate), None)
        if features is None:
            raise UsageError(f"no feature preset at {sample_rate} Hz: give --features")
    if features.sample_rate != sample_rate:
        raise UsageError(f"--features {features.name} is at {features.sample_rate} Hz, the "
                         f"hierarchy at {sample_rate} Hz")
    return features


def midi_files(root: str | os.PathLike) -> dict[str, Path]:
    """audio_filename -> the MIDI file of that piece (the metadata's ``midi_filename``)."""
    from wavegen.data.maestro import find_metadata, read_maestro_metadata

    base = find_metadata(root).parent
    return {e.audio_filename: base / e.midi_filename for e in read_maestro_metadata(root)}


def audio_beside(midi: Path) -> Path | None:
    """The recording beside a MIDI file: the same name with an audio suffix, else None."""
    from wavegen.data.audio_folder import AUDIO_SUFFIXES

    for suffix in sorted(AUDIO_SUFFIXES):
        for candidate in (midi.with_suffix(suffix), midi.with_suffix(suffix.upper())):
            if candidate.is_file():
                return candidate
    return None


def entropy_bits(counts: torch.Tensor) -> float:
    p = counts.double() / counts.sum()
    p = p[p > 0]
    return float(-(p * p.log()).sum() / LN2)


def fmt(x: float, digits: int = 3) -> str:
    return f"{x:.{digits}f}" if math.isfinite(x) else "-"


def level_table(h, clips, codes, features) -> None:
    from wavegen.audio.metrics import log_mel_l1, multi_resolution_stft_distance
    from wavegen.codes import decode_codes

    ae = h.autoencoder
    k = ae.codebook_size
    print(f"## VQ-VAE levels: {len(clips)} held-out clips; reconstruction metrics against the "
          f"clip (MR-STFT: Parallel WaveGAN's 3 resolutions; log-mel L1: {features.name})")
    print()
    print("| level | hop | codes/s | bits/s | perplexity | codes used | MR-STFT | log-mel L1 |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- |")
    for level in range(ae.num_levels):
        hop = ae.hops[level]
        rate = ae.sample_rate / hop
        counts = torch.zeros(k, dtype=torch.long)
        mrstft, mel = [], []
        for clip, per_level in zip(clips, codes):
            file = per_level[level]
            counts += torch.bincount(file.codes, minlength=k)
            decoded = decode_codes(ae, file)[None]  # [1, 1, T]
            mrstft.append(float(multi_resolution_stft_distance(clip, decoded).total.mean()))
            mel.append(float(log_mel_l1(clip, decoded, features).mean()))
        perplexity = 2.0 ** entropy_bits(counts)
        used = int((counts > 0).sum())
        print(f"| {level} | {hop} | {rate:g} | {rate * math.log2(k):,.0f} | {perplexity:.1f} "
              f"of {k} | {used} ({used / k:.0%}) | {fmt(statistics.fmean(mrstft))} | "
              f"{fmt(statistics.fmean(mel))} |", flush=True)
    print()


@torch.no_grad()
def prior_table(h, clip_list, clips, codes, midis) -> None:
    from wavegen.data.midi import PianoRollConfig, piano_roll

    ae = h.autoencoder
    print(f"## Priors: held-out bits per code (teacher-forced, context within each clip: "
          f"{clips[0].shape[-1] / ae.sample_rate:g} s)")
    print()
    print("| level | conditioning | receptive field | parameters | codes per clip | "
          "bits/code | uniform |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for index, prior in enumerate(h.priors):
        c, model, level = prior.config, prior.model, prior.level
        nats, count = 0.0, 0
        for clip, per_level, midi in zip(clip_list, codes, midis):
            target = per_level[level].codes[None]
            local = None
            if c.conditioning == "codes":
                local = per_level[h.priors[index - 1].level].codes[None]
            elif c.conditioning == "roll":
                config = PianoRollConfig(ae.sample_rate, c.code_hop)
                if config.num_channels != c.roll_channels:
                    raise UsageError(f"{prior.path}: a roll of {c.roll_channels} channels; "
                                     f"the default piano roll has {config.num_channels}")
                start = round(clip.offset * ae.sample_rate / c.code_hop)
                local = piano_roll(midi, config, num_frames=target.shape[-1],
                                   start_frame=start)[None]
            nats += chunked_nats(model, target, local)
            count += target.shape[-1]
        rf = model.receptive_field
        print(f"| {level} | {c.conditioning} | {rf} codes = {rf / c.codes_per_second:.2f} s | "
              f"{model.num_parameters():,} | {count // len(clips)} | "
              f"{nats / count / LN2:.3f} | {math.log2(c.codebook_size):.3f} |", flush=True)
    print()


def sampling_table(h, result, seconds: float, seed: int, threads: int) -> None:
    got = result.finest.audio_seconds
    cut = f" ({got:.2f} s: the MIDI file's length)" if got < seconds - 1e-6 else ""
    print(f"## Sampling {seconds:g} s{cut} (window None, seed {seed}, {threads} torch threads)")
    print()
    print("| level | codes | sampling s | decode s | cumulative s | audio s | RTF |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    above = 0.0
    for level in h.levels:
        entry = result.levels.get(level)
        if entry is None:
            break
        above += entry.seconds
        total = above + entry.decode_seconds
        audio = entry.audio_seconds
        print(f"| {level} | {entry.codes.shape[-1]:,} | {entry.seconds:.2f} | "
              f"{entry.decode_seconds:.2f} | {total:.2f} | {audio:.2f} | "
              f"{total / max(audio, 1e-12):.2f} |")
    print(f"| all | | | | {result.seconds:.2f} | | |")
    print()


def backend_table(h, reference, fast, backend: str) -> None:
    """Per level: the reference loop's sampling seconds against ``backend``'s (same seed),
    their ratio, and whether both drew the same codes."""
    print(f"## Sampling backends: reference loop vs {backend} (the WaveNet priors' network "
          f"on the WaveNet kernels; same seed)")
    print()
    print("| level | codes | reference s | fast s | speed-up | same codes |")
    print("| --- | --- | --- | --- | --- | --- |")
    for level in h.levels:
        a, b = reference.levels.get(level), fast.levels.get(level)
        if a is None or b is None:
            break
        print(f"| {level} | {a.codes.shape[-1]:,} | {a.seconds:.2f} | {b.seconds:.2f} | "
              f"{a.seconds / max(b.seconds, 1e-9):.1f}x | "
              f"{'yes' if torch.equal(a.codes, b.codes) else 'NO'} |")
    total_a = sum(e.seconds for e in reference.levels.values())
    total_b = sum(e.seconds for e in fast.levels.values())
    print(f"| all | | {total_a:.2f} | {total_b:.2f} | {total_a / max(total_b, 1e-9):.1f}x | |")
    print()


def score_table(h, result, midi: Path, reference: Path | None) -> None:
    from wavegen.data.midi import load_midi
    from wavegen.eval.score import midi_chroma_correlation, onset_f1, score_file

    rate = h.sample_rate
    score = load_midi(midi)
    seconds = result.finest.audio_seconds
    print(f"## Score following against {midi} (first {seconds:.2f} s; onsets within 50 ms)")
    print()
    print("| audio | onset P | onset R | onset F1 | chroma r |")
    print("| --- | --- | --- | --- | --- |")
    for level in sorted(result.levels):
        audio = result.levels[level].audio.reshape(-1)
        onsets = onset_f1(audio, rate, score)
        r = midi_chroma_correlation(audio, rate, score)
        print(f"| sampled, level {level} | {onsets.precision:.3f} | {onsets.recall:.3f} | "
              f"{onsets.f1:.3f} | {r:.3f} |")
    if reference is None:
        print("| recording (none beside the MIDI file) | - | - | - | - |")
    else:
        s = score_file(reference, score, seconds=seconds)
        print(f"| recording {reference.name} (ceiling) | {s['onset_precision']:.3f} | "
              f"{s['onset_recall']:.3f} | {s['onset_f1']:.3f} | {s['chroma_r']:.3f} |")
    print()


def run(args) -> None:
    from wavegen.codes import encode_audio
    from wavegen.data.midi import PianoRollConfig, load_midi, piano_roll
    from wavegen.eval import heldout_clips
    from wavegen.hierarchy import load_hierarchy, read_manifest
    from wavegen.sampling import SamplingOptions

    torch.set_num_threads(args.threads)
    h = load_hierarchy(args.hierarchy)
    if args.midi is not None and not h.takes_midi:
        raise UsageError(f"{args.hierarchy}: its top prior is unconditional; --midi is not used")
    ae, rate = h.autoencoder, h.sample_rate
    features = pick_features(args.features, rate)
    clip_list = heldout_clips(args.data, features, args.seconds, args.offset, limit=args.clips)
    whole = max(ae.hops)
    clips = []
    for clip in clip_list:
        length = clip.audio.shape[-1] // whole * whole
        if length == 0:
            raise UsageError(f"--seconds {args.seconds:g} is shorter than one top-level code "
                             f"({whole} samples)")
        clips.append(clip.audio[..., :length].float())
    midi_of = midi_files(args.data)
    midis = [midi_of[clip.piece] for clip in clip_list]
    codes = []
    for clip, audio in zip(clip_list, clips):
        files = encode_audio(ae, audio, range(ae.num_levels), clip.piece)
        codes.append({f.level: f for f in files})

    description = read_manifest(args.hierarchy).description
    print(f"# hierarchy {args.hierarchy}{' (' + description + ')' if description else ''} | "
          f"VQ-VAE {ae.source}: "
          f"{ae.num_levels} levels, hops {', '.join(map(str, ae.hops))}, "
          f"{ae.codebook_size} codes, {rate} Hz | {len(clips)} held-out clips of "
          f"{clips[0].shape[-1] / rate:g} s from {args.data} (offset {args.offset:g} s) | "
          f"{machine()} | torch {torch.__version__}, {torch.get_num_threads()} threads | "
          f"{datetime.datetime.now().astimezone().strftime('%Y-%m-%d %H:%M %Z')}")
    print()
    level_table(h, clips, codes, features)
    prior_table(h, clip_list, clips, codes, midis)

    roll, midi, reference = None, None, None
    if h.takes_midi:
        midi = Path(args.midi) if args.midi is not None else midis[0]
        load_midi(midi)  # a one-line DataError for a bad file
        reference = (Path(find_audio(args.data, clip_list[0].piece)) if args.midi is None
                     else audio_beside(midi))
        roll = piano_roll(midi, PianoRollConfig(rate, h.hop(h.levels[0])))
        if roll.shape[-1] == 0:
            raise DataError(f"{midi}: no notes in the piano roll's pitch range")
    result = h.sample(seconds=args.sample_seconds, roll=roll,
                      options=SamplingOptions(seed=args.seed), window=None)
    sampling_table(h, result, args.sample_seconds, args.seed, torch.get_num_threads())
    if args.backend != "reference":
        fast = h.sample(seconds=args.sample_seconds, roll=roll,
                        options=SamplingOptions(seed=args.seed), window=None,
                        backend=args.backend)
        backend_table(h, result, fast, args.backend)
    if h.takes_midi:
        score_table(h, result, midi, reference)


def find_audio(root: str | os.PathLike, audio_filename: str) -> Path:
    from wavegen.data.maestro import find_metadata

    return find_metadata(root).parent / audio_filename


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("hierarchy", metavar="HIERARCHY", help="hierarchy folder")
    parser.add_argument("--data", required=True, help="MAESTRO-format corpus folder")
    parser.add_argument("--clips", type=int, default=6, help="at most this many clips")
    parser.add_argument("--seconds", type=float, default=2.0, help="clip length")
    parser.add_argument("--offset", type=float, default=1.0, help="clip start in each piece")
    parser.add_argument("--sample-seconds", type=float, default=10.0,
                        help="seconds of audio to sample")
    parser.add_argument("--midi", default=None,
                        help="MIDI file a MIDI hierarchy samples (default: the first clip's)")
    parser.add_argument("--features", default=None,
                        help="feature preset of the log-mel L1 (default: the first at the "
                             "hierarchy's rate)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--backend", default="auto",
                        help="also time sampling on this backend against the reference loop "
                             "(reference: only the reference loop; default auto)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    if args.clips < 1 or args.threads < 1:
        parser.error("--clips and --threads must be >= 1")
    if not (args.seconds > 0 and args.sample_seconds > 0 and args.offset >= 0):
        parser.error("--seconds and --sample-seconds must be > 0, --offset >= 0")
    try:
        run(args)
    except WavegenError as exc:
        print(f"hierarchy_table: error: {exc}", file=sys.stderr)
        return exc.exit_status
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
