"""WaveGlow: exact inverse, log-determinant against autograd, likelihood, inference paths."""

import math

import pytest
import torch

from wavegen.errors import ConfigError, UsageError
from wavegen.models.registry import build_model
from wavegen.models.waveglow import WaveGlow, WaveGlowConfig
from wavegen.nn.flows import squeeze
from wavegen.nn.weight_norm import fold_weight_norm

SMALL = dict(n_mels=6, hop_length=16, sample_rate=8000, n_flows=4, n_group=4,
             n_early_every=2, n_early_size=2, wn_layers=2, wn_channels=8,
             upsample_kernel=32)


def small_flow(seed=0, **overrides) -> WaveGlow:
    """A tiny WaveGlow whose couplings are not the identity (the end convs start at 0)."""
    torch.manual_seed(seed)
    model = WaveGlow(WaveGlowConfig(**{**SMALL, **overrides}))
    with torch.no_grad():
        for step in model.flows:
            torch.nn.init.normal_(step.coupling.net.end.weight, std=0.2)
            torch.nn.init.normal_(step.coupling.net.end.bias, std=0.1)
    return model


CONFIGS = [dict(), dict(lu=True), dict(upsample="nearest"), dict(n_early_size=0),
           dict(weight_norm=False, signal_scale=8.0), dict(n_group=8, n_flows=5, n_early_every=3,
                                                           wn_kernel=5)]


