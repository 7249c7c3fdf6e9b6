"""The trainer every model family uses: one loop, any task, laptop CPU to many GPUs.

Per optimiser step, for each objective of the task in order (e.g. discriminator, then
generator) that its update schedule makes active: the step's ``accumulate`` micro-batches
are run through it under autocast (bf16, or fp16 with dynamic loss scaling) and
back-propagated (DDP's gradient sync only on the last micro-batch); then its optimiser
unscales, clips and steps and its LR schedule advances. Finally the loss scale and the EMA
are updated.

The run folder ``OUT`` (layout: :mod:`wavegen.train.run_folder`) is locked for the whole
run by the main process: a second run on it is refused at once. Taking the lock, the run
tidies what a killed run left, checks that ``OUT`` holds no run unless resuming, and writes
``recipe.yaml``; under DDP every rank stops with it if any of that fails.

Checkpoints are model bundles (see :mod:`wavegen.checkpoint`) under
``OUT/checkpoints/step-NNNNNNN`` with the training state inside, written atomically; the
file ``OUT/checkpoints/latest`` names the newest complete one, the last ``keep_last`` are
kept, and the one with the best validation loss is copied to ``OUT/checkpoints/best``. A
full disk while checkpointing stops the run with a one-line
:class:`~wavegen.errors.StorageError` naming the file; the previous checkpoint and
``latest`` stay as they were, so ``--resume`` continues from there once space is freed.
``resume=True`` restores weights, EMA, optimisers, schedules, loss scaler, step, RNG state and
the data position, so an interrupted run continues exactly as if it had not stopped (bitwise
on the CPU). Validation and sampling run on a forked RNG so they never shift the training
random stream; validation samples are ``sample_seconds`` long (:mod:`wavegen.train.listening`).

Logs: ``OUT/log.csv`` (step, kind, name, value), TensorBoard event files when
``torch.utils.tensorboard`` imports, a tqdm bar with the loss, throughput and an ETA that
knows the task's phases (:mod:`wavegen.train.progress`), one printed line per validation and
a summary line at the end (the lines also without the bar).
"""

from __future__ import annotations

import contextlib
import copy
import csv
import math
import os
import shutil
import time
from pathlib import Path
from typing import Any

import torch
import yaml
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader

from wavegen.checkpoint import (BundleInfo, auxiliary_file, load_training_state, load_weights,
                                save_bundle, EMA_FILE, MODEL_FILE)
from wavegen.errors import CheckpointError, ConfigError
from wavegen.train.config import TrainConfig
from wavegen.train.data_plan import DataPlan, StreamPlan
from wavegen.train.distributed import (DistInfo, all_ranks_ok, all_reduce_mean, barrier,
                                       gather_states, init_from_environment)
from wavegen.train.ema import EMA
from wavegen.train.listening import check_listening_length, listening_batch, sample_length
from wavegen.train.progress import PhaseClock, TrainingBar, summary_line, validation_line
from wavegen.train.run_folder import (BEST, CHECKPOINTS, LATEST, RECIPE, SAMPLES, RunFolder,
                                      checkpoint_name)
from wavegen.train.schedules import lr_factor
from wavegen.train.tasks.base import Task
from wavegen.utils.atomic import atomic_write_text, storage_errors_named
from wavegen.utils.threads import free_threads, torch_threads

__all__ = ["Trainer", "pick_device", "to_device", "CHECKPOINTS", "LATEST", "BEST"]


def pick_device(config: TrainConfig) -> torch.device:
    if config.device == "cuda" or (config.device == "auto" and torch.cuda.is_available()):
        if not torch.cuda.is_available():
            raise ConfigError("train.device is cuda but no CUDA device is available")
        return torch.device("cuda")
    return torch.device("cpu")


def to_device(batch: dict[str, torch.Tensor], device: torch.device) -> dict[str, torch.Tensor]:
    return {k: v.to(device, non_blocking=True) if torch.is_tensor(v) else v for k, v in batch.items()}


class _Logger:
    """CSV (always) and TensorBoard (when available) scalar logging, rank 0 only."""

    def __init__(self, out_dir: Path, enabled: bool):
        self.enabled = enabled
        self.writer = None
        self.path = out_dir / "log.csv"
        if not enabled:
            return
        new = not self.path.exists()
        self.file = open(self.path, "a", newline="")
        self.csv = csv.writer(self.file)
        if new:
            self.csv.writerow(["step", "kind", "name", "value", "wall_time"])
        try:
            from torch.utils.tensorboard import SummaryWriter
            self.writer = SummaryWriter(str(out_dir / "tensorboard"))
        except Exception:  # tensorboard is optional
            self.writer = None

    def log(self, step: int, kind: str, values: dict[str, float]) -> None:
        if not self.enabled:
            return
        now = time.time()
        for name, value in sorted(values.items()):
            self.csv.writerow([step, kind, name, f"{value:.6g}", f"{now:.3f}"])
            if self.writer is not None:
                self.writer.add_scalar(f"{kind}/{name}", value, step)
        self.file.flush()

    def close(self) -> None:
        if self.enabled:
            self.file.close()
            if self.writer is not None:
                self.writer.close()


