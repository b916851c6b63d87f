"""Does balcon's BCL step compute what the published-way reference computes? (issue 19, point 6)

Five of the suspects for the CIFAR-100-LT BCL gap are deterministic and need no training
run to test: the heads, the temperature, the batch statistics over the three stacked
views, and how the class-complement prototypes learn (``head_fc(W.T)``, with the
gradient flowing through the prototype head into the classifier's weights). This script
builds balcon's model and the reference trainer's (``benchmarks/reference_trainer.py``,
the official ``BalSCL`` formulation, the official ``NormedLinear`` of shape (F, C)),
gives the second the first one's weights, and runs the same SGD steps on the same
batches through both: balcon's own ``train_step`` and ``make_objective`` against the
reference's loss code. It prints, per step, the two losses and the largest difference
of any parameter, gradient-driven update and BatchNorm running statistic; a defect in
any of those suspects shows as a difference far above float32 rounding.

It also prints the fifth, the lr schedule: balcon's per-batch
warm-up beside the published per-epoch one, step by step, and where they differ.

    python benchmarks/bcl_equivalence.py [--steps 8] [--batch 128] [--seed 0]

The batch is random normal images of CIFAR's shape with labels drawn from the preset's
long-tailed class counts (many classes absent from a batch, as in training).
A third copy, balcon's model in channels_last, is the control: its drift from balcon is
float32 rounding alone. Exit status 1 if balcon's distance to the reference exceeds
``--tol`` times its distance to the control.
"""

from __future__ import annotations

import argparse
import copy
import math
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import reference_trainer as ref  # noqa: E402

from balcon.config import load_preset  # noqa: E402
from balcon.data.longtail import longtail_counts  # noqa: E402
from balcon.engine.schedule import lr_at  # noqa: E402
from balcon.engine.steps import make_objective, train_step  # noqa: E402
from balcon.models import build_model  # noqa: E402

RENAME = {"classifier.": "fc.", "projection_head.": "head.", "prototype_head.": "head_fc."}


def ref_name(name: str) -> str:
    """The reference model's name of balcon's parameter or buffer ``name``."""
    for old, new in RENAME.items():
        if name.startswith(old):
            return new + name[len(old):]
    return name


def copy_into_reference(balcon_model: torch.nn.Module, reference: torch.nn.Module) -> None:
    """Give ``reference`` balcon's weights; the classifier weight is stored transposed."""
    state = {}
    for name, value in balcon_model.state_dict().items():
        state[ref_name(name)] = value.T.clone() if name == "classifier.weight" else value.clone()
    reference.load_state_dict(state)


def in_balcon_names(reference: torch.nn.Module) -> dict[str, torch.Tensor]:
    """The reference's parameters and buffers under balcon's names and layout."""
    back = {v: k for k, v in RENAME.items()}
    state = {}
    for name, value in reference.state_dict().items():
        for old, new in back.items():
            if name.startswith(old):
                name = new + name[len(old):]
        state[name] = value.T if name == "classifier.weight" else value
    return state


def compare(mine: dict[str, torch.Tensor], theirs: dict[str, torch.Tensor]
            ) -> tuple[float, str]:
    """Largest relative difference over every parameter and buffer, and where."""
    worst, where = 0.0, ""
    for name, a in mine.items():
        b = theirs[name]
        if not a.is_floating_point():
            diff = float((a != b).any())
        else:
            diff = ((a - b).abs().max() / b.abs().max().clamp(min=1e-12)).item()
        if diff > worst:
            worst, where = diff, name
    return worst, where


def control_copy(model: torch.nn.Module) -> torch.nn.Module:
    """balcon's model again, in channels_last: the same arithmetic rounded differently
    (other convolution kernels), so its drift from ``model`` is float32 rounding alone."""
    return copy.deepcopy(model).to(memory_format=torch.channels_last)


def reference_step(model: torch.nn.Module, images: torch.Tensor, labels: torch.Tensor,
                   crit: torch.nn.Module, opt: torch.optim.Optimizer, alpha: float,
                   beta: float, temperature: float, num_classes: int) -> float:
    """One step exactly as ``reference_trainer.train_epoch`` takes it."""
    b = labels.shape[0]
    feat_mlp, logits, centers = model(images, heads=True)
    loss = crit(logits[:b], labels)
    _, f2, f3 = torch.split(feat_mlp, [b, b, b])
    scl = ref.official_bcl_loss(centers, torch.stack([f2, f3], 1), labels, num_classes,
                                temperature)
    loss = alpha * loss + beta * scl
    opt.zero_grad()
    loss.backward()
    opt.step()
    return loss.item()


