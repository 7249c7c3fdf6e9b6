"""The ``samplernn-cpu`` sampling backend against the reference step (``SampleRNN.step``).

Head parameters agree to 1e-4 relative; samples drawn from the same uniforms are identical
(batch 1 and 16; 2-tier and 3-tier, GRU and LSTM, with local conditioning and a global
label; after prompts that end on and between frame boundaries). Then the registry and
``auto``, the diagnostics windows, and the model changes the backend relies on: ``forward``
over any length (padded with silence) and :meth:`SampleRNN.step_weights`.
"""

from __future__ import annotations

import pytest
import torch

import wavegen.kernels
import wavegen.kernels.samplernn_cpu as samplernn_cpu
from wavegen.errors import KernelUnavailableError, UsageError
from wavegen.kernels.reference import ReferenceSession
from wavegen.kernels.samplernn_cpu import (SampleRNNCPUBackend, SampleRNNCPUSession,
                                          step_weights)
from wavegen.models.samplernn import SampleRNN, SampleRNNConfig
from wavegen.models.wavenet import WaveNet, WaveNetConfig, shift_right
from wavegen.sampling import SamplingOptions, draw_uniforms, generate

HOP = 16
LOCAL = 5
GLOBAL = 3
CLASSES = 256
CONDITIONED = dict(local_channels=LOCAL, hop_length=HOP, global_classes=GLOBAL)
#: name -> SampleRNNConfig overrides. Every tier count meets both RNN types, with local
#: conditioning and a global label; stacked RNN layers, mu-law classes and zero initial
#: states appear at least once.
CASES = {
    "2-tier-gru": dict(frame_sizes=(16,), rnn_type="gru", rnn_layers=3, **CONDITIONED),
    "2-tier-lstm": dict(frame_sizes=(16,), rnn_type="lstm", rnn_layers=2, **CONDITIONED),
    "3-tier-gru": dict(frame_sizes=(8, 2), rnn_type="gru", **CONDITIONED),
    "3-tier-lstm": dict(frame_sizes=(8, 2), rnn_type="lstm", **CONDITIONED),
    "4-tier-gru-mulaw": dict(frame_sizes=(16, 4, 2), rnn_type="gru", quantization="mulaw",
                             learn_initial_state=False),
}
CONDITIONED_CASES = [name for name, case in CASES.items() if "local_channels" in case]


@pytest.fixture(autouse=True)
def _one_thread(one_thread):
    """Tiny tensors: one torch thread (see the ``one_thread`` fixture)."""
    yield


def make_model(case: str, seed: int = 0, dim: int = 48) -> SampleRNN:
    torch.manual_seed(seed)
    overrides = {"quantization": "linear", **CASES[case]}
    config = SampleRNNConfig(dim=dim, embedding_dim=16, num_classes=CLASSES, mlp_layers=3,
                             sample_rate=8000, **overrides)
    model = SampleRNN(config).eval()
    with torch.no_grad():  # livelier than the default init: wider logits, busier states
        for p in model.parameters():
            p.mul_(1.5)
        if model.initial_hidden is not None:
            model.initial_hidden.normal_(0.0, 0.5)
    return model


def conditioning(model: SampleRNN, batch: int, length: int, seed: int = 1):
    generator = torch.Generator().manual_seed(seed)
    c = model.config
    local = torch.randn(batch, LOCAL, length // HOP, generator=generator) if c.has_local else None
    global_cond = torch.arange(batch) % GLOBAL if c.has_global else None
    return local, global_cond


def silence(model: SampleRNN, batch: int) -> torch.Tensor:
    return torch.full((batch,), model.silence_input(), dtype=torch.long)


def sessions(model: SampleRNN, batch: int, length: int, prompt=None):
    local, global_cond = conditioning(model, batch, length)
    return (ReferenceSession(model, batch, length, local, global_cond, prompt),
            SampleRNNCPUSession(model, batch, length, local, global_cond, prompt))


def assert_params_close(got: torch.Tensor, expected: torch.Tensor) -> None:
    assert got.shape == expected.shape and got.dtype == torch.float32
    scale = expected.abs().max().item()
    torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-5 * scale)


def random_prompt(batch: int, length: int, seed: int = 4) -> torch.Tensor:
    return torch.randint(0, CLASSES, (batch, length), generator=torch.Generator().manual_seed(seed))


