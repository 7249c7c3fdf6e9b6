"""The ``cpu`` backend: a fused C sampling step, compiled on first use and called via ctypes.

:file:`wavenet_step.c` (beside this file) runs every residual layer, the output stack, the
draw from pre-drawn uniforms and the feedback of the drawn sample for many steps in one
call (one call per conditioning chunk), for the whole batch: batch items are split across
threads (OpenMP), and inside a thread up to 8 items share each weight tile, so every
weight is read once per step for all of them. The local conditioning's 1x1 projection is
folded into each layer's conv matrix (the upsampled features are more input columns), so
the ``L * 2G`` projected channels per sample are never materialised; the projected global
conditioning is a per-item bias.

Building: :mod:`wavegen.native` compiles the source with ``-O3 -march=native`` (OpenMP
when the compiler has it) on first use into its cache (``$WAVEGEN_KERNEL_CACHE``, default
``~/.cache/wavegen/kernels``), keyed by source, compiler, flags and machine, atomically and
under a file lock. A missing compiler or a failed build is a
:class:`~wavegen.errors.KernelUnavailableError` (``auto`` then falls back to ``reference``).

bf16 (the ``cpu-bf16`` backend, :class:`CPUBF16Backend`): the same step with every matrix
stored as bfloat16 pairs and each product's input rounded to bfloat16, accumulated in
float32 by AVX-512 BF16 dot products (``VDPBF16PS``, 32 products per instruction): half the
weight bytes a batch-1 step streams and half the instructions of a batch-16 step. It runs
where the CPU has ``avx512_bf16`` (read from ``/proc/cpuinfo`` at run time) and the
compiler targets it; ``auto`` never picks it (float32 stays the default where exactness
matters). Its head parameters equal a float32 computation with bf16-rounded weights and
matrix inputs to ~1e-5, and differ from the float32 reference by the rounding (logits
within ~2% of their range for the reference configuration; ~99% of categorical draws from
the same uniforms identical; see ``tests/kernels/test_cpu_bf16.py``).

Numerics: the head parameters agree with the reference step to ~1e-6 relative (float32
with FMA, its own vectorised tanh/sigmoid/exp); the draw follows the reference rules of
:mod:`wavegen.nn.distributions` operation by operation, so the same uniforms give the same
samples except where a uniform lies within rounding error of a class or bin boundary. For
the categorical head that is practically never; on the 16-bit grid of the mixture of
logistics it is ~0.1% of draws (each then one bin off, after which the two runs continue
from different inputs), as between any two float32 implementations.
"""

from __future__ import annotations

import ctypes
import weakref
from pathlib import Path

import torch

from wavegen.errors import KernelUnavailableError, UsageError
from wavegen.kernels.base import (Backend, ConditioningStream, WaveNetSession, WaveNetWeights,
                                  head_kind, prime_layer_inputs, wavenet_support)
from wavegen.native import CLibrary, NativeUnavailable, cache_dir, cpu_flags, find_compiler
from wavegen.utils.tensor_key import tensors_key
from wavegen.utils.threads import free_threads

SOURCE = Path(__file__).with_name("wavenet_step.c")
#: Compiler flags, tried in order (the second set for compilers without OpenMP). No
#: -ffast-math: the draw must round like the reference; -ffp-contract=off keeps ``a * b + c``
#: unfused except where the source asks for an FMA.
FLAG_SETS = (
    ["-O3", "-march=native", "-std=c99", "-fPIC", "-shared", "-ffp-contract=off", "-fopenmp"],
    ["-O3", "-march=native", "-std=c99", "-fPIC", "-shared", "-ffp-contract=off"],
)
ABI_VERSION = 3
_HEADS = {"categorical": 0, "mol": 1}


# --------------------------------------------------------------------------- building
LIBRARY = CLibrary(SOURCE, ABI_VERSION, "wg_abi_version", FLAG_SETS, "cpu backend")


