"""Diffusion core: schedules, parameterisations, weighted loss, samplers, guidance, training."""

from __future__ import annotations

import csv
import math

import numpy as np
import pytest
import torch
from safetensors.torch import load_file
from torch import nn
from torch.nn import functional as F

from families import DenoiserConfig, TinyDenoiser

from wavegen.audio.features import FeatureConfig
from wavegen.checkpoint import BundleInfo
from wavegen.data.synthetic import ToneDataset
from wavegen.diffusion import (PARAMETERIZATIONS, DiffusionProcess, ScheduleConfig,
                               classifier_free_guidance, convert, denoising_loss, make_schedule,
                               sample, target_of, to_x0_eps)
from wavegen.errors import ConfigError, UsageError
from wavegen.train.config import TrainConfig
from wavegen.train.tasks.diffusion import DiffusionTask, drop_conditioning
from wavegen.train.trainer import Trainer

KINDS = ("linear", "cosine", "ve")
GRID = torch.linspace(0, 1, 201, dtype=torch.float64)


def schedule(kind: str, **values):
    return make_schedule(ScheduleConfig(kind=kind, **values))


# --------------------------------------------------------------------------- schedules
@pytest.mark.parametrize("kind", ["linear", "cosine"])
def test_vp_schedules_preserve_variance(kind):
    alpha, sigma = schedule(kind).alpha_sigma(GRID)
    assert torch.allclose(alpha ** 2 + sigma ** 2, torch.ones_like(alpha), atol=1e-12)
    assert alpha[0] == 1 and sigma[0] == 0


@pytest.mark.parametrize("kind", KINDS)
def test_log_snr_decreases_and_t_from_log_snr_inverts_it(kind):
    s = schedule(kind)
    log_snr = s.log_snr(GRID)
    assert torch.all(log_snr[1:] < log_snr[:-1])
    alpha, sigma = s.alpha_sigma(GRID[1:])
    assert torch.allclose(log_snr[1:], torch.log(alpha ** 2 / sigma ** 2), atol=1e-9)
    assert torch.allclose(s.t_from_log_snr(log_snr), GRID, atol=1e-9)
    # float32 in, float32 out
    assert s.log_snr(GRID.float()).dtype == torch.float32


@pytest.mark.parametrize("betas", [(1e-4, 0.05, 50), (1e-4, 0.02, 1000), (5e-4, 0.5, 6)])
def test_linear_schedule_is_the_discrete_ddpm_cumprod_at_step_times(betas):
    start, end, steps = betas
    s = schedule("linear", beta_start=start, beta_end=end, num_steps=steps)
    alpha_bar = np.cumprod(1 - np.linspace(start, end, steps))
    t = torch.arange(1, steps + 1, dtype=torch.float64) / steps
    assert np.allclose(s.alpha(t).numpy() ** 2, alpha_bar, rtol=0, atol=1e-6)
    assert np.allclose(s.alpha(t.float()).numpy() ** 2, alpha_bar, rtol=0, atol=1e-6)


def test_cosine_schedule_follows_nichol_dhariwal():
    s = 0.008
    t = torch.linspace(0, 0.99, 100, dtype=torch.float64)
    f = torch.cos((t + s) / (1 + s) * math.pi / 2) ** 2
    alpha_bar = schedule("cosine").alpha(t) ** 2
    # Only the clip at t -> 1 rescales time (by about 3.5e-4).
    assert torch.allclose(alpha_bar, f / f[0], atol=1e-3)
    assert schedule("cosine").log_snr(torch.tensor(1.0)).item() == pytest.approx(-15.0)


def test_ve_schedule_endpoints_and_geometric_sigma():
    s = schedule("ve", sigma_min=0.01, sigma_max=50.0)
    alpha, sigma = s.alpha_sigma(torch.tensor([0.0, 0.5, 1.0], dtype=torch.float64))
    assert torch.equal(alpha, torch.ones(3, dtype=torch.float64))
    assert sigma.tolist() == pytest.approx([0.01, math.sqrt(0.01 * 50.0), 50.0])
    assert s.prior_std == 50.0 and not s.variance_preserving


