"""Benchmark balcon's 224-px three-view training data pipeline (ImageNet-LT recipe) on CPU.

What it measures: images per second that the data pipeline alone delivers, with no model:
each JPEG is decoded once, then view 1 ("rand": RandomResizedCrop, flip, ColorJitter,
RandAugment ``rand-n2-m10-mstd0.5``) and views 2 and 3 (the pair of ``--strategies``:
``sim-sim``, ``sim-rand`` or ``rand-rand``) are made, exactly as a BCL run builds them:
``load_image_folder`` -> ``make_train_dataset`` with ``DataConfig(view_style="imagenet",
image_size=224)`` (balcon's ``MultiViewDataset``, seeded per sample) -> ``EpochSampler``
-> ``torch.utils.data.DataLoader`` (batch ``--batch``, persistent workers, prefetch
factor ``--prefetch``, no pinned memory). A "decode only" row runs the same dataset,
sampler and loader with one view that returns the decoded image's size (no augmentation,
no tensor conversion), to show what share of the pipeline's time decoding takes.

Images: a synthetic ImageFolder of ``--images`` JPEGs (default 256 of 500x375 px, about
ImageNet's average, quality 90, 8 classes) written to a temporary folder (or ``--dir``,
kept). Each image is textured like a photo rather than flat colour: smooth random noise at
several scales (random fields upscaled bicubically) plus fine grain, so JPEG decoding costs
about what real photos cost: about 95 KiB a file at 500x375, quality 90 (ImageNet's
training JPEGs average ~110 KB); the header gives the mean file size.

How it is timed: per worker count (``--workers``) and pipeline, one untimed warm-up epoch
(workers start, files enter the page cache), then ``--epochs`` timed epochs over all
images, each from ``iter(loader)`` to the last batch, wall clock (``time.perf_counter``);
images/s is the total images over the total time. ``ms/image`` is the reciprocal;
"decode share" is the decode-only time per image over the pipeline's time per image at
the same worker count. The machine should be otherwise idle; the header names its CPU.

Command line (from the repository root; without balcon installed, ``PYTHONPATH=src``
makes it importable, and the script also falls back to ``src``)::

    python benchmarks/bench_pipeline.py [--images 256] [--size 500x375] [--classes 8]
        [--workers 0 1 2] [--strategies sim-sim sim-rand rand-rand] [--batch 32]
        [--epochs 2] [--prefetch 2] [--quality 90] [--threads N] [--dir DIR]
        [--steps-repeats 200]

e.g. ``python benchmarks/bench_pipeline.py --workers 0 2 4 8 --strategies sim-sim rand-rand``.
It prints a markdown table.
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import PIL
import timm
import torch
import torchvision
from machine import cpu_model  # benchmarks/machine.py, beside this script
from PIL import Image
from torch.utils.data import DataLoader

try:
    from balcon.config import DataConfig
except ImportError:  # running from a source tree without PYTHONPATH=src
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
    from balcon.config import DataConfig
from balcon.data import EpochSampler, MultiViewDataset, load_image_folder, make_train_dataset

IMAGENET_MEAN = [0.485, 0.456, 0.406]
IMAGENET_STD = [0.229, 0.224, 0.225]
SEED = 0
DECODE = "decode only"


def textured_image(rng: np.random.Generator, width: int, height: int) -> Image.Image:
    """A photo-like RGB image: smooth noise at several scales plus fine grain."""
    canvas = np.zeros((height, width, 3), dtype=np.float32)
    for cell, weight in ((64, 0.4), (16, 0.2), (4, 0.2), (2, 0.2)):
        small = rng.random((max(2, height // cell), max(2, width // cell), 3), dtype=np.float32)
        layer = Image.fromarray((small * 255).astype(np.uint8)).resize(
            (width, height), Image.BICUBIC)
        canvas += weight * np.asarray(layer, dtype=np.float32)
    canvas += rng.normal(0.0, 12.0, size=canvas.shape).astype(np.float32)
    return Image.fromarray(np.clip(canvas, 0, 255).astype(np.uint8))


def write_image_folder(root: Path, images: int, classes: int, width: int, height: int,
                       quality: int) -> float:
    """``root/class_k/img_i.jpg`` for ``images`` textured JPEGs; returns the mean file KB."""
    rng = np.random.default_rng(SEED)
    total = 0
    for i in range(images):
        folder = root / f"class_{i % classes}"
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / f"img_{i:05d}.jpg"
        textured_image(rng, width, height).save(path, quality=quality)
        total += path.stat().st_size
    return total / images / 1024


def decoded_size(img: Image.Image) -> torch.Tensor:
    """The "decode only" view: the decoded image's (width, height), no augmentation."""
    return torch.tensor(img.size)


