"""``wavegen vocode``: mel -> audio with a vocoder bundle or manifest, one file or whole folders.

A thin verb over :mod:`wavegen.inference`. It takes models and pipelines
(:mod:`wavegen.inference.manifest`) whose input is a mel and whose stages are
feed-forward (GAN vocoders) or noise-driven (flows, diffusion); a sample-level model is
refused with a pointer to ``wavegen sample``. Inputs are either audio (copy-synthesis:
analysed with the bundle's own FeatureConfig, then vocoded) or log-mel arrays saved with
``numpy.save`` as ``[n_mels, frames]``, whose shape and values are checked against the
bundle's features (a mismatch is refused, never vocoded into noise). Each output is
streamed chunk by chunk into a temporary file that is renamed into place when complete
(flat memory for long inputs; no partial files). In a folder job a bad input is reported
once (path + reason) and skipped; the job then exits non-zero.
"""

from __future__ import annotations

import dataclasses
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from wavegen.audio.io import audio_writer
from wavegen.bias_denoiser import BiasDenoiser
from wavegen.data.audio_folder import AUDIO_SUFFIXES
from wavegen.errors import UsageError, WavegenError
from wavegen.inference import InferenceOptions, InputRequest, Pipeline, load
from wavegen.inference.conditioning import Conditioning
from wavegen.models.protocols import FEED_FORWARD, NOISE_DRIVEN
from wavegen.utils.formatting import format_ratio

#: Model kinds that vocode a mel without an autoregressive loop.
VOCODER_KINDS = (FEED_FORWARD, NOISE_DRIVEN)


@dataclass
class VocodeReport:
    """One finished file: output path, audio seconds, model seconds, and the network
    evaluations of a diffusion vocoder (None for the others)."""

    output: Path
    audio_seconds: float
    seconds: float
    evaluations: int | None = None

    @property
    def real_time_factor(self) -> float:
        return self.seconds / max(self.audio_seconds, 1e-12)


def check_vocoder(pipeline: Pipeline) -> None:
    """UsageError unless ``pipeline`` turns a mel into audio with vocoder kinds only."""
    other = next((stage for stage in pipeline.stages if stage.kind not in VOCODER_KINDS), None)
    if other is None and pipeline.input.kind == "mel" and pipeline.output.kind == "audio":
        return
    if pipeline.single:
        raise UsageError(f"{pipeline.source}: family {pipeline.stages[0].info.family} is not a "
                         f"mel -> waveform vocoder (use `wavegen sample`)")
    reason = (f"stage {other.name} is {other.kind}" if other is not None
              else f"it takes {pipeline.input.describe()}")
    raise UsageError(f"{pipeline.source}: this pipeline is not a mel -> waveform vocoder "
                     f"({reason}; use `wavegen sample`)")


def load_vocoder(target: str | os.PathLike, options: InferenceOptions) -> Pipeline:
    """The bundle or manifest at ``target`` ready to vocode (see :func:`check_vocoder`), with
    ``options`` checked by :meth:`Pipeline.check_options`."""
    pipeline = load(target, options)
    check_vocoder(pipeline)
    pipeline.check_options(options)
    return pipeline


def pipeline_denoiser(pipeline: Pipeline, options: InferenceOptions) -> BiasDenoiser:
    """The :class:`~wavegen.bias_denoiser.BiasDenoiser` of a mel -> audio ``pipeline``: its
    output for a silent mel of its own front-end, run with ``options`` as the real input
    will be (a flow at the same sigma: its line tones grow with the latent noise, so a bias
    measured at sigma 0 would miss most of them)."""
    quiet = dataclasses.replace(options, progress=False)

    def vocoder(mel):
        return pipeline.run(Conditioning("mel", mel), quiet).audio

    return BiasDenoiser.from_vocoder(vocoder, pipeline.input.features)


def vocode_file(pipeline: Pipeline, source: str | os.PathLike, output: str | os.PathLike,
                kind: str, options: InferenceOptions,
                denoise: tuple[BiasDenoiser, float] | None = None) -> VocodeReport:
    """Vocode one ``source`` (``kind`` ``"wav"`` or ``"mel"``) into ``output`` atomically,
    optionally through a bias denoiser ``(denoiser, strength)`` (streamed, flat memory).

    The input is read and checked before anything is created: a bad input leaves no file
    and no folder behind. The output's folder is created when needed."""
    request = InputRequest(wav=source) if kind == "wav" else InputRequest(mel=source)
    conditioning = pipeline.conditioning(request)
    Path(output).parent.mkdir(parents=True, exist_ok=True)
    with audio_writer(output, pipeline.sample_rate) as write:
        stream = None
        if denoise is not None:
            stream = denoise[0].stream(denoise[1], lambda piece: write(piece[0].clamp(-1.0, 1.0)))
        result = pipeline.run(conditioning, options,
                              sink=stream or (lambda piece: write(piece[0])))
        if stream is not None:
            stream.close()
    return VocodeReport(Path(output), result.audio_seconds, result.seconds, result.evaluations)


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


def run_jobs(pipeline: Pipeline, jobs: list[tuple[Path, Path]], kind: str,
             options: InferenceOptions, report: Callable[[str], None] = print,
             warn: Callable[[str], None] | None = None,
             denoise: tuple[BiasDenoiser, float] | None = None
             ) -> tuple[list[VocodeReport], list[tuple[Path, str]]]:
    """Vocode every job (through ``denoise`` if given, see :func:`vocode_file`). A single
    job's error propagates; in a folder job each failure is reported once (``warn``, stderr
    by default) and skipped."""
    warn = warn or (lambda text: print(text, file=sys.stderr))
    done, failed = [], []
    for source, output in jobs:
        try:
            item = vocode_file(pipeline, source, output, kind, options, denoise)
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
               f"(real-time factor {format_ratio(item.real_time_factor)})"
               + ("" if item.evaluations is None else f"; NFE {item.evaluations}"))
    return done, failed


__all__ = ["VocodeReport", "VOCODER_KINDS", "check_vocoder", "load_vocoder", "pipeline_denoiser",
           "plan_jobs", "run_jobs", "vocode_file"]
