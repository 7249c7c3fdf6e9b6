"""Audio file I/O: round trips, resampling, windows, atomic saves and one-line file errors.

All audio is generated here with numpy and written into ``tmp_path``.
"""

from __future__ import annotations

import dataclasses
import errno
import io
import os
import re

import numpy as np
import pytest
import soundfile as sf
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from wavegen.audio import io as audio_io
from wavegen.audio.io import AudioInfo, audio_info, load_audio, save_audio
from wavegen.errors import AudioFileError, StorageError, UsageError, WavegenError

HAS_MP3 = sf.check_format("MP3", "MPEG_LAYER_III")
needs_mp3 = pytest.mark.skipif(not HAS_MP3, reason="this libsndfile cannot write MP3")


def tones(sample_rate: int, seconds: float, freqs=(440.0,), amp: float = 0.5) -> np.ndarray:
    """One sine per channel, float32 [channels, time]; channel i has frequency freqs[i]."""
    t = np.arange(round(sample_rate * seconds)) / sample_rate
    waves = [amp * np.sin(2 * np.pi * f * t + 0.3 * i) for i, f in enumerate(freqs)]
    return np.stack(waves).astype(np.float32)


def snr_db(reference: np.ndarray, estimate: np.ndarray) -> float:
    noise = np.sum((reference - estimate) ** 2)
    return float(10 * np.log10(np.sum(reference**2) / max(noise, 1e-30)))


def files_in(directory) -> list[str]:
    return sorted(os.listdir(directory))


# --------------------------------------------------------------------------- round trips


@pytest.mark.parametrize(
    "suffix, subtype, step",
    [
        ("wav", "PCM_16", 2.0**-15),
        ("wav", "PCM_24", 2.0**-23),
        ("wav", "FLOAT", 0.0),
        ("flac", "PCM_16", 2.0**-15),
        ("flac", "PCM_24", 2.0**-23),
    ],
)
@pytest.mark.parametrize("channels", [1, 3])
def test_round_trip_within_quantisation_step(tmp_path, suffix, subtype, step, channels):
    x = tones(16000, 0.1, freqs=(440.0, 1000.0, 3000.0)[:channels])
    path = tmp_path / f"tone.{suffix}"
    save_audio(path, torch.from_numpy(x), 16000, subtype=subtype)

    y, rate = load_audio(path)
    assert rate == 16000
    assert y.dtype == torch.float32
    assert tuple(y.shape) == x.shape
    # libsndfile scales by 2^(bits-1) - 1 on write and 2^(bits-1) on read, so the error is
    # rounding (half a step) plus |x| / 2^(bits-1) <= one step for |x| <= 0.5.
    assert np.max(np.abs(y.numpy() - x)) <= step
    assert audio_info(path).subtype == subtype


def test_default_subtype_is_pcm16_and_1d_input_is_one_channel(tmp_path):
    x = tones(8000, 0.05)[0]
    for suffix in ("wav", "flac"):
        path = tmp_path / f"a.{suffix}"
        save_audio(path, x, 8000)
        y, _ = load_audio(path)
        assert tuple(y.shape) == (1, x.size)
        assert audio_info(path).subtype == "PCM_16"


def test_format_argument_overrides_suffix(tmp_path):
    path = tmp_path / "a.audio"
    save_audio(path, tones(8000, 0.05), 8000, format="FLAC")
    assert audio_info(path).format == "FLAC"


def test_float64_tensor_saved_as_double_is_exact(tmp_path):
    x = torch.from_numpy(tones(8000, 0.05, freqs=(440.0, 550.0)).astype(np.float64)) / 3
    path = tmp_path / "a.wav"
    save_audio(path, x, 8000, subtype="DOUBLE")
    with sf.SoundFile(path) as f:
        stored = f.read(dtype="float64", always_2d=True).T
    np.testing.assert_array_equal(stored, x.numpy())