def make_dataset(root: Path, pipeline: str) -> MultiViewDataset:
    """balcon's training dataset for a strategy, or the decode-only dataset."""
    images = load_image_folder(root)
    if pipeline == DECODE:
        return MultiViewDataset(images, [decoded_size], seed=SEED)
    data = DataConfig(dataset="imagefolder", view_style="imagenet", view_strategy=pipeline,
                      image_size=224, mean=list(IMAGENET_MEAN), std=list(IMAGENET_STD))
    return make_train_dataset(images, data, views=3, seed=SEED)


def check_batch(batch: tuple[list[torch.Tensor], torch.Tensor], pipeline: str) -> None:
    """Exit unless a batch holds what the pipeline should produce."""
    views, labels = batch
    n = len(labels)
    expected = [(n, 2)] if pipeline == DECODE else [(n, 3, 224, 224)] * 3
    if [tuple(v.shape) for v in views] != expected:
        sys.exit(f"ABORT: {pipeline} gave views {[tuple(v.shape) for v in views]}, "
                 f"expected {expected}")


def time_pipeline(root: Path, pipeline: str, workers: int, batch: int, epochs: int,
                  prefetch: int) -> float:
    """Images/s of ``pipeline`` with ``workers`` loader workers, after one warm-up epoch."""
    dataset = make_dataset(root, pipeline)
    sampler = EpochSampler(len(dataset), seed=SEED)
    options = dict(num_workers=workers, persistent_workers=workers > 0)
    if workers > 0:
        options["prefetch_factor"] = prefetch
    loader = DataLoader(dataset, batch_size=batch, sampler=sampler, **options)
    sampler.set_epoch(0)  # warm-up: workers start, files enter the page cache
    for k, item in enumerate(loader):
        if k == 0:
            check_batch(item, pipeline)
    start = time.perf_counter()
    for epoch in range(1, epochs + 1):
        sampler.set_epoch(epoch)
        for _ in loader:
            pass
    elapsed = time.perf_counter() - start
    return epochs * len(dataset) / elapsed  # the persistent workers stop with ``loader``


def cpu_name() -> str:
    return f"{cpu_model()} ({os.cpu_count()} logical cores)"


def parse_size(text: str) -> tuple[int, int]:
    try:
        width, height = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"size must be WIDTHxHEIGHT, got {text!r}") from None
    if width < 1 or height < 1:
        raise argparse.ArgumentTypeError(f"size must be positive, got {text!r}")
    return width, height


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=int, default=256, help="JPEGs to write")
    parser.add_argument("--size", type=parse_size, default=(500, 375),
                        help="WIDTHxHEIGHT of each JPEG (default 500x375)")
    parser.add_argument("--classes", type=int, default=8, help="class folders")
    parser.add_argument("--quality", type=int, default=90, help="JPEG quality")
    parser.add_argument("--workers", type=int, nargs="+", default=[0, 1, 2],
                        help="DataLoader worker counts to run")
    parser.add_argument("--strategies", nargs="+", default=["sim-sim"],
                        choices=["sim-sim", "sim-rand", "rand-rand"],
                        help="contrastive pairs (view 2, view 3) to run")
    parser.add_argument("--batch", type=int, default=32, help="images per batch")
    parser.add_argument("--epochs", type=int, default=2, help="timed epochs per row")
    parser.add_argument("--prefetch", type=int, default=2,
                        help="batches each worker prefetches (torch's default 2, as balcon)")
    parser.add_argument("--steps-repeats", type=int, default=200,
                        help="repeats of each step in the per-step table (0: no table)")
    parser.add_argument("--threads", type=int, default=None,
                        help="torch.set_num_threads in the main process (default: as is)")
    parser.add_argument("--dir", type=Path, default=None,
                        help="write the images here and keep them (default: a temp folder)")
    args = parser.parse_args(argv)
    if args.images < 1 or args.classes < 1 or args.batch < 1 or args.epochs < 1:
        parser.error("--images, --classes, --batch and --epochs must be >= 1")
    if min(args.workers) < 0:
        parser.error("--workers must be >= 0")
    return args


