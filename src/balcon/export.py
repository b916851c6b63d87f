"""Export a checkpoint's classifier to ONNX or TorchScript, for inference without balcon.

:func:`export_checkpoint` loads a balcon checkpoint on the CPU (whatever device it was
trained on), in eval mode and fp32, and exports its *inference model*: the encoder and
the classifier (:meth:`BCLModel.predict <balcon.models.BCLModel.predict>`), without the
projection and prototype heads that only training uses. The exported model takes a float
batch ``images`` (N, 3, H, W), already preprocessed as at test time, and returns
``logits`` (N, C); the batch size N is dynamic.

- ONNX: ``torch.onnx.export(..., dynamo=True)``, the exporter torch 2.9+ supports (it
  needs ``onnxscript``; the TorchScript-based exporter is deprecated), with the batch
  dimension a ``torch.export.Dim``; torch's default opset. Needs the ``balcon[export]``
  extra (onnx, onnxscript, onnxruntime).
- TorchScript: ``torch.jit.trace`` of the inference model (ResNets have no
  data-dependent control flow, so a trace is exact); needs nothing beyond torch.

Both files carry the metadata a user needs to predict (:func:`read_metadata` reads it
back from either): the class names in class-index order, the input size [3, H, W], the
test-time normalisation mean and std of the run's config, the resize of the test-time
view, a ``preprocess`` sentence, and the balcon version, config name, method and epoch.
ONNX keeps it in ``ModelProto.metadata_props`` (key ``balcon``: the whole dict as JSON;
``class_names``, ``input_size``, ``mean``, ``std``, ``preprocess``: each as its own
entry), TorchScript in the extra file ``balcon.json`` of the archive.

How it is checked: after writing, the exported file itself is run (onnxruntime's
``CPUExecutionProvider``, or ``torch.jit.load``) on a fixed batch of seeded
standard-normal images (the scale of normalised images) and, separately, on its first
image alone (a batch of 1, so the dynamic batch dimension is exercised at both ends).
Its logits must match PyTorch's logits of the checkpoint's model within
``TOLERANCE * max(1, max |logit|)``: an fp32 re-implementation of the same graph (with
fused conv + batch norm, other kernels) differs by rounding, ~1e-6 of the logits'
scale measured on the CIFAR ResNets; a wrong export (weights not loaded, batch norm in
training mode, a wrong layout) differs by the logits' own scale. A file that fails the
check is deleted: every file is written to a temporary file beside ``out``, checked, then
renamed over ``out`` (:func:`~balcon.runs.checkpoint.write_atomic`), so a failure
never leaves a partial file there.
"""

from __future__ import annotations

import contextlib
import importlib
import json
import logging
import warnings
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import numpy as np
import torch
from torch import Tensor, nn

from balcon import __version__
from balcon.config import EXPORT_FORMATS, Config
from balcon.errors import BalconError, short_reason
from balcon.models.finetune import merge_lora
from balcon.runs.checkpoint import write_atomic
from balcon.runs.files import check_output
from balcon.runs.inference import model_for_inference

__all__ = [
    "CHECK_BATCH",
    "EXPORT_FORMAT",
    "TOLERANCE",
    "ExportResult",
    "InferenceModel",
    "default_output",
    "export_checkpoint",
    "export_metadata",
    "read_metadata",
]

#: Each format's file name ending, after the checkpoint's stem.
SUFFIXES = {"onnx": ".onnx", "torchscript": ".torchscript.pt"}
#: The version tag of the metadata.
EXPORT_FORMAT = "balcon-export-1"
#: Key of the metadata: ONNX ``metadata_props`` key; TorchScript extra file ``balcon.json``.
METADATA_KEY = "balcon"
TORCHSCRIPT_EXTRA = "balcon.json"
#: Names of the exported graph's input and output.
INPUT_NAME = "images"
OUTPUT_NAME = "logits"
#: Images in the batch the exported file is checked on (its first image is also run alone).
CHECK_BATCH = 5
#: Largest allowed |exported - PyTorch| logit, relative to max(1, the largest |logit|).
TOLERANCE = 1e-3
#: What ``balcon[export]`` provides for ONNX.
ONNX_MODULES = ("onnx", "onnxscript", "onnxruntime")


