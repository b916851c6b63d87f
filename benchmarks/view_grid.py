"""A picture grid: the same images through the ``workers`` (PIL) and the ``device`` views.

Columns are images; rows: the image, then two draws each of view 1 by the workers
pipeline and by the device pipeline, then two draws each of the contrastive view
(2 / 3). The draws differ (each pipeline has its own random stream); what the grid
shows is that they are alike in kind and strength. Images: the first ``--count``
training images of a CIFAR pickle folder (``--data-dir``), else scikit-learn's digits.

    python benchmarks/view_grid.py [--data-dir DATA] [--count 10] [--out FILE.png]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import torch  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
from balcon.config import DataConfig  # noqa: E402
from balcon.data import load_cifar, load_digits, make_train_dataset  # noqa: E402
from balcon.data.device_views import DeviceViews  # noqa: E402


def show(views: torch.Tensor, data: DataConfig) -> torch.Tensor:
    """Normalised views (B, 3, H, W) back to displayable (B, H, W, 3) in [0, 1]."""
    mean = torch.tensor(data.mean)[:, None, None]
    std = torch.tensor(data.std)[:, None, None]
    return (views * std + mean).clamp(0, 1).permute(0, 2, 3, 1)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data-dir")
    p.add_argument("--count", type=int, default=10)
    p.add_argument("--out", default=str(Path(__file__).parent / "results" / "view-grid.png"))
    args = p.parse_args()
    images = load_cifar(args.data_dir, "cifar10")[0] if args.data_dir else load_digits()[0]
    images = images.subset(range(args.count))
    data = DataConfig()
    workers = make_train_dataset(images, data, 3, seed=0)
    device = DeviceViews(images, data, 3, seed=0, device=torch.device("cpu"))
    rows: list[tuple[str, torch.Tensor]] = [
        ("image", torch.stack([torch.from_numpy(images.pixels[i]) for i in range(args.count)])
         .float() / 255)]
    for view, name in ((0, "view 1"), (1, "view 2")):
        for epoch in (0, 1):
            pil = torch.stack([workers[(epoch, i)][0][view] for i in range(args.count)])
            rows.append((f"{name}, workers", show(pil, data)))
        for epoch in (0, 1):
            made = device(epoch, torch.arange(args.count))[0][view]
            rows.append((f"{name}, device", show(made, data)))
    fig, axes = plt.subplots(len(rows), args.count, figsize=(args.count * 0.9, len(rows) * 0.95))
    for r, (label, pics) in enumerate(rows):
        for c in range(args.count):
            axes[r, c].imshow(pics[c].numpy(), interpolation="nearest")
            axes[r, c].set_xticks([])
            axes[r, c].set_yticks([])
        axes[r, 0].set_ylabel(label, rotation=0, ha="right", va="center", fontsize=8)
    fig.tight_layout()
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(args.out, dpi=110)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
