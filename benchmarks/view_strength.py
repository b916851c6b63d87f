"""Are balcon's views as hard as the published ones? One trained model scores each pipeline's views.

Issue 19, point 6, the suspect "the views": balcon makes the 32-px views itself from the
resident uint8 set (``data.pipeline=device``, its own batched ops) or per image with
torchvision's PIL transforms (``workers``); the published code, and the reference trainer,
use the PIL transforms. Weaker views would train faster and generalise worse. Per-op
tests (``tests/test_batch_ops.py``, ``tests/test_device_views.py``) compare each op at
fixed parameters and each rate over many draws; this measures the result as training
sees it: a trained model (``last.pt``, in eval mode, so BatchNorm's statistics are fixed)
scores the same samples' views from each pipeline, each with its own random draws:

- view 1: the logit-adjusted cross-entropy and the accuracy of the classifier;
- views 2 and 3: the balanced contrastive loss (with the prototypes) and the mean cosine
  between a sample's two projections (higher: the pair is easier to match);
- every view: the mean and standard deviation of its normalised pixels.

Each row is the mean over ``--batches`` batches of ``--batch`` training samples (the same
samples for every pipeline), +- the standard error of that mean over the batches; then,
paired by batch (the same samples), each pipeline's difference to the reference's views,
+- its standard error.

    python benchmarks/view_strength.py RUN_OR_CHECKPOINT DATA_DIR [--batches 16]
        [--without crop|jitter|hue|gray]

Since balcon 0.9 the device pipeline computes views 2 and 3 on 8-bit grey levels as PIL
does, equal to the PIL transforms' at the same parameters; 0.8 and earlier kept floats
(this script's ``--quantize`` then rounded them after each step; BENCHMARKS.md).

``--without OP`` drops one step of views 2 and 3 from the device and the reference
pipelines alike (``crop``: the whole image, no resized crop; ``jitter``: no colour jitter;
``hue``: jitter without its hue part; ``gray``: no random grayscale) and skips the
``workers`` row: where the device row's gap to the reference closes, that step is where
the two pipelines' views differ.

``DATA_DIR`` holds ``cifar-100-python/`` (the checkpoint's preset selects its subset).
"""

from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import reference_trainer as ref  # noqa: E402

import balcon.data.device_views as device_views_module  # noqa: E402
from balcon.data.build import load_image_sets, make_train_dataset  # noqa: E402
from balcon.data.device_views import DeviceViews  # noqa: E402
from balcon.engine.steps import make_objective  # noqa: E402
from balcon.runs.inference import model_for_inference  # noqa: E402


def drop_from_device_views(without: str) -> None:
    """Make balcon's device pipeline skip the step ``without`` names in views 2 and 3."""
    made = device_views_module.sim_params

    def sim_params(u, size, scale, blur_prob):  # noqa: ANN001, ANN202
        p = made(u, size, scale, blur_prob)
        if without == "crop":
            p["boxes"] = torch.tensor([0, 0, size, size]).expand_as(p["boxes"]).clone()
        elif without == "jitter":
            p["jitter"] = torch.zeros_like(p["jitter"])
        elif without == "hue":
            p["hue"] = torch.zeros_like(p["hue"])
        elif without == "gray":
            p["gray"] = torch.zeros_like(p["gray"])
        return p

    device_views_module.sim_params = sim_params
    if without == "hue":  # no 8-bit HSV round trip either, as ColorJitter(hue=0)
        device_views_module.ops.adjust_hue = lambda levels, factor: levels


def reference_views(images, indices: torch.Tensor, seed: int,  # noqa: ANN001, ANN201
                    without: str | None = None):
    """The reference trainer's PIL views (its transforms, its RNG use) of ``indices``."""
    torch.manual_seed(seed)
    np.random.seed(seed)
    strong, sim = ref.strong_view(False), ref.sim_view(without)
    out = [[], [], []]
    for i in indices.tolist():
        img = images.image(i)
        for k, view in enumerate((strong, sim, sim)):
            out[k].append(view(img))
    return [torch.stack(v) for v in out]


