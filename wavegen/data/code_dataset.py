"""Random crops of cached VQ-VAE codes: the training data of the priors over codes.

``CodeDataset(root, level, crop_codes, ...)`` reads the codes files that ``wavegen encode``
wrote under ``root`` (``NAME.levelL.npz``, searched recursively; hidden files and folders
are ignored; format in :mod:`wavegen.codes`) and cuts crops of ``crop_codes`` consecutive
codes of level ``level``. Items are ``{"codes": int64 [crop_codes]}``; with
``upper_level=u`` (an upsampler prior, conditioned on the coarser level ``u``), also
``"upper_codes": int64 [crop_codes * hop_level / hop_u]``, the level-``u`` codes of the same
stretch of audio: upper code ``j`` covers samples ``[j * hop_u, (j + 1) * hop_u)``, so a crop
starts on a multiple of ``r = hop_u / hop_level`` codes and lower code ``i`` of the crop lies
under upper code ``i // r``. The level-``u`` file of each source is the one beside it
(``NAME.levelU.npz``), and must come from the same audio (source, length) and bundle.

One bundle. Codes only mean something to the autoencoder that made them: every file used
must carry the same bundle fingerprint (:func:`~wavegen.checkpoint.bundle_fingerprint`,
or the one given as ``fingerprint``); a folder mixing bundles is refused (a DataError naming
both fingerprints and a file of each), never silently filtered.

Determinism. Item ``i`` of epoch ``e`` depends only on ``(seed, e, i)``
(:func:`~wavegen.data.feature_cache.crop_generator`), as in the audio datasets; every
code-aligned window of every file is equally likely, so long files are sampled in proportion
to their length. Call :meth:`CodeDataset.set_epoch` each epoch (it reaches persistent
DataLoader workers). Items read their codes straight from the files (the codes are stored
uncompressed at a known offset), so the dataset pickles to workers as a few numbers per file.

Split. ``split`` hashes the codes' recorded source path (the audio file's path relative to
the folder given to ``wavegen encode``) with :func:`~wavegen.data.audio_folder.split_of`:
when the VQ-VAE trained on an :class:`~wavegen.data.audio_folder.AudioFolderDataset` of that
same folder, every file is in the same split for the prior as it was for the autoencoder.

Piano roll. With ``midi_root`` (the folder the codes were encoded from, holding each
recording's MIDI file beside it: ``SOURCE`` with the suffix ``.mid`` or ``.midi``), items
also hold ``"roll"``, float32 ``[C, crop_codes]``: the MIDI's piano roll
(:func:`~wavegen.data.midi.piano_roll`, default channels) on the level's grid, one frame per
code (frame ``j`` covers the samples of code ``j``). A source without its MIDI file is left
out like a bad file. The training data of a MIDI-conditioned top prior.

Bad files. A codes file that cannot be read, a level-``u`` partner that is missing or does
not match, and files shorter than a crop are left out, reported on the ``wavegen.data``
logger (one line each) and listed in ``dataset.skipped``; a folder with no usable file is a
DataError.
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

import torch

from wavegen.codes import CodesFile, codes_file_name, parse_codes_file_name, read_codes
from wavegen.data.audio_folder import SPLITS, split_of
from wavegen.data.feature_cache import (ArrayRef, CropPlan, EpochCrops, SkippedFile,
                                        map_files, read_error_reason, report_skipped)
from wavegen.errors import ConfigError, DataError, WavegenError

__all__ = ["CodeDataset", "CodeEntry"]


@dataclasses.dataclass(frozen=True)
class CodeEntry:
    """A usable codes file: where its level's codes lie, and its upper level's (or None).

    ``num_codes`` / ``num_upper``: their lengths; ``source``: the audio they encode.
    """

    path: str
    source: str
    codes: ArrayRef
    num_codes: int
    upper: ArrayRef | None = None
    num_upper: int = 0
    midi: str | None = None


def _whole(value: object, low: int) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= low


class CodeDataset(EpochCrops, torch.utils.data.Dataset):
    """Crops of ``crop_codes`` codes of level ``level`` from the codes files under ``root``.

    Args:
        root: a folder written by ``wavegen encode`` (searched recursively).
        level: the level whose codes the items hold (``"codes"``).
        crop_codes: codes per item; with ``upper_level`` a multiple of ``hop_upper /
            hop_level``.
        seed: base seed of the crops.
        split: None (every file), ``"train"`` or ``"validation"`` (see the module docstring).
        upper_level: a coarser level whose aligned codes items also hold
            (``"upper_codes"``), or None.
        validation_fraction: share of sources in the validation split, in [0, 1).
        items_per_epoch: length of an epoch (default: total codes / crop length).
        fingerprint: the bundle fingerprint every file must carry (default: whatever the
            files share).
        midi_root: the folder holding the sources' MIDI files (items then hold ``"roll"``;
            see the module docstring), or None.

    Attributes (after construction): ``files`` (:class:`CodeEntry`), ``skipped``,
    ``fingerprint``, ``hop_length`` (samples per code of ``level``), ``upper_hop``,
    ``ratio`` (level codes per upper code; 1 without an upper level), ``codebook_size``,
    ``upper_codebook_size``, ``sample_rate``, ``items_per_epoch``.
    """

    def __init__(self, root: str | os.PathLike, level: int, crop_codes: int, seed: int = 0,
                 split: str | None = None, upper_level: int | None = None,
                 validation_fraction: float = 0.05, items_per_epoch: int | None = None,
                 fingerprint: str | None = None, midi_root: str | os.PathLike | None = None):
        if not _whole(level, 0):
            raise ConfigError(f"level must be a whole number >= 0, got {level!r}")
        if not _whole(crop_codes, 1):
            raise ConfigError(f"crop_codes must be a whole number >= 1, got {crop_codes!r}")
        if upper_level is not None and (not _whole(upper_level, 0) or upper_level <= level):
            raise ConfigError(f"upper_level must be a level coarser than level {level} (a "
                              f"larger number) or None, got {upper_level!r}")
        if split not in (None, *SPLITS):
            raise ConfigError(f"split must be None, 'train' or 'validation', got {split!r}")
        if not (isinstance(validation_fraction, (int, float)) and 0 <= validation_fraction < 1):
            raise ConfigError(f"validation_fraction must be in [0, 1), got {validation_fraction!r}")
        if items_per_epoch is not None and not _whole(items_per_epoch, 1):
            raise ConfigError(f"items_per_epoch must be a positive integer or None, "
                              f"got {items_per_epoch!r}")
        self.root = Path(root)
        if not self.root.is_dir():
            raise DataError(f"codes folder {self.root} does not exist or is not a directory")
        self.midi_root = None if midi_root is None else Path(midi_root)
        if self.midi_root is not None and not self.midi_root.is_dir():
            raise DataError(f"MIDI folder {self.midi_root} does not exist or is not a directory")
        self._rolls: dict[str, torch.Tensor] = {}
        self.level = int(level)
        self.upper_level = upper_level
        self.crop_codes = int(crop_codes)
        self.seed = int(seed)
        self.split = split
        self.validation_fraction = float(validation_fraction)
        # In shared memory so that set_epoch() reaches persistent DataLoader workers.
        self._epoch = torch.zeros((), dtype=torch.int64).share_memory_()

        paths = self._walk()
        results = map_files(self._read, paths, desc="reading codes")
        read = [r for r in results if isinstance(r, tuple)]
        self.skipped: list[SkippedFile] = [r for r in results if isinstance(r, SkippedFile)]
        owner = f"CodeDataset({self.root}, level={level}, split={split})"
        if not read:
            self._fail(owner, f"no usable level-{level} codes files (NAME.level{level}.npz)")
        self._check_one_bundle([codes for codes, _ in read], fingerprint)
        first = read[0][0]
        self.fingerprint = first.fingerprint
        self.hop_length, self.sample_rate = first.hop, first.sample_rate
        self.codebook_size = first.codebook_size
        self.upper_hop = self.upper_codebook_size = None
        uppers = [upper for _, upper in read if upper is not None]
        self.ratio = 1
        if upper_level is not None and uppers:
            self.upper_hop, self.upper_codebook_size = uppers[0].hop, uppers[0].codebook_size
            if self.upper_hop % self.hop_length:
                raise DataError(f"{uppers[0].path}: level {upper_level}'s hop {self.upper_hop} "
                                f"is not a multiple of level {level}'s ({self.hop_length}), so "
                                f"its codes cannot be aligned")
            self.ratio = self.upper_hop // self.hop_length
            if self.crop_codes % self.ratio:
                raise ConfigError(f"crop_codes ({crop_codes}) must be a multiple of "
                                  f"{self.ratio} (level {level} codes per level {upper_level} "
                                  f"code: hops {self.hop_length} and {self.upper_hop})")

        used: list[CodeEntry] = []
        for codes, upper in read:
            if split is not None and split_of(codes.source, self.validation_fraction) != split:
                continue
            entry = self._entry(codes, upper)
            if isinstance(entry, SkippedFile):
                self.skipped.append(entry)
            else:
                used.append(entry)
        self.files = used
        report_skipped(owner, self.skipped, len(self.files) + len(self.skipped), len(self.files))
        if not self.files:
            what = "codes files" if split is None else f"codes files in split {split!r}"
            self._fail(owner, f"no usable level-{level} {what}")
        self.plan = CropPlan([f.num_codes for f in self.files], self.crop_codes, self.ratio)
        total = sum(f.num_codes for f in self.files)
        self.items_per_epoch = items_per_epoch or max(1, total // self.crop_codes)

    # ------------------------------------------------------------------ building
    def _fail(self, owner: str, message: str) -> None:
        detail = f"; {len(self.skipped)} skipped, first: {self.skipped[0].path}: " \
                 f"{self.skipped[0].reason}" if self.skipped else ""
        raise DataError(f"{self.root}: {message}{detail}")

    def _walk(self) -> list[str]:
        """The level's codes files under root (hidden files and folders skipped), sorted."""
        out = []
        for directory, subdirs, names in os.walk(self.root):
            subdirs[:] = sorted(d for d in subdirs if not d.startswith("."))
            for name in sorted(names):
                parsed = parse_codes_file_name(name)
                if not name.startswith(".") and parsed is not None and parsed[1] == self.level:
                    out.append(os.path.join(directory, name))
        return out

    def _read(self, path: str) -> tuple[CodesFile, CodesFile | None] | SkippedFile:
        """The codes at ``path`` and (with an upper level) its partner, checked for
        agreement; a SkippedFile saying why not."""
        try:
            codes = read_codes(path)
            if codes.level != self.level:
                return SkippedFile(path, f"named level {self.level} but holds level "
                                         f"{codes.level}")
            if self.upper_level is None:
                return codes, None
            stem, _ = parse_codes_file_name(os.path.basename(path))
            partner = os.path.join(os.path.dirname(path),
                                   codes_file_name(stem, self.upper_level))
            if not os.path.isfile(partner):
                return SkippedFile(path, f"no level-{self.upper_level} codes beside it "
                                         f"({os.path.basename(partner)})")
            upper = read_codes(partner)
        except (WavegenError, OSError) as exc:
            return SkippedFile(path, read_error_reason(exc, path))
        mismatch = next((what for what, ours, theirs in (
            ("level", self.upper_level, upper.level),
            ("bundle fingerprint", codes.fingerprint, upper.fingerprint),
            ("source", codes.source, upper.source),
            ("audio length", codes.num_samples, upper.num_samples),
            ("sample rate", codes.sample_rate, upper.sample_rate)) if ours != theirs), None)
        if mismatch is not None:
            return SkippedFile(path, f"its level-{self.upper_level} partner "
                                     f"{upper.path} differs in {mismatch}")
        return codes, upper

    def _check_one_bundle(self, files: list[CodesFile], fingerprint: str | None) -> None:
        """DataError unless every file carries one fingerprint (``fingerprint`` if given)
        and agrees on hop, codebook size and sample rate."""
        by_print: dict[str, CodesFile] = {}
        for codes in files:
            by_print.setdefault(codes.fingerprint, codes)
        if fingerprint is not None:
            other = next((c for p, c in by_print.items() if p != fingerprint), None)
            if other is not None:
                raise DataError(f"{self.root}: {other.path} holds codes of bundle "
                                f"{other.fingerprint}, not of bundle {fingerprint}")
        if len(by_print) > 1:
            (a, first), (b, second) = list(by_print.items())[:2]
            raise DataError(f"{self.root}: codes of {len(by_print)} bundles are mixed "
                            f"({a}: {first.path}; {b}: {second.path}); a prior learns the "
                            f"codes of one bundle: encode each into its own folder")
        reference = files[0]
        for codes in files[1:]:
            for what in ("hop", "codebook_size", "sample_rate"):
                if getattr(codes, what) != getattr(reference, what):
                    raise DataError(f"{codes.path}: {what} {getattr(codes, what)} differs "
                                    f"from {reference.path}'s {getattr(reference, what)}")

    def _entry(self, codes: CodesFile, upper: CodesFile | None) -> CodeEntry | SkippedFile:
        if upper is not None and (upper.hop != self.upper_hop
                                  or upper.codebook_size != self.upper_codebook_size):
            return SkippedFile(str(codes.path), f"its level-{self.upper_level} partner has hop "
                                                f"{upper.hop} and {upper.codebook_size} codes, "
                                                f"others {self.upper_hop} and "
                                                f"{self.upper_codebook_size}")
        midi = None
        if self.midi_root is not None:
            midi = self._midi_of(codes.source)
            if midi is None:
                return SkippedFile(str(codes.path), f"no MIDI file for {codes.source} under "
                                                    f"{self.midi_root} (.mid or .midi)")
        usable = codes.num_codes // self.ratio * self.ratio
        if usable < self.crop_codes:
            return SkippedFile(str(codes.path), f"shorter than a crop ({codes.num_codes} < "
                                                f"{self.crop_codes} codes)", short=True)
        return CodeEntry(str(codes.path), codes.source, codes.location, codes.num_codes,
                         None if upper is None else upper.location,
                         0 if upper is None else upper.num_codes, midi)

    def _midi_of(self, source: str) -> str | None:
        """The MIDI file of the recording ``source`` under ``midi_root`` (None if none)."""
        stem = (self.midi_root / source).with_suffix("")
        for suffix in (".midi", ".mid", ".MID", ".MIDI"):
            path = stem.with_suffix(suffix)
            if path.is_file():
                return str(path)
        return None

    def _roll(self, entry: CodeEntry) -> torch.Tensor:
        """The whole piano roll of ``entry``'s MIDI on the level's grid (cached per process)."""
        roll = self._rolls.get(entry.midi)
        if roll is None:
            from wavegen.data.midi import PianoRollConfig, piano_roll

            config = PianoRollConfig(self.sample_rate, self.hop_length)
            roll = piano_roll(entry.midi, config, num_frames=entry.num_codes)
            self._rolls[entry.midi] = roll
        return roll

    # ------------------------------------------------------------------ epochs and items
    @property
    def total_codes(self) -> int:
        return sum(f.num_codes for f in self.files)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        file_index, start = self.crop_location(index)
        entry = self.files[file_index]
        item = {"codes": torch.from_numpy(
            entry.codes.rows(start, self.crop_codes).astype("int64"))}
        if entry.upper is not None:
            item["upper_codes"] = torch.from_numpy(entry.upper.rows(
                start // self.ratio, self.crop_codes // self.ratio).astype("int64"))
        if entry.midi is not None:
            item["roll"] = self._roll(entry)[:, start:start + self.crop_codes].clone()
        return item

    def __repr__(self) -> str:
        upper = "" if self.upper_level is None else f", upper_level={self.upper_level}"
        return (f"CodeDataset({str(self.root)!r}, level={self.level}{upper}, "
                f"split={self.split!r}, {len(self.files)} files, {self.total_codes} codes, "
                f"{len(self)} items/epoch, {len(self.skipped)} skipped)")
