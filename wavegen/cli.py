"""The ``wavegen`` command line.

Each subcommand is a :class:`Command`: a name, a one-line help, a function that adds its
arguments to an ``argparse`` subparser and a function that runs it and returns the exit
status. Commands live in the :data:`COMMANDS` registry; a new one is a pair of functions
plus one :func:`register` call, nothing else changes.

Errors a user can cause (any :class:`~wavegen.errors.WavegenError`, and argparse usage
errors) print exactly one line, ``wavegen: error: <message>``, to stderr and exit with
status 2: no traceback, no usage dump, and no partial output file (outputs are written
atomically). Faults of the machine (disk full, read-only folder: a
:class:`~wavegen.errors.StorageError`, or an OSError with such an errno) print one line that
names the file and exit with status 1. Ctrl-C exits with status 130 and one line. Anything else is a bug and keeps
its traceback.

Heavy imports (torch, librosa, matplotlib) happen inside the commands, so ``--help``,
``--version`` and usage errors answer at once.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import sys
import time
from dataclasses import dataclass
from typing import Callable, Sequence

import wavegen
from wavegen.errors import StorageError, UsageError, WavegenError, is_storage_error, storage_error
from wavegen.utils.allocator import keep_freed_memory

PROG = "wavegen"
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130


# --------------------------------------------------------------------------- framework


@dataclass(frozen=True)
class Command:
    """One subcommand: ``add_arguments(parser)`` configures it, ``run(args)`` -> exit status."""

    name: str
    help: str
    add_arguments: Callable[[argparse.ArgumentParser], None]
    run: Callable[[argparse.Namespace], int]
    description: str | None = None


#: Subcommands by name, in the order ``wavegen --help`` lists them.
COMMANDS: dict[str, Command] = {}


def register(command: Command) -> Command:
    """Add ``command`` to :data:`COMMANDS` (a second command with the same name is a bug)."""
    if command.name in COMMANDS:
        raise ValueError(f"wavegen subcommand {command.name!r} is registered twice")
    COMMANDS[command.name] = command
    return command


class _ArgumentParser(argparse.ArgumentParser):
    """An ArgumentParser whose usage errors become :class:`UsageError`.

    argparse would print the usage block and call ``sys.exit(2)`` itself; raising instead
    lets :func:`main` report every error the same way, in one line. Subparsers inherit
    this class, so errors inside a subcommand's arguments are handled the same way.
    """

    def error(self, message: str):  # type: ignore[override]
        raise UsageError(f"{message} (see '{self.prog} --help')")


def build_parser() -> argparse.ArgumentParser:
    """The top-level parser with one subparser per registered command."""
    parser = _ArgumentParser(
        prog=PROG,
        description="wavegen: a PyTorch toolkit for generating raw audio waveforms.",
    )
    parser.add_argument("--version", action="version", version=f"{PROG} {wavegen.__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True,
                                       title="commands")
    for command in COMMANDS.values():
        sub = subparsers.add_parser(command.name, help=command.help,
                                    description=command.description or command.help)
        command.add_arguments(sub)
        sub.set_defaults(_run=command.run)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``wavegen`` command with ``argv`` (default ``sys.argv[1:]``); return the status."""
    try:
        try:
            args = build_parser().parse_args(argv)
        except SystemExit as exit_:  # --help and --version print, then exit 0
            return _exit_code(exit_.code)
        # Large tensors reuse freed heap memory instead of fresh, page-faulting mappings
        # (a third of a CPU training step otherwise; wavegen.utils.allocator).
        keep_freed_memory()
        return int(args._run(args) or 0)
    except WavegenError as e:
        _error_line(str(e))
        return e.exit_status
    except BrokenPipeError:  # (an OSError: caught before the clause below)
        # `wavegen info ... | head`: the reader went away. Point stdout at devnull so the
        # interpreter's final flush does not raise again, and exit quietly.
        with contextlib.suppress(OSError):
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())
        return 1
    except OSError as e:
        # A full disk, a read-only folder, a quota: the machine's fault, said in one line
        # that names the file (exit 1). Any other OSError is a bug and keeps its traceback.
        if not is_storage_error(e):
            raise
        _error_line(str(storage_error(e)))
        return StorageError.exit_status
    except KeyboardInterrupt:
        _error_line("interrupted", prefix="")
        return EXIT_INTERRUPTED


def _exit_code(code: object) -> int:
    if code is None:
        return 0
    return code if isinstance(code, int) else 1


def _warning_line(message: str) -> None:
    """One ``wavegen: warning: ...`` line on stderr."""
    _error_line(message, prefix="warning: ")


def _error_line(message: str, prefix: str = "error: ") -> None:
    # WavegenError messages are one line already; this also covers argparse's messages.
    text = " ".join(message.split())
    print(f"{PROG}: {prefix}{text}", file=sys.stderr, flush=True)


# --------------------------------------------------------------------------- info


def _add_info_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("audio", nargs="+", metavar="AUDIO", help="audio files to describe")
    parser.add_argument("--json", action="store_true",
                        help="print a JSON list of objects instead of a table")


