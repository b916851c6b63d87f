"""Long runs on clusters: preemption signals, mid-epoch resume, kill -9, requeue, one writer.

Every interrupted run is resumed and must end with the uninterrupted run's weights, bit
for bit (CPU). The reference runs are the tiny digits run of ``tiny`` below.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from helpers import assert_same_weights, run_error

from balcon.cli import main
from balcon.config import apply_overrides, compress_schedule
from balcon.errors import BalconError, Preempted
from balcon.presets import load_preset
from balcon.runs import fit, load_checkpoint, resume
from balcon.runs.files import RunLock
from balcon.runs.keeper import RunKeeper
from balcon.runs.preempt import StepControl

#: A small digits run: 2 epochs of 17 steps (batch 32), evaluation every epoch.
SMALL = ["model.head_hidden=16", "model.head_dim=8", "train.eval_every=1",
         "data.num_workers=0", "train.batch_size=32"]


def tiny(*extra: str, epochs: int = 2):
    return apply_overrides(compress_schedule(load_preset("digits-lt-demo"), epochs),
                           [*SMALL, *extra])


def args_of(cfg_extra: list[str], run: Path, epochs: int = 2) -> list[str]:
    """``balcon train`` arguments of ``tiny(*cfg_extra)`` into ``run``."""
    out = ["train", "--preset", "digits-lt-demo", "--epochs", str(epochs), "--out", str(run),
           "--device", "cpu"]
    for item in (*SMALL, *cfg_extra):
        out += ["--set", item]
    return out


def weights(run: Path) -> dict[str, torch.Tensor]:
    return load_checkpoint(run / "last.pt")["model"]


@pytest.fixture(scope="module")
def reference_runs(tmp_path_factory) -> Path:
    """Uninterrupted runs, one per pipeline: ``ROOT/workers`` and ``ROOT/device``."""
    root = tmp_path_factory.mktemp("reference")
    for pipeline in ("workers", "device"):
        fit(tiny(f"data.pipeline={pipeline}"), None, root / pipeline, device="cpu")
    return root


@pytest.fixture(scope="module")
def reference(reference_runs: Path) -> dict[str, dict[str, torch.Tensor]]:
    """Uninterrupted runs' final weights, per pipeline."""
    return {pipeline: weights(reference_runs / pipeline) for pipeline in ("workers", "device")}


def test_both_pipelines_train_the_demo(reference_runs: Path):
    """The views come from the pipeline asked for, and each run finishes."""
    for pipeline in ("workers", "device"):
        summary = json.loads((reference_runs / pipeline / "summary.json").read_text())
        assert summary["finished"] and summary["last"]["epoch"] == 2
        log = (reference_runs / pipeline / "train.log").read_text()
        assert f"training views: {pipeline} pipeline" in log


def stop_at(monkeypatch, poll: int, due_at: int | None = None) -> None:
    """Make the ``poll``-th step-boundary check ask to stop (as a signal would), and the
    ``due_at``-th ask for a checkpoint by the clock."""
    count = {"n": 0}

    def fake(self: StepControl) -> tuple[bool, bool]:
        count["n"] += 1
        if count["n"] == poll:
            self.signal = signal.SIGTERM
        return self.signal is not None, count["n"] == due_at

    monkeypatch.setattr(StepControl, "poll", fake)


@pytest.mark.parametrize("pipeline,poll", [
    ("workers", 7),   # mid-epoch 1: the data loader then skips 7 batches
    ("device", 17),   # after epoch 1's last step (17 of 17): nothing left but to evaluate
    ("device", 24),   # later: in epoch 2 or its evaluation
    ("workers", 0),   # 0: during epoch 1's evaluation (the training part done)
])
def test_preempted_run_resumes_bit_exactly(monkeypatch, tmp_path: Path, reference, pipeline,
                                           poll):
    run = tmp_path / "run"
    if poll:
        stop_at(monkeypatch, poll)
    else:
        real = RunKeeper.evaluating

        def stop_now(keeper: RunKeeper, *args) -> None:  # a signal during the evaluation
            keeper.control.poll = lambda: (True, False)
            real(keeper, *args)

        monkeypatch.setattr(RunKeeper, "evaluating", stop_now)
    with pytest.raises(Preempted, match="preempted at epoch"):
        fit(tiny(f"data.pipeline={pipeline}"), None, run, device="cpu")
    assert "stopped: preempted at epoch" in (run / "train.log").read_text()
    state = load_checkpoint(run / "last.pt")
    assert state.get("step") or "epoch_stats" in state
    assert ("epoch_stats" in state) == (poll == 0)
    monkeypatch.undo()
    resume(run, device="cpu")
    assert_same_weights(weights(run), reference[pipeline])
    records = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in records] == [1, 2]


