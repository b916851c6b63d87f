"""The group table of `balcon report` as markdown, for BENCHMARKS.md.

    python benchmarks/report_table.py RUN_DIR [RUN_DIR ...]

Uses the cached report passes (made by `balcon report`, or here when absent): per group
of seeds, last and best top-1 / many / medium / few (mean +- std over the finished
runs), expected calibration error, distance of the class means from the simplex, and
the share of errors that predict a class with more training images.
"""

from __future__ import annotations

import sys

from balcon.report.page import GROUP_HEADER, analyse_runs, group_rows
from balcon.report.runs import expand_runs, group_runs, read_run


def main(paths: list[str]) -> None:
    runs = [read_run(p) for p, _ in expand_runs(paths)]
    analysed = analyse_runs(runs, say=lambda line: print(line, file=sys.stderr))
    print("| " + " | ".join(GROUP_HEADER) + " |")
    print("|" + "|".join(["---"] + ["---:"] * (len(GROUP_HEADER) - 1)) + "|")
    for row in group_rows(group_runs(runs), analysed):
        print("| " + " | ".join(str(c) for c in row) + " |")


if __name__ == "__main__":
    main(sys.argv[1:])
