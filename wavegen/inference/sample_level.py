"""Sample-level (autoregressive) models: the sampling loop of :mod:`wavegen.sampling`.

The conditioning's local features (mel or piano roll, ``[B, C, frames]``) set the length;
an unconditional model generates ``num_samples``, optionally continuing a prompt. Options:
temperature, top-p, typical, classifier-free guidance (``guidance``: on log-probabilities,
and only meaningful for a model trained with conditioning dropout, so a warning says so
otherwise), the seed of the pre-drawn uniforms, and the sampling backend
(:mod:`wavegen.kernels`).
"""

from __future__ import annotations

from wavegen.inference.base import Adapter, Sink, SynthesisResult, deliver
from wavegen.inference.conditioning import Conditioning
from wavegen.inference.options import InferenceOptions
from wavegen.models.protocols import SAMPLE_LEVEL
from wavegen.sampling import SamplingOptions, generate


class SampleLevelAdapter(Adapter):
    """:func:`wavegen.sampling.generate` over a model with the incremental contract."""

    kind = SAMPLE_LEVEL
    uses = frozenset({"top_p", "typical", "guidance"})

    def sampling_options(self, options: InferenceOptions) -> SamplingOptions:
        """The loop's options from the inference options."""
        return SamplingOptions(options.temperature, options.top_p, options.typical,
                               options.guidance, options.seed, progress=options.progress)

    def run(self, conditioning: Conditioning, options: InferenceOptions,
            sink: Sink | None = None) -> SynthesisResult:
        if options.guidance is not None and not getattr(self.info.model_config, "cond_dropout", 0):
            self.warn(options,
                      f"--cfg {options.guidance:g}: this model was trained without conditioning "
                      f"dropout (cond_dropout 0), so its unconditional branch is untrained and "
                      f"guidance will likely make the audio worse")
        local = conditioning.local
        if local is not None:
            local = local.to(self.device())
        prompt = conditioning.prompt
        if prompt is not None:
            prompt = prompt.to(self.device())
        result = generate(self.model, conditioning.num_samples, local=local, prompt=prompt,
                          options=self.sampling_options(options), backend=options.backend)
        return deliver(result.audio, self.output, result.seconds, sink, generation=result)


__all__ = ["SampleLevelAdapter"]
