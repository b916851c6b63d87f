"""``balcon report``: one self-contained HTML page for a run, or a comparison of runs.

For one run: results (last and best, from ``summary.json``, beside this page's own
pass), the config that matters, training curves, per-class accuracy against training
count, confusions, classifier weight norms, the class-mean feature geometry and
calibration. The last five come from one pass of the chosen checkpoint over the
report split (:func:`~balcon.report.report_pass.report_pass`, cached beside it).
For several runs: runs differing only in ``train.seed`` are grouped (mean +- std),
then a table per group and per run, overlaid curves, per-class accuracy per group,
and each run's own sections, collapsed.
"""

from __future__ import annotations

import html
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import numpy as np

from balcon import __version__
from balcon.data.longtail import SHOT_GROUPS, shot_group_of
from balcon.engine.metrics import HEADLINE_KEYS
from balcon.methods import METHODS
from balcon.report import analysis as an
from balcon.report import figures as fg
from balcon.report.html import details, figure, page, section, table, value
from balcon.report.report_pass import ReportPass
from balcon.report.runs import (
    RESULT_COLUMNS,
    Group,
    Run,
    format_mean_std,
    mean_std,
)
from balcon.report.tables import summary_rows

__all__ = ["Analysed", "analyse", "comparison_page", "group_tables", "run_page"]

#: Largest class count drawn as a matrix (confusions, cosines); above it, tables only.
MATRIX_MAX_CLASSES = 30
#: Confusion pairs listed.
TOP_CONFUSIONS = 20


@dataclass
class Analysed:
    """A run with its report pass and the numbers drawn from it."""

    run: Run
    rp: ReportPass
    #: the (C, C) confusion matrix, for at most MATRIX_MAX_CLASSES classes (else None)
    matrix: np.ndarray | None
    geometry: dict[str, Any]
    calibrations: dict[str, an.Calibration]
    toward_head: float | None
    #: the geometry of the contrastive embeddings (methods with a projection head), else None
    embedding_geometry: dict[str, Any] | None = None

    @property
    def names(self) -> list[str]:
        """Class names, in class-index order."""
        return self.rp.meta["class_names"]

    @property
    def counts(self) -> list[int]:
        """Training images per class."""
        return self.rp.meta["class_counts"]

    @property
    def metrics(self) -> dict[str, Any]:
        """The pass's accuracies (top-1, top-5, shot groups, per class)."""
        return self.rp.meta["metrics"]


def analyse(run: Run, rp: ReportPass) -> Analysed:
    """The report's numbers of ``run`` from its pass ``rp``."""
    counts = rp.meta["class_counts"]
    c = len(counts)
    matrix = an.confusion_matrix(rp.labels, rp.predictions, c) if c <= MATRIX_MAX_CLASSES \
        else None
    return Analysed(
        run, rp, matrix,
        an.geometry(rp.feature_sums, rp.feature_counts, counts, MATRIX_MAX_CLASSES),
        an.calibration_by_group(rp.confidence, rp.predictions == rp.labels, rp.labels, counts),
        an.toward_head_share(rp.labels, rp.predictions, counts),
        an.geometry(rp.embedding_sums, rp.feature_counts, counts, MATRIX_MAX_CLASSES)
        if rp.embedding_sums.shape[1] else None)


def _result_rows(a: Analysed) -> tuple[list[list[Any]], list[str]]:
    """Rows of the results table: the run's summary and this page's pass (emphasised)."""
    rows = [[label, *(r.get(k) for k, _ in RESULT_COLUMNS)]
            for label, r in summary_rows(a.run.summary).items()]
    m, meta = a.metrics, a.rp.meta
    rows.append([f"{a.run.checkpoint.name} (epoch {meta['epoch']}, {meta['split']}): "
                 "this page's pass", *(m.get(k) for k, _ in RESULT_COLUMNS)])
    return rows, [""] * (len(rows) - 1) + ["mean"]


