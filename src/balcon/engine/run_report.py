"""What a run reports: evaluations of a split, and the summary once its last epoch is done.

During training the model-selection split (val, else test, else train) is evaluated;
when the last epoch is done, a run that selected on val also measures its last model
and its ``best.pt`` on the report split (test), and the summary gives per-class
accuracy by class name.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import DataLoader

from balcon.config import Config
from balcon.data import DataSplits, ImageSet
from balcon.engine.checkpoint import load_checkpoint
from balcon.engine.distributed import DistContext, broadcast_object
from balcon.engine.loaders import eval_loader
from balcon.engine.metrics import classification_metrics
from balcon.engine.run_dir import LOG, result_row, summarize
from balcon.engine.steps import predict
from balcon.models import BCLModel

__all__ = ["evaluate_split", "final_report", "finished_summary", "fmt"]


def fmt(value: float | None, spec: str = ".2f") -> str:
    """``value`` formatted by ``spec``, or ``-`` for None (an empty shot group)."""
    return "-" if value is None else format(value, spec)


def evaluate_split(model: BCLModel, loader: DataLoader, counts: list[int], cfg: Config,
                   precision: str, device: torch.device, ctx: DistContext, desc: str,
                   stop: Callable[[], bool] | None = None) -> dict[str, Any]:
    """Metrics of ``model`` on the whole set of ``loader`` (sharded over the ranks) in the
    run's ``precision``; ``stop`` as in :func:`~balcon.engine.steps.predict`."""
    logits, labels = predict(model, loader, device, precision, desc=desc,
                             channels_last=cfg.model.channels_last, ctx=ctx, stop=stop)
    return classification_metrics(logits, labels, counts)


def final_report(model: BCLModel, cfg: Config, precision: str, run_dir: Path,
                 images: ImageSet, split: str, counts: list[int], device: torch.device,
                 ctx: DistContext, records: list[dict[str, Any]]) -> dict[str, Any]:
    """The last model and best.pt measured on the report split (a split not selected on)."""
    loader = eval_loader(images, cfg.data, device, ctx)
    last = evaluate_split(model, loader, counts, cfg, precision, device, ctx,
                          f"{split} (last)")
    last_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
    best_weights = broadcast_object(
        load_checkpoint(run_dir / "best.pt")["model"] if ctx.is_main else None
    )
    model.load_state_dict(best_weights)
    best = evaluate_split(model, loader, counts, cfg, precision, device, ctx,
                          f"{split} (best)")
    model.load_state_dict(last_state)
    selection = summarize(records, records[-1]["split"])
    best["epoch"] = selection["best"]["epoch"]
    last["epoch"] = records[-1]["epoch"]
    for name, result in (("last", last), ("best", best)):
        LOG.info("%s split, %s (epoch %d): top1 %.2f many %s medium %s few %s", split, name,
                 result["epoch"], result["top1"], fmt(result["many"]),
                 fmt(result["medium"]), fmt(result["few"]))
    return {"last": result_row(last, split), "best": result_row(best, split),
            "epochs_run": records[-1]["epoch"], "selection_split": selection["selection_split"],
            "report_split": split, "per_class": dict(zip(images.class_names, last["per_class"],
                                                         strict=True)),
            "selection": {"last": selection["last"], "best": selection["best"]}}


def finished_summary(model: BCLModel, cfg: Config, precision: str, run_dir: Path,
                     splits: DataSplits, counts: list[int], device: torch.device,
                     ctx: DistContext, records: list[dict[str, Any]]) -> dict[str, Any]:
    """The summary of a run whose last epoch is done: the report, per class by name."""
    select_name, report_name = splits.selection_split, splits.report_split
    if report_name != select_name:
        summary = final_report(model, cfg, precision, run_dir, splits.get(report_name),
                               report_name, counts, device, ctx, records)
    else:
        summary = summarize(records, select_name)
        summary["per_class"] = dict(zip(splits.train.class_names, records[-1]["per_class"],
                                        strict=True))
    summary["finished"] = True
    return summary
