"""Reading a log-mel ``.npy`` file a user hands to ``wavegen vocode`` / ``wavegen sample``.

A ``.npy`` file carries an array and nothing about the front-end that made it, so
:func:`read_log_mel` checks everything it can before a model sees the values:

* the bytes: an empty file, a ``.npz`` archive, a WAV/FLAC/OGG/MP3 file, a text file or a
  Python pickle renamed ``.npy`` are named as what they are; the header is parsed without
  unpickling, and a declared shape that the file does not hold (a forged or truncated
  header) is refused before anything is allocated;
* the array: a real floating dtype, ``[n_mels, frames]`` with the bundle's ``n_mels``,
  every value finite;
* the values, against the bundle's :class:`~wavegen.audio.features.FeatureConfig`
  (:func:`check_log_mel_range`): a log-mel of audio lies between the log of the clamp
  floor and the log of the largest mel energy a full-scale signal can reach. Values outside
  that range, or many values piled up on the clamp floor of another compression (``log10``
  instead of ``ln``, decibels), mean another front-end made the file: refused, never
  vocoded into noise.

Every failure is one line naming the file: :class:`~wavegen.errors.DataError` for a file
that is not a usable array, :class:`~wavegen.errors.FeatureMismatchError` for an array
made for another front-end.
"""

from __future__ import annotations

import math
import os
from functools import lru_cache

import numpy as np
import torch

from wavegen.audio.features import FeatureConfig
from wavegen.errors import DataError, FeatureMismatchError

__all__ = ["read_log_mel", "log_mel_of_audio", "check_log_mel_range", "log_mel_range",
           "FRONT_END_HELP"]

#: What ``--help`` says about ``--mel`` files (they do not record their front-end).
FRONT_END_HELP = ("a .npy records no front-end: it must be made with the bundle's own "
                  "(config.json 'features'); wavegen checks its shape [n_mels, frames] and "
                  "that its values lie in the range that front-end gives, so a log10 or dB "
                  "mel given to an ln vocoder is refused")

# Leading bytes of files people rename to .npy by mistake -> what to call them.
_SIGNATURES: tuple[tuple[bytes, str], ...] = (
    (b"PK\x03\x04", "a .npz archive (a zip of arrays), not a .npy array: save one array "
                    "with numpy.save"),
    (b"PK\x05\x06", "an empty .npz archive, not a .npy array"),
    (b"RIFF", "a WAV audio file, not a .npy array (give audio with --wav)"),
    (b"RF64", "a WAV audio file, not a .npy array (give audio with --wav)"),
    (b"fLaC", "a FLAC audio file, not a .npy array (give audio with --wav)"),
    (b"OggS", "an Ogg audio file, not a .npy array (give audio with --wav)"),
    (b"ID3", "an MP3 audio file, not a .npy array (give audio with --wav)"),
    (b"FORM", "an AIFF audio file, not a .npy array (give audio with --wav)"),
    (b"\x89HDF", "an HDF5 file, not a .npy array"),
    (b"\x80", "a Python pickle, not a .npy array (wavegen never unpickles data)"),
)
_NPY_MAGIC = b"\x93NUMPY"

# A clamp floor "piles up" when at least this fraction of the values sit on it.
_PILE_FRACTION = 0.01
# Margin above the loudest mel a full-scale signal gives (float audio may exceed 1.0 a bit,
# and resampling overshoots): a factor of 4 in amplitude.
_CEILING_MARGIN_AMPLITUDE = 4.0


def read_log_mel(path: str | os.PathLike, features: FeatureConfig) -> torch.Tensor:
    """The log-mel in ``path`` as float32 ``[n_mels, frames]``, checked against ``features``.

    Raises:
        DataError: the file is missing, empty, not a ``.npy`` array (named as what it is),
            truncated, declares a shape it does not hold, or has non-finite values.
        FeatureMismatchError: the dtype, shape or value range does not fit ``features``.
    """
    path = os.fspath(path)
    array = _load_npy(path)
    if not (np.issubdtype(array.dtype, np.floating)):
        kind = ("a complex" if np.issubdtype(array.dtype, np.complexfloating)
                else "a boolean" if array.dtype == np.bool_ else "an integer"
                if np.issubdtype(array.dtype, np.integer) else "a non-numeric")
        raise FeatureMismatchError(f"{path}: {kind} ({array.dtype}) array; a log-mel is real "
                                   f"floating point")
    if array.ndim != 2 or array.shape[0] != features.n_mels or array.shape[1] == 0:
        raise FeatureMismatchError(
            f"{path}: a {array.dtype} array of shape {tuple(array.shape)} does not match the "
            f"features [{features.n_mels}, frames] ({_describe(features)})")
    mel = np.asarray(array, dtype=np.float32)
    bad = ~np.isfinite(mel)
    if bad.any():
        nan = int(np.isnan(mel).sum())
        band, frame = np.argwhere(bad)[0]
        raise DataError(f"{path}: {nan} NaN and {int(bad.sum()) - nan} infinite values (the "
                        f"first at mel band {band}, frame {frame}); a log-mel must be finite")
    check_log_mel_range(mel, features, path)
    return torch.from_numpy(np.ascontiguousarray(mel))


