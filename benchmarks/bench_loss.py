"""Benchmark balcon's vectorised BCL loss against the official formulation.

What it compares: ``balcon.losses.BalancedContrastiveLoss`` (class-averaging and
class-complement on) against ``official_bcl_loss`` (from ``reference_trainer.py``), a
baseline written from the way the official code (``FlamieZhu/BCL``,
``loss/contrastive.py``, ``BalSCL``) computes the same loss: a dense one-hot
``eye(C)[targets]`` for the class counts, dense (2B, 2B + C) masks, and per-column
weights built by a Python loop over all 2B + C targets (one indexing op and one
``.item()`` each, so a device-to-host sync per element on a GPU). Both run on the same
inputs in the same process.

Inputs: ``features`` (B, 2, D) with each view L2-normalised, ``centers`` (C, D)
L2-normalised, both requiring grad; labels uniform at random over the C classes;
D = 128, temperature 0.1, seed 0. Before timing, the two losses (and their gradients)
are compared on exactly these inputs in float32; the script aborts if the losses differ
by a relative error of 1e-4 or more (or the gradients by 1e-3 or more, relative norm).

What it measures, per C:
- time: one forward + backward (``loss.backward()`` into ``features.grad`` and
  ``centers.grad``), after ``--warmup`` untimed iterations; the median over
  ``--repeats`` timed iterations, wall clock (``time.perf_counter``), with
  ``torch.cuda.synchronize()`` before starting and before stopping the clock on CUDA.
  The two implementations' iterations are interleaved (alternating which goes first) so
  that drift in the machine's speed hits both alike; the progress lines also give the
  quartiles, a measure of how noisy the machine was;
- peak memory: the peak of bytes allocated on the device during one forward + backward
  above what was allocated before it starts (the inputs are excluded, the gradients of
  ``features`` and ``centers`` are included). On CUDA this is
  ``torch.cuda.max_memory_allocated()`` minus ``torch.cuda.memory_allocated()`` taken
  after ``reset_peak_memory_stats()``. On CPU, where PyTorch keeps no allocator
  statistics, it is the peak of the running sum of the allocation and free events
  (``[memory]`` events) that ``torch.profiler`` records with ``profile_memory=True``
  during one untimed iteration. Both count tensor bytes requested from PyTorch's
  allocator, not the process's resident memory; CPU numbers exclude allocator caching.

Command line (from the repository root; on a machine where balcon is not installed,
``PYTHONPATH=src`` makes it importable, and the script also falls back to ``src``)::

    python benchmarks/bench_loss.py [--device cpu|cuda|auto] [--batch 256]
        [--classes 100 1000 8142] [--repeats N] [--warmup N] [--threads N] [--markdown]

e.g. ``python benchmarks/bench_loss.py --device cpu --markdown`` or, on a GPU machine,
``PYTHONPATH=src python benchmarks/bench_loss.py --device cuda --markdown``.
Only torch, the standard library and ``balcon.losses`` are imported.
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch
import torch.nn.functional as F
from machine import cpu_model  # benchmarks/machine.py, beside this script
from reference_trainer import official_bcl_loss  # the published way, beside this script
from torch import Tensor

try:
    from balcon.losses import BalancedContrastiveLoss
except ImportError:  # running from a source tree without PYTHONPATH=src
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
    from balcon.losses import BalancedContrastiveLoss

DIM = 128
TEMPERATURE = 0.1
SEED = 0
LOSS_RTOL = 1e-4
GRAD_RTOL = 1e-3


def make_inputs(
    batch: int, num_classes: int, device: torch.device
) -> tuple[Tensor, Tensor, Tensor]:
    """Normalised ``features`` (B, 2, D) and ``centers`` (C, D) requiring grad, labels (B,)."""
    gen = torch.Generator().manual_seed(SEED)
    features = F.normalize(torch.randn(batch, 2, DIM, generator=gen), dim=2)
    centers = F.normalize(torch.randn(num_classes, DIM, generator=gen), dim=1)
    labels = torch.randint(0, num_classes, (batch,), generator=gen)
    features = features.to(device).requires_grad_(True)
    centers = centers.to(device).requires_grad_(True)
    return features, centers, labels.to(device)


def make_steps(
    ours: BalancedContrastiveLoss, features: Tensor, centers: Tensor, labels: Tensor,
    num_classes: int,
) -> tuple[Callable[[], Tensor], Callable[[], Tensor]]:
    """Two closures running one forward + backward of ours and of the official loss."""

    def step_ours() -> Tensor:
        features.grad = centers.grad = None
        loss = ours(features, labels, centers)
        loss.backward()
        return loss

    def step_official() -> Tensor:
        features.grad = centers.grad = None
        loss = official_bcl_loss(centers, features, labels, num_classes, TEMPERATURE)
        loss.backward()
        return loss

    return step_ours, step_official


def relative_error(a: Tensor, b: Tensor) -> float:
    """``|a - b| / |b|`` in the 2-norm, in float64."""
    a, b = a.detach().double(), b.detach().double()
    return float((a - b).norm() / b.norm().clamp(min=1e-30))


def check_agreement(step_ours: Callable[[], Tensor], step_official: Callable[[], Tensor],
                    features: Tensor, centers: Tensor) -> tuple[float, float]:
    """Loss and gradient relative errors of ours against the official; exit if too large."""
    grads = []
    losses = []
    for step in (step_ours, step_official):
        features.grad = centers.grad = None
        losses.append(step().detach())
        grads.append(torch.cat([features.grad.flatten(), centers.grad.flatten()]))
    features.grad = centers.grad = None
    loss_err = relative_error(losses[0], losses[1])
    grad_err = relative_error(grads[0], grads[1])
    if not (loss_err < LOSS_RTOL and grad_err < GRAD_RTOL):
        sys.exit(
            f"ABORT: the losses disagree: ours {losses[0].item():.8g}, official "
            f"{losses[1].item():.8g}, loss rel. error {loss_err:.3g} (limit {LOSS_RTOL:g}), "
            f"grad rel. error {grad_err:.3g} (limit {GRAD_RTOL:g})"
        )
    return loss_err, grad_err


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_steps(steps: list[Callable[[], Tensor]], device: torch.device, warmup: int,
               repeats: int) -> list[list[float]]:
    """Wall times in ms of each ``step()`` (forward + backward), ``repeats`` each.

    The steps are interleaved, in alternating order, so that a machine whose speed drifts
    (shared virtual CPUs, GPU clocks) slows all of them alike.
    """
    for _ in range(warmup):
        for step in steps:
            step()
    times: list[list[float]] = [[] for _ in steps]
    for r in range(repeats):
        order = list(range(len(steps)))
        for k in order if r % 2 == 0 else order[::-1]:
            sync(device)
            start = time.perf_counter()
            steps[k]()
            sync(device)
            times[k].append(1e3 * (time.perf_counter() - start))
    return times


def spread(times: list[float]) -> str:
    """Median and quartiles of ``times``, for the progress lines."""
    if len(times) < 2:
        return f"{times[0]:.2f} ms"
    q1, _, q3 = statistics.quantiles(times, n=4)
    return f"{statistics.median(times):.2f} ms (quartiles {q1:.2f}-{q3:.2f})"


def cpu_peak_bytes(step: Callable[[], Tensor]) -> int | None:
    """Peak of the running sum of CPU allocations/frees seen by the profiler in ``step()``."""
    from torch.profiler import ProfilerActivity, profile

    try:
        with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
            step()
        events = [e for e in prof.profiler.kineto_results.events() if e.name() == "[memory]"]
        events.sort(key=lambda e: e.start_ns())
        live = peak = 0
        for event in events:
            if event.device_type() != torch.autograd.DeviceType.CPU:
                continue
            live += event.nbytes()
            peak = max(peak, live)
    except (AttributeError, RuntimeError):  # profiler internals differ in this torch
        return None
    return peak if events else None


def peak_bytes(step: Callable[[], Tensor], device: torch.device) -> int | None:
    """Peak bytes allocated during one ``step()`` above what was allocated before it."""
    if device.type == "cuda":
        sync(device)
        torch.cuda.reset_peak_memory_stats(device)
        before = torch.cuda.memory_allocated(device)
        step()
        sync(device)
        return torch.cuda.max_memory_allocated(device) - before
    return cpu_peak_bytes(step)


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    model = cpu_model()
    return f"{model} ({os.cpu_count()} logical cores, torch threads {torch.get_num_threads()})"


def fmt_mib(n: int | None) -> str:
    return "n/a" if n is None else f"{n / 2**20:.1f}"


def fmt_ratio(num: int | float | None, den: int | float | None) -> str:
    return "n/a" if num is None or den is None or den == 0 else f"{num / den:.1f}x"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", choices=["cpu", "cuda", "auto"], default="auto",
                        help="auto: cuda if available, else cpu")
    parser.add_argument("--batch", type=int, default=256, help="B, samples per batch")
    parser.add_argument("--classes", type=int, nargs="+", default=[100, 1000, 8142],
                        help="values of C to run")
    parser.add_argument("--repeats", type=int, default=None,
                        help="timed iterations per setting (default 30 on CPU, 50 on CUDA)")
    parser.add_argument("--warmup", type=int, default=None,
                        help="untimed iterations first (default 3 on CPU, 10 on CUDA)")
    parser.add_argument("--threads", type=int, default=None,
                        help="torch.set_num_threads (default: leave as is)")
    parser.add_argument("--markdown", action="store_true", help="print a markdown table")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    if args.device == "auto":
        args.device = "cuda" if torch.cuda.is_available() else "cpu"
    if args.device == "cuda" and not torch.cuda.is_available():
        sys.exit("--device cuda asked for, but torch.cuda.is_available() is False")
    device = torch.device(args.device)
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    on_cuda = device.type == "cuda"
    repeats = args.repeats if args.repeats is not None else (50 if on_cuda else 30)
    warmup = args.warmup if args.warmup is not None else (10 if on_cuda else 3)

    now = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    header = [
        f"date: {now}",
        f"device: {device.type}, {device_name(device)}",
        f"torch {torch.__version__}, python {platform.python_version()}, "
        f"{platform.system()} {platform.machine()}",
        f"B={args.batch}, D={DIM}, T={TEMPERATURE}, float32, forward+backward, "
        f"median of {repeats} after {warmup} warm-up",
    ]
    print("\n".join(header), flush=True)

    ours = BalancedContrastiveLoss(temperature=TEMPERATURE)
    rows = []
    for num_classes in args.classes:
        features, centers, labels = make_inputs(args.batch, num_classes, device)
        step_ours, step_official = make_steps(ours, features, centers, labels, num_classes)
        loss_err, grad_err = check_agreement(step_ours, step_official, features, centers)
        print(f"C={num_classes}: agree, loss rel. error {loss_err:.2e}, "
              f"grad rel. error {grad_err:.2e}", flush=True)
        times_ours, times_official = time_steps([step_ours, step_official], device, warmup,
                                                repeats)
        t_ours, t_official = statistics.median(times_ours), statistics.median(times_official)
        # Gradients of the last timed step are dropped first, so that their freeing inside
        # the measured step does not offset its peak.
        features.grad = centers.grad = None
        m_ours = peak_bytes(step_ours, device)
        features.grad = centers.grad = None
        m_official = peak_bytes(step_official, device)
        features.grad = centers.grad = None
        rows.append((num_classes, t_ours, t_official, m_ours, m_official))
        print(f"C={num_classes}: ours {spread(times_ours)}, official {spread(times_official)}",
              flush=True)

    columns = ["device", "C", "ours ms", "official ms", "speedup", "ours peak MiB",
               "official peak MiB", "memory ratio"]
    table = [
        [device.type, str(c), f"{to:.2f}", f"{tf:.2f}", fmt_ratio(tf, to), fmt_mib(mo),
         fmt_mib(mf), fmt_ratio(mf, mo)]
        for c, to, tf, mo, mf in rows
    ]
    print()
    if args.markdown:
        print("| " + " | ".join(columns) + " |")
        print("|" + "|".join(" --- " if i < 2 else " ---: " for i in range(len(columns))) + "|")
        for row in table:
            print("| " + " | ".join(row) + " |")
    else:
        widths = [max(len(col), *(len(row[i]) for row in table)) for i, col in enumerate(columns)]
        print("  ".join(col.rjust(w) for col, w in zip(columns, widths, strict=True)))
        for row in table:
            print("  ".join(cell.rjust(w) for cell, w in zip(row, widths, strict=True)))
    print("\nspeedup = official ms / ours ms; memory ratio = official peak / ours peak")


if __name__ == "__main__":
    main()
