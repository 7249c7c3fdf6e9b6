"""The inference layer: recorded conditioning, adapters per model kind, options, synthesize().

Noise-driven and discrete families do not exist in wavegen yet; tiny ones are defined and
registered here, so the adapters they will use are exercised end to end (bundle on disk ->
load -> adapter -> audio), through the library and through the CLI verbs.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import soundfile as sf
import torch
import torch.nn.functional as F
import yaml
from torch import nn

from wavegen.audio.features import PRESETS, FeatureConfig
from wavegen.checkpoint import BundleInfo, load_bundle, read_bundle_info, save_bundle
from wavegen.cli import main
from wavegen.diffusion.chunked import PositionalNoise
from wavegen.diffusion.guidance import classifier_free_guidance
from wavegen.diffusion.process import DiffusionProcess
from wavegen.errors import CheckpointError, ConfigError, UsageError
from wavegen.inference import (Adapter, Conditioning, DiffusionAdapter, DiscreteDecoderAdapter,
                               FeedForwardAdapter, FlowAdapter, InferenceOptions, InputRequest,
                               Pipeline, SampleLevelAdapter, Signal, adapter_for,
                               bundle_conditioning, legacy_conditioning, load, synthesize)
from wavegen.inference.base import deliver
from wavegen.models.hifigan import HiFiGANConfig, HiFiGANGenerator
from wavegen.models.protocols import DISCRETE_AUTOENCODER, NOISE_DRIVEN, SAMPLE_LEVEL
from wavegen.models.registry import Family, register_family, unregister_family
from wavegen.models.size import SizeEstimate
from wavegen.models.wavenet import WaveNet, WaveNetConfig
from wavegen.sampling import SamplingOptions, generate
from wavegen.utils.config import DictConfig
from wavegen.vocoder import Vocoder

SMALL = FeatureConfig(sample_rate=8000, n_fft=256, hop_length=64, win_length=256, n_mels=16,
                      fmax=4000.0)
VOCODER_FEATURES = PRESETS["hifigan-22k"]
RECIPES = Path(__file__).resolve().parents[2] / "recipes"


# --------------------------------------------------------------------------- tiny families


@dataclass
class TinyConfig(DictConfig):
    """Config of the tiny test families (the model config contract included)."""

    n_mels: int = 16
    hop_length: int = 64
    sample_rate: int = 8000
    codebook_size: int = 32

    @property
    def conditioning_channels(self) -> int:
        return self.n_mels


    def estimate_size(self) -> SizeEstimate:
        return SizeEstimate(max(self.n_mels, 1) * self.hop_length + 64 * self.codebook_size, 3)


class TinyFlow(nn.Module):
    """A one-layer Gaussian flow: ``audio = mean(mel) + sigma * z`` (identity scale)."""

    def __init__(self, config: TinyConfig):
        super().__init__()
        self.config = config
        self.proj = nn.Conv1d(config.n_mels, config.hop_length, 1)

    def mean(self, mel: torch.Tensor) -> torch.Tensor:
        """``[B, n_mels, F]`` -> ``[B, 1, F * hop]``."""
        frames = self.proj(mel + 4.0) * 0.1
        return frames.transpose(1, 2).reshape(mel.shape[0], 1, -1)

    def loss(self, wave, local=None, global_cond=None):
        return 0.5 * (wave - self.mean(local)).pow(2).mean()

    def infer(self, mel: torch.Tensor, sigma: float = 1.0) -> torch.Tensor:
        mean = self.mean(mel)
        return mean + sigma * torch.randn_like(mean)


class TinyDenoiser(nn.Module):
    """``(x_t, t, local) -> eps``: a few convolutions, mel added after nearest upsampling."""

    def __init__(self, config: TinyConfig):
        super().__init__()
        self.config = config
        self.inp = nn.Conv1d(1, 8, 3, padding=1)
        self.time = nn.Linear(1, 8)
        self.cond = nn.Conv1d(config.n_mels, 8, 1) if config.n_mels else None
        self.out = nn.Conv1d(8, 1, 3, padding=1)

    def forward(self, x_t, t, local=None):
        h = self.inp(x_t) + self.time(t[:, None])[:, :, None]
        if local is not None:
            h = h + F.interpolate(self.cond(local), size=x_t.shape[-1], mode="nearest")
        return self.out(torch.tanh(h))


class TinyAutoencoder(nn.Module):
    """Audio -> codes (4 samples per code) -> audio, with a fixed codebook."""

    def __init__(self, config: TinyConfig):
        super().__init__()
        self.config = config
        self.codebook = nn.Embedding(config.codebook_size, 8)
        self.enc = nn.Conv1d(1, 8, 4, stride=4)
        self.dec = nn.ConvTranspose1d(8, 1, 4, stride=4)

    @property
    def num_levels(self) -> int:
        return 1

    def encode(self, audio, level=0):
        z = self.enc(audio).transpose(1, 2)  # [B, N, 8]
        return torch.cdist(z, self.codebook.weight[None]).argmin(-1)

    def decode(self, codes, level=0):
        return torch.tanh(self.dec(self.codebook(codes).transpose(1, 2)))

    def autoencode(self, audio):
        return self.decode(self.encode(audio)), []


FAMILIES = {
    "test-flow": Family("test-flow", TinyConfig, TinyFlow, NOISE_DRIVEN),
    "test-diffusion": Family("test-diffusion", TinyConfig, TinyDenoiser, NOISE_DRIVEN,
                             task="diffusion"),
    "test-vq": Family("test-vq", TinyConfig, TinyAutoencoder, DISCRETE_AUTOENCODER, task="vq"),
}


@pytest.fixture(scope="module", autouse=True)
def families():
    for family in FAMILIES.values():
        register_family(family, replace=True)
    yield
    for name in FAMILIES:
        unregister_family(name)


def make_bundle(root, name: str, family: str, config, **info) -> Any:
    torch.manual_seed(0)
    model = {"test-flow": TinyFlow, "test-diffusion": TinyDenoiser, "test-vq": TinyAutoencoder,
             "wavenet": WaveNet, "hifigan": HiFiGANGenerator}[family](config)
    info.setdefault("sample_rate", 8000)
    rate = info.pop("sample_rate")
    save_bundle(root / name, model, BundleInfo(family, config, rate, **info))
    return root / name


def log_mel(frames: int, bands: int = 16, seed: int = 0) -> torch.Tensor:
    return torch.randn(1, bands, frames, generator=torch.Generator().manual_seed(seed)) - 4.0


# --------------------------------------------------------------------------- conditioning


def test_bundles_record_their_conditioning_and_process(tmp_path):
    from wavegen.train.build import bundle_info
    from wavegen.train.recipe import load_recipe

    recipes = {"wavenet-tones-tiny": "none", "wavenet-mel-tiny": "mel",
               "wavenet-midi-tiny": "roll", "hifigan-tiny": "mel"}
    for name, expected in recipes.items():
        assert bundle_info(load_recipe(RECIPES / f"{name}.yaml")).conditioning == expected
    # A diffusion recipe's `diffusion:` section becomes the bundle's process.
    recipe = tmp_path / "d.yaml"
    recipe.write_text(yaml.safe_dump({
        "name": "d", "task": "diffusion",
        "model": {"family": "test-diffusion", "n_mels": 16, "hop_length": 64},
        "features": {**SMALL.to_dict(), "name": "small"},
        "data": {"kind": "tones", "sample_rate": 8000, "crop_samples": 1024,
                 "conditioning": "mel"},
        "diffusion": {"sampler": "heun", "sampler_steps": 7}}))
    info = bundle_info(load_recipe(recipe))
    assert info.conditioning == "mel"
    assert DiffusionProcess.from_dict(info.process) == DiffusionProcess(sampler="heun",
                                                                        sampler_steps=7)
    process = DiffusionProcess(sampler="ddpm", sampler_steps=3).to_dict()
    bundle = make_bundle(tmp_path, "d", "test-diffusion", TinyConfig(), features=SMALL,
                         conditioning="mel", process=process)
    data = json.loads((bundle / "config.json").read_text())
    assert data["conditioning"] == "mel" and data["process"]["sampler"] == "ddpm"
    info = read_bundle_info(bundle)
    assert info.conditioning == "mel" and info.process == process


@pytest.mark.parametrize("edit, message", [
    ({"conditioning": "midi"}, "conditioning must be one of none, mel, roll"),
    ({"process": {"sampler": "euler"}}, "sampler must be one of"),
    ({"process": [1, 2]}, "process"),
], ids=["unknown conditioning", "bad process", "process not an object"])
def test_a_bad_conditioning_or_process_in_config_json_is_refused(tmp_path, edit, message):
    bundle = make_bundle(tmp_path, "d", "test-diffusion", TinyConfig(), features=SMALL,
                         conditioning="mel", process=DiffusionProcess().to_dict())
    data = json.loads((bundle / "config.json").read_text())
    (bundle / "config.json").write_text(json.dumps({**data, **edit}))
    with pytest.raises(CheckpointError, match=message) as error:
        read_bundle_info(bundle)
    assert "config.json" in str(error.value)


def test_legacy_bundles_infer_their_conditioning_from_the_config_not_the_recipe(tmp_path):
    free = WaveNetConfig(layers=2, stacks=1, residual_channels=4, gate_channels=4,
                         skip_channels=4, sample_rate=16000)
    mel = WaveNetConfig(layers=2, stacks=1, residual_channels=4, gate_channels=4,
                        skip_channels=4, local_channels=80, hop_length=256,
                        upsample_factors=(16, 16), sample_rate=16000)
    roll = WaveNetConfig(layers=2, stacks=1, residual_channels=4, gate_channels=4,
                         skip_channels=4, local_channels=265, hop_length=256,
                         upsample_factors=(16, 16), sample_rate=16000)
    odd = WaveNetConfig(layers=2, stacks=1, residual_channels=4, gate_channels=4,
                        skip_channels=4, local_channels=50, hop_length=256,
                        upsample_factors=(16, 16), sample_rate=16000)
    features = PRESETS["hifigan-16k"]
    # The stored recipe says otherwise: it must not be read.
    lying = {"recipe": {"data": {"conditioning": "roll"}}}
    assert legacy_conditioning(BundleInfo("wavenet", free, 16000, extra=lying)) == "none"
    assert legacy_conditioning(BundleInfo("wavenet", mel, 16000, features, extra=lying)) == "mel"
    assert legacy_conditioning(BundleInfo("wavenet", roll, 16000, features)) == "roll"
    with pytest.raises(CheckpointError, match="cannot tell what this model is conditioned on"):
        legacy_conditioning(BundleInfo("wavenet", odd, 16000, features))
    # 80 channels without features is neither a mel nor a roll.
    with pytest.raises(CheckpointError, match="80 conditioning channels"):
        legacy_conditioning(BundleInfo("wavenet", mel, 16000))
    # A recorded conditioning wins, and is checked against the config.
    assert bundle_conditioning(BundleInfo("wavenet", roll, 16000, features,
                                          conditioning="roll")) == "roll"
    with pytest.raises(CheckpointError, match="conditioning 'none' but the model has 80"):
        bundle_conditioning(BundleInfo("wavenet", mel, 16000, features, conditioning="none"))
    with pytest.raises(CheckpointError, match="without a FeatureConfig"):
        bundle_conditioning(BundleInfo("wavenet", mel, 16000, conditioning="mel"))
    with pytest.raises(CheckpointError, match="takes 265 mel bands but its features have 80"):
        bundle_conditioning(BundleInfo("wavenet", roll, 16000, features, conditioning="mel"))


def test_inputs_that_the_model_does_not_take_are_one_line_usage_errors(tmp_path):
    flow = load(make_bundle(tmp_path, "f", "test-flow", TinyConfig(), features=SMALL,
                            conditioning="mel"))
    with pytest.raises(UsageError, match="this model is mel-conditioned: give --wav or --mel"):
        flow.conditioning(InputRequest(seconds=1.0))
    with pytest.raises(UsageError, match="give --wav or --mel"):
        flow.conditioning(InputRequest(midi="x.mid"))
    np.save(tmp_path / "m.npy", log_mel(10)[0].numpy())
    with pytest.raises(UsageError, match="--prompt is only for unconditional models"):
        flow.conditioning(InputRequest(mel=tmp_path / "m.npy", prompt="p.wav"))
    cut = flow.conditioning(InputRequest(mel=tmp_path / "m.npy", seconds=3 * 64 / 8000))
    assert cut.kind == "mel" and cut.local.shape == (1, 16, 3)
    free = load(make_bundle(tmp_path, "u", "test-diffusion", TinyConfig(n_mels=0, hop_length=0),
                            conditioning="none", process=DiffusionProcess().to_dict()))
    with pytest.raises(UsageError, match="this model is unconditional: --mel is not used"):
        free.conditioning(InputRequest(mel=tmp_path / "m.npy", seconds=1.0))
    assert free.conditioning(InputRequest(seconds=0.01)).num_samples == 80


# --------------------------------------------------------------------------- adapters


def test_each_kind_gets_its_default_adapter_and_a_family_can_bring_its_own(tmp_path):
    wavenet = WaveNetConfig(layers=2, stacks=1, residual_channels=4, gate_channels=4,
                            skip_channels=4, sample_rate=8000)
    cases = {
        "wavenet": (make_bundle(tmp_path, "wn", "wavenet", wavenet, conditioning="none"),
                    SampleLevelAdapter),
        "hifigan": (make_bundle(tmp_path, "hg", "hifigan",
                                HiFiGANConfig.preset("v3", upsample_initial_channel=8),
                                sample_rate=22050, features=VOCODER_FEATURES,
                                conditioning="mel"), FeedForwardAdapter),
        "flow": (make_bundle(tmp_path, "fl", "test-flow", TinyConfig(), features=SMALL,
                             conditioning="mel"), FlowAdapter),
        "diffusion": (make_bundle(tmp_path, "df", "test-diffusion", TinyConfig(),
                                  features=SMALL, conditioning="mel",
                                  process=DiffusionProcess().to_dict()), DiffusionAdapter),
        "vq": (make_bundle(tmp_path, "vq", "test-vq", TinyConfig(n_mels=0, hop_length=0),
                           conditioning="none"), DiscreteDecoderAdapter),
    }
    for name, (bundle, adapter_class) in cases.items():
        adapter = adapter_for(*load_bundle(bundle))
        assert type(adapter) is adapter_class, name
    flow_bundle = cases["flow"][0]

    class Louder(FlowAdapter):
        def run(self, conditioning, options, sink=None):
            result = super().run(conditioning, options, sink)
            result.output = result.output * 0.5
            return result

    register_family(Family("test-flow", TinyConfig, TinyFlow, NOISE_DRIVEN,
                           inference=Louder), replace=True)
    try:
        assert type(adapter_for(*load_bundle(flow_bundle))) is Louder
        register_family(Family("test-flow", TinyConfig, TinyFlow, NOISE_DRIVEN,
                               inference=lambda model, info: model), replace=True)
        with pytest.raises(ConfigError, match="returned TinyFlow, not a wavegen.inference Adapter"):
            adapter_for(*load_bundle(flow_bundle))
    finally:
        register_family(FAMILIES["test-flow"], replace=True)


def test_feed_forward_synthesis_is_the_chunked_vocoder_streamed_or_whole(tmp_path):
    bundle = make_bundle(tmp_path, "hg", "hifigan",
                         HiFiGANConfig.preset("v3", upsample_initial_channel=16),
                         sample_rate=22050, features=VOCODER_FEATURES, conditioning="mel")
    mel = log_mel(45, 80)
    options = InferenceOptions(chunk_frames=16, overlap_frames=8)
    result = synthesize(bundle, Conditioning("mel", mel), options)
    model, _ = load_bundle(bundle)
    expected = Vocoder(model, VOCODER_FEATURES)(mel, 16, 8).audio
    assert torch.equal(result.audio, expected)
    assert result.length == 45 * 256 and result.audio_seconds == pytest.approx(45 * 256 / 22050)
    pieces = []
    streamed = synthesize(bundle, Conditioning("mel", mel), options, sink=pieces.append)
    assert streamed.output.shape == (1, 1, 0) and streamed.length == 45 * 256
    assert len(pieces) == 3 and torch.equal(torch.cat(pieces, -1), expected)


def test_sample_level_synthesis_is_the_sampling_loop(tmp_path):
    config = WaveNetConfig(layers=3, stacks=1, residual_channels=8, gate_channels=8,
                           skip_channels=8, local_channels=16, hop_length=64,
                           upsample_factors=(8, 8), sample_rate=8000)
    bundle = make_bundle(tmp_path, "wn", "wavenet", config, features=SMALL, conditioning="mel")
    mel = log_mel(3)
    options = InferenceOptions(seed=5, temperature=0.8, top_p=0.9, backend="reference")
    result = synthesize(bundle, Conditioning("mel", mel), options)
    model, _ = load_bundle(bundle)
    expected = generate(model, None, local=mel,
                        options=SamplingOptions(0.8, 0.9, None, None, 5), backend="reference")
    assert torch.equal(result.audio, expected.audio)
    assert torch.equal(result.generation.samples, expected.samples)
    warnings = []
    synthesize(bundle, Conditioning("mel", mel),
               InferenceOptions(guidance=2.0, backend="reference", warn=warnings.append))
    assert len(warnings) == 1 and "trained without conditioning dropout" in warnings[0]


def test_a_flow_is_seeded_by_the_options_and_scaled_by_sigma(tmp_path):
    bundle = make_bundle(tmp_path, "fl", "test-flow", TinyConfig(), features=SMALL,
                         conditioning="mel")
    pipeline = load(bundle)
    mel = Conditioning("mel", log_mel(5))
    state = torch.get_rng_state()
    first = pipeline.run(mel, InferenceOptions(seed=1, sigma=0.3)).audio
    assert torch.equal(torch.get_rng_state(), state), "the caller's RNG stream was touched"
    assert first.shape == (1, 1, 5 * 64)
    assert torch.equal(pipeline.run(mel, InferenceOptions(seed=1, sigma=0.3)).audio, first)
    assert not torch.equal(pipeline.run(mel, InferenceOptions(seed=2, sigma=0.3)).audio, first)
    model = pipeline.stages[0].model
    with torch.no_grad():
        mean = model.mean(mel.local).clamp(-1, 1)
    assert torch.equal(pipeline.run(mel, InferenceOptions(sigma=0.0)).audio, mean)
    spread = (first - mean).std()
    wider = (pipeline.run(mel, InferenceOptions(seed=1, sigma=0.6)).audio - mean).std()
    assert 1.5 < float(wider / spread) < 2.5
    # The model's own default sigma (1.0) when none is given.
    default = pipeline.run(mel, InferenceOptions(seed=1)).audio
    assert float((default - mean).std()) > float(wider)


def _positional(seed: int, length: int) -> dict:
    """The noise a conditioned diffusion run draws (tied to sample positions)."""
    noise = PositionalNoise(seed, 1)
    return {"noise": noise.window(0, 0, length),
            "step_noise": lambda i: noise.window(i + 1, 0, length)}


def test_diffusion_runs_the_bundles_process_with_inference_time_overrides(tmp_path):
    process = DiffusionProcess(sampler="ddim", sampler_steps=4)
    bundle = make_bundle(tmp_path, "df", "test-diffusion", TinyConfig(), features=SMALL,
                         conditioning="mel", process=process.to_dict())
    pipeline = load(bundle)
    model = pipeline.stages[0].model
    mel = log_mel(4)
    result = pipeline.run(Conditioning("mel", mel), InferenceOptions(seed=3))
    with torch.no_grad():
        expected = process.sample(lambda x, t: model(x, t, local=mel), (1, 1, 4 * 64),
                                  **_positional(3, 4 * 64)).clamp(-1, 1)
    assert torch.equal(result.audio, expected)
    ddpm = pipeline.run(Conditioning("mel", mel),
                        InferenceOptions(seed=3, sampler="ddpm", steps=6)).audio
    with torch.no_grad():
        expected = process.sample(lambda x, t: model(x, t, local=mel), (1, 1, 4 * 64),
                                  sampler="ddpm", steps=6,
                                  **_positional(3, 4 * 64)).clamp(-1, 1)
    assert torch.equal(ddpm, expected)
    guided = pipeline.run(Conditioning("mel", mel), InferenceOptions(seed=3, guidance=2.5)).audio
    with torch.no_grad():
        denoise = classifier_free_guidance(lambda x, t: model(x, t, local=mel),
                                           lambda x, t: model(x, t, local=torch.zeros_like(mel)),
                                           2.5)
        expected = process.sample(denoise, (1, 1, 4 * 64),
                                  **_positional(3, 4 * 64)).clamp(-1, 1)
    assert torch.equal(guided, expected)


def test_unconditional_diffusion_continues_a_prompt_by_inpainting(tmp_path):
    bundle = make_bundle(tmp_path, "df", "test-diffusion", TinyConfig(n_mels=0, hop_length=0),
                         conditioning="none",
                         process=DiffusionProcess(sampler="ddim", sampler_steps=3).to_dict())
    pipeline = load(bundle)
    prompt = 0.2 * torch.sin(torch.arange(96) / 5.0)[None, None]
    free = pipeline.run(Conditioning("none", num_samples=160), InferenceOptions(seed=0)).audio
    continued = pipeline.run(Conditioning("none", num_samples=160, prompt=prompt),
                             InferenceOptions(seed=0)).audio
    assert free.shape == continued.shape == (1, 1, 160)
    assert not torch.equal(free, continued)
    with pytest.raises(UsageError, match="guidance needs a conditioned model"):
        pipeline.run(Conditioning("none", num_samples=160), InferenceOptions(guidance=2.0))


def test_a_discrete_autoencoder_decodes_a_priors_codes(tmp_path):
    bundle = make_bundle(tmp_path, "vq", "test-vq", TinyConfig(n_mels=0, hop_length=0),
                         conditioning="none")
    decoder = adapter_for(*load_bundle(bundle))
    assert decoder.input == Signal("codes", 32, 8000, 4)

    class FixedPrior(Adapter):
        """A stand-in prior: seeded uniform codes (input none, output codes)."""

        kind = SAMPLE_LEVEL

        def __init__(self, size: int):
            super().__init__(nn.Identity(), BundleInfo("test-prior", TinyConfig(), 8000))
            self.size = size

        @property
        def input(self):
            return Signal("none")

        @property
        def output(self):
            return Signal("codes", self.size, 8000, 4)

        def run(self, conditioning, options, sink=None):
            generator = torch.Generator().manual_seed(options.seed)
            codes = torch.randint(0, self.size, (1, conditioning.num_samples),
                                  generator=generator)
            return deliver(codes, self.output, 0.0, sink)

    pipeline = Pipeline([FixedPrior(32), decoder])
    audio = synthesize(pipeline, InputRequest(seconds=0.01), InferenceOptions(seed=4)).audio
    codes = torch.randint(0, 32, (1, 20), generator=torch.Generator().manual_seed(4))
    with torch.no_grad():
        assert torch.equal(audio, decoder.model.decode(codes).clamp(-1, 1))
    with pytest.raises(CheckpointError, match="gives codes \\(64 codes.*takes codes \\(32 codes"):
        Pipeline([FixedPrior(64), decoder])
    with pytest.raises(UsageError, match=r"codes must lie in \[0, 32\)"):
        synthesize(decoder, Conditioning("codes", torch.full((1, 5), 40)))
    # Alone, an autoencoder cannot generate: `wavegen sample` says where codes come from.
    with pytest.raises(UsageError, match="a pipeline manifest"):
        load(bundle).conditioning(InputRequest(seconds=1.0))


def test_options_that_no_stage_reads_are_refused(tmp_path):
    config = WaveNetConfig(layers=2, stacks=1, residual_channels=4, gate_channels=4,
                           skip_channels=4, sample_rate=8000)
    wavenet = load(make_bundle(tmp_path, "wn", "wavenet", config, conditioning="none"))
    free = Conditioning("none", num_samples=10)
    with pytest.raises(UsageError, match="sigma is for flows.*is a sample_level model"):
        wavenet.run(free, InferenceOptions(sigma=0.5))
    with pytest.raises(UsageError, match="sampler is for diffusion models"):
        wavenet.run(free, InferenceOptions(sampler="ddim"))
    flow = load(make_bundle(tmp_path, "fl", "test-flow", TinyConfig(), features=SMALL,
                            conditioning="mel"))
    with pytest.raises(UsageError, match="top_p is for sample-level models"):
        flow.run(Conditioning("mel", log_mel(2)), InferenceOptions(top_p=0.9))
    with pytest.raises(UsageError, match="steps must be >= 1"):
        InferenceOptions(steps=0)


# --------------------------------------------------------------------------- the verbs


def test_vocode_and_sample_run_noise_driven_bundles(tmp_path, capsys):
    flow = make_bundle(tmp_path, "fl", "test-flow", TinyConfig(), features=SMALL,
                       conditioning="mel")
    diffusion = make_bundle(tmp_path, "df", "test-diffusion", TinyConfig(), features=SMALL,
                            conditioning="mel",
                            process=DiffusionProcess(sampler="ddim", sampler_steps=3).to_dict())
    np.save(tmp_path / "m.npy", log_mel(6)[0].numpy())
    mel = ["--mel", str(tmp_path / "m.npy")]
    assert main(["vocode", str(flow), *mel, "-o", str(tmp_path / "a.wav"), "--sigma", "0.5",
                 "--seed", "7"]) == 0
    assert main(["vocode", str(flow), *mel, "-o", str(tmp_path / "b.wav"), "--sigma", "0.5",
                 "--seed", "7"]) == 0
    assert (tmp_path / "a.wav").read_bytes() == (tmp_path / "b.wav").read_bytes()
    assert sf.info(tmp_path / "a.wav").frames == 6 * 64
    assert main(["vocode", str(diffusion), *mel, "-o", str(tmp_path / "c.wav"), "--sampler",
                 "ddpm", "--steps", "2"]) == 0
    assert "vocoded 1 of 1 file(s)" in capsys.readouterr().out
    assert main(["sample", str(diffusion), *mel, "-o", str(tmp_path / "d.wav"),
                 "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert "real-time factor" in out and "NLL" not in out
    assert sf.info(tmp_path / "d.wav").frames == 6 * 64
    assert main(["sample", str(diffusion), *mel, "-o", str(tmp_path / "e.wav"), "--sigma",
                 "0.5"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "sigma is for flows" in err
    assert main(["vocode", str(flow), *mel, "-o", str(tmp_path / "f.wav"), "--sampler",
                 "euler"]) == 2
    assert "unknown --sampler 'euler'; choose from ddpm, ddim, heun" in capsys.readouterr().err
    assert not (tmp_path / "e.wav").exists() and not (tmp_path / "f.wav").exists()