def test_integer_subtypes_clip_and_float_keeps_out_of_range_samples(tmp_path):
    x = np.array([[-1.5, -1.0, -0.25, 0.0, 0.25, 1.0, 1.5]], dtype=np.float32)
    save_audio(tmp_path / "pcm.wav", x, 8000, subtype="PCM_16")
    save_audio(tmp_path / "float.wav", x, 8000, subtype="FLOAT")

    pcm, _ = load_audio(tmp_path / "pcm.wav")
    flt, _ = load_audio(tmp_path / "float.wav")
    np.testing.assert_allclose(pcm.numpy(), np.clip(x, -1, 1), atol=2.0**-15)
    np.testing.assert_array_equal(flt.numpy(), x)


def test_vorbis_is_clipped_too(tmp_path):
    # libsndfile saturates PCM itself but stores Vorbis samples beyond full scale as they are.
    loud = tones(22050, 0.5, amp=1.5)
    save_audio(tmp_path / "loud.ogg", loud, 22050)
    y, _ = load_audio(tmp_path / "loud.ogg")
    assert y.abs().max() < 1.2  # codec overshoot of the clipped wave only; unclipped is 1.5


def test_save_does_not_modify_the_callers_array(tmp_path):
    x = np.array([[-2.0, 0.5, 2.0]], dtype=np.float32)
    before = x.copy()
    save_audio(tmp_path / "a.wav", x, 8000)
    np.testing.assert_array_equal(x, before)


def test_mono_is_channel_mean(tmp_path):
    x = tones(16000, 0.1, freqs=(300.0, 700.0, 1100.0))
    path = tmp_path / "three.wav"
    save_audio(path, x, 16000, subtype="FLOAT")

    full, _ = load_audio(path)
    mono, rate = load_audio(path, mono=True)
    assert rate == 16000
    assert tuple(mono.shape) == (1, x.shape[1])
    torch.testing.assert_close(mono, full.mean(dim=0, keepdim=True))


def test_ogg_vorbis_loads(tmp_path):
    x = tones(22050, 0.5, freqs=(440.0, 660.0))
    path = tmp_path / "tone.ogg"
    sf.write(path, x.T, 22050, format="OGG", subtype="VORBIS")

    y, rate = load_audio(path)
    assert rate == 22050
    assert tuple(y.shape) == x.shape
    assert snr_db(x, y.numpy()) > 20  # lossy, but the same signal


def test_ogg_save_round_trip(tmp_path):
    x = tones(22050, 0.5)
    path = tmp_path / "tone.ogg"
    save_audio(path, x, 22050)
    y, _ = load_audio(path)
    assert audio_info(path).subtype == "VORBIS"
    assert tuple(y.shape) == x.shape
    assert snr_db(x, y.numpy()) > 20


@needs_mp3
def test_mp3_loads(tmp_path):
    x = tones(44100, 0.5)
    path = tmp_path / "tone.mp3"
    sf.write(path, x.T, 44100, format="MP3")

    y, rate = load_audio(path)
    info = audio_info(path)
    assert rate == 44100
    assert info.format == "MP3"
    assert tuple(y.shape) == (1, info.frames)
    assert abs(info.frames - x.shape[1]) <= 1152  # at most one MPEG frame of padding
    n = min(x.shape[1], y.shape[1])
    assert np.corrcoef(x[0, 2000 : n - 2000], y.numpy()[0, 2000 : n - 2000])[0, 1] > 0.99


# --------------------------------------------------------------------------- resampling


@pytest.mark.parametrize("target", [16000, 22050])
def test_resampled_sine_matches_analytic_sine(tmp_path, target):
    source = 48000
    x = tones(source, 0.5, freqs=(1000.0, 3000.0))
    path = tmp_path / "tone48k.wav"
    save_audio(path, x, source, subtype="FLOAT")

    y, rate = load_audio(path, sample_rate=target)
    assert rate == target
    assert y.dtype == torch.float32
    assert y.shape[0] == 2
    assert abs(y.shape[1] - round(x.shape[1] * target / source)) <= 1

    expected = tones(target, y.shape[1] / target, freqs=(1000.0, 3000.0))
    edge = target // 20  # 50 ms: the resampling filter sees the file's edges there
    for channel in range(2):
        got = y.numpy()[channel, edge:-edge]
        assert snr_db(expected[channel, edge:-edge], got) >= 140  # soxr VHQ measures ~150 dB; HQ ~133 and LQ ~115 would fail