class Trainer:
    """Trains ``task`` on ``train_set``, validating on ``val_set``, writing into ``out_dir``.

    Args:
        task: the objective (owns the model).
        train_set, val_set: datasets of dict items (see :mod:`wavegen.data`); ``set_epoch``
            is called when present.
        config: the ``train:`` section.
        out_dir: run directory (checkpoints, logs, samples).
        info: what the bundles record about the model (family, config, features, rate).
        recipe: the resolved recipe, stored with every checkpoint for reproducibility and
            written to ``OUT/recipe.yaml`` when the run starts.
        progress: draw the progress bar (the validation and summary lines print regardless).
        run_folder: ``out_dir`` as a :class:`~wavegen.train.run_folder.RunFolder`, possibly
            claimed already (the command line claims it before building the data).
    """

    def __init__(self, task: Task, train_set, val_set, config: TrainConfig, out_dir: str | os.PathLike,
                 info: BundleInfo, recipe: dict[str, Any] | None = None,
                 dist_info: DistInfo | None = None, progress: bool = True,
                 run_folder: RunFolder | None = None):
        self.task = task
        self.train_set = train_set
        self.val_set = val_set
        self.config = config
        self.out_dir = Path(out_dir)
        self.run_folder = run_folder or RunFolder(self.out_dir)
        self.info = info
        self.recipe = recipe or {}
        self.device = pick_device(config)
        self.dist = dist_info or init_from_environment(self.device.type)
        self.progress = progress and self.dist.is_main
        chunks = getattr(train_set, "chunks", None)  # StreamChunks: truncated-BPTT lanes
        if chunks is not None:
            self.plan: DataPlan = StreamPlan(len(train_set), config.batch_size, config.accumulate,
                                             self.dist.world_size, self.dist.rank, config.seed,
                                             chunks=chunks)
        else:
            self.plan = DataPlan(len(train_set), config.batch_size, config.accumulate,
                                 self.dist.world_size, self.dist.rank, config.seed)
        task.model.to(self.device)
        self.auxiliary = task.auxiliary_modules()
        for module in self.auxiliary.values():
            module.to(self.device)
        self.objectives = task.objectives()
        self.wrapped = {name: self._wrap(obj) for name, obj in self.objectives.items()}
        self.optimizers = {
            name: torch.optim.AdamW(
                obj.parameters, lr=config.lr if obj.lr is None else obj.lr,
                betas=tuple(config.betas if obj.betas is None else obj.betas),
                weight_decay=config.weight_decay if obj.weight_decay is None else obj.weight_decay)
            for name, obj in self.objectives.items()}
        self.schedulers = {
            name: torch.optim.lr_scheduler.LambdaLR(opt, lambda s: lr_factor(config, s))
            for name, opt in self.optimizers.items()}
        self.scaler = torch.amp.GradScaler(self.device.type, enabled=config.amp == "fp16")
        self.ema = EMA(task.model, config.ema_decay) if config.ema_decay > 0 else None
        self.step = 0
        self.best = math.inf
        #: Lowest validation loss seen so far (``best`` counts checkpointed ones only).
        self.lowest_validation = math.inf

    # ------------------------------------------------------------------ set-up helpers
    def _wrap(self, objective) -> torch.nn.Module:
        module = objective.module
        module.to(self.device)
        if not self.dist.enabled:
            return module
        # An objective's module may reach parameters it does not train (a GAN generator
        # loss runs the discriminator, the discriminator loss holds the generator): DDP
        # syncs only the objective's own, so the others neither block nor cost a reduction.
        own = {id(p) for p in objective.parameters}
        ignored = [name for name, p in module.named_parameters() if id(p) not in own]
        if ignored:
            DistributedDataParallel._set_params_and_buffers_to_ignore_for_model(module, ignored)
        ids = [self.dist.local_rank] if self.device.type == "cuda" else None
        return DistributedDataParallel(module, device_ids=ids)

    def _autocast(self):
        if self.config.amp == "none":
            return contextlib.nullcontext()
        dtype = torch.bfloat16 if self.config.amp == "bf16" else torch.float16
        return torch.autocast(self.device.type, dtype=dtype)

    def _loader(self, dataset, batches, workers: int, epoch: int = 0) -> DataLoader:
        # The loader draws its worker base seed from ``generator``; without one it would
        # draw from the global RNG whenever an iterator starts, which happens at a
        # different point of the random stream after --resume (breaking exact resume for
        # any model that uses randomness in training, e.g. dropout or VQ code restarts).
        generator = torch.Generator().manual_seed(self.config.seed * 1_000_003 + epoch)
        return DataLoader(dataset, batch_sampler=batches, num_workers=workers,
                          pin_memory=self.device.type == "cuda", generator=generator)

    @property
    def checkpoint_dir(self) -> Path:
        return self.run_folder.checkpoints

    # ------------------------------------------------------------------ the loop
    def fit(self, resume: bool = False) -> dict[str, float]:
        """Train until ``config.steps``; returns the last validation metrics."""
        with self._claimed_run_folder(resume):
            saved_threads = self._resume() if resume else None
            with torch_threads(self._run_threads(saved_threads)):
                return self._loop()

    def _run_threads(self, saved: int | None) -> int | None:
        """The CPU thread count to train with (see ``TrainConfig.threads``): the resumed
        run's own, else the configured count, ``auto``'s free cores or torch's setting."""
        wanted = self.config.threads
        if saved is not None and not (isinstance(wanted, int) and wanted > 0 and wanted != saved):
            return saved
        if saved is not None and self.dist.is_main:
            print(f"training on {wanted} threads where the run trained on {saved}: the steps "
                  f"from here differ in the last bits from an uninterrupted run", flush=True)
        if wanted == "auto":
            return free_threads()
        return wanted or None

    @contextlib.contextmanager
    def _claimed_run_folder(self, resume: bool):
        """Hold the run folder's lock (main rank) while the block runs; see the module doc."""
        error: BaseException | None = None
        if self.dist.is_main:
            try:
                self._start_run(resume)
            except BaseException as exc:  # every rank must hear of it, then it is re-raised
                error = exc
        if not all_ranks_ok(error is None, self.dist):
            self.run_folder.release()
            if error is not None:
                raise error
            raise CheckpointError(f"{self.out_dir}: the main process could not start the run")
        try:
            yield
        finally:
            self.run_folder.release()

    def _start_run(self, resume: bool) -> None:
        """Main rank: claim the folder, tidy it, check it suits ``resume``, write the recipe."""
        c = self.config
        with storage_errors_named(self.out_dir):
            self.out_dir.mkdir(parents=True, exist_ok=True)
        self.run_folder.claim()
        try:
            tidied = self.run_folder.tidy()
            if tidied:
                names = ", ".join(str(p.relative_to(self.out_dir)) for p in tidied[:3])
                more = f" and {len(tidied) - 3} more" if len(tidied) > 3 else ""
                print(f"tidied {len(tidied)} leftover(s) of an interrupted run in "
                      f"{self.out_dir}: {names}{more}", flush=True)
            if not resume and self.run_folder.holds_run():
                raise CheckpointError(f"{self.out_dir} already holds a run; pass --resume to "
                                      f"continue it or choose another --out")
            if c.sample_seconds > 0 and self.val_set is not None and len(self.val_set) > 0:
                with torch.random.fork_rng(devices=[]):
                    check_listening_length(self.val_set, c.sample_seconds, self.info.sample_rate)
            if self.recipe:
                atomic_write_text(self.out_dir / RECIPE,
                                  yaml.safe_dump(self.recipe, sort_keys=False))
        except BaseException:
            self.run_folder.release()
            raise

    def _loop(self) -> dict[str, float]:
        c = self.config
        logger = _Logger(self.out_dir, self.dist.is_main)
        bar = TrainingBar(c.steps, self.step, self.progress)
        clock = PhaseClock(self.task.phases(), c.steps)
        last_val: dict[str, float] = {}
        start_time = time.perf_counter()
        step_started = start_time
        window_time, window_items, window_metrics = time.perf_counter(), 0, {}
        try:
            while self.step < c.steps:
                epoch, in_epoch = self.plan.position(self.step)
                if hasattr(self.train_set, "set_epoch"):
                    self.train_set.set_epoch(epoch)
                batches = list(self.plan.micro_batches(epoch, in_epoch))
                iterator = iter(self._loader(self.train_set, batches, c.num_workers, epoch))
                for _ in range(in_epoch, self.plan.steps_per_epoch):
                    if self.step >= c.steps:
                        break
                    metrics = self._train_step(iterator)
                    self.step += 1
                    window_items += c.batch_size
                    for k, v in metrics.items():
                        window_metrics[k] = window_metrics.get(k, 0.0) + v
                    if self.step % c.log_every == 0 or self.step == c.steps:
                        elapsed = time.perf_counter() - window_time
                        steps_in_window = window_items // c.batch_size
                        averaged = {k: v / steps_in_window for k, v in window_metrics.items()}
                        averaged = all_reduce_mean(averaged, self.dist)
                        averaged["lr"] = self.schedulers[next(iter(self.schedulers))].get_last_lr()[0]
                        averaged["items_per_s"] = window_items / max(elapsed, 1e-9)
                        logger.log(self.step, "train", averaged)
                        bar.show({k: v for k, v in averaged.items()
                                  if k in ("nll", "loss", "items_per_s")})
                        window_time, window_items, window_metrics = time.perf_counter(), 0, {}
                    if self.step % c.val_every == 0 or self.step == c.steps:
                        last_val = self._validate()
                        logger.log(self.step, "val", last_val)
                        self._report_validation(bar, last_val)
                    if self.step % c.checkpoint_every == 0 or self.step == c.steps:
                        self._checkpoint(last_val)
                    now = time.perf_counter()
                    clock.record(self.step - 1, now - step_started)
                    step_started = now
                    bar.advance(clock.remaining(self.step))
        finally:
            bar.close()
            logger.close()
        if self.dist.is_main:
            print(summary_line(self.step, time.perf_counter() - start_time, last_val), flush=True)
        return last_val

    def _report_validation(self, bar: TrainingBar, metrics: dict[str, float]) -> None:
        """Print the validation just computed (main rank), marking a new lowest loss."""
        if not self.dist.is_main or not metrics:
            return
        loss = metrics.get(self.task.validation_key)
        best = loss is not None and loss < min(self.lowest_validation, self.best)
        if best:
            self.lowest_validation = loss
        bar.write(validation_line(self.step, metrics, self.task.validation_key, best))

    def _train_step(self, iterator) -> dict[str, float]:
        """One optimiser step of every active objective, in order, on the same micro-batches."""
        c = self.config
        totals: dict[str, float] = {}
        micro_batches = [to_device(next(iterator), self.device) for _ in range(c.accumulate)]
        self.task.set_step(self.step)
        for name, objective in self.objectives.items():
            if not objective.active(self.step):
                continue
            module, optimizer = self.wrapped[name], self.optimizers[name]
            optimizer.zero_grad(set_to_none=True)
            for micro, batch in enumerate(micro_batches):
                last = micro == c.accumulate - 1
                sync = contextlib.nullcontext() if last or not self.dist.enabled else module.no_sync()
                with sync:
                    with self._autocast():
                        loss, metrics = module(batch)
                    if not torch.isfinite(loss):
                        raise FloatingPointError(f"non-finite {name} loss at step {self.step + 1}")
                    self.scaler.scale(loss.float() / c.accumulate).backward()
                for k, v in metrics.items():
                    totals[k] = totals.get(k, 0.0) + v / c.accumulate
            self.scaler.unscale_(optimizer)
            if c.grad_clip > 0:
                norm = torch.nn.utils.clip_grad_norm_(objective.parameters, c.grad_clip)
                totals[f"grad_norm_{name}"] = float(norm)
            self.scaler.step(optimizer)
            self.schedulers[name].step()
        self.scaler.update()
        if self.ema is not None:
            self.ema.update(self.step)
        return totals

    # ------------------------------------------------------------------ validation
    def _eval_model(self) -> torch.nn.Module:
        if self.ema is None:
            return self.task.model
        model = copy.deepcopy(self.task.model)
        self.ema.copy_to(model)
        return model

    def _validate(self) -> dict[str, float]:
        c = self.config
        metrics: dict[str, float] = {}
        if self.dist.is_main and self.val_set is not None and len(self.val_set) > 0:
            with torch.random.fork_rng(devices=[self.device] if self.device.type == "cuda" else []):
                model = self._eval_model()
                was_training = model.training
                model.eval()
                micro = c.batch_size // c.accumulate
                count = min(c.val_batches, math.ceil(len(self.val_set) / micro))
                indices = [list(range(i * micro, min((i + 1) * micro, len(self.val_set))))
                           for i in range(count)]
                if hasattr(self.val_set, "set_epoch"):
                    self.val_set.set_epoch(0)
                sums: dict[str, float] = {}
                for batch in self._loader(self.val_set, indices, 0):
                    batch = to_device(batch, self.device)
                    for k, v in self.task.validation_metrics(model, batch).items():
                        sums[k] = sums.get(k, 0.0) + v / count
                metrics.update(sums)
                if c.sample_seconds > 0:
                    # Consecutive validation items joined to the length the recipe asks for.
                    length = sample_length(c.sample_seconds, self.info.sample_rate)
                    example = to_device(listening_batch(self.val_set, length), self.device)
                    out = self.out_dir / SAMPLES / checkpoint_name(self.step)
                    metrics.update(self.task.make_samples(model, example, out, c.sample_seconds,
                                                          self.info.sample_rate))
                model.train(was_training)
        barrier(self.dist)
        return metrics

    # ------------------------------------------------------------------ checkpoints
    def _training_state(self, task_states: list[dict[str, Any]]) -> dict[str, Any]:
        """``task_states``: every rank's ``task.state_dict()`` (:func:`gather_states`)."""
        state = {
            "step": self.step,
            "best": self.best,
            "world_size": self.dist.world_size,
            "optimizers": {k: v.state_dict() for k, v in self.optimizers.items()},
            "schedulers": {k: v.state_dict() for k, v in self.schedulers.items()},
            "scaler": self.scaler.state_dict(),
            "rng_torch": torch.get_rng_state(),
            "task": task_states[0],
            "threads": torch.get_num_threads(),
        }
        if self.dist.enabled:  # each rank carries its own (e.g. its lanes' TBPTT states)
            state["task_ranks"] = task_states
        if torch.cuda.is_available() and self.device.type == "cuda":
            state["rng_cuda"] = torch.cuda.get_rng_state_all()
        return state

    def _checkpoint(self, val_metrics: dict[str, float]) -> None:
        task_states = gather_states(self.task.state_dict(), self.dist)  # every rank takes part
        if not self.dist.is_main:
            barrier(self.dist)
            return
        info = copy.copy(self.info)
        info.extra = {**info.extra, "step": self.step, "recipe": self.recipe}
        ema_state = self.ema.state_dict() if self.ema is not None else None
        folder = self.run_folder
        # save_bundle reports a full disk as a one-line StorageError and leaves the previous
        # checkpoints untouched; `latest` moves only once the new one is complete.
        path = save_bundle(folder.checkpoint(self.step), self.task.model, info,
                           ema_state=ema_state, training_state=self._training_state(task_states),
                           replace=True, auxiliary=self.auxiliary)
        with storage_errors_named(folder.checkpoints / LATEST):
            folder.set_latest(path)
        loss = val_metrics.get(self.task.validation_key)
        if loss is not None and loss < self.best:
            save_bundle(folder.checkpoints / BEST, self.task.model, info, ema_state=ema_state,
                        replace=True, auxiliary=self.auxiliary)
            self.best = loss
        for old in folder.step_checkpoints()[:-self.config.keep_last]:
            if old != path:
                shutil.rmtree(old, ignore_errors=True)
        barrier(self.dist)

    def _resume(self) -> int | None:
        """Load the latest checkpoint's weights and training state; returns the thread
        count the run trained with (None when the checkpoint does not say)."""
        path = self.run_folder.latest()
        state = load_training_state(path)
        if state.get("world_size", 1) != self.dist.world_size:
            # The data plan shards by world size; another size would change the batches.
            raise CheckpointError(f"{path}: saved with {state.get('world_size')} processes, "
                                  f"resumed with {self.dist.world_size}")
        load_weights(self.task.model, path / MODEL_FILE)
        for name, module in self.auxiliary.items():
            load_weights(module, path / auxiliary_file(name))
        if self.ema is not None:
            from safetensors.torch import load_file
            self.ema.load_shadow(load_file(str(path / EMA_FILE)))
        for name, optimizer in self.optimizers.items():
            optimizer.load_state_dict(state["optimizers"][name])
        for name, scheduler in self.schedulers.items():
            scheduler.load_state_dict(state["schedulers"][name])
        self.scaler.load_state_dict(state["scaler"])
        torch.set_rng_state(state["rng_torch"])
        if "rng_cuda" in state and self.device.type == "cuda":
            torch.cuda.set_rng_state_all(state["rng_cuda"])
        ranks = state.get("task_ranks")
        self.task.load_state_dict((ranks[self.dist.rank] if ranks else state.get("task")) or {})
        self.step = int(state["step"])
        self.best = float(state["best"])
        threads = state.get("threads")  # absent in checkpoints of older versions
        return None if threads is None else int(threads)
