"""Training on several processes (torchrun): who this process is, its share of the slices, and the few
collective operations the Trainer needs. With one process every function here is a no-op, so the
single-process run stays exactly what it was.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import timedelta

import numpy as np
import torch
import torch.distributed as dist


@dataclass(frozen=True)
class World:
    """This process's place among the training processes (torchrun's RANK, WORLD_SIZE, LOCAL_RANK)."""

    rank: int = 0
    size: int = 1
    local_rank: int = 0

    @property
    def distributed(self) -> bool:
        return self.size > 1

    @property
    def is_main(self) -> bool:
        """Rank 0 alone writes checkpoints, logs, the exported model, and validates."""
        return self.rank == 0


def world_from_env() -> World:
    """The World torchrun describes in the environment; one process when it is absent."""
    return World(int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1)), int(os.environ.get("LOCAL_RANK", 0)))


def start(world: World, device: torch.device) -> None:
    """Join the process group: NCCL between GPUs, gloo between CPU processes."""
    if device.type == "cuda" and device.index is not None:
        torch.cuda.set_device(device)  # NCCL's collectives use the current device
    if world.distributed and not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo", rank=world.rank, world_size=world.size,
                                timeout=timedelta(minutes=30))


def stop() -> None:
    if dist.is_initialized():
        dist.destroy_process_group()


def rank_seed(seed: int, world: World) -> int:
    """The seed of this rank's sampling generator: `seed` itself in one process (unchanged behaviour),
    else a well-mixed value derived from (seed, rank) so that no two ranks draw alike."""
    if not world.distributed:
        return seed
    return int(np.random.SeedSequence([seed, world.rank]).generate_state(1, np.uint64)[0] >> 1)


class ShardSampler:
    """Random slice indices from this rank's shard: every `size`-th slice starting at `rank`, so the
    shards are disjoint, cover every slice, and each holds slices of every subject."""

    def __init__(self, count: int, world: World = World()) -> None:
        if count < world.size:
            raise ValueError(f"{count} training slices cannot be shared among {world.size} processes")
        self.indices = torch.arange(world.rank, count, world.size)

    def draw(self, batch: int, generator: torch.Generator) -> torch.Tensor:
        return self.indices[torch.randint(len(self.indices), (batch,), generator=generator)]


def gather_to_all(value: object, world: World) -> list:
    """Every rank's `value` (picklable), in rank order; [value] in one process."""
    if not world.distributed:
        return [value]
    values: list = [None] * world.size
    dist.all_gather_object(values, value)
    return values


def any_rank(flag: bool, world: World, device: torch.device) -> bool:
    """True on every rank when it is true on any (a cancel seen by one rank stops all at the same step)."""
    if not world.distributed:
        return flag
    tensor = torch.tensor([int(flag)], device=device)
    dist.all_reduce(tensor, op=dist.ReduceOp.MAX)
    return bool(tensor.item())
