"""`wavegen sample`: audio from a trained bundle or pipeline manifest that can generate.

A thin verb over :mod:`wavegen.inference`. It takes sample-level models (the
autoregressive loop), noise-driven ones (flows, diffusion) and pipelines that end in audio
(:mod:`wavegen.inference.manifest`): a MIDI -> mel model and a vocoder, a prior and a
VQ-VAE decoder. A bare mel -> waveform vocoder is refused with a pointer to
``wavegen vocode``; a discrete autoencoder on its own cannot generate (its codes come from
a prior in a pipeline). What the inputs mean depends on the conditioning the bundle (or the
pipeline's first stage) records (:mod:`wavegen.inference.conditioning`):

* ``roll``: ``--midi FILE``, rendered to the piano roll the model was trained on;
* ``mel``: ``--wav FILE`` (analysed with the bundle's own front-end) or ``--mel FILE.npy``;
* none: ``--seconds`` of free-running audio, optionally continuing ``--prompt WAV``.

A hierarchy folder (``hierarchy.json``: a VQ-VAE and its priors, :mod:`wavegen.hierarchy`)
is sampled level by level by :func:`sample_hierarchy`: ``--seconds`` or ``--midi``,
``--prompt``, ``--level``, ``--save-codes``, ``--from-codes``, ``--window`` /
``--overlap``; it writes the finest level sampled to the output and every level's audio
beside it (``OUT.levelL.wav``).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import torch

from wavegen.errors import UsageError
from wavegen.inference import (InferenceOptions, InputRequest, Pipeline, SynthesisResult,
                               load)
from wavegen.models.protocols import FEED_FORWARD


def check_generator(pipeline: Pipeline) -> None:
    """UsageError unless ``sample`` can run ``pipeline``: it must make audio, and a
    feed-forward model fed a mel (a vocoder) belongs to ``wavegen vocode``."""
    first = pipeline.stages[0]
    if first.kind == FEED_FORWARD and first.input.kind == "mel":
        what = (f"family {first.info.family} is a mel -> waveform vocoder" if pipeline.single
                else f"its first stage ({first.name}, family {first.info.family}) is a mel -> "
                     f"waveform vocoder")
        raise UsageError(f"{pipeline.source}: {what}, not a generator: use `wavegen vocode`")
    if pipeline.output.kind != "audio":
        hint = ("; a prior's codes become audio in a hierarchy with its VQ-VAE (`wavegen "
                "hierarchy OUT --vqvae ... --priors ...`, then `wavegen sample OUT`)"
                if pipeline.output.kind == "codes" else "")
        raise UsageError(f"{pipeline.source}: makes {pipeline.output.describe()}, not "
                         f"audio{hint}")


def load_generator(target: str | os.PathLike, options: InferenceOptions) -> Pipeline:
    """The bundle or manifest at ``target``, loaded and checked by :func:`check_generator`
    (and ``options`` by :meth:`Pipeline.check_options`) before any input is read."""
    pipeline = load(target, options)
    check_generator(pipeline)
    pipeline.check_options(options)
    return pipeline


def sample(target: str | os.PathLike, request: InputRequest,
           options: InferenceOptions) -> tuple[SynthesisResult, Pipeline]:
    """Load ``target`` and generate according to ``request``: (result, pipeline)."""
    pipeline = load_generator(target, options)
    conditioning = pipeline.conditioning(request)
    return pipeline.run(conditioning, options), pipeline


@dataclass
class HierarchyRequest:
    """The hierarchy-only options of ``wavegen sample`` (see :func:`sample_hierarchy`)."""

    level: int | None = None
    save_codes: str | None = None
    from_codes: list[str] | None = None
    window: int | None = None
    overlap: int | None = None


def level_output(output: str | os.PathLike, level: int) -> Path:
    """``OUT.levelL.SUFFIX`` beside ``OUT.SUFFIX``: one level's audio."""
    output = Path(output)
    return output.with_name(f"{output.stem}.level{level}{output.suffix}")