def test_schedule_config_round_trip_and_errors():
    config = ScheduleConfig(kind="cosine", num_steps=20)
    assert ScheduleConfig.from_dict(config.to_dict()) == config
    for bad in ({"kind": "sigmoid"}, {"beta_start": 0.1, "beta_end": 0.01},
                {"sigma_min": 0.0}, {"num_steps": 0}, {"beta_end": 1.0}):
        with pytest.raises(ConfigError):
            ScheduleConfig(**bad)
    with pytest.raises(ConfigError, match="unknown key"):
        ScheduleConfig.from_dict({"kind": "ve", "rho": 7})


# --------------------------------------------------------------------------- parameterisations
@pytest.mark.parametrize("kind", KINDS)
def test_every_parameterisation_round_trips(kind):
    g = torch.Generator().manual_seed(0)
    x0, eps = torch.randn(2, 4, 1, 50, generator=g, dtype=torch.float64)
    t = torch.rand(4, generator=g, dtype=torch.float64) * 0.98 + 0.01
    alpha, sigma = schedule(kind).alpha_sigma(t)
    a, s = alpha.view(-1, 1, 1), sigma.view(-1, 1, 1)
    x_t = a * x0 + s * eps
    for p in PARAMETERIZATIONS:
        target = target_of(p, x0, eps, alpha, sigma)
        x0_back, eps_back = to_x0_eps(p, target, x_t, alpha, sigma)
        assert torch.allclose(x0_back, x0, atol=1e-9) and torch.allclose(eps_back, eps, atol=1e-9), p
        for q in PARAMETERIZATIONS:
            there = convert(target, p, q, x_t, alpha, sigma)
            assert torch.allclose(there, target_of(q, x0, eps, alpha, sigma), atol=1e-8), (p, q)
            assert torch.allclose(convert(there, q, p, x_t, alpha, sigma), target, atol=1e-8)
    assert torch.allclose(target_of("v", x0, eps, alpha, sigma), a * eps - s * x0)
    assert torch.allclose(target_of("score", x0, eps, alpha, sigma), -eps / s)
    with pytest.raises(ConfigError):
        target_of("mu", x0, eps, alpha, sigma)


# --------------------------------------------------------------------------- loss weighting
def some_eps_net(s):
    """A fixed (untrained) eps predictor, and the same function in every parameterisation."""
    weight = torch.linspace(-1, 1, 5).view(1, 1, 5)

    def eps_of(x_t, t):
        return torch.tanh(F.conv1d(x_t, weight, padding=2)) * (1 + t.view(-1, 1, 1))

    def net(kind):
        def denoise(x_t, t):
            alpha, sigma = s.alpha_sigma(t)
            return convert(eps_of(x_t, t), "eps", kind, x_t, alpha, sigma)
        return denoise
    return net


