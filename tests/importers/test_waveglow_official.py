"""``wavegen import waveglow-official``: NVIDIA/waveglow checkpoints (whole pickled modules or
state dicts), checked against an independent reimplementation of the official network.

The classes below are named like the official ``glow.WaveGlow``, ``glow.WN`` and
``glow.Invertible1x1Conv`` and pickle as such (``__module__ = "glow"``); they are written
from the published network's description with plain ``torch.nn`` and the old weight-norm
hooks (so their pickles hold ``WeightNorm`` hook objects, as the real checkpoints do), and
use no wavegen code. A throwaway ``sys.modules["glow"]`` exists only while a checkpoint is
saved: when wavegen reads it, nothing could import the classes it names.
"""

from __future__ import annotations

import contextlib
import os
import pickle
import sys
import types
import warnings

import numpy as np
import pytest
import soundfile as sf
import torch
import torch.nn.functional as F
from torch import nn

from wavegen.audio.spectral import LogMelSpectrogram
from wavegen.checkpoint import load_bundle
from wavegen.cli import main
from wavegen.errors import CheckpointError
from wavegen.importers import common, import_waveglow_official
from wavegen.importers.waveglow_official import TACOTRON2_FEATURES

# two early outputs (before flows 2 and 4), so the order of their noise draws matters
MELS, GROUP, FLOWS, EVERY, EARLY, LAYERS, CHANNELS, KERNEL, STRIDE = 8, 8, 6, 2, 2, 2, 8, 64, 16

pytestmark = pytest.mark.usefixtures("one_thread")  # tiny tensors (see conftest)


def _weight_norm(conv: nn.Conv1d) -> nn.Conv1d:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # the hook API is deprecated
        return nn.utils.weight_norm(conv, name="weight")


class Invertible1x1Conv(nn.Module):
    """``z -> W z`` by a bias-free 1x1 conv; reverse by the inverse matrix (cached)."""

    __module__ = "glow"

    def __init__(self, c):
        super().__init__()
        self.conv = nn.Conv1d(c, c, 1, bias=False)
        w = torch.linalg.qr(torch.randn(c, c))[0]
        if torch.det(w) < 0:
            w[:, 0] = -w[:, 0]
        self.conv.weight.data = w.view(c, c, 1)

    def forward(self, z, reverse=False):
        w = self.conv.weight.squeeze(-1)
        if reverse:
            if not hasattr(self, "W_inverse"):  # a stray tensor attribute in the pickle
                self.W_inverse = torch.linalg.inv(w.double()).float()[..., None]
            return F.conv1d(z, self.W_inverse)
        return self.conv(z), z.shape[0] * z.shape[2] * torch.slogdet(w)[1]


