"""Bad input, verb by verb: one line on stderr, a non-zero exit, nothing left behind.

Each verb has one table of :class:`Case` rows; a new verb or a new kind of bad input is a
new row, not a new test. A row's argv may name placeholders that the fixtures below fill:

* ``{vocoder}`` / ``{mel_model}`` / ``{wavenet}`` / ``{diffwave}`` / ``{waveglow}``: small
  bundles (HiFi-GAN, mel-conditioned WaveNet, unconditional WaveNet, mel DiffWave, WaveGlow),
  never trained;
* ``{tone}`` / ``{silence}``: 0.3 s WAV files at 16 kHz;
* ``{bad:NAME}``: a bad input file from :data:`BAD_FILES` (made on the fly);
* ``{out}``: a fresh output folder that must stay empty.

``scripts/probe_bad_input.py`` runs the same tables through real ``wavegen`` processes and
prints the reliability table recorded in docs/RESULTS.md.
"""

from __future__ import annotations

import math
import pickle
import struct
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from families import diffwave_bundle, waveglow_bundle

from wavegen.audio.features import PRESETS
from wavegen.checkpoint import BundleInfo, save_bundle
from wavegen.cli import main
from wavegen.models.hifigan import HiFiGANConfig, HiFiGANGenerator
from wavegen.models.wavenet import WaveNet, WaveNetConfig

FEATURES = PRESETS["hifigan-22k"]  # the vocoder's front-end: ln, clamp 1e-5, 80 mels
MEL_FEATURES = PRESETS["hifigan-16k"]  # the mel-conditioned WaveNet's front-end


@dataclass(frozen=True)
class Case:
    """One bad invocation: ``argv`` (with placeholders), a fragment of the error line, the
    exit status (2: bad input; 1: a fault of the machine or a folder job with failures)."""

    id: str
    argv: tuple[str, ...]
    message: str
    status: int = 2


# --------------------------------------------------------------------------- bad files


def _npy_with_header(shape: tuple[int, ...], payload: bytes = b"") -> bytes:
    """A .npy file whose header declares ``shape`` (float32) followed by ``payload``."""
    header = f"{{'descr': '<f4', 'fortran_order': False, 'shape': {shape}, }}".encode()
    header += b" " * (64 - (10 + len(header) + 1) % 64) + b"\n"
    return b"\x93NUMPY\x01\x00" + struct.pack("<H", len(header)) + header + payload


