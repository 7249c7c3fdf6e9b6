"""Hierarchical VQ-VAE: shapes and hops per level, encode/decode against autoencode, codebook
use with and without restarts, training at every level, one-level training, exact size
estimates, the VQ task's per-level losses, bundles, and one-line errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from torch import nn

from wavegen.audio.losses import MultiResolutionSTFTLoss
from wavegen.audio.metrics import multi_resolution_stft_distance
from wavegen.checkpoint import BundleInfo, load_bundle, save_bundle
from wavegen.data.synthetic import ToneDataset
from wavegen.errors import ConfigError, UsageError
from wavegen.inference import DiscreteDecoderAdapter
from wavegen.inference.signals import Signal
from wavegen.models.protocols import (DISCRETE_AUTOENCODER, DiscreteAutoencoder, ModelContract,
                                      conforms, contract_of)
from wavegen.models.registry import build_model, get_family
from wavegen.models.vqvae import VQVAE, VQVAE_PRESETS, VQVAEConfig, derive_strides
from wavegen.train.recipe import load_recipe
from wavegen.train.tasks.vq import VQTask

RECIPES = Path(__file__).resolve().parents[2] / "recipes"
RATE, CROP = 8000, 1024
RESOLUTIONS = ((256, 64, 256), (128, 32, 128), (64, 16, 64))


def parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def weight_layers(model: nn.Module) -> int:
    return sum(isinstance(m, (nn.Conv1d, nn.ConvTranspose1d)) for m in model.modules())


def tiny(seed: int = 0, **overrides) -> VQVAE:
    torch.manual_seed(seed)
    return VQVAE(VQVAEConfig.preset("tiny", sample_rate=RATE, **overrides))


def audio(batch: int = 2, length: int = CROP, seed: int = 1) -> torch.Tensor:
    return 0.3 * torch.randn(batch, 1, length, generator=torch.Generator().manual_seed(seed))


def tones(split: str = "val", size: int = 8) -> torch.Tensor:
    data = ToneDataset(size, RATE, CROP, split=split)
    return torch.stack([data[i]["audio"] for i in range(size)])


def mr_stft(model: VQVAE, batch: torch.Tensor, level: int) -> float:
    model.eval()
    with torch.no_grad():
        reconstruction, _ = model.autoencode_level(batch, level)
    model.train()
    return float(multi_resolution_stft_distance(batch, reconstruction, RESOLUTIONS).total.mean())


def train(model: VQVAE, steps: int, lr: float = 3e-3, seed: int = 0) -> list[list[float]]:
    """Adam on L2 + MR-STFT + commitment of every reconstruction ``autoencode`` returns, on
    random tone crops; returns each step's per-output codebook perplexity."""
    data = ToneDataset(64, RATE, CROP)
    spectral = MultiResolutionSTFTLoss(RESOLUTIONS)
    optimizer = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=lr)
    generator = torch.Generator().manual_seed(seed)
    perplexities = []
    for _ in range(steps):
        batch = torch.stack([data[int(i)]["audio"] for i in torch.randint(0, 64, (8,),
                                                                           generator=generator)])
        reconstructions, outputs = model.autoencode(batch)
        if torch.is_tensor(reconstructions):
            reconstructions = [reconstructions]
        loss = sum((r - batch).pow(2).mean() + spectral(r, batch).total for r in reconstructions)
        loss = loss + sum(o.commitment_loss for o in outputs)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        perplexities.append([float(o.perplexity) for o in outputs])
    return perplexities


# --------------------------------------------------------------------------- config & sizes
def test_stride_derivation_and_explicit_strides():
    assert derive_strides(8, 2) == (2, 2, 2)
    assert derive_strides(128, 4) == (4, 4, 4, 2)
    assert derive_strides(12, 4) == (4, 3)
    assert derive_strides(18, 4) == (3, 3, 2)
    config = VQVAEConfig.preset("tiny")
    assert [config.level_strides(l) for l in range(3)] == [(4, 2), (4, 4, 2), (4, 4, 4, 2)]
    jukebox = VQVAEConfig.preset("jukebox")
    assert [len(jukebox.level_strides(l)) for l in range(3)] == [3, 5, 7]  # stride-2 stacks
    explicit = VQVAEConfig.preset("tiny", hops=(8, 32), channels=(8, 8), residual_depth=(1, 1),
                                  strides=[[2, 4], [8, 4]])
    assert explicit.strides == ((2, 4), (8, 4)) and explicit.level_strides(1) == (8, 4)


