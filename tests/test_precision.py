"""``train.precision: auto``: the rule on the hardware's flags (patched here, so the tests
do not depend on the machine that runs them), where a run records its choice, the warning
for emulated bf16, and resumes that keep a run's precision (older checkpoints included)."""

from __future__ import annotations

import contextlib
import json
from pathlib import Path

import pytest
import torch
from test_engine import tiny_config

from balcon.cli import main
from balcon.engine import steps
from balcon.engine.device import (
    NATIVE_BF16_ENV,
    cpu_has_native_bf16,
    emulated_bf16_warning,
    resolve_precision,
)
from balcon.errors import BalconError
from balcon.presets import list_presets, load_preset
from balcon.runs import fit, resume
from balcon.runs.checkpoint import load_checkpoint, save_checkpoint

CPU = torch.device("cpu")


def cpu_flags(monkeypatch, avx512_bf16: bool, amx: bool) -> None:
    """Make torch report these CPU flags (and no override)."""
    monkeypatch.delenv(NATIVE_BF16_ENV, raising=False)
    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: avx512_bf16)
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: amx)


@pytest.mark.parametrize("avx512_bf16, amx, expected", [
    (False, False, ("off", "auto: no native bf16 on this CPU")),   # e.g. AMD Zen 3, AVX2 only
    (True, False, ("bf16", "auto: native bf16 on this CPU")),      # AVX512-BF16: Zen 4
    (False, True, ("bf16", "auto: native bf16 on this CPU")),      # AMX tiles
    (True, True, ("bf16", "auto: native bf16 on this CPU")),       # Sapphire Rapids on
])
def test_auto_on_the_cpu_follows_its_bf16_flags(monkeypatch, avx512_bf16, amx, expected):
    cpu_flags(monkeypatch, avx512_bf16, amx)
    assert resolve_precision("auto", CPU) == expected


def test_the_environment_overrides_the_cpu_flags(monkeypatch):
    cpu_flags(monkeypatch, True, True)
    monkeypatch.setenv(NATIVE_BF16_ENV, "0")
    assert resolve_precision("auto", CPU)[0] == "off"
    cpu_flags(monkeypatch, False, False)
    monkeypatch.setenv(NATIVE_BF16_ENV, "1")
    assert resolve_precision("auto", CPU)[0] == "bf16"
    monkeypatch.setenv(NATIVE_BF16_ENV, "yes")
    with pytest.raises(BalconError, match=f"{NATIVE_BF16_ENV}='yes': set it to 0"):
        cpu_has_native_bf16()


@pytest.mark.parametrize("capability, expected", [
    ((7, 0), "fp16"), ((7, 5), "fp16"), ((8, 0), "bf16"), ((9, 0), "bf16"), ((12, 0), "bf16"),
])
def test_auto_on_cuda_follows_the_compute_capability(monkeypatch, capability, expected):
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: capability)
    precision, why = resolve_precision("auto", torch.device("cuda"))
    assert precision == expected
    assert f"compute capability {capability[0]}.{capability[1]}" in why
    assert ("gradient scaler" in why) == (expected == "fp16")


@pytest.mark.parametrize("precision", ["off", "bf16", "fp16"])
def test_a_set_precision_is_kept(monkeypatch, precision):
    cpu_flags(monkeypatch, False, False)
    assert resolve_precision(precision, CPU) == (precision, "train.precision")


def test_bf16_warns_only_where_it_is_emulated(monkeypatch):
    cpu_flags(monkeypatch, False, False)
    warning = emulated_bf16_warning("bf16", CPU)
    assert "emulated" in warning and "slower" in warning and "train.precision=auto" in warning
    assert emulated_bf16_warning("off", CPU) is None
    assert emulated_bf16_warning("bf16", torch.device("cuda")) is None
    cpu_flags(monkeypatch, False, True)
    assert emulated_bf16_warning("bf16", CPU) is None


def test_every_preset_resolves_to_auto():
    assert load_preset("digits-lt-demo").train.precision == "auto"
    assert {load_preset(name).train.precision for name in list_presets()} == {"auto"}


@pytest.fixture
def float32_arithmetic(monkeypatch):
    """Train and predict in float32 whatever the run's precision says: these tests check
    what a run chooses and records, and bf16 is emulated (~8x slower) on CPUs without it."""
    monkeypatch.setattr(steps, "autocast", lambda device, precision: contextlib.nullcontext())


def precision_lines(run: Path) -> list[str]:
    return [line for line in (run / "train.log").read_text().splitlines()
            if "precision" in line]


