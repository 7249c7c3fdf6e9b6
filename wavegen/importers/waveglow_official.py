"""Import checkpoints of the official WaveGlow (NVIDIA/waveglow).

The published checkpoints (``waveglow_256channels_universe_v5.pt`` ...) and those the
official ``train.py`` writes are ``torch.save({"model": <WaveGlow module>, "iteration",
"optimizer", "learning_rate"})``: the *whole pickled module*, of classes ``glow.WaveGlow``,
``glow.WN`` and ``glow.Invertible1x1Conv`` built from ``torch.nn`` convolutions with the
old weight-norm hooks, in torch's legacy or zip format. Unpickling that normally imports
``glow`` and runs whatever the file names; here it never does. A file that is plain data
(an official ``model.state_dict()``, bare or under ``"model"`` / ``"state_dict"``) is read
with ``torch.load(weights_only=True)``; anything else goes to
:func:`~wavegen.importers.common.load_restricted`, which knows only the classes listed in
:data:`OFFICIAL_CLASSES`, loads their instances as inert stand-ins (their attribute dicts,
no code of theirs or of ``torch.nn`` runs), rebuilds tensors with torch's own functions and
refuses every other global in one line before anything is called. The stand-ins give the
official state dict (:func:`~wavegen.importers.common.module_tensors`) and the
hyperparameters they store (``n_flows``, ``n_group``, ``n_early_every``, ``n_early_size``,
the WNs' ``n_layers`` / ``n_channels``, the upsampler's ``stride`` and ``kernel_size``).
A plain state dict gives the same from its shapes, except the upsampler's stride (the hop),
which it does not record: ``hop_length`` (default 256, the official value).

Layout. :class:`~wavegen.models.waveglow.WaveGlow` follows the official conventions (audio
squeeze ``unfold(1, g, g)``, mel squeeze channel ``c g + j``, the first ``n_early_size``
channels leave before flow ``k`` when ``k % n_early_every == 0 and k > 0``, the coupling
conditions on the first half and its WN gives the shift then the log-scale, the gate is
``tanh(first C) * sigmoid(last C)``, the transposed-conv upsampler trimmed to ``F hop``),
so the parameters map one to one::

    upsample.*                          -> upsample.*
    convinv.k.conv.weight [c, c, 1]     -> flows.k.invertible.weight [c, c]
    WN.k.start / end                    -> flows.k.coupling.net.start / end
    WN.k.cond_layer                     -> flows.k.coupling.net.cond
    WN.k.in_layers.i                    -> flows.k.coupling.net.blocks.i.conv
    WN.k.res_skip_layers.i rows [0, C)  -> ...blocks.i.residual   (i < n_layers - 1)
                           rows [C, 2C) -> ...blocks.i.skip       (the last layer: all rows)

The older layout with one weight-normalised ``cond_layers.i`` (``2C`` outputs) per layer
instead of ``cond_layer`` is accepted: its rows are concatenated (weight norm is per output
channel, so concatenating ``g`` and ``v`` row-wise is exact), as the official
``convert_model.py`` does. Weight-norm hooks' ``weight_g`` / ``weight_v`` become wavegen's
parametrisations; convolutions whose weight norm was removed (``remove_weightnorm``, plain
``weight``) become ``g = |w|``, ``v = w``. The first release's ``res_layers`` /
``skip_layers`` (``glow_old.py``, whose couplings alternate halves) cannot be imported.

Features. The official front-end is Tacotron 2's ``TacotronSTFT`` (``mel2samp.py`` with the
official ``config.json``): 22.05 kHz, n_fft = window = 1024, hop 256, periodic Hann window,
reflect padding of ``n_fft / 2`` on both sides (centred frames, ``1 + T // hop`` of them),
magnitude ``sqrt(re^2 + im^2)`` without an epsilon, librosa's Slaney-scale mel filters with
Slaney normalisation (80 bands, 0 to 8 kHz), natural log of ``clamp(x, 1e-5)``. This is the
feature preset ``tacotron2-22k`` (:data:`TACOTRON2_FEATURES`): ``hifigan-22k`` has the same
filters and log but pads ``(n_fft - hop) / 2`` without centring and adds 1e-9 under the
square root, which shifts every frame by 384 samples; a model
with another hop, band count or rate gets the same front-end with those changed.
"""

from __future__ import annotations

import os
import re

import torch

from wavegen.audio.features import FeatureConfig, get_preset
from wavegen.errors import CheckpointError, ConfigError
from wavegen.importers.common import (TORCH_NN_CLASSES, PickledObject, convert_weight_norm_keys,
                                      first_keys, load_checkpoint, load_strict, module_tensors)
from wavegen.models.size import check_config_size
from wavegen.models.waveglow import WaveGlow, WaveGlowConfig

