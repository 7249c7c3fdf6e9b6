"""C helpers compiled on first use, cached per source, compiler and machine, loaded with ctypes.

Used by the ``cpu`` sampling backend (:mod:`wavegen.kernels.cpu`) and by the audio core's
fused mel kernel (:mod:`wavegen.audio.mel_kernel`). A :class:`CLibrary` names one C source
file; :meth:`CLibrary.load` returns the ``ctypes.CDLL``, building it if needed:

* the system C compiler (``$CC``, else ``cc``, ``gcc`` or ``clang`` on ``PATH``) compiles
  the source with the library's flag sets, tried in order (e.g. with and without OpenMP);
* the result lives in a cache directory (``$WAVEGEN_KERNEL_CACHE``, default
  ``~/.cache/wavegen/kernels``) under a name keyed by the source, its ABI version, the
  machine (``-march=native`` code is never loaded on another CPU), the compiler, its version
  and the flags;
* the build goes to a temporary file that is renamed into place under a file lock, so
  concurrent processes never see a partial library;
* without a compiler, a library built earlier for the same source and machine still loads.

Every failure (no compiler, a failed build, a library that does not load or has the wrong
ABI) raises :class:`NativeUnavailable` with a one-line reason; callers turn that into their
own error or fall back to their pure-PyTorch path.
"""

from __future__ import annotations

import ctypes
import functools
import hashlib
import os
import platform
import shlex
import shutil
import subprocess
import tempfile
import threading
from pathlib import Path
from typing import Sequence

__all__ = ["CLibrary", "NativeUnavailable", "cache_dir", "find_compiler"]


class NativeUnavailable(RuntimeError):
    """A C helper cannot be built or loaded here; the message is one line."""


def cache_dir() -> Path:
    """Where built libraries are kept (``$WAVEGEN_KERNEL_CACHE`` or ``~/.cache/...``)."""
    env = os.environ.get("WAVEGEN_KERNEL_CACHE")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "wavegen" / "kernels"


def find_compiler() -> list[str] | None:
    """The C compiler command (``$CC`` split like a shell would, else cc/gcc/clang)."""
    env = os.environ.get("CC", "").strip()
    if env:
        parts = shlex.split(env)
        exe = shutil.which(parts[0])
        return [exe, *parts[1:]] if exe else None
    for name in ("cc", "gcc", "clang"):
        exe = shutil.which(name)
        if exe:
            return [exe]
    return None


_version_cache: dict[tuple[str, ...], str] = {}


def _compiler_version(cc: list[str]) -> str:
    key = tuple(cc)
    if key not in _version_cache:
        try:
            proc = subprocess.run([*cc, "--version"], capture_output=True, text=True, timeout=60)
            _version_cache[key] = f"{proc.returncode}\n{proc.stdout}\n{proc.stderr}"
        except (OSError, subprocess.SubprocessError) as error:
            _version_cache[key] = f"unavailable: {error}"
    return _version_cache[key]


@functools.lru_cache(maxsize=None)
def _machine_identity() -> str:
    """The CPU a library is built for (-march=native): model and feature flags."""
    parts = [platform.system(), platform.machine(), platform.processor()]
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as f:
            for line in f:
                if line.split(":")[0].strip() in ("vendor_id", "model name", "flags",
                                                   "Features", "CPU part", "cpu family",
                                                   "model"):
                    parts.append(line.strip())
                elif not line.strip():
                    break  # the first processor is enough
    except OSError:
        pass
    return "\n".join(parts)


