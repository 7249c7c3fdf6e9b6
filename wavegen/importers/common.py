"""What every importer needs: weight-norm key conversion, strict loading, short key lists,
what to tell a user whose checkpoint is a pickled module rather than a state dict, and a
loader for the projects whose published checkpoints *are* pickled modules
(:func:`load_checkpoint`, :func:`load_restricted`, :func:`module_tensors`)."""

from __future__ import annotations

import _compat_pickle
import os
import pickle
import types
import warnings
from collections import OrderedDict
from collections.abc import Iterable
from typing import Any

import torch
from torch import nn

from wavegen.checkpoint import load_pickle_free
from wavegen.errors import CheckpointError, is_storage_error, storage_error

_SHOWN = 3

#: What to do with a checkpoint that holds pickled code (e.g. a whole ``nn.Module`` saved
#: with ``torch.save(model, ...)``) that an importer cannot read with its restricted
#: unpickler (WaveGlow's can: :func:`load_restricted`).
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


# --------------------------------------------------------------------------- pickled modules
# Some projects publish checkpoints that are whole pickled ``nn.Module`` s (WaveGlow's
# ``{"model": WaveGlow(...)}``). Unpickling them normally runs whatever the pickle names.
# :func:`load_restricted` instead gives torch an unpickler that knows an explicit list of
# classes, each mapped onto an inert :class:`PickledObject` stand-in that only records its
# pickled state, plus the few functions torch needs to rebuild tensors; every other global
# is refused before anything is called, and object state is only ever applied to stand-ins.


class PickledObject:
    """An inert stand-in for an instance of an allowed class named in a pickle.

    Unpickling creates it with ``__new__`` and hands it the instance's pickled attribute
    dict (``__setstate__``), which it stores as :attr:`state`; no code of the class it
    stands for (nor of ``torch.nn``) ever runs. :attr:`pickled_name` is that class's
    ``module.Name``.
    """

    pickled_name = ""
    #: torch's legacy loader reads this when a module's saved source differs from ours.
    dump_patches = False

    def __setstate__(self, state: Any) -> None:
        if isinstance(state, tuple) and len(state) == 2:  # (dict state, slot state)
            merged: dict[str, Any] = {}
            for part in state:
                if part is not None and not isinstance(part, dict):
                    raise pickle.UnpicklingError(f"{self.pickled_name}: state holds a "
                                                 f"{type(part).__name__}")
                merged.update(part or {})
            state = merged
        if not isinstance(state, dict) or not all(isinstance(k, str) for k in state):
            raise pickle.UnpicklingError(f"{self.pickled_name}: state is a {type(state).__name__}, "
                                         f"not an attribute dict")
        self.state = state

    def get(self, name: str, default: Any = None) -> Any:
        """The pickled attribute ``name`` (``default`` when absent)."""
        return getattr(self, "state", {}).get(name, default)

    def __repr__(self) -> str:
        return f"<pickled {self.pickled_name}>"


_STAND_INS: dict[str, type[PickledObject]] = {}


def stand_in(qualified_name: str) -> type[PickledObject]:
    """The :class:`PickledObject` subclass standing for ``module.Name`` (one per name)."""
    if qualified_name not in _STAND_INS:
        short = qualified_name.rsplit(".", 1)[-1]
        _STAND_INS[qualified_name] = type(short, (PickledObject,), {
            "pickled_name": qualified_name, "__module__": __name__,
            "__doc__": f"Inert stand-in for a pickled {qualified_name}."})
    return _STAND_INS[qualified_name]


#: ``torch.nn`` classes that pickled modules are made of.
TORCH_NN_CLASSES = ("torch.nn.modules.conv.Conv1d", "torch.nn.modules.conv.ConvTranspose1d",
                    "torch.nn.modules.container.ModuleList",
                    "torch.nn.utils.weight_norm.WeightNorm")


