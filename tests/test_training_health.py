"""Training health: a short run must learn, not sit at the class prior's entropy.

balcon 0.2's LA runs on CIFAR-10-LT held their mean loss at the prior's entropy (the
loss of constant logits) for several epochs (BENCHMARKS.md, "Training health"). This
guards the whole training path (data, views, model, loss, schedule, optimiser) on a
tiny long-tailed set that ResNet-8 can learn under the recipe's augmentation:
checkerboards whose square size names the class, in noise.
"""

from __future__ import annotations

import json
import math
import pickle
from pathlib import Path

import numpy as np

from balcon.config import apply_overrides, compress_schedule
from balcon.presets import load_preset
from balcon.runs import fit, load_checkpoint


def write_checkerboards(root: Path, train_per_class: int = 300, test_per_class: int = 20
                        ) -> Path:
    """A ``cifar-10-batches-py`` of 32x32 checkerboards: class c has squares of c + 2 px."""
    rng = np.random.RandomState(0)
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    yy, xx = np.mgrid[0:32, 0:32]

    def batch(per_class: int) -> dict:
        labels = np.repeat(np.arange(10), per_class)
        rng.shuffle(labels)
        size = labels[:, None, None] + 2
        board = ((yy[None] // size + xx[None] // size) % 2) * 200.0 + 28
        pixels = np.repeat(board[:, None], 3, axis=1) + rng.normal(0, 30, (len(labels), 3, 32, 32))
        data = np.clip(pixels, 0, 255).astype(np.uint8).reshape(len(labels), 3072)
        return {"data": data, "labels": labels.tolist()}

    train = batch(train_per_class)
    for i in range(5):
        part = {"data": train["data"][i::5], "labels": train["labels"][i::5]}
        (folder / f"data_batch_{i + 1}").write_bytes(pickle.dumps(part))
    (folder / "test_batch").write_bytes(pickle.dumps(batch(test_per_class)))
    names = {"label_names": [f"squares{c + 2}" for c in range(10)]}
    (folder / "batches.meta").write_bytes(pickle.dumps(names))
    return root


def test_loss_falls_well_below_the_prior_entropy_in_two_epochs(tmp_path: Path):
    # the cifar10-lt-r100 recipe compressed to 2 epochs (one warm-up epoch), on ResNet-8,
    # imbalance 10 (300 images of the largest class down to 30), batch 32: 39 steps an epoch
    cfg = compress_schedule(load_preset("cifar10-lt-r100"), 2)
    cfg = apply_overrides(cfg, [
        "model.encoder=resnet8", "data.imbalance=10", "train.batch_size=32",
        "loss.method=la", "train.eval_every=1", "data.num_workers=0",
    ])
    run = fit(cfg, write_checkerboards(tmp_path / "data"), tmp_path / "run")
    counts = np.array(load_checkpoint(run.run_dir / "last.pt")["class_counts"], dtype=float)
    prior = counts / counts.sum()
    entropy = float(-(prior * np.log(prior)).sum())  # the LA loss of constant logits
    records = [json.loads(x) for x in (run.run_dir / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in records] == [1, 2]
    assert math.isfinite(records[-1]["loss_cls"])
    assert records[-1]["loss_cls"] <= 0.8 * entropy, (records[-1]["loss_cls"], entropy)

