"""Presets against RECIPES.md, config files and overrides."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import yaml

from balcon.config import (
    apply_overrides,
    compress_schedule,
    config_from_dict,
    config_to_yaml,
    load_config_file,
    validate,
)
from balcon.errors import BalconError
from balcon.presets import list_presets, load_preset, preset_base, preset_yaml

CIFAR_PRESETS = [f"{ds}-lt-r{r}{sfx}" for ds in ("cifar10", "cifar100") for r in (10, 50, 100)
                 for sfx in ("", "-400ep")]


LARGE_PRESETS = ["imagenet-lt-resnext50", "imagenet-lt-resnet50", "inat18-resnet50"]
FOLDER_PRESETS = ["imagefolder-r32", "imagefolder-r50", "imagefolder-finetune"]


def test_all_presets_are_listed():
    assert set(CIFAR_PRESETS) | {"digits-lt-demo", *LARGE_PRESETS, *FOLDER_PRESETS} == \
        set(list_presets())


PRESET_DIR = Path(__file__).parents[1] / "src/balcon/presets"
ROOTS = {"cifar10-lt-r100", "imagenet-lt-resnext50"}


def _file(name: str) -> dict:
    return yaml.safe_load((PRESET_DIR / f"{name}.yaml").read_text())


@pytest.mark.parametrize("name", sorted(set(list_presets()) - ROOTS))
def test_preset_files_list_only_differences(name: str):
    """A preset names a parent and only the fields whose value differs from the parent's."""
    raw = _file(name)
    assert "name" not in raw and raw["base"] == preset_base(name) in list_presets()
    parent = load_preset(raw["base"]).to_dict()
    for section, fields in raw.items():
        if section == "base":
            continue
        for key, value in fields.items():
            assert value != parent[section][key], f"{name}: {section}.{key} repeats its parent"


def test_presets_are_short_and_resolve_to_every_field():
    lines = [line for path in PRESET_DIR.glob("*.yaml")
             for line in path.read_text().splitlines()
             if line.strip() and not line.lstrip().startswith("#")]
    assert len(lines) <= 400
    assert {n for n in list_presets() if preset_base(n) is None} == ROOTS
    shown = preset_yaml("cifar100-lt-r100")
    keys = [line for line in shown.splitlines() if re.match(r"\s*[a-z_0-9]+:", line)]
    assert len(keys) >= 40
    resolved = yaml.safe_load(shown)
    full = load_preset("cifar100-lt-r100").to_dict()
    assert resolved == full  # every field of every section
    assert config_from_dict(resolved) == load_preset("cifar100-lt-r100")


def test_resolved_presets_are_pinned():
    """Each preset's every field, as balcon 0.3's full preset files spelt them: a change of
    a default (or of a parent) that moves a paper preset shows up here, and the
    snapshot (tests/data/presets_resolved.json) is updated on purpose."""
    pinned = json.loads((Path(__file__).parent / "data/presets_resolved.json").read_text())
    assert {name: load_preset(name).to_dict() for name in list_presets()} == pinned


def test_preset_chain_and_names():
    assert load_preset("cifar100-lt-r50-400ep").name == "cifar100-lt-r50-400ep"  # not inherited
    chain = preset_yaml("cifar100-lt-r50-400ep").splitlines()
    assert ("# Resolved: cifar100-lt-r50-400ep <- cifar100-lt-r50 <- cifar100-lt-r100 <- "
            "cifar10-lt-r100 <- balcon's defaults; every field below.") in chain


def test_a_bad_key_in_a_parent_file_names_the_parent(tmp_path: Path):
    (tmp_path / "parent.yaml").write_text("base: cifar10-lt-r100\nloss:\n  bogus: 1\n")
    (tmp_path / "child.yaml").write_text("base: parent.yaml\n")
    with pytest.raises(BalconError) as info:
        load_config_file(tmp_path / "child.yaml")
    assert str(info.value).startswith(f"{(tmp_path / 'parent.yaml').resolve()}: unknown key "
                                      "'loss.bogus'")


