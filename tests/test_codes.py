"""Codes as data (`wavegen encode` / `wavegen decode`, :mod:`wavegen.codes`): the file format,
encode -> decode against the model's own reconstruction, folders in and out, the bundle
fingerprint, and one-line refusals of every bad input with nothing written."""

from __future__ import annotations

import dataclasses
import io
import math
import os
import zipfile
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from tiny_wavenets import tiny as tiny_wavenet
from wavegen.audio.io import load_audio
from wavegen.checkpoint import BundleInfo, bundle_fingerprint, save_bundle
from wavegen.cli import COMMANDS, main
from wavegen.codes import (CodesFile, check_codes, decode_codes, encode_file,
                           load_autoencoder, read_codes, write_codes)
from wavegen.errors import DataError, UsageError
from wavegen.models.vqvae import VQVAE, VQVAEConfig

RATE = 16000
LENGTH = 5000  # not a multiple of any hop (8, 32, 128): every level pads


def make_bundle(path: Path, seed: int = 0, ema: bool = False) -> Path:
    """A tiny untrained VQ-VAE whose codebooks are vectors its encoders give on noise, so
    that real audio maps to many different codes."""
    torch.manual_seed(seed)
    model = VQVAE(VQVAEConfig.preset("tiny")).eval()
    noise = 0.3 * torch.randn(1, 1, 128 * 64, generator=torch.Generator().manual_seed(seed))
    with torch.no_grad():
        for level in model.levels:
            flat = level.encoder(noise)[0].T  # [frames, code_dim]
            pick = torch.randperm(flat.shape[0], generator=torch.Generator().manual_seed(1))
            level.quantizer.set_codebook(flat[pick[:64]].contiguous())
    ema_state = None
    if ema:
        ema_state = {k: v + 0.01 if v.is_floating_point() else v
                     for k, v in model.state_dict().items()}
    save_bundle(path, model, BundleInfo("vqvae", model.config, RATE, conditioning="none"),
                ema_state=ema_state)
    return path


@pytest.fixture
def bundle(tmp_path) -> Path:
    return make_bundle(tmp_path / "vq")


def write_clip(path: Path, length: int = LENGTH, seed: int = 0) -> Path:
    """A chirp plus noise, stored as float so that it reads back exactly."""
    t = np.arange(length) / RATE
    noise = np.random.default_rng(seed).normal(0, 0.05, length)
    x = 0.5 * np.sin(2 * np.pi * (200 + 2000 * t) * t) + noise
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(path, x.astype(np.float32), RATE, subtype="FLOAT")
    return path


def run(capsys, *argv):
    status = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return status, out, err


def assert_one_line_error(result, *fragments):
    status, out, err = result
    assert status == 2, (status, out, err)
    assert out == ""
    lines = err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("wavegen: error: "), err
    for fragment in fragments:
        assert fragment in lines[0], lines[0]


def reconstruction(model: VQVAE, audio: torch.Tensor, level: int) -> tuple[torch.Tensor,
                                                                          torch.Tensor]:
    """(codes [N], audio [T]) of the model on ``audio`` [1, T] padded to whole codes."""
    hop = model.hop_lengths[level]
    total = audio.shape[-1]
    padded = torch.nn.functional.pad(audio[None], (0, math.ceil(total / hop) * hop - total))
    with torch.no_grad():
        codes = model.encode(padded, level)
        return codes[0], model.decode(codes, level)[0, 0, :total].clamp(-1, 1)


def test_the_verbs_are_registered():
    assert {"encode", "decode"} <= set(COMMANDS)


def test_encode_then_decode_equals_the_models_reconstruction(tmp_path, capsys, bundle,
                                                             one_thread):
    clip = write_clip(tmp_path / "clip.wav")
    status, out, err = run(capsys, "encode", bundle, clip, "-o", tmp_path / "codes")
    assert status == 0 and err == ""
    assert len(out.splitlines()) == 1 and "clip.wav" in out
    assert sorted(os.listdir(tmp_path / "codes")) == [f"clip.level{l}.npz" for l in range(3)]

    autoencoder = load_autoencoder(bundle)
    model, audio = autoencoder.model, load_audio(clip, sample_rate=RATE, mono=True)[0]
    assert autoencoder.fingerprint == bundle_fingerprint(bundle)
    for level, hop in enumerate((8, 32, 128)):
        codes = read_codes(tmp_path / "codes" / f"clip.level{level}.npz")
        expected_codes, expected_audio = reconstruction(model, audio, level)
        assert (codes.level, codes.hop, codes.codebook_size) == (level, hop, 64)
        assert (codes.sample_rate, codes.num_samples, codes.source) == (RATE, LENGTH, "clip.wav")
        assert codes.fingerprint == autoencoder.fingerprint
        assert codes.num_codes == math.ceil(LENGTH / hop)
        assert torch.equal(codes.codes, expected_codes)
        assert len(torch.unique(codes.codes)) > 3  # the test sees real codes, not one

        # The Python API gives the reconstruction exactly; the CLI writes 16-bit PCM.
        assert torch.allclose(decode_codes(autoencoder, codes)[0], expected_audio, atol=1e-6)
        wav = tmp_path / f"level{level}.wav"
        status, out, err = run(capsys, "decode", bundle, codes.path, "-o", wav)
        assert status == 0 and err == "" and len(out.splitlines()) == 1
        decoded, rate = load_audio(wav)
        assert rate == RATE and decoded.shape == (1, LENGTH)
        assert torch.allclose(decoded[0], expected_audio, atol=1e-4)


