"""Model bundles: a directory that any wavegen version can load without unpickling code.

Layout::

    BUNDLE/
      config.json          family, model hyperparameters, FeatureConfig, sample rate, version
      model.safetensors    the model's parameters and buffers
      ema.safetensors      exponential-moving-average weights (when training used EMA)
      training_state.pt    optimisers, schedulers, step, RNG states, data position
                           (training checkpoints only; loaded with torch.load(weights_only=True))

A bundle is written into a hidden temporary directory next to its final place and renamed
into place only when complete, so a killed process leaves either the previous bundle or the
new one, never a mix (plus, at worst, hidden leftovers that
:func:`recover_interrupted_saves` tidies up). A full disk while saving is a one-line
:class:`~wavegen.errors.StorageError` naming the file, with the temporary directory removed
and any previous bundle at that place untouched. Loading checks that the tensors match the
model the config builds exactly (no missing or unexpected names, equal shapes) and raises
:class:`~wavegen.errors.CheckpointError` with one line otherwise.
"""

from __future__ import annotations

import json
import os
import pickle
import re
import shutil
import tempfile
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import nn

import wavegen
from wavegen.audio.features import FeatureConfig
from wavegen.errors import (CheckpointError, WavegenError, is_storage_error,
                            storage_error)
from wavegen.models.registry import get_family
from wavegen.models.size import check_config_size
from wavegen.utils.config import coerce
from wavegen.utils.atomic import (atomic_write_text, remove_leftover_temporaries,
                                  storage_errors_named, temporary_name)

CONFIG_FILE = "config.json"
MODEL_FILE = "model.safetensors"
EMA_FILE = "ema.safetensors"
STATE_FILE = "training_state.pt"

#: What a bundle's model is conditioned on (``config.json`` ``"conditioning"``): nothing, the
#: log-mel of its ``features``, or the MIDI piano roll (:class:`wavegen.data.midi.PianoRollConfig`).
CONDITIONINGS = ("none", "mel", "roll", "codes")


@dataclass
class BundleInfo:
    """What ``config.json`` says about a bundle.

    Attributes:
        family: registry name of the model family (:mod:`wavegen.models.registry`).
        model_config: the family's config dataclass.
        sample_rate: audio rate in Hz.
        features: the spectral front-end the model was trained with (mel models), or None.
        version: wavegen version that wrote the bundle.
        extra: free-form metadata (training step, recipe, import source); never read at
            inference time.
        path: the bundle folder (set when read from disk).
        has_ema: whether ``ema.safetensors`` is present.
        conditioning: what the model is conditioned on, one of :data:`CONDITIONINGS`;
            None only for bundles written before it was recorded (the inference layer then
            infers it from the model config, see
            :func:`wavegen.inference.conditioning.bundle_conditioning`).
        process: the diffusion process (:class:`wavegen.diffusion.process.DiffusionProcess`
            as a dict) of a diffusion model, None otherwise.
    """

    family: str
    model_config: Any
    sample_rate: int
    features: FeatureConfig | None = None
    version: str = ""
    extra: dict[str, Any] = field(default_factory=dict)
    path: Path | None = None
    has_ema: bool = False
    conditioning: str | None = None
    process: dict[str, Any] | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "wavegen_version": wavegen.__version__,
            "family": self.family,
            "model": self.model_config.to_dict(),
            "sample_rate": self.sample_rate,
            "features": None if self.features is None else self.features.to_dict(),
            "conditioning": self.conditioning,
            "process": self.process,
            "extra": self.extra,
        }


