"""The rules a configuration must follow; a broken one is a one-line BalconError."""

from __future__ import annotations

import math
import re
from typing import Any

from balcon.config.sections import (
    BAD_IMAGE_ACTIONS,
    CLASSIFIERS,
    CONV_INITS,
    CUTOUT_FILLS,
    DATASETS,
    FINETUNE_MODES,
    PIPELINES,
    PRECISIONS,
    PROFILES,
    SCHEDULES,
    SHORTCUTS,
    VIEW_STRATEGIES,
    VIEW_STYLES,
    Config,
    DataConfig,
)
from balcon.errors import BalconError
from balcon.methods import method_names

__all__ = ["MAX_SEED", "check_seed", "validate"]

#: One section of timm's RandAugment string: ops (n), magnitude (m), its noise (mstd),
#: cap (mmax), increasing ops (inc), op probability (p), op set (t...).
RANDAUGMENT_SECTION = re.compile(r"(m|n|mmax|inc)\d+|(mstd|p)\d+(\.\d+)?|t\w+")

def _check(ok: bool, message: str) -> None:
    if not ok:
        raise BalconError(message)


def _check_randaugment(text: str) -> None:
    """Refuse a RandAugment string timm cannot parse (asked of timm itself)."""
    from timm.data.auto_augment import rand_augment_transform

    try:
        head, *sections = text.split("-")
        # timm skips sections it cannot split into key and number; refuse them here
        if head != "rand" or not all(RANDAUGMENT_SECTION.fullmatch(x) for x in sections):
            raise ValueError(text)
        rand_augment_transform(text, {"translate_const": 100, "img_mean": (124, 116, 104)})
    except Exception:  # noqa: BLE001 - timm fails with asserts, KeyErrors, ValueErrors
        raise BalconError(
            f"data.randaugment {text!r} is not a timm RandAugment string; write it like "
            "rand-n2-m10-mstd0.5 (n: ops per image, m: magnitude, mstd: its noise)"
        ) from None


#: The largest seed: every generator balcon seeds (torch, numpy, Python's) takes 0..2**31-1.
MAX_SEED = 2**31 - 1


def check_seed(seed: int, name: str) -> None:
    """Refuse a seed outside 0..:data:`MAX_SEED`, naming the option that gave it."""
    _check(0 <= seed <= MAX_SEED, f"{name} must be a whole number from 0 to {MAX_SEED}, "
           f"got {seed}")


#: Fields that take one of a few values.
CHOICES = {
    "data.dataset": DATASETS, "data.view_style": VIEW_STYLES,
    "data.view_strategy": VIEW_STRATEGIES, "data.profile": PROFILES,
    "data.cutout_fill": CUTOUT_FILLS, "data.pipeline": PIPELINES,
    "data.on_bad_image": BAD_IMAGE_ACTIONS, "model.shortcut": SHORTCUTS,
    "model.conv_init": CONV_INITS, "model.classifier": CLASSIFIERS,
    "model.finetune": FINETUNE_MODES, "optim.schedule": SCHEDULES,
    "train.precision": PRECISIONS,
}
#: Numeric fields with a lower bound: field -> (">" or ">=", bound, what null means, or
#: None where null is not allowed).
BOUNDS = {
    "data.num_classes": (">=", 2, "from the labels"), "data.image_size": (">=", 8, None),
    "data.imbalance": (">=", 1, "no subset; n_max / n_min"),
    "data.max_bad_images": (">=", 0, "0.1% of a split"),
    "data.num_workers": (">=", 0, "automatic"), "model.cosine_scale": (">", 0, None),
    "model.head_hidden": (">", 0, None), "model.head_dim": (">", 0, None),
    "model.trainable_blocks": (">=", 1, None), "model.lora_rank": (">=", 1, None),
    "loss.temperature": (">", 0, None), "loss.alpha": (">=", 0, None),
    "loss.beta": (">=", 0, None), "loss.tau": (">=", 0, None),
    "optim.weight_decay": (">=", 0, None), "optim.warmup_epochs": (">=", 0, None),
    "optim.encoder_lr_scale": (">", 0, None), "train.epochs": (">=", 1, None),
    "train.batch_size": (">=", 2, None), "train.eval_every": (">=", 1, None),
    "train.checkpoint_minutes": (">", 0, "epoch ends only"),
}