def test_user_config_with_a_base(tmp_path: Path):
    (tmp_path / "family.yaml").write_text("base: cifar100-lt-r100\noptim:\n  lr: 0.3\n")
    (tmp_path / "sub").mkdir()
    mine = tmp_path / "sub" / "mine.yaml"
    mine.write_text("base: ../family.yaml\nname: mine\ntrain:\n  batch_size: 512\n")
    cfg = load_config_file(mine)
    assert (cfg.name, cfg.data.dataset, cfg.optim.lr, cfg.train.batch_size) == \
        ("mine", "cifar100", 0.3, 512)
    assert cfg.optim.milestones == [160, 180]  # from the preset at the chain's root
    assert load_config_file(tmp_path / "family.yaml").name == "family"  # never inherited
    for text, words in (
        ("base: cifar10-lt-r99\n", "base: unknown preset 'cifar10-lt-r99'"),
        ("base: missing.yaml\n", "is not readable"),
        ("base: [a]\n", "base must be a preset name or a .yaml file"),
        ("base: mine.yaml\n", "is not readable"),  # relative to this file, not to cwd
        ("base: loop.yaml\n", "base loop"),
        ("base: cifar10-lt-r100\noptim:\n  lrr: 1\n", "unknown key 'optim.lrr'"),
        ("base: ../family\n", "a file base must end in .yaml or .yml"),
    ):
        path = tmp_path / "loop.yaml"
        path.write_text(text)
        with pytest.raises(BalconError) as info:
            load_config_file(path)
        assert words in str(info.value) and "\n" not in str(info.value), text


@pytest.mark.parametrize("name", LARGE_PRESETS)
def test_large_scale_presets_follow_recipes(name: str):
    cfg = load_preset(name)
    inat = name.startswith("inat")
    d, m, lo, o, t = cfg.data, cfg.model, cfg.loss, cfg.optim, cfg.train
    assert cfg.name == name and d.dataset == "imagefolder"
    if inat:
        assert (d.train_split, d.val_split, d.test_split) == \
            ("iNaturalist18_train.txt", "iNaturalist18_val.txt", None)
        assert d.num_classes == 8142
        assert (d.mean, d.std) == ([0.466, 0.471, 0.380], [0.195, 0.194, 0.192])
    else:
        assert (d.train_split, d.val_split, d.test_split) == \
            ("ImageNet_LT_train.txt", "ImageNet_LT_val.txt", "ImageNet_LT_test.txt")
        assert d.num_classes == 1000
        assert (d.mean, d.std) == ([0.485, 0.456, 0.406], [0.229, 0.224, 0.225])
    assert d.imbalance is None and d.image_size == 224
    assert (d.view_style, d.view_strategy, d.randaugment) == \
        ("imagenet", "sim-sim", "rand-n2-m10-mstd0.5")
    assert m.encoder == ("resnext50_32x4d" if "resnext" in name else "resnet50")
    assert (m.classifier, m.cosine_scale, m.head_hidden, m.head_dim) == \
        ("cosine", 30.0, 2048, 1024)
    assert m.pretrained is None
    assert (lo.method, lo.temperature, lo.alpha, lo.beta, lo.tau) == \
        ("bcl", 0.07, 1.0, 0.35, 1.0)
    assert (o.lr, o.weight_decay) == ((0.2, 1e-4) if inat else (0.1, 5e-4))
    assert (o.momentum, o.schedule, o.warmup_epochs) == (0.9, "cosine", 0)
    assert t.epochs == (100 if inat else 90) and t.batch_size == 256


def test_image_folder_presets():
    small, large = load_preset("imagefolder-r32"), load_preset("imagefolder-r50")
    assert small.data.dataset == large.data.dataset == "imagefolder"
    assert small.data.train_split is None and large.data.train_split is None
    assert (small.data.image_size, small.data.view_style, small.model.encoder) == \
        (32, "cifar", "resnet32")
    assert (large.data.image_size, large.data.view_style, large.model.encoder) == \
        (224, "imagenet", "resnet50")
    assert large.model.head_hidden == 2048 and small.model.head_hidden == 512


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
    # the published architecture: LDAM-DRW's ResNet-32, Cutout before normalising
    assert (cfg.model.shortcut, cfg.model.conv_init, cfg.data.cutout_fill) == \
        ("A", "kaiming", "black")
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
    # YAML 1.1 leaves 1e-4 a string; float fields take it (also from config files)
    assert apply_overrides(cfg, ["optim.weight_decay=1e-4"]).optim.weight_decay == 1e-4
    assert config_from_dict({"optim": {"lr": "2E-3"}}).optim.lr == 2e-3


