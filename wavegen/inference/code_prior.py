"""Priors over VQ-VAE codes as a pipeline stage: conditioning in, one level's codes out.

A :class:`~wavegen.models.prior.CodePrior` is sample-level, so it runs through the same
sampling loop as WaveNet (:class:`~wavegen.inference.sample_level.SampleLevelAdapter`), but
what it takes and gives are codes, on the grid of its level:

* input: nothing (``--seconds`` of codes), a piano roll with one frame per code (``--midi``),
  or the upper level's codes (an upsampler, behind the prior of the level above);
* output: ``codes`` ``[B, 1, N]`` of ``codebook_size`` codes at ``code_hop`` samples each,
  which a VQ-VAE decoder stage (:class:`~wavegen.inference.discrete.DiscreteDecoderAdapter`)
  or the next upsampler takes.

Whole hierarchies with one wav per level, windows, saved codes and prompts are
:mod:`wavegen.hierarchy`; this adapter is what lets a plain pipeline manifest chain a prior
and a decoder.
"""

from __future__ import annotations

from wavegen.errors import UsageError
from wavegen.inference.base import Sink, SynthesisResult, deliver
from wavegen.inference.conditioning import Conditioning
from wavegen.inference.options import InferenceOptions
from wavegen.inference.sample_level import SampleLevelAdapter
from wavegen.inference.signals import Signal


def prior_signals(config) -> tuple[Signal, Signal]:
    """(input, output) :class:`Signal` of a prior with ``config`` (a CodePriorConfig)."""
    rate, hop = config.sample_rate, config.code_hop
    output = Signal("codes", config.codebook_size, rate, hop)
    if config.conditioning == "codes":
        return Signal("codes", config.upper_codebook_size, rate, hop * config.upper_ratio), output
    if config.conditioning == "roll":
        return Signal("roll", config.roll_channels, rate, hop), output
    return Signal("none"), output


class CodePriorAdapter(SampleLevelAdapter):
    """Samples a code prior (module docstring)."""

    @property
    def input(self) -> Signal:
        return prior_signals(self.info.model_config)[0]

    @property
    def output(self) -> Signal:
        return prior_signals(self.info.model_config)[1]

    def run(self, conditioning: Conditioning, options: InferenceOptions,
            sink: Sink | None = None) -> SynthesisResult:
        from wavegen.hierarchy import sample_windowed  # (a transformer's context: windows)

        if conditioning.prompt is not None:
            raise UsageError(f"{self.name}: a prior continues codes, not audio: use a "
                             f"hierarchy (wavegen.hierarchy) for --prompt")
        local = conditioning.local
        if local is not None:
            local = local.to(self.device())
            if self.info.model_config.conditioning == "codes":
                local = local.reshape(local.shape[0], -1).long()
        hop = self.info.model_config.hop_length or 1
        total = conditioning.num_samples if local is None else local.shape[-1] * hop
        _, result = sample_windowed(self.model, total, local=local,
                                    options=self.sampling_options(options), window=None,
                                    backend=options.backend)
        return deliver(result.samples[:, None, :], self.output, result.seconds, sink,
                       generation=result)


__all__ = ["CodePriorAdapter", "prior_signals"]