def _config_list(a: Analysed) -> str:
    """The config that matters, as a definition list."""
    c = a.run.config
    data, model, train, optim = (c.get(k, {}) for k in ("data", "model", "train", "optim"))
    method = c.get("loss", {}).get("method")
    epochs_run = a.run.summary.get("epochs_run") or (a.run.records[-1]["epoch"]
                                                      if a.run.records else 0)
    counts = a.counts
    items = [
        ("config", c.get("name")),
        ("method", f"{method}: {METHODS[method].summary}" if method in METHODS else method),
        ("epochs", f"{epochs_run} of {train.get('epochs')}" +
         ("" if a.run.summary.get("finished") else " (unfinished)")),
        ("data", f"{data.get('dataset')} from {a.rp.meta['data_dir'] or 'bundled data'}"),
        ("classes", f"{len(counts)}; {sum(counts)} training images, "
                    f"{max(counts)} to {min(counts)} per class "
                    f"(imbalance {max(counts) / max(min(counts), 1):.0f})"),
        ("shot groups", ", ".join(f"{g} {sum(shot_group_of(n) == g for n in counts)}"
                                  for g in SHOT_GROUPS)),
        ("model", f"{model.get('encoder')}, {model.get('classifier')} classifier"),
        ("optimiser", f"lr {optim.get('lr')}, batch {train.get('batch_size')}, "
                      f"seed {train.get('seed')}"),
        ("precision", a.run.precision),
        ("report split", f"{a.rp.meta['split']}, {len(a.rp.labels)} images"),
        ("run directory", str(a.run.path)),
    ]
    return "<dl>" + "".join(f"<dt>{html.escape(k)}</dt><dd>{value(v)}</dd>"
                            for k, v in items) + "</dl>"


def _per_class(a: Analysed) -> str:
    acc = a.metrics["per_class"]
    order = sorted(range(len(a.names)), key=lambda c: -a.counts[c])
    images = np.bincount(a.rp.labels, minlength=len(a.names))
    confused = an.most_confused_with(a.rp.labels, a.rp.predictions, len(a.names))
    rows = [[a.names[c], shot_group_of(a.counts[c]), a.counts[c], int(images[c]), acc[c],
             "-" if confused[c] is None else a.names[confused[c]]] for c in order]
    fig = fg.per_class_figure([("accuracy", a.counts, acc)], a.names)
    return (figure(fig, "per-class accuracy against training count")
            + details(f"per-class table ({len(order)} classes)",
                      table(["class", "group", "train", "report images", "accuracy",
                             "most confused with"],
                            [[r[0], r[1], f"{r[2]}", f"{r[3]}", r[4], r[5]] for r in rows])))


def _confusions(a: Analysed) -> str:
    parts = []
    if a.matrix is not None:
        order = sorted(range(len(a.names)), key=lambda i: -a.counts[i])
        parts.append(figure(fg.confusion_figure(a.matrix, a.names, order), "confusion matrix"))
    pairs = an.top_confusions(a.rp.labels, a.rp.predictions, a.counts, TOP_CONFUSIONS)
    rows = [[a.names[p["true"]], a.names[p["predicted"]], f"{p['count']}", 100 * p["share"],
             f"{a.counts[p['true']]} -> {a.counts[p['predicted']]}", p["direction"]]
            for p in pairs]
    share = a.toward_head
    parts.append(f"<p>Of all errors, <b>{value(None if share is None else 100 * share)}%</b> "
                 "predict a class with more training images than the true class "
                 "(tail -> head).</p>")
    parts.append(f"<h3>The {len(pairs)} most frequent confusions</h3>" + table(
        ["true", "predicted", "images", "% of true class", "training counts", "direction"],
        rows))
    return "".join(parts)


def _weight_norms(a: Analysed) -> str:
    norms = a.rp.weight_norms
    r = an.log_count_correlation(norms, a.counts)
    note = ("The logits of a cosine classifier ignore the norm; it shows how training moved "
            "each class's weights." if a.rp.meta.get("classifier") == "cosine" else
            "A linear classifier's logits scale with the norm: a norm that grows with the "
            "class count favours the head.")
    return (figure(fg.weight_norm_figure(a.counts, norms, a.rp.meta.get("classifier", ""),
                                         a.names),
                   "classifier weight norm per class")
            + f"<p>Correlation of the norm with log training count: <b>{value(r)}</b>. "
              f"{note}</p>")


