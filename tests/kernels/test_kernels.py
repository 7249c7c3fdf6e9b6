"""The sampling-backend layer: registry, `auto` with its fallback, the fast-session driver."""

from __future__ import annotations

import pytest
import torch

import wavegen.kernels as kernels
from wavegen.errors import KernelUnavailableError, UsageError
from wavegen.kernels.base import Backend, ConditioningStream
from wavegen.kernels.reference import ReferenceSession
from wavegen.models.wavenet import WaveNet, WaveNetConfig
from wavegen.sampling import SamplingOptions, draw_uniforms, generate
from wavegen.sampling.autoregressive import _generate_fast


def tiny(head="categorical", conditioned=True):
    torch.manual_seed(0)
    extra = dict(local_channels=5, hop_length=8, upsample_factors=(2, 4), global_classes=3,
                 global_dim=4) if conditioned else {}
    return WaveNet(WaveNetConfig(layers=3, stacks=2, residual_channels=16, gate_channels=16,
                                 skip_channels=32, head=head, **extra)).eval()


@pytest.mark.parametrize("head", ["categorical", "mol"])
def test_the_fast_driver_reproduces_the_reference_loop(head):
    """Samples and diagnostics through a session equal the reference loop's (here with the
    reference session, so any backend's differences are its own)."""
    model = tiny(head)
    local, g = torch.randn(2, 5, 45), torch.tensor([0, 2])
    prompt = torch.rand(2, 1, 100) - 0.5
    uniforms = draw_uniforms(2, 260, model.head.num_uniforms, 0)  # entropy at steps 0, 256
    ref = generate(model, local=local, global_cond=g, prompt=prompt, uniforms=uniforms)
    targets = model.targets_from_waveform(prompt)
    session = ReferenceSession(model, 2, 360, local, g, targets)
    fast = _generate_fast(model, session, targets[:, -1], uniforms, SamplingOptions(), local,
                          g, targets)
    assert torch.equal(ref.samples, fast.samples)
    torch.testing.assert_close(fast.mean_nll, ref.mean_nll, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(fast.mean_entropy, ref.mean_entropy, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(fast.audio, ref.audio)


def test_conditioning_chunks_equal_the_full_projection(monkeypatch):
    model = tiny()
    local, g = torch.randn(2, 5, 10), torch.tensor([1, 0])
    full_local, full_global = model.conditioning(80, 2, local, g)
    monkeypatch.setattr("wavegen.kernels.base.CONDITIONING_CHUNK_BYTES", 1)
    stream = ConditioningStream(model, 2, 80, local, g)
    assert stream.chunk_length() == 64
    pieces = torch.cat([stream.chunk(t, min(t + 7, 80)) for t in range(0, 80, 7)], dim=1)
    expected = (full_local + full_global[..., None]).transpose(1, 2)
    torch.testing.assert_close(pieces, expected)
    assert ConditioningStream(tiny(conditioned=False), 2, 80, None, None).chunk(0, 5) is None


class _Broken(Backend):
    name = "cpu"
    priority = {"cpu": 10}

    def supports(self, model):
        return None

    def unavailable(self, device):
        return None

    def session(self, *args, **kwargs):
        raise KernelUnavailableError("the compiler failed: cc: error: nothing")


def test_auto_falls_back_to_reference_with_a_one_line_notice(monkeypatch):
    model = tiny(conditioned=False)
    monkeypatch.setitem(kernels._instances, "cpu", _Broken())
    notes = []
    name, session = kernels.open_session("auto", model, 1, 10, None, None, None,
                                         notice=notes.append)
    assert name == "reference" and isinstance(session, ReferenceSession)
    assert len(notes) == 1 and "\n" not in notes[0] and "compiler failed" in notes[0]
    # Through generate: the same audio as asking for the reference.
    uniforms = draw_uniforms(1, 30, 1, 0)
    a = generate(model, 30, uniforms=uniforms, backend="auto")
    b = generate(model, 30, uniforms=uniforms, backend="reference")
    assert torch.equal(a.samples, b.samples)


def test_a_disabled_backend_is_skipped_by_auto_and_refused_by_name(monkeypatch, capsys):
    model = tiny(conditioned=False)
    monkeypatch.setenv("WAVEGEN_DISABLE_BACKENDS", "cpu")
    assert kernels.availability("cpu")["cpu"] == "disabled"
    name, _ = kernels.open_session("auto", model, 1, 10, None, None, None)
    assert name == "reference"
    assert "cpu: disabled" in capsys.readouterr().err
    with pytest.raises(KernelUnavailableError, match="cpu"):
        kernels.open_session("cpu", model, 1, 10, None, None, None)


def test_options_only_the_reference_implements_keep_auto_on_reference(capsys):
    model = tiny(conditioned=False)
    assert kernels.why_not("cpu", model, SamplingOptions(top_p=0.9)) is not None
    assert kernels.why_not("reference", model, SamplingOptions(top_p=0.9)) is None
    uniforms = draw_uniforms(1, 20, 1, 0)
    a = generate(model, 20, uniforms=uniforms, options=SamplingOptions(top_p=0.9), backend="auto")
    b = generate(model, 20, uniforms=uniforms, options=SamplingOptions(top_p=0.9))
    assert torch.equal(a.samples, b.samples)


def test_unknown_backends_are_usage_errors():
    with pytest.raises(UsageError, match="unknown sampling backend"):
        kernels.get_backend("warp-drive")


def test_gpu_backends_never_run_on_the_cpu():
    for name in ("cudagraph", "cuda"):
        assert kernels.availability("cpu")[name] is not None
    assert all(kernels.get_backend(n).priority.get("cpu", -1) < 0
               for n in ("cudagraph", "cuda", "triton"))


def test_a_backend_refuses_a_model_it_does_not_support_before_building_anything():
    gaussian = tiny("gaussian", conditioned=False)
    assert "Gaussian" in kernels.get_backend("cpu").supports(gaussian)
    with pytest.raises(KernelUnavailableError, match="cpu backend: the Gaussian head"):
        kernels.get_backend("cpu").session(gaussian, 1, 10, None, None, None)
    with pytest.raises(KernelUnavailableError, match="'cpu' cannot run here: the Gaussian"):
        generate(gaussian, 10, backend="cpu")


def test_the_reference_session_builds_the_model_state_only_when_stepped(monkeypatch):
    model = tiny(conditioned=False)
    calls = []
    start = model.start
    monkeypatch.setattr(model, "start", lambda *a, **k: calls.append(1) or start(*a, **k))
    session = ReferenceSession(model, 1, 10, None, None, None)
    assert calls == []
    session.step_params(torch.full((1,), model.silence_input()))
    session.step_params(torch.full((1,), model.silence_input()))
    assert calls == [1] and session.time == 2
