"""Real/fake batching of discriminators: one function, one behaviour, for every discriminator."""

from __future__ import annotations

import pytest
import torch

from wavegen.errors import UsageError
from wavegen.models.gantts import RandomWindowDiscriminators
from wavegen.models.hifigan import MultiPeriodDiscriminator, MultiScaleDiscriminator
from wavegen.models.melgan import MelGANMultiScaleDiscriminator
from wavegen.nn.adversarial import (DiscriminatorOutput, DiscriminatorSet, check_real_fake,
                                    run_real_fake)

HOP, MELS = 64, 6


def _recording(calls: list[torch.Tensor]):
    """A fake discriminator: score = per-example sum, features = the input and its square."""
    def run(x: torch.Tensor) -> list[DiscriminatorOutput]:
        calls.append(x)
        return [DiscriminatorOutput(x.sum(dim=(1, 2)), [x, x ** 2]),
                DiscriminatorOutput(x.amax(dim=(1, 2)), [2 * x])]
    return run


def test_one_joint_pass_real_first_split_back():
    real, fake = torch.randn(3, 1, 50), torch.randn(3, 1, 50)
    calls: list[torch.Tensor] = []
    real_out, fake_out = run_real_fake(_recording(calls), real, fake)
    assert len(calls) == 1 and torch.equal(calls[0], torch.cat([real, fake]))
    assert len(real_out) == len(fake_out) == 2
    torch.testing.assert_close(real_out[0].score, real.sum(dim=(1, 2)))
    torch.testing.assert_close(fake_out[1].score, fake.amax(dim=(1, 2)))
    assert torch.equal(real_out[0].features[1], real ** 2)
    assert torch.equal(fake_out[0].features[0], fake)
    assert torch.equal(fake_out[1].features[0], 2 * fake)


def test_one_side_alone_is_one_pass_and_the_other_list_is_empty():
    x = torch.randn(2, 1, 30)
    calls: list[torch.Tensor] = []
    real_out, fake_out = run_real_fake(_recording(calls), x, None)
    assert fake_out == [] and len(real_out) == 2 and torch.equal(calls[-1], x)
    real_out, fake_out = run_real_fake(_recording(calls), None, x)
    assert real_out == [] and len(fake_out) == 2 and torch.equal(calls[-1], x)
    assert check_real_fake(None, x) == (2, 1, 30)


@pytest.mark.parametrize("real_shape, fake_shape, fragment", [
    ((2, 1, 30), (2, 1, 29), "same shape, got [2, 1, 30] and [2, 1, 29]"),
    ((2, 1, 30), (3, 1, 30), "same shape, got [2, 1, 30] and [3, 1, 30]"),
    ((2, 30), (2, 30), "real audio [batch, 1, time], got shape [2, 30]"),
    ((2, 1, 30), (2, 2, 30), "fake audio [batch, 1, time], got shape [2, 2, 30]"),
    (None, None, "both are None"),
])
def test_what_cannot_be_batched_is_a_usage_error_before_any_pass(real_shape, fake_shape, fragment):
    real = None if real_shape is None else torch.randn(real_shape)
    fake = None if fake_shape is None else torch.randn(fake_shape)
    calls: list[torch.Tensor] = []
    with pytest.raises(UsageError) as caught:
        run_real_fake(_recording(calls), real, fake)
    assert fragment in str(caught.value) and "\n" not in str(caught.value)
    assert calls == []


def _discriminators():
    torch.manual_seed(0)
    return {
        "mpd": MultiPeriodDiscriminator(periods=(2, 3), channels=(4, 4, 4, 4, 4)),
        "msd": MultiScaleDiscriminator(scales=2, channels=(4, 4, 4, 4, 4, 4, 4),
                                       groups=(1, 1, 1, 1, 1, 1, 1)),
        "melgan": MelGANMultiScaleDiscriminator(num_D=2, ndf=4, n_layers=2),
        "rwd": RandomWindowDiscriminators(MELS, HOP, 16000, window_sizes=(128, 256),
                                          channels=(4, 8), norm="weight"),
    }


@pytest.mark.parametrize("kind", ["mpd", "msd", "melgan", "rwd"])
def test_every_discriminator_batches_alike(kind):
    disc = _discriminators()[kind].eval()  # eval: spectral norm does no power iteration
    generator = torch.Generator().manual_seed(3)
    real, fake = torch.randn(2, 1, 1024, generator=generator), torch.randn(2, 1, 1024)
    mel = torch.randn(2, MELS, 1024 // HOP)
    extra = {}
    if kind == "rwd":
        extra["offsets"] = disc.sample_offsets(2, 1024, 1024 // HOP, generator=generator)
    with torch.no_grad():
        joint_real, joint_fake = disc(real, fake, mel, **extra)
        alone_real, none = disc(real, None, mel, **extra)
        none2, alone_fake = disc(None, fake, mel, **extra)
    assert none == [] and none2 == []
    assert len(joint_real) == len(joint_fake) == len(alone_real) == len(alone_fake) > 0
    for joint, alone in zip(joint_real + joint_fake, alone_real + alone_fake):
        assert joint.score.shape[0] == 2
        torch.testing.assert_close(joint.score, alone.score, atol=1e-5, rtol=1e-5)
        for a, b in zip(joint.features, alone.features, strict=True):
            torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)
    with pytest.raises(UsageError, match="same shape"):
        disc(real, fake[..., :960], mel)
    with pytest.raises(UsageError, match="both are None"):
        disc(None, None, mel)


def test_a_discriminator_set_keeps_the_behaviour_of_its_members():
    members = _discriminators()
    disc = DiscriminatorSet({"mpd": members["mpd"], "melgan": members["melgan"]}).eval()
    real, fake = torch.randn(1, 1, 512), torch.randn(1, 1, 512)
    with torch.no_grad():
        real_out, fake_out = disc(real, fake)
    assert len(real_out) == len(fake_out) == 2 + 2
    with pytest.raises(UsageError, match="same shape"):
        disc(real, fake[..., :500])
