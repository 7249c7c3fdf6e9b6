"""Process-group set-up for DDP: torchrun's environment, NCCL on GPUs and gloo on CPUs."""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class DistInfo:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def is_main_process() -> bool:
    """Whether this process is rank 0 of a torchrun launch (or not launched by torchrun);
    usable before the process group exists."""
    return int(os.environ.get("RANK", "0")) == 0


def init_from_environment(device_type: str) -> DistInfo:
    """Join the process group torchrun describes (RANK, WORLD_SIZE, ...); single process
    otherwise. Already-initialised groups (e.g. tests using mp.spawn) are reused."""
    if dist.is_available() and dist.is_initialized():
        return DistInfo(dist.get_rank(), dist.get_world_size(),
                        int(os.environ.get("LOCAL_RANK", dist.get_rank())))
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return DistInfo()
    backend = "nccl" if device_type == "cuda" else "gloo"
    dist.init_process_group(backend=backend)
    info = DistInfo(dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", 0)))
    if device_type == "cuda":
        torch.cuda.set_device(info.local_rank)
    return info


def all_reduce_mean(values: dict[str, float], info: DistInfo) -> dict[str, float]:
    """Average scalar metrics over ranks (identity for one process)."""
    if not info.enabled or not values:
        return values
    keys = sorted(values)
    tensor = torch.tensor([values[k] for k in keys], dtype=torch.float64, device=_reduce_device())
    dist.all_reduce(tensor)
    return {k: float(v) / info.world_size for k, v in zip(keys, tensor.tolist())}


def gather_states(state: Any, info: DistInfo) -> list[Any]:
    """Every rank's ``state`` (plain containers of tensors and numbers), in rank order, on
    every rank, its tensors moved to the CPU; ``[state]`` for one process. E.g. what each
    rank carries between steps, for the main rank to checkpoint."""
    if not info.enabled:
        return [state]
    states: list[Any] = [None] * info.world_size
    dist.all_gather_object(states, _to_cpu(state))
    return states


def _to_cpu(value: Any) -> Any:
    if torch.is_tensor(value):
        return value.detach().cpu()
    if isinstance(value, dict):
        return {k: _to_cpu(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(_to_cpu(v) for v in value)
    return value


def _reduce_device() -> torch.device:
    """Where collectives' tensors must live: NCCL reduces CUDA tensors only."""
    if dist.get_backend() == "nccl":
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


def barrier(info: DistInfo) -> None:
    if info.enabled:
        dist.barrier()


def all_ranks_ok(ok: bool, info: DistInfo) -> bool:
    """Whether ``ok`` holds on every rank (each rank passes its own; identity for one
    process). Lets every rank stop together when one of them cannot go on, e.g. the main
    rank could not claim the run folder, instead of the others waiting forever."""
    if not info.enabled:
        return ok
    flag = torch.tensor([0.0 if ok else 1.0], dtype=torch.float64, device=_reduce_device())
    dist.all_reduce(flag)
    return float(flag) == 0.0