def test_checkpoint_by_the_clock_then_a_crash(monkeypatch, tmp_path: Path, reference):
    """A mid-epoch last.pt written by the clock is resumable after a crash."""
    run = tmp_path / "run"
    count = {"n": 0}

    def fake(self: StepControl) -> tuple[bool, bool]:
        count["n"] += 1
        if count["n"] == 12:
            raise RuntimeError("the machine died")
        return False, count["n"] == 10

    monkeypatch.setattr(StepControl, "poll", fake)
    with pytest.raises(RuntimeError):
        fit(tiny("data.pipeline=device"), None, run, device="cpu")
    assert load_checkpoint(run / "last.pt")["step"] == 10
    monkeypatch.undo()
    resume(run, device="cpu")
    assert_same_weights(weights(run), reference["device"])


def test_signals_stop_with_status_75_and_resume(tmp_path: Path, reference):
    """SIGTERM, SIGINT and SIGUSR1, each to a real ``balcon train`` (run side by side):
    each stops within seconds with status 75, its log saying where; ``--resume`` of one
    ends where the uninterrupted run ends."""
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    sigs = (signal.SIGTERM, signal.SIGINT, signal.SIGUSR1)
    runs = {sig: tmp_path / signal.Signals(sig).name for sig in sigs}
    procs = {sig: subprocess.Popen([sys.executable, "-m", "balcon", *args_of(
        ["data.pipeline=device"], run)], env=env, stderr=subprocess.PIPE, text=True)
        for sig, run in runs.items()}
    sent: dict[int, float] = {}
    ended: dict[int, float] = {}
    deadline = time.monotonic() + 180
    while len(ended) < len(procs):  # signal each as soon as its epoch 1 is done
        for sig, proc in procs.items():
            log = runs[sig] / "train.log"
            if sig not in sent and log.exists() and "epoch 1/2" in log.read_text():
                proc.send_signal(sig)
                sent[sig] = time.monotonic()
            if proc.poll() is not None and sig not in ended:
                assert sig in sent, "the run ended before its signal"
                ended[sig] = time.monotonic()
        assert time.monotonic() < deadline
        time.sleep(0.02)
    for sig, proc in procs.items():
        err = proc.stderr.read()
        assert ended[sig] - sent[sig] < 10
        assert proc.returncode == 75, err
        assert err.strip().splitlines()[-1].startswith("balcon: stopped: preempted")
        assert "stopped: preempted at epoch" in (runs[sig] / "train.log").read_text()
    run = runs[signal.SIGTERM]
    assert main(["train", "--resume", str(run), "--device", "cpu"]) == 0
    assert_same_weights(weights(run), reference["device"])


def _stamp(path: Path) -> tuple[int, int] | None:
    try:
        st = path.stat()
    except FileNotFoundError:
        return None
    return st.st_ino, st.st_mtime_ns


def _wait_for(condition, pid: int, limit: float = 60.0) -> bool:
    """Poll ``condition()`` until true (True) or until the child ``pid`` ends (False)."""
    deadline = time.monotonic() + limit
    while not condition():
        if os.waitpid(pid, os.WNOHANG)[0]:
            return False
        assert time.monotonic() < deadline
        time.sleep(0.01)
    return True


