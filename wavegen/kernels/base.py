"""The interface every sampling backend implements, and what the WaveNet backends share.

A backend turns a sample-level model into a :class:`Session` that runs the incremental
sampling step (for WaveNet: every residual layer, the output stack, and the draw from
pre-drawn uniforms) for many samples at a time. The autoregressive driver
(:func:`wavegen.sampling.generate`) owns everything around it: argument checks, uniforms,
the prompt, diagnostics and the result.

Before anything else a backend is asked :meth:`Backend.supports` (``None``, or the one-line
reason it does not implement the model): the ``reference`` backend runs any sample-level
model through its public contract, the fast backends implement WaveNet only and check that
first (:func:`wavenet_support`), so no backend ever reads an attribute of a model it does
not implement.

What the WaveNet sessions share, implemented here once:

* :class:`ConditioningStream` upsamples the local conditioning once (``[B, C, T]``, cheap)
  and projects it to the layers' gate inputs chunk by chunk (``[B, n, L * 2G]``, time-major),
  global conditioning added, so a long generation never holds ``L * 2G`` channels per audio
  sample at once (2 x 10 layers x 256 gates = 5120 floats per sample).
* :func:`prime_layer_inputs`: the last inputs of every layer after a teacher-forced pass over
  the last receptive field of a prompt (one forward pass over that window), from which each
  backend fills its ring buffers.
* :class:`WaveNetWeights`: the model's weights in one canonical layout (documented there),
  so each kernel only repacks, never re-derives, them.
* :class:`WaveNetSession`: teacher-forced diagnostics in windows of bounded memory.

A session exposes two calls: :meth:`Session.step_params` (one step, returning the head
parameters; the hook the equality tests compare against the reference) and
:meth:`Session.generate` (``n`` steps including the draw, the fast path). Both advance the
same state, so they can be interleaved.
"""

from __future__ import annotations

import abc
import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from wavegen.errors import KernelUnavailableError, UsageError
from wavegen.nn.distributions import Categorical, DiscretizedMixtureOfLogistics
from wavegen.sampling.contract import model_device
from wavegen.sampling.diagnostics import ParamWindows
from wavegen.sampling.options import LOGIT_OPTIONS

#: Bytes of projected conditioning a session materialises at once (per chunk).
CONDITIONING_CHUNK_BYTES = 64 * 2 ** 20


def wavenet_support(model, backend: str) -> str | None:
    """None when ``model`` is a WaveNet, else why the ``backend`` (a WaveNet kernel) cannot
    run it; every fast backend's :meth:`Backend.supports` asks this first."""
    from wavegen.models.wavenet import WaveNet

    if isinstance(model, WaveNet):
        return None
    return (f"the {backend} backend implements WaveNet only, not {type(model).__name__} "
            f"(the reference backend runs any sample-level model)")


def head_kind(model) -> str:
    """``"categorical"``, ``"mol"`` or ``"gaussian"``: the head a kernel must implement."""
    if isinstance(model.head, Categorical):
        return "categorical"
    if isinstance(model.head, DiscretizedMixtureOfLogistics):
        return "mol"
    return "gaussian"


