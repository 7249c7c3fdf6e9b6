"""Import checkpoints of the official DiffWave (lmnt-com/diffwave).

Its learner saves ``weights-STEP.pt`` holding ``{"step", "model": state_dict, "optimizer",
"params": dict, "scaler"}``: plain containers of tensors and numbers, read here with
``torch.load(weights_only=True)`` (a file that needs more, such as a pickled module, is
refused in one line). A bare state dict is accepted too, with the hyperparameters given
by the caller.

The official network is the paper's (see :mod:`wavegen.models.diffwave`); its parameters
map onto :class:`~wavegen.models.diffwave.DiffWave` one to one except for three details:

* its gated unit is ``sigmoid(first half) * tanh(second half)`` of the dilated conv's output
  and wavegen's is ``tanh(first half) * sigmoid(second half)``: the two halves of the
  dilated conv's and of the conditioner projection's output channels are swapped;
* its conditioner projection has a bias, which is added to the dilated conv's output
  anyway: it is folded into the dilated conv's bias (wavegen's projection has none);
* its one ``C -> 2C`` output projection is wavegen's residual (first half) and skip (second
  half) 1x1 convs.

Diffusion: the official chain is ``len(noise_schedule)`` steps of betas that are a
``linspace`` (the paper's 50 steps of 1e-4 .. 0.05); step ``n`` (0-based) has the
cumulative alpha that the core's ``linear`` schedule reaches at ``t = (n + 1) / N``, and the
step embedding is the paper's table (``DiffWaveConfig.embedding_steps = N``). The network
predicts eps. The paper's fast inference schedule (``inference_noise_schedule``) is stored
as the bundle's time grid for its number of steps, so ``--steps 6`` follows it.

Features: the official preprocessing is torchaudio's ``MelSpectrogram`` (centred reflect
padding, periodic Hann window of ``4 hop``, HTK mel scale without normalisation from 20 Hz
to Nyquist, magnitude, ``normalized=True``: the STFT divided by the window's L2 norm ``g``)
followed by ``clamp(((20 log10 max(mel, 1e-5)) - 20 + 100) / 100, 0, 1)``. In wavegen's
terms: ``log="db"`` with ``log_clamp = 1e-5 g`` (the clamp applies before the division by
``g``, which becomes ``level_offset = 80 - 20 log10 g``), ``level_scale = 0.01``, clamped to
[0, 1]. The official script divides torchaudio's samples by 32767.5, which is right only
for the old torchaudio that returned integer-valued samples; wavegen's audio is in [-1, 1].
"""

from __future__ import annotations

import math
import os
from typing import Any

import torch

from wavegen.audio.features import FeatureConfig
from wavegen.checkpoint import load_pickle_free
from wavegen.diffusion.fast_schedules import times_from_betas
from wavegen.diffusion.process import DiffusionProcess
from wavegen.diffusion.schedules import ScheduleConfig
from wavegen.errors import CheckpointError
from wavegen.importers.common import UNPICKLE_ADVICE, first_keys, load_strict
from wavegen.models.diffwave import DiffWave, DiffWaveConfig
from wavegen.models.size import check_config_size

#: The official params.py defaults (the published 22.05 kHz LJSpeech model's settings).
OFFICIAL_PARAMS: dict[str, Any] = {
    "sample_rate": 22050, "n_mels": 80, "n_fft": 1024, "hop_samples": 256,
    "residual_layers": 30, "residual_channels": 64, "dilation_cycle_length": 10,
    "unconditional": False, "noise_schedule": [1e-4 + i * (0.05 - 1e-4) / 49 for i in range(50)],
    "inference_noise_schedule": [0.0001, 0.001, 0.01, 0.05, 0.2, 0.5],
}


