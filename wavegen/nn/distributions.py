"""Output distributions ("heads") of autoregressive waveform models.

A head turns the network's per-step output channels into a distribution over the next
audio sample: it scores targets (:meth:`~OutputDistribution.log_prob`, nats), draws samples
(:meth:`~OutputDistribution.sample`) and maps between waveforms and its target space. Heads
are frozen dataclasses without parameters, so a model holds one as a plain attribute and a
config can rebuild it from ``dataclasses.asdict(head)``.

* :class:`Categorical` — ``K`` logits, 1 uniform; targets and samples are mu-law class
  indices (int64, ``0..K-1``).
* :class:`DiscretizedMixtureOfLogistics` — ``3 M`` params, 2 uniforms; targets and samples
  are waveform floats on the grid below.
* :class:`DiscretizedGaussian` — 2 params, 1 uniform; waveform floats on the grid.

Shapes: ``log_prob(params [B, P, T], target [B, T]) -> [B, T]`` (any trailing dims after
``T`` also work, the same for both); ``sample(params [B, P]) -> [B]``;
``entropy(params [B, P]) -> [B]``.

The grid. The continuous heads quantise waveforms to ``bins`` levels (65536 = 16 bit by
default); bin ``i`` has the value ``-1 + 2 i / (bins - 1)`` and spans half a step on either
side, except the two edge bins, which extend to -inf and +inf so that the probabilities of
all bins sum to one for any parameters. Targets are snapped to the nearest bin inside
:meth:`log_prob` (computed in float64, so float32 inputs are binned exactly), so a waveform
can be passed directly. The grid is symmetric and is not the 16-bit PCM grid ``n / 32768``:
PCM codes map one-to-one onto bins except that codes 0 and 1 share bin 32768 (0 is a tie,
resolved to even) and bin 65535 (+1.0) receives no code.

Sampling is inverse-CDF sampling from explicit uniforms in [0, 1), so a given
``(params, uniforms, temperature)`` always gives the same sample and a fast kernel can
reproduce the reference exactly. The rules, computed in float32 (float64 for float64 params):

* categorical (also the MoL component choice), :func:`sample_categorical`:
  ``z = logits / T``; ``w = exp(z - max(z))``; ``c = torch.cumsum(w)``;
  the sample is the number of classes ``k`` with ``c[k] <= u * c[K-1]``, clamped to
  ``K - 1`` (for a monotone ``c`` this is the first ``k`` with ``c[k] > u * c[K-1]``). The
  softmax normalisation cancels against the total, so it is not performed.
* mixture of logistics, with ``u0`` choosing component ``k`` as above:
  ``x = mean_k + (T * exp(log_scale_k)) * (log(u1) - log1p(-u1))``.
* Gaussian: ``x = mean + (T * exp(log_scale)) * ndtri(u0)``.
* continuous heads then snap: ``i = round_half_even((clamp(x, -1, 1) + 1) * ((bins - 1) / 2))``
  evaluated in float64 (exact for a float32 ``x``: the nearest bin of the value itself) and
  return the float32 ``float(i) * float(2 / (bins - 1)) - 1``. Log-scales are clamped below
  at ``log_scale_min`` first, as in :meth:`log_prob`.

``exp``, ``log``, ``ndtri`` and ``cumsum`` round differently on different devices (torch's
CPU cumsum accumulates float32 in float64; CUDA scans in float32), so a kernel matches the
reference bit for bit when it evaluates these operations the way the reference does on the
same device; otherwise draws can differ only where a uniform lies within rounding error of
a class or bin boundary.

Temperature ``T``: the categorical head divides the logits by ``T``. The mixture of
logistics divides the mixture logits by ``T`` *and* multiplies every logistic scale by ``T``
(both parts sharpen together; ``T = 1`` is the model's distribution); the Gaussian scales its
standard deviation by ``T``. ``T = 0`` is the greedy limit: the argmax class, the mean of the
most probable mixture component (the exact mode for one component or well-separated ones;
finding the mode of overlapping components would need a search over all bins), or the
Gaussian's mean — each snapped to the grid. For the continuous heads that is the most
probable bin apart from the two edge bins: those collect the whole tails beyond -1 and +1,
so any tail heavier than one bin's mass (about ``2h`` times the density) makes an edge bin
the global mode. When ``uniforms`` is None they are drawn with
``torch.rand(generator=...)``, also at ``T = 0``, so the generator advances by the same
amount whatever the temperature.

Numerics of the discretised likelihoods (no clipping of probabilities anywhere; in
float32 the log-probabilities agree with float64 to a few 1e-6 nats wherever the mass is):

* logistic: for an interior bin, with ``a, b = (x - mean ± h) / s`` and ``d = h / s``
  (``h`` half a bin), ``sigmoid(a) - sigmoid(b) = 2 sinh(d) / (2 cosh(a/2) * 2 cosh(b/2))``,
  evaluated in log space. That identity has no cancellation, so no "CDF difference
  underflowed, use pdf * bin width" fallback is needed: it stays accurate for bins far in
  the tails and for scales much wider than a bin. Edge bins are ``-softplus(-a)`` and
  ``-softplus(b)``. Only ``x - mean`` is formed in float64 (see :meth:`log_prob_bins`).
* Gaussian: computed in float64 internally (result returned in the params' dtype) as
  ``log Phi(near) + log(1 - Phi(far) / Phi(near))`` on the side of the mean where ``log_ndtr``
  is accurate; when a bin is narrower than ``1e-5`` standard deviations the midpoint rule
  with its second-order correction is used instead (accurate to ~1e-12 there, where the
  difference of CDFs would lose digits).

``log_scale_min`` defaults to -14 for both continuous heads (16-bit grid, half a bin
``h = 1 / 65535 ~ 1.5e-5``). At ``s = e^-14 ~ 8.3e-7`` a logistic component centred on a
bin puts all but ~2e-8 of its mass into it (``tanh(h / 2s) = tanh(9.2)``), so the model can
represent digital silence or a held sample; going lower buys nothing measurable and costs
precision, since float32 resolves waveform values near full scale only to ~6e-8, which is
already 0.07 of ``e^-14`` (and the gradients grow like ``1 / s``). For a coarser grid
``ln(1 / (bins - 1)) - 3`` keeps the same property (about -8.5 for 256 bins).
"""

