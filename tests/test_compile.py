"""``train.compile``: the training step through ``torch.compile``.

A compiled run trains, writes eager checkpoints (no ``_orig_mod.`` keys), and resumes
bit-exactly where it stopped (it compiles again after the resume); without a C++
compiler on the CPU it is refused before any data is read.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch

from balcon.config import apply_overrides, compress_schedule
from balcon.errors import BalconError
from balcon.presets import load_preset
from balcon.runs import fit, load_checkpoint, resume

SMALL = ["model.head_hidden=16", "model.head_dim=8", "data.num_workers=0",
         "train.precision=off", "train.compile=true"]


def test_compiled_run_trains_and_resumes_bit_exactly(tmp_path: Path):
    cfg = apply_overrides(compress_schedule(load_preset("digits-lt-demo"), 2), SMALL)
    straight = fit(cfg, None, tmp_path / "straight", device="cpu").summary
    assert straight["finished"] and straight["last"]["top1"] > 0
    log = (tmp_path / "straight" / "train.log").read_text()
    assert "training step compiled with torch.compile" in log
    fit(cfg, None, tmp_path / "stopped", device="cpu", stop_after=1)
    resume(tmp_path / "stopped", device="cpu")
    a = load_checkpoint(tmp_path / "straight" / "last.pt")["model"]
    b = load_checkpoint(tmp_path / "stopped" / "last.pt")["model"]
    assert not any("_orig_mod" in k for k in a)  # the eager model's state dict
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_compile_without_a_cpu_compiler_is_refused_before_the_data(monkeypatch, tmp_path):
    from balcon.engine.prepare import prepare

    monkeypatch.setattr(shutil, "which", lambda name: None)
    cfg = apply_overrides(load_preset("cifar10-lt-r100"), SMALL)
    with pytest.raises(BalconError, match="needs a C\\+\\+ compiler"):
        prepare(cfg, tmp_path / "no-such-data", device="cpu")
