"""Training and evaluation: device, processes, schedule, objective, steps, runs, checkpoints."""

from balcon.engine.checkpoint import CHECKPOINT_FORMAT, load_checkpoint, save_checkpoint
from balcon.engine.device import autocast, default_num_workers, resolve_device
from balcon.engine.distributed import DistContext, init_distributed, shutdown
from balcon.engine.evaluate import Predictions, evaluate_checkpoint, predict_images
from balcon.engine.fit import RunResult, fit, resume
from balcon.engine.metrics import classification_metrics
from balcon.engine.objective import LOSSES, Objective, make_objective, objective_loss
from balcon.engine.schedule import lr_at
from balcon.engine.steps import predict, train_one_epoch, train_step

__all__ = [
    "CHECKPOINT_FORMAT",
    "LOSSES",
    "DistContext",
    "Objective",
    "Predictions",
    "RunResult",
    "autocast",
    "classification_metrics",
    "default_num_workers",
    "evaluate_checkpoint",
    "fit",
    "init_distributed",
    "load_checkpoint",
    "lr_at",
    "make_objective",
    "objective_loss",
    "predict",
    "predict_images",
    "resolve_device",
    "resume",
    "save_checkpoint",
    "shutdown",
    "train_one_epoch",
    "train_step",
]