@pytest.mark.parametrize("kind", KINDS)
def test_weightings_are_the_same_objective_in_every_parameterisation(kind):
    s = schedule(kind)
    net = some_eps_net(s)
    x0 = torch.sin(torch.arange(256.0) / 5).expand(6, 1, 256) * 0.5
    t = torch.tensor([0.01, 0.1, 0.3, 0.5, 0.8, 0.999])

    def loss(p, weighting):
        terms = denoising_loss(net(p), x0, s, p, weighting, t=t,
                               generator=torch.Generator().manual_seed(3), min_snr_gamma=5.0)
        return terms.per_example.double()

    eps_plain = loss("eps", "none")
    for p in PARAMETERIZATIONS:
        # eps-MSE with weight 1 == x0-MSE with weight SNR == v-MSE with SNR / (SNR + 1) ...
        assert torch.allclose(loss(p, "snr"), eps_plain, rtol=2e-4), p
        for weighting in ("min_snr", "truncated_snr"):
            assert torch.allclose(loss(p, weighting), loss("eps", weighting), rtol=2e-4), (p, weighting)
    snr = s.snr(t).double()
    assert torch.allclose(loss("x0", "min_snr"), loss("x0", "none") * snr.clamp(max=5), rtol=2e-4)
    assert torch.allclose(loss("eps", "truncated_snr") * snr,
                          loss("x0", "none") * snr * snr.clamp(min=1), rtol=2e-4)
    if kind != "ve":
        assert torch.allclose(loss("v", "none"), loss("x0", "none") * (snr + 1), rtol=2e-4)
    # The x0-MSE diagnostic is parameterisation-free.
    terms = denoising_loss(net("v"), x0, s, "v", t=t, generator=torch.Generator().manual_seed(3))
    assert torch.allclose(terms.x0_mse.double(), loss("x0", "none"), rtol=2e-4)


def test_loss_draws_times_and_noise_from_the_generator():
    s = schedule("linear")
    net = some_eps_net(s)("eps")
    x0 = torch.zeros(4, 1, 64)
    a = denoising_loss(net, x0, s, generator=torch.Generator().manual_seed(1))
    b = denoising_loss(net, x0, s, generator=torch.Generator().manual_seed(1))
    assert torch.equal(a.loss, b.loss) and torch.equal(a.t, b.t)
    assert a.t.min() >= 1e-3 and a.t.max() <= 1
    assert a.loss.requires_grad is False  # nothing trainable in the fixed net


# --------------------------------------------------------------------------- samplers
def exact_x0_denoiser(s, target, kind):
    """The optimal denoiser when the data is the single signal ``target``."""
    def denoise(x_t, t):
        alpha, sigma = s.alpha_sigma(t)
        eps = (x_t - alpha.view(-1, 1, 1) * target) / sigma.view(-1, 1, 1)
        return target_of(kind, target.expand_as(x_t), eps, alpha, sigma)
    return denoise


def gaussian_eps_denoiser(s, std):
    """The optimal eps prediction for data N(0, std^2 I)."""
    def denoise(x_t, t):
        alpha, sigma = s.alpha_sigma(t.double())
        gain = (sigma / (alpha ** 2 * std ** 2 + sigma ** 2)).view(-1, 1, 1)
        return (gain * x_t.double()).to(x_t.dtype)
    return denoise


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("sampler", ["ddpm", "ddim", "heun"])
@pytest.mark.parametrize("param", ["eps", "x0", "v"])
def test_samplers_return_the_single_data_point(kind, sampler, param):
    s = schedule(kind)
    target = torch.sin(torch.arange(300.0) / 7).view(1, 1, 300) * 0.8
    out = sample(exact_x0_denoiser(s, target, param), s, param, (3, 1, 300), sampler=sampler,
                 steps=12, generator=torch.Generator().manual_seed(0))
    assert torch.allclose(out, target.expand(3, 1, 300), atol=2e-4)


