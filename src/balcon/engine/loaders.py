"""balcon's DataLoaders: their worker settings, and the workers' end at interpreter exit.

Workers leave the stop signals (SIGTERM, SIGINT, SIGUSR1) to the main process, which
stops at a step boundary and checkpoints: a signal sent to every process of a job
(Slurm at its time limit, Ctrl-C to the process group) would otherwise kill a worker
mid-batch and fail that step, or interrupt the checkpoint write with PyTorch's
"worker killed" error.

The price of ignoring SIGTERM: at interpreter exit, :mod:`multiprocessing` ends its
daemonic children with SIGTERM and then waits for each. A worker of a loader still
alive then (a loader in a reference cycle, kept by a notebook or by an exception's
traceback) would never end, and the process would hang after its work was done. So a
worker ignores SIGTERM only while its process is not exiting: the first loader with
workers registers :func:`_exiting` with :mod:`atexit`, which raises a flag in shared
memory that the workers' SIGTERM handler reads. It runs before multiprocessing's own
handler (atexit runs last-registered first, and this module imports
``multiprocessing.util``, which registers that handler, before any loader exists).
``tests/test_loaders.py`` checks both halves: a worker outlives a SIGTERM, and a process
with such a loader alive exits.

Loaders iterated once (evaluation of a checkpoint, prediction, the report pass) have
no persistent workers: they end with the pass. The training loader and the
selection loader keep theirs across epochs.
"""

from __future__ import annotations

import atexit
import ctypes
import functools
import multiprocessing
import multiprocessing.util  # its exit handler is registered on import: before ours
import os
import signal
from typing import Any

import torch
from torch.utils.data import DataLoader, DistributedSampler

from balcon.config import DataConfig
from balcon.data import ImageSet, make_eval_dataset
from balcon.engine.device import default_num_workers
from balcon.engine.distributed import DistContext
from balcon.errors import STOP_SIGNALS

__all__ = ["EVAL_BATCH", "eval_loader", "loader_options"]

#: Images per evaluation batch (per process).
EVAL_BATCH = 256

_EXITING: Any = None  # shared flag: this process is exiting (see the module docstring)


def _exiting() -> None:
    """At exit: let the workers end on multiprocessing's SIGTERM."""
    _EXITING.value = True


def _worker_signals(exiting: Any, worker_id: int) -> None:
    """A worker's init: SIGINT and SIGUSR1 ignored, SIGTERM too unless ``exiting`` is set."""
    for sig in STOP_SIGNALS:
        signal.signal(sig, signal.SIG_IGN)

    def on_sigterm(signum: int, frame: Any) -> None:
        if exiting.value:  # the main process is exiting: end, as multiprocessing asks
            os._exit(0)

    signal.signal(signal.SIGTERM, on_sigterm)


def loader_options(data: DataConfig, device: torch.device, ctx: DistContext | None = None,
                   persistent: bool = False) -> dict[str, Any]:
    """DataLoader workers, pinned memory and (``persistent``: kept across passes) persistent
    workers for ``device``.

    With ``data.num_workers`` null, each of a node's processes takes its share of the
    node's cores (see :func:`~balcon.engine.device.default_num_workers`).
    """
    global _EXITING
    ctx = ctx or DistContext()
    workers = data.num_workers
    if workers is None:
        workers = default_num_workers(device, ctx.local_world_size)
    options: dict[str, Any] = dict(num_workers=workers, pin_memory=device.type == "cuda")
    if workers == 0:
        return options
    if _EXITING is None:
        _EXITING = multiprocessing.RawValue(ctypes.c_bool, False)
        atexit.register(_exiting)
    return dict(options, persistent_workers=persistent,
                worker_init_fn=functools.partial(_worker_signals, _EXITING))


def eval_loader(images: ImageSet, data: DataConfig, device: torch.device,
                ctx: DistContext | None = None, persistent: bool = False) -> DataLoader:
    """A deterministic loader over ``images`` (test-time views); sharded over the ranks of
    a multi-process run. ``persistent``: for a loader iterated every epoch."""
    ctx = ctx or DistContext()
    dataset = make_eval_dataset(images, data)
    sampler = (DistributedSampler(dataset, num_replicas=ctx.world_size, rank=ctx.rank,
                                  shuffle=False) if ctx.enabled else None)
    return DataLoader(dataset, batch_size=EVAL_BATCH, shuffle=False, sampler=sampler,
                      **loader_options(data, device, ctx, persistent))
