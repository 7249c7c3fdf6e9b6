"""Errors a user can cause.

Every error that bad input can trigger (a missing file, corrupt audio, a bad config,
features made with a different front-end) is a :class:`WavegenError` subclass whose
message is a single line. The CLI prints that line and exits with status 2; library
users can catch :class:`WavegenError` to handle all of them at once.
"""

from __future__ import annotations

import os


def _one_line(text: str) -> str:
    """Collapse whitespace (including newlines from C libraries) into one line."""
    return " ".join(str(text).split())


class WavegenError(Exception):
    """Base class for errors caused by user input; the message is always one line."""

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
