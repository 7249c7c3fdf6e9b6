"""`wavegen import` and `wavegen vocode`: official checkpoints in, audio out, bad input refused."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from wavegen.audio.features import PRESETS
from wavegen.audio.io import load_audio, save_audio
from wavegen.checkpoint import load_bundle
from wavegen.cli import main
from wavegen.models.hifigan import HiFiGANConfig, HiFiGANGenerator
from wavegen.models.melgan import MelGANConfig, MelGANGenerator
from wavegen.vocoder import Vocoder, receptive_frames


def official_layout(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """The model's weights under the official (torch.nn.utils.weight_norm) key names."""
    out = {}
    for key, value in model.state_dict().items():
        key = key.replace("parametrizations.weight.original0", "weight_g")
        key = key.replace("parametrizations.weight.original1", "weight_v")
        out[key] = value.clone()
    return out


def small_hifigan() -> HiFiGANGenerator:
    torch.manual_seed(0)
    return HiFiGANGenerator(HiFiGANConfig.preset("v3", upsample_initial_channel=32))


@pytest.fixture(scope="module")
def bundle(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("import")
    torch.save({"generator": official_layout(small_hifigan())}, root / "g_00100000")
    config = {"upsample_rates": [8, 8, 4], "upsample_kernel_sizes": [16, 16, 8],
              "upsample_initial_channel": 32, "resblock": "2", "resblock_kernel_sizes": [3, 5, 7],
              "resblock_dilation_sizes": [[1, 2], [2, 6], [3, 12]], "num_mels": 80,
              "n_fft": 1024, "hop_size": 256, "win_size": 1024, "sampling_rate": 22050,
              "fmin": 0, "fmax": 8000}
    (root / "config.json").write_text(__import__("json").dumps(config))
    out = root / "bundle"
    assert main(["import", "hifigan-official", str(root / "g_00100000"), "--config",
                 str(root / "config.json"), "-o", str(out)]) == 0
    return out


def test_an_imported_bundle_vocodes_like_the_original(bundle, tmp_path):
    model, info = load_bundle(bundle)
    assert info.family == "hifigan" and info.features == PRESETS["hifigan-22k"]
    assert info.conditioning == "mel"
    mel = torch.randn(80, 37) - 4
    np.save(tmp_path / "x.npy", mel.numpy())
    assert main(["vocode", str(bundle), "--mel", str(tmp_path / "x.npy"), "-o",
                 str(tmp_path / "x.wav")]) == 0
    audio, rate = load_audio(tmp_path / "x.wav")
    assert rate == 22050 and audio.shape == (1, 37 * 256)
    with torch.no_grad():
        expected = small_hifigan().eval()(mel[None])[0].clamp(-1, 1)
    # The file is 16-bit PCM: equal to the original model within one quantisation step.
    assert (audio - expected).abs().max() < 2 / 32768


def test_copy_synthesis_from_audio_prints_the_real_time_factor(bundle, tmp_path, capsys):
    t = torch.arange(22050) / 22050
    save_audio(tmp_path / "in.wav", (0.3 * torch.sin(2 * torch.pi * 440 * t))[None], 22050)
    assert main(["vocode", str(bundle), "--wav", str(tmp_path / "in.wav"), "-o",
                 str(tmp_path / "out.wav")]) == 0
    assert "real-time factor" in capsys.readouterr().out
    audio, _ = load_audio(tmp_path / "out.wav")
    assert audio.shape[-1] == (22050 // 256) * 256


def test_a_mel_of_the_wrong_shape_is_refused_and_writes_nothing(bundle, tmp_path, capsys):
    np.save(tmp_path / "bad.npy", np.zeros((100, 20), np.float32))
    assert main(["vocode", str(bundle), "--mel", str(tmp_path / "bad.npy"), "-o",
                 str(tmp_path / "bad.wav")]) != 0
    err = capsys.readouterr().err
    assert "80" in err and "100" in err and "Traceback" not in err
    assert not (tmp_path / "bad.wav").exists()
    assert not list(tmp_path.glob(".bad.wav*"))


def test_a_folder_job_skips_bad_files_and_fails_at_the_end(bundle, tmp_path, capsys):
    src = tmp_path / "mels"
    (src / "sub").mkdir(parents=True)
    np.save(src / "a.npy", np.random.randn(80, 10).astype(np.float32) - 4)
    np.save(src / "sub" / "b.npy", np.random.randn(80, 12).astype(np.float32) - 4)
    (src / "broken.npy").write_bytes(b"not numpy")
    out = tmp_path / "out"
    assert main(["vocode", str(bundle), "--mel", str(src), "-o", str(out)]) == 1
    text = capsys.readouterr()
    assert "broken.npy" in text.err and "1 input(s) failed" in text.err
    assert load_audio(out / "a.wav")[0].shape[-1] == 10 * 256
    assert load_audio(out / "sub" / "b.wav")[0].shape[-1] == 12 * 256
    assert not (out / "broken.wav").exists()


def test_sample_level_bundles_are_not_vocoders(tmp_path, capsys):
    from wavegen.checkpoint import BundleInfo, save_bundle
    from wavegen.models.wavenet import WaveNet, WaveNetConfig

    config = WaveNetConfig(layers=2, stacks=1, residual_channels=4, gate_channels=4,
                           skip_channels=4)
    save_bundle(tmp_path / "wn", WaveNet(config), BundleInfo("wavenet", config, 16000))
    np.save(tmp_path / "x.npy", np.zeros((80, 4), np.float32))
    assert main(["vocode", str(tmp_path / "wn"), "--mel", str(tmp_path / "x.npy"), "-o",
                 str(tmp_path / "x.wav")]) != 0
    assert "not a mel -> waveform vocoder" in capsys.readouterr().err


def test_importing_a_broken_file_is_a_one_line_error(tmp_path, capsys):
    (tmp_path / "g").write_bytes(b"garbage")
    assert main(["import", "melgan-official", str(tmp_path / "g"), "-o", str(tmp_path / "b")]) != 0
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and not (tmp_path / "b").exists()


@pytest.mark.parametrize("make", [
    lambda: HiFiGANGenerator(HiFiGANConfig.preset("v3", upsample_initial_channel=32)),
    lambda: MelGANGenerator(MelGANConfig(ngf=8, n_residual_layers=2, ratios=(8, 8, 4))),
], ids=["hifigan", "melgan"])
def test_chunked_vocoding_equals_one_pass(make):
    torch.manual_seed(1)
    generator = make().eval()
    with torch.no_grad():  # larger weight norms: a fresh MelGAN barely reacts to its input
        for name, p in generator.named_parameters():
            if name.endswith("original0"):
                p.mul_(4.0)
    reach = receptive_frames(generator, 80)
    assert 0 < reach < 32, "the default overlap must cover the receptive field"
    mel = torch.randn(1, 80, 150) - 4
    vocoder = Vocoder(generator, PRESETS["hifigan-22k"])
    with torch.no_grad():
        whole = vocoder.generator(mel).clamp(-1, 1)
    chunked = vocoder(mel, chunk_frames=40, overlap_frames=reach + 1).audio
    torch.testing.assert_close(chunked, whole, atol=1e-5, rtol=0)
    # Too little context really changes the output (the test can fail).
    short = vocoder(mel, chunk_frames=40, overlap_frames=0).audio
    assert (short - whole).abs().max() > 1e-3
