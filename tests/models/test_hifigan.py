"""HiFi-GAN: generator shapes and configs, weight-norm folding, MPD/MSD, losses, importer."""

from __future__ import annotations

import json
import math

import pytest
import torch
import torch.nn.functional as F

from wavegen.audio.features import PRESETS
from wavegen.errors import CheckpointError, ConfigError, UsageError
from wavegen.importers import import_hifigan_official
from wavegen.models.hifigan import (HIFIGAN_PRESETS, HiFiGANConfig, HiFiGANGenerator,
                                    MultiPeriodDiscriminator, MultiScaleDiscriminator, describe,
                                    hifigan_discriminator, prepare_for_inference,
                                    suggest_upsampling)
from wavegen.nn.adversarial import (discriminator_loss, feature_matching_loss,
                                    generator_adversarial_loss)
from wavegen.nn.weight_norm import has_weight_norm

TINY_MPD = (4, 8, 8, 16, 16)
TINY_MSD = (16, 16, 32, 32, 32, 32, 16)


def tiny(**overrides) -> HiFiGANConfig:
    values = dict(num_mels=8, upsample_rates=(4, 4), upsample_kernel_sizes=(8, 8),
                  upsample_initial_channel=16, resblock_kernel_sizes=(3, 5),
                  resblock_dilation_sizes=((1, 3, 5), (1, 3, 5)), hop_length=16)
    values.update(overrides)
    return HiFiGANConfig(**values)


# --------------------------------------------------------------------------- generator
@pytest.mark.parametrize("name", ["v1", "v2", "v3"])
def test_presets_output_frames_times_hop(name):
    torch.manual_seed(0)
    config = HiFiGANConfig.preset(name)
    model = HiFiGANGenerator(config)
    with torch.no_grad():
        audio = model(torch.randn(1, 80, 4))
    assert audio.shape == (1, 1, 4 * 256)
    assert audio.abs().max() <= 1


@pytest.mark.parametrize("rates, kernels, resblock", [
    ((5, 5, 4, 3), (10, 10, 8, 6), "1"),   # hop 300 (24 kHz, 12.5 ms)
    ((5, 4, 4, 3), (10, 8, 8, 6), "2"),    # hop 240
    ((4, 4, 4, 4), (9, 8, 7, 8), "2"),     # k - u odd: one sample trimmed per stage
    ((8, 8, 4), (8, 8, 4), "2"),           # kernel = rate, no padding
    ((4, 4, 1), (8, 8, 2), "1"),           # a stride-1 stage with k - u odd
])
def test_explicit_rates_give_exact_lengths(rates, kernels, resblock):
    hop = math.prod(rates)
    dil = ((1, 3, 5), (1, 3, 5)) if resblock == "1" else ((1, 2), (2, 6))
    config = HiFiGANConfig(num_mels=8, upsample_rates=rates, upsample_kernel_sizes=kernels,
                           upsample_initial_channel=32, resblock=resblock,
                           resblock_kernel_sizes=(3, 5), resblock_dilation_sizes=dil,
                           hop_length=hop, sample_rate=24000)
    model = HiFiGANGenerator(config)
    for frames in (1, 3):
        with torch.no_grad():
            assert model(torch.randn(2, 8, frames)).shape == (2, 1, frames * hop)


def test_hop_must_equal_product_of_rates():
    with pytest.raises(ConfigError, match=r"256 must equal hop_length \(300\).*\[5, 5, 4, 3\]"):
        HiFiGANConfig.preset("v1", hop_length=300)
    with pytest.raises(ConfigError, match="320"):
        HiFiGANConfig(hop_length=320)
    config = HiFiGANConfig.preset("v1", hop_length=300, sample_rate=24000,
                                  upsample_rates=(5, 5, 4, 3), upsample_kernel_sizes=(10, 10, 8, 6))
    assert config.upsample_initial_channel == 512 and config.hop_length == 300
    assert suggest_upsampling(300) == ((5, 5, 4, 3), (10, 10, 8, 6))
    assert suggest_upsampling(240) == ((5, 4, 4, 3), (10, 8, 8, 6))
    assert math.prod(suggest_upsampling(320, 3)[0]) == 320


