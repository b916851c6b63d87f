"""The command line: presets, and one-line errors with exit status 2 for bad input."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from helpers import run_error
from PIL import Image

from balcon.cli import main
from balcon.errors import BalconError


def test_presets_list_and_show(capsys):
    assert main(["presets"]) == 0
    lines = capsys.readouterr().out.splitlines()
    listed = {line.split()[0]: line.split()[1:] for line in lines if not line.startswith(" ")}
    assert len(listed) == 19
    assert listed["cifar100-lt-r100-400ep"] == ["base:", "cifar100-lt-r100"]
    assert listed["cifar10-lt-r100"] == ["(root)"]
    # each preset's summary follows it, with the paper's figure for the paper's rows
    at = lines.index(next(line for line in lines if line.startswith("cifar100-lt-r50 ")))
    assert lines[at + 1] == ("    CIFAR-100-LT, imbalance 50, ResNet-32, BCL, 200 epochs; "
                             "paper: 56.6 top-1.")
    for name in ("cifar10-lt-r50", "show cifar10-lt-r50"):  # a bare name shows it too
        assert main(["presets", *name.split()]) == 0
        shown = capsys.readouterr().out
        assert "imbalance: 50.0" in shown and "lr: 0.15" in shown  # the parent's field too
        assert "# Resolved: cifar10-lt-r50 <- cifar10-lt-r100 <- balcon's defaults" in shown


def test_output_into_a_closed_pipe_stops_quietly():
    """`balcon presets | head -1`: no traceback when the reader stops reading."""
    read_end, write_end = os.pipe()
    os.close(read_end)  # the reader has gone before the first line
    try:
        proc = subprocess.run([sys.executable, "-m", "balcon", "presets"], stdout=write_end,
                              stderr=subprocess.PIPE, timeout=120)
    finally:
        os.close(write_end)
    assert proc.returncode == 141 and proc.stderr.decode() == ""


def test_unknown_preset(capsys):
    assert "unknown preset 'cifar10-lt-r99'" in run_error(
        capsys, ["presets", "show", "cifar10-lt-r99"])
    assert "balcon presets" in run_error(
        capsys, ["train", "--preset", "cifar10-lt-r99", "--data-dir", "."])


def test_missing_data_folder(capsys, tmp_path: Path):
    missing = tmp_path / "nowhere"
    err = run_error(capsys, ["train", "--preset", "cifar10-lt-r100", "--data-dir", str(missing),
                             "--out", str(tmp_path / "run")])
    assert str(missing) in err and "--download" in err
    assert not (tmp_path / "run").exists()  # refused before the run directory is made
    assert main(["train", "--preset", "cifar10-lt-r100", "--data-dir", str(missing),
                 "--epochs", "2"]) == 2
    assert "note:" not in capsys.readouterr().out  # the short-BCL note only for a run that starts
    err = run_error(capsys, ["train", "--preset", "imagefolder-r32", "--data-dir", str(missing),
                             "--out", str(tmp_path / "run"), "--seeds", "0", "1"])
    assert str(missing) in err and "--download" not in err
    assert not (tmp_path / "run").exists()
    # a folder that exists but holds no CIFAR: the config is written first (a run
    # directory can always be resumed); a run that never trained leaves its directory
    # free for the corrected command
    empty = tmp_path / "empty"
    empty.mkdir()
    for _ in range(2):
        err = run_error(capsys, ["train", "--preset", "cifar10-lt-r100", "--data-dir",
                                 str(empty), "--out", str(tmp_path / "run")])
        assert str(empty) in err and "not empty" not in err
        names = {p.name for p in (tmp_path / "run").iterdir()}
        assert names <= {"config.yaml", "run.json", "train.log", ".lock"}


def test_unknown_encoder_is_refused_before_the_run_directory(capsys, tmp_path: Path):
    for encoder, said in (("resnet7", "is unknown"), ("timm:no_such_model", "timm")):
        err = run_error(capsys, ["train", "--preset", "digits-lt-demo", "--out",
                                 str(tmp_path / "run"), "--set", f"model.encoder={encoder}"])
        assert f"model.encoder '{encoder}'" in err and said in err
    err = run_error(capsys, ["train", "--preset", "digits-lt-demo", "--out", str(tmp_path / "run"),
                             "--set", "model.encoder=resnet50", "--set", "model.shortcut=B"])
    assert "model.shortcut" in err
    assert not (tmp_path / "run").exists()


def test_bad_override_key_and_value(capsys, tmp_path: Path):
    base = ["train", "--preset", "cifar10-lt-r100", "--data-dir", str(tmp_path)]
    assert "optim.lrate" in run_error(capsys, [*base, "--set", "optim.lrate=0.1"])
    assert "optim.lr must be a number" in run_error(capsys, [*base, "--set", "optim.lr=x"])
    assert "train.epochs" in run_error(capsys, [*base, "--set", "train.epochs=0"])


def test_unreadable_and_foreign_checkpoints(capsys, tmp_path: Path):
    garbage = tmp_path / "garbage.pt"
    garbage.write_bytes(b"not a checkpoint at all")
    assert "garbage.pt is unreadable" in run_error(capsys, ["eval", "--checkpoint",
                                                            str(garbage)])
    foreign = tmp_path / "foreign.pt"
    torch.save({"state_dict": {"w": torch.zeros(2)}}, foreign)
    assert "not a balcon-checkpoint" in run_error(capsys, ["eval", "--checkpoint", str(foreign)])
    assert "does not exist" in run_error(capsys, ["eval", "--checkpoint",
                                                  str(tmp_path / "none.pt")])


def test_resume_needs_a_run_directory(capsys, tmp_path: Path):
    assert "no last.pt" in run_error(capsys, ["train", "--resume", str(tmp_path)])


def test_existing_run_directory_is_not_overwritten(capsys, tmp_path: Path,
                                                   cifar10_shared_root: Path):
    run = tmp_path / "run"
    run.mkdir()
    (run / "notes.txt").write_text("keep me")
    err = run_error(capsys, ["train", "--preset", "cifar10-lt-r100", "--data-dir",
                             str(cifar10_shared_root), "--out", str(run)])
    assert "not empty" in err and "--resume" in err and "with --continue" in err
    err = run_error(capsys, ["demo", "--out", str(run)])
    assert "not empty" in err and f"balcon train --resume {run}" in err
    assert "--continue" not in err  # balcon demo has no --continue
    assert (run / "notes.txt").read_text() == "keep me"


def test_corrupt_image_on_the_device_pipeline(capsys, tmp_path: Path, image_folder_root: Path):
    """The device pipeline decodes every image before training: the error names the file,
    the run directory holds only its config and a log that ends with the error, and the
    same --out works once it is fixed."""
    bad = image_folder_root / "train" / "b" / "1.png"
    bad.write_bytes(b"\x89PNG broken")
    args = ["train", "--preset", "imagefolder-r32", "--data-dir", str(image_folder_root),
            "--out", str(tmp_path / "run"), "--set", "model.encoder=resnet8", "--epochs", "1",
            "--set", "data.pipeline=device", "--set", "train.batch_size=8"]
    err = run_error(capsys, args)
    assert "1.png" in err and "replace or remove" in err
    assert {p.name for p in (tmp_path / "run").iterdir()} <= {"config.yaml", "run.json",
                                                              ".lock", "train.log"}
    last_line = (tmp_path / "run" / "train.log").read_text().strip().splitlines()[-1]
    assert " stopped: " in last_line and "1.png" in last_line
    Image.new("RGB", (40, 36)).save(bad)
    (image_folder_root / "notes").mkdir()  # a folder balcon does not read: the log says so
    assert main(args) == 0
    log = (tmp_path / "run" / "train.log").read_text()
    assert "training views: device pipeline" in log and "not read: notes/ beside train/" in log


def test_corrupt_image_during_training(capsys, tmp_path: Path, image_folder_root: Path):
    bad = image_folder_root / "train" / "a" / "0.png"
    bad.write_bytes(b"\x89PNG broken")
    err = run_error(capsys, [
        "train", "--preset", "cifar10-lt-r100", "--data-dir", str(image_folder_root),
        "--out", str(tmp_path / "run"), "--set", "data.dataset=imagefolder",
        "--set", "data.imbalance=null", "--set", "model.encoder=resnet8",
        "--epochs", "1", "--set", "data.num_workers=1", "--set", "data.pipeline=workers"])
    assert "0.png" in err and "replace or remove" in err
    # the run stopped before its first checkpoint: its log says why, and the same --out
    # can be used again once the image is fixed
    assert "stopped: cannot read image" in (tmp_path / "run" / "train.log").read_text()
    Image.new("RGB", (40, 36)).save(bad)
    assert main([
        "train", "--preset", "cifar10-lt-r100", "--data-dir", str(image_folder_root),
        "--out", str(tmp_path / "run"), "--set", "data.dataset=imagefolder",
        "--set", "data.imbalance=null", "--set", "model.encoder=resnet8",
        "--epochs", "1", "--set", "data.num_workers=0"]) == 0
    assert (tmp_path / "run" / "last.pt").is_file()
    # BCL cut to 1 of the preset's 200 epochs: the command says LA is stronger there
    assert "note: 1 of the planned 200 epochs" in capsys.readouterr().out


def test_short_schedule_note_only_for_bcl_from_scratch_cut_short():
    from balcon.cli_train import short_schedule_note
    from balcon.config import apply_overrides, compress_schedule, load_preset

    cfg = load_preset("cifar100-lt-r100")
    short = compress_schedule(cfg, 15)
    note = short_schedule_note(200, short)
    assert note.startswith("note: 15 of the planned 200 epochs") and "loss.method=la" in note
    assert short_schedule_note(200, cfg) is None  # the full schedule
    assert short_schedule_note(200, apply_overrides(short, ["loss.method=la"])) is None
    assert short_schedule_note(200, apply_overrides(short, ["model.pretrained=w.pth"])) is None


def test_fp16_on_cpu_is_refused(capsys, tmp_path: Path, cifar10_shared_root: Path):
    err = run_error(capsys, ["train", "--preset", "cifar10-lt-r100", "--data-dir",
                             str(cifar10_shared_root), "--out", str(tmp_path / "run"),
                             "--device", "cpu", "--set", "train.precision=fp16",
                             "--set", "model.encoder=resnet8"])
    assert "fp16 needs CUDA" in err


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message without CUDA")
def test_out_is_a_file(capsys, tmp_path: Path, cifar10_shared_root: Path):
    out = tmp_path / "file.txt"
    out.write_text("keep")
    err = run_error(capsys, ["train", "--preset", "cifar10-lt-r100", "--data-dir",
                             str(cifar10_shared_root), "--out", str(out)])
    assert "is a file" in err and out.read_text() == "keep"


def test_version(capsys):
    import balcon

    with pytest.raises(SystemExit) as stop:
        main(["--version"])
    assert stop.value.code == 0
    assert capsys.readouterr().out.strip() == f"balcon {balcon.__version__}"


def test_outputs_never_replace_an_input_a_run_file_or_another_kind_of_file(capsys,
                                                                          tmp_path: Path):
    """eval, predict and export refuse, before any work, an --out or --predictions that
    would overwrite the checkpoint, an input image, or a run's own files."""
    run = tmp_path / "run"
    run.mkdir()
    kept = {run / name: name.encode() for name in ("last.pt", "best.pt", "config.yaml",
                                                   "summary.json")}
    image = tmp_path / "cat.png"
    kept[image] = b"an image"
    for path, data in kept.items():
        path.write_bytes(data)
    broken = tmp_path / "broken"
    broken.symlink_to(tmp_path / "nowhere")  # a link to nothing is no folder
    link = tmp_path / "e.json"
    link.symlink_to(run / "best.pt")  # followed: its target is checked
    taken = tmp_path / "taken"
    (taken / "last-eval.json").mkdir(parents=True)  # the default name inside is a folder
    ckpt = str(run / "last.pt")
    cases = [
        (["eval", "--checkpoint", ckpt, "--out", ckpt], "is an input of this command"),
        (["eval", "--checkpoint", ckpt, "--out", str(run / "best.pt")], "is a run's best.pt"),
        (["eval", "--checkpoint", ckpt, "--out", str(run / "summary.json")],
         "is a run's summary.json"),
        (["eval", "--checkpoint", ckpt, "--predictions", str(run / "config.yaml")],
         "is a run's config.yaml"),
        (["predict", "--checkpoint", ckpt, str(image), "--out", str(image)],
         "exists and is not a .csv file"),
        (["export", "--checkpoint", ckpt, "--format", "torchscript", "--out",
          str(run / "best.pt")], "is a run's best.pt"),
        (["export", "--checkpoint", ckpt, "--format", "torchscript", "--out", ckpt],
         "is an input of this command"),
        (["eval", "--checkpoint", ckpt, "--out", str(image / "new" / "e.json")],
         f"{image} is not a folder"),
        (["export", "--checkpoint", ckpt, "--format", "onnx", "--out",
          str(image / "m.onnx")], f"{image} is not a folder"),
        (["eval", "--checkpoint", ckpt, "--out", str(broken / "e.json")],
         f"{broken} is not a folder"),
        (["eval", "--checkpoint", ckpt, "--out", str(link)], "is a run's best.pt"),
        (["eval", "--checkpoint", ckpt, "--out", str(taken)], "is a folder"),
        (["eval", "--checkpoint", ckpt, "--out", str(tmp_path / "same.json"),
          "--predictions", str(tmp_path / "same.json")], "is also the --out file"),
    ]
    for args, culprit in cases:
        err = run_error(capsys, args)
        flag = "--predictions" if "--predictions" in args else "--out"
        assert culprit in err and f"choose another {flag}" in err, (args, err)
    assert all(path.read_bytes() == data for path, data in kept.items())


