"""An exclusive, crash-proof claim on a folder: one writer at a time (e.g. one training run).

:class:`FolderLock` takes an OS advisory lock (``fcntl.flock``) on the file ``.lock`` inside
the folder and writes the holder's PID into it. The operating system drops the lock when the
holder closes it or dies in any way (an exception, Ctrl-C, SIGKILL, a crash), so a lock is
never stale: a ``.lock`` file left behind by a dead process locks nothing. A second claim,
from another process or from another ``FolderLock`` in the same process, fails at once with
:class:`FolderInUseError` naming the folder and the PID that holds it.

On systems without ``fcntl`` (Windows) the lock is a no-op.
"""

from __future__ import annotations

import errno
import os
from pathlib import Path

from wavegen.errors import UsageError

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None

LOCK_FILE = ".lock"


class FolderInUseError(UsageError):
    """Another process (or another lock in this one) holds the folder."""

    def __init__(self, folder: Path, pid: int | None, hint: str = ""):
        self.folder = folder
        self.pid = pid
        holder = "another process" if pid is None else f"another process (PID {pid})"
        super().__init__(f"{folder} is in use by {holder}" + (f"; {hint}" if hint else ""))


class FolderLock:
    """An exclusive lock on ``folder`` (created if missing) while held.

    Use as a context manager or with :meth:`acquire` / :meth:`release`. ``hint`` ends the
    error message a refused claim raises (what the user can do about it).
    """

    def __init__(self, folder: str | os.PathLike, hint: str = ""):
        self.folder = Path(folder)
        self.path = self.folder / LOCK_FILE
        self.hint = hint
        self._fd: int | None = None

    @property
    def held(self) -> bool:
        return self._fd is not None

    def acquire(self) -> "FolderLock":
        """Take the lock or raise :class:`FolderInUseError` at once (never waits)."""
        if self._fd is not None:
            return self
        self.folder.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        if fcntl is not None:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError as exc:
                os.close(fd)
                if exc.errno not in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                    raise
                raise FolderInUseError(self.folder, holder_pid(self.folder), self.hint) from None
        # Only the holder writes: the PID a refused claim reports.
        os.ftruncate(fd, 0)
        os.lseek(fd, 0, os.SEEK_SET)
        os.write(fd, f"{os.getpid()}\n".encode())
        self._fd = fd
        return self

    def release(self) -> None:
        """Drop the lock (closing the file releases it); the file itself stays."""
        if self._fd is not None:
            fd, self._fd = self._fd, None
            os.close(fd)

    def __enter__(self) -> "FolderLock":
        return self.acquire()

    def __exit__(self, *exc_info) -> None:
        self.release()


def holder_pid(folder: str | os.PathLike) -> int | None:
    """The PID written by the holder of ``folder``'s lock (None if unknown or unreadable)."""
    try:
        text = (Path(folder) / LOCK_FILE).read_text().strip()
    except OSError:
        return None
    return int(text) if text.isdigit() else None