def test_same_rate_is_not_resampled(tmp_path):
    x = tones(16000, 0.1)
    path = tmp_path / "a.wav"
    save_audio(path, x, 16000, subtype="FLOAT")
    y, rate = load_audio(path, sample_rate=16000)
    assert rate == 16000
    np.testing.assert_array_equal(y.numpy(), x)


# --------------------------------------------------------------------------- windows


@pytest.mark.parametrize("suffix", ["wav", "flac"])
def test_window_equals_slice_of_full_load(tmp_path, suffix):
    x = tones(16000, 1.0, freqs=(440.0, 880.0))
    path = tmp_path / f"a.{suffix}"
    save_audio(path, x, 16000, subtype="PCM_24")
    full, _ = load_audio(path)

    window, rate = load_audio(path, offset=0.25, duration=0.1)
    assert rate == 16000
    torch.testing.assert_close(window, full[:, 4000:5600], rtol=0, atol=0)

    tail, _ = load_audio(path, offset=0.9, duration=5.0)  # cut at the end of the file
    torch.testing.assert_close(tail, full[:, 14400:], rtol=0, atol=0)


def test_window_reads_only_the_window(tmp_path, monkeypatch):
    path = tmp_path / "a.wav"
    save_audio(path, tones(16000, 1.0), 16000)
    requested = []
    original_read = sf.SoundFile.read

    def spy(self, frames=-1, *args, **kwargs):
        requested.append(frames)
        return original_read(self, frames, *args, **kwargs)

    monkeypatch.setattr(sf.SoundFile, "read", spy)
    window, _ = load_audio(path, offset=0.5, duration=0.01)
    assert window.shape[1] == 160
    assert requested and all(0 <= n <= 160 for n in requested)


def test_window_then_resample_and_mono(tmp_path):
    x = tones(48000, 0.5, freqs=(1000.0, 1000.0))
    path = tmp_path / "a.wav"
    save_audio(path, x, 48000, subtype="FLOAT")
    y, rate = load_audio(path, sample_rate=16000, mono=True, offset=0.1, duration=0.2)
    assert rate == 16000
    assert tuple(y.shape) == (1, 3200)


@pytest.fixture(scope="module")
def long_flac(tmp_path_factory):
    path = tmp_path_factory.mktemp("window") / "long.flac"
    save_audio(path, tones(8000, 2.0, freqs=(300.0, 500.0)), 8000)
    full, _ = load_audio(path)
    return path, full


@settings(max_examples=25, deadline=None)
@given(
    start=st.integers(min_value=0, max_value=15999),
    length=st.integers(min_value=1, max_value=20000),
)
def test_any_window_equals_slice(long_flac, start, length):
    path, full = long_flac
    window, _ = load_audio(path, offset=start / 8000, duration=length / 8000)
    torch.testing.assert_close(window, full[:, start : start + length], rtol=0, atol=0)


@pytest.mark.parametrize(
    "kwargs", [{"offset": -0.1}, {"offset": float("nan")}, {"duration": 0.0}, {"duration": -1.0}]
)
def test_bad_window_arguments_are_usage_errors(tmp_path, kwargs):
    path = tmp_path / "a.wav"
    save_audio(path, tones(8000, 0.1), 8000)
    with pytest.raises(UsageError):
        load_audio(path, **kwargs)


def test_offset_past_end_is_a_file_error(tmp_path):
    path = tmp_path / "short.wav"
    save_audio(path, tones(8000, 0.1), 8000)
    with pytest.raises(AudioFileError, match=r"short\.wav.*past the end"):
        load_audio(path, offset=0.2)


# --------------------------------------------------------------------------- atomic saves


