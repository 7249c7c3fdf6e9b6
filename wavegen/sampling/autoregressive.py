"""The autoregressive sampling loop shared by WaveNet, SampleRNN and the hierarchical priors.

A model plugs in through three methods (WaveNet implements them):

* ``start(batch, length, local=None, global_cond=None, unconditional=False, prompt=None)``
  returns a state for generating ``length`` samples (prompt included);
* ``step(previous, state)`` returns the head parameters ``[B, P]`` of the next sample;
* ``run(inputs, local_c, global_c)`` / ``conditioning(...)``: the full pass, used by the
  naive generator that recomputes the receptive field at every step (for tests and
  benchmarks).

and exposes ``head`` (an :class:`~wavegen.nn.distributions.OutputDistribution`),
``silence_input()`` and ``receptive_field``.

What the loop adds: temperature, top-p and typical filtering (categorical heads),
classifier-free guidance on logits, priming from a prompt, pre-drawn uniforms (so fast
backends can be checked sample for sample), a tqdm progress bar, and a running typicality
diagnostic: the mean negative log-likelihood of the drawn samples beside the mean entropy
of the model's predictive distribution. Sampling at a very low temperature drives the NLL
far below the entropy (the well-known collapse into silence); honest sampling keeps them
close.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import torch
from tqdm import tqdm

from wavegen.errors import UsageError
from wavegen.nn.distributions import Categorical
from wavegen.nn.logit_filters import cfg_logits, top_p_filter, typical_filter


@dataclass
class SamplingOptions:
    """How to draw samples.

    Attributes:
        temperature: divides the logits (categorical) or scales the scales (continuous
            heads); 0 is greedy.
        top_p: nucleus sampling mass (categorical heads), None = off.
        typical: locally typical sampling mass (categorical heads), None = off.
        cfg_gamma: classifier-free guidance ``uncond + gamma * (cond - uncond)`` on log-probs
            (categorical heads). None = plain conditional sampling; 0 = unconditional;
            1 = conditional; > 1 amplified. In Ho & Salimans' form ``(1 + w) cond - w uncond``,
            ``gamma = 1 + w``.
        seed: seeds the uniforms when none are given (same seed, same audio).
        progress: show a tqdm progress bar.
    """

    temperature: float = 1.0
    top_p: float | None = None
    typical: float | None = None
    cfg_gamma: float | None = None
    seed: int | None = None
    progress: bool = False


@dataclass
class GenerationResult:
    """Output of :func:`generate`.

    Attributes:
        audio: ``[B, 1, N]`` waveform of the generated samples (prompt excluded).
        samples: ``[B, N]`` head samples (class indices, or values on the 16-bit grid).
        mean_nll: ``[B]`` mean NLL (nats) of the drawn samples under the model's (guided)
            predictive distribution at temperature 1, before filtering.
        mean_entropy: ``[B]`` mean entropy (nats) of that distribution (for the 16-bit
            heads, whose exact entropy sums 65536 bins, over every 256th step).
        seconds: wall time of the loop.
    """

    audio: torch.Tensor
    samples: torch.Tensor
    mean_nll: torch.Tensor
    mean_entropy: torch.Tensor
    seconds: float

    @property
    def samples_per_second(self) -> float:
        """Aggregate throughput: batch x length / seconds."""
        return self.samples.numel() / max(self.seconds, 1e-9)


def draw_uniforms(batch: int, length: int, per_sample: int, seed: int | None,
                  device=None) -> torch.Tensor:
    """``[B, N, U]`` uniforms in [0, 1) from a seeded generator (on the CPU, then moved)."""
    generator = torch.Generator()
    if seed is None:
        generator.seed()
    else:
        generator.manual_seed(seed)
    return torch.rand(batch, length, per_sample, generator=generator,
                      dtype=torch.float64).to(device=device, dtype=torch.float32)


def _check_options(head, options: SamplingOptions) -> None:
    categorical = isinstance(head, Categorical)
    for name in ("top_p", "typical", "cfg_gamma"):
        if getattr(options, name) is not None and not categorical:
            raise UsageError(f"{name} needs a categorical head; this model's head is "
                             f"{type(head).__name__}")
    if options.temperature < 0:
        raise UsageError(f"temperature must be >= 0, got {options.temperature}")


class _Draw:
    """One step's sampling from head parameters: guidance, filters, draw and diagnostics."""

    def __init__(self, head, options: SamplingOptions):
        self.head = head
        self.options = options
        self.categorical = isinstance(head, Categorical)

    #: The 16-bit heads' exact entropy sums 65536 bins: evaluate it on every n-th step only.
    grid_entropy_every = 256

    def __call__(self, params: torch.Tensor, params_uncond: torch.Tensor | None,
                 uniforms: torch.Tensor, t: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        """-> (sample ``[B]``, NLL of the sample ``[B]``, entropy ``[B]`` or None if skipped)."""
        o = self.options
        if not self.categorical:
            sample = self.head.sample(params, uniforms, temperature=o.temperature)
            nll = -self.head.log_prob(params[..., None], sample[:, None])[:, 0]
            entropy = self.head.entropy(params) if t % self.grid_entropy_every == 0 else None
            return sample, nll, entropy
        logp = torch.log_softmax(params.float(), dim=-1)
        if params_uncond is not None:
            logp = torch.log_softmax(cfg_logits(params.float(), params_uncond.float(),
                                                o.cfg_gamma), dim=-1)
        logits = logp
        if o.temperature > 0:
            logits = logits / o.temperature
        if o.top_p is not None:
            logits = top_p_filter(logits, o.top_p)
        if o.typical is not None:
            logits = typical_filter(logits, o.typical)
        sample = self.head.sample(logits, uniforms, temperature=1.0 if o.temperature > 0 else 0.0)
        nll = -logp.gather(1, sample[:, None])[:, 0]
        entropy = -(logp.exp() * logp).sum(-1)
        return sample, nll, entropy


def _prepare(model, batch: int, num_samples: int | None, local, prompt):
    """Resolve lengths and turn a waveform prompt into head targets."""
    prompt_targets = None
    prompt_len = 0
    if prompt is not None:
        prompt_targets = model.targets_from_waveform(prompt)
        if prompt_targets.shape[0] != batch:
            raise UsageError(f"prompt has batch {prompt_targets.shape[0]}, expected {batch}")
        prompt_len = prompt_targets.shape[-1]
    if local is not None:
        covered = local.shape[-1] * model.config.hop_length
        if num_samples is None:
            num_samples = covered - prompt_len
        if prompt_len + num_samples != covered:
            raise UsageError(f"local conditioning covers {covered} samples, but prompt "
                             f"({prompt_len}) + new samples ({num_samples}) = "
                             f"{prompt_len + num_samples}")
    if num_samples is None or num_samples < 1:
        raise UsageError("give the number of samples to generate (or local conditioning)")
    return num_samples, prompt_len, prompt_targets


@torch.no_grad()
def generate(model, num_samples: int | None = None, *, batch: int = 1,
             local: torch.Tensor | None = None, global_cond: torch.Tensor | None = None,
             prompt: torch.Tensor | None = None, options: SamplingOptions | None = None,
             uniforms: torch.Tensor | None = None, naive: bool = False,
             backend: str = "reference") -> GenerationResult:
    """Generate ``num_samples`` new samples per batch item, one at a time.

    Args:
        model: a model with the incremental interface described in the module docstring.
        num_samples: new samples to draw; with local conditioning it defaults to what the
            features cover beyond the prompt (and must match it).
        batch: batch size (taken from the conditioning or prompt when given).
        local: ``[B, C, frames]`` local conditioning covering prompt + new samples.
        global_cond: ``[B]`` classes or ``[B, D]`` vectors.
        prompt: ``[B, 1, P]`` waveform to continue (teacher-forced warm-up).
        options: sampling options.
        uniforms: ``[B, N, head.num_uniforms]`` pre-drawn U(0,1) numbers; the same uniforms
            give the same samples on every backend.
        naive: recompute the receptive field at every step instead of using the cached
            per-layer buffers (slow; the reference for tests and benchmarks).
        backend: sampling backend of :mod:`wavegen.kernels` (``"reference"``, ``"auto"``,
            ``"cpu"``, ``"triton"``, ``"cudagraph"``, ``"cuda"``). The fast backends draw from
            the same uniforms with the same rules; their NLL/entropy diagnostics come from
            one teacher-forced pass over the result afterwards (not timed in ``seconds``).

    Returns:
        a :class:`GenerationResult`.
    """
    options = options or SamplingOptions()
    was_training = model.training
    model.eval()
    try:
        return _generate(model, num_samples, batch, local, global_cond, prompt, options,
                         uniforms, naive, backend)
    finally:
        model.train(was_training)


def _generate(model, num_samples, batch, local, global_cond, prompt, options, uniforms, naive,
              backend="reference"):
    head = model.head
    _check_options(head, options)
    for tensor in (local, global_cond, prompt):
        if tensor is not None:
            batch = tensor.shape[0]
    num_samples, prompt_len, prompt_targets = _prepare(model, batch, num_samples, local, prompt)
    device = next(model.parameters()).device
    if uniforms is None:
        uniforms = draw_uniforms(batch, num_samples, head.num_uniforms, options.seed, device)
    elif uniforms.shape != (batch, num_samples, head.num_uniforms):
        raise UsageError(f"uniforms must be [{batch}, {num_samples}, {head.num_uniforms}], "
                         f"got {tuple(uniforms.shape)}")
    previous = prompt_targets[:, -1] if prompt_targets is not None else \
        torch.full((batch,), model.silence_input(), device=device,
                   dtype=torch.long if isinstance(head, Categorical) else torch.float32)
    if backend != "reference" and not naive:
        from wavegen.kernels import open_session

        name, session = open_session(backend, model, batch, prompt_len + num_samples, local,
                                     global_cond, prompt_targets, options)
        if name != "reference":
            return _generate_fast(model, session, previous, uniforms, options, local,
                                  global_cond, prompt_targets)
    guided = options.cfg_gamma is not None
    stepper = (_NaiveStepper if naive else _CachedStepper)(
        model, batch, prompt_len + num_samples, local, global_cond, prompt_targets, guided)
    draw = _Draw(head, options)
    samples, nll_sum, entropy_sum = [], torch.zeros(batch), torch.zeros(batch)
    entropy_steps = 0
    start = time.perf_counter()
    bar = tqdm(total=num_samples, disable=not options.progress, unit="sample",
               unit_scale=True, leave=False)
    for t in range(num_samples):
        params, params_uncond = stepper.step(previous)
        previous, nll, entropy = draw(params, params_uncond, uniforms[:, t], t)
        samples.append(previous)
        nll_sum += nll.float().cpu()
        if entropy is not None:
            entropy_sum += entropy.float().cpu()
            entropy_steps += 1
        if options.progress and (t % 1000 == 999 or t == num_samples - 1):
            bar.update(t + 1 - bar.n)
            bar.set_postfix(nll=f"{(nll_sum / (t + 1)).mean():.2f}",
                            entropy=f"{(entropy_sum / max(entropy_steps, 1)).mean():.2f}")
    bar.close()
    seconds = time.perf_counter() - start
    stacked = torch.stack(samples, dim=1)
    audio = head.waveform_from_samples(stacked).float()[:, None, :]
    return GenerationResult(audio, stacked, nll_sum / num_samples,
                            entropy_sum / max(entropy_steps, 1), seconds)


#: Samples per call into a fast session (progress-bar granularity).
FAST_CHUNK = 4096


def _generate_fast(model, session, previous, uniforms, options, local, global_cond,
                   prompt_targets) -> GenerationResult:
    """The loop on a fast backend's session; diagnostics from a teacher-forced pass."""
    num_samples = uniforms.shape[1]
    bar = tqdm(total=num_samples, disable=not options.progress, unit="sample",
               unit_scale=True, leave=False)
    pieces = []
    start = time.perf_counter()
    for t0 in range(0, num_samples, FAST_CHUNK):
        piece = session.generate(previous, uniforms[:, t0:t0 + FAST_CHUNK], options.temperature)
        pieces.append(piece)
        previous = piece[:, -1]
        bar.update(piece.shape[1])
    bar.close()
    seconds = time.perf_counter() - start
    samples = torch.cat(pieces, dim=1)
    nll, entropy = teacher_forced_diagnostics(model, samples, local, global_cond, prompt_targets)
    audio = model.head.waveform_from_samples(samples).float()[:, None, :]
    return GenerationResult(audio, samples, nll, entropy, seconds)


@torch.no_grad()
def teacher_forced_diagnostics(model, samples: torch.Tensor, local, global_cond,
                               prompt_targets: torch.Tensor | None = None
                               ) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean NLL and entropy ``[B]`` (nats) of generated ``samples`` ``[B, N]`` under the model.

    The same quantities the reference loop accumulates while sampling (temperature 1, no
    filtering; for the 16-bit heads the entropy over every 256th step), from full passes
    over windows of the sequence, so memory stays bounded for long generations.
    """
    from wavegen.kernels.base import ConditioningStream
    from wavegen.models.wavenet import shift_right

    head = model.head
    batch, count = samples.shape
    known = prompt_targets.shape[-1] if prompt_targets is not None else 0
    full = samples if prompt_targets is None else torch.cat(
        [prompt_targets.to(samples.dtype), samples], dim=1)
    inputs = shift_right(full, model.silence_input())
    stream = ConditioningStream(model, batch, full.shape[-1], local, global_cond,
                                model.input.weight.dtype)
    context = model.receptive_field - 1
    step = max(1024, stream.chunk_length())
    nll_sum = torch.zeros(batch, dtype=torch.float64)
    entropy_sum = torch.zeros(batch, dtype=torch.float64)
    entropy_steps = 0
    grid = not isinstance(head, Categorical)
    for t0 in range(known, full.shape[-1], step):
        t1 = min(t0 + step, full.shape[-1])
        w0 = max(0, t0 - context)
        cond = stream.chunk(w0, t1)
        cond = None if cond is None else cond.transpose(1, 2)
        params = model.run(inputs[:, w0:t1], cond, None)[..., t0 - w0:]
        nll_sum -= head.log_prob(params, full[:, t0:t1]).double().sum(-1).cpu()
        if not grid:
            log_p = torch.log_softmax(params.float(), dim=1)
            entropy = -torch.where(log_p > -float("inf"), log_p.exp() * log_p,
                                   torch.zeros_like(log_p)).sum(1)
            entropy_sum += entropy.double().sum(-1).cpu()
            entropy_steps += t1 - t0
            continue
        first = -(-(t0 - known) // _Draw.grid_entropy_every) * _Draw.grid_entropy_every
        for g in range(first, t1 - known, _Draw.grid_entropy_every):
            entropy_sum += head.entropy(params[..., g + known - t0].float()).double().cpu()
            entropy_steps += 1
    return (nll_sum / count).float(), (entropy_sum / max(entropy_steps, 1)).float()


class _CachedStepper:
    """Incremental steps from the model's per-layer buffers (conditional and, for CFG,
    unconditional states side by side)."""

    def __init__(self, model, batch, length, local, global_cond, prompt, guided):
        self.model = model
        self.state = model.start(batch, length, local, global_cond, prompt=prompt)
        self.state_uncond = model.start(batch, length, local, global_cond, unconditional=True,
                                        prompt=prompt) if guided else None

    def step(self, previous):
        params = self.model.step(previous, self.state)
        params_uncond = None if self.state_uncond is None else \
            self.model.step(previous, self.state_uncond)
        return params, params_uncond


class _NaiveStepper:
    """Recomputes the last ``receptive_field`` positions with a full pass at every step."""

    def __init__(self, model, batch, length, local, global_cond, prompt, guided):
        self.model = model
        self.length = length
        self.guided = guided
        self.window = model.receptive_field
        device = next(model.parameters()).device
        self.cond = model.conditioning(length, batch, local, global_cond)
        self.cond_uncond = model.conditioning(
            length, batch, local, global_cond,
            torch.ones(batch, dtype=torch.bool, device=device)) if guided else None
        first = torch.full((batch, 1), model.silence_input(), device=device,
                           dtype=torch.long if isinstance(model.head, Categorical) else torch.float32)
        # inputs[:, t] is the sample before position t; position t predicts sample t.
        self.inputs = first if prompt is None else torch.cat([first, prompt.to(first.dtype)], 1)
        self.time = self.inputs.shape[1] - 1

    def _params(self, cond, inputs, start):
        local_c, global_c = cond
        local_c = None if local_c is None else local_c[..., start:self.time + 1]
        return self.model.run(inputs, local_c, global_c)[..., -1]

    def step(self, previous):
        if self.time > self.inputs.shape[1] - 1:
            self.inputs = torch.cat([self.inputs, previous[:, None].to(self.inputs.dtype)], 1)
        start = max(0, self.time + 1 - self.window)
        inputs = self.inputs[:, start:self.time + 1]
        params = self._params(self.cond, inputs, start)
        params_uncond = self._params(self.cond_uncond, inputs, start) if self.guided else None
        self.time += 1
        return params, params_uncond
