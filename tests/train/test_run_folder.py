"""The run folder: one run at a time, a full disk, what a killed run leaves, what `latest` may say."""

from __future__ import annotations

import errno
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from safetensors import SafetensorError

import wavegen.checkpoint
from wavegen.checkpoint import load_bundle, save_bundle
from wavegen.cli import main
from wavegen.errors import CheckpointError, StorageError
from wavegen.train.build import build_datasets, build_task, bundle_info
from wavegen.train.distributed import DistInfo
from wavegen.train.recipe import load_recipe
from wavegen.train.run_folder import RunFolder
from wavegen.train.trainer import Trainer
from wavegen.utils.folder_lock import FolderInUseError, FolderLock

ROOT = Path(__file__).resolve().parents[2]
TINY = ROOT / "recipes" / "wavenet-tones-tiny.yaml"
ENV = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}


def train(out: Path, steps: int, *extra: str) -> int:
    """`wavegen train` (in this process) of the tiny recipe, checkpointing every step."""
    return main(["train", str(TINY), "--out", str(out), "--no-progress",
                 "--set", f"train.steps={steps}", "--set", "train.checkpoint_every=1",
                 "--set", f"train.val_every={steps}", *extra])


def trainer_for(out, *overrides, dist_info=None) -> Trainer:
    recipe = load_recipe(TINY, list(overrides))
    train_set, val_set = build_datasets(recipe)
    return Trainer(build_task(recipe), train_set, val_set, recipe.train, out, bundle_info(recipe),
                   recipe=recipe.to_dict(), dist_info=dist_info, progress=False)


def error_line(capsys) -> str:
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("wavegen: error:"), err
    return err


def hidden_leftovers(folder: Path) -> list[Path]:
    return [p for p in folder.rglob(".*") if p.name.endswith((".tmp", ".old"))]


def latest(out: Path) -> str:
    return (out / "checkpoints" / "latest").read_text().strip()


# --------------------------------------------------------------------------- a full disk

FULL = "Error while serializing: I/O error: No space left on device (os error 28)"


def full_model_file(monkeypatch) -> str:
    """safetensors failing on a full disk at step 2 (its exact text, measured on a full
    tmpfs), after writing part of the file. Returns the file's name."""
    real = wavegen.checkpoint.save_file

    def save_file(tensors, filename, metadata=None):
        if ".step-0000002." in str(filename):
            Path(filename).write_bytes(b"\0" * 100)
            raise SafetensorError(FULL)
        return real(tensors, filename, metadata=metadata)

    monkeypatch.setattr(wavegen.checkpoint, "save_file", save_file)
    return "model.safetensors"


def full_state_file(monkeypatch) -> str:
    """torch.save failing on a full disk at step 2, part-way through the file, as it does:
    ENOSPC from a file object, a bare RuntimeError when it opened the path itself."""
    real = torch.save

    def save(obj, f, *args, **kwargs):
        if ".step-0000002." in str(getattr(f, "name", f)):
            if not hasattr(f, "write"):
                raise RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos "
                                   "576 vs 534")
            f.write(b"PK\3\4 partial")
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real(obj, f, *args, **kwargs)

    monkeypatch.setattr(torch, "save", save)
    return "training_state.pt"


@pytest.mark.parametrize("fill_disk", [full_model_file, full_state_file])
def test_a_full_disk_mid_checkpoint_is_one_line_and_the_run_resumes_from_the_last_one(
        tmp_path, monkeypatch, capsys, fill_disk):
    out = tmp_path / "run"
    file = fill_disk(monkeypatch)
    assert train(out, 3) == StorageError.exit_status == 1
    err = error_line(capsys)
    assert f"checkpoints/step-0000002/{file}: no space left on device" in err, err
    # The previous checkpoint is intact and named by `latest`; nothing half-written is left.
    assert latest(out) == "step-0000001"
    assert not (out / "checkpoints" / "step-0000002").exists()
    assert hidden_leftovers(out) == []
    assert load_bundle(out / "checkpoints" / "step-0000001")[1].extra["step"] == 1
    monkeypatch.undo()
    assert train(out, 3, "--resume") == 0
    assert latest(out) == "step-0000003"
    assert load_bundle(out / "checkpoints" / "step-0000003")[1].extra["step"] == 3


