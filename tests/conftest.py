"""Shared fixtures: small synthetic datasets written under ``tmp_path``.

Tests never touch the network or real datasets. Each fixture writes its files in the
test's own ``tmp_path`` and returns the folder to pass as ``data_dir``; a test may
change or delete the files (e.g. to check the error for a corrupt batch).

- ``cifar10_root``: torchvision's ``cifar-10-batches-py`` layout, 20 random images per
  class in each of ``data_batch_1..5`` and ``test_batch`` (1000 train, 200 test).
  ``cifar10_shared_root`` is the same, written once a session (read-only use).
- ``cifar100_root``: ``cifar-100-python`` with 5 train and 2 test images per class.
- ``image_folder_root``: ``train/<class>/*.png`` and ``test/<class>/*.png``, 3 classes.

The whole session runs torch with one intra-op thread (``_one_torch_thread``): tests use
tiny tensors, and on small VMs torch's thread pool made a ResNet-32 forward of 6 images
take ~2 s instead of ~30 ms.

A process that has not exited ``EXIT_LIMIT_S`` after the session ended prints every
thread's stack and its live child processes, kills those, and exits with the session's
status (``pytest_unconfigure``): a CI run once hung after all its tests had passed, and
used up CI's time with nothing to say why. ``tests/test_loaders.py`` tests the cause
found (a DataLoader's workers); this is the alarm should another appear.
"""

from __future__ import annotations

import contextlib
import faulthandler
import os
import pickle
import signal
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

CIFAR10_NAMES = [
    "airplane", "automobile", "bird", "cat", "deer",
    "dog", "frog", "horse", "ship", "truck",
]
#: Images per class in each synthetic CIFAR-10 batch file.
CIFAR10_PER_CLASS = 20


@pytest.fixture(autouse=True, scope="session")
def _one_torch_thread():
    """Run every test with ``torch.set_num_threads(1)``; restore the count afterwards."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def proc_stat(pid: int) -> list[str] | None:
    """The fields of ``/proc/PID/stat`` after the command name (state, parent PID, ...);
    None when the process is gone."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None


def child_pids(pid: int) -> list[int]:
    """PIDs whose parent is ``pid``."""
    kids = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        fields = proc_stat(int(stat.parent.name))
        if fields is not None and int(fields[1]) == pid:
            kids.append(int(stat.parent.name))
    return kids


def descendant_pids(pid: int) -> list[int]:
    """PIDs below ``pid``: its children, theirs, and so on."""
    found, frontier = [], [pid]
    while frontier:
        frontier = [kid for parent in frontier for kid in child_pids(parent)]
        found += frontier
    return found


EXIT_LIMIT_S = 120
_status: list[int] = [0]


def pytest_sessionfinish(session, exitstatus) -> None:
    _status[0] = int(exitstatus)


@pytest.hookimpl(trylast=True)
def pytest_unconfigure(config) -> None:
    """Start the exit alarm (see the module docstring)."""
    def alarm() -> None:
        time.sleep(EXIT_LIMIT_S)
        print(f"\ntests: the process had not exited {EXIT_LIMIT_S} s after the session; "
              "its threads and live child processes:", file=sys.stderr, flush=True)
        faulthandler.dump_traceback(all_threads=True)
        for pid in descendant_pids(os.getpid()):
            with contextlib.suppress(OSError):  # it may end meanwhile
                cmd = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ")
                print(f"  child {pid}: {cmd.decode(errors='replace')[:300]}",
                      file=sys.stderr)
                os.kill(pid, signal.SIGKILL)
        sys.stderr.flush()
        os._exit(_status[0])

    threading.Thread(target=alarm, daemon=True).start()
    faulthandler.dump_traceback_later(2 * EXIT_LIMIT_S, exit=True)  # a hang past Python's reach


def noise_and_walks(n: int, seed: int, size: int = 32) -> np.ndarray:
    """(2n, size, size, 3) uint8 images to hold the views' ops against PIL: n of uniform
    noise (every hue, ties at the HSV sector edges) and n of random walks along the rows
    (smooth, as photographs are)."""
    rng = np.random.RandomState(seed)
    noise = rng.randint(0, 256, (n, size, size, 3))
    walks = np.clip(np.cumsum(rng.randint(-20, 21, (n, size, size, 3)), axis=2) + 128, 0, 255)
    return np.concatenate([noise, walks]).astype(np.uint8)


def _write_pickle(path: Path, obj: object) -> None:
    with open(path, "wb") as f:
        pickle.dump(obj, f, protocol=2)


def _cifar_batch(rng: np.random.RandomState, per_class: int, classes: int, label_key: str) -> dict:
    """A batch dict as in the real files: shuffled labels, N x 3072 uint8 rows (R, G, B planes)."""
    labels = np.repeat(np.arange(classes), per_class)
    rng.shuffle(labels)
    data = rng.randint(0, 256, size=(len(labels), 3072)).astype(np.uint8)
    return {"data": data, label_key: labels.tolist(),
            "filenames": [f"img_{i}.png" for i in range(len(labels))]}


def write_cifar10(root: Path) -> Path:
    """Write a synthetic ``cifar-10-batches-py`` under ``root``; returns ``root``."""
    folder = root / "cifar-10-batches-py"
    folder.mkdir()
    rng = np.random.RandomState(1234)
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        batch = _cifar_batch(rng, CIFAR10_PER_CLASS, 10, "labels")
        batch["batch_label"] = name
        _write_pickle(folder / name, batch)
    _write_pickle(folder / "batches.meta", {"label_names": CIFAR10_NAMES,
                                            "num_cases_per_batch": 10 * CIFAR10_PER_CLASS})
    return root


@pytest.fixture
def cifar10_root(tmp_path: Path) -> Path:
    """Folder holding a synthetic ``cifar-10-batches-py`` (1000 train, 200 test images)."""
    return write_cifar10(tmp_path)


@pytest.fixture(scope="session")
def cifar10_shared_root(tmp_path_factory) -> Path:
    """Like ``cifar10_root``, written once per session; tests must not change it."""
    return write_cifar10(tmp_path_factory.mktemp("cifar10"))


@pytest.fixture
def cifar100_root(tmp_path: Path) -> Path:
    """Folder holding a synthetic ``cifar-100-python`` (500 train, 200 test images)."""
    folder = tmp_path / "cifar-100-python"
    folder.mkdir()
    rng = np.random.RandomState(4321)
    for name, per_class in (("train", 5), ("test", 2)):
        batch = _cifar_batch(rng, per_class, 100, "fine_labels")
        batch["coarse_labels"] = [y // 5 for y in batch["fine_labels"]]
        _write_pickle(folder / name, batch)
    _write_pickle(folder / "meta", {"fine_label_names": [f"fine{i:02d}" for i in range(100)],
                                    "coarse_label_names": [f"coarse{i:02d}" for i in range(20)]})
    return tmp_path


@pytest.fixture
def image_folder_root(tmp_path: Path) -> Path:
    """``train/`` (4, 3, 2 images of classes a, b, c) and ``test/`` (2 each); 40x36 PNGs."""
    rng = np.random.RandomState(99)
    for split, counts in (("train", (4, 3, 2)), ("test", (2, 2, 2))):
        for cls, n in zip("abc", counts, strict=True):
            folder = tmp_path / "lt" / split / cls
            folder.mkdir(parents=True)
            for i in range(n):
                pixels = rng.randint(0, 256, size=(36, 40, 3)).astype(np.uint8)
                Image.fromarray(pixels).save(folder / f"{i}.png")
    return tmp_path / "lt"
