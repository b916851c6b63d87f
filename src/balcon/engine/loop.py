"""The epoch loop: train an epoch with the per-step learning rate, evaluate when due.

The loop knows nothing of directories, locks or signals. Whoever keeps the run
(``balcon.runs``) drives it through one small interface, :class:`Keeper`: after each
step the loop hands it the epoch's progress (it may checkpoint, or stop the run by
raising), during an evaluation it asks it after each batch, and after each epoch it
hands it the epoch's stats and evaluation.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterator
from typing import Any

import torch
from torch import Tensor

from balcon.engine.distributed import all_reduce_sum, broadcast_buffers
from balcon.engine.metrics import fmt
from balcon.engine.prepare import EpochProgress, Trainer, own_errors
from balcon.engine.schedule import lr_at
from balcon.engine.steps import evaluate, progress, train_step
from balcon.errors import LOG, BalconError

__all__ = ["EpochMeter", "Keeper", "evaluate_epoch", "train_epoch", "train_epochs"]


class Keeper:
    """What the loop tells whoever keeps the run, and asks it; this one keeps nothing
    (a benchmark, a notebook). ``balcon.runs.keeper.RunKeeper`` keeps a run directory."""

    def step_done(self, epoch: int, meter: EpochMeter) -> None:
        """After each step of epoch ``epoch`` (0-based): checkpoint if due (``meter.
        progress()`` is where the epoch stands); raise to stop the run there."""

    def evaluating(self, epoch: int, stats: dict[str, Any]) -> None:
        """After each batch of epoch ``epoch``'s evaluation; raise to stop the run."""

    def epoch_done(self, epoch: int, stats: dict[str, Any],
                   record: dict[str, Any] | None) -> None:
        """After ``epoch`` epochs (1-based): the epoch's stats and evaluation (or None)."""


class EpochMeter:
    """Timing, the progress bar and the metric sums of one training epoch (a context
    manager: the bar closes on leaving). ``batches()`` yields the loader's batches and
    times the wait for each; ``add`` sums one step's losses and correct predictions on
    the device (no host sync); ``result()`` reduces the sums over all processes."""

    def __init__(self, t: Trainer, desc: str, start: EpochProgress | None) -> None:
        self.loader, self.device, self.ctx = t.train_loader, t.device, t.ctx
        start = start or EpochProgress()
        self.first_step = self.step = start.step
        # loss, cls loss, con loss, correct, images
        self.sums = start.sums.to(self.device) if start.sums is not None else \
            torch.zeros(5, device=self.device)
        self.waited = start.waited  # seconds spent waiting for data
        self.start = time.perf_counter() - start.elapsed
        self.bar = progress(self.loader, desc, show=self.ctx.is_main, unit="batch")

    def __enter__(self) -> EpochMeter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.bar.close()

    def batches(self) -> Iterator[tuple[int, tuple[list[Tensor], Tensor]]]:
        """``(step, (views, labels))`` for each remaining batch of the epoch."""
        batches = iter(self.bar)
        for step in range(self.first_step, self.first_step + len(self.loader)):
            tick = time.perf_counter()
            batch = next(batches)
            self.waited += time.perf_counter() - tick
            yield step, batch

    def progress(self) -> EpochProgress:
        """Where the epoch stands: steps done, this rank's sums, its time so far."""
        return EpochProgress(self.step, self.sums.detach().cpu().clone(), self.waited,
                             time.perf_counter() - self.start)

    @torch.no_grad()
    def add(self, step: int, losses: tuple[Tensor, Tensor, Tensor | None], correct: Tensor,
            batch: int) -> None:
        """Count one step: its (total, classifier, contrastive) losses and correct count."""
        con = losses[2] if losses[2] is not None else torch.zeros((), device=self.device)
        loss, loss_cls, loss_con = (x.detach() * batch for x in (*losses[:2], con))
        self.sums += torch.stack([loss, loss_cls, loss_con, correct.float(),
                                  torch.tensor(float(batch), device=self.device)])
        self.step = step + 1
        if not self.bar.disable and (step % 10 == 0 or self.step == self.first_step
                                     + len(self.loader)):
            s = self.sums.tolist()
            rate = s[4] * self.ctx.world_size / (time.perf_counter() - self.start)
            self.bar.set_postfix(loss=f"{s[0] / s[4]:.3f}", acc=f"{100 * s[3] / s[4]:.1f}",
                                 img_s=f"{rate:.0f}")

    def result(self, contrastive: bool) -> dict[str, float | None]:
        """Mean losses and accuracy over every process's images, and the speed:
        ``images_per_s`` (training images, each with all its views, over all ranks) and
        ``data_wait_share``, the part of the epoch this process waited for its loader."""
        self.bar.close()
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        elapsed = time.perf_counter() - self.start
        all_reduce_sum(self.sums)
        seen = max(self.sums[4].item(), 1.0)
        loss, loss_cls, loss_con, correct = (v / seen for v in self.sums[:4].tolist())
        return {"loss": loss, "loss_cls": loss_cls,
                "loss_con": loss_con if contrastive else None, "train_acc": 100.0 * correct,
                "images_per_s": seen / elapsed, "train_seconds": elapsed,
                "data_wait_share": self.waited / elapsed}


