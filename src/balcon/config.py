"""Run configuration: dataclasses, the YAML presets shipped with balcon, overrides.

A config has five sections (``data``, ``model``, ``loss``, ``optim``, ``train``).
Presets live as YAML files in ``balcon/presets`` (:mod:`balcon.presets` loads them); a
user's own YAML file (a preset's YAML, edited) loads the same way; ``section.field=value``
overrides come last.
Every key and value is checked before anything runs; a problem is a
:class:`~balcon.errors.BalconError` naming the key and what it accepts.
"""

from __future__ import annotations

import dataclasses
import math
import re
import types
import typing
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import yaml

from balcon.errors import BalconError

__all__ = [
    "METHODS",
    "Config",
    "DataConfig",
    "LossConfig",
    "ModelConfig",
    "OptimConfig",
    "TrainConfig",
    "apply_overrides",
    "config_from_dict",
    "config_to_yaml",
    "compress_schedule",
    "load_config_file",
]

CIFAR_MEAN = [0.4914, 0.4822, 0.4465]
CIFAR_STD = [0.2023, 0.1994, 0.2010]

#: Training methods: BCL, its ablations and the baselines of the paper's table.
METHODS = ("bcl", "ce", "la", "supcon", "bcl-no-averaging", "bcl-no-complement")
DATASETS = ("cifar10", "cifar100", "imagefolder", "digits")
PRECISIONS = ("off", "bf16", "fp16")
#: Augmentation families: CIFAR-LT's 32-px views, or ImageNet-LT / iNaturalist's 224-px views.
VIEW_STYLES = ("cifar", "imagenet")
#: (view 2, view 3) of the contrastive branch; "rand" stands for "randstack".
VIEW_STRATEGIES = ("sim-sim", "sim-rand", "rand-rand")


@dataclass
class DataConfig:
    """Where the images come from and how they are made long-tailed and augmented.

    ``dataset``: ``cifar10`` / ``cifar100`` (pickles or an ImageFolder copy), ``digits``
    (bundled) or ``imagefolder``: ``--data-dir`` holds ``train/`` with optional ``val/``
    and ``test/`` class folders, or, with ``train_split`` set, the images listed in
    split files (``relative/path label`` per line, paths relative to ``--data-dir``; a
    split file's own path is absolute or relative to ``--data-dir``). ``num_classes``
    fixes C for split files (null: largest training label + 1). Model selection uses
    val when there is one; the final report uses test when there is one.
    ``view_style`` picks the 32-px CIFAR views or the 224-px ImageNet views;
    ``view_strategy`` the contrastive pair of the latter (``randaugment`` is timm's
    RandAugment config string of the "rand" and "randstack" views).
    """

    dataset: str = "cifar10"
    num_classes: int | None = None
    train_split: str | None = None
    val_split: str | None = None
    test_split: str | None = None
    imbalance: float | None = None
    profile: str = "exp"
    subsample_seed: int = 0
    image_size: int = 32
    mean: list[float] = field(default_factory=lambda: list(CIFAR_MEAN))
    std: list[float] = field(default_factory=lambda: list(CIFAR_STD))
    hflip: bool = True
    sim_crop_scale: list[float] = field(default_factory=lambda: [0.08, 1.0])
    sim_blur_prob: float = 0.0
    view_style: str = "cifar"
    view_strategy: str = "sim-sim"
    randaugment: str = "rand-n2-m10-mstd0.5"
    num_workers: int | None = None


@dataclass
class ModelConfig:
    """Backbone and heads.

    ``encoder``: a CIFAR ResNet (``resnet8``, ``resnet20``, ``resnet32``, ... any 6n+2
    depth torchvision does not also name), a torchvision ResNet family model
    (``resnet50``, ``resnext50_32x4d``, ...), or ``timm:<model>``. ``pretrained``: a
    local state-dict file for the encoder, or ``timm`` for timm's own weights
    (downloaded; timm encoders only). ``channels_last`` runs the model in NHWC.
    """

    encoder: str = "resnet32"
    pretrained: str | None = None
    channels_last: bool = False
    classifier: str = "cosine"
    cosine_scale: float = 30.0
    head_hidden: int = 512
    head_dim: int = 128


