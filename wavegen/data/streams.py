"""Consecutive chunks of long contiguous crops: the data side of truncated BPTT.

A recurrent model trained with truncated backpropagation through time (SampleRNN) needs
each batch lane to see one long contiguous stream of audio, a chunk per optimiser step, with
its hidden state carried from chunk to chunk. :class:`StreamChunks` turns any dataset whose
items are long crops (``stream_chunks * crop`` samples, drawn deterministically per
``(seed, epoch, index)`` as every wavegen dataset does) into items that are those crops' consecutive
chunks::

    item s * K + j  =  chunk j (samples [j L, (j + 1) L)) of stream s,  K = chunks, L = crop

with ``"chunk"`` (``j``) and ``"stream"`` (``s``) added to the item, so the task knows when a
stream starts (reset the state) and which carried state a lane continues.
:class:`~wavegen.train.data_plan.StreamPlan` then orders the items so lane ``b`` of step
``g K + j`` reads chunk ``j`` of the ``b``-th stream of group ``g``. A stream never crosses a
file boundary (it is one crop of one file), so a reset at chunk 0 is a reset at every file
boundary.

Frame-rate entries (``mel``, ``roll``: last dimension ``K L / hop``) are cut at the same
boundaries; anything else (a label) is passed through.
"""

from __future__ import annotations

from collections import OrderedDict

import torch
from torch.utils.data import Dataset

from wavegen.errors import ConfigError


class StreamChunks(Dataset):
    """Items ``s * chunks + j`` = chunk ``j`` of item ``s`` of ``streams`` (module docstring).

    Args:
        streams: a dataset of long items (``"audio"`` ``[1, chunks * L]``, frame-rate entries
            ``[C, chunks * L / hop]``).
        chunks: ``K``, consecutive chunks per stream (>= 1).
        hop: samples per frame of the frame-rate entries (None: there are none).
        cache_items: long items kept in memory (a step reads one chunk of each lane's
            stream, and the next step the next chunk of the same streams).
    """

    def __init__(self, streams: Dataset, chunks: int, hop: int | None = None,
                 cache_items: int = 256):
        if chunks < 1:
            raise ConfigError(f"stream chunks must be >= 1, got {chunks}")
        self.streams, self.chunks, self.hop = streams, chunks, hop
        self.cache_items = cache_items
        self._cache: OrderedDict[tuple[int, int], dict] = OrderedDict()
        self._epoch = 0

    def __len__(self) -> int:
        return len(self.streams) * self.chunks

    def set_epoch(self, epoch: int) -> None:
        self._epoch = epoch
        if hasattr(self.streams, "set_epoch"):
            self.streams.set_epoch(epoch)

    def _stream(self, index: int) -> dict:
        key = (self._epoch, index)
        if key in self._cache:
            self._cache.move_to_end(key)
            return self._cache[key]
        item = self.streams[index]
        self._cache[key] = item
        while len(self._cache) > self.cache_items:
            self._cache.popitem(last=False)
        return item

    def __getitem__(self, index: int) -> dict:
        stream, chunk = divmod(int(index), self.chunks)
        item = self._stream(stream)
        audio = item["audio"]
        total = audio.shape[-1]
        if total % self.chunks:
            raise ConfigError(f"a stream of {total} samples does not split into {self.chunks} "
                              f"chunks")
        length = total // self.chunks
        frames = None
        if self.hop is not None:
            if length % self.hop:
                raise ConfigError(f"stream chunks of {length} samples are not whole frames of "
                                  f"{self.hop}")
            frames = length // self.hop
        out = {}
        for key, value in item.items():
            if key == "audio":
                out[key] = value[..., chunk * length:(chunk + 1) * length]
            elif (frames is not None and isinstance(value, torch.Tensor) and value.ndim >= 1
                  and value.shape[-1] == frames * self.chunks):
                out[key] = value[..., chunk * frames:(chunk + 1) * frames]
            else:
                out[key] = value
        out["chunk"] = torch.tensor(chunk)
        out["stream"] = torch.tensor(stream)
        return out


__all__ = ["StreamChunks"]
