"""PyTorch DDP under `torchrun`: the trainer's only view of distribution.

    torchrun --nproc_per_node 2 -m semloc train STORE --out RUN

gloo on CPU, NCCL on GPU. The rule that makes a run independent of the number of processes:

* ``train.batch_size`` is the GLOBAL batch. With W processes each rank takes batch_size / W posts
  per step (batch_size must be divisible by W).
* Every rank draws the same seeded permutation as the single-process `EpochShuffleSampler`, cuts
  it into the same global batches, and takes its interleaved share of each (rank r gets positions
  r, r + W, r + 2W, ... of the batch).
* Each rank's mean loss is weighted by its share of the global batch before DDP averages the
  gradients, so the update is the mean over the global batch even when the last batch of an epoch
  splits unevenly.

So W processes compute the same gradients as one process, up to the order of float additions;
with dropout 0 the runs agree to float precision (tests/test_ddp.py checks it). The only
difference: a final partial batch smaller than W cannot give every rank a post, so under DDP those
(< W) posts are skipped for that epoch (a different few each epoch).

Dev predictions come from contiguous slices of the dev split and are gathered in rank order before
metrics are computed, so every rank sees the same metrics and takes the same early-stopping
decision. Only rank 0 writes files.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

import torch
import torch.distributed as tdist
from torch import nn
from torch.utils.data import Sampler

from semloc.errors import ConfigError, SemlocError
from semloc.features.loader import EpochShuffleSampler


def is_launched() -> bool:
    """True inside a process started by torchrun with more than one process."""
    return int(os.environ.get("WORLD_SIZE", "1")) > 1 and "RANK" in os.environ


class GlobalBatchShareSampler(Sampler[int]):
    """Rank `rank`'s interleaved share of each global batch of the single-process permutation.

    Fed to a DataLoader with batch_size = global_batch / world, it yields exactly one local batch
    per global batch: every full global batch contributes global_batch / world posts, and only the
    last one may contribute fewer.
    """

    def __init__(
        self, num_items: int, seed: int, global_batch: int, rank: int, world_size: int
    ) -> None:
        self.order = EpochShuffleSampler(num_items, seed)  # the single-process order, reused
        self.num_items, self.global_batch = num_items, global_batch
        self.rank, self.world_size = rank, world_size

    def set_epoch(self, epoch: int) -> None:
        self.order.set_epoch(epoch)

    def _spans(self) -> Iterator[tuple[int, int]]:
        for start in range(0, self.num_items, self.global_batch):
            stop = min(start + self.global_batch, self.num_items)
            if stop - start >= self.world_size:  # else some rank would get an empty batch
                yield start, stop

    def __iter__(self) -> Iterator[int]:
        perm = list(iter(self.order))
        for start, stop in self._spans():
            yield from perm[start + self.rank : stop : self.world_size]

    def __len__(self) -> int:
        return sum(len(range(a + self.rank, b, self.world_size)) for a, b in self._spans())


class ContiguousSlice(Sampler[int]):
    """Rank `rank`'s contiguous, unpadded slice of 0..n-1: gathering in rank order restores it."""

    def __init__(self, n: int, rank: int, world_size: int) -> None:
        per = -(-n // world_size)
        self.start, self.stop = min(n, rank * per), min(n, (rank + 1) * per)

    def __iter__(self) -> Iterator[int]:
        return iter(range(self.start, self.stop))

    def __len__(self) -> int:
        return self.stop - self.start


class DistContext:
    """One rank of a torch.distributed job; passed to `Trainer(dist=...)` and `train_run`."""

    def __init__(self, rank: int, world_size: int, local_rank: int, device: torch.device) -> None:
        self.rank, self.world_size, self.local_rank = rank, world_size, local_rank
        self.device = device

    @classmethod
    def from_env(cls, device_name: str = "auto") -> DistContext:
        """Join the process group torchrun describes in the environment (env:// rendezvous)."""
        rank = int(os.environ["RANK"])
        world = int(os.environ["WORLD_SIZE"])
        local = int(os.environ.get("LOCAL_RANK", "0"))
        use_cuda = torch.cuda.is_available() and device_name in ("auto", "cuda")
        if use_cuda:
            torch.cuda.set_device(local)
            device = torch.device("cuda", local)
        else:
            device = torch.device("cpu")
        if not tdist.is_initialized():
            tdist.init_process_group("nccl" if use_cuda else "gloo")
        return cls(rank, world, local, device)

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def wrap(self, model: nn.Module) -> nn.Module:
        ids = [self.device.index] if self.device.type == "cuda" else None
        return nn.parallel.DistributedDataParallel(model, device_ids=ids)

    # ------------------------------------------------------------------ data

    def local_batch_size(self, global_batch: int) -> int:
        if global_batch % self.world_size:
            raise ConfigError(
                f"train.batch_size={global_batch} is the global batch and must be divisible by "
                f"the number of processes ({self.world_size})"
            )
        return global_batch // self.world_size

    def train_sampler(self, num_items: int, seed: int, global_batch: int) -> Sampler:
        if num_items < self.world_size:
            raise SemlocError(
                f"{num_items} training post(s) cannot be spread over {self.world_size} processes"
            )
        self.local_batch_size(global_batch)
        return GlobalBatchShareSampler(num_items, seed, global_batch, self.rank, self.world_size)

    def eval_sampler(self, num_items: int) -> Sampler:
        return ContiguousSlice(num_items, self.rank, self.world_size)

    # ------------------------------------------------------------------ reductions

    def global_share(self, local_weight: float) -> float:
        """world_size * local / sum over ranks: multiplying a rank's mean loss by this turns DDP's
        average of per-rank gradients into the gradient of the mean over the global batch."""
        t = torch.tensor([local_weight], dtype=torch.float64, device=self.device)
        tdist.all_reduce(t)
        total = float(t[0])
        return self.world_size * local_weight / total if total > 0 else 1.0

    def sum_pair(self, a: float, b: float) -> tuple[float, float]:
        t = torch.tensor([a, b], dtype=torch.float64, device=self.device)
        tdist.all_reduce(t)
        return float(t[0]), float(t[1])

    def gather_predictions(self, preds: Any) -> Any:
        from semloc.outputs import Predictions

        parts: list[Any] = [None] * self.world_size
        tdist.all_gather_object(parts, preds)
        return Predictions.concat(parts)  # a rank with no dev posts contributes nothing

    def barrier(self) -> None:
        tdist.barrier()

    def close(self) -> None:
        if tdist.is_initialized():
            tdist.destroy_process_group()
