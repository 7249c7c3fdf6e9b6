"""Few-step sampling schedules: DiffWave's aligned fast grid, the WaveGrad-style search, and
grids stored in the process (wavegen.diffusion.fast_schedules, samplers, process)."""

from __future__ import annotations

import json
import math

import pytest
import torch
from torch import nn

from families import FEATURES, DenoiserConfig, TinyDenoiser
from wavegen.audio.features import FeatureConfig
from wavegen.audio.metrics import log_mel_l1
from wavegen.audio.signals import chord
from wavegen.audio.spectral import LogMelSpectrogram
from wavegen.checkpoint import BundleInfo
from wavegen.diffusion.fast_schedules import (DIFFWAVE_FAST_BETAS, candidate_grids,
                                              check_time_grid, diffwave_fast_times,
                                              search_time_grid, times_from_betas)
from wavegen.diffusion.process import DiffusionProcess
from wavegen.diffusion.samplers import sample, time_grid
from wavegen.diffusion.schedules import ScheduleConfig, make_schedule
from wavegen.errors import ConfigError, UsageError
from wavegen.inference.conditioning import Conditioning
from wavegen.inference.noise_driven import DiffusionAdapter
from wavegen.inference.options import InferenceOptions

SCHEDULES = {
    "diffwave-50": ScheduleConfig("linear", 50, 1e-4, 0.05),
    "diffwave-200": ScheduleConfig("linear", 200, 1e-4, 0.02),
    "cosine": ScheduleConfig("cosine"),
}


pytestmark = pytest.mark.usefixtures("one_thread")  # tiny tensors (conftest.py)


# --------------------------------------------------------------------------- DiffWave fast
@pytest.mark.parametrize("name", list(SCHEDULES))
def test_the_diffwave_fast_grid_is_monotone_and_matches_the_fast_cumulative_alphas(name):
    schedule = make_schedule(SCHEDULES[name])
    grid = diffwave_fast_times(schedule)
    assert len(grid) == len(DIFFWAVE_FAST_BETAS) + 1 and grid[-1] == 0.0
    assert all(a > b for a, b in zip(grid, grid[1:])) and grid[0] <= 1.0
    alpha_bar = torch.cumprod(1 - torch.tensor(DIFFWAVE_FAST_BETAS, dtype=torch.float64), 0)
    alpha = schedule.alpha(torch.tensor(grid[:-1], dtype=torch.float64))
    assert torch.allclose(alpha.flip(0) ** 2, alpha_bar, rtol=0, atol=1e-6), (alpha ** 2, alpha_bar)
    # The samplers' grid is the same one.
    times, alphas, sigmas = time_grid(schedule, 6, "diffwave_fast")
    assert times == grid and alphas[-1] == 1.0 and sigmas[-1] == 0.0


def test_fast_steps_align_with_training_steps_where_the_betas_agree():
    # DiffWave's first fast beta (1e-4) is its first training beta: the aligned time is
    # exactly training step 1; on 200 steps the second fast step lies between steps.
    grid = diffwave_fast_times(make_schedule(SCHEDULES["diffwave-50"]))
    assert grid[-2] == pytest.approx(1 / 50, abs=1e-12)
    grid200 = diffwave_fast_times(make_schedule(SCHEDULES["diffwave-200"]))
    assert grid200[-2] == pytest.approx(1 / 200, abs=1e-12)
    assert 2 / 200 < grid200[-3] < 1


def test_ddpm_on_the_fast_grid_is_diffwaves_fast_sampling_algorithm():
    """The paper's update, x_{s-1} = (x_s - gamma_s / sqrt(1 - abar_s) eps) / sqrt(1 - gamma_s)
    + sqrt((1 - abar_{s-1}) / (1 - abar_s) gamma_s) z, against the core's ddpm sampler."""
    schedule = make_schedule(SCHEDULES["diffwave-50"])
    gen = torch.Generator().manual_seed(3)
    z0 = torch.randn(2, 1, 64, generator=gen, dtype=torch.float64)
    zs = torch.randn(6, 2, 1, 64, generator=gen, dtype=torch.float64)
    seen = []

    def denoise(x_t, t):  # a fixed, nonlinear "eps" prediction depending on x_t and t
        seen.append(t[0].item())
        return torch.tanh(x_t * (1 + t[:, None, None])) * 0.7

    out = sample(denoise, schedule, "eps", sampler="ddpm", spacing="diffwave_fast", noise=z0,
                 step_noise=zs, dtype=torch.float64)
    gamma = torch.tensor(DIFFWAVE_FAST_BETAS, dtype=torch.float64)
    abar = torch.cumprod(1 - gamma, 0)
    grid = diffwave_fast_times(schedule)
    x = z0.clone()
    for s in range(6, 0, -1):  # fast steps S .. 1, as in the paper
        t = torch.full((2,), grid[6 - s], dtype=torch.float64)
        eps = torch.tanh(x * (1 + t[:, None, None])) * 0.7
        g, ab = gamma[s - 1].item(), abar[s - 1].item()
        x = (x - g / math.sqrt(1 - ab) * eps) / math.sqrt(1 - g)
        if s > 1:
            ab_prev = abar[s - 2].item()
            x = x + math.sqrt((1 - ab_prev) / (1 - ab) * g) * zs[6 - s]
    assert seen == pytest.approx(grid[:-1], abs=1e-12)
    assert torch.allclose(out, x, atol=1e-9), (out - x).abs().max()


