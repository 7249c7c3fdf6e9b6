"""``wavegen tune-steps``: find few-step sampling schedules for a diffusion bundle, store them.

WaveGrad (Chen et al. 2021, section 4) samples with as few as 6 steps by searching, once per
trained model, for the noise schedule whose output is closest to a validation clip. This
runs :func:`wavegen.diffusion.fast_schedules.search_time_grid` for each requested step
budget on a clip the user gives (a recording the model did not train on) and writes the
winning time grids into the bundle's ``config.json`` (``process.time_grids``), so that
``wavegen vocode BUNDLE --steps 6`` follows the searched schedule from then on.

Only ``config.json`` is rewritten, atomically; the weights are not touched.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass

import torch

from wavegen.checkpoint import CONFIG_FILE, load_bundle, resolve_bundle_path
from wavegen.diffusion.fast_schedules import SearchResult, search_time_grid
from wavegen.diffusion.process import DiffusionProcess
from wavegen.errors import UsageError
from wavegen.utils.atomic import atomic_write_text, storage_errors_named


@dataclass
class TuneReport:
    """What :func:`tune_steps` found: one search result per step budget, the clip used."""

    results: list[SearchResult]
    clip_seconds: float
    written: bool


def _clip(path: str, features, seconds: float, offset: float) -> tuple[torch.Tensor, torch.Tensor]:
    """``(audio [1, 1, T], log-mel [1, M, T / hop])`` of a whole number of frames."""
    from wavegen.audio.io import load_audio
    from wavegen.audio.spectral import LogMelSpectrogram

    audio, _ = load_audio(path, sample_rate=features.sample_rate, mono=True, offset=offset,
                          duration=seconds)
    hop = features.hop_length
    frames = audio.shape[-1] // hop
    if frames < 2:
        raise UsageError(f"{path}: the clip is {audio.shape[-1]} samples long from {offset:g} s; "
                         f"a search needs at least 2 frames ({2 * hop} samples)")
    audio = audio[:, :frames * hop]
    if float(audio.abs().max()) < 1e-4:
        raise UsageError(f"{path}: the clip is silent from {offset:g} s; choose a clip with "
                         f"music in it (--offset)")
    if audio.shape[-1] < features.n_fft:
        raise UsageError(f"{path}: the clip is shorter than one FFT ({features.n_fft} samples)")
    with torch.no_grad():
        mel = LogMelSpectrogram(features)(audio)[:, :, :frames]
    return audio[None], mel


def tune_steps(bundle: str | os.PathLike, clip: str, steps: list[int], *, seconds: float = 1.0,
               offset: float = 0.0, metric: str = "log_mel_l1", sampler: str | None = None,
               seed: int = 0, use_ema: bool = True, write: bool = True) -> TuneReport:
    """Search a schedule of each of ``steps`` steps for ``bundle`` on ``clip`` and (with
    ``write``) store the winners in the bundle's ``config.json``.

    Args:
        bundle: a diffusion bundle conditioned on log-mel (the clip's mel drives it).
        clip: an audio file; ``seconds`` of it from ``offset`` are used.
        steps: step budgets, e.g. ``[6, 12, 25]``.
        metric: ``"log_mel_l1"`` or ``"mrstft"`` (see :func:`search_time_grid`).
        sampler: the sampler the grids are searched (and meant) for; None = the bundle's.
    """
    if not steps or any(n < 1 for n in steps):
        raise UsageError(f"--steps needs positive step counts, got {steps}")
    if not seconds > 0:
        raise UsageError(f"--seconds must be > 0, got {seconds}")
    root = resolve_bundle_path(bundle)
    model, info = load_bundle(root, use_ema=use_ema)
    if info.process is None:
        raise UsageError(f"{root}: not a diffusion bundle (its config.json has no process); "
                         f"tune-steps searches diffusion sampling schedules")
    if info.conditioning != "mel" or info.features is None:
        raise UsageError(f"{root}: tune-steps needs a mel-conditioned diffusion bundle (this one "
                         f"is conditioned on {info.conditioning})")
    process = DiffusionProcess.from_dict(dict(info.process), "process")
    audio, mel = _clip(clip, info.features, seconds, offset)
    model.eval()
    results = []
    for n in steps:
        result = search_time_grid(process, model, audio, n, local=mel, features=info.features,
                                  metric=metric, seed=seed, sampler=sampler)
        results.append(result)
        process = process.with_time_grid(result.times)
    if write:
        config_path = root / CONFIG_FILE
        data = json.loads(config_path.read_text(encoding="utf-8"))
        data["process"] = process.to_dict()
        with storage_errors_named(config_path):
            atomic_write_text(config_path, json.dumps(data, indent=2, sort_keys=True) + "\n")
    return TuneReport(results, audio.shape[-1] / info.features.sample_rate, write)


__all__ = ["TuneReport", "tune_steps"]
