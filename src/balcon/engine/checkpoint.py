"""Checkpoints: everything to resume a run exactly and to predict with class names.

A checkpoint is a dict of tensors, numbers, strings and lists only, so it loads
with ``torch.load(weights_only=True)`` on any device. Writes go to a temporary file
that replaces the old one, so an interrupted save never destroys a checkpoint.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch

from balcon.errors import BalconError, load_failure

__all__ = ["CHECKPOINT_FORMAT", "load_checkpoint", "save_checkpoint"]

CHECKPOINT_FORMAT = "balcon-checkpoint-1"
REQUIRED = ("format", "epoch", "config", "class_names", "class_counts", "model")


def save_checkpoint(path: str | Path, state: dict[str, Any]) -> None:
    """Write ``state`` (with the format tag added) atomically to ``path``."""
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    torch.save({"format": CHECKPOINT_FORMAT, **state}, tmp)
    os.replace(tmp, path)


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    """Load a balcon checkpoint onto the CPU, ``weights_only=True``; checked for its keys."""
    path = Path(path)
    if path.is_dir():
        raise BalconError(f"checkpoint {path} is a folder; give its last.pt or best.pt")
    if not path.is_file():
        raise BalconError(f"checkpoint {path} does not exist; give the path of last.pt or best.pt")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # noqa: BLE001 - torch.load fails in many ways on a bad file
        raise BalconError(
            f"checkpoint {path} is unreadable ({load_failure(err)}); give a checkpoint balcon "
            "wrote (last.pt or best.pt of a run directory)"
        ) from None
    if not isinstance(state, dict) or state.get("format") != CHECKPOINT_FORMAT:
        raise BalconError(
            f"checkpoint {path} is not a {CHECKPOINT_FORMAT} file; give a checkpoint balcon "
            "wrote (last.pt or best.pt of a run directory)"
        )
    missing = [k for k in REQUIRED if k not in state]
    if missing:
        raise BalconError(f"checkpoint {path} lacks {', '.join(missing)}; it is incomplete")
    return state
