"""``balcon report``'s steps: read the runs, check where the page goes, make (or read)
each run's report pass, render the page (:mod:`balcon.report.page`) and write it."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

from balcon.errors import BalconError
from balcon.report.page import Analysed, analyse, comparison_page, run_page
from balcon.report.report_pass import report_pass
from balcon.report.runs import Run, expand_runs, group_runs, read_run
from balcon.runs.checkpoint import write_text_atomic
from balcon.runs.files import check_output

__all__ = ["analyse_runs", "build_report"]


def _output(paths: Sequence[str | Path], runs: Sequence[Run], out: str | Path | None
            ) -> Path:
    """Where the page goes: ``--out`` (a folder gets ``report.html`` inside; a missing
    folder is made when the page is written), else ``report.html`` in the single run or
    the single ``--seeds`` folder named, or in the current folder for a comparison;
    checked before any pass is made."""
    if out is not None:
        return check_output(out, "--out", (".html", ".htm"), name="report.html")
    if len(paths) == 1:  # a run, or a --seeds folder (the page beside seeds.json)
        return Path(paths[0]) / "report.html"
    return runs[0].path / "report.html" if len(runs) == 1 else Path("report.html")


def _read_runs(paths: Sequence[str | Path], checkpoint: str,
               say: Callable[[str], None]) -> list[Run]:
    """The runs of ``paths``; a seed (of a --seeds folder) without the checkpoint yet is
    left out with a line, any other run without it is an error."""
    runs = []
    for path, from_seeds in expand_runs(paths):
        try:
            runs.append(read_run(path, checkpoint))
        except BalconError as err:
            if not from_seeds:
                raise
            say(f"left out {path}: {err}")
    if not runs:
        raise BalconError(f"no run in {' '.join(map(str, paths))} has a {checkpoint}.pt yet; "
                          "train them first")
    return runs


def analyse_runs(runs: Sequence[Run], data_dir: str | Path | None = None,
                 device: str | None = None, say: Callable[[str], None] = print
                 ) -> list[Analysed]:
    """Each run's pass (cached, or made now: one line each to ``say``) and its numbers;
    the runs must share their classes."""
    analysed: list[Analysed] = []
    for run in runs:
        rp = report_pass(run.checkpoint, data_dir=data_dir, device=device)
        say(f"{run.name}: {run.checkpoint.name} on {rp.meta['split']}, "
            + ("from the cache" if rp.meta.get("cached") else
               f"pass done ({len(rp.labels)} images in {rp.meta['seconds']:.0f} s on "
               f"{rp.meta['device']}"
               + (", cached)" if rp.meta.get("cached_to") else ", not cached: read-only)")))
        if run.data_dir is None:  # a run from before run.json: its checkpoint's folder
            run.data_dir = rp.meta["data_dir"]
        if analysed and rp.meta["class_names"] != analysed[0].names:
            raise BalconError(f"{run.path} has other classes than {analysed[0].run.path}; "
                              "compare runs on the same classes")
        analysed.append(analyse(run, rp))
    return analysed


def build_report(paths: Sequence[str | Path], out: str | Path | None = None,
                 checkpoint: str = "best", device: str | None = None,
                 data_dir: str | Path | None = None,
                 say: Callable[[str], None] = print) -> Path:
    """Write the report of the runs in ``paths``; returns the page's path.

    ``data_dir`` replaces each run's own data folder (one that moved). ``say`` gets one
    line per run (its pass, computed or from the cache).
    """
    runs = _read_runs(paths, checkpoint, say)
    target = _output(paths, runs, out)
    analysed = analyse_runs(runs, data_dir, device, say)
    text = run_page(analysed[0]) if len(analysed) == 1 else \
        comparison_page(group_runs(runs), analysed)
    try:
        _write(target, text)
    except BalconError:
        if out is not None:
            raise
        target = Path(f"{target.parent.resolve().name}-report.html")  # a folder we may not write
        _write(target, text)
    return target


def _write(target: Path, text: str) -> None:
    write_text_atomic(target, text, fix="choose another --out", make_folders=True)
