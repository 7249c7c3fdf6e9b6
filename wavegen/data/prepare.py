"""Build a MAESTRO v3-format corpus (audio + aligned MIDI) from MIDI files or from nothing.

:func:`prepare_corpus` renders every MIDI file of a folder and/or ``num_generated``
performances from :mod:`wavegen.data.performance` to audio, with wavegen's own synthesiser
(:mod:`wavegen.data.synth`) or with FluidSynth and a soundfont, and lays the result out as
MAESTRO v3 does::

    out_dir/
      maestro-v3.0.0.csv        one row per piece (columns: see METADATA_COLUMNS)
      maestro-v3.0.0.json       the same table in pandas' "columns" orientation:
                                {column: {"0": value, "1": value, ...}}
      YEAR/NAME.midi            the performance
      YEAR/NAME.wav             its audio (mono, 16-bit PCM)
      .wavegen-corpus.json      marks the folder as written by wavegen (see below)

so that code reading a real MAESTRO v3 download reads it unchanged. ``midi_filename`` and
``audio_filename`` are relative to ``out_dir``; ``duration`` is the audio length in
seconds; ``split`` is ``train``, ``validation`` or ``test``.

* Splits are drawn by a seeded permutation of the pieces (sorted by name), in proportions
  ``splits``, with at least one piece in every split of non-zero share when there are
  enough pieces: the same inputs and seed always give the same splits.
* Input MIDI files are copied byte for byte; generated ones are written by pretty_midi and
  re-read, so the audio is rendered from exactly the MIDI stored.
* A MIDI file that cannot be read, has no notes, or is absurdly long is reported (path and
  reason, through ``on_skip`` and in the result) and skipped; if nothing usable remains a
  :class:`DataError` is raised before anything is written.
* The audio of a piece lasts until its last note stops sounding
  (:func:`wavegen.data.midi.performance_end`, the length the MAESTRO reader checks), plus
  the synthesiser's release and tail; tempo or controller events after the last note add
  nothing.
* Every file is written atomically. ``out_dir`` must be missing, empty, or a corpus this
  function wrote before (it carries ``.wavegen-corpus.json``); anything else is refused,
  so user data is never overwritten. Preparing into an earlier corpus replaces it: the
  files listed in its marker that the new corpus does not have are deleted, nothing else.
* A write the machine refuses (disk full, quota, read-only folder) stops the run with a
  one-line :class:`~wavegen.errors.StorageError` naming the file. No partial file is left;
  the marker, written first, lists every file the run may write, so preparing again into
  the folder removes the pieces of the failed run that the new corpus does not have.
"""

from __future__ import annotations

import csv
import dataclasses
import datetime
import io
import json
import math
import os
import re
import sys
import time
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from wavegen.audio.io import save_audio
from wavegen.data import MAX_PIECE_SECONDS
from wavegen.data.maestro import MAESTRO_COLUMNS, MaestroEntry
from wavegen.data.midi import load_midi, performance_end, performed_notes
from wavegen.data.performance import STYLES, generate_performance
from wavegen.errors import DataError, UsageError
from wavegen.utils.atomic import atomic_write_bytes, storage_errors_named

__all__ = [
    "CSV_NAME",
    "JSON_NAME",
    "MARKER_NAME",
    "METADATA_COLUMNS",
    "SPLIT_NAMES",
    "PreparedPiece",
    "PrepareResult",
    "prepare_corpus",
]

CSV_NAME = "maestro-v3.0.0.csv"
JSON_NAME = "maestro-v3.0.0.json"
MARKER_NAME = ".wavegen-corpus.json"
METADATA_COLUMNS = MAESTRO_COLUMNS  # the MAESTRO v3 columns, in MAESTRO's order
SPLIT_NAMES = ("train", "validation", "test")
MIDI_SUFFIXES = (".mid", ".midi")

_MARKER_FORMAT = "wavegen-maestro-corpus"
# Longer inputs are taken to be corrupt (MAESTRO's longest performance is under 45 minutes).
_MAX_PIECE_SECONDS = 4 * 3600.0
_GENERATED_COMPOSER = "wavegen"
_UNKNOWN_COMPOSER = "Unknown"


