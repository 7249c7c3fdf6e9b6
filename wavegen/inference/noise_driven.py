"""Noise-driven models: flows (WaveGlow-style) and diffusion (DiffWave / WaveGrad-style).

Both turn Gaussian noise into audio under the conditioning, so both are seeded by
``options.seed`` and need no prompt. They differ in how they are driven:

* a flow provides ``infer(local [B, C, frames], sigma) -> audio [B, 1, frames * hop]``;
  ``options.sigma`` is the std of its latent noise (None: the model's default). A flow
  whose ``infer`` also takes ``noise`` (WaveGlow) is rendered in chunks with noise tied to
  sample positions, seeded by ``options.seed`` (flat memory); any other is run once with
  torch's generator forked and seeded for the call. Either way the same seed gives the same
  audio and the caller's RNG stream is untouched.
* a diffusion model is a network ``model(x_t [B, 1, T], t [B], local=None) -> prediction``
  whose bundle records its :class:`~wavegen.diffusion.process.DiffusionProcess`
  (:attr:`BundleInfo.process`); it runs through the process's sampler, which
  ``options.sampler`` / ``steps`` / ``eta`` override (``steps`` N follows the few-step grid
  the process stores for N in ``time_grids``, if any), with classifier-free guidance
  ``options.guidance`` (default: the process's scale; the unconditional branch is the
  network given zero conditioning, as :class:`~wavegen.train.tasks.diffusion.DiffusionTask`
  trains it; a bundle trained on a labelled corpus takes ``options.label``, by name among its
  ``extra.labels``, and guides against its "no label" row). An unconditional model
  continues a ``prompt`` by inpainting. Conditioned
  runs go in overlapping chunks of ``options.chunk_frames`` frames with
  ``options.overlap_frames`` of context, their noise tied to sample positions, so memory is
  flat however long the input (:mod:`wavegen.diffusion.chunked`).

:func:`noise_driven_adapter` picks one: diffusion when the bundle records a process.
"""

from __future__ import annotations

import inspect
import time

import torch
from torch import nn

from wavegen.checkpoint import BundleInfo
from wavegen.errors import CheckpointError, UsageError
from wavegen.inference.base import Adapter, Sink, SynthesisResult, deliver, generator_for
from wavegen.inference.conditioning import Conditioning, contract
from wavegen.inference.options import InferenceOptions
from wavegen.models.protocols import NOISE_DRIVEN


def _synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


