"""Sampling and vocoding outputs stay what they were: a refactor must not change a sample.

``tests/inference/golden_outputs.npz`` holds, for seeded, untrained models, what the code
gave when the file was made (``python tests/inference/test_golden_outputs.py`` writes it
again, and must only be run when a change of output is intended and explained):

* WaveNet (categorical, mixture of logistics, Gaussian heads; unconditional and
  mel-conditioned) sampled from fixed uniforms on the ``reference`` backend and, for the
  heads it implements, the ``cpu`` backend;
* HiFi-GAN and MelGAN generators vocoding a fixed log-mel through :class:`Vocoder`
  (chunked, so the chunk seams are covered too).

On the machine and torch build that wrote the file the outputs must be bitwise equal. On
another CPU (whose vector units may round a float sum differently) the drawn discrete
samples must still be equal and the audio equal to float32 rounding (the Gaussian head's
continuous samples, fed back for 256 steps, to 2e-4).
"""

from __future__ import annotations

import platform
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

GOLDEN = Path(__file__).resolve().parent / "golden_outputs.npz"


def _machine() -> str:
    return f"{platform.machine()} torch {torch.__version__} {torch.backends.cpu.get_cpu_capability()}"


def _wavenet_cases():
    from wavegen.models.wavenet import WaveNetConfig

    base = dict(layers=6, stacks=2, residual_channels=16, gate_channels=32, skip_channels=16,
                sample_rate=16000)
    return {
        "wavenet_categorical": WaveNetConfig(**base),
        "wavenet_mol": WaveNetConfig(**base, head="mol", num_mixtures=4),
        "wavenet_gaussian": WaveNetConfig(**base, head="gaussian"),
        "wavenet_mel": WaveNetConfig(**base, local_channels=20, hop_length=64,
                                     upsample_factors=(8, 8)),
    }


def _fixed_mel(bands: int, frames: int) -> torch.Tensor:
    generator = torch.Generator().manual_seed(7)
    return torch.randn(1, bands, frames, generator=generator) - 4.0


def compute() -> dict[str, np.ndarray]:
    """Every golden output, computed by the current code."""
    from wavegen.audio.features import PRESETS
    from wavegen.models.hifigan import HiFiGANConfig, HiFiGANGenerator
    from wavegen.models.melgan import MelGANConfig, MelGANGenerator
    from wavegen.models.wavenet import WaveNet
    from wavegen.sampling import SamplingOptions, generate
    from wavegen.vocoder import Vocoder

    out: dict[str, np.ndarray] = {}
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        for name, config in _wavenet_cases().items():
            torch.manual_seed(0)
            model = WaveNet(config).eval()
            num = 256
            local = _fixed_mel(20, num // 64) if config.local_channels else None
            uniforms = torch.rand(1, num, model.head.num_uniforms,
                                  generator=torch.Generator().manual_seed(1))
            backends = ("reference",) if config.head == "gaussian" else ("reference", "cpu")
            for backend in backends:
                with torch.no_grad():
                    result = generate(model, num, local=local, uniforms=uniforms,
                                      options=SamplingOptions(temperature=0.9), backend=backend)
                out[f"{name}/{backend}/audio"] = result.audio.numpy()
                out[f"{name}/{backend}/samples"] = result.samples.numpy()
        features = PRESETS["hifigan-22k"]
        mel = _fixed_mel(features.n_mels, 40)
        torch.manual_seed(0)
        hifigan = HiFiGANGenerator(HiFiGANConfig.preset("v3", upsample_initial_channel=32))
        torch.manual_seed(0)
        melgan = MelGANGenerator(MelGANConfig(ngf=8, n_residual_layers=2))
        for name, generator in (("hifigan", hifigan), ("melgan", melgan)):
            vocoder = Vocoder(generator, features)
            out[f"{name}/audio"] = vocoder(mel, chunk_frames=16, overlap_frames=8).audio.numpy()
    finally:
        torch.set_num_threads(threads)
    return out


@pytest.fixture(scope="module")
def golden():
    with np.load(GOLDEN, allow_pickle=False) as data:
        return {key: data[key] for key in data.files}


@pytest.fixture(scope="module")
def current():
    return compute()


def test_the_same_outputs_as_before(golden, current):
    assert sorted(current) == sorted(k for k in golden if k != "machine")
    same_machine = str(golden["machine"]) == _machine()
    for key, value in current.items():
        expected = golden[key]
        assert value.shape == expected.shape and value.dtype == expected.dtype, key
        if same_machine or (key.endswith("/samples") and not expected.dtype.kind == "f"):
            assert np.array_equal(value, expected), f"{key} changed"
        elif key.startswith("wavenet_gaussian/"):
            # Continuous samples are fed back: one ulp of a vector unit's rounding grows
            # over the 256 steps (3e-5 measured between AVX2 and AVX-512 builds).
            np.testing.assert_allclose(value, expected, rtol=0, atol=2e-4, err_msg=key)
        else:
            np.testing.assert_allclose(value, expected, rtol=0, atol=1e-5, err_msg=key)


if __name__ == "__main__":
    outputs = compute()
    np.savez_compressed(GOLDEN, machine=np.array(_machine()), **outputs)
    print(f"wrote {GOLDEN} ({len(outputs)} arrays, {_machine()})", file=sys.stderr)
