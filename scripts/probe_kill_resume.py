#!/usr/bin/env python
"""SIGKILL a training run at random moments, resume it each time, compare with a straight run.

A straight run trains ``--steps`` steps of a tiny recipe. A second run in another folder is
killed with SIGKILL after a random delay (uniform over the straight run's duration, so kills
land in start-up, training steps, validation and checkpoint writes alike), then resumed with
``--resume``; repeated until it finishes. The final weights of both runs must be bitwise
equal, and no temporary folder may be left in the killed run's checkpoints.

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


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kills", type=int, default=12)
    parser.add_argument("--steps", type=int, default=60)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--recipe", type=Path, default=ROOT / "recipes" / "wavenet-tones-tiny.yaml")
    args = parser.parse_args()
    rng = random.Random(args.seed)
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    with tempfile.TemporaryDirectory() as tmp:
        straight, killed = Path(tmp) / "straight", Path(tmp) / "killed"
        start = time.perf_counter()
        subprocess.run(command(args.recipe, straight, args.steps, False), env=env, check=True,
                       capture_output=True)
        duration = time.perf_counter() - start
        kills = 0
        resume = False
        while True:
            process = subprocess.Popen(command(args.recipe, killed, args.steps, resume), env=env,
                                       stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
            if kills < args.kills:
                delay = rng.uniform(0.2, duration)
                try:
                    process.wait(timeout=delay)
                except subprocess.TimeoutExpired:
                    process.send_signal(signal.SIGKILL)
                    process.wait()
                    kills += 1
                    latest = killed / "checkpoints" / "latest"
                    at = latest.read_text().strip() if latest.exists() else "no checkpoint yet"
                    print(f"kill {kills:2d} after {delay:5.2f} s (latest: {at})", flush=True)
                    resume = latest.exists()
                    continue
            else:
                process.wait()
            if process.returncode != 0:
                print(process.stderr.read().decode(), file=sys.stderr)
                return 1
            break
        a, name_a = final_weights(straight)
        b, name_b = final_weights(killed)
        equal = name_a == name_b and a.keys() == b.keys() and all(
            (a[k] == b[k]).all() for k in a)
        leftovers = [p.name for p in (killed / "checkpoints").iterdir() if p.name.startswith(".")]
    print(f"# {platform.machine()}, {time.strftime('%Y-%m-%d')}: {kills} SIGKILLs over a "
          f"{args.steps}-step run of {args.recipe.name} ({duration:.1f} s straight); final "
          f"weights {'bitwise equal' if equal else 'DIFFER'}; leftovers in checkpoints/: "
          f"{leftovers or 'none'}")
    return 0 if equal and not leftovers else 1


if __name__ == "__main__":
    sys.exit(main())
