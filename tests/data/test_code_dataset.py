"""CodeDataset: crops of cached codes for the priors. Deterministic per (seed, epoch, index),
aligned with the upper level (checked on codes that encode their own positions), one bundle
per folder, splits, skipped files, and a folder written by `wavegen encode`."""

from __future__ import annotations

import logging
import math
import pickle
from pathlib import Path

import pytest
import torch

from wavegen.checkpoint import BundleInfo, save_bundle
from wavegen.codes import CodesFile, codes_file_name, encode_audio, load_autoencoder, write_codes
from wavegen.data.code_dataset import CodeDataset
from wavegen.errors import ConfigError, DataError
from wavegen.models.vqvae import VQVAE, VQVAEConfig

RATE = 16000
PRINT = "0123456789abcdef"
HOPS = {0: 8, 1: 32, 2: 128}
CODEBOOK = 4096
#: source -> (audio length, base of its level-0 codes: code i of level 0 is BASE + i).
SOURCES = {"a.wav": (8000, 0), "sub/b.wav": (6004, 1024), "c.wav": (3000, 2048),
           "short.wav": (200, 3072)}


def write_positional(root: Path, sources=SOURCES, fingerprint: str = PRINT,
                     levels=(0, 1)) -> Path:
    """Codes files whose codes give their own position: level-0 code ``i`` of a source is
    ``base + i``; the level-``l`` code ``j`` is ``base // r + j`` (``r = hop_l / hop_0``), so
    an aligned upper code is the lower code at the start of its span, divided by ``r``."""
    for source, (length, base) in sources.items():
        stem = source.rsplit(".", 1)[0]
        for level in levels:
            hop = HOPS[level]
            ratio = hop // HOPS[0]
            count = math.ceil(length / hop)
            codes = CodesFile(torch.arange(count) + base // ratio, level, hop, CODEBOOK, RATE,
                              length, fingerprint, source)
            path = root / f"{stem}.level{level}.npz"
            path.parent.mkdir(parents=True, exist_ok=True)
            write_codes(path, codes)
    return root


@pytest.fixture
def codes_root(tmp_path) -> Path:
    return write_positional(tmp_path / "codes")


def items(dataset: CodeDataset, epoch: int = 0) -> list[dict[str, torch.Tensor]]:
    dataset.set_epoch(epoch)
    return [dataset[i] for i in range(len(dataset))]


