"""SampleRNN: causality, incremental == teacher forcing, sampling, TBPTT state, learning,
sizes, bad input."""

from __future__ import annotations

import io
import math

import pytest
import torch

from wavegen.checkpoint import BundleInfo, load_bundle, save_bundle
from wavegen.errors import ConfigError, UsageError
from wavegen.models.protocols import SAMPLE_LEVEL, ModelContract, conforms, contract_of
from wavegen.models.registry import build_model, get_family
from wavegen.models.samplernn import (SAMPLERNN_PRESETS, LinearCategorical, SampleRNN,
                                      SampleRNNConfig, describe, state_from_tensors,
                                      state_to_tensors)
from wavegen.models.wavenet import shift_right
from wavegen.sampling import SamplingOptions, draw_uniforms, generate

HOP = 16
CLASSES = 32
LOCAL = 5
GLOBAL = 3


def tiny(frame_sizes=(8, 2), rnn_type="gru", local=False, global_=False, seed=0,
         **overrides) -> SampleRNN:
    """A tiny SampleRNN in eval mode, with random (not zero) learned initial states."""
    torch.manual_seed(seed)
    config = SampleRNNConfig(frame_sizes=frame_sizes, dim=16, embedding_dim=8,
                             num_classes=CLASSES, mlp_layers=2, rnn_type=rnn_type,
                             local_channels=LOCAL if local else 0, hop_length=HOP if local else 0,
                             global_classes=GLOBAL if global_ else 0, sample_rate=8000,
                             **overrides)
    model = SampleRNN(config).eval()
    if model.initial_hidden is not None:
        with torch.no_grad():
            model.initial_hidden.normal_(0.0, 0.5)
    return model


