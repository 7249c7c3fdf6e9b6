"""The autoregressive sampling loop shared by WaveNet, SampleRNN and the hierarchical priors.

A model plugs in through the sample-level contract (:mod:`wavegen.sampling.contract`,
:class:`~wavegen.models.protocols.SampleLevelModel`): ``start`` / ``step`` for the cached
incremental loop, ``forward`` for the naive generator and the diagnostics, ``head``,
``silence_input()`` and ``targets_from_waveform()``.

What the loop adds: temperature, top-p and typical filtering (categorical heads),
classifier-free guidance on logits, priming from a prompt, pre-drawn uniforms (so fast
backends can be checked sample for sample; :class:`~wavegen.sampling.draw.Draw`), a tqdm
progress bar, and a running typicality diagnostic: the mean negative log-likelihood of the
drawn samples beside the mean entropy of the model's predictive distribution. Sampling at a
very low temperature drives the NLL far below the entropy (the well-known collapse into
silence); honest sampling keeps them close.

The inner loop can run on a backend of :mod:`wavegen.kernels` instead (``backend=``): a
session there draws whole chunks of samples from the same uniforms with the same rules,
and the diagnostics then come from one teacher-forced pass
(:func:`~wavegen.sampling.diagnostics.teacher_forced_diagnostics`).
"""

from __future__ import annotations

import time

import torch
from tqdm import tqdm

from wavegen.errors import UsageError
from wavegen.sampling.contract import check_sample_level, hop_length, model_device, silence
from wavegen.sampling.diagnostics import teacher_forced_diagnostics
from wavegen.utils.threads import step_threads, torch_threads
from wavegen.sampling.draw import Draw, draw_uniforms
from wavegen.sampling.options import SamplingOptions
from wavegen.sampling.result import GenerationResult


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
        hop = hop_length(model)
        if hop is None:
            raise UsageError(f"this {type(model).__name__} takes no local conditioning")
        covered = local.shape[-1] * hop
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
        model: a sample-level model (:mod:`wavegen.sampling.contract`).
        num_samples: new samples to draw; with local conditioning it defaults to what the
            features cover beyond the prompt (and must match it).
        batch: batch size (taken from the conditioning or prompt when given).
        local: ``[B, C, frames]`` local conditioning covering prompt + new samples.
        global_cond: ``[B]`` classes or ``[B, D]`` vectors.
        prompt: ``[B, 1, P]`` waveform to continue (teacher-forced warm-up).
        options: sampling options.
        uniforms: ``[B, N, head.num_uniforms]`` pre-drawn U(0,1) numbers; the same uniforms
            give the same samples on every backend.
        naive: recompute the receptive field (or, for a model without ``run()``, a full
            teacher-forced ``forward`` pass) at every step instead of
            stepping the model's incremental state (slow; the reference for tests and
            benchmarks).
        backend: sampling backend of :mod:`wavegen.kernels` (``"reference"``, ``"auto"``,
            ``"cpu"``, ``"triton"``, ``"cudagraph"``, ``"cuda"``). The fast backends draw from
            the same uniforms with the same rules; their NLL/entropy diagnostics come from
            inside the step (``cpu``, categorical head) or from one teacher-forced pass over
            the result afterwards, timed in ``seconds`` either way.
            ``auto`` uses ``reference`` (with a one-line notice) for a model or options no
            fast backend supports; naming such a backend is a KernelUnavailableError.

    Returns:
        a :class:`~wavegen.sampling.result.GenerationResult`.
    """
    check_sample_level(model)
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
    options.check(head)
    for tensor in (local, global_cond, prompt):
        if tensor is not None:
            batch = tensor.shape[0]
    num_samples, prompt_len, prompt_targets = _prepare(model, batch, num_samples, local, prompt)
    device = model_device(model)
    if uniforms is None:
        uniforms = draw_uniforms(batch, num_samples, head.num_uniforms, options.seed, device)
    elif uniforms.shape != (batch, num_samples, head.num_uniforms):
        raise UsageError(f"uniforms must be [{batch}, {num_samples}, {head.num_uniforms}], "
                         f"got {tuple(uniforms.shape)}")
    previous = prompt_targets[:, -1] if prompt_targets is not None else \
        silence(model, batch, device)
    if backend != "reference" and not naive:
        from wavegen.kernels import open_session

        name, session = open_session(backend, model, batch, prompt_len + num_samples, local,
                                     global_cond, prompt_targets, options)
        if name != "reference":
            return _generate_fast(model, session, previous, uniforms, options, local,
                                  global_cond, prompt_targets)
    with torch_threads(step_threads(batch, device)):
        return _generate_reference(model, num_samples, batch, local, global_cond, options,
                                   uniforms, naive, prompt_len, prompt_targets, previous)


def _generate_reference(model, num_samples, batch, local, global_cond, options, uniforms,
                        naive, prompt_len, prompt_targets, previous) -> GenerationResult:
    """The reference loop: the model's own steps (or the naive recomputation) and Draw."""
    head = model.head
    stepper = (_naive_stepper(model) if naive else _CachedStepper)(
        model, batch, prompt_len + num_samples, local, global_cond, prompt_targets,
        options.guided)
    draw = Draw(head, options)
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
    """The loop on a fast backend's session. The diagnostics come from inside its step when
    it computes them (the ``cpu`` kernel, categorical head), else from a teacher-forced
    pass over the session's windows; either way they are part of the timed ``seconds``
    (the whole call but the session's set-up)."""
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
    samples = torch.cat(pieces, dim=1)
    diagnostics = session.in_step_diagnostics()
    if diagnostics is None:
        diagnostics = teacher_forced_diagnostics(
            model, samples, local, global_cond, prompt_targets,
            session.teacher_forced_windows(local, global_cond))
    nll, entropy = diagnostics
    audio = model.head.waveform_from_samples(samples).float()[:, None, :]
    seconds = time.perf_counter() - start
    return GenerationResult(audio, samples, nll, entropy, seconds)


