"""The ``cpu`` sampling backend (fused C step) against the reference per-layer step.

Head parameters agree to 1e-4 relative; samples drawn from the same uniforms are identical
for the categorical head. The 16-bit mixture-of-logistics grid is a special case: float32
parameters that differ in the last bits (two summation orders) move a continuous draw
across one of 65536 bin edges for ~0.1% of draws, so free-running generation is compared
exactly on a coarser grid (256 bins, same code path), and on the 16-bit grid step by step
(teacher-forced), where a draw may differ by one bin at most, and rarely.
"""

from __future__ import annotations

import ctypes

import pytest
import torch

import wavegen.kernels
import wavegen.kernels.base as kernels_base
from wavegen.errors import KernelUnavailableError
from wavegen.kernels.cpu import CPUBackend, CPUSession, _Model, load_library
from wavegen.kernels.reference import ReferenceSession
from wavegen.models.wavenet import WaveNet, WaveNetConfig
from wavegen.nn.distributions import DiscretizedMixtureOfLogistics
from wavegen.sampling import Draw, SamplingOptions

HOP = 16
CONDITIONING = {
    "none": {},
    "local": {"local_channels": 5, "hop_length": HOP, "upsample_factors": (4, 4)},
    "local+global": {"local_channels": 5, "hop_length": HOP, "upsample_factors": (4, 4),
                     "global_classes": 3, "global_dim": 4},
}
# (kernel, residual, gate, skip, conditioning): every value of each axis meets every value
# of the others at least once across the two heads; the last row has sizes that are not
# multiples of any vector width (the tail paths).
SHAPES = [
    (2, 32, 32, 128, "local+global"),
    (3, 64, 48, 256, "local"),
    (2, 64, 64, 256, "none"),
    (3, 32, 40, 128, "none"),
    (2, 32, 64, 256, "local"),
    (3, 64, 32, 128, "local+global"),
    (3, 20, 36, 72, "local+global"),
]
HEADS = ["categorical", "mol"]
CASES = [pytest.param(head, *shape, id=f"{head}-k{shape[0]}-r{shape[1]}-g{shape[2]}-"
                      f"s{shape[3]}-{shape[4]}") for head in HEADS for shape in SHAPES]


