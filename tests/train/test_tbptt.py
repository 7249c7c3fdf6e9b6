"""Truncated-BPTT training (SampleRNN): the stream plan, the likelihood task's carried
states, and the trainer's exact resume in the middle of a stream group."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from safetensors.torch import load_file
from torch.utils.data import default_collate

from wavegen.checkpoint import load_training_state
from wavegen.cli import main
from wavegen.data.streams import StreamChunks
from wavegen.data.synthetic import ToneDataset
from wavegen.errors import ConfigError
from wavegen.models.samplernn import SampleRNN, SampleRNNConfig
from wavegen.train.build import build_datasets, build_task, bundle_info
from wavegen.train.data_plan import DataPlan, StreamPlan
from wavegen.train.distributed import DistInfo
from wavegen.train.recipe import load_recipe
from wavegen.train.tasks.likelihood import LikelihoodTask
from wavegen.train.trainer import Trainer

ROOT = Path(__file__).resolve().parents[2]
SAMPLERNN = ROOT / "recipes" / "samplernn-tiny.yaml"
WAVENET = ROOT / "recipes" / "wavenet-tones-tiny.yaml"

# --------------------------------------------------------------------------- the stream plan


def steps_of(plan: StreamPlan, epoch: int = 0, start: int = 0) -> list[list[list[int]]]:
    """The plan's micro-batches grouped by optimiser step."""
    flat = list(plan.micro_batches(epoch, start))
    a = plan.accumulate
    return [flat[i:i + a] for i in range(0, len(flat), a)]