class WN(nn.Module):
    """The coupling WaveNet: start, gated dilated layers conditioned on the mel, end."""

    __module__ = "glow"

    def __init__(self, n_in_channels, n_mel_channels, n_layers, n_channels, kernel_size,
                 per_layer_cond=False):
        super().__init__()
        self.n_layers, self.n_channels = n_layers, n_channels
        self.in_layers, self.res_skip_layers = nn.ModuleList(), nn.ModuleList()
        self.start = _weight_norm(nn.Conv1d(n_in_channels, n_channels, 1))
        self.end = nn.Conv1d(n_channels, 2 * n_in_channels, 1)
        if per_layer_cond:  # the older layout
            self.cond_layers = nn.ModuleList(
                _weight_norm(nn.Conv1d(n_mel_channels, 2 * n_channels, 1)) for _ in range(n_layers))
        else:
            self.cond_layer = _weight_norm(nn.Conv1d(n_mel_channels, 2 * n_channels * n_layers, 1))
        for i in range(n_layers):
            d = 2 ** i
            self.in_layers.append(_weight_norm(nn.Conv1d(
                n_channels, 2 * n_channels, kernel_size, dilation=d,
                padding=(kernel_size * d - d) // 2)))
            width = 2 * n_channels if i < n_layers - 1 else n_channels
            self.res_skip_layers.append(_weight_norm(nn.Conv1d(n_channels, width, 1)))

    def forward(self, forward_input):
        audio, spect = forward_input
        c = self.n_channels
        audio = self.start(audio)
        output = torch.zeros_like(audio)
        cond = self.cond_layer(spect) if hasattr(self, "cond_layer") else None
        for i in range(self.n_layers):
            part = cond[:, 2 * c * i:2 * c * (i + 1)] if cond is not None \
                else self.cond_layers[i](spect)
            acts = self.in_layers[i](audio) + part
            acts = torch.tanh(acts[:, :c]) * torch.sigmoid(acts[:, c:])
            res_skip = self.res_skip_layers[i](acts)
            if i < self.n_layers - 1:
                audio = audio + res_skip[:, :c]
                output = output + res_skip[:, c:]
            else:
                output = output + res_skip
        return self.end(output)


class WaveGlow(nn.Module):
    """The flow: mel upsampling, squeezes, early outputs, 1x1 convs and affine couplings."""

    __module__ = "glow"

    def __init__(self, n_mel_channels, n_flows, n_group, n_early_every, n_early_size,
                 WN_config, upsample_kernel=KERNEL, stride=STRIDE, per_layer_cond=False):
        super().__init__()
        self.upsample = nn.ConvTranspose1d(n_mel_channels, n_mel_channels, upsample_kernel,
                                           stride=stride)
        self.n_flows, self.n_group = n_flows, n_group
        self.n_early_every, self.n_early_size = n_early_every, n_early_size
        self.WN, self.convinv = nn.ModuleList(), nn.ModuleList()
        n_half, remaining = n_group // 2, n_group
        for k in range(n_flows):
            if k % n_early_every == 0 and k > 0:
                n_half -= n_early_size // 2
                remaining -= n_early_size
            self.convinv.append(Invertible1x1Conv(remaining))
            self.WN.append(WN(n_half, n_mel_channels * n_group, **WN_config,
                              per_layer_cond=per_layer_cond))
        self.n_remaining_channels = remaining

    def _squeezed_spect(self, spect, length):
        g = self.n_group
        spect = self.upsample(spect)[:, :, :length]
        spect = spect.unfold(2, g, g).permute(0, 2, 1, 3)
        return spect.contiguous().view(spect.size(0), spect.size(1), -1).permute(0, 2, 1)

    def forward(self, forward_input):
        """``(spect [B, M, F], audio [B, T])`` -> ``(z [B, g, T / g], log_s list,
        log_det_W list)``."""
        spect, audio = forward_input
        spect = self._squeezed_spect(spect, audio.size(1))
        audio = audio.unfold(1, self.n_group, self.n_group).permute(0, 2, 1)
        output_audio, log_s_list, log_det_w_list = [], [], []
        for k in range(self.n_flows):
            if k % self.n_early_every == 0 and k > 0:
                output_audio.append(audio[:, :self.n_early_size])
                audio = audio[:, self.n_early_size:]
            audio, log_det_w = self.convinv[k](audio)
            log_det_w_list.append(log_det_w)
            n_half = audio.size(1) // 2
            audio_0, audio_1 = audio[:, :n_half], audio[:, n_half:]
            output = self.WN[k]((audio_0, spect))
            log_s, b = output[:, n_half:], output[:, :n_half]
            audio_1 = torch.exp(log_s) * audio_1 + b
            log_s_list.append(log_s)
            audio = torch.cat([audio_0, audio_1], 1)
        output_audio.append(audio)
        return torch.cat(output_audio, 1), log_s_list, log_det_w_list

    def infer(self, spect, sigma, draw):
        """``spect [B, M, F]`` -> audio ``[B, F hop]``; ``draw(shape)`` gives the standard
        normals in the official order (the remaining channels, then each early output from
        the last flow back)."""
        time_cutoff = self.upsample.kernel_size[0] - self.upsample.stride[0]
        spect = self.upsample(spect)[:, :, :-time_cutoff]
        g = self.n_group
        spect = spect.unfold(2, g, g).permute(0, 2, 1, 3)
        spect = spect.contiguous().view(spect.size(0), spect.size(1), -1).permute(0, 2, 1)
        audio = sigma * draw((spect.size(0), self.n_remaining_channels, spect.size(2)))
        for k in reversed(range(self.n_flows)):
            n_half = audio.size(1) // 2
            audio_0, audio_1 = audio[:, :n_half], audio[:, n_half:]
            output = self.WN[k]((audio_0, spect))
            s, b = output[:, n_half:], output[:, :n_half]
            audio_1 = (audio_1 - b) / torch.exp(s)
            audio = self.convinv[k](torch.cat([audio_0, audio_1], 1), reverse=True)
            if k % self.n_early_every == 0 and k > 0:
                z = draw((spect.size(0), self.n_early_size, spect.size(2)))
                audio = torch.cat((sigma * z, audio), 1)
        return audio.permute(0, 2, 1).contiguous().view(audio.size(0), -1)


OFFICIAL_CLASSES = (WaveGlow, WN, Invertible1x1Conv)


@contextlib.contextmanager
def glow_module(*extra):
    """``sys.modules["glow"]`` holding the official classes (and ``extra`` ones) meanwhile;
    its ``__file__`` is this file, so the legacy format records their source, as it does
    for the real ``glow.py``."""
    module = types.ModuleType("glow")
    module.__file__ = __file__
    for cls in OFFICIAL_CLASSES + extra:
        setattr(module, cls.__name__, cls)
    sys.modules["glow"] = module
    try:
        yield module
    finally:
        del sys.modules["glow"]


def build_official(seed=0, per_layer_cond=False):
    """A tiny official WaveGlow with every parameter random (the official ``end`` init is
    zero, and weight norm starts at ``g = |v|``: both would hide mapping mistakes)."""
    torch.manual_seed(seed)
    model = WaveGlow(MELS, FLOWS, GROUP, EVERY, EARLY,
                     {"n_layers": LAYERS, "n_channels": CHANNELS, "kernel_size": 3},
                     per_layer_cond=per_layer_cond)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith(("end.weight", "end.bias")):
                p.normal_(0.0, 0.05)
            elif name.endswith("weight_g"):
                p.mul_(0.5 + torch.rand_like(p))
            elif name.endswith("bias"):
                p.normal_(0.0, 0.1)
    return model.eval()


def save_official(model, path, legacy=False, **extra):
    """``torch.save`` the way the official train.py does, with the classes importable."""
    with glow_module():
        torch.save({"model": model, "iteration": 1, "optimizer": None, "learning_rate": 1e-4,
                    **extra}, path, _use_new_zipfile_serialization=not legacy)
    return path


def inputs(frames=6, batch=2, seed=1):
    g = torch.Generator().manual_seed(seed)
    return (0.3 * torch.randn(batch, frames * STRIDE, generator=g),
            torch.randn(batch, MELS, frames, generator=g))


def official_draws(model, mel, seed=2):
    """The standard normals official ``infer`` draws, in its order."""
    g = torch.Generator().manual_seed(seed)
    columns = mel.shape[-1] * STRIDE // GROUP
    shapes = [(mel.shape[0], model.n_remaining_channels, columns)]
    shapes += [(mel.shape[0], EARLY, columns)
               for k in reversed(range(FLOWS)) if k % EVERY == 0 and k > 0]
    return [torch.randn(s, generator=g) for s in shapes]


def latents_from_draws(draws):
    """wavegen's latent layout ``[early_1, ..., early_n, remaining]`` from the official draws
    (the remaining channels first, then the early outputs of the last exit first)."""
    remaining, early = draws[0], draws[1:]
    return torch.cat(list(reversed(early)) + [remaining], dim=1)


def expected_outputs(model, audio, mel, sigma=0.7):
    with torch.no_grad():
        z, log_s, log_det_w = model((mel, audio))
        log_det = sum(s.sum() for s in log_s) + sum(log_det_w)
        draws = official_draws(model, mel)
        stream = iter(draws)
        wave = model.infer(mel, sigma, lambda shape: next(stream))
    return z, log_det, draws, wave


@pytest.mark.parametrize("legacy", [False, True], ids=["zip", "legacy"])
@pytest.mark.parametrize("per_layer_cond", [False, True], ids=["cond_layer", "cond_layers"])
def test_a_pickled_official_model_imports_and_computes_the_same(tmp_path, legacy, per_layer_cond):
    official = build_official(per_layer_cond=per_layer_cond)
    audio, mel = inputs()
    z, log_det, draws, wave = expected_outputs(official, audio, mel)  # caches W_inverse too
    path = save_official(official, tmp_path / "waveglow.pt", legacy=legacy)
    assert "glow" not in sys.modules
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        model, config, features = import_waveglow_official(path)
    assert not caught, [str(w.message) for w in caught]
    assert (config.n_flows, config.n_group, config.n_early_every, config.n_early_size,
            config.wn_layers, config.wn_channels, config.hop_length, config.upsample_kernel) \
        == (FLOWS, GROUP, EVERY, EARLY, LAYERS, CHANNELS, STRIDE, KERNEL)
    with torch.no_grad():
        ours, ours_log_det = model(audio[:, None], mel)
        torch.testing.assert_close(ours, z, rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(ours_log_det.sum(), log_det, rtol=1e-5, atol=1e-4)
        latents = latents_from_draws(draws)
        torch.testing.assert_close(model.inverse(0.7 * latents, mel)[:, 0], wave,
                                   rtol=1e-4, atol=1e-5)
        noise = latents.transpose(1, 2).reshape(latents.shape[0], 1, -1)  # [B, 1, T]
        torch.testing.assert_close(model.infer(mel, 0.7, noise=noise)[:, 0], wave,
                                   rtol=1e-4, atol=1e-5)
    assert features.padding == "center" and features.n_mels == MELS \
        and features.hop_length == STRIDE


def test_the_default_front_end_is_tacotron2s():
    f = TACOTRON2_FEATURES
    assert (f.sample_rate, f.n_fft, f.hop_length, f.win_length, f.n_mels, f.fmin, f.fmax) \
        == (22050, 1024, 256, 1024, 80, 0.0, 8000.0)
    assert (f.mel_scale, f.mel_norm, f.power, f.log, f.log_clamp, f.padding, f.pad_mode,
            f.magnitude_eps) == ("slaney", "slaney", 1.0, "ln", 1e-5, "center", "reflect", 0.0)


@pytest.mark.parametrize("layout", ["bare", "folded"])
def test_a_state_dict_imports_with_the_hop_given(tmp_path, layout):
    official = build_official(seed=3)
    audio, mel = inputs()
    with torch.no_grad():
        z = official((mel, audio))[0]
    if layout == "folded":  # the official remove_weightnorm, saved from DataParallel
        for module in official.modules():
            if hasattr(module, "weight_g"):
                nn.utils.remove_weight_norm(module)
        data = {"model": {f"module.{k}": v for k, v in official.state_dict().items()}}
    else:
        data = official.state_dict()
    path = tmp_path / "state.pt"
    torch.save(data, path)
    model, config, _ = import_waveglow_official(path, hop_length=STRIDE)
    assert config.hop_length == STRIDE
    with torch.no_grad():
        torch.testing.assert_close(model(audio[:, None], mel)[0], z, rtol=1e-5, atol=1e-5)
    # without the hop: 256, more than this model's upsampler kernel
    with pytest.raises(CheckpointError, match="upsample_kernel"):
        import_waveglow_official(path)


def test_a_pickled_modules_hop_must_match_the_one_asked_for(tmp_path):
    path = save_official(build_official(), tmp_path / "w.pt")
    with pytest.raises(CheckpointError, match=f"stride {STRIDE}, not the hop length 256"):
        import_waveglow_official(path, hop_length=256)


# --------------------------------------------------------------------------- hostile files
class Exploit:
    """Unpickling this would run ``os.system``."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


class ExecExploit(Exploit):
    def __reduce__(self):
        return exec, (f"open({str(self.marker)!r}, 'w').close()",)


class Evil:
    """A class the official glow.py does not have."""

    __module__ = "glow"


class OldTorchBackend:
    """Pickles like an old torch module's ``_backend`` (a call of the THNN backend getter)."""

    def __reduce__(self):
        from torch.nn.backends.thnn import _get_thnn_function_backend
        return _get_thnn_function_backend, ()


def assert_refused(path, marker, fragment):
    with pytest.raises(CheckpointError) as caught:
        import_waveglow_official(path)
    message = str(caught.value)
    assert fragment in message and "\n" not in message and str(path) in message
    assert not marker.exists()


@pytest.mark.skipif(os.name != "posix", reason="the payload is os.system('touch ...')")
@pytest.mark.parametrize("kind", ["os.system", "exec", "inside the model"])
@pytest.mark.parametrize("legacy", [False, True], ids=["zip", "legacy"])
def test_a_malicious_pickle_never_runs(tmp_path, kind, legacy):
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.pt"
    if kind == "inside the model":
        model = build_official()
        model.WN[1].payload = Exploit(marker)  # a plain attribute of a module
        save_official(model, path, legacy=legacy)
        fragment = "refused to unpickle posix.system"
    else:
        exploit = Exploit(marker) if kind == "os.system" else ExecExploit(marker)
        torch.save({"model": exploit, "iteration": 1}, path,
                   _use_new_zipfile_serialization=not legacy)
        refused = "posix.system" if kind == "os.system" else "builtins.exec"
        fragment = f"refused to unpickle {refused}"
    assert_refused(path, marker, fragment)
    # the control: plain torch.load runs the payload (a harmless `touch` in tmp_path)
    with glow_module(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.load(path, weights_only=False)
    assert marker.exists()


def test_an_unknown_glow_class_is_refused(tmp_path):
    path = tmp_path / "evil.pt"
    with glow_module(Evil):
        torch.save({"model": Evil(), "iteration": 1}, path)
    assert_refused(path, tmp_path / "none", "refused to unpickle glow.Evil")


def test_a_pickle_cannot_set_attributes_of_what_it_may_name(tmp_path):
    # GLOBAL torch._utils._rebuild_tensor_v2, then BUILD (None, {"__defaults__": ()}): plain
    # pickle would change the function for the whole process. Legacy torch file layout.
    payload = (b"\x80\x02ctorch._utils\n_rebuild_tensor_v2\nN}X\x0c\x00\x00\x00"
               b"__defaults__)s\x86b.")
    path = tmp_path / "tamper.pt"
    with open(path, "wb") as f:
        for header in (torch.serialization.MAGIC_NUMBER, torch.serialization.PROTOCOL_VERSION,
                       {"protocol_version": 1001, "little_endian": True}):
            pickle.dump(header, f, protocol=2)
        f.write(payload)
        pickle.dump([], f, protocol=2)
    defaults = common._rebuild_tensor_v2.__defaults__, torch._utils._rebuild_tensor_v2.__defaults__
    assert_refused(path, tmp_path / "none", "refused to unpickle state of a function")
    assert (common._rebuild_tensor_v2.__defaults__,
            torch._utils._rebuild_tensor_v2.__defaults__) == defaults


def test_an_old_torch_modules_backend_attribute_loads(tmp_path):
    model = build_official(seed=5)
    audio, mel = inputs()
    with torch.no_grad():
        z = model((mel, audio))[0]
    for module in model.modules():
        module._backend = OldTorchBackend()
    path = save_official(model, tmp_path / "old.pt", legacy=True)
    imported, _, _ = import_waveglow_official(path)
    with torch.no_grad():
        torch.testing.assert_close(imported(audio[:, None], mel)[0], z, rtol=1e-5, atol=1e-5)


# --------------------------------------------------------------------------- CLI
def test_cli_import_then_vocode_a_mel(tmp_path, capsys):
    checkpoint = save_official(build_official(), tmp_path / "waveglow.pt", legacy=True)
    bundle = tmp_path / "bundle"
    assert main(["import", "waveglow-official", str(checkpoint), "-o", str(bundle)]) == 0
    assert "waveglow vocoder" in capsys.readouterr().out
    model, info = load_bundle(bundle)
    assert info.family == "waveglow" and info.conditioning == "mel"
    assert info.features.n_mels == MELS and info.features.padding == "center"
    frames = 40  # over n_fft / 2 = 512 samples, which reflect padding needs
    t = np.arange(frames * STRIDE - 1) / info.sample_rate
    wave = torch.from_numpy((0.3 * np.sin(2 * np.pi * 440 * t)).astype(np.float32))
    mel = LogMelSpectrogram(info.features)(wave[None])[0].numpy()
    assert mel.shape == (MELS, frames)  # centred frames: 1 + T // hop
    np.save(tmp_path / "x.npy", mel)
    out = tmp_path / "y.wav"
    assert main(["vocode", str(bundle), "--mel", str(tmp_path / "x.npy"), "-o", str(out),
                 "--sigma", "0"]) == 0
    audio, rate = sf.read(out)
    assert rate == 22050 and audio.shape == (frames * STRIDE,) and np.isfinite(audio).all()


def test_cli_state_dict_needs_hop_length(tmp_path, capsys):
    path = tmp_path / "state.pt"
    torch.save(build_official().state_dict(), path)
    bundle = tmp_path / "b"
    assert main(["import", "waveglow-official", str(path), "-o", str(bundle),
                 "--hop-length", str(STRIDE), "--sample-rate", "16000"]) == 0
    _, info = load_bundle(bundle)
    assert info.sample_rate == 16000 and info.features.sample_rate == 16000
    assert info.model_config.hop_length == STRIDE


@pytest.mark.parametrize("content, fragment", [
    ("missing", "file not found"),
    ("text", "cannot read WaveGlow checkpoint"),
    ("hifigan", "not an official WaveGlow checkpoint"),
    ("option", "--hop-length is for waveglow-official"),
])
def test_cli_bad_inputs_are_one_line_errors(tmp_path, capsys, content, fragment):
    path = tmp_path / "in.pt"
    source = "waveglow-official"
    extra = []
    if content == "text":
        path.write_text("not a checkpoint\n")
    elif content == "hifigan":
        torch.save({"generator": {"conv_pre.weight_g": torch.ones(4, 1, 1),
                                  "conv_pre.weight_v": torch.ones(4, 80, 7)}}, path)
    elif content == "option":
        torch.save({}, path)
        source, extra = "hifigan-official", ["--hop-length", "256"]
    bundle = tmp_path / "bundle"
    assert main(["import", source, str(path), "-o", str(bundle), *extra]) == 2
    err = capsys.readouterr().err.strip()
    assert fragment in err and len(err.splitlines()) == 1
    assert not bundle.exists() and not any(p.name.startswith(".bundle") for p in tmp_path.iterdir())
