"""Model size limits: absurd configurations are refused before anything is allocated.

A typo (``residual_channels: 1e9``), a unit mix-up or a corrupt ``config.json`` must end in
a one-line :class:`~wavegen.errors.ConfigError`, not in an allocator traceback or a machine
that swaps for minutes. Every model and discriminator therefore estimates its own size
analytically from its configuration, in time proportional to the length of its lists (never
to the sizes themselves), and checks the estimate here before building a single layer:

* **parameters**: at most :data:`MAX_PARAMETERS` (2e9: 7.5 GiB at 4 bytes per parameter in
  float32, before gradients and optimiser state), or the environment variable
  ``WAVEGEN_MAX_PARAMETERS`` for bigger machines;
* **layers** (convolutions, linear layers and embeddings): at most :data:`MAX_LAYERS`
  (10,000; the largest published vocoders have about 100), or ``WAVEGEN_MAX_LAYERS``.
  A deep stack of tiny layers stays under the parameter limit yet takes minutes to build.

The message names the setting responsible (the one whose default would shrink the model
most) and the estimate::

    model: residual_channels=1000000000 gives about 1.3e+13 parameters (4.8e+04 GiB in
    float32), over the limit of 2e+09 (set WAVEGEN_MAX_PARAMETERS to raise it)

Either variable may be ``inf`` to switch its limit off.
"""

from __future__ import annotations

import copy
import dataclasses
import inspect
import math
import os
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, Callable

from wavegen.errors import ConfigError

#: Default limit on a model's parameter count.
MAX_PARAMETERS = 2_000_000_000
#: Default limit on a model's number of weight layers.
MAX_LAYERS = 10_000
#: Memory per parameter the messages assume (float32).
BYTES_PER_PARAMETER = 4
PARAMETERS_VARIABLE = "WAVEGEN_MAX_PARAMETERS"
LAYERS_VARIABLE = "WAVEGEN_MAX_LAYERS"


@dataclass(frozen=True)
class SizeEstimate:
    """Parameters (trainable tensors' elements) and weight layers of a model."""

    parameters: int = 0
    layers: int = 0

    def __add__(self, other: SizeEstimate) -> SizeEstimate:
        return SizeEstimate(self.parameters + other.parameters, self.layers + other.layers)

    def __mul__(self, count: int) -> SizeEstimate:
        return SizeEstimate(self.parameters * count, self.layers * count)

    __rmul__ = __mul__


def layer(weights: int, bias: int = 0, weight_norm: int = 0) -> SizeEstimate:
    """One weight layer: ``weights`` elements, ``bias`` elements, and the magnitudes ``g`` of a
    weight norm (one per slice along its dimension, ``weight_norm`` of them)."""
    return SizeEstimate(weights + bias + weight_norm, 1)


