"""Carry a CIFAR long-tailed training subset and the test set to a machine in ~40 MB.

The lent GPU machine takes at most 64 MiB of data, and CIFAR-100 is 180 MB of pixels. A
preset's long-tailed subset (``cifar100-lt-r100``: 10,847 images) plus the test set fits
as lossless WebP. ``unpack`` rebuilds torchvision's pickle layout with every training
position present, the unselected images as black placeholders: the selection
(``balcon.data.longtail``) reads only labels and positions, so the preset picks the same
images it picks from the full set, and the run is the same command on the same pixels.

    python benchmarks/cifar_lt_pack.py pack DATA_DIR PACK [--preset cifar100-lt-r100]
    python benchmarks/cifar_lt_pack.py unpack PACK DATA_DIR [--preset cifar100-lt-r100]

``pack`` needs balcon (the preset's imbalance and seed) and checks its own work: it
unpacks into a temporary folder and asserts that balcon selects bit-identical training
images and test images there as from DATA_DIR. ``unpack`` needs only numpy and Pillow;
with ``--preset`` it refuses a pack made for another preset. Only that preset's subset
is real: a run with another ``data.imbalance`` or ``data.subsample_seed`` would pick
black placeholders (``reproduce_cifar.sh`` refuses such overrides with a pack).
"""

from __future__ import annotations

import argparse
import io
import pickle
import sys
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image

FOLDER = {"cifar10": "cifar-10-batches-py", "cifar100": "cifar-100-python"}


def _webp(pixels: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, format="WEBP", lossless=True, quality=100, method=2)
    return buf.getvalue()


def _decode(blob: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(blob)).convert("RGB"))


def _selected_sets(data_dir: Path, preset: str):
    """balcon's training (long-tailed) and test ImageSets of ``preset`` read from data_dir."""
    from balcon.config import load_preset
    from balcon.data import load_image_sets

    splits = load_image_sets(load_preset(preset).data, data_dir)
    return splits.train, splits.test


def pack(data_dir: Path, out: Path, preset: str) -> None:
    from balcon.config import load_preset
    from balcon.data.cifar import load_cifar
    from balcon.data.longtail import longtail_counts, longtail_indices

    data = load_preset(preset).data
    full_train, test = load_cifar(data_dir, data.dataset)
    counts = longtail_counts(max(full_train.class_counts()), full_train.num_classes,
                             data.imbalance, data.profile)
    picked = np.sort(longtail_indices(full_train.labels, counts, data.subsample_seed))
    obj = {
        "dataset": data.dataset, "preset": preset, "class_names": full_train.class_names,
        "train_labels": np.asarray(full_train.labels, dtype=np.int64),
        "train_index": picked,
        "train_webp": [_webp(full_train.pixels[i]) for i in picked],
        "test_labels": np.asarray(test.labels, dtype=np.int64),
        "test_webp": [_webp(p) for p in test.pixels],
    }
    out.write_bytes(pickle.dumps(obj, protocol=4))
    print(f"{out}: {len(picked)} training images of {len(full_train)}, {len(test)} test "
          f"images, {out.stat().st_size / 2**20:.1f} MiB")
    with tempfile.TemporaryDirectory() as tmp:  # the proof: the same selection, bit for bit
        unpack(out, Path(tmp))
        want_train, want_test = _selected_sets(data_dir, preset)
        got_train, got_test = _selected_sets(Path(tmp), preset)
        for name, want, got in (("train", want_train, got_train), ("test", want_test, got_test)):
            assert np.array_equal(want.labels, got.labels), f"{name} labels differ"
            assert np.array_equal(want.pixels, got.pixels), f"{name} pixels differ"
            assert want.class_names == got.class_names, f"{name} class names differ"
        print(f"checked: {preset} selects the same {len(got_train)} training images "
              f"(bit-identical) and the same {len(got_test)} test images from the unpacked copy")


def _pickle_batch(pixels: np.ndarray, labels: np.ndarray, dataset: str) -> dict:
    key = "labels" if dataset == "cifar10" else "fine_labels"
    flat = pixels.transpose(0, 3, 1, 2).reshape(len(pixels), 3 * 32 * 32)  # R plane, G, B
    return {"data": flat, key: labels.tolist()}


def unpack(pack_path: Path, data_dir: Path, preset: str | None = None) -> None:
    obj = pickle.loads(pack_path.read_bytes())
    if preset is not None and preset != obj["preset"]:
        # its unselected images are black: another imbalance or seed would train on them
        sys.exit(f"{pack_path} holds the subset of {obj['preset']}, not {preset}: make a "
                 f"pack for {preset} (cifar_lt_pack.py pack DATA_DIR PACK --preset {preset})")
    dataset, names = obj["dataset"], obj["class_names"]
    labels = obj["train_labels"]
    train = np.zeros((len(labels), 32, 32, 3), dtype=np.uint8)  # black placeholders
    for i, blob in zip(obj["train_index"], obj["train_webp"], strict=True):
        train[i] = _decode(blob)
    test = np.stack([_decode(b) for b in obj["test_webp"]])
    folder = data_dir / FOLDER[dataset]
    folder.mkdir(parents=True, exist_ok=True)

    def dump(name: str, value: dict) -> None:
        (folder / name).write_bytes(pickle.dumps(value, protocol=4))

    if dataset == "cifar10":
        dump("data_batch_1", _pickle_batch(train, labels, dataset))
        for k in range(2, 6):  # torchvision's five files; the first holds everything
            dump(f"data_batch_{k}", _pickle_batch(train[:0], labels[:0], dataset))
        dump("test_batch", _pickle_batch(test, obj["test_labels"], dataset))
        dump("batches.meta", {"label_names": names})
    else:
        dump("train", _pickle_batch(train, labels, dataset))
        dump("test", _pickle_batch(test, obj["test_labels"], dataset))
        dump("meta", {"fine_label_names": names})
    print(f"{folder}: {len(obj['train_index'])} real training images among {len(labels)} "
          f"positions, {len(test)} test images")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = ap.add_subparsers(dest="verb", required=True)
    p = sub.add_parser("pack", help="DATA_DIR (torchvision's pickles) -> PACK")
    p.add_argument("data_dir", type=Path)
    p.add_argument("pack", type=Path)
    p.add_argument("--preset", default="cifar100-lt-r100")
    u = sub.add_parser("unpack", help="PACK -> DATA_DIR/<torchvision's pickle folder>")
    u.add_argument("pack", type=Path)
    u.add_argument("data_dir", type=Path)
    u.add_argument("--preset", help="refuse a pack made for another preset")
    a = ap.parse_args()
    if a.verb == "pack":
        pack(a.data_dir, a.pack, a.preset)
    else:
        unpack(a.pack, a.data_dir, a.preset)


if __name__ == "__main__":
    sys.exit(main())
