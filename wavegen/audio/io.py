"""Reading, writing and inspecting audio files.

Waveforms here are float32 ``[channels, time]`` with values in [-1, 1]: a file holds one
signal, so the batch dimension used elsewhere in wavegen is not part of it. Sample rates
are always explicit and always positive integers.

* :func:`load_audio` reads anything libsndfile reads (WAV, FLAC, OGG, MP3, AIFF, ...),
  optionally a window of it, mixed down to mono, or resampled with soxr.
* :func:`save_audio` writes WAV, FLAC or OGG atomically: the target either keeps its old
  contents or gets the complete new file, never a partial one.
* :func:`audio_info` reads the header only.

Whatever is wrong with a file (missing, a directory, empty, no audio, truncated, corrupt,
an unsupported format, a bad sample rate, NaN or infinite samples in a float file) raises
:class:`~wavegen.errors.AudioFileError` with a one-line message naming the file; no
soundfile/libsndfile error escapes. A write that fails because the disk is full (or the
folder is read-only) raises :class:`~wavegen.errors.StorageError` naming the file. Arguments
that cannot work whatever the file (a 3-D waveform, a negative offset) raise
:class:`~wavegen.errors.UsageError`.

Truncation. libsndfile derives the length of PCM containers from the file size, so a WAV
(RIFF, RF64, RIFX) or AIFF file cut short reads "successfully" with fewer frames. For those
containers the declared size of the sample-data chunk is compared with the bytes actually
present. For other formats the frames decoded are compared with the frames the header
declares. MP3 streams declare an exact length only in a Xing/Info/VBRI tag; without one
libsndfile estimates the length from the first frame's bitrate, so untagged MP3s cannot be
checked, and as libsndfile stops reading at its estimate, they may even load shorter than
they are.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import numbers
import os
import struct

import numpy as np
import soundfile as sf
import soxr
import torch

from wavegen.errors import AudioFileError, StorageError, UsageError, is_storage_error, storage_error
from wavegen.utils.atomic import atomic_path

__all__ = ["AudioInfo", "SAVE_FORMATS", "audio_info", "check_save_path", "load_audio", "save_audio",
           "count_nonfinite"]

#: Formats :func:`save_audio` writes, by file suffix: (libsndfile format, default subtype).
SAVE_FORMATS: dict[str, tuple[str, str]] = {
    "wav": ("WAV", "PCM_16"),
    "flac": ("FLAC", "PCM_16"),
    "ogg": ("OGG", "VORBIS"),
}

# Subtypes that store samples as floats. Every other subtype is clipped to [-1, 1] first so
# that the result does not depend on the codec: libsndfile 1.2 saturates PCM itself, but
# Vorbis keeps samples beyond full scale and leaves each player to clip or wrap them.
_FLOAT_SUBTYPES = frozenset({"FLOAT", "DOUBLE"})

# libsndfile's frame count for a stream that does not declare its length (SF_COUNT_MAX),
# e.g. a FLAC file written to a pipe. Its FLAC decoder fails at the end of such a stream
# after losing the last block, so these files are refused rather than read incompletely.
_UNKNOWN_LENGTH = 2**63 - 1

# Chunked PCM containers whose length libsndfile takes from the file size:
# (container id, form type) -> (struct byte order, id of the sample-data chunk).
_CHUNKED_CONTAINERS = {
    (b"RIFF", b"WAVE"): ("<", b"data"),
    (b"RF64", b"WAVE"): ("<", b"data"),
    (b"RIFX", b"WAVE"): (">", b"data"),
    (b"FORM", b"AIFF"): (">", b"SSND"),
    (b"FORM", b"AIFC"): (">", b"SSND"),
}

# libsndfile's error code for "File does not exist or is not a regular file".
_SFE_BAD_FILE = 7

# RIFF writers that stream (cannot seek back) leave this in the data-chunk size.
_RIFF_SIZE_UNKNOWN = 0xFFFFFFFF


@dataclasses.dataclass(frozen=True)
class AudioInfo:
    """What a file's header says about its audio.

    ``duration`` is in seconds. ``format`` and ``subtype`` are libsndfile names, e.g.
    ``"WAV"`` / ``"PCM_16"``, ``"FLAC"`` / ``"PCM_24"``, ``"OGG"`` / ``"VORBIS"``,
    ``"MP3"`` / ``"MPEG_LAYER_III"``. For MP3 files without a Xing/Info/VBRI tag, ``frames``
    is libsndfile's estimate from the bitrate.
    """

    path: str
    sample_rate: int
    channels: int
    frames: int
    duration: float
    format: str
    subtype: str


def audio_info(path: str | os.PathLike) -> AudioInfo:
    """Describe an audio file from its header, without decoding any audio.

    Raises :class:`AudioFileError` for everything :func:`load_audio` rejects except damage
    that only shows when decoding (a truncated or corrupt compressed stream).
    """
    path = _fspath(path)
    with _open(path) as f:
        return AudioInfo(
            path=path,
            sample_rate=f.samplerate,
            channels=f.channels,
            frames=f.frames,
            duration=f.frames / f.samplerate,
            format=f.format,
            subtype=f.subtype,
        )


def load_audio(
    path: str | os.PathLike,
    *,
    sample_rate: int | None = None,
    mono: bool = False,
    offset: float = 0.0,
    duration: float | None = None,
    allow_nonfinite: bool = False,
) -> tuple[torch.Tensor, int]:
    """Read an audio file as a float32 tensor ``[channels, time]`` and its sample rate.

    Args:
        path: any file libsndfile reads (WAV, FLAC, OGG, MP3, AIFF, ...).
        sample_rate: resample to this rate (soxr, very high quality) when it differs from
            the file's; the returned rate is then this one.
        mono: average the channels, giving ``[1, time]``.
        offset: start of the window to read, in seconds from the beginning of the file.
        duration: length of the window in seconds (None: to the end). A window reaching past
            the end is cut at the end. Only the window is read from the file.
        allow_nonfinite: return NaN / infinite samples (float files can hold them) instead
            of refusing the file; for tools that inspect files (``wavegen info``).

    Returns:
        ``(waveform, rate)``: waveform float32 ``[channels, time]`` (``[1, time]`` when
        ``mono``), values as stored (in [-1, 1] for integer formats), and its sample rate.
    """
    path = _fspath(path)
    if sample_rate is not None:
        sample_rate = _check_rate(path, sample_rate, "target sample rate")
    if not (isinstance(offset, numbers.Real) and math.isfinite(offset) and offset >= 0):
        raise UsageError(f"offset must be a finite number of seconds >= 0, got {offset!r}")
    if duration is not None and not (
        isinstance(duration, numbers.Real) and math.isfinite(duration) and duration > 0
    ):
        raise UsageError(f"duration must be a finite number of seconds > 0, got {duration!r}")

    with _open(path) as f:
        rate, fmt, declared = f.samplerate, f.format, f.frames
        start = round(offset * rate)
        if start >= declared:
            raise AudioFileError(
                path, f"offset {offset:g} s is past the end of the audio ({declared / rate:g} s)"
            )
        wanted = declared - start
        if duration is not None:
            wanted = min(wanted, max(1, round(duration * rate)))
        try:
            if start:
                f.seek(start)
            samples = f.read(wanted, dtype="float32", always_2d=True)  # [time, channels]
        except sf.SoundFileError as e:
            raise AudioFileError(
                path, f"cannot decode the audio, the file is corrupt or truncated ({_sf_reason(e)})"
            ) from e

    if len(samples) == 0:
        raise AudioFileError(path, "no audio could be decoded, the file is corrupt or truncated")
    if len(samples) < wanted and _length_is_exact(path, fmt):
        raise AudioFileError(
            path, f"truncated: expected {wanted} frames but only {len(samples)} could be decoded"
        )

    if not allow_nonfinite:
        nan, inf = count_nonfinite(samples)
        if nan or inf:
            first = int(np.argmax(~np.isfinite(samples).all(axis=1)))
            raise AudioFileError(path, f"{_nonfinite_text(nan, inf)}, the first at "
                                       f"{(start + first) / rate:.3f} s: not usable audio")
    if mono:
        samples = samples.mean(axis=1, keepdims=True)
    if sample_rate is not None and sample_rate != rate:
        samples = soxr.resample(samples, rate, sample_rate, quality="VHQ")
        rate = sample_rate
    return torch.from_numpy(np.ascontiguousarray(samples.T, dtype=np.float32)), rate


def save_audio(
    path: str | os.PathLike,
    waveform: torch.Tensor | np.ndarray,
    sample_rate: int,
    *,
    subtype: str | None = None,
    format: str | None = None,
) -> None:
    """Write ``waveform`` ``[channels, time]`` (or ``[time]``) to ``path`` atomically.

    The format comes from ``format`` or else the file suffix: ``wav``, ``flac`` or ``ogg``
    (see :data:`SAVE_FORMATS`). ``subtype`` is a libsndfile subtype such as ``"PCM_16"``
    (default for WAV and FLAC), ``"PCM_24"``, ``"PCM_32"``, ``"FLOAT"`` (WAV) or ``"VORBIS"``
    (default for OGG).

    Samples outside [-1, 1] are clipped for every subtype except ``FLOAT`` and ``DOUBLE``,
    which store them unchanged. NaN or infinite samples are refused.

    The file is written through :func:`wavegen.utils.atomic.atomic_path`: to a hidden
    temporary file next to ``path``, flushed to disk, then renamed over ``path``. On any
    failure the temporary file is removed and an existing ``path`` is left as it was;
    nothing is created.
    """
    path = _fspath(path)
    fmt, default_subtype = _save_format(path, format)
    subtype = (subtype or default_subtype).upper()
    if not sf.check_format(fmt, subtype):
        choices = ", ".join(sorted(sf.available_subtypes(fmt)))
        raise AudioFileError(
            path, f"subtype {subtype!r} cannot be written as {fmt} (choose one of: {choices})"
        )
    rate = _check_rate(path, sample_rate, "sample rate")
    samples = _frames_for_writing(path, waveform, subtype)

    directory = os.path.dirname(os.path.abspath(path))
    if os.path.isdir(path):
        raise AudioFileError(path, "is a directory")
    if not os.path.isdir(directory):
        raise AudioFileError(path, f"cannot write: directory {directory} does not exist")

    # The failure is classified inside the block, while the partial temporary file still
    # holds the space a full disk ran out of.
    try:
        with atomic_path(path) as temp:
            try:
                sf.write(temp, samples, rate, subtype=subtype, format=fmt)
            except (sf.SoundFileError, OSError) as e:
                raise _write_error(path, fmt, subtype, e) from e
    except OSError as e:  # making, syncing or renaming the temporary file
        raise _write_error(path, fmt, subtype, e) from e


def count_nonfinite(samples: np.ndarray | torch.Tensor) -> tuple[int, int]:
    """(NaN count, infinite count) of an array of samples of any shape."""
    array = samples.numpy() if isinstance(samples, torch.Tensor) else np.asarray(samples)
    nan = int(np.isnan(array).sum())
    inf = int(np.isinf(array).sum())
    return nan, inf


def _nonfinite_text(nan: int, inf: int) -> str:
    parts = [f"{n} {what} sample{'s' if n != 1 else ''}"
             for n, what in ((nan, "NaN"), (inf, "infinite")) if n]
    return "contains " + " and ".join(parts)


# --------------------------------------------------------------------------- helpers


# Free space below this (bytes) after a failed write means the disk filled up: libsndfile
# reports ENOSPC only as "System error" and keeps no errno.
_FULL_DISK_BYTES = 1 << 16


def _write_error(path: str, fmt: str, subtype: str, error: Exception) -> Exception:
    """The one-line error for a failed write of ``path``: StorageError when the disk is full,
    the folder read-only or the OS refused (naming the file), else AudioFileError."""
    if is_storage_error(error):
        return storage_error(error, path)
    try:
        stats = os.statvfs(os.path.dirname(os.path.abspath(path)))
        full = stats.f_bavail * stats.f_frsize < _FULL_DISK_BYTES
    except (OSError, AttributeError):
        full = False
    if full:
        return StorageError(path, "no space left on device")
    if isinstance(error, sf.SoundFileError):
        return AudioFileError(path, f"cannot write {fmt}/{subtype}: {_sf_reason(error)}")
    return AudioFileError(path, f"cannot write: {getattr(error, 'strerror', None) or error}")


def _fspath(path: str | os.PathLike) -> str:
    try:
        return os.fspath(path)
    except TypeError:
        raise UsageError(
            f"expected a file path (str or os.PathLike), got {type(path).__name__}"
        ) from None


def _check_rate(path: str, rate: object, what: str) -> int:
    """``rate`` as an int, or AudioFileError unless it is a positive whole number."""
    try:
        whole = int(rate)  # type: ignore[call-overload]
    except (TypeError, ValueError, OverflowError):
        whole = None
    if whole is None or whole != rate or whole <= 0:
        raise AudioFileError(path, f"invalid {what} {rate!r}: it must be a positive integer (Hz)")
    return whole


def _sf_reason(error: sf.SoundFileError) -> str:
    """libsndfile's own words, without the "Error opening '<path>': " / "Error : " prefixes."""
    reason = str(getattr(error, "error_string", None) or error).rstrip(".")
    return reason.removeprefix("Error : ")