def official_features(params: dict[str, Any]) -> FeatureConfig:
    """The FeatureConfig of the official preprocessing for ``params`` (module doc)."""
    sample_rate, hop, n_fft = (int(params["sample_rate"]), int(params["hop_samples"]),
                               int(params["n_fft"]))
    win = 4 * hop
    if win > n_fft:
        raise CheckpointError(f"official DiffWave params: window 4 x hop_samples = {win} exceeds "
                              f"n_fft {n_fft}")
    n = torch.arange(win, dtype=torch.float64)
    gain = math.sqrt(float((0.5 - 0.5 * torch.cos(2 * math.pi * n / win)).pow(2).sum()))
    return FeatureConfig(
        sample_rate=sample_rate, n_fft=n_fft, hop_length=hop, win_length=win, n_mels=int(params["n_mels"]),
        fmin=20.0, fmax=sample_rate / 2.0, mel_scale="htk", mel_norm=None, power=1.0, log="db",
        log_clamp=1e-5 * gain, padding="center", pad_mode="reflect",
        level_offset=80.0 - 20.0 * math.log10(gain), level_scale=0.01, level_floor=0.0,
        level_ceiling=1.0, name="diffwave-official")


def _linear_betas(betas: list[float]) -> tuple[float, float]:
    """``(first, last)`` of a linspace schedule, else a CheckpointError."""
    count = len(betas)
    if count < 2:
        raise CheckpointError(f"official DiffWave params: noise_schedule needs >= 2 betas, got {count}")
    first, last = float(betas[0]), float(betas[-1])
    for i, beta in enumerate(betas):
        expected = first + i * (last - first) / (count - 1)
        if abs(float(beta) - expected) > 1e-6 * max(abs(expected), 1e-4):
            raise CheckpointError("official DiffWave params: noise_schedule is not a linspace; "
                                  "only linear schedules (the paper's) can be imported")
    return first, last


def _convert(state: dict[str, torch.Tensor], layers: int, channels: int,
             conditioned: bool) -> dict[str, torch.Tensor]:
    """Official parameter names and layouts -> :class:`DiffWave`'s (module doc)."""
    c = channels

    def swap(tensor: torch.Tensor) -> torch.Tensor:
        return torch.cat([tensor[c:2 * c], tensor[:c]], dim=0)

    def get(key: str) -> torch.Tensor:
        if key not in state:
            raise CheckpointError(f"not an official DiffWave state dict: no {key!r} (it has "
                                  f"{first_keys(list(state))})")
        return state[key]

    out = {}
    for name in ("input_projection", "skip_projection", "output_projection"):
        out[f"{name}.weight"], out[f"{name}.bias"] = get(f"{name}.weight"), get(f"{name}.bias")
    for ours, theirs in (("embedding.0", "diffusion_embedding.projection1"),
                         ("embedding.2", "diffusion_embedding.projection2")):
        out[f"{ours}.weight"], out[f"{ours}.bias"] = get(f"{theirs}.weight"), get(f"{theirs}.bias")
    if conditioned:
        for k in (0, 1):
            theirs = f"spectrogram_upsampler.conv{k + 1}"
            out[f"upsampler.stages.{k}.weight"] = get(f"{theirs}.weight")
            out[f"upsampler.stages.{k}.bias"] = get(f"{theirs}.bias")
    for i in range(layers):
        theirs, ours = f"residual_layers.{i}", f"layers.{i}"
        out[f"step_projections.{i}.weight"] = get(f"{theirs}.diffusion_projection.weight")
        out[f"step_projections.{i}.bias"] = get(f"{theirs}.diffusion_projection.bias")
        bias = get(f"{theirs}.dilated_conv.bias")
        if conditioned:
            out[f"{ours}.local_projection.weight"] = swap(get(f"{theirs}.conditioner_projection.weight"))
            bias = bias + get(f"{theirs}.conditioner_projection.bias")
        out[f"{ours}.conv.weight"] = swap(get(f"{theirs}.dilated_conv.weight"))
        out[f"{ours}.conv.bias"] = swap(bias)
        weight, out_bias = get(f"{theirs}.output_projection.weight"), get(f"{theirs}.output_projection.bias")
        out[f"{ours}.residual.weight"], out[f"{ours}.skip.weight"] = weight[:c], weight[c:]
        out[f"{ours}.residual.bias"], out[f"{ours}.skip.bias"] = out_bias[:c], out_bias[c:]
    known = {f"residual_layers.{i}.{part}" for i in range(layers)
             for part in ("dilated_conv.weight", "dilated_conv.bias", "diffusion_projection.weight",
                          "diffusion_projection.bias", "conditioner_projection.weight",
                          "conditioner_projection.bias", "output_projection.weight",
                          "output_projection.bias")}
    known |= {k for k in state if not k.startswith("residual_layers.")}
    stray = [k for k in state if k not in known]
    if stray:
        raise CheckpointError(f"not an official DiffWave state dict of {layers} layers: "
                              f"unexpected {first_keys(stray)}")
    return out