@pytest.mark.parametrize("native, expected", [
    ("0", "off (auto: no native bf16 on this CPU, as BALCON_NATIVE_BF16=0 says)"),
    ("1", "bf16 (auto: native bf16 on this CPU, as BALCON_NATIVE_BF16=1 says)"),
])
def test_a_run_records_what_auto_chose(monkeypatch, tmp_path: Path, cifar10_shared_root: Path,
                                       float32_arithmetic, native, expected):
    monkeypatch.setenv(NATIVE_BF16_ENV, native)
    run = tmp_path / "run"
    fit(tiny_config(epochs=1), cifar10_shared_root, run, device="cpu")
    first = precision_lines(run)[0]
    assert first.endswith(f"precision: {expected}")
    name = expected.split(" ")[0]
    why = expected.split("(")[1].rstrip(")")
    for info in (json.loads((run / "run.json").read_text()),
                 json.loads((run / "summary.json").read_text()),
                 load_checkpoint(run / "last.pt"), load_checkpoint(run / "best.pt")):
        assert (info["precision"], info["precision_reason"]) == (name, why)
    assert "auto" in (run / "config.yaml").read_text()  # the config keeps what was asked


def test_explicit_bf16_on_a_cpu_without_it_warns_once(monkeypatch, tmp_path: Path,
                                                      cifar10_shared_root: Path, capsys):
    monkeypatch.setenv(NATIVE_BF16_ENV, "0")
    run = tmp_path / "run"
    fit(tiny_config("train.precision=bf16", epochs=1), cifar10_shared_root, run,
        device="cpu", stop_after=0)
    lines = precision_lines(run)
    assert lines[0].endswith("precision: bf16 (train.precision)")
    warnings = [line for line in lines if "emulated" in line]
    assert len(warnings) == 1 and "train.precision=auto" in warnings[0]
    assert "emulated" in capsys.readouterr().out


def test_resume_keeps_the_runs_precision_on_another_cpu(monkeypatch, tmp_path: Path,
                                                        cifar10_shared_root: Path,
                                                        float32_arithmetic):
    """Started where bf16 is native, continued where it is not: still bf16, with the
    warning; the config's ``auto`` is not resolved again."""
    monkeypatch.setenv(NATIVE_BF16_ENV, "1")
    run = tmp_path / "run"
    fit(tiny_config(), cifar10_shared_root, run, device="cpu", stop_after=1)
    monkeypatch.setenv(NATIVE_BF16_ENV, "0")
    resume(run)
    resumed = [line for line in precision_lines(run) if "resuming" in line]
    assert resumed and resumed[0].endswith(
        "precision: bf16 (as the run started: auto: native bf16 on this CPU, as "
        "BALCON_NATIVE_BF16=1 says)")
    assert any("emulated" in line for line in precision_lines(run))
    assert load_checkpoint(run / "last.pt")["precision"] == "bf16"
    assert json.loads((run / "summary.json").read_text())["precision"] == "bf16"


def test_a_checkpoint_of_an_older_balcon_resumes_with_its_configs_precision(
        monkeypatch, tmp_path: Path, cifar10_shared_root: Path):
    """Checkpoints before 0.6 hold no ``precision``: their config's (never ``auto``)."""
    monkeypatch.setenv(NATIVE_BF16_ENV, "1")
    run = tmp_path / "run"
    fit(tiny_config("train.precision=off"), cifar10_shared_root, run, device="cpu",
        stop_after=1)
    state = load_checkpoint(run / "last.pt")
    old = {k: v for k, v in state.items() if k not in ("format", "precision",
                                                        "precision_reason")}
    old["balcon_version"] = "0.5.1"
    save_checkpoint(run / "last.pt", old)
    assert main(["train", "--resume", str(run)]) == 0
    resumed = [line for line in precision_lines(run) if "resuming" in line]
    assert resumed[0].endswith("precision: off (as the run started: train.precision)")
    assert load_checkpoint(run / "last.pt")["precision"] == "off"


def test_a_run_in_fp16_resumes_on_cuda_only(tmp_path: Path, cifar10_shared_root: Path):
    """A run that ``auto`` put in fp16 (an older GPU) names the way out on a CPU."""
    run = tmp_path / "run"
    fit(tiny_config(), cifar10_shared_root, run, device="cpu", stop_after=1)
    state = load_checkpoint(run / "last.pt")
    state.update(precision="fp16", precision_reason="auto: no bf16 on this GPU (compute "
                 "capability 7.5), fp16 with a gradient scaler")
    save_checkpoint(run / "last.pt", {k: v for k, v in state.items() if k != "format"})
    with pytest.raises(BalconError, match=r"trains in fp16 \(auto: no bf16 on this GPU .*\), "
                                          r"which needs CUDA; resume it on a CUDA device"):
        resume(run, device="cpu")
