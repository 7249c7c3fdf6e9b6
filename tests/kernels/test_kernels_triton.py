"""The ``triton`` and ``cudagraph`` sampling backends against the reference step.

On a machine without a GPU the Triton kernels run under the interpreter
(``TRITON_INTERPRET=1``, set per test with ``monkeypatch``: the backend builds its kernels on
first use for the interpreter setting of that moment, so test order does not matter). The
interpreter costs ~7 ms per kernel program (~70 ms a step here), so the parameter matrix
covers every value (kernel size 2/3, residual 32/64, skip 128/256, categorical/MoL head, no
conditioning / local + global) in four configurations rather than the full product, with
few steps.

Draws are compared teacher-forced: the reference session is fed the backend's own samples
and draws from the same uniforms, so a disagreement cannot snowball. Categorical draws must
agree exactly; the 16-bit heads may differ by one grid step on rare draws (float32 sums in
another order move a value across a bin boundary for ~0.3% of draws, see test_sampling).
"""

from __future__ import annotations

import pytest
import torch

pytest.importorskip("triton")

from wavegen.errors import KernelUnavailableError  # noqa: E402
from wavegen.kernels import get_backend, open_session, why_not  # noqa: E402
from wavegen.kernels.cudagraph import CUDAGraphSession  # noqa: E402
from wavegen.kernels.reference import ReferenceSession  # noqa: E402
from wavegen.kernels.triton_backend import TritonBackend, TritonSession  # noqa: E402
from wavegen.models.wavenet import WaveNet, WaveNetConfig  # noqa: E402
from wavegen.sampling import SamplingOptions, draw_uniforms, generate  # noqa: E402
from wavegen.sampling import Draw  # noqa: E402

BATCH = 2
HOP = 4
CONDITIONING = {
    "none": {},
    "local+global": {"local_channels": 3, "hop_length": HOP, "upsample_factors": (HOP,),
                     "global_classes": 3, "global_dim": 4},
    "global-vector": {"global_dim": 5},
}
# (kernel size, residual, skip, head, conditioning): each value at least twice, every
# head x conditioning and head x kernel-size pair once.
CONFIGS = [
    (2, 32, 128, "categorical", "none"),
    (3, 64, 256, "categorical", "local+global"),
    (3, 32, 256, "mol", "none"),
    (2, 64, 128, "mol", "local+global"),
]
IDS = [f"k{k}-r{r}-s{s}-{h}-{c}" for k, r, s, h, c in CONFIGS]


@pytest.fixture
def interpret(monkeypatch):
    monkeypatch.setenv("TRITON_INTERPRET", "1")


pytestmark = pytest.mark.usefixtures("one_thread")  # tiny tensors (conftest.py)


def build(kernel_size, residual, skip, head, conditioning, gate=32, mixtures=10) -> WaveNet:
    torch.manual_seed(0)
    config = WaveNetConfig(layers=2, stacks=2, kernel_size=kernel_size,
                           residual_channels=residual, gate_channels=gate, skip_channels=skip,
                           head=head, num_classes=256, num_mixtures=mixtures,
                           **CONDITIONING[conditioning])
    return WaveNet(config).eval()


