"""MelGAN generator and multi-scale critics, GAN-TTS random window critics, official importer."""

from __future__ import annotations

import math

import librosa
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from wavegen.audio.features import PRESETS
from wavegen.audio.spectral import LogMelSpectrogram
from wavegen.errors import CheckpointError, ConfigError, UsageError
from wavegen.importers.melgan_official import import_melgan_official
from wavegen.models.gantts import (
    GANTTS_WINDOWS,
    RandomWindowDiscriminators,
    gantts_window_sizes,
)
from wavegen.models.melgan import (
    MelGANConfig,
    MelGANGenerator,
    MelGANMultiScaleDiscriminator,
)
from wavegen.nn.adversarial import (
    DiscriminatorSet,
    discriminator_loss,
    feature_matching_loss,
    generator_adversarial_loss,
)
from wavegen.nn.weight_norm import has_weight_norm

SMALL_RWD = (4, 8)


def small_generator(ratios=(8, 8, 2, 2), num_mels=8, ngf=2, n_res=2) -> MelGANGenerator:
    config = MelGANConfig(num_mels=num_mels, ratios=ratios, ngf=ngf, n_residual_layers=n_res,
                          hop_length=math.prod(ratios))
    return MelGANGenerator(config)


# ----------------------------------------------------------------------------- generator
@pytest.mark.parametrize("ratios", [(8, 8, 2, 2), (8, 8, 4), (5, 5, 3, 4), (4, 4, 4, 4),
                                    (8, 5, 3, 2), (3, 3)])
def test_generator_output_is_frames_times_hop(ratios):
    torch.manual_seed(0)
    gen = small_generator(ratios, n_res=3)
    for frames in (gen.config.min_frames, 7):
        out = gen(torch.randn(2, 8, frames))
        assert out.shape == (2, 1, frames * math.prod(ratios))
        assert out.abs().max() < 1


def test_config_checks_and_round_trip():
    with pytest.raises(ConfigError, match=r"= 256 .*hop_length \(300\)"):
        MelGANConfig(ratios=(8, 8, 2, 2), hop_length=300)
    with pytest.raises(ConfigError, match=">= 2"):
        MelGANConfig(ratios=(256, 1), hop_length=256)
    config = MelGANConfig(ratios=(5, 5, 3, 4), hop_length=300, ngf=16)
    again = MelGANConfig.from_dict(config.to_dict())
    assert again == config and again.ratios == (5, 5, 3, 4)
    with pytest.raises(ConfigError, match="unknown"):
        MelGANConfig.from_dict({"hop": 256})
    assert MelGANConfig().hop_length == 256
    gen = small_generator()
    with pytest.raises(UsageError, match="mel"):
        gen(torch.randn(1, 9, 10))
    with pytest.raises(UsageError, match="frames"):
        gen(torch.randn(1, 8, 2))


def test_official_parameter_layout():
    names = set(MelGANGenerator(MelGANConfig()).state_dict())
    for key in ("model.1.parametrizations.weight.original0", "model.3.parametrizations.weight.original1",
                "model.4.block.2.parametrizations.weight.original0", "model.6.shortcut.bias",
                "model.24.parametrizations.weight.original1"):
        assert key in names


def test_folding_weight_norm_keeps_outputs():
    torch.manual_seed(1)
    gen = small_generator((5, 5, 3, 4), ngf=4)
    mel = torch.randn(2, 8, 6)
    with torch.no_grad():
        before = gen(mel)
    assert has_weight_norm(gen)
    gen.inference()
    assert not has_weight_norm(gen) and not gen.training
    assert not any("parametrizations" in k for k in gen.state_dict())
    with torch.no_grad():
        after = gen(mel)
    torch.testing.assert_close(after, before, atol=1e-5, rtol=0)


