"""``wavegen doctor``: what wavegen runs on, as rows a person or a program can read.

:func:`diagnose` probes the installation (Python, PyTorch and CUDA, Triton, nvcc, the
optional torchaudio, the WaveNet sampling backends, the fused mel kernel, librosa,
soundfile) and returns one :class:`Row` per item. A probe that fails becomes a row that
says so (``error: <type>: <message>``): the doctor is what one runs when something is
broken, so it reports and never raises. :func:`format_text` and :func:`format_json` turn
the rows into the command's two outputs.

Heavy imports happen inside the probes, so importing this module costs nothing.
"""

from __future__ import annotations

import json
import os
import platform
import shutil
import subprocess
import sys
from dataclasses import dataclass
from typing import Any, Callable

import wavegen


@dataclass(frozen=True)
class Row:
    """One item of the report.

    Attributes:
        name: what was probed (``"torch"``, ``"sampling backends"``, ...); unique in a report.
        value: one line, or a list of lines (devices, backends) shown one per line.
    """

    name: str
    value: str | list[str]

    @property
    def lines(self) -> list[str]:
        """The value as lines (``["-"]`` for an empty list)."""
        lines = self.value if isinstance(self.value, list) else [self.value]
        return lines or ["-"]


def diagnose() -> list[Row]:
    """Every probe's rows, in the order they are shown."""
    rows = [
        Row("wavegen", f"{wavegen.__version__} ({os.path.dirname(wavegen.__file__)})"),
        Row("python", f"{platform.python_version()} ({sys.executable})"),
        Row("platform", platform.platform()),
    ]
    rows += _probe("torch", _torch)
    rows += _probe("triton", lambda: {"triton": module_version("triton")})
    rows.append(Row("nvcc", _nvcc()))
    rows.append(Row("torchaudio", _torchaudio()))
    rows += _probe("sampling backends", _backends)
    rows += _probe("fused mel kernel", _mel_kernel)
    rows += _probe("librosa", lambda: {"librosa": module_version("librosa")})
    rows += _probe("soundfile", _soundfile)
    return rows


def as_dict(rows: list[Row]) -> dict[str, Any]:
    """``{name: value}`` in the rows' order (the JSON object of ``wavegen doctor --json``)."""
    return {row.name: row.value for row in rows}


def format_text(rows: list[Row]) -> str:
    """Two columns, names padded to the longest; a list's further lines leave the name blank."""
    width = max((len(row.name) for row in rows), default=0)
    out = []
    for row in rows:
        for i, line in enumerate(row.lines):
            out.append(f"{(row.name if i == 0 else '').ljust(width)}  {line}")
    return "\n".join(out)


def format_json(rows: list[Row]) -> str:
    return json.dumps(as_dict(rows), indent=2, default=str)


# --------------------------------------------------------------------------- probes
def _probe(name: str, func: Callable[[], dict[str, Any]]) -> list[Row]:
    """The rows of ``func`` (``{name: value}``), or one ``name: error: ...`` row if it raised."""
    try:
        return [Row(key, value) for key, value in func().items()]
    except Exception as e:  # noqa: BLE001 - doctor must report, never crash
        return [Row(name, f"error: {one_line(e)}")]


def one_line(error: BaseException) -> str:
    """``Type: message`` on one line (``Type`` alone for an empty message)."""
    text = " ".join(str(error).split())
    return f"{type(error).__name__}: {text}" if text else type(error).__name__


def module_version(name: str) -> str:
    """``__version__`` of module ``name``, or why there is none (not installed, import fails)."""
    import importlib
    import importlib.util

    if importlib.util.find_spec(name) is None:
        return "not installed"
    try:
        module = importlib.import_module(name)
    except Exception as e:  # noqa: BLE001
        return f"installed but not importable ({one_line(e)})"
    return str(getattr(module, "__version__", "unknown version"))


def _torch() -> dict[str, Any]:
    import torch

    out: dict[str, Any] = {"torch": f"{torch.__version__} (CUDA build: {torch.version.cuda or 'none'})"}
    if not torch.cuda.is_available():
        out["cuda"] = ("not available (no usable driver or device)" if torch.version.cuda
                       else "not available (CPU-only torch build)")
        return out
    devices = []
    for i in range(torch.cuda.device_count()):
        props = torch.cuda.get_device_properties(i)
        devices.append(f"cuda:{i} {props.name}, compute {props.major}.{props.minor}, "
                       f"{props.total_memory / 2**30:.1f} GiB")
    out["cuda"] = f"available, {len(devices)} device(s), cuDNN {torch.backends.cudnn.version()}"
    out["devices"] = devices
    return out


def _nvcc() -> str:
    candidates = [shutil.which("nvcc")]
    for var in ("CUDA_HOME", "CUDA_PATH"):
        if os.environ.get(var):
            candidates.append(os.path.join(os.environ[var], "bin", "nvcc"))
    path = next((p for p in candidates if p and os.access(p, os.X_OK)), None)
    if path is None:
        return "not found (CUDA C++ kernels will fall back)"
    try:
        result = subprocess.run([path, "--version"], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.SubprocessError) as e:
        return f"{path} (cannot run: {one_line(e)})"
    release = [line for line in result.stdout.splitlines() if "release" in line]
    return f"{path} ({release[-1].strip() if release else 'version unknown'})"


def _torchaudio() -> str:
    import importlib.util

    if importlib.util.find_spec("torchaudio") is None:
        return "not installed (optional)"
    # A torchaudio built for another torch can abort the interpreter on import (a C++
    # symbol error, not a Python exception), so it is imported in a child process.
    code = "import torchaudio; print(torchaudio.__version__)"
    try:
        result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                                timeout=120)
    except (OSError, subprocess.SubprocessError) as e:
        return f"installed, import check failed ({one_line(e)})"
    if result.returncode == 0:
        return f"{result.stdout.strip()} (optional)"
    lines = [line for line in result.stderr.strip().splitlines() if line.strip()]
    if result.returncode < 0:
        reason = f"the import killed the interpreter with {_signal_name(-result.returncode)}"
    else:
        reason = lines[-1].strip() if lines else f"exit status {result.returncode}"
    return f"installed but not importable, not used ({reason})"


def _signal_name(number: int) -> str:
    import signal

    try:
        return signal.Signals(number).name
    except ValueError:
        return f"signal {number}"


def _backends() -> dict[str, Any]:
    """Usable WaveNet sampling backends per device type, with the reason for the others."""
    import torch

    from wavegen.kernels import availability

    devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    lines = []
    for device in devices:
        for name, reason in availability(device).items():
            lines.append(f"{device}/{name}: " + ("usable" if reason is None else f"no ({reason})"))
    return {"sampling backends": lines}


def _mel_kernel() -> dict[str, Any]:
    from wavegen.audio import mel_kernel

    return {"fused mel kernel": mel_kernel.status()}


def _soundfile() -> dict[str, Any]:
    import soundfile as sf

    return {
        "soundfile": f"{sf.__version__} (libsndfile {sf.__libsndfile_version__})",
        "formats": ", ".join(sorted(sf.available_formats())),
    }


__all__ = ["Row", "diagnose", "as_dict", "format_text", "format_json", "module_version",
           "one_line"]
