"""The method table: everything derives from it, and a new method is one entry."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import torch
from torch import nn

from balcon.cli import _parser, main
from balcon.config import Config, ModelConfig, apply_overrides
from balcon.engine import fit
from balcon.engine.objective import LOSSES, make_objective
from balcon.errors import BalconError
from balcon.losses import BalancedContrastiveLoss, LogitAdjustedLoss
from balcon.methods import METHODS, MODEL_PARTS, Method, Term, markdown_table, register
from balcon.models import build_model

README = Path(__file__).parents[1] / "README.md"
PAPER_METHODS = ["bcl", "ce", "la", "supcon", "bcl-no-averaging", "bcl-no-complement"]


def test_the_table_holds_the_papers_methods():
    assert list(METHODS) == PAPER_METHODS


def test_methods_module_is_data_only():
    """config imports it, so it must not import torch (or anything below config)."""
    source = (Path(__file__).parents[1] / "src/balcon/methods.py").read_text()
    imports = re.findall(r"^(?:from|import) (\S+)", source, flags=re.M)
    assert set(imports) <= {"__future__", "dataclasses"}, imports


def test_objectives_follow_the_table():
    counts = [50, 20, 5]
    cfg = Config()
    for name in PAPER_METHODS:
        objective = make_objective(apply_overrides(cfg, [f"loss.method={name}"]).loss, counts)
        kinds = [type(loss) for loss in objective.losses]
        assert kinds[0] is LogitAdjustedLoss
        assert objective.contrastive == (name not in ("ce", "la"))
        assert kinds[1:] == ([BalancedContrastiveLoss] if objective.contrastive else [])
        if objective.contrastive:
            assert objective.weights == [2.0, 0.6]  # alpha, beta of the config
            con = objective.losses[1]
            assert con.class_averaging == (name in ("bcl", "bcl-no-complement"))
            assert con.class_complement == (name in ("bcl", "bcl-no-averaging"))
            assert con.temperature == 0.1
        else:
            assert objective.weights == [1.0]  # alpha does not scale a lone classifier loss
    assert make_objective(apply_overrides(cfg, ["loss.method=ce"]).loss, counts) \
        .losses[0].tau == 0.0
    assert make_objective(apply_overrides(cfg, ["loss.method=la", "loss.tau=1.5"]).loss,
                          counts).losses[0].tau == 1.5


@pytest.mark.parametrize("name", PAPER_METHODS)
def test_forward_computes_only_the_parts_a_method_uses(name: str):
    model = build_model(ModelConfig(encoder="resnet8", head_hidden=8, head_dim=4), 3)
    loss = apply_overrides(Config(), [f"loss.method={name}"]).loss
    parts = make_objective(loss, [3, 2, 1]).forward_parts()
    projections, logits, prototypes = model(torch.randn(4, 3, 32, 32), **parts)
    assert logits.shape == (4, 3)
    assert (projections is None) == ("projection_head" not in METHODS[name].parts)
    assert (prototypes is None) == ("prototype_head" not in METHODS[name].parts)
    # the skipped parts still exist, so any checkpoint loads under any method
    assert {"projection_head", "prototype_head"} <= {n for n, _ in model.named_children()}


def test_a_method_entry_must_be_consistent():
    la = Term("logit-adjusted", 1.0)
    con = Term("balanced-contrastive", "beta", on="projections")
    with pytest.raises(ValueError, match="views must be 1 or 3"):
        Method("x", "x", views=2, terms=(la,))
    with pytest.raises(ValueError, match="a term on projections needs views=3"):
        Method("x", "x", views=1, terms=(la, con), parts=MODEL_PARTS)
    with pytest.raises(ValueError, match="a term on projections needs views=3"):
        Method("x", "x", views=3, terms=(la,))
    with pytest.raises(ValueError, match="unknown"):
        Method("x", "x", views=1, terms=(la,), parts=("head",))
    with pytest.raises(ValueError, match="on must be one of"):
        Term("logit-adjusted", 1.0, on="features")
    with pytest.raises(ValueError, match="exists already"):
        register(METHODS["bcl"])


def test_an_entry_whose_losses_and_parts_disagree_is_refused(monkeypatch):
    """Prototypes computed but unused would hang DDP (no gradient); used but not computed
    would fail in the loss: both are refused when the objective is built."""
    for parts, complement in ((MODEL_PARTS, False), (("projection_head",), True)):
        method = Method("odd", "x", views=3, parts=parts, terms=(
            Term("logit-adjusted", "alpha"),
            Term("balanced-contrastive", "beta", on="projections",
                 options=(("class_complement", complement),))))
        monkeypatch.setitem(METHODS, "odd", method)
        with pytest.raises(BalconError, match="method 'odd': its losses"):
            make_objective(apply_overrides(Config(), ["loss.method=odd"]).loss, [3, 2, 1])
    typo = Method("typo", "x", views=1, terms=(Term("logit-adjusted", "alhpa"),))
    monkeypatch.setitem(METHODS, "typo", typo)
    with pytest.raises(BalconError, match="by loss.alhpa, which is not a loss field"):
        apply_overrides(Config(), ["loss.method=typo"])
    lost = Method("lost", "x", views=1, terms=(Term("focal", 1.0),))
    monkeypatch.setitem(METHODS, "lost", lost)
    with pytest.raises(BalconError, match="names loss 'focal', which LOSSES lacks"):
        make_objective(apply_overrides(Config(), ["loss.method=lost"]).loss, [3, 2, 1])


def test_a_run_of_a_method_not_registered_now_still_loads(monkeypatch):
    """A checkpoint's config (new_run=False) may name a method registered in its own
    session: it loads (eval needs no method); training it asks for the registration."""
    from balcon.config import config_from_dict

    raw = Config().to_dict()
    raw["loss"]["method"] = "gone"
    cfg = config_from_dict(raw, new_run=False)
    with pytest.raises(BalconError, match="register it"):
        make_objective(cfg.loss, [3, 2, 1])
    with pytest.raises(BalconError, match="loss.method must be one of"):
        config_from_dict(raw)


def test_config_help_and_readme_derive_from_the_table(monkeypatch):
    with pytest.raises(BalconError, match="loss.method must be one of " +
                       re.escape(", ".join(PAPER_METHODS))):
        apply_overrides(Config(), ["loss.method=focal"])
    assert markdown_table() in README.read_text()
    train_help = _parser()._subparsers._group_actions[0].choices["train"].format_help()
    for method in METHODS.values():
        assert method.name in train_help and method.summary in train_help
    throwaway = Method("ce-twice", "CE counted twice", views=1,
                       terms=(Term("logit-adjusted", 2.0, options=(("tau", 0.0),)),))
    monkeypatch.setitem(METHODS, throwaway.name, throwaway)
    assert apply_overrides(Config(), ["loss.method=ce-twice"]).loss.method == "ce-twice"
    assert "ce-twice" in _parser()._subparsers._group_actions[0].choices["train"].format_help()


def _train_two_steps(run: Path, data_dir: Path, method: str) -> dict:
    """One epoch of two batches (242 images, 128 a batch) of ``method`` on the tiny CIFAR
    set, and its evaluation."""
    from test_engine import tiny_config

    cfg = tiny_config(f"loss.method={method}", "data.imbalance=100", "train.batch_size=128",
                      epochs=1)
    fit(cfg, data_dir, run, device="cpu")
    return json.loads((run / "metrics.jsonl").read_text())


def test_a_new_method_is_one_entry(monkeypatch, tmp_path: Path, cifar10_shared_root: Path):
    """An entry mixing existing losses differently trains, under the table's rules."""
    method = Method("ce-supcon", "CE + SupCon with the prototypes (a throwaway)", views=3,
                    terms=(Term("logit-adjusted", 1.0, options=(("tau", 0.0),)),
                           Term("balanced-contrastive", 0.5, on="projections",
                                options=(("class_averaging", False),))),
                    parts=MODEL_PARTS)
    monkeypatch.setitem(METHODS, method.name, method)
    record = _train_two_steps(tmp_path / "run", cifar10_shared_root, "ce-supcon")
    assert record["loss"] == pytest.approx(record["loss_cls"] + 0.5 * record["loss_con"])
    assert "ce-supcon" in (tmp_path / "run" / "train.log").read_text()