@dataclasses.dataclass(frozen=True)
class PreparedPiece(MaestroEntry):
    """One row of the metadata; ``source`` is the input MIDI path, or None when generated."""

    source: str | None = None

    def row(self) -> dict[str, object]:
        return {column: getattr(self, column) for column in METADATA_COLUMNS}


@dataclasses.dataclass(frozen=True)
class PrepareResult:
    """What :func:`prepare_corpus` wrote: the pieces, the inputs it skipped, totals."""

    out_dir: str
    sample_rate: int
    pieces: tuple[PreparedPiece, ...]
    skipped: tuple[tuple[str, str], ...]  # (path, reason)
    elapsed: float  # seconds of wall-clock time

    @property
    def total_duration(self) -> float:
        return float(sum(piece.duration for piece in self.pieces))

    def split_counts(self) -> dict[str, int]:
        return {name: sum(piece.split == name for piece in self.pieces) for name in SPLIT_NAMES}

    def summary(self) -> str:
        """One line: pieces per split, audio duration, time taken and skipped inputs."""
        counts = ", ".join(f"{n} {name}" for name, n in self.split_counts().items())
        total = self.total_duration
        speed = f", {total / self.elapsed:.0f}x real time" if self.elapsed > 0 else ""
        skipped = (f"; skipped {len(self.skipped)} unusable MIDI file"
                   f"{'s' if len(self.skipped) != 1 else ''}" if self.skipped else "")
        pieces = f"{len(self.pieces)} piece{'s' if len(self.pieces) != 1 else ''}"
        return (f"prepared {pieces} ({counts}) in {self.out_dir}: "
                f"{_format_duration(total)} of audio at {self.sample_rate} Hz in "
                f"{self.elapsed:.1f} s{speed}{skipped}")


@dataclasses.dataclass
class _Plan:
    name: str
    title: str
    composer: str
    source: str | None  # input MIDI path, or None for a generated piece
    style: str | None = None
    piece_seed: int = 0
    split: str = ""