@dataclass
class ExportResult:
    """What :func:`export_checkpoint` wrote and how closely the file reproduces the model.

    ``max_abs_diff``: the largest |exported - PyTorch| logit over the check batch (of
    ``batch`` images) and the single-image run; ``tolerance`` the bound it met.
    """

    path: Path
    format: str
    max_abs_diff: float
    metadata: dict[str, Any] = field(default_factory=dict)
    batch: int = CHECK_BATCH
    tolerance: float = 0.0


class InferenceModel(nn.Module):
    """A BCL model's encoder and classifier: images (N, 3, H, W) -> logits (N, C).

    ``forward`` is :meth:`BCLModel.predict <balcon.models.BCLModel.predict>`; the
    projection and prototype heads are left out.
    """

    def __init__(self, encoder: nn.Module, classifier: nn.Module) -> None:
        super().__init__()
        self.encoder = encoder
        self.classifier = classifier

    def forward(self, images: Tensor) -> Tensor:
        """Logits (N, C) of preprocessed images (N, 3, H, W)."""
        return self.classifier(self.encoder(images))


def default_output(checkpoint: str | Path, fmt: str) -> Path:
    """Where an export goes by default: beside the checkpoint, ``best.pt`` ->
    ``best.onnx`` / ``best.torchscript.pt``."""
    checkpoint = Path(checkpoint)
    return checkpoint.with_name(checkpoint.stem + SUFFIXES[_check_format(fmt)])


def _check_format(fmt: str) -> str:
    if fmt not in EXPORT_FORMATS:
        raise BalconError(f"export format {fmt!r} is unknown; use {' or '.join(EXPORT_FORMATS)}")
    return fmt


def _need_onnx() -> None:
    """Import the ONNX toolchain, or say in one line how to install it."""
    for name in ONNX_MODULES:
        try:
            importlib.import_module(name)
        except ImportError:
            raise BalconError(
                f"balcon export --format onnx needs onnx, onnxscript and onnxruntime ({name} "
                "is missing): pip install 'balcon[export]'"
            ) from None


def _test_resize(cfg: Config) -> int:
    """The shorter side images are resized to before the test view's centre crop."""
    size = cfg.data.image_size
    return round(size * 256 / 224) if cfg.data.view_style == "imagenet" else size


def export_metadata(state: dict[str, Any], cfg: Config) -> dict[str, Any]:
    """The metadata an exported file carries: classes, input, preprocessing, provenance."""
    size = cfg.data.image_size
    resize = _test_resize(cfg)
    mean = [float(v) for v in cfg.data.mean]
    std = [float(v) for v in cfg.data.std]
    preprocess = (
        f"RGB image; resize its shorter side to {resize} px (bilinear) and centre-crop "
        f"{size}x{size}, as balcon's test-time view; scale pixels to [0, 1] (divide by "
        f"255); subtract mean {mean} and divide by std {std}, per channel; feed float32 "
        f"{INPUT_NAME} (N, 3, {size}, {size}); the output {OUTPUT_NAME} (N, "
        f"{len(state['class_names'])}): argmax indexes class_names"
    )
    meta: dict[str, Any] = {
        "format": EXPORT_FORMAT,
        "class_names": [str(name) for name in state["class_names"]],
        "num_classes": len(state["class_names"]),
        "input_name": INPUT_NAME,
        "output_name": OUTPUT_NAME,
        "input_size": [3, size, size],
        "resize": resize,
        "mean": mean,
        "std": std,
        "preprocess": preprocess,
        "balcon_version": __version__,
        "config_name": cfg.name,
        "method": cfg.loss.method,
        "encoder": cfg.model.encoder,
        "epoch": int(state["epoch"]),
    }
    if state.get("step"):
        meta["step"] = int(state["step"])  # a mid-epoch checkpoint
    return meta


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """Silence the exporters' chatter: warnings (torch 2.14 deprecates torch.jit with a
    FutureWarning per call) and logging below WARNING."""
    loggers = [logging.getLogger(name) for name in ("torch", "onnxscript", "onnx_ir")]
    levels = [lg.level for lg in loggers]
    try:
        for lg in loggers:
            lg.setLevel(max(lg.getEffectiveLevel(), logging.WARNING))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        for lg, level in zip(loggers, levels, strict=True):
            lg.setLevel(level)


