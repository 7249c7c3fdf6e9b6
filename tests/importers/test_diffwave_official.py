"""``wavegen import diffwave-official``: lmnt-com/diffwave checkpoints, checked against an
independent functional reimplementation of the official network and front-end.

Nothing here imports wavegen's DiffWave to compute the expected values: the official layout
is written out below with plain ``torch.nn.functional`` calls on the official parameter
names, from the paper's equations and the published code's structure.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
import torch.nn.functional as F

from wavegen.audio.spectral import LogMelSpectrogram
from wavegen.checkpoint import load_bundle
from wavegen.cli import main
from wavegen.diffusion.process import DiffusionProcess
from wavegen.errors import CheckpointError
from wavegen.importers import import_diffwave_official

LAYERS, CHANNELS, CYCLE, MELS = 4, 8, 2, 12
BETAS = np.linspace(1e-4, 0.05, 50).tolist()
PARAMS = {"sample_rate": 22050, "n_mels": MELS, "n_fft": 1024, "hop_samples": 256,
          "residual_layers": LAYERS, "residual_channels": CHANNELS,
          "dilation_cycle_length": CYCLE, "unconditional": False, "noise_schedule": BETAS,
          "inference_noise_schedule": [0.0001, 0.001, 0.01, 0.05, 0.2, 0.5],
          "batch_size": 16, "learning_rate": 2e-4, "max_grad_norm": None, "crop_mel_frames": 62}


def official_state(seed: int = 0, unconditional: bool = False) -> dict[str, torch.Tensor]:
    """Random weights under the official names and shapes."""
    g = torch.Generator().manual_seed(seed)

    def rand(*shape: int, scale: float = 0.3) -> torch.Tensor:
        return scale * torch.randn(*shape, generator=g)

    c = CHANNELS
    state = {"input_projection.weight": rand(c, 1, 1), "input_projection.bias": rand(c),
             "diffusion_embedding.projection1.weight": rand(512, 128, scale=0.1),
             "diffusion_embedding.projection1.bias": rand(512),
             "diffusion_embedding.projection2.weight": rand(512, 512, scale=0.05),
             "diffusion_embedding.projection2.bias": rand(512),
             "skip_projection.weight": rand(c, c, 1), "skip_projection.bias": rand(c),
             "output_projection.weight": rand(1, c, 1), "output_projection.bias": rand(1)}
    if not unconditional:
        for k in (1, 2):
            state[f"spectrogram_upsampler.conv{k}.weight"] = rand(1, 1, 3, 32, scale=0.1)
            state[f"spectrogram_upsampler.conv{k}.bias"] = rand(1)
    for i in range(LAYERS):
        p = f"residual_layers.{i}."
        state[p + "dilated_conv.weight"] = rand(2 * c, c, 3)
        state[p + "dilated_conv.bias"] = rand(2 * c)
        state[p + "diffusion_projection.weight"] = rand(c, 512, scale=0.05)
        state[p + "diffusion_projection.bias"] = rand(c)
        if not unconditional:
            state[p + "conditioner_projection.weight"] = rand(2 * c, MELS, 1)
            state[p + "conditioner_projection.bias"] = rand(2 * c)
        state[p + "output_projection.weight"] = rand(2 * c, c, 1)
        state[p + "output_projection.bias"] = rand(2 * c)
    return state


def official_forward(state, audio, step, spectrogram=None):
    """The official network: ``audio [B, T]``, ``step [B]`` (int or float), ``spectrogram
    [B, n_mels, F]`` -> ``[B, 1, T]``."""
    table_steps = torch.arange(len(BETAS)).unsqueeze(1)
    dims = torch.arange(64).unsqueeze(0)
    table = table_steps * 10.0 ** (dims * 4.0 / 63.0)
    table = torch.cat([torch.sin(table), torch.cos(table)], dim=1)
    if step.dtype in (torch.int32, torch.int64):
        e = table[step]
    else:
        low, high = torch.floor(step).long(), torch.ceil(step).long()
        e = table[low] + (table[high] - table[low]) * (step - low)[:, None]
    e = F.silu(F.linear(e, state["diffusion_embedding.projection1.weight"],
                        state["diffusion_embedding.projection1.bias"]))
    e = F.silu(F.linear(e, state["diffusion_embedding.projection2.weight"],
                        state["diffusion_embedding.projection2.bias"]))
    x = F.relu(F.conv1d(audio.unsqueeze(1), state["input_projection.weight"],
                        state["input_projection.bias"]))
    if spectrogram is not None:
        s = spectrogram.unsqueeze(1)
        for k in (1, 2):
            s = F.conv_transpose2d(s, state[f"spectrogram_upsampler.conv{k}.weight"],
                                   state[f"spectrogram_upsampler.conv{k}.bias"],
                                   stride=(1, 16), padding=(1, 8))
            s = F.leaky_relu(s, 0.4)
        spectrogram = s.squeeze(1)
    skips = []
    for i in range(LAYERS):
        p = f"residual_layers.{i}."
        d = 2 ** (i % CYCLE)
        y = x + F.linear(e, state[p + "diffusion_projection.weight"],
                         state[p + "diffusion_projection.bias"]).unsqueeze(-1)
        y = F.conv1d(y, state[p + "dilated_conv.weight"], state[p + "dilated_conv.bias"],
                     padding=d, dilation=d)
        if spectrogram is not None:
            y = y + F.conv1d(spectrogram, state[p + "conditioner_projection.weight"],
                             state[p + "conditioner_projection.bias"])
        gate, filt = torch.chunk(y, 2, dim=1)
        y = torch.sigmoid(gate) * torch.tanh(filt)
        y = F.conv1d(y, state[p + "output_projection.weight"], state[p + "output_projection.bias"])
        residual, skip = torch.chunk(y, 2, dim=1)
        x = (x + residual) / math.sqrt(2.0)
        skips.append(skip)
    x = torch.stack(skips).sum(0) / math.sqrt(LAYERS)
    x = F.relu(F.conv1d(x, state["skip_projection.weight"], state["skip_projection.bias"]))
    return F.conv1d(x, state["output_projection.weight"], state["output_projection.bias"])


def official_mel(audio: np.ndarray, sample_rate: int, n_mels: int, hop: int = 256,
                 n_fft: int = 1024) -> np.ndarray:
    """The official preprocessing (torchaudio MelSpectrogram, power 1, normalized, HTK mel
    from 20 Hz, dB, -20 dB, /100 in [0, 1]) with numpy and librosa's HTK filters."""
    import librosa

    win = 4 * hop
    window = 0.5 - 0.5 * np.cos(2 * np.pi * np.arange(win) / win)
    padded = np.pad(audio, n_fft // 2, mode="reflect")
    frames = 1 + (len(padded) - n_fft) // hop
    offset = (n_fft - win) // 2
    full = np.zeros(n_fft)
    full[offset:offset + win] = window
    spec = np.stack([np.fft.rfft(padded[i * hop:i * hop + n_fft] * full) for i in range(frames)], 1)
    spec = np.abs(spec) / np.sqrt((window ** 2).sum())
    basis = librosa.filters.mel(sr=sample_rate, n_fft=n_fft, n_mels=n_mels, fmin=20.0,
                                fmax=sample_rate / 2, htk=True, norm=None)
    mel = basis @ spec
    level = 20 * np.log10(np.maximum(mel, 1e-5)) - 20
    return np.clip((level + 100) / 100, 0.0, 1.0)


def save_checkpoint(path: Path, state, params=PARAMS) -> Path:
    torch.save({"step": 1234, "model": {**state, "diffusion_embedding.embedding": torch.zeros(3)},
                "optimizer": {"state": {}, "param_groups": [{"lr": 2e-4}]},
                "params": dict(params), "scaler": {"scale": 65536.0}}, path)
    return path


def test_the_imported_model_equals_the_official_network(tmp_path):
    state = official_state()
    model, config, features, process = import_diffwave_official(
        save_checkpoint(tmp_path / "weights-1234.pt", state))
    assert config.embedding_steps == 50 and features.n_mels == MELS
    audio = 0.5 * torch.randn(2, 256 * 5, generator=torch.Generator().manual_seed(1))
    spectrogram = torch.rand(2, MELS, 5, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        for step in (torch.tensor([0, 49]), torch.tensor([12, 30]),
                     torch.tensor([3.25, 47.5])):  # integer and fractional (fast sampling)
            expected = official_forward(state, audio, step, spectrogram)
            t = (step.double() + 1) / 50
            ours = model(audio[:, None], t.float(), local=spectrogram)
            torch.testing.assert_close(ours, expected, rtol=1e-4, atol=1e-4)
    # The chain: step n has the cumulative alpha of prod (1 - beta_i), i <= n, at t = (n+1)/N.
    schedule = process.make_schedule()
    alpha_bar = np.cumprod(1 - np.array(BETAS))
    for n in (0, 10, 49):
        alpha, _ = schedule.alpha_sigma(torch.tensor([(n + 1) / 50], dtype=torch.float64))
        assert abs(float(alpha) ** 2 - alpha_bar[n]) < 1e-9
    assert process.parameterization == "eps" and "6" in process.time_grids


def test_the_features_equal_the_official_preprocessing():
    from wavegen.importers.diffwave_official import official_features

    features = official_features(PARAMS)
    t = np.arange(22050) / 22050
    audio = (0.4 * np.sin(2 * np.pi * 440 * t) * np.exp(-2 * t)).astype(np.float32)
    audio[15000:] = 0.0  # silence: values at the clamps
    ours = LogMelSpectrogram(features)(torch.from_numpy(audio)[None]).numpy()[0]
    expected = official_mel(audio.astype(np.float64), 22050, MELS)
    assert ours.shape == expected.shape
    np.testing.assert_allclose(ours, expected, atol=2e-4)
    assert expected.min() == 0.0 and 0.3 < expected.max() <= 1.0


def test_cli_import_then_vocode_with_the_papers_fast_schedule(tmp_path, capsys):
    checkpoint = save_checkpoint(tmp_path / "weights.pt", official_state())
    bundle = tmp_path / "bundle"
    assert main(["import", "diffwave-official", str(checkpoint), "-o", str(bundle)]) == 0
    assert "diffwave vocoder" in capsys.readouterr().out
    model, info = load_bundle(bundle)
    assert info.conditioning == "mel" and info.features.level_ceiling == 1.0
    grid = DiffusionProcess.from_dict(dict(info.process)).time_grids["6"]
    assert len(grid) == 7 and grid[0] < 1.0  # the paper's 6 betas reach alpha_bar 0.35
    wav = tmp_path / "x.wav"
    sf.write(wav, 0.3 * np.sin(np.arange(5120) * 0.06), 22050)
    out = tmp_path / "y.wav"
    assert main(["vocode", str(bundle), "--wav", str(wav), "-o", str(out), "--steps", "6"]) == 0
    assert capsys.readouterr().out.splitlines()[0].endswith("; NFE 6")
    audio, rate = sf.read(out)
    # Centred frames: 1 + 5120 // 256 of them, each a hop of audio.
    assert rate == 22050 and audio.shape[0] == 21 * 256 and np.isfinite(audio).all()


def test_an_unconditional_checkpoint_imports_as_an_unconditional_bundle(tmp_path, capsys):
    params = {**PARAMS, "unconditional": True}
    checkpoint = save_checkpoint(tmp_path / "u.pt", official_state(unconditional=True), params)
    assert main(["import", "diffwave-official", str(checkpoint), "-o", str(tmp_path / "b")]) == 0
    model, info = load_bundle(tmp_path / "b")
    assert info.conditioning == "none" and info.features is None
    audio = torch.randn(1, 512)
    with torch.no_grad():
        expected = official_forward(official_state(unconditional=True), audio, torch.tensor([7]))
        torch.testing.assert_close(model(audio[:, None], torch.tensor([8 / 50])), expected,
                                   rtol=1e-4, atol=1e-4)


class Exploit:
    def __reduce__(self):
        return (print, ("pwned",))


@pytest.mark.parametrize("content, fragment", [
    ("pickle", "never unpickles"),
    ("wrong_keys", "not an official DiffWave state dict"),
    ("nonlinear", "not a linspace"),
])
def test_bad_checkpoints_are_one_line_errors(tmp_path, content, fragment):
    path = tmp_path / "bad.pt"
    if content == "pickle":
        torch.save({"model": Exploit(), "params": PARAMS}, path)
    elif content == "wrong_keys":
        state = official_state()
        state["residual_layers.0.extra.weight"] = torch.zeros(1)
        save_checkpoint(path, state)
    else:
        save_checkpoint(path, official_state(), {**PARAMS, "noise_schedule": [1e-4, 1e-3, 0.05]})
    with pytest.raises(CheckpointError, match=fragment):
        import_diffwave_official(path)
