"""The folder of a training run: its layout, who may write it, and where a run resumes.

Layout::

    OUT/
      .lock                 locked (fcntl.flock) by the `wavegen train` using the folder
      recipe.yaml           the resolved recipe
      log.csv, tensorboard/ scalar logs
      samples/step-N/       validation samples (audio + PNG)
      checkpoints/
        step-NNNNNNN/       training checkpoints (model bundles with training_state.pt)
        latest              the name of the newest complete step-NNNNNNN
        best                the bundle with the best validation loss

One run at a time: :meth:`RunFolder.claim` locks the folder for the life of the run
(see :mod:`wavegen.utils.folder_lock`; a killed run leaves no stale lock), so a second
`wavegen train` on the same folder is refused at once, naming the PID that holds it. Having
the lock, :meth:`RunFolder.tidy` deals with what a killed run may have left: hidden temporaries of atomic writes and
of checkpoints (``.NAME.RANDOM.tmp``) and a checkpoint parked mid-replacement
(``.NAME.old``, see :func:`wavegen.checkpoint.recover_interrupted_saves`).

``latest`` is trusted only as the plain name of a complete checkpoint inside
``checkpoints/``: a path (``../../elsewhere``, ``/abs/dir``), a missing or incomplete
checkpoint is a one-line :class:`~wavegen.errors.CheckpointError` naming the newest complete
checkpoint instead of a silent fallback (a run never resumes from a step it was not told).
"""

from __future__ import annotations

import os
from pathlib import Path

from wavegen.checkpoint import CONFIG_FILE, STATE_FILE, read_pointer, recover_interrupted_saves
from wavegen.errors import CheckpointError
from wavegen.utils.atomic import atomic_write_text, remove_leftover_temporaries
from wavegen.utils.folder_lock import FolderLock

CHECKPOINTS = "checkpoints"
LATEST = "latest"
BEST = "best"
RECIPE = "recipe.yaml"
SAMPLES = "samples"


def checkpoint_name(step: int) -> str:
    """``step-NNNNNNN``: the checkpoint folder of optimiser step ``step``."""
    return f"step-{step:07d}"


class RunFolder:
    """The run folder ``path`` (see the module docstring)."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        self.checkpoints = self.path / CHECKPOINTS
        self.lock = FolderLock(self.path, hint="wait for that run to end or choose another --out")

    # ------------------------------------------------------------------ ownership
    def claim(self) -> None:
        """Lock the folder for this process, or raise
        :class:`~wavegen.utils.folder_lock.FolderInUseError` at once if another run holds it.
        Claiming a folder this object already holds does nothing."""
        self.lock.acquire()

    def release(self) -> None:
        self.lock.release()

    def tidy(self) -> list[Path]:
        """Remove or restore what a killed run left (see the module docstring); returns the
        paths touched. Only while the folder is claimed: a live run's files look the same."""
        if not self.lock.held:
            raise RuntimeError(f"{self.path}: tidy() needs the folder claimed")
        return self._tidy()

    def _tidy(self) -> list[Path]:
        tidied = remove_leftover_temporaries(self.path)
        tidied += recover_interrupted_saves(self.checkpoints)
        samples = self.path / SAMPLES
        tidied += remove_leftover_temporaries(samples)
        if samples.is_dir():
            for step in samples.iterdir():
                if step.is_dir():
                    tidied += remove_leftover_temporaries(step)
        return tidied

    # ------------------------------------------------------------------ checkpoints
    def holds_run(self) -> bool:
        """Whether a run has checkpointed here (``checkpoints/latest`` exists)."""
        return (self.checkpoints / LATEST).exists()

    def checkpoint(self, step: int) -> Path:
        return self.checkpoints / checkpoint_name(step)

    def step_checkpoints(self) -> list[Path]:
        """The ``step-*`` checkpoint folders, oldest first."""
        if not self.checkpoints.is_dir():
            return []
        return sorted(p for p in self.checkpoints.glob("step-*") if p.is_dir())

    def is_complete(self, path: Path) -> bool:
        """Whether ``path`` is a complete training checkpoint inside ``checkpoints/``."""
        try:
            inside = path.resolve().parent == self.checkpoints.resolve()
        except OSError:
            return False
        return (inside and path.is_dir() and (path / CONFIG_FILE).is_file()
                and (path / STATE_FILE).is_file())

    def newest_complete(self) -> Path | None:
        complete = [p for p in self.step_checkpoints() if self.is_complete(p)]
        return complete[-1] if complete else None

    def latest(self) -> Path:
        """The checkpoint ``latest`` names; CheckpointError when there is none or the name is
        not a complete checkpoint in ``checkpoints/`` (see the module docstring)."""
        pointer = self.checkpoints / LATEST
        if not pointer.is_file():
            raise CheckpointError(f"{self.path}: nothing to resume (no {CHECKPOINTS}/{LATEST})")
        try:
            name = read_pointer(pointer)
        except CheckpointError:  # not a plain name: report what it holds
            try:
                name = pointer.read_bytes()[:80].decode("utf-8", "replace").strip()
            except OSError as exc:
                raise CheckpointError(f"{pointer}: unreadable ({exc})") from None
        else:
            if self.is_complete(self.checkpoints / name):
                return self.checkpoints / name
        newest = self.newest_complete()
        fix = (f"; the newest complete checkpoint is {newest.name}: write that name into it to "
               f"resume from there" if newest is not None else "; no complete checkpoint is there")
        raise CheckpointError(f"{pointer} names {name[:80]!r}, which is not a complete checkpoint "
                              f"in {self.checkpoints}{fix}")

    def set_latest(self, path: Path) -> None:
        """Point ``latest`` at the checkpoint ``path`` (atomically)."""
        atomic_write_text(self.checkpoints / LATEST, path.name + "\n")