@dataclass
class LossConfig:
    """Training method and the weights of its two losses."""

    method: str = "bcl"
    temperature: float = 0.1
    alpha: float = 2.0
    beta: float = 0.6
    tau: float = 1.0


@dataclass
class OptimConfig:
    """SGD with a linear warm-up, then step decay (or cosine)."""

    lr: float = 0.15
    momentum: float = 0.9
    weight_decay: float = 5e-4
    nesterov: bool = False
    schedule: str = "step"
    warmup_epochs: int = 5
    milestones: list[int] = field(default_factory=lambda: [160, 180])
    gamma: float = 0.1


@dataclass
class TrainConfig:
    """Length, batch, precision, evaluation cadence and seed of a run.

    ``batch_size`` is global: under ``torchrun`` each of the N processes takes
    ``batch_size / N``. ``sync_bn`` turns BatchNorm into SyncBatchNorm in multi-GPU runs.
    """

    epochs: int = 200
    batch_size: int = 256
    precision: str = "off"
    eval_every: int = 10
    seed: int = 0
    sync_bn: bool = False


@dataclass
class Config:
    """A whole run's configuration."""

    name: str = "custom"
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    train: TrainConfig = field(default_factory=TrainConfig)

    def to_dict(self) -> dict[str, Any]:
        """Plain nested dict of the config (YAML, JSON and checkpoint friendly)."""
        return asdict(self)


#: A number in scientific notation that YAML 1.1 (PyYAML) leaves a string, such as 1e-4.
NUMBER = re.compile(r"[-+]?(\d+\.?\d*|\.\d+)[eE][-+]?\d+")

#: One section of timm's RandAugment string: ops (n), magnitude (m), its noise (mstd),
#: cap (mmax), increasing ops (inc), op probability (p), op set (t...).
RANDAUGMENT_SECTION = re.compile(r"(m|n|mmax|inc)\d+|(mstd|p)\d+(\.\d+)?|t\w+")

SECTIONS = {f.name: f.type for f in fields(Config) if f.name != "name"}


def _section_types(section_cls: type) -> dict[str, Any]:
    return typing.get_type_hints(section_cls)


def _coerce(value: Any, hint: Any, key: str) -> Any:
    """Check ``value`` against the type ``hint`` of ``key``; convert int -> float."""
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(hint)
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _coerce(value, arg, key)
            except BalconError as err:
                errors.append(str(err))
        raise BalconError(errors[0] if errors else f"{key}: bad value {value!r}")
    if origin is list:
        (item,) = typing.get_args(hint)
        if not isinstance(value, list | tuple):
            raise BalconError(f"{key} must be a list, got {value!r} (write it as [a, b])")
        return [_coerce(v, item, key) for v in value]
    if hint is bool:
        if not isinstance(value, bool):
            raise BalconError(f"{key} must be true or false, got {value!r}")
        return value
    if hint is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise BalconError(f"{key} must be an integer, got {value!r}")
        return value
    if hint is float:
        if isinstance(value, str) and NUMBER.fullmatch(value.strip()):
            value = float(value)  # YAML 1.1 reads 1e-4 (no dot) as a string
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise BalconError(f"{key} must be a number, got {value!r}")
        return float(value)
    if hint is str:
        if not isinstance(value, str):
            hint_text = ' (quote it in YAML: "off")' if isinstance(value, bool) else ""
            raise BalconError(f"{key} must be a string, got {value!r}{hint_text}")
        return value
    raise TypeError(f"unsupported config type {hint} for {key}")


def config_from_dict(raw: dict[str, Any], source: str = "config",
                     new_run: bool = True) -> Config:
    """Build and validate a :class:`Config` from a nested dict; unknown keys are refused.

    ``new_run=False`` (a checkpoint's stored config) skips the checks that only guard
    new runs against silent mistakes (see :func:`validate`), so older runs still load.
    """
    if not isinstance(raw, dict):
        raise BalconError(f"{source}: expected a mapping of sections, got {type(raw).__name__}")
    cfg = Config()
    for key, value in raw.items():
        if key == "name":
            cfg.name = _coerce(value, str, "name")
            continue
        if key not in SECTIONS:
            raise BalconError(
                f"{source}: unknown section {key!r}; sections are {', '.join(SECTIONS)}"
            )
        if not isinstance(value, dict):
            raise BalconError(f"{source}: section {key!r} must be a mapping of fields")
        for name, item in value.items():
            _set_field(cfg, f"{key}.{name}", item, source)
    validate(cfg, new_run=new_run)
    return cfg


