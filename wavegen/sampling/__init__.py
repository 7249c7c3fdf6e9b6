"""Autoregressive sampling shared by the sample-level models (WaveNet, SampleRNN, priors)."""

from wavegen.sampling.autoregressive import (GenerationResult, SamplingOptions, draw_uniforms,
                                             generate)

__all__ = ["GenerationResult", "SamplingOptions", "draw_uniforms", "generate"]
