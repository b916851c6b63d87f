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
from balcon.engine.steps import make_objective, step_loss
from balcon.errors import BalconError
from balcon.losses import CLASSIFIER_LOSSES, BalancedContrastiveLoss, LogitAdjustedLoss
from balcon.methods import METHODS, Method, markdown_table, register
from balcon.models import build_model
from balcon.runs import fit

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
        contrastive = name not in ("ce", "la")
        assert isinstance(objective.classifier_loss, LogitAdjustedLoss)
        assert objective.method.contrastive == contrastive
        assert isinstance(objective.contrastive_loss, BalancedContrastiveLoss) == contrastive
        if contrastive:
            assert (objective.alpha, objective.beta) == (2.0, 0.6)  # alpha, beta of the config
            con = objective.contrastive_loss
            assert con.class_averaging == (name in ("bcl", "bcl-no-complement"))
            assert con.class_complement == (name in ("bcl", "bcl-no-averaging"))
            assert con.temperature == 0.1
        else:
            assert objective.alpha == 1.0  # alpha does not scale a lone classifier loss
    assert make_objective(apply_overrides(cfg, ["loss.method=ce"]).loss, counts) \
        .classifier_loss.tau == 0.0
    assert make_objective(apply_overrides(cfg, ["loss.method=la", "loss.tau=1.5"]).loss,
                          counts).classifier_loss.tau == 1.5


def test_step_loss_is_the_papers_formula():
    """``alpha * L_cls + beta * L_con``, held against the two losses computed apart."""
    torch.manual_seed(0)
    logits, labels = torch.randn(6, 3), torch.tensor([0, 1, 2, 0, 0, 1])
    z = torch.nn.functional.normalize(torch.randn(12, 4), dim=1)
    protos = torch.nn.functional.normalize(torch.randn(3, 4), dim=1)
    counts = [50, 20, 5]
    for name in PAPER_METHODS:
        loss_cfg = apply_overrides(Config(), [f"loss.method={name}"]).loss
        objective = make_objective(loss_cfg, counts)
        method = METHODS[name]
        tau = loss_cfg.tau if method.logit_adjusted else 0.0
        cls = LogitAdjustedLoss(counts, tau)(logits, labels)
        total, loss_cls, loss_con = step_loss(objective, logits, labels, z,
                                              protos if method.class_complement else None)
        torch.testing.assert_close(loss_cls, cls)
        if not method.contrastive:
            assert loss_con is None
            torch.testing.assert_close(total, cls)
            continue
        con = BalancedContrastiveLoss(0.1, method.class_averaging, method.class_complement)(
            torch.stack(z.split(6), dim=1), labels,
            protos if method.class_complement else None)
        torch.testing.assert_close(loss_con, con)
        torch.testing.assert_close(total, 2.0 * cls + 0.6 * con)


