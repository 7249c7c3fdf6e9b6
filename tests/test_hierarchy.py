"""Hierarchies (wavegen.hierarchy, `wavegen sample HIERARCHY`): a tiny untrained VQ-VAE with
a top prior and two upsamplers. Windowed sampling against one pass, --save-codes /
--from-codes resuming to the same codes and audio, --level, one wav per level, prompts,
MIDI-conditioned tops, and one-line refusals of bad hierarchies and inputs, nothing written."""

from __future__ import annotations

import json
import math
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from test_codes import assert_one_line_error, make_bundle, run, write_clip
from wavegen.audio.io import load_audio
from wavegen.checkpoint import BundleInfo, bundle_fingerprint, save_bundle
from wavegen.codes import encode_audio, encode_file, load_autoencoder, read_codes, write_codes
from wavegen.data.performance import generate_performance
from wavegen.errors import CheckpointError, UsageError
from wavegen.hierarchy import (HIERARCHY_FILE, is_hierarchy, load_hierarchy, read_manifest,
                               sample_windowed, write_manifest)
from wavegen.models.prior import CodePrior, CodePriorConfig
from wavegen.nn.causal_transformer import CausalTransformer
from wavegen.sampling import SamplingOptions, draw_uniforms, generate

RATE = 16000
HOPS = (8, 32, 128)
SECONDS = 0.1                      # 13 top codes (1664 samples), 52 and 208 below
TOP = math.ceil(SECONDS * RATE / HOPS[2])
RF = 16                            # receptive field of the priors (4 layers, kernel 2)
NAMES = {2: "p2", 1: "p1", 0: "p0"}
#: Output logits of the untrained priors are scaled by this: near-uniform draws would hardly
#: depend on the context, and a window that forgot it would go unnoticed.
SHARPEN = 10.0