from __future__ import annotations

import abc
import dataclasses
import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from wavegen.audio.metrics import nats_to_bits
from wavegen.audio.mulaw import mulaw_dequantize, mulaw_quantize
from wavegen.errors import ConfigError, UsageError

__all__ = [
    "OutputDistribution", "Categorical", "CodeCategorical", "DiscretizedMixtureOfLogistics",
    "DiscretizedGaussian", "sample_categorical", "build_output_distribution",
    "OUTPUT_DISTRIBUTIONS", "nats_to_bits",
]

LN2 = math.log(2.0)
HALF_LOG_2PI = 0.5 * math.log(2.0 * math.pi)

# Below these bin widths (in units of the scale) the series forms are more accurate than
# the closed forms; see the module docstring.
_SINH_SERIES_BELOW = 1e-3
_GAUSS_MIDPOINT_BELOW = 1e-5
# Bins per chunk when summing over the whole grid (bounds memory at B * P * chunk values).
_ENTROPY_CHUNK = 4096


def _compute_dtype(t: torch.Tensor) -> torch.dtype:
    return torch.float64 if t.dtype == torch.float64 else torch.float32


def _check_temperature(temperature: float) -> float:
    temperature = float(temperature)
    if not (math.isfinite(temperature) and temperature >= 0.0):
        raise UsageError(f"temperature must be finite and >= 0, got {temperature}")
    return temperature


def _softplus(x: torch.Tensor) -> torch.Tensor:
    # torch's default threshold (20) returns x itself while log1p(exp(-x)) is still ~2e-9,
    # visible in float64; at 40 the omitted term is below float64 resolution.
    return F.softplus(x, threshold=40.0)


