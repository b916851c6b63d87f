"""The losses against slow references written from the formulas in RECIPES.md."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from balcon.losses import BalancedContrastiveLoss, LogitAdjustedLoss


def reference_bcl(features, labels, prototypes, temperature, averaging, complement):
    """BCL loss with plain loops over anchors and contrast rows (float64)."""
    feats = features.double()
    batch = feats.shape[0]
    rows = [feats[i, 0] for i in range(batch)] + [feats[i, 1] for i in range(batch)]
    tags = [int(y) for y in labels] * 2
    if complement:
        rows += [p.double() for p in prototypes]
        tags += list(range(prototypes.shape[0]))
    count = {}
    for t in tags:
        count[t] = count.get(t, 0) + 1
    total = 0.0
    for i in range(2 * batch):
        s = [float(rows[i] @ rows[j]) / temperature for j in range(len(rows))]
        denom = 0.0
        positives = []
        for j in range(len(rows)):
            if j == i:
                continue
            weight = (count[tags[j]] - (tags[j] == tags[i])) if averaging else 1
            denom += math.exp(s[j]) / weight
            if tags[j] == tags[i]:
                positives.append(s[j])
        total += -sum(sp - math.log(denom) for sp in positives) / len(positives)
    return total / (2 * batch)


def random_inputs(batch, classes, dim, seed, labels=None, dtype=torch.float32):
    gen = torch.Generator().manual_seed(seed)
    feats = F.normalize(torch.randn(batch, 2, dim, generator=gen, dtype=dtype), dim=2)
    protos = F.normalize(torch.randn(classes, dim, generator=gen, dtype=dtype), dim=1)
    if labels is None:
        labels = torch.randint(0, classes, (batch,), generator=gen)
    return feats, torch.as_tensor(labels), protos


SWITCHES = [(True, True), (True, False), (False, True), (False, False)]


@pytest.mark.parametrize("averaging,complement", SWITCHES)
@pytest.mark.parametrize(
    "batch,classes,labels",
    [
        (12, 5, None),  # random labels
        (6, 10, [0, 0, 0, 3, 3, 7]),  # most classes absent from the batch
        (5, 4, [0, 1, 1, 2, 2]),  # class 0 has a single sample
        (1, 3, [2]),  # B = 1
        (8, 1000, None),  # C = 1000
    ],
)
def test_bcl_matches_reference(batch, classes, labels, averaging, complement):
    for seed in range(2):
        feats, labels_t, protos = random_inputs(batch, classes, 16, seed, labels)
        loss = BalancedContrastiveLoss(0.1, averaging, complement)
        got = loss(features=feats, labels=labels_t, prototypes=protos).item()
        want = reference_bcl(feats, labels_t, protos, 0.1, averaging, complement)
        # abs: B = 1 without prototypes has a true loss of 0 (float32 rounding at 1/T).
        assert got == pytest.approx(want, rel=1e-5, abs=2e-6), (seed, got, want)


def test_bcl_other_temperature_and_supcon_ignores_prototypes():
    feats, labels, protos = random_inputs(10, 4, 8, 3)
    got = BalancedContrastiveLoss(0.07)(features=feats, labels=labels, prototypes=protos)
    assert got.item() == pytest.approx(reference_bcl(feats, labels, protos, 0.07, True, True),
                                       rel=1e-5)
    supcon = BalancedContrastiveLoss(0.1, False, False)
    a = supcon(features=feats, labels=labels, prototypes=protos)
    b = supcon(features=feats, labels=labels, prototypes=None)
    assert a.item() == b.item()


@pytest.mark.parametrize("averaging,complement", SWITCHES)
def test_bcl_gradcheck(averaging, complement):
    feats, labels, protos = random_inputs(4, 3, 5, 7, [0, 0, 2, 1], dtype=torch.float64)
    feats.requires_grad_(True)
    protos.requires_grad_(True)
    loss = BalancedContrastiveLoss(0.5, averaging, complement)

    def fn(f, p):
        return loss._loss(f, labels, p)

    assert torch.autograd.gradcheck(fn, (feats, protos))


def test_bcl_gradient_matches_reference_autograd():
    """Gradients of the fast loss equal those of the loop reference, through autograd."""
    feats, labels, protos = random_inputs(6, 4, 8, 11, [0, 1, 1, 3, 3, 3], dtype=torch.float64)
    f1, p1 = feats.clone().requires_grad_(), protos.clone().requires_grad_()
    BalancedContrastiveLoss(0.1)._loss(f1, labels, p1).backward()

    def ref_torch(f, p):
        rows = torch.cat([f[:, 0], f[:, 1], p])
        tags = torch.cat([labels, labels, torch.arange(p.shape[0])]).tolist()
        count = {t: tags.count(t) for t in set(tags)}
        total = 0
        for i in range(2 * f.shape[0]):
            s = rows @ rows[i] / 0.1
            denom = sum(s[j].exp() / (count[tags[j]] - (tags[j] == tags[i]))
                        for j in range(len(tags)) if j != i)
            pos = [s[j] for j in range(len(tags)) if j != i and tags[j] == tags[i]]
            total = total - sum(sp - denom.log() for sp in pos) / len(pos)
        return total / (2 * f.shape[0])

    f2, p2 = feats.clone().requires_grad_(), protos.clone().requires_grad_()
    ref_torch(f2, p2).backward()
    torch.testing.assert_close(f1.grad, f2.grad, rtol=1e-7, atol=1e-10)
    torch.testing.assert_close(p1.grad, p2.grad, rtol=1e-7, atol=1e-10)


def test_bcl_gradient_is_bit_identical_run_to_run_on_a_multithreaded_cpu():
    """The recipe's sizes (2B x D = 512 x 128, above PyTorch's parallel grain) on 2 threads:
    a backward that adds with float atomics (``x[idx]``'s) differs in the last bits from run
    to run, which breaks bit-exact resumes of a CPU run."""
    feats, labels, protos = random_inputs(256, 100, 128, 3)
    threads = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        grads = []
        for _ in range(4):
            f, p = feats.clone().requires_grad_(), protos.clone().requires_grad_()
            BalancedContrastiveLoss(0.1)(f, labels, p).backward()
            grads.append((f.grad, p.grad))
    finally:
        torch.set_num_threads(threads)
    for f_grad, p_grad in grads[1:]:
        assert torch.equal(f_grad, grads[0][0]) and torch.equal(p_grad, grads[0][1])


def test_bcl_under_bf16_autocast_is_float32():
    feats, labels, protos = random_inputs(8, 4, 16, 5)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        got = BalancedContrastiveLoss()(features=feats, labels=labels, prototypes=protos)
    assert got.dtype == torch.float32
    assert got.item() == pytest.approx(reference_bcl(feats, labels, protos, 0.1, True, True),
                                       rel=1e-5)


def test_bcl_argument_errors():
    with pytest.raises(ValueError, match="temperature"):
        BalancedContrastiveLoss(temperature=0)
    feats, labels, protos = random_inputs(4, 3, 8, 0)
    loss = BalancedContrastiveLoss()
    with pytest.raises(ValueError, match="features"):
        loss(features=feats[:, 0], labels=labels, prototypes=protos)
    with pytest.raises(ValueError, match="labels"):
        loss(features=feats, labels=labels[:2], prototypes=protos)
    with pytest.raises(ValueError, match="prototypes"):
        loss(features=feats, labels=labels)
    with pytest.raises(ValueError, match="prototypes"):
        loss(features=feats, labels=labels, prototypes=protos[:, :4])


def test_logit_adjusted_matches_formula():
    counts = [500, 120, 30, 4]
    gen = torch.Generator().manual_seed(0)
    logits = torch.randn(9, 4, generator=gen)
    labels = torch.randint(0, 4, (9,), generator=gen)
    for tau in (0.0, 1.0, 1.7):
        got = LogitAdjustedLoss(counts, tau)(logits, labels).item()
        total = sum(counts)
        want = 0.0
        for row, y in zip(logits.tolist(), labels.tolist(), strict=True):
            adj = [v + tau * math.log(n / total) for v, n in zip(row, counts, strict=True)]
            want += -(adj[y] - math.log(sum(math.exp(a) for a in adj)))
        assert got == pytest.approx(want / 9, rel=1e-5)
    assert LogitAdjustedLoss(counts, 0.0)(logits, labels).item() == pytest.approx(
        F.cross_entropy(logits, labels).item(), rel=1e-6)


def test_logit_adjusted_errors_and_buffer():
    with pytest.raises(ValueError, match="class 1"):
        LogitAdjustedLoss([3, 0, 2])
    for tau in (-1, float("nan")):
        with pytest.raises(ValueError, match="tau"):
            LogitAdjustedLoss([3, 2], tau=tau)
    with pytest.raises(ValueError, match="empty"):
        LogitAdjustedLoss([])
    loss = LogitAdjustedLoss([3, 2])
    assert "log_prior" in dict(loss.named_buffers())
    with pytest.raises(ValueError, match="logits"):
        loss(torch.zeros(2, 3), torch.zeros(2, dtype=torch.long))


def _official_bcl_loss():
    """The official ``BalSCL`` formulation, as benchmarks/reference_trainer.py writes it."""
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
    try:
        from reference_trainer import official_bcl_loss
    finally:
        sys.path.pop(0)
    return official_bcl_loss


@pytest.mark.parametrize(("batch", "classes", "seed"), [(8, 4, 0), (32, 10, 1), (16, 100, 2)])
def test_bcl_matches_the_official_formulation(batch, classes, seed):
    """Second reference: the official code's way (one-hot counts, dense masks, a loop)."""
    official = _official_bcl_loss()
    feats, labels, protos = random_inputs(batch, classes, 16, seed, dtype=torch.float64)
    feats.requires_grad_(True)
    protos.requires_grad_(True)
    ours = BalancedContrastiveLoss(0.1)(feats, labels, protos)
    feats2, protos2 = feats.detach().clone().requires_grad_(True), \
        protos.detach().clone().requires_grad_(True)
    theirs = official(protos2, feats2, labels, classes, 0.1)
    assert ours.item() == pytest.approx(theirs.item(), rel=1e-10)
    ours.backward()
    theirs.backward()
    assert torch.allclose(feats.grad, feats2.grad, rtol=1e-8, atol=1e-12)
    assert torch.allclose(protos.grad, protos2.grad, rtol=1e-8, atol=1e-12)
