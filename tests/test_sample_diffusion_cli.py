"""``wavegen sample`` with diffusion bundles: continuation of a prompt by inpainting
(unconditional DiffWave) and classifier-free guidance (piano-roll DiffWave), end to end."""

from __future__ import annotations

import numpy as np
import pretty_midi
import soundfile as sf

from families import tiny_diffwave

from wavegen.checkpoint import BundleInfo, save_bundle
from wavegen.cli import main
from wavegen.diffusion.process import DiffusionProcess


def _bundle(tmp_path, conditioning: str) -> str:
    model = tiny_diffwave(conditioning=conditioning).eval()
    process = DiffusionProcess(sampler="ddim", sampler_steps=3, cond_dropout=0.1)
    info = BundleInfo("diffwave", model.config, 16000, conditioning=conditioning,
                      process=process.to_dict())
    return str(save_bundle(tmp_path / conditioning, model, info))


def test_an_unconditional_bundle_continues_a_prompt(tmp_path, capsys, one_thread):
    bundle = _bundle(tmp_path, "none")
    prompt = tmp_path / "prompt.wav"
    sf.write(prompt, 0.3 * np.sin(np.arange(1600) * 0.2), 16000)
    free, continued = tmp_path / "free.wav", tmp_path / "cont.wav"
    assert main(["sample", bundle, "--seconds", "0.1", "-o", str(free), "--no-progress"]) == 0
    assert main(["sample", bundle, "--seconds", "0.1", "--prompt", str(prompt), "-o",
                 str(continued), "--no-progress"]) == 0, capsys.readouterr().err
    lines = capsys.readouterr().out.splitlines()
    assert all(line.endswith("; NFE 3") for line in lines)
    a, rate = sf.read(free, dtype="float32")
    b, _ = sf.read(continued, dtype="float32")
    assert rate == 16000 and a.shape == b.shape == (1600,)
    assert np.isfinite(b).all() and not np.array_equal(a, b)  # the prompt changed the result


def test_a_piano_roll_bundle_samples_a_midi_file_with_guidance(tmp_path, capsys, one_thread):
    bundle = _bundle(tmp_path, "roll")
    midi = pretty_midi.PrettyMIDI()
    piano = pretty_midi.Instrument(program=0)
    piano.notes.append(pretty_midi.Note(velocity=90, pitch=60, start=0.0, end=0.2))
    midi.instruments.append(piano)
    path = tmp_path / "score.mid"
    midi.write(str(path))
    outputs = {}
    for guidance in ("1", "3"):
        out = tmp_path / f"g{guidance}.wav"
        assert main(["sample", bundle, "--midi", str(path), "--guidance", guidance, "-o",
                     str(out), "--no-progress"]) == 0, capsys.readouterr().err
        outputs[guidance], rate = sf.read(out, dtype="float32")
    assert capsys.readouterr().out.count("; NFE 3") == 2
    assert rate == 16000 and abs(outputs["1"].shape[0] - 0.2 * 16000) <= 2 * 64
    assert not np.array_equal(outputs["1"], outputs["3"])
    # Guidance 1 is the plain conditional model: the same audio as without --guidance.
    plain = tmp_path / "plain.wav"
    assert main(["sample", bundle, "--midi", str(path), "-o", str(plain), "--no-progress"]) == 0
    assert np.array_equal(sf.read(plain, dtype="float32")[0], outputs["1"])
