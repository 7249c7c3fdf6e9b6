"""Errors a user can cause.

Every error that bad input can trigger (a missing file, corrupt audio, a bad config,
features made with a different front-end) is a :class:`WavegenError` subclass whose
message is a single line. The CLI prints that line and exits with status 2; library
users can catch :class:`WavegenError` to handle all of them at once.
"""

from __future__ import annotations

import errno
import os


def _one_line(text: str) -> str:
    """Collapse whitespace (including newlines from C libraries) into one line."""
    return " ".join(str(text).split())


class WavegenError(Exception):
    """Base class for errors caused by user input; the message is always one line.

    ``exit_status`` is what the CLI exits with: 2 for bad input (the default), 1 for a
    fault of the machine rather than of the input (:class:`StorageError`).
    """

    exit_status = 2

    def __init__(self, message: str):
        super().__init__(_one_line(message))


class AudioFileError(WavegenError):
    """An audio file is missing, empty, truncated, corrupt, or in an unsupported format."""

    def __init__(self, path: str | os.PathLike, reason: str):
        self.path = os.fspath(path)
        self.reason = _one_line(reason)
        super().__init__(f"{self.path}: {self.reason}")


class ConfigError(WavegenError):
    """A configuration value is unknown, of the wrong type, or inconsistent."""


class FeatureMismatchError(WavegenError):
    """Features were computed with a different front-end than the one a model expects."""


class UsageError(WavegenError):
    """A command or function was called with arguments that cannot work together."""


class CheckpointError(WavegenError):
    """A model bundle or training state is missing, incomplete, corrupt or incompatible."""


class DataError(WavegenError):
    """A dataset input (MIDI file, corpus folder, metadata) is missing, corrupt or unusable."""


class KernelUnavailableError(WavegenError):
    """A fast sampling backend cannot be built, loaded or used here (``auto`` falls back)."""


class StorageError(WavegenError):
    """The machine, not the input, failed a file operation: disk full, quota, read-only
    file system, permissions, an I/O error. The message names the file; exit status 1."""

    exit_status = 1

    def __init__(self, path: str | os.PathLike | None, reason: str):
        self.path = None if path is None else os.fspath(path)
        self.reason = _one_line(reason)
        super().__init__(self.reason if self.path is None else f"{self.path}: {self.reason}")


#: errno values that mean "the machine cannot store or read this", not "the input is bad".
STORAGE_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES,
                            errno.EPERM, errno.EIO, errno.EFBIG})


def is_storage_error(exc: BaseException) -> bool:
    """True for an OSError whose errno is one of :data:`STORAGE_ERRNOS`, also when a library
    wrapped it (``__cause__`` / ``__context__``) or only kept its text (safetensors' Rust
    errors say "No space left on device (os error 28)")."""
    seen = 0
    while exc is not None and seen < 8:
        if isinstance(exc, OSError) and exc.errno in STORAGE_ERRNOS:
            return True
        if any(f"(os error {code})" in str(exc) for code in STORAGE_ERRNOS):
            return True
        exc = exc.__cause__ or exc.__context__
        seen += 1
    return False


def storage_error(exc: BaseException, path: str | os.PathLike | None = None) -> StorageError:
    """A one-line :class:`StorageError` for ``exc`` (see :func:`is_storage_error`) naming
    ``path`` (or the file the OSError names), e.g. ``out.wav: no space left on device``."""
    code = None
    probe: BaseException | None = exc
    while probe is not None and code is None:
        if isinstance(probe, OSError) and probe.errno in STORAGE_ERRNOS:
            code = probe.errno
            path = path if path is not None else probe.filename
        else:
            code = next((c for c in STORAGE_ERRNOS if f"(os error {c})" in str(probe)), None)
        probe = probe.__cause__ or probe.__context__
    reason = os.strerror(code) if code is not None else str(exc)
    return StorageError(path, reason[:1].lower() + reason[1:])