# --------------------------------------------------------------------------- equality
@pytest.mark.parametrize("batch", [1, 16])
@pytest.mark.parametrize("case", sorted(CASES))
def test_step_params_match_the_reference(case, batch):
    model = make_model(case)
    length = 4 * HOP  # several frames of every tier and several conditioning frames
    ref, fast = sessions(model, batch, length)
    generator = torch.Generator().manual_seed(2)
    previous = silence(model, batch)
    for _ in range(length):
        assert_params_close(fast.step_params(previous), ref.step_params(previous))
        previous = torch.randint(0, CLASSES, (batch,), generator=generator)
    assert fast.time == ref.state.time == length


def generate_both(model, batch, steps, temperatures, prompt=None, seed=3):
    """``steps`` per temperature in turn on both sessions; (reference, fast) samples."""
    known = 0 if prompt is None else prompt.shape[-1]
    total = -(-(known + steps * len(temperatures)) // HOP) * HOP
    ref, fast = sessions(model, batch, total, prompt)
    generator = torch.Generator().manual_seed(seed)
    previous = silence(model, batch) if prompt is None else prompt[:, -1]
    out_ref, out_fast = [], []
    for temperature in temperatures:
        uniforms = torch.rand(batch, steps, 1, generator=generator)
        a = ref.generate(previous, uniforms, temperature)
        b = fast.generate(previous, uniforms, temperature)
        out_ref.append(a)
        out_fast.append(b)
        previous = a[:, -1]
    return torch.cat(out_ref, 1), torch.cat(out_fast, 1)


@pytest.mark.parametrize("batch", [1, 16])
@pytest.mark.parametrize("case", sorted(CASES))
def test_generate_draws_the_reference_samples(case, batch):
    model = make_model(case)
    expected, got = generate_both(model, batch, 40, [1.0, 0.7, 0.0])
    assert got.dtype == torch.int64 and got.shape == (batch, 120)
    assert torch.equal(got, expected)
    assert len(torch.unique(got)) > 20  # really sampled, not stuck on one class


@pytest.mark.parametrize("batch", [1, 16])
@pytest.mark.parametrize("prompt_length", [1, 8, 21, 37])
@pytest.mark.parametrize("case", CONDITIONED_CASES)
def test_generate_after_a_prompt(case, prompt_length, batch):
    """Prompts that end on a frame boundary of every tier (8 for 3 tiers), inside the top
    frame, and inside the lower tiers' frames (21, 37)."""
    model = make_model(case)
    prompt = random_prompt(batch, prompt_length)
    expected, got = generate_both(model, batch, 30, [1.0, 0.0], prompt=prompt)
    assert torch.equal(got, expected)


@pytest.mark.parametrize("prompt_length", [8, 21])
@pytest.mark.parametrize("case", ["2-tier-lstm", "3-tier-gru"])
def test_step_params_after_a_prompt(case, prompt_length):
    model = make_model(case)
    batch = 3
    prompt = random_prompt(batch, prompt_length)
    ref, fast = sessions(model, batch, 4 * HOP, prompt)
    assert fast.time == ref.time == prompt_length
    previous = prompt[:, -1]
    for t in range(2 * HOP):
        assert_params_close(fast.step_params(previous), ref.step_params(previous))
        previous = torch.full((batch,), (37 * t) % CLASSES)


def test_step_params_and_generate_share_state():
    model = make_model("3-tier-lstm")
    batch = 2
    ref, fast = sessions(model, batch, 8 * HOP)
    uniforms = torch.rand(batch, 13, 1, generator=torch.Generator().manual_seed(7))
    previous = silence(model, batch)
    for t in range(4):
        a = ref.generate(previous, uniforms, 1.0)
        b = fast.generate(previous, uniforms, 1.0)
        assert torch.equal(a, b)
        previous = a[:, -1]
        assert_params_close(fast.step_params(previous), ref.step_params(previous))
        previous = torch.full((batch,), 100 + t)


def test_chunks_roll_the_history_buffers_over_without_changing_samples(monkeypatch):
    model = make_model("3-tier-gru")
    batch, steps = 2, 10 * HOP
    local, global_cond = conditioning(model, batch, steps)
    uniforms = torch.rand(batch, steps, 1, generator=torch.Generator().manual_seed(8))
    whole = SampleRNNCPUSession(model, batch, steps, local, global_cond, None).generate(
        silence(model, batch), uniforms, 1.0)
    monkeypatch.setattr(samplernn_cpu, "HISTORY_STEPS", 12)
    session = SampleRNNCPUSession(model, batch, steps, local, global_cond, None)
    pieces, previous, t0 = [], silence(model, batch), 0
    for size in (5, 7, 12, 1, 30, 3, 11, 20, 71):  # some fit, some roll over, some regrow
        piece = session.generate(previous, uniforms[:, t0:t0 + size], 1.0)
        pieces.append(piece)
        previous, t0 = piece[:, -1], t0 + size
    assert t0 == steps
    assert torch.equal(torch.cat(pieces, 1), whole)
    reference = ReferenceSession(model, batch, steps, local, global_cond, None)
    assert torch.equal(reference.generate(silence(model, batch), uniforms, 1.0), whole)


def test_the_paper_three_tier_model_matches_the_reference():
    """The real sizes (dim 1024, embedding 256, 3-layer MLP), a few steps past frames."""
    torch.manual_seed(0)
    model = SampleRNN(SampleRNNConfig.preset("three_tier")).eval()
    batch, steps = 2, 10
    ref, fast = sessions(model, batch, steps)
    previous = silence(model, batch)
    for t in range(steps):
        assert_params_close(fast.step_params(previous), ref.step_params(previous))
        previous = torch.tensor([(29 * t) % CLASSES, (91 * t + 5) % CLASSES])


# --------------------------------------------------------------------------- driver
def test_generate_through_auto_uses_the_backend_and_gives_the_reference_result():
    model = make_model("3-tier-lstm")
    batch, length, known = 2, 6 * HOP, 21
    local, global_cond = conditioning(model, batch, length)
    prompt = torch.rand(batch, 1, known, generator=torch.Generator().manual_seed(9)) * 1.6 - 0.8
    uniforms = draw_uniforms(batch, length - known, 1, seed=5)
    name, session = wavegen.kernels.open_session(
        "auto", model, batch, length, local, global_cond,
        model.targets_from_waveform(prompt), notice=pytest.fail)
    assert name == "samplernn-cpu" and isinstance(session, SampleRNNCPUSession)
    kwargs = dict(local=local, global_cond=global_cond, prompt=prompt, uniforms=uniforms,
                  options=SamplingOptions(temperature=0.9))
    ref = generate(model, **kwargs)
    fast = generate(model, backend="auto", **kwargs)
    assert torch.equal(fast.samples, ref.samples)
    torch.testing.assert_close(fast.audio, ref.audio)
    # Diagnostics: from teacher-forced windows instead of the loop, the same numbers.
    torch.testing.assert_close(fast.mean_nll, ref.mean_nll, rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(fast.mean_entropy, ref.mean_entropy, rtol=1e-4, atol=1e-4)


def test_any_length_without_local_conditioning_through_generate():
    """37 samples after a 5-sample prompt: neither a whole top frame (the diagnostics'
    full pass pads), and the naive generator gives the same samples."""
    model = make_model("4-tier-gru-mulaw")
    prompt = torch.rand(3, 1, 5, generator=torch.Generator().manual_seed(10)) * 1.6 - 0.8
    uniforms = draw_uniforms(3, 37, 1, seed=6)
    ref = generate(model, 37, prompt=prompt, uniforms=uniforms)
    fast = generate(model, 37, prompt=prompt, uniforms=uniforms, backend="samplernn-cpu")
    naive = generate(model, 37, prompt=prompt, uniforms=uniforms, naive=True)
    assert torch.equal(fast.samples, ref.samples) and torch.equal(naive.samples, ref.samples)
    torch.testing.assert_close(fast.mean_nll, ref.mean_nll, rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(fast.mean_entropy, ref.mean_entropy, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("record", [True, False])
def test_diagnostics_come_from_the_kept_parameters_or_teacher_forced_passes(record,
                                                                          monkeypatch):
    """With the step parameters kept, no forward pass runs; without, windowed passes give
    the same numbers."""
    model = make_model("3-tier-gru")
    batch, length, known = 2, 5 * HOP, 8
    local, global_cond = conditioning(model, batch, length)
    prompt = torch.rand(batch, 1, known, generator=torch.Generator().manual_seed(11)) - 0.5
    kwargs = dict(local=local, global_cond=global_cond, prompt=prompt,
                  uniforms=draw_uniforms(batch, length - known, 1, seed=12))
    ref = generate(model, **kwargs)
    monkeypatch.setattr(samplernn_cpu, "RECORD_WINDOW", 7)
    if record:
        monkeypatch.setattr(model, "forward", lambda *a, **k: pytest.fail("forward ran"))
    else:
        monkeypatch.setattr(samplernn_cpu, "RECORD_BYTES", 0)
        monkeypatch.setattr(samplernn_cpu, "DIAGNOSTICS_WINDOW_BYTES", 1)
    fast = generate(model, backend="samplernn-cpu", **kwargs)
    assert torch.equal(fast.samples, ref.samples)
    torch.testing.assert_close(fast.mean_nll, ref.mean_nll, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(fast.mean_entropy, ref.mean_entropy, rtol=1e-5, atol=1e-5)


def test_kept_parameters_are_used_only_for_the_sessions_own_inputs():
    model = make_model("2-tier-gru")
    batch, length = 2, 3 * HOP
    local, global_cond = conditioning(model, batch, length)
    session = SampleRNNCPUSession(model, batch, length, local, global_cond, None)
    samples = session.generate(silence(model, batch), torch.rand(batch, length, 1), 1.0)
    inputs = shift_right(samples, model.silence_input())
    with torch.no_grad():
        full = model(inputs, local, global_cond)
        windows = session.teacher_forced_windows(local, global_cond)
        kept = torch.cat([params for _, params in windows(inputs, 0)], -1)
        other = inputs.clone()
        other[1, 20] = (other[1, 20] + 1) % CLASSES
        passes = torch.cat([params for _, params in windows(other, 0)], -1)
        expected_other = model(other, local, global_cond)
    torch.testing.assert_close(kept, full, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(passes, expected_other, rtol=1e-5, atol=1e-5)
    assert not torch.allclose(passes[1, :, 21:], kept[1, :, 21:], atol=1e-3)


@pytest.mark.parametrize("case,known", [("3-tier-gru", 0), ("2-tier-lstm", 24),
                                        ("4-tier-gru-mulaw", 13)])
def test_diagnostic_windows_equal_one_full_pass(case, known, monkeypatch):
    model = make_model(case)
    batch, length = 2, 7 * HOP
    if not model.config.has_local:
        length -= 5  # a ragged last window
    local, global_cond = conditioning(model, batch, length)
    targets = random_prompt(batch, length)
    inputs = shift_right(targets, model.silence_input())
    with torch.no_grad():
        full = model(inputs, local, global_cond)
    monkeypatch.setattr(samplernn_cpu, "DIAGNOSTICS_WINDOW_BYTES", 1)  # one unit per window
    session = SampleRNNCPUSession(model, batch, length, local, global_cond, None)
    with torch.no_grad():
        pieces = list(session.teacher_forced_windows(local, global_cond)(inputs, known))
    assert len(pieces) > 3 and pieces[0][0] == known
    starts = [t0 for t0, _ in pieces]
    ends = [t0 + params.shape[-1] for t0, params in pieces]
    assert starts[1:] == ends[:-1] and ends[-1] == length
    got = torch.cat([params for _, params in pieces], -1)
    torch.testing.assert_close(got, full[..., known:], rtol=1e-5, atol=1e-5)


# --------------------------------------------------------------------------- registry
def test_the_backend_says_what_it_cannot_run():
    backend = wavegen.kernels.get_backend("samplernn-cpu")
    assert isinstance(backend, SampleRNNCPUBackend)
    assert backend.priority == {"cpu": 5}
    assert backend.unavailable(torch.device("cpu")) is None
    assert "CPU" in backend.unavailable(torch.device("cuda"))
    model = make_model("3-tier-gru")
    assert backend.supports(model) is None
    assert "float32" in backend.supports(make_model("3-tier-gru").double())
    wavenet = WaveNet(WaveNetConfig(layers=2, stacks=1, residual_channels=8, gate_channels=8,
                                    skip_channels=8))
    reason = backend.supports(wavenet)
    assert "SampleRNN only" in reason and "WaveNet" in reason and "\n" not in reason
    # ... and the WaveNet backends still refuse a SampleRNN, before reading anything.
    assert "WaveNet only" in wavegen.kernels.get_backend("cpu").supports(model)
    for name in ("triton", "cudagraph", "cuda"):  # (or cannot load here at all)
        assert wavegen.kernels.get_backend(name).supports(model) is not None
    with pytest.raises(KernelUnavailableError, match="samplernn-cpu backend: .*SampleRNN only"):
        backend.session(wavenet, 1, 10, None, None, None)


def test_options_only_the_reference_implements_keep_auto_on_reference():
    model = make_model("3-tier-gru")
    local, global_cond = conditioning(model, 1, 2 * HOP)
    options = SamplingOptions(top_p=0.9, seed=1)
    assert "top_p" in wavegen.kernels.why_not("samplernn-cpu", model, options)
    notices = []
    name, _ = wavegen.kernels.open_session("auto", model, 1, 2 * HOP, local, global_cond, None,
                                           options, notice=notices.append)
    assert name == "reference"
    assert len(notices) == 1 and "samplernn-cpu: top_p" in notices[0]
    with pytest.raises(KernelUnavailableError, match="'samplernn-cpu' cannot run here: top_p"):
        generate(model, local=local, global_cond=global_cond, options=options,
                 backend="samplernn-cpu")


def test_bad_calls_are_one_line_usage_errors():
    model = make_model("3-tier-gru")
    batch = 2
    _, fast = sessions(model, batch, HOP)
    with pytest.raises(UsageError, match=r"previous must be \[2\] class indices"):
        fast.step_params(torch.zeros(batch))
    with pytest.raises(UsageError, match=r"uniforms must be \[2, n, 1\]"):
        fast.generate(silence(model, batch), torch.rand(batch, 4), 1.0)
    fast.generate(silence(model, batch), torch.rand(batch, HOP - 1, 1), 1.0)
    with pytest.raises(UsageError, match="past the 16 samples") as error:
        fast.generate(silence(model, batch), torch.rand(batch, 2, 1), 1.0)
    assert "\n" not in str(error.value)
    fast.step_params(silence(model, batch))
    with pytest.raises(UsageError, match="past the 16 samples"):
        fast.step_params(silence(model, batch))


def test_weights_are_repacked_once_per_model():
    model = make_model("3-tier-gru")
    first = step_weights(model)
    assert step_weights(model) is first
    with torch.no_grad():
        model.output.bias.add_(1.0)
    assert step_weights(model) is not first


# --------------------------------------------------------------------------- the model
@pytest.mark.parametrize("case", ["2-tier-gru", "3-tier-lstm", "4-tier-gru-mulaw"])
def test_forward_takes_any_length_by_padding_with_silence(case):
    model = make_model(case)
    batch, top = 2, model.config.top_frame
    inputs = shift_right(random_prompt(batch, 3 * HOP), model.silence_input())
    local, global_cond = conditioning(model, batch, 3 * HOP)
    with torch.no_grad():
        full = model(inputs, local, global_cond)
        for length in (1, top - 1, 2 * HOP + 3, 2 * HOP + 9, 3 * HOP - 1):
            frames = None if local is None else local[..., :-(-length // HOP)]
            if local is not None and (-length % top) != -length % HOP:
                continue  # the features would not cover the padded length (below)
            got = model(inputs[:, :length], frames, global_cond)
            assert got.shape == (batch, CLASSES, length)
            torch.testing.assert_close(got, full[..., :length], rtol=1e-5, atol=1e-5)


def test_forward_still_refuses_what_it_cannot_pad():
    model = make_model("3-tier-gru")
    batch = 2
    inputs = shift_right(random_prompt(batch, 2 * HOP), model.silence_input())
    local, global_cond = conditioning(model, batch, 2 * HOP)
    with pytest.raises(UsageError, match="positive multiple of the top frame"):
        model(inputs[:, :12], local, global_cond)  # features cover 32 samples, padded 16
    with pytest.raises(UsageError, match="positive multiple of the top frame"):
        model(inputs[:, :12], local[..., :1], global_cond, return_state=True)
    with pytest.raises(UsageError, match="positive multiple of the top frame"):
        model(inputs[:, :0], None, global_cond)
    with torch.no_grad():  # features that cover the padded length are fine
        assert model(inputs[:, :13], local[..., :1], global_cond).shape == (batch, CLASSES, 13)


def test_step_weights_are_the_parameters_in_step_layout():
    model = make_model("2-tier-lstm")
    w = model.step_weights()
    c = model.config
    (tier,) = w.tiers
    assert (tier.frame, tier.ratio) == (16, 16)
    assert tier.input.shape == (c.dim, 16)
    assert len(tier.w_ih) == len(tier.b_hh) == 2 and tier.w_hh[1].shape == (4 * c.dim, c.dim)
    assert tier.upsample_w.shape == (16 * c.dim, c.dim)
    assert w.mlp_input.shape == (c.dim, c.embedding_dim, 16)
    assert len(w.mlp_hidden) == c.mlp_layers - 1 and w.output_w.shape == (CLASSES, c.dim)
    assert tier.w_ih[0].data_ptr() == model.tiers[0].rnn.weight_ih_l0.data_ptr()
    assert not any(t.requires_grad for t in (tier.input, w.embedding, w.output_b))