@pytest.mark.parametrize("item,words", [
    ("optim.lrr=0.1", "optim.lrr"),
    ("optimizer.lr=0.1", "optimizer.lr"),
    ("optim.lr", "section.field=value"),
    ("optim.lr=fast", "optim.lr must be a number"),
    ("optim.lr=-1", "optim.lr must be > 0"),
    ("train.epochs=1.5", "train.epochs must be an integer"),
    ("train.precision=fp8", "train.precision must be one of"),
    ("data.view_style=huge", "data.view_style must be one of"),
    ("data.view_strategy=rand-sim", "data.view_strategy must be one of"),
    ("data.view_strategy=rand-rand", "needs data.view_style=imagenet"),
    ("data.val_split=val.txt", "need data.train_split"),
    ("data.num_classes=10", "applies to split files only"),
    ("data.num_classes=1", "data.num_classes must be >= 2"),
    ("loss.method=focal", "loss.method must be one of"),
    ("data.hflip=maybe", "data.hflip must be true or false"),
    ("optim.milestones=[180, 160]", "optim.milestones"),
    ("train.epochs=2", "use --epochs 2"),
    ("data.randaugment=rand-n1-m5", "applies to data.view_style=imagenet"),
    ("optim.warmup_epochs=300", "optim.warmup_epochs 300 is longer than train.epochs 200"),
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
    with pytest.raises(BalconError, match="not readable YAML .* at line 2, column 1"):
        load_config_file(path)
    path.write_text("base: cifar10-lt-r100\ntrain:\n  epochs: 3\n  epochs: 4\n")
    with pytest.raises(BalconError, match="'epochs' is given twice at line 4, column 3"):
        load_config_file(path)  # plain YAML would keep 4 silently
    path.write_text("# nothing yet\n")
    with pytest.raises(BalconError, match="is empty; write at least base: PRESET"):
        load_config_file(path)
    with pytest.raises(BalconError, match=r"unknown preset 'mine.yaml' \(a YAML file goes "
                                          r"to --config\)"):
        load_preset("mine.yaml")
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
    for epochs in (1, 2):  # steps that would land on or after the end are dropped
        cfg = compress_schedule(load_preset("cifar10-lt-r100"), epochs)
        assert cfg.optim.milestones == [] and cfg.optim.warmup_epochs == 1


def test_stored_configs_load_without_new_run_checks():
    """A checkpoint's config loads even when a new run would be refused (older runs)."""
    raw = load_preset("cifar10-lt-r100").to_dict()
    raw["train"]["epochs"] = 2
    with pytest.raises(BalconError, match="use --epochs 2"):
        config_from_dict(raw)
    assert config_from_dict(raw, new_run=False).train.epochs == 2


@pytest.mark.parametrize("item", ["data.sim_crop_scale=[0.2, 1.0]", "data.sim_blur_prob=0.5",
                                  "data.cutout_fill=mean"])
def test_cifar_view_settings_are_refused_with_imagenet_views(item: str):
    """The imagenet views would ignore them; a resumed run's config is not re-judged."""
    key = item.split("=")[0]
    with pytest.raises(BalconError, match=f"{key} applies to data.view_style=cifar"):
        apply_overrides(load_preset("imagenet-lt-resnet50"), [item])
    cfg = load_preset("imagenet-lt-resnet50")
    setattr(cfg.data, key.split(".")[1], yaml.safe_load(item.split("=")[1]))
    validate(cfg, new_run=False)


@pytest.mark.parametrize("text", ["auto", "rand-n2-q5", "rand-nX-m10", "rand-n2-m10-mstd"])
def test_bad_randaugment_is_refused_before_the_run(text: str):
    with pytest.raises(BalconError, match="is not a timm RandAugment string") as info:
        apply_overrides(load_preset("imagenet-lt-resnet50"), [f"data.randaugment={text}"])
    assert "\n" not in str(info.value)
    for good in ("rand-n1-m5", "rand-m9-n2-t3a", "rand-m9-mstd0.5-inc1"):
        cfg = apply_overrides(load_preset("imagenet-lt-resnet50"), [f"data.randaugment={good}"])
        assert cfg.data.randaugment == good