def _open(path: str) -> sf.SoundFile:
    """Open ``path`` for reading after the checks libsndfile does not make (or words badly)."""
    try:
        with open(path, "rb") as raw:
            size = os.fstat(raw.fileno()).st_size
            head = raw.read(12)
    except FileNotFoundError:
        raise AudioFileError(path, "file not found") from None
    except IsADirectoryError:
        raise AudioFileError(path, "is a directory, not an audio file") from None
    except OSError as e:
        raise AudioFileError(path, f"cannot read: {e.strerror or e}") from None
    if os.path.isdir(path):  # platforms where opening a directory succeeds
        raise AudioFileError(path, "is a directory, not an audio file")
    if size == 0:
        raise AudioFileError(path, "file is empty (0 bytes)")
    if (head[0:4], head[8:12]) in _CHUNKED_CONTAINERS:
        _check_chunked_container(path, head, size)

    try:
        f = sf.SoundFile(path)
    except sf.SoundFileError as e:
        # libsndfile calls an undecodable MP3 "not a regular file"; this one was just opened.
        bad_file = getattr(e, "code", None) == _SFE_BAD_FILE
        reason = "unrecognised or malformed data" if bad_file else _sf_reason(e)
        raise AudioFileError(path, f"not a readable audio file ({reason})") from None
    except TypeError:
        # libsndfile took it for headerless raw audio, which needs its rate and layout given.
        raise AudioFileError(path, "not a readable audio file (headerless raw audio)") from None
    frames = f.frames
    if frames == 0 or frames >= _UNKNOWN_LENGTH:
        f.close()
        if frames == 0:
            raise AudioFileError(path, "contains no audio (0 frames)")
        raise AudioFileError(
            path, "the stream does not declare its length, so libsndfile cannot read it; re-encode it"
        )
    return f


