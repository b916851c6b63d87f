"""A whole training run: data, model, epochs, evaluation, checkpoints, run directory.

The run directory holds ``config.yaml``, ``train.log``, ``metrics.jsonl`` (one JSON
line per evaluation), ``last.pt`` (every epoch), ``best.pt`` (best top-1 so far) and
``summary.json``. A run resumed from ``last.pt`` ends with the same weights as an
uninterrupted one: the model is seeded, the shuffle and every sample's augmentation
derive from (seed, epoch, index), and the checkpoint holds the optimizer, the
gradient scaler and the RNG state.
"""

from __future__ import annotations

import json
import logging
import math
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import DataLoader

from balcon import __version__
from balcon.config import Config, config_from_dict, config_to_yaml
from balcon.data import (
    EpochSampler,
    ImageSet,
    load_image_sets,
    make_eval_dataset,
    make_train_dataset,
)
from balcon.engine.checkpoint import load_checkpoint, save_checkpoint
from balcon.engine.device import (
    check_precision,
    default_num_workers,
    inference_precision,
    make_grad_scaler,
    resolve_device,
)
from balcon.engine.metrics import classification_metrics
from balcon.engine.schedule import lr_at
from balcon.engine.steps import make_objective, predict, train_one_epoch
from balcon.errors import BalconError
from balcon.models import BCLModel, build_model

__all__ = ["Predictions", "RunResult", "evaluate_checkpoint", "fit", "resume"]

LOG = logging.getLogger("balcon")
EVAL_BATCH = 256


@dataclass
class RunResult:
    """What a finished (or stopped) run leaves: its directory and its summary."""

    run_dir: Path
    summary: dict[str, Any]


@dataclass
class Predictions:
    """Raw logits of a test set, with the true labels and where each image came from."""

    logits: torch.Tensor
    labels: torch.Tensor
    sources: list[str]
    class_names: list[str]


def _make_loaders(
    cfg: Config, train: ImageSet, test: ImageSet, contrastive: bool, device: torch.device
) -> tuple[DataLoader, DataLoader, EpochSampler]:
    sampler = EpochSampler(len(train), seed=cfg.train.seed)
    train_loader = DataLoader(
        make_train_dataset(train, cfg.data, contrastive, cfg.train.seed),
        batch_size=cfg.train.batch_size, sampler=sampler, drop_last=False,
        **_loader_options(cfg, device),
    )
    return train_loader, _eval_loader(cfg, test, device), sampler


def _loader_options(cfg: Config, device: torch.device) -> dict[str, Any]:
    workers = cfg.data.num_workers
    if workers is None:
        workers = default_num_workers(device)
    return dict(num_workers=workers, pin_memory=device.type == "cuda",
                persistent_workers=workers > 0)


def _eval_loader(cfg: Config, test: ImageSet, device: torch.device) -> DataLoader:
    return DataLoader(make_eval_dataset(test, cfg.data), batch_size=EVAL_BATCH, shuffle=False,
                      **_loader_options(cfg, device))


def _build(cfg: Config, num_classes: int, device: torch.device) -> tuple[BCLModel, Any]:
    torch.manual_seed(cfg.train.seed)
    model = build_model(cfg.model, num_classes).to(device)
    o = cfg.optim
    optimizer = torch.optim.SGD(model.parameters(), lr=o.lr, momentum=o.momentum,
                                weight_decay=o.weight_decay, nesterov=o.nesterov)
    return model, optimizer


class _RunLog:
    """``train.log`` plus the console, for the duration of a run."""

    def __init__(self, run_dir: Path) -> None:
        self.handlers = [logging.FileHandler(run_dir / "train.log"),
                         logging.StreamHandler(sys.stdout)]
        self.handlers[0].setFormatter(logging.Formatter("%(asctime)s %(message)s",
                                                        "%Y-%m-%d %H:%M:%S"))
        for h in self.handlers:
            LOG.addHandler(h)
        self.level, self.propagate = LOG.level, LOG.propagate
        LOG.setLevel(logging.INFO)
        LOG.propagate = False

    def close(self) -> None:
        for h in self.handlers:
            LOG.removeHandler(h)
            h.close()
        LOG.setLevel(self.level)
        LOG.propagate = self.propagate


def _fmt(value: float | None, spec: str = ".2f") -> str:
    return "-" if value is None else format(value, spec)


def _summary(records: list[dict[str, Any]]) -> dict[str, Any]:
    keys = ("epoch", "top1", "top5", "many", "medium", "few")
    last = records[-1]
    best = max(records, key=lambda r: r["top1"])
    return {"last": {k: last[k] for k in keys}, "best": {k: best[k] for k in keys},
            "epochs_run": last["epoch"]}


