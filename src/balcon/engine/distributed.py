"""Multi-process training with PyTorch DDP, as launched by ``torchrun``.

``torchrun --nproc_per_node N -m balcon train ...`` starts N processes and sets
``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK`` and ``LOCAL_WORLD_SIZE``; this module reads
them, joins the process group (NCCL on GPUs, gloo on the CPU) and offers the few
collectives a run needs. Without those variables everything here is a no-op, so a
single-process run takes the same code path.

The BCL loss must see the whole global batch: :func:`gather_with_grad` concatenates
every rank's features; its backward sums the gradient of each slice over the ranks
and hands each rank its own.
Every rank computes the same global loss, so rank r's features receive
``world_size`` times the single-process gradient, which DDP's gradient averaging
divides back: the parameters see exactly the single-process gradient.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist
from torch import Tensor, nn
from torch.nn.parallel import DistributedDataParallel

from balcon.engine.device import resolve_device
from balcon.errors import BalconError, Preempted
from balcon.methods import Method

__all__ = [
    "DistContext",
    "all_reduce_sum",
    "barrier",
    "broadcast_buffers",
    "broadcast_object",
    "context_from_env",
    "ddp_wrap",
    "gather",
    "gather_with_grad",
    "init_distributed",
    "on_every_rank",
    "on_main",
    "shutdown",
]


@dataclass(frozen=True)
class DistContext:
    """Where this process stands in a (possibly single-process) run."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    local_world_size: int = 1

    @property
    def enabled(self) -> bool:
        """Whether more than one process takes part."""
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        """Whether this process logs and writes the run directory (rank 0)."""
        return self.rank == 0


def _env_int(name: str, default: int) -> int:
    value = os.environ.get(name)
    if value is None:
        return default
    try:
        return int(value)
    except ValueError:
        raise BalconError(f"environment variable {name}={value!r} is not an integer; "
                          "launch with torchrun, which sets it") from None


def context_from_env() -> DistContext:
    """The :class:`DistContext` that torchrun's environment variables describe."""
    world = _env_int("WORLD_SIZE", 1)
    return DistContext(
        rank=_env_int("RANK", 0), world_size=world, local_rank=_env_int("LOCAL_RANK", 0),
        local_world_size=_env_int("LOCAL_WORLD_SIZE", world),
    )


def init_distributed(device: str | None = None) -> tuple[DistContext, torch.device]:
    """Join torchrun's process group (once) and pick this process's device.

    On GPUs each process takes ``cuda:LOCAL_RANK`` and the NCCL backend; on the CPU
    (``--device cpu``, or no CUDA) the gloo backend. A single process gets
    :func:`~balcon.engine.device.resolve_device` of ``device`` and no process group.
    """
    ctx = context_from_env()
    if not ctx.enabled:
        return ctx, resolve_device(device)
    chosen = resolve_device(device)
    if chosen.type == "cuda":
        if ctx.local_world_size > torch.cuda.device_count():
            raise BalconError(
                f"torchrun started {ctx.local_world_size} processes on this node but it has "
                f"{torch.cuda.device_count()} GPU(s); lower --nproc_per_node"
            )
        chosen = torch.device("cuda", ctx.local_rank)
        torch.cuda.set_device(chosen)
    if not dist.is_initialized():
        dist.init_process_group("nccl" if chosen.type == "cuda" else "gloo")
    return ctx, chosen


def shutdown() -> None:
    """Leave the process group, if this process joined one."""
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def _active() -> bool:
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


class _GatherWithGrad(torch.autograd.Function):
    """All-gather along dim 0 whose backward sums each slice's gradient over the ranks.

    Written on public collectives (``all_gather``, ``all_reduce``) that every backend
    has; ``torch.distributed.nn.functional.all_gather`` does the same but is deprecated
    in favour of a private module.
    """

    @staticmethod
    def forward(ctx: Any, tensor: Tensor) -> Tensor:
        ctx.rows, ctx.rank = tensor.shape[0], dist.get_rank()
        return gather(tensor)

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> Tensor:
        total = grad.contiguous().clone()
        dist.all_reduce(total)  # every rank's gradient of the whole gathered tensor, summed
        return total[ctx.rank * ctx.rows:(ctx.rank + 1) * ctx.rows]