def _run_info(args: argparse.Namespace) -> int:
    import torch

    from wavegen.audio.io import audio_info, count_nonfinite, load_audio

    # Everything is read before anything is printed, so a bad file in the list gives the
    # error line alone rather than half a table.
    rows = []
    for path in args.audio:
        info = audio_info(path)
        wave, _ = load_audio(path, allow_nonfinite=True)  # [channels, time], as stored
        nan, inf = count_nonfinite(wave)
        finite = wave[torch.isfinite(wave)]
        peak = float(finite.abs().max()) if finite.numel() else 0.0
        rms = math.sqrt(float(finite.double().pow(2).mean())) if finite.numel() else 0.0
        rows.append({
            "path": path,
            "duration_s": wave.shape[-1] / info.sample_rate,
            "sample_rate": info.sample_rate,
            "channels": info.channels,
            "frames": int(wave.shape[-1]),
            "format": info.format,
            "subtype": info.subtype,
            "peak_dbfs": _dbfs(peak),
            "rms_dbfs": _dbfs(rms),
            "nan_samples": nan,
            "inf_samples": inf,
        })

    if args.json:
        # JSON has no -inf: digital silence is reported as null.
        clean = [{k: (None if isinstance(v, float) and math.isinf(v) else v)
                  for k, v in row.items()} for row in rows]
        print(json.dumps(clean, indent=2))
        return 0
    header = ("path", "duration (s)", "sample rate", "channels", "peak dBFS", "RMS dBFS")
    table = [header] + [
        (row["path"], f"{row['duration_s']:.3f}", str(row["sample_rate"]), str(row["channels"]),
         f"{row['peak_dbfs']:.2f}", f"{row['rms_dbfs']:.2f}")
        for row in rows
    ]
    broken = [row for row in rows if row["nan_samples"] or row["inf_samples"]]
    widths = [max(len(line[i]) for line in table) for i in range(len(header))]
    for line in table:
        cells = [line[0].ljust(widths[0])] + [c.rjust(w) for c, w in zip(line[1:], widths[1:])]
        print("  ".join(cells).rstrip())
    for row in broken:
        print(f"{row['path']}: {row['nan_samples']} NaN and {row['inf_samples']} infinite "
              f"samples (levels above are of the finite samples; the file is not usable audio)")
    return 0


def _dbfs(amplitude: float) -> float:
    """Level in dB relative to digital full scale (1.0); -inf for silence.

    RMS uses the same reference, so a full-scale sine reads -3.01 dB RMS (not the AES17
    convention, which adds 3.01 dB so that such a sine reads 0).
    """
    return 20.0 * math.log10(amplitude) if amplitude > 0 else -math.inf


register(Command(
    name="info",
    help="describe audio files: duration, sample rate, channels, peak and RMS level",
    add_arguments=_add_info_arguments,
    run=_run_info,
))


# --------------------------------------------------------------------------- spec

DEFAULT_PRESET = "hifigan-22k"


def _add_spec_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("audio", metavar="AUDIO", help="audio file to analyse")
    parser.add_argument("-o", "--output", required=True, metavar="PNG",
                        help="PNG file to write (its directory must exist)")
    parser.add_argument("--preset", default=DEFAULT_PRESET, metavar="NAME",
                        help=f"feature front-end preset (default: {DEFAULT_PRESET}); the audio "
                             "is resampled to the preset's sample rate")


def _run_spec(args: argparse.Namespace) -> int:
    from wavegen.audio.features import get_preset

    # Cheap checks first, so a typo fails before the audio is decoded.
    config = get_preset(args.preset)
    output = args.output
    if os.path.splitext(output)[1].lower() != ".png":
        raise UsageError(f"output {output} must be a .png file")
    directory = os.path.dirname(os.path.abspath(output))
    if not os.path.isdir(directory):
        raise UsageError(f"output directory {directory} does not exist")
    if os.path.isdir(output):
        raise UsageError(f"output {output} is a directory")

    import soxr
    import torch

    from wavegen.audio.io import count_nonfinite, load_audio
    from wavegen.audio.plot import plot_analysis

    wave, rate = load_audio(args.audio, allow_nonfinite=True)
    nan, inf = count_nonfinite(wave)
    if nan or inf:
        _warning_line(f"{args.audio}: {nan} NaN and {inf} infinite samples, plotted as silence")
        wave = torch.nan_to_num(wave, nan=0.0, posinf=0.0, neginf=0.0)
    if rate != config.sample_rate:
        wave = torch.from_numpy(soxr.resample(wave.T.numpy(), rate, config.sample_rate,
                                              quality="VHQ").T.copy())
        rate = config.sample_rate
    plot_analysis(wave, config, output, title=f"{os.path.basename(args.audio)} "
                  f"({wave.shape[-1] / rate:.2f} s, {rate} Hz, preset {config.name})")
    print(f"wrote {output} (waveform, log-mel and IF; preset {config.name}, {rate} Hz)")
    return 0


def _add_score_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("audio", help="audio file, or a folder of them")
    parser.add_argument("midi", help="its MIDI file, or a folder with one MIDI file per audio "
                        "file at the same relative path (.mid or .midi)")
    parser.add_argument("--seconds", type=_seconds, default=None,
                        help="score only the first SECONDS of each file")


def _run_score(args: argparse.Namespace) -> int:
    from wavegen.eval.score import score_file, score_pairs

    pairs = score_pairs(args.audio, args.midi)
    keys = ("onset_precision", "onset_recall", "onset_f1", "chroma_r")
    totals = dict.fromkeys(keys, 0.0)
    pitches: list[float] = []  # only the files where the pitch measure is defined
    for audio, midi in pairs:
        scores = score_file(audio, midi, args.seconds)
        for key in keys:
            totals[key] += scores[key]
        pitch = scores["pitch_accuracy"]
        if pitch is None:
            pitch_text = "-"
        else:
            pitches.append(pitch)
            pitch_text = f"{pitch:.3f} ({scores['pitch_frames']} frames)"
        print(f"{audio}: onset P {scores['onset_precision']:.3f} R {scores['onset_recall']:.3f} "
              f"F1 {scores['onset_f1']:.3f} (50 ms), chroma r {scores['chroma_r']:.3f}, "
              f"pitch acc {pitch_text}")
    n = len(pairs)
    mean_pitch = (f"{sum(pitches) / len(pitches):.3f} over {len(pitches)} "
                  f"file{'s' if len(pitches) != 1 else ''}" if pitches else "-")
    print(f"mean over {n} file{'s' if n != 1 else ''}: onset P {totals['onset_precision'] / n:.3f}"
          f" R {totals['onset_recall'] / n:.3f} F1 {totals['onset_f1'] / n:.3f}, chroma r "
          f"{totals['chroma_r'] / n:.3f}, pitch acc {mean_pitch}")
    return 0


