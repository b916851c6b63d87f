"""balcon report, train --seeds and train.tensorboard: the numbers against slow references
written from their formulas, the page against summary.json, and bad input."""

from __future__ import annotations

import html
import json
import re
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from helpers import run_error
from test_engine import TINY, tiny_config

from balcon.cli import main
from balcon.errors import BalconError
from balcon.report import analysis as an
from balcon.report.report_pass import cache_path, report_pass
from balcon.report.runs import format_mean_std, group_runs, mean_std, read_run
from balcon.runs import fit, load_checkpoint
from balcon.runs.tensorboard import EpochBoard

# ---------------------------------------------------------------- the numbers, by formula


def test_per_class_table_lines_up_whatever_the_names():
    from balcon.report import format_per_class

    for names in (["0", "1", "2"], ["airplane", "cat", "a-long-class-name"]):
        table = format_per_class([100.0, 50.0, None], names, [5, 128, 13]).splitlines()
        assert table[0].split() == ["class", "train", "acc"]
        assert [line.split()[0] for line in table[1:]] == [names[1], names[2], names[0]]
        assert len({len(line) for line in table}) == 1  # every column ends where its title does


def test_confusion_matrix_and_top_pairs_against_a_loop():
    rng = np.random.default_rng(0)
    labels, preds = rng.integers(0, 6, 500), rng.integers(0, 6, 500)
    m = an.confusion_matrix(labels, preds, 6)
    slow = np.zeros((6, 6), dtype=np.int64)
    for t, p in zip(labels, preds, strict=True):
        slow[t, p] += 1
    assert np.array_equal(m, slow)
    counts = [500, 300, 100, 50, 20, 5]
    pairs = an.top_confusions(labels, preds, counts, k=7)
    off = sorted(((slow[i, j], i, j) for i in range(6) for j in range(6) if i != j),
                 key=lambda x: (-x[0], x[1], x[2]))[:7]
    assert [(p["count"], p["true"], p["predicted"]) for p in pairs] == off
    for p in pairs:
        want = "tail -> head" if counts[p["predicted"]] > counts[p["true"]] else "head -> tail"
        assert p["direction"] == want
        assert p["share"] == pytest.approx(slow[p["true"], p["predicted"]] / slow[p["true"]].sum())
    toward = sum(slow[i, j] for i in range(6) for j in range(6)
                 if i != j and counts[j] > counts[i])
    assert an.toward_head_share(labels, preds, counts) == \
        pytest.approx(toward / (500 - np.trace(slow)))
    errors = slow - np.diag(np.diag(slow))
    assert an.most_confused_with(labels, preds, 6) == [int(np.argmax(r)) for r in errors]
    assert an.toward_head_share(labels, labels, counts) is None


def test_simplex_distance_is_zero_on_a_simplex_and_matches_the_formula():
    c = 5
    simplex = np.eye(c) - 1.0 / c  # centred vertices of the regular simplex
    feats = np.concatenate([simplex[k] + 0.0 * np.ones((n, c)) for k, n in
                            enumerate([50, 20, 9, 3, 1])])
    labels = np.repeat(np.arange(c), [50, 20, 9, 3, 1])
    sums = np.zeros((c, c))
    np.add.at(sums, labels, feats)
    cos = an.class_mean_cosines(sums + 7.0 * np.bincount(labels)[:, None],  # any shift
                                np.bincount(labels))
    assert np.allclose(cos[~np.eye(c, dtype=bool)], -1 / (c - 1))
    assert an.simplex_distance(cos) == pytest.approx(0, abs=1e-12)
    rng = np.random.default_rng(1)
    means = rng.normal(size=(c, 8))
    centred = means - means.mean(0)
    unit = centred / np.linalg.norm(centred, axis=1, keepdims=True)
    cos = an.class_mean_cosines(means * 3, np.full(c, 3))
    slow = [abs(unit[i] @ unit[j] + 1 / (c - 1)) for i in range(c) for j in range(c) if i != j]
    assert an.simplex_distance(cos) == pytest.approx(np.mean(slow))
    pairs = [abs(unit[i] @ unit[j] + 1 / (c - 1)) for i in (1, 3) for j in (1, 3) if i != j]
    assert an.simplex_distance(cos, [1, 3]) == pytest.approx(np.mean(pairs))
    assert an.simplex_distance(cos, [2]) is None
    assert an.simplex_distance(np.array([[1.0, -1.0], [-1.0, 1.0]])) is None  # C = 2