def test_every_lane_reads_the_chunks_of_one_stream_on_consecutive_steps():
    plan = StreamPlan(10 * 4, batch_size=3, seed=5, chunks=4)
    assert plan.streams == 10 and plan.steps_per_epoch == 3 * 4  # 10 streams: 3 groups of 3
    steps = [batches[0] for batches in steps_of(plan)]
    assert len(steps) == 12 and all(len(lanes) == 3 for lanes in steps)
    for group in range(3):
        first = steps[group * 4]
        for j in range(4):
            items = steps[group * 4 + j]
            assert [i % 4 for i in items] == [j] * 3  # chunk j on the group's step j
            assert [i // 4 for i in items] == [i // 4 for i in first]  # same stream per lane
    # every stream of the epoch once, in the epoch's order; the partial group is dropped
    streams = [i // 4 for g in range(3) for i in steps[g * 4]]
    order = plan.order(0).tolist()
    assert sorted(order) == list(range(10)) and streams == order[:9]
    assert len(set(streams)) == 9
    # another epoch, another order (the same for the same seed)
    assert plan.order(1).tolist() != order
    assert StreamPlan(40, 3, seed=5, chunks=4).order(1).tolist() == plan.order(1).tolist()


def test_a_plan_started_in_the_middle_of_a_group_is_the_tail_of_the_epoch():
    plan = StreamPlan(8 * 3, batch_size=2, accumulate=2, seed=1, chunks=3)
    full = list(plan.micro_batches(2))
    for start in (1, 4, 5, plan.steps_per_epoch - 1):
        assert list(plan.micro_batches(2, start)) == full[start * 2:], start
    assert list(plan.micro_batches(2, plan.steps_per_epoch)) == []
    assert plan.steps_per_epoch == 12
    assert plan.position(13) == (1, 1) and plan.position(5) == (0, 5)


def test_ranks_and_micro_batches_split_the_lanes_and_keep_them_for_the_whole_group():
    chunks, batch, streams = 4, 8, 19
    single = StreamPlan(streams * chunks, batch, seed=3, chunks=chunks)
    ranks = [StreamPlan(streams * chunks, batch, accumulate=2, world_size=2, rank=r, seed=3,
                        chunks=chunks) for r in range(2)]
    assert all(p.steps_per_epoch == single.steps_per_epoch == 2 * chunks for p in ranks)
    whole = steps_of(single)
    split = [steps_of(p) for p in ranks]
    for step in range(single.steps_per_epoch):
        parts = [split[r][step][m] for m in range(2) for r in range(2)]
        assert all(len(part) == 2 for part in parts)  # 8 lanes / 2 micro / 2 ranks
        # micro-batch-major, rank-minor: exactly the single process's batch, in order
        assert sum(parts, []) == whole[step][0]
    for r in range(2):
        for m in range(2):
            for group in range(2):
                lanes = [split[r][group * chunks + j][m] for j in range(chunks)]
                assert all([i // chunks for i in lane] == [i // chunks for i in lanes[0]]
                           for lane in lanes)
                assert all([i % chunks for i in lane] == [j, j] for j, lane in enumerate(lanes))


@pytest.mark.parametrize("kwargs,word", [
    (dict(dataset_size=30, batch_size=2, chunks=4), "not whole streams of 4 chunks"),
    (dict(dataset_size=32, batch_size=2, chunks=0), "not whole streams of 0 chunks"),
    (dict(dataset_size=32, batch_size=6, accumulate=4, chunks=4), "does not split"),
    (dict(dataset_size=32, batch_size=4, accumulate=2, world_size=4, chunks=4), "does not split"),
    (dict(dataset_size=12, batch_size=4, chunks=4), "3 streams, fewer than one batch (4 lanes)"),
])
def test_bad_stream_plans_are_one_line_config_errors(kwargs, word):
    with pytest.raises(ConfigError) as info:
        StreamPlan(**kwargs)
    assert word in str(info.value) and "\n" not in str(info.value)


def test_the_trainer_plans_streams_for_a_stream_chunks_recipe(tmp_path, one_thread):
    recipe = load_recipe(SAMPLERNN, ["train.batch_size=2"])
    train_set, val_set = build_datasets(recipe)
    assert isinstance(train_set, StreamChunks) and train_set.chunks == 4
    assert train_set[5]["audio"].shape == val_set[0]["audio"].shape == (1, 512)
    trainer = Trainer(build_task(recipe), train_set, val_set, recipe.train, tmp_path,
                      bundle_info(recipe), progress=False)
    assert isinstance(trainer.plan, StreamPlan) and trainer.plan.chunks == 4
    assert trainer.plan.streams == recipe.data.size
    plain = load_recipe(SAMPLERNN, ["data.stream_chunks=1"])
    train_set, _ = build_datasets(plain)
    assert not isinstance(train_set, StreamChunks)
    trainer = Trainer(build_task(plain), train_set, None, plain.train, tmp_path / "plain",
                      bundle_info(plain), progress=False)
    assert type(trainer.plan) is DataPlan


# --------------------------------------------------------------------------- the task


def tiny_samplernn(seed: int = 0) -> SampleRNN:
    torch.manual_seed(seed)
    model = SampleRNN(SampleRNNConfig(frame_sizes=(4, 2), dim=16, embedding_dim=8,
                                      num_classes=16, mlp_layers=2, sample_rate=8000))
    with torch.no_grad():  # learned initial states away from zero: a reset is visible
        model.initial_hidden.normal_(0, 0.5)
    return model


CHUNKS, LENGTH = 4, 64


def stream_batches(lanes: list[int], seed: int = 3) -> list[dict]:
    """The CHUNKS collated batches of the streams ``lanes``, in order."""
    streams = StreamChunks(ToneDataset(8, 8000, CHUNKS * LENGTH, seed=seed), CHUNKS)
    return [default_collate([streams[s * CHUNKS + j] for s in lanes]) for j in range(CHUNKS)]


def by_hand(model: SampleRNN, batches: list[dict]) -> list[torch.Tensor]:
    state, losses = None, []
    for batch in batches:
        loss, state = model.tbptt_loss(batch["audio"], None, None, state, batch["chunk"] == 0)
        losses.append(loss)
    return losses


def test_the_objective_carries_each_lanes_state_like_tbptt_loss_by_hand(one_thread):
    model = tiny_samplernn()
    task = LikelihoodTask(model)
    objective = task.objectives()["model"].module
    # two micro-batches of different streams per step, as with accumulate 2
    first, second = stream_batches([4, 1]), stream_batches([0, 6])
    losses = {0: [], 1: []}
    for j in range(CHUNKS):
        task.set_step(j)
        for m, batches in enumerate((first, second)):
            loss, metrics = objective(batches[j])
            assert metrics["nll"] == loss.item()
            losses[m].append(loss)
        assert sorted(task.state_dict()["carried"]) == ["0,6", "4,1"]
        assert {e["step"] for e in task.state_dict()["carried"].values()} == {j}
    for m, batches in enumerate((first, second)):
        expected = by_hand(model, batches)
        for j in range(CHUNKS):
            assert torch.equal(losses[m][j], expected[j]), (m, j)
    # the state really is carried: chunk 1 from a fresh state scores differently
    fresh, _ = model.tbptt_loss(first[1]["audio"])
    assert not torch.equal(fresh, losses[0][1])


def test_chunk_zero_starts_a_lane_afresh_and_finished_streams_are_dropped(one_thread):
    model = tiny_samplernn()
    task = LikelihoodTask(model)
    objective = task.objectives()["model"].module
    batches = stream_batches([2, 5])
    for j in range(CHUNKS):
        task.set_step(j)
        objective(batches[j])
    # the same streams again from chunk 0 (as in a later epoch): a fresh start
    task.set_step(CHUNKS)
    again, _ = objective(batches[0])
    fresh, _ = model.tbptt_loss(batches[0]["audio"])
    assert torch.equal(again, fresh)
    # continuing the state the streams' last chunk left would score differently
    state = None
    for batch in batches:
        _, state = model.tbptt_loss(batch["audio"], None, None, state)
    continued, _ = model.tbptt_loss(batches[0]["audio"], None, None, state)
    assert not torch.equal(continued, again)
    # the next group: new streams start afresh, the old group's state is let go
    others = stream_batches([7, 3])
    for j in range(2):
        task.set_step(CHUNKS + 1 + j)
        objective(others[j])
    assert list(task.state_dict()["carried"]) == ["7,3"]


def test_the_task_state_round_trips_and_a_run_without_it_restarts_the_streams(one_thread):
    model = tiny_samplernn()
    task = LikelihoodTask(model)
    assert task.state_dict() == {}
    objective = task.objectives()["model"].module
    batches = stream_batches([1, 6])
    for j in range(2):
        task.set_step(j)
        objective(batches[j])
    saved = task.state_dict()
    task.set_step(2)
    expected, _ = objective(batches[2])

    restored = LikelihoodTask(model)
    restored.load_state_dict(saved)
    restored.set_step(2)
    loss, _ = restored.objectives()["model"].module(batches[2])
    assert torch.equal(loss, expected)

    lost = LikelihoodTask(model)
    lost.load_state_dict({})
    lost.set_step(2)
    loss, _ = lost.objectives()["model"].module(batches[2])
    fresh, _ = model.tbptt_loss(batches[2]["audio"])
    assert torch.equal(loss, fresh) and not torch.equal(loss, expected)


# --------------------------------------------------------------------------- end to end

FAST = ["--no-progress", "--set", "train.val_every=3", "--set", "train.checkpoint_every=3",
        "--set", "train.batch_size=2", "--set", "train.sample_seconds=0",
        "--set", "train.ema_decay=0.9", "--set", "data.stream_chunks=4"]


def train(out: Path, steps: int, *extra: str) -> int:
    return main(["train", str(SAMPLERNN), "--out", str(out), "--set", f"train.steps={steps}",
                 *FAST, *extra])


def weights(out: Path, step: int) -> dict[str, dict[str, torch.Tensor]]:
    folder = out / "checkpoints" / f"step-{step:07d}"
    return {name: load_file(str(folder / name)) for name in ("model.safetensors", "ema.safetensors")}


def test_resume_in_the_middle_of_a_stream_group_is_bitwise(tmp_path, one_thread):
    assert train(tmp_path / "straight", 6) == 0
    assert train(tmp_path / "split", 3) == 0  # step 3 = chunk 3 of the first group
    # the checkpoint holds the lanes' carried state, written by the step before
    checkpoint = tmp_path / "split" / "checkpoints" / "step-0000003"
    state = load_training_state(checkpoint)
    recipe = load_recipe(SAMPLERNN, ["train.batch_size=2", "data.stream_chunks=4"])
    plan = StreamPlan(recipe.data.size * 4, 2, seed=recipe.train.seed, chunks=4)
    lanes = plan.order(0).tolist()[:2]
    carried = state["task"]["carried"]
    assert list(carried) == [",".join(map(str, lanes))]
    entry = carried[",".join(map(str, lanes))]
    assert entry["step"] == 2
    assert entry["state"]["history"].shape == (2, 8)  # top frame 8
    assert entry["state"]["h"].shape == (2, 1, 2, 64)  # tiers, layers, lanes, dim
    assert entry["state"]["h"].abs().sum() > 0

    negative = tmp_path / "negative"
    shutil.copytree(tmp_path / "split", negative)
    assert train(tmp_path / "split", 6, "--resume") == 0
    a, b = weights(tmp_path / "straight", 6), weights(tmp_path / "split", 6)
    for name in a:
        assert a[name].keys() == b[name].keys() and a[name]
        for key in a[name]:
            assert torch.equal(a[name][key], b[name][key]), (name, key)

    # negative control: without the carried state the resumed lanes restart their streams
    # at chunk 3, and the weights differ
    bundle = negative / "checkpoints" / "step-0000003"
    state = load_training_state(bundle)
    del state["task"]
    torch.save(state, bundle / "training_state.pt")
    assert train(negative, 6, "--resume") == 0
    c = weights(negative, 6)
    assert any(not torch.equal(a["model.safetensors"][key], c["model.safetensors"][key])
               for key in a["model.safetensors"])


def test_stream_chunks_for_a_model_without_tbptt_loss_is_refused_in_one_line(tmp_path, capsys):
    out = tmp_path / "x"
    assert main(["train", str(WAVENET), "--out", str(out), "--set", "data.stream_chunks=4"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "stream_chunks 4" in err and "tbptt_loss" in err
    assert not out.exists()
    with pytest.raises(ConfigError, match="truncated BPTT"):
        load_recipe(WAVENET, ["data.stream_chunks=4"])


# --------------------------------------------------------------------------- DDP


def _ddp_worker(rank: int, world: int, init_file: str, root: str) -> None:
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world)
    try:
        info = DistInfo(rank, world, rank)
        for out, steps, resume in (("straight", 4, False), ("split", 2, False),
                                   ("split", 4, True)):
            recipe = load_recipe(SAMPLERNN, [f"train.steps={steps}", "train.batch_size=4",
                                             "train.checkpoint_every=2", "train.val_every=100",
                                             "train.sample_seconds=0", "model.dim=16",
                                             "model.embedding_dim=8", "data.crop_samples=64"])
            train_set, val_set = build_datasets(recipe)
            Trainer(build_task(recipe), train_set, val_set, recipe.train, Path(root) / out,
                    bundle_info(recipe), dist_info=info, progress=False).fit(resume=resume)
    finally:
        dist.destroy_process_group()


def test_ddp_resume_in_the_middle_of_a_stream_group_is_bitwise(tmp_path):
    """Every rank carries its own lanes' states: the checkpoint must keep all of them."""
    mp.spawn(_ddp_worker, args=(2, str(tmp_path / "init"), str(tmp_path)), nprocs=2, join=True)
    state = load_training_state(tmp_path / "split" / "checkpoints" / "step-0000002")
    ranks = state["task_ranks"]
    assert len(ranks) == 2 and state["task"] == ranks[0]
    keys = [list(rank["carried"]) for rank in ranks]
    assert all(len(k) == 1 for k in keys) and keys[0] != keys[1]  # two lanes each, disjoint
    lanes = {int(s) for k in keys for s in k[0].split(",")}
    assert len(lanes) == 4
    a = load_file(str(tmp_path / "straight" / "checkpoints" / "step-0000004" / "model.safetensors"))
    b = load_file(str(tmp_path / "split" / "checkpoints" / "step-0000004" / "model.safetensors"))
    assert a.keys() == b.keys() and a
    for key in a:
        assert torch.equal(a[key], b[key]), key


# --------------------------------------------------------------------------- CUDA


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_a_run_on_the_gpu_resumes_its_carried_state(tmp_path):
    """The training state loads on the CPU; the carried state must follow the model."""
    gpu = ["--set", "train.device=cuda"]
    assert train(tmp_path / "straight", 6, *gpu) == 0
    assert train(tmp_path / "split", 3, *gpu) == 0
    assert train(tmp_path / "split", 6, "--resume", *gpu) == 0
    a, b = weights(tmp_path / "straight", 6), weights(tmp_path / "split", 6)
    for key in a["model.safetensors"]:
        assert torch.allclose(a["model.safetensors"][key], b["model.safetensors"][key],
                              atol=1e-4), key
