"""The trainer: exact resume after SIGKILL, DDP equivalence, accumulation, AMP, recipes, what
it prints (validation lines, summary, a phase-aware ETA) and its validation samples."""

from __future__ import annotations

import csv
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import soundfile
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from safetensors.torch import load_file

from wavegen.checkpoint import load_bundle
from wavegen.cli import main
from wavegen.errors import CheckpointError, ConfigError
from wavegen.train.build import build_datasets, build_task, bundle_info
from wavegen.train.distributed import DistInfo
from wavegen.train.progress import PhaseClock, TrainingBar, validation_line
from wavegen.train.recipe import load_recipe
from wavegen.train.trainer import Trainer

ROOT = Path(__file__).resolve().parents[2]
TINY = ROOT / "recipes" / "wavenet-tones-tiny.yaml"


def trainer_for(out, *overrides, dist_info=None, progress=False):
    recipe = load_recipe(TINY, list(overrides))
    train_set, val_set = build_datasets(recipe)
    return Trainer(build_task(recipe), train_set, val_set, recipe.train, out, bundle_info(recipe),
                   recipe=recipe.to_dict(), dist_info=dist_info, progress=progress)


def final_weights(out: Path, step: int) -> dict[str, torch.Tensor]:
    return load_file(str(out / "checkpoints" / f"step-{step:07d}" / "model.safetensors"))