@pytest.mark.parametrize("name", sorted(VQVAE_PRESETS))
def test_presets_build_through_the_registry_with_exact_size_estimates(name, one_thread):
    family = get_family("vqvae")
    assert family.kind == DISCRETE_AUTOENCODER and family.task == "vq"
    assert family.config_class is VQVAEConfig and family.model_class is VQVAE
    torch.manual_seed(0)
    model, config = build_model("vqvae", VQVAEConfig.preset(name).to_dict())
    estimate = config.estimate_size()
    assert parameters(model) == estimate.parameters and weight_layers(model) == estimate.layers
    assert isinstance(model, DiscreteAutoencoder) and conforms(model, DISCRETE_AUTOENCODER)
    assert model.num_levels == 3 and model.hop_lengths == config.hop_lengths == (8, 32, 128)
    assert contract_of(config) == ModelContract(0, None, config.sample_rate)
    assert VQVAEConfig.from_dict(json.loads(json.dumps(config.to_dict()))) == config
    # Codebooks are buffers (EMA k-means), not parameters, and they go into bundles.
    assert all(level.quantizer.codebook.shape == (config.codebook_size, config.code_dim)
               for level in model.levels)
    assert not any("codebook" in n for n, _ in model.named_parameters())


def test_jukebox_preset_sizes():
    config = VQVAEConfig.preset("jukebox")
    assert (config.sample_rate, config.codebook_size, config.code_dim, config.beta,
            config.ema_decay, config.channels, config.residual_depth) == \
        (44100, 2048, 64, 0.02, 0.99, (64, 32, 32), (8, 4, 4))
    assert config.estimate_size().parameters == 1_415_491
    assert VQVAEConfig.preset("tiny").estimate_size().parameters == 68_115


def test_the_tiny_recipe_builds_the_model_it_estimates():
    recipe = load_recipe(RECIPES / "vqvae-tiny.yaml")
    assert recipe.family.name == "vqvae" and recipe.task == "vq"
    model = VQVAE(recipe.model_config)
    assert parameters(model) == recipe.model_config.estimate_size().parameters
    assert recipe.data.crop_samples % max(model.hop_lengths) == 0