# ----------------------------------------------------------------------------- MSD
def test_multiscale_discriminator_outputs():
    torch.manual_seed(2)
    disc = MelGANMultiScaleDiscriminator(num_D=3, ndf=4, n_layers=3, downsampling_factor=4)
    real, fake = torch.randn(2, 1, 2048), torch.randn(2, 1, 2048)
    r_out, f_out = disc(real, fake, mel=torch.randn(2, 8, 8))
    assert len(r_out) == len(f_out) == 3
    for scale, out in enumerate(r_out):
        length = 2048 // 2 ** scale
        assert [tuple(f.shape) for f in out.features] == [
            (2, 4, length), (2, 16, length // 4), (2, 64, length // 16), (2, 256, length // 64),
            (2, 512, length // 64)]
        assert out.score.shape == (2, 1, length // 64)
    # One joint pass equals separate passes.
    none, alone = disc(None, fake)
    assert none == [] and len(alone) == 3
    for a, b in zip(alone, f_out):
        torch.testing.assert_close(a.score, b.score, atol=1e-5, rtol=1e-5)
    with pytest.raises(ConfigError, match="groups"):
        MelGANMultiScaleDiscriminator(ndf=6)


# ----------------------------------------------------------------------------- RWDs
def test_window_sizes_scale_with_rate():
    assert gantts_window_sizes(24000, 120) == GANTTS_WINDOWS
    assert gantts_window_sizes(22050, 256) == (256, 512, 768, 1792, 3328)
    assert gantts_window_sizes(16000, 256) == (256, 512, 768, 1280, 2304)
    assert gantts_window_sizes(16000, 160) == (160, 320, 640, 1280, 2400)
    for sr, hop in ((16000, 256), (22050, 256), (24000, 256), (24000, 300), (44100, 512)):
        sizes = gantts_window_sizes(sr, hop)
        assert all(s % hop == 0 for s in sizes) and list(sizes) == sorted(set(sizes))
        # The paper's durations to the nearest hop (at least one hop), unless a size had to
        # be bumped one hop past its predecessor.
        for i, (size, paper) in enumerate(zip(sizes, GANTTS_WINDOWS)):
            target = max(paper * sr / 24000, hop)
            bumped = i > 0 and size == sizes[i - 1] + hop
            assert abs(size - target) <= hop / 2 + 1e-9 or bumped, (sr, hop, sizes)
    disc = RandomWindowDiscriminators(80, 256, 22050, channels=SMALL_RWD)
    assert disc.window_sizes == (256, 512, 768, 1792, 3328) and disc.base_length == 256
    with pytest.raises(ConfigError, match="multiples"):
        RandomWindowDiscriminators(80, 256, 22050, window_sizes=(300,))


def test_rwd_default_set_and_protocol():
    torch.manual_seed(3)
    disc = RandomWindowDiscriminators(16, 120, 24000, channels=SMALL_RWD)
    assert len(disc.specs) == 10
    assert [(s.window, s.conditional) for s in disc.specs][:2] == [(240, True), (240, False)]
    assert sum(s.conditional for s in disc.specs) == 5
    # Paper layout at 24 kHz / hop 120: windows reshaped to 240 steps, conditional critics
    # downsampled to the frame rate.
    assert [s.reshape for s in disc.specs[::2]] == [1, 2, 4, 8, 15]
    assert all(s.cond_step == 120 for s in disc.specs if s.conditional)
    x = torch.randn(3, 1, 120 * 40)
    mel = torch.randn(3, 16, 40)
    r_out, f_out = disc(x, torch.randn_like(x), mel)
    assert len(r_out) == len(f_out) == 10
    for out in r_out:
        assert out.score.shape == (3, 1) and len(out.features) >= 4
    with pytest.raises(UsageError, match="mel"):
        disc(x, x)
    with pytest.raises(UsageError, match="needs 30 mel frames"):
        disc(x[..., :3000], None, mel[..., :25])
    uncond = RandomWindowDiscriminators(16, 120, 24000, conditional=False, channels=SMALL_RWD)
    r_only, f_none = uncond(x, None)
    assert len(r_only) == 5 and f_none == []


def test_rwd_windows_inside_signal_and_aligned():
    disc = RandomWindowDiscriminators(8, 256, 22050, channels=SMALL_RWD)
    gen = torch.Generator().manual_seed(4)
    seen_last = set()
    for trial in range(200):
        frames = int(torch.randint(13, 20, (1,), generator=gen))
        extra = int(torch.randint(0, 256, (1,), generator=gen))
        num_samples = frames * 256 + extra
        offsets = disc.sample_offsets(5, num_samples, frames, generator=gen)
        for spec, off in zip(disc.specs, offsets):
            assert off.shape == (5,) and off.dtype == torch.int64
            assert int(off.min()) >= 0 and int((off + spec.window).max()) <= num_samples
            if spec.conditional:
                assert bool((off % 256 == 0).all())
                assert int((off // 256 + spec.window // 256).max()) <= frames
        if frames == 13:
            seen_last.update(int(o) for o in offsets[-2])
    # The largest conditional window (13 hops) fits exactly once in 13 frames.
    assert seen_last <= {0}
    # Every position is reachable: the 1-frame conditional window takes all 13 starts.
    starts = torch.cat([disc.sample_offsets(50, 13 * 256, 13, generator=gen)[0]
                        for _ in range(10)])
    assert set(starts.tolist()) == {256 * j for j in range(13)}


def test_rwd_same_windows_for_real_and_fake():
    torch.manual_seed(5)
    disc = RandomWindowDiscriminators(8, 256, 22050, channels=SMALL_RWD)
    x = torch.randn(2, 1, 256 * 16)
    mel = torch.randn(2, 8, 16)
    r_out, f_out = disc(x, x.clone(), mel)
    for r, f in zip(r_out, f_out):
        torch.testing.assert_close(r.score, f.score, atol=1e-6, rtol=0)
        for a, b in zip(r.features, f.features):
            torch.testing.assert_close(a, b, atol=1e-6, rtol=0)
    # The windows are redrawn on every call, reproducibly with a seeded generator.
    first = disc.last_offsets
    disc(x, None, mel)
    assert any(not torch.equal(a, b) for a, b in zip(first, disc.last_offsets))
    disc(x, None, mel, generator=torch.Generator().manual_seed(9))
    a = disc.last_offsets
    disc(x, None, mel, generator=torch.Generator().manual_seed(9))
    assert all(torch.equal(p, q) for p, q in zip(a, disc.last_offsets))


def test_rwd_sees_only_its_window_and_its_frames():
    torch.manual_seed(6)
    disc = RandomWindowDiscriminators(8, 256, 22050, channels=SMALL_RWD, norm="weight").eval()
    x = torch.randn(1, 1, 256 * 20)
    mel = torch.randn(1, 8, 20)
    offsets = [torch.tensor([256 * 5]) if s.conditional else torch.tensor([256 * 5 + 7])
               for s in disc.specs]
    base, _ = disc(x, None, mel, offsets=offsets)
    x2 = x.clone()
    x2[..., :256 * 5] += 1.0  # before every window
    mel2 = mel.clone()
    mel2[..., :5] += 1.0  # frames before every conditional window
    same, _ = disc(x2, None, mel2, offsets=offsets)
    for a, b in zip(base, same):
        torch.testing.assert_close(a.score, b.score, atol=0, rtol=0)
    for spec, b_out in zip(disc.specs, base):
        if not spec.conditional:
            continue
        n = spec.window // 256
        for frame, expect_change in ((5, True), (5 + n - 1, True), (5 + n, False)):
            mel3 = mel.clone()
            mel3[..., frame] += 1.0
            out, _ = disc(x, None, mel3, offsets=offsets)
            changed = not torch.equal(out[disc.specs.index(spec)].score, b_out.score)
            assert changed == expect_change, (spec, frame)
    with pytest.raises(UsageError, match="multiples of the hop"):
        disc(x, None, mel, offsets=[o + 1 for o in offsets])
    with pytest.raises(UsageError, match="outside"):
        disc(x, None, mel, offsets=[o + 256 * 19 for o in offsets])


# ----------------------------------------------------------------------------- losses
@pytest.mark.parametrize("kind", ["lsgan", "hinge"])
def test_all_losses_have_finite_gradients(kind):
    torch.manual_seed(7)
    gen = small_generator((4, 4), ngf=4)
    disc = DiscriminatorSet({
        "msd": MelGANMultiScaleDiscriminator(num_D=2, ndf=4, n_layers=2),
        "rwd": RandomWindowDiscriminators(8, 16, 16000, window_sizes=(32, 64, 128),
                                          channels=SMALL_RWD),
    })
    mel = torch.randn(2, 8, 24)
    real = 0.5 * torch.randn(2, 1, 24 * 16)
    fake = gen(mel)
    # Discriminator step on detached fake audio.
    r_out, f_out = disc(real, fake.detach(), mel)
    assert len(r_out) == 2 + 6
    d_loss = discriminator_loss(r_out, f_out, kind)
    d_loss.backward()
    d_grads = [p.grad for p in disc.parameters()]
    assert all(g is not None and torch.isfinite(g).all() for g in d_grads)
    assert torch.isfinite(d_loss) and any(g.abs().sum() > 0 for g in d_grads)
    assert all(p.grad is None for p in gen.parameters())
    # Generator step: adversarial + feature matching through the (fixed) critics.
    disc.zero_grad()
    r_out, f_out = disc(real, fake, mel)
    g_loss = generator_adversarial_loss(f_out, kind) + feature_matching_loss(r_out, f_out)
    g_loss.backward()
    assert torch.isfinite(g_loss)
    g_grads = [p.grad for p in gen.parameters()]
    assert all(g is not None and torch.isfinite(g).all() for g in g_grads)
    assert sum(float(g.abs().sum()) for g in g_grads) > 0


# ----------------------------------------------------------------------------- importer
def _wn(g: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    dims = tuple(range(1, v.dim()))
    return g * v / v.pow(2).sum(dim=dims, keepdim=True).sqrt()


def official_layout(n_mels: int, ngf: int, n_res: int, ratios) -> list[tuple]:
    """Index and kind of every layer of the official ``Generator.model`` Sequential."""
    layers = [(0, "pad", 3), (1, "conv", (n_mels, 2 ** len(ratios) * ngf, 7, 1))]
    i, mult = 2, 2 ** len(ratios)
    for r in ratios:
        layers += [(i, "lrelu", None), (i + 1, "up", (mult * ngf, mult * ngf // 2, r))]
        i += 2
        for j in range(n_res):
            layers.append((i, "res", (mult * ngf // 2, 3 ** j)))
            i += 1
        mult //= 2
    layers += [(i, "lrelu", None), (i + 1, "pad", 3), (i + 2, "conv", (ngf, 1, 7, 1)),
               (i + 3, "tanh", None)]
    return layers


def official_state(n_mels: int, ngf: int, n_res: int, ratios, seed: int) -> dict:
    """A random state dict with the official keys (old weight-norm hooks: weight_g, weight_v)."""
    gen = torch.Generator().manual_seed(seed)

    def wn_conv(prefix, shape, gain, transposed=False):
        # Weight norm over every dim but 0: the output channels of a conv, the input
        # channels of a transposed conv (weights [in, out, kernel]).
        return {f"{prefix}.weight_g": gain * (0.8 + 0.4 * torch.rand(shape[0], 1, 1, generator=gen)),
                f"{prefix}.weight_v": torch.randn(*shape, generator=gen),
                f"{prefix}.bias": 0.1 * torch.randn(shape[1] if transposed else shape[0],
                                                    generator=gen)}

    state = {}
    for i, kind, arg in official_layout(n_mels, ngf, n_res, ratios):
        if kind == "conv":
            cin, cout, k, _ = arg
            state.update(wn_conv(f"model.{i}", (cout, cin, k), 1.0 if cout > 1 else 2.0))
        elif kind == "up":
            cin, cout, r = arg
            state.update(wn_conv(f"model.{i}", (cin, cout, 2 * r), 2.0, transposed=True))
        elif kind == "res":
            dim, _ = arg
            state.update(wn_conv(f"model.{i}.block.2", (dim, dim, 3), 1.5))
            state.update(wn_conv(f"model.{i}.block.4", (dim, dim, 1), 0.7))
            state.update(wn_conv(f"model.{i}.shortcut", (dim, dim, 1), 1.0))
    # Scale the last conv so that the pre-tanh signal has a std of about 0.5: a comparison of
    # saturated (or silent) outputs would prove little.
    last = f"model.{official_layout(n_mels, ngf, n_res, ratios)[-2][0]}"
    mel = torch.randn(2, n_mels, 6, generator=gen)
    pre = official_forward(state, mel, n_mels, ngf, n_res, ratios, pre_tanh=True)
    scale = 0.5 / float(pre.std())
    state[f"{last}.weight_g"] = state[f"{last}.weight_g"] * scale
    state[f"{last}.bias"] = state[f"{last}.bias"] * scale
    return state


def official_forward(state: dict, mel: torch.Tensor, n_mels: int, ngf: int, n_res: int,
                     ratios, pre_tanh: bool = False) -> torch.Tensor:
    """The official generator written with torch.nn.functional from the raw state dict."""
    def w(prefix):
        return _wn(state[f"{prefix}.weight_g"], state[f"{prefix}.weight_v"])

    x = mel
    for i, kind, arg in official_layout(n_mels, ngf, n_res, ratios):
        p = f"model.{i}"
        if kind == "pad":
            x = F.pad(x, (arg, arg), mode="reflect")
        elif kind == "conv":
            x = F.conv1d(x, w(p), state[f"{p}.bias"])
        elif kind == "lrelu":
            x = F.leaky_relu(x, 0.2)
        elif kind == "tanh" and not pre_tanh:
            x = torch.tanh(x)
        elif kind == "up":
            r = arg[2]
            x = F.conv_transpose1d(x, w(p), state[f"{p}.bias"], stride=r,
                                   padding=r // 2 + r % 2, output_padding=r % 2)
        elif kind == "res":
            d = arg[1]
            h = F.leaky_relu(x, 0.2)
            h = F.conv1d(F.pad(h, (d, d), mode="reflect"), w(f"{p}.block.2"),
                         state[f"{p}.block.2.bias"], dilation=d)
            h = F.conv1d(F.leaky_relu(h, 0.2), w(f"{p}.block.4"), state[f"{p}.block.4.bias"])
            x = F.conv1d(x, w(f"{p}.shortcut"), state[f"{p}.shortcut.bias"]) + h
    return x


@pytest.mark.parametrize("ratios,n_mels", [((8, 8, 2, 2), 80), ((5, 5, 3, 4), 20)])
def test_import_official_checkpoint(tmp_path, ratios, n_mels):
    ngf, n_res = 2, 3
    state = official_state(n_mels, ngf, n_res, ratios, seed=11)
    assert "model.1.weight_g" in state and "model.4.block.2.weight_v" in state
    assert "model.4.shortcut.weight_g" in state
    path = tmp_path / "best_netG.pt"
    torch.save(state, path)
    model, config, features = import_melgan_official(path, n_mels=n_mels, ngf=ngf,
                                                     n_residual_layers=n_res, ratios=ratios)
    assert config.hop_length == math.prod(ratios) == features.hop_length
    if ratios == (8, 8, 2, 2):
        assert features is PRESETS["melgan-22k"]
    assert features.n_mels == n_mels
    mel = torch.randn(2, n_mels, 6, generator=torch.Generator().manual_seed(12))
    with torch.no_grad():
        expected = official_forward(state, mel, n_mels, ngf, n_res, ratios)
        got = model(mel)
        torch.testing.assert_close(got, expected, atol=1e-5, rtol=0)
        torch.testing.assert_close(model.inference()(mel), expected, atol=1e-5, rtol=0)
    assert expected.std() > 0.05  # not a saturated or silent comparison


def test_import_errors(tmp_path):
    state = official_state(8, 2, 1, (4, 4), seed=13)
    good = tmp_path / "g.pt"
    torch.save(state, good)
    import_melgan_official(good, n_mels=8, ngf=2, n_residual_layers=1, ratios=(4, 4))
    # A DataParallel prefix is fine.
    prefixed = tmp_path / "dp.pt"
    torch.save({f"module.{k}": v for k, v in state.items()}, prefixed)
    import_melgan_official(prefixed, n_mels=8, ngf=2, n_residual_layers=1, ratios=(4, 4))
    corrupt = tmp_path / "corrupt.pt"
    corrupt.write_bytes(good.read_bytes()[:200])
    with pytest.raises(CheckpointError, match="cannot read") as err:
        import_melgan_official(corrupt, n_mels=8, ngf=2, n_residual_layers=1, ratios=(4, 4))
    assert "\n" not in str(err.value)
    with pytest.raises(CheckpointError, match=r"missing model\.\d+\..*unexpected model\.\d+\."):
        import_melgan_official(good, n_mels=8, ngf=2, n_residual_layers=2, ratios=(4, 4))
    with pytest.raises(CheckpointError, match="shape mismatch .*8 mels"):
        import_melgan_official(good, n_mels=10, ngf=2, n_residual_layers=1, ratios=(4, 4))
    odd = tmp_path / "list.pt"
    torch.save([1, 2], odd)
    with pytest.raises(CheckpointError, match="not a MelGAN"):
        import_melgan_official(odd)


def test_melgan_preset_is_the_official_audio2mel():
    """``melgan-22k`` equals descriptinc's Audio2Mel, written out here."""
    config = PRESETS["melgan-22k"]
    audio = 0.3 * torch.randn(1, 1, 22050 // 4, generator=torch.Generator().manual_seed(14))
    p = (1024 - 256) // 2
    padded = F.pad(audio, (p, p), mode="reflect").squeeze(1)
    fft = torch.stft(padded, n_fft=1024, hop_length=256, win_length=1024,
                     window=torch.hann_window(1024), center=False, return_complex=True)
    magnitude = torch.sqrt(fft.real ** 2 + fft.imag ** 2)
    basis = torch.from_numpy(librosa.filters.mel(sr=22050, n_fft=1024, n_mels=80, fmin=0.0,
                                                 fmax=None).astype(np.float32))
    expected = torch.log10(torch.clamp(basis @ magnitude, min=1e-5))
    got = LogMelSpectrogram(config)(audio)
    assert got.shape == expected.shape == (1, 80, audio.shape[-1] // 256)
    torch.testing.assert_close(got, expected, atol=1e-4, rtol=1e-4)
