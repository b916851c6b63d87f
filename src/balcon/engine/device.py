"""Device choice and mixed precision."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator

import torch

from balcon.errors import BalconError

__all__ = [
    "autocast",
    "check_precision",
    "default_num_workers",
    "inference_precision",
    "make_grad_scaler",
    "resolve_device",
]


def resolve_device(name: str | None = None) -> torch.device:
    """``name`` as a device (``cpu``, ``cuda``, ``cuda:N``); CUDA when present if None."""
    if name is None or name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise BalconError(f"--device {name!r} is not a device; use cpu, cuda or cuda:N") from None
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise BalconError(f"--device {name}: CUDA is not available here; use --device cpu")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise BalconError(
                f"--device {name}: only {torch.cuda.device_count()} CUDA device(s) here"
            )
    elif device.type != "cpu":
        raise BalconError(f"--device {name!r} is not supported; use cpu, cuda or cuda:N")
    return device


def check_precision(device: torch.device, precision: str) -> None:
    """Refuse a precision the device cannot train with (fp16 needs CUDA)."""
    if precision == "fp16" and device.type != "cuda":
        raise BalconError("train.precision fp16 needs CUDA; use bf16 or off on the CPU")


def inference_precision(device: torch.device, precision: str) -> str:
    """The precision to predict with: a run's own, except fp16 on the CPU (then off)."""
    return "off" if precision == "fp16" and device.type != "cuda" else precision


@contextlib.contextmanager
def autocast(device: torch.device, precision: str) -> Iterator[None]:
    """Autocast to bf16 or fp16 per ``precision`` (``off``: full float32)."""
    if precision == "off":
        yield
        return
    dtype = torch.bfloat16 if precision == "bf16" else torch.float16
    check_precision(device, precision)
    with torch.autocast(device.type, dtype=dtype):
        yield


def make_grad_scaler(device: torch.device, precision: str) -> torch.amp.GradScaler:
    """A gradient scaler, active for fp16 only."""
    return torch.amp.GradScaler(device.type, enabled=precision == "fp16")


def default_num_workers(device: torch.device, processes_per_node: int = 1) -> int:
    """Data workers of one process when the config leaves it to balcon.

    On a GPU, all cores but two (up to 16 per process) decode and augment, shared
    by the ``processes_per_node`` processes torchrun started on this node, since the
    per-image decoding and augmentation, not the GPU, bounds an epoch. On the CPU the
    model competes with the workers for the same cores, so small machines decode
    in-process.
    """
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    cpus = cpus or 1
    share = max(1, (cpus - 2) // max(1, processes_per_node))
    if device.type == "cuda":
        return max(1, min(16, share))
    return 0 if cpus <= 4 else min(4, share // 4)