def time_steps(root: Path, repeats: int) -> list[tuple[str, float]]:
    """Milliseconds per call of each step of the 224-px views on one image, and of decoding.

    Decoding is timed on the first JPEG; the crop on the decoded image; every later
    step on a 224x224 crop of it (what it sees in a view). One thread, no loader.
    """
    from torchvision import transforms as T

    from balcon.data.views_imagenet import (
        imagenet_rand_view,
        imagenet_randaugment,
        imagenet_randstack_view,
        imagenet_sim_view,
    )

    images = load_image_folder(root)
    image = images.image(0)
    crop = T.RandomResizedCrop(224)(image)
    steps: list[tuple[str, Callable, object]] = [
        ("decode (one JPEG)", lambda path: Image.open(path).convert("RGB"), images.paths[0]),
        ("RandomResizedCrop(224)", T.RandomResizedCrop(224), image),
        ("ColorJitter(0.4, 0.4, 0.4, 0.1)", T.ColorJitter(0.4, 0.4, 0.4, 0.1), crop),
        ("ColorJitter(0.4, 0.4, 0.4, 0)", T.ColorJitter(0.4, 0.4, 0.4, 0.0), crop),
        ("ColorJitter(hue 0.1) alone", T.ColorJitter(0, 0, 0, 0.1), crop),
        ("RandAugment rand-n2-m10-mstd0.5",
         imagenet_randaugment("rand-n2-m10-mstd0.5", 224, IMAGENET_MEAN), crop),
        ("ToTensor + Normalize", T.Compose([T.ToTensor(),
                                            T.Normalize(IMAGENET_MEAN, IMAGENET_STD)]), crop),
        ("whole rand view", imagenet_rand_view(224, IMAGENET_MEAN, IMAGENET_STD), image),
        ("whole sim view", imagenet_sim_view(224, IMAGENET_MEAN, IMAGENET_STD), image),
        ("whole randstack view", imagenet_randstack_view(224, IMAGENET_MEAN, IMAGENET_STD),
         image),
    ]
    timings = []
    for name, step, arg in steps:
        step(arg)  # warm-up
        start = time.perf_counter()
        for _ in range(repeats):
            step(arg)
        timings.append((name, 1e3 * (time.perf_counter() - start) / repeats))
    return timings


def print_table(rows: list[tuple[str, int, float]]) -> None:
    decode = {w: rate for pipeline, w, rate in rows if pipeline == DECODE}
    columns = ["pipeline", "workers", "images/s", "ms/image", "decode share"]
    print("| " + " | ".join(columns) + " |")
    print("| --- | ---: | ---: | ---: | ---: |")
    for pipeline, workers, rate in rows:
        share = "-" if pipeline == DECODE else f"{100 * rate / decode[workers]:.0f}%"
        print(f"| {pipeline} | {workers} | {rate:.1f} | {1e3 / rate:.2f} | {share} |")


def run(args: argparse.Namespace, root: Path) -> None:
    width, height = args.size
    kib = write_image_folder(root, args.images, args.classes, width, height, args.quality)
    now = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    print("\n".join([
        f"date: {now}",
        f"cpu: {cpu_name()}, torch threads (main process) {torch.get_num_threads()}",
        f"torch {torch.__version__}, torchvision {torchvision.__version__}, timm "
        f"{timm.__version__}, Pillow {PIL.__version__}, python {platform.python_version()}",
        f"{args.images} JPEGs {width}x{height} (quality {args.quality}, mean {kib:.0f} KiB), "
        f"{args.classes} classes, batch {args.batch}, prefetch {args.prefetch}, "
        f"{args.epochs} timed epoch(s) after 1 warm-up",
    ]), flush=True)
    rows: list[tuple[str, int, float]] = []
    for workers in args.workers:
        for pipeline in [DECODE, *args.strategies]:
            rate = time_pipeline(root, pipeline, workers, args.batch, args.epochs,
                                 args.prefetch)
            rows.append((pipeline, workers, rate))
            print(f"{pipeline}, {workers} workers: {rate:.1f} images/s", flush=True)
    print()
    print_table(rows)
    print("\ndecode share = decode-only ms/image over the pipeline's ms/image, same workers")
    if args.steps_repeats > 0:
        print(f"\nper step, one image, {args.steps_repeats} calls each (main process):\n")
        print("| step | ms per call |\n| --- | ---: |")
        for name, ms in time_steps(root, args.steps_repeats):
            print(f"| {name} | {ms:.2f} |")


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    if args.dir is not None:
        args.dir.mkdir(parents=True, exist_ok=True)
        run(args, args.dir)
        return
    with tempfile.TemporaryDirectory(prefix="bench_pipeline_") as tmp:
        run(args, Path(tmp))


if __name__ == "__main__":
    main()
