"""StreamChunks: long items cut into consecutive chunks for truncated BPTT."""

from __future__ import annotations

import pytest
import torch

from wavegen.audio.features import FeatureConfig
from wavegen.data.streams import StreamChunks
from wavegen.data.synthetic import ToneDataset
from wavegen.errors import ConfigError


class LongItems(torch.utils.data.Dataset):
    """Items ``{"audio": [1, T], "roll": [C, T / hop], "label": int}`` that depend on
    ``(epoch, index)``; counts its reads and records ``set_epoch``."""

    def __init__(self, size: int = 5, samples: int = 96, hop: int = 8, channels: int = 3):
        self.size, self.samples, self.hop, self.channels = size, samples, hop, channels
        self.epoch, self.reads, self.epochs = 0, 0, []

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch
        self.epochs.append(epoch)

    def __len__(self) -> int:
        return self.size

    def __getitem__(self, index: int) -> dict:
        self.reads += 1
        g = torch.Generator().manual_seed(1000 * self.epoch + index)
        frames = self.samples // self.hop if self.samples % self.hop == 0 else 1
        return {"audio": torch.rand(1, self.samples, generator=g),
                "roll": torch.rand(self.channels, frames, generator=g),
                "label": torch.tensor(index % 2),
                "name": f"item-{index}"}


def test_the_chunks_of_a_stream_joined_are_the_stream(one_thread):
    base = LongItems()
    chunks = StreamChunks(base, 4, hop=8)
    assert len(chunks) == 5 * 4 and chunks.chunks == 4
    for s in range(len(base)):
        whole = base[s]
        parts = [chunks[s * 4 + j] for j in range(4)]
        for j, part in enumerate(parts):
            assert part["audio"].shape == (1, 24) and part["roll"].shape == (3, 3)
            assert part["chunk"].item() == j and part["stream"].item() == s
            assert part["chunk"].dtype == part["stream"].dtype == torch.int64
            assert torch.equal(part["label"], whole["label"]) and part["name"] == whole["name"]
            assert part.keys() == whole.keys() | {"chunk", "stream"}
        assert torch.equal(torch.cat([p["audio"] for p in parts], -1), whole["audio"])
        assert torch.equal(torch.cat([p["roll"] for p in parts], -1), whole["roll"])


def test_mel_frames_of_a_tone_stream_are_cut_at_the_chunk_boundaries(one_thread):
    features = FeatureConfig(sample_rate=8000, n_fft=128, hop_length=32, win_length=128,
                             n_mels=10, fmax=None, padding="hop_aligned")
    base = ToneDataset(3, 8000, 4 * 256, features, seed=1)
    chunks = StreamChunks(base, 4, hop=32)
    whole = base[2]
    assert whole["mel"].shape == (10, 32)
    parts = [chunks[2 * 4 + j] for j in range(4)]
    assert all(p["mel"].shape == (10, 8) and p["audio"].shape == (1, 256) for p in parts)
    assert torch.equal(torch.cat([p["mel"] for p in parts], -1), whole["mel"])
    assert torch.equal(torch.cat([p["audio"] for p in parts], -1), whole["audio"])


def test_one_chunk_per_stream_is_the_item_itself(one_thread):
    base = LongItems(samples=32)
    item, whole = StreamChunks(base, 1, hop=8)[3], base[3]
    assert torch.equal(item["audio"], whole["audio"]) and torch.equal(item["roll"], whole["roll"])
    assert item["chunk"].item() == 0 and item["stream"].item() == 3


@pytest.mark.parametrize("samples,chunks,hop,word", [
    (90, 4, None, "does not split into 4 chunks"),   # 90 samples, 4 chunks
    (96, 4, 16, "not whole frames of 16"),            # chunks of 24 samples, hop 16
    (96, 0, None, "must be >= 1"),
])
def test_streams_that_do_not_split_are_one_line_config_errors(samples, chunks, hop, word):
    with pytest.raises(ConfigError, match=word) as info:
        StreamChunks(LongItems(samples=samples, hop=hop or 8), chunks, hop=hop)[0]
    assert "\n" not in str(info.value)


def test_set_epoch_passes_through_and_changes_the_streams(one_thread):
    base = LongItems()
    chunks = StreamChunks(base, 4, hop=8)
    first = chunks[6]["audio"]
    chunks.set_epoch(3)
    assert base.epochs == [3] and base.epoch == 3
    later = chunks[6]["audio"]
    assert not torch.equal(first, later)
    assert torch.equal(later, base[1]["audio"][..., 2 * 24:3 * 24])
    chunks.set_epoch(0)  # back to epoch 0: the same stream as before
    assert torch.equal(chunks[6]["audio"], first)
    # a dataset without set_epoch is fine too
    StreamChunks([{"audio": torch.zeros(1, 8)}], 2).set_epoch(1)


def test_the_item_cache_reads_each_stream_once_and_returns_identical_tensors(one_thread):
    base = LongItems()
    chunks = StreamChunks(base, 4, hop=8, cache_items=2)
    a = [chunks[4 + j] for j in range(4)]
    assert base.reads == 1  # four chunks of stream 1, one read
    b = [chunks[4 + j] for j in range(4)]
    assert base.reads == 1
    for x, y in zip(a, b):
        for key in ("audio", "roll", "label", "chunk", "stream"):
            assert torch.equal(x[key], y[key]), key
    chunks[0], chunks[8]  # streams 0 and 2 push stream 1 out of a 2-item cache
    assert base.reads == 3
    again = chunks[5]
    assert base.reads == 4 and torch.equal(again["audio"], a[1]["audio"])
    chunks.set_epoch(1)  # another epoch is another stream, read afresh
    chunks[5]
    assert base.reads == 5