@pytest.mark.parametrize("kind", KINDS)
def test_ode_samplers_converge_on_the_gaussian_probability_flow(kind):
    # For N(0, std^2) data the probability-flow ODE maps initial noise z to std * z (up to
    # the data's share of the t = 1 marginal), so the error is the solver's: halving the
    # step divides it by about 2 for DDIM (first order) and by about 4 for Heun (second).
    s, std = schedule(kind), 0.5
    z = torch.randn(4, 1, 1000, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    alpha1, sigma1 = s.alpha_sigma(torch.tensor(1.0, dtype=torch.float64))
    exact = std * z * s.prior_std / (alpha1 ** 2 * std ** 2 + sigma1 ** 2).sqrt()
    denoise = gaussian_eps_denoiser(s, std)

    def error(sampler, steps, spacing):
        out = sample(denoise, s, "eps", sampler=sampler, steps=steps, noise=z, spacing=spacing,
                     dtype=torch.float64)
        return (out - exact).abs().max().item() / std

    for spacing in ("uniform", "karras"):
        ddim = [error("ddim", n, spacing) for n in (40, 80)]
        assert 1.8 < ddim[0] / ddim[1] < 2.2, (spacing, ddim)
    heun = [error("heun", n, "karras") for n in (20, 40, 80)]
    assert heun[0] / heun[1] > 3.5 and heun[1] / heun[2] > 3.5, heun
    assert heun[2] < 0.03 and heun[1] < ddim[1]


def gaussian_sample_std(s, std, steps, sampler, eta=0.0, variance="posterior"):
    """The exact std of a sampler's output on N(0, std^2) data with the optimal denoiser.

    Every step is linear-Gaussian in x_t: x_s = c x_t + (noise of variance v).
    """
    from wavegen.diffusion.samplers import time_grid

    _, alphas, sigmas = time_grid(s, steps)
    var = s.prior_std ** 2
    for i in range(steps):
        a_t, s_t, a_s, s_s = alphas[i], sigmas[i], alphas[i + 1], sigmas[i + 1]
        eps_gain = s_t / (a_t ** 2 * std ** 2 + s_t ** 2)
        x0_gain = (1 - s_t * eps_gain) / a_t
        r = (a_t * s_s / (a_s * s_t)) ** 2
        if sampler == "ddpm":
            gain = r * a_s / a_t + a_s * (1 - r) * x0_gain
            added = 0 if i == steps - 1 else (1 - r) * (s_s if variance == "posterior" else s_t) ** 2
        else:
            added = eta ** 2 * (1 - r) * s_s ** 2
            gain = a_s * x0_gain + math.sqrt(s_s ** 2 - added) * eps_gain
        var = gain ** 2 * var + added
    return math.sqrt(var)


@pytest.mark.parametrize("sampler, options", [
    ("ddpm", {"variance": "posterior"}), ("ddpm", {"variance": "beta"}), ("ddim", {"eta": 1.0}),
    ("ddim", {"eta": 0.5}), ("ddim", {}), ("heun", {}), ("heun", {"spacing": "karras"})])
def test_samplers_match_the_gaussian_data_std(sampler, options):
    s, std, dims = schedule("cosine"), 0.3, 20000
    out = sample(gaussian_eps_denoiser(s, std), s, "eps", (1, 1, dims), sampler=sampler,
                 steps=200, generator=torch.Generator().manual_seed(1), **options)
    assert abs(out.std().item() / std - 1) < 0.05
    assert abs(out.mean().item()) < 4 * std / math.sqrt(dims)


@pytest.mark.parametrize("sampler, options", [
    ("ddpm", {"variance": "posterior"}), ("ddpm", {"variance": "beta"}), ("ddim", {"eta": 1.0}),
    ("ddim", {"eta": 0.3})])
def test_few_step_stochastic_samplers_have_the_predicted_spread(sampler, options):
    # With 10 steps the samplers are biased (DDPM's posterior variance undershoots, beta
    # overshoots); the injected noise must still give exactly the predicted spread.
    s, std, dims = schedule("linear"), 0.3, 20000
    out = sample(gaussian_eps_denoiser(s, std), s, "eps", (1, 1, dims), sampler=sampler,
                 steps=10, generator=torch.Generator().manual_seed(2), **options)
    expected = gaussian_sample_std(s, std, 10, sampler, **options)
    assert abs(out.std().item() / expected - 1) < 0.02  # 4 standard errors at 20k dims


def test_ddim_with_eta_one_is_the_ddpm_posterior_step():
    s = schedule("linear")
    denoise = gaussian_eps_denoiser(s, 0.4)
    g = torch.Generator().manual_seed(2)
    z, steps = torch.randn(2, 1, 500, generator=g), torch.randn(10, 2, 1, 500, generator=g)
    ddpm = sample(denoise, s, "eps", sampler="ddpm", steps=10, noise=z, step_noise=steps)
    ddim = sample(denoise, s, "eps", sampler="ddim", eta=1.0, steps=10, noise=z, step_noise=steps)
    assert torch.allclose(ddpm, ddim, atol=1e-5)
    beta = sample(denoise, s, "eps", sampler="ddpm", variance="beta", steps=10, noise=z,
                  step_noise=steps)
    assert not torch.allclose(ddpm, beta, atol=1e-3)


@pytest.mark.parametrize("sampler", ["ddpm", "ddim", "heun"])
def test_sampling_is_reproducible(sampler):
    s = schedule("cosine")
    denoise = gaussian_eps_denoiser(s, 0.5)

    def draw(seed, **kw):
        return sample(denoise, s, "eps", (2, 1, 128), sampler=sampler, steps=8, eta=0.5,
                      generator=torch.Generator().manual_seed(seed), **kw)

    assert torch.equal(draw(0), draw(0))
    assert not torch.allclose(draw(0), draw(1))
    z = torch.randn(2, 1, 128)
    steps = torch.randn(8, 2, 1, 128)
    a = sample(denoise, s, "eps", sampler=sampler, steps=8, eta=0.5, noise=z, step_noise=steps)
    b = sample(denoise, s, "eps", sampler=sampler, steps=8, eta=0.5, noise=z,
               step_noise=lambda i: steps[i], generator=torch.Generator().manual_seed(9))
    assert torch.equal(a, b)


@pytest.mark.parametrize("kind", ["linear", "ve"])
@pytest.mark.parametrize("sampler", ["ddpm", "ddim", "heun"])
def test_inpainting_keeps_the_known_audio(kind, sampler):
    s = schedule(kind)
    denoise = gaussian_eps_denoiser(s, 0.5)
    g = torch.Generator().manual_seed(4)
    known = torch.rand(2, 1, 256, generator=g) - 0.5
    mask = torch.zeros(2, 1, 256)
    mask[0, :, :100] = 1  # continuation
    mask[1, :, 50:80] = 1  # a gap on both sides
    out = sample(denoise, s, "eps", sampler=sampler, steps=10, known=known, mask=mask,
                 generator=torch.Generator().manual_seed(0))
    assert torch.equal(out[mask.bool()], known[mask.bool()])
    assert not torch.allclose(out[~mask.bool()], known[~mask.bool()])
    # A mask of ones returns the known audio; a mask of zeros is plain sampling.
    ones = sample(denoise, s, "eps", sampler=sampler, steps=5, known=known,
                  mask=torch.ones(1, 1, 256), generator=torch.Generator().manual_seed(0))
    assert torch.equal(ones, known)
    zeros = sample(denoise, s, "eps", sampler=sampler, steps=5, known=known,
                   mask=torch.zeros(1, 1, 256), generator=torch.Generator().manual_seed(0))
    plain = sample(denoise, s, "eps", (2, 1, 256), sampler=sampler, steps=5,
                   generator=torch.Generator().manual_seed(0))
    assert torch.equal(zeros, plain)
    with pytest.raises(UsageError):
        sample(denoise, s, "eps", (2, 1, 256), known=known)


def test_sampler_arguments_are_checked():
    s = schedule("linear")
    denoise = gaussian_eps_denoiser(s, 0.5)
    with pytest.raises(ConfigError):
        sample(denoise, s, "eps", (1, 1, 8), sampler="euler_a")
    with pytest.raises(ConfigError):
        sample(denoise, s, "eps", (1, 1, 8), eta=2.0)
    with pytest.raises(UsageError):
        sample(denoise, s, "eps", (1, 1, 8), steps=0)
    with pytest.raises(UsageError):
        sample(denoise, s, "eps", (1, 1, 8), noise=torch.zeros(1, 1, 9))


# --------------------------------------------------------------------------- guidance, process
def test_classifier_free_guidance():
    calls = []

    def cond(x, t):
        calls.append("cond")
        return x + 1

    def uncond(x, t):
        calls.append("uncond")
        return x * 2

    x, t = torch.randn(2, 1, 16), torch.rand(2)
    assert torch.equal(classifier_free_guidance(cond, uncond, 0.0)(x, t), x * 2)
    assert calls == ["uncond"]
    assert torch.equal(classifier_free_guidance(cond, uncond, 1.0)(x, t), x + 1)
    assert calls == ["uncond", "cond"]
    guided = classifier_free_guidance(cond, uncond, 3.0)(x, t)
    assert torch.allclose(guided, x * 2 + 3 * (x + 1 - x * 2))


def test_diffusion_process_round_trip_and_errors():
    process = DiffusionProcess(schedule=ScheduleConfig(kind="ve"), parameterization="v",
                               weighting="min_snr", cond_dropout=0.1, sampler="heun",
                               sampler_steps=20)
    data = process.to_dict()
    assert data["schedule"]["kind"] == "ve"
    assert DiffusionProcess.from_dict(data) == process
    for bad in ({"parameterization": "noise"}, {"weighting": "p2"}, {"sampler": "euler"},
                {"cond_dropout": 1.0}, {"eta": -0.1}, {"sampler_steps": 0},
                {"schedule": {"kind": "linear", "beta_end": 2.0}}):
        with pytest.raises(ConfigError):
            DiffusionProcess.from_dict(bad)
    with pytest.raises(ConfigError, match="diffusion.schedule: unknown key"):
        DiffusionProcess.from_dict({"schedule": {"kinds": "ve"}})


# --------------------------------------------------------------------------- training
def test_diffusion_task_trains_a_tiny_denoiser(tmp_path):
    torch.manual_seed(0)
    features = FeatureConfig(sample_rate=8000, n_fft=256, hop_length=64, win_length=256,
                             n_mels=16, fmax=4000.0)
    train_set = ToneDataset(64, 8000, 512, features)
    val_set = ToneDataset(8, 8000, 512, features, split="val")
    model = TinyDenoiser(DenoiserConfig(n_mels=16))
    assert sum(p.numel() for p in model.parameters()) < 5000
    process = DiffusionProcess(schedule=ScheduleConfig(kind="linear"), cond_dropout=0.1,
                               sampler="ddim", sampler_steps=8, guidance_scale=1.5)
    task = DiffusionTask(model, process, local_key="mel", features=features)
    config = TrainConfig(steps=40, batch_size=8, lr=1e-2, val_every=20, val_batches=1,
                         checkpoint_every=40, log_every=10, sample_seconds=0.064, device="cpu")
    trainer = Trainer(task, train_set, val_set, config, tmp_path,
                      BundleInfo("tiny-diffusion", model.config, 8000, features), progress=False)
    batch = torch.utils.data.default_collate([val_set[i] for i in range(8)])
    before = task.validation_metrics(model, batch)
    assert task.validation_metrics(model, batch) == before  # deterministic
    after = trainer.fit()
    # Predicting zero noise scores 1; the trained net must beat that clearly too.
    assert after["loss"] < 0.7 * before["loss"] and after["loss"] < 0.6, (before, after)
    with open(tmp_path / "log.csv") as handle:
        val = [float(r["value"]) for r in csv.DictReader(handle)
               if r["kind"] == "val" and r["name"] == "loss"]
    assert len(val) == 2 and val[-1] == pytest.approx(after["loss"], rel=1e-5)
    assert (tmp_path / "checkpoints" / "step-0000040" / "model.safetensors").is_file()
    assert (tmp_path / "checkpoints" / "best" / "model.safetensors").is_file()
    samples = tmp_path / "samples" / "step-0000040"
    assert (samples / "sample.wav").is_file() and (samples / "reference.wav").is_file()
    assert "sample_log_mel_l1" in after and math.isfinite(after["sample_log_mel_l1"])
    # The checkpoint holds these weights; validation samples are seeded.
    saved = load_file(str(tmp_path / "checkpoints" / "step-0000040" / "model.safetensors"))
    assert all(torch.equal(saved[k], v) for k, v in model.state_dict().items())
    again = task.make_samples(model, batch, tmp_path / "again", 0.064, 8000)
    assert again == task.make_samples(model, batch, tmp_path / "twice", 0.064, 8000)
    assert ((tmp_path / "again" / "sample.wav").read_bytes()
            == (tmp_path / "twice" / "sample.wav").read_bytes())


def test_conditioning_dropout_zeroes_whole_examples():
    local = torch.ones(2000, 3, 4)
    assert drop_conditioning(local, 0.0) is local and drop_conditioning(None, 0.5) is None
    dropped = drop_conditioning(local, 0.25)
    per_example = dropped.flatten(1)
    assert torch.all((per_example == 0).all(1) | (per_example == 1).all(1))
    assert abs((per_example == 0).all(1).float().mean().item() - 0.25) < 0.04


def test_signal_scale_trains_and_samples_the_scaled_audio():
    scaled = DiffusionProcess(signal_scale=8.0, sampler="ddim", sampler_steps=3)
    plain = DiffusionProcess(sampler="ddim", sampler_steps=3)
    x0 = 0.01 * torch.randn(2, 1, 64, generator=torch.Generator().manual_seed(0))
    t, noise = torch.tensor([0.3, 0.7]), torch.randn(2, 1, 64)

    def denoise(x_t, t):
        return 0.5 * x_t

    a = scaled.loss(denoise, x0, t=t, noise=noise).loss
    b = plain.loss(denoise, 8.0 * x0, t=t, noise=noise).loss
    assert torch.equal(a, b)
    z = torch.randn(2, 1, 64, generator=torch.Generator().manual_seed(1))
    torch.testing.assert_close(scaled.sample(denoise, noise=z), plain.sample(denoise, noise=z) / 8)
    known, mask = torch.full((2, 1, 64), 0.01), torch.ones(2, 1, 64)
    torch.testing.assert_close(scaled.sample(denoise, noise=z, known=known, mask=mask), known)
    with pytest.raises(ConfigError, match="signal_scale"):
        DiffusionProcess(signal_scale=0.0)


def test_cond_use_tells_a_model_that_follows_its_conditioning_from_one_that_does_not():
    from wavegen.train.tasks.diffusion import DiffusionTask

    process = DiffusionProcess()
    schedule = process.make_schedule()
    hop, frames = 8, 6

    class Oracle(nn.Module):
        """Reads x0 from the conditioning (frames of audio) and returns the exact eps."""

        def forward(self, x_t, t, local=None):
            x0 = local.transpose(1, 2).reshape(x_t.shape)
            alpha, sigma = schedule.alpha_sigma(t.double())
            alpha, sigma = alpha.float()[:, None, None], sigma.float()[:, None, None]
            return (x_t - alpha * x0) / sigma

    class Deaf(nn.Module):
        def forward(self, x_t, t, local=None):
            return 0.5 * x_t

    audio = torch.randn(2, 1, hop * frames, generator=torch.Generator().manual_seed(0))
    batch = {"audio": audio, "mel": audio.reshape(2, frames, hop).transpose(1, 2)}
    oracle = DiffusionTask(Oracle(), process, local_key="mel").validation_metrics(Oracle(), batch)
    assert oracle["loss"] < 1e-6 and oracle["cond_use"] > 0.99
    deaf = DiffusionTask(Deaf(), process, local_key="mel").validation_metrics(Deaf(), batch)
    assert deaf["cond_use"] == 0.0
    assert "cond_use" not in DiffusionTask(Deaf(), process).validation_metrics(
        Deaf(), {"audio": audio})
