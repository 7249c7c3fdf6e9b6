"""CodePrior (wavegen.models.prior): a causal WaveNet or transformer over VQ-VAE codes.
Causality for every conditioning, the incremental loop against a teacher-forced pass,
learning (a periodic sequence; an upsampler that copies its upper codes), codebooks that are
not powers of two, classifier-free guidance, the "repeat" upsampler, and one-line refusals
of bad input; the tests that take the ``architecture`` fixture run for both networks."""

from __future__ import annotations

import math

import pytest
import torch

from wavegen.checkpoint import BundleInfo, load_bundle, save_bundle
from wavegen.errors import ConfigError, UsageError
from wavegen.models.prior import START_CODE, CodePrior, CodePriorConfig
from wavegen.models.protocols import SAMPLE_LEVEL
from wavegen.models.registry import get_family
from wavegen.models.wavenet import shift_right
from wavegen.nn.causal_transformer import CausalTransformer
from wavegen.nn.distributions import Categorical, CodeCategorical, sample_categorical
from wavegen.nn.logit_filters import cfg_logits
from wavegen.nn.upsample import ConditioningUpsampler
from wavegen.sampling import SamplingOptions, draw_uniforms, generate

K = 64          # codebook size
UPPER_K = 32    # upper codebook size of the upsamplers
RATIO = 4       # codes per upper code
ROLL = 5        # piano-roll channels of the roll priors (any number works)
CONDITIONINGS = ("none", "codes", "roll")
#: Small WaveNets: 4 layers of kernel 2 (receptive field 16 codes).
SMALL = dict(layers=4, stacks=1, residual_channels=16, gate_channels=32, skip_channels=32,
             upper_dim=8)
ARCHITECTURES = ("wavenet", "transformer")
#: Small transformers: 2 blocks of width 32, 4 heads, a context of 64 codes.
TRANSFORMER = dict(architecture="transformer", layers=2, width=32, heads=4, context=64)


@pytest.fixture(params=ARCHITECTURES)
def architecture(request) -> str:
    """Runs a test for the WaveNet and the transformer prior."""
    return request.param


def config(conditioning: str = "none", codebook_size: int = K, architecture: str = "wavenet",
           **overrides) -> CodePriorConfig:
    extra = {"none": {},
             "codes": dict(upper_codebook_size=UPPER_K, upper_ratio=RATIO),
             "roll": dict(roll_channels=ROLL)}[conditioning]
    network = TRANSFORMER if architecture == "transformer" else {}
    return CodePriorConfig.preset("tiny", codebook_size=codebook_size,
                                  conditioning=conditioning,
                                  **{**SMALL, **network, **extra, **overrides})


def prior(conditioning: str = "none", seed: int = 0, architecture: str = "wavenet",
          **overrides) -> CodePrior:
    torch.manual_seed(seed)
    return CodePrior(config(conditioning, architecture=architecture, **overrides)).eval()


