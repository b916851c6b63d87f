"""The ``balcon`` command: presets, train, eval, predict, demo, report, export.

Problems the user can fix (missing data, unknown preset, bad override, unreadable
checkpoint) print one line naming the problem and the fix, and exit with status 2.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import stat
import sys
import textwrap
import threading
from pathlib import Path
from typing import Any, NoReturn

from balcon import __version__
from balcon.cli_train import cmd_demo, cmd_train, is_main_process
from balcon.config import (
    EXPORT_FORMATS,
    REPORT_ORDER,
    LossConfig,
    list_presets,
    preset_base,
    preset_summary,
    preset_yaml,
)
from balcon.errors import (
    EX_TEMPFAIL,
    STOP_SIGNALS,
    BalconError,
    Preempted,
    RankError,
    one_line,
)
from balcon.methods import METHODS

__all__ = ["main"]


class _Parser(argparse.ArgumentParser):
    """argparse with the project's one-line errors: the problem, then where help is."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")

    def parse_args(self, args: Any = None, namespace: Any = None) -> argparse.Namespace:
        """As argparse's, but an argument no command takes points at that command's help
        (``balcon demo --set ...``: see ``balcon demo --help``)."""
        parsed, extra = self.parse_known_args(args, namespace)
        if extra:
            command = getattr(parsed, "command", None)
            where = f"{self.prog} {command}" if command else self.prog
            self.exit(2, f"{self.prog}: error: unrecognized arguments: {' '.join(extra)} "
                         f"(see {where} --help)\n")
        return parsed


