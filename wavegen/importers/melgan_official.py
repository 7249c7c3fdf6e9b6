"""Import generator checkpoints of the official MelGAN (descriptinc/melgan-neurips).

The official ``train.py`` saves the generator's bare state dict (``torch.save(netG.
state_dict(), "best_netG.pt")``; the pretrained ``linda_johnson.pt`` / ``multi_speaker.pt``
are the same), weight-normalised with the old hook API (``model.1.weight_g`` /
``model.1.weight_v``). :class:`~wavegen.models.melgan.MelGANGenerator` keeps the official
module layout (one ``nn.Sequential`` called ``model``; residual blocks with ``block`` and
``shortcut``), so importing is a rename of the weight-norm keys to the parametrisation keys
(``parametrizations.weight.original0`` = g, ``original1`` = v) and a strict load. A
``module.`` prefix (a model saved from ``DataParallel``) is dropped, and plain ``.weight``
keys (weight norm removed before saving) are accepted as ``g = |w|``, ``v = w``.

The official front-end (``Audio2Mel``) is the ``"melgan-22k"`` feature preset: reflect
padding of ``(n_fft - hop) / 2`` on both sides and ``center=False``, n_fft = win = 1024,
hop 256, periodic Hann window, magnitude ``sqrt(re^2 + im^2)``, librosa's Slaney mel filters
(80 bands, 0 Hz to Nyquist) with Slaney normalisation, ``log10(clamp(x, 1e-5))``, 22.05 kHz.
The official generator hard-codes ratios 8 x 8 x 2 x 2; other ``ratios`` or ``n_mels`` give
that front-end with the hop and band count changed.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence

import torch

from wavegen.audio.features import PRESETS, FeatureConfig
from wavegen.checkpoint import load_pickle_free
from wavegen.errors import CheckpointError
from wavegen.importers.common import UNPICKLE_ADVICE, convert_weight_norm_keys, load_strict
from wavegen.models.melgan import MelGANConfig, MelGANGenerator
from wavegen.models.size import check_config_size

BASE_FEATURES = "melgan-22k"


def load_official_state(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """The state dict saved by the official code (CheckpointError if unreadable)."""
    where = os.fspath(path)
    data = load_pickle_free(where, "MelGAN checkpoint", UNPICKLE_ADVICE)
    if not isinstance(data, dict) or not data \
            or not all(isinstance(v, torch.Tensor) for v in data.values()):
        raise CheckpointError(f"{where}: not a MelGAN generator checkpoint (expected the "
                              f"state dict of netG, got {type(data).__name__})")
    return {str(k): v for k, v in data.items()}


def convert_state_dict(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Official key names -> wavegen's (weight-norm hooks -> parametrisations)."""
    return convert_weight_norm_keys(state)


def _describe_state(state: dict[str, torch.Tensor]) -> str:
    """What the checkpoint's shapes say about its architecture."""
    first = state.get("model.1.parametrizations.weight.original1")
    if first is None or first.dim() != 3:
        return "no model.1 weight"
    stages = sum(1 for k, v in state.items()
                 if k.endswith("parametrizations.weight.original1") and k.count(".") == 4
                 and v.dim() == 3 and v.shape[-1] % 2 == 0 and v.shape[-1] != 7)
    blocks = len({k.split(".")[1] for k in state if ".shortcut." in k})
    per_stage = f", {blocks // stages} residual blocks per stage" if stages else ""
    ngf = first.shape[0] // 2 ** stages if stages else None
    return (f"checkpoint has {first.shape[1]} mels, {stages} upsampling stages{per_stage}, "
            f"ngf {ngf}")


def load_into(model: MelGANGenerator, state: dict[str, torch.Tensor], where: str) -> None:
    """Strict load of a converted state dict (CheckpointError naming the first bad keys)."""
    load_strict(model, state, where, "MelGAN", _describe_state(state), "")


def import_melgan_official(path: str | os.PathLike, n_mels: int = 80, ngf: int = 32,
                           n_residual_layers: int = 3, ratios: Sequence[int] = (8, 8, 2, 2),
                           ) -> tuple[MelGANGenerator, MelGANConfig, FeatureConfig]:
    """Load an official MelGAN generator state dict (``best_netG.pt``, ``linda_johnson.pt``).

    Args:
        path: the ``.pt`` file.
        n_mels, ngf, n_residual_layers: the official ``--n_mel_channels``, ``--ngf`` and
            ``--n_residual_layers`` (see the run's ``args.yml``).
        ratios: the generator's upsampling ratios (the official code hard-codes 8, 8, 2, 2).

    Returns:
        ``(generator, config, features)``: the generator in eval mode with weight norm in
        place (call ``.inference()`` to fold it), its config, and the front-end its mels must
        come from.
    """
    ratios = tuple(int(r) for r in ratios)
    base = PRESETS[BASE_FEATURES]
    hop = math.prod(ratios)
    config = MelGANConfig(num_mels=n_mels, ratios=ratios, ngf=ngf,
                          n_residual_layers=n_residual_layers, hop_length=hop,
                          sample_rate=base.sample_rate)
    check_config_size(config, "MelGAN generator")
    features = base if (n_mels, hop) == (base.n_mels, base.hop_length) \
        else base.replace(n_mels=n_mels, hop_length=hop)
    state = convert_state_dict(load_official_state(path))
    model = MelGANGenerator(config)
    load_into(model, state, os.fspath(path))
    return model.eval(), config, features


__all__ = ["convert_state_dict", "import_melgan_official", "load_official_state"]
