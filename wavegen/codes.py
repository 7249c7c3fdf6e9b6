"""Codes as data: a discrete autoencoder's codes of audio files, stored, checked and decoded.

``wavegen encode BUNDLE AUDIO... -o codes/`` turns every input (a file, or every audio file
under a folder) into the codes of each level of a VQ-VAE bundle
(:class:`~wavegen.models.protocols.DiscreteAutoencoder`), one file per input and level;
``wavegen decode BUNDLE CODES... -o out.wav|folder/`` turns them back into audio. The same
files are the training data of the priors over codes (:mod:`wavegen.data.code_dataset`).

Encoding. The audio is read at the bundle's sample rate, mixed down to mono and clipped to
[-1, 1] (what the autoencoder's training crops were), then, per level ``l`` of hop ``h_l``,
padded at the end with silence to ``N = ceil(T / h_l)`` whole codes and encoded in one pass.
Decoding gives ``N * h_l`` samples, clipped to [-1, 1] and trimmed to the original ``T``.

File format (``NAME.levelL.npz``, :func:`codes_file_name`): an *uncompressed* NumPy ``.npz``
archive (a zip of ``.npy`` members, as ``numpy.savez`` writes it) with these members:

=================  ===================  ===================================================
``wavegen_codes``  int64 scalar         format version, :data:`FORMAT_VERSION` (1)
``codes``          int16 ``[N]``        the codes (int32 for codebooks over 32768 codes)
``level``          int64 scalar         the level (0 = the finest)
``hop``            int64 scalar         audio samples per code at that level
``codebook_size``  int64 scalar         codes lie in ``[0, codebook_size)``
``sample_rate``    int64 scalar         Hz
``num_samples``    int64 scalar         the audio's length ``T`` before padding:
                                        ``(N - 1) * hop < T <= N * hop``
``fingerprint``    str scalar           :func:`~wavegen.checkpoint.bundle_fingerprint` of
                                        the bundle (and weights: EMA or raw) that encoded it
``source``         str scalar           the audio file's path relative to the folder given
                                        to ``wavegen encode`` (its name for a file given
                                        directly)
=================  ===================  ===================================================

:func:`read_codes` never unpickles and never trusts a header: only members stored without
compression, of numeric or unicode dtypes, whose declared size is exactly the bytes the
archive holds, are read, and every field is checked (types, ranges, the length relation,
codes inside the codebook). Anything else (a missing file, an ``.npz`` of other arrays, a
``.npy``, audio, a pickle, a damaged archive) is a one-line :class:`~wavegen.errors.DataError`
naming the file. Because members are stored, the codes of a file lie at a fixed offset
(:attr:`CodesFile.location`): datasets read crops of them directly.

Checks against a bundle (:func:`check_codes`, before anything is decoded): the fingerprint
(codes of another bundle are refused, naming both fingerprints), the level, the hop, the
sample rate and the codebook size. Every write is atomic (a hidden temporary renamed into
place), and the verbs read and check every input before they write anything.
"""

from __future__ import annotations

import dataclasses
import math
import os
import re
import struct
import threading
import zipfile
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

import numpy as np
import torch
from torch import nn

from wavegen.checkpoint import BundleInfo, bundle_fingerprint, load_bundle, read_bundle_info
from wavegen.data.feature_cache import ArrayRef
from wavegen.errors import CheckpointError, DataError, UsageError
from wavegen.utils.atomic import atomic_path, storage_errors_named

__all__ = ["CODES_SUFFIX", "FORMAT_VERSION", "CodesFile", "DecodeJob", "EncodeJob",
           "LoadedAutoencoder", "check_codes", "codes_file_name", "decode_codes",
           "encode_audio", "encode_file", "load_autoencoder", "parse_codes_file_name",
           "plan_decode", "plan_encode", "read_codes", "run_decode", "run_encode",
           "write_codes"]

