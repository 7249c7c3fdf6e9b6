"""Atomic writes leave either the old file or the complete new one, and no temporaries."""

from __future__ import annotations

import pytest

from wavegen.utils.atomic import atomic_path, atomic_write_text


def test_write_replaces_and_leaves_no_temp(tmp_path):
    target = tmp_path / "a.json"
    target.write_text("old")
    atomic_write_text(target, "new")
    assert target.read_text() == "new"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.json"]


def test_failure_keeps_old_content_and_removes_temp(tmp_path):
    target = tmp_path / "a.bin"
    target.write_text("old")
    with pytest.raises(RuntimeError):
        with atomic_path(target) as tmp:
            tmp.write_text("half")
            raise RuntimeError("killed mid-write")
    assert target.read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.bin"]


def test_failure_before_first_write_creates_nothing(tmp_path):
    target = tmp_path / "new.txt"
    with pytest.raises(KeyboardInterrupt):
        with atomic_path(target):
            raise KeyboardInterrupt
    assert list(tmp_path.iterdir()) == []


def test_new_files_get_the_usual_permissions(tmp_path):
    import os
    umask = os.umask(0o022)
    try:
        target = tmp_path / "x.txt"
        atomic_write_text(target, "hello")
        assert target.stat().st_mode & 0o777 == 0o644
    finally:
        os.umask(umask)
