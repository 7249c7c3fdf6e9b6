"""`wavegen sample`: audio from a trained bundle or pipeline manifest that can generate.

A thin verb over :mod:`wavegen.inference`. It takes sample-level models (the
autoregressive loop), noise-driven ones (flows, diffusion) and pipelines that end in audio
(:mod:`wavegen.inference.manifest`): a MIDI -> mel model and a vocoder, a prior and a
VQ-VAE decoder. A bare mel -> waveform vocoder is refused with a pointer to
``wavegen vocode``; a discrete autoencoder on its own cannot generate (its codes come from
a prior in a pipeline). What the inputs mean depends on the conditioning the bundle (or the
pipeline's first stage) records (:mod:`wavegen.inference.conditioning`):

* ``roll``: ``--midi FILE``, rendered to the piano roll the model was trained on;
* ``mel``: ``--wav FILE`` (analysed with the bundle's own front-end) or ``--mel FILE.npy``;
* none: ``--seconds`` of free-running audio, optionally continuing ``--prompt WAV``.
"""

from __future__ import annotations

import os

from wavegen.errors import UsageError
from wavegen.inference import (InferenceOptions, InputRequest, Pipeline, SynthesisResult,
                               load)
from wavegen.models.protocols import FEED_FORWARD


def check_generator(pipeline: Pipeline) -> None:
    """UsageError unless ``sample`` can run ``pipeline``: it must make audio, and a
    feed-forward model fed a mel (a vocoder) belongs to ``wavegen vocode``."""
    first = pipeline.stages[0]
    if first.kind == FEED_FORWARD and first.input.kind == "mel":
        what = (f"family {first.info.family} is a mel -> waveform vocoder" if pipeline.single
                else f"its first stage ({first.name}, family {first.info.family}) is a mel -> "
                     f"waveform vocoder")
        raise UsageError(f"{pipeline.source}: {what}, not a generator: use `wavegen vocode`")
    if pipeline.output.kind != "audio":
        raise UsageError(f"{pipeline.source}: makes {pipeline.output.describe()}, not audio")


def load_generator(target: str | os.PathLike, options: InferenceOptions) -> Pipeline:
    """The bundle or manifest at ``target``, loaded and checked by :func:`check_generator`
    (and ``options`` by :meth:`Pipeline.check_options`) before any input is read."""
    pipeline = load(target, options)
    check_generator(pipeline)
    pipeline.check_options(options)
    return pipeline


def sample(target: str | os.PathLike, request: InputRequest,
           options: InferenceOptions) -> tuple[SynthesisResult, Pipeline]:
    """Load ``target`` and generate according to ``request``: (result, pipeline)."""
    pipeline = load_generator(target, options)
    conditioning = pipeline.conditioning(request)
    return pipeline.run(conditioning, options), pipeline


__all__ = ["check_generator", "load_generator", "sample"]
