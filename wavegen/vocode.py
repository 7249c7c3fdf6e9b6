"""``wavegen vocode``: mel -> audio with a trained vocoder bundle, one file or whole folders.

Inputs are either audio (copy-synthesis: analysed with the bundle's own FeatureConfig, then
vocoded) or log-mel arrays saved with ``numpy.save`` as ``[n_mels, frames]``, whose shape is
checked against the bundle's features (a mismatch is refused, never vocoded into noise).
Each output is streamed chunk by chunk into a temporary file that is renamed into place
when complete (flat memory for long inputs; no partial files). In a folder job a bad input
is reported once (path + reason) and skipped; the job then exits non-zero.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import torch

from wavegen.audio.io import audio_writer
from wavegen.audio.mel_file import log_mel_of_audio, read_log_mel
from wavegen.checkpoint import BundleInfo, load_bundle
from wavegen.data.audio_folder import AUDIO_SUFFIXES
from wavegen.errors import UsageError, WavegenError
from wavegen.models.registry import get_family
from wavegen.utils.formatting import format_ratio
from wavegen.vocoder import CHUNK_FRAMES, OVERLAP_FRAMES, Vocoder


@dataclass
class VocodeOptions:
    """How to run the vocoder (see :class:`wavegen.vocoder.Vocoder`)."""

    device: str = "cpu"
    bf16: bool = False
    compile: bool = False
    chunk_frames: int = CHUNK_FRAMES
    overlap_frames: int = OVERLAP_FRAMES
    use_ema: bool = True


@dataclass
class VocodeReport:
    """One finished file: output path, audio seconds, generator seconds."""

    output: Path
    audio_seconds: float
    seconds: float

    @property
    def real_time_factor(self) -> float:
        return self.seconds / max(self.audio_seconds, 1e-12)


def load_vocoder(bundle: str | os.PathLike, options: VocodeOptions) -> tuple[Vocoder, BundleInfo]:
    """The bundle's generator ready for inference; UsageError if it is not a vocoder."""
    model, info = load_bundle(bundle, use_ema=options.use_ema, device=options.device)
    if not get_family(info.family).vocoder:
        raise UsageError(f"{bundle}: family {info.family} is not a mel -> waveform vocoder "
                         f"(use `wavegen sample`)")
    if info.features is None:
        raise UsageError(f"{bundle}: a vocoder bundle without a FeatureConfig")
    return Vocoder(model, info.features, options.device, options.bf16, options.compile), info


def read_mel(path: str | os.PathLike, vocoder: Vocoder) -> torch.Tensor:
    """A ``[n_mels, frames]`` .npy file, checked against the vocoder's features
    (:func:`wavegen.audio.mel_file.read_log_mel`)."""
    return read_log_mel(path, vocoder.features)


def analyse(path: str | os.PathLike, vocoder: Vocoder) -> torch.Tensor:
    """Log-mel ``[n_mels, frames]`` of an audio file with the vocoder's own features."""
    return log_mel_of_audio(path, vocoder.features)


def vocode_file(vocoder: Vocoder, source: str | os.PathLike, output: str | os.PathLike,
                kind: str, options: VocodeOptions) -> VocodeReport:
    """Vocode one ``source`` (``kind`` ``"wav"`` or ``"mel"``) into ``output`` atomically.

    The input is read and checked before anything is created: a bad input leaves no file
    and no folder behind. The output's folder is created when needed."""
    mel = analyse(source, vocoder) if kind == "wav" else read_mel(source, vocoder)
    rate = vocoder.features.sample_rate
    Path(output).parent.mkdir(parents=True, exist_ok=True)
    with audio_writer(output, rate) as write:
        result = vocoder(mel, options.chunk_frames, options.overlap_frames,
                         sink=lambda piece: write(piece[0]))
    audio_seconds = mel.shape[-1] * vocoder.hop / rate
    return VocodeReport(Path(output), audio_seconds, result.seconds)


def plan_jobs(source: str, output: str, kind: str) -> list[tuple[Path, Path]]:
    """(input, output) pairs: one file, or every matching file under a folder."""
    src = Path(source)
    if not src.exists():
        raise UsageError(f"{source}: no such file or folder")
    if src.is_file():
        out = Path(output)
        if out.is_dir():
            out = out / (src.stem + ".wav")
        if not out.parent.is_dir():
            raise UsageError(f"cannot write {output}: its folder does not exist")
        return [(src, out)]
    suffixes = {".npy"} if kind == "mel" else AUDIO_SUFFIXES
    files = sorted(p for p in src.rglob("*") if p.is_file() and p.suffix.lower() in suffixes)
    if not files:
        raise UsageError(f"{source}: no {'.npy' if kind == 'mel' else 'audio'} files inside")
    out_root = Path(output)
    if out_root.exists() and not out_root.is_dir():
        raise UsageError(f"{output}: a folder input needs an output folder")
    return [(f, out_root / f.relative_to(src).with_suffix(".wav")) for f in files]


def run_jobs(vocoder: Vocoder, jobs: list[tuple[Path, Path]], kind: str, options: VocodeOptions,
             report=print, warn=None) -> tuple[list[VocodeReport], list[tuple[Path, str]]]:
    """Vocode every job. A single job's error propagates; in a folder job each failure is
    reported once (``warn``, stderr by default) and skipped."""
    import sys

    warn = warn or (lambda text: print(text, file=sys.stderr))
    done, failed = [], []
    for source, output in jobs:
        try:
            item = vocode_file(vocoder, source, output, kind, options)
        except WavegenError as exc:
            if len(jobs) == 1:
                raise
            message = str(exc)
            failed.append((source, message))
            warn("skipped " + (message if message.startswith(str(source))
                               else f"{source}: {message}"))
            continue
        done.append(item)
        report(f"wrote {item.output}: {item.audio_seconds:.2f} s in {item.seconds:.2f} s "
               f"(real-time factor {format_ratio(item.real_time_factor)})")
    return done, failed


__all__ = ["VocodeOptions", "VocodeReport", "load_vocoder", "read_mel", "analyse", "vocode_file",
           "plan_jobs", "run_jobs"]