def test_resume_passes_download_on(monkeypatch, tmp_path: Path):
    """`train --resume DIR --download` fetches CIFAR when it is absent, as a new run does."""
    import balcon.runs

    seen = {}

    def fake_resume(run_dir, data_dir=None, device=None, download=False):
        seen.update(run_dir=run_dir, download=download)
        raise BalconError("stop here")

    monkeypatch.setattr(balcon.runs, "resume", fake_resume)
    assert main(["train", "--resume", str(tmp_path), "--download", "--device", "cpu"]) == 2
    assert seen == {"run_dir": str(tmp_path), "download": True}


@pytest.mark.parametrize("args", [["train", "--preset", "x", "--epochs", "1.5"],
                                  ["export", "--checkpoint", "a.pt"], ["bogus"],
                                  ["eval", "--checkpoint", "a.pt", "--download"]])
def test_usage_errors_are_one_line_with_exit_status_2(capsys, args: list[str]):
    with pytest.raises(SystemExit) as stop:
        main(args)
    err = capsys.readouterr().err
    assert stop.value.code == 2 and err.count("\n") == 1 and "--help)" in err, err


def test_an_argument_a_command_lacks_points_at_its_help(capsys):
    with pytest.raises(SystemExit) as stop:
        main(["demo", "--set", "train.epochs=3"])
    err = capsys.readouterr().err
    assert stop.value.code == 2
    assert err == ("balcon: error: unrecognized arguments: --set train.epochs=3 "
                   "(see balcon demo --help)\n")