def test_train_step_pairs_each_samples_two_views_and_classifies_view_one():
    """The step's view layout, end to end: images are [view 1; view 2; view 3] stacked
    along the batch; the classifier loss gets view 1's logits and the contrastive loss
    gets sample i's views 2 and 3 as its pair i. A stub model maps each image to the id
    its pixels hold, so every row says where it came from."""
    import dataclasses

    from balcon.engine.device import make_grad_scaler
    from balcon.engine.steps import train_step

    class Ids(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.w = nn.Parameter(torch.ones(()))

        def forward(self, images, project=True, prototypes=True):
            ids = images.mean(dim=(1, 2, 3)).round().long()  # each image is one value
            z = nn.functional.one_hot(ids % 16, 16).float() * self.w
            logits = ids.float()[:, None].expand(-1, 3) * self.w
            return z, logits, nn.functional.one_hot(torch.arange(3), 16).float()

    batch, labels = 5, torch.tensor([0, 1, 2, 0, 1])
    objective = make_objective(apply_overrides(Config(), ["loss.method=bcl"]).loss, [5, 5, 5])
    seen = {}

    def spy(name, loss):
        def call(*args):
            seen[name] = [a.detach().clone() if torch.is_tensor(a) else a for a in args]
            return loss(*args)
        return call

    objective = dataclasses.replace(
        objective, classifier_loss=spy("cls", objective.classifier_loss),
        contrastive_loss=spy("con", objective.contrastive_loss))
    fill = [torch.full((batch, 3, 4, 4), 0.0) + torch.arange(batch)[:, None, None, None]
            + offset for offset in (32, 0, 0)]  # view 1 holds 32 + i, views 2 and 3 hold i
    model = Ids()
    _, correct = train_step(model, torch.cat(fill), labels, objective,
                            torch.optim.SGD(model.parameters(), lr=0.1),
                            make_grad_scaler(torch.device("cpu"), "off"), "off")
    # each view-1 row's logits are equal, so it predicts class 0: right for labels 0 and 3
    assert int(correct) == 2
    cls_logits, cls_labels = seen["cls"]
    assert cls_logits[:, 0].tolist() == [32.0 + i for i in range(batch)]
    assert torch.equal(cls_labels, labels)
    pairs, con_labels, _ = seen["con"]
    assert pairs.shape == (batch, 2, 16) and torch.equal(con_labels, labels)
    assert pairs[:, 0].argmax(1).tolist() == list(range(batch))
    assert torch.equal(pairs[:, 0], pairs[:, 1])


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


def test_views_and_parts_derive_from_the_row():
    """A row cannot disagree with itself: views, parts and DDP's search follow from it."""
    assert [(m.views, m.parts, m.all_parts_used) for m in METHODS.values()] == [
        (3, ("projection_head", "prototype_head"), True), (1, (), False), (1, (), False),
        (3, ("projection_head",), False), (3, ("projection_head", "prototype_head"), True),
        (3, ("projection_head",), False)]
    with pytest.raises(ValueError, match="exists already"):
        register(METHODS["bcl"])


def test_a_method_naming_a_missing_loss_is_refused(monkeypatch):
    monkeypatch.setitem(METHODS, "lost", Method("lost", "x", classifier_loss="focal"))
    with pytest.raises(BalconError, match="names classifier loss 'focal', which "
                       "balcon.losses.CLASSIFIER_LOSSES lacks"):
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
    throwaway = Method("ce-twice", "CE counted twice", alpha=2.0, logit_adjusted=False,
                       contrastive=False)
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
    method = Method("ce-supcon", "CE + SupCon with the prototypes (a throwaway)", alpha=1.0,
                    beta=0.5, logit_adjusted=False, class_averaging=False)
    monkeypatch.setitem(METHODS, method.name, method)
    record = _train_two_steps(tmp_path / "run", cifar10_shared_root, "ce-supcon")
    assert record["loss"] == pytest.approx(record["loss_cls"] + 0.5 * record["loss_con"])
    assert "ce-supcon" in (tmp_path / "run" / "train.log").read_text()


def test_a_new_loss_is_one_more_entry(monkeypatch, tmp_path: Path,
                                      cifar10_shared_root: Path):
    """A method with a loss balcon lacks: the loss in CLASSIFIER_LOSSES, the method in
    METHODS."""
    built = []

    def smoothed_ce(counts, tau) -> nn.Module:
        built.append((len(counts), tau))
        return nn.CrossEntropyLoss(label_smoothing=0.1)

    monkeypatch.setitem(CLASSIFIER_LOSSES, "smoothed-ce", smoothed_ce)
    method = Method("ce-smooth", "label-smoothed CE (a throwaway)", alpha=1.0,
                    classifier_loss="smoothed-ce", logit_adjusted=False, contrastive=False)
    monkeypatch.setitem(METHODS, method.name, method)
    assert main(["train", "--preset", "cifar10-lt-r100", "--data-dir", str(cifar10_shared_root),
                 "--out", str(tmp_path / "run"), "--epochs", "1", "--device", "cpu",
                 "--set", "loss.method=ce-smooth", "--set", "model.encoder=resnet8",
                 "--set", "data.imbalance=100", "--set", "train.batch_size=128",
                 "--set", "data.num_workers=0", "--set", "model.head_hidden=16",
                 "--set", "model.head_dim=8"]) == 0
    assert built == [(10, 0.0)]
    record = json.loads((tmp_path / "run" / "metrics.jsonl").read_text())
    assert record["loss_con"] is None and record["loss"] == record["loss_cls"]