def _read_from_codes(hierarchy, paths: list[str]) -> dict[int, torch.Tensor]:
    """Level -> codes of the codes files (or folders of them) given, checked against the
    hierarchy's VQ-VAE; one file per level."""
    from wavegen.codes import check_codes, parse_codes_file_name, read_codes

    files: list[Path] = []
    for name in paths:
        path = Path(name)
        if path.is_dir():
            files += sorted(p for p in path.iterdir() if parse_codes_file_name(p.name)
                            and not p.name.startswith("."))
        elif path.is_file():
            files.append(path)
        else:
            raise UsageError(f"--from-codes {name}: no such file or folder")
    if not files:
        raise UsageError(f"--from-codes {' '.join(paths)}: no codes files (NAME.levelL.npz)")
    levels: dict[int, torch.Tensor] = {}
    for path in files:
        codes = read_codes(path)
        check_codes(hierarchy.autoencoder, codes)
        if codes.level in levels:
            raise UsageError(f"--from-codes: two files of level {codes.level} ({path})")
        levels[codes.level] = codes.codes
    return levels


def sample_hierarchy(target: str | os.PathLike, request: InputRequest, options: InferenceOptions,
                     extra: HierarchyRequest, output: str | os.PathLike):
    """Sample the hierarchy at ``target`` and write its audio: the finest level sampled to
    ``output`` and every level to :func:`level_output`; with ``extra.save_codes``, every
    level's codes as codes files ``STEM.levelL.npz`` in that folder. Everything is read and
    checked before anything is written. Returns the :class:`~wavegen.hierarchy.HierarchyResult`."""
    from wavegen.audio.io import check_save_path, load_audio, save_audio
    from wavegen.codes import CodesFile, codes_file_name, write_codes
    from wavegen.hierarchy import DEFAULT_WINDOW, load_hierarchy
    from wavegen.sampling import SamplingOptions

    check_save_path(output)
    for name in ("wav", "mel"):
        if getattr(request, name):
            raise UsageError(f"--{name} is not used by a hierarchy (give --seconds or --midi)")
    if extra.save_codes and not Path(extra.save_codes).is_dir():
        raise UsageError(f"--save-codes {extra.save_codes}: not a folder")
    hierarchy = load_hierarchy(target, use_ema=options.use_ema, device=options.device)
    if options.guidance is not None and hierarchy.unguided() and options.warn is not None:
        options.warn(f"--cfg {options.guidance:g} applies only to priors trained with "
                     f"conditioning dropout; level(s) "
                     f"{', '.join(map(str, hierarchy.unguided()))} sample without guidance")
    roll = None
    if request.midi:
        if not hierarchy.takes_midi:
            raise UsageError(f"{target}: its top prior is unconditional; --midi is not used")
        from wavegen.inference.code_prior import prior_signals
        from wavegen.inference.conditioning import piano_roll_input

        roll = piano_roll_input(prior_signals(hierarchy.priors[0].config)[0], request)
    prompt = None
    if request.prompt:
        prompt, _ = load_audio(request.prompt, sample_rate=hierarchy.sample_rate, mono=True)
    from_codes = _read_from_codes(hierarchy, extra.from_codes) if extra.from_codes else None
    sampling = SamplingOptions(options.temperature, options.top_p, options.typical,
                               options.guidance, options.seed, progress=options.progress)
    window = DEFAULT_WINDOW if extra.window is None else extra.window
    result = hierarchy.sample(seconds=request.seconds, roll=roll, prompt=prompt,
                              from_codes=from_codes, stop_level=extra.level, options=sampling,
                              window=window or None, overlap=extra.overlap,
                              backend=options.backend)
    stem = Path(output).stem
    if extra.save_codes:
        ae = hierarchy.autoencoder
        for level, entry in result.levels.items():
            codes = CodesFile(entry.codes[0], level, entry.hop, ae.codebook_size,
                              ae.sample_rate, entry.codes.shape[-1] * entry.hop,
                              ae.fingerprint, f"sampled:{stem}")
            write_codes(Path(extra.save_codes) / codes_file_name(stem, level), codes)
    for level, entry in result.levels.items():
        save_audio(level_output(output, level), entry.audio[0], hierarchy.sample_rate)
    save_audio(output, result.finest.audio[0], hierarchy.sample_rate)
    return result


__all__ = ["HierarchyRequest", "check_generator", "level_output", "load_generator", "sample",
           "sample_hierarchy"]