class _CachedStepper:
    """Incremental steps from the model's state (``start`` / ``step``): conditional and,
    for CFG, unconditional states side by side."""

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


def _naive_stepper(model):
    """The naive generator for ``model``: a pass over the last ``receptive_field`` positions
    when the model can run one on precomputed conditioning (WaveNet's ``conditioning()`` and
    ``run()``: the baseline of the fast-wavenet paper, O(receptive field) per step), else a
    full pass over the whole sequence (any sample-level model, e.g. a recurrent one)."""
    window = getattr(model, "receptive_field", None)
    windowed = (isinstance(window, int) and window > 0 and callable(getattr(model, "conditioning", None))
                and callable(getattr(model, "run", None)))
    return _WindowedNaiveStepper if windowed else _FullPassNaiveStepper


class _WindowedNaiveStepper:
    """Recomputes the last ``receptive_field`` positions with ``model.run`` at every step."""

    def __init__(self, model, batch, length, local, global_cond, prompt, guided):
        self.model = model
        self.guided = guided
        self.window = model.receptive_field
        device = model_device(model)
        self.cond = model.conditioning(length, batch, local, global_cond)
        self.cond_uncond = model.conditioning(
            length, batch, local, global_cond,
            torch.ones(batch, dtype=torch.bool, device=device)) if guided else None
        first = silence(model, batch, device)[:, None]
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


class _FullPassNaiveStepper:
    """A full teacher-forced ``forward`` pass over the whole sequence at every step.

    Inputs not known yet are silence: the model is causal, so they do not change the
    position being predicted (and a model that is not would show here as a mismatch with
    the cached loop).
    """

    def __init__(self, model, batch, length, local, global_cond, prompt, guided):
        self.model = model
        self.local = local
        self.global_cond = global_cond
        self.guided = guided
        device = model_device(model)
        # inputs[:, t] is the sample before position t; position t predicts sample t.
        self.inputs = silence(model, batch, device)[:, None].repeat(1, length)
        self.time = 0
        if prompt is not None:
            self.inputs[:, 1:prompt.shape[-1] + 1] = prompt.to(self.inputs.dtype)
            self.time = prompt.shape[-1]

    def _params(self, **kwargs):
        return self.model(self.inputs, self.local, self.global_cond, **kwargs)[..., self.time]

    def step(self, previous):
        self.inputs[:, self.time] = previous.to(self.inputs.dtype)
        params = self._params()
        params_uncond = self._params(unconditional=True) if self.guided else None
        self.time += 1
        return params, params_uncond


__all__ = ["FAST_CHUNK", "generate"]