def _read_records(path: Path, up_to_epoch: int) -> list[dict[str, Any]]:
    """Evaluation records of ``metrics.jsonl`` up to an epoch (later ones are dropped)."""
    if not path.exists():
        return []
    lines = [line for line in path.read_text().splitlines() if line.strip()]
    kept = []
    for line in lines:
        try:
            record = json.loads(line)
        except json.JSONDecodeError:  # a line cut short when a run was killed
            continue
        if isinstance(record, dict) and record.get("epoch", up_to_epoch + 1) <= up_to_epoch:
            kept.append(record)
    if len(kept) != len(lines):
        path.write_text("".join(json.dumps(r) + "\n" for r in kept))
    return kept


def _check_new_run_dir(run_dir: Path) -> None:
    if run_dir.exists() and not run_dir.is_dir():
        raise BalconError(f"--out {run_dir} is a file; give a directory")
    if run_dir.is_dir() and any(run_dir.iterdir()):
        raise BalconError(
            f"run directory {run_dir} is not empty; choose another --out, or continue it "
            f"with balcon train --resume {run_dir}"
        )
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise BalconError(f"cannot create run directory {run_dir} ({err.strerror}); "
                          "choose another --out") from None


def _check_resume_data(state: dict[str, Any], train_set: ImageSet, run_dir: Path) -> None:
    if state["class_names"] != train_set.class_names or \
            state["class_counts"] != train_set.class_counts():
        raise BalconError(
            f"the data given to resume {run_dir} is not the data it was trained on (other "
            "classes or class counts); point --data-dir at the original data"
        )


def _restore(state: dict[str, Any], model: BCLModel, optimizer: torch.optim.Optimizer,
             scaler: torch.amp.GradScaler, run_dir: Path) -> None:
    try:
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        scaler.load_state_dict(state["scaler"])
        torch.set_rng_state(state["rng"])
    except (KeyError, RuntimeError, ValueError, TypeError):
        raise BalconError(
            f"{run_dir / 'last.pt'} does not fit the model and optimizer its config "
            "describes; it is incompatible (start a new run)"
        ) from None


def fit(
    cfg: Config,
    data_dir: str | Path | None,
    run_dir: str | Path,
    device: str | None = None,
    download: bool = False,
    stop_after: int | None = None,
    _resume_state: dict[str, Any] | None = None,
) -> RunResult:
    """Train ``cfg`` on the data in ``data_dir``, writing the run directory ``run_dir``.

    ``stop_after`` ends the run after that many epochs (as if interrupted); it
    continues with :func:`resume`. Returns the run directory and its summary.
    """
    run_dir = Path(run_dir)
    dev = resolve_device(device)
    if dev.type == "cuda":
        torch.backends.cudnn.benchmark = True
    check_precision(dev, cfg.train.precision)
    train_set, test_set = load_image_sets(cfg.data, data_dir, download=download)
    counts = train_set.class_counts()
    if _resume_state is None:
        _check_new_run_dir(run_dir)
    else:
        _check_resume_data(_resume_state, train_set, run_dir)
    objective = make_objective(cfg.loss, counts)
    objective.classifier_loss.to(dev)
    model, optimizer = _build(cfg, train_set.num_classes, dev)
    scaler = make_grad_scaler(dev, cfg.train.precision)
    if _resume_state is not None:
        _restore(_resume_state, model, optimizer, scaler, run_dir)
        start_epoch = int(_resume_state["epoch"])
    else:
        (run_dir / "config.yaml").write_text(config_to_yaml(cfg))
        start_epoch = 0
    train_loader, test_loader, sampler = _make_loaders(
        cfg, train_set, test_set, objective.contrastive, dev
    )
    metrics_path = run_dir / "metrics.jsonl"
    records = _read_records(metrics_path, start_epoch)
    best_top1 = max((r["top1"] for r in records), default=-math.inf)
    base_state = {
        "config": cfg.to_dict(), "class_names": train_set.class_names, "class_counts": counts,
        "data_dir": None if data_dir is None else str(Path(data_dir).resolve()),
        "balcon_version": __version__,
    }
    log = _RunLog(run_dir)
    try:
        if start_epoch == 0:
            LOG.info("run %s: %s, %s, %d train / %d test images, %d classes, device %s",
                     run_dir, cfg.name, cfg.loss.method, len(train_set), len(test_set),
                     train_set.num_classes, dev)
        else:
            LOG.info("resuming %s after epoch %d", run_dir, start_epoch)
        epochs = cfg.train.epochs
        last = min(epochs, stop_after) if stop_after is not None else epochs
        for epoch in range(start_epoch, last):
            lr = lr_at(cfg.optim, epoch, epochs)
            for group in optimizer.param_groups:
                group["lr"] = lr
            sampler.set_epoch(epoch)
            stats = train_one_epoch(model, train_loader, objective, optimizer, scaler, dev,
                                    cfg.train.precision, desc=f"epoch {epoch + 1}/{epochs}")
            LOG.info("epoch %d/%d lr %.4g loss %.4f (cls %.4f, con %s) train-acc %.2f "
                     "%.0f img/s %.1fs (data wait %.0f%%)", epoch + 1, epochs, lr, stats["loss"],
                     stats["loss_cls"], _fmt(stats["loss_con"], ".4f"), stats["train_acc"],
                     stats["images_per_s"], stats["train_seconds"],
                     100 * stats["data_wait_share"])
            if not math.isfinite(stats["loss"]):
                raise BalconError(
                    f"training diverged at epoch {epoch + 1} (loss {stats['loss']}); lower "
                    "optim.lr or use train.precision=off"
                )
            done = epoch + 1
            state = {**base_state, "epoch": done, "model": model.state_dict(),
                     "optimizer": optimizer.state_dict(), "scaler": scaler.state_dict(),
                     "rng": torch.get_rng_state()}
            if done % cfg.train.eval_every == 0 or done == epochs:
                logits, labels = predict(model, test_loader, dev, cfg.train.precision)
                record = {"epoch": done, "lr": lr, **stats,
                          **classification_metrics(logits, labels, counts)}
                records.append(record)
                with metrics_path.open("a") as f:
                    f.write(json.dumps(record) + "\n")
                LOG.info("eval epoch %d: top1 %.2f top%d %.2f many %s medium %s few %s",
                         done, record["top1"], record["top5_k"], record["top5"],
                         _fmt(record["many"]), _fmt(record["medium"]), _fmt(record["few"]))
            save_checkpoint(run_dir / "last.pt", state)
            if records and records[-1]["epoch"] == done:
                if records[-1]["top1"] > best_top1:
                    best_top1 = records[-1]["top1"]
                    save_checkpoint(run_dir / "best.pt", state)
                (run_dir / "summary.json").write_text(json.dumps(_summary(records), indent=2))
    finally:
        log.close()
    summary = _summary(records) if records else {}
    return RunResult(run_dir, summary)