def log_mel_of_audio(path: str | os.PathLike, features: FeatureConfig) -> torch.Tensor:
    """Log-mel ``[n_mels, frames]`` of an audio file analysed with ``features`` (mono, at
    the features' rate, cut to whole hops): copy-synthesis input. Non-finite samples and
    audio shorter than one FFT are refused with one line naming the file."""
    from wavegen.audio.io import load_audio
    from wavegen.audio.spectral import LogMelSpectrogram
    from wavegen.errors import UsageError

    audio, _ = load_audio(path, sample_rate=features.sample_rate, mono=True)
    usable = (audio.shape[-1] // features.hop_length) * features.hop_length
    if usable < features.n_fft:
        raise UsageError(f"{os.fspath(path)}: too short to analyse ({audio.shape[-1]} samples "
                         f"at {features.sample_rate} Hz; the front-end needs {features.n_fft})")
    with torch.inference_mode():
        return LogMelSpectrogram(features)(audio[0, :usable]).clone()


def _load_npy(path: str) -> np.ndarray:
    """The array in a ``.npy`` file, refusing anything else before allocating."""
    try:
        with open(path, "rb") as handle:
            size = os.fstat(handle.fileno()).st_size
            head = handle.read(16)
            if size == 0:
                raise DataError(f"{path}: empty file (0 bytes), not a .npy array")
            if not head.startswith(_NPY_MAGIC):
                raise DataError(f"{path}: {_what_is(head)}")
            handle.seek(0)
            try:
                version = np.lib.format.read_magic(handle)
                reader = {(1, 0): np.lib.format.read_array_header_1_0,
                          (2, 0): np.lib.format.read_array_header_2_0}.get(version)
                if reader is None:
                    raise DataError(f"{path}: .npy format version {version} is not supported")
                shape, fortran, dtype = reader(handle)
            except (ValueError, SyntaxError) as exc:
                raise DataError(f"{path}: corrupt .npy header ({' '.join(str(exc).split())[:120]})") from None
            if dtype.hasobject:
                raise DataError(f"{path}: holds pickled Python objects (dtype {dtype}), not "
                                f"numbers; wavegen never unpickles data")
            data_bytes = size - handle.tell()
            declared = math.prod(shape) * dtype.itemsize
            if declared > data_bytes:
                raise DataError(f"{path}: the header declares a {dtype} array of shape "
                                f"{tuple(shape)} ({declared:,} bytes) but the file holds "
                                f"{data_bytes:,}: truncated or corrupt")
            count = math.prod(shape)
            flat = np.fromfile(handle, dtype=dtype, count=count)
    except FileNotFoundError:
        raise DataError(f"{path}: no such file") from None
    except IsADirectoryError:
        raise DataError(f"{path}: is a folder, not a .npy file") from None
    except PermissionError:
        raise DataError(f"{path}: permission denied") from None
    order = "F" if fortran else "C"
    return flat.reshape(shape, order=order)


def _what_is(head: bytes) -> str:
    """What a file that is not a ``.npy`` array looks like, from its first bytes."""
    for signature, name in _SIGNATURES:
        if head.startswith(signature):
            return name
    if head.startswith((b"\xff\xfb", b"\xff\xf3", b"\xff\xf2")):
        return "an MP3 audio file, not a .npy array (give audio with --wav)"
    try:
        text = head.decode("utf-8")
    except UnicodeDecodeError:
        return "not a .npy array (unrecognised binary data)"
    if all(ch.isprintable() or ch.isspace() for ch in text):
        return "a text file, not a .npy array (save the array with numpy.save)"
    return "not a .npy array (unrecognised data)"


def _describe(features: FeatureConfig) -> str:
    return (f"{features.name}: {features.sample_rate} Hz, hop {features.hop_length}, "
            f"log {features.log}, clamp {features.log_clamp:g}")


def _compress_scalar(value: float, log: str, power: float) -> float:
    """:func:`wavegen.audio.spectral.compress` of one positive number (without the
    features' level map: see :func:`_level`)."""
    if log == "ln":
        return math.log(value)
    if log == "log10":
        return math.log10(value)
    if log == "db":
        return (20.0 / power) * math.log10(value)
    return value


def _level(value: float, features: FeatureConfig) -> float:
    """The features' level map (affine, then clamp) of one compressed value."""
    if not features.has_level_map:
        return value
    value = (value + features.level_offset) * features.level_scale
    if features.level_floor is not None:
        value = max(value, features.level_floor)
    if features.level_ceiling is not None:
        value = min(value, features.level_ceiling)
    return value


@lru_cache(maxsize=32)
def log_mel_range(features: FeatureConfig) -> tuple[float, float]:
    """(floor, ceiling): the values a log-mel made with ``features`` can take.

    The floor is the compressed clamp (silence); the ceiling is the compressed energy of the
    loudest mel band for a full-scale signal (every bin at the window's sum, times a margin
    of :data:`_CEILING_MARGIN_AMPLITUDE` in amplitude), so no audio exceeds it.
    """
    from wavegen.audio.spectral import mel_filterbank, window_tensor

    gain = float(window_tensor(features).sum())
    if features.stft_normalized:
        gain /= math.sqrt(features.n_fft)
    peak_bin = (gain * _CEILING_MARGIN_AMPLITUDE) ** features.power
    bank = mel_filterbank(features).double()  # [n_mels, n_freq]
    loudest = float(bank.sum(dim=-1).max()) * peak_bin
    if features.log == "none":
        return 0.0, loudest
    floor = _compress_scalar(features.log_clamp, features.log, features.power)
    ceiling = _compress_scalar(max(loudest, features.log_clamp), features.log, features.power)
    return _level(floor, features), _level(ceiling, features)


def check_log_mel_range(mel: np.ndarray | torch.Tensor, features: FeatureConfig,
                        path: str | os.PathLike = "log-mel") -> None:
    """Refuse a ``[n_mels, frames]`` array whose values cannot come from ``features``.

    Three clear signs of another front-end: values below the floor (the compressed clamp),
    values above the loudest possible band, and a pile of values (at least 1%) on a floor
    that is another compression's clamp floor (a power of ten under ln, log10 or dB), such
    as ``log10(1e-5) = -5`` for an ``ln`` front-end.
    """
    values = mel.detach().cpu().numpy() if isinstance(mel, torch.Tensor) else np.asarray(mel)
    floor, ceiling = log_mel_range(features)
    tolerance = 1e-3 * max(1.0, abs(floor))
    low, high = float(values.min()), float(values.max())
    expects = f"this bundle's front-end ({_describe(features)}) gives values in " \
              f"[{floor:.4g}, {ceiling:.4g}]"
    if low < floor - tolerance or high > ceiling + tolerance:
        raise FeatureMismatchError(f"{path}: values span [{low:.4g}, {high:.4g}] but {expects}: "
                                   f"the mel was made with another front-end{_guess(low)}")
    guess = _guess(low)
    if low > floor + tolerance and guess:
        on_minimum = np.abs(values - low) <= tolerance
        if on_minimum.mean() >= _PILE_FRACTION:
            raise FeatureMismatchError(
                f"{path}: {on_minimum.mean():.0%} of the values sit on a floor at {low:.4g}, "
                f"which is not this front-end's floor {floor:.4g}{guess}; {expects}")


def _guess(floor: float) -> str:
    """`` (it looks like log10 with clamp 1e-05)`` when ``floor`` is a known clamp floor."""
    for log, scale in (("ln", 1.0), ("log10", 1.0 / math.log(10.0)),
                       ("dB", 20.0 / math.log(10.0))):
        exponent = floor / scale / math.log(10.0)
        if floor < 0 and abs(exponent - round(exponent)) < 1e-3 and -12 <= round(exponent) <= -1:
            return f" (it looks like {log} with clamp 1e{round(exponent):03d})"
    return ""