def prepare_corpus(
    out_dir: str | os.PathLike,
    midi_dir: str | os.PathLike | None = None,
    num_generated: int = 0,
    seconds: float = 30.0,
    sample_rate: int = 16000,
    soundfont: str | os.PathLike | None = None,
    seed: int = 0,
    splits: Sequence[float] = (0.8, 0.1, 0.1),
    *,
    year: int | None = None,
    progress: bool = False,
    on_skip: Callable[[str, str], None] | None = None,
) -> PrepareResult:
    """Render MIDI files and/or generated performances into a MAESTRO v3-format corpus.

    Args:
        out_dir: the corpus folder (missing, empty, or a corpus wavegen prepared).
        midi_dir: folder searched recursively for ``*.mid`` / ``*.midi`` (any case).
        num_generated: number of performances to generate (styles taken in turn).
        seconds: length of each generated performance (input files keep their length).
        sample_rate: audio sample rate in Hz.
        soundfont: render with FluidSynth and this ``.sf2`` instead of the built-in synth.
        seed: seeds the generated performances and the split assignment.
        splits: shares of train / validation / test, non-negative, summing to 1.
        year: the ``YEAR`` folder and ``year`` column (default: the current year).
        progress: show a progress bar on stderr.
        on_skip: called with ``(path, reason)`` for each unusable input file, once.

    Returns:
        a :class:`PrepareResult`; its ``summary()`` is a one-line report.
    """
    began = time.perf_counter()
    out = Path(out_dir)
    splits = _check_splits(splits)
    if isinstance(num_generated, bool) or not isinstance(num_generated, int) or num_generated < 0:
        raise UsageError(f"number of generated pieces must be an integer >= 0, got {num_generated!r}")
    if isinstance(sample_rate, bool) or not isinstance(sample_rate, int) or sample_rate <= 0:
        raise UsageError(f"sample rate must be a positive integer (Hz), got {sample_rate!r}")
    if num_generated and not (isinstance(seconds, (int, float)) and math.isfinite(seconds)
                              and 0 < seconds <= MAX_PIECE_SECONDS):
        raise UsageError(f"seconds per generated piece must be in (0, {MAX_PIECE_SECONDS:g}], "
                         f"got {seconds!r}")
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise UsageError(f"seed must be an integer >= 0, got {seed!r}")
    year = datetime.date.today().year if year is None else year
    if isinstance(year, bool) or not isinstance(year, int) or not 1 <= year <= 9999:
        raise UsageError(f"year must be an integer 1..9999, got {year!r}")

    old_files = _check_out_dir(out)
    if soundfont is not None:
        from wavegen.data.synth import check_fluidsynth

        if not os.path.isfile(soundfont):
            raise DataError(f"{os.fspath(soundfont)}: soundfont not found")
        check_fluidsynth()

    skipped: list[tuple[str, str]] = []

    def skip(path: str, reason: str) -> None:
        skipped.append((path, reason))
        if on_skip is not None:
            on_skip(path, reason)

    plans: list[_Plan] = []
    found = 0
    if midi_dir is not None:
        inputs = _find_midi_files(Path(midi_dir), out)
        found = len(inputs)
        for path, relative in inputs:
            reason = _unusable_reason(path)
            if reason is not None:
                skip(str(path), reason)
                continue
            plans.append(_Plan(name=_safe_name(relative), title=relative.stem,
                               composer=_UNKNOWN_COMPOSER, source=str(path)))
    for i in range(num_generated):
        style = STYLES[i % len(STYLES)]
        piece_seed = int(np.random.SeedSequence([seed, i]).generate_state(1)[0])
        plans.append(_Plan(name=f"wavegen-s{seed}-{i:04d}-{style}",
                           title=f"Generated {style} {i + 1}", composer=_GENERATED_COMPOSER,
                           source=None, style=style, piece_seed=piece_seed))
    if not plans:
        if midi_dir is None and num_generated == 0:
            raise DataError("nothing to prepare: give a MIDI folder and/or a number of "
                            "performances to generate")
        where = os.fspath(midi_dir)
        if found == 0:
            raise DataError(f"{where}: no MIDI files (*.mid, *.midi) found, and nothing to generate")
        raise DataError(f"{where}: none of the {found} MIDI files is usable (each was reported), "
                        "and nothing to generate")

    _unique_names(plans)
    _assign_splits(plans, splits, seed)

    out.mkdir(parents=True, exist_ok=True)
    # Mark the folder first, so a run killed half-way leaves a folder wavegen may reuse and
    # clean: the marker lists every file this run may write, besides the earlier ones.
    planned = {CSV_NAME, JSON_NAME}
    for plan in plans:
        planned |= {f"{year}/{plan.name}.midi", f"{year}/{plan.name}.wav"}
    _write_marker(out, complete=False, files=sorted(old_files | planned), settings={})
    (out / str(year)).mkdir(exist_ok=True)

    from tqdm import tqdm

    pieces: list[PreparedPiece] = []
    written: set[str] = set()
    for plan in tqdm(plans, desc="prepare", unit="piece", disable=not progress,
                     file=sys.stderr, dynamic_ncols=True):
        midi_rel = f"{year}/{plan.name}.midi"
        audio_rel = f"{year}/{plan.name}.wav"
        try:
            audio = _render_piece(plan, out / midi_rel, sample_rate, seconds, soundfont)
        except DataError as e:
            if plan.source is None:
                raise
            skip(plan.source, _reason(e, plan.source))
            continue
        save_audio(out / audio_rel, audio, sample_rate)  # a full disk: StorageError naming it
        written.update((midi_rel, audio_rel))
        pieces.append(PreparedPiece(
            canonical_composer=plan.composer, canonical_title=plan.title, split=plan.split,
            year=year, midi_filename=midi_rel, audio_filename=audio_rel,
            duration=len(audio) / sample_rate, source=plan.source))
    if not pieces:
        raise DataError(f"{os.fspath(midi_dir)}: none of the MIDI files could be rendered "
                        "(each was reported)")

    _write_metadata(out, pieces)
    settings = {"sample_rate": sample_rate, "seed": seed, "splits": list(splits),
                "num_generated": num_generated, "seconds": seconds if num_generated else None,
                "midi_dir": os.fspath(midi_dir) if midi_dir is not None else None,
                "renderer": "fluidsynth" if soundfont is not None else "wavegen.data.synth",
                "soundfont": os.fspath(soundfont) if soundfont is not None else None}
    written.update((CSV_NAME, JSON_NAME))
    _write_marker(out, complete=True, files=sorted(written), settings=settings)
    # Also the MIDI copies of inputs that failed to render.
    _remove_stale(out, (old_files | planned) - written)
    return PrepareResult(out_dir=os.fspath(out_dir), sample_rate=sample_rate,
                         pieces=tuple(pieces), skipped=tuple(skipped),
                         elapsed=time.perf_counter() - began)


