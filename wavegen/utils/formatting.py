"""Numbers as the CLI prints them."""

from __future__ import annotations

import math


def format_ratio(value: float) -> str:
    """A ratio such as a real-time factor with three significant digits, never rounded to
    zero: ``0.000123``, ``0.0451``, ``1.25``, ``312``."""
    if not math.isfinite(value) or abs(value) >= 100:
        return f"{value:.0f}" if math.isfinite(value) else str(value)
    return f"{value:.3g}"
