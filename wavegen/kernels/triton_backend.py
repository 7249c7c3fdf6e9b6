"""The ``triton`` backend: one fused Triton kernel per residual layer and one for the head.

Per sample, ``L`` launches of :func:`_layer_kernel` (dilated conv from the layer's ring
buffer, conditioning, gate, residual and skip 1x1 convs, skip accumulation, ring write) and
one of :func:`_head_kernel` (output stack, draw from the pre-drawn uniforms, feedback of
the drawn sample as the next step's input). Every kernel runs one program per batch item
(the grid is ``(B,)``); channel counts are run-time values, the block sizes
(``tl.constexpr``) are the next powers of two and the rest is masked, so one compilation
serves any width.

State on the device, so that a step's launches never depend on host values and a chunk of
steps can be captured once as a CUDA graph and replayed (:class:`TritonSession`):

* ``time``: an int64 scalar tensor, the index of the step being computed; the head kernel
  increments it. Layer ``l``'s input at time ``t`` lives in slot ``t % len_l`` of its ring
  buffer ``[B, len_l, R]`` (``len_l = (k - 1) d_l + 1``); slots never written are zero,
  the causal zero padding.
* ``x``: ``[2, B, R]`` ping-pong buffers of the residual stream (layer ``l`` reads
  ``x[l % 2]``, writes ``x[(l + 1) % 2]``); the head writes the next input into ``x[0]``.
* ``skip``: ``[B, S]``, the sum of the skips (the first layer stores, the others add).

Numerics: everything in float32 (weights are packed to float32 once, whatever the model's
dtype). The draw follows :mod:`wavegen.nn.distributions` operation by operation: the
categorical draw is ``log_softmax`` (as ``x - (max + log(sum(exp(x - max))))``), division
by ``T`` (round-to-nearest division), ``exp(z - max)``, an inclusive scan (the cumulative
sum), count of ``c <= u * c[K-1]`` clamped to ``K - 1`` (first argmax at ``T = 0``); the
mixture of logistics picks the component by the same rule on its raw logits, then
``x = mean + (T * exp(max(log_scale, min))) * (log(u1) - log1p(-u1))``, snapped to the grid
in float64 with an exact round-half-even (floor and comparison of the exact fraction).
The head kernel is compiled without FMA contraction (``enable_fp_fusion=False``) so that
``i * step - 1`` and ``mean + scale * l`` round like the separate torch operations. On
CUDA the transcendental functions are libdevice's (``__nv_expf`` and friends, what torch's
CUDA kernels call too, though Triton links them flushing subnormals to zero); under the
interpreter (``TRITON_INTERPRET=1``, the CPU tests) they are NumPy's, with ``tanh`` and
``log1p`` written out from ``exp`` and ``log``. Sums run in a different order than torch's
BLAS, so head parameters agree with the reference to ~1e-6 relative and draws agree except
where a uniform lies within rounding error of a class or bin boundary (see the module
docstring of :mod:`wavegen.nn.distributions`; for the 65536-bin grid that is a few draws
in a thousand, one bin apart).

Kernels are built (``triton.jit``) on first use, once per value of
``triton.knobs.runtime.interpret``, so setting ``TRITON_INTERPRET=1`` any time before the
first session is enough (no module reload needed).
"""

from __future__ import annotations

import os

import torch

from wavegen.errors import KernelUnavailableError, UsageError
from wavegen.kernels.base import (Backend, ConditioningStream, GraphedChunks, WaveNetSession,
                                  WaveNetWeights, head_kind, prime_layer_inputs, wavenet_support)

try:  # optional dependency: the registry reports the reason instead of failing
    import triton
    import triton.language as tl
    # The combine functions of tl.sum / tl.max / tl.argmax / tl.cumsum, passed to the
    # builtins tl.reduce / tl.associative_scan directly: no nested @jit calls, which the
    # interpreter cannot run when triton was imported before TRITON_INTERPRET was set
    # (and which cost it a re-patch of triton.language per call).
    _SUM = tl.standard._sum_combine
    _MAX = tl.standard._elementwise_max
    _ARGMAX = tl.standard._argmax_combine_tie_break_left
    _IMPORT_ERROR: str | None = None
