"""The install steps: `make demo` installs the runtime only, `make test` adds the test extras.

triton is about 1 GB; a CPU-only machine that only runs the demo must never download it.
The Makefile is checked with `make -n` (print the commands, run none) in a copy of the
Makefile and pyproject.toml, so nothing is installed by these tests.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def requirement_name(requirement: str) -> str:
    return re.split(r"[\s\[<>=!~;@]", requirement.strip(), maxsplit=1)[0].lower().replace("_", "-")


@pytest.fixture(scope="module")
def project() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]


def test_runtime_dependencies_do_not_include_triton(project):
    runtime = {requirement_name(r) for r in project["dependencies"]}
    assert "torch" in runtime and "triton" not in runtime
    extras = project["optional-dependencies"]
    # The tests run the Triton kernels in the interpreter, so the test extra keeps it.
    assert "triton" in {requirement_name(r) for r in extras["test"]}
    assert "triton" in {requirement_name(r) for r in extras["triton"]}


needs_make = pytest.mark.skipif(shutil.which("make") is None, reason="make is not installed")


@pytest.fixture
def checkout(tmp_path) -> Path:
    """A copy of the files the install steps read, with no environment installed yet."""
    for name in ("Makefile", "pyproject.toml"):
        shutil.copy2(ROOT / name, tmp_path / name)
    return tmp_path


def dry_run(checkout: Path, target: str) -> list[str]:
    """The commands `make TARGET` would run in ``checkout`` (its own fresh ./.venv)."""
    env = {k: v for k, v in os.environ.items()
           if k not in ("VIRTUAL_ENV", "MAKEFLAGS", "MFLAGS", "MAKELEVEL")}
    done = subprocess.run(["make", "-n", "--no-print-directory", target], cwd=checkout, env=env,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    # One entry per command: a line ending in a backslash continues on the next.
    return [" ".join(c.split()) for c in done.stdout.replace("\\\n", " ").splitlines()]


def pip_installs(commands: list[str]) -> list[str]:
    """What each `pip install` of ``commands`` installs (its arguments)."""
    return [c.split("pip install", 1)[1].strip() for c in commands if "pip install" in c]


@needs_make
def test_make_demo_installs_the_runtime_only(checkout):
    commands = dry_run(checkout, "demo")
    installs = pip_installs(commands)
    assert installs == ["torch==2.13.0", "-e ."], installs
    assert commands[-1].endswith("wavegen demo --out demo_out")
    # torch is installed only when none imports: the CPU build behind an import check.
    (torch_step,) = [c for c in commands if "torch==2.13.0" in c]
    assert re.search(r'-c "import torch" .*\|\| \S+ -m pip install torch==2.13.0$', torch_step)


@needs_make
def test_make_test_installs_the_test_extras(checkout):
    commands = dry_run(checkout, "test")
    installs = pip_installs(commands)
    assert installs == ["torch==2.13.0", "-e .", '-e ".[test]"'], installs
    assert commands[-1].endswith("-m pytest -q")


@needs_make
def test_install_stamps_are_separate_and_track_pyproject(checkout):
    venv = checkout / ".venv"
    venv.mkdir()
    runtime_stamp, test_stamp = venv / ".wavegen-installed", venv / ".wavegen-installed-test"
    pyproject_time = (checkout / "pyproject.toml").stat().st_mtime

    # Installed for the demo only: `make test` still has to add the test extras.
    runtime_stamp.touch()
    os.utime(runtime_stamp, (pyproject_time + 10, pyproject_time + 10))
    assert pip_installs(dry_run(checkout, "demo")) == []
    assert pip_installs(dry_run(checkout, "test")) == ['-e ".[test]"']

    # Both installed and newer than pyproject.toml: nothing to install.
    test_stamp.touch()
    os.utime(test_stamp, (pyproject_time + 20, pyproject_time + 20))
    assert pip_installs(dry_run(checkout, "demo")) == []
    assert pip_installs(dry_run(checkout, "test")) == []

    # pyproject.toml changed: each step runs again, the demo's still without the extras.
    os.utime(checkout / "pyproject.toml", (pyproject_time + 30, pyproject_time + 30))
    assert pip_installs(dry_run(checkout, "demo")) == ["torch==2.13.0", "-e ."]
    assert pip_installs(dry_run(checkout, "test")) == ["torch==2.13.0", "-e .", '-e ".[test]"']