def _geometry(a: Analysed) -> str:
    spaces = [("encoder features", a.geometry)]
    if a.embedding_geometry is not None:
        spaces.append(("contrastive embeddings", a.embedding_geometry))
    rows = [["all classes", *(g["distance"] for _, g in spaces)],
            *([f"within {k}", *(g["groups"][k] for _, g in spaces)] for k in SHOT_GROUPS)]
    text = ("<p>Class means on the report split, centred by the mean of the class means: of "
            "the encoder features (what the classifier sees) and, for a method with a "
            "contrastive term, of its embeddings (the projection head's unit vectors, where "
            "BCL's loss acts). Distance from the regular simplex: mean |cos<sub>ij</sub> + "
            "1/(C-1)| over pairs of classes (0: every pair at the simplex angle, the balanced "
            "geometry; undefined below 3 classes).</p>")
    parts = [text, table(["classes", *(f"distance: {name}" for name, _ in spaces)], rows)]
    for name, g in spaces:
        if g["cosines"] is not None:
            names = [a.names[c] for c in g["classes"]]
            order = sorted(range(len(names)), key=lambda i: -a.counts[g["classes"][i]])
            parts.append(figure(fg.cosine_figure(g["cosines"], names, order, name),
                                f"class-mean cosines of the {name}"))
    return "".join(parts)


def _calibration(a: Analysed) -> str:
    rows = [[k, a.calibrations[k].ece, int(a.calibrations[k].bin_count.sum())]
            for k in ("all", *SHOT_GROUPS)]
    return (f"<p>Expected calibration error over {an.ECE_BINS} equal-width confidence bins "
            "(percent; 0 is perfectly calibrated), by the true class's shot group.</p>"
            + table(["images", "ECE (%)", "count"], [[r[0], r[1], f"{r[2]}"] for r in rows])
            + figure(fg.calibration_figure(a.calibrations), "reliability diagram"))


#: The sections of one run: anchor, title, builder.
RUN_SECTIONS: tuple[tuple[str, str, Callable[[Analysed], str]], ...] = (
    ("config", "Run", _config_list),
    ("curves", "Training curves",
     lambda a: figure(fg.curves_figure(a.run.records), "training curves")
     if a.run.records else "<p class=\"note\">No evaluation recorded yet.</p>"),
    ("per-class", "Per-class accuracy against training count", _per_class),
    ("confusions", "Confusions", _confusions),
    ("weight-norms", "Classifier weight norms", _weight_norms),
    ("geometry", "Feature geometry", _geometry),
    ("calibration", "Calibration", _calibration),
)


def _results(a: Analysed) -> str:
    rows, classes = _result_rows(a)
    return table(["", *(t for _, t in RESULT_COLUMNS)], rows, classes)


def run_sections(a: Analysed, prefix: str = "") -> list[tuple[str, str, str]]:
    """(anchor, title, HTML) of each section of one run."""
    out = [(f"{prefix}results", "Results", _results(a))]
    out += [(f"{prefix}{anchor}", title, build(a)) for anchor, title, build in RUN_SECTIONS]
    return out


def _subtitle(extra: str) -> str:
    return f"balcon {__version__}, {datetime.now():%Y-%m-%d %H:%M}; {extra}"


def run_page(a: Analysed) -> str:
    """The page of one run."""
    parts = run_sections(a)
    meta = a.rp.meta
    return page(f"balcon report: {a.run.name}",
                _subtitle(f"{a.run.checkpoint.name} (epoch {meta['epoch']}) on {meta['split']}"),
                [(k, t) for k, t, _ in parts], "".join(section(*p) for p in parts))


#: The group tables: accuracy (from the finished runs' summaries) and the long-tail
#: diagnostics (from the passes), with their columns.
ACCURACY_HEADER = ["group", "runs", "last top-1", "last many", "last medium", "last few",
                   "best top-1", "best few"]
DIAGNOSTICS_HEADER = ["group", "ECE (%)", "tail ECE (%)", "simplex dist. (features)",
                      "(embeddings)", "errors to head (%)", "norm ~ log count"]


