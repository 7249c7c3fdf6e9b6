"""The VQ bottleneck (nearest codes, straight-through, commitment, EMA, init, restarts, DDP)
and the VQ-autoencoder task trained with the real trainer."""

from __future__ import annotations

import csv
import shutil
from dataclasses import asdict, dataclass
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from safetensors.torch import load_file
from torch import nn

from wavegen.checkpoint import BundleInfo
from wavegen.data.synthetic import ToneDataset
from wavegen.errors import ConfigError, UsageError
from wavegen.nn.vector_quantizer import VectorQuantizer
from wavegen.train.config import TrainConfig
from wavegen.train.tasks.vq import VQTask
from wavegen.train.trainer import Trainer

#: Buffers that ranks must agree on (the generator seed may differ: rank 0's draws are used).
SHARED = ("codebook", "cluster_size", "embed_sum", "initialized", "updates")
BUFFERS = SHARED + ("seed",)


def flat(z: torch.Tensor) -> torch.Tensor:
    """``[B, D, T]`` -> ``[B * T, D]`` in the quantiser's order."""
    return z.transpose(1, 2).reshape(-1, z.shape[1])


def buffers(vq: VectorQuantizer) -> dict[str, torch.Tensor]:
    return {name: getattr(vq, name).clone() for name in BUFFERS}


def is_row_of(vector: torch.Tensor, rows: torch.Tensor, atol: float = 0.0) -> bool:
    return bool(((rows - vector).abs() <= atol).all(1).any())


def initialised(codebook_size: int, dim: int, seed: int = 0, **kwargs) -> VectorQuantizer:
    torch.manual_seed(seed)
    vq = VectorQuantizer(codebook_size, dim, **kwargs)
    vq.set_codebook(torch.randn(codebook_size, dim))
    return vq


def test_codes_are_the_brute_force_nearest_neighbours():
    vq = initialised(32, 8).eval()
    z = torch.randn(3, 8, 50)
    out = vq(z)
    reference = (flat(z).double()[:, None, :] - vq.codebook.double()[None]).pow(2).sum(-1)
    expected = reference.argmin(1).view(3, 50)
    assert out.codes.dtype == torch.int64 and out.codes.shape == (3, 50)
    assert torch.equal(out.codes, expected)
    assert torch.equal(vq.encode(z), expected)
    assert torch.allclose(out.quantized, vq.decode(expected), atol=1e-6)


def test_straight_through_gradient_and_commitment_loss():
    beta = 0.25
    vq = initialised(16, 4, commitment=beta).eval()
    z = torch.randn(2, 4, 10, requires_grad=True)
    out = vq(z)
    q = vq.decode(out.codes)
    assert torch.allclose(out.commitment_loss, beta * (z.detach() - q).pow(2).mean())
    weights = torch.randn_like(z)
    (out.quantized * weights).sum().backward()
    # d loss / dz is exactly d loss / dq: the bottleneck is the identity for gradients.
    assert torch.equal(z.grad, weights)
    z.grad = None
    vq(z).commitment_loss.backward()
    assert torch.allclose(z.grad, 2 * beta * (z.detach() - q) / z.numel())


