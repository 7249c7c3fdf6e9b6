"""Autoregressive sampling shared by the sample-level models (WaveNet, SampleRNN, priors).

=================  ===========================================================================
module             what it holds
=================  ===========================================================================
contract           the members of a sample-level model the loop uses, and their checks
options            :class:`SamplingOptions` (temperature, top-p, typical, guidance, seed)
draw               :class:`Draw`: one step's draw from head parameters (the rules every
                   backend reproduces) and :func:`draw_uniforms`
result             :class:`GenerationResult`
diagnostics        :func:`teacher_forced_diagnostics` (NLL / entropy of generated samples)
autoregressive     :func:`generate`: the loop, or a backend session of :mod:`wavegen.kernels`
=================  ===========================================================================
"""

from wavegen.sampling.autoregressive import generate
from wavegen.sampling.diagnostics import teacher_forced_diagnostics
from wavegen.sampling.draw import GRID_ENTROPY_EVERY, Draw, draw_uniforms
from wavegen.sampling.options import SamplingOptions
from wavegen.sampling.result import GenerationResult

__all__ = ["Draw", "GRID_ENTROPY_EVERY", "GenerationResult", "SamplingOptions", "draw_uniforms",
           "generate", "teacher_forced_diagnostics"]
