"""Training runs end to end on synthetic CIFAR files: files, resume, workers, eval."""

from __future__ import annotations

import csv
import json
import math
import os
import socket
import stat
import subprocess
import sys
import threading
from pathlib import Path

import pytest
import torch
from helpers import assert_same_weights
from PIL import Image

from balcon.cli import main
from balcon.config import apply_overrides, compress_schedule
from balcon.data import longtail_counts
from balcon.engine import lr_at
from balcon.methods import METHODS
from balcon.models import build_model
from balcon.presets import load_preset
from balcon.runs import evaluate_checkpoint, fit, load_checkpoint, resume, save_checkpoint

#: A tiny but complete run: ResNet-8, imbalance 10 over the synthetic 100-per-class set.
TINY = [
    "model.encoder=resnet8",
    "model.head_hidden=32",
    "model.head_dim=16",
    "data.imbalance=10",
    "train.batch_size=64",
    "train.eval_every=1",
    "data.num_workers=0",
]


#: Epochs of the tiny run, as a compressed schedule (``--epochs``).
TINY_EPOCHS = 2


def tiny_config(*extra: str, epochs: int = TINY_EPOCHS):
    cfg = compress_schedule(load_preset("cifar10-lt-r100"), epochs)
    return apply_overrides(cfg, [*TINY, *extra])


def weights(run_dir: Path) -> dict[str, torch.Tensor]:
    return load_checkpoint(run_dir / "last.pt")["model"]


@pytest.fixture(scope="session")
def finished_run(tmp_path_factory, cifar10_shared_root: Path) -> Path:
    """One uninterrupted two-epoch run, made through the command line."""
    root = cifar10_shared_root
    run = tmp_path_factory.mktemp("runs") / "full"
    args = ["train", "--preset", "cifar10-lt-r100", "--data-dir", str(root), "--out", str(run),
            "--epochs", str(TINY_EPOCHS)]
    for item in TINY:
        args += ["--set", item]
    assert main(args) == 0
    return run


def test_run_directory_holds_every_file(finished_run: Path, capsys):
    for name in ("config.yaml", "train.log", "metrics.jsonl", "last.pt", "best.pt",
                 "summary.json", "curves.png"):
        assert (finished_run / name).is_file(), name
    records = [json.loads(line) for line in (finished_run / "metrics.jsonl").read_text()
               .splitlines()]
    assert [r["epoch"] for r in records] == [1, 2]
    for key in ("lr", "loss", "loss_cls", "loss_con", "top1", "top5", "top5_k", "many",
                "medium", "few", "per_class", "images_per_s"):
        assert key in records[-1], key
    assert len(records[-1]["per_class"]) == 10
    assert records[-1]["top5_k"] == 5
    # imbalance 10 over 100 images a class: 100, 77..21 (medium), 16, 12, 10 (few), and
    # no class over 100: the empty many-shot group is null, never 0 or NaN
    assert records[-1]["many"] is None
    assert records[-1]["medium"] is not None and records[-1]["few"] is not None
    assert '"many": null' in (finished_run / "metrics.jsonl").read_text()
    summary = json.loads((finished_run / "summary.json").read_text())
    assert summary["last"]["epoch"] == 2
    assert summary["best"]["top1"] == max(r["top1"] for r in records)
    log = (finished_run / "train.log").read_text()
    assert "epoch 2/2" in log and "eval epoch 2" in log
    saved = load_checkpoint(finished_run / "last.pt")
    assert saved["class_names"][0] == "airplane"
    assert saved["class_counts"] == longtail_counts(100, 10, 10)
    assert saved["epoch"] == 2 and saved["config"]["model"]["encoder"] == "resnet8"