def _state_for_saving(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    # safetensors refuses shared or non-contiguous storage; checkpoints own their tensors.
    return {k: v.detach().to("cpu").contiguous().clone() for k, v in state.items()}


def save_bundle(path: str | os.PathLike, model: nn.Module, info: BundleInfo, *,
                ema_state: dict[str, torch.Tensor] | None = None,
                training_state: dict[str, Any] | None = None, replace: bool = False,
                auxiliary: dict[str, nn.Module] | None = None) -> Path:
    """Write ``model`` (and optional EMA weights / training state) as a bundle at ``path``.

    ``auxiliary`` modules that are trained but are not the model (a GAN's discriminators)
    are saved beside it as ``NAME.safetensors`` (see :func:`auxiliary_file`), so a run can
    be resumed or fine-tuned with them.

    With ``replace`` an existing bundle at ``path`` is swapped out atomically; otherwise an
    existing path is a CheckpointError. A storage fault (full disk, quota, read-only file
    system) is a :class:`~wavegen.errors.StorageError` naming the file being written; the
    temporary directory is removed and whatever was at ``path`` before stays as it was.
    """
    target = Path(path)
    if target.exists() and not replace:
        raise CheckpointError(f"{target}: already exists")
    with storage_errors_named(target):
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(**temporary_name(target)))
    try:
        def write(name: str, writer) -> None:
            # A storage fault names the file as it would be in the finished bundle.
            with storage_errors_named(target / name):
                writer(tmp / name)

        info_json = json.dumps(info.to_json(), indent=2, sort_keys=True) + "\n"
        write(CONFIG_FILE, lambda file: atomic_write_text(file, info_json))
        metadata = {"family": info.family, "wavegen_version": wavegen.__version__}
        write(MODEL_FILE, lambda file: save_file(_state_for_saving(model.state_dict()), str(file),
                                                 metadata=metadata))
        if ema_state is not None:
            write(EMA_FILE, lambda file: save_file(_state_for_saving(ema_state), str(file)))
        for name, module in (auxiliary or {}).items():
            write(auxiliary_file(name),
                  lambda file, m=module: save_file(_state_for_saving(m.state_dict()), str(file)))
        if training_state is not None:
            write(STATE_FILE, lambda file: _save_pickle_free(training_state, file))
        for name in os.listdir(tmp):
            write(name, _fsync)
        with storage_errors_named(target):
            _swap_into_place(tmp, target)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return target


def _save_pickle_free(state: dict[str, Any], file: Path) -> None:
    # Through an open file: torch.save(obj, path) reports a full disk as a bare RuntimeError
    # ("unexpected pos"), while with a file object the OSError (ENOSPC) stays attached.
    with open(file, "wb") as handle:
        torch.save(state, handle)


def _fsync(file: Path) -> None:
    with open(file, "rb") as handle:
        os.fsync(handle.fileno())


def _old_name(target: Path) -> Path:
    """Where :func:`save_bundle` parks the bundle it replaces during the swap."""
    return target.with_name(f".{target.name}.old")


def _swap_into_place(tmp: Path, target: Path) -> None:
    """Rename the complete bundle ``tmp`` to ``target``, replacing any bundle there.

    Two renames cannot be one atomic step: the old bundle is first parked as ``.NAME.old``,
    so a kill in between leaves ``.NAME.old`` complete and ``NAME`` missing, which
    :func:`recover_interrupted_saves` undoes. While ``NAME`` exists, ``.NAME.old`` is garbage.
    """
    if not target.exists():
        os.replace(tmp, target)
        return
    old = _old_name(target)
    if old.exists():
        shutil.rmtree(old)
    os.replace(target, old)
    os.replace(tmp, target)
    shutil.rmtree(old, ignore_errors=True)


def recover_interrupted_saves(directory: str | os.PathLike) -> list[Path]:
    """Tidy up after :func:`save_bundle` calls killed mid-way in ``directory``.

    Hidden temporary bundles (``.NAME.RANDOM.tmp``, incomplete by definition) are deleted;
    a parked ``.NAME.old`` is deleted when ``NAME`` exists (a half-finished clean-up) and
    renamed back to ``NAME`` when it does not (the kill fell between the two renames of a
    replacement, so it is the last complete bundle). Only call it while nothing else can be
    saving into ``directory``. Returns the paths removed or restored.
    """
    directory = Path(directory)
    touched = remove_leftover_temporaries(directory)
    for old in directory.glob(".*.old"):
        target = directory / old.name[1:-len(".old")]
        if not old.is_dir() or not target.name:
            continue
        if target.exists():
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(old, target)
        touched.append(old)
    return touched


def auxiliary_file(name: str) -> str:
    """File name of the auxiliary module ``name`` inside a bundle."""
    if not name.isidentifier() or name in ("model", "ema"):
        raise CheckpointError(f"bad auxiliary module name {name!r}")
    return f"{name}.safetensors"