def _check_table(cfg: Config) -> None:
    """The fields of :data:`CHOICES` and :data:`BOUNDS`."""
    def value(key: str) -> Any:
        section, name = key.split(".")
        return getattr(getattr(cfg, section), name)

    for key, allowed in CHOICES.items():
        _check(value(key) in allowed, f"{key} must be one of {', '.join(allowed)}, got "
               f"{value(key)!r}")
    for key, (op, bound, null) in BOUNDS.items():
        v = value(key)
        ok = (v is None and null is not None) or (v is not None and (
            v > bound if op == ">" else v >= bound))
        _check(ok, f"{key} must be {op} {bound}" + (f" or null ({null})" if null else "") +
               f", got {v}")


#: Data settings only the cifar views read (the imagenet views are the official code's).
CIFAR_VIEW_KEYS = ("sim_crop_scale", "sim_blur_prob", "cutout_fill")


def validate(cfg: Config, new_run: bool = True) -> None:
    """Refuse values no run can use, naming the key and what it accepts.

    With ``new_run`` also refuse what would run but not as meant: lr steps at or after
    the last epoch, or a warm-up longer than the run (``train.epochs`` set without
    ``--epochs``), a RandAugment string the CIFAR views would ignore, CIFAR view
    settings the imagenet views would.
    """
    d, lo, o, t = cfg.data, cfg.loss, cfg.optim, cfg.train
    _check_table(cfg)
    check_seed(t.seed, "train.seed")
    check_seed(d.subsample_seed, "data.subsample_seed")
    _check(d.train_split is not None or (d.val_split is None and d.test_split is None),
           "data.val_split and data.test_split need data.train_split (split files go together)")
    _check(d.train_split is None or d.dataset == "imagefolder",
           f"data.train_split needs data.dataset=imagefolder, got {d.dataset!r}")
    _check(d.num_classes is None or d.train_split is not None,
           "data.num_classes applies to split files only (set data.train_split, or null it)")
    _check(d.view_style == "imagenet" or d.view_strategy == "sim-sim",
           f"data.view_strategy {d.view_strategy} needs data.view_style=imagenet; "
           "the cifar views use sim-sim")
    if d.view_style == "imagenet":
        _check_randaugment(d.randaugment)
        for key in CIFAR_VIEW_KEYS if new_run else ():
            default = getattr(DataConfig(), key)
            _check(getattr(d, key) == default,
                   f"data.{key} applies to data.view_style=cifar; the imagenet views are "
                   f"the official code's (leave it at {default})")
    elif new_run:
        _check(d.randaugment == DataConfig.randaugment,
               f"data.randaugment applies to data.view_style=imagenet; the cifar views use "
               f"AutoAugment (leave it at {DataConfig.randaugment})")
    _check(len(d.mean) == 3 and len(d.std) == 3 and all(s > 0 for s in d.std),
           "data.mean and data.std must hold 3 numbers each, std > 0")
    _check(len(d.sim_crop_scale) == 2 and 0 < d.sim_crop_scale[0] <= d.sim_crop_scale[1] <= 1,
           f"data.sim_crop_scale must be [lo, hi] with 0 < lo <= hi <= 1, "
           f"got {d.sim_crop_scale}")
    _check(0 <= d.sim_blur_prob <= 1, f"data.sim_blur_prob must be in [0, 1], "
           f"got {d.sim_blur_prob}")
    _check(d.pipeline != "device" or d.view_style == "cifar",
           "data.pipeline=device makes the 32-px cifar views only; set data.pipeline=workers "
           "(or auto) for data.view_style=imagenet")
    if new_run:  # an older run's method may be one registered in its own session
        _check(lo.method in method_names(), f"loss.method must be one of "
               f"{', '.join(method_names())}, got {lo.method!r}")
    _check(o.lr > 0 and math.isfinite(o.lr), f"optim.lr must be > 0, got {o.lr}")
    _check(0 <= o.momentum < 1, f"optim.momentum must be in [0, 1), got {o.momentum}")
    _check(all(x > 0 for x in o.milestones) and o.milestones == sorted(o.milestones),
           f"optim.milestones must be increasing positive epochs, got {o.milestones}")
    _check(0 < o.gamma <= 1, f"optim.gamma must be in (0, 1], got {o.gamma}")
    if not new_run:
        return
    late = [m for m in o.milestones if m >= t.epochs]
    _check(o.schedule != "step" or not late,
           f"optim.milestones {late} lie at or beyond train.epochs {t.epochs}, so the lr would "
           f"never step down there; use --epochs {t.epochs} (scales the warm-up and the "
           "steps) or set optim.milestones")
    _check(o.warmup_epochs <= t.epochs,
           f"optim.warmup_epochs {o.warmup_epochs} is longer than train.epochs {t.epochs}; "
           f"use --epochs {t.epochs} (scales the warm-up and the steps) or set "
           "optim.warmup_epochs")