#: Version of the codes file format (the ``wavegen_codes`` member).
FORMAT_VERSION = 1
#: Suffix of codes files.
CODES_SUFFIX = ".npz"
#: The member that marks an archive as a wavegen codes file.
MARKER = "wavegen_codes"
#: Integer scalar members and string members of the format.
_INT_FIELDS = ("level", "hop", "codebook_size", "sample_rate", "num_samples")
_STR_FIELDS = ("fingerprint", "source")
_MEMBERS = (MARKER, "codes", *_INT_FIELDS, *_STR_FIELDS)
#: Longest string member read (characters).
_MAX_TEXT = 4096
#: Audio suffixes decode writes (:data:`wavegen.audio.io.SAVE_FORMATS`).
_AUDIO_OUT = (".wav", ".flac", ".ogg")
#: Codes decoded to measure the hop of a family that does not state ``hop_lengths``.
_PROBE_CODES = 8

# numpy parses .npy headers with ast.literal_eval, which CPython 3.11 does not make safe
# under concurrent threads (see wavegen.data.feature_cache.load_npy): one at a time.
_HEADER_LOCK = threading.Lock()

_NAME = re.compile(r"^(?P<stem>.+)\.level(?P<level>\d+)\.npz$")

# Leading bytes of files that are not codes archives -> what to call them.
_SIGNATURES: tuple[tuple[bytes, str], ...] = (
    (b"\x93NUMPY", "a .npy array"),
    (b"RIFF", "a WAV audio file"),
    (b"RF64", "a WAV audio file"),
    (b"fLaC", "a FLAC audio file"),
    (b"OggS", "an Ogg audio file"),
    (b"ID3", "an MP3 audio file"),
    (b"FORM", "an AIFF audio file"),
    (b"\x89HDF", "an HDF5 file"),
    (b"\x80", "a Python pickle (wavegen never unpickles data)"),
)


# --------------------------------------------------------------------------- names


def codes_file_name(stem: str, level: int) -> str:
    """``STEM.levelL.npz``: the file :func:`run_encode` writes for one input and level."""
    return f"{stem}.level{int(level)}{CODES_SUFFIX}"


def parse_codes_file_name(name: str) -> tuple[str, int] | None:
    """``(stem, level)`` of a name made by :func:`codes_file_name`, else None."""
    match = _NAME.match(name)
    return None if match is None else (match["stem"], int(match["level"]))


# --------------------------------------------------------------------------- the file


def _whole(value: Any) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, (bool, np.bool_))


@dataclasses.dataclass(frozen=True, eq=False)
class CodesFile:
    """The codes of one audio file at one level, and what they need to be decoded.

    Attributes:
        codes: int64 ``[N]`` (``N >= 1``), each in ``[0, codebook_size)``.
        level: the autoencoder level (0 = the finest).
        hop: audio samples per code at that level.
        codebook_size: the level's number of codes.
        sample_rate: the audio rate in Hz.
        num_samples: the audio's length before padding: ``(N - 1) * hop < num_samples <=
            N * hop``.
        fingerprint: :func:`~wavegen.checkpoint.bundle_fingerprint` of the encoding bundle.
        source: the audio file it was made from (relative to the folder given to
            ``wavegen encode``; informational, and the key of dataset splits).
        path: the file it was read from (None when made in memory).
        location: where the codes lie in that file (an :class:`ArrayRef` of ``[N]``), for
            reading crops without loading the whole file; None when made in memory.

    Construction checks every field (a one-line DataError naming ``path`` or the source).
    """

    codes: torch.Tensor
    level: int
    hop: int
    codebook_size: int
    sample_rate: int
    num_samples: int
    fingerprint: str
    source: str
    path: Path | None = None
    location: ArrayRef | None = None

    def __post_init__(self) -> None:
        where = str(self.path) if self.path is not None else f"codes of {self.source!r}"

        def bad(message: str) -> DataError:
            return DataError(f"{where}: {message}")

        for name in _INT_FIELDS:
            value = getattr(self, name)
            if not _whole(value) or value < (0 if name == "level" else 1):
                raise bad(f"{name} must be a whole number >= {0 if name == 'level' else 1}, "
                          f"got {value!r}")
            object.__setattr__(self, name, int(value))
        for name in _STR_FIELDS:
            value = getattr(self, name)
            if not isinstance(value, str) or len(value) > _MAX_TEXT:
                raise bad(f"{name} must be a string of at most {_MAX_TEXT} characters")
        if not self.fingerprint:
            raise bad("no bundle fingerprint")
        codes = self.codes
        if isinstance(codes, np.ndarray):
            codes = torch.from_numpy(np.ascontiguousarray(codes))
        if not torch.is_tensor(codes) or codes.dim() != 1 or codes.numel() == 0 \
                or codes.is_floating_point() or codes.is_complex() or codes.dtype == torch.bool:
            shape = list(codes.shape) if torch.is_tensor(codes) else type(codes).__name__
            kind = getattr(codes, "dtype", "")
            raise bad(f"codes must be a non-empty integer array [N], got {shape} {kind}")
        codes = codes.detach().to("cpu", torch.int64)
        low, high = int(codes.min()), int(codes.max())
        if low < 0 or high >= self.codebook_size:
            first = int(torch.nonzero((codes < 0) | (codes >= self.codebook_size))[0])
            raise bad(f"codes must lie in [0, {self.codebook_size}) (the codebook), got "
                      f"{int(codes[first])} at code {first} (values in [{low}, {high}])")
        n = codes.numel()
        if not (n - 1) * self.hop < self.num_samples <= n * self.hop:
            raise bad(f"{n} codes of {self.hop} samples cannot hold {self.num_samples} "
                      f"samples (a file of T samples has ceil(T / hop) codes)")
        object.__setattr__(self, "codes", codes)
        if self.path is not None:
            object.__setattr__(self, "path", Path(self.path))

    @property
    def num_codes(self) -> int:
        return int(self.codes.numel())

    @property
    def seconds(self) -> float:
        return self.num_samples / self.sample_rate