@pytest.mark.parametrize("overrides, match", [
    (dict(upsample_kernel_sizes=(8,)), "entries"),
    (dict(upsample_kernel_sizes=(8, 3)), "smaller than its rate"),
    (dict(resblock="3"), "resblock"),
    (dict(resblock_dilation_sizes=((1,),)), "entries"),
    (dict(upsample_initial_channel=2), "halved"),
])
def test_inconsistent_configs_are_config_errors(overrides, match):
    with pytest.raises(ConfigError, match=match):
        tiny(**overrides)


def test_config_round_trip_and_presets():
    for name, config in HIFIGAN_PRESETS.items():
        data = json.loads(json.dumps(config.to_dict()))
        assert HiFiGANConfig.from_dict(data) == config
    with pytest.raises(ConfigError, match="unknown key"):
        HiFiGANConfig.from_dict({"channels": 3})
    with pytest.raises(ConfigError, match="unknown HiFi-GAN preset"):
        HiFiGANConfig.preset("v4")
    v3 = HiFiGANConfig.preset("v3")
    assert v3.resblock == "2" and v3.resblock_dilation_sizes == ((1, 2), (2, 6), (3, 12))
    # Table 1 of the paper: 13.92M, 0.92M, 1.46M parameters (truncated to 2 decimals).
    for name, millions in (("v1", 13.92), ("v2", 0.92), ("v3", 1.46)):
        assert math.floor(HIFIGAN_PRESETS[name].num_parameters() / 1e4) / 100 == millions
    text = describe(HIFIGAN_PRESETS["v1"])
    assert "V1" in text and "8x8x2x2" in text and "13.93M" in text and "\n" not in text


def test_parameter_count_matches_the_module():
    config = HIFIGAN_PRESETS["v2"]
    model = prepare_for_inference(HiFiGANGenerator(config))
    assert sum(p.numel() for p in model.parameters()) == config.num_parameters()


def test_folding_weight_norm_keeps_outputs():
    torch.manual_seed(0)
    model = HiFiGANGenerator(tiny()).eval()
    mel = torch.randn(2, 8, 5)
    with torch.no_grad():
        before = model(mel)
        assert has_weight_norm(model)
        assert model.inference() is model and not model.training
        after = model(mel)
    assert not has_weight_norm(model)
    assert not any("parametrizations" in k for k in model.state_dict())
    torch.testing.assert_close(after, before, atol=1e-5, rtol=0)


@pytest.mark.parametrize("resblock", ["1", "2"])
def test_cpu_inference_runs_channels_last_with_the_same_outputs(resblock):
    """Folded, eval, no autograd on the CPU: channels-last convolutions, in-place
    activations and sums (wavegen.nn.conv_layout); the numbers of the plain path. The
    second stage's odd kernel - rate trims a sample, in the channels-last layout too."""
    from wavegen.nn.conv_layout import ChannelsLast, inference_layout

    torch.manual_seed(0)
    dilations = ((1, 3, 5), (1, 3, 5)) if resblock == "1" else ((1, 3), (1, 3))
    model = HiFiGANGenerator(tiny(upsample_rates=(4, 3), upsample_kernel_sizes=(8, 4),
                                  hop_length=12, resblock=resblock,
                                  resblock_dilation_sizes=dilations)).inference()
    mel = torch.randn(2, 8, 9)
    with torch.enable_grad():
        plain = model(mel)  # autograd on: the plain layout
    with torch.no_grad():
        assert isinstance(inference_layout(model, mel, model._channels_last), ChannelsLast)
        fast = model(mel)
    assert fast.shape == (2, 1, 9 * 12) and fast.is_contiguous()
    assert plain.abs().max() > 0.05  # not a comparison of near-zero outputs
    torch.testing.assert_close(fast, plain.detach(), rtol=1e-5, atol=1e-6)


