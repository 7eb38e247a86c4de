"""Training on several processes with PyTorch's own DDP, started by ``torchrun``.

``torchrun --nproc-per-node N -m vaelab.cli train ...`` sets RANK, WORLD_SIZE and the
rendezvous variables; :func:`context` then joins the process group (gloo on CPU, NCCL on
CUDA) and every part of the trainer asks it what this process does: the sampler keeps the
rank's share of each global batch, only rank 0 writes the run directory, validation sums
are reduced across ranks, and the model is wrapped in ``DistributedDataParallel`` so its
forward hooks average gradients and broadcast buffers. One process (no torchrun) gets the
plain context and none of this. Across machines, torchrun's own rendezvous options
(``--nnodes``, ``--rdzv-backend``, ``--rdzv-endpoint``) start the same command on each.
"""
from __future__ import annotations

import datetime
import os
from dataclasses import dataclass

import torch

from ..errors import VaelabError


@dataclass
class Context:
    """What this process is in the job: its rank, the number of processes, whether it writes."""

    rank: int = 0
    world: int = 1

    @property
    def writer(self) -> bool:
        return self.rank == 0

    @property
    def active(self) -> bool:
        return self.world > 1

    def wrap(self, model, device: torch.device):
        """The module the trainer calls: DDP around ``model`` in a multi-process job."""
        if not self.active:
            return model
        from torch.nn.parallel import DistributedDataParallel

        ids = [device.index] if device.type == "cuda" else None
        return DistributedDataParallel(model, device_ids=ids, find_unused_parameters=len(model.phases()) > 1)

    def sum(self, tensor: torch.Tensor) -> torch.Tensor:
        """``tensor`` summed over every rank (itself in one process)."""
        if not self.active:
            return tensor
        import torch.distributed as dist

        out = tensor.clone()
        dist.all_reduce(out)
        return out

    def any(self, flag: bool) -> bool:
        """Whether any rank raised ``flag`` (a stop request reaches every rank at the same step)."""
        if not self.active:
            return flag
        return bool(self.sum(torch.tensor([1.0 if flag else 0.0], dtype=torch.float64)).item() > 0)

    def gather(self, tensor: torch.Tensor) -> list[torch.Tensor]:
        """Every rank's ``tensor`` (same shape on all), in rank order."""
        if not self.active:
            return [tensor]
        import torch.distributed as dist

        parts = [torch.empty_like(tensor) for _ in range(self.world)]
        dist.all_gather(parts, tensor)
        return parts

    def barrier(self) -> None:
        if self.active:
            import torch.distributed as dist

            dist.barrier()


def context(device: torch.device) -> Context:
    """The job this process belongs to, joining torchrun's process group where there is one."""
    world = int(os.environ.get("WORLD_SIZE", "1") or 1)
    if world <= 1:
        return Context()
    import torch.distributed as dist

    if not dist.is_available():
        raise VaelabError("this torch build has no torch.distributed; train with one process")
    rank = int(os.environ.get("RANK", "0"))
    if not dist.is_initialized():
        backend = "nccl" if device.type == "cuda" else "gloo"
        timeout = datetime.timedelta(seconds=int(os.environ.get("VAELAB_DIST_TIMEOUT", "600")))
        dist.init_process_group(backend, timeout=timeout)
    return Context(rank=dist.get_rank(), world=dist.get_world_size()) if rank == dist.get_rank() else \
        Context(rank=rank, world=world)


def local_device(name: str) -> str:
    """``cuda`` becomes ``cuda:LOCAL_RANK`` under torchrun, one GPU per process."""
    if name in ("cuda", "auto") and torch.cuda.is_available() and "LOCAL_RANK" in os.environ:
        return f"cuda:{int(os.environ['LOCAL_RANK'])}"
    return name