def test_one_ema_step_matches_a_hand_computation():
    decay, eps = 0.9, 1e-3
    vq = VectorQuantizer(3, 2, ema_decay=decay, epsilon=eps, restart_threshold=0.0)
    vq.set_codebook(torch.tensor([[0.0, 0.0], [1.0, 1.0], [5.0, 5.0]]))
    vq.cluster_size.copy_(torch.tensor([2.0, 1.0, 0.5]))
    vq.embed_sum.copy_(torch.tensor([[0.2, -0.4], [1.5, 0.5], [2.5, 2.0]]))
    vectors = torch.tensor([[0.1, 0.0], [0.2, -0.1], [0.9, 1.2], [1.1, 0.8], [0.0, 0.1]])
    out = vq.train()(vectors.t()[None])
    assert out.codes.tolist() == [[0, 0, 1, 1, 0]]
    counts = torch.tensor([3.0, 2.0, 0.0], dtype=torch.float64)
    sums = torch.tensor([[0.3, 0.0], [2.0, 2.0], [0.0, 0.0]], dtype=torch.float64)
    size = decay * torch.tensor([2.0, 1.0, 0.5], dtype=torch.float64) + (1 - decay) * counts
    embed_sum = (decay * torch.tensor([[0.2, -0.4], [1.5, 0.5], [2.5, 2.0]], dtype=torch.float64)
                 + (1 - decay) * sums)
    total = size.sum()
    smoothed = (size + eps) / (total + 3 * eps) * total
    assert torch.allclose(vq.cluster_size.double(), size, rtol=1e-6)
    assert torch.allclose(vq.embed_sum.double(), embed_sum, rtol=1e-6, atol=1e-7)
    assert torch.allclose(vq.codebook.double(), embed_sum / smoothed[:, None], rtol=1e-5)
    # Perplexity of the histogram (3, 2, 0) / 5 and two of three codes used.
    p = torch.tensor([0.6, 0.4])
    assert torch.allclose(out.perplexity, (-(p * p.log()).sum()).exp())
    assert out.used_fraction.item() == pytest.approx(2 / 3)
    assert out.restarted.item() == 0


def test_codebook_starts_from_the_first_training_batch():
    torch.manual_seed(0)
    vq = VectorQuantizer(6, 3, restart_threshold=0.5)
    z = 10 * torch.randn(1, 3, 6)  # exactly as many (well separated) vectors as codes
    before = buffers(vq)
    vq.eval()(z)
    assert all(torch.equal(before[k], getattr(vq, k)) for k in BUFFERS)  # eval: no init
    assert not vq.initialized
    vq.train()(z)
    assert vq.initialized
    # Each code is one of the batch's vectors, all different (each then wins only itself,
    # so the EMA step keeps it where it is).
    rows = flat(z)
    assert all(is_row_of(code, rows, atol=1e-5) for code in vq.codebook)
    assert len({int(c) for c in vq.encode(z).flatten()}) == 6
    # Fewer vectors than codes: drawn with replacement (here all copies of the one vector).
    small = VectorQuantizer(8, 3, restart_threshold=0.5)
    z = torch.randn(1, 3, 1)
    small.train()(z)
    assert torch.allclose(small.codebook, flat(z).expand(8, 3), atol=1e-5)


def test_a_dead_code_is_restarted_to_a_batch_vector():
    vq = VectorQuantizer(4, 2)
    centres = torch.tensor([[0.0, 0.0], [3.0, 0.0], [0.0, 3.0], [100.0, 100.0]])
    vq.set_codebook(centres)
    torch.manual_seed(1)
    vectors = centres[:3].repeat(4, 1) + 0.1 * torch.randn(12, 2)
    out = vq.train()(vectors.t()[None])
    assert out.restarted.item() == 1
    assert is_row_of(vq.codebook[3], vectors)
    assert vq.cluster_size[3].item() == vq.start_count == 1.0
    assert (vq.cluster_size[:3] >= 1.0).all()  # the used codes were kept
    assert torch.allclose(vq.codebook[:3], centres[:3], atol=0.1)


def test_eval_mode_changes_no_buffer():
    vq = initialised(16, 4)
    vq.train()(torch.randn(2, 4, 30))
    before = buffers(vq)
    out = vq.eval()(torch.randn(2, 4, 30))
    assert out.restarted.item() == 0
    for name in BUFFERS:
        assert torch.equal(before[name], getattr(vq, name)), name


def test_encode_decode_round_trip_of_codebook_vectors():
    vq = initialised(32, 8)
    codes = torch.randint(0, 32, (2, 20))
    decoded = vq.decode(codes)
    assert decoded.shape == (2, 8, 20)
    assert torch.equal(decoded[1, :, 5], vq.codebook[codes[1, 5]])
    assert torch.equal(vq.encode(decoded), codes)
    with pytest.raises(UsageError):
        vq.decode(torch.full((1, 2), 32))
    with pytest.raises(UsageError):
        vq.encode(torch.randn(1, 7, 5))
    with pytest.raises(ConfigError):
        VectorQuantizer(8, 4, ema_decay=1.0)


