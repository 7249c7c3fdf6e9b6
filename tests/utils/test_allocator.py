"""wavegen.utils.allocator: large tensors come from the reusable heap once tuned."""

from __future__ import annotations

import subprocess
import sys

import pytest

PROBE = """
import os, sys
import torch
if sys.argv[1] == "tuned":
    from wavegen.utils.allocator import keep_freed_memory
    print("took effect", keep_freed_memory())
x = torch.empty(12 * 2 ** 20)  # 48 MiB: a fresh mapping of its own under default malloc
address = x.data_ptr()
with open("/proc/self/maps") as maps:
    for line in maps:
        if line.rstrip().endswith("[heap]"):
            lo, hi = (int(part, 16) for part in line.split()[0].split("-"))
            print("in heap", lo <= address < hi)
            break
    else:
        print("in heap", False)
"""


def probe(mode: str, env: dict | None = None) -> str:
    import os

    return subprocess.run([sys.executable, "-c", PROBE, mode], capture_output=True, text=True,
                          check=True, env={**os.environ, **(env or {})}).stdout


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc malloc and /proc only")
def test_large_tensors_come_from_the_heap_once_tuned():
    assert "in heap False" in probe("default")
    tuned = probe("tuned")
    assert "took effect True" in tuned and "in heap True" in tuned


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc malloc and /proc only")
def test_it_can_be_switched_off():
    out = probe("tuned", {"WAVEGEN_KEEP_FREED_MEMORY": "0"})
    assert "took effect False" in out and "in heap False" in out