@pytest.mark.parametrize("overrides", CONFIGS)
def test_inverse_of_forward_is_identity(overrides):
    model = small_flow(**overrides)
    audio, mel = 0.3 * torch.randn(2, 1, 5 * 16), torch.randn(2, 6, 5)
    z, log_det = model(audio, mel)
    assert z.shape == (2, model.config.n_group, 5 * 16 // model.config.n_group)
    assert log_det.shape == (2,)
    assert torch.allclose(model.inverse(z, mel), audio, atol=1e-5)


@pytest.mark.parametrize("overrides", [dict(), dict(lu=True, signal_scale=3.0)])
def test_log_det_equals_autograd_jacobian(overrides):
    model = small_flow(1, **overrides)
    mel = torch.randn(1, 6, 2)
    audio = 0.3 * torch.randn(1, 1, 32).double()
    # the flow computes its affine parts in float32: compare at float32 accuracy
    jac = torch.autograd.functional.jacobian(
        lambda a: model(a.reshape(1, 1, 32).float(), mel)[0].reshape(-1).double(),
        audio.reshape(-1))
    expected = torch.linalg.slogdet(jac)[1].item()
    _, log_det = model(audio.float(), mel)
    assert abs(log_det.item() - expected) < 1e-3 * max(1.0, abs(expected))
    assert abs(expected) > 1.0


def test_loss_is_exact_nll_in_nats_per_sample():
    model = small_flow(2, sigma=0.8)
    audio, mel = 0.3 * torch.randn(2, 1, 48), torch.randn(2, 6, 3)
    z, log_det = model(audio, mel)
    log_pz = torch.distributions.Normal(0.0, 0.8).log_prob(z).sum(dim=(1, 2))
    assert model.loss(audio, mel).item() == pytest.approx((-(log_pz + log_det) / 48).mean().item(),
                                                          abs=1e-5)


def test_infer_inverts_the_given_noise_and_scales_it_by_sigma():
    model = small_flow(3)
    mel = torch.randn(1, 6, 4)
    noise = torch.randn(1, 1, 64)
    audio = model.infer(mel, sigma=0.5, noise=noise)
    z, _ = model(audio, mel)
    assert torch.allclose(z, 0.5 * squeeze(noise, 4), atol=1e-4)
    torch.manual_seed(7)
    a = model.infer(mel)
    torch.manual_seed(7)
    assert torch.equal(a, model.infer(mel))  # seeded by torch's generator
    zero = model.infer(mel, sigma=0.0)
    assert torch.equal(zero, model.infer(mel, sigma=0.0))  # the mean: deterministic
    with pytest.raises(UsageError):
        model.infer(mel, noise=torch.randn(1, 1, 63))


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_half_precision_inference_stays_close_and_finite(dtype):
    model = small_flow(4)
    mel, noise = torch.randn(1, 6, 6), torch.randn(1, 1, 96)
    reference = model.infer(mel, sigma=0.6, noise=noise)
    half = model.infer(mel, sigma=0.6, noise=noise, dtype=dtype)
    assert half.dtype == torch.float32 and torch.isfinite(half).all()
    assert (half - reference).abs().max() < 0.05 * reference.abs().max() + 1e-3
    with pytest.raises(UsageError):
        model.infer(mel, dtype=torch.int8)


def test_weight_norm_folding_keeps_outputs():
    model = small_flow(5)
    mel, noise = torch.randn(1, 6, 3), torch.randn(1, 1, 48)
    before = model.infer(mel, sigma=0.7, noise=noise)
    fold_weight_norm(model)
    assert torch.allclose(model.infer(mel, sigma=0.7, noise=noise), before, atol=1e-5)


def test_presets_and_size_estimates():
    paper = WaveGlowConfig.preset("paper")
    assert paper.estimate_size().parameters == 87_879_272  # the official model's count
    assert paper.flow_channels() == [8] * 4 + [6] * 4 + [4] * 4
    for name in ("small", "tiny"):
        config = WaveGlowConfig.preset(name)
        model = WaveGlow(config)
        assert sum(p.numel() for p in model.parameters()) == config.estimate_size().parameters
    model, config = build_model("waveglow", {"n_flows": 2, "n_early_every": 4, "wn_layers": 2,
                                             "wn_channels": 8, "upsample": "nearest"})
    assert isinstance(model, WaveGlow) and config.remaining_channels == 8


@pytest.mark.parametrize("bad", [dict(n_group=7), dict(hop_length=18), dict(n_early_size=3),
                                 dict(n_flows=13, n_early_every=2), dict(wn_kernel=4),
                                 dict(upsample="linear"), dict(upsample_kernel=8),
                                 dict(sigma=0.0), dict(infer_sigma=-1.0)])
def test_bad_configs_are_one_line_errors(bad):
    with pytest.raises(ConfigError) as err:
        WaveGlowConfig(**{**SMALL, **bad})
    assert "\n" not in str(err.value)


def test_bad_shapes_are_usage_errors():
    model = small_flow()
    with pytest.raises(UsageError):
        model(torch.zeros(1, 1, 50), torch.zeros(1, 6, 3))  # not frames * hop
    with pytest.raises(UsageError):
        model.infer(torch.zeros(1, 5, 3))  # wrong mel bands
    with pytest.raises(UsageError):
        model.loss(torch.zeros(1, 1, 48), torch.zeros(1, 6, 3), torch.zeros(1))


def test_a_tiny_flow_models_a_tone_better_than_a_gaussian():
    """Trained briefly on a 440 Hz tone, the flow's NLL beats a Gaussian fitted to the data."""
    torch.manual_seed(0)
    config = WaveGlowConfig(n_mels=4, hop_length=64, sample_rate=8000, n_flows=4, n_group=8,
                            n_early_every=2, n_early_size=2, wn_layers=3, wn_channels=16,
                            upsample="nearest")
    model = WaveGlow(config)
    t = torch.arange(64 * 16) / 8000
    clips = []
    for phase in torch.linspace(0, 2 * math.pi, 9)[:-1]:
        clips.append(0.5 * torch.sin(2 * math.pi * 440 * t + phase))
    audio = torch.stack(clips)[:, None]
    mel = torch.zeros(audio.shape[0], 4, 16)
    gaussian = 0.5 * math.log(2 * math.pi * math.e * audio.var().item())
    optimiser = torch.optim.Adam(model.parameters(), lr=2e-3)
    for _ in range(150):
        optimiser.zero_grad()
        loss = model.loss(audio, mel)
        loss.backward()
        optimiser.step()
    final = model.loss(audio, mel).item()
    assert final < gaussian - 1.0, (final, gaussian)
