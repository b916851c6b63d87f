"""The presets shipped with balcon: one YAML file per benchmark recipe, beside this module.

``cifar10/100-lt-r{10,50,100}`` (and ``-400ep``), ``imagenet-lt-resnext50``,
``imagenet-lt-resnet50``, ``inat18-resnet50``, ``imagefolder-r32``, ``imagefolder-r50``,
``imagefolder-finetune`` and ``digits-lt-demo``. Each file names its parent (``base:``)
and lists what differs from it, with what it trains, the paper's top-1 where there is
one, and the recipe's source in its header comment; the functions that read and resolve
them live in :mod:`balcon.config.files` and are re-exported here.
"""

from balcon.config.files import (
    list_presets,
    load_preset,
    preset_base,
    preset_summary,
    preset_yaml,
)

__all__ = ["list_presets", "load_preset", "preset_base", "preset_summary", "preset_yaml"]
