"""The group table of `balcon report` as markdown, for BENCHMARKS.md.

    python benchmarks/report_table.py RUN_DIR [RUN_DIR ...]

Uses the cached report passes (made by `balcon report`, or here when absent): the
page's two group tables (accuracy over the finished runs; calibration, simplex distance,
errors towards the head, weight norm against log count), each cell mean +- std.
"""

from __future__ import annotations

import sys

from balcon.report.build import analyse_runs
from balcon.report.page import group_tables
from balcon.report.runs import expand_runs, group_runs, read_run


def main(paths: list[str]) -> None:
    runs = [read_run(p) for p, _ in expand_runs(paths)]
    analysed = analyse_runs(runs, say=lambda line: print(line, file=sys.stderr))
    for header, rows in group_tables(group_runs(runs), analysed):
        print("| " + " | ".join(header) + " |")
        print("|" + "|".join(["---"] + ["---:"] * (len(header) - 1)) + "|")
        for row in rows:
            print("| " + " | ".join(str(c) for c in row) + " |")
        print()


if __name__ == "__main__":
    main(sys.argv[1:])
