"""Chunked conditioned diffusion sampling: positional noise and equality with one pass."""

from __future__ import annotations

import pytest
import torch

from wavegen.diffusion.chunked import NOISE_BLOCK, PositionalNoise, sample_chunked
from wavegen.diffusion.process import DiffusionProcess
from wavegen.errors import UsageError
from wavegen.models.diffwave import DiffWave, DiffWaveConfig

HOP = 16


def test_positional_noise_depends_on_position_stream_and_seed_only():
    noise = PositionalNoise(5, 2, block=64)
    whole = noise.window(0, 0, 300)
    assert whole.shape == (2, 1, 300)
    # Any window is the same slice of the whole, across block edges.
    for a, b in ((0, 64), (10, 200), (63, 65), (128, 300), (7, 7)):
        assert torch.equal(noise.window(0, a, b), whole[..., a:b])
    assert not torch.equal(noise.window(1, 0, 300), whole)
    assert not torch.equal(PositionalNoise(6, 2, block=64).window(0, 0, 300), whole)
    assert not torch.equal(whole[0], whole[1])
    assert abs(float(whole.mean())) < 0.15 and 0.85 < float(whole.std()) < 1.15
    # Blocks are independent draws, not shifted copies of one another.
    assert not torch.equal(whole[..., :64], whole[..., 64:128])
    assert NOISE_BLOCK >= 1024
    with pytest.raises(UsageError, match="bad noise window"):
        noise.window(0, 5, 3)


def _model() -> DiffWave:
    torch.manual_seed(0)
    config = DiffWaveConfig(residual_layers=3, residual_channels=8, dilation_cycle=3,
                            n_mels=6, hop_length=HOP, sample_rate=8000, embedding_hidden=16)
    model = DiffWave(config).eval()
    with torch.no_grad():  # a non-trivial output layer (it starts at zero)
        model.output_projection.weight.normal_(0, 0.3)
    return model


@pytest.mark.parametrize("sampler", ["ddpm", "ddim", "heun"])
def test_chunks_with_enough_context_equal_the_whole_signal(sampler, one_thread):
    model = _model()
    process = DiffusionProcess(sampler=sampler, sampler_steps=3)
    local = torch.randn(1, 6, 23)
    make = lambda window: (lambda x, t: model(x, t, local=window))  # noqa: E731
    run = lambda shape_denoise, shape, **kw: process.sample(shape_denoise, shape, **kw)  # noqa: E731
    whole, _ = sample_chunked(run, make, local, HOP, 9, chunk_frames=23, overlap_frames=0)
    # Context: receptive field (15 samples + the upsampler's reach) x NFE, in frames.
    chunked, _ = sample_chunked(run, make, local, HOP, 9, chunk_frames=5, overlap_frames=12)
    assert whole.shape == chunked.shape == (1, 1, 23 * HOP)
    torch.testing.assert_close(chunked, whole, rtol=0, atol=1e-5)
    # Without context the chunk edges differ, but only near the joins.
    bare, _ = sample_chunked(run, make, local, HOP, 9, chunk_frames=5, overlap_frames=0)
    assert not torch.allclose(bare, whole, atol=1e-4)
    # Frame 1 of the first chunk lies 3 frames (48 samples) before its join: beyond the reach
    # of 3 evaluations of 7 samples each side plus the upsampler's frame of overlap.
    centre = slice(1 * HOP, 2 * HOP)
    assert torch.allclose(bare[..., centre], whole[..., centre], atol=1e-4)


def test_a_sink_receives_the_pieces_in_order():
    model = _model()
    process = DiffusionProcess(sampler="ddim", sampler_steps=2)
    local = torch.randn(2, 6, 11)
    make = lambda window: (lambda x, t: model(x, t, local=window))  # noqa: E731
    pieces, seen = [], []
    empty, seconds = sample_chunked(process.sample, make, local, HOP, 1, chunk_frames=4,
                                    overlap_frames=3, sink=pieces.append,
                                    on_chunk=lambda i, n: seen.append((i, n)))
    assert empty.shape == (2, 1, 0) and seconds > 0
    assert [p.shape[-1] for p in pieces] == [4 * HOP, 4 * HOP, 3 * HOP]
    assert seen == [(0, 3), (1, 3), (2, 3)]
    returned, _ = sample_chunked(process.sample, make, local, HOP, 1, chunk_frames=4,
                                 overlap_frames=3)
    assert torch.equal(torch.cat(pieces, dim=-1), returned)
    with pytest.raises(UsageError, match="chunk_frames"):
        sample_chunked(process.sample, make, local, HOP, 1, chunk_frames=0, overlap_frames=0)