def test_fast_betas_noisier_than_training_are_refused_and_grids_are_checked():
    schedule = make_schedule(SCHEDULES["diffwave-50"])  # alpha_bar(1) ~ 0.28
    with pytest.raises(UsageError, match="noisier than the training schedule"):
        times_from_betas(schedule, [0.1, 0.5, 0.7])
    with pytest.raises(UsageError, match=r"in \(0, 1\)"):
        times_from_betas(schedule, [0.1, 1.0])
    assert check_time_grid([0.5, 0.25]) == [0.5, 0.25, 0.0]
    with pytest.raises(ConfigError, match="strictly decreasing"):
        check_time_grid([0.5, 0.6, 0.0])
    with pytest.raises(ConfigError, match=r"in \[0, 1\]"):
        check_time_grid([1.5, 0.5])
    with pytest.raises(ConfigError, match="at least one time"):
        check_time_grid([0.0])
    with pytest.raises(UsageError, match="make 6 steps, but steps=8"):
        time_grid(schedule, 8, "diffwave_fast")
    with pytest.raises(UsageError, match="make 2 steps, but steps=3"):
        time_grid(schedule, 3, times=[0.9, 0.4])


# --------------------------------------------------------------------------- stored grids
def test_process_round_trips_stored_grids_through_json():
    process = DiffusionProcess(time_grids={6: [0.9, 0.5, 0.3, 0.2, 0.1, 0.05],
                                           "2": [1.0, 0.4, 0.0]})
    assert process.time_grids == {"2": [1.0, 0.4, 0.0],
                                  "6": [0.9, 0.5, 0.3, 0.2, 0.1, 0.05, 0.0]}
    data = json.loads(json.dumps(process.to_dict()))
    back = DiffusionProcess.from_dict(data)
    assert back == process and back.to_dict() == data
    stored = DiffusionProcess().with_time_grid([0.8, 0.3])
    assert stored.time_grids == {"2": [0.8, 0.3, 0.0]}
    assert DiffusionProcess().time_grids == {}


@pytest.mark.parametrize("grids, message", [
    ({"0": [0.0]}, "step counts >= 1"), ({"six": [0.5, 0.0]}, "step counts >= 1"),
    ({"3": [0.5, 0.2, 0.0]}, r"time_grids\['3'\] makes 2 steps, not 3"),
    ({"2": [0.5, 0.7, 0.0]}, "strictly decreasing"), ({"1": "0.5"}, "must be a list"),
    ([0.5, 0.0], "must be a mapping")])
def test_bad_stored_grids_are_config_errors(grids, message):
    with pytest.raises(ConfigError, match=message):
        DiffusionProcess.from_dict({"time_grids": grids})


def test_diffwave_fast_spacing_in_a_process_needs_six_steps():
    with pytest.raises(ConfigError, match="spacing diffwave_fast takes 6 steps"):
        DiffusionProcess(spacing="diffwave_fast")
    process = DiffusionProcess(spacing="diffwave_fast", sampler_steps=6)
    assert DiffusionProcess.from_dict(process.to_dict()) == process