def test_resume_equals_uninterrupted_run(finished_run: Path, tmp_path: Path):
    data_dir = load_checkpoint(finished_run / "last.pt")["data_dir"]
    cut = tmp_path / "cut"
    fit(tiny_config(), data_dir, cut, stop_after=1)
    assert load_checkpoint(cut / "last.pt")["epoch"] == 1
    assert main(["train", "--resume", str(cut)]) == 0
    assert_same_weights(weights(cut), weights(finished_run))
    full = (finished_run / "metrics.jsonl").read_text().splitlines()
    resumed = (cut / "metrics.jsonl").read_text().splitlines()
    strip = ("images_per_s", "train_seconds", "data_wait_share")
    assert [{k: v for k, v in json.loads(x).items() if k not in strip} for x in full] == \
        [{k: v for k, v in json.loads(x).items() if k not in strip} for x in resumed]


def test_same_weights_with_zero_and_two_workers(finished_run: Path, tmp_path: Path):
    data_dir = load_checkpoint(finished_run / "last.pt")["data_dir"]
    two = tmp_path / "two"
    fit(tiny_config("data.num_workers=2", "data.pipeline=workers"), data_dir, two,
        stop_after=1)
    zero = tmp_path / "zero"
    fit(tiny_config("data.pipeline=workers"), data_dir, zero, stop_after=1)
    assert_same_weights(weights(two), weights(zero))


def test_eval_reproduces_logged_metrics(finished_run: Path, tmp_path: Path, capsys):
    out = tmp_path / "new" / "eval.json"  # missing folders are made
    csv_path = tmp_path / "csv" / "predictions.csv"
    assert main(["eval", "--checkpoint", str(finished_run / "last.pt"), "--out", str(out),
                 "--per-class", "--predictions", str(csv_path)]) == 0
    printed = capsys.readouterr().out
    assert "overall" in printed and "many" in printed and "airplane" in printed
    got = json.loads(out.read_text())
    logged = json.loads((finished_run / "metrics.jsonl").read_text().splitlines()[-1])
    for key in ("top1", "top5", "many", "medium", "few", "per_class"):
        assert got[key] == logged[key], key
    assert got["class_names"][9] == "truck"
    rows = list(csv.DictReader(csv_path.open()))
    assert len(rows) == 200 and rows[0]["source"] == "test[0]"
    assert 100 * sum(int(r["correct"]) for r in rows) / 200 == pytest.approx(got["top1"])
    assert all(r["label_name"] == got["class_names"][int(r["label"])] for r in rows)
    # default output path: beside the checkpoint
    assert main(["eval", "--checkpoint", str(finished_run / "best.pt")]) == 0
    assert (finished_run / "best-eval.json").is_file()


def _read_fifo(path: Path, got: list[bytes]) -> threading.Thread:
    """A reader of the FIFO ``path`` in a thread (a FIFO's writer waits for one)."""
    def read() -> None:
        with open(path, "rb") as f:
            got.append(f.read())
    thread = threading.Thread(target=read, daemon=True)
    thread.start()
    return thread


def test_outputs_into_a_folder_or_a_pipe(finished_run: Path, tmp_path: Path, capsys):
    """A folder given as --out gets the default name inside; a pipe or a device (here a
    FIFO, as /dev/stdout may be) is written into, never replaced by a file."""
    folder = tmp_path / "out"
    folder.mkdir()
    best = str(finished_run / "best.pt")
    assert main(["eval", "--checkpoint", best, "--out", str(folder), "--predictions",
                 str(folder)]) == 0
    Image.new("RGB", (32, 32), (10, 200, 30)).save(tmp_path / "one.png")
    assert main(["predict", "--checkpoint", best, str(tmp_path / "one.png"), "--out",
                 str(folder)]) == 0
    assert sorted(p.name for p in folder.iterdir()) == [
        "best-eval-predictions.csv", "best-eval.json", "best-predictions.csv"]
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    got: list[bytes] = []
    reader = _read_fifo(fifo, got)
    assert main(["eval", "--checkpoint", best, "--out", str(fifo)]) == 0
    reader.join(timeout=60)
    assert json.loads(got[0])["top1"] == json.loads((folder / "best-eval.json").read_text())[
        "top1"]
    assert stat.S_ISFIFO(fifo.stat().st_mode)  # still a pipe
    assert f"wrote {fifo}" in capsys.readouterr().out
    target = tmp_path / "target.json"
    target.write_text("{}")
    (tmp_path / "link.json").symlink_to(target)
    assert main(["eval", "--checkpoint", best, "--out", str(tmp_path / "link.json")]) == 0
    assert (tmp_path / "link.json").is_symlink() and "top1" in json.loads(target.read_text())


