"""The ``cpu-bf16`` backend: the cpu step with bfloat16 matrices (AVX-512 BF16 dot products).

Stated tolerances, against the float32 reference (``reference`` / ``cpu``):

* head parameters: every step's largest difference at most 2% of that step's parameter
  range (measured ~0.5% on these models), and at least 1e-4 of it (the products really are
  rounded: a bf16 mode that ran float32 fails);
* categorical draws from the same uniforms, step by step along the same inputs: at least
  97% identical (measured 99-100%);
* the typicality diagnostic from inside the step: within 2% of the float32 teacher-forced
  one.

And exactly what it computes: the same numbers (to 1e-5 of the range, on at least 85% of
the steps) as an independent float32 computation whose matrices and matrix inputs are
rounded to bfloat16 first.
"""

from __future__ import annotations

import copy

import pytest
import torch

import wavegen.kernels
import wavegen.kernels.cpu as cpu_kernel
from wavegen.errors import KernelUnavailableError
from wavegen.kernels.cpu import (CPUBF16Backend, CPUBF16Session, CPUSession, _pack_bf16,
                                 load_library)
from wavegen.native import cpu_flags
from wavegen.sampling import Draw, SamplingOptions

from test_kernels_cpu import HOP, conditioning, make_model, random_previous, silence

pytestmark = pytest.mark.skipif("avx512_bf16" not in cpu_flags(),
                                reason="this CPU has no AVX-512 BF16 instructions")

# (head, kernel, residual, gate, skip, conditioning): odd sizes on the last rows (every
# product's input padded to an even number of bf16 numbers, and vector tails).
CASES = [
    ("categorical", 2, 32, 32, 128, "local+global"),
    ("categorical", 3, 64, 48, 256, "local"),
    ("mol", 2, 64, 64, 256, "none"),
    ("mol", 3, 32, 40, 128, "local+global"),
    ("categorical", 3, 21, 35, 71, "local"),
    ("mol", 2, 21, 35, 71, "local+global"),
]
IDS = [f"{c[0]}-k{c[1]}-r{c[2]}-g{c[3]}-s{c[4]}-{c[5]}" for c in CASES]


@pytest.fixture(scope="module", autouse=True)
def kernel_cache(tmp_path_factory):
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with pytest.MonkeyPatch.context() as mp:
            mp.setenv("WAVEGEN_KERNEL_CACHE", str(tmp_path_factory.mktemp("kernels")))
            assert load_library().has_bf16
            yield
    finally:
        torch.set_num_threads(threads)


def both_sessions(model, batch, length):
    local, global_cond = conditioning(model, batch, length)
    return (CPUSession(model, batch, length, local, global_cond, None),
            CPUBF16Session(model, batch, length, local, global_cond, None))


