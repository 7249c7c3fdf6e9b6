"""One inference layer for every model kind, behind ``wavegen sample`` and ``wavegen vocode``.

::

    bundle / manifest --load--> Pipeline [Adapter, ...]       (select.adapter_for: the family's
                                                               own adapter or its kind's default)
    --wav/--mel/--midi/--seconds --read_conditioning--> Conditioning   (the bundle's recorded
                                                               conditioning, conditioning.py)
    Pipeline.run(conditioning, InferenceOptions, sink) --> SynthesisResult (audio [B, 1, T])

=====================  =======================================================  ============
kind                   adapter                                                  options
=====================  =======================================================  ============
sample_level           :class:`SampleLevelAdapter`: the autoregressive loop     temperature,
                       (:func:`wavegen.sampling.generate`, kernel backends)     top_p, typical,
                                                                                guidance, backend
feed_forward           :class:`FeedForwardAdapter`: one pass; mel -> audio       bf16, compile,
                       chunked with flat memory (:class:`wavegen.vocoder.Vocoder`)  chunk/overlap
noise_driven           :class:`FlowAdapter` (``infer(mel, sigma)``) or           sigma; sampler,
                       :class:`DiffusionAdapter` (the bundle's process)          steps, eta,
                                                                                guidance
discrete_autoencoder   :class:`DiscreteDecoderAdapter`: codes -> audio, behind   -
                       a prior in a pipeline
=====================  =======================================================  ============

:func:`synthesize` is the one call: ``synthesize(bundle_or_loaded, conditioning, options)``.
"""

from wavegen.inference.base import Adapter, Sink, SynthesisResult
from wavegen.inference.conditioning import (Conditioning, InputRequest, bundle_conditioning,
                                            input_signal, legacy_conditioning,
                                            read_conditioning)
from wavegen.inference.discrete import DiscreteDecoderAdapter
from wavegen.inference.feed_forward import FeedForwardAdapter
from wavegen.inference.manifest import is_manifest, stage_bundles, write_manifest
from wavegen.inference.noise_driven import DiffusionAdapter, FlowAdapter, noise_driven_adapter
from wavegen.inference.options import InferenceOptions
from wavegen.inference.pipeline import Pipeline, load
from wavegen.inference.sample_level import SampleLevelAdapter
from wavegen.inference.select import DEFAULT_ADAPTERS, adapter_for
from wavegen.inference.signals import Signal
from wavegen.inference.synthesize import as_pipeline, synthesize

__all__ = ["Adapter", "Sink", "SynthesisResult", "Conditioning", "InputRequest",
           "bundle_conditioning", "input_signal", "legacy_conditioning", "read_conditioning",
           "DiscreteDecoderAdapter", "FeedForwardAdapter", "DiffusionAdapter", "FlowAdapter",
           "noise_driven_adapter", "SampleLevelAdapter", "DEFAULT_ADAPTERS", "adapter_for",
           "is_manifest", "stage_bundles", "write_manifest", "InferenceOptions", "Pipeline",
           "load", "Signal", "as_pipeline", "synthesize"]