@dataclass
class WaveNetWeights:
    """A WaveNet's weights for incremental kernels (float32 unless cast, contiguous).

    ``R``, ``G``, ``S``, ``P``: residual, gate, skip channels and head parameters; ``k`` the
    kernel size; ``L`` layers.

    Attributes:
        embed: categorical: ``[K, R]`` input embedding table; continuous heads: ``[2, R]``
            (row 0 the weight, row 1 the bias: ``x_in = value * w + b``).
        conv_w: per layer ``[k, 2G, R]``; tap ``j`` multiplies the layer input at time
            ``t - (k - 1 - j) * dilation`` (tap ``k - 1`` is the current input).
        conv_b: per layer ``[2G]``; the first ``G`` rows feed tanh, the last ``G`` sigmoid.
        res_w, res_b: per layer ``[R, G]``, ``[R]``; None for the last layer (no residual).
        skip_w, skip_b: per layer ``[S, G]``, ``[S]``.
        out1_w, out1_b: ``[S, S]``, ``[S]``; out2_w, out2_b: ``[P, S]``, ``[P]``
            (``params = out2(relu(out1(relu(sum of skips))))``).
        dilations: per layer.
    """

    embed: torch.Tensor
    conv_w: list[torch.Tensor]
    conv_b: list[torch.Tensor]
    res_w: list[torch.Tensor | None]
    res_b: list[torch.Tensor | None]
    skip_w: list[torch.Tensor]
    skip_b: list[torch.Tensor]
    out1_w: torch.Tensor
    out1_b: torch.Tensor
    out2_w: torch.Tensor
    out2_b: torch.Tensor
    dilations: list[int]
    kernel_size: int

    @classmethod
    @torch.no_grad()
    def from_model(cls, model, dtype: torch.dtype = torch.float32) -> "WaveNetWeights":
        def prep(t):
            return None if t is None else t.detach().to(dtype).contiguous()

        c = model.config
        if head_kind(model) == "categorical":
            embed = model.input.weight
        else:
            embed = torch.stack([model.input.weight[:, 0, 0], model.input.bias])
        layers = list(model.layers)
        return cls(
            embed=prep(embed),
            conv_w=[prep(layer.conv.weight.permute(2, 0, 1)) for layer in layers],
            conv_b=[prep(layer.conv.bias) for layer in layers],
            res_w=[prep(None if layer.residual is None else layer.residual.weight[..., 0])
                   for layer in layers],
            res_b=[prep(None if layer.residual is None else layer.residual.bias)
                   for layer in layers],
            skip_w=[prep(layer.skip.weight[..., 0]) for layer in layers],
            skip_b=[prep(layer.skip.bias) for layer in layers],
            out1_w=prep(model.output[1].weight[..., 0]), out1_b=prep(model.output[1].bias),
            out2_w=prep(model.output[3].weight[..., 0]), out2_b=prep(model.output[3].bias),
            dilations=list(c.dilations), kernel_size=c.kernel_size)


