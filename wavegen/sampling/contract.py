"""The sample-level model contract, as the sampling loop uses it.

:func:`wavegen.sampling.generate` drives any model that satisfies
:class:`~wavegen.models.protocols.SampleLevelModel` (WaveNet today; SampleRNN and the code
priors later; in the tests a small GRU). What it calls, and where:

=================================================  ========================================
member                                             used by
=================================================  ========================================
``head`` (an ``OutputDistribution``)               the draw, the result's audio
``silence_input()``                                the input before the first sample
``targets_from_waveform(wave)``                    audio prompts -> head targets
``config.hop_length``                              how many samples local conditioning covers
``start(batch, length, local, global_cond,         the reference loop (cached incremental
unconditional, prompt)`` + ``step(previous,        state; a second, unconditional state
state)``                                           under classifier-free guidance)
``forward(inputs, local, global_cond)``            ``naive=True`` and the teacher-forced
                                                   diagnostics of the fast backends
                                                   (``unconditional=True`` is passed only
                                                   when guidance asks for it)
=================================================  ========================================

Nothing else of the model is touched outside the backends in :mod:`wavegen.kernels`, each
of which first asks whether it implements the model (``Backend.supports``).
"""

from __future__ import annotations

import inspect
import itertools

import torch

from wavegen.errors import UsageError
from wavegen.models.protocols import SampleLevelModel, contract_of
from wavegen.nn.distributions import Categorical


def _contract_members() -> list[str]:
    members = set(getattr(SampleLevelModel, "__annotations__", {}))
    for name, value in vars(SampleLevelModel).items():
        if not name.startswith("_") and (inspect.isfunction(value) or isinstance(value, property)):
            members.add(name)
    return sorted(members)


def sample_level_reason(model) -> str | None:
    """None for a sample-level model, else one line naming what it lacks."""
    if isinstance(model, SampleLevelModel):
        return None
    missing = [name for name in _contract_members() if not hasattr(model, name)]
    lacks = f"it lacks {', '.join(missing)}" if missing else "it does not satisfy the contract"
    return f"{type(model).__name__} is not a sample-level model ({lacks})"


def check_sample_level(model) -> None:
    """UsageError (one line, naming what is missing) unless ``model`` is a sample-level model."""
    reason = sample_level_reason(model)
    if reason is not None:
        raise UsageError(reason)


def model_device(model) -> torch.device:
    """The device of the model's first parameter (or buffer); the CPU for neither."""
    for tensor in itertools.chain(model.parameters(), model.buffers()):
        return tensor.device
    return torch.device("cpu")


def input_dtype(model) -> torch.dtype:
    """The dtype of the model's targets and inputs: int64 classes for a categorical head,
    float32 waveform values otherwise."""
    return torch.long if isinstance(model.head, Categorical) else torch.float32


def silence(model, batch: int, device) -> torch.Tensor:
    """``[B]`` of the model's 'no previous sample' input (the first step's input)."""
    return torch.full((batch,), model.silence_input(), device=device, dtype=input_dtype(model))


def hop_length(model) -> int | None:
    """Audio samples per local-conditioning frame (None: the model takes no local
    conditioning), from the model config contract."""
    return contract_of(model.config).hop_length


__all__ = ["check_sample_level", "hop_length", "input_dtype", "model_device",
           "sample_level_reason", "silence"]
