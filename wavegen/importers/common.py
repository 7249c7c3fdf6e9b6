"""What every importer needs: weight-norm key conversion, strict loading, short key lists,
and what to tell a user whose checkpoint is a pickled module rather than a state dict."""

from __future__ import annotations

import torch
from torch import nn

from wavegen.errors import CheckpointError

_SHOWN = 3

#: What to do with a checkpoint that holds pickled code (e.g. a whole ``nn.Module`` saved
#: with ``torch.save(model, ...)``, as many WaveGlow and MelGAN checkpoints are).
UNPICKLE_ADVICE = ("load it in the environment of the project that saved it, save "
                   "`model.state_dict()` with torch.save, then run `wavegen import` on that file")


def first_keys(keys: list[str]) -> str:
    """The first few of ``keys`` (sorted), with a count of the rest."""
    keys = sorted(keys)
    more = f" (+{len(keys) - _SHOWN} more)" if len(keys) > _SHOWN else ""
    return ", ".join(keys[:_SHOWN]) + more


def convert_weight_norm_keys(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Keys of ``torch.nn.utils.weight_norm`` (``weight_g``/``weight_v``) -> parametrisation
    keys (``parametrizations.weight.original0``/``original1``); a ``module.`` prefix (from
    DataParallel) is dropped. A plain ``.weight`` (weight norm removed before saving) becomes
    ``g = |w|`` and ``v = w``, which parametrise the same weight.
    """
    out = {}
    for key, value in state.items():
        key = key.removeprefix("module.")
        if key.endswith(".weight_g"):
            out[key[:-len("weight_g")] + "parametrizations.weight.original0"] = value
        elif key.endswith(".weight_v"):
            out[key[:-len("weight_v")] + "parametrizations.weight.original1"] = value
        elif key.endswith(".weight"):
            stem = key[:-len("weight")] + "parametrizations.weight."
            dims = tuple(range(1, value.dim()))
            out[stem + "original0"] = torch.linalg.vector_norm(value, dim=dims, keepdim=True)
            out[stem + "original1"] = value
        else:
            out[key] = value
    return out


def load_strict(model: nn.Module, state: dict[str, torch.Tensor], where: str, what: str,
                describe: str, advice: str = "") -> None:
    """Load ``state`` into ``model`` with every key and shape matching, else a one-line
    CheckpointError naming the first missing / unexpected / mis-shaped keys, ``describe``
    (what the checkpoint looks like) and ``advice``."""
    expected = model.state_dict()
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    wrong = [f"{k} {list(state[k].shape)} vs {list(v.shape)}" for k, v in expected.items()
             if k in state and state[k].shape != v.shape]
    problems = []
    if missing:
        problems.append(f"missing {first_keys(missing)}")
    if unexpected:
        problems.append(f"unexpected {first_keys(unexpected)}")
    if wrong:
        problems.append(f"shape mismatch {first_keys(wrong)}")
    if problems:
        raise CheckpointError(f"{where}: does not match the {what} config "
                              f"({'; '.join(problems)}; {describe}){advice}")
    model.load_state_dict(state, strict=True)
