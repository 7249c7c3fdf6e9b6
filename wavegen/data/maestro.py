"""MAESTRO-format piano corpora: metadata, and random audio crops with aligned piano rolls.

A MAESTRO-format corpus is a folder with a metadata table (``maestro-v3.0.0.csv`` or
``.json``, or any one ``maestro*.csv`` / ``maestro*.json``) whose rows name an audio file
and its aligned MIDI performance, relative to the folder, with a split (train / validation /
test) and the duration in seconds. The original MAESTRO and corpora written by
:mod:`wavegen.data.prepare` have this layout.

:class:`MaestroDataset` turns one split into training items: a random crop of the audio
(mono, resampled to the recipe's rate, start on a hop boundary), the piano-roll frames that
cover exactly those samples (frame ``f`` <-> samples ``[f * hop, (f + 1) * hop)``) and,
optionally, the log-mel frames of a FeatureConfig. Per file, the decoded audio, the whole
piano roll and the whole log-mel are computed once and cached on disk (see
:mod:`wavegen.data.feature_cache`); an item only slices memory-mapped arrays.

Bad data. Every unusable row is reported once on the ``wavegen.data`` logger (one WARNING
line: path and reason), left out and listed in ``dataset.skipped``; a one-line count follows.
Unusable means: audio or (with a piano roll) MIDI missing or unreadable, an audio duration
that differs from the metadata by more than ``max(1 s, 5 %)``, or a MIDI performance that
sounds on that much past the end of the audio (measured by
:func:`~wavegen.data.midi.performance_end`: up to the end of the last note, pedal included;
tempo or controller events after it do not count, so every corpus ``wavegen prepare`` writes
is accepted). Recordings shorter than a crop are left out and listed too (INFO level). A
split with no usable recording raises :class:`~wavegen.errors.DataError`.
"""

from __future__ import annotations

import csv
import dataclasses
import hashlib
import json
import math
import os
from pathlib import Path
from typing import Any

import numpy as np

from wavegen.audio.features import FeatureConfig
from wavegen.data.feature_cache import (
    CACHE_FORMAT, ArrayRef, CachedFile, CropDataset, SkippedFile, cached_array, cached_audio,
    cached_log_mel, check_crop, default_cache_dir, file_key, log_mel_path, map_files,
    audio_path, pack_levels, read_error_reason, report_skipped,
)
from wavegen.data.midi import PianoRollConfig, load_midi, performance_end, piano_roll
from wavegen.errors import AudioFileError, ConfigError, DataError, WavegenError

__all__ = ["MAESTRO_COLUMNS", "MaestroDataset", "MaestroEntry", "SPLITS", "find_metadata",
           "read_maestro_metadata"]

SPLITS = ("train", "validation", "test")

#: Columns every MAESTRO metadata table must have (extra columns are ignored).
MAESTRO_COLUMNS = ("canonical_composer", "canonical_title", "split", "year",
                   "midi_filename", "audio_filename", "duration")

#: Preferred metadata file names, in order, before any other ``maestro*.csv/json``.
PREFERRED_METADATA = ("maestro-v3.0.0.csv", "maestro-v3.0.0.json")

# A recording whose length is off by more than this is not the file the metadata describes
# (MAESTRO's own durations match the audio to a few milliseconds).
DURATION_TOLERANCE_S = 1.0
DURATION_TOLERANCE_FRACTION = 0.05


@dataclasses.dataclass(frozen=True)
class MaestroEntry:
    """One row of MAESTRO metadata; file names are relative to the corpus root."""

    canonical_composer: str
    canonical_title: str
    split: str
    year: int
    midi_filename: str
    audio_filename: str
    duration: float


def find_metadata(root: str | os.PathLike) -> Path:
    """The metadata file of a corpus: ``maestro-v3.0.0.csv``, ``maestro-v3.0.0.json``, else the
    one ``maestro*.csv`` / ``maestro*.json`` in ``root`` (the CSV when both of one version exist).
    """
    root = Path(root)
    if not root.is_dir():
        raise DataError(f"MAESTRO root {root} does not exist or is not a directory")
    for name in PREFERRED_METADATA:
        if (root / name).is_file():
            return root / name
    found = sorted(p for p in root.iterdir() if p.is_file() and p.name.lower().startswith("maestro")
                   and p.suffix.lower() in (".csv", ".json"))
    by_stem: dict[str, list[Path]] = {}
    for p in found:
        by_stem.setdefault(p.stem, []).append(p)
    if not by_stem:
        raise DataError(f"{root}: no MAESTRO metadata found (expected maestro-v3.0.0.csv, "
                        f"maestro-v3.0.0.json or another maestro*.csv / maestro*.json)")
    if len(by_stem) > 1:
        raise DataError(f"{root}: several MAESTRO metadata files ({', '.join(p.name for p in found)}); "
                        f"keep one")
    (paths,) = by_stem.values()
    return min(paths, key=lambda p: p.suffix.lower() != ".csv")