def prior_config(level: int, fingerprint: str, **overrides) -> CodePriorConfig:
    extra = {} if level == 2 else dict(conditioning="codes", upper_codebook_size=64,
                                       upper_ratio=HOPS[level + 1] // HOPS[level])
    return CodePriorConfig.preset("tiny", codebook_size=64, level=level, code_hop=HOPS[level],
                                  sample_rate=RATE, fingerprint=fingerprint,
                                  **{"layers": 4, "stacks": 1, **extra, **overrides})


def save_prior(path: Path, config: CodePriorConfig, seed: int = 0) -> Path:
    shutil.rmtree(path, ignore_errors=True)  # replacing a prior of a copied hierarchy
    torch.manual_seed(seed)
    model = CodePrior(config)
    with torch.no_grad():  # sharper logits: an untrained prior whose draws follow the context
        output = model.net.output if isinstance(model.net, CausalTransformer) \
            else model.net.output[3]
        output.weight *= SHARPEN
        output.bias *= SHARPEN
    save_bundle(path, model, BundleInfo("prior", config, RATE, conditioning=config.conditioning))
    return path


@pytest.fixture(scope="module")
def hierarchy(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("hierarchy") / "h"
    vq = make_bundle(root / "vqvae")
    fingerprint = bundle_fingerprint(vq, use_ema=True)
    for level, name in NAMES.items():
        save_prior(root / name, prior_config(level, fingerprint), seed=level)
    write_manifest(root, "vqvae", ["p2", "p1", "p0"], description="tiny test hierarchy")
    return root


@pytest.fixture(scope="module")
def loaded(hierarchy):
    return load_hierarchy(hierarchy)


def variant(tmp_path: Path, hierarchy: Path, priors=("p2", "p1", "p0"),
            manifest: dict | None = None) -> Path:
    """A copy of the hierarchy (to change a prior or the manifest in)."""
    root = tmp_path / "variant"
    shutil.copytree(hierarchy, root)
    if manifest is None:
        write_manifest(root, "vqvae", list(priors))
    else:
        (root / HIERARCHY_FILE).write_text(json.dumps(manifest))
    return root


def sample_cli(capsys, hierarchy, out: Path, *extra):
    return run(capsys, "sample", hierarchy, "-o", out, "--no-progress", *extra)


def files_in(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


def wav(path: Path) -> np.ndarray:
    audio, rate = sf.read(path, dtype="float32")
    assert rate == RATE
    return audio


# --------------------------------------------------------------------------- the manifest


def test_the_manifest_and_the_loaded_hierarchy(hierarchy, loaded):
    manifest = read_manifest(hierarchy)
    assert manifest.vqvae == hierarchy / "vqvae" and manifest.description == "tiny test hierarchy"
    assert manifest.priors == tuple(hierarchy / n for n in ("p2", "p1", "p0"))
    assert read_manifest(hierarchy / HIERARCHY_FILE) == manifest
    assert is_hierarchy(hierarchy) and not is_hierarchy(hierarchy / "p2")
    assert loaded.levels == [2, 1, 0] and not loaded.takes_midi
    assert loaded.sample_rate == RATE and [loaded.hop(l) for l in (0, 1, 2)] == list(HOPS)
    assert all(p.config.fingerprint == loaded.autoencoder.fingerprint for p in loaded.priors)
    assert all(not p.model.training for p in loaded.priors)
    assert loaded.priors[0].model.receptive_field == RF


# --------------------------------------------------------------------------- windows


def test_windows_overlapping_by_the_receptive_field_equal_one_pass(loaded, monkeypatch,
                                                                   one_thread):
    options = SamplingOptions(seed=5)
    whole = loaded.sample(seconds=0.25, options=options, window=None, decode=False)
    assert {l: e.codes.shape[-1] for l, e in whole.levels.items()} == {2: 32, 1: 128, 0: 512}
    import wavegen.hierarchy as module

    calls = []

    def counting(*args, **kwargs):
        calls.append(args[1])
        return generate(*args, **kwargs)

    monkeypatch.setattr(module, "generate", counting)
    # A window that is not a multiple of the upsamplers' ratio: windows start on whole frames.
    windowed = loaded.sample(seconds=0.25, options=options, window=26, overlap=RF,
                             decode=False)
    assert len(calls) > 40  # level 0 alone takes dozens of windows
    for level, entry in whole.levels.items():
        assert torch.equal(windowed.levels[level].codes, entry.codes), level
        assert entry.sampled and len(torch.unique(entry.codes)) > 8
    # The diagnostics are the new codes' averages, whatever the windows.
    for level in (2, 1, 0):
        a, b = whole.levels[level].generation, windowed.levels[level].generation
        assert torch.allclose(a.mean_nll, b.mean_nll, atol=1e-4)


@pytest.mark.parametrize("conditioned", [False, True])
def test_a_short_overlap_keeps_the_codes_already_written(loaded, conditioned, one_thread):
    model = loaded.priors[1 if conditioned else 0].model
    total, window, overlap = 80, 32, 4 if conditioned else 3
    local = (torch.randint(0, 64, (1, total // 4), generator=torch.Generator().manual_seed(0))
             if conditioned else None)
    options = SamplingOptions(seed=9)
    uniforms = draw_uniforms(1, total, 1, 9)
    codes, result = sample_windowed(model, total, local=local, options=options, window=window,
                                    overlap=overlap)
    assert codes.shape == (1, total) and torch.equal(result.samples, codes)
    # The first window is the loop's output on the first `window` positions ...
    first = generate(model, window, local=None if local is None else local[:, :window // 4],
                     uniforms=uniforms[:, :window]).samples
    assert torch.equal(codes[:, :window], first)
    # ... and the second re-reads its last `overlap` codes as the prompt, then goes on.
    begin = window - overlap
    second = generate(model, window - overlap,
                      local=None if local is None else local[:, begin // 4:(begin + window) // 4],
                      prompt=codes[:, None, begin:window].float(),
                      uniforms=uniforms[:, window:begin + window]).samples
    assert torch.equal(codes[:, window:begin + window], second)
    # An overlap shorter than the receptive field forgets context: one pass differs.
    one_pass, _ = sample_windowed(model, total, local=local, options=options, window=None)
    assert torch.equal(one_pass[:, :window], first)
    assert not torch.equal(one_pass, codes)


def test_windows_must_exceed_the_overlap(loaded, one_thread):
    model = loaded.priors[1].model
    upper = torch.zeros(1, 10, dtype=torch.long)
    with pytest.raises(UsageError, match="must exceed the overlap") as caught:
        sample_windowed(model, 40, local=upper, options=SamplingOptions(), window=20,
                        overlap=16)
    assert "\n" not in str(caught.value)
    with pytest.raises(UsageError, match="covers"):
        sample_windowed(model, 44, local=upper, options=SamplingOptions(), window=None)


# --------------------------------------------------------------------------- transformer priors

CONTEXT = 16  # the transformer top prior's context (codes)
#: Transformer priors: 2 blocks of width 32 and 4 heads.
TRANSFORMER = dict(architecture="transformer", layers=2, width=32, heads=4, context=CONTEXT)


@pytest.fixture(scope="module")
def transformer_hierarchy(hierarchy, tmp_path_factory) -> Path:
    """The hierarchy with a transformer top prior (context 16); the upsamplers WaveNets."""
    root = tmp_path_factory.mktemp("transformer") / "h"
    shutil.copytree(hierarchy, root)
    save_prior(root / "p2", prior_config(2, read_codes_fingerprint(hierarchy), **TRANSFORMER),
               seed=2)
    return root


@pytest.fixture(scope="module")
def transformer_loaded(transformer_hierarchy):
    return load_hierarchy(transformer_hierarchy)


def recording(monkeypatch) -> list[dict]:
    """Every call sample_windowed makes to generate: its arguments and the codes it drew."""
    import wavegen.hierarchy as module

    calls = []

    def record(model, num_samples, **kwargs):
        result = generate(model, num_samples, **kwargs)
        calls.append(dict(kwargs, model=model, num_samples=num_samples,
                          samples=result.samples))
        return result

    monkeypatch.setattr(module, "generate", record)
    return calls


def check_windows(calls, codes, uniforms, local=None, hop=1, limit=None, overlap=None,
                  first=0) -> None:
    """Each window re-reads codes already written as its prompt (``overlap`` or more, on
    whole frames), takes its slice of the conditioning and of the uniforms, holds at most
    ``limit`` positions, and what it draws is what the result holds there."""
    done = first
    for index, call in enumerate(calls):
        prompt = call["prompt"]
        reread = 0 if prompt is None else prompt.shape[-1]
        begin, end = done - reread, done + call["num_samples"]
        assert begin % hop == 0, index
        if prompt is not None:
            assert torch.equal(prompt[:, 0].long(), codes[:, begin:done]), index
        if overlap is not None and index > 0:
            assert overlap <= reread < overlap + hop, (index, reread)
        if limit is not None:
            assert end - begin <= limit, (index, begin, end)
        if local is not None:
            assert torch.equal(call["local"], local[..., begin // hop:end // hop]), index
        assert torch.equal(call["uniforms"], uniforms[:, done - first:end - first]), index
        assert torch.equal(call["samples"], codes[:, done:end]), index
        done = end
    assert done == codes.shape[-1]


def test_a_transformer_top_prior_samples_past_its_context_in_windows(transformer_loaded,
                                                                    monkeypatch, one_thread):
    h = transformer_loaded
    top = h.priors[0].model
    assert isinstance(top.net, CausalTransformer) and top.max_positions == CONTEXT
    assert all(p.model.max_positions is None for p in h.priors[1:])
    calls = recording(monkeypatch)
    seconds = 2.5 * CONTEXT * HOPS[2] / RATE  # 40 top codes: 2.5 contexts
    result = h.sample(seconds=seconds, options=SamplingOptions(seed=4))  # the default window
    assert {l: e.codes.shape[-1] for l, e in result.levels.items()} == {2: 40, 1: 160, 0: 640}
    assert result.finest.audio.shape == (1, 1, 40 * HOPS[2])
    top_calls = [c for c in calls if c["model"] is top]
    assert len(top_calls) == 4  # 16 codes, then 8 new ones per window re-reading 8
    uniforms = torch.cat([c["uniforms"] for c in top_calls], dim=1)  # the level's own seed
    check_windows(top_calls, result.levels[2].codes, uniforms, limit=CONTEXT,
                  overlap=CONTEXT // 2)
    assert len(torch.unique(result.levels[2].codes)) > 8
    # The upsamplers (WaveNets) cover these levels in one pass each.
    assert len(calls) == len(top_calls) + 2


def test_a_transformer_first_window_is_one_generate_and_the_next_ones_reread_it(
        transformer_loaded, monkeypatch, one_thread):
    model = transformer_loaded.priors[0].model
    total, seed = 3 * CONTEXT, 6
    uniforms = draw_uniforms(1, total, 1, seed)
    calls = recording(monkeypatch)
    codes, result = sample_windowed(model, total, options=SamplingOptions(seed=seed))
    assert codes.shape == (1, total) and torch.equal(result.samples, codes)
    # The first window: a single generate of `context` codes from the same uniforms.
    single = generate(model, CONTEXT, uniforms=uniforms[:, :CONTEXT]).samples
    assert torch.equal(codes[:, :CONTEXT], single)
    # Each next window re-reads the last context // 2 codes and continues them.
    assert [c["num_samples"] for c in calls] == [16, 8, 8, 8, 8]
    check_windows(calls, codes, uniforms, limit=CONTEXT, overlap=CONTEXT // 2)
    second = generate(model, CONTEXT // 2, prompt=codes[:, None, 8:16].float(),
                      uniforms=uniforms[:, 16:24]).samples
    assert torch.equal(codes[:, 16:24], second)
    # A longer overlap (at most context - 2) is another, as consistent, set of windows.
    calls.clear()
    longer, _ = sample_windowed(model, total, options=SamplingOptions(seed=seed), overlap=14)
    assert [c["num_samples"] for c in calls] == [16] + [2] * 16
    check_windows(calls, longer, uniforms, limit=CONTEXT, overlap=14)
    assert torch.equal(longer[:, :CONTEXT], single)
    assert not torch.equal(longer, codes)  # what a window re-reads matters


def test_a_window_larger_than_the_context_is_capped(transformer_loaded, monkeypatch,
                                                    one_thread):
    model = transformer_loaded.priors[0].model
    total, options = 40, SamplingOptions(seed=2)
    default, _ = sample_windowed(model, total, options=options)
    calls = recording(monkeypatch)
    for window in (None, CONTEXT + 1, 1000):
        calls.clear()
        codes, _ = sample_windowed(model, total, options=options, window=window)
        assert torch.equal(codes, default), window
        assert max(c["num_samples"] + (0 if c["prompt"] is None else c["prompt"].shape[-1])
                   for c in calls) == CONTEXT, window
    # A smaller window is used as given (with the default overlap, half the context).
    calls.clear()
    codes, _ = sample_windowed(model, total, options=options, window=12)
    check_windows(calls, codes, draw_uniforms(1, total, 1, 2), limit=12, overlap=CONTEXT // 2)
    # Through the hierarchy too: the default window (4096 codes) and an explicit one.
    h = transformer_loaded
    for window in (None, 1000):
        result = h.sample(seconds=total * HOPS[2] / RATE, options=options, stop_level=2,
                          window=window, decode=False)
        assert result.levels[2].codes.shape == (1, total)


def test_a_transformer_upsampler_in_windows_on_whole_frames(monkeypatch, one_thread):
    """A context (18) that is not a multiple of the ratio (4): windows start on whole upper
    codes, hold at most the context, and re-read at least the overlap."""
    torch.manual_seed(0)
    model = CodePrior(prior_config(1, "", **{**TRANSFORMER, "context": 18})).eval()
    assert model.max_positions == 18
    total, seed = 64, 3
    upper = torch.randint(0, 64, (2, total // 4), generator=torch.Generator().manual_seed(1))
    prompt = torch.randint(0, 64, (2, 6), generator=torch.Generator().manual_seed(2))
    calls = recording(monkeypatch)
    codes, _ = sample_windowed(model, total, local=upper, prompt=prompt,
                               options=SamplingOptions(seed=seed))
    assert codes.shape == (2, total) and torch.equal(codes[:, :6], prompt)
    assert len(calls) > 4
    check_windows(calls, codes, draw_uniforms(2, total - 6, 1, seed), local=upper, hop=4,
                  limit=18, overlap=9, first=6)


@pytest.mark.parametrize("overlap", [CONTEXT, CONTEXT + 5, CONTEXT - 1])
def test_an_overlap_of_the_context_is_refused(transformer_loaded, overlap, one_thread):
    model = transformer_loaded.priors[0].model
    for window in (None, 1000, CONTEXT):
        with pytest.raises(UsageError, match=rf"window \({CONTEXT} codes\) must exceed the "
                                             rf"overlap \({overlap}\)") as caught:
            sample_windowed(model, 40, options=SamplingOptions(), window=window,
                            overlap=overlap)
        assert "\n" not in str(caught.value)


def test_an_overlap_of_the_context_is_refused_by_the_cli(transformer_hierarchy, tmp_path,
                                                         capsys, one_thread):
    out = tmp_path / "out"
    out.mkdir()
    assert_one_line_error(sample_cli(capsys, transformer_hierarchy, out / "x.wav", "--seconds",
                                     SECONDS, "--overlap", CONTEXT),
                          "must exceed the overlap")
    assert files_in(out) == []
    status, _, err = sample_cli(capsys, transformer_hierarchy, out / "y.wav", "--seconds",
                                3 * CONTEXT * HOPS[2] / RATE, "--level", 2)
    assert status == 0 and err == "", err
    assert wav(out / "y.wav").shape == (3 * CONTEXT * HOPS[2],)


# --------------------------------------------------------------------------- the CLI


def test_every_level_is_written_with_its_codes(hierarchy, loaded, tmp_path, capsys, one_thread):
    out, codes = tmp_path / "out", tmp_path / "codes"
    out.mkdir(), codes.mkdir()
    status, stdout, err = sample_cli(capsys, hierarchy, out / "clip.wav", "--seconds", SECONDS,
                                     "--seed", 3, "--save-codes", codes)
    assert status == 0 and err == "", err
    assert files_in(out) == ["clip.level0.wav", "clip.level1.wav", "clip.level2.wav", "clip.wav"]
    assert files_in(codes) == [f"clip.level{l}.npz" for l in range(3)]
    assert len(stdout.splitlines()) == 4 and stdout.count("sampled") == 3
    ae = loaded.autoencoder
    for level, count in ((2, TOP), (1, 4 * TOP), (0, 16 * TOP)):
        saved = read_codes(codes / f"clip.level{level}.npz")
        assert saved.num_codes == count and saved.level == level and saved.hop == HOPS[level]
        assert saved.fingerprint == ae.fingerprint and saved.num_samples == count * HOPS[level]
        audio = wav(out / f"clip.level{level}.wav")
        assert audio.shape == (TOP * HOPS[2],)  # every level covers the same samples
        with torch.no_grad():
            expected = ae.model.decode(saved.codes[None], level)[0, 0].clamp(-1, 1)
        assert np.allclose(audio, expected.numpy(), atol=1e-4), level  # 16-bit PCM
    assert np.array_equal(wav(out / "clip.wav"), wav(out / "clip.level0.wav"))
    # The API gives the same codes (the CLI's default window covers these clips in one pass).
    api = loaded.sample(seconds=SECONDS, options=SamplingOptions(seed=3), decode=False)
    for level in (2, 1, 0):
        assert torch.equal(api.levels[level].codes[0],
                           read_codes(codes / f"clip.level{level}.npz").codes)


def test_save_codes_then_resume_from_them(hierarchy, tmp_path, capsys, one_thread):
    def sample(name, *extra, seed=7):
        folder = tmp_path / name
        (folder / "codes").mkdir(parents=True)
        status, stdout, err = sample_cli(capsys, hierarchy, folder / "out.wav", "--seed", seed,
                                         "--save-codes", folder / "codes", *extra)
        assert status == 0 and err == "", err
        return folder, stdout

    def codes(folder, level):
        return read_codes(folder / "codes" / f"out.level{level}.npz").codes

    first, _ = sample("first", "--seconds", SECONDS)
    saved = first / "codes"
    # From level 2's codes (no --seconds needed): levels 1 and 0 are sampled as before.
    from2, stdout = sample("from2", "--from-codes", saved / "out.level2.npz")
    assert "level 2: 13 codes given" in stdout and stdout.count("sampled") == 2
    # From levels 1 and 2 (files, then a folder holding just those two).
    from1, stdout = sample("from1", "--from-codes", saved / "out.level2.npz",
                           saved / "out.level1.npz")
    assert stdout.count("given") == 2 and stdout.count("sampled") == 1
    only = tmp_path / "only"
    only.mkdir()
    for level in (1, 2):
        shutil.copy(saved / f"out.level{level}.npz", only)
    folder, _ = sample("folder", "--from-codes", only)
    for resumed in (from2, from1, folder):
        for level in (2, 1, 0):
            assert torch.equal(codes(resumed, level), codes(first, level)), (resumed, level)
            assert np.array_equal(wav(resumed / f"out.level{level}.wav"),
                                  wav(first / f"out.level{level}.wav"))
        assert np.array_equal(wav(resumed / "out.wav"), wav(first / "out.wav"))
    # Another seed samples other codes below the given ones.
    other, _ = sample("other", "--from-codes", saved / "out.level2.npz", seed=8)
    assert torch.equal(codes(other, 2), codes(first, 2))
    assert not torch.equal(codes(other, 1), codes(first, 1))
    assert not torch.equal(codes(other, 0), codes(first, 0))
    # The given codes are used, not re-sampled: level 2 of another seed's run, then seed 7.
    second, _ = sample("second", "--seconds", SECONDS, seed=8)
    assert not torch.equal(codes(second, 2), codes(first, 2))
    cross, _ = sample("cross", "--from-codes", second / "codes" / "out.level2.npz")
    assert torch.equal(codes(cross, 2), codes(second, 2))
    assert not torch.equal(codes(cross, 1), codes(first, 1))
    assert np.array_equal(wav(cross / "out.level2.wav"), wav(second / "out.level2.wav"))


def test_level_stops_early(hierarchy, tmp_path, capsys, one_thread):
    out, codes = tmp_path / "out", tmp_path / "codes"
    out.mkdir(), codes.mkdir()
    status, stdout, err = sample_cli(capsys, hierarchy, out / "x.wav", "--seconds", SECONDS,
                                     "--level", 1, "--save-codes", codes)
    assert status == 0 and err == "", err
    assert files_in(out) == ["x.level1.wav", "x.level2.wav", "x.wav"]
    assert files_in(codes) == ["x.level1.npz", "x.level2.npz"]
    assert "(level 1)" in stdout.splitlines()[-1]
    assert np.array_equal(wav(out / "x.wav"), wav(out / "x.level1.wav"))
    assert wav(out / "x.wav").shape == (TOP * HOPS[2],)
    # Stopping changes nothing above: level 2 is the full run's.
    full = tmp_path / "full"
    full.mkdir()
    assert sample_cli(capsys, hierarchy, full / "x.wav", "--seconds", SECONDS)[0] == 0
    assert np.array_equal(wav(full / "x.level2.wav"), wav(out / "x.level2.wav"))
    assert np.array_equal(wav(full / "x.level1.wav"), wav(out / "x.level1.wav"))


def test_a_prompt_is_the_start_of_every_level(hierarchy, loaded, tmp_path, capsys, one_thread):
    clip = write_clip(tmp_path / "prompt.wav", length=1000)  # 7 whole top codes (896 samples)
    out, codes = tmp_path / "out", tmp_path / "codes"
    out.mkdir(), codes.mkdir()
    status, _, err = sample_cli(capsys, hierarchy, out / "x.wav", "--seconds", SECONDS,
                                "--prompt", clip, "--save-codes", codes)
    assert status == 0 and err == "", err
    audio, _ = load_audio(clip, sample_rate=RATE, mono=True)
    prompts = encode_audio(loaded.autoencoder, audio[:, :7 * 128], [2, 1, 0])
    for prompt in prompts:
        level = prompt.level
        sampled = read_codes(codes / f"x.level{level}.npz").codes
        count = 7 * 128 // HOPS[level]
        assert prompt.num_codes == count
        assert sampled.shape == (TOP * 128 // HOPS[level],)
        assert torch.equal(sampled[:count], prompt.codes), level
    # A prompt no shorter than the clip is refused, nothing written.
    long = write_clip(tmp_path / "long.wav", length=4000)
    assert_one_line_error(sample_cli(capsys, hierarchy, tmp_path / "y.wav", "--seconds", SECONDS,
                                     "--prompt", long), "--prompt")
    short = write_clip(tmp_path / "short.wav", length=100)
    assert_one_line_error(sample_cli(capsys, hierarchy, tmp_path / "y.wav", "--seconds", SECONDS,
                                     "--prompt", short), "shorter than one top-level code")
    assert not any(p.name.startswith("y") for p in tmp_path.iterdir())


def test_a_midi_conditioned_top(hierarchy, tmp_path, capsys, one_thread):
    fingerprint = read_codes_fingerprint(hierarchy)
    root = variant(tmp_path, hierarchy)
    save_prior(root / "p2", prior_config(2, fingerprint, conditioning="roll", roll_channels=265,
                                         cond_dropout=0.1))
    midi = tmp_path / "piece.mid"
    generate_performance(3, seconds=0.5, style="chords").write(str(midi))
    h = load_hierarchy(root)
    assert h.takes_midi
    out = tmp_path / "out"
    out.mkdir()
    status, stdout, err = sample_cli(capsys, root, out / "x.wav", "--midi", midi,
                                     "--seconds", SECONDS, "--cfg", 2)
    # the upsamplers were trained without conditioning dropout: guided only at the top
    assert status == 0 and err.strip() == ("wavegen: warning: --cfg 2 applies only to priors "
                                           "trained with conditioning dropout; level(s) 1, 0 "
                                           "sample without guidance"), err
    assert f"level 2: {TOP} codes sampled" in stdout
    assert wav(out / "x.wav").shape == (TOP * HOPS[2],)
    # Without --seconds the roll's length: the piece's frames.
    status, stdout, _ = sample_cli(capsys, root, out / "whole.wav", "--midi", midi)
    assert status == 0
    frames = int(stdout.split("level 2: ")[1].split(" codes")[0])
    assert frames > TOP and wav(out / "whole.wav").shape == (frames * HOPS[2],)
    # No MIDI: refused, nothing written.
    assert_one_line_error(sample_cli(capsys, root, out / "y.wav", "--seconds", SECONDS), "--midi")
    assert not any(p.name.startswith("y") for p in out.iterdir())


def read_codes_fingerprint(hierarchy: Path) -> str:
    return load_autoencoder(hierarchy / "vqvae").fingerprint


# --------------------------------------------------------------------------- bad input


@pytest.fixture(scope="module")
def level_codes(hierarchy, tmp_path_factory) -> dict[str, Path]:
    """Codes files of a clip: this hierarchy's VQ-VAE (levels 0..2) and another bundle's."""
    root = tmp_path_factory.mktemp("codes")
    clip = write_clip(root / "clip.wav", length=TOP * 128)
    ours = load_autoencoder(hierarchy / "vqvae")
    other = load_autoencoder(make_bundle(root / "other", seed=1))
    assert other.fingerprint != ours.fingerprint
    files = {}
    for codes in encode_file(ours, clip):
        files[f"level{codes.level}"] = write_codes(root / f"clip.level{codes.level}.npz", codes)
    (root / "theirs").mkdir()
    files["other"] = write_codes(root / "theirs" / "clip.level2.npz",
                                 encode_file(other, clip, [2])[0])
    short = encode_file(ours, write_clip(root / "short.wav", length=5 * 128), [1])[0]
    (root / "short").mkdir()
    files["short1"] = write_codes(root / "short" / "short.level1.npz", short)
    return files


def bad_runs(hierarchy: Path, tmp_path: Path, codes: dict[str, Path]):
    """(name, hierarchy, extra arguments, fragments of the error line)."""
    fingerprint = read_codes_fingerprint(hierarchy)
    yield "another bundle's codes", hierarchy, ["--from-codes", codes["other"]], \
        ["codes of bundle"]
    yield "level 1 without level 2", hierarchy, ["--from-codes", codes["level1"]], \
        ["level 2 is missing"]
    yield "codes too short for the level above", hierarchy, \
        ["--from-codes", codes["level2"], codes["short1"]], ["level 1 has 20 codes"]
    yield "two files of one level", hierarchy, \
        ["--from-codes", codes["level2"], codes["level2"]], ["two files of level 2"]
    yield "no such codes", hierarchy, ["--from-codes", tmp_path / "nope.npz"], \
        ["no such file"]
    no0 = variant(tmp_path / "no0", hierarchy, priors=("p2", "p1"))
    yield "a level without a prior", no0, ["--from-codes", codes["level2"], codes["level1"],
                                           codes["level0"]], ["no prior samples level 0"]
    yield "--level without a prior", no0, ["--seconds", SECONDS, "--level", 0], \
        ["no prior samples level 0"]
    print_ = variant(tmp_path / "print", hierarchy)
    save_prior(print_ / "p0", prior_config(0, "0123456789abcdef"))
    yield "a prior of another VQ-VAE", print_, ["--seconds", SECONDS], \
        ["0123456789abcdef", fingerprint]
    ratio = variant(tmp_path / "ratio", hierarchy)
    save_prior(ratio / "p1", prior_config(1, fingerprint, upper_ratio=2))
    yield "an upsampler with the wrong ratio", ratio, ["--seconds", SECONDS], \
        ["does not fit under level 2"]
    top = variant(tmp_path / "top", hierarchy, priors=("p1", "p0"))
    yield "an upsampler on top", top, ["--seconds", SECONDS], ["upsampler"]
    order = variant(tmp_path / "order", hierarchy, priors=("p2", "p0"))
    yield "levels skipped", order, ["--seconds", SECONDS], ["does not fit under level 2"]
    missing = variant(tmp_path / "missing", hierarchy, priors=("p2", "p1", "gone"))
    yield "a missing bundle", missing, ["--seconds", SECONDS], ["gone"]
    for name, path in (("dotdot", "../p0"), ("absolute", str(hierarchy / "p0"))):
        escape = variant(tmp_path / name, hierarchy, manifest={
            "wavegen_hierarchy": 1, "vqvae": "vqvae", "priors": ["p2", "p1", path]})
        yield f"a bundle path escaping the folder ({name})", escape, ["--seconds", SECONDS], \
            ["inside the folder"]
    link = variant(tmp_path / "link", hierarchy, priors=("p2", "p1"))
    (link / "outside").symlink_to(hierarchy / "p0")
    write_manifest_unchecked(link, ["p2", "p1", "outside"])
    yield "a link leading outside", link, ["--seconds", SECONDS], ["leads outside"]
    unknown = variant(tmp_path / "unknown", hierarchy, manifest={
        "wavegen_hierarchy": 1, "vqvae": "vqvae", "priors": ["p2"], "extra": 1})
    yield "an unknown key", unknown, ["--seconds", SECONDS], ["unknown key 'extra'"]
    vq_prior = variant(tmp_path / "vqprior", hierarchy, priors=("p2", "vqvae"))
    yield "a VQ-VAE as a prior", vq_prior, ["--seconds", SECONDS], ["not a prior"]
    midi = tmp_path / "piece.mid"
    generate_performance(1, seconds=0.3).write(str(midi))
    yield "--midi for an unconditional top", hierarchy, ["--midi", midi], ["unconditional"]
    yield "a window smaller than the overlap", hierarchy, \
        ["--seconds", SECONDS, "--window", 10, "--overlap", 16], ["must exceed the overlap"]
    yield "a negative window", hierarchy, ["--seconds", SECONDS, "--window", -1], ["--window"]
    yield "no --seconds", hierarchy, [], ["--seconds"]
    yield "--wav", hierarchy, ["--wav", codes["level0"].parent / "clip.wav"], ["--wav"]
    yield "--save-codes not a folder", hierarchy, \
        ["--seconds", SECONDS, "--save-codes", tmp_path / "nope"], ["not a folder"]


def write_manifest_unchecked(root: Path, priors: list[str]) -> None:
    (root / HIERARCHY_FILE).write_text(json.dumps({"wavegen_hierarchy": 1, "vqvae": "vqvae",
                                                   "priors": priors}))


def test_bad_hierarchies_and_inputs_are_refused_in_one_line(hierarchy, level_codes, tmp_path,
                                                            capsys, one_thread):
    out = tmp_path / "out"
    saved = tmp_path / "saved"
    out.mkdir(), saved.mkdir()
    cases = list(bad_runs(hierarchy, tmp_path / "cases", level_codes))
    assert len(cases) > 20
    for name, root, extra, fragments in cases:
        result = sample_cli(capsys, root, out / "x.wav", "--save-codes", saved, *extra) \
            if "--save-codes" not in extra else sample_cli(capsys, root, out / "x.wav", *extra)
        try:
            assert_one_line_error(result, *fragments)
        except AssertionError as exc:
            raise AssertionError(f"{name}: {exc}") from None
        assert files_in(out) == [] and files_in(saved) == [], name  # nothing half-written


def test_an_unsupported_output_suffix_writes_nothing(hierarchy, tmp_path, capsys, one_thread):
    codes = tmp_path / "codes"
    codes.mkdir()
    assert_one_line_error(sample_cli(capsys, hierarchy, tmp_path / "x.xyz", "--seconds", SECONDS,
                                     "--save-codes", codes), "suffix")
    assert files_in(codes) == []


@pytest.mark.parametrize("flag", [["--level", "1"], ["--save-codes", "."],
                                  ["--from-codes", "x.npz"], ["--window", "100"],
                                  ["--overlap", "4"]])
def test_hierarchy_flags_on_a_plain_bundle_are_refused(hierarchy, tmp_path, capsys, flag,
                                                       one_thread):
    result = sample_cli(capsys, hierarchy / "p2", tmp_path / "x.wav", "--seconds", SECONDS, *flag)
    assert_one_line_error(result, flag[0], "is for hierarchies")
    assert files_in(tmp_path) == []


def test_manifests_are_checked_on_reading(tmp_path):
    root = tmp_path / "h"
    root.mkdir()
    with pytest.raises(CheckpointError, match="not a hierarchy"):
        read_manifest(root)
    for data, message in (({"wavegen_hierarchy": 2, "vqvae": "v", "priors": ["p"]},
                           "wavegen_hierarchy must be 1"),
                          ({"wavegen_hierarchy": 1, "vqvae": "v", "priors": []}, "priors"),
                          ({"wavegen_hierarchy": 1, "vqvae": "v", "priors": "p"}, "priors"),
                          ({"wavegen_hierarchy": 1, "vqvae": "v", "priors": ["a\\b"]},
                           "relative path"),
                          ({"wavegen_hierarchy": 1, "vqvae": "", "priors": ["p"]}, "vqvae"),
                          ({"wavegen_hierarchy": 1, "vqvae": "v", "priors": ["p"],
                            "description": 3}, "description"),
                          ([1, 2], "wavegen_hierarchy")):
        (root / HIERARCHY_FILE).write_text(json.dumps(data))
        with pytest.raises(CheckpointError, match=message) as caught:
            read_manifest(root)
        assert "\n" not in str(caught.value)
    (root / HIERARCHY_FILE).write_text("{not json")
    with pytest.raises(CheckpointError, match="corrupt JSON"):
        read_manifest(root)
    (root / HIERARCHY_FILE).write_bytes(b"\xff\xfe")
    with pytest.raises(CheckpointError):
        read_manifest(root)
    path = write_manifest(root, "vq", ["a/b", "c"])
    assert read_manifest(path).priors == (root / "a" / "b", root / "c")
    assert os.listdir(root) == [HIERARCHY_FILE]
