"""The ``samplernn-cpu`` backend: SampleRNN's incremental step, whole chunks at a time.

The reference step (:meth:`SampleRNN.step <wavegen.models.samplernn.SampleRNN.step>`)
rebuilds its history, reads every tier through ``nn.Linear`` / ``nn.GRU`` modules and goes
back to the driver for each draw. A :class:`SampleRNNCPUSession` runs a whole chunk of
steps (the draw included, from the pre-drawn uniforms) in one call, with the weights
repacked once per model (:class:`StepWeights`) and direct PyTorch ops on buffers it keeps:

* **History.** The inputs live in time-major buffers (class indices and their real
  values), written once per step; a tier's frame and the MLP's window are views into them.
* **Tiers at frame boundaries only.** Tier ``t`` steps when its frame starts, with its own
  RNN cell math (``addmm`` for the hidden side, the gates elementwise).
* **Folded frame inputs.** The first RNN layer of a tier reads
  ``x = W_in v + u + c`` (its frame's ``F_t`` sample values ``v``, the upper tier's
  vector ``u``, the conditioning ``c``), so its gate input ``W_ih x + b_ih`` is
  ``A v + W_ih (u + c) + b_ih`` with ``A = W_ih W_in`` (``[gates dim, F_t]``, precomputed).
  The second term is computed for all ``ratio`` vectors of the upper tier's frame at once,
  when that frame starts: one matrix product over ``B x ratio`` rows that reads ``W_ih``
  once per upper frame instead of once per step of the tier (the top tier's term, with no
  upper tier, changes only with the conditioning frame).
* **Folded sample embedding.** The MLP's first layer is linear over the concatenated
  embeddings of the last ``F_last`` samples; it becomes a table ``[F_last, classes, dim]``
  (each embedding times its slice of the layer), and the layer one ``embedding_bag`` sum
  of ``F_last`` rows.
* **Feature-major activations** (``[features, B]``): every product is
  ``weight @ activations``, the layout in which MKL runs small batches fastest (about
  1.7x ``activations @ weight.T`` at batch 16 for the ``1024 x 3072`` GRU matrices on an
  AVX-512 Xeon, the same at batch 1), and a frame's vectors are contiguous row blocks.
* **The draw inline**, by the rules of :mod:`wavegen.sampling.draw` operation by
  operation (log-softmax, temperature, inverse CDF on the uniforms; greedy at 0), written
  straight into the history buffers.

Why PyTorch ops and not a fused C step (like the WaveNet ``cpu`` backend): at the paper's
sizes (dim 1024) the matrix products are ~85-90% of a step even at batch 1, where the step
streams ~24 MB of weights per sample and runs at the memory bandwidth of a core; the
per-step Python and dispatch overhead is ~0.1 ms of ~2 ms (batch 1) or ~5 ms (batch 16).
A hand-written AVX-512 product measured 5% (batch 1) to 10-20% (batch 16) faster than
MKL's on the same machine, so a fused C step would gain ~1.1-1.2x at most, against
~1.5x (batch 1) and ~2x (batch 16) for this path over the reference step (see
``scripts/bench_samplernn.py``). bfloat16 weights (half the bytes) move the head
parameters by ~4e-3 of their largest value (random paper-size weights), far outside the
1e-4 the backends are held to, so everything stays float32.

Numerics: float32 throughout. Folding and the different summation orders move the head
parameters by ~1e-6 relative from the reference's (tested to 1e-4); the draw is the
reference's rule on those parameters, so the same uniforms give the same samples except
where a uniform falls within rounding error of a class boundary (practically never).
Top-p, typical filtering and guidance run in the reference loop only
(:meth:`Backend.supports_options` refuses them, so ``auto`` falls back to ``reference``).

Diagnostics (the NLL / entropy of the result, :meth:`teacher_forced_windows`): a session
keeps the head parameters of every step it runs when they fit in :data:`RECORD_BYTES`
(the transposed copy each step makes anyway goes there), and hands those to the driver,
which is what the reference loop scores, at no extra cost; a teacher-forced pass costs
about as much as sampling itself at batch 16 (the same products, batched better:
~2.8 ms per step-equivalent against ~5 ms per sampling step). Longer generations (or
inputs other than the session's own) get stateful ``forward`` passes over windows of
bounded memory instead.
"""

