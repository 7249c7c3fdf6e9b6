"""WaveNet: causality, receptive field, incremental == full pass, conditioning, config."""

from __future__ import annotations

import itertools

import pytest
import torch

from tiny_wavenets import CONDITIONING, HOP, conditioning_inputs, tiny
from wavegen.errors import ConfigError, UsageError
from wavegen.models.wavenet import WaveNet, WaveNetConfig, describe, shift_right

def random_inputs(model: WaveNet, batch: int, length: int) -> torch.Tensor:
    wave = torch.rand(batch, 1, length) * 1.6 - 0.8
    return shift_right(model.targets_from_waveform(wave), model.silence_input())


@pytest.mark.parametrize("head,kernel_size,conditioning", list(itertools.product(
    ["categorical", "mol", "gaussian"], [2, 3], sorted(CONDITIONING))))
def test_incremental_equals_full_pass(head, kernel_size, conditioning):
    model = tiny(head, kernel_size, conditioning)
    batch, length = 2, 6 * HOP
    inputs = random_inputs(model, batch, length)
    local, global_cond = conditioning_inputs(model, batch, length)
    with torch.no_grad():
        full = model(inputs, local, global_cond)
        state = model.start(batch, length, local, global_cond)
        steps = torch.stack([model.step(inputs[:, t], state) for t in range(length)], -1)
    assert full.shape == (batch, model.head.num_params, length)
    assert torch.allclose(full, steps, atol=1e-5, rtol=1e-5)