def test_kill_9_anywhere(tmp_path: Path, reference):
    """SIGKILL until the run ends (at least 10 times), resuming after each: before the
    first checkpoint, inside a checkpoint write, and just after each new checkpoint (in
    a step, an evaluation or the next write); the run ends with the uninterrupted run's
    weights. Children are forked from this process, which has torch loaded, so a
    restart is quick."""
    run = tmp_path / "run"
    rng = random.Random(0)
    args = args_of(["data.pipeline=device", "train.checkpoint_minutes=0.002"], run)
    moments: list[str] = []
    while True:
        kill = len(moments)
        before = _stamp(run / "last.pt")
        slow_write = kill == 3
        pid = os.fork()
        if pid == 0:  # the child: train (or resume) and exit with its status
            if slow_write:
                _slow_checkpoint_writes()
            fresh = not (run / "config.yaml").exists()
            os._exit(main(args if fresh else ["train", "--resume", str(run), "--device", "cpu"]))
        if kill == 0:  # before any checkpoint
            time.sleep(rng.uniform(0.05, 0.3))
            moment = "before the first checkpoint"
        elif slow_write:  # inside a checkpoint write: its temporary file exists
            assert _wait_for(lambda: any(run.glob(".last.pt.*.tmp")), pid)
            moment = "inside a checkpoint write"
        else:  # just after a new checkpoint, in a step, an evaluation or the next write
            alive = _wait_for(lambda b=before: _stamp(run / "last.pt") != b, pid)
            if not alive:  # the run ended
                break
            time.sleep(rng.uniform(0.0, 0.1))
            moment = "after a new checkpoint"
        os.kill(pid, signal.SIGKILL)
        _, status = os.waitpid(pid, 0)
        if os.WIFEXITED(status):  # it ended just before the kill
            assert os.waitstatus_to_exitcode(status) == 0
            break
        moments.append(moment)
        assert len(moments) < 60
    assert len(moments) >= 10, moments
    assert moments[0] == "before the first checkpoint"
    assert "inside a checkpoint write" in moments
    main(["train", "--resume", str(run), "--device", "cpu"])  # finished already, or ends it
    assert_same_weights(weights(run), reference["device"])
    summary = json.loads((run / "summary.json").read_text())
    assert summary["finished"] and summary["epochs_run"] == 2


def _slow_checkpoint_writes() -> None:
    """Make every checkpoint write pause halfway (a kill then lands inside a write)."""
    import balcon.runs.checkpoint as ckpt

    real = torch.save

    def slow(obj, f, *a, **k):
        real(obj, f, *a, **k)
        f.flush()
        time.sleep(0.3)  # the temporary file is written, not yet renamed

    ckpt.torch.save = slow  # type: ignore[attr-defined]


def test_one_writer_per_run(tmp_path: Path):
    run = tmp_path / "run"
    run.mkdir()
    lock = RunLock(run)
    with pytest.raises(BalconError, match=f"is in use by process {os.getpid()} on "):
        RunLock(run)
    assert main(args_of([], run)) == 2  # also through the command line
    lock.release()
    child = subprocess.Popen([sys.executable, "-c", (
        "import sys, time; from pathlib import Path; from balcon.runs.files import RunLock;"
        f" lock = RunLock(Path({str(run)!r})); print('locked', flush=True); time.sleep(60)")],
        stdout=subprocess.PIPE, text=True)
    assert child.stdout.readline().strip() == "locked"
    with pytest.raises(BalconError, match=f"process {child.pid} on"):
        RunLock(run)
    child.kill()
    child.wait()
    RunLock(run).release()  # a dead holder's lock never blocks


def test_continue_requeues_the_same_command(tmp_path: Path, reference, capsys):
    run = tmp_path / "run"
    command = [*args_of(["data.pipeline=device"], run), "--continue"]
    assert main(command) == 0  # new: starts
    assert_same_weights(weights(run), reference["device"])
    assert main(command) == 0  # finished: nothing to do
    assert "already finished" in capsys.readouterr().out
    other = [*args_of(["data.pipeline=device", "optim.lr=0.1"], run), "--continue"]
    assert main(other) == 2
    err = capsys.readouterr().err.strip()
    assert "holds a run of another config (optim.lr is 0.035 there, 0.1 here)" in err
    assert "\n" not in err


