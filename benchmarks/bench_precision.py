"""Precision and memory format on this machine: seconds per step against the FLOP floor.

What it measures, in one run (``--device``, default the CPU), for each setting:

- ``fp32``, ``bf16`` (autocast), ``fp32 + channels_last``, ``bf16 + channels_last`` and
  ``fp32 + torch.compile`` (inductor; its compile time in its own column; left out with
  ``--no-compile``, and reported as failed where it cannot build, e.g. without a C
  compiler);
- two workloads: a BCL training step of ``cifar10-lt-r100`` (ResNet-32, batch 256, three
  views, on resident random tensors: the arithmetic alone) and a whole epoch of the demo
  (``digits-lt-demo``: ResNet-8, batch 32, its views made on the device, as ``balcon demo``
  trains it);
- the FLOP floor of each: the step's forward + backward FLOPs (``torch.utils.flop_counter``)
  divided by this machine's measured peak for a large matrix product (1024^3) in the
  same precision; ``x floor`` is the measured time over that. Where bf16 is emulated the
  matrix product takes a slow fallback (about 1 GFLOP/s), so no floor is given there.

Settings are prepared side by side and timed in ``--rounds`` interleaved rounds (a slow
spell of a shared VM hits all alike); a row is the median round. The header names the CPU
model and its vector flags (AVX2, AVX-512, AVX512-BF16, AMX): bf16 is native only with
AVX512-BF16 or AMX, and emulated (slow) elsewhere.

Command line (from the repository root; no data needed: the demo's digits are bundled)::

    python benchmarks/bench_precision.py [--rounds 3] [--steps 3] [--no-compile]
        [--settings "fp32" "fp32 + channels_last" ...] [--device cpu|cuda] [--out results.md]
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch
from torch.utils.flop_counter import FlopCounterMode

# inductor's caches in a fresh folder: the compile column is a cold compile
os.environ.setdefault("TORCHINDUCTOR_CACHE_DIR", tempfile.mkdtemp(prefix="inductor-"))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
from machine import describe_cpu  # noqa: E402  benchmarks/machine.py

from balcon.config import apply_overrides  # noqa: E402
from balcon.engine.device import cpu_has_native_bf16  # noqa: E402
from balcon.engine.loop import Keeper, train_epoch  # noqa: E402
from balcon.engine.prepare import prepare  # noqa: E402
from balcon.engine.steps import train_step  # noqa: E402
from balcon.presets import load_preset  # noqa: E402

#: (label, train.precision, model.channels_last, torch.compile)
SETTINGS = [
    ("fp32", "off", False, False),
    ("bf16", "bf16", False, False),
    ("fp32 + channels_last", "off", True, False),
    ("bf16 + channels_last", "bf16", True, False),
    ("fp32 + torch.compile", "off", False, True),
]
#: The cifar10-lt-r100 step on the bundled digits (10 classes too): its cost is the
#: model's, batch's and views' alone.
CIFAR_STEP = ["data.dataset=digits", "data.imbalance=10", "data.hflip=false"]


def peak_flops(dtype: torch.dtype, device: torch.device, n: int = 1024) -> float:
    """FLOP/s of the best of four n x n x n matrix products in ``dtype``."""
    a = torch.randn(n, n, device=device).to(dtype)
    b = torch.randn(n, n, device=device).to(dtype)
    best = float("inf")
    for _ in range(4):
        start = time.perf_counter()
        torch.mm(a, b)
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        best = min(best, time.perf_counter() - start)
    return 2 * n**3 / best


def batch_of(run, resident: bool):
    """One batch as train_step takes it: views stacked, on the device."""
    if resident:
        gen = torch.Generator(device=run.device).manual_seed(0)
        b, views, size = run.train_loader.batch_size, run.objective.method.views, 32
        images = torch.randn(b * views, 3, size, size, generator=gen, device=run.device)
        labels = torch.randint(run.splits.train.num_classes, (b,), generator=gen,
                               device=run.device)
        return images, labels
    views, labels = next(iter(run.train_loader))
    return torch.cat(views), labels


def step_flops(run, precision: str) -> float:
    """Forward + backward FLOPs of one training step (its matmuls and convolutions)."""
    images, labels = batch_of(run, resident=True)
    with FlopCounterMode(display=False) as counter:
        train_step(run.train_model, images, labels, run.objective, run.optimizer, run.scaler,
                   precision)
    return float(counter.get_total_flops())


def setup(preset: str, extra: list[str], label: str, precision: str, channels_last: bool,
          compiled: bool, device: str, tmp: Path):
    cfg = apply_overrides(load_preset(preset), [
        f"train.precision={precision}", f"model.channels_last={str(channels_last).lower()}",
        "data.pipeline=device", *extra])
    run = prepare(cfg, None, device)
    compile_s = None
    if compiled:
        run.train_model = torch.compile(run.train_model)
        start = time.perf_counter()
        images, labels = batch_of(run, resident=True)  # compiles for the step's shapes
        train_step(run.train_model, images.contiguous(), labels, run.objective,
                   run.optimizer, run.scaler, precision)
        compile_s = time.perf_counter() - start
    return run, compile_s


def time_cifar_step(run, precision: str, channels_last: bool, steps: int) -> float:
    memory = torch.channels_last if channels_last else torch.contiguous_format
    images, labels = batch_of(run, resident=True)
    images = images.contiguous(memory_format=memory)
    times = []
    for i in range(steps + 1):  # the first is a warm-up
        start = time.perf_counter()
        train_step(run.train_model, images, labels, run.objective, run.optimizer, run.scaler,
                   precision)
        if run.device.type == "cuda":
            torch.cuda.synchronize(run.device)
        if i:
            times.append(time.perf_counter() - start)
    return statistics.mean(times)


def time_demo_epoch(run, precision: str, channels_last: bool, epoch: int) -> float:
    start = time.perf_counter()
    train_epoch(run, epoch, Keeper())  # the run's own precision and memory format
    return time.perf_counter() - start


def measure(args: argparse.Namespace) -> list[dict]:
    device = torch.device(args.device)
    settings = [s for s in SETTINGS if not (s[3] and args.no_compile)
                and (not args.settings or s[0] in args.settings)]
    peaks = {p: peak_flops(torch.float32 if p == "off" else torch.bfloat16, device)
             for p in ("off", "bf16")}
    rows: list[dict] = []
    flops: dict[str, float] = {}  # per workload: the same in every setting
    with tempfile.TemporaryDirectory() as tmp:
        prepared = {}
        for label, precision, channels_last, compiled in settings:
            for work, preset, extra in (("cifar10-lt-r100 BCL step", "cifar10-lt-r100",
                                         CIFAR_STEP), ("demo epoch", "digits-lt-demo", [])):
                try:
                    run, compile_s = setup(preset, extra, label, precision, channels_last,
                                           compiled, args.device, Path(tmp))
                except Exception as err:  # e.g. torch.compile without a C compiler
                    print(f"{label} {work}: failed ({type(err).__name__}: "
                          f"{str(err).splitlines()[0][:120]})", flush=True)
                    continue
                if work not in flops:  # counted in fp32, which comes first
                    steps = len(run.train_loader) if work == "demo epoch" else 1
                    flops[work] = step_flops(run, precision) * steps
                # emulated bf16 has no meaningful peak (torch.mm falls back to a slow path)
                emulated = precision == "bf16" and device.type == "cpu" and \
                    not cpu_has_native_bf16()
                prepared[(label, work)] = (run, precision, channels_last, compile_s,
                                           None if emulated else flops[work] / peaks[precision])
                print(f"prepared {label} {work}" + ("" if compile_s is None else
                                                   f" (compiled in {compile_s:.0f} s)"),
                      flush=True)
        times: dict[tuple, list[float]] = {key: [] for key in prepared}
        for r in range(args.rounds):
            for key, (run, precision, channels_last, _, _) in prepared.items():
                t = (time_demo_epoch(run, precision, channels_last, r) if key[1] == "demo epoch"
                     else time_cifar_step(run, precision, channels_last, args.steps))
                times[key].append(t)
                print(f"round {r + 1}: {key[0]:22s} {key[1]:26s} {t:7.3f} s", flush=True)
        for key, (_, _, _, compile_s, floor) in prepared.items():
            seconds = statistics.median(times[key])
            rows.append({"setting": key[0], "work": key[1], "seconds": seconds,
                         "floor": floor, "compile_s": compile_s,
                         "rounds": times[key]})
    return rows, peaks


def table(rows: list[dict], peaks: dict[str, float], args: argparse.Namespace) -> str:
    device = (torch.cuda.get_device_name() if args.device.startswith("cuda")
              else f"{describe_cpu()}, {torch.get_num_threads()} threads")
    head = (f"bench_precision.py, {datetime.date.today()}, {device}, torch {torch.__version__}, "
            f"Python {platform.python_version()}; matmul peak fp32 {peaks['off'] / 1e9:.0f} "
            f"GFLOP/s, bf16 {peaks['bf16'] / 1e9:.0f} GFLOP/s; median of {args.rounds} "
            f"interleaved rounds (a cifar step: mean of {args.steps} after 1 warm-up)")
    lines = ["| work | setting | seconds | FLOP floor (s) | x floor | compile (s) | rounds |",
             "| --- | --- | --- | --- | --- | --- | --- |"]
    for r in sorted(rows, key=lambda r: r["work"]):
        compile_s = "" if r["compile_s"] is None else f"{r['compile_s']:.0f}"
        rounds = ", ".join(f"{t:.2f}" for t in r["rounds"])
        floor, ratio = (("emulated", "-") if r["floor"] is None else
                        (f"{r['floor']:.3f}", f"{r['seconds'] / r['floor']:.1f}"))
        lines.append(f"| {r['work']} | {r['setting']} | {r['seconds']:.3f} | {floor} | "
                     f"{ratio} | {compile_s} | {rounds} |")
    return head + "\n\n" + "\n".join(lines) + "\n"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--steps", type=int, default=3, help="timed cifar steps per round")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--no-compile", action="store_true")
    p.add_argument("--settings", nargs="*", metavar="LABEL",
                   help=f"only these settings (of: {'; '.join(s[0] for s in SETTINGS)})")
    p.add_argument("--out")
    args = p.parse_args()
    rows, peaks = measure(args)
    text = table(rows, peaks, args)
    print(text)
    if args.out:
        Path(args.out).write_text(text)


if __name__ == "__main__":
    main()