def test_generator_refuses_wrong_mel_shape():
    model = HiFiGANGenerator(tiny())
    with pytest.raises(UsageError, match=r"\[batch, 8, frames\]"):
        model(torch.randn(1, 80, 4))


def test_module_names_are_the_official_ones():
    model = HiFiGANGenerator(tiny(resblock_kernel_sizes=(3, 5, 7),
                                  resblock_dilation_sizes=((1, 3, 5),) * 3))
    keys = set(model.state_dict())
    for key in ("conv_pre.bias", "ups.1.parametrizations.weight.original0",
                "resblocks.5.convs1.2.parametrizations.weight.original1",
                "resblocks.0.convs2.0.bias", "conv_post.parametrizations.weight.original1"):
        assert key in keys
    assert len(model.resblocks) == 2 * 3


# --------------------------------------------------------------------------- discriminators
def conv_len(length: int, kernel: int, stride: int, pad: int) -> int:
    return (length + 2 * pad - kernel) // stride + 1


def test_mpd_feature_maps_and_scores():
    mpd = MultiPeriodDiscriminator(channels=TINY_MPD)
    t = 1000
    real, fake = torch.randn(2, 1, t), torch.randn(2, 1, t)
    real_out, fake_out = mpd(real, fake)
    assert len(real_out) == len(fake_out) == 5
    for p, out in zip((2, 3, 5, 7, 11), fake_out):
        assert len(out.features) == 6
        h = math.ceil(t / p)
        for i, fmap in enumerate(out.features[:5]):
            h = conv_len(h, 5, 3 if i < 4 else 1, 2)
            assert fmap.shape == (2, TINY_MPD[i], h, p)
        assert out.features[5].shape == (2, 1, h, p)
        assert out.score.shape == (2, h * p)


def test_msd_feature_maps_and_scores():
    msd = MultiScaleDiscriminator(channels=TINY_MSD)
    t = 1000
    real_out, fake_out = msd(torch.randn(3, 1, t), torch.randn(3, 1, t))
    assert len(real_out) == len(fake_out) == 3
    length = t
    for scale, out in enumerate(real_out):
        if scale:
            length = conv_len(length, 4, 2, 2)  # AvgPool1d(4, 2, padding=2)
        assert len(out.features) == 8
        n = length
        for (k, s), c, fmap in zip(((15, 1), (41, 2), (41, 2), (41, 4), (41, 4), (41, 1), (5, 1)),
                                   TINY_MSD, out.features):
            n = conv_len(n, k, s, k // 2)
            assert fmap.shape == (3, c, n)
        assert out.features[7].shape == (3, 1, n) and out.score.shape == (3, n)


def test_discriminators_default_to_official_widths():
    mpd, msd = MultiPeriodDiscriminator(), MultiScaleDiscriminator()
    assert [c.weight.shape[0] for c in mpd.discriminators[0].convs] == [32, 128, 512, 1024, 1024]
    assert [c.groups for c in msd.discriminators[1].convs] == [1, 4, 16, 16, 16, 16, 1]
    assert [c.weight.shape[0] for c in msd.discriminators[2].convs] == \
        [128, 128, 256, 512, 1024, 1024, 1024]
    # spectral norm on the first scale only
    assert "original" in dict(msd.discriminators[0].convs[0].parametrizations.weight.named_parameters())
    assert "original0" in dict(msd.discriminators[1].convs[0].parametrizations.weight.named_parameters())
    with torch.no_grad():
        real_out, fake_out = hifigan_discriminator()(torch.randn(1, 1, 300), None)
    assert len(real_out) == 8 and fake_out == []


@pytest.mark.parametrize("make", [lambda: MultiPeriodDiscriminator(channels=TINY_MPD),
                                  lambda: MultiScaleDiscriminator(channels=TINY_MSD)])
def test_real_or_fake_may_be_none_and_batching_changes_nothing(make):
    torch.manual_seed(0)
    disc = make().eval()  # eval: spectral norm does no power iteration
    real, fake = torch.randn(2, 1, 700), torch.randn(2, 1, 700)
    both_real, both_fake = disc(real, fake)
    only_real, none = disc(real, None)
    none2, only_fake = disc(None, fake)
    assert none == [] and none2 == []
    for joint, alone in zip(both_real + both_fake, only_real + only_fake):
        torch.testing.assert_close(joint.score, alone.score, atol=1e-5, rtol=1e-5)
        for a, b in zip(joint.features, alone.features):
            torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)
    # One behaviour for every discriminator (wavegen.nn.adversarial.run_real_fake): unequal
    # shapes and no audio at all are errors; different lengths are scored in two calls.
    with pytest.raises(UsageError, match="same shape"):
        disc(real, fake[..., :300])
    with pytest.raises(UsageError, match="both are None"):
        disc(None, None)
    (r, _), (_, f) = disc(real, None), disc(None, fake[..., :300])
    assert len(r) == len(f) and r[0].score.shape != f[0].score.shape


