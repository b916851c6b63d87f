"""Seconds per training epoch: the ``workers`` and ``device`` view pipelines and the model floor.

What it measures, in one run on one machine and one data set: the time of balcon's own
training step (``balcon.engine.steps.train_step``: forward of all views, the method's
losses, backward, SGD) per step, fed by

- ``workers``: per-image PIL views in DataLoader workers (balcon's default count for the
  device: 0 on a small CPU, i.e. in-process);
- ``device``: the set resident on the device as uint8, each batch's views made there;
- ``floor``: resident random tensors of the same shape (no view making at all), the
  model-only floor the pipelines are measured against;

each in fp32, bf16 and fp32 + channels_last (and, on CUDA or a CPU with native bf16,
bf16 + channels_last: what ``auto`` trains in there); the
``--settings`` option keeps some of them. The three are prepared side
by side and timed in ``--rounds`` interleaved rounds (so a slow spell of a shared machine
hits all alike); a round is the mean of ``--steps`` timed steps after ``--warmup``
untimed ones; a row is the median round times the preset's steps per epoch. On CUDA
every step ends with a synchronisation.
The data: ``--preset`` (default ``cifar10-lt-r100``) read from ``--data-dir``, the
method ``--method`` (default ``bcl``: three views). ``--compile`` also times the floor
and the device pipeline with ``train.compile=true`` (the training model under
``torch.compile``, as a run compiles it).

Command line (from the repository root)::

    python benchmarks/bench_epoch.py --data-dir DATA [--preset cifar10-lt-r100]
        [--method bcl] [--steps 4] [--warmup 1] [--rounds 3] [--device cpu|cuda]
        [--compile] [--settings fp32] [--out results.md]

It prints (and with ``--out`` writes) a markdown table.
"""

from __future__ import annotations

import argparse
import datetime
import platform
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
from machine import describe_cpu  # noqa: E402  benchmarks/machine.py, beside this script

from balcon.config import apply_overrides  # noqa: E402
from balcon.engine.device import cpu_has_native_bf16  # noqa: E402
from balcon.engine.prepare import prepare  # noqa: E402
from balcon.engine.steps import train_step  # noqa: E402
from balcon.presets import load_preset  # noqa: E402


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_steps(run, batches, steps: int, warmup: int, precision: str, channels_last: bool,
               model=None) -> float:
    """Mean seconds of one training step over ``steps`` after ``warmup``."""
    model = model if model is not None else run.train_model
    memory = torch.channels_last if channels_last else torch.contiguous_format
    model.train()
    times = []
    for i in range(warmup + steps):
        start = time.perf_counter()
        views, labels = next(batches)
        labels = labels.to(run.device, non_blocking=True)
        images = torch.cat([v.to(run.device, non_blocking=True) for v in views])
        images = images.contiguous(memory_format=memory)
        train_step(model, images, labels, run.objective, run.optimizer, run.scaler, precision)
        _sync(run.device)
        if i >= warmup:
            times.append(time.perf_counter() - start)
    return sum(times) / len(times)


def resident(run, batch: int, views: int):
    """Endless batches of random resident tensors shaped like the real ones (the floor)."""
    gen = torch.Generator(device=run.device).manual_seed(0)
    size = run.cfg.data.image_size
    shape = (batch, 3, size, size)
    made = [torch.randn(shape, generator=gen, device=run.device) for _ in range(views)]
    labels = torch.randint(run.splits.train.num_classes, (batch,), generator=gen,
                           device=run.device)
    while True:
        yield made, labels


def endless(loader):
    while True:
        yield from loader


def measure(args: argparse.Namespace) -> list[dict]:
    """Per precision setting: the three pipelines prepared side by side, then timed in
    ``--rounds`` interleaved rounds (A, B, C, A, B, C, ...), so that a slow spell of a
    shared machine hits all three alike; each row is the median round."""
    rows = []
    device = torch.device(args.device)
    settings = [("fp32", "off", False), ("bf16", "bf16", False),
                ("fp32 + channels_last", "off", True)]
    if device.type == "cuda" or cpu_has_native_bf16():  # what auto trains in there
        settings.append(("bf16 + channels_last", "bf16", True))
    if args.settings:
        settings = [s for s in settings if s[0] in args.settings.split(",")]
    pipelines = ["workers", "device", "floor"]
    if args.compile:  # balcon's train.compile: prepare compiles the training model
        pipelines += ["device + train.compile", "floor + train.compile"]
    for label, precision, channels_last in settings:
        setups = {}
        for name in pipelines:
            base = name.split(" ")[0]
            cfg = apply_overrides(load_preset(args.preset), [
                f"loss.method={args.method}", f"train.precision={precision}",
                f"model.channels_last={str(channels_last).lower()}",
                f"data.pipeline={'device' if base == 'floor' else base}",
                f"train.compile={str('compile' in name).lower()}"])
            run = prepare(cfg, args.data_dir, args.device)
            batch, views = run.train_loader.batch_size, run.objective.method.views
            source = (resident(run, batch, views) if base == "floor"
                      else endless(run.train_loader))
            setups[name] = (run, source, None)
        times: dict[str, list[float]] = {name: [] for name in pipelines}
        for _ in range(args.rounds):
            for name, (run, source, model) in setups.items():
                times[name].append(time_steps(run, source, args.steps, args.warmup,
                                              precision, channels_last, model))
        for name, (run, _, _) in setups.items():
            step = statistics.median(times[name])
            epoch = step * len(run.train_loader)
            rows.append({"setting": label, "pipeline": name, "step_s": step,
                         "epoch_s": epoch,
                         "images_s": run.train_loader.batch_size
                         * run.objective.method.views / step})
            rounds = ", ".join(f"{t * len(run.train_loader):.1f}" for t in times[name])
            print(f"{label:22s} {name:26s} {epoch:8.2f} s/epoch (rounds: {rounds})",
                  flush=True)
    return rows


def table(rows: list[dict], args: argparse.Namespace) -> str:
    floors = {r["setting"]: r["epoch_s"] for r in rows if r["pipeline"] == "floor"}
    lines = ["| precision | pipeline | s / epoch | image-views / s | x floor |",
             "| --- | --- | --- | --- | --- |"]
    for r in rows:
        lines.append(f"| {r['setting']} | {r['pipeline']} | {r['epoch_s']:.2f} | "
                     f"{r['images_s']:.0f} | {r['epoch_s'] / floors[r['setting']]:.2f} |")
    device = (torch.cuda.get_device_name() if args.device.startswith("cuda")
              else describe_cpu())
    head = (f"bench_epoch.py, {datetime.date.today()}, {device}, torch {torch.__version__}, "
            f"{platform.python_version()}; preset {args.preset}, method {args.method}, "
            f"median of {args.rounds} interleaved rounds of {args.steps} timed steps after "
            f"{args.warmup}")
    return head + "\n\n" + "\n".join(lines) + "\n"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data-dir", required=True)
    p.add_argument("--preset", default="cifar10-lt-r100")
    p.add_argument("--method", default="bcl")
    p.add_argument("--steps", type=int, default=4, help="timed steps per round")
    p.add_argument("--warmup", type=int, default=1, help="untimed steps per round")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--compile", action="store_true")
    p.add_argument("--settings", help="only these precision rows, e.g. fp32 (default: all)")
    p.add_argument("--out")
    args = p.parse_args()
    text = table(measure(args), args)
    print(text)
    if args.out:
        Path(args.out).write_text(text)


if __name__ == "__main__":
    main()