@pytest.fixture
def existing_target(tmp_path):
    path = tmp_path / "out.wav"
    save_audio(path, tones(8000, 0.1), 8000)
    return path, path.read_bytes()


def test_nan_waveform_leaves_existing_target_untouched(existing_target):
    path, before = existing_target
    x = tones(8000, 0.2)
    x[0, 100] = np.nan
    with pytest.raises(UsageError, match="NaN"):
        save_audio(path, x, 8000)
    assert path.read_bytes() == before
    assert files_in(path.parent) == ["out.wav"]


def test_inf_waveform_is_refused(tmp_path):
    x = torch.zeros(1, 100)
    x[0, 5] = float("inf")
    with pytest.raises(UsageError, match="infinite"):
        save_audio(tmp_path / "a.wav", x, 8000)
    assert files_in(tmp_path) == []


@pytest.mark.parametrize(
    "failure, expected",
    [
        (OSError(errno.ENOSPC, "No space left on device"), StorageError),
        (sf.LibsndfileError(1), AudioFileError),
        (KeyboardInterrupt(), KeyboardInterrupt),
    ],
)
def test_failure_mid_write_leaves_target_and_no_temp(existing_target, monkeypatch, failure, expected):
    path, before = existing_target
    real_write = sf.write

    def write_half_then_fail(file, data, samplerate, **kwargs):
        real_write(file, data[: len(data) // 2], samplerate, **kwargs)
        raise failure

    monkeypatch.setattr(sf, "write", write_half_then_fail)
    with pytest.raises(expected) as caught:
        save_audio(path, tones(8000, 0.5), 8000)
    if expected in (AudioFileError, StorageError):
        assert "out.wav" in str(caught.value) and "\n" not in str(caught.value)
    if expected is StorageError:
        assert str(caught.value).endswith("out.wav: no space left on device")
    assert path.read_bytes() == before
    assert files_in(path.parent) == ["out.wav"]


def test_failed_save_to_new_path_creates_nothing(tmp_path, monkeypatch):
    def fail(*args, **kwargs):
        raise OSError(errno.EIO, "Input/output error")

    monkeypatch.setattr(sf, "write", fail)
    with pytest.raises(StorageError, match="new.flac: input/output error"):
        save_audio(tmp_path / "new.flac", tones(8000, 0.1), 8000)
    assert files_in(tmp_path) == []


def test_save_syncs_before_replacing_and_replaces_existing(existing_target, monkeypatch):
    path, before = existing_target
    events = []
    real_fsync, real_replace = os.fsync, os.replace

    def fsync(fd):
        events.append("fsync")
        real_fsync(fd)

    def replace(src, dst):
        events.append("replace")
        real_replace(src, dst)

    monkeypatch.setattr(os, "fsync", fsync)
    monkeypatch.setattr(os, "replace", replace)

    save_audio(path, tones(8000, 0.3, freqs=(1000.0,)), 8000)
    assert events[:2] == ["fsync", "replace"]
    assert path.read_bytes() != before
    assert audio_info(path).frames == 2400
    assert files_in(path.parent) == ["out.wav"]


def test_saved_file_gets_normal_permissions(tmp_path):
    umask = os.umask(0o022)
    os.umask(umask)
    save_audio(tmp_path / "a.wav", tones(8000, 0.05), 8000)
    assert (tmp_path / "a.wav").stat().st_mode & 0o777 == 0o666 & ~umask


# --------------------------------------------------------------------------- bad files


def _encoded(x: np.ndarray, fmt: str, subtype: str, rate: int = 8000) -> bytes:
    buffer = io.BytesIO()
    sf.write(buffer, x.astype(np.float32), rate, format=fmt, subtype=subtype)
    return buffer.getvalue()


def _random_bytes(n: int, seed: int = 0) -> bytes:
    return np.random.default_rng(seed).bytes(n)


def _half(content: bytes) -> bytes:
    return content[: len(content) // 2]


def _directory(tmp_path):
    path = tmp_path / "folder.wav"
    path.mkdir()
    return path


def _file(name: str, content: bytes | None, reason: str, case_id: str, **kwargs):
    """A bad-file case: a builder writing ``content`` to ``tmp_path / name`` (None: nothing)."""

    def build(tmp_path):
        path = tmp_path / name
        if content is not None:
            path.write_bytes(content)
        return path

    return pytest.param(build, reason, id=case_id, **kwargs)


SINE = tones(8000, 1.0)[0]
WAV = _encoded(SINE, "WAV", "PCM_16")  # 44-byte header, then the data chunk
FLAC = _encoded(SINE, "FLAC", "PCM_16")
AIFF = _encoded(SINE, "AIFF", "PCM_16")
OGG = _encoded(SINE, "OGG", "VORBIS")
MP3 = _encoded(tones(44100, 1.0)[0], "MP3", "MPEG_LAYER_III", 44100) if HAS_MP3 else b""
UNREADABLE = r"not a readable audio file"

BAD_FILES = [
    _file("missing.wav", None, r"not found", "missing"),
    pytest.param(_directory, r"directory", id="directory"),
    _file("empty.wav", b"", r"empty", "zero-bytes"),
    _file("silent.wav", _encoded(np.zeros(0), "WAV", "PCM_16"), r"no audio", "zero-frames"),
    _file("noise.wav", _random_bytes(4000), UNREADABLE, "random-wav"),
    _file("noise.flac", _random_bytes(4000), UNREADABLE, "random-flac"),
    _file("noise.mp3", _random_bytes(4000, 1), UNREADABLE, "random-mp3"),
    _file("text.ogg", b"hello, world\n" * 50, UNREADABLE, "text-ogg"),
    _file("cut.wav", _half(WAV), r"truncated", "truncated-wav"),
    _file("cut.wav", WAV[:43], r"truncated", "wav-cut-in-data-header"),
    _file("cut.aiff", _half(AIFF), r"truncated", "truncated-aiff"),
    _file("cut.flac", _half(FLAC), r"corrupt or truncated", "truncated-flac"),
    _file("cut.ogg", _half(OGG), UNREADABLE, "truncated-ogg"),
    # libsndfile finds no length in an Ogg stream that lost its last page: zero frames.
    _file("cut.ogg", OGG[:-10], r"no audio", "ogg-missing-last-bytes"),
    _file("cut.mp3", _half(MP3), r"truncated", "truncated-mp3", marks=needs_mp3),
    _file("junk.wav", WAV[:44] + _random_bytes(3000), r"truncated", "wav-header-then-garbage"),
    _file("junk.wav", WAV[:36] + _random_bytes(3000), r"corrupt", "wav-fmt-then-garbage"),
    _file("junk.flac", FLAC[:200] + _random_bytes(8000), r"corrupt", "flac-header-then-garbage"),
]
HEADER_ONLY_CASES = {
    "missing", "directory", "zero-bytes", "zero-frames", "random-wav", "random-flac",
    "truncated-wav", "wav-cut-in-data-header", "truncated-aiff", "wav-header-then-garbage",
}


def _assert_one_line_file_error(error: AudioFileError, path, reason: str) -> None:
    message = str(error)
    assert isinstance(error, WavegenError)
    assert "\n" not in message
    assert path.name in message
    assert error.path == str(path)
    assert re.search(reason, message, re.IGNORECASE), message


@pytest.mark.parametrize("build, reason", BAD_FILES)
def test_bad_file_raises_one_line_audio_file_error(tmp_path, build, reason):
    path = build(tmp_path)
    with pytest.raises(AudioFileError) as caught:
        load_audio(path)
    _assert_one_line_file_error(caught.value, path, reason)


@pytest.mark.parametrize(
    "build, reason",
    [case for case in BAD_FILES if case.id in HEADER_ONLY_CASES],
)
def test_audio_info_rejects_bad_headers(tmp_path, build, reason):
    path = build(tmp_path)
    with pytest.raises(AudioFileError) as caught:
        audio_info(path)
    _assert_one_line_file_error(caught.value, path, reason)


@pytest.mark.parametrize("rate", [0, -16000, 44100.5, float("nan"), "16k"])
def test_bad_target_sample_rate_on_load(tmp_path, rate):
    path = tmp_path / "a.wav"
    save_audio(path, tones(8000, 0.05), 8000)
    with pytest.raises(AudioFileError) as caught:
        load_audio(path, sample_rate=rate)
    _assert_one_line_file_error(caught.value, path, r"sample rate")


def test_rf64_with_declared_size_loads(tmp_path):
    x = tones(8000, 0.2)
    path = tmp_path / "big.wav"
    sf.write(path, x.T, 8000, format="RF64", subtype="PCM_16")
    y, _ = load_audio(path)
    np.testing.assert_allclose(y.numpy(), x, atol=2.0**-15)
    path.write_bytes(path.read_bytes()[:-1000])
    with pytest.raises(AudioFileError, match="truncated"):
        load_audio(path)


def test_wav_with_streaming_placeholder_size_loads(tmp_path):
    data = bytearray(WAV)
    data[40:44] = b"\xff\xff\xff\xff"  # what a writer that cannot seek back leaves
    path = tmp_path / "stream.wav"
    path.write_bytes(bytes(data))
    y, _ = load_audio(path)
    assert y.shape[1] == 8000


def test_flac_without_declared_length_is_refused(tmp_path):
    # libsndfile's FLAC decoder fails at the end of such a stream after dropping its last
    # block, so reading one would silently lose audio.
    data = bytearray(FLAC)
    # STREAMINFO starts at byte 8; its 36-bit total-samples field ends at byte 8 + 18.
    data[8 + 13] &= 0xF0
    data[8 + 14 : 8 + 18] = bytes(4)
    path = tmp_path / "streamed.flac"
    path.write_bytes(bytes(data))
    for read in (load_audio, audio_info):
        with pytest.raises(AudioFileError) as caught:
            read(path)
        _assert_one_line_file_error(caught.value, path, r"does not declare its length")


def _mp3_frames(data: bytes) -> list[tuple[int, int]]:
    """(offset, bitrate in kbit/s) of each frame of a 44.1 kHz MPEG-1 Layer III stream."""
    bitrates = [0, 32, 40, 48, 56, 64, 80, 96, 112, 128, 160, 192, 224, 256, 320]
    frames, pos = [], 0
    while pos + 4 <= len(data) and data[pos] == 0xFF and data[pos + 1] & 0xFE == 0xFA:
        kbps = bitrates[data[pos + 2] >> 4]
        frames.append((pos, kbps))
        pos += 144000 * kbps // 44100 + ((data[pos + 2] >> 1) & 1)
    return frames


@needs_mp3
def test_untagged_mp3_is_not_reported_truncated(tmp_path):
    # Without the Xing/Info tag (the first frame) libsndfile estimates the length from the
    # bitrate of the first frame. Starting at a frame of the lowest bitrate makes the estimate
    # longer than the stream, which is what a naive frames-read check calls truncated.
    frames = _mp3_frames(MP3)
    lowest = min(kbps for _, kbps in frames[1:])
    start = next(pos for pos, kbps in frames[1:] if kbps == lowest)
    tagged, untagged = tmp_path / "tagged.mp3", tmp_path / "untagged.mp3"
    tagged.write_bytes(MP3)
    untagged.write_bytes(MP3[start:])

    assert audio_io._mp3_has_length_tag(str(tagged))
    assert not audio_io._mp3_has_length_tag(str(untagged))
    y, rate = load_audio(untagged)
    assert rate == 44100 and y.shape[0] == 1
    assert 0 < y.shape[1] < audio_info(untagged).frames


# --------------------------------------------------------------------------- bad saves


@pytest.mark.parametrize(
    "name, kwargs, reason",
    [
        pytest.param("out.mp3", {}, r"unsupported suffix '\.mp3'", id="mp3-suffix"),
        pytest.param("out.xyz", {}, r"unsupported suffix", id="unknown-suffix"),
        pytest.param("out", {}, r"no file suffix", id="no-suffix"),
        pytest.param("out.wav", {"format": "aiff"}, r"unsupported format", id="unsupported-format"),
        pytest.param("out.flac", {"subtype": "FLOAT"}, r"subtype 'FLOAT'", id="float-flac"),
        pytest.param("out.wav", {"subtype": "BOGUS"}, r"subtype 'BOGUS'", id="unknown-subtype"),
        pytest.param("out.wav", {"sample_rate": 0}, r"sample rate", id="rate-zero"),
        pytest.param("out.wav", {"sample_rate": -8000}, r"sample rate", id="rate-negative"),
        pytest.param("out.wav", {"sample_rate": 8000.5}, r"sample rate", id="rate-fraction"),
        pytest.param("out.flac", {"sample_rate": 10**7}, r"cannot write", id="rate-too-high-for-flac"),
        pytest.param("missing/out.wav", {}, r"does not exist", id="missing-directory"),
    ],
)
def test_bad_save_raises_one_line_error_and_creates_nothing(tmp_path, name, kwargs, reason):
    path = tmp_path / name
    kwargs = {"sample_rate": 8000, **kwargs}
    with pytest.raises(AudioFileError) as caught:
        save_audio(path, tones(8000, 0.05), **kwargs)
    _assert_one_line_file_error(caught.value, path, reason)
    assert files_in(tmp_path) == []


def test_save_onto_directory_is_refused(tmp_path):
    path = tmp_path / "taken.wav"
    path.mkdir()
    with pytest.raises(AudioFileError) as caught:
        save_audio(path, tones(8000, 0.05), 8000)
    _assert_one_line_file_error(caught.value, path, r"directory")
    assert files_in(tmp_path) == ["taken.wav"] and files_in(path) == []


@pytest.mark.parametrize(
    "waveform",
    [
        pytest.param(torch.zeros(1, 2, 100), id="3-d"),
        pytest.param(torch.tensor(0.5), id="0-d"),
        pytest.param(np.zeros((2, 0), np.float32), id="no-samples"),
        pytest.param(np.zeros((1, 100), np.int16), id="integer-array"),
        pytest.param(torch.zeros(1, 100, dtype=torch.int32), id="integer-tensor"),
        pytest.param([0.0, 0.1], id="list"),
    ],
)
def test_bad_waveform_is_usage_error(tmp_path, waveform):
    with pytest.raises(UsageError):
        save_audio(tmp_path / "a.wav", waveform, 8000)
    assert files_in(tmp_path) == []


def test_path_of_wrong_type_is_usage_error():
    with pytest.raises(UsageError):
        load_audio(123)  # type: ignore[arg-type]


# --------------------------------------------------------------------------- audio_info


def test_audio_info_values(tmp_path):
    path = tmp_path / "stereo.wav"
    save_audio(path, tones(22050, 0.5, freqs=(440.0, 660.0)), 22050, subtype="PCM_24")

    info = audio_info(path)
    assert info == AudioInfo(
        path=str(path),
        sample_rate=22050,
        channels=2,
        frames=11025,
        duration=0.5,
        format="WAV",
        subtype="PCM_24",
    )
    with pytest.raises(dataclasses.FrozenInstanceError):
        info.frames = 1  # type: ignore[misc]


def test_audio_info_flac_and_does_not_decode(tmp_path, monkeypatch):
    path = tmp_path / "a.flac"
    save_audio(path, tones(16000, 0.25, freqs=(440.0, 550.0, 660.0)), 16000)

    def no_decoding(*args, **kwargs):
        raise AssertionError("audio_info decoded audio")

    monkeypatch.setattr(sf.SoundFile, "read", no_decoding)
    monkeypatch.setattr(sf, "read", no_decoding)
    info = audio_info(path)
    assert (info.sample_rate, info.channels, info.frames) == (16000, 3, 4000)
    assert info.duration == pytest.approx(0.25)
    assert (info.format, info.subtype) == ("FLAC", "PCM_16")
