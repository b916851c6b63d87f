"""balcon export: ONNX and TorchScript files that reproduce a checkpoint's logits."""

from __future__ import annotations

import json
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

import balcon.export as export_module
from balcon import __version__
from balcon.config import apply_overrides, compress_schedule, config_from_dict
from balcon.errors import BalconError
from balcon.export import (
    TORCHSCRIPT_EXTRA,
    default_output,
    export_checkpoint,
    read_metadata,
)
from balcon.models import build_model
from balcon.presets import load_preset
from balcon.runs import fit, load_checkpoint


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> Path:
    """best.pt of a one-epoch digits demo run (ResNet-8, small heads): ~4 s."""
    cfg = compress_schedule(load_preset("digits-lt-demo"), 1)
    cfg = apply_overrides(cfg, ["model.head_hidden=16", "model.head_dim=8",
                                "data.num_workers=0", "train.precision=off"])
    run = tmp_path_factory.mktemp("export") / "run"
    fit(cfg, None, run, device="cpu")
    return run / "best.pt"


@pytest.fixture
def checkpoint(trained: Path, tmp_path: Path) -> Path:
    """A private copy of the trained best.pt, so each test's exports land in its own folder."""
    copy = tmp_path / "best.pt"
    copy.write_bytes(trained.read_bytes())
    return copy


def reference(path: Path, images: torch.Tensor) -> tuple[np.ndarray, dict]:
    """PyTorch's logits of the checkpoint's model (built independently of balcon.export)."""
    state = load_checkpoint(path)
    cfg = config_from_dict(state["config"], source=str(path), new_run=False)
    model = build_model(cfg.model, len(state["class_names"]))
    model.load_state_dict(state["model"])
    model.eval()
    with torch.no_grad():
        return model.predict(images).numpy(), {"state": state, "cfg": cfg}


def run_file(path: Path, fmt: str, images: torch.Tensor) -> np.ndarray:
    if fmt == "onnx":
        import onnxruntime as ort

        session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        name = session.get_inputs()[0].name
        return session.run(None, {name: images.numpy()})[0]
    with warnings.catch_warnings():  # torch 2.14 deprecates torch.jit (FutureWarning)
        warnings.simplefilter("ignore", FutureWarning)
        module = torch.jit.load(str(path), map_location="cpu")
    with torch.no_grad():
        return module(images).numpy()


@pytest.mark.parametrize("fmt", ["onnx", "torchscript"])
def test_round_trip_reproduces_logits_and_carries_metadata(checkpoint: Path, fmt: str):
    result = export_checkpoint(checkpoint, fmt)
    suffix = ".onnx" if fmt == "onnx" else ".torchscript.pt"
    assert result.path == checkpoint.with_name("best" + suffix) == default_output(checkpoint, fmt)
    assert result.path.is_file() and result.format == fmt
    assert 0.0 <= result.max_abs_diff <= result.tolerance
    assert result.max_abs_diff < 1e-4  # measured ~1e-6 on this ResNet-8
    assert [p.name for p in checkpoint.parent.iterdir() if p.name.endswith(".tmp")] == []

    gen = torch.Generator().manual_seed(7)
    for batch in (1, 5):
        images = torch.randn(batch, 3, 32, 32, generator=gen)
        expected, ctx = reference(checkpoint, images)
        got = run_file(result.path, fmt, images)
        assert got.shape == (batch, 10)
        np.testing.assert_allclose(got, expected, rtol=0, atol=1e-4)

    state, cfg = ctx["state"], ctx["cfg"]
    meta = read_metadata(result.path)
    assert meta == result.metadata
    assert meta["class_names"] == [str(c) for c in state["class_names"]] == [str(d) for d in
                                                                             range(10)]
    assert meta["input_size"] == [3, cfg.data.image_size, cfg.data.image_size] == [3, 32, 32]
    assert meta["mean"] == cfg.data.mean == [0.5, 0.5, 0.5]
    assert meta["std"] == cfg.data.std == [0.5, 0.5, 0.5]
    assert meta["balcon_version"] == __version__
    assert (meta["config_name"], meta["method"], meta["epoch"]) == ("digits-lt-demo", "bcl", 1)
    for word in ("RGB", "32x32", "[0, 1]", "mean", "std"):
        assert word in meta["preprocess"]

    if fmt == "onnx":
        import onnx

        proto = onnx.load(str(result.path))
        props = {p.key: p.value for p in proto.metadata_props}
        assert json.loads(props["balcon"]) == meta
        assert json.loads(props["class_names"]) == meta["class_names"]
        assert json.loads(props["mean"]) == meta["mean"]
        dims = proto.graph.input[0].type.tensor_type.shape.dim
        assert dims[0].dim_param and [d.dim_value for d in dims[1:]] == [3, 32, 32]


