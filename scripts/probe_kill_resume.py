#!/usr/bin/env python
"""SIGKILL a training run at random moments, resume it each time, compare with a straight run.

A straight run trains ``--steps`` steps of a tiny recipe. Then runs in fresh folders are
killed with SIGKILL after random delays (uniform over the straight run's duration, so kills
land in start-up, training steps, validation and checkpoint writes alike) and resumed with
``--resume`` until each finishes; new runs start until ``--kills`` kills have landed. Every
run's final weights must be bitwise equal to the straight run's, and no temporary folder
may be left in its checkpoints.

Prints one line per kill and a summary; exit status 1 on any difference.

Usage: python scripts/probe_kill_resume.py [--kills 12] [--steps 60] [--seed 0]
       [--recipe recipes/wavenet-tones-tiny.yaml]
"""

from __future__ import annotations

import argparse
import os
import platform
import random
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def command(recipe: Path, out: Path, steps: int, resume: bool) -> list[str]:
    every = max(1, steps // 6)
    return [sys.executable, "-m", "wavegen", "train", str(recipe), "--out", str(out),
            "--no-progress", "--set", f"train.steps={steps}",
            "--set", f"train.checkpoint_every={every}", "--set", f"train.val_every={2 * every}",
            *(["--resume"] if resume else [])]


def final_weights(out: Path):
    from safetensors.torch import load_file

    name = (out / "checkpoints" / "latest").read_text().strip()
    return load_file(str(out / "checkpoints" / name / "model.safetensors")), name


def killed_run(recipe: Path, out: Path, steps: int, duration: float, rng: random.Random,
               env: dict, budget: int) -> tuple[int, bool]:
    """Train into ``out``, SIGKILLing it after random delays (at most ``budget`` times) and
    resuming, until a run completes. Returns (kills, completed)."""
    kills, resume = 0, False
    while True:
        process = subprocess.Popen(command(recipe, out, steps, resume), env=env,
                                   stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        delay = rng.uniform(0.2, duration)
        try:
            process.wait(timeout=delay if kills < budget else None)
        except subprocess.TimeoutExpired:
            process.send_signal(signal.SIGKILL)
            process.wait()
            kills += 1
            latest = out / "checkpoints" / "latest"
            at = latest.read_text().strip() if latest.exists() else "no checkpoint yet"
            print(f"  kill after {delay:5.2f} s (latest: {at})", flush=True)
            resume = latest.exists()
            continue
        if process.returncode != 0:
            print(process.stderr.read().decode(), file=sys.stderr)
            return kills, False
        return kills, True


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kills", type=int, default=12, help="SIGKILLs in all (default 12)")
    parser.add_argument("--steps", type=int, default=60)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--recipe", type=Path, default=ROOT / "recipes" / "wavenet-tones-tiny.yaml")
    args = parser.parse_args()
    rng = random.Random(args.seed)
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    with tempfile.TemporaryDirectory() as tmp:
        straight = Path(tmp) / "straight"
        start = time.perf_counter()
        subprocess.run(command(args.recipe, straight, args.steps, False), env=env, check=True,
                       capture_output=True)
        duration = time.perf_counter() - start
        reference, reference_name = final_weights(straight)
        kills = runs = differing = 0
        leftovers: list[str] = []
        while kills < args.kills:
            runs += 1
            out = Path(tmp) / f"killed-{runs}"
            print(f"run {runs}:", flush=True)
            got, completed = killed_run(args.recipe, out, args.steps, duration, rng, env,
                                        args.kills - kills)
            kills += got
            if not completed:
                return 1
            weights, name = final_weights(out)
            equal = name == reference_name and weights.keys() == reference.keys() and all(
                (weights[k] == reference[k]).all() for k in weights)
            differing += not equal
            leftovers += [p.name for p in (out / "checkpoints").iterdir() if p.name.startswith(".")]
            print(f"  done after {got} kills: final weights "
                  f"{'bitwise equal' if equal else 'DIFFER'}", flush=True)
    print(f"# {platform.machine()}, {time.strftime('%Y-%m-%d')}: {kills} SIGKILLs over {runs} "
          f"resumed runs of {args.recipe.name} ({args.steps} steps, {duration:.1f} s straight); "
          f"runs whose final weights differ from the straight run: {differing}; leftovers in "
          f"checkpoints/: {leftovers or 'none'}")
    return 0 if not differing and not leftovers else 1


if __name__ == "__main__":
    sys.exit(main())