except Exception as error:  # noqa: BLE001 - any failure to import means "unavailable"
    triton = tl = _SUM = _MAX = _ARGMAX = None
    _IMPORT_ERROR = f"triton is not usable ({type(error).__name__}: {error})"

try:
    from triton.language.extra import libdevice
except Exception:  # noqa: BLE001 - only used on CUDA (PRECISE), never traced without it
    libdevice = None

#: Steps captured per CUDA graph (one graph per temperature, replayed for every chunk).
GRAPH_CHUNK = 64
_HEADS = {"categorical": 0, "mol": 1}


def _interpreting() -> bool:
    if triton is None:
        return False
    knobs = getattr(triton, "knobs", None)
    if knobs is not None:
        return bool(knobs.runtime.interpret)
    return os.environ.get("TRITON_INTERPRET") == "1"


def _pow2(n: int) -> int:
    return 1 << max(0, int(n) - 1).bit_length()


# --------------------------------------------------------------------------- kernels
# Plain functions, turned into kernels by _kernels() on first use (see the module docstring).
# No helper functions and no @jit library functions (tl.sum, tl.zeros, ...): only builtins.

def _layer_kernel(x_in_ptr, x_out_ptr, ring_ptr, cond_ptr, cond_off, cond_stride_b, time_ptr,
                  conv_w_ptr, conv_b_ptr, res_w_ptr, res_b_ptr, skip_w_ptr, skip_b_ptr,
                  skip_ptr, R, G, S, length, dilation,
                  K: tl.constexpr, BLOCK_K: tl.constexpr, BLOCK_R: tl.constexpr,
                  BLOCK_G: tl.constexpr, CHUNK_G: tl.constexpr, BLOCK_S: tl.constexpr,
                  HAS_COND: tl.constexpr, HAS_RES: tl.constexpr, FIRST: tl.constexpr,
                  PRECISE: tl.constexpr):
    """One residual layer for batch item ``program_id(0)`` at the time in ``time_ptr``.

    ``x_in`` / ``x_out`` ``[B, R]``; ``ring`` ``[B, length, R]``; conditioning of this layer
    at ``cond_ptr + b * cond_stride_b + cond_off + [0, 2G)``; ``conv_w`` ``[K, 2G, R]``
    (tap ``j`` meets the input at ``t - (K - 1 - j) * dilation``), ``conv_b`` ``[2G]``,
    ``res_w`` ``[R, G]``, ``skip_w`` ``[S, G]``; ``skip`` ``[B, S]`` accumulates.

    The gate pre-activations of a chunk of gate channels come from one ``[taps, channels,
    2 (tanh / sigmoid half), R]`` weight tile, reduced over ``R`` and the taps. Index
    arithmetic is int64 throughout.
    """
    pid = tl.program_id(0).to(tl.int64)
    t = tl.load(time_ptr).to(tl.int64)
    offs_r = tl.arange(0, BLOCK_R).to(tl.int64)
    mask_r = offs_r < R
    offs_s = tl.arange(0, BLOCK_S).to(tl.int64)
    mask_s = offs_s < S
    offs_k = tl.arange(0, BLOCK_K).to(tl.int64)
    half = tl.arange(0, 2).to(tl.int64)
    ring_row = ring_ptr + pid * length * R
    x = tl.load(x_in_ptr + pid * R + offs_r, mask=mask_r, other=0.0)
    # The K taps [BLOCK_K, BLOCK_R]: the ring's past inputs, the new input x for the last tap.
    slots = (t % length + length - (K - 1 - offs_k) * dilation) % length
    taps = tl.load(ring_row + slots[:, None] * R + offs_r[None, :],
                   mask=(offs_k < K - 1)[:, None] & mask_r[None, :], other=0.0)
    taps = tl.where((offs_k == K - 1)[:, None], x[None, :], taps)[:, None, None, :]
    w_off = (offs_k[:, None, None, None] * (2 * G * R) + half[None, None, :, None] * (G * R)
             + offs_r[None, None, None, :])
    w_mask = (offs_k < K)[:, None, None, None] & mask_r[None, None, None, :]
    gate_off = half[None, :] * G
    x_acc = tl.full([BLOCK_R], 0.0, tl.float32)
    s_acc = tl.full([BLOCK_S], 0.0, tl.float32)
    for g0 in tl.range(0, BLOCK_G, CHUNK_G):
        offs_g = g0 + tl.arange(0, CHUNK_G).to(tl.int64)
        mask_g = offs_g < G
        w = tl.load(conv_w_ptr + (w_off + (offs_g * R)[None, :, None, None]),
                    mask=w_mask & mask_g[None, :, None, None], other=0.0)
        h = tl.reduce(tl.reduce(w * taps, 3, _SUM), 0, _SUM)  # [CHUNK_G, 2]
        h = h + tl.load(conv_b_ptr + (offs_g[:, None] + gate_off), mask=mask_g[:, None],
                        other=0.0)
        if HAS_COND:
            c_row = cond_ptr + pid * cond_stride_b + cond_off
            h = h + tl.load(c_row + (offs_g[:, None] + gate_off), mask=mask_g[:, None],
                            other=0.0).to(tl.float32)
        a, b = tl.split(h)
        if PRECISE:
            tanh_a = libdevice.tanh(a)
            sig_b = 1.0 / (1.0 + libdevice.exp(-b))
        else:
            e = tl.exp(-2.0 * tl.abs(a))
            tanh_a = tl.where(a < 0, -1.0, 1.0) * ((1.0 - e) / (1.0 + e))
            sig_b = 1.0 / (1.0 + tl.exp(-b))
        z = tl.where(mask_g, tanh_a * sig_b, 0.0)[:, None]
        if HAS_RES:
            wr = tl.load(res_w_ptr + (offs_r[None, :] * G + offs_g[:, None]),
                         mask=mask_g[:, None] & mask_r[None, :], other=0.0)
            x_acc += tl.reduce(wr * z, 0, _SUM)
        ws = tl.load(skip_w_ptr + (offs_s[None, :] * G + offs_g[:, None]),
                     mask=mask_g[:, None] & mask_s[None, :], other=0.0)
        s_acc += tl.reduce(ws * z, 0, _SUM)
    if HAS_RES:
        x_out = x + (x_acc + tl.load(res_b_ptr + offs_r, mask=mask_r, other=0.0))
        tl.store(x_out_ptr + pid * R + offs_r, x_out, mask=mask_r)
    skip = s_acc + tl.load(skip_b_ptr + offs_s, mask=mask_s, other=0.0)
    skip_row = skip_ptr + pid * S + offs_s
    if FIRST:
        tl.store(skip_row, skip, mask=mask_s)
    else:
        tl.store(skip_row, tl.load(skip_row, mask=mask_s, other=0.0) + skip, mask=mask_s)
    tl.store(ring_row + (t % length) * R + offs_r, x, mask=mask_r)