# --------------------------------------------------------------------------- checks


def _check_splits(splits: Sequence[float]) -> tuple[float, float, float]:
    try:
        values = tuple(float(s) for s in splits)
    except (TypeError, ValueError):
        raise UsageError(f"splits must be three numbers (train, validation, test), got {splits!r}") from None
    if len(values) != 3 or any(not math.isfinite(v) or v < 0 for v in values) \
            or abs(sum(values) - 1) > 1e-6:
        raise UsageError("splits must be three non-negative shares (train, validation, test) "
                         f"summing to 1, got {tuple(splits)!r}")
    return values  # type: ignore[return-value]


def _check_out_dir(out: Path) -> set[str]:
    """Refuse a folder wavegen did not write; return the files an earlier run listed."""
    if not out.exists():
        return set()
    if not out.is_dir():
        raise DataError(f"{out}: exists and is not a folder")
    if not any(out.iterdir()):
        return set()
    marker = out / MARKER_NAME
    if not marker.is_file():
        raise DataError(f"{out}: refusing to write into a non-empty folder that is not a corpus "
                        f"prepared by wavegen (no {MARKER_NAME}); choose a new or empty folder")
    try:
        data = json.loads(marker.read_text(encoding="utf-8"))
        if data.get("format") != _MARKER_FORMAT:
            raise ValueError(f"format is {data.get('format')!r}")
        files = {str(f) for f in data.get("files", [])}
    except (OSError, ValueError, AttributeError, TypeError) as e:
        raise DataError(f"{marker}: unreadable corpus marker ({e}); choose a new or empty folder") from None
    # Only plain relative paths inside the corpus may ever be deleted.
    return {f for f in files if not os.path.isabs(f) and ".." not in Path(f).parts}


def _find_midi_files(midi_dir: Path, out: Path) -> list[tuple[Path, Path]]:
    """``(path, path relative to midi_dir)`` of every MIDI file under ``midi_dir``, sorted."""
    if not midi_dir.exists():
        raise DataError(f"{midi_dir}: MIDI folder not found")
    if not midi_dir.is_dir():
        raise DataError(f"{midi_dir}: is not a folder")
    root = midi_dir.resolve()
    out_resolved = out.resolve()
    if root == out_resolved or out_resolved in root.parents:
        raise UsageError(f"the MIDI folder {midi_dir} is inside the output folder {out}; "
                         "prepare into another folder")
    found = []
    for dirpath, dirnames, filenames in os.walk(root):
        here = Path(dirpath)
        # An output folder inside the input folder holds our own copies: do not re-read them.
        dirnames[:] = sorted(d for d in dirnames if (here / d).resolve() != out_resolved)
        for name in sorted(filenames):
            if name.lower().endswith(MIDI_SUFFIXES) and not name.startswith("."):
                path = here / name
                found.append((path, path.relative_to(root)))
    return found


def _reason(error: DataError, path: str) -> str:
    return str(error).removeprefix(f"{path}: ")


def _unusable_reason(path: Path) -> str | None:
    """Why ``path`` cannot be used, or None when it can."""
    try:
        midi = load_midi(path)
    except DataError as e:
        return _reason(e, str(path))
    if not performed_notes(midi):
        return "no notes (after ignoring drum tracks)"
    end = performance_end(midi)
    if end > _MAX_PIECE_SECONDS:
        return f"lasts {end / 3600:.1f} hours, the file is probably corrupt"
    return None


def _safe_name(relative: Path) -> str:
    """A file name from a path relative to the MIDI folder: subfolders joined by '--'."""
    parts = list(relative.parent.parts) + [relative.stem]
    cleaned = [re.sub(r"[^A-Za-z0-9._-]+", "_", part).strip("._") or "piece" for part in parts]
    return "--".join(cleaned)


def _unique_names(plans: list[_Plan]) -> None:
    seen: dict[str, int] = {}
    for plan in plans:
        key = plan.name.lower()  # case-insensitive file systems
        if key in seen:
            seen[key] += 1
            plan.name = f"{plan.name}-{seen[key]}"
        else:
            seen[key] = 1