@pytest.fixture(scope="module", autouse=True)
def kernel_cache(tmp_path_factory):
    """One cache (and one compile) for the whole module; torch on one thread, since the
    reference's tiny per-layer ops only wait for each other on two (and a shared machine
    can stretch each wait to a scheduler tick)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with pytest.MonkeyPatch.context() as mp:
            mp.setenv("WAVEGEN_KERNEL_CACHE", str(tmp_path_factory.mktemp("kernels")))
            load_library()
            yield
    finally:
        torch.set_num_threads(threads)


def make_model(head, kernel_size, residual, gate, skip, conditioning, bins=None, seed=0):
    torch.manual_seed(seed)
    config = WaveNetConfig(layers=3, stacks=2, kernel_size=kernel_size,
                           residual_channels=residual, gate_channels=gate, skip_channels=skip,
                           head=head, num_classes=256, num_mixtures=10,
                           **CONDITIONING[conditioning])
    model = WaveNet(config).eval()
    with torch.no_grad():  # livelier than the default init: wider logits, sharper gates
        for p in model.parameters():
            p.mul_(1.5)
    if bins is not None:
        model.head = DiscretizedMixtureOfLogistics(10, bins=bins)
    return model


def conditioning(model, batch, length, seed=1):
    generator = torch.Generator().manual_seed(seed)
    c = model.config
    local = torch.randn(batch, c.local_channels, length // HOP, generator=generator) \
        if c.has_local else None
    global_cond = torch.arange(batch) % c.global_classes if c.global_classes else None
    return local, global_cond


def silence(model, batch):
    if model.config.head == "categorical":
        return torch.full((batch,), model.silence_input(), dtype=torch.long)
    return torch.zeros(batch)


def sessions(model, batch, length, prompt=None):
    local, global_cond = conditioning(model, batch, length)
    return (ReferenceSession(model, batch, length, local, global_cond, prompt),
            CPUSession(model, batch, length, local, global_cond, prompt))


def random_previous(model, batch, generator):
    if model.config.head == "categorical":
        return torch.randint(0, 256, (batch,), generator=generator)
    return model.head.targets_from_waveform(torch.rand(batch, generator=generator) * 2 - 1)


@pytest.mark.parametrize("head,kernel_size,residual,gate,skip,cond", CASES)
def test_step_params_match_the_reference(head, kernel_size, residual, gate, skip, cond):
    model = make_model(head, kernel_size, residual, gate, skip, cond)
    batch, steps = 3, 30
    ref, cpu = sessions(model, batch, 2 * HOP * 2)
    generator = torch.Generator().manual_seed(2)
    previous = silence(model, batch)
    for _ in range(steps):
        expected, got = ref.step_params(previous), cpu.step_params(previous)
        scale = expected.abs().max().item()
        torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-5 * scale)
        previous = random_previous(model, batch, generator)
    assert cpu.time == ref.state.time == steps


def generate_both(model, batch, steps, temperatures, prompt=None, seed=3):
    """Generate ``steps`` per temperature in turn on both sessions; (reference, cpu)."""
    prompt_len = 0 if prompt is None else prompt.shape[-1]
    total = -(-(prompt_len + steps * len(temperatures)) // HOP) * HOP
    ref, cpu = sessions(model, batch, total, prompt)
    generator = torch.Generator().manual_seed(seed)
    previous = silence(model, batch) if prompt is None else prompt[:, -1]
    out_ref, out_cpu = [], []
    for temperature in temperatures:
        uniforms = torch.rand(batch, steps, model.head.num_uniforms, generator=generator)
        a = ref.generate(previous, uniforms, temperature)
        b = cpu.generate(previous, uniforms, temperature)
        out_ref.append(a)
        out_cpu.append(b)
        previous = a[:, -1]
    return torch.cat(out_ref, 1), torch.cat(out_cpu, 1)


@pytest.mark.parametrize("head,kernel_size,residual,gate,skip,cond", CASES)
def test_generate_draws_the_reference_samples(head, kernel_size, residual, gate, skip, cond):
    # MoL on a 256-level grid: the same kernel code, bins wide enough that float32 rounding
    # never moves a draw across an edge (the 16-bit grid is tested below).
    model = make_model(head, kernel_size, residual, gate, skip, cond,
                       bins=256 if head == "mol" else None)
    expected, got = generate_both(model, 2, 200, [1.0, 0.7, 0.0])
    assert got.dtype == expected.dtype
    assert torch.equal(got, expected)
    assert len(torch.unique(got)) > 20  # not stuck on one value


@pytest.mark.parametrize("head", HEADS)
@pytest.mark.parametrize("prompt_len", [1, 37])
def test_generate_after_a_prompt(head, prompt_len):
    model = make_model(head, 3, 32, 40, 128, "local+global", bins=256 if head == "mol" else None)
    batch = 2
    wave = torch.rand(batch, prompt_len, generator=torch.Generator().manual_seed(4)) * 1.6 - 0.8
    prompt = model.head.targets_from_waveform(wave)
    expected, got = generate_both(model, batch, 100, [1.0, 0.0], prompt=prompt)
    assert torch.equal(got, expected)


def test_step_params_after_a_prompt():
    model = make_model("categorical", 2, 32, 32, 128, "local")
    batch, prompt_len = 2, 45
    prompt = torch.randint(0, 256, (batch, prompt_len))
    ref, cpu = sessions(model, batch, 4 * HOP, prompt)
    assert cpu.time == prompt_len
    previous = prompt[:, -1]
    for t in range(10):
        expected, got = ref.step_params(previous), cpu.step_params(previous)
        torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-5 * expected.abs().max().item())
        previous = torch.full((batch,), t * 20)


def test_16_bit_mixture_draws_match_step_by_step():
    """Teacher-forced: both sessions get the reference's previous sample every step."""
    model = make_model("mol", 2, 32, 48, 128, "local+global")
    batch, steps = 4, 12 * HOP
    ref, cpu = sessions(model, batch, steps)
    generator = torch.Generator().manual_seed(5)
    previous = silence(model, batch)
    step = 2.0 / (model.head.bins - 1)
    mismatches = draws = 0
    for t in range(steps):
        temperature = (1.0, 0.7, 0.0)[t % 3]
        uniforms = torch.rand(batch, 1, 2, generator=generator)
        expected = model.head.sample(ref.step_params(previous), uniforms[:, 0], temperature)
        got = cpu.generate(previous, uniforms, temperature)[:, 0]
        differ = got != expected
        # Only float32 rounding at a bin edge: one grid step apart.
        assert torch.all((got - expected)[differ].abs() <= step * 1.01), (t, got, expected)
        mismatches += int(differ.sum())
        draws += batch
        previous = expected
    assert mismatches <= max(2, draws // 100)


def test_chunked_generation_equals_one_chunk(monkeypatch):
    model = make_model("categorical", 2, 32, 32, 128, "local+global")
    batch, steps = 2, 20 * HOP
    local, global_cond = conditioning(model, batch, steps)
    uniforms = torch.rand(batch, steps, 1, generator=torch.Generator().manual_seed(6))
    one = CPUSession(model, batch, steps, local, global_cond, None)
    assert one.stream.chunk_length() >= steps
    whole = one.generate(silence(model, batch), uniforms, 1.0)
    monkeypatch.setattr(kernels_base, "CONDITIONING_CHUNK_BYTES", 1)
    chunked = CPUSession(model, batch, steps, local, global_cond, None)
    assert chunked.stream.chunk_length() == 64  # 5 chunks
    pieces = chunked.generate(silence(model, batch), uniforms, 1.0)
    assert torch.equal(pieces, whole)
    reference = ReferenceSession(model, batch, steps, local, global_cond, None)
    assert torch.equal(reference.generate(silence(model, batch), uniforms, 1.0), whole)


def test_step_params_and_generate_share_state():
    model = make_model("categorical", 3, 32, 32, 128, "local")
    batch = 2
    ref, cpu = sessions(model, batch, 8 * HOP)
    uniforms = torch.rand(batch, 20, 1, generator=torch.Generator().manual_seed(7))
    previous = silence(model, batch)
    for t in range(3):
        a = ref.generate(previous, uniforms[:, :10], 1.0)
        b = cpu.generate(previous, uniforms[:, :10], 1.0)
        assert torch.equal(a, b)
        previous = a[:, -1]
        torch.testing.assert_close(cpu.step_params(previous), ref.step_params(previous),
                                   rtol=1e-4, atol=1e-5)
        previous = torch.full((batch,), 100 + t)


@pytest.mark.parametrize("threads", [1, 2, 3])
def test_threads_split_the_batch_without_changing_samples(threads):
    model = make_model("categorical", 2, 32, 32, 128, "local")
    batch, steps = 5, 4 * HOP
    local, global_cond = conditioning(model, batch, steps)
    uniforms = torch.rand(batch, steps, 1, generator=torch.Generator().manual_seed(8))
    single = CPUSession(model, batch, steps, local, global_cond, None, threads=1)
    expected = single.generate(silence(model, batch), uniforms, 0.8)
    session = CPUSession(model, batch, steps, local, global_cond, None, threads=threads)
    assert torch.equal(session.generate(silence(model, batch), uniforms, 0.8), expected)


# --------------------------------------------------------------------------- pieces
def test_vector_math_is_accurate():
    lib = load_library().lib
    x = torch.cat([torch.linspace(-30, 30, 20001), torch.linspace(-1e-3, 1e-3, 1001),
                   torch.tensor([0.0, -0.0, 0.5, -0.5, 0.49999997])])
    for which, fn in [(0, torch.exp), (1, torch.tanh), (2, torch.sigmoid)]:
        y = torch.empty_like(x)
        lib.wg_vector_math(which, x.data_ptr(), y.data_ptr(), x.numel())
        exact = fn(x.double())
        error = (y.double() - exact).abs() / exact.abs().clamp_min(1e-30)
        assert error.max() < 5e-7, (which, error.max())


def c_draw(head, kind, params, uniforms, temperature):
    lib = load_library().lib
    batch, num_params = params.shape
    model = _Model(P=num_params, head=kind, mixtures=getattr(head, "num_mixtures", 0),
                   bins=getattr(head, "bins", 0),
                   log_scale_min=float(getattr(head, "log_scale_min", 0.0)))
    classes, values = torch.empty(batch, dtype=torch.int64), torch.empty(batch)
    params, uniforms = params.contiguous(), uniforms.contiguous()
    assert lib.wg_draw(ctypes.byref(model), params.data_ptr(), uniforms.data_ptr(), batch,
                       temperature, classes.data_ptr(), values.data_ptr()) == 0
    return classes if kind == 0 else values


@pytest.mark.parametrize("temperature", [1.0, 0.7, 1.3, 0.0])
def test_the_draw_follows_the_reference_rules(temperature):
    generator = torch.Generator().manual_seed(9)
    categorical = make_model("categorical", 2, 32, 32, 128, "none").head
    mol = DiscretizedMixtureOfLogistics(10)
    for head, kind in [(categorical, 0), (mol, 1)]:
        draw = Draw(head, SamplingOptions(temperature=temperature))
        differ = total = 0
        for scale in (0.1, 1.0, 5.0, 30.0):
            params = torch.randn(8, head.num_params, generator=generator) * scale
            if kind == 1:  # some narrow components too
                params[:, 20:] -= 6.0 * torch.rand(8, 10, generator=generator)
            uniforms = torch.rand(8, head.num_uniforms, generator=generator)
            expected = draw.sample(params, uniforms)
            got = c_draw(head, kind, params, uniforms, temperature)
            if kind == 0:
                assert torch.equal(got, expected)
            differ += int((got != expected).sum())
            total += 8
        # exp/log round differently in libm and torch in ~1% of cases; a draw changes
        # only when that moves it across a bin edge.
        assert differ <= 1


def test_weights_are_packed_once_per_model():
    from wavegen.kernels.cpu import packed_weights

    model = make_model("categorical", 2, 32, 32, 128, "none")
    vl = load_library().vector_width
    first = packed_weights(model, vl)
    assert packed_weights(model, vl) is first
    with torch.no_grad():
        model.output[3].bias.add_(1.0)
    assert packed_weights(model, vl) is not first


# --------------------------------------------------------------------------- backend
def test_backend_reports_what_it_cannot_run():
    backend = CPUBackend()
    assert backend.name == "cpu" and backend.priority == {"cpu": 10}
    assert backend.unavailable(torch.device("cpu")) is None
    assert "CPU" in backend.unavailable(torch.device("cuda"))
    gaussian = WaveNet(WaveNetConfig(layers=2, stacks=1, residual_channels=8, gate_channels=8,
                                     skip_channels=8, head="gaussian"))
    assert backend.supports(gaussian) == \
        "the Gaussian head is not implemented by the cpu kernel"
    model = make_model("categorical", 2, 32, 32, 128, "none")
    assert backend.supports(model) is None
    assert "float32" in backend.supports(model.double())


def test_auto_picks_the_cpu_backend():
    model = make_model("categorical", 2, 32, 32, 128, "none")
    name, session = wavegen.kernels.open_session("auto", model, 1, 64, None, None, None,
                                                 notice=pytest.fail)
    assert name == "cpu" and isinstance(session, CPUSession)


def test_a_broken_compiler_is_a_one_line_error_and_auto_falls_back(monkeypatch, tmp_path):
    monkeypatch.setenv("CC", "false")
    monkeypatch.setenv("WAVEGEN_KERNEL_CACHE", str(tmp_path))
    model = make_model("categorical", 2, 32, 32, 128, "none")
    with pytest.raises(KernelUnavailableError) as error:
        CPUBackend().session(model, 1, 64, None, None, None)
    assert "\n" not in str(error.value) and "false" in str(error.value)
    with pytest.raises(KernelUnavailableError):
        wavegen.kernels.open_session("cpu", model, 1, 64, None, None, None)
    notices = []
    name, session = wavegen.kernels.open_session("auto", model, 1, 64, None, None, None,
                                                 notice=notices.append)
    assert name == "reference" and isinstance(session, ReferenceSession)
    assert len(notices) == 1 and "cpu" in notices[0] and "\n" not in notices[0]
    assert not list(tmp_path.glob("*.so"))


def test_no_compiler_and_nothing_built_makes_the_backend_unavailable(monkeypatch, tmp_path):
    monkeypatch.setenv("CC", str(tmp_path / "no-such-compiler"))
    monkeypatch.setenv("WAVEGEN_KERNEL_CACHE", str(tmp_path))
    assert "compiler" in CPUBackend().unavailable(torch.device("cpu"))


def test_a_built_library_is_reused_without_a_compiler(monkeypatch):
    built = load_library().path
    monkeypatch.setenv("CC", "/no/such/cc")
    assert CPUBackend().unavailable(torch.device("cpu")) is None
    assert load_library().path == built


@pytest.mark.parametrize("temperature", [1.0, 0.7, 0.0])
def test_diagnostics_from_inside_the_step_equal_the_teacher_forced_ones(temperature):
    """The categorical head's NLL and entropy, by-products of the kernel's draw, are the
    numbers the teacher-forced pass gives (which the reference loop's equal), at any
    temperature (both are of the untempered distribution); the mixture head has none and
    the loop falls back to the teacher-forced pass."""
    from wavegen.sampling import draw_uniforms, generate
    from wavegen.sampling.diagnostics import teacher_forced_diagnostics

    model = make_model("categorical", 3, 32, 40, 128, "local+global")
    local, g = torch.randn(2, 5, 320 // HOP), torch.tensor([0, 2])
    targets = model.head.targets_from_waveform(torch.rand(2, 20) * 1.6 - 0.8)
    uniforms = draw_uniforms(2, 300, 1, 3)
    session = CPUSession(model, 2, 320, local, g, targets)
    first = session.generate(targets[:, -1], uniforms[:, :100], temperature)
    samples = torch.cat([first, session.generate(first[:, -1], uniforms[:, 100:], temperature)], 1)
    nll, entropy = session.in_step_diagnostics()
    expected_nll, expected_entropy = teacher_forced_diagnostics(model, samples, local, g, targets)
    torch.testing.assert_close(nll, expected_nll, rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(entropy, expected_entropy, rtol=1e-4, atol=1e-4)
    assert 0 < float(entropy.mean()) < 5.6  # a real distribution over 256 classes
    # Through generate(): the same diagnostics as the reference loop.
    options = SamplingOptions(temperature=temperature)
    uniforms = draw_uniforms(2, 320, 1, 3)
    ref = generate(model, local=local, global_cond=g, uniforms=uniforms, options=options)
    fast = generate(model, local=local, global_cond=g, uniforms=uniforms, options=options,
                    backend="cpu")
    assert torch.equal(fast.samples, ref.samples)
    torch.testing.assert_close(fast.mean_nll, ref.mean_nll, rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(fast.mean_entropy, ref.mean_entropy, rtol=1e-4, atol=1e-4)
    mol = make_model("mol", 3, 32, 40, 128, "none", bins=256)
    session = CPUSession(mol, 1, 10, None, None, None)
    session.generate(torch.zeros(1), draw_uniforms(1, 10, 2, 0), 1.0)
    assert session.in_step_diagnostics() is None


def test_priming_reads_only_the_last_receptive_field_of_a_long_prompt():
    """The inputs each layer's ring keeps after a long prompt (its last (k - 1) d) equal
    those of a full pass over it, from a pass over the prompt's last receptive field alone
    (and a changed start of the prompt changes nothing)."""
    from wavegen.kernels.base import ConditioningStream, prime_layer_inputs
    from wavegen.models.wavenet import shift_right

    model = make_model("categorical", 3, 32, 40, 128, "local+global")
    rf = model.receptive_field
    length = 4 * rf + 16
    local, g = torch.randn(2, 5, length // HOP + 1), torch.tensor([1, 2])
    prompt = torch.randint(0, 256, (2, length))
    stream = ConditioningStream(model, 2, (length // HOP + 1) * HOP, local, g)
    primed = prime_layer_inputs(model, prompt, stream)
    cond = stream.chunk(0, length).transpose(1, 2)
    _, full = model.run(shift_right(prompt, model.silence_input()), cond, None,
                        return_layer_inputs=True)
    config = model.config
    dilations = [2 ** i for _ in range(config.stacks) for i in range(config.layers)]
    for window, whole, d in zip(primed, full, dilations):
        assert window.shape[-1] == rf - 1
        kept = (config.kernel_size - 1) * d  # what the layer's ring holds
        torch.testing.assert_close(window[..., -kept:], whole[..., -kept:], rtol=1e-5,
                                   atol=1e-5)
    changed = prompt.clone()
    changed[:, : length - rf] = 0
    for a, b in zip(primed, prime_layer_inputs(model, changed, stream)):
        assert torch.equal(a, b)


def test_the_kernels_share_torchs_openmp_runtime():
    """One OpenMP runtime in the process: the C kernels link ``libgomp.so.1`` by its soname,
    and the dynamic linker resolves it to the copy torch has already loaded, so there is
    one thread pool (not two pools spinning against each other on a busy machine)."""
    import sys

    from wavegen.audio import mel_kernel

    if not sys.platform.startswith("linux"):
        pytest.skip("/proc/self/maps is Linux only")
    load_library()
    try:
        mel_kernel.LIBRARY.load()
    except Exception:  # noqa: BLE001 - the mel kernel is optional here
        pass
    with open("/proc/self/maps") as maps:
        runtimes = {line.split()[-1] for line in maps
                    if "libgomp" in line or "libiomp" in line or "libomp" in line}
    assert len(runtimes) <= 1, runtimes
