"""The adapter interface: one object that runs one loaded model for inference.

Every model kind (:mod:`wavegen.models.protocols`) has a default adapter in
:mod:`wavegen.inference`; a family can supply its own through ``Family.inference``
(``(model, info) -> Adapter``). An adapter states what it takes (:attr:`Adapter.input`)
and gives (:attr:`Adapter.output`) as :class:`~wavegen.inference.signals.Signal`\\ s, which
is what lets :mod:`wavegen.inference.manifest` chain bundles, and runs with
:meth:`Adapter.run`.
"""

from __future__ import annotations

import warnings
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Callable, ClassVar

import torch
from torch import nn

from wavegen.checkpoint import BundleInfo
from wavegen.errors import UsageError
from wavegen.inference.conditioning import Conditioning, input_signal
from wavegen.inference.options import InferenceOptions
from wavegen.inference.signals import Signal
from wavegen.sampling import GenerationResult

#: Receives the output in pieces, in order (``[B, C, n]`` each); see :meth:`Adapter.run`.
Sink = Callable[[torch.Tensor], None]


@dataclass
class SynthesisResult:
    """What a run produced.

    Attributes:
        output: ``[B, C, N]`` (audio: ``[B, 1, T]``), or ``[B, C, 0]`` when it went to a sink.
        signal: what ``output`` is.
        length: output positions produced (audio samples, frames), also when streamed.
        seconds: wall time of the model runs (reading inputs and writing files excluded).
        generation: the sample-level loop's result (typicality diagnostic) when a
            sample-level model ran, else None.
        evaluations: network function evaluations (NFE) of the diffusion stages: calls of
            the sampler's denoiser (with classifier-free guidance each is two network
            passes); None when no diffusion stage ran.
    """

    output: torch.Tensor
    signal: Signal
    length: int
    seconds: float
    generation: GenerationResult | None = None
    evaluations: int | None = None

    def nfe_text(self) -> str:
        """``"; NFE n"`` for a diffusion run, else ``""`` (for the verbs' report lines)."""
        return "" if self.evaluations is None else f"; NFE {self.evaluations}"

    @property
    def audio(self) -> torch.Tensor:
        """``[B, 1, T]``: the output of a run that produced audio."""
        if self.signal.kind != "audio":
            raise UsageError(f"this run produced {self.signal.describe()}, not audio")
        return self.output

    @property
    def audio_seconds(self) -> float:
        """Duration of the produced audio (0 when the output is not audio)."""
        if self.signal.kind != "audio":
            return 0.0
        return self.length / self.signal.sample_rate

    @property
    def real_time_factor(self) -> float:
        """Wall time / audio duration (< 1 is faster than real time)."""
        return self.seconds / max(self.audio_seconds, 1e-12)


class Adapter(ABC):
    """Runs one model of one kind.

    Attributes:
        kind: the model kind this adapter drives (a :mod:`wavegen.models.protocols` kind).
        uses: the optional :class:`~wavegen.inference.options.InferenceOptions` fields it
            reads (setting others is refused for a pipeline in which no stage reads them).
        model: the loaded model (eval mode).
        info: its bundle's :class:`~wavegen.checkpoint.BundleInfo`.
    """

    kind: ClassVar[str]
    uses: ClassVar[frozenset[str]] = frozenset()

    def __init__(self, model: nn.Module, info: BundleInfo):
        self.model = model
        self.info = info

    @property
    def name(self) -> str:
        """How messages name this model: its bundle folder, or its family."""
        return str(self.info.path) if self.info.path is not None else self.info.family

    @property
    def input(self) -> Signal:
        """What the model takes (the bundle's conditioning by default)."""
        return input_signal(self.info)

    @property
    def output(self) -> Signal:
        """What the model gives (audio at the bundle's rate by default)."""
        return Signal.audio(self.info.sample_rate)

    @abstractmethod
    def run(self, conditioning: Conditioning, options: InferenceOptions,
            sink: Sink | None = None) -> SynthesisResult:
        """Produce the output for ``conditioning`` (which matches :attr:`input`).

        With a ``sink`` the output goes to it in pieces as they are made (adapters that
        make it at once call it once) and the result's ``output`` is empty.
        """

    def warn(self, options: InferenceOptions, message: str) -> None:
        """Hand a one-line warning to ``options.warn`` (default: :func:`warnings.warn`)."""
        (options.warn or warnings.warn)(message)

    def device(self) -> torch.device:
        """The device of the model's parameters (CPU for a model without any)."""
        param = next(self.model.parameters(), None)
        return param.device if param is not None else torch.device("cpu")


def deliver(output: torch.Tensor, signal: Signal, seconds: float, sink: Sink | None,
            generation: GenerationResult | None = None) -> SynthesisResult:
    """The result of a run that made ``output`` ``[B, C, N]`` at once: handed to ``sink``
    in one piece (an empty result) or returned."""
    length = output.shape[-1]
    if sink is not None:
        sink(output)
        output = output[..., :0]
    return SynthesisResult(output, signal, length, seconds, generation)


def generator_for(seed: int | None) -> torch.Generator:
    """A CPU generator seeded with ``seed`` (a fresh seed when None)."""
    generator = torch.Generator()
    if seed is None:
        generator.seed()
    else:
        generator.manual_seed(seed)
    return generator


__all__ = ["Adapter", "SynthesisResult", "Sink", "deliver", "generator_for"]
