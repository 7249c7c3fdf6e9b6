"""A WaveNet prior samples on the fast WaveNet backends (CodePrior.fast_network) with the
reference loop's codes: same uniforms, same draws, through windows and prompts; and a lone
prior bundle, which makes codes, is pointed to hierarchies by `wavegen sample`."""

from __future__ import annotations

import pytest
import torch

import wavegen.hierarchy as hierarchy_module
from wavegen.hierarchy import sample_windowed
from wavegen.kernels import get_backend
from wavegen.models.prior import CodePrior, CodePriorConfig
from wavegen.sampling import SamplingOptions


def cpu_backend_or_skip():
    reason = get_backend("cpu").unavailable(torch.device("cpu"))
    if reason is not None:
        pytest.skip(f"cpu backend unavailable here: {reason}")


def prior(conditioning: str, codebook: int = 64, **overrides) -> CodePrior:
    extra = {"codes": dict(upper_codebook_size=32, upper_ratio=4),
             "roll": dict(roll_channels=7), "none": {}}[conditioning]
    fields = {"codebook_size": codebook, "conditioning": conditioning, "layers": 4,
              "stacks": 2, **extra, **overrides}
    config = CodePriorConfig.preset("tiny", **fields)
    torch.manual_seed(0)
    model = CodePrior(config).eval()
    if config.architecture == "wavenet":
        with torch.no_grad():  # sharper than an untrained prior, so that draws differ
            model.net.output[3].weight.mul_(8.0)
    return model


def local_of(conditioning: str, total: int):
    generator = torch.Generator().manual_seed(1)
    if conditioning == "codes":
        return torch.randint(0, 32, (2, total // 4), generator=generator)
    if conditioning == "roll":
        return (torch.rand(2, 7, total, generator=generator) > 0.7).float()
    return None


@pytest.mark.parametrize("conditioning", ["none", "codes", "roll"])
@pytest.mark.parametrize("window, prompt", [(None, 0), (48, 0), (48, 9)])
def test_the_cpu_backend_draws_the_reference_codes(conditioning, window, prompt, one_thread):
    cpu_backend_or_skip()
    model = prior(conditioning)
    assert model.fast_network() is model.net
    total = 160
    local = local_of(conditioning, total)
    given = torch.randint(0, 64, (2, prompt), generator=torch.Generator().manual_seed(2)) \
        if prompt else None
    runs, calls = {}, []
    real = hierarchy_module.generate

    def spy(network, *args, **kwargs):  # which network and backend each window ran on
        calls.append((network, kwargs.get("backend", "reference")))
        return real(network, *args, **kwargs)

    for backend in ("reference", "cpu"):
        with pytest.MonkeyPatch.context() as patch:
            patch.setattr(hierarchy_module, "generate", spy)
            runs[backend], result = sample_windowed(model, total, local=local, prompt=given,
                                                    options=SamplingOptions(seed=5),
                                                    window=window, overlap=16, backend=backend)
        assert torch.isfinite(result.mean_nll).all()
    assert calls and {c for c in calls if c[1] == "cpu"} == {(model.net, "cpu")}
    assert any(network is model and kind == "reference" for network, kind in calls)
    assert torch.equal(runs["reference"], runs["cpu"])
    batch = 1 if local is None and given is None else 2
    assert runs["cpu"].shape == (batch, total) and len(set(runs["cpu"].flatten().tolist())) > 8


def test_guidance_filters_transformers_and_odd_codebooks_keep_the_reference_loop(one_thread):
    cpu_backend_or_skip()
    odd = prior("none", codebook=48)
    assert odd.fast_network() is None
    transformer = prior("none", architecture="transformer", layers=2, width=32, heads=4,
                        context=64)
    assert transformer.fast_network() is None
    guided = prior("roll", cond_dropout=0.1)
    local = local_of("roll", 40)
    for model, options, cond in ((odd, SamplingOptions(seed=1), None),
                                 (transformer, SamplingOptions(seed=1), None),
                                 (guided, SamplingOptions(seed=1, cfg_gamma=2.0), local),
                                 (prior("none"), SamplingOptions(seed=1, top_p=0.9), None)):
        a, _ = sample_windowed(model, 40, local=cond, options=options, backend="reference")
        b, _ = sample_windowed(model, 40, local=cond, options=options, backend="cpu")
        assert torch.equal(a, b)


def test_an_unknown_backend_is_a_one_line_error(one_thread):
    model = prior("none")
    with pytest.raises(Exception) as caught:
        sample_windowed(model, 20, options=SamplingOptions(seed=1), backend="no-such-backend")
    assert len(str(caught.value).splitlines()) == 1


def test_a_lone_prior_bundle_points_to_hierarchies(tmp_path, capsys, one_thread):
    from wavegen.checkpoint import BundleInfo, save_bundle
    from wavegen.cli import main

    model = prior("none")
    save_bundle(tmp_path / "p", model, BundleInfo("prior", model.config, 16000,
                                                  conditioning="none"))
    assert main(["sample", str(tmp_path / "p"), "--seconds", "0.1",
                 "-o", str(tmp_path / "x.wav")]) == 2
    err = capsys.readouterr().err.strip()
    assert "not audio; a prior's codes become audio in a hierarchy" in err
    assert len(err.splitlines()) == 1 and not (tmp_path / "x.wav").exists()
