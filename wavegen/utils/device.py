"""A device name a user typed (``--device``), checked before anything is loaded onto it."""

from __future__ import annotations

from wavegen.errors import UsageError

#: Device types wavegen runs on.
DEVICE_TYPES = ("cpu", "cuda", "mps")


def parse_device(text: str, option: str = "--device"):
    """``torch.device`` for ``text`` (``cpu``, ``cuda``, ``cuda:1``, ``mps``) when this
    machine has it; otherwise a one-line UsageError saying what is usable here."""
    import torch

    usable = ["cpu"]
    if torch.cuda.is_available():
        usable += ["cuda"] + [f"cuda:{i}" for i in range(torch.cuda.device_count())]
    mps = getattr(torch.backends, "mps", None)
    if mps is not None and mps.is_available():
        usable.append("mps")
    choices = ", ".join(usable)
    try:
        device = torch.device(text)
    except (RuntimeError, ValueError, TypeError):
        raise UsageError(f"{option} {text!r}: not a device name (usable here: {choices})") from None
    if device.type not in DEVICE_TYPES:
        raise UsageError(f"{option} {text!r}: wavegen does not run on {device.type} devices "
                         f"(usable here: {choices})")
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise UsageError(f"{option} {text}: no CUDA device is available (usable here: {choices})")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise UsageError(f"{option} {text}: this machine has {torch.cuda.device_count()} CUDA "
                             f"device(s) (usable here: {choices})")
    if device.type == "mps" and "mps" not in usable:
        raise UsageError(f"{option} {text}: no MPS device is available (usable here: {choices})")
    return device
