"""balcon's DataLoader workers: they ignore the stop signals, yet never keep a process alive.

The regression this guards: a loader with workers still alive at interpreter exit (in
a reference cycle, or kept by a notebook) made the process hang after its work was
done, since multiprocessing's exit handler sent its workers SIGTERM, which they
ignore, and then waited for them forever. A CI run hung that way after all tests
passed.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import torch

from balcon.config import DataConfig
from balcon.engine.loaders import loader_options

sys.path.insert(0, str(Path(__file__).parent))
from conftest import proc_stat  # noqa: E402

# A process that keeps a two-worker persistent loader in a reference cycle, prints its
# workers' PIDs, and exits when its stdin closes.
CHILD = """
import sys, multiprocessing
import numpy as np, torch
from balcon.config import DataConfig
from balcon.data import ImageSet
from balcon.engine.loaders import eval_loader
images = ImageSet(labels=np.arange(12) % 3, class_names=["a", "b", "c"],
                  pixels=np.zeros((12, 8, 8, 3), dtype=np.uint8))
loader = eval_loader(images, DataConfig(image_size=8, num_workers=2), torch.device("cpu"),
                     persistent=True)
assert sum(len(labels) for _, labels in loader) == 12
cycle = [loader]
cycle.append(cycle)
print(*[p.pid for p in multiprocessing.active_children()], flush=True)
sys.stdin.read()
"""


def _running(pid: int) -> bool:
    """Alive and not a zombie."""
    stat = proc_stat(pid)
    return stat is not None and stat[0] != "Z"


def _signals_set(pid: int) -> bool:
    """Whether the worker ``pid`` has run its init: SIGINT ignored, SIGTERM caught
    (/proc/PID/status masks; a worker may still be starting when its PID is printed)."""
    try:
        fields = dict(line.split(":\t", 1) for line in
                      Path(f"/proc/{pid}/status").read_text().splitlines() if ":\t" in line)
    except OSError:
        return False
    bit = lambda sig: 1 << (sig - 1)  # noqa: E731
    return bool(int(fields["SigIgn"], 16) & bit(signal.SIGINT)) and \
        bool(int(fields["SigCgt"], 16) & bit(signal.SIGTERM))


def test_workers_ignore_stop_signals_and_still_end_with_the_process():
    child = subprocess.Popen([sys.executable, "-c", CHILD], stdin=subprocess.PIPE,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        workers = [int(pid) for pid in child.stdout.readline().split()]
        assert len(workers) == 2, child.stderr.read() if child.poll() is not None else ""
        deadline = time.monotonic() + 30
        while not all(_signals_set(pid) for pid in workers):  # on a loaded machine
            assert time.monotonic() < deadline, "a worker never ran its init"
            time.sleep(0.05)
        os.kill(workers[0], signal.SIGTERM)  # as a cluster signals every process
        time.sleep(0.5)
        assert _running(workers[0])  # left to the main process
        child.stdin.close()  # the main process ends with the loader still alive
        child.wait(timeout=60)
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
    assert child.returncode == 0, child.stderr.read()
    deadline = time.monotonic() + 10
    while any(_running(pid) for pid in workers):
        assert time.monotonic() < deadline, "a worker outlived its process"
        time.sleep(0.1)


def test_only_loaders_iterated_every_epoch_keep_their_workers():
    cpu, data = torch.device("cpu"), DataConfig(num_workers=2)
    assert loader_options(data, cpu, persistent=True)["persistent_workers"]
    assert not loader_options(data, cpu)["persistent_workers"]
    in_process = loader_options(DataConfig(num_workers=0), cpu, persistent=True)
    assert in_process == {"num_workers": 0, "pin_memory": False}
