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
new one, never a mix. Loading checks that the tensors match the model the config builds
exactly (no missing or unexpected names, equal shapes) and raises
:class:`~wavegen.errors.CheckpointError` with one line otherwise.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import nn

import wavegen
from wavegen.audio.features import FeatureConfig
from wavegen.errors import CheckpointError, WavegenError
from wavegen.models.registry import get_family
from wavegen.utils.atomic import atomic_write_text

CONFIG_FILE = "config.json"
MODEL_FILE = "model.safetensors"
EMA_FILE = "ema.safetensors"
STATE_FILE = "training_state.pt"


@dataclass
class BundleInfo:
    """What ``config.json`` says about a bundle."""

    family: str
    model_config: Any
    sample_rate: int
    features: FeatureConfig | None = None
    version: str = ""
    extra: dict[str, Any] = field(default_factory=dict)
    path: Path | None = None
    has_ema: bool = False

    def to_json(self) -> dict[str, Any]:
        return {
            "wavegen_version": wavegen.__version__,
            "family": self.family,
            "model": self.model_config.to_dict(),
            "sample_rate": self.sample_rate,
            "features": None if self.features is None else self.features.to_dict(),
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
    existing path is a CheckpointError.
    """
    target = Path(path)
    if target.exists() and not replace:
        raise CheckpointError(f"{target}: already exists")
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent))
    try:
        info_json = info.to_json()
        atomic_write_text(tmp / CONFIG_FILE, json.dumps(info_json, indent=2, sort_keys=True) + "\n")
        save_file(_state_for_saving(model.state_dict()), str(tmp / MODEL_FILE),
                  metadata={"family": info.family, "wavegen_version": wavegen.__version__})
        if ema_state is not None:
            save_file(_state_for_saving(ema_state), str(tmp / EMA_FILE))
        for name, module in (auxiliary or {}).items():
            save_file(_state_for_saving(module.state_dict()), str(tmp / auxiliary_file(name)))
        if training_state is not None:
            torch.save(training_state, tmp / STATE_FILE)
        for name in os.listdir(tmp):
            with open(tmp / name, "rb") as handle:
                os.fsync(handle.fileno())
        if target.exists():
            old = target.with_name(f".{target.name}.old")
            if old.exists():
                shutil.rmtree(old)
            os.replace(target, old)
            os.replace(tmp, target)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, target)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return target


def auxiliary_file(name: str) -> str:
    """File name of the auxiliary module ``name`` inside a bundle."""
    if not name.isidentifier() or name in ("model", "ema"):
        raise CheckpointError(f"bad auxiliary module name {name!r}")
    return f"{name}.safetensors"


def read_bundle_info(path: str | os.PathLike) -> BundleInfo:
    """Parse and validate ``config.json`` of the bundle at ``path``."""
    root = Path(path)
    config_path = root / CONFIG_FILE
    if not root.is_dir():
        raise CheckpointError(f"{root}: not a wavegen bundle directory")
    if not config_path.is_file():
        raise CheckpointError(f"{root}: no {CONFIG_FILE} (not a wavegen bundle)")
    try:
        data = json.loads(config_path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise CheckpointError(f"{config_path}: corrupt JSON ({exc})") from None
    try:
        family = get_family(data["family"])
        model_config = family.config_class.from_dict(data["model"], "model")
        features = None if data.get("features") is None else FeatureConfig.from_dict(data["features"])
        sample_rate = int(data["sample_rate"])
    except KeyError as exc:
        raise CheckpointError(f"{config_path}: missing key {exc.args[0]!r}") from None
    except WavegenError as exc:
        raise CheckpointError(f"{config_path}: {exc}") from None
    return BundleInfo(data["family"], model_config, sample_rate, features,
                      data.get("wavegen_version", ""), data.get("extra") or {}, root,
                      (root / EMA_FILE).is_file())


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
    model = get_family(info.family).model_class(info.model_config)
    weights = info.path / (EMA_FILE if use_ema and info.has_ema else MODEL_FILE)
    load_weights(model, weights)
    return model.to(device).eval(), info


def load_training_state(path: str | os.PathLike) -> dict[str, Any]:
    """The training state of a checkpoint bundle, loaded without unpickling code."""
    file = Path(path) / STATE_FILE
    if not file.is_file():
        raise CheckpointError(f"{Path(path)}: no {STATE_FILE} (not a training checkpoint)")
    try:
        return torch.load(file, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises several types for corrupt or unsafe files
        raise CheckpointError(f"{file}: unreadable training state ({' '.join(str(exc).split())[:200]})") from None