def test_data_dir_is_refused_for_the_bundled_digits(capsys, tmp_path: Path):
    """A --data-dir given to a digits run is refused before anything is written (it would
    be ignored); one stored by an older run is ignored."""
    from balcon.config import apply_overrides, compress_schedule
    from balcon.presets import load_preset
    from balcon.runs import evaluate_checkpoint, fit, load_checkpoint, save_checkpoint

    out = tmp_path / "out"
    err = run_error(capsys, ["train", "--preset", "digits-lt-demo", "--data-dir", str(tmp_path),
                             "--out", str(out), "--epochs", "1"])
    assert "bundled with scikit-learn" in err and "drop --data-dir" in err
    assert not out.exists()
    cfg = apply_overrides(compress_schedule(load_preset("digits-lt-demo"), 1),
                          ["model.head_hidden=16", "model.head_dim=8", "data.num_workers=0"])
    run = tmp_path / "run"
    fit(cfg, None, run, device="cpu")
    ckpt = run / "last.pt"
    err = run_error(capsys, ["eval", "--checkpoint", str(ckpt), "--data-dir", str(tmp_path)])
    assert "drop --data-dir" in err and not (run / "last-eval.json").exists()
    state = load_checkpoint(ckpt)
    state["data_dir"] = str(tmp_path / "gone")  # as a run trained with a --data-dir stored it
    save_checkpoint(ckpt, state)
    metrics, _ = evaluate_checkpoint(ckpt, device="cpu")  # the bundled digits, as trained
    recorded = json.loads((run / "metrics.jsonl").read_text().splitlines()[-1])
    assert metrics["top1"] == pytest.approx(recorded["top1"])


@pytest.mark.parametrize("command,again", [
    ("train", "run the same command again (--continue resumes a run directory)"),
    ("demo", "run balcon demo again"),  # demo has no --continue
])
def test_a_stop_before_training_says_what_to_run(command: str, again: str):
    import signal

    from balcon.cli import _stop_on_signals_until_training
    from balcon.errors import Preempted

    previous = _stop_on_signals_until_training(command)
    try:
        with pytest.raises(Preempted) as stop:
            signal.getsignal(signal.SIGUSR1)(signal.SIGUSR1, None)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    assert str(stop.value) == f"preempted (SIGUSR1) before training; {again}"
