"""The ``cuda`` sampling backend: one persistent CUDA kernel launch per chunk of samples.

In the spirit of NVIDIA's nv-wavenet (a persistent kernel that keeps the weights on chip
across steps), without its limits: channel sizes are run-time values, kernel size >= 2,
both the mu-law categorical and the mixture-of-logistics heads, float32 / bfloat16 /
float16 weight storage (float32 accumulation always), optional per-step conditioning, and
no hard-coded GPU architecture (torch's extension builder targets the local GPU).

Files: ``wavenet_persistent.cu`` (the kernel and a C launcher; CUDA runtime headers only),
``wavenet_persistent_binding.cpp`` (the torch binding, built with it by
:func:`torch.utils.cpp_extension.load` on first use and cached by torch). Planning the
launch and packing the weights happen here, in Python (so they are testable without a GPU).

Grid split
----------
One cooperative launch of ``n`` CTAs (by default one per multiprocessor, at most as many as
the largest channel count) runs ``n_steps`` steps for the whole batch. CTA ``c`` owns the
contiguous slice ``[c N / n, (c + 1) N / n)`` of the output rows of every matrix: gate pairs
``(i, G + i)`` of every dilated conv (so it forms its slice of ``z = tanh(a) sigmoid(b)``
locally), residual rows, skip rows, ``out1`` rows and ``out2`` rows. Its slices of all
layers' weights are packed into one contiguous blob, in the order the kernel consumes them,
and copied into shared memory once per launch (``resident``). The plan sizes the grid from
the device's multiprocessor count and opt-in shared memory per block: when the largest
CTA's slices plus its scratch do not fit, the weights stay in global memory (L2) and are
streamed every step instead (correct, slower). bf16/fp16 models are stored in their dtype,
halving the footprint.

Per step, with ``L`` layers, ``L + 3`` grid barriers:

* layer ``l`` (one barrier each): every CTA stages, for each batch item, the previous
  layer's output ``x_{l-1}`` (from that layer's ring buffer), the previous layer's gates
  ``z_{l-1}`` and layer ``l``'s older taps, then computes

  - its conv rows: ``W_l[k-1] x_{l-1} + F_l z_{l-1} + sum_j W_l[j] x_l(t - (k-1-j) d)``
    + bias, where ``F_l = W_l[k-1] res_w_{l-1}`` and the bias includes
    ``W_l[k-1] res_b_{l-1}``: the residual of layer ``l - 1`` is folded into layer ``l``'s
    current tap, so no CTA needs ``x_l`` before it is published;
  - its residual rows ``x_l = x_{l-1} + res_w_{l-1} z_{l-1} + res_b_{l-1}``, written straight
    into layer ``l``'s ring buffer (the ring buffer *is* the publication of ``x_l``);
  - its skip rows of layer ``l - 1``, accumulated in shared memory across layers;

  and publishes its ``z_l`` slice (``zbuf``, double-buffered by layer parity), then barrier.
* head: skip rows of the last layer, ``relu`` of the sum -> barrier -> ``out1`` rows ->
  barrier -> ``out2`` rows (the parameters) -> barrier -> every CTA draws every batch item
  (same inputs, same code, same result; CTA 0 stores the samples) and embeds the sample as
  the next step's input, so the next step starts without another barrier.

Why the residual is folded rather than recomputed by every CTA (the first design
considered): a redundant residual costs ``n B R G`` multiply-adds per layer, 132 x 64 x 64 x
128 = 69M for the reference model at batch 64 on an H100, against 4.6M useful ones; folding
costs ``2G x G`` extra weights per layer (1.4x the weight bytes; 8.9 MB fp32 for the
reference model, under the 132 x 227 KB of an H100) and keeps one barrier per layer.

Barrier and memory ordering
---------------------------
A hand-written sense-reversal barrier (not ``cooperative_groups::grid::sync``, so no
``-rdc``): ``bar[0]`` counts arrivals, ``bar[1]`` is the generation. ``__syncthreads``, then
thread 0 of each CTA does ``__threadfence`` and ``atom.acq_rel.gpu.add`` on the counter; the
last arriver resets the counter and stores generation + 1 with ``st.release.gpu``; the
others spin with ``ld.acquire.gpu`` until the generation changes; ``__threadfence``,
``__syncthreads``. In the PTX memory model, the CTA barrier orders every thread's earlier
writes before thread 0's release; RMWs on the counter form a release sequence that the last
arriver acquires; its release store synchronises with each waiter's acquire load, which the
waiter's CTA barrier extends to all its threads. So every write before barrier ``k``
happens-before every read after it. Data written during the launch is read with
``ld.global.cg`` (L2, coherent), never through the non-coherent read-only path. The launch
is cooperative (``cudaLaunchCooperativeKernel``) only to guarantee co-residency, without
which a spinning barrier deadlocks.

Ring buffers are ``[B][(k-1) d + 1][R]`` float32 per layer; step ``s`` (counted from the
session start) writes slot ``(s + len - 1) % len``, the layout
:meth:`~wavegen.nn.causal_conv.CausalConv1d.buffer_from_sequence` produces after a prompt.

Numerics and the draw
---------------------
float32 accumulation (``fmaf``), ``tanhf``/``expf`` activations (no fast math). The draw
follows :class:`wavegen.sampling.Draw` and :mod:`wavegen.nn.distributions` operation by
operation, with explicitly rounded intrinsics where torch rounds twice, dividing by the
temperature as torch does on CUDA (multiplication by the float reciprocal). Sums
(log-softmax, cumulative sum) are reduced in a different order than torch's, so a draw can
differ from the reference only where a uniform lies within rounding error of a class or bin
boundary. With bf16/fp16 weights the folded ``F_l`` is rounded to the storage dtype once,
and activations stay in float32 (the bf16 reference rounds every intermediate), hence the
looser tolerance.

What was verified where
-----------------------
Developed on a machine without a GPU (nvcc 13.0, CPU-only torch):

* compile: ``nvcc`` with torch's nvcc flags builds the kernel to machine code for sm_80 and
  sm_90 (about 200 registers per thread, no spills; the test builds an sm_90 cubin, which
  also checks the barrier's inline PTX, and sm_80 PTX); the binding compiles against
  torch's headers (opt-in test, ``WAVEGEN_TEST_BINDING=1``);
* logic: the kernel source runs on the CPU through an emulation layer (one OS thread per
  CTA, its CUDA threads as fibers; tests/kernels/test_kernels_cuda.py) inside the real
  :class:`CUDASession`, against :class:`~wavegen.kernels.reference.ReferenceSession`:
  parameters to 1e-4 and identical samples for both heads, k = 2, 3, 4, one and several
  layers, conditioning across chunks, prompts, temperatures 0 / < 1 / 1, CTAs owning no
  rows, streamed weights, batch tiles, float4 and scalar staging; bf16/fp16 weights to a
  bf16/fp16 reference.

Needs a GPU (the GPU tests of tests/kernels/test_kernels_cuda.py): the build through torch, the
real barrier and memory ordering, the cooperative launch and shared-memory limits, and all
timings. Design target for the reference model on H100/H200 (batch 1 >= 48,000 samples/s,
batch 64 >= 2,000,000 samples/s aggregate) is unmeasured.

Tuning: ``WAVEGEN_CUDA_GRID`` overrides the number of CTAs.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from pathlib import Path

import torch

from wavegen.errors import KernelUnavailableError, UsageError
from wavegen.kernels.base import (Backend, ConditioningStream, WaveNetSession, WaveNetWeights,
                                  head_kind, prime_layer_inputs, wavenet_support)

HERE = Path(__file__).resolve().parent
KERNEL_SOURCE = HERE / "wavenet_persistent.cu"
BINDING_SOURCE = HERE / "wavenet_persistent_binding.cpp"

#: The kernel's integer arguments (enum WgpMeta in the .cu file, same order).
META_FIELDS = ("B", "R", "G", "S", "P", "K", "L", "HEAD", "MIX", "BINS", "NSTEPS", "DRAW", "BT",
               "RESIDENT", "STEP0", "STAGE_OFF", "STAGE_STRIDE", "ACC_OFF", "SKACC_OFF",
               "PREV_OFF", "WTYPE")
#: The kernel's pointer arguments (enum WgpPtr in the .cu file, same order).
PTR_FIELDS = ("DIL", "RING_OFF", "WOFS", "BOFS", "WBLOB", "BBLOB", "EMBED", "RING", "ZBUF",
              "HBUF", "H2BUF", "PBUF", "SKACC", "COND", "UNIFORMS", "PREV", "SAMPLES", "PARAMS",
              "BAR")
#: Threads per CTA (the kernel's __launch_bounds__ is the maximum, 256).
THREADS = 256
#: Weight storage types: code of the kernel template instantiation.
WTYPES = {torch.float32: 0, torch.bfloat16: 1, torch.float16: 2}

_module = None
_build_error: str | None = None


def _build():
    """The compiled extension (built once per process; torch caches the build on disk)."""
    global _module, _build_error
    if _module is not None:
        return _module
    if _build_error is not None:
        raise KernelUnavailableError(f"cuda backend: {_build_error}")
    try:
        from torch.utils.cpp_extension import load

        _module = load(name="wavegen_cuda_persistent",
                       sources=[str(BINDING_SOURCE), str(KERNEL_SOURCE)],
                       extra_cflags=["-O3"], extra_cuda_cflags=["-O3"], verbose=False)
    except Exception as error:  # compiler missing or failing: a one-line reason
        lines = [ln.strip() for ln in str(error).splitlines() if ln.strip()]
        first = next((ln for ln in lines if "error" in ln.lower()), lines[0] if lines else "")
        _build_error = f"building the kernel failed: {type(error).__name__}: {first}"
        raise KernelUnavailableError(f"cuda backend: {_build_error}") from None
    return _module


# --------------------------------------------------------------------------- planning
def split(total: int, parts: int, index: int) -> int:
    """Start of CTA ``index``'s share of ``total`` rows (the kernel's wgp_split)."""
    return total * index // parts


@dataclass(frozen=True)
class Dims:
    """Sizes of a model as the kernel sees them."""

    R: int
    G: int
    S: int
    P: int
    K: int
    L: int

    def shares(self, n: int, c: int) -> dict[str, tuple[int, int]]:
        """(start, count) of CTA ``c``'s rows: gate pairs, residual, skip, out1, out2."""
        def part(total):
            lo = split(total, n, c)
            return lo, split(total, n, c + 1) - lo
        return {"gate": part(self.G), "res": part(self.R), "skip": part(self.S),
                "out1": part(self.S), "out2": part(self.P)}

    def cta_elements(self, n: int, c: int) -> tuple[int, int]:
        """(weights, biases) of CTA ``c`` before padding, in elements."""
        sh = self.shares(n, c)
        np_, nr, ns = sh["gate"][1], sh["res"][1], sh["skip"][1]
        no1, no2 = sh["out1"][1], sh["out2"][1]
        kr = self.K * self.R
        w = 2 * np_ * kr + (self.L - 1) * (2 * np_ * (kr + self.G) + (nr + ns) * self.G) \
            + ns * self.G + (no1 + no2) * self.S
        b = 2 * np_ + (self.L - 1) * (2 * np_ + nr) + ns + no1 + no2
        return w, b


