"""Atomic file writes: a reader sees the old file or the complete new one, never a part.

The content is written to a hidden temporary file in the target's directory (so the final
rename stays on one filesystem), flushed and fsynced, then renamed over the target with
``os.replace``. If anything fails the temporary file is removed and the target is untouched.
Audio files, plots, configs and checkpoints are all written through :func:`atomic_path`.

Temporaries are named ``.NAME.RANDOM.tmp`` (:func:`temporary_name`; model bundles use the
same names for their temporary folders). Only a killed process leaves one behind;
:func:`remove_leftover_temporaries` deletes them once no writer can be active.
:func:`storage_errors_named` turns a full disk (or another storage fault) met while writing
into a one-line :class:`~wavegen.errors.StorageError` naming the file.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from pathlib import Path
from typing import Iterator

from wavegen.errors import WavegenError, is_storage_error, storage_error

TEMPORARY_SUFFIX = ".tmp"


@contextlib.contextmanager
def atomic_path(target: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path to write; on success it replaces ``target`` atomically.

    The caller writes the complete file to the yielded path (by name: any library that takes
    a path works). The directory of ``target`` must exist.
    """
    target = Path(target)
    fd, tmp_name = tempfile.mkstemp(**temporary_name(target))
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        # mkstemp makes the file private (0600); give it the mode a plain open() would, or
        # keep the mode of the file being replaced.
        os.chmod(tmp, _target_mode(target))
        yield tmp
        _fsync_file(tmp)
        os.replace(tmp, target)
        _fsync_directory(target.parent)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        raise


def atomic_write_bytes(target: str | os.PathLike, data: bytes) -> None:
    """Write ``data`` to ``target`` atomically."""
    with atomic_path(target) as tmp:
        tmp.write_bytes(data)


def atomic_write_text(target: str | os.PathLike, text: str, encoding: str = "utf-8") -> None:
    """Write ``text`` to ``target`` atomically."""
    atomic_write_bytes(target, text.encode(encoding))


def temporary_name(target: str | os.PathLike) -> dict[str, str]:
    """``prefix``, ``suffix`` and ``dir`` for :func:`tempfile.mkstemp` / ``mkdtemp``: a hidden
    ``.NAME.RANDOM.tmp`` beside ``target`` (the same file system, so renaming is atomic)."""
    target = Path(target)
    return {"prefix": f".{target.name}.", "suffix": TEMPORARY_SUFFIX,
            "dir": str(target.parent) if str(target.parent) else "."}


def is_temporary(name: str) -> bool:
    """Whether ``name`` is one of the hidden temporaries of :func:`temporary_name`."""
    return name.startswith(".") and name.endswith(TEMPORARY_SUFFIX) and name.count(".") >= 3


def remove_leftover_temporaries(directory: str | os.PathLike) -> list[Path]:
    """Delete the temporaries (files or folders) that killed writers left in ``directory``.

    Only call it while no writer can be working there (e.g. holding the folder's lock):
    a live writer's temporary looks the same. Returns what was removed.
    """
    removed = []
    try:
        entries = list(os.scandir(directory))
    except FileNotFoundError:
        return removed
    for entry in entries:
        if not is_temporary(entry.name):
            continue
        path = Path(entry.path)
        if entry.is_dir(follow_symlinks=False):
            shutil.rmtree(path, ignore_errors=True)
        else:
            with contextlib.suppress(FileNotFoundError):
                path.unlink()
        removed.append(path)
    return removed


@contextlib.contextmanager
def storage_errors_named(path: str | os.PathLike) -> Iterator[None]:
    """Re-raise a storage fault inside the block (disk full, quota, read-only file system,
    also as a library's wrapped error such as safetensors' "No space left on device (os
    error 28)") as a one-line :class:`~wavegen.errors.StorageError` naming ``path``."""
    try:
        yield
    except WavegenError:
        raise
    except Exception as exc:
        if is_storage_error(exc):
            raise storage_error(exc, path) from None
        raise


def _target_mode(target: Path) -> int:
    try:
        return target.stat().st_mode & 0o7777
    except OSError:
        umask = os.umask(0)
        os.umask(umask)
        return 0o666 & ~umask


def _fsync_file(path: Path) -> None:
    with open(path, "rb+") as handle:
        os.fsync(handle.fileno())


def _fsync_directory(directory: Path) -> None:
    """Persist the rename itself (a no-op where directories cannot be opened, e.g. Windows)."""
    try:
        fd = os.open(directory if str(directory) else ".", os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