def read_maestro_metadata(root: str | os.PathLike) -> list[MaestroEntry]:
    """All rows of the corpus metadata (see :func:`find_metadata`), in file order.

    CSV: a header row naming the columns. JSON: pandas' ``"columns"`` orientation
    ``{column: {row_index: value}}`` (what MAESTRO ships), or a list of row objects.
    Raises DataError naming the file and the missing columns, or the row and value that
    cannot be read.
    """
    path = find_metadata(root)
    try:
        if path.suffix.lower() == ".csv":
            rows = _read_csv(path)
        else:
            rows = _read_json(path)
    except OSError as e:
        raise DataError(f"{path}: cannot read ({e.strerror or e})") from None
    except UnicodeDecodeError as e:
        raise DataError(f"{path}: not UTF-8 text ({e.reason})") from None
    return [_entry(path, number, row) for number, row in rows]


def _read_csv(path: Path) -> list[tuple[str, dict[str, Any]]]:
    with open(path, newline="", encoding="utf-8-sig") as handle:
        reader = csv.DictReader(handle)
        _check_columns(path, reader.fieldnames or [])
        # Row numbers as a spreadsheet shows them (header is line 1).
        return [(f"line {reader.line_num}", row) for row in reader]


def _read_json(path: Path) -> list[tuple[str, dict[str, Any]]]:
    try:
        data = json.loads(path.read_text(encoding="utf-8-sig"))
    except json.JSONDecodeError as e:
        raise DataError(f"{path}: invalid JSON ({e.msg} at line {e.lineno})") from None
    if isinstance(data, list):
        if not all(isinstance(r, dict) for r in data):
            raise DataError(f"{path}: a JSON list of metadata rows must hold objects")
        _check_columns(path, set().union(*data) if data else set())
        for i, r in enumerate(data):
            missing = [c for c in MAESTRO_COLUMNS if c not in r]
            if missing:
                raise DataError(f"{path}: row {i} lacks column(s) {', '.join(missing)}")
        return [(f"row {i}", r) for i, r in enumerate(data)]
    if not isinstance(data, dict):
        raise DataError(f"{path}: expected a JSON object {{column: {{row: value}}}}, "
                        f"got {type(data).__name__}")
    _check_columns(path, data)
    columns = {c: data[c] for c in MAESTRO_COLUMNS}
    for c, values in columns.items():
        if not isinstance(values, dict):
            raise DataError(f"{path}: column {c!r} must map row indices to values "
                            f"(pandas 'columns' orientation), got {type(values).__name__}")
    indices = set(columns[MAESTRO_COLUMNS[0]])
    for c, values in columns.items():
        if set(values) != indices:
            raise DataError(f"{path}: column {c!r} has different rows from "
                            f"{MAESTRO_COLUMNS[0]!r}")

    def order(index: str) -> tuple[int, int | str]:
        return (0, int(index)) if str(index).lstrip("-").isdigit() else (1, str(index))

    return [(f"row {i}", {c: columns[c][i] for c in MAESTRO_COLUMNS})
            for i in sorted(indices, key=order)]


def _check_columns(path: Path, present) -> None:
    missing = [c for c in MAESTRO_COLUMNS if c not in set(present)]
    if missing:
        raise DataError(f"{path}: missing MAESTRO column(s) {', '.join(missing)}")


def _entry(path: Path, where: str, row: dict[str, Any]) -> MaestroEntry:
    def fail(column: str, why: str) -> DataError:
        return DataError(f"{path}: {where}: {column} {row.get(column)!r} {why}")

    text = {}
    for c in ("canonical_composer", "canonical_title", "split", "midi_filename", "audio_filename"):
        value = row[c]
        if not isinstance(value, str):
            raise fail(c, "is not text")
        text[c] = value.strip()
    split = text["split"].lower()
    if split not in SPLITS:
        raise fail("split", f"is not one of {', '.join(SPLITS)}")
    try:
        year_value = float(row["year"])
        if not year_value.is_integer():
            raise ValueError
        year = int(year_value)
    except (TypeError, ValueError, OverflowError):
        raise fail("year", "is not a whole number") from None
    try:
        duration = float(row["duration"])
    except (TypeError, ValueError):
        raise fail("duration", "is not a number") from None
    if not (math.isfinite(duration) and duration > 0):
        raise fail("duration", "is not a positive number of seconds")
    for c in ("midi_filename", "audio_filename"):
        if not text[c]:
            raise fail(c, "is empty")
    return MaestroEntry(
        canonical_composer=text["canonical_composer"], canonical_title=text["canonical_title"],
        split=split, year=year, midi_filename=text["midi_filename"],
        audio_filename=text["audio_filename"], duration=duration)


