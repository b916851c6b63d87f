"""Checks run by ``tests/test_distributed.py`` inside ``torchrun`` (2 CPU processes, gloo).

``python -m torch.distributed.run --nproc_per_node 2 tests/dist_checks.py OUT_DIR`` makes
every rank write ``OUT_DIR/rank{r}.pt`` with what it computed; the test compares those
with single-process computations of the same inputs.

1. Loss: a batch of BCL features is split over the ranks; each rank gathers the global
   batch (with gradients) and computes the loss; we keep the loss, the gradient with
   respect to its own features and to the prototypes.
2. DDP, every method of the table: a BCLModel without BatchNorm, wrapped as ``fit``
   wraps it (``ddp_wrap``), takes two ``train_step``s (lr 0) on half a batch per rank;
   we keep the parameter gradients of the second step after DDP's averaging. (A
   method whose forward leaves a parameter without gradient while DDP does not look
   for unused parameters fails at the second step.)
3. Evaluation: balcon's sharded ``predict`` over a 7-image set (odd, so the sampler pads).
4. BatchNorm: after a DDP step on different data per rank, each rank's running statistics
   differ; ``broadcast_buffers`` makes them rank 0's (what evaluation and checkpoints use).
5. Errors: work that fails on rank 1 alone (data missing on one node) stops every rank
   with the same one-line error.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from balcon.config import DataConfig, LossConfig
from balcon.data import ImageSet
from balcon.engine.device import make_grad_scaler
from balcon.engine.distributed import (
    broadcast_buffers,
    ddp_wrap,
    gather,
    gather_with_grad,
    init_distributed,
    on_every_rank,
    shutdown,
)
from balcon.engine.loaders import eval_loader
from balcon.engine.steps import make_objective, predict, train_step
from balcon.errors import BalconError
from balcon.losses import BalancedContrastiveLoss
from balcon.methods import METHODS, get_method
from balcon.models import BCLModel

BATCH, DIM, CLASSES = 8, 6, 5


def loss_inputs() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Features (B, 2, D) normalised, labels (B,), prototypes (C, D) normalised."""
    gen = torch.Generator().manual_seed(7)
    features = F.normalize(torch.randn(BATCH, 2, DIM, generator=gen, dtype=torch.float64), dim=2)
    labels = torch.tensor([0, 1, 1, 2, 0, 3, 1, 0])
    prototypes = F.normalize(torch.randn(CLASSES, DIM, generator=gen, dtype=torch.float64), dim=1)
    return features, labels, prototypes


def tiny_model() -> BCLModel:
    """A BCLModel with a linear encoder, classifier and heads: no BatchNorm, so the
    2-process gradients can equal the 1-process ones."""
    torch.manual_seed(0)
    model = BCLModel(nn.Sequential(nn.Linear(12, 10), nn.Tanh()), CLASSES, feature_dim=10,
                     classifier="linear")
    model.projection_head = nn.Linear(10, DIM)
    model.prototype_head = nn.Linear(10, DIM)
    return model


def ddp_inputs() -> tuple[torch.Tensor, torch.Tensor]:
    """Three views of each of BATCH samples, (3, B, 12), and labels."""
    gen = torch.Generator().manual_seed(11)
    return torch.randn(3, BATCH, 12, generator=gen), torch.tensor([0, 1, 1, 2, 0, 3, 4, 0])


def method_grads(model: nn.Module, views: torch.Tensor, labels: torch.Tensor,
                 method: str) -> dict[str, torch.Tensor | None]:
    """Parameter gradients of the second of two ``train_step``s of ``method`` (lr 0)."""
    objective = make_objective(LossConfig(method=method), [5, 4, 3, 2, 1])
    images = views[:get_method(method).views].reshape(-1, views.shape[-1])
    optimizer = torch.optim.SGD(model.parameters(), lr=0.0)
    for _ in range(2):
        train_step(model, images, labels, objective, optimizer,
                   make_grad_scaler(torch.device("cpu"), "off"), "off")
    inner = getattr(model, "module", model)
    return {k: p.grad for k, p in inner.named_parameters()}


def eval_images() -> ImageSet:
    """Seven random 8x8 RGB images in memory, three classes."""
    rng = np.random.RandomState(3)
    pixels = rng.randint(0, 256, size=(7, 8, 8, 3)).astype(np.uint8)
    return ImageSet(labels=np.array([0, 1, 2, 0, 1, 2, 0]), class_names=["a", "b", "c"],
                    pixels=pixels)


class TinyClassifier(nn.Module):
    """Predicts from the mean colour of an image: enough to give distinct logits."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.classifier = nn.Linear(3, 3)

    def encoder(self, x: torch.Tensor) -> torch.Tensor:
        return x.mean(dim=(2, 3))


def main(out_dir: Path) -> None:
    ctx, device = init_distributed("cpu")
    rank, world = ctx.rank, ctx.world_size
    part = BATCH // world
    mine = slice(rank * part, (rank + 1) * part)
    result: dict[str, object] = {"world": world}

    features, labels, prototypes = loss_inputs()
    local = features[mine].clone().requires_grad_(True)
    protos = prototypes.clone().requires_grad_(True)
    loss = BalancedContrastiveLoss(0.1)(gather_with_grad(local), gather(labels[mine]), protos)
    loss.backward()
    result.update(loss=loss.detach(), feature_grad=local.grad, prototype_grad=protos.grad)

    views, ddp_labels = ddp_inputs()
    result["param_grads"] = {
        name: method_grads(ddp_wrap(tiny_model(), device, method), views[:, mine],
                           ddp_labels[mine], name)
        for name, method in METHODS.items()
    }

    images = eval_images()
    logits, eval_labels = predict(TinyClassifier(), eval_loader(images, DataConfig(
        image_size=8, num_workers=0), device, ctx), device, "off", ctx=ctx)
    result.update(eval_logits=logits, eval_labels=eval_labels)

    torch.manual_seed(0)
    bn_model = DistributedDataParallel(nn.Sequential(nn.Linear(12, 6), nn.BatchNorm1d(6)))
    bn_model(views[0, mine] * (1 + rank)).sum().backward()
    result["bn_before"] = bn_model.module[1].running_mean.clone()
    broadcast_buffers(bn_model.module)
    result["bn_after"] = bn_model.module[1].running_mean.clone()

    def fails_on_rank_one() -> str:
        if rank == 1:
            raise BalconError("no such folder here")
        return "fine"

    try:
        result["agreed_error"] = on_every_rank(fails_on_rank_one)
    except BalconError as err:
        result["agreed_error"] = f"BalconError: {err}"
    torch.save(result, out_dir / f"rank{rank}.pt")
    shutdown()  # leave the process group cleanly; gloo may abort at exit otherwise


if __name__ == "__main__":
    main(Path(sys.argv[1]))