def _codes_dtype(codebook_size: int) -> np.dtype:
    return np.dtype(np.int16) if codebook_size <= 2 ** 15 else np.dtype(np.int32)


def write_codes(path: str | os.PathLike, codes: CodesFile) -> Path:
    """Write ``codes`` to ``path`` (a ``.npz`` in an existing folder) atomically: the file
    is complete or absent (or, when it existed, unchanged). A full disk is a one-line
    StorageError naming the file. Returns the path."""
    path = Path(path)
    if path.suffix != CODES_SUFFIX:
        raise UsageError(f"{path}: a codes file is a {CODES_SUFFIX} archive")
    if not path.parent.is_dir():
        raise UsageError(f"cannot write {path}: its folder does not exist")
    if codes.codebook_size > 2 ** 31:
        raise UsageError(f"{path}: a codebook of {codes.codebook_size} codes does not fit the "
                         f"format's int32 codes")
    members = {
        MARKER: np.asarray(FORMAT_VERSION, np.int64),
        "codes": codes.codes.numpy().astype(_codes_dtype(codes.codebook_size)),
        **{name: np.asarray(getattr(codes, name), np.int64) for name in _INT_FIELDS},
        **{name: np.asarray(getattr(codes, name), np.str_) for name in _STR_FIELDS},
    }
    with storage_errors_named(path):
        with atomic_path(path) as tmp, open(tmp, "wb") as handle:
            np.savez(handle, **members)  # stored, not compressed: see read_codes
    return path


@dataclasses.dataclass(frozen=True)
class _Member:
    """A ``.npy`` member of a stored zip: where its data starts, its dtype and shape."""

    offset: int
    dtype: np.dtype
    shape: tuple[int, ...]
    fortran: bool

    @property
    def nbytes(self) -> int:
        return math.prod(self.shape) * self.dtype.itemsize


def _what_is(head: bytes) -> str:
    for signature, name in _SIGNATURES:
        if head.startswith(signature):
            return name
    if head.startswith((b"\xff\xfb", b"\xff\xf3", b"\xff\xf2")):
        return "an MP3 audio file"
    try:
        text = head.decode("utf-8")
    except UnicodeDecodeError:
        return "unrecognised binary data"
    if all(ch.isprintable() or ch.isspace() for ch in text):
        return "a text file"
    return "unrecognised data"