def local_for(conditioning: str, batch: int, length: int, seed: int = 1):
    """Conditioning covering ``length`` codes: upper codes [B, length / r] or a roll."""
    g = torch.Generator().manual_seed(seed)
    if conditioning == "codes":
        return torch.randint(0, UPPER_K, (batch, length // RATIO), generator=g)
    if conditioning == "roll":
        return (torch.rand(batch, ROLL, length, generator=g) < 0.3).float()
    return None


def random_codes(batch: int, length: int, seed: int = 2, k: int = K) -> torch.Tensor:
    return torch.randint(0, k, (batch, length), generator=torch.Generator().manual_seed(seed))


def teacher_forced(model: CodePrior, codes: torch.Tensor, local=None, **kwargs) -> torch.Tensor:
    with torch.no_grad():
        return model(shift_right(codes, START_CODE), local, **kwargs)


def one_line(exc_info) -> str:
    message = str(exc_info.value)
    assert message and "\n" not in message, message
    return message


# --------------------------------------------------------------------------- contract


def test_family_config_contract_and_bundle_round_trip(tmp_path, architecture, one_thread):
    family = get_family("prior")
    assert family.model_class is CodePrior and family.kind == SAMPLE_LEVEL
    assert family.task == "likelihood"
    c = config("codes", architecture=architecture)
    assert (c.conditioning_channels, c.hop_length, c.local_channels) == (UPPER_K, RATIO, 8)
    assert config("roll").hop_length == 1 and config("none").hop_length is None
    assert CodePriorConfig.preset("tiny").receptive_field == 511
    model = prior("codes", architecture=architecture)
    if architecture == "transformer":
        assert isinstance(model.net, CausalTransformer)
        assert c.receptive_field == model.receptive_field == model.max_positions == 64
        # the size estimate is exact (CausalTransformer + the upper codes' embedding)
        assert c.estimate_size().parameters == model.num_parameters()
    else:
        assert c.receptive_field == model.receptive_field == 16  # 1 + (1 + 2 + 4 + 8)
        assert model.max_positions is None
    assert isinstance(model.head, CodeCategorical) and model.head.num_classes == K
    assert model.silence_input() == START_CODE
    with torch.no_grad():  # not the initial weights: the loaded ones must be these
        for parameter in model.parameters():
            parameter.add_(0.1 * torch.randn_like(parameter))
    save_bundle(tmp_path / "p", model, BundleInfo("prior", c, c.sample_rate,
                                                  conditioning="codes"))
    loaded, info = load_bundle(tmp_path / "p")
    assert info.family == "prior" and info.model_config == c
    assert info.model_config.architecture == architecture
    assert type(loaded.net) is type(model.net)
    codes, local = random_codes(2, 24), local_for("codes", 2, 24)
    assert torch.equal(teacher_forced(loaded, codes, local), teacher_forced(model, codes, local))
    uniforms = draw_uniforms(2, 24, 1, seed=4)
    assert torch.equal(generate(loaded, local=local, uniforms=uniforms).samples,
                       generate(model, local=local, uniforms=uniforms).samples)


# --------------------------------------------------------------------------- causality


@pytest.mark.parametrize("conditioning", CONDITIONINGS)
def test_changing_a_code_changes_no_logit_at_or_before_it(conditioning, architecture,
                                                          one_thread):
    model = prior(conditioning, architecture=architecture)
    length = 32
    codes, local = random_codes(1, length), local_for(conditioning, 1, length)
    logits = teacher_forced(model, codes, local)
    assert logits.shape == (1, K, length)
    for t in (0, 13, length - 2):
        changed = codes.clone()
        changed[0, t] = (changed[0, t] + 7) % K
        other = teacher_forced(model, changed, local)
        assert torch.allclose(other[..., :t + 1], logits[..., :t + 1], rtol=0, atol=1e-6), t
        assert not torch.allclose(other[..., t + 1], logits[..., t + 1], atol=1e-4), t


def test_upper_code_j_conditions_its_own_codes_and_later_ones_only(architecture, one_thread):
    model = prior("codes", architecture=architecture)
    length = 32
    codes, upper = random_codes(1, length), local_for("codes", 1, length)
    logits = teacher_forced(model, codes, upper)
    for j in (0, 3, length // RATIO - 1):
        changed = upper.clone()
        changed[0, j] = (changed[0, j] + 5) % UPPER_K
        other = teacher_forced(model, codes, changed)
        start = j * RATIO
        assert torch.allclose(other[..., :start], logits[..., :start], rtol=0, atol=1e-6), j
        for t in range(start, start + RATIO):  # every code under upper code j sees it
            assert not torch.allclose(other[..., t], logits[..., t], atol=1e-4), (j, t)


def test_roll_frame_t_conditions_code_t_and_later_ones_only(architecture, one_thread):
    model = prior("roll", architecture=architecture)
    length = 24
    codes, roll = random_codes(1, length), local_for("roll", 1, length)
    logits = teacher_forced(model, codes, roll)
    for t in (0, 10, length - 1):
        changed = roll.clone()
        changed[0, :, t] = 1.0 - changed[0, :, t]
        other = teacher_forced(model, codes, changed)
        assert torch.allclose(other[..., :t], logits[..., :t], rtol=0, atol=1e-6), t
        assert not torch.allclose(other[..., t], logits[..., t], atol=1e-4), t


# --------------------------------------------------------------------------- sampling


@pytest.mark.parametrize("conditioning", CONDITIONINGS)
def test_incremental_sampling_equals_a_teacher_forced_pass(conditioning, architecture,
                                                           one_thread):
    model = prior(conditioning, architecture=architecture)
    batch, length = 2, 40
    local = local_for(conditioning, batch, length)
    uniforms = draw_uniforms(batch, length, 1, seed=11)
    result = generate(model, length, batch=batch, local=local, uniforms=uniforms)
    codes = result.samples
    assert codes.shape == (batch, length) and codes.dtype == torch.int64
    assert int(codes.min()) >= 0 and int(codes.max()) < K
    assert len(torch.unique(codes)) > 10  # real draws, not one code
    assert torch.equal(result.audio[:, 0], codes.float())  # a prior's "waveform" is its codes

    logits = teacher_forced(model, codes, local)
    log_probs = torch.log_softmax(logits.double(), dim=1)
    nll = -log_probs.gather(1, codes[:, None])[:, 0].mean(-1)
    assert torch.allclose(result.mean_nll.double(), nll, atol=1e-4), (result.mean_nll, nll)
    for t in range(length):  # each code is the inverse-CDF draw from the teacher-forced logits
        assert torch.equal(codes[:, t], sample_categorical(logits[..., t], uniforms[:, t, 0])), t
    # The naive loop (a full pass per step) draws the same codes.
    naive = generate(model, length, batch=batch, local=local, uniforms=uniforms, naive=True)
    assert torch.equal(naive.samples, codes)

    greedy = generate(model, length, batch=batch, local=local,
                      options=SamplingOptions(temperature=0.0)).samples
    greedy_logits = teacher_forced(model, greedy, local)
    assert torch.equal(greedy, greedy_logits.argmax(dim=1))
    assert not torch.equal(greedy, codes)


@pytest.mark.parametrize("conditioning", CONDITIONINGS)
def test_prompted_steps_equal_the_teacher_forced_logits(conditioning, architecture, one_thread):
    model = prior(conditioning, architecture=architecture)
    length, prompt = 20, 5
    codes, local = random_codes(1, length), local_for(conditioning, 1, length)
    logits = teacher_forced(model, codes, local)
    with torch.no_grad():
        state = model.start(1, length, local, prompt=codes[:, :prompt])
        for t in range(prompt, length):
            step = model.step(codes[:, t - 1], state)
            assert torch.allclose(step, logits[..., t], atol=1e-5), t


def test_prompted_sampling_keeps_the_prompt_beyond_the_receptive_field(architecture,
                                                                      one_thread):
    """The loop continues from the teacher-forced context of the prompt (with a prompt at
    least as long as a WaveNet's receptive field the start code no longer matters; a
    transformer sees it, in both passes)."""
    model = prior("codes", architecture=architecture)
    length, prompt = 40, 20
    codes, upper = random_codes(1, length), local_for("codes", 1, length)
    greedy = generate(model, length - prompt, local=upper,
                      prompt=codes[:, None, :prompt].float(),
                      options=SamplingOptions(temperature=0.0)).samples
    whole = torch.cat([codes[:, :prompt], greedy], dim=1)
    expected = teacher_forced(model, whole, upper).argmax(dim=1)[:, prompt:]
    assert torch.equal(greedy, expected)


def test_classifier_free_guidance_with_a_cond_dropout_prior(architecture, one_thread):
    model = prior("codes", cond_dropout=0.3, architecture=architecture)
    length = 24
    upper = local_for("codes", 1, length)
    uniforms = draw_uniforms(1, length, 1, seed=3)
    plain = generate(model, local=upper, uniforms=uniforms).samples
    assert torch.equal(generate(model, local=upper, uniforms=uniforms,
                                options=SamplingOptions(cfg_gamma=1.0)).samples, plain)
    for gamma in (0.0, 3.0):
        guided = generate(model, local=upper, options=SamplingOptions(temperature=0.0,
                                                                      cfg_gamma=gamma)).samples
        cond = teacher_forced(model, guided, upper)
        uncond = teacher_forced(model, guided, upper, unconditional=True)
        assert not torch.allclose(cond, uncond, atol=1e-3)  # the branches do differ
        expected = cfg_logits(cond.transpose(1, 2), uncond.transpose(1, 2), gamma).argmax(-1)
        assert torch.equal(guided, expected), gamma
    # Training drops the conditioning of some examples (and so needs no unconditional pass).
    model.train()
    codes = random_codes(64, length)
    torch.manual_seed(0)
    dropped = model(shift_right(codes, START_CODE), upper.repeat(64, 1))
    kept = teacher_forced(model.eval(), codes, upper.repeat(64, 1))
    none = teacher_forced(model, codes, upper.repeat(64, 1), unconditional=True)
    same_as_uncond = torch.isclose(dropped, none, atol=1e-5).flatten(1).all(1)
    same_as_cond = torch.isclose(dropped, kept, atol=1e-5).flatten(1).all(1)
    assert bool((same_as_uncond | same_as_cond).all())
    assert 5 <= int(same_as_uncond.sum()) <= 40


# --------------------------------------------------------------------------- learning


def test_loss_falls_on_a_periodic_code_sequence(architecture, one_thread):
    model = prior("none", architecture=architecture).train()
    pattern = torch.tensor([3, 17, 42, 8, 29])
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    g = torch.Generator().manual_seed(0)
    bits = []
    for _ in range(20):
        offsets = torch.randint(0, len(pattern), (4, 1), generator=g)
        codes = pattern[(torch.arange(32)[None] + offsets) % len(pattern)]
        loss = model.loss(codes)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        bits.append(float(loss.detach()) / math.log(2))
    assert bits[0] > 0.9 * math.log2(K)          # starts near uniform (6 bits per code)
    assert max(bits[-3:]) < 1.0, bits            # ends well below log2(K)


def test_an_upsampler_learns_to_follow_its_upper_codes(architecture, one_thread):
    """Training data whose codes copy the upper code above them: afterwards the prior writes
    the upper codes it is given, codes it never saw together in training."""
    k = 16
    layers = 3 if architecture == "wavenet" else 2
    model = prior("codes", codebook_size=k, upper_codebook_size=k, layers=layers,
                  architecture=architecture).train()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    g = torch.Generator().manual_seed(0)
    for _ in range(40):
        upper = torch.randint(0, k, (8, 8), generator=g)
        loss = model.loss(upper.repeat_interleave(RATIO, dim=1), upper)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    assert float(loss.detach()) < 0.1
    upper = torch.randint(0, k, (2, 12), generator=torch.Generator().manual_seed(5))
    expected = upper.repeat_interleave(RATIO, dim=1)
    greedy = generate(model, local=upper, options=SamplingOptions(temperature=0.0)).samples
    assert torch.equal(greedy, expected)
    drawn = generate(model, local=upper, options=SamplingOptions(seed=1)).samples
    assert (drawn == expected).float().mean() > 0.95


# --------------------------------------------------------------------------- codebooks


def test_a_codebook_that_is_not_a_power_of_two(one_thread):
    model = prior("codes", codebook_size=48)
    assert model.net.config.num_classes == 64 and model.head.num_classes == 48
    length = 32
    codes, upper = random_codes(2, length, k=48), local_for("codes", 2, length)
    codes[0, 5] = 47
    logits = teacher_forced(model, codes, upper)
    assert logits.shape == (2, 48, length)
    loss = model.loss(codes, upper)
    loss = float(loss.detach())
    assert math.isfinite(loss) and abs(loss - math.log(48)) < 0.5
    # Uniforms at the top of [0, 1) pick the last code of the codebook, not of the network's
    # 64 classes: the extra logits are never drawn.
    top = generate(model, local=upper, uniforms=torch.ones(2, length, 1)).samples
    assert bool((top == 47).all())
    drawn = generate(model, local=upper, options=SamplingOptions(seed=0)).samples
    assert int(drawn.max()) < 48 and len(torch.unique(drawn)) > 10
    with pytest.raises(UsageError, match=r"\[0, 48\)"):
        model.loss(torch.full((1, length), 48), upper[:1])
    # The head itself: any size >= 2 for codes, powers of two for mu-law classes.
    assert CodeCategorical(3).num_classes == 3
    with pytest.raises(ConfigError):
        Categorical(48)
    for bad in (1, 0, True, 2.0):
        with pytest.raises(ConfigError):
            CodeCategorical(bad)


def test_a_transformer_codebook_that_is_not_a_power_of_two(one_thread):
    model = prior("codes", codebook_size=48, architecture="transformer")
    assert model.net.classes == 48 and model.head.num_classes == 48
    length = 32
    upper = local_for("codes", 2, length)
    assert teacher_forced(model, random_codes(2, length, k=48), upper).shape == (2, 48, length)
    top = generate(model, local=upper, uniforms=torch.ones(2, length, 1)).samples
    assert bool((top == 47).all())
    drawn = generate(model, local=upper, options=SamplingOptions(seed=0)).samples
    assert int(drawn.max()) < 48 and len(torch.unique(drawn)) > 10


def test_the_repeat_upsampler_has_no_parameters_and_is_strictly_local(one_thread):
    up = ConditioningUpsampler(3, (4,), 4, "repeat")
    assert sum(p.numel() for p in up.parameters()) == 0
    frames = torch.randn(2, 3, 10)
    out = up(frames)
    assert torch.equal(out, frames.repeat_interleave(4, dim=-1))
    # Any stretch of frames upsamples to exactly that stretch of the whole output.
    assert torch.equal(up(frames[..., 3:7]), out[..., 12:28])
    two = ConditioningUpsampler(3, (2, 3), 6, "repeat")
    assert torch.equal(two(frames), frames.repeat_interleave(6, dim=-1))
    with pytest.raises(ConfigError):
        ConditioningUpsampler(3, (2,), 4, "repeat")


# --------------------------------------------------------------------------- bad input


def bad_inputs():
    codes = random_codes(1, 16)
    upper = local_for("codes", 1, 16)
    roll = local_for("roll", 1, 16)
    yield "none", codes.clone().index_fill_(1, torch.tensor([3]), K), None, r"\[0, 64\)"
    yield "none", codes.clone().index_fill_(1, torch.tensor([3]), -1), None, r"\[0, 64\)"
    yield "none", codes.float() + 0.5, None, "whole numbers"
    yield "none", codes[0], None, r"\[batch, codes\]"
    yield "none", codes[:, None].repeat(1, 2, 1), None, "codes must be"
    yield "none", codes, upper, "unconditional"
    yield "codes", codes, None, "upper level's codes"
    yield "codes", codes, upper.float(), "int64"
    yield "codes", codes, upper[0], "int64"
    yield "codes", codes, upper.clone().index_fill_(1, torch.tensor([1]), UPPER_K), \
        rf"\[0, {UPPER_K}\)"
    yield "codes", codes, upper[:, :3], "cover"
    yield "roll", codes, None, "piano roll"
    yield "roll", codes, roll[:, :3], "frames"
    yield "roll", codes, roll[:, :, :8], "must cover the same"


#: The transformer's words where the WaveNet's differ (conditioning not covering the codes).
TRANSFORMER_MESSAGES = {"cover": "12 positions, but there are 16",
                        "must cover the same": "8 positions, but there are 16"}


@pytest.mark.parametrize("conditioning, codes, local, message", list(bad_inputs()))
def test_bad_inputs_are_one_line_usage_errors(conditioning, codes, local, message, architecture,
                                              one_thread):
    model = prior(conditioning, architecture=architecture)
    if architecture == "transformer":
        message = TRANSFORMER_MESSAGES.get(message, message)
    with pytest.raises(UsageError, match=message) as caught:
        model.loss(codes, local)
    one_line(caught)


def test_a_transformer_prior_refuses_more_codes_than_its_context(one_thread):
    model = prior("codes", architecture="transformer", context=16)
    upper = local_for("codes", 1, 20)
    with pytest.raises(UsageError, match=r"exceed the transformer's context \(16\)") as caught:
        model.loss(random_codes(1, 20), upper)
    one_line(caught)
    for kwargs in (dict(local=upper), dict(local=upper, prompt=torch.ones(1, 1, 8))):
        with pytest.raises(UsageError, match="context") as caught:
            generate(model, **kwargs)
        one_line(caught)
    # Exactly the context is fine.
    assert generate(model, local=upper[:, :4]).samples.shape == (1, 16)


def test_bad_sampling_inputs_are_one_line_usage_errors(architecture, one_thread):
    model = prior("codes", architecture=architecture)
    upper = local_for("codes", 1, 16)
    for kwargs in (dict(local=upper.float()), dict(local=None, num_samples=8),
                   dict(local=upper, prompt=torch.full((1, 1, 3), float(K)))):
        with pytest.raises(UsageError) as caught:
            generate(model, **kwargs)
        one_line(caught)
    with pytest.raises(UsageError) as caught:
        generate(prior("none", architecture=architecture), 8, local=upper)
    one_line(caught)


@pytest.mark.parametrize("overrides, message", [
    (dict(conditioning="codes"), "upper_codebook_size"),
    (dict(conditioning="codes", upper_codebook_size=1), "upper_codebook_size"),
    (dict(upper_codebook_size=16), "upper_codebook_size is for conditioning codes"),
    (dict(conditioning="roll", roll_channels=4, upper_codebook_size=16), "upper_codebook_size"),
    (dict(roll_channels=4), "roll_channels is for conditioning roll"),
    (dict(conditioning="codes", upper_codebook_size=8, roll_channels=4), "roll_channels"),
    (dict(conditioning="roll"), "roll_channels >= 1"),
    (dict(cond_dropout=0.1), "cond_dropout needs conditioning"),
    (dict(conditioning="mel"), "conditioning must be one of"),
    (dict(codebook_size=1), "codebook_size"),
    (dict(codebook_size=0), "codebook_size"),
    (dict(codebook_size=True), "codebook_size"),
    (dict(code_hop=0), "code_hop"),
    (dict(sample_rate=16000.0), "sample_rate"),
    (dict(conditioning="codes", upper_codebook_size=8, upper_ratio=0), "upper_ratio"),
    (dict(level=-1), "level"),
    (dict(level=1.0), "level"),
    (dict(layers=0), "layers must be >= 1"),
    (dict(architecture="rnn"), "architecture must be one of wavenet, transformer"),
    (dict(architecture="Transformer"), "architecture must be one of"),
    (dict(TRANSFORMER, width=30), r"width \(30\) must be a multiple of heads \(4\)"),
    (dict(TRANSFORMER, width=32, heads=5), "multiple of heads"),
    (dict(TRANSFORMER, heads=0), "heads must be a positive integer"),
    (dict(TRANSFORMER, context=0), "context must be a positive integer"),
    (dict(TRANSFORMER, context=-8), "context must be a positive integer"),
    (dict(TRANSFORMER, context=64.0), "context must be a positive integer"),
    (dict(TRANSFORMER, context=True), "context must be a positive integer"),
    (dict(TRANSFORMER, context=(1 << 20) + 1), "over 2\\^20"),
    (dict(TRANSFORMER, layers=0), "layers must be a positive integer"),
    (dict(TRANSFORMER, width=0), "width must be a positive integer"),
    (dict(TRANSFORMER, dropout=1.0), "dropout"),
    (dict(TRANSFORMER, conditioning="roll", roll_channels=2, cond_dropout=-0.1),
     "cond_dropout"),
    (dict(TRANSFORMER, cond_dropout=0.1), "cond_dropout needs conditioning"),
])
def test_bad_configs_are_one_line_config_errors(overrides, message):
    with pytest.raises(ConfigError, match=message) as caught:
        CodePriorConfig(**{**SMALL, **overrides})
    assert one_line(caught).startswith("CodePriorConfig")


def test_a_transformer_config_ignores_the_wavenet_fields():
    """The WaveNet's fields are not checked for a transformer (and its layers are blocks)."""
    c = CodePriorConfig(**{**SMALL, **TRANSFORMER, "stacks": 0, "kernel_size": 0})
    assert c.receptive_field == 64 and c.layers == 2
    with pytest.raises(ConfigError):
        CodePriorConfig(**{**SMALL, "stacks": 0})


def test_bad_config_dicts_and_presets_are_config_errors():
    with pytest.raises(ConfigError) as caught:
        CodePriorConfig.preset("huge")
    one_line(caught)
    with pytest.raises(ConfigError) as caught:
        CodePriorConfig.from_dict({"codebook_size": 64, "not_a_field": 1})
    one_line(caught)
    good = config("roll", cond_dropout=0.1)
    assert CodePriorConfig.from_dict(good.to_dict()) == good
    good = config("codes", architecture="transformer", cond_dropout=0.1)
    assert CodePriorConfig.from_dict(good.to_dict()) == good
    with pytest.raises(ConfigError, match="architecture") as caught:
        CodePriorConfig.from_dict({**good.to_dict(), "architecture": "lstm"})
    one_line(caught)
