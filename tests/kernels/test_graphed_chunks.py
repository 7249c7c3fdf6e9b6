"""kernels.base.GraphedChunks' warm-up / capture / replay sequencing, on the CPU.

The real CUDA graph API is replaced by recording fakes, so the bookkeeping the cudagraph and
triton sessions rely on is checked without a GPU: per key (temperature), the first chunk runs
eagerly on a side stream, the second is captured and then replayed (capture itself runs
nothing), later ones only replay; a failed capture disables graphs and runs eagerly.
"""

from __future__ import annotations

import contextlib

import pytest
import torch

from wavegen.kernels import base


class FakeCuda:
    """Records what GraphedChunks asks of torch.cuda; 'capturing' suppresses execution."""

    def __init__(self, fail_capture: bool = False):
        self.log: list[str] = []
        self.capturing = False
        self.fail_capture = fail_capture
        fake = self

        class Graph:
            def __init__(self):
                self.recorded = None

            def replay(self):
                fake.log.append("replay")
                self.recorded()

        class Stream:
            def __init__(self, device=None):
                self.name = "side"

            def wait_stream(self, other):
                fake.log.append(f"{self.name} waits {other.name}")

        class Current(Stream):
            def __init__(self):
                self.name = "main"

        self.Graph, self.Stream, self.current = Graph, Stream, Current()

    def graph(self, graph):
        fake = self

        @contextlib.contextmanager
        def capture():
            fake.log.append("capture")
            fake.capturing = True
            fake.pending = graph
            try:
                if fake.fail_capture:
                    raise RuntimeError("operation not permitted when stream is capturing")
                yield
            finally:
                fake.capturing = False
        return capture()

    def stream(self, stream):
        return contextlib.nullcontext()

    def install(self, monkeypatch):
        monkeypatch.setattr(torch.cuda, "CUDAGraph", self.Graph)
        monkeypatch.setattr(torch.cuda, "graph", self.graph)
        monkeypatch.setattr(torch.cuda, "Stream", self.Stream)
        monkeypatch.setattr(torch.cuda, "stream", self.stream)
        monkeypatch.setattr(torch.cuda, "current_stream", lambda device=None: self.current)


def make_steps(fake: FakeCuda, runs: list[float], key: float):
    def steps():
        if fake.capturing:  # a captured launch is recorded, not executed
            fake.pending.recorded = lambda: runs.append(key)
            return
        runs.append(key)
    return steps


def test_warm_up_then_capture_then_replay_per_key(monkeypatch):
    fake = FakeCuda()
    fake.install(monkeypatch)
    chunks = base.GraphedChunks(torch.device("cpu"), batch=2, length=4)
    runs: list[float] = []
    for key in (1.0, 1.0, 1.0, 0.5, 0.5, 1.0):
        chunks.run(key, make_steps(fake, runs, key))
    # Every call ran its chunk exactly once, in order, whatever path it took.
    assert runs == [1.0, 1.0, 1.0, 0.5, 0.5, 1.0]
    assert chunks.enabled
    assert fake.log == [
        "side waits main", "main waits side",  # key 1.0: eager warm-up on a side stream
        "capture", "replay",                    # key 1.0: captured, then replayed
        "replay",                               # key 1.0: replay only
        "side waits main", "main waits side",  # key 0.5: its own warm-up
        "capture", "replay",
        "replay",                               # key 1.0's graph is still there
    ]


def test_a_failed_capture_disables_graphs_and_runs_eagerly(monkeypatch):
    fake = FakeCuda(fail_capture=True)
    fake.install(monkeypatch)
    chunks = base.GraphedChunks(torch.device("cpu"), batch=1, length=3)
    runs: list[float] = []
    chunks.run(1.0, make_steps(fake, runs, 1.0))
    chunks.run(1.0, make_steps(fake, runs, 1.0))
    assert runs == [1.0, 1.0]
    assert not chunks.enabled
    assert "replay" not in fake.log


def test_stage_copies_inputs_into_stable_buffers():
    chunks = base.GraphedChunks(torch.device("cpu"), batch=2, length=4)
    first = chunks.stage(torch.rand(2, 4, 3), torch.rand(2, 4, 5), torch.int64)
    pointers = {k: v.data_ptr() for k, v in first.items()}
    uniforms, cond = torch.rand(2, 4, 3), torch.rand(2, 4, 5)
    second = chunks.stage(uniforms, cond, torch.int64)
    assert {k: v.data_ptr() for k, v in second.items()} == pointers  # graphs read these
    assert torch.equal(second["uniforms"], uniforms) and torch.equal(second["cond"], cond)
    assert second["out"].shape == (2, 4) and second["out"].dtype == torch.int64
    with pytest.raises(RuntimeError):
        chunks.stage(torch.rand(2, 5, 3), cond, torch.int64)  # a chunk of another size