def _open_members(handle, path: str, size: int) -> dict[str, _Member]:
    """The members of the codes format in the zip ``handle``, checked (no data read)."""
    archive = zipfile.ZipFile(handle)
    names = [info.filename for info in archive.infolist()]
    wanted = {f"{name}.npy": name for name in _MEMBERS}
    if f"{MARKER}.npy" not in names:
        shown = ", ".join(sorted(n.removesuffix(".npy") for n in names)[:6]) or "none"
        raise DataError(f"{path}: an .npz archive that is not a wavegen codes file (no "
                        f"{MARKER} member; it holds {shown}); write codes with `wavegen encode`")
    members = {}
    for info in archive.infolist():
        name = wanted.get(info.filename)
        if name is None:
            continue  # a member the format does not have is never read
        if name in members:
            raise DataError(f"{path}: holds two {info.filename} members")
        if info.compress_type != zipfile.ZIP_STORED or info.flag_bits & 0x1:
            raise DataError(f"{path}: member {info.filename} is compressed or encrypted; codes "
                            f"files store their arrays uncompressed (numpy.savez)")
        handle.seek(info.header_offset)
        local = handle.read(30)
        if len(local) != 30 or local[:4] != b"PK\x03\x04":
            raise DataError(f"{path}: corrupt archive (member {info.filename} has no header)")
        name_length, extra_length = struct.unpack("<HH", local[26:30])
        start = info.header_offset + 30 + name_length + extra_length
        handle.seek(start)
        version = np.lib.format.read_magic(handle)
        reader = {(1, 0): np.lib.format.read_array_header_1_0,
                  (2, 0): np.lib.format.read_array_header_2_0}.get(version)
        if reader is None:
            raise DataError(f"{path}: member {info.filename} is a .npy of version {version}, "
                            f"which codes files do not use")
        with _HEADER_LOCK:
            shape, fortran, dtype = reader(handle)
        if dtype.hasobject or dtype.kind not in "iuU" or dtype.fields is not None \
                or dtype.subdtype is not None:
            raise DataError(f"{path}: member {info.filename} holds {dtype} values; codes files "
                            f"hold integers and text only (wavegen never unpickles data)")
        member = _Member(handle.tell(), dtype, tuple(int(n) for n in shape), bool(fortran))
        header = member.offset - start
        if member.nbytes != info.file_size - header or start + info.file_size > size:
            raise DataError(f"{path}: member {info.filename} declares {dtype} {member.shape} "
                            f"({member.nbytes:,} bytes) but holds "
                            f"{max(0, info.file_size - header):,}: truncated or corrupt")
        members[name] = member
    missing = [name for name in _MEMBERS if name not in members]
    if missing:
        raise DataError(f"{path}: not a complete codes file (no {', '.join(missing)})")
    return members


def _read_member(handle, path: str, name: str, member: _Member) -> np.ndarray:
    handle.seek(member.offset)
    data = handle.read(member.nbytes)
    if len(data) != member.nbytes:
        raise DataError(f"{path}: member {name}.npy is truncated")
    return np.frombuffer(data, member.dtype).reshape(member.shape,
                                                      order="F" if member.fortran else "C")