#: Classes a pickled official WaveGlow is made of (loaded as inert stand-ins).
OFFICIAL_CLASSES = ("glow.WaveGlow", "glow.WN", "glow.Invertible1x1Conv") + TORCH_NN_CLASSES

#: The official front-end (module docstring): Tacotron 2's mel at 22.05 kHz.
TACOTRON2_FEATURES = get_preset("tacotron2-22k")

DEFAULT_HOP = 256
DEFAULT_SAMPLE_RATE = 22050

#: Suffixes of a weight-normalised conv (after key conversion) and of a plain one.
_NORMED = ("parametrizations.weight.original0", "parametrizations.weight.original1", "bias")
_PLAIN = ("weight", "bias")
#: The official convs that carry weight norm (all of WN's but ``end``).
_NORMED_CONV = re.compile(r"WN\.\d+\.(start|cond_layer|cond_layers\.\d+|in_layers\.\d+|"
                          r"res_skip_layers\.\d+)\.")


def official_features(n_mels: int = 80, hop_length: int = DEFAULT_HOP,
                      sample_rate: int = DEFAULT_SAMPLE_RATE) -> FeatureConfig:
    """:data:`TACOTRON2_FEATURES` with the model's band count, hop and rate."""
    if (n_mels, hop_length, sample_rate) == (80, DEFAULT_HOP, DEFAULT_SAMPLE_RATE):
        return TACOTRON2_FEATURES
    return TACOTRON2_FEATURES.replace(n_mels=n_mels, hop_length=hop_length,
                                      sample_rate=sample_rate, name="waveglow-official")


# --------------------------------------------------------------------------- reading
def _declared_hyperparameters(model: PickledObject, where: str) -> dict[str, int]:
    """The hyperparameters a pickled ``glow.WaveGlow`` stores, under WaveGlowConfig's names."""
    def integer(owner: PickledObject | None, name: str) -> int | None:
        value = None if owner is None else owner.get(name)
        if isinstance(value, tuple) and len(value) == 1:  # a conv's stride, kernel_size
            value = value[0]
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, int):
            raise CheckpointError(f"{where}: the pickled {owner.pickled_name}.{name} is a "
                                  f"{type(value).__name__}, not an integer")
        return value

    def child(owner: PickledObject | None, name: str) -> PickledObject | None:
        modules = None if owner is None else owner.get("_modules")
        found = modules.get(name) if isinstance(modules, dict) else None
        return found if isinstance(found, PickledObject) else None

    first_wn = child(child(model, "WN"), "0")
    upsample = child(model, "upsample")
    found = {"n_flows": integer(model, "n_flows"), "n_group": integer(model, "n_group"),
             "n_early_every": integer(model, "n_early_every"),
             "n_early_size": integer(model, "n_early_size"),
             "wn_layers": integer(first_wn, "n_layers"),
             "wn_channels": integer(first_wn, "n_channels"),
             "hop_length": integer(upsample, "stride"),
             "upsample_kernel": integer(upsample, "kernel_size")}
    return {key: value for key, value in found.items() if value is not None}


def load_official(path: str | os.PathLike) -> tuple[dict[str, torch.Tensor], dict[str, int]]:
    """The official state dict of a checkpoint (keys as ``model.state_dict()`` names them,
    without a ``module.`` prefix) and the hyperparameters a pickled module declares (empty
    for a plain state dict). CheckpointError for anything else."""
    where = os.fspath(path)
    data = load_checkpoint(where, "WaveGlow checkpoint", OFFICIAL_CLASSES)
    model = data
    if isinstance(data, dict) and not _is_state_dict(data):
        model = next((data[key] for key in ("model", "state_dict") if key in data), data)
    if isinstance(model, PickledObject):
        if model.pickled_name != "glow.WaveGlow":
            raise CheckpointError(f"{where}: the checkpoint's model is a {model.pickled_name}, "
                                  f"not a glow.WaveGlow")
        return module_tensors(model, where), _declared_hyperparameters(model, where)
    if isinstance(model, dict) and _is_state_dict(model):
        return {str(k).removeprefix("module."): v for k, v in model.items()}, {}
    shown = first_keys([str(k) for k in model]) if isinstance(model, dict) \
        else f"a {type(model).__name__}"
    raise CheckpointError(f"{where}: not an official WaveGlow checkpoint (no glow.WaveGlow "
                          f"module or state dict with upsample and convinv weights; found {shown})")


def _is_state_dict(data: dict) -> bool:
    """Whether ``data`` looks like an official WaveGlow ``state_dict()``."""
    keys = {str(k).removeprefix("module.") for k in data}
    return {"upsample.weight", "convinv.0.conv.weight"} <= keys \
        and all(isinstance(v, torch.Tensor) for v in data.values())