def read_bundle_info(path: str | os.PathLike) -> BundleInfo:
    """Parse and validate ``config.json`` of the bundle at ``path``."""
    root = resolve_bundle_path(path)
    config_path = root / CONFIG_FILE
    if not root.is_dir():
        raise CheckpointError(f"{root}: not a wavegen bundle directory")
    if not config_path.is_file():
        raise CheckpointError(f"{root}: no {CONFIG_FILE} (not a wavegen bundle)")
    try:
        data = json.loads(config_path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError, RecursionError) as exc:
        raise CheckpointError(f"{config_path}: corrupt JSON ({exc})") from None
    if not isinstance(data, dict):
        raise CheckpointError(f"{config_path}: must be a JSON object (family, model, "
                              f"sample_rate, ...), got a JSON {_json_kind(data)}")
    try:
        family = get_family(data["family"])
        model_config = family.config_class.from_dict(data["model"], "model")
        features = None if data.get("features") is None else \
            FeatureConfig.from_dict(data["features"])
        sample_rate = coerce(data["sample_rate"], int, "sample_rate")
        version = coerce(data.get("wavegen_version") or "", str, "wavegen_version")
        extra = coerce(data.get("extra") or {}, dict, "extra")
        conditioning = data.get("conditioning")
        if conditioning is not None and conditioning not in CONDITIONINGS:
            raise CheckpointError(f"conditioning must be one of {', '.join(CONDITIONINGS)} "
                                  f"(or null), got {conditioning!r}")
        process = data.get("process")
        if process is not None:
            process = _checked_process(coerce(process, dict, "process"))
    except KeyError as exc:
        raise CheckpointError(f"{config_path}: missing key {exc.args[0]!r}") from None
    except WavegenError as exc:
        raise CheckpointError(f"{config_path}: {exc}") from None
    if sample_rate < 1:
        raise CheckpointError(f"{config_path}: sample_rate must be >= 1, got {sample_rate}")
    return BundleInfo(family.name, model_config, sample_rate, features, version, extra, root,
                      (root / EMA_FILE).is_file(), conditioning, process)


def _checked_process(process: dict[str, Any]) -> dict[str, Any]:
    """A bundle's diffusion process as stored, after checking that it parses."""
    from wavegen.diffusion.process import DiffusionProcess

    DiffusionProcess.from_dict(process, "process")
    return process


def _json_kind(value: Any) -> str:
    """JSON's name for the type of a parsed value."""
    kinds = ((bool, "boolean"), (list, "array"), (str, "string"), (int, "number"),
             (float, "number"), (type(None), "null"))
    return next((name for kind, name in kinds if isinstance(value, kind)), type(value).__name__)


def _load_tensors(file: Path) -> dict[str, torch.Tensor]:
    if not file.is_file():
        raise CheckpointError(f"{file}: missing")
    try:
        return load_file(str(file))
    except (SafetensorError, OSError, ValueError) as exc:
        raise CheckpointError(f"{file}: unreadable safetensors ({' '.join(str(exc).split())})") from None


def load_weights(model: nn.Module, file: Path) -> None:
    """Load a safetensors file into ``model``; every name and shape must match."""
    state = _load_tensors(file)
    expected = model.state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    if missing or unexpected:
        raise CheckpointError(f"{file}: does not match the model (missing {missing[:3]}, "
                              f"unexpected {unexpected[:3]})")
    for key, value in state.items():
        if value.shape != expected[key].shape:
            raise CheckpointError(f"{file}: {key} has shape {tuple(value.shape)}, the model "
                                  f"expects {tuple(expected[key].shape)}")
    model.load_state_dict(state)


def load_bundle(path: str | os.PathLike, *, use_ema: bool = True,
                device: str | torch.device = "cpu") -> tuple[nn.Module, BundleInfo]:
    """Build the bundle's model and load its weights (EMA weights when present and wanted)."""
    info = read_bundle_info(path)
    try:
        check_config_size(info.model_config, "model")
    except WavegenError as exc:
        raise CheckpointError(f"{info.path / CONFIG_FILE}: {exc}") from None
    model = get_family(info.family).model_class(info.model_config)
    weights = info.path / (EMA_FILE if use_ema and info.has_ema else MODEL_FILE)
    load_weights(model, weights)
    return model.to(device).eval(), info


def load_training_state(path: str | os.PathLike) -> dict[str, Any]:
    """The training state of a checkpoint bundle, loaded without unpickling code."""
    file = Path(path) / STATE_FILE
    if not file.is_file():
        raise CheckpointError(f"{Path(path)}: no {STATE_FILE} (not a training checkpoint)")
    return load_pickle_free(file, "training state",
                            "wavegen did not write this file: resume from another checkpoint "
                            "or start the run afresh")


#: What torch.load(weights_only=True) says when a file needs code (a class, a function) to
#: be unpickled, as opposed to a corrupt file ("Unsupported operand ...").
_NEEDS_CODE = ("Unsupported global", "unsupported GLOBAL", "Can only create new object",
               "unrecognized function", "Can only build")