def test_crops_are_consecutive_codes_with_the_aligned_upper_codes(codes_root, one_thread):
    data = CodeDataset(codes_root, level=0, crop_codes=64, seed=3, upper_level=1,
                       items_per_epoch=40)
    assert (data.hop_length, data.upper_hop, data.ratio) == (8, 32, 4)
    assert (data.codebook_size, data.sample_rate, data.fingerprint) == (CODEBOOK, RATE, PRINT)
    assert len(data.files) == 3 and [s.path for s in data.skipped] == \
        [str(codes_root / "short.level0.npz")]
    bases = {entry.source: SOURCES[entry.source][1] for entry in data.files}
    for index, item in enumerate(items(data)):
        codes, upper = item["codes"], item["upper_codes"]
        assert codes.dtype == upper.dtype == torch.int64
        assert codes.shape == (64,) and upper.shape == (16,)
        file_index, start = data.crop_location(index)
        base = bases[data.files[file_index].source]
        assert start % 4 == 0
        assert torch.equal(codes, base + start + torch.arange(64))  # consecutive, in its file
        assert torch.equal(upper, codes[::4] // 4)  # upper code k spans lower 4k .. 4k + 3


def test_crops_are_deterministic_and_differ_between_epochs_and_seeds(codes_root, one_thread):
    def make(seed=0):
        return CodeDataset(codes_root, level=0, crop_codes=32, seed=seed, upper_level=1)

    first, second = make(), make()
    assert len(first) == (1000 + 751 + 375) // 32  # total codes / crop
    epoch0 = items(first)
    assert all(torch.equal(a["codes"], b["codes"]) and torch.equal(a["upper_codes"],
                                                                    b["upper_codes"])
               for a, b in zip(epoch0, items(second)))
    # Item i of epoch e depends on (seed, e, i) only, not on what was read before.
    second.set_epoch(0)
    assert torch.equal(second[7]["codes"], epoch0[7]["codes"])
    epoch1 = items(first, epoch=1)
    assert sum(not torch.equal(a["codes"], b["codes"]) for a, b in zip(epoch0, epoch1)) > 40
    other_seed = items(make(seed=1))
    assert sum(not torch.equal(a["codes"], b["codes"]) for a, b in zip(epoch0, other_seed)) > 40
    # DataLoader workers get a pickled copy that reads the same crops.
    copy = pickle.loads(pickle.dumps(first))
    copy.set_epoch(0)
    assert torch.equal(copy[11]["upper_codes"], epoch0[11]["upper_codes"])
    # Every file is used: crops are spread over the files by their lengths.
    assert {first.crop_location(i, 0)[0] for i in range(len(first))} == {0, 1, 2}


def test_one_level_alone_and_a_coarser_pair(codes_root, one_thread):
    fine = CodeDataset(codes_root, level=0, crop_codes=10, seed=0)
    assert fine.ratio == 1 and set(fine[0]) == {"codes"}
    starts = {fine.crop_location(i)[1] for i in range(len(fine))}
    assert any(s % 4 for s in starts)  # without an upper level any start is possible
    write_positional(codes_root, levels=(2,))
    coarse = CodeDataset(codes_root, level=1, crop_codes=8, upper_level=2)
    assert coarse.ratio == 4
    for item in items(coarse):
        assert torch.equal(item["upper_codes"], item["codes"][::4] // 4)


def test_a_mix_of_bundles_is_refused(codes_root, one_thread):
    other = "fedcba9876543210"
    write_positional(codes_root / "more", {"d.wav": (4000, 0)}, fingerprint=other)
    with pytest.raises(DataError, match=f"{PRINT}.*{other}|{other}.*{PRINT}"):
        CodeDataset(codes_root, level=0, crop_codes=32)
    # Also when the odd file is in the other split: the folder itself is mixed.
    with pytest.raises(DataError, match="mixed"):
        CodeDataset(codes_root, level=0, crop_codes=32, split="train", validation_fraction=0.5)
    with pytest.raises(DataError, match=f"not of bundle {other}"):
        CodeDataset(codes_root / "..", level=0, crop_codes=32, fingerprint=other)
    assert len(CodeDataset(codes_root / "more", level=0, crop_codes=32,
                           fingerprint=other).files) == 1


def test_bad_arguments_and_missing_partners(codes_root, tmp_path, caplog, one_thread):
    with pytest.raises(ConfigError, match="multiple of 4"):
        CodeDataset(codes_root, level=0, crop_codes=30, upper_level=1)
    with pytest.raises(ConfigError, match="coarser"):
        CodeDataset(codes_root, level=1, crop_codes=8, upper_level=0)
    with pytest.raises(DataError, match="does not exist"):
        CodeDataset(tmp_path / "nowhere", level=0, crop_codes=8)
    with pytest.raises(DataError, match="no usable level-2"):
        CodeDataset(codes_root, level=2, crop_codes=8)
    (codes_root / "c.level1.npz").unlink()
    (codes_root / "junk.level0.npz").write_bytes(b"not an archive")
    (codes_root / ".hidden.level0.npz").write_bytes(b"hidden: never read")
    with caplog.at_level(logging.INFO, logger="wavegen.data"):
        data = CodeDataset(codes_root, level=0, crop_codes=32, upper_level=1)
    assert sorted(entry.source for entry in data.files) == ["a.wav", "sub/b.wav"]
    reasons = {Path(s.path).name: s.reason for s in data.skipped}
    assert "no level-1 codes beside it" in reasons["c.level0.npz"]
    assert "not a codes file" in reasons["junk.level0.npz"]
    assert "shorter than a crop" in reasons["short.level0.npz"]
    assert ".hidden.level0.npz" not in reasons


def test_splits_follow_the_source_and_do_not_overlap(tmp_path, one_thread):
    sources = {f"s{i:02d}.wav": (4096, 0) for i in range(24)}
    root = write_positional(tmp_path / "codes", sources)
    train = CodeDataset(root, level=0, crop_codes=16, split="train", validation_fraction=0.3,
                        upper_level=1)
    validation = CodeDataset(root, level=0, crop_codes=16, split="validation",
                             validation_fraction=0.3, upper_level=1)
    names = [{f.source for f in d.files} for d in (train, validation)]
    assert names[0] and names[1] and not names[0] & names[1]
    assert names[0] | names[1] == set(sources)


def vq_bundle(path: Path) -> Path:
    """A tiny untrained VQ-VAE whose codebooks are encoder vectors of noise (varied codes)."""
    torch.manual_seed(0)
    model = VQVAE(VQVAEConfig.preset("tiny")).eval()
    noise = 0.3 * torch.randn(1, 1, 128 * 64, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        for level in model.levels:
            flat = level.encoder(noise)[0].T
            level.quantizer.set_codebook(flat[torch.randperm(flat.shape[0])[:64]].contiguous())
    return save_bundle(path, model, BundleInfo("vqvae", model.config, RATE, conditioning="none"))


def test_a_folder_written_by_encode(tmp_path, one_thread):
    autoencoder = load_autoencoder(vq_bundle(tmp_path / "vq"))
    root = tmp_path / "codes"
    root.mkdir()
    audio = {}
    for index, length in enumerate((4000, 2600)):
        wave = 0.4 * torch.randn(1, length, generator=torch.Generator().manual_seed(index))
        audio[f"x{index}.wav"] = wave
        for codes in encode_audio(autoencoder, wave, (0, 2), source=f"x{index}.wav"):
            write_codes(root / codes_file_name(f"x{index}", codes.level), codes)
    data = CodeDataset(root, level=0, crop_codes=32, upper_level=2,
                       fingerprint=autoencoder.fingerprint)
    assert data.ratio == 16 and data.codebook_size == 64
    full = {name: [c.codes for c in encode_audio(autoencoder, wave, (0, 2))]
            for name, wave in audio.items()}
    for index in range(len(data)):
        file_index, start = data.crop_location(index)
        fine, coarse = full[data.files[file_index].source]
        item = data[index]
        assert torch.equal(item["codes"], fine[start:start + 32])
        assert torch.equal(item["upper_codes"], coarse[start // 16:start // 16 + 2])
