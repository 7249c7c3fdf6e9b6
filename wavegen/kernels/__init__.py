"""Incremental sampling backends, chosen by name or ``auto``.

============== ============================================================================
name           what it is
============== ============================================================================
reference      the model's own ``step`` and the reference draw (:mod:`wavegen.kernels.reference`):
               any sample-level model, always usable
cpu            WaveNet: a fused C step compiled on first use, whole generation in one call per
               chunk (:mod:`wavegen.kernels.cpu`)
cpu-bf16       WaveNet: the ``cpu`` step with bfloat16 matrices (AVX-512 BF16 dot products;
               CPUs with ``avx512_bf16``); faster, not exact, so ``auto`` never picks it
cudagraph      WaveNet: the per-layer step captured once as a CUDA graph and replayed
triton         WaveNet: fused Triton kernels per layer and for the head (+ draw); runs on the
               CPU under ``TRITON_INTERPRET=1`` (tests only: slow)
cuda           WaveNet: a persistent CUDA C++ kernel (weights on chip, one launch for many
               samples)
samplernn-cpu  SampleRNN: whole chunks of steps (draw included) per call, tiers stepped at
               frame boundaries, frame inputs and sample embedding folded into the weights
               (:mod:`wavegen.kernels.samplernn_cpu`)
============== ============================================================================

Each backend says what it can run (:meth:`Backend.supports`, asked before anything else,
then :meth:`~Backend.unavailable` for the device and :meth:`~Backend.supports_options`).
``auto`` tries the usable backends from fastest to slowest for the model's device and
falls back to ``reference`` with a one-line notice on stderr when none can run (a model no
fast backend implements, no CUDA, no compiler, an unsupported configuration or sampling
option, a failed build): never a crash, never a hang. Naming a backend explicitly that
cannot run is a :class:`~wavegen.errors.KernelUnavailableError` (a one-line user error).
"""

from __future__ import annotations

import importlib
import sys

import torch

from wavegen.errors import KernelUnavailableError, UsageError
from wavegen.kernels.base import Backend, Session
from wavegen.sampling.contract import model_device

#: name -> "module:Class"; imported lazily so a broken optional dependency never breaks
#: ``import wavegen``.
_BACKENDS = {
    "reference": "wavegen.kernels.reference:ReferenceBackend",
    "cpu": "wavegen.kernels.cpu:CPUBackend",
    "cpu-bf16": "wavegen.kernels.cpu:CPUBF16Backend",
    "cudagraph": "wavegen.kernels.cudagraph:CUDAGraphBackend",
    "triton": "wavegen.kernels.triton_backend:TritonBackend",
    "cuda": "wavegen.kernels.cuda:CUDABackend",
    "samplernn-cpu": "wavegen.kernels.samplernn_cpu:SampleRNNCPUBackend",
}
BACKEND_NAMES = ("auto", *_BACKENDS)
_instances: dict[str, Backend] = {}
#: Backends made unavailable on purpose (tests of the fallback; ``WAVEGEN_DISABLE_BACKENDS``).
disabled: set[str] = set()


def get_backend(name: str) -> Backend:
    """The backend called ``name`` (not ``auto``); UsageError for an unknown name."""
    if name not in _BACKENDS:
        raise UsageError(f"unknown sampling backend {name!r}; choose from {', '.join(BACKEND_NAMES)}")
    if name not in _instances:
        module, cls = _BACKENDS[name].split(":")
        try:
            _instances[name] = getattr(importlib.import_module(module), cls)()
        except Exception as error:  # noqa: BLE001 - a broken optional backend must not crash
            return _Missing(name, f"cannot load: {type(error).__name__}: {' '.join(str(error).split())}")
    return _instances[name]


class _Missing(Backend):
    """A backend whose module cannot be imported: unavailable everywhere, for the reason."""

    def __init__(self, name: str, reason: str):
        self.name, self.reason = name, reason

    def supports(self, model):
        return self.reason

    def unavailable(self, device):
        return self.reason

    def session(self, *args, **kwargs):
        raise KernelUnavailableError(f"backend {self.name}: {self.reason}")


def _disabled() -> set[str]:
    import os

    env = {n.strip() for n in os.environ.get("WAVEGEN_DISABLE_BACKENDS", "").split(",") if n.strip()}
    return disabled | env


def why_not(name: str, model, options=None) -> str | None:
    """Why backend ``name`` cannot sample from ``model`` with ``options`` here (None: it can).

    The model is asked about first (:meth:`Backend.supports`), so a model the backend does
    not implement gets its one-line reason, never an error from reading its attributes.
    """
    if name in _disabled():
        return "disabled"
    backend = get_backend(name)
    return (backend.supports(model) or backend.unavailable(model_device(model))
            or backend.supports_options(options))


def availability(device: torch.device | str = "cpu") -> dict[str, str | None]:
    """Backend name -> None when it can run on ``device`` here, else the reason (for doctor)."""
    device = torch.device(device)
    out = {}
    for name in _BACKENDS:
        out[name] = "disabled" if name in _disabled() else get_backend(name).unavailable(device)
    return out


def _auto_order(device: torch.device) -> list[str]:
    ranked = [(get_backend(n).priority.get(device.type, -1), n) for n in _BACKENDS]
    return [n for rank, n in sorted(ranked, reverse=True) if rank >= 0]


def open_session(name: str, model, batch: int, length: int, local, global_cond, prompt,
                 options=None, notice=None) -> tuple[str, Session]:
    """(backend name, session) for ``name`` or ``auto``.

    ``auto`` tries backends in speed order and uses the first that can run, falling back to
    ``reference`` with a one-line notice (``notice(text)``, stderr by default) when a faster
    backend was expected but failed.
    """
    notice = notice or (lambda text: print(text, file=sys.stderr))
    if name != "auto":
        reason = why_not(name, model, options)
        if reason is not None:
            raise KernelUnavailableError(f"sampling backend {name!r} cannot run here: {reason}")
        return name, get_backend(name).session(model, batch, length, local, global_cond, prompt)
    device = model_device(model)
    skipped = []
    for candidate in _auto_order(device):
        if candidate == "reference":
            break
        reason = why_not(candidate, model, options)
        if reason is None:
            try:
                return candidate, get_backend(candidate).session(model, batch, length, local,
                                                                 global_cond, prompt)
            except KernelUnavailableError as error:
                reason = str(error)
        skipped.append(f"{candidate}: {reason}")
    if skipped:
        notice(f"wavegen: no fast sampling backend usable ({'; '.join(skipped)}); using reference")
    return "reference", get_backend("reference").session(model, batch, length, local,
                                                         global_cond, prompt)


__all__ = ["BACKEND_NAMES", "Backend", "Session", "availability", "get_backend",
           "open_session", "why_not", "disabled"]