register(Command(
    name="score",
    help="how well audio follows a MIDI score: note-onset F1 (mir_eval, 50 ms), chroma "
         "correlation and pitch accuracy on single-note passages (mir_eval raw pitch "
         "accuracy, 50 cents; '-' where the piece has none), per file and on average",
    add_arguments=_add_score_arguments,
    run=_run_score,
))


register(Command(
    name="spec",
    help="plot the waveform, log-mel and instantaneous frequency of an audio file",
    add_arguments=_add_spec_arguments,
    run=_run_spec,
))


# --------------------------------------------------------------------------- demo


def _add_demo_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", default="demo_out", help="output folder (default: demo_out)")
    parser.add_argument("--preset", default="hifigan-22k", help="feature front-end preset")
    parser.add_argument("--seconds", type=_seconds, default=4.0, help="length of the test piece")
    parser.add_argument("--iters", type=int, default=32, help="Griffin-Lim iterations")
    parser.add_argument("--seed", type=int, default=0,
                        help="seed of Griffin-Lim's initial phase (default: 0); the same "
                             "arguments always give the same files and scores")
    parser.add_argument("--model-seconds", type=_seconds, default=8.0,
                        help="length of the piece the shipped models play and vocode "
                             "(default 8)")
    parser.add_argument("--no-models", action="store_true",
                        help="skip the shipped models (MIDI -> piano audio, the piano vocoder "
                             "beside Griffin-Lim)")


def _run_demo(args: argparse.Namespace) -> int:
    from wavegen.audio.features import get_preset
    from wavegen.demo import OUTPUT_FILES, format_summary, run_demo

    get_preset(args.preset)  # refuse an unknown preset before creating anything
    if not 0.5 <= args.seconds <= 600:
        raise UsageError(f"--seconds must be between 0.5 and 600, got {args.seconds}")
    if args.iters < 1:
        raise UsageError(f"--iters must be at least 1, got {args.iters}")
    if args.seed < 0:
        raise UsageError(f"--seed must be at least 0, got {args.seed}")
    if os.path.exists(args.out) and not os.path.isdir(args.out):
        raise UsageError(f"--out {args.out} exists and is not a folder")
    if not 1 <= args.model_seconds <= 600:
        raise UsageError(f"--model-seconds must be between 1 and 600, got {args.model_seconds}")
    summary = run_demo(args.out, preset=args.preset, seconds=args.seconds,
                       griffinlim_iters=args.iters, seed=args.seed)
    print(format_summary(summary))
    print(f"wrote {args.out}/: {', '.join(OUTPUT_FILES)}")
    if not args.no_models:
        from wavegen import demo_models

        models = demo_models.run_model_demo(os.path.join(args.out, "models"),
                                            seconds=args.model_seconds, seed=args.seed,
                                            griffinlim_iters=args.iters)
        print(demo_models.format_model_summary(models))
        print(f"wrote {args.out}/models/: {', '.join(demo_models.OUTPUT_FILES)}")
    return 0


register(Command(
    name="demo",
    help="analyse and resynthesise generated audio, then play a generated piece with the "
         "shipped models (no data needed)",
    add_arguments=_add_demo_arguments,
    run=_run_demo,
))


# --------------------------------------------------------------------------- train


def _add_train_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("recipe", help="recipe YAML file (see recipes/)")
    parser.add_argument("--set", dest="overrides", action="append", default=[],
                        metavar="KEY=VALUE", help="override a recipe entry, e.g. train.steps=100")
    parser.add_argument("--out", help="run directory (default: runs/<recipe name>)")
    parser.add_argument("--resume", action="store_true",
                        help="continue the run in --out from its latest checkpoint")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")


def _run_train(args: argparse.Namespace) -> int:
    from wavegen.train.build import build_datasets, build_task, bundle_info
    from wavegen.train.distributed import is_main_process
    from wavegen.train.recipe import load_recipe
    from wavegen.train.run_folder import RunFolder
    from wavegen.train.trainer import Trainer

    recipe = load_recipe(args.recipe, args.overrides)
    folder = RunFolder(args.out or os.path.join("runs", recipe.name))
    try:
        if is_main_process() and folder.path.is_dir():
            # A run already using --out is refused before the data and the model are built.
            folder.claim()
        train_set, val_set = build_datasets(recipe)
        task = build_task(recipe)
        # The trainer claims the folder (if not yet), tidies it and writes recipe.yaml.
        trainer = Trainer(task, train_set, val_set, recipe.train, folder.path,
                          bundle_info(recipe), recipe=recipe.to_dict(),
                          progress=not args.no_progress, run_folder=folder)
        trainer.fit(resume=args.resume)
    finally:
        folder.release()
    return 0


register(Command(
    name="train",
    help="train a model from a recipe (torchrun for several GPUs or processes)",
    add_arguments=_add_train_arguments,
    run=_run_train,
))


# --------------------------------------------------------------------------- sample


def seconds_type(limit: float, what: str = "wavegen generates in one call"):
    """argparse type: a finite, positive number of seconds, at most ``limit``."""

    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not a number of seconds: {text!r}") from None
        if not math.isfinite(value) or value <= 0:
            raise argparse.ArgumentTypeError(f"must be a finite number of seconds > 0, got {text}")
        if value > limit:
            raise argparse.ArgumentTypeError(f"{text} s is longer than the {limit:g} s "
                                             f"({limit / 3600:g} hours) {what}")
        return value

    return parse


#: The longest clip `wavegen sample` generates in one call.
MAX_SECONDS = 3 * 3600.0
_seconds = seconds_type(MAX_SECONDS)


def _count(text: str) -> int:
    """argparse type: a whole number >= 0."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {text}")
    return value


def _positive(text: str) -> int:
    """argparse type: a whole number >= 1."""
    value = _count(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {text}")
    return value


def _finite(text: str) -> float:
    """argparse type: a finite float."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"must be finite, got {text}")
    return value