class FlowAdapter(Adapter):
    """A flow's ``infer(local, sigma)``, seeded; chunked when the flow takes its noise.

    A flow whose ``infer`` accepts ``noise`` (standard normals ``[B, 1, T]``, one per sample,
    as :class:`~wavegen.models.waveglow.WaveGlow`'s) is rendered in overlapping chunks with
    noise tied to sample positions (:func:`~wavegen.inference.chunked_noise.render_chunked`,
    stream 0), so memory stays flat; the joins equal one pass when ``overlap_frames`` covers
    the flow's receptive field. Weight normalisation is folded once when the adapter is
    made, and ``options.bf16`` runs a flow whose ``infer`` takes ``dtype`` in bfloat16.
    """

    kind = NOISE_DRIVEN
    uses = frozenset({"sigma"})

    def __init__(self, model: nn.Module, info: BundleInfo):
        super().__init__(model, info)
        from wavegen.nn.weight_norm import fold_weight_norm, has_weight_norm

        if has_weight_norm(model):
            fold_weight_norm(model)
        parameters = inspect.signature(model.infer).parameters
        self.takes_noise = "noise" in parameters
        self.takes_dtype = "dtype" in parameters

    def run(self, conditioning: Conditioning, options: InferenceOptions,
            sink: Sink | None = None) -> SynthesisResult:
        if conditioning.local is None:
            raise UsageError(f"{self.name}: a flow needs its conditioning "
                             f"({self.input.describe()})")
        device = self.device()
        kwargs = {} if options.sigma is None else {"sigma": options.sigma}
        if self.takes_dtype and options.bf16:
            kwargs["dtype"] = torch.bfloat16
        if self.takes_noise:
            return self._run_chunked(conditioning.local, options, kwargs, sink)
        local = conditioning.local.to(device, torch.float32)
        devices = [device] if device.type == "cuda" else []
        start = time.perf_counter()
        with torch.random.fork_rng(devices=devices), torch.inference_mode():
            if options.seed is None:
                torch.seed()
            else:
                torch.manual_seed(options.seed)
            audio = self.model.infer(local, **kwargs).float()
        _synchronize(device)
        seconds = time.perf_counter() - start
        return deliver(audio.clamp(-1.0, 1.0).cpu(), self.output, seconds, sink)

    def _run_chunked(self, local: torch.Tensor, options: InferenceOptions, kwargs: dict,
                     sink: Sink | None) -> SynthesisResult:
        from wavegen.inference.chunked_noise import render_chunked

        _, hop, _ = contract(self.info.model_config)
        seed = options.seed
        if seed is None:
            seed = int(torch.randint(0, 2 ** 62, (1,), generator=generator_for(None)))

        def render(window: torch.Tensor, noise) -> torch.Tensor:
            return self.model.infer(window, noise=noise(0).to(window.device), **kwargs)

        with torch.inference_mode():
            audio, seconds = render_chunked(render, local, hop, seed,
                                            chunk_frames=options.chunk_frames,
                                            overlap_frames=options.overlap_frames, sink=sink,
                                            device=self.device())
        return SynthesisResult(audio, self.output, local.shape[-1] * hop, seconds)