def _export_onnx(model: nn.Module, example: Tensor, meta: dict[str, Any], out: IO[bytes]
                 ) -> None:
    """Write ``model`` as ONNX with a dynamic batch and ``meta`` in metadata_props."""
    import onnx

    batch = torch.export.Dim("batch", min=1)
    with _quiet():
        program = torch.onnx.export(
            model, (example,), dynamo=True, dynamic_shapes=({0: batch},),
            input_names=[INPUT_NAME], output_names=[OUTPUT_NAME], verbose=False,
            optimize=True, external_data=False,
        )
    if program is None:  # only the deprecated TorchScript-based exporter returns None
        raise RuntimeError("torch.onnx.export returned no program")
    proto: onnx.ModelProto = program.model_proto
    entries = {METADATA_KEY: json.dumps(meta)}
    for key in ("class_names", "input_size", "mean", "std"):
        entries[key] = json.dumps(meta[key])
    entries["preprocess"] = meta["preprocess"]
    del proto.metadata_props[:]
    for key, value in entries.items():
        proto.metadata_props.add(key=key, value=value)
    proto.producer_name = "balcon"
    proto.producer_version = __version__
    out.write(proto.SerializeToString())  # a ValueError past protobuf's 2 GB


def _export_torchscript(model: nn.Module, example: Tensor, meta: dict[str, Any],
                        out: IO[bytes]) -> None:
    """Write ``model`` traced as TorchScript with ``meta`` as the extra file balcon.json."""
    with _quiet(), torch.no_grad():
        traced = torch.jit.trace(model, (example,), check_trace=False)
        torch.jit.save(traced, out, _extra_files={TORCHSCRIPT_EXTRA: json.dumps(meta)})


def _run_exported(path: Path, fmt: str, images: Tensor) -> np.ndarray:
    """Logits of the exported file at ``path`` for ``images``."""
    if fmt == "onnx":
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.log_severity_level = 3  # errors only
        session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        return np.asarray(session.run([OUTPUT_NAME], {INPUT_NAME: images.numpy()})[0])
    with _quiet():
        loaded = torch.jit.load(str(path), map_location="cpu")
    with torch.no_grad():
        return loaded(images).numpy()


def _check(model: nn.Module, path: Path, fmt: str, size: int) -> tuple[float, float]:
    """Largest |exported - PyTorch| logit on the check batch and its first image alone,
    and the bound it must meet; raises BalconError past it."""
    gen = torch.Generator().manual_seed(0)
    images = torch.randn(CHECK_BATCH, 3, size, size, generator=gen)
    with torch.no_grad():
        expected = model(images).numpy()
    got = _run_exported(path, fmt, images)
    single = _run_exported(path, fmt, images[:1])
    if got.shape != expected.shape or single.shape != expected[:1].shape:
        raise BalconError(
            f"the {fmt} export does not reproduce the model: logits of shape {got.shape} and "
            f"{single.shape} for {CHECK_BATCH} and 1 images, expected {expected.shape}"
        )
    diff = float(max(np.abs(got - expected).max(), np.abs(single - expected[:1]).max()))
    bound = TOLERANCE * max(1.0, float(np.abs(expected).max()))
    if not diff <= bound:  # also catches NaN
        raise BalconError(
            f"the {fmt} export does not reproduce the model (its logits differ by up to "
            f"{diff:.3g}, more than {bound:.3g}); try the other --format or report it"
        )
    return diff, bound


def _output_path(checkpoint: Path, fmt: str, out: str | Path | None) -> Path:
    if out is None:
        return default_output(checkpoint, fmt)
    return check_output(out, "--out", (".onnx",) if fmt == "onnx" else (".pt", ".pth", ".ts"),
                        [checkpoint], default_output(checkpoint, fmt).name)