def _head_kernel(skip_ptr, out1_w_ptr, out1_b_ptr, out2_w_ptr, out2_b_ptr, params_ptr,
                 uni_ptr, uni_off, uni_stride_b, out_ptr, out_off, out_stride_b,
                 embed_ptr, x_next_ptr, time_ptr, temperature, log_scale_min, bins, bin_step,
                 S, P, R, N,
                 HEAD: tl.constexpr, DRAW: tl.constexpr, GREEDY: tl.constexpr,
                 BLOCK_S: tl.constexpr, CHUNK_O: tl.constexpr, BLOCK_P: tl.constexpr,
                 BLOCK_R: tl.constexpr, PRECISE: tl.constexpr):
    """Output stack and draw for batch item ``program_id(0)``; increments ``time``.

    ``params = out2(relu(out1(relu(skip))))`` is written to ``params`` ``[B, P]``. With
    ``DRAW`` the sample (int64 class or float32 grid value) goes to
    ``out_ptr + b * out_stride_b + out_off`` and the next step's input ``[R]`` to
    ``x_next``. ``HEAD`` 0: categorical, ``N = P`` classes; 1: mixture of ``N``
    logistics (``P = 3N``: logits, means, log-scales). Uniforms at
    ``uni_ptr + b * uni_stride_b + uni_off``. The draw works on the whole parameter
    vector, masked to the logits (the first ``N`` entries).
    """
    pid = tl.program_id(0).to(tl.int64)
    offs_s = tl.arange(0, BLOCK_S).to(tl.int64)
    mask_s = offs_s < S
    offs_p = tl.arange(0, BLOCK_P).to(tl.int64)
    mask_p = offs_p < P
    h0 = tl.maximum(tl.load(skip_ptr + pid * S + offs_s, mask=mask_s, other=0.0), 0.0)
    acc = tl.full([BLOCK_P], 0.0, tl.float32)
    for o0 in tl.range(0, BLOCK_S, CHUNK_O):
        offs_o = o0 + tl.arange(0, CHUNK_O).to(tl.int64)
        mask_o = offs_o < S
        w1 = tl.load(out1_w_ptr + (offs_o[:, None] * S + offs_s[None, :]),
                     mask=mask_o[:, None] & mask_s[None, :], other=0.0)
        h1 = tl.reduce(w1 * h0[None, :], 1, _SUM) + tl.load(out1_b_ptr + offs_o, mask=mask_o,
                                                              other=0.0)
        h1 = tl.maximum(h1, 0.0)
        w2 = tl.load(out2_w_ptr + (offs_p[None, :] * S + offs_o[:, None]),
                     mask=mask_o[:, None] & mask_p[None, :], other=0.0)
        acc += tl.reduce(w2 * h1[:, None], 0, _SUM)
    params = acc + tl.load(out2_b_ptr + offs_p, mask=mask_p, other=0.0)
    tl.store(params_ptr + pid * P + offs_p, params, mask=mask_p)
    if DRAW:
        is_logit = offs_p < N
        logits = tl.where(is_logit, params, float("-inf"))
        if HEAD == 0:
            # log_softmax as torch computes it: x - (max + log(sum(exp(x - max))))
            top = tl.reduce(logits, 0, _MAX)
            if PRECISE:
                total = tl.reduce(tl.where(is_logit, libdevice.exp(logits - top), 0.0), 0, _SUM)
                logits = logits - (top + libdevice.log(total))
            else:
                total = tl.reduce(tl.where(is_logit, tl.exp(logits - top), 0.0), 0, _SUM)
                logits = logits - (top + tl.log(total))
        if GREEDY:
            _, index = tl.reduce((logits, offs_p), 0, _ARGMAX)  # the first argmax
            index = index.to(tl.int64)
        else:
            z = tl.math.div_rn(logits, tl.full([BLOCK_P], temperature, tl.float32))
            z = z - tl.reduce(z, 0, _MAX)
            if PRECISE:
                weights = tl.where(is_logit, libdevice.exp(z), 0.0)
            else:
                weights = tl.where(is_logit, tl.exp(z), 0.0)
            cdf = tl.associative_scan(weights, 0, _SUM)
            u_first = tl.load(uni_ptr + pid * uni_stride_b + uni_off)
            threshold = u_first * tl.reduce(tl.where(offs_p == N - 1, cdf, 0.0), 0, _SUM)
            index = tl.reduce(tl.where(is_logit & (cdf <= threshold), 1, 0), 0, _SUM)
            index = tl.minimum(index.to(tl.int64), N - 1)
        offs_r = tl.arange(0, BLOCK_R).to(tl.int64)
        mask_r = offs_r < R
        if HEAD == 0:
            tl.store(out_ptr + pid * out_stride_b + out_off, index)
            row = tl.load(embed_ptr + index * R + offs_r, mask=mask_r, other=0.0)
            tl.store(x_next_ptr + pid * R + offs_r, row, mask=mask_r)
        else:
            x = tl.reduce(tl.where(offs_p == N + index, params, 0.0), 0, _SUM)
            if not GREEDY:
                log_scale = tl.reduce(tl.where(offs_p == 2 * N + index,
                                               tl.maximum(params, log_scale_min), 0.0), 0, _SUM)
                u = tl.load(uni_ptr + pid * uni_stride_b + uni_off + 1)
                if PRECISE:
                    scale = temperature * libdevice.exp(log_scale)
                    logistic = libdevice.log(u) - libdevice.log1p(-u)
                else:
                    scale = temperature * tl.exp(log_scale)
                    w = 1.0 - u  # log1p(-u) = log(w) * (-u) / (w - 1), exact-ish
                    log1p = tl.where(w == 1.0, -u, tl.log(w) * (-u / (w - 1.0)))
                    logistic = tl.log(u) - log1p
                x = x + scale * logistic
            # snap: i = round_half_even((clamp(x, -1, 1) + 1) * ((bins - 1) / 2)) in float64
            y = tl.minimum(tl.maximum(x.to(tl.float64), -1.0), 1.0)
            y = (y + 1.0) * ((bins - 1).to(tl.float64) * 0.5)
            low = tl.floor(y)
            frac = y - low
            odd = (low - 2.0 * tl.floor(low * 0.5)) == 1.0
            up = (frac > 0.5) | ((frac == 0.5) & odd)
            level = (low + tl.where(up, 1.0, 0.0)).to(tl.float32)
            value = level * bin_step - 1.0
            tl.store(out_ptr + pid * out_stride_b + out_off, value)
            weight = tl.load(embed_ptr + offs_r, mask=mask_r, other=0.0)
            bias = tl.load(embed_ptr + R + offs_r, mask=mask_r, other=0.0)
            tl.store(x_next_ptr + pid * R + offs_r, value * weight + bias, mask=mask_r)
    t = tl.load(time_ptr)
    tl.store(time_ptr, t + 1, mask=pid == 0)