class DiffusionAdapter(Adapter):
    """The bundle's diffusion process sampling the network (see the module docstring)."""

    kind = NOISE_DRIVEN
    uses = frozenset({"sampler", "steps", "eta", "guidance", "label"})

    def __init__(self, model: nn.Module, info: BundleInfo):
        super().__init__(model, info)
        from wavegen.diffusion.process import DiffusionProcess

        if info.process is None:
            raise CheckpointError(f"{self.name}: a diffusion bundle without a 'process'")
        self.process = DiffusionProcess.from_dict(dict(info.process), "process")

    def _denoiser(self, local: torch.Tensor | None, label: int | None = None):
        if label is None:
            def denoise(x_t: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
                return self.model(x_t, t, local=local)
        else:
            def denoise(x_t: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
                labels = torch.full((x_t.shape[0],), label, dtype=torch.long, device=x_t.device)
                return self.model(x_t, t, local=local, global_cond=labels)
        return denoise

    def label_index(self, label: str | None) -> int | None:
        """The class index of ``label`` (a name among the bundle's ``extra.labels``, or an
        index); None for None. A UsageError naming the known labels otherwise."""
        if label is None:
            return None
        names = list(self.info.extra.get("labels") or [])
        if not names:
            raise UsageError(f"{self.name}: this model was not trained with labels; drop --label")
        if label in names:
            return names.index(label)
        if label.isdigit() and int(label) < len(names):
            return int(label)
        raise UsageError(f"{self.name}: unknown label {label!r}; it knows "
                         f"{', '.join(names[:10])}{', ...' if len(names) > 10 else ''}")

    def run(self, conditioning: Conditioning, options: InferenceOptions,
            sink: Sink | None = None) -> SynthesisResult:
        from wavegen.diffusion.guidance import classifier_free_guidance

        device = self.device()
        local = conditioning.local
        label = self.label_index(options.label)
        no_label = int(getattr(getattr(self.model, "config", None), "global_classes", 0))
        scale = self.process.guidance_scale if options.guidance is None else options.guidance
        if options.guidance is not None and local is None and label is None:
            raise UsageError(f"{self.name}: guidance needs a conditioned model (or a --label); "
                             f"this run is unconditional")
        overrides = {name: value for name, value in (("sampler", options.sampler),
                                                     ("steps", options.steps),
                                                     ("eta", options.eta)) if value is not None}
        calls = [0]

        def make_denoiser(window: torch.Tensor | None):
            denoise = self._denoiser(window, label)
            if (window is not None or label is not None) and scale != 1:
                # The unconditional branch: no conditioning and the "no label" row.
                unconditional = self._denoiser(
                    None if window is None else torch.zeros_like(window),
                    None if label is None else no_label)
                denoise = classifier_free_guidance(denoise, unconditional, scale)

            def counted(x_t: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
                calls[0] += 1
                return denoise(x_t, t)
            return counted

        if local is not None:
            return self._run_chunked(local, make_denoiser, options, overrides, calls, sink)
        length, skip, batch = conditioning.num_samples, 0, 1
        known = mask = None
        if conditioning.prompt is not None:
            prompt = conditioning.prompt.to(device, torch.float32)
            skip, batch = prompt.shape[-1], prompt.shape[0]
            known = torch.cat([prompt, prompt.new_zeros(batch, 1, length)], dim=-1)
            mask = torch.zeros_like(known)
            mask[..., :skip] = 1.0
        start = time.perf_counter()
        with torch.inference_mode():
            audio = self.process.sample(make_denoiser(None), (batch, 1, skip + length),
                                        generator=generator_for(options.seed), known=known,
                                        mask=mask, progress=options.progress, device=device,
                                        **overrides)
        _synchronize(device)
        seconds = time.perf_counter() - start
        audio = audio[..., skip:].float().clamp(-1.0, 1.0).cpu()
        result = deliver(audio, self.output, seconds, sink)
        result.evaluations = calls[0]
        return result

    def _run_chunked(self, local: torch.Tensor, make_denoiser, options: InferenceOptions,
                     overrides: dict, calls: list[int], sink: Sink | None) -> SynthesisResult:
        """Conditioned sampling in overlapping chunks (:mod:`wavegen.diffusion.chunked`);
        the NFE reported is per chunk (every sample sees that many evaluations)."""
        from tqdm import tqdm

        from wavegen.diffusion.chunked import sample_chunked

        _, hop, _ = contract(self.info.model_config)
        seed = options.seed
        if seed is None:
            seed = int(torch.randint(0, 2 ** 62, (1,), generator=generator_for(None)))
        chunks = -(-local.shape[-1] // options.chunk_frames)
        bar = tqdm(total=chunks, unit="chunk", desc="diffusion", leave=False,
                   disable=not options.progress)

        def sample(denoise, shape, **kwargs):
            return self.process.sample(denoise, shape, **overrides, **kwargs)

        try:
            with torch.inference_mode():
                audio, seconds = sample_chunked(
                    sample, make_denoiser, local, hop, seed, chunk_frames=options.chunk_frames,
                    overlap_frames=options.overlap_frames, sink=sink, device=self.device(),
                    on_chunk=lambda index, total: bar.update(1))
        finally:
            bar.close()
        result = SynthesisResult(audio, self.output, local.shape[-1] * hop, seconds)
        result.evaluations = calls[0] // chunks
        return result


def noise_driven_adapter(model: nn.Module, info: BundleInfo) -> Adapter:
    """:class:`DiffusionAdapter` when the bundle records a diffusion process, else
    :class:`FlowAdapter` (which needs the model's ``infer``)."""
    if info.process is not None:
        return DiffusionAdapter(model, info)
    if not callable(getattr(model, "infer", None)):
        raise CheckpointError(f"{info.path or info.family}: a noise-driven model with neither a "
                              f"diffusion process in config.json nor an infer(local, sigma) method")
    return FlowAdapter(model, info)


__all__ = ["FlowAdapter", "DiffusionAdapter", "noise_driven_adapter"]
