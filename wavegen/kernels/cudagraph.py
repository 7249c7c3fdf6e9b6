"""The ``cudagraph`` backend: the reference per-layer step, captured as a CUDA graph.

The session runs :meth:`WaveNet.step` (same operations, same dtype) plus the reference draw
(:meth:`wavegen.sampling.Draw.sample`), but with every piece of state in static device
buffers, so that a chunk of :data:`CHUNK` steps can be captured once into a
``torch.cuda.CUDAGraph`` and replayed for every later chunk:

* each layer's ring buffer is ``[B, R, len]`` (the layout of
  :class:`~wavegen.nn.causal_conv.ConvBuffer`); the time is an int64 device scalar, the
  write slot ``time % len`` and the tap slots ``(time - (k - 1 - j) d) % len`` are computed
  from it inside the graph (``index_copy_`` / ``index_select``), and the step increments it
  in place, so the graph does not depend on the position it was captured at;
* the previous sample, the chunk's conditioning ``[B, CHUNK, L * 2G]``, its uniforms and its
  samples live in static buffers that are refilled / read around each replay;
* the draw is torch ops on the device (``log_softmax``, ``/ T``, ``head.sample``), no host
  synchronisation.

The first chunk at a temperature runs eagerly (on a side stream, CUDA's recommended warm-up
before capture), the second is captured and replayed, later ones are replayed; steps that
do not fill a chunk run eagerly. A failed capture falls back to eager steps for the session.
Importing this module and :meth:`CUDAGraphBackend.unavailable` work without CUDA.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from wavegen.errors import UsageError
from wavegen.kernels.base import (Backend, ConditioningStream, GraphedChunks, WaveNetSession,
                                  head_kind, prime_layer_inputs, wavenet_support)
from wavegen.sampling.draw import Draw
from wavegen.sampling.options import SamplingOptions

#: Steps per captured graph.
CHUNK = 64


class CUDAGraphSession(WaveNetSession):
    """Static-buffer state of one generation; chunks of steps replayed as CUDA graphs."""

    def __init__(self, model, batch, length, local, global_cond, prompt):
        super().__init__(model, batch, length, local, global_cond, prompt)
        self.device = device = model.input.weight.device
        self.dtype = dtype = model.input.weight.dtype
        c = model.config
        self.categorical = head_kind(model) == "categorical"
        self.width = 2 * c.gate_channels
        self.stream = ConditioningStream(model, batch, length, local, global_cond, dtype)
        self.lengths = [layer.conv.buffer_length for layer in model.layers]
        self.rings = [torch.zeros(batch, c.residual_channels, n, device=device, dtype=dtype)
                      for n in self.lengths]
        k = c.kernel_size
        self.tap_offsets = [torch.tensor([(k - 1 - j) * d for j in range(k)], device=device)
                            for d in c.dilations]
        self.time_t = torch.full((), self.time, dtype=torch.int64, device=device)
        if prompt is not None and prompt.shape[-1] > 0:
            count = prompt.shape[-1]
            for ring, x, n in zip(self.rings, prime_layer_inputs(model, prompt, self.stream),
                                  self.lengths):
                keep = min(n - 1, count)
                times = torch.arange(count - keep, count, device=device)
                ring[:, :, times % n] = x[..., x.shape[-1] - keep:].to(dtype)
        self.prev = torch.zeros(batch, device=device,
                                dtype=torch.int64 if self.categorical else torch.float32)
        self.graphs = GraphedChunks(self.device, batch, CHUNK)

    # ----------------------------------------------------------------- one step
    def _step(self, cond_t: torch.Tensor | None) -> torch.Tensor:
        """:meth:`WaveNet.step` from ``self.prev`` with device-side ring positions."""
        model = self.model
        x = model._embed_step(self.prev)
        t = self.time_t
        skips = 0
        for i, layer in enumerate(model.layers):
            ring, n = self.rings[i], self.lengths[i]
            ring.index_copy_(2, torch.remainder(t, n).view(1), x.unsqueeze(2))
            taps = ring.index_select(2, torch.remainder(t - self.tap_offsets[i], n))
            conv = layer.conv
            h = taps.reshape(taps.shape[0], -1) @ conv.weight.reshape(conv.out_channels, -1).t()
            h = h + conv.bias
            if cond_t is not None:
                h = h + cond_t[:, i * self.width:(i + 1) * self.width]
            a, b = h.split(layer.gate_channels, dim=1)
            z = torch.tanh(a) * torch.sigmoid(b)
            skip = F.linear(z, layer.skip.weight[..., 0], layer.skip.bias)
            if layer.residual is not None:
                x = x + F.linear(z, layer.residual.weight[..., 0], layer.residual.bias)
            skips = skips + skip
        t.add_(1)
        h = F.relu(skips)
        h = F.relu(F.linear(h, model.output[1].weight[..., 0], model.output[1].bias))
        return F.linear(h, model.output[3].weight[..., 0], model.output[3].bias)

    def _step_draw(self, cond_t, u, draw: Draw, out) -> None:
        sample = draw.sample(self._step(cond_t), u)
        self.prev.copy_(sample)
        out.copy_(sample)

    def _set_previous(self, previous: torch.Tensor) -> None:
        if previous.shape != (self.batch,):
            raise UsageError(f"previous must be [{self.batch}], got {tuple(previous.shape)}")
        self.prev.copy_(previous)

    # ----------------------------------------------------------------- interface
    @torch.no_grad()
    def step_params(self, previous: torch.Tensor) -> torch.Tensor:
        self._set_previous(previous)
        cond = self.stream.chunk(self.time, self.time + 1)
        params = self._step(None if cond is None else cond[:, 0])
        self.time += 1
        return params.float()

    @torch.no_grad()
    def generate(self, previous, uniforms, temperature):
        uniforms, temperature = self.check_generate_args(uniforms, temperature, self.device)
        draw = Draw(self.model.head, SamplingOptions(temperature=temperature))
        n = uniforms.shape[1]
        out = torch.empty(self.batch, n, dtype=self.prev.dtype, device=self.device)
        self._set_previous(previous)
        t = 0
        while (self.graphs.enabled and n - t >= CHUNK
               and (self.stream.upsampled is None or self.time + CHUNK <= self.length)):
            self._chunk(uniforms[:, t:t + CHUNK], draw)
            out[:, t:t + CHUNK] = self.graphs.static["out"]
            t += CHUNK
        for s in range(t, n):
            cond = self.stream.chunk(self.time, self.time + 1)
            self._step_draw(None if cond is None else cond[:, 0], uniforms[:, s], draw,
                            out[:, s])
            self.time += 1
        return out

    # ----------------------------------------------------------------- graphs
    def _chunk(self, uniforms: torch.Tensor, draw: Draw) -> None:
        """:data:`CHUNK` steps from the static buffers: warm-up, capture or replay."""
        cond = self.stream.chunk(self.time, self.time + CHUNK)
        static = self.graphs.stage(uniforms, cond, self.prev.dtype)

        def steps():
            for s in range(CHUNK):
                self._step_draw(None if static["cond"] is None else static["cond"][:, s],
                                static["uniforms"][:, s], draw, static["out"][:, s])

        self.graphs.run(draw.options.temperature, steps)
        self.time += CHUNK


class CUDAGraphBackend(Backend):
    name = "cudagraph"
    priority = {"cuda": 10}
    session_class = CUDAGraphSession

    def supports(self, model):
        # WaveNet.step's operations on static buffers: any head and dtype WaveNet has.
        return wavenet_support(model, self.name)

    def unavailable(self, device):
        device = torch.device(device)
        if device.type != "cuda":
            return f"the cudagraph backend needs a CUDA device (the model is on {device.type})"
        if not torch.cuda.is_available():
            return "the cudagraph backend needs a CUDA device (torch.cuda is not available)"
        return None


__all__ = ["CUDAGraphBackend", "CUDAGraphSession", "CHUNK"]