from __future__ import annotations

import math
import weakref
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from wavegen.errors import UsageError
from wavegen.kernels.base import Backend, Session
from wavegen.utils.tensor_key import tensors_key
from wavegen.utils.threads import shared_machine_threads

#: Bytes of activations one teacher-forced diagnostics window may hold (roughly).
DIAGNOSTICS_WINDOW_BYTES = 256 * 2 ** 20
#: Bytes of per-step head parameters a session keeps for the diagnostics (more steps than
#: fit: teacher-forced passes instead).
RECORD_BYTES = 256 * 2 ** 20
#: Positions per diagnostics window from the recorded parameters.
RECORD_WINDOW = 4096
#: Steps the history buffers hold before they are rolled back to the start.
HISTORY_STEPS = 8192


def samplernn_support(model, backend: str) -> str | None:
    """None when ``model`` is a SampleRNN, else why ``backend`` cannot run it."""
    from wavegen.models.samplernn import SampleRNN

    if isinstance(model, SampleRNN):
        return None
    return (f"the {backend} backend implements SampleRNN only, not {type(model).__name__} "
            f"(the reference backend runs any sample-level model)")


@dataclass
class _TierStep:
    """One tier's repacked weights (float32, contiguous)."""

    frame: int
    ratio: int
    fold: torch.Tensor                 # [gates dim, frame]  W_ih(layer 0) @ W_in
    w_ih: list[torch.Tensor]           # per layer [gates dim, dim]
    w_hh: list[torch.Tensor]
    b_ih: list[torch.Tensor]
    b_hh: list[torch.Tensor]
    upsample_w: torch.Tensor           # [ratio dim, dim]
    upsample_b: torch.Tensor

    def __post_init__(self):  # biases as columns [n, 1], for weight @ activations
        self.b_ih_col = [b[:, None] for b in self.b_ih]
        self.b_hh_col = [b[:, None] for b in self.b_hh]
        self.upsample_b_col = self.upsample_b[:, None]


class StepWeights:
    """A SampleRNN's weights repacked for :class:`SampleRNNCPUSession` (see the module
    docstring): per tier the folded frame input, and the MLP's first layer as a table
    ``[F_last * classes, dim]`` (row ``i * classes + k``: class ``k`` at the ``i``-th
    oldest position of the window)."""

    def __init__(self, model):
        c = model.config
        w = model.step_weights()
        self.dim = c.dim
        self.lstm = c.rnn_type == "lstm"

        def f32(t: torch.Tensor) -> torch.Tensor:
            return t.detach().to(torch.float32).contiguous()

        self.tiers = []
        for tier in w.tiers:
            fold = tier.w_ih[0].double() @ tier.input.double()
            self.tiers.append(_TierStep(
                frame=tier.frame, ratio=tier.ratio, fold=f32(fold),
                w_ih=[f32(x) for x in tier.w_ih], w_hh=[f32(x) for x in tier.w_hh],
                b_ih=[f32(x) for x in tier.b_ih], b_hh=[f32(x) for x in tier.b_hh],
                upsample_w=f32(tier.upsample_w), upsample_b=f32(tier.upsample_b)))
        last = c.frame_sizes[-1]
        # table[i, k] = mlp_input[:, :, i] @ embedding[k]
        table = torch.einsum("dei,ke->ikd", w.mlp_input.double(), w.embedding.double())
        self.table = f32(table.reshape(last * c.num_classes, c.dim))
        self.hidden = [(f32(wt), f32(b)[:, None]) for wt, b in w.mlp_hidden]
        self.output_w, self.output_b_col = f32(w.output_w), f32(w.output_b)[:, None]


