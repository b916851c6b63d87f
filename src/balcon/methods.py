"""The training methods, as data: one entry per method, and everything else derives from it.

A method is what one training step optimises: the views each sample brings, the
losses (by name, with their weights) and the model parts the step runs. The config's
allowed ``loss.method`` values, the objective the engine builds, the views the dataset
makes, which heads ``BCLModel.forward`` computes, DDP's ``find_unused_parameters``,
the CLI help and the README's table all read this table. Adding a method is one
:class:`Method` entry (:func:`register` for one of your own), plus, if it needs a new
loss, that loss in :data:`balcon.engine.objective.LOSSES`.

This module holds data only (no torch), so the config can check names against it
without reaching down the pipeline.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = [
    "METHODS",
    "MODEL_PARTS",
    "Method",
    "Term",
    "get_method",
    "markdown_table",
    "method_names",
    "register",
]

#: The optional parts of a BCLModel: the projection MLP (contrastive embedding) and the
#: prototype MLP (class prototypes from the classifier weights). Encoder and classifier
#: always run.
MODEL_PARTS = ("projection_head", "prototype_head")

#: What a loss term is computed on: view 1's logits, or the projections of views 2
#: and 3 (gathered over all processes, with the prototypes when the method has them).
TERM_INPUTS = ("logits", "projections")


@dataclass(frozen=True)
class Term:
    """One weighted loss of a method's objective.

    Args:
        loss: name of the loss, a key of ``balcon.engine.objective.LOSSES``.
        weight: a ``loss`` config field that holds the weight (``"alpha"``,
            ``"beta"``), or a fixed number.
        on: ``"logits"`` (view 1) or ``"projections"`` (views 2 and 3).
        options: keyword arguments the loss always gets here, as ``(name, value)``
            pairs; they take precedence over the config (e.g. ``tau=0`` for CE).
    """

    loss: str
    weight: str | float
    on: str = "logits"
    options: tuple[tuple[str, object], ...] = ()

    def __post_init__(self) -> None:
        if self.on not in TERM_INPUTS:
            raise ValueError(f"on must be one of {', '.join(TERM_INPUTS)}, got {self.on!r}")


@dataclass(frozen=True)
class Method:
    """A training method: its name, views, loss terms and model parts.

    Args:
        name: the ``loss.method`` value.
        summary: one line for the CLI help and the README.
        views: views per training sample: 1 (view 1, the classifier's) or 3 (view 1
            and the contrastive pair).
        terms: the weighted losses summed into the objective, classifier first.
        parts: the optional model parts the step runs (of :data:`MODEL_PARTS`);
            parts not listed are skipped in ``forward`` (their weights stay in the
            model, so every checkpoint loads under every method).
    """

    name: str
    summary: str
    views: int
    terms: tuple[Term, ...]
    parts: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        contrastive = any(t.on == "projections" for t in self.terms)
        if self.views not in (1, 3):
            raise ValueError(f"method {self.name!r}: views must be 1 or 3, got {self.views}")
        if not self.terms:
            raise ValueError(f"method {self.name!r}: terms must name at least one loss")
        if unknown := [p for p in self.parts if p not in MODEL_PARTS]:
            raise ValueError(f"parts: unknown {unknown}; parts are {', '.join(MODEL_PARTS)}")
        if contrastive != (self.views == 3) or contrastive != ("projection_head" in self.parts):
            raise ValueError(
                f"method {self.name!r}: a term on projections needs views=3 and the "
                "projection_head part, and those need such a term"
            )

    @property
    def contrastive(self) -> bool:
        """Whether the method trains the contrastive branch (views 2 and 3)."""
        return self.views == 3

    @property
    def all_parts_used(self) -> bool:
        """Whether every model parameter gets a gradient (DDP's ``find_unused_parameters``
        must be on otherwise)."""
        return set(self.parts) == set(MODEL_PARTS)

    def formula(self) -> str:
        """The objective in words, e.g. ``alpha * logit-adjusted + beta * bcl``."""
        def term(t: Term) -> str:
            opts = ", ".join(f"{k}={v}" for k, v in t.options)
            name = f"{t.loss}({opts})" if opts else t.loss
            return name if t.weight == 1 else f"{t.weight} * {name}"

        return " + ".join(term(t) for t in self.terms)


def _la(weight: str | float = "alpha") -> Term:
    return Term("logit-adjusted", weight)


def _contrastive(**options: bool) -> Term:
    return Term("balanced-contrastive", "beta", on="projections", options=tuple(options.items()))


#: The methods balcon ships: BCL, its two ablations and the baselines of the paper's table.
METHODS: dict[str, Method] = {m.name: m for m in (
    Method("bcl", "BCL: logit-adjusted CE + balanced contrastive loss (the paper's method)",
           views=3, terms=(_la(), _contrastive()), parts=MODEL_PARTS),
    Method("ce", "plain cross-entropy, classifier only (baseline)",
           views=1, terms=(Term("logit-adjusted", 1.0, options=(("tau", 0.0),)),)),
    Method("la", "logit-adjusted cross-entropy alone (Menon et al. 2021)",
           views=1, terms=(_la(1.0),)),
    Method("supcon", "logit-adjusted CE + SupCon (no class-averaging, no prototypes)",
           views=3, terms=(_la(), _contrastive(class_averaging=False, class_complement=False)),
           parts=("projection_head",)),
    Method("bcl-no-averaging", "BCL without class-averaging (ablation)",
           views=3, terms=(_la(), _contrastive(class_averaging=False)), parts=MODEL_PARTS),
    Method("bcl-no-complement", "BCL without class-complement: no prototypes (ablation)",
           views=3, terms=(_la(), _contrastive(class_complement=False)),
           parts=("projection_head",)),
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
    """Add ``method`` to the table (your own method; its losses must be in ``LOSSES``)."""
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
