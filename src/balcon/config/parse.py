"""Configs from dicts, YAML files and ``section.field=value`` overrides, and back to YAML."""

from __future__ import annotations

import dataclasses
import re
import types
import typing
from dataclasses import fields
from typing import Any

import yaml

from balcon.config.checks import validate
from balcon.config.sections import Config
from balcon.errors import BalconError

__all__ = [
    "apply_overrides",
    "check_keys",
    "compress_schedule",
    "config_from_dict",
    "config_to_yaml",
]

#: A number in scientific notation that YAML 1.1 (PyYAML) leaves a string, such as 1e-4.
NUMBER = re.compile(r"[-+]?(\d+\.?\d*|\.\d+)[eE][-+]?\d+")

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


def _fill(cfg: Config, raw: dict[str, Any], source: str) -> Config:
    """Set the fields ``raw`` names on ``cfg``, checking names and types (not the rules)."""
    if not isinstance(raw, dict):
        raise BalconError(f"{source}: expected a mapping of sections, got {type(raw).__name__}")
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
    return cfg


def check_keys(raw: dict[str, Any], source: str) -> None:
    """Refuse unknown sections and fields and ill-typed values of one file's dict, naming
    ``source`` (the whole config's rules are checked once, after merging)."""
    _fill(Config(), raw, source)


def config_from_dict(raw: dict[str, Any], source: str = "config",
                     new_run: bool = True) -> Config:
    """Build and validate a :class:`Config` from a nested dict; unknown keys are refused.

    ``new_run=False`` (a checkpoint's stored config) skips the checks that only guard
    new runs against silent mistakes (see :func:`validate`), so older runs still load.
    """
    cfg = _fill(Config(), raw, source)
    validate(cfg, new_run=new_run)
    return cfg


#: Fields added after runs already existed, where the default would misdescribe such a
#: run: the value a run that lacks the field trained with.
TRAINED_WITH = {"data.pipeline": "workers"}


def run_config(raw: dict[str, Any], source: str = "config") -> Config:
    """The config of an existing run (its checkpoint's or its ``config.yaml``): a field
    the run lacks takes :data:`TRAINED_WITH`'s value, else its default; the checks that
    only guard new runs are skipped (see :func:`config_from_dict`)."""
    raw = {k: dict(v) if isinstance(v, dict) else v for k, v in raw.items()}
    for dotted, value in TRAINED_WITH.items():
        section, _, name = dotted.partition(".")
        if isinstance(raw.get(section), dict):
            raw[section].setdefault(name, value)
    return config_from_dict(raw, source, new_run=False)


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


class _Dumper(yaml.SafeDumper):
    """Block-style sections, flow-style lists: ``mean: [0.5, 0.5, 0.5]``."""


_Dumper.add_representer(
    list, lambda dumper, data: dumper.represent_sequence("tag:yaml.org,2002:seq", data,
                                                         flow_style=True))


def config_to_yaml(cfg: Config) -> str:
    """The config as YAML, every field, one per line, in section order."""
    return yaml.dump(cfg.to_dict(), Dumper=_Dumper, sort_keys=False, default_flow_style=False)