def _pad(count: int, multiple: int) -> int:
    return -(-count // multiple) * multiple


@dataclass(frozen=True)
class Plan:
    """Launch geometry and shared-memory carve (byte offsets) of one session."""

    grid: int
    block: int
    bt: int
    resident: bool
    smem: int
    stage_off: int
    stage_stride: int
    acc_off: int
    skacc_off: int  # -1: skip accumulators in global memory
    prev_off: int
    weight_bytes: int  # largest CTA's resident weights + biases


def plan_launch(dims: Dims, batch: int, wbytes: int, sms: int, smem_optin: int,
                grid: int | None = None, block: int = THREADS) -> Plan:
    """Grid size, batch tile and shared-memory layout; KernelUnavailableError if none fits.

    ``grid`` defaults to ``WAVEGEN_CUDA_GRID`` or one CTA per multiprocessor (at most the
    largest row count, so no CTA is idle in every matrix).
    """
    if grid is None:
        env = os.environ.get("WAVEGEN_CUDA_GRID", "").strip()
        grid = int(env) if env else min(sms, max(dims.G, dims.R, dims.S, dims.P))
    grid = max(1, min(grid, sms))
    resident_bytes = 0
    rows_max = ns_max = 0
    for c in range(grid):
        w, b = dims.cta_elements(grid, c)
        resident_bytes = max(resident_bytes, _pad(w * wbytes, 16) + _pad(b * 4, 16))
        sh = dims.shares(grid, c)
        rows_max = max(rows_max, 2 * sh["gate"][1] + sh["res"][1] + sh["skip"][1],
                       sh["out1"][1], sh["out2"][1])
        ns_max = max(ns_max, sh["skip"][1])
    stride = _pad(max(dims.K * dims.R + dims.G, dims.S), 4)  # float4 rows

    def carve(base, bt, sk_in_smem):
        stage = base
        acc = stage + _pad(bt * stride * 4, 16)
        sk = acc + _pad(rows_max * bt * 4, 16)
        prev = sk + (_pad(ns_max * batch * 4, 16) if sk_in_smem else 0)
        end = prev + _pad(batch * 4, 16)
        return stage, acc, (sk if sk_in_smem else -1), prev, end

    for resident in (True, False):
        base = resident_bytes if resident else 0
        for sk_in_smem in (True, False):
            fits = [bt for bt in _tile_candidates(batch)
                    if carve(base, bt, sk_in_smem)[-1] <= smem_optin]
            if fits:
                bt = max(fits)
                stage, acc, sk, prev, end = carve(base, bt, sk_in_smem)
                return Plan(grid, block, bt, resident, end, stage, stride, acc, sk, prev,
                            resident_bytes)
    raise KernelUnavailableError(
        f"cuda backend: the model's scratch does not fit in {smem_optin} bytes of shared memory")


def _tile_candidates(batch: int) -> list[int]:
    out, bt = {batch}, batch
    while bt > 1:
        bt = (bt + 1) // 2
        out.add(bt)
    return sorted(out)


# --------------------------------------------------------------------------- packing
@torch.no_grad()
def pack(weights: WaveNetWeights, dims: Dims, grid: int, dtype: torch.dtype
         ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per-CTA weight and bias blobs (see the .cu file for the layout).

    ``weights`` should be float64 (the folded products ``F_l`` are formed in it and rounded
    once to ``dtype``). Returns ``(wblob [dtype], bblob [float32], wofs, bofs [int64,
    grid + 1 element offsets])``, all on the CPU.
    """
    f64 = torch.float64
    K, G, L = dims.K, dims.G, dims.L
    wpad, bpad = 128 // torch.finfo(dtype).bits, 4  # elements per 16 bytes
    conv_w = [w.to(f64).cpu() for w in weights.conv_w]
    conv_b = [b.to(f64).cpu() for b in weights.conv_b]
    res_w = [None if w is None else w.to(f64).cpu() for w in weights.res_w]
    res_b = [None if b is None else b.to(f64).cpu() for b in weights.res_b]
    skip_w = [w.to(f64).cpu() for w in weights.skip_w]
    skip_sum = torch.stack([b.to(f64).cpu() for b in weights.skip_b]).sum(0)
    out1_w, out1_b = weights.out1_w.to(f64).cpu(), weights.out1_b.to(f64).cpu()
    out2_w, out2_b = weights.out2_w.to(f64).cpu(), weights.out2_b.to(f64).cpu()
    wparts, bparts, wofs, bofs = [], [], [0], [0]
    for c in range(grid):
        sh = dims.shares(grid, c)
        g0, np_ = sh["gate"]
        rows = torch.cat([torch.arange(g0, g0 + np_), torch.arange(G + g0, G + g0 + np_)])
        r0, nr = sh["res"]
        s0, ns = sh["skip"]
        o1, no1 = sh["out1"]
        o2, no2 = sh["out2"]
        ws, bs = [], []
        for layer in range(L):
            w = conv_w[layer][:, rows, :]  # [K, 2np, R]
            current, older = w[K - 1], [w[j] for j in range(K - 1)]
            if layer == 0:
                ws.append(torch.cat([current, *older], dim=1))
                bs.append(conv_b[0][rows])
                continue
            fold = current @ res_w[layer - 1]  # [2np, G]
            ws.append(torch.cat([current, fold, *older], dim=1))
            bs.append(conv_b[layer][rows] + current @ res_b[layer - 1])
            ws.append(res_w[layer - 1][r0:r0 + nr])
            bs.append(res_b[layer - 1][r0:r0 + nr])
            ws.append(skip_w[layer - 1][s0:s0 + ns])
        ws += [skip_w[L - 1][s0:s0 + ns], out1_w[o1:o1 + no1], out2_w[o2:o2 + no2]]
        bs += [skip_sum[s0:s0 + ns], out1_b[o1:o1 + no1], out2_b[o2:o2 + no2]]
        wflat = torch.cat([t.reshape(-1) for t in ws])
        bflat = torch.cat([t.reshape(-1) for t in bs])
        assert (wflat.numel(), bflat.numel()) == dims.cta_elements(grid, c)
        wparts += [wflat, wflat.new_zeros(_pad(wflat.numel(), wpad) - wflat.numel())]
        bparts += [bflat, bflat.new_zeros(_pad(bflat.numel(), bpad) - bflat.numel())]
        wofs.append(wofs[-1] + _pad(wflat.numel(), wpad))
        bofs.append(bofs[-1] + _pad(bflat.numel(), bpad))
    return (torch.cat(wparts).to(dtype), torch.cat(bparts).to(torch.float32),
            torch.tensor(wofs, dtype=torch.int64), torch.tensor(bofs, dtype=torch.int64))


# --------------------------------------------------------------------------- engines
class DeviceEngine:
    """Runs the compiled kernel on a CUDA device (the tests substitute an emulator)."""

    block = THREADS

    def __init__(self, device: torch.device):
        self.module = _build()
        self.device = device
        index = device.index if device.index is not None else torch.cuda.current_device()
        self.index = index
        info = self.module.device_info(index)
        self.sms, self.smem_optin, _, self.cooperative, major, minor = info
        if not self.cooperative:
            raise KernelUnavailableError("cuda backend: the device cannot launch cooperative kernels")
        if major < 7:
            raise KernelUnavailableError(f"cuda backend: needs compute capability >= 7.0, "
                                         f"the device has {major}.{minor}")

    def max_blocks(self, wtype: int, block: int, smem: int) -> int:
        with torch.cuda.device(self.index):
            return self.module.max_blocks(wtype, block, smem)

    def launch(self, meta: torch.Tensor, tensors: list, temperature: float, log_scale_min: float,
               plan: Plan, samples: torch.Tensor | None) -> None:
        with torch.cuda.device(self.index):
            stream = torch.cuda.current_stream(self.index).cuda_stream
            self.module.generate(meta, tensors, temperature, log_scale_min, plan.grid, plan.block,
                                 plan.smem, stream, samples)


# --------------------------------------------------------------------------- session
class CUDASession(WaveNetSession):
    """Sampling state on the device; each :meth:`generate` chunk is one kernel launch."""

    def __init__(self, model, batch, length, local, global_cond, prompt, engine=None,
                 grid: int | None = None):
        super().__init__(model, batch, length, local, global_cond, prompt)
        c = model.config
        self.device = next(model.parameters()).device
        self.engine = engine if engine is not None else DeviceEngine(self.device)
        self.kind = head_kind(model)
        dtype = model.input.weight.dtype
        self.wdtype = dtype if dtype in WTYPES else torch.float32
        head = model.head
        self.dims = Dims(R=c.residual_channels, G=c.gate_channels, S=c.skip_channels,
                         P=head.num_params, K=c.kernel_size, L=c.num_layers)
        d = self.dims
        self.mixtures = head.num_mixtures if self.kind == "mol" else 0
        self.bins = head.bins if self.kind == "mol" else 0
        self.log_scale_min = float(head.log_scale_min) if self.kind == "mol" else 0.0
        self.plan = plan_launch(d, batch, torch.finfo(self.wdtype).bits // 8, self.engine.sms,
                                self.engine.smem_optin, grid, self.engine.block)
        if self.engine.max_blocks(WTYPES[self.wdtype], self.plan.block, self.plan.smem) < 1:
            raise KernelUnavailableError("cuda backend: the kernel does not fit on a multiprocessor")

        weights = WaveNetWeights.from_model(model, torch.float64)
        wblob, bblob, wofs, bofs = pack(weights, d, self.plan.grid, self.wdtype)
        dev, f32 = self.device, torch.float32
        self.wblob, self.bblob = wblob.to(dev), bblob.to(dev)
        self.wofs, self.bofs = wofs.to(dev), bofs.to(dev)
        self.embed = weights.embed.to(device=dev, dtype=f32).contiguous()
        self.dilations = list(c.dilations)
        lengths = [(d.K - 1) * dil + 1 for dil in self.dilations]
        offsets = [0]
        for n in lengths[:-1]:
            offsets.append(offsets[-1] + batch * n * d.R)
        self.ring_lengths = lengths
        self.dil = torch.tensor(self.dilations, dtype=torch.int32, device=dev)
        self.ring_off = torch.tensor(offsets, dtype=torch.int64, device=dev)
        self.ring = torch.zeros(offsets[-1] + batch * lengths[-1] * d.R, dtype=f32, device=dev)
        # exchange buffers start as NaN: a read before the write it should follow shows
        nan = float("nan")
        self.zbuf = torch.full((2, batch, d.G), nan, dtype=f32, device=dev)
        self.hbuf = torch.full((batch, d.S), nan, dtype=f32, device=dev)
        self.h2buf = torch.full((batch, d.S), nan, dtype=f32, device=dev)
        self.pbuf = torch.full((batch, d.P), nan, dtype=f32, device=dev)
        self.skacc = None if self.plan.skacc_off >= 0 else \
            torch.full((batch, d.S), nan, dtype=f32, device=dev)
        self.bar = torch.zeros(2, dtype=torch.int32, device=dev)
        self.stream = ConditioningStream(model, batch, length, local, global_cond, torch.float32)
        self.steps = 0
        if prompt is not None and prompt.shape[-1] > 0:
            if prompt.shape[0] != batch:
                raise UsageError(f"prompt batch {prompt.shape[0]} != batch {batch}")
            for layer, x in enumerate(prime_layer_inputs(model, prompt, self.stream)):
                self._ring(layer)[:, :lengths[layer] - 1] = self._history(x, lengths[layer] - 1)

    def _ring(self, layer: int) -> torch.Tensor:
        """View ``[B, len, R]`` of a layer's ring buffer."""
        n = self.ring_lengths[layer]
        start = int(self.ring_off[layer])
        return self.ring[start:start + self.batch * n * self.dims.R].view(self.batch, n, self.dims.R)

    @staticmethod
    def _history(x: torch.Tensor, context: int) -> torch.Tensor:
        """The last ``context`` inputs ``[B, R, T]`` as ``[B, context, R]``, zero-padded left."""
        keep = x[..., max(0, x.shape[-1] - context):].transpose(1, 2).float()
        out = keep.new_zeros(x.shape[0], context, x.shape[1])
        if keep.shape[1]:
            out[:, context - keep.shape[1]:] = keep
        return out

    # ------------------------------------------------------------------ launches
    def _launch(self, previous, n, uniforms, temperature, cond, params_out, draw):
        d, plan = self.dims, self.plan
        meta = {"B": self.batch, "R": d.R, "G": d.G, "S": d.S, "P": d.P, "K": d.K, "L": d.L,
                "HEAD": 0 if self.kind == "categorical" else 1, "MIX": self.mixtures,
                "BINS": self.bins, "NSTEPS": n, "DRAW": int(draw), "BT": plan.bt,
                "RESIDENT": int(plan.resident), "STEP0": self.steps,
                "STAGE_OFF": plan.stage_off, "STAGE_STRIDE": plan.stage_stride,
                "ACC_OFF": plan.acc_off, "SKACC_OFF": plan.skacc_off, "PREV_OFF": plan.prev_off,
                "WTYPE": WTYPES[self.wdtype]}
        samples = None
        if draw:
            samples = torch.empty(self.batch, n, device=self.device,
                                  dtype=torch.int64 if self.kind == "categorical" else torch.float32)
        tensors = {"DIL": self.dil, "RING_OFF": self.ring_off, "WOFS": self.wofs,
                   "BOFS": self.bofs, "WBLOB": self.wblob, "BBLOB": self.bblob,
                   "EMBED": self.embed, "RING": self.ring, "ZBUF": self.zbuf, "HBUF": self.hbuf,
                   "H2BUF": self.h2buf, "PBUF": self.pbuf, "SKACC": self.skacc, "COND": cond,
                   "UNIFORMS": uniforms, "PREV": previous, "SAMPLES": samples,
                   "PARAMS": params_out, "BAR": self.bar}
        self.bar.zero_()
        self.engine.launch(torch.tensor([meta[k] for k in META_FIELDS], dtype=torch.int64),
                           [tensors[k] for k in PTR_FIELDS], float(temperature),
                           self.log_scale_min, plan, samples)
        self.steps += n
        self.time += n
        return samples

    def _previous(self, previous: torch.Tensor) -> torch.Tensor:
        dtype = torch.int64 if self.kind == "categorical" else torch.float32
        previous = previous.to(device=self.device, dtype=dtype).reshape(-1).contiguous()
        if previous.shape[0] != self.batch:
            raise UsageError(f"previous has {previous.shape[0]} items, batch is {self.batch}")
        return previous

    def _cond(self, t0: int, t1: int):
        if self.stream.upsampled is not None and t1 > self.length:
            raise UsageError(f"local conditioning covers {self.length} samples; step {t1} is past it")
        cond = self.stream.chunk(t0, t1)
        return None if cond is None else cond.to(device=self.device, dtype=torch.float32).contiguous()

    @torch.no_grad()
    def step_params(self, previous: torch.Tensor) -> torch.Tensor:
        params = torch.empty(self.batch, 1, self.dims.P, dtype=torch.float32, device=self.device)
        cond = self._cond(self.time, self.time + 1)
        self._launch(self._previous(previous), 1, None, 1.0, cond, params, draw=False)
        return params[:, 0]

    @torch.no_grad()
    def generate(self, previous: torch.Tensor, uniforms: torch.Tensor,
                 temperature: float) -> torch.Tensor:
        temperature = float(temperature)
        if not temperature >= 0.0:
            raise UsageError(f"temperature must be >= 0, got {temperature}")
        n = uniforms.shape[1]
        if n == 0:
            return torch.empty(self.batch, 0, device=self.device,
                               dtype=torch.int64 if self.kind == "categorical" else torch.float32)
        uniforms = uniforms.to(device=self.device, dtype=torch.float32)
        previous = self._previous(previous)
        chunk = self.stream.chunk_length() if self.stream.conditioned else n
        pieces = []
        for a in range(0, n, chunk):
            b = min(n, a + chunk)
            cond = self._cond(self.time, self.time + b - a)
            piece = self._launch(previous, b - a, uniforms[:, a:b].contiguous(), temperature,
                                 cond, None, draw=True)
            pieces.append(piece)
            previous = piece[:, -1].contiguous()
        return torch.cat(pieces, dim=1) if len(pieces) > 1 else pieces[0]


# --------------------------------------------------------------------------- backend
class CUDABackend(Backend):
    name = "cuda"
    priority = {"cuda": 30}
    session_class = CUDASession

    def unavailable(self, device) -> str | None:
        device = torch.device(device)
        if device.type != "cuda":
            return f"needs a CUDA device (the model is on {device.type})"
        if torch.version.cuda is None or not torch.cuda.is_available():
            return "torch has no usable CUDA"
        major, minor = torch.cuda.get_device_capability(device)
        if major < 7:
            return f"needs compute capability >= 7.0 (the GPU has {major}.{minor})"
        from torch.utils.cpp_extension import CUDA_HOME

        if shutil.which("nvcc") is None and not (CUDA_HOME and Path(CUDA_HOME, "bin", "nvcc").exists()):
            return "nvcc (the CUDA toolkit) was not found"
        if shutil.which("ninja") is None:
            return "ninja (needed to build the kernel) was not found"
        if _build_error is not None:
            return _build_error
        return None

    def supports(self, model) -> str | None:
        reason = wavenet_support(model, self.name)
        if reason is not None:
            return reason
        kind = head_kind(model)
        if kind == "gaussian":
            return "the Gaussian head is not implemented by the cuda kernel"
        if model.input.weight.dtype not in WTYPES:
            return f"{model.input.weight.dtype} models are not supported (float32, bfloat16, float16)"
        return None


__all__ = ["CUDABackend", "CUDASession", "DeviceEngine", "Dims", "Plan", "plan_launch", "pack",
           "META_FIELDS", "PTR_FIELDS"]
