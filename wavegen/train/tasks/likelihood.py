"""Likelihood training: the exact negative log-likelihood of sample-level models
(teacher-forced: WaveNet; SampleRNN and the hierarchical priors share it) and of flows
(WaveGlow: latents' Gaussian NLL minus the log-determinants), in nats per sample."""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from wavegen.audio.metrics import nats_to_bits
from wavegen.errors import ConfigError
from wavegen.models.protocols import NOISE_DRIVEN, SAMPLE_LEVEL, FlowModel
from wavegen.train.listening import conditioning_window, finish_listening, sample_length
from wavegen.train.tasks.base import Objective, Task
from wavegen.train.tasks.registry import TaskSpec


def conditioning_of(batch: dict[str, torch.Tensor], key: str | None):
    """The local conditioning tensor a batch carries under ``key`` (None = unconditional)."""
    return None if key is None else batch[key]


class _NLL(nn.Module):
    """``forward(batch) -> (nats per sample, metrics)`` for a model with ``loss()``.

    A batch of stream chunks (``"chunk"`` and ``"stream"`` entries, see
    :mod:`wavegen.data.streams`) trains by truncated BPTT instead:
    ``model.tbptt_loss(audio, local, global_cond, state, reset)`` continues each lane from
    the state the previous chunk of the same streams left (detached), and starts a lane
    afresh at its stream's chunk 0. The carried states are keyed by the lanes' stream
    indices, so micro-batches and resumed runs find theirs; :meth:`state_dict` is what a
    checkpoint stores of them.
    """

    def __init__(self, model: nn.Module, local_key: str | None, global_key: str | None,
                 target_key: str = "audio"):
        super().__init__()
        self.model = model
        self.target_key = target_key
        self.local_key = local_key
        self.global_key = global_key
        #: stream key -> {"step": optimiser step that wrote it, "state": the model's state}
        self.carried: dict[str, dict] = {}
        self.step = 0

    def forward(self, batch: dict[str, torch.Tensor]):
        if "chunk" in batch:
            loss = self._tbptt(batch)
        else:
            loss = self.model.loss(batch[self.target_key], conditioning_of(batch, self.local_key),
                                   conditioning_of(batch, self.global_key))
        return loss, {"nll": loss.detach().item(), "bits": nats_to_bits(loss.detach().item())}

    def _tbptt(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        key = ",".join(str(s) for s in batch["stream"].tolist())
        # states older than the previous step belong to finished streams
        self.carried = {k: v for k, v in self.carried.items() if v["step"] >= self.step - 1}
        entry = self.carried.get(key)
        reset = batch["chunk"] == 0
        if entry is None:  # a stream's first chunk (or a run resumed without its state)
            reset = torch.ones_like(reset)
        carried = None
        if entry is not None:  # a resumed run loads the training state on the CPU
            device = batch["audio"].device
            carried = {k: v.to(device) for k, v in entry["state"].items()}
        loss, state = self.model.tbptt_loss(batch["audio"],
                                            conditioning_of(batch, self.local_key),
                                            conditioning_of(batch, self.global_key),
                                            carried, reset)
        self.carried[key] = {"step": self.step, "state": state}
        return loss


class LikelihoodTask(Task):
    """Teacher-forced NLL; validation reports nats and bits per sample.

    The ``best`` checkpoint is the one with the lowest validation NLL.

    Args:
        model: a sample-level model with ``loss(audio, local, global_cond)`` and the
            incremental interface of :mod:`wavegen.sampling` (for validation samples).
        local_key: batch key of the local conditioning (``"mel"``, ``"roll"``) or None.
        global_key: batch key of the global conditioning or None.
        features: FeatureConfig used to score mel-conditioned samples (log-mel L1).
        target_key: batch key of what the model predicts: ``"audio"``, or ``"codes"`` for
            a prior over VQ-VAE codes (:mod:`wavegen.data.code_dataset`).
    """

    def __init__(self, model: nn.Module, local_key: str | None = None,
                 global_key: str | None = None, features=None, target_key: str = "audio"):
        self.model = model
        self.local_key = local_key
        self.global_key = global_key
        self.features = features
        self.target_key = target_key
        self.objective = _NLL(model, local_key, global_key, target_key)
        self.validation_key = "nll"

    def objectives(self) -> dict[str, Objective]:
        return {"model": Objective(self.objective, list(self.model.parameters()))}

    def set_step(self, step: int) -> None:
        super().set_step(step)
        self.objective.step = step

    def state_dict(self) -> dict:
        """The truncated-BPTT states carried into the next step ({} otherwise)."""
        return {"carried": self.objective.carried} if self.objective.carried else {}

    def load_state_dict(self, state: dict) -> None:
        self.objective.carried = dict(state.get("carried") or {})

    @torch.no_grad()
    def validation_metrics(self, model, batch):
        nll = model.loss(batch[self.target_key], conditioning_of(batch, self.local_key),
                         conditioning_of(batch, self.global_key)).item()
        return {"nll": nll, "bits": nats_to_bits(nll)}

    @torch.no_grad()
    def make_samples(self, model, batch, out_dir: Path, seconds: float, sample_rate: int):
        """Sample ``seconds`` of audio from the model, conditioned on the batch's first
        example; ``sample.wav`` + ``sample.png`` and ``reference.wav`` (see
        :mod:`wavegen.train.listening`). Returns the sample's NLL and entropy per sample
        (a sample-level model) or the sample's log-mel L1 (a flow, which is sampled by
        ``infer`` at its default sigma, seeded)."""
        from wavegen.sampling import SamplingOptions, generate

        length = sample_length(seconds, sample_rate)
        if isinstance(model, FlowModel) and not hasattr(model, "step"):
            local, _ = conditioning_window(conditioning_of(batch, self.local_key)[:1], length,
                                           model.config.hop_length)
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(0)
                audio = model.infer(local).float().clamp(-1.0, 1.0)
            return finish_listening(out_dir, "sample", audio[..., :length],
                                    batch["audio"][:1, :, :length], sample_rate, {},
                                    features=self.features, mel_features=self.features)
        generated = length
        local = conditioning_of(batch, self.local_key)
        if local is not None:
            local, generated = conditioning_window(local, length, model.config.hop_length)
        global_cond = conditioning_of(batch, self.global_key)
        global_cond = None if global_cond is None else global_cond[:1]
        result = generate(model, generated, local=local, global_cond=global_cond,
                          options=SamplingOptions(seed=0))
        metrics = {"sample_nll": float(result.mean_nll.mean()),
                   "sample_entropy": float(result.mean_entropy.mean())}
        return finish_listening(out_dir, "sample", result.audio[:1, :, :length],
                                batch["audio"][:1, :, :length], sample_rate, metrics,
                                features=self.features,
                                mel_features=None if local is None else self.features)


def local_key_of(recipe) -> str | None:
    """The batch key of a recipe's local conditioning (``"mel"``, ``"roll"``, the upper
    level's ``"upper_codes"`` for ``codes``) or None."""
    conditioning = recipe.data.conditioning
    return None if conditioning == "none" else {"codes": "upper_codes"}.get(conditioning,
                                                                           conditioning)


def _build(recipe, model: nn.Module) -> LikelihoodTask:
    target = "codes" if recipe.data.kind == "codes" else "audio"
    return LikelihoodTask(model, local_key=local_key_of(recipe), features=recipe.feature_config,
                          target_key=target)


def _check(recipe) -> None:
    # A noise-driven family may be a flow (trained by its exact likelihood) or a diffusion
    # denoiser (which has no likelihood to train on).
    model_class = recipe.family.model_class
    if isinstance(model_class, type) and not callable(getattr(model_class, "loss", None)):
        raise ConfigError(f"task likelihood needs a model with loss(audio, local, global_cond); "
                          f"family {recipe.family.name} has none")
    if recipe.data.kind == "codes" and recipe.train.sample_seconds:
        raise ConfigError("train.sample_seconds: a prior's codes become audio only through "
                          "its VQ-VAE; leave it 0 and sample through a hierarchy "
                          "(wavegen sample HIERARCHY)")
    if recipe.data.stream_chunks > 1 and isinstance(model_class, type) \
            and not callable(getattr(model_class, "tbptt_loss", None)):
        raise ConfigError(f"data.stream_chunks {recipe.data.stream_chunks} trains by truncated "
                          f"BPTT, which family {recipe.family.name} does not support (it has "
                          f"no tbptt_loss); use stream_chunks 1")


#: Recipes: ``task: likelihood`` (no section of its own).
TASK_SPEC = TaskSpec("likelihood", _build, check=_check, kinds=(SAMPLE_LEVEL, NOISE_DRIVEN))