def _split_counts(n: int, shares: Sequence[float]) -> list[int]:
    """How many of ``n`` pieces go to each split: proportional, at least one per used split."""
    exact = [share * n for share in shares]
    counts = [math.floor(x) for x in exact]
    used = [i for i, share in enumerate(shares) if share > 0]
    floor_of = [0] * len(shares)
    if n >= len(used):
        for i in used:
            floor_of[i] = 1
            counts[i] = max(counts[i], 1)
    while sum(counts) > n:
        over = [i for i in range(len(shares)) if counts[i] > floor_of[i]]
        counts[max(over, key=lambda i: counts[i] - exact[i])] -= 1
    while sum(counts) < n:
        counts[max(used, key=lambda i: exact[i] - counts[i])] += 1
    return counts


def _assign_splits(plans: list[_Plan], shares: Sequence[float], seed: int) -> None:
    order = sorted(range(len(plans)), key=lambda i: plans[i].name)
    permuted = [order[i] for i in np.random.default_rng([seed, 7]).permutation(len(plans))]
    counts = _split_counts(len(plans), shares)
    position = 0
    for name, count in zip(SPLIT_NAMES, counts):
        for index in permuted[position:position + count]:
            plans[index].split = name
        position += count


# --------------------------------------------------------------------------- writing


def _render_piece(plan: _Plan, midi_path: Path, sample_rate: int, seconds: float,
                  soundfont: str | os.PathLike | None) -> np.ndarray:
    """Write the piece's MIDI file to ``midi_path`` and return its audio, float32 ``[time]``."""
    if plan.source is None:
        performance = generate_performance(plan.piece_seed, seconds, plan.style or "mixed")
        buffer = io.BytesIO()
        performance.write(buffer)
        data = buffer.getvalue()
    else:
        data = Path(plan.source).read_bytes()
    _store_bytes(midi_path, data)
    # Render from the bytes stored, so the audio matches the corpus MIDI exactly.
    midi = load_midi(midi_path)
    if soundfont is not None:
        from wavegen.data.synth import render_with_fluidsynth

        return render_with_fluidsynth(midi, sample_rate, soundfont)
    from wavegen.data.synth import render_midi

    return render_midi(midi, sample_rate, seed=plan.piece_seed)


def _write_metadata(out: Path, pieces: list[PreparedPiece]) -> None:
    text = io.StringIO()
    writer = csv.DictWriter(text, fieldnames=METADATA_COLUMNS, lineterminator="\n")
    writer.writeheader()
    for piece in pieces:
        writer.writerow(piece.row())
    _store_bytes(out / CSV_NAME, text.getvalue().encode("utf-8"))
    # pandas' DataFrame.to_json(orient="columns"): {column: {row index as string: value}}.
    table = {column: {str(i): piece.row()[column] for i, piece in enumerate(pieces)}
             for column in METADATA_COLUMNS}
    _store_bytes(out / JSON_NAME, json.dumps(table, ensure_ascii=False).encode("utf-8"))


def _write_marker(out: Path, *, complete: bool, files: list[str], settings: dict) -> None:
    import wavegen

    marker = {"format": _MARKER_FORMAT, "version": 1, "wavegen": wavegen.__version__,
              "complete": complete, "settings": settings, "files": files}
    _store_bytes(out / MARKER_NAME, (json.dumps(marker, indent=1) + "\n").encode("utf-8"))


def _store_bytes(path: Path, data: bytes) -> None:
    """Write a corpus file atomically; a full disk (or another storage fault) is a one-line
    StorageError naming it, e.g. ``corpus/2024/x.midi: no space left on device``."""
    with storage_errors_named(path):
        atomic_write_bytes(path, data)


def _remove_stale(out: Path, stale: set[str]) -> None:
    """Delete files an earlier run wrote that the new corpus does not list."""
    for relative in sorted(stale):
        path = out / relative
        if path.is_file() and not path.is_symlink():
            path.unlink()
            parent = path.parent
            if parent != out and parent.is_dir() and not any(parent.iterdir()):
                parent.rmdir()


def _format_duration(seconds: float) -> str:
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, sec = divmod(round(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{sec:02d}" if hours else f"{minutes}:{sec:02d} min"

