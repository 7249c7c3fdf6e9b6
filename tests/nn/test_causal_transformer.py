"""CausalTransformer (wavegen.nn.causal_transformer): causality, the key/value-cache loop
(start / step) against the teacher-forced pass with and without a prompt and conditioning,
conditioning dropout and the unconditional branch, one-line refusals, and the exact
parameter count of transformer_parameters."""

from __future__ import annotations

import pytest
import torch

from wavegen.errors import UsageError
from wavegen.nn.causal_transformer import CausalTransformer, transformer_parameters

CLASSES = 24
WIDTH, LAYERS, HEADS, CONTEXT = 32, 2, 4, 32
CHANNELS = 3  # local conditioning channels


def transformer(local_channels: int = 0, hop: int = 1, seed: int = 0, **overrides
                ) -> CausalTransformer:
    torch.manual_seed(seed)
    kwargs = dict(classes=CLASSES, width=WIDTH, layers=LAYERS, heads=HEADS, context=CONTEXT,
                  local_channels=local_channels, hop=hop)
    model = CausalTransformer(**{**kwargs, **overrides}).eval()
    with torch.no_grad():  # non-trivial positions (they start near zero)
        model.positions.normal_()
    return model


def tokens(batch: int, length: int, seed: int = 1) -> torch.Tensor:
    return torch.randint(0, CLASSES, (batch, length), generator=torch.Generator().manual_seed(seed))


