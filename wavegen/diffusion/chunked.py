"""Conditioned diffusion sampling in overlapping chunks, with noise tied to positions.

:func:`sample_chunked` runs a diffusion sampler through
:func:`wavegen.inference.chunked_noise.render_chunked`: the initial noise is stream 0 of the
:class:`~wavegen.inference.chunked_noise.PositionalNoise` and the normals of stochastic
step ``i`` are stream ``i + 1``, so a chunk sees exactly the noise the whole-signal run sees
at the same samples. When ``overlap_frames * hop`` covers the network's receptive field
times the number of network evaluations, the kept centres equal the whole-signal run up to
float rounding (tested). With less context (the default 32 frames is 8192 samples at hop
256) the pieces still join without a click in practice (measured in docs/RESULTS.md)
because the denoiser is local and the noise is continuous across the joins.
"""

from __future__ import annotations

from typing import Callable

import torch

from wavegen.diffusion.samplers import Denoiser
from wavegen.inference.chunked_noise import NOISE_BLOCK, PositionalNoise, render_chunked


def sample_chunked(sample: Callable[..., torch.Tensor],
                   make_denoiser: Callable[[torch.Tensor], Denoiser],
                   local: torch.Tensor, hop: int, seed: int, *,
                   chunk_frames: int, overlap_frames: int,
                   sink: Callable[[torch.Tensor], None] | None = None,
                   device: torch.device | str = "cpu",
                   on_chunk: Callable[[int, int], None] | None = None) -> tuple[torch.Tensor, float]:
    """Audio for ``local`` ``[B, C, F]`` (``F * hop`` samples), a chunk at a time.

    Args:
        sample: runs the sampler: ``sample(denoise, shape, noise=..., step_noise=...,
            device=...) -> [B, 1, T]`` (e.g. :meth:`DiffusionProcess.sample` with the run's
            sampler settings bound).
        make_denoiser: ``local window [B, C, f] -> denoise(x_t, t)`` for that window.
        local: the whole conditioning (may stay on the CPU; windows are moved to ``device``).
        hop: audio samples per conditioning frame.
        seed: seeds the positional noise.
        chunk_frames, overlap_frames: frames kept per chunk and context frames on each side.
        sink: receives each piece ``[B, 1, n]`` (float32, CPU, clamped to [-1, 1]) in order;
            without one the pieces are concatenated and returned.
        on_chunk: called with ``(chunk index, number of chunks)`` after each chunk.

    Returns:
        ``(audio [B, 1, F * hop] or [B, 1, 0] with a sink, seconds spent sampling)``.
    """
    def render(window: torch.Tensor, noise: Callable[[int], torch.Tensor]) -> torch.Tensor:
        return sample(make_denoiser(window), (window.shape[0], 1, window.shape[-1] * hop),
                      noise=noise(0), step_noise=lambda i: noise(i + 1), device=device)

    return render_chunked(render, local, hop, seed, chunk_frames=chunk_frames,
                          overlap_frames=overlap_frames, sink=sink, device=device,
                          on_chunk=on_chunk)


__all__ = ["NOISE_BLOCK", "PositionalNoise", "sample_chunked"]
