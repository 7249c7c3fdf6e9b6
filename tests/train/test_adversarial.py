"""The adversarial task: GAN losses, the two-optimiser schedule, saved discriminators, DDP."""

from __future__ import annotations


import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from safetensors.torch import load_file
from torch import nn

from wavegen.audio.features import FeatureConfig
from wavegen.checkpoint import BundleInfo
from wavegen.data.synthetic import ToneDataset
from wavegen.errors import ConfigError
from wavegen.models.wavenet import WaveNetConfig
from wavegen.nn.adversarial import (DiscriminatorOutput, DiscriminatorSet, discriminator_loss,
                                    feature_matching_loss, generator_adversarial_loss)
from wavegen.train.config import TrainConfig
from wavegen.train.distributed import DistInfo
from wavegen.train.tasks.adversarial import AdversarialConfig, AdversarialTask
from wavegen.train.trainer import Trainer

FEATURES = FeatureConfig(sample_rate=8000, n_fft=256, hop_length=64, win_length=256, n_mels=16,
                         fmax=4000.0)
SMALL = ((256, 64, 256), (128, 32, 128))


class TinyGenerator(nn.Module):
    """mel ``[B, 16, F]`` -> audio ``[B, 1, 64 F]``."""

    def __init__(self):
        super().__init__()
        self.pre = nn.Conv1d(16, 16, 3, padding=1)
        self.up = nn.ConvTranspose1d(16, 8, 16, stride=8, padding=4)
        self.up2 = nn.ConvTranspose1d(8, 4, 16, stride=8, padding=4)
        self.post = nn.Conv1d(4, 1, 7, padding=3)

    def forward(self, mel):
        h = torch.nn.functional.leaky_relu(self.pre(mel), 0.1)
        h = torch.nn.functional.leaky_relu(self.up(h), 0.1)
        h = torch.nn.functional.leaky_relu(self.up2(h), 0.1)
        return torch.tanh(self.post(h))


class TinyDiscriminator(nn.Module):
    """Two strided convs; returns one score map and two feature maps per input."""

    def __init__(self, stride: int = 4):
        super().__init__()
        self.convs = nn.ModuleList([nn.Conv1d(1, 8, 15, stride=stride, padding=7),
                                    nn.Conv1d(8, 8, 9, stride=stride, padding=4)])
        self.out = nn.Conv1d(8, 1, 3, padding=1)

    def _one(self, x):
        features = []
        for conv in self.convs:
            x = torch.nn.functional.leaky_relu(conv(x), 0.2)
            features.append(x)
        return DiscriminatorOutput(self.out(x), features)

    def forward(self, real, fake, mel=None):
        return ([] if real is None else [self._one(real)]), ([] if fake is None else [self._one(fake)])


def outputs(*scores):
    return [DiscriminatorOutput(torch.tensor(s), [torch.tensor(s) * 2]) for s in scores]


def test_gan_losses_match_their_definitions():
    real, fake = outputs([0.5, 1.5], [2.0]), outputs([0.0, -0.5], [1.0])
    lsgan = ((1 - 0.5) ** 2 + (1 - 1.5) ** 2) / 2 + (0 + 0.25) / 2 + (1 - 2.0) ** 2 + 1.0
    assert discriminator_loss(real, fake, "lsgan").item() == pytest.approx(lsgan)
    hinge = (0.5 + 0.0) / 2 + (1.0 + 0.5) / 2 + 0.0 + 2.0
    assert discriminator_loss(real, fake, "hinge").item() == pytest.approx(hinge)
    assert generator_adversarial_loss(fake, "lsgan").item() == pytest.approx((1 + 2.25) / 2 + 0.0)
    assert generator_adversarial_loss(fake, "hinge").item() == pytest.approx(0.25 - 1.0)
    fm = (abs(0 - 1) + abs(-1 - 3)) / 2 + abs(2 - 4)
    assert feature_matching_loss(real, fake).item() == pytest.approx(fm)
    with pytest.raises(ConfigError):
        discriminator_loss(real, fake, "wasserstein")


def test_feature_matching_does_not_train_through_the_real_side():
    real_map = torch.ones(3, requires_grad=True)
    fake_map = torch.zeros(3, requires_grad=True)
    loss = feature_matching_loss([DiscriminatorOutput(torch.zeros(1), [real_map])],
                                 [DiscriminatorOutput(torch.zeros(1), [fake_map])])
    loss.backward()
    assert real_map.grad is None and torch.all(fake_map.grad != 0)


def test_a_discriminator_set_concatenates_its_members():
    both = DiscriminatorSet({"a": TinyDiscriminator(2), "b": TinyDiscriminator(4)})
    x = torch.randn(2, 1, 512)
    real, fake = both(x, x.flip(-1))
    assert len(real) == len(fake) == 2
    assert real[0].score.shape[-1] == 512 // 4 and real[1].score.shape[-1] == 512 // 16