def _log_2sinh(d: torch.Tensor, log_d: torch.Tensor) -> torch.Tensor:
    """``log(2 sinh d)`` for ``d > 0``, given ``log d`` too (so tiny ``d`` never underflows)."""
    small = d < _SINH_SERIES_BELOW
    # Both branches are evaluated by torch.where; keep the unused one finite so that its
    # (zero) gradient does not turn into NaN.
    d_big = torch.where(small, torch.ones_like(d), d)
    closed = d_big + torch.log(-torch.expm1(-2.0 * d_big))
    series = LN2 + log_d + d * d / 6.0
    return torch.where(small, series, closed)


def _log_2cosh(y: torch.Tensor) -> torch.Tensor:
    """``log(2 cosh y)`` without overflow."""
    a = y.abs()
    return a + _softplus(-2.0 * a)


def _log1mexp(d: torch.Tensor) -> torch.Tensor:
    """``log(1 - exp(-d))`` for ``d > 0`` (Maechler's two-branch form)."""
    small = d < LN2
    d_small = torch.where(small, d, torch.full_like(d, LN2))
    d_large = torch.where(small, torch.full_like(d, LN2), d)
    return torch.where(small, torch.log(-torch.expm1(-d_small)),
                       torch.log1p(-torch.exp(-d_large)))


def sample_categorical(logits: torch.Tensor, u: torch.Tensor,
                       temperature: float = 1.0) -> torch.Tensor:
    """Inverse-CDF draw from ``softmax(logits / temperature)``: ``[B, K]``, ``u [B]`` -> ``[B]``.

    This is the reference rule of the module docstring (int64 class indices); ``temperature
    = 0`` returns the first argmax. Logits may contain ``-inf`` (filtered classes), which are
    never drawn for ``u < 1``.
    """
    temperature = _check_temperature(temperature)
    if logits.dim() != 2 or u.shape != logits.shape[:1]:
        raise UsageError(f"expected logits [B, K] and u [B], got {tuple(logits.shape)} and "
                         f"{tuple(u.shape)}")
    if temperature == 0.0:
        return logits.argmax(dim=-1)
    z = logits.to(_compute_dtype(logits)) / temperature
    weights = torch.exp(z - z.amax(dim=-1, keepdim=True))
    cdf = torch.cumsum(weights, dim=-1)
    threshold = u.to(cdf.dtype) * cdf[:, -1]
    index = (cdf <= threshold.unsqueeze(-1)).sum(dim=-1)
    # u == 1 (or a rounding of u * total up to total) would point one past the end.
    return index.clamp_(max=logits.shape[-1] - 1)


