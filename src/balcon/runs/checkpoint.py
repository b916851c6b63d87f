"""Checkpoints: everything to resume a run exactly and to predict with class names.

A checkpoint is a dict of tensors, numbers, strings and lists only, so it loads
with ``torch.load(weights_only=True)`` on any device. Writes are atomic and durable: a
temporary file beside the target is written, flushed and fsynced, renamed over the
target, and the directory fsynced, so a kill at any moment (even ``kill -9`` or a power
cut after the rename) leaves either the old file or the new one, whole.
"""

from __future__ import annotations

import os
import shutil
import stat
import sys
import tempfile
import zipfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import IO, Any

import torch

from balcon.errors import BalconError, load_failure

__all__ = [
    "CHECKPOINT_FORMAT",
    "GIVE_A_CHECKPOINT",
    "load_checkpoint",
    "save_checkpoint",
    "write_atomic",
    "write_failure",
    "write_text_atomic",
]

CHECKPOINT_FORMAT = "balcon-checkpoint-1"
#: What every checkpoint holds, and the type of each.
REQUIRED = {"format": str, "epoch": int, "config": dict, "class_names": list,
            "class_counts": list, "model": dict}
#: What to do about a file that is not a checkpoint balcon can read.
GIVE_A_CHECKPOINT = "give a checkpoint balcon wrote (last.pt or best.pt of a run directory)"