def steps_per_epoch(t: Trainer) -> int:
    """Batches of a whole epoch for this rank (the loader may be mid-epoch)."""
    return math.ceil(t.sampler.num_samples / t.train_loader.batch_size)


def train_epoch(t: Trainer, epoch: int, keeper: Keeper) -> dict[str, Any]:
    """Train epoch ``epoch`` (0-based; its rest after a mid-epoch resume) and return its
    stats. Each batch is ``(views, labels)``: 1 view (classifier only) or 3 (view 1 to
    the classifier, views 2 and 3 to the contrastive loss)."""
    cfg, epochs, steps = t.cfg, t.cfg.train.epochs, steps_per_epoch(t)
    start = t.progress if epoch == t.start_epoch else None
    if start is not None and start.stats is not None:  # only its evaluation was left
        return start.stats
    t.sampler.set_epoch(epoch, skip=(start.step if start else 0) * t.train_loader.batch_size)
    t.train_model.train()
    memory_format = torch.channels_last if cfg.model.channels_last else torch.contiguous_format
    with own_errors(t.ctx), EpochMeter(t, f"epoch {epoch + 1}/{epochs}", start) as meter:
        for step, (views, labels) in meter.batches():
            for group in t.optimizer.param_groups:  # the per-step warm-up and schedule
                group["lr"] = lr_at(cfg.optim, epoch, epochs, step, steps) * \
                    group.get("lr_scale", 1.0)
            labels = labels.to(t.device, non_blocking=True)
            images = torch.cat([v.to(t.device, non_blocking=True) for v in views])
            if images.ndim == 4:  # else features, not images (a linear probe)
                images = images.contiguous(memory_format=memory_format)
            losses, correct = train_step(t.train_model, images, labels, t.objective,
                                         t.optimizer, t.scaler, t.precision)
            meter.add(step, losses, correct, labels.shape[0])
            keeper.step_done(epoch, meter)
        stats = {"lr": lr_at(cfg.optim, epoch, epochs, steps_per_epoch=steps),  # its last
                 **meter.result(t.objective.method.contrastive)}
    _log_epoch(epoch, epochs, stats)
    return stats


def _log_epoch(epoch: int, epochs: int, stats: dict[str, Any]) -> None:
    LOG.info("epoch %d/%d lr %.4g loss %.4f (cls %.4f, con %s) train-acc %.2f "
             "%.0f img/s %.1fs (data wait %.0f%%)", epoch + 1, epochs, stats["lr"],
             stats["loss"], stats["loss_cls"], fmt(stats["loss_con"], ".4f"),
             stats["train_acc"], stats["images_per_s"], stats["train_seconds"],
             100 * stats["data_wait_share"])
    if not math.isfinite(stats["loss"]):
        raise BalconError(f"training diverged at epoch {epoch + 1} (loss {stats['loss']}); "
                          "lower optim.lr or use train.precision=off")


def evaluate_epoch(t: Trainer, epoch: int, stats: dict[str, Any],
                   keeper: Keeper) -> dict[str, Any] | None:
    """After epoch ``epoch`` (0-based): its record on the selection split, when due."""
    done, cfg, split = epoch + 1, t.cfg, t.splits.selection_split
    if done % cfg.train.eval_every and done != cfg.train.epochs:
        return None
    with own_errors(t.ctx):
        metrics, _, _ = evaluate(t.model, t.select_loader, t.counts, t.precision, t.device,
                                 t.ctx, split, cfg.model.channels_last,
                                 lambda *_: keeper.evaluating(epoch, stats))
    record = {"epoch": done, "split": split, **stats, **metrics}
    skipped = {name: len(bad) for name, bad in t.splits.skipped.items()}
    if skipped.get(split):
        record["skipped_images"] = skipped[split]
    if skipped.get("train"):
        record["skipped_train_images"] = skipped["train"]
    LOG.info("eval epoch %d on %s: top1 %.2f top%d %.2f many %s medium %s few %s%s",
             done, split, record["top1"], record["top5_k"], record["top5"],
             fmt(record["many"]), fmt(record["medium"]), fmt(record["few"]),
             f" ({skipped[split]} unreadable images skipped)" if skipped.get(split) else "")
    return record


def train_epochs(t: Trainer, keeper: Keeper, last: int) -> None:
    """The 0-based epochs from ``t.start_epoch`` up to, not including, ``last``: train,
    evaluate when due, hand to ``keeper``."""
    for epoch in range(t.start_epoch, last):
        stats = train_epoch(t, epoch, keeper)
        broadcast_buffers(t.model)  # evaluate and keep rank 0's BatchNorm statistics
        record = evaluate_epoch(t, epoch, stats, keeper)
        keeper.epoch_done(epoch + 1, stats, record)
