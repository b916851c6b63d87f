"""ImageNet-LT, iNaturalist and image-folder runs, shrunk: split files, val/test, presets.

The large presets run here as they ship, with overrides only for size: a handful of
small images, a few classes, one epoch. The backbones (ResNeXt-50, ResNet-50) and
heads (2048 -> 2048 -> 1024) are the real ones.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from balcon.cli import main
from balcon.config import apply_overrides, compress_schedule
from balcon.models import build_encoder
from balcon.presets import load_preset
from balcon.runs import evaluate_checkpoint, fit, load_checkpoint

SYNSETS = ["n01440764", "n01443537", "n01484850", "n01491361"]
#: A shrunk run of a 224-px preset: 32-px images, 4 classes, batch 8, one epoch.
SHRINK = ["data.num_classes=4", "data.image_size=32", "train.batch_size=8", "train.epochs=1",
          "data.num_workers=0"]


def _write_image(path: Path, rng: np.random.RandomState, mode: str = "RGB") -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    pixels = rng.randint(0, 256, size=(30, 40, 3)).astype(np.uint8)
    Image.fromarray(pixels).convert(mode).save(path)


@pytest.fixture
def split_root(tmp_path: Path) -> Path:
    """An ImageNet-LT-like root: train/val/test images listed by split files, 4 classes.

    Training counts 6, 4, 3, 2; val 1 a class; test 2 a class; one grayscale image.
    """
    rng = np.random.RandomState(5)
    root = tmp_path / "imagenet"
    for split, counts in (("train", (6, 4, 3, 2)), ("val", (1,) * 4), ("test", (2,) * 4)):
        lines = []
        for label, (synset, n) in enumerate(zip(SYNSETS, counts, strict=True)):
            for i in range(n):
                rel = f"{split}/{synset}/{synset}_{i}.JPEG"
                _write_image(root / rel, rng, mode="L" if (split, label, i) == ("train", 1, 0)
                             else "RGB")
                lines.append(f"{rel} {label}")
        (root / f"ImageNet_LT_{split}.txt").write_text("\n".join(lines) + "\n")
    for split in ("train", "val"):
        text = (root / f"ImageNet_LT_{split}.txt").read_text()
        (root / f"iNaturalist18_{split}.txt").write_text(text)
    return root


def records_of(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]


@pytest.mark.parametrize("preset", ["imagenet-lt-resnext50", "imagenet-lt-resnet50"])
def test_imagenet_lt_presets_select_on_val_and_report_on_test(preset, split_root, tmp_path):
    run = tmp_path / "run"
    result = fit(apply_overrides(load_preset(preset), SHRINK), split_root, run, device="cpu")
    (record,) = records_of(run)
    assert record["split"] == "val" and record["epoch"] == 1
    summary = json.loads((run / "summary.json").read_text())
    assert summary == json.loads(json.dumps(result.summary))
    assert summary["selection_split"] == "val" and summary["report_split"] == "test"
    assert summary["last"]["split"] == summary["best"]["split"] == "test"
    assert summary["last"]["top5_k"] == 4
    assert summary["selection"]["last"]["top1"] == record["top1"]
    assert list(summary["per_class"]) == SYNSETS  # class names from the synset folders
    state = load_checkpoint(run / "last.pt")
    assert state["class_names"] == SYNSETS and state["class_counts"] == [6, 4, 3, 2]
    assert state["config"]["model"]["encoder"] == load_preset(preset).model.encoder
    log = (run / "train.log").read_text()
    assert "15 train / 4 val, 8 test images" in log
    assert "model selection on val, final report on test" in log
    # eval: the report split by default, val on request; the same numbers as the run
    test_metrics, predictions = evaluate_checkpoint(run / "last.pt", device="cpu")
    assert test_metrics["split"] == "test" and test_metrics["images"] == 8
    assert test_metrics["top1"] == pytest.approx(summary["last"]["top1"])
    assert predictions.sources[0].endswith("test/n01440764/n01440764_0.JPEG")
    val_metrics, _ = evaluate_checkpoint(run / "last.pt", device="cpu", split="val")
    assert val_metrics["top1"] == pytest.approx(record["top1"])


def test_inat_preset_reports_on_val(split_root, tmp_path, capsys):
    run = tmp_path / "run"
    fit(apply_overrides(load_preset("inat18-resnet50"), SHRINK), split_root, run, device="cpu")
    summary = json.loads((run / "summary.json").read_text())
    assert summary["selection_split"] == summary["report_split"] == "val"
    assert summary["last"]["split"] == "val" and "selection" not in summary
    assert records_of(run)[0]["split"] == "val"
    capsys.readouterr()
    preds = tmp_path / "new" / "folder" / "preds.csv"
    assert main(["eval", "--checkpoint", str(run / "last.pt"), "--device", "cpu",
                 "--predictions", str(preds)]) == 0
    assert "epoch 1, val" in capsys.readouterr().out
    assert len(preds.read_text().splitlines()) == 1 + 4
    assert main(["eval", "--checkpoint", str(run / "last.pt"), "--split", "test"]) == 2
    err = capsys.readouterr().err.strip()
    assert err == "balcon: error: this data has no test split; choose one it has: train, val"


@pytest.mark.parametrize("strategy", ["sim-rand", "rand-rand"])
def test_view_strategies_train(strategy, split_root, tmp_path):
    cfg = apply_overrides(load_preset("imagenet-lt-resnet50"), [
        *SHRINK, f"data.view_strategy={strategy}", "model.encoder=resnet18",
        "model.head_hidden=64", "model.head_dim=32"])
    result = fit(cfg, split_root, tmp_path / "run", device="cpu")
    assert result.summary["last"]["epoch"] == 1


def test_bad_split_file_line_is_one_line_error(split_root, tmp_path, capsys):
    split = split_root / "ImageNet_LT_val.txt"
    split.write_text(split.read_text() + "val/n01440764/n01440764_0.JPEG seven\n")
    args = ["train", "--preset", "imagenet-lt-resnet50", "--data-dir", str(split_root),
            "--out", str(tmp_path / "run")] + [x for item in SHRINK for x in ("--set", item)]
    assert main(args) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    assert "ImageNet_LT_val.txt:5" in err and "seven" in err
    # the config comes first; a run that never trained leaves only the log of why
    assert {p.name for p in (tmp_path / "run").iterdir()} <= {"config.yaml", "run.json",
                                                              ".lock", "train.log"}
    assert " stopped: " in (tmp_path / "run" / "train.log").read_text().splitlines()[-1]


def test_image_folder_with_subsampling_grayscale_and_no_held_out_split(tmp_path, capsys):
    """imagefolder-r32 on a balanced train/ folder made long-tailed; no val or test."""
    rng = np.random.RandomState(8)
    root = tmp_path / "pets"
    for cls in ("cat", "dog", "fox"):
        for i in range(12):
            mode = {("dog", 3): "L", ("fox", 0): "RGBA", ("cat", 5): "P"}.get((cls, i), "RGB")
            _write_image(root / "train" / cls / f"{i}.png", rng, mode)
    run = tmp_path / "run"
    args = ["train", "--preset", "imagefolder-r32", "--data-dir", str(root), "--out", str(run),
            "--epochs", "1", "--set", "data.imbalance=4", "--set", "model.encoder=resnet8",
            "--set", "train.batch_size=8", "--set", "data.num_workers=0"]
    assert main(args) == 0
    state = load_checkpoint(run / "last.pt")
    assert state["class_names"] == ["cat", "dog", "fox"]
    assert state["class_counts"] == [12, 6, 3]
    log = (run / "train.log").read_text()
    assert "no val or test split" in log
    summary = json.loads((run / "summary.json").read_text())
    assert summary["report_split"] == "train" and summary["last"]["split"] == "train"
    assert set(summary["per_class"]) == {"cat", "dog", "fox"}
    assert "train)" in capsys.readouterr().out  # the results table names the split


def test_image_folder_r50_with_val_and_test_folders(tmp_path):
    rng = np.random.RandomState(9)
    root = tmp_path / "birds"
    for split, n in (("train", 4), ("val", 1), ("test", 2)):
        for cls in ("owl", "tit"):
            for i in range(n if (split, cls) != ("train", "tit") else 2):
                _write_image(root / split / cls / f"{i}.jpg", rng)
    cfg = apply_overrides(load_preset("imagefolder-r50"), [
        "data.image_size=32", "train.batch_size=4", "train.epochs=1", "data.num_workers=0",
        "model.channels_last=true"])
    result = fit(cfg, root, tmp_path / "run", device="cpu")
    assert result.summary["selection_split"] == "val"
    assert result.summary["report_split"] == "test"
    metrics, _ = evaluate_checkpoint(tmp_path / "run" / "best.pt", device="cpu")
    assert metrics["top1"] == pytest.approx(result.summary["best"]["top1"])


def test_pretrained_encoder_weights_start_the_run(tmp_path, cifar10_shared_root):
    torch.manual_seed(123)
    encoder = build_encoder("resnet8")
    weights = tmp_path / "resnet8.pth"
    torch.save({"state_dict": {f"module.{k}": v for k, v in encoder.state_dict().items()}},
               weights)
    cfg = apply_overrides(compress_schedule(load_preset("cifar10-lt-r100"), 1), [
        "model.encoder=resnet8", "data.imbalance=10", "train.batch_size=64",
        "data.num_workers=0", f"model.pretrained={weights}", "optim.lr=1e-9",
        "optim.warmup_epochs=0"])
    run = tmp_path / "run"
    fit(cfg, cifar10_shared_root, run, device="cpu")
    assert "encoder weights: loaded" in (run / "train.log").read_text()
    trained = load_checkpoint(run / "last.pt")["model"]
    for key, value in encoder.state_dict().items():
        if key.endswith(".weight") and value.ndim == 4:  # conv weights barely moved
            torch.testing.assert_close(trained[f"encoder.{key}"], value, atol=1e-6, rtol=0)


def test_cifar100_preset_smoke(cifar100_root, tmp_path):
    """The CIFAR-100-LT recipe end to end (5 images a class on disk, so imbalance 5)."""
    cfg = apply_overrides(compress_schedule(load_preset("cifar100-lt-r100"), 1), [
        "data.imbalance=5", "model.encoder=resnet8", "train.batch_size=64",
        "data.num_workers=0"])
    result = fit(cfg, cifar100_root, tmp_path / "run", device="cpu")
    assert result.summary["report_split"] == "test"
    assert len(result.summary["per_class"]) == 100
    assert load_checkpoint(tmp_path / "run" / "last.pt")["class_counts"][-1] == 1


def test_split_file_run_errors_say_what_to_set(split_root, tmp_path, capsys):
    base = ["train", "--preset", "imagenet-lt-resnet50", "--data-dir", str(split_root),
            "--out", str(tmp_path / "run"), "--set", "data.image_size=32"]
    assert main(base) == 2  # the preset's 1000 classes, 4 on disk
    err = capsys.readouterr().err
    assert "has no training images (996 such classes)" in err and "data.num_classes" in err
    (split_root / "ImageNet_LT_test.txt").unlink()
    assert main([*base, "--set", "data.num_classes=4"]) == 2
    assert "set data.test_split=null to run without a test split" in capsys.readouterr().err
    # the config comes first; a run that never trained leaves only the log of why
    assert {p.name for p in (tmp_path / "run").iterdir()} <= {"config.yaml", "run.json",
                                                              ".lock", "train.log"}
    assert " stopped: " in (tmp_path / "run" / "train.log").read_text().splitlines()[-1]