def test_msd_groups_must_divide_widths():
    with pytest.raises(ConfigError, match="groups"):
        MultiScaleDiscriminator(channels=(8, 6, 32, 32, 32, 32, 16))
    with pytest.raises(ConfigError, match="5 positive"):
        MultiPeriodDiscriminator(channels=(4, 8))


@pytest.mark.parametrize("kind", ["lsgan", "hinge"])
def test_losses_have_finite_gradients_everywhere(kind):
    torch.manual_seed(0)
    gen = HiFiGANGenerator(tiny())
    disc = hifigan_discriminator(mpd_channels=TINY_MPD, msd_channels=TINY_MSD)
    mel, real = torch.randn(2, 8, 12), torch.rand(2, 1, 12 * 16) * 2 - 1
    fake = gen(mel)

    real_out, fake_out = disc(real, fake.detach(), mel)
    assert len(real_out) == 8
    discriminator_loss(real_out, fake_out, kind).backward()
    for name, p in disc.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), name
    assert any(p.grad.abs().sum() > 0 for p in disc.parameters())

    disc.requires_grad_(False)
    real_out, fake_out = disc(real, fake, mel)
    loss = generator_adversarial_loss(fake_out, kind) + 2 * feature_matching_loss(real_out, fake_out)
    assert torch.isfinite(loss)
    loss.backward()
    for name, p in gen.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), name
    assert gen.conv_pre.parametrizations.weight.original1.grad.abs().sum() > 0


# --------------------------------------------------------------------------- importer
def _official_weight(state, name):
    """Weight norm as torch.nn.utils.weight_norm(dim=0): g * v / |v| over all dims but 0."""
    g, v = state[f"{name}.weight_g"], state[f"{name}.weight_v"]
    return g * v / v.pow(2).sum(dim=tuple(range(1, v.dim())), keepdim=True).sqrt()