def test_write_atomic_verifies_before_writing_into_a_pipe(tmp_path: Path):
    from balcon.errors import BalconError
    from balcon.runs.checkpoint import write_atomic

    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)

    def refuse(path: Path) -> None:
        raise BalconError(f"{path.name} does not verify")
    with pytest.raises(BalconError, match="does not verify"):  # nothing reaches the pipe
        write_atomic(fifo, lambda f: f.write(b"bad"), verify=refuse)
    got: list[bytes] = []
    reader = _read_fifo(fifo, got)
    write_atomic(fifo, lambda f: f.write(b"good"), verify=lambda path: None)
    reader.join(timeout=60)
    assert got == [b"good"] and stat.S_ISFIFO(fifo.stat().st_mode)


def _balcon_with_stdout(args: list[str], stdout) -> subprocess.CompletedProcess:
    """``balcon ARGS`` in a new process whose standard output is ``stdout``."""
    return subprocess.run([sys.executable, "-m", "balcon.cli", *args], stdout=stdout,
                          stderr=subprocess.PIPE, text=True, timeout=300)


@pytest.mark.skipif(not Path("/proc/self/fd").is_dir(), reason="needs Linux's /proc")
def test_outputs_into_stdout_on_a_pipe_and_a_new_folder(finished_run: Path, tmp_path: Path):
    """``--out /dev/stdout`` under ``| jq`` is a link into /proc naming an anonymous pipe
    (``pipe:[N]``, no path once resolved): it is written into. ``new/`` is a folder to make."""
    best = str(finished_run / "best.pt")
    read_end, write_end = os.pipe()
    got: list[bytes] = []

    def read_to_the_end() -> None:
        with os.fdopen(read_end, "rb") as pipe:
            got.append(pipe.read())
    reader = threading.Thread(target=read_to_the_end, daemon=True)
    reader.start()
    try:
        assert main(["eval", "--checkpoint", best, "--out", f"/proc/self/fd/{write_end}"]) == 0
    finally:
        os.close(write_end)
    reader.join(timeout=60)
    assert "top1" in json.loads(got[0])
    assert main(["predict", "--checkpoint", best, str(finished_run / "config.yaml"),
                 "--out", f"{tmp_path / 'new'}/"]) == 2  # no images: refused, nothing made
    assert not (tmp_path / "new").exists()
    Image.new("RGB", (32, 32), (10, 200, 30)).save(tmp_path / "one.png")
    assert main(["predict", "--checkpoint", best, str(tmp_path / "one.png"), "--out",
                 f"{tmp_path / 'new'}/"]) == 0
    assert [p.name for p in (tmp_path / "new").iterdir()] == ["best-predictions.csv"]
    (tmp_path / "file.json").write_text("{}")  # a folder path through a file: refused
    assert main(["eval", "--checkpoint", best, "--out", f"{tmp_path / 'file.json'}/"]) == 2


