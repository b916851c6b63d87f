"""The commands that train: ``balcon train`` (a preset, a config file, ``--resume``,
``--continue``, ``--seeds``) and ``balcon demo``."""

from __future__ import annotations

import argparse
import os
from datetime import datetime
from pathlib import Path

from balcon.config import (
    Config,
    apply_overrides,
    compress_schedule,
    load_config_file,
    load_preset,
)
from balcon.errors import BalconError

__all__ = ["DEMO_PRESET", "cmd_demo", "cmd_train", "is_main_process", "short_schedule_note"]

#: The preset of ``balcon demo``.
DEMO_PRESET = "digits-lt-demo"


def _run_dir(out: str | None, name: str) -> Path:
    """``--out``, else ``runs/<name>-<timestamp>``: rank 0's choice, so every process of a
    torchrun writes to (and rank 0 creates) the same directory."""
    from balcon.engine.distributed import broadcast_object

    timestamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    return broadcast_object(Path(out) if out else Path("runs") / f"{name}-{timestamp}")


def _config_for(args: argparse.Namespace) -> tuple[Config, str | None]:
    """The run's config, and the note a short BCL schedule gets (see :func:`_start_note`)."""
    cfg = load_preset(args.preset) if args.preset else load_config_file(args.config)
    planned = cfg.train.epochs
    if args.epochs is not None:
        cfg = compress_schedule(cfg, args.epochs)
    cfg = apply_overrides(cfg, args.overrides)
    return cfg, short_schedule_note(planned, cfg)


def _start_note(cfg: Config, args: argparse.Namespace, note: str | None) -> None:
    """Before a new run (or --seeds folder) is made: its checks, then ``note``, so a
    refused command prints its error alone."""
    from balcon.runs import check_new_run

    check_new_run(cfg, args.data_dir, args.download)
    if note and is_main_process():
        print(note, flush=True)


def short_schedule_note(planned_epochs: int, cfg: Config) -> str | None:
    """A note for a BCL run from scratch whose schedule was cut short of its preset's (or
    config file's): BCL's lead over LA is measured at the full schedule only."""
    if cfg.loss.method != "bcl" or cfg.model.pretrained or cfg.train.epochs >= planned_epochs:
        return None
    return (f"note: {cfg.train.epochs} of the planned {planned_epochs} epochs. BCL beat LA at "
            "the full schedule (CIFAR-100-LT, 200 epochs: 51.45 against 50.11), but LA scored "
            "higher at 15 epochs (CIFAR-10-LT: 48.5 against 34.6; BENCHMARKS.md); for a "
            "short run, --set loss.method=la is the stronger choice")


def _print_results(run_dir: Path, summary: dict) -> None:
    from balcon.report import format_results, plot_curves, summary_rows

    if not summary:
        return
    plot = plot_curves(run_dir)
    print()
    print(format_results(summary_rows(summary)))
    print(f"\nrun directory: {run_dir}" + (f" (curves: {plot.name})" if plot else ""))


def cmd_train(args: argparse.Namespace) -> int:
    """``balcon train``: a new run, ``--resume``, ``--continue`` or ``--seeds``."""
    from balcon.engine import init_distributed
    from balcon.engine.distributed import on_main
    from balcon.runs import fit, resume
    from balcon.runs.seeds import read_seeds

    for flag, what in (("preset", "a preset name (balcon presets lists them)"),
                       ("config", "a YAML file"), ("resume", "a run directory")):
        if getattr(args, flag) == "":
            raise BalconError(f"--{flag} is empty; give {what}")
    ctx, _ = init_distributed(args.device)
    if args.resume and (args.overrides or args.epochs is not None or args.out
                        or args.continue_ or args.seeds is not None):
        raise BalconError("--resume continues a run (or a --seeds folder) as configured; "
                          "drop --set, --epochs, --out, --continue and --seeds (or start a "
                          "new run)")
    if args.continue_ and not args.out:
        raise BalconError("--continue needs --out DIR: the run directory (or --seeds folder) "
                          "to continue")
    if args.seeds is not None or (args.resume and on_main(read_seeds, args.resume)):
        return _train_seeds(args)
    if args.resume:
        result = resume(args.resume, data_dir=args.data_dir, device=args.device,
                        download=args.download)
    else:
        cfg, note = _config_for(args)
        out = _run_dir(args.out, cfg.name)
        if args.continue_ and on_main(_holds_run_of, out, cfg):
            result = resume(out, data_dir=args.data_dir, device=args.device,
                            download=args.download)
        else:
            _start_note(cfg, args, note)
            result = fit(cfg, args.data_dir, out, device=args.device, download=args.download)
    if result.already_finished and ctx.is_main:
        print(f"{result.run_dir} already finished its {result.summary.get('epochs_run', '')} "
              "epochs; nothing to resume. Its results:")
    if ctx.is_main:
        _print_results(result.run_dir, result.summary)
    return 0


