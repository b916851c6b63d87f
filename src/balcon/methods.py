"""The training methods, as data: one flat row per method; everything else derives from it.

A method fills in the paper's objective ``alpha * L_cls + beta * L_con``
(``balcon.engine.steps.step_loss``): the classifier loss (logit-adjusted or plain
cross-entropy, or a loss of your own from ``balcon.losses.CLASSIFIER_LOSSES``), whether
the balanced contrastive term is on and with which of its two switches, and the two
weights. The views a sample brings, the model parts a step runs, DDP's
``find_unused_parameters``, the config's allowed ``loss.method`` values, the CLI help
and the README's table all derive from the row, so a row that cannot train cannot be
written. A method that combines existing terms is one row (:func:`register` for your
own).

This module holds data only (no torch), so the config and the CLI's help read it fast.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["METHODS", "Method", "get_method", "markdown_table", "method_names", "register"]


@dataclass(frozen=True)
class Method:
    """A training method: one row of the table.

    Args:
        name: the ``loss.method`` value.
        summary: one line for the CLI help and the README.
        alpha: weight of the classifier loss; None: the config's ``loss.alpha``.
        beta: weight of the contrastive loss; None: the config's ``loss.beta``.
        classifier_loss: name of the loss on view 1's logits, a key of
            ``balcon.losses.CLASSIFIER_LOSSES`` (``logit-adjusted``, or one you add).
        logit_adjusted: adjust the logits by the class prior (``tau = loss.tau``);
            False is plain cross-entropy (``tau = 0``).
        contrastive: the balanced contrastive loss on views 2 and 3 (three views a
            sample and the projection head); False: view 1 and the classifier alone.
        class_averaging: the contrastive loss averages its denominator per class.
        class_complement: the class prototypes join the contrast set (the prototype
            head runs). SupCon is the contrastive loss with both switches off.
    """

    name: str
    summary: str
    alpha: float | None = None
    beta: float | None = None
    classifier_loss: str = "logit-adjusted"
    logit_adjusted: bool = True
    contrastive: bool = True
    class_averaging: bool = True
    class_complement: bool = True

    @property
    def views(self) -> int:
        """Views per training sample: view 1 (the classifier's), plus the contrastive pair."""
        return 3 if self.contrastive else 1

    @property
    def parts(self) -> tuple[str, ...]:
        """The optional model parts the step runs (both always exist in the model)."""
        return ("projection_head",) * self.contrastive + \
            ("prototype_head",) * (self.contrastive and self.class_complement)

    @property
    def all_parts_used(self) -> bool:
        """Whether every parameter gets a gradient (else DDP's ``find_unused_parameters``)."""
        return len(self.parts) == 2

    def formula(self) -> str:
        """The objective in words, e.g. ``alpha * logit-adjusted + beta * balanced-contrastive``."""
        def weighed(weight: float | None, name: str, loss: str) -> str:
            return loss if weight == 1.0 else f"{name if weight is None else weight} * {loss}"

        cls = self.classifier_loss + ("" if self.logit_adjusted else "(tau=0)")
        off = [f"{s}=False" for s, on in (("class_averaging", self.class_averaging),
                                          ("class_complement", self.class_complement)) if not on]
        con = "balanced-contrastive" + (f"({', '.join(off)})" if off else "")
        return weighed(self.alpha, "alpha", cls) + \
            (f" + {weighed(self.beta, 'beta', con)}" if self.contrastive else "")


#: The methods balcon ships: BCL, its two ablations and the baselines of the paper's table.
METHODS: dict[str, Method] = {m.name: m for m in (
    Method("bcl", "BCL: logit-adjusted CE + balanced contrastive loss (the paper's method)"),
    Method("ce", "plain cross-entropy, classifier only (baseline)",
           alpha=1.0, logit_adjusted=False, contrastive=False),
    Method("la", "logit-adjusted cross-entropy alone (Menon et al. 2021)",
           alpha=1.0, contrastive=False),
    Method("supcon", "logit-adjusted CE + SupCon (no class-averaging, no prototypes)",
           class_averaging=False, class_complement=False),
    Method("bcl-no-averaging", "BCL without class-averaging (ablation)",
           class_averaging=False),
    Method("bcl-no-complement", "BCL without class-complement: no prototypes (ablation)",
           class_complement=False),
)}


def method_names() -> tuple[str, ...]:
    """The ``loss.method`` values accepted now (the table's keys, in order)."""
    return tuple(METHODS)


def get_method(name: str) -> Method:
    """The method called ``name``; a ``KeyError`` naming the known ones if there is none."""
    try:
        return METHODS[name]
    except KeyError:
        raise KeyError(f"unknown method {name!r}; methods are {', '.join(METHODS)}") from None


def register(method: Method) -> Method:
    """Add ``method`` to the table (your own method; a loss of your own goes in
    ``balcon.losses.CLASSIFIER_LOSSES``)."""
    if method.name in METHODS:
        raise ValueError(f"method {method.name!r} exists already")
    METHODS[method.name] = method
    return method


def markdown_table() -> str:
    """The table as the README shows it (a test keeps the two equal)."""
    rows = ["| `loss.method` | what it is | views | loss | model parts |",
            "| --- | --- | --- | --- | --- |"]
    for m in METHODS.values():
        parts = ", ".join(p.removesuffix("_head") for p in m.parts) or "-"
        rows.append(f"| `{m.name}` | {m.summary} | {m.views} | {m.formula()} | {parts} |")
    return "\n".join(rows)