@pytest.mark.skipif(not Path("/dev/stdout").exists(), reason="needs /dev/stdout")
def test_out_dev_stdout_goes_where_the_shell_sent_stdout(finished_run: Path, tmp_path: Path):
    """Standard output holds the written file alone, the command's lines on stderr: on a
    pipe, in a file (``> out.txt`` is not refused for its name; ``>>`` appends), and for
    ``eval --predictions``; the two outputs naming one file, and a socket, are refused."""
    best = str(finished_run / "best.pt")
    piped = _balcon_with_stdout(["eval", "--checkpoint", best, "--out", "/dev/stdout"],
                                subprocess.PIPE)
    assert piped.returncode == 0, piped.stderr
    assert "top1" in json.loads(piped.stdout) and "wrote /dev/stdout" in piped.stderr
    appended = tmp_path / "log.txt"
    appended.write_text("before\n")
    with open(appended, "a") as stdout:
        done = _balcon_with_stdout(["eval", "--checkpoint", best, "--out", "/dev/stdout"], stdout)
    assert done.returncode == 0, done.stderr
    before, after = appended.read_text().split("\n", 1)
    assert before == "before" and json.loads(after)["top1"] == json.loads(piped.stdout)["top1"]
    csv_piped = _balcon_with_stdout(["eval", "--checkpoint", best, "--out",
                                     str(tmp_path / "e.json"), "--predictions", "/dev/stdout"],
                                    subprocess.PIPE)
    assert csv_piped.returncode == 0, csv_piped.stderr
    rows = csv_piped.stdout.splitlines()
    assert rows[0].startswith("source,label,") and len(rows) == 201  # header + 200 images
    same = _balcon_with_stdout(["eval", "--checkpoint", best, "--out", "/dev/stdout",
                                "--predictions", "/proc/self/fd/1"], subprocess.PIPE)
    assert same.returncode == 2 and "is also the --out file" in same.stderr
    sock = socket.socket(socket.AF_UNIX)
    try:
        sock.bind(str(tmp_path / "sock"))
        assert main(["eval", "--checkpoint", best, "--out", str(tmp_path / "sock")]) == 2
        assert stat.S_ISSOCK((tmp_path / "sock").stat().st_mode)  # left as it was
    finally:
        sock.close()


def test_eval_of_checkpoint_from_cuda_style_state(finished_run: Path, tmp_path: Path,
                                                  monkeypatch):
    """A checkpoint loads onto the CPU whatever device it came from (map_location): here
    one whose tensors are tagged as CUDA's, as a GPU run saves them."""
    import torch.serialization

    state = load_checkpoint(finished_run / "last.pt")
    with monkeypatch.context() as m:
        m.setattr(torch.serialization, "location_tag", lambda storage: "cuda:0")
        torch.save(state, tmp_path / "gpu.pt")
    if not torch.cuda.is_available():  # what a plain torch.load does with it here
        with pytest.raises(RuntimeError, match="CUDA"):
            torch.load(tmp_path / "gpu.pt", weights_only=True)
    metrics, predictions = evaluate_checkpoint(tmp_path / "gpu.pt", device="cpu")
    assert metrics["epoch"] == 2 and metrics["images"] == 200
    assert metrics["split"] == "test"
    assert predictions.logits.shape == (200, 10) and len(predictions.sources) == 200


@pytest.mark.parametrize("method", [m for m in METHODS if m != "bcl"])  # bcl: finished_run
def test_every_method_trains(finished_run: Path, tmp_path: Path, method: str):
    data_dir = load_checkpoint(finished_run / "last.pt")["data_dir"]
    cfg = tiny_config(f"loss.method={method}", epochs=1)
    result = fit(cfg, data_dir, tmp_path / method)
    record = json.loads((tmp_path / method / "metrics.jsonl").read_text())
    assert result.summary["last"]["epoch"] == 1
    assert (record["loss_con"] is None) == (not METHODS[method].contrastive)
    assert math.isfinite(record["loss"]) and math.isfinite(record["loss_cls"])
    torch.manual_seed(cfg.train.seed)  # the weights it started from, as the run seeds them
    start = build_model(cfg.model, 10).state_dict()
    end = load_checkpoint(tmp_path / method / "last.pt")["model"]
    assert not torch.equal(start["classifier.weight"], end["classifier.weight"])


def test_lr_schedule_matches_recipe():
    optim = load_preset("cifar10-lt-r100").optim
    lrs = [lr_at(optim, e, 200) for e in range(200)]
    assert lrs[:5] == pytest.approx([0.03, 0.06, 0.09, 0.12, 0.15])
    assert lrs[5] == lrs[159] == pytest.approx(0.15)
    assert lrs[160] == lrs[179] == pytest.approx(0.015)
    assert lrs[180] == lrs[199] == pytest.approx(0.0015)
    cosine = apply_overrides(load_preset("cifar10-lt-r100"), ["optim.schedule=cosine"]).optim
    assert lr_at(cosine, 5, 200) == pytest.approx(0.15)
    assert lr_at(cosine, 199, 200) < 1e-3


