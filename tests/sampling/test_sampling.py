"""The autoregressive sampling loop: exactness against the naive generator, guidance,
reproducibility, filters, and the typicality diagnostic."""

from __future__ import annotations

import pytest
import torch

from tiny_wavenets import HOP, conditioning_inputs, tiny
from wavegen.errors import UsageError
from wavegen.models.wavenet import shift_right
from wavegen.sampling import SamplingOptions, draw_uniforms, generate


# The 16-bit heads round a continuous draw to one of 65536 bins: float32 differences of
# ~1e-7 between two computation orders flip a bin for ~0.3% of draws, so their sample-exact
# comparison runs in float64 (categorical draws are exact in float32 as well).
@pytest.mark.parametrize("head,dtype", [("categorical", torch.float32),
                                        ("categorical", torch.float64),
                                        ("mol", torch.float64), ("gaussian", torch.float64)])
@pytest.mark.parametrize("kernel_size", [2, 3])
def test_cached_sampler_equals_naive_sampler_with_the_same_uniforms(head, dtype, kernel_size):
    model = tiny(head, kernel_size, "local-nearest+global").to(dtype)
    batch, prompt_len, total = 2, 21, 6 * HOP
    local, global_cond = conditioning_inputs(model, batch, total)
    local = local.to(dtype)
    prompt = torch.rand(batch, 1, prompt_len) * 1.6 - 0.8
    uniforms = draw_uniforms(batch, total - prompt_len, model.head.num_uniforms, seed=5)
    cached = generate(model, local=local, global_cond=global_cond, prompt=prompt, uniforms=uniforms)
    naive = generate(model, local=local, global_cond=global_cond, prompt=prompt, uniforms=uniforms,
                     naive=True)
    assert cached.samples.shape == (batch, total - prompt_len)
    assert cached.audio.shape == (batch, 1, total - prompt_len)
    assert torch.equal(cached.samples, naive.samples)
    assert torch.allclose(cached.mean_nll, naive.mean_nll, atol=1e-4)


def resample_from_full_pass(model, samples, local, global_cond, uniforms, unconditional):
    """Redraw every sample from a teacher-forced full pass with the same uniforms."""
    with torch.no_grad():
        params = model(shift_right(samples, model.silence_input()), local, global_cond,
                       unconditional=unconditional)
    return torch.stack([model.head.sample(torch.log_softmax(params[..., t], -1), uniforms[:, t])
                        for t in range(samples.shape[1])], 1)


@pytest.mark.parametrize("gamma,unconditional", [(1.0, False), (0.0, True)])
def test_guidance_end_points_are_conditional_and_unconditional_sampling(gamma, unconditional):
    model = tiny("categorical", 2, "local-nearest+global", cond_dropout=0.2)
    local, global_cond = conditioning_inputs(model, 2, 4 * HOP)
    uniforms = draw_uniforms(2, 4 * HOP, 1, seed=1)
    guided = generate(model, local=local, global_cond=global_cond, uniforms=uniforms,
                      options=SamplingOptions(cfg_gamma=gamma))
    expected = resample_from_full_pass(model, guided.samples, local, global_cond, uniforms,
                                       unconditional)
    assert torch.equal(guided.samples, expected)
    if gamma == 1.0:
        plain = generate(model, local=local, global_cond=global_cond, uniforms=uniforms)
        assert torch.equal(guided.samples, plain.samples)


def test_guided_naive_sampler_equals_the_guided_cached_sampler():
    """The naive generator's unconditional branch is a full pass with unconditional=True."""
    model = tiny("categorical", 2, "local-nearest+global", cond_dropout=0.2)
    local, global_cond = conditioning_inputs(model, 2, 3 * HOP)
    uniforms = draw_uniforms(2, 3 * HOP, 1, seed=2)
    kwargs = dict(local=local, global_cond=global_cond, uniforms=uniforms,
                  options=SamplingOptions(cfg_gamma=2.5))
    assert torch.equal(generate(model, **kwargs).samples,
                       generate(model, naive=True, **kwargs).samples)


def test_amplified_guidance_changes_the_samples():
    model = tiny("categorical", 2, "local-nearest+global", cond_dropout=0.2)
    local, global_cond = conditioning_inputs(model, 2, 4 * HOP)
    uniforms = draw_uniforms(2, 4 * HOP, 1, seed=1)
    one = generate(model, local=local, global_cond=global_cond, uniforms=uniforms,
                   options=SamplingOptions(cfg_gamma=1.0))
    three = generate(model, local=local, global_cond=global_cond, uniforms=uniforms,
                     options=SamplingOptions(cfg_gamma=3.0))
    assert not torch.equal(one.samples, three.samples)


def test_seed_fixes_the_audio():
    model = tiny("mol")
    a = generate(model, 50, batch=2, options=SamplingOptions(seed=3))
    b = generate(model, 50, batch=2, options=SamplingOptions(seed=3))
    c = generate(model, 50, batch=2, options=SamplingOptions(seed=4))
    assert torch.equal(a.audio, b.audio)
    assert not torch.equal(a.audio, c.audio)
    assert a.audio.dtype == torch.float32 and a.audio.abs().max() <= 1.0


def test_tiny_nucleus_is_greedy_decoding():
    model = tiny("categorical")
    greedy = generate(model, 40, batch=2, options=SamplingOptions(temperature=0.0, seed=0))
    nucleus = generate(model, 40, batch=2, options=SamplingOptions(top_p=1e-6, seed=0))
    typical = generate(model, 40, batch=2, options=SamplingOptions(typical=0.9, seed=0))
    assert torch.equal(greedy.samples, nucleus.samples)
    assert typical.samples.shape == (2, 40)


def test_typicality_diagnostic_exposes_greedy_decoding():
    model = tiny("categorical")
    with torch.no_grad():  # a peaked model, like a trained one (untrained ones are ~uniform)
        model.output[3].weight *= 12
    honest = generate(model, 600, batch=4, options=SamplingOptions(seed=0))
    greedy = generate(model, 600, batch=4, options=SamplingOptions(temperature=0.0, seed=0))
    # Drawing from the model's own distribution: NLL of the draws ~ predictive entropy.
    assert torch.allclose(honest.mean_nll.mean(), honest.mean_entropy.mean(), atol=0.15)
    # Greedy picks the most likely sample every time: far below the entropy.
    assert (greedy.mean_entropy - greedy.mean_nll).min() > 0.5


def test_progress_bar_and_throughput(capsys):
    model = tiny("gaussian")
    result = generate(model, 30, options=SamplingOptions(progress=True, seed=0))
    assert result.samples_per_second > 0
    assert torch.isfinite(result.mean_entropy).all()


def test_bad_requests_are_usage_errors():
    model = tiny("mol", 2, "local")
    local, _ = conditioning_inputs(model, 1, 4 * HOP)
    with pytest.raises(UsageError, match="categorical head"):
        generate(model, local=local, options=SamplingOptions(top_p=0.9))
    with pytest.raises(UsageError, match="covers"):
        generate(model, 10, local=local)
    with pytest.raises(UsageError, match="uniforms must be"):
        generate(model, local=local, uniforms=torch.rand(1, 4 * HOP, 1))
    with pytest.raises(UsageError, match="number of samples"):
        generate(tiny("categorical"))
    with pytest.raises(UsageError, match="temperature"):
        generate(tiny("categorical"), 5, options=SamplingOptions(temperature=-1.0))
