"""The sampling loop is generic over the sample-level contract, not WaveNet's.

A small GRU model defined only here (nothing in wavegen knows it) samples through
``generate`` on every path a user can ask for: the reference loop, ``auto`` (which falls
back to ``reference`` with its one-line notice, since every fast backend implements WaveNet
only), a fast backend by name (a one-line KernelUnavailableError naming the reason), the
naive generator, and the teacher-forced diagnostics.
"""

from __future__ import annotations


import pytest
import torch
from torch import nn

import wavegen.kernels as kernels
from families import gru
from wavegen.errors import KernelUnavailableError, UsageError
from wavegen.kernels.reference import ReferenceSession
from wavegen.models.protocols import SAMPLE_LEVEL, SampleLevelModel, conforms
from wavegen.models.wavenet import shift_right
from wavegen.sampling import (Draw, SamplingOptions, draw_uniforms, generate,
                              teacher_forced_diagnostics)
from wavegen.sampling.autoregressive import _generate_fast


def test_the_gru_satisfies_the_sample_level_contract():
    model = gru()
    assert isinstance(model, SampleLevelModel) and conforms(model, SAMPLE_LEVEL)


def test_auto_falls_back_to_reference_with_a_one_line_notice(capsys):
    model = gru()
    uniforms = draw_uniforms(3, 80, 1, seed=2)
    auto = generate(model, 80, batch=3, uniforms=uniforms, backend="auto")
    notice = capsys.readouterr().err.strip()
    assert "\n" not in notice and notice.endswith("using reference")
    assert "cpu: the cpu backend implements WaveNet only, not TinyGRU" in notice
    reference = generate(model, 80, batch=3, uniforms=uniforms)
    assert torch.equal(auto.samples, reference.samples)
    assert auto.samples.shape == (3, 80) and auto.audio.shape == (3, 1, 80)
    assert len(set(auto.samples.flatten().tolist())) > 3  # really sampled, not stuck


@pytest.mark.parametrize("name", ["cpu", "triton", "cudagraph", "cuda"])
def test_naming_a_fast_backend_is_a_one_line_error_naming_the_reason(name):
    with pytest.raises(KernelUnavailableError) as error:
        generate(gru(), 10, backend=name)
    message = str(error.value)
    assert "\n" not in message and name in message and "TinyGRU" in message


def test_every_backend_says_what_it_supports_without_touching_the_model():
    model = gru()
    for name in kernels.BACKEND_NAMES[1:]:
        reason = kernels.why_not(name, model)
        if name == "reference":
            assert reason is None
        else:
            assert isinstance(reason, str) and "\n" not in reason


def test_same_uniforms_same_samples_and_the_step_agrees_with_the_full_pass():
    model = gru()
    uniforms = draw_uniforms(2, 60, 1, seed=4)
    options = SamplingOptions(temperature=0.8)
    first = generate(model, 60, batch=2, uniforms=uniforms, options=options)
    again = generate(model, 60, batch=2, uniforms=uniforms, options=options)
    assert torch.equal(first.samples, again.samples)
    # Every draw redone from a teacher-forced full pass over the result: the same sample.
    with torch.no_grad():
        params = model(shift_right(first.samples, model.silence_input()))
    draw = Draw(model.head, options)
    redrawn = torch.stack([draw.sample(params[..., t], uniforms[:, t]) for t in range(60)], 1)
    assert torch.equal(redrawn, first.samples)


def test_naive_generator_equals_the_incremental_loop_after_a_prompt():
    model = gru()
    prompt = torch.rand(2, 1, 25) * 1.6 - 0.8
    uniforms = draw_uniforms(2, 40, 1, seed=6)
    cached = generate(model, 40, prompt=prompt, uniforms=uniforms)
    naive = generate(model, 40, prompt=prompt, uniforms=uniforms, naive=True)
    assert torch.equal(cached.samples, naive.samples)
    torch.testing.assert_close(cached.mean_nll, naive.mean_nll, rtol=1e-5, atol=1e-5)


def test_teacher_forced_diagnostics_equal_the_loops():
    model = gru()
    prompt = torch.rand(2, 1, 30) * 1.6 - 0.8
    result = generate(model, 50, prompt=prompt, options=SamplingOptions(seed=1))
    targets = model.targets_from_waveform(prompt)
    nll, entropy = teacher_forced_diagnostics(model, result.samples, None, None, targets)
    torch.testing.assert_close(nll, result.mean_nll, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(entropy, result.mean_entropy, rtol=1e-5, atol=1e-5)
    # ... and through the fast-session driver, with the generic reference session.
    session = ReferenceSession(model, 2, 80, None, None, targets)
    fast = _generate_fast(model, session, targets[:, -1], draw_uniforms(2, 50, 1, seed=1),
                          SamplingOptions(), None, None, targets)
    assert torch.equal(fast.samples, result.samples)
    torch.testing.assert_close(fast.mean_nll, result.mean_nll, rtol=1e-5, atol=1e-5)


def test_a_model_outside_the_contract_is_a_usage_error_naming_what_it_lacks():
    with pytest.raises(UsageError, match=r"Linear is not a sample-level model \(it lacks .*step"):
        generate(nn.Linear(2, 2), 10)
    assert "not a sample-level model" in kernels.why_not("reference", nn.Linear(2, 2))


def test_local_conditioning_for_an_unconditional_model_is_a_usage_error():
    with pytest.raises(UsageError, match="takes no local conditioning"):
        generate(gru(), local=torch.zeros(1, 4, 3))
