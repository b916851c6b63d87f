"""Training and evaluation: device and precision, schedule, steps, runs, checkpoints."""

from balcon.engine.checkpoint import CHECKPOINT_FORMAT, load_checkpoint, save_checkpoint
from balcon.engine.device import autocast, default_num_workers, resolve_device
from balcon.engine.fit import Predictions, RunResult, evaluate_checkpoint, fit, resume
from balcon.engine.metrics import classification_metrics
from balcon.engine.schedule import lr_at
from balcon.engine.steps import Objective, make_objective, predict, train_one_epoch

__all__ = [
    "CHECKPOINT_FORMAT",
    "Objective",
    "Predictions",
    "RunResult",
    "autocast",
    "classification_metrics",
    "default_num_workers",
    "evaluate_checkpoint",
    "fit",
    "load_checkpoint",
    "lr_at",
    "make_objective",
    "predict",
    "resolve_device",
    "resume",
    "save_checkpoint",
    "train_one_epoch",
]