def _add_sample_arguments(parser: argparse.ArgumentParser) -> None:
    from wavegen.audio.mel_file import FRONT_END_HELP

    parser.add_argument("checkpoint", nargs="?", default=None,
                        help="model bundle (a bundle folder, or a run's "
                        "checkpoints/latest or checkpoints/best) or pipeline manifest (a folder "
                        "with pipeline.json): sample-level, noise-driven (flow, diffusion) or "
                        "a pipeline that ends in audio; or give --model instead")
    _add_model_argument(parser)
    parser.add_argument("-o", "--output", required=True,
                        help="output audio file (.wav/.flac/.ogg); its folder must exist")
    parser.add_argument("--seconds", type=_seconds,
                        help="length to generate: required for unconditional models; for "
                             "conditioned ones, a limit on the conditioning's length")
    parser.add_argument("--midi", help="MIDI file to render (MIDI-conditioned models)")
    parser.add_argument("--wav", help="audio to copy-synthesise: analysed with the bundle's "
                        "front-end (mel-conditioned models)")
    parser.add_argument("--mel", help="log-mel .npy [n_mels, frames] (mel-conditioned models); "
                        + FRONT_END_HELP)
    parser.add_argument("--prompt", help="audio whose end the model continues (unconditional "
                        "models)")
    parser.add_argument("--temperature", type=_finite, default=1.0,
                        help="divide the logits by this (default 1; lower is more "
                             "conservative, 0 is greedy)")
    parser.add_argument("--top-p", type=_finite, default=None, metavar="P",
                        help="nucleus sampling: draw from the smallest set of values holding "
                             "probability P (0 < P <= 1)")
    parser.add_argument("--typical", type=_finite, default=None, metavar="TAU",
                        help="locally typical sampling with mass TAU (0 < TAU <= 1)")
    parser.add_argument("--cfg", "--guidance", dest="cfg", type=_finite, default=None,
                        metavar="GAMMA",
                        help="classifier-free guidance strength (1 = conditional; sample-level "
                             "and diffusion models); needs a model trained with conditioning "
                             "dropout")
    parser.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    parser.add_argument("--raw-weights", action="store_true",
                        help="use the raw trained weights, not their moving average (EMA)")
    parser.add_argument("--backend", default="auto",
                        help="sampling backend: auto (fastest usable), reference, cpu, triton, "
                             "cudagraph, cuda (WaveNet) or samplernn-cpu (SampleRNN); see "
                             "`wavegen doctor`")
    parser.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N (default: cpu)")
    _add_noise_arguments(parser)
    hierarchy = parser.add_argument_group("hierarchies (a folder with hierarchy.json: a VQ-VAE "
                                          "and its priors)")
    hierarchy.add_argument("--level", type=int, default=None,
                           help="stop after sampling this level (default: the finest prior's)")
    hierarchy.add_argument("--save-codes", metavar="FOLDER",
                           help="also write every level's codes there (OUT.levelL.npz)")
    hierarchy.add_argument("--from-codes", nargs="+", metavar="CODES",
                           help="resume from saved codes (files or a folder): the levels given "
                                "are kept and sampling goes on below the lowest")
    hierarchy.add_argument("--window", type=int, default=None,
                           help="codes per sampling window (default 4096; 0 = one pass)")
    hierarchy.add_argument("--overlap", type=int, default=None,
                           help="codes each window re-reads from the last (default: the "
                                "prior's receptive field, which joins windows exactly)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")


