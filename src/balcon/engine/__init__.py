"""Training: device, processes, schedule, the objective and its step, the epoch loop,
evaluation. Nothing here touches a run directory (that is ``balcon.runs``)."""

from balcon.engine.device import autocast, default_num_workers, resolve_device
from balcon.engine.distributed import DistContext, init_distributed, shutdown
from balcon.engine.loop import Keeper, train_epoch, train_epochs
from balcon.engine.metrics import classification_metrics
from balcon.engine.prepare import Trainer
from balcon.engine.schedule import lr_at
from balcon.engine.steps import Objective, evaluate, make_objective, predict, step_loss, train_step

__all__ = [
    "DistContext",
    "Keeper",
    "Objective",
    "Trainer",
    "autocast",
    "classification_metrics",
    "default_num_workers",
    "evaluate",
    "init_distributed",
    "lr_at",
    "make_objective",
    "predict",
    "resolve_device",
    "shutdown",
    "step_loss",
    "train_epoch",
    "train_epochs",
    "train_step",
]
