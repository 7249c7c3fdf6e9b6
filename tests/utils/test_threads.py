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


def test_step_threads_narrows_one_item_and_busy_machines_on_the_cpu(monkeypatch):
    fake_machine(monkeypatch, 2, [2] * 3, own_runnable=2)  # quiet
    with torch_threads(2):
        assert step_threads(1, torch.device("cpu")) == 1
        assert step_threads(2, torch.device("cpu")) == 2
        fake_machine(monkeypatch, 2, [3] * 3, own_runnable=2)  # one busy competitor
        assert step_threads(2, torch.device("cpu")) == 1
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
    fake_machine(monkeypatch, 2, [2] * 99, own_runnable=2)  # quiet, whatever else runs now
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


# --------------------------------------------------------------------------- busy machines
def fake_machine(monkeypatch, cores, total_runnable, own_runnable):
    """A machine with ``cores`` usable CPUs and the given runnable-thread readings."""
    import wavegen.utils.threads as threads

    monkeypatch.setattr(threads, "_reading", None)
    monkeypatch.setattr(threads, "usable_cores", lambda: cores)
    readings = iter(total_runnable)
    monkeypatch.setattr(threads, "_runnable_threads", lambda: next(readings))
    monkeypatch.setattr(threads, "_own_runnable_threads", lambda: own_runnable)
    monkeypatch.delenv("WAVEGEN_FIXED_THREADS", raising=False)
    return threads


def test_free_threads_leaves_a_core_to_each_busy_process(monkeypatch):
    threads = fake_machine(monkeypatch, 2, [3, 3, 3], own_runnable=2)  # one competitor
    assert threads.competing_threads() == 1
    threads = fake_machine(monkeypatch, 2, [3, 3, 3], own_runnable=2)
    assert threads.free_threads(2) == 1
    threads = fake_machine(monkeypatch, 4, [3, 3, 3], own_runnable=2)
    assert threads.free_threads(4) == 3
    threads = fake_machine(monkeypatch, 2, [9, 9, 9], own_runnable=1)  # overloaded: still 1
    assert threads.free_threads(2) == 1


def test_free_threads_changes_nothing_on_a_quiet_machine(monkeypatch):
    # A momentary extra runnable thread (one reading of three) is not a competitor.
    threads = fake_machine(monkeypatch, 2, [2, 4, 2], own_runnable=2)
    assert threads.free_threads(2) == 2
    threads = fake_machine(monkeypatch, 8, [2, 2, 2], own_runnable=2)
    assert threads.free_threads(3) == 3  # never more than asked for


def test_free_threads_reuses_a_recent_reading_and_can_be_switched_off(monkeypatch):
    threads = fake_machine(monkeypatch, 2, [3, 3, 3], own_runnable=2)
    assert threads.free_threads(2) == 1
    # Within LOAD_CACHE_SECONDS the machine is not read again (the fake has no readings left).
    assert threads.free_threads(2) == 1
    monkeypatch.setenv("WAVEGEN_FIXED_THREADS", "1")
    assert threads.free_threads(2) == 2


def test_without_proc_the_requested_count_stands(monkeypatch):
    threads = fake_machine(monkeypatch, 2, [None, None, None], own_runnable=0)
    assert threads.competing_threads() is None
    threads = fake_machine(monkeypatch, 2, [None, None, None], own_runnable=0)
    assert threads.free_threads(2) == 2


def test_the_heavy_cpu_paths_run_on_the_free_threads(monkeypatch):
    """Log-mel, Griffin-Lim and vocoder chunks run under shared_machine_threads: on a
    machine with a busy competitor they use one thread fewer (and restore the count)."""
    from wavegen.audio.features import get_preset
    from wavegen.audio.griffinlim import griffin_lim
    from wavegen.audio.spectral import LogMelSpectrogram

    threads = fake_machine(monkeypatch, 2, [3] * 30, own_runnable=2)
    monkeypatch.setattr(threads, "LOAD_CACHE_SECONDS", 0.0)
    seen = []
    real_rfft = torch.fft.rfft

    def recording_rfft(*args, **kwargs):
        seen.append(torch.get_num_threads())
        return real_rfft(*args, **kwargs)

    config = get_preset("hifigan-22k")
    with torch_threads(2):
        monkeypatch.setattr(torch.fft, "rfft", recording_rfft)
        with torch.no_grad():
            LogMelSpectrogram(config)(torch.zeros(1, 1, 4096))
        monkeypatch.undo()
        assert seen and set(seen) == {1}
        threads = fake_machine(monkeypatch, 2, [3] * 30, own_runnable=2)
        monkeypatch.setattr(threads, "LOAD_CACHE_SECONDS", 0.0)
        inside = []
        import wavegen.audio.griffinlim as gl

        real = gl._griffin_lim
        monkeypatch.setattr(gl, "_griffin_lim",
                            lambda *a: inside.append(torch.get_num_threads()) or real(*a))
        griffin_lim(torch.ones(config.n_freq, 4), config, n_iter=1)
        assert inside == [1] and torch.get_num_threads() == 2