def resume(
    run_dir: str | Path, data_dir: str | Path | None = None, device: str | None = None,
    stop_after: int | None = None,
) -> RunResult:
    """Continue the run in ``run_dir`` from its ``last.pt`` to its configured end."""
    run_dir = Path(run_dir)
    if not (run_dir / "last.pt").is_file():
        raise BalconError(
            f"{run_dir} holds no last.pt; --resume takes a run directory balcon wrote"
        )
    state = load_checkpoint(run_dir / "last.pt")
    cfg = config_from_dict(state["config"], source=f"{run_dir / 'last.pt'}")
    data_dir = data_dir if data_dir is not None else state.get("data_dir")
    return fit(cfg, data_dir, run_dir, device=device, stop_after=stop_after,
               _resume_state=state)


def evaluate_checkpoint(
    path: str | Path, data_dir: str | Path | None = None, device: str | None = None
) -> tuple[dict[str, Any], Predictions]:
    """Test-set metrics of a checkpoint (with its class names and epoch), and its predictions.
    """
    state = load_checkpoint(path)
    cfg = config_from_dict(state["config"], source=str(path))
    dev = resolve_device(device)
    data_dir = data_dir if data_dir is not None else state.get("data_dir")
    _, test_set = load_image_sets(cfg.data, data_dir)
    names = state["class_names"]
    if test_set.class_names != names:
        raise BalconError(
            f"the test set in {data_dir} has classes {test_set.class_names[:3]}..., the "
            f"checkpoint {names[:3]}...; point --data-dir at the data it was trained on"
        )
    model = build_model(cfg.model, len(names))
    try:
        model.load_state_dict(state["model"])
    except RuntimeError:
        raise BalconError(
            f"checkpoint {path} does not fit model {cfg.model.encoder}; it is incompatible"
        ) from None
    model.to(dev)
    loader = _eval_loader(cfg, test_set, dev)
    started = time.perf_counter()
    logits, labels = predict(model, loader, dev, inference_precision(dev, cfg.train.precision))
    metrics = classification_metrics(logits, labels, state["class_counts"])
    sources = test_set.paths or [f"test[{i}]" for i in range(len(test_set))]
    predictions = Predictions(logits, labels, list(sources), names)
    return {"checkpoint": str(path), "epoch": state["epoch"], "config": cfg.name,
            "method": cfg.loss.method, "test_images": len(labels),
            "seconds": time.perf_counter() - started, **metrics,
            "class_names": names, "class_counts": state["class_counts"]}, predictions