def test_encode_chosen_levels_and_the_file_format(tmp_path, capsys, bundle, one_thread):
    clip = write_clip(tmp_path / "clip.wav")
    status, _, _ = run(capsys, "encode", bundle, clip, "-o", tmp_path / "codes", "--levels", "2")
    assert status == 0
    assert os.listdir(tmp_path / "codes") == ["clip.level2.npz"]
    # Plain numpy reads it without pickles: an uncompressed archive of typed members.
    path = tmp_path / "codes" / "clip.level2.npz"
    with np.load(path, allow_pickle=False) as archive:
        assert archive["codes"].dtype == np.int16 and archive["codes"].shape == (40,)
        assert int(archive["wavegen_codes"]) == 1 and int(archive["level"]) == 2
        assert int(archive["num_samples"]) == LENGTH and str(archive["source"]) == "clip.wav"
    with zipfile.ZipFile(path) as archive:
        assert {i.compress_type for i in archive.infolist()} == {zipfile.ZIP_STORED}
    # write_codes / read_codes round-trip, and a crop reads straight from the file.
    codes = read_codes(path)
    again = read_codes(write_codes(tmp_path / "copy.npz", dataclasses.replace(
        codes, path=None, location=None)))
    assert torch.equal(again.codes, codes.codes) and again.fingerprint == codes.fingerprint
    assert np.array_equal(again.location.rows(5, 10), codes.codes[5:15].numpy())


def test_fingerprint_follows_the_weights_that_are_used(tmp_path):
    plain = make_bundle(tmp_path / "plain")
    with_ema = make_bundle(tmp_path / "ema", ema=True)
    assert bundle_fingerprint(plain) == bundle_fingerprint(plain, use_ema=False)
    assert bundle_fingerprint(with_ema) != bundle_fingerprint(with_ema, use_ema=False)
    assert bundle_fingerprint(plain) != bundle_fingerprint(make_bundle(tmp_path / "b", seed=1))
    assert len(bundle_fingerprint(plain)) == 16


def test_codes_of_another_bundle_are_refused(tmp_path, capsys, bundle, one_thread):
    other = make_bundle(tmp_path / "other", seed=1)
    clip = write_clip(tmp_path / "clip.wav")
    assert run(capsys, "encode", bundle, clip, "-o", tmp_path / "codes")[0] == 0
    result = run(capsys, "decode", other, tmp_path / "codes" / "clip.level0.npz",
                 "-o", tmp_path / "out.wav")
    assert_one_line_error(result, bundle_fingerprint(bundle), bundle_fingerprint(other))
    assert not (tmp_path / "out.wav").exists()
    # The EMA weights of a bundle are another model than its raw weights.
    ema = make_bundle(tmp_path / "ema", ema=True)
    assert run(capsys, "encode", ema, clip, "-o", tmp_path / "ema_codes", "--levels", "1")[0] == 0
    result = run(capsys, "decode", ema, tmp_path / "ema_codes" / "clip.level1.npz",
                 "--raw-weights", "-o", tmp_path / "out.wav")
    assert_one_line_error(result, "--raw-weights")
    assert run(capsys, "decode", ema, tmp_path / "ema_codes" / "clip.level1.npz",
               "-o", tmp_path / "out.wav")[0] == 0


def test_a_level_the_bundle_lacks_is_refused(tmp_path, capsys, bundle, one_thread):
    clip = write_clip(tmp_path / "clip.wav")
    assert_one_line_error(run(capsys, "encode", bundle, clip, "-o", tmp_path / "codes",
                              "--levels", "0", "3"), "no level 3", "levels 0..2")
    assert not (tmp_path / "codes").exists()
    assert run(capsys, "encode", bundle, clip, "-o", tmp_path / "codes", "--levels", "2")[0] == 0
    codes = read_codes(tmp_path / "codes" / "clip.level2.npz")
    forged = write_codes(tmp_path / "forged.level3.npz", dataclasses.replace(
        codes, level=3, path=None, location=None))
    assert_one_line_error(run(capsys, "decode", bundle, forged, "-o", tmp_path / "out.wav"),
                          "level 3", "levels 0..2")
    assert not (tmp_path / "out.wav").exists()


