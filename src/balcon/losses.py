"""Losses of Balanced Contrastive Learning (BCL).

Paper: "Balanced Contrastive Learning for Long-Tailed Visual Recognition",
Zhu, Wang, Chen, Chen, Jiang, CVPR 2022 (arXiv 2207.09052).

How it was checked: ``BalancedContrastiveLoss`` was derived from the loss the
official code (``FlamieZhu/Balanced-Contrastive-Learning``, ``loss/contrastive.py``,
``BalSCL``) computes: same contrast set, same positive set, same class-averaged
denominator, same mean over the 2B anchors. ``tests/test_losses.py`` compares it with
a slow reference written from that formula (plain loops over anchors and contrast
rows) to a relative error under 1e-5, with the official code's own way of computing
it (one-hot masks, a loop over targets) to 1e-10, and its gradients by ``gradcheck``
in float64. Unlike the official code it never builds a dense ``(2B + C) x C``
one-hot matrix nor loops over targets in Python, so it runs at iNaturalist's 8,142
classes on any device without a host round trip.
``benchmarks/bench_loss.py`` measures the difference.

``LogitAdjustedLoss`` is the logit-adjusted cross-entropy of Menon et al.,
"Long-tail learning via logit adjustment", ICLR 2021, the classifier branch of BCL.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = ["CLASSIFIER_LOSSES", "BalancedContrastiveLoss", "LogitAdjustedLoss"]


class LogitAdjustedLoss(nn.Module):
    r"""Logit-adjusted cross-entropy for long-tailed classification.

    .. math::
        \mathcal{L}_{LA}(x, y) = -\log
            \frac{\exp(f_y(x) + \tau \log \pi_y)}{\sum_k \exp(f_k(x) + \tau \log \pi_k)}

    with :math:`\pi_k = n_k / \sum_j n_j` the class prior of the training set. The
    adjustment is applied in training only; predict with ``argmax(logits)``.
    ``tau = 0`` is plain cross-entropy.

    Args:
        class_counts: number of training samples of each class (length C, all > 0).
        tau: strength of the adjustment, >= 0 (1.0 in BCL).

    Shape:
        ``logits`` (B, C) and ``labels`` (B,) of class indices; returns a scalar.
    """

    log_prior: Tensor

    def __init__(self, class_counts: Sequence[int] | Tensor, tau: float = 1.0) -> None:
        super().__init__()
        counts = torch.as_tensor(class_counts, dtype=torch.float64).flatten()
        if counts.numel() == 0:
            raise ValueError("class_counts must name at least one class, got an empty sequence")
        if bool((counts <= 0).any()):
            bad = int(torch.nonzero(counts <= 0)[0])
            raise ValueError(
                f"class_counts must all be > 0, got {counts[bad].item():g} for class {bad}"
            )
        if not tau >= 0:  # NaN too
            raise ValueError(f"tau must be >= 0, got {tau}")
        self.tau = float(tau)
        self.register_buffer("log_prior", (counts / counts.sum()).log().float())

    def forward(self, logits: Tensor, labels: Tensor) -> Tensor:
        """Mean logit-adjusted cross-entropy of ``logits`` (B, C) against ``labels`` (B,)."""
        if logits.ndim != 2 or logits.shape[1] != self.log_prior.numel():
            raise ValueError(
                f"logits must have shape (B, {self.log_prior.numel()}), got {tuple(logits.shape)}"
            )
        adjusted = logits.float() + self.tau * self.log_prior.to(logits.device)
        return F.cross_entropy(adjusted, labels)


class BalancedContrastiveLoss(nn.Module):
    r"""Balanced supervised contrastive loss (BCL), vectorised.

    The contrast set holds the 2B projected views followed, with class-complement,
    by the C class prototypes: rows :math:`z_1..z_N`, :math:`N = 2B + C`, labels
    :math:`t = [y, y, 0..C-1]`. Only the 2B views are anchors. With
    :math:`s_{ij} = z_i \cdot z_j / T`, for anchor :math:`i` of class :math:`y_i`:

    .. math::
        \mathcal{L}_i = -\frac{1}{|P_i|} \sum_{p \in P_i}
            \log \frac{\exp(s_{ip})}
                 {\sum_{k} \frac{1}{|A_{ik}|} \sum_{j \in A_{ik}} \exp(s_{ij})}

    where :math:`P_i = \{j \ne i : t_j = y_i\}` (the other view, every other
    same-class view and the class prototype) and :math:`A_{ik} = \{j \ne i : t_j = k\}`.
    Class-averaging is the :math:`1/|A_{ik}|`: each class weighs the same in the
    denominator, however many of its samples the batch holds; with class-complement
    the prototypes make every class present in every batch. The loss is the mean of
    :math:`\mathcal{L}_i` over the 2B anchors.

    ``class_averaging=False`` sets every weight to 1; ``class_complement=False``
    drops the prototypes; both off is SupCon (Khosla et al., NeurIPS 2020).

    Cost: (2B x 2B) and (C x 2B) similarity matrices plus (C x 2B) per-class sums; no dense
    one-hot, no loop over samples or classes, no host synchronisation with
    class-complement on. Computed in float32 even under autocast.

    Args:
        temperature: the softmax temperature T > 0 (0.1 on CIFAR, 0.07 on ImageNet).
        class_averaging: average the denominator per class (BCL) instead of summing.
        class_complement: add the class prototypes to the contrast set.

    Shape:
        ``features`` (B, 2, D), two L2-normalised views per sample; ``labels`` (B,)
        in ``[0, C)``; ``prototypes`` (C, D), L2-normalised, required with
        class-complement and ignored without. Returns a scalar.
    """

    def __init__(
        self,
        temperature: float = 0.1,
        class_averaging: bool = True,
        class_complement: bool = True,
    ) -> None:
        super().__init__()
        if not temperature > 0:
            raise ValueError(f"temperature must be > 0, got {temperature}")
        self.temperature = float(temperature)
        self.class_averaging = bool(class_averaging)
        self.class_complement = bool(class_complement)

    def forward(
        self, features: Tensor, labels: Tensor, prototypes: Tensor | None = None
    ) -> Tensor:
        """BCL loss of ``features`` (B, 2, D) with ``labels`` (B,) and ``prototypes`` (C, D)."""
        if features.ndim != 3 or features.shape[1] != 2:
            raise ValueError(f"features must have shape (B, 2, D), got {tuple(features.shape)}")
        batch = features.shape[0]
        if labels.shape != (batch,):
            raise ValueError(f"labels must have shape ({batch},), got {tuple(labels.shape)}")
        if self.class_complement:
            if prototypes is None:
                raise ValueError("prototypes (C, D) are required when class_complement=True")
            if prototypes.ndim != 2 or prototypes.shape[1] != features.shape[2]:
                raise ValueError(
                    f"prototypes must have shape (C, {features.shape[2]}), "
                    f"got {tuple(prototypes.shape)}"
                )
        dtype = torch.promote_types(features.dtype, torch.float32)
        if prototypes is not None:
            prototypes = prototypes.to(dtype)
        with torch.autocast(features.device.type, enabled=False):
            return self._loss(features.to(dtype), labels.long(), prototypes)

    def _loss(self, features: Tensor, labels: Tensor, prototypes: Tensor | None) -> Tensor:
        anchors = torch.cat(features.unbind(1))  # (2B, D): view a of all, then view b
        anchor_labels = labels.repeat(2)
        n_anchor = anchors.shape[0]
        protos = prototypes if self.class_complement else None
        num_classes = protos.shape[0] if protos is not None else int(labels.max()) + 1
        # counts[k] = rows of class k in the contrast set (2 n_k, plus its prototype).
        counts = torch.bincount(anchor_labels, minlength=num_classes) + int(protos is not None)

        # Similarities of each anchor (a column) to every anchor and to every prototype,
        # shifted by the column's max. The in-place steps are safe for autograd (none of
        # them saves its input) and keep one buffer of each shape alive, not four.
        sim = (anchors @ anchors.T).div_(self.temperature)  # (2B, 2B)
        shift = sim.detach().max(dim=0).values
        if protos is not None:
            sim_proto = (protos @ anchors.T).div_(self.temperature)  # (C, 2B)
            shift = torch.maximum(shift, sim_proto.detach().max(dim=0).values)
            exp_proto = sim_proto.sub_(shift).exp()
        self_mask = torch.eye(n_anchor, dtype=torch.bool, device=sim.device)
        exp_sim = sim.sub_(shift).masked_fill_(self_mask, float("-inf")).exp()

        if self.class_averaging:
            # Per-class sums of exp-similarities: the prototypes' rows are already in
            # class order, the anchors' rows are added by label.
            start = exp_proto if protos is not None else exp_sim.new_zeros(num_classes, n_anchor)
            class_exp = start.index_add(0, anchor_labels, exp_sim)
            # |A_ik| = counts[k] - [k == y_i]: the anchor leaves its own class, so its
            # own class's sum is divided by counts - 1 instead of counts.
            inv = 1.0 / counts.clamp(min=1).to(sim.dtype)
            own_count = counts[anchor_labels].to(sim.dtype)
            own_exp = class_exp.gather(0, anchor_labels.unsqueeze(0)).squeeze(0)
            denom = inv @ class_exp + own_exp * (1.0 / (own_count - 1) - 1.0 / own_count)
        else:
            denom = exp_sim.sum(dim=0)
            if protos is not None:
                denom = denom + exp_proto.sum(dim=0)

        # Sum of s_ip over positives from per-class feature sums: O(C D), not O(N 2B).
        # index_select, not [anchor_labels]: that one's backward adds with float atomics
        # on a multi-threaded CPU, so two runs of one step would differ in the last bits.
        start = protos if protos is not None else anchors.new_zeros(num_classes, anchors.shape[1])
        own = start.index_add(0, anchor_labels, anchors).index_select(0, anchor_labels)
        pos_sum = ((own * anchors).sum(1) - (anchors * anchors).sum(1)) / self.temperature
        pos_count = (counts[anchor_labels] - 1).to(sim.dtype)
        loss = denom.log() + shift - pos_sum / pos_count
        return loss.mean()


#: The losses on logits a method may name (``Method.classifier_loss``): name ->
#: ``builder(class_counts, tau)``, called once a run; ``tau`` is ``loss.tau``, or 0 for a
#: method without logit adjustment. The loss is then called ``loss(logits, labels)``.
#: Add your own here.
CLASSIFIER_LOSSES: dict[str, Callable[[Sequence[int], float], nn.Module]] = {
    "logit-adjusted": LogitAdjustedLoss,
}