def test_geometry_of_many_classes_in_blocks_equals_the_dense_matrix():
    rng = np.random.default_rng(3)
    c, counts = 45, [400] * 10 + [50] * 20 + [10] * 15
    sums, n = rng.normal(size=(c, 16)), rng.integers(1, 9, c)
    n[4] = 0  # a class without report images is left out
    sums[4] = 0
    g = an.geometry(sums, n, counts, matrix_max=30)
    assert g["cosines"] is None and len(g["classes"]) == c - 1
    cos = an.class_mean_cosines(sums, n)
    assert g["distance"] == pytest.approx(an.simplex_distance(cos))
    many = [g["classes"].index(k) for k in range(10) if k != 4]
    assert g["groups"]["many"] == pytest.approx(an.simplex_distance(cos, many))
    small = an.geometry(sums[:8], n[:8], counts[:8])
    assert small["cosines"].shape == (7, 7)
    # several blocks of rows (the iNaturalist case), against a loop over the pairs that
    # builds the centred unit class means itself
    present = [k for k in range(c) if n[k] > 0]
    means = [sums[k] / n[k] for k in present]
    centre = sum(means) / len(means)
    unit = [(m - centre) / np.sqrt(((m - centre) ** 2).sum()) for m in means]

    def slow(members):
        devs = [abs(float(unit[i] @ unit[j]) + 1 / (len(present) - 1))
                for i in members for j in members if i != j]
        return sum(devs) / len(devs)

    blocks = an._unit_centred_means(sums, n)
    assert an._simplex_distance(blocks, unit=True, block=7) == pytest.approx(
        slow(range(len(present))))
    assert an._simplex_distance(blocks, many, unit=True, block=4) == pytest.approx(slow(many))
    assert g["distance"] == pytest.approx(slow(range(len(present))))
    for group, classes in (("medium", range(10, 30)), ("few", range(30, 45))):
        members = [g["classes"].index(k) for k in classes]
        assert g["groups"][group] == pytest.approx(slow(members)), group


def _bin_masks(conf: np.ndarray) -> list[np.ndarray]:
    """The 15 equal-width bins of (0, 1] one at a time: an edge belongs to the lower bin,
    0 to the first."""
    return [(conf > b / 15) & (conf <= (b + 1) / 15) if b else (conf <= 1 / 15)
            for b in range(15)]


def _loop_ece(conf: np.ndarray, correct: np.ndarray) -> float:
    """ECE (percent) from its formula, bin by bin."""
    return 100 * sum(mask.sum() / len(conf) * abs(correct[mask].mean() - conf[mask].mean())
                     for mask in _bin_masks(conf) if mask.any())


def test_expected_calibration_error_against_a_loop():
    rng = np.random.default_rng(2)
    conf = rng.uniform(0.1, 1.0, 1000)
    conf[:5] = [1.0, 1 / 15, 2 / 15, 0.5, 0.0]  # bin edges belong to the lower bin
    correct = rng.random(1000) < conf ** 2
    cal = an.calibration(conf, correct)
    # each bin's count, accuracy and mean confidence (the reliability diagram's), NaN empty
    for b, mask in enumerate(_bin_masks(conf)):
        assert cal.bin_count[b] == mask.sum()
        if mask.any():
            assert cal.bin_accuracy[b] == pytest.approx(100 * correct[mask].mean())
            assert cal.bin_confidence[b] == pytest.approx(100 * conf[mask].mean())
        else:
            assert np.isnan(cal.bin_confidence[b])
    assert cal.ece == pytest.approx(_loop_ece(conf, correct))
    perfect = an.calibration(np.full(10, 0.7), np.arange(10) < 7)
    assert perfect.ece == pytest.approx(0)
    assert an.calibration(np.array([]), np.array([], dtype=bool)).ece is None
    with_nan = an.calibration(np.array([0.7] * 10 + [np.nan]), np.arange(11) < 7)
    assert with_nan.ece == pytest.approx(0) and with_nan.bin_count.sum() == 10
    # each shot group's ECE over the images of its classes
    labels = np.arange(300) % 3
    groups = an.calibration_by_group(conf[:300], correct[:300], labels, [500, 50, 5])
    assert groups["few"].bin_count.sum() == 100
    assert groups["all"].ece == pytest.approx(_loop_ece(conf[:300], correct[:300]))
    for name, cls in (("many", 0), ("medium", 1), ("few", 2)):
        mine = labels == cls
        assert groups[name].ece == pytest.approx(_loop_ece(conf[:300][mine],
                                                           correct[:300][mine]))


