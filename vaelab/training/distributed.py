"""Training on several processes with PyTorch's own DDP, started by ``torchrun``.

``torchrun --nproc-per-node N -m vaelab.cli train ...`` sets RANK, WORLD_SIZE and the
rendezvous variables; :func:`context` then joins the process group (gloo on CPU, NCCL on
CUDA) and every part of the trainer asks it what this process does: the sampler keeps the
rank's share of each global batch, only rank 0 writes the run directory, validation sums
are reduced across ranks, and the model is wrapped in ``DistributedDataParallel`` so its
forward hooks average gradients and broadcast buffers. One process (no torchrun) gets the
plain context and none of this. Across machines, torchrun's own rendezvous options
(``--nnodes``, ``--rdzv-backend``, ``--rdzv-endpoint``) start the same command on each.

Every wait on another rank is bounded by the process group's timeout
(``VAELAB_DIST_TIMEOUT`` seconds, default 600), and a rank that died or stopped answering
ends the others with one line (:func:`lost`), never a hang.

Test hook: ``VAELAB_TEST_EXIT_AT=RANK:STEP`` makes that rank exit (status 1) just before
that global step, as a crashed process would, so tests can check what the others do.
"""
from __future__ import annotations

import datetime
import os
from dataclasses import dataclass

import torch

from ..errors import VaelabError, brief


class JobError(VaelabError):
    """An error every rank of the job raises together; rank 0 alone says it."""

    job_wide = True


@dataclass
class Context:
    """What this process is in the job: its rank, the number of processes, whether it writes."""

    rank: int = 0
    world: int = 1
    device: torch.device = torch.device("cpu")  # where collectives run: NCCL needs the GPU

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

        out = tensor.to(self.device, copy=True)
        dist.all_reduce(out)
        return out.to(tensor.device)

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

        own = tensor.to(self.device)
        parts = [torch.empty_like(own) for _ in range(self.world)]
        dist.all_gather(parts, own)
        return [p.to(tensor.device) for p in parts]

    def barrier(self) -> None:
        if self.active:
            import torch.distributed as dist

            if self.device.type == "cuda":
                dist.barrier(device_ids=[self.device.index])
            else:
                dist.barrier()

    def agree(self, action):
        """``action()`` on every rank, then rank 0's result on every rank, or the first failing
        rank's error raised on all of them: a check that one rank can fail (the writer's lock,
        its disk) ends the whole job with one line instead of leaving the others waiting."""
        if not self.active:
            return action()
        import torch.distributed as dist

        try:
            outcome = (None, action())
        except VaelabError as exc:
            outcome = (str(exc), None)
        outcomes = [None] * self.world
        dist.all_gather_object(outcomes, outcome)
        errors = [error for error, _ in outcomes if error is not None]
        if errors:
            raise JobError(errors[0])
        return outcomes[0][1]


def context(device: torch.device) -> Context:
    """The job this process belongs to, joining torchrun's process group where there is one."""
    world = int(os.environ.get("WORLD_SIZE", "1") or 1)
    if world <= 1:
        return Context()
    import torch.distributed as dist

    if not dist.is_available():
        raise VaelabError("this torch build has no torch.distributed; train with one process")
    if not dist.is_initialized():
        backend = "nccl" if device.type == "cuda" else "gloo"
        timeout = datetime.timedelta(seconds=timeout_seconds())
        dist.init_process_group(backend, timeout=timeout)
    collectives = device if device.type == "cuda" else torch.device("cpu")
    if device.type == "cuda":
        torch.cuda.set_device(device)
    return Context(rank=dist.get_rank(), world=dist.get_world_size(), device=collectives)


def timeout_seconds() -> int:
    return int(os.environ.get("VAELAB_DIST_TIMEOUT", "600"))


def lost(exc: BaseException, rank: int, last) -> JobError:
    """One line for a collective that failed because another rank died or stopped answering."""
    kept = f"the last checkpoint {last} is intact" if last.exists() else "no checkpoint was written yet"
    detail = brief(exc).split("] ", 1)[-1].split(". ")[0]  # gloo's text after its source location
    return JobError(f"rank {rank} lost contact with another process of this job (it died, was stopped, or "
                    f"did not answer within {timeout_seconds()} s: {detail}); {kept}: "
                    "run the same command with --resume")


def is_lost(exc: BaseException) -> bool:
    """Whether ``exc`` is a failed collective (a peer gone or timed out), not a bug of ours."""
    import torch.distributed as dist

    kinds = tuple(k for k in (getattr(dist, "DistError", None),) if k is not None)
    text = str(exc)
    return isinstance(exc, kinds) or any(s in text for s in ("Connection closed by peer", "Connection reset",
                                                              "Timed out", "timed out"))


def test_exit(rank: int, step: int) -> None:
    """The ``VAELAB_TEST_EXIT_AT`` hook (see the module's docstring)."""
    where = os.environ.get("VAELAB_TEST_EXIT_AT")
    if where and where == f"{rank}:{step}":
        os._exit(1)


def local_device(name: str) -> str:
    """``cuda`` becomes ``cuda:LOCAL_RANK`` under torchrun, one GPU per process."""
    if name in ("cuda", "auto") and torch.cuda.is_available() and "LOCAL_RANK" in os.environ:
        return f"cuda:{int(os.environ['LOCAL_RANK'])}"
    return name
