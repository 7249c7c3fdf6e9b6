"""Mu-law companding and quantisation (ITU-T G.711 curve, any mu).

The WaveNet convention is ``mu = 255``: a waveform in [-1, 1] is companded,

    y = sign(x) * ln(1 + mu |x|) / ln(1 + mu),

and rounded to the nearest of ``mu + 1 = 256`` evenly spaced levels, giving class indices
``q = round((y + 1) / 2 * mu)`` in ``0..mu``; level ``q`` decodes to ``y = 2 q / mu - 1``.

Worst-case round-trip error. Rounding moves ``y`` by at most ``1 / mu`` and the expansion
``x = sign(y) ((1 + mu)^|y| - 1) / mu`` is convex in ``|y|``, so

    |x - decode(encode(x))| <= (|x| + 1/mu) * ((1 + mu)^(1/mu) - 1)

(see :func:`mulaw_error_bound`); near silence the step is tiny, near full scale it is
about 2.2% of full scale for mu = 255.

Relation to librosa. ``librosa.mu_compress(x, mu=255, quantize=False)`` is exactly
:func:`mulaw_compress`. With ``quantize=True`` librosa returns *signed* codes in
-128..127: it bins the companded value with ``np.digitize`` against 256 edges, i.e.
``q_librosa = ceil((y + 1) / 2 * mu) - 128`` (rounding up, not to nearest; so -128 occurs
only for exactly -1.0, and exactly +1.0 overflows to +128), and
``librosa.mu_expand(quantize=True)`` maps a code back to ``y = q_librosa / 128`` (a grid of
step 2/256, not 2/255). So ``q_librosa + 128`` differs from our class index by at most one,
and the two decoders use slightly different levels: use :func:`from_librosa_codes` to turn
librosa codes into our classes (the nearest level on our grid to librosa's decoded value).
"""

from __future__ import annotations

import math

import torch

from wavegen.errors import UsageError


def _check_mu(mu: int) -> None:
    if isinstance(mu, bool) or not isinstance(mu, int) or mu < 1:
        raise UsageError(f"mu must be a positive integer (classes - 1), got {mu!r}")


def mulaw_compress(x: torch.Tensor, mu: int = 255) -> torch.Tensor:
    """Compand ``x`` (any shape, values in [-1, 1]) to ``y`` in [-1, 1]; float."""
    _check_mu(mu)
    x = x.clamp(-1.0, 1.0)
    return torch.sign(x) * torch.log1p(mu * x.abs()) / math.log1p(mu)


def mulaw_expand(y: torch.Tensor, mu: int = 255) -> torch.Tensor:
    """Inverse of :func:`mulaw_compress`: companded ``y`` in [-1, 1] -> waveform ``x``."""
    _check_mu(mu)
    y = y.clamp(-1.0, 1.0)
    return torch.sign(y) * torch.expm1(y.abs() * math.log1p(mu)) / mu


def mulaw_quantize(x: torch.Tensor, mu: int = 255) -> torch.Tensor:
    """Waveform in [-1, 1] -> class indices (int64) in ``0..mu``, same shape."""
    y = mulaw_compress(x, mu)
    return torch.round((y + 1.0) * (mu / 2.0)).long().clamp(0, mu)


def mulaw_dequantize(q: torch.Tensor, mu: int = 255) -> torch.Tensor:
    """Class indices in ``0..mu`` -> waveform in [-1, 1] (float32), same shape."""
    _check_mu(mu)
    if q.is_floating_point():
        raise UsageError("mulaw_dequantize expects integer class indices")
    y = q.float() * (2.0 / mu) - 1.0
    return mulaw_expand(y, mu)


def mulaw_error_bound(x: torch.Tensor, mu: int = 255) -> torch.Tensor:
    """Closed-form worst-case ``|x - dequantize(quantize(x))|`` at each value of ``x``."""
    _check_mu(mu)
    return (x.abs() + 1.0 / mu) * ((1.0 + mu) ** (1.0 / mu) - 1.0)


def from_librosa_codes(codes: torch.Tensor, mu: int = 255) -> torch.Tensor:
    """Signed librosa codes (``librosa.mu_compress(quantize=True)``) -> our class indices.

    librosa decodes code ``c`` to the companded value ``c * 2 / (mu + 1)``; this returns the
    index of the nearest of our ``mu + 1`` levels to it.
    """
    _check_mu(mu)
    y = codes.double() * (2.0 / (mu + 1))
    return torch.round((y + 1.0) * (mu / 2.0)).long().clamp(0, mu)
