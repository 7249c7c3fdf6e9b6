"""On-disk caches of whole-file arrays, and the random crops datasets cut from them.

Decoding, mixing down and resampling a long recording (or computing its log-mel) takes far
longer than a training step may spend on one item, so it is done once per file, when a
dataset is built, and the result stored as a ``.npy`` file. An item then reads only the
bytes of its crop from those files; nothing is decoded per item.

Layout (all writes are atomic, so a killed run or two DataLoader workers racing on one
entry never leave a partial file)::

    cache_dir/audio/<rate>/<file key>.npy                     float32 [T], mono, in [-1, 1]
    cache_dir/features/<config.fingerprint()>/<file key>.npy  float32 [frames, n_mels]
    cache_dir/roll/<roll config key>/<MIDI key>-<frames>.npy  uint8 or float32 [frames, channels]

Frame arrays are stored frame-major, so the frames under a crop are one contiguous run of
bytes: an item is a handful of small reads at known offsets (:class:`ArrayRef`), with no
header parsing or memory mapping per item. The functions here return memory-mapped
arrays in the usual ``[channels, frames]`` orientation (a transposed view).

The file key hashes the source file's absolute path, size and modification time, so an
edited or replaced file gets a new entry and a stale array is never reused; a changed
FeatureConfig changes the fingerprint directory. Old entries are not deleted (delete the
cache directory to reclaim the space). :data:`CACHE_FORMAT` is part of every key: bump it
when the code that fills the cache changes what it stores.

Crop alignment. With ``padding="hop_aligned"`` (and ``n_fft - hop`` even, which
FeatureConfig enforces) frame ``f`` of a full file's log-mel is centred on the hop
``[f * hop, (f + 1) * hop)`` and the file has exactly ``T // hop`` frames, so the log-mel
of audio ``[s, s + n)`` (``s`` and ``n`` multiples of hop) is columns ``s // hop`` to
``(s + n) // hop`` of the full file's, computed with the real neighbouring samples instead
of padding. Other paddings shift the frames off that grid and are refused.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import logging
import math
import os
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TypeVar

import numpy as np
import torch

from wavegen.audio.features import FeatureConfig
from wavegen.audio.io import load_audio
from wavegen.audio.spectral import LogMelSpectrogram
from wavegen.errors import ConfigError, WavegenError
from wavegen.utils.atomic import atomic_path

# numpy parses .npy headers with ast.literal_eval, and CPython 3.11's AST constructor is not
# safe under concurrent threads ("AST constructor recursion depth mismatch"); map_files
# loads entries from a thread pool, so header parsing is serialised.
_NPY_LOAD_LOCK = threading.Lock()


def load_npy(path: str | os.PathLike) -> np.ndarray:
    """``np.load(path, mmap_mode="r")`` (no pickles), safe to call from several threads."""
    with _NPY_LOAD_LOCK:
        return np.load(path, mmap_mode="r", allow_pickle=False)

__all__ = [
    "ArrayRef", "CACHE_FORMAT", "CachedFile", "CropDataset", "CropPlan", "SkippedFile",
    "audio_path", "cached_array", "cached_audio", "cached_log_mel", "check_crop",
    "crop_generator", "default_cache_dir", "file_key", "frame_window", "log_mel_path",
    "logger", "map_files", "pack_levels", "read_error_reason", "report_skipped",
    "unpack_levels",
]

#: Version of what the cache stores; part of every cache path.
CACHE_FORMAT = 1

#: Skipped files are reported on this logger (one WARNING line each, then a summary).
#: Python prints WARNINGs to stderr even when logging is not configured.
logger = logging.getLogger("wavegen.data")

T = TypeVar("T")
R = TypeVar("R")


@dataclasses.dataclass(frozen=True)
class SkippedFile:
    """A file a dataset left out, and why (one line).

    ``short``: the file is fine but shorter than one crop (reported at INFO, not WARNING).
    """

    path: str
    reason: str
    short: bool = False


@dataclasses.dataclass(frozen=True)
class ArrayRef:
    """Where a cached ``.npy`` array's data lies: read runs of its leading axis directly.

    Datasets keep these instead of open memory maps: they pickle to DataLoader workers as a
    few numbers, and a read costs one open and one ``readinto`` (no header parsing).
    """

    path: str
    offset: int
    dtype: str
    shape: tuple[int, ...]

    @classmethod
    def of(cls, path: str | os.PathLike) -> "ArrayRef":
        array = load_npy(path)
        if not array.flags.c_contiguous:
            raise ValueError(f"{path}: cached arrays are stored in C order")
        return cls(os.fspath(path), int(array.offset), array.dtype.str, tuple(array.shape))

    def rows(self, first: int, count: int) -> np.ndarray:
        """Entries ``[first, first + count)`` of the leading axis, as a new writable array."""
        if first < 0 or count < 0 or first + count > self.shape[0]:
            raise IndexError(f"rows [{first}, {first + count}) outside the {self.shape[0]} "
                             f"of {self.path}")
        dtype = np.dtype(self.dtype)
        out = np.empty((count, *self.shape[1:]), dtype)
        row_bytes = out.itemsize * math.prod(self.shape[1:])
        with open(self.path, "rb", buffering=0) as handle:
            handle.seek(self.offset + first * row_bytes)
            got = handle.readinto(memoryview(out).cast("B"))
        if got != out.nbytes:
            raise OSError(f"{self.path}: cache file shorter than expected (was it modified?)")
        return out


@dataclasses.dataclass(frozen=True)
class CachedFile:
    """A usable file of a dataset: its cached arrays and the length of its audio.

    ``audio``: ``[T]`` float32; ``mel`` / ``roll``: frame-major ``[T // hop, channels]``
    (None when the dataset has none); ``num_samples``: ``T``; ``label``: the file's class
    index when the dataset is labelled (None otherwise).
    """

    source: str
    audio: ArrayRef
    num_samples: int
    mel: ArrayRef | None = None
    roll: ArrayRef | None = None
    label: int | None = None


def default_cache_dir() -> Path:
    """``$WAVEGEN_CACHE_DIR``, else ``$XDG_CACHE_HOME/wavegen``, else ``~/.cache/wavegen``.

    Keys contain absolute paths, so one cache directory serves any number of corpora.
    """
    explicit = os.environ.get("WAVEGEN_CACHE_DIR")
    if explicit:
        return Path(explicit)
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "wavegen"


def file_key(path: str | os.PathLike) -> str:
    """Hex key of a file's absolute path, size and modification time (OSError if absent)."""
    path = os.path.abspath(os.fspath(path))
    st = os.stat(path)
    text = f"{CACHE_FORMAT}\0{path}\0{st.st_size}\0{st.st_mtime_ns}"
    return hashlib.sha256(text.encode("utf-8", "surrogateescape")).hexdigest()[:24]


def cached_array(
    target: str | os.PathLike,
    compute: Callable[[], np.ndarray],
    check: Callable[[np.ndarray], bool] | None = None,
) -> np.ndarray:
    """The array stored at ``target`` (memory-mapped), computing and storing it if needed.

    An entry that cannot be read or fails ``check`` (e.g. a file damaged outside wavegen)
    is recomputed and replaced. The write goes through a temporary file and a rename, so
    concurrent writers of one entry are harmless: each writes the same complete array.
    """
    target = Path(target)
    if target.exists():
        try:
            array = load_npy(target)
        except (OSError, ValueError, EOFError):
            array = None
        if array is not None and (check is None or check(array)):
            return array
    array = np.ascontiguousarray(compute())
    target.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(target) as tmp, open(tmp, "wb") as handle:
        np.save(handle, array, allow_pickle=False)
    return load_npy(target)


def audio_path(cache_dir: str | os.PathLike, sample_rate: int, key: str) -> Path:
    """Cache entry of a file's decoded audio: ``audio/<rate>/<key>.npy``."""
    return Path(cache_dir) / "audio" / str(int(sample_rate)) / f"{key}.npy"


def cached_audio(
    path: str | os.PathLike, sample_rate: int, cache_dir: str | os.PathLike, key: str | None = None
) -> np.ndarray:
    """Mono audio of ``path`` at ``sample_rate``: float32 ``[T]`` in [-1, 1], memory-mapped.

    Decoded (``load_audio``: mono mix-down, soxr resampling) only when the cache has no
    entry for this file version. Resampling can overshoot full scale slightly, so the
    stored audio is clipped to [-1, 1] (the datasets promise that range).
    Raises :class:`~wavegen.errors.AudioFileError` for a file that cannot be read.
    """
    key = key or file_key(path)

    def compute() -> np.ndarray:
        wave, _ = load_audio(path, sample_rate=sample_rate, mono=True)
        return np.clip(wave[0].numpy(), -1.0, 1.0).astype(np.float32)

    return cached_array(audio_path(cache_dir, sample_rate, key), compute,
                        lambda a: a.ndim == 1 and a.dtype == np.float32)


@functools.lru_cache(maxsize=8)
def _log_mel_module(config: FeatureConfig) -> LogMelSpectrogram:
    # Stateless in forward, so one module per config is shared by every thread.
    return LogMelSpectrogram(config)


def log_mel_path(cache_dir: str | os.PathLike, config: FeatureConfig, key: str) -> Path:
    """Cache entry of a file's log-mel: ``features/<config.fingerprint()>/<key>.npy``."""
    return Path(cache_dir) / "features" / config.fingerprint() / f"{key}.npy"


def cached_log_mel(
    path: str | os.PathLike,
    config: FeatureConfig,
    cache_dir: str | os.PathLike,
    key: str | None = None,
    audio: np.ndarray | None = None,
) -> np.ndarray:
    """Log-mel of the whole file: float32 ``[n_mels, config.num_frames(T)]``, memory-mapped.

    Computed by :class:`~wavegen.audio.spectral.LogMelSpectrogram` from the cached audio at
    ``config.sample_rate`` (pass it as ``audio`` when already loaded) and stored under
    ``features/<config.fingerprint()>/``, so a different FeatureConfig never reuses it.
    The result is a transposed view of the frame-major file.
    """
    key = key or file_key(path)

    def compute() -> np.ndarray:
        wave = audio if audio is not None else cached_audio(path, config.sample_rate, cache_dir, key)
        with torch.inference_mode():
            mel = _log_mel_module(config)(torch.from_numpy(np.array(wave, dtype=np.float32)))
        return mel.numpy().T.astype(np.float32)

    def check(a: np.ndarray) -> bool:
        return a.ndim == 2 and a.shape[1] == config.n_mels and a.dtype == np.float32

    stored = cached_array(log_mel_path(cache_dir, config, key), compute, check)
    return stored.T


def check_crop(crop_samples: int, hop_length: int, config: FeatureConfig | None = None) -> None:
    """Raise ConfigError unless crops of ``crop_samples`` can be cut on a ``hop_length`` grid.

    With a FeatureConfig, also require that its frames sit on that grid: hop_aligned
    padding and the same hop.
    """
    for name, value in (("crop_samples", crop_samples), ("hop_length", hop_length)):
        if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
            raise ConfigError(f"{name} must be a positive integer, got {value!r}")
    if crop_samples % hop_length:
        raise ConfigError(f"crop_samples ({crop_samples}) must be a multiple of the hop length "
                          f"({hop_length}) so that features cover the crop exactly")
    if config is None:
        return
    if config.padding != "hop_aligned":
        raise ConfigError(
            f"cannot crop features with padding={config.padding!r}: only 'hop_aligned' frames "
            f"cover exactly the hop [f*hop, (f+1)*hop) of the audio, so only they can be sliced "
            f"out of a whole file's features to match an audio crop "
            f"('center' frames are centred on f*hop, 'none' frames start at f*hop)")
    if config.hop_length != hop_length:
        raise ConfigError(f"FeatureConfig hop_length ({config.hop_length}) differs from the "
                          f"dataset's hop_length ({hop_length})")


def frame_window(frames: ArrayRef | np.ndarray, start_sample: int, num_samples: int,
                 hop_length: int) -> torch.Tensor:
    """The frames of a whole file under audio ``[start_sample, start_sample + num_samples)``:
    float32 ``[channels, num_samples // hop]``.

    ``frames`` is a hop_aligned log-mel or a piano roll (frame ``f`` <-> samples
    ``[f * hop, (f + 1) * hop)``): an array ``[channels, frames]`` or an :class:`ArrayRef` to
    a frame-major cache file ``[frames, channels]``. uint8 values are decoded with
    :func:`unpack_levels`. Both numbers must be multiples of ``hop_length``.
    """
    if start_sample % hop_length or num_samples % hop_length:
        raise ConfigError(f"window [{start_sample}, +{num_samples}) is not on the hop grid "
                          f"({hop_length})")
    first = start_sample // hop_length
    count = num_samples // hop_length
    total = frames.shape[0] if isinstance(frames, ArrayRef) else frames.shape[-1]
    if first + count > total:
        raise ConfigError(f"window ends at frame {first + count}, past the {total} frames "
                          f"of the file")
    if isinstance(frames, ArrayRef):
        window = unpack_levels(frames.rows(first, count)).T
    else:
        window = unpack_levels(frames[:, first:first + count])
    return torch.from_numpy(np.ascontiguousarray(window, dtype=np.float32))


def crop_generator(seed: int, epoch: int, index: int) -> torch.Generator:
    """A torch.Generator seeded from ``(seed, epoch, index)`` only.

    SeedSequence mixes the three numbers so that neighbouring items and epochs get
    unrelated streams; nothing else (worker id, process, call order) enters, so a resumed
    run draws exactly the same crops.
    """
    state = np.random.SeedSequence([int(seed) & 0xFFFFFFFFFFFFFFFF, int(epoch), int(index)])
    value = int(state.generate_state(1, dtype=np.uint64)[0]) & 0x7FFFFFFFFFFFFFFF
    return torch.Generator().manual_seed(value)


class CropPlan:
    """Uniform random crops over a set of files, on a hop grid.

    Every hop-aligned window of ``crop_samples`` that fits inside some file is equally
    likely, so long recordings are sampled in proportion to their length.
    """

    def __init__(self, num_samples: Sequence[int], crop_samples: int, hop_length: int):
        self.crop_samples = crop_samples
        self.hop_length = hop_length
        hops = crop_samples // hop_length
        # Windows per file: start frame 0 .. (T // hop - hops); T // hop because features
        # and piano rolls have that many frames.
        counts = [max(0, n // hop_length - hops + 1) for n in num_samples]
        if not counts or min(counts) < 1:
            raise ValueError("every file must hold at least one crop")
        self._ends = torch.tensor(counts, dtype=torch.int64).cumsum(0)

    @property
    def num_windows(self) -> int:
        return int(self._ends[-1])

    def sample(self, generator: torch.Generator) -> tuple[int, int]:
        """``(file index, start sample)`` of one crop drawn with ``generator``."""
        r = torch.randint(self.num_windows, (1,), generator=generator)
        file = int(torch.searchsorted(self._ends, r, right=True))
        before = int(self._ends[file - 1]) if file else 0
        return file, (int(r) - before) * self.hop_length


def map_files(function: Callable[[T], R], items: Sequence[T], threads: int | None = None,
              desc: str | None = None) -> list[R]:
    """``[function(x) for x in items]`` on a thread pool, results in order, with a progress bar.

    Decoding (libsndfile), resampling (soxr) and the STFT (torch) release the GIL, so
    threads scale for cache building. ``function`` should catch the errors of bad files
    itself; any exception still propagates.
    """
    threads = threads or min(8, os.cpu_count() or 1)
    from tqdm.auto import tqdm

    bar = tqdm(total=len(items), desc=desc, unit="file", disable=len(items) < 20, leave=False)
    try:
        if threads <= 1 or len(items) <= 1:
            out = []
            for x in items:
                out.append(function(x))
                bar.update()
            return out
        with ThreadPoolExecutor(threads) as pool:
            futures = [pool.submit(function, x) for x in items]
            out = []
            for f in futures:
                out.append(f.result())
                bar.update()
            return out
    finally:
        bar.close()


def report_skipped(owner: str, skipped: Sequence[SkippedFile], total: int, used: int) -> None:
    """One line per skipped file (WARNING, INFO for short ones), then a one-line count."""
    for s in skipped:
        logger.log(logging.INFO if s.short else logging.WARNING,
                   "%s: skipping %s: %s", owner, s.path, s.reason)
    if skipped:
        short = sum(s.short for s in skipped)
        logger.warning("%s: skipped %d of %d files (%d unreadable or inconsistent, %d shorter "
                       "than a crop), using %d", owner, len(skipped), total,
                       len(skipped) - short, short, used)


def read_error_reason(error: BaseException, path: str | None = None) -> str:
    """One line saying why a file could not be used (without a leading ``"<path>: "``)."""
    if isinstance(error, OSError) and not isinstance(error, WavegenError):
        return error.strerror or str(error)
    reason = " ".join(str(error).split()) if isinstance(error, WavegenError) \
        else " ".join(f"{type(error).__name__}: {error}".split())
    for prefix in (getattr(error, "path", None), path):
        if prefix and reason.startswith(f"{prefix}: "):
            reason = reason[len(prefix) + 2:]
    return reason


# Exact uint8 storage of arrays whose values are all k / 127 (piano rolls: 0/1 flags and
# MIDI velocity / 127): 4x less disk and read bandwidth than float32. The table is built
# the way such values are made (k / 127.0 in float64, then float32), so decoding is exact.
_LEVELS_127 = (np.arange(256) / 127.0).astype(np.float32)


def pack_levels(array: np.ndarray) -> np.ndarray:
    """``array`` as uint8 codes when every value is exactly some ``k / 127``, else float32."""
    array = np.asarray(array, dtype=np.float32)
    with np.errstate(invalid="ignore"):  # NaN has no code; the comparison below rejects it
        codes = np.rint(np.clip(array, 0.0, 1.0) * 127.0).astype(np.uint8)
    if np.array_equal(_LEVELS_127[codes], array):
        return codes
    return array


def unpack_levels(array: np.ndarray) -> np.ndarray:
    """Inverse of :func:`pack_levels`: float32 values."""
    if array.dtype == np.uint8:
        return _LEVELS_127[array]
    return np.asarray(array, dtype=np.float32)


class EpochCrops:
    """What every crop dataset does with epochs: ``items_per_epoch`` items, item ``i`` of epoch
    ``e`` at ``plan.sample(crop_generator(seed, e, i))``, the epoch in shared memory so that
    :meth:`set_epoch` reaches persistent DataLoader workers. Needs ``_epoch`` (a shared
    int64 scalar tensor), ``items_per_epoch``, ``plan`` (:class:`CropPlan`) and ``seed``."""

    _epoch: torch.Tensor
    items_per_epoch: int
    seed: int

    @property
    def epoch(self) -> int:
        return int(self._epoch)

    def set_epoch(self, epoch: int) -> None:
        """Select the crops of epoch ``epoch``: call before creating the epoch's DataLoader
        iterator. Works with ``persistent_workers=True`` (the epoch is in shared memory)."""
        if isinstance(epoch, bool) or not isinstance(epoch, int) or epoch < 0:
            raise ConfigError(f"epoch must be an integer >= 0, got {epoch!r}")
        self._epoch.fill_(epoch)

    def __len__(self) -> int:
        return self.items_per_epoch

    def crop_location(self, index: int, epoch: int | None = None) -> tuple[int, int]:
        """``(file index, start position)`` of item ``index`` in ``epoch`` (default: current)."""
        if not 0 <= index < len(self):
            raise IndexError(f"item {index} out of range for {len(self)} items")
        epoch = self.epoch if epoch is None else epoch
        return self.plan.sample(crop_generator(self.seed, epoch, index))


class CropDataset(EpochCrops, torch.utils.data.Dataset):
    """Base of the crop datasets: ``items_per_epoch`` random crops of cached files.

    Item ``i`` of epoch ``e`` depends only on ``(seed, e, i)`` (:func:`crop_generator`).
    Subclasses fill ``self.files`` (:class:`CachedFile`) and call :meth:`_finish`; items are
    dicts with ``"audio"`` float32 ``[1, crop_samples]`` and, when the files have them,
    ``"mel"`` ``[n_mels, crop_samples // hop]`` and ``"roll"`` ``[channels, crop_samples // hop]``.

    Only :class:`ArrayRef` s are kept (no open files or memory maps), so the dataset pickles
    cheaply to DataLoader workers and needs no per-worker set-up.
    """

    files: list[CachedFile]
    skipped: list[SkippedFile]

    def __init__(self, crop_samples: int, hop_length: int, seed: int,
                 items_per_epoch: int | None):
        if items_per_epoch is not None and (isinstance(items_per_epoch, bool)
                                            or not isinstance(items_per_epoch, int)
                                            or items_per_epoch <= 0):
            raise ConfigError(f"items_per_epoch must be a positive integer or None, "
                              f"got {items_per_epoch!r}")
        self.crop_samples = crop_samples
        self.hop_length = hop_length
        self.seed = int(seed)
        # In shared memory so that set_epoch() reaches DataLoader workers that persist
        # across epochs (persistent_workers=True) and hold their own copy of the dataset.
        self._epoch = torch.zeros((), dtype=torch.int64).share_memory_()
        self._items_per_epoch = items_per_epoch
        self.files = []
        self.skipped = []

    def _finish(self) -> None:
        self.plan = CropPlan([f.num_samples for f in self.files], self.crop_samples,
                             self.hop_length)
        total = sum(f.num_samples for f in self.files)
        # Default epoch: as many crops as it takes to cover the audio once on average.
        self.items_per_epoch = self._items_per_epoch or max(1, total // self.crop_samples)

    @property
    def total_samples(self) -> int:
        return sum(f.num_samples for f in self.files)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        file_index, start = self.crop_location(index)
        f = self.files[file_index]
        n = self.crop_samples
        item = {"audio": torch.from_numpy(f.audio.rows(start, n))[None]}
        if f.mel is not None:
            item["mel"] = frame_window(f.mel, start, n, self.hop_length)
        if f.roll is not None:
            item["roll"] = frame_window(f.roll, start, n, self.hop_length)
        if f.label is not None:
            item["label"] = torch.tensor(f.label, dtype=torch.long)
        return item