def _train_seeds(args: argparse.Namespace) -> int:
    """``train --seeds``, or ``--resume`` of a multi-seed folder: the runs one after
    another, then their table (mean +- std)."""
    from balcon.engine.distributed import on_main
    from balcon.report.runs import format_seed_table
    from balcon.runs.seeds import fit_seeds, read_seeds, resume_seeds, seed_dir

    if args.resume:  # its flags were checked by cmd_train
        out = Path(args.resume)
        results = resume_seeds(out, data_dir=args.data_dir, device=args.device,
                               download=args.download)
    else:
        cfg, note = _config_for(args)
        if any(o.strip().startswith("train.seed=") for o in args.overrides):
            raise BalconError("--seeds sets train.seed of each run; drop --set train.seed")
        out = _run_dir(args.out, cfg.name)
        info = on_main(read_seeds, out) if args.continue_ else None
        if info is not None:
            if info["config"] != cfg.to_dict() or info["seeds"] != args.seeds:
                raise BalconError(f"{out} holds seeds of another config or other seeds; give "
                                  f"another --out, or continue them with balcon train "
                                  f"--resume {out}")
            results = resume_seeds(out, data_dir=args.data_dir, device=args.device,
                                   download=args.download)
        else:
            _start_note(cfg, args, note)
            results = fit_seeds(cfg, args.data_dir, out, args.seeds, device=args.device,
                                download=args.download)
    if is_main_process():
        rows = [(seed_dir(out, seed).name, r.summary) for seed, r in results]
        done = [seed_dir(out, seed).name for seed, r in results if r.already_finished]
        if done:
            print(f"already finished (left as they were): {', '.join(done)}")
        print()
        print(format_seed_table(rows))
        print(f"\nruns in {out}; see them with balcon report {out}")
    return 0


def _holds_run_of(out: Path, cfg: Config) -> bool:
    """For --continue: whether ``out`` holds a run of ``cfg`` (False: new or empty);
    a run of another config is refused, naming the first difference."""
    import yaml

    from balcon.runs.files import CONFIG

    if not (out / CONFIG).is_file():
        return False
    try:
        there = yaml.safe_load((out / CONFIG).read_text())
    except (OSError, yaml.YAMLError):
        raise BalconError(f"{out / CONFIG} is unreadable; give --continue another "
                          "--out") from None
    here = cfg.to_dict()
    if there == here:
        return True
    keys = ["name", *(f"{s}.{k}" for s, sec in here.items() if isinstance(sec, dict)
                      for k in sec)]
    first = next((k for k in keys if _get(there, k) != _get(here, k)), "config")
    raise BalconError(
        f"{out} holds a run of another config ({first} is {_get(there, first)!r} there, "
        f"{_get(here, first)!r} here); give another --out, or resume it with balcon train "
        f"--resume {out}"
    )


def _get(raw: object, dotted: str) -> object:
    for part in dotted.split("."):
        raw = raw.get(part) if isinstance(raw, dict) else None
    return raw


def cmd_demo(args: argparse.Namespace) -> int:
    """``balcon demo``: the digits preset with ``--method``, then its results table."""
    from balcon.engine import init_distributed
    from balcon.engine.distributed import on_main
    from balcon.runs import fit
    from balcon.runs.files import check_new_run_dir

    ctx, _ = init_distributed(args.device)
    cfg = load_preset(DEMO_PRESET)
    if args.epochs is not None:
        cfg = compress_schedule(cfg, args.epochs)
    cfg = apply_overrides(cfg, [f"loss.method={args.method}"])
    out = _run_dir(args.out, f"demo-{args.method}")
    on_main(lambda: check_new_run_dir(out, has_continue=False))  # fit checks again, locked
    if ctx.is_main:
        print(f"balcon demo: {args.method} on long-tailed handwritten digits (scikit-learn), "
              f"{cfg.train.epochs} epochs")
    result = fit(cfg, None, out, device=args.device)
    if ctx.is_main:
        _print_results(result.run_dir, result.summary)
    return 0


def is_main_process() -> bool:
    """Rank 0 of a torchrun, or a single process (from the environment: no torch needed)."""
    return os.environ.get("RANK", "0") == "0"