def official_forward(state, h, mel):
    """jik876/hifi-gan's Generator.forward written with torch.nn.functional on its keys."""
    def conv(x, name, dilation=1, padding=0):
        return F.conv1d(x, _official_weight(state, name), state[f"{name}.bias"],
                        dilation=dilation, padding=padding)

    x = conv(mel, "conv_pre", padding=3)
    num_kernels = len(h["resblock_kernel_sizes"])
    for i, (u, k) in enumerate(zip(h["upsample_rates"], h["upsample_kernel_sizes"])):
        x = F.leaky_relu(x, 0.1)
        x = F.conv_transpose1d(x, _official_weight(state, f"ups.{i}"), state[f"ups.{i}.bias"],
                               stride=u, padding=(k - u) // 2)
        xs = None
        for j, (rk, dil) in enumerate(zip(h["resblock_kernel_sizes"], h["resblock_dilation_sizes"])):
            name, y = f"resblocks.{i * num_kernels + j}", x
            for m, d in enumerate(dil):
                if h["resblock"] == "1":
                    t = conv(F.leaky_relu(y, 0.1), f"{name}.convs1.{m}", d, (rk * d - d) // 2)
                    t = conv(F.leaky_relu(t, 0.1), f"{name}.convs2.{m}", 1, (rk - 1) // 2)
                else:
                    t = conv(F.leaky_relu(y, 0.1), f"{name}.convs.{m}", d, (rk * d - d) // 2)
                y = t + y
            xs = y if xs is None else xs + y
        x = xs / num_kernels
    x = conv(F.leaky_relu(x), "conv_post", padding=3)
    return torch.tanh(x)


def official_state(h, seed=0):
    """A random state dict laid out like an official ``generator`` entry."""
    gen = torch.Generator().manual_seed(seed)
    state = {}

    def add(name, shape_v, bias):
        state[f"{name}.weight_g"] = 0.2 + 0.6 * torch.rand(shape_v[0], 1, 1, generator=gen)
        state[f"{name}.weight_v"] = torch.randn(*shape_v, generator=gen)
        state[f"{name}.bias"] = 0.1 * torch.randn(bias, generator=gen)

    ch = h["upsample_initial_channel"]
    add("conv_pre", (ch, h["num_mels"], 7), ch)
    n = 0
    for i, k in enumerate(h["upsample_kernel_sizes"]):
        cin, cout = ch // 2 ** i, ch // 2 ** (i + 1)
        add(f"ups.{i}", (cin, cout, k), cout)  # ConvTranspose1d: weight [in, out, k], g over in
        for rk, dil in zip(h["resblock_kernel_sizes"], h["resblock_dilation_sizes"]):
            for m in range(len(dil)):
                if h["resblock"] == "1":
                    add(f"resblocks.{n}.convs1.{m}", (cout, cout, rk), cout)
                    add(f"resblocks.{n}.convs2.{m}", (cout, cout, rk), cout)
                else:
                    add(f"resblocks.{n}.convs.{m}", (cout, cout, rk), cout)
            n += 1
    add("conv_post", (1, ch // 2 ** len(h["upsample_rates"]), 7), 1)
    return state


def official_json(**overrides):
    h = {"resblock": "1", "num_gpus": 0, "batch_size": 16, "learning_rate": 0.0002,
         "upsample_rates": [4, 5, 3], "upsample_kernel_sizes": [8, 11, 7],
         "upsample_initial_channel": 32, "resblock_kernel_sizes": [3, 7],
         "resblock_dilation_sizes": [[1, 3, 5], [1, 3, 5]], "segment_size": 8192,
         "num_mels": 20, "num_freq": 1025, "n_fft": 1024, "hop_size": 60, "win_size": 1024,
         "sampling_rate": 24000, "fmin": 0, "fmax": 12000, "fmax_for_loss": None}
    h.update(overrides)
    return h


@pytest.mark.parametrize("overrides", [
    {},
    {"resblock": "2", "resblock_dilation_sizes": [[1, 2], [2, 6]]},
])
def test_import_matches_official_forward(tmp_path, overrides):
    h = official_json(**overrides)
    state = official_state(h)
    ckpt, cfg = tmp_path / "g_00100000", tmp_path / "config.json"
    torch.save({"generator": state}, ckpt)
    cfg.write_text(json.dumps(h))
    model, config, features = import_hifigan_official(ckpt, cfg)
    assert config.hop_length == 60 and config.resblock == h["resblock"] and config.num_mels == 20
    assert (features.sample_rate, features.hop_length, features.n_mels, features.fmax) == \
        (24000, 60, 20, 12000.0)
    assert features.magnitude_eps == 1e-9 and features.padding == "hop_aligned"
    mel = torch.randn(2, 20, 6, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        expected = official_forward(state, h, mel)
        got = model(mel)
        assert (expected.abs() < 0.9).float().mean() > 0.5  # not a saturated comparison
        torch.testing.assert_close(got, expected, atol=1e-5, rtol=0)
        torch.testing.assert_close(model.inference()(mel), expected, atol=1e-5, rtol=0)


def test_import_preset_without_json_and_folded_checkpoints(tmp_path):
    h = {**HIFIGAN_PRESETS["v2"].to_dict()}
    state = official_state(h, seed=3)
    mel = torch.randn(1, 80, 3)
    with torch.no_grad():
        expected = official_forward(state, h, mel)
    ckpt = tmp_path / "g_v2"
    torch.save({"generator": state}, ckpt)
    model, config, features = import_hifigan_official(ckpt, preset="v2")
    assert config == HIFIGAN_PRESETS["v2"] and features is PRESETS["hifigan-22k"]
    with torch.no_grad():
        torch.testing.assert_close(model(mel), expected, atol=1e-5, rtol=0)
    # weight norm removed before saving (plain .weight keys), under a DDP "module." prefix
    folded = {}
    for key, value in state.items():
        if key.endswith(".weight_v"):
            folded["module." + key[:-2]] = _official_weight(state, key[:-len(".weight_v")])
        elif not key.endswith(".weight_g"):
            folded["module." + key] = value
    torch.save({"generator": folded}, ckpt)
    model, _, _ = import_hifigan_official(ckpt, preset="v2")
    with torch.no_grad():
        torch.testing.assert_close(model(mel), expected, atol=1e-5, rtol=0)


def test_official_v1_json_gives_the_hifigan_22k_front_end(tmp_path):
    h = official_json(**{"upsample_rates": [8, 8, 2, 2], "upsample_kernel_sizes": [16, 16, 4, 4],
                         "upsample_initial_channel": 512, "resblock_kernel_sizes": [3, 7, 11],
                         "resblock_dilation_sizes": [[1, 3, 5]] * 3, "num_mels": 80,
                         "hop_size": 256, "sampling_rate": 22050, "fmax": 8000})
    from wavegen.importers.hifigan_official import configs_from_official
    config, features = configs_from_official(h)
    assert config == HIFIGAN_PRESETS["v1"]
    assert features is PRESETS["hifigan-22k"]
    _, features = configs_from_official({**h, "fmax": None})
    assert features.fmax is None and features.differences(PRESETS["hifigan-22k"])
    with pytest.raises(ConfigError, match="hop_length"):
        configs_from_official({**h, "hop_size": 300})


def test_import_errors_are_one_line_checkpoint_errors(tmp_path):
    h = official_json()
    cfg = tmp_path / "config.json"
    cfg.write_text(json.dumps(h))
    state = official_state(h)
    bad = tmp_path / "bad"

    def fails(match, config_json=cfg, **kw):
        with pytest.raises(CheckpointError, match=match) as info:
            import_hifigan_official(bad, config_json, **kw)
        assert "\n" not in str(info.value)

    bad.write_bytes(b"\x00garbage" * 50)
    fails("cannot read")
    with pytest.raises(CheckpointError, match="cannot read"):
        import_hifigan_official(tmp_path / "missing", cfg)
    torch.save({"state": torch.zeros(1)}, bad)
    fails("not a HiFi-GAN generator checkpoint")
    torch.save({"mpd": {}, "msd": {}, "steps": 3}, bad)
    fails("discriminator")
    torch.save({"generator": {k: v for k, v in state.items() if k != "ups.1.weight_g"}}, bad)
    fails(r"missing ups\.1\.parametrizations\.weight\.original0")
    torch.save({"generator": {**state, "extra.weight_g": torch.ones(1)}}, bad)
    fails("unexpected extra")
    # a V2-shaped checkpoint loaded as V1 names the preset it looks like
    torch.save({"generator": official_state(HIFIGAN_PRESETS["v2"].to_dict())}, bad)
    fails("shape mismatch.*like preset 'v2'", config_json=None, preset="v1")
    cfg.write_text("{not json")
    torch.save({"generator": state}, bad)
    fails("invalid JSON")