def _check_chunked_container(path: str, head: bytes, size: int) -> None:
    """Raise unless the sample-data chunk of a WAV/AIFF-style file is all there.

    These containers are a header (id, size, form type) followed by chunks, each an id,
    a size and a body padded to an even length. libsndfile reads a data chunk that is cut
    short without complaint, so compare its declared size with the bytes in the file.
    """
    order, data_id = _CHUNKED_CONTAINERS[(head[0:4], head[8:12])]
    rf64_data_size = None
    with open(path, "rb") as raw:
        pos = 12
        while pos + 8 <= size:
            raw.seek(pos)
            chunk_id, chunk_size = struct.unpack(order + "4sI", raw.read(8))
            if chunk_id == b"ds64":  # RF64 keeps the real 64-bit data size here
                body = raw.read(16)
                if len(body) == 16:
                    rf64_data_size = struct.unpack("<QQ", body)[1]
            elif chunk_id == data_id:
                if chunk_size == _RIFF_SIZE_UNKNOWN:
                    if rf64_data_size is None:
                        return  # written by a streaming encoder: the length is whatever is there
                    chunk_size = rf64_data_size
                present = size - (pos + 8)
                if present < chunk_size:
                    raise AudioFileError(
                        path,
                        f"truncated: the {data_id.decode()} chunk declares {chunk_size} bytes "
                        f"but only {present} are present",
                    )
                return
            pos += 8 + chunk_size + (chunk_size & 1)
    raise AudioFileError(path, f"truncated or corrupt: no complete '{data_id.decode()}' chunk")


