"""Accuracy metrics against plain loops written from their definitions."""

from __future__ import annotations

import pytest
import torch

from balcon.engine.metrics import classification_metrics


def _slow_metrics(logits: list[list[float]], labels: list[int], train_counts: list[int]) -> dict:
    """Top-1, top-k, per-class and shot-group accuracy, one image and one class at a time.

    A shot group's score is the mean over its classes that have test images of their
    accuracies (not the accuracy pooled over the group's images); many-shot: more than
    100 training images, few-shot: fewer than 20.
    """
    num_classes = len(train_counts)
    k = min(5, num_classes)
    top1_hits = topk_hits = 0
    hits, totals = [0] * num_classes, [0] * num_classes
    for row, label in zip(logits, labels, strict=True):
        ranked = sorted(range(num_classes), key=lambda c: -row[c])
        top1_hits += ranked[0] == label
        topk_hits += label in ranked[:k]
        totals[label] += 1
        hits[label] += ranked[0] == label
    per_class = [100.0 * h / n if n else None for h, n in zip(hits, totals, strict=True)]
    out = {"top1": 100.0 * top1_hits / len(labels) if labels else None,
           "top5": 100.0 * topk_hits / len(labels) if labels else None,
           "top5_k": k, "per_class": per_class}
    for name, member in (("many", lambda n: n > 100), ("medium", lambda n: 20 <= n <= 100),
                         ("few", lambda n: n < 20)):
        accs = [per_class[c] for c in range(num_classes)
                if member(train_counts[c]) and per_class[c] is not None]
        out[name] = sum(accs) / len(accs) if accs else None
    return out


def _assert_same(fast: dict, slow: dict) -> None:
    assert fast.keys() == slow.keys()
    for key, value in slow.items():
        if isinstance(value, list):
            assert fast[key] == pytest.approx(value, abs=1e-9), key
        elif value is None:
            assert fast[key] is None, key
        else:
            assert fast[key] == pytest.approx(value, abs=1e-9), key


@pytest.mark.parametrize("num_classes", [3, 4, 12])
def test_classification_metrics_against_loops(num_classes: int):
    gen = torch.Generator().manual_seed(num_classes)
    # training counts over all three groups (a 3-class case has one class in each); the
    # last class has no test image, so its accuracy is None and its group mean skips it
    train_counts = [500, 101, 100, 20, 19, 5, 300, 60, 7, 150, 40, 2][:num_classes]
    labels = torch.randint(0, num_classes - 1, (200,), generator=gen)
    logits = torch.randn(200, num_classes, generator=gen)
    logits[torch.arange(60, 120), labels[60:120]] += 3.0  # mostly right on these
    fast = classification_metrics(logits, labels, train_counts)
    slow = _slow_metrics(logits.tolist(), labels.tolist(), train_counts)
    _assert_same(fast, slow)
    assert fast["per_class"][-1] is None
    assert fast["top5_k"] == min(5, num_classes)
    # the group score is a mean over classes, not over images: they differ here
    many = [c for c in range(num_classes) if train_counts[c] > 100 and
            fast["per_class"][c] is not None]
    if len(many) > 1:
        pooled = 100.0 * sum(
            int(logits[i].argmax() == labels[i]) for i in range(200) if int(labels[i]) in many
        ) / sum(int(labels[i]) in many for i in range(200))
        assert fast["many"] != pytest.approx(pooled, abs=1e-6)


def test_classification_metrics_empty_groups_and_no_labels():
    # no few-shot class: "few" is None; no test images at all: top-1, top-5 and every
    # group are None
    counts = [200, 50]
    logits = torch.tensor([[2.0, 1.0], [0.0, 1.0], [3.0, 0.0]])
    labels = torch.tensor([0, 0, 1])
    fast = classification_metrics(logits, labels, counts)
    _assert_same(fast, _slow_metrics(logits.tolist(), labels.tolist(), counts))
    assert fast["few"] is None and fast["many"] == pytest.approx(50.0)
    assert fast["medium"] == pytest.approx(0.0) and fast["top5"] == pytest.approx(100.0)
    empty = classification_metrics(torch.zeros(0, 2), torch.zeros(0, dtype=torch.long), counts)
    assert empty["top1"] is None and empty["top5"] is None
    assert empty["per_class"] == [None, None]
    assert all(empty[g] is None for g in ("many", "medium", "few"))


def test_classification_metrics_refuses_a_class_count_mismatch():
    with pytest.raises(ValueError, match="train_counts has 3 classes, logits have 2"):
        classification_metrics(torch.zeros(1, 2), torch.zeros(1, dtype=torch.long), [1, 2, 3])