def _log_mel(features, log: str) -> np.ndarray:
    """A real log-mel of a plucked tone then silence, compressed as ``log`` says."""
    from wavegen.audio.signals import demo_music
    from wavegen.audio.spectral import LogMelSpectrogram

    wave = torch.from_numpy(demo_music(features.sample_rate, 1.0))
    wave = torch.cat([wave, torch.zeros(features.sample_rate // 2)])
    mel = LogMelSpectrogram(features)(wave).numpy()  # ln, floor ln(1e-5)
    return {"ln": mel, "log10": mel / math.log(10.0), "db": mel * 20.0 / math.log(10.0)}[log]


def _write_bad_file(name: str, path: Path) -> Path:
    """Create the bad input ``name`` at ``path`` (suffix chosen here); return its path."""
    rng = np.random.default_rng(0)
    good = (rng.standard_normal((80, 20)) - 4).astype(np.float32)
    target = path.with_suffix(".npy")
    if name == "npz_renamed":
        np.savez(path.with_suffix(".npz"), mel=good)
        path.with_suffix(".npz").rename(target)
    elif name == "zero_bytes":
        target.write_bytes(b"")
    elif name == "absurd_shape":
        target.write_bytes(_npy_with_header((80, 100_000_000_000), b"\0" * 64))
    elif name == "truncated":
        target.write_bytes(_npy_with_header((80, 20), b"\0" * 100))
    elif name in ("int", "bool", "complex"):
        dtype = {"int": np.int64, "bool": np.bool_, "complex": np.complex64}[name]
        np.save(target, good.astype(dtype))
    elif name in ("nan", "inf"):
        bad = good.copy()
        bad[3, 7] = np.nan if name == "nan" else np.inf
        np.save(target, bad)
    elif name == "text":
        target.write_text("80 20\n0.1 0.2 0.3\n")
    elif name == "wav":
        sf.write(target, np.zeros(22050, np.float32), 22050, format="WAV")
    elif name == "object":
        np.save(target, np.array([{"a": 1}], dtype=object), allow_pickle=True)
    elif name == "pickle":
        target.write_bytes(pickle.dumps({"mel": [1, 2, 3]}, protocol=4))
    elif name == "three_d":
        np.save(target, good[None])
    elif name == "wrong_bands":
        np.save(target, good[:64])
    elif name == "log10_mel":
        np.save(target, _log_mel(FEATURES, "log10"))
    elif name == "db_mel":
        np.save(target, _log_mel(FEATURES, "db"))
    elif name == "mel_log10_16k":
        np.save(target, _log_mel(MEL_FEATURES, "log10"))
    elif name == "nan_wav":
        target = path.with_suffix(".wav")
        samples = np.zeros(22050, np.float32)
        samples[100] = np.nan
        sf.write(target, samples, 22050, subtype="FLOAT")
    elif name == "inf_wav":
        target = path.with_suffix(".wav")
        samples = 0.1 * np.ones(8000, np.float32)
        samples[10] = np.inf
        sf.write(target, samples, 16000, subtype="FLOAT")
    elif name == "binary_recipe":
        target = path.with_suffix(".yaml")
        target.write_bytes(bytes(rng.integers(0, 256, 512, dtype=np.uint8)))
    elif name in RECIPE_EDITS:
        recipe, old, new = RECIPE_EDITS[name]
        text = (RECIPES / f"{recipe}.yaml").read_text(encoding="utf-8")
        assert old in text, (name, old)
        target = path.with_suffix(".yaml")
        target.write_text(text.replace(old, new), encoding="utf-8")
    elif name == "list_recipe":
        target = path.with_suffix(".yaml")
        target.write_text("- model\n- data\n")
    elif name == "pickled_module":
        target = path.with_suffix(".pt")
        torch.save(torch.nn.Conv1d(80, 4, 7), target)
    elif name == "not_a_checkpoint":
        target = path.with_suffix(".pt")
        target.write_bytes(b"GIF89a" + bytes(64))
    elif name == "midi_folder_of_junk":
        target = path
        target.mkdir()
        (target / "song.mid").write_bytes(b"MThd but not really")
    else:
        raise KeyError(name)
    return target


RECIPES = Path(__file__).resolve().parent.parent / "recipes"

#: Recipes made by editing a shipped one: name -> (recipe, text, replacement).
RECIPE_EDITS = {
    "recipe_huge_channels": ("wavenet-tones-tiny", "residual_channels: 16",
                             "residual_channels: 1000000000"),
    "recipe_float_channels": ("wavenet-tones-tiny", "residual_channels: 16",
                              "residual_channels: 1e9"),
    "recipe_huge_layers": ("wavenet-tones-tiny", "layers: 6", "layers: 100000000"),
    "recipe_word_layers": ("wavenet-tones-tiny", "layers: 6", "layers: ten"),
    "recipe_huge_batch": ("wavenet-tones-tiny", "batch_size: 8", "batch_size: 4000000"),
    "recipe_huge_hifigan": ("hifigan-tiny", "upsample_initial_channel: 64",
                            "upsample_initial_channel: 1000000000"),
}

BAD_FILES = ("npz_renamed", "zero_bytes", "absurd_shape", "truncated", "int", "bool", "complex",
             "nan", "inf", "text", "wav", "object", "pickle", "three_d", "wrong_bands",
             "log10_mel", "db_mel", "mel_log10_16k", "nan_wav", "inf_wav", "binary_recipe",
             *RECIPE_EDITS, "list_recipe", "pickled_module", "not_a_checkpoint",
             "midi_folder_of_junk")


# --------------------------------------------------------------------------- the tables

#: ``wavegen vocode`` on mel files and audio (``{vocoder}`` is a HiFi-GAN bundle).
VOCODE: list[Case] = [
    Case("npz renamed .npy", ("vocode", "{vocoder}", "--mel", "{bad:npz_renamed}", "-o", "{out}/x.wav"),
         "a .npz archive"),
    Case("zero-byte .npy", ("vocode", "{vocoder}", "--mel", "{bad:zero_bytes}", "-o", "{out}/x.wav"),
         "empty file (0 bytes)"),
    Case("absurd declared shape", ("vocode", "{vocoder}", "--mel", "{bad:absurd_shape}", "-o",
                                   "{out}/x.wav"), "truncated or corrupt"),
    Case("truncated .npy", ("vocode", "{vocoder}", "--mel", "{bad:truncated}", "-o", "{out}/x.wav"),
         "truncated or corrupt"),
    Case("int array", ("vocode", "{vocoder}", "--mel", "{bad:int}", "-o", "{out}/x.wav"),
         "an integer (int64) array"),
    Case("bool array", ("vocode", "{vocoder}", "--mel", "{bad:bool}", "-o", "{out}/x.wav"),
         "a boolean (bool) array"),
    Case("complex array", ("vocode", "{vocoder}", "--mel", "{bad:complex}", "-o", "{out}/x.wav"),
         "a complex (complex64) array"),
    Case("NaN values", ("vocode", "{vocoder}", "--mel", "{bad:nan}", "-o", "{out}/x.wav"),
         "nan.npy: 1 NaN and 0 infinite values"),
    Case("inf values", ("vocode", "{vocoder}", "--mel", "{bad:inf}", "-o", "{out}/x.wav"),
         "inf.npy: 0 NaN and 1 infinite values"),
    Case("text file", ("vocode", "{vocoder}", "--mel", "{bad:text}", "-o", "{out}/x.wav"),
         "a text file, not a .npy array"),
    Case("wav file as --mel", ("vocode", "{vocoder}", "--mel", "{bad:wav}", "-o", "{out}/x.wav"),
         "a WAV audio file, not a .npy array (give audio with --wav)"),
    Case("object array", ("vocode", "{vocoder}", "--mel", "{bad:object}", "-o", "{out}/x.wav"),
         "wavegen never unpickles data"),
    Case("raw pickle", ("vocode", "{vocoder}", "--mel", "{bad:pickle}", "-o", "{out}/x.wav"),
         "a Python pickle"),
    Case("3-D array", ("vocode", "{vocoder}", "--mel", "{bad:three_d}", "-o", "{out}/x.wav"),
         "does not match the features [80, frames]"),
    Case("64 bands for 80", ("vocode", "{vocoder}", "--mel", "{bad:wrong_bands}", "-o",
                             "{out}/x.wav"), "shape (64, 20)"),
    Case("log10 mel for an ln vocoder", ("vocode", "{vocoder}", "--mel", "{bad:log10_mel}", "-o",
                                         "{out}/x.wav"), "it looks like log10 with clamp 1e-05"),
    Case("dB mel for an ln vocoder", ("vocode", "{vocoder}", "--mel", "{bad:db_mel}", "-o",
                                      "{out}/x.wav"), "it looks like dB with clamp 1e-05"),
    Case("NaN samples in --wav", ("vocode", "{vocoder}", "--wav", "{bad:nan_wav}", "-o",
                                  "{out}/x.wav"), "contains 1 NaN sample"),
    Case("device tpu", ("vocode", "{vocoder}", "--mel", "{bad:nan}", "-o", "{out}/x.wav",
                        "--device", "tpu"), "--device 'tpu': not a device name"),
    Case("device cuda:7 here", ("vocode", "{vocoder}", "--mel", "{bad:nan}", "-o", "{out}/x.wav",
                                "--device", "cuda:7"), "--device cuda:7"),
    Case("vocode a WaveNet", ("vocode", "{wavenet}", "--mel", "{bad:nan}", "-o", "{out}/x.wav"),
         "use `wavegen sample`"),
    Case("pointer outside the run", ("vocode", "{bad_pointer}", "--mel", "{bad:nan}", "-o",
                                     "{out}/x.wav"), "a pointer may only name a folder beside it"),
]

#: ``wavegen sample`` (``{mel_model}``: mel-conditioned WaveNet; ``{wavenet}``: unconditional).
SAMPLE: list[Case] = [
    Case("npz renamed .npy", ("sample", "{mel_model}", "--mel", "{bad:npz_renamed}", "-o",
                              "{out}/x.wav"), "a .npz archive"),
    Case("zero-byte .npy", ("sample", "{mel_model}", "--mel", "{bad:zero_bytes}", "-o",
                            "{out}/x.wav"), "empty file (0 bytes)"),
    Case("absurd declared shape", ("sample", "{mel_model}", "--mel", "{bad:absurd_shape}", "-o",
                                   "{out}/x.wav"), "truncated or corrupt"),
    Case("int array", ("sample", "{mel_model}", "--mel", "{bad:int}", "-o", "{out}/x.wav"),
         "an integer (int64) array"),
    Case("bool array", ("sample", "{mel_model}", "--mel", "{bad:bool}", "-o", "{out}/x.wav"),
         "a boolean (bool) array"),
    Case("complex array", ("sample", "{mel_model}", "--mel", "{bad:complex}", "-o", "{out}/x.wav"),
         "a complex (complex64) array"),
    Case("NaN values", ("sample", "{mel_model}", "--mel", "{bad:nan}", "-o", "{out}/x.wav"),
         "1 NaN and 0 infinite values"),
    Case("inf values", ("sample", "{mel_model}", "--mel", "{bad:inf}", "-o", "{out}/x.wav"),
         "0 NaN and 1 infinite values"),
    Case("text file", ("sample", "{mel_model}", "--mel", "{bad:text}", "-o", "{out}/x.wav"),
         "a text file, not a .npy array"),
    Case("wav file as --mel", ("sample", "{mel_model}", "--mel", "{bad:wav}", "-o", "{out}/x.wav"),
         "a WAV audio file"),
    Case("log10 mel for an ln model", ("sample", "{mel_model}", "--mel", "{bad:mel_log10_16k}",
                                       "-o", "{out}/x.wav"), "it looks like log10"),
    Case("NaN samples in --wav", ("sample", "{mel_model}", "--wav", "{bad:nan_wav}", "-o",
                                  "{out}/x.wav"), "contains 1 NaN sample"),
    Case("--seconds inf", ("sample", "{wavenet}", "--seconds", "inf", "-o", "{out}/x.wav"),
         "argument --seconds: must be a finite number of seconds > 0, got inf"),
    Case("--seconds nan", ("sample", "{wavenet}", "--seconds", "nan", "-o", "{out}/x.wav"),
         "must be a finite number of seconds"),
    Case("--seconds 1e12", ("sample", "{wavenet}", "--seconds", "1e12", "-o", "{out}/x.wav"),
         "longer than the 10800 s"),
    Case("--temperature inf", ("sample", "{wavenet}", "--seconds", "0.01", "--temperature", "inf",
                               "-o", "{out}/x.wav"), "argument --temperature: must be finite"),
    Case("sample a vocoder", ("sample", "{vocoder}", "--seconds", "1", "-o", "{out}/x.wav"),
         "use `wavegen vocode`"),
    Case("pointer outside the run", ("sample", "{bad_pointer}", "--seconds", "1", "-o",
                                     "{out}/x.wav"), "a pointer may only name a folder beside it"),
]

#: ``wavegen info`` and ``wavegen spec``.
INFO: list[Case] = [
    Case("info of a .npy", ("info", "{bad:nan}"), "not a readable audio file"),
    Case("spec of a text file", ("spec", "{bad:text}", "-o", "{out}/x.png"),
         "not a readable audio file"),
]

def _train(recipe: str) -> tuple[str, ...]:
    return ("train", "{bad:" + recipe + "}", "--out", "{out}/run", "--no-progress")


#: ``wavegen train`` on bad recipes (refused before anything is allocated or written).
TRAIN: list[Case] = [
    Case("residual_channels 1e9 as a number", _train("recipe_huge_channels"),
         "model: residual_channels=1000000000 gives about"),
    Case("residual_channels '1e9' (YAML string)", _train("recipe_float_channels"),
         "write it as a whole number"),
    Case("layers 1e8", _train("recipe_huge_layers"), "layers=100000000"),
    Case("layers: ten", _train("recipe_word_layers"), "model.layers must be int, got str 'ten'"),
    Case("batch of 4e6 crops", _train("recipe_huge_batch"), "data.crop_samples x train.batch_size"),
    Case("HiFi-GAN upsample_initial_channel 1e9", _train("recipe_huge_hifigan"),
         "upsample_initial_channel=1000000000 gives about"),
    Case("binary recipe", _train("binary_recipe"), "not a text file"),
    Case("recipe that is a list", _train("list_recipe"), "must be a YAML mapping"),
    Case("missing recipe", ("train", "{out}/nope.yaml", "--out", "{out}/run"), "nope.yaml"),
]

#: ``wavegen import`` of other projects' checkpoints.
IMPORT: list[Case] = [
    Case("pickled nn.Module (hifigan)", ("import", "hifigan-official", "{bad:pickled_module}", "-o",
                                         "{out}/b"), "wavegen never unpickles code"),
    Case("pickled nn.Module (melgan)", ("import", "melgan-official", "{bad:pickled_module}", "-o",
                                        "{out}/b"), "wavegen never unpickles code"),
    Case("pickled nn.Module (diffwave)", ("import", "diffwave-official", "{bad:pickled_module}",
                                          "-o", "{out}/b"), "wavegen never unpickles code"),
    Case("not a checkpoint (diffwave)", ("import", "diffwave-official", "{bad:not_a_checkpoint}",
                                         "-o", "{out}/b"), "not_a_checkpoint.pt"),
    Case("not a checkpoint", ("import", "hifigan-official", "{bad:not_a_checkpoint}", "-o",
                              "{out}/b"), "not_a_checkpoint.pt"),
    Case("pickled Conv1d (waveglow)", ("import", "waveglow-official", "{bad:pickled_module}",
                                       "-o", "{out}/b"), "not a glow.WaveGlow"),
    Case("not a checkpoint (waveglow)", ("import", "waveglow-official",
                                         "{bad:not_a_checkpoint}", "-o", "{out}/b"),
         "cannot read WaveGlow checkpoint"),
    Case("--hop-length for hifigan", ("import", "hifigan-official", "{bad:not_a_checkpoint}",
                                      "-o", "{out}/b", "--hop-length", "256"),
         "--hop-length is for waveglow-official"),
    Case("melgan --ngf 1e9", ("import", "melgan-official", "{bad:not_a_checkpoint}", "-o",
                              "{out}/b", "--ngf", "1000000000"), "ngf=1000000000 gives about"),
]

#: ``wavegen prepare``.
PREPARE: list[Case] = [
    Case("MIDI folder of junk", ("prepare", "{out}/corpus", "--midi", "{bad:midi_folder_of_junk}"),
         "none of the 1 MIDI files is usable"),
    Case("--generate -3", ("prepare", "{out}/corpus", "--generate", "-3"),
         "argument --generate: must be >= 0, got -3"),
    Case("--seconds inf", ("prepare", "{out}/corpus", "--generate", "1", "--seconds", "inf"),
         "argument --seconds: must be a finite number of seconds > 0, got inf"),
    Case("--seconds 1e9", ("prepare", "{out}/corpus", "--generate", "1", "--seconds", "1e9"),
         "a generated piece may last"),
]

#: Diffusion bundles (``{diffwave}``: untrained tiny mel DiffWave, 16 mels) in vocode, sample
#: and ``wavegen tune-steps``.
DIFFUSION: list[Case] = [
    Case("80-band mel for 16", ("vocode", "{diffwave}", "--mel", "{bad:wrong_bands}", "-o",
                                "{out}/x.wav"), "does not match the features [16, frames]"),
    Case("unknown sampler", ("vocode", "{diffwave}", "--wav", "{tone}", "-o", "{out}/x.wav",
                             "--sampler", "euler"), "unknown --sampler 'euler'"),
    Case("0 steps", ("vocode", "{diffwave}", "--wav", "{tone}", "-o", "{out}/x.wav",
                     "--steps", "0"), "argument --steps: must be >= 1, got 0"),
    Case("-4 steps", ("sample", "{diffwave}", "--wav", "{tone}", "-o", "{out}/x.wav",
                      "--steps", "-4"), "argument --steps: must be >= 0, got -4"),
    Case("eta 2", ("vocode", "{diffwave}", "--wav", "{tone}", "-o", "{out}/x.wav",
                   "--eta", "2"), "eta must be in [0, 1], got 2"),
    Case("sigma for a diffusion model", ("vocode", "{diffwave}", "--wav", "{tone}", "-o",
                                         "{out}/x.wav", "--sigma", "0.5"), "sigma"),
    Case("prompt for a mel model", ("sample", "{diffwave}", "--wav", "{tone}", "--prompt",
                                    "{tone}", "-o", "{out}/x.wav"), "prompt"),
    Case("tune a GAN vocoder", ("tune-steps", "{vocoder}", "--wav", "{tone}"),
         "not a diffusion bundle"),
    Case("tune on silence", ("tune-steps", "{diffwave}", "--wav", "{silence}", "--steps", "2"),
         "the clip is silent"),
    Case("tune 0 steps", ("tune-steps", "{diffwave}", "--wav", "{tone}", "--steps", "0"),
         "argument --steps: must be >= 1, got 0"),
    Case("tune past the clip", ("tune-steps", "{diffwave}", "--wav", "{tone}", "--offset", "9"),
         "tone.wav"),
    Case("tune without a clip", ("tune-steps", "{diffwave}", "--wav", "{out}/none.wav"),
         "none.wav"),
]

#: Flow bundles (``{waveglow}``: untrained tiny WaveGlow, 16 mels) and the bias denoiser.
FLOW: list[Case] = [
    Case("80-band mel for 16", ("vocode", "{waveglow}", "--mel", "{bad:wrong_bands}", "-o",
                                "{out}/x.wav"), "does not match the features [16, frames]"),
    Case("steps for a flow", ("vocode", "{waveglow}", "--wav", "{tone}", "-o", "{out}/x.wav",
                              "--steps", "6"), "steps is for diffusion models"),
    Case("negative sigma", ("vocode", "{waveglow}", "--wav", "{tone}", "-o", "{out}/x.wav",
                            "--sigma", "-0.5"), "sigma must be a finite number >= 0"),
    Case("negative denoise", ("vocode", "{waveglow}", "--wav", "{tone}", "-o", "{out}/x.wav",
                              "--denoise", "-1"), "--denoise must be >= 0"),
    Case("nan denoise", ("vocode", "{vocoder}", "--wav", "{tone}", "-o", "{out}/x.wav",
                         "--denoise", "nan"), "argument --denoise"),
    Case("sigma for a GAN", ("vocode", "{vocoder}", "--wav", "{tone}", "-o", "{out}/x.wav",
                             "--sigma", "0.5"), "sigma"),
]

TABLES: dict[str, list[Case]] = {"vocode": VOCODE, "sample": SAMPLE, "info": INFO,
                                 "train": TRAIN, "import": IMPORT, "prepare": PREPARE,
                                 "diffusion": DIFFUSION, "flow": FLOW}


# --------------------------------------------------------------------------- fixtures


def make_bundles(root: Path) -> dict[str, Path]:
    """Small untrained bundles of each kind under ``root``, and a run folder whose
    ``checkpoints/latest`` names a folder outside it."""
    torch.manual_seed(0)
    hifigan = HiFiGANGenerator(HiFiGANConfig.preset("v3", upsample_initial_channel=32))
    save_bundle(root / "vocoder", hifigan, BundleInfo("hifigan", hifigan.config, 22050, FEATURES))
    free = WaveNetConfig(layers=3, stacks=1, residual_channels=8, gate_channels=8,
                         skip_channels=8, sample_rate=8000)
    save_bundle(root / "wavenet", WaveNet(free), BundleInfo("wavenet", free, 8000))
    mel = WaveNetConfig(layers=3, stacks=1, residual_channels=8, gate_channels=8, skip_channels=8,
                        local_channels=80, hop_length=256, upsample_factors=(16, 16),
                        sample_rate=16000)
    save_bundle(root / "mel_model", WaveNet(mel),
                BundleInfo("wavenet", mel, 16000, MEL_FEATURES,
                           extra={"recipe": {"data": {"conditioning": "mel"}}}))
    diffwave_bundle(root / "diffwave")
    waveglow_bundle(root / "waveglow")
    checkpoints = root / "run" / "checkpoints"
    checkpoints.mkdir(parents=True)
    (checkpoints / "latest").write_text("../../wavenet\n")
    sf.write(root / "tone.wav", 0.3 * np.sin(np.arange(4800) * 0.1), 16000)
    sf.write(root / "silence.wav", np.zeros(4800), 16000)
    return {"vocoder": root / "vocoder", "wavenet": root / "wavenet",
            "mel_model": root / "mel_model", "diffwave": root / "diffwave",
            "waveglow": root / "waveglow",
            "bad_pointer": checkpoints / "latest", "tone": root / "tone.wav",
            "silence": root / "silence.wav"}


def make_bad_files(root: Path) -> dict[str, Path]:
    """Every file of :data:`BAD_FILES` under ``root``."""
    return {name: _write_bad_file(name, root / name) for name in BAD_FILES}


@pytest.fixture(scope="module")
def bundles(tmp_path_factory) -> dict[str, Path]:
    return make_bundles(tmp_path_factory.mktemp("bundles"))


@pytest.fixture(scope="module")
def bad_files(tmp_path_factory) -> dict[str, Path]:
    return make_bad_files(tmp_path_factory.mktemp("bad"))


def expand(argv: tuple[str, ...], bundles: dict[str, Path], bad_files: dict[str, Path],
           out: Path) -> list[str]:
    """Fill ``{vocoder}``, ``{bad:NAME}``, ``{out}`` ... in ``argv``."""
    values = {key: str(value) for key, value in bundles.items()}
    values.update({f"bad:{name}": str(path) for name, path in bad_files.items()})
    values["out"] = str(out)
    result = []
    for arg in argv:
        for key, value in values.items():
            arg = arg.replace("{" + key + "}", value)
        result.append(arg)
    return result


def files_under(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*"))


def check_refusal(case: Case, argv: list[str], out: Path, capsys) -> str:
    """Run ``argv`` in-process: the exit status, one error line, nothing written."""
    status = main(argv)
    captured = capsys.readouterr()
    assert status == case.status, f"{case.id}: exit {status}\n{captured.err}"
    lines = captured.err.splitlines()
    errors = [line for line in lines if line.startswith("wavegen: error:")]
    assert len(errors) == 1, f"{case.id}: stderr was {captured.err!r}"
    assert case.message in errors[0], f"{case.id}: {errors[0]!r}"
    assert files_under(out) == [], f"{case.id}: left {files_under(out)}"
    return errors[0]


def _rows():
    return [pytest.param(case, id=f"{verb}: {case.id}")
            for verb, table in TABLES.items() for case in table]


@pytest.mark.parametrize("case", _rows())
def test_every_verb_refuses_its_bad_input(case, bundles, bad_files, tmp_path, capsys):
    out = tmp_path / "out"
    out.mkdir()
    check_refusal(case, expand(case.argv, bundles, bad_files, out), out, capsys)


# --------------------------------------------------------------------------- beyond the tables


def test_a_folder_job_skips_bad_files_and_vocodes_the_rest(bundles, bad_files, tmp_path, capsys):
    src = tmp_path / "mels"
    src.mkdir()
    good = _log_mel(FEATURES, "ln")[:, :12]
    np.save(src / "a_good.npy", good)
    for name in ("npz_renamed", "zero_bytes", "nan", "log10_mel", "object"):
        (src / f"b_{name}.npy").write_bytes(bad_files[name].read_bytes())
    (src / "sub").mkdir()
    np.save(src / "sub" / "c_good.npy", good)
    out = tmp_path / "out"
    status = main(["vocode", str(bundles["vocoder"]), "--mel", str(src), "-o", str(out)])
    captured = capsys.readouterr()
    assert status == 1
    skipped = [line for line in captured.err.splitlines() if line.startswith("skipped ")]
    assert len(skipped) == 5 and all(line.count(str(src)) == 1 for line in skipped)
    assert files_under(out) == ["a_good.wav", "sub", "sub/c_good.wav"]
    assert "vocoded 2 of 7 file(s)" in captured.out


def test_a_folder_job_of_only_bad_files_creates_no_output_folder(bundles, bad_files, tmp_path,
                                                                 capsys):
    src = tmp_path / "mels"
    (src / "deep").mkdir(parents=True)
    (src / "deep" / "x.npy").write_bytes(bad_files["zero_bytes"].read_bytes())
    (src / "y.npy").write_bytes(bad_files["text"].read_bytes())
    out = tmp_path / "out"
    assert main(["vocode", str(bundles["vocoder"]), "--mel", str(src), "-o", str(out)]) == 1
    assert not out.exists()
    assert capsys.readouterr().err.count("skipped ") == 2


def test_a_good_log_mel_of_silence_and_tone_is_accepted(bundles, tmp_path, capsys):
    np.save(tmp_path / "ok.npy", _log_mel(FEATURES, "ln"))
    assert main(["vocode", str(bundles["vocoder"]), "--mel", str(tmp_path / "ok.npy"), "-o",
                 str(tmp_path / "ok.wav")]) == 0
    assert sf.info(tmp_path / "ok.wav").frames == _log_mel(FEATURES, "ln").shape[1] * 256


def test_an_ln_mel_given_to_a_log10_vocoder_is_refused(tmp_path):
    from wavegen.audio.mel_file import read_log_mel
    from wavegen.errors import FeatureMismatchError

    np.save(tmp_path / "ln.npy", _log_mel(FEATURES, "ln"))
    log10 = FEATURES.replace(log="log10")
    with pytest.raises(FeatureMismatchError, match=r"values span \[-11.51.*in \[-5, 2.0"):
        read_log_mel(tmp_path / "ln.npy", log10)
    np.save(tmp_path / "log10.npy", _log_mel(FEATURES, "log10"))
    assert read_log_mel(tmp_path / "log10.npy", log10).shape[0] == 80


def test_vocode_help_says_a_npy_carries_no_front_end(capsys):
    assert main(["vocode", "--help"]) == 0
    text = " ".join(capsys.readouterr().out.split())
    assert "a .npy records no front-end" in text and "log10" in text


def test_every_sample_option_has_help(capsys):
    from wavegen.cli import build_parser

    parser = build_parser()
    sample = next(action for action in parser._subparsers._group_actions[0].choices.items()
                  if action[0] == "sample")[1]
    missing = [action.dest for action in sample._actions if not action.help]
    assert missing == []


def test_sample_accepts_a_runs_latest_pointer_and_prints_a_nonzero_real_time_factor(
        bundles, tmp_path, capsys):
    checkpoints = tmp_path / "run" / "checkpoints"
    checkpoints.mkdir(parents=True)
    import shutil
    shutil.copytree(bundles["wavenet"], checkpoints / "step-00000002")
    (checkpoints / "latest").write_text("step-00000002\n")
    out = tmp_path / "x.wav"
    assert main(["sample", str(checkpoints / "latest"), "--seconds", "0.5", "-o", str(out),
                 "--no-progress", "--backend", "reference"]) == 0
    line = capsys.readouterr().out
    factor = line.split("real-time factor ")[1].split(",")[0]
    assert float(factor) > 0 and "model loading excluded" in line, line
    assert sf.info(out).frames == 4000


def test_cfg_on_a_model_trained_without_conditioning_dropout_warns(bundles, tmp_path, capsys):
    assert main(["sample", str(bundles["mel_model"]), "--wav", str(_tone_wav(tmp_path)), "-o",
                 str(tmp_path / "g.wav"), "--cfg", "2", "--seconds", "0.05", "--no-progress",
                 "--backend", "reference"]) == 0
    err = capsys.readouterr().err
    assert "wavegen: warning: --cfg 2: this model was trained without conditioning dropout" in err


def _tone_wav(folder: Path) -> Path:
    t = np.arange(16000) / 16000
    path = folder / "tone.wav"
    sf.write(path, (0.3 * np.sin(2 * np.pi * 440 * t)).astype(np.float32), 16000)
    return path


def test_info_reports_nan_and_inf_samples(bad_files, capsys):
    assert main(["info", str(bad_files["inf_wav"])]) == 0
    out = capsys.readouterr().out
    assert "-inf" not in out
    assert "0 NaN and 1 infinite samples" in out
    assert "-20.00" in out  # peak of the finite samples: 0.1 is -20 dBFS
    assert main(["info", "--json", str(bad_files["nan_wav"])]) == 0
    import json
    row = json.loads(capsys.readouterr().out)[0]
    assert row["nan_samples"] == 1 and row["inf_samples"] == 0


def test_spec_warns_about_nan_samples(bad_files, tmp_path, capsys):
    assert main(["spec", str(bad_files["nan_wav"]), "-o", str(tmp_path / "s.png")]) == 0
    err = capsys.readouterr().err
    assert "wavegen: warning:" in err and "1 NaN and 0 infinite samples" in err
    assert (tmp_path / "s.png").stat().st_size > 0


def test_vocode_on_a_full_disk_names_the_file(bundles, tmp_path, capsys, monkeypatch):
    import errno

    from wavegen.audio import io as audio_io

    real = audio_io.sf.SoundFile

    class FullDisk(real):  # writes fail as a full disk makes them fail
        def write(self, data):
            raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(audio_io.sf, "SoundFile", FullDisk)
    np.save(tmp_path / "ok.npy", _log_mel(FEATURES, "ln")[:, :8])
    out = tmp_path / "out"
    out.mkdir()
    status = main(["vocode", str(bundles["vocoder"]), "--mel", str(tmp_path / "ok.npy"), "-o",
                   str(out / "ok.wav")])
    err = capsys.readouterr().err
    assert status == 1
    assert err.strip() == f"wavegen: error: {out / 'ok.wav'}: no space left on device"
    assert files_under(out) == []