# --------------------------------------------------------------------------- config
def _numbered(state: dict[str, torch.Tensor], pattern: str) -> int:
    """How many consecutive indices ``0, 1, ...`` the regex ``pattern`` (one group) finds."""
    found = {int(m.group(1)) for key in state if (m := re.fullmatch(pattern, key))}
    count = 0
    while count in found:
        count += 1
    return count


def _weight(state: dict[str, torch.Tensor], conv: str, where: str) -> torch.Tensor:
    """The weight (``v`` when weight-normalised) of the official conv ``conv``."""
    for key in (f"{conv}.parametrizations.weight.original1", f"{conv}.weight"):
        if key in state:
            if state[key].dim() != 3:
                raise CheckpointError(f"{where}: {key} has shape {list(state[key].shape)}, "
                                      f"not a Conv1d weight's")
            return state[key]
    raise CheckpointError(f"{where}: not an official WaveGlow checkpoint (no {conv} weight; it "
                          f"has {first_keys(list(state))})")


def config_from_state(state: dict[str, torch.Tensor], declared: dict[str, int], where: str,
                      hop_length: int | None = None,
                      sample_rate: int = DEFAULT_SAMPLE_RATE) -> WaveGlowConfig:
    """The :class:`WaveGlowConfig` of an official state dict (weight-norm keys converted).

    The shapes give every size; ``declared`` (a pickled module's attributes) must agree with
    them and gives the hop (the upsampler's stride). ``hop_length`` is the hop of a
    checkpoint that declares none (None: 256) and must equal a declared one.
    """
    n_flows = _numbered(state, r"convinv\.(\d+)\.conv\.weight")
    if n_flows == 0:
        raise CheckpointError(f"{where}: not an official WaveGlow checkpoint (no "
                              f"convinv.0.conv.weight; it has {first_keys(list(state))})")
    channels = [_weight(state, f"convinv.{k}.conv", where).shape[0] for k in range(n_flows)]
    drops = [(k, channels[k - 1] - channels[k]) for k in range(1, n_flows)
             if channels[k] != channels[k - 1]]
    # no channels leave (none asked, or the first exit lies past the last flow): any schedule
    # that says so will do, the module's own if it has one
    every, size = drops[0] if drops else (declared.get("n_early_every", n_flows),
                                          declared.get("n_early_size", 0))
    upsample = _weight(state, "upsample", where)
    start = _weight(state, "WN.0.start", where)
    inferred = {"n_flows": n_flows, "n_group": channels[0], "n_early_every": every,
                "n_early_size": size, "wn_layers": _numbered(state, r"WN\.0\.in_layers\.(\d+)\..*"),
                "wn_channels": start.shape[0],
                "wn_kernel": _weight(state, "WN.0.in_layers.0", where).shape[-1],
                "upsample_kernel": upsample.shape[-1], "n_mels": upsample.shape[0]}
    differ = [f"{key} {declared[key]} vs {value}" for key, value in inferred.items()
              if key in declared and declared[key] != value]
    if differ:
        raise CheckpointError(f"{where}: the pickled module's attributes disagree with its "
                              f"weights ({', '.join(differ)})")
    declared_hop = declared.get("hop_length")
    if hop_length is not None and declared_hop is not None and hop_length != declared_hop:
        raise CheckpointError(f"{where}: the checkpoint's upsampler has stride {declared_hop}, "
                              f"not the hop length {hop_length} asked for")
    hop = declared_hop or hop_length or DEFAULT_HOP
    try:
        config = WaveGlowConfig(**inferred, hop_length=hop, sample_rate=sample_rate,
                                upsample="transposed", lu=False, weight_norm=True)
    except ConfigError as exc:
        raise CheckpointError(f"{where}: {exc}") from None
    if config.flow_channels() != channels:
        raise CheckpointError(f"{where}: its flows have {channels} channels, which no early-output "
                              f"schedule gives (n_early_every {every}, n_early_size {size})")
    return config