def test_demo_trains_and_prints_table(tmp_path: Path, capsys):
    assert main(["demo", "--epochs", "1", "--out", str(tmp_path / "demo")]) == 0
    out = capsys.readouterr().out
    assert "overall" in out and "medium" in out and str(tmp_path / "demo") in out
    assert (tmp_path / "demo" / "best.pt").is_file()


def test_eval_of_fp16_checkpoint_on_cpu(finished_run: Path, tmp_path: Path):
    """A checkpoint trained with fp16 (CUDA) evaluates on the CPU in float32.

    The reference is the same weights saved as a float32 run, not the run's logged
    eval: ``precision: auto`` trains (and logs) in bf16 on a CPU with native bf16.
    """
    state = load_checkpoint(finished_run / "last.pt")
    results = {}
    for precision in ("fp16", "off"):
        state["config"]["train"]["precision"] = state["precision"] = precision
        save_checkpoint(tmp_path / f"{precision}.pt", state)
        results[precision], _ = evaluate_checkpoint(tmp_path / f"{precision}.pt", device="cpu")
    assert results["fp16"]["top1"] == results["off"]["top1"]
    assert results["fp16"]["many"] == results["off"]["many"]


def test_resume_survives_a_cut_metrics_line(finished_run: Path, tmp_path: Path):
    data_dir = load_checkpoint(finished_run / "last.pt")["data_dir"]
    cut = tmp_path / "cut"
    fit(tiny_config(), data_dir, cut, stop_after=1)
    with (cut / "metrics.jsonl").open("a") as f:
        f.write('{"epoch": 2, "top1": 1')  # killed in the middle of a write
    resume(cut)
    assert_same_weights(weights(cut), weights(finished_run))
    assert [json.loads(x)["epoch"] for x in (cut / "metrics.jsonl").read_text().splitlines()] \
        == [1, 2]


def test_resume_with_other_data_is_refused(finished_run: Path, tmp_path: Path, capsys):
    data_dir = load_checkpoint(finished_run / "last.pt")["data_dir"]
    cut = tmp_path / "cut"
    fit(tiny_config(), data_dir, cut, stop_after=1)
    before = (cut / "last.pt").read_bytes()
    other = tmp_path / "other"
    for split in ("train", "test"):
        for cls in ("cats", "dogs"):
            (other / split / cls).mkdir(parents=True)
            for i in range(20):
                Image.new("RGB", (8, 8), (i, 0, 0)).save(other / split / cls / f"{i}.png")
    assert main(["train", "--resume", str(cut), "--data-dir", str(other)]) == 2
    assert "not the data it was trained on" in capsys.readouterr().err
    assert (cut / "last.pt").read_bytes() == before


def test_resuming_a_finished_run_reports_it(finished_run: Path, capsys):
    before = (finished_run / "last.pt").stat().st_mtime_ns
    assert main(["train", "--resume", str(finished_run)]) == 0
    out = capsys.readouterr().out
    assert "already finished its 2 epochs" in out and "last (epoch 2, test)" in out
    assert (finished_run / "last.pt").stat().st_mtime_ns == before