def parameter_sequences(model, batch, steps, seed=2):
    """(float32 params, bf16 params) ``[steps, B, P]`` along the same random inputs, and
    those inputs ``[B, steps]``."""
    fp32, bf16 = both_sessions(model, batch, 2 * HOP * -(-steps // (2 * HOP)))
    generator = torch.Generator().manual_seed(seed)
    previous = silence(model, batch)
    inputs, exact, rounded = [], [], []
    for _ in range(steps):
        inputs.append(previous)
        exact.append(fp32.step_params(previous))
        rounded.append(bf16.step_params(previous))
        previous = random_previous(model, batch, generator)
    return torch.stack(exact), torch.stack(rounded), torch.stack(inputs, 1)


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_parameters_are_within_the_stated_tolerance_of_float32(case):
    model = make_model(*case)
    exact, rounded, _ = parameter_sequences(model, 3, 40)
    span = (exact.amax(-1) - exact.amin(-1))[..., None]
    relative = ((rounded - exact).abs() / span).amax(-1)
    assert float(relative.max()) <= 0.02
    assert float(relative.max()) >= 1e-4  # the products are rounded, not float32


def rounded_to_bf16(x: torch.Tensor) -> torch.Tensor:
    return x.to(torch.bfloat16).float()


def bf16_emulation(model):
    """A float32 copy of ``model`` whose matrix products see bf16-rounded weights and
    inputs, as the kernel's bf16 mode does (biases, the global projection, the input
    embedding and the residual stream stay float32)."""
    emulated = copy.deepcopy(model)

    def round_input(module, args):
        return (rounded_to_bf16(args[0]),)

    with torch.no_grad():
        for layer in emulated.layers:
            for module in (layer.conv, layer.skip, layer.residual):
                if module is not None:
                    module.weight.copy_(rounded_to_bf16(module.weight))
                    module.register_forward_pre_hook(round_input)
        for module in (emulated.output[1], emulated.output[3]):
            module.weight.copy_(rounded_to_bf16(module.weight))
            module.register_forward_pre_hook(round_input)
        if model.config.has_local:
            emulated.local_projection.weight.copy_(
                rounded_to_bf16(emulated.local_projection.weight))
            emulated.upsampler.register_forward_hook(lambda m, a, out: rounded_to_bf16(out))
    return emulated


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_the_kernel_computes_float32_sums_of_bf16_products(case):
    """Against an independent computation (the model's own full pass, with its weights and
    every product's input rounded to bf16): most steps equal up to float32 summation order.
    The rest differ where a float32 value lay within its last bits of a bf16 rounding
    boundary (the two sides' tanh or sums differ there), one bf16 step of one input: about
    a tenth of the steps at most, by well under 1% of the range."""
    model = make_model(*case)
    batch, steps = 2, 32
    _, rounded, inputs = parameter_sequences(model, batch, steps)
    local, global_cond = conditioning(model, batch, steps)
    with torch.no_grad():
        expected = bf16_emulation(model)(inputs, local, global_cond).permute(2, 0, 1)
    span = (expected.amax(-1) - expected.amin(-1))[..., None]
    relative = ((rounded - expected).abs() / span).amax(-1)  # [steps, B]
    assert float((relative <= 1e-5).float().mean()) >= 0.85
    assert float(relative.max()) <= 5e-3


def test_categorical_draws_from_the_same_uniforms_are_nearly_all_identical():
    model = make_model("categorical", 2, 64, 128, 256, "local+global")
    batch, steps = 4, 150
    exact, rounded, _ = parameter_sequences(model, batch, steps, seed=5)
    draw = Draw(model.head, SamplingOptions(temperature=1.0))
    uniforms = torch.rand(steps, batch, 1, generator=torch.Generator().manual_seed(6))
    same = sum(int((draw.sample(exact[t], uniforms[t]) == draw.sample(rounded[t], uniforms[t]))
                   .sum()) for t in range(steps))
    assert same / (steps * batch) >= 0.97


def test_in_step_diagnostics_are_within_the_stated_tolerance_of_the_teacher_forced_ones():
    from wavegen.sampling import draw_uniforms
    from wavegen.sampling.diagnostics import teacher_forced_diagnostics

    model = make_model("categorical", 3, 32, 40, 128, "local+global")
    local, g = torch.randn(2, 5, 320 // HOP), torch.tensor([0, 2])
    session = CPUBF16Session(model, 2, 320, local, g, None)
    samples = session.generate(silence(model, 2), draw_uniforms(2, 320, 1, 3), 1.0)
    nll, entropy = session.in_step_diagnostics()
    expected_nll, expected_entropy = teacher_forced_diagnostics(model, samples, local, g, None)
    torch.testing.assert_close(nll, expected_nll, rtol=0.02, atol=0.0)
    torch.testing.assert_close(entropy, expected_entropy, rtol=0.02, atol=0.0)


def test_generate_through_the_sampling_loop_by_name():
    from wavegen.sampling import draw_uniforms, generate

    model = make_model("mol", 2, 32, 32, 128, "local+global")
    local, g = conditioning(model, 2, 64)
    uniforms = draw_uniforms(2, 64, 2, 1)
    results = {name: generate(model, local=local, global_cond=g, uniforms=uniforms,
                              options=SamplingOptions(), backend=name)
               for name in ("cpu", "cpu-bf16")}
    samples = results["cpu-bf16"].samples
    assert samples.shape == (2, 64) and samples.abs().max() <= 1
    # The 16-bit grid tells the two precisions apart; the likelihoods barely move.
    assert not torch.equal(samples, results["cpu"].samples)
    torch.testing.assert_close(results["cpu-bf16"].mean_nll, results["cpu"].mean_nll,
                               rtol=0.05, atol=0.05)


def test_the_packed_layout_holds_each_segment_in_bf16_pairs():
    w = torch.randn(20, 7)  # segments of 3 and 4 columns: the first padded to 4
    pairs = _pack_bf16(w, [3, 4], 16)
    assert pairs.shape == (2, 4, 16, 2) and pairs.dtype == torch.int16
    unpacked = pairs.view(torch.bfloat16).float().transpose(1, 2).reshape(32, 8)
    expected = torch.cat([w[:, :3], torch.zeros(20, 1), w[:, 3:]], 1).to(torch.bfloat16).float()
    assert torch.equal(unpacked[:20], expected)
    assert not unpacked[20:].any()
    with pytest.raises(ValueError, match="do not cover"):
        _pack_bf16(w, [3, 3], 16)


def test_auto_never_picks_it_and_it_is_unavailable_without_the_instructions(monkeypatch):
    model = make_model("categorical", 2, 32, 32, 128, "none")
    name, _ = wavegen.kernels.open_session("auto", model, 1, 64, None, None, None,
                                           notice=pytest.fail)
    assert name == "cpu"
    backend = CPUBF16Backend()
    assert backend.priority == {} and backend.unavailable(torch.device("cpu")) is None
    monkeypatch.setattr(cpu_kernel, "cpu_flags", lambda: frozenset({"avx512f"}))
    assert "AVX-512 BF16" in backend.unavailable(torch.device("cpu"))
    with pytest.raises(KernelUnavailableError, match="cpu-bf16.*AVX-512 BF16"):
        wavegen.kernels.open_session("cpu-bf16", model, 1, 64, None, None, None)
