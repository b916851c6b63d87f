"""The presets shipped with balcon: one YAML file per benchmark recipe, beside this module.

``cifar10/100-lt-r{10,50,100}`` (and ``-400ep``), ``imagenet-lt-resnext50``,
``imagenet-lt-resnet50``, ``inat18-resnet50``, ``imagefolder-r32``, ``imagefolder-r50``
and ``digits-lt-demo``; each file spells out every config field, with the recipe's
source in its header comment.
"""

from __future__ import annotations

from importlib import resources
from typing import Any

import yaml

from balcon.config import Config, config_from_dict
from balcon.errors import BalconError

__all__ = ["list_presets", "load_preset", "preset_yaml"]


def _preset_dir() -> Any:
    return resources.files("balcon") / "presets"


def list_presets() -> list[str]:
    """Names of the presets shipped with balcon, sorted."""
    return sorted(p.name[:-5] for p in _preset_dir().iterdir() if p.name.endswith(".yaml"))


def preset_yaml(name: str) -> str:
    """The YAML text of preset ``name``."""
    names = list_presets()
    if name not in names:
        raise BalconError(
            f"unknown preset {name!r}; `balcon presets` lists them: {', '.join(names)}"
        )
    return (_preset_dir() / f"{name}.yaml").read_text()


def load_preset(name: str) -> Config:
    """The :class:`Config` of preset ``name``."""
    return config_from_dict(yaml.safe_load(preset_yaml(name)), source=f"preset {name}")
