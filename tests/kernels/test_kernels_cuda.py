"""The ``cuda`` sampling backend (wavegen.kernels.cuda).

Three layers of checks, so that most of the backend is tested on machines without a GPU:

* compile-only: ``nvcc`` compiles the kernel for sm_80 and sm_90 (skipped without nvcc);
* emulated: the same kernel source compiled as host C++ against a small emulation layer
  (one OS thread per CTA, its CUDA threads as fibers switched at ``__syncthreads`` and
  warp shuffles, real atomics for the grid barrier), driven through the real
  :class:`CUDASession` (planning, packing, ring buffers, conditioning chunks) and compared
  with :class:`ReferenceSession` (skipped without a C++ compiler);
* on a GPU: the built extension against the reference (skipped without CUDA).
"""

from __future__ import annotations

import ctypes
import os
import re
import shutil
import subprocess
import time

import pytest
import torch

import wavegen.kernels as kernels
import wavegen.kernels.cuda as wc
from wavegen.errors import KernelUnavailableError
from wavegen.kernels.reference import ReferenceSession
from wavegen.models.wavenet import WaveNet, WaveNetConfig
from wavegen.sampling import Draw, SamplingOptions

GPU = torch.cuda.is_available() and torch.version.cuda is not None


# --------------------------------------------------------------------------- models
def make_model(head="categorical", k=2, R=8, G=6, S=10, layers=2, stacks=2, classes=16,
               mixtures=3, conditioned=False, dtype=torch.float32, device="cpu", seed=0):
    torch.manual_seed(seed)
    extra = dict(local_channels=3, hop_length=4, upsample_factors=(4,), global_classes=3,
                 global_dim=4) if conditioned else {}
    model = WaveNet(WaveNetConfig(layers=layers, stacks=stacks, kernel_size=k,
                                  residual_channels=R, gate_channels=G, skip_channels=S,
                                  head=head, num_classes=classes, num_mixtures=mixtures,
                                  **extra)).eval()
    with torch.no_grad():  # larger than default init, so the layers matter for the output
        for p in model.parameters():
            p.mul_(1.5)
    return model.to(device=device, dtype=dtype)