def _length_is_exact(path: str, fmt: str) -> bool:
    """Whether libsndfile's frame count is declared by the file rather than estimated."""
    return fmt != "MP3" or _mp3_has_length_tag(path)


def _mp3_has_length_tag(path: str) -> bool:
    """Whether the first MPEG frame is a Xing/Info/VBRI tag, which gives the exact length."""
    with open(path, "rb") as raw:
        start = 0
        id3 = raw.read(10)
        if id3[:3] == b"ID3" and len(id3) == 10:
            # ID3v2 size: four 7-bit bytes, plus a 10-byte footer when flagged.
            start = 10 + sum((id3[6 + i] & 0x7F) << (21 - 7 * i) for i in range(4))
            start += 10 if id3[5] & 0x10 else 0
        raw.seek(start)
        frame = raw.read(40)
    # The tag sits after the 4-byte frame header and the side info, whose length depends
    # on the MPEG version and channel mode: 17/32 bytes (MPEG-1), 9/17 (MPEG-2/2.5); VBRI at 36.
    return any(frame[i : i + 4] in (b"Xing", b"Info", b"VBRI") for i in (13, 21, 36))


def check_save_path(path: str | os.PathLike, format: str | None = None) -> None:
    """AudioFileError (one line) unless :func:`save_audio` can write ``path``'s format: for
    callers that must refuse a bad output before they compute or write anything."""
    _save_format(_fspath(path), format)