def load_pickle_free(file: str | os.PathLike, what: str, advice: str) -> Any:
    """``torch.load(file, weights_only=True)`` on the CPU, with one-line errors and no warnings.

    Only tensors and plain containers load. A file that needs code to unpickle it (a whole
    pickled ``nn.Module``, any class or function) is a CheckpointError saying that wavegen
    never unpickles code, followed by ``advice`` (torch's own text would suggest
    ``weights_only=False``, i.e. running whatever the file contains). Any other failure is
    a CheckpointError "cannot read ``what``", and a disk fault a StorageError.
    """
    where = os.fspath(file)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # e.g. TypedStorage deprecation on old files
            return torch.load(where, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        text = str(exc)
        if any(marker in text for marker in _NEEDS_CODE):
            found = re.search(r"GLOBAL ([\w.]+)", text)
            holds = f" ({found.group(1)})" if found else ""
            raise CheckpointError(f"{where}: this {what} contains pickled Python objects{holds} "
                                  f"and wavegen never unpickles code (it could run anything); "
                                  f"{advice}") from None
        detail = text.split("WeightsUnpickler error:", 1)[-1].split("Check the documentation")[0]
        raise CheckpointError(f"{where}: cannot read {what} (corrupt or not a PyTorch file: "
                              f"{_short(detail)})") from None
    except Exception as exc:  # torch raises many types for corrupt or truncated files
        if is_storage_error(exc):
            raise storage_error(exc, where) from None
        if os.path.isfile(where) and os.path.getsize(where) == 0:
            raise CheckpointError(f"{where}: cannot read {what} (the file is empty)") from None
        reason = f"{type(exc).__name__}: {_short(str(exc))}" if str(exc) else type(exc).__name__
        raise CheckpointError(f"{where}: cannot read {what} ({reason})") from None


def _short(text: str, limit: int = 200) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[:limit - 3] + "..."


#: Largest pointer file (``checkpoints/latest``) read; a bundle name is one short line.
_POINTER_BYTES = 4096


def read_pointer(pointer: str | os.PathLike) -> str:
    """The name a pointer file (``checkpoints/latest``) holds. CheckpointError when the file
    is unreadable, binary, empty, longer than a name, or names anything but a plain sibling
    (``..``, a separator, an absolute path): a pointer never leads out of its folder."""
    pointer = Path(pointer)
    try:
        with open(pointer, "rb") as handle:
            name = handle.read(_POINTER_BYTES + 1).decode("utf-8").strip()
    except (OSError, UnicodeDecodeError):
        raise CheckpointError(f"{pointer}: not a wavegen bundle directory") from None
    if not name or "\n" in name or len(name) > _POINTER_BYTES:
        raise CheckpointError(f"{pointer}: not a wavegen bundle directory")
    if name in (".", "..") or "/" in name or "\\" in name or os.path.isabs(name):
        raise CheckpointError(f"{pointer}: names {name!r}, which is not a checkpoint in "
                              f"{pointer.parent} (a pointer may only name a folder beside it)")
    return name


def resolve_bundle_path(path: str | os.PathLike) -> Path:
    """``path`` itself, or for a pointer file such as ``runs/NAME/checkpoints/latest`` the
    bundle it names (see :func:`read_pointer`)."""
    root = Path(path)
    if not root.is_file():
        return root
    if root.name == CONFIG_FILE:  # the bundle's config.json given instead of its folder
        return root.parent
    name = read_pointer(root)
    target = root.parent / name
    if not target.is_dir():
        raise CheckpointError(f"{root}: names {name!r}, which does not exist in {root.parent}")
    return target


#: Hex digits of :func:`bundle_fingerprint` (64 bits: bundles never collide by chance).
FINGERPRINT_DIGITS = 16


def bundle_fingerprint(path: str | os.PathLike, *, use_ema: bool = True) -> str:
    """Hex digest of what a bundle's model computes: ``config.json`` and the weights file that
    :func:`load_bundle` with the same ``use_ema`` loads (``ema.safetensors`` when present and
    wanted, else ``model.safetensors``), byte for byte.

    Data derived from a model (the codes of :mod:`wavegen.codes`) records it, so it is never
    read back through another model: a retrained or edited bundle, or its raw weights instead
    of its EMA, gives another fingerprint. Accepts what :func:`read_bundle_info` accepts (a
    bundle folder, its ``config.json``, a ``checkpoints/latest`` pointer); a missing file is
    a CheckpointError naming it.
    """
    import hashlib

    root = resolve_bundle_path(path)
    if not root.is_dir():
        raise CheckpointError(f"{root}: not a wavegen bundle directory")
    weights = EMA_FILE if use_ema and (root / EMA_FILE).is_file() else MODEL_FILE
    digest = hashlib.sha256(b"wavegen bundle fingerprint 1\0")
    for name in (CONFIG_FILE, weights):
        file = root / name
        try:
            with open(file, "rb") as handle:
                digest.update(name.encode("utf-8") + b"\0"
                              + os.fstat(handle.fileno()).st_size.to_bytes(8, "little"))
                for block in iter(lambda: handle.read(1 << 20), b""):
                    digest.update(block)
        except FileNotFoundError:
            raise CheckpointError(f"{file}: missing") from None
        except IsADirectoryError:
            raise CheckpointError(f"{file}: is a folder, not a file") from None
    return digest.hexdigest()[:FINGERPRINT_DIGITS]