def make_trainer(out, steps, *, config=None, dist_info=None, seed=0):
    torch.manual_seed(seed)
    task = AdversarialTask(TinyGenerator(), TinyDiscriminator(), FEATURES,
                           config or AdversarialConfig(mel_weight=5.0, stft_resolutions=SMALL))
    train = ToneDataset(16, 8000, 1024, FEATURES, seed=1)
    val = ToneDataset(4, 8000, 1024, FEATURES, seed=1, split="validation")
    cfg = TrainConfig(steps=steps, batch_size=4, lr=2e-3, log_every=5, val_every=steps,
                      val_batches=1, checkpoint_every=steps, device="cpu", seed=seed,
                      sample_seconds=0.1)
    info = BundleInfo("wavenet", WaveNetConfig(), 8000, FEATURES)
    return Trainer(task, train, val, cfg, out, info, dist_info=dist_info, progress=False)


def test_both_players_train_and_the_discriminator_is_saved(tmp_path):
    trainer = make_trainer(tmp_path / "run", 20)
    g0 = {k: v.clone() for k, v in trainer.task.model.state_dict().items()}
    d0 = {k: v.clone() for k, v in trainer.task.discriminator.state_dict().items()}
    first = trainer.task.validation_metrics(trainer.task.model, next(iter(
        torch.utils.data.DataLoader(trainer.val_set, batch_size=4))))
    last = trainer.fit()
    assert last["mel_l1"] < first["mel_l1"]
    assert any(not torch.equal(v, trainer.task.model.state_dict()[k]) for k, v in g0.items())
    assert any(not torch.equal(v, trainer.task.discriminator.state_dict()[k]) for k, v in d0.items())
    bundle = tmp_path / "run" / "checkpoints" / "step-0000020"
    saved = load_file(str(bundle / "discriminator.safetensors"))
    for name, value in trainer.task.discriminator.state_dict().items():
        assert torch.equal(saved[name], value), name
    assert (tmp_path / "run" / "samples" / "step-0000020" / "generated.wav").is_file()
    # The discriminator is frozen while the generator steps: no weight gradients there.
    assert all(p.grad is None or not p.requires_grad for p in trainer.task.discriminator.parameters())


def test_the_discriminator_starts_late_and_updates_on_its_schedule(tmp_path):
    config = AdversarialConfig(mel_weight=5.0, discriminator_start=3, discriminator_every=2,
                               stft_resolutions=SMALL)
    trainer = make_trainer(tmp_path / "run", 3, config=config)
    d0 = {k: v.clone() for k, v in trainer.task.discriminator.state_dict().items()}
    trainer.fit()
    for k, v in trainer.task.discriminator.state_dict().items():
        assert torch.equal(v, d0[k]), "the discriminator trained before its start step"
    log = (tmp_path / "run" / "log.csv").read_text()
    assert "g_adv" not in log and "d_loss" not in log


def test_resume_restores_the_discriminator_and_both_optimisers_exactly(tmp_path):
    straight = make_trainer(tmp_path / "straight", 8)
    straight.fit()
    first = make_trainer(tmp_path / "split", 4)
    first.fit()
    second = make_trainer(tmp_path / "split", 8)
    second.fit(resume=True)
    for a, b in ((straight.task.model, second.task.model),
                 (straight.task.discriminator, second.task.discriminator)):
        for (name, x), y in zip(a.state_dict().items(), b.state_dict().values()):
            assert torch.equal(x, y), name


def _ddp_worker(rank, world, init_file, out, steps):
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world)
    try:
        make_trainer(out, steps, dist_info=DistInfo(rank, world, rank)).fit()
    finally:
        dist.destroy_process_group()


def test_ddp_trains_each_player_with_only_its_own_parameters(tmp_path):
    """Each objective's module holds the other player's weights; DDP must ignore them (no
    'parameters without gradients' error) and still match one process on the same batch."""
    single = make_trainer(tmp_path / "single", 2)
    single.fit()
    mp.spawn(_ddp_worker, args=(2, str(tmp_path / "init"), str(tmp_path / "ddp"), 2),
             nprocs=2, join=True)
    for name in ("model", "discriminator"):
        a = load_file(str(tmp_path / "single" / "checkpoints" / "step-0000002" / f"{name}.safetensors"))
        b = load_file(str(tmp_path / "ddp" / "checkpoints" / "step-0000002" / f"{name}.safetensors"))
        for key in a:
            assert torch.allclose(a[key], b[key], atol=5e-3), (name, key)
