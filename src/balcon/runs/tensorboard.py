"""TensorBoard scalars of a run (``train.tensorboard=true``): ``RUN_DIR/tensorboard/``.

Per epoch, the scalars the log prints: ``train/loss``, ``train/loss_cls``,
``train/loss_con`` (methods with a contrastive term), ``train/lr``, ``train/accuracy``,
``train/images_per_s``; after each evaluation ``<split>/top1``, ``<split>/top5``,
``<split>/many``, ``<split>/medium``, ``<split>/few`` (a shot group without classes
is left out). The step is the epoch (1-based). A resumed run drops the events past
the epoch it resumes from (TensorBoard's ``purge_step``), so a run that was killed
and resumed shows one line, not two.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from balcon.data.longtail import SHOT_GROUPS
from balcon.errors import BalconError

__all__ = ["EVAL_SCALARS", "TRAIN_SCALARS", "EpochBoard", "require_tensorboard"]

#: TensorBoard tag under ``train/`` -> key of an epoch's stats.
TRAIN_SCALARS = {"loss": "loss", "loss_cls": "loss_cls", "loss_con": "loss_con", "lr": "lr",
                 "accuracy": "train_acc", "images_per_s": "images_per_s"}
#: Keys of an evaluation record, logged under ``<split>/``.
EVAL_SCALARS = ("top1", "top5", *SHOT_GROUPS)


def require_tensorboard() -> None:
    """Raise a one-line BalconError when the tensorboard package is missing (checked before
    a run writes anything, so a run is never left needing it to resume)."""
    try:
        from torch.utils.tensorboard import SummaryWriter  # noqa: F401
    except ImportError:
        raise BalconError("train.tensorboard=true needs the tensorboard package: pip "
                          "install 'balcon[tensorboard]' (or drop the setting)") from None


class EpochBoard:
    """A TensorBoard writer of per-epoch scalars, or nothing when ``enabled`` is False.

    Args:
        run_dir: the run directory; events go to ``run_dir/tensorboard``.
        enabled: write at all (``train.tensorboard``, and rank 0 only).
        start_epoch: epochs already done (a resumed run); later events are purged.
    """

    def __init__(self, run_dir: Path, enabled: bool, start_epoch: int = 0) -> None:
        self.writer = None
        if not enabled:
            return
        require_tensorboard()
        from torch.utils.tensorboard import SummaryWriter

        self.writer = SummaryWriter(str(run_dir / "tensorboard"),
                                    purge_step=start_epoch + 1 if start_epoch else None)

    def epoch(self, epoch: int, stats: dict[str, Any], record: dict[str, Any] | None) -> None:
        """Scalars of epoch ``epoch`` (1-based): its training ``stats`` and, when it was
        evaluated, its ``record``."""
        if self.writer is None:
            return
        for tag, key in TRAIN_SCALARS.items():
            if stats.get(key) is not None:
                self.writer.add_scalar(f"train/{tag}", stats[key], epoch)
        if record is not None:
            for key in EVAL_SCALARS:
                if record.get(key) is not None:
                    self.writer.add_scalar(f"{record['split']}/{key}", record[key], epoch)
        self.writer.flush()

    def close(self) -> None:
        """Flush and close the event file."""
        if self.writer is not None:
            self.writer.close()
            self.writer = None
