"""A CIFAR-LT trainer written the way the published code is: the peer for accuracy claims.

balcon's training numbers mean something only beside a run of this script on the same
data, schedule and machine. It imports nothing of balcon: one file, written from the
published recipe so that a difference between the two is a difference in balcon.

What it follows (the LDAM-DRW / BCL CIFAR lineage, as ``../shared/RECIPES.md`` records):

- data: torchvision's CIFAR-10 / CIFAR-100 pickle layout (``cifar-10-batches-py`` or
  ``cifar-100-python`` in the data folder, what ``balcon train --download`` fetches),
  read as torchvision's ``CIFAR10`` / ``CIFAR100`` read it but without their checksum
  test, so re-made copies load, or an ImageFolder tree
  (``train/<class>/*.jpg``, ``test/<class>/*.jpg``); the long-tailed training subset keeps
  ``int(n_max * (1 / imbalance) ** (i / (C - 1)))`` images of class i, the first ones
  after one ``numpy.random.RandomState(0)`` shuffles each class's indices in turn;
- views: per-image PIL transforms in a ``DataLoader``. View 1: RandomCrop(32, padding
  4), horizontal flip, AutoAugment (CIFAR-10 policy), ToTensor, Cutout (one 16x16 hole,
  centre uniform, clipped at the border; applied *before* normalisation, as the
  published transforms list it), Normalize. Views 2 and 3 (BCL only):
  RandomResizedCrop(32, scale 0.08-1), flip, ColorJitter(0.4, 0.4, 0.4, 0.1) p 0.8,
  RandomGrayscale p 0.2, ToTensor, Normalize;
- model: LDAM-DRW's ResNet-32 (3 stages of 5 basic blocks, 16/32/64 channels, option-A
  shortcuts: subsample and zero-pad), every Conv2d and Linear of the backbone drawn
  ``kaiming_normal_`` (PyTorch's default mode, fan-in); the classifier is the official
  ``NormedLinear``: weight (64, C) uniform(-1, 1) with every class column scaled to
  norm 1, logits ``30 * normalize(x) @ normalize(W, dim=0)``; BCL adds the official
  heads (Linear -> BatchNorm1d -> ReLU -> Linear, 64 -> 512 -> 128, PyTorch's default
  init), the prototypes being ``head_fc(W.T)``;
- losses: logit-adjusted cross-entropy ``CE(logits + tau * log(prior), y)``; for BCL
  ``alpha * LA + beta * BalSCL`` with BalSCL computed as the official
  ``loss/contrastive.py`` does (a one-hot ``eye(C)[targets]`` for the batch's class
  counts, dense masks, per-column weights from a Python loop over the 2B + C targets);
- optimiser: SGD momentum 0.9, weight decay on every parameter, the lr set once per
  epoch: ``lr * (epoch + 1) / warmup`` during the warm-up epochs, then x ``gamma`` at
  each milestone (0-based epochs, as ``adjust_learning_rate`` in the published code);
- evaluation: ``argmax(logits)`` on the balanced test set; top-1 and many (> 100
  training images) / medium (20-100) / few (< 20) as means of per-class accuracies.

Options beyond the published code (off by default): ``--bf16`` (CPU or CUDA autocast,
to run at balcon's speed) and the ablation switches ``--shortcut B`` (1x1 convolution
+ BatchNorm on shape changes), ``--conv-init default`` (PyTorch's own init),
``--cutout-after-normalize``, ``--classifier-init uniform`` (rows uniform(+-1/sqrt(F)),
balcon 0.2's) and ``--warmup-per-step``.

    python benchmarks/reference_trainer.py DATA_DIR OUT.jsonl [--method la|bcl]
        [--epochs 15 --warmup 1 --milestones 12 14] [--seed 0] [--bf16] [--workers 0]

``DATA_DIR`` holds ``train/`` and ``test/`` (e.g. ``cifar10-jpeg`` made by
``../shared/tools/cifar10_jpeg_to_batches.py``). Writes one JSON line per epoch to
``OUT.jsonl`` (lr, mean loss, train accuracy, and test metrics at evaluated epochs) and
prints a line per epoch in the format of balcon's train.log.
"""