def test_incremental_conditioning_is_projected_a_chunk_at_a_time(monkeypatch):
    """The state projects the conditioning a chunk of steps at a time (bounded memory
    whatever the length) and the steps still equal the full pass, across chunk boundaries and after
    a prompt that ends inside a chunk."""
    from wavegen.models.wavenet import ProjectedRows

    monkeypatch.setattr(ProjectedRows, "CHUNK_BYTES", 1)
    monkeypatch.setattr(ProjectedRows, "MIN_STEPS", 7)
    model = tiny("categorical", 2, "local-nearest+global")
    batch, length, prompt = 2, 4 * HOP, 10
    inputs = random_inputs(model, batch, length)
    local, global_cond = conditioning_inputs(model, batch, length)
    with torch.no_grad():
        full = model(inputs, local, global_cond)
        state = model.start(batch, length, local, global_cond, prompt=inputs[:, 1:prompt + 1])
        steps = []
        for t in range(prompt, length):
            steps.append(model.step(inputs[:, t], state))
            assert state.local._rows.shape[1] <= 7  # never more than a chunk projected
    assert torch.allclose(full[..., prompt:], torch.stack(steps, -1), atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("head", ["categorical", "mol"])
@pytest.mark.parametrize("prompt_length", [1, 37])
def test_priming_from_a_prompt_continues_the_full_pass(head, prompt_length):
    model = tiny(head, 3, "local-nearest+global")
    batch, length = 2, 5 * HOP
    wave = torch.rand(batch, 1, length) * 1.6 - 0.8
    targets = model.targets_from_waveform(wave)
    inputs = shift_right(targets, model.silence_input())
    local, global_cond = conditioning_inputs(model, batch, length)
    with torch.no_grad():
        full = model(inputs, local, global_cond)
        state = model.start(batch, length, local, global_cond, prompt=targets[:, :prompt_length])
        assert state.time == prompt_length
        steps = torch.stack([model.step(targets[:, t - 1], state)
                             for t in range(prompt_length, length)], -1)
    assert torch.allclose(full[..., prompt_length:], steps, atol=1e-5)


@pytest.mark.parametrize("kernel_size", [2, 3])
def test_outputs_never_depend_on_later_inputs(kernel_size):
    model = tiny("categorical", kernel_size, "local")
    inputs = random_inputs(model, 1, 4 * HOP)
    local, _ = conditioning_inputs(model, 1, 4 * HOP)
    changed = inputs.clone()
    t = 29
    changed[0, t] = (changed[0, t] + 7) % 64
    with torch.no_grad():
        a, b = model(inputs, local), model(changed, local)
    assert torch.equal(a[..., :t], b[..., :t])
    assert not torch.allclose(a[..., t], b[..., t])


@pytest.mark.parametrize("kernel_size,layers,stacks", [(2, 4, 2), (3, 5, 1), (2, 10, 2)])
def test_receptive_field_is_the_theoretical_value(kernel_size, layers, stacks):
    config = WaveNetConfig(layers=layers, stacks=stacks, kernel_size=kernel_size,
                           residual_channels=8, gate_channels=8, skip_channels=32, head="gaussian")
    expected = 1 + stacks * (kernel_size - 1) * (2 ** layers - 1)
    assert config.receptive_field == expected
    if layers == 10:
        assert expected == 2047  # the reference configuration
    torch.manual_seed(0)
    model = WaveNet(config)
    length = expected + 20
    # The continuous head embeds values with a 1x1 conv, so inputs are differentiable.
    inputs = (torch.rand(1, length) - 0.5).requires_grad_(True)
    model(inputs)[0, :, -1].sum().backward()
    reached = torch.nonzero(inputs.grad[0].abs() > 0).flatten()
    assert reached.min() == length - expected and reached.max() == length - 1
    assert reached.numel() == expected


def test_loss_is_nats_per_sample_and_matches_head_log_prob():
    model = tiny("categorical")
    wave = torch.rand(2, 1, 50) * 2 - 1
    loss = model.loss(wave)
    targets = model.targets_from_waveform(wave)
    params = model(shift_right(targets, model.silence_input()))
    expected = -model.head.log_prob(params, targets).mean()
    assert torch.allclose(loss, expected)
    # An untrained categorical model is close to uniform: about ln(64) nats.
    assert abs(loss.item() - torch.log(torch.tensor(64.0)).item()) < 1.0


def test_conditioning_dropout_drops_everything_in_training_only():
    model = tiny("categorical", 2, "local-nearest+global", cond_dropout=0.5)
    inputs = random_inputs(model, 64, 2 * HOP)
    local, global_cond = conditioning_inputs(model, 64, 2 * HOP)
    with torch.no_grad():
        conditional = model(inputs, local, global_cond)
        unconditional = model(inputs, local, global_cond, unconditional=True)
        model.train()
        torch.manual_seed(3)
        mixed = model(inputs, local, global_cond)
        model.eval()
    dropped = torch.tensor([torch.allclose(mixed[i], unconditional[i]) for i in range(64)])
    kept = torch.tensor([torch.allclose(mixed[i], conditional[i]) for i in range(64)])
    assert torch.all(dropped ^ kept)  # each example is one or the other
    assert 10 < dropped.sum() < 54     # about half dropped
    assert not torch.allclose(conditional, unconditional)


def test_mismatched_local_length_is_refused_not_cropped():
    model = tiny("categorical", 2, "local")
    inputs = random_inputs(model, 1, 4 * HOP)
    with pytest.raises(UsageError, match="must cover the same samples"):
        model(inputs, torch.randn(1, 6, 5))
    with pytest.raises(UsageError, match="local features must be"):
        model(inputs, torch.randn(1, 7, 4))
    with pytest.raises(UsageError, match="pass local features"):
        model(inputs)
    with pytest.raises(UsageError, match="no global conditioning"):
        model(inputs, torch.randn(1, 6, 4), torch.tensor([0]))


@pytest.mark.parametrize("changes,word", [
    ({"kernel_size": 1}, "kernel_size"),
    ({"head": "softmax"}, "head"),
    ({"num_classes": 100}, "power of two"),
    ({"local_channels": 80, "hop_length": 256, "upsample_factors": (4, 4)}, "hop length"),
    ({"local_channels": 80}, "hop_length"),
    ({"global_classes": 4}, "global_dim"),
    ({"dropout": 1.0}, "dropout"),
])
def test_bad_configs_are_config_errors(changes, word):
    with pytest.raises(ConfigError, match=word):
        WaveNetConfig(**changes)


def test_config_round_trips_and_rejects_unknown_keys():
    config = WaveNetConfig(local_channels=80, hop_length=256, upsample_factors=(4, 4, 4, 4))
    assert WaveNetConfig.from_dict(config.to_dict()) == config
    with pytest.raises(ConfigError, match="layer"):
        WaveNetConfig.from_dict({"layer": 3})
    assert "receptive field 2047 samples" in describe(WaveNetConfig())
