"""The rules a configuration must follow; a broken one is a one-line BalconError."""

from __future__ import annotations

import math
import re

from balcon.config.sections import (
    BAD_IMAGE_ACTIONS,
    CONV_INITS,
    CUTOUT_FILLS,
    DATASETS,
    FINETUNE_MODES,
    PIPELINES,
    PRECISIONS,
    SHORTCUTS,
    VIEW_STRATEGIES,
    VIEW_STYLES,
    Config,
    DataConfig,
    ModelConfig,
    OptimConfig,
)
from balcon.errors import BalconError
from balcon.methods import method_names

__all__ = ["validate"]

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


def _check_finetune(m: ModelConfig, o: OptimConfig) -> None:
    _check(m.finetune in FINETUNE_MODES, f"model.finetune must be one of "
           f"{', '.join(FINETUNE_MODES)}, got {m.finetune!r}")
    _check(m.trainable_blocks >= 1, f"model.trainable_blocks must be >= 1, got "
           f"{m.trainable_blocks}")
    _check(m.lora_rank >= 1, f"model.lora_rank must be >= 1, got {m.lora_rank}")
    _check(o.encoder_lr_scale > 0, f"optim.encoder_lr_scale must be > 0, got "
           f"{o.encoder_lr_scale}")


def validate(cfg: Config, new_run: bool = True) -> None:
    """Refuse values no run can use, naming the key and what it accepts.

    With ``new_run`` also refuse what would run but not as meant: lr steps or a warm-up
    at or beyond the last epoch (``train.epochs`` set without ``--epochs``), a
    RandAugment string the CIFAR views would ignore.
    """
    d, m, lo, o, t = cfg.data, cfg.model, cfg.loss, cfg.optim, cfg.train
    _check(d.dataset in DATASETS, f"data.dataset must be one of {', '.join(DATASETS)}, "
           f"got {d.dataset!r}")
    _check(d.num_classes is None or d.num_classes >= 2,
           f"data.num_classes must be >= 2 or null (from the labels), got {d.num_classes}")
    _check(d.train_split is not None or (d.val_split is None and d.test_split is None),
           "data.val_split and data.test_split need data.train_split (split files go together)")
    _check(d.train_split is None or d.dataset == "imagefolder",
           f"data.train_split needs data.dataset=imagefolder, got {d.dataset!r}")
    _check(d.num_classes is None or d.train_split is not None,
           "data.num_classes applies to split files only (set data.train_split, or null it)")
    _check(d.view_style in VIEW_STYLES,
           f"data.view_style must be one of {', '.join(VIEW_STYLES)}, got {d.view_style!r}")
    _check(d.view_strategy in VIEW_STRATEGIES, f"data.view_strategy must be one of "
           f"{', '.join(VIEW_STRATEGIES)}, got {d.view_strategy!r}")
    _check(d.view_style == "imagenet" or d.view_strategy == "sim-sim",
           f"data.view_strategy {d.view_strategy} needs data.view_style=imagenet; "
           "the cifar views use sim-sim")
    if d.view_style == "imagenet":
        _check_randaugment(d.randaugment)
    elif new_run:
        _check(d.randaugment == DataConfig.randaugment,
               f"data.randaugment applies to data.view_style=imagenet; the cifar views use "
               f"AutoAugment (leave it at {DataConfig.randaugment})")
    _check(d.imbalance is None or d.imbalance >= 1,
           f"data.imbalance must be >= 1 (n_max / n_min) or null, got {d.imbalance}")
    _check(d.profile in ("exp", "step"), f"data.profile must be exp or step, got {d.profile!r}")
    _check(d.image_size >= 8, f"data.image_size must be >= 8, got {d.image_size}")
    _check(len(d.mean) == 3 and len(d.std) == 3 and all(s > 0 for s in d.std),
           "data.mean and data.std must hold 3 numbers each, std > 0")
    _check(len(d.sim_crop_scale) == 2 and 0 < d.sim_crop_scale[0] <= d.sim_crop_scale[1] <= 1,
           f"data.sim_crop_scale must be [lo, hi] with 0 < lo <= hi <= 1, "
           f"got {d.sim_crop_scale}")
    _check(0 <= d.sim_blur_prob <= 1, f"data.sim_blur_prob must be in [0, 1], "
           f"got {d.sim_blur_prob}")
    _check(d.cutout_fill in CUTOUT_FILLS, f"data.cutout_fill must be one of "
           f"{', '.join(CUTOUT_FILLS)}, got {d.cutout_fill!r}")
    _check(d.pipeline in PIPELINES, f"data.pipeline must be one of {', '.join(PIPELINES)}, "
           f"got {d.pipeline!r}")
    _check(d.pipeline != "device" or d.view_style == "cifar",
           "data.pipeline=device makes the 32-px cifar views only; set data.pipeline=workers "
           "(or auto) for data.view_style=imagenet")
    _check(d.on_bad_image in BAD_IMAGE_ACTIONS, f"data.on_bad_image must be one of "
           f"{', '.join(BAD_IMAGE_ACTIONS)}, got {d.on_bad_image!r}")
    _check(d.max_bad_images is None or d.max_bad_images >= 0,
           f"data.max_bad_images must be >= 0 or null (0.1% of a split), got {d.max_bad_images}")
    _check(d.num_workers is None or d.num_workers >= 0,
           f"data.num_workers must be >= 0 or null (automatic), got {d.num_workers}")
    _check(m.shortcut in SHORTCUTS, f"model.shortcut must be one of {', '.join(SHORTCUTS)}, "
           f"got {m.shortcut!r}")
    _check(m.conv_init in CONV_INITS, f"model.conv_init must be one of {', '.join(CONV_INITS)}, "
           f"got {m.conv_init!r}")
    _check(m.classifier in ("cosine", "linear"),
           f"model.classifier must be cosine or linear, got {m.classifier!r}")
    _check(m.cosine_scale > 0, f"model.cosine_scale must be > 0, got {m.cosine_scale}")
    _check(m.head_hidden > 0 and m.head_dim > 0, "model.head_hidden and model.head_dim must be > 0")
    _check_finetune(m, o)
    if new_run:  # an older run's method may be one registered in its own session
        _check(lo.method in method_names(), f"loss.method must be one of "
               f"{', '.join(method_names())}, got {lo.method!r}")
    _check(lo.temperature > 0, f"loss.temperature must be > 0, got {lo.temperature}")
    _check(lo.alpha >= 0 and lo.beta >= 0, "loss.alpha and loss.beta must be >= 0")
    _check(lo.tau >= 0, f"loss.tau must be >= 0, got {lo.tau}")
    _check(o.lr > 0 and math.isfinite(o.lr), f"optim.lr must be > 0, got {o.lr}")
    _check(0 <= o.momentum < 1, f"optim.momentum must be in [0, 1), got {o.momentum}")
    _check(o.weight_decay >= 0, f"optim.weight_decay must be >= 0, got {o.weight_decay}")
    _check(o.schedule in ("step", "cosine"),
           f"optim.schedule must be step or cosine, got {o.schedule!r}")
    _check(o.warmup_epochs >= 0, f"optim.warmup_epochs must be >= 0, got {o.warmup_epochs}")
    _check(all(x > 0 for x in o.milestones) and o.milestones == sorted(o.milestones),
           f"optim.milestones must be increasing positive epochs, got {o.milestones}")
    _check(0 < o.gamma <= 1, f"optim.gamma must be in (0, 1], got {o.gamma}")
    _check(t.epochs >= 1, f"train.epochs must be >= 1, got {t.epochs}")
    _check(t.batch_size >= 2, f"train.batch_size must be >= 2, got {t.batch_size}")
    _check(t.precision in PRECISIONS,
           f"train.precision must be one of {', '.join(PRECISIONS)}, got {t.precision!r}")
    _check(t.eval_every >= 1, f"train.eval_every must be >= 1, got {t.eval_every}")
    _check(t.checkpoint_minutes is None or t.checkpoint_minutes > 0,
           f"train.checkpoint_minutes must be > 0 or null (epoch ends only), "
           f"got {t.checkpoint_minutes}")
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