def test_codebook_stays_float32_under_bf16_autocast():
    vq = initialised(16, 8)
    encoder = nn.Conv1d(1, 8, 3, padding=1)
    start = vq.codebook.clone()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        z = encoder(torch.randn(2, 1, 40))
        out = vq.train()(z)
    assert z.dtype == torch.bfloat16 and out.quantized.dtype == torch.bfloat16
    assert out.commitment_loss.dtype == torch.float32
    for name in ("codebook", "cluster_size", "embed_sum"):
        assert getattr(vq, name).dtype == torch.float32, name
    assert not torch.equal(vq.codebook, start) and torch.isfinite(vq.codebook).all()
    (out.quantized.float().sum() + out.commitment_loss).backward()
    assert encoder.weight.grad is not None and torch.isfinite(encoder.weight.grad).all()


def test_state_dict_round_trip_restores_identical_behaviour():
    torch.manual_seed(3)
    vq = VectorQuantizer(16, 4)  # initialised from its first batch
    for _ in range(3):
        vq.train()(torch.randn(2, 4, 12))
    fresh = VectorQuantizer(16, 4)
    fresh.load_state_dict(vq.state_dict())
    assert fresh.initialized
    z = torch.randn(2, 4, 12)
    a = vq(z)
    b = fresh.train()(z)  # would re-initialise if the flag had not been restored
    assert torch.equal(a.codes, b.codes) and torch.equal(a.quantized, b.quantized)
    assert a.restarted.item() == b.restarted.item()
    for name in BUFFERS:
        assert torch.equal(getattr(vq, name), getattr(fresh, name)), name


# ---------------------------------------------------------------------- DDP


def _batches(steps: int, seed: int, shift: float = 0.0) -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(4, 4, 16, generator=g) + shift for _ in range(steps)]


def _start_codebook() -> torch.Tensor:
    return torch.randn(8, 4, generator=torch.Generator().manual_seed(99))


def _ddp_worker(rank: int, world: int, init_file: str, out: str) -> None:
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world)
    try:
        # EMA only: each rank sees half of every batch.
        vq = VectorQuantizer(8, 4, restart_threshold=0.0)
        vq.set_codebook(_start_codebook())
        for z in _batches(3, seed=0):
            vq.train()(z[2 * rank:2 * rank + 2])
        # Init from the first batch and restarts, with different data and RNG per rank.
        torch.manual_seed(rank)
        restarter = VectorQuantizer(32, 4)
        restarted = [int(restarter.train()(z).restarted)
                     for z in _batches(4, seed=10 + rank, shift=4.0 * rank)]
        torch.save({"ema": buffers(vq), "restarts": buffers(restarter), "restarted": restarted},
                   Path(out) / f"rank{rank}.pt")
    finally:
        dist.destroy_process_group()


def test_ddp_ranks_keep_identical_codebooks_equal_to_one_process(tmp_path):
    mp.spawn(_ddp_worker, args=(2, str(tmp_path / "init"), str(tmp_path)), nprocs=2, join=True)
    ranks = [torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in range(2)]
    single = VectorQuantizer(8, 4, restart_threshold=0.0)
    single.set_codebook(_start_codebook())
    for z in _batches(3, seed=0):
        single.train()(z)
    for name in SHARED:
        assert torch.equal(ranks[0]["ema"][name], ranks[1]["ema"][name]), name
        # The all-reduced statistics are the whole batch's, to float rounding.
        assert torch.allclose(ranks[0]["ema"][name].float(), getattr(single, name).float(),
                              atol=1e-6), name
        assert torch.equal(ranks[0]["restarts"][name], ranks[1]["restarts"][name]), name
    assert ranks[0]["restarts"]["initialized"]
    assert ranks[0]["restarted"] == ranks[1]["restarted"] and sum(ranks[0]["restarted"]) > 0


# ---------------------------------------------------------------------- trainer + VQTask


@dataclass
class TinyConfig:
    channels: int = 32
    codebook_size: int = 64
    dim: int = 16
    commitment: float = 0.02
    ema_decay: float = 0.99

    def to_dict(self):
        return asdict(self)