class _Library:
    """The loaded shared library and its vector width."""

    def __init__(self, lib: ctypes.CDLL):
        lib.wg_vector_width.restype = ctypes.c_int
        lib.wg_run.restype = ctypes.c_int
        lib.wg_run.argtypes = [ctypes.POINTER(_Model), ctypes.c_void_p, ctypes.c_void_p,
                               ctypes.c_int64, ctypes.c_int64, ctypes.c_void_p,
                               ctypes.c_void_p, ctypes.c_void_p, ctypes.c_void_p,
                               ctypes.c_double,
                               ctypes.c_void_p, ctypes.c_void_p, ctypes.c_void_p,
                               ctypes.c_void_p, ctypes.c_int64]
        lib.wg_draw.restype = ctypes.c_int
        lib.wg_draw.argtypes = [ctypes.POINTER(_Model), ctypes.c_void_p, ctypes.c_void_p,
                                ctypes.c_int64, ctypes.c_double, ctypes.c_void_p,
                                ctypes.c_void_p]
        lib.wg_has_bf16.restype = ctypes.c_int
        lib.wg_has_bf16.argtypes = []
        lib.wg_vector_math.restype = None
        lib.wg_vector_math.argtypes = [ctypes.c_int, ctypes.c_void_p, ctypes.c_void_p,
                                       ctypes.c_int64]
        self.lib = lib
        self.path = Path(lib._name)
        self.vector_width = lib.wg_vector_width()
        #: Whether this build has the bf16 mode (AVX-512 BF16 dot products).
        self.has_bf16 = bool(lib.wg_has_bf16())


_libraries: dict[int, _Library] = {}


def load_library() -> _Library:
    """The compiled step (built on first use); KernelUnavailableError when it cannot be."""
    try:
        lib = LIBRARY.load()
    except NativeUnavailable as error:
        raise KernelUnavailableError(str(error)) from None
    if id(lib) not in _libraries:
        _libraries[id(lib)] = _Library(lib)
    return _libraries[id(lib)]


def prebuilt_exists() -> bool:
    """Whether a library for this source and machine is in the cache (no compiler needed)."""
    return LIBRARY.prebuilt_exists()


# --------------------------------------------------------------------------- weights
class _Model(ctypes.Structure):
    """Mirror of ``wg_model`` in wavenet_step.c."""

    _fields_ = [(name, ctypes.c_int64) for name in
                ("layers", "R", "G", "S", "P", "k", "C", "head", "mixtures", "bins",
                 "bf16")] + \
               [("log_scale_min", ctypes.c_double)] + \
               [(name, ctypes.c_void_p) for name in
                ("dilation", "ring_len", "ring_off", "conv_w", "conv_b", "res_w", "res_b",
                 "skip_w", "skip_b", "out1_w", "out1_b", "out2_w", "out2_b", "embed")]


