"""``train.compile``: the training step through ``torch.compile``.

A compiled run trains compiled and resumes bit-exactly where it stopped, compiling
afresh as a new process would; a new run without the C++ compiler torch uses on the CPU
is refused before any data is read, and a compiled run resumed there trains eagerly
with a warning (its config cannot change on resume).
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch

from balcon.config import apply_overrides, compress_schedule
from balcon.engine.device import can_compile
from balcon.errors import BalconError
from balcon.presets import load_preset
from balcon.runs import fit, load_checkpoint, resume

SMALL = ["model.head_hidden=16", "model.head_dim=8", "data.num_workers=0",
         "train.precision=off", "train.compile=true"]
needs_compiler = pytest.mark.skipif(not can_compile(torch.device("cpu")),
                                    reason="no C++ compiler for torch.compile on the CPU")


def _demo() -> object:
    return apply_overrides(compress_schedule(load_preset("digits-lt-demo"), 2), SMALL)


@needs_compiler
def test_compiled_run_trains_compiled_and_resumes_bit_exactly(tmp_path: Path):
    from balcon.engine.prepare import prepare

    assert isinstance(prepare(_demo(), None, device="cpu").train_model,
                      torch._dynamo.eval_frame.OptimizedModule)
    straight = fit(_demo(), None, tmp_path / "straight", device="cpu").summary
    assert straight["finished"] and straight["last"]["top1"] > 0
    log = (tmp_path / "straight" / "train.log").read_text()
    assert "training step compiled with torch.compile" in log
    fit(_demo(), None, tmp_path / "stopped", device="cpu", stop_after=1)
    torch._dynamo.reset()  # the resume compiles afresh, as in a new process
    resume(tmp_path / "stopped", device="cpu")
    a = load_checkpoint(tmp_path / "straight" / "last.pt")["model"]
    b = load_checkpoint(tmp_path / "stopped" / "last.pt")["model"]
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_compile_without_a_cpu_compiler_is_refused_before_the_data(monkeypatch, tmp_path):
    from balcon.engine.prepare import prepare

    monkeypatch.setattr(shutil, "which", lambda name: None)
    cfg = apply_overrides(load_preset("cifar10-lt-r100"), SMALL)
    with pytest.raises(BalconError, match="needs the C\\+\\+ compiler torch uses"):
        prepare(cfg, tmp_path / "no-such-data", device="cpu")


@needs_compiler
def test_a_compiled_run_resumed_without_a_compiler_trains_eagerly(monkeypatch, tmp_path):
    fit(_demo(), None, tmp_path / "run", device="cpu", stop_after=1)
    monkeypatch.setattr(shutil, "which", lambda name: None)
    assert resume(tmp_path / "run", device="cpu").summary["finished"]
    log = (tmp_path / "run" / "train.log").read_text()
    assert "this resumed run trains eagerly" in log
