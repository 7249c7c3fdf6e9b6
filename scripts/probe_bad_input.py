#!/usr/bin/env python
"""Run every bad-input case of tests/test_bad_input.py through a real ``wavegen`` process.

Each case runs as ``python -m wavegen ...`` in a fresh process, as a user would meet it, and
is classified:

* clean: the expected exit status, exactly one ``wavegen: error:`` line on stderr, no
  traceback, and nothing written to its output folder;
* traceback: a Python traceback reached the user;
* other: anything else (a wrong exit status, several lines, a file left behind, a hang
  past ``--timeout``).

Prints one row per verb (tries, clean, tracebacks, other) and lists every case that was not
clean. Exit status 1 when any case was not clean.

Usage: python scripts/probe_bad_input.py [--timeout 120] [--verbs vocode sample ...]
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def load_tables():
    """The case tables and fixture builders of tests/test_bad_input.py."""
    if str(ROOT / "tests") not in sys.path:  # the tables' helpers (tests/families.py)
        sys.path.insert(0, str(ROOT / "tests"))
    spec = importlib.util.spec_from_file_location("bad_input_cases", ROOT / "tests" / "test_bad_input.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while it executes
    spec.loader.exec_module(module)
    return module


def run_case(module, case, bundles, bad_files, work: Path, timeout: float) -> tuple[str, str]:
    """(outcome, detail) of one case in a fresh process."""
    out = Path(tempfile.mkdtemp(dir=work, prefix="out-"))
    argv = module.expand(case.argv, bundles, bad_files, out)
    env = dict(os.environ, PYTHONWARNINGS="default")
    try:
        result = subprocess.run([sys.executable, "-m", "wavegen", *argv], capture_output=True,
                                text=True, timeout=timeout, env=env, cwd=work)
    except subprocess.TimeoutExpired:
        return "other", f"no answer within {timeout:g} s"
    err = result.stderr
    if "Traceback (most recent call last)" in err:
        return "traceback", err.strip().splitlines()[-1]
    lines = [line for line in err.splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith("wavegen: error:")]
    left = module.files_under(out)
    if result.returncode != case.status:
        return "other", f"exit {result.returncode} (expected {case.status}): {err.strip()[:200]}"
    if len(errors) != 1 or len(lines) != len(errors) + sum(l.startswith("wavegen: warning:") for l in lines):
        return "other", f"stderr: {err.strip()[:200]!r}"
    if case.message not in errors[0]:
        return "other", f"message {errors[0]!r} lacks {case.message!r}"
    if left:
        return "other", f"left {left}"
    return "clean", errors[0]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--timeout", type=float, default=120.0)
    parser.add_argument("--verbs", nargs="*", default=None)
    args = parser.parse_args()
    module = load_tables()
    verbs = args.verbs or list(module.TABLES)
    rows, failures = [], []
    start = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        (work / "bundles").mkdir()
        (work / "bad").mkdir()
        bundles = module.make_bundles(work / "bundles")
        bad_files = module.make_bad_files(work / "bad")
        for verb in verbs:
            counts = {"clean": 0, "traceback": 0, "other": 0}
            for case in module.TABLES[verb]:
                outcome, detail = run_case(module, case, bundles, bad_files, work, args.timeout)
                counts[outcome] += 1
                if outcome != "clean":
                    failures.append(f"{verb} / {case.id}: {outcome}: {detail}")
            rows.append((verb, len(module.TABLES[verb]), counts["clean"], counts["traceback"],
                         counts["other"]))
    print(f"# bad input through `python -m wavegen`, {platform.processor() or platform.machine()}, "
          f"{time.strftime('%Y-%m-%d')}, {time.perf_counter() - start:.0f} s")
    print(f"{'verb':<10} {'tries':>5} {'clean':>5} {'tracebacks':>10} {'other':>5}")
    for verb, tries, clean, tracebacks, other in rows:
        print(f"{verb:<10} {tries:>5} {clean:>5} {tracebacks:>10} {other:>5}")
    total = [sum(row[i] for row in rows) for i in range(1, 5)]
    print(f"{'total':<10} {total[0]:>5} {total[1]:>5} {total[2]:>10} {total[3]:>5}")
    for line in failures:
        print("not clean:", line)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