def wavegen_train(out: Path, *extra: str) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    return subprocess.Popen([sys.executable, "-m", "wavegen", "train", str(TINY), "--out", str(out),
                             "--no-progress", "--set", "train.steps=40",
                             "--set", "train.checkpoint_every=10", "--set", "train.val_every=20",
                             *extra], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def test_sigkill_then_resume_is_bitwise_identical(tmp_path):
    straight = wavegen_train(tmp_path / "straight")
    assert straight.wait(timeout=120) == 0, straight.stderr.read().decode()

    killed_dir = tmp_path / "killed"
    killed = wavegen_train(killed_dir)
    deadline = time.time() + 120
    # Kill as soon as the second checkpoint is complete: the run is mid-training then.
    while time.time() < deadline:
        pointer = killed_dir / "checkpoints" / "latest"
        if pointer.exists() and pointer.read_text().strip() == "step-0000020":
            break
        time.sleep(0.02)
    killed.send_signal(signal.SIGKILL)
    killed.wait(timeout=30)
    assert killed.returncode == -signal.SIGKILL
    assert not (killed_dir / "checkpoints" / "step-0000040").exists()

    resumed = wavegen_train(killed_dir, "--resume")
    assert resumed.wait(timeout=120) == 0, resumed.stderr.read().decode()
    a, b = final_weights(tmp_path / "straight", 40), final_weights(killed_dir, 40)
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key


def test_a_second_run_in_the_same_folder_needs_resume(tmp_path):
    trainer_for(tmp_path, "train.steps=2", "train.checkpoint_every=2").fit()
    with pytest.raises(CheckpointError, match="--resume"):
        trainer_for(tmp_path, "train.steps=4").fit()
    with pytest.raises(CheckpointError, match="nothing to resume"):
        trainer_for(tmp_path / "empty", "train.steps=4").fit(resume=True)


def gradients(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """The gradients left by the last optimiser step (the trainer zeroes them lazily)."""
    return {name: p.grad.clone() for name, p in model.named_parameters()}


def _ddp_worker(rank: int, world: int, init_file: str, out: str, steps: int) -> None:
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world)
    try:
        trainer = trainer_for(out, f"train.steps={steps}", f"train.checkpoint_every={steps}",
                              dist_info=DistInfo(rank, world, rank))
        trainer.fit()
        if rank == 0:
            torch.save(gradients(trainer.task.model), Path(out) / "grads.pt")
    finally:
        dist.destroy_process_group()


@pytest.mark.parametrize("steps", [1, 6])
def test_ddp_with_two_processes_equals_one_process_on_the_same_global_batch(tmp_path, steps):
    single = trainer_for(tmp_path / "single", f"train.steps={steps}",
                         f"train.checkpoint_every={steps}")
    single.fit()
    mp.spawn(_ddp_worker, args=(2, str(tmp_path / "init"), str(tmp_path / "ddp"), steps),
             nprocs=2, join=True)
    a, b = final_weights(tmp_path / "single", steps), final_weights(tmp_path / "ddp", steps)
    if steps == 1:
        # One step: the all-reduced gradients are the global batch's, to float rounding.
        ddp_grads = torch.load(tmp_path / "ddp" / "grads.pt", weights_only=True)
        for name, grad in gradients(single.task.model).items():
            assert torch.allclose(grad, ddp_grads[name], rtol=1e-4, atol=1e-7), name
    # Adam's g / (|g| + eps) turns reduction-order rounding of near-zero gradients into
    # whole updates, so the parameters are compared to within one learning-rate step (the
    # most any element moves per step); the gradients above are the tight check.
    for key in a:
        assert torch.allclose(a[key], b[key], atol=3e-3), key


def test_gradient_accumulation_matches_the_full_batch(tmp_path):
    trainer_for(tmp_path / "full", "train.steps=3", "train.checkpoint_every=3").fit()
    trainer_for(tmp_path / "acc", "train.steps=3", "train.checkpoint_every=3",
                "train.accumulate=4").fit()
    a, b = final_weights(tmp_path / "full", 3), final_weights(tmp_path / "acc", 3)
    for key in a:
        assert torch.allclose(a[key], b[key], atol=1e-5, rtol=1e-4), key


@pytest.mark.parametrize("amp", ["bf16", "fp16"])
def test_mixed_precision_trains_with_finite_loss(tmp_path, amp):
    metrics = trainer_for(tmp_path, "train.steps=4", f"train.amp={amp}", "train.val_every=4",
                          "train.checkpoint_every=4").fit()
    assert torch.isfinite(torch.tensor(metrics["nll"]))


def test_ema_weights_are_saved_and_loaded(tmp_path):
    trainer_for(tmp_path, "train.steps=5", "train.ema_decay=0.9", "train.checkpoint_every=5").fit()
    bundle = tmp_path / "checkpoints" / "step-0000005"
    raw, _ = load_bundle(bundle, use_ema=False)
    ema, info = load_bundle(bundle)
    assert info.has_ema
    differs = [not torch.equal(p, q) for p, q in zip(raw.parameters(), ema.parameters())]
    assert any(differs)


def test_tiny_recipe_trains_end_to_end_with_falling_validation_loss(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["train", str(TINY), "--out", str(out), "--no-progress",
                 "--set", "train.steps=90", "--set", "train.val_every=30"]) == 0
    with open(out / "log.csv") as handle:
        rows = [r for r in csv.DictReader(handle) if r["kind"] == "val" and r["name"] == "nll"]
    values = [float(r["value"]) for r in rows]
    assert len(values) == 3 and values[0] > values[1] > values[2], values
    model, info = load_bundle(out / "checkpoints" / "best")
    assert info.family == "wavenet" and info.extra["step"] == 90
    assert (out / "recipe.yaml").exists()


@pytest.mark.parametrize("override,word", [
    ("model.layerz=3", "layerz"),
    ("model.layers=ten", "model.layers"),
    ("train.stepz=3", "stepz"),
    ("train.amp=fp8", "train.amp"),
    ("data.kind=nowhere", "data.kind"),
    ("data.conditioning=mel", "features"),
])
def test_bad_recipes_are_one_line_errors_naming_the_key(override, word, capsys, tmp_path):
    with pytest.raises(ConfigError, match=word):
        load_recipe(TINY, [override])
    assert main(["train", str(TINY), "--out", str(tmp_path / "x"), "--set", override]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and word in err
    assert not (tmp_path / "x").exists()


def test_resume_is_exact_for_a_model_that_draws_random_numbers_in_training(tmp_path):
    """Dropout consumes the global RNG every step; resuming must restore that stream at
    the same point (no hidden draws, e.g. by the data loader, in between)."""
    overrides = ["model.dropout=0.2", "train.checkpoint_every=3", "train.val_every=100"]
    straight = trainer_for(tmp_path / "straight", "train.steps=6", *overrides)
    straight.fit()
    trainer_for(tmp_path / "split", "train.steps=3", *overrides).fit()
    resumed = trainer_for(tmp_path / "split", "train.steps=6", *overrides)
    resumed.fit(resume=True)
    a, b = final_weights(tmp_path / "straight", 6), final_weights(tmp_path / "split", 6)
    for key in a:
        assert torch.equal(a[key], b[key]), key


def test_a_run_keeps_its_thread_count_across_a_resume(tmp_path, monkeypatch):
    """A run trains on ``train.threads`` (``auto``: the cores free when it starts), saves
    the count in its checkpoints and a resume uses it again, whatever torch's setting and
    the machine's load are then: the resumed weights equal an uninterrupted run's. An
    explicit other count is obeyed and said."""
    from wavegen.checkpoint import load_training_state

    import wavegen.train.trainer as trainer_module

    overrides = ["train.checkpoint_every=3", "train.val_every=100", "model.dropout=0.2"]
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(2)
        straight = trainer_for(tmp_path / "straight", "train.steps=6", "train.threads=1",
                               *overrides)
        seen = []
        real_step = straight._train_step
        straight._train_step = lambda it: seen.append(torch.get_num_threads()) or real_step(it)
        straight.fit()
        assert set(seen) == {1} and torch.get_num_threads() == 2  # restored afterwards
        # 'auto' on a machine with one busy competitor: one of the two cores.
        monkeypatch.setattr(trainer_module, "free_threads", lambda requested=None: 1)
        trainer_for(tmp_path / "split", "train.steps=3", "train.threads=auto", *overrides).fit()
        state = load_training_state(tmp_path / "split" / "checkpoints" / "step-0000003")
        assert state["threads"] == 1
        # Resumed with torch on 2 threads and 'auto' now finding two free cores: the saved
        # count wins, and the bits are the uninterrupted run's.
        monkeypatch.setattr(trainer_module, "free_threads", lambda requested=None: 2)
        resumed = trainer_for(tmp_path / "split", "train.steps=6", "train.threads=auto",
                              *overrides)
        seen.clear()
        real_resumed = resumed._train_step
        resumed._train_step = lambda it: seen.append(torch.get_num_threads()) or real_resumed(it)
        resumed.fit(resume=True)
        assert set(seen) == {1}
        a, b = final_weights(tmp_path / "straight", 6), final_weights(tmp_path / "split", 6)
        for key in a:
            assert torch.equal(a[key], b[key]), key
        explicit = trainer_for(tmp_path / "split", "train.steps=7", "train.threads=2",
                               *overrides)
        assert explicit._run_threads(1) == 2
    finally:
        torch.set_num_threads(before)


@pytest.mark.parametrize("value", [-1, "many", "2"])
def test_bad_thread_counts_are_config_errors(tmp_path, value):
    with pytest.raises(ConfigError, match="train.threads"):
        trainer_for(tmp_path, f"train.threads={value!r}" if isinstance(value, str)
                    else f"train.threads={value}")


# --------------------------------------------------------------------------- what a run prints

def test_validation_results_print_as_they_come_with_or_without_the_bar(tmp_path, capsys):
    assert main(["train", str(TINY), "--out", str(tmp_path / "quiet"), "--no-progress",
                 "--set", "train.steps=4", "--set", "train.val_every=2",
                 "--set", "train.checkpoint_every=4"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert re.fullmatch(r"step 2: val nll [\d.]+ \(best\); bits [\d.]+", lines[0]), lines
    assert lines[1].startswith("step 4: val nll ")
    assert lines[-1].startswith("trained to step 4 in ")  # --no-progress keeps the summary
    trainer_for(tmp_path / "bar", "train.steps=4", "train.val_every=2",
                "train.checkpoint_every=4", progress=True).fit()
    captured = capsys.readouterr()
    lines = captured.out.splitlines()
    assert [line.split(":")[0] for line in lines if line.startswith("step ")] == ["step 2", "step 4"]
    assert lines[-1].startswith("trained to step 4 in ")
    assert "4/4" in captured.err  # the bar itself


def test_a_validation_line_marks_the_lowest_loss_and_lists_the_rest():
    metrics = {"nll": 3.21, "bits": 4.631, "sample_nll": 3.0}
    assert validation_line(200, metrics, "nll", True) == \
        "step 200: val nll 3.21 (best); bits 4.631, sample_nll 3"
    assert validation_line(400, {"nll": 3.5}, "nll", False) == "step 400: val nll 3.5"


def test_the_eta_before_the_discriminator_starts_counts_its_slower_steps():
    recipe = load_recipe(ROOT / "recipes" / "hifigan-tiny.yaml",
                         ["data.kind=tones", "data.root=null"])
    task = build_task(recipe)
    start, steps = recipe.adversarial_config.discriminator_start, recipe.train.steps
    assert 0 < start < steps
    clock = PhaseClock(task.phases(), steps)
    for step in range(100):
        clock.record(step, 0.05)
    naive = (steps - 100) * 0.05  # what tqdm shows: the current rate x the steps left
    expected = (start - 100) * 0.05 + (steps - start) * 0.05 * task.adversarial_step_cost
    assert clock.remaining(100) == pytest.approx(expected)
    assert clock.remaining(100) > 1.4 * naive
    # Once the discriminator runs, the rate measured with it counts (not a blend).
    for step in range(start, start + 10):
        clock.record(step, 0.5)
    assert clock.remaining(start + 10) == pytest.approx((steps - start - 10) * 0.5)


def test_the_bar_shows_the_trainers_phase_aware_eta(tmp_path, monkeypatch):
    shown = []

    class RecordingBar(TrainingBar):
        def advance(self, remaining_s):
            shown.append(remaining_s)
            super().advance(remaining_s)

    monkeypatch.setattr("wavegen.train.trainer.TrainingBar", RecordingBar)
    trainer_for(tmp_path, "train.steps=3", "train.checkpoint_every=3", "train.val_every=3").fit()
    assert len(shown) == 3 and shown[-1] == 0.0 and all(s is not None and s >= 0 for s in shown)
    bar = TrainingBar(100, 0, True)
    bar.advance(123.0)
    assert "<02:03" in str(bar.bar)
    bar.close()


# --------------------------------------------------------------------------- validation samples

def test_wavenet_validation_samples_have_the_recipe_length_and_a_png(tmp_path):
    """0.15 s at 8 kHz is 1200 samples, more than one 1024-sample validation item: items
    are joined. The unconditional WaveNet has no features; its PNG still comes."""
    out = tmp_path / "run"
    trainer_for(out, "train.steps=1", "train.val_every=1", "train.checkpoint_every=1",
                "train.sample_seconds=0.15").fit()
    samples = out / "samples" / "step-0000001"
    assert soundfile.info(str(samples / "sample.wav")).frames == 1200
    assert soundfile.info(str(samples / "reference.wav")).frames == 1200
    assert (samples / "sample.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_a_validation_sample_longer_than_the_validation_set_is_refused_at_start(tmp_path, capsys):
    out = tmp_path / "run"  # 8 validation items of 1024 samples at 8 kHz: ~1 s in all
    assert main(["train", str(TINY), "--out", str(out), "--no-progress",
                 "--set", "train.sample_seconds=2", "--set", "train.steps=1"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "train.sample_seconds" in err, err
    assert not (out / "checkpoints").exists() and not (out / "log.csv").exists()


def test_ema_warms_up_so_a_short_run_does_not_keep_the_initial_weights():
    from wavegen.train.ema import EMA

    model = torch.nn.Linear(3, 1, bias=False)
    with torch.no_grad():
        model.weight.zero_()
    ema = EMA(model, 0.999)
    assert ema.decay_at(0) == pytest.approx(0.1) and ema.decay_at(10 ** 6) == 0.999
    with torch.no_grad():
        model.weight.fill_(1.0)
    for update in range(100):
        ema.update(update)
    # A fixed 0.999 would have moved 1 - 0.999^100 = 10% of the way; the warm-up gets close.
    assert float(ema.state_dict()["weight"].min()) > 0.99
