"""Run keeping: a run's directory and lock, checkpoints, preemption and clock checkpoints,
resume, seeds, the metrics log, TensorBoard; and a checkpoint put to use (eval, predict).

It drives the training of ``balcon.engine`` (which knows nothing of files or signals)
through :class:`~balcon.runs.keeper.RunKeeper`.
"""

from balcon.runs.checkpoint import CHECKPOINT_FORMAT, load_checkpoint, save_checkpoint
from balcon.runs.inference import Predictions, evaluate_checkpoint, predict_images
from balcon.runs.train import RunResult, check_new_run, fit, resume

__all__ = [
    "CHECKPOINT_FORMAT",
    "Predictions",
    "RunResult",
    "check_new_run",
    "evaluate_checkpoint",
    "fit",
    "load_checkpoint",
    "predict_images",
    "resume",
    "save_checkpoint",
]