def group_tables(groups: Sequence[Group], analysed: Sequence[Analysed]
                 ) -> list[tuple[list[str], list[list[Any]]]]:
    """Two tables, one row per group, each cell ``mean ± std``: accuracy over its finished
    runs (whose summaries are on the report split; an unfinished run's are on the
    selection split, mid-schedule) and the diagnostics of the pass over all its runs:
    ECE overall and of the few-shot classes (else medium), simplex distance, the share
    of errors towards the head, and the correlation of weight norm with log count."""
    by_run = {a.run.path: a for a in analysed}
    accuracy, diagnostics = [], []
    for g in groups:
        runs = [by_run[r.path] for r in g.runs]
        done = [a for a in runs if a.run.summary.get("finished")]

        def over(get: Callable[[Analysed], Any], of: list[Analysed]) -> str:
            return format_mean_std([get(a) for a in of], pm="±")
        unfinished = f" (+{len(runs) - len(done)} unfinished)" if len(done) < len(runs) else ""
        accuracy.append([g.label, f"{len(done)}{unfinished}",
                         *(over(lambda a, w=w, k=k: a.run.summary[w].get(k), done)
                           for w, k in (*(("last", key) for key in HEADLINE_KEYS),
                                        ("best", "top1"), ("best", "few")))])
        diagnostics.append([
            g.label, over(lambda a: a.calibrations["all"].ece, runs),
            over(lambda a: _tail_calibration(a).ece, runs),
            over(lambda a: a.geometry["distance"], runs),
            over(lambda a: a.embedding_geometry and a.embedding_geometry["distance"], runs),
            over(lambda a: None if a.toward_head is None else 100 * a.toward_head, runs),
            over(lambda a: an.log_count_correlation(a.rp.weight_norms, a.counts), runs)])
    return [(ACCURACY_HEADER, accuracy), (DIAGNOSTICS_HEADER, diagnostics)]


def _tail_calibration(a: Analysed) -> an.Calibration:
    """The calibration of the few-shot classes' images, or the medium ones' without few."""
    few = a.calibrations["few"]
    return few if few.bin_count.sum() else a.calibrations["medium"]


def comparison_page(groups: Sequence[Group], analysed: Sequence[Analysed]) -> str:
    """The page comparing several runs, grouped over seeds."""
    by_run = {a.run.path: a for a in analysed}
    group_of = {r.path: g.label for g in groups for r in g.runs}
    run_rows = [[a.run.name, group_of[a.run.path], f"{a.run.seed}",
                 f"{a.run.summary.get('epochs_run', '-')}",
                 *(a.run.summary.get(w, {}).get(k) for w in ("last", "best")
                   for k in HEADLINE_KEYS)] for a in analysed]
    per_group = []
    for g in groups:
        runs = [by_run[r.path] for r in g.runs]
        accs = [mean_std([a.metrics["per_class"][c] for a in runs])[0]
                for c in range(len(runs[0].names))]
        per_group.append((g.label, runs[0].counts, accs))
    sections = [
        ("groups", "Groups (mean ± std over seeds)",
         "<p>Runs whose configs differ only in train.seed form a group; last and best "
         "from the summary.json of its finished runs, the rest from this page's pass of "
         "each run's checkpoint (tail: the few-shot classes, or the medium-shot ones when "
         "there are none; simplex distance 0 is the balanced geometry; norm ~ log count: "
         "correlation of the classifier weight norm with log training count). Checkpoint: "
         f"{analysed[0].run.checkpoint.name}.</p>"
         + "".join(table(h, rows) for h, rows in group_tables(groups, analysed))),
        ("runs", "Runs", table(["run", "group", "seed", "epochs",
                                *(f"{w} {t}" for w in ("last", "best")
                                  for t in ("top-1", *SHOT_GROUPS))], run_rows)),
        ("curves", "Training curves",
         figure(fg.overlay_curves_figure([(group_of[a.run.path], a.run.records)
                                          for a in analysed]), "overlaid training curves")),
        ("per-class", "Per-class accuracy against training count (group means)",
         figure(fg.per_class_figure(per_group), "per-class accuracy per group")),
    ]
    each = "".join(details(f"{a.run.name} ({group_of[a.run.path]}, seed {a.run.seed})",
                           *(section(*p) for p in run_sections(a, f"r{i}-")))
                   for i, a in enumerate(analysed))
    sections.append(("each-run", "Each run", each))
    plural = "group" if len(groups) == 1 else "groups"
    return page(f"balcon report: {len(analysed)} runs in {len(groups)} {plural}",
                _subtitle(", ".join(a.run.name for a in analysed)),
                [(k, t) for k, t, _ in sections], "".join(section(*s) for s in sections))