class ConditioningStream:
    """Per-sample gate conditioning of all layers, produced chunk by chunk.

    Args:
        model: the WaveNet.
        batch: batch size.
        length: total samples (prompt included) the local conditioning covers.
        local: ``[B, C, frames]`` or None; global_cond: ``[B]`` / ``[B, D]`` or None.
        dtype: dtype of the chunks.

    ``chunk(t0, t1)`` returns ``[B, t1 - t0, L * 2G]`` (contiguous; layer ``l`` owns columns
    ``l * 2G .. (l + 1) * 2G``), or None for an unconditional model. Without local
    conditioning the chunk is the global projection broadcast along time.
    """

    def __init__(self, model, batch: int, length: int, local: torch.Tensor | None,
                 global_cond: torch.Tensor | None, dtype: torch.dtype = torch.float32):
        self.model = model
        self.batch = batch
        self.dtype = dtype
        self.upsampled, self.global_bias = model.conditioning_features(length, batch, local,
                                                                       global_cond)
        c = model.config
        self.width = c.num_layers * 2 * c.gate_channels
        self.conditioned = self.upsampled is not None or self.global_bias is not None

    def chunk_length(self) -> int:
        """Samples per chunk that keep a chunk under :data:`CONDITIONING_CHUNK_BYTES`."""
        per_sample = self.batch * self.width * torch.finfo(self.dtype).bits // 8
        return max(64, CONDITIONING_CHUNK_BYTES // max(per_sample, 1))

    @torch.no_grad()
    def chunk(self, t0: int, t1: int) -> torch.Tensor | None:
        if not self.conditioned:
            return None
        if self.upsampled is not None:
            out = self.model.local_projection(self.upsampled[..., t0:t1]).transpose(1, 2)
            if self.global_bias is not None:
                out = out + self.global_bias[:, None, :]
        else:
            out = self.global_bias[:, None, :].expand(self.batch, t1 - t0, self.width)
        return out.to(self.dtype).contiguous()


@torch.no_grad()
def prime_layer_inputs(model, prompt: torch.Tensor, stream: ConditioningStream) -> list[torch.Tensor]:
    """Each layer's inputs during a teacher-forced pass over ``prompt`` ``[B, P]``, at its last
    ``W = min(P, receptive_field - 1)`` positions: ``[B, R, W]`` per layer.

    Only those positions reach a ring buffer (layer ``l`` keeps its last ``(k - 1) d_l``
    inputs, which depend on the prompt back to ``receptive_field - 1`` samples), so the
    pass runs over that window alone: priming costs the same for a 10 s prompt as for one
    receptive field. The first step after priming is fed ``prompt[:, -1]`` and predicts
    sample ``P``.
    """
    from wavegen.models.wavenet import shift_right

    length = prompt.shape[-1]
    first = max(0, length - (model.receptive_field - 1))
    inputs = shift_right(prompt, model.silence_input())[..., first:]
    cond = stream.chunk(first, length)
    local_c = None if cond is None else cond.transpose(1, 2).to(model.input.weight.dtype)
    _, layer_inputs = model.run(inputs, local_c, None, return_layer_inputs=True)
    return layer_inputs


class Session(abc.ABC):
    """Incremental sampling state of one generation (``batch`` items, ``length`` samples).

    ``previous`` is the input of the next step: ``[B]`` int64 classes (categorical head) or
    float32 waveform values (grid heads); after priming on a prompt it is the prompt's last
    sample.
    """

    def __init__(self, model, batch: int, length: int, local, global_cond,
                 prompt: torch.Tensor | None):
        self.model = model
        self.batch = batch
        self.length = length
        self.time = 0 if prompt is None else prompt.shape[-1]

    def check_generate_args(self, uniforms: torch.Tensor, temperature: float,
                            device=None) -> tuple[torch.Tensor, float]:
        """Validated ``(uniforms [B, n, U] float32 contiguous on device, temperature)``."""
        temperature = float(temperature)
        if not (math.isfinite(temperature) and temperature >= 0.0):
            raise UsageError(f"temperature must be finite and >= 0, got {temperature}")
        per = self.model.head.num_uniforms
        if uniforms.dim() != 3 or uniforms.shape[0] != self.batch or uniforms.shape[2] != per:
            raise UsageError(f"uniforms must be [{self.batch}, n, {per}], "
                             f"got {tuple(uniforms.shape)}")
        return uniforms.detach().to(device or "cpu", torch.float32).contiguous(), temperature

    @abc.abstractmethod
    def step_params(self, previous: torch.Tensor) -> torch.Tensor:
        """One step without drawing: head parameters ``[B, P]`` (float32)."""

    @abc.abstractmethod
    def generate(self, previous: torch.Tensor, uniforms: torch.Tensor,
                 temperature: float) -> torch.Tensor:
        """``n = uniforms.shape[1]`` steps with the draw: ``uniforms [B, n, U]`` -> samples
        ``[B, n]`` (int64 classes or float32 grid values), feeding each sample back."""

    def in_step_diagnostics(self) -> tuple[torch.Tensor, torch.Tensor] | None:
        """Mean NLL and entropy ``[B]`` (nats) of every sample :meth:`generate` drew so far,
        computed inside the step from the distribution each was drawn from (temperature
        1, as :class:`~wavegen.sampling.draw.Draw` reports them), or None when this session
        does not compute them: the loop then takes them from a teacher-forced pass over
        the result (:meth:`teacher_forced_windows`)."""
        return None

    def teacher_forced_windows(self, local: torch.Tensor | None,
                               global_cond: torch.Tensor | None) -> ParamWindows | None:
        """Where the diagnostics of this session's samples get their head parameters
        (:func:`~wavegen.sampling.diagnostics.teacher_forced_diagnostics`); None: one full
        ``forward`` pass of the sample-level contract."""
        return None


class WaveNetSession(Session):
    """Base of the WaveNet kernels' sessions: diagnostics from windowed full passes."""

    def teacher_forced_windows(self, local, global_cond) -> ParamWindows:
        """Passes over chunks of positions with one receptive field of context before each,
        the conditioning projected per window (:class:`ConditioningStream`), so memory stays
        bounded however long the generation."""
        model = self.model
        stream = ConditioningStream(model, self.batch, self.length, local, global_cond,
                                    model.input.weight.dtype)
        context = model.receptive_field - 1
        size = max(1024, stream.chunk_length())

        def windows(inputs: torch.Tensor, first: int):
            for t0 in range(first, inputs.shape[-1], size):
                t1 = min(t0 + size, inputs.shape[-1])
                w0 = max(0, t0 - context)
                cond = stream.chunk(w0, t1)
                cond = None if cond is None else cond.transpose(1, 2)
                yield t0, model.run(inputs[:, w0:t1], cond, None)[..., t0 - w0:]

        return windows


class Backend(abc.ABC):
    """A way to run the sampling step; stateless, one instance per name.

    Whether it can sample from a model is asked in this order, each answer None (yes) or a
    one-line reason: :meth:`supports` (the model: asked first, before any attribute a
    backend reads from the models it implements), :meth:`unavailable` (the device and this
    machine), :meth:`supports_options` (the sampling options).
    """

    #: Name used by ``--backend`` and ``wavegen doctor``.
    name: str = ""
    #: Speed rank for ``auto`` (higher is tried first), per device type.
    priority: dict[str, int] = {}

    @abc.abstractmethod
    def supports(self, model) -> str | None:
        """Why this backend cannot run ``model`` (None when it can): first whether the model
        is of the kind the backend implements, then the backend's own limits (head, dtype,
        sizes). Never raises for a model it does not implement."""

    @abc.abstractmethod
    def unavailable(self, device: torch.device) -> str | None:
        """Why this backend cannot run on ``device`` here (None when it can)."""

    def supports_options(self, options) -> str | None:
        """Why this backend cannot honour the sampling ``options`` (None when it can); the
        filters and guidance run in the reference loop only."""
        return options_need_reference(options)

    #: The Session subclass :meth:`session` opens.
    session_class: type[Session]

    def session(self, model, batch: int, length: int, local, global_cond,
                prompt: torch.Tensor | None) -> Session:
        """A session generating ``length`` samples in total (prompt included).

        KernelUnavailableError (one line, naming the backend) where :meth:`supports` or
        :meth:`unavailable` gives a reason for the model or its device.
        """
        reason = self.supports(model) or self.unavailable(model_device(model))
        if reason is not None:
            raise KernelUnavailableError(f"{self.name} backend: {reason}")
        return self.session_class(model, batch, length, local, global_cond, prompt)


def options_need_reference(options) -> str | None:
    """Sampling options only the reference loop implements (filters and guidance)."""
    if options is None:
        return None
    for name in LOGIT_OPTIONS:
        if getattr(options, name, None) is not None:
            return f"{name} is implemented by the reference loop only"
    return None


def relu_linear(x: torch.Tensor, w: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """``linear(relu(x))``: ``[B, in]`` -> ``[B, out]`` (the output stack's unit)."""
    return F.linear(F.relu(x), w, b)


class GraphedChunks:
    """Fixed-size chunks of sampling steps run from static buffers, as CUDA graphs.

    The first chunk at a given key (the temperature: it is baked into the launches) runs
    eagerly on a side stream, which compiles and warms everything up as capture requires;
    the next one is captured into a ``torch.cuda.CUDAGraph``, and every later one replays
    it. A failed capture switches graphs off (``enabled``) and the caller runs eagerly;
    set ``enabled = False`` to never capture (eager launches only).

    ``stage(uniforms [B, n, U], cond [B, n, W] or None, out_dtype)`` copies a chunk's inputs
    into the static buffers (allocated on first use); the step function reads them from
    :attr:`static` and writes the samples into ``static["out"]`` ``[B, n]``.
    """

    def __init__(self, device: torch.device, batch: int, length: int):
        self.device = device
        self.batch = batch
        self.length = length
        self.enabled = True
        self.static: dict[str, torch.Tensor | None] | None = None
        self._graphs: dict[float, object] = {}
        self._warm: set[float] = set()

    def stage(self, uniforms: torch.Tensor, cond: torch.Tensor | None,
              out_dtype: torch.dtype) -> dict[str, torch.Tensor | None]:
        if self.static is None:
            self.static = {
                "uniforms": torch.empty(uniforms.shape, device=self.device),
                "cond": None if cond is None else torch.empty_like(cond),
                "out": torch.empty(self.batch, self.length, dtype=out_dtype, device=self.device)}
        self.static["uniforms"].copy_(uniforms)
        if cond is not None:
            self.static["cond"].copy_(cond)
        return self.static

    def run(self, key: float, steps) -> None:
        """Run ``steps()`` (the chunk's launches on the static buffers): warm-up, capture
        or replay."""
        graph = self._graphs.get(key)
        if graph is None and key in self._warm:
            try:
                graph = torch.cuda.CUDAGraph()
                with torch.cuda.graph(graph):
                    steps()
                self._graphs[key] = graph
            except Exception:  # noqa: BLE001 - capture is an optimisation: run eagerly
                graph = None
                self.enabled = False
        if graph is not None:
            graph.replay()
            return
        side = torch.cuda.Stream(device=self.device)
        side.wait_stream(torch.cuda.current_stream(self.device))
        with torch.cuda.stream(side):
            steps()
        torch.cuda.current_stream(self.device).wait_stream(side)
        self._warm.add(key)
