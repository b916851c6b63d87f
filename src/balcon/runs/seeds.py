"""Several seeds of one config: ``balcon train ... --seeds 0 1 2 --out DIR``.

The runs go to ``DIR/seed0``, ``DIR/seed1``, ... one after another, each an ordinary
run directory whose config differs only in ``train.seed``. ``DIR/seeds.json`` (written
first) holds the seeds, the config and the data folder, so ``--resume DIR`` continues
the unfinished runs and starts the ones not begun, and ``balcon report DIR`` finds
them all.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from balcon.config import Config, apply_overrides, run_config
from balcon.config.checks import check_seed
from balcon.data import data_dir_for
from balcon.engine.distributed import init_distributed, on_main
from balcon.errors import BalconError
from balcon.runs.checkpoint import write_text_atomic
from balcon.runs.files import CONFIG, SEEDS, data_folder
from balcon.runs.train import RunResult, check_new_run, fit, resume

__all__ = ["fit_seeds", "read_seeds", "resume_seeds", "seed_dir"]


def seed_dir(out: Path, seed: int) -> Path:
    """The run directory of ``seed`` inside the multi-seed folder ``out``."""
    return Path(out) / f"seed{seed}"


def read_seeds(out: str | Path) -> dict[str, Any] | None:
    """``out``'s ``seeds.json`` (seeds, config, data folder), or None when ``out`` is
    not a multi-seed folder."""
    path = Path(out) / SEEDS
    if not path.is_file():
        return None
    try:
        info = json.loads(path.read_text())
    except (OSError, ValueError):
        raise BalconError(f"{path} is unreadable; restore it or start the seeds again in "
                          "another --out") from None
    seeds = info.get("seeds") if isinstance(info, dict) else None
    if not (isinstance(seeds, list) and isinstance(info.get("config"), dict)
            and all(type(s) is int for s in seeds)):
        raise BalconError(f"{path} is not a balcon seeds file; start the seeds again in "
                          "another --out")
    return info


def _check_seeds(seeds: list[int]) -> None:
    if not seeds:
        raise BalconError("--seeds needs at least one seed, e.g. --seeds 0 1 2")
    for seed in seeds:
        check_seed(seed, "each of --seeds")
    if len(set(seeds)) != len(seeds):
        raise BalconError(f"--seeds lists a seed twice ({' '.join(map(str, seeds))}); give "
                          "each seed once")


def _open_seeds_folder(cfg: Config, data_dir: str | Path | None, out: Path,
                       seeds: list[int]) -> None:
    """Rank 0: refuse an ``out`` holding anything, then write its ``seeds.json``."""
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise BalconError(f"--out {out} is not empty; choose another --out, or continue "
                          f"the seeds with balcon train --resume {out}")
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise BalconError(f"cannot create {out} ({err.strerror}); choose another --out") \
            from None
    info = {"seeds": seeds, "config": cfg.to_dict(),
            "data_dir": data_folder(data_dir)}
    write_text_atomic(out / SEEDS, json.dumps(info, indent=2))


def _run_seeds(cfg: Config, data_dir: str | Path | None, out: Path, seeds: list[int],
               device: str | None, download: bool) -> list[tuple[int, RunResult]]:
    """Each seed in turn, with its result: resumed when its directory holds a run, else
    started."""
    results = []
    for seed in seeds:
        run = seed_dir(out, seed)
        begun = on_main(lambda r=run: (r / CONFIG).is_file())
        if begun:
            result = resume(run, data_dir=data_dir, device=device, download=download)
        else:
            result = fit(apply_overrides(cfg, [f"train.seed={seed}"]), data_dir, run,
                         device=device, download=download)
        results.append((seed, result))
    return results


def fit_seeds(cfg: Config, data_dir: str | Path | None, out: str | Path, seeds: list[int],
              device: str | None = None, download: bool = False
              ) -> list[tuple[int, RunResult]]:
    """Train ``cfg`` once per seed into ``out/seed<N>``, one after another; returns each
    seed with its result."""
    out = Path(out)
    _check_seeds(seeds)
    data_dir = check_new_run(cfg, data_dir, download)  # before anything is written
    init_distributed(device)
    on_main(_open_seeds_folder, cfg, data_dir, out, seeds)
    return _run_seeds(cfg, data_dir, out, seeds, device, download)


def resume_seeds(out: str | Path, data_dir: str | Path | None = None,
                 device: str | None = None, download: bool = False
                 ) -> list[tuple[int, RunResult]]:
    """Continue the multi-seed folder ``out``: finished runs are kept, unfinished ones
    resumed, the ones not begun started; returns each seed with its result."""
    out = Path(out)
    init_distributed(device)
    info = on_main(read_seeds, out)
    if info is None:
        raise BalconError(f"{out} is not a multi-seed folder (no {SEEDS})")
    cfg = run_config(info["config"], source=str(out / SEEDS))
    data_dir = data_dir_for(cfg.data, data_dir, info.get("data_dir"))
    return _run_seeds(cfg, data_dir, out, [int(s) for s in info["seeds"]], device, download)
