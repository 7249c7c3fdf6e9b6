"""A family that wavegen has never heard of plugs in with one registry entry.

Two families defined only in the tests (a GRU sample-level model, a mel-conditioned
noise-driven denoiser used as a vocoder) are registered here and then go the whole way a
user goes, through the command line only: ``wavegen train`` from a recipe, a bundle in the
run folder, ``wavegen sample`` / ``wavegen vocode`` on that bundle with the default
``--backend auto``. Nothing outside the registry entry and the test modules knows them.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
import soundfile as sf

from families import (DENOISER, DenoiserConfig, GRUConfig, TinyDenoiser, TinyGRU,
                      diffusion_recipe, write)
from wavegen.audio.signals import chord
from wavegen.checkpoint import load_bundle
from wavegen.cli import main
from wavegen.models.protocols import NOISE_DRIVEN, SAMPLE_LEVEL
from wavegen.models.registry import Family, register_family, unregister_family

GRU = "test-gru"


@pytest.fixture(scope="module", autouse=True)
def families():
    registered = [register_family(Family(GRU, GRUConfig, TinyGRU, SAMPLE_LEVEL)),
                  register_family(Family(DENOISER, DenoiserConfig, TinyDenoiser, NOISE_DRIVEN,
                                         task="diffusion"))]
    yield registered
    for family in registered:
        unregister_family(family.name)


def gru_recipe() -> dict[str, Any]:
    """The GRU on tones; no ``task:`` (the family's own, likelihood)."""
    return {"name": "tiny-gru", "model": {"family": GRU, "classes": 64, "hidden": 24, "sample_rate": 8000},
            "data": {"kind": "tones", "sample_rate": 8000, "crop_samples": 256, "size": 32,
                     "validation_size": 4},
            "train": {"steps": 6, "batch_size": 4, "lr": 0.01, "log_every": 3, "val_every": 3,
                      "val_batches": 1, "checkpoint_every": 3, "sample_seconds": 0.01,
                      "device": "cpu"}}


def run(capsys, *argv: str) -> tuple[int, str, str]:
    status = main([str(a) for a in argv])
    captured = capsys.readouterr()
    return status, captured.out, captured.err


def test_a_sample_level_family_trains_and_samples_from_the_command_line(tmp_path, capsys):
    recipe = write(tmp_path, gru_recipe())
    status, _, err = run(capsys, "train", recipe, "--out", tmp_path / "run", "--no-progress")
    assert status == 0, err
    best = tmp_path / "run" / "checkpoints" / "best"
    model, info = load_bundle(best)
    assert isinstance(model, TinyGRU) and info.family == GRU and info.conditioning == "none"

    outputs = []
    for name in ("a.wav", "b.wav"):
        status, out, err = run(capsys, "sample", tmp_path / "run" / "checkpoints" / "latest",
                               "--seconds", "0.05", "--seed", "3", "-o", tmp_path / name)
        assert status == 0, err
        # --backend auto: every fast kernel is WaveNet-only, so one notice and the reference
        assert "implements WaveNet only, not TinyGRU" in err and "using reference" in err
        audio, rate = sf.read(tmp_path / name, dtype="float32")
        assert rate == 8000 and audio.shape == (400,) and np.isfinite(audio).all()
        outputs.append(audio)
    assert np.array_equal(*outputs)  # seeded
    assert len(np.unique(outputs[0])) > 4  # sampled, not a constant


def test_a_noise_driven_vocoder_family_trains_and_vocodes_from_the_command_line(tmp_path,
                                                                                capsys):
    recipe = write(tmp_path, diffusion_recipe())
    status, _, err = run(capsys, "train", recipe, "--out", tmp_path / "run", "--no-progress")
    assert status == 0, err
    bundle = tmp_path / "run" / "checkpoints" / "best"
    model, info = load_bundle(bundle)
    assert isinstance(model, TinyDenoiser) and info.conditioning == "mel"
    assert info.process is not None and info.process["sampler_steps"] == 4

    wav = tmp_path / "chord.wav"
    sf.write(wav, chord(8000, 0.5), 8000)
    outputs = []
    for name in ("a.wav", "b.wav"):
        status, out, err = run(capsys, "vocode", bundle, "--wav", wav, "-o", tmp_path / name,
                               "--steps", "3", "--seed", "1")
        assert status == 0, err
        audio, rate = sf.read(tmp_path / name, dtype="float32")
        assert rate == 8000 and abs(audio.shape[0] - 4000) <= 64 and np.isfinite(audio).all()
        outputs.append(audio)
    assert np.array_equal(*outputs) and np.abs(outputs[0]).max() > 0

    # `sample` takes the same bundle and input (copy synthesis) to the same audio.
    status, _, err = run(capsys, "sample", bundle, "--wav", wav, "-o", tmp_path / "s.wav",
                         "--steps", "3", "--seed", "1")
    assert status == 0, err
    assert np.array_equal(sf.read(tmp_path / "s.wav", dtype="float32")[0], outputs[0])
    # Without its conditioning it is one line, nothing written.
    status, _, err = run(capsys, "sample", bundle, "--seconds", "0.1", "-o", tmp_path / "x.wav")
    assert status == 2 and err == "wavegen: error: this model is mel-conditioned: give --wav or --mel\n"
    assert not (tmp_path / "x.wav").exists()
