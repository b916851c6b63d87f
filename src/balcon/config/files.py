"""Config files: the presets shipped with balcon and users' YAML files, with ``base:`` parents.

A preset is ``balcon/presets/NAME.yaml``. It names its parent with ``base: PARENT`` and
lists only the fields that differ from it; a file without ``base:`` starts from
balcon's defaults (the dataclasses of :mod:`balcon.config.sections`). Every parent
is itself an ordinary preset: listed by ``balcon presets`` and trainable. A preset's
``name`` is its file name, a user file's its ``name:`` or its file name (a name is
never inherited). A user's YAML file works the same way;
its ``base:`` names a preset, or another YAML file (a path ending in ``.yaml`` or
``.yml``, relative to the file naming it). Resolution merges field by field (a list
replaces the parent's list), then checks the whole config once.
"""

from __future__ import annotations

import re
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from balcon.config.parse import check_keys, config_from_dict, config_to_yaml
from balcon.config.sections import Config
from balcon.errors import BalconError

__all__ = [
    "list_presets",
    "load_config_file",
    "load_preset",
    "preset_base",
    "preset_summary",
    "preset_yaml",
    "resolve_base",
]


def _preset_dir() -> Any:
    return resources.files("balcon") / "presets"


def list_presets() -> list[str]:
    """Names of the presets shipped with balcon, sorted."""
    return sorted(p.name[:-5] for p in _preset_dir().iterdir() if p.name.endswith(".yaml"))


def _preset_text(name: str) -> str:
    names = list_presets()
    if name not in names:
        hint = " (a YAML file goes to --config)" if name.endswith((".yaml", ".yml")) else ""
        raise BalconError(
            f"unknown preset {name!r}{hint}; `balcon presets` lists them: {', '.join(names)}"
        )
    return (_preset_dir() / f"{name}.yaml").read_text()


class _UniqueKeyLoader(yaml.SafeLoader):
    """YAML's safe loader, refusing a key given twice in one mapping (plain YAML keeps the
    last one silently)."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict:
        seen: set[Any] = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            try:
                hash(key)
            except TypeError:  # e.g. `? [a, b]`; the safe loader refuses it with its mark
                continue
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    None, None, f"{key!r} is given twice", key_node.start_mark)
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


def _read_yaml(text: str, source: str) -> dict[str, Any]:
    try:
        raw = yaml.load(text, Loader=_UniqueKeyLoader)  # a SafeLoader: no Python objects
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        what = getattr(err, "problem", None) or type(err).__name__
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise BalconError(f"{source} is not readable YAML ({what}{where}); fix it") from None
    if raw is None:
        raise BalconError(f"{source} is empty; write at least base: PRESET (a preset to "
                          "start from) and the fields that differ")
    if not isinstance(raw, dict):
        raise BalconError(f"{source}: expected a mapping of sections, got {type(raw).__name__}")
    return raw


def _is_file_ref(base: str) -> bool:
    return base.endswith((".yaml", ".yml"))


def _load_base(base: Any, source: str, folder: Path | None,
               chain: tuple[str, ...]) -> dict[str, Any]:
    """The resolved raw dict of the parent ``base`` named in ``source``."""
    if not isinstance(base, str) or not base:
        raise BalconError(f"{source}: base must be a preset name or a .yaml file, got {base!r}")
    if _is_file_ref(base):
        if folder is None:
            raise BalconError(f"{source}: a preset's base must be another preset, got {base!r}")
        path = (folder / base).resolve()
        key = str(path)
        try:
            text = path.read_text()
        except (OSError, UnicodeDecodeError):
            raise BalconError(f"{source}: base file {path} is not readable; check the "
                              "path (relative to the file that names it)") from None
        here, folder = str(path), path.parent
    else:
        key, here = f"preset {base}", f"preset {base}"
        try:
            text = _preset_text(base)
        except BalconError as err:
            hint = " (a file base must end in .yaml or .yml)" if "/" in base else ""
            raise BalconError(f"{source}: base: {err}{hint}") from None
        folder = None
    if key in chain:
        loop = " -> ".join((*chain, key))
        raise BalconError(f"{source}: base loop {loop}; remove one of these base: lines")
    return resolve_base(_read_yaml(text, here), here, folder, (*chain, key))


def resolve_base(raw: dict[str, Any], source: str, folder: Path | None = None,
                 chain: tuple[str, ...] = ()) -> dict[str, Any]:
    """``raw`` merged over its ``base:`` chain: every section's fields, parent first.

    ``folder`` is where a ``base:`` that is a file path is looked up (``None``: a preset,
    whose base must be a preset). ``name`` is never inherited.
    """
    raw = dict(raw)
    base = raw.pop("base", None)
    check_keys(raw, source)  # so that a parent's bad key names the parent
    merged = _load_base(base, source, folder, chain or (source,)) if base is not None else {}
    merged.pop("name", None)
    for key, value in raw.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = {**merged[key], **value}
        else:
            merged[key] = value
    return merged


def preset_base(name: str) -> str | None:
    """The parent preset named by preset ``name`` (``None`` for a root preset)."""
    base = _read_yaml(_preset_text(name), f"preset {name}").get("base")
    return base if isinstance(base, str) else None


def load_preset(name: str) -> Config:
    """The :class:`Config` of preset ``name``, resolved over its parents."""
    source = f"preset {name}"
    raw = resolve_base(_read_yaml(_preset_text(name), source), source)
    raw["name"] = name
    return config_from_dict(raw, source=source)


def preset_summary(name: str) -> str:
    """The first sentence of preset ``name``'s header comment: what it trains and, for a
    paper's benchmark, the published top-1 it is measured against."""
    comment = " ".join(line.lstrip("#").strip() for line in _preset_text(name).splitlines()
                       if line.startswith("#"))
    return re.split(r"(?<=\.)\s", comment, maxsplit=1)[0]


def preset_yaml(name: str) -> str:
    """Preset ``name`` as fully resolved YAML (every field), headed by its file's comment."""
    comment = [line for line in _preset_text(name).splitlines() if line.startswith("#")]
    chain, parent = [name], preset_base(name)
    while parent is not None and parent not in chain:
        chain.append(parent)
        parent = preset_base(parent)
    resolved = " <- ".join([*chain, "balcon's defaults"])
    header = "\n".join([*comment, f"# Resolved: {resolved}; every field below."])
    return f"{header}\n{config_to_yaml(load_preset(name))}"


def load_config_file(path: str | Path) -> Config:
    """A :class:`Config` from a user's YAML file (which may name a ``base:``); its name
    is its ``name:``, else the file's stem."""
    path = Path(path)
    try:
        text = path.read_text()
    except FileNotFoundError:
        raise BalconError(f"config file {path} does not exist; check the path") from None
    except (OSError, UnicodeDecodeError) as err:
        reason = getattr(err, "strerror", None) or type(err).__name__
        raise BalconError(f"config file {path} is not readable ({reason}); fix it") from None
    raw = resolve_base(_read_yaml(text, f"config file {path}"), str(path), path.parent,
                       (str(path.resolve()),))
    raw.setdefault("name", path.stem)
    return config_from_dict(raw, source=str(path))