def conv(cin: int, cout: int, kernel: int, *, groups: int = 1, bias: bool = True,
         weight_norm: bool = False) -> SizeEstimate:
    """A ``Conv1d``/``Conv2d`` with ``kernel`` taps (weight-normalised along dim 0 if asked)."""
    return layer(cout * (cin // groups) * kernel, cout if bias else 0, cout if weight_norm else 0)


def _limit(variable: str, default: int) -> float:
    text = os.environ.get(variable, "").strip()
    if not text:
        return default
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not value > 0:
        raise ConfigError(f"{variable} must be a positive number (or inf), got {text!r}")
    return value


def max_parameters() -> float:
    """The parameter limit: ``WAVEGEN_MAX_PARAMETERS`` if set, else :data:`MAX_PARAMETERS`."""
    return _limit(PARAMETERS_VARIABLE, MAX_PARAMETERS)


def max_layers() -> float:
    """The layer limit: ``WAVEGEN_MAX_LAYERS`` if set, else :data:`MAX_LAYERS`."""
    return _limit(LAYERS_VARIABLE, MAX_LAYERS)


def approx(number: int | float | Decimal) -> str:
    """``number`` with two significant digits (``4.1e+19``), however large."""
    try:
        value = float(number)
    except OverflowError:  # an int beyond float's range
        value = math.inf
    if math.isinf(value) and not (isinstance(number, float) and math.isinf(number)):
        return f"{Decimal(number):.1e}"
    return f"{value:.2g}"


def _gib(parameters: int) -> str:
    return approx(Decimal(parameters * BYTES_PER_PARAMETER) / Decimal(2 ** 30))


def _shown(value: Any) -> str:
    text = str(list(value)) if isinstance(value, tuple) else str(value)
    return text if len(text) <= 40 else text[:37] + "..."


def check_size(estimate: Callable[[dict[str, Any]], SizeEstimate], values: dict[str, Any],
               defaults: dict[str, Any], where: str) -> SizeEstimate:
    """``estimate(values)`` checked against the limits; returns it.

    Over a limit, a ConfigError names the setting of ``values`` whose value from
    ``defaults`` would shrink the estimate most (each is tried in turn; the estimates are
    analytic, so this is cheap).
    """
    size = estimate(values)
    checks = ((size.parameters, max_parameters(), "parameters", PARAMETERS_VARIABLE),
              (size.layers, max_layers(), "layers", LAYERS_VARIABLE))
    for count, limit, what, variable in checks:
        if count <= limit:
            continue
        cause = _culprit(estimate, values, defaults, what)
        subject = f"{cause}={_shown(values[cause])}" if cause else "the configuration"
        memory = f" ({_gib(count)} GiB in float32)" if what == "parameters" else \
            " (convolutions, linear layers and embeddings)"
        raise ConfigError(f"{where}: {subject} gives about {approx(count)} {what}{memory}, "
                          f"over the limit of {approx(limit)} (set {variable} to raise it)")
    return size


def _culprit(estimate: Callable[[dict[str, Any]], SizeEstimate], values: dict[str, Any],
             defaults: dict[str, Any], what: str) -> str | None:
    """The key whose default value shrinks ``what`` the most (None if none shrinks it)."""
    best, best_count = None, getattr(estimate(values), what)
    for key, value in values.items():
        if key not in defaults or defaults[key] == value:
            continue
        try:
            count = getattr(estimate({**values, key: defaults[key]}), what)
        except (ArithmeticError, TypeError, ValueError, ConfigError):
            continue
        if count < best_count:
            best, best_count = key, count
    return best


def check_config_size(config: Any, where: str = "model") -> SizeEstimate:
    """Check a config dataclass with an ``estimate_size()`` method against the limits."""
    fields = [f for f in dataclasses.fields(config) if f.init]
    values = {f.name: getattr(config, f.name) for f in fields}
    defaults = {}
    for f in fields:
        if f.default is not dataclasses.MISSING:
            defaults[f.name] = f.default
        elif f.default_factory is not dataclasses.MISSING:
            defaults[f.name] = f.default_factory()

    def estimate(trial: dict[str, Any]) -> SizeEstimate:
        variant = copy.copy(config)  # bypasses __post_init__: one field changed at a time
        for key, value in trial.items():
            object.__setattr__(variant, key, value)
        return variant.estimate_size()

    return check_size(estimate, values, defaults, where)


def check_arguments_size(cls: type, arguments: dict[str, Any], where: str) -> SizeEstimate:
    """Check ``cls(**arguments)`` against the limits with ``cls.estimate_size(**arguments)``
    (defaults: those of ``cls``'s constructor)."""
    parameters = inspect.signature(cls).parameters
    defaults = {name: p.default for name, p in parameters.items()
                if p.default is not inspect.Parameter.empty}
    return check_size(lambda values: cls.estimate_size(**values), {**defaults, **arguments},
                      defaults, where)


__all__ = ["BYTES_PER_PARAMETER", "LAYERS_VARIABLE", "MAX_LAYERS", "MAX_PARAMETERS",
           "PARAMETERS_VARIABLE", "SizeEstimate", "approx", "check_arguments_size",
           "check_config_size", "check_size", "conv", "layer", "max_layers", "max_parameters"]