def test_a_full_disk_while_pointing_latest_keeps_the_old_pointer(tmp_path, monkeypatch, capsys):
    out = tmp_path / "run"
    real = os.replace

    def replace(src, dst, *args, **kwargs):
        if Path(dst).name == "latest" and "step-0000002" in Path(src).read_text():
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(src))
        return real(src, dst, *args, **kwargs)

    monkeypatch.setattr(os, "replace", replace)
    assert train(out, 2) == 1
    assert "checkpoints/latest: no space left on device" in error_line(capsys)
    assert latest(out) == "step-0000001"
    assert hidden_leftovers(out) == []
    monkeypatch.undo()
    assert train(out, 2, "--resume") == 0 and latest(out) == "step-0000002"


def test_save_bundle_reports_a_full_disk_naming_the_file_and_keeps_the_old_bundle(
        tmp_path, monkeypatch):
    trainer = trainer_for(tmp_path / "unused")
    bundle = tmp_path / "best"
    save_bundle(bundle, trainer.task.model, trainer.info)
    before = (bundle / "model.safetensors").read_bytes()

    def full(*args, **kwargs):
        raise SafetensorError(FULL)

    monkeypatch.setattr(wavegen.checkpoint, "save_file", full)
    with pytest.raises(StorageError, match="best/model.safetensors: no space left on device"):
        save_bundle(bundle, trainer.task.model, trainer.info, replace=True)
    assert (bundle / "model.safetensors").read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["best"]


# --------------------------------------------------------------------------- one run at a time

HOLD = ("import sys, time\n"
        "from wavegen.utils.folder_lock import FolderLock\n"
        "FolderLock(sys.argv[1]).acquire()\n"
        "print('held', flush=True)\n"
        "time.sleep(600)\n")


