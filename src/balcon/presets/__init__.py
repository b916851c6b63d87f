"""The presets shipped with balcon: one YAML file per benchmark recipe, beside this module.

``balcon presets`` lists them. ``cifar10-lt-r100`` (the CIFAR-LT recipe) and
``imagenet-lt-resnext50`` (the ImageNet-LT recipe) stand alone; every other file names
its parent (``base:``) and lists what differs from it. Each file's header comment says
what it trains, the paper's top-1 where there is one, and the recipe's source. The
functions that read and resolve them live in :mod:`balcon.config.files` and are re-exported here.
"""

from balcon.config.files import (
    list_presets,
    load_preset,
    preset_base,
    preset_summary,
    preset_yaml,
)

__all__ = ["list_presets", "load_preset", "preset_base", "preset_summary", "preset_yaml"]