def import_diffwave_official(checkpoint: str | os.PathLike,
                             params: dict[str, Any] | None = None
                             ) -> tuple[DiffWave, DiffWaveConfig, FeatureConfig, DiffusionProcess]:
    """Load an official DiffWave checkpoint as ``(model, config, features, process)``.

    Args:
        checkpoint: ``weights-STEP.pt`` (a dict with ``"model"`` and ``"params"``) or a bare
            state dict.
        params: hyperparameters overriding the checkpoint's ``params`` (and
            :data:`OFFICIAL_PARAMS` for a bare state dict).
    """
    path = os.fspath(checkpoint)
    data = load_pickle_free(path, "DiffWave checkpoint", UNPICKLE_ADVICE)
    if not isinstance(data, dict):
        raise CheckpointError(f"{path}: not a DiffWave checkpoint (a {type(data).__name__})")
    if "model" in data and isinstance(data["model"], dict):
        state, stored = data["model"], data.get("params") or {}
        if not isinstance(stored, dict):
            raise CheckpointError(f"{path}: 'params' is a {type(stored).__name__}, not a dict")
    else:
        state, stored = data, {}
    if not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise CheckpointError(f"{path}: the model state holds non-tensors")
    state = {k.removeprefix("module."): v.float() for k, v in state.items()
             if k.removeprefix("module.") != "diffusion_embedding.embedding"}
    merged = {**OFFICIAL_PARAMS, **stored, **(params or {})}
    conditioned = not bool(merged["unconditional"])
    betas = [float(b) for b in merged["noise_schedule"]]
    first, last = _linear_betas(betas)
    try:
        config = DiffWaveConfig(
            residual_layers=int(merged["residual_layers"]),
            residual_channels=int(merged["residual_channels"]),
            dilation_cycle=int(merged["dilation_cycle_length"]),
            conditioning="mel" if conditioned else "none", n_mels=int(merged["n_mels"]),
            hop_length=int(merged["hop_samples"]), sample_rate=int(merged["sample_rate"]),
            upsample_factors=(16, 16) if conditioned else None,
            embedding_steps=len(betas))
    except (TypeError, ValueError) as exc:
        raise CheckpointError(f"{path}: bad DiffWave params ({exc})") from None
    check_config_size(config, "DiffWave")
    if conditioned and config.hop_length != 256:
        raise CheckpointError(f"{path}: the official upsampler is two stages of 16 (hop 256), "
                              f"but params say hop_samples {config.hop_length}")
    model = DiffWave(config)
    load_strict(model, _convert(state, config.residual_layers, config.residual_channels,
                                conditioned), path, "DiffWave",
                f"{len(state)} tensors, e.g. {first_keys(list(state))}")
    model.eval()
    schedule = ScheduleConfig(kind="linear", num_steps=len(betas), beta_start=first,
                              beta_end=last)
    process = DiffusionProcess(schedule=schedule, parameterization="eps", sampler="ddpm",
                               ddpm_variance="posterior", sampler_steps=len(betas))
    fast = merged.get("inference_noise_schedule")
    if fast:
        process = process.with_time_grid(times_from_betas(process.make_schedule(),
                                                          [float(b) for b in fast]))
    features = official_features(merged) if conditioned else None
    return model, config, features, process


__all__ = ["OFFICIAL_PARAMS", "import_diffwave_official", "official_features"]