def _rebuild_tensor_v2(storage, storage_offset, size, stride, requires_grad, backward_hooks,
                       metadata=None):
    """torch's tensor rebuild, without the pickled backward hooks (never attached)."""
    if not isinstance(storage, (torch.storage.TypedStorage, torch.UntypedStorage)):
        raise pickle.UnpicklingError(f"a tensor's storage is a {type(storage).__name__}")
    return torch._utils._rebuild_tensor_v2(storage, storage_offset, size, stride,
                                           bool(requires_grad), OrderedDict(), metadata)


def _rebuild_parameter(data, requires_grad, backward_hooks, state=None):
    """torch's parameter rebuild, without pickled hooks or extra attributes."""
    if not isinstance(data, torch.Tensor):
        raise pickle.UnpicklingError(f"a parameter's data is a {type(data).__name__}")
    return nn.Parameter(data, requires_grad=bool(requires_grad))


def _no_backend() -> None:
    """Old modules (torch < 1.2) pickle their THNN backend as a call of this: nothing."""
    return None


#: The functions and containers a pickled module needs besides its classes. Storage types
#: (``torch.FloatStorage`` ...) are resolved by torch's own loader before ours is asked.
_TORCH_GLOBALS: dict[str, Any] = {
    "collections.OrderedDict": OrderedDict,
    "builtins.set": set,
    "torch._utils._rebuild_tensor_v2": _rebuild_tensor_v2,
    "torch._utils._rebuild_parameter": _rebuild_parameter,
    "torch._utils._rebuild_parameter_with_state": _rebuild_parameter,
    "torch.nn.backends.thnn._get_thnn_function_backend": _no_backend,
}


class _RefusedGlobal(pickle.UnpicklingError):
    """A pickle named a global that is not allowed (raised before anything is called)."""


class RefusedPickleError(CheckpointError):
    """A checkpoint needs a class or function that :func:`load_restricted` does not allow."""


def _restricted_pickle_module(classes: frozenset[str]) -> Any:
    """A ``pickle_module`` for ``torch.load``: ``Unpickler`` and ``load`` that allow only
    ``classes`` (as stand-ins) and :data:`_TORCH_GLOBALS`."""

    class Unpickler(pickle._Unpickler):  # the Python one: its opcode table can be changed
        dispatch = dict(pickle._Unpickler.dispatch)

        def find_class(self, module: str, name: str) -> Any:
            if self.proto < 3 and self.fix_imports:  # Python 2 names, as pickle maps them
                if (module, name) in _compat_pickle.NAME_MAPPING:
                    module, name = _compat_pickle.NAME_MAPPING[(module, name)]
                elif module in _compat_pickle.IMPORT_MAPPING:
                    module = _compat_pickle.IMPORT_MAPPING[module]
            qualified = f"{module}.{name}"
            if qualified in classes:
                return stand_in(qualified)
            if qualified in _TORCH_GLOBALS:
                return _TORCH_GLOBALS[qualified]
            raise _RefusedGlobal(qualified)

        def load_build(self) -> None:
            # BUILD sets an object's state; only stand-ins (and a state dict's _metadata
            # attribute on an OrderedDict) may receive one: never a class or a function.
            state = self.stack.pop()
            target = self.stack[-1]
            if isinstance(target, PickledObject):
                target.__setstate__(state)
            elif type(target) is OrderedDict and isinstance(state, dict) \
                    and set(state) <= {"_metadata"}:
                target.__dict__.update(state)
            else:
                raise _RefusedGlobal(f"state of a {type(target).__name__}")

        dispatch[pickle.BUILD[0]] = load_build

    def load(file, **kwargs):
        return Unpickler(file, **kwargs).load()

    return types.SimpleNamespace(__name__="wavegen_restricted_pickle", Unpickler=Unpickler,
                                 load=load)