class TinyVQAutoencoder(nn.Module):
    """Strided-conv encoder (8x down) -> VQ (64 x 16) -> transposed-conv decoder."""

    def __init__(self, config: TinyConfig):
        super().__init__()
        c = config.channels
        self.config = config
        self.encoder = nn.Sequential(
            nn.Conv1d(1, c, 4, stride=2, padding=1), nn.ReLU(),
            nn.Conv1d(c, c, 4, stride=2, padding=1), nn.ReLU(),
            nn.Conv1d(c, c, 4, stride=2, padding=1), nn.ReLU(),
            nn.Conv1d(c, config.dim, 1))
        self.quantizer = VectorQuantizer(config.codebook_size, config.dim, commitment=config.commitment, ema_decay=config.ema_decay)
        self.decoder = nn.Sequential(
            nn.Conv1d(config.dim, c, 3, padding=1), nn.ReLU(),
            nn.ConvTranspose1d(c, c, 4, stride=2, padding=1), nn.ReLU(),
            nn.ConvTranspose1d(c, c, 4, stride=2, padding=1), nn.ReLU(),
            nn.ConvTranspose1d(c, 1, 4, stride=2, padding=1))

    def autoencode(self, audio: torch.Tensor):
        out = self.quantizer(self.encoder(audio))
        return self.decoder(out.quantized), [out]


RATE, CROP = 8000, 1024
RESOLUTIONS = ((256, 64, 256), (128, 32, 128), (64, 16, 64))


def vq_trainer(out: Path, steps: int) -> Trainer:
    torch.manual_seed(0)
    model = TinyVQAutoencoder(TinyConfig())
    task = VQTask(model, resolutions=RESOLUTIONS)
    config = TrainConfig(steps=steps, batch_size=8, lr=1e-3, log_every=10, val_every=20,
                         val_batches=1, checkpoint_every=30, sample_seconds=0.05, device="cpu")
    return Trainer(task, ToneDataset(64, RATE, CROP), ToneDataset(8, RATE, CROP, split="val"),
                   config, out, BundleInfo("vq-test", model.config, RATE), progress=False)


def validation_values(out: Path, name: str) -> list[float]:
    with open(out / "log.csv") as handle:
        return [float(r["value"]) for r in csv.DictReader(handle)
                if r["kind"] == "val" and r["name"] == name]


def test_vq_autoencoder_trains_and_resumes_with_its_codebook(tmp_path, one_thread):
    straight = vq_trainer(tmp_path / "straight", 60)
    val_set = straight.val_set
    val_batch = {"audio": torch.stack([val_set[i]["audio"] for i in range(len(val_set))])}
    untrained = straight.task.validation_metrics(straight.task.model, val_batch)
    assert not straight.task.model.quantizer.initialized  # validation is eval mode
    last = straight.fit()
    losses = validation_values(tmp_path / "straight", "loss")  # steps 20, 40, 60
    assert len(losses) == 3 and losses[-1] < min(losses[0], 0.85 * untrained["loss"]), \
        (untrained["loss"], losses)
    assert last["perplexity"] > 2 and 0 < last["used"] <= 1, last
    assert {"loss", "recon", "mr_stft", "perplexity", "sample_mr_stft"} <= set(last)
    samples = tmp_path / "straight" / "samples" / "step-0000060"
    assert (samples / "reconstruction.wav").is_file() and (samples / "reference.wav").is_file()

    # Resume the same run from its step-30 checkpoint: the codebook buffers come back with
    # the weights (no re-initialisation), and training continues exactly as before.
    resumed_dir = tmp_path / "resumed"
    shutil.copytree(tmp_path / "straight" / "checkpoints" / "step-0000030",
                    resumed_dir / "checkpoints" / "step-0000030")
    (resumed_dir / "checkpoints" / "latest").write_text("step-0000030\n")
    resumed = vq_trainer(resumed_dir, 60)
    resumed._resume()
    saved = load_file(str(resumed_dir / "checkpoints" / "step-0000030" / "model.safetensors"))
    assert saved["quantizer.initialized"]
    quantizer = resumed.task.model.quantizer
    for name in BUFFERS:
        assert torch.equal(getattr(quantizer, name), saved[f"quantizer.{name}"]), name
    resumed.fit(resume=True)
    a, b = straight.task.model.state_dict(), resumed.task.model.state_dict()
    for key in a:
        assert torch.equal(a[key], b[key]), key