_BUILT: dict[bool, tuple] = {}


def _kernels():
    """(layer kernel, head kernel) for the current interpreter setting."""
    interpret = _interpreting()
    if interpret not in _BUILT:
        layer = triton.jit(_layer_kernel, do_not_specialize=["cond_off", "cond_stride_b"])
        head = triton.jit(_head_kernel, do_not_specialize=["uni_off", "uni_stride_b", "out_off",
                                                           "out_stride_b", "temperature"])
        _BUILT[interpret] = (layer, head)
    return _BUILT[interpret]


# --------------------------------------------------------------------------- session
class TritonSession(WaveNetSession):
    """Device-resident state of one generation, advanced by the Triton kernels.

    On CUDA, :meth:`generate` runs chunks of :data:`GRAPH_CHUNK` steps: the first chunk at
    a temperature eagerly (compiling the kernels), the next one is captured into a
    ``torch.cuda.CUDAGraph`` that is replayed for every later chunk (uniforms and
    conditioning are copied into static buffers first). Remainders shorter than a chunk,
    the CPU interpreter, and a failed capture run the same launches eagerly.
    """

    def __init__(self, model, batch, length, local, global_cond, prompt):
        super().__init__(model, batch, length, local, global_cond, prompt)
        self.kind = head_kind(model)
        if self.kind not in _HEADS:
            raise KernelUnavailableError(f"triton backend: the {self.kind} head is not implemented")
        self.device = device = next(model.parameters()).device
        self.layer_kernel, self.head_kernel = _kernels()
        self.precise = not _interpreting()
        w = WaveNetWeights.from_model(model, torch.float32)
        self.w = w = _to_device(w, device)
        c = model.config
        self.R, self.G, self.S = c.residual_channels, c.gate_channels, c.skip_channels
        self.P = model.head.num_params
        self.N = self.P if self.kind == "categorical" else model.head.num_mixtures
        self.k = w.kernel_size
        self.lengths = [(self.k - 1) * d + 1 for d in w.dilations]
        self.stream = ConditioningStream(model, batch, length, local, global_cond, torch.float32)
        self.rings = [torch.zeros(batch, n, self.R, device=device) for n in self.lengths]
        self.x = torch.zeros(2, batch, self.R, device=device)
        self.skip = torch.zeros(batch, self.S, device=device)
        self.params = torch.zeros(batch, self.P, device=device)
        self.time_t = torch.full((1,), self.time, dtype=torch.int64, device=device)
        if prompt is not None and prompt.shape[-1] > 0:
            inputs = prime_layer_inputs(model, prompt, self.stream)
            count = prompt.shape[-1]
            for ring, x, n in zip(self.rings, inputs, self.lengths):
                keep = min(n - 1, count)
                times = torch.arange(count - keep, count, device=device)
                ring[:, times % n, :] = x[..., x.shape[-1] - keep:].transpose(1, 2).to(device,
                                                                                 torch.float32)
        # Block sizes: powers of two covering the widths; on the GPU the gate and the output
        # stack are walked in chunks (register pressure), under the interpreter in one go
        # (every operation costs Python overhead there).
        self.block_k, self.block_r, self.block_g = _pow2(self.k), _pow2(self.R), _pow2(self.G)
        self.block_s, self.block_p = _pow2(self.S), _pow2(self.P)
        # (~4096-element tiles and 8 warps compile without spills for R = 64, G = 128,
        # S = 256 on sm_90; the chunk loops are not unrolled, which keeps the pressure flat).
        self.chunk_g, self.chunk_o = self.block_g, self.block_s
        if self.precise:
            gate_tile = max(2 * self.block_k * self.block_r, self.block_s)
            self.chunk_g = min(self.block_g, max(1, 4096 // gate_tile))
            self.chunk_o = min(self.block_s, max(1, 4096 // max(self.block_s, self.block_p)))
        head = model.head
        self.bins = int(getattr(head, "bins", 2))
        self.log_scale_min = float(getattr(head, "log_scale_min", 0.0))
        self.sample_dtype = torch.int64 if self.kind == "categorical" else torch.float32
        self._cond = None  # (t0, t1, [B, t1 - t0, L * 2G]) cache for eager steps
        self.graphs = GraphedChunks(self.device, batch, GRAPH_CHUNK)

    # ----------------------------------------------------------------- helpers
    def _set_input(self, previous: torch.Tensor) -> None:
        """``x[0]`` = the first step's input, as :meth:`WaveNet._embed_step` computes it."""
        if previous.shape != (self.batch,):
            raise UsageError(f"previous must be [{self.batch}], got {tuple(previous.shape)}")
        previous = previous.to(self.device)
        if self.kind == "categorical":
            self.x[0].copy_(self.w.embed[previous.long()])
        else:
            self.x[0].copy_(previous.to(torch.float32)[:, None] * self.w.embed[0] + self.w.embed[1])

    def _cond_at(self, t: int):
        """(tensor ``[B, m, L * 2G]``, row of time ``t``) or (None, 0)."""
        if not self.stream.conditioned:
            return None, 0
        if self._cond is None or not self._cond[0] <= t < self._cond[1]:
            t1 = max(t + 1, min(t + self.stream.chunk_length(), self.length))
            self._cond = (t, t1, self.stream.chunk(t, t1))
        return self._cond[2], t - self._cond[0]

    def _launch_step(self, cond, row, uniforms, u_row, out, o_row, draw, temperature):
        """Launches of one step: every layer, then the head (which advances ``time``)."""
        R, G, S = self.R, self.G, self.S
        grid = (self.batch,)
        w = self.w
        for i, (ring, n, d) in enumerate(zip(self.rings, self.lengths, w.dilations)):
            has_res = w.res_w[i] is not None
            self.layer_kernel[grid](
                self.x[i % 2], self.x[(i + 1) % 2], ring,
                cond if cond is not None else self.skip,
                (row * cond.stride(1) + i * 2 * G) if cond is not None else 0,
                cond.stride(0) if cond is not None else 0, self.time_t,
                w.conv_w[i], w.conv_b[i], w.res_w[i] if has_res else w.skip_w[i],
                w.res_b[i] if has_res else w.skip_b[i], w.skip_w[i], w.skip_b[i], self.skip,
                R, G, S, n, d,
                K=self.k, BLOCK_K=self.block_k, BLOCK_R=self.block_r, BLOCK_G=self.block_g,
                CHUNK_G=self.chunk_g,
                BLOCK_S=self.block_s, HAS_COND=cond is not None, HAS_RES=has_res,
                FIRST=i == 0, PRECISE=self.precise, num_warps=8, enable_fp_fusion=True)
        temperature = float(temperature)
        self.head_kernel[grid](
            self.skip, w.out1_w, w.out1_b, w.out2_w, w.out2_b, self.params,
            uniforms if draw else self.params, u_row * uniforms.stride(1) if draw else 0,
            uniforms.stride(0) if draw else 0,
            out if draw else self.params, o_row if draw else 0, out.stride(0) if draw else 0,
            w.embed, self.x[0], self.time_t, temperature if temperature > 0 else 1.0,
            self.log_scale_min, self.bins, 2.0 / (self.bins - 1), S, self.P, R, self.N,
            HEAD=_HEADS[self.kind], DRAW=draw, GREEDY=temperature == 0.0,
            BLOCK_S=self.block_s, CHUNK_O=self.chunk_o, BLOCK_P=self.block_p,
            BLOCK_R=self.block_r, PRECISE=self.precise, num_warps=8, enable_fp_fusion=False)

    # ----------------------------------------------------------------- interface
    @torch.no_grad()
    def step_params(self, previous: torch.Tensor) -> torch.Tensor:
        self._set_input(previous)
        cond, row = self._cond_at(self.time)
        self._launch_step(cond, row, None, 0, None, 0, False, 1.0)
        self.time += 1
        return self.params.clone()

    @torch.no_grad()
    def generate(self, previous, uniforms, temperature):
        uniforms, temperature = self.check_generate_args(uniforms, temperature, self.device)
        n = uniforms.shape[1]
        out = torch.empty(self.batch, n, dtype=self.sample_dtype, device=self.device)
        self._set_input(previous)
        t = 0
        if self.device.type == "cuda" and self.precise:
            while (self.graphs.enabled and n - t >= GRAPH_CHUNK
                   and self._graph_fits()):
                self._graph_chunk(uniforms[:, t:t + GRAPH_CHUNK], temperature)
                out[:, t:t + GRAPH_CHUNK] = self.graphs.static["out"]
                t += GRAPH_CHUNK
        for s in range(t, n):
            cond, row = self._cond_at(self.time)
            self._launch_step(cond, row, uniforms, s, out, s, True, temperature)
            self.time += 1
        return out

    # ----------------------------------------------------------------- CUDA graphs
    def _graph_fits(self) -> bool:
        return self.stream.upsampled is None or self.time + GRAPH_CHUNK <= self.length

    def _graph_chunk(self, uniforms: torch.Tensor, temperature: float) -> None:
        """:data:`GRAPH_CHUNK` steps from static buffers: eager, captured or replayed."""
        cond = self.stream.chunk(self.time, self.time + GRAPH_CHUNK)
        static = self.graphs.stage(uniforms, cond, self.sample_dtype)

        def launches():
            for s in range(GRAPH_CHUNK):
                self._launch_step(static["cond"], s, static["uniforms"], s, static["out"], s,
                                  True, temperature)

        self.graphs.run(temperature, launches)
        self.time += GRAPH_CHUNK


def _to_device(w: WaveNetWeights, device) -> WaveNetWeights:
    def move(t):
        return None if t is None else t.to(device).contiguous()

    return WaveNetWeights(
        embed=move(w.embed), conv_w=[move(t) for t in w.conv_w],
        conv_b=[move(t) for t in w.conv_b], res_w=[move(t) for t in w.res_w],
        res_b=[move(t) for t in w.res_b], skip_w=[move(t) for t in w.skip_w],
        skip_b=[move(t) for t in w.skip_b], out1_w=move(w.out1_w), out1_b=move(w.out1_b),
        out2_w=move(w.out2_w), out2_b=move(w.out2_b), dilations=w.dilations,
        kernel_size=w.kernel_size)


class TritonBackend(Backend):
    name = "triton"
    priority = {"cuda": 20}
    session_class = TritonSession

    def unavailable(self, device):
        if _IMPORT_ERROR is not None:
            return _IMPORT_ERROR
        device = torch.device(device)
        if _interpreting():
            return None
        if device.type == "cuda" and torch.cuda.is_available():
            return None
        return "Triton needs a CUDA GPU (or TRITON_INTERPRET=1 for tests)"

    def supports(self, model):
        reason = wavenet_support(model, self.name)
        if reason is not None:
            return reason
        kind = head_kind(model)
        if kind not in _HEADS:
            return f"the {kind} head is not implemented by the triton kernels"
        dtypes = {p.dtype for p in model.parameters()}
        allowed = {torch.float32, torch.bfloat16, torch.float16}
        if not dtypes <= allowed:
            names = ", ".join(sorted(str(d) for d in dtypes - allowed))
            return f"the triton kernels need float32/bfloat16/float16 weights, got {names}"
        return None


__all__ = ["TritonBackend", "TritonSession", "GRAPH_CHUNK"]