def test_config_first_and_a_run_that_wrote_only_its_config(monkeypatch, tmp_path: Path,
                                                           reference):
    """The config is on disk before any data is read; --resume of such a directory starts
    from the beginning, and --continue does the same."""
    run = tmp_path / "run"

    def no_data(*a, **k):
        assert (run / "config.yaml").is_file() and (run / "run.json").is_file()
        raise BalconError("the data is on a disk that went away")

    monkeypatch.setattr("balcon.engine.prepare.load_image_sets", no_data)
    with pytest.raises(BalconError, match="went away"):
        fit(tiny("data.pipeline=device"), None, run, device="cpu")
    # the run's log says why it stopped, so a requeue script reading it sees the cause
    last_line = (run / "train.log").read_text().strip().splitlines()[-1]
    assert last_line.endswith("stopped: the data is on a disk that went away")

    def preempted_while_loading(*a, **k):
        raise Preempted("preempted (SIGTERM) before training")

    monkeypatch.setattr("balcon.engine.prepare.load_image_sets", preempted_while_loading)
    with pytest.raises(Preempted):
        resume(run, device="cpu")
    monkeypatch.undo()
    last_line = (run / "train.log").read_text().strip().splitlines()[-1]
    assert last_line.endswith("stopped: preempted (SIGTERM) before training")
    assert not (run / "last.pt").exists()
    assert main(["train", "--resume", str(run), "--device", "cpu"]) == 0
    assert_same_weights(weights(run), reference["device"])


def test_corrupt_last_pt_and_a_mid_epoch_checkpoint_of_other_processes(
        monkeypatch, tmp_path: Path, capsys):
    run = tmp_path / "run"
    stop_at(monkeypatch, 5)
    with pytest.raises(Preempted):
        fit(tiny("data.pipeline=device"), None, run, device="cpu")
    monkeypatch.undo()
    state = load_checkpoint(run / "last.pt")
    torch.save({**state, "world_size": 2}, run / "last.pt")
    again = ["train", "--resume", str(run), "--device", "cpu"]
    assert "stopped mid-epoch with 2 processes; resume it with 2" in run_error(capsys, again)
    data = (run / "last.pt").read_bytes()
    (run / "last.pt").write_bytes(data[: len(data) // 2])
    err = run_error(capsys, again)
    assert f"checkpoint {run / 'last.pt'} is unreadable (" in err
    assert "it is truncated or corrupt: delete it" in err and "give a checkpoint" not in err


def test_review_cases_preempted_kinds_last_save_and_older_runs(monkeypatch, tmp_path: Path):
    """A preemption met inside rank-0-only work keeps its kind (status 75, not 2); a
    signal during the last save stops before the report, which the resume then writes;
    a run from before data.pipeline resumes on the pipeline it had (workers)."""
    from balcon.engine.distributed import on_main

    def preempted() -> None:
        raise Preempted("preempted (SIGTERM) before training")

    with pytest.raises(Preempted):
        on_main(preempted)
    run = tmp_path / "run"
    polls = {"n": 0}

    def last_poll(self: StepControl) -> tuple[bool, bool]:
        polls["n"] += 1
        return polls["n"] > 34 + 2, False  # after 2 x 17 steps and the evaluations' polls

    monkeypatch.setattr(StepControl, "poll", last_poll)
    with pytest.raises(Preempted, match="preempted"):
        fit(tiny("data.pipeline=device", "train.eval_every=2"), None, run, device="cpu")
    monkeypatch.undo()
    assert not (run / "summary.json").exists() or \
        not json.loads((run / "summary.json").read_text()).get("finished")
    resume(run, device="cpu")
    assert json.loads((run / "summary.json").read_text())["finished"]
    state = load_checkpoint(run / "last.pt")
    del state["config"]["data"]["pipeline"]
    torch.save({**state, "epoch": 1}, run / "last.pt")
    (run / "summary.json").unlink()
    resume(run, device="cpu")
    assert load_checkpoint(run / "last.pt")["config"]["data"]["pipeline"] == "workers"


def test_ranks_agree_every_few_steps_a_single_process_at_each():
    """The agreement is a collective that waits for the device: a multi-process run polls
    every AGREE_EVERY steps (and at each epoch's end), a single process at every step."""
    from balcon.engine.distributed import DistContext
    from balcon.runs.preempt import AGREE_EVERY

    steps = range(1, 3 * AGREE_EVERY + 1)
    assert all(StepControl(DistContext(), None).checks_at(s) for s in steps)
    polled = [s for s in steps if StepControl(DistContext(world_size=2), None).checks_at(s)]
    assert polled == [AGREE_EVERY, 2 * AGREE_EVERY, 3 * AGREE_EVERY]