def read_codes(path: str | os.PathLike) -> CodesFile:
    """The codes file at ``path``, fully checked (see the module docstring): one-line
    DataErrors for anything that is not a complete, consistent codes file of a supported
    version. Never unpickles; allocates at most what the file holds."""
    name = os.fspath(path)
    try:
        with open(name, "rb") as handle:
            size = os.fstat(handle.fileno()).st_size
            head = handle.read(16)
            if size == 0:
                raise DataError(f"{name}: empty file (0 bytes), not a codes file")
            if not head.startswith(b"PK\x03\x04"):
                raise DataError(f"{name}: {_what_is(head)}, not a codes file (.npz written by "
                                f"`wavegen encode`)")
            try:
                members = _open_members(handle, name, size)
            except (zipfile.BadZipFile, zipfile.LargeZipFile, ValueError, EOFError,
                    struct.error, NotImplementedError, SyntaxError) as exc:
                reason = " ".join(str(exc).split())[:120] or type(exc).__name__
                raise DataError(f"{name}: corrupt codes archive ({reason})") from None
            values = {key: _read_member(handle, name, key, member)
                      for key, member in members.items()}
    except FileNotFoundError:
        raise DataError(f"{name}: no such file") from None
    except IsADirectoryError:
        raise DataError(f"{name}: is a folder, not a codes file") from None

    def scalar(key: str, kind: str) -> Any:
        value = values[key]
        if value.shape != () or value.dtype.kind not in kind:
            raise DataError(f"{name}: member {key} must be a scalar "
                            f"{'string' if kind == 'U' else 'integer'}, got "
                            f"{value.dtype} {tuple(value.shape)}")
        if kind == "U":
            if value.dtype.itemsize // 4 > _MAX_TEXT:
                raise DataError(f"{name}: member {key} is longer than {_MAX_TEXT} characters")
            return str(value[()])
        return int(value[()])

    version = scalar(MARKER, "iu")
    if version != FORMAT_VERSION:
        raise DataError(f"{name}: codes format version {version}; this wavegen reads version "
                        f"{FORMAT_VERSION} (re-encode with this wavegen)")
    codes = values["codes"]
    if codes.ndim != 1 or codes.dtype.kind not in "iu":
        raise DataError(f"{name}: codes must be integers [N], got {codes.dtype} "
                        f"{tuple(codes.shape)}")
    if codes.size and codes.dtype.kind == "u" and int(codes.max()) > np.iinfo(np.int64).max:
        raise DataError(f"{name}: codes beyond int64")
    member = members["codes"]
    location = ArrayRef(os.path.abspath(name), member.offset, member.dtype.str, member.shape)
    return CodesFile(torch.from_numpy(codes.astype(np.int64)),
                     **{key: scalar(key, "iu") for key in _INT_FIELDS},
                     **{key: scalar(key, "U") for key in _STR_FIELDS},
                     path=Path(name), location=location)


# --------------------------------------------------------------------------- the model


@dataclasses.dataclass(eq=False)
class LoadedAutoencoder:
    """A discrete autoencoder bundle ready to encode and decode.

    Attributes:
        model: the :class:`~wavegen.models.protocols.DiscreteAutoencoder` (eval mode).
        info: its bundle info.
        fingerprint: :func:`~wavegen.checkpoint.bundle_fingerprint` of the weights loaded.
        hops: audio samples per code of each level, finest first.
        codebook_size: codes per level.
        device: where the model runs.
        source: the bundle path as given.
    """

    model: nn.Module
    info: BundleInfo
    fingerprint: str
    hops: tuple[int, ...]
    codebook_size: int
    device: torch.device
    source: str

    @property
    def num_levels(self) -> int:
        return len(self.hops)

    @property
    def sample_rate(self) -> int:
        return self.info.sample_rate

    def check_level(self, level: Any) -> int:
        """``level`` if the model has it; a one-line UsageError otherwise."""
        if not _whole(level) or not 0 <= level < self.num_levels:
            raise UsageError(f"{self.source}: no level {level!r} (this bundle has levels "
                             f"0..{self.num_levels - 1})")
        return int(level)


