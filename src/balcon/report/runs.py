"""Run directories as the report reads them, and runs grouped over seeds.

A run directory holds ``config.yaml`` and, once it has trained, ``last.pt``,
``best.pt``, ``metrics.jsonl`` and ``summary.json``. A multi-seed folder (``seeds.json``,
from ``balcon train --seeds``) stands for its ``seed<N>`` runs. Runs whose configs
differ only in ``train.seed`` (and bookkeeping such as ``train.tensorboard``) on the
same data folder form a group, reported as mean +- sample standard deviation.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from balcon.config import run_config
from balcon.data.longtail import SHOT_GROUPS
from balcon.engine.metrics import fmt
from balcon.errors import BalconError
from balcon.report.tables import text_table
from balcon.runs.files import BEST, CONFIG, LAST, RUN_INFO, SEEDS, SUMMARY, data_folder, read_json
from balcon.runs.records import read_records
from balcon.runs.seeds import read_seeds, seed_dir

__all__ = [
    "RESULT_COLUMNS",
    "Group",
    "Run",
    "expand_runs",
    "format_seed_table",
    "group_runs",
    "mean_std",
    "read_run",
]

#: Result keys of the tables, with their titles.
RESULT_COLUMNS = (("top1", "top-1"), ("top5", "top-5"), *((g, g) for g in SHOT_GROUPS))


@dataclass
class Run:
    """One run directory: its config, metrics lines, summary and chosen checkpoint."""

    path: Path
    config: dict[str, Any]
    records: list[dict[str, Any]]
    summary: dict[str, Any]
    data_dir: str | None
    checkpoint: Path
    #: the precision it trained with (run.json, else summary.json, else its config's)
    precision: str = ""

    @property
    def name(self) -> str:
        """The run's folder name, with its parent's for a seed of a multi-seed folder."""
        parent = self.path.parent
        return f"{parent.name}/{self.path.name}" if (parent / SEEDS).is_file() \
            else self.path.name

    @property
    def seed(self) -> int:
        """``train.seed`` of the run."""
        return int(self.config.get("train", {}).get("seed", 0))


@dataclass
class Group:
    """Runs that differ only in their seed; ``label`` names what sets it apart."""

    label: str
    runs: list[Run] = field(default_factory=list)


def expand_runs(paths: Sequence[str | Path]) -> list[tuple[Path, bool]]:
    """The run directories of ``paths``, each once, with whether it is a seed of a
    multi-seed folder (which stands for its seed runs that have begun)."""
    out: list[tuple[Path, bool]] = []
    for p in map(Path, paths):
        info = read_seeds(p) if p.is_dir() else None
        if info is None:
            out.append((p, False))
            continue
        runs = [seed_dir(p, int(s)) for s in info["seeds"]]
        begun = [r for r in runs if (r / CONFIG).is_file()]
        if not begun:
            raise BalconError(f"{p} is a multi-seed folder whose runs have not started; "
                              f"train them with balcon train --resume {p}")
        out += [(r, True) for r in begun]
    seen: set[Path] = set()
    unique = []
    for path, from_seeds in out:  # a run named twice (or inside a named seeds folder) once
        if path.resolve() not in seen:
            seen.add(path.resolve())
            unique.append((path, from_seeds))
    return unique


def read_run(path: str | Path, checkpoint: str = "best") -> Run:
    """The run in ``path``, with ``best.pt`` or ``last.pt`` as ``checkpoint`` says."""
    path = Path(path)
    if not (path / CONFIG).is_file():
        raise BalconError(f"{path} is not a balcon run directory (no config.yaml); give "
                          "the --out folder of balcon train")
    try:
        config = yaml.safe_load((path / CONFIG).read_text())
    except (OSError, yaml.YAMLError):
        config = None
    if not isinstance(config, dict):
        raise BalconError(f"{path / 'config.yaml'} is unreadable; restore it from the run's "
                          "checkpoint or a backup")
    try:  # fields added since the run take the values it trained with: runs of older
        config = run_config(config, str(path / CONFIG)).to_dict()  # balcons group
    except BalconError:  # e.g. a method registered in another session: as written
        pass
    ckpt = path / f"{checkpoint}.pt"
    if not ckpt.is_file():
        have = [p.name for p in (path / BEST, path / LAST) if p.is_file()]
        fix = (f"use --checkpoint {have[0].removesuffix('.pt')}" if have else
               f"train it first (balcon train --resume {path})")
        raise BalconError(f"{path} has no {ckpt.name}; {fix}")
    records = read_records(path)
    summary = read_json(path / SUMMARY)
    info = read_json(path / RUN_INFO)
    kept = info if "precision" in info else summary  # run.json, else summary.json
    precision = (f"{kept['precision']} ({kept.get('precision_reason')})" if "precision" in kept
                 else str(config.get("train", {}).get("precision")))
    return Run(path, config, records, summary, data_folder(info.get("data_dir")), ckpt,
               precision)


#: Fields that do not change what a run learns (besides the seed itself): runs that
#: differ only in these are seeds of one group. (Worker counts give bit-identical runs;
#: tests/test_engine.py checks it.)
BOOKKEEPING = ("train.seed", "train.tensorboard", "train.checkpoint_minutes",
               "data.num_workers")


def _without_seed(config: dict[str, Any]) -> dict[str, Any]:
    """The config without the seed and the bookkeeping fields."""
    out = json.loads(json.dumps(config))
    for dotted in BOOKKEEPING:
        section, key = dotted.split(".")
        out.get(section, {}).pop(key, None)
    return out


def _flat(config: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in config.items():
        if isinstance(value, dict):
            out.update(_flat(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


def group_runs(runs: Sequence[Run]) -> list[Group]:
    """Runs grouped by config but ``train.seed`` and the :data:`BOOKKEEPING` fields (and
    by data folder), in first-seen order.

    A group's label lists the fields whose values differ between groups (e.g.
    ``loss.method=ce``; ``data=...`` for the data folder), or the config's name.
    """
    keyed: dict[str, list[Run]] = {}
    for run in runs:
        key = json.dumps([_without_seed(run.config), data_folder(run.data_dir)],
                         sort_keys=True)
        keyed.setdefault(key, []).append(run)
    flats = [{**_flat(_without_seed(members[0].config)), "data": data_folder(members[0].data_dir)}
             for members in keyed.values()]
    keys = sorted(set().union(*flats))
    differing = [k for k in keys if len({json.dumps(f.get(k)) for f in flats}) > 1]
    differing = [k for k in differing if k != "name"] or [k for k in differing if k == "name"]
    groups = []
    for flat, members in zip(flats, keyed.values(), strict=True):
        label = ", ".join(f"{k}={flat.get(k)}" for k in differing) or str(flat.get("name"))
        groups.append(Group(label, list(members)))
    return groups


def mean_std(values: Sequence[float | None]) -> tuple[float | None, float | None, int]:
    """Mean, sample standard deviation (None for one value) and count of the values
    that are not None."""
    xs = [v for v in values if v is not None]
    if not xs:
        return None, None, 0
    mean = sum(xs) / len(xs)
    std = math.sqrt(sum((x - mean) ** 2 for x in xs) / (len(xs) - 1)) if len(xs) > 1 else None
    return mean, std, len(xs)


def format_mean_std(values: Sequence[float | None], pm: str = "+-") -> str:
    """``mean +- std`` (2 decimals; ``pm`` between), the value alone for one run, ``-``
    for none."""
    mean, std, _ = mean_std(values)
    if mean is None:
        return "-"
    return f"{mean:.2f}" if std is None else f"{mean:.2f} {pm} {std:.2f}"


def format_seed_table(summaries: Sequence[tuple[str, dict[str, Any]]]) -> str:
    """A plain-text table, one row per seed run and a mean +- std row, for last and best."""
    titles = dict(RESULT_COLUMNS)
    keys = [(which, key) for which in ("last", "best") for key in ("top1", "many", "medium",
                                                                      "few")]
    header = ["run", *(f"{which} {titles[key]}" for which, key in keys)]
    rows = [[name, *(fmt(summary.get(w, {}).get(k)) for w, k in keys)]
            for name, summary in summaries]
    rows.append([f"mean +- std ({len(summaries)})",
                 *(format_mean_std([s.get(w, {}).get(k) for _, s in summaries])
                   for w, k in keys)])
    return text_table(header, rows)