def _fsync_dir(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_atomic(path: str | Path, write: Callable[[IO[bytes]], None],
                 fix: str | None = None, verify: Callable[[Path], None] | None = None,
                 make_folders: bool = False) -> None:
    """Call ``write(file)`` on a temporary file beside ``path``, make it durable,
    ``verify(temporary path)`` when given, and rename it over ``path`` (the old content
    or the new, never a part). A failed write (a full disk, a read-only or forbidden
    folder) leaves ``path`` as it was and raises a one-line BalconError naming it, the
    reason and ``fix`` (default: how to continue a run); so does anything ``write`` or
    ``verify`` raises, the temporary file removed. ``make_folders``: make the missing
    folders of ``path`` (removed again if the write fails); else a missing folder fails.
    A link is written through to its target; a device, a pipe or standard output
    (``/dev/null``, ``/dev/stdout``) is written into, never replaced.
    """
    path = Path(path)
    if is_special(path):
        _write_special(path, write, fix, verify)
        return
    if path.is_symlink():
        path = path.resolve()
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    made: list[Path] = []
    try:
        if make_folders:
            made = _make_folders(path.parent)
        with open(tmp, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        if verify is not None:
            verify(tmp)
        os.replace(tmp, path)
        _fsync_dir(path.parent)
    except OSError as err:
        _discard(tmp, made)
        raise write_failure(path, err, fix) from None
    except BaseException:
        _discard(tmp, made)
        raise


def is_stdout(path: str | Path) -> bool:
    """Whether ``path`` is the file this process's standard output writes to:
    ``/dev/stdout``, or the file, pipe or terminal that a shell sent stdout to."""
    try:
        return os.path.samestat(os.stat(path), os.fstat(sys.__stdout__.fileno()))
    except (OSError, ValueError, AttributeError):  # no such path; no real stdout
        return False


def is_special(path: str | Path) -> bool:
    """Whether ``path``, links followed, is a device, a pipe or this process's standard
    output: a file to write into, never to replace. Asked of the path as given, since a
    link into ``/proc`` such as ``/dev/stdout`` on a pipe names no path once resolved
    (``/proc/N/fd/pipe:[M]``)."""
    try:
        mode = os.stat(path).st_mode
    except OSError:
        return False
    return stat.S_ISCHR(mode) or stat.S_ISBLK(mode) or stat.S_ISFIFO(mode) or is_stdout(path)


def _open_special(path: Path) -> IO[bytes]:
    """``path`` opened to write into; standard output through its own descriptor, so
    that a shell's ``>>`` appends and ``>`` keeps its position."""
    if not is_stdout(path):
        return open(path, "wb")
    sys.__stdout__.flush()
    return os.fdopen(os.dup(sys.__stdout__.fileno()), "wb")


def _write_special(path: Path, write: Callable[[IO[bytes]], None], fix: str | None,
                   verify: Callable[[Path], None] | None) -> None:
    """:func:`write_atomic` into a device, a pipe or standard output: made and verified
    in a temporary folder, then copied in (renaming over it would replace the device
    with a file, or cut the file a shell redirected stdout to)."""
    with tempfile.TemporaryDirectory() as folder:
        tmp = Path(folder) / path.name
        try:
            with open(tmp, "wb") as f:
                write(f)
            if verify is not None:
                verify(tmp)
            with open(tmp, "rb") as src, _open_special(path) as dst:
                shutil.copyfileobj(src, dst)
        except BrokenPipeError:  # the reader went away: the command line's exit 141
            raise
        except OSError as err:
            raise write_failure(path, err, fix) from None


def _make_folders(folder: Path) -> list[Path]:
    """Make ``folder`` and its missing parents; returns the ones made, deepest first."""
    made = []
    missing = folder
    while not os.path.lexists(missing):
        made.append(missing)
        missing = missing.parent
    folder.mkdir(parents=True, exist_ok=True)
    return made


def _discard(tmp: Path, made: Sequence[Path] = ()) -> None:
    """Remove a failed write's temporary file and the folders made for it."""
    try:
        tmp.unlink(missing_ok=True)
        for folder in made:
            folder.rmdir()
    except OSError:
        pass


def write_failure(path: Path, err: OSError, fix: str | None = None) -> BalconError:
    """The one-line error of a write to ``path`` that failed with ``err``; ``fix`` says
    what to do (default: free space or fix permissions, then continue the run)."""
    reason = err.strerror or type(err).__name__
    fix = fix or (f"free space or fix the permissions there, then continue with balcon "
                  f"train --resume {path.parent} (what was written before is intact)")
    return BalconError(f"cannot write {path} ({reason}); {fix}")


def write_text_atomic(path: str | Path, text: str, fix: str | None = None,
                      make_folders: bool = False) -> None:
    """``path.write_text(text)``, atomically and durably (``fix`` and ``make_folders`` as
    in :func:`write_atomic`)."""
    write_atomic(path, lambda f: f.write(text.encode()), fix, make_folders=make_folders)


def save_checkpoint(path: str | Path, state: dict[str, Any]) -> None:
    """Write ``state`` (with the format tag added) atomically and durably to ``path``."""
    write_atomic(path, lambda f: torch.save({"format": CHECKPOINT_FORMAT, **state}, f))


def _is_torchscript(path: Path) -> bool:
    """Whether ``path`` is a TorchScript archive (a zip with compiled ``code/``)."""
    try:
        with zipfile.ZipFile(path) as archive:
            return any("/code/" in f"/{name}" for name in archive.namelist())
    except (zipfile.BadZipFile, OSError):
        return False


def load_checkpoint(path: str | Path, fix: str = GIVE_A_CHECKPOINT) -> dict[str, Any]:
    """Load a balcon checkpoint onto the CPU, ``weights_only=True``; checked for its keys
    and their types. A file that is none says what it is, then ``fix``."""
    path = Path(path)
    if path.is_dir():
        raise BalconError(f"checkpoint {path} is a folder; give its last.pt or best.pt")
    if not path.is_file():
        raise BalconError(f"checkpoint {path} does not exist; give the path of last.pt or best.pt")
    if _is_torchscript(path):
        raise BalconError(f"checkpoint {path} is a TorchScript export (balcon export writes "
                          "these for inference without balcon); give the checkpoint it came "
                          "from (last.pt or best.pt of a run directory)")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # noqa: BLE001 - torch.load fails in many ways on a bad file
        raise BalconError(f"checkpoint {path} is unreadable ({load_failure(err)}); {fix}"
                          ) from None
    if not isinstance(state, dict) or state.get("format") != CHECKPOINT_FORMAT:
        raise BalconError(f"checkpoint {path} is not a {CHECKPOINT_FORMAT} file; {fix}")
    missing = [k for k in REQUIRED if k not in state]
    if missing:
        raise BalconError(f"checkpoint {path} lacks {', '.join(missing)}; it is incomplete; "
                          f"{fix}")
    wrong = [k for k, kind in REQUIRED.items() if not isinstance(state[k], kind)]
    if wrong:
        raise BalconError(f"checkpoint {path} has a malformed {', '.join(wrong)}; {fix}")
    return state
