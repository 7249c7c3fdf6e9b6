"""``wavegen tune-steps``: schedules searched on a clip, stored in the bundle, used by --steps."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import soundfile as sf

from families import diffwave_bundle

from wavegen.audio.signals import chord
from wavegen.checkpoint import read_bundle_info
from wavegen.cli import main
from wavegen.diffusion.fast_schedules import check_time_grid


def _clip(tmp_path: Path) -> str:
    path = tmp_path / "clip.wav"
    sf.write(path, chord(16000, 0.3), 16000)
    return str(path)


def test_searched_grids_are_stored_and_followed_by_steps(tmp_path, capsys, one_thread):
    _, bundle = diffwave_bundle(tmp_path / "b", sampler="ddpm")
    before = (Path(bundle) / "model.safetensors").read_bytes()
    clip = _clip(tmp_path)
    assert main(["tune-steps", bundle, "--wav", clip, "--steps", "2", "3",
                 "--seconds", "0.2"]) == 0, capsys.readouterr().err
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith("2 steps: ") and out[1].startswith("3 steps: ")
    assert "uniform grid" in out[0] and "stored in" in out[-1]
    grids = read_bundle_info(bundle).process["time_grids"]
    assert sorted(grids) == ["2", "3"]
    for steps, grid in grids.items():
        assert check_time_grid(grid) == grid and len(grid) == int(steps) + 1
    # The printed winner is the stored one.
    printed = [float(t) for t in out[1].split("times ")[1].split(", ")]
    np.testing.assert_allclose(printed, grids["3"], rtol=1e-3)
    assert (Path(bundle) / "model.safetensors").read_bytes() == before
    # vocode --steps 3 follows the stored grid: the same audio as naming those times.
    wav = tmp_path / "v.wav"
    assert main(["vocode", bundle, "--wav", clip, "-o", str(wav), "--steps", "3"]) == 0
    assert capsys.readouterr().out.splitlines()[0].endswith("; NFE 3")
    stored, _ = sf.read(wav, dtype="float32")
    config = json.loads((Path(bundle) / "config.json").read_text())
    config["process"]["time_grids"] = {}
    (Path(bundle) / "config.json").write_text(json.dumps(config))
    assert main(["vocode", bundle, "--wav", clip, "-o", str(wav), "--steps", "3"]) == 0
    uniform, _ = sf.read(wav, dtype="float32")
    assert grids["3"] == [1.0, 2 / 3, 1 / 3, 0.0] or not np.array_equal(stored, uniform)


def test_dry_run_writes_nothing(tmp_path, capsys, one_thread):
    _, bundle = diffwave_bundle(tmp_path / "b")
    config = (Path(bundle) / "config.json").read_bytes()
    assert main(["tune-steps", bundle, "--wav", _clip(tmp_path), "--steps", "2",
                 "--seconds", "0.1", "--dry-run", "--metric", "mrstft"]) == 0
    assert "not written" in capsys.readouterr().out
    assert (Path(bundle) / "config.json").read_bytes() == config