def test_a_new_loss_is_one_more_entry(monkeypatch, tmp_path: Path,
                                      cifar10_shared_root: Path):
    """A method with a loss balcon lacks: the loss in LOSSES, the method in METHODS."""
    built = []

    def smoothed_ce(cfg, counts, **options) -> nn.Module:
        built.append((len(counts), options))
        return nn.CrossEntropyLoss(**options)

    monkeypatch.setitem(LOSSES, "smoothed-ce", smoothed_ce)
    method = Method("ce-smooth", "label-smoothed CE (a throwaway)", views=1,
                    terms=(Term("smoothed-ce", 1.0, options=(("label_smoothing", 0.1),)),))
    monkeypatch.setitem(METHODS, method.name, method)
    assert main(["train", "--preset", "cifar10-lt-r100", "--data-dir", str(cifar10_shared_root),
                 "--out", str(tmp_path / "run"), "--epochs", "1", "--device", "cpu",
                 "--set", "loss.method=ce-smooth", "--set", "model.encoder=resnet8",
                 "--set", "data.imbalance=100", "--set", "train.batch_size=128",
                 "--set", "data.num_workers=0", "--set", "model.head_hidden=16",
                 "--set", "model.head_dim=8"]) == 0
    assert built == [(10, {"label_smoothing": 0.1})]
    record = json.loads((tmp_path / "run" / "metrics.jsonl").read_text())
    assert record["loss_con"] is None and record["loss"] == record["loss_cls"]