def test_a_folder_held_by_another_process_is_refused_at_once_and_freed_by_its_death(
        tmp_path, capsys):
    out = tmp_path / "run"
    holder = subprocess.Popen([sys.executable, "-c", HOLD, str(out)], env=ENV,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held", holder.stderr.read()
        # A second `wavegen train`, as a process of its own.
        second = subprocess.run([sys.executable, "-m", "wavegen", "train", str(TINY), "--out",
                                 str(out), "--no-progress", "--set", "train.steps=2"],
                                env=ENV, capture_output=True, text=True, timeout=300)
        assert second.returncode == 2, second.stderr
        assert second.stderr.count("\n") == 1, second.stderr
        assert str(out) in second.stderr and f"PID {holder.pid}" in second.stderr
        # ... and in this process, through the command and through the API.
        assert train(out, 2) == 2
        err = error_line(capsys)
        assert str(out) in err and f"PID {holder.pid}" in err
        with pytest.raises(FolderInUseError, match=f"PID {holder.pid}"):
            trainer_for(out, "train.steps=2").fit()
        assert sorted(p.name for p in out.iterdir()) == [".lock"]  # nothing was written
    finally:
        holder.kill()  # SIGKILL: no chance to unlock; the OS drops the lock
        holder.wait(timeout=30)
    assert train(out, 2) == 0
    assert latest(out) == "step-0000002"


def test_a_running_train_holds_its_folder_whatever_the_checkpoint_interval(tmp_path, capsys):
    out = tmp_path / "run"
    first = subprocess.Popen([sys.executable, "-m", "wavegen", "train", str(TINY), "--out",
                              str(out), "--no-progress", "--set", "train.steps=100000",
                              "--set", "train.checkpoint_every=100000",
                              "--set", "train.val_every=100000"],
                             env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.time() + 180
        lock = out / ".lock"
        while time.time() < deadline and first.poll() is None:
            if lock.exists() and lock.read_text().strip() == str(first.pid):
                break
            time.sleep(0.1)
        assert first.poll() is None, first.stderr.read().decode()
        assert lock.exists() and lock.read_text().strip() == str(first.pid)
        assert train(out, 2) == 2
        err = error_line(capsys)
        assert f"{out} is in use by another process (PID {first.pid})" in err
    finally:
        first.kill()
        first.wait(timeout=30)


def _ddp_worker(rank: int, world: int, init_file: str, out: str, results: str) -> None:
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world)
    try:
        trainer_for(out, "train.steps=2", dist_info=DistInfo(rank, world, rank)).fit()
        outcome = "trained"
    except Exception as exc:  # recorded for the test to check
        outcome = type(exc).__name__
    finally:
        # Both ranks leave the group together: a rank that tore its connections down while
        # the other was still finishing the stop broadcast made gloo abort (SIGABRT), now
        # and then.
        dist.barrier()
        dist.destroy_process_group()
    Path(results, f"rank{rank}").write_text(outcome)


def test_under_ddp_a_held_folder_stops_every_rank(tmp_path):
    """Only the main rank takes the lock (the unlocked DDP tests in test_trainer.py would
    fail if every rank did); when it cannot, all ranks stop instead of waiting for it."""
    out = tmp_path / "run"
    results = tmp_path / "results"
    results.mkdir()
    with FolderLock(out):
        context = mp.start_processes(_ddp_worker, args=(2, str(tmp_path / "init"), str(out),
                                                        str(results)),
                                     nprocs=2, join=False, start_method="spawn")
        deadline = time.time() + 240
        while not context.join(timeout=5):
            if time.time() > deadline:
                for process in context.processes:
                    process.kill()
                pytest.fail("a rank hung on a locked run folder")
    assert (results / "rank0").read_text() == "FolderInUseError"
    assert (results / "rank1").read_text() == "CheckpointError"


# --------------------------------------------------------------------------- after a kill

def test_leftovers_of_a_killed_run_are_tidied_by_the_next_one(tmp_path, capsys):
    out = tmp_path / "run"
    assert train(out, 2) == 0
    checkpoints = out / "checkpoints"
    partial = checkpoints / ".step-0000003.k1ll3d.tmp"  # save_bundle's mkdtemp, killed
    partial.mkdir()
    (partial / "model.safetensors").write_bytes(b"\0" * 10)
    half_deleted = checkpoints / ".best.old"  # `best` was replaced; its clean-up was killed
    half_deleted.mkdir()
    (half_deleted / "config.json").write_text("{")
    (checkpoints / ".latest.a1b2c3d4.tmp").write_text("step-00")
    (out / ".recipe.yaml.x9y8z7w6.tmp").write_text("name: half")
    capsys.readouterr()
    assert train(out, 3, "--resume") == 0
    assert "tidied 4 leftover(s) of an interrupted run" in capsys.readouterr().out
    assert hidden_leftovers(out) == []
    assert latest(out) == "step-0000003"
    load_bundle(checkpoints / "best")


def test_a_bundle_parked_between_the_two_renames_of_a_replacement_is_restored(tmp_path):
    out = tmp_path / "run"
    assert train(out, 2) == 0
    checkpoints = out / "checkpoints"
    best = (checkpoints / "best" / "model.safetensors").read_bytes()
    # Killed after `best` -> `.best.old` and before the new bundle was renamed to `best`.
    os.replace(checkpoints / "best", checkpoints / ".best.old")
    shutil.copytree(checkpoints / "step-0000001", checkpoints / ".best.q1w2e3r4.tmp")
    folder = RunFolder(out)
    folder.claim()
    try:
        tidied = folder.tidy()
    finally:
        folder.release()
    assert {p.name for p in tidied} == {".best.old", ".best.q1w2e3r4.tmp"}
    assert (checkpoints / "best" / "model.safetensors").read_bytes() == best
    assert hidden_leftovers(out) == []


@pytest.mark.parametrize("pointer", ["../../elsewhere", "ABSOLUTE", "step-0000099", "..",
                                     "step-0000001/../../../elsewhere"])
def test_latest_must_name_a_complete_checkpoint_of_the_run(tmp_path, capsys, pointer):
    out = tmp_path / "run"
    assert train(out, 1) == 0
    # A complete checkpoint outside the run: resuming from it must not happen.
    elsewhere = tmp_path / "elsewhere"
    shutil.copytree(out / "checkpoints" / "step-0000001", elsewhere)
    if pointer == "ABSOLUTE":
        pointer = str(elsewhere)
    (out / "checkpoints" / "latest").write_text(pointer + "\n")
    capsys.readouterr()
    assert train(out, 2, "--resume") == 2
    err = error_line(capsys)
    assert "is not a complete checkpoint in" in err
    assert "the newest complete checkpoint is step-0000001" in err
    assert not (out / "checkpoints" / "step-0000002").exists()
    with pytest.raises(CheckpointError, match="not a complete checkpoint"):
        RunFolder(out).latest()