@functools.lru_cache(maxsize=None)
def cpu_flags() -> frozenset[str]:
    """The feature flags of this machine's first CPU (``/proc/cpuinfo``; empty where there
    is none), e.g. ``avx512_bf16``: what ``-march=native`` code may use here."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as f:
            for line in f:
                if line.split(":")[0].strip() in ("flags", "Features"):
                    return frozenset(line.split(":", 1)[1].split())
    except OSError:
        pass
    return frozenset()


def _first_line(text: str) -> str:
    for line in text.splitlines():
        if line.strip():
            return line.strip()
    return ""


class _FileLock:
    """An exclusive advisory lock on ``path`` (no-op where fcntl does not exist)."""

    def __init__(self, path: Path):
        self.path = path
        self.file = None

    def __enter__(self):
        try:
            import fcntl
        except ImportError:
            return self
        self.file = open(self.path, "a+b")
        fcntl.flock(self.file.fileno(), fcntl.LOCK_EX)
        return self

    def __exit__(self, *exc):
        if self.file is not None:
            import fcntl

            fcntl.flock(self.file.fileno(), fcntl.LOCK_UN)
            self.file.close()


class CLibrary:
    """One C source file built into a shared library on first use.

    ``source``: the ``.c`` file. ``abi_version``: bumped whenever the C interface changes;
    the source must export ``int <abi_symbol>(void)`` returning it (checked on load).
    ``flag_sets``: compiler flags, tried in order until one builds. ``label``: how errors
    name the library (e.g. ``"cpu backend"``).
    """

    def __init__(self, source: Path, abi_version: int, abi_symbol: str,
                 flag_sets: Sequence[Sequence[str]], label: str):
        self.source = Path(source)
        self.abi_version = int(abi_version)
        self.abi_symbol = abi_symbol
        self.flag_sets = [list(flags) for flags in flag_sets]
        self.label = label
        self._loaded: dict[str, ctypes.CDLL] = {}
        self._lock = threading.Lock()

    @property
    def stem(self) -> str:
        return self.source.stem

    @functools.cached_property
    def _base_digest(self) -> str:
        """What every usable build shares: this source, this machine, this ABI."""
        digest = hashlib.sha256()
        for part in (self.source.read_bytes(), _machine_identity().encode(),
                     str(self.abi_version).encode()):
            digest.update(part)
            digest.update(b"\0\1")
        return digest.hexdigest()[:16]

    def library_name(self, cc: list[str], flags: list[str]) -> str:
        """``<stem>-<source and machine>-<compiler, version and flags>.so``."""
        digest = hashlib.sha256()
        for part in ("\0".join(cc).encode(), _compiler_version(cc).encode(),
                     " ".join(flags).encode()):
            digest.update(part)
            digest.update(b"\0\1")
        return f"{self.stem}-{self._base_digest}-{digest.hexdigest()[:16]}.so"

    def prebuilt_exists(self) -> bool:
        """Whether a build for this source and machine is in the cache (no compiler needed)."""
        return any(cache_dir().glob(f"{self.stem}-{self._base_digest}-*.so"))

    def load(self) -> ctypes.CDLL:
        """The loaded library, built first if needed; NativeUnavailable when it cannot be."""
        cc = find_compiler()
        directory = cache_dir()
        with self._lock:
            if cc is None:
                built = self._prebuilt(directory)
                if built is None:
                    raise NativeUnavailable(f"{self.label}: no C compiler found (set CC or "
                                            "install gcc or clang)")
                return built
            errors = []
            for flags in self.flag_sets:
                target = directory / self.library_name(cc, flags)
                if str(target) in self._loaded:
                    return self._loaded[str(target)]
                error = self._compile(cc, flags, target)
                if error is None:
                    return self._open(target)
                errors.append(error)
            raise NativeUnavailable(f"{self.label}: compiling {self.source.name} with {cc[0]} "
                                    f"failed: {errors[0]}")

    def _open(self, path: Path) -> ctypes.CDLL:
        key = str(path)
        if key not in self._loaded:
            try:
                lib = ctypes.CDLL(key)
            except OSError as error:
                raise NativeUnavailable(f"{self.label}: cannot load {path.name}: {error}") from None
            version = getattr(lib, self.abi_symbol, None)
            if version is None:
                raise NativeUnavailable(f"{self.label}: {path.name} has no ABI version")
            version.restype = ctypes.c_int
            if version() != self.abi_version:
                raise NativeUnavailable(f"{self.label}: {path.name} has the wrong ABI version")
            self._loaded[key] = lib
        return self._loaded[key]

    def _prebuilt(self, directory: Path) -> ctypes.CDLL | None:
        """A build for this source and machine (by any compiler), or None."""
        for path in sorted(directory.glob(f"{self.stem}-{self._base_digest}-*.so")):
            try:
                return self._open(path)
            except NativeUnavailable:
                continue
        return None

    def _compile(self, cc: list[str], flags: list[str], target: Path) -> str | None:
        """Builds ``target`` unless it exists; the first line of the error on failure."""
        directory = target.parent
        try:
            directory.mkdir(parents=True, exist_ok=True)
            with _FileLock(directory / (target.name + ".lock")):
                if target.exists():
                    return None
                return self._compile_locked(cc, flags, target)
        except OSError as error:
            return f"cache directory {directory}: {error}"

    def _compile_locked(self, cc: list[str], flags: list[str], target: Path) -> str | None:
        fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=target.stem + ".", suffix=".tmp")
        os.close(fd)
        try:
            try:
                proc = subprocess.run([*cc, *flags, str(self.source), "-o", tmp, "-lm"],
                                      capture_output=True, text=True, timeout=600)
            except (OSError, subprocess.SubprocessError) as error:
                return f"{type(error).__name__}: {error}"
            if proc.returncode != 0:
                line = _first_line(proc.stderr) or _first_line(proc.stdout)
                return line or f"{cc[0]} exited with status {proc.returncode}"
            os.replace(tmp, target)  # atomic: other processes see no library or all of it
            return None
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)