def conditioning(model: SampleRNN, batch: int, length: int, seed: int = 1):
    generator = torch.Generator().manual_seed(seed)
    c = model.config
    local = torch.randn(batch, LOCAL, length // HOP, generator=generator) if c.has_local else None
    global_cond = torch.randint(0, GLOBAL, (batch,), generator=generator) if c.has_global else None
    return local, global_cond


def random_targets(batch: int, length: int, seed: int = 2) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return torch.randint(0, CLASSES, (batch, length), generator=generator)


def one_line(error) -> bool:
    return "\n" not in str(error.value)


# --------------------------------------------------------------------------- causality
def input_gradients(model: SampleRNN, inputs: torch.Tensor, local, position: int,
                    monkeypatch) -> torch.Tensor:
    """``d params[..., position] / d input[j]`` summed over classes, for every input ``j``
    ``[B, T]``: a zero offset is added to every input where the model reads it (the RNN
    tiers' real values and the MLP's embeddings), and differentiated."""
    top = model.config.top_frame
    offset = torch.zeros(inputs.shape[0], top - 1 + inputs.shape[1], requires_grad=True)
    values, embed = model._values, model.embedding.forward
    # Both read suffixes of [context, inputs]: align the offsets on the right.
    monkeypatch.setattr(model, "_values", lambda seq: values(seq) + offset[:, -seq.shape[1]:])
    monkeypatch.setattr(model.embedding, "forward",
                        lambda seq: embed(seq) + offset[:, -seq.shape[1]:, None])
    params = model(inputs, local)
    grad, = torch.autograd.grad(params[..., position].sum(), offset)
    monkeypatch.undo()
    return grad[:, top - 1:]


@pytest.mark.parametrize("frame_sizes,rnn_type", [((16,), "gru"), ((16,), "lstm"),
                                                  ((8, 2), "gru"), ((8, 2), "lstm"),
                                                  ((16, 4, 2), "gru")])
def test_each_position_depends_on_earlier_samples_only(frame_sizes, rnn_type, one_thread,
                                                       monkeypatch):
    model = tiny(frame_sizes, rnn_type, local=True)
    length = 3 * HOP if frame_sizes[0] <= HOP else frame_sizes[0]
    inputs = shift_right(random_targets(1, length), model.silence_input())
    local, _ = conditioning(model, 1, length)
    for n in range(length):
        grad = input_gradients(model, inputs, local, n, monkeypatch)
        # inputs[n] is the sample n - 1: position n may read it, nothing after it.
        assert torch.all(grad[:, n + 1:] == 0), f"position {n} sees the future"
        assert grad[0, n].abs() > 0, f"position {n} ignores the sample before it"
    # The recurrent tiers carry the first sample to the last position.
    assert grad[0, 1].abs() > 0


# --------------------------------------------------------------------------- incremental
CASES = {"2-tier": dict(frame_sizes=(16,)),
         "3-tier-local-global": dict(local=True, global_=True),
         "3-tier-lstm-local-global": dict(rnn_type="lstm", local=True, global_=True),
         "4-tier-linear-global": dict(frame_sizes=(16, 4, 2), global_=True,
                                      quantization="linear", learn_initial_state=False)}


@pytest.mark.parametrize("case", sorted(CASES))
@pytest.mark.parametrize("unconditional", [False, True])
def test_incremental_steps_equal_teacher_forcing(case, unconditional, one_thread):
    model = tiny(**CASES[case])
    batch, length = 2, 4 * HOP
    inputs = shift_right(random_targets(batch, length), model.silence_input())
    local, global_cond = conditioning(model, batch, length)
    with torch.no_grad():
        full = model(inputs, local, global_cond, unconditional=unconditional)
        state = model.start(batch, length, local, global_cond, unconditional=unconditional)
        steps = torch.stack([model.step(inputs[:, t], state) for t in range(length)], -1)
    assert full.shape == (batch, CLASSES, length)
    torch.testing.assert_close(steps, full, atol=1e-5, rtol=1e-5)
    if model.config.has_local or model.config.has_global:
        with torch.no_grad():
            other = model(inputs, local, global_cond, unconditional=not unconditional)
        assert not torch.allclose(other, full, atol=1e-3)  # conditioning matters


@pytest.mark.parametrize("prompt_length", [1, 8, 21, 48])
def test_a_prompt_warms_up_the_state_like_teacher_forcing(prompt_length, one_thread):
    model = tiny(rnn_type="lstm", local=True, global_=True)
    batch, length = 2, 4 * HOP
    targets = random_targets(batch, length)
    inputs = shift_right(targets, model.silence_input())
    local, global_cond = conditioning(model, batch, length)
    with torch.no_grad():
        full = model(inputs, local, global_cond)
        state = model.start(batch, length, local, global_cond, prompt=targets[:, :prompt_length])
        assert state.time == prompt_length
        steps = torch.stack([model.step(inputs[:, t], state)
                             for t in range(prompt_length, length)], -1)
    torch.testing.assert_close(steps, full[..., prompt_length:], atol=1e-5, rtol=1e-5)


# --------------------------------------------------------------------------- sampling
def test_free_running_generation_is_seeded_and_varied(one_thread):
    model = tiny()
    options = SamplingOptions(seed=3)
    first = generate(model, 50, batch=2, options=options)
    again = generate(model, 50, batch=2, options=options)
    assert first.samples.shape == (2, 50) and first.audio.shape == (2, 1, 50)
    assert torch.equal(first.samples, again.samples)
    assert len(set(first.samples.flatten().tolist())) > 5
    assert first.audio.abs().max() <= 1.0
    assert torch.isfinite(first.mean_nll).all() and torch.isfinite(first.mean_entropy).all()


@pytest.mark.parametrize("options", [SamplingOptions(), SamplingOptions(temperature=0.8, top_p=0.9),
                                     SamplingOptions(cfg_gamma=2.5)],
                         ids=["plain", "temperature-top-p", "guided"])
def test_the_naive_generator_draws_the_cached_loops_samples(options, one_thread):
    """The naive generator runs full teacher-forced passes (forward, unconditional=True for
    guidance); from the same uniforms it must draw the same samples as start/step."""
    model = tiny(local=True, global_=True)
    batch, length = 2, 3 * HOP
    local, global_cond = conditioning(model, batch, length)
    uniforms = draw_uniforms(batch, length, 1, seed=5)
    kwargs = dict(local=local, global_cond=global_cond, uniforms=uniforms, options=options)
    cached = generate(model, **kwargs)
    naive = generate(model, naive=True, **kwargs)
    assert cached.samples.shape == (batch, length)
    assert torch.equal(cached.samples, naive.samples)
    torch.testing.assert_close(cached.mean_nll, naive.mean_nll, atol=1e-4, rtol=1e-4)


def test_generation_continues_a_prompt_and_guidance_changes_the_samples(one_thread):
    model = tiny(global_=True, local=True)
    batch, length, known = 2, 4 * HOP, 21
    local, global_cond = conditioning(model, batch, length)
    prompt = torch.rand(batch, 1, known) * 1.6 - 0.8
    uniforms = draw_uniforms(batch, length - known, 1, seed=7)
    kwargs = dict(local=local, global_cond=global_cond, prompt=prompt, uniforms=uniforms)
    cached = generate(model, **kwargs)
    assert torch.equal(cached.samples, generate(model, naive=True, **kwargs).samples)
    plain = generate(model, **kwargs, options=SamplingOptions(cfg_gamma=1.0)).samples
    assert torch.equal(plain, cached.samples)  # gamma 1 is conditional sampling
    amplified = generate(model, **kwargs, options=SamplingOptions(cfg_gamma=4.0)).samples
    assert not torch.equal(amplified, cached.samples)


# --------------------------------------------------------------------------- TBPTT
@pytest.mark.parametrize("rnn_type", ["gru", "lstm"])
def test_chunks_carrying_the_state_equal_one_pass(rnn_type, one_thread):
    model = tiny(rnn_type=rnn_type, local=True, global_=True)
    batch, chunk = 2, 2 * HOP
    length = 3 * chunk
    inputs = shift_right(random_targets(batch, length), model.silence_input())
    local, global_cond = conditioning(model, batch, length)
    with torch.no_grad():
        full, full_state = model(inputs, local, global_cond, return_state=True)
        state, pieces = model.initial_state(batch), []
        for i in range(3):
            frames = slice(i * chunk // HOP, (i + 1) * chunk // HOP)
            params, state = model(inputs[:, i * chunk:(i + 1) * chunk], local[..., frames],
                                  global_cond, state=state, return_state=True)
            pieces.append(params)
    torch.testing.assert_close(torch.cat(pieces, -1), full, atol=1e-5, rtol=1e-5)
    assert state.keys() == full_state.keys() == ({"history", "h", "c"} if rnn_type == "lstm"
                                                 else {"history", "h"})
    assert torch.equal(state["history"], inputs[:, -model.config.top_frame:])
    for key in state:
        torch.testing.assert_close(state[key], full_state[key], atol=1e-5, rtol=1e-5)


def test_tbptt_loss_over_chunks_equals_the_loss_of_the_whole(one_thread):
    model = tiny(rnn_type="lstm", global_=True)
    batch, chunk = 2, 24
    wave = torch.rand(batch, 1, 3 * chunk) * 1.6 - 0.8
    _, global_cond = conditioning(model, batch, 3 * chunk)
    state, losses = None, []
    for i in range(3):
        loss, state = model.tbptt_loss(wave[..., i * chunk:(i + 1) * chunk], None, global_cond,
                                       state)
        loss.backward()
        assert not any(value.requires_grad for value in state.values())
        losses.append(loss.detach())
    assert model.initial_hidden.grad is not None and model.initial_hidden.grad.abs().sum() > 0
    with torch.no_grad():
        whole = model.loss(wave, None, global_cond)
    torch.testing.assert_close(torch.stack(losses).mean(), whole, atol=1e-5, rtol=1e-5)
    targets = model.targets_from_waveform(wave)
    assert torch.equal(state["history"], targets[:, -model.config.top_frame:])

    # A checkpointed state continues the same way.
    buffer = io.BytesIO()
    torch.save(state_to_tensors(state), buffer)
    buffer.seek(0)
    restored = state_from_tensors(torch.load(buffer), "cpu")
    with torch.no_grad():
        more = torch.rand(batch, 1, chunk) * 1.6 - 0.8
        a, _ = model.tbptt_loss(more, None, global_cond, state)
        b, _ = model.tbptt_loss(more, None, global_cond, restored)
    assert torch.equal(a, b)


def test_reset_restarts_a_stream_from_the_initial_state(one_thread):
    model = tiny(local=True)
    batch, chunk = 2, 2 * HOP
    wave = torch.rand(batch, 1, 2 * chunk) * 1.6 - 0.8
    local, _ = conditioning(model, batch, 2 * chunk)
    first, second = wave[..., :chunk], wave[..., chunk:]
    local_first, local_second = local[..., :chunk // HOP], local[..., chunk // HOP:]
    with torch.no_grad():
        _, state = model.tbptt_loss(first, local_first, None)
        mixed, mixed_state = model.tbptt_loss(second, local_second, None, state,
                                              reset=torch.tensor([True, False]))
        fresh, fresh_state = model.tbptt_loss(second[:1], local_second[:1], None)
        kept_in = {key: value[:, :, 1:] if key != "history" else value[1:]
                   for key, value in state.items()}
        kept, kept_state = model.tbptt_loss(second[1:], local_second[1:], None, kept_in)
        continued, _ = model.tbptt_loss(second, local_second, None, state)
    torch.testing.assert_close(mixed, (fresh + kept) / 2, atol=1e-5, rtol=1e-5)
    assert not torch.allclose(mixed, continued, atol=1e-4)
    torch.testing.assert_close(mixed_state["h"][:, :, :1], fresh_state["h"], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(mixed_state["h"][:, :, 1:], kept_state["h"], atol=1e-5, rtol=1e-5)


# --------------------------------------------------------------------------- learning
def test_a_tiny_model_learns_a_periodic_wave_and_samples_its_pitch(one_thread):
    """A 250 Hz sine at 8 kHz (32 samples per period, every integer phase): the NLL falls far
    below the entropy of the class histogram, and free-running samples have the pitch."""
    torch.manual_seed(0)
    rate, period = 8000, 32
    model = SampleRNN(SampleRNNConfig(frame_sizes=(8, 2), dim=32, embedding_dim=16,
                                      num_classes=256, mlp_layers=2, sample_rate=rate))
    optimiser = torch.optim.Adam(model.parameters(), lr=3e-3)

    def batch(size: int, length: int) -> torch.Tensor:
        phase = torch.randint(0, period, (size, 1))
        n = torch.arange(length)[None] + phase
        return (0.6 * torch.sin(2 * math.pi * n / period))[:, None, :]

    data = model.targets_from_waveform(batch(256, 256))
    counts = torch.bincount(data.flatten(), minlength=256).double()
    p = counts[counts > 0] / counts.sum()
    unigram_bits = float(-(p * p.log2()).sum())
    model.train()
    for _ in range(150):
        loss = model.loss(batch(8, 128))
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
    model.eval()
    with torch.no_grad():
        bits = float(model.loss(batch(16, 256))) / math.log(2)
    assert unigram_bits > 3.5
    assert bits < 0.2 * unigram_bits, (bits, unigram_bits)

    length = rate // 4
    audio = generate(model, length, options=SamplingOptions(seed=0, temperature=0.9)).audio
    wave = audio[0, 0, length // 4:]  # skip the start-up from silence
    spectrum = torch.fft.rfft((wave - wave.mean()) * torch.hann_window(wave.numel()))
    peak = float(spectrum.abs().argmax()) * rate / wave.numel()
    assert abs(peak - rate / period) <= 2 * rate / wave.numel(), peak


# --------------------------------------------------------------------------- configs
@pytest.mark.parametrize("name", sorted(SAMPLERNN_PRESETS))
def test_presets_estimate_their_exact_size(name, one_thread):
    config = SampleRNNConfig.preset(name)
    model = SampleRNN(config)
    assert config.estimate_size().parameters == model.num_parameters()
    assert (config.dim, config.embedding_dim, config.num_classes, config.rnn_type) == \
        (1024, 256, 256, "gru")
    assert config.learn_initial_state and str(config.num_tiers + 1) in describe(config)


@pytest.mark.parametrize("overrides", [
    dict(rnn_type="lstm", rnn_layers=2, local_channels=80, hop_length=64, global_classes=7),
    dict(frame_sizes=(16, 4, 2), learn_initial_state=False, mlp_layers=1, quantization="linear"),
])
def test_conditioned_configs_estimate_their_exact_size(overrides, one_thread):
    config = SampleRNNConfig(dim=32, embedding_dim=8, **overrides)
    assert config.estimate_size().parameters == SampleRNN(config).num_parameters()


def test_the_family_builds_through_the_registry_and_round_trips_a_bundle(tmp_path, one_thread):
    family = get_family("samplernn")
    assert (family.kind, family.task) == (SAMPLE_LEVEL, "likelihood")
    model, config = build_model("samplernn", {"frame_sizes": [8, 2], "dim": 16,
                                              "embedding_dim": 8, "local_channels": 20,
                                              "hop_length": 64, "sample_rate": 8000})
    assert isinstance(model, SampleRNN) and conforms(model, SAMPLE_LEVEL)
    assert contract_of(config) == ModelContract(20, 64, 8000)
    assert contract_of(SampleRNNConfig(dim=8)) == ModelContract(0, None, 16000)
    assert SampleRNNConfig.from_dict(config.to_dict()) == config
    assert SampleRNNConfig.preset("three_tier", dim=8).dim == 8
    with pytest.raises(ConfigError, match="unknown SampleRNN preset 'four_tier'"):
        SampleRNNConfig.preset("four_tier")

    model = tiny(rnn_type="lstm", global_=True, quantization="linear")
    save_bundle(tmp_path / "bundle", model, BundleInfo("samplernn", model.config, 8000))
    loaded, info = load_bundle(tmp_path / "bundle")
    assert isinstance(loaded, SampleRNN) and info.model_config == model.config
    assert isinstance(loaded.head, LinearCategorical)
    inputs = shift_right(random_targets(2, 32), model.silence_input())
    global_cond = torch.tensor([0, 2])
    with torch.no_grad():
        assert torch.equal(loaded.eval()(inputs, None, global_cond), model(inputs, None, global_cond))


def test_linear_quantisation_has_its_own_head():
    model = tiny(quantization="linear")
    assert isinstance(model.head, LinearCategorical)
    wave = torch.linspace(-1, 1, 101)[None]
    targets = model.targets_from_waveform(wave)
    assert targets[0, 0] == 0 and targets[0, -1] == CLASSES - 1
    back = model.head.waveform_from_samples(targets)
    assert (back - wave).abs().max() <= 1 / (CLASSES - 1) + 1e-6


@pytest.mark.parametrize("overrides, message", [
    (dict(frame_sizes=(8, 3)), "each frame size must be a multiple of the next, got 8 over 3"),
    (dict(frame_sizes=()), "frame_sizes must be one or more whole numbers"),
    (dict(frame_sizes=(8, 0)), "frame_sizes must be one or more whole numbers"),
    (dict(local_channels=80, hop_length=12), "hop_length 12 must be a multiple of the top "
                                             "frame size 8"),
    (dict(local_channels=80), "local_channels needs hop_length"),
    (dict(rnn_type="rnn"), "rnn_type must be one of gru, lstm, got 'rnn'"),
    (dict(quantization="alaw"), "quantization must be one of mulaw, linear, got 'alaw'"),
    (dict(num_classes=100), "num_classes must be a power of two"),
    (dict(mlp_layers=0), "mlp_layers must be >= 1"),
    (dict(cond_dropout=1.0), r"cond_dropout must be in \[0, 1\)"),
])
def test_bad_configs_are_one_line_config_errors(overrides, message):
    with pytest.raises(ConfigError, match=f"SampleRNNConfig: {message}") as error:
        SampleRNNConfig(**overrides)
    assert one_line(error)


def test_absurd_sizes_are_refused_before_anything_is_built():
    with pytest.raises(ConfigError, match="dim=1000000 gives about") as error:
        build_model("samplernn", {"dim": 1_000_000})
    assert one_line(error)
    with pytest.raises(ConfigError, match="SampleRNNConfig.rnn_layers must be int"):
        build_model("samplernn", {"rnn_layers": "two"})


def test_bad_calls_are_one_line_usage_errors(one_thread):
    model = tiny(local=True, global_=True)
    batch, length = 2, 2 * HOP
    inputs = shift_right(random_targets(batch, length), model.silence_input())
    local, global_cond = conditioning(model, batch, length)
    calls = [
        (lambda: model(inputs[:, :12], local, global_cond), "positive multiple of the top frame"),
        (lambda: model(inputs.float(), local, global_cond), "class indices"),
        (lambda: model(inputs, None, global_cond), "locally conditioned"),
        (lambda: model(inputs, local[..., :1], global_cond), "must cover the same samples"),
        (lambda: model(inputs, local[:, :2], global_cond), r"local features must be \[2, 5"),
        (lambda: model(inputs, local, None), "globally conditioned"),
        (lambda: model(inputs, local, global_cond[:1]), r"global_cond must be \[2\]"),
        (lambda: model(inputs, local, global_cond, state={"h": 0}), "state must have the keys"),
        (lambda: model(inputs, local, global_cond, state=model.initial_state(3)),
         r"state\['history'\] must be \[2, 8\]"),
        (lambda: model.tbptt_loss(torch.zeros(batch, 1, 12), local, global_cond),
         "chunks must be a positive multiple"),
        (lambda: model.tbptt_loss(torch.zeros(batch, 1, length), local, global_cond,
                                  model.initial_state(batch), reset=torch.ones(batch)),
         r"reset must be a \[2\] bool tensor"),
        (lambda: model.loss(torch.zeros(batch, 2, length), local, global_cond), "mono audio"),
        (lambda: model.start(batch, length, local, global_cond,
                             prompt=torch.zeros(batch, 3 * HOP, dtype=torch.long)),
         "longer than length"),
    ]
    for call, message in calls:
        with pytest.raises(UsageError, match=message) as error:
            call()
        assert one_line(error)
    unconditional = tiny()
    with pytest.raises(UsageError, match="no local conditioning"):
        unconditional(inputs, local)
    with pytest.raises(UsageError, match="no global conditioning"):
        unconditional(inputs, None, global_cond)
    with torch.no_grad():
        state = model.start(batch, length, local, global_cond)
        with pytest.raises(UsageError, match=r"previous sample as \[2\] class indices") as error:
            model.step(inputs[:, :2], state)
        assert one_line(error)
        for t in range(length):
            model.step(inputs[:, t], state)
        with pytest.raises(UsageError, match="past the 32 samples given to start"):
            model.step(inputs[:, 0], state)


def test_loss_takes_any_length_without_local_conditioning(one_thread):
    model = tiny()
    wave = torch.rand(2, 1, 29) * 1.6 - 0.8
    targets = model.targets_from_waveform(wave)
    with torch.no_grad():
        loss = model.loss(wave)
        padded = torch.cat([shift_right(targets, model.silence_input()),
                            torch.full((2, 3), model.silence_input())], 1)
        params = model(padded)[..., :29]
    torch.testing.assert_close(loss, -model.head.log_prob(params, targets).mean())