def test_class_names_are_text_in_the_pictures():
    from balcon.report import figures as fg
    from balcon.report.html import figure

    names = ["r$\\frac$", "x$y$z", 'a<b&"c']  # mathtext would fail on the first
    for fig in (fg.confusion_figure(np.eye(3, dtype=int), names, [0, 1, 2]),
                fg.per_class_figure([("acc", [5, 50, 500], [1.0, 2.0, 3.0])], names),
                fg.weight_norm_figure([5, 50, 500], [1.0, 2.0, 3.0], "linear", names),
                fg.cosine_figure(np.eye(3), names, [2, 1, 0])):
        assert figure(fig, "x").startswith('<img alt="x" src="data:image/png;base64,')


def test_correlation_with_log_count_against_the_formula():
    counts, values = [5000, 500, 50, 5], [4.0, 3.1, 1.9, 1.2]
    x, y = np.log(counts), np.array(values)
    r = ((x - x.mean()) * (y - y.mean())).sum() / np.sqrt(((x - x.mean()) ** 2).sum()
                                                          * ((y - y.mean()) ** 2).sum())
    assert an.log_count_correlation(values, counts) == pytest.approx(r)
    assert an.log_count_correlation([1.0] * 4, counts) is None


def test_mean_std():
    assert mean_std([1.0, 2.0, 3.0]) == (2.0, 1.0, 3)  # sample standard deviation
    assert mean_std([4.0, None]) == (4.0, None, 1)
    assert format_mean_std([None]) == "-"
    assert format_mean_std([53.2, 50.98, 54.6]) == "52.93 +- 1.83"


# ------------------------------------------------------------------- runs for the page


@pytest.fixture(scope="module")
def seeds_dir(tmp_path_factory, cifar10_shared_root: Path) -> Path:
    """Two seeds of the tiny BCL run, with TensorBoard, through the command line."""
    out = tmp_path_factory.mktemp("seeds") / "bcl"
    args = ["train", "--preset", "cifar10-lt-r100", "--data-dir", str(cifar10_shared_root),
            "--out", str(out), "--epochs", "2", "--set", "train.tensorboard=true",
            "--seeds", "0", "1"]
    for item in TINY:
        args += ["--set", item]
    assert main(args) == 0
    return out


@pytest.fixture(scope="module")
def ce_run(tmp_path_factory, cifar10_shared_root: Path) -> Path:
    out = tmp_path_factory.mktemp("ce") / "ce"
    fit(tiny_config("loss.method=ce"), cifar10_shared_root, out)
    return out


def test_seeds_train_in_turn_and_print_their_table(seeds_dir: Path, capsys):
    info = json.loads((seeds_dir / "seeds.json").read_text())
    assert info["seeds"] == [0, 1]
    configs = [read_run(seeds_dir / f"seed{s}").config for s in (0, 1)]
    assert [c["train"]["seed"] for c in configs] == [0, 1]
    configs[1]["train"]["seed"] = 0
    assert configs[0] == configs[1]  # they differ in the seed alone
    summaries = [json.loads((seeds_dir / f"seed{s}/summary.json").read_text()) for s in (0, 1)]
    assert all(s["finished"] for s in summaries)
    assert main(["train", "--resume", str(seeds_dir)]) == 0  # both finished: nothing to do
    out = capsys.readouterr().out
    assert "already finished" in out
    row = out.splitlines()[-3]
    assert row.startswith("mean +- std (2)")
    assert format_mean_std([s["last"]["top1"] for s in summaries]) in row


def test_resume_of_seeds_continues_the_unfinished(seeds_dir: Path, tmp_path: Path,
                                                  cifar10_shared_root: Path):
    copy = tmp_path / "bcl"
    shutil.copytree(seeds_dir, copy)
    shutil.rmtree(copy / "seed1")  # seed 1 cut after its first epoch
    cfg = tiny_config("train.seed=1", "train.tensorboard=true")
    fit(cfg, cifar10_shared_root, copy / "seed1", stop_after=1)
    seed0 = (copy / "seed0/last.pt").stat().st_mtime_ns
    assert main(["train", "--resume", str(copy)]) == 0
    assert (copy / "seed0/last.pt").stat().st_mtime_ns == seed0  # finished: left alone
    done, ref = (load_checkpoint(p / "seed1/last.pt")["model"] for p in (copy, seeds_dir))
    assert all(torch.equal(done[k], ref[k]) for k in ref)  # as if never cut


