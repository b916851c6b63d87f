"""Device choice and mixed precision.

``train.precision: auto`` is a fixed rule on the hardware's flags (no timing at start-up),
resolved once when a run starts (:func:`resolve_precision`) and kept by the run:

- CUDA: bf16 on GPUs of compute capability 8.0 or newer (Ampere on), else fp16 with the
  gradient scaler;
- CPU: bf16 where the CPU has native bf16 instructions (AVX512-BF16 or AMX, as torch
  reports them), float32 everywhere else: emulated bf16 measured about 8x slower than
  float32 on an AMD EPYC with AVX2 only (BENCHMARKS.md, "Precision on the CPU").

``BALCON_NATIVE_BF16=0`` (or ``1``) overrides what the CPU reports, e.g. to time the
float32 path on a CPU that has bf16.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import sys
from collections.abc import Iterator

import torch

from balcon.errors import BalconError

__all__ = [
    "NATIVE_BF16_ENV",
    "autocast",
    "can_compile",
    "check_compile",
    "check_precision",
    "cpu_has_native_bf16",
    "default_num_workers",
    "emulated_bf16_warning",
    "inference_precision",
    "make_grad_scaler",
    "resolve_device",
    "resolve_precision",
    "run_precision",
]

#: The environment variable that overrides the CPU's native-bf16 flags (0 or 1).
NATIVE_BF16_ENV = "BALCON_NATIVE_BF16"


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


def cpu_has_native_bf16() -> bool:
    """Whether this CPU computes bf16 natively (AVX512-BF16 or AMX tiles), or what
    ``BALCON_NATIVE_BF16`` says. (``torch.ops.mkldnn._is_mkldnn_bf16_supported`` is not
    the test: it is true on AVX-512 CPUs without bf16 instructions.)"""
    override = os.environ.get(NATIVE_BF16_ENV)
    if override is not None:
        if override not in ("0", "1"):
            raise BalconError(f"{NATIVE_BF16_ENV}={override!r}: set it to 0 (treat this CPU "
                              "as without native bf16) or 1, or unset it")
        return override == "1"
    return bool(torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported())


def resolve_precision(precision: str, device: torch.device) -> tuple[str, str]:
    """``train.precision`` as a run on ``device`` trains with (``off``, ``bf16`` or
    ``fp16``), and why, in words: ``auto`` by the rule of this module, else as set."""
    if precision != "auto":
        return precision, "train.precision"
    if device.type == "cuda":
        major, minor = torch.cuda.get_device_capability(device)
        if major >= 8:
            return "bf16", f"auto: bf16 on this GPU (compute capability {major}.{minor})"
        return "fp16", (f"auto: no bf16 on this GPU (compute capability {major}.{minor}), "
                        "fp16 with a gradient scaler")
    native = cpu_has_native_bf16()
    override = os.environ.get(NATIVE_BF16_ENV)
    said = f", as {NATIVE_BF16_ENV}={override} says" if override is not None else ""
    if native:
        return "bf16", f"auto: native bf16 on this CPU{said}"
    return "off", f"auto: no native bf16 on this CPU{said}"


def run_precision(state: dict | None, configured: str,
                  device: torch.device) -> tuple[str, str]:
    """A run's precision and why: the one its checkpoint ``state`` keeps (a checkpoint that
    keeps none: its config's, never ``auto``), else ``configured`` resolved on ``device``."""
    if state is not None and "precision" in state:
        return state["precision"], state.get("precision_reason", "train.precision")
    return resolve_precision(configured, device)


def emulated_bf16_warning(precision: str, device: torch.device) -> str | None:
    """The warning for bf16 on a CPU that only emulates it (several times slower than
    float32), else None."""
    if precision != "bf16" or device.type != "cpu" or cpu_has_native_bf16():
        return None
    return ("precision bf16 is emulated on this CPU (no native bf16): several times slower "
            "than float32; train.precision=auto picks float32 here")


def check_precision(device: torch.device, precision: str) -> None:
    """Refuse a precision the device cannot train with (fp16 needs CUDA)."""
    if precision == "fp16" and device.type != "cuda":
        raise BalconError("train.precision fp16 needs CUDA; use auto, bf16 or off on the CPU")


def can_compile(device: torch.device) -> bool:
    """Whether ``torch.compile`` can build here: on the CPU it writes C++ and runs the
    compiler torch looks for (``$CXX`` if set, else ``clang++`` on macOS, ``g++``
    elsewhere)."""
    if device.type != "cpu":
        return True
    default = "clang++" if sys.platform == "darwin" else "g++"
    compiler = (os.environ.get("CXX") or default).split()
    return bool(compiler) and shutil.which(compiler[0]) is not None


def check_compile(device: torch.device) -> None:
    """Refuse a new run with ``train.compile`` where it cannot build (before any data is
    read); a resumed one trains eagerly instead (``prepare``)."""
    if not can_compile(device):
        raise BalconError("train.compile=true on the CPU needs the C++ compiler torch uses "
                          "($CXX, else g++): install it or set train.compile=false")


def inference_precision(device: torch.device, precision: str) -> str:
    """The precision to predict with: a run's own (as it trained, so that an evaluation
    repeats the run's numbers), except fp16 on the CPU (then off)."""
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
