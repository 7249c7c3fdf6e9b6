"""Pipeline manifests: two bundles chained (MIDI -> mel -> audio) and every malformed manifest.

The MIDI -> mel stage is a tiny feed-forward family defined here, whose inference adapter
says it produces a mel of the HiFi-GAN vocoder's front-end; the vocoder is a small untrained
HiFi-GAN bundle.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from typing import Any

import numpy as np
import pytest
import torch
from torch import nn

from wavegen.audio.features import PRESETS
from wavegen.audio.io import load_audio
from wavegen.checkpoint import BundleInfo, load_bundle, save_bundle
from wavegen.cli import main
from wavegen.data.midi import PianoRollConfig, load_midi, performance_end, piano_roll
from wavegen.data.performance import generate_performance
from wavegen.errors import CheckpointError
from wavegen.inference import (FeedForwardAdapter, InferenceOptions, InputRequest, Signal, load,
                               stage_bundles, synthesize, write_manifest)
from wavegen.models.hifigan import HiFiGANConfig, HiFiGANGenerator
from wavegen.models.protocols import FEED_FORWARD
from wavegen.models.registry import Family, register_family, unregister_family
from wavegen.models.size import SizeEstimate
from wavegen.utils.config import DictConfig
from wavegen.vocoder import Vocoder

FEATURES = PRESETS["hifigan-22k"]
OTHER_FEATURES = PRESETS["hifigan-16k"]
RATE, HOP = 22050, 256


@dataclass
class RollToMelConfig(DictConfig):
    """A piano roll -> log-mel projection (one 1x1 convolution)."""

    roll_channels: int = PianoRollConfig(RATE, HOP).num_channels
    n_mels: int = 80
    hop_length: int = HOP
    sample_rate: int = RATE
    #: Which front-end its output mel belongs to (a preset name).
    output_features: str = "hifigan-22k"

    @property
    def conditioning_channels(self) -> int:
        return self.roll_channels


    def estimate_size(self) -> SizeEstimate:
        return SizeEstimate(self.roll_channels * self.n_mels + self.n_mels, 1)


class RollToMel(nn.Module):
    def __init__(self, config: RollToMelConfig):
        super().__init__()
        self.config = config
        self.proj = nn.Conv1d(config.roll_channels, config.n_mels, 1)

    def forward(self, roll: torch.Tensor) -> torch.Tensor:
        """``[B, 265, F]`` -> log-mel ``[B, 80, F]``."""
        return self.proj(roll) - 5.0


def roll_to_mel_adapter(model: RollToMel, info: BundleInfo) -> FeedForwardAdapter:
    return FeedForwardAdapter(model, info,
                              output=Signal.mel(PRESETS[model.config.output_features]))


@pytest.fixture(scope="module", autouse=True)
def family():
    register_family(Family("test-roll2mel", RollToMelConfig, RollToMel, FEED_FORWARD,
                           inference=roll_to_mel_adapter), replace=True)
    yield
    unregister_family("test-roll2mel")


@pytest.fixture(scope="module")
def bundles(tmp_path_factory):
    """A pipeline folder with its two bundles, plus a MIDI file."""
    root = tmp_path_factory.mktemp("pipeline")
    folder = root / "piano"
    torch.manual_seed(0)
    roll_config = RollToMelConfig()
    save_bundle(folder / "roll2mel", RollToMel(roll_config),
                BundleInfo("test-roll2mel", roll_config, RATE, conditioning="roll"))
    wrong = RollToMelConfig(output_features="hifigan-16k", sample_rate=16000)
    save_bundle(folder / "roll2mel16k", RollToMel(wrong),
                BundleInfo("test-roll2mel", wrong, 16000, conditioning="roll"))
    hifigan = HiFiGANGenerator(HiFiGANConfig.preset("v3", upsample_initial_channel=16))
    save_bundle(folder / "vocoder", hifigan,
                BundleInfo("hifigan", hifigan.config, RATE, FEATURES, conditioning="mel"))
    write_manifest(folder, ["roll2mel", "vocoder"], "MIDI -> mel -> audio")
    midi = root / "piece.mid"
    generate_performance(1, seconds=0.4, style="chords").write(str(midi))
    return {"root": root, "pipeline": folder, "midi": midi}


def expected_audio(bundles) -> torch.Tensor:
    """The two stages run by hand: roll -> RollToMel -> Vocoder."""
    stage1, _ = load_bundle(bundles["pipeline"] / "roll2mel")
    stage2, _ = load_bundle(bundles["pipeline"] / "vocoder")
    midi = load_midi(bundles["midi"])
    frames = max(1, int(np.ceil(performance_end(midi) * RATE / HOP)))
    roll = piano_roll(midi, PianoRollConfig(RATE, HOP), num_frames=frames)[None]
    with torch.inference_mode():
        mel = stage1(roll).float()
    return Vocoder(stage2, FEATURES)(mel).audio


def test_two_bundles_chain_midi_to_mel_to_audio(bundles, tmp_path, capsys):
    pipeline = load(bundles["pipeline"])
    assert [stage.kind for stage in pipeline.stages] == [FEED_FORWARD, FEED_FORWARD]
    assert pipeline.input == Signal("roll", 265, RATE, HOP)
    assert pipeline.output == Signal.audio(RATE)
    result = synthesize(pipeline, InputRequest(midi=bundles["midi"]), InferenceOptions())
    expected = expected_audio(bundles)
    assert result.audio.shape[-1] > 0 and torch.equal(result.audio, expected)
    # `wavegen sample` takes the manifest (folder or pipeline.json) like a bundle.
    for target in (bundles["pipeline"], bundles["pipeline"] / "pipeline.json"):
        out = tmp_path / "piano.wav"
        assert main(["sample", str(target), "--midi", str(bundles["midi"]), "-o", str(out),
                     "--no-progress"]) == 0
        assert "real-time factor" in capsys.readouterr().out
        audio, rate = load_audio(out)
        assert rate == RATE and audio.shape[-1] == expected.shape[-1]
        assert (audio - expected[0]).abs().max() < 2 / 32768  # 16-bit PCM
    # It takes MIDI, not a mel: not a job for `wavegen vocode`.
    np.save(tmp_path / "m.npy", np.zeros((80, 4), np.float32) - 5)
    assert main(["vocode", str(bundles["pipeline"]), "--mel", str(tmp_path / "m.npy"), "-o",
                 str(tmp_path / "v.wav")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "not a mel -> waveform vocoder" in err
    assert "use `wavegen sample`" in err and not (tmp_path / "v.wav").exists()


def test_a_vocoder_manifest_vocodes_like_its_bundle_and_is_refused_by_sample(bundles, tmp_path,
                                                                           capsys):
    folder = tmp_path / "just_vocoder"
    _copy_stage(bundles["pipeline"], folder, "vocoder")
    write_manifest(folder, ["vocoder"])
    mel = np.random.default_rng(0).standard_normal((80, 30)).astype(np.float32) - 5
    np.save(tmp_path / "m.npy", mel)
    for name, target in (("bundle", folder / "vocoder"), ("manifest", folder)):
        assert main(["vocode", str(target), "--mel", str(tmp_path / "m.npy"), "-o",
                     str(tmp_path / f"{name}.wav")]) == 0
    assert (tmp_path / "bundle.wav").read_bytes() == (tmp_path / "manifest.wav").read_bytes()
    assert main(["sample", str(folder), "--mel", str(tmp_path / "m.npy"), "-o",
                 str(tmp_path / "s.wav")]) == 2
    assert "use `wavegen vocode`" in capsys.readouterr().err


def _manifest(folder, content) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    text = content if isinstance(content, str) else json.dumps(content)
    (folder / "pipeline.json").write_text(text)


def _stages(*names: str) -> dict[str, Any]:
    return {"wavegen_pipeline": 1, "stages": [{"bundle": name} for name in names]}


# Each case: (id, how to build the bad manifest in `folder` next to `pipeline`, message).
BAD = [
    ("missing stage", lambda folder, p: _manifest(folder, _stages("nowhere")),
     "stage 1 (nowhere): no such bundle"),
    ("dot-dot out of the folder", lambda folder, p: _manifest(folder, _stages("../piano/vocoder")),
     "leads outside the manifest's folder"),
    ("absolute path", lambda folder, p: _manifest(folder, _stages(str(p / "vocoder"))),
     "must be a path relative to the manifest's folder"),
    ("symlink out of the folder",
     lambda folder, p: (_manifest(folder, _stages("link")),
                        os.symlink(p / "vocoder", folder / "link")),
     "leads outside the manifest's folder"),
    ("stage names its own folder", lambda folder, p: _manifest(folder, _stages(".")),
     "the pipeline contains itself"),
    ("cycle through a nested manifest",
     lambda folder, p: (_manifest(folder, _stages("inner")),
                        _manifest(folder / "inner", _stages("loop")),
                        os.symlink(folder / "inner", folder / "inner" / "loop")),
     "the pipeline contains itself"),
    ("a folder that is no bundle", lambda folder, p: (_manifest(folder, _stages("empty")),
                                                      (folder / "empty").mkdir()),
     "not a wavegen bundle"),
    ("corrupt JSON", lambda folder, p: _manifest(folder, "{stages: ["), "corrupt JSON"),
    ("wrong version", lambda folder, p: _manifest(folder, {"wavegen_pipeline": 2, "stages": []}),
     "wavegen_pipeline must be 1, got 2"),
    ("no stages", lambda folder, p: _manifest(folder, {"wavegen_pipeline": 1, "stages": []}),
     "stages must be a non-empty list"),
    ("unknown key", lambda folder, p: _manifest(folder, {**_stages("x"), "vocoder": "x"}),
     "unknown key 'vocoder'"),
    ("stage with extra keys",
     lambda folder, p: _manifest(folder, {"wavegen_pipeline": 1,
                                          "stages": [{"bundle": "x", "ema": False}]}),
     "stage 1 must be an object with the one key 'bundle'"),
    ("bundle and manifest at once",
     lambda folder, p: (_manifest(folder, _stages("x")), (folder / "config.json").write_text("{}")),
     "holds both config.json and pipeline.json"),
]


@pytest.mark.parametrize("build, message", [pytest.param(b, m, id=i) for i, b, m in BAD])
def test_a_malformed_manifest_is_one_line(bundles, tmp_path, capsys, build, message):
    folder = tmp_path / "bad"
    build(folder, bundles["pipeline"])
    with pytest.raises(CheckpointError, match=message.replace("(", r"\(").replace(")", r"\)")):
        stage_bundles(folder)
    out = tmp_path / "out"
    out.mkdir()
    assert main(["sample", str(folder), "--midi", str(bundles["midi"]), "-o",
                 str(out / "x.wav")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("wavegen: error:") and message in err
    assert list(out.iterdir()) == []


def _copy_stage(pipeline, folder, name) -> None:
    model, info = load_bundle(pipeline / name)
    save_bundle(folder / name, model, info)


@pytest.mark.parametrize("stages, message", [
    (["vocoder", "roll2mel"], "stage 1 ("),
    (["roll2mel16k", "vocoder"], "gives a mel of front-end hifigan-16k but the next takes "
                                 "hifigan-22k (sample_rate: 16000 != 22050"),
    (["roll2mel"], "a pipeline must end in audio, its last stage gives mel (80 bands"),
], ids=["audio into a roll model", "mel of another front-end", "ends in a mel"])
def test_stages_whose_signals_do_not_chain_are_refused(bundles, tmp_path, capsys, stages,
                                                       message):
    folder = tmp_path / "chain"
    for name in set(stages):
        _copy_stage(bundles["pipeline"], folder, name)
    write_manifest(folder, stages)
    with pytest.raises(CheckpointError) as error:
        load(folder)
    assert message in str(error.value)
    if stages[0] == "vocoder":
        assert "gives audio (22050 Hz) but the next takes roll (265 channels" in str(error.value)
    assert main(["sample", str(folder), "--midi", str(bundles["midi"]), "-o",
                 str(tmp_path / "x.wav")]) == 2
    assert capsys.readouterr().err.count("\n") == 1


def test_nested_manifests_are_spliced_in_order(bundles, tmp_path):
    folder = tmp_path / "outer"
    _copy_stage(bundles["pipeline"], folder, "roll2mel")
    _copy_stage(bundles["pipeline"], folder / "inner", "vocoder")
    write_manifest(folder / "inner", ["vocoder"])
    write_manifest(folder, ["roll2mel", "inner"])
    assert stage_bundles(folder) == [(folder / "roll2mel").resolve(),
                                     (folder / "inner" / "vocoder").resolve()]
    result = synthesize(folder, InputRequest(midi=bundles["midi"]))
    assert torch.equal(result.audio, expected_audio(bundles))


def test_write_manifest_refuses_what_it_could_not_read_back(bundles, tmp_path):
    with pytest.raises(CheckpointError, match="leads outside"):
        write_manifest(tmp_path / "m", ["../elsewhere"])
    assert not (tmp_path / "m" / "pipeline.json").exists()