def load_restricted(file: str | os.PathLike, what: str, classes: Iterable[str]) -> Any:
    """``torch.load`` a checkpoint of pickled modules without running code from it.

    Instances of ``classes`` (``"module.Name"`` strings, e.g. ``"glow.WaveGlow"`` or
    :data:`TORCH_NN_CLASSES`) load as inert :class:`PickledObject` stand-ins; tensors,
    parameters, ``OrderedDict`` and ``set`` load as themselves. Any other global is a
    :class:`RefusedPickleError` naming it, raised before anything it names is called; any
    other failure a CheckpointError "cannot read ``what``" (a disk fault a StorageError).
    """
    where = os.fspath(file)
    module = _restricted_pickle_module(frozenset(classes))
    try:
        with warnings.catch_warnings():
            # the legacy format compares each module class's saved source with the
            # stand-in's, which always differs (or cannot be found)
            warnings.simplefilter("ignore", torch.serialization.SourceChangeWarning)
            warnings.filterwarnings("ignore", message="Couldn't retrieve source code")
            return torch.load(where, map_location="cpu", weights_only=False,
                              pickle_module=module)
    except _RefusedGlobal as exc:
        raise RefusedPickleError(f"{where}: refused to unpickle {exc.args[0]} (wavegen loads only "
                                 f"tensors and the known classes of a {what}, as inert data, "
                                 f"and never runs code from a checkpoint)") from None
    except Exception as exc:  # corrupt or truncated files raise many types
        if is_storage_error(exc):
            raise storage_error(exc, where) from None
        raise CheckpointError(f"{where}: cannot read {what} ({type(exc).__name__}: "
                              f"{' '.join(str(exc).split())[:200]})") from None


def load_checkpoint(file: str | os.PathLike, what: str, classes: Iterable[str]) -> Any:
    """A checkpoint that is plain data (``torch.load(weights_only=True)``) or, failing that,
    pickled modules of ``classes`` (:func:`load_restricted`). A missing file, a corrupt one
    and a refused global are one-line CheckpointErrors."""
    where = os.fspath(file)
    if not os.path.isfile(where):
        raise CheckpointError(f"{where}: " + ("is a directory, not a checkpoint file"
                                              if os.path.isdir(where) else "file not found"))
    try:
        return load_pickle_free(where, what, UNPICKLE_ADVICE)
    except CheckpointError as plain_error:
        try:
            return load_restricted(where, what, classes)
        except RefusedPickleError:
            raise
        except CheckpointError:
            raise plain_error from None


def module_tensors(module: PickledObject, where: str,
                   limit: int = 100_000) -> dict[str, torch.Tensor]:
    """What ``state_dict()`` of the pickled module ``module`` gives: its parameters and
    persistent buffers, then its submodules' under ``name.``, depth first (detached).
    A pickle can make its modules share children (or loop): more than ``limit`` modules
    visited, or nesting over 64 deep, is a CheckpointError."""
    out: dict[str, torch.Tensor] = {}
    pending: list[tuple[str, PickledObject, int]] = [("", module, 0)]
    visited = 0
    while pending:
        prefix, current, depth = pending.pop()
        visited += 1
        if visited > limit or depth > 64:
            raise CheckpointError(f"{where}: the pickled modules nest too deeply or loop")
        what = prefix.rstrip(".") or "the model"
        transient = current.get("_non_persistent_buffers_set")
        transient = transient if isinstance(transient, (set, frozenset)) else set()
        for group in ("_parameters", "_buffers"):
            entries = current.get(group) or {}
            if not isinstance(entries, dict):
                raise CheckpointError(f"{where}: {what} has a {type(entries).__name__} as {group}")
            for name, value in entries.items():
                if value is None or (group == "_buffers" and name in transient):
                    continue
                if not isinstance(value, torch.Tensor):
                    raise CheckpointError(f"{where}: {prefix}{name} is a {type(value).__name__}, "
                                          f"not a tensor")
                out[f"{prefix}{name}"] = value.detach()
        children = current.get("_modules") or {}
        if not isinstance(children, dict):
            raise CheckpointError(f"{where}: {what} has a {type(children).__name__} as _modules")
        for name, child in reversed(list(children.items())):  # popped in their order
            if child is None:
                continue
            if not isinstance(child, PickledObject):
                raise CheckpointError(f"{where}: submodule {prefix}{name} is a "
                                      f"{type(child).__name__}")
            pending.append((f"{prefix}{name}.", child, depth + 1))
    return out
