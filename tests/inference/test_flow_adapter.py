"""Flow bundles through the inference layer and `wavegen vocode`: chunked rendering with
positional noise, seeds, sigma, bf16, the bias denoiser."""

import numpy as np
import soundfile as sf
import torch

from families import waveglow_bundle

from wavegen.cli import main
from wavegen.inference import InferenceOptions, load
from wavegen.inference.conditioning import Conditioning


def _mel(frames=40, seed=0):
    generator = torch.Generator().manual_seed(seed)
    return -6.0 + 2.0 * torch.randn(1, 16, frames, generator=generator)


def _run(pipeline, mel, **options):
    return pipeline.run(Conditioning("mel", mel), InferenceOptions(**options)).audio


def test_chunked_equals_one_pass_when_the_overlap_covers_the_receptive_field(tmp_path):
    model, bundle = waveglow_bundle(tmp_path / "flow")
    config = model.config
    overlap = -(-config.receptive_field // config.hop_length)
    pipeline = load(bundle)
    mel = _mel(40)
    whole = _run(pipeline, mel, chunk_frames=40, overlap_frames=0, sigma=0.7, seed=3)
    chunked = _run(pipeline, mel, chunk_frames=7, overlap_frames=overlap, sigma=0.7, seed=3)
    assert whole.shape == (1, 1, 40 * 64)
    assert (chunked - whole).abs().max() < 1e-5
    bare = _run(pipeline, mel, chunk_frames=7, overlap_frames=0, sigma=0.7, seed=3)
    assert (bare - whole).abs().max() > 1e-4  # the context matters, so the test can fail


def test_seed_and_sigma(tmp_path):
    _, bundle = waveglow_bundle(tmp_path / "flow")
    pipeline = load(bundle)
    mel = _mel(12)
    a = _run(pipeline, mel, seed=1)
    assert torch.equal(a, _run(pipeline, mel, seed=1))
    assert not torch.equal(a, _run(pipeline, mel, seed=2))
    # sigma 0 is the flow's mean: no noise at all
    assert torch.equal(_run(pipeline, mel, seed=1, sigma=0.0), _run(pipeline, mel, seed=2, sigma=0.0))
    loud = _run(pipeline, mel, seed=1, sigma=1.0)
    quiet = _run(pipeline, mel, seed=1, sigma=0.1)
    assert loud.std() > quiet.std()
    bf16 = _run(pipeline, mel, seed=1, bf16=True)
    assert torch.isfinite(bf16).all() and (bf16 - a).abs().max() < 0.1 * a.abs().max() + 1e-3


def test_vocode_cli_with_sigma_and_denoise(tmp_path, capsys):
    _, bundle = waveglow_bundle(tmp_path / "flow")
    t = np.arange(16000) / 16000
    sf.write(tmp_path / "tone.wav", 0.3 * np.sin(2 * np.pi * 440 * t), 16000)
    out = tmp_path / "out.wav"
    assert main(["vocode", bundle, "--wav", str(tmp_path / "tone.wav"), "-o", str(out),
                 "--sigma", "0.5", "--chunk-frames", "50"]) == 0
    plain, rate = sf.read(out)
    assert rate == 16000 and plain.shape == (16000,)
    assert "real-time factor" in capsys.readouterr().out
    denoised_path = tmp_path / "denoised.wav"
    assert main(["vocode", bundle, "--wav", str(tmp_path / "tone.wav"), "-o",
                 str(denoised_path), "--sigma", "0.5", "--chunk-frames", "50",
                 "--denoise", "1.0"]) == 0
    denoised, _ = sf.read(denoised_path)
    assert denoised.shape == plain.shape
    assert not np.allclose(denoised, plain)
