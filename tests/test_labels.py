"""Class labels end to end: a labelled audio folder (one sub-folder per class) trains a
label-conditioned DiffWave, the bundle records the class names, and ``--label`` picks one."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import yaml

from wavegen.checkpoint import read_bundle_info
from wavegen.cli import main
from wavegen.data.audio_folder import AudioFolderDataset, folder_labels
from wavegen.errors import DataError


def labelled_folder(root: Path) -> Path:
    """Two classes of 16 kHz tones: ``low`` (220 Hz) and ``high`` (880 Hz), 3 files each."""
    for name, pitch in (("high", 880.0), ("low", 220.0)):
        (root / name).mkdir(parents=True)
        for i in range(3):
            t = np.arange(8000) / 16000
            sf.write(root / name / f"{i}.wav", 0.3 * np.sin(2 * np.pi * pitch * t + i), 16000)
    return root


def test_a_labelled_folder_gives_each_item_its_class(tmp_path):
    root = labelled_folder(tmp_path / "corpus")
    assert folder_labels(root) == ["high", "low"]
    data = AudioFolderDataset(root, 16000, 1024, cache_dir=tmp_path / "cache", labels=True,
                              validation_fraction=0.0, split="train")
    assert data.label_names == ["high", "low"]
    seen = {}
    for index in range(len(data)):
        item = data[index]
        file_index, _ = data.crop_location(index)
        seen[Path(data.files[file_index].source).parent.name] = int(item["label"])
    assert seen == {"high": 0, "low": 1}
    assert "label" not in AudioFolderDataset(root, 16000, 1024, cache_dir=tmp_path / "cache")[0]
    (root / "loose.wav").write_bytes((root / "low" / "0.wav").read_bytes())
    with pytest.raises(DataError, match="loose.wav lies outside the class sub-folders"):
        folder_labels(root)


def recipe(root: Path, classes: int) -> dict:
    return {"name": "labels", "task": "diffusion",
            "model": {"family": "diffwave", "preset": "base", "residual_layers": 3,
                      "residual_channels": 8, "dilation_cycle": 3, "embedding_hidden": 16,
                      "conditioning": "none", "global_classes": classes,
                      "global_embedding_dim": 8, "sample_rate": 16000},
            "data": {"kind": "audio_folder", "root": str(root), "sample_rate": 16000,
                     "crop_samples": 1024, "labels": "folder", "validation_fraction": 0.3,
                     "cache_dir": str(root.parent / "cache")},
            "diffusion": {"sampler": "ddim", "sampler_steps": 3, "cond_dropout": 0.2},
            "train": {"steps": 3, "batch_size": 4, "log_every": 1, "val_every": 3,
                      "val_batches": 1, "checkpoint_every": 3, "sample_seconds": 0.05,
                      "device": "cpu"}}


def test_train_then_sample_each_label(tmp_path, capsys, one_thread):
    root = labelled_folder(tmp_path / "corpus")
    path = tmp_path / "labels.yaml"
    path.write_text(yaml.safe_dump(recipe(root, 2)))
    assert main(["train", str(path), "--out", str(tmp_path / "run"), "--no-progress"]) == 0
    bundle = tmp_path / "run" / "checkpoints" / "best"
    assert read_bundle_info(bundle).extra["labels"] == ["high", "low"]
    outputs = {}
    for label in ("high", "low", "1"):
        out = tmp_path / f"{label}.wav"
        assert main(["sample", str(bundle), "--seconds", "0.05", "--label", label,
                     "--guidance", "2", "-o", str(out), "--no-progress"]) == 0, \
            capsys.readouterr().err
        outputs[label] = sf.read(out, dtype="float32")[0]
    assert not np.array_equal(outputs["high"], outputs["low"])
    assert np.array_equal(outputs["low"], outputs["1"])  # by name or by index
    assert main(["sample", str(bundle), "--seconds", "0.05", "--label", "middle", "-o",
                 str(tmp_path / "x.wav")]) == 2
    err = capsys.readouterr().err
    assert "unknown label 'middle'; it knows high, low" in err and err.count("\n") == 1
    assert not (tmp_path / "x.wav").exists()


def test_a_model_without_room_for_the_classes_is_refused(tmp_path, capsys):
    root = labelled_folder(tmp_path / "corpus")
    path = tmp_path / "labels.yaml"
    path.write_text(yaml.safe_dump(recipe(root, 1)))
    assert main(["train", str(path), "--out", str(tmp_path / "run")]) == 2
    assert "has 2 classes (high, low) but model.global_classes is 1" in capsys.readouterr().err