def local_for(batch: int, length: int, hop: int, seed: int = 2) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(batch, CHANNELS, length // hop, generator=g)


def one_line(caught) -> str:
    message = str(caught.value)
    assert message and "\n" not in message, message
    return message


def shifted(codes: torch.Tensor, first: int) -> torch.Tensor:
    return torch.cat([torch.full_like(codes[:, :1], first), codes[:, :-1]], dim=1)


CONDITIONINGS = [(0, 1), (CHANNELS, 1), (CHANNELS, 4)]  # (local channels, hop)


@pytest.mark.parametrize("channels, hop", CONDITIONINGS)
def test_changing_token_t_changes_no_logit_at_or_before_t(channels, hop, one_thread):
    model = transformer(channels, hop)
    length = CONTEXT
    inputs = tokens(2, length)
    local = local_for(2, length, hop) if channels else None
    with torch.no_grad():
        logits = model(inputs, local)
        assert logits.shape == (2, CLASSES, length)
        for t in (0, 9, length - 2):
            changed = inputs.clone()
            changed[:, t] = (changed[:, t] + 5) % CLASSES
            other = model(changed, local)
            assert torch.allclose(other[..., :t], logits[..., :t], rtol=0, atol=1e-6), t
            # the input at t is what position t predicts from: it and later ones do change
            assert not torch.allclose(other[..., t], logits[..., t], atol=1e-4), t
            assert not torch.allclose(other[..., t + 1], logits[..., t + 1], atol=1e-4), t


@pytest.mark.parametrize("channels, hop", CONDITIONINGS[1:])
def test_conditioning_frame_j_reaches_its_own_positions_and_later_ones_only(channels, hop,
                                                                            one_thread):
    model = transformer(channels, hop)
    inputs, local = tokens(1, CONTEXT), local_for(1, CONTEXT, hop)
    with torch.no_grad():
        logits = model(inputs, local)
        for j in (0, CONTEXT // hop // 2):
            changed = local.clone()
            changed[..., j] += 3.0
            other = model(inputs, changed)
            start = j * hop
            assert torch.allclose(other[..., :start], logits[..., :start], rtol=0, atol=1e-6)
            for t in range(start, start + hop):
                assert not torch.allclose(other[..., t], logits[..., t], atol=1e-4), (j, t)


@pytest.mark.parametrize("channels, hop", CONDITIONINGS)
@pytest.mark.parametrize("prompt", [0, 1, 7])
def test_cached_steps_equal_the_forward_pass_at_every_position(channels, hop, prompt,
                                                               one_thread):
    model = transformer(channels, hop)
    batch, length, first = 2, CONTEXT, 3
    codes = tokens(batch, length)
    local = local_for(batch, length, hop) if channels else None
    with torch.no_grad():
        logits = model(shifted(codes, first), local)
        state = model.start(batch, length, local, prompt=codes[:, :prompt] if prompt else None,
                            first=first)
        assert state.time == prompt
        assert all(k.shape == (batch, HEADS, prompt, WIDTH // HEADS) for k in state.keys)
        previous = torch.full((batch,), first) if prompt == 0 else codes[:, prompt - 1]
        for t in range(prompt, length):
            step = model.step(previous, state)
            assert step.shape == (batch, CLASSES)
            assert torch.allclose(step, logits[..., t], atol=1e-5), t
            previous = codes[:, t]
        assert state.time == length
        assert all(k.shape[2] == length for k in state.keys + state.values)


def test_an_empty_prompt_is_no_prompt(one_thread):
    model = transformer(CHANNELS, 4)
    codes, local = tokens(1, 16), local_for(1, 16, 4)
    with torch.no_grad():
        a = model.start(1, 16, local, prompt=codes[:, :0])
        b = model.start(1, 16, local)
        assert a.time == b.time == 0
        assert torch.equal(model.step(codes[:, 0], a), model.step(codes[:, 0], b))


def test_unconditional_equals_zero_conditioning(one_thread):
    model = transformer(CHANNELS, 4)
    plain = transformer(0, 1)
    # The same weights without the conditioning projection: the unconditional branch.
    missing, unexpected = plain.load_state_dict(model.state_dict(), strict=False)
    assert missing == [] and set(unexpected) == {"local_projection.weight",
                                                 "local_projection.bias"}
    codes = tokens(2, CONTEXT)
    local, other = local_for(2, CONTEXT, 4), local_for(2, CONTEXT, 4, seed=9)
    with torch.no_grad():
        expected = plain(codes)
        uncond = model(codes, local, unconditional=True)
        assert torch.allclose(uncond, expected, atol=1e-6)
        assert torch.allclose(model(codes, other, unconditional=True), expected, atol=1e-6)
        assert not torch.allclose(model(codes, local), expected, atol=1e-3)
        # The cached loop's unconditional state too.
        expected = plain(shifted(codes, 0))
        state = model.start(2, CONTEXT, local, unconditional=True, prompt=codes[:, :5], first=0)
        for t in range(5, CONTEXT):
            assert torch.allclose(model.step(codes[:, t - 1], state), expected[..., t],
                                  atol=1e-5), t


def test_cond_dropout_drops_some_examples_in_training_only(one_thread):
    model = transformer(CHANNELS, 4, cond_dropout=0.3)
    batch = 64
    codes = tokens(batch, 16)
    local = local_for(1, 16, 4).repeat(batch, 1, 1)
    with torch.no_grad():
        cond = model(codes, local)
        uncond = model(codes, local, unconditional=True)
        assert not torch.allclose(cond, uncond, atol=1e-3)
        model.train()
        torch.manual_seed(0)
        dropped = model(codes, local)
        model.eval()
        assert torch.equal(model(codes, local), cond)  # eval: nothing dropped
    as_uncond = torch.isclose(dropped, uncond, atol=1e-5).flatten(1).all(1)
    as_cond = torch.isclose(dropped, cond, atol=1e-5).flatten(1).all(1)
    assert bool((as_uncond ^ as_cond).all())  # each example: dropped entirely or not at all
    assert 5 <= int(as_uncond.sum()) <= 40, int(as_uncond.sum())
    # Training mode start() also drops (the sampling loop puts the model in eval mode) ...
    model.train()
    torch.manual_seed(1)
    state = model.start(batch, 16, local)
    model.eval()
    assert state.conditioning is not None
    kept = state.conditioning.flatten(1).abs().sum(1) > 0
    assert 0 < int(kept.sum()) < batch
    # ... eval mode never does.
    assert bool((model.start(batch, 16, local).conditioning.flatten(1).abs().sum(1) > 0).all())


def test_dropout_is_off_in_eval_and_on_in_training(one_thread):
    model = transformer(dropout=0.5)
    codes = tokens(2, 16)
    with torch.no_grad():
        assert torch.equal(model(codes), model(codes))
        model.train()
        torch.manual_seed(0)
        a = model(codes)
        b = model(codes)
    assert not torch.equal(a, b)


def bad_calls():
    """(name, model kwargs, a call on the model, fragment of the error)."""
    codes = tokens(1, CONTEXT + 1)
    local = local_for(1, 16, 4)
    yield "forward past the context", {}, lambda m: m(codes), "context"
    yield "start past the context", {}, lambda m: m.start(1, CONTEXT + 1), "context"
    yield "global conditioning (forward)", {}, \
        lambda m: m(codes[:, :8], global_cond=torch.zeros(1, dtype=torch.long)), "global"
    yield "global conditioning (start)", {}, \
        lambda m: m.start(1, 8, global_cond=torch.zeros(1, 4)), "global"
    yield "local to an unconditioned one", {}, \
        lambda m: m(codes[:, :16], local_for(1, 16, 1)), "no local"
    cond = dict(local_channels=CHANNELS, hop=4)
    yield "no local", cond, lambda m: m(codes[:, :16]), "locally conditioned"
    yield "no local (start)", cond, lambda m: m.start(1, 16), "locally conditioned"
    yield "local of the wrong channels", cond, \
        lambda m: m(codes[:, :16], local[:, :2]), r"\[batch, 3, frames\]"
    yield "local without a batch", cond, lambda m: m(codes[:, :16], local[0]), "frames"
    yield "too few frames", cond, lambda m: m(codes[:, :16], local[..., :3]), "12 positions"
    yield "too many frames", cond, lambda m: m(codes[:, :12], local), "16 positions"
    yield "frames not matching start's length", cond, lambda m: m.start(1, 20, local), \
        "but there are 20"


@pytest.mark.parametrize("name, kwargs, call, message", list(bad_calls()),
                         ids=[c[0] for c in bad_calls()])
def test_misuse_is_a_one_line_usage_error(name, kwargs, call, message, one_thread):
    model = transformer(**kwargs)
    with pytest.raises(UsageError, match=message) as caught:
        with torch.no_grad():
            call(model)
    one_line(caught)


@pytest.mark.parametrize("length", [8, 5])
def test_stepping_past_the_started_length_is_a_one_line_usage_error(one_thread, length):
    model = transformer(context=8)
    with torch.no_grad():
        state = model.start(1, length, prompt=tokens(1, 3), first=0)
        previous = torch.zeros(1, dtype=torch.long)
        for _ in range(length - 3):
            model.step(previous, state)
        with pytest.raises(UsageError, match=f"past the {length} positions") as caught:
            model.step(previous, state)
    one_line(caught)


def test_stepping_past_the_length_with_conditioning_is_a_one_line_usage_error(one_thread):
    model = CausalTransformer(24, 32, 2, 4, 32, local_channels=3, hop=4).eval()
    with torch.no_grad():
        state = model.start(1, 8, torch.randn(1, 3, 2))
        previous = torch.zeros(1, dtype=torch.long)
        for _ in range(8):
            model.step(previous, state)
        with pytest.raises(UsageError, match="past the 8 positions") as caught:
            model.step(previous, state)
    one_line(caught)


@pytest.mark.parametrize("prompt, fragment", [((2, 12), "longer than the 8"),
                                              ((1, 4), "prompt must be [2, P]")])
def test_a_bad_prompt_is_a_one_line_usage_error(one_thread, prompt, fragment):
    model = transformer(context=16)
    with torch.no_grad(), pytest.raises(UsageError) as caught:
        model.start(2, 8, prompt=torch.zeros(*prompt, dtype=torch.long))
    assert fragment in str(caught.value)
    one_line(caught)


def test_width_must_be_a_multiple_of_heads():
    with pytest.raises(UsageError, match="multiple of heads") as caught:
        CausalTransformer(CLASSES, 30, 1, 4, 16)
    one_line(caught)


@pytest.mark.parametrize("classes, width, layers, heads, context, channels", [
    (24, 32, 2, 4, 32, 0),
    (24, 32, 2, 4, 32, 3),
    (2, 8, 1, 1, 1, 0),
    (100, 48, 3, 6, 70, 16),
    (7, 16, 0, 2, 5, 1),
])
def test_transformer_parameters_is_exact(classes, width, layers, heads, context, channels):
    model = CausalTransformer(classes, width, layers, heads, context, channels, hop=2)
    built = sum(p.numel() for p in model.parameters())
    assert transformer_parameters(classes, width, layers, context, channels) == built