def test_predict_new_images(finished_run: Path, tmp_path: Path, capsys):
    """balcon predict: folders searched recursively, files as given, one CSV row each."""
    folder = tmp_path / "new"
    (folder / "sub").mkdir(parents=True)
    for i, size in enumerate([(32, 32), (50, 40), (20, 30)]):
        Image.new("RGB", size, (40 * i, 90, 200)).save(folder / ("sub" if i else ".") /
                                                       f"img{i}.png")
    (folder / "notes.txt").write_text("not an image")
    single = tmp_path / "gray.jpg"
    Image.new("L", (32, 32), 128).save(single)
    out = tmp_path / "preds" / "p.csv"
    assert main(["predict", "--checkpoint", str(finished_run / "best.pt"), str(folder),
                 str(single), "--out", str(out), "--top-k", "3"]) == 0
    printed = capsys.readouterr().out
    assert printed.startswith("4 images; predicted classes:") and f"wrote {out}" in printed
    rows = list(csv.DictReader(out.open()))
    assert [Path(r["source"]).name for r in rows] == ["img0.png", "img1.png", "img2.png",
                                                      "gray.jpg"]
    names = load_checkpoint(finished_run / "best.pt")["class_names"]
    for row in rows:
        ranked = [item.split(":") for item in row["top_k"].split(";")]
        assert len(ranked) == 3 and ranked[0][0] == row["prediction_name"]
        assert names[int(row["prediction"])] == row["prediction_name"]
        assert float(ranked[0][1]) == pytest.approx(float(row["confidence"]), abs=1e-4)
    # the same image through eval's path gets the same scores
    from balcon.runs import predict_images

    again = predict_images(finished_run / "best.pt", [single], device="cpu")
    assert again.logits.shape == (1, 10) and again.labels.tolist() == [-1]
    probs, classes = again.logits.softmax(1)[0].topk(3)
    gray = [item.split(":") for item in rows[-1]["top_k"].split(";")]
    assert [name for name, _ in gray] == [names[int(k)] for k in classes]
    assert [float(p) for _, p in gray] == pytest.approx(probs.tolist(), abs=1e-4)


def test_predict_stops_at_an_unreadable_image_or_skips_it(finished_run: Path, tmp_path: Path,
                                                          capsys):
    folder = tmp_path / "photos"
    folder.mkdir()
    for i in range(3):
        Image.new("RGB", (32, 32), (60 * i, 90, 200)).save(folder / f"img{i}.png")
    (folder / "broken.jpg").write_bytes(b"\xff\xd8 not a jpeg")
    out = tmp_path / "p.csv"
    args = ["predict", "--checkpoint", str(finished_run / "best.pt"), str(folder), "--out",
            str(out)]
    assert main(args) == 2
    err = capsys.readouterr().err.strip()
    assert "broken.jpg" in err and "--skip-unreadable" in err and "\n" not in err
    assert not out.exists()
    assert main([*args, "--skip-unreadable"]) == 0
    printed, err = capsys.readouterr()
    assert printed.startswith("3 images (1 unreadable left out); predicted classes:")
    assert err.startswith(f"skipped {folder / 'broken.jpg'}: ")
    rows = list(csv.DictReader(out.open()))
    assert [Path(r["source"]).name for r in rows] == ["img0.png", "img1.png", "img2.png"]
    from balcon.runs import predict_images

    whole = predict_images(finished_run / "best.pt", [folder / f"img{i}.png" for i in range(3)])
    assert torch.equal(predict_images(finished_run / "best.pt", [folder],
                                      skip_unreadable=True).logits, whole.logits)
    only_bad = tmp_path / "bad"
    only_bad.mkdir()
    (only_bad / "x.png").write_bytes(b"nothing")
    assert main(["predict", "--checkpoint", str(finished_run / "best.pt"), str(only_bad),
                 "--skip-unreadable", "--out", str(out)]) == 2
    assert "none of the 1 images can be read" in capsys.readouterr().err


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the error without CUDA")
def test_cuda_device_without_cuda(finished_run: Path, capsys):
    assert main(["eval", "--checkpoint", str(finished_run / "best.pt"), "--device",
                 "cuda"]) == 2
    err = capsys.readouterr().err.strip()
    assert err == "balcon: error: --device cuda: CUDA is not available here; use --device cpu"