def export_checkpoint(checkpoint: str | Path, fmt: str, out: str | Path | None = None,
                      device: str | None = None) -> ExportResult:
    """Export a checkpoint's inference model to ``fmt`` (``onnx`` or ``torchscript``).

    ``out`` defaults to the checkpoint's folder, ``<stem>.onnx`` or
    ``<stem>.torchscript.pt``; an existing folder gets that name inside it. The export
    runs on the CPU in fp32 whatever the checkpoint was trained on, so the file runs
    anywhere; ``device`` may only be None, ``auto`` or ``cpu``. The written file is run
    and compared with PyTorch (see the module docstring); the result says how closely.
    Problems the user can fix (a bad path, a missing extra, an unwritable ``out``) raise
    a one-line :class:`~balcon.errors.BalconError`; nothing is left at ``out`` then.
    """
    fmt = _check_format(fmt)
    if device not in (None, "auto", "cpu"):
        raise BalconError(f"--device {device}: balcon export runs on the CPU (the exported "
                          "file runs on any device); leave --device out or use cpu")
    if fmt == "onnx":
        _need_onnx()
    checkpoint = Path(checkpoint)
    path = _output_path(checkpoint, fmt, out)
    state, cfg, bcl, _ = model_for_inference(checkpoint, "cpu")
    model = InferenceModel(merge_lora(bcl.encoder), bcl.classifier).float()
    model = model.to(memory_format=torch.contiguous_format).eval()
    for param in model.parameters():
        param.requires_grad_(False)
    meta = export_metadata(state, cfg)
    size = cfg.data.image_size
    example = torch.zeros(2, 3, size, size)  # batch 2: torch.export specialises 1
    exporter = _export_onnx if fmt == "onnx" else _export_torchscript
    checked: list[tuple[float, float]] = []

    def write(f: IO[bytes]) -> None:
        try:
            exporter(model, example, meta, f)
        except OSError:
            raise  # write_atomic: "cannot write OUT (reason); choose another --out"
        except Exception as err:  # noqa: BLE001 - the exporters fail in many ways
            raise BalconError(
                f"could not export {checkpoint} ({cfg.model.encoder}) to {fmt} "
                f"({short_reason(err)}); try the other --format"
            ) from None

    # the temporary file (opened before the export's work: an unwritable out fails fast)
    # is run and compared with the model before it is renamed over out
    write_atomic(path, write, fix="choose another --out", make_folders=True,
                 verify=lambda tmp: checked.append(_check(model, tmp, fmt, size)))
    diff, bound = checked[0]
    return ExportResult(path=path, format=fmt, max_abs_diff=diff, metadata=meta,
                        batch=CHECK_BATCH, tolerance=bound)


def read_metadata(path: str | Path) -> dict[str, Any]:
    """The balcon metadata of an exported file (ONNX or TorchScript), as a dict."""
    path = Path(path)
    if not path.is_file():
        raise BalconError(f"{path} does not exist; give a file balcon export wrote")
    if zipfile.is_zipfile(path):  # TorchScript archives are zip files
        extra = {TORCHSCRIPT_EXTRA: ""}
        try:
            with _quiet():
                torch.jit.load(str(path), map_location="cpu", _extra_files=extra)
        except Exception as err:  # noqa: BLE001 - a zip that is not TorchScript
            raise BalconError(f"{path} is not a TorchScript file ({short_reason(err)}); "
                              "give a file balcon export wrote") from None
        text = extra[TORCHSCRIPT_EXTRA]
    else:
        try:
            import onnx
        except ImportError:
            raise BalconError("reading an ONNX file needs onnx: pip install 'balcon[export]'"
                              ) from None
        try:
            proto = onnx.load(str(path), load_external_data=False)
        except Exception as err:  # noqa: BLE001 - protobuf fails in many ways
            raise BalconError(f"{path} is neither ONNX nor TorchScript ({short_reason(err)}); "
                              "give a file balcon export wrote") from None
        props = {p.key: p.value for p in proto.metadata_props}
        text = props.get(METADATA_KEY, "")
    if not text:
        raise BalconError(f"{path} has no balcon metadata; give a file balcon export wrote")
    try:
        meta = json.loads(text)
    except ValueError:  # not JSON, or bytes that are not UTF-8
        meta = None
    if not isinstance(meta, dict):
        raise BalconError(f"{path} has malformed balcon metadata; export it again with "
                          "balcon export")
    return meta