def _parser() -> argparse.ArgumentParser:
    p = _Parser(
        prog="balcon",
        description="Balanced Contrastive Learning for long-tailed recognition.",
    )
    p.add_argument("--version", action="version", version=f"balcon {__version__}")
    sub = p.add_subparsers(dest="command", required=True)

    pr = sub.add_parser("presets", help="list the presets (their parents, what each trains "
                        "and the paper's top-1), or show one as fully resolved YAML")
    pr.add_argument("action", nargs="?", default="list", metavar="list | show | NAME",
                    help="list (the default); show NAME, or NAME alone, prints that preset")
    pr.add_argument("name", nargs="?", help="preset to show")

    tr = sub.add_parser(
        "train", help="train a model (a preset, a config file, or resume)",
        description="Train a model. On several GPUs or nodes, start the same command "
        "under torchrun: torchrun --nproc_per_node N -m balcon train ... "
        "(train.batch_size is the global batch).",
        epilog="methods (--set loss.method=NAME): " + _methods_help(),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    src = tr.add_mutually_exclusive_group(required=True)
    src.add_argument("--preset", help="a preset name (see `balcon presets`)")
    src.add_argument("--config", help="a YAML config file (base: a preset, then the fields "
                     "that differ)")
    src.add_argument("--resume", metavar="RUN_DIR", help="continue the run in RUN_DIR")
    tr.add_argument("--data-dir", help="folder holding cifar-10-batches-py / cifar-100-python, "
                    "an ImageFolder tree with train/ (and val/, test/), or the images "
                    "that split files list")
    tr.add_argument("--out", help="run directory (default runs/<preset>-<timestamp>)")
    tr.add_argument("--continue", dest="continue_", action="store_true",
                    help="requeue-safe: resume --out when it holds an unfinished run of this "
                    "config, start it when --out is new or empty")
    _common(tr)
    tr.add_argument("--download", action="store_true", help="download CIFAR if it is absent")
    tr.add_argument("--epochs", type=int, help="train this many epochs, scaling the warm-up "
                    "and the lr steps to match (a compressed schedule)")
    tr.add_argument("--set", dest="overrides", action="append", default=[],
                    metavar="SECTION.FIELD=VALUE", help="override a config value (repeatable)")
    tr.add_argument("--seeds", type=int, nargs="+", metavar="SEED",
                    help="train once per seed into OUT/seed<N>, one after another, and end "
                    "with their mean +- std (--resume OUT continues the unfinished ones)")

    ev = sub.add_parser("eval", help="evaluate a checkpoint on its test (or val) split")
    ev.add_argument("--checkpoint", required=True, help="a last.pt or best.pt")
    ev.add_argument("--split", choices=REPORT_ORDER,
                    help="split to evaluate (default: test, else val, else train)")
    ev.add_argument("--data-dir", help="data folder (default: the one it was trained on)")
    ev.add_argument("--out", help="JSON file (or folder) to write (default: "
                    "<checkpoint>-eval.json beside the checkpoint)")
    ev.add_argument("--per-class", action="store_true", help="also print per-class accuracy")
    ev.add_argument("--predictions", metavar="FILE.csv",
                    help="also write one CSV row per image (true, predicted, confidence); "
                    "a folder gets <checkpoint>-eval-predictions.csv")
    _common(ev)

    pd = sub.add_parser("predict", help="classify new images with a checkpoint (CSV)")
    pd.add_argument("--checkpoint", required=True, help="a last.pt or best.pt")
    pd.add_argument("images", nargs="+", help="image files, or folders (searched recursively)")
    pd.add_argument("--out", help="CSV (or folder) to write (default: "
                    "<checkpoint>-predictions.csv beside the checkpoint)")
    pd.add_argument("--top-k", type=int, default=5, help="classes listed per image (default 5)")
    pd.add_argument("--skip-unreadable", action="store_true", help="leave out images that "
                    "cannot be read (each named on stderr) instead of stopping at the first")
    _common(pd)

    de = sub.add_parser("demo", help="train on long-tailed bundled digits (no download)")
    de.add_argument("--method", default=LossConfig.method, choices=list(METHODS),
                    help=f"method (default {LossConfig.method}): " + ", ".join(METHODS))
    de.add_argument("--out", help="run directory (default runs/demo-<method>-<timestamp>)")
    de.add_argument("--epochs", type=int, help="epochs (compressed schedule)")
    _common(de)

    rp = sub.add_parser("report", help="one self-contained HTML page of a run, or a "
                        "comparison of runs (grouped over seeds)")
    rp.add_argument("runs", nargs="+", metavar="RUN_DIR",
                    help="run directories (a --seeds folder stands for its runs)")
    rp.add_argument("--out", metavar="FILE.html", help="page (or folder) to write (default: "
                    "report.html in the run or --seeds folder, else in the current folder)")
    rp.add_argument("--checkpoint", choices=["best", "last"], default="best",
                    help="checkpoint of each run to analyse (default best)")
    rp.add_argument("--data-dir", help="data folder (default: each run's own; for data "
                    "that moved)")
    _common(rp)

    ex = sub.add_parser("export", help="export a checkpoint's inference model (ONNX or "
                        "TorchScript) with its class names and preprocessing")
    ex.add_argument("--checkpoint", required=True, help="a last.pt or best.pt")
    ex.add_argument("--format", dest="fmt", required=True, choices=EXPORT_FORMATS,
                    help="onnx (needs balcon[export]) or torchscript")
    ex.add_argument("--out", help="file (or folder) to write (default: beside the "
                    "checkpoint, named after it: best.pt gives best.onnx / best.torchscript.pt)")
    return p


def _methods_help() -> str:
    """One line per method of the table: name, summary, objective."""
    width = max(map(len, METHODS))
    return "".join(f"\n  {m.name:<{width}}  {m.summary}\n  {'':<{width}}  loss = {m.formula()}"
                   for m in METHODS.values())


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--device", help="cpu, cuda or cuda:N (default: cuda when present)")


def _cmd_presets(args: argparse.Namespace) -> int:
    name = args.name if args.action in ("list", "show") else args.action
    if args.action == "show" or name:
        if not name:
            raise BalconError("balcon presets show NAME: give a preset name")
        print(preset_yaml(name), end="")
        return 0
    names = list_presets()
    width = max(map(len, names))
    for name in names:
        base = preset_base(name)
        print(f"{name:<{width}}  {'base: ' + base if base else '(root)'}")
        print(textwrap.fill(preset_summary(name), width=88, initial_indent="    ",
                            subsequent_indent="    "))
    return 0


def _cmd_report(args: argparse.Namespace) -> int:
    from balcon.report.build import build_report

    path = build_report(args.runs, out=args.out, checkpoint=args.checkpoint,
                        device=args.device, data_dir=args.data_dir)
    print(f"wrote {path}")
    return 0


def _cmd_export(args: argparse.Namespace) -> int:
    from balcon.export import export_checkpoint

    result = export_checkpoint(args.checkpoint, args.fmt, out=args.out)
    meta = result.metadata
    print(f"wrote {result.path} ({result.format}: {len(meta['class_names'])} classes, input "
          f"{'x'.join(map(str, meta['input_size']))}); its logits match PyTorch's on a batch "
          f"of {result.batch} (max difference {result.max_abs_diff:.2e})")
    return 0


def _same_file(a: Path, b: Path) -> bool:
    """Whether ``a`` and ``b`` both exist and are one file (``/dev/stdout`` and
    ``/proc/self/fd/1``)."""
    try:
        return os.path.samestat(os.stat(a), os.stat(b))
    except OSError:
        return False


def _cmd_eval(args: argparse.Namespace) -> int:
    from balcon.report import format_per_class, format_results, write_predictions
    from balcon.runs import evaluate_checkpoint
    from balcon.runs.checkpoint import write_text_atomic
    from balcon.runs.files import check_output

    ckpt = Path(args.checkpoint)
    default = ckpt.with_name(ckpt.stem + "-eval.json")
    out = check_output(args.out or default, "--out", (".json",), [ckpt], default.name)
    csv_out = None if not args.predictions else check_output(
        args.predictions, "--predictions", (".csv",), [ckpt], f"{ckpt.stem}-eval-predictions.csv")
    if csv_out is not None and (csv_out.absolute() == out.absolute() or _same_file(csv_out, out)):
        raise BalconError(f"--predictions {csv_out} is also the --out file; choose another "
                          "--predictions")
    metrics, predictions = evaluate_checkpoint(args.checkpoint, data_dir=args.data_dir,
                                               device=args.device, split=args.split)
    print(format_results({f"epoch {metrics['epoch']}, {metrics['split']}": metrics}))
    if metrics["skipped_images"]:
        print(f"({metrics['skipped_images']} unreadable {metrics['split']} images skipped: "
              "data.on_bad_image=skip)")
    if args.per_class:
        print()
        print(format_per_class(metrics["per_class"], metrics["class_names"],
                               metrics["class_counts"]))
    write_text_atomic(out, json.dumps(metrics, indent=2), fix="choose another --out",
                      make_folders=True)
    print(f"\nwrote {out}")
    if csv_out:
        print(f"wrote {write_predictions(predictions, csv_out)}")
    return 0


def _cmd_predict(args: argparse.Namespace) -> int:
    from collections import Counter

    from balcon.report import write_image_predictions
    from balcon.runs import predict_images
    from balcon.runs.files import check_output

    if args.top_k < 1:
        raise BalconError(f"--top-k must be >= 1, got {args.top_k}")
    ckpt = Path(args.checkpoint)
    default = ckpt.with_name(ckpt.stem + "-predictions.csv")
    out = check_output(args.out or default, "--out", (".csv",), [ckpt], default.name)
    predictions = predict_images(args.checkpoint, args.images, device=args.device,
                                 skip_unreadable=args.skip_unreadable)
    for source, reason in predictions.skipped:
        print(f"skipped {source}: {reason}", file=sys.stderr)
    write_image_predictions(predictions, out, top_k=args.top_k)
    counts = Counter(predictions.logits.argmax(1).tolist())
    names = predictions.class_names
    left_out = f" ({len(predictions.skipped)} unreadable left out)" if predictions.skipped else ""
    print(f"{len(predictions.sources)} images{left_out}; predicted classes: " + ", ".join(
        f"{names[c]} {n}" for c, n in counts.most_common(10))
        + (", ..." if len(counts) > 10 else ""))
    print(f"wrote {out}")
    return 0


def _stop_on_signals_until_training(command: str) -> dict[int, Any]:
    """Until the run's own handlers take over (when ``fit`` starts), SIGTERM, SIGINT and
    SIGUSR1 stop ``train`` or ``demo`` (``command``) at once with status 75 (nothing is
    half-written then). Returns the handlers they replace."""
    again = ("run the same command again (--continue resumes a run directory)"
             if command == "train" else "run balcon demo again")

    def stop(signum: int, frame: object) -> None:
        raise Preempted(f"preempted ({signal.Signals(signum).name}) before training; {again}")

    if threading.current_thread() is not threading.main_thread():
        return {}
    return {sig: signal.signal(sig, stop)
            for sig in STOP_SIGNALS}


COMMANDS = {"presets": _cmd_presets, "train": cmd_train, "eval": _cmd_eval,
            "predict": _cmd_predict, "demo": cmd_demo, "report": _cmd_report,
            "export": _cmd_export}


def _messages_to_stderr(args: argparse.Namespace) -> contextlib.AbstractContextManager:
    """When an output (``--out``, ``--predictions``) is this process's standard output
    (``--out /dev/stdout | jq``, ``> file``), the command's own lines (tables, ``wrote
    ...``) go to stderr, so stdout holds the file alone; not on a terminal or /dev/null
    (a character device), where they would only move or come back."""
    outputs = [p for p in (getattr(args, "out", None), getattr(args, "predictions", None)) if p]
    if not outputs:
        return contextlib.nullcontext()
    from balcon.runs.checkpoint import is_stdout

    try:
        is_terminal_or_null = stat.S_ISCHR(os.fstat(sys.__stdout__.fileno()).st_mode)
    except (OSError, ValueError, AttributeError):  # no real stdout
        return contextlib.nullcontext()
    if is_terminal_or_null or not any(is_stdout(p) for p in outputs):
        return contextlib.nullcontext()
    return contextlib.redirect_stdout(sys.stderr)


def main(argv: list[str] | None = None) -> int:
    """Run the command line; returns the exit status.

    Under torchrun only rank 0 prints the errors every process meets, a process its
    own (:class:`~balcon.errors.RankError`); every process exits with the status.
    """
    args = _parser().parse_args(argv)
    previous = (_stop_on_signals_until_training(args.command)
                if args.command in ("train", "demo") else {})

    try:
        with _messages_to_stderr(args):
            return COMMANDS[args.command](args)
    except Preempted as err:
        if is_main_process():
            print(f"balcon: stopped: {one_line(err)}", file=sys.stderr)
        return EX_TEMPFAIL
    except BalconError as err:
        if is_main_process() or isinstance(err, RankError):
            print(f"balcon: error: {one_line(err)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("\nbalcon: interrupted; a run continues with balcon train --resume RUN_DIR",
              file=sys.stderr)
        return 130
    except BrokenPipeError:  # the reader closed our output (`balcon presets | head`)
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # no error at exit
        return 141  # as a Unix tool killed by SIGPIPE
    finally:
        for sig, handler in previous.items():  # main() may run inside a larger program
            signal.signal(sig, handler)
        if "torch" in sys.modules:
            from balcon.engine.distributed import shutdown

            shutdown()


if __name__ == "__main__":
    sys.exit(main())
