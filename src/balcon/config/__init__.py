"""Run configuration: dataclasses, the YAML presets shipped with balcon, overrides.

A config has five sections (``data``, ``model``, ``loss``, ``optim``, ``train``).
Presets live as YAML files in ``balcon/presets``, each naming its parent (``base:``) and
the fields that differ (:mod:`balcon.config.files` resolves them); a user's own YAML
file loads the same way; ``section.field=value`` overrides come last.
Every key and value is checked before anything runs; a problem is a
:class:`~balcon.errors.BalconError` naming the key and what it accepts.
"""

from balcon.config.checks import validate
from balcon.config.files import (
    list_presets,
    load_config_file,
    load_preset,
    preset_base,
    preset_summary,
    preset_yaml,
    resolve_base,
)
from balcon.config.parse import (
    apply_overrides,
    compress_schedule,
    config_from_dict,
    config_to_yaml,
    run_config,
)
from balcon.config.sections import (
    CIFAR_MEAN,
    CIFAR_STD,
    CLASSIFIERS,
    DATASETS,
    EXPORT_FORMATS,
    FINETUNE_MODES,
    PRECISIONS,
    PROFILES,
    REPORT_ORDER,
    SCHEDULES,
    SPLITS,
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
    "CLASSIFIERS",
    "DATASETS",
    "EXPORT_FORMATS",
    "FINETUNE_MODES",
    "PRECISIONS",
    "PROFILES",
    "REPORT_ORDER",
    "SCHEDULES",
    "SPLITS",
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
    "list_presets",
    "load_config_file",
    "load_preset",
    "preset_base",
    "preset_summary",
    "preset_yaml",
    "resolve_base",
    "run_config",
    "validate",
]