@torch.no_grad()
def score(model, objective, views: list[torch.Tensor], labels: torch.Tensor) -> dict:  # noqa: ANN001
    """The losses, accuracy, pair cosine and pixel statistics of one batch's views."""
    b = labels.shape[0]
    projections, logits, prototypes = model(torch.cat(views), **objective.forward_parts())
    logits = logits[:b].float()
    pairs = torch.stack(projections[b:].float().split(b), dim=1)  # (B, 2, D)
    return {
        "view-1 LA loss": objective.classifier_loss(logits, labels).item(),
        "view-1 accuracy": 100.0 * (logits.argmax(1) == labels).float().mean().item(),
        "views 2-3 BCL loss": objective.contrastive_loss(pairs, labels, prototypes.float()).item(),
        "views 2-3 pair cosine": (pairs[:, 0] * pairs[:, 1]).sum(1).mean().item(),
        "view 1 pixel mean": views[0].mean().item(),
        "view 1 pixel std": views[0].std().item(),
        "views 2-3 pixel mean": torch.cat(views[1:]).mean().item(),
        "views 2-3 pixel std": torch.cat(views[1:]).std().item(),
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("checkpoint", type=Path)
    p.add_argument("data_dir", type=Path)
    p.add_argument("--batches", type=int, default=16)
    p.add_argument("--batch", type=int, default=256)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--without", choices=["crop", "jitter", "hue", "gray"])
    args = p.parse_args()
    if args.without:
        drop_from_device_views(args.without)
    path = args.checkpoint / "last.pt" if args.checkpoint.is_dir() else args.checkpoint
    state, cfg, model, device = model_for_inference(path, "cpu")
    model = model.to(memory_format=torch.contiguous_format).float().eval()
    train = load_image_sets(cfg.data, args.data_dir).train
    objective = make_objective(cfg.loss, state["class_counts"])
    device_views = DeviceViews(train, cfg.data, 3, args.seed, device)
    workers = make_train_dataset(train, cfg.data, 3, args.seed)
    order = torch.randperm(len(train), generator=torch.Generator().manual_seed(args.seed))
    names = ("device", "reference") if args.without else ("device", "workers", "reference")
    rows: dict[str, dict[str, list[float]]] = {name: {} for name in names}
    for k in range(args.batches):
        idx = order[k * args.batch:(k + 1) * args.batch]
        labels = torch.as_tensor(train.labels)[idx].long()
        made = {"device": device_views(k, idx)[0],
                "reference": reference_views(train, idx, args.seed * 1000 + k, args.without)}
        if "workers" in rows:
            made["workers"] = [torch.stack(v) for v in zip(
                *(workers[(k, int(i))][0] for i in idx), strict=True)]
        for name, views in made.items():
            for key, value in score(model, objective, views, labels).items():
                rows[name].setdefault(key, []).append(value)
    keys = list(rows["device"])
    print(f"checkpoint {path} (epoch {state['epoch']}), {args.batches} batches of "
          f"{args.batch} training samples, model in eval mode"
          + (f"; views 2 and 3 without {args.without}" if args.without else "")
          + "\n")
    print("| pipeline | " + " | ".join(keys) + " |")
    print("| --- |" + " ---: |" * len(keys))
    for name, vals in rows.items():
        cells = [f"{statistics.mean(v):.3f} +- {statistics.stdev(v) / len(v) ** 0.5:.3f}"
                 for v in (vals[k] for k in keys)]
        print(f"| {name} | " + " | ".join(cells) + " |")
    for name in names[:-1]:
        cells = []
        for k in keys:
            diff = [a - b for a, b in zip(rows[name][k], rows["reference"][k], strict=True)]
            cells.append(f"{statistics.mean(diff):+.3f} +- "
                         f"{statistics.stdev(diff) / len(diff) ** 0.5:.3f}")
        print(f"| {name} - reference, paired | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
