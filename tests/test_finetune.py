"""Fine-tuning modes: frozen means frozen, the encoder's learning rate, LoRA, resume."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from balcon.cli import main
from balcon.config import apply_overrides, compress_schedule
from balcon.errors import BalconError
from balcon.models import build_encoder, build_model
from balcon.models.finetune import apply_finetune, encoder_blocks
from balcon.presets import load_preset
from balcon.runs import fit, load_checkpoint, resume

#: The issue's check, on a tiny timm CNN at 64 px (no download).
TINY = ["model.encoder=timm:resnet10t", "model.pretrained=null", "train.batch_size=8",
        "data.image_size=64", "model.head_hidden=16", "model.head_dim=8",
        "data.num_workers=0"]


@pytest.fixture(scope="module")
def photos(tmp_path_factory) -> Path:
    """train/ (6, 4, 3, 2 images) and val/ (2 each) of four classes; 40x40 JPEGs."""
    root = tmp_path_factory.mktemp("photos")
    rng = np.random.default_rng(0)
    for split, counts in (("train", (6, 4, 3, 2)), ("val", (2, 2, 2, 2))):
        for c, n in enumerate(counts):
            folder = root / split / f"class{c}"
            folder.mkdir(parents=True)
            for i in range(n):
                pixels = (rng.random((40, 40, 3)) * 100 + 40 * c).astype(np.uint8)
                Image.fromarray(pixels).save(folder / f"{i}.jpg")
    return root


def _config(*overrides: str, epochs: int = 2):
    return apply_overrides(compress_schedule(load_preset("imagefolder-finetune"), epochs),
                           [*TINY, *overrides])


def _start(cfg) -> dict[str, torch.Tensor]:
    """The model a run of ``cfg`` starts from (seeded as the run seeds it)."""
    torch.manual_seed(cfg.train.seed)
    model = build_model(cfg.model, 4)
    return {k: v.clone() for k, v in model.state_dict().items()}


@pytest.mark.parametrize("mode,freeze_bn", [("linear", False), ("partial", False),
                                            ("full", True)])
def test_frozen_parts_stay_bit_identical(photos: Path, tmp_path: Path, mode: str,
                                         freeze_bn: bool):
    cfg = _config(f"model.finetune={mode}", f"model.freeze_bn={str(freeze_bn).lower()}",
                  "optim.encoder_lr_scale=0.1")
    start = _start(cfg)
    fit(cfg, photos, tmp_path / "run", device="cpu")
    end = load_checkpoint(tmp_path / "run" / "last.pt")["model"]
    model = build_model(cfg.model, 4)
    blocks = encoder_blocks(model.encoder)[-cfg.model.trainable_blocks:]
    training = {n.rsplit(".", 1)[0] for block in blocks for n in block}  # modules
    changed = {k for k, before in start.items() if not torch.equal(before, end[k])}
    for key in start:
        module = key.removeprefix("encoder.").rsplit(".", 1)[0]
        stats = key.endswith(("running_mean", "running_var", "num_batches_tracked"))
        frozen = key.startswith("encoder.") and (
            mode == "linear" or (mode == "partial" and module not in training)
            or (freeze_bn and stats))
        assert not (frozen and key in changed), f"{mode}: frozen {key} changed"
    assert "classifier.weight" in changed
    assert any(k.startswith("encoder.") for k in changed) == (mode != "linear")


def test_encoder_trains_at_its_own_learning_rate(photos: Path, tmp_path: Path):
    cfg = _config("model.finetune=full", "optim.encoder_lr_scale=0.1", "optim.momentum=0.5",
                  "optim.weight_decay=0.001", "optim.nesterov=true")
    fit(cfg, photos, tmp_path / "run", device="cpu")
    groups = load_checkpoint(tmp_path / "run" / "last.pt")["optimizer"]["param_groups"]
    assert [g.get("lr_scale") for g in groups] == [0.1, None]
    for g in groups:  # the optim section reaches SGD, in every group
        assert (g["momentum"], g["weight_decay"], g["nesterov"]) == (0.5, 0.001, True)
    assert groups[0]["lr"] == pytest.approx(0.1 * groups[1]["lr"])
    n_encoder = len(list(build_model(cfg.model, 4).encoder.parameters()))
    assert len(groups[0]["params"]) == n_encoder


def test_partial_run_resumes_bit_exactly(photos: Path, tmp_path: Path):
    cfg = _config("model.finetune=partial", "model.trainable_blocks=2", "loss.method=bcl",
                  epochs=3)
    fit(cfg, photos, tmp_path / "straight", device="cpu")
    fit(cfg, photos, tmp_path / "stopped", device="cpu", stop_after=1)
    resume(tmp_path / "stopped", device="cpu")
    a = load_checkpoint(tmp_path / "straight" / "last.pt")
    b = load_checkpoint(tmp_path / "stopped" / "last.pt")
    assert all(torch.equal(a["model"][k], b["model"][k]) for k in a["model"])


def test_linear_probe_trains_on_cached_features(photos: Path, tmp_path: Path, monkeypatch):
    """A frozen encoder and a one-view method: the training images' features are
    computed once, the epochs never run the encoder, and the run resumes bit-exactly."""
    from balcon.models.bcl import BCLModel

    cfg = _config("model.finetune=linear", epochs=3)
    fit(cfg, photos, tmp_path / "straight", device="cpu")
    encoder_calls = []
    real = BCLModel.forward
    monkeypatch.setattr(BCLModel, "forward", lambda self, x, *a, **k: (
        encoder_calls.append(x.ndim), real(self, x, *a, **k))[1])
    fit(cfg, photos, tmp_path / "stopped", device="cpu", stop_after=1)
    resume(tmp_path / "stopped", device="cpu")
    assert encoder_calls and set(encoder_calls) == {2}  # features, never images
    a = load_checkpoint(tmp_path / "straight" / "last.pt")["model"]
    b = load_checkpoint(tmp_path / "stopped" / "last.pt")["model"]
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_resumed_linear_probe_computes_features_with_its_own_encoder(photos: Path,
                                                                    tmp_path: Path):
    """A stopped linear probe from pretrained weights resumes bit-exactly: the cached
    features are computed with the checkpoint's encoder, not a new run's random one."""
    torch.manual_seed(123)  # "pretrained": weights a seed-0 build does not make
    weights = tmp_path / "encoder.pth"
    torch.save(build_encoder("timm:resnet10t").state_dict(), weights)
    cfg = _config("model.finetune=linear", f"model.pretrained={weights}", epochs=3)
    fit(cfg, photos, tmp_path / "straight", device="cpu")
    fit(cfg, photos, tmp_path / "stopped", device="cpu", stop_after=1)
    resume(tmp_path / "stopped", device="cpu")
    a = load_checkpoint(tmp_path / "straight" / "last.pt")["model"]
    b = load_checkpoint(tmp_path / "stopped" / "last.pt")["model"]
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_lora_adapts_a_vit_and_exports_merged(photos: Path, tmp_path: Path):
    pytest.importorskip("peft")
    run = tmp_path / "run"
    cfg = _config("model.encoder=timm:test_vit", "model.finetune=lora", "loss.method=bcl",
                  "model.lora_rank=3")
    start = _start(cfg)
    fit(cfg, photos, run, device="cpu")
    end = load_checkpoint(run / "last.pt")["model"]
    adapters = [k for k in end if ".lora_" in k]
    assert adapters and all(".blocks." in k for k in adapters)
    # model.lora_rank is each adapter's rank: A is (rank, in), B is (out, rank)
    assert {end[k].shape[0] for k in adapters if ".lora_A." in k} == {3}
    assert {end[k].shape[1] for k in adapters if ".lora_B." in k} == {3}
    for key, before in start.items():  # every encoder weight frozen, as it started
        if key.startswith("encoder."):
            renamed = key if key in end else key.replace(".weight", ".base_layer.weight") \
                .replace(".bias", ".base_layer.bias")
            assert torch.equal(before, end[renamed]), key
    assert any(not torch.equal(end[k], torch.zeros_like(end[k])) for k in adapters
               if ".lora_B." in k)
    assert main(["export", "--checkpoint", str(run / "last.pt"), "--format",
                 "torchscript"]) == 0
    assert main(["predict", "--checkpoint", str(run / "last.pt"),
                 str(photos / "val" / "class0")]) == 0
    # the export merges the adapters into the weights: its logits are the unmerged model's
    import warnings

    from balcon.runs.inference import model_for_inference

    with warnings.catch_warnings():  # torch 2.14 deprecates torch.jit: a FutureWarning
        warnings.simplefilter("ignore", FutureWarning)
        exported = torch.jit.load(str(run / "last.torchscript.pt"))
    _, _, unmerged, _ = model_for_inference(run / "last.pt", "cpu")
    images = torch.randn(3, 3, 64, 64, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        torch.testing.assert_close(exported(images), unmerged.eval().predict(images),
                                   rtol=0, atol=1e-4)


@pytest.mark.parametrize("mode", ["linear", "partial"])
def test_fine_tuned_runs_evaluate_predict_and_export(photos: Path, tmp_path: Path,
                                                      mode: str):
    """A linear probe trained on cached features, or a partly frozen encoder, still
    evaluates, predicts and exports from images, with the logits the run's model gives."""
    pytest.importorskip("onnxruntime")
    import onnxruntime as ort

    from balcon.export import export_checkpoint

    run = tmp_path / "run"
    fit(_config(f"model.finetune={mode}"), photos, run, device="cpu")
    ckpt = run / "last.pt"
    assert main(["eval", "--checkpoint", str(ckpt)]) == 0
    assert main(["predict", "--checkpoint", str(ckpt), "--out", str(tmp_path / "p.csv"),
                 str(photos / "val")]) == 0
    rows = (tmp_path / "p.csv").read_text().splitlines()
    assert len(rows) == 1 + 8 and "class0" in rows[1]
    result = export_checkpoint(ckpt, "onnx", out=tmp_path / "model.onnx")
    images = torch.randn(3, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    model = build_model(_config(f"model.finetune={mode}").model, 4)  # built apart
    model.load_state_dict(load_checkpoint(ckpt)["model"])
    model.eval()
    with torch.no_grad():
        expected = model.predict(images).numpy()
    session = ort.InferenceSession(str(result.path), providers=["CPUExecutionProvider"])
    got = session.run(None, {session.get_inputs()[0].name: images.numpy()})[0]
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-4)


