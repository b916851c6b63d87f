"""Presets against RECIPES.md, config files and overrides."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from balcon.config import (
    apply_overrides,
    compress_schedule,
    config_from_dict,
    config_to_yaml,
    list_presets,
    load_config_file,
    load_preset,
    preset_yaml,
)
from balcon.errors import BalconError

CIFAR_PRESETS = [f"{ds}-lt-r{r}{sfx}" for ds in ("cifar10", "cifar100") for r in (10, 50, 100)
                 for sfx in ("", "-400ep")]


def test_all_presets_are_listed():
    assert set(CIFAR_PRESETS) | {"digits-lt-demo"} == set(list_presets())


@pytest.mark.parametrize("name", CIFAR_PRESETS)
def test_cifar_presets_follow_recipes(name: str):
    cfg = load_preset(name)
    long = name.endswith("-400ep")
    assert cfg.name == name
    assert cfg.data.dataset == name.split("-")[0]
    assert cfg.data.imbalance == float(name.split("-r")[1].split("-")[0])
    assert cfg.data.profile == "exp" and cfg.data.subsample_seed == 0
    assert cfg.data.mean == [0.4914, 0.4822, 0.4465]
    assert cfg.data.std == [0.2023, 0.1994, 0.2010]
    assert cfg.data.sim_crop_scale == [0.08, 1.0] and cfg.data.sim_blur_prob == 0.0
    assert cfg.model.encoder == "resnet32"
    assert (cfg.model.classifier, cfg.model.cosine_scale) == ("cosine", 30.0)
    assert (cfg.model.head_hidden, cfg.model.head_dim) == (512, 128)
    assert cfg.loss.method == "bcl"
    assert (cfg.loss.temperature, cfg.loss.alpha, cfg.loss.beta, cfg.loss.tau) == \
        (0.1, 2.0, 0.6, 1.0)
    assert (cfg.optim.lr, cfg.optim.momentum, cfg.optim.weight_decay) == (0.15, 0.9, 5e-4)
    assert cfg.optim.schedule == "step" and cfg.optim.gamma == 0.1
    assert cfg.optim.warmup_epochs == (10 if long else 5)
    assert cfg.optim.milestones == ([360, 380] if long else [160, 180])
    assert cfg.train.epochs == (400 if long else 200)
    assert cfg.train.batch_size == 256


def test_preset_yaml_round_trips():
    cfg = load_preset("cifar100-lt-r50")
    assert config_from_dict(yaml.safe_load(config_to_yaml(cfg))) == cfg
    assert "lr: 0.15" in preset_yaml("cifar100-lt-r50")


def test_overrides_parse_and_validate():
    cfg = apply_overrides(load_preset("cifar10-lt-r10"), [
        "optim.lr=0.1", "train.epochs=15", "train.precision=off", "data.imbalance=null",
        "optim.milestones=[5, 10]", "loss.method=supcon", "train.precision=bf16",
    ])
    assert cfg.optim.lr == 0.1 and cfg.train.epochs == 15
    assert cfg.data.imbalance is None and cfg.optim.milestones == [5, 10]
    assert cfg.loss.method == "supcon" and cfg.train.precision == "bf16"
    assert load_preset("cifar10-lt-r10").optim.lr == 0.15  # the preset is untouched
    assert apply_overrides(cfg, ["optim.lr=1"]).optim.lr == 1.0  # int -> float


@pytest.mark.parametrize("item,words", [
    ("optim.lrr=0.1", "optim.lrr"),
    ("optimizer.lr=0.1", "optimizer.lr"),
    ("optim.lr", "section.field=value"),
    ("optim.lr=fast", "optim.lr must be a number"),
    ("optim.lr=-1", "optim.lr must be > 0"),
    ("train.epochs=1.5", "train.epochs must be an integer"),
    ("train.precision=fp8", "train.precision must be one of"),
    ("loss.method=focal", "loss.method must be one of"),
    ("data.hflip=maybe", "data.hflip must be true or false"),
    ("optim.milestones=[180, 160]", "optim.milestones"),
])
def test_bad_overrides_are_refused(item: str, words: str):
    with pytest.raises(BalconError, match=None) as info:
        apply_overrides(load_preset("cifar10-lt-r100"), [item])
    assert words in str(info.value)
    assert "\n" not in str(info.value)


def test_user_config_file(tmp_path: Path):
    path = tmp_path / "mine.yaml"
    text = preset_yaml("cifar10-lt-r100").replace("lr: 0.15", "lr: 0.2")
    path.write_text(text)
    assert load_config_file(path).optim.lr == 0.2
    path.write_text(text.replace("optim:", "optimiser:"))
    with pytest.raises(BalconError, match="unknown section 'optimiser'"):
        load_config_file(path)
    path.write_text("train: {epochs: [1\n")
    with pytest.raises(BalconError, match="not readable YAML"):
        load_config_file(path)
    path.write_text("train:\n  precision: off\n")
    with pytest.raises(BalconError, match='quote it'):
        load_config_file(path)
    with pytest.raises(BalconError, match="does not exist"):
        load_config_file(tmp_path / "missing.yaml")


def test_compress_schedule_scales_warmup_and_steps():
    cfg = compress_schedule(load_preset("cifar10-lt-r100"), 50)
    assert cfg.train.epochs == 50
    assert cfg.optim.warmup_epochs == 1 and cfg.optim.milestones == [40, 45]
    cfg = compress_schedule(load_preset("cifar10-lt-r100"), 15)
    assert cfg.optim.warmup_epochs == 1 and cfg.optim.milestones == [12, 14]
    cfg = compress_schedule(load_preset("cifar10-lt-r100"), 5)
    assert cfg.optim.milestones == [4, 4]  # both decays kept: lr ends at 0.01x
    from balcon.engine import lr_at

    assert lr_at(cfg.optim, 4, 5) == pytest.approx(0.15 * 0.01)
