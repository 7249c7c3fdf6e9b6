"""Pipeline: loaded models run one after the other; a single bundle is a one-stage pipeline.

:func:`load` turns a bundle folder (or a run's ``checkpoints/latest`` pointer) or a manifest
(:mod:`wavegen.inference.manifest`) into a :class:`Pipeline` of adapters
(:func:`~wavegen.inference.select.adapter_for`), checking on the way that each stage's
output is what the next one takes. :meth:`Pipeline.run` feeds the conditioning to the first
stage, each output to the next stage, and the last stage's output to the caller (or its
sink, piece by piece).
"""

from __future__ import annotations

import os
from pathlib import Path

from wavegen.checkpoint import load_bundle
from wavegen.errors import CheckpointError, UsageError
from wavegen.inference.base import Adapter, Sink, SynthesisResult
from wavegen.inference.conditioning import Conditioning, InputRequest, read_conditioning
from wavegen.inference.manifest import is_manifest, stage_bundles
from wavegen.inference.options import OPTIONAL_FIELDS, InferenceOptions
from wavegen.inference.select import adapter_for
from wavegen.inference.signals import Signal


class Pipeline:
    """Adapters whose signals chain: stage ``i``'s output is stage ``i + 1``'s input.

    Args:
        stages: the adapters, in order (at least one).
        source: where they came from (a bundle or manifest path), for messages.
    """

    def __init__(self, stages: list[Adapter], source: str | os.PathLike | None = None):
        if not stages:
            raise UsageError("a pipeline needs at least one stage")
        self.stages = list(stages)
        self.source = str(source) if source is not None else stages[0].name
        for number, (before, after) in enumerate(zip(stages, stages[1:]), 1):
            reason = before.output.mismatch(after.input)
            if reason:
                raise CheckpointError(f"{self.source}: stage {number} ({before.name}) {reason} "
                                      f"(stage {number + 1}, {after.name})")

    @property
    def input(self) -> Signal:
        """What the first stage takes."""
        return self.stages[0].input

    @property
    def output(self) -> Signal:
        """What the last stage gives."""
        return self.stages[-1].output

    @property
    def sample_rate(self) -> int | None:
        """Rate of the output (audio for a whole pipeline)."""
        return self.output.sample_rate

    @property
    def single(self) -> bool:
        """Whether this is one bundle rather than a manifest of several."""
        return len(self.stages) == 1

    def check_options(self, options: InferenceOptions) -> None:
        """Refuse optional settings that no stage reads (e.g. ``sigma`` for a WaveNet)."""
        used = set().union(*(stage.uses for stage in self.stages))
        for name in options.set_optional():
            if name not in used:
                kinds = ", ".join(sorted({stage.kind for stage in self.stages}))
                raise UsageError(f"{name} is for {OPTIONAL_FIELDS[name]}; {self.source} is "
                                 f"{'a ' + kinds + ' model' if self.single else 'a pipeline of ' + kinds}")

    def conditioning(self, request: InputRequest) -> Conditioning:
        """The first stage's conditioning from the user's inputs
        (:func:`~wavegen.inference.conditioning.read_conditioning`)."""
        return read_conditioning(self.input, request, self.stages[0].output)

    def run(self, conditioning: Conditioning, options: InferenceOptions,
            sink: Sink | None = None) -> SynthesisResult:
        """Run every stage in order; the last one's output goes to ``sink`` when given.
        ``seconds`` is the sum over the stages."""
        self.check_options(options)
        seconds = 0.0
        generation = evaluations = None
        for number, stage in enumerate(self.stages, 1):
            last = number == len(self.stages)
            result = stage.run(conditioning, options, sink if last else None)
            seconds += result.seconds
            generation = result.generation if result.generation is not None else generation
            if result.evaluations is not None:
                evaluations = (evaluations or 0) + result.evaluations
            if not last:
                conditioning = Conditioning.of(stage.output, result.output)
        return SynthesisResult(result.output, result.signal, result.length, seconds, generation,
                               evaluations)


def load(path: str | os.PathLike, options: InferenceOptions | None = None) -> Pipeline:
    """The bundle or manifest at ``path`` loaded for inference on ``options.device`` (EMA
    weights when ``options.use_ema``). A manifest must end in audio."""
    options = options or InferenceOptions()
    manifest = is_manifest(path)
    bundles = stage_bundles(path) if manifest else [Path(path)]
    stages = []
    for bundle in bundles:
        model, info = load_bundle(bundle, use_ema=options.use_ema, device=options.device)
        stages.append(adapter_for(model, info))
    pipeline = Pipeline(stages, path)
    if manifest and pipeline.output.kind != "audio":
        raise CheckpointError(f"{path}: a pipeline must end in audio, its last stage gives "
                              f"{pipeline.output.describe()}")
    return pipeline


__all__ = ["Pipeline", "load"]