def compare(model, batch, engine=None, grid=None, conditioned=False, prompt_len=0, steps=3,
            gen=5, temperature=1.0, rtol=1e-4, samples_equal=True, seed=1):
    """step_params against the reference for ``steps`` steps, then ``gen`` drawn samples.

    Returns the largest relative parameter error seen.
    """
    device = next(model.parameters()).device
    gen_ = torch.Generator().manual_seed(seed)
    length = prompt_len + steps + gen
    local = g = None
    if conditioned:
        hop = model.config.hop_length
        length = -(-length // hop) * hop
        local = torch.randn(batch, model.config.local_channels, length // hop,
                            generator=gen_).to(device=device, dtype=next(model.parameters()).dtype)
        g = torch.arange(batch, device=device) % model.config.global_classes
    prompt = None
    if prompt_len:
        wave = (torch.rand(batch, prompt_len, generator=gen_) - 0.5).to(device)
        prompt = model.targets_from_waveform(wave)
    ref = ReferenceSession(model, batch, length, local, g, prompt)
    fast = wc.CUDASession(model, batch, length, local, g, prompt, engine=engine, grid=grid)
    categorical = model.config.head == "categorical"
    if prompt is not None:
        previous = prompt[:, -1]
    else:
        previous = torch.full((batch,), model.silence_input(), device=device,
                              dtype=torch.long if categorical else torch.float32)
    draw = Draw(model.head, SamplingOptions(temperature=temperature))
    U = model.head.num_uniforms
    worst = 0.0
    for _ in range(steps):
        expected = ref.step_params(previous)
        got = fast.step_params(previous)
        assert got.shape == expected.shape and got.dtype == torch.float32
        scale = expected.abs().max().item()
        err = (got - expected).abs().max().item() / scale
        worst = max(worst, err)
        assert err <= rtol, f"relative parameter error {err:.3g} > {rtol}"
        u = torch.rand(batch, U, generator=gen_).to(device)
        previous = draw.sample(expected, u)
    u = torch.rand(batch, gen, U, generator=gen_).to(device)
    got = fast.generate(previous, u, temperature)
    # ReferenceSession.generate's loop, at a step index that skips the (slow, unused) exact
    # entropy diagnostic of the 65536-bin heads
    drawn = []
    for t in range(gen):
        previous = draw.sample(ref.step_params(previous), u[:, t])
        drawn.append(previous)
    expected = torch.stack(drawn, dim=1)
    assert got.shape == expected.shape and got.dtype == expected.dtype
    if samples_equal:
        assert torch.equal(got, expected), (got, expected)
    return worst


# --------------------------------------------------------------------------- compile only
def _nvcc_compile(arch: str, kind: str, out_dir) -> subprocess.Popen:
    from torch.utils.cpp_extension import COMMON_NVCC_FLAGS, include_paths

    # torch's own nvcc flags (no implicit half/bf16 conversions, ...), as in the real build
    cmd = ["nvcc", f"-{kind}", f"-arch={arch}", "-O3", "-std=c++17", *COMMON_NVCC_FLAGS]
    if kind == "cubin":
        cmd += ["-Xptxas", "-warn-spills"]
    for path in include_paths():
        cmd += ["-I", path]
    cmd += [str(wc.KERNEL_SOURCE), "-o", str(out_dir / f"wavenet_persistent_{arch}.{kind}")]
    return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


@pytest.mark.skipif(shutil.which("nvcc") is None, reason="nvcc is not on PATH")
def test_the_kernel_compiles_for_ampere_and_hopper(tmp_path):
    """sm_90 down to machine code (ptxas also checks the inline PTX of the grid barrier),
    sm_80 to PTX (the front end for a second architecture, at half the cost)."""
    start = time.perf_counter()
    jobs = {(arch, kind): _nvcc_compile(arch, kind, tmp_path)
            for arch, kind in (("sm_90", "cubin"), ("sm_80", "ptx"))}
    for (arch, kind), job in jobs.items():
        output, _ = job.communicate(timeout=300)
        errors = [ln for ln in output.splitlines() if "error" in ln.lower()]
        assert job.returncode == 0, f"nvcc -{kind} -arch={arch} failed:\n" + "\n".join(
            (errors or output.splitlines())[:15])
        if "spill" in output.lower():  # performance, not correctness: reported only
            print(f"nvcc -arch={arch}: {output.strip()}")
        assert (tmp_path / f"wavenet_persistent_{arch}.{kind}").stat().st_size > 0
    print(f"nvcc sm_90 cubin + sm_80 ptx: {time.perf_counter() - start:.1f} s")


@pytest.mark.skipif(not os.environ.get("WAVEGEN_TEST_BINDING"),
                    reason="set WAVEGEN_TEST_BINDING=1 (compiling against torch's headers is slow)")
def test_the_binding_compiles_against_torch_headers():
    import sysconfig

    from torch.utils.cpp_extension import include_paths

    cxx = shutil.which("c++") or shutil.which("g++")
    if cxx is None:
        pytest.skip("no C++ compiler")
    cmd = [cxx, "-std=c++17", "-fsyntax-only", "-w", "-DTORCH_EXTENSION_NAME=wgp_check",
           "-I", sysconfig.get_paths()["include"]]
    for path in include_paths():
        cmd += ["-I", path]
    result = subprocess.run(cmd + [str(wc.BINDING_SOURCE)], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[:3000]


def test_the_argument_orders_match_the_kernel():
    source = wc.KERNEL_SOURCE.read_text()

    def enum(name, prefix):
        body = re.search(r"enum " + name + r" \{(.*?)\};", source, re.S).group(1)
        names = [n.strip() for n in body.split(",") if n.strip()]
        assert names[-1] == prefix + "COUNT"
        return tuple(n[len(prefix):] for n in names[:-1])

    assert enum("WgpMeta", "M_") == wc.META_FIELDS
    assert enum("WgpPtr", "P_") == wc.PTR_FIELDS


# --------------------------------------------------------------------------- without a GPU
def test_the_backend_explains_itself_on_the_cpu():
    backend = kernels.get_backend("cuda")
    assert isinstance(backend, wc.CUDABackend)
    reason = backend.unavailable(torch.device("cpu"))
    assert reason and "\n" not in reason
    model = make_model()
    with pytest.raises(KernelUnavailableError, match="cuda"):
        kernels.open_session("cuda", model, 1, 10, None, None, None)
    name, _ = kernels.open_session("auto", model, 1, 10, None, None, None, notice=lambda t: None)
    assert name != "cuda"


def test_the_gaussian_head_is_refused():
    backend = wc.CUDABackend()
    assert "Gaussian" in backend.supports(make_model(head="gaussian"))
    assert backend.supports(make_model()) is None
    assert backend.supports(make_model(dtype=torch.float64)) is not None


def test_the_plan_splits_rows_and_falls_back_to_streaming():
    dims = wc.Dims(R=64, G=128, S=256, P=256, K=2, L=20)
    big = wc.plan_launch(dims, 64, 4, sms=132, smem_optin=227 * 1024)
    assert big.grid == 132 and big.resident and big.bt == 64 and big.skacc_off >= 0
    assert big.smem <= 227 * 1024
    total = sum(dims.cta_elements(132, c)[0] for c in range(132))
    conv, fold, res, skip, out = 20 * 256 * 128, 19 * 256 * 128, 19 * 64 * 128, 20 * 256 * 128, \
        2 * 256 * 256
    assert total == conv + fold + res + skip + out
    # the same model on 8 multiprocessors: weights do not fit, streamed from global memory
    small = wc.plan_launch(dims, 64, 4, sms=8, smem_optin=100 * 1024)
    assert small.grid == 8 and not small.resident and small.smem <= 100 * 1024
    # in bf16 they fit on fewer multiprocessors than in fp32
    half = wc.plan_launch(dims, 1, 2, sms=40, smem_optin=227 * 1024)
    assert half.resident and not wc.plan_launch(dims, 1, 4, sms=40, smem_optin=227 * 1024).resident
    with pytest.raises(KernelUnavailableError):
        wc.plan_launch(dims, 4096, 4, sms=1, smem_optin=1024)


def test_packing_covers_every_weight_once():
    model = make_model(k=3, R=5, G=4, S=7)
    w = wc.WaveNetWeights.from_model(model, torch.float64)
    dims = wc.Dims(R=5, G=4, S=7, P=16, K=3, L=4)
    for grid in (1, 3, 5):
        wblob, bblob, wofs, bofs = wc.pack(w, dims, grid, torch.float32)
        assert wofs[-1] == wblob.numel() and bofs[-1] == bblob.numel()
        assert all(int(o) % 4 == 0 for o in wofs) and all(int(o) % 4 == 0 for o in bofs)
        # the out2 rows of all CTAs, concatenated, are out2_w
        rows = []
        for c in range(grid):
            n_w, _ = dims.cta_elements(grid, c)
            o0, no2 = dims.shares(grid, c)["out2"]
            end = int(wofs[c]) + n_w
            rows.append(wblob[end - no2 * dims.S:end].view(no2, dims.S))
        torch.testing.assert_close(torch.cat(rows).double(), w.out2_w, rtol=1e-7, atol=0)


# --------------------------------------------------------------------------- emulation
EMULATION_HEADER = r"""
// Host emulation of the CUDA features wavenet_persistent.cu uses (tests only).
// Each CTA is one OS thread whose CUDA threads are ucontext fibers, switched only when a
// fiber waits at a barrier (__syncthreads, or the warp barrier inside a shuffle); the CTAs
// run concurrently and meet in the kernel's own grid barrier (real atomics, spin + yield).
#include <pthread.h>
#include <sched.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <math.h>
#include <ucontext.h>

#define __global__
#define __device__
#define __host__
#define __forceinline__ inline
#define __launch_bounds__(x)
#define __align__(x) __attribute__((aligned(x)))
#define WGP_SPIN_PAUSE() sched_yield()

struct dim3 { unsigned x, y, z; };
struct uint4 { unsigned x, y, z, w; };
struct float4 { float x, y, z, w; };
struct __half { uint16_t x; };
struct __nv_bfloat16 { uint16_t x; };

struct EmuBarrier { int count, generation; };
struct EmuBlock {
    ucontext_t scheduler;
    ucontext_t *fibers;
    unsigned char *done;
    int current;
    EmuBarrier block_barrier, warp_barrier[32];
    uint64_t slots[2][1024];  /* shuffle exchange, double-buffered by warp barrier parity */
    unsigned char *smem;
};

static thread_local dim3 threadIdx, blockIdx;
static dim3 blockDim, gridDim;
static thread_local EmuBlock *emu_me;

static inline void emu_wait(EmuBarrier *bar, int participants) {
    const int generation = bar->generation;
    if (++bar->count == participants) {
        bar->count = 0;
        ++bar->generation;
        return;
    }
    const int me = emu_me->current;
    while (bar->generation == generation)
        swapcontext(&emu_me->fibers[me], &emu_me->scheduler);
}

static inline unsigned char *wgp_emu_smem() { return emu_me->smem; }
static inline void __syncthreads() { emu_wait(&emu_me->block_barrier, (int)blockDim.x); }
static inline void __threadfence() { __atomic_thread_fence(__ATOMIC_SEQ_CST); }
static inline unsigned atomicExch(unsigned *p, unsigned v) { return __atomic_exchange_n(p, v, __ATOMIC_RELAXED); }
static inline int min(int a, int b) { return a < b ? a : b; }
template <class V> static inline V __ldg(const V *p) { return *p; }
template <class V> static inline V __ldcg(const V *p) { return *p; }
static inline float __fadd_rn(float a, float b) { return a + b; }
static inline float __fsub_rn(float a, float b) { return a - b; }
static inline float __fmul_rn(float a, float b) { return a * b; }
static inline float __fdiv_rn(float a, float b) { return a / b; }
static inline double __dadd_rn(double a, double b) { return a + b; }
static inline double __dmul_rn(double a, double b) { return a * b; }
static inline float __bfloat162float(__nv_bfloat16 h) {
    uint32_t u = (uint32_t)h.x << 16; float f; memcpy(&f, &u, 4); return f;
}
static inline float __half2float(__half h) { _Float16 f; memcpy(&f, &h.x, 2); return (float)f; }

template <class V> static V emu_exchange(V v, int src) {
    const int w = threadIdx.x >> 5, lane = threadIdx.x & 31;
    EmuBarrier *bar = &emu_me->warp_barrier[w];
    uint64_t *slots = emu_me->slots[bar->generation & 1] + w * 32, bits = 0;
    memcpy(&bits, &v, sizeof(V));
    slots[lane] = bits;
    emu_wait(bar, 32);
    V out;
    memcpy(&out, &slots[src], sizeof(V));
    return out;
}
template <class V> static inline V __shfl_xor_sync(unsigned, V v, int m) { return emu_exchange(v, (int)(threadIdx.x & 31) ^ m); }
template <class V> static inline V __shfl_sync(unsigned, V v, int src) { return emu_exchange(v, src & 31); }
template <class V> static inline V __shfl_up_sync(unsigned, V v, unsigned d) {
    const int lane = threadIdx.x & 31;
    return emu_exchange(v, lane >= (int)d ? lane - (int)d : lane);
}
"""

EMULATION_DRIVER = r"""
#include "emulation.h"
#include KERNEL_SOURCE

struct EmuCta { int block, wtype; const WgpArgs *args; EmuBlock *state; size_t smem; };
static thread_local const EmuCta *emu_cta;

static void emu_fiber() {
    const EmuCta *t = emu_cta;
    if (t->wtype == 0) wgp_kernel<float>(*t->args);
    else if (t->wtype == 1) wgp_kernel<__nv_bfloat16>(*t->args);
    else wgp_kernel<__half>(*t->args);
    emu_me->done[emu_me->current] = 1;
}

static void *emu_cta_thread(void *p) {
    const EmuCta *t = (const EmuCta *)p;
    emu_cta = t;
    EmuBlock *b = t->state;
    emu_me = b;
    blockIdx = dim3{(unsigned)t->block, 0, 0};
    const int n = (int)blockDim.x;
    const size_t stack = 128 * 1024;
    char *stacks = (char *)malloc(stack * n);
    b->fibers = new ucontext_t[n];
    b->done = new unsigned char[n]();
    for (int i = 0; i < n; ++i) {
        getcontext(&b->fibers[i]);
        b->fibers[i].uc_stack.ss_sp = stacks + stack * i;
        b->fibers[i].uc_stack.ss_size = stack;
        b->fibers[i].uc_link = &b->scheduler;
        makecontext(&b->fibers[i], emu_fiber, 0);
    }
    for (int alive = n; alive > 0;) {
        alive = 0;
        for (int i = 0; i < n; ++i) {
            if (b->done[i]) continue;
            b->current = i;
            threadIdx = dim3{(unsigned)i, 0, 0};
            swapcontext(&b->scheduler, &b->fibers[i]);
            alive += !b->done[i];
        }
    }
    delete[] b->fibers;
    delete[] b->done;
    free(stacks);
    return 0;
}

extern "C" int emu_run(const long long *meta, int nmeta, void *const *ptrs, int nptrs,
                       float temperature, float log_scale_min, int grid, int block, long long smem) {
    const int bad = wgp_check(meta, nmeta, ptrs, nptrs);
    if (bad) return bad;
    if (block % 32 || block > 1024) return -2;
    WgpArgs args = wgp_make_args(meta, ptrs, temperature, log_scale_min);
    blockDim = dim3{(unsigned)block, 1, 1};
    gridDim = dim3{(unsigned)grid, 1, 1};
    EmuBlock *blocks = new EmuBlock[grid]();
    EmuCta *ctas = new EmuCta[grid];
    pthread_t *ids = new pthread_t[grid];
    int err = 0, started = 0;
    for (int b = 0; b < grid; ++b) {
        blocks[b].smem = (unsigned char *)aligned_alloc(16, ((size_t)smem + 15) / 16 * 16 + 16);
        memset(blocks[b].smem, 0xff, (size_t)smem);  /* NaN: reading unwritten scratch shows */
        ctas[b] = EmuCta{b, (int)meta[M_WTYPE], &args, &blocks[b], (size_t)smem};
    }
    for (int b = 0; b < grid; ++b) {
        if (pthread_create(&ids[b], 0, emu_cta_thread, &ctas[b])) { err = -3; break; }
        ++started;
    }
    for (int b = 0; b < started; ++b) pthread_join(ids[b], 0);
    for (int b = 0; b < grid; ++b) free(blocks[b].smem);
    delete[] blocks; delete[] ctas; delete[] ids;
    return err;
}
"""


class EmulatedEngine:
    """The kernel on the CPU: ``sms`` CTAs of ``block`` threads, ``smem_optin`` bytes each."""

    def __init__(self, lib, sms=3, smem_optin=48 * 1024, block=64):
        self.lib, self.sms, self.smem_optin, self.block = lib, sms, smem_optin, block
        self.plans = []

    def max_blocks(self, wtype, block, smem):
        return 1 if smem <= self.smem_optin else 0

    def launch(self, meta, tensors, temperature, log_scale_min, plan, samples):
        self.plans.append(plan)
        meta = meta.contiguous()
        ptrs = (ctypes.c_void_p * len(tensors))(
            *[None if t is None else t.data_ptr() for t in tensors])
        err = self.lib.emu_run(ctypes.c_void_p(meta.data_ptr()), len(meta), ptrs, len(tensors),
                               ctypes.c_float(temperature), ctypes.c_float(log_scale_min),
                               plan.grid, plan.block, ctypes.c_longlong(plan.smem))
        assert err == 0, f"emulated launch failed: {err}"


@pytest.fixture(scope="module")
def emulator(tmp_path_factory):
    cxx = shutil.which("c++") or shutil.which("g++")
    if cxx is None:
        pytest.skip("no C++ compiler for the kernel emulation")
    folder = tmp_path_factory.mktemp("emulation")
    (folder / "emulation.h").write_text(EMULATION_HEADER)
    (folder / "driver.cpp").write_text(EMULATION_DRIVER)
    library = folder / "emulation.so"
    cmd = [cxx, "-std=c++17", "-O1", "-ffp-contract=off", "-fPIC", "-shared", "-pthread",
           "-DWGP_EMULATE", f'-DKERNEL_SOURCE="{wc.KERNEL_SOURCE}"', "-I", str(folder),
           str(folder / "driver.cpp"), "-o", str(library)]
    result = subprocess.run(cmd, capture_output=True, text=True)
    assert result.returncode == 0, "emulation build failed:\n" + result.stderr[:4000]
    lib = ctypes.CDLL(str(library))
    lib.emu_run.restype = ctypes.c_int
    return lib


@pytest.mark.parametrize("head, k, conditioned, prompt_len, temperature", [
    ("categorical", 2, False, 0, 1.0),
    ("categorical", 3, True, 9, 0.8),
    ("categorical", 2, True, 0, 0.0),
    ("mol", 2, False, 0, 1.0),
    ("mol", 3, True, 7, 0.7),
    ("mol", 2, False, 5, 0.0),
])
@pytest.mark.parametrize("channels", [(8, 6, 10), (8, 8, 12)], ids=["scalar", "float4"])
def test_emulated_kernel_matches_the_reference(emulator, head, k, conditioned, prompt_len,
                                               temperature, channels):
    R, G, S = channels
    model = make_model(head=head, k=k, R=R, G=G, S=S, conditioned=conditioned)
    engine = EmulatedEngine(emulator)
    compare(model, 3, engine=engine, conditioned=conditioned, prompt_len=prompt_len,
            temperature=temperature)
    assert engine.plans[0].grid == 3 and engine.plans[0].resident


@pytest.mark.parametrize("smem, resident, bt, skacc_in_smem", [
    (1500, True, 5, True),   # resident; register tile of 4 batch items plus a partial one
    (160, False, 1, False),  # weights streamed, batch tiles of 1, skip sums in global memory
])
def test_emulated_kernel_with_idle_ctas_streaming_and_batch_tiles(emulator, smem, resident, bt,
                                                                   skacc_in_smem):
    """More CTAs than gate pairs (some CTAs own no rows of a matrix), odd sizes, and the
    fallbacks for small shared memory."""
    model = make_model(head="mol", k=2, R=5, G=3, S=7, layers=3, stacks=1, mixtures=2)
    engine = EmulatedEngine(emulator, sms=5, smem_optin=smem)
    compare(model, 5, engine=engine, prompt_len=4, steps=2, gen=3)
    plan = engine.plans[0]
    assert (plan.grid, plan.resident, plan.bt, plan.skacc_off >= 0) == (5, resident, bt,
                                                                        skacc_in_smem)


@pytest.mark.parametrize("k, layers, stacks", [(4, 3, 1), (2, 1, 1)])
def test_emulated_kernel_wide_kernels_and_a_single_layer(emulator, k, layers, stacks):
    model = make_model(head="mol", k=k, R=8, G=8, S=12, layers=layers, stacks=stacks,
                       conditioned=True)
    compare(model, 2, engine=EmulatedEngine(emulator), conditioned=True, prompt_len=6,
            temperature=0.9)


def test_emulated_kernel_across_conditioning_chunks(emulator, monkeypatch):
    monkeypatch.setattr("wavegen.kernels.base.CONDITIONING_CHUNK_BYTES", 1)  # 64-sample chunks
    model = make_model(k=2, R=4, G=4, S=6, layers=2, stacks=1, classes=8, conditioned=True)
    engine = EmulatedEngine(emulator, sms=2, block=32)
    compare(model, 1, engine=engine, conditioned=True, steps=1, gen=70)
    assert len(engine.plans) == 1 + 2  # one step_params, then two chunks


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_emulated_kernel_with_half_precision_weights(emulator, dtype):
    """bf16/fp16 storage against the reference run in that dtype (which rounds every
    intermediate, hence the tolerance); draws are not compared."""
    model = make_model(k=3, conditioned=True, dtype=dtype)
    engine = EmulatedEngine(emulator)
    compare(model, 2, engine=engine, conditioned=True, prompt_len=5, rtol=5e-2,
            samples_equal=False)


# --------------------------------------------------------------------------- on a GPU
gpu = pytest.mark.skipif(not GPU, reason="needs a CUDA GPU")


@pytest.fixture(autouse=True)
def _no_tf32():
    """The reference's convolutions (prompt priming, conditioning) in full float32."""
    if not GPU:
        yield
        return
    saved = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False
    yield
    torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = saved


@gpu
@pytest.mark.parametrize("head", ["categorical", "mol"])
@pytest.mark.parametrize("k, R, S", [(2, 32, 128), (3, 64, 256)])
@pytest.mark.parametrize("conditioned, prompt_len", [(False, 0), (True, 50)])
def test_gpu_kernel_matches_the_reference(head, k, R, S, conditioned, prompt_len):
    model = make_model(head=head, k=k, R=R, G=2 * R, S=S, layers=5, stacks=2, classes=256,
                       mixtures=10, conditioned=conditioned, device="cuda")
    compare(model, 4, conditioned=conditioned, prompt_len=prompt_len, steps=4, gen=32)


@gpu
@pytest.mark.parametrize("temperature", [0.0, 0.6])
def test_gpu_kernel_temperatures_and_batch_64(temperature):
    model = make_model(k=2, R=64, G=128, S=256, layers=10, stacks=2, classes=256, device="cuda")
    compare(model, 64, steps=2, gen=32, temperature=temperature)


@gpu
def test_gpu_kernel_streaming_weights():
    model = make_model(head="mol", k=3, R=32, G=64, S=128, layers=4, stacks=2, mixtures=10,
                       device="cuda")
    compare(model, 8, grid=2, steps=2, gen=32)  # 2 CTAs cannot hold these weights


@gpu
def test_gpu_kernel_bf16_weights():
    model = make_model(k=2, R=64, G=128, S=256, layers=10, stacks=2, classes=256,
                       conditioned=True, dtype=torch.bfloat16, device="cuda")
    compare(model, 4, conditioned=True, prompt_len=20, steps=4, gen=16, rtol=5e-2,
            samples_equal=False)


@gpu
def test_gpu_generate_through_the_registry():
    from wavegen.sampling import draw_uniforms, generate

    model = make_model(k=2, R=32, G=64, S=128, layers=5, stacks=2, classes=256, device="cuda")
    uniforms = draw_uniforms(2, 300, 1, 0, "cuda")
    fast = generate(model, 300, batch=2, uniforms=uniforms, backend="cuda")
    ref = generate(model, 300, batch=2, uniforms=uniforms, backend="reference")
    assert torch.equal(fast.samples, ref.samples)