@pytest.mark.parametrize("make,words", [
    (lambda d: d / "missing", "does not exist"),
    (lambda d: d, "holds no image files"),
])
def test_predict_bad_inputs(finished_run: Path, tmp_path: Path, capsys, make, words):
    assert main(["predict", "--checkpoint", str(finished_run / "best.pt"),
                 str(make(tmp_path))]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("balcon: error:") and words in err and "\n" not in err


def test_old_checkpoint_configs_still_evaluate(finished_run: Path, tmp_path: Path):
    state = load_checkpoint(finished_run / "last.pt")
    state["config"]["optim"]["milestones"] = [160, 180]  # --set train.epochs=2 in balcon 0.1
    old = tmp_path / "old.pt"
    save_checkpoint(old, {k: v for k, v in state.items() if k != "format"})
    metrics, _ = evaluate_checkpoint(old, device="cpu")
    assert metrics["epoch"] == 2


def test_resume_finishes_a_report_cut_short(tmp_path: Path, cifar10_shared_root: Path, capsys):
    """Killed after the last checkpoint but before summary.json: resume writes the report."""
    run = tmp_path / "run"
    fit(tiny_config(), cifar10_shared_root, run)
    summary = json.loads((run / "summary.json").read_text())
    assert summary["finished"] is True
    (run / "summary.json").unlink()
    capsys.readouterr()
    assert main(["train", "--resume", str(run)]) == 0
    out = capsys.readouterr().out
    assert "already finished" not in out and "last (epoch 2, test)" in out
    again = json.loads((run / "summary.json").read_text())
    assert again == summary
    assert "finishing the report" in (run / "train.log").read_text()


def test_run_directory_in_its_first_epoch_is_not_reused(tmp_path: Path,
                                                         cifar10_shared_root: Path):
    """config.yaml + train.log without a "stopped:" line may be a run still going."""
    from balcon.errors import BalconError

    run = tmp_path / "run"
    run.mkdir()
    (run / "config.yaml").write_text("name: x\n")
    (run / "train.log").write_text("2026-11-28 02:00:00 run ...\n")
    with pytest.raises(BalconError, match="is not empty"):
        fit(tiny_config(), cifar10_shared_root, run)
    assert (run / "config.yaml").read_text() == "name: x\n"


# --- the learning-rate schedule, per batch in the warm-up -----------------------------


def test_lr_warmup_rises_every_step_then_steps_per_epoch():
    optim = load_preset("cifar10-lt-r100").optim  # lr 0.15, warm-up 5, x0.1 at 160, 180
    steps = 49  # CIFAR-10-LT r100 at batch 256
    assert lr_at(optim, 0, 200, 0, steps) == pytest.approx(0.15 / (5 * steps))
    assert lr_at(optim, 0, 200, 1, steps) == pytest.approx(0.15 * 2 / (5 * steps))
    # the end of the warm-up: the last step of epoch 4 reaches the base lr
    assert lr_at(optim, 4, 200, steps - 1, steps) == pytest.approx(0.15)
    assert lr_at(optim, 4, 200, steps - 2, steps) < 0.15
    # each warm-up epoch ends where the published per-epoch warm-up sets that epoch
    for e in range(5):
        assert lr_at(optim, e, 200, None, steps) == pytest.approx(0.15 * (e + 1) / 5)
        assert lr_at(optim, e, 200) == pytest.approx(0.15 * (e + 1) / 5)
    # after the warm-up, every step of an epoch shares one lr: the milestones
    assert [lr_at(optim, 5, 200, s, steps) for s in range(steps)] == [0.15] * steps
    assert lr_at(optim, 159, 200, 0, steps) == pytest.approx(0.15)
    assert lr_at(optim, 160, 200, 0, steps) == pytest.approx(0.015)
    assert lr_at(optim, 180, 200, 7, steps) == pytest.approx(0.0015)


def test_lr_cosine_end_value():
    optim = apply_overrides(load_preset("cifar10-lt-r100"), ["optim.schedule=cosine"]).optim
    assert lr_at(optim, 5, 200, 3, 49) == pytest.approx(0.15)
    end = 0.15 * 0.5 * (1 + math.cos(math.pi * 194 / 195))
    assert lr_at(optim, 199, 200, 48, 49) == pytest.approx(end)
    assert 0 < end < 1e-4
    no_warmup = apply_overrides(load_preset("imagenet-lt-resnet50"), [])
    assert lr_at(no_warmup.optim, 0, 90, 0, 100) == pytest.approx(no_warmup.optim.lr)


def test_compressed_schedule_keeps_a_warmup():
    from balcon.config import compress_schedule

    for epochs in (1, 2, 15, 50):
        optim = compress_schedule(load_preset("cifar10-lt-r100"), epochs).optim
        assert optim.warmup_epochs == 1
        # the first step no longer runs at the full lr: it rises over the first epoch
        assert lr_at(optim, 0, epochs, 0, 49) == pytest.approx(0.15 / 49)
        assert lr_at(optim, 0, epochs, 48, 49) == pytest.approx(0.15)


def test_train_log_prints_the_epochs_last_lr(tmp_path: Path, cifar10_shared_root: Path):
    cfg = tiny_config("optim.warmup_epochs=2", "train.eval_every=2")
    fit(cfg, cifar10_shared_root, tmp_path / "run")
    lines = [x for x in (tmp_path / "run" / "train.log").read_text().splitlines()
             if " epoch 1/2 lr " in x or " epoch 2/2 lr " in x]
    lrs = [float(x.split(" lr ")[1].split()[0]) for x in lines]
    assert lrs == pytest.approx([cfg.optim.lr / 2, cfg.optim.lr], rel=1e-3)


def test_checkpoints_of_balcon_02_evaluate_and_resume(finished_run: Path, tmp_path: Path):
    """A 0.2 checkpoint's config lacks model.shortcut, model.conv_init and data.cutout_fill:
    it loads with the published defaults (A, kaiming, black), evaluates and resumes."""
    data_dir = load_checkpoint(finished_run / "last.pt")["data_dir"]
    cut = tmp_path / "cut"
    fit(tiny_config(), data_dir, cut, stop_after=1)
    state = load_checkpoint(cut / "last.pt")
    for section, key in (("model", "shortcut"), ("model", "conv_init"), ("data", "cutout_fill")):
        del state["config"][section][key]
    state["balcon_version"] = "0.2.0"
    save_checkpoint(cut / "last.pt", {k: v for k, v in state.items() if k != "format"})
    metrics, _ = evaluate_checkpoint(cut / "last.pt", device="cpu")
    assert metrics["epoch"] == 1
    assert main(["train", "--resume", str(cut)]) == 0
    assert_same_weights(weights(cut), weights(finished_run))


def test_logged_loss_and_train_acc_are_means_over_images(tmp_path: Path,
                                                         cifar10_shared_root: Path,
                                                         monkeypatch):
    """An epoch's logged losses and train-acc weigh each step by its images (the last
    batch is smaller), as counted here from every step's own outputs."""
    import balcon.engine.loop as loop

    steps = []

    def recording(model, images, labels, *args, **kwargs):
        losses, correct = real(model, images, labels, *args, **kwargs)
        steps.append((len(labels), [None if x is None else float(x.detach()) for x in losses],
                      int(correct)))
        return losses, correct

    real = loop.train_step
    monkeypatch.setattr(loop, "train_step", recording)
    fit(tiny_config(epochs=1), cifar10_shared_root, tmp_path / "run", device="cpu")
    record = json.loads((tmp_path / "run" / "metrics.jsonl").read_text().splitlines()[0])
    sizes = {n for n, _, _ in steps}
    assert len(sizes) == 2  # full batches and a smaller last one: weights matter
    images = sum(n for n, _, _ in steps)
    for i, key in enumerate(("loss", "loss_cls", "loss_con")):
        mean = sum(n * losses[i] for n, losses, _ in steps) / images
        assert record[key] == pytest.approx(mean, rel=1e-5), key
        unweighted = sum(losses[i] for _, losses, _ in steps) / len(steps)
        assert record[key] != pytest.approx(unweighted, rel=1e-7), key
    assert record["train_acc"] == pytest.approx(100 * sum(c for _, _, c in steps) / images)
