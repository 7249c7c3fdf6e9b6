"""Run-time thread counts: the reference sampling loop runs single-threaded at batch 1."""

from __future__ import annotations

import torch

from wavegen.models.wavenet import WaveNet, WaveNetConfig
from wavegen.sampling import draw_uniforms, generate
from wavegen.utils.threads import step_threads, torch_threads


def test_torch_threads_sets_and_restores():
    before = torch.get_num_threads()
    with torch_threads(1):
        assert torch.get_num_threads() == 1
    assert torch.get_num_threads() == before
    with torch_threads(None):
        assert torch.get_num_threads() == before
    try:
        with torch_threads(1):
            raise KeyError("inside")
    except KeyError:
        pass
    assert torch.get_num_threads() == before


def test_step_threads_only_narrows_one_item_on_the_cpu():
    assert step_threads(1, torch.device("cpu")) == 1
    assert step_threads(2, torch.device("cpu")) is None
    assert step_threads(1, torch.device("cuda")) is None


def test_the_reference_loop_steps_on_one_thread_at_batch_1_and_restores(monkeypatch):
    torch.manual_seed(0)
    model = WaveNet(WaveNetConfig(layers=2, stacks=1, residual_channels=8, gate_channels=8,
                                  skip_channels=8)).eval()
    seen = []
    step = model.step

    def recording_step(*args, **kwargs):
        seen.append(torch.get_num_threads())
        return step(*args, **kwargs)

    monkeypatch.setattr(model, "step", recording_step)
    before = torch.get_num_threads()
    with torch_threads(2):
        one = generate(model, 5, uniforms=draw_uniforms(1, 5, 1, 0))
        assert torch.get_num_threads() == 2
        assert set(seen) == {1}
        seen.clear()
        generate(model, 5, batch=2, uniforms=draw_uniforms(2, 5, 1, 0))
        assert set(seen) == {2}
        # The same samples whatever the thread count.
        with torch_threads(1):
            again = generate(model, 5, uniforms=draw_uniforms(1, 5, 1, 0))
    assert torch.equal(one.samples, again.samples)
    assert torch.get_num_threads() == before