from __future__ import annotations

import argparse
import json
import math
import pickle
import random
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from PIL import Image
from torch import Tensor
from torch.utils.data import DataLoader, Dataset, Subset
from torchvision import datasets
from torchvision import transforms as T

MEAN, STD = (0.4914, 0.4822, 0.4465), (0.2023, 0.1994, 0.2010)


# ----------------------------------------------------------------------------- data
def longtail_subset(targets: list[int], num_classes: int, imbalance: float, seed: int = 0
                    ) -> list[int]:
    """Indices of the published CIFAR-LT subset (exponential profile)."""
    targets_np = np.array(targets)
    n_max = int(np.bincount(targets_np).max())
    rng = np.random.RandomState(seed)
    keep: list[int] = []
    for c in range(num_classes):
        n = int(n_max * (1.0 / imbalance) ** (c / (num_classes - 1.0)))
        idx = np.where(targets_np == c)[0]
        rng.shuffle(idx)
        keep.extend(idx[:n].tolist())
    return keep


class CifarPickles(Dataset):
    """A CIFAR pickle folder as PIL images: ``data`` rows in file order, as torchvision's
    ``CIFAR10`` / ``CIFAR100`` load them (``fine_labels`` for CIFAR-100)."""

    def __init__(self, folder: Path, train: bool, transform: Callable | None = None) -> None:
        c100 = folder.name == "cifar-100-python"
        if c100:
            files = ["train"] if train else ["test"]
        else:
            files = [f"data_batch_{i}" for i in range(1, 6)] if train else ["test_batch"]
        data, self.targets = [], []
        for name in files:
            with open(folder / name, "rb") as f:
                batch = pickle.load(f, encoding="latin1")
            data.append(batch["data"])
            self.targets += batch["fine_labels" if c100 else "labels"]
        self.data = np.vstack(data).reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)
        self.classes = list(range(100 if c100 else 10))
        self.transform = transform

    def __len__(self) -> int:
        return len(self.targets)

    def __getitem__(self, i: int) -> tuple[Any, int]:
        image = Image.fromarray(self.data[i])
        return (self.transform(image) if self.transform else image), self.targets[i]


PICKLE_FOLDERS = {"cifar10": "cifar-10-batches-py", "cifar100": "cifar-100-python"}


def load_sets(data_dir: Path, dataset: str | None = None) -> tuple[Dataset, Dataset]:
    """The training set (PIL images) and the normalised test set: torchvision's CIFAR
    pickle layout of ``dataset`` (default: the one ``data_dir`` holds), else an
    ImageFolder tree."""
    test_view = T.Compose([T.ToTensor(), T.Normalize(MEAN, STD)])
    held = [name for name, folder in PICKLE_FOLDERS.items() if (data_dir / folder).is_dir()]
    if dataset is None and len(held) > 1:
        raise SystemExit(f"{data_dir} holds both CIFAR-10 and CIFAR-100; pass --dataset")
    dataset = dataset or (held[0] if held else None)
    if dataset is not None:
        folder = data_dir / PICKLE_FOLDERS[dataset]
        if not folder.is_dir():
            raise SystemExit(f"{data_dir} has no {folder.name}/; give the folder that holds it")
        return (CifarPickles(folder, train=True),
                CifarPickles(folder, train=False, transform=test_view))
    if not (data_dir / "train").is_dir():
        raise SystemExit(f"{data_dir} holds neither cifar-100-python/, cifar-10-batches-py/ "
                         "nor train/ and test/; give the data folder")
    return (datasets.ImageFolder(str(data_dir / "train")),
            datasets.ImageFolder(str(data_dir / "test"), transform=test_view))