def test_seeds_refuse_bad_input(seeds_dir: Path, tmp_path: Path, capsys):
    base = ["train", "--preset", "cifar10-lt-r100", "--data-dir", str(tmp_path)]
    for args, words in (
        ([*base, "--seeds", "0", "0", "--out", str(tmp_path / "a")], "twice"),
        ([*base, "--seeds", "0", "--set", "train.seed=3"], "drop --set train.seed"),
        ([*base, "--seeds", "0", "1", "--out", str(seeds_dir)], "not empty"),
        (["train", "--resume", str(seeds_dir), "--seeds", "3"], "drop"),
    ):
        assert words in run_error(capsys, args)


def test_tensorboard_holds_the_logged_scalars(seeds_dir: Path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    run = seeds_dir / "seed0"
    events = EventAccumulator(str(run / "tensorboard"))
    events.Reload()
    tags = set(events.Tags()["scalars"])
    assert {"train/loss", "train/loss_cls", "train/loss_con", "train/lr", "train/accuracy",
            "train/images_per_s", "test/top1", "test/top5", "test/medium"} <= tags
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    top1 = [(e.step, e.value) for e in events.Scalars("test/top1")]
    assert top1 == [(r["epoch"], pytest.approx(r["top1"])) for r in records]
    assert [e.value for e in events.Scalars("train/loss")] == \
        [pytest.approx(r["loss"], rel=1e-6) for r in records]


def test_tensorboard_missing_is_one_line(monkeypatch, tmp_path: Path):
    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", None)
    with pytest.raises(BalconError, match=r"pip install 'balcon\[tensorboard\]'"):
        EpochBoard(tmp_path, enabled=True)
    assert EpochBoard(tmp_path, enabled=False).writer is None


# -------------------------------------------------------------------------- the page

SECTIONS = ("results", "config", "curves", "per-class", "confusions", "weight-norms",
            "geometry", "calibration")


def assert_offline(page: str) -> None:
    """Nothing loads from elsewhere: every src a data: URI, every href an anchor."""
    for attr in re.findall(r'\b(?:src|href)\s*=\s*"([^"]*)"', page):
        assert attr.startswith(("data:", "#")), attr
    assert "<script" not in page and "<link" not in page and "@import" not in page
    assert not re.search(r"url\(\s*['\"]?(?!data:)", page)


def test_run_page_has_every_section_and_the_summary_numbers(seeds_dir: Path, capsys):
    run = seeds_dir / "seed0"
    assert main(["report", str(run)]) == 0
    out = capsys.readouterr().out
    page_path = run / "report.html"
    assert f"wrote {page_path}" in out
    page = page_path.read_text()
    assert len(page) > 20_000
    assert_offline(page)
    for anchor in SECTIONS:
        assert f'<section id="{anchor}">' in page, anchor
    for word in ("many", "medium", "few", "ECE", "simplex", "contrastive embeddings"):
        assert word in page
    summary = json.loads((run / "summary.json").read_text())
    # the precision it trained with, and why (auto's choice), as run.json and summary.json
    precision = f"{summary['precision']} ({summary['precision_reason']})"
    assert f"<dt>precision</dt><dd>{html.escape(precision)}</dd>" in page
    cells = re.findall(r"<td>([^<]*)</td>", page)
    for which in ("last", "best"):
        for key in ("top1", "top5", "many", "medium", "few"):
            v = summary[which][key]
            assert ("-" if v is None else f"{v:.2f}") in cells
    # the page's own pass of best.pt measures what the run logged for its best epoch
    rp = report_pass(run / "best.pt")
    assert rp.meta["cached"]
    assert rp.meta["metrics"]["top1"] == pytest.approx(summary["best"]["top1"])
    assert rp.meta["epoch"] == summary["best"]["epoch"]
    # the diagnostics on the page are the pass's: each group's ECE, the simplex distance
    # of the features, and the share of errors toward a larger class (counted here)
    counts = rp.meta["class_counts"]
    groups = an.calibration_by_group(rp.confidence, rp.predictions == rp.labels, rp.labels,
                                     counts)
    for name, cal in groups.items():
        assert ("-" if cal.ece is None else f"{cal.ece:.2f}") in cells, name
    distance = an.geometry(rp.feature_sums, rp.feature_counts, counts)["distance"]
    assert f"{distance:.2f}" in cells
    errors = [(int(t), int(p)) for t, p in zip(rp.labels, rp.predictions, strict=True)
              if t != p]
    toward = 100 * sum(counts[p] > counts[t] for t, p in errors) / len(errors)
    assert f"<b>{toward:.2f}%</b> predict a class with more training images" in page


def test_the_pass_is_cached_and_recomputed_when_the_checkpoint_changes(
        seeds_dir: Path, tmp_path: Path, monkeypatch):
    run = tmp_path / "run"
    shutil.copytree(seeds_dir / "seed1", run)
    cache = cache_path(run / "best.pt", "test")
    cache.unlink(missing_ok=True)
    first = report_pass(run / "best.pt")
    assert not first.meta["cached"] and cache.is_file()
    def no_data(*args, **kwargs):
        raise AssertionError("a current cache needs no data")

    with monkeypatch.context() as m:
        m.setattr("balcon.report.report_pass.load_image_sets", no_data)
        again = report_pass(run / "best.pt")
    assert again.meta["cached"]
    for name in ("labels", "predictions", "confidence", "feature_sums", "weight_norms"):
        assert np.array_equal(getattr(first, name), getattr(again, name))
    # the slow way: per-image logits from balcon eval's predictions
    from balcon.runs import evaluate_checkpoint

    metrics, preds = evaluate_checkpoint(run / "best.pt")
    assert np.array_equal(first.predictions, preds.logits.argmax(1).numpy())
    assert np.allclose(first.confidence, preds.logits.softmax(1).max(1).values.numpy(),
                       atol=1e-6)
    assert first.meta["metrics"]["per_class"] == metrics["per_class"]
    state = load_checkpoint(run / "best.pt")
    assert np.allclose(first.weight_norms, state["model"]["classifier.weight"].norm(dim=1))
    # the contrastive embeddings' class sums, the slow way: BCLModel.forward's projections
    from balcon.data import load_image_sets
    from balcon.engine.device import autocast
    from balcon.engine.loaders import eval_loader
    from balcon.runs.inference import checkpoint_precision, model_for_inference

    _, cfg, model, dev = model_for_inference(run / "best.pt", None)
    test = load_image_sets(cfg.data, state["data_dir"]).test
    slow = np.zeros_like(first.embedding_sums)
    model.eval()
    # in the precision the run trained with, as the pass does: bf16 where `auto` took it
    # (a CPU with native bf16), where the model normalises in bf16 and the pass in float32
    precision = checkpoint_precision(state, cfg, dev)
    with torch.no_grad(), autocast(dev, precision):
        for images, labels in eval_loader(test, cfg.data, dev):
            z = model(images, project=True, prototypes=False)[0]
            for row, label in zip(z.double().numpy(), labels.tolist(), strict=True):
                slow[label] += row
    assert first.embedding_sums.shape == (10, 16)
    # bf16 keeps 8 bits of each of ~20 unit vectors summed: about 0.01 per entry
    atol = 1e-4 if precision == "off" else 0.05
    assert np.abs(first.embedding_sums - slow).max() <= atol
    torch.save(state, run / "best.pt")  # a new best.pt: the cache no longer holds
    assert not report_pass(run / "best.pt").meta["cached"]

    def read_only(*args, **kwargs):
        raise BalconError("cannot write: read-only file system")

    monkeypatch.setattr("balcon.report.report_pass.write_atomic", read_only)
    cache.unlink()
    rp = report_pass(run / "best.pt")  # a folder it cannot write still gets its pass
    assert rp.meta["cached_to"] is None and not cache.exists()


def test_comparison_groups_seeds(seeds_dir: Path, ce_run: Path, tmp_path: Path, capsys):
    out = tmp_path / "cmp.html"
    assert main(["report", str(seeds_dir), str(ce_run), "--out", str(out)]) == 0
    page = out.read_text()
    assert_offline(page)
    for anchor in ("groups", "runs", "curves", "per-class", "each-run"):
        assert f'<section id="{anchor}">' in page
    runs = [read_run(seeds_dir / "seed0"), read_run(seeds_dir / "seed1"), read_run(ce_run)]
    groups = group_runs(runs)
    assert [g.label for g in groups] == ["loss.method=bcl", "loss.method=ce"]
    assert [len(g.runs) for g in groups] == [2, 1]
    tops = [r.summary["last"]["top1"] for r in runs[:2]]
    assert f"<td>loss.method=bcl</td><td>2</td><td>{format_mean_std(tops, '±')}</td>" in page
    assert page.count("<details><summary>") >= 3
    assert report_pass(ce_run / "best.pt").embedding_sums.shape == (10, 0)  # no such head


def test_report_refuses_bad_input(seeds_dir: Path, ce_run: Path, tmp_path: Path, capsys):
    def error(args: list[str]) -> str:
        assert main(["report", *args]) == 2
        err = capsys.readouterr().err.strip()
        assert err.startswith("balcon: error: ") and "\n" not in err
        return err

    assert "not a balcon run directory" in error([str(tmp_path)])
    bare = tmp_path / "bare"
    shutil.copytree(ce_run, bare, ignore=shutil.ignore_patterns("*.pt", "*.npz"))
    assert "no best.pt" in error([str(bare)]) and "balcon train --resume" in error([str(bare)])
    (bare / "last.pt").write_bytes((ce_run / "last.pt").read_bytes())
    assert "--checkpoint last" in error([str(bare)])
    report_pass(ce_run / "best.pt")  # its cache, to be altered below
    other = tmp_path / "other"  # the same run, but trained on other classes
    shutil.copytree(ce_run, other)
    cache = cache_path(other / "best.pt", "test")
    with np.load(cache) as npz:
        arrays = dict(npz)
    meta = json.loads(str(arrays["meta"]))
    meta["class_names"] = [f"c{i}" for i in range(len(meta["class_names"]))]
    arrays["meta"] = np.array(json.dumps(meta))
    np.savez(cache, **arrays)
    assert "other classes" in error([str(ce_run), str(other), "--out", str(tmp_path / "x.html")])


def test_a_damaged_cache_is_made_again(seeds_dir: Path, tmp_path: Path):
    run = tmp_path / "run"
    shutil.copytree(seeds_dir / "seed0", run)
    cache = cache_path(run / "best.pt", "test")
    for damage in (b"", b"PK\x03\x04 cut short"):
        cache.write_bytes(damage)
        rp = report_pass(run / "best.pt")
        assert not rp.meta["cached"] and rp.meta["cached_to"] == str(cache)


def test_runs_named_twice_count_once_and_unready_seeds_are_left_out(
        seeds_dir: Path, tmp_path: Path, capsys):
    out = tmp_path / "twice.html"
    assert main(["report", str(seeds_dir), str(seeds_dir / "seed0"), "--out", str(tmp_path),
                 "--checkpoint", "last"]) == 0
    printed = capsys.readouterr().out
    assert f"wrote {tmp_path / 'report.html'}" in printed  # a folder gets report.html
    assert printed.count("last.pt on test") == 2
    page = (tmp_path / "report.html").read_text()
    assert "2 runs in 1 group" in page
    seeds = tmp_path / "seeds"
    shutil.copytree(seeds_dir, seeds)
    for name in ("best.pt", "last.pt"):
        (seeds / "seed1" / name).unlink()  # begun, no checkpoint yet
    assert main(["report", str(seeds), "--out", str(out)]) == 0
    assert f"left out {seeds / 'seed1'}" in capsys.readouterr().out
    assert main(["report", str(seeds)]) == 0  # no --out: the page in the --seeds folder
    assert f"wrote {seeds / 'report.html'}" in capsys.readouterr().out
    assert main(["report", str(seeds_dir), "--out", str(tmp_path / "new" / "x.html")]) == 0
    assert (tmp_path / "new" / "x.html").is_file()  # a missing folder is made
    best = seeds / "seed0" / "best.pt"
    kept = best.read_bytes()
    assert main(["report", str(seeds / "seed0"), "--out", str(best)]) == 2  # not over a run
    err = capsys.readouterr().err
    assert f"--out {best} is a run's best.pt" in err and "choose another --out" in err
    assert best.read_bytes() == kept


def test_seeds_continue_resumes_the_same_seeds_and_refuses_others(
        seeds_dir: Path, cifar10_shared_root: Path, capsys):
    args = ["train", "--preset", "cifar10-lt-r100", "--data-dir", str(cifar10_shared_root),
            "--out", str(seeds_dir), "--epochs", "2", "--set", "train.tensorboard=true",
            "--continue"]
    for item in TINY:
        args += ["--set", item]
    assert main([*args, "--seeds", "0", "1"]) == 0  # requeued: everything already done
    assert "already finished (left as they were): seed0, seed1" in capsys.readouterr().out
    assert main([*args, "--seeds", "0", "1", "2"]) == 2
    assert "other seeds" in capsys.readouterr().err