def archive_bytes(members: dict[str, np.ndarray], compress: bool = False) -> bytes:
    buffer = io.BytesIO()
    (np.savez_compressed if compress else np.savez)(buffer, **members)
    return buffer.getvalue()


def valid_members(fingerprint: str, codes=(1, 2, 3)) -> dict[str, np.ndarray]:
    return {"wavegen_codes": np.asarray(1), "codes": np.asarray(codes, np.int16),
            "level": np.asarray(0), "hop": np.asarray(8), "codebook_size": np.asarray(64),
            "sample_rate": np.asarray(RATE), "num_samples": np.asarray(8 * len(codes)),
            "fingerprint": np.asarray(fingerprint), "source": np.asarray("x.wav")}


class Unpickled:
    """Creates ``marker`` if anything ever unpickles it."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (open, (str(self.marker), "w"))


def forged_header(fingerprint: str) -> bytes:
    """A codes member whose header declares a trillion codes over 6 bytes of data."""
    header = io.BytesIO()
    np.lib.format.write_array_header_1_0(
        header, {"descr": "<i2", "fortran_order": False, "shape": (10 ** 12,)})
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, value in valid_members(fingerprint).items():
            if name != "codes":
                member = io.BytesIO()
                np.save(member, value)
                archive.writestr(f"{name}.npy", member.getvalue())
        archive.writestr("codes.npy", header.getvalue() + b"\x01\x00\x02\x00\x03\x00")
    return buffer.getvalue()


def bad_files(tmp_path: Path, fingerprint: str) -> dict[str, tuple[bytes | None, str]]:
    """name -> (file contents, or None for no file; a fragment of the error)."""
    members = valid_members(fingerprint)
    marker = tmp_path / "unpickled"
    pickled = dict(members, codes=np.asarray([Unpickled(marker)], dtype=object))
    npy = io.BytesIO()
    np.save(npy, np.arange(3))
    valid = archive_bytes(members)
    return {
        "missing.npz": (None, "no such file"),
        "empty.npz": (b"", "empty file"),
        "other.npz": (archive_bytes({"x": np.arange(3)}), "not a wavegen codes file"),
        "pickled.npz": (archive_bytes(pickled), "never unpickles"),
        "compressed.npz": (archive_bytes(members, compress=True), "compressed"),
        "forged.npz": (forged_header(fingerprint), "truncated or corrupt"),
        "cut.npz": (valid[:len(valid) // 2], "corrupt"),
        "array.npz": (npy.getvalue(), "a .npy array"),
        "text.npz": (b"codes: 1 2 3\n", "a text file"),
        "audio.npz": (b"RIFF\x00\x00\x00\x00WAVEfmt ", "a WAV audio file"),
        "range.npz": (archive_bytes(dict(members, codes=np.asarray([1, 64, 2], np.int16))),
                      "must lie in [0, 64)"),
        "length.npz": (archive_bytes(dict(members, num_samples=np.asarray(100))),
                       "cannot hold 100 samples"),
        "version.npz": (archive_bytes(dict(members, wavegen_codes=np.asarray(7))),
                        "version 7"),
        "floats.npz": (archive_bytes(dict(members, codes=np.asarray([1.0, 2.0, 3.0]))),
                       "float64"),
    }


def test_bad_codes_files_are_refused_in_one_line(tmp_path, capsys, bundle, one_thread):
    fingerprint = bundle_fingerprint(bundle)
    cases = bad_files(tmp_path, fingerprint)
    good = tmp_path / "good.npz"
    good.write_bytes(archive_bytes(valid_members(fingerprint)))
    assert run(capsys, "decode", bundle, good, "-o", tmp_path / "good.wav")[0] == 0
    for name, (content, fragment) in cases.items():
        path = tmp_path / name
        if content is not None:
            path.write_bytes(content)
        with pytest.raises(DataError, match=None) as caught:
            read_codes(path)
        assert fragment in str(caught.value) and str(path) in str(caught.value), name
        result = run(capsys, "decode", bundle, good, path, "-o", tmp_path / "out")
        assert_one_line_error(result, str(path), fragment)
        assert not (tmp_path / "out").exists(), name  # the good file was not decoded either
    assert not (tmp_path / "unpickled").exists()


def test_codes_outside_the_bundles_codebook_are_refused(tmp_path, bundle, one_thread):
    autoencoder = load_autoencoder(bundle)
    codes = CodesFile(torch.tensor([3, 100, 5]), 0, 8, 128, RATE, 20, autoencoder.fingerprint,
                      "x.wav")
    with pytest.raises(UsageError, match="codebook size 128"):
        check_codes(autoencoder, codes)
    with pytest.raises(DataError, match=r"must lie in \[0, 64\).*got 100 at code 1"):
        CodesFile(torch.tensor([3, 100, 5]), 0, 8, 64, RATE, 20, autoencoder.fingerprint, "x")


def test_a_bundle_without_codes_is_refused(tmp_path, capsys, one_thread):
    model = tiny_wavenet()
    save_bundle(tmp_path / "wavenet", model, BundleInfo("wavenet", model.config, RATE,
                                                        conditioning="none"))
    clip = write_clip(tmp_path / "clip.wav")
    assert_one_line_error(run(capsys, "encode", tmp_path / "wavenet", clip, "-o",
                              tmp_path / "codes"), "family wavenet", "not a discrete autoencoder")
    assert not (tmp_path / "codes").exists()
    assert_one_line_error(run(capsys, "encode", tmp_path / "nothing", clip, "-o",
                              tmp_path / "codes"), "nothing")


def test_bad_audio_inputs_write_nothing(tmp_path, capsys, bundle, one_thread):
    clip = write_clip(tmp_path / "clip.wav")
    broken = tmp_path / "broken.wav"
    broken.write_bytes(b"RIFF\x10\x00\x00\x00WAVEjunk")
    for bad, fragment in ((tmp_path / "missing.wav", "no such file"), (broken, "broken.wav")):
        assert_one_line_error(run(capsys, "encode", bundle, clip, bad, "-o", tmp_path / "codes"),
                              fragment)
        assert not (tmp_path / "codes").exists()
    (tmp_path / "file").write_text("x")
    assert_one_line_error(run(capsys, "encode", bundle, clip, "-o", tmp_path / "file"),
                          "not a folder")


def test_folders_in_and_out(tmp_path, capsys, bundle, one_thread):
    corpus = tmp_path / "corpus"
    write_clip(corpus / "a.wav", 3000)
    write_clip(corpus / "sub" / "b.wav", 1000, seed=1)
    write_clip(corpus / ".hidden" / "c.wav", 1000)
    write_clip(corpus / ".d.wav", 1000)
    (corpus / "notes.txt").write_text("not audio")
    status, out, err = run(capsys, "encode", bundle, corpus, "-o", tmp_path / "codes")
    assert status == 0 and err == "" and len(out.splitlines()) == 2
    written = sorted(p.relative_to(tmp_path / "codes").as_posix()
                     for p in (tmp_path / "codes").rglob("*") if p.is_file())
    assert written == [f"a.level{l}.npz" for l in range(3)] + \
        [f"sub/b.level{l}.npz" for l in range(3)]
    assert read_codes(tmp_path / "codes" / "sub" / "b.level1.npz").source == "sub/b.wav"

    status, out, err = run(capsys, "decode", bundle, tmp_path / "codes", "-o", tmp_path / "wavs")
    assert status == 0 and err == "" and len(out.splitlines()) == 6
    for name, length in (("a", 3000), ("sub/b", 1000)):
        for level in range(3):
            audio, rate = load_audio(tmp_path / "wavs" / f"{name}.level{level}.wav")
            assert rate == RATE and audio.shape == (1, length)
    # One codes file into an existing folder (or a path ending in /) is NAME.wav in it.
    assert run(capsys, "decode", bundle, tmp_path / "codes" / "a.level2.npz", "-o",
               f"{tmp_path / 'one'}/")[0] == 0
    assert os.listdir(tmp_path / "one") == ["a.level2.wav"]
    assert_one_line_error(run(capsys, "decode", bundle, tmp_path / "codes" / "a.level2.npz",
                              "-o", tmp_path / "out.npz"), "give an audio file")


def test_inputs_that_would_write_the_same_codes_are_refused(tmp_path, capsys, bundle,
                                                            one_thread):
    write_clip(tmp_path / "in" / "a.wav", 1000)
    write_clip(tmp_path / "in2" / "a.wav", 1000)
    assert_one_line_error(run(capsys, "encode", bundle, tmp_path / "in" / "a.wav",
                              tmp_path / "in2" / "a.wav", "-o", tmp_path / "codes"),
                          "would both write")
    assert not (tmp_path / "codes").exists()


def test_encode_file_api(tmp_path, bundle, one_thread):
    clip = write_clip(tmp_path / "clip.wav", 700)
    autoencoder = load_autoencoder(bundle)
    (only,) = encode_file(autoencoder, clip, [2])
    assert (only.level, only.num_codes, only.num_samples, only.source) == (2, 6, 700, "clip.wav")
    with pytest.raises(UsageError, match="no level 7"):
        encode_file(autoencoder, clip, [7])