def roll_fingerprint(config: PianoRollConfig) -> str:
    """Cache key of a piano-roll config (its own ``fingerprint()`` when it has one)."""
    own = getattr(config, "fingerprint", None)
    if callable(own):
        return f"{CACHE_FORMAT}-{own()}"
    payload = dataclasses.asdict(config) if dataclasses.is_dataclass(config) else vars(config)
    text = json.dumps(payload, sort_keys=True, default=repr)
    return hashlib.sha256(f"{CACHE_FORMAT}\0{text}".encode()).hexdigest()[:16]


class MaestroDataset(CropDataset):
    """Random crops of one split of a MAESTRO-format corpus, with aligned piano rolls.

    Items (all float32, ``T = crop_samples``, ``hop = hop_length``):

    * ``"audio"``: ``[1, T]`` mono in [-1, 1] at ``sample_rate``, starting on a hop boundary;
    * ``"roll"``: ``[roll.num_channels, T // hop]`` when ``roll`` is given; frame ``f``
      covers audio samples ``[f * hop, (f + 1) * hop)`` of the crop;
    * ``"mel"``: ``[features.n_mels, T // hop]`` when ``features`` is given (hop_aligned).

    Item ``i`` of epoch ``e`` depends only on ``(seed, e, i)``; call :meth:`set_epoch`.
    Every hop-aligned crop of every usable recording is equally likely.

    Args:
        root: corpus folder (metadata + audio + MIDI).
        split: ``"train"``, ``"validation"`` or ``"test"``.
        sample_rate: rate of the returned audio (recordings are resampled once, when cached).
        crop_samples: crop length ``T``, a multiple of the hop.
        hop_length: frame hop in samples; None takes it from ``roll`` or ``features`` (which
            must agree), else 256.
        roll: piano-roll config (same sample rate and hop); None: no ``"roll"`` and MIDI
            files are not read.
        features: FeatureConfig of ``"mel"`` (same sample rate and hop, hop_aligned padding).
        cache_dir: cache of decoded audio, rolls and features (default
            :func:`~wavegen.data.feature_cache.default_cache_dir`).
        seed: base seed of the crops.
        items_per_epoch: length of an epoch (default: total audio / crop length).

    Attributes:
        metadata: every row of the corpus metadata; ``entries``: the rows of ``split``.
        files, used_entries: the usable recordings (cache references) and their rows.
        skipped: :class:`~wavegen.data.feature_cache.SkippedFile` for each row left out.
    """

    def __init__(
        self,
        root: str | os.PathLike,
        split: str = "train",
        sample_rate: int = 16000,
        crop_samples: int = 16384,
        hop_length: int | None = None,
        roll: PianoRollConfig | None = None,
        features: FeatureConfig | None = None,
        cache_dir: str | os.PathLike | None = None,
        seed: int = 0,
        items_per_epoch: int | None = None,
    ):
        if split not in SPLITS:
            raise ConfigError(f"split must be one of {', '.join(SPLITS)}, got {split!r}")
        if isinstance(sample_rate, bool) or not isinstance(sample_rate, int) or sample_rate <= 0:
            raise ConfigError(f"sample_rate must be a positive integer (Hz), got {sample_rate!r}")
        hop = _resolve_hop(hop_length, roll, features)
        for name, config in (("PianoRollConfig", roll), ("FeatureConfig", features)):
            if config is not None and config.sample_rate != sample_rate:
                raise ConfigError(f"{name} sample_rate ({config.sample_rate}) differs from the "
                                  f"dataset's sample_rate ({sample_rate})")
        check_crop(crop_samples, hop, features)
        super().__init__(crop_samples, hop, seed, items_per_epoch)

        self.root = Path(root)
        self.split = split
        self.sample_rate = sample_rate
        self.roll_config = roll
        self.features = features
        self.cache_dir = Path(cache_dir) if cache_dir is not None else default_cache_dir()
        self.metadata = read_maestro_metadata(self.root)
        self.entries = [e for e in self.metadata if e.split == split]
        if not self.entries:
            raise DataError(f"{self.root}: the metadata has no rows in split {split!r}")

        results = map_files(self._prepare, self.entries, desc=f"caching MAESTRO {split}")
        used = [(e, r) for e, r in zip(self.entries, results) if isinstance(r, CachedFile)]
        self.files = [r for _, r in used]
        self.used_entries = [e for e, _ in used]
        self.skipped = [r for r in results if isinstance(r, SkippedFile)]
        report_skipped(f"MaestroDataset({self.root}, {split})", self.skipped,
                       len(self.entries), len(self.files))
        if not self.files:
            first = self.skipped[0]
            raise DataError(f"{self.root}: no usable recording in split {split!r} "
                            f"({len(self.skipped)} skipped, first: {first.path}: {first.reason})")
        self._finish()

    def _prepare(self, entry: MaestroEntry) -> CachedFile | SkippedFile:
        audio_file = os.fspath(self.root / entry.audio_filename)
        midi_file = os.fspath(self.root / entry.midi_filename)
        try:
            key = file_key(audio_file)
        except FileNotFoundError:
            return SkippedFile(audio_file, "audio file not found")
        except OSError as e:
            return SkippedFile(audio_file, read_error_reason(e))
        try:
            audio = cached_audio(audio_file, self.sample_rate, self.cache_dir, key)
        except (AudioFileError, OSError) as e:
            return SkippedFile(audio_file, read_error_reason(e))

        seconds = len(audio) / self.sample_rate
        tolerance = max(DURATION_TOLERANCE_S, DURATION_TOLERANCE_FRACTION * entry.duration)
        if abs(seconds - entry.duration) > tolerance:
            return SkippedFile(audio_file, f"audio lasts {seconds:.2f} s but the metadata says "
                                           f"{entry.duration:.2f} s")
        frames = len(audio) // self.hop_length
        if frames < self.crop_samples // self.hop_length:
            return SkippedFile(audio_file, f"shorter than a crop ({len(audio)} < "
                                           f"{self.crop_samples} samples at {self.sample_rate} Hz)",
                               short=True)

        roll_file = None
        if self.roll_config is not None:
            try:
                roll = self._cached_roll(midi_file, frames, seconds, tolerance)
            except FileNotFoundError:
                return SkippedFile(midi_file, "MIDI file not found")
            except _MidiProblem as e:
                return SkippedFile(midi_file, str(e))
            except OSError as e:
                return SkippedFile(midi_file, read_error_reason(e))
            roll_file = ArrayRef.of(roll)

        mel_file = None
        if self.features is not None:
            cached_log_mel(audio_file, self.features, self.cache_dir, key, audio=audio)
            mel_file = ArrayRef.of(log_mel_path(self.cache_dir, self.features, key))
        return CachedFile(source=audio_file,
                          audio=ArrayRef.of(audio_path(self.cache_dir, self.sample_rate, key)),
                          num_samples=len(audio), mel=mel_file, roll=roll_file)

    def _cached_roll(self, midi_path: str, frames: int, seconds: float, tolerance: float) -> Path:
        """Cache file of the whole performance's piano roll, frame-major ``[frames, channels]``
        (uint8 codes, see :func:`~wavegen.data.feature_cache.pack_levels`)."""
        config = self.roll_config
        key = file_key(midi_path)
        target = (self.cache_dir / "roll" / roll_fingerprint(config) / f"{key}-{frames}.npy")

        def compute() -> np.ndarray:
            try:
                midi = load_midi(midi_path)
                end = performance_end(midi)
                if end > seconds + tolerance:
                    raise DataError(f"MIDI notes sound until {end:.2f} s but the audio lasts "
                                    f"{seconds:.2f} s")
                roll = piano_roll(midi, config, num_frames=frames)
            except WavegenError as e:
                raise _MidiProblem(read_error_reason(e, midi_path)) from None
            return pack_levels(roll.numpy().T)

        cached_array(target, compute, lambda a: a.ndim == 2 and a.shape[0] == frames
                     and a.shape[1] == config.num_channels and a.dtype in (np.uint8, np.float32))
        return target

    def __repr__(self) -> str:
        return (f"MaestroDataset({str(self.root)!r}, split={self.split!r}, {len(self.files)} "
                f"recordings, {self.total_samples / self.sample_rate / 3600:.2f} h, "
                f"{len(self)} items/epoch, {len(self.skipped)} skipped)")


class _MidiProblem(Exception):
    """A MIDI file that cannot be used (message: the one-line reason)."""


def _resolve_hop(hop_length: int | None, roll: PianoRollConfig | None,
                 features: FeatureConfig | None) -> int:
    """The dataset hop: explicit, else from the configs (which must agree), else 256."""
    given = {name: c.hop_length
             for name, c in (("PianoRollConfig", roll), ("FeatureConfig", features))
             if c is not None}
    hop = hop_length if hop_length is not None else next(iter(given.values()), 256)
    for name, value in given.items():
        if value != hop:
            raise ConfigError(f"{name} hop_length ({value}) differs from the dataset's "
                              f"hop_length ({hop}); roll and mel frames must share the audio hop")
    return hop
