"""Random crops of every audio file under a folder (unconditional models, vocoder mel/audio pairs).

``AudioFolderDataset(root, ...)`` walks ``root`` recursively and uses every file libsndfile
reads (WAV, FLAC, OGG, MP3, AIFF, ...), whatever it is called. Hidden files and folders
(a leading dot: editor backups, wavegen's temporary files, a cache inside the corpus) are
ignored. Each file is decoded once, mixed down to mono and resampled to ``sample_rate``,
and the result cached on disk (see :mod:`wavegen.data.feature_cache`); with a
FeatureConfig its whole-file log-mel is cached too and items carry the matching window.

Bad files. A file with an audio suffix that cannot be read (corrupt, truncated, empty) is
reported once on the ``wavegen.data`` logger (one WARNING line: path and reason), left out
and listed in ``dataset.skipped``, followed by a one-line count. Files shorter than a crop
are left out and listed too, reported at INFO level (short clips are normal, not damage).
Other files that libsndfile does not read (text, MIDI, images) are ignored silently. A
folder with no usable file raises :class:`~wavegen.errors.DataError`.

Split. ``split="validation"`` holds the files whose relative path hashes below
``validation_fraction``, ``"train"`` the rest, ``None`` all. The hash depends only on the
path relative to ``root``, so the split is the same on every machine, the two parts never
overlap, and adding files never moves existing ones across.
"""

from __future__ import annotations

import dataclasses

import hashlib
import os
from pathlib import Path

from wavegen.audio.features import FeatureConfig
from wavegen.audio.io import audio_info
from wavegen.data.feature_cache import (
    ArrayRef, CachedFile, CropDataset, SkippedFile, audio_path, cached_audio, cached_log_mel,
    check_crop, default_cache_dir, file_key, log_mel_path, map_files, read_error_reason,
    report_skipped,
)
from wavegen.errors import AudioFileError, ConfigError, DataError

__all__ = ["AUDIO_SUFFIXES", "AudioFolderDataset", "split_of"]

#: Suffixes of files that are expected to be audio: those that fail to read are reported.
#: Files with other suffixes are still used when libsndfile reads them.
AUDIO_SUFFIXES = frozenset({
    ".wav", ".wave", ".flac", ".ogg", ".oga", ".opus", ".mp3", ".aif", ".aiff", ".aifc",
    ".au", ".snd", ".caf", ".w64", ".rf64", ".bwf", ".voc", ".sd2", ".paf", ".svx",
})

SPLITS = ("train", "validation")


def split_of(relative_path: str, validation_fraction: float) -> str:
    """``"validation"`` or ``"train"`` for a file, from a hash of its path relative to the root."""
    digest = hashlib.sha256(Path(relative_path).as_posix().encode("utf-8", "surrogateescape"))
    position = int.from_bytes(digest.digest()[:8], "big") / 2.0**64  # uniform in [0, 1)
    return "validation" if position < validation_fraction else "train"


def _top_folder(root: Path, path: str) -> str | None:
    """The first component of ``path`` under ``root``, or None for a file directly in it."""
    parts = Path(os.path.relpath(path, root)).parts
    return parts[0] if len(parts) > 1 else None


def folder_labels(root: str | os.PathLike) -> list[str]:
    """The class names of a labelled audio folder: its non-hidden sub-folders, sorted.

    A DataError if there are none, or if audio files lie directly in ``root`` (they would
    have no label).
    """
    root = Path(root)
    if not root.is_dir():
        raise DataError(f"audio folder {root} does not exist or is not a directory")
    names = sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    loose = sorted(p.name for p in root.iterdir() if p.is_file() and not p.name.startswith(".")
                   and p.suffix.lower() in AUDIO_SUFFIXES)
    if not names:
        raise DataError(f"{root}: labels come from sub-folders (one per class), and it has none")
    if loose:
        raise DataError(f"{root}: {loose[0]} lies outside the class sub-folders; with labels every "
                        f"audio file must be in one")
    return names


