"""Peak accelerator memory and step time of each fine-tuning mode on one encoder.

For each ``model.finetune`` mode and each method, the ``imagefolder-finetune`` preset with
``--encoder`` (default ``timm:vit_base_patch16_clip_224``, CLIP ViT-B/16's image tower,
randomly initialised: memory and time do not depend on the weights) at ``--size`` px is
prepared by balcon itself (``balcon.engine.prepare``), and balcon's training step
(``balcon.engine.steps.train_step``) runs on resident random batches of the preset's
shape (``bench_epoch.resident``: no view making, so the numbers are the model's). Peak
memory is ``torch.cuda.max_memory_allocated`` over the timed steps, from a reset after
the model and optimiser were built (the weights count, the data loader does not); the
column beside it is what was allocated at that reset, after a garbage collection, so a
row that inherited an earlier row's tensors shows it (the 2026-12-04 table predates that
column; its last row, 1.48 GiB, bounds what could have been left over). On a CPU both
memory columns are "-": there the script's rows test its steps, not its memory.

    python benchmarks/finetune_memory.py [--encoder timm:NAME] [--size 224]
        [--modes full,partial,lora,linear] [--methods la,bcl] [--batch 64]
        [--precision auto] [--steps 5] [--warmup 2] [--out table.md]

``linear`` with BCL runs its three views through the frozen encoder (no feature cache),
which is what is measured; with LA, balcon would cache features instead of stepping.
"""

from __future__ import annotations

import argparse
import datetime
import gc
import platform
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
from bench_epoch import resident, time_steps  # noqa: E402  beside this script
from machine import describe_cpu  # noqa: E402

from balcon.config import apply_overrides  # noqa: E402
from balcon.engine.prepare import prepare  # noqa: E402
from balcon.presets import load_preset  # noqa: E402


def tiny_folder(root: Path, classes: int = 4, per_class: int = 4, size: int = 64) -> Path:
    """A train/ folder of random JPEGs (prepare needs a data set; the steps do not read it)."""
    rng = np.random.default_rng(0)
    for c in range(classes):
        d = root / "train" / f"class{c}"
        d.mkdir(parents=True)
        for i in range(per_class + c):  # unequal counts, as a long-tailed set has
            pixels = rng.integers(0, 256, (size, size, 3), dtype=np.uint8)
            Image.fromarray(pixels).save(d / f"{i}.jpg")
    return root


def measure_one(args: argparse.Namespace, data_dir: Path, mode: str, method: str) -> dict:
    cfg = apply_overrides(load_preset("imagefolder-finetune"), [
        f"model.encoder={args.encoder}", "model.pretrained=null", f"model.finetune={mode}",
        f"loss.method={method}", f"train.batch_size={args.batch}",
        f"data.image_size={args.size}", f"train.precision={args.precision}"])
    cached = mode == "linear" and method == "la"
    run = prepare(cfg, data_dir, args.device)
    views = run.objective.method.views
    params = sum(p.numel() for p in run.model.parameters())
    trainable = sum(p.numel() for p in run.model.parameters() if p.requires_grad)
    row = {"mode": mode, "method": method, "views": views, "params": params,
           "trainable": trainable, "precision": run.precision, "peak_gib": None,
           "before_gib": None, "step_s": None}
    if cached:  # balcon steps on cached features here: nothing of the encoder's to measure
        return row
    device = run.device
    if device.type == "cuda":  # what earlier rows left behind must not count here
        gc.collect()
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
        row["before_gib"] = torch.cuda.memory_allocated(device) / 2**30
    source = resident(run, args.batch, views)
    row["step_s"] = time_steps(run, source, args.steps, args.warmup, run.precision, False)
    if device.type == "cuda":
        row["peak_gib"] = torch.cuda.max_memory_allocated(device) / 2**30
    del run, source
    if device.type == "cuda":
        gc.collect()
        torch.cuda.empty_cache()
    return row


def table(rows: list[dict], args: argparse.Namespace) -> str:
    device = torch.cuda.get_device_name() if args.device.startswith("cuda") else describe_cpu()
    head = (f"finetune_memory.py, {datetime.date.today()}, {device}, torch {torch.__version__}, "
            f"{platform.python_version()}; {args.encoder} (random init) at {args.size} px, "
            f"batch {args.batch} per view, mean of {args.steps} steps after {args.warmup}")
    lines = ["| mode | method | views | trainable / all params | precision | peak memory "
             "(GiB) | of it before the steps | s / step |",
             "| --- | --- | --- | --- | --- | --- | --- | --- |"]
    for r in rows:
        peak, before = ("-" if r[k] is None else f"{r[k]:.2f}" for k in ("peak_gib",
                                                                          "before_gib"))
        step = "cached features" if r["step_s"] is None else f"{r['step_s']:.3f}"
        lines.append(f"| {r['mode']} | {r['method']} | {r['views']} | {r['trainable']:,} / "
                     f"{r['params']:,} | {r['precision']} | {peak} | {before} | {step} |")
    return head + "\n\n" + "\n".join(lines) + "\n"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--encoder", default="timm:vit_base_patch16_clip_224")
    p.add_argument("--size", type=int, default=224)
    p.add_argument("--modes", default="full,partial,lora,linear")
    p.add_argument("--methods", default="la,bcl")
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--precision", default="auto")
    p.add_argument("--steps", type=int, default=5)
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--out")
    args = p.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        data_dir = tiny_folder(Path(tmp))
        for mode in args.modes.split(","):
            for method in args.methods.split(","):
                rows.append(measure_one(args, data_dir, mode, method))
                print(rows[-1], flush=True)
    text = table(rows, args)
    print(text)
    if args.out:
        Path(args.out).write_text(text)


if __name__ == "__main__":
    main()
