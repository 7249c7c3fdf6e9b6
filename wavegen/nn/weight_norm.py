"""Weight normalisation (Salimans & Kingma 2016) for the GAN generators, and its folding.

Modules use :func:`weight_norm` (``torch.nn.utils.parametrizations.weight_norm``: state-dict
keys ``parametrizations.weight.original0`` = g, ``original1`` = v). For inference,
:func:`fold_weight_norm` replaces every parametrisation by the plain weight ``g v / |v|`` it
computes, so the forward pass stops re-normalising on every call and the outputs are
unchanged (to float rounding).
"""

from __future__ import annotations

from torch import nn
from torch.nn.utils import parametrize
from torch.nn.utils.parametrizations import weight_norm as _weight_norm


def weight_norm(module: nn.Module, dim: int = 0) -> nn.Module:
    """``module`` with its ``weight`` weight-normalised along ``dim`` (returns the module)."""
    return _weight_norm(module, name="weight", dim=dim)


def has_weight_norm(model: nn.Module) -> bool:
    return any(parametrize.is_parametrized(m, "weight") for m in model.modules())


def fold_weight_norm(model: nn.Module) -> nn.Module:
    """Replace every parametrised ``weight`` of ``model`` by its current value (in place)."""
    for module in model.modules():
        if parametrize.is_parametrized(module, "weight"):
            parametrize.remove_parametrizations(module, "weight", leave_parametrized=True)
    return model


__all__ = ["weight_norm", "fold_weight_norm", "has_weight_norm"]