def _add_noise_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of the noise-driven models (flows and diffusion), shared by sample and vocode."""
    parser.add_argument("--sigma", type=_finite, default=None,
                        help="flows: standard deviation of the latent noise (default: the "
                             "model's)")
    parser.add_argument("--sampler", default=None,
                        help="diffusion: ddpm, ddim or heun (default: the bundle's process)")
    parser.add_argument("--steps", type=_positive, default=None,
                        help="diffusion: sampling steps (default: the bundle's process; a "
                             "schedule stored by `wavegen tune-steps` for that many steps is "
                             "followed)")
    parser.add_argument("--eta", type=_finite, default=None,
                        help="diffusion: DDIM stochasticity in [0, 1] (default: the "
                             "bundle's process)")
    parser.add_argument("--label", default=None,
                        help="diffusion models trained on a labelled corpus: the class to "
                             "generate (a name under extra.labels in the bundle's "
                             "config.json, or its index)")


def _check_noise_arguments(args: argparse.Namespace) -> None:
    if args.sampler is not None:
        from wavegen.diffusion.samplers import SAMPLERS

        if args.sampler not in SAMPLERS:
            raise UsageError(f"unknown --sampler {args.sampler!r}; choose from "
                             f"{', '.join(SAMPLERS)}")


def _add_model_argument(parser: argparse.ArgumentParser) -> None:
    """``--model NAME``, the alternative to the positional ``checkpoint`` (sample, vocode)."""
    parser.add_argument("--model", metavar="NAME", default=None,
                        help="a model shipped with wavegen, instead of a bundle path: see "
                             "`wavegen models`")


def _use_model_or_checkpoint(args: argparse.Namespace, verb: str) -> None:
    """Check that exactly one of ``checkpoint`` and ``--model`` is given; with ``--model``,
    set ``args.checkpoint`` to the shipped model's folder (the command then runs on that
    path as on any other)."""
    if args.checkpoint is not None and args.model is not None:
        raise UsageError(f"give a model bundle path or --model NAME, not both (see "
                         f"'{PROG} {verb} --help')")
    if args.checkpoint is None and args.model is None:
        raise UsageError(f"give a model bundle path or --model NAME (a model shipped with "
                         f"wavegen: see '{PROG} models')")
    if args.model is not None:
        from wavegen.pretrained import resolve_model

        args.checkpoint = str(resolve_model(args.model, verb=verb))


def _run_sample(args: argparse.Namespace) -> int:
    _use_model_or_checkpoint(args, "sample")
    from wavegen.audio.io import save_audio
    from wavegen.inference import InferenceOptions, InputRequest
    from wavegen.sample import load_generator
    from wavegen.utils.device import parse_device

    output = os.path.abspath(args.output)
    if not os.path.isdir(os.path.dirname(output)):
        raise UsageError(f"cannot write {args.output}: its folder does not exist")
    request = InputRequest(args.seconds, args.midi, args.wav, args.mel, args.prompt)
    from wavegen.kernels import BACKEND_NAMES
    if args.backend not in BACKEND_NAMES:
        raise UsageError(f"unknown --backend {args.backend!r}; choose from {', '.join(BACKEND_NAMES)}")
    parse_device(args.device)
    _check_noise_arguments(args)
    from wavegen.utils.formatting import format_ratio

    options = InferenceOptions(
        device=args.device, use_ema=not args.raw_weights, seed=args.seed,
        progress=not args.no_progress, warn=_warning_line, guidance=args.cfg,
        temperature=args.temperature, top_p=args.top_p, typical=args.typical,
        backend=args.backend, sigma=args.sigma, sampler=args.sampler, steps=args.steps,
        eta=args.eta, label=args.label)
    from wavegen.hierarchy import is_hierarchy

    if is_hierarchy(args.checkpoint):
        return _run_hierarchy_sample(args, request, options)
    for name in ("level", "save_codes", "from_codes", "window", "overlap"):
        if getattr(args, name) is not None:
            raise UsageError(f"--{name.replace('_', '-')} is for hierarchies (a folder with "
                             f"hierarchy.json); {args.checkpoint} is not one")
    pipeline = load_generator(args.checkpoint, options)
    # The real-time factor is what the user waits for once the model is loaded: reading and
    # preparing the conditioning, generation, diagnostics and writing the file.
    start = time.perf_counter()
    result = pipeline.run(pipeline.conditioning(request), options)
    rate = pipeline.sample_rate
    save_audio(output, result.audio[0], rate)
    wall = time.perf_counter() - start
    seconds = result.audio.shape[-1] / rate
    line = (f"wrote {args.output}: {seconds:.2f} s at {rate} Hz in {wall:.2f} s "
            f"(real-time factor {format_ratio(wall / seconds)}, model loading excluded)"
            f"{result.nfe_text()}")
    generation = result.generation
    if generation is not None:
        line += (f"; NLL {float(generation.mean_nll.mean()):.2f} vs entropy "
                 f"{float(generation.mean_entropy.mean()):.2f} nats/sample")
    print(line)
    return 0


def _run_hierarchy_sample(args: argparse.Namespace, request, options) -> int:
    from wavegen.sample import HierarchyRequest, level_output, sample_hierarchy
    from wavegen.utils.formatting import format_ratio

    for name in ("window", "overlap"):
        value = getattr(args, name)
        if value is not None and value < (0 if name == "window" else 1):
            raise UsageError(f"--{name} must be {'>= 0' if name == 'window' else '>= 1'}, "
                             f"got {value}")
    extra = HierarchyRequest(args.level, args.save_codes, args.from_codes, args.window,
                             args.overlap)
    result = sample_hierarchy(args.checkpoint, request, options, extra, args.output)
    rate = result.sample_rate
    for level, entry in result.levels.items():
        seconds = entry.audio.shape[-1] / rate
        how = "sampled" if entry.sampled else "given"
        line = (f"level {level}: {entry.codes.shape[-1]} codes {how} in {entry.seconds:.2f} s, "
                f"decoded in {entry.decode_seconds:.2f} s -> {level_output(args.output, level)}"
                f" ({seconds:.2f} s)")
        if entry.generation is not None:
            line += (f"; NLL {float(entry.generation.mean_nll.mean()):.2f} vs entropy "
                     f"{float(entry.generation.mean_entropy.mean()):.2f} nats/code")
        print(line)
    seconds = result.finest.audio.shape[-1] / rate
    print(f"wrote {args.output}: {seconds:.2f} s at {rate} Hz (level {result.finest.level}) in "
          f"{result.seconds:.2f} s (real-time factor {format_ratio(result.seconds / seconds)}; "
          f"model loading excluded)")
    return 0


def _add_hierarchy_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("output", help="the hierarchy folder to make (must not exist)")
    parser.add_argument("--vqvae", required=True,
                        help="the VQ-VAE bundle (a bundle folder or checkpoints/latest)")
    parser.add_argument("--priors", nargs="+", required=True, metavar="PRIOR",
                        help="the prior bundles, top level first (the top prior, then one "
                             "upsampler per lower level)")
    parser.add_argument("--description", default="", help="free text for hierarchy.json")


def _run_hierarchy(args: argparse.Namespace) -> int:
    from wavegen.hierarchy import assemble, load_hierarchy

    manifest = assemble(args.output, args.vqvae, args.priors, args.description)
    hierarchy = load_hierarchy(manifest.parent)
    levels = ", ".join(f"level {p.level} ({p.config.conditioning})" for p in hierarchy.priors)
    print(f"wrote {manifest}: VQ-VAE {hierarchy.autoencoder.fingerprint} with priors over "
          f"{levels}")
    return 0


register(Command(
    name="hierarchy",
    help="make a hierarchy folder (a VQ-VAE and its priors) that `wavegen sample` takes",
    add_arguments=_add_hierarchy_arguments,
    run=_run_hierarchy,
))


register(Command(
    name="sample",
    help="generate audio from a trained model bundle or pipeline (MIDI, mel or free-running)",
    add_arguments=_add_sample_arguments,
    run=_run_sample,
))


# --------------------------------------------------------------------------- vocode


def _add_vocode_arguments(parser: argparse.ArgumentParser) -> None:
    from wavegen.audio.mel_file import FRONT_END_HELP

    parser.add_argument("checkpoint", nargs="?", default=None,
                        help="vocoder bundle (e.g. runs/NAME/checkpoints/best) or "
                        "pipeline manifest (a folder with pipeline.json) that turns a mel into "
                        "audio: feed-forward (GAN) or noise-driven (flow, diffusion) models; or "
                        "give --model instead")
    _add_model_argument(parser)
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--wav", help="audio file or folder to copy-synthesise")
    source.add_argument("--mel", help="log-mel .npy [n_mels, frames] file or folder of them; "
                        + FRONT_END_HELP)
    parser.add_argument("-o", "--output", required=True,
                        help="output .wav/.flac (a folder for a folder input)")
    parser.add_argument("--device", default="cpu",
                        help="cpu, cuda or cuda:N (default: cpu)")
    parser.add_argument("--bf16", action="store_true",
                        help="bfloat16 autocast: on a GPU, or on a CPU with AVX-512 BF16 "
                             "(HiFi-GAN about 2x faster there; not bit-exact)")
    parser.add_argument("--compile", action="store_true", help="torch.compile the generator")
    parser.add_argument("--chunk-frames", type=int, default=512,
                        help="mel frames per chunk (memory stays flat; default 512)")
    parser.add_argument("--overlap-frames", type=int, default=32,
                        help="context frames on each side of a chunk (default 32)")
    parser.add_argument("--raw-weights", action="store_true", help="ignore EMA weights")
    parser.add_argument("--seed", type=int, default=0,
                        help="random seed of noise-driven models (default 0)")
    parser.add_argument("--denoise", type=_finite, default=None, metavar="STRENGTH",
                        help="subtract STRENGTH x the vocoder's output spectrum for a silent "
                             "mel (its stationary bias: WaveGlow's line noise, a GAN's hum); "
                             "0.1 is mild, 1 removes it entirely; any vocoder")
    _add_noise_arguments(parser)


def _run_vocode(args: argparse.Namespace) -> int:
    _use_model_or_checkpoint(args, "vocode")
    from wavegen.inference import InferenceOptions
    from wavegen.utils.device import parse_device
    from wavegen.utils.formatting import format_ratio
    from wavegen.vocode import load_vocoder, pipeline_denoiser, plan_jobs, run_jobs

    parse_device(args.device)
    _check_noise_arguments(args)
    kind = "wav" if args.wav else "mel"
    jobs = plan_jobs(args.wav or args.mel, args.output, kind)
    options = InferenceOptions(
        device=args.device, use_ema=not args.raw_weights, seed=args.seed, bf16=args.bf16,
        compile=args.compile, chunk_frames=args.chunk_frames,
        overlap_frames=args.overlap_frames, sigma=args.sigma, sampler=args.sampler,
        steps=args.steps, eta=args.eta, label=args.label, warn=_warning_line)
    pipeline = load_vocoder(args.checkpoint, options)
    denoise = None
    if args.denoise is not None:
        if args.denoise < 0:
            raise UsageError(f"--denoise must be >= 0, got {args.denoise}")
        denoise = (pipeline_denoiser(pipeline, options), args.denoise)
    done, failed = run_jobs(pipeline, jobs, kind, options, denoise=denoise)
    audio = sum(item.audio_seconds for item in done)
    seconds = sum(item.seconds for item in done)
    print(f"vocoded {len(done)} of {len(jobs)} file(s), {audio:.1f} s of audio at "
          f"{pipeline.sample_rate} Hz in {seconds:.2f} s (real-time factor "
          f"{format_ratio(seconds / max(audio, 1e-12))})")
    if failed:
        print(f"error: {len(failed)} input(s) failed (listed above)", file=sys.stderr)
        return 1
    return 0


register(Command(
    name="vocode",
    help="turn mel-spectrograms (or audio, for copy-synthesis) into audio with a vocoder "
         "bundle or pipeline",
    add_arguments=_add_vocode_arguments,
    run=_run_vocode,
))


# --------------------------------------------------------------------------- models


def _add_models_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true",
                        help="print a JSON list of objects instead of a table")


def _run_models(args: argparse.Namespace) -> int:
    from wavegen.pretrained import PRETRAINED_DIR, read_index

    models = read_index()
    rows = [{"name": m.name, "verb": m.verb, "path": str(m.path), "size_bytes": m.size_bytes,
             "available": m.available, "description": m.description,
             "card": None if m.card is None else str(m.card)} for m in models]
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    if not rows:
        print(f"no models are shipped with this wavegen (index: {PRETRAINED_DIR})")
        return 0
    header = ("name", "verb", "size", "status", "description")
    table = [header] + [
        (row["name"], row["verb"], f"{row['size_bytes'] / 1e6:.1f} MB",
         "installed" if row["available"] else "missing", row["description"])
        for row in rows
    ]
    widths = [max(len(line[i]) for line in table) for i in range(len(header) - 1)]
    for line in table:
        cells = [line[0].ljust(widths[0]), line[1].ljust(widths[1]),
                 line[2].rjust(widths[2]), line[3].ljust(widths[3]), line[4]]
        print("  ".join(cells).rstrip())
    print(f"use one with `{PROG} VERB --model NAME`; model cards (training data, quality, "
          f"limits): MODEL_CARD.md in each model's folder under {PRETRAINED_DIR}")
    if not all(row["available"] for row in rows):
        print("missing: the model's files are not installed with this wavegen (nothing is "
              "downloaded)")
    return 0


register(Command(
    name="models",
    help="list the models shipped with wavegen (use one with `sample --model` or "
         "`vocode --model`)",
    add_arguments=_add_models_arguments,
    run=_run_models,
))


# --------------------------------------------------------------------------- tune-steps


def _add_tune_steps_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("checkpoint", help="mel-conditioned diffusion bundle (DiffWave, WaveGrad)")
    parser.add_argument("--wav", required=True,
                        help="validation clip (audio the model did not train on)")
    parser.add_argument("--steps", type=_positive, nargs="+", default=[6, 12, 25],
                        help="step budgets to search schedules for (default: 6 12 25)")
    parser.add_argument("--seconds", type=seconds_type(60.0, "a search uses"), default=1.0,
                        help="seconds of the clip to use (default 1)")
    parser.add_argument("--offset", type=_finite, default=0.0,
                        help="where the clip starts in the file, in seconds (default 0)")
    parser.add_argument("--metric", default="log_mel_l1", choices=("log_mel_l1", "mrstft"),
                        help="distance to the clip that ranks the candidates")
    parser.add_argument("--sampler", choices=("ddpm", "ddim", "heun"),
                        help="the sampler the schedules are for (default: the bundle's)")
    parser.add_argument("--seed", type=int, default=0, help="noise seed of the search")
    parser.add_argument("--raw-weights", action="store_true", help="ignore EMA weights")
    parser.add_argument("--dry-run", action="store_true",
                        help="print what was found without writing it into the bundle")


def _run_tune_steps(args: argparse.Namespace) -> int:
    from wavegen.tune_steps import tune_steps

    report = tune_steps(args.checkpoint, args.wav, list(args.steps), seconds=args.seconds,
                        offset=args.offset, metric=args.metric, sampler=args.sampler,
                        seed=args.seed, use_ema=not args.raw_weights, write=not args.dry_run)
    for result in report.results:
        uniform = result.scores.get("power(p=1)")
        versus = "" if uniform is None else f" (uniform grid {uniform:.4f})"
        times = ", ".join(f"{t:.4g}" for t in result.times)
        print(f"{result.steps} steps: {result.name} {args.metric} {result.score:.4f}{versus} "
              f"of {len(result.scores)} candidates; times {times}")
    where = "not written (--dry-run)" if args.dry_run else \
        f"stored in {args.checkpoint} (--steps N now follows them)"
    print(f"searched on {report.clip_seconds:.2f} s of {args.wav}; {where}")
    return 0


register(Command(
    name="tune-steps",
    help="search few-step sampling schedules for a diffusion bundle on a clip and store them",
    add_arguments=_add_tune_steps_arguments,
    run=_run_tune_steps,
))


# --------------------------------------------------------------------------- import

IMPORTERS = ("hifigan-official", "melgan-official", "diffwave-official", "waveglow-official")


def _add_import_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("source", choices=IMPORTERS,
                        help="hifigan-official (jik876/hifi-gan generator g_XXXXXXXX / "
                             "generator_v1), melgan-official (descriptinc/melgan-neurips "
                             "best_netG.pt), diffwave-official (lmnt-com/diffwave "
                             "weights-STEP.pt) or waveglow-official (NVIDIA/waveglow "
                             "checkpoints such as waveglow_256channels_universe_v5.pt, "
                             "read without running the pickled code)")
    parser.add_argument("checkpoint", help="the other project's generator checkpoint")
    parser.add_argument("-o", "--output", required=True, help="bundle folder to create")
    parser.add_argument("--config", help="hifigan-official: the run's config.json")
    parser.add_argument("--preset", default="v1", choices=("v1", "v2", "v3"),
                        help="hifigan-official without --config: the generator preset")
    parser.add_argument("--n-mels", type=int, default=80, help="melgan-official: mel bands")
    parser.add_argument("--ngf", type=int, default=32, help="melgan-official: base channels")
    parser.add_argument("--n-residual-layers", type=int, default=3,
                        help="melgan-official: residual layers per stage")
    parser.add_argument("--ratios", type=int, nargs="+", default=[8, 8, 2, 2],
                        help="melgan-official: upsampling ratios")
    parser.add_argument("--hop-length", type=_positive, default=None,
                        help="waveglow-official: the upsampler's stride, which a plain state "
                             "dict does not record (default: the checkpoint's, else 256)")
    parser.add_argument("--sample-rate", type=_positive, default=None,
                        help="waveglow-official: audio rate in Hz (default 22050)")


def _run_import(args: argparse.Namespace) -> int:
    from wavegen.checkpoint import BundleInfo, save_bundle
    from wavegen.errors import CheckpointError

    if os.path.exists(args.output):
        raise UsageError(f"{args.output}: already exists (choose a new bundle folder)")
    process, conditioning = None, "mel"
    if args.config and args.source != "hifigan-official":
        raise UsageError("--config is for hifigan-official")
    for option, value in (("--hop-length", args.hop_length), ("--sample-rate", args.sample_rate)):
        if value is not None and args.source != "waveglow-official":
            raise UsageError(f"{option} is for waveglow-official")
    if args.source == "hifigan-official":
        from wavegen.importers import import_hifigan_official
        model, config, features = import_hifigan_official(args.checkpoint, args.config, args.preset)
        family = "hifigan"
    elif args.source == "diffwave-official":
        from wavegen.importers import import_diffwave_official
        model, config, features, process = import_diffwave_official(args.checkpoint)
        family, process = "diffwave", process.to_dict()
        if features is None:
            conditioning = "none"
    elif args.source == "waveglow-official":
        from wavegen.importers import import_waveglow_official
        model, config, features = import_waveglow_official(args.checkpoint, args.hop_length,
                                                           args.sample_rate)
        family = "waveglow"
    else:
        from wavegen.importers import import_melgan_official
        model, config, features = import_melgan_official(
            args.checkpoint, args.n_mels, args.ngf, args.n_residual_layers, tuple(args.ratios))
        family = "melgan"
    if features is not None and features.sample_rate != config.sample_rate:
        raise CheckpointError(f"features at {features.sample_rate} Hz but the model config says "
                              f"{config.sample_rate} Hz")
    info = BundleInfo(family, config, config.sample_rate, features,
                      extra={"imported_from": {"source": args.source,
                                               "checkpoint": os.path.abspath(args.checkpoint)}},
                      conditioning=conditioning, process=process)
    save_bundle(args.output, model, info)
    what = "unconditional model" if features is None else (
        f"vocoder, features {features.name} ({features.n_mels} mels, hop "
        f"{features.hop_length}, {features.sample_rate} Hz)")
    print(f"wrote {args.output}: {family} {what}, {sum(p.numel() for p in model.parameters()):,} "
          f"parameters")
    return 0


register(Command(
    name="import",
    help="convert a generator checkpoint of another project into a wavegen bundle",
    add_arguments=_add_import_arguments,
    run=_run_import,
))


# --------------------------------------------------------------------------- doctor


def _add_doctor_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="print a JSON object")


def _run_doctor(args: argparse.Namespace) -> int:
    from wavegen import doctor

    rows = doctor.diagnose()
    print(doctor.format_json(rows) if args.json else doctor.format_text(rows))
    return 0


register(Command(
    name="doctor",
    help="report the Python, PyTorch, CUDA, Triton and audio library setup",
    add_arguments=_add_doctor_arguments,
    run=_run_doctor,
))


# --------------------------------------------------------------------------- prepare


def _add_prepare_arguments(parser: argparse.ArgumentParser) -> None:
    from wavegen.data import MAX_PIECE_SECONDS

    parser.add_argument("out_dir", metavar="OUT_DIR",
                        help="corpus folder to create (new, empty, or prepared by wavegen)")
    parser.add_argument("--midi", metavar="DIR", default=None,
                        help="render every *.mid / *.midi under this folder (recursive)")
    parser.add_argument("--generate", metavar="N", type=_count, default=0,
                        help="also generate N piano performances (default: 0)")
    parser.add_argument("--seconds", metavar="S", default=30.0,
                        type=seconds_type(MAX_PIECE_SECONDS, "a generated piece may last"),
                        help="length of each generated performance (default: 30)")
    parser.add_argument("--sample-rate", metavar="SR", type=int, default=16000,
                        help="audio sample rate in Hz (default: 16000)")
    parser.add_argument("--soundfont", metavar="SF2", default=None,
                        help="render with FluidSynth and this soundfont (needs pyfluidsynth) "
                             "instead of wavegen's built-in piano synthesiser")
    parser.add_argument("--seed", metavar="N", type=int, default=0,
                        help="seed of the generated pieces and of the split assignment")


def _run_prepare(args: argparse.Namespace) -> int:
    if args.midi is None and args.generate == 0:
        raise UsageError("nothing to prepare: give --midi DIR and/or --generate N")
    from wavegen.data.prepare import prepare_corpus

    def report_skip(path: str, reason: str) -> None:
        print(f"{PROG}: warning: skipped {path}: {reason}", file=sys.stderr, flush=True)

    result = prepare_corpus(args.out_dir, midi_dir=args.midi, num_generated=args.generate,
                            seconds=args.seconds, sample_rate=args.sample_rate,
                            soundfont=args.soundfont, seed=args.seed,
                            progress=sys.stderr.isatty(), on_skip=report_skip)
    print(result.summary())
    return 0


register(Command(
    name="prepare",
    help="build a MAESTRO v3-format corpus (audio + MIDI) from MIDI files or generated pieces",
    add_arguments=_add_prepare_arguments,
    run=_run_prepare,
))


# --------------------------------------------------------------------------- encode


def _add_encode_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("bundle", metavar="BUNDLE",
                        help="discrete autoencoder bundle (VQ-VAE), or a run's "
                             "checkpoints/latest or checkpoints/best")
    parser.add_argument("audio", nargs="+", metavar="AUDIO",
                        help="audio files, or folders searched recursively for audio files")
    parser.add_argument("-o", "--output", required=True, metavar="FOLDER",
                        help="folder for the codes: NAME.levelL.npz per input and level "
                             "(created if needed; a folder input's structure is kept)")
    parser.add_argument("--levels", type=_count, nargs="+", default=None, metavar="L",
                        help="levels to encode (default: all; 0 is the finest)")
    parser.add_argument("--raw-weights", action="store_true",
                        help="use the raw trained weights, not their moving average (EMA); "
                             "decode the codes with the same choice")
    parser.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N (default: cpu)")


def _run_encode(args: argparse.Namespace) -> int:
    from wavegen.codes import load_autoencoder, plan_encode, run_encode
    from wavegen.utils.device import parse_device

    device = parse_device(args.device)
    autoencoder = load_autoencoder(args.bundle, use_ema=not args.raw_weights, device=device)
    levels = range(autoencoder.num_levels) if args.levels is None else args.levels
    levels = sorted({autoencoder.check_level(level) for level in levels})
    jobs = plan_encode(args.audio, args.output, levels)
    run_encode(autoencoder, jobs)
    return 0


register(Command(
    name="encode",
    help="turn audio into the codes of a VQ-VAE bundle, one .npz per file and level",
    add_arguments=_add_encode_arguments,
    run=_run_encode,
))


# --------------------------------------------------------------------------- decode


def _add_decode_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("bundle", metavar="BUNDLE",
                        help="the VQ-VAE bundle that wrote the codes (its fingerprint is "
                             "checked)")
    parser.add_argument("codes", nargs="+", metavar="CODES",
                        help="codes files (.npz from `wavegen encode`) or folders of them")
    parser.add_argument("-o", "--output", required=True,
                        help="output .wav/.flac/.ogg for one codes file, else a folder "
                             "(NAME.levelL.wav per codes file)")
    parser.add_argument("--raw-weights", action="store_true",
                        help="use the raw trained weights (for codes encoded with them)")
    parser.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N (default: cpu)")


def _run_decode(args: argparse.Namespace) -> int:
    from wavegen.codes import load_autoencoder, plan_decode, run_decode
    from wavegen.utils.device import parse_device

    device = parse_device(args.device)
    jobs = plan_decode(args.codes, args.output)
    autoencoder = load_autoencoder(args.bundle, use_ema=not args.raw_weights, device=device)
    run_decode(autoencoder, jobs)
    return 0


register(Command(
    name="decode",
    help="turn codes written by `wavegen encode` back into audio with the same VQ-VAE bundle",
    add_arguments=_add_decode_arguments,
    run=_run_decode,
))
