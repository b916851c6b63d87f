"""Time the device pipeline's view making alone, for one or more versions of balcon side by side.

What it measures: seconds to make one batch's three CIFAR views (view 1 and the
contrastive pair, ``DeviceViews.__call__``) from a resident uint8 set of random 32-px
images, on the CPU, with no model. Each ``--src`` (a balcon source tree; default this
repository's) runs in its own subprocess, one round each in turn (interleaved, so a
machine's drift hits every version alike), ``--batches`` batches of ``--batch`` per
round after one untimed batch; a row gives each round's mean seconds per batch and the
median round. The header names the CPU. To compare with an older version::

    git worktree add /tmp/balcon-old <commit>
    python benchmarks/bench_device_views.py --src /tmp/balcon-old --src .

Uses torch's default thread count; pause other work on the machine first.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import machine  # noqa: E402

ROUND = """
import sys, time
import numpy as np, torch
sys.path.insert(0, sys.argv[1])
from balcon.config import DataConfig
from balcon.data import ImageSet
from balcon.data.device_views import DeviceViews
n, batch, batches = (int(a) for a in sys.argv[2:5])
pixels = np.random.RandomState(0).randint(0, 256, (n, 32, 32, 3)).astype(np.uint8)
images = ImageSet(labels=np.zeros(n, dtype=np.int64), class_names=["a"], pixels=pixels)
views = DeviceViews(images, DataConfig(), 3, 0, torch.device("cpu"))
order = torch.randperm(n, generator=torch.Generator().manual_seed(0))
views(0, order[:batch])
start = time.perf_counter()
for k in range(batches):
    views(1, order[k * batch % (n - batch):][:batch])
print((time.perf_counter() - start) / batches)
"""


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--src", action="append", type=Path,
                   help="a balcon source tree (repeat to compare; default: this repository)")
    p.add_argument("--batch", type=int, default=256)
    p.add_argument("--batches", type=int, default=10)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--images", type=int, default=10847, help="resident set size")
    args = p.parse_args()
    trees = args.src or [Path(__file__).resolve().parent.parent]
    times: dict[Path, list[float]] = {t: [] for t in trees}
    for _ in range(args.rounds):
        for tree in trees:
            out = subprocess.run(
                [sys.executable, "-c", ROUND, str(tree / "src"), str(args.images),
                 str(args.batch), str(args.batches)],
                check=True, capture_output=True, text=True).stdout
            times[tree].append(float(out.split()[-1]))
    print(f"{machine.describe_cpu()}; three views of {args.batch} 32-px images per batch, "
          f"{args.batches} batches a round\n")
    print("| source | version | s per batch, each round | median |")
    print("| --- | --- | --- | ---: |")
    for tree, ts in times.items():
        init = (tree / "src" / "balcon" / "__init__.py").read_text()
        version = init.split('__version__ = "', 1)[1].split('"', 1)[0]
        print(f"| {tree} | {version} | {' '.join(f'{t:.4f}' for t in ts)} | "
              f"{statistics.median(ts):.4f} |")


if __name__ == "__main__":
    main()
