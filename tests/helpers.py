"""Assertions that many test modules share: a command's one-line error, equal weights."""

from __future__ import annotations

import torch

from balcon.cli import main


def run_error(capsys, args: list[str]) -> str:
    """Run ``balcon args``; assert exit status 2 and a one-line message; return it."""
    assert main(args) == 2
    out, err = capsys.readouterr()
    err = err.strip()
    assert err.startswith("balcon: error: ")
    assert "\n" not in err and "Traceback" not in err
    assert err.removeprefix("balcon: error: ") not in out  # said once (train.log has it too)
    return err


def assert_same_weights(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> None:
    """The same tensors under the same names, bit for bit."""
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key