def test_out_may_be_a_file_or_a_folder(checkpoint: Path, tmp_path: Path):
    named = export_checkpoint(checkpoint, "torchscript", out=tmp_path / "model.ts")
    assert named.path == tmp_path / "model.ts" and named.path.is_file()
    folder = tmp_path / "exports"
    folder.mkdir()
    inside = export_checkpoint(checkpoint, "torchscript", out=folder)
    assert inside.path == folder / "best.torchscript.pt" and inside.path.is_file()
    made = export_checkpoint(checkpoint, "torchscript", out=tmp_path / "new" / "m.ts")
    assert made.path.is_file()  # a missing folder is made
    with pytest.raises(BalconError, match="is an input of this command"):
        export_checkpoint(checkpoint, "torchscript", out=checkpoint)
    assert load_checkpoint(checkpoint)["epoch"] == 1  # untouched


def one_line_error(call) -> str:
    with pytest.raises(BalconError) as info:
        call()
    message = str(info.value)
    assert "\n" not in message
    return message


def test_unwritable_out_is_refused_and_leaves_nothing(checkpoint: Path, tmp_path: Path):
    blocker = tmp_path / "a_file"
    blocker.write_text("x")
    for out in (blocker / "m.onnx", blocker / "sub" / "m.onnx"):
        message = one_line_error(lambda out=out: export_checkpoint(checkpoint, "onnx", out=out))
        assert str(out) in message and "choose another --out" in message
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a_file", "best.pt"]


def test_a_failed_check_leaves_no_file(checkpoint: Path, tmp_path: Path, monkeypatch):
    monkeypatch.setattr(export_module, "TOLERANCE", -1.0)  # no export can meet it
    out = tmp_path / "new" / "m.torchscript.pt"
    message = one_line_error(lambda: export_checkpoint(checkpoint, "torchscript", out=out))
    assert "does not reproduce the model" in message
    assert sorted(p.name for p in tmp_path.iterdir()) == ["best.pt"]  # nor the folder made


def test_a_failed_export_leaves_no_file(checkpoint: Path, tmp_path: Path, monkeypatch):
    def broken(*args, **kwargs):
        raise RuntimeError("unsupported operator")

    monkeypatch.setattr(torch.jit, "trace", broken)
    message = one_line_error(lambda: export_checkpoint(checkpoint, "torchscript"))
    assert "could not export" in message and "unsupported operator" in message
    assert sorted(p.name for p in tmp_path.iterdir()) == ["best.pt"]


@pytest.mark.parametrize("missing", ["onnxruntime", "onnxscript", "onnx"])
def test_missing_extra_names_it(checkpoint: Path, monkeypatch, missing: str):
    monkeypatch.setitem(sys.modules, missing, None)  # import now raises ImportError
    message = one_line_error(lambda: export_checkpoint(checkpoint, "onnx"))
    assert "pip install 'balcon[export]'" in message and f"{missing} is missing" in message
    assert sorted(p.name for p in checkpoint.parent.iterdir()) == ["best.pt"]


def test_bad_inputs_are_one_line_errors(checkpoint: Path, tmp_path: Path):
    assert "'tflite'" in one_line_error(lambda: export_checkpoint(checkpoint, "tflite"))
    assert "does not exist" in one_line_error(
        lambda: export_checkpoint(tmp_path / "nope.pt", "torchscript"))
    garbage = tmp_path / "garbage.pt"
    garbage.write_text("not a checkpoint")
    assert "unreadable" in one_line_error(lambda: export_checkpoint(garbage, "torchscript"))
    assert "runs on the CPU" in one_line_error(
        lambda: export_checkpoint(checkpoint, "torchscript", device="cuda"))
    assert "balcon export wrote" in one_line_error(lambda: read_metadata(garbage))
    assert "does not exist" in one_line_error(lambda: read_metadata(tmp_path / "nope.onnx"))
    scripted = tmp_path / "scripted.pt"
    for text in ("not json", "[1, 2]", b"\xff\xfe"):  # a TorchScript file, bad metadata
        torch.jit.save(torch.jit.script(torch.nn.Identity()), str(scripted),
                       _extra_files={TORCHSCRIPT_EXTRA: text})
        assert "malformed balcon metadata" in one_line_error(lambda: read_metadata(scripted))