class Cutout:
    """DeVries & Taylor's Cutout on a CHW tensor: one square hole, clipped at the border."""

    def __init__(self, length: int = 16) -> None:
        self.length = length

    def __call__(self, img: torch.Tensor) -> torch.Tensor:
        h, w = img.shape[1:]
        y, x = np.random.randint(h), np.random.randint(w)
        y1, y2 = np.clip(y - self.length // 2, 0, h), np.clip(y + self.length // 2, 0, h)
        x1, x2 = np.clip(x - self.length // 2, 0, w), np.clip(x + self.length // 2, 0, w)
        mask = torch.ones(h, w)
        mask[y1:y2, x1:x2] = 0.0
        return img * mask


def strong_view(cutout_after_normalize: bool) -> T.Compose:
    """View 1: crop, flip, AutoAugment CIFAR-10, Cutout (before normalising by default)."""
    head = [T.RandomCrop(32, padding=4), T.RandomHorizontalFlip(),
            T.AutoAugment(T.AutoAugmentPolicy.CIFAR10), T.ToTensor()]
    tail = [T.Normalize(MEAN, STD), Cutout(16)] if cutout_after_normalize else \
        [Cutout(16), T.Normalize(MEAN, STD)]
    return T.Compose(head + tail)


def sim_view(without: str | None = None) -> T.Compose:
    """Views 2 and 3: SimCLR-style; ``without`` (crop, jitter, hue, gray) leaves a step out."""
    steps = [] if without == "crop" else [T.RandomResizedCrop(32, scale=(0.08, 1.0))]
    steps.append(T.RandomHorizontalFlip())
    if without != "jitter":
        hue = 0.0 if without == "hue" else 0.1
        steps.append(T.RandomApply([T.ColorJitter(0.4, 0.4, 0.4, hue)], p=0.8))
    if without != "gray":
        steps.append(T.RandomGrayscale(p=0.2))
    return T.Compose([*steps, T.ToTensor(), T.Normalize(MEAN, STD)])


class Views(Dataset):
    """Each item: ([view(img) for view in views], label)."""

    def __init__(self, base: Dataset, views: list[T.Compose]) -> None:
        self.base, self.views = base, views

    def __len__(self) -> int:
        return len(self.base)  # type: ignore[arg-type]

    def __getitem__(self, i: int) -> tuple[list[torch.Tensor], int]:
        img, label = self.base[i]
        return [v(img) for v in self.views], label


# ---------------------------------------------------------------------------- model
class LambdaLayer(nn.Module):
    def __init__(self, fn) -> None:  # noqa: ANN001
        super().__init__()
        self.fn = fn

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fn(x)


class BasicBlock(nn.Module):
    def __init__(self, in_planes: int, planes: int, stride: int, shortcut: str) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_planes, planes, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.shortcut: nn.Module = nn.Sequential()
        if stride != 1 or in_planes != planes:
            if shortcut == "A":  # subsample, zero-pad the new channels on both sides
                pad = planes // 4
                self.shortcut = LambdaLayer(
                    lambda x: F.pad(x[:, :, ::2, ::2], (0, 0, 0, 0, pad, pad), "constant", 0))
            else:
                self.shortcut = nn.Sequential(nn.Conv2d(in_planes, planes, 1, stride, bias=False),
                                              nn.BatchNorm2d(planes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return F.relu(out + self.shortcut(x))


class ResNet32(nn.Module):
    """LDAM-DRW's ResNet-32 up to the pooled 64-d features."""

    def __init__(self, shortcut: str = "A", conv_init: str = "kaiming") -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 16, 3, 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(16)
        layers, in_planes = [], 16
        for planes, stride in ((16, 1), (32, 2), (64, 2)):
            for s in [stride] + [1] * 4:
                layers.append(BasicBlock(in_planes, planes, s, shortcut))
                in_planes = planes
        self.layers = nn.Sequential(*layers)
        if conv_init == "kaiming":
            for m in self.modules():
                if isinstance(m, (nn.Conv2d, nn.Linear)):
                    nn.init.kaiming_normal_(m.weight)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.layers(F.relu(self.bn1(self.conv1(x))))
        return F.adaptive_avg_pool2d(out, 1).flatten(1)


class NormedLinear(nn.Module):
    """The official cosine classifier; weight (F, C), columns at unit norm."""

    def __init__(self, in_features: int, num_classes: int, init: str = "unit") -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.empty(in_features, num_classes))
        if init == "unit":
            self.weight.data.uniform_(-1, 1).renorm_(2, 1, 1e-5).mul_(1e5)
        else:  # balcon 0.2: uniform(+-1/sqrt(F)), class norms ~0.58
            bound = in_features ** -0.5
            self.weight.data.uniform_(-bound, bound)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return 30 * F.normalize(x, dim=1).mm(F.normalize(self.weight, dim=0))


def mlp(dim_in: int, hidden: int, out: int) -> nn.Sequential:
    return nn.Sequential(nn.Linear(dim_in, hidden), nn.BatchNorm1d(hidden), nn.ReLU(inplace=True),
                         nn.Linear(hidden, out))


class Model(nn.Module):
    """Backbone, classifier and (for BCL) the official heads."""

    def __init__(self, num_classes: int, args: argparse.Namespace) -> None:
        super().__init__()
        self.encoder = ResNet32(args.shortcut, args.conv_init)
        self.fc = NormedLinear(64, num_classes, args.classifier_init)
        self.head = mlp(64, 512, 128)
        self.head_fc = mlp(64, 512, 128)

    def forward(self, x: torch.Tensor, heads: bool = True):  # noqa: ANN201
        feat = self.encoder(x)
        logits = self.fc(feat)
        if not heads:
            return None, logits, None
        feat_mlp = F.normalize(self.head(feat), dim=1)
        centers = F.normalize(self.head_fc(self.fc.weight.T), dim=1)
        return feat_mlp, logits, centers


# --------------------------------------------------------------------------- losses
class LogitAdjust(nn.Module):
    def __init__(self, counts: list[int], tau: float = 1.0) -> None:
        super().__init__()
        prior = torch.tensor(counts, dtype=torch.float) / sum(counts)
        self.register_buffer("m_list", tau * prior.log().view(1, -1))

    def forward(self, x: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(x + self.m_list, target)


def official_bcl_loss(
    centers: Tensor, features: Tensor, targets: Tensor, num_classes: int, temperature: float
) -> Tensor:
    """BCL loss computed the way the official ``BalSCL`` does (dense masks, Python loop).

    ``centers`` (C, D), ``features`` (B, 2, D), ``targets`` (B,). Written for the reference
    trainer and ``bench_loss.py`` from that formulation; the arithmetic is the official
    one, the code is not.
    """
    device = features.device
    n_anchor = 2 * features.shape[0]
    # Contrast-set labels: view 1 of the batch, view 2 of the batch, then one per class.
    contrast_targets = torch.cat([targets.repeat(2), torch.arange(num_classes, device=device)])
    # Class counts through a dense (2B + C) x C one-hot. The published code builds
    # ``torch.eye(C)`` on the CPU, and indexing it with CUDA targets raises in current
    # PyTorch; the eye is put on the targets' device here so that the baseline runs on a
    # GPU at all (and is, if anything, faster than the published code there).
    class_count = torch.eye(num_classes, device=device)[contrast_targets].sum(dim=0)

    # Dense (2B, 2B + C) positive mask, and a mask removing each anchor's own column.
    positives = torch.eq(contrast_targets[:n_anchor, None], contrast_targets[None, :]).float()
    self_index = torch.arange(n_anchor, device=device).view(-1, 1)
    not_self = torch.scatter(torch.ones_like(positives), 1, self_index, 0.0)
    positives = positives * not_self

    contrast = torch.cat([torch.cat(torch.unbind(features, dim=1), dim=0), centers], dim=0)
    logits = contrast[:n_anchor] @ contrast.T / temperature
    row_max, _ = logits.max(dim=1, keepdim=True)
    logits = logits - row_max.detach()
    exp_logits = logits.exp() * not_self

    # Per-column class sizes from a Python loop over all 2B + C targets: one indexing op
    # and one host read per element (a device-to-host sync per element on a GPU).
    column_count = torch.tensor([class_count[t] for t in contrast_targets], device=device)
    weights = column_count.view(1, -1).expand(n_anchor, -1) - positives
    denominator = (exp_logits / weights).sum(dim=1, keepdim=True)

    log_prob = logits - denominator.log()
    mean_log_prob_pos = (positives * log_prob).sum(dim=1) / positives.sum(dim=1)
    return -mean_log_prob_pos.mean()  # mean over the 2B anchors


# ------------------------------------------------------------------------- training
def lr_at(args: argparse.Namespace, epoch: int, step: int, steps: int) -> float:
    """Per epoch as published; ``--warmup-per-step`` ramps linearly over the warm-up steps."""
    if epoch < args.warmup:
        if args.warmup_per_step:
            return args.lr * (epoch * steps + step + 1) / (args.warmup * steps)
        return args.lr * (epoch + 1) / args.warmup
    return args.lr * 0.1 ** sum(epoch >= m for m in args.milestones)


@torch.no_grad()
def evaluate(model: Model, loader: DataLoader, counts: list[int], autocast) -> dict:  # noqa: ANN001
    model.eval()
    preds, labels = [], []
    for x, y in loader:
        with autocast():
            preds.append(model(x.to(DEVICE), heads=False)[1].float().argmax(1).cpu())
        labels.append(y)
    pred, label = torch.cat(preds), torch.cat(labels)
    per_class = [100.0 * (pred[label == c] == c).float().mean().item() for c in range(len(counts))]
    pairs = list(zip(per_class, counts, strict=True))
    groups = {"many": [a for a, n in pairs if n > 100],
              "medium": [a for a, n in pairs if 20 <= n <= 100],
              "few": [a for a, n in pairs if n < 20]}
    out = {"top1": 100.0 * (pred == label).float().mean().item(), "per_class": per_class}
    out.update({g: (sum(v) / len(v) if v else None) for g, v in groups.items()})
    return out


def train_epoch(model, loader, crit_ce, opt, args, epoch, autocast) -> dict:  # noqa: ANN001
    model.train()
    sums, seen, correct = 0.0, 0, 0
    for step, (views, y) in enumerate(loader):
        if args.warmup_per_step or step == 0:
            for g in opt.param_groups:
                g["lr"] = lr_at(args, epoch, step, len(loader))
        b = y.shape[0]
        x, y = torch.cat(views).to(DEVICE), y.to(DEVICE)
        with autocast():
            feat_mlp, logits, centers = model(x, heads=args.method == "bcl")
        logits = logits[:b].float()
        loss = crit_ce(logits, y)
        if args.method == "bcl":
            _, f2, f3 = torch.split(feat_mlp.float(), [b, b, b])
            scl = official_bcl_loss(centers.float(), torch.stack([f2, f3], 1), y,
                                    len(crit_ce.m_list[0]), args.temperature)
            loss = args.alpha * loss + args.beta * scl
        opt.zero_grad()
        loss.backward()
        opt.step()
        sums += loss.item() * b
        seen += b
        correct += (logits.argmax(1) == y).sum().item()
    return {"lr": opt.param_groups[0]["lr"], "loss": sums / seen,
            "train_acc": 100.0 * correct / seen}


def main() -> None:
    global DEVICE
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("data_dir", type=Path)
    p.add_argument("out", type=Path)
    p.add_argument("--dataset", choices=sorted(PICKLE_FOLDERS),
                   help="which CIFAR pickle folder of data_dir to read (needed when it holds "
                   "both; without either folder, data_dir is an ImageFolder tree)")
    p.add_argument("--method", choices=["la", "bcl"], default="la")
    p.add_argument("--epochs", type=int, default=15)
    p.add_argument("--warmup", type=int, default=1)
    p.add_argument("--milestones", type=int, nargs="*", default=[12, 14])
    p.add_argument("--lr", type=float, default=0.15)
    p.add_argument("--batch", type=int, default=256)
    p.add_argument("--wd", type=float, default=5e-4)
    p.add_argument("--alpha", type=float, default=2.0)
    p.add_argument("--beta", type=float, default=0.6)
    p.add_argument("--temperature", type=float, default=0.1)
    p.add_argument("--imbalance", type=float, default=100.0)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--eval-every", type=int, default=5)
    p.add_argument("--workers", type=int, default=0)
    p.add_argument("--bf16", action="store_true")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--shortcut", choices=["A", "B"], default="A")
    p.add_argument("--conv-init", choices=["kaiming", "default"], default="kaiming")
    p.add_argument("--cutout-after-normalize", action="store_true")
    p.add_argument("--classifier-init", choices=["unit", "uniform"], default="unit")
    p.add_argument("--warmup-per-step", action="store_true")
    args = p.parse_args()
    DEVICE = torch.device(args.device)
    torch.manual_seed(args.seed)
    np.random.seed(args.seed)
    random.seed(args.seed)

    train_all, test_set = load_sets(args.data_dir, args.dataset)
    num_classes = len(train_all.classes)
    keep = longtail_subset(train_all.targets, num_classes, args.imbalance)
    counts = np.bincount(np.array(train_all.targets)[keep], minlength=num_classes).tolist()
    views = [strong_view(args.cutout_after_normalize)]
    if args.method == "bcl":
        views += [sim_view(), sim_view()]
    train_loader = DataLoader(Views(Subset(train_all, keep), views), batch_size=args.batch,
                              shuffle=True, num_workers=args.workers, drop_last=False,
                              persistent_workers=args.workers > 0)
    test_loader = DataLoader(test_set, batch_size=256, num_workers=args.workers)

    model = Model(num_classes, args).to(DEVICE)
    crit_ce = LogitAdjust(counts).to(DEVICE)
    opt = torch.optim.SGD(model.parameters(), lr=args.lr, momentum=0.9, weight_decay=args.wd)

    def autocast():  # noqa: ANN202
        return torch.autocast(DEVICE.type, dtype=torch.bfloat16, enabled=args.bf16)

    print(f"reference: {len(keep)} train images, counts {counts}, {vars(args)}", flush=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    with args.out.open("w") as f:
        f.write(json.dumps({"args": {k: str(v) for k, v in vars(args).items()},
                            "counts": counts}) + "\n")
    for epoch in range(args.epochs):
        start = time.perf_counter()
        rec = {"epoch": epoch + 1,
               **train_epoch(model, train_loader, crit_ce, opt, args, epoch, autocast)}
        rec["train_seconds"] = time.perf_counter() - start
        if not math.isfinite(rec["loss"]):
            raise SystemExit(f"diverged at epoch {epoch + 1}")
        line = (f"epoch {epoch + 1}/{args.epochs} lr {rec['lr']:.4g} loss {rec['loss']:.4f} "
                f"train-acc {rec['train_acc']:.2f} {rec['train_seconds']:.1f}s")
        if (epoch + 1) % args.eval_every == 0 or epoch + 1 == args.epochs:
            rec.update(evaluate(model, test_loader, counts, autocast))
            line += f" | test top1 {rec['top1']:.2f}" + "".join(
                f" {g} {'-' if rec[g] is None else format(rec[g], '.2f')}"
                for g in ("many", "medium", "few"))
        print(line, flush=True)
        with args.out.open("a") as f:
            f.write(json.dumps(rec) + "\n")


DEVICE = torch.device("cpu")

if __name__ == "__main__":
    main()
