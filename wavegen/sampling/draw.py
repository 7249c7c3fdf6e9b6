"""One sampling step's draw from head parameters: the rules every backend reproduces.

:class:`Draw` turns the head parameters of one step into one sample per batch item, from
pre-drawn uniforms (:func:`draw_uniforms`), so the same uniforms give the same samples on
every backend. For a categorical head it applies, in this order:

1. ``logp = log_softmax(params)`` (float32 or float64), or with classifier-free guidance
   ``logp = log_softmax(cfg_logits(params, params_uncond, gamma))``;
2. division by the temperature (skipped at ``T = 0``, which is greedy);
3. top-p, then typical filtering (:mod:`wavegen.nn.logit_filters`);
4. the inverse-CDF draw of :meth:`~wavegen.nn.distributions.OutputDistribution.sample` at
   temperature 1 (0 when greedy).

Other heads draw with ``head.sample(params, uniforms, temperature)``; filters and guidance
need a categorical head (:meth:`SamplingOptions.check`).

Alongside the sample, :meth:`Draw.__call__` gives the step's typicality diagnostic: the
negative log-likelihood of the drawn sample under the model's (guided) distribution at
temperature 1 before filtering, and that distribution's entropy. For heads other than the
categorical (the 16-bit grid heads, whose exact entropy sums 65536 bins) the entropy is
evaluated at every :data:`GRID_ENTROPY_EVERY`-th step only.

The ``reference`` and ``cudagraph`` backends call :meth:`Draw.sample`; the ``cpu``,
``triton`` and ``cuda`` kernels implement these rules natively and are tested against it.
"""

from __future__ import annotations

import torch

from wavegen.nn.distributions import Categorical, OutputDistribution
from wavegen.nn.logit_filters import cfg_logits, top_p_filter, typical_filter
from wavegen.sampling.options import SamplingOptions

#: Grid heads' entropy is evaluated at steps ``0, n, 2n, ...`` (counted from the first new
#: sample), by the reference loop and by the teacher-forced diagnostics.
GRID_ENTROPY_EVERY = 256


def draw_uniforms(batch: int, length: int, per_sample: int, seed: int | None,
                  device=None) -> torch.Tensor:
    """``[B, N, U]`` uniforms in [0, 1) from a seeded generator (on the CPU, then moved).

    ``U`` is the head's ``num_uniforms``; a seed of None draws a fresh seed.
    """
    generator = torch.Generator()
    if seed is None:
        generator.seed()
    else:
        generator.manual_seed(seed)
    return torch.rand(batch, length, per_sample, generator=generator,
                      dtype=torch.float64).to(device=device, dtype=torch.float32)


class Draw:
    """The draw of one step from head parameters (see the module docstring for the rules).

    Args:
        head: the model's output distribution.
        options: temperature, filters and guidance (``seed`` and ``progress`` are not used
            here); default :class:`SamplingOptions` ``()``.
    """

    def __init__(self, head: OutputDistribution, options: SamplingOptions | None = None):
        self.head = head
        self.options = options or SamplingOptions()
        self.categorical = isinstance(head, Categorical)

    def log_probs(self, params: torch.Tensor,
                  params_uncond: torch.Tensor | None = None) -> torch.Tensor:
        """Categorical heads: the (guided) log-probabilities ``[B, K]`` at temperature 1."""
        logp = torch.log_softmax(params.float(), dim=-1)
        if params_uncond is not None:
            logp = torch.log_softmax(cfg_logits(params.float(), params_uncond.float(),
                                                self.options.cfg_gamma), dim=-1)
        return logp

    def _draw_categorical(self, logp: torch.Tensor, uniforms: torch.Tensor) -> torch.Tensor:
        o = self.options
        logits = logp
        if o.temperature > 0:
            logits = logits / o.temperature
        if o.top_p is not None:
            logits = top_p_filter(logits, o.top_p)
        if o.typical is not None:
            logits = typical_filter(logits, o.typical)
        return self.head.sample(logits, uniforms, temperature=1.0 if o.temperature > 0 else 0.0)

    def sample(self, params: torch.Tensor, uniforms: torch.Tensor,
               params_uncond: torch.Tensor | None = None) -> torch.Tensor:
        """``params [B, P]`` (and ``params_uncond [B, P]`` under guidance), ``uniforms
        [B, U]`` -> samples ``[B]`` (int64 classes, or float32 values on the grid).

        Torch operations only (no host synchronisation), so it can be captured in a CUDA graph.
        """
        if not self.categorical:
            return self.head.sample(params, uniforms, temperature=self.options.temperature)
        return self._draw_categorical(self.log_probs(params, params_uncond), uniforms)

    def __call__(self, params: torch.Tensor, params_uncond: torch.Tensor | None,
                 uniforms: torch.Tensor, t: int
                 ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        """Step ``t``'s draw with its diagnostic.

        Returns:
            (sample ``[B]``, NLL of the sample ``[B]`` in nats, entropy ``[B]`` or None at
            the steps where a grid head's entropy is skipped).
        """
        if not self.categorical:
            sample = self.head.sample(params, uniforms, temperature=self.options.temperature)
            nll = -self.head.log_prob(params[..., None], sample[:, None])[:, 0]
            entropy = self.head.entropy(params) if t % GRID_ENTROPY_EVERY == 0 else None
            return sample, nll, entropy
        logp = self.log_probs(params, params_uncond)
        sample = self._draw_categorical(logp, uniforms)
        nll = -logp.gather(1, sample[:, None])[:, 0]
        entropy = -(logp.exp() * logp).sum(-1)
        return sample, nll, entropy


__all__ = ["Draw", "GRID_ENTROPY_EVERY", "draw_uniforms"]
