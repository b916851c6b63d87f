"""A 15-epoch LA run of the cifar10-lt-r100 recipe with per-epoch diagnostics.

After each epoch it prints one ``DIAG {json}`` line: the epoch's mean loss, the mean
norm of the cosine classifier's class vectors, the norm and mean pairwise cosine of the
backbone features of 256 fixed training views (eval mode), the share of dead feature
channels, the last BatchNorm's mean |gamma| and beta, and the stem convolution's norm.
The run itself is balcon's own (``fit``), so its train.log and metrics equal a plain run.

    python benchmarks/training_diagnostics.py DATA_DIR OUT [--unit-init]

``--unit-init`` starts the class vectors at norm 1, for running balcon 0.2 (put its
``src`` first on ``PYTHONPATH``) as the official code initialises them; balcon 0.3 does
that already. Used for BENCHMARKS.md, "Training health" (the mechanism table).
"""

from __future__ import annotations

import argparse
import importlib
import json

import torch
import torch.nn.functional as F

from balcon.config import apply_overrides, compress_schedule
from balcon.presets import load_preset


def unit_norm_class_vectors() -> None:
    """Patch balcon's CosineClassifier so that its rows start uniform(-1, 1) at norm 1."""
    bcl = importlib.import_module("balcon.models.bcl")
    original = bcl.CosineClassifier.__init__

    def init(self, *args, **kwargs) -> None:  # noqa: ANN001, ANN002, ANN003
        original(self, *args, **kwargs)
        with torch.no_grad():
            self.weight.copy_(F.normalize(torch.empty_like(self.weight).uniform_(-1, 1), dim=1))

    bcl.CosineClassifier.__init__ = init


def diagnose(model: torch.nn.Module, probe: torch.Tensor, loss: float) -> dict:
    """The diagnostics of ``model`` (a BCLModel) on the ``probe`` images."""
    was_training = model.training
    model.eval()
    with torch.no_grad():
        feats = model.encoder(probe).float()
    model.train(was_training)
    unit = F.normalize(feats, dim=1)
    last_bn = [m for m in model.encoder.modules() if isinstance(m, torch.nn.BatchNorm2d)][-1]
    return {
        "loss": loss,
        "w_norm": model.classifier.weight.norm(dim=1).mean().item(),
        "feat_norm_mean": feats.norm(dim=1).mean().item(),
        "feat_norm_min": feats.norm(dim=1).min().item(),
        "dead_channels": (feats.abs().sum(0) == 0).float().mean().item(),
        "feat_cos": (unit @ unit.T).mean().item(),
        "last_bn_gamma": last_bn.weight.abs().mean().item(),
        "last_bn_beta": last_bn.bias.mean().item(),
        "stem_w_norm": model.encoder.conv1.weight.norm().item(),
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("data_dir")
    p.add_argument("out")
    p.add_argument("--unit-init", action="store_true")
    p.add_argument("--epochs", type=int, default=15)
    args = p.parse_args()
    if args.unit_init:
        unit_norm_class_vectors()
    loop = importlib.import_module("balcon.engine.loop")
    train_epoch = loop.train_epoch
    probe: dict[str, torch.Tensor] = {}

    def epoch_with_diagnostics(t, epoch, keeper):  # noqa: ANN001, ANN202
        stats = train_epoch(t, epoch, keeper)
        if "x" not in probe:  # view 1 of the first batch of epoch 1, fixed from then on
            views, _ = next(iter(t.train_loader))
            probe["x"] = views[0][:256].clone()
        print("DIAG", json.dumps(diagnose(t.model, probe["x"], stats["loss"])), flush=True)
        return stats

    loop.train_epoch = epoch_with_diagnostics
    cfg = compress_schedule(load_preset("cifar10-lt-r100"), args.epochs)
    cfg = apply_overrides(cfg, ["loss.method=la", "train.precision=bf16", "train.eval_every=5"])
    importlib.import_module("balcon.runs").fit(cfg, args.data_dir, args.out)


if __name__ == "__main__":
    main()