def schedule_report(cfg, steps_per_epoch: int) -> str:  # noqa: ANN001
    """Where balcon's lr differs from the published per-epoch schedule."""
    o, epochs = cfg.optim, cfg.train.epochs
    rows, published_sum, balcon_sum = [], 0.0, 0.0
    for epoch in range(epochs):
        published = o.lr * (epoch + 1) / o.warmup_epochs if epoch < o.warmup_epochs else \
            o.lr * o.gamma ** sum(epoch >= m for m in o.milestones)
        mine = [lr_at(o, epoch, epochs, s, steps_per_epoch) for s in range(steps_per_epoch)]
        published_sum += published * steps_per_epoch
        balcon_sum += sum(mine)
        if max(abs(m - published) for m in mine) > 1e-12:
            rows.append(f"  epoch {epoch + 1}: published {published:.4f} for every step; "
                        f"balcon {mine[0]:.4f} .. {mine[-1]:.4f}")
    return "\n".join(rows + [
        f"  the other {epochs - len(rows)} epochs: identical at every step. Sum of lr over "
        f"all steps: published {published_sum:.2f}, balcon {balcon_sum:.2f}"])


#: A CIFAR dataset's images per class before the long tail is cut, and its classes.
CIFAR_SIZES = {"cifar10": (5000, 10), "cifar100": (500, 100)}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--preset", default="cifar100-lt-r100")
    p.add_argument("--steps", type=int, default=8)
    p.add_argument("--batch", type=int, default=128)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--lr", type=float, default=None,
                   help="the steps' lr (default: the preset's); the chaos of lr 0.15 on "
                        "noise images amplifies float32 rounding within a few steps")
    p.add_argument("--tol", type=float, default=10.0,
                   help="largest allowed ratio of the distance to the reference over the "
                        "distance to the control")
    args = p.parse_args()
    torch.manual_seed(args.seed)
    cfg = load_preset(args.preset)
    if cfg.data.dataset not in CIFAR_SIZES:
        p.error(f"--preset {args.preset} trains on {cfg.data.dataset}; pick a CIFAR-LT preset")
    counts = longtail_counts(*CIFAR_SIZES[cfg.data.dataset], cfg.data.imbalance, cfg.data.profile)
    num_classes = len(counts)
    model = build_model(cfg.model, num_classes)
    reference = ref.Model(num_classes, argparse.Namespace(
        shortcut=cfg.model.shortcut, conv_init=cfg.model.conv_init, classifier_init="unit"))
    copy_into_reference(model, reference)
    control = control_copy(model)
    start = compare(model.state_dict(), in_balcon_names(reference))[0]
    print(f"start: largest relative difference {start:.2e}")

    objective = make_objective(cfg.loss, counts)
    crit = ref.LogitAdjust(counts, cfg.loss.tau)
    o = cfg.optim
    lr = o.lr if args.lr is None else args.lr
    opts = [torch.optim.SGD(m.parameters(), lr=lr, momentum=o.momentum,
                            weight_decay=o.weight_decay) for m in (model, reference, control)]
    scaler = torch.amp.GradScaler("cpu", enabled=False)
    prior = np.asarray(counts, dtype=float) / sum(counts)
    rng = np.random.default_rng(args.seed)
    worst_all = 0.0
    for m in (model, reference, control):
        m.train()
    for step in range(args.steps):
        labels = torch.as_tensor(rng.choice(num_classes, size=args.batch, p=prior))
        images = torch.randn(3 * args.batch, 3, 32, 32)
        (loss_b, _, _), _ = train_step(model, images, labels, objective, opts[0], scaler,
                                       precision="off")
        loss_r = reference_step(reference, images, labels, crit, opts[1], objective.alpha,
                                objective.beta, cfg.loss.temperature, num_classes)
        (loss_c, _, _), _ = train_step(control, images.contiguous(
            memory_format=torch.channels_last), labels, objective, opts[2], scaler, "off")
        worst, where = compare(model.state_dict(), in_balcon_names(reference))
        drift, _ = compare(model.state_dict(), control.state_dict())
        worst_all = max(worst_all, worst / max(drift, 1e-6))
        print(f"step {step + 1}: loss balcon {loss_b.item():.6f} reference {loss_r:.6f} "
              f"control {loss_c.item():.6f}; largest relative difference of any weight or "
              f"statistic: to the reference {worst:.2e} ({where}), to the control {drift:.2e}")
    steps_per_epoch = math.ceil(sum(counts) / cfg.train.batch_size)
    print(f"lr schedule of {args.preset} ({steps_per_epoch} steps an epoch, {sum(counts):,} "
          f"images / batch {cfg.train.batch_size}), balcon against the published per-epoch "
          "warm-up:")
    print(schedule_report(cfg, steps_per_epoch))
    ok = worst_all <= args.tol
    print(f"{'SAME' if ok else 'DIFFERENT'}: balcon's distance to the reference is at most "
          f"{worst_all:.2f}x its distance to the control (tolerance {args.tol:g}x)")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