class Recorder(nn.Module):
    """A TinyDenoiser that records the times it is evaluated at."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.net = TinyDenoiser(DenoiserConfig())
        self.times: list[float] = []

    def forward(self, x_t, t, local=None):
        self.times.append(t[0].item())
        return self.net(x_t, t, local)


GRID = [0.97, 0.61, 0.33, 0.12, 0.0]


@pytest.mark.parametrize("sampler", ["ddpm", "ddim", "heun"])
def test_sampling_with_a_stored_grid_visits_exactly_those_times(sampler):
    process = DiffusionProcess(sampler=sampler, sampler_steps=4, time_grids={"4": GRID})
    model = Recorder()
    out = process.sample(model, (1, 1, 128), generator=torch.Generator().manual_seed(0))
    assert out.shape == (1, 1, 128) and torch.isfinite(out).all()
    expected = GRID[:-1] if sampler != "heun" else [GRID[0]] + [t for t in GRID[1:-1]
                                                                 for _ in (0, 1)]
    assert model.times == pytest.approx(expected, abs=1e-7)
    # The same through the samplers' explicit times, and the uniform spacing when asked.
    model.times.clear()
    again = sample(model, process.make_schedule(), "eps", (1, 1, 128), sampler=sampler,
                   times=GRID, generator=torch.Generator().manual_seed(0))
    assert torch.equal(out, again)
    model.times.clear()
    process.sample(model, (1, 1, 128), spacing="uniform")
    assert model.times[0] == 1.0 and model.times[1] == pytest.approx(0.75)
    model.times.clear()
    process.sample(model, (1, 1, 128), steps=5)  # no grid stored for 5: the spacing
    assert len(model.times) == (5 if sampler != "heun" else 9) and model.times[0] == 1.0


def test_the_diffusion_adapter_uses_the_grid_stored_for_its_steps():
    process = DiffusionProcess(sampler_steps=10, time_grids={"4": GRID})
    info = BundleInfo(family="test-denoiser", model_config=DenoiserConfig(), sample_rate=8000,
                      conditioning="none", process=process.to_dict())
    model = Recorder().eval()
    adapter = DiffusionAdapter(model, info)
    adapter.run(Conditioning("none", num_samples=128), InferenceOptions(steps=4, seed=0))
    assert model.times == pytest.approx(GRID[:-1], abs=1e-7)
    model.times.clear()
    adapter.run(Conditioning("none", num_samples=128), InferenceOptions(seed=0))
    assert len(model.times) == 10 and model.times[0] == 1.0


# --------------------------------------------------------------------------- grid search
def clip_and_model(length=512):
    features = FeatureConfig.from_dict(dict(FEATURES))
    audio = torch.from_numpy(chord(8000, length / 8000)).float().reshape(1, 1, -1)[..., :length]
    mel = LogMelSpectrogram(features)(audio.reshape(1, -1))[..., :length // 64]
    torch.manual_seed(1)
    model = TinyDenoiser(DenoiserConfig(n_mels=16)).eval()
    return features, audio, mel, model


@pytest.mark.parametrize("steps", [6, 12])
def test_grid_search_returns_a_valid_deterministic_grid_no_worse_than_uniform(steps):
    features, audio, mel, model = clip_and_model()
    process = DiffusionProcess(schedule=SCHEDULES["diffwave-50"])
    result = search_time_grid(process, model, audio, steps, mel, features=features, seed=5)
    grid = result.times
    assert len(grid) == steps + 1 and grid[-1] == 0.0 and grid[0] <= 1.0
    assert all(a > b for a, b in zip(grid, grid[1:]))
    assert result.steps == steps and result.score == min(result.scores.values())
    assert list(result.scores)[0] == "power(p=1)" and len(result.scores) > 6
    assert len(set(result.scores.values())) > 1  # the candidates really differ
    again = search_time_grid(process, model, audio, steps, mel, features=features, seed=5)
    assert again == result

    def score(**how):
        out = process.sample(lambda x, t: model(x, t, local=mel), tuple(audio.shape),
                             generator=torch.Generator().manual_seed(5), **how)
        return float(log_mel_l1(audio, out.clamp(-1, 1), features).mean())

    uniform = score(steps=steps)
    assert result.scores["power(p=1)"] == pytest.approx(uniform, rel=1e-6)
    stored = process.with_time_grid(grid)
    assert score(times=grid) == pytest.approx(result.score, rel=1e-6)
    assert score(times=grid) <= uniform + 1e-6
    # Stored in the process, the grid is what N steps now sample with.
    out = stored.sample(lambda x, t: model(x, t, local=mel), tuple(audio.shape), steps=steps,
                        generator=torch.Generator().manual_seed(5))
    assert float(log_mel_l1(audio, out.clamp(-1, 1), features).mean()) == pytest.approx(
        result.score, rel=1e-6)


def test_grid_search_candidates_and_errors():
    schedule = make_schedule(SCHEDULES["diffwave-50"])
    grids = candidate_grids(schedule, 25)
    assert list(grids)[0] == "power(p=1)" and grids["power(p=1)"][1] == pytest.approx(0.96)
    for name, grid in grids.items():
        assert check_time_grid(grid) == grid and len(grid) == 26, name
    # Geometric sequences that reach more noise than this schedule are left out.
    assert "geometric(0.001, 0.7)" not in grids
    assert "geometric(0.001, 0.7)" in candidate_grids(make_schedule(SCHEDULES["cosine"]), 25)
    features, audio, mel, model = clip_and_model()
    process = DiffusionProcess()
    with pytest.raises(UsageError, match="needs the model's FeatureConfig"):
        search_time_grid(process, model, audio, 6, mel)
    with pytest.raises(UsageError, match="metric must be one of"):
        search_time_grid(process, model, audio, 6, mel, metric="mse")
    with pytest.raises(UsageError, match="has 2 steps, expected 6"):
        search_time_grid(process, model, audio, 6, mel, features=features,
                         candidates={"short": [0.5, 0.2]})
    _, audio, mel, model = clip_and_model(2048)  # the MR-STFT's largest FFT is 1024
    result = search_time_grid(process, model, audio, 2, mel, metric="mrstft",
                              candidates={"a": [0.9, 0.4], "b": [1.0, 0.5]})
    assert result.name in ("a", "b") and set(result.scores) == {"a", "b"}
