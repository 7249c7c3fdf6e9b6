"""synthesize(): one call from a bundle (or manifest, or loaded model) and its conditioning
to audio, whatever the model kind."""

from __future__ import annotations

import os

from torch import nn

from wavegen.checkpoint import BundleInfo
from wavegen.inference.base import Adapter, Sink, SynthesisResult
from wavegen.inference.conditioning import Conditioning, InputRequest
from wavegen.inference.options import InferenceOptions
from wavegen.inference.pipeline import Pipeline, load
from wavegen.inference.select import adapter_for

#: What :func:`synthesize` runs: a bundle or manifest path, a loaded pipeline or adapter,
#: or a ``(model, info)`` pair as :func:`wavegen.checkpoint.load_bundle` returns it.
Target = str | os.PathLike | Pipeline | Adapter | tuple[nn.Module, BundleInfo]


def as_pipeline(target: Target, options: InferenceOptions | None = None) -> Pipeline:
    """``target`` as a :class:`Pipeline` (loading a path on ``options.device``)."""
    if isinstance(target, Pipeline):
        return target
    if isinstance(target, Adapter):
        return Pipeline([target])
    if isinstance(target, tuple):
        model, info = target
        return Pipeline([adapter_for(model, info)])
    return load(target, options)


def synthesize(target: Target, conditioning: Conditioning | InputRequest,
               options: InferenceOptions | None = None,
               sink: Sink | None = None) -> SynthesisResult:
    """Run ``target`` on ``conditioning`` and return what it makes (audio ``[B, 1, T]``).

    Args:
        target: see :data:`Target`.
        conditioning: the first stage's :class:`Conditioning`, or an :class:`InputRequest`
            (``midi`` / ``wav`` / ``mel`` / ``seconds`` / ``prompt``) turned into it with
            the bundle's own conditioning.
        options: how to run (defaults: :class:`InferenceOptions`).
        sink: receives the output piece by piece (flat memory for long feed-forward
            outputs); the result's ``output`` is then empty.
    """
    options = options or InferenceOptions()
    pipeline = as_pipeline(target, options)
    if isinstance(conditioning, InputRequest):
        conditioning = pipeline.conditioning(conditioning)
    return pipeline.run(conditioning, options, sink)


__all__ = ["Target", "as_pipeline", "synthesize"]