def conditioning_inputs(model, length):
    c = model.config
    local = torch.randn(BATCH, c.local_channels, length // HOP) if c.has_local else None
    if c.global_classes:
        return local, torch.arange(BATCH) % c.global_classes
    return local, (torch.randn(BATCH, c.global_dim) if c.has_global else None)


def random_targets(model, *shape):
    if model.config.head == "categorical":
        return torch.randint(0, model.config.num_classes, shape)
    return model.head.targets_from_waveform(torch.rand(*shape) * 1.8 - 0.9)


def sessions(model, length, prompt=None, backend=TritonSession):
    local, global_cond = conditioning_inputs(model, length)
    return (backend(model, BATCH, length, local, global_cond, prompt),
            ReferenceSession(model, BATCH, length, local, global_cond, prompt))


def silence(model):
    dtype = torch.long if model.config.head == "categorical" else torch.float32
    return torch.full((BATCH,), model.silence_input(), dtype=dtype)


def assert_params_close(got, expected):
    scale = expected.abs().max()
    assert (got - expected).abs().max() <= 1e-4 * scale, (got - expected).abs().max() / scale


def teacher_forced_draws(ref, model, previous, samples, uniforms, temperature):
    """The reference draws ``[B, n]`` given the backend's history ``samples``."""
    draw = Draw(model.head, SamplingOptions(temperature=temperature))
    out = []
    for t in range(samples.shape[1]):
        params = ref.step_params(previous)
        out.append(draw.sample(params, uniforms[:, t]))
        previous = samples[:, t]
    return torch.stack(out, dim=1)


def assert_same_draws(model, got, expected):
    assert got.shape == expected.shape and got.dtype == expected.dtype
    if model.config.head == "categorical":
        assert torch.equal(got, expected)
        return
    step = 2.0 / (model.head.bins - 1)
    diff = (got.double() - expected.double()).abs()
    assert diff.max() <= 1.01 * step, diff.max() / step
    assert (diff > 0).sum() <= max(2, 0.05 * diff.numel())


def check_generation(session, ref, model, previous, steps, temperature, seed):
    uniforms = draw_uniforms(BATCH, steps, model.head.num_uniforms, seed)
    samples = session.generate(previous, uniforms, temperature)
    expected = teacher_forced_draws(ref, model, previous, samples, uniforms, temperature)
    assert_same_draws(model, samples, expected)
    return samples[:, -1]


# --------------------------------------------------------------------------- triton
@pytest.mark.parametrize("config", CONFIGS, ids=IDS)
def test_step_params_match_the_reference(interpret, config):
    model = build(*config)
    session, ref = sessions(model, 3 * HOP)
    previous = silence(model)
    for _ in range(10):
        assert_params_close(session.step_params(previous), ref.step_params(previous))
        previous = random_targets(model, BATCH)


@pytest.mark.parametrize("config", CONFIGS, ids=IDS)
def test_generate_matches_the_reference(interpret, config):
    model = build(*config)
    session, ref = sessions(model, 8 * HOP)
    previous = check_generation(session, ref, model, silence(model), 22, 1.0, seed=1)
    check_generation(session, ref, model, previous, 8, 0.0, seed=2)
    assert session.time == ref.time == 30


@pytest.mark.parametrize("config", CONFIGS, ids=IDS)
def test_prompted_session_matches_the_reference(interpret, config):
    model = build(*config)
    prompt = random_targets(model, BATCH, 10)
    session, ref = sessions(model, 6 * HOP, prompt)
    previous = prompt[:, -1]
    for _ in range(3):
        assert_params_close(session.step_params(previous), ref.step_params(previous))
        previous = random_targets(model, BATCH)
    check_generation(session, ref, model, previous, 8, 1.0, seed=3)


def test_widths_that_are_not_powers_of_two(interpret):
    model = build(3, 24, 40, "mol", "global-vector", gate=20, mixtures=3)
    session, ref = sessions(model, 12)
    previous = silence(model)
    for _ in range(3):
        assert_params_close(session.step_params(previous), ref.step_params(previous))
        previous = random_targets(model, BATCH)
    check_generation(session, ref, model, previous, 6, 1.0, seed=4)


def test_sampling_driver_with_the_triton_backend(interpret):
    model = build(*CONFIGS[1])
    prompt_len, total = 6, 4 * HOP
    local, global_cond = conditioning_inputs(model, total)
    prompt = torch.rand(BATCH, 1, prompt_len) * 1.6 - 0.8
    uniforms = draw_uniforms(BATCH, total - prompt_len, 1, seed=5)
    kwargs = dict(local=local, global_cond=global_cond, prompt=prompt, uniforms=uniforms)
    fast = generate(model, backend="triton", **kwargs)
    slow = generate(model, **kwargs)
    assert torch.equal(fast.samples, slow.samples)
    assert torch.allclose(fast.mean_nll, slow.mean_nll, atol=1e-4)


def test_triton_availability_and_support(monkeypatch):
    backend = TritonBackend()
    monkeypatch.delenv("TRITON_INTERPRET", raising=False)
    assert backend.unavailable(torch.device("cpu")) == \
        "Triton needs a CUDA GPU (or TRITON_INTERPRET=1 for tests)"
    monkeypatch.setenv("TRITON_INTERPRET", "1")
    assert backend.unavailable(torch.device("cpu")) is None
    assert backend.supports(build(2, 8, 16, "categorical", "none")) is None
    gaussian = backend.supports(build(2, 8, 16, "gaussian", "none"))
    assert "gaussian" in gaussian and "\n" not in gaussian
    assert "float64" in backend.supports(build(2, 8, 16, "mol", "none").double())


# --------------------------------------------------------------------------- cudagraph
def test_cudagraph_is_unavailable_on_the_cpu():
    model = build(2, 8, 16, "categorical", "none")
    reason = why_not("cudagraph", model)
    assert reason and "\n" not in reason and "CUDA" in reason
    assert get_backend("cudagraph").unavailable(torch.device("cpu")) == reason
    with pytest.raises(KernelUnavailableError):
        open_session("cudagraph", model, BATCH, 16, None, None, None)


@pytest.mark.parametrize("config", [CONFIGS[1], CONFIGS[3]], ids=[IDS[1], IDS[3]])
def test_cudagraph_step_runs_eagerly_like_the_reference(config):
    """The cudagraph session's step and draw (device-side positions), without graphs."""
    model = build(*config)
    prompt = random_targets(model, BATCH, 5)
    session, ref = sessions(model, 16 * HOP, prompt, backend=CUDAGraphSession)
    session.graphs.enabled = False
    previous = prompt[:, -1]
    for _ in range(3):
        assert_params_close(session.step_params(previous), ref.step_params(previous))
        previous = random_targets(model, BATCH)
    previous = check_generation(session, ref, model, previous, 24, 1.0, seed=6)
    check_generation(session, ref, model, previous, 8, 0.0, seed=7)


# --------------------------------------------------------------------------- GPU
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
@pytest.mark.parametrize("name", ["cudagraph", "triton"])
@pytest.mark.parametrize("config", [CONFIGS[1], CONFIGS[3]], ids=[IDS[1], IDS[3]])
def test_gpu_backends_match_the_reference(monkeypatch, name, config):
    """Three graph chunks (warm-up, capture + replay, replay) plus an eager tail, twice."""
    from triton.runtime.jit import JITFunction

    from wavegen.kernels import triton_backend

    if name == "triton" and not isinstance(triton_backend._SUM, JITFunction):
        pytest.skip("triton was imported under TRITON_INTERPRET=1: no compiled kernels")
    monkeypatch.delenv("TRITON_INTERPRET", raising=False)
    model = build(*config).cuda()
    steps, length = 3 * 64 + 9, 105 * HOP  # 12 (prompt) + 2 * steps + 1 <= length
    prompt = random_targets(model, BATCH, 12).cuda()
    local, global_cond = conditioning_inputs(model, length)
    local = None if local is None else local.cuda()
    global_cond = None if global_cond is None else global_cond.cuda()
    session = get_backend(name).session(model, BATCH, length, local, global_cond, prompt)
    ref = ReferenceSession(model, BATCH, length, local, global_cond, prompt)
    previous = prompt[:, -1]
    for temperature, seed in ((1.0, 8), (0.0, 9)):
        uniforms = draw_uniforms(BATCH, steps, model.head.num_uniforms, seed, "cuda")
        samples = session.generate(previous, uniforms, temperature)
        expected = teacher_forced_draws(ref, model, previous, samples, uniforms, temperature)
        assert_same_draws(model, samples.cpu(), expected.cpu())
        previous = samples[:, -1]
    assert_params_close(session.step_params(previous), ref.step_params(previous))


@pytest.mark.parametrize("config", [CONFIGS[1], CONFIGS[3]], ids=[IDS[1], IDS[3]])
def test_cudagraph_generate_with_graphs_on_falls_back_when_capture_fails(config, monkeypatch):
    """The chunked path with graphs left on (the default): warm-up chunk, then a capture
    that fails (here always: a recording stand-in for torch.cuda on the CPU), then eager
    steps; the samples are the reference's throughout."""
    import contextlib

    class Stream:
        def __init__(self, device=None):
            pass

        def wait_stream(self, other):
            pass

    def failing_capture(graph):
        raise RuntimeError("capture not possible here")

    monkeypatch.setattr(torch.cuda, "Stream", Stream)
    monkeypatch.setattr(torch.cuda, "stream", lambda stream: contextlib.nullcontext())
    monkeypatch.setattr(torch.cuda, "current_stream", lambda device=None: Stream())
    monkeypatch.setattr(torch.cuda, "CUDAGraph", lambda: object())
    monkeypatch.setattr(torch.cuda, "graph", failing_capture)
    model = build(*config)
    prompt = random_targets(model, BATCH, 5)
    session, ref = sessions(model, 35 * HOP, prompt, backend=CUDAGraphSession)
    assert session.graphs.enabled
    check_generation(session, ref, model, prompt[:, -1], 2 * 64 + 7, 1.0, seed=8)
    assert not session.graphs.enabled  # the second chunk tried to capture, and gave up