def _level_hops(model: nn.Module, levels: int, device: torch.device, where: str
                ) -> tuple[int, ...]:
    stated = getattr(model, "hop_lengths", None)
    if stated is not None:
        return tuple(int(h) for h in stated)
    hops = []
    for level in range(levels):
        codes = torch.zeros(1, _PROBE_CODES, dtype=torch.long, device=device)
        with torch.inference_mode():
            samples = model.decode(codes, level).shape[-1]
        if samples == 0 or samples % _PROBE_CODES:
            raise CheckpointError(f"{where}: decode() of {_PROBE_CODES} level-{level} codes "
                                  f"gave {samples} samples, not a whole number per code")
        hops.append(samples // _PROBE_CODES)
    return tuple(hops)


def load_autoencoder(bundle: str | os.PathLike, *, use_ema: bool = True,
                     device: str | torch.device = "cpu") -> LoadedAutoencoder:
    """The discrete autoencoder bundle at ``bundle`` (a folder, its ``config.json`` or a
    ``checkpoints/latest`` pointer) with its fingerprint. A bundle of another kind is a
    one-line UsageError."""
    from wavegen.models.protocols import DISCRETE_AUTOENCODER
    from wavegen.models.registry import get_family

    where = os.fspath(bundle)
    info = read_bundle_info(bundle)
    kind = get_family(info.family).kind
    if kind != DISCRETE_AUTOENCODER:
        raise UsageError(f"{where}: family {info.family} is a {kind.replace('_', '-')} model, "
                         f"not a discrete autoencoder (VQ-VAE); only those have codes")
    fingerprint = bundle_fingerprint(bundle, use_ema=use_ema)
    model, info = load_bundle(bundle, use_ema=use_ema, device=device)
    size = getattr(info.model_config, "codebook_size", None)
    if not _whole(size) or size < 1:
        raise CheckpointError(f"{where}: family {info.family} does not state its codebook size "
                              f"(a config field codebook_size)")
    device = torch.device(device)
    levels = int(getattr(model, "num_levels", 1))
    return LoadedAutoencoder(model, info, fingerprint, _level_hops(model, levels, device, where),
                             int(size), device, where)


def check_codes(autoencoder: LoadedAutoencoder, codes: CodesFile) -> None:
    """One-line errors unless ``codes`` were made by this very bundle (fingerprint) and fit
    it (level, hop, sample rate, codebook size, code range)."""
    where = str(codes.path) if codes.path is not None else f"codes of {codes.source!r}"
    if codes.fingerprint != autoencoder.fingerprint:
        raise UsageError(f"{where}: codes of bundle {codes.fingerprint}, but "
                         f"{autoencoder.source} is bundle {autoencoder.fingerprint}: another "
                         f"model or other weights (codes decode only with the bundle and the "
                         f"weights, EMA or --raw-weights, that encoded them)")
    if not 0 <= codes.level < autoencoder.num_levels:
        raise UsageError(f"{where}: codes of level {codes.level}, but {autoencoder.source} has "
                         f"levels 0..{autoencoder.num_levels - 1}")
    hop = autoencoder.hops[codes.level]
    for what, theirs, ours in (("hop", codes.hop, hop),
                               ("sample rate", codes.sample_rate, autoencoder.sample_rate),
                               ("codebook size", codes.codebook_size, autoencoder.codebook_size)):
        if theirs != ours:
            raise UsageError(f"{where}: {what} {theirs}, but level {codes.level} of "
                             f"{autoencoder.source} has {ours}")
    high = int(codes.codes.max())
    if int(codes.codes.min()) < 0 or high >= autoencoder.codebook_size:
        raise UsageError(f"{where}: codes up to {high}, outside the codebook "
                         f"[0, {autoencoder.codebook_size}) of {autoencoder.source}")


def encode_audio(autoencoder: LoadedAutoencoder, audio: torch.Tensor, levels: Iterable[int],
                 source: str = "") -> list[CodesFile]:
    """Codes of mono ``audio`` ``[1, T]`` or ``[T]`` at the bundle's rate, one
    :class:`CodesFile` per level in ``levels`` (each padded at the end with silence to whole
    codes; see the module docstring)."""
    audio = audio.reshape(1, 1, -1).float().clamp(-1.0, 1.0)
    total = audio.shape[-1]
    if total == 0:
        raise UsageError(f"{source or 'audio'}: no samples to encode")
    out = []
    for level in levels:
        level = autoencoder.check_level(level)
        hop = autoencoder.hops[level]
        count = -(-total // hop)
        padded = torch.nn.functional.pad(audio, (0, count * hop - total))
        with torch.inference_mode():
            codes = autoencoder.model.encode(padded.to(autoencoder.device), level)
        if tuple(codes.shape) != (1, count):
            raise CheckpointError(f"{autoencoder.source}: encode() of {count * hop} samples at "
                                  f"level {level} gave codes {list(codes.shape)}, not [1, {count}]")
        out.append(CodesFile(codes[0].cpu(), level, hop, autoencoder.codebook_size,
                             autoencoder.sample_rate, total, autoencoder.fingerprint, source))
    return out


def encode_file(autoencoder: LoadedAutoencoder, path: str | os.PathLike,
                levels: Iterable[int] | None = None, source: str | None = None
                ) -> list[CodesFile]:
    """Codes of the audio file ``path`` (read at the bundle's rate, mono), one
    :class:`CodesFile` per level (default: every level). ``source`` is what the files record
    as their origin (default: the file's name)."""
    from wavegen.audio.io import load_audio

    audio, _ = load_audio(path, sample_rate=autoencoder.sample_rate, mono=True)
    levels = range(autoencoder.num_levels) if levels is None else levels
    return encode_audio(autoencoder, audio, levels,
                        Path(path).name if source is None else source)


def decode_codes(autoencoder: LoadedAutoencoder, codes: CodesFile) -> torch.Tensor:
    """Audio float32 ``[1, num_samples]`` in [-1, 1] of ``codes`` (checked first with
    :func:`check_codes`): the level's decoder output clipped and trimmed to the original
    length."""
    check_codes(autoencoder, codes)
    with torch.inference_mode():
        audio = autoencoder.model.decode(codes.codes[None].to(autoencoder.device), codes.level)
    expected = codes.num_codes * codes.hop
    if audio.shape[-1] != expected:
        raise CheckpointError(f"{autoencoder.source}: decode() of {codes.num_codes} codes gave "
                              f"{audio.shape[-1]} samples, not {expected}")
    return audio.reshape(1, -1)[:, :codes.num_samples].float().clamp(-1.0, 1.0).cpu()


# --------------------------------------------------------------------------- the verbs


@dataclasses.dataclass(frozen=True)
class EncodeJob:
    """One input of ``wavegen encode``: the audio file, what its codes record as their
    source, and the codes file of each level."""

    audio: Path
    source: str
    outputs: dict[int, Path]


@dataclasses.dataclass(frozen=True)
class DecodeJob:
    """One input of ``wavegen decode``: the codes file and the audio file to write."""

    codes: Path
    output: Path


def _visible_files(folder: Path, keep: Callable[[Path], bool]) -> list[Path]:
    """Files under ``folder`` (recursive, sorted) for which ``keep`` holds, skipping hidden
    files and folders (wavegen's temporaries, editor backups)."""
    found = []
    for directory, subdirs, names in os.walk(folder):
        subdirs[:] = sorted(d for d in subdirs if not d.startswith("."))
        found.extend(Path(directory) / n for n in sorted(names)
                     if not n.startswith(".") and keep(Path(directory) / n))
    return found


def _existing(name: str) -> Path:
    path = Path(name)
    if not path.exists():
        raise UsageError(f"{name}: no such file or folder")
    return path


def _check_unique(pairs: Sequence[tuple[Path, Path]], what: str) -> None:
    """UsageError if two inputs would write the same output."""
    seen: dict[Path, Path] = {}
    for source, output in pairs:
        key = Path(os.path.abspath(output))
        if key in seen:
            raise UsageError(f"{seen[key]} and {source} would both write {output}; {what}")
        seen[key] = source


def plan_encode(inputs: Sequence[str | os.PathLike], output: str | os.PathLike,
                levels: Sequence[int]) -> list[EncodeJob]:
    """The jobs of ``wavegen encode``: every input file, and every audio file under every
    input folder (recursive, hidden ones skipped), each to ``output/[RELATIVE/]NAME.levelL.npz``
    (the folder structure under an input folder is kept). Headers are read (a missing or
    unreadable input is a one-line error) and clashing outputs refused; nothing is written."""
    from wavegen.audio.io import audio_info
    from wavegen.data.audio_folder import AUDIO_SUFFIXES

    out_root = Path(output)
    if out_root.exists() and not out_root.is_dir():
        raise UsageError(f"{output}: exists and is not a folder (codes go into a folder)")
    jobs = []
    for name in inputs:
        path = _existing(os.fspath(name))
        if path.is_dir():
            files = _visible_files(path, lambda p: p.suffix.lower() in AUDIO_SUFFIXES)
            if not files:
                raise UsageError(f"{name}: no audio files inside")
            pairs = [(f, f.relative_to(path)) for f in files]
        else:
            pairs = [(path, Path(path.name))]
        for audio, relative in pairs:
            audio_info(audio)  # a missing, empty or unreadable file fails here, in one line
            folder = out_root / relative.parent
            jobs.append(EncodeJob(audio, relative.as_posix(),
                                  {level: folder / codes_file_name(relative.stem, level)
                                   for level in levels}))
    _check_unique([(job.audio, out) for job in jobs for out in job.outputs.values()],
                  "rename one of them or encode them into separate folders")
    return jobs


def run_encode(autoencoder: LoadedAutoencoder, jobs: Sequence[EncodeJob],
               report: Callable[[str], None] = print) -> list[list[CodesFile]]:
    """Encode every job and write its codes files (all levels of a file are encoded before
    any is written; each write is atomic). ``report`` gets one line per input."""
    done = []
    for job in jobs:
        files = encode_file(autoencoder, job.audio, list(job.outputs), job.source)
        for codes in files:
            target = job.outputs[codes.level]
            with storage_errors_named(target.parent):
                target.parent.mkdir(parents=True, exist_ok=True)
            write_codes(target, codes)
        counts = ", ".join(f"level {c.level}: {c.num_codes}" for c in files)
        names = ", ".join(str(job.outputs[c.level]) for c in files)
        report(f"encoded {job.audio} ({files[0].seconds:.2f} s; {counts} codes) -> {names}")
        done.append(files)
    return done


def plan_decode(inputs: Sequence[str | os.PathLike], output: str | os.PathLike
                ) -> list[DecodeJob]:
    """The jobs of ``wavegen decode``. One codes file and an output that is not a folder
    (no trailing slash, not an existing folder): that audio file (.wav, .flac or .ogg, in an
    existing folder). Otherwise ``output`` is a folder: each file becomes ``NAME.wav`` in it
    (``NAME.levelL.wav`` for ``NAME.levelL.npz``), keeping the structure under an input
    folder."""
    output_text = os.fspath(output)
    out = Path(output_text)
    paths = [(_existing(os.fspath(name)), os.fspath(name)) for name in inputs]
    single_file = len(paths) == 1 and paths[0][0].is_file()
    to_folder = out.is_dir() or output_text.endswith(("/", os.sep))
    if single_file and not to_folder:
        if out.suffix.lower() not in _AUDIO_OUT:
            raise UsageError(f"{output_text}: give an audio file ({', '.join(_AUDIO_OUT)}) or "
                             f"a folder (ending in /)")
        if not out.parent.is_dir():
            raise UsageError(f"cannot write {output_text}: its folder does not exist")
        return [DecodeJob(paths[0][0], out)]
    if out.exists() and not out.is_dir():
        raise UsageError(f"{output_text}: several codes files decode into a folder, and this "
                         f"is a file")
    jobs = []
    for path, name in paths:
        if path.is_dir():
            files = _visible_files(path, lambda p: p.suffix == CODES_SUFFIX)
            if not files:
                raise UsageError(f"{name}: no {CODES_SUFFIX} codes files inside")
            jobs += [DecodeJob(f, out / f.relative_to(path).with_suffix(".wav")) for f in files]
        else:
            jobs.append(DecodeJob(path, out / (path.name.removesuffix(CODES_SUFFIX) + ".wav")))
    _check_unique([(job.codes, job.output) for job in jobs],
                  "decode them into separate folders")
    return jobs


def run_decode(autoencoder: LoadedAutoencoder, jobs: Sequence[DecodeJob],
               report: Callable[[str], None] = print) -> list[tuple[DecodeJob, float]]:
    """Read and check every codes file against the bundle first (a bad one is a one-line
    error before anything is written), then decode each and write its audio atomically.
    ``report`` gets one line per file; returns each job with its seconds of audio."""
    from wavegen.audio.io import save_audio

    for job in jobs:  # all checks before any output
        check_codes(autoencoder, read_codes(job.codes))
    done = []
    for job in jobs:
        codes = read_codes(job.codes)
        audio = decode_codes(autoencoder, codes)
        with storage_errors_named(job.output.parent):
            job.output.parent.mkdir(parents=True, exist_ok=True)
        save_audio(job.output, audio, codes.sample_rate)
        report(f"wrote {job.output}: {codes.seconds:.2f} s at {codes.sample_rate} Hz from "
               f"{codes.num_codes} level-{codes.level} codes of {job.codes}")
        done.append((job, codes.seconds))
    return done
