"""The benchmark tools that carry data and measure cost: they run, and they are right.

``benchmarks/cifar_lt_pack.py`` must make a copy from which a preset selects the same
long-tailed images, bit for bit (its ``pack`` asserts it; here on synthetic CIFAR-10),
and ``benchmarks/finetune_memory.py`` must measure balcon's own step for each mode.
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib
import json
import pickle
import sys
from pathlib import Path

import numpy as np
import pytest

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


@pytest.fixture
def bench_module():
    sys.path.insert(0, str(BENCHMARKS))
    yield importlib.import_module
    sys.path.remove(str(BENCHMARKS))


def write_cifar100(root: Path, train_per_class: int, seed: int) -> Path:
    """``root/cifar-100-python``: random pixels, each class ``train_per_class`` times in
    training and once in test, in a shuffled order; returns the folder."""
    folder = root / "cifar-100-python"
    folder.mkdir(parents=True)
    rng = np.random.RandomState(seed)
    for name, per_class in (("train", train_per_class), ("test", 1)):
        labels = np.repeat(np.arange(100), per_class)
        rng.shuffle(labels)
        pixels = rng.randint(0, 256, (len(labels), 3072)).astype(np.uint8)
        (folder / name).write_bytes(pickle.dumps(
            {"data": pixels, "fine_labels": labels.tolist()}, protocol=2))
    (folder / "meta").write_bytes(pickle.dumps(
        {"fine_label_names": [f"c{i:02d}" for i in range(100)]}, protocol=2))
    return folder


def test_cifar_lt_pack_round_trip_selects_the_same_images(bench_module, cifar10_root, tmp_path,
                                                          capsys):
    pack_tool = bench_module("cifar_lt_pack")
    pack_path = tmp_path / "lt.pack"
    pack_tool.pack(cifar10_root, pack_path, "cifar10-lt-r10")  # asserts the selection itself
    assert "selects the same" in capsys.readouterr().out
    obj = pickle.loads(pack_path.read_bytes())
    picked = obj["train_index"]
    assert 0 < len(picked) < 1000 and len(obj["test_webp"]) == 200
    out = tmp_path / "unpacked"
    pack_tool.unpack(pack_path, out)
    batch = pickle.loads((out / "cifar-10-batches-py" / "data_batch_1").read_bytes())
    data = np.asarray(batch["data"])
    assert data.shape == (1000, 3072) and len(batch["labels"]) == 1000
    unselected = np.setdiff1d(np.arange(1000), picked)
    assert not data[unselected].any()  # black placeholders
    original = pickle.loads((cifar10_root / "cifar-10-batches-py" / "data_batch_1").read_bytes(),
                            encoding="latin1")
    first = picked[picked < len(original["data"])]
    assert np.array_equal(data[first], np.asarray(original["data"])[first])  # lossless


def test_cifar100_pack_is_what_the_preset_reads_and_refuses_another_preset(bench_module,
                                                                          tmp_path):
    """The branch the GPU runs used: CIFAR-100 pickles, 100 classes (20 train, 1 test each)."""
    pack_tool = bench_module("cifar_lt_pack")
    write_cifar100(tmp_path / "full", train_per_class=20, seed=7)
    pack_path = tmp_path / "lt.pack"
    pack_tool.pack(tmp_path / "full", pack_path, "cifar100-lt-r10")  # asserts the selection
    out = tmp_path / "unpacked"
    pack_tool.unpack(pack_path, out, preset="cifar100-lt-r10")
    assert sorted(p.name for p in (out / "cifar-100-python").iterdir()) == ["meta", "test",
                                                                            "train"]
    with pytest.raises(SystemExit, match="holds the subset of cifar100-lt-r10, not "
                                         "cifar100-lt-r100"):
        pack_tool.unpack(pack_path, tmp_path / "other", preset="cifar100-lt-r100")


def test_finetune_memory_measures_each_mode(bench_module, tmp_path):
    """Its rows on the CPU: each mode's views, trainable parameters and a timed step
    (peak memory, the script's measurement, exists only on CUDA)."""
    tool = bench_module("finetune_memory")
    args = argparse.Namespace(encoder="timm:vit_tiny_patch16_224", size=32, batch=2,
                              precision="off", steps=1, warmup=0, device="cpu")
    data_dir = tool.tiny_folder(tmp_path / "data", size=32)
    rows = [tool.measure_one(args, data_dir, mode, method)
            for mode, method in (("lora", "bcl"), ("linear", "la"), ("full", "la"))]
    lora, linear, full = rows
    assert lora["views"] == 3 and 0 < lora["trainable"] < full["trainable"] == full["params"]
    assert lora["step_s"] > 0 and lora["peak_gib"] is None  # no CUDA: no memory column
    assert linear["step_s"] is None  # LA on a frozen encoder steps on cached features
    text = tool.table(rows, args)
    assert "| lora | bcl | 3 |" in text and "cached features" in text


def test_cpu_200ep_table_puts_each_epoch_on_its_machine(bench_module, tmp_path, capsys,
                                                        monkeypatch):
    tool = bench_module("cpu_200ep_table")
    run = tmp_path / "la"
    run.mkdir()
    line = ("{} epoch {}/200 lr 0.15 loss 2.0 (cls 2.0, con -) train-acc 40.00 160 img/s "
            "{}s (data wait 2%)")
    (run / "train.log").write_text("\n".join([
        line.format("2026-12-03 12:00:00", 1, "70.0"),
        line.format("2026-12-03 12:01:10", 2, "74.0"),
        line.format("2026-12-03 14:01:10", 3, "7200.0"),  # paused two hours inside it
        line.format("2026-12-04 16:06:00", 4, "46.0"),  # a stop inside epoch 4, redone:
        "2026-12-04 16:06:10 eval epoch 4 on test: top1 5.00",
        line.format("2026-12-04 16:07:00", 4, "45.0"),
    ]) + "\n")
    (run / "metrics.jsonl").write_text("\n".join(json.dumps(
        {"epoch": e, "top1": t, "many": 1.0, "medium": 2.0, "few": 3.0})
        for e, t in ((3, 9.0), (4, 7.5))) + "\n")
    (tmp_path / "machines.log").write_text(
        "2026-12-03T11:50:00+00:00\tCPU A; flags a\n2026-12-04T16:05:00+00:00\tCPU B; flags b\n")
    monkeypatch.setattr(sys, "argv", ["cpu_200ep_table.py", str(tmp_path)])
    tool.main()
    row = next(x for x in capsys.readouterr().out.splitlines() if x.startswith("| la"))
    assert "| la | 4 | 7.50 (4) | 9.00 (3) | 1.00 | 2.00 | 3.00 |" in row
    assert "CPU A: 3, 74.0 s; CPU B: 1, 45.0 s" in row  # epoch 4 once, its last line
    # idle-machine time: each machine's epochs times its median; the raw sum keeps the pause
    idle, summed = (3 * 74.0 + 45) / 3600, (70 + 74 + 7200 + 45) / 3600
    assert f"| {idle:.1f} h | {summed:.1f} h |" in row


def test_cpu_200ep_table_groups_finished_seeds_by_recipe(bench_module, tmp_path, capsys,
                                                        monkeypatch):
    """Finished runs of one recipe (the name without -s<seed>) give mean +- sd; a run not
    at its last epoch is left out of the means."""
    tool = bench_module("cpu_200ep_table")
    line = "2026-12-05 12:00:00 epoch {}/200 lr 0.1 loss 1.0 (cls 1.0, con -) 1.0s (data wait 2%)\n"
    for name, top1, epoch in (("bcl", 50.0, 200), ("bcl-s1", 52.0, 200), ("la", 49.0, 200),
                              ("la-s1", 10.0, 40)):
        (tmp_path / name).mkdir()
        (tmp_path / name / "train.log").write_text(line.format(epoch))
        (tmp_path / name / "metrics.jsonl").write_text(json.dumps(
            {"epoch": epoch, "top1": top1, "many": top1 + 10, "medium": top1, "few": 30.0}) + "\n")
    monkeypatch.setattr(sys, "argv", ["cpu_200ep_table.py", str(tmp_path)])
    tool.main()
    out = capsys.readouterr().out
    assert "| bcl | 2 | 50.00, 52.00 | 51.00 +- 1.41 | 61.00 +- 1.41 | 51.00 +- 1.41 | " \
           "30.00 +- 0.00 |" in out
    assert "| la | 1 | 49.00 | 49.00 | 59.00 | 49.00 | 30.00 |" in out  # la-s1 unfinished
    assert tool.recipe_of("bcl-workers-s12") == "bcl-workers" and tool.recipe_of("c10-bcl") \
        == "c10-bcl"


def test_bcl_equivalence_finds_balcon_step_equal_to_the_reference(bench_module, monkeypatch,
                                                                  capsys):
    """balcon's BCL step (model, heads, prototypes from the classifier, loss, BatchNorm over
    the stacked views, SGD) against the published-way reference trainer's, from the same
    weights on the same batches: equal within float32 rounding (issue 19, point 6)."""
    equivalence = bench_module("bcl_equivalence")
    monkeypatch.setattr(sys, "argv", ["bcl_equivalence.py", "--steps", "2", "--batch", "24"])
    assert equivalence.main() == 0
    out = capsys.readouterr().out
    assert "start: largest relative difference 0.00e+00" in out
    assert "SAME" in out and "epoch 6" not in out  # the lr differs in the warm-up only


def test_bcl_equivalence_sees_a_wrong_prototype_head(bench_module, monkeypatch, capsys):
    """The check has teeth: prototypes taken from a mis-oriented weight are caught."""
    import torch.nn.functional as F

    from balcon.models import BCLModel

    equivalence = bench_module("bcl_equivalence")

    def wrong(self):  # class k's prototype made from class C - 1 - k's weight vector
        return F.normalize(self.prototype_head(self.classifier.weight.flip(0)), dim=1)

    monkeypatch.setattr(BCLModel, "prototypes", wrong)
    monkeypatch.setattr(sys, "argv", ["bcl_equivalence.py", "--steps", "1", "--batch", "24"])
    assert equivalence.main() == 1
    assert "DIFFERENT" in capsys.readouterr().out


def test_run_spread_compares_two_runs_class_by_class(bench_module, tmp_path, monkeypatch,
                                                      capsys):
    import torch

    spread = bench_module("run_spread")
    counts = [200] * 2 + [50] * 2 + [10] * 2  # two many, two medium, two few classes
    accs = {"a": [60.0, 50.0, 40.0, 30.0, 20.0, 10.0], "b": [58.0, 50.0, 40.0, 34.0, 20.0, 4.0]}
    for name, acc in accs.items():
        run = tmp_path / name
        run.mkdir()
        rec = {"epoch": 200, "top1": sum(acc) / 6, "per_class": acc}
        (run / "metrics.jsonl").write_text(json.dumps({"epoch": 100, "top1": 1.0}) + "\n"
                                           + json.dumps(rec) + "\n")
        torch.save({"class_counts": counts}, run / "last.pt")
    monkeypatch.setattr(sys, "argv", ["run_spread.py", f"x={tmp_path / 'a'},{tmp_path / 'b'}"])
    spread.main()
    row = capsys.readouterr().out.splitlines()[-1].split("|")
    # differences +2, 0, 0, -4, 0, +6: mean +0.67, sd 3.27; many +1, medium -2, few +3
    assert [c.strip() for c in row[4:9]] == ["+0.67", "+0.67 +- 3.27", "+1.00", "-2.00",
                                             "+3.00"]
    assert row[9].strip() == f"{3.2660 / (12 ** 0.5):.2f}"


def test_reference_trainer_reads_the_pickle_layout_and_selects_balcon_s_images(
        bench_module, tmp_path, monkeypatch, capsys):
    """What `balcon train --download` fetches, the reference reads too: the same long-tailed
    images (pixels and labels, in order) as balcon's preset, then one LA epoch trains."""
    from balcon.config import load_preset
    from balcon.data import load_image_sets

    ref = bench_module("reference_trainer")
    folder = write_cifar100(tmp_path, train_per_class=6, seed=3)
    train, test = ref.load_sets(tmp_path)
    keep = ref.longtail_subset(train.targets, 100, imbalance=3.0)
    cfg = load_preset("cifar100-lt-r100").data
    balcon_train = load_image_sets(dataclasses.replace(cfg, imbalance=3.0), tmp_path).train
    assert np.array_equal(train.data[keep], balcon_train.pixels)
    assert np.array_equal(np.array(train.targets)[keep], balcon_train.labels)
    (tmp_path / "cifar-10-batches-py").mkdir()  # both layouts: the reference asks which
    with pytest.raises(SystemExit, match="holds both CIFAR-10 and CIFAR-100; pass --dataset"):
        ref.load_sets(tmp_path)
    assert len(ref.load_sets(tmp_path, "cifar100")[0]) == 600
    (tmp_path / "cifar-10-batches-py").rmdir()
    image, label = test[0]
    assert image.shape == (3, 32, 32) and label == pickle.loads(
        (folder / "test").read_bytes())["fine_labels"][0]

    out = tmp_path / "ref.jsonl"
    monkeypatch.setattr(sys, "argv", [
        "reference_trainer.py", str(tmp_path), str(out), "--method", "la", "--epochs", "1",
        "--warmup", "1", "--milestones", "1", "1", "--imbalance", "3", "--workers", "0",
        "--batch", "64"])
    ref.main()
    records = [json.loads(line) for line in out.read_text().splitlines()]
    assert sum(records[0]["counts"]) == len(keep) and records[1]["epoch"] == 1
    assert 0 <= records[1]["top1"] <= 100


def test_cpu_200ep_goal_checks_each_criterion(bench_module, tmp_path, capsys, monkeypatch):
    tool = bench_module("cpu_200ep_goal")

    def run(name: str, method: str, top1: float, epochs: int = 200, seed: int = 0) -> None:
        folder = tmp_path / name
        folder.mkdir(exist_ok=True)
        (folder / "config.yaml").write_text(
            f"name: cifar100-lt-r100\ndata:\n  dataset: cifar100\nloss:\n  method: {method}\n"
            f"train:\n  epochs: 200\n  precision: 'off'\n  seed: {seed}\n")
        (folder / "train.log").write_text(
            f"2026-12-03 12:02:48 run x: cifar100-lt-r100, {method}, 10847 train / 10000 "
            "test images, 100 classes, device cpu\n")
        (folder / "metrics.jsonl").write_text("".join(
            json.dumps({"epoch": e, "top1": top1 - (e < epochs)}) + "\n"
            for e in range(10, epochs + 1, 10)))

    def verdicts() -> tuple[int, list[str]]:
        monkeypatch.setattr(sys, "argv", ["cpu_200ep_goal.py", str(tmp_path)])
        code = tool.main()
        return code, [line[:4] for line in capsys.readouterr().out.splitlines()[:-1]]

    run("la", "la", 50.46)
    run("bcl", "bcl", 51.39)
    assert verdicts() == (0, ["PASS"] * 8)
    run("bcl", "bcl", 50.66)  # above LA, under 51.0
    assert verdicts() == (1, ["PASS"] * 6 + ["FAIL", "PASS"])
    run("bcl", "bcl", 51.2, epochs=190)  # not finished: its best is no epoch-200 top-1
    assert verdicts() == (1, ["PASS"] * 3 + ["FAIL"] + ["PASS"] * 2 + ["FAIL"] * 2)
    run("bcl", "bcl", 51.39, seed=1)
    assert verdicts() == (1, ["PASS"] * 4 + ["FAIL"] + ["PASS"] * 3)