def _save_format(path: str, format: str | None) -> tuple[str, str]:
    """(libsndfile format, default subtype) from ``format`` or else the file suffix."""
    name = format if format is not None else os.path.splitext(path)[1].lstrip(".")
    if isinstance(name, str) and name.lower() in SAVE_FORMATS:
        return SAVE_FORMATS[name.lower()]
    supported = ", ".join(SAVE_FORMATS)
    if format is not None:
        reason = f"unsupported format {format!r} for saving (supported: {supported})"
    elif name:
        reason = f"unsupported suffix '.{name}' for saving (supported: {supported})"
    else:
        reason = f"no file suffix to tell the format; pass format= (supported: {supported})"
    raise AudioFileError(path, reason)


def _frames_for_writing(path: str, waveform: torch.Tensor | np.ndarray, subtype: str) -> np.ndarray:
    """Check ``waveform`` ``[channels, time]`` or ``[time]``; return a new ``[time, channels]``."""
    if isinstance(waveform, torch.Tensor):
        floating = waveform.is_floating_point()
        if floating:  # via float32 because numpy has no bfloat16
            wide = waveform.dtype == torch.float64
            array = waveform.detach().to("cpu", torch.float64 if wide else torch.float32).numpy()
    elif isinstance(waveform, np.ndarray):
        floating = waveform.dtype.kind == "f"
        array = waveform
    else:
        kind = type(waveform).__name__
        raise UsageError(f"waveform must be a torch.Tensor or numpy.ndarray, got {kind}")
    if not floating:
        raise UsageError(f"waveform must hold floating-point samples, got {waveform.dtype}")
    if array.ndim == 1:
        array = array[None]
    if array.ndim != 2 or array.size == 0:
        shape = tuple(array.shape)
        raise UsageError(f"waveform must be a non-empty [channels, time] or [time], got shape {shape}")
    bad = array.size - int(np.count_nonzero(np.isfinite(array)))
    if bad:
        raise UsageError(f"cannot save {path}: waveform has {bad} NaN or infinite samples")
    # Float64 stays float64 so that PCM_32 and DOUBLE keep its precision; astype also copies,
    # so clipping leaves the caller's data alone.
    array = array.astype(np.float64 if array.dtype == np.float64 else np.float32)
    if subtype not in _FLOAT_SUBTYPES:
        np.clip(array, -1.0, 1.0, out=array)
    return np.ascontiguousarray(array.T)


@contextlib.contextmanager
def audio_writer(path: str | os.PathLike, sample_rate: int, channels: int = 1, *,
                 subtype: str | None = None, format: str | None = None):
    """Write a long signal piece by piece, atomically: ``with audio_writer(p, sr) as write:``.

    ``write(piece)`` takes ``[channels, n]`` (or ``[n]``) float pieces, checked and clipped as
    in :func:`save_audio`. The pieces go to a hidden temporary file that replaces ``path``
    only when the block ends without an error, so an interrupted job never leaves a partial
    file; memory stays flat whatever the total length.
    """
    path = _fspath(path)
    fmt, default_subtype = _save_format(path, format)
    subtype = (subtype or default_subtype).upper()
    rate = _check_rate(path, sample_rate, "sample rate")
    directory = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(directory):
        raise AudioFileError(path, f"cannot write: directory {directory} does not exist")
    try:
        with atomic_path(path) as temp:
            try:
                with sf.SoundFile(temp, "w", rate, channels, subtype=subtype,
                                  format=fmt) as handle:
                    def write(piece) -> None:
                        frames = _frames_for_writing(path, piece, subtype)
                        if frames.shape[1] != channels:
                            raise UsageError(f"{path}: piece has {frames.shape[1]} channels, "
                                             f"expected {channels}")
                        handle.write(frames)
                    yield write
            except (sf.SoundFileError, OSError) as e:
                raise _write_error(path, fmt, subtype, e) from e
    except OSError as e:  # making, syncing or renaming the temporary file
        raise _write_error(path, fmt, subtype, e) from e