class OutputDistribution(abc.ABC):
    """Interface of every output head; see the module docstring for shapes and conventions."""

    @property
    @abc.abstractmethod
    def num_params(self) -> int:
        """Channels the network outputs per time step."""

    @property
    @abc.abstractmethod
    def num_uniforms(self) -> int:
        """U(0, 1) numbers one draw consumes per batch item."""

    @abc.abstractmethod
    def log_prob(self, params: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """Log-likelihood in nats: ``params [B, P, T]``, ``target [B, T]`` -> ``[B, T]``."""

    @abc.abstractmethod
    def targets_from_waveform(self, wave: torch.Tensor) -> torch.Tensor:
        """Waveform ``[B, T]`` in [-1, 1] -> targets ``[B, T]`` in this head's target space."""

    @abc.abstractmethod
    def waveform_from_samples(self, samples: torch.Tensor) -> torch.Tensor:
        """Samples or targets ``[B, T]`` -> float32 waveform ``[B, T]`` in [-1, 1]."""

    @abc.abstractmethod
    def entropy(self, params: torch.Tensor) -> torch.Tensor:
        """Entropy (nats) of the predictive distribution at temperature 1, ``[B, P]`` -> ``[B]``."""

    @abc.abstractmethod
    def _sample(self, params: torch.Tensor, uniforms: torch.Tensor,
                temperature: float) -> torch.Tensor:
        """Validated ``params [B, P]`` and ``uniforms [B, U]`` (same float dtype) -> ``[B]``."""

    def sample(self, params: torch.Tensor, uniforms: torch.Tensor | None = None,
               temperature: float = 1.0,
               generator: torch.Generator | None = None) -> torch.Tensor:
        """Draw one sample per batch item: ``params [B, num_params]`` -> ``[B]``.

        ``uniforms`` ``[B, num_uniforms]`` in [0, 1) make the draw deterministic; without them
        they come from ``torch.rand(..., generator=generator)`` on ``params.device``.
        """
        temperature = _check_temperature(temperature)
        if params.dim() != 2 or params.shape[1] != self.num_params:
            raise UsageError(f"{type(self).__name__}.sample expects params [B, "
                             f"{self.num_params}], got {tuple(params.shape)}")
        batch = params.shape[0]
        dtype = _compute_dtype(params)
        if uniforms is None:
            uniforms = torch.rand(batch, self.num_uniforms, generator=generator,
                                  device=params.device)
        elif uniforms.shape != (batch, self.num_uniforms):
            raise UsageError(f"{type(self).__name__}.sample expects uniforms [{batch}, "
                             f"{self.num_uniforms}], got {tuple(uniforms.shape)}")
        return self._sample(params.to(dtype), uniforms.to(dtype), temperature)

    def bits_per_sample(self, nll_nats):
        """Mean negative log-likelihood per sample, nats -> bits (float, array or tensor)."""
        return nats_to_bits(nll_nats)

    def _check_log_prob_args(self, params: torch.Tensor, target: torch.Tensor) -> None:
        if (params.dim() != target.dim() + 1 or params.dim() < 2
                or params.shape[1] != self.num_params or params.shape[0] != target.shape[0]
                or params.shape[2:] != target.shape[1:]):
            raise UsageError(f"{type(self).__name__}.log_prob expects params [B, "
                             f"{self.num_params}, T] and target [B, T], got "
                             f"{tuple(params.shape)} and {tuple(target.shape)}")

    def _check_entropy_args(self, params: torch.Tensor) -> None:
        if params.dim() != 2 or params.shape[1] != self.num_params:
            raise UsageError(f"{type(self).__name__}.entropy expects params [B, "
                             f"{self.num_params}], got {tuple(params.shape)}")


def _entropy_from_log_probs(log_p: torch.Tensor, dim: int = -1) -> torch.Tensor:
    p = log_p.exp()
    # Classes of probability 0 contribute 0, not 0 * -inf = NaN.
    return -torch.where(p > 0, p * log_p, torch.zeros_like(p)).sum(dim)


@dataclass(frozen=True)
class Categorical(OutputDistribution):
    """``num_classes``-way softmax over mu-law classes (WaveNet: 256, mu = 255).

    ``params`` are the logits. Targets are class indices (int64) from
    :func:`~wavegen.audio.mulaw.mulaw_quantize` with ``mu = num_classes - 1``; out-of-range
    indices are not checked here (that would synchronise the device on every call).
    """

    num_classes: int = 256

    def __post_init__(self):
        n = self.num_classes
        if isinstance(n, bool) or not isinstance(n, int) or n < 2 or n & (n - 1):
            raise ConfigError(f"num_classes must be a power of two >= 2, got {n!r}")

    @property
    def num_params(self) -> int:
        return self.num_classes

    @property
    def num_uniforms(self) -> int:
        return 1

    @property
    def mu(self) -> int:
        return self.num_classes - 1

    def log_prob(self, params: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """``log softmax(params)[target]``: ``[B, K, T]``, int64 ``[B, T]`` -> ``[B, T]``."""
        self._check_log_prob_args(params, target)
        if target.is_floating_point() or target.is_complex():
            raise UsageError("Categorical.log_prob expects integer class indices as target")
        log_p = torch.log_softmax(params.to(_compute_dtype(params)), dim=1)
        return log_p.gather(1, target.long().unsqueeze(1)).squeeze(1)

    def targets_from_waveform(self, wave: torch.Tensor) -> torch.Tensor:
        return mulaw_quantize(wave, self.mu)

    def waveform_from_samples(self, samples: torch.Tensor) -> torch.Tensor:
        return mulaw_dequantize(samples, self.mu)

    def _sample(self, params, uniforms, temperature):
        return sample_categorical(params, uniforms[:, 0], temperature)

    def entropy(self, params: torch.Tensor) -> torch.Tensor:
        self._check_entropy_args(params)
        return _entropy_from_log_probs(torch.log_softmax(params.to(_compute_dtype(params)), -1))


@dataclass(frozen=True)
class CodeCategorical(Categorical):
    """``num_classes``-way softmax over discrete codes (the priors over VQ-VAE codes).

    The same draw, filters and entropy as :class:`Categorical`, but its targets are the
    codes themselves, not mu-law classes of a waveform: :meth:`targets_from_waveform` takes
    codes (``[B, T]``, integer or integral float) and returns them as int64 after checking
    they lie in ``[0, num_classes)``, and :meth:`waveform_from_samples` returns the codes
    as float32 unchanged (a prior's "waveform" is its code sequence). Any ``num_classes``
    >= 2 (a codebook need not be a power of two).
    """

    def __post_init__(self):
        n = self.num_classes
        if isinstance(n, bool) or not isinstance(n, int) or n < 2:
            raise ConfigError(f"num_classes must be an integer >= 2, got {n!r}")

    @property
    def mu(self) -> int:
        raise UsageError("a code head has no mu-law: its targets are codes")

    def targets_from_waveform(self, wave: torch.Tensor) -> torch.Tensor:
        if wave.is_floating_point() and bool((wave != wave.round()).any()):
            raise UsageError("codes must be whole numbers")
        codes = wave.long()
        if codes.numel() and (int(codes.min()) < 0 or int(codes.max()) >= self.num_classes):
            raise UsageError(f"codes must lie in [0, {self.num_classes}), got "
                             f"[{int(codes.min())}, {int(codes.max())}]")
        return codes

    def waveform_from_samples(self, samples: torch.Tensor) -> torch.Tensor:
        return samples.float()


class _GridDistribution(OutputDistribution):
    """Shared code of heads over the ``bins``-level waveform grid (``self.bins``)."""

    bins: int
    log_scale_min: float

    def _check_grid_config(self) -> None:
        if isinstance(self.bins, bool) or not isinstance(self.bins, int) or self.bins < 2:
            raise ConfigError(f"bins must be an integer >= 2, got {self.bins!r}")
        if not math.isfinite(float(self.log_scale_min)):
            raise ConfigError(f"log_scale_min must be finite, got {self.log_scale_min!r}")

    @property
    def half_bin(self) -> float:
        """Half the spacing of the grid, ``1 / (bins - 1)``."""
        return 1.0 / (self.bins - 1)

    def bin_index(self, x: torch.Tensor) -> torch.Tensor:
        """Nearest bin (int64, ties to even) of waveform values ``x`` (any shape, clamped)."""
        if not x.is_floating_point():
            raise UsageError("bin_index expects floating waveform values")
        # In float32 a position near the middle of a 65536-bin grid has a resolution of
        # 1/256 bin, which merges near-tie neighbours (about 100 of the PCM codes around 0);
        # in float64 the product is exact for float32 inputs.
        x = x.double().clamp(-1.0, 1.0)
        return torch.round((x + 1.0) * ((self.bins - 1) / 2.0)).long()

    def bin_value(self, index: torch.Tensor, dtype: torch.dtype = torch.float32) -> torch.Tensor:
        """Waveform value ``index * (2 / (bins - 1)) - 1`` of bin indices (any shape)."""
        return index.to(dtype) * (2.0 / (self.bins - 1)) - 1.0

    def _snap(self, x: torch.Tensor) -> torch.Tensor:
        return self.bin_value(self.bin_index(x), x.dtype)

    def targets_from_waveform(self, wave: torch.Tensor) -> torch.Tensor:
        """Waveform ``[B, T]`` -> the same waveform snapped to the grid (float)."""
        return self.bin_value(self.bin_index(wave), _compute_dtype(wave))

    def waveform_from_samples(self, samples: torch.Tensor) -> torch.Tensor:
        return self.bin_value(self.bin_index(samples), torch.float32)

    def log_prob(self, params: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """Log-probability of the bin of each target: ``[B, P, T]``, ``[B, T]`` -> ``[B, T]``."""
        self._check_log_prob_args(params, target)
        return self.log_prob_bins(params, self.bin_index(target))

    @abc.abstractmethod
    def log_prob_bins(self, params: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
        """Like :meth:`log_prob` with bin indices ``[B, T]`` (int64) as targets."""

    def entropy(self, params: torch.Tensor) -> torch.Tensor:
        """Exact entropy over all ``bins`` bins, summed in float64: ``[B, P]`` -> ``[B]``.

        Costs ``B * bins`` evaluations of the bin probability (in chunks); cheap for a
        diagnostic every few hundred steps, too slow to call on every sampled step.
        """
        self._check_entropy_args(params)
        params64 = params.double()
        batch = params.shape[0]
        total = params64.new_zeros(batch)
        for start in range(0, self.bins, _ENTROPY_CHUNK):
            index = torch.arange(start, min(start + _ENTROPY_CHUNK, self.bins),
                                 device=params.device)
            n = index.numel()
            log_p = self.log_prob_bins(params64.unsqueeze(-1).expand(-1, -1, n),
                                       index.expand(batch, n))
            total = total + _entropy_from_log_probs(log_p)
        return total.to(_compute_dtype(params))


@dataclass(frozen=True)
class DiscretizedMixtureOfLogistics(_GridDistribution):
    """Discretised mixture of ``num_mixtures`` logistics (PixelCNN++, Parallel WaveNet).

    ``params`` channels: ``[0, M)`` mixture logits, ``[M, 2M)`` means, ``[2M, 3M)``
    log-scales (clamped below at ``log_scale_min``, which also stops their gradient there).
    """

    num_mixtures: int = 10
    bins: int = 65536
    log_scale_min: float = -14.0

    def __post_init__(self):
        m = self.num_mixtures
        if isinstance(m, bool) or not isinstance(m, int) or m < 1:
            raise ConfigError(f"num_mixtures must be a positive integer, got {m!r}")
        self._check_grid_config()

    @property
    def num_params(self) -> int:
        return 3 * self.num_mixtures

    @property
    def num_uniforms(self) -> int:
        return 2

    def split_params(self, params: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor,
                                                          torch.Tensor]:
        """``[B, 3M, ...]`` -> logits, means, clamped log-scales, each ``[B, M, ...]``."""
        logits, means, log_scales = params.split(self.num_mixtures, dim=1)
        return logits, means, log_scales.clamp(min=self.log_scale_min)

    def log_prob_bins(self, params: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
        self._check_log_prob_args(params, index)
        dtype = _compute_dtype(params)
        logits, means, log_scales = self.split_params(params.to(dtype))
        h = self.half_bin
        index = index.unsqueeze(1)
        # In float32 a grid value near full scale is only good to ~6e-8, a sizeable part of a
        # narrow logistic; the difference of two O(1) numbers is exact enough in float64, and
        # near the mean (where it matters) it is small, so float32 then holds it accurately.
        centered = (self.bin_value(index, torch.float64) - means.double()).to(dtype)
        inv_scale = torch.exp(-log_scales)
        upper = (centered + h) * inv_scale
        lower = (centered - h) * inv_scale
        interior = (_log_2sinh(h * inv_scale, math.log(h) - log_scales)
                    - _log_2cosh(0.5 * upper) - _log_2cosh(0.5 * lower))
        log_mass = torch.where(index == 0, -_softplus(-upper),
                               torch.where(index == self.bins - 1, -_softplus(lower), interior))
        return torch.logsumexp(torch.log_softmax(logits, dim=1) + log_mass, dim=1)

    def _sample(self, params, uniforms, temperature):
        logits, means, log_scales = self.split_params(params)
        component = sample_categorical(logits, uniforms[:, 0], temperature).unsqueeze(1)
        x = means.gather(1, component).squeeze(1)
        if temperature > 0.0:
            scale = temperature * torch.exp(log_scales.gather(1, component).squeeze(1))
            u = uniforms[:, 1]
            x = x + scale * (torch.log(u) - torch.log1p(-u))
        return self._snap(x)


@dataclass(frozen=True)
class DiscretizedGaussian(_GridDistribution):
    """Gaussian discretised over the waveform grid (ClariNet's single-Gaussian output).

    ``params`` channels: ``[mean, log_scale]`` (log of the standard deviation, clamped below
    at ``log_scale_min``). :meth:`log_prob` is the discretised likelihood, comparable with
    :class:`DiscretizedMixtureOfLogistics`; :meth:`continuous_log_prob` is the density.
    """

    bins: int = 65536
    log_scale_min: float = -14.0

    def __post_init__(self):
        self._check_grid_config()

    @property
    def num_params(self) -> int:
        return 2

    @property
    def num_uniforms(self) -> int:
        return 1

    def split_params(self, params: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``[B, 2, ...]`` -> mean and clamped log-scale, each ``[B, ...]``."""
        return params[:, 0], params[:, 1].clamp(min=self.log_scale_min)

    def log_prob_bins(self, params: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
        self._check_log_prob_args(params, index)
        mean, log_scale = self.split_params(params.double())
        h = self.half_bin
        centered = self.bin_value(index, torch.float64) - mean
        inv_scale = torch.exp(-log_scale)
        # The interior bin mirrored to the left of the mean (same mass by symmetry), where
        # log_ndtr keeps its relative accuracy.
        near = (h - centered.abs()) * inv_scale
        far = (-h - centered.abs()) * inv_scale
        log_near = torch.special.log_ndtr(near)
        gap = (log_near - torch.special.log_ndtr(far)).clamp_min(torch.finfo(torch.float64).tiny)
        closed = log_near + _log1mexp(gap)
        width = h * inv_scale
        z = centered * inv_scale
        midpoint = (LN2 + math.log(h) - log_scale - 0.5 * z * z - HALF_LOG_2PI
                    + torch.log1p((z * z - 1.0) * width * width / 6.0))
        interior = torch.where(width < _GAUSS_MIDPOINT_BELOW, midpoint, closed)
        first = torch.special.log_ndtr((centered + h) * inv_scale)
        last = torch.special.log_ndtr((h - centered) * inv_scale)
        log_mass = torch.where(index == 0, first,
                               torch.where(index == self.bins - 1, last, interior))
        return log_mass.to(_compute_dtype(params))

    def continuous_log_prob(self, params: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """Gaussian log-density in nats at the (unquantised) targets, ``[B, 2, T]`` -> ``[B, T]``.

        ClariNet's training objective; a density, so it can be positive. Adding
        ``log(2 / (bins - 1))`` approximates :meth:`log_prob` when the scale spans many bins.
        """
        self._check_log_prob_args(params, target)
        dtype = _compute_dtype(params)
        mean, log_scale = self.split_params(params.to(dtype))
        z = (target.to(dtype) - mean) * torch.exp(-log_scale)
        return -0.5 * z * z - log_scale - HALF_LOG_2PI

    def _sample(self, params, uniforms, temperature):
        mean, log_scale = self.split_params(params)
        x = mean
        if temperature > 0.0:
            x = x + (temperature * torch.exp(log_scale)) * torch.special.ndtri(uniforms[:, 0])
        return self._snap(x)


#: Config names of the heads.
OUTPUT_DISTRIBUTIONS: dict[str, type[OutputDistribution]] = {
    "categorical": Categorical,
    "mol": DiscretizedMixtureOfLogistics,
    "gaussian": DiscretizedGaussian,
}


def build_output_distribution(name: str, **options) -> OutputDistribution:
    """Build a head from its config name (``categorical``, ``mol``, ``gaussian``) and options."""
    if name not in OUTPUT_DISTRIBUTIONS:
        raise ConfigError(f"unknown output distribution {name!r}; expected one of "
                          f"{', '.join(sorted(OUTPUT_DISTRIBUTIONS))}")
    cls = OUTPUT_DISTRIBUTIONS[name]
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(options) - known)
    if unknown:
        raise ConfigError(f"unknown option(s) for output distribution {name!r}: "
                          f"{', '.join(unknown)}; expected {', '.join(sorted(known))}")
    return cls(**options)
