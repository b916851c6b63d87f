"""The benchmark tools that carry data and measure cost: they run, and they are right.

``benchmarks/cifar_lt_pack.py`` must make a copy from which a preset selects the same
long-tailed images, bit for bit (its ``pack`` asserts it; here on synthetic CIFAR-10),
and ``benchmarks/finetune_memory.py`` must measure balcon's own step for each mode.
"""

from __future__ import annotations

import argparse
import importlib
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


def test_finetune_memory_measures_each_mode(bench_module, tmp_path):
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