# --------------------------------------------------------------------------- mapping
def convert_state_dict(state: dict[str, torch.Tensor], config: WaveGlowConfig,
                       where: str = "checkpoint") -> dict[str, torch.Tensor]:
    """An official state dict (weight-norm keys converted) -> :class:`WaveGlow`'s keys
    (module docstring); a key left over is a CheckpointError."""
    taken: set[str] = set()
    out: dict[str, torch.Tensor] = {}

    def take(conv: str, suffixes: tuple[str, ...]) -> dict[str, torch.Tensor]:
        entries = {}
        for suffix in suffixes:
            key = f"{conv}.{suffix}"
            if key not in state:
                raise CheckpointError(f"{where}: not an official WaveGlow state dict of "
                                      f"{config.n_flows} flows x {config.wn_layers} layers: no "
                                      f"{key!r}")
            taken.add(key)
            entries[suffix] = state[key]
        return entries

    def put(ours: str, entries: dict[str, torch.Tensor], rows: slice = slice(None)) -> None:
        for suffix, tensor in entries.items():
            out[f"{ours}.{suffix}"] = tensor[rows]

    c, layers = config.wn_channels, config.wn_layers
    put("upsample", take("upsample", _PLAIN))
    for k in range(config.n_flows):
        weight = take(f"convinv.{k}.conv", ("weight",))["weight"]
        if weight.dim() != 3 or weight.shape[-1] != 1:
            raise CheckpointError(f"{where}: convinv.{k}.conv.weight has shape "
                                  f"{list(weight.shape)}, not [c, c, 1]")
        out[f"flows.{k}.invertible.weight"] = weight[..., 0]
        theirs, ours = f"WN.{k}", f"flows.{k}.coupling.net"
        put(f"{ours}.start", take(f"{theirs}.start", _NORMED))
        put(f"{ours}.end", take(f"{theirs}.end", _PLAIN))
        if f"{theirs}.cond_layer.bias" in state:
            put(f"{ours}.cond", take(f"{theirs}.cond_layer", _NORMED))
        else:
            parts = [take(f"{theirs}.cond_layers.{i}", _NORMED) for i in range(layers)]
            put(f"{ours}.cond", {s: torch.cat([p[s] for p in parts]) for s in _NORMED})
        for i in range(layers):
            block = f"{ours}.blocks.{i}"
            put(f"{block}.conv", take(f"{theirs}.in_layers.{i}", _NORMED))
            res_skip = take(f"{theirs}.res_skip_layers.{i}", _NORMED)
            if i < layers - 1:
                put(f"{block}.residual", res_skip, slice(0, c))
                put(f"{block}.skip", res_skip, slice(c, 2 * c))
            else:
                put(f"{block}.skip", res_skip)
    stray = [key for key in state if key not in taken]
    if stray:
        first_release = any(".res_layers." in k or ".skip_layers." in k for k in stray)
        hint = (" (res_layers / skip_layers: the first release's layout, glow_old.py, whose "
                "couplings alternate halves; it cannot be imported)" if first_release else "")
        raise CheckpointError(f"{where}: not an official WaveGlow state dict of {config.n_flows} "
                              f"flows x {layers} layers: unexpected {first_keys(stray)}{hint}")
    return out


def _describe(config: WaveGlowConfig) -> str:
    return (f"checkpoint has {config.n_mels} mels, {config.n_flows} flows of n_group "
            f"{config.n_group}, WN {config.wn_layers} x {config.wn_channels}")


def import_waveglow_official(checkpoint: str | os.PathLike, hop_length: int | None = None,
                             sample_rate: int | None = None
                             ) -> tuple[WaveGlow, WaveGlowConfig, FeatureConfig]:
    """Load an official WaveGlow checkpoint without running code from it.

    Args:
        checkpoint: ``{"model": <pickled glow.WaveGlow>, ...}`` as ``train.py`` saves it and
            the published models are (legacy or zip format), or an official
            ``model.state_dict()``, bare or under ``"model"`` / ``"state_dict"``.
        hop_length: the upsampler's stride, which a state dict does not record (None: a
            pickled module's own, else 256); a pickled module's must equal it.
        sample_rate: audio rate in Hz (None: 22050, the official one); not in any checkpoint.

    Returns:
        ``(model, config, features)``: the :class:`WaveGlow` in eval mode with its weight
        norm in place, its config, and the front-end its mels must come from
        (:func:`official_features`).
    """
    where = os.fspath(checkpoint)
    sample_rate = DEFAULT_SAMPLE_RATE if sample_rate is None else int(sample_rate)
    state, declared = load_official(where)
    state = {k: v.float() for k, v in state.items()}  # fp16 checkpoints too
    normed = {k: v for k, v in state.items() if _NORMED_CONV.match(k)}
    state = {**{k: v for k, v in state.items() if k not in normed},
             **convert_weight_norm_keys(normed)}
    config = config_from_state(state, declared, where, hop_length, sample_rate)
    check_config_size(config, f"{where}: WaveGlow")
    try:
        features = official_features(config.n_mels, config.hop_length, sample_rate)
    except ConfigError as exc:
        raise CheckpointError(f"{where}: no official front-end for this model ({exc})") from None
    model = WaveGlow(config)
    load_strict(model, convert_state_dict(state, config, where), where, "WaveGlow",
                _describe(config))
    return model.eval(), config, features


__all__ = ["OFFICIAL_CLASSES", "TACOTRON2_FEATURES", "config_from_state", "convert_state_dict",
           "import_waveglow_official", "load_official", "official_features"]
