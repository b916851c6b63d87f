"""Hostile files: a pickle that would run code when loaded never runs it (issue 12, item 4).

Every checkpoint balcon reads goes through ``torch.load(weights_only=True)``; these tests
hand a booby-trapped file to each place that reads one and check that its payload (it
would write a file) never ran, and that the answer is one line with exit status 2.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from helpers import run_error

from balcon.cli import main
from balcon.runs import load_checkpoint


class Payload:
    """Unpickling this writes ``target``: what a malicious checkpoint would do."""

    def __init__(self, target: Path) -> None:
        self.target = target

    def __reduce__(self):
        return (Path.write_text, (self.target, "pwned"))


def trap(path: Path, target: Path) -> Path:
    torch.save({"format": "balcon-checkpoint-1", "model": Payload(target), "epoch": 1}, path)
    return path


@pytest.mark.parametrize("how", ["eval", "predict", "resume", "pretrained"])
def test_a_malicious_pickle_never_runs(capsys, tmp_path: Path, image_folder_root: Path, how):
    target = tmp_path / "pwned.txt"
    ckpt = trap(tmp_path / "evil.pt", target)
    if how == "eval":
        args = ["eval", "--checkpoint", str(ckpt)]
    elif how == "predict":
        args = ["predict", "--checkpoint", str(ckpt), str(image_folder_root / "test")]
    elif how == "resume":
        run = tmp_path / "run"
        run.mkdir()
        trap(run / "last.pt", target)
        args = ["train", "--resume", str(run)]
    else:
        args = ["train", "--preset", "imagefolder-r32", "--data-dir", str(image_folder_root),
                "--out", str(tmp_path / "new"), "--epochs", "1",
                "--set", f"model.pretrained={ckpt}", "--set", "model.encoder=resnet8"]
    err = run_error(capsys, args)
    assert not target.exists(), "the payload ran"
    assert "evil.pt" in err or "last.pt" in err


@pytest.mark.parametrize("errno_", [28, 30, 13])  # ENOSPC, EROFS, EACCES
def test_a_failed_write_stops_in_one_line_and_keeps_what_was_written(
        monkeypatch, capsys, tmp_path: Path, errno_: int):
    """The disk fills (or turns read-only) at the second epoch's checkpoint: one line
    naming the file and the reason, status 2; epoch 1's last.pt is intact."""
    import os

    import balcon.runs.checkpoint as ckpt
    from balcon.runs import load_checkpoint

    real, calls = torch.save, {"n": 0}

    def failing(obj, f, *a, **k):
        calls["n"] += 1
        if calls["n"] == 3:  # epoch 1 wrote best.pt and last.pt
            raise OSError(errno_, os.strerror(errno_))
        return real(obj, f, *a, **k)

    monkeypatch.setattr(ckpt.torch, "save", failing)
    run = tmp_path / "run"
    err = run_error(capsys, [
        "train", "--preset", "digits-lt-demo", "--epochs", "2", "--out", str(run),
        "--set", "model.head_hidden=16", "--set", "model.head_dim=8",
        "--set", "train.eval_every=1"])
    assert f"cannot write {run}/" in err and os.strerror(errno_) in err
    monkeypatch.undo()
    assert load_checkpoint(run / "last.pt")["epoch"] == 1
    assert not list(run.glob(".*.tmp"))
    assert "stopped: cannot write" in (run / "train.log").read_text()


def test_bad_images_are_skipped_named_and_counted(tmp_path: Path, image_folder_root: Path):
    """data.on_bad_image=skip: a corrupt, a zero-byte and a text file named .png are
    skipped, named once in the log, and counted; the class counts are those trained on;
    more than data.max_bad_images stops in one line."""
    import json

    train = image_folder_root / "train"
    (train / "a" / "0.png").write_bytes(b"\x89PNG broken")
    (train / "a" / "1.png").write_bytes(b"")
    (train / "b" / "0.png").write_text("not an image")
    (image_folder_root / "test" / "c" / "0.png").write_bytes(b"")
    run = tmp_path / "run"
    base = ["train", "--preset", "imagefolder-r32", "--data-dir", str(image_folder_root),
            "--epochs", "1", "--set", "model.encoder=resnet8", "--set", "train.batch_size=4",
            "--set", "data.on_bad_image=skip"]
    assert main([*base, "--out", str(run), "--set", "data.max_bad_images=3"]) == 0
    log = (run / "train.log").read_text()
    assert sum("a/0.png" in line for line in log.splitlines()) == 1  # named once
    assert "skipped 3 unreadable train images" in log
    assert "skipped 1 unreadable test images" in log and "(1 unreadable images skipped)" in log
    summary = json.loads((run / "summary.json").read_text())
    assert summary["skipped_images"] == {"train": 3, "test": 1}
    assert load_checkpoint(run / "last.pt")["class_counts"] == [2, 2, 2]  # 4-2, 3-1, 2
    record = json.loads((run / "metrics.jsonl").read_text())
    assert record["skipped_images"] == 1
    assert main([*base, "--out", str(tmp_path / "limit")]) == 2  # default limit: 1


def test_a_failed_log_write_stops_in_one_line(monkeypatch, capsys, tmp_path: Path):
    """train.log on a full disk: logging alone would print a traceback and go on."""
    from balcon.runs import files as rd

    real_emit, calls = rd._LogFile.emit, {"n": 0}

    def emit(self, record):
        calls["n"] += 1
        if calls["n"] < 4:
            return real_emit(self, record)
        try:
            raise OSError(28, "No space left on device")
        except OSError:
            self.handleError(record)

    monkeypatch.setattr(rd._LogFile, "emit", emit)
    run = tmp_path / "run"
    err = run_error(capsys, [
        "train", "--preset", "digits-lt-demo", "--epochs", "2", "--out", str(run),
        "--set", "model.head_hidden=16", "--set", "model.head_dim=8"])
    assert f"cannot write {run / 'train.log'} (No space left on device)" in err