def test_lora_run_resumes_bit_exactly(photos: Path, tmp_path: Path):
    pytest.importorskip("peft")
    cfg = _config("model.encoder=timm:test_vit", "model.finetune=lora", epochs=2)
    fit(cfg, photos, tmp_path / "straight", device="cpu")
    fit(cfg, photos, tmp_path / "stopped", device="cpu", stop_after=1)
    resume(tmp_path / "stopped", device="cpu")
    a = load_checkpoint(tmp_path / "straight" / "last.pt")
    b = load_checkpoint(tmp_path / "stopped" / "last.pt")
    assert any(".lora_" in k for k in a["model"]) and a["model"].keys() == b["model"].keys()
    assert all(torch.equal(a["model"][k], b["model"][k]) for k in a["model"])


def test_bad_settings_name_the_fix(photos: Path):
    with pytest.raises(BalconError, match="model.finetune must be one of full, linear"):
        _config("model.finetune=frozen")
    cfg = _config("model.finetune=partial", "model.trainable_blocks=50")
    with pytest.raises(BalconError, match="model.trainable_blocks 50 exceeds the 5 blocks"):
        apply_finetune(build_model(cfg.model, 4), cfg.model)
    cfg = _config("model.finetune=lora")
    with pytest.raises(BalconError, match="adapts a ViT's attention and MLP layers"):
        apply_finetune(build_model(cfg.model, 4), cfg.model)


def test_missing_peft_is_named_before_the_data_is_read(tmp_path: Path, monkeypatch,
                                                       capsys):
    import sys

    monkeypatch.setitem(sys.modules, "peft", None)  # import peft raises ImportError
    code = main(["train", "--preset", "imagefolder-finetune", "--data-dir",
                 str(tmp_path / "absent"), "--out", str(tmp_path / "run"),
                 *[a for o in [*TINY, "model.encoder=timm:test_vit", "model.finetune=lora"]
                   for a in ("--set", o)]])
    err = capsys.readouterr().err
    assert code == 2 and "needs peft: pip install 'balcon[lora]'" in err
    assert "absent" not in err and "Traceback" not in err