def _pack(w: torch.Tensor, vl: int) -> torch.Tensor:
    """``[out, in]`` -> ``[ceil(out / vl), in, vl]`` (zero-padded output channels)."""
    nout, nin = w.shape
    nvec = -(-nout // vl)
    padded = w.new_zeros(nvec * vl, nin)
    padded[:nout] = w
    return padded.view(nvec, vl, nin).transpose(1, 2).contiguous()


def _pack_bf16(w: torch.Tensor, segments: list[int], vl: int) -> torch.Tensor:
    """``[out, in]`` -> bf16 pairs ``[ceil(out / vl), in2, vl, 2]`` (as int16): the input
    columns split into ``segments`` (their lengths), each padded to an even length with a
    zero column, rounded to bfloat16 (nearest even); lane ``o`` of pair ``i`` holds
    ``(W[o, 2i], W[o, 2i + 1])`` of the padded matrix."""
    if sum(segments) != w.shape[1]:
        raise ValueError(f"segments {segments} do not cover {w.shape[1]} input columns")
    pieces = []
    for piece in torch.split(w, segments, dim=1):
        pieces.append(piece)
        if piece.shape[1] % 2:
            pieces.append(w.new_zeros(w.shape[0], 1))
    even = torch.cat(pieces, 1)
    nout, nin = even.shape
    nvec = -(-nout // vl)
    padded = even.new_zeros(nvec * vl, nin)
    padded[:nout] = even
    pairs = padded.to(torch.bfloat16).view(torch.int16).view(nvec, vl, nin // 2, 2)
    return pairs.transpose(1, 2).contiguous()


def _pad(b: torch.Tensor, vl: int) -> torch.Tensor:
    out = b.new_zeros(-(-b.numel() // vl) * vl)
    out[:b.numel()] = b
    return out


class PackedWeights:
    """A model's weights in the kernel's layout (see wavenet_step.c): float32, or bf16 pairs
    with ``bf16=True``."""

    def __init__(self, model, vl: int, bf16: bool = False):
        w = WaveNetWeights.from_model(model, torch.float32)
        c = model.config
        self.R, self.G, self.S = c.residual_channels, c.gate_channels, c.skip_channels
        self.P = model.head.num_params
        self.k = c.kernel_size
        self.dilations = list(w.dilations)
        self.embed = w.embed
        # Each layer's conv matrix [2G, k R] gets the layer's slice of the local
        # projection [2G, C] as more input columns: the kernel projects the upsampled
        # features per step inside the conv instead of reading L * 2G projected channels.
        self.C = c.local_channels if c.has_local else 0
        self.bf16 = bf16

        def pack(matrix, segments):
            return _pack_bf16(matrix, segments, vl) if bf16 else _pack(matrix, vl)

        local = model.local_projection.weight.detach().float()[..., 0] if self.C else None
        conv_segments = [self.R] * self.k + ([self.C] if self.C else [])
        self.conv_w = []
        for layer, cw in enumerate(w.conv_w):
            matrix = cw.permute(1, 0, 2).reshape(2 * self.G, self.k * self.R)
            if local is not None:
                matrix = torch.cat([matrix, local[layer * 2 * self.G:(layer + 1) * 2 * self.G]], 1)
            self.conv_w.append(pack(matrix, conv_segments))
        self.conv_b = [_pad(b, vl) for b in w.conv_b]
        self.res_w = [None if r is None else pack(r, [self.G]) for r in w.res_w]
        self.res_b = [None if r is None else _pad(r, vl) for r in w.res_b]
        self.skip_w = [pack(s, [self.G]) for s in w.skip_w]
        self.skip_b = [_pad(s, vl) for s in w.skip_b]
        self.out1_w, self.out1_b = pack(w.out1_w, [self.S]), _pad(w.out1_b, vl)
        self.out2_w, self.out2_b = pack(w.out2_w, [self.S]), _pad(w.out2_b, vl)
        self.pointer_arrays = {
            name: (ctypes.c_void_p * len(tensors))(
                *[None if t is None else t.data_ptr() for t in tensors])
            for name, tensors in (("conv_w", self.conv_w), ("conv_b", self.conv_b),
                                  ("res_w", self.res_w), ("res_b", self.res_b),
                                  ("skip_w", self.skip_w), ("skip_b", self.skip_b))}


_packs: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()


def packed_weights(model, vl: int, bf16: bool = False) -> PackedWeights:
    """The model's packed weights, cached (per precision) until a parameter changes (in
    place or replaced)."""
    key = (vl, tensors_key(model.parameters()))
    cached = _packs.setdefault(model, {}).get(bf16)
    if cached is not None and cached[0] == key:
        return cached[1]
    packed = PackedWeights(model, vl, bf16)
    _packs[model][bf16] = (key, packed)
    return packed


def _pointer(t: torch.Tensor | None) -> int | None:
    return None if t is None else t.data_ptr()


# --------------------------------------------------------------------------- session
class CPUSession(WaveNetSession):
    """Ring buffers of every layer for ``batch`` items, advanced by the C step.

    ``threads`` (default ``torch.get_num_threads()``) bounds the threads a call uses; each
    runs its own share of the batch, so a batch of one runs on one thread. ``bf16``: the
    bf16 mode (see the module docstring; :class:`CPUBF16Session`).
    """

    #: Whether sessions of this class run the bf16 mode.
    bf16 = False

    def __init__(self, model, batch, length, local, global_cond, prompt,
                 threads: int | None = None):
        super().__init__(model, batch, length, local, global_cond, prompt)
        self.library = load_library()
        if self.bf16 and not self.library.has_bf16:
            raise KernelUnavailableError(
                f"the cpu kernel at {self.library.path} was built without AVX-512 BF16 "
                "(the compiler does not target it)")
        self.threads = threads or torch.get_num_threads()
        vl = self.library.vector_width
        self.kind = head_kind(model)
        self.weights = w = packed_weights(model, vl, self.bf16)
        self.stream = ConditioningStream(model, batch, length, local, global_cond)
        lengths = [(w.k - 1) * d + 1 for d in w.dilations]
        offsets, total = [], 0
        for n in lengths:
            offsets.append(total)
            total += batch * n * w.R
        self.ring = torch.zeros(total, dtype=torch.float32)
        self.pos = torch.zeros(len(lengths), dtype=torch.int64)
        self._ring_len = torch.tensor(lengths, dtype=torch.int64)
        self._ring_off = torch.tensor(offsets, dtype=torch.int64)
        self._dilation = torch.tensor(w.dilations, dtype=torch.int64)
        if prompt is not None and prompt.shape[-1] > 0:
            inputs = prime_layer_inputs(model, prompt, self.stream)
            for layer, (x, n, off) in enumerate(zip(inputs, lengths, offsets)):
                context = n - 1
                view = self.ring[off:off + batch * n * w.R].view(batch, n, w.R)
                keep = x[..., x.shape[-1] - min(context, x.shape[-1]):]
                view[:, context - keep.shape[-1]:context] = keep.transpose(1, 2).float()
                self.pos[layer] = context
        head = model.head
        arrays = w.pointer_arrays
        #: [B, 2] float64: summed NLL and entropy of the drawn samples (categorical head).
        self._diagnostics = torch.zeros(batch, 2, dtype=torch.float64) \
            if self.kind == "categorical" else None
        self._drawn = 0
        self._global = None if self.stream.global_bias is None else \
            self.stream.global_bias.detach().to(torch.float32).contiguous()
        self._model = _Model(
            layers=len(lengths), R=w.R, G=w.G, S=w.S, P=w.P, k=w.k, C=w.C,
            head=_HEADS[self.kind], bf16=int(self.bf16),
            mixtures=getattr(head, "num_mixtures", 0), bins=getattr(head, "bins", 0),
            log_scale_min=float(getattr(head, "log_scale_min", 0.0)),
            dilation=self._dilation.data_ptr(), ring_len=self._ring_len.data_ptr(),
            ring_off=self._ring_off.data_ptr(),
            conv_w=ctypes.addressof(arrays["conv_w"]), conv_b=ctypes.addressof(arrays["conv_b"]),
            res_w=ctypes.addressof(arrays["res_w"]), res_b=ctypes.addressof(arrays["res_b"]),
            skip_w=ctypes.addressof(arrays["skip_w"]), skip_b=ctypes.addressof(arrays["skip_b"]),
            out1_w=w.out1_w.data_ptr(), out1_b=w.out1_b.data_ptr(),
            out2_w=w.out2_w.data_ptr(), out2_b=w.out2_b.data_ptr(), embed=w.embed.data_ptr())

    def in_step_diagnostics(self):
        """The categorical head's NLL and entropy, accumulated by the kernel's draw (see
        :meth:`Session.in_step_diagnostics`); None for the mixture heads."""
        if self._diagnostics is None or self._drawn == 0:
            return None
        means = self._diagnostics / self._drawn
        return means[:, 0].float(), means[:, 1].float()

    def _embed(self, previous: torch.Tensor) -> torch.Tensor:
        """The first step's input ``[B, R]``, as :meth:`WaveNet._embed_step` computes it."""
        if previous.shape != (self.batch,):
            raise UsageError(f"previous must be [{self.batch}], got {tuple(previous.shape)}")
        previous = previous.cpu()
        embed = self.weights.embed
        if self.kind == "categorical":
            return embed[previous.long()].contiguous()
        return (previous.to(torch.float32)[:, None] * embed[0] + embed[1]).contiguous()

    def _run(self, n: int, first, uniforms, temperature: float, classes, values, params,
             diagnostics=None):
        if self.stream.upsampled is not None and self.time + n > self.length:
            raise UsageError(f"the local conditioning covers {self.length} samples; step "
                             f"{self.time + n} is past its end")
        local = None
        if self.stream.upsampled is not None:  # [B, C, T] -> time-major [B, n, C]
            local = self.stream.upsampled[..., self.time:self.time + n].detach() \
                .to(torch.float32).transpose(1, 2).contiguous()
        status = self.library.lib.wg_run(
            ctypes.byref(self._model), self.ring.data_ptr(), self.pos.data_ptr(), self.batch,
            n, _pointer(first), _pointer(local), _pointer(self._global), _pointer(uniforms),
            float(temperature),
            _pointer(classes), _pointer(values), _pointer(params), _pointer(diagnostics),
            free_threads(self.threads))  # fewer on a busy machine; items stay on one thread
        if status != 0:
            raise RuntimeError(f"cpu sampling kernel failed (status {status})")
        self.time += n

    @torch.no_grad()
    def step_params(self, previous: torch.Tensor) -> torch.Tensor:
        params = torch.empty(self.batch, 1, self.weights.P, dtype=torch.float32)
        self._run(1, self._embed(previous), None, 0.0, None, None, params)
        return params[:, 0]

    @torch.no_grad()
    def generate(self, previous, uniforms, temperature):
        uniforms, temperature = self.check_generate_args(uniforms, temperature, "cpu")
        n = uniforms.shape[1]
        dtype = torch.int64 if self.kind == "categorical" else torch.float32
        out = torch.empty(self.batch, n, dtype=dtype)
        first = self._embed(previous)
        step = self.stream.chunk_length()
        for t0 in range(0, n, step):
            m = min(step, n - t0)
            chunk = out if m == n else torch.empty(self.batch, m, dtype=dtype)
            u = uniforms[:, t0:t0 + m].contiguous()
            self._run(m, first, u, temperature, chunk if dtype == torch.int64 else None,
                      chunk if dtype == torch.float32 else None, None, self._diagnostics)
            if chunk is not out:
                out[:, t0:t0 + m] = chunk
            first = None  # the last drawn sample is already fed back into the ring
        self._drawn += n
        return out


class CPUBackend(Backend):
    name = "cpu"
    priority = {"cpu": 10}
    session_class = CPUSession

    def unavailable(self, device):
        device = torch.device(device)
        if device.type != "cpu":
            return f"the cpu backend runs models on the CPU, not {device.type}"
        if find_compiler() is not None or prebuilt_exists():
            return None
        return "no C compiler found (set CC or install gcc or clang)"

    def supports(self, model):
        reason = wavenet_support(model, self.name)
        if reason is not None:
            return reason
        kind = head_kind(model)
        if kind == "gaussian":
            return "the Gaussian head is not implemented by the cpu kernel"
        dtypes = sorted({str(p.dtype) for p in model.parameters()})
        if dtypes != ["torch.float32"]:
            return f"the cpu kernel needs float32 weights, got {', '.join(dtypes)}"
        if model.config.kernel_size > 64:
            return "the cpu kernel supports kernel sizes up to 64"
        return None


class CPUBF16Session(CPUSession):
    """A :class:`CPUSession` in the bf16 mode (bf16 weights and matrix inputs, float32
    accumulation by AVX-512 BF16 dot products)."""

    bf16 = True


class CPUBF16Backend(CPUBackend):
    """``cpu-bf16``: the cpu kernel with bf16 matrices; named explicitly, never by ``auto``."""

    name = "cpu-bf16"
    priority: dict[str, int] = {}
    session_class = CPUBF16Session

    def unavailable(self, device):
        reason = super().unavailable(device)
        if reason is not None:
            return reason
        if "avx512_bf16" not in cpu_flags():
            return "this CPU has no AVX-512 BF16 instructions (avx512_bf16 in /proc/cpuinfo)"
        return None


__all__ = ["CPUBF16Backend", "CPUBF16Session", "CPUBackend", "CPUSession", "PackedWeights",
           "cache_dir", "find_compiler", "load_library", "packed_weights"]