def gather_with_grad(tensor: Tensor) -> Tensor:
    """Every rank's ``tensor`` concatenated along dim 0 in rank order, differentiable.

    All ranks must pass the same shape. The backward of rank r's slice is the sum of
    that slice's gradient over all ranks (see the module docstring).
    """
    if not _active():
        return tensor
    return _GatherWithGrad.apply(tensor)


@torch.no_grad()
def barrier() -> None:
    """Wait for every rank (no-op in a single process)."""
    if _active():
        dist.barrier()


def gather(tensor: Tensor) -> Tensor:
    """Every rank's ``tensor`` (same shape everywhere) concatenated along dim 0."""
    if not _active():
        return tensor
    parts = [torch.empty_like(tensor) for _ in range(dist.get_world_size())]
    dist.all_gather(parts, tensor.contiguous())
    return torch.cat(parts)


@torch.no_grad()
def all_reduce_sum(tensor: Tensor) -> Tensor:
    """The elementwise sum of ``tensor`` over the ranks (in place; returned)."""
    if _active():
        dist.all_reduce(tensor)
    return tensor


def broadcast_object(obj: Any) -> Any:
    """Rank 0's ``obj`` on every rank (any picklable object)."""
    if not _active():
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def on_main(fn: Any, *args: Any) -> Any:
    """``fn(*args)`` run on rank 0 only; its result, or its BalconError, reaches every rank.

    For the checks only rank 0 can make (the run directory it alone writes), so that
    every rank stops with the same one-line error instead of waiting forever.
    """
    result, error = None, None
    if not _active() or dist.get_rank() == 0:
        try:
            result = fn(*args)
        except BalconError as err:
            error = _kind(err), str(err)
        except OSError as err:  # e.g. a full disk or a read-only folder
            error = "error", f"{err.filename or 'the run directory'}: {err.strerror or err}; " \
                    "check the disk and the permissions, or choose another --out"
    result, error = broadcast_object((result, error))
    if error is not None:
        _raise(*error)
    return result


def _kind(err: BalconError) -> str:
    return "preempted" if isinstance(err, Preempted) else "error"


def _raise(kind: str, message: str) -> None:
    """A shared error again, as the kind it was (a preemption keeps its exit status)."""
    raise (Preempted if kind == "preempted" else BalconError)(message)


def on_every_rank(fn: Any, *args: Any) -> Any:
    """``fn(*args)`` on every rank; if it fails anywhere, every rank raises the same error.

    For work each rank does on its own but that must succeed everywhere (reading the
    data on every node): rank 0 prints one line, its own problem or the first other
    rank's, instead of one rank failing while the others wait in a collective.
    """
    if not _active():
        return fn(*args)
    error = None
    try:
        result = fn(*args)
    except BalconError as err:
        result, error = None, (_kind(err), str(err))
    errors: list[Any] = [None] * dist.get_world_size()
    dist.all_gather_object(errors, error)
    for rank, failure in enumerate(errors):
        if failure is not None:
            kind, message = failure
            _raise(kind, message if rank == 0 else f"process {rank}: {message}")
    return result


@torch.no_grad()
def broadcast_buffers(module: torch.nn.Module) -> None:
    """Copy rank 0's buffers (BatchNorm running statistics) to every rank.

    DDP does this at the start of each forward, but after an epoch's last step each
    rank holds statistics of its own share of the batch; evaluation and checkpoints
    use rank 0's, as the next forward would.
    """
    if _active():
        for buffer in module.buffers():
            dist.broadcast(buffer, src=0)


def ddp_wrap(model: nn.Module, device: torch.device, method: Method) -> nn.Module:
    """``model`` in DistributedDataParallel, for training with ``method``.

    A method that skips a model part (``Method.parts``) leaves that part's parameters
    without gradients, so DDP must look for unused parameters (a little slower);
    a method that uses every part lets it skip that search.
    """
    return DistributedDataParallel(
        model, device_ids=[device.index] if device.type == "cuda" else None,
        find_unused_parameters=not method.all_parts_used,
    )