_weights: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()


def step_weights(model) -> StepWeights:
    """The model's repacked weights, cached until a parameter changes (in place or replaced)."""
    key = tensors_key(model.parameters())
    cached = _weights.get(model)
    if cached is not None and cached[0] == key:
        return cached[1]
    packed = StepWeights(model)
    _weights[model] = (key, packed)
    return packed


class SampleRNNCPUSession(Session):
    """A SampleRNN generation of ``batch`` streams, stepped in chunks (module docstring).

    The state (RNN states, the history, the current frames' vectors) starts from the
    model's own :meth:`~wavegen.models.samplernn.SampleRNN.start`, which also checks and
    projects the conditioning and warms up on the prompt. Activations are feature-major
    (``[features, B]``): every product is ``weight @ activations``, the layout in which
    the BLAS runs small batches fastest, and a frame's vectors are contiguous row blocks.
    """

    def __init__(self, model, batch, length, local, global_cond, prompt):
        super().__init__(model, batch, length, local, global_cond, prompt)
        self.config = model.config
        self.w = step_weights(model)
        with torch.no_grad():
            state = model.start(batch, length, local, global_cond, prompt=prompt)
            self._init_state(state)
        # Every step's head parameters [steps, B, classes] and input [steps, B], from the
        # first step after the prompt, when they fit (module docstring: diagnostics).
        self.start_time = self.time
        steps, classes = max(length - self.time, 0), self.config.num_classes
        self.recorded_params = self.recorded_inputs = None
        if steps * batch * classes * 4 <= RECORD_BYTES:
            self.recorded_params = torch.empty(steps, batch, classes)
            self.recorded_inputs = torch.empty(steps, batch, dtype=torch.int64)

    # ------------------------------------------------------------------ state
    def _init_state(self, state) -> None:
        c, w, batch = self.config, self.w, self.batch

        def columns(x: torch.Tensor) -> torch.Tensor:  # [..., B, d] -> [..., d, B]
            return x.detach().to(torch.float32).transpose(-1, -2).contiguous()

        self.time = state.time
        self.hop = c.hop_length
        # Per tier: local [frames, d, B] and global [d, B] conditioning vectors.
        self.local = None if state.local is None else \
            [x.detach().to(torch.float32).permute(1, 2, 0).contiguous() for x in state.local]
        self.global_ = None if state.global_ is None else [columns(x) for x in state.global_]
        # Per tier, per layer: h (and the LSTM's c) [d, B].
        self.h, self.c = [], []
        for hidden in state.hidden:
            h, cell = hidden if w.lstm else (hidden, None)
            self.h.append([columns(x) for x in h])
            self.c.append(None if cell is None else [columns(x) for x in cell])
        # History: time-major buffers of input classes and their values; row p is the newest.
        top = c.top_frame
        self.value_of = torch.arange(c.num_classes, dtype=torch.float32) \
            * (2.0 / (c.num_classes - 1)) - 1.0
        self._allocate(HISTORY_STEPS)
        self.seq[:top] = state.history.t().cpu()
        self.vals[:top] = self.value_of[self.seq[:top]]
        self.p = top - 1
        # The MLP's window offsets into the folded table.
        last = c.frame_sizes[-1]
        self.window_offsets = (torch.arange(last) * c.num_classes).expand(batch, last)
        self.window = torch.empty(batch, last, dtype=torch.int64)
        self.bags = torch.arange(batch) * last  # embedding_bag offsets: one bag per item
        # Per tier t >= 1: the gate-input terms W_ih (u_j + c) + b_ih of the upper tier's
        # current frame [gates d, ratio_{t-1}, B]; for the MLP the last tier's vectors
        # [ratio * d, B] (vector j: rows j d .. (j + 1) d).
        self.upper_terms: list[torch.Tensor | None] = [None] * len(w.tiers)
        self.mlp_vectors: torch.Tensor | None = None
        self._top_term: torch.Tensor | None = None
        self._top_term_frame = -1
        n = self.time
        for t, up in enumerate(state.upsampled):
            if up is None:
                continue
            vectors = columns(up.reshape(batch, -1))
            if t + 1 < len(w.tiers):
                if n % w.tiers[t].frame:
                    self.upper_terms[t + 1] = self._lower_terms(t + 1, vectors, n)
            else:
                self.mlp_vectors = vectors

    def _allocate(self, steps: int) -> None:
        width = self.config.top_frame + steps + 2
        self.seq = torch.empty(width, self.batch, dtype=torch.int64)
        self.vals = torch.empty(width, self.batch, dtype=torch.float32)

    def _make_room(self, n: int) -> None:
        """Room for ``n`` more steps (each writes rows ``p + 1`` and ``p + 2``)."""
        if self.p + n + 2 < self.seq.shape[0]:
            return
        keep = self.config.top_frame - 1
        seq, vals = self.seq[self.p - keep + 1:self.p + 1].clone(), \
            self.vals[self.p - keep + 1:self.p + 1].clone()
        if keep + n + 3 > self.seq.shape[0]:
            self._allocate(max(n + 1, HISTORY_STEPS))
        self.seq[:keep], self.vals[:keep] = seq, vals
        self.p = keep - 1

    def _conditioning(self, t: int, n: int) -> torch.Tensor | None:
        """Tier ``t``'s conditioning vector ``[d, B]`` at sample ``n`` (None: none)."""
        cond = None
        if self.local is not None:
            cond = self.local[t][n // self.hop]
        if self.global_ is not None:
            cond = self.global_[t] if cond is None else cond + self.global_[t]
        return cond

    def _lower_terms(self, t: int, vectors: torch.Tensor, n: int) -> torch.Tensor:
        """``W_ih (u_j + c) + b_ih`` ``[gates d, ratio, B]`` of tier ``t``'s first layer for
        the upper tier's vectors ``[ratio d, B]`` of its frame starting at (or containing)
        sample ``n``: one product for all ``ratio`` vectors."""
        tier = self.w.tiers[t]
        d = self.w.dim
        ratio = vectors.shape[0] // d
        stacked = vectors.view(ratio, d, self.batch).transpose(0, 1)  # [d, ratio, B]
        cond = self._conditioning(t, n)
        stacked = stacked.contiguous()
        if cond is not None:
            stacked += cond[:, None]
        out = torch.addmm(tier.b_ih_col[0], tier.w_ih[0], stacked.view(d, ratio * self.batch))
        return out.view(-1, ratio, self.batch)

    def _top_terms(self, n: int) -> torch.Tensor:
        """``W_ih c + b_ih`` ``[gates d, B]`` of the top tier's first layer at sample ``n``."""
        frame = n // self.hop if self.local is not None else 0
        if self._top_term is None or frame != self._top_term_frame:
            tier = self.w.tiers[0]
            cond = self._conditioning(0, n)
            if cond is None:
                self._top_term = tier.b_ih_col[0].expand(-1, self.batch)
            else:
                self._top_term = torch.addmm(tier.b_ih_col[0], tier.w_ih[0], cond)
            self._top_term_frame = frame
        return self._top_term

    # ------------------------------------------------------------------ the step
    def _cell(self, tier: _TierStep, t: int, layer: int, gi: torch.Tensor) -> torch.Tensor:
        """One RNN layer from its gate input ``gi`` ``[gates d, B]``; returns the new h."""
        d = self.w.dim
        h = self.h[t][layer]
        gh = torch.addmm(tier.b_hh_col[layer], tier.w_hh[layer], h)
        if self.c[t] is None:  # GRU: r, z, n
            rz = torch.sigmoid(gh[:2 * d].add_(gi[:2 * d]))
            n = torch.tanh(torch.addcmul(gi[2 * d:], rz[:d], gh[2 * d:]))
            h = torch.lerp(n, h, rz[d:])
        else:  # LSTM: i, f, g, o
            gates = gh.add_(gi)
            act = torch.sigmoid(gates)
            cell = torch.addcmul(act[d:2 * d] * self.c[t][layer], act[:d],
                                 torch.tanh(gates[2 * d:3 * d]))
            self.c[t][layer] = cell
            h = act[3 * d:] * torch.tanh(cell)
        self.h[t][layer] = h
        return h

    def _logits(self, n: int) -> torch.Tensor:
        """Head parameters ``[classes, B]`` at sample ``n``; the newest input is row ``p``."""
        w, p, d = self.w, self.p, self.w.dim
        tiers = w.tiers
        for t, tier in enumerate(tiers):
            frame = tier.frame
            if n % frame:
                continue
            pre = self._top_terms(n) if t == 0 else \
                self.upper_terms[t][:, (n % tiers[t - 1].frame) // frame]
            x = self._cell(tier, t, 0, torch.addmm(pre, tier.fold, self.vals[p - frame + 1:p + 1]))
            for layer in range(1, len(tier.w_ih)):
                gi = torch.addmm(tier.b_ih_col[layer], tier.w_ih[layer], x)
                x = self._cell(tier, t, layer, gi)
            vectors = torch.addmm(tier.upsample_b_col, tier.upsample_w, x)
            if t + 1 < len(tiers):
                self.upper_terms[t + 1] = self._lower_terms(t + 1, vectors, n)
            else:
                self.mlp_vectors = vectors
        last = tiers[-1].frame
        j = n % last
        window = torch.add(self.seq[p - last + 1:p + 1].t(), self.window_offsets,
                           out=self.window)
        embedded = F.embedding_bag(window.view(-1), w.table, self.bags, mode="sum")
        h = torch.add(self.mlp_vectors[j * d:(j + 1) * d], embedded.t()).relu_()
        for weight, bias in w.hidden:
            h = torch.addmm(bias, weight, h).relu_()
        return torch.addmm(w.output_b_col, w.output_w, h)

    def _params(self, n: int) -> torch.Tensor:
        """Head parameters ``[B, classes]`` (contiguous, as the reference step returns them;
        a row of the record when the session keeps one)."""
        logits = self._logits(n)
        if self.recorded_params is None:
            return logits.t().contiguous()
        i = n - self.start_time
        self.recorded_inputs[i] = self.seq[self.p]
        return self.recorded_params[i].copy_(logits.t())

    def _push(self, previous: torch.Tensor) -> None:
        """Feed ``previous`` ``[B]`` (class indices) as the newest input."""
        if previous.shape != (self.batch,) or previous.is_floating_point():
            raise UsageError(f"previous must be [{self.batch}] class indices, got "
                             f"{previous.dtype} {tuple(previous.shape)}")
        self.p += 1
        self.seq[self.p] = previous
        torch.index_select(self.value_of, 0, self.seq[self.p], out=self.vals[self.p])

    def _check_time(self, n: int) -> None:
        if self.time + n > self.length:
            raise UsageError(f"step {self.time + n - 1} is past the {self.length} samples "
                             f"given to the session")

    @torch.no_grad()
    def step_params(self, previous: torch.Tensor) -> torch.Tensor:
        self._check_time(1)
        self._make_room(1)
        self._push(previous.cpu())
        params = self._params(self.time)
        self.time += 1
        return params if self.recorded_params is None else params.clone()

    @torch.no_grad()
    def generate(self, previous, uniforms, temperature):
        # Fewer threads on a busy machine (wavegen.utils.threads); each product's rows stay
        # whole, so the numbers do not depend on the count.
        with shared_machine_threads():
            return self._generate(previous, uniforms, temperature)

    def _generate(self, previous, uniforms, temperature):
        uniforms, temperature = self.check_generate_args(uniforms, temperature, "cpu")
        steps = uniforms.shape[1]
        self._check_time(steps)
        self._make_room(steps)
        self._push(previous.cpu())
        first = self.p + 1
        u = uniforms[..., 0].t().contiguous()  # [n, B]
        last_class = self.config.num_classes - 1
        for i in range(steps):
            # The draw of wavegen.sampling.draw.Draw, operation by operation.
            logp = torch.log_softmax(self._params(self.time), dim=-1)
            out = self.seq[self.p + 1]
            if temperature > 0:
                z = logp / temperature
                weights = torch.exp(z - z.amax(dim=-1, keepdim=True))
                cdf = torch.cumsum(weights, dim=-1)
                threshold = u[i] * cdf[:, -1]
                torch.sum(cdf <= threshold.unsqueeze(-1), dim=-1, out=out)
                out.clamp_(max=last_class)
            else:
                torch.argmax(logp, dim=-1, out=out)
            self.p += 1
            torch.index_select(self.value_of, 0, out, out=self.vals[self.p])
            self.time += 1
        # The last sample is in row p but not consumed yet: the next call feeds it again.
        self.p -= 1
        return self.seq[first:first + steps].t().clone()

    # ------------------------------------------------------------------ diagnostics
    def teacher_forced_windows(self, local, global_cond):
        """The head parameters this session computed, when it kept them and ``inputs`` are
        the ones it consumed after the prompt; else stateful ``forward`` passes over
        windows of whole top frames (and conditioning frames), the RNN states carried from
        one to the next, so memory stays bounded however long the generation (the last
        window may be ragged: ``forward`` pads it)."""
        model, c = self.model, self.config

        def recorded(inputs: torch.Tensor, first: int):
            steps = self.time - self.start_time
            if (self.recorded_params is None or first != self.start_time
                    or inputs.shape != (self.batch, self.time)
                    or not torch.equal(inputs[:, first:].cpu(),
                                       self.recorded_inputs[:steps].t())):
                return None
            return ((first + t0, self.recorded_params[t0:t0 + RECORD_WINDOW].permute(1, 2, 0))
                    for t0 in range(0, steps, RECORD_WINDOW))

        unit = c.top_frame if not c.has_local else c.hop_length
        per_position = self.batch * c.dim * 4 * (2 * c.mlp_layers + 4 * c.num_tiers + 2)
        size = max(unit, DIAGNOSTICS_WINDOW_BYTES // per_position // unit * unit)

        def windows(inputs: torch.Tensor, first: int):
            kept = recorded(inputs, first)
            if kept is not None:
                yield from kept
                return
            total = inputs.shape[-1]
            state = None
            for t0 in range(0, total, size):
                t1 = min(t0 + size, total)
                frames = None if local is None else local[..., t0 // c.hop_length:
                                                          math.ceil(t1 / c.hop_length)]
                chunk = inputs[:, t0:t1]
                if t1 < total:
                    params, state = model(chunk, frames, global_cond, state=state,
                                          return_state=True)
                else:
                    params = model(chunk, frames, global_cond, state=state)
                if t1 > first:
                    start = max(first, t0)
                    yield start, params[..., start - t0:]

        return windows


class SampleRNNCPUBackend(Backend):
    name = "samplernn-cpu"
    priority = {"cpu": 5}
    session_class = SampleRNNCPUSession

    def supports(self, model):
        reason = samplernn_support(model, self.name)
        if reason is not None:
            return reason
        dtypes = sorted({str(p.dtype) for p in model.parameters()})
        if dtypes != ["torch.float32"]:
            return f"the {self.name} backend needs float32 weights, got {', '.join(dtypes)}"
        return None

    def unavailable(self, device):
        device = torch.device(device)
        if device.type != "cpu":
            return f"the {self.name} backend runs models on the CPU, not {device.type}"
        return None


__all__ = ["SampleRNNCPUBackend", "SampleRNNCPUSession", "StepWeights", "samplernn_support",
           "step_weights"]
