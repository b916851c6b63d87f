"""Run configuration: dataclasses, the YAML presets shipped with balcon, overrides.

A config has five sections (``data``, ``model``, ``loss``, ``optim``, ``train``).
Presets live as YAML files in ``balcon/presets`` (:mod:`balcon.presets` loads them); a
user's own YAML file (a preset's YAML, edited) loads the same way; ``section.field=value``
overrides come last.
Every key and value is checked before anything runs; a problem is a
:class:`~balcon.errors.BalconError` naming the key and what it accepts.
"""

from balcon.config.checks import validate
from balcon.config.parse import (
    apply_overrides,
    compress_schedule,
    config_from_dict,
    config_to_yaml,
    load_config_file,
)
from balcon.config.sections import (
    CIFAR_MEAN,
    CIFAR_STD,
    DATASETS,
    METHODS,
    PRECISIONS,
    VIEW_STRATEGIES,
    VIEW_STYLES,
    Config,
    DataConfig,
    LossConfig,
    ModelConfig,
    OptimConfig,
    TrainConfig,
)

__all__ = [
    "CIFAR_MEAN",
    "CIFAR_STD",
    "DATASETS",
    "METHODS",
    "PRECISIONS",
    "VIEW_STRATEGIES",
    "VIEW_STYLES",
    "Config",
    "DataConfig",
    "LossConfig",
    "ModelConfig",
    "OptimConfig",
    "TrainConfig",
    "apply_overrides",
    "compress_schedule",
    "config_from_dict",
    "config_to_yaml",
    "load_config_file",
    "validate",
]