class AudioFolderDataset(CropDataset):
    """Random crops of the audio files under ``root``.

    Items: ``{"audio": float32 [1, crop_samples]}`` in [-1, 1], plus
    ``"mel": float32 [n_mels, crop_samples // hop]`` (the log-mel of ``features``, sliced
    from the whole file's) when ``features`` is given. Item ``i`` of epoch ``e`` depends only
    on ``(seed, e, i)``; call :meth:`set_epoch` each epoch.

    Args:
        root: folder searched recursively.
        sample_rate: rate of the returned audio (files are resampled once, when cached).
        crop_samples: crop length; a multiple of ``features.hop_length`` when features are given.
        features: FeatureConfig of the mel (``padding="hop_aligned"``, same sample rate).
        cache_dir: where decoded audio and features are cached (default
            :func:`~wavegen.data.feature_cache.default_cache_dir`).
        seed: base seed of the crops.
        split: ``None`` (all files), ``"train"`` or ``"validation"``.
        validation_fraction: share of files in the validation split, in [0, 1).
        items_per_epoch: length of an epoch (default: total audio / crop length).
        labels: label each file by its top-level sub-folder of ``root`` (items get
            ``"label"``: an int64 index into :attr:`label_names`, the sorted sub-folder
            names, the same for every split; see :func:`folder_labels`).
    """

    def __init__(
        self,
        root: str | os.PathLike,
        sample_rate: int,
        crop_samples: int,
        features: FeatureConfig | None = None,
        cache_dir: str | os.PathLike | None = None,
        seed: int = 0,
        split: str | None = None,
        validation_fraction: float = 0.05,
        items_per_epoch: int | None = None,
        labels: bool = False,
    ):
        if isinstance(sample_rate, bool) or not isinstance(sample_rate, int) or sample_rate <= 0:
            raise ConfigError(f"sample_rate must be a positive integer (Hz), got {sample_rate!r}")
        if features is not None:
            if features.sample_rate != sample_rate:
                raise ConfigError(f"FeatureConfig sample_rate ({features.sample_rate}) differs "
                                  f"from the dataset's sample_rate ({sample_rate})")
            hop = features.hop_length
        else:
            hop = 1  # no frames to align with: a crop may start anywhere
        check_crop(crop_samples, hop, features)
        if split not in (None, *SPLITS):
            raise ConfigError(f"split must be None, 'train' or 'validation', got {split!r}")
        if not (isinstance(validation_fraction, (int, float)) and 0 <= validation_fraction < 1):
            raise ConfigError(f"validation_fraction must be in [0, 1), got {validation_fraction!r}")
        super().__init__(crop_samples, hop, seed, items_per_epoch)

        self.root = Path(root)
        if not self.root.is_dir():
            raise DataError(f"audio folder {self.root} does not exist or is not a directory")
        self.sample_rate = sample_rate
        self.features = features
        self.split = split
        self.validation_fraction = float(validation_fraction)
        self.cache_dir = Path(cache_dir) if cache_dir is not None else default_cache_dir()

        candidates = [p for p in self._walk()
                      if split is None
                      or split_of(os.path.relpath(p, self.root), self.validation_fraction) == split]
        results = map_files(self._prepare, candidates, desc="caching audio")
        self.files = [r for r in results if isinstance(r, CachedFile)]
        self.label_names: list[str] = []
        if labels:
            self.label_names = folder_labels(self.root)
            index = {name: i for i, name in enumerate(self.label_names)}
            self.files = [dataclasses.replace(f, label=index[_top_folder(self.root, f.source)])
                          for f in self.files]
        self.skipped = [r for r in results if isinstance(r, SkippedFile)]
        owner = f"AudioFolderDataset({self.root}, split={split})"
        report_skipped(owner, self.skipped, len(self.files) + len(self.skipped), len(self.files))
        if not self.files:
            what = "audio files" if split is None else f"audio files in split {split!r}"
            detail = f"; {len(self.skipped)} skipped, first: {self.skipped[0].path}: " \
                     f"{self.skipped[0].reason}" if self.skipped else ""
            raise DataError(f"{self.root}: no usable {what}{detail}")
        self._finish()

    def _walk(self) -> list[str]:
        """Every non-hidden regular file under root, in a fixed (sorted) order."""
        cache = os.path.realpath(self.cache_dir)
        out = []
        for directory, subdirs, names in os.walk(self.root):
            subdirs[:] = sorted(d for d in subdirs if not d.startswith(".")
                                and os.path.realpath(os.path.join(directory, d)) != cache)
            out.extend(os.path.join(directory, n) for n in sorted(names) if not n.startswith("."))
        return out

    def _prepare(self, path: str) -> CachedFile | SkippedFile | None:
        expected_audio = Path(path).suffix.lower() in AUDIO_SUFFIXES
        try:
            key = file_key(path)
            if not expected_audio:
                # Cheap header probe; a file libsndfile cannot open is simply not audio.
                try:
                    audio_info(path)
                except AudioFileError:
                    return None
            audio = cached_audio(path, self.sample_rate, self.cache_dir, key)
            if len(audio) // self.hop_length < self.crop_samples // self.hop_length:
                return SkippedFile(path, f"shorter than a crop ({len(audio)} < "
                                         f"{self.crop_samples} samples at {self.sample_rate} Hz)",
                                   short=True)
            mel = None
            if self.features is not None:
                mel = cached_log_mel(path, self.features, self.cache_dir, key, audio=audio)
        except (AudioFileError, OSError) as e:
            return SkippedFile(path, read_error_reason(e))
        return CachedFile(
            source=path, audio=ArrayRef.of(audio_path(self.cache_dir, self.sample_rate, key)),
            num_samples=len(audio),
            mel=None if mel is None else ArrayRef.of(log_mel_path(self.cache_dir, self.features, key)))

    def __repr__(self) -> str:
        return (f"AudioFolderDataset({str(self.root)!r}, split={self.split!r}, "
                f"{len(self.files)} files, {self.total_samples / self.sample_rate / 3600:.2f} h, "
                f"{len(self)} items/epoch, {len(self.skipped)} skipped)")
