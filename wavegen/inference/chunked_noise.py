"""Noise-driven synthesis in overlapping chunks, with noise tied to sample positions.

A noise-driven vocoder (a flow, a diffusion model) run over a whole minute of mel holds every
layer's activations for every sample at once. :func:`render_chunked` instead renders
``chunk_frames`` conditioning frames at a time, each extended by ``overlap_frames`` of real
context on both sides, and keeps only the chunk's centre, as :class:`wavegen.vocoder.Vocoder`
does for the GAN generators; memory is that of one chunk whatever the length, and each piece
can go to a sink (a file writer) as soon as it is made.

The noise is what makes this sound. Every random draw comes from :class:`PositionalNoise`:
the normals of sample ``n`` on "stream" ``s`` are a function of ``(seed, s, n)`` only, drawn
in fixed blocks of :data:`NOISE_BLOCK` samples. A chunk therefore sees exactly the noise the
whole-signal run sees at the same samples, and the only difference between chunked and whole
is what lies beyond the context: when ``overlap_frames * hop`` covers the model's receptive
field, the kept centres equal the whole-signal run up to float rounding. Users:
:func:`wavegen.diffusion.chunked.sample_chunked` (stream 0 = the initial noise, ``i + 1`` =
step ``i``) and the flow adapter (stream 0 = the latent).
"""

from __future__ import annotations

import time
from typing import Callable

import torch

from wavegen.errors import UsageError
from wavegen.utils.threads import shared_machine_threads

#: Samples per independently seeded block of positional noise.
NOISE_BLOCK = 4096
_MIX = (0x9E3779B97F4A7C15, 0xBF58476D1CE4E5B9, 0x94D049BB133111EB)


def _block_seed(seed: int, stream: int, block: int) -> int:
    """A 63-bit seed from ``(seed, stream, block)`` (splitmix64-style mixing)."""
    z = (seed * _MIX[0] + stream * _MIX[1] + block * _MIX[2] + 1) & 0xFFFFFFFFFFFFFFFF
    z = ((z ^ (z >> 30)) * _MIX[1]) & 0xFFFFFFFFFFFFFFFF
    z = ((z ^ (z >> 27)) * _MIX[2]) & 0xFFFFFFFFFFFFFFFF
    return (z ^ (z >> 31)) & 0x7FFFFFFFFFFFFFFF


class PositionalNoise:
    """Standard normals ``[B, 1, n]`` indexed by stream and sample position.

    Args:
        seed: the run's seed.
        batch: rows (each row its own noise).
        block: samples per seeded block (:data:`NOISE_BLOCK`).
    """

    def __init__(self, seed: int, batch: int, block: int = NOISE_BLOCK):
        if block < 1:
            raise UsageError(f"noise block must be >= 1 samples, got {block}")
        self.seed, self.batch, self.block = int(seed), int(batch), int(block)

    def _block(self, stream: int, index: int) -> torch.Tensor:
        generator = torch.Generator().manual_seed(_block_seed(self.seed, stream, index))
        return torch.randn(self.batch, 1, self.block, generator=generator)

    def window(self, stream: int, start: int, stop: int) -> torch.Tensor:
        """The normals of samples ``start .. stop - 1`` on ``stream``, ``[B, 1, stop - start]``."""
        if not 0 <= start <= stop:
            raise UsageError(f"bad noise window {start}..{stop}")
        first, last = start // self.block, (stop - 1) // self.block if stop > start else -1
        pieces = [self._block(stream, b) for b in range(first, last + 1)]
        if not pieces:
            return torch.zeros(self.batch, 1, 0)
        joined = torch.cat(pieces, dim=-1)
        offset = start - first * self.block
        return joined[..., offset:offset + stop - start]



#: ``render(window [B, C, f] on the device, noise(stream) -> [B, 1, f * hop] normals of the
#: window's samples) -> audio [B, 1, f * hop]``.
Render = Callable[[torch.Tensor, Callable[[int], torch.Tensor]], torch.Tensor]


def render_chunked(render: Render, local: torch.Tensor, hop: int, seed: int, *,
                   chunk_frames: int, overlap_frames: int,
                   sink: Callable[[torch.Tensor], None] | None = None,
                   device: torch.device | str = "cpu",
                   on_chunk: Callable[[int, int], None] | None = None
                   ) -> tuple[torch.Tensor, float]:
    """Audio for ``local`` ``[B, C, F]`` (``F * hop`` samples), a chunk at a time.

    Args:
        render: makes one window's audio from its conditioning and its positional noise
            (:data:`Render`).
        local: the whole conditioning (may stay on the CPU; windows are moved to ``device``).
        hop: audio samples per conditioning frame.
        seed: seeds the positional noise.
        chunk_frames, overlap_frames: frames kept per chunk and context frames on each side.
        sink: receives each piece ``[B, 1, n]`` (float32, CPU, clamped to [-1, 1]) in order;
            without one the pieces are concatenated and returned.
        on_chunk: called with ``(chunk index, number of chunks)`` after each chunk.

    Returns:
        ``(audio [B, 1, F * hop] or [B, 1, 0] with a sink, seconds spent rendering)``.
    """
    if chunk_frames < 1 or overlap_frames < 0:
        raise UsageError("chunk_frames must be >= 1 and overlap_frames >= 0")
    if local.ndim != 3 or local.shape[-1] < 1:
        raise UsageError(f"conditioning must be [B, C, frames] with frames >= 1, "
                         f"got {list(local.shape)}")
    batch, frames = local.shape[0], local.shape[-1]
    noise = PositionalNoise(seed, batch)
    starts = list(range(0, frames, chunk_frames))
    pieces, seconds = [], 0.0
    for index, start in enumerate(starts):
        stop = min(start + chunk_frames, frames)
        lo, hi = max(0, start - overlap_frames), min(frames, stop + overlap_frames)
        a, b = lo * hop, hi * hop
        window = local[..., lo:hi].to(device, torch.float32)
        began = time.perf_counter()
        with shared_machine_threads(device):  # fewer threads on a busy CPU
            audio = render(window, lambda stream, a=a, b=b: noise.window(stream, a, b))
        if torch.device(device).type == "cuda":
            torch.cuda.synchronize(device)
        seconds += time.perf_counter() - began
        piece = audio[..., (start - lo) * hop:(stop - lo) * hop].float().clamp(-1.0, 1.0).cpu()
        if sink is None:
            pieces.append(piece)
        else:
            sink(piece)
        if on_chunk is not None:
            on_chunk(index, len(starts))
    if sink is not None:
        return torch.zeros(batch, 1, 0), seconds
    return torch.cat(pieces, dim=-1), seconds


__all__ = ["NOISE_BLOCK", "PositionalNoise", "Render", "render_chunked"]