# --------------------------------------------------------------------------- shapes
def test_shapes_and_hops_per_level(one_thread):
    model = tiny()
    x = audio(length=1024)
    reconstructions, outputs = model.autoencode(x)
    assert len(reconstructions) == len(outputs) == 3
    assert all(r.shape == x.shape for r in reconstructions)
    assert [tuple(o.codes.shape) for o in outputs] == [(2, 128), (2, 32), (2, 8)]
    assert [o.quantized.shape[1] for o in outputs] == [16, 16, 16]
    for level, hop in enumerate((8, 32, 128)):
        codes = model.encode(x, level)
        assert codes.shape == (2, 1024 // hop) and codes.dtype == torch.int64
        assert model.decode(codes, level).shape == x.shape
        # A level decodes any whole number of codes: N codes -> N * hop samples.
        assert model.decode(codes[:, :3], level).shape == (2, 1, 3 * hop)


def test_odd_and_explicit_strides_keep_lengths_exact(one_thread):
    for overrides in ({"hops": (6, 12), "max_stride": 3},
                      {"hops": (9, 45), "strides": [[3, 3], [5, 3, 3]]}):
        model = tiny(channels=(8, 8), residual_depth=(1, 1), **overrides)
        length = 2 * max(model.hop_lengths) * 5
        x = audio(length=length)
        reconstructions, outputs = model.autoencode(x)
        assert all(r.shape == x.shape for r in reconstructions)
        assert [o.codes.shape[1] for o in outputs] == [length // h for h in model.hop_lengths]


def test_decode_of_encode_is_the_levels_reconstruction(one_thread):
    model = tiny()
    train(model, 3)  # initialised, non-trivial codebooks
    model.eval()
    x = audio(length=1024, seed=5)
    with torch.no_grad():
        joint, outputs = model.autoencode(x)
        for level in range(3):
            codes = model.encode(x, level)
            alone, out = model.autoencode_level(x, level)
            assert torch.equal(codes, outputs[level].codes) and torch.equal(codes, out.codes)
            decoded = model.decode(codes, level)
            torch.testing.assert_close(decoded, joint[level], rtol=0, atol=1e-6)
            torch.testing.assert_close(decoded, alone, rtol=0, atol=1e-6)
    # encode() changes no state, even in training mode.
    model.train()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    model.encode(x, 1)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())


# --------------------------------------------------------------------------- training
def test_restarts_keep_the_codebook_in_use_and_without_them_it_collapses(one_thread):
    """The coarsest level (64 vectors per batch of 8 crops) on tones: the encoder moves
    faster than the EMA codebook follows, so without restarts nearly every vector falls to
    one or two codes; random restarts keep many in use. (EMA decay 0.9 lets the codebook
    follow within a 60-step run; at 0.99 the perplexities are about 5 and 1.)"""
    tails = {}
    for threshold in (1.0, 0.0):
        model = tiny(codebook_size=32, restart_threshold=threshold, train_level=2,
                     ema_decay=0.9)
        perplexities = train(model, 60)
        tails[threshold] = sum(p[0] for p in perplexities[-20:]) / 20
    assert tails[0.0] < 2.5, tails
    assert tails[1.0] > 6.0 and tails[1.0] > 4.0 * tails[0.0], tails


def test_reconstruction_improves_with_training_at_every_level(one_thread):
    model = tiny()
    val = tones()
    before = [mr_stft(model, val, level) for level in range(3)]
    perplexities = train(model, 40)
    after = [mr_stft(model, val, level) for level in range(3)]
    assert all(a < 0.85 * b for a, b in zip(after, before)), (before, after)
    assert all(p > 2.0 for p in perplexities[-1]), perplexities[-1]


def test_train_level_trains_that_level_alone(one_thread):
    model = tiny(train_level=1)
    x = audio(length=1024)
    reconstruction, outputs = model.autoencode(x)
    assert torch.is_tensor(reconstruction) and reconstruction.shape == x.shape
    assert len(outputs) == 1 and outputs[0].codes.shape == (2, 32)
    assert [all(p.requires_grad for p in level.parameters()) for level in model.levels] == \
        [False, True, False]
    before = {k: v.clone() for k, v in model.state_dict().items()}
    train(model, 2)
    changed = {k for k, v in model.state_dict().items() if not torch.equal(before[k], v)}
    assert changed and all(k.startswith("levels.1.") for k in changed), sorted(changed)
    assert "levels.1.quantizer.codebook" in changed
    assert not model.levels[0].quantizer.initialized and not model.levels[2].quantizer.initialized
    # Every level still encodes and decodes (the others as they were built).
    assert model.decode(model.encode(x, 2), 2).shape == x.shape


def test_the_vq_task_scores_each_level_on_its_own(tmp_path, one_thread):
    model = tiny()
    train(model, 3)
    task = VQTask(model, spectral_weight=0.5, resolutions=RESOLUTIONS)
    batch = {"audio": tones(size=4)}
    _, values = task._evaluate(model, batch["audio"])
    model.eval()
    with torch.no_grad():
        levels = [model.autoencode_level(batch["audio"], level) for level in range(3)]
    recon = sum(float((r - batch["audio"]).pow(2).mean()) for r, _ in levels)
    commit = sum(float(o.commitment_loss) for _, o in levels)
    assert float(values["recon"]) == pytest.approx(recon, rel=1e-5)
    assert float(values["commit"]) == pytest.approx(commit, rel=1e-5)
    assert float(values["loss"]) == pytest.approx(
        recon + 0.5 * float(values["spectral"]) + commit, rel=1e-5)
    metrics = task.validation_metrics(model, batch)
    per_level = [metrics[f"mr_stft_level{i}"] for i in range(3)]
    assert metrics["mr_stft"] == pytest.approx(sum(per_level) / 3)
    samples = task.make_samples(model, batch, tmp_path, 0.1, RATE)
    assert {"sample_snr_db", "sample_mr_stft", "sample_mr_stft_level1",
            "sample_mr_stft_level2"} <= set(samples)
    assert all((tmp_path / name).is_file() for name in (
        "reconstruction.wav", "reconstruction-level1.wav", "reconstruction-level2.wav",
        "reference.wav"))


def test_a_bundle_round_trips_and_decodes_each_level(tmp_path, one_thread):
    model = tiny()
    train(model, 2)
    model.eval()
    info = BundleInfo("vqvae", model.config, RATE, conditioning="none")
    save_bundle(tmp_path / "bundle", model, info)
    loaded, loaded_info = load_bundle(tmp_path / "bundle")
    assert isinstance(loaded, VQVAE) and loaded.config == model.config
    x = audio(length=512)
    for level, hop in enumerate((8, 32, 128)):
        codes = model.encode(x, level)
        assert torch.equal(loaded.encode(x, level), codes)
        with torch.no_grad():
            assert torch.equal(loaded.decode(codes, level), model.decode(codes, level))
        decoder = DiscreteDecoderAdapter(loaded, loaded_info, level=level)
        assert decoder.input == Signal("codes", 64, RATE, hop)


# --------------------------------------------------------------------------- errors
@pytest.mark.parametrize("overrides, message", [
    ({"hops": (32, 8, 128)}, r"hops must be strictly increasing samples per code >= 2"),
    ({"hops": (1, 8, 128)}, r"hops must be strictly increasing"),
    ({"hops": ()}, r"hops must be strictly increasing"),
    ({"channels": (16, 16)}, r"channels must hold 3 widths >= 1 \(one per level\), got \[16, 16\]"),
    ({"residual_depth": (2, -1, 2)}, r"residual_depth must hold 3 block counts >= 0"),
    ({"hops": (8, 20, 128)}, r"hop 20 has a prime factor over max_stride 4"),
    ({"strides": [[4, 2], [4, 4, 2]]}, r"strides must hold 3 lists \(one per level\), got 2"),
    ({"strides": [[4, 2], [4, 4, 4], [4, 4, 4, 2]]},
     r"strides\[1\] \[4, 4, 4\] must be factors >= 2 whose product is hops\[1\] \(32\)"),
    ({"max_stride": 1}, r"max_stride must be >= 2"),
    ({"codebook_size": 0}, r"codebook_size must be >= 1, got 0"),
    ({"code_dim": 0}, r"code_dim must be >= 1"),
    ({"ema_decay": 1.0}, r"ema_decay must be in \[0, 1\), got 1.0"),
    ({"beta": -0.1}, r"beta and restart_threshold must be >= 0"),
    ({"restart_threshold": -1.0}, r"beta and restart_threshold must be >= 0"),
    ({"train_level": 3}, r"train_level must be None \(all levels\) or a level in 0..2, got 3"),
    ({"dilation_growth": 3, "residual_depth": (2, 2, 12)}, r"reaches a dilation over 65536"),
    ({"sample_rate": 0}, r"sample_rate must be >= 1"),
])
def test_bad_configs_are_one_line_config_errors(overrides, message):
    with pytest.raises(ConfigError, match=message) as info:
        VQVAEConfig.preset("tiny", **overrides)
    assert "\n" not in str(info.value) and str(info.value).startswith("VQVAEConfig")


def test_bad_dicts_and_sizes_are_one_line_config_errors():
    base = VQVAEConfig.preset("tiny").to_dict()
    with pytest.raises(ConfigError, match=r"model.hops must be a list, got str") as wrong:
        VQVAEConfig.from_dict({**base, "hops": "8"}, "model")
    with pytest.raises(ConfigError, match=r"model: unknown key\(s\) hop \(known: ") as unknown:
        VQVAEConfig.from_dict({**base, "hop": 8}, "model")
    with pytest.raises(ConfigError, match=r"model: channels=\[1000000, 16, 16\] gives about "
                                          r".* parameters") as huge:
        build_model("vqvae", {**base, "channels": [10 ** 6, 16, 16]})
    with pytest.raises(ConfigError, match="unknown VQ-VAE preset 'huge'; choose one of "
                                          "jukebox, tiny") as preset:
        VQVAEConfig.preset("huge")
    assert all("\n" not in str(e.value) for e in (wrong, unknown, huge, preset))


def test_a_recipe_whose_crops_are_not_whole_codes_is_refused():
    with pytest.raises(ConfigError, match=r"data.crop_samples \(4100\) must be a multiple of 128, "
                                          r"the samples per code of every level"):
        load_recipe(RECIPES / "vqvae-tiny.yaml", ["data.crop_samples=4100"])


@pytest.mark.parametrize("call, message", [
    (lambda m: m.encode(audio(), 3), r"VQVAE has levels 0..2, got level 3"),
    (lambda m: m.encode(audio(), -1), r"VQVAE has levels 0..2, got level -1"),
    (lambda m: m.decode(torch.zeros(1, 4, dtype=torch.long), True), r"got level True"),
    (lambda m: m.autoencode_level(audio(), "0"), r"got level '0'"),
    (lambda m: m.encode(audio()[:, 0], 0),
     r"VQVAE encode \(level 0\) takes float audio \[batch, 1, T\] with T a positive multiple "
     r"of 8, got \[2, 1024\]"),
    (lambda m: m.encode(torch.zeros(2, 2, 1024), 0), r"got \[2, 2, 1024\]"),
    (lambda m: m.encode(audio(length=1001), 0), r"multiple of 8, got \[2, 1, 1001\]"),
    (lambda m: m.encode(audio(length=1000), 1), r"multiple of 32, got \[2, 1, 1000\]"),
    (lambda m: m.encode(torch.zeros(2, 1, 1024, dtype=torch.long), 0), r"takes float audio"),
    (lambda m: m.autoencode(audio(length=1032)),
     r"VQVAE autoencode \(every level\) takes .* multiple of 128, got \[2, 1, 1032\]"),
    (lambda m: m.decode(torch.zeros(4, dtype=torch.long), 0),
     r"VQVAE decode takes integer codes \[batch, frames\], got \[4\]"),
    (lambda m: m.decode(torch.zeros(1, 4), 0), r"codes must be an integer \[batch, time\]"),
    (lambda m: m.decode(torch.full((1, 4), 64), 2), r"codes must lie in \[0, 64\), got \[64, 64\]"),
])
def test_wrong_inputs_and_levels_are_one_line_usage_errors(call, message):
    model = tiny()
    with pytest.raises(UsageError, match=message) as info:
        call(model)
    assert "\n" not in str(info.value)