def _set_field(cfg: Config, dotted: str, value: Any, source: str) -> None:
    section, _, name = dotted.partition(".")
    if section not in SECTIONS or not name:
        raise BalconError(
            f"{source}: unknown key {dotted!r}; keys look like section.field with section "
            f"one of {', '.join(SECTIONS)}"
        )
    section_obj = getattr(cfg, section)
    hints = _section_types(type(section_obj))
    if name not in hints:
        raise BalconError(
            f"{source}: unknown key {dotted!r}; {section} has {', '.join(hints)}"
        )
    setattr(section_obj, name, _coerce(value, hints[name], dotted))


def _parse_override(cfg: Config, dotted: str, text: str) -> Any:
    """The value of ``text`` for ``dotted``: verbatim for a string field, else YAML."""
    section, _, name = dotted.partition(".")
    if section in SECTIONS and _section_types(type(getattr(cfg, section))).get(name) is str:
        return text
    try:
        return yaml.safe_load(text) if text else None
    except yaml.YAMLError:
        return text


def apply_overrides(cfg: Config, overrides: list[str]) -> Config:
    """Apply ``section.field=value`` strings (values parsed as YAML) and re-validate."""
    cfg = dataclasses.replace(
        cfg, **{s: dataclasses.replace(getattr(cfg, s)) for s in SECTIONS}
    )
    for item in overrides:
        key, sep, text = item.partition("=")
        if not sep:
            raise BalconError(f"--set {item!r}: write it as section.field=value")
        _set_field(cfg, key.strip(), _parse_override(cfg, key.strip(), text.strip()), "--set")
    validate(cfg)
    return cfg


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
    _check(d.num_workers is None or d.num_workers >= 0,
           f"data.num_workers must be >= 0 or null (automatic), got {d.num_workers}")
    _check(m.classifier in ("cosine", "linear"),
           f"model.classifier must be cosine or linear, got {m.classifier!r}")
    _check(m.cosine_scale > 0, f"model.cosine_scale must be > 0, got {m.cosine_scale}")
    _check(m.head_hidden > 0 and m.head_dim > 0, "model.head_hidden and model.head_dim must be > 0")
    _check(lo.method in METHODS, f"loss.method must be one of {', '.join(METHODS)}, "
           f"got {lo.method!r}")
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


def compress_schedule(cfg: Config, epochs: int) -> Config:
    """Return ``cfg`` with ``epochs`` epochs, warm-up and lr steps scaled to match."""
    if epochs < 1:
        raise BalconError(f"--epochs must be >= 1, got {epochs}")
    ratio = epochs / cfg.train.epochs
    optim = dataclasses.replace(
        cfg.optim,
        warmup_epochs=max(1, round(cfg.optim.warmup_epochs * ratio)) if cfg.optim.warmup_epochs
        else 0,
        # a step at or after the last epoch never happens (e.g. 160 and 180 of 200 -> 1 of 1)
        milestones=sorted(m for m in (max(1, round(m * ratio)) for m in cfg.optim.milestones)
                          if m < epochs),
    )
    out = dataclasses.replace(
        cfg, optim=optim, train=dataclasses.replace(cfg.train, epochs=epochs)
    )
    validate(out)
    return out


def load_config_file(path: str | Path) -> Config:
    """A :class:`Config` from a user's YAML file."""
    path = Path(path)
    try:
        raw = yaml.safe_load(path.read_text())
    except FileNotFoundError:
        raise BalconError(f"config file {path} does not exist; check the path") from None
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as err:
        first = str(err).splitlines()[0] if str(err) else type(err).__name__
        raise BalconError(f"config file {path} is not readable YAML ({first}); fix it") from None
    return config_from_dict(raw or {}, source=str(path))


def config_to_yaml(cfg: Config) -> str:
    """The config as YAML, in section order."""
    return yaml.safe_dump(cfg.to_dict(), sort_keys=False, default_flow_style=None)
