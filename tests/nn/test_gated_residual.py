"""The shared gated residual block: what each output sees, conditioning, streaming, WaveNet's use."""

from __future__ import annotations

import pytest
import torch

from wavegen.errors import ConfigError, UsageError
from wavegen.models.wavenet import WaveNet, WaveNetConfig
from wavegen.nn.gated_residual import GatedResidualBlock

R, G, S, C, D = 6, 5, 7, 3, 4
B, T = 2, 40


def _block(causal: bool, kernel_size: int = 3, dilation: int = 2, **kwargs) -> GatedResidualBlock:
    torch.manual_seed(0)
    return GatedResidualBlock(R, G, S, kernel_size, dilation, causal=causal, local_channels=C,
                              global_channels=D, **kwargs).eval()


def _inputs(length: int = T):
    generator = torch.Generator().manual_seed(1)
    return (torch.randn(B, R, length, generator=generator),
            torch.randn(B, C, length, generator=generator),
            torch.randn(B, D, generator=generator))


def _seen(block: GatedResidualBlock, t: int, output: int) -> set[int]:
    """Input positions with a nonzero gradient on output ``output`` (0 residual, 1 skip) at t."""
    x, local, global_cond = _inputs()
    x.requires_grad_(True)
    block(x, local=local, global_cond=global_cond)[output][0, :, t].sum().backward()
    return set(torch.nonzero(x.grad[0].abs().sum(0)).flatten().tolist())


@pytest.mark.parametrize("kernel_size, dilation", [(2, 1), (2, 4), (3, 2), (4, 3)])
def test_a_causal_block_sees_only_the_past(kernel_size, dilation):
    block = _block(True, kernel_size, dilation)
    span = (kernel_size - 1) * dilation
    assert block.reach == (span, 0)
    t = 25
    taps = {t - span + j * dilation for j in range(kernel_size)}
    assert _seen(block, t, 1) == taps
    assert _seen(block, t, 0) == taps | {t}
    assert max(_seen(block, t, 0)) == t


@pytest.mark.parametrize("kernel_size, dilation", [(2, 1), (2, 4), (3, 2), (4, 3), (5, 1)])
def test_a_non_causal_block_sees_the_future_with_same_padding(kernel_size, dilation):
    block = _block(False, kernel_size, dilation)
    span = (kernel_size - 1) * dilation
    left = span // 2
    assert block.reach == (left, span - left)
    t = 20
    taps = {t - left + j * dilation for j in range(kernel_size)}
    assert _seen(block, t, 1) == taps
    assert _seen(block, t, 0) == taps | {t}
    assert max(taps) == t + span - left > t
    # Same padding: the output has the input's length, and the edges see zeros.
    x, local, global_cond = _inputs()
    out, skip = block(x, local=local, global_cond=global_cond)
    assert out.shape == (B, R, T) and skip.shape == (B, S, T)


@pytest.mark.parametrize("causal", [True, False])
def test_local_conditioning_is_pointwise_and_global_is_everywhere(causal):
    block = _block(causal)
    x, local, global_cond = _inputs()
    _, skip = block(x, local=local, global_cond=global_cond)
    later = local.clone()
    later[..., 30] += 1.0
    _, skip_later = block(x, local=later, global_cond=global_cond)
    changed = (skip_later - skip).abs().sum(dim=(0, 1)) > 0
    assert changed.nonzero().flatten().tolist() == [30]
    _, skip_global = block(x, local=local, global_cond=global_cond + 1.0)
    assert bool(((skip_global - skip).abs().sum(dim=1) > 0).all())


@pytest.mark.parametrize("causal", [True, False])
def test_own_projections_equal_a_precomputed_gate_bias(causal):
    with_projections = _block(causal)
    torch.manual_seed(5)
    bare = GatedResidualBlock(R, G, S, 3, 2, causal=causal).eval()
    bare.load_state_dict({k: v for k, v in with_projections.state_dict().items()
                          if "projection" not in k})
    x, local, global_cond = _inputs()
    bias = (with_projections.local_projection(local)
            + with_projections.global_projection(global_cond)[..., None])
    expected = with_projections(x, local=local, global_cond=global_cond)
    got = bare(x, gate_bias=bias)
    for a, b in zip(expected, got):
        torch.testing.assert_close(a, b, atol=1e-6, rtol=1e-6)


@pytest.mark.parametrize("has_residual", [True, False])
def test_steps_equal_the_full_pass(has_residual):
    block = _block(True, kernel_size=3, dilation=3, has_residual=has_residual)
    x, local, global_cond = _inputs()
    out, skip = block(x, local=local, global_cond=global_cond)
    buffer = block.conv.init_buffer(B)
    for t in range(T):
        out_t, skip_t = block.step(x[..., t], buffer, local_t=local[..., t],
                                   global_cond=global_cond)
        torch.testing.assert_close(out_t, out[..., t], atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(skip_t, skip[..., t], atol=1e-5, rtol=1e-5)
    if not has_residual:
        torch.testing.assert_close(out, x)


def test_conditioning_mistakes_are_usage_errors():
    block = _block(True)
    x, local, global_cond = _inputs()
    with pytest.raises(UsageError, match="locally conditioned"):
        block(x, global_cond=global_cond)
    with pytest.raises(UsageError, match=r"must be \[2, 3, 40\]"):
        block(x, local=local[..., :-1], global_cond=global_cond)
    with pytest.raises(UsageError, match="globally conditioned"):
        block(x, local=local)
    with pytest.raises(UsageError, match=r"must be \[2, 4\]"):
        block(x, local=local, global_cond=global_cond[:, :2])
    bare = GatedResidualBlock(R, G, S, 2, 1)
    with pytest.raises(UsageError, match="no local conditioning"):
        bare(x, local=local)
    with pytest.raises(UsageError, match="no global conditioning"):
        bare.step(x[..., 0], bare.conv.init_buffer(B), global_cond=global_cond)
    with pytest.raises(UsageError, match="no step-by-step mode"):
        nc = _block(False)
        nc.step(x[..., 0], None, local_t=local[..., 0], global_cond=global_cond)
    with pytest.raises(ConfigError, match="dilation must be >= 1"):
        GatedResidualBlock(R, G, S, 2, 0)


def test_wavenet_keeps_its_state_dict_keys():
    # Bundles written before the block was shared must still load by name.
    config = WaveNetConfig(layers=2, stacks=1, residual_channels=4, gate_channels=4,
                           skip_channels=4, local_channels=3, hop_length=4,
                           upsample_factors=(4,), global_classes=2, global_dim=3)
    keys = set(WaveNet(config).state_dict())
    layer_keys = {f"layers.{i}.{name}.{p}" for i in range(2) for name in ("conv", "skip")
                  for p in ("weight", "bias")} | {"layers.0.residual.weight",
                                                   "layers.0.residual.bias"}
    assert {k for k in keys if k.startswith("layers.")} == layer_keys
    assert {"local_projection.weight", "global_projection.weight",
            "global_embedding.weight"} <= keys
